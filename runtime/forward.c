/* Llama forward pass (see forward.h for the math and the contracts). */
#include "runtime/forward.h"

#include "runtime/fwd_impl.h"
#include "runtime/mat_impl.h"

#include "common/cpu.h"
#include "quantize/q4.h"
#include "formats/dtype.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Tokens per internal piece: bounds the scratch memory; the matmul reuses
 * each weight row over blocks of 32 tokens anyway (mat_avx2.c). */
#define PIECE 64

/* Attention rows per task at most (tokens x query heads of one KV head): K
 * and V are read once per tile (runtime/attn_avx2.c); bench_attn at 2048
 * tokens: 12 rows 139-144, 24 rows 159-163, 48 rows 170-175 M
 * query-positions/s (AVX-512, one thread). */
#define ATTN_ROWS 48

/* The largest head_dim a state accepts (as formats/config.c). */
#define MAX_HEAD_DIM 1024

struct lmp_state {
    const lmp_model *m;
    lmp_pool *pool;     /* borrowed */
    int ctx, filled, nthreads;
    int qdim, kvdim;    /* n_heads*head_dim, n_kv_heads*head_dim */
    int ctxr;           /* ctx rounded up to LMP_ATTN_KB: positions per KV head */
    int attn_tok, attn_rows; /* tokens per attention tile at most, rows (x query heads) */
    /* [layer][kv_head][ctxr * head_dim]: K in position blocks (lmp_attn_koff),
     * V as [ctxr][head_dim]; float, or binary16 when kv_f16 */
    void *kc, *vc;
    int kv_f16;
    int quantized;      /* lmp_model_quantized(m): the attention tile choice */
    float *rope_cos, *rope_sin; /* [ctx][head_dim/2] */
    float *scores;      /* [nthreads][attn_rows][ctxr] attention scratch */
    /* piece scratch, [PIECE][...] */
    float *x, *xn, *q, *k, *v, *att, *tmp, *g, *u;
    lmp_hidden_hook hook;
    void *hook_ctx;
    /* fused path (see fused_task): per-thread scratch and phase counters */
    int fused_ok;       /* q/k/v and gate/up can share a prepared input */
    size_t tbuf_bytes;  /* per thread, multiple of 64 */
    unsigned char *tbuf; /* [nthreads][tbuf_bytes] prepared matmul inputs */
    unsigned char *sbuf; /* [tbuf_bytes] an input prepared by the whole gang */
    float *txn;         /* [nthreads][PIECE][hidden] normalised activations */
    atomic_int *ctr;    /* [(n_layers * PHASES + 1) * nthreads] chunk counters, one
                           group of nthreads per phase (claim_seg), each counter
                           alone in a 64-byte line (CTR_PAD) */
};

static void *alloc_floats(size_t n)
{
    if (n == 0 || n > SIZE_MAX / sizeof(float)) return NULL;
    return malloc(n * sizeof(float));
}

void lmp_state_close(lmp_state *s)
{
    if (!s) return;
    free(s->kc);
    free(s->vc);
    free(s->rope_cos);
    free(s->rope_sin);
    free(s->scores);
    free(s->x);
    free(s->xn);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att);
    free(s->tmp);
    free(s->g);
    free(s->u);
    free(s->tbuf);
    free(s->sbuf);
    free(s->txn);
    free(s->ctr);
    free(s);
}

static lmp_status fused_init(lmp_state *s, lmp_diag *d);

const char *lmp_kv_type_name(lmp_kv_type t)
{
    switch (t) {
    case LMP_KV_AUTO: return "auto";
    case LMP_KV_F32: return "f32";
    case LMP_KV_F16: return "f16";
    }
    return "?";
}

int lmp_kv_type_parse(const char *name, lmp_kv_type *out)
{
    static const lmp_kv_type all[] = {LMP_KV_AUTO, LMP_KV_F32, LMP_KV_F16};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (name && strcmp(name, lmp_kv_type_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    return -1;
}

/* AUTO: binary16 for a model with quantized matrices, float32 for a float
 * model (the reference runtime, held to transformers' float32 numbers). */
static int kv_f16_for(const lmp_model *m, lmp_kv_type kv)
{
    if (kv != LMP_KV_AUTO) return kv == LMP_KV_F16;
    return lmp_model_quantized(m);
}

lmp_status lmp_state_create(lmp_state **out, const lmp_model *m, int ctx, lmp_pool *pool,
                            lmp_diag *d)
{
    return lmp_state_create_kv(out, m, ctx, LMP_KV_AUTO, pool, d);
}

lmp_kv_type lmp_state_kv(const lmp_state *s)
{
    return s->kv_f16 ? LMP_KV_F16 : LMP_KV_F32;
}

lmp_status lmp_state_create_kv(lmp_state **out, const lmp_model *m, int ctx, lmp_kv_type kv,
                               lmp_pool *pool, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const lmp_config *c = &m->cfg;
    lmp_state *s = NULL;
    *out = NULL;
    if (ctx == 0) ctx = c->max_pos;
    LMP_FAIL_IF(ctx < 1 || ctx > c->max_pos, LMP_ERR_RANGE,
                "context %d is outside [1, %d] (max_position_embeddings)", ctx, c->max_pos);
    LMP_FAIL_IF(kv != LMP_KV_AUTO && kv != LMP_KV_F32 && kv != LMP_KV_F16, LMP_ERR_ARG,
                "unknown KV cache type %d", (int)kv);
    LMP_FAIL_IF(c->head_dim < 1 || c->head_dim > MAX_HEAD_DIM, LMP_ERR_MODEL,
                "head_dim %d is outside [1, %d]", c->head_dim, MAX_HEAD_DIM);
    s = calloc(1, sizeof *s);
    LMP_FAIL_IF(!s, LMP_ERR_NOMEM, "out of memory for the runtime state");
    s->kv_f16 = kv_f16_for(m, kv);
    s->quantized = lmp_model_quantized(m);
    s->m = m;
    s->pool = pool;
    s->ctx = ctx;
    s->nthreads = lmp_pool_threads(pool);
    s->qdim = c->n_heads * c->head_dim;
    s->kvdim = c->n_kv_heads * c->head_dim;
    s->ctxr = (ctx + LMP_ATTN_KB - 1) / LMP_ATTN_KB * LMP_ATTN_KB;
    int g = c->n_heads / c->n_kv_heads;
    s->attn_tok = g < ATTN_ROWS ? ATTN_ROWS / g : 1;
    s->attn_rows = s->attn_tok * g;
    size_t cache = (size_t)c->n_layers * (size_t)s->kvdim * (size_t)s->ctxr;
    int half = c->head_dim / 2;
    /* zeroed: the attention loads K up to a multiple of 16 positions (the
     * padding lanes are masked), never uninitialised memory */
    size_t esz = s->kv_f16 ? sizeof(uint16_t) : sizeof(float);
    s->kc = cache ? calloc(cache, esz) : NULL;
    s->vc = cache && cache <= SIZE_MAX / esz ? malloc(cache * esz) : NULL;
    s->rope_cos = alloc_floats((size_t)ctx * half);
    s->rope_sin = alloc_floats((size_t)ctx * half);
    s->scores = alloc_floats((size_t)s->nthreads * s->attn_rows * s->ctxr);
    size_t h = (size_t)c->hidden;
    s->x = alloc_floats(PIECE * h);
    s->xn = alloc_floats(PIECE * h);
    s->tmp = alloc_floats(PIECE * h);
    s->q = alloc_floats(PIECE * (size_t)s->qdim);
    s->att = alloc_floats(PIECE * (size_t)s->qdim);
    s->k = alloc_floats(PIECE * (size_t)s->kvdim);
    s->v = alloc_floats(PIECE * (size_t)s->kvdim);
    s->g = alloc_floats(PIECE * (size_t)c->intermediate);
    s->u = alloc_floats(PIECE * (size_t)c->intermediate);
    LMP_FAIL_IF(!s->kc || !s->vc || !s->rope_cos || !s->rope_sin || !s->scores || !s->x ||
                    !s->xn || !s->tmp || !s->q || !s->att || !s->k || !s->v || !s->g || !s->u,
                LMP_ERR_NOMEM, "out of memory for a %d-position KV cache (%zu MB)", ctx,
                cache * 2 * esz >> 20);
    LMP_FORWARD(fused_init(s, d));
    /* inv_freq_i = theta^(-2i/d), angle = pos * inv_freq, all in double. */
    for (int i = 0; i < half; i++) {
        double inv = lmp_config_inv_freq(c, i);
        for (int p = 0; p < ctx; p++) {
            double a = (double)p * inv;
            s->rope_cos[(size_t)p * half + i] = (float)cos(a);
            s->rope_sin[(size_t)p * half + i] = (float)sin(a);
        }
    }
    *out = s;
    s = NULL;
out:
    lmp_state_close(s);
    return rc;
}

int lmp_state_ctx(const lmp_state *s)
{
    return s->ctx;
}

const lmp_model *lmp_state_model(const lmp_state *s)
{
    return s->m;
}

int lmp_state_filled(const lmp_state *s)
{
    return s->filled;
}

void lmp_state_set_hook(lmp_state *s, lmp_hidden_hook fn, void *ctx)
{
    s->hook = fn;
    s->hook_ctx = ctx;
}

/* out = x * rsqrt(mean(x^2) + eps) * w, accumulated in double. Scalar
 * reference; AVX2 (fwd_avx2.c) while SIMD is active. */
static void rmsnorm_ref(float *out, const float *x, const float *w, int h, float eps)
{
    double ss = 0.0;
    for (int i = 0; i < h; i++) ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / h + (double)eps);
    for (int i = 0; i < h; i++) out[i] = (float)(x[i] * scale) * w[i];
}

static void rmsnorm(float *out, const float *x, const float *w, int h, float eps)
{
    (lmp_mat_simd_active() ? lmp_rmsnorm_avx2 : rmsnorm_ref)(out, x, w, h, eps);
}

/* Rotate-half RoPE on one head vector at position p (scalar reference;
 * the AVX2 version gives the same bits). */
static void rope_ref(float *v, const float *cs, const float *sn, int half)
{
    for (int i = 0; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
    }
}

static void rope(float *v, const float *cs, const float *sn, int half)
{
    (lmp_mat_simd_active() ? lmp_rope_avx2 : rope_ref)(v, cs, sn, half);
}

/* Element i of a KV cache array, float or binary16 (widened exactly). */
static float kv_get(const void *c, size_t i, int f16)
{
    return f16 ? lmp_f16_to_f32(((const uint16_t *)c)[i]) : ((const float *)c)[i];
}

/* Element `base` of a KV cache array, as a pointer. */
static void *kv_ptr(const lmp_state *s, void *c, size_t base)
{
    return (char *)c + base * (s->kv_f16 ? sizeof(uint16_t) : sizeof(float));
}

/* Scalar reference: out = softmax(q.K * scale) V over np positions; K in the
 * blocked layout of the cache (lmp_attn_koff), V [np][hd]; elements float,
 * or binary16 when f16. */
static void attn_head_ref(const float *q, const void *K, const void *V, int f16, int np, int hd,
                          float scale, float *sc, float *out)
{
    float mx = -INFINITY;
    for (int p = 0; p < np; p++) {
        float dot = 0.0f;
        for (int i = 0; i < hd; i++) dot += q[i] * kv_get(K, lmp_attn_koff(p, i, hd), f16);
        sc[p] = dot * scale;
        if (sc[p] > mx) mx = sc[p];
    }
    double sum = 0.0;
    for (int p = 0; p < np; p++) {
        sc[p] = expf(sc[p] - mx);
        sum += sc[p];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < hd; i++) out[i] = 0.0f;
    for (int p = 0; p < np; p++) {
        float w = sc[p] * inv;
        for (int i = 0; i < hd; i++) out[i] += w * kv_get(V, (size_t)p * hd + i, f16);
    }
}

/* Position p of KV head h in layer l: k and v (head_dim floats each) into
 * the cache (rounded to binary16, nearest-even, when kv_f16). */
static void cache_put(lmp_state *s, int l, int h, int p, const float *k, const float *v)
{
    int hd = s->m->cfg.head_dim;
    size_t base = ((size_t)l * s->m->cfg.n_kv_heads + h) * (size_t)s->ctxr * hd;
    if (s->kv_f16) {
        uint16_t *K = s->kc, kh[MAX_HEAD_DIM];
        lmp_f32_to_f16_n(k, kh, (size_t)hd);
        for (int i = 0; i < hd; i++) K[base + lmp_attn_koff(p, i, hd)] = kh[i];
        lmp_f32_to_f16_n(v, (uint16_t *)s->vc + base + (size_t)p * hd, (size_t)hd);
        return;
    }
    float *K = s->kc;
    for (int i = 0; i < hd; i++) K[base + lmp_attn_koff(p, i, hd)] = k[i];
    memcpy((float *)s->vc + base + (size_t)p * hd, v, (size_t)hd * sizeof(float));
}

typedef struct {
    lmp_state *s;
    int layer, n, pos, tt, ntiles; /* tt tokens per tile */
    int first; /* queries of tokens [first, n) only (their K/V are cached) */
    int simd; /* 0 scalar reference, 1 AVX2, 2 AVX-512 */
} attn_job;

/* One tile: up to j->tt consecutive tokens x the query heads of one KV
 * head, causal attention of token t over positions [0, pos+t]. Tasks run
 * the latest tiles (most positions) first so the threads end together. */
static void attn_task(void *ctx, int task, int tid)
{
    const attn_job *j = ctx;
    lmp_state *s = j->s;
    const lmp_config *c = &s->m->cfg;
    int nkv = c->n_kv_heads, hd = c->head_dim, g = c->n_heads / nkv;
    int tile = j->ntiles - 1 - task / nkv, kvh = task % nkv;
    int t0 = j->first + tile * j->tt;
    int nt = j->n - t0 < j->tt ? j->n - t0 : j->tt;
    size_t base = ((size_t)j->layer * nkv + kvh) * (size_t)s->ctxr * hd;
    size_t row0 = (size_t)t0 * s->qdim + (size_t)kvh * g * hd;
    float *sc = s->scores + (size_t)tid * s->attn_rows * s->ctxr;
    float scale = (float)(1.0 / sqrt((double)hd));
    if (j->simd) {
        lmp_attn_tile a = {.q = s->q + row0, .q_tok = (size_t)s->qdim, .out = s->att + row0,
                           .out_tok = (size_t)s->qdim, .ntok = nt, .nhead = g,
                           .np0 = j->pos + t0 + 1, .hd = hd, .scale = scale,
                           .k = kv_ptr(s, s->kc, base), .v = kv_ptr(s, s->vc, base),
                           .kv_f16 = s->kv_f16, .sc = sc, .sc_stride = (size_t)s->ctxr};
        (j->simd == 2 ? lmp_attn_tile_avx512 : lmp_attn_tile_avx2)(&a);
        return;
    }
    for (int t = 0; t < nt; t++)
        for (int h = 0; h < g; h++) {
            size_t r = row0 + (size_t)t * s->qdim + (size_t)h * hd;
            attn_head_ref(s->q + r, kv_ptr(s, s->kc, base), kv_ptr(s, s->vc, base), s->kv_f16,
                          j->pos + t0 + t + 1, hd, scale, sc, s->att + r);
        }
}

/* The attention of layer l for the queries of tokens [first, n) of the n
 * at pos as attn_task tasks: fills *aj, returns the task count (used by
 * both execution paths). A query's bits do not depend on the tiling. */
static int attn_setup(lmp_state *s, attn_job *aj, int l, int first, int n, int pos)
{
    int nkv = s->m->cfg.n_kv_heads, nq = n - first;
    /* AVX-512 tile (the same bits) for prompts, and for decode when the
     * int4 matmul runs AVX-512 too: decode after a 1024-token prompt +6 %
     * (63.6 -> 68 tok/s, 2 threads), no change at short context. Next to an
     * AVX2 matmul (float models) the 512-bit FMAs of a decode step cost it
     * ~5 % (frequency license; measured CPU-time rates). */
    int wide = nq > 1 || (s->quantized && lmp_q4_avx512_active());
    int simd = !lmp_mat_simd_active() ? 0 : lmp_cpu_avx512() && wide ? 2 : 1;
    /* the largest tiles that still give each thread ~4 tasks (a row's bits do
     * not depend on the cut) */
    int tt = nq * nkv / (4 * s->nthreads);
    tt = tt < 1 ? 1 : tt > s->attn_tok ? s->attn_tok : tt;
    *aj = (attn_job){.s = s, .layer = l, .n = n, .pos = pos, .first = first, .simd = simd,
                     .tt = tt, .ntiles = (nq + tt - 1) / tt};
    return aj->ntiles * nkv;
}

static void run_tasks(lmp_state *s, lmp_task_fn fn, void *ctx, int n)
{
    if (s->nthreads == 1)
        for (int i = 0; i < n; i++) fn(ctx, i, 0);
    else
        lmp_pool_run(s->pool, fn, ctx, n);
}

/* g[i] = silu(g[i]) * u[i]. Scalar reference (libm expf); AVX2 with a
 * polynomial exp (fwd_avx2.c) while SIMD is active, AVX-512 (the same bits,
 * fwd_avx512.c) next to the AVX-512 int4 kernel, as for the attention tile:
 * 16-token prompt -1 % (the step was 2.4 % of its CPU), decode -0.3 %. */
static void silu_mul_ref(float *g, const float *u, int n)
{
    for (int i = 0; i < n; i++) {
        float gv = g[i];
        g[i] = gv / (1.0f + expf(-gv)) * u[i];
    }
}

static void silu_mul(const lmp_state *s, float *g, const float *u, int n)
{
    if (!lmp_mat_simd_active())
        silu_mul_ref(g, u, n);
    else if (s->quantized && lmp_q4_avx512_active())
        lmp_silu_mul_avx512(g, u, n);
    else
        lmp_silu_mul_avx2(g, u, n);
}

/* Test hooks (fwd_impl.h): the references, for the AVX2 tests. */
void lmp_fwd_rmsnorm_ref(float *out, const float *x, const float *w, int h, float eps)
{
    rmsnorm_ref(out, x, w, h, eps);
}

void lmp_fwd_silu_mul_ref(float *g, const float *u, int n)
{
    silu_mul_ref(g, u, n);
}

void lmp_fwd_rope_ref(float *v, const float *cs, const float *sn, int half)
{
    rope_ref(v, cs, sn, half);
}

static void layer_forward(lmp_state *s, int l, int n, int pos)
{
    const lmp_config *c = &s->m->cfg;
    const lmp_layer *L = &s->m->layers[l];
    int hid = c->hidden, hd = c->head_dim, half = hd / 2, nkv = c->n_kv_heads;
    for (int t = 0; t < n; t++)
        rmsnorm(s->xn + (size_t)t * hid, s->x + (size_t)t * hid, L->attn_norm, hid, c->rms_eps);
    const lmp_mat *qkv[3] = {&L->wq, &L->wk, &L->wv};
    float *qkv_out[3] = {s->q, s->k, s->v};
    lmp_mat_mul_many(qkv, qkv_out, 3, s->xn, n, s->pool);
    for (int t = 0; t < n; t++) {
        int p = pos + t;
        const float *cs = s->rope_cos + (size_t)p * half, *sn = s->rope_sin + (size_t)p * half;
        for (int h = 0; h < c->n_heads; h++)
            rope(s->q + (size_t)t * s->qdim + (size_t)h * hd, cs, sn, half);
        for (int h = 0; h < nkv; h++) {
            float *kt = s->k + (size_t)t * s->kvdim + (size_t)h * hd;
            rope(kt, cs, sn, half);
            cache_put(s, l, h, p, kt, s->v + (size_t)t * s->kvdim + (size_t)h * hd);
        }
    }
    attn_job aj;
    int ntasks = attn_setup(s, &aj, l, 0, n, pos);
    run_tasks(s, attn_task, &aj, ntasks);
    lmp_mat_mul(&L->wo, s->att, n, s->tmp, s->pool);
    for (size_t i = 0; i < (size_t)n * hid; i++) s->x[i] += s->tmp[i];

    for (int t = 0; t < n; t++)
        rmsnorm(s->xn + (size_t)t * hid, s->x + (size_t)t * hid, L->ffn_norm, hid, c->rms_eps);
    const lmp_mat *gu[2] = {&L->wgate, &L->wup};
    float *gu_out[2] = {s->g, s->u};
    lmp_mat_mul_many(gu, gu_out, 2, s->xn, n, s->pool);
    for (int t = 0; t < n; t++)
        silu_mul(s, s->g + (size_t)t * c->intermediate, s->u + (size_t)t * c->intermediate,
                 c->intermediate);
    lmp_mat_mul(&L->wdown, s->g, n, s->tmp, s->pool);
    for (size_t i = 0; i < (size_t)n * hid; i++) s->x[i] += s->tmp[i];
}

/* ---- fused path -------------------------------------------------------------
 * One gang run of the pool per piece of tokens instead of ~5 pool runs per
 * layer: every thread runs fused_task, the parallel phases of a layer are
 * separated by barriers, and within a phase the threads claim chunks of
 * output rows from a per-phase atomic counter (dynamic balance, as the pool
 * does). The small elementwise ops run on the chunk that was just computed,
 * by the thread that computed it (RoPE and the KV-cache store on q/k/v
 * heads, SiLU(gate) * up on gate/up rows, the residual add on o/down rows);
 * RMSNorm and the activation quantization, which need the whole vector,
 * are done before each matmul phase by gang_prep: in decode and short
 * prompts by every thread redundantly into its own scratch (a few us, and
 * it saves a barrier each); in prompts of SPLIT_MIN+ tokens each thread does
 * its share of the tokens, then a barrier (four more per layer). Five
 * barriers per layer otherwise:
 *   A  q, k, v rows by whole heads (+ RoPE, KV store)   | barrier
 *   B  attention, one (token, head) per claim           | barrier
 *   C  o_proj rows (+ residual add)                     | barrier
 *   D  gate and up rows of the same range (+ SiLU * up) | barrier
 *   E  down rows (+ residual add)                       | barrier
 * then the final norm and lm_head rows.
 * Every element is computed by the same functions with the same inputs as
 * the pool-run path (layer_forward), so the bits are the same for any
 * thread count, for decode vs prefill, and fused vs not (tests check it). */

enum { PH_QKV, PH_ATTN, PH_O, PH_GU, PH_DOWN, PHASES };

/* atomic_ints between two counters: each counter in its own 64-byte line,
 * so a thread taking claims from its own segment does not pull the line
 * away from the other thread */
#define CTR_PAD 16

/* Weight bytes per claim in decode (n == 1): small claims keep the wait at
 * each phase's end short (a thread that runs out waits at most one claim
 * for the other); their atomics are cheap because each thread counts in
 * its own line (CTR_PAD). Same binary, alternating runs, 2 threads: 64 KB
 * +1.0 % over 16 KB and +0.7 % over 32 KB (fewer kernel entries); 256 KB
 * -11 % (the tails). */
#define DECODE_CLAIM_BYTES 65536

static atomic_int fused_enabled = 1;

int lmp_forward_set_fused(int on)
{
    return atomic_exchange(&fused_enabled, on ? 1 : 0);
}

static size_t round64(size_t v)
{
    return (v + 63) & ~(size_t)63;
}

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

static lmp_status fused_init(lmp_state *s, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const lmp_model *m = s->m;
    const lmp_config *c = &m->cfg;
    int ok = 1;
    size_t tb = lmp_mat_prep_bytes(&m->lm_head, PIECE);
    for (int l = 0; l < c->n_layers; l++) {
        const lmp_layer *L = &m->layers[l];
        ok = ok && lmp_mat_prep_shared(&L->wq, &L->wk) && lmp_mat_prep_shared(&L->wq, &L->wv) &&
             lmp_mat_prep_shared(&L->wgate, &L->wup);
        tb = max_sz(tb, lmp_mat_prep_bytes(&L->wq, PIECE));
        tb = max_sz(tb, lmp_mat_prep_bytes(&L->wo, PIECE));
        tb = max_sz(tb, lmp_mat_prep_bytes(&L->wgate, PIECE));
        tb = max_sz(tb, lmp_mat_prep_bytes(&L->wdown, PIECE));
    }
    /* LMP_FUSED=0 in the environment: the pool-run path (A/B timing) */
    const char *env = getenv("LMP_FUSED");
    s->fused_ok = ok && !(env && strcmp(env, "0") == 0);
    if (!s->fused_ok) return LMP_OK;
    s->tbuf_bytes = round64(tb + 64);
    s->tbuf = malloc(s->tbuf_bytes * (size_t)s->nthreads);
    s->sbuf = malloc(s->tbuf_bytes);
    s->txn = alloc_floats((size_t)s->nthreads * PIECE * (size_t)c->hidden);
    s->ctr = aligned_alloc(64, sizeof(atomic_int) * CTR_PAD *
                                   ((size_t)c->n_layers * PHASES + 1) * (size_t)s->nthreads);
    LMP_FAIL_IF(!s->tbuf || !s->sbuf || !s->txn || !s->ctr, LMP_ERR_NOMEM,
                "out of memory for the per-thread forward scratch");
out:
    return rc;
}

typedef struct {
    lmp_state *s;
    int n, pos;   /* tokens of this piece and the position of the first */
    float *logits; /* NULL: no lm_head */
    int all;      /* logits for every token, else for the last only */
} fused_job;

/* Rows of w per claim, a multiple of `unit` rows. Prefill (n > 1): ~4
 * claims per thread, as quantize/q4.c splits a matmul, so that a claim
 * spans whole row blocks of the prefill tiles. Decode: ~DECODE_CLAIM_BYTES
 * of weights. Claims are walked in contiguous segments (claim_seg), so the
 * weight stream of a thread stays sequential either way. */
static int chunk_rows(const lmp_mat *w, int rows, int nt, int unit, int n)
{
    int c;
    if (nt == 1)
        c = rows; /* one claim: each lmp_mat_rows call costs a kernel entry */
    else if (n == 1)
        c = (int)((DECODE_CLAIM_BYTES + w->row_bytes - 1) / w->row_bytes);
    else
        c = (rows + 4 * nt - 1) / (4 * nt);
    c = (c + unit - 1) / unit * unit;
    return c < unit ? unit : c;
}

/* The group of nt claim counters (one per thread's segment, claim_seg) of
 * phase ph of layer l; layer n_layers, phase 0 is lm_head's. */
static atomic_int *phase_ctr(const lmp_state *s, int l, int ph)
{
    return s->ctr + ((size_t)l * PHASES + (size_t)ph) * (size_t)s->nthreads * CTR_PAD;
}

static int claim(atomic_int *c)
{
    return atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* The next of `total` claims for thread tid of nt, from a group of nt
 * counters (g[u] = claims taken from segment u). Claims are cut into nt
 * contiguous segments; a thread walks its own segment in order, so its
 * weight rows are one sequential stream per matrix (the hardware
 * prefetcher and the kernel's software prefetch run on across claims),
 * then helps with the others' segments. Claims handed out round-robin made
 * each thread jump every ~70-350 KB: a 2-thread matvec then streamed 15.7
 * instead of 22.6 GB/s with 34 KB claims (measured on this VM). Which
 * thread computes a row never changes its bits. */
static int claim_seg(atomic_int *g, int tid, int nt, int total)
{
    for (int i = 0; i < nt; i++) {
        const int u = (tid + i) % nt, b0 = (int)((long)total * u / nt),
                  b1 = (int)((long)total * (u + 1) / nt);
        atomic_int *gu = g + (size_t)u * CTR_PAD;
        if (atomic_load_explicit(gu, memory_order_relaxed) >= b1 - b0) continue;
        const int k = b0 + claim(gu);
        if (k < b1) return k;
    }
    return total;
}

/* Phase A: q in chunks of whole heads, then k and v together in chunks of
 * whole KV heads (RoPE on q and k, then k and v into the cache). */
static void phase_qkv(lmp_state *s, int l, int n, int pos, const lmp_mat_in *in, int tid,
                      int nt, atomic_int *ctr)
{
    const lmp_config *c = &s->m->cfg;
    const lmp_layer *L = &s->m->layers[l];
    int hd = c->head_dim, half = hd / 2, nh = c->n_heads, nkv = c->n_kv_heads;
    /* heads per claim (prefill: ~4 claims per thread over q, k and v) */
    int hpc = n == 1 && nt > 1 ? 1 : chunk_rows(&L->wq, nh + 2 * nkv, nt, 1, n);
    int cq = (nh + hpc - 1) / hpc, total = cq + (nkv + hpc - 1) / hpc;
    for (int k; (k = claim_seg(ctr, tid, nt, total)) < total;) {
        int isq = k < cq, h0 = (isq ? k : k - cq) * hpc, h1 = h0 + hpc, lim = isq ? nh : nkv;
        if (h1 > lim) h1 = lim;
        if (isq)
            lmp_mat_rows(&L->wq, in, h0 * hd, h1 * hd, s->q);
        else {
            lmp_mat_rows(&L->wk, in, h0 * hd, h1 * hd, s->k);
            lmp_mat_rows(&L->wv, in, h0 * hd, h1 * hd, s->v);
        }
        for (int t = 0; t < n; t++) {
            int p = pos + t;
            const float *cs = s->rope_cos + (size_t)p * half, *sn = s->rope_sin + (size_t)p * half;
            for (int h = h0; h < h1; h++) {
                if (isq) {
                    rope(s->q + (size_t)t * s->qdim + (size_t)h * hd, cs, sn, half);
                    continue;
                }
                float *kt = s->k + (size_t)t * s->kvdim + (size_t)h * hd;
                rope(kt, cs, sn, half);
                cache_put(s, l, h, p, kt, s->v + (size_t)t * s->kvdim + (size_t)h * hd);
            }
        }
    }
}

/* Phases C and E: rows of w into tmp, then x[n][hidden] += tmp on those
 * rows. */
static void phase_residual(lmp_state *s, const lmp_mat *w, const lmp_mat_in *in, float *x, int n,
                           int tid, int nt, atomic_int *ctr)
{
    int hid = s->m->cfg.hidden, rpc = chunk_rows(w, hid, nt, 16, n), total = (hid + rpc - 1) / rpc;
    int simd = lmp_mat_simd_active();
    for (int k; (k = claim_seg(ctr, tid, nt, total)) < total;) {
        int r0 = k * rpc, r1 = r0 + rpc < hid ? r0 + rpc : hid;
        lmp_mat_rows(w, in, r0, r1, s->tmp);
        for (int t = 0; t < n; t++) {
            size_t o = (size_t)t * hid + (size_t)r0;
            if (simd)
                lmp_vadd_avx2(x + o, s->tmp + o, r1 - r0);
            else
                for (int r = 0; r < r1 - r0; r++) x[o + r] += s->tmp[o + r];
        }
    }
}

/* Phase D: gate and up rows of the same range, then g = silu(g) * u there. */
static void phase_gate_up(lmp_state *s, const lmp_layer *L, const lmp_mat_in *in, int n, int tid,
                          int nt, atomic_int *ctr)
{
    int I = s->m->cfg.intermediate, rpc = chunk_rows(&L->wgate, I, nt, 16, n),
        total = (I + rpc - 1) / rpc;
    for (int k; (k = claim_seg(ctr, tid, nt, total)) < total;) {
        int r0 = k * rpc, r1 = r0 + rpc < I ? r0 + rpc : I;
        lmp_mat_rows(&L->wgate, in, r0, r1, s->g);
        lmp_mat_rows(&L->wup, in, r0, r1, s->u);
        for (int t = 0; t < n; t++)
            silu_mul(s, s->g + (size_t)t * I + r0, s->u + (size_t)t * I + r0, r1 - r0);
    }
}

/* Pieces of at least this many tokens prepare each matmul input together
 * (gang_prep); shorter ones, decode above all, redundantly per thread. */
#define SPLIT_MIN 8

/* The input of w (and of the matrices sharing it) from x[n][cols], first
 * RMS-normalised with `norm` when not NULL. With 2+ threads and at least
 * SPLIT_MIN tokens, each thread normalises and quantizes its own share of
 * the tokens into the shared s->xn / s->sbuf, then all meet at a barrier:
 * a 16-token prompt spent ~7 % of its CPU on doing all of it in every
 * thread. Else each thread does every token into its own xn / buf, which
 * saves the barrier. The same functions on the same values either way, so
 * the same bits. */
static void gang_prep(lmp_state *s, const lmp_mat *w, const float *x, const float *norm, int n,
                      int tid, int nt, float *xn, void *buf, lmp_mat_in *in)
{
    const lmp_config *c = &s->m->cfg;
    const int hid = c->hidden, split = nt > 1 && n >= SPLIT_MIN;
    const int t0 = split ? (int)((long)n * tid / nt) : 0;
    const int t1 = split ? (int)((long)n * (tid + 1) / nt) : n;
    float *nx = split ? s->xn : xn;
    if (norm)
        for (int t = t0; t < t1; t++)
            rmsnorm(nx + (size_t)t * hid, x + (size_t)t * hid, norm, hid, c->rms_eps);
    const float *in_x = norm ? nx : x;
    if (!split) {
        lmp_mat_prep(w, in_x, n, buf, in);
        return;
    }
    lmp_mat_prep_part(w, in_x, n, t0, t1, s->sbuf, buf, in);
    lmp_pool_barrier(s->pool);
}

static void fused_task(void *ctx, int tid, int nt)
{
    const fused_job *j = ctx;
    lmp_state *s = j->s;
    const lmp_model *m = s->m;
    const lmp_config *c = &m->cfg;
    lmp_pool *pool = nt > 1 ? s->pool : NULL;
    int n = j->n, hid = c->hidden;
    float *xn = s->txn + (size_t)tid * PIECE * hid;
    void *buf = s->tbuf + (size_t)tid * s->tbuf_bytes;
    lmp_mat_in in;
    for (int l = 0; l < c->n_layers; l++) {
        const lmp_layer *L = &m->layers[l];
        gang_prep(s, &L->wq, s->x, L->attn_norm, n, tid, nt, xn, buf, &in);
        phase_qkv(s, l, n, j->pos, &in, tid, nt, phase_ctr(s, l, PH_QKV));
        lmp_pool_barrier(pool);

        /* The last layer's output only feeds the logits: past its K/V
         * (stored above for every token), only the tokens whose logits are
         * wanted go on (none when this piece wants none). A 16-token prompt
         * skips 15/16 of the last layer's attention, o_proj and MLP. Each
         * token's values do not depend on which others are computed with
         * it, so the bits are those of the full pass. */
        int t0 = 0;
        if (l == c->n_layers - 1 && !j->all) {
            if (!j->logits) return;
            t0 = n - 1;
        }
        const int nn = n - t0;
        float *x = s->x + (size_t)t0 * hid;

        attn_job aj;
        int natt = attn_setup(s, &aj, l, t0, n, j->pos);
        for (int k; (k = claim(phase_ctr(s, l, PH_ATTN))) < natt;) attn_task(&aj, k, tid);
        lmp_pool_barrier(pool);

        gang_prep(s, &L->wo, s->att + (size_t)t0 * s->qdim, NULL, nn, tid, nt, xn, buf, &in);
        phase_residual(s, &L->wo, &in, x, nn, tid, nt, phase_ctr(s, l, PH_O));
        lmp_pool_barrier(pool);

        gang_prep(s, &L->wgate, x, L->ffn_norm, nn, tid, nt, xn, buf, &in);
        phase_gate_up(s, L, &in, nn, tid, nt, phase_ctr(s, l, PH_GU));
        lmp_pool_barrier(pool);

        gang_prep(s, &L->wdown, s->g, NULL, nn, tid, nt, xn, buf, &in);
        phase_residual(s, &L->wdown, &in, x, nn, tid, nt, phase_ctr(s, l, PH_DOWN));
        lmp_pool_barrier(pool);
    }
    if (!j->logits) return;
    int t0 = j->all ? 0 : n - 1, nl = n - t0, V = c->vocab;
    for (int t = t0; t < n; t++)
        rmsnorm(xn + (size_t)(t - t0) * hid, s->x + (size_t)t * hid, m->final_norm, hid,
                c->rms_eps);
    lmp_mat_prep(&m->lm_head, xn, nl, buf, &in);
    atomic_int *ctr = phase_ctr(s, c->n_layers, 0);
    int rpc = chunk_rows(&m->lm_head, V, nt, 16, nl), total = (V + rpc - 1) / rpc;
    for (int k; (k = claim_seg(ctr, tid, nt, total)) < total;) {
        int r0 = k * rpc;
        lmp_mat_rows(&m->lm_head, &in, r0, r0 + rpc < V ? r0 + rpc : V, j->logits);
    }
}

/* One piece through the fused path (caller checked fused_usable). */
static void fused_piece(lmp_state *s, int n, int pos, float *logits, int all)
{
    const lmp_config *c = &s->m->cfg;
    for (size_t i = 0; i < ((size_t)c->n_layers * PHASES + 1) * (size_t)s->nthreads; i++)
        atomic_init(&s->ctr[i * CTR_PAD], 0);
    fused_job j = {s, n, pos, logits, all};
    if (s->nthreads == 1)
        fused_task(&j, 0, 1);
    else
        lmp_pool_gang(s->pool, fused_task, &j);
}

static int fused_usable(const lmp_state *s)
{
    return s->fused_ok && !s->hook && !s->m->acquire_layer && atomic_load(&fused_enabled);
}

lmp_status lmp_forward(lmp_state *s, const int *ids, int n, int pos, float *logits_out,
                       int logits_mode, lmp_diag *d)
{
    const lmp_model *m = s->m;
    const lmp_config *c = &m->cfg;
    if (n < 1 || !ids) return lmp_fail(d, LMP_ERR_ARG, "forward: no tokens given");
    if (logits_mode != LMP_LOGITS_LAST && logits_mode != LMP_LOGITS_ALL)
        return lmp_fail(d, LMP_ERR_ARG, "forward: unknown logits mode %d", logits_mode);
    if (pos < 0 || pos > s->filled)
        return lmp_fail(d, LMP_ERR_ARG,
                        "forward: position %d leaves a gap after the %d cached positions", pos,
                        s->filled);
    if ((long long)pos + n > s->ctx)
        return lmp_fail(d, LMP_ERR_RANGE,
                        "%d tokens at position %d exceed the context of %d positions", n, pos,
                        s->ctx);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return lmp_fail(d, LMP_ERR_RANGE,
                            "token id %d (index %d) is outside the vocabulary [0, %d)", ids[i],
                            i, c->vocab);
    int hid = c->hidden;
    for (int p0 = 0; p0 < n; p0 += PIECE) {
        int b = n - p0 < PIECE ? n - p0 : PIECE;
        int at = pos + p0;
        for (int t = 0; t < b; t++) lmp_mat_get_row(&m->embed, ids[p0 + t], s->x + (size_t)t * hid);
        if (fused_usable(s)) {
            int last_piece = p0 + b == n;
            int want = logits_out && (logits_mode == LMP_LOGITS_ALL || last_piece);
            int all = logits_mode == LMP_LOGITS_ALL;
            fused_piece(s, b, at, want ? logits_out + (all ? (size_t)p0 * c->vocab : 0) : NULL,
                        all);
            s->filled = at + b;
            continue;
        }
        if (s->hook) s->hook(s->hook_ctx, 0, at, b, s->x);
        for (int l = 0; l < c->n_layers; l++) {
            if (m->acquire_layer) { /* streamed model: bring layer l in */
                lmp_status st = m->acquire_layer(m->owner, l, d);
                if (st != LMP_OK) return st;
            }
            layer_forward(s, l, b, at);
            if (s->hook && l + 1 < c->n_layers) s->hook(s->hook_ctx, l + 1, at, b, s->x);
        }
        s->filled = at + b;
        int last_piece = p0 + b == n;
        int want = logits_out && (logits_mode == LMP_LOGITS_ALL || last_piece);
        if (!want && !s->hook) continue;
        for (int t = 0; t < b; t++)
            rmsnorm(s->xn + (size_t)t * hid, s->x + (size_t)t * hid, m->final_norm, hid,
                    c->rms_eps);
        if (s->hook) s->hook(s->hook_ctx, c->n_layers, at, b, s->xn);
        if (!want) continue;
        if (logits_mode == LMP_LOGITS_ALL)
            lmp_mat_mul(&m->lm_head, s->xn, b, logits_out + (size_t)p0 * c->vocab, s->pool);
        else
            lmp_mat_mul(&m->lm_head, s->xn + (size_t)(b - 1) * hid, 1, logits_out, s->pool);
    }
    return LMP_OK;
}
