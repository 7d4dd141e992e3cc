/* lmpack manifest BUNDLE_DIR: (re)generate BUNDLE_DIR/manifest.json from the
 * bundle's chunk and tokenizer files. The result is byte-identical to the
 * manifest `lmpack split` wrote for the same files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/pool.h"
#include "manifest/manifest.h"

static const char *usage =
    "usage: lmpack manifest BUNDLE_DIR [-t N]\n"
    "\n"
    "Regenerate BUNDLE_DIR/manifest.json from chunks/*.zst and tokenizer/*\n"
    "(schema: docs/MANIFEST.md). Every chunk is read, checked and hashed.\n"
    "\n"
    "  -t N      threads (default: all CPUs)\n"
    "  --help    this text\n";

int main(int argc, char **argv)
{
    const char *dir = NULL;
    long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "-t")) {
            if (i + 1 >= argc || lmp_parse_int(argv[++i], 1, 256, &threads))
                lmp_cli_usage_error("manifest", "-t needs a thread count 1..256");
        } else if (a[0] == '-') {
            lmp_cli_usage_error("manifest", "unknown option '%s'", a);
        } else if (!dir) {
            dir = a;
        } else {
            lmp_cli_usage_error("manifest", "one bundle folder expected");
        }
    }
    if (!dir) lmp_cli_usage_error("manifest", "missing BUNDLE_DIR");
    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_pool *pool = NULL;
    lmp_manifest *m = NULL;
    lmp_status rc = lmp_pool_create(&pool, (int)threads, &d);
    if (rc == LMP_OK) rc = lmp_manifest_scan(&m, dir, pool, &d);
    if (rc == LMP_OK) rc = lmp_manifest_write(m, dir, &d);
    lmp_manifest_free(m);
    lmp_pool_close(pool);
    if (rc != LMP_OK) {
        if (d.status == LMP_ERR_INTEGRITY) d.status = LMP_ERR_FORMAT; /* exit 1 here */
        return lmp_cli_fail("manifest", &d);
    }
    return 0;
}
