/* Hugging Face config.json for the Llama family, parsed and validated.
 *
 * Accepted: model_type "llama" (LlamaForCausalLM), and architectures that
 * are the same network under another name ("mistral" with no sliding window
 * in effect). RoPE: the default (unscaled) one and Llama 3.x's "llama3"
 * frequency scaling (rope_scaling, or rope_parameters in transformers 5).
 * Anything else, or a rope type / feature lmpack does not implement, is
 * LMP_ERR_UNSUPPORTED naming the field.
 */
#ifndef LMP_CONFIG_H
#define LMP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "formats/safetensors.h"

#define LMP_MAX_EOS 8

/* RoPE frequency variants (rope_scaling.rope_type). */
typedef enum lmp_rope_type {
    LMP_ROPE_DEFAULT = 0, /* inv_freq_i = theta^(-2i/d) */
    LMP_ROPE_LLAMA3 = 1   /* Llama 3.1+: low frequencies divided by factor, smooth ramp */
} lmp_rope_type;

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
    /* RoPE scaling; all zero for LMP_ROPE_DEFAULT. For LMP_ROPE_LLAMA3 every
     * field is set: factor >= 1, 0 < low_freq_factor < high_freq_factor,
     * orig_max_pos >= 1 (the values as read from JSON, in double). */
    lmp_rope_type rope_type;
    double rope_factor;           /* factor */
    double rope_low_freq_factor;  /* low_freq_factor */
    double rope_high_freq_factor; /* high_freq_factor */
    int rope_orig_max_pos;        /* original_max_position_embeddings */
} lmp_config;

/* Parse config.json text; `fname` for messages. */
lmp_status lmp_config_parse(lmp_config *c, const char *json, size_t len, const char *fname,
                            lmp_diag *d);
/* Read and parse a config.json file (or the config.json inside a folder). */
lmp_status lmp_config_load(lmp_config *c, const char *path, lmp_diag *d);
/* Serialize to a canonical config.json-compatible JSON (malloc'd, caller frees). */
char *lmp_config_to_json(const lmp_config *c);

/* The i-th RoPE inverse frequency, i in [0, head_dim/2), in double:
 * theta^(-2i/d) for the default RoPE; for llama3 the same then rescaled as
 * transformers' _compute_llama3_parameters (wavelength 2*pi/inv above
 * orig/low_freq_factor: inv/factor; below orig/high_freq_factor: inv;
 * between: (1-s)*inv/factor + s*inv, s = (orig/wavelength - low)/(high -
 * low)). Angle at position p = p * inv (attention scaling stays 1). */
double lmp_config_inv_freq(const lmp_config *c, int i);

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
