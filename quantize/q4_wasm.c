/* WebAssembly SIMD128 kernel for the grouped int4 / int8 rows (browser
 * build only; natively this file compiles to nothing).
 *
 * Contract as for the AVX2 kernel (quantize/q4.h): the same math as the
 * scalar reference (row_dot_ref in quantize/q4.c), differing from it only by
 * float reassociation. Each 32-element block's integer dot product is exact;
 * four blocks at a time are then scaled by (d_g * dx_b) in a float32x4
 * accumulator, so the order of the float additions differs from the
 * reference's block-by-block sum. web/test-web.mjs checks the result against
 * lmp_q4_matmul_ref in the browser (lmpw_q4_selftest).
 * Per block: 16 code bytes -> low/high nibbles (u8), widened to i16 and
 * multiplied with the widened int8 activations by i32x4.dot_i16x8_s.
 * fp16 scales are widened through a 65536-entry table built on first use
 * (exact: filled by lmp_f16_to_f32; the browser build is single-threaded).
 */
#include "quantize/q4_internal.h"

#if defined(__wasm_simd128__)
#include <stdlib.h>
#include <wasm_simd128.h>

#include "formats/dtype.h"
#include "quantize/q4.h"

static inline uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline int hsum(v128_t v)
{
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) +
           wasm_i32x4_extract_lane(v, 2) + wasm_i32x4_extract_lane(v, 3);
}

static float *g_f16; /* fp16 bits -> float, 65536 entries, or NULL */

static float f16(const uint8_t *p)
{
    uint16_t h = rd16(p);
    return g_f16 ? g_f16[h] : lmp_f16_to_f32(h);
}

static void f16_table(void)
{
    if (g_f16) return;
    float *t = malloc(65536 * sizeof *t);
    if (!t) return; /* fall back to converting each scale */
    for (unsigned i = 0; i < 65536; i++) t[i] = lmp_f16_to_f32((uint16_t)i);
    g_f16 = t;
}

/* sum_j a[j] * b[j] over 16 int8 x 16 int8 (a may be 0..15 codes). */
static inline v128_t dot16(v128_t a_i8, v128_t b_i8)
{
    v128_t lo = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a_i8),
                                     wasm_i16x8_extend_low_i8x16(b_i8));
    v128_t hi = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a_i8),
                                     wasm_i16x8_extend_high_i8x16(b_i8));
    return wasm_i32x4_add(lo, hi);
}

/* Integer dot product of block b (32 codes) with its activations (plain or
 * paired layout, lmp_q4_xq_index), as i32x4 partial sums. (i16x8.extmul was measured slower than widening +
 * i32x4.dot_i16x8_s in Node 20's V8 on this machine.) */
static inline v128_t block_dot(const uint8_t *row, int q8, int b, const int8_t *xq, int paired)
{
    v128_t x0 = wasm_v128_load(xq + lmp_q4_xq_index(paired, b, 0));
    v128_t x1 = wasm_v128_load(xq + lmp_q4_xq_index(paired, b, 16));
    if (q8) {
        const uint8_t *wb = row + 32 * (size_t)b;
        return wasm_i32x4_add(dot16(wasm_v128_load(wb), x0), dot16(wasm_v128_load(wb + 16), x1));
    }
    v128_t c = wasm_v128_load(row + 16 * (size_t)b);
    /* codes are 0..15, so they are also valid int8 */
    return wasm_i32x4_add(dot16(wasm_v128_and(c, wasm_i8x16_splat(15)), x0),
                          dot16(wasm_u8x16_shr(c, 4), x1));
}

static float row_dot(const lmp_mat *w, const uint8_t *row, const lmp_q4_act *a, int t)
{
    int nblk = a->nblk, ng = a->ng, bpg = a->bpg, q8 = w->kind == LMP_MAT_Q8;
    const int8_t *xq = a->xq + (size_t)t * a->nblk_pad * 32;
    const float *dx = a->dx + (size_t)t * a->nblk_pad, *sx = a->sx + (size_t)t * a->ng_pad;
    const uint8_t *sc = row + (size_t)nblk * (q8 ? 32 : 16), *mn = sc + 2 * (size_t)ng;
    v128_t acc4 = wasm_f32x4_splat(0.0f);
    int b = 0;
    for (; b + 4 <= nblk; b += 4) {
        v128_t s0 = block_dot(row, q8, b, xq, a->paired);
        v128_t s1 = block_dot(row, q8, b + 1, xq, a->paired);
        v128_t s2 = block_dot(row, q8, b + 2, xq, a->paired);
        v128_t s3 = block_dot(row, q8, b + 3, xq, a->paired);
        /* transpose-add: lane i = full integer sum of block b+i */
        v128_t t01 = wasm_i32x4_add(wasm_i32x4_shuffle(s0, s1, 0, 4, 1, 5),
                                    wasm_i32x4_shuffle(s0, s1, 2, 6, 3, 7));
        v128_t t23 = wasm_i32x4_add(wasm_i32x4_shuffle(s2, s3, 0, 4, 1, 5),
                                    wasm_i32x4_shuffle(s2, s3, 2, 6, 3, 7));
        v128_t isum = wasm_i32x4_add(wasm_i32x4_shuffle(t01, t23, 0, 1, 4, 5),
                                     wasm_i32x4_shuffle(t01, t23, 2, 3, 6, 7));
        v128_t dg = wasm_f32x4_make(f16(sc + 2 * (b / bpg)), f16(sc + 2 * ((b + 1) / bpg)),
                                    f16(sc + 2 * ((b + 2) / bpg)), f16(sc + 2 * ((b + 3) / bpg)));
        v128_t scale = wasm_f32x4_mul(dg, wasm_v128_load(dx + b));
        acc4 = wasm_f32x4_add(acc4, wasm_f32x4_mul(scale, wasm_f32x4_convert_i32x4(isum)));
    }
    float acc = (wasm_f32x4_extract_lane(acc4, 0) + wasm_f32x4_extract_lane(acc4, 1)) +
                (wasm_f32x4_extract_lane(acc4, 2) + wasm_f32x4_extract_lane(acc4, 3));
    for (; b < nblk; b++)
        acc += (f16(sc + 2 * (b / bpg)) * dx[b]) *
               (float)hsum(block_dot(row, q8, b, xq, a->paired));
    float corr = 0.0f;
    if (!q8) {
        for (int g = 0; g < ng; g++) {
            float mg = w->scheme == LMP_Q4_ASYM ? f16(mn + 2 * g) : -8.0f * f16(sc + 2 * g);
            corr += mg * sx[g];
        }
    }
    return acc + corr;
}

void lmp_q4_rows_wasm(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y)
{
    const uint8_t *base = w->data;
    f16_table();
    for (int r = r0; r < r1; r++)
        for (int t = 0; t < a->n; t++)
            y[(size_t)t * w->rows + r] = row_dot(w, base + (size_t)r * w->row_bytes, a, t);
}
#else
typedef int lmp_q4_wasm_unused; /* keep the translation unit non-empty */
#endif
