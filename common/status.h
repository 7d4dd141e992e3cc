/* lmpack status codes and the caller-owned diagnostic.
 *
 * Contract: library functions never print and never exit. A failing function
 * returns a status other than LMP_OK and, when the caller passed a non-NULL
 * lmp_diag, leaves a one-line message in it that names the file (and tensor
 * or field, if any) and the rule broken, e.g.
 *   "model.safetensors: tensor 'x': data_offsets [0,16) exceed the 8-byte buffer".
 * The first failure wins: a message is never overwritten by a later, more
 * generic one while unwinding (see lmp_fail).
 *
 * Cleanup style: one `out:` label per function, reached through
 * LMP_FAIL_IF / LMP_FORWARD (modelled on zstd's RETURN_ERROR_IF /
 * FORWARD_IF_ERROR), each of which expects a local `lmp_status rc` and a
 * `lmp_diag *d` in scope.
 */
#ifndef LMP_STATUS_H
#define LMP_STATUS_H

#include <stddef.h>

typedef enum lmp_status {
    LMP_OK = 0,
    LMP_ERR_ARG,         /* caller passed an invalid argument / option */
    LMP_ERR_IO,          /* open/read/write/mmap/rename failed */
    LMP_ERR_FORMAT,      /* input bytes break the format's rules */
    LMP_ERR_UNSUPPORTED, /* well-formed but not something lmpack implements */
    LMP_ERR_MODEL,       /* config and tensors disagree (missing, shape, ...) */
    LMP_ERR_INTEGRITY,   /* size or hash mismatch against a manifest */
    LMP_ERR_NOMEM,       /* allocation failed or a size overflows */
    LMP_ERR_RANGE,       /* value outside what the model allows (token id, context) */
    LMP_ERR_QUALITY,     /* a quality gate failed */
    LMP_ERR_INTERNAL     /* a bug in lmpack */
} lmp_status;

#define LMP_DIAG_MAX 512

typedef struct lmp_diag {
    lmp_status status;
    char msg[LMP_DIAG_MAX];
} lmp_diag;

/* Short stable name of a status ("ok", "io error", "format error", ...). */
const char *lmp_status_str(lmp_status st);

/* Reset a diagnostic to LMP_OK / "". NULL is a no-op. */
void lmp_diag_clear(lmp_diag *d);

/* Record a failure and return `st`. Formats the message printf-style into d
 * unless d is NULL or already holds a failure (first failure wins). */
lmp_status lmp_fail(lmp_diag *d, lmp_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prefix the message already in d with "prefix: " (used to add a file name
 * when a lower layer did not know it). No-op when d is NULL or OK. */
void lmp_diag_prefix(lmp_diag *d, const char *prefix);

/* Control flow helpers; need `lmp_status rc`, `lmp_diag *d` and label `out`. */
#define LMP_FAIL_IF(cond, st, ...)                       \
    do {                                                 \
        if (cond) {                                      \
            rc = lmp_fail(d, (st), __VA_ARGS__);         \
            goto out;                                    \
        }                                                \
    } while (0)

#define LMP_FAIL(st, ...) LMP_FAIL_IF(1, st, __VA_ARGS__)

#define LMP_FORWARD(expr)                                \
    do {                                                 \
        rc = (expr);                                     \
        if (rc != LMP_OK) goto out;                      \
    } while (0)

#endif
