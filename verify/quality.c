/* Quality evaluation: per-position metrics, the teacher-forced run of both
 * models, per-tensor weight errors (contract in verify/quality.h). */
#include "verify/quality.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/fileio.h"
#include "formats/chunk.h"
#include "quantize/q4.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "runtime/sample.h"
#include "tokenizer/tokenizer.h"

#define TEXT_MAX_BYTES (256u << 20)

/* ------------------------------------------------------------ metrics */

/* log sum exp of v[n] in double, and the first index of the maximum. */
static double log_sum_exp(const float *v, int n, int *arg)
{
    int a = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[a]) a = i;
    double m = v[a], s = 0;
    for (int i = 0; i < n; i++) s += exp((double)v[i] - m);
    *arg = a;
    return m + log(s);
}

void lmp_quality_position(const float *ref, const float *quant, int vocab, int next,
                          lmp_quality_pos *out)
{
    int ar, aq;
    double lr = log_sum_exp(ref, vocab, &ar);
    double lq = log_sum_exp(quant, vocab, &aq);
    double kl = 0;
    for (int i = 0; i < vocab; i++) {
        double lp = (double)ref[i] - lr, lqi = (double)quant[i] - lq;
        kl += exp(lp) * (lp - lqi);
    }
    out->kl = kl > 0 ? kl : 0;
    out->nll_ref = lr - (double)ref[next];
    out->nll_quant = lq - (double)quant[next];
    out->dp = exp((double)quant[ar] - lq) - exp((double)ref[ar] - lr);
    out->top_ref = ar;
    out->top_quant = aq;
}

double lmp_quality_quantile(const double *sorted, size_t n, double q)
{
    if (n == 0) return NAN;
    double h = q * (double)(n - 1);
    size_t lo = (size_t)floor(h);
    if (lo >= n - 1) return sorted[n - 1];
    return sorted[lo] + (h - (double)lo) * (sorted[lo + 1] - sorted[lo]);
}

void lmp_quality_defaults(lmp_quality_opts *o)
{
    memset(o, 0, sizeof *o);
    o->source = LMP_QSRC_SELF;
    o->self_tokens = LMP_QUALITY_DEFAULT_SELF;
    o->ctx = LMP_QUALITY_DEFAULT_CTX;
    o->seed = LMP_QUALITY_DEFAULT_SEED;
    o->tensor_errors = 1;
}

void lmp_quality_report_free(lmp_quality_report *r)
{
    if (!r) return;
    free(r->tensors);
    r->tensors = NULL;
    r->n_tensors = 0;
}

/* ------------------------------------------------------ accumulation */

typedef struct acc {
    double *kl;          /* one per position (for the percentiles) */
    uint64_t n, cap;
    double nll_ref, nll_quant, dp2;
    uint64_t agree;
} acc;

static lmp_status acc_add(acc *a, const lmp_quality_pos *p, lmp_diag *d)
{
    if (a->n == a->cap) {
        uint64_t nc = a->cap ? a->cap * 2 : 1024;
        double *k = realloc(a->kl, nc * sizeof *k);
        if (!k) return lmp_fail(d, LMP_ERR_NOMEM, "out of memory for %llu positions",
                                (unsigned long long)nc);
        a->kl = k;
        a->cap = nc;
    }
    a->kl[a->n++] = p->kl;
    a->nll_ref += p->nll_ref;
    a->nll_quant += p->nll_quant;
    a->dp2 += p->dp * p->dp;
    a->agree += p->top_ref == p->top_quant;
    return LMP_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void acc_finish(acc *a, lmp_quality_report *r)
{
    double n = (double)a->n, s = 0;
    for (uint64_t i = 0; i < a->n; i++) s += a->kl[i]; /* position order */
    r->positions = a->n;
    r->kld_mean = s / n;
    qsort(a->kl, (size_t)a->n, sizeof *a->kl, cmp_double);
    r->kld_median = lmp_quality_quantile(a->kl, (size_t)a->n, 0.5);
    r->kld_p99 = lmp_quality_quantile(a->kl, (size_t)a->n, 0.99);
    r->kld_max = a->kl[a->n - 1];
    r->top1_agreement = (double)a->agree / n;
    r->nll_ref = a->nll_ref / n;
    r->nll_quant = a->nll_quant / n;
    r->ppl_ref = exp(r->nll_ref);
    r->ppl_quant = exp(r->nll_quant);
    r->ppl_ratio = exp(r->nll_quant - r->nll_ref);
    r->top_prob_rms = sqrt(a->dp2 / n);
}

/* --------------------------------------------------------- the run */

typedef struct run {
    const lmp_model *ref, *quant;
    lmp_state *sr, *sq;
    lmp_pool *pool;
    int vocab;
    float *lr, *lq;            /* [PIECE][vocab] logits of each model */
    lmp_quality_pos pos[LMP_QUALITY_PIECE];
    const int *next;           /* next tokens of the piece */
    acc a;
    uint64_t done, total;
    const lmp_quality_opts *o;
} run;

static void pos_task(void *ctx, int t, int tid)
{
    run *R = ctx;
    (void)tid;
    size_t off = (size_t)t * (size_t)R->vocab;
    lmp_quality_position(R->lr + off, R->lq + off, R->vocab, R->next[t], &R->pos[t]);
}

static void progress(run *R)
{
    if (R->o->progress) R->o->progress(R->o->progress_ctx, R->done, R->total);
}

/* Teacher forcing over ids[0..T): positions 0..T-2, in pieces. */
static lmp_status eval_seq(run *R, const int *ids, int T, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    for (int pos = 0; pos < T - 1; pos += LMP_QUALITY_PIECE) {
        int n = T - 1 - pos < LMP_QUALITY_PIECE ? T - 1 - pos : LMP_QUALITY_PIECE;
        LMP_FORWARD(lmp_forward(R->sr, ids + pos, n, pos, R->lr, LMP_LOGITS_ALL, d));
        LMP_FORWARD(lmp_forward(R->sq, ids + pos, n, pos, R->lq, LMP_LOGITS_ALL, d));
        R->next = ids + pos + 1;
        if (R->pool && n > 1)
            lmp_pool_run(R->pool, pos_task, R, n);
        else
            for (int t = 0; t < n; t++) pos_task(R, t, 0);
        for (int t = 0; t < n; t++) LMP_FORWARD(acc_add(&R->a, &R->pos[t], d));
        R->done += (uint64_t)n;
        progress(R);
    }
out:
    return rc;
}

/* --self: sample ids[1..T) from the reference while evaluating, one
 * position at a time (the reference's logits at position t are both the
 * sampling distribution and P for that position). */
static lmp_status eval_self(run *R, lmp_sampler *smp, int *ids, int T, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    for (int pos = 0; pos < T - 1; pos++) {
        LMP_FORWARD(lmp_forward(R->sr, ids + pos, 1, pos, R->lr, LMP_LOGITS_LAST, d));
        ids[pos + 1] = lmp_sampler_sample(smp, R->lr);
        LMP_FORWARD(lmp_forward(R->sq, ids + pos, 1, pos, R->lq, LMP_LOGITS_LAST, d));
        lmp_quality_pos p;
        lmp_quality_position(R->lr, R->lq, R->vocab, ids[pos + 1], &p);
        LMP_FORWARD(acc_add(&R->a, &p, d));
        R->done++;
        if ((R->done & 15) == 0 || pos == T - 2) progress(R);
    }
out:
    return rc;
}

static lmp_status same_shape(const lmp_config *a, const lmp_config *b, const char *ra,
                             const char *qa, lmp_diag *d)
{
#define SAME(f, name)                                                                     \
    if (a->f != b->f)                                                                     \
        return lmp_fail(d, LMP_ERR_MODEL, "%s: %s %d differs from the reference %s (%d)", qa, \
                        name, b->f, ra, a->f);
    SAME(vocab, "vocab_size")
    SAME(hidden, "hidden_size")
    SAME(intermediate, "intermediate_size")
    SAME(n_layers, "num_hidden_layers")
    SAME(n_heads, "num_attention_heads")
    SAME(n_kv_heads, "num_key_value_heads")
    SAME(head_dim, "head_dim")
    SAME(tied, "tie_word_embeddings")
#undef SAME
    return LMP_OK;
}

/* Start token of every sequence: BOS, else the first EOS (a document
 * separator for models without BOS), else 0. */
static int start_token(const lmp_config *c)
{
    if (c->bos >= 0 && c->bos < c->vocab) return c->bos;
    if (c->n_eos > 0 && c->eos[0] >= 0 && c->eos[0] < c->vocab) return c->eos[0];
    return 0;
}

static lmp_status text_seqs(const char *ref_path, const lmp_quality_opts *o, const lmp_config *c,
                            lmp_quality_seqs *s, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_tok *tok = NULL;
    char *text = NULL;
    int *ids = NULL;
    size_t len = 0, n = 0;
    LMP_FORWARD(lmp_read_file(o->path, TEXT_MAX_BYTES, &text, &len, d));
    LMP_FORWARD(lmp_tok_open_model(&tok, ref_path, d));
    LMP_FORWARD(lmp_tok_encode(tok, text, len, 0, &ids, &n, d));
    for (size_t i = 0; i < n; i++)
        LMP_FAIL_IF(ids[i] < 0 || ids[i] >= c->vocab, LMP_ERR_RANGE,
                    "%s: the tokenizer gave id %d, outside the model's vocabulary [0, %d)",
                    o->path, ids[i], c->vocab);
    LMP_FORWARD(lmp_quality_seqs_split(ids, n, o->ctx, c->bos >= 0 ? c->bos : -1, s, d));
    LMP_FAIL_IF(s->n == 0, LMP_ERR_ARG, "%s: the text gives fewer than 2 tokens", o->path);
out:
    free(ids);
    free(text);
    lmp_tok_close(tok);
    return rc;
}

/* Sequences for --self (ids filled while evaluating, only ids[0] now). */
static lmp_status self_seqs(const lmp_quality_opts *o, const lmp_config *c,
                            lmp_quality_seqs *s, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    size_t n = ((size_t)o->self_tokens + (size_t)o->ctx - 1) / (size_t)o->ctx;
    memset(s, 0, sizeof *s);
    s->ids = calloc(n, sizeof *s->ids);
    s->len = calloc(n, sizeof *s->len);
    LMP_FAIL_IF(!s->ids || !s->len, LMP_ERR_NOMEM, "out of memory for %zu sequences", n);
    for (size_t i = 0; i < n; i++) {
        size_t left = (size_t)o->self_tokens - i * (size_t)o->ctx;
        size_t len = left < (size_t)o->ctx ? left : (size_t)o->ctx;
        if (len < 2) break;
        s->ids[i] = calloc(len, sizeof **s->ids);
        LMP_FAIL_IF(!s->ids[i], LMP_ERR_NOMEM, "out of memory for a sequence");
        s->ids[i][0] = start_token(c);
        s->len[i] = len;
        s->n++;
    }
out:
    if (rc != LMP_OK) lmp_quality_seqs_free(s);
    return rc;
}

static void hash_seqs(const lmp_quality_seqs *s, char hex[33])
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) {
        hex[0] = '\0';
        return;
    }
    XXH3_128bits_reset(st);
    for (size_t i = 0; i < s->n; i++) {
        uint8_t b[4];
        uint32_t v = (uint32_t)s->len[i];
        for (int k = 0; k < 4; k++) b[k] = (uint8_t)(v >> (8 * k));
        XXH3_128bits_update(st, b, 4);
        for (size_t j = 0; j < s->len[i]; j++) {
            v = (uint32_t)s->ids[i][j];
            for (int k = 0; k < 4; k++) b[k] = (uint8_t)(v >> (8 * k));
            XXH3_128bits_update(st, b, 4);
        }
    }
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
    XXH3_freeState(st);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = hx[c.digest[i] >> 4];
        hex[2 * i + 1] = hx[c.digest[i] & 15];
    }
    hex[32] = '\0';
}

lmp_status lmp_quality_run(const char *ref_path, const char *quant_path,
                           const lmp_quality_opts *opts, lmp_pool *pool, lmp_quality_report *r,
                           lmp_quality_seqs *seqs_out, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_model ref = {0}, quant = {0};
    lmp_quality_seqs seqs = {0};
    lmp_sampler *smp = NULL;
    run R = {0};
    lmp_quality_opts o;
    if (opts)
        o = *opts;
    else
        lmp_quality_defaults(&o);
    memset(r, 0, sizeof *r);
    if (seqs_out) memset(seqs_out, 0, sizeof *seqs_out);
    double t0 = lmp_now_ms();

    LMP_FAIL_IF(o.source != LMP_QSRC_TOKENS && o.ctx < 2, LMP_ERR_ARG,
                "quality: context %d too short (at least 2 tokens per sequence)", o.ctx);
    LMP_FAIL_IF(o.source == LMP_QSRC_SELF && o.self_tokens < 2, LMP_ERR_ARG,
                "quality: --self needs at least 2 tokens (got %ld)", o.self_tokens);
    LMP_FAIL_IF(o.source != LMP_QSRC_SELF && !o.path, LMP_ERR_ARG, "quality: no input file");
    LMP_FORWARD(lmp_model_open(&ref, ref_path, NULL, d));
    LMP_FORWARD(lmp_model_open(&quant, quant_path, NULL, d));
    LMP_FORWARD(same_shape(&ref.cfg, &quant.cfg, ref_path, quant_path, d));
    const lmp_config *c = &ref.cfg;
    LMP_FAIL_IF(o.source != LMP_QSRC_TOKENS && o.ctx > c->max_pos, LMP_ERR_RANGE,
                "%s: context %d exceeds max_position_embeddings %d", ref_path, o.ctx, c->max_pos);

    if (o.source == LMP_QSRC_TOKENS) {
        LMP_FORWARD(lmp_quality_seqs_read(o.path, (size_t)c->max_pos, &seqs, d));
        for (size_t i = 0; i < seqs.n; i++)
            for (size_t j = 0; j < seqs.len[i]; j++)
                LMP_FAIL_IF(seqs.ids[i][j] >= c->vocab, LMP_ERR_RANGE,
                            "%s: line %zu: token id %d is outside the vocabulary [0, %d)", o.path,
                            i + 1, seqs.ids[i][j], c->vocab);
    } else if (o.source == LMP_QSRC_TEXT) {
        LMP_FORWARD(text_seqs(ref_path, &o, c, &seqs, d));
    } else {
        LMP_FORWARD(self_seqs(&o, c, &seqs, d));
        lmp_sample_params sp;
        lmp_sample_defaults(&sp);
        sp.temperature = 1.0f;
        sp.top_k = 0;
        sp.top_p = 1.0f;
        sp.min_p = 0.0f;
        sp.repeat_penalty = 1.0f;
        sp.repeat_last_n = 0;
        sp.seed = o.seed;
        LMP_FORWARD(lmp_sampler_create(&smp, &sp, c->vocab, d));
    }
    int max_len = 0;
    for (size_t i = 0; i < seqs.n; i++) {
        R.total += seqs.len[i] - 1;
        if ((int)seqs.len[i] > max_len) max_len = (int)seqs.len[i];
    }
    LMP_FAIL_IF(R.total == 0, LMP_ERR_ARG, "quality: no position to evaluate");

    R.ref = &ref;
    R.quant = &quant;
    R.pool = pool;
    R.vocab = c->vocab;
    R.o = &o;
    size_t lsz = (size_t)LMP_QUALITY_PIECE * (size_t)c->vocab;
    R.lr = malloc(lsz * sizeof *R.lr);
    R.lq = malloc(lsz * sizeof *R.lq);
    LMP_FAIL_IF(!R.lr || !R.lq, LMP_ERR_NOMEM, "out of memory for logits");
    LMP_FORWARD(lmp_state_create(&R.sr, &ref, max_len, pool, d));
    LMP_FORWARD(lmp_state_create_kv(&R.sq, &quant, max_len, o.kv, pool, d));
    snprintf(r->ref_kv, sizeof r->ref_kv, "%s", lmp_kv_type_name(lmp_state_kv(R.sr)));
    snprintf(r->quant_kv, sizeof r->quant_kv, "%s", lmp_kv_type_name(lmp_state_kv(R.sq)));
    progress(&R);
    for (size_t i = 0; i < seqs.n; i++) {
        if (smp)
            LMP_FORWARD(eval_self(&R, smp, seqs.ids[i], (int)seqs.len[i], d));
        else
            LMP_FORWARD(eval_seq(&R, seqs.ids[i], (int)seqs.len[i], d));
    }
    acc_finish(&R.a, r);
    lmp_state_close(R.sr);
    lmp_state_close(R.sq);
    R.sr = R.sq = NULL;
    free(R.lr);
    free(R.lq);
    R.lr = R.lq = NULL;

    if (o.tensor_errors) LMP_FORWARD(lmp_quality_weight_errors(&ref, &quant, pool, r, d));
    r->source = o.source;
    r->self_tokens = o.source == LMP_QSRC_SELF ? o.self_tokens : 0;
    r->ctx = o.source == LMP_QSRC_TOKENS ? max_len : o.ctx;
    r->seed = o.seed;
    r->sequences = seqs.n;
    r->vocab = c->vocab;
    hash_seqs(&seqs, r->tokens_xxh3);
    snprintf(r->ref_source, sizeof r->ref_source, "%s", ref.source);
    snprintf(r->quant_source, sizeof r->quant_source, "%s", quant.source);
    r->seconds = (lmp_now_ms() - t0) / 1e3;
    if (seqs_out) {
        *seqs_out = seqs;
        memset(&seqs, 0, sizeof seqs);
    }
out:
    if (rc != LMP_OK) lmp_quality_report_free(r);
    free(R.a.kl);
    free(R.lr);
    free(R.lq);
    lmp_state_close(R.sr);
    lmp_state_close(R.sq);
    lmp_sampler_close(smp);
    lmp_quality_seqs_free(&seqs);
    lmp_model_close(&quant);
    lmp_model_close(&ref);
    return rc;
}
