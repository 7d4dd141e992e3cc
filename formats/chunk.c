/* Chunk encoder/reader; the format is documented in formats/chunk.h and
 * docs/BUNDLE.md. */
#include "formats/chunk.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
/* The block-by-block ("buffer-less") decoder, ZSTD_decompressContinue, is in
 * zstd's static-linking section; libzstd exports it (Debian 1.5.x) and the
 * browser build compiles zstd's decoder from source, which defines it too. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "common/fileio.h"
#include "formats/lmpk.h"
#include "runtime/mat.h"

static const char *const kind_names[] = {"f32", "f16", "bf16", "q4", "q8"};
#define N_KINDS 5

const char *lmp_chunk_kind_name(int kind)
{
    return kind >= 0 && kind < N_KINDS ? kind_names[kind] : NULL;
}

int lmp_chunk_kind_from_name(const char *s)
{
    for (int i = 0; i < N_KINDS; i++)
        if (s && !strcmp(s, kind_names[i])) return i;
    return -1;
}

uint64_t lmp_chunk_tensor_bytes(int kind, int ndim, const int64_t *shape, int group, int scheme)
{
    /* the container's rule, so chunks and .lmpk agree byte for byte */
    if (kind < LMP_MAT_F32 || kind > LMP_MAT_Q8 || ndim < 1 || ndim > LMP_CHUNK_MAX_DIMS) return 0;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 1 || shape[i] > ((int64_t)1 << 40)) return 0;
    uint64_t rb = 0;
    return lmp_lmpk_tensor_bytes((lmp_mat_kind)kind, ndim, shape, group, scheme, &rb, "chunk",
                                 NULL);
}

/* Is `size` right for this tensor? */
static int chunk_size_ok(const lmp_chunk_tensor *t)
{
    uint64_t want = lmp_chunk_tensor_bytes(t->kind, t->ndim, t->shape, t->group, t->scheme);
    return want != 0 && want == t->size;
}

static void hash_to_hex(XXH128_hash_t h, char out[LMP_HASH_HEX])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hx[c.digest[i] >> 4];
        out[2 * i + 1] = hx[c.digest[i] & 15];
    }
    out[32] = '\0';
}

void lmp_hash_hex(const void *buf, size_t n, char out[LMP_HASH_HEX])
{
    hash_to_hex(XXH3_128bits(buf, n), out);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

static uint64_t entry_bytes(size_t name_len)
{
    return LMP_CHUNK_ENTRY + align_up(name_len, 8);
}

/* 64-byte aligned buffer of n bytes (n may be 0), zeroed if asked (the
 * encoder relies on zero padding; decompression writes every byte). */
static uint8_t *alloc_aligned(size_t n, int zero)
{
    size_t m = (size_t)align_up(n ? n : 1, 64);
    if (m < n) return NULL;
    uint8_t *p = aligned_alloc(64, m);
    if (p && zero) memset(p, 0, m);
    return p;
}

static int name_ok(const char *s, size_t n)
{
    if (n < 1 || n > LMP_CHUNK_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return 0;
    return 1;
}

lmp_status lmp_chunk_encode(int role, int first_layer, int last_layer,
                            const lmp_chunk_tensor *tensors, size_t n, const char *meta,
                            size_t meta_size, uint8_t **out, size_t *out_size, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    uint8_t *buf = NULL;
    *out = NULL;
    *out_size = 0;
    LMP_FAIL_IF(role != LMP_CHUNK_HEAD && role != LMP_CHUNK_LAYERS, LMP_ERR_ARG,
                "chunk: role %d invalid", role);
    LMP_FAIL_IF(role == LMP_CHUNK_LAYERS && (first_layer < 0 || last_layer < first_layer),
                LMP_ERR_ARG, "chunk: layer range [%d,%d] invalid", first_layer, last_layer);
    LMP_FAIL_IF(n < 1 || n > LMP_CHUNK_MAX_TENSORS, LMP_ERR_ARG,
                "chunk: %zu tensors (must be 1..%u)", n, LMP_CHUNK_MAX_TENSORS);
    uint64_t table = 0, data = 0;
    for (size_t i = 0; i < n; i++) {
        const lmp_chunk_tensor *t = &tensors[i];
        size_t nl = strnlen(t->name, sizeof t->name);
        LMP_FAIL_IF(!name_ok(t->name, nl), LMP_ERR_ARG, "chunk: tensor %zu: bad name", i);
        LMP_FAIL_IF(!chunk_size_ok(t), LMP_ERR_ARG,
                    "chunk: tensor '%s': size %llu does not fit kind/shape", t->name,
                    (unsigned long long)t->size);
        table += entry_bytes(nl);
        data = align_up(data, LMP_CHUNK_ALIGN) + t->size;
    }
    if (role == LMP_CHUNK_HEAD) first_layer = last_layer = 0;
    uint64_t data_off = align_up(LMP_CHUNK_HEADER + table + meta_size, LMP_CHUNK_ALIGN);
    uint64_t total = data_off + data;
    LMP_FAIL_IF(total > SIZE_MAX / 2, LMP_ERR_NOMEM, "chunk: %llu bytes too large",
                (unsigned long long)total);
    buf = alloc_aligned((size_t)total, 1);
    LMP_FAIL_IF(!buf, LMP_ERR_NOMEM, "chunk: out of memory for %llu bytes",
                (unsigned long long)total);
    memcpy(buf, LMP_CHUNK_MAGIC, 8);
    put32(buf + 8, LMP_CHUNK_VERSION);
    put32(buf + 12, (uint32_t)role);
    put32(buf + 16, (uint32_t)first_layer);
    put32(buf + 20, (uint32_t)last_layer);
    put32(buf + 24, (uint32_t)n);
    put32(buf + 28, LMP_CHUNK_ALIGN);
    put64(buf + 32, table);
    put64(buf + 40, meta_size);
    put64(buf + 48, data_off);
    put64(buf + 56, data);
    uint8_t *e = buf + LMP_CHUNK_HEADER;
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const lmp_chunk_tensor *t = &tensors[i];
        size_t nl = strlen(t->name);
        off = align_up(off, LMP_CHUNK_ALIGN);
        put32(e, (uint32_t)nl);
        put32(e + 4, (uint32_t)t->kind);
        put32(e + 8, (uint32_t)t->ndim);
        put32(e + 12, (uint32_t)t->group);
        put32(e + 16, (uint32_t)t->scheme);
        for (int k = 0; k < LMP_CHUNK_MAX_DIMS; k++)
            put64(e + 24 + 8 * k, k < t->ndim ? (uint64_t)t->shape[k] : 0);
        put64(e + 56, off);
        put64(e + 64, t->size);
        memcpy(e + LMP_CHUNK_ENTRY, t->name, nl);
        e += entry_bytes(nl);
        if (t->size) memcpy(buf + data_off + off, t->data, (size_t)t->size);
        off += t->size;
    }
    if (meta_size) memcpy(buf + LMP_CHUNK_HEADER + table, meta, meta_size);
    *out = buf;
    *out_size = (size_t)total;
    buf = NULL;
out:
    free(buf);
    return rc;
}

lmp_status lmp_chunk_compress(const uint8_t *raw, size_t n, int level, uint8_t **out,
                              size_t *out_size, lmp_diag *d)
{
    return lmp_chunk_compress_opts(raw, n, level, 0, out, out_size, d);
}

lmp_status lmp_chunk_compress_opts(const uint8_t *raw, size_t n, int level, int raw_literals,
                                   uint8_t **out, size_t *out_size, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    ZSTD_CCtx *cc = NULL;
    uint8_t *buf = NULL;
    *out = NULL;
    *out_size = 0;
    LMP_FAIL_IF(level < 1 || level > ZSTD_maxCLevel(), LMP_ERR_ARG,
                "zstd level %d outside 1..%d", level, ZSTD_maxCLevel());
    size_t cap = ZSTD_compressBound(n);
    buf = malloc(cap);
    cc = ZSTD_createCCtx();
    LMP_FAIL_IF(!buf || !cc, LMP_ERR_NOMEM, "out of memory compressing %zu bytes", n);
    /* Explicit parameters: one thread, content size on, no checksum (the
     * manifest's XXH3 covers it), so output depends on bytes + level only. */
    size_t r = ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 1);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 0);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cc, ZSTD_c_nbWorkers, 0);
    if (!ZSTD_isError(r) && raw_literals)
        r = ZSTD_CCtx_setParameter(cc, ZSTD_c_literalCompressionMode, ZSTD_ps_disable);
    if (!ZSTD_isError(r)) r = ZSTD_compress2(cc, buf, cap, raw, n);
    LMP_FAIL_IF(ZSTD_isError(r), LMP_ERR_INTERNAL, "zstd compression failed: %s",
                ZSTD_getErrorName(r));
    *out = buf;
    *out_size = r;
    buf = NULL;
out:
    ZSTD_freeCCtx(cc);
    free(buf);
    return rc;
}

/* z[0, zn) must be exactly one zstd frame recording its content size *cs;
 * expect_raw (unless UINT64_MAX) must equal it, else it must be possible
 * for zn compressed bytes and <= max_raw. */
static lmp_status frame_check(const uint8_t *z, size_t zn, uint64_t expect_raw, uint64_t max_raw,
                              unsigned long long *cs_out, const char *fname, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    size_t fsz = ZSTD_findFrameCompressedSize(z, zn);
    LMP_FAIL_IF(ZSTD_isError(fsz), LMP_ERR_FORMAT, "%s: not a zstd frame (%s)", fname,
                ZSTD_getErrorName(fsz));
    LMP_FAIL_IF(fsz != zn, LMP_ERR_FORMAT,
                "%s: %zu bytes after the zstd frame (a chunk is exactly one frame)", fname,
                zn - fsz);
    unsigned long long cs = ZSTD_getFrameContentSize(z, zn);
    LMP_FAIL_IF(cs == ZSTD_CONTENTSIZE_UNKNOWN || cs == ZSTD_CONTENTSIZE_ERROR, LMP_ERR_FORMAT,
                "%s: zstd frame header does not record the content size", fname);
    if (expect_raw != UINT64_MAX) {
        LMP_FAIL_IF(cs != expect_raw, LMP_ERR_INTEGRITY,
                    "%s: raw size mismatch (frame says %llu bytes, manifest %llu)", fname, cs,
                    (unsigned long long)expect_raw);
    } else {
        /* A zstd block yields at most 128 KiB from at least 4 input bytes
         * (RLE), so a claim beyond that is a lie; do not allocate for it. */
        uint64_t bound = ((uint64_t)zn / 4 + 1) * (128u << 10);
        LMP_FAIL_IF(cs > bound || cs > max_raw, LMP_ERR_FORMAT,
                    "%s: content size %llu impossible for %zu compressed bytes (or above %llu)",
                    fname, cs, zn, (unsigned long long)max_raw);
    }
    *cs_out = cs;
out:
    return rc;
}

lmp_status lmp_chunk_decompress(const uint8_t *z, size_t zn, uint64_t expect_raw,
                                uint64_t max_raw, uint8_t **out, size_t *out_size,
                                const char *fname, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    uint8_t *buf = NULL;
    *out = NULL;
    *out_size = 0;
    unsigned long long cs = 0;
    LMP_FORWARD(frame_check(z, zn, expect_raw, max_raw, &cs, fname, d));
    LMP_FAIL_IF(cs > SIZE_MAX / 2, LMP_ERR_NOMEM, "%s: content size %llu too large", fname, cs);
    buf = alloc_aligned((size_t)cs, 0);
    LMP_FAIL_IF(!buf, LMP_ERR_NOMEM, "%s: out of memory for %llu bytes", fname, cs);
    size_t r = ZSTD_decompress(buf, (size_t)cs, z, zn);
    LMP_FAIL_IF(ZSTD_isError(r), LMP_ERR_FORMAT, "%s: zstd decompression failed: %s", fname,
                ZSTD_getErrorName(r));
    LMP_FAIL_IF(r != cs, LMP_ERR_FORMAT, "%s: frame decompressed to %zu bytes, header says %llu",
                fname, r, cs);
    *out = buf;
    *out_size = (size_t)cs;
    buf = NULL;
out:
    free(buf);
    return rc;
}

static int all_zero(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static int cmp_names(const void *a, const void *b)
{
    const lmp_chunk_tensor *x = *(const lmp_chunk_tensor *const *)a;
    const lmp_chunk_tensor *y = *(const lmp_chunk_tensor *const *)b;
    return strcmp(x->name, y->name);
}

lmp_status lmp_chunk_parse(lmp_chunk *c, const uint8_t *raw, size_t n, const char *fname,
                           lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_chunk_tensor **sorted = NULL;
    memset(c, 0, sizeof *c);
    LMP_FAIL_IF(n < LMP_CHUNK_HEADER, LMP_ERR_FORMAT,
                "%s: %zu bytes, shorter than the 64-byte chunk header", fname, n);
    LMP_FAIL_IF(memcmp(raw, LMP_CHUNK_MAGIC, 8) != 0, LMP_ERR_FORMAT,
                "%s: bad magic (not an lmpack chunk)", fname);
    uint32_t ver = get32(raw + 8), role = get32(raw + 12), first = get32(raw + 16),
             last = get32(raw + 20), nt = get32(raw + 24), align = get32(raw + 28);
    uint64_t table = get64(raw + 32), meta = get64(raw + 40), doff = get64(raw + 48),
             dsize = get64(raw + 56);
    LMP_FAIL_IF(ver != LMP_CHUNK_VERSION, LMP_ERR_UNSUPPORTED,
                "%s: chunk version %u (this lmpack reads %u)", fname, ver, LMP_CHUNK_VERSION);
    LMP_FAIL_IF(role > LMP_CHUNK_LAYERS, LMP_ERR_FORMAT, "%s: role %u invalid", fname, role);
    LMP_FAIL_IF(role == LMP_CHUNK_HEAD && (first || last), LMP_ERR_FORMAT,
                "%s: head chunk with layer range [%u,%u] (must be 0,0)", fname, first, last);
    LMP_FAIL_IF(role == LMP_CHUNK_LAYERS && (first > last || last > 1000000), LMP_ERR_FORMAT,
                "%s: layer range [%u,%u] invalid", fname, first, last);
    LMP_FAIL_IF(nt < 1 || nt > LMP_CHUNK_MAX_TENSORS, LMP_ERR_FORMAT,
                "%s: tensor count %u outside 1..%u", fname, nt, LMP_CHUNK_MAX_TENSORS);
    LMP_FAIL_IF(align < 8 || align > 4096 || (align & (align - 1)), LMP_ERR_FORMAT,
                "%s: alignment %u not a power of two in 8..4096", fname, align);
    LMP_FAIL_IF(table > n || meta > n || LMP_CHUNK_HEADER + table + meta > n, LMP_ERR_FORMAT,
                "%s: table (%llu bytes) and metadata (%llu bytes) exceed the %zu-byte chunk",
                fname, (unsigned long long)table, (unsigned long long)meta, n);
    LMP_FAIL_IF((uint64_t)nt * LMP_CHUNK_ENTRY > table, LMP_ERR_FORMAT,
                "%s: table of %llu bytes cannot hold %u entries", fname,
                (unsigned long long)table, nt);
    LMP_FAIL_IF(doff != align_up(LMP_CHUNK_HEADER + table + meta, align), LMP_ERR_FORMAT,
                "%s: data offset %llu (must be %llu)", fname, (unsigned long long)doff,
                (unsigned long long)align_up(LMP_CHUNK_HEADER + table + meta, align));
    LMP_FAIL_IF(doff > n || dsize != n - doff, LMP_ERR_FORMAT,
                "%s: data area [%llu, +%llu) does not end the %zu-byte chunk", fname,
                (unsigned long long)doff, (unsigned long long)dsize, n);
    c->tensors = calloc(nt, sizeof *c->tensors);
    sorted = calloc(nt, sizeof *sorted);
    LMP_FAIL_IF(!c->tensors || !sorted, LMP_ERR_NOMEM, "%s: out of memory", fname);
    const uint8_t *e = raw + LMP_CHUNK_HEADER, *tend = raw + LMP_CHUNK_HEADER + table;
    uint64_t expect_off = 0;
    for (uint32_t i = 0; i < nt; i++) {
        lmp_chunk_tensor *t = &c->tensors[i];
        LMP_FAIL_IF((uint64_t)(tend - e) < LMP_CHUNK_ENTRY, LMP_ERR_FORMAT,
                    "%s: tensor entry %u runs past the table", fname, i);
        uint32_t nl = get32(e);
        LMP_FAIL_IF(nl < 1 || nl > LMP_CHUNK_NAME_MAX || entry_bytes(nl) > (uint64_t)(tend - e),
                    LMP_ERR_FORMAT, "%s: tensor entry %u: name length %u invalid", fname, i, nl);
        LMP_FAIL_IF(!name_ok((const char *)e + LMP_CHUNK_ENTRY, nl), LMP_ERR_FORMAT,
                    "%s: tensor entry %u: name is not printable ASCII", fname, i);
        memcpy(t->name, e + LMP_CHUNK_ENTRY, nl);
        t->name[nl] = '\0';
        LMP_FAIL_IF(!all_zero(e + LMP_CHUNK_ENTRY + nl, entry_bytes(nl) - LMP_CHUNK_ENTRY - nl),
                    LMP_ERR_FORMAT, "%s: tensor '%s': nonzero name padding", fname, t->name);
        uint32_t kind = get32(e + 4), ndim = get32(e + 8), group = get32(e + 12),
                 scheme = get32(e + 16);
        LMP_FAIL_IF(kind >= N_KINDS,
                    LMP_ERR_FORMAT, "%s: tensor '%s': kind %u unknown", fname, t->name, kind);
        LMP_FAIL_IF(ndim < 1 || ndim > LMP_CHUNK_MAX_DIMS, LMP_ERR_FORMAT,
                    "%s: tensor '%s': ndim %u outside 1..4", fname, t->name, ndim);
        LMP_FAIL_IF(group > (1u << 20) || scheme > 255 || get32(e + 20) != 0, LMP_ERR_FORMAT,
                    "%s: tensor '%s': group %u / scheme %u / reserved field invalid", fname,
                    t->name, group, scheme);
        t->kind = (int)kind;
        t->ndim = (int)ndim;
        t->group = (int)group;
        t->scheme = (int)scheme;
        for (uint32_t k = 0; k < LMP_CHUNK_MAX_DIMS; k++) {
            uint64_t v = get64(e + 24 + 8 * k);
            LMP_FAIL_IF(k < ndim ? (v < 1 || v > ((uint64_t)1 << 40)) : v != 0, LMP_ERR_FORMAT,
                        "%s: tensor '%s': dimension %u is %llu", fname, t->name, k,
                        (unsigned long long)v);
            t->shape[k] = (int64_t)v;
        }
        t->offset = get64(e + 56);
        t->size = get64(e + 64);
        LMP_FAIL_IF(t->kind < LMP_MAT_Q4 && (t->group || t->scheme), LMP_ERR_FORMAT,
                    "%s: tensor '%s': group/scheme set on a float tensor", fname, t->name);
        LMP_FAIL_IF(!chunk_size_ok(t), LMP_ERR_FORMAT,
                    "%s: tensor '%s': size %llu does not match its kind and shape", fname,
                    t->name, (unsigned long long)t->size);
        expect_off = align_up(expect_off, align);
        LMP_FAIL_IF(t->offset != expect_off, LMP_ERR_FORMAT,
                    "%s: tensor '%s': offset %llu (must be %llu)", fname, t->name,
                    (unsigned long long)t->offset, (unsigned long long)expect_off);
        LMP_FAIL_IF(t->size > dsize || t->offset > dsize - t->size, LMP_ERR_FORMAT,
                    "%s: tensor '%s': [%llu, +%llu) exceeds the %llu-byte data area", fname,
                    t->name, (unsigned long long)t->offset, (unsigned long long)t->size,
                    (unsigned long long)dsize);
        if (i > 0) {
            uint64_t prev_end = c->tensors[i - 1].offset + c->tensors[i - 1].size;
            LMP_FAIL_IF(!all_zero(raw + doff + prev_end, t->offset - prev_end), LMP_ERR_FORMAT,
                        "%s: nonzero padding before tensor '%s'", fname, t->name);
        }
        t->data = raw + doff + t->offset;
        expect_off = t->offset + t->size;
        sorted[i] = t;
        e += entry_bytes(nl);
    }
    LMP_FAIL_IF(e != tend, LMP_ERR_FORMAT, "%s: %td bytes after the last table entry", fname,
                tend - e);
    LMP_FAIL_IF(expect_off != dsize, LMP_ERR_FORMAT,
                "%s: data area is %llu bytes but tensors end at %llu", fname,
                (unsigned long long)dsize, (unsigned long long)expect_off);
    LMP_FAIL_IF(!all_zero(tend + meta, doff - (LMP_CHUNK_HEADER + table + meta)), LMP_ERR_FORMAT,
                "%s: nonzero padding before the data area", fname);
    if (meta) {
        LMP_FAIL_IF(memchr(tend, 0, meta) != NULL, LMP_ERR_FORMAT,
                    "%s: metadata contains a NUL byte", fname);
        cJSON *mj = cJSON_ParseWithLength((const char *)tend, meta);
        int obj = cJSON_IsObject(mj);
        cJSON_Delete(mj);
        LMP_FAIL_IF(!obj, LMP_ERR_FORMAT, "%s: metadata is not a JSON object", fname);
    }
    qsort(sorted, nt, sizeof *sorted, cmp_names);
    for (uint32_t i = 1; i < nt; i++)
        LMP_FAIL_IF(!strcmp(sorted[i - 1]->name, sorted[i]->name), LMP_ERR_FORMAT,
                    "%s: tensor '%s' listed twice", fname, sorted[i]->name);
    c->role = (int)role;
    c->first_layer = (int)first;
    c->last_layer = (int)last;
    c->n_tensors = nt;
    c->meta = meta ? (const char *)tend : NULL;
    c->meta_size = (size_t)meta;
    c->raw = raw;
    c->raw_size = n;
out:
    free(sorted);
    if (rc != LMP_OK) {
        free(c->tensors);
        memset(c, 0, sizeof *c);
    }
    return rc;
}

void lmp_chunk_free(lmp_chunk *c)
{
    if (!c) return;
    free(c->tensors);
    free(c->owned);
    memset(c, 0, sizeof *c);
}

/* A computed hash against the manifest's: mismatch is LMP_ERR_INTEGRITY
 * "<fname>: xxh3 mismatch (<which>)"; an expected "" learns the hash. */
static lmp_status check_hash(const char *got, char want[LMP_HASH_HEX], const char *which,
                             const char *fname, lmp_diag *d)
{
    if (!want[0]) {
        memcpy(want, got, LMP_HASH_HEX);
        return LMP_OK;
    }
    if (strcmp(got, want) != 0)
        return lmp_fail(d, LMP_ERR_INTEGRITY, "%s: xxh3 mismatch (%s)", fname, which);
    return LMP_OK;
}

lmp_status lmp_chunk_load_mem(lmp_chunk *c, const uint8_t *z, size_t zn, const char *fname,
                              lmp_chunk_expect *e, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    uint8_t *raw = NULL;
    size_t rn = 0;
    char h[LMP_HASH_HEX];
    memset(c, 0, sizeof *c);
    LMP_FAIL_IF(e->compressed_size != UINT64_MAX && zn != e->compressed_size, LMP_ERR_INTEGRITY,
                "%s: size mismatch (%zu bytes, manifest says %llu)", fname, zn,
                (unsigned long long)e->compressed_size);
    /* The compressed hash is checked before a single byte is decompressed. */
    lmp_hash_hex(z, zn, h);
    LMP_FORWARD(check_hash(h, e->xxh3_compressed, "compressed", fname, d));
    rc = lmp_chunk_decompress(z, zn, e->raw_size, LMP_CHUNK_RAW_MAX, &raw, &rn, fname, d);
    if (rc != LMP_OK) goto out;
    lmp_hash_hex(raw, rn, h);
    LMP_FORWARD(check_hash(h, e->xxh3_raw, "raw", fname, d));
    e->raw_size = rn;
    e->compressed_size = zn;
    LMP_FORWARD(lmp_chunk_parse(c, raw, rn, fname, d));
    c->owned = raw;
    raw = NULL;
out:
    free(raw);
    return rc;
}

/* Thread CPU seconds (phase timings of lmp_chunk_load_into). */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

lmp_status lmp_chunk_decompress_hashed(const uint8_t *z, size_t zn, uint8_t *dst, size_t raw,
                                       char raw_hex[LMP_HASH_HEX], const char *fname,
                                       lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    ZSTD_DCtx *dc = NULL;
    XXH3_state_t *hs = NULL;
    unsigned long long cs = 0;
    LMP_FORWARD(frame_check(z, zn, raw, raw, &cs, fname, d));
    dc = ZSTD_createDCtx();
    hs = XXH3_createState();
    LMP_FAIL_IF(!dc || !hs || XXH3_128bits_reset(hs) != XXH_OK, LMP_ERR_NOMEM,
                "%s: out of memory", fname);
    size_t r = ZSTD_decompressBegin(dc);
    LMP_FAIL_IF(ZSTD_isError(r), LMP_ERR_INTERNAL, "%s: zstd: %s", fname, ZSTD_getErrorName(r));
    /* Each call decodes one block (<= 128 KiB) straight into its final place
     * (earlier output serves as the match window), and the block is hashed
     * while it is still in cache: one pass over the raw bytes, no copy. */
    size_t ip = 0, op = 0;
    for (;;) {
        size_t need = ZSTD_nextSrcSizeToDecompress(dc);
        if (need == 0) break;
        LMP_FAIL_IF(need > zn - ip, LMP_ERR_FORMAT, "%s: zstd frame truncated", fname);
        r = ZSTD_decompressContinue(dc, dst + op, raw - op, z + ip, need);
        LMP_FAIL_IF(ZSTD_isError(r), LMP_ERR_FORMAT, "%s: zstd decompression failed: %s",
                    fname, ZSTD_getErrorName(r));
        if (r) XXH3_128bits_update(hs, dst + op, r);
        ip += need;
        op += r;
    }
    LMP_FAIL_IF(op != raw || ip != zn, LMP_ERR_FORMAT,
                "%s: frame decompressed to %zu bytes, header says %llu", fname, op, cs);
    hash_to_hex(XXH3_128bits_digest(hs), raw_hex);
out:
    XXH3_freeState(hs);
    ZSTD_freeDCtx(dc);
    return rc;
}

lmp_status lmp_chunk_load_into(lmp_chunk *c, const char *path, const char *fname,
                               lmp_chunk_expect *e, uint8_t *dst, size_t cap,
                               lmp_chunk_times *times, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    int fd = -1;
    void *map = MAP_FAILED;
    size_t zn = 0;
    char h[LMP_HASH_HEX];
    double t0 = times ? thread_cpu_s() : 0, t1 = t0;
    memset(c, 0, sizeof *c);
    LMP_FAIL_IF(e->raw_size == UINT64_MAX || e->raw_size > cap || ((uintptr_t)dst & 63),
                LMP_ERR_ARG, "%s: raw size %llu unknown or above the %zu-byte buffer (or buffer "
                "not 64-byte aligned)", fname, (unsigned long long)e->raw_size, cap);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    LMP_FAIL_IF(fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode), LMP_ERR_INTEGRITY,
                "%s: missing or unreadable (%s: not a readable file)", fname, path);
    zn = (size_t)st.st_size;
    /* size first: a truncated or grown file is refused before any read */
    LMP_FAIL_IF(e->compressed_size != UINT64_MAX && (uint64_t)st.st_size != e->compressed_size,
                LMP_ERR_INTEGRITY, "%s: size mismatch (%zu bytes, manifest says %llu)", fname,
                zn, (unsigned long long)e->compressed_size);
    static const uint8_t empty[1];
    const uint8_t *z = empty;
    if (zn) {
        /* MAP_POPULATE: the page-cache pages are mapped in one call instead
         * of one fault per 64 KiB while hashing */
        map = mmap(NULL, zn, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        LMP_FAIL_IF(map == MAP_FAILED, LMP_ERR_INTEGRITY, "%s: missing or unreadable (%s: mmap failed)",
                    fname, path);
        z = map;
    }
    if (times) t1 = thread_cpu_s(), times->read_s += t1 - t0, t0 = t1;
    /* The compressed hash is checked before a single byte is decompressed. */
    lmp_hash_hex(z, zn, h);
    LMP_FORWARD(check_hash(h, e->xxh3_compressed, "compressed", fname, d));
    if (times) t1 = thread_cpu_s(), times->hash_s += t1 - t0, t0 = t1;
    rc = lmp_chunk_decompress_hashed(z, zn, dst, (size_t)e->raw_size, h, fname, d);
    if (times) t1 = thread_cpu_s(), times->decompress_s += t1 - t0, t0 = t1;
    if (rc != LMP_OK) goto out;
    LMP_FORWARD(check_hash(h, e->xxh3_raw, "raw", fname, d));
    e->compressed_size = zn;
    LMP_FORWARD(lmp_chunk_parse(c, dst, (size_t)e->raw_size, fname, d));
    if (times) times->parse_s += thread_cpu_s() - t0;
out:
    if (map != MAP_FAILED) munmap(map, zn);
    if (fd >= 0) close(fd);
    return rc;
}

lmp_status lmp_chunk_load(lmp_chunk *c, const char *path, const char *fname,
                          lmp_chunk_expect *e, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_map m = {0};
    memset(c, 0, sizeof *c);
    if (e->raw_size != UINT64_MAX && e->raw_size <= LMP_CHUNK_RAW_MAX) {
        /* raw size known (from a manifest): decompress and hash in one pass */
        uint8_t *raw = alloc_aligned((size_t)e->raw_size, 0);
        LMP_FAIL_IF(!raw, LMP_ERR_NOMEM, "%s: out of memory for %llu bytes", fname,
                    (unsigned long long)e->raw_size);
        rc = lmp_chunk_load_into(c, path, fname, e, raw, (size_t)e->raw_size, NULL, d);
        if (rc != LMP_OK) {
            free(raw);
            goto out;
        }
        c->owned = raw;
        goto out;
    }
    lmp_diag sub;
    lmp_diag_clear(&sub);
    rc = lmp_map_open(&m, path, &sub);
    LMP_FAIL_IF(rc != LMP_OK, LMP_ERR_INTEGRITY, "%s: missing or unreadable (%s)", fname,
                sub.msg);
    LMP_FORWARD(lmp_chunk_load_mem(c, m.data, m.size, fname, e, d));
out:
    lmp_map_close(&m);
    return rc;
}

lmp_status lmp_chunk_check_bytes(const uint8_t *z, size_t zn, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    uint8_t *raw = NULL;
    size_t rn = 0;
    lmp_chunk c;
    memset(&c, 0, sizeof c);
    LMP_FORWARD(lmp_chunk_decompress(z, zn, UINT64_MAX, (uint64_t)64 << 20, &raw, &rn, "chunk", d));
    LMP_FORWARD(lmp_chunk_parse(&c, raw, rn, "chunk", d));
out:
    lmp_chunk_free(&c);
    free(raw);
    return rc;
}
