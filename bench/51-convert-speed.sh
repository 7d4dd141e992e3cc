#!/bin/sh
# Convert throughput: the SmolLM-360M-shaped bf16 model (lmpack mkmodel
# --like smollm-360m, reused if present) -> q4 container with the default
# search (asym, embedding q4), group 64 and group 128, 2 threads.
# Rows: wall time (median of 3), CPU time user+sys (median of 3; on this
# shared VM wall time mostly measures the other tenants, CPU time / 2 is
# the wall time two idle cores would need), peak RSS, bits/weight; then the
# quantizer's MB/s per core, scalar reference vs AVX2 (bench_quant_speed),
# and the machine load while measuring.
# Targets: <= 1.5 s wall, peak RSS < 300 MB (llama-quantize F16 -> Q4_0:
# 1.5 s, 960 MB).
# Env: LMP_BIN, LMP_BENCH_BIN, LMP_BENCH_DIR (see bench/run.sh).
set -e
bin="${LMP_BIN:-bin}"
bbin="${LMP_BENCH_BIN:-build/release/bench}"
dir="${LMP_BENCH_DIR:-/tmp/lmpack-bench}"
model="$dir/smollm-360m"
mkdir -p "$dir"
if [ ! -f "$model/model.safetensors" ]; then
    "$bin/lmpack" mkmodel --like smollm-360m -o "$model" --force >/dev/null
fi
out="$dir/convert-speed-$$.lmpk"
tm="$dir/convert-speed-$$.time"
field() { sed -n "s/.*\"$1\": \\([^,}]*\\).*/\\1/p"; }
median3() { printf '%s\n%s\n%s\n' "$1" "$2" "$3" | sort -g | sed -n 2p; }
echo "| machine load during convert-speed (uptime) | $(uptime | sed 's/.*load average: //; s/,.*//') | 1-min load | 2-core VM; $(uptime | sed 's/.*load average: //') |"
for g in 64 128; do
    walls="" cpus="" rss=0
    for i in 1 2 3; do
        if [ -x /usr/bin/time ]; then
            js=$(/usr/bin/time -o "$tm" -f "%U %S" "$bin/lmpack" convert "$model" -o "$out" -t 2 \
                --group "$g" --json)
            cpu=$(awk '{printf "%.2f", $1 + $2}' "$tm")
        else
            js=$("$bin/lmpack" convert "$model" -o "$out" -t 2 --group "$g" --json)
            cpu=nan
        fi
        walls="$walls $(echo "$js" | field seconds)"
        cpus="$cpus $cpu"
        r=$(echo "$js" | field peak_rss_kb)
        [ "$r" -gt "$rss" ] && rss=$r
        bpw=$(echo "$js" | field bits_per_weight)
    done
    set -- $walls
    wall=$(median3 "$1" "$2" "$3")
    set -- $cpus
    cpu=$(median3 "$1" "$2" "$3")
    echo "| convert smollm-360m bf16 -> q4 asym g$g search: wall | $wall | s | median of 3, 2 threads; target <= 1.5 s (runs:$walls) |"
    echo "| convert smollm-360m bf16 -> q4 asym g$g search: CPU user+sys | $cpu | s | median of 3; / 2 = wall on 2 idle cores (runs:$cpus) |"
    echo "| convert smollm-360m bf16 -> q4 asym g$g search: peak RSS | $((rss / 1024)) | MB | max of 3; target < 300 MB |"
    echo "| convert smollm-360m bf16 -> q4 asym g$g search: bits/weight | $bpw | bits | 2-D weights, all overhead |"
done
rm -f "$out" "$tm"
"$bbin/bench_quant_speed"
