/* AVX2 kernel for int4 SYM / ASYM weights in LMP_Q4_LAYOUT_R8 (q4.h), with
 * the activations in LMP_Q4_PLAIN order (q4_internal.h): the R16 kernel's
 * scheme (q4_r16_avx512.c) for CPUs with AVX2 but no AVX-512 VNNI.
 *
 * Eight rows at a time: 32-bit lane i of every vector is row i of the
 * block. Per 32-weight block b: four 32-byte loads hold the block's 16
 * code bytes of all 8 rows, lo = v & 15 and hi = (v >> 4) & 15, and per
 * token eight maddubs, each with 4 activation bytes broadcast to all lanes
 * (elements 4q..4q+3 meet lo[q], 16+4q..16+4q+3 meet hi[q]), summed in
 * int16 (at most 16 products of 15 x 127 per int16: 30480, no overflow),
 * then one madd with ones leaves the exact integer dot product of block b
 * in every row's lane. The per-row kernel of q4_avx2.c needs a horizontal
 * add tree per 8 blocks and a final sum per row instead. Then, per token
 * and lane (row), in this order and no other:
 *   per group g:           acc = fma(m'_g, sx_g, acc)
 *   per block b of g:      acc = fma(float(isum_b), d_g * dx_b, acc)
 * with m' = m (ASYM) or -8 d (SYM): the R16 kernel's sequence with the
 * same exact integers, so R8 here and R16 on AVX-512 give the same bits,
 * whatever the tile, the row range or the thread. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quantize/q4.h"
#include "quantize/q4_internal.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Tokens per prefill tile (4 int16 sums + 4 accumulators + the unpacked
 * piece and constants fit the 16 registers). */
#define TT 4
/* As in the other kernels: software prefetch this far ahead in decode. */
#define PF_BYTES 4096
/* Prefill: a chunk of 8-row blocks stays in L2 while every token tile
 * passes over it. */
#define ROWBLOCK_BYTES (128 * 1024)

/* The 4 activation bytes at p broadcast to all 8 lanes. */
ALWAYS_INLINE __m256i bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* One block of 8 rows (blk) against T tokens t0.. (T <= TT); lane i goes
 * to y[t * rows + r8 + i] when lane i of keep is all ones. */
ALWAYS_INLINE void tile(const uint8_t *blk, const lmp_q4_act *a, int t0, const int T, float *y,
                        int rows, int r8, __m256i keep, int full, int prefetch,
                        const uint8_t *pf_end, const int bpg, const int asym)
{
    const int nblk = a->nblk, ng = a->ng;
    const size_t xs = (size_t)a->nblk_pad * 32, ds = (size_t)a->nblk_pad, ss = (size_t)a->ng_pad;
    const int8_t *xq = a->xq + (size_t)t0 * xs;
    const float *dx = a->dx + (size_t)t0 * ds, *sx = a->sx + (size_t)t0 * ss;
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256 acc[TT];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    const uint8_t *gp = blk; /* the current group's part: one sequential stream */
    for (int g = 0; g < ng; g++, gp += 16 * (1 + asym) + 128 * bpg) {
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)gp));
        const __m256 m = asym ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(gp + 16)))
                              : _mm256_mul_ps(_mm256_set1_ps(-8.0f), d);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(sx[(size_t)t * ss + (size_t)g]), acc[t]);
        const int b1 = (g + 1) * bpg < nblk ? (g + 1) * bpg : nblk;
        for (int b = g * bpg; b < b1; b++) {
            const uint8_t *cb = gp + 16 * (1 + asym) + 128 * (b - g * bpg);
            if (prefetch && cb + PF_BYTES + 128 <= pf_end) {
                _mm_prefetch((const char *)(cb + PF_BYTES), _MM_HINT_T0);
                _mm_prefetch((const char *)(cb + PF_BYTES + 64), _MM_HINT_T0);
            }
            __m256i s[TT];
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(cb + 32 * q));
                const __m256i lo = _mm256_and_si256(v, m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const int8_t *x = xq + (size_t)t * xs + 32 * (size_t)b + 4 * q;
                    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(x)),
                                                       _mm256_maddubs_epi16(hi, bcast4(x + 16)));
                    s[t] = q ? _mm256_add_epi16(s[t], p) : p;
                }
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const __m256 st = _mm256_mul_ps(d, _mm256_set1_ps(dx[(size_t)t * ds + (size_t)b]));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(s[t], ones)), st,
                                         acc[t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        float *o = y + (size_t)(t0 + t) * (size_t)rows + (size_t)r8;
        if (full)
            _mm256_storeu_ps(o, acc[t]);
        else
            _mm256_maskstore_ps(o, keep, acc[t]);
    }
}

/* Row blocks [R0, R1) (8 rows each) against tokens t0.. (T of them). */
ALWAYS_INLINE void blocks_pass(const lmp_mat *w, const lmp_q4_act *a, int R0, int R1, int r0,
                               int r1, float *y, int t0, const int T, int prefetch, const int bpg,
                               const int asym)
{
    const size_t bb = 8 * w->row_bytes;
    const uint8_t *base = w->data, *end = base + (size_t)w->rows * w->row_bytes;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int R = R0; R < R1; R++) {
        const int lo = r0 - 8 * R, hi = r1 - 8 * R; /* rows of this block in range */
        const int full = lo <= 0 && hi >= 8;
        /* lanes lo <= i < hi */
        const __m256i keep = _mm256_and_si256(_mm256_cmpgt_epi32(lane, _mm256_set1_epi32(lo - 1)),
                                              _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), lane));
        tile(base + (size_t)R * bb, a, t0, T, y, w->rows, 8 * R, keep, full, prefetch, end, bpg,
             asym);
    }
}

ALWAYS_INLINE void rows_spec(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y,
                             const int bpg, const int asym)
{
    const int Rb = r0 / 8, Re = (r1 + 7) / 8;
    if (a->n == 1) {
        blocks_pass(w, a, Rb, Re, r0, r1, y, 0, 1, 1, bpg, asym);
        return;
    }
    int chunk = (int)(ROWBLOCK_BYTES / (8 * w->row_bytes));
    if (chunk < 1) chunk = 1;
    for (int c0 = Rb; c0 < Re; c0 += chunk) {
        const int c1 = Re - c0 < chunk ? Re : c0 + chunk;
        int t = 0;
        for (; t + TT <= a->n; t += TT) blocks_pass(w, a, c0, c1, r0, r1, y, t, TT, t == 0, bpg, asym);
        switch (a->n - t) {
        case 3: blocks_pass(w, a, c0, c1, r0, r1, y, t, 3, t == 0, bpg, asym); break;
        case 2: blocks_pass(w, a, c0, c1, r0, r1, y, t, 2, t == 0, bpg, asym); break;
        case 1: blocks_pass(w, a, c0, c1, r0, r1, y, t, 1, t == 0, bpg, asym); break;
        default: break;
        }
    }
}

#define SPEC(bpg, asym)                                                                         \
    static void rows_##bpg##_##asym(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1,     \
                                    float *y)                                                   \
    {                                                                                           \
        rows_spec(w, a, r0, r1, y, bpg, asym);                                                  \
    }
SPEC(1, 0)
SPEC(2, 0)
SPEC(4, 0)
SPEC(1, 1)
SPEC(2, 1)
SPEC(4, 1)
#undef SPEC

void lmp_q4_rows_r8_avx2(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y)
{
    typedef void (*fn)(const lmp_mat *, const lmp_q4_act *, int, int, float *);
    static const fn tab[2][3] = {{rows_1_0, rows_2_0, rows_4_0}, {rows_1_1, rows_2_1, rows_4_1}};
    tab[w->scheme == LMP_Q4_ASYM][a->bpg >> 1](w, a, r0, r1, y);
}

/* One block of 8 stored rows (tmp: 8 rows of rb bytes) written to o in
 * LMP_Q4_LAYOUT_R8: the bytes q4_pack.c's plain C writes, ~10x faster.
 * Per 32-weight block, the 8 rows' 16 code bytes are a 4 x 8 transpose of
 * 4-byte pieces: rows i and i + 4 share a 256-bit vector, then the
 * 32- and 64-bit unpacks of a 4 x 4 transpose per 128-bit lane. */
void lmp_q4_pack_r8_block_avx2(const uint8_t *tmp, size_t rb, int nblk, int ng, int bpg, int asym,
                               uint8_t *o)
{
    const size_t S = 16 * (size_t)(1 + asym);
    for (int b = 0; b < nblk; b++) {
        const uint8_t *src = tmp + 16 * (size_t)b;
        __m256i r[4];
        for (int i = 0; i < 4; i++)
            r[i] = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(src + (size_t)(i + 4) * rb)),
                                    _mm_loadu_si128((const __m128i *)(src + (size_t)i * rb)));
        const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        uint8_t *d = o + lmp_q4_rn_group_at(8, b / bpg, bpg, asym) + S + 128 * (size_t)(b % bpg);
        _mm256_storeu_si256((__m256i *)d, _mm256_unpacklo_epi64(t0, t2));
        _mm256_storeu_si256((__m256i *)(d + 32), _mm256_unpackhi_epi64(t0, t2));
        _mm256_storeu_si256((__m256i *)(d + 64), _mm256_unpacklo_epi64(t1, t3));
        _mm256_storeu_si256((__m256i *)(d + 96), _mm256_unpackhi_epi64(t1, t3));
    }
    for (int i = 0; i < 8; i++) {
        const uint8_t *sc = tmp + (size_t)i * rb + 16 * (size_t)nblk;
        for (int g = 0; g < ng; g++) {
            memcpy(o + lmp_q4_rn_scale_at(8, g, i, bpg, asym), sc + 2 * (size_t)g, 2);
            if (asym) memcpy(o + lmp_q4_rn_min_at(8, g, i, bpg), sc + 2 * (size_t)(ng + g), 2);
        }
    }
}
