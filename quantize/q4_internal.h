/* Private to quantize/q4*.c: the quantized activation shared by the scalar
 * and AVX2 kernels, and the AVX2 entry points. */
#ifndef LMP_Q4_INTERNAL_H
#define LMP_Q4_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/mat.h"

/* Activations of n tokens, each quantized per 32-element block to int8
 * (dx = max|x|/127, xq = rne(x * 127/max|x|)), plus per group the float
 * sum_{b in g} dx_b * sum_j xq_j used for the SYM offset / ASYM min terms.
 * Arrays per token are padded with zeros (nblk_pad, ng_pad multiples of 8)
 * so vector loads past the row end read zeros.
 * `paired` (AVX2 int4 kernel): the int8 values of blocks 2p and 2p+1 are
 * stored interleaved in 64 bytes as [2p: 0..15][2p+1: 0..15][2p: 16..31]
 * [2p+1: 16..31], matching one 32-byte load of both blocks' nibbles. */
typedef struct lmp_q4_act {
    int n, cols, nblk, ng, bpg; /* bpg: blocks per group */
    int nblk_pad, ng_pad, paired;
    int8_t *xq; /* n * nblk_pad * 32 */
    float *dx;  /* n * nblk_pad */
    float *sx;  /* n * ng_pad */
} lmp_q4_act;

/* Position of element j (0..31) of block b in a token's xq array. */
static inline int lmp_q4_xq_index(int paired, int b, int j)
{
    if (!paired) return 32 * b + j;
    return 64 * (b >> 1) + (j >= 16 ? 32 : 0) + 16 * (b & 1) + (j & 15);
}

/* Rows [r0, r1) for all n tokens: y[t*rows + r]. AVX2 + FMA + F16C only. */
void lmp_q4_rows_avx2(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y);

/* One full 32-float activation block: max |x| (bad = NaN/inf seen) and
 * the int8 codes for scale id (returns their sum); bit-identical to the
 * scalar code in q4.c. AVX2 only. */
float lmp_q4_absmax32_avx2(const float *x, int *bad);
int lmp_q4_quant32_avx2(const float *x, float id, int8_t *out);

#endif
