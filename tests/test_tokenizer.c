/* Tokenizer: the tokenizer_golden.json fixtures (ids and decoded text from
 * Hugging Face tokenizers), plus rule-derived cases the fixtures do not
 * reach: invalid UTF-8, long inputs, special tokens at any position, the
 * streaming decoder, unsupported components, chat format. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

static lmp_tok *load(const char *rel)
{
    lmp_tok *t = NULL;
    lmp_diag d = {0};
    lmp_status rc = lmp_tok_load(&t, t_data(rel), &d);
    ck_assert_msg(rc == LMP_OK, "load %s: %s", rel, d.msg);
    return t;
}

static int *enc(lmp_tok *t, const char *s, size_t len, size_t *n)
{
    int *ids = NULL;
    lmp_diag d = {0};
    lmp_status rc = lmp_tok_encode(t, s, len, 0, &ids, n, &d);
    ck_assert_msg(rc == LMP_OK, "encode: %s", d.msg);
    return ids;
}

static char *dec(lmp_tok *t, const int *ids, size_t n, size_t *len)
{
    char *s = NULL;
    lmp_diag d = {0};
    lmp_status rc = lmp_tok_decode(t, ids, n, &s, len, &d);
    ck_assert_msg(rc == LMP_OK, "decode: %s", d.msg);
    return s;
}

/* Decode through the streaming decoder, one id at a time. */
static char *stream_dec(lmp_tok *t, const int *ids, size_t n, size_t *len)
{
    lmp_tok_stream *s = NULL;
    lmp_diag d = {0};
    ck_assert_int_eq(lmp_tok_stream_open(&s, t, &d), LMP_OK);
    size_t cap = 64, o = 0;
    char *out = malloc(cap);
    for (size_t i = 0; i <= n; i++) {
        const char *p;
        size_t pl;
        if (i < n)
            ck_assert_int_eq(lmp_tok_stream_push(s, ids[i], &p, &pl, &d), LMP_OK);
        else
            ck_assert_int_eq(lmp_tok_stream_finish(s, &p, &pl, &d), LMP_OK);
        while (o + pl + 1 > cap) out = realloc(out, cap *= 2);
        memcpy(out + o, p, pl);
        o += pl;
    }
    out[o] = '\0';
    *len = o;
    lmp_tok_stream_close(s);
    return out;
}

/* Every fixture case: ids identical, decode(ids) == decoded, and the stream
 * decoder gives the same text. Returns the number of cases checked. */
static int run_golden_tok(lmp_tok *t, const char *tok_rel, const char *golden_rel)
{
    size_t gl;
    char *g = (char *)t_slurp(t_data(golden_rel), &gl);
    cJSON *root = cJSON_ParseWithLength(g, gl);
    ck_assert_ptr_nonnull(root);
    int cases = 0, n_cases = cJSON_GetArraySize(root);
    ck_assert_int_gt(n_cases, 20);
    cJSON *c;
    cJSON_ArrayForEach(c, root) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const char *want = cJSON_GetObjectItem(c, "decoded")->valuestring;
        cJSON *jids = cJSON_GetObjectItem(c, "ids");
        size_t nw = (size_t)cJSON_GetArraySize(jids);
        int *wids = malloc((nw + 1) * sizeof *wids);
        for (size_t i = 0; i < nw; i++) wids[i] = cJSON_GetArrayItem(jids, (int)i)->valueint;
        /* "<greedy200>" carries model output ids to decode, not a text to encode */
        if (strcmp(text, "<greedy200>") != 0) {
            size_t n;
            int *ids = enc(t, text, strlen(text), &n);
            ck_assert_msg(n == nw, "%s: \"%.40s\": %zu ids, want %zu", tok_rel, text, n, nw);
            for (size_t i = 0; i < n; i++)
                ck_assert_msg(ids[i] == wids[i], "%s: \"%.40s\": id[%zu] = %d, want %d", tok_rel,
                              text, i, ids[i], wids[i]);
            free(ids);
        }
        size_t len;
        char *s = dec(t, wids, nw, &len);
        ck_assert_msg(len == strlen(want) && !strcmp(s, want), "%s: decode \"%.40s\" got \"%.40s\"",
                      tok_rel, want, s);
        free(s);
        s = stream_dec(t, wids, nw, &len);
        ck_assert_msg(!strcmp(s, want), "%s: stream decode \"%.40s\" got \"%.40s\"", tok_rel,
                      want, s);
        free(s);
        free(wids);
        cases++;
    }
    cJSON_Delete(root);
    free(g);
    return cases;
}

static int run_golden(const char *tok_rel, const char *golden_rel)
{
    lmp_tok *t = load(tok_rel);
    int n = run_golden_tok(t, tok_rel, golden_rel);
    lmp_tok_close(t);
    return n;
}

START_TEST(golden_smollm)
{
    int n = run_golden("smollm-tokenizer", "smollm-tokenizer/tokenizer_golden.json");
    ck_assert_int_eq(n, 28);
}
END_TEST

START_TEST(golden_stories)
{
    int n = run_golden("stories260k", "stories260k/tokenizer_golden.json");
    ck_assert_int_eq(n, 29);
}
END_TEST

static char *greedy200_text(lmp_tok *t, size_t from, size_t to);

/* A .lmpk container carries the tokenizer: the goldens hold when it is read
 * from the container, and `run X.lmpk --prompt` of an f32 container gives
 * the golden greedy text (greedy200.json, as for the model folder). */
START_TEST(golden_from_container)
{
    char *dir = t_tmpdir(), pk[4096], *out = NULL, *err = NULL;
    snprintf(pk, sizeof pk, "%s/s.lmpk", dir);
    char *a[] = {(char *)t_bin("lmpack-convert"), (char *)t_data("stories260k"), "-o", pk,
                 "--dtype", "f32", NULL};
    ck_assert_int_eq(t_run(a, &out, &err), 0);
    free(out);
    free(err);
    lmp_tok *t = NULL;
    lmp_diag d = {0};
    ck_assert_msg(lmp_tok_open_model(&t, pk, &d) == LMP_OK, "%s", d.msg);
    ck_assert_int_eq(run_golden_tok(t, pk, "stories260k/tokenizer_golden.json"), 29);
    char *want = greedy200_text(t, 1, 69);
    char *r[] = {(char *)t_bin("lmpack-run"), pk, "--prompt", "Once upon a time", "-n", "64",
                 "--temperature", "0", "-t", "1", NULL};
    ck_assert_int_eq(t_run(r, &out, &err), 0);
    ck_assert_msg(!strcmp(out, want), "got \"%s\"\nwant \"%s\"", out, want);
    free(out);
    free(err);
    free(want);
    lmp_tok_close(t);
    /* a container converted from a folder without tokenizer files is
     * refused, naming the file and what is missing */
    char cmd[8192], bare[4096];
    snprintf(cmd, sizeof cmd,
             "mkdir '%s/bare' && cd '%s' && ln -s \"$PWD/config.json\" \"$PWD/model.safetensors\" "
             "'%s/bare/' && '%s' '%s/bare' -o '%s/bare.lmpk' --dtype f32 >/dev/null",
             dir, t_data("stories260k"), dir, t_bin("lmpack-convert"), dir, dir);
    ck_assert_int_eq(t_sh(cmd, NULL, NULL), 0);
    snprintf(bare, sizeof bare, "%s/bare.lmpk", dir);
    lmp_tok *t2 = NULL;
    ck_assert_int_ne(lmp_tok_open_model(&t2, bare, &d), LMP_OK);
    ck_assert_ptr_null(t2);
    ck_assert_msg(strstr(d.msg, "bare.lmpk") && strstr(d.msg, "no tokenizer.json"), "%s", d.msg);
    free(dir);
}
END_TEST

static void expect_roundtrip(lmp_tok *t, const char *s, size_t len)
{
    size_t n, ol;
    int *ids = enc(t, s, len, &n);
    char *o = dec(t, ids, n, &ol);
    ck_assert_msg(ol == len && !memcmp(o, s, len), "round trip of \"%.40s\" (%zu bytes) failed",
                  s, len);
    free(o);
    free(ids);
}

START_TEST(roundtrip_and_long)
{
    lmp_tok *bl = load("smollm-tokenizer"), *sp = load("stories260k");
    static const char *texts[] = {"Grüße aus Köln! 🙂 \t\n x", "   ", "a\r\n\r\nb", "'s'S'' '",
                                  "\xe3\x80\x80x\xe3\x80\x80 y", "12 345 6.7e8"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        expect_roundtrip(bl, texts[i], strlen(texts[i]));
        expect_roundtrip(sp, texts[i], strlen(texts[i]));
    }
    /* 1 MB of a repeated paragraph: pre-tokens never cross the "\n"+letter
     * boundary, so the ids are the paragraph's ids repeated. */
    const char *para = "The cat sat on the mat; it's 42 degrees (warm), isn't it?\n";
    size_t pl = strlen(para), reps = (1u << 20) / pl + 1, n1, n;
    char *big = malloc(pl * reps + 1);
    for (size_t i = 0; i < reps; i++) memcpy(big + i * pl, para, pl);
    big[pl * reps] = '\0';
    int *p1 = enc(bl, para, pl, &n1);
    int *ids = enc(bl, big, pl * reps, &n);
    ck_assert_uint_eq(n, n1 * reps);
    for (size_t i = 0; i < n; i++) ck_assert_int_eq(ids[i], p1[i % n1]);
    size_t ol;
    char *o = dec(bl, ids, n, &ol);
    ck_assert_uint_eq(ol, pl * reps);
    ck_assert(!memcmp(o, big, ol));
    free(o);
    free(ids);
    free(p1);
    /* the SentencePiece-style model sees the whole input as one word */
    expect_roundtrip(sp, big, 100000);
    free(big);
    lmp_tok_close(bl);
    lmp_tok_close(sp);
}
END_TEST

START_TEST(invalid_utf8_and_empty)
{
    lmp_tok *bl = load("smollm-tokenizer");
    /* rule: each maximal invalid subpart becomes U+FFFD before tokenizing */
    size_t n1, n2, n3, ol;
    int *a = enc(bl, "a\xff" "b\xe6\x9d", 5, &n1);
    int *b = enc(bl, "a\xef\xbf\xbd" "b\xef\xbf\xbd", 8, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert(!memcmp(a, b, n1 * sizeof *a));
    char *o = dec(bl, a, n1, &ol);
    ck_assert_str_eq(o, "a\xef\xbf\xbd" "b\xef\xbf\xbd");
    free(o);
    free(a);
    free(b);
    int *e = enc(bl, "", 0, &n3);
    ck_assert_uint_eq(n3, 0);
    free(e);
    o = dec(bl, NULL, 0, &ol);
    ck_assert_str_eq(o, "");
    free(o);
    /* an id outside the vocabulary is a range error */
    int bad = 49152;
    lmp_diag d = {0};
    char *s = NULL;
    ck_assert_int_eq(lmp_tok_decode(bl, &bad, 1, &s, &ol, &d), LMP_ERR_RANGE);
    ck_assert_ptr_null(s);
    /* decoding a lone continuation byte yields valid UTF-8 (U+FFFD). GPT-2's
     * byte map sends byte 0x80 to U+0122 (34th non-printable byte -> 256+34). */
    int cont = lmp_tok_token_id(bl, "\xc4\xa2");
    ck_assert_int_ge(cont, 0);
    o = dec(bl, &cont, 1, &ol);
    ck_assert_str_eq(o, "\xef\xbf\xbd");
    free(o);
    lmp_tok_close(bl);
}
END_TEST

START_TEST(special_tokens)
{
    lmp_tok *bl = load("smollm-tokenizer"), *sp = load("stories260k");
    int end = lmp_tok_token_id(bl, "<|im_end|>");
    ck_assert_int_eq(end, 2); /* added_tokens id */
    ck_assert(lmp_tok_is_special(bl, end));
    size_t nh, nx, n;
    int *h = enc(bl, "hello", 5, &nh), *x = enc(bl, " world", 6, &nx);
    /* start */
    int *ids = enc(bl, "<|im_end|>hello", 15, &n);
    ck_assert_uint_eq(n, nh + 1);
    ck_assert_int_eq(ids[0], 2);
    ck_assert(!memcmp(ids + 1, h, nh * sizeof *h));
    free(ids);
    /* middle and end */
    ids = enc(bl, "hello<|im_end|> world<|im_end|>", 31, &n);
    ck_assert_uint_eq(n, nh + nx + 2);
    ck_assert(!memcmp(ids, h, nh * sizeof *h));
    ck_assert_int_eq(ids[nh], 2);
    ck_assert(!memcmp(ids + nh + 1, x, nx * sizeof *x));
    ck_assert_int_eq(ids[n - 1], 2);
    free(ids);
    /* a near miss is ordinary text */
    ids = enc(bl, "<|im_end|", 9, &n);
    for (size_t i = 0; i < n; i++) ck_assert_int_gt(ids[i], 16);
    free(ids);
    free(h);
    free(x);
    /* SentencePiece style: "<s>" is special; the normalizer applies to each
     * piece between special tokens (Prepend "▁" to "Hello") */
    int *hs = enc(sp, "Hello", 5, &nh);
    ids = enc(sp, "<s>Hello", 8, &n);
    ck_assert_uint_eq(n, nh + 1);
    ck_assert_int_eq(ids[0], 1);
    ck_assert(!memcmp(ids + 1, hs, nh * sizeof *hs));
    free(ids);
    free(hs);
    /* BOS: stories adds <s> (tokenizer_config add_bos_token), SmolLM does not */
    ck_assert_int_eq(lmp_tok_add_bos_default(sp), 1);
    ck_assert_int_eq(lmp_tok_bos_id(sp), lmp_tok_token_id(sp, "<s>"));
    ck_assert_int_eq(lmp_tok_add_bos_default(bl), 0);
    lmp_diag d = {0};
    ck_assert_int_eq(lmp_tok_encode(sp, "Hi", 2, 1, &ids, &n, &d), LMP_OK);
    ck_assert_int_eq(ids[0], 1);
    free(ids);
    lmp_tok_close(bl);
    lmp_tok_close(sp);
}
END_TEST

static void push_expect(lmp_tok_stream *s, int id, const char *want)
{
    const char *p;
    size_t pl;
    lmp_diag d = {0};
    ck_assert_int_eq(lmp_tok_stream_push(s, id, &p, &pl, &d), LMP_OK);
    ck_assert_uint_eq(pl, strlen(want));
    ck_assert(!memcmp(p, want, pl));
}

START_TEST(stream_split_character)
{
    lmp_tok *sp = load("stories260k"), *bl = load("smollm-tokenizer");
    lmp_tok_stream *s = NULL;
    lmp_diag d = {0};
    /* 東 = E6 9D B1 as three byte-fallback tokens: nothing until complete */
    int e6 = lmp_tok_token_id(sp, "<0xE6>"), x9d = lmp_tok_token_id(sp, "<0x9D>"),
        b1 = lmp_tok_token_id(sp, "<0xB1>"), a = lmp_tok_token_id(sp, "a");
    ck_assert(e6 >= 0 && x9d >= 0 && b1 >= 0 && a >= 0);
    ck_assert_int_eq(lmp_tok_stream_open(&s, sp, &d), LMP_OK);
    push_expect(s, a, "a");
    push_expect(s, e6, "");
    push_expect(s, x9d, "");
    push_expect(s, b1, "\xe6\x9d\xb1");
    /* an unfinished character at the end becomes U+FFFD */
    push_expect(s, e6, "");
    const char *p;
    size_t pl;
    ck_assert_int_eq(lmp_tok_stream_finish(s, &p, &pl, &d), LMP_OK);
    ck_assert_str_eq(p, "\xef\xbf\xbd");
    lmp_tok_stream_close(s);
    /* the leading "▁" of the first token is stripped (Strip decoder) */
    int once = lmp_tok_token_id(sp, "\xe2\x96\x81Once");
    ck_assert_int_ge(once, 0);
    ck_assert_int_eq(lmp_tok_stream_open(&s, sp, &d), LMP_OK);
    push_expect(s, once, "Once");
    push_expect(s, once, " Once");
    lmp_tok_stream_close(s);
    /* byte-level: an emoji takes several tokens; text only when complete */
    size_t n;
    int *ids = enc(bl, "\xf0\x9f\x99\x82", 4, &n);
    ck_assert_uint_ge(n, 2);
    ck_assert_int_eq(lmp_tok_stream_open(&s, bl, &d), LMP_OK);
    for (size_t i = 0; i + 1 < n; i++) push_expect(s, ids[i], "");
    push_expect(s, ids[n - 1], "\xf0\x9f\x99\x82");
    lmp_tok_stream_close(s);
    free(ids);
    lmp_tok_close(sp);
    lmp_tok_close(bl);
}
END_TEST

/* Load a copy of a fixture's tokenizer.json with one component replaced. */
static lmp_status load_edited(const char *rel, const char *key, const char *json, lmp_diag *d)
{
    size_t len;
    char *s = (char *)t_slurp(t_data(rel), &len);
    cJSON *root = cJSON_ParseWithLength(s, len);
    free(s);
    ck_assert_ptr_nonnull(root);
    cJSON *m = cJSON_GetObjectItem(root, "model");
    if (!strcmp(key, "model.type"))
        cJSON_ReplaceItemInObject(m, "type", cJSON_CreateString(json));
    else
        cJSON_ReplaceItemInObject(root, key, cJSON_Parse(json));
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    lmp_tok *t = NULL;
    lmp_status rc = lmp_tok_load_mem(&t, out, strlen(out), NULL, "edited.json", d);
    free(out);
    lmp_tok_close(t);
    return rc;
}

START_TEST(unsupported_components)
{
    static const struct {
        const char *rel, *key, *json, *word;
    } cases[] = {
        {"smollm-tokenizer/tokenizer.json", "pre_tokenizer",
         "{\"type\":\"Whitespace\"}", "Whitespace"},
        {"smollm-tokenizer/tokenizer.json", "model.type", "WordPiece", "WordPiece"},
        {"smollm-tokenizer/tokenizer.json", "decoder", "{\"type\":\"WordPiece\"}", "WordPiece"},
        {"smollm-tokenizer/tokenizer.json", "post_processor",
         "{\"type\":\"BertProcessing\"}", "BertProcessing"},
        {"stories260k/tokenizer.json", "normalizer", "{\"type\":\"NFKC\"}", "NFKC"},
        {"stories260k/tokenizer.json", "truncation", "{\"max_length\":8}", "truncation"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lmp_diag d = {0};
        ck_assert_int_eq(load_edited(cases[i].rel, cases[i].key, cases[i].json, &d),
                         LMP_ERR_UNSUPPORTED);
        ck_assert_msg(strstr(d.msg, cases[i].word), "message \"%s\" lacks \"%s\"", d.msg,
                      cases[i].word);
    }
    lmp_diag d2 = {0};
    ck_assert_int_eq(load_edited("smollm-tokenizer/tokenizer.json", "pre_tokenizer",
                                 "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},"
                                 "\"behavior\":\"Isolated\",\"invert\":false}", &d2),
                     LMP_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(d2.msg, "Split regex"));
    /* and the unedited copy loads */
    lmp_diag d = {0};
    ck_assert_int_eq(load_edited("stories260k/tokenizer.json", "truncation", "null", &d), LMP_OK);
}
END_TEST

START_TEST(chat_format)
{
    lmp_tok *bl = load("smollm-tokenizer"), *sp = load("stories260k");
    char *s = NULL;
    lmp_diag d = {0};
    ck_assert_int_eq(lmp_tok_chat_format(bl, "Hi there", &s, &d), LMP_OK);
    ck_assert_str_eq(s, "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
    free(s);
    ck_assert_int_eq(lmp_tok_chat_format(sp, "Hi", &s, &d), LMP_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(d.msg, "no chat template"));
    lmp_tok_close(bl);
    lmp_tok_close(sp);
}
END_TEST


/* A hand-written tokenizer.json: expectations follow from the BPE rules. */
static lmp_tok *tiny(const char *model_extra, const char *pre, const char *added)
{
    char json[4096];
    snprintf(json, sizeof json,
             "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[%s],"
             "\"normalizer\":null,\"pre_tokenizer\":%s,\"post_processor\":null,\"decoder\":null,"
             "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",%s"
             "\"vocab\":{\"<unk>\":0,\"a\":1,\"b\":2,\"c\":3,\"ab\":4,\"bc\":5,\"abc\":6,\" \":7,"
             "\"ac\":8,\"<X>\":9},"
             "\"merges\":[\"b c\",\"a b\",[\"a\",\"bc\"]]}}",
             added, pre, model_extra);
    lmp_tok *t = NULL;
    lmp_diag d = {0};
    ck_assert_msg(lmp_tok_load_mem(&t, json, strlen(json), NULL, "tiny", &d) == LMP_OK, "%s",
                  d.msg);
    return t;
}

static void expect_ids(lmp_tok *t, const char *text, const int *want, size_t nw)
{
    size_t n;
    int *ids = enc(t, text, strlen(text), &n);
    ck_assert_msg(n == nw, "\"%s\": %zu ids, want %zu", text, n, nw);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(ids[i] == want[i], "\"%s\": id[%zu] = %d, want %d", text, i, ids[i], want[i]);
    free(ids);
}

START_TEST(hand_built_bpe)
{
    lmp_tok *t = tiny("\"fuse_unk\":true,", "null", "");
    /* "abc": (b,c) has rank 0 < (a,b) rank 1, then (a,bc) -> abc */
    expect_ids(t, "abc", (const int[]){6}, 1);
    /* equal ranks merge leftmost first: abab -> ab ab */
    expect_ids(t, "abab", (const int[]){4, 4}, 2);
    /* unknown characters fuse into one <unk> */
    expect_ids(t, "xyab", (const int[]){0, 4}, 2);
    /* "ac" is in the vocab but no merge makes it */
    expect_ids(t, "ac", (const int[]){1, 3}, 2);
    /* no decoder: tokens joined with spaces */
    size_t len;
    char *o = dec(t, (const int[]){4, 3}, 2, &len);
    ck_assert_str_eq(o, "ab c");
    free(o);
    lmp_tok_close(t);

    t = tiny("\"fuse_unk\":false,\"ignore_merges\":true,", "null", "");
    expect_ids(t, "xyab", (const int[]){0, 0, 4}, 3);
    expect_ids(t, "ac", (const int[]){8}, 1); /* whole word in vocab */
    lmp_tok_close(t);

    /* Split on " " (Removed) */
    t = tiny("", "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Removed\","
                 "\"invert\":false}", "");
    expect_ids(t, "ab  c", (const int[]){4, 3}, 2);
    lmp_tok_close(t);

    /* added token: plain, then with lstrip/rstrip eating the spaces */
    const char *plain = "{\"id\":9,\"content\":\"<X>\",\"single_word\":false,\"lstrip\":false,"
                        "\"rstrip\":false,\"normalized\":false,\"special\":true}";
    const char *strip = "{\"id\":9,\"content\":\"<X>\",\"single_word\":false,\"lstrip\":true,"
                        "\"rstrip\":true,\"normalized\":false,\"special\":true}";
    t = tiny("", "null", plain);
    expect_ids(t, "ab <X> c", (const int[]){4, 7, 9, 7, 3}, 5);
    lmp_tok_close(t);
    t = tiny("", "null", strip);
    expect_ids(t, "ab  <X>  c", (const int[]){4, 9, 3}, 3);
    lmp_tok_close(t);
    /* single_word is not implemented: rejected */
    char json[1024];
    snprintf(json, sizeof json,
             "{\"added_tokens\":[{\"id\":1,\"content\":\"a\",\"single_word\":true}],"
             "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}");
    lmp_tok *x = NULL;
    lmp_diag d = {0};
    ck_assert_int_eq(lmp_tok_load_mem(&x, json, strlen(json), NULL, "sw", &d), LMP_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(d.msg, "single_word"));
    /* a merge whose result is not in the vocab is a format error */
    snprintf(json, sizeof json, "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},"
                                "\"merges\":[\"a b\"]}}");
    ck_assert_int_eq(lmp_tok_load_mem(&x, json, strlen(json), NULL, "m", &d), LMP_ERR_FORMAT);
    ck_assert_int_eq(lmp_tok_load_mem(&x, "{", 1, NULL, "m", &d), LMP_ERR_FORMAT);
}
END_TEST

START_TEST(bytelevel_prefix_space)
{
    /* add_prefix_space=true: "Hello" is encoded as " Hello" would be */
    lmp_tok *bl = load("smollm-tokenizer");
    size_t want_n;
    int *want = enc(bl, " Hello", 6, &want_n);
    lmp_tok_close(bl);
    size_t len;
    char *s = (char *)t_slurp(t_data("smollm-tokenizer/tokenizer.json"), &len);
    cJSON *root = cJSON_ParseWithLength(s, len);
    free(s);
    cJSON_ReplaceItemInObject(root, "pre_tokenizer",
                              cJSON_Parse("{\"type\":\"ByteLevel\",\"add_prefix_space\":true,"
                                          "\"trim_offsets\":true,\"use_regex\":true}"));
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    lmp_tok *t = NULL;
    lmp_diag d = {0};
    ck_assert_int_eq(lmp_tok_load_mem(&t, out, strlen(out), NULL, "edited", &d), LMP_OK);
    free(out);
    expect_ids(t, "Hello", want, want_n);
    free(want);
    lmp_tok_close(t);
}
END_TEST

/* Generated with Python's re on the ASCII equivalents of the patterns
 * (\p{L} -> [A-Za-z], \p{N} -> [0-9], re.ASCII): an independent regex engine. */
static const struct {
    int re;
    const char *text;
    const char *pieces[24];
} SPLITS[] = {
    {TOK_RE_GPT2, "Hello world's 12345 ab\n\n  cd  ",
     {"Hello", " world", "'s", " 12345", " ab", "\n\n ", " cd", "  ", NULL}},
    {TOK_RE_GPT2, "I'M DON'T you'RE x'll",
     {"I", "'", "M", " DON", "'", "T", " you", "'", "RE", " x", "'ll", NULL}},
    {TOK_RE_GPT2, "  (foo) [bar]!! \t\tbaz\r\n\r\nq",
     {" ", " (", "foo", ")", " [", "bar", "]!!", " \t", "\t", "baz", "\r\n\r", "\n", "q", NULL}},
    {TOK_RE_GPT2, "a1b22c333d4444 e55555",
     {"a", "1", "b", "22", "c", "333", "d", "4444", " e", "55555", NULL}},
    {TOK_RE_GPT2, "  \n  x ,,\n\ny",
     {"  \n ", " x", " ,,", "\n", "\n", "y", NULL}},
    {TOK_RE_GPT2, "...\n\n\tz  ",
     {"...", "\n\n", "\t", "z", "  ", NULL}},
    {TOK_RE_GPT2, "'hello 'S ''s",
     {"'", "hello", " '", "S", " ''", "s", NULL}},
    {TOK_RE_LLAMA3, "Hello world's 12345 ab\n\n  cd  ",
     {"Hello", " world", "'s", " ", "123", "45", " ab", "\n\n", " ", " cd", "  ", NULL}},
    {TOK_RE_LLAMA3, "I'M DON'T you'RE x'll",
     {"I", "'M", " DON", "'T", " you", "'RE", " x", "'ll", NULL}},
    {TOK_RE_LLAMA3, "  (foo) [bar]!! \t\tbaz\r\n\r\nq",
     {" ", " (", "foo", ")", " [", "bar", "]!!", " \t", "\tbaz", "\r\n\r\n", "q", NULL}},
    {TOK_RE_LLAMA3, "a1b22c333d4444 e55555",
     {"a", "1", "b", "22", "c", "333", "d", "444", "4", " e", "555", "55", NULL}},
    {TOK_RE_LLAMA3, "  \n  x ,,\n\ny",
     {"  \n", " ", " x", " ,,\n\n", "y", NULL}},
    {TOK_RE_LLAMA3, "...\n\n\tz  ",
     {"...\n\n", "\tz", "  ", NULL}},
    {TOK_RE_LLAMA3, "'hello 'S ''s",
     {"'hello", " '", "S", " ''", "s", NULL}},
    {TOK_RE_QWEN2, "Hello world's 12345 ab\n\n  cd  ",
     {"Hello", " world", "'s", " ", "1", "2", "3", "4", "5", " ab", "\n\n", " ", " cd", "  ", NULL}},
    {TOK_RE_QWEN2, "I'M DON'T you'RE x'll",
     {"I", "'M", " DON", "'T", " you", "'RE", " x", "'ll", NULL}},
    {TOK_RE_QWEN2, "  (foo) [bar]!! \t\tbaz\r\n\r\nq",
     {" ", " (", "foo", ")", " [", "bar", "]!!", " \t", "\tbaz", "\r\n\r\n", "q", NULL}},
    {TOK_RE_QWEN2, "a1b22c333d4444 e55555",
     {"a", "1", "b", "2", "2", "c", "3", "3", "3", "d", "4", "4", "4", "4", " e", "5", "5", "5", "5", "5", NULL}},
    {TOK_RE_QWEN2, "  \n  x ,,\n\ny",
     {"  \n", " ", " x", " ,,\n\n", "y", NULL}},
    {TOK_RE_QWEN2, "...\n\n\tz  ",
     {"...\n\n", "\tz", "  ", NULL}},
    {TOK_RE_QWEN2, "'hello 'S ''s",
     {"'hello", " '", "S", " ''", "s", NULL}},
};

START_TEST(split_regexes)
{
    for (size_t k = 0; k < sizeof SPLITS / sizeof *SPLITS; k++) {
        const uint8_t *s = (const uint8_t *)SPLITS[k].text;
        size_t n = strlen(SPLITS[k].text), i = 0, p = 0;
        while (i < n) {
            size_t j = tok_regex_next(SPLITS[k].re, s, n, i);
            const char *want = SPLITS[k].pieces[p++];
            ck_assert_msg(want && j - i == strlen(want) && !memcmp(s + i, want, j - i),
                          "regex %d on \"%s\": piece %zu is \"%.*s\", want \"%s\"",
                          SPLITS[k].re, SPLITS[k].text, p - 1, (int)(j - i), s + i,
                          want ? want : "(end)");
            i = j;
        }
        ck_assert_ptr_null(SPLITS[k].pieces[p]);
    }
    /* non-ASCII classes: U+3000 is a space, U+00E9 a letter, U+0663 a digit */
    const char *u = "caf\xc3\xa9\xe3\x80\x80\xd9\xa3\xd9\xa3";
    size_t n = strlen(u);
    ck_assert_uint_eq(tok_regex_next(TOK_RE_GPT2, (const uint8_t *)u, n, 0), 5);
    ck_assert_uint_eq(tok_regex_next(TOK_RE_GPT2, (const uint8_t *)u, n, 5), 8);
    ck_assert_uint_eq(tok_regex_next(TOK_RE_GPT2, (const uint8_t *)u, n, 8), n);
}
END_TEST

START_TEST(llama3_style_pretokenizer)
{
    /* Llama-3 layout: Split(Llama-3 regex) then ByteLevel without its own
     * regex. On text where both patterns give the same pieces the ids must
     * equal the GPT-2-regex tokenizer's. */
    lmp_tok *bl = load("smollm-tokenizer");
    const char *text = "Hello world, this is a test";
    size_t want_n;
    int *want = enc(bl, text, strlen(text), &want_n);
    lmp_tok_close(bl);
    size_t len;
    char *s = (char *)t_slurp(t_data("smollm-tokenizer/tokenizer.json"), &len);
    cJSON *root = cJSON_ParseWithLength(s, len);
    free(s);
    cJSON *pre = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(pre, "pretokenizers");
    cJSON_AddStringToObject(pre, "type", "Sequence");
    cJSON *split = cJSON_CreateObject(), *pat = cJSON_AddObjectToObject(split, "pattern");
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(pat, "Regex",
                            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                            "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                            "\\s+(?!\\S)|\\s+");
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddBoolToObject(split, "invert", 0);
    cJSON_AddItemToArray(arr, split);
    cJSON_AddItemToArray(arr, cJSON_Parse("{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                                          "\"trim_offsets\":true,\"use_regex\":false}"));
    cJSON_ReplaceItemInObject(root, "pre_tokenizer", pre);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    lmp_tok *t = NULL;
    lmp_diag d = {0};
    ck_assert_msg(lmp_tok_load_mem(&t, out, strlen(out), NULL, "llama3", &d) == LMP_OK, "%s", d.msg);
    free(out);
    expect_ids(t, text, want, want_n);
    free(want);
    lmp_tok_close(t);
}
END_TEST

/* ---- programs ------------------------------------------------------------ */

START_TEST(cli_tokenize_detokenize)
{
    char *out = NULL, *err = NULL;
    char *bl = strdup(t_data("smollm-tokenizer")); /* t_data's buffers rotate */
    /* golden case 1 of smollm-tokenizer/tokenizer_golden.json */
    char *a1[] = {(char *)t_bin("lmpack-tokenize"), (char *)bl, "--text",
                  "The future of artificial intelligence", NULL};
    ck_assert_int_eq(t_run(a1, &out, &err), 0);
    ck_assert_str_eq(out, "504 1774 282 6416 5290\n");
    free(out);
    free(err);
    char *a2[] = {(char *)t_bin("lmpack-tokenize"), (char *)bl, "--json", "--text",
                  "The future of artificial intelligence", NULL};
    ck_assert_int_eq(t_run(a2, &out, &err), 0);
    ck_assert_str_eq(out, "[504, 1774, 282, 6416, 5290]\n");
    free(out);
    free(err);
    /* --file: the bytes exactly (golden "line one..." case has \r\n) */
    char *dir = t_tmpdir(), path[4096];
    snprintf(path, sizeof path, "%s/in.txt", dir);
    const char *txt = "line one\nline two\n\n\nafter blank lines\r\nwindows line";
    t_write(path, txt, strlen(txt));
    char *a3[] = {(char *)t_bin("lmpack-tokenize"), (char *)bl, "--file", path, NULL};
    ck_assert_int_eq(t_run(a3, &out, &err), 0);
    ck_assert_str_eq(out, "1311 582 198 1311 827 1116 198 9110 8884 3204 201 198 37066 1761\n");
    free(out);
    free(err);
    /* stories260k: --bos prepends <s> = 1 */
    char *a4[] = {(char *)t_bin("lmpack-tokenize"), (char *)t_data("stories260k"), "--bos",
                  "--text", "The future of artificial intelligence", NULL};
    ck_assert_int_eq(t_run(a4, &out, &err), 0);
    ck_assert_str_eq(out, "1 291 272 323 425 276 373 261 420 413 417 431 417 429 417 412 421 322 "
                          "413 411 306 333 302 331\n");
    free(out);
    free(err);
    /* detokenize: exact text, no newline added */
    char *a5[] = {(char *)t_bin("lmpack-detokenize"), (char *)bl, "--ids",
                  "1311 582 198 1311 827 1116 198 9110 8884 3204 201 198 37066 1761", NULL};
    ck_assert_int_eq(t_run(a5, &out, &err), 0);
    ck_assert_str_eq(out, txt);
    free(out);
    free(err);
    char *a6[] = {(char *)t_bin("lmpack-detokenize"), (char *)bl, "--json", "--ids", "504,1774",
                  NULL};
    ck_assert_int_eq(t_run(a6, &out, &err), 0);
    ck_assert_str_eq(out, "{\"text\":\"The future\"}\n");
    free(out);
    free(err);
    /* failures: out-of-vocabulary id (1), missing tokenizer (1), usage (2) */
    char *a7[] = {(char *)t_bin("lmpack-detokenize"), (char *)bl, "--ids", "49152", NULL};
    ck_assert_int_eq(t_run(a7, &out, &err), 1);
    ck_assert_msg(strstr(err, "49152"), "stderr: %s", err);
    free(out);
    free(err);
    char *a8[] = {(char *)t_bin("lmpack-tokenize"), dir, "--text", "x", NULL};
    ck_assert_int_eq(t_run(a8, &out, &err), 1);
    ck_assert_ptr_nonnull(strstr(err, "tokenizer.json"));
    free(out);
    free(err);
    char *a9[] = {(char *)t_bin("lmpack-tokenize"), (char *)bl, NULL};
    ck_assert_int_eq(t_run(a9, &out, &err), 2);
    free(out);
    free(err);
    char *a10[] = {(char *)t_bin("lmpack-detokenize"), (char *)bl, "--ids", "1 x", NULL};
    ck_assert_int_eq(t_run(a10, &out, &err), 2);
    free(out);
    free(err);
    char *a11[] = {(char *)t_bin("lmpack-tokenize"), "--help", NULL};
    ck_assert_int_eq(t_run(a11, &out, &err), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: lmpack tokenize"));
    free(out);
    free(err);
    t_rmtree(dir);
    free(dir);
    free(bl);
}
END_TEST

/* lmpack run --prompt: greedy text equals the tokenizer's decoding of the
 * transformers greedy sequence (greedy200.json: BOS + 200 argmax tokens). */
static char *greedy200_text(lmp_tok *t, size_t from, size_t to)
{
    size_t gl;
    char *g = (char *)t_slurp(t_data("stories260k/greedy200.json"), &gl);
    cJSON *arr = cJSON_ParseWithLength(g, gl);
    free(g);
    ck_assert_int_ge(cJSON_GetArraySize(arr), (int)to);
    int ids[256];
    for (size_t i = from; i < to; i++) ids[i - from] = cJSON_GetArrayItem(arr, (int)i)->valueint;
    cJSON_Delete(arr);
    size_t len;
    return dec(t, ids, to - from, &len);
}

START_TEST(cli_run_prompt)
{
    lmp_tok *t = load("stories260k");
    char *model = strdup(t_data("stories260k")), *out = NULL, *err = NULL;
    /* the prompt with BOS is the first 5 ids of greedy200 */
    size_t n;
    int *ids = NULL;
    lmp_diag d = {0};
    ck_assert_int_eq(lmp_tok_encode(t, "Once upon a time", 16, lmp_tok_add_bos_default(t), &ids,
                                    &n, &d), LMP_OK);
    ck_assert_uint_eq(n, 5);
    char *p5 = greedy200_text(t, 1, 5);
    ck_assert_str_eq(p5, "Once upon a time");
    free(p5);
    free(ids);
    /* prompt echo + 64 new tokens = decode(greedy200[1 .. 69)) */
    char *want = greedy200_text(t, 1, 69);
    char *a1[] = {(char *)t_bin("lmpack-run"), model, "--prompt", "Once upon a time", "-n", "64",
                  "--temperature", "0", "-t", "1", NULL};
    ck_assert_int_eq(t_run(a1, &out, &err), 0);
    ck_assert_msg(!strcmp(out, want), "got \"%s\"\nwant \"%s\"", out, want);
    free(out);
    free(err);
    /* same seed, same text; another seed, other text */
    char *outs[3];
    const char *seeds[3] = {"5", "5", "6"};
    for (int i = 0; i < 3; i++) {
        char *a[] = {(char *)t_bin("lmpack-run"), model, "--prompt", "Once upon a time", "-n",
                     "48", "--temperature", "1.0", "--top-k", "0", "--top-p", "1", "--min-p", "0",
                     "--seed", (char *)seeds[i], NULL};
        ck_assert_int_eq(t_run(a, &outs[i], &err), 0);
        free(err);
    }
    ck_assert_str_eq(outs[0], outs[1]);
    ck_assert_str_ne(outs[0], outs[2]);
    ck_assert(!strncmp(outs[0], "Once upon a time", 16));
    for (int i = 0; i < 3; i++) free(outs[i]);
    /* EOS stop: a copy whose config says EOS = 432 (",", greedy200[5]) stops
     * right after the prompt; --ignore-eos does not */
    char *dir = t_tmpdir(), path[4096], cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && for f in model.safetensors tokenizer.json tokenizer_config.json; do "
             "ln -s \"$PWD/$f\" '%s/'; done && sed 's/\"eos_token_id\": *2/\"eos_token_id\": 432/' "
             "config.json > '%s/config.json' && grep -q '\"eos_token_id\": 432' '%s/config.json'",
             model, dir, dir, dir);
    ck_assert_int_eq(t_sh(cmd, NULL, NULL), 0);
    snprintf(path, sizeof path, "%s", dir);
    char *a2[] = {(char *)t_bin("lmpack-run"), path, "--prompt", "Once upon a time", "-n", "16",
                  "--temperature", "0", NULL};
    ck_assert_int_eq(t_run(a2, &out, &err), 0);
    ck_assert_str_eq(out, "Once upon a time");
    free(out);
    free(err);
    char *a3[] = {(char *)t_bin("lmpack-run"), path, "--prompt", "Once upon a time", "-n", "16",
                  "--temperature", "0", "--ignore-eos", NULL};
    ck_assert_int_eq(t_run(a3, &out, &err), 0);
    char *want16 = greedy200_text(t, 1, 21);
    ck_assert_str_eq(out, want16);
    free(want16);
    free(out);
    free(err);
    /* --chat: a copy whose tokenizer_config has a ChatML template. The reply
     * (not echoed) must be what `run --ids` of the chat prompt's ids
     * (tokenize --chat --bos) generates, detokenized */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && rm '%s/tokenizer_config.json' && sed 's/\"eos_token_id\": *432/"
             "\"eos_token_id\": 2/' '%s/config.json' > '%s/c.json' && mv '%s/c.json' "
             "'%s/config.json' && printf '%%s' '{\"add_bos_token\": true, \"bos_token\": \"<s>\", "
             "\"chat_template\": \"{%% for m in messages %%}<|im_start|>{{ m.role }}{%% endfor %%}\"}' "
             "> '%s/tokenizer_config.json'",
             model, dir, dir, dir, dir, dir, dir);
    ck_assert_int_eq(t_sh(cmd, NULL, NULL), 0);
    char *a6[] = {(char *)t_bin("lmpack-tokenize"), path, "--chat", "--bos", "--text", "Hi", NULL};
    ck_assert_int_eq(t_run(a6, &out, &err), 0);
    char *chat_ids = out;
    free(err);
    ck_assert_ptr_nonnull(strstr(chat_ids, "1 ")); /* BOS first */
    chat_ids[strcspn(chat_ids, "\n")] = '\0';
    char *a7[] = {(char *)t_bin("lmpack-run"), path, "--ids", chat_ids, "-n", "12", "--greedy",
                  NULL};
    ck_assert_int_eq(t_run(a7, &out, &err), 0);
    char *gen_ids = out;
    free(err);
    gen_ids[strcspn(gen_ids, "\n")] = '\0';
    char *a8[] = {(char *)t_bin("lmpack-detokenize"), path, "--ids", gen_ids, NULL};
    ck_assert_int_eq(t_run(a8, &out, &err), 0);
    char *want_chat = out;
    free(err);
    char *a9[] = {(char *)t_bin("lmpack-run"), path, "--chat", "--prompt", "Hi", "-n", "12",
                  "--temperature", "0", "--ignore-eos", NULL};
    ck_assert_int_eq(t_run(a9, &out, &err), 0);
    ck_assert_str_eq(out, want_chat);
    ck_assert_uint_gt(strlen(out), 0);
    free(out);
    free(err);
    free(want_chat);
    free(gen_ids);
    free(chat_ids);
    /* no chat template / bad flags */
    char *a4[] = {(char *)t_bin("lmpack-run"), model, "--prompt", "Hi", "--chat", NULL};
    ck_assert_int_eq(t_run(a4, &out, &err), 1);
    ck_assert_ptr_nonnull(strstr(err, "no chat template"));
    free(out);
    free(err);
    char *a5[] = {(char *)t_bin("lmpack-run"), model, "--prompt", "Hi", "--top-p", "0", NULL};
    ck_assert_int_eq(t_run(a5, &out, &err), 2);
    free(out);
    free(err);
    t_rmtree(dir);
    free(dir);
    free(want);
    free(model);
    lmp_tok_close(t);
}
END_TEST

Suite *lmp_suite_tokenizer(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, golden_smollm);
    tcase_add_test(tc, golden_stories);
    tcase_add_test(tc, golden_from_container);
    tcase_add_test(tc, roundtrip_and_long);
    tcase_add_test(tc, invalid_utf8_and_empty);
    tcase_add_test(tc, special_tokens);
    tcase_add_test(tc, stream_split_character);
    tcase_add_test(tc, unsupported_components);
    tcase_add_test(tc, chat_format);
    tcase_add_test(tc, hand_built_bpe);
    tcase_add_test(tc, bytelevel_prefix_space);
    tcase_add_test(tc, split_regexes);
    tcase_add_test(tc, llama3_style_pretokenizer);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("programs");
    tcase_set_timeout(tp, 60);
    tcase_add_test(tp, cli_tokenize_detokenize);
    tcase_add_test(tp, cli_run_prompt);
    suite_add_tcase(s, tp);
    return s;
}
