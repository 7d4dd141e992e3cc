/* See web/wasm_sample.h. */
#include "web/wasm_sample.h"

#include <math.h>
#include <stdlib.h>

#include "runtime/generate.h"

void lmpw_sampler_init(lmpw_sampler *s, float temperature, int top_k, float top_p, uint64_t seed)
{
    int *idx = s->idx, idx_n = s->idx_n;
    s->temperature = temperature;
    s->top_k = top_k;
    s->top_p = top_p;
    s->rng = seed ^ 0x9e3779b97f4a7c15ull;
    s->idx = idx;
    s->idx_n = idx_n;
}

/* splitmix64 -> uniform double in [0, 1). */
static double uniform(lmpw_sampler *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static const float *g_keys;
static int by_logit_desc(const void *a, const void *b)
{
    float x = g_keys[*(const int *)a], y = g_keys[*(const int *)b];
    if (x > y) return -1;
    if (x < y) return 1;
    return *(const int *)a - *(const int *)b; /* stable: lower id first */
}

int lmpw_sample(lmpw_sampler *s, float *logits, int vocab)
{
    if (s->temperature <= 0.0f) return lmp_argmax(logits, vocab);
    if (s->idx_n < vocab) {
        int *p = realloc(s->idx, (size_t)vocab * sizeof *p);
        if (!p) return lmp_argmax(logits, vocab);
        s->idx = p;
        s->idx_n = vocab;
    }
    int *idx = s->idx;
    for (int i = 0; i < vocab; i++) idx[i] = i;
    g_keys = logits;
    qsort(idx, (size_t)vocab, sizeof *idx, by_logit_desc);
    int k = (s->top_k > 0 && s->top_k < vocab) ? s->top_k : vocab;
    /* softmax over the k best, at the temperature */
    double mx = logits[idx[0]], sum = 0.0;
    for (int i = 0; i < k; i++) {
        double e = exp(((double)logits[idx[i]] - mx) / s->temperature);
        logits[idx[i]] = (float)e;
        sum += e;
    }
    /* nucleus: smallest prefix with mass >= top_p */
    if (s->top_p > 0.0f && s->top_p < 1.0f) {
        double acc = 0.0;
        int n = 0;
        while (n < k) {
            acc += logits[idx[n]] / sum;
            n++;
            if (acc >= s->top_p) break;
        }
        k = n;
        sum = 0.0;
        for (int i = 0; i < k; i++) sum += logits[idx[i]];
    }
    double r = uniform(s) * sum, acc = 0.0;
    for (int i = 0; i < k; i++) {
        acc += logits[idx[i]];
        if (r < acc) return idx[i];
    }
    return idx[k - 1];
}
