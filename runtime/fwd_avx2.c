/* AVX2/FMA elementwise steps of the forward pass (see fwd_impl.h for the
 * contracts). Compiled with -mavx2 -mfma -mf16c; called only after the
 * run-time CPU check. */
#include "runtime/fwd_impl.h"

#include <immintrin.h>
#include "runtime/exp_simd.h"
#include <math.h>

void lmp_rmsnorm_avx2(float *out, const float *x, const float *w, int h, float eps)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 16 <= h; i += 16) {
        __m256d v0 = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        __m256d v1 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        __m256d v2 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8));
        __m256d v3 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12));
        a0 = _mm256_fmadd_pd(v0, v0, a0);
        a1 = _mm256_fmadd_pd(v1, v1, a1);
        a2 = _mm256_fmadd_pd(v2, v2, a2);
        a3 = _mm256_fmadd_pd(v3, v3, a3);
    }
    __m256d a = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
    double lanes[4];
    _mm256_storeu_pd(lanes, a);
    double ss = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (; i < h; i++) ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / h + (double)eps);
    const __m256d sc = _mm256_set1_pd(scale);
    i = 0;
    for (; i + 8 <= h; i += 8) {
        __m128 lo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), sc));
        __m128 hi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), sc));
        __m256 v = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(v, _mm256_loadu_ps(w + i)));
    }
    for (; i < h; i++) out[i] = (float)(x[i] * scale) * w[i];
}


/* silu(g) = g * sigmoid(g); with e = e^-|g| in (0, 1]: sigmoid(g) =
 * 1 / (1 + e) for g >= 0 and e / (1 + e) for g < 0 (no overflow). NaN g
 * stays NaN (the final multiply by g), -inf gives NaN like the reference
 * (-inf * 0), +inf gives +inf. */
void lmp_silu_mul_avx2(float *g, const float *u, int n)
{
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        __m256 e = lmp_exp8(_mm256_or_ps(gv, sign)); /* -|g| */
        __m256 num = _mm256_blendv_ps(one, e, gv);   /* sign bit of g set: e */
        __m256 sg = _mm256_div_ps(num, _mm256_add_ps(one, e));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_mul_ps(gv, sg), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        float gv = g[i];
        g[i] = gv / (1.0f + expf(-gv)) * u[i];
    }
}

int lmp_argmax_avx2(const float *v, int n)
{
    if (n < 16 || v[0] != v[0]) { /* short, or NaN first: the reference loop */
        int best = 0;
        for (int i = 1; i < n; i++)
            if (v[i] > v[best]) best = i;
        return best;
    }
    /* max over the non-NaN values: maxps(x, m) returns m when x is NaN, and m
     * starts at v[0] (a number), so it never becomes NaN */
    __m256 m0 = _mm256_set1_ps(v[0]), m1 = m0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(v + i), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(v + i + 8), m1);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_max_ps(m0, m1));
    float m = lanes[0];
    for (int k = 1; k < 8; k++) m = lanes[k] > m ? lanes[k] : m;
    for (; i < n; i++) m = v[i] > m ? v[i] : m;
    /* the reference keeps the first index holding the maximum (== also
     * matches -0.0 against 0.0, as > never moves past an equal value) */
    const __m256 mv = _mm256_set1_ps(m);
    for (i = 0; i + 8 <= n; i += 8) {
        int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(v + i), mv, _CMP_EQ_OQ));
        if (mask) return i + __builtin_ctz((unsigned)mask);
    }
    for (; i < n; i++)
        if (v[i] == m) return i;
    return 0; /* not reached: m is one of the values */
}

void lmp_vadd_avx2(float *x, const float *y, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) x[i] += y[i];
}

void lmp_rope_avx2(float *v, const float *cs, const float *sn, int half)
{
    int i = 0;
    for (; i + 8 <= half; i += 8) {
        __m256 a = _mm256_loadu_ps(v + i), b = _mm256_loadu_ps(v + i + half);
        __m256 c = _mm256_loadu_ps(cs + i), s = _mm256_loadu_ps(sn + i);
        _mm256_storeu_ps(v + i, _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s)));
        _mm256_storeu_ps(v + i + half, _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s)));
    }
    for (; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
    }
}
