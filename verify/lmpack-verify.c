/* lmpack verify BUNDLE_DIR [--json]: integrity check of a bundle.
 * lmpack verify MODEL --quality --against REF_DIR [...]: integrity first
 * (when MODEL is a bundle), then the quantization quality gate
 * (verify/quality.h, docs/QUALITY.md).
 * Exit 0 intact (and every gate passed), 3 integrity problem(s) (one line
 * each on stdout: "FILE: what is wrong"), 4 quality gate(s) failed (one line
 * each: "FAIL gate: metric value vs limit"), 1 not a bundle / cannot run,
 * 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "common/pool.h"
#include "verify/quality.h"
#include "verify/verify.h"

#define PROG "verify"

static const char *usage =
    "usage: lmpack verify BUNDLE_DIR [--json] [-t N]\n"
    "       lmpack verify MODEL --quality --against REF_DIR [quality options]\n"
    "\n"
    "Check a bundle's integrity: manifest schema and self-hash, every file's\n"
    "size and XXH3-128 hashes (compressed and decompressed), chunk headers\n"
    "against the manifest, every tensor the config needs present once with\n"
    "its shape.\n"
    "\n"
    "  --json    machine-readable report on stdout (integrity only; with\n"
    "            --quality, --json takes a file name, see below)\n"
    "  -t N      threads (default: all CPUs); results are identical for any N\n"
    "  --help    this text\n"
    "\n"
    "--quality: after the integrity check (skipped when MODEL is not a bundle,\n"
    "e.g. an .lmpk container), run MODEL and the FP32 reference REF_DIR over\n"
    "the same tokens (teacher forcing) and compare their next-token\n"
    "distributions at every position that has a next token:\n"
    "KL(P_fp32 || P_quant) in nats (mean, median, p99, max), top-1 agreement,\n"
    "perplexity of both on the actual next tokens and their ratio, RMS change\n"
    "of the FP32 top token's probability, and per-tensor weight error\n"
    "(relative RMSE of the dequantized weights vs FP32).\n"
    "  --against DIR       the FP32 reference (Hugging Face folder) [required]\n"
    "evaluation tokens (one of; default --self 2048):\n"
    "  --self N            N tokens sampled from the reference (temperature 1,\n"
    "                      no filtering, --seed) in sequences of --ctx, each\n"
    "                      starting with BOS (else EOS, else id 0)\n"
    "  --text FILE         FILE tokenized with REF_DIR's tokenizer, cut into\n"
    "                      sequences of --ctx tokens (each starting with BOS if\n"
    "                      the model has one)\n"
    "  --tokens FILE       one sequence per line, ids separated by spaces, each\n"
    "                      fed from position 0 (--ctx not applied)\n"
    "  --ctx N             tokens per sequence (default 256)\n"
    "  --seed S            sampling seed for --self (default 1234)\n"
    "  --save-tokens FILE  write the evaluated sequences (--tokens format)\n"
    "  --kv TYPE           KV cache of MODEL: f16, f32 or auto (default: f16\n"
    "                      for int4/int8 models, as `lmpack run`); the\n"
    "                      reference always keeps float32\n"
    "gates (exit 4 when one fails; one line each naming it):\n"
    "  --max-kld X         fail if the mean KL divergence > X (nats)\n"
    "  --min-top1 P        fail if top-1 agreement < P, a FRACTION in [0, 1]\n"
    "                      (0.9 means 90%)\n"
    "  --max-ppl-ratio R   fail if perplexity(quant) / perplexity(FP32) > R\n"
    "  --baseline FILE --max-regression PCT\n"
    "                      fail if kld_mean > (1 + PCT/100) x the baseline's, or\n"
    "                      ppl_ratio > (1 + PCT/100) x the baseline's; FILE is a\n"
    "                      report written by --json from the same tokens\n"
    "output:\n"
    "  --json REPORT       write the full JSON report to REPORT ('-': stdout,\n"
    "                      instead of the table)\n"
    "  --top N             tensors listed in the table, worst first (default 8,\n"
    "                      0 = none)\n"
    "  --no-tensors        skip the per-tensor weight errors\n"
    "\n"
    "exit status: 0 intact and every gate passed, 3 integrity failure (one\n"
    "line per problem), 4 quality gate failed, 1 not a bundle, model missing\n"
    "or unreadable, 2 bad usage\n";

typedef struct out_ctx {
    int json;
    int n;
    FILE *f;
} out_ctx;

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void on_problem(void *ctx, const char *file, const char *what)
{
    out_ctx *o = ctx;
    if (o->json) {
        fprintf(o->f, "%s\n    {\"file\": ", o->n ? "," : "");
        json_str(o->f, file);
        fprintf(o->f, ", \"problem\": ");
        json_str(o->f, what);
        fprintf(o->f, "}");
    } else {
        fprintf(o->f, "%s%s%s\n", file, file[0] ? ": " : "", what);
    }
    o->n++;
}

/* ------------------------------------------------------------ options */

typedef struct opts {
    const char *dir;
    long threads;
    int json;                 /* integrity-only --json */
    int quality;
    const char *against, *report, *save_tokens, *baseline;
    lmp_quality_opts q;
    int n_sources;
    lmp_quality_gates g;
    int has_regression;
    int has_kv; /* --kv given */
    long top;
} opts;

static const char *need_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) lmp_cli_usage_error(PROG, "option %s needs a value", argv[*i]);
    return argv[++*i];
}

static double need_float(int argc, char **argv, int *i, double lo, double hi, const char *what)
{
    const char *opt = argv[*i], *v = need_value(argc, argv, i);
    double x;
    if (lmp_parse_float(v, lo, hi, &x))
        lmp_cli_usage_error(PROG, "%s wants %s, got '%s'", opt, what, v);
    return x;
}

static long need_int(int argc, char **argv, int *i, long lo, long hi, const char *what)
{
    const char *opt = argv[*i], *v = need_value(argc, argv, i);
    long x;
    if (lmp_parse_int(v, lo, hi, &x)) lmp_cli_usage_error(PROG, "%s wants %s, got '%s'", opt, what, v);
    return x;
}

static void parse(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    lmp_quality_defaults(&o->q);
    o->top = 8;
    int quality = 0; /* --json takes a value only with --quality: look ahead */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quality")) quality = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            exit(0);
        } else if (!strcmp(a, "--json")) {
            if (quality)
                o->report = need_value(argc, argv, &i);
            else
                o->json = 1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            o->threads = need_int(argc, argv, &i, 1, 256, "a thread count 1..256");
        } else if (!strcmp(a, "--quality")) {
            o->quality = 1;
        } else if (!strcmp(a, "--kv")) {
            if (lmp_kv_type_parse(need_value(argc, argv, &i), &o->q.kv) != 0)
                lmp_cli_usage_error(PROG, "--kv wants auto, f32 or f16, got '%s'", argv[i]);
            o->has_kv = 1;
        } else if (!strcmp(a, "--against")) {
            o->against = need_value(argc, argv, &i);
        } else if (!strcmp(a, "--self")) {
            o->q.source = LMP_QSRC_SELF;
            o->q.self_tokens = need_int(argc, argv, &i, 2, 1L << 30, "a token count >= 2");
            o->n_sources++;
        } else if (!strcmp(a, "--text")) {
            o->q.source = LMP_QSRC_TEXT;
            o->q.path = need_value(argc, argv, &i);
            o->n_sources++;
        } else if (!strcmp(a, "--tokens")) {
            o->q.source = LMP_QSRC_TOKENS;
            o->q.path = need_value(argc, argv, &i);
            o->n_sources++;
        } else if (!strcmp(a, "--ctx")) {
            o->q.ctx = (int)need_int(argc, argv, &i, 2, 1 << 24, "a sequence length >= 2");
        } else if (!strcmp(a, "--seed")) {
            o->q.seed = (uint64_t)need_int(argc, argv, &i, 0, 0x7fffffffL,
                                           "an integer in [0, 2^31)");
        } else if (!strcmp(a, "--save-tokens")) {
            o->save_tokens = need_value(argc, argv, &i);
        } else if (!strcmp(a, "--max-kld")) {
            o->g.has_max_kld = 1;
            o->g.max_kld = need_float(argc, argv, &i, 0, 1e9, "a KL divergence >= 0 (nats)");
        } else if (!strcmp(a, "--min-top1")) {
            o->g.has_min_top1 = 1;
            o->g.min_top1 = need_float(argc, argv, &i, 0, 1, "a fraction in [0, 1] (0.9 = 90%)");
        } else if (!strcmp(a, "--max-ppl-ratio")) {
            o->g.has_max_ppl_ratio = 1;
            o->g.max_ppl_ratio = need_float(argc, argv, &i, 0, 1e9, "a ratio > 0");
        } else if (!strcmp(a, "--baseline")) {
            o->baseline = need_value(argc, argv, &i);
        } else if (!strcmp(a, "--max-regression")) {
            o->has_regression = 1;
            o->g.max_regression_pct = need_float(argc, argv, &i, 0, 1e9, "a percentage >= 0");
        } else if (!strcmp(a, "--top")) {
            o->top = need_int(argc, argv, &i, 0, 1 << 20, "a count >= 0");
        } else if (!strcmp(a, "--no-tensors")) {
            o->q.tensor_errors = 0;
        } else if (a[0] == '-') {
            lmp_cli_usage_error(PROG, "unknown option '%s'", a);
        } else if (!o->dir) {
            o->dir = a;
        } else {
            lmp_cli_usage_error(PROG, "one bundle folder expected");
        }
    }
    if (!o->dir) lmp_cli_usage_error(PROG, "missing BUNDLE_DIR");
    int qopt = o->against || o->n_sources || o->save_tokens || o->baseline || o->has_regression ||
               o->has_kv ||
               o->g.has_max_kld || o->g.has_min_top1 || o->g.has_max_ppl_ratio;
    if (!o->quality && qopt) lmp_cli_usage_error(PROG, "quality options need --quality");
    if (!o->quality) return;
    if (!o->against) lmp_cli_usage_error(PROG, "--quality needs --against REF_DIR (the FP32 model)");
    if (o->n_sources > 1) lmp_cli_usage_error(PROG, "give one of --self, --text and --tokens");
    if (!o->baseline != !o->has_regression)
        lmp_cli_usage_error(PROG, "--baseline and --max-regression go together");
    o->g.has_baseline = o->baseline != NULL;
}

/* ------------------------------------------------------------ integrity */

static int is_bundle(const char *path)
{
    if (!lmp_is_dir(path)) return 0;
    char *m = lmp_path_join(path, "manifest.json"), *c = lmp_path_join(path, "chunks");
    int yes = (m && lmp_exists(m)) || (c && lmp_exists(c));
    free(m);
    free(c);
    return yes;
}

/* Returns an exit code (0 when intact). */
static int integrity(const opts *o, lmp_pool *pool, FILE *f, int json)
{
    lmp_diag d;
    lmp_diag_clear(&d);
    out_ctx oc = {json, 0, f};
    lmp_verify_report r;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (json) {
        fprintf(f, "{\n  \"bundle\": ");
        json_str(f, o->dir);
        fprintf(f, ",\n  \"problems\": [");
    }
    lmp_status rc = lmp_bundle_verify(o->dir, pool, on_problem, &oc, &r, &d);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (rc != LMP_OK && rc != LMP_ERR_INTEGRITY) {
        if (json) fprintf(f, "],\n  \"ok\": false,\n  \"usable\": false\n}\n");
        return lmp_cli_fail(PROG, &d);
    }
    if (json) {
        fprintf(f, "%s],\n  \"ok\": %s,\n  \"files\": %zu,\n  \"bytes\": %llu,\n  \"seconds\": %.6f\n}\n",
                oc.n ? "\n  " : "", rc == LMP_OK ? "true" : "false", r.files_checked,
                (unsigned long long)r.bytes_checked, secs);
    } else if (rc == LMP_OK) {
        fprintf(f, "%s: OK (%zu files, %.1f MB verified in %.3f s)\n", o->dir, r.files_checked,
                (double)r.bytes_checked / 1e6, secs);
    }
    if (rc == LMP_ERR_INTEGRITY) {
        fprintf(stderr, "lmpack-verify: %s: %zu integrity problem(s)\n", o->dir, r.problems);
        return LMP_EXIT_INTEGRITY;
    }
    return 0;
}

/* ------------------------------------------------------------ quality */

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    lmp_progress("quality: positions", done, total);
}

static int cmp_err_desc(const void *a, const void *b)
{
    double x = ((const lmp_tensor_err *)a)->rel_rmse, y = ((const lmp_tensor_err *)b)->rel_rmse;
    return (x < y) - (x > y);
}

static void print_table(FILE *f, const opts *o, const lmp_quality_report *r)
{
    if (r->source == LMP_QSRC_SELF)
        fprintf(f, "tokens:  %zu sequences sampled from the reference (seed %llu, ctx %d), ",
                r->sequences, (unsigned long long)r->seed, r->ctx);
    else
        fprintf(f, "tokens:  %zu sequences from %s, ", r->sequences, o->q.path);
    fprintf(f, "%llu positions; KV cache fp32 %s, quant %s\n", (unsigned long long)r->positions,
            r->ref_kv, r->quant_kv);
    fprintf(f, "KL(fp32 || quant), nats:  mean %.6f  median %.6f  p99 %.6f  max %.6f\n",
            r->kld_mean, r->kld_median, r->kld_p99, r->kld_max);
    fprintf(f, "top-1 agreement:           %.4f (%.2f%%)\n", r->top1_agreement,
            100.0 * r->top1_agreement);
    fprintf(f, "perplexity:                fp32 %.4f  quant %.4f  ratio %.6f\n", r->ppl_ref,
            r->ppl_quant, r->ppl_ratio);
    fprintf(f, "fp32 top-token prob change: RMS %.6f\n", r->top_prob_rms);
    if (!r->n_tensors) return;
    fprintf(f, "weights:                   %.3f bits/weight, relative RMSE %.5f overall\n",
            r->bits_per_weight, r->weights_rel_rmse);
    size_t n = r->n_tensors < (size_t)o->top ? r->n_tensors : (size_t)o->top;
    if (!n) return;
    lmp_tensor_err *s = malloc(r->n_tensors * sizeof *s);
    if (!s) return;
    memcpy(s, r->tensors, r->n_tensors * sizeof *s);
    qsort(s, r->n_tensors, sizeof *s, cmp_err_desc);
    fprintf(f, "worst tensors (of %zu):\n  %-44s %-5s %6s %10s %10s\n", r->n_tensors, "tensor",
            "kind", "bits", "rel_rmse", "max_abs");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  %-44s %-5s %6.3f %10.6f %10.6f\n", s[i].name, s[i].kind,
                s[i].bits_per_weight, s[i].rel_rmse, s[i].max_abs);
    free(s);
}

static int quality(opts *o, lmp_pool *pool, const char *integrity_note)
{
    lmp_diag dg, *d = &dg;
    lmp_diag_clear(d);
    lmp_status rc = LMP_OK;
    lmp_quality_report r = {0};
    lmp_quality_seqs seqs = {0};
    lmp_quality_meta meta = {0};
    lmp_gate_result gates[LMP_QUALITY_MAX_GATES];
    int n_gates = 0, failed = 0, code = 0;
    char *js = NULL;
    lmp_out out = {0};
    int to_stdout = o->report && !strcmp(o->report, "-");
    FILE *txt = to_stdout ? stderr : stdout;

    if (o->baseline) /* fail fast on an unreadable baseline */
        LMP_FORWARD(lmp_quality_read_baseline(o->baseline, NULL, &o->g.base_kld,
                                              &o->g.base_ppl_ratio, d));
    meta.ref_path = o->against;
    meta.quant_path = o->dir;
    meta.source_path = o->q.source == LMP_QSRC_SELF ? NULL : o->q.path;
    meta.integrity = integrity_note;
    LMP_FORWARD(lmp_quality_hash_model(o->against, meta.ref_hash, meta.ref_hashed,
                                       sizeof meta.ref_hashed, d));
    LMP_FORWARD(lmp_quality_hash_model(o->dir, meta.quant_hash, meta.quant_hashed,
                                       sizeof meta.quant_hashed, d));
    o->q.progress = on_progress;
    LMP_FORWARD(lmp_quality_run(o->against, o->dir, &o->q, pool, &r, &seqs, d));
    if (o->save_tokens) LMP_FORWARD(lmp_quality_seqs_write(&seqs, o->save_tokens, d));
    if (o->baseline)
        LMP_FORWARD(lmp_quality_read_baseline(o->baseline, r.tokens_xxh3, &o->g.base_kld,
                                              &o->g.base_ppl_ratio, d));
    n_gates = lmp_quality_check_gates(&r, &o->g, gates);
    if (!to_stdout) {
        fprintf(stdout, "quality of %s against %s\n", o->dir, o->against);
        print_table(stdout, o, &r);
    }
    for (int i = 0; i < n_gates; i++) {
        const lmp_gate_result *g = &gates[i];
        int upper = strcmp(g->gate, "min-top1") != 0;
        fprintf(txt, "%s gate %s: %s %.6g %s limit %.6g\n", g->ok ? "ok  " : "FAIL", g->gate,
                g->metric, g->value, g->ok ? (upper ? "<=" : ">=") : (upper ? ">" : "<"),
                g->limit);
        failed += !g->ok;
    }
    if (o->report) {
        js = lmp_quality_report_json(&r, &meta, gates, n_gates);
        LMP_FAIL_IF(!js, LMP_ERR_NOMEM, "out of memory for the JSON report");
        if (to_stdout) {
            fputs(js, stdout);
            fputc('\n', stdout);
        } else {
            LMP_FORWARD(lmp_out_open(&out, o->report, d));
            LMP_FORWARD(lmp_out_write(&out, js, strlen(js), d));
            LMP_FORWARD(lmp_out_write(&out, "\n", 1, d));
            LMP_FORWARD(lmp_out_commit(&out, d));
        }
    }
    if (failed) {
        fprintf(stderr, "lmpack-verify: %s: %d quality gate(s) failed\n", o->dir, failed);
        code = LMP_EXIT_QUALITY;
    }
out:
    if (rc != LMP_OK) code = lmp_cli_fail(PROG, d);
    lmp_out_abort(&out);
    free(js);
    lmp_quality_seqs_free(&seqs);
    lmp_quality_report_free(&r);
    return code;
}

int main(int argc, char **argv)
{
    opts o;
    parse(argc, argv, &o);
    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_pool *pool = NULL;
    if (lmp_pool_create(&pool, (int)o.threads, &d) != LMP_OK) return lmp_cli_fail(PROG, &d);
    int code;
    if (!o.quality) {
        code = integrity(&o, pool, stdout, o.json);
    } else {
        int to_stdout = o.report && !strcmp(o.report, "-");
        const char *note = "skipped (not a bundle)";
        code = 0;
        if (is_bundle(o.dir)) {
            code = integrity(&o, pool, to_stdout ? stderr : stdout, 0);
            note = "ok";
        }
        if (code == 0) code = quality(&o, pool, note);
    }
    lmp_pool_close(pool);
    return code;
}
