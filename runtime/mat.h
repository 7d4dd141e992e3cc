/* A weight matrix as the runtime sees it, whatever its storage, and the one
 * entry point every linear layer goes through.
 *
 * Storage kinds: F32/F16/BF16 are plain row-major [rows][cols]; Q4 and Q8
 * are the grouped integer formats defined in quantize/ (see docs/FORMAT.md),
 * one quantized row after another, each row `row_bytes` long.
 * The data is never owned by an lmp_mat: it points into a mapping or a
 * buffer owned by whoever built the view (loader, container, bundle).
 */
#ifndef LMP_MAT_H
#define LMP_MAT_H

#include <stddef.h>
#include <stdint.h>

#include "common/pool.h"

typedef enum lmp_mat_kind {
    LMP_MAT_F32 = 0,
    LMP_MAT_F16,
    LMP_MAT_BF16,
    LMP_MAT_Q4,
    LMP_MAT_Q8
} lmp_mat_kind;

/* 1 for the integer kinds (Q4, Q8), whose matmul quantizes its input
 * (quantize/q4.h); 0 for the float kinds. */
int lmp_mat_kind_quantized(int kind);

typedef struct lmp_mat {
    lmp_mat_kind kind;
    int rows;          /* output features (HF weight shape [rows, cols]) */
    int cols;          /* input features */
    int group;         /* Q4/Q8: group length along a row (last group may be shorter) */
    int scheme;        /* Q4: quantize/q4.h scheme id; 0 otherwise */
    size_t row_bytes;  /* bytes of one stored row */
    const void *data;  /* rows * row_bytes bytes, not owned */
    int layout;        /* Q4: code order in memory, quantize/q4.h LMP_Q4_LAYOUT_*
                          (0, the stored order, unless a loader re-ordered it) */
} lmp_mat;

/* y[t*rows + r] = sum_c W[r][c] * x[t*cols + c] for t in [0, n).
 * n == 1 is the decode matrix-vector case, n > 1 prefill. pool may be NULL
 * (single thread). Results do not depend on the thread count. */
void lmp_mat_mul(const lmp_mat *w, const float *x, int n, float *y, lmp_pool *pool);

/* Several matrices applied to the same input (q/k/v, gate/up) in one
 * parallel run: y[i] = w[i] x, same contract as lmp_mat_mul. Saves thread
 * wake-ups in decode. */
void lmp_mat_mul_many(const lmp_mat *const *w, float *const *y, int count, const float *x, int n,
                      lmp_pool *pool);

/* ---- lmp_mat_mul in two halves, for callers that run their own parallel
 * region (the fused forward pass, runtime/forward.c) ----------------------
 * lmp_mat_prep prepares the input x[n][w->cols] for w once (Q4/Q8: the
 * int8 activations, written into buf of lmp_mat_prep_bytes(w, n) bytes;
 * float kinds: nothing, x is used in place and must stay valid); then
 * lmp_mat_rows computes rows [r0, r1) of y[n][w->rows] for every token,
 * bit-identical to those elements of lmp_mat_mul(w, x, n, y, any pool) with
 * the same lmp_mat_set_simd setting. A prepared input serves every matrix
 * for which lmp_mat_prep_shared(w, other) holds (same kind, cols, group),
 * from any number of threads at once (lmp_mat_rows only reads it).
 * Do not change lmp_mat_set_simd between the two calls. */
typedef struct lmp_mat_in {
    const float *x;         /* float kinds: the input itself */
    const void *act;        /* Q4/Q8: quantized activations (inside buf), NULL otherwise */
    int n, cols, kind, group;
    int simd;               /* kernel choice fixed at prep time */
} lmp_mat_in;
size_t lmp_mat_prep_bytes(const lmp_mat *w, int n);
void lmp_mat_prep(const lmp_mat *w, const float *x, int n, void *buf, lmp_mat_in *in);
/* lmp_mat_prep done by a gang of threads: each calls it for its own tokens
 * [t0, t1) of the same x and n, with one shared buf (lmp_mat_prep_bytes(w,
 * n)) and its own hdr (LMP_MAT_PREP_HDR_BYTES) and in. Once every token is
 * done (the caller's barrier), each thread's in is what lmp_mat_prep gives.
 * Float kinds: nothing is written (x is used in place). */
#define LMP_MAT_PREP_HDR_BYTES 128
void lmp_mat_prep_part(const lmp_mat *w, const float *x, int n, int t0, int t1, void *buf,
                       void *hdr, lmp_mat_in *in);
void lmp_mat_rows(const lmp_mat *w, const lmp_mat_in *in, int r0, int r1, float *y);
int lmp_mat_prep_shared(const lmp_mat *a, const lmp_mat *b);

/* Dequantize / convert row r into out[cols] (embedding lookup). */
void lmp_mat_get_row(const lmp_mat *w, int r, float *out);

/* The scalar reference of lmp_mat_mul (one thread, no SIMD): defines the
 * result every fast path is tested against. */
void lmp_mat_mul_ref(const lmp_mat *w, const float *x, int n, float *y);

/* Test hook: allow (1, default) or forbid (0) SIMD kernels process-wide;
 * returns the previous setting. Call only while no matmul is running. */
int lmp_mat_set_simd(int on);
/* 1 if lmp_mat_mul currently uses a SIMD kernel (allowed and CPU has it). */
int lmp_mat_simd_active(void);

#endif
