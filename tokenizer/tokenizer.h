/* Hugging Face tokenizer.json tokenizers (BPE family) in C.
 *
 * Supported (anything else is rejected at load with LMP_ERR_UNSUPPORTED
 * naming the component, never silently approximated; docs/TOKENIZER.md):
 *   model        BPE: vocab, merges ("a b" or ["a","b"]), unk_token,
 *                fuse_unk, byte_fallback, ignore_merges; dropout null/0
 *   normalizer   null, Sequence, Prepend, Replace (String pattern)
 *   pre_tokenizer null, Sequence, ByteLevel (add_prefix_space, use_regex:
 *                the GPT-2 regex, hand-written), Digits, Split (String
 *                pattern or the GPT-2 regex; Isolated/Removed behaviour)
 *   added_tokens matched in the raw text before the model (leftmost-longest),
 *                lstrip/rstrip; normalized ones matched after normalization
 *   decoder      ByteLevel; Sequence of Replace, ByteFallback, Fuse, Strip
 *   post_processor null, ByteLevel, TemplateProcessing "<bos> $A" (gives BOS)
 * Input text that is not valid UTF-8 is first made valid by replacing each
 * maximal invalid subpart with U+FFFD (Python's errors="replace"), since
 * the reference library only accepts valid strings.
 *
 * Thread safety: lmp_tok_encode updates a word cache inside the tokenizer,
 * so one lmp_tok must not be used by two threads at once; the other calls
 * only read it.
 */
#ifndef LMP_TOKENIZER_H
#define LMP_TOKENIZER_H

#include <stddef.h>

#include "common/status.h"

typedef struct lmp_tok lmp_tok;

/* Load from `path`: a folder holding tokenizer.json (and optionally
 * tokenizer_config.json), or a tokenizer.json file (its folder's
 * tokenizer_config.json is read if present). *out owned by the caller
 * (lmp_tok_close). */
lmp_status lmp_tok_load(lmp_tok **out, const char *path, lmp_diag *d);

/* Load from bytes: json[0..len) is tokenizer.json; config_json is the
 * NUL-terminated tokenizer_config.json or NULL; name is used in messages
 * (e.g. "model.lmpk:tokenizer.json"). Nothing is retained from the inputs. */
lmp_status lmp_tok_load_mem(lmp_tok **out, const char *json, size_t len,
                            const char *config_json, const char *name, lmp_diag *d);

void lmp_tok_close(lmp_tok *t); /* NULL: no-op */

/* text[0..len) -> malloc'd ids (caller frees *ids; *ids may be NULL when
 * *n == 0). Special tokens written in the text are matched (as
 * add_special_tokens=False in HF: no post-processing). add_bos != 0
 * prepends lmp_tok_bos_id() (LMP_ERR_UNSUPPORTED if there is none). */
lmp_status lmp_tok_encode(lmp_tok *t, const char *text, size_t len, int add_bos,
                          int **ids, size_t *n, lmp_diag *d);

/* ids -> malloc'd NUL-terminated valid UTF-8 text (*out_len bytes, caller
 * frees), as HF decode(ids, skip_special_tokens=False). An id without a
 * token is LMP_ERR_RANGE. */
lmp_status lmp_tok_decode(const lmp_tok *t, const int *ids, size_t n, char **out,
                          size_t *out_len, lmp_diag *d);

int lmp_tok_vocab_size(const lmp_tok *t);     /* largest id + 1 */
int lmp_tok_bos_id(const lmp_tok *t);         /* -1 if unknown */
/* 1 if the model's own config adds BOS to every input (tokenizer_config
 * add_bos_token, or a TemplateProcessing post_processor starting with a
 * special token). */
int lmp_tok_add_bos_default(const lmp_tok *t);
/* Id of a token string (added tokens first, then the model vocab), -1 if none. */
int lmp_tok_token_id(const lmp_tok *t, const char *s);
/* Token string of an id (vocab form, e.g. "Ġthe"), NULL if none. */
const char *lmp_tok_token_str(const lmp_tok *t, int id);
/* 1 if id is an added token marked special. */
int lmp_tok_is_special(const lmp_tok *t, int id);

/* Chat prompt for one user turn with the generation prompt, as the model's
 * chat_template renders it. Only ChatML templates are recognised (template
 * contains "<|im_start|>"): "<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n".
 * No template: LMP_ERR_UNSUPPORTED "... has no chat template"; another
 * template: LMP_ERR_UNSUPPORTED "chat template not supported". *out malloc'd. */
lmp_status lmp_tok_chat_format(const lmp_tok *t, const char *user_text, char **out,
                               lmp_diag *d);

/* Incremental decoder for streaming generation. push() returns the text that
 * became final with this token (only complete UTF-8 characters: bytes of a
 * character split over several tokens are held back until it is complete);
 * finish() returns what is left (an unfinished character becomes U+FFFD).
 * Returned pointers stay valid until the next call on the stream.
 * The concatenated output equals lmp_tok_decode of all pushed ids, except
 * that invalid UTF-8 is replaced per maximal subpart (HF's ByteFallback
 * decoder replaces every byte of an invalid run). */
typedef struct lmp_tok_stream lmp_tok_stream;
lmp_status lmp_tok_stream_open(lmp_tok_stream **out, const lmp_tok *t, lmp_diag *d);
lmp_status lmp_tok_stream_push(lmp_tok_stream *s, int id, const char **text, size_t *len,
                               lmp_diag *d);
lmp_status lmp_tok_stream_finish(lmp_tok_stream *s, const char **text, size_t *len,
                                 lmp_diag *d);
void lmp_tok_stream_close(lmp_tok_stream *s); /* NULL: no-op */

/* The one place that knows where a MODEL's tokenizer files are: a folder
 * with tokenizer.json (a model folder or a tokenizer-only folder), a
 * tokenizer.json path, a bundle folder (files checked against the manifest)
 * or a .lmpk container (the tokenizer files it carries). */
lmp_status lmp_tok_open_model(lmp_tok **out, const char *model, lmp_diag *d);

#endif
