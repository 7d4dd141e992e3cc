/* .lmpk container -> split source (see split/split.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "split/split.h"

static void release_tensor(void *ctx, size_t i)
{
    const lmp_lmpk *pk = ctx;
    lmp_lmpk_release(pk, lmp_lmpk_at(pk, i));
}

lmp_status lmp_split_src_from_lmpk(const lmp_lmpk *pk, const char *name, lmp_split_src *src,
                                   lmp_chunk_tensor **tensors, lmp_split_file **files,
                                   lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    size_t n = lmp_lmpk_count(pk), nf = lmp_lmpk_nfiles(pk);
    lmp_chunk_tensor *t = calloc(n ? n : 1, sizeof *t);
    lmp_split_file *f = calloc(nf ? nf : 1, sizeof *f);
    *tensors = NULL;
    *files = NULL;
    memset(src, 0, sizeof *src);
    LMP_FAIL_IF(!t || !f, LMP_ERR_NOMEM, "%s: out of memory", lmp_lmpk_path(pk));
    for (size_t i = 0; i < n; i++) {
        const lmp_lmpk_tensor *x = lmp_lmpk_at(pk, i);
        LMP_FAIL_IF(strlen(x->name) > LMP_CHUNK_NAME_MAX, LMP_ERR_FORMAT,
                    "%s: tensor name too long", lmp_lmpk_path(pk));
        snprintf(t[i].name, sizeof t[i].name, "%s", x->name);
        t[i].kind = (int)x->kind;
        t[i].ndim = x->ndim;
        for (int k = 0; k < LMP_CHUNK_MAX_DIMS; k++) t[i].shape[k] = k < x->ndim ? x->shape[k] : 0;
        t[i].group = x->group;
        t[i].scheme = x->scheme;
        t[i].size = x->size;
        t[i].data = x->data;
    }
    for (size_t i = 0; i < nf; i++) lmp_lmpk_file_at(pk, i, &f[i].name, &f[i].data, &f[i].size);
    src->name = name;
    src->config_json = lmp_lmpk_config_json(pk, &src->config_len);
    src->n_tensors = n;
    src->tensors = t;
    src->n_files = nf;
    src->files = f;
    src->release = release_tensor;
    src->release_ctx = (void *)pk;
    *tensors = t;
    *files = f;
    t = NULL;
    f = NULL;
out:
    free(t);
    free(f);
    return rc;
}

void lmp_split_default_name(const char *path, char *buf, size_t cap)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && path[s - 1] != '/') s--;
    size_t len = n - s;
    if (len > 5 && !strncmp(path + n - 5, ".lmpk", 5)) len -= 5;
    if (len == 0 || len >= cap) len = len >= cap ? cap - 1 : 0;
    memcpy(buf, path + s, len);
    buf[len] = '\0';
    if (!buf[0]) snprintf(buf, cap, "model");
}
