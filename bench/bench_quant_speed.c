/* Quantizer throughput per core: lmp_q4_quantize_row on Gaussian weights of
 * SmolLM-360M shapes, one thread, CPU time (robust on a loaded machine),
 * scalar reference vs the run-time-selected SIMD path (ASYM: AVX-512 when
 * lmp_cpu_avx512(), LMP_CPU=avx2 for the AVX2 one), MB/s of f32 input.
 * Also checks that both paths give the same bytes (exit 1 otherwise).
 * Prints rows of "| benchmark | value | unit | notes |".
 * Usage: bench_quant_speed [--quick]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cpu.h"
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

/* Median CPU seconds of quantizing all rows, over reps runs. */
static double run(const float *w, int rows, int cols, int group, int scheme, lmp_q4_method m,
                  uint8_t *q, int scalar, int reps)
{
    double t[16];
    size_t rb = lmp_q4_row_bytes(cols, group, scheme);
    lmp_q4_force_scalar(scalar);
    for (int r = 0; r < reps; r++) {
        double c0 = bench_thread_cpu_s();
        for (int i = 0; i < rows; i++)
            lmp_q4_quantize_row(w + (size_t)i * cols, cols, group, scheme, m, q + (size_t)i * rb);
        t[r] = bench_thread_cpu_s() - c0;
    }
    lmp_q4_force_scalar(0);
    qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
    return t[reps / 2];
}

static int bench(int rows, int cols, int group, int scheme, lmp_q4_method m, int reps)
{
    size_t rb = lmp_q4_row_bytes(cols, group, scheme), n = (size_t)rows * cols;
    float *w = malloc(sizeof(float) * n);
    uint8_t *q0 = malloc(rb * (size_t)rows), *q1 = malloc(rb * (size_t)rows);
    if (!w || !q0 || !q1) return 1;
    for (size_t i = 0; i < n; i++) w[i] = 0.02f * rnd_gauss();
    int simd = lmp_q4_simd_active();
    double ts = run(w, rows, cols, group, scheme, m, q0, 1, reps);
    double tv = simd ? run(w, rows, cols, group, scheme, m, q1, 0, reps) : ts;
    int same = !simd || memcmp(q0, q1, rb * (size_t)rows) == 0;
    const char *mn = m == LMP_Q4_SEARCH ? "search" : "minmax";
    printf("| quantize %s g%d %s [%d x %d] scalar | %.0f | MB/s f32 in, 1 core | CPU time, median "
           "of %d |\n",
           lmp_q4_scheme_name(scheme), group, mn, rows, cols, 4.0 * (double)n / ts / 1e6, reps);
    if (simd)
        printf("| quantize %s g%d %s [%d x %d] %s | %.0f | MB/s f32 in, 1 core | CPU time, "
               "median of %d; bytes %s scalar |\n",
               lmp_q4_scheme_name(scheme), group, mn, rows, cols,
               lmp_cpu_avx512() && scheme == LMP_Q4_ASYM ? "AVX-512" : "AVX2",
               4.0 * (double)n / tv / 1e6, reps,
               same ? "identical to" : "DIFFER from");
    free(w);
    free(q0);
    free(q1);
    return same ? 0 : 1;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    if (argc > 1 && !quick) {
        printf("usage: bench_quant_speed [--quick]\n");
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    int reps = quick ? 1 : 3, bad = 0;
    bad |= bench(960, 2560, 64, LMP_Q4_ASYM, LMP_Q4_SEARCH, reps);
    bad |= bench(2560, 960, 128, LMP_Q4_ASYM, LMP_Q4_SEARCH, reps);
    bad |= bench(960, 2560, 64, LMP_Q4_ASYM, LMP_Q4_MINMAX, reps);
    bad |= bench(960, 2560, 32, LMP_Q4_SYM, LMP_Q4_SEARCH, reps);
    return bad;
}
