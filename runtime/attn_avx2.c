/* AVX2/FMA attention over a tile of query rows (lmp_attn_tile in
 * mat_impl.h); the scalar reference is attn_head_ref in forward.c.
 * Compiled with -mavx2 -mfma; called only after the run-time CPU check.
 *
 * Why a tile: the 3 query heads of a KV head (GQA) and several consecutive
 * tokens read the same K and V. The rows of a tile walk the positions in
 * blocks of PB; a K or V block is loaded from L2/L3 once and reused from L1
 * and registers by every row (register tile: up to 3 rows x 32 positions for
 * the scores, 3 rows x 32 output elements for the V sum).
 *
 * Per row (the bit-identity contract): three passes with an exact maximum,
 * no online rescaling, so block boundaries do not enter the arithmetic.
 *  1. score[p] = (sum_k q[k] K[p][k], one FMA chain over k = 0..hd-1,
 *     lane = position) * scale, for p < np rounded up to 8; the padding
 *     lanes are set to -inf;
 *  2. mx = max score; e[p] = lmp_exp8(score[p] - mx), summed in double per lane
 *     (lane = p mod 8; -inf lanes add an exact 0), lanes added in a fixed
 *     order; w[p] = e[p] * (float)(1 / sum);
 *  3. out[i] = sum_p w[p] V[p][i], one FMA chain per element, p ascending
 *     from 0 to np-1 (between position blocks the partial sum waits in out,
 *     which does not round).
 * Nothing depends on the other rows of the tile, on how many there are or on
 * the thread that runs it. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "runtime/mat_impl.h"
#include "runtime/attn_cases.h"
#include "runtime/exp_simd.h"

#define PB 64 /* positions per block walked by all rows of a tile */
#define RMAX 3 /* rows per register tile */



#define UNROLL _Pragma("GCC unroll 4")

/* 8 cache elements from element i of p as floats (F16: binary16 widened
 * exactly by F16C, so both kinds feed the same float arithmetic). */
static inline __attribute__((always_inline)) __m256 ld8(const void *p, size_t i, const int F16)
{
    if (F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
    return _mm256_loadu_ps((const float *)p + i);
}

static inline float ld1(const void *p, size_t i, int f16)
{
    return f16 ? _cvtsh_ss(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

/* Scores of R rows for NV vectors of 8 positions starting at p (a multiple
 * of 8): sc[r][p + 8j + lane] = (q[r] . K[p + 8j + lane]) * scale. */
static inline __attribute__((always_inline)) void scores(const float *const *q, const void *k,
                                                         int hd, int p, float scale,
                                                         float *const *sc, const int F16,
                                                         const int R, const int NV)
{
    __m256 acc[RMAX][4];
    size_t kb[4];
    UNROLL for (int j = 0; j < NV; j++)
    {
        kb[j] = lmp_attn_koff(p + 8 * j, 0, hd);
        UNROLL for (int r = 0; r < R; r++) acc[r][j] = _mm256_setzero_ps();
    }
#pragma GCC unroll 2
    for (int i = 0; i < hd; i++) {
        __m256 qv[RMAX];
        UNROLL for (int r = 0; r < R; r++) qv[r] = _mm256_broadcast_ss(q[r] + i);
        UNROLL for (int j = 0; j < NV; j++)
        {
            __m256 kv = ld8(k, kb[j] + (size_t)i * LMP_ATTN_KB, F16);
            UNROLL for (int r = 0; r < R; r++) acc[r][j] = _mm256_fmadd_ps(qv[r], kv, acc[r][j]);
        }
    }
    const __m256 vs = _mm256_set1_ps(scale);
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int j = 0; j < NV; j++)
            _mm256_storeu_ps(sc[r] + p + 8 * j, _mm256_mul_ps(acc[r][j], vs));
}

/* out[r][c .. c+8NV) (+)= sum_{p in [p0, p1)} w[r][p] V[p][c ..]; first:
 * start from 0, else continue the partial sums held in out. */
static inline __attribute__((always_inline)) void wsum(const float *const *w, const void *v,
                                                       int hd, int c, int p0, int p1,
                                                       float *const *out, int first,
                                                       const int F16, const int R, const int NV)
{
    __m256 acc[RMAX][4];
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int j = 0; j < NV; j++)
            acc[r][j] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(out[r] + c + 8 * j);
    for (int p = p0; p < p1; p++) {
        const size_t vp = (size_t)p * hd + c;
        __m256 wv[RMAX];
        UNROLL for (int r = 0; r < R; r++) wv[r] = _mm256_broadcast_ss(w[r] + p);
        UNROLL for (int j = 0; j < NV; j++)
        {
            __m256 vv = ld8(v, vp + 8 * j, F16);
            UNROLL for (int r = 0; r < R; r++) acc[r][j] = _mm256_fmadd_ps(wv[r], vv, acc[r][j]);
        }
    }
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int j = 0; j < NV; j++) _mm256_storeu_ps(out[r] + c + 8 * j, acc[r][j]);
}

/* The compile-time instance of scores / wsum for the run-time cache type,
 * R and NV (runtime/attn_cases.h). */
static void scores_rn(const float *const *q, const void *k, int hd, int p, float scale,
                      float *const *sc, int f16, int R, int NV)
{
    LMP_ATTN_CASES_KV(f16, scores, q, k, hd, p, scale, sc);
}

static void wsum_rn(const float *const *w, const void *v, int hd, int c, int p0, int p1,
                    float *const *out, int first, int f16, int R, int NV)
{
    LMP_ATTN_CASES_KV(f16, wsum, w, v, hd, c, p0, p1, out, first);
}

/* Pass 2 on one row of np positions: softmax weights in place. */
static void softmax_row(float *sc, int np)
{
    int nv = (np + 7) / 8;
    for (int p = np; p < nv * 8; p++) sc[p] = -INFINITY;
    __m256 m = _mm256_loadu_ps(sc);
    for (int j = 1; j < nv; j++) m = _mm256_max_ps(m, _mm256_loadu_ps(sc + 8 * j));
    float lane[8], mx = -INFINITY;
    _mm256_storeu_ps(lane, m);
    for (int i = 0; i < 8; i++)
        if (lane[i] > mx) mx = lane[i];
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    for (int j = 0; j < nv; j++) {
        __m256 e = lmp_exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + 8 * j), vmx));
        _mm256_storeu_ps(sc + 8 * j, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double lanes[8];
    _mm256_storeu_pd(lanes, s0);
    _mm256_storeu_pd(lanes + 4, s1);
    double sum = 0.0;
    for (int i = 0; i < 8; i++) sum += lanes[i];
    const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (int j = 0; j < nv; j++)
        _mm256_storeu_ps(sc + 8 * j, _mm256_mul_ps(_mm256_loadu_ps(sc + 8 * j), inv));
}

void lmp_attn_tile_avx2(const lmp_attn_tile *a)
{
    const int hd = a->hd, g = a->nhead, nt = a->ntok;
    const int npmax = a->np0 + nt - 1;
    /* pass 1: scores, position blocks outermost so a K block serves every row */
    for (int b0 = 0; b0 < npmax; b0 += PB)
        for (int t = 0; t < nt; t++) {
            int np = a->np0 + t;
            if (np <= b0) continue;
            int end = np < b0 + PB ? np : b0 + PB;
            int nvec = (end - b0 + 7) / 8;
            for (int h0 = 0; h0 < g; h0 += RMAX) {
                int R = g - h0 < RMAX ? g - h0 : RMAX;
                const float *q[RMAX];
                float *sc[RMAX];
                for (int r = 0; r < R; r++) {
                    q[r] = a->q + (size_t)t * a->q_tok + (size_t)(h0 + r) * hd;
                    sc[r] = a->sc + (size_t)(t * g + h0 + r) * a->sc_stride;
                }
                int p = b0, left = nvec;
                for (; left >= 4; left -= 4, p += 32)
                    scores_rn(q, a->k, hd, p, a->scale, sc, a->kv_f16, R, 4);
                if (left) scores_rn(q, a->k, hd, p, a->scale, sc, a->kv_f16, R, left);
            }
        }
    /* pass 2: exact max, exp, normalise, row by row */
    for (int t = 0; t < nt; t++)
        for (int h = 0; h < g; h++)
            softmax_row(a->sc + (size_t)(t * g + h) * a->sc_stride, a->np0 + t);
    /* pass 3: weighted sum of V, the same block walk */
    for (int b0 = 0; b0 < npmax; b0 += PB)
        for (int t = 0; t < nt; t++) {
            int np = a->np0 + t;
            if (np <= b0) continue;
            int end = np < b0 + PB ? np : b0 + PB;
            for (int h0 = 0; h0 < g; h0 += RMAX) {
                int R = g - h0 < RMAX ? g - h0 : RMAX;
                const float *w[RMAX];
                float *o[RMAX];
                for (int r = 0; r < R; r++) {
                    w[r] = a->sc + (size_t)(t * g + h0 + r) * a->sc_stride;
                    o[r] = a->out + (size_t)t * a->out_tok + (size_t)(h0 + r) * hd;
                }
                int c = 0;
                for (; c + 32 <= hd; c += 32)
                    wsum_rn(w, a->v, hd, c, b0, end, o, b0 == 0, a->kv_f16, R, 4);
                if (c + 8 <= hd) {
                    int nv = (hd - c) / 8;
                    wsum_rn(w, a->v, hd, c, b0, end, o, b0 == 0, a->kv_f16, R, nv);
                    c += 8 * nv;
                }
                for (; c < hd; c++) /* head sizes that are not a multiple of 8 */
                    for (int r = 0; r < R; r++) {
                        float acc = b0 == 0 ? 0.0f : o[r][c];
                        for (int p = b0; p < end; p++)
                            acc = __builtin_fmaf(w[r][p], ld1(a->v, (size_t)p * hd + c, a->kv_f16),
                                                 acc);
                        o[r][c] = acc;
                    }
            }
        }
}
