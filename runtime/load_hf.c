/* Hugging Face folder -> lmp_model with every tensor converted to float32.
 *
 * One anonymous mapping (huge pages requested) holds all weights, 4 bytes
 * per parameter. A first pass checks every tensor's name, shape and dtype
 * and sizes the buffer; the conversion then runs on all CPUs in chunks of
 * 4M elements, and each tensor's source pages are dropped (lmp_st_release)
 * as soon as it is converted, so the files add little to the peak RSS.
 * The safetensors files are closed before the function returns.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/pool.h"
#include "formats/config.h"
#include "formats/dtype.h"
#include "formats/safetensors.h"
#include "runtime/model.h"

/* The weight buffer: an anonymous mapping, with transparent huge pages
 * requested (fewer page faults while converting, fewer TLB misses while
 * streaming the weights every token). */
typedef struct {
    void *p;
    size_t n;
} weights;

static void release_weights(void *owner)
{
    weights *w = owner;
    if (!w) return;
    if (w->p) munmap(w->p, w->n);
    free(w);
}

static weights *alloc_weights(size_t bytes)
{
    weights *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->n = bytes;
    w->p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->p == MAP_FAILED) {
        free(w);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    madvise(w->p, bytes, MADV_HUGEPAGE); /* best effort */
#endif
    return w;
}

/* One tensor to convert in the fill pass; converted in chunks by the pool,
 * its source pages dropped when its last chunk is done. */
typedef struct {
    const lmp_st_tensor *t;
    float *dst;
    int first_chunk, n_chunks;
    atomic_int left;
} conv_job;

typedef struct {
    const lmp_config *c;
    const lmp_st *st;
    const char *dir;
    float *buf;    /* NULL on the sizing pass */
    size_t used;   /* floats */
    conv_job *jobs; /* fill pass: one per tensor */
    int n_jobs, n_chunks;
} loader;

#define CHUNK_ELEMS ((uint64_t)1 << 22)

/* Size pass (L->buf NULL): count floats. Fill pass: convert into buf. */
static lmp_status take(loader *L, const char *name, int64_t rows, int64_t cols,
                       const float **out, lmp_diag *d)
{
    const lmp_st_tensor *t = lmp_st_find(L->st, name);
    int64_t n = rows * (cols > 0 ? cols : 1);
    if (!t) return lmp_fail(d, LMP_ERR_MODEL, "%s: tensor '%s' is missing", L->dir, name);
    int ndim_want = cols > 0 ? 2 : 1;
    if (t->ndim != ndim_want || t->shape[0] != rows || (cols > 0 && t->shape[1] != cols)) {
        char got[64], want[64];
        if (t->ndim == 1)
            snprintf(got, sizeof got, "[%lld]", (long long)t->shape[0]);
        else if (t->ndim == 2)
            snprintf(got, sizeof got, "[%lld, %lld]", (long long)t->shape[0],
                     (long long)t->shape[1]);
        else
            snprintf(got, sizeof got, "%d dimensions", t->ndim);
        if (cols > 0)
            snprintf(want, sizeof want, "[%lld, %lld]", (long long)rows, (long long)cols);
        else
            snprintf(want, sizeof want, "[%lld]", (long long)rows);
        return lmp_fail(d, LMP_ERR_MODEL, "%s: tensor '%s' has shape %s, config wants %s",
                        L->dir, name, got, want);
    }
    if (t->dtype != LMP_DT_F32 && t->dtype != LMP_DT_F16 && t->dtype != LMP_DT_BF16)
        return lmp_fail(d, LMP_ERR_UNSUPPORTED,
                        "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported",
                        L->dir, name, lmp_dtype_name(t->dtype));
    if (L->buf) {
        conv_job *j = &L->jobs[L->n_jobs];
        j->t = t;
        j->dst = L->buf + L->used;
        j->first_chunk = L->n_chunks;
        j->n_chunks = (int)((t->nelem + CHUNK_ELEMS - 1) / CHUNK_ELEMS);
        atomic_init(&j->left, j->n_chunks);
        *out = j->dst;
        L->n_chunks += j->n_chunks;
    }
    L->n_jobs++;
    L->used += (size_t)n;
    return LMP_OK;
}

static lmp_status take_mat(loader *L, const char *name, int rows, int cols, lmp_mat *w,
                           lmp_diag *d)
{
    const float *p = NULL;
    lmp_status rc = take(L, name, rows, cols, &p, d);
    if (rc) return rc;
    memset(w, 0, sizeof *w);
    w->kind = LMP_MAT_F32;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = (size_t)cols * sizeof(float);
    w->data = p;
    return LMP_OK;
}

static lmp_status load_all(loader *L, lmp_model *m, lmp_diag *d)
{
    const lmp_config *c = L->c;
    int h = c->hidden, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    int f = c->intermediate;
    char name[128];
    lmp_status rc;
    if ((rc = take_mat(L, "model.embed_tokens.weight", c->vocab, h, &m->embed, d))) return rc;
    for (int l = 0; l < c->n_layers; l++) {
        lmp_layer *Y = &m->layers[l];
        static const char *const mats[7] = {"self_attn.q_proj", "self_attn.k_proj",
                                            "self_attn.v_proj", "self_attn.o_proj",
                                            "mlp.gate_proj",    "mlp.up_proj",
                                            "mlp.down_proj"};
        lmp_mat *dst[7] = {&Y->wq, &Y->wk, &Y->wv, &Y->wo, &Y->wgate, &Y->wup, &Y->wdown};
        int rows[7] = {q, kv, kv, h, f, f, h};
        int cols[7] = {h, h, h, q, h, h, f};
        for (int i = 0; i < 7; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, mats[i]);
            if ((rc = take_mat(L, name, rows[i], cols[i], dst[i], d))) return rc;
        }
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if ((rc = take(L, name, h, 0, &Y->attn_norm, d))) return rc;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if ((rc = take(L, name, h, 0, &Y->ffn_norm, d))) return rc;
    }
    if ((rc = take(L, "model.norm.weight", h, 0, &m->final_norm, d))) return rc;
    if (c->tied) {
        if (lmp_st_find(L->st, "lm_head.weight"))
            return lmp_fail(d, LMP_ERR_MODEL,
                            "%s: tie_word_embeddings is true but the checkpoint has "
                            "lm_head.weight",
                            L->dir);
        m->lm_head = m->embed;
    } else if ((rc = take_mat(L, "lm_head.weight", c->vocab, h, &m->lm_head, d))) {
        return rc;
    }
    return LMP_OK;
}

static void conv_task(void *ctx, int task, int tid)
{
    (void)tid;
    loader *L = ctx;
    int lo = 0, hi = L->n_jobs - 1; /* job holding chunk `task` */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (L->jobs[mid].first_chunk <= task)
            lo = mid;
        else
            hi = mid - 1;
    }
    conv_job *j = &L->jobs[lo];
    uint64_t e0 = (uint64_t)(task - j->first_chunk) * CHUNK_ELEMS;
    uint64_t n = j->t->nelem - e0 < CHUNK_ELEMS ? j->t->nelem - e0 : CHUNK_ELEMS;
    /* dtype was checked in the sizing pass: cannot fail */
    lmp_to_f32(j->t->dtype, j->t->data + e0 * lmp_dtype_size(j->t->dtype), j->dst + e0,
               (size_t)n);
    if (atomic_fetch_sub(&j->left, 1) == 1) lmp_st_release(L->st, j->t);
}

lmp_status lmp_model_load_hf(lmp_model *m, const char *dir, const lmp_model_opts *opts,
                             lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_st *st = NULL;
    weights *buf = NULL;
    lmp_pool *pool = NULL;
    loader L = {0};
    memset(m, 0, sizeof *m);
    LMP_FAIL_IF(opts && opts->flags, LMP_ERR_ARG, "%s: unknown model option flags 0x%x", dir,
                opts ? opts->flags : 0u);
    LMP_FORWARD(lmp_config_load(&m->cfg, dir, d));
    LMP_FORWARD(lmp_st_open(&st, dir, d));
    LMP_FORWARD(lmp_config_check(&m->cfg, st, d));
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    LMP_FAIL_IF(!m->layers, LMP_ERR_NOMEM, "%s: out of memory for %d layers", dir,
                m->cfg.n_layers);
    L.c = &m->cfg;
    L.st = st;
    L.dir = dir;
    LMP_FORWARD(load_all(&L, m, d)); /* sizing pass, checks names/shapes/dtypes */
    LMP_FAIL_IF(L.used > SIZE_MAX / sizeof(float), LMP_ERR_NOMEM, "%s: model too large", dir);
    buf = alloc_weights(L.used * sizeof(float));
    LMP_FAIL_IF(!buf, LMP_ERR_NOMEM, "%s: out of memory for %zu MB of float32 weights", dir,
                L.used * sizeof(float) >> 20);
    L.jobs = calloc((size_t)L.n_jobs, sizeof *L.jobs);
    LMP_FAIL_IF(!L.jobs, LMP_ERR_NOMEM, "%s: out of memory", dir);
    L.buf = buf->p;
    L.used = 0;
    L.n_jobs = 0;
    LMP_FORWARD(load_all(&L, m, d));
    /* convert with every CPU: page faults and conversion run in parallel */
    LMP_FORWARD(lmp_pool_create(&pool, 0, d));
    lmp_pool_run(pool, conv_task, &L, L.n_chunks);
    const lmp_st_tensor *t0 = lmp_st_find(st, "model.embed_tokens.weight");
    snprintf(m->source, sizeof m->source, "hf-%s",
             t0 && t0->dtype == LMP_DT_BF16 ? "bf16" : t0 && t0->dtype == LMP_DT_F16 ? "f16" : "f32");
    m->release = release_weights;
    m->owner = buf;
    buf = NULL;
    LMP_FORWARD(lmp_model_check(m, dir, d));
out:
    lmp_pool_close(pool);
    free(L.jobs);
    lmp_st_close(st);
    release_weights(buf);
    if (rc != LMP_OK) lmp_model_close(m);
    return rc;
}
