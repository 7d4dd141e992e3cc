/* Bundle integrity verification; contract in verify/verify.h. */
#include "verify/verify.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "formats/chunk.h"
#include "manifest/manifest.h"
#include "formats/config.h"
#include "runtime/mat.h"

typedef struct problem {
    char file[256];
    char what[LMP_DIAG_MAX];
} problem;

typedef struct plist {
    problem *v;
    size_t n, cap;
    int oom;
} plist;

static void padd(plist *l, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void padd(plist *l, const char *file, const char *fmt, ...)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        problem *t = realloc(l->v, nc * sizeof *t);
        if (!t) {
            l->oom = 1;
            return;
        }
        l->v = t;
        l->cap = nc;
    }
    problem *p = &l->v[l->n++];
    snprintf(p->file, sizeof p->file, "%s", file);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->what, sizeof p->what, fmt, ap);
    va_end(ap);
}

/* Add a diag message "file: what" as a problem of `file` (strip the prefix). */
static void padd_diag(plist *l, const char *file, const lmp_diag *d)
{
    const char *m = d->msg;
    size_t fl = strlen(file);
    if (!strncmp(m, file, fl) && m[fl] == ':' && m[fl + 1] == ' ') m += fl + 2;
    padd(l, file, "%s", m[0] ? m : lmp_status_str(d->status));
}

/* A thread's decompression buffer, reused from chunk to chunk: a fresh
 * buffer per chunk cost a page fault and a zeroed page per 4 KB of raw
 * image, a third of verify's CPU time (perf, SmolLM-360M bundle). */
typedef struct scratch {
    uint8_t *buf; /* 64-byte aligned, cap bytes */
    size_t cap;
} scratch;

typedef struct cjob {
    const char *dir;
    const lmp_manifest *m;
    const lmp_manifest_chunk *mc;
    scratch *sc; /* [pool threads], indexed by the task's thread */
    plist probs;
    uint64_t bytes;
} cjob;

/* sc->buf with room for n bytes, or NULL (out of memory, or n beyond
 * LMP_CHUNK_RAW_MAX). */
static uint8_t *scratch_get(scratch *sc, uint64_t n)
{
    if (n <= sc->cap) return sc->buf;
    free(sc->buf);
    sc->buf = NULL;
    sc->cap = 0;
    if (n > LMP_CHUNK_RAW_MAX) return NULL;
    size_t m = ((size_t)n + 63) & ~(size_t)63;
    sc->buf = aligned_alloc(64, m);
    if (sc->buf) sc->cap = m;
    return sc->buf;
}

static int tensor_eq(const lmp_chunk_tensor *a, const lmp_chunk_tensor *b)
{
    if (strcmp(a->name, b->name) || a->kind != b->kind || a->ndim != b->ndim ||
        a->group != b->group || a->scheme != b->scheme || a->offset != b->offset ||
        a->size != b->size)
        return 0;
    for (int k = 0; k < a->ndim; k++)
        if (a->shape[k] != b->shape[k]) return 0;
    return 1;
}

static void check_meta(cjob *j, const lmp_chunk *c)
{
    cJSON *meta = cJSON_ParseWithLength(c->meta ? c->meta : "", c->meta_size);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(meta, "name");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(meta, "config");
    char *cj = cJSON_IsObject(cfg) ? cJSON_PrintUnformatted(cfg) : NULL;
    if (!cJSON_IsString(name) || !cj)
        padd(&j->probs, j->mc->file, "metadata is not {\"name\": ..., \"config\": {...}}");
    else if (strcmp(name->valuestring, j->m->name) != 0)
        padd(&j->probs, j->mc->file, "model name differs from the manifest's");
    else if (strcmp(cj, j->m->config_json) != 0)
        padd(&j->probs, j->mc->file, "config differs from the manifest's");
    free(cj);
    cJSON_Delete(meta);
}

static void check_chunk(void *ctx, int i, int tid)
{
    cjob *j = &((cjob *)ctx)[i];
    const lmp_manifest_chunk *mc = j->mc;
    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_chunk c;
    char *path = lmp_path_join(j->dir, mc->file);
    if (!path) {
        padd(&j->probs, mc->file, "out of memory");
        return;
    }
    lmp_chunk_expect e;
    e.compressed_size = mc->compressed_size;
    e.raw_size = mc->raw_size;
    memcpy(e.xxh3_compressed, mc->xxh3_compressed, LMP_HASH_HEX);
    memcpy(e.xxh3_raw, mc->xxh3_raw, LMP_HASH_HEX);
    uint8_t *buf = scratch_get(&j->sc[tid], mc->raw_size);
    if (!buf) {
        padd(&j->probs, mc->file, "out of memory for %llu bytes",
             (unsigned long long)mc->raw_size);
        free(path);
        return;
    }
    if (lmp_chunk_load_into(&c, path, mc->file, &e, buf, j->sc[tid].cap, NULL, &d) != LMP_OK) {
        padd_diag(&j->probs, mc->file, &d);
        free(path);
        return;
    }
    free(path);
    j->bytes += mc->compressed_size;
    if (c.role != mc->role || c.first_layer != mc->first_layer || c.last_layer != mc->last_layer)
        padd(&j->probs, mc->file, "chunk header says %s [%d,%d], manifest says otherwise",
             c.role == LMP_CHUNK_HEAD ? "head" : "layers", c.first_layer, c.last_layer);
    if (c.n_tensors != mc->n_tensors) {
        padd(&j->probs, mc->file, "chunk header lists %zu tensors, manifest %zu", c.n_tensors,
             mc->n_tensors);
    } else {
        for (size_t k = 0; k < c.n_tensors; k++)
            if (!tensor_eq(&c.tensors[k], &mc->tensors[k])) {
                padd(&j->probs, mc->file, "tensor %zu ('%s') differs between header and manifest",
                     k, c.tensors[k].name);
                break;
            }
    }
    if (mc->role == LMP_CHUNK_HEAD)
        check_meta(j, &c);
    else if (c.meta_size)
        padd(&j->probs, mc->file, "layer chunk carries metadata");
    lmp_chunk_free(&c);
}

static void check_tokenizer(const char *dir, const lmp_manifest_file *f, plist *l, uint64_t *bytes)
{
    char *path = lmp_path_join(dir, f->file);
    lmp_map mp = {0};
    lmp_diag d;
    lmp_diag_clear(&d);
    if (!path) {
        padd(l, f->file, "out of memory");
        return;
    }
    if (lmp_map_open(&mp, path, &d) != LMP_OK) {
        padd(l, f->file, "missing or unreadable");
    } else if (mp.size != f->size) {
        padd(l, f->file, "size mismatch (%zu bytes, manifest says %llu)", mp.size,
             (unsigned long long)f->size);
    } else {
        char h[LMP_HASH_HEX];
        lmp_hash_hex(mp.data ? (const void *)mp.data : "", mp.size, h);
        if (strcmp(h, f->xxh3) != 0) padd(l, f->file, "xxh3 mismatch");
        *bytes += mp.size;
    }
    lmp_map_close(&mp);
    free(path);
}

/* Files under dir/sub that the manifest does not list. */
static void check_unlisted(const char *dir, const char *sub, const lmp_manifest *m, plist *l)
{
    char *p = lmp_path_join(dir, sub);
    DIR *dp = p ? opendir(p) : NULL;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    while (dp && (de = readdir(dp))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char rel[600];
        snprintf(rel, sizeof rel, "%s/%s", sub, de->d_name);
        int listed = 0;
        for (size_t i = 0; i < m->n_chunks && !listed; i++) listed = !strcmp(m->chunks[i].file, rel);
        for (size_t i = 0; i < m->n_tokenizer && !listed; i++)
            listed = !strcmp(m->tokenizer[i].file, rel);
        if (listed) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            char **t = realloc(names, nc * sizeof *t);
            if (!t) break;
            names = t;
            cap = nc;
        }
        names[n] = strdup(rel);
        if (names[n]) n++;
    }
    if (dp) closedir(dp);
    for (size_t i = 1; i < n; i++) /* sorted for a stable report */
        for (size_t k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
            char *t = names[k];
            names[k] = names[k - 1];
            names[k - 1] = t;
        }
    for (size_t i = 0; i < n; i++) {
        padd(l, names[i], "not listed in the manifest");
        free(names[i]);
    }
    free(names);
    free(p);
}

/* The config (lmp_config_parse: the same validation every loader applies)
 * and the tensors it implies (lmp_config_expected): each present exactly
 * once with its shape, in the chunk of its layer, norms in f32, nothing
 * else. */
static void check_model(const lmp_manifest *m, plist *l)
{
    lmp_config cfg;
    lmp_diag d;
    lmp_diag_clear(&d);
    if (lmp_config_parse(&cfg, m->config_json, strlen(m->config_json), "config", &d) != LMP_OK) {
        padd(l, LMP_MANIFEST_FILE, "%s", d.msg);
        return;
    }
    size_t ne = lmp_config_expected(&cfg, NULL, 0);
    lmp_expect *ex = calloc(ne ? ne : 1, sizeof *ex);
    int *seen = calloc(ne ? ne : 1, sizeof *seen);
    if (!ex || !seen) {
        l->oom = 1;
        free(ex);
        free(seen);
        return;
    }
    lmp_config_expected(&cfg, ex, ne);
    for (size_t c = 0; c < m->n_chunks; c++) {
        const lmp_manifest_chunk *ch = &m->chunks[c];
        for (size_t i = 0; i < ch->n_tensors; i++) {
            const lmp_chunk_tensor *t = &ch->tensors[i];
            size_t k = 0;
            while (k < ne && strcmp(ex[k].name, t->name) != 0) k++;
            if (k == ne) {
                padd(l, ch->file, "tensor '%s' is not part of this model's config", t->name);
                continue;
            }
            if (seen[k]++) {
                padd(l, ch->file, "tensor '%s' appears more than once", t->name);
                continue;
            }
            int ok = t->ndim == ex[k].ndim;
            for (int q = 0; ok && q < t->ndim; q++) ok = t->shape[q] == ex[k].shape[q];
            if (!ok) padd(l, ch->file, "tensor '%s': shape differs from what the config needs",
                          t->name);
            int in = ch->role == LMP_CHUNK_HEAD
                         ? ex[k].layer < 0
                         : (ex[k].layer >= ch->first_layer && ex[k].layer <= ch->last_layer);
            if (!in) padd(l, ch->file, "tensor '%s' does not belong in this chunk", t->name);
            if (t->ndim == 1 && t->kind != LMP_MAT_F32)
                padd(l, ch->file, "tensor '%s': 1-D tensors must be f32", t->name);
        }
    }
    for (size_t k = 0; k < ne; k++)
        if (!seen[k]) padd(l, LMP_MANIFEST_FILE, "tensor '%s' missing from every chunk", ex[k].name);
    free(ex);
    free(seen);
}

static void emit(const plist *l, lmp_verify_cb cb, void *ctx, lmp_verify_report *r, lmp_diag *d)
{
    for (size_t i = 0; i < l->n; i++) {
        if (cb) cb(ctx, l->v[i].file, l->v[i].what);
        if (d && d->status == LMP_OK)
            lmp_fail(d, LMP_ERR_INTEGRITY, "%s%s%s", l->v[i].file, l->v[i].file[0] ? ": " : "",
                     l->v[i].what);
        r->problems++;
    }
    if (l->oom) {
        if (cb) cb(ctx, "", "out of memory while collecting problems");
        if (d && d->status == LMP_OK) lmp_fail(d, LMP_ERR_INTEGRITY, "out of memory");
        r->problems++;
    }
}

lmp_status lmp_bundle_verify(const char *dir, lmp_pool *pool, lmp_verify_cb cb, void *ctx,
                             lmp_verify_report *rep, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_verify_report local;
    lmp_verify_report *r = rep ? rep : &local;
    memset(r, 0, sizeof *r);
    lmp_manifest *m = NULL;
    cjob *jobs = NULL;
    int nsc = pool ? lmp_pool_threads(pool) : 1;
    scratch *sc = calloc((size_t)nsc, sizeof *sc);
    plist pl = {0};
    char *mpath = lmp_path_join(dir, LMP_MANIFEST_FILE), *cpath = lmp_path_join(dir, "chunks");
    LMP_FAIL_IF(!mpath || !cpath || !sc, LMP_ERR_NOMEM, "out of memory");
    LMP_FAIL_IF(!lmp_is_dir(dir), LMP_ERR_IO, "%s: not a folder (a bundle is a folder)", dir);
    LMP_FAIL_IF(!lmp_exists(mpath) && !lmp_is_dir(cpath), LMP_ERR_FORMAT,
                "%s: not a bundle (no manifest.json, no chunks/)", dir);
    {
        lmp_diag md;
        lmp_diag_clear(&md);
        if (!lmp_exists(mpath)) {
            padd(&pl, LMP_MANIFEST_FILE, "missing");
        } else if (lmp_manifest_load(&m, dir, &md) != LMP_OK) {
            padd_diag(&pl, LMP_MANIFEST_FILE, &md);
        }
    }
    if (!m) goto done;
    r->files_checked++;
    for (size_t i = 0; i < m->n_tokenizer; i++) {
        check_tokenizer(dir, &m->tokenizer[i], &pl, &r->bytes_checked);
        r->files_checked++;
    }
    jobs = calloc(m->n_chunks, sizeof *jobs);
    LMP_FAIL_IF(!jobs, LMP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_chunks; i++) {
        jobs[i].dir = dir;
        jobs[i].m = m;
        jobs[i].mc = &m->chunks[i];
        jobs[i].sc = sc;
    }
    if (pool)
        lmp_pool_run(pool, check_chunk, jobs, (int)m->n_chunks);
    else
        for (size_t i = 0; i < m->n_chunks; i++) check_chunk(jobs, (int)i, 0);
    for (size_t i = 0; i < m->n_chunks; i++) {
        for (size_t k = 0; k < jobs[i].probs.n; k++)
            padd(&pl, jobs[i].probs.v[k].file, "%s", jobs[i].probs.v[k].what);
        pl.oom |= jobs[i].probs.oom;
        r->bytes_checked += jobs[i].bytes;
        r->files_checked++;
    }
    check_unlisted(dir, "chunks", m, &pl);
    check_unlisted(dir, "tokenizer", m, &pl);
    check_model(m, &pl);
done:
    emit(&pl, cb, ctx, r, d);
    if (r->problems) rc = LMP_ERR_INTEGRITY;
out:
    if (jobs)
        for (size_t i = 0; i < m->n_chunks; i++) free(jobs[i].probs.v);
    free(jobs);
    for (int i = 0; sc && i < nsc; i++) free(sc[i].buf);
    free(sc);
    free(pl.v);
    lmp_manifest_free(m);
    free(mpath);
    free(cpath);
    return rc;
}
