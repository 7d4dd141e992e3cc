/* Bundle writer; contract in split/split.h. */
#include "split/split.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "manifest/manifest.h"

void lmp_split_opts_default(lmp_split_opts *o)
{
    memset(o, 0, sizeof *o);
    o->layers_per_chunk = LMP_SPLIT_DEFAULT_LAYERS;
    o->zstd_level = LMP_SPLIT_DEFAULT_LEVEL;
}

int lmp_split_layer_of(const char *name)
{
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1) != 0) return -1;
    const char *p = name + sizeof pre - 1;
    if (*p < '0' || *p > '9' || (*p == '0' && p[1] != '.')) return -1;
    long v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (v > 1000000) return -1;
    }
    return *p == '.' ? (int)v : -1;
}

void lmp_split_remove_tree(const char *dir)
{
    static const char *const subs[] = {"chunks", "tokenizer"};
    for (size_t s = 0; s < 2; s++) {
        char *sub = lmp_path_join(dir, subs[s]);
        if (!sub) continue;
        DIR *dp = opendir(sub);
        struct dirent *de;
        while (dp && (de = readdir(dp))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char *f = lmp_path_join(sub, de->d_name);
            if (f) unlink(f);
            free(f);
        }
        if (dp) closedir(dp);
        rmdir(sub);
        free(sub);
    }
    DIR *dp = opendir(dir);
    struct dirent *de;
    while (dp && (de = readdir(dp))) { /* manifest.json and its temporaries */
        if (strncmp(de->d_name, "manifest.json", 13) != 0) continue;
        char *f = lmp_path_join(dir, de->d_name);
        if (f) unlink(f);
        free(f);
    }
    if (dp) closedir(dp);
    rmdir(dir);
}

typedef struct job {
    const lmp_split_src *src;
    int role, first, last;
    int level, raw_literals;
    uint8_t *z;
    size_t zn;
    lmp_diag d;
} job;

static void compress_one(void *ctx, int i, int tid)
{
    (void)tid;
    job *j = &((job *)ctx)[i];
    lmp_diag *d = &j->d;
    lmp_status rc = LMP_OK;
    const lmp_split_src *s = j->src;
    lmp_chunk_tensor *sel = NULL;
    uint8_t *raw = NULL;
    size_t rn = 0, n = 0;
    char *meta = NULL;
    sel = calloc(s->n_tensors ? s->n_tensors : 1, sizeof *sel);
    LMP_FAIL_IF(!sel, LMP_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < s->n_tensors; k++) {
        int l = lmp_split_layer_of(s->tensors[k].name);
        int in = j->role == LMP_CHUNK_HEAD ? l < 0 : (l >= j->first && l <= j->last);
        if (in) sel[n++] = s->tensors[k];
    }
    if (j->role == LMP_CHUNK_HEAD) {
        meta = lmp_manifest_meta_json(s->name, s->config_json, s->config_len);
        LMP_FAIL_IF(!meta, LMP_ERR_FORMAT, "config: not a JSON object");
    }
    LMP_FORWARD(lmp_chunk_encode(j->role, j->first, j->last, sel, n, meta, meta ? strlen(meta) : 0,
                                 &raw, &rn, d));
    if (s->release)
        for (size_t k = 0; k < s->n_tensors; k++) {
            int l = lmp_split_layer_of(s->tensors[k].name);
            if (j->role == LMP_CHUNK_HEAD ? l < 0 : (l >= j->first && l <= j->last))
                s->release(s->release_ctx, k);
        }
    LMP_FORWARD(lmp_chunk_compress_opts(raw, rn, j->level, j->raw_literals, &j->z, &j->zn, d));
out:
    (void)rc;
    free(meta);
    free(raw);
    free(sel);
}

static lmp_status write_file(const char *dir, const char *rel, const void *data, size_t n,
                             lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_out o = {0};
    char *path = lmp_path_join(dir, rel);
    LMP_FAIL_IF(!path, LMP_ERR_NOMEM, "out of memory");
    LMP_FORWARD(lmp_out_open(&o, path, d));
    LMP_FORWARD(lmp_out_write(&o, data, n, d));
    LMP_FORWARD(lmp_out_commit(&o, d));
out:
    lmp_out_abort(&o);
    free(path);
    return rc;
}

static lmp_status make_dir(const char *dir, const char *sub, lmp_diag *d)
{
    char *p = sub ? lmp_path_join(dir, sub) : strdup(dir);
    if (!p) return lmp_fail(d, LMP_ERR_NOMEM, "out of memory");
    int r = mkdir(p, 0777);
    lmp_status rc = LMP_OK;
    if (r != 0) rc = lmp_fail(d, LMP_ERR_IO, "%s: cannot create folder: %s", p, strerror(errno));
    free(p);
    return rc;
}

static int config_layers(const lmp_split_src *s)
{
    cJSON *c = cJSON_ParseWithLength(s->config_json, s->config_len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, "num_hidden_layers");
    int n = cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 100000
                ? (int)v->valuedouble
                : -1;
    cJSON_Delete(c);
    return n;
}

lmp_status lmp_split_write(const lmp_split_src *src, const char *out_dir,
                           const lmp_split_opts *o, lmp_pool *pool, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *tmp = NULL;
    job *jobs = NULL;
    lmp_manifest *m = NULL;
    int created = 0;
    size_t nj = 0;
    LMP_FAIL_IF(o->layers_per_chunk < 1, LMP_ERR_ARG, "layers per chunk must be >= 1");
    LMP_FAIL_IF(lmp_exists(out_dir), LMP_ERR_IO, "%s: already exists (remove it first)", out_dir);
    int nl = config_layers(src);
    LMP_FAIL_IF(nl < 1, LMP_ERR_FORMAT, "config: num_hidden_layers missing or invalid");
    /* every tensor must land in a chunk; every layer needs a tensor */
    size_t n_head = 0;
    for (size_t k = 0; k < src->n_tensors; k++) {
        int l = lmp_split_layer_of(src->tensors[k].name);
        LMP_FAIL_IF(l >= nl, LMP_ERR_MODEL, "tensor '%s': layer %d but the config has %d layers",
                    src->tensors[k].name, l, nl);
        n_head += l < 0;
    }
    LMP_FAIL_IF(n_head == 0, LMP_ERR_MODEL, "no embedding/head tensors to put in the head chunk");
    for (size_t f = 0; f < src->n_files; f++) {
        char rel[300];
        snprintf(rel, sizeof rel, "tokenizer/%s", src->files[f].name);
        LMP_FAIL_IF(strlen(src->files[f].name) > 200 || !lmp_bundle_name_ok(rel), LMP_ERR_FORMAT,
                    "tokenizer file name '%s' not allowed in a bundle", src->files[f].name);
    }
    size_t tl = strlen(out_dir) + 32;
    tmp = malloc(tl);
    LMP_FAIL_IF(!tmp, LMP_ERR_NOMEM, "out of memory");
    snprintf(tmp, tl, "%s.tmp.%ld", out_dir, (long)getpid());
    LMP_FORWARD(make_dir(tmp, NULL, d));
    created = 1;
    LMP_FORWARD(make_dir(tmp, "chunks", d));
    if (src->n_files) LMP_FORWARD(make_dir(tmp, "tokenizer", d));
    for (size_t f = 0; f < src->n_files; f++) {
        char rel[300];
        snprintf(rel, sizeof rel, "tokenizer/%s", src->files[f].name);
        LMP_FORWARD(write_file(tmp, rel, src->files[f].data, src->files[f].size, d));
    }

    nj = 1 + (size_t)((nl + o->layers_per_chunk - 1) / o->layers_per_chunk);
    jobs = calloc(nj, sizeof *jobs);
    LMP_FAIL_IF(!jobs, LMP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nj; i++) {
        job *j = &jobs[i];
        j->src = src;
        j->level = o->zstd_level;
        j->raw_literals = o->raw_literals;
        lmp_diag_clear(&j->d);
        if (i == 0) {
            j->role = LMP_CHUNK_HEAD;
        } else {
            j->role = LMP_CHUNK_LAYERS;
            j->first = (int)(i - 1) * o->layers_per_chunk;
            j->last = j->first + o->layers_per_chunk - 1;
            if (j->last >= nl) j->last = nl - 1;
        }
    }
    /* Compress a pool-sized batch in parallel, write it in load order, so
     * memory stays at ~threads chunks and output order is fixed. */
    size_t step = pool ? (size_t)lmp_pool_threads(pool) : 1, written = 0;
    for (size_t b = 0; b < nj; b += step) {
        size_t cnt = nj - b < step ? nj - b : step;
        if (pool)
            lmp_pool_run(pool, compress_one, jobs + b, (int)cnt);
        else
            compress_one(jobs + b, 0, 0);
        for (size_t i = b; i < b + cnt; i++) {
            if (jobs[i].d.status != LMP_OK) {
                if (d && d->status == LMP_OK) *d = jobs[i].d;
                rc = jobs[i].d.status;
                goto out;
            }
            char rel[64];
            lmp_bundle_chunk_name(jobs[i].role, jobs[i].first, jobs[i].last, rel, sizeof rel);
            LMP_FORWARD(write_file(tmp, rel, jobs[i].z, jobs[i].zn, d));
            free(jobs[i].z);
            jobs[i].z = NULL;
            written++;
            if (o->on_chunk) o->on_chunk(o->ctx, written);
        }
    }
    LMP_FORWARD(lmp_manifest_scan(&m, tmp, pool, d));
    LMP_FORWARD(lmp_manifest_write(m, tmp, d));
    LMP_FAIL_IF(rename(tmp, out_dir) != 0, LMP_ERR_IO, "%s: cannot rename %s into place: %s",
                out_dir, tmp, strerror(errno));
    created = 0;
out:
    if (jobs)
        for (size_t i = 0; i < nj; i++) free(jobs[i].z);
    free(jobs);
    lmp_manifest_free(m);
    if (created) lmp_split_remove_tree(tmp);
    free(tmp);
    return rc;
}
