/* Browser entry layer: the functions web/app.js calls through Emscripten.
 *
 * Everything here is a thin adapter over the library (runtime/, tokenizer/,
 * formats/): no model math lives in this file. Strings cross the boundary as
 * NUL-terminated UTF-8 in wasm memory; buffers are malloc'd by JS through the
 * exported malloc/free. Every function that can fail returns a negative
 * value (or NULL) and leaves a one-line message for lmpw_error().
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emscripten/emscripten.h>

#include "common/status.h"
#include "web/wasm_hash.h"

static char g_err[LMP_DIAG_MAX];

static int set_err(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static int set_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return -1;
}

/* Last failure message ("" if none). Valid until the next call. */
EMSCRIPTEN_KEEPALIVE const char *lmpw_error(void) { return g_err; }

/* Current size of the wasm linear memory in bytes (the page shows it). */
EMSCRIPTEN_KEEPALIVE double lmpw_memory_bytes(void)
{
    return (double)__builtin_wasm_memory_size(0) * 65536.0;
}

/* XXH3-128 of p[0..n) as 32 lowercase hex digits into out[33]. */
EMSCRIPTEN_KEEPALIVE void lmpw_hash_hex(const void *p, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    unsigned char h[16];
    lmpw_xxh3_128(p, n, h);
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hx[h[i] >> 4];
        out[2 * i + 1] = hx[h[i] & 15];
    }
    out[32] = 0;
}

/* Decompress a standalone zstd frame into a new malloc'd buffer; its size
 * goes to *out_n. Used by the page's self-check and by the bundle loader. */
EMSCRIPTEN_KEEPALIVE unsigned char *lmpw_unzstd(const void *src, size_t n, size_t *out_n)
{
    long long cs = lmpw_zstd_content_size(src, n);
    if (cs < 0) {
        set_err("not a zstd frame with a declared content size (%zu bytes)", n);
        return NULL;
    }
    unsigned char *dst = malloc(cs ? (size_t)cs : 1);
    if (!dst) {
        set_err("out of memory for %lld decompressed bytes", cs);
        return NULL;
    }
    const char *why = NULL;
    long long r = lmpw_zstd_decode(dst, (size_t)cs, src, n, &why);
    if (r != cs) {
        free(dst);
        set_err("zstd frame does not decode to its declared %lld bytes: %s", cs, why ? why : "size mismatch");
        return NULL;
    }
    *out_n = (size_t)r;
    return dst;
}
