#!/bin/sh
# int4 inference speed on a SmolLM-360M-shaped model (the issue "int4
# inference faster than llama.cpp Q4_0"): decode (16-token prompt, then
# greedy single-token steps), prefill at 32/128/512/2048 tokens, time to
# first token, load time, peak RSS with a 2048-position KV cache, at 1 and
# 2 threads; the machine's memory read bandwidth (bench_bw) and the fraction
# of it decode uses (bytes of weights per token x tok/s / bandwidth).
#
# Model: $LMP_BENCH_DIR/smollm-360m (random weights, `lmpack mkmodel --like
# smollm-360m`, shared with 20-runtime-fp32.sh) converted once with the
# default `--dtype q4` (asym g64, embedding q4) to $LMP_BENCH_DIR/perf-q4.lmpk.
# Every figure is the median of LMP_PERF_REPS runs (default 3; the 2048-token
# prefill runs once) with the min..max spread; "cpu" figures divide by the
# process CPU time instead of the wall clock (on a shared machine wall time
# includes waiting for a core). LMP_PERF_QUICK=1 skips the 2048-token prompt.
#
# Bundle load (the issue item "load time of the bundle (verify + decompress +
# ready)"): $LMP_BENCH_DIR/b360, the bundle of the same q4 model (made with
# `lmpack split` from perf-q4.lmpk if absent; `lmpack build` gives the same
# bytes), opened LMP_LOAD_REPS times (default 5) by `bench_perf --load-reps`
# until ready to run the first token, at 1 and 2 loader threads; rows: wall
# time to ready, process CPU time, the breakdown (thread CPU summed over the
# threads: hash of the compressed bytes, zstd + raw hash fused, parse; wall:
# manifest, bind) and peak RSS. Page cache warm.
# The same decode / first token / prefill 128 rows with the AVX2 kernels
# (LMP_CPU=avx2: what a CPU without AVX-512 runs).
# Then decode, time to first token and prefill 128 on the loaded bundle: the
# same weights as perf-q4.lmpk, but in the loader's huge-page arena instead
# of the 4 KB pages of a file mapping (fewer TLB misses while streaming).
set -e
bin="${LMP_BIN:-bin}"
bb="${LMP_BENCH_BIN:-build/release/bench}"
bd="${LMP_BENCH_DIR:-/tmp/lmpack-bench}"
reps="${LMP_PERF_REPS:-3}"
dir="$bd/smollm-360m"
model="$bd/perf-q4.lmpk"
if [ ! -e "$dir/config.json" ]; then
    mkdir -p "$bd"
    "$bin/lmpack" mkmodel --like smollm-360m -o "$dir" >/dev/null
fi
if [ ! -e "$model" ]; then
    "$bin/lmpack" convert "$dir" -o "$model" --dtype q4 >/dev/null
fi
bytes=$(stat -L -c %s "$model")

# value of "KEY": {"med": M, "min": A, "max": B} in a JSON line -> "M A B"
stat3() {
    printf '%s\n' "$2" | sed -n "s/.*\"$1\": {\"med\": \([0-9.]*\), \"min\": \([0-9.]*\), \"max\": \([0-9.]*\)}.*/\1 \2 \3/p"
}
num() { printf '%s\n' "$2" | sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
row() { # row NAME "M A B" UNIT NOTE
    set -- "$1" "$2" "$3" "$4"
    m=${2%% *}; rest=${2#* }; lo=${rest%% *}; hi=${rest#* }
    echo "| $1 | $m | $3 | median of $reps, spread $lo..$hi; $4 |"
}

bw1=$("$bb/bench_bw" --threads 1)
bw2=$("$bb/bench_bw" --threads 2)
printf '%s\n%s\n' "$bw1" "$bw2"
# the best read pattern seen on this machine (8 prefetched streams per
# thread, huge pages): the ceiling no kernel can beat
bs1=$("$bb/bench_bw" --threads 1 --streams 8)
bs2=$("$bb/bench_bw" --threads 2 --streams 8)
printf '%s\n%s\n' "$bs1" "$bs2"
bwv() { printf '%s\n' "$1" | sed -n "$2p" | awk -F'|' '{gsub(/ /, "", $3); print $3}'; }

for t in 1 2; do
    out=$("$bb/bench_perf" "$model" --threads "$t" --reps "$reps" --decode 128 --prompt 16 --prompt 32 --prompt 128 --prompt 512)
    load=$(printf '%s\n' "$out" | sed -n 1p)
    echo "| int4 load (.lmpk), $t thread(s) | $(num load_ms "$load") | ms | page cache warm; with the AVX-512 kernel the int4 codes are copied, re-ordered (LMP_Q4_LAYOUT_R16; X16 where rows are not a multiple of 16), into huge pages, else mapped in place |"
    dec=$(printf '%s\n' "$out" | grep '"prompt": 16,')
    row "int4 decode (16-token prompt, 128 greedy steps), $t thread(s)" "$(stat3 decode_tok_s "$dec")" tok/s "wall clock"
    row "int4 decode by CPU time, $t thread(s)" "$(stat3 decode_tok_s_cpu "$dec")" tok/s "steps x threads / process CPU s"
    row "int4 time to first token (16-token prompt), $t thread(s)" "$(stat3 ttft_ms "$dec")" ms "model loaded, prompt pass + argmax"
    for p in 32 128 512; do
        l=$(printf '%s\n' "$out" | grep "\"prompt\": $p,")
        row "int4 prefill $p tokens, $t thread(s)" "$(stat3 prefill_tok_s "$l")" tok/s "wall clock"
        row "int4 prefill $p tokens by CPU time, $t thread(s)" "$(stat3 prefill_tok_s_cpu "$l")" tok/s "tokens x threads / process CPU s"
    done
    d=$(stat3 decode_tok_s "$dec"); d=${d%% *}
    dc=$(stat3 decode_tok_s_cpu "$dec"); dc=${dc%% *}
    bw=$(bwv "$([ "$t" = 1 ] && echo "$bw1" || echo "$bw2")" 1)
    bwc=$(bwv "$([ "$t" = 1 ] && echo "$bw1" || echo "$bw2")" 2)
    # by CPU time: both rates then count only the time actually on a core,
    # so the load of other jobs cancels out (wall figures in the notes)
    echo "| int4 decode bandwidth use, $t thread(s) | $(awk -v b="$bytes" -v r="$dc" -v w="$bwc" 'BEGIN { printf "%.0f%%", 100 * b * r / 1e9 / w }') | of read bandwidth | by CPU time: $bytes bytes/token x $dc tok/s / $bwc GB/s; wall clock: $d tok/s against $bw GB/s = $(awk -v b="$bytes" -v r="$d" -v w="$bw" 'BEGIN { printf "%.0f%%", 100 * b * r / 1e9 / w }') (measured at different moments of the load) |"
    bsc=$(bwv "$([ "$t" = 1 ] && echo "$bs1" || echo "$bs2")" 2)
    echo "| int4 decode bandwidth use of the best read pattern, $t thread(s) | $(awk -v b="$bytes" -v r="$dc" -v w="$bsc" 'BEGIN { printf "%.0f%%", 100 * b * r / 1e9 / w }') | of read bandwidth | by CPU time: $bytes bytes/token x $dc tok/s / $bsc GB/s (8 prefetched streams per thread) |"
    if [ "${LMP_PERF_QUICK:-0}" != 1 ]; then
        out=$("$bb/bench_perf" "$model" --threads "$t" --reps 1 --decode 0 --prompt 2048)
        l=$(printf '%s\n' "$out" | grep '"prompt": 2048,')
        echo "| int4 prefill 2048 tokens, $t thread(s) | $(stat3 prefill_tok_s "$l" | cut -d' ' -f1) | tok/s | one run; by CPU time $(stat3 prefill_tok_s_cpu "$l" | cut -d' ' -f1) |"
        r=$(printf '%s\n' "$out" | tail -n 1)
        kvt=$(printf '%s\n' "$r" | sed -n 's/.*"kv": "\([a-z0-9]*\)".*/\1/p')
        kvb=$([ "$kvt" = f16 ] && echo "2 B = 84 MB" || echo "4 B = 168 MB")
        echo "| int4 peak RSS, 2048-token context, $t thread(s) | $(num peak_rss_mb "$r") | MB | $kvt KV cache (2 x 32 x 2048 x 320 x $kvb) included |"
        # decode deep into a context: the attention reads the whole KV cache
        # every token (f16 by default for int4; f32 for comparison)
        for kv in auto f32; do
            out=$("$bb/bench_perf" "$model" --threads "$t" --reps 1 --decode 64 --prompt 1024 --kv "$kv")
            l=$(printf '%s\n' "$out" | grep '"prompt": 1024,')
            r=$(printf '%s\n' "$out" | tail -n 1)
            kvt=$(printf '%s\n' "$r" | sed -n 's/.*"kv": "\([a-z0-9]*\)".*/\1/p')
            echo "| int4 decode after a 1024-token prompt, $kvt KV cache, $t thread(s) | $(stat3 decode_tok_s "$l" | cut -d' ' -f1) | tok/s | one run of 64 steps at positions 1024..1087 |"
        done
    fi
done

# The AVX2 kernels, what a CPU without AVX-512 runs (LMP_CPU=avx2): int4
# matrices in LMP_Q4_LAYOUT_R8 where the rows allow it (all of SmolLM's).
for t in 1 2; do
    out=$(LMP_CPU=avx2 "$bb/bench_perf" "$model" --threads "$t" --reps "$reps" --decode 128 --prompt 16 --prompt 128)
    dec=$(printf '%s\n' "$out" | grep '"prompt": 16,')
    row "int4 decode, AVX2 kernels (LMP_CPU=avx2), $t thread(s)" "$(stat3 decode_tok_s "$dec")" tok/s "wall clock; 16-token prompt, 128 greedy steps; load $(num load_ms "$(printf '%s\n' "$out" | sed -n 1p)") ms"
    row "int4 time to first token (16-token prompt), AVX2 kernels, $t thread(s)" "$(stat3 ttft_ms "$dec")" ms "model loaded, prompt pass + argmax"
    l=$(printf '%s\n' "$out" | grep '"prompt": 128,')
    row "int4 prefill 128 tokens, AVX2 kernels, $t thread(s)" "$(stat3 prefill_tok_s "$l")" tok/s "wall clock"
done

bundle="$bd/b360"
if [ ! -e "$bundle/manifest.json" ]; then
    "$bin/lmpack" split "$model" -o "$bundle" >/dev/null
fi
lreps="${LMP_LOAD_REPS:-5}"
for t in 1 2; do
    l=$("$bb/bench_perf" "$bundle" --load-reps "$lreps" --threads "$t")
    r=$(stat3 ready_ms "$l"); m=${r%% *}; rest=${r#* }
    echo "| bundle load to ready (verify + decompress + bind, $(num compressed_mb "$l") MB zstd -> $(num raw_mb "$l") MB), $t thread(s) | $m | ms | median of $lreps, spread ${rest%% *}..${rest#* }; page cache warm; $(num raw_gb_s "$l") GB/s of raw image |"
    c=$(stat3 load_cpu_ms "$l")
    echo "| bundle load CPU time, $t thread(s) | ${c%% *} | ms | process CPU, all threads; breakdown (thread CPU, medians): compressed hash $(num hash_cpu_ms "$l") ms, zstd + raw hash $(num decompress_cpu_ms "$l") ms, map $(num read_cpu_ms "$l") ms, parse $(num parse_cpu_ms "$l") ms; wall: manifest $(num manifest_ms "$l") ms, bind $(num bind_ms "$l") ms |"
    echo "| bundle load peak RSS, $t thread(s) | $(num peak_rss_mb "$l") | MB | one resident model (decompressed images in one huge-page arena) |"
done
for t in 1 2; do
    out=$("$bb/bench_perf" "$bundle" --threads "$t" --reps "$reps" --decode 128 --prompt 16 --prompt 128)
    dec=$(printf '%s\n' "$out" | grep '"prompt": 16,')
    row "int4 decode from the bundle (16-token prompt, 128 greedy steps), $t thread(s)" "$(stat3 decode_tok_s "$dec")" tok/s "wall clock; by CPU time $(stat3 decode_tok_s_cpu "$dec" | cut -d' ' -f1)"
    row "int4 time to first token from the bundle (16-token prompt), $t thread(s)" "$(stat3 ttft_ms "$dec")" ms "model loaded, prompt pass + argmax"
    l=$(printf '%s\n' "$out" | grep '"prompt": 128,')
    row "int4 prefill 128 tokens from the bundle, $t thread(s)" "$(stat3 prefill_tok_s "$l")" tok/s "wall clock"
done
