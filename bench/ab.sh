#!/bin/sh
# Interleaved A/B of two builds of the runtime on one model: the fair way to
# compare on a machine whose speed drifts (shared VM). Runs bench_perf of
# tree A, then tree B, ROUNDS times, and prints one line per run.
#   usage: sh bench/ab.sh TREE_A TREE_B MODEL [THREADS [ROUNDS]]
# TREE_x: a checkout with build/release/bench/bench_perf built (`make bench`
# builds it; e.g. `git worktree add /tmp/old REV && make -C /tmp/old -j2
# build/release/bench/bench_perf`).
set -e
a=$1; b=$2; m=$3; t=${4:-2}; r=${5:-4}
[ -n "$m" ] || { echo "usage: sh bench/ab.sh TREE_A TREE_B MODEL [THREADS [ROUNDS]]" >&2; exit 2; }
i=0
while [ "$i" -lt "$r" ]; do
    for tree in "$a" "$b"; do
        "$tree/build/release/bench/bench_perf" "$m" --threads "$t" --reps 3 --decode 128 \
            --prompt 16 --prompt 128 | python3 -c '
import json, sys
out = []
for line in sys.stdin:
    d = json.loads(line)
    if "prompt" not in d:
        continue
    out.append("prefill %d: %.0f tok/s" % (d["prompt"], d["prefill_tok_s"]["med"]))
    if "decode_tok_s" in d:
        out.append("ttft %.0f ms, decode %.1f tok/s (cpu %.1f)" % (d["ttft_ms"]["med"],
                   d["decode_tok_s"]["med"], d["decode_tok_s_cpu"]["med"]))
print(sys.argv[1], " | ".join(out))' "$tree"
    done
    i=$((i + 1))
done
