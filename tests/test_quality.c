/* Quality gate: verify/quality.h and `lmpack verify --quality`.
 *
 * Expectations come from hand computation (KL, NLL, quantiles on tiny
 * crafted distributions), from the format rules (bits/weight of a q4 row,
 * an f32 container is the reference itself), and from an independent
 * computation in this file: the logits of both models written by
 * `lmpack run --logits` over the very tokens the program evaluated, turned
 * into KL / top-1 / perplexity by code below (long double softmax, own
 * percentile), never by the library's metric functions. */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "tests/testutil.h"
#include "verify/quality.h"

/* ---- helpers ----------------------------------------------------------- */

#define MAXARGS 40

/* Run bin/lmpack-<prog> with the NULL-terminated arguments. */
static int prog(const char *name, char **out, char **err, ...)
{
    char *argv[MAXARGS] = {(char *)t_bin(name)};
    int k = 1;
    va_list ap;
    va_start(ap, err);
    for (const char *a; k < MAXARGS - 1 && (a = va_arg(ap, const char *));) argv[k++] = (char *)a;
    va_end(ap);
    argv[k] = NULL;
    return t_run(argv, out, err);
}

static char *path_in(const char *dir, const char *name)
{
    char *p = lmp_path_join(dir, name);
    ck_assert_ptr_nonnull(p);
    return p;
}

static cJSON *read_json(const char *path)
{
    size_t n;
    unsigned char *b = t_slurp(path, &n);
    cJSON *j = cJSON_ParseWithLength((const char *)b, n);
    free(b);
    ck_assert_msg(j != NULL, "%s: not JSON", path);
    return j;
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    ck_assert_msg(cJSON_IsNumber(x), "report key %s missing or not a number", k);
    return x->valuedouble;
}

static void close_rel(double got, double want, double tol, const char *what)
{
    double den = fabs(want) > 1e-300 ? fabs(want) : 1;
    ck_assert_msg(fabs(got - want) / den <= tol, "%s: report %.17g, independent %.17g (rel %.3g)",
                  what, got, want, fabs(got - want) / den);
}

/* ---- hand-computed metrics ------------------------------------------------ */

START_TEST(kl_two_tokens_by_hand)
{
    /* P = (1/2, 1/2), Q = (3/4, 1/4):
     * KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3) */
    float p[2] = {0.0f, 0.0f}, q[2] = {(float)log(3.0), 0.0f};
    lmp_quality_pos r;
    lmp_quality_position(p, q, 2, 1, &r);
    /* with the float-rounded ln 3: Q0 = e^q0 / (e^q0 + 1) */
    double e3 = exp((double)q[0]), qd0 = e3 / (e3 + 1.0);
    double want = 0.5 * log(0.5 / qd0) + 0.5 * log(0.5 / (1 - qd0));
    ck_assert_double_eq_tol(want, 0.5 * log(4.0 / 3.0), 1e-7); /* the float is close to ln 3 */
    ck_assert_double_eq_tol(r.kl, want, 1e-14);
    ck_assert_double_eq_tol(r.nll_ref, log(2.0), 1e-14);        /* -ln P[1] */
    ck_assert_double_eq_tol(r.nll_quant, -log(1 - qd0), 1e-14); /* -ln Q[1] ~ ln 4 */
    ck_assert_int_eq(r.top_ref, 0);   /* tie: first index */
    ck_assert_int_eq(r.top_quant, 0);
    ck_assert_double_eq_tol(r.dp, qd0 - 0.5, 1e-14); /* Q[0] - P[0] ~ 1/4 */
}
END_TEST

START_TEST(kl_three_tokens_by_hand)
{
    /* exact in float: logits 0 and ln 2 only differ by a float-rounded ln 2,
     * so use powers of e instead: P = softmax(1, 0, 0), Q = softmax(0, 1, 0) */
    float p[3] = {1, 0, 0}, q[3] = {0, 1, 0};
    double e = exp(1.0), z = e + 2;
    double P[3] = {e / z, 1 / z, 1 / z}, Q[3] = {1 / z, e / z, 1 / z};
    double kl = 0;
    for (int i = 0; i < 3; i++) kl += P[i] * log(P[i] / Q[i]);
    /* = (e/z)(1) + (1/z)(-1) = (e - 1)/(e + 2) */
    ck_assert_double_eq_tol(kl, (e - 1) / (e + 2), 1e-15);
    lmp_quality_pos r;
    lmp_quality_position(p, q, 3, 2, &r);
    ck_assert_double_eq_tol(r.kl, (e - 1) / (e + 2), 1e-14);
    ck_assert_double_eq_tol(r.nll_ref, log(z), 1e-14);
    ck_assert_double_eq_tol(r.nll_quant, log(z), 1e-14);
    ck_assert_int_eq(r.top_ref, 0);
    ck_assert_int_eq(r.top_quant, 1);
    ck_assert_double_eq_tol(r.dp, (1 - e) / z, 1e-14);
    /* KL is not symmetric but here it is by symmetry of the construction */
    lmp_quality_position(q, p, 3, 0, &r);
    ck_assert_double_eq_tol(r.kl, (e - 1) / (e + 2), 1e-14);
}
END_TEST

START_TEST(kl_identical_and_extreme)
{
    float a[5] = {-3, 2, 7.5f, 0, 1};
    lmp_quality_pos r;
    lmp_quality_position(a, a, 5, 3, &r);
    ck_assert(r.kl == 0);
    ck_assert(r.dp == 0);
    ck_assert(r.nll_ref == r.nll_quant);
    /* no overflow with huge logits: P ~ one-hot on 0, Q ~ one-hot on 1,
     * KL = ln P0 - ln Q0 ~ 0 - (-1000) = 1000 nats; -ln Q[0] = 1000 */
    float p[2] = {1000, 0}, q[2] = {0, 1000};
    lmp_quality_position(p, q, 2, 0, &r);
    ck_assert_double_eq_tol(r.kl, 1000, 1e-9);
    ck_assert_double_eq_tol(r.nll_quant, 1000, 1e-9);
    ck_assert_double_eq_tol(r.nll_ref, 0, 1e-300 + 1e-12);
    ck_assert_double_eq_tol(r.dp, -1, 1e-12);
    /* shifting all logits of one model changes nothing */
    float s[5];
    for (int i = 0; i < 5; i++) s[i] = a[i] + 64; /* exact in float */
    lmp_quality_position(a, s, 5, 1, &r);
    ck_assert_double_eq_tol(r.kl, 0, 1e-13);
    ck_assert_double_eq_tol(r.nll_ref, r.nll_quant, 1e-13);
}
END_TEST

START_TEST(perplexity_by_hand)
{
    /* next-token probabilities 1/2 and 1/4 (exact logits 0 / -inf are not
     * allowed; use uniform distributions over 2 and 4 tokens):
     * mean NLL = (ln 2 + ln 4) / 2 = 1.5 ln 2, PPL = 2^1.5 */
    float u2[2] = {5, 5}, u4[4] = {-1, -1, -1, -1};
    lmp_quality_pos a, b;
    lmp_quality_position(u2, u2, 2, 1, &a);
    lmp_quality_position(u4, u4, 4, 3, &b);
    double ppl = exp((a.nll_ref + b.nll_ref) / 2);
    ck_assert_double_eq_tol(ppl, pow(2, 1.5), 1e-13);
}
END_TEST

START_TEST(quantiles_by_hand)
{
    double v[4] = {1, 2, 3, 4};
    ck_assert_double_eq_tol(lmp_quality_quantile(v, 4, 0.5), 2.5, 1e-15);
    ck_assert_double_eq_tol(lmp_quality_quantile(v, 4, 0.99), 3.97, 1e-13); /* 3 + 0.97 */
    ck_assert_double_eq(lmp_quality_quantile(v, 4, 0), 1);
    ck_assert_double_eq(lmp_quality_quantile(v, 4, 1), 4);
    double w[5] = {0, 1, 10, 11, 100};
    ck_assert_double_eq(lmp_quality_quantile(w, 5, 0.5), 10); /* odd n: the middle */
    ck_assert_double_eq(lmp_quality_quantile(w, 1, 0.99), 0);
    ck_assert(isnan(lmp_quality_quantile(w, 0, 0.5)));
}
END_TEST

/* ---- sequences, gates, baseline ---------------------------------------------- */

START_TEST(sequences_split_read_write)
{
    int ids[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    lmp_quality_seqs s;
    lmp_diag d;
    ck_assert_int_eq(lmp_quality_seqs_split(ids, 10, 4, 99, &s, &d), LMP_OK);
    ck_assert_uint_eq(s.n, 4); /* [99 0 1 2] [99 3 4 5] [99 6 7 8] [99 9] */
    ck_assert_uint_eq(s.len[0], 4);
    ck_assert_uint_eq(s.len[3], 2);
    ck_assert_int_eq(s.ids[1][0], 99);
    ck_assert_int_eq(s.ids[1][1], 3);
    ck_assert_int_eq(s.ids[3][1], 9);
    char *dir = t_tmpdir(), *f = path_in(dir, "t.txt");
    ck_assert_int_eq(lmp_quality_seqs_write(&s, f, &d), LMP_OK);
    size_t n;
    unsigned char *b = t_slurp(f, &n);
    ck_assert_str_eq((char *)b, "99 0 1 2\n99 3 4 5\n99 6 7 8\n99 9\n");
    free(b);
    lmp_quality_seqs_free(&s);
    /* no start token: plain cuts; a last piece of 1 token is dropped */
    ck_assert_int_eq(lmp_quality_seqs_split(ids, 9, 4, -1, &s, &d), LMP_OK);
    ck_assert_uint_eq(s.n, 2);
    ck_assert_int_eq(s.ids[1][3], 7);
    lmp_quality_seqs_free(&s);

    t_write(f, "1 2 3\n\n4,5\n", 11);
    ck_assert_int_eq(lmp_quality_seqs_read(f, 8, &s, &d), LMP_OK);
    ck_assert_uint_eq(s.n, 2);
    ck_assert_uint_eq(s.len[1], 2);
    ck_assert_int_eq(s.ids[1][1], 5);
    lmp_quality_seqs_free(&s);
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_quality_seqs_read(f, 2, &s, &d), LMP_ERR_RANGE); /* 3 > 2 */
    ck_assert_ptr_nonnull(strstr(d.msg, "line 1"));
    t_write(f, "1 2\n7\n", 6);
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_quality_seqs_read(f, 8, &s, &d), LMP_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(d.msg, "line 2"));
    t_write(f, "1 x 2\n", 6);
    ck_assert_int_eq(lmp_quality_seqs_read(f, 8, &s, &d), LMP_ERR_FORMAT);
    t_write(f, "\n\n", 2);
    ck_assert_int_eq(lmp_quality_seqs_read(f, 8, &s, &d), LMP_ERR_FORMAT);
    ck_assert_uint_eq(s.n, 0);
    free(f);
    t_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(gates_logic)
{
    lmp_quality_report r = {0};
    r.kld_mean = 0.05;
    r.top1_agreement = 0.9;
    r.ppl_ratio = 1.1;
    lmp_quality_gates g = {0};
    lmp_gate_result res[LMP_QUALITY_MAX_GATES];
    ck_assert_int_eq(lmp_quality_check_gates(&r, &g, res), 0);
    g.has_max_kld = g.has_min_top1 = g.has_max_ppl_ratio = g.has_baseline = 1;
    g.max_kld = 0.05;   /* equal passes */
    g.min_top1 = 0.9;
    g.max_ppl_ratio = 1.1;
    g.base_kld = 0.04;  /* 25% worse than 0.04 */
    g.base_ppl_ratio = 1.1;
    g.max_regression_pct = 20;
    ck_assert_int_eq(lmp_quality_check_gates(&r, &g, res), 5);
    ck_assert(res[0].ok && res[1].ok && res[2].ok);
    ck_assert_str_eq(res[3].gate, "baseline-kld");
    ck_assert(!res[3].ok);
    ck_assert_double_eq_tol(res[3].limit, 0.048, 1e-15);
    ck_assert(res[4].ok);
    g.max_regression_pct = 30;
    lmp_quality_check_gates(&r, &g, res);
    ck_assert(res[3].ok);
    g.max_kld = 0.0499;
    g.min_top1 = 0.9001;
    g.max_ppl_ratio = 1.0999;
    lmp_quality_check_gates(&r, &g, res);
    ck_assert(!res[0].ok && !res[1].ok && !res[2].ok);
    ck_assert_str_eq(res[1].gate, "min-top1");
    r.kld_mean = NAN; /* a NaN never passes */
    g.max_kld = 1e9;
    lmp_quality_check_gates(&r, &g, res);
    ck_assert(!res[0].ok);
}
END_TEST

START_TEST(baseline_reading)
{
    char *dir = t_tmpdir(), *f = path_in(dir, "b.json");
    lmp_diag d;
    double k, p;
    const char *ok = "{\"kld_mean\": 0.25, \"ppl_ratio\": 1.5, \"tokens_xxh3\": \"abc\"}";
    t_write(f, ok, strlen(ok));
    ck_assert_int_eq(lmp_quality_read_baseline(f, "abc", &k, &p, &d), LMP_OK);
    ck_assert(k == 0.25 && p == 1.5);
    ck_assert_int_eq(lmp_quality_read_baseline(f, NULL, &k, &p, &d), LMP_OK);
    ck_assert_int_eq(lmp_quality_read_baseline(f, "abd", &k, &p, &d), LMP_ERR_ARG);
    const char *bad[] = {"[1]", "{\"kld_mean\": 1}", "{\"kld_mean\": \"x\", \"ppl_ratio\": 1}",
                         "{\"kld_mean\": -1, \"ppl_ratio\": 1}", "{\"kld_mean\": 1, \"ppl_ratio\": 0}",
                         "not json"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        t_write(f, bad[i], strlen(bad[i]));
        lmp_diag_clear(&d);
        ck_assert_msg(lmp_quality_read_baseline(f, NULL, &k, &p, &d) == LMP_ERR_FORMAT, "%s",
                      bad[i]);
        ck_assert_ptr_nonnull(strstr(d.msg, "b.json"));
    }
    free(f);
    f = path_in(dir, "missing.json");
    ck_assert_int_eq(lmp_quality_read_baseline(f, NULL, &k, &p, &d), LMP_ERR_IO);
    free(f);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* ---- programs on stories260k -------------------------------------------------- */

static char *g_dir, *g_lmpk, *g_bundle, *g_f32, *g_report, *g_tokens;
static char *g_ref;

/* Built once for the tcase (unchecked fixture, in the parent process). */
static void fixture_up(void)
{
    g_ref = strdup(t_data("stories260k"));
    g_dir = t_tmpdir();
    g_lmpk = lmp_path_join(g_dir, "q4.lmpk");
    g_bundle = lmp_path_join(g_dir, "bundle");
    g_f32 = lmp_path_join(g_dir, "f32.lmpk");
    g_report = lmp_path_join(g_dir, "report.json");
    g_tokens = lmp_path_join(g_dir, "tokens.txt");
    prog("lmpack-convert", NULL, NULL, g_ref, "-o", g_lmpk, "--dtype", "q4", "--group", "32",
         "--scheme", "sym", "--embed", "q8", "-t", "1", (char *)NULL);
    prog("lmpack-convert", NULL, NULL, g_ref, "-o", g_f32, "--dtype", "f32", "-t", "1",
         (char *)NULL);
    /* the same q4 settings as g_lmpk: the two must give the same numbers */
    prog("lmpack-build", NULL, NULL, g_ref, "-o", g_bundle, "--dtype", "q4", "--group", "32",
         "--scheme", "sym", "--embed", "q8", "-t", "1", (char *)NULL);
    /* 3 sequences of 100 (BOS + 99 sampled) = 297 positions */
    prog("lmpack-verify", NULL, NULL, g_bundle, "--quality", "--against", g_ref, "--self", "300",
         "--ctx", "100", "--seed", "7", "--save-tokens", g_tokens, "--json", g_report, "-t", "2",
         (char *)NULL);
}

static void fixture_down(void)
{
    if (g_dir) t_rmtree(g_dir);
    free(g_dir);
    free(g_lmpk);
    free(g_bundle);
    free(g_f32);
    free(g_report);
    free(g_tokens);
    free(g_ref);
    g_dir = NULL;
}

/* [T][vocab] float32 little-endian logits of `model` over ids (a line). */
static float *run_logits(const char *model, const char *ids, size_t T, int vocab)
{
    char *f = path_in(g_dir, "logits.f32");
    char *err = NULL;
    int rc = prog("lmpack-run", NULL, &err, model, "--ids", ids, "--logits", f, "-t", "1",
                  (char *)NULL);
    ck_assert_msg(rc == 0, "lmpack run %s: %s", model, err ? err : "");
    free(err);
    size_t n;
    unsigned char *b = t_slurp(f, &n);
    ck_assert_uint_eq(n, T * (size_t)vocab * 4);
    float *v = malloc(n);
    for (size_t i = 0; i < n / 4; i++) {
        uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
                     (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
        memcpy(&v[i], &u, 4);
    }
    free(b);
    remove(f);
    free(f);
    return v;
}

/* Independent metrics: long double softmax per position. */
typedef struct indep {
    double *kl;
    size_t n;
    long double nll_r, nll_q, kl_sum;
    size_t agree;
} indep;

static int argmax_first(const float *v, int n)
{
    int a = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[a]) a = i;
    return a;
}

static void indep_position(indep *s, const float *a, const float *b, int V, int next)
{
    long double ma = a[argmax_first(a, V)], mb = b[argmax_first(b, V)], za = 0, zb = 0;
    for (int i = 0; i < V; i++) {
        za += expl((long double)a[i] - ma);
        zb += expl((long double)b[i] - mb);
    }
    long double kl = 0;
    for (int i = 0; i < V; i++) {
        long double p = expl((long double)a[i] - ma) / za, q = expl((long double)b[i] - mb) / zb;
        if (p > 0) kl += p * logl(p / q);
    }
    if (kl < 0) kl = 0; /* the documented clamp */
    s->kl[s->n++] = (double)kl;
    s->kl_sum += kl;
    s->nll_r += -logl(expl((long double)a[next] - ma) / za);
    s->nll_q += -logl(expl((long double)b[next] - mb) / zb);
    s->agree += argmax_first(a, V) == argmax_first(b, V);
}

static int cmpd(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double pct(const double *v, size_t n, double q)
{
    double h = q * (double)(n - 1);
    size_t i = (size_t)h;
    return i + 1 < n ? v[i] + (h - (double)i) * (v[i + 1] - v[i]) : v[n - 1];
}

/* Compare a report with the metrics computed here from `lmpack run
 * --logits` of ref and quant over every line of tokens_file. */
static void check_against_run_logits(const char *report, const char *tokens_file,
                                     const char *quant)
{
    const int V = 512; /* stories260k vocab_size */
    size_t n;
    unsigned char *text = t_slurp(tokens_file, &n);
    indep s = {0};
    s.kl = malloc(sizeof(double) * 4096);
    size_t seqs = 0;
    for (char *line = (char *)text, *e; *line; line = e + 1) {
        e = strchr(line, '\n');
        ck_assert_ptr_nonnull(e);
        *e = '\0';
        int *ids;
        long T = lmp_parse_ids(line, &ids);
        ck_assert_int_ge(T, 2);
        float *lr = run_logits(g_ref, line, (size_t)T, V);
        float *lq = run_logits(quant, line, (size_t)T, V);
        for (long t = 0; t + 1 < T; t++) {
            ck_assert_uint_lt(s.n, 4096);
            indep_position(&s, lr + (size_t)t * V, lq + (size_t)t * V, V, ids[t + 1]);
        }
        free(lr);
        free(lq);
        free(ids);
        seqs++;
    }
    free(text);
    qsort(s.kl, s.n, sizeof *s.kl, cmpd);
    cJSON *j = read_json(report);
    double N = (double)s.n;
    ck_assert_double_eq(jnum(j, "positions"), N);
    ck_assert_double_eq(jnum(j, "sequences"), (double)seqs);
    close_rel(jnum(j, "kld_mean"), (double)(s.kl_sum / N), 1e-6, "kld_mean");
    close_rel(jnum(j, "kld_median"), pct(s.kl, s.n, 0.5), 1e-6, "kld_median");
    close_rel(jnum(j, "kld_p99"), pct(s.kl, s.n, 0.99), 1e-6, "kld_p99");
    close_rel(jnum(j, "kld_max"), s.kl[s.n - 1], 1e-6, "kld_max");
    close_rel(jnum(j, "top1_agreement"), (double)s.agree / N, 1e-12, "top1_agreement");
    double pr = (double)expl(s.nll_r / N), pq = (double)expl(s.nll_q / N);
    close_rel(jnum(j, "ppl_ref"), pr, 1e-6, "ppl_ref");
    close_rel(jnum(j, "ppl_quant"), pq, 1e-6, "ppl_quant");
    close_rel(jnum(j, "ppl_ratio"), pq / pr, 1e-6, "ppl_ratio");
    /* a q4 model is not the reference: the check must be able to fail */
    ck_assert(s.kl_sum > 0);
    cJSON_Delete(j);
    free(s.kl);
}

START_TEST(self_report_matches_run_logits)
{
    ck_assert_msg(lmp_exists(g_report), "fixture: verify --quality did not write the report");
    cJSON *j = read_json(g_report);
    ck_assert_double_eq(jnum(j, "positions"), 297); /* 3 x (100 - 1) */
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, "integrity");
    ck_assert(cJSON_IsString(it) && !strcmp(it->valuestring, "ok"));
    const cJSON *pass = cJSON_GetObjectItemCaseSensitive(j, "passed");
    ck_assert(cJSON_IsTrue(pass));
    cJSON_Delete(j);
    /* every sequence starts with BOS (config bos_token_id 1), 100 tokens */
    size_t n;
    unsigned char *t = t_slurp(g_tokens, &n);
    int lines = 0;
    for (char *p = (char *)t; *p; lines++) {
        ck_assert_msg(!strncmp(p, "1 ", 2), "sequence %d does not start with BOS", lines);
        int cnt = 1;
        for (; *p && *p != '\n'; p++) cnt += *p == ' ';
        ck_assert_int_eq(cnt, 100);
        if (*p) p++;
    }
    ck_assert_int_eq(lines, 3);
    free(t);
    check_against_run_logits(g_report, g_tokens, g_bundle);
}
END_TEST

START_TEST(tokens_lmpk_matches_run_logits)
{
    /* --tokens on the .lmpk (integrity skipped, not a bundle) */
    char *rep = path_in(g_dir, "tok.json"), *out = NULL;
    int rc = prog("lmpack-verify", &out, NULL, g_lmpk, "--quality", "--against", g_ref, "--tokens",
                  g_tokens, "--json", rep, "-t", "1", (char *)NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(strstr(out, "KL(fp32 || quant)")); /* the table */
    free(out);
    cJSON *j = read_json(rep);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, "integrity");
    ck_assert(cJSON_IsString(it) && strstr(it->valuestring, "skipped"));
    /* same tokens as the self run (the same numbers: bundle and container
     * hold the same q4 data) */
    cJSON *s = read_json(g_report);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "tokens_xxh3")->valuestring,
                     cJSON_GetObjectItemCaseSensitive(s, "tokens_xxh3")->valuestring);
    /* per-tensor errors: 5 layers x 7 + the tied embedding; bits/weight by
     * the q4 row rule: cols 64 -> 8*(2*16 + 2*2)/64 = 4.5; down_proj cols 172
     * -> 6 blocks, 6 groups: 8*(6*16 + 2*6)/172; embedding q8 g32 cols 64 ->
     * 8*(2*32 + 2*2)/64 = 8.5 */
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "tensors");
    ck_assert_int_eq(cJSON_GetArraySize(ts), 36);
    int seen_down = 0;
    for (const cJSON *t = ts->child; t; t = t->next) {
        const char *name = cJSON_GetObjectItemCaseSensitive(t, "name")->valuestring;
        double bits = jnum(t, "bits_per_weight"), e = jnum(t, "rel_rmse");
        ck_assert_msg(e > 0.001 && e < 0.3, "%s rel_rmse %g", name, e);
        if (strstr(name, "down_proj")) {
            ck_assert_double_eq_tol(bits, 8.0 * 108 / 172, 1e-12);
            seen_down++;
        } else if (strstr(name, "embed_tokens")) {
            ck_assert_double_eq_tol(bits, 8.5, 1e-12);
        } else {
            ck_assert_double_eq_tol(bits, 4.5, 1e-12);
        }
    }
    ck_assert_int_eq(seen_down, 5);
    const char *keys[] = {"kld_mean", "kld_median", "kld_p99", "kld_max", "top1_agreement",
                          "ppl_ref", "ppl_quant", "ppl_ratio", "positions"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        ck_assert_double_eq(jnum(j, keys[i]), jnum(s, keys[i]));
    cJSON_Delete(s);
    cJSON_Delete(j);
    check_against_run_logits(rep, g_tokens, g_lmpk);
    free(rep);
}
END_TEST

START_TEST(f32_container_is_the_reference)
{
    char *rep = path_in(g_dir, "f32.json");
    int rc = prog("lmpack-verify", NULL, NULL, g_f32, "--quality", "--against", g_ref, "--tokens",
                  g_tokens, "--json", rep, "--max-kld", "0", "--min-top1", "1", "--max-ppl-ratio",
                  "1", (char *)NULL);
    ck_assert_int_eq(rc, 0);
    cJSON *j = read_json(rep);
    ck_assert_double_eq(jnum(j, "kld_mean"), 0);
    ck_assert_double_eq(jnum(j, "kld_max"), 0);
    ck_assert_double_eq(jnum(j, "top1_agreement"), 1);
    ck_assert_double_eq(jnum(j, "ppl_ratio"), 1);
    ck_assert_double_eq(jnum(j, "bits_per_weight"), 32);
    ck_assert_double_eq(jnum(j, "weights_rel_rmse"), 0);
    cJSON_Delete(j);
    free(rep);
}
END_TEST

START_TEST(text_source)
{
    char *txt = path_in(g_dir, "story.txt"), *tok = path_in(g_dir, "story.tok"), *out = NULL;
    char *rep = path_in(g_dir, "text.json");
    const char *story = "Once upon a time, there was a little girl named Lily. She loved to play "
                        "outside in the sun. One day, she saw a big red ball in the park.";
    t_write(txt, story, strlen(story));
    int rc = prog("lmpack-verify", NULL, NULL, g_lmpk, "--quality", "--against", g_ref, "--text",
                  txt, "--ctx", "16", "--save-tokens", tok, "--json", rep, (char *)NULL);
    ck_assert_int_eq(rc, 0);
    /* the sequences are BOS + 15 tokens each of the tokenizer's output */
    ck_assert_int_eq(prog("lmpack-tokenize", &out, NULL, g_ref, "--file", txt, (char *)NULL), 0);
    int *all;
    long n = lmp_parse_ids(out, &all);
    ck_assert_int_gt(n, 20);
    size_t sz;
    unsigned char *t = t_slurp(tok, &sz);
    long k = 0, lines = 0, pos = 0;
    for (char *p = (char *)t, *e; *p; p = e + 1, lines++) {
        e = strchr(p, '\n');
        *e = '\0';
        int *ids;
        long T = lmp_parse_ids(p, &ids);
        ck_assert_int_eq(ids[0], 1);
        for (long i = 1; i < T; i++) ck_assert_int_eq(ids[i], all[k++]);
        ck_assert_int_le(T, 16);
        pos += T - 1;
        free(ids);
    }
    ck_assert_int_eq(k, n);
    ck_assert_int_eq(lines, (n + 14) / 15);
    cJSON *j = read_json(rep);
    ck_assert_double_eq(jnum(j, "positions"), (double)pos);
    cJSON_Delete(j);
    free(t);
    free(all);
    free(out);
    free(txt);
    free(tok);
    free(rep);
}
END_TEST

/* One step tighter than measured fails, one step looser passes. */
START_TEST(gates_fire_and_pass)
{
    cJSON *j = read_json(g_report);
    double kld = jnum(j, "kld_mean"), top1 = jnum(j, "top1_agreement"),
           ratio = jnum(j, "ppl_ratio");
    char tk[32], tt[32], tr[32], lk[32], lt[32], lr[32];
    snprintf(tk, sizeof tk, "%.9g", kld * 0.999);
    snprintf(tt, sizeof tt, "%.9g", top1 + 0.001);
    snprintf(tr, sizeof tr, "%.9g", ratio * 0.999);
    snprintf(lk, sizeof lk, "%.9g", kld * 1.001);
    snprintf(lt, sizeof lt, "%.9g", top1 - 0.001);
    snprintf(lr, sizeof lr, "%.9g", ratio * 1.001);
    char *out = NULL, *err = NULL;
    int rc = prog("lmpack-verify", &out, &err, g_bundle, "--quality", "--against", g_ref,
                  "--tokens", g_tokens, "--max-kld", tk, "--min-top1", tt, "--max-ppl-ratio", tr,
                  (char *)NULL);
    ck_assert_int_eq(rc, LMP_EXIT_QUALITY);
    ck_assert_ptr_nonnull(strstr(out, "FAIL gate max-kld: kld_mean"));
    ck_assert_ptr_nonnull(strstr(out, "FAIL gate min-top1: top1_agreement"));
    ck_assert_ptr_nonnull(strstr(out, "FAIL gate max-ppl-ratio: ppl_ratio"));
    ck_assert_ptr_nonnull(strstr(err, "3 quality gate(s) failed"));
    free(out);
    free(err);
    /* one gate alone */
    rc = prog("lmpack-verify", &out, NULL, g_bundle, "--quality", "--against", g_ref, "--tokens",
              g_tokens, "--max-kld", lk, "--min-top1", tt, "--max-ppl-ratio", lr, (char *)NULL);
    ck_assert_int_eq(rc, LMP_EXIT_QUALITY);
    ck_assert_ptr_null(strstr(out, "FAIL gate max-kld"));
    ck_assert_ptr_nonnull(strstr(out, "FAIL gate min-top1"));
    ck_assert_ptr_null(strstr(out, "FAIL gate max-ppl-ratio"));
    free(out);
    rc = prog("lmpack-verify", &out, NULL, g_bundle, "--quality", "--against", g_ref, "--tokens",
              g_tokens, "--max-kld", lk, "--min-top1", lt, "--max-ppl-ratio", lr, (char *)NULL);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_null(strstr(out, "FAIL"));
    ck_assert_ptr_nonnull(strstr(out, "ok   gate max-kld"));
    free(out);
    cJSON_Delete(j);
}
END_TEST

START_TEST(baseline_regression_gate)
{
    cJSON *j = read_json(g_report);
    double kld = jnum(j, "kld_mean"), ratio = jnum(j, "ppl_ratio");
    const char *th = cJSON_GetObjectItemCaseSensitive(j, "tokens_xxh3")->valuestring;
    char *base = path_in(g_dir, "base.json"), buf[512];
    /* a baseline 20% better in KLD, equal in PPL ratio */
    int n = snprintf(buf, sizeof buf,
                     "{\"kld_mean\": %.17g, \"ppl_ratio\": %.17g, \"tokens_xxh3\": \"%s\"}",
                     kld / 1.2, ratio, th);
    t_write(base, buf, (size_t)n);
    char *out = NULL;
    int rc = prog("lmpack-verify", &out, NULL, g_bundle, "--quality", "--against", g_ref,
                  "--tokens", g_tokens, "--baseline", base, "--max-regression", "19", (char *)NULL);
    ck_assert_int_eq(rc, LMP_EXIT_QUALITY);
    ck_assert_ptr_nonnull(strstr(out, "FAIL gate baseline-kld"));
    ck_assert_ptr_null(strstr(out, "FAIL gate baseline-ppl-ratio"));
    free(out);
    rc = prog("lmpack-verify", &out, NULL, g_bundle, "--quality", "--against", g_ref, "--tokens",
              g_tokens, "--baseline", base, "--max-regression", "21", (char *)NULL);
    ck_assert_int_eq(rc, 0);
    free(out);
    /* the saved report itself as the baseline: 0% regression passes */
    rc = prog("lmpack-verify", NULL, NULL, g_bundle, "--quality", "--against", g_ref, "--tokens",
              g_tokens, "--baseline", g_report, "--max-regression", "0", (char *)NULL);
    ck_assert_int_eq(rc, 0);
    /* PPL ratio 10% better in the baseline */
    n = snprintf(buf, sizeof buf, "{\"kld_mean\": %.17g, \"ppl_ratio\": %.17g}", kld, ratio / 1.1);
    t_write(base, buf, (size_t)n);
    rc = prog("lmpack-verify", &out, NULL, g_bundle, "--quality", "--against", g_ref, "--tokens",
              g_tokens, "--baseline", base, "--max-regression", "9", (char *)NULL);
    ck_assert_int_eq(rc, LMP_EXIT_QUALITY);
    ck_assert_ptr_nonnull(strstr(out, "FAIL gate baseline-ppl-ratio"));
    ck_assert_ptr_null(strstr(out, "FAIL gate baseline-kld"));
    free(out);
    /* measured on other tokens: refused (exit 1), not compared */
    n = snprintf(buf, sizeof buf,
                 "{\"kld_mean\": 1, \"ppl_ratio\": 2, \"tokens_xxh3\": \"0123456789abcdef\"}");
    t_write(base, buf, (size_t)n);
    char *err = NULL;
    rc = prog("lmpack-verify", NULL, &err, g_bundle, "--quality", "--against", g_ref, "--tokens",
              g_tokens, "--baseline", base, "--max-regression", "5", (char *)NULL);
    ck_assert_int_eq(rc, 1);
    ck_assert_ptr_nonnull(strstr(err, "other evaluation tokens"));
    free(err);
    cJSON_Delete(j);
    free(base);
}
END_TEST

START_TEST(usage_and_failures)
{
    const char *V = "lmpack-verify";
    char *err = NULL;
    /* bad usage: exit 2 */
    ck_assert_int_eq(prog(V, NULL, NULL, g_bundle, "--quality", (char *)NULL), 2);
    ck_assert_int_eq(prog(V, NULL, NULL, g_bundle, "--against", g_ref, (char *)NULL), 2);
    ck_assert_int_eq(prog(V, NULL, NULL, g_bundle, "--quality", "--against", g_ref, "--min-top1",
                          "90", (char *)NULL), 2);
    ck_assert_int_eq(prog(V, NULL, NULL, g_bundle, "--quality", "--against", g_ref, "--self",
                          "10", "--tokens", g_tokens, (char *)NULL), 2);
    ck_assert_int_eq(prog(V, NULL, NULL, g_bundle, "--quality", "--against", g_ref,
                          "--max-regression", "5", (char *)NULL), 2);
    ck_assert_int_eq(prog(V, NULL, NULL, g_bundle, "--quality", "--against", g_ref, "--json",
                          (char *)NULL), 2);
    ck_assert_int_eq(prog(V, NULL, NULL, g_bundle, "--quality", "--against", g_ref, "--ctx", "1",
                          (char *)NULL), 2);
    ck_assert_int_eq(prog(V, NULL, NULL, g_bundle, "--quality", "--against", g_ref, "--max-kld",
                          "x", (char *)NULL), 2);
    /* missing models: exit 1 naming the path */
    char *nope = path_in(g_dir, "no-such-model");
    ck_assert_int_eq(prog(V, NULL, &err, g_lmpk, "--quality", "--against", nope, "--self", "20",
                          (char *)NULL), 1);
    ck_assert_ptr_nonnull(strstr(err, "no-such-model"));
    free(err);
    ck_assert_int_eq(prog(V, NULL, &err, nope, "--quality", "--against", g_ref, "--self", "20",
                          (char *)NULL), 1);
    ck_assert_ptr_nonnull(strstr(err, "no-such-model"));
    free(err);
    /* a token beyond the vocabulary: exit 1 */
    char *bad = path_in(g_dir, "bad.tok");
    t_write(bad, "1 600 3\n", 8);
    ck_assert_int_eq(prog(V, NULL, &err, g_lmpk, "--quality", "--against", g_ref, "--tokens", bad,
                          (char *)NULL), 1);
    ck_assert_ptr_nonnull(strstr(err, "600"));
    free(err);
    /* another model's shape: exit 1 */
    ck_assert_int_eq(prog(V, NULL, &err, g_lmpk, "--quality", "--against",
                          t_data("tiny-smollm-bf16"), "--self", "20", (char *)NULL), 1);
    ck_assert_ptr_nonnull(strstr(err, "differs"));
    free(err);
    free(bad);
    free(nope);
}
END_TEST

START_TEST(integrity_before_quality)
{
    /* a damaged bundle stops at the integrity check (exit 3), quality never runs */
    char *copy = path_in(g_dir, "damaged"), cmd[4096];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", g_bundle, copy);
    ck_assert_int_eq(t_sh(cmd, NULL, NULL), 0);
    char *chunk = path_in(copy, "chunks/head.zst");
    size_t n;
    unsigned char *b = t_slurp(chunk, &n);
    b[n / 2] ^= 0x40;
    t_write(chunk, b, n);
    free(b);
    char *out = NULL;
    int rc = prog("lmpack-verify", &out, NULL, copy, "--quality", "--against", g_ref, "--self",
                  "20", (char *)NULL);
    ck_assert_int_eq(rc, LMP_EXIT_INTEGRITY);
    ck_assert_ptr_nonnull(strstr(out, "chunks/head.zst"));
    ck_assert_ptr_null(strstr(out, "KL("));
    free(out);
    free(chunk);
    free(copy);
}
END_TEST

START_TEST(report_to_stdout_is_json)
{
    char *out = NULL;
    int rc = prog("lmpack-verify", &out, NULL, g_lmpk, "--quality", "--against", g_ref, "--self",
                  "40", "--ctx", "20", "--json", "-", "--no-tensors", (char *)NULL);
    ck_assert_int_eq(rc, 0);
    cJSON *j = cJSON_Parse(out);
    ck_assert_ptr_nonnull(j);
    ck_assert_double_eq(jnum(j, "positions"), 38);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "tensors")), 0);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "reference");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(r, "xxh3_128");
    ck_assert(cJSON_IsString(h) && strlen(h->valuestring) == 32);
    /* the KV cache each side ran with: the reference float32, the int4
     * model binary16 (lmp_kv_type AUTO) */
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "quantized");
    const cJSON *kr = cJSON_GetObjectItemCaseSensitive(r, "kv_cache");
    const cJSON *kq = cJSON_GetObjectItemCaseSensitive(q, "kv_cache");
    ck_assert(cJSON_IsString(kr) && strcmp(kr->valuestring, "f32") == 0);
    ck_assert(cJSON_IsString(kq) && strcmp(kq->valuestring, "f16") == 0);
    cJSON_Delete(j);
    free(out);
}
END_TEST

/* --kv f16 on the float32 container: the model under test differs from the
 * reference only by its binary16 KV cache. The KL must be above 0 (the
 * option took effect) and tiny: stories260k over 2040 positions gave mean
 * 1e-6 and max 6e-5 nats, top-1 99.9 %; a cache read wrongly gives KLs of
 * the order of the model's own entropy (~1 nat). --kv f32 must give the
 * reference's numbers exactly, and --kv is a quality option. */
START_TEST(kv_f16_cost_on_the_float_model)
{
    char *out = NULL;
    int rc = prog("lmpack-verify", &out, NULL, g_f32, "--quality", "--against", g_ref, "--self",
                  "100", "--ctx", "50", "--json", "-", "--no-tensors", "--kv", "f16", (char *)NULL);
    ck_assert_int_eq(rc, 0);
    cJSON *j = cJSON_Parse(out);
    ck_assert_ptr_nonnull(j);
    const cJSON *kq =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "quantized"), "kv_cache");
    ck_assert(cJSON_IsString(kq) && strcmp(kq->valuestring, "f16") == 0);
    double kl = jnum(j, "kld_mean"), top1 = jnum(j, "top1_agreement");
    ck_assert_msg(kl > 0 && kl < 1e-4, "mean KL of the f16 cache %g", kl);
    ck_assert_msg(top1 >= 0.97, "top-1 agreement with the f16 cache %g", top1);
    cJSON_Delete(j);
    free(out);
    out = NULL;
    rc = prog("lmpack-verify", &out, NULL, g_f32, "--quality", "--against", g_ref, "--self", "100",
              "--ctx", "50", "--json", "-", "--no-tensors", "--kv", "f32", (char *)NULL);
    ck_assert_int_eq(rc, 0);
    j = cJSON_Parse(out);
    ck_assert_ptr_nonnull(j);
    ck_assert_double_eq(jnum(j, "kld_mean"), 0);
    cJSON_Delete(j);
    free(out);
    char *err = NULL;
    ck_assert_int_eq(prog("lmpack-verify", NULL, &err, g_bundle, "--kv", "f16", (char *)NULL), 2);
    free(err);
    err = NULL;
    ck_assert_int_eq(prog("lmpack-verify", NULL, &err, g_f32, "--quality", "--against", g_ref,
                          "--kv", "int8", (char *)NULL),
                     2);
    free(err);
}
END_TEST

Suite *lmp_suite_quality(void)
{
    Suite *s = suite_create("quality");
    TCase *tm = tcase_create("metrics");
    tcase_add_test(tm, kl_two_tokens_by_hand);
    tcase_add_test(tm, kl_three_tokens_by_hand);
    tcase_add_test(tm, kl_identical_and_extreme);
    tcase_add_test(tm, perplexity_by_hand);
    tcase_add_test(tm, quantiles_by_hand);
    tcase_add_test(tm, sequences_split_read_write);
    tcase_add_test(tm, gates_logic);
    tcase_add_test(tm, baseline_reading);
    suite_add_tcase(s, tm);
    TCase *tp = tcase_create("program");
    tcase_set_timeout(tp, 300);
    tcase_add_unchecked_fixture(tp, fixture_up, fixture_down);
    tcase_add_test(tp, self_report_matches_run_logits);
    tcase_add_test(tp, tokens_lmpk_matches_run_logits);
    tcase_add_test(tp, f32_container_is_the_reference);
    tcase_add_test(tp, text_source);
    tcase_add_test(tp, gates_fire_and_pass);
    tcase_add_test(tp, baseline_regression_gate);
    tcase_add_test(tp, usage_and_failures);
    tcase_add_test(tp, integrity_before_quality);
    tcase_add_test(tp, report_to_stdout_is_json);
    tcase_add_test(tp, kv_f16_cost_on_the_float_model);
    suite_add_tcase(s, tp);
    return s;
}
