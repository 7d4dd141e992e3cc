/* .lmpk container -> lmp_model, weights used in place.
 *
 * Every matrix is an lmp_mat view straight into the container's mapping
 * (kinds F32/F16/BF16/Q4/Q8 as stored; the container guarantees 64-byte
 * aligned data and sizes that match kind/shape/group/scheme), norms are the
 * stored f32 vectors, attached with lmp_model_bind (runtime/bind.h). Nothing is copied: the model owns the open container
 * and lmp_model_close closes it (unmapping the file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/lmpk.h"
#include "runtime/bind.h"
#include "runtime/model.h"

static void release_container(void *owner)
{
    lmp_lmpk_close(owner);
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
    /* the container's open already checked that exactly the expected
     * tensors are there with their shapes; lmp_model_bind maps each name to
     * its slot (the one mapping all loaders share) */
    for (size_t i = 0; i < lmp_lmpk_count(pk); i++) {
        const lmp_lmpk_tensor *t = lmp_lmpk_at(pk, i);
        lmp_bind_tensor b = {.name = t->name, .kind = (int)t->kind, .ndim = t->ndim,
                             .shape = {t->shape[0], t->ndim > 1 ? t->shape[1] : 0},
                             .group = t->group, .scheme = t->scheme, .data = t->data,
                             .size = t->size};
        LMP_FORWARD(lmp_model_bind(m, &b, path, d));
    }
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
