/* formats/safetensors: the fixtures, a malformed-input suite, valid edge
 * cases, sharded sets and the writer.
 *
 * Where numbers come from:
 * - tensor counts: counted from the files' own headers with
 *     python3 -c 'import json,struct,sys; b=open(sys.argv[1],"rb").read();
 *       n=struct.unpack("<Q",b[:8])[0]; print(len([k for k in json.loads(b[8:8+n]) if k!="__metadata__"]))' F
 * - element values: the raw little-endian bytes at data_offsets[0] + i*size,
 *   read once with python (struct.unpack) and written here as bit patterns
 *   together with their exact decimal value;
 * - malformed inputs: each breaks one rule of the format (safetensors.h).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "formats/safetensors.h"
#include "tests/testutil.h"

static float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A file image: u64 len (lenfield, or hlen if lenfield < 0) + header + data_len pattern bytes. */
static uint8_t *mk(const char *hdr, size_t hlen, int64_t lenfield, size_t data_len, size_t *outlen)
{
    size_t n = 8 + hlen + data_len;
    uint8_t *b = malloc(n ? n : 1);
    uint64_t lf = lenfield < 0 ? hlen : (uint64_t)lenfield;
    for (int k = 0; k < 8; k++) b[k] = (uint8_t)(lf >> (8 * k));
    memcpy(b + 8, hdr, hlen);
    for (size_t i = 0; i < data_len; i++) b[8 + hlen + i] = (uint8_t)(i * 7 + 1);
    *outlen = n;
    return b;
}

static void write_st(const char *dir, const char *name, const char *hdr, size_t data_len)
{
    size_t n;
    uint8_t *b = mk(hdr, strlen(hdr), -1, data_len, &n);
    char *p = lmp_path_join(dir, name);
    t_write(p, b, n);
    free(p);
    free(b);
}

#define E(n, dt, sh, b, e) \
    "\"" n "\":{\"dtype\":\"" dt "\",\"shape\":" sh ",\"data_offsets\":[" #b "," #e "]}"

/* ------------------------------------------------------------------------ */
/* Fixtures */

static const lmp_st_tensor *must_find(const lmp_st *st, const char *name)
{
    const lmp_st_tensor *t = lmp_st_find(st, name);
    ck_assert_msg(t != NULL, "tensor %s not found", name);
    return t;
}

/* Every tensor is findable by name and listed by shard, then offset. */
static void check_index_consistent(const lmp_st *st)
{
    size_t n = lmp_st_count(st);
    for (size_t i = 0; i < n; i++) {
        const lmp_st_tensor *t = lmp_st_at(st, i);
        ck_assert_ptr_eq(lmp_st_find(st, t->name), t);
        ck_assert_int_lt(t->shard, (int)lmp_st_nfiles(st));
        uint64_t ne = 1;
        for (int k = 0; k < t->ndim; k++) ne *= (uint64_t)t->shape[k];
        ck_assert_uint_eq(ne, t->nelem);
        ck_assert_uint_eq(t->nbytes, ne * lmp_dtype_size(t->dtype));
        if (i > 0) {
            const lmp_st_tensor *p = lmp_st_at(st, i - 1);
            ck_assert_int_le(p->shard, t->shard);
            if (p->shard == t->shard && p->data && t->data) ck_assert(p->data + p->nbytes == t->data);
        }
    }
    ck_assert_ptr_null(lmp_st_at(st, n));
    ck_assert_ptr_null(lmp_st_find(st, "no.such.tensor"));
}

static float elem(const lmp_st_tensor *t, size_t i)
{
    float *buf = malloc(t->nelem * sizeof *buf);
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_st_to_f32(t, buf, &d), LMP_OK);
    float v = buf[i];
    free(buf);
    return v;
}

START_TEST(fixture_stories260k)
{
    lmp_st *st = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_st_open(&st, t_data("stories260k"), &d) == LMP_OK, "%s", d.msg);
    ck_assert_uint_eq(lmp_st_count(st), 47); /* python header count */
    ck_assert_uint_eq(lmp_st_nfiles(st), 1);
    ck_assert(strstr(lmp_st_file(st, 0), "model.safetensors") != NULL);
    ck_assert_uint_eq(lmp_st_meta_count(st, 0), 1);
    const char *k, *v;
    lmp_st_meta_at(st, 0, 0, &k, &v);
    ck_assert_str_eq(k, "format");
    ck_assert_str_eq(v, "pt");
    check_index_consistent(st);
    const lmp_st_tensor *t = must_find(st, "model.embed_tokens.weight");
    ck_assert_int_eq(t->dtype, LMP_DT_F32);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[0], 512);
    ck_assert_int_eq(t->shape[1], 64);
    /* bytes 50 e9 96 be = -0.29474878311157227; 64 d8 0f 3f = 0.5618956089019775;
     * element 32767: cd 1a d9 be = -0.424032598733902 */
    ck_assert(elem(t, 0) == bitsf(0xbe96e950u));
    ck_assert(elem(t, 1) == bitsf(0x3f0fd864u));
    ck_assert(elem(t, 32767) == bitsf(0xbed91acdu));
    ck_assert(fabsf(elem(t, 0) - -0.29474878f) < 1e-7f);
    t = must_find(st, "model.norm.weight");
    ck_assert(elem(t, 0) == bitsf(0x401d54efu)); /* ef 54 1d 40 = 2.4583089351654053 */
    ck_assert(elem(t, 63) == bitsf(0x3fda986fu)); /* 6f 98 da 3f = 1.7077769041061401 */
    ck_assert_ptr_null(lmp_st_find(st, "lm_head.weight")); /* tied */
    lmp_st_close(st);

    ck_assert_msg(lmp_st_open(&st, t_data("stories260k/golden.safetensors"), &d) == LMP_OK, "%s", d.msg);
    ck_assert_uint_eq(lmp_st_count(st), 25); /* python header count */
    check_index_consistent(st);
    t = must_find(st, "prompt0.ids");
    ck_assert_int_eq(t->dtype, LMP_DT_I32);
    ck_assert_int_eq(t->ndim, 1);
    ck_assert_int_eq(t->shape[0], 1);
    ck_assert(t->data[0] == 1 && t->data[1] == 0 && t->data[2] == 0 && t->data[3] == 0); /* BOS id 1 */
    lmp_diag_clear(&d);
    float f;
    ck_assert_int_eq(lmp_st_to_f32(t, &f, &d), LMP_ERR_UNSUPPORTED);
    ck_assert(strstr(d.msg, "tensor 'prompt0.ids': dtype I32 cannot be converted") != NULL);
    lmp_st_meta_at(st, 0, 0, &k, &v);
    ck_assert_str_eq(k, "model");
    ck_assert_str_eq(v, "stories260k");
    lmp_st_close(st);
}
END_TEST

START_TEST(fixture_tiny_smollm)
{
    lmp_st *st = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_st_open(&st, t_data("tiny-smollm-bf16"), &d) == LMP_OK, "%s", d.msg);
    ck_assert_uint_eq(lmp_st_count(st), 38); /* python header count */
    check_index_consistent(st);
    const lmp_st_tensor *t = must_find(st, "model.embed_tokens.weight");
    ck_assert_int_eq(t->dtype, LMP_DT_BF16);
    ck_assert_int_eq(t->shape[0], 4096);
    ck_assert_int_eq(t->shape[1], 192);
    /* bytes cc bc, 6a bd, last 89 3d: bf16 0xbccc, 0xbd6a, 0x3d89 */
    ck_assert(elem(t, 0) == -0.02490234375f);
    ck_assert(elem(t, 1) == -0.05712890625f);
    ck_assert(elem(t, 4096 * 192 - 1) == 0.06689453125f);
    lmp_st_close(st);

    ck_assert_msg(lmp_st_open(&st, t_data("tiny-smollm-f16/model.safetensors"), &d) == LMP_OK, "%s", d.msg);
    ck_assert_uint_eq(lmp_st_count(st), 38); /* python header count */
    check_index_consistent(st);
    t = must_find(st, "model.embed_tokens.weight");
    ck_assert_int_eq(t->dtype, LMP_DT_F16);
    /* bytes 60 a6, 4d ab, last 4a 2c: f16 0xa660, 0xab4d, 0x2c4a */
    ck_assert(elem(t, 0) == -0.02490234375f);
    ck_assert(elem(t, 1) == -0.057037353515625f);
    ck_assert(elem(t, 4096 * 192 - 1) == 0.0670166015625f);
    lmp_st_close(st);

    static const struct { const char *p; size_t n; } golden[] = {
        {"tiny-smollm-bf16/golden.safetensors", 24}, /* python header counts */
        {"tiny-smollm-f16/golden.safetensors", 16},
        {"tiny-untied-f32-sharded/golden.safetensors", 11},
    };
    for (size_t i = 0; i < 3; i++) {
        ck_assert_msg(lmp_st_open(&st, t_data(golden[i].p), &d) == LMP_OK, "%s", d.msg);
        ck_assert_uint_eq(lmp_st_count(st), golden[i].n);
        check_index_consistent(st);
        lmp_st_close(st);
    }
}
END_TEST

static void check_sharded(lmp_st *st)
{
    ck_assert_uint_eq(lmp_st_count(st), 21); /* python: 5 + 9 + 6 + 1 tensors in the shards */
    ck_assert_uint_eq(lmp_st_nfiles(st), 4);
    static const size_t per[4] = {5, 9, 6, 1};
    for (size_t f = 0; f < 4; f++) {
        char want[64];
        snprintf(want, sizeof want, "model-0000%zu-of-00004.safetensors", f + 1);
        ck_assert_str_eq(lmp_st_file(st, f), want);
        size_t c = 0;
        for (size_t i = 0; i < lmp_st_count(st); i++) c += lmp_st_at(st, i)->shard == (int)f;
        ck_assert_uint_eq(c, per[f]);
        ck_assert_uint_eq(lmp_st_meta_count(st, (int)f), 1);
    }
    check_index_consistent(st);
    ck_assert_str_eq(lmp_st_at(st, 0)->name, "model.embed_tokens.weight"); /* shard 1, offset 0 */
    ck_assert_str_eq(lmp_st_at(st, 5)->name, "model.layers.0.input_layernorm.weight"); /* shard 2, offset 0 */
    const lmp_st_tensor *t = must_find(st, "lm_head.weight");
    ck_assert_int_eq(t->shard, 3);
    ck_assert_int_eq(t->shape[0], 1000);
    ck_assert_int_eq(t->shape[1], 128);
    /* bytes 11 b4 85 bc = -0.0163212139159441; 12 22 a5 bb = -0.005039461888372898 */
    ck_assert(elem(t, 0) == bitsf(0xbc85b411u));
    ck_assert(elem(t, 1) == bitsf(0xbba52212u));
    /* release drops the pages; the private file mapping reads back the same bytes */
    lmp_st_release(st, t);
    ck_assert(elem(t, 1) == bitsf(0xbba52212u));
}

START_TEST(fixture_sharded)
{
    lmp_st *st = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_st_open(&st, t_data("tiny-untied-f32-sharded"), &d) == LMP_OK, "%s", d.msg);
    check_sharded(st);
    lmp_st_close(st);
    ck_assert_msg(lmp_st_open(&st, t_data("tiny-untied-f32-sharded/model.safetensors.index.json"), &d) ==
                      LMP_OK,
                  "%s", d.msg);
    check_sharded(st);
    lmp_st_close(st);
    /* a single shard alone is a plain file */
    ck_assert_msg(lmp_st_open(&st, t_data("tiny-untied-f32-sharded/model-00004-of-00004.safetensors"), &d) ==
                      LMP_OK,
                  "%s", d.msg);
    ck_assert_uint_eq(lmp_st_count(st), 1);
    lmp_st_close(st);
    lmp_st_close(NULL);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Malformed inputs: each breaks one rule. */

typedef struct bad_case {
    const char *hdr;
    size_t hlen;      /* 0: strlen(hdr) (unless hdr is "") */
    int64_t lenfield; /* -1: hlen */
    size_t data_len;
    size_t trunc;     /* nonzero: keep only this many bytes */
    lmp_status st;
    const char *want;
} bad_case;

#define F LMP_ERR_FORMAT
static const bad_case bad[] = {
    /* 0 */ {"{}", 0, -1, 0, 5, F, "file is 5 bytes, too short for the 8-byte header length"},
    {"{}", 0, 100, 0, 0, F, "header length 100 exceeds the file (2 bytes after the length)"},
    {"{}", 0, 100000001, 0, 0, F, "header length 100000001 exceeds the 100000000-byte limit"},
    {"{}", 0, (int64_t)0x7fffffffffffffffll, 0, 0, F, "exceeds the 100000000-byte limit"},
    {"{\"a\xff\":{}}", 0, -1, 0, 0, F, "header is not valid UTF-8 (byte 3)"},
    /* 5 */ {"{\"\xc0\xaf\":{}}", 0, -1, 0, 0, F, "header is not valid UTF-8 (byte 2)"}, /* overlong '/' */
    {"{\"\xed\xa0\x80\":{}}", 0, -1, 0, 0, F, "header is not valid UTF-8"},             /* surrogate */
    {"{\"a\xe2\x82\":{}}", 0, -1, 0, 0, F, "header is not valid UTF-8"},                 /* truncated */
    {"{\"a\":}", 0, -1, 0, 0, F, "header is not valid JSON: unexpected character at byte 5"},
    {"[]", 0, -1, 0, 0, F, "header is not a JSON object"},
    /* 10 */ {"{" E("a", "F128", "[1]", 0, 4) "}", 0, -1, 4, 0, F, "tensor 'a': unknown dtype 'F128'"},
    {"{" E("a", "f32", "[1]", 0, 4) "}", 0, -1, 4, 0, F, "tensor 'a': unknown dtype 'f32'"},
    {"{" E("a", "F32", "[-1]", 0, 4) "}", 0, -1, 4, 0, F, "tensor 'a': shape: -1 is not a non-negative integer"},
    {"{" E("a", "F32", "[1.5]", 0, 4) "}", 0, -1, 4, 0, F, "tensor 'a': shape: 1.5 is not a non-negative integer"},
    {"{" E("a", "F32", "[1.0]", 0, 4) "}", 0, -1, 4, 0, F, "tensor 'a': shape: 1.0 is not a non-negative integer"},
    /* 15 */ {"{" E("a", "F32", "[1e0]", 0, 4) "}", 0, -1, 4, 0, F, "shape: 1e0 is not a non-negative integer"},
    {"{" E("a", "F32", "[-0]", 0, 4) "}", 0, -1, 4, 0, F, "shape: -0 is not a non-negative integer"},
    {"{" E("a", "F32", "[9007199254740993]", 0, 4) "}", 0, -1, 4, 0, F, "shape: 9007199254740993 exceeds 2^53"},
    {"{" E("a", "F32", "[\"1\"]", 0, 4) "}", 0, -1, 4, 0, F, "shape: dimension 0 is not a non-negative integer"},
    {"{" E("a", "F32", "4", 0, 16) "}", 0, -1, 16, 0, F, "tensor 'a': shape is not an array"},
    /* 20 */ {"{" E("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 0, -1, 4, 0, LMP_ERR_UNSUPPORTED,
     "tensor 'a': shape has 9 dimensions, more than the 8 supported"},
    {"{" E("a", "F32", "[1]", 4, 0) "}", 0, -1, 4, 0, F, "tensor 'a': data_offsets [4,0) are reversed (begin > end)"},
    {"{" E("a", "F32", "[1]", -4, 0) "}", 0, -1, 4, 0, F, "tensor 'a': data_offsets: -4 is not a non-negative integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 0, -1, 4, 0, F,
     "tensor 'a': data_offsets is not an array [begin, end]"},
    {"{" E("a", "F32", "[2]", 0, 4) "}", 0, -1, 4, 0, F,
     "tensor 'a': shape [2] of F32 needs 8 bytes but data_offsets [0,4) hold 4"},
    /* 25 */ {"{" E("a", "F32", "[4294967296,4294967296]", 0, 4) "}", 0, -1, 4, 0, F,
     "tensor 'a': shape [4294967296,4294967296]: element count overflows 64 bits"},
    {"{" E("a", "F32", "[4294967296,2147483648]", 0, 4) "}", 0, -1, 4, 0, F,
     "shape [4294967296,2147483648] of F32: byte size overflows 64 bits"},
    {"{" E("x", "F32", "[4]", 0, 16) "}", 0, -1, 8, 0, F, "tensor 'x': data_offsets [0,16) exceed the 8-byte buffer"},
    {"{" E("a", "F32", "[1]", 0, 4) "," E("b", "F32", "[1]", 8, 12) "}", 0, -1, 12, 0, F,
     "tensor 'b': data_offsets [8,12) leave a gap after tensor 'a' ending at 4"},
    {"{" E("a", "F32", "[1]", 4, 8) "}", 0, -1, 8, 0, F, "buffer bytes [0,4) belong to no tensor"},
    /* 30 */ {"{" E("a", "F32", "[2]", 0, 8) "," E("b", "F32", "[2]", 4, 12) "}", 0, -1, 12, 0, F,
     "tensor 'b': data_offsets [4,12) overlap tensor 'a' [0,8)"},
    {"{" E("a", "F32", "[1]", 0, 4) "}", 0, -1, 8, 0, F, "4 trailing bytes in the data buffer: tensors cover 4 of 8"},
    {"{}", 0, -1, 3, 0, F, "3 trailing bytes in the data buffer"},
    {"{" E("a", "F32", "[1]", 0, 4) "," E("a", "F32", "[1]", 4, 8) "}", 0, -1, 8, 0, F, "duplicate tensor name 'a'"},
    {"{\"__metadata__\":{\"k\":1}}", 0, -1, 0, 0, F, "__metadata__ value of 'k' is not a string"},
    /* 35 */ {"{\"__metadata__\":[\"x\"]}", 0, -1, 0, 0, F, "__metadata__ is not a JSON object"},
    {"{\"__metadata__\":null}", 0, -1, 0, 0, F, "__metadata__ is not a JSON object"},
    {"{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, -1, 0, 0, F, "__metadata__: duplicate key 'k'"},
    {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, -1, 0, 0, F, "duplicate '__metadata__'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, -1, 4, 0, F, "tensor 'a': missing 'data_offsets'"},
    /* 40 */ {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 0, -1, 4, 0, F, "tensor 'a': missing 'dtype'"},
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 0, -1, 4, 0, F, "tensor 'a': missing 'shape'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 0, -1, 4, 0, F,
     "tensor 'a': unknown key 'extra'"},
    {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, -1, 4, 0, F,
     "tensor 'a': duplicate key 'dtype'"},
    {"{\"a\":5}", 0, -1, 0, 0, F, "tensor 'a': entry is not a JSON object"},
    /* 45 */ {"{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 0, -1, 4, 0, F,
     "tensor 'a': dtype is not a string"},
    {"{}\0     ", 8, -1, 0, 0, F, "header contains a NUL byte at offset 2"},
    {"{} x", 0, -1, 0, 0, F, "trailing characters after the object at byte 3"},
    {" {}", 0, -1, 0, 0, F, "must start with '{'"},
    {"", 0, -1, 0, 0, F, "must start with '{'"},
    /* 50 */ {"{" E("a", "F32", "[01]", 0, 4) "}", 0, -1, 4, 0, F, "number with a leading zero"},
    {"{\"\\ud800\":{}}", 0, -1, 0, 0, F, "lone high surrogate"},
    {"{\"\\udc00x\":{}}", 0, -1, 0, 0, F, "lone low surrogate"},
    {"{\"a\\u0000b\":{}}", 0, -1, 0, 0, F, "(NUL) in a string is not supported"},
    {"{\"a\tb\":{}}", 0, -1, 0, 0, F, "control character in a string"},
    /* 55 */ {"{\"a\\x\":{}}", 0, -1, 0, 0, F, "invalid escape in a string"},
    {"{\"a\":{", 0, -1, 0, 0, F, "header is not valid JSON"},
    {"{\"a\":1,}", 0, -1, 0, 0, F, "expected a string key"},
    {"{'a':1}", 0, -1, 0, 0, F, "expected a string key"},
    {"{\"a\" 1}", 0, -1, 0, 0, F, "expected ':'"},
    /* 60 */ {"{\"a\":tru}", 0, -1, 0, 0, F, "unexpected character"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 0, -1, 4, 0, F, "unterminated object"},
    {"{" E("a", "F32", "[1]", 0, 4) "}", 0, -1, 0, 0, F, "tensor 'a': data_offsets [0,4) exceed the 0-byte buffer"},
    {"{\"a\\nb\":5}", 0, -1, 0, 0, F, "tensor 'a\\x0ab': entry is not a JSON object"}, /* one-line message */
};
#undef F

static void check_bad(const uint8_t *b, size_t n, lmp_status want_st, const char *want, const char *what)
{
    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_status rc = lmp_st_check_bytes(b, n, "bad.safetensors", &d);
    ck_assert_msg(rc == want_st, "%s: status %d (%s), want %d", what, rc, d.msg, want_st);
    ck_assert_msg(strncmp(d.msg, "bad.safetensors: ", 17) == 0, "%s: message does not name the file: %s", what,
                  d.msg);
    ck_assert_msg(strstr(d.msg, want) != NULL, "%s: message '%s' lacks '%s'", what, d.msg, want);
    ck_assert_msg(strchr(d.msg, '\n') == NULL, "%s: message has a newline", what);
}

START_TEST(malformed_rejected)
{
    char *dir = t_tmpdir();
    char *path = lmp_path_join(dir, "bad.safetensors");
    size_t nc = sizeof bad / sizeof bad[0];
    ck_assert_uint_ge(nc, 25);
    for (size_t i = 0; i < nc; i++) {
        const bad_case *c = &bad[i];
        size_t hl = c->hlen ? c->hlen : strlen(c->hdr), n;
        uint8_t *b = mk(c->hdr, hl, c->lenfield, c->data_len, &n);
        if (c->trunc) n = c->trunc;
        char what[32];
        snprintf(what, sizeof what, "case %zu", i);
        check_bad(b, n, c->st, c->want, what);
        /* the same bytes as a file, through lmp_st_open */
        t_write(path, b, n);
        lmp_st *st = NULL;
        lmp_diag d;
        lmp_diag_clear(&d);
        ck_assert_msg(lmp_st_open(&st, path, &d) == c->st, "%s via file: %s", what, d.msg);
        ck_assert_ptr_null(st);
        ck_assert_msg(strstr(d.msg, c->want) != NULL && strstr(d.msg, path) == d.msg, "%s via file: %s", what,
                      d.msg);
        free(b);
    }
    /* the exact message of the status.h example */
    {
        const char *h = "{" E("x", "F32", "[4]", 0, 16) "}";
        size_t n;
        uint8_t *b = mk(h, strlen(h), -1, 8, &n);
        lmp_diag d;
        lmp_diag_clear(&d);
        ck_assert_int_eq(lmp_st_check_bytes(b, n, "model.safetensors", &d), LMP_ERR_FORMAT);
        ck_assert_str_eq(d.msg, "model.safetensors: tensor 'x': data_offsets [0,16) exceed the 8-byte buffer");
        free(b);
    }
    /* nesting deep enough to exhaust a naive recursive parser */
    {
        size_t depth = 100000, hl = 20 + 2 * depth;
        char *h = malloc(hl + 1);
        size_t o = (size_t)sprintf(h, "{\"__metadata__\":");
        for (size_t i = 0; i < depth; i++) h[o++] = '[';
        for (size_t i = 0; i < depth; i++) h[o++] = ']';
        h[o++] = '}';
        size_t n;
        uint8_t *b = mk(h, o, -1, 0, &n);
        check_bad(b, n, LMP_ERR_FORMAT, "nesting deeper than 64 levels", "deep nesting");
        free(b);
        free(h);
    }
    /* a header that is valid JSON but would cost gigabytes as a cJSON tree */
    {
        size_t cnt = 2000001, hl = 40 + 2 * cnt;
        char *h = malloc(hl);
        size_t o = (size_t)sprintf(h, "{\"__metadata__\":{\"k\":[");
        for (size_t i = 0; i < cnt; i++) {
            h[o++] = '0';
            h[o++] = ',';
        }
        h[o - 1] = ']';
        h[o++] = '}';
        h[o++] = '}';
        size_t n;
        uint8_t *b = mk(h, o, -1, 0, &n);
        check_bad(b, n, LMP_ERR_UNSUPPORTED, "header holds more than 2000000 JSON values", "value count");
        free(b);
        free(h);
    }
    /* empty file, through the file path */
    t_write(path, "", 0);
    lmp_st *st = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_st_open(&st, path, &d), LMP_ERR_FORMAT);
    ck_assert(strstr(d.msg, "file is 0 bytes") != NULL);
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_st_open(&st, "/nonexistent/x.safetensors", &d), LMP_ERR_IO);
    ck_assert(strstr(d.msg, "/nonexistent/x.safetensors") != NULL);
    free(path);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* Every truncation and every single-byte corruption of a small valid file
 * is handled (no crash; the sanitizer builds check for out-of-bounds reads). */
START_TEST(corruptions_never_crash)
{
    const char *h = "{\"__metadata__\":{\"k\":\"v\"}," E("a", "F32", "[2]", 0, 8) "," E("b", "BF16", "[]", 8, 10) "}";
    size_t n;
    uint8_t *b = mk(h, strlen(h), -1, 10, &n);
    ck_assert_int_eq(lmp_st_check_bytes(b, n, "ok", NULL), LMP_OK);
    for (size_t k = 0; k < n; k++) {
        uint8_t *c = malloc(k ? k : 1);
        memcpy(c, b, k);
        ck_assert_int_ne(lmp_st_check_bytes(c, k, "t", NULL), LMP_OK);
        free(c);
    }
    static const uint8_t vals[] = {0x00, 0x20, 0x22, 0x2c, 0x5b, 0x5d, 0x7b, 0x7d, 0x80, 0xff, '0', '9', '-'};
    for (size_t k = 0; k < n; k++)
        for (size_t v = 0; v < sizeof vals; v++) {
            uint8_t save = b[k];
            b[k] = vals[v];
            lmp_diag d;
            lmp_diag_clear(&d);
            lmp_status rc = lmp_st_check_bytes(b, n, "t", &d);
            ck_assert(rc == LMP_OK || d.msg[0] != '\0');
            b[k] = save;
        }
    free(b);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Valid edge cases */

static lmp_st *open_bytes(const char *dir, const char *hdr, size_t hlen, size_t data_len)
{
    size_t n;
    uint8_t *b = mk(hdr, hlen, -1, data_len, &n);
    char *p = lmp_path_join(dir, "ok.safetensors");
    t_write(p, b, n);
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_st_check_bytes(b, n, "ok", &d) == LMP_OK, "%s", d.msg);
    lmp_st *st = NULL;
    ck_assert_msg(lmp_st_open(&st, p, &d) == LMP_OK, "%s", d.msg);
    free(p);
    free(b);
    return st;
}

START_TEST(valid_edge_cases)
{
    char *dir = t_tmpdir();
    /* empty header, empty buffer */
    lmp_st *st = open_bytes(dir, "{}", 2, 0);
    ck_assert_uint_eq(lmp_st_count(st), 0);
    ck_assert_ptr_null(lmp_st_find(st, "a"));
    ck_assert_uint_eq(lmp_st_meta_count(st, 0), 0);
    lmp_st_close(st);
    /* padded header (8 bytes), as writers align the buffer */
    st = open_bytes(dir, "{}      ", 8, 0);
    ck_assert_uint_eq(lmp_st_count(st), 0);
    lmp_st_close(st);
    /* whitespace between tokens, scalar, padded */
    const char *h1 = "{ \"s\" :\n{\"dtype\":\"F32\", \"shape\": [ ], \"data_offsets\":[0,4]}\r\n}\t   ";
    st = open_bytes(dir, h1, strlen(h1), 4);
    ck_assert_uint_eq(lmp_st_count(st), 1);
    const lmp_st_tensor *t = lmp_st_find(st, "s");
    ck_assert_int_eq(t->ndim, 0);
    ck_assert_uint_eq(t->nelem, 1);
    ck_assert_uint_eq(t->nbytes, 4);
    /* data pattern bytes 01 08 0f 16 -> float bits 0x160f0801 */
    ck_assert(elem(t, 0) == bitsf(0x160f0801u));
    lmp_st_close(st);
    /* zero-size tensors (data NULL) around a real one; order by offset, then end, then name */
    const char *h2 = "{" E("e", "I8", "[0]", 4, 4) "," E("a", "F16", "[2]", 0, 4) "," E("z", "F32", "[0,3]", 0, 0) "}";
    st = open_bytes(dir, h2, strlen(h2), 4);
    ck_assert_uint_eq(lmp_st_count(st), 3);
    ck_assert_str_eq(lmp_st_at(st, 0)->name, "z");
    ck_assert_str_eq(lmp_st_at(st, 1)->name, "a");
    ck_assert_str_eq(lmp_st_at(st, 2)->name, "e");
    t = lmp_st_find(st, "z");
    ck_assert_ptr_null(t->data);
    ck_assert_uint_eq(t->nelem, 0);
    ck_assert_int_eq(t->shape[1], 3);
    float dummy;
    ck_assert_int_eq(lmp_st_to_f32(t, &dummy, NULL), LMP_OK);
    lmp_st_release(st, t);
    lmp_st_close(st);
    /* mixed dtypes, declared out of offset order, escaped and UTF-8 names, metadata */
    const char *h3 = "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\\\"y\"},"
                     E("b\\\"q\\u00e9", "BF16", "[3]", 8, 14) "," E("d", "F64", "[1]", 0, 8) ","
                     E("\xc3\xa9t\xe2\x82\xac", "BOOL", "[2]", 14, 16) "," E("f8", "F8_E4M3", "[1,1]", 16, 17) ","
                     E("u", "U64", "[1]", 17, 25) "}";
    st = open_bytes(dir, h3, strlen(h3), 25);
    ck_assert_uint_eq(lmp_st_count(st), 5);
    check_index_consistent(st);
    t = lmp_st_find(st, "b\"q\xc3\xa9");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, LMP_DT_BF16);
    ck_assert_ptr_eq(lmp_st_at(st, 1), t);
    ck_assert_int_eq(lmp_st_find(st, "\xc3\xa9t\xe2\x82\xac")->dtype, LMP_DT_BOOL);
    ck_assert_int_eq(lmp_st_find(st, "f8")->dtype, LMP_DT_F8_E4M3);
    ck_assert_int_eq(lmp_st_find(st, "u")->dtype, LMP_DT_U64);
    ck_assert_int_eq(lmp_st_find(st, "d")->dtype, LMP_DT_F64);
    /* data pointer = start of buffer + begin; pattern byte i is i*7+1 */
    ck_assert_uint_eq(t->data[0], 8 * 7 + 1);
    ck_assert_uint_eq(lmp_st_find(st, "u")->data[0], 17 * 7 + 1);
    ck_assert_uint_eq(lmp_st_meta_count(st, 0), 2);
    const char *k, *v;
    lmp_st_meta_at(st, 0, 1, &k, &v);
    ck_assert_str_eq(k, "note");
    ck_assert_str_eq(v, "x\"y");
    lmp_st_meta_at(st, 0, 2, &k, &v);
    ck_assert_ptr_null(k);
    lmp_st_close(st);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Sharded sets */

static void expect_open_fails(const char *path, const char *want)
{
    lmp_st *st = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_st_open(&st, path, &d) != LMP_OK, "%s opened, want '%s'", path, want);
    ck_assert_ptr_null(st);
    ck_assert_msg(strstr(d.msg, want) != NULL, "message '%s' lacks '%s'", d.msg, want);
}

static void write_index(const char *dir, const char *json)
{
    char *p = lmp_path_join(dir, "model.safetensors.index.json");
    t_write(p, json, strlen(json));
    free(p);
}

START_TEST(sharded_sets)
{
    char *dir = t_tmpdir();
    write_st(dir, "s2.safetensors", "{" E("c", "F32", "[1]", 0, 4) "," E("b", "F32", "[1]", 4, 8) "}", 8);
    write_st(dir, "s1.safetensors", "{" E("a", "F32", "[1]", 0, 4) "}", 4);
    write_st(dir, "two.safetensors", "{" E("a", "F32", "[1]", 0, 4) "," E("x", "F32", "[1]", 4, 8) "}", 8);

    /* valid; the index names s2 first, the set still lists shards sorted by name */
    write_index(dir, "{\"metadata\":{\"total_size\":12},\"weight_map\":{\"b\":\"s2.safetensors\","
                     "\"c\":\"s2.safetensors\",\"a\":\"s1.safetensors\"}}");
    lmp_st *st = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_st_open(&st, dir, &d) == LMP_OK, "%s", d.msg);
    ck_assert_uint_eq(lmp_st_nfiles(st), 2);
    ck_assert_str_eq(lmp_st_file(st, 0), "s1.safetensors");
    ck_assert_str_eq(lmp_st_file(st, 1), "s2.safetensors");
    ck_assert_str_eq(lmp_st_at(st, 0)->name, "a");
    ck_assert_str_eq(lmp_st_at(st, 1)->name, "c"); /* s2 offset 0 */
    ck_assert_str_eq(lmp_st_at(st, 2)->name, "b");
    check_index_consistent(st);
    lmp_st_close(st);

    char *idx = lmp_path_join(dir, "model.safetensors.index.json");
    /* listed but absent from its shard */
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\","
                     "\"c\":\"s2.safetensors\",\"d\":\"s1.safetensors\"}}");
    expect_open_fails(dir, "tensor 'd' is listed in shard s1.safetensors, which does not hold it");
    /* a shard tensor the index does not list */
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}");
    expect_open_fails(idx, "s2.safetensors: tensor 'b' is not listed in the index");
    /* the same tensor in two shards */
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"x\":\"two.safetensors\"}}");
    expect_open_fails(dir, "tensor 'a' is in both s1.safetensors and two.safetensors");
    /* listed in the wrong shard */
    write_index(dir, "{\"weight_map\":{\"a\":\"s2.safetensors\",\"b\":\"s2.safetensors\",\"c\":\"s2.safetensors\","
                     "\"z\":\"s1.safetensors\"}}");
    expect_open_fails(dir, "tensor 'a' is listed in shard s2.safetensors but found in s1.safetensors");
    /* shard names must be plain file names */
    write_index(dir, "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}");
    expect_open_fails(dir, "shard name '../s1.safetensors' must be a plain file name");
    write_index(dir, "{\"weight_map\":{\"a\":\"/etc/passwd\"}}");
    expect_open_fails(dir, "shard name '/etc/passwd' must be a plain file name");
    write_index(dir, "{\"weight_map\":{\"a\":\"sub/s1.safetensors\"}}");
    expect_open_fails(dir, "must be a plain file name");
    write_index(dir, "{\"weight_map\":{\"a\":\"..\"}}");
    expect_open_fails(dir, "must be a plain file name");
    /* index structure */
    write_index(dir, "{\"metadata\":{}}");
    expect_open_fails(dir, "missing 'weight_map' object");
    write_index(dir, "{\"weight_map\":{}}");
    expect_open_fails(dir, "'weight_map' is empty");
    write_index(dir, "{\"weight_map\":{\"a\":1}}");
    expect_open_fails(dir, "weight_map: tensor 'a': shard is not a string");
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"a\":\"s1.safetensors\"}}");
    expect_open_fails(dir, "weight_map lists tensor 'a' twice");
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\"}} trailing");
    expect_open_fails(dir, "trailing characters");
    write_index(dir, "[]");
    expect_open_fails(dir, "not a JSON object");
    write_index(dir, "{\"weight_map\":{\"q\":\"missing.safetensors\"}}");
    expect_open_fails(dir, "missing.safetensors: cannot open");
    /* a bad shard is reported with its own path */
    write_st(dir, "s3.safetensors", "{" E("q", "F32", "[2]", 0, 4) "}", 4);
    write_index(dir, "{\"weight_map\":{\"q\":\"s3.safetensors\"}}");
    expect_open_fails(dir, "s3.safetensors: tensor 'q': shape [2] of F32 needs 8 bytes");
    free(idx);
    t_rmtree(dir);
    free(dir);

    /* folder without an index: model.safetensors, else the only *.safetensors */
    dir = t_tmpdir();
    write_st(dir, "weights.safetensors", "{" E("a", "F32", "[1]", 0, 4) "}", 4);
    ck_assert_msg(lmp_st_open(&st, dir, &d) == LMP_OK, "%s", d.msg);
    ck_assert_uint_eq(lmp_st_count(st), 1);
    ck_assert(strstr(lmp_st_file(st, 0), "weights.safetensors") != NULL);
    lmp_st_close(st);
    write_st(dir, "other.safetensors", "{}", 0);
    expect_open_fails(dir, "and 2 other *.safetensors files (need exactly one)");
    write_st(dir, "model.safetensors", "{" E("m", "F32", "[1]", 0, 4) "}", 4);
    ck_assert_msg(lmp_st_open(&st, dir, &d) == LMP_OK, "%s", d.msg);
    ck_assert_ptr_nonnull(lmp_st_find(st, "m"));
    lmp_st_close(st);
    t_rmtree(dir);
    free(dir);
    dir = t_tmpdir();
    expect_open_fails(dir, "and 0 other *.safetensors files");
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Writer */

START_TEST(writer_byte_exact)
{
    char *dir = t_tmpdir();
    char *p = lmp_path_join(dir, "w.safetensors");
    lmp_stw_desc desc = {.name = "a", .dtype = LMP_DT_F32, .ndim = 1, .shape = {1}};
    const char *meta[] = {"k", "v"};
    lmp_stw *w = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_stw_open(&w, p, &desc, 1, meta, 1, &d) == LMP_OK, "%s", d.msg);
    float one = 1.0f;
    ck_assert_int_eq(lmp_stw_write(w, &one, 4, &d), LMP_OK);
    ck_assert_msg(lmp_stw_finish(w, &d) == LMP_OK, "%s", d.msg);
    /* By hand: the JSON below is 79 bytes; 8 + 79 = 87, so 1 space pads the
     * header to 80 bytes (0x50) and the buffer starts at 88. 1.0f = 00 00 80 3f. */
    static const char want[] = "\x50\0\0\0\0\0\0\0"
                               "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                               "\"data_offsets\":[0,4]}} "
                               "\x00\x00\x80\x3f";
    size_t n;
    unsigned char *got = t_slurp(p, &n);
    ck_assert_uint_eq(n, sizeof want - 1);
    ck_assert(memcmp(got, want, n) == 0);
    free(got);
    /* no tensors at all: "{}" padded to 8 */
    ck_assert_int_eq(lmp_stw_open(&w, p, NULL, 0, NULL, 0, &d), LMP_OK);
    ck_assert_int_eq(lmp_stw_finish(w, &d), LMP_OK);
    got = t_slurp(p, &n);
    ck_assert_uint_eq(n, 16);
    ck_assert(memcmp(got, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
    free(got);
    free(p);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* Byte strings from the reference implementation's own unit tests
 * (huggingface/safetensors, safetensors/src/tensor.rs: test_serialization,
 * test_empty, test_serialization_forced_alignement), which pin the exact
 * serialization of a single tensor and of metadata; transcribed here as
 * strings. With one tensor there is no ordering freedom, so ours must match. */
static void write_one(const char *path, const lmp_stw_desc *desc, size_t n, const char *const *meta, size_t nm,
                      const void *data, size_t nbytes)
{
    lmp_stw *w = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_stw_open(&w, path, desc, n, meta, nm, &d) == LMP_OK, "%s", d.msg);
    ck_assert_int_eq(lmp_stw_write(w, data, nbytes, &d), LMP_OK);
    ck_assert_msg(lmp_stw_finish(w, &d) == LMP_OK, "%s", d.msg);
}

static void expect_file(const char *path, const char *want, size_t wn)
{
    size_t n;
    unsigned char *got = t_slurp(path, &n);
    ck_assert_uint_eq(n, wn);
    ck_assert(memcmp(got, want, n) == 0);
    free(got);
    lmp_st *st = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_st_check_bytes((const uint8_t *)want, wn, "ref", &d) == LMP_OK, "%s", d.msg);
    ck_assert_msg(lmp_st_open(&st, path, &d) == LMP_OK, "%s", d.msg);
    lmp_st_close(st);
}

START_TEST(writer_matches_reference_vectors)
{
    char *dir = t_tmpdir();
    char *p = lmp_path_join(dir, "ref.safetensors");
    const float six[6] = {0, 1, 2, 3, 4, 5};
    /* little-endian 0.0 .. 5.0 as in the reference test */
#define SIXF "\0\0\0\0\0\0\x80\x3f\0\0\0\x40\0\0\x40\x40\0\0\x80\x40\0\0\xa0\x40"
    lmp_stw_desc a = {.name = "attn.0", .dtype = LMP_DT_F32, .ndim = 3, .shape = {1, 2, 3}};
    write_one(p, &a, 1, NULL, 0, six, 24);
    static const char want1[] = "\x40\0\0\0\0\0\0\0"
                                "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}" SIXF;
    expect_file(p, want1, sizeof want1 - 1);
    lmp_stw_desc b = {.name = "attn0", .dtype = LMP_DT_F32, .ndim = 4, .shape = {1, 1, 2, 3}};
    write_one(p, &b, 1, NULL, 0, six, 24);
    static const char want2[] = "\x48\0\0\0\0\0\0\0"
                                "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       " SIXF;
    expect_file(p, want2, sizeof want2 - 1);
#undef SIXF
    const char *meta[] = {"framework", "pt"};
    write_one(p, NULL, 0, meta, 1, NULL, 0);
    static const char want3[] = "\x28\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     ";
    expect_file(p, want3, sizeof want3 - 1);
    free(p);
    t_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(writer_round_trip)
{
    char *dir = t_tmpdir();
    char *p = lmp_path_join(dir, "rt.safetensors");
    lmp_stw_desc desc[] = {
        {.name = "w2", .dtype = LMP_DT_F32, .ndim = 2, .shape = {2, 3}},
        {.name = "weird \"name\"\n\\", .dtype = LMP_DT_BF16, .ndim = 1, .shape = {5}},
        {.name = "empty", .dtype = LMP_DT_F16, .ndim = 2, .shape = {0, 7}},
        {.name = "scalar", .dtype = LMP_DT_I32, .ndim = 0},
        {.name = "\xc3\xa9", .dtype = LMP_DT_U8, .ndim = 3, .shape = {1, 3, 1}},
    };
    const char *meta[] = {"format", "pt", "tab\tkey", "v\x01"};
    float w2[6] = {1.5f, -2.0f, 0.1f, 1e30f, -0.0f, 3.25f};
    uint16_t bf[5] = {0x3f80, 0xbf80, 0x7fc0, 0x0001, 0x4049};
    int32_t sc = -7;
    uint8_t u8[3] = {1, 2, 255};
    lmp_stw *w = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_stw_open(&w, p, desc, 5, meta, 2, &d) == LMP_OK, "%s", d.msg);
    ck_assert(!lmp_exists(p)); /* only the temporary exists until finish */
    ck_assert_int_eq(lmp_stw_write(w, w2, 10, &d), LMP_OK); /* split writes are fine */
    ck_assert_int_eq(lmp_stw_write(w, (const uint8_t *)w2 + 10, 14, &d), LMP_OK);
    ck_assert_int_eq(lmp_stw_write(w, bf, 10, &d), LMP_OK);
    ck_assert_int_eq(lmp_stw_write(w, &sc, 4, &d), LMP_OK);
    ck_assert_int_eq(lmp_stw_write(w, u8, 3, &d), LMP_OK);
    ck_assert_msg(lmp_stw_finish(w, &d) == LMP_OK, "%s", d.msg);

    size_t n;
    unsigned char *raw = t_slurp(p, &n);
    uint64_t hl = 0;
    for (int k = 7; k >= 0; k--) hl = hl << 8 | raw[k];
    ck_assert_uint_eq((8 + hl) % 8, 0);
    ck_assert_uint_eq(n, 8 + hl + 41);
    ck_assert(memcmp(raw + 8 + hl, w2, 24) == 0);
    free(raw);

    lmp_st *st = NULL;
    ck_assert_msg(lmp_st_open(&st, p, &d) == LMP_OK, "%s", d.msg);
    ck_assert_uint_eq(lmp_st_count(st), 5);
    for (size_t i = 0; i < 5; i++) { /* declaration order = offset order */
        const lmp_st_tensor *t = lmp_st_at(st, i);
        ck_assert_str_eq(t->name, desc[i].name);
        ck_assert_int_eq(t->dtype, desc[i].dtype);
        ck_assert_int_eq(t->ndim, desc[i].ndim);
        for (int k = 0; k < t->ndim; k++) ck_assert_int_eq(t->shape[k], desc[i].shape[k]);
    }
    float got[6];
    ck_assert_int_eq(lmp_st_to_f32(lmp_st_find(st, "w2"), got, &d), LMP_OK);
    ck_assert(memcmp(got, w2, sizeof got) == 0);
    ck_assert(memcmp(lmp_st_at(st, 1)->data, bf, 10) == 0);
    ck_assert(memcmp(lmp_st_find(st, "scalar")->data, &sc, 4) == 0);
    ck_assert(memcmp(lmp_st_find(st, "\xc3\xa9")->data, u8, 3) == 0);
    ck_assert_ptr_null(lmp_st_find(st, "empty")->data);
    ck_assert_uint_eq(lmp_st_meta_count(st, 0), 2);
    const char *k, *v;
    lmp_st_meta_at(st, 0, 1, &k, &v);
    ck_assert_str_eq(k, "tab\tkey");
    ck_assert_str_eq(v, "v\x01");
    lmp_st_close(st);

    /* errors: byte count short / long, bad descriptions; no file is left behind */
    char *p2 = lmp_path_join(dir, "bad.safetensors");
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_stw_open(&w, p2, desc, 1, NULL, 0, &d), LMP_OK);
    ck_assert_int_eq(lmp_stw_write(w, w2, 20, &d), LMP_OK);
    ck_assert_int_eq(lmp_stw_finish(w, &d), LMP_ERR_ARG);
    ck_assert(strstr(d.msg, "20 tensor bytes written, 24 declared") != NULL);
    ck_assert(!lmp_exists(p2));
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_stw_open(&w, p2, desc, 1, NULL, 0, &d), LMP_OK);
    ck_assert_int_eq(lmp_stw_write(w, w2, 25, &d), LMP_ERR_ARG);
    ck_assert(strstr(d.msg, "exceeds the declared 24") != NULL);
    lmp_stw_abort(w);
    lmp_stw_abort(NULL);
    ck_assert(!lmp_exists(p2));
    lmp_stw_desc dup[] = {desc[0], desc[0]};
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_stw_open(&w, p2, dup, 2, NULL, 0, &d), LMP_ERR_ARG);
    ck_assert(strstr(d.msg, "duplicate tensor name 'w2'") != NULL);
    lmp_stw_desc neg = {.name = "n", .dtype = LMP_DT_F32, .ndim = 1, .shape = {-1}};
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_stw_open(&w, p2, &neg, 1, NULL, 0, &d), LMP_ERR_ARG);
    lmp_stw_desc meta_name = {.name = "__metadata__", .dtype = LMP_DT_F32, .ndim = 0};
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_stw_open(&w, p2, &meta_name, 1, NULL, 0, &d), LMP_ERR_ARG);
    lmp_stw_desc big = {.name = "b", .dtype = LMP_DT_F32, .ndim = 3, .shape = {1 << 30, 1 << 30, 1 << 30}};
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_stw_open(&w, p2, &big, 1, NULL, 0, &d), LMP_ERR_ARG);
    const char *dupmeta[] = {"k", "1", "k", "2"};
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_stw_open(&w, p2, NULL, 0, dupmeta, 2, &d), LMP_ERR_ARG);
    ck_assert(!lmp_exists(p2));
    free(p2);
    free(p);
    t_rmtree(dir);
    free(dir);
}
END_TEST

Suite *lmp_suite_safetensors(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("reader");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fixture_stories260k);
    tcase_add_test(tc, fixture_tiny_smollm);
    tcase_add_test(tc, fixture_sharded);
    tcase_add_test(tc, malformed_rejected);
    tcase_add_test(tc, corruptions_never_crash);
    tcase_add_test(tc, valid_edge_cases);
    tcase_add_test(tc, sharded_sets);
    suite_add_tcase(s, tc);
    TCase *tw = tcase_create("writer");
    tcase_add_test(tw, writer_byte_exact);
    tcase_add_test(tw, writer_round_trip);
    tcase_add_test(tw, writer_matches_reference_vectors);
    suite_add_tcase(s, tw);
    return s;
}
