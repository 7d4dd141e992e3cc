/* Streaming conversion: tensor source (model folder or float container) ->
 * .lmpk writer. See convert/convert.h for the contract. */
#include "convert/convert.h"

#include <math.h>
#include <pthread.h>
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

/* ---- pipelined parallel work --------------------------------------------
 * The whole model is cut into chunks (a tensor's rows, ~CHUNK_F32_BYTES of
 * f32 each), numbered in output order. Every thread (the caller and
 * nth - 1 helpers) repeatedly claims the next chunk, converts / quantizes
 * it into a ring slot, then, if no other thread is writing, becomes the
 * writer and appends every finished chunk that is next in output order
 * (hash + write, drop its input pages). So reading, quantizing and writing
 * overlap and no thread waits at a per-slab barrier; a thread only waits
 * when the ring is full (its chunk is RING_PER_THREAD * threads ahead of
 * the next one to write). The
 * bytes of a chunk depend only on its rows, and chunks are written in
 * order: the file is the same for any thread count. */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Row to float; returns 1 if every value is finite. One pass (bf16: a
 * fused AVX2 shift + exponent check, formats/dtype.c). */
static int row_to_f32(lmp_dtype t, const uint8_t *src, float *x, int cols)
{
    return lmp_to_f32_finite(t, src, x, (size_t)cols) == 1;
}

#define CHUNK_F32_BYTES (1u << 20)
#define RING_PER_THREAD 4
/* q4 / q8: rows converted and quantized together, up to this many floats
 * (64 KB: stays in L2 between the bf16 conversion and the quantizer) */
#define QROWS_F32 16384
/* Start the output's writeback every 8 MB written, so the final fsync
 * (atomic commit) does not wait for the whole file at the end. */
#define WRITEBACK_BYTES (8u << 20)

typedef struct chunk {
    uint32_t tensor;
    int64_t r0, nrows;
} chunk;

typedef struct tensor_job {
    src_tensor t;
    lmp_mat_kind kind;
    int group, scheme;
    uint64_t out_row_bytes;
} tensor_job;

typedef struct cpipe {
    /* read-only while running */
    const tensor_job *tj;
    const chunk *ch;
    size_t nchunks;
    int nslots;
    size_t slot_bytes;
    uint8_t *slots;            /* nslots * slot_bytes */
    lmp_q4_method method;
    int64_t max_cols;
    float *scratch;            /* max_cols floats per thread */
    lmp_lmpkw *w;
    const char *in_path;
    const lmp_convert_opts *o;
    uint64_t total_in;
    uint64_t unsynced;         /* written since the last writeback start (the writer's) */
    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t space;      /* a slot became free, or stop */
    size_t next, written;
    size_t *slot_chunk;        /* chunk + 1 finished in the slot, 0 free/busy */
    long long *slot_bad;       /* smallest non-finite row of the slot's chunk, or -1 */
    int writing, stop;
    uint64_t done_in;
    lmp_status rc;
    lmp_diag diag;
} cpipe;

/* Rows [r0, r0 + nrows) of a tensor into out; returns the smallest row
 * holding a non-finite value (q4/q8 only), or -1. */
static long long convert_rows(const tensor_job *j, lmp_q4_method method, int64_t r0,
                              int64_t nrows, float *x, uint8_t *out)
{
    const src_tensor *t = &j->t;
    int cols = (int)t->cols;
    size_t esz = lmp_dtype_size(t->dtype);
    if (j->kind == LMP_MAT_Q4 || j->kind == LMP_MAT_Q8) {
        /* QROWS_F32 floats of rows at a time, quantized together (whole
         * groups of several rows share the vector lanes) */
        int64_t per = QROWS_F32 / cols > 1 ? QROWS_F32 / cols : 1;
        for (int64_t i0 = 0; i0 < nrows; i0 += per) {
            int64_t n = nrows - i0 < per ? nrows - i0 : per;
            for (int64_t i = 0; i < n; i++) {
                int64_t r = r0 + i0 + i;
                if (!row_to_f32(t->dtype, t->data + (uint64_t)r * (uint64_t)cols * esz,
                                x + (size_t)i * (size_t)cols, cols))
                    return r; /* rows are in order: the first is the smallest */
            }
            lmp_q4_quantize_rows(x, (int)n, cols, j->group, j->scheme, method,
                                 out + (uint64_t)i0 * j->out_row_bytes);
        }
        return -1;
    }
    for (int64_t i = 0; i < nrows; i++) {
        int64_t r = r0 + i;
        int finite = row_to_f32(t->dtype, t->data + (uint64_t)r * (uint64_t)cols * esz, x, cols);
        uint8_t *o = out + (uint64_t)i * j->out_row_bytes;
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
        default:
            (void)finite;
            break;
        }
    }
    return -1;
}

/* Append the finished chunks that are next in order (caller holds mu and
 * has set p->writing; returns with mu held). */
static void write_ready(cpipe *p)
{
    while (!p->stop && p->written < p->nchunks) {
        size_t c = p->written;
        int s = (int)(c % (size_t)p->nslots);
        if (p->slot_chunk[s] != c + 1) break;
        long long bad = p->slot_bad[s];
        pthread_mutex_unlock(&p->mu);
        const chunk *k = &p->ch[c];
        const tensor_job *j = &p->tj[k->tensor];
        lmp_status rc = LMP_OK;
        lmp_diag d;
        memset(&d, 0, sizeof d);
        if (bad >= 0) {
            rc = lmp_fail(&d, LMP_ERR_FORMAT,
                          "%s: tensor '%s': row %lld holds a NaN or infinity, cannot quantize",
                          p->in_path, j->t.name, bad);
        } else {
            rc = lmp_lmpkw_write(p->w, p->slots + (size_t)s * p->slot_bytes,
                                 (size_t)((uint64_t)k->nrows * j->out_row_bytes), &d);
        }
        uint64_t in_bytes = (uint64_t)k->nrows * (uint64_t)j->t.cols * lmp_dtype_size(j->t.dtype);
        if (rc == LMP_OK) {
            release_pages(j->t.data + (uint64_t)k->r0 * (uint64_t)j->t.cols *
                                          lmp_dtype_size(j->t.dtype),
                          in_bytes);
            if (p->o->progress) p->o->progress(p->o->progress_ctx, p->done_in + in_bytes,
                                               p->total_in);
        }
        if (rc == LMP_OK) {
            p->unsynced += (uint64_t)k->nrows * j->out_row_bytes;
            if (p->unsynced >= WRITEBACK_BYTES) {
                lmp_lmpkw_start_writeback(p->w);
                p->unsynced = 0;
            }
        }
        pthread_mutex_lock(&p->mu);
        p->done_in += in_bytes;
        p->slot_chunk[s] = 0;
        p->written++;
        if (rc != LMP_OK) {
            p->rc = rc;
            p->diag = d;
            p->stop = 1;
        }
        pthread_cond_broadcast(&p->space);
    }
}

static void pipe_worker(cpipe *p, int tid)
{
    float *x = p->scratch + (size_t)tid * (size_t)p->max_cols;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->stop || p->next >= p->nchunks) break;
        size_t c = p->next++;
        while (!p->stop && c - p->written >= (size_t)p->nslots)
            pthread_cond_wait(&p->space, &p->mu);
        if (p->stop) break;
        pthread_mutex_unlock(&p->mu);
        int s = (int)(c % (size_t)p->nslots);
        const chunk *k = &p->ch[c];
        long long bad = convert_rows(&p->tj[k->tensor], p->method, k->r0, k->nrows, x,
                                     p->slots + (size_t)s * p->slot_bytes);
        pthread_mutex_lock(&p->mu);
        p->slot_bad[s] = bad;
        p->slot_chunk[s] = c + 1;
        if (!p->writing) {
            p->writing = 1;
            write_ready(p);
            p->writing = 0;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

typedef struct helper_arg {
    cpipe *p;
    int tid;
} helper_arg;

static void *helper_main(void *arg)
{
    helper_arg *h = arg;
    pipe_worker(h->p, h->tid);
    return NULL;
}

/* Run the pipeline with nth threads (the caller is one of them). */
static lmp_status pipe_run(cpipe *p, int nth, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    pthread_t th[64];
    helper_arg ha[64];
    int started = 0;
    if (nth > 64) nth = 64;
    for (int i = 1; i < nth; i++) {
        ha[i] = (helper_arg){p, i};
        if (pthread_create(&th[i], NULL, helper_main, &ha[i]) != 0) break;
        started = i;
    }
    pipe_worker(p, 0);
    for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
    if (p->rc != LMP_OK) {
        *d = p->diag;
        rc = p->rc;
    } else if (p->written != p->nchunks) {
        rc = lmp_fail(d, LMP_ERR_INTERNAL, "%s: %zu of %zu chunks written", p->in_path,
                      p->written, p->nchunks);
    }
    return rc;
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
    tensor_job *tj = NULL;
    chunk *chunks = NULL;
    uint8_t *slots = NULL;
    size_t *slot_chunk = NULL;
    long long *slot_bad = NULL;
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
    int nth = o->threads > 0 ? o->threads : lmp_cpu_count();
    if (nth > 64) nth = 64;
    /* the chunk list, in output order */
    tj = calloc(n, sizeof *tj);
    LMP_FAIL_IF(!tj, LMP_ERR_NOMEM, "%s: out of memory", in_path);
    LMP_FORWARD(lmp_lmpkw_open(&w, out_path, s.cfg_json, s.cfg_len, s.files, s.nfiles, descs, n,
                               d));
    size_t nch = 0, slot_bytes = 1;
    for (int pass = 0; pass < 2; pass++) {
        nch = 0;
        for (size_t i = 0; i < n; i++) {
            tensor_job *j = &tj[i];
            if (pass == 0) {
                LMP_FORWARD(source_get(&s, &ex[i], &j->t, d));
                j->kind = descs[i].kind;
                j->group = descs[i].group;
                j->scheme = descs[i].scheme;
                uint64_t size = lmp_lmpkw_tensor_size(w, i);
                j->out_row_bytes = size / (uint64_t)j->t.rows;
                if (descs[i].ndim == 2) {
                    st.weight_elems += (uint64_t)j->t.rows * (uint64_t)j->t.cols;
                    st.weight_bytes += size;
                }
            }
            int64_t per = (int64_t)(CHUNK_F32_BYTES / ((uint64_t)j->t.cols * 4));
            if (per < 1) per = 1;
            if (per > j->t.rows) per = j->t.rows;
            if (pass == 0 && (uint64_t)per * j->out_row_bytes > slot_bytes)
                slot_bytes = (size_t)((uint64_t)per * j->out_row_bytes);
            for (int64_t r0 = 0; r0 < j->t.rows; r0 += per) {
                if (pass == 1)
                    chunks[nch] = (chunk){(uint32_t)i, r0, j->t.rows - r0 < per ? j->t.rows - r0 : per};
                nch++;
            }
        }
        if (pass == 0) {
            chunks = malloc(nch * sizeof *chunks);
            LMP_FAIL_IF(!chunks, LMP_ERR_NOMEM, "%s: out of memory", in_path);
        }
    }
    int nslots = RING_PER_THREAD * nth;
    if (max_cols < QROWS_F32) max_cols = QROWS_F32; /* per-thread scratch floats */
    scratch = malloc((size_t)nth * (size_t)max_cols * sizeof *scratch);
    slots = malloc((size_t)nslots * slot_bytes);
    slot_chunk = calloc((size_t)nslots, sizeof *slot_chunk);
    slot_bad = calloc((size_t)nslots, sizeof *slot_bad);
    LMP_FAIL_IF(!scratch || !slots || !slot_chunk || !slot_bad, LMP_ERR_NOMEM,
                "%s: out of memory for %d ring slots of %zu bytes", in_path, nslots, slot_bytes);
    {
        cpipe p;
        memset(&p, 0, sizeof p);
        p.tj = tj;
        p.ch = chunks;
        p.nchunks = nch;
        p.nslots = nslots;
        p.slot_bytes = slot_bytes;
        p.slots = slots;
        p.method = o->method;
        p.max_cols = max_cols;
        p.scratch = scratch;
        p.w = w;
        p.in_path = in_path;
        p.o = o;
        p.total_in = total_in;
        p.slot_chunk = slot_chunk;
        p.slot_bad = slot_bad;
        pthread_mutex_init(&p.mu, NULL);
        pthread_cond_init(&p.space, NULL);
        rc = pipe_run(&p, nth, d);
        pthread_cond_destroy(&p.space);
        pthread_mutex_destroy(&p.mu);
        if (rc != LMP_OK) goto out;
    }
    st.n_tensors = n;
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
    free(tj);
    free(chunks);
    free(slots);
    free(slot_chunk);
    free(slot_bad);
    free(scratch);
    free(ex);
    free(descs);
    source_close(&s);
    return rc;
}
