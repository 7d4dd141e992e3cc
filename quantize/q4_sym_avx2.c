/* AVX2 kernels of the SYM / Q8 scale search (quantize/q4.c, sym_group):
 * the same IEEE operations, per element and per lane in the same order,
 * as the scalar reference in q4.c (cand_sym_ref, sym_codes_ref), so every
 * result is bit-identical (contract in q4_internal.h, "SYM quantizer
 * kernels"). No fused multiply-adds: the reference has none. Only called
 * after the run-time AVX2 check in q4.c. */
#include <immintrin.h>
#include <string.h>

#include "quantize/q4_internal.h"

#define TGT __attribute__((target("avx2,fma")))

/* rne() of q4.c: (v + 1.5 * 2^23) - 1.5 * 2^23 */
TGT static inline __m256 rne8(__m256 v)
{
    const __m256 mg = _mm256_set1_ps(LMP_Q4_MAGIC);
    return _mm256_sub_ps(_mm256_add_ps(v, mg), mg);
}

/* Scalar tail exactly as the reference: clampf (NaN -> lo) then rne. */
static inline float tail_code(float v, float lo, float hi)
{
    if (!(v >= lo)) v = lo;
    else if (v > hi) v = hi;
    return (v + LMP_Q4_MAGIC) - LMP_Q4_MAGIC;
}

TGT void lmp_q4_sym_cands_avx2(const float *x, int n, const float *is, int nt, float lo, float hi,
                               float *sqx, float *sqq)
{
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    const int nv = n / 8;
    for (int k = 0; k < nt; k++) {
        const __m256 s = _mm256_set1_ps(is[k]);
        __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
        for (int v = 0; v < nv; v++) {
            __m256 xv = _mm256_loadu_ps(x + 8 * v);
            __m256 c = _mm256_mul_ps(xv, s);
            c = _mm256_max_ps(c, vlo); /* c > lo ? c : lo */
            c = _mm256_min_ps(c, vhi); /* c < hi ? c : hi */
            c = rne8(c);
            a = _mm256_add_ps(a, _mm256_mul_ps(c, xv));
            b = _mm256_add_ps(b, _mm256_mul_ps(c, c));
        }
        float al[8], bl[8];
        _mm256_storeu_ps(al, a);
        _mm256_storeu_ps(bl, b);
        for (int i = 8 * nv; i < n; i++) {
            float c = tail_code(x[i] * is[k], lo, hi);
            al[0] += c * x[i];
            bl[0] += c * c;
        }
        float s1 = 0.0f, s2 = 0.0f;
        for (int l = 0; l < 8; l++) {
            s1 += al[l];
            s2 += bl[l];
        }
        sqx[k] = s1;
        sqq[k] = s2;
    }
}

TGT double lmp_q4_sym_codes_avx2(const float *x, int n, float d, int lo, int hi, int8_t *q)
{
    const __m256 vlo = _mm256_set1_ps((float)lo), vhi = _mm256_set1_ps((float)hi),
                 vd = _mm256_set1_ps(d);
    const __m256d dd = _mm256_set1_pd((double)d);
    double e = 0;
    int i = 0;
    if (d == 0.0f) { /* every code 0 (the reference's branch), r = x */
        memset(q, 0, (size_t)n);
        for (; i < n; i++) {
            double r = (double)x[i] - (double)d * 0.0;
            e += r * r;
        }
        return e;
    }
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        __m256 v = _mm256_div_ps(xv, vd);
        v = _mm256_min_ps(_mm256_max_ps(v, vlo), vhi); /* = clampf for lo, hi != 0 */
        v = rne8(v);
        __m256i qi = _mm256_cvttps_epi32(v);
        __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
        _mm_storel_epi64((__m128i *)(void *)(q + i), _mm_packs_epi16(q16, q16));
        double r2[8];
        for (int h = 0; h < 2; h++) {
            __m256d xd = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(xv, 1) : _mm256_castps256_ps128(xv));
            __m256d qd = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(v, 1) : _mm256_castps256_ps128(v));
            __m256d r = _mm256_sub_pd(xd, _mm256_mul_pd(dd, qd));
            _mm256_storeu_pd(r2 + 4 * h, _mm256_mul_pd(r, r));
        }
        for (int l = 0; l < 8; l++) e += r2[l]; /* the reference's sequential sum */
    }
    for (; i < n; i++) {
        float v = tail_code(x[i] / d, (float)lo, (float)hi);
        q[i] = (int8_t)v;
        double r = (double)x[i] - (double)d * (double)q[i];
        e += r * r;
    }
    return e;
}
