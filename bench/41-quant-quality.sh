#!/bin/sh
# Quantization quality on the trained stories260k model: mean KL(FP32 || Q)
# of the recommended configurations and of llama.cpp Q4_0 (emulated) as the
# yardstick. The full study (docs/QUANT.md):
#   build/release/bench/bench_quant_quality
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
"${LMP_BENCH_BIN:-build/release/bench}/bench_quant_quality" --model "$here/tests/data/stories260k" --rows
