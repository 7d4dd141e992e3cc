/* lmpack build MODEL_DIR -o BUNDLE_DIR: convert -> split -> manifest in one
 * process. The intermediate container is BUNDLE_DIR.lmpk.tmp.PID, removed
 * at the end unless --keep (then it is renamed to BUNDLE_DIR.lmpk). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "common/pool.h"
#include "convert/convert.h"
#include "split/split.h"
#include "split/split_cli.h"

#define PROG "build"

static void usage(FILE *f)
{
    lmp_convert_opts def;
    lmp_convert_defaults(&def);
    fprintf(f,
            "usage: lmpack build MODEL_DIR -o BUNDLE_DIR [options]\n"
            "\n"
            "Convert a Hugging Face Llama folder and cut it into a verified bundle\n"
            "(= lmpack convert + lmpack split, which writes the manifest) in one go.\n"
            "\n"
            "convert options:\n"
            "  --dtype T             f32, f16, bf16 or q4 for the 2-D weights (default %s)\n"
            "  --group N             q4 group length 32, 64 or 128 (default %d)\n"
            "  --scheme S            q4 scheme sym or asym (default %s)\n"
            "  --embed K             embed_tokens / lm_head storage (q4, q8, f16, f32, bf16)\n"
            "  --no-search           plain min/max q4 scales\n"
            "split options:\n" SPLIT_OPTS_HELP
            "  --name NAME           model name in the manifest (default: MODEL_DIR's name)\n"
            "other:\n"
            "  -o, --output DIR      bundle folder to create (required, must not exist)\n"
            "  --keep                keep the intermediate container as BUNDLE_DIR.lmpk\n"
            "  -t, --threads N       threads (default: all CPUs); output identical for any N\n"
            "  --json                JSON summary on stdout\n"
            "  -h, --help            this help\n",
            lmp_kind_name(def.dtype), def.group, lmp_q4_scheme_name(def.scheme));
}

int main(int argc, char **argv)
{
    lmp_convert_opts co;
    lmp_convert_defaults(&co);
    lmp_split_opts so;
    lmp_split_opts_default(&so);
    const char *in = NULL, *out = NULL, *name = NULL;
    int keep = 0, json = 0;
    long threads = 0, fault = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!v) lmp_cli_usage_error(PROG, "%s needs a folder name", a);
            out = v;
            i++;
        } else if (!strcmp(a, "--dtype")) {
            int k = v ? lmp_kind_from_name(v) : -1;
            if (k != LMP_MAT_F32 && k != LMP_MAT_F16 && k != LMP_MAT_BF16 && k != LMP_MAT_Q4)
                lmp_cli_usage_error(PROG, "--dtype must be f32, f16, bf16 or q4");
            co.dtype = (lmp_mat_kind)k;
            i++;
        } else if (!strcmp(a, "--group")) {
            if (!v || lmp_parse_int(v, 1, 1 << 20, &n) || (n != 32 && n != 64 && n != 128))
                lmp_cli_usage_error(PROG, "--group must be 32, 64 or 128");
            co.group = (int)n;
            i++;
        } else if (!strcmp(a, "--scheme")) {
            int sc = v ? lmp_q4_scheme_from_name(v) : -1;
            if (sc != LMP_Q4_SYM && sc != LMP_Q4_ASYM)
                lmp_cli_usage_error(PROG, "--scheme must be sym or asym");
            co.scheme = sc;
            i++;
        } else if (!strcmp(a, "--embed")) {
            int k = v ? lmp_kind_from_name(v) : -1;
            if (k < 0) lmp_cli_usage_error(PROG, "--embed must be q4, q8, f16, bf16 or f32");
            co.embed = k;
            i++;
        } else if (!strcmp(a, "--no-search")) {
            co.method = LMP_Q4_MINMAX;
        } else if (!strcmp(a, "--name")) {
            if (!v || !*v) lmp_cli_usage_error(PROG, "--name needs a value");
            name = v;
            i++;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!v || lmp_parse_int(v, 1, 256, &threads))
                lmp_cli_usage_error(PROG, "%s needs a thread count 1..256", a);
            i++;
        } else if (!strcmp(a, "--keep")) {
            keep = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (split_parse_opt(PROG, argc, argv, &i, &so)) {
        } else if (a[0] == '-' && a[1]) {
            lmp_cli_usage_error(PROG, "unknown option '%s'", a);
        } else if (!in) {
            in = a;
        } else {
            lmp_cli_usage_error(PROG, "unexpected argument '%s'", a);
        }
    }
    if (!in) lmp_cli_usage_error(PROG, "missing MODEL_DIR");
    if (!out) lmp_cli_usage_error(PROG, "missing -o BUNDLE_DIR");
    co.threads = (int)threads;
    split_install_fault_hook(&so, &fault);
    split_malloc_policy();
    char defname[256];
    lmp_split_default_name(in, defname, sizeof defname);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lmp_diag d;
    lmp_diag_clear(&d);
    size_t tl = strlen(out) + 48;
    char *tmp = malloc(tl), *kept = malloc(tl);
    if (!tmp || !kept) return lmp_cli_fail(PROG, &d);
    snprintf(tmp, tl, "%s.lmpk.tmp.%ld", out, (long)getpid());
    snprintf(kept, tl, "%s.lmpk", out);
    lmp_lmpk *pk = NULL;
    lmp_pool *pool = NULL;
    lmp_chunk_tensor *t = NULL;
    lmp_split_file *f = NULL;
    lmp_split_src src;
    lmp_convert_stats cs;
    lmp_status rc = LMP_OK;
    if (lmp_exists(out)) rc = lmp_fail(&d, LMP_ERR_IO, "%s: already exists (remove it first)", out);
    if (rc == LMP_OK) rc = lmp_convert(in, tmp, &co, &cs, &d);
    if (rc == LMP_OK) rc = lmp_lmpk_open(&pk, tmp, &d);
    if (rc == LMP_OK) rc = lmp_pool_create(&pool, (int)threads, &d);
    if (rc == LMP_OK) rc = lmp_split_src_from_lmpk(pk, name ? name : defname, &src, &t, &f, &d);
    if (rc == LMP_OK) rc = lmp_split_write(&src, out, &so, pool, &d);
    free(t);
    free(f);
    lmp_pool_close(pool);
    lmp_lmpk_close(pk);
    if (rc == LMP_OK && keep && rename(tmp, kept) != 0)
        rc = lmp_fail(&d, LMP_ERR_IO, "%s: cannot keep the container", kept);
    unlink(tmp); /* no-op after a successful --keep rename */
    free(tmp);
    if (rc != LMP_OK) {
        free(kept);
        if (d.status == LMP_ERR_INTEGRITY) d.status = LMP_ERR_FORMAT;
        return lmp_cli_fail(PROG, &d);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (json)
        printf("{\"input\": \"%s\", \"bundle\": \"%s\", \"container\": %s%s%s, \"seconds\": %.3f, "
               "\"peak_rss_kb\": %ld}\n",
               in, out, keep ? "\"" : "", keep ? kept : "null", keep ? "\"" : "", secs,
               ru.ru_maxrss);
    else
        fprintf(stderr, "%s: bundle written in %.2f s\n", out, secs);
    free(kept);
    return 0;
}
