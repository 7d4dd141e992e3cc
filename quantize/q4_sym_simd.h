/* Helpers shared by the SYM / Q8 search kernels (q4_sym_avx2.c,
 * q4_sym_avx512.c); include only from files compiled with AVX2 enabled.
 * Contract of those kernels: quantize/q4_internal.h. */
#ifndef LMP_Q4_SYM_SIMD_H
#define LMP_Q4_SYM_SIMD_H

#include <immintrin.h>

#include "quantize/q4_internal.h"

/* Scalar tail exactly as the reference: clampf (NaN -> lo) then rne. */
static inline float tail_code(float v, float lo, float hi)
{
    if (!(v >= lo)) v = lo;
    else if (v > hi) v = hi;
    return (v + LMP_Q4_MAGIC) - LMP_Q4_MAGIC;
}

/* s[k] = ((((0 + r_k[0]) + r_k[1]) + ...) + r_k[7]) for the 8 rows r_0..7
 * (the reference's sequential lane sum), 8 candidates at once: an 8x8
 * transpose, then column adds in lane order. */
static inline __m256 seq_sum8(const __m256 r[8])
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    __m256 c[8] = {_mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                   _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                   _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                   _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
    __m256 s = _mm256_setzero_ps();
    for (int l = 0; l < 8; l++) s = _mm256_add_ps(s, c[l]);
    return s;
}

#endif
