/* lmp_model_bind: Hugging Face tensor name -> lmp_model slot (runtime/bind.h). */
#include "runtime/bind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantize/q4.h"

long lmp_bind_layer_of(const char *name)
{
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1) != 0) return -1;
    const char *p = name + sizeof pre - 1;
    long l = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (l > 100000000L) return -1;
        l = l * 10 + (*p - '0');
    }
    return digits && *p == '.' ? l : -1;
}

static size_t float_size(int kind)
{
    switch (kind) {
    case LMP_MAT_F32: return 4;
    case LMP_MAT_F16:
    case LMP_MAT_BF16: return 2;
    default: return 0;
    }
}

/* Fill *w as a [rows, cols] view of t, checking the shape and byte count. */
static lmp_status bind_mat(lmp_mat *w, const lmp_bind_tensor *t, int rows, int cols,
                           const char *what, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    LMP_FAIL_IF(w->data, LMP_ERR_MODEL, "%s: tensor '%s' appears twice", what, t->name);
    LMP_FAIL_IF(t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols, LMP_ERR_MODEL,
                "%s: tensor '%s': shape [%lld, %lld] (ndim %d), config expects [%d, %d]", what,
                t->name, (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0),
                t->ndim, rows, cols);
    LMP_FAIL_IF(!lmp_q4_layout_ok(t->kind, t->layout, rows), LMP_ERR_MODEL,
                "%s: tensor '%s': code layout %d is not valid for its kind and shape", what,
                t->name, t->layout);
    if (lmp_mat_kind_quantized(t->kind)) {
        size_t rb = lmp_q4_row_bytes(cols, t->group, t->scheme);
        LMP_FAIL_IF(rb == 0 || (t->kind == LMP_MAT_Q8) != (t->scheme == LMP_Q4_Q8),
                    LMP_ERR_MODEL, "%s: tensor '%s': invalid quantization (kind %d, group %d, scheme %d)",
                    what, t->name, t->kind, t->group, t->scheme);
        LMP_FAIL_IF(t->size != (uint64_t)rb * (uint64_t)rows, LMP_ERR_MODEL,
                    "%s: tensor '%s': %llu bytes, its quantized shape needs %llu", what, t->name,
                    (unsigned long long)t->size, (unsigned long long)rb * (unsigned long long)rows);
        LMP_FORWARD(lmp_q4_mat_init(w, rows, cols, t->group, t->scheme, t->data, d));
        w->layout = t->layout;
    } else {
        size_t es = float_size(t->kind);
        LMP_FAIL_IF(!es, LMP_ERR_MODEL, "%s: tensor '%s': unknown storage kind %d", what, t->name,
                    t->kind);
        LMP_FAIL_IF(t->size != (uint64_t)rows * (uint64_t)cols * es, LMP_ERR_MODEL,
                    "%s: tensor '%s': %llu bytes, shape [%d, %d] needs %llu", what, t->name,
                    (unsigned long long)t->size, rows, cols,
                    (unsigned long long)rows * (unsigned long long)cols * es);
        memset(w, 0, sizeof *w);
        w->kind = (lmp_mat_kind)t->kind;
        w->rows = rows;
        w->cols = cols;
        w->row_bytes = (size_t)cols * es;
        w->data = t->data;
    }
out:
    return rc;
}

static lmp_status bind_norm(const float **slot, const lmp_bind_tensor *t, int n,
                            const char *what, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    LMP_FAIL_IF(*slot, LMP_ERR_MODEL, "%s: tensor '%s' appears twice", what, t->name);
    LMP_FAIL_IF(t->ndim != 1 || t->shape[0] != n, LMP_ERR_MODEL,
                "%s: tensor '%s': norm weights must be 1-D with %d elements", what, t->name, n);
    LMP_FAIL_IF(t->kind != LMP_MAT_F32 || t->size != (uint64_t)n * 4, LMP_ERR_MODEL,
                "%s: tensor '%s': norm weights must be f32 (%d x 4 bytes)", what, t->name, n);
    LMP_FAIL_IF(((uintptr_t)t->data & 3) != 0, LMP_ERR_MODEL,
                "%s: tensor '%s': f32 data is not 4-byte aligned", what, t->name);
    *slot = t->data;
out:
    return rc;
}

lmp_status lmp_model_bind(lmp_model *m, const lmp_bind_tensor *t, const char *what,
                          lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const lmp_config *c = &m->cfg;
    int h = c->hidden, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    int f = c->intermediate;
    const char *nm = t->name;
    LMP_FAIL_IF(!m->layers, LMP_ERR_ARG, "%s: model has no layer array to bind into", what);
    LMP_FAIL_IF(!t->data && t->size, LMP_ERR_ARG, "%s: tensor '%s' has no data", what, nm);
    if (!strcmp(nm, "model.embed_tokens.weight")) {
        LMP_FORWARD(bind_mat(&m->embed, t, c->vocab, h, what, d));
        if (c->tied) m->lm_head = m->embed;
    } else if (!strcmp(nm, "lm_head.weight")) {
        LMP_FAIL_IF(c->tied, LMP_ERR_MODEL,
                    "%s: tensor 'lm_head.weight' present but the config ties it to the embedding",
                    what);
        LMP_FORWARD(bind_mat(&m->lm_head, t, c->vocab, h, what, d));
    } else if (!strcmp(nm, "model.norm.weight")) {
        LMP_FORWARD(bind_norm(&m->final_norm, t, h, what, d));
    } else if (!strncmp(nm, "model.layers.", 13)) {
        long l = lmp_bind_layer_of(nm);
        LMP_FAIL_IF(l < 0 || l >= c->n_layers, LMP_ERR_MODEL,
                    "%s: tensor '%s': layer index outside [0, %d)", what, nm, c->n_layers);
        lmp_layer *L = &m->layers[l];
        const char *s = strchr(nm + 13, '.') + 1;
        if (!strcmp(s, "self_attn.q_proj.weight")) LMP_FORWARD(bind_mat(&L->wq, t, q, h, what, d));
        else if (!strcmp(s, "self_attn.k_proj.weight")) LMP_FORWARD(bind_mat(&L->wk, t, kv, h, what, d));
        else if (!strcmp(s, "self_attn.v_proj.weight")) LMP_FORWARD(bind_mat(&L->wv, t, kv, h, what, d));
        else if (!strcmp(s, "self_attn.o_proj.weight")) LMP_FORWARD(bind_mat(&L->wo, t, h, q, what, d));
        else if (!strcmp(s, "mlp.gate_proj.weight")) LMP_FORWARD(bind_mat(&L->wgate, t, f, h, what, d));
        else if (!strcmp(s, "mlp.up_proj.weight")) LMP_FORWARD(bind_mat(&L->wup, t, f, h, what, d));
        else if (!strcmp(s, "mlp.down_proj.weight")) LMP_FORWARD(bind_mat(&L->wdown, t, h, f, what, d));
        else if (!strcmp(s, "input_layernorm.weight")) LMP_FORWARD(bind_norm(&L->attn_norm, t, h, what, d));
        else if (!strcmp(s, "post_attention_layernorm.weight")) LMP_FORWARD(bind_norm(&L->ffn_norm, t, h, what, d));
        else LMP_FAIL(LMP_ERR_MODEL, "%s: unexpected tensor '%s'", what, nm);
    } else {
        LMP_FAIL(LMP_ERR_MODEL, "%s: unexpected tensor '%s'", what, nm);
    }
out:
    return rc;
}

int lmp_bind_pack_wanted(const lmp_bind_tensor *t)
{
    return t->ndim == 2 && t->layout == LMP_Q4_LAYOUT_ROWS && t->shape[0] >= 1 &&
           t->shape[0] <= INT32_MAX && t->shape[1] >= 1 && t->shape[1] <= INT32_MAX &&
           lmp_q4_pack_wanted(t->kind, t->scheme, (int)t->shape[0]);
}

int lmp_bind_pack(lmp_bind_tensor *t, void *dst)
{
    if (!lmp_bind_pack_wanted(t)) return 0;
    const int rows = (int)t->shape[0], cols = (int)t->shape[1];
    const size_t rb = lmp_q4_row_bytes(cols, t->group, t->scheme);
    if (rb == 0 || t->size != (uint64_t)rb * (uint64_t)rows) return 0; /* bind reports it */
    if (lmp_q4_r16_wanted(t->kind, t->scheme, rows) &&
        lmp_q4_pack_r16(t->data, dst, rows, cols, t->group, t->scheme)) {
        t->data = dst;
        t->layout = LMP_Q4_LAYOUT_R16;
        return 1;
    }
    if (lmp_q4_r8_wanted(t->kind, t->scheme, rows) &&
        lmp_q4_pack_r8(t->data, dst, rows, cols, t->group, t->scheme)) {
        t->data = dst;
        t->layout = LMP_Q4_LAYOUT_R8;
        return 1;
    }
    if (!lmp_q4_x16_wanted(t->kind, t->scheme)) return 0; /* R8 without scratch: as stored */
    lmp_q4_pack_x16(t->data, dst, rows, cols, t->group, t->scheme);
    t->data = dst;
    t->layout = LMP_Q4_LAYOUT_X16;
    return 1;
}
