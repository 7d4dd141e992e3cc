/* .lmpk container -> lmp_model, weights used in place.
 *
 * Every matrix is an lmp_mat view straight into the container's mapping
 * (kinds F32/F16/BF16/Q4/Q8 as stored; the container guarantees 64-byte
 * aligned data and sizes that match kind/shape/group/scheme), norms are the
 * stored f32 vectors. Nothing is copied: the model owns the open container
 * and lmp_model_close closes it (unmapping the file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/lmpk.h"
#include "runtime/model.h"

static void release_container(void *owner)
{
    lmp_lmpk_close(owner);
}

static lmp_status get(const lmp_lmpk *pk, const char *name, int ndim, lmp_mat *w,
                      const float **vec, lmp_diag *d)
{
    const lmp_lmpk_tensor *t = lmp_lmpk_find(pk, name);
    /* the container's open already checked presence and shapes against the
     * config; these are internal consistency checks */
    if (!t || t->ndim != ndim)
        return lmp_fail(d, LMP_ERR_INTERNAL, "%s: tensor '%s' missing after validation",
                        lmp_lmpk_path(pk), name);
    if (w) *w = lmp_lmpk_mat(t);
    if (vec) {
        if (t->kind != LMP_MAT_F32)
            return lmp_fail(d, LMP_ERR_INTERNAL, "%s: tensor '%s' is not f32", lmp_lmpk_path(pk),
                            name);
        *vec = (const float *)(const void *)t->data;
    }
    return LMP_OK;
}

lmp_status lmp_model_load_lmpk(lmp_model *m, const char *path, const lmp_model_opts *opts,
                               lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_lmpk *pk = NULL;
    memset(m, 0, sizeof *m);
    LMP_FAIL_IF(opts && opts->flags, LMP_ERR_ARG, "%s: unknown model option flags 0x%x", path,
                opts->flags);
    LMP_FORWARD(lmp_lmpk_open(&pk, path, d));
    m->cfg = *lmp_lmpk_config(pk);
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    LMP_FAIL_IF(!m->layers, LMP_ERR_NOMEM, "%s: out of memory", path);
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
            LMP_FORWARD(get(pk, name, 2, dst[k], NULL, d));
        }
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        LMP_FORWARD(get(pk, name, 1, NULL, &L->attn_norm, d));
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        LMP_FORWARD(get(pk, name, 1, NULL, &L->ffn_norm, d));
    }
    LMP_FORWARD(get(pk, "model.embed_tokens.weight", 2, &m->embed, NULL, d));
    LMP_FORWARD(get(pk, "model.norm.weight", 1, NULL, &m->final_norm, d));
    if (m->cfg.tied)
        m->lm_head = m->embed;
    else
        LMP_FORWARD(get(pk, "lm_head.weight", 2, &m->lm_head, NULL, d));
    static const char *const kinds[] = {"f32", "f16", "bf16", "q4", "q8"};
    int k = m->cfg.n_layers > 0 ? (int)m->layers[0].wq.kind : (int)m->embed.kind;
    snprintf(m->source, sizeof m->source, "lmpk-%s", k >= 0 && k <= 4 ? kinds[k] : "?");
    m->release = release_container;
    m->owner = pk;
    pk = NULL;
    LMP_FORWARD(lmp_model_check(m, path, d));
out:
    if (rc != LMP_OK) {
        if (m->owner || m->layers) lmp_model_close(m);
        memset(m, 0, sizeof *m);
    }
    lmp_lmpk_close(pk);
    return rc;
}

const uint8_t *lmp_model_lmpk_file(const lmp_model *m, const char *name, size_t *len)
{
    if (!m || m->release != release_container || !m->owner) {
        if (len) *len = 0;
        return NULL;
    }
    return lmp_lmpk_file(m->owner, name, len);
}
