#!/bin/sh
# Build and run bench/kernel_ab/peak.c: the AVX-512 VNNI prefill kernel
# against the core's vpdpbusd throughput (see the comment in peak.c).
# Needs `make` first (build/release/liblmpack.a).
#   usage: sh bench/kernel_ab/peak.sh
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${TMPDIR:-/tmp}/lmpack-peak.$$
gcc -O2 -std=gnu11 -I"$root" -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni \
    -Dlmp_q4_pack_hexas_avx512=pack_peak -Dlmp_q4_act_hexa_avx512=act_peak \
    -Dlmp_q4_rows_avx512=lmp_q4_rows_avx512_peak -Dlmp_q4_pack_r16_block_avx512=pack_r16_peak -Dlmp_q4_act_plain_avx512=act_plain_peak \
    "$root/bench/kernel_ab/peak.c" -o "$out" "$root/build/release/liblmpack.a" \
    $(pkg-config --libs libzstd libcjson libxxhash) -lm -lpthread
"$out"
rm -f "$out"
