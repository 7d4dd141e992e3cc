/* A Llama-family model as the runtime sees it: the validated config plus
 * one lmp_mat view per weight matrix and float32 norm vectors.
 *
 * Loading is separate from running. Any loader (Hugging Face folder, .lmpk
 * container, streamed bundle) fills this struct and the forward pass
 * (runtime/forward.h) never asks where the bytes came from.
 *
 * Contract for a loader building an lmp_model by hand:
 *   1. zero the struct (lmp_model m = {0}), fill m.cfg with a config that
 *      passed lmp_config_parse's validation;
 *   2. m.layers = calloc(cfg.n_layers, sizeof *m.layers) (freed by
 *      lmp_model_close with free());
 *   3. per layer, set the seven lmp_mat views with HF's [rows=out, cols=in]
 *      orientation:  wq [n_heads*head_dim, hidden]  wk, wv [n_kv*head_dim,
 *      hidden]  wo [hidden, n_heads*head_dim]  wgate, wup [intermediate,
 *      hidden]  wdown [hidden, intermediate]; any lmp_mat kind the matmul
 *      supports (runtime/mat.h) may be used, mixed freely;
 *      attn_norm / ffn_norm: `hidden` floats each;
 *   4. embed [vocab, hidden] (read only through lmp_mat_get_row, so it may be
 *      quantized too), final_norm (`hidden` floats), lm_head [vocab, hidden]:
 *      when cfg.tied, lm_head is a copy of the embed view (same data);
 *   5. everything the views point at must stay valid until
 *      lmp_model_close: register it with the ownership hook: m.release is
 *      called once as m.release(m.owner) by lmp_model_close (free a buffer,
 *      unmap a file, close a container...). Several resources: make owner a
 *      struct of your own and free them all in release.
 *   6. lmp_model_check(&m, d) verifies the shapes against cfg; the forward
 *      pass assumes it passed.
 * Views and norms are read-only for the forward pass; one model can serve
 * several lmp_state objects (threads) at once.
 */
#ifndef LMP_MODEL_H
#define LMP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "formats/config.h"
#include "runtime/mat.h"

typedef struct lmp_layer {
    lmp_mat wq, wk, wv, wo;   /* attention projections */
    lmp_mat wgate, wup, wdown; /* SwiGLU MLP */
    const float *attn_norm;   /* input_layernorm.weight, hidden floats */
    const float *ffn_norm;    /* post_attention_layernorm.weight, hidden floats */
} lmp_layer;

typedef struct lmp_model {
    lmp_config cfg;
    lmp_layer *layers;        /* cfg.n_layers entries, malloc'd, owned */
    lmp_mat embed;            /* [vocab, hidden], row lookup */
    const float *final_norm;  /* model.norm.weight, hidden floats */
    lmp_mat lm_head;          /* [vocab, hidden]; == embed when cfg.tied */
    /* Ownership hook: release(owner) frees whatever the views point into. */
    void (*release)(void *owner);
    void *owner;
    char source[64];          /* "hf-f32", "hf-bf16", "lmpk-q4", ... (info) */
    /* Optional layer streaming (bundle loader with stream_layers > 0): the
     * forward pass calls acquire_layer(owner, l, d) before it uses
     * layers[l]; the loader then makes layer l's views valid (reading and
     * verifying its chunk again if needed, possibly evicting another
     * layer, whose views become NULL). NULL for fully resident models.
     * A model with this hook must not be used by two states at once. */
    lmp_status (*acquire_layer)(void *owner, int layer, lmp_diag *d);
    /* Set by a loader whose layer views may not be bound yet (streaming):
     * some matrix of the model is int4 / int8. See lmp_model_quantized. */
    int quantized;
} lmp_model;

/* Where a bundle load spent its time (lmp_model_opts.stats; bundles only).
 * The *_cpu_ms phases are thread CPU time summed over the loading threads
 * (on a shared machine they do not include waiting for a core). */
typedef struct lmp_load_stats {
    int threads;               /* threads that loaded chunks */
    size_t chunks;             /* chunk files read and verified */
    uint64_t compressed_bytes, raw_bytes;
    double manifest_ms;        /* wall: manifest.json read + validated, config parsed */
    double chunks_ms;          /* wall: all resident chunks read, verified, decompressed */
    double read_cpu_ms;        /* open + map the compressed files */
    double hash_cpu_ms;        /* XXH3 of the compressed bytes (before decompressing) */
    double decompress_cpu_ms;  /* zstd + XXH3 of the raw bytes (one fused pass) */
    double parse_cpu_ms;       /* chunk header validation */
    double bind_ms;            /* wall: header vs manifest, views, shape checks */
    double total_ms;           /* wall: the whole load */
    double cpu_ms;             /* process CPU time during the load (all threads) */
} lmp_load_stats;

typedef struct lmp_model_opts {
    /* Loader choices; a zeroed struct (or NULL) means the defaults.
     * Reserved for now (e.g. keeping F16/BF16 weights unconverted, or a
     * bundle's streaming policy); must be 0. */
    unsigned flags;
    /* Bundles only (ignored by other loaders): keep at most this many
     * transformer layers' weights resident, re-reading the rest from their
     * compressed chunks when the forward pass needs them. 0 = all resident. */
    int stream_layers;
    /* Bundles: threads that read/verify/decompress chunks in parallel;
     * .lmpk: threads that copy the int4 matrices re-ordered for the AVX-512
     * kernel (lmp_bind_pack). 0 = online CPUs. The model is the same bytes
     * for any count. */
    int threads;
    /* Bundles: if not NULL, filled with the load's timings (zeroed first). */
    lmp_load_stats *stats;
} lmp_model_opts;

/* Open a model from `path` and fill *m. Dispatch on what path is:
 *   a folder holding config.json -> Hugging Face checkpoint (load_hf.c):
 *   safetensors (single or sharded), F32/F16/BF16, converted to float32;
 *   a .lmpk container -> lmp_model_load_lmpk; a folder holding
 *   manifest.json, or that manifest.json -> lmp_model_load_bundle.
 * opts may be NULL. On failure *m is zeroed (nothing to close) and d names
 * the file and problem. On success the caller owns m (lmp_model_close). */
lmp_status lmp_model_open(lmp_model *m, const char *path, const lmp_model_opts *opts,
                          lmp_diag *d);

/* The Hugging Face loader itself (what lmp_model_open calls for a folder). */
lmp_status lmp_model_load_hf(lmp_model *m, const char *dir, const lmp_model_opts *opts,
                             lmp_diag *d);

/* The .lmpk loader (what lmp_model_open calls for a container): every view
 * points into the container's mapping (Q4/Q8/F16/BF16/F32 as stored); the
 * model owns the open container until lmp_model_close. */
lmp_status lmp_model_load_lmpk(lmp_model *m, const char *path, const lmp_model_opts *opts,
                               lmp_diag *d);
/* The bundle loader (what lmp_model_open calls for a folder holding
 * manifest.json, or for the manifest.json path): manifest validated, every
 * chunk hashed (compressed before decompressing, raw after) and checked
 * against the manifest, views into the decompressed chunk images, which the
 * model owns until lmp_model_close. A damaged chunk is an error naming it. */
lmp_status lmp_model_load_bundle(lmp_model *m, const char *dir, const lmp_model_opts *opts,
                                 lmp_diag *d);
/* For a model loaded from a container: the bytes of a carried file
 * ("tokenizer.json", "tokenizer_config.json", ...), valid until
 * lmp_model_close; NULL (and *len 0) for other models or absent files. */
const uint8_t *lmp_model_lmpk_file(const lmp_model *m, const char *name, size_t *len);

/* Check every view's kind-independent shape and every pointer against
 * m->cfg (see the contract above). `what` names the source in messages. */
lmp_status lmp_model_check(const lmp_model *m, const char *what, lmp_diag *d);

/* 1 if some matrix of m is int4 / int8: m->quantized, or a Q4 / Q8 view
 * among the layers, the embedding and lm_head (models built in memory). */
int lmp_model_quantized(const lmp_model *m);

/* Free the layer array, call release(owner), zero *m. NULL / zeroed: no-op. */
void lmp_model_close(lmp_model *m);

/* Parameter count implied by the config (embedding counted once if tied). */
uint64_t lmp_model_params(const lmp_config *c);

#endif
