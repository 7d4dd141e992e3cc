/* AVX-512 VNNI kernel for the grouped int4 formats (SYM / ASYM; layout in
 * q4.h). Called only when lmp_cpu_avx512() holds (see q4.c), with the
 * activations in the LMP_Q4_QUAD layout (q4_internal.h).
 *
 * One 64-byte load holds the nibbles of 4 consecutive 32-element blocks
 * (a "quad"). lo = v & 15 and hi = (v >> 4) & 15 meet the two 64-byte
 * halves of the quad's int8 activations in two _mm512_dpbusd_epi32
 * (unsigned codes x signed int8, 4 products per int32 lane, no overflow:
 * 8 * 15 * 127 < 2^31), giving 16 int32 partial sums, lanes 4k..4k+3 of
 * block 4q+k. Per quad and token:
 *   acc += (float(isum) * dx4) * d4
 * with dx4 the token's block scales (each repeated 4 times, precomputed
 * once per matmul by q4.c) and d4 the row's group scales spread to the
 * lanes (16 fp16 scales converted at once, one permute per quad). The
 * min / offset term sum_g m'_g * sx_g (m' = m for ASYM, -8 d for SYM) is
 * added to the same accumulator 16 groups at a time, and one horizontal
 * sum per row and token gives y. Ragged rows use masked loads (codes of
 * the last, partial quad; scales and mins of the last < 16 groups): masked
 * bytes read as zero and meet zero activations, so there is no tail code.
 *
 * Integer block sums are exact; only the float association differs from
 * the scalar reference. Every y[t][r] is computed by exactly the same
 * sequence of operations whatever the tile of tokens it shares a weight row
 * with, the thread split or the token count, so prefill and decode give
 * identical bits and the thread count never changes a result.
 */
#include <immintrin.h>
#include <string.h>

#include "quantize/q4.h"
#include "quantize/q4_internal.h"

/* Tokens per weight-row pass in prefill: the nibble unpack, scale
 * conversion and permutes of a quad are shared by TILE tokens. Measured
 * (256 x 960 ASYM g64, 128 tokens, in cache, loaded VM): ns per 64 weights
 * per token 2.1 (4 tokens), 1.6 (8), 1.8 (12), 1.8 (16). */
#ifndef TILE
#define TILE 8
#endif
/* Software prefetch distance (bytes ahead of the current row), as in the
 * AVX2 kernel: without it a single-thread decode matvec streams at ~5-6
 * instead of ~8-9 GB/s on the (loaded) development VM; 8 KB measured the
 * same as 4 KB, one prefetch per quad inside the loop no better. */
#ifndef PF_BYTES
#define PF_BYTES 4096
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* 16 fp16 values (scales or mins) of groups g..g+15 as floats, 0 past
 * group ng (masked load: never reads past the array). */
ALWAYS_INLINE __m512 load_f16x16(const uint8_t *p, int g, int ng)
{
    const int left = ng - g;
    if (left >= 16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2 * (size_t)g)));
    const __mmask16 k = (__mmask16)((1u << left) - 1u);
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p + 2 * (size_t)g));
}

/* Lane -> group permutes: quad j of a 16-group chunk, lane l belongs to
 * block 4j + l/4 of the chunk, i.e. group (4j + l/4) / bpg. */
#define IDX(bpg, j)                                                                             \
    {(4 * (j) + 0) / (bpg), (4 * (j) + 0) / (bpg), (4 * (j) + 0) / (bpg), (4 * (j) + 0) / (bpg), \
     (4 * (j) + 1) / (bpg), (4 * (j) + 1) / (bpg), (4 * (j) + 1) / (bpg), (4 * (j) + 1) / (bpg), \
     (4 * (j) + 2) / (bpg), (4 * (j) + 2) / (bpg), (4 * (j) + 2) / (bpg), (4 * (j) + 2) / (bpg), \
     (4 * (j) + 3) / (bpg), (4 * (j) + 3) / (bpg), (4 * (j) + 3) / (bpg), (4 * (j) + 3) / (bpg)}
#define IDX4(bpg, j) IDX(bpg, j), IDX(bpg, j + 1), IDX(bpg, j + 2), IDX(bpg, j + 3)
static const int32_t k_idx1[4][16] __attribute__((aligned(64))) = {IDX4(1, 0)};
static const int32_t k_idx2[8][16] __attribute__((aligned(64))) = {IDX4(2, 0), IDX4(2, 4)};
static const int32_t k_idx4[16][16] __attribute__((aligned(64))) = {IDX4(4, 0), IDX4(4, 4),
                                                                    IDX4(4, 8), IDX4(4, 12)};
#undef IDX4
#undef IDX

/* One quad q of a row against T tokens: v holds the quad's 64 code bytes,
 * d4 the row's group scales per lane. */
ALWAYS_INLINE void quad_tokens(__m512i v, __m512 d4, const lmp_q4_act *a, int t0, int T, int q,
                               __m512 *acc)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i lo = _mm512_and_si512(v, m4);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    const size_t xs = (size_t)a->nblk_pad * 32, ds = (size_t)a->nblk_pad * 4;
    const int8_t *xq = a->xq + (size_t)t0 * xs + 128 * (size_t)q;
    const float *dx4 = a->dx4 + (size_t)t0 * ds + 16 * (size_t)q;
#pragma GCC unroll 16
    for (int tt = 0; tt < T; tt++) {
        __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo,
                                        _mm512_loadu_si512((const void *)(xq + tt * xs)));
        s = _mm512_dpbusd_epi32(s, hi, _mm512_loadu_si512((const void *)(xq + tt * xs + 64)));
        const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_loadu_ps(dx4 + tt * ds));
        acc[tt] = _mm512_fmadd_ps(f, d4, acc[tt]);
    }
}

/* One weight row against T (1..TILE) consecutive tokens t0.., results to
 * y[(t0 + tt) * rows + r]. bpg (blocks per group) and asym are
 * compile-time constants after inlining. */
ALWAYS_INLINE void row_tile(const uint8_t *row, const lmp_q4_act *a, int t0, int T, int r,
                            int rows, float *y, const int bpg, const int asym)
{
    const int nblk = a->nblk, ng = a->ng, nfull = nblk >> 2, tail = nblk & 3;
    const int qpc = 4 * bpg; /* quads per chunk of 16 groups */
    const int32_t(*idx)[16] = bpg == 1 ? k_idx1 : bpg == 2 ? k_idx2 : k_idx4;
    const uint8_t *sc = row + 16 * (size_t)nblk, *mn = sc + 2 * (size_t)ng;
    const __m512 minus8 = _mm512_set1_ps(-8.0f);
    const __mmask64 ktail = tail ? (~0ull >> (64 - 16 * tail)) : 0;
    __m512 acc[TILE];
#pragma GCC unroll 16
    for (int tt = 0; tt < T; tt++) acc[tt] = _mm512_setzero_ps();
    for (int g0 = 0, q0 = 0; g0 < ng; g0 += 16, q0 += qpc) {
        const __m512 d16 = load_f16x16(sc, g0, ng);
        /* offset / min term of these 16 groups */
        const __m512 m16 = asym ? load_f16x16(mn, g0, ng) : _mm512_mul_ps(minus8, d16);
#pragma GCC unroll 16
        for (int tt = 0; tt < T; tt++)
            acc[tt] = _mm512_fmadd_ps(m16, _mm512_loadu_ps(a->sx + (size_t)(t0 + tt) * a->ng_pad + g0),
                                      acc[tt]);
        const int q1 = q0 + qpc < nfull ? q0 + qpc : nfull;
        for (int q = q0; q < q1; q++) {
            const __m512i v = _mm512_loadu_si512((const void *)(row + 64 * (size_t)q));
            const __m512 d4 = _mm512_permutexvar_ps(_mm512_load_si512((const void *)idx[q - q0]), d16);
            quad_tokens(v, d4, a, t0, T, q, acc);
        }
        if (tail && nfull >= q0 && nfull < q0 + qpc) { /* last, partial quad */
            const __m512i v = _mm512_maskz_loadu_epi8(ktail, row + 64 * (size_t)nfull);
            const __m512 d4 =
                _mm512_permutexvar_ps(_mm512_load_si512((const void *)idx[nfull - q0]), d16);
            quad_tokens(v, d4, a, t0, T, nfull, acc);
        }
    }
#pragma GCC unroll 16
    for (int tt = 0; tt < T; tt++) y[(size_t)(t0 + tt) * rows + r] = _mm512_reduce_add_ps(acc[tt]);
}

/* Tokens t0.. (T of them) against rows [r0, r1); prefetch: also fetch
 * the weights PF_BYTES ahead (first pass over these rows only). */
ALWAYS_INLINE void rows_pass(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y,
                             int t0, int T, int prefetch, const int bpg, const int asym)
{
    const uint8_t *base = w->data;
    const size_t total = (size_t)w->rows * w->row_bytes;
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = base + (size_t)r * w->row_bytes;
        if (prefetch && (size_t)r * w->row_bytes + PF_BYTES + w->row_bytes <= total)
            for (size_t o = 0; o < w->row_bytes; o += 64)
                _mm_prefetch((const char *)(row + PF_BYTES + o), _MM_HINT_T0);
        row_tile(row, a, t0, T, r, w->rows, y, bpg, asym);
    }
}

/* Weight bytes per row block in prefill: the block's rows are re-read from
 * L2 once per tile of tokens, while the tile's activations stay in L1
 * (rows outer, all tokens inner would stream every token's activations
 * from L2 for every row: ~190 bytes per 128 weights per token). */
#define ROWBLOCK_BYTES (128 * 1024)

/* Rows [r0, r1) with compile-time group size and scheme. */
ALWAYS_INLINE void rows_spec(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y,
                             const int bpg, const int asym)
{
    int rb = (int)(ROWBLOCK_BYTES / w->row_bytes);
    if (rb < 1) rb = 1;
    for (int b0 = r0; b0 < r1; b0 += rb) {
        const int b1 = r1 - b0 < rb ? r1 : b0 + rb;
        int t = 0;
        for (; t + TILE <= a->n; t += TILE) rows_pass(w, a, b0, b1, y, t, TILE, t == 0, bpg, asym);
        /* the rest in tiles of 4, 2, 1: same operations per token */
        for (; t + 4 <= a->n; t += 4) rows_pass(w, a, b0, b1, y, t, 4, t == 0, bpg, asym);
        if (a->n - t >= 2) {
            rows_pass(w, a, b0, b1, y, t, 2, t == 0, bpg, asym);
            t += 2;
        }
        if (a->n - t >= 1) rows_pass(w, a, b0, b1, y, t, 1, t == 0, bpg, asym);
    }
}

#define SPEC(bpg, asym)                                                                         \
    static void rows_##bpg##_##asym(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1,      \
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

void lmp_q4_rows_avx512(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y)
{
    typedef void (*fn)(const lmp_mat *, const lmp_q4_act *, int, int, float *);
    static const fn tab[2][3] = {{rows_1_0, rows_2_0, rows_4_0}, {rows_1_1, rows_2_1, rows_4_1}};
    tab[w->scheme == LMP_Q4_ASYM][a->bpg >> 1](w, a, r0, r1, y);
}
