/* Grouped int4 / int8 kernels: matrix-vector speed (decode) on
 * SmolLM-360M shapes, prefill throughput, and quantizer throughput.
 *
 * Weights are streamed from RAM, not cache: enough copies of the matrix
 * are cycled to exceed the last-level cache (like a decode step that reads
 * every layer once). Prints rows of "| benchmark | value | unit | notes |".
 * Usage: bench_q4 [--quick]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pool.h"
#include "quantize/q4.h"

#include "bench/bench_util.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float rnd_gauss(void)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        g_rng ^= g_rng << 13;
        g_rng ^= g_rng >> 7;
        g_rng ^= g_rng << 17;
        u[i] = ((double)(g_rng >> 11) + 1.0) / 9007199254740993.0;
    }
    return (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

/* Median seconds per matmul over `reps` calls cycling through the copies;
 * *cpu: median CPU time of the calling thread (meaningful with 1 thread on a
 * loaded machine, where wall time includes waiting for a core). */
static double time_mm(const lmp_mat *mats, int ncopy, const float *x, int n, float *y,
                      lmp_pool *pool, int reps, int scalar, double *cpu)
{
    double t[64], c[64];
    if (reps > 64) reps = 64;
    lmp_q4_force_scalar(scalar);
    for (int i = 0; i < reps; i++) {
        const lmp_mat *m = &mats[i % ncopy];
        double c0 = bench_thread_cpu_s(), t0 = bench_wall_s();
        if (m->kind == LMP_MAT_Q8)
            lmp_q8_matmul(m, x, n, y, pool);
        else
            lmp_q4_matmul(m, x, n, y, pool);
        t[i] = bench_wall_s() - t0;
        c[i] = bench_thread_cpu_s() - c0;
    }
    lmp_q4_force_scalar(0);
    qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
    qsort(c, (size_t)reps, sizeof *c, bench_cmp_double);
    *cpu = c[reps / 2];
    return t[reps / 2];
}

static void bench_shape(int rows, int cols, int group, int scheme, lmp_pool **pools, int quick)
{
    size_t rb = lmp_q4_row_bytes(cols, group, scheme), mbytes = rb * (size_t)rows;
    /* cycle >= 96 MB of weights so each call reads from RAM */
    int ncopy = (int)((96u << 20) / mbytes) + 1;
    if (ncopy > 48) ncopy = 48;
    float *w = malloc(sizeof(float) * (size_t)rows * cols);
    float *x = malloc(sizeof(float) * (size_t)cols * 16);
    float *y = malloc(sizeof(float) * (size_t)rows * 16);
    uint8_t *q = malloc(mbytes * (size_t)ncopy);
    lmp_mat *mats = calloc((size_t)ncopy, sizeof *mats);
    if (!w || !x || !y || !q || !mats) {
        fprintf(stderr, "bench_q4: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = 0.02f * rnd_gauss();
    for (int i = 0; i < cols * 16; i++) x[i] = rnd_gauss();
    lmp_diag d;
    if (lmp_q4_quantize(w, rows, cols, group, scheme, LMP_Q4_SEARCH, q, pools[1], "w", &d) != LMP_OK) {
        fprintf(stderr, "bench_q4: %s\n", d.msg);
        exit(1);
    }
    for (int c = 0; c < ncopy; c++) {
        if (c) memcpy(q + (size_t)c * mbytes, q, mbytes);
        lmp_q4_mat_init(&mats[c], rows, cols, group, scheme, q + (size_t)c * mbytes, &d);
    }
    char name[96];
    snprintf(name, sizeof name, "%s g%d [%d x %d]", lmp_q4_scheme_name(scheme), group, rows, cols);
    /* simd 2: AVX-512 VNNI (int4 only), 1: AVX2, 0: scalar */
    int top = lmp_q4_simd_active() ? (lmp_q4_avx512_active() && scheme != LMP_Q4_Q8 ? 2 : 1) : 0;
    for (int simd = top; simd >= 0; simd--)
        for (int th = 1; th <= 2; th++) {
            if (!simd && (quick || th == 2)) continue;
            int prev512 = lmp_q4_allow_avx512(simd == 2);
            int reps = simd ? (quick ? 9 : 31) : 5;
            double c, s = time_mm(mats, ncopy, x, 1, y, pools[th - 1], reps, !simd, &c);
            lmp_q4_allow_avx512(prev512);
            char extra[64] = "";
            if (th == 1)
                snprintf(extra, sizeof extra, ", %.1f GB/s by CPU time", (double)mbytes / c / 1e9);
            printf("| q4 matvec %s %s %dT | %.1f | GB/s | %.1f GFLOP/s, %.0f us/call, %.3f bpw%s |\n",
                   name, simd == 2 ? "avx512" : simd ? "avx2" : "scalar", th, (double)mbytes / s / 1e9,
                   2.0 * rows * cols / s / 1e9, s * 1e6, 8.0 * (double)rb / cols, extra);
        }
    for (int simd = top; simd >= 1 && !quick; simd--) {
        /* prefill: 16 tokens per call, weights reused across tokens */
        int prev512 = lmp_q4_allow_avx512(simd == 2);
        double c, s = time_mm(mats, ncopy, x, 16, y, pools[1], 9, 0, &c);
        lmp_q4_allow_avx512(prev512);
        printf("| q4 prefill16 %s %s 2T | %.1f | GFLOP/s | %.0f us/call |\n", name,
               simd == 2 ? "avx512" : "avx2", 2.0 * rows * cols * 16 / s / 1e9, s * 1e6);
    }
    free(w);
    free(x);
    free(y);
    free(q);
    free(mats);
}

static void bench_quantize(int rows, int cols, int group, int scheme, lmp_pool **pools)
{
    size_t rb = lmp_q4_row_bytes(cols, group, scheme);
    float *w = malloc(sizeof(float) * (size_t)rows * cols);
    uint8_t *q = malloc(rb * (size_t)rows);
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = 0.02f * rnd_gauss();
    for (int th = 1; th <= 2; th++)
        for (int m = LMP_Q4_MINMAX; m <= LMP_Q4_SEARCH; m++) {
            lmp_diag d;
            double t0 = bench_wall_s(), c0 = bench_thread_cpu_s();
            lmp_q4_quantize(w, rows, cols, group, scheme, (lmp_q4_method)m, q, pools[th - 1], "w", &d);
            double s = bench_wall_s() - t0, c = bench_thread_cpu_s() - c0;
            if (th == 1) s = c; /* one thread: CPU time, robust to a loaded machine */
            printf("| q4 quantize %s g%d [%d x %d] %s %dT | %.0f | MB/s f32 in | %.2f s per 1e9 "
                   "weights%s |\n",
                   lmp_q4_scheme_name(scheme), group, rows, cols, m ? "search" : "minmax", th,
                   4.0 * rows * cols / s / 1e6, s / ((double)rows * cols) * 1e9,
                   th == 1 ? " (CPU time)" : " (wall)");
        }
    free(w);
    free(q);
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    if (argc > 1 && !quick) {
        printf("usage: bench_q4 [--quick]\n");
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    lmp_pool *pools[2];
    lmp_diag d;
    if (lmp_pool_create(&pools[0], 1, &d) != LMP_OK || lmp_pool_create(&pools[1], 2, &d) != LMP_OK) {
        fprintf(stderr, "bench_q4: %s\n", d.msg);
        return 1;
    }
    bench_shape(2560, 960, 32, LMP_Q4_SYM, pools, quick);
    bench_shape(960, 2560, 32, LMP_Q4_SYM, pools, quick);
    bench_shape(2560, 960, 64, LMP_Q4_ASYM, pools, quick);
    bench_shape(960, 2560, 128, LMP_Q4_SYM, pools, quick);
    bench_shape(49152, 960, 32, LMP_Q4_SYM, pools, quick);
    bench_shape(49152, 960, 32, LMP_Q4_Q8, pools, quick);
    bench_quantize(960, 2560, 32, LMP_Q4_SYM, pools);
    bench_quantize(960, 2560, 64, LMP_Q4_ASYM, pools);
    lmp_pool_close(pools[0]);
    lmp_pool_close(pools[1]);
    return 0;
}
