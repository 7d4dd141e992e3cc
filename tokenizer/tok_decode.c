/* Decoding (the library's decoder chain over token strings), the streaming
 * decoder and the chat prompt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

/* A list of byte strings: token i is b[st[i], end(i)). */
typedef struct toks {
    uint8_t *b;
    size_t len, cap;
    size_t *st;
    size_t n, ncap;
} toks;

static void toks_free(toks *l)
{
    free(l->b);
    free(l->st);
    memset(l, 0, sizeof *l);
}

static size_t toks_end(const toks *l, size_t i) { return i + 1 < l->n ? l->st[i + 1] : l->len; }

static int toks_new(toks *l)
{
    if (!l->b) { /* never leave b NULL once a token exists (b + offset) */
        l->b = malloc(256);
        if (!l->b) return -1;
        l->cap = 256;
    }
    if (l->n == l->ncap) {
        size_t c = l->ncap ? l->ncap * 2 : 64;
        size_t *q = realloc(l->st, c * sizeof *q);
        if (!q) return -1;
        l->st = q;
        l->ncap = c;
    }
    l->st[l->n++] = l->len;
    return 0;
}

static int toks_app(toks *l, const void *p, size_t n)
{
    if (l->len + n > l->cap) {
        size_t c = l->cap ? l->cap : 256;
        while (c < l->len + n) c *= 2;
        uint8_t *q = realloc(l->b, c);
        if (!q) return -1;
        l->b = q;
        l->cap = c;
    }
    if (n) memcpy(l->b + l->len, p, n);
    l->len += n;
    return 0;
}

/* Append s with invalid UTF-8 replaced per maximal subpart (from_utf8_lossy). */
static int app_lossy(toks *l, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int bad;
        size_t k = lmp_utf8_next(s + i, n - i, &cp, &bad);
        if (bad ? toks_app(l, "\xEF\xBF\xBD", 3) : toks_app(l, s + i, k)) return -1;
        i += k;
    }
    return 0;
}

/* ByteLevel: a token's characters back to bytes, or its own UTF-8 when one
 * character is outside the byte map. */
static int app_bytelevel(toks *l, const uint8_t *s, size_t n)
{
    size_t mark = l->len;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int bad;
        size_t k = lmp_utf8_next(s + i, n - i, &cp, &bad);
        int b = bad ? -1 : tok_cp_to_byte(cp);
        if (b < 0) {
            l->len = mark;
            return toks_app(l, s, n);
        }
        uint8_t c = (uint8_t)b;
        if (toks_app(l, &c, 1)) return -1;
        i += k;
    }
    return 0;
}

static int app_replace(toks *l, const uint8_t *s, size_t n, const tok_stage *st)
{
    for (size_t i = 0; i < n;) {
        if (i + st->alen <= n && !memcmp(s + i, st->a, st->alen)) {
            if (toks_app(l, st->b, st->blen)) return -1;
            i += st->alen;
        } else {
            if (toks_app(l, s + i, 1)) return -1;
            i++;
        }
    }
    return 0;
}

/* "<0xXX>" -> byte value, else -1. */
static int fallback_byte(const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF0123456789abcdef";
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    const char *h = memchr(hex, s[3], 32), *lo = memchr(hex, s[4], 32);
    if (!h || !lo) return -1;
    return (int)((h - hex) % 16 * 16 + (lo - hex) % 16);
}

/* Run one decoder stage from `in` into `out`. */
static int run_stage(const tok_stage *st, const toks *in, toks *out)
{
    if (st->kind == DEC_BYTELEVEL || st->kind == DEC_FUSE) {
        toks tmp = {0};
        if (toks_new(out)) return -1;
        for (size_t i = 0; i < in->n; i++) {
            const uint8_t *s = in->b + in->st[i];
            size_t n = toks_end(in, i) - in->st[i];
            if (st->kind == DEC_FUSE ? toks_app(out, s, n) : app_bytelevel(&tmp, s, n)) {
                toks_free(&tmp);
                return -1;
            }
        }
        int r = st->kind == DEC_BYTELEVEL ? app_lossy(out, tmp.b, tmp.len) : 0;
        toks_free(&tmp);
        return r;
    }
    if (st->kind == DEC_BYTEFALLBACK) {
        uint8_t *run = malloc(in->n ? in->n : 1);
        size_t rn = 0;
        if (!run) return -1;
        for (size_t i = 0; i <= in->n; i++) {
            const uint8_t *s = i < in->n ? in->b + in->st[i] : NULL;
            size_t n = i < in->n ? toks_end(in, i) - in->st[i] : 0;
            int b = s ? fallback_byte(s, n) : -1;
            if (b >= 0) {
                run[rn++] = (uint8_t)b;
                continue;
            }
            if (rn) { /* valid UTF-8 run -> one token, else one U+FFFD per byte */
                int ok = 1;
                for (size_t k = 0; k < rn && ok;) {
                    uint32_t cp;
                    int bad;
                    k += lmp_utf8_next(run + k, rn - k, &cp, &bad);
                    ok = !bad;
                }
                if (ok) {
                    if (toks_new(out) || toks_app(out, run, rn)) goto fail;
                } else {
                    for (size_t k = 0; k < rn; k++)
                        if (toks_new(out) || toks_app(out, "\xEF\xBF\xBD", 3)) goto fail;
                }
                rn = 0;
            }
            if (s && (toks_new(out) || toks_app(out, s, n))) goto fail;
        }
        free(run);
        return 0;
    fail:
        free(run);
        return -1;
    }
    for (size_t i = 0; i < in->n; i++) {
        const uint8_t *s = in->b + in->st[i];
        size_t n = toks_end(in, i) - in->st[i];
        if (toks_new(out)) return -1;
        if (st->kind == DEC_REPLACE) {
            if (app_replace(out, s, n, st)) return -1;
        } else { /* DEC_STRIP: up to f1 leading and f2 trailing content chars */
            for (int k = 0; k < st->f1 && n >= st->alen && !memcmp(s, st->a, st->alen); k++)
                s += st->alen, n -= st->alen;
            for (int k = 0; k < st->f2 && n >= st->alen && !memcmp(s + n - st->alen, st->a, st->alen);
                 k++)
                n -= st->alen;
            if (toks_app(out, s, n)) return -1;
        }
    }
    return 0;
}

lmp_status lmp_tok_decode(const lmp_tok *t, const int *ids, size_t n, char **out,
                          size_t *out_len, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    toks a = {0}, b = {0}, fin = {0};
    *out = NULL;
    if (out_len) *out_len = 0;
    for (size_t i = 0; i < n; i++) {
        LMP_FAIL_IF(ids[i] < 0 || ids[i] >= t->n_ids || !t->id_str[ids[i]], LMP_ERR_RANGE,
                    "%s: token id %d at position %zu is not in the vocabulary (size %d)", t->name,
                    ids[i], i, t->n_ids);
        const char *s = t->id_str[ids[i]];
        LMP_FAIL_IF(toks_new(&a) || toks_app(&a, s, strlen(s)), LMP_ERR_NOMEM,
                    "%s: out of memory decoding", t->name);
    }
    for (int k = 0; k < t->n_dec; k++) {
        LMP_FAIL_IF(run_stage(&t->dec[k], &a, &b), LMP_ERR_NOMEM, "%s: out of memory decoding",
                    t->name);
        toks_free(&a);
        a = b;
        memset(&b, 0, sizeof b);
    }
    /* join (with spaces when there is no decoder, as the library does) */
    LMP_FAIL_IF(toks_new(&b), LMP_ERR_NOMEM, "%s: out of memory decoding", t->name);
    for (size_t i = 0; i < a.n; i++) {
        LMP_FAIL_IF((i && !t->has_decoder && toks_app(&b, " ", 1)) ||
                        toks_app(&b, a.b + a.st[i], toks_end(&a, i) - a.st[i]),
                    LMP_ERR_NOMEM, "%s: out of memory decoding", t->name);
    }
    LMP_FAIL_IF(toks_new(&fin) || app_lossy(&fin, b.b, b.len) || toks_app(&fin, "", 1),
                LMP_ERR_NOMEM, "%s: out of memory decoding", t->name);
    *out = (char *)fin.b;
    if (out_len) *out_len = fin.len - 1;
    fin.b = NULL;
out:
    toks_free(&a);
    toks_free(&b);
    toks_free(&fin);
    return rc;
}

/* ---- streaming ------------------------------------------------------------ */

struct lmp_tok_stream {
    const lmp_tok *t;
    toks pend; /* bytes not yet emitted (one token list entry, reused) */
    toks out;  /* text returned by the last call */
    const tok_stage *strip;
    int strip_left; /* leading content chars still to strip */
    int first;      /* no token pushed yet */
};

lmp_status lmp_tok_stream_open(lmp_tok_stream **out, const lmp_tok *t, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    *out = NULL;
    int fused = 0;
    const tok_stage *strip = NULL;
    for (int k = 0; k < t->n_dec; k++) {
        int kind = t->dec[k].kind;
        LMP_FAIL_IF(strip || (fused && kind != DEC_STRIP) || (kind == DEC_STRIP && !fused),
                    LMP_ERR_UNSUPPORTED,
                    "%s: streaming needs the decoder order Replace/ByteFallback/ByteLevel, Fuse, "
                    "Strip", t->name);
        if (kind == DEC_FUSE || kind == DEC_BYTELEVEL) fused = 1;
        if (kind == DEC_STRIP) strip = &t->dec[k];
    }
    lmp_tok_stream *s = calloc(1, sizeof *s);
    LMP_FAIL_IF(!s, LMP_ERR_NOMEM, "%s: out of memory", t->name);
    s->t = t;
    s->strip = strip;
    s->strip_left = strip ? strip->f1 : 0;
    s->first = 1;
    *out = s;
out:
    return rc;
}

void lmp_tok_stream_close(lmp_tok_stream *s)
{
    if (!s) return;
    toks_free(&s->pend);
    toks_free(&s->out);
    free(s);
}

/* Bytes of one token with every per-token decoder stage applied (Replace,
 * ByteLevel to bytes, ByteFallback to its raw byte). */
static int token_piece(const lmp_tok *t, int id, toks *dst)
{
    toks cur = {0}, nxt = {0};
    const char *s = t->id_str[id];
    if (toks_new(&cur) || toks_app(&cur, s, strlen(s))) goto fail;
    for (int k = 0; k < t->n_dec; k++) {
        const tok_stage *st = &t->dec[k];
        if (toks_new(&nxt)) goto fail;
        int r = 0, fb;
        if (st->kind == DEC_REPLACE)
            r = app_replace(&nxt, cur.b, cur.len, st);
        else if (st->kind == DEC_BYTELEVEL)
            r = app_bytelevel(&nxt, cur.b, cur.len);
        else if (st->kind == DEC_BYTEFALLBACK && (fb = fallback_byte(cur.b, cur.len)) >= 0) {
            uint8_t c = (uint8_t)fb;
            r = toks_app(&nxt, &c, 1);
        } else
            r = toks_app(&nxt, cur.b, cur.len);
        if (r) goto fail;
        toks_free(&cur);
        cur = nxt;
        memset(&nxt, 0, sizeof nxt);
    }
    int r = toks_app(dst, cur.b, cur.len);
    toks_free(&cur);
    return r;
fail:
    toks_free(&cur);
    toks_free(&nxt);
    return -1;
}

/* Move the final part of pend to out. */
static int stream_emit(lmp_tok_stream *s, int finish)
{
    toks *p = &s->pend;
    size_t skip = 0;
    if (p->len == 0) return 0; /* nothing pending (p->b may still be NULL) */
    const tok_stage *st = s->strip;
    while (s->strip_left > 0 && skip < p->len) {
        size_t have = p->len - skip;
        if (have >= st->alen && !memcmp(p->b + skip, st->a, st->alen)) {
            skip += st->alen;
            s->strip_left--;
        } else if (have < st->alen && !memcmp(p->b + skip, st->a, have) && !finish) {
            break; /* could still become the content char */
        } else {
            s->strip_left = 0;
        }
    }
    if (s->strip_left > 0 && skip < p->len && !finish) { /* undecided prefix: wait */
        memmove(p->b, p->b + skip, p->len - skip);
        p->len -= skip;
        return 0;
    }
    if (p->len > skip) s->strip_left = 0;
    /* complete characters (an unfinished one at the very end waits) */
    size_t e = p->len;
    if (!finish) e -= lmp_utf8_incomplete_tail(p->b + skip, p->len - skip);
    size_t keep_from = e;
    if (st && st->f2 > 0) { /* hold trailing content chars: Strip may remove them */
        int k = 0;
        while (k < st->f2 && keep_from - skip >= st->alen &&
               !memcmp(p->b + keep_from - st->alen, st->a, st->alen))
            keep_from -= st->alen, k++;
        if (finish) e = keep_from;
    }
    size_t emit_to = finish ? e : keep_from;
    if (app_lossy(&s->out, p->b + skip, emit_to - skip)) return -1;
    size_t rest = finish ? 0 : p->len - emit_to;
    if (rest) memmove(p->b, p->b + emit_to, rest);
    p->len = rest;
    return 0;
}

lmp_status lmp_tok_stream_push(lmp_tok_stream *s, int id, const char **text, size_t *len,
                               lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const lmp_tok *t = s->t;
    s->out.len = 0;
    *text = "";
    *len = 0;
    LMP_FAIL_IF(id < 0 || id >= t->n_ids || !t->id_str[id], LMP_ERR_RANGE,
                "%s: token id %d is not in the vocabulary (size %d)", t->name, id, t->n_ids);
    LMP_FAIL_IF((!t->has_decoder && !s->first && toks_app(&s->pend, " ", 1)) ||
                    token_piece(t, id, &s->pend) || stream_emit(s, 0) || toks_app(&s->out, "", 1),
                LMP_ERR_NOMEM, "%s: out of memory decoding", t->name);
    s->first = 0;
    *text = (const char *)s->out.b;
    *len = s->out.len - 1;
out:
    return rc;
}

lmp_status lmp_tok_stream_finish(lmp_tok_stream *s, const char **text, size_t *len, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    s->out.len = 0;
    LMP_FAIL_IF(stream_emit(s, 1) || toks_app(&s->out, "", 1), LMP_ERR_NOMEM,
                "%s: out of memory decoding", s->t->name);
    *text = (const char *)s->out.b;
    *len = s->out.len - 1;
out:
    return rc;
}

/* ---- chat ----------------------------------------------------------------- */

lmp_status lmp_tok_chat_format(const lmp_tok *t, const char *user_text, char **out, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    *out = NULL;
    LMP_FAIL_IF(t->chat == 0, LMP_ERR_UNSUPPORTED, "%s: model has no chat template", t->name);
    LMP_FAIL_IF(t->chat < 0, LMP_ERR_UNSUPPORTED,
                "%s: chat template not supported (only ChatML)", t->name);
    static const char pre[] = "<|im_start|>user\n",
                      post[] = "<|im_end|>\n<|im_start|>assistant\n";
    size_t n = strlen(user_text);
    char *s = malloc(sizeof pre + n + sizeof post);
    LMP_FAIL_IF(!s, LMP_ERR_NOMEM, "%s: out of memory", t->name);
    memcpy(s, pre, sizeof pre - 1);
    memcpy(s + sizeof pre - 1, user_text, n);
    memcpy(s + sizeof pre - 1 + n, post, sizeof post);
    *out = s;
out:
    return rc;
}
