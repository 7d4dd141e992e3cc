#include "common/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *lmp_status_str(lmp_status st)
{
    switch (st) {
    case LMP_OK: return "ok";
    case LMP_ERR_ARG: return "invalid argument";
    case LMP_ERR_IO: return "i/o error";
    case LMP_ERR_FORMAT: return "format error";
    case LMP_ERR_UNSUPPORTED: return "unsupported";
    case LMP_ERR_MODEL: return "model mismatch";
    case LMP_ERR_INTEGRITY: return "integrity failure";
    case LMP_ERR_NOMEM: return "out of memory";
    case LMP_ERR_RANGE: return "out of range";
    case LMP_ERR_QUALITY: return "quality gate failed";
    case LMP_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

void lmp_diag_clear(lmp_diag *d)
{
    if (!d) return;
    d->status = LMP_OK;
    d->msg[0] = '\0';
}

lmp_status lmp_fail(lmp_diag *d, lmp_status st, const char *fmt, ...)
{
    if (!d || d->status != LMP_OK) return st;
    d->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
    return st;
}

void lmp_diag_prefix(lmp_diag *d, const char *prefix)
{
    if (!d || d->status == LMP_OK || !prefix) return;
    char tmp[LMP_DIAG_MAX];
    size_t pl = strlen(prefix);
    if (pl > LMP_DIAG_MAX - 3) pl = LMP_DIAG_MAX - 3;
    memcpy(tmp, prefix, pl);
    tmp[pl] = ':';
    tmp[pl + 1] = ' ';
    size_t room = LMP_DIAG_MAX - pl - 3, ml = strlen(d->msg);
    if (ml > room) ml = room;
    memcpy(tmp + pl + 2, d->msg, ml);
    tmp[pl + 2 + ml] = '\0';
    memcpy(d->msg, tmp, sizeof tmp);
}
