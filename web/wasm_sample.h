/* Next-token choice for the browser page: greedy at temperature 0, else
 * temperature + top-k + top-p sampling with a seeded generator.
 * Interim: the library has no sampler yet (h/tok owns sampling); when it
 * lands, this file becomes a call into it so native and browser sample the
 * same way. Greedy (what the tests compare) is lmp_argmax from the runtime. */
#ifndef LMP_WASM_SAMPLE_H
#define LMP_WASM_SAMPLE_H

#include <stdint.h>

typedef struct lmpw_sampler {
    float temperature; /* <= 0: greedy */
    int top_k;         /* <= 0: all */
    float top_p;       /* >= 1 or <= 0: all */
    uint64_t rng;
    int *idx;          /* scratch, vocab entries */
    int idx_n;
} lmpw_sampler;

void lmpw_sampler_init(lmpw_sampler *s, float temperature, int top_k, float top_p, uint64_t seed);
/* Choose from logits[vocab] (modified in place). Always returns [0, vocab). */
int lmpw_sample(lmpw_sampler *s, float *logits, int vocab);

#endif
