/* lmpack verify BUNDLE_DIR [--json]: integrity check of a bundle.
 * Exit 0 intact, 3 integrity problem(s) (one line each on stdout:
 * "FILE: what is wrong"), 1 not a bundle / cannot run, 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli.h"
#include "common/pool.h"
#include "verify/verify.h"

static const char *usage =
    "usage: lmpack verify BUNDLE_DIR [--json] [-t N]\n"
    "\n"
    "Check a bundle's integrity: manifest schema and self-hash, every file's\n"
    "size and XXH3-128 hashes (compressed and decompressed), chunk headers\n"
    "against the manifest, every tensor the config needs present once with\n"
    "its shape.\n"
    "\n"
    "  --json    machine-readable report on stdout\n"
    "  -t N      threads (default: all CPUs)\n"
    "  --help    this text\n"
    "\n"
    "exit status: 0 intact, 3 integrity failure (one line per problem),\n"
    "1 not a bundle or unreadable, 2 bad usage\n";

typedef struct out_ctx {
    int json;
    int n;
} out_ctx;

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

static void on_problem(void *ctx, const char *file, const char *what)
{
    out_ctx *o = ctx;
    if (o->json) {
        printf("%s\n    {\"file\": ", o->n ? "," : "");
        json_str(file);
        printf(", \"problem\": ");
        json_str(what);
        printf("}");
    } else {
        printf("%s%s%s\n", file, file[0] ? ": " : "", what);
    }
    o->n++;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    long threads = 0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "-t")) {
            if (i + 1 >= argc || lmp_parse_int(argv[++i], 1, 256, &threads))
                lmp_cli_usage_error("verify", "-t needs a thread count 1..256");
        } else if (a[0] == '-') {
            lmp_cli_usage_error("verify", "unknown option '%s'", a);
        } else if (!dir) {
            dir = a;
        } else {
            lmp_cli_usage_error("verify", "one bundle folder expected");
        }
    }
    if (!dir) lmp_cli_usage_error("verify", "missing BUNDLE_DIR");
    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_pool *pool = NULL;
    if (lmp_pool_create(&pool, (int)threads, &d) != LMP_OK) return lmp_cli_fail("verify", &d);
    out_ctx o = {json, 0};
    lmp_verify_report r;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (json) {
        printf("{\n  \"bundle\": ");
        json_str(dir);
        printf(",\n  \"problems\": [");
    }
    lmp_status rc = lmp_bundle_verify(dir, pool, on_problem, &o, &r, &d);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    lmp_pool_close(pool);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (rc != LMP_OK && rc != LMP_ERR_INTEGRITY) {
        if (json) printf("],\n  \"ok\": false,\n  \"usable\": false\n}\n");
        return lmp_cli_fail("verify", &d);
    }
    if (json) {
        printf("%s],\n  \"ok\": %s,\n  \"files\": %zu,\n  \"bytes\": %llu,\n  \"seconds\": %.6f\n}\n",
               o.n ? "\n  " : "", rc == LMP_OK ? "true" : "false", r.files_checked,
               (unsigned long long)r.bytes_checked, secs);
    } else if (rc == LMP_OK) {
        printf("%s: OK (%zu files, %.1f MB verified in %.3f s)\n", dir, r.files_checked,
               (double)r.bytes_checked / 1e6, secs);
    }
    if (rc == LMP_ERR_INTEGRITY) {
        fprintf(stderr, "lmpack-verify: %s: %zu integrity problem(s)\n", dir, r.problems);
        return LMP_EXIT_INTEGRITY;
    }
    return 0;
}
