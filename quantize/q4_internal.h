/* Private to quantize/q4*.c: the quantized activation shared by the scalar,
 * AVX2 and AVX-512 kernels, and the SIMD entry points. */
#ifndef LMP_Q4_INTERNAL_H
#define LMP_Q4_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "quantize/q4.h"
#include "runtime/mat.h"

/* Activations of n tokens, each quantized per 32-element block to int8
 * (dx = max|x|/127, xq = rne(x * 127/max|x|)), plus per group the float
 * sum_{b in g} dx_b * sum_j xq_j used for the SYM offset / ASYM min terms.
 * Arrays per token are padded with zeros (nblk_pad a multiple of 16, ng_pad
 * a multiple of 16) so vector loads past the row end read zeros.
 * `paired` selects the order of the int8 values in a token's xq array
 * (lmp_q4_xq_index; the values themselves never change):
 *   LMP_Q4_PLAIN  block after block (scalar reference, Q8 kernels);
 *   LMP_Q4_PAIRED (AVX2 int4 kernel) blocks 2p and 2p+1 interleaved in 64
 *                 bytes as [2p: 0..15][2p+1: 0..15][2p: 16..31][2p+1: 16..31],
 *                 matching one 32-byte load of both blocks' nibbles;
 *   LMP_Q4_HEXA   (AVX-512 VNNI int4 kernel) 16 blocks 16h..16h+15 in 512
 *                 bytes = 8 vectors of 64: vector v (0..7), bytes 4L..4L+3
 *                 hold elements 4(v&3) + 16(v>>2) + 0..3 of block 16h + L,
 *                 matching the kernel's 4-byte transpose of the 16 blocks'
 *                 nibbles (int32 lane L of every dot product = block 16h+L).
 */
enum { LMP_Q4_PLAIN = 0, LMP_Q4_PAIRED = 1, LMP_Q4_HEXA = 3 };

/* An activation block whose largest |x| is below this quantizes as a zero
 * block (dx 0, codes 0), on every path: 127 / max|x| must stay finite (it
 * overflows below ~3.7e-37) and such a block contributes < 1e-28 anyway. */
#define LMP_Q4_ACT_MIN 0x1p-100f

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
    if (paired == LMP_Q4_HEXA) return 512 * (b >> 4) + 64 * (4 * (j >> 4) + ((j & 15) >> 2)) + 4 * (b & 15) + (j & 3);
    if (paired == LMP_Q4_PAIRED) return 64 * (b >> 1) + (j >= 16 ? 32 : 0) + 16 * (b & 1) + (j & 15);
    return 32 * b + j;
}

/* Byte offset, within a row's codes in LMP_Q4_LAYOUT_X16 (q4.h), of byte
 * j (0..15) of block b of a row with nblk blocks. */
static inline size_t lmp_q4_x16_at(int nblk, int b, int j)
{
    const int h = b >> 4, left = nblk - 16 * h, nb = left < 16 ? left : 16;
    return 256 * (size_t)h + 4 * (size_t)nb * (size_t)(j >> 2) + 4 * (size_t)(b & 15) +
           (size_t)(j & 3);
}

/* Byte offsets within a block of nr interleaved rows (nr = 16:
 * LMP_Q4_LAYOUT_R16, nr = 8: LMP_Q4_LAYOUT_R8; q4.h; bpg = group / 32,
 * asym 1 for ASYM): the start of group g's part, row i's scale and min of
 * group g, and row i's code byte j (0..15) of block b. */
static inline size_t lmp_q4_rn_group_at(int nr, int g, int bpg, int asym)
{
    return (size_t)g * (2 * (size_t)nr * (size_t)(1 + asym) + 16 * (size_t)nr * (size_t)bpg);
}
static inline size_t lmp_q4_rn_scale_at(int nr, int g, int i, int bpg, int asym)
{
    return lmp_q4_rn_group_at(nr, g, bpg, asym) + 2 * (size_t)i;
}
static inline size_t lmp_q4_rn_min_at(int nr, int g, int i, int bpg)
{
    return lmp_q4_rn_group_at(nr, g, bpg, 1) + 2 * (size_t)nr + 2 * (size_t)i;
}
static inline size_t lmp_q4_rn_code_at(int nr, int b, int j, int i, int bpg, int asym)
{
    return lmp_q4_rn_group_at(nr, b / bpg, bpg, asym) + 2 * (size_t)nr * (size_t)(1 + asym) +
           16 * (size_t)nr * (size_t)(b % bpg) + 4 * (size_t)nr * (size_t)(j >> 2) +
           4 * (size_t)i + (size_t)(j & 3);
}
static inline size_t lmp_q4_r16_scale_at(int g, int i, int bpg, int asym)
{
    return lmp_q4_rn_scale_at(16, g, i, bpg, asym);
}
static inline size_t lmp_q4_r16_min_at(int g, int i, int bpg)
{
    return lmp_q4_rn_min_at(16, g, i, bpg);
}
static inline size_t lmp_q4_r16_code_at(int b, int j, int i, int bpg, int asym)
{
    return lmp_q4_rn_code_at(16, b, j, i, bpg, asym);
}

/* Rows [r0, r1) for all n tokens: y[t*rows + r]. AVX2 + FMA + F16C only. */
void lmp_q4_rows_avx2(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y);
/* Same contract, AVX-512 F/BW/VL/VNNI (quantize/q4_avx512.c): kind Q4 with
 * the LMP_Q4_HEXA activations only, weights in either code layout
 * (LMP_Q4_LAYOUT_ROWS or X16). Call only when lmp_cpu_avx512(). */
void lmp_q4_rows_avx512(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y);
/* Same contract for weights in LMP_Q4_LAYOUT_R16 with LMP_Q4_PLAIN
 * activations (quantize/q4_r16_avx512.c); any r0 < r1 <= rows. AVX-512
 * F/BW/VL/VNNI only. */
void lmp_q4_rows_r16_avx512(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y);
/* Same contract for weights in LMP_Q4_LAYOUT_R8 with LMP_Q4_PLAIN
 * activations (quantize/q4_r8_avx2.c); any r0 < r1 <= rows. AVX2 + FMA +
 * F16C only. */
void lmp_q4_rows_r8_avx2(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y);
/* One 8-row block of stored rows (tmp: 8 rows of rb bytes) written to o
 * in LMP_Q4_LAYOUT_R8: the bytes q4_pack.c's plain C writes. AVX2 only. */
void lmp_q4_pack_r8_block_avx2(const uint8_t *tmp, size_t rb, int nblk, int ng, int bpg, int asym,
                               uint8_t *o);
/* One 16-row block of stored rows (tmp: 16 rows of rb bytes, plus at least
 * 2 readable bytes after them) written to o in LMP_Q4_LAYOUT_R16: the bytes
 * q4_pack.c's plain C writes. AVX-512 only. */
void lmp_q4_pack_r16_block_avx512(const uint8_t *tmp, size_t rb, int nblk, int ng, int bpg,
                                  int asym, uint8_t *o);
/* The full hexas 0..n-1 at in (256 bytes each) re-ordered into out
 * (LMP_Q4_LAYOUT_X16; in == out allowed), the same bytes as q4_pack.c's
 * plain C; returns n. AVX-512 only. */
int lmp_q4_pack_hexas_avx512(const uint8_t *in, uint8_t *out, int n);
/* One token's activations x[cols] quantized into the LMP_Q4_HEXA layout:
 * q (nblk_pad * 32 bytes), dx (nblk_pad), sx (ng_pad, group = 32 * bpg), all
 * zeroed by the caller; the same bits as act_quantize in q4.c. AVX-512
 * only. */
void lmp_q4_act_hexa_avx512(const float *x, int cols, int bpg, int8_t *q, float *dx, float *sx);
/* The same numbers in the LMP_Q4_PLAIN order (block after block). */
void lmp_q4_act_plain_avx512(const float *x, int cols, int bpg, int8_t *q, float *dx, float *sx);
/* WebAssembly SIMD128 (quantize/q4_wasm.c), browser build only; differs
 * from the scalar reference only by float reassociation. */
void lmp_q4_rows_wasm(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y);

/* One full 32-float activation block: max |x| (bad = NaN/inf seen) and
 * the int8 codes for scale id (returns their sum); bit-identical to the
 * scalar code in q4.c. AVX2 only. */
float lmp_q4_absmax32_avx2(const float *x, int *bad);
int lmp_q4_quant32_avx2(const float *x, float id, int8_t *out);

/* ---- ASYM quantizer kernels (quantize/q4_quant.c) -------------------------
 * The group algorithm (lmp_q4_asym_groups) is plain shared C; its three
 * per-element passes go through a kernel table. lmp_q4_asym_ref (scalar) is
 * the DEFINITION; lmp_q4_asym_avx2 (q4_quant_avx2.c, AVX2 only, n % 8 == 0
 * only) gives bit-identical results because both do the same IEEE single
 * operations in the same order:
 *   - element i belongs to lane i % 8; lane sums start at 0 and are combined
 *     as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) (what two rounds
 *     of vhaddps and one add of the 128-bit halves give, 4 sums at once);
 *   - min / max lanes start at x[0], update as m = m < x ? m : x (minps) and
 *     m = m > x ? m : x (maxps), and are combined in the same tree;
 *   - fused multiply-adds exactly where the reference calls fmaf() (one
 *     rounding, IEEE-defined, so the scalar fmaf and _mm256_fmadd_ps agree),
 *     plain operations everywhere else; no reassociation.
 * LMP_Q4_MAGIC = 1.5 * 2^23: (v + MAGIC) - MAGIC rounds |v| < 2^22 to the
 * nearest integer, ties to even. */
#define LMP_Q4_MAGIC 12582912.0f

typedef struct lmp_q4_asym_kern {
    /* out[0] = min, out[1] = max, out[2] = lane sum of x[0..n) */
    void (*stats)(const float *x, int n, float out[3]);
    /* Candidates j < nb, bottom-anchored with scale is[j]:
     *   u = min(fmaf(x - mn, is[j], MAGIC), MAGIC + 15) - MAGIC,
     * then nb <= j < nb + nt, top-anchored:
     *   u = max(fmaf(x - mx, is[j], MAGIC + 15), MAGIC) - MAGIC
     * (x - mn >= 0 and x - mx <= 0, so the other side needs no clamp);
     * sums[3j..3j+2] = lane sums su, suu, sux of candidate j (a += u,
     * b = fmaf(u, u, b), c = fmaf(u, x, c)). */
    void (*cands)(const float *x, int n, float mn, float mx, int nb, int nt, const float *is,
                  float *sums);
    /* Codes for the stored d, m: v = (x - m) / d (id == 0) or (x - m) * id
     * (id != 0, the caller's 1/d), v = v > 0 ? v : 0, v = v < 15 ? v : 15,
     * q = (v + MAGIC) - MAGIC (q = 0 when d == 0); u[i] = q.
     * mode 0: codes only, returns 0. mode >= 1: returns the lane sum of
     * e = fmaf(r, r, e) with r = x - fmaf(d, q, m); mode 2 also stores in
     * sums[0..2] the lane sums su, suu, sux as in cands. */
    float (*eval)(const float *x, int n, float d, float m, float id, uint8_t *u, float *sums,
                  int mode);
    /* Optional (NULL in the ref / AVX2 tables): the same for two groups a
     * and b of equal length n (n % 8 == 0) at once, results bit-identical
     * to two single calls. eval2: both d != 0, and id[0], id[1] both zero
     * or both non-zero (the caller checks); e[0], e[1] = the returns. */
    void (*stats2)(const float *xa, const float *xb, int n, float oa[3], float ob[3]);
    void (*cands2)(const float *xa, const float *xb, int n, const float mn[2], const float mx[2],
                   int nb, int nt, const float *isa, const float *isb, float *sa, float *sb);
    void (*eval2)(const float *xa, const float *xb, int n, const float d[2], const float m[2],
                  const float id[2], uint8_t *ua, uint8_t *ub, float *sa, float *sb, int mode,
                  float e[2]);
    /* Optional: the whole of lmp_q4_asym_groups (same arguments, same
     * bytes), for a table that vectorizes the per-group scalar steps too. */
    void (*groups)(const float *x, int cols, int group, int search, uint8_t *u, uint16_t *dbits,
                   uint16_t *mbits);
} lmp_q4_asym_kern;

/* The ASYM search's candidate grid and refinement rounds (q4_quant.c
 * explains them; shared so every implementation of the group algorithm
 * uses the same numbers). */
#define LMP_Q4_ASYM_NB 3
#define LMP_Q4_ASYM_TB {-1.0f, 0.0f, 0.5f}
#define LMP_Q4_ASYM_NT 2
#define LMP_Q4_ASYM_TT {-1.0f, 0.5f}
#define LMP_Q4_ASYM_NREFINE 3

extern const lmp_q4_asym_kern lmp_q4_asym_ref;
extern const lmp_q4_asym_kern lmp_q4_asym_avx2;
/* quantize/q4_quant_avx512.c: the pair kernels in 512-bit registers (one
 * group per 256-bit half); single groups go to the AVX2 kernels. Only
 * when lmp_cpu_avx512() (common/cpu.h). */
extern const lmp_q4_asym_kern lmp_q4_asym_avx512;

/* All ASYM groups of one row x[0..cols): codes u[0..cols) (0..15), fp16
 * bits of each group's d and m. search 0 = LMP_Q4_MINMAX, 1 =
 * LMP_Q4_SEARCH. Groups whose length is not a multiple of 8 use the
 * reference kernels whatever k is. */
/* One row with a given ASYM kernel table (q4.c; the tests use it to check
 * every table against the reference). */
void lmp_q4_quantize_row_kern(const float *x, int cols, int group, int scheme,
                              lmp_q4_method method, void *out, const lmp_q4_asym_kern *k);

/* AVX-512 only: lmp_q4_asym_groups on each of nrows rows (stride cols):
 * codes u[nrows][cols], bits d[nrows][ng], m[nrows][ng], whole groups of
 * all rows batched together. */
void lmp_q4_asym_rows_avx512(const float *x, int nrows, int cols, int group, int search,
                             uint8_t *u, uint16_t *dbits, uint16_t *mbits);

void lmp_q4_asym_groups(const lmp_q4_asym_kern *k, const float *x, int cols, int group,
                        int search, uint8_t *u, uint16_t *dbits, uint16_t *mbits);

/* ---- SYM / Q8 search kernels (quantize/q4.c, sym_group) -------------------
 * lmp_q4_sym_ref (scalar, q4.c) is the DEFINITION; lmp_q4_sym_avx2
 * (q4_sym_avx2.c, AVX2 only) is bit-identical: same IEEE operations per
 * element, no fused multiply-adds, and the same summation order:
 *   cands: candidate k's codes c = rne(min(max(x * is[k], lo), hi)) (the
 *     NaN-to-lo clampf for the n % 8 tail); element i < 8*(n/8) adds c*x and
 *     c*c to lane i % 8 (float), tail elements to lane 0 in order; the 8
 *     lanes are then summed sequentially from 0.0f: sqx[k], sqq[k];
 *   codes: q = d != 0 ? rne(clampf(x / d, lo, hi)) : 0 (a true division),
 *     returns the double sum of r*r, r = (double)x - (double)d * q, added
 *     strictly in element order; refit != NULL: *refit = sqq > 0 ?
 *     (float)(sqx / sqq) : 0 with sqx = sum of (double)q * x (exact
 *     products) added in element order and sqq = sum of q*q (an integer
 *     < 2^53, exact in any order). */
typedef struct lmp_q4_sym_kern {
    /* M = the first x[i] of largest |x| (NaN never counts), 0 if all are 0 */
    float (*absmax)(const float *x, int n);
    /* is[k] = ts[k] / M (a true division), then as described above */
    void (*cands)(const float *x, int n, const float *ts, int nt, float M, float lo, float hi,
                  float *sqx, float *sqq);
    double (*codes)(const float *x, int n, float d, int lo, int hi, int8_t *q, float *refit);
} lmp_q4_sym_kern;
extern const lmp_q4_sym_kern lmp_q4_sym_ref;
extern const lmp_q4_sym_kern lmp_q4_sym_avx2;
/* AVX-512 candidates (q4_sym_avx512.c, two candidates per register), the
 * AVX2 absmax and codes; only when lmp_cpu_avx512(). */
extern const lmp_q4_sym_kern lmp_q4_sym_avx512;
void lmp_q4_sym_cands_avx512(const float *x, int n, const float *ts, int nt, float M, float lo,
                             float hi, float *sqx, float *sqq);
float lmp_q4_sym_absmax_avx2(const float *x, int n);
void lmp_q4_sym_cands_avx2(const float *x, int n, const float *ts, int nt, float M, float lo,
                           float hi, float *sqx, float *sqq);
double lmp_q4_sym_codes_avx2(const float *x, int n, float d, int lo, int hi, int8_t *q,
                             float *refit);

#endif
