/* The generation loop (see generate.h). */
#include "runtime/generate.h"

#include "common/cpu.h"
#include "runtime/fwd_impl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double lmp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Scalar reference: the first index of the maximum; NaNs never win. */
int lmp_argmax_ref(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* The same index with AVX2 (runtime/fwd_avx2.c: vector max, then the first
 * position holding it); a 49152-entry vocabulary is ~1 % of a decode step
 * in the scalar loop. */
int lmp_argmax(const float *v, int n)
{
    if (n >= 16 && lmp_cpu_avx2()) return lmp_argmax_avx2(v, n);
    return lmp_argmax_ref(v, n);
}

int lmp_choose_greedy(void *ctx, float *logits, int vocab)
{
    (void)ctx;
    return lmp_argmax(logits, vocab);
}

lmp_status lmp_generate(lmp_state *s, const int *prompt, int n_prompt, const lmp_gen *g,
                        lmp_gen_stats *stats, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_gen_stats st = {.n_prompt = n_prompt};
    float *logits = NULL;
    int vocab = 0;
    LMP_FAIL_IF(!g || g->n_new < 0, LMP_ERR_ARG, "generate: invalid options");
    LMP_FAIL_IF(n_prompt < 1, LMP_ERR_ARG, "generate: the prompt is empty");
    vocab = lmp_state_model(s)->cfg.vocab;
    long long need = (long long)n_prompt + (g->n_new > 0 ? g->n_new - 1 : 0);
    LMP_FAIL_IF(need > lmp_state_ctx(s), LMP_ERR_RANGE,
                "prompt of %d tokens plus %d new tokens needs %lld positions; the context holds "
                "%d",
                n_prompt, g->n_new, need, lmp_state_ctx(s));
    logits = malloc((size_t)vocab * sizeof(float));
    LMP_FAIL_IF(!logits, LMP_ERR_NOMEM, "generate: out of memory for logits");
    lmp_chooser choose = g->choose ? g->choose : lmp_choose_greedy;
    double t0 = lmp_now_ms();
    if (g->prompt_logits) {
        LMP_FORWARD(lmp_forward(s, prompt, n_prompt, 0, g->prompt_logits, LMP_LOGITS_ALL, d));
        memcpy(logits, g->prompt_logits + (size_t)(n_prompt - 1) * vocab,
               (size_t)vocab * sizeof(float));
    } else {
        LMP_FORWARD(lmp_forward(s, prompt, n_prompt, 0, logits, LMP_LOGITS_LAST, d));
    }
    double t1 = lmp_now_ms();
    st.prefill_ms = t1 - t0;
    st.ttft_ms = st.prefill_ms;
    int pos = n_prompt, last = -1;
    for (int i = 0; i < g->n_new; i++) {
        if (i > 0) { /* feed the previous token back: one decode step */
            double a = lmp_now_ms();
            LMP_FORWARD(lmp_forward(s, &last, 1, pos, logits, LMP_LOGITS_LAST, d));
            st.decode_ms += lmp_now_ms() - a;
            st.n_decode++;
            pos++;
        }
        int tok = choose(g->choose_ctx, logits, vocab);
        LMP_FAIL_IF(tok < 0 || tok >= vocab, LMP_ERR_INTERNAL,
                    "generate: chooser returned %d, outside [0, %d)", tok, vocab);
        if (i == 0) st.ttft_ms = lmp_now_ms() - t0;
        if (g->out) g->out[i] = tok;
        st.n_generated++;
        last = tok;
        if (g->on_token && g->on_token(g->token_ctx, tok)) break;
    }
out:
    free(logits);
    if (stats) *stats = st;
    return rc;
}
