#!/bin/sh
# `make demo`: the main job on the bundled default model.
set -e
echo "lmpack demo: nothing yet beyond the build" >&2
