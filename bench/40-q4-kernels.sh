#!/bin/sh
# Grouped int4/int8 kernels (quantize/q4*.c): matrix-vector GB/s of weights
# streamed from RAM and GFLOP/s on SmolLM-360M shapes ([rows x cols] =
# HF weight shape), 1 and 2 threads, scalar reference vs AVX2; prefill with
# 16 tokens; quantizer throughput (MB/s of f32 input) with the scale search.
set -e
"${LMP_BENCH_BIN:-build/release/bench}/bench_q4"
