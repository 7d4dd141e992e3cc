#include "common/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void lmp_cli_usage_error(const char *prog, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "lmpack-%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ntry 'lmpack %s --help'\n", prog);
    exit(LMP_EXIT_USAGE);
}

void lmp_cli_other_arg(const char *prog, const char *a, const char **positional,
                       void (*usage)(FILE *))
{
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        usage(stdout);
        exit(LMP_EXIT_OK);
    }
    if (a[0] == '-' && a[1]) lmp_cli_usage_error(prog, "unknown option '%s'", a);
    if (*positional) lmp_cli_usage_error(prog, "unexpected argument '%s'", a);
    *positional = a;
}

int lmp_cli_fail(const char *prog, const lmp_diag *d)
{
    fprintf(stderr, "lmpack-%s: %s\n", prog,
            d && d->msg[0] ? d->msg : (d ? lmp_status_str(d->status) : "failed"));
    if (d && d->status == LMP_ERR_INTEGRITY) return LMP_EXIT_INTEGRITY;
    if (d && d->status == LMP_ERR_QUALITY) return LMP_EXIT_QUALITY;
    return LMP_EXIT_FAIL;
}

int lmp_parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int lmp_parse_float(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

long lmp_parse_ids(const char *s, int **out)
{
    *out = NULL;
    size_t cap = 16, n = 0;
    int *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 0x7fffffff ||
            (*end && *end != ' ' && *end != ',' && *end != '\t' && *end != '\n' && *end != '\r')) {
            free(ids);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            int *t = realloc(ids, cap * sizeof *ids);
            if (!t) {
                free(ids);
                return -1;
            }
            ids = t;
        }
        ids[n++] = (int)v;
        p = end;
    }
    *out = ids;
    return (long)n;
}

int lmp_stderr_is_tty(void)
{
    return isatty(2);
}

void lmp_progress(const char *label, unsigned long long done, unsigned long long total)
{
    if (!isatty(2)) return;
    int pct = total ? (int)(done * 100 / total) : 100;
    fprintf(stderr, "\r%s %3d%%", label, pct);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}
