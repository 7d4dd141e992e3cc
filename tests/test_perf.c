/* Fast paths added for speed (docs/PERFORMANCE.md) against independent
 * references:
 *  - the AVX2 attention (runtime/attn_avx2.c: 4-position score chains,
 *    polynomial exp, one-pass V sum) against softmax attention computed
 *    here in double precision, on head sizes that take each code path
 *    (64 and 128 specialised, 48 generic vector, 20 scalar tails) and
 *    position counts with every tail length, including scores so spread
 *    that most weights underflow to zero;
 *  - the thread pool's hand-off with and without spinning
 *    (LMP_POOL_SPIN_US): every task index runs exactly once per run, over
 *    many back-to-back runs of different sizes. */
#include <check.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common/pool.h"
#include "runtime/mat.h"
#include "runtime/mat_impl.h"

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static float urand(void) /* uniform in [-1, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 4503599627370496.0 - 1.0);
}

/* softmax(q.K * scale) V in double. */
static void attn_double(const float *q, const float *K, const float *V, int np, int hd,
                        double scale, double *out)
{
    double *s = malloc(sizeof(double) * (size_t)np), mx = -INFINITY, sum = 0.0;
    for (int p = 0; p < np; p++) {
        double d = 0.0;
        for (int i = 0; i < hd; i++) d += (double)q[i] * K[(size_t)p * hd + i];
        s[p] = d * scale;
        if (s[p] > mx) mx = s[p];
    }
    for (int p = 0; p < np; p++) sum += (s[p] = exp(s[p] - mx));
    for (int i = 0; i < hd; i++) {
        double o = 0.0;
        for (int p = 0; p < np; p++) o += s[p] / sum * V[(size_t)p * hd + i];
        out[i] = o;
    }
    free(s);
}

START_TEST(attention_avx2_matches_double_softmax)
{
    if (!lmp_mat_simd_active()) return; /* no AVX2/FMA: the path is never used */
    static const int hds[] = {64, 128, 48, 20};
    static const int nps[] = {1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17, 31, 33, 300, 1001};
    static const float spreads[] = {1.0f, 30.0f}; /* 30: scores over ~100s of nats */
    for (size_t a = 0; a < sizeof hds / sizeof *hds; a++)
        for (size_t b = 0; b < sizeof nps / sizeof *nps; b++)
            for (size_t c = 0; c < 2; c++) {
                int hd = hds[a], np = nps[b];
                float *q = malloc(sizeof(float) * (size_t)hd);
                float *K = malloc(sizeof(float) * (size_t)hd * np);
                float *V = malloc(sizeof(float) * (size_t)hd * np);
                float *sc = malloc(sizeof(float) * (size_t)np), *out = malloc(sizeof(float) * (size_t)hd);
                double *ref = malloc(sizeof(double) * (size_t)hd);
                for (int i = 0; i < hd; i++) q[i] = urand() * spreads[c];
                for (int i = 0; i < hd * np; i++) {
                    K[i] = urand();
                    V[i] = urand();
                }
                double scale = 1.0 / sqrt((double)hd);
                lmp_attn_head_avx2(q, K, V, np, hd, (float)scale, sc, out);
                attn_double(q, K, V, np, hd, scale, ref);
                /* float scores of magnitude up to ~|q||k| carry ~1e-7 relative
                 * error each, amplified by exp: allow 2e-5 of the V range plus
                 * that amplification for the wide spread */
                double tol = c == 0 ? 2e-5 : 2e-4;
                for (int i = 0; i < hd; i++)
                    ck_assert_msg(fabs(out[i] - ref[i]) <= tol,
                                  "hd %d np %d spread %g: out[%d] = %.9g, double %.9g", hd, np,
                                  (double)spreads[c], i, (double)out[i], ref[i]);
                free(q);
                free(K);
                free(V);
                free(sc);
                free(out);
                free(ref);
            }
}
END_TEST

typedef struct {
    atomic_int *hits;
} count_ctx;

static void count_task(void *ctx, int task, int tid)
{
    (void)tid;
    count_ctx *c = ctx;
    atomic_fetch_add(&c->hits[task], 1);
}

static void pool_exactly_once(const char *spin)
{
    setenv("LMP_POOL_SPIN_US", spin, 1);
    lmp_pool *p = NULL;
    lmp_diag d = {0};
    ck_assert_int_eq(lmp_pool_create(&p, 3, &d), LMP_OK);
    unsetenv("LMP_POOL_SPIN_US");
    enum { MAXT = 257 };
    atomic_int hits[MAXT];
    count_ctx c = {hits};
    for (int run = 0; run < 2000; run++) {
        int n = 1 + (run * 37) % MAXT;
        for (int i = 0; i < n; i++) atomic_init(&hits[i], 0);
        lmp_pool_run(p, count_task, &c, n);
        for (int i = 0; i < n; i++)
            ck_assert_msg(atomic_load(&hits[i]) == 1, "spin %s run %d: task %d ran %d times", spin,
                          run, i, atomic_load(&hits[i]));
    }
    lmp_pool_close(p);
}

START_TEST(pool_runs_every_task_once_sleeping)
{
    pool_exactly_once("0");
}
END_TEST

START_TEST(pool_runs_every_task_once_spinning)
{
    pool_exactly_once("200");
}
END_TEST

Suite *lmp_suite_perf(void)
{
    Suite *s = suite_create("perf");
    TCase *tc = tcase_create("fast paths");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, attention_avx2_matches_double_softmax);
    tcase_add_test(tc, pool_runs_every_task_once_sleeping);
    tcase_add_test(tc, pool_runs_every_task_once_spinning);
    suite_add_tcase(s, tc);
    return s;
}
