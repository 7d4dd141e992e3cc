/* .lmpk container -> lmp_model.
 *
 * Every matrix is an lmp_mat view straight into the container's mapping
 * (kinds F32/F16/BF16/Q4/Q8 as stored; the container guarantees 64-byte
 * aligned data and sizes that match kind/shape/group/scheme), norms are the
 * stored f32 vectors, attached with lmp_model_bind (runtime/bind.h). The
 * model owns the open container and lmp_model_close closes it (unmapping
 * the file).
 *
 * One exception: when a kernel that reads re-ordered int4 codes will read
 * the int4 matrices (lmp_q4_pack_wanted: the AVX-512 kernels, or the AVX2
 * R8 kernel; lmp_bind_pack_wanted), they are copied, codes re-ordered
 * (lmp_bind_pack), into one anonymous mapping with transparent huge pages
 * (the "arena", like the bundle loader's) on all CPUs, and each source
 * range is dropped from the mapping as soon as it is copied, so the peak
 * resident size stays that of one copy. The results are the same bits;
 * decode reads fewer instructions' worth per weight and gets huge pages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/pool.h"
#include "formats/lmpk.h"
#include "quantize/q4.h"
#include "runtime/bind.h"
#include "runtime/model.h"

typedef struct lmpk_owner {
    lmp_lmpk *pk;
    lmp_hugemap arena; /* the re-ordered int4 matrices, or unmapped */
} lmpk_owner;

static void release_container(void *owner)
{
    lmpk_owner *o = owner;
    if (!o) return;
    lmp_lmpk_close(o->pk);
    lmp_hugemap_close(&o->arena);
    free(o);
}

typedef struct pack_job {
    const lmp_lmpk *pk;
    lmp_bind_tensor *b; /* per tensor, as bound */
    size_t *off;        /* per tensor: arena offset, or SIZE_MAX (used in place) */
    uint8_t *arena;
} pack_job;

static void pack_one(void *ctx, int i, int tid)
{
    (void)tid;
    pack_job *j = ctx;
    if (j->off[i] == SIZE_MAX) return;
    uint8_t *dst = j->arena + j->off[i];
    if (!lmp_bind_pack(&j->b[i], dst)) { /* a 1-D tensor: copied as it is */
        memcpy(dst, j->b[i].data, (size_t)j->b[i].size);
        j->b[i].data = dst;
    }
    lmp_lmpk_release(j->pk, lmp_lmpk_at(j->pk, (size_t)i));
}

/* Copy the int4 matrices the AVX-512 kernel reads into the arena, codes
 * re-ordered (b[i] then points there), and with them the 1-D tensors
 * (norms): left in the mapping, each of those few-KB reads would map the
 * page cache's large folio around it (up to 2 MiB each on this kernel:
 * +100 MB of RSS for SmolLM-360M). Other matrices stay in the mapping. */
static lmp_status pack_into_arena(lmpk_owner *o, lmp_bind_tensor *b, size_t n, int threads,
                                  const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_pool *pool = NULL;
    pack_job j = {o->pk, b, calloc(n ? n : 1, sizeof(size_t)), NULL};
    LMP_FAIL_IF(!j.off, LMP_ERR_NOMEM, "%s: out of memory", path);
    size_t total = 0;
    int packs = 0;
    for (size_t i = 0; i < n; i++) {
        j.off[i] = SIZE_MAX;
        int pack = lmp_bind_pack_wanted(&b[i]);
        if (!pack && b[i].ndim != 1) continue;
        packs |= pack;
        j.off[i] = total;
        total += ((size_t)b[i].size + 63) / 64 * 64;
    }
    if (!packs) goto out; /* nothing to re-order: everything used in place */
    LMP_FORWARD(lmp_hugemap_open(&o->arena, total, path, d));
    j.arena = o->arena.base;
    if (threads <= 0) threads = lmp_cpu_count();
    if (threads > 1 && lmp_pool_create(&pool, threads, NULL) == LMP_OK)
        lmp_pool_run(pool, pack_one, &j, (int)n);
    else
        for (size_t i = 0; i < n; i++) pack_one(&j, (int)i, 0);
out:
    lmp_pool_close(pool);
    free(j.off);
    return rc;
}

lmp_status lmp_model_load_lmpk(lmp_model *m, const char *path, const lmp_model_opts *opts,
                               lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmpk_owner *o = NULL;
    lmp_bind_tensor *b = NULL;
    memset(m, 0, sizeof *m);
    LMP_FAIL_IF(opts && opts->flags, LMP_ERR_ARG, "%s: unknown model option flags 0x%x", path,
                opts->flags);
    o = calloc(1, sizeof *o);
    LMP_FAIL_IF(!o, LMP_ERR_NOMEM, "%s: out of memory", path);
    LMP_FORWARD(lmp_lmpk_open(&o->pk, path, d));
    m->cfg = *lmp_lmpk_config(o->pk);
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    const size_t n = lmp_lmpk_count(o->pk);
    b = calloc(n ? n : 1, sizeof *b);
    LMP_FAIL_IF(!m->layers || !b, LMP_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        const lmp_lmpk_tensor *t = lmp_lmpk_at(o->pk, i);
        b[i] = (lmp_bind_tensor){.name = t->name, .kind = (int)t->kind, .ndim = t->ndim,
                                 .shape = {t->shape[0], t->ndim > 1 ? t->shape[1] : 0},
                                 .group = t->group, .scheme = t->scheme, .data = t->data,
                                 .size = t->size};
    }
    LMP_FORWARD(pack_into_arena(o, b, n, opts ? opts->threads : 0, path, d));
    /* the container's open already checked that exactly the expected
     * tensors are there with their shapes; lmp_model_bind maps each name to
     * its slot (the one mapping all loaders share) */
    for (size_t i = 0; i < n; i++) LMP_FORWARD(lmp_model_bind(m, &b[i], path, d));
    static const char *const kinds[] = {"f32", "f16", "bf16", "q4", "q8"};
    int k = m->cfg.n_layers > 0 ? (int)m->layers[0].wq.kind : (int)m->embed.kind;
    snprintf(m->source, sizeof m->source, "lmpk-%s", k >= 0 && k <= 4 ? kinds[k] : "?");
    m->release = release_container;
    m->owner = o;
    o = NULL;
    LMP_FORWARD(lmp_model_check(m, path, d));
out:
    if (rc != LMP_OK) {
        if (m->owner || m->layers) lmp_model_close(m);
        memset(m, 0, sizeof *m);
    }
    release_container(o);
    free(b);
    return rc;
}

const uint8_t *lmp_model_lmpk_file(const lmp_model *m, const char *name, size_t *len)
{
    if (!m || m->release != release_container || !m->owner) {
        if (len) *len = 0;
        return NULL;
    }
    return lmp_lmpk_file(((const lmpk_owner *)m->owner)->pk, name, len);
}
