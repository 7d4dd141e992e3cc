#!/bin/sh
# FP32 reference runtime on a SmolLM-360M-shaped random model: prefill speed
# (one 128-token prompt), decode speed (32 single-token steps after it) and
# peak RSS, with 1 and 2 threads. Prints rows of the bench table.
# The model folder $LMP_BENCH_DIR/smollm-360m is shared with other parts:
# created here only if absent.
set -e
bin="${LMP_BIN:-bin}"
dir="${LMP_BENCH_DIR:-/tmp/lmpack-bench}/smollm-360m"
if [ ! -e "$dir/config.json" ]; then
    mkdir -p "$(dirname "$dir")"
    "$bin/lmpack" mkmodel --like smollm-360m -o "$dir" >/dev/null
fi
# 128 deterministic ids inside SmolLM's 49152-token vocabulary
ids=$(awk 'BEGIN { for (i = 0; i < 128; i++) printf "%d ", (i * 7919 + 13) % 49152 }')
val() { # val KEY JSONLINE
    printf '%s\n' "$2" | sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p"
}
for t in 1 2; do
    line=$("$bin/lmpack" run "$dir" --ids "$ids" -n 33 --greedy -t "$t" --stats --json 2>&1 >/dev/null | tail -n 1)
    echo "| fp32 prefill (128-token prompt), $t thread(s) | $(val prefill_tok_s "$line") | tok/s | smollm-360m shape, random bf16 weights run as f32 |"
    echo "| fp32 decode (32 steps after the prompt), $t thread(s) | $(val decode_tok_s "$line") | tok/s | smollm-360m shape |"
    echo "| fp32 time to first token (128-token prompt), $t thread(s) | $(val ttft_ms "$line") | ms | smollm-360m shape |"
    echo "| fp32 peak RSS, $t thread(s) | $(val peak_rss_mb "$line") | MB | model converted to f32 at load (~4 bytes/param) |"
    echo "| fp32 load (bf16 safetensors -> f32), run with $t thread(s) | $(val load_ms "$line") | ms | conversion uses all CPUs; page cache warm after the first run |"
done
