/* AVX-512 VNNI kernel for the grouped int4 formats (SYM / ASYM; layout in
 * q4.h). Called only when lmp_cpu_avx512() holds (see q4.c), with the
 * activations in the LMP_Q4_HEXA layout (q4_internal.h).
 *
 * A row is processed 16 blocks (512 weights, a "hexa") at a time. Four
 * 64-byte loads hold the nibbles of the 16 blocks (a "quad" of 4 blocks per
 * load); one vpermd per load and a 4 x 4 transpose of 128-bit lanes
 * (8 vshufi32x4) move them so that int32 lane L of every vector belongs to
 * block L (hexa_transpose). lo = v & 15 and hi = (v >> 4) & 15 then meet the
 * token's int8 activations (stored in that order by q4.c) in 8
 * _mm512_dpbusd_epi32 (unsigned codes x signed int8, no overflow:
 * 32 * 15 * 127 < 2^31), which leave the exact integer dot product of
 * block L in lane L. Per hexa and token:
 *   acc += (float(isum) * dx) * d
 * with dx the token's 16 block scales (a plain load) and d the row's group
 * scales per lane (16 fp16 scales converted at once, one permute for group
 * 64 / 128). The transpose and unpack are shared by all tokens of a
 * prefill tile, so a token costs 12 vector instructions per 512 weights.
 * The min / offset term sum_g m'_g * sx_g (m' = m for ASYM, -8 d for SYM)
 * is added to the same accumulator 16 groups at a time, and one horizontal
 * sum per row and token gives y. Ragged rows use masked loads (codes of the
 * last, partial hexa; scales and mins of the last < 16 groups): masked
 * bytes read as zero and meet zero activations, so there is no tail code.
 *
 * Weights re-ordered by a loader into LMP_Q4_LAYOUT_X16 (q4.h,
 * q4_pack.c) are already in the transposed order: their hexas are four
 * plain (or dword-masked) loads, no vpermd / vshufi32x4. That removes 12
 * of the ~38 vector instructions a decode step spends per 512 weights
 * (measured: in-cache decode -23 % on 960-column rows, end-to-end decode
 * +8 % at 2 threads; docs/PERFORMANCE.md). Both layouts give the same
 * bits.
 *
 * Integer block sums are exact; only the float association differs from
 * the scalar reference. Every y[t][r] is computed by exactly the same
 * sequence of float operations whatever the tile of tokens it shares a
 * weight row with, the thread split or the token count, so prefill and
 * decode give identical bits and the thread count never changes a result.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quantize/q4.h"
#include "quantize/q4_internal.h"

/* Tokens per weight-row pass in prefill: the code transpose / unpack and
 * the scale conversion of a hexa are shared by a tile of tokens. 16 tokens
 * while their activations fit comfortably in the 32 KB L1 (rows up to
 * TILE16_COLS wide), else 8; the rest in tiles of 8, 4, 2, 1. Measured
 * (ASYM g64, 128 tokens, in cache, CPU time, loaded VM), ns per 64 weights
 * per token: [256 x 960] 1.50 (8) 1.45 (12) 1.33 (16); [96 x 2560] 2.20
 * (8) 2.29 (12) 2.43 (16); 4 tokens 2.9 / 3.8. */
#define TILE 16
#define TILE16_COLS 1536
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

/* Lane -> group permutes for a 16-block "hexa" h of a 16-group chunk:
 * lane L is block 16h + L of the chunk, group (16h + L) / bpg. (bpg 1: the
 * chunk's 16 scales are the lanes as they are.) */
#define IDX(bpg, h)                                                                             \
    {(16 * (h) + 0) / (bpg),  (16 * (h) + 1) / (bpg),  (16 * (h) + 2) / (bpg),                  \
     (16 * (h) + 3) / (bpg),  (16 * (h) + 4) / (bpg),  (16 * (h) + 5) / (bpg),                  \
     (16 * (h) + 6) / (bpg),  (16 * (h) + 7) / (bpg),  (16 * (h) + 8) / (bpg),                  \
     (16 * (h) + 9) / (bpg),  (16 * (h) + 10) / (bpg), (16 * (h) + 11) / (bpg),                 \
     (16 * (h) + 12) / (bpg), (16 * (h) + 13) / (bpg), (16 * (h) + 14) / (bpg),                 \
     (16 * (h) + 15) / (bpg)}
static const int32_t k_idx2[2][16] __attribute__((aligned(64))) = {IDX(2, 0), IDX(2, 1)};
static const int32_t k_idx4[4][16] __attribute__((aligned(64))) = {IDX(4, 0), IDX(4, 1), IDX(4, 2),
                                                                   IDX(4, 3)};
#undef IDX

/* The codes of blocks 16h..16h+15 (4 quads of 64 bytes; quad i holds
 * blocks 16h + 4i + k at bytes 16k..16k+15) transposed by 4-byte pieces:
 * dword lane L = 4i + k of o[j] = bytes 4j..4j+3 of block 16h + L, i.e.
 * elements 4j..4j+3 (low nibbles) and 16+4j..16+4j+3 (high nibbles).
 * Step 1 (vpermd) orders each quad's dwords as [j][k]; step 2 transposes
 * the 4 x 4 matrix of 128-bit lanes (quad i, piece j). Masked loads (k)
 * zero the codes past the row's last block. o[j] is exactly the 64 bytes
 * at 64j of the hexa in LMP_Q4_LAYOUT_X16 (q4.h). */
ALWAYS_INLINE void quads_transpose(const __m512i v[4], __m512i o[4])
{
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __m512i q[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) q[i] = _mm512_permutexvar_epi32(perm, v[i]);
    const __m512i t0 = _mm512_shuffle_i32x4(q[0], q[1], 0x44), t1 = _mm512_shuffle_i32x4(q[0], q[1], 0xee),
                  t2 = _mm512_shuffle_i32x4(q[2], q[3], 0x44), t3 = _mm512_shuffle_i32x4(q[2], q[3], 0xee);
    o[0] = _mm512_shuffle_i32x4(t0, t2, 0x88);
    o[1] = _mm512_shuffle_i32x4(t0, t2, 0xdd);
    o[2] = _mm512_shuffle_i32x4(t1, t3, 0x88);
    o[3] = _mm512_shuffle_i32x4(t1, t3, 0xdd);
}

ALWAYS_INLINE void hexa_transpose(const uint8_t *p, int full, const __mmask64 *k, __m512i o[4])
{
    __m512i v[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        v[i] = full ? _mm512_loadu_si512((const void *)(p + 64 * i)) : _mm512_maskz_loadu_epi8(k[i], p + 64 * i);
    quads_transpose(v, o);
}

/* The same four vectors from a hexa already in LMP_Q4_LAYOUT_X16: plain
 * loads (a partial hexa of nb blocks: nb dwords each at 4*nb*j, the lanes
 * past nb zeroed by the mask k16). */
ALWAYS_INLINE void hexa_x16(const uint8_t *p, int full, int nb, __mmask16 k16, __m512i o[4])
{
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        o[j] = full ? _mm512_loadu_si512((const void *)(p + 64 * j))
                    : _mm512_maskz_loadu_epi32(k16, p + 4 * (size_t)nb * (size_t)j);
}

/* Low and high nibbles of the four transposed vectors. */
ALWAYS_INLINE void hexa_nibbles(const __m512i o[4], __m512i lo[4], __m512i hi[4])
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        lo[j] = _mm512_and_si512(o[j], m4);
        hi[j] = _mm512_and_si512(_mm512_srli_epi16(o[j], 4), m4);
    }
}

/* LMP_Q4_LAYOUT_R16 (q4.h) is the same 4-byte transpose with rows in
 * place of blocks: quad k = rows 4k..4k+3 (16 code bytes of block b
 * each), and o[q] is the 64-byte piece of code bytes 4q..4q+3 of all 16
 * rows. The 16 rows' scales and mins of a group are gathered. */
void lmp_q4_pack_r16_block_avx512(const uint8_t *tmp, size_t rb, int nblk, int ng, int bpg,
                                  int asym, uint8_t *o)
{
    const __m512i rows = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32((int)rb));
    const uint8_t *sc = tmp + 16 * (size_t)nblk, *mn = sc + 2 * (size_t)ng;
    for (int g = 0; g < ng; g++) {
        _mm256_storeu_si256((__m256i *)o, _mm512_cvtepi32_epi16(
                                              _mm512_i32gather_epi32(rows, sc + 2 * (size_t)g, 1)));
        o += 32;
        if (asym) {
            _mm256_storeu_si256((__m256i *)o, _mm512_cvtepi32_epi16(_mm512_i32gather_epi32(
                                                  rows, mn + 2 * (size_t)g, 1)));
            o += 32;
        }
        const int b1 = (g + 1) * bpg < nblk ? (g + 1) * bpg : nblk;
        for (int b = g * bpg; b < b1; b++, o += 256) {
            const uint8_t *p = tmp + 16 * (size_t)b;
            __m512i v[4], out[4];
            for (int k = 0; k < 4; k++) {
                __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p + (4 * k) * rb)));
                z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(p + (4 * k + 1) * rb)), 1);
                z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(p + (4 * k + 2) * rb)), 2);
                v[k] = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(p + (4 * k + 3) * rb)), 3);
            }
            quads_transpose(v, out);
            for (int q = 0; q < 4; q++) _mm512_storeu_si512((void *)(o + 64 * q), out[q]);
        }
    }
}

int lmp_q4_pack_hexas_avx512(const uint8_t *in, uint8_t *out, int n)
{
    for (int h = 0; h < n; h++) {
        __m512i o[4];
        hexa_transpose(in + 256 * (size_t)h, 1, NULL, o);
        for (int j = 0; j < 4; j++) _mm512_storeu_si512((void *)(out + 256 * (size_t)h + 64 * j), o[j]);
    }
    return n;
}

/* ---- activations --------------------------------------------------------
 * One token's activations quantized straight into the LMP_Q4_HEXA order
 * (q4_internal.h): the same numbers as q4.c's act_quantize loop, bit for
 * bit (same max, same 127 / am and am / 127, same clamp and
 * round-to-nearest-even by the 1.5 * 2^23 trick, same sequential sx sums),
 * 16 elements per instruction instead of 8 and no per-element index
 * arithmetic: measured 2.0 ns per element before, the whole prefill spends
 * ~12 % of a 16-token prompt there otherwise. q, dx, sx are zeroed by the
 * caller (padding). */
/* Lane L of the result (L < n, n = 8 or 16) = the reduction of the 16
 * lanes of v[L], for n vectors at once: the float sum (TREE_ADD), the max
 * (TREE_MAX) or the int32 sum (TREE_IADD). Each level combines lane i with
 * lane i+8, then i+4, i+2, i+1 of every vector, the pairs of hsum16, so a
 * TREE_ADD lane has the bits of hsum16 of its vector; two vectors share
 * every add and shuffle. */
enum { TREE_ADD, TREE_MAX, TREE_IADD };
ALWAYS_INLINE __m512 tree_reduce(const __m512 *v, const int n, const int kind)
{
#define OP(a, b)                                                                                \
    (kind == TREE_ADD   ? _mm512_add_ps(a, b)                                                   \
     : kind == TREE_MAX ? _mm512_max_ps(a, b)                                                   \
                        : _mm512_castsi512_ps(                                                  \
                              _mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b))))
    __m512 w[8], x[4], yv[2];
    /* i + i+8: w[k] = [v[2k]: 8 lanes | v[2k+1]: 8 lanes] */
#pragma GCC unroll 8
    for (int k = 0; k < n / 2; k++)
        w[k] = OP(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44),
                  _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xee));
    /* i + i+4: quarter j of x[k] = v[4k + j] (4 lanes) */
#pragma GCC unroll 4
    for (int k = 0; k < n / 4; k++)
        x[k] = OP(_mm512_shuffle_f32x4(w[2 * k], w[2 * k + 1], 0x88),
                  _mm512_shuffle_f32x4(w[2 * k], w[2 * k + 1], 0xdd));
    /* i + i+2: quarter j of yv[k] = [v[8k + j]: 2 lanes, v[8k + 4 + j]: 2] */
#pragma GCC unroll 2
    for (int k = 0; k < n / 8; k++)
        yv[k] = OP(_mm512_shuffle_ps(x[2 * k], x[2 * k + 1], 0x44),
                   _mm512_shuffle_ps(x[2 * k], x[2 * k + 1], 0xee));
    if (n == 8) yv[1] = yv[0];
    /* i + i+1: lane 4j + u = v[4u + j] */
    const __m512 z = OP(_mm512_shuffle_ps(yv[0], yv[1], 0x88), _mm512_shuffle_ps(yv[0], yv[1], 0xdd));
#undef OP
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), z);
}

/* The quantizer for both activation orders: hexa 1 writes LMP_Q4_HEXA (the
 * X16 kernel's), 0 LMP_Q4_PLAIN (block after block, element order: the
 * R16 kernel's). Everything but the placement of the codes is shared. */
ALWAYS_INLINE void act_avx512(const float *x, int cols, int bpg, int8_t *q, float *dx, float *sx,
                              const int hexa)
{
    const __m512 big = _mm512_set1_ps(3.4e38f), hi = _mm512_set1_ps(127.0f),
                 lo = _mm512_set1_ps(-127.0f), magic = _mm512_set1_ps(12582912.0f);
    const int nblk = (cols + 31) / 32, nhex = (nblk + 15) / 16;
    int sums[16];
    for (int h = 0; h < nhex; h++) {
        const float *xh = x + 512 * (size_t)h;
        /* load masks: elements past cols read as 0 (blocks past the row are
         * zero blocks: dx 0, codes 0, as the padding must be) */
        __mmask16 k[32];
        for (int i = 0; i < 32; i++) {
            const int rem = cols - 512 * h - 16 * i;
            k[i] = (__mmask16)(rem >= 16 ? 0xffffu : rem <= 0 ? 0u : (1u << rem) - 1u);
        }
        /* 16 block maxima at once; bit L of bad: block L holds inf / NaN */
        __m512 m[16];
        __mmask16 bad = 0;
#pragma GCC unroll 16
        for (int L = 0; L < 16; L++) {
            const __m512 a0 = _mm512_abs_ps(_mm512_maskz_loadu_ps(k[2 * L], xh + 32 * L)),
                         a1 = _mm512_abs_ps(_mm512_maskz_loadu_ps(k[2 * L + 1], xh + 32 * L + 16));
            bad |= (__mmask16)((_mm512_cmp_ps_mask(a0, big, _CMP_NLE_UQ) |
                                _mm512_cmp_ps_mask(a1, big, _CMP_NLE_UQ)) != 0)
                   << L;
            m[L] = _mm512_max_ps(a0, a1);
        }
        const __m512 am = tree_reduce(m, 16, TREE_MAX);
        const __mmask16 ok =
            (__mmask16)(_mm512_cmp_ps_mask(am, _mm512_set1_ps(LMP_Q4_ACT_MIN), _CMP_GE_OQ) & ~bad);
        const __m512 c127 = _mm512_set1_ps(127.0f);
        float id[16];
        _mm512_storeu_ps(id, _mm512_maskz_div_ps(ok, c127, am));
        /* dx: am / 127 where ok, NaN where bad, 0 for zero blocks */
        __m512 d = _mm512_maskz_div_ps(ok, am, c127);
        d = _mm512_mask_mov_ps(d, bad, _mm512_set1_ps(NAN));
        _mm512_storeu_ps(dx + 16 * h, d);
        /* codes: per block, two halves of 16 int8 (lo: elements 0..15, hi:
         * 16..31) gathered in registers into quads of 4 blocks, then the
         * kernel's 4-byte transpose gives the HEXA vectors */
        __m128i clo[16], chi[16];
        __m512 s[16];
#pragma GCC unroll 16
        for (int L = 0; L < 16; L++) {
            __m512i i0 = _mm512_setzero_si512(), i1 = i0;
            if (ok >> L & 1) {
                const __m512 vid = _mm512_set1_ps(id[L]);
                const __m512 x0 = _mm512_maskz_loadu_ps(k[2 * L], xh + 32 * L),
                             x1 = _mm512_maskz_loadu_ps(k[2 * L + 1], xh + 32 * L + 16);
                __m512 f0 = _mm512_max_ps(_mm512_min_ps(_mm512_mul_ps(x0, vid), hi), lo);
                __m512 f1 = _mm512_max_ps(_mm512_min_ps(_mm512_mul_ps(x1, vid), hi), lo);
                i0 = _mm512_cvtps_epi32(_mm512_sub_ps(_mm512_add_ps(f0, magic), magic));
                i1 = _mm512_cvtps_epi32(_mm512_sub_ps(_mm512_add_ps(f1, magic), magic));
            }
            s[L] = _mm512_castsi512_ps(_mm512_add_epi32(i0, i1));
            clo[L] = _mm512_cvtsepi32_epi8(i0);
            chi[L] = _mm512_cvtsepi32_epi8(i1);
        }
        _mm512_storeu_si512((void *)sums, _mm512_castps_si512(tree_reduce(s, 16, TREE_IADD)));
        for (int half = 0; half < 2 && !hexa; half++) /* plain: block L at 32 (16h + L) */
            for (int L = 0; L < 16; L++)
                _mm_storeu_si128((__m128i *)(q + 512 * (size_t)h + 32 * L + 16 * half),
                                 half ? chi[L] : clo[L]);
        for (int half = 0; half < 2 && hexa; half++) {
            const __m128i *c = half ? chi : clo;
            __m512i qd[4], o[4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                __m512i v = _mm512_castsi128_si512(c[4 * i]);
                v = _mm512_inserti32x4(v, c[4 * i + 1], 1);
                v = _mm512_inserti32x4(v, c[4 * i + 2], 2);
                qd[i] = _mm512_inserti32x4(v, c[4 * i + 3], 3);
            }
            quads_transpose(qd, o);
            for (int j = 0; j < 4; j++)
                _mm512_storeu_si512((void *)(q + 512 * (size_t)h + 256 * half + 64 * j), o[j]);
        }
        /* group sums in block order, as the plain loop adds them */
        for (int b = 16 * h; b < 16 * h + 16 && b < nblk; b++)
            sx[b / bpg] += dx[b] * (float)sums[b - 16 * h];
    }
}

void lmp_q4_act_hexa_avx512(const float *x, int cols, int bpg, int8_t *q, float *dx, float *sx)
{
    act_avx512(x, cols, bpg, q, dx, sx, 1);
}

void lmp_q4_act_plain_avx512(const float *x, int cols, int bpg, int8_t *q, float *dx, float *sx)
{
    act_avx512(x, cols, bpg, q, dx, sx, 0);
}

/* The exact integer dot products of one hexa's 16 blocks with one token's
 * activations (int32 lane L = block 16h + L): 8 vpdpbusd in four chains of
 * two, for latency (decode has no other tokens to overlap with). */
ALWAYS_INLINE __m512i dot_hexa(const __m512i lo[4], const __m512i hi[4], const int8_t *x)
{
    const __m512i z = _mm512_setzero_si512();
    __m512i c[4];
#pragma GCC unroll 2
    for (int j = 0; j < 2; j++) {
        c[j] = _mm512_dpbusd_epi32(z, lo[j], _mm512_loadu_si512((const void *)(x + 64 * j)));
        c[2 + j] = _mm512_dpbusd_epi32(z, hi[j], _mm512_loadu_si512((const void *)(x + 256 + 64 * j)));
    }
#pragma GCC unroll 2
    for (int j = 0; j < 2; j++) {
        c[j] = _mm512_dpbusd_epi32(c[j], lo[2 + j], _mm512_loadu_si512((const void *)(x + 128 + 64 * j)));
        c[2 + j] = _mm512_dpbusd_epi32(c[2 + j], hi[2 + j], _mm512_loadu_si512((const void *)(x + 384 + 64 * j)));
    }
    return _mm512_add_epi32(_mm512_add_epi32(c[0], c[1]), _mm512_add_epi32(c[2], c[3]));
}

/* One hexa h of a row against T tokens: integer dot products per block
 * (int32 lane L = block 16h + L, exact), then acc += (float(isum) * dx) *
 * d16 with the token's 16 block scales and the row's group scales per
 * lane. Prefill takes the tokens in pairs, each with a low-nibble and a
 * high-nibble chain of 4 vpdpbusd: four independent chains in flight
 * instead of one chain of 8 per token, whose ~40-cycle latency the
 * out-of-order window did not hide (in-cache prefill -15 % with 2 chains
 * per token, another -6 % with the pairs; 4 tokens x 1 chain was 20 %
 * slower, register spills). T is 1 or even (tiles 16, 8, 4, 2, 1).
 * Integer sums are exact, so any grouping gives the same bits. */
ALWAYS_INLINE void hexa_tokens(const __m512i lo[4], const __m512i hi[4], __m512 d16,
                               const lmp_q4_act *a, int t0, int T, int h, __m512 *acc)
{
    const size_t xs = (size_t)a->nblk_pad * 32, ds = (size_t)a->nblk_pad;
    const int8_t *xq = a->xq + (size_t)t0 * xs + 512 * (size_t)h;
    const float *dx = a->dx + (size_t)t0 * ds + 16 * (size_t)h;
    if (T == 1) {
        const __m512 f =
            _mm512_mul_ps(_mm512_cvtepi32_ps(dot_hexa(lo, hi, xq)), _mm512_loadu_ps(dx));
        acc[0] = _mm512_fmadd_ps(f, d16, acc[0]);
        return;
    }
#pragma GCC unroll 8
    for (int tt = 0; tt < T; tt += 2) {
        const int8_t *x0 = xq + tt * xs, *x1 = x0 + xs;
        __m512i a0 = _mm512_setzero_si512(), b0 = a0, a1 = a0, b1 = a0;
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            a0 = _mm512_dpbusd_epi32(a0, lo[j], _mm512_loadu_si512((const void *)(x0 + 64 * j)));
            a1 = _mm512_dpbusd_epi32(a1, lo[j], _mm512_loadu_si512((const void *)(x1 + 64 * j)));
            b0 = _mm512_dpbusd_epi32(b0, hi[j], _mm512_loadu_si512((const void *)(x0 + 256 + 64 * j)));
            b1 = _mm512_dpbusd_epi32(b1, hi[j], _mm512_loadu_si512((const void *)(x1 + 256 + 64 * j)));
        }
        const __m512 f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0, b0)),
                                        _mm512_loadu_ps(dx + tt * ds));
        const __m512 f1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a1, b1)),
                                        _mm512_loadu_ps(dx + (tt + 1) * ds));
        acc[tt] = _mm512_fmadd_ps(f0, d16, acc[tt]);
        acc[tt + 1] = _mm512_fmadd_ps(f1, d16, acc[tt + 1]);
    }
}

/* The sum of a vector's 16 lanes by a fixed tree: lane i + lane i+8, then
 * i + i+4, i + i+2, i + i+1 (the order GCC's _mm512_reduce_add_ps uses;
 * float addition commutes exactly, so only the pairing matters). */
ALWAYS_INLINE float hsum16(__m512 v)
{
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 l = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
    const __m128 m = _mm_add_ps(_mm256_castps256_ps128(l), _mm256_extractf128_ps(l, 1));
    const __m128 n = _mm_add_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_add_ss(n, _mm_movehdup_ps(n)));
}

/* hsum16 of T tile accumulators, out[tt] = hsum16(acc[tt]) bit for bit:
 * tiles of 8 and 16 through tree_reduce (~23 adds and shuffles for 16
 * tokens instead of ~10 instructions per token), other T one by one. */
ALWAYS_INLINE void hsum_tile(const __m512 *acc, const int T, float *out)
{
    if (T == 16 || T == 8)
        _mm512_mask_storeu_ps(out, (__mmask16)((1u << T) - 1u), tree_reduce(acc, T, TREE_ADD));
    else
        for (int tt = 0; tt < T; tt++) out[tt] = hsum16(acc[tt]);
}

/* One weight row against T (1..TILE) consecutive tokens t0.., results to
 * y[(t0 + tt) * rows + r]. bpg (blocks per group) and asym are
 * compile-time constants after inlining. */
ALWAYS_INLINE void row_tile(const uint8_t *row, const lmp_q4_act *a, int t0, int T, int r,
                            int rows, float *y, const __mmask64 *ktail, __mmask16 k16,
                            const int bpg, const int asym, const int x16)
{
    const int nblk = a->nblk, ng = a->ng, nhex = (nblk + 15) >> 4, nfullq = nblk >> 2;
    const uint8_t *sc = row + 16 * (size_t)nblk, *mn = sc + 2 * (size_t)ng;
    const __m512 minus8 = _mm512_set1_ps(-8.0f);
    __m512 acc[TILE];
#pragma GCC unroll 16
    for (int tt = 0; tt < T; tt++) acc[tt] = _mm512_setzero_ps();
    for (int g0 = 0, h0 = 0; g0 < ng; g0 += 16, h0 += bpg) {
        const __m512 d16 = load_f16x16(sc, g0, ng);
        /* offset / min term of these 16 groups */
        const __m512 m16 = asym ? load_f16x16(mn, g0, ng) : _mm512_mul_ps(minus8, d16);
#pragma GCC unroll 16
        for (int tt = 0; tt < T; tt++)
            acc[tt] = _mm512_fmadd_ps(m16, _mm512_loadu_ps(a->sx + (size_t)(t0 + tt) * a->ng_pad + g0),
                                      acc[tt]);
        const int h1 = h0 + bpg < nhex ? h0 + bpg : nhex;
        for (int h = h0; h < h1; h++) {
            __m512i o[4], lo[4], hi[4];
            const int full = 4 * h + 4 <= nfullq; /* else the row's last, partial hexa */
            if (x16)
                hexa_x16(row + 256 * (size_t)h, full, nblk & 15, k16, o);
            else
                hexa_transpose(row + 256 * (size_t)h, full, ktail, o);
            hexa_nibbles(o, lo, hi);
            const __m512 d = bpg == 1 ? d16
                                      : _mm512_permutexvar_ps(
                                            _mm512_load_si512((const void *)(bpg == 2 ? k_idx2[h - h0]
                                                                                      : k_idx4[h - h0])),
                                            d16);
            hexa_tokens(lo, hi, d, a, t0, T, h, acc);
        }
    }
    float out[TILE];
    hsum_tile(acc, T, out);
#pragma GCC unroll 16
    for (int tt = 0; tt < T; tt++) y[(size_t)(t0 + tt) * rows + r] = out[tt];
}

/* Tokens t0.. (T of them) against rows [r0, r1); prefetch: also fetch
 * the weights PF_BYTES ahead (first pass over these rows only). */
ALWAYS_INLINE void rows_pass(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y,
                             int t0, int T, int prefetch, const int bpg, const int asym,
                             const int x16)
{
    /* load masks of the 4 quads of the last hexa (if partial) */
    __mmask64 ktail[4];
    for (int i = 0; i < 4; i++) {
        const int nb = a->nblk - 16 * (a->nblk >> 4) - 4 * i; /* blocks of quad i in the row */
        ktail[i] = nb >= 4 ? ~0ull : nb <= 0 ? 0 : ~0ull >> (64 - 16 * nb);
    }
    const __mmask16 k16 = (__mmask16)((1u << (a->nblk & 15)) - 1u); /* X16: the partial hexa */
    const uint8_t *base = w->data;
    const size_t total = (size_t)w->rows * w->row_bytes;
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = base + (size_t)r * w->row_bytes;
        if (prefetch && (size_t)r * w->row_bytes + PF_BYTES + w->row_bytes <= total)
            for (size_t o = 0; o < w->row_bytes; o += 64)
                _mm_prefetch((const char *)(row + PF_BYTES + o), _MM_HINT_T0);
        row_tile(row, a, t0, T, r, w->rows, y, ktail, k16, bpg, asym, x16);
    }
}

/* Weight bytes per row block in prefill: the block's rows are re-read from
 * L2 once per tile of tokens, while the tile's activations stay in L1
 * (rows outer, all tokens inner would stream every token's activations
 * from L2 for every row: ~190 bytes per 128 weights per token). */
#define ROWBLOCK_BYTES (128 * 1024)

/* Rows [r0, r1) with compile-time group size and scheme. */
ALWAYS_INLINE void rows_spec(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y,
                             const int bpg, const int asym, const int x16)
{
    int rb = (int)(ROWBLOCK_BYTES / w->row_bytes);
    if (rb < 1) rb = 1;
    for (int b0 = r0; b0 < r1; b0 += rb) {
        const int b1 = r1 - b0 < rb ? r1 : b0 + rb;
        int t = 0;
        if (a->cols <= TILE16_COLS)
            for (; t + 16 <= a->n; t += 16) rows_pass(w, a, b0, b1, y, t, 16, t == 0, bpg, asym, x16);
        for (; t + 8 <= a->n; t += 8) rows_pass(w, a, b0, b1, y, t, 8, t == 0, bpg, asym, x16);
        /* the rest in tiles of 4, 2, 1: same operations per token */
        for (; t + 4 <= a->n; t += 4) rows_pass(w, a, b0, b1, y, t, 4, t == 0, bpg, asym, x16);
        if (a->n - t >= 2) {
            rows_pass(w, a, b0, b1, y, t, 2, t == 0, bpg, asym, x16);
            t += 2;
        }
        if (a->n - t >= 1) rows_pass(w, a, b0, b1, y, t, 1, t == 0, bpg, asym, x16);
    }
}

#define SPEC(bpg, asym, x16)                                                                    \
    static void rows_##bpg##_##asym##_##x16(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, \
                                            float *y)                                           \
    {                                                                                           \
        rows_spec(w, a, r0, r1, y, bpg, asym, x16);                                             \
    }
SPEC(1, 0, 0)
SPEC(2, 0, 0)
SPEC(4, 0, 0)
SPEC(1, 1, 0)
SPEC(2, 1, 0)
SPEC(4, 1, 0)
SPEC(1, 0, 1)
SPEC(2, 0, 1)
SPEC(4, 0, 1)
SPEC(1, 1, 1)
SPEC(2, 1, 1)
SPEC(4, 1, 1)
#undef SPEC

void lmp_q4_rows_avx512(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y)
{
    typedef void (*fn)(const lmp_mat *, const lmp_q4_act *, int, int, float *);
    static const fn tab[2][2][3] = {{{rows_1_0_0, rows_2_0_0, rows_4_0_0}, {rows_1_1_0, rows_2_1_0, rows_4_1_0}},
                                    {{rows_1_0_1, rows_2_0_1, rows_4_0_1}, {rows_1_1_1, rows_2_1_1, rows_4_1_1}}};
    tab[w->layout == LMP_Q4_LAYOUT_X16][w->scheme == LMP_Q4_ASYM][a->bpg >> 1](w, a, r0, r1, y);
}
