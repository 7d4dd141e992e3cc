/* The vector e^x of the runtime's SIMD kernels (softmax in attention, SiLU),
 * for x <= 0: x = n ln2 + r, |r| <= ln2/2 (ln2 split in two parts), a
 * degree-6 polynomial for e^r, scaled by 2^n through the exponent bits.
 * Relative error about 2 ulp on [-87, 0]; x < -87 gives 0 (e^-87 ~ 1.6e-38,
 * below FLT_MIN). exp8 (AVX2 + FMA) and exp16 (AVX-512F) do the same IEEE
 * operations per lane, so they give the same bits (tests/test_perf.c).
 * Include only from files compiled with those instruction sets. */
#ifndef LMP_EXP_SIMD_H
#define LMP_EXP_SIMD_H

#include <immintrin.h>

#define LMP_EXP_LOG2E 1.44269504088896341f
#define LMP_EXP_LN2_HI 0.693359375f
#define LMP_EXP_LN2_LO -2.12194440e-4f
#define LMP_EXP_P0 1.9875691500e-4f
#define LMP_EXP_P1 1.3981999507e-3f
#define LMP_EXP_P2 8.3334519073e-3f
#define LMP_EXP_P3 4.1665795894e-2f
#define LMP_EXP_P4 1.6666665459e-1f
#define LMP_EXP_P5 5.0000001201e-1f

#if defined(__AVX2__) && defined(__FMA__)
static inline __m256 lmp_exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.0f);
    __m256 zero_mask = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LMP_EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LMP_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LMP_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(LMP_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(LMP_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(LMP_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(LMP_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(LMP_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(LMP_EXP_P5));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(zero_mask, y);
}
#endif

#if defined(__AVX512F__)
static inline __m512 lmp_exp16(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(-87.0f);
    __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ);
    x = _mm512_max_ps(x, lo);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LMP_EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LMP_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LMP_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(LMP_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(LMP_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(LMP_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(LMP_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(LMP_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(LMP_EXP_P5));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    return _mm512_maskz_mov_ps(keep, y);
}
#endif

#endif
