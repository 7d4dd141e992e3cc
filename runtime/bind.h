/* Attach one named tensor to an lmp_model being built by hand (the loader
 * contract in runtime/model.h), by its Hugging Face name:
 *   model.embed_tokens.weight, model.norm.weight, lm_head.weight,
 *   model.layers.N.self_attn.{q,k,v,o}_proj.weight,
 *   model.layers.N.mlp.{gate,up,down}_proj.weight,
 *   model.layers.N.{input,post_attention}_layernorm.weight.
 * The one name -> slot mapping of the project: the .lmpk loader
 * (runtime/load_lmpk.c), the bundle loader (runtime/load_bundle.c) and the
 * streamed browser bundle loader (web/wasm_api.c) all bind through it.
 *
 * Contract: m->cfg is filled and m->layers allocated (cfg.n_layers entries,
 * zeroed) before the first call. The data is borrowed: it must stay valid
 * (and, for f32 norms, 4-byte aligned) until lmp_model_close. Matrices keep
 * their storage kind (f32/f16/bf16 plain rows, q4/q8 grouped rows as
 * quantize/q4.h defines); norms must be f32 with `hidden` elements. The
 * shape is checked against the config; a name bound twice, an unknown name
 * or a layer index out of range is LMP_ERR_MODEL naming `what` and the
 * tensor. When cfg.tied, binding the embedding also sets lm_head; a
 * separate lm_head.weight is then refused.
 * lmp_model_check(m) afterwards reports anything still missing.
 */
#ifndef LMP_BIND_H
#define LMP_BIND_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "runtime/model.h"

typedef struct lmp_bind_tensor {
    const char *name;
    int kind;               /* lmp_mat_kind */
    int ndim;               /* 1 (norms) or 2 (matrices) */
    int64_t shape[2];       /* HF shape [rows, cols] or [n] */
    int group, scheme;      /* q4/q8 only, else 0 */
    const void *data;
    uint64_t size;          /* bytes at data */
    int layout;             /* q4: code order at data (quantize/q4.h
                               LMP_Q4_LAYOUT_*); 0 = as stored in files */
} lmp_bind_tensor;

lmp_status lmp_model_bind(lmp_model *m, const lmp_bind_tensor *t, const char *what,
                          lmp_diag *d);

/* 1 when a kernel that reads a re-ordered layout will read t: a 2-D int4
 * tensor stored as in files whose storage lmp_q4_pack_wanted names (a
 * loader then needs its own writable copy of t for lmp_bind_pack). */
int lmp_bind_pack_wanted(const lmp_bind_tensor *t);
/* For a loader that owns writable memory for t's bytes: when
 * lmp_bind_pack_wanted(t), write its bytes to dst (t->size bytes; dst ==
 * t->data re-orders in place, otherwise no overlap): into LMP_Q4_LAYOUT_R16
 * when lmp_q4_r16_wanted (AVX-512, rows a multiple of 16), LMP_Q4_LAYOUT_R8
 * when lmp_q4_r8_wanted (AVX2 only, rows a multiple of 8), else
 * LMP_Q4_LAYOUT_X16 (AVX-512); point t at dst with that layout and return
 * 1. Otherwise (also when the R8 packer could not get its scratch) change
 * nothing and return 0 (the caller uses or copies the bytes as they are).
 * X16 gives the bits of the stored order; R16 and R8 their own kernels'
 * (q4.h), the same for every loader. */
int lmp_bind_pack(lmp_bind_tensor *t, void *dst);

/* The decoder layer a tensor name belongs to: N for "model.layers.N.<rest>"
 * (N plain decimal), -1 for any other name (embedding, final norm,
 * lm_head, or not a layer name). The one parser of layer names that
 * lmp_model_bind and the bundle loader's per-layer streaming share. */
long lmp_bind_layer_of(const char *name);

#endif
