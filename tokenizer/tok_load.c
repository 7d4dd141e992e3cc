/* tokenizer.json / tokenizer_config.json parsing into lmp_tok.
 * Every component the encoder or decoder would have to interpret is either
 * understood here or rejected with LMP_ERR_UNSUPPORTED naming it. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

#define TOK_MAX_JSON (512u << 20)

static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---- hashing ------------------------------------------------------------ */

uint64_t tok_hash(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xC2B2AE3D27D4EB4Full;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)s[i] << (8 * i);
    h = (h ^ v) * 0xC2B2AE3D27D4EB4Full;
    h ^= h >> 32;
    h *= 0x165667B19E3779F9ull;
    h ^= h >> 29;
    return h;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

int tok_strmap_get(const lmp_tok *t, const char *s, size_t n)
{
    if (!t->vocab.slot) return -1;
    size_t i = tok_hash(s, n) & t->vocab.mask;
    for (;;) {
        int32_t id = t->vocab.slot[i];
        if (id < 0) return -1;
        if (t->vlen[id] == n && memcmp(t->vstr[id], s, n) == 0) return id;
        i = (i + 1) & t->vocab.mask;
    }
}

static uint64_t pair_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    return k;
}

const tok_merge *tok_merge_get(const tok_mergemap *m, int32_t a, int32_t b)
{
    if (!m->slot) return NULL;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = pair_hash(key) & m->mask;
    for (;;) {
        const tok_merge *e = &m->slot[i];
        if (e->key == UINT64_MAX) return NULL;
        if (e->key == key) return e;
        i = (i + 1) & m->mask;
    }
}

/* Insert or overwrite (the library keeps the last duplicate merge). */
static void merge_put(tok_mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = pair_hash(key) & m->mask;
    while (m->slot[i].key != UINT64_MAX && m->slot[i].key != key) i = (i + 1) & m->mask;
    m->slot[i].key = key;
    m->slot[i].rank = rank;
    m->slot[i].id = id;
}

/* ---- GPT-2 byte map ------------------------------------------------------ */

static int byte_printable(int b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t tok_byte_to_cp(uint8_t b)
{
    if (byte_printable(b)) return b;
    uint32_t n = 0;
    for (int i = 0; i < b; i++)
        if (!byte_printable(i)) n++;
    return 256 + n;
}

int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 256) return byte_printable((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1; /* 68 bytes are not printable */
    uint32_t n = 0;
    for (int b = 0; b < 256; b++)
        if (!byte_printable(b) && n++ == cp - 256) return b;
    return -1;
}

/* ---- JSON helpers -------------------------------------------------------- */

static int jbool(const cJSON *o, const char *k, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jnull(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return !v || cJSON_IsNull(v);
}

static char *dupn(const char *s, size_t n)
{
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

/* String pattern of a Replace/Split ({"String": s}); NULL when it is a Regex. */
static const char *pattern_string(const cJSON *o, const char **regex)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    *regex = NULL;
    if (!cJSON_IsObject(p)) return NULL;
    const char *s = jstr(p, "String");
    if (!s) *regex = jstr(p, "Regex");
    return s;
}

/* ---- components ----------------------------------------------------------- */

static lmp_status add_stage(tok_stage *arr, int *n, tok_stage st, const char *what,
                            const char *name, lmp_diag *d)
{
    if (*n >= TOK_MAX_STAGES) {
        free(st.a);
        free(st.b);
        return lmp_fail(d, LMP_ERR_UNSUPPORTED, "%s: more than %d %s stages", name,
                        TOK_MAX_STAGES, what);
    }
    arr[(*n)++] = st;
    return LMP_OK;
}

static lmp_status parse_normalizer(lmp_tok *t, const cJSON *o, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    if (!o || cJSON_IsNull(o)) return LMP_OK;
    const char *type = jstr(o, "type");
    LMP_FAIL_IF(!type, LMP_ERR_FORMAT, "%s: normalizer without a \"type\"", t->name);
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "normalizers");
        LMP_FAIL_IF(!cJSON_IsArray(arr), LMP_ERR_FORMAT,
                    "%s: normalizer Sequence without a \"normalizers\" array", t->name);
        const cJSON *e;
        cJSON_ArrayForEach(e, arr) LMP_FORWARD(parse_normalizer(t, e, d));
    } else if (!strcmp(type, "Prepend")) {
        const char *p = jstr(o, "prepend");
        LMP_FAIL_IF(!p, LMP_ERR_FORMAT, "%s: normalizer Prepend without \"prepend\"", t->name);
        tok_stage st = {.kind = NORM_PREPEND, .a = dupn(p, strlen(p)), .alen = strlen(p)};
        LMP_FAIL_IF(!st.a, LMP_ERR_NOMEM, "%s: out of memory", t->name);
        LMP_FORWARD(add_stage(t->norm, &t->n_norm, st, "normalizer", t->name, d));
    } else if (!strcmp(type, "Replace")) {
        const char *re, *p = pattern_string(o, &re), *c = jstr(o, "content");
        LMP_FAIL_IF(!p && re, LMP_ERR_UNSUPPORTED,
                    "%s: normalizer Replace with a Regex pattern is not supported", t->name);
        LMP_FAIL_IF(!p || !c || !*p, LMP_ERR_FORMAT,
                    "%s: normalizer Replace needs a non-empty String pattern and content", t->name);
        tok_stage st = {.kind = NORM_REPLACE, .a = dupn(p, strlen(p)), .alen = strlen(p),
                        .b = dupn(c, strlen(c)), .blen = strlen(c)};
        LMP_FAIL_IF(!st.a || !st.b, LMP_ERR_NOMEM, "%s: out of memory", t->name);
        LMP_FORWARD(add_stage(t->norm, &t->n_norm, st, "normalizer", t->name, d));
    } else {
        LMP_FAIL(LMP_ERR_UNSUPPORTED, "%s: normalizer \"%s\" is not supported", t->name, type);
    }
out:
    return rc;
}

static lmp_status parse_pre(lmp_tok *t, const cJSON *o, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    if (!o || cJSON_IsNull(o)) return LMP_OK;
    const char *type = jstr(o, "type");
    LMP_FAIL_IF(!type, LMP_ERR_FORMAT, "%s: pre_tokenizer without a \"type\"", t->name);
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers");
        LMP_FAIL_IF(!cJSON_IsArray(arr), LMP_ERR_FORMAT,
                    "%s: pre_tokenizer Sequence without a \"pretokenizers\" array", t->name);
        const cJSON *e;
        cJSON_ArrayForEach(e, arr) LMP_FORWARD(parse_pre(t, e, d));
    } else if (!strcmp(type, "ByteLevel")) {
        tok_stage st = {.kind = PRE_BYTELEVEL, .f1 = jbool(o, "add_prefix_space", 1),
                        .f2 = jbool(o, "use_regex", 1)};
        t->byte_level = 1;
        LMP_FORWARD(add_stage(t->pre, &t->n_pre, st, "pre_tokenizer", t->name, d));
    } else if (!strcmp(type, "Digits")) {
        tok_stage st = {.kind = PRE_DIGITS, .f1 = jbool(o, "individual_digits", 0)};
        LMP_FORWARD(add_stage(t->pre, &t->n_pre, st, "pre_tokenizer", t->name, d));
    } else if (!strcmp(type, "Split")) {
        const char *re, *p = pattern_string(o, &re), *beh = jstr(o, "behavior");
        LMP_FAIL_IF(jbool(o, "invert", 0), LMP_ERR_UNSUPPORTED,
                    "%s: pre_tokenizer Split with invert=true is not supported", t->name);
        LMP_FAIL_IF(!beh || (strcmp(beh, "Isolated") && strcmp(beh, "Removed")),
                    LMP_ERR_UNSUPPORTED,
                    "%s: pre_tokenizer Split behavior \"%s\" is not supported (Isolated, Removed)",
                    t->name, beh ? beh : "(missing)");
        tok_stage st = {.f1 = !strcmp(beh, "Removed")};
        if (p) {
            LMP_FAIL_IF(!*p, LMP_ERR_FORMAT, "%s: pre_tokenizer Split with an empty pattern",
                        t->name);
            st.kind = PRE_SPLIT_STR;
            st.a = dupn(p, strlen(p));
            st.alen = strlen(p);
            LMP_FAIL_IF(!st.a, LMP_ERR_NOMEM, "%s: out of memory", t->name);
        } else {
            int which = !re ? -1
                        : !strcmp(re, GPT2_REGEX)   ? TOK_RE_GPT2
                        : !strcmp(re, LLAMA3_REGEX) ? TOK_RE_LLAMA3
                        : !strcmp(re, QWEN2_REGEX)  ? TOK_RE_QWEN2
                                                    : -1;
            LMP_FAIL_IF(which < 0 || st.f1, LMP_ERR_UNSUPPORTED,
                        "%s: pre_tokenizer Split regex \"%.80s\" is not supported (only the "
                        "GPT-2, Llama-3 and Qwen2 patterns, Isolated)", t->name,
                        re ? re : "(missing)");
            st.kind = PRE_SPLIT_REGEX;
            st.f2 = which;
        }
        LMP_FORWARD(add_stage(t->pre, &t->n_pre, st, "pre_tokenizer", t->name, d));
    } else {
        LMP_FAIL(LMP_ERR_UNSUPPORTED, "%s: pre_tokenizer \"%s\" is not supported", t->name, type);
    }
out:
    return rc;
}

static lmp_status parse_decoder(lmp_tok *t, const cJSON *o, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    if (!o || cJSON_IsNull(o)) return LMP_OK;
    t->has_decoder = 1;
    const char *type = jstr(o, "type");
    LMP_FAIL_IF(!type, LMP_ERR_FORMAT, "%s: decoder without a \"type\"", t->name);
    tok_stage st = {0};
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "decoders");
        LMP_FAIL_IF(!cJSON_IsArray(arr), LMP_ERR_FORMAT,
                    "%s: decoder Sequence without a \"decoders\" array", t->name);
        const cJSON *e;
        cJSON_ArrayForEach(e, arr) LMP_FORWARD(parse_decoder(t, e, d));
        goto out;
    } else if (!strcmp(type, "ByteLevel")) {
        st.kind = DEC_BYTELEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
        st.kind = DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        st.kind = DEC_FUSE;
    } else if (!strcmp(type, "Replace")) {
        const char *re, *p = pattern_string(o, &re), *c = jstr(o, "content");
        LMP_FAIL_IF(!p && re, LMP_ERR_UNSUPPORTED,
                    "%s: decoder Replace with a Regex pattern is not supported", t->name);
        LMP_FAIL_IF(!p || !c || !*p, LMP_ERR_FORMAT,
                    "%s: decoder Replace needs a non-empty String pattern and content", t->name);
        st.kind = DEC_REPLACE;
        st.a = dupn(p, strlen(p));
        st.alen = strlen(p);
        st.b = dupn(c, strlen(c));
        st.blen = strlen(c);
        LMP_FAIL_IF(!st.a || !st.b, LMP_ERR_NOMEM, "%s: out of memory", t->name);
    } else if (!strcmp(type, "Strip")) {
        const char *c = jstr(o, "content");
        const cJSON *s0 = cJSON_GetObjectItemCaseSensitive(o, "start");
        const cJSON *s1 = cJSON_GetObjectItemCaseSensitive(o, "stop");
        LMP_FAIL_IF(!c || !cJSON_IsNumber(s0) || !cJSON_IsNumber(s1) || s0->valuedouble < 0 ||
                        s1->valuedouble < 0 || s0->valuedouble > 1e6 || s1->valuedouble > 1e6,
                    LMP_ERR_FORMAT, "%s: decoder Strip needs content, start and stop", t->name);
        uint32_t cp;
        int bad;
        size_t cl = *c ? lmp_utf8_next((const uint8_t *)c, strlen(c), &cp, &bad) : 0;
        LMP_FAIL_IF(cl == 0 || bad || c[cl], LMP_ERR_FORMAT,
                    "%s: decoder Strip content must be one character", t->name);
        st.kind = DEC_STRIP;
        st.a = dupn(c, cl);
        st.alen = cl;
        st.f1 = (int)s0->valuedouble;
        st.f2 = (int)s1->valuedouble;
        LMP_FAIL_IF(!st.a, LMP_ERR_NOMEM, "%s: out of memory", t->name);
    } else {
        LMP_FAIL(LMP_ERR_UNSUPPORTED, "%s: decoder \"%s\" is not supported", t->name, type);
    }
    rc = add_stage(t->dec, &t->n_dec, st, "decoder", t->name, d);
    st.a = st.b = NULL;
out:
    if (rc != LMP_OK) {
        free(st.a);
        free(st.b);
    }
    return rc;
}

/* TemplateProcessing "single": [SpecialToken X]? [Sequence A] -> BOS = X. */
static lmp_status parse_template(lmp_tok *t, const cJSON *o, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
    LMP_FAIL_IF(!cJSON_IsArray(single), LMP_ERR_FORMAT,
                "%s: post_processor TemplateProcessing without a \"single\" array", t->name);
    int n = cJSON_GetArraySize(single), seen_seq = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(single, i);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        if (sq) {
            LMP_FAIL_IF(seen_seq, LMP_ERR_FORMAT, "%s: TemplateProcessing with two sequences",
                        t->name);
            seen_seq = 1;
            continue;
        }
        LMP_FAIL_IF(!sp, LMP_ERR_FORMAT, "%s: TemplateProcessing piece %d is neither "
                    "SpecialToken nor Sequence", t->name, i);
        LMP_FAIL_IF(seen_seq || i > 0, LMP_ERR_UNSUPPORTED,
                    "%s: post_processor TemplateProcessing adding special tokens other than one "
                    "leading BOS is not supported", t->name);
        const char *name = jstr(sp, "id");
        const cJSON *st = name ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(st, "ids");
        LMP_FAIL_IF(!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) != 1 ||
                        !cJSON_IsNumber(cJSON_GetArrayItem(ids, 0)),
                    LMP_ERR_UNSUPPORTED,
                    "%s: TemplateProcessing special token \"%s\" must map to exactly one id",
                    t->name, name ? name : "(missing)");
        double v = cJSON_GetArrayItem(ids, 0)->valuedouble;
        LMP_FAIL_IF(v < 0 || v >= t->n_ids, LMP_ERR_FORMAT,
                    "%s: TemplateProcessing special token id %g outside the vocabulary", t->name, v);
        t->bos_id = (int)v;
        t->add_bos = 1;
    }
out:
    return rc;
}

static lmp_status parse_post(lmp_tok *t, const cJSON *o, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    if (!o || cJSON_IsNull(o)) return LMP_OK;
    const char *type = jstr(o, "type");
    LMP_FAIL_IF(!type, LMP_ERR_FORMAT, "%s: post_processor without a \"type\"", t->name);
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "processors");
        LMP_FAIL_IF(!cJSON_IsArray(arr), LMP_ERR_FORMAT,
                    "%s: post_processor Sequence without a \"processors\" array", t->name);
        const cJSON *e;
        cJSON_ArrayForEach(e, arr) LMP_FORWARD(parse_post(t, e, d));
    } else if (!strcmp(type, "ByteLevel")) {
        /* only adjusts offsets: no effect on ids */
    } else if (!strcmp(type, "TemplateProcessing")) {
        LMP_FORWARD(parse_template(t, o, d));
    } else {
        LMP_FAIL(LMP_ERR_UNSUPPORTED, "%s: post_processor \"%s\" is not supported", t->name, type);
    }
out:
    return rc;
}

/* ---- model -------------------------------------------------------------- */

static lmp_status set_id(lmp_tok *t, int id, const char *what, lmp_diag *d)
{
    if (id < 0 || id >= t->n_ids)
        return lmp_fail(d, LMP_ERR_FORMAT, "%s: %s id %d outside [0, %d)", t->name, what, id,
                        t->n_ids);
    return LMP_OK;
}

static int json_id(const cJSON *v)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 0x7fffffff ||
        v->valuedouble != (double)(int)v->valuedouble)
        return -1;
    return (int)v->valuedouble;
}

static lmp_status parse_model(lmp_tok *t, const cJSON *m, const cJSON *added, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    LMP_FAIL_IF(!cJSON_IsObject(m), LMP_ERR_FORMAT, "%s: no \"model\" object", t->name);
    const char *type = jstr(m, "type");
    LMP_FAIL_IF(type && strcmp(type, "BPE"), LMP_ERR_UNSUPPORTED,
                "%s: model type \"%s\" is not supported (BPE only)", t->name, type);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    LMP_FAIL_IF(dropout && !cJSON_IsNull(dropout) &&
                    !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0),
                LMP_ERR_UNSUPPORTED, "%s: BPE dropout is not supported", t->name);
    const char *csp = jstr(m, "continuing_subword_prefix"), *eow = jstr(m, "end_of_word_suffix");
    LMP_FAIL_IF((csp && *csp) || (eow && *eow), LMP_ERR_UNSUPPORTED,
                "%s: BPE continuing_subword_prefix/end_of_word_suffix are not supported", t->name);
    t->byte_fallback = jbool(m, "byte_fallback", 0);
    t->fuse_unk = jbool(m, "fuse_unk", 0);
    t->ignore_merges = jbool(m, "ignore_merges", 0);

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    LMP_FAIL_IF(!cJSON_IsObject(vocab), LMP_ERR_FORMAT, "%s: model.vocab is not an object",
                t->name);
    LMP_FAIL_IF(merges && !cJSON_IsArray(merges), LMP_ERR_FORMAT,
                "%s: model.merges is not an array", t->name);

    /* size the id space: vocab and added tokens */
    int max_id = -1, nv = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int id = json_id(e);
        LMP_FAIL_IF(id < 0, LMP_ERR_FORMAT, "%s: model.vocab[\"%.60s\"] is not a valid id",
                    t->name, e->string);
        if (id > max_id) max_id = id;
        nv++;
    }
    LMP_FAIL_IF(nv == 0, LMP_ERR_FORMAT, "%s: model.vocab is empty", t->name);
    cJSON_ArrayForEach(e, added) {
        int id = json_id(cJSON_GetObjectItemCaseSensitive(e, "id"));
        LMP_FAIL_IF(id < 0 || !jstr(e, "content") || !*jstr(e, "content"), LMP_ERR_FORMAT,
                    "%s: added_tokens entry without a valid id and non-empty content", t->name);
        if (id > max_id) max_id = id;
    }
    LMP_FAIL_IF(max_id >= (1 << 28), LMP_ERR_FORMAT, "%s: token id %d is implausibly large",
                t->name, max_id);
    t->n_ids = max_id + 1;
    t->vstr = calloc((size_t)t->n_ids, sizeof *t->vstr);
    t->vlen = calloc((size_t)t->n_ids, sizeof *t->vlen);
    t->id_str = calloc((size_t)t->n_ids, sizeof *t->id_str);
    t->id_flags = calloc((size_t)t->n_ids, 1);
    t->vocab.mask = pow2_at_least((size_t)nv * 2) - 1;
    t->vocab.slot = malloc((t->vocab.mask + 1) * sizeof *t->vocab.slot);
    LMP_FAIL_IF(!t->vstr || !t->vlen || !t->id_str || !t->id_flags || !t->vocab.slot,
                LMP_ERR_NOMEM, "%s: out of memory for %d tokens", t->name, t->n_ids);
    memset(t->vocab.slot, 0xff, (t->vocab.mask + 1) * sizeof *t->vocab.slot);
    cJSON_ArrayForEach(e, vocab) {
        int id = json_id(e);
        size_t n = strlen(e->string);
        LMP_FAIL_IF(t->vstr[id], LMP_ERR_FORMAT, "%s: model.vocab: id %d used twice", t->name, id);
        LMP_FAIL_IF(tok_strmap_get(t, e->string, n) >= 0, LMP_ERR_FORMAT,
                    "%s: model.vocab: token \"%.60s\" twice", t->name, e->string);
        t->vstr[id] = dupn(e->string, n);
        LMP_FAIL_IF(!t->vstr[id], LMP_ERR_NOMEM, "%s: out of memory", t->name);
        t->vlen[id] = (uint32_t)n;
        t->id_str[id] = t->vstr[id];
        size_t i = tok_hash(e->string, n) & t->vocab.mask;
        while (t->vocab.slot[i] >= 0) i = (i + 1) & t->vocab.mask;
        t->vocab.slot[i] = id;
    }

    /* merges -> (left, right) -> (rank, merged) */
    int nm = merges ? cJSON_GetArraySize(merges) : 0;
    t->merges.mask = pow2_at_least((size_t)nm * 2) - 1;
    t->merges.slot = malloc((t->merges.mask + 1) * sizeof *t->merges.slot);
    LMP_FAIL_IF(!t->merges.slot, LMP_ERR_NOMEM, "%s: out of memory for %d merges", t->name, nm);
    for (size_t i = 0; i <= t->merges.mask; i++) t->merges.slot[i].key = UINT64_MAX;
    int rank = 0;
    char buf[1024];
    cJSON_ArrayForEach(e, merges) {
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if (cJSON_IsString(e)) {
            const char *s = e->valuestring, *sp = strchr(s, ' ');
            LMP_FAIL_IF(!sp || strchr(sp + 1, ' '), LMP_ERR_FORMAT,
                        "%s: merge %d \"%.60s\" is not two tokens separated by one space",
                        t->name, rank, s);
            a = s;
            al = (size_t)(sp - s);
            b = sp + 1;
            bl = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            al = strlen(a);
            bl = strlen(b);
        } else {
            LMP_FAIL(LMP_ERR_FORMAT, "%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", t->name,
                     rank);
        }
        LMP_FAIL_IF(al + bl >= sizeof buf, LMP_ERR_FORMAT, "%s: merge %d is too long", t->name,
                    rank);
        int ia = tok_strmap_get(t, a, al), ib = tok_strmap_get(t, b, bl);
        memcpy(buf, a, al);
        memcpy(buf + al, b, bl);
        int inew = tok_strmap_get(t, buf, al + bl);
        LMP_FAIL_IF(ia < 0 || ib < 0 || inew < 0, LMP_ERR_FORMAT,
                    "%s: merge %d \"%.*s\" + \"%.*s\": %s not in model.vocab", t->name, rank,
                    (int)(al > 40 ? 40 : al), a, (int)(bl > 40 ? 40 : bl), b,
                    ia < 0 ? "left token" : ib < 0 ? "right token" : "merged token");
        merge_put(&t->merges, ia, ib, rank, inew);
        rank++;
    }

    t->unk_id = -1;
    const char *unk = jstr(m, "unk_token");
    if (unk) {
        t->unk_id = tok_strmap_get(t, unk, strlen(unk));
        LMP_FAIL_IF(t->unk_id < 0, LMP_ERR_FORMAT, "%s: unk_token \"%.60s\" not in model.vocab",
                    t->name, unk);
    }
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        t->fallback_id[b] = t->byte_fallback ? tok_strmap_get(t, s, 6) : -1;
    }
out:
    return rc;
}

static int added_cmp(const void *pa, const void *pb)
{
    const tok_added *a = pa, *b = pb;
    if ((uint8_t)a->s[0] != (uint8_t)b->s[0]) return (uint8_t)a->s[0] - (uint8_t)b->s[0];
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id - b->id;
}

static lmp_status parse_added(lmp_tok *t, const cJSON *added, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    int n = added ? cJSON_GetArraySize(added) : 0;
    if (n == 0) return LMP_OK;
    t->added = calloc((size_t)n, sizeof *t->added);
    LMP_FAIL_IF(!t->added, LMP_ERR_NOMEM, "%s: out of memory", t->name);
    const cJSON *e;
    cJSON_ArrayForEach(e, added) {
        tok_added *a = &t->added[t->n_added];
        const char *c = jstr(e, "content");
        a->id = json_id(cJSON_GetObjectItemCaseSensitive(e, "id"));
        LMP_FORWARD(set_id(t, a->id, "added token", d));
        LMP_FAIL_IF(jbool(e, "single_word", 0), LMP_ERR_UNSUPPORTED,
                    "%s: added token \"%.60s\": single_word=true is not supported", t->name, c);
        a->len = strlen(c);
        a->s = dupn(c, a->len);
        LMP_FAIL_IF(!a->s, LMP_ERR_NOMEM, "%s: out of memory", t->name);
        a->special = jbool(e, "special", 0);
        a->lstrip = jbool(e, "lstrip", 0);
        a->rstrip = jbool(e, "rstrip", 0);
        a->normalized = jbool(e, "normalized", !a->special);
        t->n_added++;
        t->id_str[a->id] = a->s;
        t->id_flags[a->id] = (uint8_t)(1 | (a->special ? 2 : 0));
        t->added_first[a->normalized && t->n_norm > 0][(uint8_t)a->s[0]] = 1;
    }
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, added_cmp);
out:
    return rc;
}

static lmp_status parse_config(lmp_tok *t, const char *config_json, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    cJSON *c = NULL;
    if (!config_json) return LMP_OK;
    c = cJSON_Parse(config_json);
    LMP_FAIL_IF(!cJSON_IsObject(c), LMP_ERR_FORMAT,
                "%s: tokenizer_config.json is not a JSON object", t->name);
    const cJSON *bos = cJSON_GetObjectItemCaseSensitive(c, "bos_token");
    const char *bs = cJSON_IsString(bos) ? bos->valuestring : jstr(bos, "content");
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(c, "add_bos_token");
    if (cJSON_IsBool(ab)) t->add_bos = cJSON_IsTrue(ab);
    if (bs && t->bos_id < 0) t->bos_id = lmp_tok_token_id(t, bs);
    LMP_FAIL_IF(t->add_bos && t->bos_id < 0, LMP_ERR_FORMAT,
                "%s: tokenizer_config.json: add_bos_token is true but bos_token \"%.60s\" has "
                "no id", t->name, bs ? bs : "(missing)");
    const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(c, "chat_template");
    const char *ts = cJSON_IsString(tpl) ? tpl->valuestring : NULL;
    if (cJSON_IsArray(tpl)) { /* [{"name": "default", "template": ...}, ...] */
        const cJSON *e;
        cJSON_ArrayForEach(e, tpl) {
            const char *nm = jstr(e, "name");
            if (nm && !strcmp(nm, "default")) ts = jstr(e, "template");
        }
    }
    if (ts) t->chat = strstr(ts, "<|im_start|>") ? 1 : -1;
out:
    cJSON_Delete(c);
    return rc;
}

lmp_status lmp_tok_load_mem(lmp_tok **out, const char *json, size_t len,
                            const char *config_json, const char *name, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    cJSON *root = NULL;
    lmp_tok *t = NULL;
    *out = NULL;
    if (!name) name = "tokenizer.json";
    t = calloc(1, sizeof *t);
    LMP_FAIL_IF(!t, LMP_ERR_NOMEM, "%s: out of memory", name);
    t->name = dupn(name, strlen(name));
    LMP_FAIL_IF(!t->name, LMP_ERR_NOMEM, "%s: out of memory", name);
    t->bos_id = -1;
    LMP_FAIL_IF(!json, LMP_ERR_ARG, "%s: no JSON given", name);
    root = cJSON_ParseWithLength(json, len);
    LMP_FAIL_IF(!cJSON_IsObject(root), LMP_ERR_FORMAT, "%s: not a JSON object", name);
    LMP_FAIL_IF(!jnull(root, "truncation"), LMP_ERR_UNSUPPORTED,
                "%s: truncation is not supported (must be null)", name);
    LMP_FAIL_IF(!jnull(root, "padding"), LMP_ERR_UNSUPPORTED,
                "%s: padding is not supported (must be null)", name);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    LMP_FAIL_IF(added && !cJSON_IsArray(added) && !cJSON_IsNull(added), LMP_ERR_FORMAT,
                "%s: added_tokens is not an array", name);
    if (!cJSON_IsArray(added)) added = NULL;
    LMP_FORWARD(parse_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), added, d));
    LMP_FORWARD(parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), d));
    LMP_FORWARD(parse_pre(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), d));
    LMP_FORWARD(parse_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"), d));
    LMP_FORWARD(parse_added(t, added, d));
    LMP_FORWARD(parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), d));
    if (t->byte_level) {
        for (int b = 0; b < 256; b++) {
            uint8_t u[4];
            size_t ul = lmp_utf8_put(tok_byte_to_cp((uint8_t)b), u);
            t->byte_sym[b] = tok_strmap_get(t, (const char *)u, ul);
        }
    }
    LMP_FORWARD(parse_config(t, config_json, d));
    *out = t;
    t = NULL;
out:
    cJSON_Delete(root);
    lmp_tok_close(t);
    return rc;
}

lmp_status lmp_tok_load(lmp_tok **out, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *json_path = NULL, *cfg_path = NULL, *json = NULL, *cfg = NULL, *dir = NULL;
    size_t len = 0, cl = 0;
    *out = NULL;
    if (lmp_is_dir(path)) {
        json_path = lmp_path_join(path, "tokenizer.json");
        cfg_path = lmp_path_join(path, "tokenizer_config.json");
    } else {
        json_path = dupn(path, strlen(path));
        const char *base = lmp_path_base(path);
        dir = dupn(path, (size_t)(base - path));
        cfg_path = lmp_path_join(*dir ? dir : ".", "tokenizer_config.json");
    }
    LMP_FAIL_IF(!json_path || !cfg_path, LMP_ERR_NOMEM, "%s: out of memory", path);
    LMP_FAIL_IF(!lmp_exists(json_path), LMP_ERR_IO, "%s: no tokenizer.json", path);
    LMP_FORWARD(lmp_read_file(json_path, TOK_MAX_JSON, &json, &len, d));
    if (lmp_exists(cfg_path)) LMP_FORWARD(lmp_read_file(cfg_path, 64u << 20, &cfg, &cl, d));
    LMP_FORWARD(lmp_tok_load_mem(out, json, len, cfg, json_path, d));
out:
    free(json_path);
    free(cfg_path);
    free(json);
    free(cfg);
    free(dir);
    return rc;
}

void lmp_tok_close(lmp_tok *t)
{
    if (!t) return;
    for (int i = 0; i < t->n_ids && t->vstr; i++) free(t->vstr[i]);
    free(t->vstr);
    free(t->vlen);
    free(t->id_str);
    free(t->id_flags);
    free(t->vocab.slot);
    free(t->merges.slot);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].s);
    free(t->added);
    for (int i = 0; i < t->n_norm; i++) free(t->norm[i].a), free(t->norm[i].b);
    for (int i = 0; i < t->n_pre; i++) free(t->pre[i].a), free(t->pre[i].b);
    for (int i = 0; i < t->n_dec; i++) free(t->dec[i].a), free(t->dec[i].b);
    tok_cache_free(&t->cache);
    free(t->name);
    free(t);
}

int lmp_tok_vocab_size(const lmp_tok *t) { return t->n_ids; }
int lmp_tok_bos_id(const lmp_tok *t) { return t->bos_id; }
int lmp_tok_add_bos_default(const lmp_tok *t) { return t->add_bos && t->bos_id >= 0; }

int lmp_tok_token_id(const lmp_tok *t, const char *s)
{
    size_t n = strlen(s);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].s, s, n)) return t->added[i].id;
    return tok_strmap_get(t, s, n);
}

const char *lmp_tok_token_str(const lmp_tok *t, int id)
{
    return id >= 0 && id < t->n_ids ? t->id_str[id] : NULL;
}

int lmp_tok_is_special(const lmp_tok *t, int id)
{
    return id >= 0 && id < t->n_ids && (t->id_flags[id] & 2);
}
