/* AVX2/FMA attention for one (token, head) pair; the scalar reference is
 * attn_head_ref in forward.c. Compiled with -mavx2 -mfma; called only after
 * the run-time CPU check. Summation order depends only on head_dim and the
 * number of positions, never on threads or batching. */
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

void lmp_attn_head_avx2(const float *q, const float *K, const float *V, int np, int hd,
                        float scale, float *sc, float *out)
{
    float mx = -INFINITY;
    for (int p = 0; p < np; p++) {
        sc[p] = dot(q, K + (size_t)p * hd, hd) * scale;
        if (sc[p] > mx) mx = sc[p];
    }
    double sum = 0.0;
    for (int p = 0; p < np; p++) {
        sc[p] = expf(sc[p] - mx);
        sum += sc[p];
    }
    float inv = (float)(1.0 / sum);
    int k = 0;
    for (; k + 8 <= hd; k += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int p = 0; p < np; p++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(sc[p] * inv),
                                  _mm256_loadu_ps(V + (size_t)p * hd + k), acc);
        _mm256_storeu_ps(out + k, acc);
    }
    for (; k < hd; k++) {
        float acc = 0.0f;
        for (int p = 0; p < np; p++) acc = __builtin_fmaf(sc[p] * inv, V[(size_t)p * hd + k], acc);
        out[k] = acc;
    }
}
