/* The Llama forward pass over an lmp_model, with a float32 or binary16 KV
 * cache (lmp_kv_type).
 *
 * Math (Hugging Face LlamaForCausalLM, eager attention): embedding lookup;
 * per layer x += o_proj(attn(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1)))
 * with n1 = rmsnorm(x) * attn_norm, then x += down(silu(gate(n2)) * up(n2))
 * with n2 = rmsnorm(x) * ffn_norm; final rmsnorm; lm_head. RoPE uses the
 * rotate-half layout (pairs (i, i + head_dim/2), inv_freq theta^(-2i/d)
 * in double); GQA maps head h to KV head h / (n_heads / n_kv_heads);
 * causal softmax with scale 1/sqrt(head_dim).
 *
 * Determinism: results are bit-identical for any thread count, and a
 * prompt fed in one call or in pieces (prefill k then decode one by one)
 * gives the same bits, because every matmul element and every attention
 * output has a summation order that depends only on the shapes and the
 * position (see runtime/mat.c).
 */
#ifndef LMP_FORWARD_H
#define LMP_FORWARD_H

#include "common/pool.h"
#include "common/status.h"
#include "runtime/model.h"

typedef struct lmp_state lmp_state;

/* Debug hook: called during lmp_forward with index l in [0, n_layers]:
 *   0            embedding output,
 *   1..L-1       residual stream after layer l,
 *   L            output of the final RMSNorm (transformers' convention for
 *                the last element of output_hidden_states),
 * with x = [n][hidden] for the positions pos .. pos+n-1 of this piece
 * (a long prompt is processed in pieces, so the hook may fire several
 * times per index within one lmp_forward call). */
typedef void (*lmp_hidden_hook)(void *ctx, int index, int pos, int n, const float *x);

/* Element type of the KV cache. F16 (IEEE binary16) halves the cache and
 * the bytes the attention reads per token: K and V are rounded to binary16
 * (nearest, ties to even) when stored and widened exactly when read; that
 * rounding is the only difference from F32 (every path, thread count and
 * prompt split still gives the same bits). AUTO: F16 when the model has
 * quantized (int4 / int8) layer matrices, F32 for a float model (the
 * reference runtime, held to transformers' float32 numbers). */
typedef enum lmp_kv_type { LMP_KV_AUTO = 0, LMP_KV_F32 = 1, LMP_KV_F16 = 2 } lmp_kv_type;

/* "auto", "f32", "f16", and back (0, or -1 for another name). */
const char *lmp_kv_type_name(lmp_kv_type t);
int lmp_kv_type_parse(const char *name, lmp_kv_type *out);

/* Create a state for m with room for `ctx` positions (1 <= ctx <=
 * max_position_embeddings; 0 means max_position_embeddings) and a KV cache
 * of type kv. pool may be NULL (one thread); it is borrowed, not owned, and
 * must outlive the state. m is borrowed too. */
lmp_status lmp_state_create_kv(lmp_state **out, const lmp_model *m, int ctx, lmp_kv_type kv,
                               lmp_pool *pool, lmp_diag *d);
/* lmp_state_create_kv with LMP_KV_AUTO. */
lmp_status lmp_state_create(lmp_state **out, const lmp_model *m, int ctx, lmp_pool *pool,
                            lmp_diag *d);
void lmp_state_close(lmp_state *s); /* NULL: no-op */

/* The KV cache type in use (F32 or F16; AUTO resolved). */
lmp_kv_type lmp_state_kv(const lmp_state *s);

int lmp_state_ctx(const lmp_state *s);
const lmp_model *lmp_state_model(const lmp_state *s);
/* Positions [0, n) currently held by the KV cache. */
int lmp_state_filled(const lmp_state *s);
void lmp_state_set_hook(lmp_state *s, lmp_hidden_hook fn, void *ctx);

enum {
    LMP_LOGITS_LAST = 0, /* logits_out = [vocab] for the last token */
    LMP_LOGITS_ALL = 1   /* logits_out = [n][vocab], one row per token */
};

/* Run n tokens `ids` at positions pos .. pos+n-1 (n > 1: prefill, one
 * matrix-matrix pass; n == 1: decode). Requires 0 <= pos <=
 * lmp_state_filled(s) (pos < filled rewinds: later cache entries are
 * overwritten) and pos + n <= ctx; every id in [0, vocab).
 * logits_out may be NULL (no lm_head work, e.g. for a prompt whose logits
 * are not wanted). Errors: LMP_ERR_RANGE (id or context), LMP_ERR_ARG. */
lmp_status lmp_forward(lmp_state *s, const int *ids, int n, int pos, float *logits_out,
                       int logits_mode, lmp_diag *d);

/* Execution strategy (same bits either way): with `fused` on (default),
 * lmp_forward runs each piece of tokens as one gang run of the pool (phases
 * separated by barriers, elementwise ops done by the thread that computed
 * the rows) instead of ~5 pool runs per layer. It falls back to the
 * pool-run path when a hidden-state hook is set, for streamed models
 * (acquire_layer) and when q/k/v or gate/up cannot share one prepared
 * input, or when LMP_FUSED=0 was in the environment at lmp_state_create
 * (for timing both paths with one binary). Test hook: returns the previous
 * setting; process-wide, call only while no forward pass is running. */
int lmp_forward_set_fused(int on);

#endif
