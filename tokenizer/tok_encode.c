/* Encoding: added tokens -> normalizers -> pre-tokenizers -> BPE, in the
 * order and with the rules of Hugging Face tokenizers' TokenizerImpl::encode
 * (add_special_tokens=False). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

#define CACHE_SLOTS (1u << 15)
#define CACHE_MAX_WORD 256

typedef struct sym {
    int32_t id; /* -1: merged away */
    int32_t prev, next;
} sym;

typedef struct hent {
    int32_t rank, pos, id;
} hent;

typedef struct enc {
    lmp_tok *t;
    lmp_diag *d;
    int32_t *ids;
    size_t n, cap;
    sym *sy;
    size_t sy_cap;
    hent *heap;
    size_t heap_n, heap_cap;
} enc;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static lmp_status push_id(enc *e, int32_t id)
{
    if (grow((void **)&e->ids, &e->cap, e->n + 1, sizeof *e->ids))
        return lmp_fail(e->d, LMP_ERR_NOMEM, "%s: out of memory encoding", e->t->name);
    e->ids[e->n++] = id;
    return LMP_OK;
}

/* ---- word cache ----------------------------------------------------------- */

void tok_cache_free(tok_cache *c)
{
    free(c->ent);
    free(c->keys);
    free(c->ids);
    memset(c, 0, sizeof *c);
}

static const tok_cache_ent *cache_get(const tok_cache *c, const uint8_t *s, size_t n, uint64_t h)
{
    if (!c->ent) return NULL;
    size_t i = h & c->mask;
    for (;;) {
        const tok_cache_ent *e = &c->ent[i];
        if (!e->key_len) return NULL;
        if (e->hash == h && e->key_len == n && !memcmp(c->keys + e->key_off, s, n)) return e;
        i = (i + 1) & c->mask;
    }
}

/* Best effort: a failed allocation just leaves the word uncached. */
static void cache_put(tok_cache *c, const uint8_t *s, size_t n, uint64_t h, const int32_t *ids,
                      size_t nid)
{
    if (!c->ent) {
        c->ent = calloc(CACHE_SLOTS, sizeof *c->ent);
        if (!c->ent) return;
        c->mask = CACHE_SLOTS - 1;
    }
    if (c->used >= CACHE_SLOTS / 2 || c->keys_len + n > (8u << 20)) { /* full: start over */
        memset(c->ent, 0, CACHE_SLOTS * sizeof *c->ent);
        c->used = c->keys_len = c->ids_len = 0;
    }
    if (grow((void **)&c->keys, &c->keys_cap, c->keys_len + n, 1) ||
        grow((void **)&c->ids, &c->ids_cap, c->ids_len + nid, sizeof *c->ids))
        return;
    size_t i = h & c->mask;
    while (c->ent[i].key_len) i = (i + 1) & c->mask;
    memcpy(c->keys + c->keys_len, s, n);
    if (nid) memcpy(c->ids + c->ids_len, ids, nid * sizeof *ids);
    c->ent[i] = (tok_cache_ent){h, (uint32_t)c->keys_len, (uint32_t)n, (uint32_t)c->ids_len,
                                (uint32_t)nid};
    c->keys_len += n;
    c->ids_len += nid;
    c->used++;
}

/* ---- BPE ------------------------------------------------------------------ */

static int hent_less(const hent *a, const hent *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static lmp_status heap_push(enc *e, int32_t left, int32_t right, int32_t pos)
{
    const tok_merge *m = tok_merge_get(&e->t->merges, left, right);
    if (!m) return LMP_OK;
    if (grow((void **)&e->heap, &e->heap_cap, e->heap_n + 1, sizeof *e->heap))
        return lmp_fail(e->d, LMP_ERR_NOMEM, "%s: out of memory encoding", e->t->name);
    size_t i = e->heap_n++;
    hent v = {m->rank, pos, m->id};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hent_less(&v, &e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = v;
    return LMP_OK;
}

static hent heap_pop(enc *e)
{
    hent top = e->heap[0], v = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const hent *best = &v;
        if (l < n && hent_less(&e->heap[l], best)) m = l, best = &e->heap[l];
        if (r < n && hent_less(&e->heap[r], best)) m = r;
        if (m == i) break;
        e->heap[i] = e->heap[m];
        i = m;
    }
    if (n) e->heap[i] = v;
    return top;
}

static lmp_status add_sym(enc *e, size_t *m, int32_t id)
{
    if (grow((void **)&e->sy, &e->sy_cap, *m + 1, sizeof *e->sy))
        return lmp_fail(e->d, LMP_ERR_NOMEM, "%s: out of memory encoding", e->t->name);
    e->sy[*m] = (sym){id, (int32_t)*m - 1, (int32_t)*m + 1};
    (*m)++;
    return LMP_OK;
}

/* One unit (character, or byte for byte-level) missing from the vocab:
 * byte fallback, else unk (fused with a preceding unk if fuse_unk), else
 * dropped, as the library's BPE::merge_word does. */
static lmp_status unknown_unit(enc *e, size_t *m, const uint8_t *u, size_t ul, int *pending_unk)
{
    lmp_status rc = LMP_OK;
    lmp_tok *t = e->t;
    if (t->byte_fallback) {
        size_t k = 0;
        while (k < ul && t->fallback_id[u[k]] >= 0) k++;
        if (k == ul) {
            for (k = 0; k < ul; k++) LMP_FORWARD(add_sym(e, m, t->fallback_id[u[k]]));
            return LMP_OK;
        }
    }
    if (t->unk_id >= 0) {
        if (*pending_unk && !t->fuse_unk) LMP_FORWARD(add_sym(e, m, t->unk_id));
        *pending_unk = 1;
    }
out:
    return rc;
}

static lmp_status bpe_word(enc *e, const uint8_t *s, size_t n)
{
    lmp_status rc = LMP_OK;
    lmp_tok *t = e->t;
    lmp_diag *d = e->d;
    if (n == 0) return LMP_OK;
    uint64_t h = 0;
    if (n <= CACHE_MAX_WORD) {
        h = tok_hash(s, n);
        const tok_cache_ent *ce = cache_get(&t->cache, s, n, h);
        if (ce) {
            LMP_FAIL_IF(grow((void **)&e->ids, &e->cap, e->n + ce->n_ids, sizeof *e->ids),
                        LMP_ERR_NOMEM, "%s: out of memory encoding", t->name);
            if (ce->n_ids)
                memcpy(e->ids + e->n, t->cache.ids + ce->ids_off, ce->n_ids * sizeof *e->ids);
            e->n += ce->n_ids;
            return LMP_OK;
        }
    }
    size_t first_out = e->n;
    if (t->ignore_merges) { /* the whole word as one token when it is in the vocab */
        int id = -1;
        if (!t->byte_level) {
            id = tok_strmap_get(t, (const char *)s, n);
        } else if (n <= 1024) {
            uint8_t buf[2048];
            size_t bl = 0;
            for (size_t i = 0; i < n; i++) bl += lmp_utf8_put(tok_byte_to_cp(s[i]), buf + bl);
            id = tok_strmap_get(t, (const char *)buf, bl);
        }
        if (id >= 0) {
            LMP_FORWARD(push_id(e, id));
            goto cache;
        }
    }
    size_t m = 0;
    int pending_unk = 0;
    for (size_t i = 0; i < n;) {
        size_t ul;
        int32_t id;
        uint8_t mapped[4];
        const uint8_t *u = s + i;
        if (t->byte_level) {
            ul = 1;
            id = t->byte_sym[s[i]];
            if (id < 0) { /* fallback works on the mapped character's bytes */
                size_t ml = lmp_utf8_put(tok_byte_to_cp(s[i]), mapped);
                LMP_FORWARD(unknown_unit(e, &m, mapped, ml, &pending_unk));
                i += 1;
                continue;
            }
        } else {
            uint32_t cp;
            int bad;
            ul = lmp_utf8_next(s + i, n - i, &cp, &bad);
            id = tok_strmap_get(t, (const char *)u, ul);
        }
        if (id >= 0) {
            if (pending_unk) {
                LMP_FORWARD(add_sym(e, &m, t->unk_id));
                pending_unk = 0;
            }
            LMP_FORWARD(add_sym(e, &m, id));
        } else {
            LMP_FORWARD(unknown_unit(e, &m, u, ul, &pending_unk));
        }
        i += ul;
    }
    if (pending_unk) LMP_FORWARD(add_sym(e, &m, t->unk_id));
    if (m == 0) goto cache;
    e->sy[m - 1].next = -1;

    e->heap_n = 0;
    for (size_t i = 0; i + 1 < m; i++)
        LMP_FORWARD(heap_push(e, e->sy[i].id, e->sy[i + 1].id, (int32_t)i));
    while (e->heap_n) {
        hent top = heap_pop(e);
        sym *a = &e->sy[top.pos];
        if (a->id < 0 || a->next < 0) continue;
        sym *b = &e->sy[a->next];
        const tok_merge *mg = tok_merge_get(&t->merges, a->id, b->id);
        if (!mg || mg->id != top.id) continue; /* stale entry */
        a->id = top.id;
        b->id = -1;
        a->next = b->next;
        if (a->next >= 0) e->sy[a->next].prev = top.pos;
        if (a->prev >= 0) LMP_FORWARD(heap_push(e, e->sy[a->prev].id, a->id, a->prev));
        if (a->next >= 0) LMP_FORWARD(heap_push(e, a->id, e->sy[a->next].id, top.pos));
    }
    for (int32_t i = 0; i >= 0; i = e->sy[i].next) LMP_FORWARD(push_id(e, e->sy[i].id));
cache:
    if (n <= CACHE_MAX_WORD)
        cache_put(&t->cache, s, n, h, e->ids ? e->ids + first_out : NULL, e->n - first_out);
out:
    return rc;
}

/* ---- pre-tokenizers ------------------------------------------------------ */

static int class_at(const uint8_t *s, size_t n, size_t i, size_t *len)
{
    if (s[i] < 0x80) {
        *len = 1;
        return lmp_uc_class(s[i]);
    }
    uint32_t cp;
    int bad;
    *len = lmp_utf8_next(s + i, n - i, &cp, &bad);
    return lmp_uc_class(cp);
}

/* Contraction at i ('s 't 're 've 'm 'll 'd; any case when ci): its length or 0. */
static size_t contraction(const uint8_t *s, size_t n, size_t i, int ci)
{
    if (s[i] != '\'' || i + 1 >= n) return 0;
    uint8_t c1 = s[i + 1], c2 = i + 2 < n ? s[i + 2] : 0;
    if (ci) {
        c1 = (uint8_t)(c1 >= 'A' && c1 <= 'Z' ? c1 + 32 : c1);
        c2 = (uint8_t)(c2 >= 'A' && c2 <= 'Z' ? c2 + 32 : c2);
    }
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
    return 0;
}

/* Whitespace alternatives shared by all patterns, at a whitespace char i:
 * [\s*[\r\n]+ when nl_rule] | \s+(?!\S) | \s+ */
static size_t space_next(const uint8_t *s, size_t n, size_t i, int nl_rule)
{
    size_t l, j = i, last = i, after_nl = 0;
    while (j < n && class_at(s, n, j, &l) == LMP_UC_SPACE) {
        last = j;
        if (s[j] == '\r' || s[j] == '\n') after_nl = j + 1;
        j += l;
    }
    if (nl_rule && after_nl) return after_nl; /* up to the last newline of the run */
    if (j == n || last == i) return j;        /* at the end, or one char: \s+ */
    return last;                              /* \s+(?!\S): leave the last one */
}

static size_t gpt2_next(const uint8_t *s, size_t n, size_t i)
{
    size_t k = contraction(s, n, i, 0);
    if (k) return i + k;
    size_t l, j = i;
    int cls = class_at(s, n, i, &l);
    if (s[i] == ' ' && i + 1 < n) { /* " ?X+" forms */
        size_t l1;
        int c1 = class_at(s, n, i + 1, &l1);
        if (c1 != LMP_UC_SPACE) {
            cls = c1;
            j = i + 1;
            l = l1;
        }
    }
    if (cls == LMP_UC_SPACE) return space_next(s, n, i, 0);
    j += l;
    while (j < n && class_at(s, n, j, &l) == cls) j += l;
    return j;
}

static size_t llama3_next(const uint8_t *s, size_t n, size_t i, int max_digits)
{
    size_t k = contraction(s, n, i, 1);
    if (k) return i + k;
    size_t l0, l1 = 0, l, j;
    int c0 = class_at(s, n, i, &l0);
    int c1 = i + l0 < n ? class_at(s, n, i + l0, &l1) : -1;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c0 == LMP_UC_LETTER || (c1 == LMP_UC_LETTER && c0 != LMP_UC_NUMBER && s[i] != '\r' &&
                                s[i] != '\n')) {
        j = c0 == LMP_UC_LETTER ? i : i + l0;
        while (j < n && class_at(s, n, j, &l) == LMP_UC_LETTER) j += l;
        return j;
    }
    if (c0 == LMP_UC_NUMBER) { /* \p{N}{1,max} */
        j = i + l0;
        for (int d = 1; d < max_digits && j < n && class_at(s, n, j, &l) == LMP_UC_NUMBER; d++)
            j += l;
        return j;
    }
    /* " ?[^\s\p{L}\p{N}]+[\r\n]*" */
    j = i;
    if (c0 == LMP_UC_OTHER)
        j = i;
    else if (s[i] == ' ' && c1 == LMP_UC_OTHER)
        j = i + 1;
    else
        return space_next(s, n, i, 1);
    while (j < n && class_at(s, n, j, &l) == LMP_UC_OTHER) j += l;
    while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
    return j;
}

size_t tok_regex_next(int re, const uint8_t *s, size_t n, size_t i)
{
    if (re == TOK_RE_GPT2) return gpt2_next(s, n, i);
    return llama3_next(s, n, i, re == TOK_RE_LLAMA3 ? 3 : 1);
}

static lmp_status run_pre(enc *e, int stage, const uint8_t *s, size_t n);

static lmp_status split_regex(enc *e, int stage, int re, const uint8_t *s, size_t n)
{
    lmp_status rc = LMP_OK;
    for (size_t i = 0; i < n;) {
        size_t j = tok_regex_next(re, s, n, i);
        LMP_FORWARD(run_pre(e, stage + 1, s + i, j - i));
        i = j;
    }
out:
    return rc;
}

static lmp_status run_pre(enc *e, int stage, const uint8_t *s, size_t n)
{
    lmp_status rc = LMP_OK;
    uint8_t *tmp = NULL;
    if (n == 0) return LMP_OK;
    if (stage == e->t->n_pre) return bpe_word(e, s, n);
    const tok_stage *st = &e->t->pre[stage];
    switch (st->kind) {
    case PRE_DIGITS: { /* Isolated (individual) or Contiguous runs of \p{N} */
        size_t i = 0, start = 0, l;
        while (i < n) {
            if (class_at(s, n, i, &l) != LMP_UC_NUMBER) {
                i += l;
                continue;
            }
            LMP_FORWARD(run_pre(e, stage + 1, s + start, i - start));
            size_t j = i + l;
            if (!st->f1)
                while (j < n && class_at(s, n, j, &l) == LMP_UC_NUMBER) j += l;
            LMP_FORWARD(run_pre(e, stage + 1, s + i, j - i));
            i = start = j;
        }
        LMP_FORWARD(run_pre(e, stage + 1, s + start, n - start));
        break;
    }
    case PRE_SPLIT_STR: {
        size_t i = 0, start = 0;
        while (i + st->alen <= n) {
            if (memcmp(s + i, st->a, st->alen)) {
                i++;
                continue;
            }
            LMP_FORWARD(run_pre(e, stage + 1, s + start, i - start));
            if (!st->f1) LMP_FORWARD(run_pre(e, stage + 1, s + i, st->alen));
            i = start = i + st->alen;
        }
        LMP_FORWARD(run_pre(e, stage + 1, s + start, n - start));
        break;
    }
    case PRE_SPLIT_REGEX:
        LMP_FORWARD(split_regex(e, stage, st->f2, s, n));
        break;
    case PRE_BYTELEVEL:
        if (st->f1 && s[0] != ' ') { /* add_prefix_space */
            tmp = malloc(n + 1);
            if (!tmp) return lmp_fail(e->d, LMP_ERR_NOMEM, "%s: out of memory", e->t->name);
            tmp[0] = ' ';
            memcpy(tmp + 1, s, n);
            s = tmp;
            n++;
        }
        if (st->f2)
            LMP_FORWARD(split_regex(e, stage, TOK_RE_GPT2, s, n));
        else
            LMP_FORWARD(run_pre(e, stage + 1, s, n));
        break;
    default:
        rc = lmp_fail(e->d, LMP_ERR_INTERNAL, "%s: unknown pre-tokenizer stage", e->t->name);
    }
out:
    free(tmp);
    return rc;
}

/* ---- added tokens, normalizers -------------------------------------------- */

static int is_ws(const uint8_t *s, size_t n, size_t i, size_t *len)
{
    return class_at(s, n, i, len) == LMP_UC_SPACE;
}

/* Next added token of `set` at or after `from` (leftmost, then longest).
 * Returns its index or -1; [*ms, *me) is the span it covers after lstrip /
 * rstrip (never reaching back before `floor`). */
static int find_added(const lmp_tok *t, int set, const uint8_t *s, size_t n, size_t from,
                      size_t floor, size_t *ms, size_t *me)
{
    const uint8_t *first = t->added_first[set];
    for (size_t i = from; i < n; i++) {
        if (!first[s[i]]) continue;
        for (int k = 0; k < t->n_added; k++) {
            const tok_added *a = &t->added[k];
            if ((uint8_t)a->s[0] != s[i] || ((a->normalized && t->n_norm > 0) != set)) continue;
            if (a->len > n - i || memcmp(a->s, s + i, a->len)) continue;
            size_t st = i, en = i + a->len, l;
            if (a->lstrip) {
                size_t p = st;
                while (p > floor) { /* step back one character at a time */
                    size_t q = p - 1;
                    while (q > floor && (s[q] & 0xC0) == 0x80) q--;
                    if (!is_ws(s, n, q, &l)) break;
                    p = q;
                }
                st = p;
            }
            if (a->rstrip)
                while (en < n && is_ws(s, n, en, &l)) en += l;
            *ms = st;
            *me = en;
            return k;
        }
    }
    return -1;
}

static lmp_status encode_normalized(enc *e, const uint8_t *s, size_t n);

/* Split s by the added tokens of `set`; pieces between go to `next`. */
static lmp_status split_added(enc *e, int set, const uint8_t *s, size_t n,
                              lmp_status (*next)(enc *, const uint8_t *, size_t))
{
    lmp_status rc = LMP_OK;
    size_t pos = 0, ms, me;
    int k;
    while (pos < n && (k = find_added(e->t, set, s, n, pos, pos, &ms, &me)) >= 0) {
        if (ms > pos) LMP_FORWARD(next(e, s + pos, ms - pos));
        LMP_FORWARD(push_id(e, e->t->added[k].id));
        pos = me;
    }
    if (pos < n) LMP_FORWARD(next(e, s + pos, n - pos));
out:
    return rc;
}

static lmp_status pre_entry(enc *e, const uint8_t *s, size_t n) { return run_pre(e, 0, s, n); }

static lmp_status encode_normalized(enc *e, const uint8_t *s, size_t n)
{
    lmp_status rc = LMP_OK;
    lmp_tok *t = e->t;
    lmp_diag *d = e->d;
    uint8_t *cur = NULL, *nb = NULL;
    size_t cn = n;
    if (t->n_norm == 0) return run_pre(e, 0, s, n);
    cur = malloc(n ? n : 1);
    LMP_FAIL_IF(!cur, LMP_ERR_NOMEM, "%s: out of memory", t->name);
    memcpy(cur, s, n);
    for (int k = 0; k < t->n_norm; k++) {
        const tok_stage *st = &t->norm[k];
        if (st->kind == NORM_PREPEND) {
            if (cn == 0) continue; /* Prepend leaves an empty string alone */
            nb = malloc(cn + st->alen);
            LMP_FAIL_IF(!nb, LMP_ERR_NOMEM, "%s: out of memory", t->name);
            memcpy(nb, st->a, st->alen);
            memcpy(nb + st->alen, cur, cn);
            cn += st->alen;
        } else { /* NORM_REPLACE: every non-overlapping occurrence, left to right */
            size_t cnt = 0;
            for (size_t i = 0; i + st->alen <= cn;)
                if (!memcmp(cur + i, st->a, st->alen))
                    cnt++, i += st->alen;
                else
                    i++;
            size_t nl = cn - cnt * st->alen + cnt * st->blen;
            nb = malloc(nl ? nl : 1);
            LMP_FAIL_IF(!nb, LMP_ERR_NOMEM, "%s: out of memory", t->name);
            size_t o = 0;
            for (size_t i = 0; i < cn;) {
                if (i + st->alen <= cn && !memcmp(cur + i, st->a, st->alen)) {
                    memcpy(nb + o, st->b, st->blen);
                    o += st->blen;
                    i += st->alen;
                } else {
                    nb[o++] = cur[i++];
                }
            }
            cn = nl;
        }
        free(cur);
        cur = nb;
        nb = NULL;
    }
    LMP_FORWARD(split_added(e, 1, cur, cn, pre_entry));
out:
    free(cur);
    free(nb);
    return rc;
}

lmp_status lmp_tok_encode(lmp_tok *t, const char *text, size_t len, int add_bos, int **ids,
                          size_t *n, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    enc e = {.t = t, .d = d};
    uint8_t *clean = NULL;
    const uint8_t *s = (const uint8_t *)text;
    *ids = NULL;
    *n = 0;
    LMP_FAIL_IF(!text && len, LMP_ERR_ARG, "%s: no text given", t->name);
    /* invalid UTF-8 -> U+FFFD per maximal subpart */
    size_t i = 0;
    while (i < len && s[i] < 0x80) i++;
    for (; i < len;) {
        uint32_t cp;
        int bad;
        size_t l = lmp_utf8_next(s + i, len - i, &cp, &bad);
        if (bad) break;
        i += l;
    }
    if (i < len) {
        size_t o = 0;
        LMP_FAIL_IF(len > SIZE_MAX / 3, LMP_ERR_NOMEM, "%s: input too large", t->name);
        clean = malloc(len * 3);
        LMP_FAIL_IF(!clean, LMP_ERR_NOMEM, "%s: out of memory", t->name);
        for (size_t k = 0; k < len;) {
            uint32_t cp;
            int bad;
            size_t l = lmp_utf8_next(s + k, len - k, &cp, &bad);
            if (bad)
                o += lmp_utf8_put(0xFFFD, clean + o);
            else
                memcpy(clean + o, s + k, l), o += l;
            k += l;
        }
        s = clean;
        len = o;
    }
    if (add_bos) {
        LMP_FAIL_IF(t->bos_id < 0, LMP_ERR_UNSUPPORTED, "%s: the tokenizer defines no BOS token",
                    t->name);
        LMP_FORWARD(push_id(&e, t->bos_id));
    }
    LMP_FORWARD(split_added(&e, 0, s, len, encode_normalized));
    *ids = (int *)e.ids;
    *n = e.n;
    e.ids = NULL;
out:
    free(e.ids);
    free(e.sy);
    free(e.heap);
    free(clean);
    return rc;
}
