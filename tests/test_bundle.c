/* Bundles: chunk format, manifest, split, verify (library and programs).
 * Library tests use a small synthetic model whose tensors are filled with
 * a counter pattern; program tests (further down) build real fixtures. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/pool.h"
#include "formats/chunk.h"
#include "manifest/manifest.h"
#include "runtime/mat.h"
#include "split/split.h"
#include "tests/testutil.h"
#include "verify/verify.h"

/* ------------------------------------------------------------ synthetic */

#define SYN_LAYERS 4
#define SYN_MAX_T 64

typedef struct syn {
    lmp_chunk_tensor t[SYN_MAX_T];
    size_t n;
    uint8_t *bytes[SYN_MAX_T];
    char config[512];
    lmp_split_file files[2];
    lmp_split_src src;
} syn;

static void syn_add(syn *s, const char *name, int kind, int64_t r, int64_t c)
{
    lmp_chunk_tensor *t = &s->t[s->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->ndim = c ? 2 : 1;
    t->shape[0] = r;
    t->shape[1] = c;
    if (!c) t->shape[1] = 0;
    uint64_t nel = (uint64_t)r * (uint64_t)(c ? c : 1);
    t->size = kind == LMP_MAT_F32 ? nel * 4 : nel * 2;
    uint8_t *b = malloc(t->size);
    for (uint64_t i = 0; i < t->size; i++) b[i] = (uint8_t)(i * 7 + s->n * 13 + 1);
    s->bytes[s->n] = b;
    t->data = b;
    s->n++;
}

static const char tok_json[] = "{\"model\": {\"type\": \"BPE\"}}";
static const char tok_cfg[] = "{\"bos_token\": \"<s>\"}";

static void syn_make(syn *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->config, sizeof s->config,
             "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
             "\"hidden_size\": 8, \"intermediate_size\": 12, \"num_hidden_layers\": %d, "
             "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 16, "
             "\"max_position_embeddings\": 32, \"rms_norm_eps\": 1e-05, "
             "\"tie_word_embeddings\": true}",
             SYN_LAYERS);
    syn_add(s, "model.embed_tokens.weight", LMP_MAT_F32, 16, 8);
    for (int l = 0; l < SYN_LAYERS; l++) {
        char n[96];
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
        syn_add(s, n, LMP_MAT_F32, 8, 0);
        snprintf(n, sizeof n, "model.layers.%d.self_attn.q_proj.weight", l);
        syn_add(s, n, LMP_MAT_BF16, 8, 8);
        snprintf(n, sizeof n, "model.layers.%d.mlp.up_proj.weight", l);
        syn_add(s, n, LMP_MAT_F16, 12, 8);
        /* the rest of a Llama layer (hidden 8, 2 heads, 1 KV head, mlp 12) */
        static const char *const rest[] = {"self_attn.k_proj", "self_attn.v_proj",
                                           "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"};
        static const int64_t shp[][2] = {{4, 8}, {4, 8}, {8, 8}, {12, 8}, {8, 12}};
        for (int k = 0; k < 5; k++) {
            snprintf(n, sizeof n, "model.layers.%d.%s.weight", l, rest[k]);
            syn_add(s, n, LMP_MAT_F32, shp[k][0], shp[k][1]);
        }
        snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", l);
        syn_add(s, n, LMP_MAT_F32, 8, 0);
    }
    syn_add(s, "model.norm.weight", LMP_MAT_F32, 8, 0);
    s->files[0] = (lmp_split_file){"tokenizer.json", (const uint8_t *)tok_json, sizeof tok_json - 1};
    s->files[1] = (lmp_split_file){"tokenizer_config.json", (const uint8_t *)tok_cfg,
                                   sizeof tok_cfg - 1};
    s->src = (lmp_split_src){.name = "synthetic", .config_json = s->config,
                             .config_len = strlen(s->config), .n_tensors = s->n,
                             .tensors = s->t, .n_files = 2, .files = s->files};
}

static void syn_free(syn *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->bytes[i]);
}

/* Split the synthetic model into dir/name; returns the bundle path. */
static char *syn_split(const char *dir, const char *name, int threads, int lpc)
{
    syn s;
    syn_make(&s);
    char *out = lmp_path_join(dir, name);
    lmp_split_opts o;
    lmp_split_opts_default(&o);
    o.layers_per_chunk = lpc;
    lmp_pool *pool = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_pool_create(&pool, threads, &d), LMP_OK);
    lmp_status rc = lmp_split_write(&s.src, out, &o, pool, &d);
    ck_assert_msg(rc == LMP_OK, "split: %s", d.msg);
    lmp_pool_close(pool);
    syn_free(&s);
    return out;
}

typedef struct collected {
    int n;
    char first[1024];
} collected;

static void collect(void *ctx, const char *file, const char *what)
{
    collected *c = ctx;
    if (!c->n) snprintf(c->first, sizeof c->first, "%s: %s", file, what);
    c->n++;
}

static lmp_status verify_dir(const char *dir, collected *c)
{
    memset(c, 0, sizeof *c);
    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_verify_report r;
    return lmp_bundle_verify(dir, NULL, collect, c, &r, &d);
}

static int files_equal(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = t_slurp(a, &na), *y = t_slurp(b, &nb);
    int eq = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return eq;
}

/* ----------------------------------------------------------------- chunk */

START_TEST(chunk_roundtrip_and_layout)
{
    syn s;
    syn_make(&s);
    uint8_t *raw = NULL, *z = NULL, *back = NULL;
    size_t rn = 0, zn = 0, bn = 0;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_chunk_encode(LMP_CHUNK_LAYERS, 0, 0, s.t + 1, 3, NULL, 0, &raw, &rn, &d),
                     LMP_OK);
    /* hand-computed layout: 3 entries of 72 + names (38, 40, 34 bytes
     * padded to 40, 40, 40) = 336 table bytes; data at align64(64+336)=448;
     * tensors 32 B @0, 128 B @64, 192 B @192 -> data_size 384 */
    ck_assert_uint_eq(rn, 448 + 384);
    ck_assert(memcmp(raw, "LMPKCHNK", 8) == 0);
    ck_assert_uint_eq(raw[8], 1);
    ck_assert_uint_eq(raw[32] | raw[33] << 8, 336);
    ck_assert_uint_eq(raw[48] | raw[49] << 8, 448);
    ck_assert(memcmp(raw + 448, s.bytes[1], 32) == 0);
    ck_assert(memcmp(raw + 448 + 64, s.bytes[2], 128) == 0);
    ck_assert(memcmp(raw + 448 + 192, s.bytes[3], 192) == 0);
    ck_assert_int_eq(lmp_chunk_compress(raw, rn, 3, &z, &zn, &d), LMP_OK);
    ck_assert_int_eq(lmp_chunk_check_bytes(z, zn, &d), LMP_OK);
    ck_assert_int_eq(lmp_chunk_decompress(z, zn, rn, rn, &back, &bn, "c", &d), LMP_OK);
    ck_assert_uint_eq(bn, rn);
    ck_assert(memcmp(back, raw, rn) == 0);
    lmp_chunk c;
    ck_assert_int_eq(lmp_chunk_parse(&c, back, bn, "c", &d), LMP_OK);
    ck_assert_uint_eq(c.n_tensors, 3);
    ck_assert_str_eq(c.tensors[2].name, "model.layers.0.mlp.up_proj.weight");
    ck_assert_int_eq(c.tensors[2].kind, LMP_MAT_F16);
    ck_assert_uint_eq(c.tensors[2].offset, 192);
    ck_assert(c.tensors[1].data == back + 448 + 64);
    lmp_chunk_free(&c);
    lmp_chunk_free(&c); /* zeroed: no-op */
    lmp_chunk_free(NULL);
    /* wrong expected raw size is an integrity error */
    free(back);
    back = NULL;
    ck_assert_int_eq(lmp_chunk_decompress(z, zn, rn + 1, rn, &back, &bn, "c", &d),
                     LMP_ERR_INTEGRITY);
    free(raw);
    free(z);
    syn_free(&s);
}
END_TEST

/* Every single-byte change of a raw image must be rejected by the parser
 * or change the described content (names/fields/data). Header, table and
 * padding bytes are all covered by a rule. */
START_TEST(chunk_parse_rejects_header_flips)
{
    syn s;
    syn_make(&s);
    uint8_t *raw = NULL;
    size_t rn = 0;
    lmp_diag d;
    ck_assert_int_eq(lmp_chunk_encode(LMP_CHUNK_LAYERS, 2, 3, s.t + 1, 3, NULL, 0, &raw, &rn, &d),
                     LMP_OK);
    size_t doff = raw[48] | raw[49] << 8;
    int rejected = 0, accepted = 0;
    for (size_t i = 0; i < doff; i++) {
        raw[i] ^= 0x01;
        lmp_chunk c;
        lmp_diag_clear(&d);
        if (lmp_chunk_parse(&c, raw, rn, "c", &d) == LMP_OK) {
            /* accepted flips may only be in names or layer numbers/shape
             * values that stay valid: the result must then differ */
            accepted++;
            int differs = c.first_layer != 2 || c.last_layer != 3 ||
                          strcmp(c.tensors[0].name, s.t[1].name) ||
                          strcmp(c.tensors[1].name, s.t[2].name) ||
                          strcmp(c.tensors[2].name, s.t[3].name) ||
                          c.tensors[0].shape[0] != s.t[1].shape[0];
            ck_assert_msg(differs, "flip at %zu accepted without effect", i);
            lmp_chunk_free(&c);
        } else {
            rejected++;
        }
        raw[i] ^= 0x01;
    }
    ck_assert_int_gt(rejected, (int)doff / 2);
    (void)accepted;
    /* truncation and trailing bytes */
    lmp_chunk c;
    ck_assert_int_ne(lmp_chunk_parse(&c, raw, rn - 1, "c", &d), LMP_OK);
    ck_assert_int_ne(lmp_chunk_parse(&c, raw, 63, "c", &d), LMP_OK);
    free(raw);
    syn_free(&s);
}
END_TEST

START_TEST(chunk_decompress_bounds)
{
    lmp_diag d;
    uint8_t *out = NULL;
    size_t on = 0;
    /* a frame claiming 1 TB of content from a few bytes is refused before
     * allocating: build one by compressing zeros and patching nothing — use
     * a real frame of 1 MiB zeros and a tight max_raw instead */
    size_t n = 1 << 20;
    uint8_t *zeros = calloc(n, 1), *z = NULL;
    size_t zn = 0;
    ck_assert_int_eq(lmp_chunk_compress(zeros, n, 3, &z, &zn, &d), LMP_OK);
    ck_assert_uint_lt(zn, 1000);
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_chunk_decompress(z, zn, UINT64_MAX, 4096, &out, &on, "z", &d),
                     LMP_ERR_FORMAT);
    ck_assert_ptr_null(out);
    /* two frames back to back are not a chunk */
    uint8_t *two = malloc(2 * zn);
    memcpy(two, z, zn);
    memcpy(two + zn, z, zn);
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_chunk_decompress(two, 2 * zn, UINT64_MAX, n * 4, &out, &on, "z", &d),
                     LMP_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(d.msg, "after the zstd frame"));
    /* zeros are not a chunk: bad magic */
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_chunk_check_bytes(z, zn, &d), LMP_ERR_FORMAT);
    ck_assert_int_eq(lmp_chunk_check_bytes(z, 3, &d), LMP_ERR_FORMAT);
    free(two);
    free(z);
    free(zeros);
}
END_TEST

START_TEST(hash_is_canonical_xxh3_128)
{
    /* XXH3-128 of the empty input, canonical big-endian: published test
     * vector of xxHash (XXH3_128bits("") = 99aa06d3014798d86001c324468d497f) */
    char h[LMP_HASH_HEX];
    lmp_hash_hex("", 0, h);
    ck_assert_str_eq(h, "99aa06d3014798d86001c324468d497f");
}
END_TEST

/* -------------------------------------------------------------- manifest */

START_TEST(bundle_names)
{
    ck_assert(lmp_bundle_name_ok("chunks/head.zst"));
    ck_assert(lmp_bundle_name_ok("tokenizer/tokenizer_config.json"));
    ck_assert(!lmp_bundle_name_ok("../x"));
    ck_assert(!lmp_bundle_name_ok("chunks/../x"));
    ck_assert(!lmp_bundle_name_ok("chunks/..x"));
    ck_assert(!lmp_bundle_name_ok("/etc/passwd"));
    ck_assert(!lmp_bundle_name_ok("chunks\\head.zst"));
    ck_assert(!lmp_bundle_name_ok("chunks/a\\b"));
    ck_assert(!lmp_bundle_name_ok("chunks/a/b"));
    ck_assert(!lmp_bundle_name_ok("chunks/"));
    ck_assert(!lmp_bundle_name_ok("other/x"));
    ck_assert(!lmp_bundle_name_ok("chunks/.hidden"));
    ck_assert_int_eq(lmp_split_layer_of("model.layers.12.mlp.up_proj.weight"), 12);
    ck_assert_int_eq(lmp_split_layer_of("model.layers.01.x"), -1);
    ck_assert_int_eq(lmp_split_layer_of("model.norm.weight"), -1);
}
END_TEST

START_TEST(split_verify_synthetic)
{
    char *dir = t_tmpdir();
    char *b = syn_split(dir, "b", 1, 3);
    collected c;
    ck_assert_msg(verify_dir(b, &c) == LMP_OK, "verify: %s", c.first);
    /* layout: head + layers-00-02 + layers-03-03 */
    char p[4096];
    snprintf(p, sizeof p, "%s/chunks/layers-00-02.zst", b);
    ck_assert(lmp_exists(p));
    snprintf(p, sizeof p, "%s/chunks/layers-03-03.zst", b);
    ck_assert(lmp_exists(p));
    snprintf(p, sizeof p, "%s/tokenizer/tokenizer.json", b);
    ck_assert(lmp_exists(p));
    /* manifest content, checked against the rules */
    lmp_manifest *m = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_manifest_load(&m, b, &d), LMP_OK);
    ck_assert_str_eq(m->name, "synthetic");
    ck_assert_uint_eq(m->n_chunks, 3);
    ck_assert_str_eq(m->chunks[0].file, "chunks/head.zst");
    ck_assert_uint_eq(m->chunks[0].n_tensors, 2); /* embedding, final norm */
    ck_assert_uint_eq(m->chunks[1].n_tensors, 27);
    ck_assert_uint_eq(m->chunks[2].n_tensors, 9);
    ck_assert_uint_eq(m->n_tokenizer, 2);
    ck_assert_str_eq(m->tokenizer[0].file, "tokenizer/tokenizer.json");
    ck_assert_uint_eq(m->tokenizer[0].size, sizeof tok_json - 1);
    char h[LMP_HASH_HEX];
    lmp_hash_hex(tok_json, sizeof tok_json - 1, h);
    ck_assert_str_eq(m->tokenizer[0].xxh3, h);
    /* compressed hash equals the hash of the file bytes */
    snprintf(p, sizeof p, "%s/chunks/head.zst", b);
    size_t n;
    unsigned char *zb = t_slurp(p, &n);
    ck_assert_uint_eq(n, m->chunks[0].compressed_size);
    lmp_hash_hex(zb, n, h);
    ck_assert_str_eq(m->chunks[0].xxh3_compressed, h);
    free(zb);
    /* weights: 16*8 + 4*(8+64+96+32+32+64+96+96+8) + 8 */
    ck_assert_uint_eq(m->n_weights, 128 + 4 * 496 + 8);
    lmp_manifest_free(m);
    /* no temporary left beside it */
    snprintf(p, sizeof p, "%s.tmp.%ld", b, (long)getpid());
    ck_assert(!lmp_exists(p));
    /* splitting onto an existing folder is refused */
    syn s;
    syn_make(&s);
    lmp_split_opts o;
    lmp_split_opts_default(&o);
    lmp_diag_clear(&d);
    ck_assert_int_ne(lmp_split_write(&s.src, b, &o, NULL, &d), LMP_OK);
    syn_free(&s);
    free(b);
    t_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(split_deterministic_and_manifest_regenerates)
{
    char *dir = t_tmpdir();
    char *b1 = syn_split(dir, "b1", 1, 2), *b2 = syn_split(dir, "b2", 2, 2);
    static const char *files[] = {"manifest.json", "chunks/head.zst", "chunks/layers-00-01.zst",
                                  "chunks/layers-02-03.zst", "tokenizer/tokenizer.json"};
    char p1[4096], p2[4096];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p1, sizeof p1, "%s/%s", b1, files[i]);
        snprintf(p2, sizeof p2, "%s/%s", b2, files[i]);
        ck_assert_msg(files_equal(p1, p2), "%s differs between -t 1 and -t 2", files[i]);
    }
    /* scan + print == the manifest split wrote */
    lmp_manifest *m = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_manifest_scan(&m, b1, NULL, &d), LMP_OK);
    char *text = lmp_manifest_print(m);
    snprintf(p1, sizeof p1, "%s/manifest.json", b1);
    size_t n;
    unsigned char *mf = t_slurp(p1, &n);
    ck_assert_uint_eq(strlen(text), n);
    ck_assert(memcmp(text, mf, n) == 0);
    free(mf);
    free(text);
    lmp_manifest_free(m);
    free(b1);
    free(b2);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* Every byte of manifest.json matters: flipping any one bit of any byte
 * makes the strict reader reject it. */
START_TEST(manifest_every_byte_matters)
{
    char *dir = t_tmpdir();
    char *b = syn_split(dir, "b", 1, 3);
    char p[4096];
    snprintf(p, sizeof p, "%s/manifest.json", b);
    size_t n;
    unsigned char *text = t_slurp(p, &n);
    lmp_manifest *m = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_manifest_parse(&m, (char *)text, n, &d), LMP_OK);
    lmp_manifest_free(m);
    static const unsigned char masks[] = {0x01, 0x20, 0x80};
    ck_assert_uint_gt(n, 1000);
    /* mask 0x01 at every byte; the others at every 5th byte (time) */
    for (size_t k = 0; k < sizeof masks; k++)
        for (size_t i = 0; i < n; i += k ? 5 : 1) {
            text[i] ^= masks[k];
            m = NULL;
            lmp_diag_clear(&d);
            lmp_status rc = lmp_manifest_parse(&m, (char *)text, n, &d);
            ck_assert_msg(rc != LMP_OK, "flip 0x%02x at byte %zu of %zu accepted", masks[k], i, n);
            ck_assert_ptr_null(m);
            ck_assert_msg(strncmp(d.msg, "manifest.json", 13) == 0, "message: %s", d.msg);
            text[i] ^= masks[k];
        }
    /* truncation at any length */
    for (size_t i = 0; i < n; i++) {
        lmp_diag_clear(&d);
        ck_assert_int_ne(lmp_manifest_parse(&m, (char *)text, i, &d), LMP_OK);
    }
    free(text);
    free(b);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* A manifest naming "../x" is rejected even when everything else about it
 * (canonical form, self-hash) is right. */
START_TEST(manifest_rejects_escaping_names)
{
    char *dir = t_tmpdir();
    char *b = syn_split(dir, "b", 1, 3);
    lmp_manifest *m = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_manifest_load(&m, b, &d), LMP_OK);
    static const char *bad[] = {"../x", "tokenizer/../../x", "/tmp/x", "tokenizer\\x", "x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *save = m->tokenizer[0].file;
        m->tokenizer[0].file = (char *)bad[i];
        char *text = lmp_manifest_print(m);
        m->tokenizer[0].file = save;
        lmp_manifest *m2 = NULL;
        lmp_diag_clear(&d);
        ck_assert_int_eq(lmp_manifest_parse(&m2, text, strlen(text), &d), LMP_ERR_FORMAT);
        ck_assert_msg(strstr(d.msg, "not allowed") != NULL, "%s: %s", bad[i], d.msg);
        free(text);
        /* and as a chunk name */
        save = m->chunks[1].file;
        m->chunks[1].file = (char *)bad[i];
        text = lmp_manifest_print(m);
        m->chunks[1].file = save;
        lmp_diag_clear(&d);
        ck_assert_int_eq(lmp_manifest_parse(&m2, text, strlen(text), &d), LMP_ERR_FORMAT);
        ck_assert_msg(strstr(d.msg, "not allowed") != NULL, "%s: %s", bad[i], d.msg);
        free(text);
    }
    lmp_manifest_free(m);
    free(b);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* Library verify: flipped byte / truncation / missing file, for every file. */
START_TEST(verify_catches_damage_synthetic)
{
    char *dir = t_tmpdir();
    char *b = syn_split(dir, "b", 1, 3);
    static const char *files[] = {"manifest.json", "chunks/head.zst", "chunks/layers-00-02.zst",
                                  "chunks/layers-03-03.zst", "tokenizer/tokenizer.json",
                                  "tokenizer/tokenizer_config.json"};
    char p[4096];
    collected c;
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        snprintf(p, sizeof p, "%s/%s", b, files[f]);
        size_t n;
        unsigned char *orig = t_slurp(p, &n);
        /* first, last and ~40 spread positions (every position of the
         * manifest is covered in-process by manifest_every_byte_matters) */
        size_t step = n / 40 + 1;
        for (size_t i = 0; i < n; i = (i + step < n - 1 || i == n - 1) ? i + step : n - 1) {
            orig[i] ^= 0x04;
            t_write(p, orig, n);
            ck_assert_msg(verify_dir(b, &c) == LMP_ERR_INTEGRITY, "%s: flip at %zu not caught",
                          files[f], i);
            ck_assert_msg(strncmp(c.first, files[f], strlen(files[f])) == 0,
                          "%s: flip at %zu reported as: %s", files[f], i, c.first);
            orig[i] ^= 0x04;
        }
        t_write(p, orig, n - 1);
        ck_assert_int_eq(verify_dir(b, &c), LMP_ERR_INTEGRITY);
        ck_assert_msg(strncmp(c.first, files[f], strlen(files[f])) == 0, "%s", c.first);
        ck_assert_int_eq(unlink(p), 0);
        ck_assert_int_eq(verify_dir(b, &c), LMP_ERR_INTEGRITY);
        ck_assert_msg(strncmp(c.first, files[f], strlen(files[f])) == 0, "%s", c.first);
        t_write(p, orig, n);
        ck_assert_msg(verify_dir(b, &c) == LMP_OK, "restored %s: %s", files[f], c.first);
        free(orig);
    }
    /* an extra file is reported */
    snprintf(p, sizeof p, "%s/chunks/layers-04-04.zst", b);
    t_write(p, "x", 1);
    ck_assert_int_eq(verify_dir(b, &c), LMP_ERR_INTEGRITY);
    ck_assert_str_eq(c.first, "chunks/layers-04-04.zst: not listed in the manifest");
    unlink(p);
    /* not a bundle */
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_bundle_verify(dir, NULL, NULL, NULL, NULL, &d), LMP_ERR_FORMAT);
    snprintf(p, sizeof p, "%s/nope", dir);
    ck_assert_int_eq(lmp_bundle_verify(p, NULL, NULL, NULL, NULL, &d), LMP_ERR_IO);
    free(b);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------- programs */

static int sh(const char *cmd, char **out, char **err)
{
    return t_sh(cmd, out, err);
}

/* Run `lmpack verify B` and return the exit code; *first gets stdout. */
static int verify_prog(const char *b, char **outp)
{
    char *argv[] = {(char *)t_bin("lmpack-verify"), (char *)b, NULL};
    char *out = NULL, *err = NULL;
    int rc = t_run(argv, &out, &err);
    free(err);
    if (outp)
        *outp = out;
    else
        free(out);
    return rc;
}

/* Fixture model -> container -> bundle with the programs. */
static char *make_bundle(const char *dir, const char *model, const char *name, const char *extra)
{
    char cmd[8192];
    char *b = lmp_path_join(dir, name);
    snprintf(cmd, sizeof cmd, "'%s' '%s' -o '%s.lmpk' && '%s' '%s.lmpk' -o '%s' --name %s %s",
             t_bin("lmpack-convert"), t_data(model), b, t_bin("lmpack-split"), b, b, model,
             extra ? extra : "");
    char *err = NULL;
    int rc = sh(cmd, NULL, &err);
    ck_assert_msg(rc == 0, "%s: %s", cmd, err);
    free(err);
    return b;
}

static void check_damage_everywhere(const char *b)
{
    lmp_manifest *m = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_manifest_load(&m, b, &d), LMP_OK);
    size_t nf = 1 + m->n_chunks + m->n_tokenizer;
    char **files = calloc(nf, sizeof *files);
    files[0] = strdup("manifest.json");
    for (size_t i = 0; i < m->n_chunks; i++) files[1 + i] = strdup(m->chunks[i].file);
    for (size_t i = 0; i < m->n_tokenizer; i++)
        files[1 + m->n_chunks + i] = strdup(m->tokenizer[i].file);
    lmp_manifest_free(m);
    char p[4096];
    for (size_t f = 0; f < nf; f++) {
        snprintf(p, sizeof p, "%s/%s", b, files[f]);
        size_t n;
        unsigned char *orig = t_slurp(p, &n);
        size_t pos[] = {0, 1, n / 3, n / 2, n - 2, n - 1};
        char *out = NULL;
        for (size_t k = 0; k < sizeof pos / sizeof *pos; k++) {
            orig[pos[k]] ^= 0x10;
            t_write(p, orig, n);
            int rc = verify_prog(b, &out);
            ck_assert_msg(rc == 3, "%s: flip at %zu: exit %d", files[f], pos[k], rc);
            ck_assert_msg(strncmp(out, files[f], strlen(files[f])) == 0,
                          "%s: flip at %zu reported as: %s", files[f], pos[k], out);
            free(out);
            orig[pos[k]] ^= 0x10;
        }
        t_write(p, orig, n / 2); /* truncated */
        ck_assert_int_eq(verify_prog(b, &out), 3);
        ck_assert_msg(strstr(out, files[f]) == out, "%s truncated: %s", files[f], out);
        free(out);
        ck_assert_int_eq(unlink(p), 0); /* missing */
        ck_assert_int_eq(verify_prog(b, &out), 3);
        ck_assert_msg(strstr(out, files[f]) == out, "%s missing: %s", files[f], out);
        free(out);
        t_write(p, orig, n);
        ck_assert_int_eq(verify_prog(b, NULL), 0);
        free(orig);
        free(files[f]);
    }
    free(files);
}

START_TEST(programs_stories_bundle)
{
    char *dir = t_tmpdir();
    char *b = make_bundle(dir, "stories260k", "st", NULL);
    char *out = NULL;
    ck_assert_int_eq(verify_prog(b, &out), 0);
    ck_assert_ptr_nonnull(strstr(out, "OK"));
    free(out);
    /* the tokenizer files travelled with it, byte for byte */
    char p1[4096], p2[4096];
    snprintf(p1, sizeof p1, "%s/tokenizer/tokenizer.json", b);
    ck_assert(files_equal(p1, t_data("stories260k/tokenizer.json")));

    check_damage_everywhere(b);
    /* an edited hash in the manifest: caught as an edit of the manifest */
    snprintf(p1, sizeof p1, "%s/manifest.json", b);
    size_t n;
    unsigned char *text = t_slurp(p1, &n);
    char *h = strstr((char *)text, "\"xxh3_compressed\":\t\"");
    ck_assert_ptr_nonnull(h);
    h += strlen("\"xxh3_compressed\":\t\"");
    *h = *h == 'a' ? 'b' : 'a';
    t_write(p1, text, n);
    ck_assert_int_eq(verify_prog(b, &out), 3);
    ck_assert_str_eq(out, "manifest.json: manifest_xxh3 mismatch (the manifest was edited or damaged)\n");
    free(out);
    free(text);
    /* the same edit with the self-hash redone: the chunk's hash no longer
     * matches, and verify names the chunk */
    char *ex = NULL;
    snprintf(p2, sizeof p2, "'%s' '%s'", t_bin("lmpack-manifest"), b);
    ck_assert_int_eq(sh(p2, NULL, NULL), 0); /* regenerate, then forge via the library */
    lmp_manifest *m = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_manifest_load(&m, b, &d), LMP_OK);
    m->chunks[2].xxh3_compressed[5] = m->chunks[2].xxh3_compressed[5] == '0' ? '1' : '0';
    ex = lmp_manifest_print(m);
    t_write(p1, ex, strlen(ex));
    free(ex);
    ck_assert_int_eq(verify_prog(b, &out), 3);
    snprintf(p2, sizeof p2, "%s: xxh3 mismatch (compressed)\n", m->chunks[2].file);
    ck_assert_str_eq(out, p2);
    free(out);
    /* a forged manifest naming ../x is rejected */
    m->chunks[2].xxh3_compressed[5] = m->chunks[2].xxh3_compressed[5] == '0' ? '1' : '0';
    char *save = m->tokenizer[0].file;
    m->tokenizer[0].file = "../x";
    ex = lmp_manifest_print(m);
    m->tokenizer[0].file = save;
    t_write(p1, ex, strlen(ex));
    free(ex);
    ck_assert_int_eq(verify_prog(b, &out), 3);
    ck_assert_ptr_nonnull(strstr(out, "'../x' not allowed"));
    free(out);
    /* restore by regeneration: byte-identical to the original bundle's */
    lmp_manifest_free(m);
    snprintf(p2, sizeof p2, "'%s' '%s'", t_bin("lmpack-manifest"), b);
    ck_assert_int_eq(sh(p2, NULL, NULL), 0);
    ck_assert_int_eq(verify_prog(b, NULL), 0);
    free(b);
    t_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(programs_determinism_and_manifest)
{
    char *dir = t_tmpdir();
    char *b1 = make_bundle(dir, "tiny-smollm-bf16", "t1", "-t 1");
    char *b2 = make_bundle(dir, "tiny-smollm-bf16", "t2", "-t 2");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "diff -r '%s' '%s'", b1, b2);
    ck_assert_int_eq(sh(cmd, NULL, NULL), 0);
    ck_assert_int_eq(verify_prog(b1, NULL), 0);
    /* lmpack manifest regenerates the same bytes */
    snprintf(cmd, sizeof cmd, "cp '%s/manifest.json' '%s/m.orig' && rm '%s/manifest.json' && "
                              "'%s' '%s' && cmp '%s/manifest.json' '%s/m.orig'",
             b1, dir, b1, t_bin("lmpack-manifest"), b1, b1, dir);
    char *err = NULL;
    ck_assert_msg(sh(cmd, NULL, &err) == 0, "%s", err);
    free(err);
    /* lmpack build gives the same bundle as convert + split */
    snprintf(cmd, sizeof cmd, "'%s' '%s' -o '%s/t3' && diff -r '%s' '%s/t3' && "
                              "test ! -e '%s/t3.lmpk'",
             t_bin("lmpack-build"), t_data("tiny-smollm-bf16"), dir, b1, dir, dir);
    ck_assert_msg(sh(cmd, NULL, &err) == 0, "%s", err);
    free(err);
    check_damage_everywhere(b1);
    /* other layer grouping */
    snprintf(cmd, sizeof cmd, "'%s' '%s.lmpk' -o '%s/t4' --layers-per-chunk 1 --zstd-level 9 && "
             "ls '%s/t4/chunks' | tr '\\n' ' '", t_bin("lmpack-split"), b1, dir, dir);
    char *out = NULL;
    ck_assert_int_eq(sh(cmd, &out, NULL), 0);
    ck_assert_str_eq(out, "head.zst layers-00-00.zst layers-01-01.zst layers-02-02.zst "
                          "layers-03-03.zst ");
    free(out);
    snprintf(cmd, sizeof cmd, "%s/t4", dir);
    ck_assert_int_eq(verify_prog(cmd, NULL), 0);
    free(b1);
    free(b2);
    t_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(programs_fault_injection_and_usage)
{
    char *dir = t_tmpdir();
    char *b = make_bundle(dir, "stories260k", "st", NULL);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "LMPACK_FAULT_AFTER_CHUNKS=1 '%s' '%s.lmpk' -o '%s/crash'",
             t_bin("lmpack-split"), b, dir);
    ck_assert_int_eq(sh(cmd, NULL, NULL), 1);
    snprintf(cmd, sizeof cmd, "%s/crash", dir);
    ck_assert(!lmp_exists(cmd));
    ck_assert_int_eq(verify_prog(cmd, NULL), 1); /* nothing there: not a bundle */
    /* whatever the crash left behind does not verify either */
    snprintf(cmd, sizeof cmd, "for d in '%s'/crash.tmp.*; do test -d \"$d\" || exit 9; "
                              "'%s' \"$d\" >/dev/null 2>&1; test $? = 3 || exit 1; done",
             dir, t_bin("lmpack-verify"));
    ck_assert_int_eq(sh(cmd, NULL, NULL), 0);
    /* same for build */
    snprintf(cmd, sizeof cmd, "LMPACK_FAULT_AFTER_CHUNKS=2 '%s' '%s' -o '%s/crash2'",
             t_bin("lmpack-build"), t_data("stories260k"), dir);
    ck_assert_int_eq(sh(cmd, NULL, NULL), 1);
    snprintf(cmd, sizeof cmd, "%s/crash2", dir);
    ck_assert_int_eq(verify_prog(cmd, NULL), 1);
    /* usage errors */
    snprintf(cmd, sizeof cmd, "'%s'", t_bin("lmpack-verify"));
    ck_assert_int_eq(sh(cmd, NULL, NULL), 2);
    snprintf(cmd, sizeof cmd, "'%s' --bogus x", t_bin("lmpack-verify"));
    ck_assert_int_eq(sh(cmd, NULL, NULL), 2);
    snprintf(cmd, sizeof cmd, "'%s' '%s' -o x --layers-per-chunk 0", t_bin("lmpack-split"), b);
    ck_assert_int_eq(sh(cmd, NULL, NULL), 2);
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s' --help", t_bin("lmpack-verify"));
    ck_assert_int_eq(sh(cmd, &out, NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: lmpack verify"));
    free(out);
    /* splitting onto an existing folder fails without touching it */
    snprintf(cmd, sizeof cmd, "'%s' '%s.lmpk' -o '%s'", t_bin("lmpack-split"), b, b);
    ck_assert_int_eq(sh(cmd, NULL, NULL), 1);
    ck_assert_int_eq(verify_prog(b, NULL), 0);
    /* default model name: the container's file name without .lmpk */
    snprintf(cmd, sizeof cmd, "'%s' '%s.lmpk' -o '%s/named' -t 2", t_bin("lmpack-split"), b, dir);
    ck_assert_int_eq(sh(cmd, NULL, NULL), 0);
    {
        lmp_manifest *m = NULL;
        lmp_diag d;
        lmp_diag_clear(&d);
        snprintf(cmd, sizeof cmd, "%s/named", dir);
        ck_assert_int_eq(lmp_manifest_load(&m, cmd, &d), LMP_OK);
        ck_assert_str_eq(m->name, "st");
        lmp_manifest_free(m);
    }
    /* --json report */
    snprintf(cmd, sizeof cmd, "'%s' --json '%s'", t_bin("lmpack-verify"), b);
    ck_assert_int_eq(sh(cmd, &out, NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"ok\": true"));
    free(out);
    free(b);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* Logits from the bundle equal those from the container, bit for bit; a
 * damaged chunk makes run fail naming the chunk. */
START_TEST(programs_run_from_bundle)
{
    static const char *models[] = {"stories260k", "tiny-smollm-bf16"};
    for (size_t mi = 0; mi < 2; mi++) {
        char *dir = t_tmpdir();
        char *b = make_bundle(dir, models[mi], "b", "--layers-per-chunk 2");
        char cmd[8192];
        snprintf(cmd, sizeof cmd,
                 "'%s' '%s' --ids '1 5 9 200 33 7' --logits '%s/a.f32' && "
                 "'%s' '%s.lmpk' --ids '1 5 9 200 33 7' --logits '%s/b.f32' && "
                 "'%s' '%s/manifest.json' --ids '1 5 9 200 33 7' --logits '%s/c.f32' && "
                 "'%s' '%s' --stream 1 --ids '1 5 9 200 33 7' --logits '%s/d.f32' && "
                 "'%s' '%s' --stream 3 --ids '1 5 9 200 33 7' --logits '%s/e.f32' && "
                 "cmp '%s/a.f32' '%s/b.f32' && cmp '%s/a.f32' '%s/c.f32' && "
                 "cmp '%s/a.f32' '%s/d.f32' && cmp '%s/a.f32' '%s/e.f32'",
                 t_bin("lmpack-run"), b, dir, t_bin("lmpack-run"), b, dir, t_bin("lmpack-run"),
                 b, dir, t_bin("lmpack-run"), b, dir, t_bin("lmpack-run"), b, dir, dir, dir, dir,
                 dir, dir, dir, dir, dir);
        char *err = NULL;
        ck_assert_msg(sh(cmd, NULL, &err) == 0, "%s: %s", models[mi], err);
        free(err);
        /* logits file has T * vocab floats and is not all zeros */
        size_t n;
        snprintf(cmd, sizeof cmd, "%s/a.f32", dir);
        unsigned char *lg = t_slurp(cmd, &n);
        ck_assert_uint_eq(n % (6 * 4), 0);
        int nz = 0;
        for (size_t i = 0; i < n; i++) nz |= lg[i];
        ck_assert(nz);
        free(lg);
        /* greedy ids agree too */
        char *o1 = NULL, *o2 = NULL;
        snprintf(cmd, sizeof cmd, "'%s' '%s' --ids 1 -n 12", t_bin("lmpack-run"), b);
        ck_assert_int_eq(sh(cmd, &o1, NULL), 0);
        snprintf(cmd, sizeof cmd, "'%s' '%s.lmpk' --ids 1 -n 12", t_bin("lmpack-run"), b);
        ck_assert_int_eq(sh(cmd, &o2, NULL), 0);
        ck_assert_str_eq(o1, o2);
        free(o2);
        snprintf(cmd, sizeof cmd, "'%s' '%s' --ids 1 -n 12 --stream 2", t_bin("lmpack-run"), b);
        ck_assert_int_eq(sh(cmd, &o2, NULL), 0);
        ck_assert_str_eq(o1, o2);
        free(o1);
        free(o2);
        /* damage the last chunk: run refuses, naming it */
        snprintf(cmd, sizeof cmd, "%s/chunks/layers-02-03.zst", b);
        unsigned char *z = t_slurp(cmd, &n);
        z[n / 2] ^= 1;
        t_write(cmd, z, n);
        free(z);
        snprintf(cmd, sizeof cmd, "'%s' '%s' --ids '1 5'", t_bin("lmpack-run"), b);
        ck_assert_int_eq(sh(cmd, NULL, &err), 3); /* integrity failure */
        ck_assert_msg(strstr(err, "chunks/layers-02-03.zst: xxh3 mismatch (compressed)") != NULL,
                      "%s", err);
        free(err);
        /* streaming: the damaged chunk is only read when its layer is
         * needed; the run still fails naming it, with no output */
        char *o3 = NULL;
        snprintf(cmd, sizeof cmd, "'%s' '%s' --ids '1 5' -n 3 --stream 1", t_bin("lmpack-run"), b);
        ck_assert_int_eq(sh(cmd, &o3, &err), 3);
        ck_assert_msg(strstr(err, "chunks/layers-02-03.zst: xxh3 mismatch (compressed)") != NULL,
                      "%s", err);
        ck_assert_str_eq(o3, "");
        free(o3);
        free(err);
        free(b);
        t_rmtree(dir);
        free(dir);
    }
}
END_TEST

/* Bundles already written stay readable: tests/data/compat holds the
 * stories260k bundle that session 3's lmpack (5247228) built with its
 * defaults. Today's reader must take its manifest as canonical (it re-prints
 * every manifest and compares, so a changed derived field would call every
 * older bundle damaged), verify it, and run it to the quality of a fresh
 * int4 build (mean KL under 0.2 nats against the FP32 model; 0.109 when it
 * was written). */
START_TEST(bundle_from_session3_still_loads)
{
    char *b = lmp_path_join(t_data("compat"), "stories260k-bundle-s3");
    lmp_manifest *m = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_manifest_load(&m, b, &d) == LMP_OK, "%s", d.msg);
    lmp_manifest_free(m);
    char *out = NULL;
    ck_assert_int_eq(verify_prog(b, &out), 0);
    free(out);
    char *argv[] = {(char *)t_bin("lmpack-verify"), b, "--quality", "--against",
                    (char *)t_data("stories260k"), "--self", "300", "--ctx", "100",
                    "--max-kld", "0.2", "--no-tensors", NULL};
    char *err = NULL;
    out = NULL;
    int rc = t_run(argv, &out, &err);
    ck_assert_msg(rc == 0, "verify --quality: exit %d: %s%s", rc, out, err);
    free(out);
    free(err);
    free(b);
}
END_TEST

Suite *lmp_suite_bundle(void)
{
    Suite *s = suite_create("bundle");
    TCase *tc = tcase_create("lib");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, chunk_roundtrip_and_layout);
    tcase_add_test(tc, chunk_parse_rejects_header_flips);
    tcase_add_test(tc, chunk_decompress_bounds);
    tcase_add_test(tc, hash_is_canonical_xxh3_128);
    tcase_add_test(tc, bundle_names);
    tcase_add_test(tc, split_verify_synthetic);
    tcase_add_test(tc, split_deterministic_and_manifest_regenerates);
    tcase_add_test(tc, manifest_every_byte_matters);
    tcase_add_test(tc, manifest_rejects_escaping_names);
    tcase_add_test(tc, verify_catches_damage_synthetic);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("programs");
    tcase_set_timeout(tp, 300);
    tcase_add_test(tp, programs_stories_bundle);
    tcase_add_test(tp, programs_determinism_and_manifest);
    tcase_add_test(tp, programs_fault_injection_and_usage);
    tcase_add_test(tp, programs_run_from_bundle);
    tcase_add_test(tp, bundle_from_session3_still_loads);
    suite_add_tcase(s, tp);
    return s;
}
