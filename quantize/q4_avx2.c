/* AVX2 + FMA + F16C kernels for the grouped int4 / int8 formats (layout in
 * q4.h). Called only when the CPU supports all three (see q4.c).
 *
 * Per row and token: y = sum_b c_b * isum_b + sum_g m'_g * sx_g where
 *   isum_b = integer dot of block b's codes with the int8 activations
 *            (_mm256_maddubs_epi16: unsigned 4-bit codes x signed int8;
 *            Q8 uses the abs/sign trick),
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

/* Blocks per prepass chunk: a multiple of 8 and of every blocks-per-group. */
#define CHUNK_BLK 256
#define TILE 4

static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static inline float f16_one(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* Convert n fp16 values at p to floats in out[], then zero out[n .. n+16). */
static inline void f16_to_f32_n(const uint8_t *p, int n, float *out)
{
    int k = 0;
    for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(out + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * k))));
    for (; k < n; k++) out[k] = f16_one(p + 2 * k);
    _mm256_storeu_ps(out + n, _mm256_setzero_ps());
    _mm256_storeu_ps(out + n + 8, _mm256_setzero_ps());
}

/* One weight row against T (1..TILE) consecutive tokens t0.. */
static inline __attribute__((always_inline)) void row_tile(const lmp_mat *w, const uint8_t *row,
                                                           const lmp_q4_act *a, int t0, int T,
                                                           int r, float *y)
{
    const int nblk = a->nblk, ng = a->ng, bpg = a->bpg;
    const int q8 = w->kind == LMP_MAT_Q8, asym = !q8 && w->scheme == LMP_Q4_ASYM;
    const uint8_t *sc = row + (size_t)nblk * (q8 ? 32 : 16), *mn = sc + 2 * (size_t)ng;
    _Alignas(32) float dwf[CHUNK_BLK + 16], mwf[CHUNK_BLK + 16];
    _Alignas(32) float c[TILE][CHUNK_BLK];
    __m256 acc0[TILE], acc1[TILE], corr[TILE];
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i idx = bpg == 1   ? _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
                        : bpg == 2 ? _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3)
                                   : _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const __m256 minus8 = _mm256_set1_ps(-8.0f);
    for (int tt = 0; tt < T; tt++) {
        acc0[tt] = _mm256_setzero_ps();
        acc1[tt] = _mm256_setzero_ps();
        corr[tt] = _mm256_setzero_ps();
    }
    for (int cb0 = 0; cb0 < nblk; cb0 += CHUNK_BLK) {
        const int cb1 = nblk - cb0 < CHUNK_BLK ? nblk : cb0 + CHUNK_BLK, nbc = cb1 - cb0;
        const int g0 = cb0 / bpg, ngc = (cb1 + bpg - 1) / bpg - g0;
        f16_to_f32_n(sc + 2 * (size_t)g0, ngc, dwf);
        if (asym) f16_to_f32_n(mn + 2 * (size_t)g0, ngc, mwf);
        for (int tt = 0; tt < T; tt++) {
            const int t = t0 + tt;
            if (!q8) {
                const float *sx = a->sx + (size_t)t * a->ng_pad + g0;
                for (int k = 0; k < ngc; k += 8) {
                    __m256 mw = asym ? _mm256_load_ps(mwf + k)
                                     : _mm256_mul_ps(minus8, _mm256_load_ps(dwf + k));
                    corr[tt] = _mm256_fmadd_ps(mw, _mm256_loadu_ps(sx + k), corr[tt]);
                }
            }
            const float *dx = a->dx + (size_t)t * a->nblk_pad + cb0;
            for (int kb = 0; kb < nbc; kb += 8) {
                __m256 dw = _mm256_permutevar8x32_ps(_mm256_loadu_ps(dwf + kb / bpg), idx);
                _mm256_store_ps(&c[tt][kb], _mm256_mul_ps(dw, _mm256_loadu_ps(dx + kb)));
            }
        }
        if (q8) {
            for (int b = cb0; b < cb1; b++) {
                const __m256i wq = _mm256_loadu_si256((const __m256i *)(row + 32 * (size_t)b));
                const __m256i aw = _mm256_abs_epi8(wq);
                for (int tt = 0; tt < T; tt++) {
                    const int8_t *xq = a->xq + ((size_t)(t0 + tt) * nblk + b) * 32;
                    __m256i xv = _mm256_loadu_si256((const __m256i *)xq);
                    __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wq));
                    __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                    __m256 cb = _mm256_broadcast_ss(&c[tt][b - cb0]);
                    if (b & 1)
                        acc1[tt] = _mm256_fmadd_ps(s, cb, acc1[tt]);
                    else
                        acc0[tt] = _mm256_fmadd_ps(s, cb, acc0[tt]);
                }
            }
        } else {
            for (int b = cb0; b < cb1; b++) {
                const __m128i raw = _mm_loadu_si128((const __m128i *)(row + 16 * (size_t)b));
                const __m256i wv = _mm256_and_si256(
                    _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1),
                    m4);
                for (int tt = 0; tt < T; tt++) {
                    const int8_t *xq = a->xq + ((size_t)(t0 + tt) * nblk + b) * 32;
                    __m256i xv = _mm256_loadu_si256((const __m256i *)xq);
                    __m256i p = _mm256_maddubs_epi16(wv, xv);
                    __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                    __m256 cb = _mm256_broadcast_ss(&c[tt][b - cb0]);
                    if (b & 1)
                        acc1[tt] = _mm256_fmadd_ps(s, cb, acc1[tt]);
                    else
                        acc0[tt] = _mm256_fmadd_ps(s, cb, acc0[tt]);
                }
            }
        }
    }
    for (int tt = 0; tt < T; tt++)
        y[(size_t)(t0 + tt) * w->rows + r] =
            hsum8(_mm256_add_ps(acc0[tt], acc1[tt])) + hsum8(corr[tt]);
}

void lmp_q4_rows_avx2(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y)
{
    const uint8_t *base = w->data;
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = base + (size_t)r * w->row_bytes;
        int t = 0;
        for (; t + TILE <= a->n; t += TILE) row_tile(w, row, a, t, TILE, r, y);
        switch (a->n - t) {
        case 3: row_tile(w, row, a, t, 3, r, y); break;
        case 2: row_tile(w, row, a, t, 2, r, y); break;
        case 1: row_tile(w, row, a, t, 1, r, y); break;
        default: break;
        }
    }
}
