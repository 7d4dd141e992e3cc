/* Attention kernel alone, one layer of a SmolLM-360M-shaped model (15 query
 * heads, 5 KV heads, head_dim 64), one thread: the work a prompt of N tokens
 * does in one layer (pieces of 64 tokens, each token attending to every
 * position up to its own), and one decode step at position N.
 *
 *   bench_attn [--tokens N] [--reps R] [--decode-only] [--heads H --kv-heads K --head-dim D]
 *
 * Prints CPU seconds (median of R) and query-position pairs per second.
 * Uses the AVX-512 tile where the CPU has it (LMP_CPU=avx2: the AVX2 one). For
 * repeatable numbers run it under `valgrind --tool=callgrind
 * --toggle-collect=lmp_attn_*` (instruction counts do not depend on load). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "common/cpu.h"
#include "runtime/mat.h"
#include "runtime/mat_impl.h"

#define PIECE 64

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float urand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 4503599627370496.0 - 1.0);
}

typedef struct {
    int nh, nkv, hd, ctx, rows;
    float *kc, *vc, *q, *out, *scratch;
} work;

/* n tokens at positions [pos, pos+n): tiles of up to --rows rows (default 48; tokens x the
 * query heads of one KV head), as runtime/forward.c cuts them. */
static void run_piece(work *w, int n, int pos)
{
    int g = w->nh / w->nkv, tt = g < w->rows ? w->rows / g : 1;
    size_t qdim = (size_t)w->nh * w->hd;
    for (int t0 = 0; t0 < n; t0 += tt)
        for (int kvh = 0; kvh < w->nkv; kvh++) {
            size_t base = (size_t)kvh * (size_t)w->ctx * w->hd;
            size_t row0 = (size_t)t0 * qdim + (size_t)kvh * g * w->hd;
            lmp_attn_tile a = {.q = w->q + row0, .q_tok = qdim, .out = w->out + row0,
                               .out_tok = qdim, .ntok = n - t0 < tt ? n - t0 : tt, .nhead = g,
                               .np0 = pos + t0 + 1, .hd = w->hd,
                               .scale = (float)(1.0 / sqrt((double)w->hd)), .k = w->kc + base,
                               .v = w->vc + base, .sc = w->scratch, .sc_stride = (size_t)w->ctx};
            (lmp_cpu_avx512() ? lmp_attn_tile_avx512 : lmp_attn_tile_avx2)(&a);
        }
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    int tokens = 2048, reps = 3, decode_only = 0;
    work w = {.nh = 15, .nkv = 5, .hd = 64, .rows = 48};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--heads") && i + 1 < argc) w.nh = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kv-heads") && i + 1 < argc) w.nkv = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--head-dim") && i + 1 < argc) w.hd = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode-only")) decode_only = 1;
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) w.rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--help")) {
            printf("usage: bench_attn [--tokens N] [--reps R] [--decode-only] [--heads H]"
                   " [--kv-heads K] [--head-dim D]\n");
            return 0;
        } else {
            fprintf(stderr, "bench_attn: unknown argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (tokens < 1 || reps < 1 || w.nh < 1 || w.nkv < 1 || w.nh % w.nkv || w.hd < 1) {
        fprintf(stderr, "bench_attn: bad sizes\n");
        return 2;
    }
    if (!lmp_mat_simd_active()) {
        fprintf(stderr, "bench_attn: no AVX2/FMA on this CPU\n");
        return 1;
    }
    w.ctx = (tokens + 1 + LMP_ATTN_KB - 1) / LMP_ATTN_KB * LMP_ATTN_KB;
    size_t cache = (size_t)w.nkv * w.ctx * w.hd;
    w.kc = malloc(cache * sizeof(float));
    w.vc = malloc(cache * sizeof(float));
    w.q = malloc((size_t)PIECE * w.nh * w.hd * sizeof(float));
    w.out = malloc((size_t)PIECE * w.nh * w.hd * sizeof(float));
    w.scratch = malloc((size_t)w.ctx * (size_t)(w.nh > w.rows ? w.nh : w.rows) * sizeof(float));
    if (!w.kc || !w.vc || !w.q || !w.out || !w.scratch) return 1;
    for (size_t i = 0; i < cache; i++) {
        w.kc[i] = urand();
        w.vc[i] = urand();
    }
    for (size_t i = 0; i < (size_t)PIECE * w.nh * w.hd; i++) w.q[i] = urand();

    double *tp = malloc(sizeof(double) * (size_t)reps), *td = malloc(sizeof(double) * (size_t)reps);
    double check = 0.0;
    for (int r = 0; r < reps; r++) {
        tp[r] = 0.0;
        if (!decode_only) {
            double t0 = bench_thread_cpu_s();
            for (int p0 = 0; p0 < tokens; p0 += PIECE)
                run_piece(&w, tokens - p0 < PIECE ? tokens - p0 : PIECE, p0);
            tp[r] = bench_thread_cpu_s() - t0;
            check += w.out[0];
        }
        double t0 = bench_thread_cpu_s();
        for (int i = 0; i < 100; i++) run_piece(&w, 1, tokens);
        td[r] = (bench_thread_cpu_s() - t0) / 100;
        check += w.out[0];
    }
    printf("kernel: %s\n", lmp_cpu_avx512() ? "avx512" : "avx2");
    double pairs = (double)tokens * (tokens + 1) / 2 * w.nh;
    double mp = median(tp, reps), md = median(td, reps);
    if (!decode_only)
        printf("attention prefill %d tokens, 1 layer, 1 thread: %.4f s CPU, %.1f M query-positions/s\n",
               tokens, mp, pairs / mp * 1e-6);
    printf("attention decode at position %d, 1 layer, 1 thread: %.2f us CPU, %.1f M query-positions/s\n",
           tokens, md * 1e6, (double)(tokens + 1) * w.nh / md * 1e-6);
    fprintf(stderr, "(checksum %g)\n", check);
    free(tp);
    free(td);
    free(w.kc);
    free(w.vc);
    free(w.q);
    free(w.out);
    free(w.scratch);
    return 0;
}
