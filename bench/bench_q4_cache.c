/* Grouped int4 kernel speed with the weights in cache (L2): the compute
 * cost of the AVX2 and AVX-512 VNNI paths without the memory stream, in ns
 * per 64 weights per token, by thread CPU time (best of 5 rounds), one
 * thread. Prints rows of "| benchmark | value | unit | notes |".
 * Usage: bench_q4_cache [ROWS COLS GROUP SCHEME TOKENS REPS]
 *   (scheme sym|asym; without arguments: the SmolLM-360M shapes, decode
 *   and prefill 16/128 tokens, asym g64)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantize/q4.h"

#include "bench/bench_util.h"

static void run(int rows, int cols, int group, int scheme, int n, int reps)
{
    size_t rb = lmp_q4_row_bytes(cols, group, scheme);
    float *w = malloc(sizeof(float) * (size_t)rows * cols), *x = malloc(sizeof(float) * (size_t)cols * n),
          *y = malloc(sizeof(float) * (size_t)rows * n);
    uint8_t *q = malloc(rb * (size_t)rows);
    if (!w || !x || !y || !q || !rb) {
        fprintf(stderr, "bench_q4_cache: out of memory or bad shape\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = 0.02f * sinf(0.37f * (float)i);
    for (size_t i = 0; i < (size_t)cols * n; i++) x[i] = cosf(0.11f * (float)i);
    lmp_diag d;
    lmp_mat m;
    if (lmp_q4_quantize(w, rows, cols, group, scheme, LMP_Q4_MINMAX, q, NULL, "w", &d) != LMP_OK ||
        lmp_q4_mat_init(&m, rows, cols, group, scheme, q, &d) != LMP_OK) {
        fprintf(stderr, "bench_q4_cache: %s\n", d.msg);
        exit(1);
    }
    for (int p = 1; p >= 0; p--) {
        int prev = lmp_q4_allow_avx512(p);
        if (p && !lmp_q4_avx512_active()) {
            lmp_q4_allow_avx512(prev);
            continue;
        }
        double best = 1e30;
        for (int k = 0; k < 5; k++) {
            double c0 = bench_thread_cpu_s();
            for (int r = 0; r < reps; r++) lmp_q4_matmul(&m, x, n, y, NULL);
            double c = (bench_thread_cpu_s() - c0) / reps;
            if (c < best) best = c;
        }
        lmp_q4_allow_avx512(prev);
        printf("| q4 in-cache %s g%d [%d x %d] %d tok %s | %.3f | ns per 64 weights per token | "
               "%.1f us/call, CPU time |\n",
               lmp_q4_scheme_name(scheme), group, rows, cols, n, p ? "avx512" : "avx2",
               best * 1e9 / ((double)rows * cols * n / 64), best * 1e6);
    }
    free(w);
    free(x);
    free(y);
    free(q);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        printf("usage: bench_q4_cache [ROWS COLS GROUP sym|asym TOKENS REPS]\n");
        return 0;
    }
    if (argc == 7) {
        int scheme = lmp_q4_scheme_from_name(argv[4]);
        int rows = atoi(argv[1]), cols = atoi(argv[2]), group = atoi(argv[3]), n = atoi(argv[5]),
            reps = atoi(argv[6]);
        if ((scheme != LMP_Q4_SYM && scheme != LMP_Q4_ASYM) || rows < 1 || n < 1 || reps < 1 ||
            !lmp_q4_params_ok(cols, group, scheme)) {
            fprintf(stderr, "bench_q4_cache: bad arguments (try --help)\n");
            return 2;
        }
        run(rows, cols, group, scheme, n, reps);
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: bench_q4_cache [ROWS COLS GROUP sym|asym TOKENS REPS]\n");
        return 2;
    }
    if (!lmp_q4_simd_active()) {
        printf("| q4 in-cache | - | - | no AVX2 on this CPU |\n");
        return 0;
    }
    run(1024, 960, 64, LMP_Q4_ASYM, 1, 500);
    run(384, 2560, 64, LMP_Q4_ASYM, 1, 500);
    run(256, 960, 64, LMP_Q4_ASYM, 16, 100);
    run(256, 960, 64, LMP_Q4_ASYM, 128, 20);
    run(96, 2560, 64, LMP_Q4_ASYM, 128, 20);
    return 0;
}
