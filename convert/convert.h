/* Model folder or float container -> .lmpk container, in one streaming pass.
 *
 * The source is either a Hugging Face model folder (config.json +
 * safetensors, tokenizer files carried along) or an .lmpk container whose
 * 2-D tensors are f32/f16/bf16 (`lmpack quantize`); both go through the
 * same tensor-source abstraction, so `convert --dtype q4` and
 * `convert --dtype f32` + `quantize` give byte-identical files.
 *
 * Tensors are written in the config's canonical order (lmp_config_expected).
 * The tensors are cut into chunks of rows (~1 MB of f32), numbered in
 * output order; every thread claims the next chunk, converts / quantizes
 * it into a ring slot and, when no other thread is writing, appends the
 * finished chunks that are next in order. Every row's bytes depend only on
 * that row and chunks are written in order, so the output is identical for
 * any thread count. Input pages are dropped as soon as a chunk is written,
 * so peak memory stays a few MB
 * above the carried files, whatever the model size.
 *
 * Storage per tensor: 1-D (norms) always f32; embed_tokens and lm_head get
 * `embed`; every other 2-D weight gets `dtype`.
 */
#ifndef LMP_CONVERT_H
#define LMP_CONVERT_H

#include <stdint.h>

#include "common/status.h"
#include "quantize/q4.h"
#include "runtime/mat.h"

typedef void (*lmp_convert_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef struct lmp_convert_opts {
    lmp_mat_kind dtype;   /* F32, F16, BF16 or Q4 for the 2-D weights */
    int group;            /* q4/q8 group length (32, 64, 128) */
    int scheme;           /* LMP_Q4_SYM or LMP_Q4_ASYM for q4 weights */
    int embed;            /* lmp_mat_kind for embed_tokens / lm_head; -1: default */
    lmp_q4_method method; /* LMP_Q4_SEARCH, or LMP_Q4_MINMAX (--no-search) */
    int threads;          /* <= 0: all CPUs */
    lmp_convert_progress_fn progress; /* may be NULL; called after each chunk
                                       * written, from a worker thread */
    void *progress_ctx;
} lmp_convert_opts;

/* The defaults, defined in one place (convert.c): dtype q4, and the group,
 * scheme and embedding format docs/QUANT.md recommends. */
void lmp_convert_defaults(lmp_convert_opts *o);
/* The embedding kind `embed == -1` stands for with this dtype: the same
 * kind for float dtypes, the recommended one for q4. */
lmp_mat_kind lmp_convert_embed_kind(const lmp_convert_opts *o);

typedef struct lmp_convert_stats {
    uint64_t n_tensors;
    uint64_t in_bytes;      /* tensor bytes read */
    uint64_t out_bytes;     /* size of the written container */
    uint64_t weight_elems;  /* elements of the 2-D tensors */
    uint64_t weight_bytes;  /* their stored bytes */
} lmp_convert_stats;

/* in_path: model folder (or safetensors file beside a config.json) or an
 * .lmpk container. stats may be NULL. The output is written atomically. */
lmp_status lmp_convert(const char *in_path, const char *out_path, const lmp_convert_opts *o,
                       lmp_convert_stats *stats, lmp_diag *d);

/* Kind name "f32"/"f16"/"bf16"/"q4"/"q8" and back (-1 if unknown). */
const char *lmp_kind_name(int kind);
int lmp_kind_from_name(const char *s);

#endif
