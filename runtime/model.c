/* lmp_model: dispatch to a loader, shape check, close. */
#include "runtime/model.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/fileio.h"
#include "formats/lmpk.h"

uint64_t lmp_model_params(const lmp_config *c)
{
    uint64_t h = (uint64_t)c->hidden, hd = (uint64_t)c->head_dim;
    uint64_t per_layer = h * hd * (uint64_t)c->n_heads * 2      /* q, o */
                         + h * hd * (uint64_t)c->n_kv_heads * 2 /* k, v */
                         + h * (uint64_t)c->intermediate * 3    /* gate, up, down */
                         + 2 * h;                               /* norms */
    uint64_t emb = (uint64_t)c->vocab * h;
    return emb * (c->tied ? 1 : 2) + h + per_layer * (uint64_t)c->n_layers;
}

static lmp_status check_mat(const lmp_mat *w, int rows, int cols, const char *what,
                            const char *name, int layer, lmp_diag *d)
{
    if (!w->data || w->rows != rows || w->cols != cols)
        return lmp_fail(d, LMP_ERR_MODEL,
                        "%s: layer %d %s: matrix is [%d, %d]%s, config expects [%d, %d]", what,
                        layer, name, w->rows, w->cols, w->data ? "" : " without data", rows,
                        cols);
    if (w->kind > LMP_MAT_Q8)
        return lmp_fail(d, LMP_ERR_MODEL, "%s: layer %d %s: unknown matrix kind %d", what,
                        layer, name, (int)w->kind);
    return LMP_OK;
}

lmp_status lmp_model_check(const lmp_model *m, const char *what, lmp_diag *d)
{
    const lmp_config *c = &m->cfg;
    if (c->n_layers <= 0 || c->hidden <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->head_dim <= 0 || c->vocab <= 0 || c->intermediate <= 0 ||
        c->n_heads % c->n_kv_heads != 0 || c->head_dim % 2 != 0)
        return lmp_fail(d, LMP_ERR_MODEL,
                        "%s: config is not a valid Llama shape (layers %d, hidden %d, heads "
                        "%d/%d, head_dim %d, vocab %d)",
                        what, c->n_layers, c->hidden, c->n_heads, c->n_kv_heads, c->head_dim,
                        c->vocab);
    if (!m->layers) return lmp_fail(d, LMP_ERR_MODEL, "%s: no layer array", what);
    int h = c->hidden, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    int f = c->intermediate;
    lmp_status rc;
    for (int l = 0; l < c->n_layers; l++) {
        const lmp_layer *L = &m->layers[l];
        if ((rc = check_mat(&L->wq, q, h, what, "q_proj", l, d)) ||
            (rc = check_mat(&L->wk, kv, h, what, "k_proj", l, d)) ||
            (rc = check_mat(&L->wv, kv, h, what, "v_proj", l, d)) ||
            (rc = check_mat(&L->wo, h, q, what, "o_proj", l, d)) ||
            (rc = check_mat(&L->wgate, f, h, what, "gate_proj", l, d)) ||
            (rc = check_mat(&L->wup, f, h, what, "up_proj", l, d)) ||
            (rc = check_mat(&L->wdown, h, f, what, "down_proj", l, d)))
            return rc;
        if (!L->attn_norm || !L->ffn_norm)
            return lmp_fail(d, LMP_ERR_MODEL, "%s: layer %d: missing norm weights", what, l);
    }
    if ((rc = check_mat(&m->embed, c->vocab, h, what, "embed_tokens", -1, d)) ||
        (rc = check_mat(&m->lm_head, c->vocab, h, what, "lm_head", -1, d)))
        return rc;
    if (!m->final_norm) return lmp_fail(d, LMP_ERR_MODEL, "%s: missing final norm", what);
    return LMP_OK;
}

int lmp_model_quantized(const lmp_model *m)
{
    if (m->quantized || lmp_mat_kind_quantized(m->embed.kind) ||
        lmp_mat_kind_quantized(m->lm_head.kind))
        return 1;
    for (int l = 0; m->layers && l < m->cfg.n_layers; l++) {
        const lmp_layer *L = &m->layers[l];
        const lmp_mat *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wgate, &L->wup, &L->wdown};
        for (size_t i = 0; i < sizeof w / sizeof *w; i++)
            if (lmp_mat_kind_quantized(w[i]->kind)) return 1;
    }
    return 0;
}

void lmp_model_close(lmp_model *m)
{
    if (!m) return;
    free(m->layers);
    if (m->release) m->release(m->owner);
    memset(m, 0, sizeof *m);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* 1 if the file starts with the container magic (any file name). */
static int is_lmpk(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char b[8];
    int ok = fread(b, 1, 8, f) == 8 && memcmp(b, LMP_LMPK_MAGIC, 8) == 0;
    fclose(f);
    return ok;
}

lmp_status lmp_model_open(lmp_model *m, const char *path, const lmp_model_opts *opts,
                          lmp_diag *d)
{
    memset(m, 0, sizeof *m);
    if (opts && opts->flags)
        return lmp_fail(d, LMP_ERR_ARG, "%s: unknown model option flags 0x%x", path, opts->flags);
    if (!lmp_exists(path))
        return lmp_fail(d, LMP_ERR_IO, "%s: no such file or folder", path);
    if (lmp_is_dir(path)) {
        char *cfg = lmp_path_join(path, "config.json");
        char *man = lmp_path_join(path, "manifest.json");
        if (!cfg || !man) {
            free(cfg);
            free(man);
            return lmp_fail(d, LMP_ERR_NOMEM, "%s: out of memory", path);
        }
        int has_cfg = lmp_exists(cfg), has_man = lmp_exists(man);
        free(cfg);
        free(man);
        if (has_cfg) return lmp_model_load_hf(m, path, opts, d);
        if (has_man) return lmp_model_load_bundle(m, path, opts, d);
        return lmp_fail(d, LMP_ERR_FORMAT,
                        "%s: folder has neither config.json (Hugging Face model) nor "
                        "manifest.json (bundle)",
                        path);
    }
    if (ends_with(path, ".lmpk") || is_lmpk(path)) return lmp_model_load_lmpk(m, path, opts, d);
    if (ends_with(path, "manifest.json")) {
        /* the bundle is the folder holding the manifest */
        size_t n = strlen(path) - strlen("manifest.json");
        char *dir = malloc(n + 2);
        if (!dir) return lmp_fail(d, LMP_ERR_NOMEM, "%s: out of memory", path);
        if (n == 0)
            strcpy(dir, ".");
        else {
            memcpy(dir, path, n);
            dir[n] = '\0';
        }
        lmp_status rc = lmp_model_load_bundle(m, dir, opts, d);
        free(dir);
        return rc;
    }
    if (ends_with(path, "config.json"))
        return lmp_fail(d, LMP_ERR_ARG,
                        "%s: pass the model folder, not its config.json", path);
    return lmp_fail(d, LMP_ERR_FORMAT,
                    "%s: not a model (expected a Hugging Face folder with config.json)", path);
}
