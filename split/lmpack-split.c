/* lmpack split IN.lmpk -o BUNDLE_DIR: cut a container into a bundle
 * (chunk files, tokenizer files, manifest.json); see split/split.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/pool.h"
#include "split/split.h"
#include "split/split_cli.h"

static const char *usage_text =
    "usage: lmpack split IN.lmpk -o BUNDLE_DIR [options]\n"
    "\n"
    "Cut a container into a bundle: chunks/head.zst (embedding, final norm,\n"
    "lm_head), chunks/layers-AA-BB.zst (N transformer layers each), the\n"
    "tokenizer files under tokenizer/, and manifest.json (docs/MANIFEST.md).\n"
    "Written into BUNDLE_DIR.tmp.PID and renamed at the end; BUNDLE_DIR must\n"
    "not exist.\n"
    "\n"
    "options:\n"
    "  -o, --output DIR      bundle folder to create (required)\n" SPLIT_OPTS_HELP
    "  --name NAME           model name in the manifest (default: IN without .lmpk)\n"
    "  -t, --threads N       threads (default: all CPUs)\n"
    "  -h, --help            this text\n";

int main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *name = NULL;
    long threads = 0, fault = 0;
    lmp_split_opts o;
    lmp_split_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!v) lmp_cli_usage_error("split", "%s needs a folder name", a);
            out = v;
            i++;
        } else if (!strcmp(a, "--name")) {
            if (!v || !*v) lmp_cli_usage_error("split", "--name needs a value");
            name = v;
            i++;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!v || lmp_parse_int(v, 1, 256, &threads))
                lmp_cli_usage_error("split", "%s needs a thread count 1..256", a);
            i++;
        } else if (split_parse_opt("split", argc, argv, &i, &o)) {
        } else if (a[0] == '-' && a[1]) {
            lmp_cli_usage_error("split", "unknown option '%s'", a);
        } else if (!in) {
            in = a;
        } else {
            lmp_cli_usage_error("split", "unexpected argument '%s'", a);
        }
    }
    if (!in) lmp_cli_usage_error("split", "missing IN.lmpk");
    if (!out) lmp_cli_usage_error("split", "missing -o BUNDLE_DIR");
    split_install_fault_hook(&o, &fault);
    split_malloc_policy();
    char defname[256];
    lmp_split_default_name(in, defname, sizeof defname);
    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_lmpk *pk = NULL;
    lmp_pool *pool = NULL;
    lmp_chunk_tensor *t = NULL;
    lmp_split_file *f = NULL;
    lmp_split_src src;
    lmp_status rc = lmp_lmpk_open(&pk, in, &d);
    if (rc == LMP_OK) rc = lmp_pool_create(&pool, (int)threads, &d);
    if (rc == LMP_OK) rc = lmp_split_src_from_lmpk(pk, name ? name : defname, &src, &t, &f, &d);
    if (rc == LMP_OK) rc = lmp_split_write(&src, out, &o, pool, &d);
    free(t);
    free(f);
    lmp_pool_close(pool);
    lmp_lmpk_close(pk);
    if (rc != LMP_OK) {
        if (d.status == LMP_ERR_INTEGRITY) d.status = LMP_ERR_FORMAT;
        return lmp_cli_fail("split", &d);
    }
    return 0;
}
