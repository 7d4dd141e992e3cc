/* Quantization quality: how far a quantized model's next-token
 * distributions are from its FP32 reference (the "quality half" of
 * `lmpack verify`, docs/QUALITY.md).
 *
 * Both models run with teacher forcing over the same evaluation sequences;
 * every position t of a sequence of T tokens that has a next token
 * (t = 0 .. T-2, T-1 positions per sequence) contributes, with P = softmax
 * of the reference logits and Q = softmax of the quantized logits (computed
 * in double, log-sum-exp with the maximum subtracted):
 *   KL(P || Q) = sum_i P_i (log P_i - log Q_i)   natural log, clamped at 0
 *                (it can come out a few ulps negative when P == Q);
 *   top-1 agreement: argmax P == argmax Q (first index on ties);
 *   NLL of the actual next token under each model (-log P[next]);
 *   dp = Q[a] - P[a] for a = argmax P (probability change of the FP32 top token).
 * Aggregates over all positions N:
 *   kld_mean, kld_median, kld_p99, kld_max  (percentiles by linear
 *       interpolation between order statistics: value at rank q*(N-1) of the
 *       ascending sort, as numpy's default);
 *   top1_agreement = agreeing positions / N   (a fraction in [0, 1]);
 *   ppl_ref = exp(mean NLL_ref), ppl_quant = exp(mean NLL_quant),
 *   ppl_ratio = ppl_quant / ppl_ref;
 *   top_prob_rms = sqrt(mean dp^2).
 * Plus, per weight matrix, the error of the quantized weights against the
 * FP32 ones (both read row by row with lmp_mat_get_row):
 *   rel_rmse = sqrt(sum (q - r)^2 / sum r^2), max_abs = max |q - r|.
 *
 * Memory: the two models are loaded once each; logits are held only for
 * one piece of at most LMP_QUALITY_PIECE positions per model at a time.
 * Results are identical for any thread count (the forward pass is
 * thread-count independent and per-position metrics are summed in
 * position order).
 */
#ifndef LMP_QUALITY_H
#define LMP_QUALITY_H

#include <stddef.h>
#include <stdint.h>

#include "common/pool.h"
#include "common/status.h"
#include "runtime/forward.h"

#define LMP_QUALITY_PIECE 32      /* positions per forward piece (teacher forcing) */
#define LMP_QUALITY_DEFAULT_SELF 2048
#define LMP_QUALITY_DEFAULT_CTX 256
#define LMP_QUALITY_DEFAULT_SEED 1234

/* ---- per-position metrics (pure functions, for tests and tools) ---------- */

typedef struct lmp_quality_pos {
    double kl;        /* KL(P || Q), >= 0 */
    double nll_ref;   /* -log P[next] */
    double nll_quant; /* -log Q[next] */
    double dp;        /* Q[argmax P] - P[argmax P] */
    int top_ref, top_quant;
} lmp_quality_pos;

/* ref, quant: logits[vocab]; next in [0, vocab). */
void lmp_quality_position(const float *ref, const float *quant, int vocab, int next,
                          lmp_quality_pos *out);

/* Value at quantile q in [0, 1] of sorted[n] (ascending), linear
 * interpolation between ranks floor(q*(n-1)) and the next. n == 0: NaN. */
double lmp_quality_quantile(const double *sorted, size_t n, double q);

/* ---- evaluation token sequences ----------------------------------------- */

typedef struct lmp_quality_seqs {
    size_t n;       /* sequences */
    size_t *len;    /* n lengths (each >= 2) */
    int **ids;      /* n arrays of len[i] ids */
} lmp_quality_seqs;

void lmp_quality_seqs_free(lmp_quality_seqs *s); /* zeroed / NULL: no-op */

/* --tokens FILE: one sequence per non-blank line, ids separated by spaces
 * (or commas); each must have >= 2 ids and at most max_len. */
lmp_status lmp_quality_seqs_read(const char *path, size_t max_len, lmp_quality_seqs *out,
                                 lmp_diag *d);
/* Write sequences in the --tokens format (atomically). */
lmp_status lmp_quality_seqs_write(const lmp_quality_seqs *s, const char *path, lmp_diag *d);
/* Cut a token stream ids[n] into sequences of ctx tokens: each starts with
 * `start` (when >= 0) followed by the next ctx-1 stream tokens (ctx stream
 * tokens when start < 0); a shorter last one is kept if it has >= 2 tokens. */
lmp_status lmp_quality_seqs_split(const int *ids, size_t n, int ctx, int start,
                                  lmp_quality_seqs *out, lmp_diag *d);

/* ---- the whole evaluation ---------------------------------------------- */

typedef enum lmp_quality_source {
    LMP_QSRC_SELF = 0,   /* sample from the FP32 model */
    LMP_QSRC_TEXT,       /* tokenize a text file with the reference tokenizer */
    LMP_QSRC_TOKENS      /* token id file */
} lmp_quality_source;

/* Progress: positions evaluated so far out of total (total may grow by 0). */
typedef void (*lmp_quality_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef struct lmp_quality_opts {
    lmp_quality_source source;
    const char *path;         /* TEXT / TOKENS: the file */
    long self_tokens;         /* SELF: total tokens N (BOS included), split into
                                 sequences of ctx: ceil(N / ctx) sequences */
    int ctx;                  /* SELF / TEXT: tokens per sequence (>= 2) */
    uint64_t seed;            /* SELF: sampler seed (temperature 1, no filtering) */
    int tensor_errors;        /* 1: compute the per-tensor weight errors */
    lmp_kv_type kv;           /* KV cache of the model under test (default AUTO:
                                 f16 for int4/int8 models); the reference
                                 always runs with AUTO */
    lmp_quality_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} lmp_quality_opts;

/* Defaults: SELF, 2048 tokens, ctx 256, seed 1234, tensor errors on. */
void lmp_quality_defaults(lmp_quality_opts *o);

typedef struct lmp_tensor_err {
    char name[96];            /* Hugging Face tensor name */
    char kind[8];             /* quantized side: "q4", "q8", "f16", "bf16", "f32" */
    int group, scheme;        /* q4/q8 (scheme: quantize/q4.h id), else 0 */
    int rows, cols;
    double bits_per_weight;   /* 8 * stored row bytes / cols */
    double rel_rmse, max_abs;
} lmp_tensor_err;

typedef struct lmp_quality_report {
    /* settings */
    lmp_quality_source source;
    long self_tokens;
    int ctx;
    uint64_t seed;
    char tokens_xxh3[33];     /* XXH3-128 of the evaluation ids (int32 LE, each
                                 sequence preceded by its length as uint32 LE) */
    char ref_source[64], quant_source[64]; /* lmp_model.source of each */
    char ref_kv[8], quant_kv[8];           /* KV cache type each ran with */
    int vocab;
    /* metrics */
    uint64_t positions;
    size_t sequences;
    double kld_mean, kld_median, kld_p99, kld_max;
    double top1_agreement;
    double nll_ref, nll_quant;        /* mean NLLs */
    double ppl_ref, ppl_quant, ppl_ratio;
    double top_prob_rms;
    /* weights */
    size_t n_tensors;
    lmp_tensor_err *tensors;          /* owned, model order: layers, then embed, lm_head */
    double bits_per_weight;           /* over all matrices (tied embedding once) */
    double weights_rel_rmse;          /* over all matrices together */
    double seconds;                   /* wall time of the evaluation */
} lmp_quality_report;

/* Open ref_path (the FP32 reference; any lmp_model_open path, normally a
 * Hugging Face folder) and quant_path (bundle, .lmpk, folder), check they
 * have the same shape, build the evaluation sequences from opts, and fill
 * *r. If seqs_out is not NULL it receives the sequences evaluated (e.g. to
 * save the sampled ones; caller frees). pool may be NULL.
 * Errors: a model that cannot be opened (LMP_ERR_IO/FORMAT/...), shapes
 * that differ (LMP_ERR_MODEL), no position to evaluate (LMP_ERR_ARG). */
lmp_status lmp_quality_run(const char *ref_path, const char *quant_path,
                           const lmp_quality_opts *opts, lmp_pool *pool, lmp_quality_report *r,
                           lmp_quality_seqs *seqs_out, lmp_diag *d);

void lmp_quality_report_free(lmp_quality_report *r); /* frees tensors; NULL: no-op */

/* The per-tensor part alone: fill r->tensors / n_tensors / bits_per_weight /
 * weights_rel_rmse comparing every weight matrix of quant against ref
 * (same config shape required; LMP_ERR_MODEL naming the tensor otherwise). */
struct lmp_model;
lmp_status lmp_quality_weight_errors(const struct lmp_model *ref, const struct lmp_model *quant,
                                     lmp_pool *pool, lmp_quality_report *r, lmp_diag *d);

/* ---- gates --------------------------------------------------------------- */

typedef struct lmp_quality_gates {
    int has_max_kld;        double max_kld;        /* kld_mean <= max_kld */
    int has_min_top1;       double min_top1;       /* top1_agreement >= min_top1 (fraction) */
    int has_max_ppl_ratio;  double max_ppl_ratio;  /* ppl_ratio <= max_ppl_ratio */
    /* baseline: kld_mean <= base_kld * (1 + pct/100) and
     *           ppl_ratio <= base_ratio * (1 + pct/100) */
    int has_baseline;       double base_kld, base_ppl_ratio, max_regression_pct;
} lmp_quality_gates;

typedef struct lmp_gate_result {
    const char *gate;       /* "max-kld", "min-top1", "max-ppl-ratio",
                               "baseline-kld", "baseline-ppl-ratio" (static) */
    const char *metric;     /* "kld_mean", "top1_agreement", "ppl_ratio" */
    double value, limit;
    int ok;
} lmp_gate_result;

#define LMP_QUALITY_MAX_GATES 5

/* Evaluate every gate that is set, in the order above; returns how many
 * results were written to res (<= LMP_QUALITY_MAX_GATES). A NaN value
 * fails its gate. */
int lmp_quality_check_gates(const lmp_quality_report *r, const lmp_quality_gates *g,
                            lmp_gate_result res[LMP_QUALITY_MAX_GATES]);

/* Read kld_mean and ppl_ratio from a saved report (the --json output of an
 * earlier run). If the baseline has "tokens_xxh3" and `tokens_xxh3` is not
 * NULL, they must be equal (LMP_ERR_ARG: measured on other tokens). */
lmp_status lmp_quality_read_baseline(const char *path, const char *tokens_xxh3, double *kld_mean,
                                     double *ppl_ratio, lmp_diag *d);

/* ---- report ---------------------------------------------------------------- */

typedef struct lmp_quality_meta {
    const char *ref_path, *quant_path;
    const char *source_path;  /* the --text / --tokens file, or NULL */
    char ref_hash[33], quant_hash[33];  /* lmp_quality_hash_model */
    char ref_hashed[128], quant_hashed[128];
    const char *integrity;    /* "ok", "skipped (not a bundle)", ... */
} lmp_quality_meta;

/* XXH3-128 identifying a model: a bundle -> of manifest.json (which pins
 * every chunk's hash); a file -> of the file; a Hugging Face folder -> of
 * config.json followed by every *.safetensors file in name order (streamed).
 * what_out says what was hashed ("manifest.json", "file", "config.json + 2
 * safetensors files"). */
lmp_status lmp_quality_hash_model(const char *path, char hex[33], char *what_out,
                                  size_t what_cap, lmp_diag *d);

/* The full JSON report (malloc'd, NUL-terminated, caller frees; NULL on
 * out of memory). Top-level keys include kld_mean, kld_median, kld_p99,
 * kld_max, top1_agreement, ppl_ref, ppl_quant, ppl_ratio, positions,
 * lmpack_version, settings, reference, quantized, tensors, gates, passed. */
char *lmp_quality_report_json(const lmp_quality_report *r, const lmp_quality_meta *meta,
                              const lmp_gate_result *gates, int n_gates);

#endif
