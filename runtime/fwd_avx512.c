/* AVX-512 elementwise steps of the forward pass (see fwd_impl.h for the
 * contracts). Compiled with the AVX-512 flags; called only after the
 * run-time CPU check, and only next to the AVX-512 int4 kernel (whose
 * 512-bit instructions already set the core's frequency). */
#include "runtime/fwd_impl.h"

#include <immintrin.h>
#include "runtime/exp_simd.h"

/* lmp_silu_mul_avx2's operations 16 lanes at a time: lmp_exp16 gives
 * lmp_exp8's bits, the sign-bit mask picks what blendv picks, and the
 * elements from the last multiple of 16 on go through lmp_silu_mul_avx2,
 * which splits them into vector and scalar elements exactly as it splits
 * the whole array: the same bits as lmp_silu_mul_avx2(g, u, n). */
void lmp_silu_mul_avx512(float *g, const float *u, int n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gv = _mm512_loadu_ps(g + i);
        __m512 e = lmp_exp16(_mm512_castsi512_ps(
            _mm512_or_si512(_mm512_castps_si512(gv), sign))); /* -|g| */
        __mmask16 neg = _mm512_cmplt_epi32_mask(_mm512_castps_si512(gv), _mm512_setzero_si512());
        __m512 num = _mm512_mask_blend_ps(neg, one, e); /* sign bit of g set: e */
        __m512 sg = _mm512_div_ps(num, _mm512_add_ps(one, e));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(_mm512_mul_ps(gv, sg), _mm512_loadu_ps(u + i)));
    }
    if (i < n) lmp_silu_mul_avx2(g + i, u + i, n - i);
}
