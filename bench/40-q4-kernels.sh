#!/bin/sh
# Grouped int4/int8 kernels (quantize/q4*.c): matrix-vector GB/s of weights
# streamed from RAM and GFLOP/s on SmolLM-360M shapes ([rows x cols] =
# HF weight shape), 1 and 2 threads, scalar reference vs AVX2; prefill with
# 16 tokens; quantizer throughput (MB/s of f32 input) with the scale search.
# Then, if the shared SmolLM-360M-shaped model exists (20-runtime-fp32.sh
# creates it), end-to-end int4 decode/prefill speed of the default format
# (weights quantized in memory; min-max rounding only to keep the bench
# short: the kernels' speed does not depend on how the codes were chosen).
set -e
bin="${LMP_BENCH_BIN:-build/release/bench}"
"$bin/bench_q4"
dir="${LMP_BENCH_DIR:-/tmp/lmpack-bench}/smollm-360m"
if [ -e "$dir/config.json" ]; then
    "$bin/bench_q4_decode" "$dir" --scheme asym --group 64 --steps 32 --minmax
fi
