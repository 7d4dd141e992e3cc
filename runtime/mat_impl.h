/* Internal: kernels behind lmp_mat_mul (runtime/mat.c). Not a public API.
 * W is row-major with a row stride of ws floats. Each computes y[t*rows + r] for r in [r0, r1), every t in [0, n). */
#ifndef LMP_MAT_IMPL_H
#define LMP_MAT_IMPL_H

#include <stddef.h>

/* AVX2/FMA, float32 weights (runtime/mat_avx2.c). Call only when
 * __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"). */
void lmp_mat_f32_rows_avx2(const float *W, size_t ws, int rows, int cols, const float *x, int n,
                           float *y, int r0, int r1);

/* ---- attention (runtime/attn_avx2.c; reference attn_head_ref in forward.c) ----
 *
 * K cache layout of one KV head: blocks of LMP_ATTN_KB consecutive positions,
 * each block [head_dim][LMP_ATTN_KB] (position fastest), so 8 or 16
 * positions of one K element are one vector load. A KV head holds
 * round_up(ctx, LMP_ATTN_KB) positions. V stays [position][head_dim].
 * Elements are float32, or IEEE binary16 (kv_f16; lmp_kv_type): an f16
 * element is widened exactly to float32 on load, after which every path
 * does the float32 arithmetic below, so f16 and f32 caches holding the
 * same (f16-representable) values give the same bits. */
#define LMP_ATTN_KB 16

/* Offset of K[p][i] (position p, element i) in a blocked K cache. */
static inline size_t lmp_attn_koff(int p, int i, int hd)
{
    return ((size_t)(p / LMP_ATTN_KB) * (size_t)hd + (size_t)i) * LMP_ATTN_KB +
           (size_t)(p % LMP_ATTN_KB);
}

/* One attention tile: ntok consecutive tokens x nhead query heads that share
 * one KV head. Token i attends to positions [0, np0 + i). Query row (i, j)
 * is q[i*q_tok + j*hd ..], its output out[i*out_tok + j*hd ..].
 *
 * Contract (bit-identity of prefill and decode, any thread count): every
 * row's result is the same sequence of float operations whatever ntok,
 * nhead and the row's place in the tile are; it depends only on q, K, V,
 * hd, scale and its own position count. */
typedef struct {
    const float *q;
    size_t q_tok;
    float *out;
    size_t out_tok;
    int ntok, nhead, np0, hd;
    float scale;
    const void *k; /* blocked K of the KV head (lmp_attn_koff) */
    const void *v; /* V of the KV head, [position][hd] */
    int kv_f16;    /* elements of k and v: 0 float, 1 uint16_t binary16 */
    float *sc;      /* scratch: ntok*nhead rows of sc_stride floats */
    size_t sc_stride; /* >= np0 + ntok - 1 rounded up to LMP_ATTN_KB */
} lmp_attn_tile;

/* AVX2/FMA: out = softmax(q.K * scale) V for every row of the tile. Call
 * only when lmp_mat_simd_active(). Reads K up to the row's position count
 * rounded up to LMP_ATTN_KB (inside the round_up(ctx, LMP_ATTN_KB)
 * allocation; the padding positions are loaded, never used). */
void lmp_attn_tile_avx2(const lmp_attn_tile *a);

/* AVX-512 (runtime/attn_avx512.c), the same bits as the AVX2 tile. Call
 * only when lmp_mat_simd_active() && lmp_cpu_avx512(). */
void lmp_attn_tile_avx512(const lmp_attn_tile *a);

#endif
