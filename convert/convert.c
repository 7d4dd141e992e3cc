/* Streaming conversion: tensor source (model folder or float container) ->
 * .lmpk writer. See convert/convert.h for the contract. */
#include "convert/convert.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/pool.h"
#include "formats/config.h"
#include "formats/dtype.h"
#include "formats/lmpk.h"
#include "formats/safetensors.h"

/* THE defaults, one place: docs/QUANT.md's recommendation (asym g64 with
 * search; the embedding / tied lm_head in the same q4 format). */
#define DEFAULT_DTYPE LMP_MAT_Q4
#define DEFAULT_GROUP LMP_Q4_DEFAULT_GROUP
#define DEFAULT_SCHEME LMP_Q4_DEFAULT_SCHEME
#define DEFAULT_Q4_EMBED LMP_MAT_Q4

/* Slab: rows processed (in parallel) and written together; ~2 MB of f32
 * input per slab keeps memory flat and the pool busy. */
#define SLAB_F32_BYTES (2u << 20)

void lmp_convert_defaults(lmp_convert_opts *o)
{
    memset(o, 0, sizeof *o);
    o->dtype = DEFAULT_DTYPE;
    o->group = DEFAULT_GROUP;
    o->scheme = DEFAULT_SCHEME;
    o->embed = -1;
    o->method = LMP_Q4_SEARCH;
    o->threads = 0;
}

lmp_mat_kind lmp_convert_embed_kind(const lmp_convert_opts *o)
{
    if (o->embed >= 0) return (lmp_mat_kind)o->embed;
    return o->dtype == LMP_MAT_Q4 ? DEFAULT_Q4_EMBED : o->dtype;
}

const char *lmp_kind_name(int kind)
{
    static const char *names[] = {"f32", "f16", "bf16", "q4", "q8"};
    return kind >= 0 && kind <= LMP_MAT_Q8 ? names[kind] : NULL;
}

int lmp_kind_from_name(const char *s)
{
    for (int k = 0; k <= LMP_MAT_Q8; k++)
        if (!strcmp(s, lmp_kind_name(k))) return k;
    return -1;
}

/* ---- tensor source ------------------------------------------------------- */

static const char *const carried_names[] = {"tokenizer.json", "tokenizer_config.json",
                                            "special_tokens_map.json", "generation_config.json"};
#define N_CARRIED (sizeof carried_names / sizeof carried_names[0])

typedef struct source {
    const char *path;
    lmp_st *st;                /* model folder, or */
    lmp_lmpk *pk;              /* container */
    char *cfg_owned;
    const char *cfg_json;
    size_t cfg_len;
    lmp_config cfg;
    lmp_lmpk_blob files[LMP_LMPK_MAX_FILES];
    char *file_bufs[LMP_LMPK_MAX_FILES];
    size_t nfiles;
} source;

typedef struct src_tensor {
    const char *name;
    lmp_dtype dtype;           /* F32, F16 or BF16 */
    int ndim;
    int64_t rows, cols;        /* 1-D: rows 1 */
    const uint8_t *data;
    uint64_t nbytes;
} src_tensor;

static void source_close(source *s)
{
    lmp_st_close(s->st);
    lmp_lmpk_close(s->pk);
    free(s->cfg_owned);
    for (size_t i = 0; i < s->nfiles; i++) free(s->file_bufs[i]);
    memset(s, 0, sizeof *s);
}

static int is_container(const char *path)
{
    if (lmp_is_dir(path)) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[8];
    int ok = fread(m, 1, 8, f) == 8 && !memcmp(m, LMP_LMPK_MAGIC, 8);
    fclose(f);
    return ok;
}

static lmp_status source_open(source *s, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *p = NULL;
    memset(s, 0, sizeof *s);
    s->path = path;
    LMP_FAIL_IF(!lmp_exists(path), LMP_ERR_IO, "%s: no such model folder or container", path);
    if (is_container(path)) {
        LMP_FORWARD(lmp_lmpk_open(&s->pk, path, d));
        s->cfg = *lmp_lmpk_config(s->pk);
        s->cfg_json = lmp_lmpk_config_json(s->pk, &s->cfg_len);
        for (size_t i = 0; i < lmp_lmpk_count(s->pk); i++) {
            const lmp_lmpk_tensor *t = lmp_lmpk_at(s->pk, i);
            LMP_FAIL_IF(t->kind != LMP_MAT_F32 && t->kind != LMP_MAT_F16 &&
                            t->kind != LMP_MAT_BF16,
                        LMP_ERR_UNSUPPORTED,
                        "%s: tensor '%s' is already %s; only f32/f16/bf16 containers can be "
                        "converted or quantized",
                        path, t->name, lmp_kind_name(t->kind));
        }
        s->nfiles = lmp_lmpk_nfiles(s->pk);
        for (size_t i = 0; i < s->nfiles; i++) {
            const uint8_t *data;
            lmp_lmpk_file_at(s->pk, i, &s->files[i].name, &data, &s->files[i].size);
            s->files[i].data = data;
        }
        goto out;
    }
    LMP_FAIL_IF(!lmp_is_dir(path), LMP_ERR_ARG,
                "%s: not a model folder or an .lmpk container", path);
    p = lmp_path_join(path, "config.json");
    LMP_FAIL_IF(!p, LMP_ERR_NOMEM, "%s: out of memory", path);
    LMP_FORWARD(lmp_read_file(p, LMP_LMPK_MAX_CONFIG, &s->cfg_owned, &s->cfg_len, d));
    s->cfg_json = s->cfg_owned;
    LMP_FORWARD(lmp_config_parse(&s->cfg, s->cfg_json, s->cfg_len, p, d));
    LMP_FORWARD(lmp_st_open(&s->st, path, d));
    rc = lmp_config_check(&s->cfg, s->st, d);
    if (rc != LMP_OK) {
        lmp_diag_prefix(d, path);
        goto out;
    }
    for (size_t i = 0; i < N_CARRIED; i++) {
        free(p);
        p = lmp_path_join(path, carried_names[i]);
        LMP_FAIL_IF(!p, LMP_ERR_NOMEM, "%s: out of memory", path);
        if (!lmp_exists(p)) continue;
        char *buf = NULL;
        size_t len = 0;
        LMP_FORWARD(lmp_read_file(p, 256u << 20, &buf, &len, d));
        s->file_bufs[s->nfiles] = buf;
        s->files[s->nfiles] = (lmp_lmpk_blob){carried_names[i], buf, len};
        s->nfiles++;
    }
out:
    free(p);
    if (rc != LMP_OK) source_close(s);
    return rc;
}

static lmp_status source_get(const source *s, const lmp_expect *e, src_tensor *t, lmp_diag *d)
{
    memset(t, 0, sizeof *t);
    t->name = e->name;
    t->ndim = e->ndim;
    t->rows = e->ndim == 2 ? e->shape[0] : 1;
    t->cols = e->ndim == 2 ? e->shape[1] : e->shape[0];
    if (s->st) {
        const lmp_st_tensor *x = lmp_st_find(s->st, e->name);
        if (!x) return lmp_fail(d, LMP_ERR_MODEL, "%s: tensor '%s' missing", s->path, e->name);
        t->dtype = x->dtype;
        t->data = x->data;
        t->nbytes = x->nbytes;
    } else {
        const lmp_lmpk_tensor *x = lmp_lmpk_find(s->pk, e->name);
        if (!x) return lmp_fail(d, LMP_ERR_MODEL, "%s: tensor '%s' missing", s->path, e->name);
        t->dtype = x->kind == LMP_MAT_F32 ? LMP_DT_F32
                   : x->kind == LMP_MAT_F16 ? LMP_DT_F16 : LMP_DT_BF16;
        t->data = x->data;
        t->nbytes = x->size;
    }
    if ((uint64_t)t->rows * (uint64_t)t->cols * lmp_dtype_size(t->dtype) != t->nbytes)
        return lmp_fail(d, LMP_ERR_INTERNAL, "%s: tensor '%s': size disagrees with its shape",
                        s->path, e->name);
    return LMP_OK;
}

/* Drop the whole pages inside [p, p+n) (read-only file mapping). */
static void release_pages(const uint8_t *p, uint64_t n)
{
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0 || n == 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg;
    uintptr_t b = ((uintptr_t)p + (uintptr_t)n) / (uintptr_t)pg * (uintptr_t)pg;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* ---- per-slab parallel work ---------------------------------------------- */

typedef struct slab_job {
    const src_tensor *t;
    lmp_mat_kind kind;
    int group, scheme;
    lmp_q4_method method;
    int64_t r0, nrows;
    int rows_per_task;
    uint64_t out_row_bytes;
    uint8_t *out;
    float *scratch;            /* cols floats per thread */
    atomic_llong bad_row;      /* smallest row with a non-finite value, or LLONG_MAX */
} slab_job;

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Row to float. bf16 -> f32 is a 16-bit shift (exact); done here as a
 * plain loop the compiler vectorizes, other types via lmp_to_f32. */
static void row_to_f32(lmp_dtype t, const uint8_t *src, float *x, int cols)
{
    if (t == LMP_DT_BF16) {
        for (int c = 0; c < cols; c++) {
            uint32_t u = ((uint32_t)src[2 * c] | (uint32_t)src[2 * c + 1] << 8) << 16;
            memcpy(&x[c], &u, 4);
        }
        return;
    }
    lmp_to_f32(t, src, x, (size_t)cols);
}

/* 1 if no element is NaN or infinite (all-ones exponent); written as a
 * max reduction over integers so the compiler vectorizes it. */
static int all_finite(const float *x, int n)
{
    uint32_t m = 0;
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u &= 0x7f800000u;
        m = u > m ? u : m;
    }
    return m != 0x7f800000u;
}

static void slab_task(void *ctx, int task, int tid)
{
    slab_job *j = ctx;
    const src_tensor *t = j->t;
    int cols = (int)t->cols;
    size_t esz = lmp_dtype_size(t->dtype);
    float *x = j->scratch + (size_t)tid * (size_t)cols;
    int64_t a = (int64_t)task * j->rows_per_task;
    int64_t b = a + j->rows_per_task < j->nrows ? a + j->rows_per_task : j->nrows;
    for (int64_t i = a; i < b; i++) {
        int64_t r = j->r0 + i;
        row_to_f32(t->dtype, t->data + (uint64_t)r * (uint64_t)cols * esz, x, cols);
        uint8_t *o = j->out + (uint64_t)i * j->out_row_bytes;
        switch (j->kind) {
        case LMP_MAT_F32:
            for (int c = 0; c < cols; c++) {
                uint32_t u;
                memcpy(&u, &x[c], 4);
                put16(o + 4 * (size_t)c, (uint16_t)u);
                put16(o + 4 * (size_t)c + 2, (uint16_t)(u >> 16));
            }
            break;
        case LMP_MAT_F16:
            for (int c = 0; c < cols; c++) put16(o + 2 * (size_t)c, lmp_f32_to_f16(x[c]));
            break;
        case LMP_MAT_BF16:
            for (int c = 0; c < cols; c++) put16(o + 2 * (size_t)c, lmp_f32_to_bf16(x[c]));
            break;
        default: {
            if (!all_finite(x, cols)) {
                long long cur = atomic_load(&j->bad_row);
                while (r < cur && !atomic_compare_exchange_weak(&j->bad_row, &cur, (long long)r)) {
                }
                memset(o, 0, (size_t)j->out_row_bytes);
                break;
            }
            lmp_q4_quantize_row(x, cols, j->group, j->scheme, j->method, o);
        }
        }
    }
}

/* ---- the pass ------------------------------------------------------------ */

static int is_embedding(const lmp_expect *e)
{
    return e->ndim == 2 && e->layer < 0;
}

lmp_status lmp_convert(const char *in_path, const char *out_path, const lmp_convert_opts *o,
                       lmp_convert_stats *stats, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    source s;
    memset(&s, 0, sizeof s);
    lmp_expect *ex = NULL;
    lmp_lmpkw_desc *descs = NULL;
    lmp_lmpkw *w = NULL;
    lmp_pool *pool = NULL;
    uint8_t *outbuf = NULL;
    float *scratch = NULL;
    lmp_convert_stats st;
    memset(&st, 0, sizeof st);

    LMP_FAIL_IF(o->dtype != LMP_MAT_F32 && o->dtype != LMP_MAT_F16 && o->dtype != LMP_MAT_BF16 &&
                    o->dtype != LMP_MAT_Q4,
                LMP_ERR_ARG, "dtype must be f32, f16, bf16 or q4");
    lmp_mat_kind ek = lmp_convert_embed_kind(o);
    LMP_FAIL_IF(ek < LMP_MAT_F32 || ek > LMP_MAT_Q8, LMP_ERR_ARG, "bad embedding kind %d", (int)ek);
    int uses_q = o->dtype == LMP_MAT_Q4 || ek == LMP_MAT_Q4 || ek == LMP_MAT_Q8;
    LMP_FAIL_IF(uses_q && o->group != 32 && o->group != 64 && o->group != 128, LMP_ERR_ARG,
                "group %d: must be 32, 64 or 128", o->group);
    LMP_FAIL_IF((o->dtype == LMP_MAT_Q4 || ek == LMP_MAT_Q4) && o->scheme != LMP_Q4_SYM &&
                    o->scheme != LMP_Q4_ASYM,
                LMP_ERR_ARG, "scheme %d: must be sym or asym", o->scheme);

    LMP_FORWARD(source_open(&s, in_path, d));
    size_t n = lmp_config_expected(&s.cfg, NULL, 0);
    ex = calloc(n, sizeof *ex);
    descs = calloc(n, sizeof *descs);
    LMP_FAIL_IF(!ex || !descs, LMP_ERR_NOMEM, "%s: out of memory", in_path);
    lmp_config_expected(&s.cfg, ex, n);
    uint64_t total_in = 0;
    int64_t max_cols = 1;
    for (size_t i = 0; i < n; i++) {
        lmp_lmpkw_desc *ds = &descs[i];
        ds->name = ex[i].name;
        ds->ndim = ex[i].ndim;
        ds->shape[0] = ex[i].shape[0];
        ds->shape[1] = ex[i].ndim > 1 ? ex[i].shape[1] : 0;
        ds->kind = ex[i].ndim == 1 ? LMP_MAT_F32 : is_embedding(&ex[i]) ? ek : o->dtype;
        if (ds->kind == LMP_MAT_Q4 || ds->kind == LMP_MAT_Q8) {
            ds->group = o->group;
            ds->scheme = ds->kind == LMP_MAT_Q8 ? LMP_Q4_Q8 : o->scheme;
        }
        src_tensor t;
        LMP_FORWARD(source_get(&s, &ex[i], &t, d));
        total_in += t.nbytes;
        if (t.cols > max_cols) max_cols = t.cols;
    }
    LMP_FORWARD(lmp_pool_create(&pool, o->threads, d));
    int nth = lmp_pool_threads(pool);
    scratch = malloc((size_t)nth * (size_t)max_cols * sizeof *scratch);
    LMP_FAIL_IF(!scratch, LMP_ERR_NOMEM, "%s: out of memory", in_path);
    LMP_FORWARD(lmp_lmpkw_open(&w, out_path, s.cfg_json, s.cfg_len, s.files, s.nfiles, descs, n,
                               d));
    uint64_t done = 0;
    size_t outcap = 0;
    for (size_t i = 0; i < n; i++) {
        src_tensor t;
        LMP_FORWARD(source_get(&s, &ex[i], &t, d));
        uint64_t size = lmp_lmpkw_tensor_size(w, i);
        uint64_t orb = size / (uint64_t)t.rows;
        int64_t slab = (int64_t)(SLAB_F32_BYTES / ((uint64_t)t.cols * 4));
        if (slab < 1) slab = 1;
        if (slab > t.rows) slab = t.rows;
        if ((uint64_t)slab * orb > outcap) {
            free(outbuf);
            outcap = (size_t)((uint64_t)slab * orb);
            outbuf = malloc(outcap);
            LMP_FAIL_IF(!outbuf, LMP_ERR_NOMEM, "%s: out of memory for a %zu-byte slab",
                        in_path, outcap);
        }
        if (descs[i].ndim == 2) {
            st.weight_elems += (uint64_t)t.rows * (uint64_t)t.cols;
            st.weight_bytes += size;
        }
        size_t esz = lmp_dtype_size(t.dtype);
        for (int64_t r0 = 0; r0 < t.rows; r0 += slab) {
            slab_job j;
            memset(&j, 0, sizeof j);
            j.t = &t;
            j.kind = descs[i].kind;
            j.group = descs[i].group;
            j.scheme = descs[i].scheme;
            j.method = o->method;
            j.r0 = r0;
            j.nrows = t.rows - r0 < slab ? t.rows - r0 : slab;
            j.rows_per_task = (int)((j.nrows + 4 * nth - 1) / (4 * nth));
            if (j.rows_per_task < 1) j.rows_per_task = 1;
            j.out_row_bytes = orb;
            j.out = outbuf;
            j.scratch = scratch;
            atomic_init(&j.bad_row, LLONG_MAX);
            int ntasks = (int)((j.nrows + j.rows_per_task - 1) / j.rows_per_task);
            lmp_pool_run(pool, slab_task, &j, ntasks);
            long long bad = atomic_load(&j.bad_row);
            LMP_FAIL_IF(bad != LLONG_MAX, LMP_ERR_FORMAT,
                        "%s: tensor '%s': row %lld holds a NaN or infinity, cannot quantize",
                        in_path, t.name, bad);
            LMP_FORWARD(lmp_lmpkw_write(w, outbuf, (size_t)((uint64_t)j.nrows * orb), d));
            uint64_t in_bytes = (uint64_t)j.nrows * (uint64_t)t.cols * esz;
            release_pages(t.data + (uint64_t)r0 * (uint64_t)t.cols * esz, in_bytes);
            done += in_bytes;
            if (o->progress) o->progress(o->progress_ctx, done, total_in);
        }
        st.n_tensors++;
    }
    st.in_bytes = total_in;
    LMP_FORWARD(lmp_lmpkw_finish(w, d));
    w = NULL;
    {
        struct stat sb;
        if (stat(out_path, &sb) == 0) st.out_bytes = (uint64_t)sb.st_size;
    }
    if (stats) *stats = st;
out:
    lmp_lmpkw_abort(w);
    lmp_pool_close(pool);
    free(outbuf);
    free(scratch);
    free(ex);
    free(descs);
    source_close(&s);
    return rc;
}
