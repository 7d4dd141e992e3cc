/* AVX2 + FMA + F16C kernels for the grouped int4 / int8 formats (layout in
 * q4.h). Called only when the CPU supports all three (see q4.c).
 *
 * Per row and token: y = sum_b c_b * isum_b + sum_g mm_g * sx_g where
 *   isum_b = integer dot of block b's codes with the int8 activations
 *            (_mm256_maddubs_epi16: unsigned 4-bit codes x signed int8;
 *            Q8 uses the abs/sign trick), exact in int32 for int4,
 *   c_b    = d_{g(b)} * dx_b (computed 8 blocks at a time before the loop),
 *   m'_g   = m_g (ASYM) or -8 d_g (SYM: codes are stored offset by 8).
 * Differs from the scalar reference only by float association. The work per
 * token is the same whatever number of tokens share a weight row (prefill
 * tiles of up to 4 tokens), so prefill and decode give identical bits.
 */
#include <immintrin.h>
#include <string.h>

#include "quantize/q4.h"
#include "quantize/q4_internal.h"

#define TILE 4
#define PF_BYTES 4096

static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Shuffle masks moving the last 2c bytes of a 16-byte load to the front
 * (zeros after), c = 1..7. */
static const int8_t k_tail_mask[8][16] = {
#define M(c, i) (int8_t)((i) < 2 * (c) ? 16 - 2 * (c) + (i) : -128)
#define ROW(c)                                                                                 \
    {M(c, 0), M(c, 1), M(c, 2),  M(c, 3),  M(c, 4),  M(c, 5),  M(c, 6),  M(c, 7),              \
     M(c, 8), M(c, 9), M(c, 10), M(c, 11), M(c, 12), M(c, 13), M(c, 14), M(c, 15)}
    ROW(0), ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6), ROW(7)
#undef ROW
#undef M
};

/* 8 fp16 values (scales or mins) of groups g.. as floats, 0 past group ng.
 * The array at p has ng entries and at least 16 bytes of the row before
 * its end, so a tail is read as the row's 16 bytes ending at p + 2*ng. */
static inline __m256 load_f16x8(const uint8_t *p, int g, int ng)
{
    if (g + 8 <= ng) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * (size_t)g)));
    __m128i v = _mm_loadu_si128((const __m128i *)(p + 2 * (size_t)ng - 16));
    v = _mm_shuffle_epi8(v, _mm_loadu_si128((const __m128i *)k_tail_mask[ng - g]));
    return _mm256_cvtph_ps(v);
}

/* Per-block scales d_{g(b)} of blocks b .. b+7 (0 past the row's groups). */
static inline __m256 block_scales8(const uint8_t *sc, int b, int bpg, int ng)
{
    if (bpg == 1) return load_f16x8(sc, b, ng);
    const int g = b / bpg;
    const __m256i idx = bpg == 2 ? _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3)
                                 : _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    __m256 d;
    if (bpg == 2 && g + 4 <= ng) {
        uint64_t u;
        memcpy(&u, sc + 2 * (size_t)g, 8);
        d = _mm256_cvtph_ps(_mm_cvtsi64_si128((long long)u));
    } else if (bpg == 4 && g + 2 <= ng) {
        uint32_t u;
        memcpy(&u, sc + 2 * (size_t)g, 4);
        d = _mm256_cvtph_ps(_mm_cvtsi32_si128((int)u));
    } else {
        d = load_f16x8(sc, g, ng);
    }
    return _mm256_permutevar8x32_ps(d, idx);
}

/* One weight row against T (1..TILE) consecutive tokens t0.. Blocks are
 * processed 8 at a time: c_b = d_{g(b)} * dx_b for the 8 blocks in one
 * vector, the 8 exact integer block sums in another (hadd tree), then one
 * FMA into the token's single accumulator, which starts with the offset /
 * min terms. One accumulator per token (not two plus a separate min sum)
 * keeps a 4-token tile within the 16 ymm registers: in-cache CPU -8 %
 * (-2..-14 %) against the two-chain version; exact block sums with one
 * FMA per 8 blocks instead of one per pair: prefill -6..-14 %, decode
 * -2 % (bench/kernel_ab, both builds alternating in one process). */
static inline __attribute__((always_inline)) void row_tile(const lmp_mat *w, const uint8_t *row,
                                                           const lmp_q4_act *a, int t0, int T,
                                                           int r, float *y, const int bpg,
                                                           const int q8, const int asym)
{
    const int nblk = a->nblk, ng = a->ng;
    const uint8_t *sc = row + (size_t)nblk * (q8 ? 32 : 16), *mn = sc + 2 * (size_t)ng;
    __m256 acc0[TILE]; /* per token: min / offset terms, then the blocks */
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256 minus8 = _mm256_set1_ps(-8.0f);
#pragma GCC unroll 4
    for (int tt = 0; tt < T; tt++) acc0[tt] = _mm256_setzero_ps();
    /* offset / min terms: sum_g m'_g * sx_g, 8 groups at a time */
    if (!q8) {
        for (int g = 0; g < ng; g += 8) {
            __m256 mw = asym ? load_f16x8(mn, g, ng) : _mm256_mul_ps(minus8, load_f16x8(sc, g, ng));
#pragma GCC unroll 4
            for (int tt = 0; tt < T; tt++)
                acc0[tt] = _mm256_fmadd_ps(
                    mw, _mm256_loadu_ps(a->sx + (size_t)(t0 + tt) * a->ng_pad + g), acc0[tt]);
        }
    }
    for (int b0 = 0; b0 < nblk; b0 += 8) {
        const int nb = nblk - b0 < 8 ? nblk - b0 : 8;
        const __m256 dw = block_scales8(sc, b0, bpg, ng);
        __m256 cv[TILE];
#pragma GCC unroll 4
        for (int tt = 0; tt < T; tt++)
            cv[tt] = _mm256_mul_ps(dw, _mm256_loadu_ps(a->dx + (size_t)(t0 + tt) * a->nblk_pad + b0));
        if (q8) {
            _Alignas(32) float c[TILE][8];
#pragma GCC unroll 4
            for (int tt = 0; tt < T; tt++) _mm256_store_ps(c[tt], cv[tt]);
            for (int k = 0; k < nb; k++) {
                const int b = b0 + k;
                const __m256i wq = _mm256_loadu_si256((const __m256i *)(row + 32 * (size_t)b));
                const __m256i aw = _mm256_abs_epi8(wq);
#pragma GCC unroll 4
                for (int tt = 0; tt < T; tt++) {
                    const int8_t *xq = a->xq + ((size_t)(t0 + tt) * a->nblk_pad + b) * 32;
                    __m256i xv = _mm256_load_si256((const __m256i *)xq);
                    __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wq));
                    __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                    __m256 cb = _mm256_broadcast_ss(&c[tt][k]);
                    acc0[tt] = _mm256_fmadd_ps(s, cb, acc0[tt]);
                }
            }
            continue;
        }
        /* int4: two blocks per 32-byte load; low nibbles meet activations
         * [2p: 0..15][2p+1: 0..15], high nibbles [2p: 16..31][2p+1: 16..31]
         * (paired layout). The two int16 products add without overflow
         * (2 * 2 * 15 * 127 < 32768); madd makes 4 int32 partial sums per
         * block, and three hadds fold the 4 pairs into the 8 exact block
         * sums, lanes in block order ORD = (0 2 4 6 1 3 5 7). Then one
         * conversion and one FMA per 8 blocks and token (before: one per
         * pair): a 4x shorter FMA chain and fewer port 0/1 operations. */
        const int np = (nb + 1) / 2;
        __m256i H[TILE], G[TILE];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const int b = b0 + 2 * k;
            __m256i v = _mm256_setzero_si256();
            if (nb == 8 || 2 * k + 1 < nb)
                v = _mm256_loadu_si256((const __m256i *)(row + 16 * (size_t)b));
            else if (k < np)
                v = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)(row + 16 * (size_t)b)));
            const __m256i lo = _mm256_and_si256(v, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
#pragma GCC unroll 4
            for (int tt = 0; tt < T; tt++) {
                const int8_t *xq = a->xq + ((size_t)(t0 + tt) * a->nblk_pad + b) * 32;
                __m256i m = _mm256_setzero_si256();
                if (nb == 8 || k < np)
                    m = _mm256_madd_epi16(
                        _mm256_add_epi16(
                            _mm256_maddubs_epi16(lo, _mm256_load_si256((const __m256i *)xq)),
                            _mm256_maddubs_epi16(hi, _mm256_load_si256((const __m256i *)(xq + 32)))),
                        ones);
                if (k == 0) H[tt] = m;
                else if (k == 1) H[tt] = _mm256_hadd_epi32(H[tt], m);
                else if (k == 2) G[tt] = m;
                else H[tt] = _mm256_hadd_epi32(H[tt], _mm256_hadd_epi32(G[tt], m));
            }
        }
        const __m256i ord = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
#pragma GCC unroll 4
        for (int tt = 0; tt < T; tt++)
            acc0[tt] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(H[tt]),
                                       _mm256_permutevar8x32_ps(cv[tt], ord), acc0[tt]);
    }
#pragma GCC unroll 4
    for (int tt = 0; tt < T; tt++)
        y[(size_t)(t0 + tt) * w->rows + r] = hsum8(acc0[tt]);
}

/* Rows [r0, r1) with compile-time group size and kind (so block_scales8
 * and the loops specialize). */
static inline __attribute__((always_inline)) void rows_spec(const lmp_mat *w, const lmp_q4_act *a,
                                                            int r0, int r1, float *y, const int bpg,
                                                            const int q8, const int asym)
{
    const uint8_t *base = w->data;
    const size_t total = (size_t)w->rows * w->row_bytes;
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = base + (size_t)r * w->row_bytes;
        /* software prefetch PF_BYTES ahead of this row (within the matrix):
         * it lifts the single-core streaming rate of a decode matvec from
         * ~5 to ~7 GB/s on the development VM */
        if ((size_t)r * w->row_bytes + PF_BYTES + w->row_bytes <= total)
            for (size_t o = 0; o < w->row_bytes; o += 64)
                _mm_prefetch((const char *)(row + PF_BYTES + o), _MM_HINT_T0);
        int t = 0;
        for (; t + TILE <= a->n; t += TILE) row_tile(w, row, a, t, TILE, r, y, bpg, q8, asym);
        switch (a->n - t) {
        case 3: row_tile(w, row, a, t, 3, r, y, bpg, q8, asym); break;
        case 2: row_tile(w, row, a, t, 2, r, y, bpg, q8, asym); break;
        case 1: row_tile(w, row, a, t, 1, r, y, bpg, q8, asym); break;
        default: break;
        }
    }
}

#define SPEC(bpg, q8, asym)                                                                     \
    static void rows_##bpg##_##q8##_##asym(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, \
                                           float *y)                                            \
    {                                                                                           \
        rows_spec(w, a, r0, r1, y, bpg, q8, asym);                                              \
    }
SPEC(1, 0, 0)
SPEC(2, 0, 0)
SPEC(4, 0, 0)
SPEC(1, 0, 1)
SPEC(2, 0, 1)
SPEC(4, 0, 1)
SPEC(1, 1, 0)
SPEC(2, 1, 0)
SPEC(4, 1, 0)
#undef SPEC

void lmp_q4_rows_avx2(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y)
{
    const int q8 = w->kind == LMP_MAT_Q8, asym = !q8 && w->scheme == LMP_Q4_ASYM;
    typedef void (*fn)(const lmp_mat *, const lmp_q4_act *, int, int, float *);
    static const fn tab[3][3] = {{rows_1_0_0, rows_2_0_0, rows_4_0_0},
                                 {rows_1_0_1, rows_2_0_1, rows_4_0_1},
                                 {rows_1_1_0, rows_2_1_0, rows_4_1_0}};
    tab[q8 ? 2 : asym][a->bpg >> 1](w, a, r0, r1, y);
}

/* Activation quantization of one full 32-element block with exactly the
 * scalar arithmetic of q4.c (max of |x| is order-independent; x * id,
 * clamp, round-to-nearest-even by the 1.5*2^23 trick are the same IEEE
 * operations), so the int8 values are bit-identical to the scalar path. */
float lmp_q4_absmax32_avx2(const float *x, int *bad)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 big = _mm256_set1_ps(3.4e38f);
    __m256 m = _mm256_setzero_ps(), nf = _mm256_setzero_ps();
    for (int k = 0; k < 32; k += 8) {
        __m256 v = _mm256_and_ps(_mm256_loadu_ps(x + k), absmask);
        nf = _mm256_or_ps(nf, _mm256_cmp_ps(v, big, _CMP_NLE_UQ)); /* !(v <= big) */
        m = _mm256_max_ps(m, v);
    }
    *bad = _mm256_movemask_ps(nf) != 0;
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

int lmp_q4_quant32_avx2(const float *x, float id, int8_t *out)
{
    const __m256 vid = _mm256_set1_ps(id), hi = _mm256_set1_ps(127.0f),
                 lo = _mm256_set1_ps(-127.0f), magic = _mm256_set1_ps(12582912.0f);
    __m256i q[4];
    for (int k = 0; k < 4; k++) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid);
        v = _mm256_max_ps(_mm256_min_ps(v, hi), lo);
        v = _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
        q[k] = _mm256_cvtps_epi32(v);
    }
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    /* packs work per 128-bit lane: restore element order afterwards */
    __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
    __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)out, p8);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    return _mm_cvtsi128_si32(s4);
}
