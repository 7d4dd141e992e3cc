/* mkgguf: write a Hugging Face Llama folder as a GGUF v3 file that
 * llama.cpp loads as architecture "llama", so llama.cpp can be timed on
 * exactly the model our own benchmark uses (bench/llamacpp/run.sh).
 *
 *   usage: mkgguf MODEL_DIR -o OUT.gguf [--type q4_0|f16|f32]
 *                 [--embed q8_0|q4_0|f16|f32] [--tokenizer FILE] [--pre NAME]
 *                 [--no-permute]
 *
 * Not part of liblmpack and not a `lmpack` command: a bench helper built by
 * bench/llamacpp/run.sh against build/release/liblmpack.a.
 *
 * What it writes (GGUF v3, little-endian; github.com/ggml-org/ggml
 * docs/gguf.md):
 *   "GGUF" u32 version=3, u64 n_tensors, u64 n_kv
 *   n_kv x {string key, u32 value type, value}     (string = u64 len + bytes)
 *   n_tensors x {string name, u32 n_dims, u64 ne[n_dims] (ne[0] = row
 *                length), u32 ggml type, u64 offset from the data start}
 *   zero padding to general.alignment (32), then the tensor data, each
 *   tensor starting at a multiple of 32 from the data start.
 * Metadata: the llama.* hyper-parameters from config.json (validated by the
 * project's parser, tensors checked against it), the tokenizer from
 * tokenizer.json (byte-level BPE -> tokenizer.ggml.model "gpt2" with
 * merges; SentencePiece-style BPE with byte fallback -> "llama" with
 * scores), BOS/EOS from config.json.
 * Tensors: HF names mapped to llama.cpp's (token_embd, blk.N.attn_q, ...,
 * output_norm; no output.weight when the embedding is tied, llama.cpp then
 * uses token_embd for the output too). q_proj / k_proj rows are permuted
 * per head from HF's rotate-half order to the interleaved pairs llama.cpp's
 * "llama" RoPE expects (what convert_hf_to_gguf.py does: row h*D + 2i + j
 * <- row h*D + j*D/2 + i, D = head_dim, j in {0,1}).
 * Types: norms F32; 2-D weights --type; the tensor the output projection
 * uses (token_embd when tied, else output.weight) --embed, whose default
 * for q4_0 is q8_0 as llama-quantize's default Q4_0 file on SmolLM shapes
 * (it picks Q8_0 there because 960 is not a multiple of 256; where it
 * would pick Q6_K we still write Q8_0); `--embed q4_0` gives the file
 * llama-quantize --pure makes. Q4_0 / Q8_0 rows whose length is not a
 * multiple of 32 are written F16 (llama-quantize's fallback).
 * Quantizers are ggml's reference ones (quantize_row_q4_0_ref /
 * quantize_row_q8_0_ref), which llama-quantize uses without an imatrix:
 *   Q4_0 block {f16 d; u8 qs[16]}: m = the value of largest magnitude
 *     (signed), d = m / -8, q = min(15, (int8)(x * (1/d) + 8.5)),
 *     qs[j] = q[j] | q[j + 16] << 4.
 *   Q8_0 block {f16 d; i8 qs[32]}: d = amax / 127, q = roundf(x * (1/d)).
 * --no-permute skips the q/k permutation: a deliberately wrong file, the
 * negative control of bench/llamacpp/check.sh.
 * Output is written to a temporary name and renamed (lmp_out_*).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/status.h"
#include "formats/config.h"
#include "formats/dtype.h"
#include "formats/safetensors.h"

#define PROG "mkgguf"
#define ALIGN 32

/* ggml_type values (ggml.h) and llama_ftype values (llama.h) used here. */
enum { GT_F32 = 0, GT_F16 = 1, GT_Q4_0 = 2, GT_Q8_0 = 8 };
enum { FT_ALL_F32 = 0, FT_MOSTLY_F16 = 1, FT_MOSTLY_Q4_0 = 2, FT_MOSTLY_Q8_0 = 7 };
/* GGUF metadata value types. */
enum { KV_U32 = 4, KV_I32 = 5, KV_F32 = 6, KV_BOOL = 7, KV_STR = 8, KV_ARR = 9 };
/* llama.cpp token types (llama_token_type). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mkgguf MODEL_DIR -o OUT.gguf [--type q4_0|f16|f32] [--embed q8_0|q4_0|f16|f32]\n"
            "              [--tokenizer FILE] [--pre NAME] [--no-permute]\n"
            "Write a Hugging Face Llama folder as a GGUF v3 file for llama.cpp (arch \"llama\").\n"
            "  --type T       2-D weights (default q4_0); norms are always f32\n"
            "  --embed T      the tensor used as output projection (token_embd when tied);\n"
            "                 default q8_0 for --type q4_0 (llama-quantize's default), else T\n"
            "  --tokenizer F  tokenizer.json to embed (default MODEL_DIR/tokenizer.json)\n"
            "  --pre NAME     tokenizer.ggml.pre for byte-level BPE (default \"default\")\n"
            "  --no-permute   keep HF's q/k row order (a wrong file; negative control)\n"
            "Rows not a multiple of 32 long are written f16 instead of q4_0/q8_0.\n");
}

static void die_usage(const char *msg, const char *arg)
{
    fprintf(stderr, "%s: %s%s%s\ntry '%s --help'\n", PROG, msg, arg ? " " : "", arg ? arg : "",
            PROG);
    exit(2);
}

static int parse_type(const char *s)
{
    if (!strcmp(s, "q4_0")) return GT_Q4_0;
    if (!strcmp(s, "q8_0")) return GT_Q8_0;
    if (!strcmp(s, "f16")) return GT_F16;
    if (!strcmp(s, "f32")) return GT_F32;
    return -1;
}

static const char *type_name(int t)
{
    return t == GT_Q4_0 ? "q4_0" : t == GT_Q8_0 ? "q8_0" : t == GT_F16 ? "f16" : "f32";
}

/* Bytes of one row of `n` values of ggml type t (n a multiple of 32 for
 * the block types: the caller falls back to F16 otherwise). */
static uint64_t row_bytes(int t, uint64_t n)
{
    switch (t) {
    case GT_Q4_0: return n / 32 * 18;
    case GT_Q8_0: return n / 32 * 34;
    case GT_F16: return n * 2;
    default: return n * 4;
    }
}

/* ---- growable little-endian byte buffer (the GGUF header) -------------- */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} buf;

static void b_put(buf *b, const void *src, size_t n)
{
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void b_u32(buf *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
    b_put(b, x, 4);
}

static void b_u64(buf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    b_put(b, x, 8);
}

static void b_f32(buf *b, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    b_u32(b, v);
}

static void b_str(buf *b, const char *s)
{
    size_t n = strlen(s);
    b_u64(b, n);
    b_put(b, s, n);
}

/* Key/value writers; each counts itself in *nkv. */
static void kv_u32(buf *b, uint64_t *nkv, const char *k, uint32_t v)
{
    b_str(b, k);
    b_u32(b, KV_U32);
    b_u32(b, v);
    ++*nkv;
}

static void kv_f32(buf *b, uint64_t *nkv, const char *k, float v)
{
    b_str(b, k);
    b_u32(b, KV_F32);
    b_f32(b, v);
    ++*nkv;
}

static void kv_bool(buf *b, uint64_t *nkv, const char *k, int v)
{
    uint8_t x = v ? 1 : 0;
    b_str(b, k);
    b_u32(b, KV_BOOL);
    b_put(b, &x, 1);
    ++*nkv;
}

static void kv_str(buf *b, uint64_t *nkv, const char *k, const char *v)
{
    b_str(b, k);
    b_u32(b, KV_STR);
    b_str(b, v);
    ++*nkv;
}

/* Array header; the caller then writes n elements of type et. */
static void kv_arr(buf *b, uint64_t *nkv, const char *k, uint32_t et, uint64_t n)
{
    b_str(b, k);
    b_u32(b, KV_ARR);
    b_u32(b, et);
    b_u64(b, n);
    ++*nkv;
}

/* ---- tokenizer.json -> GGUF vocabulary ---------------------------------- */

typedef struct vocab {
    int n;          /* number of tokens written (= config vocab_size) */
    char **tok;     /* n strings (owned) */
    int32_t *type;  /* n llama token types */
    float *score;   /* n scores (used by the "llama" model only) */
    char **merges;  /* "a b" strings (owned), byte-level BPE only */
    size_t n_merges;
    int spm;        /* 1: SentencePiece-style ("llama"), 0: byte-level ("gpt2") */
} vocab;

static void vocab_free(vocab *v)
{
    for (int i = 0; v->tok && i < v->n; i++) free(v->tok[i]);
    for (size_t i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i]);
    free(v->tok);
    free(v->type);
    free(v->score);
    free(v->merges);
    memset(v, 0, sizeof *v);
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* "<0xAB>": SentencePiece byte-fallback token. */
static int is_byte_token(const char *s)
{
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>' &&
           strchr("0123456789ABCDEFabcdef", s[3]) && strchr("0123456789ABCDEFabcdef", s[4]);
}

static const vocab *g_sort_vocab; /* for qsort/bsearch by token string */
static int cmp_id(const void *a, const void *b)
{
    return strcmp(g_sort_vocab->tok[*(const int *)a], g_sort_vocab->tok[*(const int *)b]);
}
static int cmp_key(const void *key, const void *b)
{
    return strcmp((const char *)key, g_sort_vocab->tok[*(const int *)b]);
}

/* Merge i of a BPE model: "a b" or ["a", "b"] -> pieces (pointers into j). */
static int merge_pair(const cJSON *m, const char **a, size_t *alen, const char **bp)
{
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp) return -1;
        *a = s;
        *alen = (size_t)(sp - s);
        *bp = sp + 1;
        return 0;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
        cJSON_IsString(cJSON_GetArrayItem(m, 0)) && cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
        *a = cJSON_GetArrayItem(m, 0)->valuestring;
        *alen = strlen(*a);
        *bp = cJSON_GetArrayItem(m, 1)->valuestring;
        return 0;
    }
    return -1;
}

/* Read tokenizer.json (model type BPE) into v with exactly n_vocab tokens:
 * ids the file lacks become "[PAD<id>]" (unused), as llama.cpp's converter
 * pads; an id >= n_vocab is an error (the embedding would not cover it). */
static lmp_status vocab_load(vocab *v, const char *path, int n_vocab, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *text = NULL;
    size_t len = 0;
    cJSON *j = NULL;
    int *sorted = NULL;
    memset(v, 0, sizeof *v);
    LMP_FORWARD(lmp_read_file(path, (size_t)1 << 30, &text, &len, d));
    j = cJSON_ParseWithLength(text, len);
    LMP_FAIL_IF(!j, LMP_ERR_FORMAT, "%s: not valid JSON", path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *mtype = cJSON_GetObjectItemCaseSensitive(model, "type");
    LMP_FAIL_IF(!cJSON_IsString(mtype) || strcmp(mtype->valuestring, "BPE"), LMP_ERR_UNSUPPORTED,
                "%s: model.type must be \"BPE\"", path);
    const cJSON *jv = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(model, "merges");
    LMP_FAIL_IF(!cJSON_IsObject(jv) || !cJSON_IsArray(jm), LMP_ERR_FORMAT,
                "%s: model.vocab (object) and model.merges (array) required", path);
    v->spm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    v->n = n_vocab;
    v->tok = calloc((size_t)n_vocab, sizeof *v->tok);
    v->type = calloc((size_t)n_vocab, sizeof *v->type);
    v->score = calloc((size_t)n_vocab, sizeof *v->score);
    LMP_FAIL_IF(!v->tok || !v->type || !v->score, LMP_ERR_NOMEM, "%s: out of memory", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, jv) {
        LMP_FAIL_IF(!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= n_vocab,
                    LMP_ERR_MODEL, "%s: token '%s' has id outside [0, %d) (vocab_size)", path,
                    it->string, n_vocab);
        int id = it->valueint;
        LMP_FAIL_IF(v->tok[id] != NULL, LMP_ERR_FORMAT, "%s: id %d used twice", path, id);
        v->tok[id] = xstrdup(it->string);
        LMP_FAIL_IF(!v->tok[id], LMP_ERR_NOMEM, "%s: out of memory", path);
        v->type[id] = v->spm && is_byte_token(it->string) ? TT_BYTE : TT_NORMAL;
    }
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "added_tokens")) {
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *jc = cJSON_GetObjectItemCaseSensitive(it, "content");
        LMP_FAIL_IF(!cJSON_IsNumber(jid) || !cJSON_IsString(jc) || jid->valuedouble < 0 ||
                        jid->valuedouble >= n_vocab,
                    LMP_ERR_MODEL, "%s: added token without a valid id below %d", path, n_vocab);
        int id = jid->valueint;
        if (!v->tok[id]) {
            v->tok[id] = xstrdup(jc->valuestring);
            LMP_FAIL_IF(!v->tok[id], LMP_ERR_NOMEM, "%s: out of memory", path);
        }
        v->type[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special")) ? TT_CONTROL
                                                                                   : TT_USER;
        if (cJSON_IsString(unk) && !strcmp(unk->valuestring, jc->valuestring))
            v->type[id] = TT_UNKNOWN;
    }
    for (int i = 0; i < n_vocab; i++) {
        if (v->tok[i]) continue;
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%d]", i);
        v->tok[i] = xstrdup(pad);
        LMP_FAIL_IF(!v->tok[i], LMP_ERR_NOMEM, "%s: out of memory", path);
        v->type[i] = TT_UNUSED;
    }
    size_t nm = (size_t)cJSON_GetArraySize(jm);
    if (!v->spm) {
        /* byte-level BPE: llama.cpp ranks merges by their order */
        v->merges = calloc(nm ? nm : 1, sizeof *v->merges);
        LMP_FAIL_IF(!v->merges, LMP_ERR_NOMEM, "%s: out of memory", path);
        cJSON_ArrayForEach(it, jm) {
            const char *a, *bp;
            size_t alen;
            LMP_FAIL_IF(merge_pair(it, &a, &alen, &bp), LMP_ERR_FORMAT,
                        "%s: merge %zu is not \"a b\" or [a, b]", path, v->n_merges);
            size_t blen = strlen(bp);
            char *s = malloc(alen + blen + 2);
            LMP_FAIL_IF(!s, LMP_ERR_NOMEM, "%s: out of memory", path);
            memcpy(s, a, alen);
            s[alen] = ' ';
            memcpy(s + alen + 1, bp, blen + 1);
            v->merges[v->n_merges++] = s;
        }
    } else {
        /* SentencePiece-style: llama.cpp merges the adjacent pair whose
         * concatenation has the highest score; tokenizer.json keeps the
         * order as merges, so the token made by merge r scores -r (others
         * -n_merges - id, below every merge). Only text tokenization
         * depends on this; the benchmarks feed token ids. */
        sorted = malloc(sizeof *sorted * (size_t)n_vocab);
        LMP_FAIL_IF(!sorted, LMP_ERR_NOMEM, "%s: out of memory", path);
        for (int i = 0; i < n_vocab; i++) {
            sorted[i] = i;
            v->score[i] = -(float)nm - (float)i;
        }
        g_sort_vocab = v;
        qsort(sorted, (size_t)n_vocab, sizeof *sorted, cmp_id);
        size_t r = 0;
        cJSON_ArrayForEach(it, jm) {
            const char *a, *bp;
            size_t alen;
            LMP_FAIL_IF(merge_pair(it, &a, &alen, &bp), LMP_ERR_FORMAT,
                        "%s: merge %zu is not \"a b\" or [a, b]", path, r);
            size_t blen = strlen(bp);
            char *s = malloc(alen + blen + 1);
            LMP_FAIL_IF(!s, LMP_ERR_NOMEM, "%s: out of memory", path);
            memcpy(s, a, alen);
            memcpy(s + alen, bp, blen + 1);
            const int *hit = bsearch(s, sorted, (size_t)n_vocab, sizeof *sorted, cmp_key);
            free(s);
            if (hit && v->score[*hit] < -(float)r) v->score[*hit] = -(float)r;
            r++;
        }
    }
out:
    free(sorted);
    cJSON_Delete(j);
    free(text);
    if (rc != LMP_OK) vocab_free(v);
    return rc;
}

/* ---- tensors ------------------------------------------------------------- */

typedef struct plan {
    char hf[96];    /* name in the checkpoint */
    char gg[64];    /* name in the GGUF file */
    int ndim;
    int64_t rows, cols; /* HF shape [rows, cols] (1-D: rows 1, cols n) */
    int type;       /* ggml type written */
    int permute;    /* 0, or the head count for the q/k row permutation */
    uint64_t offset, nbytes;
} plan;

/* HF tensor name -> llama.cpp name; 0 on success. */
static int map_name(const char *hf, char *out, size_t cap)
{
    static const struct { const char *hf, *gg; } layer[] = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(out, cap, "token_embd.weight") < 0;
    if (!strcmp(hf, "model.norm.weight")) return snprintf(out, cap, "output_norm.weight") < 0;
    if (!strcmp(hf, "lm_head.weight")) return snprintf(out, cap, "output.weight") < 0;
    int l, pos = 0;
    if (sscanf(hf, "model.layers.%d.%n", &l, &pos) == 1 && pos > 0)
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++)
            if (!strcmp(hf + pos, layer[i].hf)) {
                int n = snprintf(out, cap, "blk.%d.%s", l, layer[i].gg);
                return n < 0 || (size_t)n >= cap;
            }
    return -1;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* ggml quantize_row_q4_0_ref on one row (n % 32 == 0). */
static void q4_0_row(const float *x, int64_t n, uint8_t *out)
{
    for (int64_t b = 0; b < n / 32; b++, x += 32, out += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float dd = max / -8, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        put16(out, lmp_f32_to_f16(dd));
        for (int j = 0; j < 16; j++) {
            int q0 = (int8_t)(x[j] * id + 8.5f), q1 = (int8_t)(x[j + 16] * id + 8.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            out[2 + j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* ggml quantize_row_q8_0_ref on one row (n % 32 == 0). */
static void q8_0_row(const float *x, int64_t n, uint8_t *out)
{
    for (int64_t b = 0; b < n / 32; b++, x += 32, out += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float dd = amax / 127, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        put16(out, lmp_f32_to_f16(dd));
        for (int j = 0; j < 32; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

static void encode_row(int type, const float *x, int64_t n, uint8_t *out)
{
    switch (type) {
    case GT_Q4_0: q4_0_row(x, n, out); break;
    case GT_Q8_0: q8_0_row(x, n, out); break;
    case GT_F16:
        for (int64_t i = 0; i < n; i++) put16(out + 2 * i, lmp_f32_to_f16(x[i]));
        break;
    default:
        for (int64_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, &x[i], 4);
            for (int k = 0; k < 4; k++) out[4 * i + k] = (uint8_t)(v >> (8 * k));
        }
    }
}

/* Write one tensor's data: f32 copy, q/k permutation, rows encoded. */
static lmp_status write_tensor(lmp_out *o, const lmp_st *st, const plan *p, int head_dim,
                               lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const lmp_st_tensor *t = lmp_st_find(st, p->hf);
    float *w = NULL, *perm = NULL;
    uint8_t *row = NULL;
    LMP_FAIL_IF(!t, LMP_ERR_INTERNAL, "tensor '%s' vanished", p->hf);
    w = malloc(sizeof(float) * (size_t)t->nelem);
    row = malloc((size_t)row_bytes(p->type, (uint64_t)p->cols));
    LMP_FAIL_IF(!w || !row, LMP_ERR_NOMEM, "tensor '%s': out of memory", p->hf);
    LMP_FORWARD(lmp_st_to_f32(t, w, d));
    lmp_st_release(st, t);
    const float *src = w;
    if (p->permute) {
        /* HF rotate-half rows (h, j, i) -> llama.cpp interleaved (h, i, j) */
        perm = malloc(sizeof(float) * (size_t)t->nelem);
        LMP_FAIL_IF(!perm, LMP_ERR_NOMEM, "tensor '%s': out of memory", p->hf);
        int half = head_dim / 2;
        for (int h = 0; h < p->permute; h++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++)
                    memcpy(perm + ((size_t)h * head_dim + 2 * i + j) * (size_t)p->cols,
                           w + ((size_t)h * head_dim + (size_t)j * half + i) * (size_t)p->cols,
                           sizeof(float) * (size_t)p->cols);
        src = perm;
    }
    for (int64_t r = 0; r < p->rows; r++) {
        encode_row(p->type, src + (size_t)r * (size_t)p->cols, p->cols, row);
        LMP_FORWARD(lmp_out_write(o, row, (size_t)row_bytes(p->type, (uint64_t)p->cols), d));
    }
out:
    free(w);
    free(perm);
    free(row);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *outp = NULL, *tokp = NULL, *pre = "default";
    int type = GT_Q4_0, embed = -1, no_permute = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-permute")) {
            no_permute = 1;
            continue;
        }
        int has = i + 1 < argc;
        if (!strcmp(a, "-o") || !strcmp(a, "--type") || !strcmp(a, "--embed") ||
            !strcmp(a, "--tokenizer") || !strcmp(a, "--pre")) {
            if (!has) die_usage("missing value after", a);
            const char *v = argv[++i];
            if (!strcmp(a, "-o")) outp = v;
            else if (!strcmp(a, "--tokenizer")) tokp = v;
            else if (!strcmp(a, "--pre")) pre = v;
            else if (!strcmp(a, "--type")) {
                type = parse_type(v);
                if (type < 0 || type == GT_Q8_0) die_usage("--type must be q4_0, f16 or f32, not", v);
            } else {
                embed = parse_type(v);
                if (embed < 0) die_usage("--embed must be q8_0, q4_0, f16 or f32, not", v);
            }
        } else if (a[0] == '-') {
            die_usage("unknown option", a);
        } else if (!dir) {
            dir = a;
        } else {
            die_usage("unexpected argument", a);
        }
    }
    if (!dir || !outp) die_usage("MODEL_DIR and -o OUT.gguf are required", NULL);
    if (embed < 0) embed = type == GT_Q4_0 ? GT_Q8_0 : type;

    lmp_diag diag = {0}, *d = &diag;
    lmp_status rc = LMP_OK;
    lmp_config c;
    lmp_st *st = NULL;
    vocab v = {0};
    plan *pl = NULL;
    lmp_expect *ex = NULL;
    char *tokdef = NULL;
    buf h = {0};
    lmp_out o = {0};
    int out_open = 0;

    LMP_FORWARD(lmp_config_load(&c, dir, d));
    LMP_FAIL_IF(c.rope_type != LMP_ROPE_DEFAULT, LMP_ERR_UNSUPPORTED,
                "%s: rope_scaling (llama3) is not written by mkgguf (needs rope_freqs)", dir);
    LMP_FAIL_IF(c.head_dim % 2, LMP_ERR_UNSUPPORTED, "%s: odd head_dim %d", dir, c.head_dim);
    LMP_FORWARD(lmp_st_open(&st, dir, d));
    LMP_FORWARD(lmp_config_check(&c, st, d));
    if (!tokp) {
        tokdef = lmp_path_join(dir, "tokenizer.json");
        LMP_FAIL_IF(!tokdef, LMP_ERR_NOMEM, "out of memory");
        tokp = tokdef;
    }
    LMP_FORWARD(vocab_load(&v, tokp, c.vocab, d));

    /* tensor plan, in the config's canonical order */
    size_t nt = lmp_config_expected(&c, NULL, 0);
    ex = calloc(nt, sizeof *ex);
    pl = calloc(nt, sizeof *pl);
    LMP_FAIL_IF(!ex || !pl, LMP_ERR_NOMEM, "out of memory");
    lmp_config_expected(&c, ex, nt);
    uint64_t off = 0;
    for (size_t i = 0; i < nt; i++) {
        plan *p = &pl[i];
        snprintf(p->hf, sizeof p->hf, "%s", ex[i].name);
        LMP_FAIL_IF(map_name(p->hf, p->gg, sizeof p->gg), LMP_ERR_UNSUPPORTED,
                    "%s: tensor '%s' has no llama.cpp name here", dir, p->hf);
        p->ndim = ex[i].ndim;
        p->rows = p->ndim == 2 ? ex[i].shape[0] : 1;
        p->cols = p->ndim == 2 ? ex[i].shape[1] : ex[i].shape[0];
        int is_out = !strcmp(p->hf, c.tied ? "model.embed_tokens.weight" : "lm_head.weight");
        p->type = p->ndim == 1 ? GT_F32 : is_out ? embed : type;
        if ((p->type == GT_Q4_0 || p->type == GT_Q8_0) && p->cols % 32) p->type = GT_F16;
        if (strstr(p->hf, "self_attn.q_proj.weight")) p->permute = c.n_heads;
        if (strstr(p->hf, "self_attn.k_proj.weight")) p->permute = c.n_kv_heads;
        if (no_permute) p->permute = 0;
        LMP_FAIL_IF(p->permute && p->rows != (int64_t)p->permute * c.head_dim, LMP_ERR_MODEL,
                    "%s: '%s' has %lld rows, not heads x head_dim", dir, p->hf,
                    (long long)p->rows);
        p->nbytes = row_bytes(p->type, (uint64_t)p->cols) * (uint64_t)p->rows;
        p->offset = off;
        off += (p->nbytes + ALIGN - 1) / ALIGN * ALIGN;
    }

    /* header + metadata + tensor infos */
    uint64_t nkv = 0;
    b_put(&h, "GGUF", 4);
    b_u32(&h, 3);
    b_u64(&h, nt);
    size_t nkv_at = h.n;
    b_u64(&h, 0); /* patched below */
    int ft = type == GT_Q4_0 ? FT_MOSTLY_Q4_0 : type == GT_F16 ? FT_MOSTLY_F16 : FT_ALL_F32;
    kv_str(&h, &nkv, "general.architecture", "llama");
    kv_str(&h, &nkv, "general.name", "lmpack mkgguf");
    kv_u32(&h, &nkv, "general.file_type", (uint32_t)ft);
    kv_u32(&h, &nkv, "general.quantization_version", 2);
    kv_u32(&h, &nkv, "general.alignment", ALIGN);
    kv_u32(&h, &nkv, "llama.context_length", (uint32_t)c.max_pos);
    kv_u32(&h, &nkv, "llama.embedding_length", (uint32_t)c.hidden);
    kv_u32(&h, &nkv, "llama.block_count", (uint32_t)c.n_layers);
    kv_u32(&h, &nkv, "llama.feed_forward_length", (uint32_t)c.intermediate);
    kv_u32(&h, &nkv, "llama.attention.head_count", (uint32_t)c.n_heads);
    kv_u32(&h, &nkv, "llama.attention.head_count_kv", (uint32_t)c.n_kv_heads);
    kv_u32(&h, &nkv, "llama.attention.key_length", (uint32_t)c.head_dim);
    kv_u32(&h, &nkv, "llama.attention.value_length", (uint32_t)c.head_dim);
    kv_f32(&h, &nkv, "llama.rope.freq_base", c.rope_theta);
    kv_u32(&h, &nkv, "llama.rope.dimension_count", (uint32_t)c.head_dim);
    kv_f32(&h, &nkv, "llama.attention.layer_norm_rms_epsilon", c.rms_eps);
    kv_u32(&h, &nkv, "llama.vocab_size", (uint32_t)c.vocab);
    kv_str(&h, &nkv, "tokenizer.ggml.model", v.spm ? "llama" : "gpt2");
    if (!v.spm) kv_str(&h, &nkv, "tokenizer.ggml.pre", pre);
    kv_arr(&h, &nkv, "tokenizer.ggml.tokens", KV_STR, (uint64_t)v.n);
    for (int i = 0; i < v.n; i++) b_str(&h, v.tok[i]);
    kv_arr(&h, &nkv, "tokenizer.ggml.token_type", KV_I32, (uint64_t)v.n);
    for (int i = 0; i < v.n; i++) b_u32(&h, (uint32_t)v.type[i]);
    if (v.spm) {
        kv_arr(&h, &nkv, "tokenizer.ggml.scores", KV_F32, (uint64_t)v.n);
        for (int i = 0; i < v.n; i++) b_f32(&h, v.score[i]);
    } else {
        kv_arr(&h, &nkv, "tokenizer.ggml.merges", KV_STR, v.n_merges);
        for (size_t i = 0; i < v.n_merges; i++) b_str(&h, v.merges[i]);
    }
    if (c.bos >= 0) kv_u32(&h, &nkv, "tokenizer.ggml.bos_token_id", (uint32_t)c.bos);
    if (c.n_eos > 0) kv_u32(&h, &nkv, "tokenizer.ggml.eos_token_id", (uint32_t)c.eos[0]);
    for (int i = 0; i < v.n; i++)
        if (v.type[i] == TT_UNKNOWN) {
            kv_u32(&h, &nkv, "tokenizer.ggml.unknown_token_id", (uint32_t)i);
            break;
        }
    /* we feed token ids; keep llama.cpp from adding BOS to text prompts */
    kv_bool(&h, &nkv, "tokenizer.ggml.add_bos_token", 0);
    for (size_t i = 0; i < nt; i++) {
        const plan *p = &pl[i];
        b_str(&h, p->gg);
        b_u32(&h, (uint32_t)p->ndim);
        b_u64(&h, (uint64_t)p->cols); /* ne[0]: row length */
        if (p->ndim == 2) b_u64(&h, (uint64_t)p->rows);
        b_u32(&h, (uint32_t)p->type);
        b_u64(&h, p->offset);
    }
    LMP_FAIL_IF(h.oom, LMP_ERR_NOMEM, "out of memory building the GGUF header");
    for (int i = 0; i < 8; i++) h.p[nkv_at + i] = (uint8_t)(nkv >> (8 * i));

    LMP_FORWARD(lmp_out_open(&o, outp, d));
    out_open = 1;
    LMP_FORWARD(lmp_out_write(&o, h.p, h.n, d));
    LMP_FORWARD(lmp_out_pad(&o, ALIGN, d));
    uint64_t data0 = lmp_out_tell(&o);
    uint64_t counts[4] = {0}; /* f32, f16, q4_0, q8_0 tensors */
    for (size_t i = 0; i < nt; i++) {
        LMP_FAIL_IF(lmp_out_tell(&o) != data0 + pl[i].offset, LMP_ERR_INTERNAL,
                    "%s: offset of '%s' drifted", outp, pl[i].gg);
        LMP_FORWARD(write_tensor(&o, st, &pl[i], c.head_dim, d));
        LMP_FORWARD(lmp_out_pad(&o, ALIGN, d));
        counts[pl[i].type == GT_Q8_0 ? 3 : pl[i].type]++;
    }
    uint64_t total = lmp_out_tell(&o);
    LMP_FORWARD(lmp_out_commit(&o, d));
    out_open = 0;
    /* bits per weight of the 2-D weights, as llama.cpp's loader counts
     * (every tensor's bytes x 8 / its elements, norms included) */
    uint64_t nel = 0, nb = 0;
    for (size_t i = 0; i < nt; i++) {
        nel += (uint64_t)pl[i].rows * (uint64_t)pl[i].cols;
        nb += pl[i].nbytes;
    }
    printf("{\"file\": \"%s\", \"bytes\": %llu, \"tensor_bytes\": %llu, \"bpw\": %.3f, "
           "\"type\": \"%s\", \"embed\": \"%s\", \"tokenizer\": \"%s\", \"vocab\": %d, "
           "\"tensors\": {\"f32\": %llu, \"f16\": %llu, \"q4_0\": %llu, \"q8_0\": %llu}}\n",
           outp, (unsigned long long)total, (unsigned long long)nb, 8.0 * (double)nb / (double)nel,
           type_name(type), type_name(embed), v.spm ? "llama" : "gpt2", v.n,
           (unsigned long long)counts[0], (unsigned long long)counts[1],
           (unsigned long long)counts[2], (unsigned long long)counts[3]);
out:
    if (out_open) lmp_out_abort(&o);
    free(h.p);
    free(pl);
    free(ex);
    free(tokdef);
    vocab_free(&v);
    lmp_st_close(st);
    if (rc != LMP_OK) {
        fprintf(stderr, "%s: %s\n", PROG, diag.msg);
        return 1;
    }
    return 0;
}
