/* F16C bulk f16 -> f32 (exact, like the scalar lmp_f16_to_f32: vcvtph2ps
 * converts every f16 value exactly, subnormals and NaN payloads included).
 * Called only from lmp_to_f32 after a run-time CPU check. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/dtype.h"

void lmp__f16_to_f32_f16c(const void *src, float *dst, size_t n);

/* target attribute: the libFuzzer build compiles this file without -mf16c */
__attribute__((target("avx,f16c"))) void lmp__f16_to_f32_f16c(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(s + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++) dst[i] = lmp_f16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
}
