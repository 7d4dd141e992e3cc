#!/bin/sh
# llama.cpp Q4_0 on this machine, on the model `make bench` times lmpack on
# (bench/80-perf.sh: $LMP_BENCH_DIR/smollm-360m, `lmpack mkmodel --like
# smollm-360m`, random bf16 weights): the comparison the issue asks for.
#   usage: sh bench/llamacpp/run.sh [THREADS...]      (default: 1 2)
# Prints rows of the `make bench` table "| benchmark | value | unit | notes |"
# (with the header when run on its own, without it under `make bench`).
#
# llama.cpp: the prebuilt binaries of node-llama-cpp@3.21.1 (npm; installed
# into $LMP_BENCH_DIR/llamacpp if absent, never built, nothing downloaded
# but the npm package), CPU only. When node/npm, the registry or a prebuilt
# binary is unavailable it prints why and exits 0 (an optional part).
# Rows say which llama.cpp commit the binary is and which of its ggml-cpu
# variants the backend loader picked on this CPU (the mapped
# libggml-cpu-*.so) with llama.cpp's own system_info line.
#
# Models: two GGUF files written by bench/llamacpp/mkgguf.c from the same
# checkpoint, with the real SmolLM tokenizer (tests/data/smollm-tokenizer):
#   q4_0       what `llama-quantize ... Q4_0` gives: Q4_0 weights, the tied
#              embedding (also the output projection) in Q8_0, norms F32
#   q4_0-pure  `llama-quantize --pure ... Q4_0`: every 2-D weight Q4_0
# (mkgguf's correctness: sh bench/llamacpp/check.sh.)
# Two harnesses over the same prebuilt libraries:
#   llbench (bench/llamacpp/llbench.c): llama.cpp's C API driven as
#     llama-bench drives it, a ggml threadpool attached to the context. The
#     main rows ("llama.cpp ...").
#   bench.mjs: node-llama-cpp's own path (rows "... via node-llama-cpp",
#     LMP_LCPP_NODE_VARIANTS, default q4_0). node-llama-cpp attaches no
#     threadpool, so this build creates and joins threads at every
#     llama_decode; at 2 threads that costs about half the decode speed on
#     this VM, which is node-llama-cpp's cost, not llama.cpp's.
# Workload (both, the same as bench_perf's): prompt ids
# (i * 7919 + 13) % 49152; time to first token of a 16-token prompt, then
# 128 greedy single-token steps; prefill of 128 and 512 tokens (one batch,
# logits of the last token); medians of LMP_LCPP_REPS runs (default 3) with
# min..max; context 2048 (f16 KV cache, as llama.cpp's default and lmpack's
# int4 runtime), flash attention LMP_LCPP_FA (default auto = llama.cpp's
# default; it resolves to on for the CPU); peak RSS of the node process
# (node itself ~40 MB of it, reported in the notes).
# Env: LMP_BENCH_DIR, LMP_BIN (lmpack programs, for mkmodel), LMP_LCPP_REPS,
# LMP_LCPP_FA (auto|on|off), LMP_LCPP_VARIANTS (default "q4_0 q4_0-pure"),
# LMP_LCPP_NODE_VARIANTS (default "q4_0"; "" skips node-llama-cpp's rows),
# LMP_LCPP_CPU=NAME: llbench may load only the ggml-cpu variant NAME (e.g.
# haswell: AVX2 + FMA, no AVX-512; the counterpart of lmpack's
# LMP_CPU=avx2), from a folder of links holding no other variant; the
# node-llama-cpp rows are then left out (its loader picks for itself).
set -e
. "$(dirname "$0")/common.sh"
rc=0; lcpp_setup || rc=$?
[ "$rc" = 1 ] && exit 0
[ "$rc" = 0 ] || { echo "run.sh: building the helpers failed" >&2; exit 1; }
threads=${*:-1 2}
reps=${LMP_LCPP_REPS:-3}
fa=${LMP_LCPP_FA:-auto}
variants=${LMP_LCPP_VARIANTS:-q4_0 q4_0-pure}
nodevariants=${LMP_LCPP_NODE_VARIANTS-q4_0}
bin="${LMP_BIN:-$root/bin}"
backends=$libdir
if [ -n "${LMP_LCPP_CPU:-}" ]; then
    [ -e "$libdir/libggml-cpu-$LMP_LCPP_CPU.so" ] || { echo "run.sh: no ggml-cpu variant '$LMP_LCPP_CPU' in $libdir" >&2; exit 2; }
    backends="$D/only-$LMP_LCPP_CPU"
    rm -rf "$backends"; mkdir -p "$backends"
    for f in "$libdir"/*; do
        case ${f##*/} in libggml-cpu-*) ;; *) ln -s "$f" "$backends/" ;; esac
    done
    ln -s "$libdir/libggml-cpu-$LMP_LCPP_CPU.so" "$backends/"
    nodevariants=""
fi
dir="$bd/smollm-360m"
tok="$root/tests/data/smollm-tokenizer/tokenizer.json"
if [ ! -e "$dir/config.json" ]; then
    "$bin/lmpack" mkmodel --like smollm-360m -o "$dir" >/dev/null
fi
lcpp_gguf "$dir" "$D/smollm-360m-q4_0.gguf" --tokenizer "$tok" --type q4_0 --embed q8_0
lcpp_gguf "$dir" "$D/smollm-360m-q4_0-pure.gguf" --tokenizer "$tok" --type q4_0 --embed q4_0

[ -n "${LMP_BENCH_BIN:-}" ] || { echo "| benchmark | value | unit | notes |"; echo "|---|---|---|---|"; }

stat3() {
    printf '%s\n' "$2" | sed -n "s/.*\"$1\": {\"med\": \([0-9.]*\), \"min\": \([0-9.]*\), \"max\": \([0-9.]*\)}.*/\1 \2 \3/p"
}
num() { printf '%s\n' "$2" | sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p"; }
str() { printf '%s\n' "$2" | sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p"; }
row() { # row NAME "M A B" UNIT NOTE
    m=${2%% *}; rest=${2#* }; lo=${rest%% *}; hi=${rest#* }
    echo "| $1 | $m | $3 | median of $reps, spread $lo..$hi; $4 |"
}

v=$("$D/llversion" "$libdir" 2>/dev/null || true)
echo "| llama.cpp build (node-llama-cpp $LCPP_VERSION prebuilt) | $(str llama_commit "$v") | commit | ggml $(str ggml_version "$v") (commit $(str ggml_commit "$v")), build number $(num llama_build_number "$v"), $(str compiler "$v"), $(str target "$v"); node-llama-cpp's llama.cpp release tag: $(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$D/node_modules/node-llama-cpp/llama/llama.cpp.info.json") |"
[ -n "$llbench" ] || echo "| llama.cpp via its C API (llbench) | - | - | unavailable: $llbench_why; only node-llama-cpp's rows follow |"

# rows NAME_PREFIX HOW OUTPUT T: the rows of one harness run
rows() {
    _d=$1; how=$2; out=$3; t=$4
    head=$(printf '%s\n' "$out" | sed -n 1p)
    r=$(printf '%s\n' "$out" | tail -n 1)
    oc=$(num other_cpu "$r")
    busy=${oc:+; other processes kept $oc of $(num cores "$r") cores busy meanwhile}
    dec=$(printf '%s\n' "$out" | grep '"prompt": 16,')
    row "$_d decode (16-token prompt, 128 greedy steps), $t thread(s)" "$(stat3 decode_tok_s "$dec")" tok/s "$how; wall clock; by CPU time $(stat3 decode_tok_s_cpu "$dec" | cut -d' ' -f1)$busy"
    row "$_d time to first token (16-token prompt), $t thread(s)" "$(stat3 ttft_ms "$dec")" ms "$how; model loaded, prompt batch + greedy pick"
    for p in 128 512; do
        l=$(printf '%s\n' "$out" | grep "\"prompt\": $p,")
        row "$_d prefill $p tokens, $t thread(s)" "$(stat3 prefill_tok_s "$l")" tok/s "$how; wall clock; by CPU time $(stat3 prefill_tok_s_cpu "$l" | cut -d' ' -f1)"
    done
    nr=$(num node_rss_before_llama_mb "$r")
    echo "| $_d peak RSS, 2048-token context, $t thread(s) | $(num peak_rss_mb "$r") | MB | $how; whole process${nr:+ (node alone: $nr MB before llama.cpp loaded)}; f16 KV cache (84 MB); file mmapped + repacked copy of the Q4_0 weights |"
    echo "| $_d load, $t thread(s) | $(num load_ms "$head") | ms | $how; llama_model_load_from_file (mmap + repack to q4_0_8x8), page cache warm |"
}

first=1
for var in $variants; do
    f="$D/smollm-360m-$var.gguf"
    mb=$(awk -v b="$(stat -L -c %s "$f")" 'BEGIN { printf "%.1f", b / 1e6 }')
    bpw=$(num bpw "$(cat "$f.json" 2>/dev/null)")
    case $var in
        q4_0) desc="llama.cpp Q4_0 (Q8_0 embedding)" ;;
        q4_0-pure) desc="llama.cpp Q4_0 --pure (Q4_0 embedding)" ;;
        *) desc="llama.cpp $var" ;;
    esac
    echo "| $desc file size | $mb | MB | $f; ${bpw:-?} bits/weight over all tensors (mkgguf; llama.cpp prints file bytes x 8 / weights) |"
    for t in $threads; do
        if [ "$first" = 1 ] && [ -z "${LMP_LCPP_CPU:-}" ]; then
            # which ggml-cpu variant runs, as node-llama-cpp loads it
            h=$(node "$root/bench/llamacpp/bench.mjs" --nlc "$D" --model "$f" --threads "$t" --reps 1 \
                --decode 1 --prompt 16 --ctx 256 --batch 16 | sed -n 1p)
            si=$(str system_info "$h" | sed 's/ *| *$//; s/ | /, /g')
            echo "| llama.cpp CPU backend picked at run time | $(printf '%s\n' "$h" | sed -n 's/.*"cpu_backend":\["\([^"]*\)".*/\1/p') | ggml-cpu variant | the libggml-cpu-*.so mapped into the process (variants shipped: $(ls "$libdir" | sed -n 's/^libggml-cpu-\(.*\)\.so$/\1/p' | tr '\n' ' ' | sed 's/ $//')); system_info: $si; flash attention $fa; Q4_0 weights repacked at load (CPU_REPACK -> q4_0_8x8): $(printf '%s\n' "$h" | grep -q 'q4_0_8x8' && echo yes || echo no) |"
            first=0
        fi
        if [ -n "$llbench" ]; then
            out=$("$llbench" "$backends" "$f" --threads "$t" --reps "$reps" --decode 128 --prompt 16 \
                --prompt 128 --prompt 512 --ctx 2048 --fa "$fa")
            rows "$desc" "llama.h C API, threadpool attached (as llama-bench), $(str cpu_backend "$(printf '%s\n' "$out" | sed -n 1p)")" "$out" "$t"
        fi
        case " $nodevariants " in *" $var "*)
            out=$(node "$root/bench/llamacpp/bench.mjs" --nlc "$D" --model "$f" --threads "$t" \
                --reps "$reps" --decode 128 --prompt 16 --prompt 128 --prompt 512 --ctx 2048 --fa "$fa")
            rows "$desc via node-llama-cpp" "node-llama-cpp addon calls (no threadpool attached)" "$out" "$t" ;;
        esac
    done
done
