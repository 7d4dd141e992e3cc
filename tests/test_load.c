/* Bundle loading (runtime/load_bundle.c, formats/chunk.h lmp_chunk_load_into):
 * the parallel loader gives the same model bytes as the .lmpk the bundle was
 * split from whatever the thread count, reports the same error (the first
 * damaged chunk in load order) whatever the thread count, and the fused
 * decompress + hash computes exactly XXH3-128 of the whole raw image. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "formats/chunk.h"
#include "manifest/manifest.h"
#include "quantize/q4.h"
#include "runtime/forward.h"
#include "runtime/model.h"
#include "tests/testutil.h"

/* Convert a fixture and split it with one layer per chunk: dir/b (+ b.lmpk). */
static char *make_bundle(const char *dir, const char *model)
{
    char cmd[8192];
    char *b = lmp_path_join(dir, "b");
    snprintf(cmd, sizeof cmd,
             "'%s' '%s' -o '%s.lmpk' && '%s' '%s.lmpk' -o '%s' --layers-per-chunk 1",
             t_bin("lmpack-convert"), t_data(model), b, t_bin("lmpack-split"), b, b);
    char *err = NULL;
    int rc = t_sh(cmd, NULL, &err);
    ck_assert_msg(rc == 0, "%s: %s", cmd, err);
    free(err);
    return b;
}

static void same_mat(const lmp_mat *a, const lmp_mat *b, const char *what, int l)
{
    ck_assert_msg(a->kind == b->kind && a->rows == b->rows && a->cols == b->cols &&
                      a->group == b->group && a->scheme == b->scheme &&
                      a->row_bytes == b->row_bytes,
                  "%s (layer %d): view differs", what, l);
    ck_assert_msg(!memcmp(a->data, b->data, (size_t)a->rows * a->row_bytes),
                  "%s (layer %d): bytes differ", what, l);
}

/* Every view of a and b holds the same bytes (b: the .lmpk reference). */
static void same_model(const lmp_model *a, const lmp_model *b)
{
    size_t hb = (size_t)a->cfg.hidden * sizeof(float);
    for (int l = 0; l < a->cfg.n_layers; l++) {
        const lmp_layer *x = &a->layers[l], *y = &b->layers[l];
        same_mat(&x->wq, &y->wq, "wq", l);
        same_mat(&x->wk, &y->wk, "wk", l);
        same_mat(&x->wv, &y->wv, "wv", l);
        same_mat(&x->wo, &y->wo, "wo", l);
        same_mat(&x->wgate, &y->wgate, "wgate", l);
        same_mat(&x->wup, &y->wup, "wup", l);
        same_mat(&x->wdown, &y->wdown, "wdown", l);
        ck_assert(!memcmp(x->attn_norm, y->attn_norm, hb));
        ck_assert(!memcmp(x->ffn_norm, y->ffn_norm, hb));
    }
    same_mat(&a->embed, &b->embed, "embed", -1);
    same_mat(&a->lm_head, &b->lm_head, "lm_head", -1);
    ck_assert(!memcmp(a->final_norm, b->final_norm, hb));
}

START_TEST(parallel_load_same_bytes)
{
    static const char *models[] = {"stories260k", "tiny-untied-f32-sharded"};
    for (size_t mi = 0; mi < 2; mi++) {
        char *dir = t_tmpdir();
        char *b = make_bundle(dir, models[mi]);
        char lp[4200];
        snprintf(lp, sizeof lp, "%s.lmpk", b);
        lmp_diag d = {0};
        lmp_model ref;
        ck_assert_msg(lmp_model_open(&ref, lp, NULL, &d) == LMP_OK, "%s", d.msg);
        lmp_manifest *man = NULL;
        ck_assert_int_eq(lmp_manifest_load(&man, b, &d), LMP_OK);
        ck_assert_uint_ge(man->n_chunks, 3); /* at least 2 layers + head */
        uint64_t raw = 0, z = 0;
        for (size_t c = 0; c < man->n_chunks; c++) {
            raw += man->chunks[c].raw_size;
            z += man->chunks[c].compressed_size;
        }
        for (int t = 1; t <= 3; t++) {
            lmp_load_stats st;
            lmp_model_opts o = {0};
            o.threads = t;
            o.stats = &st;
            lmp_model m;
            ck_assert_msg(lmp_model_open(&m, b, &o, &d) == LMP_OK, "%s: %s", models[mi], d.msg);
            same_model(&m, &ref);
            ck_assert_int_eq(st.threads, t);
            ck_assert_uint_eq(st.chunks, man->n_chunks);
            ck_assert_uint_eq(st.raw_bytes, raw);
            ck_assert_uint_eq(st.compressed_bytes, z);
            ck_assert(st.total_ms >= st.chunks_ms && st.chunks_ms >= 0);
            lmp_model_close(&m);
        }
        /* streaming, one layer slot: each layer acquired in turn is the
         * same bytes too (and the previous one is evicted) */
        lmp_model_opts o = {0};
        o.stream_layers = 1;
        lmp_model m;
        ck_assert_msg(lmp_model_open(&m, b, &o, &d) == LMP_OK, "%s", d.msg);
        ck_assert_ptr_nonnull(m.acquire_layer);
        for (int l = 0; l < m.cfg.n_layers; l++) {
            ck_assert_msg(m.acquire_layer(m.owner, l, &d) == LMP_OK, "%s", d.msg);
            same_mat(&m.layers[l].wq, &ref.layers[l].wq, "stream wq", l);
            same_mat(&m.layers[l].wdown, &ref.layers[l].wdown, "stream wdown", l);
            ck_assert(!memcmp(m.layers[l].ffn_norm, ref.layers[l].ffn_norm,
                              (size_t)m.cfg.hidden * 4));
            if (l > 0) ck_assert_ptr_null(m.layers[l - 1].wq.data);
        }
        lmp_model_close(&m);
        lmp_manifest_free(man);
        lmp_model_close(&ref);
        free(b);
        t_rmtree(dir);
        free(dir);
    }
}
END_TEST

/* Logits of a fixed 12-token prompt (prefill, all rows) then 3 decode
 * steps, 2 threads: [15][vocab] into out. */
static void logits_of(const lmp_model *m, float *out)
{
    lmp_diag d = {0};
    lmp_pool *p = NULL;
    lmp_state *s = NULL;
    ck_assert_int_eq(lmp_pool_create(&p, 2, &d), LMP_OK);
    ck_assert_msg(lmp_state_create(&s, m, 64, p, &d) == LMP_OK, "%s", d.msg);
    int ids[15];
    for (int i = 0; i < 15; i++) ids[i] = (i * 37 + 5) % m->cfg.vocab;
    ck_assert_msg(lmp_forward(s, ids, 12, 0, out, LMP_LOGITS_ALL, &d) == LMP_OK, "%s", d.msg);
    for (int i = 12; i < 15; i++)
        ck_assert_msg(lmp_forward(s, ids + i, 1, i, out + (size_t)i * m->cfg.vocab,
                                  LMP_LOGITS_LAST, &d) == LMP_OK,
                      "%s", d.msg);
    lmp_state_close(s);
    lmp_pool_close(p);
}

/* The loaders re-order int4 codes exactly when lmp_q4_pack_wanted
 * (lmp_bind_pack): for the AVX-512 kernels into LMP_Q4_LAYOUT_R16 where the
 * rows allow it (all of stories260k's but its 172-row MLP gate / up), else
 * X16; with R16 switched off (lmp_q4_allow_r16(0)) into X16; with AVX-512
 * switched off (what an AVX2-only CPU runs) into LMP_Q4_LAYOUT_R8 where the
 * rows allow it, leaving the 172-row matrices as stored. The .lmpk (copied
 * into its arena), the resident bundle (in place) and the streamed bundle
 * (into its slots) then hold the re-ordered bytes and compute the same
 * logits, bit for bit. With X16 those are the bits of the .lmpk with the
 * re-ordering switched off (the stored bytes, read in place); R16 and R8
 * have their kernels' own float order (and R8 runs beside the AVX2
 * kernel), so their logits only stay within 2 % of the logit range of
 * those (observed 0.25 %: a wrong row or scale gives differences of the
 * logits' own size). */
START_TEST(x16_loaders_same_logits)
{
    char *dir = t_tmpdir();
    char *b = make_bundle(dir, "stories260k");
    char lp[4200];
    snprintf(lp, sizeof lp, "%s.lmpk", b);
    lmp_diag d = {0};
    const int want = lmp_q4_x16_wanted(LMP_MAT_Q4, LMP_Q4_DEFAULT_SCHEME);
    if (!want)
        fprintf(stderr, "test_load: the AVX-512 kernel is not active here: checking that no "
                        "loader re-orders codes\n");
    int prev = lmp_q4_allow_x16(0), prev8 = lmp_q4_allow_r8(0);
    lmp_model plain;
    ck_assert_msg(lmp_model_open(&plain, lp, NULL, &d) == LMP_OK, "%s", d.msg);
    lmp_q4_allow_x16(prev);
    lmp_q4_allow_r8(prev8);
    ck_assert_int_eq(plain.layers[0].wq.layout, LMP_Q4_LAYOUT_ROWS);
    const size_t nl = (size_t)15 * plain.cfg.vocab;
    float *ref = malloc(sizeof(float) * nl), *got = malloc(sizeof(float) * nl),
          *first = malloc(sizeof(float) * nl);
    logits_of(&plain, ref);
    float lo = ref[0], hi = ref[0];
    for (size_t i = 0; i < nl; i++) {
        lo = fminf(lo, ref[i]);
        hi = fmaxf(hi, ref[i]);
    }
    /* v: 0 X16, 1 R16 (AVX-512 loaders), 2 R8 (the loaders of an AVX2-only
     * CPU: AVX-512 switched off) */
    for (int v = 0; v < 3; v++) {
        const int prev16 = lmp_q4_allow_r16(v == 1);
        const int prev512 = lmp_q4_allow_avx512(v != 2);
        const int packs = v == 2 ? lmp_q4_r8_wanted(LMP_MAT_Q4, LMP_Q4_DEFAULT_SCHEME, 64) : want;
        const int lay = !packs   ? LMP_Q4_LAYOUT_ROWS
                        : v == 2 ? LMP_Q4_LAYOUT_R8
                        : v == 1 ? LMP_Q4_LAYOUT_R16
                                 : LMP_Q4_LAYOUT_X16;
        /* R16 and R8 sum in their kernels' order: other bits than ref's */
        const int own_bits = lay == LMP_Q4_LAYOUT_R16 || lay == LMP_Q4_LAYOUT_R8 ||
                             (v == 2 && want);
        for (int k = 0; k < 3; k++) {
            lmp_model_opts o = {0};
            o.stream_layers = k == 2 ? 1 : 0;
            lmp_model m;
            ck_assert_msg(lmp_model_open(&m, k == 0 ? lp : b, &o, &d) == LMP_OK, "%s", d.msg);
            if (k == 2) {
                /* before any layer is bound, a streamed int4 model is known to be
                 * quantized: the same KV cache type as resident (lmp_kv_type AUTO) */
                lmp_state *s = NULL;
                ck_assert_int_eq(lmp_state_create(&s, &m, 16, NULL, &d), LMP_OK);
                ck_assert_int_eq(lmp_state_kv(s), LMP_KV_F16);
                lmp_state_close(s);
                ck_assert_msg(m.acquire_layer(m.owner, 0, &d) == LMP_OK, "%s", d.msg);
            }
            const lmp_mat *w[3] = {&m.layers[0].wq, &m.embed, &m.layers[0].wgate};
            const lmp_mat *p[3] = {&plain.layers[0].wq, &plain.embed, &plain.layers[0].wgate};
            for (int i = 0; i < 3; i++) {
                /* 172 gate rows: X16 beside R16, the stored order beside R8 */
                const int li = i != 2 || lay == LMP_Q4_LAYOUT_X16 ? lay
                               : lay == LMP_Q4_LAYOUT_R16         ? LMP_Q4_LAYOUT_X16
                                                                  : LMP_Q4_LAYOUT_ROWS;
                ck_assert_int_eq(w[i]->layout, li);
                size_t bytes = (size_t)p[i]->rows * p[i]->row_bytes;
                ck_assert_int_eq(memcmp(w[i]->data, p[i]->data, bytes) != 0,
                                 li != LMP_Q4_LAYOUT_ROWS); /* re-ordered */
            }
            logits_of(&m, got);
            if (!own_bits) {
                ck_assert_msg(!memcmp(got, ref, sizeof(float) * nl), "loader %d: logits differ", k);
            } else if (k == 0) {
                memcpy(first, got, sizeof(float) * nl);
                double worst = 0;
                for (size_t i = 0; i < nl; i++) worst = fmax(worst, fabs((double)got[i] - ref[i]));
                ck_assert_msg(worst <= 0.02 * (hi - lo), "v%d: logits move by %g of a range of %g",
                              v, worst, (double)(hi - lo));
            } else {
                ck_assert_msg(!memcmp(got, first, sizeof(float) * nl),
                              "v%d loader %d: logits differ from the .lmpk's", v, k);
            }
            lmp_model_close(&m);
        }
        lmp_q4_allow_avx512(prev512);
        lmp_q4_allow_r16(prev16);
    }
    free(ref);
    free(got);
    free(first);
    lmp_model_close(&plain);
    free(b);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* Load with t threads; returns the status, message in msg. */
static lmp_status load_msg(const char *b, int t, char *msg, size_t cap)
{
    lmp_diag d = {0};
    lmp_model_opts o = {0};
    o.threads = t;
    lmp_model m;
    lmp_status rc = lmp_model_open(&m, b, &o, &d);
    snprintf(msg, cap, "%s", d.msg);
    if (rc == LMP_OK) lmp_model_close(&m);
    else ck_assert_ptr_null(m.layers); /* nothing left to close */
    return rc;
}

/* Loading b fails with LMP_ERR_INTEGRITY and one message, naming `file`
 * and `what`, whatever the thread count (1, 2, 3). */
static void same_error_any_threads(const char *b, const char *file, const char *what)
{
    char msg[3][LMP_DIAG_MAX], want[600];
    snprintf(want, sizeof want, "%s: %s", file, what);
    for (int t = 1; t <= 3; t++) {
        ck_assert_int_eq(load_msg(b, t, msg[t - 1], sizeof msg[0]), LMP_ERR_INTEGRITY);
        ck_assert_msg(strstr(msg[t - 1], want) != NULL, "%d threads: %s", t, msg[t - 1]);
        ck_assert_str_eq(msg[t - 1], msg[0]);
    }
}

START_TEST(damaged_chunk_same_error_any_threads)
{
    char *dir = t_tmpdir();
    char *b = make_bundle(dir, "stories260k");
    char p[4200];
    size_t n;
    /* a flipped byte in the last chunk and a truncated earlier one: the
     * earlier one (load order) is reported, by every thread count */
    lmp_manifest *man = NULL;
    lmp_diag d = {0};
    ck_assert_int_eq(lmp_manifest_load(&man, b, &d), LMP_OK);
    size_t last = man->n_chunks - 1;
    ck_assert_uint_ge(last, 2);
    snprintf(p, sizeof p, "%s/%s", b, man->chunks[last].file);
    unsigned char *z = t_slurp(p, &n);
    z[n / 2] ^= 0x10;
    t_write(p, z, n);
    free(z);
    same_error_any_threads(b, man->chunks[last].file, "xxh3 mismatch (compressed)");
    snprintf(p, sizeof p, "%s/%s", b, man->chunks[1].file);
    z = t_slurp(p, &n);
    t_write(p, z, n - 1);
    free(z);
    same_error_any_threads(b, man->chunks[1].file, "size mismatch");
    /* a missing chunk file */
    ck_assert_int_eq(remove(p), 0);
    same_error_any_threads(b, man->chunks[1].file, "missing or unreadable");
    lmp_manifest_free(man);
    free(b);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* lmp_chunk_load_into on a chunk of several zstd blocks (> 128 KiB raw):
 * the raw hash it computes block by block equals the one-shot XXH3-128 of
 * the image; each manifest field it checks is checked. */
START_TEST(load_into_fused_hash)
{
    enum { NT = 3 };
    static const int64_t rows[NT] = {300, 700, 5};
    lmp_chunk_tensor t[NT];
    uint8_t *src[NT];
    memset(t, 0, sizeof t);
    uint32_t x = 12345;
    for (int i = 0; i < NT; i++) {
        snprintf(t[i].name, sizeof t[i].name, "model.layers.0.t%d.weight", i);
        t[i].kind = 0; /* f32 */
        t[i].ndim = 2;
        t[i].shape[0] = rows[i];
        t[i].shape[1] = 257;
        t[i].size = (uint64_t)rows[i] * 257 * 4;
        src[i] = malloc(t[i].size);
        /* half compressible: repeated runs and pseudo-random bytes */
        for (uint64_t k = 0; k < t[i].size; k++) {
            x = x * 1103515245u + 12345u;
            src[i][k] = (k / 512) % 2 ? (uint8_t)(x >> 24) : (uint8_t)(k / 4096);
        }
        t[i].data = src[i];
    }
    lmp_diag d = {0};
    uint8_t *raw = NULL, *zb = NULL;
    size_t rn = 0, zn = 0;
    ck_assert_int_eq(lmp_chunk_encode(1, 0, 0, t, NT, NULL, 0, &raw, &rn, &d), LMP_OK);
    ck_assert_uint_gt(rn, 3 * (128u << 10)); /* several zstd blocks */
    ck_assert_int_eq(lmp_chunk_compress(raw, rn, 1, &zb, &zn, &d), LMP_OK);
    char *dir = t_tmpdir();
    char *path = lmp_path_join(dir, "c.zst");
    t_write(path, zb, zn);
    char hz[LMP_HASH_HEX], hr[LMP_HASH_HEX];
    lmp_hash_hex(zb, zn, hz);
    lmp_hash_hex(raw, rn, hr);
    size_t cap = rn + 64;
    uint8_t *dst = aligned_alloc(64, (cap + 63) / 64 * 64);
    /* hashes unknown: computed, and equal to the one-shot ones */
    lmp_chunk_expect e = {zn, rn, "", ""};
    lmp_chunk c;
    lmp_chunk_times tm = {0};
    ck_assert_msg(lmp_chunk_load_into(&c, path, "c.zst", &e, dst, cap, &tm, &d) == LMP_OK, "%s",
                  d.msg);
    ck_assert_str_eq(e.xxh3_compressed, hz);
    ck_assert_str_eq(e.xxh3_raw, hr);
    ck_assert(!memcmp(dst, raw, rn));
    ck_assert_uint_eq(c.n_tensors, NT);
    ck_assert(c.tensors[1].data > dst && c.tensors[1].data < dst + rn);
    ck_assert_ptr_eq(c.raw, dst);
    ck_assert_ptr_null(c.owned);
    ck_assert(!memcmp(c.tensors[2].data, src[2], t[2].size));
    ck_assert(tm.decompress_s >= 0 && tm.hash_s >= 0);
    lmp_chunk_free(&c);
    /* hashes given: accepted; then one field wrong at a time */
    lmp_chunk_expect good = {zn, rn, "", ""};
    memcpy(good.xxh3_compressed, hz, LMP_HASH_HEX);
    memcpy(good.xxh3_raw, hr, LMP_HASH_HEX);
    e = good;
    ck_assert_int_eq(lmp_chunk_load_into(&c, path, "c.zst", &e, dst, cap, NULL, &d), LMP_OK);
    lmp_chunk_free(&c);
    struct {
        lmp_chunk_expect e;
        lmp_status st;
        const char *msg;
    } bad[4];
    for (int i = 0; i < 4; i++) bad[i].e = good;
    bad[0].e.compressed_size = zn + 1;
    bad[0].st = LMP_ERR_INTEGRITY;
    bad[0].msg = "c.zst: size mismatch";
    bad[1].e.xxh3_compressed[5] ^= 1;
    bad[1].st = LMP_ERR_INTEGRITY;
    bad[1].msg = "c.zst: xxh3 mismatch (compressed)";
    bad[2].e.raw_size = rn - 64;
    bad[2].st = LMP_ERR_INTEGRITY;
    bad[2].msg = "c.zst: raw size mismatch";
    bad[3].e.xxh3_raw[31] = bad[3].e.xxh3_raw[31] == '0' ? '1' : '0';
    bad[3].st = LMP_ERR_INTEGRITY;
    bad[3].msg = "c.zst: xxh3 mismatch (raw)";
    for (int i = 0; i < 4; i++) {
        lmp_diag_clear(&d);
        e = bad[i].e;
        ck_assert_int_eq(lmp_chunk_load_into(&c, path, "c.zst", &e, dst, cap, NULL, &d),
                         bad[i].st);
        ck_assert_msg(strstr(d.msg, bad[i].msg) == d.msg, "case %d: %s", i, d.msg);
        ck_assert_ptr_null(c.tensors);
    }
    /* a buffer too small is refused before reading */
    e = good;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_chunk_load_into(&c, path, "c.zst", &e, dst, rn - 1, NULL, &d),
                     LMP_ERR_ARG);
    /* a truncated frame (size as the manifest claims, hash unchecked) is a
     * format error, not a crash */
    t_write(path, zb, zn - 7);
    e = good;
    e.compressed_size = zn - 7;
    e.xxh3_compressed[0] = '\0';
    lmp_diag_clear(&d);
    ck_assert_int_ne(lmp_chunk_load_into(&c, path, "c.zst", &e, dst, cap, NULL, &d), LMP_OK);
    free(dst);
    free(path);
    t_rmtree(dir);
    free(dir);
    free(raw);
    free(zb);
    for (int i = 0; i < NT; i++) free(src[i]);
}
END_TEST

/* Streaming (K = 1, read-ahead on): layers before a damaged chunk load;
 * acquiring a layer of the damaged chunk fails naming it, with the message
 * a resident load gives; the model still serves other layers afterwards. */
START_TEST(stream_damaged_chunk)
{
    char *dir = t_tmpdir();
    char *b = make_bundle(dir, "stories260k");
    lmp_manifest *man = NULL;
    lmp_diag d = {0};
    ck_assert_int_eq(lmp_manifest_load(&man, b, &d), LMP_OK);
    size_t bad = man->n_chunks - 2; /* a layer chunk, not the last */
    int bad_layer = man->chunks[bad].first_layer;
    char p[4200], resident[LMP_DIAG_MAX];
    size_t n;
    snprintf(p, sizeof p, "%s/%s", b, man->chunks[bad].file);
    unsigned char *z = t_slurp(p, &n);
    z[n - 3] ^= 0x01;
    t_write(p, z, n);
    free(z);
    ck_assert_int_eq(load_msg(b, 2, resident, sizeof resident), LMP_ERR_INTEGRITY);
    lmp_model_opts o = {0};
    o.stream_layers = 1;
    lmp_model m;
    ck_assert_msg(lmp_model_open(&m, b, &o, &d) == LMP_OK, "%s", d.msg);
    for (int pass = 0; pass < 2; pass++) {
        for (int l = 0; l < m.cfg.n_layers; l++) {
            lmp_diag_clear(&d);
            lmp_status rc = m.acquire_layer(m.owner, l, &d);
            if (l == bad_layer) {
                ck_assert_int_eq(rc, LMP_ERR_INTEGRITY);
                ck_assert_str_eq(d.msg, resident);
                ck_assert_ptr_null(m.layers[l].wq.data);
            } else {
                ck_assert_msg(rc == LMP_OK, "pass %d layer %d: %s", pass, l, d.msg);
                ck_assert_ptr_nonnull(m.layers[l].wq.data);
            }
        }
    }
    lmp_model_close(&m);
    lmp_manifest_free(man);
    free(b);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* split --zstd-raw-literals: different chunk bytes (literals stored, not
 * Huffman-coded), still a valid bundle for verify, and the loaded model is
 * the .lmpk's bytes. */
START_TEST(raw_literals_bundle)
{
    char *dir = t_tmpdir();
    char *b = make_bundle(dir, "tiny-smollm-bf16");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' '%s.lmpk' -o '%s/r' --layers-per-chunk 1 --zstd-raw-literals && '%s' '%s/r'",
             t_bin("lmpack-split"), b, dir, t_bin("lmpack-verify"), dir);
    char *err = NULL;
    ck_assert_msg(t_sh(cmd, NULL, &err) == 0, "%s", err);
    free(err);
    snprintf(cmd, sizeof cmd, "%s/r", dir);
    lmp_manifest *m1 = NULL, *m2 = NULL;
    lmp_diag d = {0};
    ck_assert_int_eq(lmp_manifest_load(&m1, b, &d), LMP_OK);
    ck_assert_int_eq(lmp_manifest_load(&m2, cmd, &d), LMP_OK);
    ck_assert_uint_eq(m1->n_chunks, m2->n_chunks);
    int differ = 0;
    for (size_t c = 0; c < m1->n_chunks; c++) {
        ck_assert_str_eq(m1->chunks[c].xxh3_raw, m2->chunks[c].xxh3_raw); /* same images */
        differ |= strcmp(m1->chunks[c].xxh3_compressed, m2->chunks[c].xxh3_compressed) != 0;
    }
    ck_assert_msg(differ, "--zstd-raw-literals produced the default chunk bytes");
    lmp_model ref, m;
    char lp[4200];
    snprintf(lp, sizeof lp, "%s.lmpk", b);
    ck_assert_msg(lmp_model_open(&ref, lp, NULL, &d) == LMP_OK, "%s", d.msg);
    lmp_model_opts o = {0};
    o.threads = 2;
    ck_assert_msg(lmp_model_open(&m, cmd, &o, &d) == LMP_OK, "%s", d.msg);
    same_model(&m, &ref);
    lmp_model_close(&m);
    lmp_model_close(&ref);
    lmp_manifest_free(m1);
    lmp_manifest_free(m2);
    free(b);
    t_rmtree(dir);
    free(dir);
}
END_TEST

Suite *lmp_suite_load(void)
{
    Suite *s = suite_create("load");
    TCase *tc = tcase_create("bundle");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, load_into_fused_hash);
    tcase_add_test(tc, parallel_load_same_bytes);
    tcase_add_test(tc, x16_loaders_same_logits);
    tcase_add_test(tc, damaged_chunk_same_error_any_threads);
    tcase_add_test(tc, stream_damaged_chunk);
    tcase_add_test(tc, raw_literals_bundle);
    suite_add_tcase(s, tc);
    return s;
}
