/* AVX2/FMA attention for one (token, head) pair; the scalar reference is
 * attn_head_ref in forward.c. Compiled with -mavx2 -mfma; called only after
 * the run-time CPU check. Summation order depends only on head_dim and the
 * number of positions, never on threads or batching.
 *
 * Speed (long prompts: a 2048-token prefill spends most of its attention
 * time here): scores are computed 4 positions at a time (4 independent FMA
 * chains instead of one latency-bound chain; each position's own order is
 * unchanged), exp is evaluated 8 lanes at a time with a polynomial (about
 * 2 ulp, see exp8) instead of one libm call per position, and the weighted
 * sum of V walks the positions once with head_dim/8 accumulators (V read
 * once instead of head_dim/8 times; per output element the same
 * position-ascending FMA order as before). */
#include <immintrin.h>
#include <math.h>

#include "runtime/mat_impl.h"

static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float dot(const float *a, const float *b, int n)
{
    __m256 acc = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= n; k += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc);
    float s = hsum8(acc);
    for (; k < n; k++) s = __builtin_fmaf(a[k], b[k], s);
    return s;
}

/* Four dot products q . K[p..p+3] (n a multiple of 8): each is exactly
 * dot(q, K[p+i], n) (same FMA order, same horizontal sum). */
static inline void dot4(const float *q, const float *K, int n, float *out)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float *k0 = K, *k1 = K + n, *k2 = K + 2 * (size_t)n, *k3 = K + 3 * (size_t)n;
    for (int k = 0; k < n; k += 8) {
        __m256 qv = _mm256_loadu_ps(q + k);
        a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + k), a0);
        a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + k), a1);
        a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + k), a2);
        a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + k), a3);
    }
    out[0] = hsum8(a0);
    out[1] = hsum8(a1);
    out[2] = hsum8(a2);
    out[3] = hsum8(a3);
}

/* e^x for 8 lanes with x <= 0 (softmax arguments x - max): x = n ln2 + r,
 * |r| <= ln2/2 (ln2 split in two parts), degree-6 polynomial for e^r,
 * scaled by 2^n through the exponent bits. Relative error about 2 ulp;
 * x < -87 gives 0 (e^-87 ~ 1.6e-38: below FLT_MIN, negligible next to the
 * maximum's weight 1). */
static inline __m256 exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.0f);
    __m256 zero_mask = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(zero_mask, y);
}

/* out[8*nv] = sum_p (sc[p] * inv) V[p], positions ascending, one FMA chain
 * per output element (nv compile-time at each call: registers, not memory). */
static inline __attribute__((always_inline)) void wsum_v(const float *sc, float inv,
                                                         const float *V, int np, float *out,
                                                         const int nv)
{
    __m256 acc[16];
#pragma GCC unroll 16
    for (int k = 0; k < nv; k++) acc[k] = _mm256_setzero_ps();
    for (int p = 0; p < np; p++) {
        const __m256 wv = _mm256_set1_ps(sc[p] * inv);
        const float *vp = V + (size_t)p * (size_t)(8 * nv);
#pragma GCC unroll 16
        for (int k = 0; k < nv; k++)
            acc[k] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(vp + 8 * k), acc[k]);
    }
#pragma GCC unroll 16
    for (int k = 0; k < nv; k++) _mm256_storeu_ps(out + 8 * k, acc[k]);
}

void lmp_attn_head_avx2(const float *q, const float *K, const float *V, int np, int hd,
                        float scale, float *sc, float *out)
{
    float mx = -INFINITY;
    int p = 0;
    if ((hd & 7) == 0)
        for (; p + 4 <= np; p += 4) {
            dot4(q, K + (size_t)p * hd, hd, sc + p);
            for (int i = 0; i < 4; i++) {
                sc[p + i] *= scale;
                if (sc[p + i] > mx) mx = sc[p + i];
            }
        }
    for (; p < np; p++) {
        sc[p] = dot(q, K + (size_t)p * hd, hd) * scale;
        if (sc[p] > mx) mx = sc[p];
    }
    /* exp 8 lanes at a time; the sum in double, lanes accumulated
     * separately and added in a fixed order at the end */
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    p = 0;
    for (; p + 8 <= np; p += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + p), vmx));
        _mm256_storeu_ps(sc + p, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double lanes[8];
    _mm256_storeu_pd(lanes, s0);
    _mm256_storeu_pd(lanes + 4, s1);
    double sum = 0.0;
    for (int i = 0; i < 8; i++) sum += lanes[i];
    if (p < np) { /* tail: same polynomial on a zero-padded vector */
        float tmp[8];
        for (int i = 0; i < 8; i++) tmp[i] = p + i < np ? sc[p + i] - mx : -INFINITY;
        _mm256_storeu_ps(tmp, exp8(_mm256_loadu_ps(tmp)));
        for (int i = 0; p + i < np; i++) {
            sc[p + i] = tmp[i];
            sum += tmp[i];
        }
    }
    float inv = (float)(1.0 / sum);
    if (hd == 64) {
        wsum_v(sc, inv, V, np, out, 8);
        return;
    }
    if (hd == 128) {
        wsum_v(sc, inv, V, np, out, 16);
        return;
    }
    int k = 0;
    for (; k + 8 <= hd; k += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (p = 0; p < np; p++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(sc[p] * inv),
                                  _mm256_loadu_ps(V + (size_t)p * hd + k), acc);
        _mm256_storeu_ps(out + k, acc);
    }
    for (; k < hd; k++) {
        float acc = 0.0f;
        for (p = 0; p < np; p++) acc = __builtin_fmaf(sc[p] * inv, V[(size_t)p * hd + k], acc);
        out[k] = acc;
    }
}
