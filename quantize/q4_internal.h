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
 * so vector loads past the row end read zeros. */
typedef struct lmp_q4_act {
    int n, cols, nblk, ng, bpg; /* bpg: blocks per group */
    int nblk_pad, ng_pad;
    int8_t *xq; /* n * nblk * 32 */
    float *dx;  /* n * nblk_pad */
    float *sx;  /* n * ng_pad */
} lmp_q4_act;

/* Rows [r0, r1) for all n tokens: y[t*rows + r]. AVX2 + FMA + F16C only. */
void lmp_q4_rows_avx2(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y);

#endif
