/* Matmul kernel throughput on SmolLM-360M shapes, measured in thread CPU
 * time (robust on a shared machine): prefill GFLOP/s (n = 128 tokens) and
 * decode GB/s of weights streamed (n = 1), one thread. Prints table rows. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/mat.h"

#include "bench/bench_util.h"

int main(int argc, char **argv)
{
    int R = 2560, C = 960;
    const int N = 128;
    if (argc == 3) {
        R = atoi(argv[1]);
        C = atoi(argv[2]);
    }
    if (R < 1 || C < 1) return 2;
    float *w = malloc((size_t)R * C * sizeof(float) * 8), *x = malloc((size_t)N * C * 4),
          *y = malloc((size_t)N * R * 4);
    if (!w || !x || !y) return 1;
    for (size_t i = 0; i < (size_t)R * C * 8; i++) w[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < (size_t)N * C; i++) x[i] = (float)(i % 7) / 7.0f;
    lmp_mat m = {LMP_MAT_F32, R, C, 0, 0, (size_t)C * 4, w, 0};
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = (1e3 * bench_thread_cpu_s());
        lmp_mat_mul(&m, x, N, y, NULL);
        double t = (1e3 * bench_thread_cpu_s()) - t0;
        if (t < best) best = t;
    }
    printf("| matmul f32 prefill %dx%d, %d tokens, 1 thread (cpu time) | %.1f | GFLOP/s | simd %d |\n", R, C, N,
           2.0 * R * C * N / best / 1e6, lmp_mat_simd_active());
    /* decode: stream 8 different matrices (78 MB) so nothing stays cached */
    best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = (1e3 * bench_thread_cpu_s());
        for (int k = 0; k < 8; k++) {
            lmp_mat mk = m;
            mk.data = w + (size_t)k * R * C;
            lmp_mat_mul(&mk, x, 1, y, NULL);
        }
        double t = (1e3 * bench_thread_cpu_s()) - t0;
        if (t < best) best = t;
    }
    printf("| matmul f32 decode (n=1), 1 thread (cpu time) | %.1f | GB/s | weights streamed from RAM |\n",
           8.0 * R * C * 4 / best / 1e6);
    free(w);
    free(x);
    free(y);
    return 0;
}
