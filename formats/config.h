/* Hugging Face config.json for the Llama family, parsed and validated.
 *
 * Accepted: model_type "llama" (LlamaForCausalLM), and architectures that
 * are the same network under another name ("mistral" with no sliding window
 * in effect). Anything else, or a rope_scaling / feature lmpack does not
 * implement, is LMP_ERR_UNSUPPORTED naming the field.
 */
#ifndef LMP_CONFIG_H
#define LMP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "formats/safetensors.h"

#define LMP_MAX_EOS 8

typedef struct lmp_config {
    char model_type[32];
    int hidden;        /* hidden_size */
    int intermediate;  /* intermediate_size */
    int n_layers;      /* num_hidden_layers */
    int n_heads;       /* num_attention_heads */
    int n_kv_heads;    /* num_key_value_heads (default n_heads) */
    int head_dim;      /* explicit, or hidden / n_heads */
    int vocab;         /* vocab_size */
    int max_pos;       /* max_position_embeddings */
    float rms_eps;     /* rms_norm_eps */
    float rope_theta;  /* default 10000 */
    int tied;          /* tie_word_embeddings (default 0) */
    int bos;           /* bos_token_id, -1 if absent */
    int n_eos;
    int eos[LMP_MAX_EOS]; /* eos_token_id (int or list) */
    char torch_dtype[16]; /* "" if absent */
} lmp_config;

/* Parse config.json text; `fname` for messages. */
lmp_status lmp_config_parse(lmp_config *c, const char *json, size_t len, const char *fname,
                            lmp_diag *d);
/* Read and parse a config.json file (or the config.json inside a folder). */
lmp_status lmp_config_load(lmp_config *c, const char *path, lmp_diag *d);
/* Serialize to a canonical config.json-compatible JSON (malloc'd, caller frees). */
char *lmp_config_to_json(const lmp_config *c);

/* Names and shapes the config expects, in canonical order (embedding, then
 * layer by layer, final norm, lm_head unless tied). */
typedef struct lmp_expect {
    char name[96];
    int ndim;
    int64_t shape[2];
    int layer;   /* -1 for non-layer tensors */
} lmp_expect;
/* Returns the count; fills up to cap entries of out (out may be NULL). */
size_t lmp_config_expected(const lmp_config *c, lmp_expect *out, size_t cap);

/* Check a checkpoint against the config: every expected tensor present with
 * the exact shape, no lm_head.weight when tied, no unexpected tensors
 * (rotary inv_freq buffers tolerated). First problem in d. */
lmp_status lmp_config_check(const lmp_config *c, const lmp_st *st, lmp_diag *d);

#endif
