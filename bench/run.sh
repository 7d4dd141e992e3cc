#!/bin/sh
# `make bench`: benchmarks (see docs/PERFORMANCE.md once it exists).
set -e
echo "no benchmarks yet" >&2
