/* Sampler (see sample.h for the contract). */
#include "runtime/sample.h"

#include "common/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float logit;
    int id;
} cand;

struct lmp_sampler {
    lmp_sample_params p;
    int n_vocab;
    uint64_t rng[4];
    int *hist;
    size_t hist_n, hist_cap;
    float *work;     /* [n_vocab] penalized logits */
    uint8_t *seen;   /* [n_vocab] penalty marks */
    cand *cands;     /* [n_vocab] */
    double *prob;    /* [n_vocab] */
};

void lmp_sample_defaults(lmp_sample_params *p)
{
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0;
}

lmp_status lmp_sampler_create(lmp_sampler **out, const lmp_sample_params *p, int n_vocab,
                              lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_sampler *s = NULL;
    *out = NULL;
    LMP_FAIL_IF(n_vocab <= 0, LMP_ERR_ARG, "sampler: vocabulary size %d", n_vocab);
    LMP_FAIL_IF(!(p->temperature >= 0) || !isfinite(p->temperature), LMP_ERR_ARG,
                "sampler: temperature %g must be >= 0", p->temperature);
    LMP_FAIL_IF(p->top_k < 0, LMP_ERR_ARG, "sampler: top-k %d must be >= 0", p->top_k);
    LMP_FAIL_IF(!(p->top_p > 0 && p->top_p <= 1), LMP_ERR_ARG,
                "sampler: top-p %g must be in (0, 1]", p->top_p);
    LMP_FAIL_IF(!(p->min_p >= 0 && p->min_p <= 1), LMP_ERR_ARG,
                "sampler: min-p %g must be in [0, 1]", p->min_p);
    LMP_FAIL_IF(!(p->repeat_penalty > 0) || !isfinite(p->repeat_penalty), LMP_ERR_ARG,
                "sampler: repeat penalty %g must be > 0", p->repeat_penalty);
    LMP_FAIL_IF(p->repeat_last_n < -1, LMP_ERR_ARG,
                "sampler: repeat-last-n %d must be >= -1", p->repeat_last_n);
    s = calloc(1, sizeof *s);
    LMP_FAIL_IF(!s, LMP_ERR_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->work = malloc((size_t)n_vocab * sizeof *s->work);
    s->seen = calloc((size_t)n_vocab, 1);
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
    LMP_FAIL_IF(!s->work || !s->seen || !s->cands || !s->prob, LMP_ERR_NOMEM,
                "sampler: out of memory for %d tokens", n_vocab);
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = lmp_splitmix64(&x);
    *out = s;
    s = NULL;
out:
    lmp_sampler_close(s);
    return rc;
}

void lmp_sampler_close(lmp_sampler *s)
{
    if (!s) return;
    free(s->hist);
    free(s->work);
    free(s->seen);
    free(s->cands);
    free(s->prob);
    free(s);
}

void lmp_sampler_accept(lmp_sampler *s, int token)
{
    if (s->hist_n == s->hist_cap) {
        size_t c = s->hist_cap ? s->hist_cap * 2 : 256;
        int *q = realloc(s->hist, c * sizeof *q);
        if (!q) { /* keep the most recent half: the penalty only looks back */
            memmove(s->hist, s->hist + s->hist_n / 2, (s->hist_n - s->hist_n / 2) * sizeof *q);
            s->hist_n -= s->hist_n / 2;
        } else {
            s->hist = q;
            s->hist_cap = c;
        }
    }
    if (s->hist_n < s->hist_cap) s->hist[s->hist_n++] = token;
}

static void penalize(lmp_sampler *s, const float *logits)
{
    memcpy(s->work, logits, (size_t)s->n_vocab * sizeof *s->work);
    float pen = s->p.repeat_penalty;
    if (pen == 1.0f || s->p.repeat_last_n == 0) return;
    size_t n = s->p.repeat_last_n < 0 || (size_t)s->p.repeat_last_n > s->hist_n
                   ? s->hist_n
                   : (size_t)s->p.repeat_last_n;
    const int *h = s->hist + s->hist_n - n;
    for (size_t i = 0; i < n; i++) {
        int t = h[i];
        if (t < 0 || t >= s->n_vocab || s->seen[t]) continue;
        s->seen[t] = 1;
        s->work[t] = s->work[t] > 0 ? s->work[t] / pen : s->work[t] * pen;
    }
    for (size_t i = 0; i < n; i++)
        if (h[i] >= 0 && h[i] < s->n_vocab) s->seen[h[i]] = 0;
}

static int argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return a->id - b->id;
}

/* Heap with the worst candidate at the root. */
static void sift_worst(cand *c, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && cand_cmp(&c[l], &c[w]) > 0) w = l;
        if (r < n && cand_cmp(&c[r], &c[w]) > 0) w = r;
        if (w == i) return;
        cand t = c[i];
        c[i] = c[w];
        c[w] = t;
        i = w;
    }
}

/* Move the k best candidates (cand_cmp order) to c[0..k) in O(n log k):
 * a heap whose root is the worst of the kept ones. Returns k. */
static int select_top(cand *c, int n, int k)
{
    for (int i = k / 2 - 1; i >= 0; i--) sift_worst(c, k, i);
    for (int i = k; i < n; i++) {
        if (cand_cmp(&c[i], &c[0]) < 0) { /* better than the worst kept */
            c[0] = c[i];
            sift_worst(c, k, 0);
        }
    }
    return k;
}

/* Fill cands[0..nc) with the kept tokens (the most likely first; sorted by
 * decreasing probability when top-k or top-p needs it) and prob[i] their
 * normalized probabilities. Returns nc. */
static int filter(lmp_sampler *s, const float *logits)
{
    penalize(s, logits);
    int n = s->n_vocab, nc = 0;
    float inv_t = 1.0f / s->p.temperature;
    for (int i = 0; i < n; i++) {
        float l = s->work[i] * inv_t;
        if (l == -INFINITY || isnan(l)) continue; /* masked tokens never win */
        s->cands[nc++] = (cand){l, i};
    }
    if (nc == 0) { /* everything masked: fall back to greedy on the raw values */
        s->cands[0] = (cand){0, argmax(s->work, n)};
        s->prob[0] = 1;
        return 1;
    }
    double mx, sum = 0;
    if (s->p.top_k > 0 || s->p.top_p < 1.0f) {
        if (s->p.top_k > 0 && s->p.top_k < nc) nc = select_top(s->cands, nc, s->p.top_k);
        /* top-p over a large set: the normalizer needs every candidate, but
         * only the head has to be sorted; grow the head until it reaches p */
        int head = s->p.top_k > 0 || nc <= 256 ? nc : 256;
        mx = -INFINITY;
        for (int i = 0; i < nc; i++)
            if (s->cands[i].logit > mx) mx = s->cands[i].logit;
        for (int i = 0; i < nc; i++) sum += exp((double)s->cands[i].logit - mx);
        for (;;) {
            if (head < nc) select_top(s->cands, nc, head);
            qsort(s->cands, (size_t)head, sizeof *s->cands, cand_cmp);
            double cum = 0;
            int keep = 0;
            for (int i = 0; i < head; i++) {
                s->prob[i] = exp((double)s->cands[i].logit - mx) / sum;
                cum += s->prob[i];
                if (s->p.top_p < 1.0f && cum >= s->p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            if (keep) {
                nc = keep;
                break;
            }
            if (head == nc) break; /* rounding: keep them all */
            head = head < nc / 4 ? head * 4 : nc;
        }
    } else { /* no order needed beyond the best first (min-p uses it) */
        int b = 0;
        for (int i = 1; i < nc; i++)
            if (cand_cmp(&s->cands[i], &s->cands[b]) < 0) b = i;
        cand tmp = s->cands[0];
        s->cands[0] = s->cands[b];
        s->cands[b] = tmp;
        mx = s->cands[0].logit;
        for (int i = 0; i < nc; i++) sum += s->prob[i] = exp((double)s->cands[i].logit - mx);
        for (int i = 0; i < nc; i++) s->prob[i] /= sum;
    }
    if (s->p.min_p > 0) { /* prob[0] is the largest; keep the order of the rest */
        double thr = s->p.min_p * s->prob[0];
        int keep = 1;
        for (int i = 1; i < nc; i++)
            if (s->prob[i] >= thr) {
                s->cands[keep] = s->cands[i];
                s->prob[keep++] = s->prob[i];
            }
        nc = keep;
    }
    sum = 0;
    for (int i = 0; i < nc; i++) sum += s->prob[i];
    for (int i = 0; i < nc; i++) s->prob[i] /= sum;
    return nc;
}

int lmp_sampler_sample(lmp_sampler *s, const float *logits)
{
    if (s->p.temperature == 0) {
        penalize(s, logits);
        return argmax(s->work, s->n_vocab);
    }
    int nc = filter(s, logits);
    double u = (double)(lmp_xoshiro256ss(s->rng) >> 11) * 0x1.0p-53, cum = 0;
    for (int i = 0; i < nc; i++) {
        cum += s->prob[i];
        if (u < cum) return s->cands[i].id;
    }
    return s->cands[nc - 1].id; /* rounding: cum ended just below u */
}

void lmp_sampler_probs(lmp_sampler *s, const float *logits, float *probs)
{
    memset(probs, 0, (size_t)s->n_vocab * sizeof *probs);
    if (s->p.temperature == 0) {
        penalize(s, logits);
        probs[argmax(s->work, s->n_vocab)] = 1;
        return;
    }
    int nc = filter(s, logits);
    for (int i = 0; i < nc; i++) probs[s->cands[i].id] = (float)s->prob[i];
}
