#!/bin/sh
# Grouped int4 kernels with the weights in cache: compute cost of the AVX2
# and AVX-512 VNNI paths (ns per 64 weights per token, thread CPU time) on
# SmolLM-360M row widths, decode and prefill 16 / 128 tokens.
set -e
bin="${LMP_BENCH_BIN:-build/release/bench}"
"$bin/bench_q4_cache"
