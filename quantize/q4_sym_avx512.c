/* AVX-512 candidate kernel of the SYM / Q8 scale search: two candidates per
 * 512-bit register (one per 256-bit half, lane l of a half = lane l of the
 * AVX2 kernel), eight candidates per pass over the group. The same IEEE
 * operations, per element and lane and in the same order, as
 * sym_cands_ref in q4.c (contract in q4_internal.h), so the sums are
 * bit-identical. Only called when lmp_cpu_avx512(). */
#include <immintrin.h>
#include <string.h>

#include "quantize/q4_internal.h"
#include "quantize/q4_sym_simd.h"

#define TGT __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl")))

TGT static inline __m512 pair1(float a, float b)
{
    return _mm512_insertf32x4(
        _mm512_insertf32x4(_mm512_insertf32x4(_mm512_set1_ps(a), _mm_set1_ps(b), 2), _mm_set1_ps(b), 3),
        _mm_set1_ps(a), 0);
}

TGT void lmp_q4_sym_cands_avx512(const float *x, int n, const float *ts, int nt, float M,
                                 float lo, float hi, float *sqx, float *sqq)
{
    float is[32]; /* nt <= 32 */
    const __m256 vm = _mm256_set1_ps(M);
    for (int k = 0; k < nt; k += 8) {
        if (k + 8 <= nt) _mm256_storeu_ps(is + k, _mm256_div_ps(_mm256_loadu_ps(ts + k), vm));
        else
            for (int j = k; j < nt; j++) is[j] = ts[j] / M;
    }
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi),
                 mg = _mm512_set1_ps(LMP_Q4_MAGIC);
    const int nv = n / 8;
    for (int k0 = 0; k0 < nt; k0 += 8) {
        const int kn = nt - k0 < 8 ? nt - k0 : 8;
        float sc[8];
        for (int j = 0; j < 8; j++) sc[j] = j < kn ? is[k0 + j] : 0.0f; /* unused rows: 0 */
        __m512 s0 = pair1(sc[0], sc[1]), s1 = pair1(sc[2], sc[3]), s2 = pair1(sc[4], sc[5]),
               s3 = pair1(sc[6], sc[7]);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0,
               b3 = a0;
#define CAND(sj, aj, bj)                                                                           \
    do {                                                                                           \
        __m512 c = _mm512_mul_ps(xv, sj);                                                          \
        c = _mm512_max_ps(c, vlo); /* c > lo ? c : lo */                                           \
        c = _mm512_min_ps(c, vhi); /* c < hi ? c : hi */                                           \
        c = _mm512_sub_ps(_mm512_add_ps(c, mg), mg);                                               \
        aj = _mm512_add_ps(aj, _mm512_mul_ps(c, xv));                                              \
        bj = _mm512_add_ps(bj, _mm512_mul_ps(c, c));                                               \
    } while (0)
        for (int v = 0; v < nv; v++) {
            __m512 xv = _mm512_castpd_ps(
                _mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(x + 8 * v))));
            CAND(s0, a0, b0);
            CAND(s1, a1, b1);
            CAND(s2, a2, b2);
            CAND(s3, a3, b3);
        }
#undef CAND
        __m512 az[4] = {a0, a1, a2, a3}, bz[4] = {b0, b1, b2, b3};
        __m256 A[8], B[8];
        for (int p = 0; p < 4; p++) {
            A[2 * p] = _mm512_castps512_ps256(az[p]);
            A[2 * p + 1] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(az[p]), 1));
            B[2 * p] = _mm512_castps512_ps256(bz[p]);
            B[2 * p + 1] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(bz[p]), 1));
        }
        if (8 * nv < n)
            for (int j = 0; j < kn; j++) { /* ragged tail: lane 0, element order */
                float al[8], bl[8];
                _mm256_storeu_ps(al, A[j]);
                _mm256_storeu_ps(bl, B[j]);
                for (int i = 8 * nv; i < n; i++) {
                    float c = tail_code(x[i] * sc[j], lo, hi);
                    al[0] += c * x[i];
                    bl[0] += c * c;
                }
                A[j] = _mm256_loadu_ps(al);
                B[j] = _mm256_loadu_ps(bl);
            }
        float t1[8], t2[8];
        _mm256_storeu_ps(t1, seq_sum8(A));
        _mm256_storeu_ps(t2, seq_sum8(B));
        memcpy(sqx + k0, t1, sizeof(float) * (size_t)kn);
        memcpy(sqq + k0, t2, sizeof(float) * (size_t)kn);
    }
}
