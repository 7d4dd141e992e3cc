/* Token generation loop on top of lmp_forward: prefill the prompt in one
 * pass, then ask a "next token chooser" for each new token and feed it back
 * (decode, one token per forward). Greedy decoding, sampling, stop rules
 * and streaming text output all plug in through the two callbacks, so
 * programs (lmpack run, verify) share one loop.
 */
#ifndef LMP_GENERATE_H
#define LMP_GENERATE_H

#include "runtime/forward.h"

/* Pick the next token from the logits of the last position (vocab floats;
 * the chooser may modify them in place, e.g. temperature). Must return an
 * id in [0, vocab). */
typedef int (*lmp_chooser)(void *ctx, float *logits, int vocab);
/* Called with each new token as soon as it is chosen (streaming). Return
 * 0 to continue, nonzero to stop generating (EOS, stop string, ...). */
typedef int (*lmp_token_cb)(void *ctx, int token);

typedef struct lmp_gen {
    int n_new;                /* at most this many new tokens (>= 0) */
    lmp_chooser choose;       /* NULL: greedy (lmp_choose_greedy) */
    void *choose_ctx;
    lmp_token_cb on_token;    /* may be NULL */
    void *token_ctx;
    int *out;                 /* optional, room for n_new ids */
    float *prompt_logits;     /* optional, [n_prompt][vocab]: logits of
                                 every prompt position (else last only) */
} lmp_gen;

typedef struct lmp_gen_stats {
    int n_prompt;
    int n_generated;          /* tokens chosen */
    int n_decode;             /* single-token forward passes run */
    double prefill_ms;        /* prompt forward pass */
    double decode_ms;         /* all decode forward passes */
    double ttft_ms;           /* start -> first new token chosen (prefill if none) */
} lmp_gen_stats;

/* Index of the largest value; the first one on ties (as torch.argmax). */
int lmp_argmax(const float *v, int n);
/* The scalar reference of lmp_argmax (same result; NaNs never win, a NaN at
 * v[0] gives 0). */
int lmp_argmax_ref(const float *v, int n);
/* Greedy chooser (ctx unused). */
int lmp_choose_greedy(void *ctx, float *logits, int vocab);

/* Run the prompt at position 0 (the state's cache is reset), then generate.
 * stats may be NULL. The state must have room for n_prompt + n_new - 1
 * positions (the last new token is never fed back). */
lmp_status lmp_generate(lmp_state *s, const int *prompt, int n_prompt, const lmp_gen *g,
                        lmp_gen_stats *stats, lmp_diag *d);

/* Monotonic clock in milliseconds (for timing around the runtime). */
double lmp_now_ms(void);

#endif
