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

void lmp__f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n);

/* f32 -> f16 with vcvtps2ph in round-to-nearest-even (immediate 0, not
 * MXCSR): the IEEE conversion lmp_f32_to_f16 writes out by hand, NaN
 * quieted with its top payload bits kept as there. */
__attribute__((target("avx,f16c"))) void lmp__f32_to_f16_f16c(const float *src, uint16_t *dst,
                                                              size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = lmp_f32_to_f16(src[i]);
}

int lmp__bf16_to_f32_avx2(const void *src, float *dst, size_t n);

/* bf16 -> f32 is a 16-bit shift (exact); a value is NaN / infinite iff its
 * exponent bits 0x7f80 are all set. Returns 1 if all values are finite. */
__attribute__((target("avx2"))) int lmp__bf16_to_f32_avx2(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    const __m256i em = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(s + 2 * i));
        __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(_mm256_and_si256(u, em), em));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), u);
    }
    int ok = _mm256_testz_si256(bad, bad);
    for (; i < n; i++) {
        uint16_t b = (uint16_t)(s[2 * i] | s[2 * i + 1] << 8);
        dst[i] = lmp_bf16_to_f32(b);
        ok &= (b & 0x7f80u) != 0x7f80u;
    }
    return ok;
}
