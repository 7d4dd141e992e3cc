/* Llama forward pass (see forward.h for the math and the contracts). */
#include "runtime/forward.h"

#include "runtime/mat_impl.h"

#include "common/cpu.h"

#include <math.h>
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

struct lmp_state {
    const lmp_model *m;
    lmp_pool *pool;     /* borrowed */
    int ctx, filled, nthreads;
    int qdim, kvdim;    /* n_heads*head_dim, n_kv_heads*head_dim */
    int ctxr;           /* ctx rounded up to LMP_ATTN_KB: positions per KV head */
    int attn_tok, attn_rows; /* tokens per attention tile at most, rows (x query heads) */
    /* [layer][kv_head][ctxr * head_dim]: K in position blocks (lmp_attn_koff),
     * V as [ctxr][head_dim] */
    float *kc, *vc;
    float *rope_cos, *rope_sin; /* [ctx][head_dim/2] */
    float *scores;      /* [nthreads][attn_rows][ctxr] attention scratch */
    /* piece scratch, [PIECE][...] */
    float *x, *xn, *q, *k, *v, *att, *tmp, *g, *u;
    lmp_hidden_hook hook;
    void *hook_ctx;
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
    free(s);
}

lmp_status lmp_state_create(lmp_state **out, const lmp_model *m, int ctx, lmp_pool *pool,
                            lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const lmp_config *c = &m->cfg;
    lmp_state *s = NULL;
    *out = NULL;
    if (ctx == 0) ctx = c->max_pos;
    LMP_FAIL_IF(ctx < 1 || ctx > c->max_pos, LMP_ERR_RANGE,
                "context %d is outside [1, %d] (max_position_embeddings)", ctx, c->max_pos);
    s = calloc(1, sizeof *s);
    LMP_FAIL_IF(!s, LMP_ERR_NOMEM, "out of memory for the runtime state");
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
    s->kc = cache ? calloc(cache, sizeof(float)) : NULL;
    s->vc = alloc_floats(cache);
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
                cache * 2 * sizeof(float) >> 20);
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

/* out = x * rsqrt(mean(x^2) + eps) * w, accumulated in double. */
static void rmsnorm(float *out, const float *x, const float *w, int h, float eps)
{
    double ss = 0.0;
    for (int i = 0; i < h; i++) ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / h + (double)eps);
    for (int i = 0; i < h; i++) out[i] = (float)(x[i] * scale) * w[i];
}

/* Rotate-half RoPE on one head vector at position p. */
static void rope(float *v, const float *cs, const float *sn, int half)
{
    for (int i = 0; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
    }
}

/* Scalar reference: out = softmax(q.K * scale) V over np positions; K in the
 * blocked layout of the cache (lmp_attn_koff), V [np][hd]. */
static void attn_head_ref(const float *q, const float *K, const float *V, int np, int hd,
                          float scale, float *sc, float *out)
{
    float mx = -INFINITY;
    for (int p = 0; p < np; p++) {
        float dot = 0.0f;
        for (int i = 0; i < hd; i++) dot += q[i] * K[lmp_attn_koff(p, i, hd)];
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
        const float *vp = V + (size_t)p * hd;
        for (int i = 0; i < hd; i++) out[i] += w * vp[i];
    }
}

/* Position p of KV head h in layer l: k and v (head_dim floats each) into the cache. */
static void cache_put(lmp_state *s, int l, int h, int p, const float *k, const float *v)
{
    int hd = s->m->cfg.head_dim;
    size_t base = ((size_t)l * s->m->cfg.n_kv_heads + h) * (size_t)s->ctxr * hd;
    for (int i = 0; i < hd; i++) s->kc[base + lmp_attn_koff(p, i, hd)] = k[i];
    memcpy(s->vc + base + (size_t)p * hd, v, (size_t)hd * sizeof(float));
}

typedef struct {
    lmp_state *s;
    int layer, n, pos, tt, ntiles; /* tt tokens per tile */
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
    int t0 = tile * j->tt;
    int nt = j->n - t0 < j->tt ? j->n - t0 : j->tt;
    size_t base = ((size_t)j->layer * nkv + kvh) * (size_t)s->ctxr * hd;
    size_t row0 = (size_t)t0 * s->qdim + (size_t)kvh * g * hd;
    float *sc = s->scores + (size_t)tid * s->attn_rows * s->ctxr;
    float scale = (float)(1.0 / sqrt((double)hd));
    if (j->simd) {
        lmp_attn_tile a = {.q = s->q + row0, .q_tok = (size_t)s->qdim, .out = s->att + row0,
                           .out_tok = (size_t)s->qdim, .ntok = nt, .nhead = g,
                           .np0 = j->pos + t0 + 1, .hd = hd, .scale = scale,
                           .k = s->kc + base, .v = s->vc + base, .sc = sc,
                           .sc_stride = (size_t)s->ctxr};
        (j->simd == 2 ? lmp_attn_tile_avx512 : lmp_attn_tile_avx2)(&a);
        return;
    }
    for (int t = 0; t < nt; t++)
        for (int h = 0; h < g; h++) {
            size_t r = row0 + (size_t)t * s->qdim + (size_t)h * hd;
            attn_head_ref(s->q + r, s->kc + base, s->vc + base, j->pos + t0 + t + 1, hd, scale,
                          sc, s->att + r);
        }
}

static void run_tasks(lmp_state *s, lmp_task_fn fn, void *ctx, int n)
{
    if (s->nthreads == 1)
        for (int i = 0; i < n; i++) fn(ctx, i, 0);
    else
        lmp_pool_run(s->pool, fn, ctx, n);
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
    /* AVX-512 tile (the same bits) only for prompts: a decode step's 3 rows
     * gain little from 16 lanes, and next to the AVX2 int4 matmul the 512-bit
     * FMAs cost it ~5 % (frequency license; measured CPU-time rates) */
    int simd = !lmp_mat_simd_active() ? 0 : n > 1 && lmp_cpu_avx512() ? 2 : 1;
    /* the largest tiles that still give each thread ~4 tasks (a row's bits do
     * not depend on the cut) */
    int tt = n * nkv / (4 * s->nthreads);
    tt = tt < 1 ? 1 : tt > s->attn_tok ? s->attn_tok : tt;
    attn_job aj = {.s = s, .layer = l, .n = n, .pos = pos, .simd = simd, .tt = tt,
                   .ntiles = (n + tt - 1) / tt};
    run_tasks(s, attn_task, &aj, aj.ntiles * nkv);
    lmp_mat_mul(&L->wo, s->att, n, s->tmp, s->pool);
    for (size_t i = 0; i < (size_t)n * hid; i++) s->x[i] += s->tmp[i];

    for (int t = 0; t < n; t++)
        rmsnorm(s->xn + (size_t)t * hid, s->x + (size_t)t * hid, L->ffn_norm, hid, c->rms_eps);
    const lmp_mat *gu[2] = {&L->wgate, &L->wup};
    float *gu_out[2] = {s->g, s->u};
    lmp_mat_mul_many(gu, gu_out, 2, s->xn, n, s->pool);
    for (size_t i = 0; i < (size_t)n * c->intermediate; i++) {
        float gv = s->g[i];
        s->g[i] = gv / (1.0f + expf(-gv)) * s->u[i];
    }
    lmp_mat_mul(&L->wdown, s->g, n, s->tmp, s->pool);
    for (size_t i = 0; i < (size_t)n * hid; i++) s->x[i] += s->tmp[i];
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
