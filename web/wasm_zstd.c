/* zstd frame decoding for the browser build (see web/wasm_hash.h). Compiled
 * together with zstd's single-file decoder (build/web/src/zstddeclib.c,
 * included below), which is fetched at build time from Debian's source
 * package and never committed. */
#include "zstddeclib.c"

#include "web/wasm_hash.h"

long long lmpw_zstd_content_size(const void *src, size_t n)
{
    unsigned long long s = ZSTD_getFrameContentSize(src, n);
    if (s == ZSTD_CONTENTSIZE_UNKNOWN || s == ZSTD_CONTENTSIZE_ERROR) return -1;
    return (long long)s;
}

long long lmpw_zstd_decode(void *dst, size_t cap, const void *src, size_t n,
                           const char **err)
{
    size_t r = ZSTD_decompress(dst, cap, src, n);
    if (ZSTD_isError(r)) {
        if (err) *err = ZSTD_getErrorName(r);
        return -1;
    }
    return (long long)r;
}
