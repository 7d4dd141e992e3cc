/* XXH3-128 and zstd frame decoding for the browser build, kept in their own
 * translation unit: zstd's single-file decoder carries its own xxhash.h with
 * the same include guard as /usr/include/xxhash.h (see docs/WEB.md), so the
 * two must never meet in one file.
 *
 * Contract (used by web/app.js through web/wasm_api.c):
 *   lmpw_xxh3_128(p, n, out)   writes the 16-byte canonical (big-endian)
 *                              XXH3-128 of p[0..n) to out; the manifest's hex
 *                              string is exactly these bytes in hex.
 *   lmpw_zstd_content_size     decompressed size stored in a frame, or -1 if
 *                              the frame does not say / is not a zstd frame.
 *   lmpw_zstd_decode           decode a whole frame into dst[cap]; returns the
 *                              byte count, or -1 with a message in diag.
 */
/* The library calls XXH3 through libxxhash's external symbols; in wasm this
 * translation unit provides them (header-only implementation). */
#define XXH_STATIC_LINKING_ONLY
#define XXH_IMPLEMENTATION
#include <xxhash.h>

#include "web/wasm_hash.h"

void lmpw_xxh3_128(const void *p, size_t n, unsigned char out[16])
{
    XXH128_hash_t h = XXH3_128bits(p, n);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    for (int i = 0; i < 16; i++) out[i] = c.digest[i];
}
