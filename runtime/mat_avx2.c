/* AVX2/FMA float32 matmul kernel (compiled with -mavx2 -mfma -mf16c; only
 * called after the run-time CPU check in mat.c).
 *
 * Summation order contract (what makes results independent of the thread
 * count, of the token count n and of how rows are tiled): every output
 * element y[t][r] is computed the same way whatever tile it falls in:
 * one 8-lane accumulator updated with FMA over columns [0, 8*floor(K/8)) in
 * increasing order, reduced by hsum8 (fixed pairing), then the tail columns
 * added one by one with fmaf in increasing order.
 */
#include <immintrin.h>
#include <stddef.h>

#include "runtime/mat_impl.h"

static inline float hsum8(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);                 /* 4 lanes */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));        /* 2 lanes */
    s = _mm_add_ss(s, _mm_movehdup_ps(s));         /* 1 lane */
    return _mm_cvtss_f32(s);
}

/* R rows x T tokens tile; R and T are compile-time constants at each call. */
/* Tokens are processed in blocks so that the weight rows of a 4-row group
 * are read from memory once per block and reused from cache for every
 * token of the block. */
#define TOKEN_BLOCK 32

static inline __attribute__((always_inline)) void tile(const float *w, size_t ws, size_t K,
                                                       const float *x, float *y, size_t rows,
                                                       int R, int T)
{
    __m256 acc[4][3];
    size_t K8 = K & ~(size_t)7;
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 3
        for (int j = 0; j < T; j++) acc[i][j] = _mm256_setzero_ps();
    for (size_t k = 0; k < K8; k += 8) {
        __m256 xv[3];
#pragma GCC unroll 3
        for (int j = 0; j < T; j++) xv[j] = _mm256_loadu_ps(x + (size_t)j * K + k);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m256 wv = _mm256_loadu_ps(w + (size_t)i * ws + k);
#pragma GCC unroll 3
            for (int j = 0; j < T; j++) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 3
        for (int j = 0; j < T; j++) {
            float s = hsum8(acc[i][j]);
            const float *wr = w + (size_t)i * ws, *xr = x + (size_t)j * K;
            for (size_t k = K8; k < K; k++) s = __builtin_fmaf(wr[k], xr[k], s);
            y[(size_t)j * rows + (size_t)i] = s;
        }
}

/* Columns [k0, k1) (multiples of 8) of an R x T tile, accumulators kept in
 * memory between column blocks: the same FMA sequence per lane as tile(). */
static inline __attribute__((always_inline)) void tile_part(const float *w, size_t ws, size_t K,
                                                            size_t k0, size_t k1, const float *x,
                                                            __m256 *acc_mem, int R, int T)
{
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 3
        for (int j = 0; j < T; j++) acc[i][j] = acc_mem[i * TOKEN_BLOCK + j];
    for (size_t k = k0; k < k1; k += 8) {
        __m256 xv[3];
#pragma GCC unroll 3
        for (int j = 0; j < T; j++) xv[j] = _mm256_loadu_ps(x + (size_t)j * K + k);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m256 wv = _mm256_loadu_ps(w + (size_t)i * ws + k);
#pragma GCC unroll 3
            for (int j = 0; j < T; j++) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 3
        for (int j = 0; j < T; j++) acc_mem[i * TOKEN_BLOCK + j] = acc[i][j];
}

/* Long rows (down_proj): the 4 weight rows of a group would not stay in L1
 * over a token block, so columns are processed in blocks of K_BLOCK with
 * the accumulators parked in memory; bit-identical to the unblocked path. */
#define K_BLOCK 512

static void rows_kblocked(const float *W, size_t ws, size_t K, const float *x, int tb, int te,
                          float *y, size_t R, int r0, int r1)
{
    __m256 acc[4 * TOKEN_BLOCK];
    size_t K8 = K & ~(size_t)7;
    for (int r = r0; r < r1; r += 4) {
        int nr = r1 - r < 4 ? r1 - r : 4;
        const float *w = W + (size_t)r * ws;
        for (int i = 0; i < 4 * TOKEN_BLOCK; i++) acc[i] = _mm256_setzero_ps();
        for (size_t k0 = 0; k0 < K8; k0 += K_BLOCK) {
            size_t k1 = k0 + K_BLOCK < K8 ? k0 + K_BLOCK : K8;
            int t = tb;
            if (nr == 4) {
                for (; t + 3 <= te; t += 3)
                    tile_part(w, ws, K, k0, k1, x + (size_t)t * K, acc + (t - tb), 4, 3);
                for (; t < te; t++)
                    tile_part(w, ws, K, k0, k1, x + (size_t)t * K, acc + (t - tb), 4, 1);
            } else {
                for (int i = 0; i < nr; i++)
                    for (t = tb; t < te; t++)
                        tile_part(w + (size_t)i * ws, ws, K, k0, k1, x + (size_t)t * K,
                                  acc + i * TOKEN_BLOCK + (t - tb), 1, 1);
            }
        }
        for (int i = 0; i < nr; i++)
            for (int t = tb; t < te; t++) {
                float s = hsum8(acc[i * TOKEN_BLOCK + (t - tb)]);
                const float *wr = w + (size_t)i * ws, *xr = x + (size_t)t * K;
                for (size_t k = K8; k < K; k++) s = __builtin_fmaf(wr[k], xr[k], s);
                y[(size_t)t * R + (size_t)(r + i)] = s;
            }
    }
}

void lmp_mat_f32_rows_avx2(const float *W, size_t ws, int rows, int cols, const float *x, int n,
                           float *y, int r0, int r1)
{
    size_t K = (size_t)cols, R = (size_t)rows;
    for (int tb = 0; tb < n; tb += TOKEN_BLOCK) {
        int te = tb + TOKEN_BLOCK < n ? tb + TOKEN_BLOCK : n;
        if (K > 2 * K_BLOCK && te - tb > 1) {
            rows_kblocked(W, ws, K, x, tb, te, y, R, r0, r1);
            continue;
        }
        int r = r0;
        for (; r + 4 <= r1; r += 4) {
            const float *w = W + (size_t)r * ws;
            int t = tb;
            for (; t + 3 <= te; t += 3) tile(w, ws, K, x + (size_t)t * K, y + (size_t)t * R + r, R, 4, 3);
            for (; t < te; t++) tile(w, ws, K, x + (size_t)t * K, y + (size_t)t * R + r, R, 4, 1);
        }
        for (; r < r1; r++) {
            const float *w = W + (size_t)r * ws;
            int t = tb;
            for (; t + 3 <= te; t += 3) tile(w, ws, K, x + (size_t)t * K, y + (size_t)t * R + r, R, 1, 3);
            for (; t < te; t++) tile(w, ws, K, x + (size_t)t * K, y + (size_t)t * R + r, R, 1, 1);
        }
    }
}
