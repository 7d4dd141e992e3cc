/* Token sampler: repeat penalty, temperature, top-k, top-p, min-p, seeded
 * draw.
 *
 * Order (as Hugging Face transformers' generate): repeat penalty on the raw
 * logits, then temperature, top-k, top-p, min-p, renormalize, draw.
 * - temperature 0: greedy argmax (after the repeat penalty; ties -> lowest id).
 * - repeat penalty (llama.cpp semantics): every distinct token among the
 *   last repeat_last_n accepted tokens gets logit > 0 ? logit / penalty
 *   : logit * penalty. repeat_last_n 0 disables it, -1 means all history.
 * - top_k 0 = off; top_p 1 = off (keeps the smallest set of most likely
 *   tokens whose probability reaches top_p); min_p 0 = off (keeps tokens with
 *   p >= min_p * p_max).
 * - The draw uses xoshiro256** seeded by splitmix64(seed): the same seed and
 *   the same logits give the same tokens on every machine.
 */
#ifndef LMP_SAMPLE_H
#define LMP_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct lmp_sample_params {
    float temperature;    /* default 0.8; 0 = greedy */
    int top_k;            /* default 40; 0 = off */
    float top_p;          /* default 0.95; 1 = off */
    float min_p;          /* default 0.05; 0 = off */
    float repeat_penalty; /* default 1.0 (off) */
    int repeat_last_n;    /* default 64; 0 = off, -1 = whole history */
    uint64_t seed;        /* default 0 */
} lmp_sample_params;

void lmp_sample_defaults(lmp_sample_params *p);

typedef struct lmp_sampler lmp_sampler;

/* Validates the parameters (LMP_ERR_ARG naming the bad one). */
lmp_status lmp_sampler_create(lmp_sampler **out, const lmp_sample_params *p, int n_vocab,
                              lmp_diag *d);
void lmp_sampler_close(lmp_sampler *s); /* NULL: no-op */

/* Record a token of the context (prompt tokens and every generated token)
 * for the repeat penalty. */
void lmp_sampler_accept(lmp_sampler *s, int token);

/* Choose the next token from logits[n_vocab] (not modified). */
int lmp_sampler_sample(lmp_sampler *s, const float *logits);

/* The distribution the next draw would use: probs[n_vocab], zero for every
 * filtered token (for tests and diagnostics). Greedy: one-hot. */
void lmp_sampler_probs(lmp_sampler *s, const float *logits, float *probs);

#endif
