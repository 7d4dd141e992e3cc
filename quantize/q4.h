/* Grouped integer weight formats (int4 SYM / int4 ASYM / int8) and their
 * kernels.
 *
 * A weight matrix W[rows][cols] (HF shape, cols = input features) is stored
 * one quantized row after another, every row exactly lmp_q4_row_bytes()
 * long, no padding between rows. Each row is cut along cols into groups of
 * `group` (32, 64 or 128) elements; the last group of a row is shorter when
 * cols is not a multiple of group (never refused, never widened).
 *
 * ---- Row layout (all multi-byte values little-endian) -------------------
 *   nblk = ceil(cols / 32)      32-element code blocks (last one padded)
 *   ng   = ceil(cols / group)   groups (group is a multiple of 32, so block
 *                               b belongs to group b / (group / 32))
 *
 *   offset 0:  codes, nblk blocks, each
 *              SYM / ASYM (4-bit): 16 bytes; byte j (0..15) holds element
 *                  32b+j in its LOW nibble and element 32b+16+j in its HIGH
 *                  nibble (the llama.cpp Q4_0 nibble order);
 *              Q8: 32 bytes, byte j = element 32b+j as int8 (two's complement).
 *   then:      d[ng]   fp16 scale of each group (IEEE binary16)
 *   then:      m[ng]   fp16 minimum of each group (ASYM only)
 *
 *   row_bytes = nblk*16 + 2*ng   (SYM)
 *             = nblk*16 + 4*ng   (ASYM)
 *             = nblk*32 + 2*ng   (Q8)
 *
 * Values (element c of the row, group g = c / group, code u):
 *   SYM  : u in [0,15] stored, q = u - 8 in [-8,7],   w = d[g] * q
 *   ASYM : u in [0,15],                               w = d[g] * u + m[g]
 *   Q8   : q in [-127,127] (-128 is never written),   w = d[g] * q
 * fp16 values are converted with formats/dtype.h (exact widening).
 * Padding elements (32b+j >= cols) carry code 8 (SYM, i.e. q = 0), 0 (ASYM)
 * and 0 (Q8); readers must ignore them, kernels multiply them by zero
 * activations.
 *
 * SYM with group 32 holds exactly the numbers of a llama.cpp Q4_0 block
 * (d, 16 bytes of nibbles in the same order); Q8 with group 32 those of
 * Q8_0. Only the placement of the scales differs.
 *
 * Why this layout: the kernels stream each row once, front to back. All
 * codes of a row are contiguous (16 bytes per 32 weights, one unaligned
 * 128-bit load per block, unpacked to 32 bytes with one shift + and), and
 * the scales of a row are contiguous too, so 8 of them convert to float in
 * one F16C instruction before the code loop. SYM codes are stored offset
 * by 8 (unsigned) so that the AVX2 kernel uses _mm256_maddubs_epi16
 * (unsigned codes x signed int8 activations) directly and corrects the
 * offset once per group with the precomputed activation sum; SYM and ASYM
 * share one inner loop. No padding is added for alignment: unaligned
 * loads cost nothing measurable here, while every byte costs bandwidth.
 *
 * Bits per weight (all overhead counted, padding included) =
 *   8 * row_bytes / cols; for cols a multiple of 32 and of group:
 *   SYM 4 + 16/group (g32 4.5, g64 4.25, g128 4.125),
 *   ASYM 4 + 32/group (g32 5.0, g64 4.5, g128 4.25), Q8 8 + 16/group.
 *
 * ---- Kernels --------------------------------------------------------------
 * lmp_q4_matmul / lmp_q8_matmul compute y = W_deq . Q8(x): the activation
 * row x (per token) is first quantized per 32-element block to int8
 * (dx = max|x|/127 as float, xq = round-to-nearest-even(x/dx); a block with
 * max|x| below 2^-100 is a zero block, dx 0; a NaN or inf poisons its
 * block, dx NaN), then the
 * dot products are integer per block and float across blocks. The scalar
 * reference (lmp_q4_matmul_ref) defines the result; the SIMD paths may
 * differ from it only by float reassociation. Results do not depend on the
 * thread count, and the n > 1 (prefill) path gives the same bits per token
 * as n == 1 (on each path; the AVX2 and AVX-512 paths differ from each
 * other by float rounding).
 *
 * Paths, chosen per call (lmp_q4_simd_active, lmp_q4_avx512_active):
 *   scalar  lmp_q4_matmul_ref / lmp_q4_force_scalar(1); every kind.
 *   AVX2    quantize/q4_avx2.c (AVX2+FMA+F16C): per pair of blocks one
 *           32-byte load, maddubs/madd, 8 blocks' scales per vector;
 *           tiles of 4 tokens in prefill. Q8 always uses it, int4 where
 *           the rows are not a multiple of 8.
 *   AVX2 R8 quantize/q4_r8_avx2.c, for int4 weights a loader put in
 *           LMP_Q4_LAYOUT_R8 (below; the loaders' choice where the AVX2
 *           kernel runs and rows are a multiple of 8): 8 rows per step,
 *           lane = row, 8 maddubs per block and token summed in int16, one
 *           madd, no horizontal sums; the R16 kernel's float sequence, so
 *           the R16 kernel's bits. SmolLM-360M with AVX2 only: decode
 *           1.2-1.6x the q4_avx2.c kernel's rate, first token 0.73-0.96x
 *           its time (docs/PERFORMANCE.md, session 6).
 *   AVX-512 quantize/q4_avx512.c (F/BW/VL/VNNI, int4 SYM/ASYM only; off
 *           with LMP_CPU=avx2 or lmp_q4_allow_avx512(0)): 16 blocks (512
 *           weights) per step: four 64-byte loads, a 4-byte transpose so
 *           that int32 lane L is block L (none for weights a loader put in
 *           LMP_Q4_LAYOUT_X16, above), eight vpdpbusd give the exact
 *           block sums, then per step and token acc += (float(isum) * dx)
 *           * d with the token's 16 block scales and the row's 16 fp16
 *           scales converted at once (permuted to blocks for group 64/128);
 *           the min / offset term 16 groups per step; ragged rows by masked
 *           loads, no tail code. Prefill: tiles of 16 tokens (8 for rows
 *           over 1536 columns; then 8/4/2/1) share the unpack, tokens in
 *           pairs, rows in blocks of ~128 KB so a tile's
 *           activations stay in L1. Decode ~5 vector instructions per 64
 *           weights (AVX2 ~13 + per-row overhead); prefill ~2 per 64
 *           weights and token (AVX2 ~8).
 *   AVX-512 R16  quantize/q4_r16_avx512.c, for weights a loader put in
 *           LMP_Q4_LAYOUT_R16 (below; the loaders' choice wherever rows are
 *           a multiple of 16), with the activations in plain order: 16 rows
 *           per step, lane = row, 8 vpdpbusd per 32-weight block and token
 *           with the activation bytes broadcast, no horizontal sums;
 *           prefill tiles of 8 tokens. In cache 1.4x the X16 kernel's
 *           prefill rate (bench/kernel_ab/peak.sh).
 */
#ifndef LMP_Q4_H
#define LMP_Q4_H

#include <stddef.h>
#include <stdint.h>

#include "common/pool.h"
#include "common/status.h"
#include "runtime/mat.h"

/* ---- In-memory code order (lmp_mat.layout; never stored in a file) -------
 * LMP_Q4_LAYOUT_ROWS (0): the codes exactly as the row layout above defines
 * them; what files hold and what every kernel reads.
 * LMP_Q4_LAYOUT_X16 (1; int4 SYM / ASYM only): the code bytes of each row
 * re-ordered per "hexa" of 16 blocks into the order the AVX-512 kernel's
 * 4-byte transpose produces (see q4_avx512.c), so that it loads them with
 * no shuffle at all. Scales, mins and row_bytes are unchanged. In a hexa h
 * (bytes 256h.. of the row, nb = min(16, nblk - 16h) blocks), byte j
 * (0..15) of block 16h + L is at
 *     256h + 4*nb*(j/4) + 4*L + j%4
 * (lmp_q4_x16_at). Runtime loaders re-order the weights they own when
 * lmp_q4_x16_wanted() says the AVX-512 kernel will read them; every other
 * path (scalar reference, embedding row lookup) reads X16 through that
 * offset, so the results are the same bits as with the stored order. */
#define LMP_Q4_LAYOUT_ROWS 0
#define LMP_Q4_LAYOUT_X16 1
/* LMP_Q4_LAYOUT_R16 (2; int4 SYM / ASYM, rows a multiple of 16): each group
 * of 16 consecutive rows (16 * row_bytes bytes at 16R * row_bytes, the same
 * place and size as in the stored order) interleaved group by group, so
 * that a 16-row block is one sequential stream: for each group g, the 16
 * rows' scales (32 bytes), for ASYM their mins (32 bytes), then the group's
 * code blocks, 256 bytes each, in which one 64-byte piece holds 4 code
 * bytes of all 16 rows. With S = 32 (SYM) or 64 (ASYM), bpg = group / 32,
 * G(g) = g * (S + 256 * bpg), i = row - 16R (the lane):
 *     scale d of group g:               G(g) + 2i
 *     min m of group g (ASYM):          G(g) + 32 + 2i
 *     code byte j (0..15) of block b:   G(b / bpg) + S + 256 (b % bpg)
 *                                       + 64 (j / 4) + 4i + j % 4
 * (lmp_q4_r16_*_at; only the last group may hold fewer blocks). int32
 * lane i of a vpdpbusd on such a piece is row i's partial dot product, so
 * the AVX-512 R16 kernel (q4_r16_avx512.c) needs no horizontal sums. It
 * sums in another order than the X16 kernel, so its results are not the
 * X16 kernel's bits (the same reference within float rounding, as AVX2
 * and AVX-512 already differ); prefill and decode, thread counts and
 * loaders still agree bit for bit among themselves. Loaders choose R16
 * over X16 for matrices whose rows allow it (lmp_q4_r16_wanted). */
#define LMP_Q4_LAYOUT_R16 2
/* LMP_Q4_LAYOUT_R8 (3; int4 SYM / ASYM, rows a multiple of 8): R16's order
 * for blocks of 8 rows, for the AVX2 kernel of CPUs without AVX-512
 * (q4_r8_avx2.c): per group the 8 rows' scales (16 bytes), for ASYM their
 * mins (16 bytes), then the group's code blocks, 128 bytes each, in which
 * one 32-byte piece holds 4 code bytes of all 8 rows. With S = 16 (SYM) or
 * 32 (ASYM), G(g) = g * (S + 128 * bpg), i = row - 8R:
 *     scale d of group g:               G(g) + 2i
 *     min m of group g (ASYM):          G(g) + 16 + 2i
 *     code byte j (0..15) of block b:   G(b / bpg) + S + 128 (b % bpg)
 *                                       + 32 (j / 4) + 4i + j % 4
 * (lmp_q4_rn_*_at with nr = 8). The kernel sums each (row, token) in the
 * R16 kernel's order with exact integer block sums, so R8 on AVX2 and R16
 * on AVX-512 give the same bits. Loaders choose R8 where the AVX2 kernel
 * runs and rows allow it (lmp_q4_r8_wanted). */
#define LMP_Q4_LAYOUT_R8 3

/* Scheme ids: stable numbers, stored in files (lmp_mat.scheme). */
typedef enum lmp_q4_scheme {
    LMP_Q4_SYM = 1,  /* 4-bit signed, fp16 scale per group */
    LMP_Q4_ASYM = 2, /* 4-bit unsigned, fp16 scale + fp16 min per group */
    LMP_Q4_Q8 = 3    /* 8-bit signed, fp16 scale per group (lmp_mat kind Q8) */
} lmp_q4_scheme;

/* How the quantizer chooses each group's scale (and min). */
typedef enum lmp_q4_method {
    LMP_Q4_MINMAX = 0, /* plain: SYM d = M/-8 with M the value of largest |x|,
                          ASYM d = (max-min)/15, m = min, Q8 d = max|x|/127;
                          codes rounded to nearest for the fp16 d (and m) */
    LMP_Q4_SEARCH = 1  /* default: search the scale / clipping range for the
                          smallest squared error, least-squares refit; never
                          worse than MINMAX on any group */
} lmp_q4_method;

#define LMP_Q4_BLOCK 32

/* Recommended default of `--dtype q4` (docs/QUANT.md: on stories260k mean
 * KL 0.103 vs 0.130 for llama.cpp Q4_0 at the same 4.5 bits/weight on
 * SmolLM-360M shapes), embedding and tied lm_head in the same format. */
#define LMP_Q4_DEFAULT_SCHEME LMP_Q4_ASYM
#define LMP_Q4_DEFAULT_GROUP 64

/* "sym", "asym", "q8"; NULL for an unknown id. */
const char *lmp_q4_scheme_name(int scheme);
/* Id for a name (case-sensitive), or -1. */
int lmp_q4_scheme_from_name(const char *name);

/* 1 if (cols >= 1, group in {32,64,128}, scheme known), else 0. */
int lmp_q4_params_ok(int cols, int group, int scheme);
/* Bytes of one stored row; 0 if the parameters are not valid. */
size_t lmp_q4_row_bytes(int cols, int group, int scheme);
/* 8 * row_bytes / cols (padding and scales included); 0 if invalid. */
double lmp_q4_bits_per_weight(int cols, int group, int scheme);

/* Check a stored matrix description against the rules (valid parameters,
 * row_bytes equal to lmp_q4_row_bytes, rows >= 1, total size not
 * overflowing); `what` (tensor name) is used in the message. */
lmp_status lmp_q4_check_layout(int rows, int cols, int group, int scheme, size_t row_bytes,
                               const char *what, lmp_diag *d);

/* Fill an lmp_mat view (kind Q4 or Q8 from the scheme) over `data`, which
 * must hold rows * row_bytes bytes and stays owned by the caller. */
lmp_status lmp_q4_mat_init(lmp_mat *m, int rows, int cols, int group, int scheme,
                           const void *data, lmp_diag *d);

/* Reference quantizer of one row: x[cols] (finite values) -> out
 * [row_bytes]. Defines the format's bytes: deterministic, the same bytes on
 * every machine and thread count. Parameters must be valid (params_ok). */
void lmp_q4_quantize_row_ref(const float *x, int cols, int group, int scheme,
                             lmp_q4_method method, void *out);
/* Same bytes as the reference; ASYM groups use the AVX-512 kernels of
 * quantize/q4_quant_avx512.c when lmp_cpu_avx512() (common/cpu.h), else the
 * AVX2 kernels of quantize/q4_quant_avx2.c when the CPU has AVX2 + FMA +
 * F16C, unless lmp_q4_force_scalar is on (tests/test_q4quant.c checks the
 * identity). */
void lmp_q4_quantize_row(const float *x, int cols, int group, int scheme, lmp_q4_method method,
                         void *out);
/* nrows rows x[nrows][cols] -> out[nrows][row_bytes]: the bytes of
 * lmp_q4_quantize_row on each row. With AVX-512 (ASYM), whole groups of
 * all the rows are batched 16 at a time, so short rows (few groups) keep
 * the vector lanes full. */
void lmp_q4_quantize_rows(const float *x, int nrows, int cols, int group, int scheme,
                          lmp_q4_method method, void *out);

/* Quantize a whole matrix w[rows][cols] into out[rows * row_bytes], rows
 * split over `pool` (may be NULL); output identical for any thread count.
 * Fails (LMP_ERR_FORMAT, naming `what` and the row/column) on a non-finite
 * value, LMP_ERR_ARG on bad parameters. */
lmp_status lmp_q4_quantize(const float *w, int rows, int cols, int group, int scheme,
                           lmp_q4_method method, void *out, lmp_pool *pool, const char *what,
                           lmp_diag *d);

/* Reference dequantization of one stored row into out[cols]. */
void lmp_q4_dequantize_row(const void *row, int cols, int group, int scheme, float *out);

/* y[t*rows + r] = sum_c W[r][c] * x[t*cols + c], t in [0, n), W kind Q4
 * (lmp_q4_matmul) or Q8 (lmp_q8_matmul); picks AVX-512 VNNI (Q4 only) or
 * AVX2/FMA at run time.
 * pool may be NULL. */
void lmp_q4_matmul(const lmp_mat *w, const float *x, int n, float *y, lmp_pool *pool);
void lmp_q8_matmul(const lmp_mat *w, const float *x, int n, float *y, lmp_pool *pool);
/* Several matrices applied to the same x (q/k/v, gate/up): y[i] =
 * W_i . x, the activations quantized once and one pool run for all rows.
 * Same bits per matrix as lmp_q4_matmul / lmp_q8_matmul (falls back to them
 * when the matrices differ in kind, cols or group, or count > 8). */
void lmp_q4_matmul_many(const lmp_mat *const *w, float *const *y, int count, const float *x, int n,
                        lmp_pool *pool);
/* The scalar reference of both (any kind Q4/Q8), single-threaded. */
void lmp_q4_matmul_ref(const lmp_mat *w, const float *x, int n, float *y);

/* The two halves of lmp_q4_matmul for callers that run their own parallel
 * region (runtime/mat.c lmp_mat_prep / lmp_mat_rows, used by the fused
 * forward pass in runtime/forward.c):
 * lmp_q4_act_prep quantizes x[n][w->cols] once into buf (at least
 * lmp_q4_act_prep_bytes(w, n) bytes, any alignment) and returns the handle
 * (inside buf), or NULL when w is not a valid Q4/Q8 view;
 * lmp_q4_rows computes rows [r0, r1) of y for every token from it, the
 * same bits as lmp_q4_matmul / lmp_q8_matmul (simd = lmp_q4_simd_active())
 * or lmp_q4_matmul_ref (simd = 0) give for those elements. One handle
 * serves every matrix with the same kind, cols and group as w, from any
 * number of threads at once; `simd` must be the same in both calls.
 * A NULL handle or other cols / group give NaN rows (the caller checks the
 * kind: runtime/mat.c). Both go through the same helpers as the pool path
 * (act_prepare, rows_dispatch), so a new kernel there serves both. */
typedef struct lmp_q4_act lmp_q4_act;
size_t lmp_q4_act_prep_bytes(const lmp_mat *w, int n);
const lmp_q4_act *lmp_q4_act_prep(const lmp_mat *w, const float *x, int n, void *buf, int simd);
/* lmp_q4_act_prep shared by a gang of threads, each quantizing its own
 * tokens [t0, t1) of x[n][cols] into one shared `data` buffer (at least
 * lmp_q4_act_prep_bytes(w, n) bytes) and returning a handle placed in its
 * own `hdr` (at least LMP_Q4_ACT_HDR_BYTES bytes, any alignment). Once every
 * token of [0, n) has been done by some thread (the caller's barrier),
 * every thread's handle reads exactly the bits lmp_q4_act_prep would have
 * written. NULL as lmp_q4_act_prep, or for a range outside [0, n). */
#define LMP_Q4_ACT_HDR_BYTES 128
const lmp_q4_act *lmp_q4_act_prep_part(const lmp_mat *w, const float *x, int n, int t0, int t1,
                                       void *hdr, void *data, int simd);
void lmp_q4_rows(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y, int simd);

/* Dequantize row r of a Q4 or Q8 matrix into out[cols] (embedding lookup). */
void lmp_q4_get_row(const lmp_mat *w, int r, float *out);
void lmp_q8_get_row(const lmp_mat *w, int r, float *out);

/* Kernel selection, for tests and benchmarks: 1 if the AVX2 path is in use
 * (CPU supports AVX2+FMA+F16C and it was not disabled). lmp_q4_force_scalar
 * (1) makes every lmp_q4/q8 kernel use the scalar reference (process-wide;
 * not thread-safe against concurrent matmuls). */
int lmp_q4_simd_active(void);
void lmp_q4_force_scalar(int on);
/* 1 if Q4 matmuls use the AVX-512 VNNI kernel (quantize/q4_avx512.c): the
 * SIMD path is active, lmp_cpu_avx512() (so not with LMP_CPU=avx2) and it
 * was not forbidden. lmp_q4_allow_avx512(0) makes Q4 fall back to the AVX2
 * kernel, (1) restores the default; returns the previous setting. For tests
 * and benchmarks comparing both paths on one machine; process-wide, call it
 * only while no matmul runs. */
int lmp_q4_avx512_active(void);
int lmp_q4_allow_avx512(int on);

/* 1 if a matrix of storage `kind` (lmp_mat_kind) with `rows` rows may
 * have its codes in `layout`: LMP_Q4_LAYOUT_ROWS always, LMP_Q4_LAYOUT_X16
 * for kind Q4, LMP_Q4_LAYOUT_R16 / _R8 for kind Q4 with rows a multiple of
 * 16 / 8. */
int lmp_q4_layout_ok(int kind, int layout, int rows);
/* 1 if a loader should re-order a matrix of this storage (lmp_mat_kind,
 * scheme id) into LMP_Q4_LAYOUT_X16: kind Q4 with SYM / ASYM, the AVX-512
 * kernel active, and not forbidden by lmp_q4_allow_x16(0) (test and
 * benchmark hook, process-wide like lmp_q4_allow_avx512; returns the
 * previous setting) or the environment variable LMP_X16=0. */
int lmp_q4_x16_wanted(int kind, int scheme);
int lmp_q4_allow_x16(int on);
/* Re-order the codes of `rows` stored rows (LMP_Q4_LAYOUT_ROWS, int4 SYM /
 * ASYM, lmp_q4_row_bytes(cols, group, scheme) bytes each) at src into dst in
 * LMP_Q4_LAYOUT_X16; dst == src re-orders in place, otherwise the buffers
 * must not overlap. Scales and mins are copied as they are. Parameters
 * must be valid (lmp_q4_params_ok, scheme not Q8). Deterministic, any
 * machine. */
void lmp_q4_pack_x16(const void *src, void *dst, int rows, int cols, int group, int scheme);
/* 1 if a loader should put a matrix of this storage and row count into
 * LMP_Q4_LAYOUT_R16 (instead of X16): lmp_q4_x16_wanted, rows a multiple
 * of 16, and not forbidden by lmp_q4_allow_r16(0) (same kind of hook as
 * lmp_q4_allow_x16) or the environment variable LMP_R16=0. */
int lmp_q4_r16_wanted(int kind, int scheme, int rows);
int lmp_q4_allow_r16(int on);
/* The stored rows (LMP_Q4_LAYOUT_ROWS) at src into LMP_Q4_LAYOUT_R16 at
 * dst (dst == src: in place; else no overlap). rows must be a multiple of
 * 16 and the parameters valid (int4 SYM / ASYM). Returns 1, or 0 when it
 * could not get its 16-row scratch (nothing written). Deterministic. */
int lmp_q4_pack_r16(const void *src, void *dst, int rows, int cols, int group, int scheme);
/* 1 if a loader should put a matrix of this storage and row count into
 * LMP_Q4_LAYOUT_R8: kind Q4 with SYM / ASYM, rows a multiple of 8, the AVX2
 * kernel active and the AVX-512 one not, and not forbidden by
 * lmp_q4_allow_r8(0) (same kind of hook as lmp_q4_allow_x16) or the
 * environment variable LMP_R8=0. */
int lmp_q4_r8_wanted(int kind, int scheme, int rows);
int lmp_q4_allow_r8(int on);
/* lmp_q4_pack_r16's contract for LMP_Q4_LAYOUT_R8 (rows a multiple of 8). */
int lmp_q4_pack_r8(const void *src, void *dst, int rows, int cols, int group, int scheme);
/* 1 if a loader re-orders a matrix of this storage and row count at all
 * (lmp_q4_x16_wanted or lmp_q4_r8_wanted): it then needs its own copy. */
int lmp_q4_pack_wanted(int kind, int scheme, int rows);

#endif
