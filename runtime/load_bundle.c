/* Bundle folder (manifest.json + chunks) -> lmp_model.
 *
 * The manifest is read with full validation (manifest/manifest.h). Chunks
 * are then read one at a time in load order: size and XXH3 of the
 * compressed bytes are checked BEFORE decompressing, the decompressed size
 * and XXH3 after, then the chunk header is parsed and compared with the
 * manifest. Any mismatch is an error naming the chunk (never garbage
 * output). Each decompressed chunk image (64-byte aligned, tensors in the
 * container's layout) stays resident and the views point into it, so the
 * forward pass computes exactly what it computes on the .lmpk the bundle
 * was split from. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "formats/chunk.h"
#include "formats/lmpk.h"
#include "manifest/manifest.h"
#include "runtime/model.h"

typedef struct bundle_owner {
    size_t n;
    lmp_chunk *chunks; /* each owns its raw image */
} bundle_owner;

static void release_bundle(void *p)
{
    bundle_owner *o = p;
    if (!o) return;
    for (size_t i = 0; i < o->n; i++) lmp_chunk_free(&o->chunks[i]);
    free(o->chunks);
    free(o);
}

static const lmp_chunk_tensor *find(const bundle_owner *o, const char *name)
{
    for (size_t c = 0; c < o->n; c++)
        for (size_t i = 0; i < o->chunks[c].n_tensors; i++)
            if (!strcmp(o->chunks[c].tensors[i].name, name)) return &o->chunks[c].tensors[i];
    return NULL;
}

static lmp_status get(const bundle_owner *o, const char *dir, const char *name, lmp_mat *w,
                      const float **vec, lmp_diag *d)
{
    const lmp_chunk_tensor *t = find(o, name);
    if (!t) return lmp_fail(d, LMP_ERR_MODEL, "%s: tensor '%s' missing from the bundle", dir, name);
    if (vec) {
        if (t->ndim != 1 || t->kind != LMP_MAT_F32)
            return lmp_fail(d, LMP_ERR_MODEL, "%s: tensor '%s' must be a 1-D f32 vector", dir,
                            name);
        *vec = (const float *)(const void *)t->data;
        return LMP_OK;
    }
    if (t->ndim != 2)
        return lmp_fail(d, LMP_ERR_MODEL, "%s: tensor '%s' must be 2-D", dir, name);
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
    w->data = t->data;
    return LMP_OK;
}

lmp_status lmp_model_load_bundle(lmp_model *m, const char *dir, const lmp_model_opts *opts,
                                 lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_manifest *man = NULL;
    bundle_owner *own = NULL;
    char *path = NULL;
    memset(m, 0, sizeof *m);
    LMP_FAIL_IF(opts && opts->flags, LMP_ERR_ARG, "%s: unknown model option flags 0x%x", dir,
                opts->flags);
    rc = lmp_manifest_load(&man, dir, d);
    if (rc != LMP_OK) {
        lmp_diag_prefix(d, dir);
        goto out;
    }
    rc = lmp_config_parse(&m->cfg, man->config_json, strlen(man->config_json),
                          "manifest.json config", d);
    if (rc != LMP_OK) {
        lmp_diag_prefix(d, dir);
        goto out;
    }
    own = calloc(1, sizeof *own);
    LMP_FAIL_IF(!own, LMP_ERR_NOMEM, "%s: out of memory", dir);
    own->chunks = calloc(man->n_chunks, sizeof *own->chunks);
    LMP_FAIL_IF(!own->chunks, LMP_ERR_NOMEM, "%s: out of memory", dir);
    for (size_t c = 0; c < man->n_chunks; c++) {
        const lmp_manifest_chunk *mc = &man->chunks[c];
        lmp_chunk_expect e;
        e.compressed_size = mc->compressed_size;
        e.raw_size = mc->raw_size;
        memcpy(e.xxh3_compressed, mc->xxh3_compressed, LMP_HASH_HEX);
        memcpy(e.xxh3_raw, mc->xxh3_raw, LMP_HASH_HEX);
        path = lmp_path_join(dir, mc->file);
        LMP_FAIL_IF(!path, LMP_ERR_NOMEM, "%s: out of memory", dir);
        rc = lmp_chunk_load(&own->chunks[c], path, mc->file, &e, d);
        if (rc != LMP_OK) {
            lmp_diag_prefix(d, dir);
            goto out;
        }
        own->n++;
        free(path);
        path = NULL;
        const lmp_chunk *ch = &own->chunks[c];
        int same = ch->role == mc->role && ch->first_layer == mc->first_layer &&
                   ch->last_layer == mc->last_layer && ch->n_tensors == mc->n_tensors;
        for (size_t i = 0; same && i < ch->n_tensors; i++) {
            const lmp_chunk_tensor *a = &ch->tensors[i], *b = &mc->tensors[i];
            same = !strcmp(a->name, b->name) && a->kind == b->kind && a->ndim == b->ndim &&
                   a->group == b->group && a->scheme == b->scheme && a->offset == b->offset &&
                   a->size == b->size && !memcmp(a->shape, b->shape, sizeof a->shape);
        }
        LMP_FAIL_IF(!same, LMP_ERR_INTEGRITY,
                    "%s: %s: chunk header disagrees with the manifest", dir, mc->file);
    }
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    LMP_FAIL_IF(!m->layers, LMP_ERR_NOMEM, "%s: out of memory", dir);
    char name[128];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        lmp_layer *L = &m->layers[l];
        static const char *const mats[7] = {"self_attn.q_proj", "self_attn.k_proj",
                                            "self_attn.v_proj", "self_attn.o_proj",
                                            "mlp.gate_proj",    "mlp.up_proj",
                                            "mlp.down_proj"};
        lmp_mat *dst[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wgate, &L->wup, &L->wdown};
        for (int k = 0; k < 7; k++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, mats[k]);
            LMP_FORWARD(get(own, dir, name, dst[k], NULL, d));
        }
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        LMP_FORWARD(get(own, dir, name, NULL, &L->attn_norm, d));
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        LMP_FORWARD(get(own, dir, name, NULL, &L->ffn_norm, d));
    }
    LMP_FORWARD(get(own, dir, "model.embed_tokens.weight", &m->embed, NULL, d));
    LMP_FORWARD(get(own, dir, "model.norm.weight", NULL, &m->final_norm, d));
    if (m->cfg.tied)
        m->lm_head = m->embed;
    else
        LMP_FORWARD(get(own, dir, "lm_head.weight", &m->lm_head, NULL, d));
    static const char *const kinds[] = {"f32", "f16", "bf16", "q4", "q8"};
    int k = (int)m->layers[0].wq.kind;
    snprintf(m->source, sizeof m->source, "bundle-%s", k >= 0 && k <= 4 ? kinds[k] : "?");
    m->release = release_bundle;
    m->owner = own;
    own = NULL;
    LMP_FORWARD(lmp_model_check(m, dir, d));
out:
    free(path);
    if (rc != LMP_OK) {
        if (m->owner || m->layers) lmp_model_close(m);
        memset(m, 0, sizeof *m);
    }
    release_bundle(own);
    lmp_manifest_free(man);
    return rc;
}
