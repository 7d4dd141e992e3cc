/* AVX2 ASYM quantizer kernels: the same IEEE single operations, lane by
 * lane and in the same order, as the reference kernels in q4_quant.c (the
 * rules are in q4_internal.h), so the bytes are identical. Only for
 * n % 8 == 0 (the caller uses the reference otherwise); only called after
 * the run-time AVX2 check in q4.c. Fused multiply-adds exactly where the
 * reference calls fmaf(), separate operations everywhere else. */
#include <immintrin.h>

#include "quantize/q4_internal.h"

/* ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)) */
static inline float lane_sum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static void stats_avx2(const float *x, int n, float out[3])
{
    __m256 mn = _mm256_set1_ps(x[0]), mx = mn, s = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        mn = _mm256_min_ps(mn, v); /* mn < v ? mn : v */
        mx = _mm256_max_ps(mx, v);
        s = _mm256_add_ps(s, v);
    }
    __m128 a = _mm_min_ps(_mm256_castps256_ps128(mn), _mm256_extractf128_ps(mn, 1));
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    a = _mm_min_ps(a, _mm_movehl_ps(a, a));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    a = _mm_min_ss(a, _mm_shuffle_ps(a, a, 1));
    b = _mm_max_ss(b, _mm_shuffle_ps(b, b, 1));
    out[0] = _mm_cvtss_f32(a);
    out[1] = _mm_cvtss_f32(b);
    out[2] = lane_sum(s);
}

static void cands_avx2(const float *x, int n, float mn, float mx, int k, const float *is,
                       float *sums)
{
    const __m256 lo = _mm256_set1_ps(LMP_Q4_MAGIC), hi = _mm256_set1_ps(LMP_Q4_MAGIC + 15.0f);
    __m256 xs[16], xt[16]; /* x - mn, x - mx (n <= 128) */
    const __m256 vmn = _mm256_set1_ps(mn), vmx = _mm256_set1_ps(mx);
    for (int i = 0; i < n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        xs[i / 8] = _mm256_sub_ps(xv, vmn);
        xt[i / 8] = _mm256_sub_ps(xv, vmx);
    }
    for (int j = 0; j < k; j++) {
        const __m256 vs = _mm256_set1_ps(is[j]);
        __m256 a0 = _mm256_setzero_ps(), b0 = a0, c0 = a0, a1 = a0, b1 = a0, c1 = a0;
        for (int i = 0; i < n; i += 8) {
            __m256 xv = _mm256_loadu_ps(x + i);
            __m256 v0 = _mm256_fmadd_ps(xs[i / 8], vs, lo);
            __m256 v1 = _mm256_fmadd_ps(xt[i / 8], vs, hi);
            v0 = _mm256_min_ps(_mm256_max_ps(v0, lo), hi);
            v1 = _mm256_min_ps(_mm256_max_ps(v1, lo), hi);
            __m256 u0 = _mm256_sub_ps(v0, lo), u1 = _mm256_sub_ps(v1, lo);
            a0 = _mm256_add_ps(a0, u0);
            a1 = _mm256_add_ps(a1, u1);
            b0 = _mm256_fmadd_ps(u0, u0, b0);
            b1 = _mm256_fmadd_ps(u1, u1, b1);
            c0 = _mm256_fmadd_ps(u0, xv, c0);
            c1 = _mm256_fmadd_ps(u1, xv, c1);
        }
        float *o = sums + 6 * j;
        o[0] = lane_sum(a0);
        o[1] = lane_sum(b0);
        o[2] = lane_sum(c0);
        o[3] = lane_sum(a1);
        o[4] = lane_sum(b1);
        o[5] = lane_sum(c1);
    }
}

static float eval_avx2(const float *x, int n, float d, float m, uint8_t *u, float *sums)
{
    const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m), zero = _mm256_setzero_ps(),
                 f15 = _mm256_set1_ps(15.0f), mg = _mm256_set1_ps(LMP_Q4_MAGIC);
    const int dz = d == 0.0f;
    __m256 a = zero, b = zero, c = zero, e = zero;
    for (int i = 0; i < n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i), q = zero;
        if (!dz) {
            __m256 v = _mm256_div_ps(_mm256_sub_ps(xv, vm), vd);
            v = _mm256_max_ps(v, zero);
            v = _mm256_min_ps(v, f15);
            q = _mm256_sub_ps(_mm256_add_ps(v, mg), mg);
        }
        __m256i qi = _mm256_cvttps_epi32(q); /* exact: q is an integer in [0, 15] */
        __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
        _mm_storel_epi64((__m128i *)(u + i), _mm_packus_epi16(p, p));
        if (sums) {
            __m256 r = _mm256_sub_ps(xv, _mm256_fmadd_ps(vd, q, vm));
            e = _mm256_fmadd_ps(r, r, e);
            a = _mm256_add_ps(a, q);
            b = _mm256_fmadd_ps(q, q, b);
            c = _mm256_fmadd_ps(q, xv, c);
        }
    }
    if (!sums) return 0.0f;
    sums[0] = lane_sum(a);
    sums[1] = lane_sum(b);
    sums[2] = lane_sum(c);
    return lane_sum(e);
}

const lmp_q4_asym_kern lmp_q4_asym_avx2 = {stats_avx2, cands_avx2, eval_avx2};
