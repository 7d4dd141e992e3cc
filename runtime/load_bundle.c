/* Bundle folder (manifest.json + chunks) -> lmp_model.
 *
 * The manifest is read with full validation (manifest/manifest.h). Every
 * chunk read goes through lmp_chunk_load: size and XXH3 of the compressed
 * bytes are checked BEFORE decompressing, the decompressed size and XXH3
 * after, then the header is parsed and compared with the manifest. Any
 * mismatch is an error naming the chunk (never garbage output).
 *
 * Resident mode (default): every chunk is read once, in load order, and its
 * decompressed image (64-byte aligned, the container's tensor layout) stays
 * resident; the views point into it, so the forward pass computes exactly
 * what it computes on the .lmpk the bundle was split from.
 *
 * Streaming mode (opts->stream_layers = K > 0): only the head chunk stays
 * resident. Layer weights live in K slots; when the forward pass asks for a
 * layer that is not in a slot (acquire_layer), its chunk is read and
 * verified again, and that layer plus the following ones of the same chunk
 * (up to K) are copied into slots, evicting the oldest (their views become
 * NULL). The bytes are the same, so the logits are the same as resident.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/pool.h"
#include "formats/chunk.h"
#include "formats/lmpk.h"
#include "manifest/manifest.h"
#include "runtime/model.h"

static const char *const mats[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                    "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                    "mlp.down_proj"};

typedef struct bundle_owner {
    char *dir;
    lmp_manifest *man;
    size_t n;
    lmp_chunk *chunks;   /* resident chunk images (each owns its raw image) */
    /* streaming */
    lmp_layer *layers;   /* the model's layer array (views updated in place) */
    int n_layers, k;
    int *chunk_of;       /* layer -> manifest chunk index */
    int *slot_of;        /* layer -> slot or -1 */
    int *slot_layer;     /* slot -> layer or -1 */
    uint8_t **slot_buf;  /* K buffers of slot_bytes, 64-byte aligned */
    size_t slot_bytes;
    int next;            /* FIFO victim */
} bundle_owner;

static void release_bundle(void *p)
{
    bundle_owner *o = p;
    if (!o) return;
    for (size_t i = 0; i < o->n; i++) lmp_chunk_free(&o->chunks[i]);
    free(o->chunks);
    if (o->slot_buf)
        for (int i = 0; i < o->k; i++) free(o->slot_buf[i]);
    free(o->slot_buf);
    free(o->chunk_of);
    free(o->slot_of);
    free(o->slot_layer);
    lmp_manifest_free(o->man);
    free(o->dir);
    free(o);
}

static const lmp_chunk_tensor *find_in(const lmp_chunk_tensor *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

static const lmp_chunk_tensor *find(const bundle_owner *o, const char *name)
{
    for (size_t c = 0; c < o->n; c++) {
        const lmp_chunk_tensor *t = find_in(o->chunks[c].tensors, o->chunks[c].n_tensors, name);
        if (t) return t;
    }
    return NULL;
}

/* Fill a matrix view or a norm vector from tensor t with bytes at data. */
static lmp_status set_view(const lmp_chunk_tensor *t, const uint8_t *data, const char *dir,
                           const char *name, lmp_mat *w, const float **vec, lmp_diag *d)
{
    if (!t) return lmp_fail(d, LMP_ERR_MODEL, "%s: tensor '%s' missing from the bundle", dir, name);
    if (vec) {
        if (t->ndim != 1 || t->kind != LMP_MAT_F32)
            return lmp_fail(d, LMP_ERR_MODEL, "%s: tensor '%s' must be a 1-D f32 vector", dir,
                            name);
        *vec = (const float *)(const void *)data;
        return LMP_OK;
    }
    if (t->ndim != 2) return lmp_fail(d, LMP_ERR_MODEL, "%s: tensor '%s' must be 2-D", dir, name);
    uint64_t rb = 0;
    if (!lmp_lmpk_tensor_bytes((lmp_mat_kind)t->kind, 2, t->shape, t->group, t->scheme, &rb,
                               name, d))
        return LMP_ERR_FORMAT;
    memset(w, 0, sizeof *w);
    w->kind = (lmp_mat_kind)t->kind;
    w->rows = (int)t->shape[0];
    w->cols = (int)t->shape[1];
    w->group = t->group;
    w->scheme = t->scheme;
    w->row_bytes = (size_t)rb;
    w->data = data;
    return LMP_OK;
}

/* Layer l's nine views from tensors tab[n]; data(t) gives each one's bytes. */
static lmp_status set_layer(lmp_layer *L, int l, const lmp_chunk_tensor *tab, size_t n,
                            const uint8_t *const *data, const char *dir, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char name[128];
    lmp_mat *dst[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wgate, &L->wup, &L->wdown};
    for (int k = 0; k < 7; k++) {
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, mats[k]);
        const lmp_chunk_tensor *t = find_in(tab, n, name);
        LMP_FORWARD(set_view(t, t ? data[t - tab] : NULL, dir, name, dst[k], NULL, d));
    }
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    const lmp_chunk_tensor *t = find_in(tab, n, name);
    LMP_FORWARD(set_view(t, t ? data[t - tab] : NULL, dir, name, NULL, &L->attn_norm, d));
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    t = find_in(tab, n, name);
    LMP_FORWARD(set_view(t, t ? data[t - tab] : NULL, dir, name, NULL, &L->ffn_norm, d));
out:
    return rc;
}

/* Read and verify manifest chunk c (hash before decompressing, header vs
 * manifest). */
static lmp_status load_chunk(const bundle_owner *o, size_t c, lmp_chunk *out, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const lmp_manifest_chunk *mc = &o->man->chunks[c];
    lmp_chunk_expect e;
    e.compressed_size = mc->compressed_size;
    e.raw_size = mc->raw_size;
    memcpy(e.xxh3_compressed, mc->xxh3_compressed, LMP_HASH_HEX);
    memcpy(e.xxh3_raw, mc->xxh3_raw, LMP_HASH_HEX);
    char *path = lmp_path_join(o->dir, mc->file);
    LMP_FAIL_IF(!path, LMP_ERR_NOMEM, "%s: out of memory", o->dir);
    rc = lmp_chunk_load(out, path, mc->file, &e, d);
    if (rc != LMP_OK) {
        lmp_diag_prefix(d, o->dir);
        goto out;
    }
    int same = out->role == mc->role && out->first_layer == mc->first_layer &&
               out->last_layer == mc->last_layer && out->n_tensors == mc->n_tensors;
    for (size_t i = 0; same && i < out->n_tensors; i++) {
        const lmp_chunk_tensor *a = &out->tensors[i], *b = &mc->tensors[i];
        same = !strcmp(a->name, b->name) && a->kind == b->kind && a->ndim == b->ndim &&
               a->group == b->group && a->scheme == b->scheme && a->offset == b->offset &&
               a->size == b->size && !memcmp(a->shape, b->shape, sizeof a->shape);
    }
    if (!same) {
        lmp_chunk_free(out);
        LMP_FAIL(LMP_ERR_INTEGRITY, "%s: %s: chunk header disagrees with the manifest", o->dir,
                 mc->file);
    }
out:
    free(path);
    return rc;
}

typedef struct load_job {
    bundle_owner *o;
    lmp_diag *diags;
} load_job;

static void load_one(void *ctx, int i, int tid)
{
    (void)tid;
    load_job *j = ctx;
    load_chunk(j->o, (size_t)i, &j->o->chunks[i], &j->diags[i]);
}

/* Read and verify chunks [0, n) on all CPUs (hashing and decompression
 * dominate the load time); the first failure in load order is reported. */
static lmp_status load_resident(bundle_owner *o, size_t n, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_pool *pool = NULL;
    lmp_diag *diags = calloc(n, sizeof *diags);
    LMP_FAIL_IF(!diags, LMP_ERR_NOMEM, "%s: out of memory", o->dir);
    for (size_t i = 0; i < n; i++) lmp_diag_clear(&diags[i]);
    load_job j = {o, diags};
    if (n > 1 && lmp_pool_create(&pool, n < 8 ? (int)n : 0, NULL) == LMP_OK)
        lmp_pool_run(pool, load_one, &j, (int)n);
    else
        for (size_t i = 0; i < n; i++) load_one(&j, (int)i, 0);
    o->n = n; /* failed slots are zeroed: freeing them is a no-op */
    for (size_t i = 0; i < n; i++)
        if (diags[i].status != LMP_OK) {
            if (d && d->status == LMP_OK) *d = diags[i];
            rc = diags[i].status;
            goto out;
        }
out:
    lmp_pool_close(pool);
    free(diags);
    return rc;
}

static void clear_layer(lmp_layer *L)
{
    memset(L, 0, sizeof *L); /* NULL views: a missed acquire faults, never reads stale data */
}

/* Bytes of layer l's tensors in a slot (each at a multiple of 64). */
static size_t layer_bytes(const lmp_manifest_chunk *mc, int l)
{
    char pre[48];
    snprintf(pre, sizeof pre, "model.layers.%d.", l);
    size_t n = 0, pl = strlen(pre);
    for (size_t i = 0; i < mc->n_tensors; i++)
        if (!strncmp(mc->tensors[i].name, pre, pl)) n += (mc->tensors[i].size + 63) / 64 * 64;
    return n;
}

static lmp_status acquire_layer(void *owner, int l, lmp_diag *d)
{
    bundle_owner *o = owner;
    lmp_status rc = LMP_OK;
    lmp_chunk ch;
    memset(&ch, 0, sizeof ch);
    if (l < 0 || l >= o->n_layers)
        return lmp_fail(d, LMP_ERR_INTERNAL, "%s: layer %d out of range", o->dir, l);
    if (o->slot_of[l] >= 0) return LMP_OK;
    int c = o->chunk_of[l];
    LMP_FORWARD(load_chunk(o, (size_t)c, &ch, d));
    const uint8_t **data = calloc(ch.n_tensors, sizeof *data);
    LMP_FAIL_IF(!data, LMP_ERR_NOMEM, "%s: out of memory", o->dir);
    int last = ch.last_layer < l + o->k - 1 ? ch.last_layer : l + o->k - 1;
    for (int j = l; j <= last; j++) {
        if (o->slot_of[j] >= 0) continue;
        int s = o->next;
        o->next = (o->next + 1) % o->k;
        if (o->slot_layer[s] >= 0) {
            clear_layer(&o->layers[o->slot_layer[s]]);
            o->slot_of[o->slot_layer[s]] = -1;
            o->slot_layer[s] = -1;
        }
        /* copy j's tensors into the slot, 64-byte aligned each */
        char pre[48];
        snprintf(pre, sizeof pre, "model.layers.%d.", j);
        size_t pl = strlen(pre), at = 0;
        for (size_t i = 0; i < ch.n_tensors; i++) {
            data[i] = NULL;
            if (strncmp(ch.tensors[i].name, pre, pl) != 0) continue;
            LMP_FAIL_IF(at + ch.tensors[i].size > o->slot_bytes, LMP_ERR_INTERNAL,
                        "%s: layer %d larger than its slot", o->dir, j);
            memcpy(o->slot_buf[s] + at, ch.tensors[i].data, (size_t)ch.tensors[i].size);
            data[i] = o->slot_buf[s] + at;
            at += (size_t)(ch.tensors[i].size + 63) / 64 * 64;
        }
        rc = set_layer(&o->layers[j], j, ch.tensors, ch.n_tensors, data, o->dir, d);
        if (rc != LMP_OK) {
            clear_layer(&o->layers[j]);
            goto out_free;
        }
        o->slot_of[j] = s;
        o->slot_layer[s] = j;
    }
out_free:
    free(data);
out:
    lmp_chunk_free(&ch);
    return rc;
}

/* Streaming setup: slots, layer -> chunk map, shapes checked via a copy of
 * the model whose views carry a placeholder pointer (never used). */
static lmp_status setup_stream(lmp_model *m, bundle_owner *o, int k, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_layer *tmp = NULL;
    int L = m->cfg.n_layers;
    o->layers = m->layers;
    o->n_layers = L;
    o->k = k < L ? k : L;
    o->chunk_of = calloc((size_t)L, sizeof *o->chunk_of);
    o->slot_of = calloc((size_t)L, sizeof *o->slot_of);
    o->slot_layer = calloc((size_t)o->k, sizeof *o->slot_layer);
    o->slot_buf = calloc((size_t)o->k, sizeof *o->slot_buf);
    tmp = calloc((size_t)L, sizeof *tmp);
    LMP_FAIL_IF(!o->chunk_of || !o->slot_of || !o->slot_layer || !o->slot_buf || !tmp,
                LMP_ERR_NOMEM, "%s: out of memory", o->dir);
    static const uint8_t placeholder[64] __attribute__((aligned(64)));
    for (size_t c = 1; c < o->man->n_chunks; c++) {
        const lmp_manifest_chunk *mc = &o->man->chunks[c];
        for (int l = mc->first_layer; l <= mc->last_layer && l < L; l++) {
            o->chunk_of[l] = (int)c;
            size_t b = layer_bytes(mc, l);
            if (b > o->slot_bytes) o->slot_bytes = b;
            const uint8_t **data = calloc(mc->n_tensors, sizeof *data);
            LMP_FAIL_IF(!data, LMP_ERR_NOMEM, "%s: out of memory", o->dir);
            for (size_t i = 0; i < mc->n_tensors; i++) data[i] = placeholder;
            rc = set_layer(&tmp[l], l, mc->tensors, mc->n_tensors, data, o->dir, d);
            free(data);
            if (rc != LMP_OK) goto out;
        }
    }
    for (int l = 0; l < L; l++) o->slot_of[l] = -1;
    for (int s = 0; s < o->k; s++) {
        o->slot_layer[s] = -1;
        o->slot_buf[s] = aligned_alloc(64, o->slot_bytes ? (o->slot_bytes + 63) / 64 * 64 : 64);
        LMP_FAIL_IF(!o->slot_buf[s], LMP_ERR_NOMEM, "%s: out of memory for layer slots", o->dir);
    }
    {
        lmp_model chk = *m;
        chk.layers = tmp;
        LMP_FORWARD(lmp_model_check(&chk, o->dir, d));
    }
out:
    free(tmp);
    return rc;
}

lmp_status lmp_model_load_bundle(lmp_model *m, const char *dir, const lmp_model_opts *opts,
                                 lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    bundle_owner *own = NULL;
    int k = opts ? opts->stream_layers : 0;
    memset(m, 0, sizeof *m);
    LMP_FAIL_IF(opts && opts->flags, LMP_ERR_ARG, "%s: unknown model option flags 0x%x", dir,
                opts->flags);
    LMP_FAIL_IF(k < 0, LMP_ERR_ARG, "%s: stream_layers %d must be >= 0", dir, k);
    own = calloc(1, sizeof *own);
    LMP_FAIL_IF(!own, LMP_ERR_NOMEM, "%s: out of memory", dir);
    own->dir = strdup(dir);
    LMP_FAIL_IF(!own->dir, LMP_ERR_NOMEM, "%s: out of memory", dir);
    rc = lmp_manifest_load(&own->man, dir, d);
    if (rc != LMP_OK) {
        lmp_diag_prefix(d, dir);
        goto out;
    }
    const lmp_manifest *man = own->man;
    rc = lmp_config_parse(&m->cfg, man->config_json, strlen(man->config_json),
                          "manifest.json config", d);
    if (rc != LMP_OK) {
        lmp_diag_prefix(d, dir);
        goto out;
    }
    LMP_FAIL_IF(m->cfg.n_layers != man->n_layers, LMP_ERR_INTERNAL, "%s: layer count mismatch",
                dir);
    size_t resident = k > 0 ? 1 : man->n_chunks; /* streaming: only the head chunk */
    own->chunks = calloc(resident, sizeof *own->chunks);
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    LMP_FAIL_IF(!own->chunks || !m->layers, LMP_ERR_NOMEM, "%s: out of memory", dir);
    LMP_FORWARD(load_resident(own, resident, d));
    char name[128];
    if (k == 0) {
        for (int l = 0; l < m->cfg.n_layers; l++) {
            lmp_layer *L = &m->layers[l];
            lmp_mat *dst[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wgate, &L->wup, &L->wdown};
            for (int q = 0; q < 7; q++) {
                snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, mats[q]);
                const lmp_chunk_tensor *t = find(own, name);
                LMP_FORWARD(set_view(t, t ? t->data : NULL, dir, name, dst[q], NULL, d));
            }
            snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
            const lmp_chunk_tensor *t = find(own, name);
            LMP_FORWARD(set_view(t, t ? t->data : NULL, dir, name, NULL, &L->attn_norm, d));
            snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
            t = find(own, name);
            LMP_FORWARD(set_view(t, t ? t->data : NULL, dir, name, NULL, &L->ffn_norm, d));
        }
    }
    const lmp_chunk_tensor *t = find(own, "model.embed_tokens.weight");
    LMP_FORWARD(set_view(t, t ? t->data : NULL, dir, "model.embed_tokens.weight", &m->embed, NULL,
                         d));
    t = find(own, "model.norm.weight");
    LMP_FORWARD(set_view(t, t ? t->data : NULL, dir, "model.norm.weight", NULL, &m->final_norm, d));
    if (m->cfg.tied) {
        m->lm_head = m->embed;
    } else {
        t = find(own, "lm_head.weight");
        LMP_FORWARD(set_view(t, t ? t->data : NULL, dir, "lm_head.weight", &m->lm_head, NULL, d));
    }
    if (k > 0) LMP_FORWARD(setup_stream(m, own, k, d));
    static const char *const kinds[] = {"f32", "f16", "bf16", "q4", "q8"};
    int kind = man->chunks[1].n_tensors ? man->chunks[1].tensors[0].kind : 0;
    for (size_t i = 0; i < man->chunks[1].n_tensors; i++)
        if (man->chunks[1].tensors[i].ndim == 2) {
            kind = man->chunks[1].tensors[i].kind;
            break;
        }
    snprintf(m->source, sizeof m->source, "bundle-%s%s", kind >= 0 && kind <= 4 ? kinds[kind] : "?",
             k > 0 ? "-stream" : "");
    m->release = release_bundle;
    m->owner = own;
    own = NULL;
    if (k > 0)
        m->acquire_layer = acquire_layer;
    else
        LMP_FORWARD(lmp_model_check(m, dir, d));
out:
    if (rc != LMP_OK) {
        if (m->owner || m->layers) lmp_model_close(m);
        memset(m, 0, sizeof *m);
    }
    release_bundle(own);
    return rc;
}
