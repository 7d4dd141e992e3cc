/* AVX-512 VNNI kernel for int4 SYM / ASYM weights in LMP_Q4_LAYOUT_R16
 * (q4.h), with the activations in LMP_Q4_PLAIN order (q4_internal.h).
 * Called only when lmp_cpu_avx512() holds (see q4.c rows_dispatch).
 *
 * Sixteen rows at a time: int32 lane i of every vector is row i of the
 * block. Per 32-weight block b: four 64-byte loads hold the block's 16
 * code bytes of all 16 rows, lo = v & 15 and hi = (v >> 4) & 15, and per
 * token eight vpdpbusd, each with 4 activation bytes broadcast to all
 * lanes (elements 4q..4q+3 meet lo[q], 16+4q..16+4q+3 meet hi[q]), leave
 * the exact integer dot product of block b in every row's lane. Then, per
 * token and lane (row), in this order and no other:
 *   per group g:           acc = fma(m'_g, sx_g, acc)
 *   per block b of g:      acc = fma(float(isum_b), d_g * dx_b, acc)
 * with m' = m (ASYM) or -8 d (SYM), and acc is the row's result: no
 * horizontal sum. The X16 kernel (q4_avx512.c) spends ~30 % of its time on
 * the per-row lane sums, the min term and the per-row restart; here a
 * 16-token prompt step runs at 0.47 ns per 64 weights and token in cache
 * against 0.63 (bench/kernel_ab/peak.sh, rows 3 and 5).
 *
 * Prefill takes the tokens in tiles of 8, one chain of 8 vpdpbusd per
 * token, the tokens' chains interleaved step by step; decode (or the odd
 * last token) a low-nibble and a high-nibble chain of 4. Integer sums
 * are exact and the float sequence per (row, token) is the one above
 * whatever the tile, the row range or the thread, so prefill and decode
 * give the same bits. The order differs from the X16 kernel's, so the bits
 * differ from it (the reference within float rounding). */
#include <immintrin.h>
#include <stdint.h>

#include "quantize/q4.h"
#include "quantize/q4_internal.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Tokens per prefill tile (8 accumulators + 8 code vectors + 4 chains fit
 * the 32 registers). */
#define TT 8
/* As in the other kernels: software prefetch this far ahead in decode. */
#define PF_BYTES 4096
/* Prefill: a chunk of 16-row blocks stays in L2 while every token tile
 * passes over it. */
#define ROWBLOCK_BYTES (128 * 1024)

/* acc += vpdpbusd(w, the 4 bytes at p broadcast to all 16 lanes). Inline
 * assembly for the embedded broadcast: written with _mm512_set1_epi32,
 * GCC 12 hoists the activation broadcasts of all tokens out of the row
 * loop into 64-byte stack copies, 0.80 instead of 0.47 ns per 64 weights
 * and token (measured). */
ALWAYS_INLINE __m512i dpb(__m512i acc, __m512i w, const int32_t *p)
{
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*p));
    return acc;
}

/* One block of 16 rows (blk) against T tokens t0.. (T == 1 or even, <=
 * TT); lane i goes to y[t * rows + r16 + i] when bit i of keep is set. */
ALWAYS_INLINE void tile(const uint8_t *blk, const lmp_q4_act *a, int t0, const int T, float *y,
                        int rows, int r16, __mmask16 keep, int prefetch, const uint8_t *pf_end,
                        const int bpg, const int asym)
{
    const int nblk = a->nblk, ng = a->ng;
    const size_t xs = (size_t)a->nblk_pad * 32, ds = (size_t)a->nblk_pad, ss = (size_t)a->ng_pad;
    const int8_t *xq = a->xq + (size_t)t0 * xs;
    const float *dx = a->dx + (size_t)t0 * ds, *sx = a->sx + (size_t)t0 * ss;
    /* the activations are the same for every row block: keep GCC from
     * hoisting their broadcasts out of the caller's row loop (spills) */
    __asm__("" : "+r"(xq), "+r"(dx), "+r"(sx));
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc[TT];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    const uint8_t *gp = blk; /* the current group's part: one sequential stream */
    for (int g = 0; g < ng; g++, gp += 32 * (1 + asym) + 256 * bpg) {
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)gp));
        const __m512 m = asym ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(gp + 32)))
                              : _mm512_mul_ps(_mm512_set1_ps(-8.0f), d);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            acc[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(sx[(size_t)t * ss + (size_t)g]), acc[t]);
        const int b1 = (g + 1) * bpg < nblk ? (g + 1) * bpg : nblk;
        for (int b = g * bpg; b < b1; b++) {
            const uint8_t *cb = gp + 32 * (1 + asym) + 256 * (b - g * bpg);
            if (prefetch && cb + PF_BYTES + 256 <= pf_end)
                for (int k = 0; k < 4; k++) _mm_prefetch((const char *)(cb + PF_BYTES + 64 * k), _MM_HINT_T0);
            __m512i lo[4], hi[4];
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) {
                const __m512i v = _mm512_loadu_si512((const void *)(cb + 64 * q));
                lo[q] = _mm512_and_si512(v, m4);
                hi[q] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
            if (T == 1) {
                const int32_t *x0 = (const int32_t *)(xq + 32 * (size_t)b);
                __m512i c0 = dpb(_mm512_setzero_si512(), lo[0], x0);
                __m512i e0 = dpb(_mm512_setzero_si512(), hi[0], x0 + 4);
#pragma GCC unroll 4
                for (int q = 1; q < 4; q++) {
                    c0 = dpb(c0, lo[q], x0 + q);
                    e0 = dpb(e0, hi[q], x0 + 4 + q);
                }
                const __m512 s0 = _mm512_mul_ps(d, _mm512_set1_ps(dx[b]));
                acc[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(c0, e0)), s0, acc[0]);
                continue;
            }
            /* one chain of 8 per token, the tokens interleaved step by step
             * (8 independent chains in flight): 0.43 ns per 64 weights and
             * token against 0.47 with a low and a high chain per token
             * taken two tokens at a time (fewer adds and zeroings) */
            __m512i c[TT];
#pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                c[t] = dpb(_mm512_setzero_si512(), lo[0],
                           (const int32_t *)(xq + (size_t)t * xs + 32 * (size_t)b));
#pragma GCC unroll 8
            for (int q = 1; q < 8; q++)
#pragma GCC unroll 8
                for (int t = 0; t < T; t++) {
                    const int32_t *x0 = (const int32_t *)(xq + (size_t)t * xs + 32 * (size_t)b);
                    c[t] = dpb(c[t], q < 4 ? lo[q] : hi[q - 4], x0 + q);
                }
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const __m512 st = _mm512_mul_ps(d, _mm512_set1_ps(dx[(size_t)t * ds + (size_t)b]));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c[t]), st, acc[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + (size_t)(t0 + t) * (size_t)rows + (size_t)r16, keep, acc[t]);
}

/* Row blocks [R0, R1) (16 rows each) against tokens t0.. (T of them). */
ALWAYS_INLINE void blocks_pass(const lmp_mat *w, const lmp_q4_act *a, int R0, int R1, int r0,
                               int r1, float *y, int t0, const int T, int prefetch, const int bpg,
                               const int asym)
{
    const size_t bb = 16 * w->row_bytes;
    const uint8_t *base = w->data, *end = base + (size_t)w->rows * w->row_bytes;
    for (int R = R0; R < R1; R++) {
        const int lo = r0 - 16 * R, hi = r1 - 16 * R; /* rows of this block in range */
        __mmask16 keep = 0xffff;
        if (lo > 0) keep &= (__mmask16)(0xffffu << lo);
        if (hi < 16) keep &= (__mmask16)((1u << hi) - 1u);
        tile(base + (size_t)R * bb, a, t0, T, y, w->rows, 16 * R, keep, prefetch, end, bpg, asym);
    }
}

ALWAYS_INLINE void rows_spec(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y,
                             const int bpg, const int asym)
{
    const int Rb = r0 / 16, Re = (r1 + 15) / 16;
    if (a->n == 1) {
        blocks_pass(w, a, Rb, Re, r0, r1, y, 0, 1, 1, bpg, asym);
        return;
    }
    int chunk = (int)(ROWBLOCK_BYTES / (16 * w->row_bytes));
    if (chunk < 1) chunk = 1;
    for (int c0 = Rb; c0 < Re; c0 += chunk) {
        const int c1 = Re - c0 < chunk ? Re : c0 + chunk;
        int t = 0;
        for (; t + TT <= a->n; t += TT) blocks_pass(w, a, c0, c1, r0, r1, y, t, TT, t == 0, bpg, asym);
        switch ((a->n - t) & ~1) { /* the rest: an even tile, then one token */
        case 6: blocks_pass(w, a, c0, c1, r0, r1, y, t, 6, t == 0, bpg, asym); break;
        case 4: blocks_pass(w, a, c0, c1, r0, r1, y, t, 4, t == 0, bpg, asym); break;
        case 2: blocks_pass(w, a, c0, c1, r0, r1, y, t, 2, t == 0, bpg, asym); break;
        default: break;
        }
        t += (a->n - t) & ~1;
        if (t < a->n) blocks_pass(w, a, c0, c1, r0, r1, y, t, 1, t == 0, bpg, asym);
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

void lmp_q4_rows_r16_avx512(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y)
{
    typedef void (*fn)(const lmp_mat *, const lmp_q4_act *, int, int, float *);
    static const fn tab[2][3] = {{rows_1_0, rows_2_0, rows_4_0}, {rows_1_1, rows_2_1, rows_4_1}};
    tab[w->scheme == LMP_Q4_ASYM][a->bpg >> 1](w, a, r0, r1, y);
}
