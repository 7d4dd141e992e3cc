/* Bundle folder (manifest.json + chunks) -> lmp_model.
 *
 * The manifest is read with full validation (manifest/manifest.h). Every
 * chunk read goes through lmp_chunk_load_into: size and XXH3 of the
 * compressed bytes are checked BEFORE decompressing, the decompressed size
 * and XXH3 after (hashed block by block as zstd produces it), then the
 * header is parsed and compared with the manifest. Any mismatch is an error
 * naming the chunk (never garbage output). Tensors are attached with
 * lmp_model_bind (runtime/bind.h), the one name -> slot mapping.
 *
 * Resident mode (default): every chunk is decompressed straight into its
 * place in ONE anonymous mapping (the "arena", sized from the manifest's raw
 * sizes, each image 4 KiB aligned, transparent huge pages requested), the
 * chunks in parallel on opts->threads threads (largest first, so two
 * threads finish together). The views point into the images, so the forward
 * pass computes exactly what it computes on the .lmpk the bundle was split
 * from. After a chunk is verified, the thread that loaded it re-orders its
 * int4 codes in place for the AVX-512 kernel when that kernel will read
 * them (lmp_bind_pack, quantize/q4.h LMP_Q4_LAYOUT_X16: same results).
 * Whatever the thread count the bytes are the same and, when chunks are
 * damaged, the error reported is the first damaged chunk in load order
 * (every chunk is attempted).
 *
 * Streaming mode (opts->stream_layers = K > 0): only the head chunk stays
 * resident. Layer weights live in K slots; when the forward pass asks for a
 * layer that is not in a slot (acquire_layer), its chunk is read and
 * verified again into one reused scratch buffer (unless it is the chunk
 * already there), and that layer plus the following ones of the same chunk
 * (up to K) are copied into slots, evicting the oldest (their views become
 * NULL). When K < layers a helper thread reads ahead: while the layers of
 * chunk c are computed it verifies chunk c+1 (wrapping to the first layer
 * chunk) into a second buffer, which is swapped in when the pass gets
 * there; a damaged chunk is reported when (and as) a direct read would. The bytes are the same, so
 * the logits are the same as resident.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/fileio.h"
#include "common/pool.h"
#include "formats/chunk.h"
#include "manifest/manifest.h"
#include "runtime/bind.h"
#include "runtime/model.h"

#define PAGE ((size_t)4096)

/* Streaming read-ahead: a helper thread verifies the next chunk into a
 * second buffer while the forward pass computes the current one. Protocol
 * (under mu): the main thread sets req = chunk, done = 0, go = 1 only when
 * no request is in flight (req < 0 or done); the helper clears go, loads,
 * then sets done = 1. buf, ch, rc, diag belong to the helper while a
 * request is in flight and to the main thread once done is seen. */
typedef struct prefetch {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int req, done, go, quit;
    uint8_t *buf;        /* same size as the owner's scratch */
    lmp_chunk ch;        /* parse of buf when done and rc == LMP_OK */
    lmp_status rc;
    lmp_diag diag;
    struct bundle_owner *o;
} prefetch;

typedef struct bundle_owner {
    char *dir;
    lmp_manifest *man;
    size_t n;            /* chunks parsed into `chunks` */
    lmp_chunk *chunks;   /* resident chunk images (views into the arena) */
    lmp_bind_tensor **descs; /* per resident chunk: its tensors as bound (after
                                lmp_bind_pack re-ordered int4 codes in place) */
    lmp_hugemap arena;   /* the resident chunk images */
    /* streaming */
    lmp_model bindm;     /* cfg + the model's layer array, for lmp_model_bind */
    int n_layers, k;
    int *chunk_of;       /* layer -> manifest chunk index */
    int *slot_of;        /* layer -> slot or -1 */
    int *slot_layer;     /* slot -> layer or -1 */
    uint8_t **slot_buf;  /* K buffers of slot_bytes, 64-byte aligned */
    size_t slot_bytes;
    uint8_t *scratch;    /* one decompressed layer chunk, reused */
    size_t scratch_bytes;
    int scratch_chunk;   /* manifest chunk verified into scratch, or -1 */
    lmp_chunk scratch_ch; /* its parse (views into scratch) */
    prefetch *pf;        /* read-ahead of the next chunk, or NULL */
    int next;            /* FIFO victim */
} bundle_owner;

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static void pf_stop(prefetch *pf);

static void release_bundle(void *p)
{
    bundle_owner *o = p;
    if (!o) return;
    pf_stop(o->pf);
    for (size_t i = 0; i < o->n; i++) lmp_chunk_free(&o->chunks[i]);
    free(o->chunks);
    if (o->descs)
        for (size_t i = 0; i < o->n; i++) free(o->descs[i]);
    free(o->descs);
    lmp_hugemap_close(&o->arena);
    if (o->slot_buf)
        for (int i = 0; i < o->k; i++) free(o->slot_buf[i]);
    free(o->slot_buf);
    lmp_chunk_free(&o->scratch_ch);
    free(o->scratch);
    free(o->chunk_of);
    free(o->slot_of);
    free(o->slot_layer);
    lmp_manifest_free(o->man);
    free(o->dir);
    free(o);
}

/* The manifest's description of chunk c, as lmp_chunk_load_into expects it. */
static void expect_of(const lmp_manifest_chunk *mc, lmp_chunk_expect *e)
{
    e->compressed_size = mc->compressed_size;
    e->raw_size = mc->raw_size;
    memcpy(e->xxh3_compressed, mc->xxh3_compressed, LMP_HASH_HEX);
    memcpy(e->xxh3_raw, mc->xxh3_raw, LMP_HASH_HEX);
}

/* Read and verify manifest chunk c into dst (hash before decompressing,
 * header vs manifest, every tensor in the chunk of its layer). */
static lmp_status load_chunk(const bundle_owner *o, size_t c, uint8_t *dst, size_t cap,
                             lmp_chunk *out, lmp_chunk_times *times, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const lmp_manifest_chunk *mc = &o->man->chunks[c];
    lmp_chunk_expect e;
    expect_of(mc, &e);
    char *path = lmp_path_join(o->dir, mc->file);
    LMP_FAIL_IF(!path, LMP_ERR_NOMEM, "%s: out of memory", o->dir);
    rc = lmp_chunk_load_into(out, path, mc->file, &e, dst, cap, times, d);
    if (rc != LMP_OK) {
        lmp_diag_prefix(d, o->dir);
        goto out;
    }
    int same = out->role == mc->role && out->first_layer == mc->first_layer &&
               out->last_layer == mc->last_layer && out->n_tensors == mc->n_tensors;
    for (size_t i = 0; same && i < out->n_tensors; i++) {
        const lmp_chunk_tensor *a = &out->tensors[i], *b = &mc->tensors[i];
        long l = lmp_bind_layer_of(a->name);
        same = !strcmp(a->name, b->name) && a->kind == b->kind && a->ndim == b->ndim &&
               a->group == b->group && a->scheme == b->scheme && a->offset == b->offset &&
               a->size == b->size && !memcmp(a->shape, b->shape, sizeof a->shape) &&
               (mc->role == LMP_CHUNK_HEAD ? l < 0
                                           : l >= mc->first_layer && l <= mc->last_layer);
    }
    if (!same) {
        lmp_chunk_free(out);
        LMP_FAIL(LMP_ERR_INTEGRITY,
                 "%s: %s: chunk header disagrees with the manifest (or holds a tensor of "
                 "another layer)",
                 o->dir, mc->file);
    }
out:
    free(path);
    return rc;
}

static lmp_bind_tensor bind_desc(const lmp_chunk_tensor *t, const void *data)
{
    lmp_bind_tensor b = {.name = t->name, .kind = t->kind, .ndim = t->ndim,
                         .shape = {t->shape[0], t->ndim > 1 ? t->shape[1] : 0},
                         .group = t->group, .scheme = t->scheme, .data = data,
                         .size = t->size};
    return b;
}

/* The tensors of a verified resident chunk as they will be bound, int4
 * codes re-ordered in place for the AVX-512 kernel where it reads them
 * (lmp_bind_pack): the arena is ours and writable, and the chunk is still
 * in cache from decompressing. NULL when out of memory. */
static lmp_bind_tensor *pack_chunk(const lmp_chunk *ch)
{
    lmp_bind_tensor *b = calloc(ch->n_tensors ? ch->n_tensors : 1, sizeof *b);
    if (!b) return NULL;
    for (size_t i = 0; i < ch->n_tensors; i++) {
        b[i] = bind_desc(&ch->tensors[i], ch->tensors[i].data);
        (void)lmp_bind_pack(&b[i], (void *)(uintptr_t)ch->tensors[i].data);
    }
    return b;
}

/* Bind every tensor of resident chunk c into m. */
static lmp_status bind_chunk(lmp_model *m, const bundle_owner *o, size_t c, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    for (size_t i = 0; i < o->chunks[c].n_tensors; i++)
        LMP_FORWARD(lmp_model_bind(m, &o->descs[c][i], o->dir, d));
out:
    return rc;
}

/* ---------------------------------------------------------- resident load */

typedef struct load_job {
    bundle_owner *o;
    size_t *order;        /* task -> chunk, largest raw image first */
    size_t *off;          /* chunk -> offset in the arena */
    lmp_diag *diags;      /* per chunk */
    lmp_chunk_times *times; /* per chunk */
} load_job;

static void load_one(void *ctx, int task, int tid)
{
    (void)tid;
    load_job *j = ctx;
    size_t c = j->order[task];
    const lmp_manifest_chunk *mc = &j->o->man->chunks[c];
    if (load_chunk(j->o, c, j->o->arena.base + j->off[c], (size_t)mc->raw_size, &j->o->chunks[c],
                   &j->times[c], &j->diags[c]) != LMP_OK)
        return;
    j->o->descs[c] = pack_chunk(&j->o->chunks[c]);
    if (!j->o->descs[c]) lmp_fail(&j->diags[c], LMP_ERR_NOMEM, "%s: out of memory", j->o->dir);
}

/* Reserve one mapping for the raw images of chunks [0, n), each at a 4 KiB
 * boundary (off[c]): lmp_hugemap (huge pages). Pages are touched first by
 * the thread that decompresses into them, so the kernel's zeroing is spread
 * over the threads too. */
static lmp_status map_arena(bundle_owner *o, size_t n, size_t *off, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    size_t total = 0;
    for (size_t c = 0; c < n; c++) {
        uint64_t r = o->man->chunks[c].raw_size;
        LMP_FAIL_IF(r > LMP_CHUNK_RAW_MAX || total + r + PAGE < total, LMP_ERR_NOMEM,
                    "%s: chunk sizes too large", o->dir);
        off[c] = total;
        total += ((size_t)r + PAGE - 1) / PAGE * PAGE;
    }
    LMP_FORWARD(lmp_hugemap_open(&o->arena, total ? total : PAGE, o->dir, d));
out:
    return rc;
}

/* Read and verify chunks [0, n) into the arena on `threads` threads; the
 * first failure in load order is reported. */
static lmp_status load_resident(bundle_owner *o, size_t n, int threads, lmp_load_stats *st,
                                lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_pool *pool = NULL;
    load_job j = {o, NULL, NULL, NULL, NULL};
    j.order = calloc(n, sizeof *j.order);
    j.off = calloc(n, sizeof *j.off);
    j.diags = calloc(n, sizeof *j.diags);
    j.times = calloc(n, sizeof *j.times);
    LMP_FAIL_IF(!j.order || !j.off || !j.diags || !j.times, LMP_ERR_NOMEM, "%s: out of memory",
                o->dir);
    LMP_FORWARD(map_arena(o, n, j.off, d));
    for (size_t i = 0; i < n; i++) {
        lmp_diag_clear(&j.diags[i]);
        j.order[i] = i;
    }
    /* largest first (stable on ties: insertion sort, n is small) */
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && o->man->chunks[j.order[k]].raw_size >
                                        o->man->chunks[j.order[k - 1]].raw_size;
             k--) {
            size_t t = j.order[k];
            j.order[k] = j.order[k - 1];
            j.order[k - 1] = t;
        }
    if (threads <= 0) threads = lmp_cpu_count();
    if ((size_t)threads > n) threads = (int)n;
    if (threads > 1 && lmp_pool_create(&pool, threads, NULL) != LMP_OK) threads = 1;
    if (pool)
        lmp_pool_run(pool, load_one, &j, (int)n);
    else
        for (size_t i = 0; i < n; i++) load_one(&j, (int)i, 0);
    o->n = n; /* failed slots are zeroed: freeing them is a no-op */
    if (st) {
        st->threads = threads;
        st->chunks = n;
        for (size_t i = 0; i < n; i++) {
            st->compressed_bytes += o->man->chunks[i].compressed_size;
            st->raw_bytes += o->man->chunks[i].raw_size;
            st->read_cpu_ms += 1e3 * j.times[i].read_s;
            st->hash_cpu_ms += 1e3 * j.times[i].hash_s;
            st->decompress_cpu_ms += 1e3 * j.times[i].decompress_s;
            st->parse_cpu_ms += 1e3 * j.times[i].parse_s;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (j.diags[i].status != LMP_OK) {
            if (d && d->status == LMP_OK) *d = j.diags[i];
            rc = j.diags[i].status;
            goto out;
        }
out:
    lmp_pool_close(pool);
    free(j.order);
    free(j.off);
    free(j.diags);
    free(j.times);
    return rc;
}

/* ------------------------------------------------------------- streaming */

static void clear_layer(lmp_layer *L)
{
    memset(L, 0, sizeof *L); /* NULL views: a missed acquire faults, never reads stale data */
}

/* Bytes of layer l's tensors in a slot (each at a multiple of 64). */
static size_t layer_bytes(const lmp_manifest_chunk *mc, int l)
{
    size_t n = 0;
    for (size_t i = 0; i < mc->n_tensors; i++)
        if (lmp_bind_layer_of(mc->tensors[i].name) == l) n += (mc->tensors[i].size + 63) / 64 * 64;
    return n;
}

static lmp_status load_chunk(const bundle_owner *o, size_t c, uint8_t *dst, size_t cap,
                             lmp_chunk *out, lmp_chunk_times *times, lmp_diag *d);

static void *pf_main(void *arg)
{
    prefetch *pf = arg;
    pthread_mutex_lock(&pf->mu);
    for (;;) {
        while (!pf->quit && !pf->go) pthread_cond_wait(&pf->cv, &pf->mu);
        if (pf->quit) break;
        pf->go = 0;
        int c = pf->req;
        pthread_mutex_unlock(&pf->mu);
        lmp_chunk_free(&pf->ch);
        lmp_diag_clear(&pf->diag);
        pf->rc = load_chunk(pf->o, (size_t)c, pf->buf, pf->o->scratch_bytes, &pf->ch, NULL,
                            &pf->diag);
        pthread_mutex_lock(&pf->mu);
        pf->done = 1;
        pthread_cond_broadcast(&pf->cv);
    }
    pthread_mutex_unlock(&pf->mu);
    return NULL;
}

/* Start the read-ahead thread; NULL when it cannot (then no read-ahead). */
static prefetch *pf_start(bundle_owner *o)
{
    prefetch *pf = calloc(1, sizeof *pf);
    if (!pf) return NULL;
    pf->o = o;
    pf->req = -1;
    pf->buf = aligned_alloc(64, (o->scratch_bytes + 63) / 64 * 64 + 64);
    if (!pf->buf || pthread_mutex_init(&pf->mu, NULL) != 0) goto fail;
    if (pthread_cond_init(&pf->cv, NULL) != 0) {
        pthread_mutex_destroy(&pf->mu);
        goto fail;
    }
    if (pthread_create(&pf->th, NULL, pf_main, pf) != 0) {
        pthread_cond_destroy(&pf->cv);
        pthread_mutex_destroy(&pf->mu);
        goto fail;
    }
    return pf;
fail:
    free(pf->buf);
    free(pf);
    return NULL;
}

static void pf_stop(prefetch *pf)
{
    if (!pf) return;
    pthread_mutex_lock(&pf->mu);
    pf->quit = 1;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    pthread_join(pf->th, NULL);
    pthread_cond_destroy(&pf->cv);
    pthread_mutex_destroy(&pf->mu);
    lmp_chunk_free(&pf->ch);
    free(pf->buf);
    free(pf);
}

/* Wait until the request in flight (if any) is done. */
static void pf_wait(prefetch *pf)
{
    pthread_mutex_lock(&pf->mu);
    while (pf->req >= 0 && !pf->done) pthread_cond_wait(&pf->cv, &pf->mu);
    pthread_mutex_unlock(&pf->mu);
}

static void pf_request(prefetch *pf, int c)
{
    pthread_mutex_lock(&pf->mu);
    pf->req = c;
    pf->done = 0;
    pf->go = 1;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
}

/* Make manifest chunk c the verified content of the scratch buffer: from
 * the read-ahead when it holds c, else read and verified now. */
static lmp_status scratch_get(bundle_owner *o, int c, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    prefetch *pf = o->pf;
    if (o->scratch_chunk == c) return LMP_OK;
    lmp_chunk_free(&o->scratch_ch);
    o->scratch_chunk = -1;
    if (pf) {
        pf_wait(pf);
        int hit = pf->req == c;
        pf->req = -1;
        if (hit && pf->rc != LMP_OK) {
            /* the same error a read now would give, naming the chunk */
            if (d && d->status == LMP_OK) *d = pf->diag;
            return pf->rc;
        }
        if (hit) {
            uint8_t *b = o->scratch;
            o->scratch = pf->buf;
            pf->buf = b;
            o->scratch_ch = pf->ch;
            memset(&pf->ch, 0, sizeof pf->ch);
            o->scratch_chunk = c;
            return LMP_OK;
        }
    }
    LMP_FORWARD(load_chunk(o, (size_t)c, o->scratch, o->scratch_bytes, &o->scratch_ch, NULL, d));
    o->scratch_chunk = c;
out:
    return rc;
}

static lmp_status acquire_layer(void *owner, int l, lmp_diag *d)
{
    bundle_owner *o = owner;
    lmp_status rc = LMP_OK;
    if (l < 0 || l >= o->n_layers)
        return lmp_fail(d, LMP_ERR_INTERNAL, "%s: layer %d out of range", o->dir, l);
    if (o->slot_of[l] >= 0) return LMP_OK;
    int c = o->chunk_of[l];
    /* The scratch keeps the last chunk verified into it: a chunk whose
     * layers do not all fit in the slots is read and verified once per
     * pass, not once per slot refill. */
    int had = o->scratch_chunk;
    LMP_FORWARD(scratch_get(o, c, d));
    if (o->pf && had != c) {
        /* read ahead the chunk the pass needs next (after the last one, the
         * next pass starts again at chunk 1) */
        int nc = (size_t)c + 1 < o->man->n_chunks ? c + 1 : 1;
        if (nc != c) pf_request(o->pf, nc);
    }
    const lmp_chunk ch = o->scratch_ch;
    int last = ch.last_layer < l + o->k - 1 ? ch.last_layer : l + o->k - 1;
    for (int j = l; j <= last; j++) {
        if (o->slot_of[j] >= 0) continue;
        int s = o->next;
        o->next = (o->next + 1) % o->k;
        if (o->slot_layer[s] >= 0) {
            clear_layer(&o->bindm.layers[o->slot_layer[s]]);
            o->slot_of[o->slot_layer[s]] = -1;
            o->slot_layer[s] = -1;
        }
        /* copy j's tensors into the slot, 64-byte aligned each, and bind */
        size_t at = 0;
        for (size_t i = 0; i < ch.n_tensors; i++) {
            const lmp_chunk_tensor *t = &ch.tensors[i];
            if (lmp_bind_layer_of(t->name) != j) continue;
            LMP_FAIL_IF(at + t->size > o->slot_bytes, LMP_ERR_INTERNAL,
                        "%s: layer %d larger than its slot", o->dir, j);
            lmp_bind_tensor b = bind_desc(t, t->data);
            if (!lmp_bind_pack(&b, o->slot_buf[s] + at)) { /* the copy re-orders int4 codes */
                memcpy(o->slot_buf[s] + at, t->data, (size_t)t->size);
                b.data = o->slot_buf[s] + at;
            }
            rc = lmp_model_bind(&o->bindm, &b, o->dir, d);
            if (rc != LMP_OK) {
                clear_layer(&o->bindm.layers[j]);
                goto out;
            }
            at += (size_t)(t->size + 63) / 64 * 64;
        }
        o->slot_of[j] = s;
        o->slot_layer[s] = j;
    }
out:
    return rc;
}

/* Streaming setup: slots, scratch buffer, layer -> chunk map; the layer
 * tensors' names and shapes are checked up front by binding the manifest's
 * descriptions (placeholder data, never read) into a copy of the model. */
static lmp_status setup_stream(lmp_model *m, bundle_owner *o, int k, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_model chk = *m;
    chk.layers = NULL;
    int L = m->cfg.n_layers;
    o->bindm.cfg = m->cfg;
    o->bindm.layers = m->layers;
    o->n_layers = L;
    o->k = k < L ? k : L;
    o->chunk_of = calloc((size_t)L, sizeof *o->chunk_of);
    o->slot_of = calloc((size_t)L, sizeof *o->slot_of);
    o->slot_layer = calloc((size_t)o->k, sizeof *o->slot_layer);
    o->slot_buf = calloc((size_t)o->k, sizeof *o->slot_buf);
    chk.layers = calloc((size_t)L, sizeof *chk.layers);
    LMP_FAIL_IF(!o->chunk_of || !o->slot_of || !o->slot_layer || !o->slot_buf || !chk.layers,
                LMP_ERR_NOMEM, "%s: out of memory", o->dir);
    static const uint8_t placeholder[64] __attribute__((aligned(64)));
    for (size_t c = 1; c < o->man->n_chunks; c++) {
        const lmp_manifest_chunk *mc = &o->man->chunks[c];
        if (mc->raw_size > o->scratch_bytes) o->scratch_bytes = (size_t)mc->raw_size;
        for (int l = mc->first_layer; l <= mc->last_layer && l < L; l++) {
            o->chunk_of[l] = (int)c;
            size_t b = layer_bytes(mc, l);
            if (b > o->slot_bytes) o->slot_bytes = b;
        }
        for (size_t i = 0; i < mc->n_tensors; i++) {
            const lmp_chunk_tensor *t = &mc->tensors[i];
            long l = lmp_bind_layer_of(t->name);
            LMP_FAIL_IF(l < mc->first_layer || l > mc->last_layer, LMP_ERR_MODEL,
                        "%s: %s: tensor '%s' does not belong in this chunk", o->dir, mc->file,
                        t->name);
            lmp_bind_tensor b = bind_desc(t, placeholder);
            LMP_FORWARD(lmp_model_bind(&chk, &b, o->dir, d));
        }
    }
    LMP_FORWARD(lmp_model_check(&chk, o->dir, d));
    for (int l = 0; l < L; l++) o->slot_of[l] = -1;
    o->scratch_chunk = -1;
    for (int s = 0; s < o->k; s++) {
        o->slot_layer[s] = -1;
        o->slot_buf[s] = aligned_alloc(64, o->slot_bytes ? (o->slot_bytes + 63) / 64 * 64 : 64);
        LMP_FAIL_IF(!o->slot_buf[s], LMP_ERR_NOMEM, "%s: out of memory for layer slots", o->dir);
    }
    o->scratch = aligned_alloc(64, (o->scratch_bytes + 63) / 64 * 64 + 64);
    LMP_FAIL_IF(!o->scratch, LMP_ERR_NOMEM, "%s: out of memory for a chunk buffer", o->dir);
    /* Read-ahead only when layers really are re-read (K < layers) and there
     * is more than one layer chunk; it is an optimisation: without a thread
     * the loads simply happen in acquire_layer. */
    if (o->k < L && o->man->n_chunks > 2) o->pf = pf_start(o);
out:
    free(chk.layers);
    return rc;
}

/* ------------------------------------------------------------------ open */

lmp_status lmp_model_load_bundle(lmp_model *m, const char *dir, const lmp_model_opts *opts,
                                 lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    bundle_owner *own = NULL;
    int k = opts ? opts->stream_layers : 0;
    lmp_load_stats *st = opts ? opts->stats : NULL;
    double t0 = wall_ms(), c0 = cpu_ms(), t1 = t0;
    memset(m, 0, sizeof *m);
    if (st) memset(st, 0, sizeof *st);
    LMP_FAIL_IF(opts && opts->flags, LMP_ERR_ARG, "%s: unknown model option flags 0x%x", dir,
                opts->flags);
    LMP_FAIL_IF(k < 0, LMP_ERR_ARG, "%s: stream_layers %d must be >= 0", dir, k);
    own = calloc(1, sizeof *own);
    LMP_FAIL_IF(!own, LMP_ERR_NOMEM, "%s: out of memory", dir);
    own->dir = strdup(dir);
    LMP_FAIL_IF(!own->dir, LMP_ERR_NOMEM, "%s: out of memory", dir);
    rc = lmp_manifest_load(&own->man, dir, d);
    if (rc != LMP_OK) {
        lmp_diag_prefix(d, dir);
        goto out;
    }
    const lmp_manifest *man = own->man;
    rc = lmp_config_parse(&m->cfg, man->config_json, strlen(man->config_json),
                          "manifest.json config", d);
    if (rc != LMP_OK) {
        lmp_diag_prefix(d, dir);
        goto out;
    }
    LMP_FAIL_IF(m->cfg.n_layers != man->n_layers || man->n_chunks < 1, LMP_ERR_INTERNAL,
                "%s: layer count mismatch", dir);
    if (st) t1 = wall_ms(), st->manifest_ms = t1 - t0;
    size_t resident = k > 0 ? 1 : man->n_chunks; /* streaming: only the head chunk */
    own->chunks = calloc(resident, sizeof *own->chunks);
    own->descs = calloc(resident, sizeof *own->descs);
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    LMP_FAIL_IF(!own->chunks || !own->descs || !m->layers, LMP_ERR_NOMEM, "%s: out of memory",
                dir);
    LMP_FORWARD(load_resident(own, resident, opts ? opts->threads : 0, st, d));
    double t2 = st ? wall_ms() : 0;
    if (st) st->chunks_ms = t2 - t1;
    for (size_t c = 0; c < resident; c++) LMP_FORWARD(bind_chunk(m, own, c, d));
    if (k > 0) LMP_FORWARD(setup_stream(m, own, k, d));
    static const char *const kinds[] = {"f32", "f16", "bf16", "q4", "q8"};
    const lmp_manifest_chunk *c1 = &man->chunks[man->n_chunks > 1 ? 1 : 0];
    int kind = c1->n_tensors ? c1->tensors[0].kind : 0;
    for (size_t i = 0; i < c1->n_tensors; i++)
        if (c1->tensors[i].ndim == 2) {
            kind = c1->tensors[i].kind;
            break;
        }
    snprintf(m->source, sizeof m->source, "bundle-%s%s", kind >= 0 && kind <= 4 ? kinds[kind] : "?",
             k > 0 ? "-stream" : "");
    /* streaming binds the layer views only when a layer is acquired */
    for (size_t c = 0; c < man->n_chunks; c++)
        for (size_t i = 0; i < man->chunks[c].n_tensors; i++)
            m->quantized |= lmp_mat_kind_quantized(man->chunks[c].tensors[i].kind);
    m->release = release_bundle;
    m->owner = own;
    own = NULL;
    if (k > 0)
        m->acquire_layer = acquire_layer;
    else
        LMP_FORWARD(lmp_model_check(m, dir, d));
    if (st) {
        double t3 = wall_ms();
        st->bind_ms = t3 - t2;
        st->total_ms = t3 - t0;
        st->cpu_ms = cpu_ms() - c0;
    }
out:
    if (rc != LMP_OK) {
        if (m->owner || m->layers) lmp_model_close(m);
        memset(m, 0, sizeof *m);
    }
    release_bundle(own);
    return rc;
}
