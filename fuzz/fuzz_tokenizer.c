/* Fuzz the tokenizer. Input starting with '{': a tokenizer.json to load
 * (then encode/decode/stream a few fixed texts and every id). Otherwise:
 * text encoded and round-tripped with two built-in tokenizers (byte-level
 * and SentencePiece-style with byte fallback). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

static void exercise(lmp_tok *t, const char *text, size_t len)
{
    int *ids = NULL;
    size_t n = 0;
    lmp_diag d = {0};
    if (lmp_tok_encode(t, text, len, 0, &ids, &n, &d) == LMP_OK) {
        char *s = NULL;
        size_t sl;
        if (lmp_tok_decode(t, ids, n, &s, &sl, &d) == LMP_OK) free(s);
        lmp_tok_stream *st = NULL;
        if (lmp_tok_stream_open(&st, t, &d) == LMP_OK) {
            const char *p;
            size_t pl;
            for (size_t i = 0; i < n; i++) lmp_tok_stream_push(st, ids[i], &p, &pl, &d);
            lmp_tok_stream_finish(st, &p, &pl, &d);
            lmp_tok_stream_close(st);
        }
    }
    free(ids);
}

static char *append(char *b, size_t *n, size_t *cap, const char *s)
{
    size_t l = strlen(s);
    if (*n + l + 1 > *cap) {
        *cap = (*n + l + 1) * 2;
        b = realloc(b, *cap);
    }
    memcpy(b + *n, s, l + 1);
    *n += l;
    return b;
}

static lmp_tok *builtin(int sp)
{
    size_t n = 0, cap = 0;
    char *j = NULL, item[64];
    j = append(j, &n, &cap, "{\"added_tokens\":[{\"id\":300,\"content\":\"<|x|>\",\"special\":true,"
                            "\"normalized\":false,\"lstrip\":true}],");
    if (sp)
        j = append(j, &n, &cap,
                   "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\","
                   "\"prepend\":\"\\u2581\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},"
                   "\"content\":\"\\u2581\"}]},\"decoder\":{\"type\":\"Sequence\",\"decoders\":["
                   "{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
                   "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\","
                   "\"content\":\" \",\"start\":1,\"stop\":0}]},");
    else
        j = append(j, &n, &cap,
                   "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":"
                   "\"Digits\",\"individual_digits\":true},{\"type\":\"ByteLevel\","
                   "\"add_prefix_space\":false,\"use_regex\":true}]},\"decoder\":{\"type\":"
                   "\"ByteLevel\"},");
    j = append(j, &n, &cap, sp ? "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"unk_token\":"
                                 "\"<unk>\",\"fuse_unk\":true,\"vocab\":{\"<unk>\":299,"
                               : "\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (int b = 0; b < 256; b++) {
        if (sp) {
            snprintf(item, sizeof item, "\"<0x%02X>\":%d,", b, b);
        } else {
            uint8_t u[5] = {0};
            lmp_utf8_put(tok_byte_to_cp((uint8_t)b), u);
            if (b == '"' || b == '\\')
                snprintf(item, sizeof item, "\"\\%c\":%d,", b, b);
            else
                snprintf(item, sizeof item, "\"%s\":%d,", (char *)u, b);
        }
        j = append(j, &n, &cap, item);
    }
    j = append(j, &n, &cap, sp ? "\"\\u2581\":256,\"a\":257,\"\\u2581a\":258,\"aa\":259},"
                                 "\"merges\":[\"\\u2581 a\",[\"a\",\"a\"]]}}"
                               : "\"ab\":256,\"abc\":257},\"merges\":[\"a b\",\"ab c\"]}}");
    lmp_tok *t = NULL;
    lmp_diag d = {0};
    if (lmp_tok_load_mem(&t, j, n, NULL, "builtin", &d) != LMP_OK) {
        fprintf(stderr, "fuzz_tokenizer: builtin %d: %s\n", sp, d.msg);
        abort();
    }
    free(j);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] == '{') {
        lmp_tok *t = NULL;
        lmp_diag d = {0};
        if (lmp_tok_load_mem(&t, (const char *)data, size, NULL, "fuzz", &d) != LMP_OK) return 0;
        static const char *texts[] = {"", "Hello world 123", "<|im_start|>a<s>b", "\xff\xe6\x9d",
                                      "  \t\n x"};
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
            exercise(t, texts[i], strlen(texts[i]));
        int n = lmp_tok_vocab_size(t) < 4096 ? lmp_tok_vocab_size(t) : 4096;
        int *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) ids[i] = i;
        char *s = NULL;
        size_t sl;
        if (lmp_tok_decode(t, ids, (size_t)n, &s, &sl, &d) == LMP_OK) free(s);
        free(ids);
        lmp_tok_close(t);
        return 0;
    }
    for (int sp = 0; sp < 2; sp++) {
        lmp_tok *t = builtin(sp);
        exercise(t, (const char *)data, size);
        lmp_tok_close(t);
    }
    return 0;
}
