#!/bin/sh
# Interleaved A/B of two builds of the runtime on one model: the fair way to
# compare on a machine whose speed drifts (shared VM). Runs bench_perf of
# tree A, then tree B, ROUNDS times, prints one line per run, then the
# medians of each tree and the median of the per-round ratios B/A (a round's
# two runs are minutes apart at most, so the ratio cancels most of the
# drift; its spread says how much is left).
#   usage: sh bench/ab.sh TREE_A TREE_B MODEL [THREADS [ROUNDS]]
# TREE_x: a checkout with build/release/bench/bench_perf built (`make bench`
# builds it; e.g. `git worktree add /tmp/old REV && make -C /tmp/old -j2
# build/release/bench/bench_perf`).
set -e
a=$1; b=$2; m=$3; t=${4:-2}; r=${5:-4}
[ -n "$m" ] || { echo "usage: sh bench/ab.sh TREE_A TREE_B MODEL [THREADS [ROUNDS]]" >&2; exit 2; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
i=0
while [ "$i" -lt "$r" ]; do
    for tree in "$a" "$b"; do
        "$tree/build/release/bench/bench_perf" "$m" --threads "$t" --reps 3 --decode 128 \
            --prompt 16 --prompt 128 | python3 -c '
import json, sys
out, row = [], {}
for line in sys.stdin:
    d = json.loads(line)
    if "prompt" not in d:
        continue
    row["prefill%d" % d["prompt"]] = d["prefill_tok_s"]["med"]
    out.append("prefill %d: %.0f tok/s" % (d["prompt"], d["prefill_tok_s"]["med"]))
    if "decode_tok_s" in d:
        row["ttft"] = d["ttft_ms"]["med"]
        row["decode"] = d["decode_tok_s"]["med"]
        out.append("ttft %.0f ms, decode %.1f tok/s (cpu %.1f)" % (d["ttft_ms"]["med"],
                   d["decode_tok_s"]["med"], d["decode_tok_s_cpu"]["med"]))
print(sys.argv[1], " | ".join(out))
with open(sys.argv[2], "a") as f:
    f.write(json.dumps({"tree": sys.argv[1], **row}) + "\n")' "$tree" "$log"
    done
    i=$((i + 1))
done
python3 - "$a" "$b" "$log" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[3])]
A = [x for x in rows if x["tree"] == sys.argv[1]]
B = [x for x in rows if x["tree"] == sys.argv[2]]
for k in ("decode", "ttft", "prefill16", "prefill128"):
    pa = [x[k] for x in A if k in x]
    pb = [x[k] for x in B if k in x]
    if not pa or len(pa) != len(pb):
        continue
    ratios = [y / x for x, y in zip(pa, pb)]
    print("%-10s A %8.1f  B %8.1f  B/A median %.3f (%.3f..%.3f over %d rounds)" %
          (k, st.median(pa), st.median(pb), st.median(ratios), min(ratios), max(ratios), len(ratios)))
PY
