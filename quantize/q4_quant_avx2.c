/* AVX2 ASYM quantizer kernels: the same IEEE single operations, lane by
 * lane and in the same order, as the reference kernels in q4_quant.c (the
 * rules are in q4_internal.h), so the bytes are identical. Only for
 * n % 8 == 0 (the caller uses the reference otherwise); only called after
 * the run-time AVX2 check in q4.c. Fused multiply-adds exactly where the
 * reference calls fmaf(), separate operations everywhere else. */
#include <immintrin.h>
#include <string.h>

#include "quantize/q4_internal.h"

/* target attribute: `make fuzz` compiles every library file with clang and
 * no -mavx2 / -mfma (the Makefile passes them for the normal builds). */
#define TGT __attribute__((target("avx2,fma")))

/* out[0..3] = lane sums of a, b, c, d, each ((l0 + l1) + (l2 + l3)) +
 * ((l4 + l5) + (l6 + l7)) as in the reference. */
TGT static inline void lane_sum4(__m256 a, __m256 b, __m256 c, __m256 d, float *out)
{
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

TGT static inline float lane_sum(__m256 v)
{
    float o[4];
    lane_sum4(v, v, v, v, o);
    return o[0];
}

TGT static void stats_avx2(const float *x, int n, float out[3])
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

/* Two candidates per pass over x (bottom j with top nb + j while both
 * remain), then the rest one at a time. */
TGT static void cands_avx2(const float *x, int n, float mn, float mx, int nb, int nt,
                       const float *is, float *sums)
{
    const __m256 lo = _mm256_set1_ps(LMP_Q4_MAGIC), hi = _mm256_set1_ps(LMP_Q4_MAGIC + 15.0f);
    __m256 xs[16], xt[16]; /* x - mn, x - mx (n <= 128) */
    const __m256 vmn = _mm256_set1_ps(mn), vmx = _mm256_set1_ps(mx);
    const int nv = n / 8;
    for (int i = 0; i < nv; i++) {
        __m256 xv = _mm256_loadu_ps(x + 8 * i);
        xs[i] = _mm256_sub_ps(xv, vmn);
        xt[i] = _mm256_sub_ps(xv, vmx);
    }
    int np = nb < nt ? nb : nt;
    for (int j = 0; j < np; j++) {
        const __m256 s0 = _mm256_set1_ps(is[j]), s1 = _mm256_set1_ps(is[nb + j]);
        __m256 a0 = _mm256_setzero_ps(), b0 = a0, c0 = a0, a1 = a0, b1 = a0, c1 = a0;
        for (int i = 0; i < nv; i++) {
            __m256 xv = _mm256_loadu_ps(x + 8 * i);
            __m256 v0 = _mm256_min_ps(_mm256_fmadd_ps(xs[i], s0, lo), hi);
            __m256 v1 = _mm256_max_ps(_mm256_fmadd_ps(xt[i], s1, hi), lo);
            __m256 u0 = _mm256_sub_ps(v0, lo), u1 = _mm256_sub_ps(v1, lo);
            a0 = _mm256_add_ps(a0, u0);
            a1 = _mm256_add_ps(a1, u1);
            b0 = _mm256_fmadd_ps(u0, u0, b0);
            b1 = _mm256_fmadd_ps(u1, u1, b1);
            c0 = _mm256_fmadd_ps(u0, xv, c0);
            c1 = _mm256_fmadd_ps(u1, xv, c1);
        }
        float t[8];
        lane_sum4(a0, b0, c0, a1, t);
        lane_sum4(b1, c1, b1, c1, t + 4);
        float *o = sums + 3 * j, *p = sums + 3 * (nb + j);
        o[0] = t[0];
        o[1] = t[1];
        o[2] = t[2];
        p[0] = t[3];
        p[1] = t[4];
        p[2] = t[5];
    }
    for (int j = np; j < nb + nt; j++) {
        if (j >= nb && j < nb + np) continue; /* done in a pair */
        const int top = j >= nb;
        const __m256 s0 = _mm256_set1_ps(is[j]);
        const __m256 *xb = top ? xt : xs;
        __m256 a0 = _mm256_setzero_ps(), b0 = a0, c0 = a0;
        for (int i = 0; i < nv; i++) {
            __m256 xv = _mm256_loadu_ps(x + 8 * i);
            __m256 v0 = top ? _mm256_max_ps(_mm256_fmadd_ps(xb[i], s0, hi), lo)
                            : _mm256_min_ps(_mm256_fmadd_ps(xb[i], s0, lo), hi);
            __m256 u0 = _mm256_sub_ps(v0, lo);
            a0 = _mm256_add_ps(a0, u0);
            b0 = _mm256_fmadd_ps(u0, u0, b0);
            c0 = _mm256_fmadd_ps(u0, xv, c0);
        }
        float t[4];
        lane_sum4(a0, b0, c0, c0, t);
        memcpy(sums + 3 * j, t, 3 * sizeof(float));
    }
}

/* The loop of eval for one combination of (divide, with sums); constant
 * flags after inlining, so each variant is a straight loop. */
TGT static inline __attribute__((always_inline)) float eval_loop(const float *x, int n, float d,
                                                              float m, float id, uint8_t *u,
                                                              float *sums, const int dv,
                                                              const int sm)
{
    const __m256 vid = _mm256_set1_ps(id), vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m),
                 zero = _mm256_setzero_ps(), f15 = _mm256_set1_ps(15.0f),
                 mg = _mm256_set1_ps(LMP_Q4_MAGIC);
    __m256 a = zero, b = zero, c = zero, e = zero;
    for (int i = 0; i < n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        __m256 v = dv ? _mm256_div_ps(_mm256_sub_ps(xv, vm), vd)
                      : _mm256_mul_ps(_mm256_sub_ps(xv, vm), vid);
        v = _mm256_max_ps(v, zero);
        v = _mm256_min_ps(v, f15);
        __m256 q = _mm256_sub_ps(_mm256_add_ps(v, mg), mg);
        __m256i qi = _mm256_cvttps_epi32(q); /* exact: q is an integer in [0, 15] */
        __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
        _mm_storel_epi64((__m128i *)(u + i), _mm_packus_epi16(p, p));
        if (sm >= 1) {
            __m256 r = _mm256_sub_ps(xv, _mm256_fmadd_ps(vd, q, vm));
            e = _mm256_fmadd_ps(r, r, e);
        }
        if (sm >= 2) {
            a = _mm256_add_ps(a, q);
            b = _mm256_fmadd_ps(q, q, b);
            c = _mm256_fmadd_ps(q, xv, c);
        }
    }
    if (sm == 0) return 0.0f;
    if (sm == 1) return lane_sum(e);
    float t[4];
    lane_sum4(a, b, c, e, t);
    memcpy(sums, t, 3 * sizeof(float));
    return t[3];
}

TGT static float eval_avx2(const float *x, int n, float d, float m, float id, uint8_t *u,
                       float *sums, int mode)
{
    if (d == 0.0f) /* all codes 0: the reference loop (rare) */
        return lmp_q4_asym_ref.eval(x, n, d, m, id, u, sums, mode);
    if (id == 0.0f)
        return mode == 0   ? eval_loop(x, n, d, m, id, u, sums, 1, 0)
               : mode == 1 ? eval_loop(x, n, d, m, id, u, sums, 1, 1)
                           : eval_loop(x, n, d, m, id, u, sums, 1, 2);
    return mode == 0   ? eval_loop(x, n, d, m, id, u, sums, 0, 0)
           : mode == 1 ? eval_loop(x, n, d, m, id, u, sums, 0, 1)
                       : eval_loop(x, n, d, m, id, u, sums, 0, 2);
}

const lmp_q4_asym_kern lmp_q4_asym_avx2 = {stats_avx2, cands_avx2, eval_avx2, NULL,
                                           NULL, NULL, NULL};
