/* AVX2 kernels of the SYM / Q8 scale search (quantize/q4.c, sym_group):
 * the same IEEE operations, per element and per lane in the same order,
 * as the scalar reference in q4.c (cand_sym_ref, sym_codes_ref), so every
 * result is bit-identical (contract in q4_internal.h, "SYM quantizer
 * kernels"). No fused multiply-adds: the reference has none. Only called
 * after the run-time AVX2 check in q4.c. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quantize/q4_internal.h"
#include "quantize/q4_sym_simd.h"

#define TGT __attribute__((target("avx2,fma")))

/* rne() of q4.c: (v + 1.5 * 2^23) - 1.5 * 2^23 */
TGT static inline __m256 rne8(__m256 v)
{
    const __m256 mg = _mm256_set1_ps(LMP_Q4_MAGIC);
    return _mm256_sub_ps(_mm256_add_ps(v, mg), mg);
}


TGT float lmp_q4_sym_absmax_avx2(const float *x, int n)
{
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) /* maxps(a, acc): acc when a is NaN */
        acc = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), abs), acc);
    float l[8], am = 0.0f;
    _mm256_storeu_ps(l, acc);
    for (int j = 0; j < 8; j++) am = l[j] > am ? l[j] : am;
    for (; i < n; i++) am = fabsf(x[i]) > am ? fabsf(x[i]) : am;
    if (am == 0.0f) return 0.0f;
    /* the reference keeps the first element reaching the maximum */
    const __m256 va = _mm256_set1_ps(am);
    for (i = 0; i + 8 <= n; i += 8) {
        int m = _mm256_movemask_ps(
            _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), abs), va, _CMP_EQ_OQ));
        if (m) return x[i + __builtin_ctz((unsigned)m)];
    }
    for (; i < n; i++)
        if (fabsf(x[i]) == am) return x[i];
    return 0.0f; /* not reached */
}

TGT void lmp_q4_sym_cands_avx2(const float *x, int n, const float *ts, int nt, float M, float lo,
                               float hi, float *sqx, float *sqq)
{
    float is[32]; /* nt <= 32 */
    const __m256 vm = _mm256_set1_ps(M);
    for (int k = 0; k < nt; k += 8) {
        if (k + 8 <= nt) _mm256_storeu_ps(is + k, _mm256_div_ps(_mm256_loadu_ps(ts + k), vm));
        else
            for (int j = k; j < nt; j++) is[j] = ts[j] / M;
    }
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    const int nv = n / 8;
    for (int k0 = 0; k0 < nt; k0 += 8) {
        const int kn = nt - k0 < 8 ? nt - k0 : 8;
        __m256 A[8], B[8];
        /* 4 candidates interleaved per pass over x: independent chains
         * (unused rows get scale 0; their sums are never read) */
        for (int j0 = 0; j0 < 8; j0 += 4) {
            __m256 s[4], a[4], b[4];
            for (int j = 0; j < 4; j++) {
                s[j] = _mm256_set1_ps(j0 + j < kn ? is[k0 + j0 + j] : 0.0f);
                a[j] = b[j] = _mm256_setzero_ps();
            }
            __m256 s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
            __m256 a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
            __m256 b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
            /* written out: -O2 would keep a[], b[] in memory */
#define CAND(sj, aj, bj)                                                                           \
    do {                                                                                           \
        __m256 c = _mm256_mul_ps(xv, sj);                                                          \
        c = _mm256_max_ps(c, vlo); /* c > lo ? c : lo */                                           \
        c = _mm256_min_ps(c, vhi); /* c < hi ? c : hi */                                           \
        c = rne8(c);                                                                               \
        aj = _mm256_add_ps(aj, _mm256_mul_ps(c, xv));                                              \
        bj = _mm256_add_ps(bj, _mm256_mul_ps(c, c));                                               \
    } while (0)
            for (int v = 0; v < nv; v++) {
                __m256 xv = _mm256_loadu_ps(x + 8 * v);
                CAND(s0, a0, b0);
                CAND(s1, a1, b1);
                CAND(s2, a2, b2);
                CAND(s3, a3, b3);
            }
#undef CAND
            a[0] = a0, a[1] = a1, a[2] = a2, a[3] = a3;
            b[0] = b0, b[1] = b1, b[2] = b2, b[3] = b3;
            for (int j = 0; j < 4; j++) {
                if (8 * nv < n && j0 + j < kn) { /* ragged tail: lane 0, element order */
                    float al[8], bl[8], sc = is[k0 + j0 + j];
                    _mm256_storeu_ps(al, a[j]);
                    _mm256_storeu_ps(bl, b[j]);
                    for (int i = 8 * nv; i < n; i++) {
                        float c = tail_code(x[i] * sc, lo, hi);
                        al[0] += c * x[i];
                        bl[0] += c * c;
                    }
                    a[j] = _mm256_loadu_ps(al);
                    b[j] = _mm256_loadu_ps(bl);
                }
                A[j0 + j] = a[j];
                B[j0 + j] = b[j];
            }
        }
        float s1[8], s2[8];
        _mm256_storeu_ps(s1, seq_sum8(A));
        _mm256_storeu_ps(s2, seq_sum8(B));
        memcpy(sqx + k0, s1, sizeof(float) * (size_t)kn);
        memcpy(sqq + k0, s2, sizeof(float) * (size_t)kn);
    }
}

TGT double lmp_q4_sym_codes_avx2(const float *x, int n, float d, int lo, int hi, int8_t *q,
                                float *refit)
{
    const __m256 vlo = _mm256_set1_ps((float)lo), vhi = _mm256_set1_ps((float)hi),
                 vd = _mm256_set1_ps(d);
    const __m256d dd = _mm256_set1_pd((double)d);
    double e = 0, sqx = 0;
    long long sqq = 0; /* sum of q*q: an integer, exact in any order */
    int i = 0;
    if (d == 0.0f) { /* every code 0 (the reference's branch), r = x */
        memset(q, 0, (size_t)n);
        for (; i < n; i++) {
            double r = (double)x[i] - (double)d * 0.0;
            e += r * r;
        }
        if (refit) *refit = 0.0f; /* sqq = 0 */
        return e;
    }
    __m256i vqq = _mm256_setzero_si256();
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        __m256 v = _mm256_div_ps(xv, vd);
        v = _mm256_min_ps(_mm256_max_ps(v, vlo), vhi); /* = clampf for lo, hi != 0 */
        v = rne8(v);
        __m256i qi = _mm256_cvttps_epi32(v);
        vqq = _mm256_add_epi32(vqq, _mm256_mullo_epi32(qi, qi));
        __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
        _mm_storel_epi64((__m128i *)(void *)(q + i), _mm_packs_epi16(q16, q16));
        double r2[8], qx[8];
        for (int h = 0; h < 2; h++) {
            __m256d xd = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(xv, 1) : _mm256_castps256_ps128(xv));
            __m256d qd = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(v, 1) : _mm256_castps256_ps128(v));
            __m256d r = _mm256_sub_pd(xd, _mm256_mul_pd(dd, qd));
            _mm256_storeu_pd(r2 + 4 * h, _mm256_mul_pd(r, r));
            _mm256_storeu_pd(qx + 4 * h, _mm256_mul_pd(qd, xd)); /* exact */
        }
        for (int l = 0; l < 8; l++) { /* the reference's sequential sums */
            e += r2[l];
            sqx += qx[l];
        }
    }
    int qqs[8];
    _mm256_storeu_si256((__m256i *)(void *)qqs, vqq);
    for (int l = 0; l < 8; l++) sqq += qqs[l]; /* each lane <= 16 * 127^2 */
    for (; i < n; i++) {
        float v = tail_code(x[i] / d, (float)lo, (float)hi);
        q[i] = (int8_t)v;
        double r = (double)x[i] - (double)d * (double)q[i];
        e += r * r;
        sqx += (double)q[i] * x[i];
        sqq += q[i] * q[i];
    }
    if (refit) *refit = sqq > 0 ? (float)(sqx / (double)sqq) : 0.0f;
    return e;
}
