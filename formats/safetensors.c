/* Safetensors reader (validated mmap) and streaming writer.
 *
 * Reading one file image goes through three gates before anything is
 * trusted:
 *   1. the 8-byte length, header bounds, NUL bytes, UTF-8 and a strict
 *      RFC 8259 syntax check (jv_*, below) over the raw header bytes: cJSON
 *      alone accepts trailing garbage, "01", raw control characters, lone
 *      surrogates and cannot tell "1.0" from "1", so the syntax check runs
 *      first and also checks that every number inside a tensor's "shape" /
 *      "data_offsets" is written as a plain non-negative integer <= 2^53;
 *   2. cJSON then builds the tree and every entry is checked against the
 *      rules in safetensors.h (dtype, shape, offsets, sizes, unknown keys,
 *      duplicate keys, which cJSON keeps);
 *   3. the tensors, sorted by offset, must tile the data buffer exactly.
 * Only then do tensor data pointers into the mapping get created.
 *
 * Sets: the shards of an index are mapped in sorted file-name order (a
 * deterministic order that does not depend on how the index was written);
 * tensors are listed by shard, then by data offset (ties: by name).
 */
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"

#define MAX_JSON_DEPTH 64
/* cJSON needs ~100 bytes per value; a 100 MB header of "[0,0,0,..." would
 * otherwise cost gigabytes. Real headers hold ~10 values per tensor, so
 * this allows well over 100,000 tensors per file. */
#define MAX_JSON_VALUES 2000000
#define MAX_SAFE_INT (1ull << 53) /* largest integer every JSON reader keeps exact */
#define MAX_INDEX_BYTES (64u << 20)

/* ------------------------------------------------------------------------ */
/* Messages: names come from untrusted bytes, so show them on one line,
 * escaped and truncated. */

#define SHOWN_MAX 96

static const char *shown(const char *s, char *buf, size_t bufsz)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o + 8 >= bufsz || i >= SHOWN_MAX) {
            memcpy(buf + o, "...", 4);
            return buf;
        }
        if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = '\0';
    return buf;
}
#define SHOWN_BUF (SHOWN_MAX * 4 + 16)

/* ------------------------------------------------------------------------ */
/* UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). Returns the
 * offset of the first bad byte, or len if all valid. */
static size_t utf8_check(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return i;
        }
        if (len - i <= need) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xc0) != 0x80) return i;
        i += need + 1;
    }
    return len;
}

/* ------------------------------------------------------------------------ */
/* Strict JSON syntax check (RFC 8259) over [p, p+n). Recursive descent with
 * a depth limit, so no input can exhaust the stack. */

enum { ROLE_OTHER, ROLE_ROOT, ROLE_ENTRY, ROLE_INT_ARRAY, ROLE_INT };

typedef struct jv {
    const uint8_t *p;
    size_t n, i;
    int tensor_mode;  /* apply the safetensors number rule */
    const char *what; /* "header" or "index", for messages */
    size_t nvalues;
    int over_limit;   /* failed on MAX_JSON_VALUES, not on the syntax */
    char k1[200];     /* decoded current top-level key (tensor name), truncated */
    int k1_is_meta;   /* k1 == "__metadata__" */
    char k2[16];      /* decoded current key inside a tensor entry */
    char err[384];
} jv;

static int jv_fail(jv *v, const char *what)
{
    if (!v->err[0]) {
        if (v->i < v->n)
            snprintf(v->err, sizeof v->err, "%s is not valid JSON: %s at byte %zu", v->what, what, v->i);
        else
            snprintf(v->err, sizeof v->err, "%s is not valid JSON: %s at the end", v->what, what);
    }
    return -1;
}

static void jv_ws(jv *v)
{
    while (v->i < v->n && (v->p[v->i] == ' ' || v->p[v->i] == '\t' || v->p[v->i] == '\n' ||
                           v->p[v->i] == '\r'))
        v->i++;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int jv_u4(jv *v, unsigned *out)
{
    if (v->n - v->i < 4) return jv_fail(v, "truncated \\u escape");
    unsigned u = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(v->p[v->i + (size_t)k]);
        if (h < 0) return jv_fail(v, "bad hex digit in \\u escape");
        u = u << 4 | (unsigned)h;
    }
    v->i += 4;
    *out = u;
    return 0;
}

/* Append UTF-8 of code point cp to dec (truncating silently, NUL-kept). */
static void dec_put(char *dec, size_t decsz, size_t *dl, int *trunc, const char *b, size_t k)
{
    if (!dec) return;
    if (*dl + k + 1 > decsz) {
        *trunc = 1;
        return;
    }
    memcpy(dec + *dl, b, k);
    *dl += k;
    dec[*dl] = '\0';
}

/* String at v->i (must be '"'). Decodes into dec (if given) up to decsz-1 bytes. */
static int jv_string(jv *v, char *dec, size_t decsz, int *trunc)
{
    size_t dl = 0;
    int tr = 0;
    if (dec) dec[0] = '\0';
    v->i++; /* opening quote */
    for (;;) {
        if (v->i >= v->n) return jv_fail(v, "unterminated string");
        uint8_t c = v->p[v->i];
        if (c == '"') {
            v->i++;
            break;
        }
        if (c < 0x20) return jv_fail(v, "control character in a string");
        if (c != '\\') {
            char b = (char)c;
            dec_put(dec, decsz, &dl, &tr, &b, 1);
            v->i++;
            continue;
        }
        v->i++;
        if (v->i >= v->n) return jv_fail(v, "unterminated escape");
        c = v->p[v->i++];
        char b;
        switch (c) {
        case '"': b = '"'; break;
        case '\\': b = '\\'; break;
        case '/': b = '/'; break;
        case 'b': b = '\b'; break;
        case 'f': b = '\f'; break;
        case 'n': b = '\n'; break;
        case 'r': b = '\r'; break;
        case 't': b = '\t'; break;
        case 'u': {
            unsigned u, cp;
            if (jv_u4(v, &u)) return -1;
            if (u >= 0xdc00 && u <= 0xdfff) return jv_fail(v, "lone low surrogate in \\u escape");
            if (u >= 0xd800 && u <= 0xdbff) {
                unsigned lo;
                if (v->n - v->i < 2 || v->p[v->i] != '\\' || v->p[v->i + 1] != 'u')
                    return jv_fail(v, "lone high surrogate in \\u escape");
                v->i += 2;
                if (jv_u4(v, &lo)) return -1;
                if (lo < 0xdc00 || lo > 0xdfff) return jv_fail(v, "bad surrogate pair in \\u escape");
                cp = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
            } else {
                cp = u;
            }
            /* C strings cannot hold U+0000; no real tensor name needs it. */
            if (cp == 0) return jv_fail(v, "\\u0000 (NUL) in a string is not supported");
            char e[4];
            size_t k;
            if (cp < 0x80) {
                e[0] = (char)cp;
                k = 1;
            } else if (cp < 0x800) {
                e[0] = (char)(0xc0 | cp >> 6);
                e[1] = (char)(0x80 | (cp & 0x3f));
                k = 2;
            } else if (cp < 0x10000) {
                e[0] = (char)(0xe0 | cp >> 12);
                e[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                e[2] = (char)(0x80 | (cp & 0x3f));
                k = 3;
            } else {
                e[0] = (char)(0xf0 | cp >> 18);
                e[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
                e[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
                e[3] = (char)(0x80 | (cp & 0x3f));
                k = 4;
            }
            dec_put(dec, decsz, &dl, &tr, e, k);
            continue;
        }
        default:
            v->i--;
            return jv_fail(v, "invalid escape in a string");
        }
        dec_put(dec, decsz, &dl, &tr, &b, 1);
    }
    if (trunc) *trunc = tr;
    return 0;
}

static int jv_number(jv *v, int role)
{
    size_t start = v->i;
    int plain = 1;
    if (v->p[v->i] == '-') {
        plain = 0;
        v->i++;
    }
    if (v->i >= v->n || v->p[v->i] < '0' || v->p[v->i] > '9') return jv_fail(v, "bad number");
    if (v->p[v->i] == '0') {
        v->i++;
        if (v->i < v->n && v->p[v->i] >= '0' && v->p[v->i] <= '9')
            return jv_fail(v, "number with a leading zero");
    } else {
        while (v->i < v->n && v->p[v->i] >= '0' && v->p[v->i] <= '9') v->i++;
    }
    if (v->i < v->n && v->p[v->i] == '.') {
        plain = 0;
        v->i++;
        if (v->i >= v->n || v->p[v->i] < '0' || v->p[v->i] > '9')
            return jv_fail(v, "bad number fraction");
        while (v->i < v->n && v->p[v->i] >= '0' && v->p[v->i] <= '9') v->i++;
    }
    if (v->i < v->n && (v->p[v->i] == 'e' || v->p[v->i] == 'E')) {
        plain = 0;
        v->i++;
        if (v->i < v->n && (v->p[v->i] == '+' || v->p[v->i] == '-')) v->i++;
        if (v->i >= v->n || v->p[v->i] < '0' || v->p[v->i] > '9')
            return jv_fail(v, "bad number exponent");
        while (v->i < v->n && v->p[v->i] >= '0' && v->p[v->i] <= '9') v->i++;
    }
    if (role != ROLE_INT) return 0;
    int len = (int)(v->i - start);
    char nb[SHOWN_BUF], lex[40];
    snprintf(lex, sizeof lex, "%.*s%s", len > 32 ? 32 : len, (const char *)v->p + start,
             len > 32 ? "..." : "");
    if (!plain) {
        snprintf(v->err, sizeof v->err, "tensor '%s': %s: %s is not a non-negative integer",
                 shown(v->k1, nb, sizeof nb), v->k2, lex);
        return -1;
    }
    uint64_t x = 0;
    for (size_t k = start; k < v->i; k++) {
        if (x > MAX_SAFE_INT) break;
        x = x * 10 + (uint64_t)(v->p[k] - '0');
    }
    if (x > MAX_SAFE_INT) {
        snprintf(v->err, sizeof v->err, "tensor '%s': %s: %s exceeds 2^53",
                 shown(v->k1, nb, sizeof nb), v->k2, lex);
        return -1;
    }
    return 0;
}

static int jv_value(jv *v, int depth, int role);

static int jv_lit(jv *v, const char *w)
{
    size_t k = strlen(w);
    if (v->n - v->i < k || memcmp(v->p + v->i, w, k) != 0) return jv_fail(v, "unexpected character");
    v->i += k;
    return 0;
}

static int jv_object(jv *v, int depth, int role)
{
    v->i++; /* '{' */
    jv_ws(v);
    if (v->i < v->n && v->p[v->i] == '}') {
        v->i++;
        return 0;
    }
    for (;;) {
        jv_ws(v);
        if (v->i >= v->n || v->p[v->i] != '"') return jv_fail(v, "expected a string key");
        int child = ROLE_OTHER;
        if (role == ROLE_ROOT) {
            int tr = 0;
            if (jv_string(v, v->k1, sizeof v->k1, &tr)) return -1;
            v->k1_is_meta = !tr && strcmp(v->k1, "__metadata__") == 0;
            child = ROLE_ENTRY;
        } else if (role == ROLE_ENTRY && v->tensor_mode && !v->k1_is_meta) {
            int tr = 0;
            if (jv_string(v, v->k2, sizeof v->k2, &tr)) return -1;
            if (!tr && (strcmp(v->k2, "shape") == 0 || strcmp(v->k2, "data_offsets") == 0))
                child = ROLE_INT_ARRAY;
        } else {
            if (jv_string(v, NULL, 0, NULL)) return -1;
        }
        jv_ws(v);
        if (v->i >= v->n || v->p[v->i] != ':') return jv_fail(v, "expected ':'");
        v->i++;
        if (jv_value(v, depth + 1, child)) return -1;
        jv_ws(v);
        if (v->i >= v->n) return jv_fail(v, "unterminated object");
        if (v->p[v->i] == ',') {
            v->i++;
            continue;
        }
        if (v->p[v->i] == '}') {
            v->i++;
            return 0;
        }
        return jv_fail(v, "expected ',' or '}'");
    }
}

static int jv_array(jv *v, int depth, int role)
{
    int child = role == ROLE_INT_ARRAY ? ROLE_INT : ROLE_OTHER;
    v->i++; /* '[' */
    jv_ws(v);
    if (v->i < v->n && v->p[v->i] == ']') {
        v->i++;
        return 0;
    }
    for (;;) {
        if (jv_value(v, depth + 1, child)) return -1;
        jv_ws(v);
        if (v->i >= v->n) return jv_fail(v, "unterminated array");
        if (v->p[v->i] == ',') {
            v->i++;
            continue;
        }
        if (v->p[v->i] == ']') {
            v->i++;
            return 0;
        }
        return jv_fail(v, "expected ',' or ']'");
    }
}

static int jv_value(jv *v, int depth, int role)
{
    if (depth > MAX_JSON_DEPTH) return jv_fail(v, "nesting deeper than 64 levels");
    if (++v->nvalues > MAX_JSON_VALUES) {
        snprintf(v->err, sizeof v->err, "%s holds more than %d JSON values (memory limit)", v->what,
                 MAX_JSON_VALUES);
        v->over_limit = 1;
        return -1;
    }
    jv_ws(v);
    if (v->i >= v->n) return jv_fail(v, "expected a value");
    switch (v->p[v->i]) {
    case '{': return jv_object(v, depth, role);
    case '[': return jv_array(v, depth, role);
    case '"': return jv_string(v, NULL, 0, NULL);
    case 't': return jv_lit(v, "true");
    case 'f': return jv_lit(v, "false");
    case 'n': return jv_lit(v, "null");
    default:
        if (v->p[v->i] == '-' || (v->p[v->i] >= '0' && v->p[v->i] <= '9')) return jv_number(v, role);
        return jv_fail(v, "unexpected character");
    }
}

/* Whole document: one object starting at byte 0, then only whitespace.
 * Returns 0 or -1 with v->err set. */
static int jv_document(jv *v)
{
    if (v->n == 0 || v->p[0] != '{') {
        snprintf(v->err, sizeof v->err, "%s is not a JSON object (it must start with '{')", v->what);
        return -1;
    }
    if (jv_object(v, 0, ROLE_ROOT)) return -1;
    jv_ws(v);
    if (v->i != v->n) return jv_fail(v, "trailing characters after the object");
    return 0;
}

/* Byte-level checks shared by headers and index files: no NUL, UTF-8,
 * strict JSON. Returns LMP_OK or the status to report, with msg filled. */
static lmp_status json_bytes_ok(const uint8_t *p, size_t n, int tensor_mode, char *msg, size_t msgsz)
{
    const char *what = tensor_mode ? "header" : "index";
    const uint8_t *z = memchr(p, 0, n);
    if (z) {
        snprintf(msg, msgsz, "%s contains a NUL byte at offset %zu", what, (size_t)(z - p));
        return LMP_ERR_FORMAT;
    }
    size_t bad = utf8_check(p, n);
    if (bad != n) {
        snprintf(msg, msgsz, "%s is not valid UTF-8 (byte %zu)", what, bad);
        return LMP_ERR_FORMAT;
    }
    jv *v = calloc(1, sizeof *v);
    if (!v) {
        snprintf(msg, msgsz, "out of memory");
        return LMP_ERR_NOMEM;
    }
    v->p = p;
    v->n = n;
    v->tensor_mode = tensor_mode;
    v->what = what;
    lmp_status r = LMP_OK;
    if (jv_document(v)) {
        snprintf(msg, msgsz, "%s", v->err);
        r = v->over_limit ? LMP_ERR_UNSUPPORTED : LMP_ERR_FORMAT;
    }
    free(v);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Parsed entries of one file. */

typedef struct st_ent {
    lmp_st_tensor t;
    uint64_t begin, end;
} st_ent;

typedef struct st_vec {
    st_ent *e;
    size_t n, cap;
} st_vec;

typedef struct st_meta {
    size_t n;
    char **key, **val;
} st_meta;

static void vec_free_names(st_vec *v, size_t from)
{
    for (size_t i = from; i < v->n; i++) free((char *)v->e[i].t.name);
}

static void meta_free(st_meta *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->key[i]);
        free(m->val[i]);
    }
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

static int cmp_ent_offset(const void *a, const void *b)
{
    const st_ent *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A JSON number that must be a non-negative integer <= 2^53. The syntax
 * check already rejected "1.0"/"1e2"-style spellings; this repeats the
 * value rule on the parsed double (defence in depth). */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return -1;
    double x = j->valuedouble;
    if (!(x >= 0) || x > (double)MAX_SAFE_INT || x != (double)(uint64_t)x) return -1;
    if (x == 0 && 1 / x < 0) return -1; /* -0 */
    *out = (uint64_t)x;
    return 0;
}

static void fmt_shape(const lmp_st_tensor *t, char *buf, size_t sz)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, sz - o, "[");
    for (int k = 0; k < t->ndim && o < sz; k++)
        o += (size_t)snprintf(buf + o, sz - o, "%s%lld", k ? "," : "", (long long)t->shape[k]);
    if (o < sz) snprintf(buf + o, sz - o, "]");
}

/* One tensor entry `j` named `name`; appends to tv. bufsz is the data
 * buffer length. */
static lmp_status parse_entry(const cJSON *j, const char *fname, uint64_t bufsz, int shard, st_vec *tv,
                              lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char nb[SHOWN_BUF];
    const char *name = j->string;
    const char *sn = shown(name, nb, sizeof nb);
    const cJSON *jd = NULL, *js = NULL, *jo = NULL;
    LMP_FAIL_IF(!cJSON_IsObject(j), LMP_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", fname,
                sn);
    for (const cJSON *c = j->child; c; c = c->next) {
        const cJSON **slot = NULL;
        if (strcmp(c->string, "dtype") == 0)
            slot = &jd;
        else if (strcmp(c->string, "shape") == 0)
            slot = &js;
        else if (strcmp(c->string, "data_offsets") == 0)
            slot = &jo;
        char kb[SHOWN_BUF];
        LMP_FAIL_IF(!slot, LMP_ERR_FORMAT, "%s: tensor '%s': unknown key '%s'", fname, sn,
                    shown(c->string, kb, sizeof kb));
        LMP_FAIL_IF(*slot, LMP_ERR_FORMAT, "%s: tensor '%s': duplicate key '%s'", fname, sn, c->string);
        *slot = c;
    }
    LMP_FAIL_IF(!jd, LMP_ERR_FORMAT, "%s: tensor '%s': missing 'dtype'", fname, sn);
    LMP_FAIL_IF(!js, LMP_ERR_FORMAT, "%s: tensor '%s': missing 'shape'", fname, sn);
    LMP_FAIL_IF(!jo, LMP_ERR_FORMAT, "%s: tensor '%s': missing 'data_offsets'", fname, sn);

    lmp_st_tensor t;
    memset(&t, 0, sizeof t);
    t.shard = shard;
    char db[SHOWN_BUF];
    LMP_FAIL_IF(!cJSON_IsString(jd), LMP_ERR_FORMAT, "%s: tensor '%s': dtype is not a string", fname, sn);
    int dt = lmp_dtype_from_name(jd->valuestring);
    LMP_FAIL_IF(dt < 0, LMP_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", fname, sn,
                shown(jd->valuestring, db, sizeof db));
    t.dtype = (lmp_dtype)dt;

    LMP_FAIL_IF(!cJSON_IsArray(js), LMP_ERR_FORMAT, "%s: tensor '%s': shape is not an array", fname, sn);
    int nd = cJSON_GetArraySize(js);
    LMP_FAIL_IF(nd > LMP_ST_MAX_DIMS, LMP_ERR_UNSUPPORTED,
                "%s: tensor '%s': shape has %d dimensions, more than the %d supported", fname, sn, nd,
                LMP_ST_MAX_DIMS);
    t.ndim = nd;
    uint64_t nelem = 1;
    int overflow = 0;
    {
        int k = 0;
        for (const cJSON *c = js->child; c; c = c->next, k++) {
            uint64_t x;
            LMP_FAIL_IF(json_uint(c, &x), LMP_ERR_FORMAT,
                        "%s: tensor '%s': shape: dimension %d is not a non-negative integer", fname, sn, k);
            t.shape[k] = (int64_t)x;
            if (x != 0 && nelem > UINT64_MAX / x) overflow = 1;
            nelem *= x;
        }
    }
    /* a zero dimension makes the product 0 even if earlier ones overflowed */
    for (int k = 0; k < nd; k++)
        if (t.shape[k] == 0) overflow = 0, nelem = 0;
    char shb[160];
    fmt_shape(&t, shb, sizeof shb);
    LMP_FAIL_IF(overflow, LMP_ERR_FORMAT, "%s: tensor '%s': shape %s: element count overflows 64 bits",
                fname, sn, shb);
    size_t es = lmp_dtype_size(t.dtype);
    LMP_FAIL_IF(nelem > UINT64_MAX / es, LMP_ERR_FORMAT,
                "%s: tensor '%s': shape %s of %s: byte size overflows 64 bits", fname, sn, shb,
                lmp_dtype_name(t.dtype));
    t.nelem = nelem;
    t.nbytes = nelem * es;

    LMP_FAIL_IF(!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2, LMP_ERR_FORMAT,
                "%s: tensor '%s': data_offsets is not an array [begin, end]", fname, sn);
    uint64_t b, e;
    LMP_FAIL_IF(json_uint(jo->child, &b) || json_uint(jo->child->next, &e), LMP_ERR_FORMAT,
                "%s: tensor '%s': data_offsets must be non-negative integers", fname, sn);
    LMP_FAIL_IF(b > e, LMP_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu) are reversed (begin > end)",
                fname, sn, (unsigned long long)b, (unsigned long long)e);
    LMP_FAIL_IF(e - b != t.nbytes, LMP_ERR_FORMAT,
                "%s: tensor '%s': shape %s of %s needs %llu bytes but data_offsets [%llu,%llu) hold %llu",
                fname, sn, shb, lmp_dtype_name(t.dtype), (unsigned long long)t.nbytes,
                (unsigned long long)b, (unsigned long long)e, (unsigned long long)(e - b));
    LMP_FAIL_IF(e > bufsz, LMP_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu) exceed the %llu-byte buffer",
                fname, sn, (unsigned long long)b, (unsigned long long)e, (unsigned long long)bufsz);

    if (tv->n == tv->cap) {
        size_t nc = tv->cap ? tv->cap * 2 : 64;
        st_ent *ne = realloc(tv->e, nc * sizeof *ne);
        LMP_FAIL_IF(!ne, LMP_ERR_NOMEM, "%s: out of memory", fname);
        tv->e = ne;
        tv->cap = nc;
    }
    t.name = strdup(name);
    LMP_FAIL_IF(!t.name, LMP_ERR_NOMEM, "%s: out of memory", fname);
    tv->e[tv->n].t = t;
    tv->e[tv->n].begin = b;
    tv->e[tv->n].end = e;
    tv->n++;
out:
    return rc;
}

static lmp_status parse_meta(const cJSON *j, const char *fname, st_meta *m, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const char **keys = NULL;
    LMP_FAIL_IF(!cJSON_IsObject(j), LMP_ERR_FORMAT, "%s: __metadata__ is not a JSON object", fname);
    size_t n = 0;
    for (const cJSON *c = j->child; c; c = c->next) n++;
    if (n == 0) goto out;
    m->key = calloc(n, sizeof *m->key);
    m->val = calloc(n, sizeof *m->val);
    keys = calloc(n, sizeof *keys);
    LMP_FAIL_IF(!m->key || !m->val || !keys, LMP_ERR_NOMEM, "%s: out of memory", fname);
    size_t i = 0;
    for (const cJSON *c = j->child; c; c = c->next, i++) {
        char kb[SHOWN_BUF];
        LMP_FAIL_IF(!cJSON_IsString(c), LMP_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string",
                    fname, shown(c->string, kb, sizeof kb));
        keys[i] = c->string;
    }
    qsort(keys, n, sizeof *keys, cmp_str_ptr);
    for (i = 1; i < n; i++) {
        char kb[SHOWN_BUF];
        LMP_FAIL_IF(strcmp(keys[i - 1], keys[i]) == 0, LMP_ERR_FORMAT, "%s: __metadata__: duplicate key '%s'",
                    fname, shown(keys[i], kb, sizeof kb));
    }
    i = 0;
    for (const cJSON *c = j->child; c; c = c->next, i++) {
        m->key[i] = strdup(c->string);
        m->val[i] = strdup(c->valuestring);
        m->n = i + 1;
        LMP_FAIL_IF(!m->key[i] || !m->val[i], LMP_ERR_NOMEM, "%s: out of memory", fname);
    }
out:
    free(keys);
    return rc;
}

/* Validate one file image; append its tensors (sorted by offset, data
 * pointers into buf) to tv and its metadata to m. On failure the caller
 * frees tv/m (entries appended so far are valid allocations). */
static lmp_status parse_image(const uint8_t *buf, size_t len, const char *fname, int shard, st_vec *tv,
                              st_meta *m, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    cJSON *root = NULL;
    const char **names = NULL;
    size_t first = tv->n;
    char msg[400];
    LMP_FAIL_IF(len < 8, LMP_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
                fname, len);
    uint64_t hn = 0;
    for (int k = 7; k >= 0; k--) hn = hn << 8 | buf[k];
    LMP_FAIL_IF(hn > LMP_ST_MAX_HEADER, LMP_ERR_FORMAT,
                "%s: header length %llu exceeds the %llu-byte limit", fname, (unsigned long long)hn,
                (unsigned long long)LMP_ST_MAX_HEADER);
    LMP_FAIL_IF(hn > len - 8, LMP_ERR_FORMAT,
                "%s: header length %llu exceeds the file (%zu bytes after the length)", fname,
                (unsigned long long)hn, len - 8);
    const uint8_t *hdr = buf + 8;
    const uint8_t *data = hdr + hn;
    uint64_t bufsz = (uint64_t)(len - 8 - hn);
    lmp_status jr = json_bytes_ok(hdr, (size_t)hn, 1, msg, sizeof msg);
    LMP_FAIL_IF(jr != LMP_OK, jr, "%s: %s", fname, msg);

    root = cJSON_ParseWithLength((const char *)hdr, (size_t)hn);
    LMP_FAIL_IF(!root, LMP_ERR_FORMAT, "%s: header is not valid JSON (cJSON)", fname);
    LMP_FAIL_IF(!cJSON_IsObject(root), LMP_ERR_FORMAT, "%s: header is not a JSON object", fname);

    int have_meta = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            LMP_FAIL_IF(have_meta, LMP_ERR_FORMAT, "%s: duplicate '__metadata__'", fname);
            have_meta = 1;
            if (m) LMP_FORWARD(parse_meta(c, fname, m, d));
            else {
                st_meta tmp = {0};
                rc = parse_meta(c, fname, &tmp, d);
                meta_free(&tmp);
                if (rc != LMP_OK) goto out;
            }
            continue;
        }
        LMP_FORWARD(parse_entry(c, fname, bufsz, shard, tv, d));
    }

    size_t n = tv->n - first;
    st_ent *e = tv->e + first;
    if (n) {
        names = malloc(n * sizeof *names);
        LMP_FAIL_IF(!names, LMP_ERR_NOMEM, "%s: out of memory", fname);
        for (size_t i = 0; i < n; i++) names[i] = e[i].t.name;
        qsort(names, n, sizeof *names, cmp_str_ptr);
        for (size_t i = 1; i < n; i++) {
            char nb[SHOWN_BUF];
            LMP_FAIL_IF(strcmp(names[i - 1], names[i]) == 0, LMP_ERR_FORMAT,
                        "%s: duplicate tensor name '%s'", fname, shown(names[i], nb, sizeof nb));
        }
        qsort(e, n, sizeof *e, cmp_ent_offset);
    }
    /* tile the buffer: each tensor starts where the previous one ended */
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        char nb[SHOWN_BUF], pb[SHOWN_BUF];
        const char *sn = shown(e[i].t.name, nb, sizeof nb);
        if (e[i].begin > pos) {
            if (i == 0)
                LMP_FAIL(LMP_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu) leave a gap: buffer bytes [0,%llu) belong to no tensor",
                         fname, sn, (unsigned long long)e[i].begin, (unsigned long long)e[i].end,
                         (unsigned long long)e[i].begin);
            LMP_FAIL(LMP_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu) leave a gap after tensor '%s' ending at %llu",
                     fname, sn, (unsigned long long)e[i].begin, (unsigned long long)e[i].end,
                     shown(e[i - 1].t.name, pb, sizeof pb), (unsigned long long)pos);
        }
        LMP_FAIL_IF(e[i].begin < pos, LMP_ERR_FORMAT,
                    "%s: tensor '%s': data_offsets [%llu,%llu) overlap tensor '%s' [%llu,%llu)", fname, sn,
                    (unsigned long long)e[i].begin, (unsigned long long)e[i].end,
                    shown(e[i - 1].t.name, pb, sizeof pb), (unsigned long long)e[i - 1].begin,
                    (unsigned long long)e[i - 1].end);
        pos = e[i].end;
        e[i].t.data = e[i].t.nbytes ? data + e[i].begin : NULL;
    }
    LMP_FAIL_IF(pos != bufsz, LMP_ERR_FORMAT,
                "%s: %llu trailing bytes in the data buffer: tensors cover %llu of %llu bytes", fname,
                (unsigned long long)(bufsz - pos), (unsigned long long)pos, (unsigned long long)bufsz);
out:
    free(names);
    cJSON_Delete(root);
    return rc;
}

lmp_status lmp_st_check_bytes(const uint8_t *buf, size_t len, const char *fname, lmp_diag *d)
{
    st_vec tv = {0};
    st_meta m = {0};
    lmp_status rc = parse_image(buf, len, fname ? fname : "(memory)", 0, &tv, &m, d);
    vec_free_names(&tv, 0);
    free(tv.e);
    meta_free(&m);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Sets */

typedef struct st_file {
    char *name; /* as given (single file) or as in the index */
    char *path; /* opened path */
    lmp_map map;
    st_meta meta;
} st_file;

struct lmp_st {
    size_t nfiles;
    st_file *f;
    size_t n;
    lmp_st_tensor *t;
    const lmp_st_tensor **byname; /* sorted by name, for bsearch */
};

void lmp_st_close(lmp_st *st)
{
    if (!st) return;
    for (size_t i = 0; i < st->nfiles; i++) {
        free(st->f[i].name);
        free(st->f[i].path);
        lmp_map_close(&st->f[i].map);
        meta_free(&st->f[i].meta);
    }
    for (size_t i = 0; i < st->n; i++) free((char *)st->t[i].name);
    free(st->f);
    free(st->t);
    free(st->byname);
    free(st);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const lmp_st_tensor *x = *(const lmp_st_tensor *const *)a, *y = *(const lmp_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_tensor_name_shard(const void *a, const void *b)
{
    const lmp_st_tensor *x = *(const lmp_st_tensor *const *)a, *y = *(const lmp_st_tensor *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->shard > y->shard) - (x->shard < y->shard);
}

/* Move the parsed entries into st and build the name index. */
static lmp_status st_finish(lmp_st *st, st_vec *tv, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    st->t = malloc((tv->n ? tv->n : 1) * sizeof *st->t);
    st->byname = malloc((tv->n ? tv->n : 1) * sizeof *st->byname);
    LMP_FAIL_IF(!st->t || !st->byname, LMP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < tv->n; i++) st->t[i] = tv->e[i].t;
    st->n = tv->n;
    tv->n = 0; /* names now owned by st */
    for (size_t i = 0; i < st->n; i++) st->byname[i] = &st->t[i];
    qsort(st->byname, st->n, sizeof *st->byname, cmp_tensor_name);
out:
    return rc;
}

static lmp_status add_file(lmp_st *st, const char *name, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    st_file *nf = realloc(st->f, (st->nfiles + 1) * sizeof *nf);
    LMP_FAIL_IF(!nf, LMP_ERR_NOMEM, "%s: out of memory", path);
    st->f = nf;
    memset(&st->f[st->nfiles], 0, sizeof *nf);
    st->nfiles++;
    st_file *f = &st->f[st->nfiles - 1];
    f->name = strdup(name);
    f->path = strdup(path);
    LMP_FAIL_IF(!f->name || !f->path, LMP_ERR_NOMEM, "%s: out of memory", path);
    LMP_FORWARD(lmp_map_open(&f->map, path, d));
out:
    return rc;
}

static lmp_status open_single(lmp_st *st, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    st_vec tv = {0};
    LMP_FORWARD(add_file(st, path, path, d));
    LMP_FORWARD(parse_image(st->f[0].map.data, st->f[0].map.size, path, 0, &tv, &st->f[0].meta, d));
    LMP_FORWARD(st_finish(st, &tv, d));
out:
    vec_free_names(&tv, 0);
    free(tv.e);
    return rc;
}

typedef struct idx_ent {
    const char *tensor;
    const char *shard_name;
    int shard;
} idx_ent;

static int cmp_idx_tensor(const void *a, const void *b)
{
    return strcmp(((const idx_ent *)a)->tensor, ((const idx_ent *)b)->tensor);
}

static int cmp_idx_shard(const void *a, const void *b)
{
    return strcmp(((const idx_ent *)a)->shard_name, ((const idx_ent *)b)->shard_name);
}

static int plain_file_name(const char *s)
{
    return s[0] && strchr(s, '/') == NULL && strchr(s, '\\') == NULL && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

static lmp_status open_index(lmp_st *st, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *text = NULL, *dir = NULL, *spath = NULL;
    size_t tlen = 0, n = 0;
    cJSON *root = NULL;
    idx_ent *ix = NULL;
    st_vec tv = {0};
    const lmp_st_tensor **sorted = NULL;
    char msg[400], nb[SHOWN_BUF], sb[SHOWN_BUF];

    LMP_FORWARD(lmp_read_file(path, MAX_INDEX_BYTES, &text, &tlen, d));
    lmp_status jr = json_bytes_ok((const uint8_t *)text, tlen, 0, msg, sizeof msg);
    LMP_FAIL_IF(jr != LMP_OK, jr, "%s: %s", path, msg);
    root = cJSON_ParseWithLength(text, tlen);
    LMP_FAIL_IF(!root || !cJSON_IsObject(root), LMP_ERR_FORMAT, "%s: not a JSON object", path);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    LMP_FAIL_IF(!cJSON_IsObject(wm), LMP_ERR_FORMAT, "%s: missing 'weight_map' object", path);
    for (const cJSON *c = wm->child; c; c = c->next) n++;
    LMP_FAIL_IF(n == 0, LMP_ERR_FORMAT, "%s: 'weight_map' is empty", path);
    ix = calloc(n, sizeof *ix);
    LMP_FAIL_IF(!ix, LMP_ERR_NOMEM, "%s: out of memory", path);
    size_t i = 0;
    for (const cJSON *c = wm->child; c; c = c->next, i++) {
        const char *sn = shown(c->string, nb, sizeof nb);
        LMP_FAIL_IF(!cJSON_IsString(c), LMP_ERR_FORMAT, "%s: weight_map: tensor '%s': shard is not a string",
                    path, sn);
        LMP_FAIL_IF(!plain_file_name(c->valuestring), LMP_ERR_FORMAT,
                    "%s: weight_map: tensor '%s': shard name '%s' must be a plain file name (no '/', '..')",
                    path, sn, shown(c->valuestring, sb, sizeof sb));
        ix[i].tensor = c->string;
        ix[i].shard_name = c->valuestring;
    }
    /* shards in sorted name order; each mapped once */
    qsort(ix, n, sizeof *ix, cmp_idx_shard);
    {
        const char *slash = strrchr(path, '/');
        dir = slash ? strndup(path, (size_t)(slash - path + (slash == path))) : strdup(".");
        LMP_FAIL_IF(!dir, LMP_ERR_NOMEM, "%s: out of memory", path);
    }
    for (i = 0; i < n; i++) {
        if (i > 0 && strcmp(ix[i].shard_name, ix[i - 1].shard_name) == 0) {
            ix[i].shard = ix[i - 1].shard;
            continue;
        }
        free(spath);
        spath = lmp_path_join(dir, ix[i].shard_name);
        LMP_FAIL_IF(!spath, LMP_ERR_NOMEM, "%s: out of memory", path);
        LMP_FORWARD(add_file(st, ix[i].shard_name, spath, d));
        ix[i].shard = (int)st->nfiles - 1;
        st_file *f = &st->f[st->nfiles - 1];
        LMP_FORWARD(parse_image(f->map.data, f->map.size, f->path, ix[i].shard, &tv, &f->meta, d));
    }
    qsort(ix, n, sizeof *ix, cmp_idx_tensor);
    for (i = 1; i < n; i++)
        LMP_FAIL_IF(strcmp(ix[i - 1].tensor, ix[i].tensor) == 0, LMP_ERR_FORMAT,
                    "%s: weight_map lists tensor '%s' twice", path, shown(ix[i].tensor, nb, sizeof nb));

    /* cross-check shards against the index: walk both lists sorted by name */
    sorted = malloc((tv.n ? tv.n : 1) * sizeof *sorted);
    LMP_FAIL_IF(!sorted, LMP_ERR_NOMEM, "%s: out of memory", path);
    for (i = 0; i < tv.n; i++) sorted[i] = &tv.e[i].t;
    qsort(sorted, tv.n, sizeof *sorted, cmp_tensor_name_shard);
    for (i = 1; i < tv.n; i++)
        LMP_FAIL_IF(strcmp(sorted[i - 1]->name, sorted[i]->name) == 0, LMP_ERR_FORMAT,
                    "%s: tensor '%s' is in both %s and %s", path, shown(sorted[i]->name, nb, sizeof nb),
                    st->f[sorted[i - 1]->shard].name, st->f[sorted[i]->shard].name);
    size_t a = 0, b = 0;
    while (a < tv.n || b < n) {
        int c = a == tv.n ? 1 : b == n ? -1 : strcmp(sorted[a]->name, ix[b].tensor);
        if (c < 0)
            LMP_FAIL(LMP_ERR_FORMAT, "%s: tensor '%s' is not listed in the index %s",
                     st->f[sorted[a]->shard].path, shown(sorted[a]->name, nb, sizeof nb), path);
        if (c > 0)
            LMP_FAIL(LMP_ERR_FORMAT, "%s: tensor '%s' is listed in shard %s, which does not hold it", path,
                     shown(ix[b].tensor, nb, sizeof nb), ix[b].shard_name);
        LMP_FAIL_IF(sorted[a]->shard != ix[b].shard, LMP_ERR_FORMAT,
                    "%s: tensor '%s' is listed in shard %s but found in %s", path,
                    shown(ix[b].tensor, nb, sizeof nb), ix[b].shard_name, st->f[sorted[a]->shard].name);
        a++;
        b++;
    }
    LMP_FORWARD(st_finish(st, &tv, d));
out:
    vec_free_names(&tv, 0);
    free(tv.e);
    free(sorted);
    free(ix);
    free(spath);
    free(dir);
    cJSON_Delete(root);
    free(text);
    return rc;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Folder: index, else model.safetensors, else the only *.safetensors. */
static lmp_status open_dir(lmp_st *st, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *p = lmp_path_join(path, "model.safetensors.index.json");
    char *only = NULL;
    DIR *dp = NULL;
    LMP_FAIL_IF(!p, LMP_ERR_NOMEM, "%s: out of memory", path);
    if (lmp_exists(p)) {
        rc = open_index(st, p, d);
        goto out;
    }
    free(p);
    p = lmp_path_join(path, "model.safetensors");
    LMP_FAIL_IF(!p, LMP_ERR_NOMEM, "%s: out of memory", path);
    if (lmp_exists(p)) {
        rc = open_single(st, p, d);
        goto out;
    }
    dp = opendir(path);
    LMP_FAIL_IF(!dp, LMP_ERR_IO, "%s: cannot list the folder", path);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".safetensors")) continue;
        count++;
        free(only);
        only = strdup(e->d_name);
        LMP_FAIL_IF(!only, LMP_ERR_NOMEM, "%s: out of memory", path);
    }
    LMP_FAIL_IF(count != 1, LMP_ERR_IO,
                "%s: no model.safetensors.index.json or model.safetensors, and %d other *.safetensors files (need exactly one)",
                path, count);
    free(p);
    p = lmp_path_join(path, only);
    LMP_FAIL_IF(!p, LMP_ERR_NOMEM, "%s: out of memory", path);
    rc = open_single(st, p, d);
out:
    if (dp) closedir(dp);
    free(only);
    free(p);
    return rc;
}

lmp_status lmp_st_open(lmp_st **out, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    *out = NULL;
    lmp_st *st = calloc(1, sizeof *st);
    LMP_FAIL_IF(!st, LMP_ERR_NOMEM, "%s: out of memory", path);
    if (lmp_is_dir(path))
        LMP_FORWARD(open_dir(st, path, d));
    else if (ends_with(path, ".json"))
        LMP_FORWARD(open_index(st, path, d));
    else
        LMP_FORWARD(open_single(st, path, d));
    *out = st;
    st = NULL;
out:
    lmp_st_close(st);
    return rc;
}

size_t lmp_st_count(const lmp_st *st) { return st ? st->n : 0; }

const lmp_st_tensor *lmp_st_at(const lmp_st *st, size_t i)
{
    return st && i < st->n ? &st->t[i] : NULL;
}

const lmp_st_tensor *lmp_st_find(const lmp_st *st, const char *name)
{
    if (!st || !name || st->n == 0) return NULL;
    lmp_st_tensor key;
    key.name = name;
    const lmp_st_tensor *kp = &key;
    const lmp_st_tensor **hit = bsearch(&kp, st->byname, st->n, sizeof *st->byname, cmp_tensor_name);
    return hit ? *hit : NULL;
}

size_t lmp_st_nfiles(const lmp_st *st) { return st ? st->nfiles : 0; }

const char *lmp_st_file(const lmp_st *st, size_t i)
{
    return st && i < st->nfiles ? st->f[i].name : NULL;
}

size_t lmp_st_meta_count(const lmp_st *st, int shard)
{
    if (!st || shard < 0 || (size_t)shard >= st->nfiles) return 0;
    return st->f[shard].meta.n;
}

void lmp_st_meta_at(const lmp_st *st, int shard, size_t i, const char **key, const char **val)
{
    const char *k = NULL, *v = NULL;
    if (st && shard >= 0 && (size_t)shard < st->nfiles && i < st->f[shard].meta.n) {
        k = st->f[shard].meta.key[i];
        v = st->f[shard].meta.val[i];
    }
    if (key) *key = k;
    if (val) *val = v;
}

void lmp_st_release(const lmp_st *st, const lmp_st_tensor *t)
{
    if (!st || !t || !t->data || t->shard < 0 || (size_t)t->shard >= st->nfiles) return;
    const lmp_map *m = &st->f[t->shard].map;
    if (t->data < m->data || t->data >= m->data + m->size) return;
    lmp_map_release(m, (size_t)(t->data - m->data), (size_t)t->nbytes);
}

lmp_status lmp_st_to_f32(const lmp_st_tensor *t, float *dst, lmp_diag *d)
{
    char nb[SHOWN_BUF];
    if (t->dtype != LMP_DT_F32 && t->dtype != LMP_DT_F16 && t->dtype != LMP_DT_BF16)
        return lmp_fail(d, LMP_ERR_UNSUPPORTED, "tensor '%s': dtype %s cannot be converted to float32",
                        shown(t->name, nb, sizeof nb), lmp_dtype_name(t->dtype));
    if (t->nelem) lmp_to_f32(t->dtype, t->data, dst, (size_t)t->nelem);
    return LMP_OK;
}

/* ------------------------------------------------------------------------ */
/* Writer */

struct lmp_stw {
    lmp_out out;
    uint64_t total, written;
};

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *s, const char *b, size_t k)
{
    if (s->oom) return;
    if (s->n + k + 1 > s->cap) {
        size_t nc = s->cap ? s->cap : 256;
        while (nc < s->n + k + 1) nc *= 2;
        char *np = realloc(s->p, nc);
        if (!np) {
            s->oom = 1;
            return;
        }
        s->p = np;
        s->cap = nc;
    }
    memcpy(s->p + s->n, b, k);
    s->n += k;
    s->p[s->n] = '\0';
}

static void sb_str(sbuf *s, const char *t) { sb_put(s, t, strlen(t)); }

/* JSON string literal: escape '"', '\\' and control characters. */
static void sb_json(sbuf *s, const char *t)
{
    sb_put(s, "\"", 1);
    for (; *t; t++) {
        unsigned char c = (unsigned char)*t;
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            sb_put(s, e, 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            sb_put(s, e, 6);
        } else {
            sb_put(s, (const char *)&c, 1);
        }
    }
    sb_put(s, "\"", 1);
}

static int valid_utf8_str(const char *s)
{
    size_t n = strlen(s);
    return utf8_check((const uint8_t *)s, n) == n;
}

lmp_status lmp_stw_open(lmp_stw **out, const char *path, const lmp_stw_desc *descs, size_t n,
                        const char *const *meta_kv, size_t n_meta, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    sbuf h = {0};
    const char **names = NULL;
    lmp_stw *w = NULL;
    char nb[SHOWN_BUF];
    *out = NULL;
    LMP_FAIL_IF(n && !descs, LMP_ERR_ARG, "%s: no tensor descriptions", path);
    LMP_FAIL_IF(n_meta && !meta_kv, LMP_ERR_ARG, "%s: no metadata pairs", path);

    /* validate the descriptions before touching the file system */
    if (n) {
        names = malloc(n * sizeof *names);
        LMP_FAIL_IF(!names, LMP_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < n; i++) {
        const lmp_stw_desc *t = &descs[i];
        LMP_FAIL_IF(!t->name, LMP_ERR_ARG, "%s: tensor %zu has no name", path, i);
        const char *sn = shown(t->name, nb, sizeof nb);
        LMP_FAIL_IF(!valid_utf8_str(t->name) || strcmp(t->name, "__metadata__") == 0, LMP_ERR_ARG,
                    "%s: tensor '%s': name must be UTF-8 and not '__metadata__'", path, sn);
        LMP_FAIL_IF((unsigned)t->dtype >= LMP_DT_COUNT, LMP_ERR_ARG, "%s: tensor '%s': bad dtype %d", path,
                    sn, (int)t->dtype);
        LMP_FAIL_IF(t->ndim < 0 || t->ndim > LMP_ST_MAX_DIMS, LMP_ERR_ARG,
                    "%s: tensor '%s': ndim %d outside 0..%d", path, sn, t->ndim, LMP_ST_MAX_DIMS);
        names[i] = t->name;
    }
    if (n) {
        qsort(names, n, sizeof *names, cmp_str_ptr);
        for (size_t i = 1; i < n; i++)
            LMP_FAIL_IF(strcmp(names[i - 1], names[i]) == 0, LMP_ERR_ARG, "%s: duplicate tensor name '%s'",
                        path, shown(names[i], nb, sizeof nb));
    }
    for (size_t i = 0; i < n_meta; i++) {
        const char *k = meta_kv[2 * i], *v = meta_kv[2 * i + 1];
        LMP_FAIL_IF(!k || !v || !valid_utf8_str(k) || !valid_utf8_str(v), LMP_ERR_ARG,
                    "%s: __metadata__ pair %zu is not two UTF-8 strings", path, i);
        for (size_t j = 0; j < i; j++)
            LMP_FAIL_IF(strcmp(meta_kv[2 * j], k) == 0, LMP_ERR_ARG, "%s: __metadata__: duplicate key '%s'",
                        path, shown(k, nb, sizeof nb));
    }

    /* header */
    uint64_t off = 0;
    sb_str(&h, "{");
    if (n_meta) {
        sb_str(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i) sb_str(&h, ",");
            sb_json(&h, meta_kv[2 * i]);
            sb_str(&h, ":");
            sb_json(&h, meta_kv[2 * i + 1]);
        }
        sb_str(&h, "}");
    }
    for (size_t i = 0; i < n; i++) {
        const lmp_stw_desc *t = &descs[i];
        const char *sn = shown(t->name, nb, sizeof nb);
        char num[64];
        uint64_t ne = 1;
        int zero = 0, over = 0;
        if (i || n_meta) sb_str(&h, ",");
        sb_json(&h, t->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, lmp_dtype_name(t->dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int k = 0; k < t->ndim; k++) {
            int64_t x = t->shape[k];
            LMP_FAIL_IF(x < 0 || (uint64_t)x > MAX_SAFE_INT, LMP_ERR_ARG,
                        "%s: tensor '%s': dimension %d is %lld", path, sn, k, (long long)x);
            if (x == 0) zero = 1;
            else if (ne > UINT64_MAX / (uint64_t)x) over = 1;
            else ne *= (uint64_t)x;
            snprintf(num, sizeof num, "%s%lld", k ? "," : "", (long long)x);
            sb_str(&h, num);
        }
        if (zero) ne = 0, over = 0;
        size_t es = lmp_dtype_size(t->dtype);
        LMP_FAIL_IF(over || ne > UINT64_MAX / es || ne * es > MAX_SAFE_INT - off, LMP_ERR_ARG,
                    "%s: tensor '%s': size overflows", path, sn);
        uint64_t nbytes = ne * es;
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + nbytes));
        sb_str(&h, num);
        off += nbytes;
    }
    sb_str(&h, "}");
    while (!h.oom && (8 + h.n) % 8 != 0) sb_str(&h, " ");
    LMP_FAIL_IF(h.oom, LMP_ERR_NOMEM, "%s: out of memory building the header", path);
    LMP_FAIL_IF(h.n > LMP_ST_MAX_HEADER, LMP_ERR_ARG, "%s: header of %zu bytes exceeds the %llu-byte limit",
                path, h.n, (unsigned long long)LMP_ST_MAX_HEADER);

    w = calloc(1, sizeof *w);
    LMP_FAIL_IF(!w, LMP_ERR_NOMEM, "%s: out of memory", path);
    w->total = off;
    LMP_FORWARD(lmp_out_open(&w->out, path, d));
    uint8_t len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (uint8_t)((uint64_t)h.n >> (8 * k));
    LMP_FORWARD(lmp_out_write(&w->out, len8, 8, d));
    LMP_FORWARD(lmp_out_write(&w->out, h.p, h.n, d));
    *out = w;
    w = NULL;
out:
    lmp_stw_abort(w);
    free(names);
    free(h.p);
    return rc;
}

lmp_status lmp_stw_write(lmp_stw *w, const void *data, size_t nbytes, lmp_diag *d)
{
    if (nbytes > w->total - w->written)
        return lmp_fail(d, LMP_ERR_ARG, "%s: writing %zu more bytes exceeds the declared %llu (%llu written)",
                        w->out.path ? w->out.path : "safetensors output", nbytes,
                        (unsigned long long)w->total, (unsigned long long)w->written);
    lmp_status rc = lmp_out_write(&w->out, data, nbytes, d);
    if (rc == LMP_OK) w->written += nbytes;
    return rc;
}

lmp_status lmp_stw_finish(lmp_stw *w, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    LMP_FAIL_IF(w->written != w->total, LMP_ERR_ARG, "%s: %llu tensor bytes written, %llu declared",
                w->out.path ? w->out.path : "safetensors output", (unsigned long long)w->written,
                (unsigned long long)w->total);
    LMP_FORWARD(lmp_out_commit(&w->out, d));
out:
    lmp_stw_abort(w);
    return rc;
}

void lmp_stw_abort(lmp_stw *w)
{
    if (!w) return;
    lmp_out_abort(&w->out);
    free(w);
}
