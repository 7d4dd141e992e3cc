/* The fused forward pass (runtime/forward.c, one gang run per piece) and the
 * pool's gang runs and barrier (common/pool.c).
 *
 * Expectations: the fused path must give exactly the bits of the pool-run
 * path (lmp_forward_set_fused(0), one thread), which the golden tests of
 * test_runtime tie to transformers; for the float32 and the int4
 * stories260k, 1-3 threads, SIMD on and off, prefill of 70 tokens (two
 * pieces of PIECE=64) with logits for all tokens or the last one, and
 * token-by-token decode. A wrong RoPE position, a missed chunk, a skipped
 * barrier or a residual added twice changes the logits. */
#include <check.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/pool.h"
#include "quantize/q4.h"
#include "runtime/forward.h"
#include "runtime/mat.h"
#include "runtime/model.h"
#include "tests/testutil.h"

static lmp_mat quant_view(const lmp_mat *src, void **buf)
{
    lmp_diag d;
    lmp_mat m;
    size_t rb = lmp_q4_row_bytes(src->cols, LMP_Q4_DEFAULT_GROUP, LMP_Q4_DEFAULT_SCHEME);
    *buf = malloc(rb * src->rows);
    ck_assert_int_eq(lmp_q4_quantize(src->data, src->rows, src->cols, LMP_Q4_DEFAULT_GROUP,
                                     LMP_Q4_DEFAULT_SCHEME, LMP_Q4_SEARCH, *buf, NULL, "w", &d),
                     LMP_OK);
    ck_assert_int_eq(lmp_q4_mat_init(&m, src->rows, src->cols, LMP_Q4_DEFAULT_GROUP,
                                     LMP_Q4_DEFAULT_SCHEME, *buf, &d),
                     LMP_OK);
    return m;
}

enum { N = 70, CTX = 80 };

/* logits[N][V] of ids through lmp_forward: mode 0 one call with all logits,
 * mode 1 one call per piece of 33 / 37 tokens (last logits only, written to
 * row N-1), mode 2 token by token (last logits of each step). */
static void run(const lmp_model *m, int threads, int fused, int mode, const int *ids, float *out)
{
    lmp_diag d = {0};
    lmp_pool *p = NULL;
    lmp_state *s = NULL;
    int V = m->cfg.vocab;
    ck_assert_int_eq(lmp_pool_create(&p, threads, &d), LMP_OK);
    ck_assert_msg(lmp_state_create(&s, m, CTX, p, &d) == LMP_OK, "%s", d.msg);
    int prev = lmp_forward_set_fused(fused);
    if (mode == 0) {
        ck_assert_int_eq(lmp_forward(s, ids, N, 0, out, LMP_LOGITS_ALL, &d), LMP_OK);
    } else if (mode == 1) {
        ck_assert_int_eq(lmp_forward(s, ids, 33, 0, out + (size_t)32 * V, LMP_LOGITS_LAST, &d),
                         LMP_OK);
        ck_assert_int_eq(lmp_forward(s, ids + 33, N - 33, 33, out + (size_t)(N - 1) * V,
                                     LMP_LOGITS_LAST, &d),
                         LMP_OK);
    } else {
        for (int i = 0; i < N; i++)
            ck_assert_int_eq(lmp_forward(s, ids + i, 1, i, out + (size_t)i * V, LMP_LOGITS_LAST, &d),
                             LMP_OK);
    }
    lmp_forward_set_fused(prev);
    lmp_state_close(s);
    lmp_pool_close(p);
}

static void check_model(const lmp_model *m, const char *what)
{
    int V = m->cfg.vocab, ids[N];
    ids[0] = 1;
    for (int i = 1; i < N; i++) ids[i] = 3 + (i * 7919 + 13) % (V - 3);
    size_t sz = sizeof(float) * N * (size_t)V;
    float *ref = malloc(sz), *got = malloc(sz);
    for (int simd = 1; simd >= 0; simd--) {
        int prev = lmp_mat_set_simd(simd);
        run(m, 1, 0, 0, ids, ref);
        for (int th = 1; th <= 3; th++) {
            memset(got, 0, sz);
            run(m, th, 1, 0, ids, got);
            ck_assert_msg(!memcmp(ref, got, sz), "%s simd %d, %d threads: fused prefill differs",
                          what, simd, th);
            run(m, th, 1, 2, ids, got);
            ck_assert_msg(!memcmp(ref, got, sz), "%s simd %d, %d threads: fused decode differs",
                          what, simd, th);
            run(m, th, 1, 1, ids, got);
            for (int r = 32; r < N; r += N - 1 - 32)
                ck_assert_msg(!memcmp(ref + (size_t)r * V, got + (size_t)r * V,
                                      sizeof(float) * V),
                              "%s simd %d, %d threads: fused pieces, logits of token %d differ",
                              what, simd, th, r);
        }
        lmp_mat_set_simd(prev);
    }
    free(ref);
    free(got);
}

START_TEST(fused_forward_f32_same_bits)
{
    lmp_diag d;
    lmp_model m;
    ck_assert_msg(lmp_model_open(&m, t_data("stories260k"), NULL, &d) == LMP_OK, "%s", d.msg);
    check_model(&m, "f32");
    lmp_model_close(&m);
}
END_TEST

START_TEST(fused_forward_q4_same_bits)
{
    lmp_diag d;
    lmp_model fp, qm;
    ck_assert_msg(lmp_model_open(&fp, t_data("stories260k"), NULL, &d) == LMP_OK, "%s", d.msg);
    void *bufs[64];
    int nb = 0;
    qm = fp;
    qm.release = NULL;
    qm.owner = NULL;
    qm.layers = calloc((size_t)fp.cfg.n_layers, sizeof *qm.layers);
    for (int l = 0; l < fp.cfg.n_layers && nb + 7 < 63; l++) {
        lmp_layer *S = &fp.layers[l], *D = &qm.layers[l];
        *D = *S;
        D->wq = quant_view(&S->wq, &bufs[nb++]);
        D->wk = quant_view(&S->wk, &bufs[nb++]);
        D->wv = quant_view(&S->wv, &bufs[nb++]);
        D->wo = quant_view(&S->wo, &bufs[nb++]);
        D->wgate = quant_view(&S->wgate, &bufs[nb++]);
        D->wup = quant_view(&S->wup, &bufs[nb++]);
        D->wdown = quant_view(&S->wdown, &bufs[nb++]);
    }
    qm.embed = quant_view(&fp.embed, &bufs[nb++]);
    qm.lm_head = qm.embed;
    ck_assert_int_eq(lmp_model_check(&qm, "q4", &d), LMP_OK);
    check_model(&qm, "q4");
    free(qm.layers);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    lmp_model_close(&fp);
}
END_TEST

/* lmp_mat_prep / lmp_mat_rows against lmp_mat_mul: same bits for any row
 * split; an input prepared for another kind of matrix gives NaN. */
START_TEST(mat_rows_equal_mat_mul)
{
    lmp_diag d;
    lmp_model fp;
    ck_assert_msg(lmp_model_open(&fp, t_data("stories260k"), NULL, &d) == LMP_OK, "%s", d.msg);
    void *qbuf;
    const lmp_mat *f = &fp.layers[0].wgate;
    lmp_mat q = quant_view(f, &qbuf);
    enum { T = 5 };
    float x[T * 64], ya[T * 172], yb[T * 172];
    for (int i = 0; i < T * 64; i++) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    const lmp_mat *ms[2] = {f, &q};
    for (int k = 0; k < 2; k++) {
        const lmp_mat *w = ms[k];
        lmp_mat_mul(w, x, T, ya, NULL);
        void *buf = malloc(lmp_mat_prep_bytes(w, T) + 1);
        lmp_mat_in in;
        lmp_mat_prep(w, x, T, (char *)buf + 1, &in); /* unaligned buffer on purpose */
        memset(yb, 0, sizeof yb);
        for (int r0 = 0; r0 < 172; r0 += 16 + 2 * k) lmp_mat_rows(w, &in, r0, r0 + 16 + 2 * k, yb);
        ck_assert_msg(!memcmp(ya, yb, sizeof ya), "kind %d: rows differ from lmp_mat_mul", k);
        lmp_mat_rows(ms[1 - k], &in, 0, 4, yb);
        ck_assert_msg(yb[0] != yb[0] && yb[3] != yb[3], "kind %d: mismatched input not NaN", k);
        free(buf);
    }
    free(qbuf);
    lmp_model_close(&fp);
}
END_TEST

/* Gang runs: every thread runs once per gang with its own tid; a barrier
 * makes the other threads' writes of the previous phase visible (each
 * thread checks every slot after it, so a barrier that lets a thread
 * through early is caught). */
typedef struct {
    lmp_pool *p;
    atomic_int calls[4];
    int slot[4];
    atomic_int bad;
    int round;
} gang_ctx;

static void gang_fn(void *ctx, int tid, int nt)
{
    gang_ctx *g = ctx;
    atomic_fetch_add(&g->calls[tid], 1);
    for (int ph = 1; ph <= 6; ph++) {
        g->slot[tid] = g->round * 8 + ph; /* plain store: ordered only by the barrier */
        lmp_pool_barrier(g->p);
        for (int i = 0; i < nt; i++)
            if (g->slot[i] != g->round * 8 + ph) atomic_fetch_add(&g->bad, 1);
        lmp_pool_barrier(g->p);
    }
}

static void gang_check(const char *spin)
{
    setenv("LMP_POOL_SPIN_US", spin, 1);
    lmp_pool *p = NULL;
    lmp_diag d = {0};
    ck_assert_int_eq(lmp_pool_create(&p, 3, &d), LMP_OK);
    unsetenv("LMP_POOL_SPIN_US");
    gang_ctx *g = calloc(1, sizeof *g);
    g->p = p;
    for (int r = 0; r < 500; r++) {
        g->round = r;
        lmp_pool_gang(p, gang_fn, g);
        for (int t = 0; t < 3; t++)
            ck_assert_msg(atomic_load(&g->calls[t]) == r + 1, "spin %s round %d: thread %d ran %d times",
                          spin, r, t, atomic_load(&g->calls[t]));
        ck_assert_msg(atomic_load(&g->bad) == 0, "spin %s round %d: barrier let a thread through early",
                      spin, r);
    }
    ck_assert_int_eq(atomic_load(&g->calls[3]), 0);
    free(g);
    lmp_pool_close(p);
}

START_TEST(pool_gang_and_barrier)
{
    gang_check("0");
    gang_check("100");
}
END_TEST

Suite *lmp_suite_fwd(void)
{
    Suite *s = suite_create("fwd");
    TCase *tc = tcase_create("fused forward");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, pool_gang_and_barrier);
    tcase_add_test(tc, mat_rows_equal_mat_mul);
    tcase_add_test(tc, fused_forward_f32_same_bits);
    tcase_add_test(tc, fused_forward_q4_same_bits);
    suite_add_tcase(s, tc);
    return s;
}
