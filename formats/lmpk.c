/* .lmpk container reader and writer; the byte layout is documented in
 * formats/lmpk.h and docs/FORMAT.md. */
#include "formats/lmpk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/fileio.h"
#include "formats/dtype.h"
#include "quantize/q4.h"

/* ---- little-endian helpers ------------------------------------------------ */

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t align_up(uint64_t x)
{
    return (x + LMP_LMPK_ALIGN - 1) / LMP_LMPK_ALIGN * LMP_LMPK_ALIGN;
}

/* XXH3-64 of [0, n) with the checksum field (bytes 120..127) taken as zero. */
static uint64_t meta_hash(const uint8_t *buf, uint64_t n)
{
    static const uint8_t zeros[8];
    XXH3_state_t *s = XXH3_createState();
    if (!s) return 0;
    XXH3_64bits_reset(s);
    XXH3_64bits_update(s, buf, 120);
    XXH3_64bits_update(s, zeros, 8);
    XXH3_64bits_update(s, buf + 128, (size_t)(n - 128));
    uint64_t h = XXH3_64bits_digest(s);
    XXH3_freeState(s);
    return h;
}

/* ---- sizes ------------------------------------------------------------------ */

static const char *kind_name(int kind)
{
    static const char *names[] = {"f32", "f16", "bf16", "q4", "q8"};
    return kind >= 0 && kind <= LMP_MAT_Q8 ? names[kind] : "?";
}

uint64_t lmp_lmpk_tensor_bytes(lmp_mat_kind kind, int ndim, const int64_t *shape, int group,
                               int scheme, uint64_t *row_bytes, const char *what, lmp_diag *d)
{
    if (row_bytes) *row_bytes = 0;
    if (ndim < 1 || ndim > LMP_LMPK_MAX_DIMS) {
        lmp_fail(d, LMP_ERR_FORMAT, "%s: ndim %d outside 1..%d", what, ndim, LMP_LMPK_MAX_DIMS);
        return 0;
    }
    uint64_t nelem = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1 || shape[i] > INT32_MAX) {
            lmp_fail(d, LMP_ERR_FORMAT, "%s: dimension %d is %lld, outside 1..2^31-1", what, i,
                     (long long)shape[i]);
            return 0;
        }
        nelem *= (uint64_t)shape[i]; /* <= 2^124 could overflow: guard below */
        if (nelem > (UINT64_C(1) << 46)) {
            lmp_fail(d, LMP_ERR_FORMAT, "%s: more than 2^46 elements", what);
            return 0;
        }
    }
    uint64_t rb = 0, total = 0;
    switch (kind) {
    case LMP_MAT_F32:
    case LMP_MAT_F16:
    case LMP_MAT_BF16: {
        if (group != 0 || scheme != 0) {
            lmp_fail(d, LMP_ERR_FORMAT, "%s: %s tensor must have group 0 and scheme 0 (has %d, %d)",
                     what, kind_name(kind), group, scheme);
            return 0;
        }
        uint64_t es = kind == LMP_MAT_F32 ? 4 : 2;
        total = nelem * es;
        rb = ndim == 2 ? (uint64_t)shape[1] * es : total;
        break;
    }
    case LMP_MAT_Q4:
    case LMP_MAT_Q8: {
        if (ndim != 2) {
            lmp_fail(d, LMP_ERR_FORMAT, "%s: %s tensor must be 2-D (has %d dims)", what,
                     kind_name(kind), ndim);
            return 0;
        }
        int want_q8 = scheme == LMP_Q4_Q8;
        if (want_q8 != (kind == LMP_MAT_Q8) || !lmp_q4_scheme_name(scheme)) {
            lmp_fail(d, LMP_ERR_FORMAT, "%s: scheme %d is not valid for a %s tensor", what,
                     scheme, kind_name(kind));
            return 0;
        }
        rb = lmp_q4_row_bytes((int)shape[1], group, scheme);
        if (rb == 0) {
            lmp_fail(d, LMP_ERR_FORMAT, "%s: group %d is not a supported %s group length (cols %lld)",
                     what, group, kind_name(kind), (long long)shape[1]);
            return 0;
        }
        total = rb * (uint64_t)shape[0];
        break;
    }
    default:
        lmp_fail(d, LMP_ERR_FORMAT, "%s: unknown kind %d", what, (int)kind);
        return 0;
    }
    if (row_bytes) *row_bytes = rb;
    return total;
}

/* ---- the model rules, shared by reader and writer ------------------------- */

static int cmp_name_idx(const void *a, const void *b)
{
    const lmp_lmpk_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Names unique; exactly the tensors the config expects, shapes equal;
 * 1-D tensors f32. */
static lmp_status check_model(const lmp_config *cfg, lmp_lmpk_tensor *t, size_t n,
                              const char *fname, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_lmpk_tensor **sorted = NULL;
    lmp_expect *ex = NULL;
    sorted = malloc((n ? n : 1) * sizeof *sorted);
    LMP_FAIL_IF(!sorted, LMP_ERR_NOMEM, "%s: out of memory", fname);
    for (size_t i = 0; i < n; i++) sorted[i] = &t[i];
    qsort(sorted, n, sizeof *sorted, cmp_name_idx);
    for (size_t i = 1; i < n; i++)
        LMP_FAIL_IF(!strcmp(sorted[i - 1]->name, sorted[i]->name), LMP_ERR_FORMAT,
                    "%s: tensor '%s': name appears twice in the table", fname, sorted[i]->name);
    size_t ne = lmp_config_expected(cfg, NULL, 0);
    ex = malloc((ne ? ne : 1) * sizeof *ex);
    LMP_FAIL_IF(!ex, LMP_ERR_NOMEM, "%s: out of memory", fname);
    lmp_config_expected(cfg, ex, ne);
    for (size_t i = 0; i < ne; i++) {
        lmp_lmpk_tensor key = {.name = ex[i].name};
        lmp_lmpk_tensor *kp = &key, **hit;
        hit = bsearch(&kp, sorted, n, sizeof *sorted, cmp_name_idx);
        LMP_FAIL_IF(!hit, LMP_ERR_FORMAT, "%s: tensor '%s': required by the config but missing",
                    fname, ex[i].name);
        lmp_lmpk_tensor *h = *hit;
        h->layer = ex[i].layer;
        int same = h->ndim == ex[i].ndim;
        for (int k = 0; same && k < ex[i].ndim; k++) same = h->shape[k] == ex[i].shape[k];
        LMP_FAIL_IF(!same, LMP_ERR_FORMAT,
                    "%s: tensor '%s': shape [%lld%s%lld] differs from the config's [%lld%s%lld]",
                    fname, h->name, (long long)h->shape[0], h->ndim > 1 ? "," : "",
                    h->ndim > 1 ? (long long)h->shape[1] : 0LL, (long long)ex[i].shape[0],
                    ex[i].ndim > 1 ? "," : "", ex[i].ndim > 1 ? (long long)ex[i].shape[1] : 0LL);
        LMP_FAIL_IF(h->ndim == 1 && h->kind != LMP_MAT_F32, LMP_ERR_FORMAT,
                    "%s: tensor '%s': 1-D tensors must be stored as f32 (is %s)", fname, h->name,
                    kind_name(h->kind));
    }
    if (n != ne) {
        /* some tensor is not expected: find it for the message */
        for (size_t i = 0; i < n; i++) {
            int found = 0;
            for (size_t k = 0; k < ne && !found; k++) found = !strcmp(t[i].name, ex[k].name);
            LMP_FAIL_IF(!found, LMP_ERR_FORMAT,
                        "%s: tensor '%s': not a tensor the config expects", fname, t[i].name);
        }
        LMP_FAIL(LMP_ERR_FORMAT, "%s: %zu tensors, the config expects %zu", fname, n, ne);
    }
out:
    free(sorted);
    free(ex);
    return rc;
}

/* Parse config bytes, mapping any parse failure to a container format error
 * (unsupported models stay LMP_ERR_UNSUPPORTED). */
static lmp_status parse_config(lmp_config *cfg, const char *json, size_t len, const char *fname,
                               lmp_diag *d)
{
    lmp_diag sub;
    lmp_diag_clear(&sub);
    char label[LMP_DIAG_MAX / 2];
    snprintf(label, sizeof label, "%s: config", fname);
    lmp_status st = lmp_config_parse(cfg, json, len, label, &sub);
    if (st == LMP_OK) return LMP_OK;
    if (st != LMP_ERR_UNSUPPORTED && st != LMP_ERR_NOMEM) st = LMP_ERR_FORMAT;
    return lmp_fail(d, st, "%s", sub.msg[0] ? sub.msg : label);
}

/* ---- reader ----------------------------------------------------------------- */

typedef struct carried {
    const char *name;
    const uint8_t *data;
    size_t len;
} carried;

struct lmp_lmpk {
    char *path;
    lmp_map map;
    lmp_config cfg;
    const char *config_json;
    size_t config_len;
    uint64_t file_size;
    size_t n;
    lmp_lmpk_tensor *t;
    size_t nf;
    carried *f;
};

/* Validate a name in the string table; returns it or NULL (message in d). */
static const char *get_name(const uint8_t *strings, uint64_t strings_size, uint32_t off,
                            uint32_t len, const char *fname, const char *what, size_t idx,
                            lmp_diag *d)
{
    if (len < 1 || len > LMP_LMPK_MAX_NAME) {
        lmp_fail(d, LMP_ERR_FORMAT, "%s: %s %zu: name length %u outside 1..%u", fname, what, idx,
                 len, LMP_LMPK_MAX_NAME);
        return NULL;
    }
    if ((uint64_t)off + len + 1 > strings_size) {
        lmp_fail(d, LMP_ERR_FORMAT,
                 "%s: %s %zu: name [%u,+%u] runs past the %llu-byte string table", fname, what, idx,
                 off, len, (unsigned long long)strings_size);
        return NULL;
    }
    const char *s = (const char *)strings + off;
    if (memchr(s, 0, len) || s[len] != 0) {
        lmp_fail(d, LMP_ERR_FORMAT, "%s: %s %zu: name contains a NUL or is not NUL-terminated",
                 fname, what, idx);
        return NULL;
    }
    return s;
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static lmp_status parse(lmp_lmpk *pk, const uint8_t *buf, size_t len, const char *fname,
                        lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    LMP_FAIL_IF(len < LMP_LMPK_HEADER_SIZE, LMP_ERR_FORMAT,
                "%s: truncated: %zu bytes, shorter than the %u-byte header", fname, len,
                LMP_LMPK_HEADER_SIZE);
    LMP_FAIL_IF(memcmp(buf, LMP_LMPK_MAGIC, 8) != 0, LMP_ERR_FORMAT,
                "%s: bad magic (not an .lmpk container)", fname);
    uint32_t version = rd32(buf + 8), hsize = rd32(buf + 12);
    LMP_FAIL_IF(version != LMP_LMPK_VERSION, LMP_ERR_FORMAT,
                "%s: container version %u, this lmpack reads version %u", fname, version,
                LMP_LMPK_VERSION);
    LMP_FAIL_IF(hsize != LMP_LMPK_HEADER_SIZE, LMP_ERR_FORMAT,
                "%s: header_size %u, must be %u", fname, hsize, LMP_LMPK_HEADER_SIZE);
    uint64_t file_size = rd64(buf + 16);
    LMP_FAIL_IF(file_size != len, LMP_ERR_FORMAT,
                "%s: header says file_size %llu bytes but the file has %zu (truncated or "
                "trailing bytes)",
                fname, (unsigned long long)file_size, len);
    uint32_t nt = rd32(buf + 24), nf = rd32(buf + 28);
    LMP_FAIL_IF(nt < 1 || nt > LMP_LMPK_MAX_TENSORS, LMP_ERR_FORMAT,
                "%s: n_tensors %u outside 1..%u", fname, nt, LMP_LMPK_MAX_TENSORS);
    LMP_FAIL_IF(nf > LMP_LMPK_MAX_FILES, LMP_ERR_FORMAT, "%s: n_files %u larger than %u", fname,
                nf, LMP_LMPK_MAX_FILES);
    uint64_t tensors_off = rd64(buf + 32), files_off = rd64(buf + 40);
    uint64_t strings_off = rd64(buf + 48), strings_size = rd64(buf + 56);
    uint64_t config_off = rd64(buf + 64), config_size = rd64(buf + 72);
    uint64_t data_off = rd64(buf + 80);
    uint32_t alignment = rd32(buf + 88), flags = rd32(buf + 92);
    LMP_FAIL_IF(alignment != LMP_LMPK_ALIGN, LMP_ERR_FORMAT, "%s: alignment %u, must be %u",
                fname, alignment, LMP_LMPK_ALIGN);
    LMP_FAIL_IF(flags != 0, LMP_ERR_FORMAT, "%s: flags 0x%x, must be 0", fname, flags);
    LMP_FAIL_IF(!all_zero(buf + 96, 24), LMP_ERR_FORMAT, "%s: reserved header bytes not zero",
                fname);
    LMP_FAIL_IF(tensors_off != LMP_LMPK_HEADER_SIZE, LMP_ERR_FORMAT,
                "%s: tensors_off %llu, must be %u", fname, (unsigned long long)tensors_off,
                LMP_LMPK_HEADER_SIZE);
    uint64_t want = tensors_off + (uint64_t)nt * LMP_LMPK_TENSOR_ENTRY;
    LMP_FAIL_IF(files_off != want, LMP_ERR_FORMAT,
                "%s: files_off %llu, must follow the tensor table at %llu", fname,
                (unsigned long long)files_off, (unsigned long long)want);
    want = files_off + (uint64_t)nf * LMP_LMPK_FILE_ENTRY;
    LMP_FAIL_IF(strings_off != want, LMP_ERR_FORMAT,
                "%s: strings_off %llu, must follow the file table at %llu", fname,
                (unsigned long long)strings_off, (unsigned long long)want);
    LMP_FAIL_IF(strings_size > LMP_LMPK_MAX_STRINGS, LMP_ERR_FORMAT,
                "%s: strings_size %llu larger than %u", fname, (unsigned long long)strings_size,
                LMP_LMPK_MAX_STRINGS);
    want = strings_off + strings_size;
    LMP_FAIL_IF(config_off != want, LMP_ERR_FORMAT,
                "%s: config_off %llu, must follow the string table at %llu", fname,
                (unsigned long long)config_off, (unsigned long long)want);
    LMP_FAIL_IF(config_size < 1 || config_size > LMP_LMPK_MAX_CONFIG, LMP_ERR_FORMAT,
                "%s: config_size %llu outside 1..%u", fname, (unsigned long long)config_size,
                LMP_LMPK_MAX_CONFIG);
    /* every offset so far is < 2^40, no overflow; now bound by the file */
    LMP_FAIL_IF(config_off + config_size > len, LMP_ERR_FORMAT,
                "%s: metadata (tables, strings, config) ends at %llu, beyond the %zu-byte file",
                fname, (unsigned long long)(config_off + config_size), len);
    LMP_FAIL_IF(data_off % LMP_LMPK_ALIGN != 0 || data_off < config_off + config_size ||
                    data_off > len,
                LMP_ERR_FORMAT, "%s: data_off %llu not a multiple of %u inside [%llu, %zu]",
                fname, (unsigned long long)data_off, LMP_LMPK_ALIGN,
                (unsigned long long)(config_off + config_size), len);
    uint64_t sum = meta_hash(buf, data_off), stored = rd64(buf + 120);
    LMP_FAIL_IF(sum != stored, LMP_ERR_FORMAT,
                "%s: header checksum mismatch (stored %016llx, computed %016llx over [0,%llu))",
                fname, (unsigned long long)stored, (unsigned long long)sum,
                (unsigned long long)data_off);

    const uint8_t *strings = buf + strings_off;
    /* carried files */
    pk->f = calloc(nf ? nf : 1, sizeof *pk->f);
    LMP_FAIL_IF(!pk->f, LMP_ERR_NOMEM, "%s: out of memory", fname);
    uint64_t pos = config_off + config_size;
    for (uint32_t i = 0; i < nf; i++) {
        const uint8_t *e = buf + files_off + (uint64_t)i * LMP_LMPK_FILE_ENTRY;
        const char *nm = get_name(strings, strings_size, rd32(e), rd32(e + 4), fname,
                                  "carried file", i, d);
        if (!nm) {
            rc = LMP_ERR_FORMAT;
            goto out;
        }
        LMP_FAIL_IF(strchr(nm, '/') != NULL, LMP_ERR_FORMAT,
                    "%s: carried file '%s': name must not contain '/'", fname, nm);
        for (uint32_t k = 0; k < i; k++)
            LMP_FAIL_IF(!strcmp(pk->f[k].name, nm), LMP_ERR_FORMAT,
                        "%s: carried file '%s': name appears twice", fname, nm);
        uint64_t off = rd64(e + 8), size = rd64(e + 16);
        LMP_FAIL_IF(off != pos, LMP_ERR_FORMAT,
                    "%s: carried file '%s': offset %llu, must be %llu (files back to back "
                    "after the config)",
                    fname, nm, (unsigned long long)off, (unsigned long long)pos);
        LMP_FAIL_IF(size > data_off - off, LMP_ERR_FORMAT,
                    "%s: carried file '%s': %llu bytes at %llu run past data_off %llu", fname, nm,
                    (unsigned long long)size, (unsigned long long)off,
                    (unsigned long long)data_off);
        pk->f[i] = (carried){nm, buf + off, (size_t)size};
        pos = off + size;
    }
    pk->nf = nf;
    LMP_FAIL_IF(data_off != align_up(pos), LMP_ERR_FORMAT,
                "%s: data_off %llu, must be %llu (end of the carried files rounded up to %u)",
                fname, (unsigned long long)data_off, (unsigned long long)align_up(pos),
                LMP_LMPK_ALIGN);
    LMP_FAIL_IF(!all_zero(buf + pos, (size_t)(data_off - pos)), LMP_ERR_FORMAT,
                "%s: padding before data_off is not zero", fname);

    /* tensors: allocate only now that nt * 80 bytes are known to be there */
    pk->t = calloc(nt, sizeof *pk->t);
    LMP_FAIL_IF(!pk->t, LMP_ERR_NOMEM, "%s: out of memory for %u tensors", fname, nt);
    pos = data_off;
    const char *prev = NULL;
    for (uint32_t i = 0; i < nt; i++) {
        const uint8_t *e = buf + tensors_off + (uint64_t)i * LMP_LMPK_TENSOR_ENTRY;
        lmp_lmpk_tensor *t = &pk->t[i];
        t->name = get_name(strings, strings_size, rd32(e), rd32(e + 4), fname, "tensor", i, d);
        if (!t->name) {
            rc = LMP_ERR_FORMAT;
            goto out;
        }
        char what[LMP_LMPK_MAX_NAME + 300];
        snprintf(what, sizeof what, "%s: tensor '%s'", fname, t->name);
        uint8_t kind = e[8];
        LMP_FAIL_IF(kind > LMP_MAT_Q8, LMP_ERR_FORMAT, "%s: unknown kind %u", what, kind);
        LMP_FAIL_IF(e[11] != 0 || !all_zero(e + 72, 8), LMP_ERR_FORMAT,
                    "%s: reserved entry bytes not zero", what);
        t->kind = (lmp_mat_kind)kind;
        t->scheme = e[9];
        t->ndim = e[10];
        uint32_t group = rd32(e + 12);
        LMP_FAIL_IF(group > 1u << 20, LMP_ERR_FORMAT, "%s: group %u too large", what, group);
        t->group = (int)group;
        LMP_FAIL_IF(t->ndim < 1 || t->ndim > LMP_LMPK_MAX_DIMS, LMP_ERR_FORMAT,
                    "%s: ndim %d outside 1..%d", what, t->ndim, LMP_LMPK_MAX_DIMS);
        t->nelem = 1;
        for (int k = 0; k < LMP_LMPK_MAX_DIMS; k++) {
            uint64_t v = rd64(e + 16 + 8 * k);
            if (k >= t->ndim) {
                LMP_FAIL_IF(v != 0, LMP_ERR_FORMAT, "%s: unused dimension %d is not 0", what, k);
                continue;
            }
            LMP_FAIL_IF(v < 1 || v > INT32_MAX, LMP_ERR_FORMAT,
                        "%s: dimension %d is %llu, outside 1..2^31-1", what, k,
                        (unsigned long long)v);
            t->shape[k] = (int64_t)v;
        }
        uint64_t need = lmp_lmpk_tensor_bytes(t->kind, t->ndim, t->shape, t->group, t->scheme,
                                              &t->row_bytes, what, d);
        if (need == 0) {
            rc = LMP_ERR_FORMAT;
            goto out;
        }
        for (int k = 0; k < t->ndim; k++) t->nelem *= (uint64_t)t->shape[k];
        t->offset = rd64(e + 48);
        t->size = rd64(e + 56);
        t->data_xxh3 = rd64(e + 64);
        LMP_FAIL_IF(t->size != need, LMP_ERR_FORMAT,
                    "%s: size %llu bytes, but %s %s with group %d needs %llu", what,
                    (unsigned long long)t->size, kind_name(t->kind),
                    t->ndim == 2 ? "matrix" : "tensor", t->group, (unsigned long long)need);
        LMP_FAIL_IF(t->offset % LMP_LMPK_ALIGN != 0, LMP_ERR_FORMAT,
                    "%s: data offset %llu is not a multiple of %u", what,
                    (unsigned long long)t->offset, LMP_LMPK_ALIGN);
        LMP_FAIL_IF(t->offset > len || t->size > len - t->offset, LMP_ERR_FORMAT,
                    "%s: data [%llu, +%llu) lies beyond the %zu-byte file", what,
                    (unsigned long long)t->offset, (unsigned long long)t->size, len);
        uint64_t expect_off = align_up(pos);
        LMP_FAIL_IF(t->offset < pos, LMP_ERR_FORMAT,
                    "%s: data at %llu overlaps %s (which ends at %llu)", what,
                    (unsigned long long)t->offset, prev ? prev : "the metadata",
                    (unsigned long long)pos);
        LMP_FAIL_IF(t->offset != expect_off, LMP_ERR_FORMAT,
                    "%s: data offset %llu leaves a gap, must be %llu (tensors follow each other "
                    "in table order)",
                    what, (unsigned long long)t->offset, (unsigned long long)expect_off);
        LMP_FAIL_IF(!all_zero(buf + pos, (size_t)(t->offset - pos)), LMP_ERR_FORMAT,
                    "%s: padding before the data is not zero", what);
        t->data = buf + t->offset;
        pos = t->offset + t->size;
        prev = t->name;
    }
    pk->n = nt;
    LMP_FAIL_IF(pos != len, LMP_ERR_FORMAT,
                "%s: %llu trailing bytes after the last tensor", fname,
                (unsigned long long)(len - pos));

    pk->config_json = (const char *)buf + config_off;
    pk->config_len = (size_t)config_size;
    pk->file_size = file_size;
    LMP_FORWARD(parse_config(&pk->cfg, pk->config_json, pk->config_len, fname, d));
    LMP_FORWARD(check_model(&pk->cfg, pk->t, pk->n, fname, d));
out:
    return rc;
}

void lmp_lmpk_close(lmp_lmpk *pk)
{
    if (!pk) return;
    lmp_map_close(&pk->map);
    free(pk->t);
    free(pk->f);
    free(pk->path);
    free(pk);
}

lmp_status lmp_lmpk_open(lmp_lmpk **out, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    *out = NULL;
    lmp_lmpk *pk = calloc(1, sizeof *pk);
    LMP_FAIL_IF(!pk, LMP_ERR_NOMEM, "%s: out of memory", path);
    pk->path = strdup(path);
    LMP_FAIL_IF(!pk->path, LMP_ERR_NOMEM, "%s: out of memory", path);
    LMP_FORWARD(lmp_map_open(&pk->map, path, d));
    LMP_FORWARD(parse(pk, pk->map.data, pk->map.size, path, d));
    *out = pk;
    pk = NULL;
out:
    lmp_lmpk_close(pk);
    return rc;
}

lmp_status lmp_lmpk_check_bytes(const uint8_t *buf, size_t len, const char *name, lmp_diag *d)
{
    lmp_lmpk pk;
    memset(&pk, 0, sizeof pk);
    lmp_status rc = parse(&pk, buf, len, name ? name : "(buffer)", d);
    free(pk.t);
    free(pk.f);
    return rc;
}

lmp_status lmp_lmpk_verify_data(const lmp_lmpk *pk, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    for (size_t i = 0; i < pk->n; i++) {
        const lmp_lmpk_tensor *t = &pk->t[i];
        uint64_t h = XXH3_64bits(t->data, (size_t)t->size);
        LMP_FAIL_IF(h != t->data_xxh3, LMP_ERR_INTEGRITY,
                    "%s: tensor '%s': data hash %016llx differs from the table's %016llx",
                    pk->path, t->name, (unsigned long long)h, (unsigned long long)t->data_xxh3);
    }
out:
    return rc;
}

const char *lmp_lmpk_path(const lmp_lmpk *pk) { return pk->path; }
const lmp_config *lmp_lmpk_config(const lmp_lmpk *pk) { return &pk->cfg; }
uint64_t lmp_lmpk_file_size(const lmp_lmpk *pk) { return pk->file_size; }

const char *lmp_lmpk_config_json(const lmp_lmpk *pk, size_t *len)
{
    if (len) *len = pk->config_len;
    return pk->config_json;
}

size_t lmp_lmpk_count(const lmp_lmpk *pk) { return pk->n; }

const lmp_lmpk_tensor *lmp_lmpk_at(const lmp_lmpk *pk, size_t i)
{
    return i < pk->n ? &pk->t[i] : NULL;
}

const lmp_lmpk_tensor *lmp_lmpk_find(const lmp_lmpk *pk, const char *name)
{
    for (size_t i = 0; i < pk->n; i++)
        if (!strcmp(pk->t[i].name, name)) return &pk->t[i];
    return NULL;
}

lmp_mat lmp_lmpk_mat(const lmp_lmpk_tensor *t)
{
    lmp_mat m;
    memset(&m, 0, sizeof m);
    m.kind = t->kind;
    m.rows = (int)t->shape[0];
    m.cols = t->ndim >= 2 ? (int)t->shape[1] : 1;
    m.group = t->group;
    m.scheme = t->scheme;
    m.row_bytes = (size_t)t->row_bytes;
    m.data = t->data;
    return m;
}

void lmp_lmpk_release(const lmp_lmpk *pk, const lmp_lmpk_tensor *t)
{
    lmp_map_release(&pk->map, (size_t)t->offset, (size_t)t->size);
}

size_t lmp_lmpk_nfiles(const lmp_lmpk *pk) { return pk->nf; }

void lmp_lmpk_file_at(const lmp_lmpk *pk, size_t i, const char **name, const uint8_t **data,
                      size_t *len)
{
    const carried *c = i < pk->nf ? &pk->f[i] : NULL;
    if (name) *name = c ? c->name : NULL;
    if (data) *data = c ? c->data : NULL;
    if (len) *len = c ? c->len : 0;
}

const uint8_t *lmp_lmpk_file(const lmp_lmpk *pk, const char *name, size_t *len)
{
    for (size_t i = 0; i < pk->nf; i++)
        if (!strcmp(pk->f[i].name, name)) {
            if (len) *len = pk->f[i].len;
            return pk->f[i].data;
        }
    if (len) *len = 0;
    return NULL;
}

/* ---- writer ----------------------------------------------------------------- */

struct lmp_lmpkw {
    lmp_out out;
    uint8_t *meta;       /* [0, data_off): header, tables, strings, config, files */
    uint64_t data_off;
    size_t n;
    uint64_t *size;      /* per tensor */
    size_t cur;          /* tensor being written */
    uint64_t cur_done;   /* bytes of it written */
    XXH3_state_t *hs;
    uint64_t wb_off;     /* writeback started up to here (lmp_lmpkw_start_writeback) */
};

void lmp_lmpkw_abort(lmp_lmpkw *w)
{
    if (!w) return;
    lmp_out_abort(&w->out);
    free(w->meta);
    free(w->size);
    if (w->hs) XXH3_freeState(w->hs);
    free(w);
}

uint64_t lmp_lmpkw_tensor_size(const lmp_lmpkw *w, size_t i)
{
    return i < w->n ? w->size[i] : 0;
}

lmp_status lmp_lmpkw_open(lmp_lmpkw **out, const char *path, const char *config_json,
                          size_t config_len, const lmp_lmpk_blob *files, size_t n_files,
                          const lmp_lmpkw_desc *descs, size_t n, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_lmpk_tensor *tv = NULL;
    *out = NULL;
    lmp_lmpkw *w = calloc(1, sizeof *w);
    LMP_FAIL_IF(!w, LMP_ERR_NOMEM, "%s: out of memory", path);
    LMP_FAIL_IF(n < 1 || n > LMP_LMPK_MAX_TENSORS, LMP_ERR_ARG, "%s: %zu tensors", path, n);
    LMP_FAIL_IF(n_files > LMP_LMPK_MAX_FILES, LMP_ERR_ARG, "%s: %zu carried files (max %u)", path,
                n_files, LMP_LMPK_MAX_FILES);
    LMP_FAIL_IF(config_len < 1 || config_len > LMP_LMPK_MAX_CONFIG, LMP_ERR_ARG,
                "%s: config of %zu bytes", path, config_len);
    w->n = n;
    w->size = calloc(n, sizeof *w->size);
    tv = calloc(n, sizeof *tv);
    LMP_FAIL_IF(!w->size || !tv, LMP_ERR_NOMEM, "%s: out of memory", path);

    /* sizes, string table size */
    uint64_t strings_size = 0;
    for (size_t i = 0; i < n; i++) {
        const lmp_lmpkw_desc *s = &descs[i];
        size_t nl = strlen(s->name);
        LMP_FAIL_IF(nl < 1 || nl > LMP_LMPK_MAX_NAME, LMP_ERR_ARG, "%s: tensor name '%s' length",
                    path, s->name);
        char what[LMP_LMPK_MAX_NAME + 300];
        snprintf(what, sizeof what, "%s: tensor '%s'", path, s->name);
        w->size[i] = lmp_lmpk_tensor_bytes(s->kind, s->ndim, s->shape, s->group, s->scheme, NULL,
                                           what, d);
        if (w->size[i] == 0) {
            rc = LMP_ERR_ARG;
            goto out;
        }
        tv[i].name = s->name;
        tv[i].kind = s->kind;
        tv[i].ndim = s->ndim;
        memcpy(tv[i].shape, s->shape, sizeof tv[i].shape);
        strings_size += nl + 1;
    }
    for (size_t i = 0; i < n_files; i++) {
        size_t nl = strlen(files[i].name);
        LMP_FAIL_IF(nl < 1 || nl > LMP_LMPK_MAX_NAME || strchr(files[i].name, '/'), LMP_ERR_ARG,
                    "%s: carried file name '%s'", path, files[i].name);
        for (size_t k = 0; k < i; k++)
            LMP_FAIL_IF(!strcmp(files[k].name, files[i].name), LMP_ERR_ARG,
                        "%s: carried file '%s' given twice", path, files[i].name);
        strings_size += nl + 1;
    }
    LMP_FAIL_IF(strings_size > LMP_LMPK_MAX_STRINGS, LMP_ERR_ARG, "%s: names too long", path);
    {
        lmp_config cfg;
        LMP_FORWARD(parse_config(&cfg, config_json, config_len, path, d));
        LMP_FORWARD(check_model(&cfg, tv, n, path, d));
    }

    uint64_t files_off = LMP_LMPK_HEADER_SIZE + (uint64_t)n * LMP_LMPK_TENSOR_ENTRY;
    uint64_t strings_off = files_off + (uint64_t)n_files * LMP_LMPK_FILE_ENTRY;
    uint64_t config_off = strings_off + strings_size;
    uint64_t pos = config_off + config_len;
    for (size_t i = 0; i < n_files; i++) pos += files[i].size;
    w->data_off = align_up(pos);
    w->meta = calloc(1, (size_t)w->data_off);
    LMP_FAIL_IF(!w->meta, LMP_ERR_NOMEM, "%s: out of memory", path);
    uint8_t *h = w->meta;
    memcpy(h, LMP_LMPK_MAGIC, 8);
    wr32(h + 8, LMP_LMPK_VERSION);
    wr32(h + 12, LMP_LMPK_HEADER_SIZE);
    wr32(h + 24, (uint32_t)n);
    wr32(h + 28, (uint32_t)n_files);
    wr64(h + 32, LMP_LMPK_HEADER_SIZE);
    wr64(h + 40, files_off);
    wr64(h + 48, strings_off);
    wr64(h + 56, strings_size);
    wr64(h + 64, config_off);
    wr64(h + 72, config_len);
    wr64(h + 80, w->data_off);
    wr32(h + 88, LMP_LMPK_ALIGN);
    uint64_t soff = 0, doff = w->data_off;
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = h + LMP_LMPK_HEADER_SIZE + i * LMP_LMPK_TENSOR_ENTRY;
        const lmp_lmpkw_desc *s = &descs[i];
        size_t nl = strlen(s->name);
        memcpy(h + strings_off + soff, s->name, nl + 1);
        wr32(e, (uint32_t)soff);
        wr32(e + 4, (uint32_t)nl);
        soff += nl + 1;
        e[8] = (uint8_t)s->kind;
        e[9] = (uint8_t)s->scheme;
        e[10] = (uint8_t)s->ndim;
        wr32(e + 12, (uint32_t)s->group);
        for (int k = 0; k < s->ndim; k++) wr64(e + 16 + 8 * k, (uint64_t)s->shape[k]);
        doff = align_up(doff);
        wr64(e + 48, doff);
        wr64(e + 56, w->size[i]);
        doff += w->size[i];
    }
    wr64(h + 16, doff);
    memcpy(h + config_off, config_json, config_len);
    pos = config_off + config_len;
    for (size_t i = 0; i < n_files; i++) {
        uint8_t *e = h + files_off + i * LMP_LMPK_FILE_ENTRY;
        size_t nl = strlen(files[i].name);
        memcpy(h + strings_off + soff, files[i].name, nl + 1);
        wr32(e, (uint32_t)soff);
        wr32(e + 4, (uint32_t)nl);
        soff += nl + 1;
        wr64(e + 8, pos);
        wr64(e + 16, files[i].size);
        if (files[i].size) memcpy(h + pos, files[i].data, files[i].size);
        pos += files[i].size;
    }
    w->hs = XXH3_createState();
    LMP_FAIL_IF(!w->hs, LMP_ERR_NOMEM, "%s: out of memory", path);
    XXH3_64bits_reset(w->hs);
    LMP_FORWARD(lmp_out_open(&w->out, path, d));
    /* placeholder metadata (hashes filled in by finish) */
    LMP_FORWARD(lmp_out_write(&w->out, w->meta, (size_t)w->data_off, d));
    *out = w;
    w = NULL;
out:
    free(tv);
    lmp_lmpkw_abort(w);
    return rc;
}

lmp_status lmp_lmpkw_write(lmp_lmpkw *w, const void *data, size_t nbytes, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const uint8_t *p = data;
    while (nbytes > 0) {
        LMP_FAIL_IF(w->cur >= w->n, LMP_ERR_INTERNAL,
                    "%s: more tensor bytes written than declared", w->out.path);
        uint64_t left = w->size[w->cur] - w->cur_done;
        size_t k = nbytes < left ? nbytes : (size_t)left;
        LMP_FORWARD(lmp_out_write(&w->out, p, k, d));
        XXH3_64bits_update(w->hs, p, k);
        p += k;
        nbytes -= k;
        w->cur_done += k;
        if (w->cur_done == w->size[w->cur]) {
            uint8_t *e = w->meta + LMP_LMPK_HEADER_SIZE + w->cur * LMP_LMPK_TENSOR_ENTRY;
            wr64(e + 64, XXH3_64bits_digest(w->hs));
            XXH3_64bits_reset(w->hs);
            w->cur++;
            w->cur_done = 0;
            if (w->cur < w->n) LMP_FORWARD(lmp_out_pad(&w->out, LMP_LMPK_ALIGN, d));
        }
    }
out:
    return rc;
}

void lmp_lmpkw_start_writeback(lmp_lmpkw *w)
{
#if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
    if (!w || !w->out.f || fflush(w->out.f) != 0) return; /* an error stays for commit */
    off_t end = ftello(w->out.f);
    if (end <= (off_t)w->wb_off) return;
    (void)sync_file_range(fileno(w->out.f), (off_t)w->wb_off, end - (off_t)w->wb_off,
                          SYNC_FILE_RANGE_WRITE);
    w->wb_off = (uint64_t)end;
#else
    (void)w;
#endif
}

lmp_status lmp_lmpkw_finish(lmp_lmpkw *w, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    LMP_FAIL_IF(w->cur != w->n, LMP_ERR_INTERNAL,
                "%s: finished after %zu of %zu tensors were written", w->out.path, w->cur, w->n);
    wr64(w->meta + 120, meta_hash(w->meta, w->data_off));
    size_t head = LMP_LMPK_HEADER_SIZE + w->n * LMP_LMPK_TENSOR_ENTRY;
    LMP_FAIL_IF(fseeko(w->out.f, 0, SEEK_SET) != 0, LMP_ERR_IO, "%s: seek failed: %s",
                w->out.path, strerror(errno));
    LMP_FORWARD(lmp_out_write(&w->out, w->meta, head, d));
    LMP_FORWARD(lmp_out_commit(&w->out, d));
out:
    lmp_lmpkw_abort(w);
    return rc;
}
