/* Internal layout of lmp_tok, shared by tok_load.c, tok_encode.c and
 * tok_decode.c. Not a public API. */
#ifndef LMP_TOK_INTERNAL_H
#define LMP_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

#define TOK_MAX_STAGES 16

/* string -> id (open addressing; keys are the id's token string). */
typedef struct tok_strmap {
    int32_t *slot; /* id or -1 */
    size_t mask;
} tok_strmap;

/* (left id, right id) -> (rank, merged id). */
typedef struct tok_merge {
    uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
    int32_t rank, id;
} tok_merge;

typedef struct tok_mergemap {
    tok_merge *slot;
    size_t mask;
} tok_mergemap;

/* Word cache: word bytes -> ids. */
typedef struct tok_cache_ent {
    uint64_t hash;
    uint32_t key_off, key_len, ids_off, n_ids; /* key_len 0: empty slot */
} tok_cache_ent;

typedef struct tok_cache {
    tok_cache_ent *ent;
    size_t mask, used;
    uint8_t *keys;
    size_t keys_len, keys_cap;
    int32_t *ids;
    size_t ids_len, ids_cap;
} tok_cache;

enum { NORM_PREPEND = 1, NORM_REPLACE };
enum { PRE_BYTELEVEL = 1, PRE_DIGITS, PRE_SPLIT_STR, PRE_SPLIT_REGEX };

/* Hand-written split regexes (see tok_regex_next). */
enum { TOK_RE_GPT2 = 0, TOK_RE_LLAMA3, TOK_RE_QWEN2 };
enum { DEC_BYTELEVEL = 1, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP };

typedef struct tok_stage {
    int kind;
    char *a; /* pattern / prepend / strip content (owned) */
    size_t alen;
    char *b; /* replacement (owned) */
    size_t blen;
    int f1, f2; /* flags: ByteLevel add_prefix_space/use_regex; Digits individual;
                   Split removed(1)/isolated(0) and regex (TOK_RE_*); Strip start/stop */
} tok_stage;

typedef struct tok_added {
    char *s;
    size_t len;
    int id;
    int special, lstrip, rstrip, normalized;
} tok_added;

struct lmp_tok {
    char *name;
    int n_ids;        /* largest id + 1 */
    char **vstr;      /* [n_ids] model vocab string or NULL (owned) */
    uint32_t *vlen;   /* [n_ids] */
    const char **id_str; /* [n_ids] token string for decoding (added tokens
                            first, then vocab) or NULL; points into vstr/added */
    uint32_t *id_len; /* [n_ids] */
    uint8_t *id_flags; /* [n_ids] 1 = added token, 2 = special */
    tok_strmap vocab;  /* model vocab */
    tok_mergemap merges;
    int byte_fallback, fuse_unk, ignore_merges, unk_id;
    int fallback_id[256]; /* id of "<0xXX>", -1 if absent */

    tok_stage norm[TOK_MAX_STAGES];
    int n_norm;
    tok_stage pre[TOK_MAX_STAGES];
    int n_pre;
    int byte_level;      /* a ByteLevel pre-tokenizer: BPE units are bytes */
    int byte_sym[256];   /* byte-level: id of the mapped character of byte b */
    tok_stage dec[TOK_MAX_STAGES];
    int n_dec;
    int has_decoder;

    tok_added *added; /* sorted by (first byte, length desc) */
    int n_added;
    uint8_t added_first[2][256]; /* [normalized?][first byte] has candidates */

    int bos_id, add_bos;
    int chat; /* 0 none, 1 ChatML, -1 unsupported template */

    tok_cache cache;
};

uint64_t tok_hash(const void *p, size_t n);
int tok_strmap_get(const lmp_tok *t, const char *s, size_t n);
const tok_merge *tok_merge_get(const tok_mergemap *m, int32_t a, int32_t b);

/* GPT-2 byte <-> unicode map. */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp); /* -1 if cp is not in the map */

/* End of the match of split regex `re` (TOK_RE_*) starting at i < n in the
 * valid UTF-8 s[0..n); the matches of successive calls cover the input.
 *  GPT2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *  LLAMA3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *  QWEN2:  the same with \p{N} instead of \p{N}{1,3} */
size_t tok_regex_next(int re, const uint8_t *s, size_t n, size_t i);

void tok_cache_free(tok_cache *c);

#endif
