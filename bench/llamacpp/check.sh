#!/bin/sh
# Is mkgguf's GGUF right? llama.cpp (node-llama-cpp's prebuilt, CPU) on
# GGUF files of the real trained stories260k model must reproduce the
# greedy sequence transformers computed (tests/data/stories260k/
# greedy200.json: BOS, then 200 argmax tokens).
#   usage: sh bench/llamacpp/check.sh
# Files (in $LMP_BENCH_DIR/llamacpp/check): f32 and f16 (every 2-D weight
# in that type), q4_0 (llama-quantize's default mix: Q8_0 embedding, 172-long
# ffn_down rows F16) and a negative control written without the q/k row
# permutation. Prompt: the sequence's first id (BOS); llama.cpp then
# generates 200 greedy tokens from ids (no text, no tokenizer).
# Two ways into the same prebuilt llama.cpp: node-llama-cpp (bench.mjs,
# the addon) and its C API (llbench, built against the package's own
# llama.h: a mismatched header would show here).
# Pass: f32 and f16 agree with transformers on >= 150 leading tokens (a
# near-tie may flip a late one), and the negative control breaks away
# before 50 (so the check can tell a wrong rotary layout). q4_0 is
# reported only: 4-bit weights on a 260K-parameter model change the text.
# Exit 0 pass (or skipped: node-llama-cpp not installable, said on stdout),
# 1 fail.
set -e
. "$(dirname "$0")/common.sh"
rc=0; lcpp_setup || rc=$?
[ "$rc" = 1 ] && exit 0
[ "$rc" = 0 ] || { echo "check.sh: building the helpers failed" >&2; exit 1; }

src="$root/tests/data/stories260k"
ref="$src/greedy200.json"
out="$D/check"
mkdir -p "$out"
lcpp_gguf "$src" "$out/stories260k-f32.gguf" --type f32
lcpp_gguf "$src" "$out/stories260k-f16.gguf" --type f16
lcpp_gguf "$src" "$out/stories260k-q4_0.gguf" --type q4_0
lcpp_gguf "$src" "$out/stories260k-f32-nopermute.gguf" --type f32 --no-permute

# number of leading tokens of greedy JSON line $1 equal to the reference
agree() {
    node -e '
        const fs = require("fs");
        const ref = JSON.parse(fs.readFileSync(process.argv[1], "utf8")).slice(1);
        const got = JSON.parse(process.argv[2]).greedy;
        let n = 0;
        while (n < ref.length && got[n] === ref[n]) n++;
        const same = ref.filter((t, i) => got[i] === t).length;
        console.log(`${n} ${ref.length} ${same}`);' "$ref" "$1"
}

fail=0
runners="node"
if [ -n "$llbench" ]; then runners="node C"; else echo "(llbench unavailable: $llbench_why)"; fi
for v in f32 f16 q4_0 f32-nopermute; do
    for how in $runners; do
        if [ "$how" = node ]; then
            g=$(node "$root/bench/llamacpp/bench.mjs" --nlc "$D" --model "$out/stories260k-$v.gguf" \
                --threads 1 --ctx 512 --greedy 1 --n 200 | tail -n 1)
            via="node-llama-cpp"
        else
            g=$("$llbench" "$libdir" "$out/stories260k-$v.gguf" --threads 1 --ctx 512 --greedy 1 --n 200)
            via="llama.h C API"
        fi
        set -- $(agree "$g")
        n=$1; total=$2; same=$3
        case $v in
            f32|f16) want=">= 150"; [ "$n" -ge 150 ] && verdict=ok || { verdict=FAIL; fail=1; } ;;
            q4_0) want="(reported only)"; verdict=info ;;
            *) want="< 50 (negative control)"; [ "$n" -lt 50 ] && verdict=ok || { verdict=FAIL; fail=1; } ;;
        esac
        echo "stories260k $v GGUF via $via: llama.cpp greedy agrees with transformers on the first $n of $total tokens ($same positions equal) $want: $verdict"
    done
done
if [ "$fail" = 0 ]; then
    echo "check.sh: PASS (mkgguf's GGUF loads in llama.cpp and computes the model transformers computes)"
else
    echo "check.sh: FAIL"
    exit 1
fi
