/* Browser entry layer: the functions web/app.js calls through Emscripten.
 *
 * A thin adapter over the library: chunks are checked and parsed by
 * formats/chunk.h (lmp_chunk_load_mem), tensors attached by runtime/bind.h,
 * the forward pass is runtime/forward.h, text is tokenizer/tokenizer.h. No
 * model math lives here. One model per page (module-level state): the page
 * is single-threaded, so there is no locking.
 *
 * Call order (app.js):
 *   lmpw_begin(config_json)             config from the manifest
 *   lmpw_add_file(name, bytes)          tokenizer files (hash checked in JS)
 *   lmpw_add_chunk(name, bytes, ...)    each chunk, head first (hash checked
 *                                       in JS and again here)
 *   lmpw_finish()                       model check, tokenizer, KV cache
 *   lmpw_gen_start / lmpw_gen_next* / lmpw_gen_end    streamed generation
 *   lmpw_logits(ids)                    logits of every position (tests)
 * Strings cross the boundary as UTF-8 with explicit lengths; buffers are
 * malloc'd by JS through the exported malloc/free. A failing call returns a
 * negative value (or NULL) and leaves a one-line message for lmpw_error().
 */
#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emscripten/emscripten.h>

#include "common/status.h"
#include "formats/chunk.h"
#include "formats/config.h"
#include "quantize/q4.h"
#include "runtime/bind.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/sample.h"
#include "tokenizer/tokenizer.h"
#include "web/wasm_hash.h"

/* Context used when the page does not ask for one: the target of the
 * project's memory budget (docs/WEB.md). */
#define LMPW_DEFAULT_CTX 2048

typedef struct chunk_store {
    lmp_chunk *v;
    size_t n, cap;
} chunk_store;

static struct {
    lmp_diag d;
    int begun, finished;
    int ctx_req;
    lmp_model model;
    chunk_store *chunks;       /* owned through model.release */
    char *tok_json;
    size_t tok_len;
    char *tok_cfg;             /* NUL-terminated or NULL */
    lmp_tok *tok;
    lmp_state *st;
    float *logits;             /* [vocab] of the last forward */
    /* generation */
    int gen_active;
    int pos;                   /* positions filled in the KV cache */
    int pending;               /* chosen token not yet fed back, -1 none */
    int n_new, max_new;
    lmp_sampler *sampler;
    lmp_tok_stream *stream;
    const char *text;
    size_t text_len;
    char *tail;
} W;

static int fail_msg(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static int fail_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    W.d.status = LMP_ERR_ARG;
    vsnprintf(W.d.msg, sizeof W.d.msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* A library call failed: its message is already in W.d. */
static int fail_diag(void) { return -1; }

/* Last failure message ("" if none). Valid until the next call. */
EMSCRIPTEN_KEEPALIVE const char *lmpw_error(void) { return W.d.msg; }

/* Current size of the wasm linear memory in bytes (the page shows it). */
EMSCRIPTEN_KEEPALIVE double lmpw_memory_bytes(void)
{
    return (double)__builtin_wasm_memory_size(0) * 65536.0;
}

/* Bytes currently allocated by malloc (in use, not the heap's size). */
EMSCRIPTEN_KEEPALIVE double lmpw_heap_used(void)
{
    struct mallinfo mi = mallinfo();
    return (double)(unsigned)mi.uordblks;
}

/* XXH3-128 of p[0..n) as 32 lowercase hex digits into out[33]. */
EMSCRIPTEN_KEEPALIVE void lmpw_hash_hex(const void *p, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    unsigned char h[16];
    lmpw_xxh3_128(p, n, h);
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hx[h[i] >> 4];
        out[2 * i + 1] = hx[h[i] & 15];
    }
    out[32] = 0;
}

static void release_chunks(void *owner)
{
    chunk_store *cs = owner;
    if (!cs) return;
    for (size_t i = 0; i < cs->n; i++) lmp_chunk_free(&cs->v[i]);
    free(cs->v);
    free(cs);
}

static void gen_reset(void)
{
    lmp_tok_stream_close(W.stream);
    W.stream = NULL;
    lmp_sampler_close(W.sampler);
    W.sampler = NULL;
    free(W.tail);
    W.tail = NULL;
    W.gen_active = 0;
    W.pending = -1;
    W.text = "";
    W.text_len = 0;
}

static void reset_all(void)
{
    gen_reset();
    lmp_state_close(W.st);
    lmp_tok_close(W.tok);
    lmp_model_close(&W.model); /* frees the chunks through release_chunks */
    if (W.chunks && !W.model.release) release_chunks(W.chunks);
    free(W.tok_json);
    free(W.tok_cfg);
    free(W.logits);
    memset(&W, 0, sizeof W);
    W.pending = -1;
    W.text = "";
}

/* Start loading a model: config.json text from the manifest, and the
 * context to allocate (0: min(max_position_embeddings, 2048)). */
EMSCRIPTEN_KEEPALIVE int lmpw_begin(const char *cfg_json, size_t len, int ctx)
{
    reset_all();
    if (lmp_config_parse(&W.model.cfg, cfg_json, len, "manifest.json: config", &W.d) != LMP_OK)
        return fail_diag();
    W.model.layers = calloc((size_t)W.model.cfg.n_layers, sizeof *W.model.layers);
    W.chunks = calloc(1, sizeof *W.chunks);
    if (!W.model.layers || !W.chunks) return fail_msg("out of memory for the model's layer table");
    W.model.release = release_chunks;
    W.model.owner = W.chunks;
    snprintf(W.model.source, sizeof W.model.source, "bundle-stream");
    W.ctx_req = ctx;
    W.begun = 1;
    return 0;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* A tokenizer file from the bundle (bytes already verified by the page). */
EMSCRIPTEN_KEEPALIVE int lmpw_add_file(const char *name, const void *p, size_t n)
{
    if (!W.begun || W.finished) return fail_msg("%s: no model is being loaded", name);
    const char *b = base_name(name);
    char **slot = NULL;
    if (!strcmp(b, "tokenizer.json")) slot = &W.tok_json;
    else if (!strcmp(b, "tokenizer_config.json")) slot = &W.tok_cfg;
    else return 0; /* other carried files are not needed in the browser */
    if (*slot) return fail_msg("%s: tokenizer file given twice", name);
    *slot = malloc(n + 1);
    if (!*slot) return fail_msg("%s: out of memory (%zu bytes)", name, n);
    memcpy(*slot, p, n);
    (*slot)[n] = 0;
    if (slot == &W.tok_json) W.tok_len = n;
    return 0;
}

/* One compressed chunk file (name as in the manifest, e.g.
 * "chunks/layers-00-02.zst"). The library re-checks size and XXH3-128 of the
 * compressed bytes (the page did too) and of the decompressed image, parses
 * it, and every tensor is attached to the model. `reserve` (may be NULL) is
 * freed first, see below. The raw image stays owned
 * by the model (tensors are used in place). */
EMSCRIPTEN_KEEPALIVE int lmpw_add_chunk(const char *name, const void *z, size_t zn,
                                        const char *hash_z, double raw_size, const char *hash_raw,
                                        void *reserve)
{
    /* The page allocated `reserve` (raw_size + slack bytes) just BEFORE the
     * compressed bytes; freeing it now lets the decompressed image take that
     * place, below the compressed buffer, so freeing the compressed buffer
     * afterwards gives its memory back to the top of the heap instead of
     * leaving a hole (measured: -39 MB of WASM memory on a 360M model). */
    free(reserve);
    if (!W.begun || W.finished) return fail_msg("%s: no model is being loaded", name);
    chunk_store *cs = W.chunks;
    if (cs->n == cs->cap) {
        size_t nc = cs->cap ? cs->cap * 2 : 16;
        lmp_chunk *v = realloc(cs->v, nc * sizeof *v);
        if (!v) return fail_msg("%s: out of memory", name);
        cs->v = v;
        cs->cap = nc;
    }
    lmp_chunk_expect e;
    memset(&e, 0, sizeof e);
    e.compressed_size = zn;
    e.raw_size = raw_size >= 0 ? (uint64_t)raw_size : UINT64_MAX;
    snprintf(e.xxh3_compressed, sizeof e.xxh3_compressed, "%s", hash_z ? hash_z : "");
    snprintf(e.xxh3_raw, sizeof e.xxh3_raw, "%s", hash_raw ? hash_raw : "");
    lmp_chunk *c = &cs->v[cs->n];
    memset(c, 0, sizeof *c);
    if (lmp_chunk_load_mem(c, z, zn, name, &e, &W.d) != LMP_OK) return fail_diag();
    cs->n++; /* owned by the store from here on */
    for (size_t i = 0; i < c->n_tensors; i++) {
        const lmp_chunk_tensor *t = &c->tensors[i];
        lmp_bind_tensor b = {.name = t->name, .kind = t->kind, .ndim = t->ndim,
                             .shape = {t->shape[0], t->ndim > 1 ? t->shape[1] : 0},
                             .group = t->group, .scheme = t->scheme, .data = t->data,
                             .size = t->size};
        if (t->ndim > 2) return fail_msg("%s: tensor '%s' has %d dimensions", name, t->name, t->ndim);
        if (lmp_model_bind(&W.model, &b, name, &W.d) != LMP_OK) return fail_diag();
    }
    return 0;
}

/* All files given: check the model is complete, build the tokenizer and the
 * KV cache. */
EMSCRIPTEN_KEEPALIVE int lmpw_finish(void)
{
    if (!W.begun || W.finished) return fail_msg("bundle: no model is being loaded");
    if (lmp_model_check(&W.model, "bundle", &W.d) != LMP_OK) return fail_diag();
    if (!W.tok_json) return fail_msg("bundle: the manifest lists no tokenizer/tokenizer.json");
    if (lmp_tok_load_mem(&W.tok, W.tok_json, W.tok_len, W.tok_cfg, "tokenizer/tokenizer.json",
                         &W.d) != LMP_OK)
        return fail_diag();
    free(W.tok_json);
    W.tok_json = NULL;
    int ctx = W.ctx_req;
    if (ctx <= 0) ctx = LMPW_DEFAULT_CTX;
    if (ctx > W.model.cfg.max_pos) ctx = W.model.cfg.max_pos;
    if (lmp_state_create(&W.st, &W.model, ctx, NULL, &W.d) != LMP_OK) return fail_diag();
    W.logits = malloc((size_t)W.model.cfg.vocab * sizeof *W.logits);
    if (!W.logits) return fail_msg("out of memory for %d logits", W.model.cfg.vocab);
    W.finished = 1;
    return 0;
}

EMSCRIPTEN_KEEPALIVE int lmpw_vocab(void) { return W.finished ? W.model.cfg.vocab : 0; }
EMSCRIPTEN_KEEPALIVE int lmpw_ctx(void) { return W.finished ? lmp_state_ctx(W.st) : 0; }

/* text -> malloc'd ids (JS frees), count in *n. add_bos < 0: the
 * tokenizer's own default. */
EMSCRIPTEN_KEEPALIVE int *lmpw_tokenize(const char *text, size_t len, int add_bos, size_t *n)
{
    *n = 0;
    if (!W.finished) {
        fail_msg("tokenize: no model loaded");
        return NULL;
    }
    if (add_bos < 0) add_bos = lmp_tok_add_bos_default(W.tok);
    int *ids = NULL;
    if (lmp_tok_encode(W.tok, text, len, add_bos, &ids, n, &W.d) != LMP_OK) return NULL;
    if (!ids) ids = malloc(sizeof *ids); /* empty but non-NULL: success */
    return ids;
}

static int is_eos(int id)
{
    for (int i = 0; i < W.model.cfg.n_eos; i++)
        if (W.model.cfg.eos[i] == id) return 1;
    return 0;
}

/* Encode the prompt (with BOS as the tokenizer's config says, like
 * `lmpack run --prompt`) and run it through the model in one pass. Sampling
 * is the library's (runtime/sample.h), fed the prompt tokens as context like
 * `lmpack run`: temperature 0 is greedy; top_k 0, top_p 1, min_p 0 and
 * repeat_penalty 1 switch the respective filter off. */
EMSCRIPTEN_KEEPALIVE int lmpw_gen_start(const char *text, size_t len, float temperature,
                                        int top_k, float top_p, float min_p,
                                        float repeat_penalty, double seed, int max_new)
{
    if (!W.finished) return fail_msg("generate: no model loaded");
    gen_reset();
    size_t n = 0;
    int *ids = lmpw_tokenize(text, len, -1, &n);
    if (!ids) return -1;
    int rc = -1;
    int ctx = lmp_state_ctx(W.st);
    lmp_sample_params sp;
    lmp_sample_defaults(&sp);
    sp.temperature = temperature;
    sp.top_k = top_k;
    sp.top_p = top_p;
    sp.min_p = min_p;
    sp.repeat_penalty = repeat_penalty;
    sp.seed = seed > 0 ? (uint64_t)seed : 0;
    if (n == 0) {
        fail_msg("generate: the prompt is empty and the tokenizer adds no BOS");
        goto out;
    }
    if ((int)n >= ctx) {
        fail_msg("generate: the prompt has %zu tokens, the context holds %d", n, ctx);
        goto out;
    }
    if (lmp_sampler_create(&W.sampler, &sp, W.model.cfg.vocab, &W.d) != LMP_OK) goto out;
    for (size_t i = 0; i < n; i++) lmp_sampler_accept(W.sampler, ids[i]);
    if (lmp_forward(W.st, ids, (int)n, 0, W.logits, LMP_LOGITS_LAST, &W.d) != LMP_OK) goto out;
    if (lmp_tok_stream_open(&W.stream, W.tok, &W.d) != LMP_OK) goto out;
    W.pos = (int)n;
    W.n_new = 0;
    W.max_new = max_new < 0 ? 0 : max_new;
    W.gen_active = 1;
    rc = 0;
out:
    free(ids);
    return rc;
}

/* Choose the next token (feeding the previous one back first). Returns the
 * token id, -1 when generation is over (max tokens, EOS, full context), -2
 * on error. The text that became final is at lmpw_gen_text(), its byte
 * count in *text_len. */
EMSCRIPTEN_KEEPALIVE int lmpw_gen_next(uint32_t *text_len)
{
    W.text = "";
    W.text_len = 0;
    *text_len = 0;
    if (!W.gen_active) return -1;
    if (W.n_new >= W.max_new) goto done;
    if (W.pending >= 0) {
        if (W.pos >= lmp_state_ctx(W.st)) goto done;
        if (lmp_forward(W.st, &W.pending, 1, W.pos, W.logits, LMP_LOGITS_LAST, &W.d) != LMP_OK)
            return -2;
        W.pos++;
    }
    int tok = lmp_sampler_sample(W.sampler, W.logits);
    lmp_sampler_accept(W.sampler, tok);
    W.n_new++;
    if (is_eos(tok)) goto done;
    if (lmp_tok_stream_push(W.stream, tok, &W.text, &W.text_len, &W.d) != LMP_OK) return -2;
    *text_len = (uint32_t)W.text_len;
    W.pending = tok;
    return tok;
done:
    W.gen_active = 0;
    return -1;
}

EMSCRIPTEN_KEEPALIVE const char *lmpw_gen_text(void) { return W.text; }

/* Finish the stream: the held-back tail (NUL-terminated, "" if none), or
 * NULL if no generation ran. */
EMSCRIPTEN_KEEPALIVE const char *lmpw_gen_end(void)
{
    if (!W.stream) return NULL;
    const char *t = NULL;
    size_t n = 0;
    if (lmp_tok_stream_finish(W.stream, &t, &n, &W.d) != LMP_OK) n = 0;
    free(W.tail);
    W.tail = malloc(n + 1);
    if (!W.tail) return NULL;
    if (n) memcpy(W.tail, t, n);
    W.tail[n] = 0;
    W.gen_active = 0;
    return W.tail;
}

/* Logits of every position of ids[0..n) from position 0 into out[n*vocab]
 * (the same numbers as `lmpack run --ids ... --logits FILE`). Ends any
 * generation in progress. */
EMSCRIPTEN_KEEPALIVE int lmpw_logits(const int *ids, int n, float *out)
{
    if (!W.finished) return fail_msg("logits: no model loaded");
    gen_reset();
    if (n <= 0 || n > lmp_state_ctx(W.st))
        return fail_msg("logits: %d ids, the context holds %d", n, lmp_state_ctx(W.st));
    if (lmp_forward(W.st, ids, n, 0, out, LMP_LOGITS_ALL, &W.d) != LMP_OK) return fail_diag();
    return 0;
}

/* Browser-side kernel check: lmp_mat_mul (SIMD128 in this build) against the
 * scalar reference lmp_mat_mul_ref on pseudo-random int4 SYM/ASYM and int8
 * matrices (groups 32/64/128, widths that are and are not multiples of 32,
 * 1 and 3 tokens). The kernels may differ only by float reassociation: an
 * output counts as wrong when |simd - ref| > 1e-5 * (1 + max |ref| of its
 * matrix) (reassociation error on these sizes is ~1e-7 relative; any
 * wrong code, scale or block gives errors of order 1e-2 or more). Returns
 * the number of wrong outputs (0 expected), or -1 if it could not run. */
EMSCRIPTEN_KEEPALIVE int lmpw_q4_selftest(void)
{
    static const int shapes[][2] = {{37, 64}, {20, 172}, {9, 960}, {5, 33}};
    static const int groups[] = {32, 64, 128};
    static const int schemes[] = {LMP_Q4_SYM, LMP_Q4_ASYM, LMP_Q4_Q8};
    uint64_t rng = 0x243f6a8885a308d3ull;
    int bad = 0;
    if (!lmp_q4_simd_active()) return fail_msg("q4 selftest: the SIMD128 kernel is not active");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t gi = 0; gi < 3; gi++)
            for (size_t ki = 0; ki < 3; ki++)
                for (int n = 1; n <= 3; n += 2) {
                    int rows = shapes[si][0], cols = shapes[si][1];
                    int g = groups[gi], sch = schemes[ki];
                    size_t rb = lmp_q4_row_bytes(cols, g, sch);
                    float *wf = malloc(sizeof(float) * (size_t)cols);
                    float *x = malloc(sizeof(float) * (size_t)cols * n);
                    float *y0 = malloc(sizeof(float) * (size_t)rows * n);
                    float *y1 = malloc(sizeof(float) * (size_t)rows * n);
                    uint8_t *q = malloc(rb * (size_t)rows);
                    lmp_mat m;
                    int ok = wf && x && y0 && y1 && q && rb;
                    for (int r = 0; ok && r < rows; r++) {
                        for (int c = 0; c < cols; c++) {
                            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                            wf[c] = (float)((int)(rng >> 40) % 2001 - 1000) / 997.0f;
                        }
                        lmp_q4_quantize_row_ref(wf, cols, g, sch, LMP_Q4_MINMAX, q + rb * (size_t)r);
                    }
                    for (int i = 0; ok && i < cols * n; i++) {
                        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                        x[i] = (float)((int)(rng >> 40) % 2001 - 1000) / 313.0f;
                    }
                    ok = ok && lmp_q4_mat_init(&m, rows, cols, g, sch, q, NULL) == LMP_OK;
                    if (ok) {
                        lmp_mat_mul(&m, x, n, y0, NULL);
                        lmp_mat_mul_ref(&m, x, n, y1);
                        float mx = 0.0f;
                        for (int i = 0; i < rows * n; i++)
                            mx = fabsf(y1[i]) > mx ? fabsf(y1[i]) : mx;
                        for (int i = 0; i < rows * n; i++)
                            bad += !(fabsf(y0[i] - y1[i]) <= 1e-5f * (1.0f + mx));
                    }
                    free(wf);
                    free(x);
                    free(y0);
                    free(y1);
                    free(q);
                    if (!ok) return fail_msg("q4 selftest: setup failed (cols %d group %d scheme %d)", cols, g, sch);
                }
    return bad;
}
