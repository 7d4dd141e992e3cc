/* The command line shared by `lmpack convert` and `lmpack quantize`
 * (included by both programs; not part of the library because it prints and
 * exits). */
#ifndef LMP_CONVERT_CLI_MAIN_H
#define LMP_CONVERT_CLI_MAIN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/cli.h"
#include "convert/convert.h"

/* Print s as a JSON string literal. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void cli_progress(void *ctx, uint64_t done, uint64_t total)
{
    lmp_progress((const char *)ctx, done, total);
}

static void cli_usage(FILE *f, const char *prog, int quantize)
{
    lmp_convert_opts def;
    lmp_convert_defaults(&def);
    if (quantize)
        fprintf(f,
                "usage: lmpack quantize IN.lmpk -o OUT.lmpk [options]\n"
                "Quantize an f32/f16/bf16 container to grouped int4 (same result as\n"
                "`lmpack convert --dtype q4` on the original folder).\n\n");
    else
        fprintf(f,
                "usage: lmpack convert MODEL_DIR -o OUT.lmpk [options]\n"
                "Convert a Hugging Face Llama model folder (config.json, safetensors, tokenizer\n"
                "files) to an .lmpk container in one streaming pass.\n\n");
    fprintf(f, "options:\n  -o, --output FILE  output container (required)\n");
    if (!quantize)
        fprintf(f, "  --dtype T          f32, f16, bf16 or q4 for the 2-D weights (default %s)\n",
                lmp_kind_name(def.dtype));
    fprintf(f,
            "  --group N          q4/q8 group length: 32, 64 or 128 (default %d)\n"
            "  --scheme S         q4 scheme: sym or asym (default %s)\n"
            "  --embed K          embed_tokens / lm_head storage: q4, q8, f16, f32, bf16\n"
            "                     (default %s with q4, else the --dtype)\n"
            "  --no-search        plain min/max scales (faster, a little less accurate)\n"
            "  -t, --threads N    worker threads (default: all CPUs); output is identical\n"
            "  --json             print a JSON summary on stdout\n"
            "  -h, --help         this help\n"
            "Norms are always stored as f32.\n",
            def.group, lmp_q4_scheme_name(def.scheme),
            lmp_kind_name(lmp_convert_embed_kind(&def)));
    (void)prog;
}

static int convert_main(int argc, char **argv, const char *prog, int quantize)
{
    lmp_convert_opts o;
    lmp_convert_defaults(&o);
    const char *in = NULL, *out = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cli_usage(stdout, prog, quantize);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!v) lmp_cli_usage_error(prog, "%s needs a file name", a);
            out = v;
            i++;
        } else if (!quantize && !strcmp(a, "--dtype")) {
            int k = v ? lmp_kind_from_name(v) : -1;
            if (k != LMP_MAT_F32 && k != LMP_MAT_F16 && k != LMP_MAT_BF16 && k != LMP_MAT_Q4)
                lmp_cli_usage_error(prog, "--dtype must be f32, f16, bf16 or q4");
            o.dtype = (lmp_mat_kind)k;
            i++;
        } else if (!strcmp(a, "--group")) {
            if (!v || lmp_parse_int(v, 1, 1 << 20, &n) || (n != 32 && n != 64 && n != 128))
                lmp_cli_usage_error(prog, "--group must be 32, 64 or 128");
            o.group = (int)n;
            i++;
        } else if (!strcmp(a, "--scheme")) {
            int sc = v ? lmp_q4_scheme_from_name(v) : -1;
            if (sc != LMP_Q4_SYM && sc != LMP_Q4_ASYM)
                lmp_cli_usage_error(prog, "--scheme must be sym or asym");
            o.scheme = sc;
            i++;
        } else if (!strcmp(a, "--embed")) {
            int k = v ? lmp_kind_from_name(v) : -1;
            if (k < 0) lmp_cli_usage_error(prog, "--embed must be q4, q8, f16, bf16 or f32");
            o.embed = k;
            i++;
        } else if (!strcmp(a, "--no-search")) {
            o.method = LMP_Q4_MINMAX;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!v || lmp_parse_int(v, 1, 256, &n))
                lmp_cli_usage_error(prog, "%s needs a thread count 1..256", a);
            o.threads = (int)n;
            i++;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            lmp_cli_usage_error(prog, "unknown option '%s'", a);
        } else if (!in) {
            in = a;
        } else {
            lmp_cli_usage_error(prog, "unexpected argument '%s'", a);
        }
    }
    if (!in) lmp_cli_usage_error(prog, quantize ? "missing IN.lmpk" : "missing MODEL_DIR");
    if (!out) lmp_cli_usage_error(prog, "missing -o OUT.lmpk");
    if (quantize) o.dtype = LMP_MAT_Q4;
    if (lmp_stderr_is_tty()) {
        o.progress = cli_progress;
        o.progress_ctx = (void *)prog;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_convert_stats st;
    if (lmp_convert(in, out, &o, &st, &d) != LMP_OK) return lmp_cli_fail(prog, &d);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double bpw = st.weight_elems ? 8.0 * (double)st.weight_bytes / (double)st.weight_elems : 0;
    lmp_mat_kind ek = lmp_convert_embed_kind(&o);
    int quant = o.dtype == LMP_MAT_Q4 || ek == LMP_MAT_Q4 || ek == LMP_MAT_Q8;
    if (json) {
        printf("{\"input\": ");
        json_str(in);
        printf(", \"output\": ");
        json_str(out);
        printf(", \"dtype\": \"%s\", \"embed\": \"%s\", "
               "\"group\": %d, \"scheme\": \"%s\", \"search\": %s, \"tensors\": %llu, "
               "\"in_bytes\": %llu, \"out_bytes\": %llu, \"weight_elems\": %llu, "
               "\"weight_bytes\": %llu, \"bits_per_weight\": %.6f, \"seconds\": %.3f, "
               "\"peak_rss_kb\": %ld}\n",
               lmp_kind_name(o.dtype), lmp_kind_name(ek), quant ? o.group : 0,
               o.dtype == LMP_MAT_Q4 || ek == LMP_MAT_Q4 ? lmp_q4_scheme_name(o.scheme) : "none",
               o.method == LMP_Q4_SEARCH ? "true" : "false", (unsigned long long)st.n_tensors,
               (unsigned long long)st.in_bytes, (unsigned long long)st.out_bytes,
               (unsigned long long)st.weight_elems, (unsigned long long)st.weight_bytes, bpw,
               secs, ru.ru_maxrss);
    } else {
        printf("%s: %llu tensors, %llu -> %llu bytes, %.4f bits/weight, %.2f s\n", out,
               (unsigned long long)st.n_tensors, (unsigned long long)st.in_bytes,
               (unsigned long long)st.out_bytes, bpw, secs);
    }
    return 0;
}

#endif
