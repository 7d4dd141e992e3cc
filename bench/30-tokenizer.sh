#!/bin/sh
# Tokenizer encode speed with the real SmolLM tokenizer (one core).
set -e
here=$(dirname "$0")
"${LMP_BENCH_BIN:-build/release/bench}/bench_tokenizer" "$here/../tests/data/smollm-tokenizer" 8
"${LMP_BENCH_BIN:-build/release/bench}/bench_sample"
