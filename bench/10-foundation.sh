#!/bin/sh
# Foundation rows: mkmodel time for the SmolLM-360M-shaped bf16 model (made
# once into $LMP_BENCH_DIR/smollm-360m and reused while its config matches),
# open+validate time and streaming f32 conversion speed (bench_open).
set -e
D="$LMP_BENCH_DIR/smollm-360m"
want=$("$LMP_BIN/lmpack-mkmodel" --like smollm-360m --print-config)
if [ -f "$D/model.safetensors" ] && [ -f "$D/config.json" ] && [ "$(cat "$D/config.json")" = "$want" ] \
   && [ -f "$D.mkmodel-seconds" ]; then
    echo "| mkmodel smollm-360m bf16 (cached) | $(cat "$D.mkmodel-seconds") | s | measured when $D was generated; delete it to re-measure |"
else
    t0=$(date +%s.%N)
    "$LMP_BIN/lmpack-mkmodel" --like smollm-360m --seed 1 -o "$D" --force >&2
    t1=$(date +%s.%N)
    secs=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")
    echo "$secs" > "$D.mkmodel-seconds"
    echo "| mkmodel smollm-360m bf16 | $secs | s | 362M random params, $(nproc) threads, written to $D |"
fi
"$LMP_BENCH_BIN/bench_open" "$D" 21
