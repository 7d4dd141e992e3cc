#!/bin/sh
# Convert benchmark: the SmolLM-360M-shaped bf16 model (lmpack mkmodel
# --like smollm-360m) -> q4 container, one streaming pass, 2 threads.
# Rows: wall time, peak RSS, bits/weight of the 2-D weights, output size.
# Targets (2-core machine): convert+quantize <= 1.5 s, peak RSS < 300 MB.
# Env: LMP_BIN, LMP_BENCH_DIR (see bench/run.sh).
set -e
bin="${LMP_BIN:-bin}"
dir="${LMP_BENCH_DIR:-/tmp/lmpack-bench}"
model="$dir/smollm-360m"
mkdir -p "$dir"
if [ ! -f "$model/model.safetensors" ]; then
    "$bin/lmpack" mkmodel --like smollm-360m -o "$model" --force >/dev/null
fi
out="$dir/convert-bench.lmpk"
field() { sed -n "s/.*\"$1\": \\([^,}]*\\).*/\\1/p"; }
run() { # label, then convert options
    label=$1
    shift
    js=$("$bin/lmpack" convert "$model" -o "$out" -t 2 --json "$@")
    secs=$(echo "$js" | field seconds)
    rss=$(echo "$js" | field peak_rss_kb)
    bpw=$(echo "$js" | field bits_per_weight)
    size=$(echo "$js" | field out_bytes)
    desc="$(echo "$js" | field scheme | tr -d '"') g$(echo "$js" | field group), embed $(echo "$js" | field embed | tr -d '"')"
    echo "| convert smollm-360m bf16 -> $label: wall | $secs | s | $desc; target <= 1.5 s, 2 threads |"
    echo "| convert smollm-360m bf16 -> $label: peak RSS | $((rss / 1024)) | MB | target < 300 MB |"
    echo "| convert smollm-360m bf16 -> $label: bits/weight | $bpw | bits | 2-D weights, all overhead |"
    echo "| convert smollm-360m bf16 -> $label: output | $((size / 1048576)) | MiB | |"
}
run "q4 g128" --group 128
run "q4 g64" --group 64
run "q4 g64 --no-search" --group 64 --no-search
rm -f "$out"
