#!/bin/sh
# Quality-gate benchmark: `lmpack verify --quality` of a q4 container of the
# SmolLM-360M-shaped random model against its FP32 reference over 512
# tokens (2 sequences of 256), 2 threads.
#   --tokens: teacher forcing, both models in prefill pieces of 32 positions
#   --self:   the same 512 tokens sampled from the FP32 model while
#             evaluating (one decode step per position for both models,
#             so bounded by FP32 decode speed)
# Rows: wall time, positions/s, peak RSS. The model folder is shared with
# other parts ($LMP_BENCH_DIR/smollm-360m, made by mkmodel if absent).
# Env: LMP_BIN, LMP_BENCH_DIR (see bench/run.sh).
set -e
bin="${LMP_BIN:-bin}"
dir="${LMP_BENCH_DIR:-/tmp/lmpack-bench}"
model="$dir/smollm-360m"
mkdir -p "$dir"
if [ ! -f "$model/config.json" ]; then
    "$bin/lmpack" mkmodel --like smollm-360m -o "$model" --force >/dev/null
fi
q4="$dir/quality-bench.lmpk"
tok="$dir/quality-bench.tokens"
rep="$dir/quality-bench.json"
"$bin/lmpack" convert "$model" -o "$q4" --dtype q4 --group 32 --scheme sym --embed q8 -t 2 >/dev/null
field() { sed -n "s/^	\"$1\":	\([^,]*\),*$/\1/p" "$rep"; }
# wall seconds and peak RSS (MB) of a command, via GNU time if present
timed() {
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "%e %M" -o "$dir/quality-bench.time" "$@" >/dev/null
        read -r secs kb <"$dir/quality-bench.time"
        rss=$((kb / 1024))
    else
        t0=$(date +%s.%N)
        "$@" >/dev/null
        secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
        rss="?"
    fi
}
timed "$bin/lmpack" verify "$q4" --quality --against "$model" --self 512 --ctx 256 \
    --save-tokens "$tok" --json "$rep" -t 2
pos=$(field positions)
echo "| verify --quality --self 512 (smollm-360m q4 vs fp32): wall | $secs | s | $pos positions, sampling + decode, 2 threads |"
echo "| verify --quality --self 512: throughput | $(awk -v p="$pos" -v s="$secs" 'BEGIN { printf "%.1f", p / s }') | positions/s | |"
echo "| verify --quality --self 512: peak RSS | $rss | MB | fp32 reference + q4 model in one process |"
timed "$bin/lmpack" verify "$q4" --quality --against "$model" --tokens "$tok" --json "$rep" -t 2
echo "| verify --quality --tokens (512 tokens, smollm-360m q4 vs fp32): wall | $secs | s | $pos positions, prefill pieces of 32, 2 threads |"
echo "| verify --quality --tokens: throughput | $(awk -v p="$pos" -v s="$secs" 'BEGIN { printf "%.1f", p / s }') | positions/s | |"
echo "| verify --quality --tokens: peak RSS | $rss | MB | |"
echo "| verify --quality (smollm-360m q4 g32 sym, embed q8, random weights): KLD mean | $(field kld_mean) | nats | top-1 $(field top1_agreement), ppl ratio $(field ppl_ratio) |"
rm -f "$q4" "$tok" "$rep" "$dir/quality-bench.time"
