/* Conventions shared by every bin/lmpack-* program.
 *
 * Exit codes: 0 success; 1 failure (one line on stderr naming the file and
 * what is wrong); 2 bad usage (message + "try --help" on stderr); verify
 * also uses 3 (integrity) and 4 (quality). `--help` prints usage to stdout
 * and exits 0.
 */
#ifndef LMP_CLI_H
#define LMP_CLI_H

#include <stdio.h>

#include "common/status.h"

enum {
    LMP_EXIT_OK = 0,
    LMP_EXIT_FAIL = 1,
    LMP_EXIT_USAGE = 2,
    LMP_EXIT_INTEGRITY = 3,
    LMP_EXIT_QUALITY = 4
};

/* Print "lmpack-<prog>: <msg>" and "try 'lmpack <prog> --help'" to stderr and
 * exit 2. */
void lmp_cli_usage_error(const char *prog, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3), noreturn))
#endif
    ;

/* The common end of an argument loop, for an argument no program-specific
 * option took: "-h"/"--help" -> usage(stdout), exit 0; any other "-x" ->
 * usage error "unknown option"; else the first such argument goes to
 * *positional and a second one is a usage error "unexpected argument"
 * ("-" alone counts as positional). */
void lmp_cli_other_arg(const char *prog, const char *a, const char **positional,
                       void (*usage)(FILE *));

/* Print "lmpack-<prog>: <diag message>" to stderr; return the exit code for
 * the status (1, or 3 for LMP_ERR_INTEGRITY, 4 for LMP_ERR_QUALITY). */
int lmp_cli_fail(const char *prog, const lmp_diag *d);

/* Parse helpers: strict (whole string, in range); 0 on success, -1 otherwise. */
int lmp_parse_int(const char *s, long lo, long hi, long *out);
int lmp_parse_float(const char *s, double lo, double hi, double *out);

/* Parse a list of integer ids separated by spaces and/or commas into a
 * malloc'd array (caller frees). Returns count, or -1 on a bad token. */
long lmp_parse_ids(const char *s, int **out);

/* 1 if stderr is a terminal (progress output is shown only then). */
int lmp_stderr_is_tty(void);

/* Progress line on stderr ("\r<label> 42% ..."); no-op when not a TTY.
 * done == total prints a final newline. */
void lmp_progress(const char *label, unsigned long long done, unsigned long long total);

#endif
