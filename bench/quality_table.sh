#!/bin/sh
# The quantization quality table of docs/QUALITY.md: every q4 setting
# (group 32/64/128 x sym/asym x scale search on/off x embedding q4/q8/f16)
# converted with `lmpack convert` and measured with `lmpack verify
# --quality` against the FP32 model, plus the llama.cpp Q4_0 yardstick.
#
#   sh bench/quality_table.sh [MODEL_DIR...] > table.md
#
# Default models: tests/data/stories260k tests/data/tiny-smollm-bf16.
# Evaluation: --self 2048 --ctx 256 --seed 1234 (the verify defaults):
# 8 sequences sampled from the FP32 model, 2040 positions.
# Env: LMP_BIN (programs, default bin), QT_SELF / QT_CTX to change the
# evaluation, QT_THREADS (default 2; results do not depend on it).
# Deterministic: the same binaries give the same table.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
bin="${LMP_BIN:-$here/bin}"
n="${QT_SELF:-2048}"
ctx="${QT_CTX:-256}"
thr="${QT_THREADS:-2}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmpack-qt.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
[ $# -gt 0 ] || set -- "$here/tests/data/stories260k" "$here/tests/data/tiny-smollm-bf16"

field() { sed -n "s/^	\"$1\":	\([^,]*\),*$/\1/p" "$tmp/r.json"; }

# row LABEL-CELLS convert-options...
row() {
    cells=$1
    shift
    "$bin/lmpack" convert "$model" -o "$tmp/m.lmpk" -t "$thr" "$@" >/dev/null
    "$bin/lmpack" verify "$tmp/m.lmpk" --quality --against "$model" --self "$n" --ctx "$ctx" \
        -t "$thr" --json "$tmp/r.json" >/dev/null
    printf '| %s | %.3f | %.5f | %.4f | %.2f%% | %.4f | %.4f |\n' "$cells" \
        "$(field bits_per_weight)" "$(field kld_mean)" "$(field kld_p99)" \
        "$(awk -v t="$(field top1_agreement)" 'BEGIN { print 100 * t }')" \
        "$(field ppl_ratio)" "$(field weights_rel_rmse)"
}

for model in "$@"; do
    name=$(basename "$model")
    echo
    echo "### $name"
    echo
    echo "| group | scheme | scale search | embedding | bits/weight | KLD mean | KLD p99 | top-1 | PPL ratio | weight rel. RMSE |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for embed in q8 q4 f16; do
        for scheme in sym asym; do
            for group in 32 64 128; do
                for search in on off; do
                    opt=""
                    [ "$search" = off ] && opt="--no-search"
                    row "$group | $scheme | $search | $embed" --dtype q4 --group "$group" \
                        --scheme "$scheme" --embed "$embed" $opt
                done
            done
        done
    done
    echo
    echo "llama.cpp Q4_0 emulation (group 32, sym, scale d = M/-8 from the value M of"
    echo "largest magnitude, no search; activations quantized to int8 per 32 as Q8_0):"
    echo
    echo "| yardstick | | | embedding | bits/weight | KLD mean | KLD p99 | top-1 | PPL ratio | weight rel. RMSE |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    row "Q4_0 | sym | min/max | q8" --dtype q4 --group 32 --scheme sym --embed q8 --no-search
    row "Q4_0 --pure | sym | min/max | q4" --dtype q4 --group 32 --scheme sym --embed q4 \
        --no-search
    echo
    echo "FP32 perplexity of $name on these tokens: $(field ppl_ref) ($(field positions) positions)"
done
