#!/bin/sh
# Build the in-process kernel A/B harness from two versions of one kernel
# file and run it on the SmolLM-360M shapes (decode, prefill 16 / 128).
#   usage: sh bench/kernel_ab/run.sh avx512|avx2 A.c B.c [ROUNDS]
# A.c / B.c: copies of quantize/q4_avx512.c (or q4_avx2.c) with the change
# to compare; needs `make` (build/release/liblmpack.a) first. A run prints
# one line per shape: medians and quartiles of ns per 64 weights and token,
# B/A, and "RESULTS DIFFER" when the two builds disagree in any bit.
set -e
kind=$1; a=$2; b=$3; rounds=${4:-100}
[ -n "$b" ] || { echo "usage: sh bench/kernel_ab/run.sh avx512|avx2 A.c B.c [ROUNDS]" >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${TMPDIR:-/tmp}/lmpack-kab.$$
mkdir -p "$out"
F="-O2 -std=c11 -I$root -mavx2 -mfma -mf16c"
if [ "$kind" = avx512 ]; then
    F="$F -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
    ren="-Dlmp_q4_rows_avx512=rows_X -Dlmp_q4_pack_hexas_avx512=pack_X -Dlmp_q4_act_hexa_avx512=act_X -Dlmp_q4_act_plain_avx512=actp_X -Dlmp_q4_pack_r16_block_avx512=packr_X"
    X=1
else
    ren="-Dlmp_q4_rows_avx2=rows_X -Dlmp_q4_absmax32_avx2=am_X -Dlmp_q4_quant32_avx2=q32_X"
    F2=-DLMP_KAB_AVX2
    X=0
fi
gcc $F $(echo "$ren" | sed 's/_X/_A/g') -c "$a" -o "$out/A.o"
gcc $F $(echo "$ren" | sed 's/_X/_B/g') -c "$b" -o "$out/B.o"
gcc $F ${F2:-} -c "$root/bench/kernel_ab/kab.c" -o "$out/kab.o"
gcc -o "$out/kab" "$out/kab.o" "$out/A.o" "$out/B.o" "$root/build/release/liblmpack.a" \
    $(pkg-config --libs libzstd libcjson libxxhash) -lm -lpthread
for shape in "1024 960 1" "384 2560 1" "256 960 16" "96 2560 16" "256 960 128"; do
    "$out/kab" $shape $X "$rounds"
done
rm -rf "$out"
