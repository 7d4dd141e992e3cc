/* AVX-512 attention tile: the same arithmetic as runtime/attn_avx2.c (read
 * its header for the three passes and the bit-identity contract) on 16
 * lanes. Compiled with AVX-512 F/BW/VL flags; called only when
 * lmp_cpu_avx512().
 *
 * Same bits as the AVX2 tile, by construction: a score lane is the same FMA
 * chain over k; exp16 is exp8's operation sequence lane for lane; the
 * double sum keeps lanes p mod 8 and adds the low then the high half of
 * each 16-position vector, i.e. the AVX2 8-position vectors in order (an
 * extra all -inf half adds exact zeros); the V sums are per-element chains
 * in position order. test_perf checks the two tiles bit for bit. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "runtime/mat_impl.h"
#include "runtime/attn_cases.h"
#include "runtime/exp_simd.h"

#define PB 64  /* positions per block walked by all rows of a tile */
#define RMAX 3 /* rows per register tile */

#define UNROLL _Pragma("GCC unroll 4")

/* The lanes of m of 16 cache elements from element i of p, as floats (0 in
 * the other lanes; F16: binary16 widened exactly). */
static inline __attribute__((always_inline)) __m512 ld16(const void *p, size_t i, __mmask16 m,
                                                         const int F16)
{
    if (F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i));
    return _mm512_maskz_loadu_ps(m, (const float *)p + i);
}

/* 16 cache elements from element i of p, as floats. */
static inline __attribute__((always_inline)) __m512 ld16_all(const void *p, size_t i, const int F16)
{
    if (F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)));
    return _mm512_loadu_ps((const float *)p + i);
}


/* Scores of R rows for NV vectors of 16 positions starting at p (a multiple
 * of 16: one K block per vector). */
static inline __attribute__((always_inline)) void scores(const float *const *q, const void *k,
                                                         int hd, int p, float scale,
                                                         float *const *sc, const int F16,
                                                         const int R, const int NV)
{
    __m512 acc[RMAX][4];
    size_t kb[4];
    UNROLL for (int j = 0; j < NV; j++)
    {
        kb[j] = lmp_attn_koff(p + 16 * j, 0, hd);
        UNROLL for (int r = 0; r < R; r++) acc[r][j] = _mm512_setzero_ps();
    }
#pragma GCC unroll 2
    for (int i = 0; i < hd; i++) {
        __m512 qv[RMAX];
        UNROLL for (int r = 0; r < R; r++) qv[r] = _mm512_set1_ps(q[r][i]);
        UNROLL for (int j = 0; j < NV; j++)
        {
            __m512 kv = ld16_all(k, kb[j] + (size_t)i * LMP_ATTN_KB, F16);
            UNROLL for (int r = 0; r < R; r++) acc[r][j] = _mm512_fmadd_ps(qv[r], kv, acc[r][j]);
        }
    }
    const __m512 vs = _mm512_set1_ps(scale);
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int j = 0; j < NV; j++)
            _mm512_storeu_ps(sc[r] + p + 16 * j, _mm512_mul_ps(acc[r][j], vs));
}

/* out[r][c .. c+16NV) (+)= sum_{p in [p0, p1)} w[r][p] V[p][c ..], the last
 * vector limited to the lanes in m (head sizes not a multiple of 16). */
static inline __attribute__((always_inline)) void wsum(const float *const *w, const void *v,
                                                       int hd, int c, int p0, int p1,
                                                       float *const *out, int first,
                                                       __mmask16 m, const int F16, const int R,
                                                       const int NV)
{
    __m512 acc[RMAX][4];
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int j = 0; j < NV; j++)
            acc[r][j] = first ? _mm512_setzero_ps()
                              : _mm512_maskz_loadu_ps(j == NV - 1 ? m : 0xffff,
                                                      out[r] + c + 16 * j);
    for (int p = p0; p < p1; p++) {
        const size_t vp = (size_t)p * hd + c;
        __m512 wv[RMAX];
        UNROLL for (int r = 0; r < R; r++) wv[r] = _mm512_set1_ps(w[r][p]);
        UNROLL for (int j = 0; j < NV; j++)
        {
            __m512 vv = ld16(v, vp + 16 * j, j == NV - 1 ? m : 0xffff, F16);
            UNROLL for (int r = 0; r < R; r++) acc[r][j] = _mm512_fmadd_ps(wv[r], vv, acc[r][j]);
        }
    }
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int j = 0; j < NV; j++)
            _mm512_mask_storeu_ps(out[r] + c + 16 * j, j == NV - 1 ? m : 0xffff, acc[r][j]);
}

/* The compile-time instance of scores / wsum for the run-time cache type,
 * R and NV (runtime/attn_cases.h). */
static void scores_rn(const float *const *q, const void *k, int hd, int p, float scale,
                      float *const *sc, int f16, int R, int NV)
{
    LMP_ATTN_CASES_KV(f16, scores, q, k, hd, p, scale, sc);
}

static void wsum_rn(const float *const *w, const void *v, int hd, int c, int p0, int p1,
                    float *const *out, int first, __mmask16 m, int f16, int R, int NV)
{
    LMP_ATTN_CASES_KV(f16, wsum, w, v, hd, c, p0, p1, out, first, m);
}

/* Pass 2 on one row (softmax_row of attn_avx2.c, same bits). */
static void softmax_row(float *sc, int np)
{
    int nv = (np + 15) / 16;
    for (int p = np; p < nv * 16; p++) sc[p] = -INFINITY;
    __m512 m = _mm512_loadu_ps(sc);
    for (int j = 1; j < nv; j++) m = _mm512_max_ps(m, _mm512_loadu_ps(sc + 16 * j));
    float mx = _mm512_reduce_max_ps(m);
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512d s = _mm512_setzero_pd(); /* lane i: positions = i mod 8 */
    for (int j = 0; j < nv; j++) {
        __m512 e = lmp_exp16(_mm512_sub_ps(_mm512_loadu_ps(sc + 16 * j), vmx));
        _mm512_storeu_ps(sc + 16 * j, e);
        s = _mm512_add_pd(s, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s = _mm512_add_pd(s, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    double lanes[8];
    _mm512_storeu_pd(lanes, s);
    double sum = 0.0;
    for (int i = 0; i < 8; i++) sum += lanes[i];
    const __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
    for (int j = 0; j < nv; j++)
        _mm512_storeu_ps(sc + 16 * j, _mm512_mul_ps(_mm512_loadu_ps(sc + 16 * j), inv));
}

void lmp_attn_tile_avx512(const lmp_attn_tile *a)
{
    const int hd = a->hd, g = a->nhead, nt = a->ntok;
    const int npmax = a->np0 + nt - 1;
    for (int b0 = 0; b0 < npmax; b0 += PB)
        for (int t = 0; t < nt; t++) {
            int np = a->np0 + t;
            if (np <= b0) continue;
            int end = np < b0 + PB ? np : b0 + PB;
            int nvec = (end - b0 + 15) / 16;
            for (int h0 = 0; h0 < g; h0 += RMAX) {
                int R = g - h0 < RMAX ? g - h0 : RMAX;
                const float *q[RMAX];
                float *sc[RMAX];
                for (int r = 0; r < R; r++) {
                    q[r] = a->q + (size_t)t * a->q_tok + (size_t)(h0 + r) * hd;
                    sc[r] = a->sc + (size_t)(t * g + h0 + r) * a->sc_stride;
                }
                scores_rn(q, a->k, hd, b0, a->scale, sc, a->kv_f16, R, nvec); /* PB = 4 x 16 */
            }
        }
    for (int t = 0; t < nt; t++)
        for (int h = 0; h < g; h++)
            softmax_row(a->sc + (size_t)(t * g + h) * a->sc_stride, a->np0 + t);
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
                for (int c = 0; c < hd; c += 64) {
                    int left = hd - c < 64 ? hd - c : 64;
                    int nv = (left + 15) / 16;
                    __mmask16 m = (__mmask16)(left % 16 ? (1u << (left % 16)) - 1 : 0xffff);
                    wsum_rn(w, a->v, hd, c, b0, end, o, b0 == 0, m, a->kv_f16, R, nv);
                }
            }
        }
}
