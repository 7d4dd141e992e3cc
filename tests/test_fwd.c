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
#include <stdio.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "common/pool.h"
#include "runtime/fwd_impl.h"
#include "runtime/generate.h"
#include "quantize/q4.h"
#include "runtime/forward.h"
#include "runtime/mat.h"
#include "runtime/model.h"
#include "tests/testutil.h"


enum { N = 70, CTX = 80 };

/* logits[N][V] of ids through lmp_forward: mode 0 one call with all logits,
 * mode 1 one call per piece of 33 / 37 tokens (last logits only, written to
 * rows 32 and N-1), mode 2 token by token (last logits of each step), mode 3
 * one call of N-1 tokens (two pieces, the first without logits; last
 * logits to row N-2), then one decode step (row N-1): the last layer of a
 * prompt computes only the tokens whose logits are wanted, so this checks
 * that it still caches every token's K and V. */
static void run(const lmp_model *m, lmp_kv_type kv, int threads, int fused, int mode,
                const int *ids, float *out)
{
    lmp_diag d = {0};
    lmp_pool *p = NULL;
    lmp_state *s = NULL;
    int V = m->cfg.vocab;
    ck_assert_int_eq(lmp_pool_create(&p, threads, &d), LMP_OK);
    ck_assert_msg(lmp_state_create_kv(&s, m, CTX, kv, p, &d) == LMP_OK, "%s", d.msg);
    if (kv != LMP_KV_AUTO) ck_assert_int_eq(lmp_state_kv(s), kv);
    int prev = lmp_forward_set_fused(fused);
    if (mode == 0) {
        ck_assert_int_eq(lmp_forward(s, ids, N, 0, out, LMP_LOGITS_ALL, &d), LMP_OK);
    } else if (mode == 1) {
        ck_assert_int_eq(lmp_forward(s, ids, 33, 0, out + (size_t)32 * V, LMP_LOGITS_LAST, &d),
                         LMP_OK);
        ck_assert_int_eq(lmp_forward(s, ids + 33, N - 33, 33, out + (size_t)(N - 1) * V,
                                     LMP_LOGITS_LAST, &d),
                         LMP_OK);
    } else if (mode == 3) {
        ck_assert_int_eq(lmp_forward(s, ids, N - 1, 0, out + (size_t)(N - 2) * V,
                                     LMP_LOGITS_LAST, &d),
                         LMP_OK);
        ck_assert_int_eq(lmp_forward(s, ids + N - 1, 1, N - 1, out + (size_t)(N - 1) * V,
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

static void check_model(const lmp_model *m, lmp_kv_type kv, const char *what)
{
    int V = m->cfg.vocab, ids[N];
    ids[0] = 1;
    for (int i = 1; i < N; i++) ids[i] = 3 + (i * 7919 + 13) % (V - 3);
    size_t sz = sizeof(float) * N * (size_t)V;
    float *ref = malloc(sz), *got = malloc(sz);
    for (int simd = 1; simd >= 0; simd--) {
        int prev = lmp_mat_set_simd(simd);
        run(m, kv, 1, 0, 0, ids, ref);
        for (int th = 1; th <= 3; th++) {
            memset(got, 0, sz);
            run(m, kv, th, 1, 0, ids, got);
            ck_assert_msg(!memcmp(ref, got, sz), "%s simd %d, %d threads: fused prefill differs",
                          what, simd, th);
            run(m, kv, th, 1, 2, ids, got);
            ck_assert_msg(!memcmp(ref, got, sz), "%s simd %d, %d threads: fused decode differs",
                          what, simd, th);
            run(m, kv, th, 1, 1, ids, got);
            for (int r = 32; r < N; r += N - 1 - 32)
                ck_assert_msg(!memcmp(ref + (size_t)r * V, got + (size_t)r * V,
                                      sizeof(float) * V),
                              "%s simd %d, %d threads: fused pieces, logits of token %d differ",
                              what, simd, th, r);
            run(m, kv, th, 1, 3, ids, got);
            for (int r = N - 2; r < N; r++)
                ck_assert_msg(!memcmp(ref + (size_t)r * V, got + (size_t)r * V,
                                      sizeof(float) * V),
                              "%s simd %d, %d threads: long prompt + decode, logits of token %d "
                              "differ",
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
    check_model(&m, LMP_KV_F32, "f32");
    check_model(&m, LMP_KV_F16, "f32, f16 KV cache");
    lmp_model_close(&m);
}
END_TEST

START_TEST(fused_forward_q4_same_bits)
{
    lmp_diag d;
    lmp_model fp, qm;
    ck_assert_msg(lmp_model_open(&fp, t_data("stories260k"), NULL, &d) == LMP_OK, "%s", d.msg);
    t_q4_default_model(&fp, &qm);
    check_model(&qm, LMP_KV_F16, "q4");
    check_model(&qm, LMP_KV_F32, "q4, f32 KV cache");
    lmp_model_close(&qm);
    lmp_model_close(&fp);
}
END_TEST

/* The int4 model as the loaders hold it on an AVX-512 machine: every
 * matrix whose rows allow it in LMP_Q4_LAYOUT_R16 (the R16 kernel, with its
 * own float order), the others as stored. The fused pass must still give
 * the pool-run pass's bits for every thread count, SIMD on and off, prefill
 * and decode (on a CPU without AVX-512 both read R16 through the reference,
 * and the check still covers the layout's readers). */
static void pack_r16(lmp_mat *w)
{
    if (w->rows % 16 || w->layout != LMP_Q4_LAYOUT_ROWS) return;
    ck_assert_int_eq(lmp_q4_pack_r16(w->data, (void *)w->data, w->rows, w->cols, w->group,
                                     w->scheme),
                     1);
    w->layout = LMP_Q4_LAYOUT_R16;
}

START_TEST(fused_forward_q4_r16_same_bits)
{
    lmp_diag d;
    lmp_model fp, qm;
    ck_assert_msg(lmp_model_open(&fp, t_data("stories260k"), NULL, &d) == LMP_OK, "%s", d.msg);
    t_q4_default_model(&fp, &qm);
    int packed = 0;
    for (int l = 0; l < qm.cfg.n_layers; l++) {
        lmp_layer *L = &qm.layers[l];
        lmp_mat *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wgate, &L->wup, &L->wdown};
        for (int i = 0; i < 7; i++) {
            pack_r16(ws[i]);
            packed += ws[i]->layout == LMP_Q4_LAYOUT_R16;
        }
    }
    pack_r16(&qm.embed);
    if (qm.cfg.tied) qm.lm_head = qm.embed;
    ck_assert_int_eq(qm.embed.layout, LMP_Q4_LAYOUT_R16);
    ck_assert_int_ge(packed, 4 * qm.cfg.n_layers); /* q, k, v, o at least (172-row MLP not) */
    check_model(&qm, LMP_KV_F16, "q4 r16");
    lmp_model_close(&qm);
    lmp_model_close(&fp);
}
END_TEST

/* The KV cache type: AUTO is float32 for the float model and binary16 for
 * its int4 copy; names round-trip; an unknown type is refused. A binary16
 * cache changes the logits (else the option did nothing) only by the
 * rounding of K and V: float32 stories260k, 70 tokens, within 0.5 % of the
 * logit range (observed 0.0126 of 35.7, 0.035 %; a K or V element read
 * from the wrong place or as the wrong type gives differences of the
 * logits' own size). The float model, because in the int4 model the
 * activation quantization turns any small change into steps of its own
 * size (there the same comparison gave 1.3 %, and 68 of 70 top-1 equal). */
START_TEST(kv_cache_types)
{
    lmp_diag d;
    lmp_model fp, qm;
    lmp_state *s = NULL;
    ck_assert_msg(lmp_model_open(&fp, t_data("stories260k"), NULL, &d) == LMP_OK, "%s", d.msg);
    t_q4_default_model(&fp, &qm);
    ck_assert_int_eq(lmp_state_create(&s, &fp, CTX, NULL, &d), LMP_OK);
    ck_assert_int_eq(lmp_state_kv(s), LMP_KV_F32);
    lmp_state_close(s);
    ck_assert_int_eq(lmp_state_create(&s, &qm, CTX, NULL, &d), LMP_OK);
    ck_assert_int_eq(lmp_state_kv(s), LMP_KV_F16);
    lmp_state_close(s);
    ck_assert_int_eq(lmp_state_create_kv(&s, &qm, CTX, (lmp_kv_type)7, NULL, &d), LMP_ERR_ARG);
    ck_assert_ptr_null(s);
    static const lmp_kv_type all[] = {LMP_KV_AUTO, LMP_KV_F32, LMP_KV_F16};
    for (size_t i = 0; i < 3; i++) {
        lmp_kv_type back = (lmp_kv_type)-1;
        ck_assert_int_eq(lmp_kv_type_parse(lmp_kv_type_name(all[i]), &back), 0);
        ck_assert_int_eq(back, all[i]);
    }
    lmp_kv_type back;
    ck_assert_int_eq(lmp_kv_type_parse("f8", &back), -1);
    ck_assert_int_eq(lmp_kv_type_parse(NULL, &back), -1);

    int V = fp.cfg.vocab, ids[N];
    ids[0] = 1;
    for (int i = 1; i < N; i++) ids[i] = 3 + (i * 7919 + 13) % (V - 3);
    size_t sz = sizeof(float) * N * (size_t)V;
    float *a = malloc(sz), *b = malloc(sz);
    run(&fp, LMP_KV_F32, 2, 1, 0, ids, a);
    run(&fp, LMP_KV_F16, 2, 1, 0, ids, b);
    float lo = INFINITY, hi = -INFINITY, diff = 0.0f;
    for (size_t i = 0; i < (size_t)N * V; i++) {
        lo = fminf(lo, a[i]);
        hi = fmaxf(hi, a[i]);
        diff = fmaxf(diff, fabsf(a[i] - b[i]));
    }
    ck_assert_msg(memcmp(a, b, sz) != 0, "the f16 KV cache gave the f32 cache's bits");
    ck_assert_msg(diff <= 0.005f * (hi - lo), "f16 vs f32 KV cache: logits differ by %g (range %g)",
                  (double)diff, (double)(hi - lo));
    free(a);
    free(b);
    lmp_model_close(&qm);
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
    lmp_mat q = t_q4_default_view(f, &qbuf);
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

/* ---- AVX2 elementwise steps against their references -------------------- */

static uint32_t rng_state = 12345u;
static float rnd_sym(float scale) /* uniform in (-scale, scale) */
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return scale * ((float)(rng_state >> 8) / 8388608.0f - 1.0f);
}

START_TEST(rmsnorm_avx2_matches_reference)
{
    if (!lmp_cpu_avx2()) return;
    enum { H = 1000 };
    float x[H], w[H], a[H], b[H];
    int sizes[] = {1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 960, 999};
    for (int k = 0; k < (int)(sizeof sizes / sizeof *sizes); k++) {
        int h = sizes[k];
        for (int i = 0; i < h; i++) {
            x[i] = rnd_sym(k == 3 ? 1e-20f : 40.0f); /* tiny values: eps dominates */
            w[i] = rnd_sym(2.0f);
        }
        lmp_fwd_rmsnorm_ref(a, x, w, h, 1e-5f);
        lmp_rmsnorm_avx2(b, x, w, h, 1e-5f);
        /* double sums in another order: at most one float rounding apart */
        double ss = 0;
        for (int i = 0; i < h; i++) ss += (double)x[i] * x[i];
        double sc = 1.0 / sqrt(ss / h + 1e-5);
        for (int i = 0; i < h; i++) {
            ck_assert_msg(fabsf(a[i] - b[i]) <= 2.5e-7f * fabsf(a[i]),
                          "h %d i %d: avx2 %.9g reference %.9g", h, i, b[i], a[i]);
            double want = (double)x[i] * sc * w[i];
            ck_assert_msg(fabs(b[i] - want) <= 3e-7 * fabs(want) + 1e-30, "h %d i %d: %.9g vs %.9g",
                          h, i, b[i], want);
        }
    }
}
END_TEST

/* SiLU test inputs: special values first (signed zeros, infinities, NaN,
 * tiny values, the exp cut-off at -87), then random values of two scales. */
static void silu_inputs(float *g, float *u, int n)
{
    const float special[] = {0.0f,  -0.0f, INFINITY, -INFINITY, NAN,   1e-30f, -1e-30f,
                             88.0f, -88.0f, 87.5f,   -87.5f,    100.f, -100.f, 1e-3f, -17.0f};
    for (int i = 0; i < n; i++) {
        int ns = (int)(sizeof special / sizeof *special);
        g[i] = i < ns ? special[i] : rnd_sym(i % 3 == 0 ? 12.0f : 100.0f);
        u[i] = i < ns ? 1.5f : rnd_sym(3.0f);
    }
}

START_TEST(silu_avx2_matches_reference)
{
    if (!lmp_cpu_avx2()) return;
    enum { NS = 4099 };
    float *g = malloc(sizeof(float) * NS), *u = malloc(sizeof(float) * NS),
          *a = malloc(sizeof(float) * NS), *b = malloc(sizeof(float) * NS);
    silu_inputs(g, u, NS);
    memcpy(a, g, sizeof(float) * NS);
    memcpy(b, g, sizeof(float) * NS);
    lmp_fwd_silu_mul_ref(a, u, NS);
    lmp_silu_mul_avx2(b, u, NS);
    for (int i = 0; i < NS; i++) {
        if (isnan(a[i])) {
            ck_assert_msg(isnan(b[i]), "g %g: reference NaN, avx2 %g", g[i], b[i]);
            continue;
        }
        double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        if (isinf(want)) {
            ck_assert_msg(b[i] == want, "g %g: avx2 %g, want %g", g[i], b[i], want);
            continue;
        }
        /* a few ulp; below g = -87 the vector exp gives 0, so results under
         * ~1e-35 (e^-87 * 87 * |u|) may be flushed to 0 */
        double tol = 6e-7 * fabs(want) + 1e-34;
        ck_assert_msg(fabs(b[i] - want) <= tol, "g %.9g u %.9g: avx2 %.9g, exact %.9g (ref %.9g)",
                      g[i], u[i], b[i], want, a[i]);
    }
    free(g);
    free(u);
    free(a);
    free(b);
}
END_TEST

/* The AVX-512 SiLU gives lmp_silu_mul_avx2's bits for every length 0..80
 * (the 16-lane body, then the AVX2 8-lane step and scalar tail) and every
 * sign, special value and magnitude the AVX2 test uses; a lane picked by the
 * wrong sign, a tail element skipped or an element done twice changes them.
 * Without AVX-512 the check cannot run and says so. */
START_TEST(silu_avx512_same_bits_as_avx2)
{
    if (!lmp_cpu_avx512()) {
        fprintf(stderr, "silu_avx512_same_bits_as_avx2: no AVX-512 here, not checked\n");
        return;
    }
    enum { NS = 4099 };
    float *g = malloc(sizeof(float) * NS), *u = malloc(sizeof(float) * NS),
          *a = malloc(sizeof(float) * NS), *b = malloc(sizeof(float) * NS);
    silu_inputs(g, u, NS);
    for (int n = 0; n <= 80; n++) {
        for (int off = 0; off + n <= NS; off += NS / 7) {
            memcpy(a, g + off, sizeof(float) * (size_t)n);
            memcpy(b, g + off, sizeof(float) * (size_t)n);
            lmp_silu_mul_avx2(a, u + off, n);
            lmp_silu_mul_avx512(b, u + off, n);
            ck_assert_msg(!memcmp(a, b, sizeof(float) * (size_t)n),
                          "n %d at %d: AVX-512 SiLU differs from AVX2", n, off);
        }
    }
    memcpy(a, g, sizeof(float) * NS);
    memcpy(b, g, sizeof(float) * NS);
    lmp_silu_mul_avx2(a, u, NS);
    lmp_silu_mul_avx512(b, u, NS);
    ck_assert(!memcmp(a, b, sizeof(float) * NS));
    free(g);
    free(u);
    free(a);
    free(b);
}
END_TEST

START_TEST(vadd_avx2_exact)
{
    if (!lmp_cpu_avx2()) return;
    float x[37], y[37], want[37];
    for (int n = 0; n <= 37; n++) {
        for (int i = 0; i < 37; i++) {
            x[i] = rnd_sym(1e3f);
            y[i] = rnd_sym(1e-2f);
            want[i] = i < n ? x[i] + y[i] : x[i];
        }
        lmp_vadd_avx2(x, y, n);
        ck_assert_msg(!memcmp(x, want, sizeof x), "n %d", n);
    }
}
END_TEST

START_TEST(rope_avx2_exact)
{
    if (!lmp_cpu_avx2()) return;
    float a[80], b[80], cs[40], sn[40];
    for (int half = 1; half <= 40; half++) {
        for (int i = 0; i < 2 * half; i++) a[i] = b[i] = rnd_sym(10.0f);
        for (int i = 0; i < half; i++) {
            cs[i] = cosf((float)i * 0.37f + 0.1f);
            sn[i] = sinf((float)i * 0.37f + 0.1f);
        }
        lmp_fwd_rope_ref(a, cs, sn, half);
        lmp_rope_avx2(b, cs, sn, half);
        ck_assert_msg(!memcmp(a, b, sizeof(float) * 2 * (size_t)half), "half %d", half);
    }
}
END_TEST

START_TEST(argmax_avx2_matches_reference)
{
    enum { V = 49152 };
    float *v = malloc(sizeof(float) * V);
    for (int round = 0; round < 400; round++) {
        int n = round < 100 ? 1 + round : round < 390 ? 1 + (int)((rng_state >> 7) % V) : V;
        for (int i = 0; i < n; i++) v[i] = rnd_sym(round % 4 == 0 ? 3.0f : 1000.0f);
        if (round % 5 == 1) /* ties: a few copies of one value at random places */
            for (int k = 0; k < 4; k++) v[(rng_state >> (3 * k)) % (unsigned)n] = 5000.0f;
        if (round % 7 == 2) /* NaNs sprinkled, or first */
            for (int k = 0; k < 3; k++) v[(rng_state >> (5 * k)) % (unsigned)n] = NAN;
        if (round % 11 == 3) v[0] = NAN;
        if (round % 13 == 4) /* signed zeros as the maximum */
            for (int i = 0; i < n; i++) v[i] = i % 3 == 0 ? -0.0f : i % 3 == 1 ? 0.0f : -1.0f;
        int want = lmp_argmax_ref(v, n);
        ck_assert_msg(lmp_argmax(v, n) == want, "round %d n %d: %d vs %d", round, n,
                      lmp_argmax(v, n), want);
        if (lmp_cpu_avx2())
            ck_assert_int_eq(lmp_argmax_avx2(v, n), want);
    }
    /* by hand */
    float h[20] = {1, 2, 3, 9, 4, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
    ck_assert_int_eq(lmp_argmax(h, 20), 3);
    h[0] = NAN;
    ck_assert_int_eq(lmp_argmax(h, 20), 0);
    free(v);
}
END_TEST

Suite *lmp_suite_fwd(void)
{
    Suite *s = suite_create("fwd");
    TCase *tc = tcase_create("fused forward");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, pool_gang_and_barrier);
    tcase_add_test(tc, rmsnorm_avx2_matches_reference);
    tcase_add_test(tc, silu_avx2_matches_reference);
    tcase_add_test(tc, silu_avx512_same_bits_as_avx2);
    tcase_add_test(tc, argmax_avx2_matches_reference);
    tcase_add_test(tc, vadd_avx2_exact);
    tcase_add_test(tc, rope_avx2_exact);
    tcase_add_test(tc, mat_rows_equal_mat_mul);
    tcase_add_test(tc, fused_forward_f32_same_bits);
    tcase_add_test(tc, fused_forward_q4_same_bits);
    tcase_add_test(tc, fused_forward_q4_r16_same_bits);
    tcase_add_test(tc, kv_cache_types);
    suite_add_tcase(s, tc);
    return s;
}
