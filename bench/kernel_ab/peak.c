/* Where the AVX-512 VNNI prefill kernel stands against the core's vpdpbusd
 * throughput (bench/kernel_ab/peak.sh builds and runs it).
 *   1. vpdpbusd zmm, 16 independent chains, register operands: the peak;
 *   2. the same with 64-byte L1 memory operands (the kernel's form);
 *   3. hexa_tokens alone (the kernel's 16-token inner step, weights fixed
 *      in registers, activations in L1), in a loop;
 *   4. the X16 kernel for 16 tokens over 256 rows of a 960-column ASYM g64
 *      matrix (138 KB, L2), as prefill runs it;
 *   5. the R16 kernel (q4_r16_avx512.c, the loaders' default) on the same
 *      matrix in LMP_Q4_LAYOUT_R16.
 * 3 and 4 include quantize/q4_avx512.c itself (peak.sh renames its
 * exported functions, so they do not clash with the library's), so they
 * time the code the runtime runs. Rates are per ns of thread CPU time; "units" are 64
 * weights x 1 token (one vpdpbusd each in 3 and 4, plus the partial last
 * hexa of a 960-column row: 16 computed per 15 real). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "quantize/q4_avx512.c"

static volatile float sink;

static double tns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

#define DR(r) "vpdpbusd %%zmm0,%%zmm1,%%zmm" #r "\n\t"
#define DM(r, o) "vpdpbusd " #o "(%0),%%zmm1,%%zmm" #r "\n\t"
#define CLOB "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
             "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17"

static double peak_reg(long n)
{
    double t0 = tns();
    for (long k = 0; k < n; k++)
        __asm__ volatile(DR(2) DR(3) DR(4) DR(5) DR(6) DR(7) DR(8) DR(9) DR(10) DR(11) DR(12)
                             DR(13) DR(14) DR(15) DR(16) DR(17)::
                                 : CLOB);
    return 16.0 * (double)n / (tns() - t0);
}

static double peak_mem(const void *buf, long n)
{
    double t0 = tns();
    for (long k = 0; k < n; k++)
        __asm__ volatile(DM(2, 0) DM(3, 64) DM(4, 128) DM(5, 192) DM(6, 256) DM(7, 320)
                             DM(8, 384) DM(9, 448) DM(10, 512) DM(11, 576) DM(12, 640)
                                 DM(13, 704) DM(14, 768) DM(15, 832) DM(16, 896) DM(17, 960)::"r"(buf)
                         : CLOB);
    return 16.0 * (double)n / (tns() - t0);
}

static __attribute__((noinline)) void tokens_loop(const lmp_q4_act *a, long reps, float *out)
{
    __m512i lo[4], hi[4];
    for (int j = 0; j < 4; j++) {
        lo[j] = _mm512_set1_epi8((char)(3 + j));
        hi[j] = _mm512_set1_epi8((char)(5 + j));
    }
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (long r = 0; r < reps; r++) {
        __asm__ volatile("" : "+v"(lo[0]), "+v"(hi[0]));
        hexa_tokens(lo, hi, _mm512_set1_ps(1.0f), a, 0, 16, (int)(r & 1), acc);
    }
    for (int i = 0; i < 16; i++) out[i] = hsum16(acc[i]);
}

int main(void)
{
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vnni")) {
        printf("no AVX-512 VNNI on this CPU: nothing to measure\n");
        return 0;
    }
    enum { ROWS = 256, COLS = 960, T = 16 };
    void *buf = aligned_alloc(64, 4096);
    for (int i = 0; i < 4096; i++) ((unsigned char *)buf)[i] = (unsigned char)i;
    /* a 960-column ASYM g64 matrix and 16 tokens of activations */
    lmp_diag d;
    size_t rb = lmp_q4_row_bytes(COLS, 64, LMP_Q4_ASYM);
    float *w = malloc(sizeof(float) * ROWS * COLS), *x = malloc(sizeof(float) * COLS * T);
    float *y = malloc(sizeof(float) * ROWS * T), out[16];
    unsigned s = 1;
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++) {
        s = s * 1103515245u + 12345u;
        w[i] = (float)((s >> 8) % 2000) / 1000.0f - 1.0f;
    }
    for (size_t i = 0; i < (size_t)COLS * T; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((s >> 8) % 2000) / 1000.0f - 1.0f;
    }
    uint8_t *q = aligned_alloc(64, (rb * ROWS + 63) / 64 * 64);
    lmp_mat m;
    if (lmp_q4_quantize(w, ROWS, COLS, 64, LMP_Q4_ASYM, LMP_Q4_SEARCH, q, NULL, "w", &d) != LMP_OK ||
        lmp_q4_mat_init(&m, ROWS, COLS, 64, LMP_Q4_ASYM, q, &d) != LMP_OK) {
        fprintf(stderr, "peak: %s\n", d.msg);
        return 1;
    }
    lmp_q4_pack_x16(q, q, ROWS, COLS, 64, LMP_Q4_ASYM);
    m.layout = LMP_Q4_LAYOUT_X16;
    void *ab = malloc(lmp_q4_act_prep_bytes(&m, T));
    const lmp_q4_act *a = lmp_q4_act_prep(&m, x, T, ab, 1);
    uint8_t *q16 = aligned_alloc(64, (rb * ROWS + 63) / 64 * 64);
    lmp_mat m16;
    if (lmp_q4_quantize(w, ROWS, COLS, 64, LMP_Q4_ASYM, LMP_Q4_SEARCH, q16, NULL, "w", &d) != LMP_OK ||
        lmp_q4_mat_init(&m16, ROWS, COLS, 64, LMP_Q4_ASYM, q16, &d) != LMP_OK ||
        !lmp_q4_pack_r16(q16, q16, ROWS, COLS, 64, LMP_Q4_ASYM)) {
        fprintf(stderr, "peak: R16 matrix: %s\n", d.msg);
        return 1;
    }
    m16.layout = LMP_Q4_LAYOUT_R16;
    void *ab16 = malloc(lmp_q4_act_prep_bytes(&m16, T));
    const lmp_q4_act *a16 = lmp_q4_act_prep(&m16, x, T, ab16, 1);

    double best[5] = {0, 0, 0, 0, 0};
    for (int round = 0; round < 5; round++) {
        double r0 = peak_reg(20000000), r1 = peak_mem(buf, 20000000);
        double t0 = tns();
        tokens_loop(a, 2000000, out);
        double r2 = 2000000.0 * 16 * 8 / (tns() - t0);
        t0 = tns();
        for (int k = 0; k < 200; k++) lmp_q4_rows_avx512(&m, a, 0, ROWS, y);
        double r3 = 200.0 * ROWS * T * (COLS / 64) / (tns() - t0);
        t0 = tns();
        for (int k = 0; k < 200; k++) lmp_q4_rows_r16_avx512(&m16, a16, 0, ROWS, y);
        double r4 = 200.0 * ROWS * T * (COLS / 64) / (tns() - t0);
        double v[5] = {r0, r1, r2, r3, r4};
        for (int i = 0; i < 5; i++)
            if (v[i] > best[i]) best[i] = v[i];
    }
    printf("| measurement | per ns | of the register peak |\n|---|---|---|\n");
    const char *names[5] = {"vpdpbusd zmm, 16 chains, register operands",
                            "vpdpbusd zmm, 16 chains, L1 memory operands",
                            "hexa_tokens alone, 16 tokens (units = vpdpbusd)",
                            "X16 prefill kernel, 16 tokens x [256 x 960] (real units)",
                            "R16 prefill kernel, 16 tokens x [256 x 960] (real units)"};
    for (int i = 0; i < 5; i++)
        printf("| %s | %.2f | %.0f %% |\n", names[i], best[i], 100.0 * best[i] / best[0]);
    sink = out[0] + y[0]; /* keep the results alive */
    printf("(best of 5 rounds)\n");
    return 0;
}
