/* Hashing and decompression primitives of the browser build. Separate
 * translation units (web/wasm_hash.c, web/wasm_zstd.c) because zstd's
 * bundled xxhash.h and the system one share an include guard. */
#ifndef LMP_WASM_HASH_H
#define LMP_WASM_HASH_H

#include <stddef.h>

/* Canonical (big-endian) XXH3-128 digest of p[0..n) into out[16]. */
void lmpw_xxh3_128(const void *p, size_t n, unsigned char out[16]);
/* Content size declared in the zstd frame header, or -1 if absent/invalid. */
long long lmpw_zstd_content_size(const void *src, size_t n);
/* Decode one complete zstd frame into dst[cap]. Returns the decoded size, or
 * -1 and *err (static string, may be NULL) on failure. */
long long lmpw_zstd_decode(void *dst, size_t cap, const void *src, size_t n, const char **err);

#endif
