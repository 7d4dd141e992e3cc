/* AVX-512 ASYM quantizer kernels: two groups of equal length at once, one
 * per 256-bit half of a 512-bit register (zmm lanes 0-7: group a, lanes
 * 8-15: group b). Each group's lanes do exactly the IEEE single operations
 * of the reference kernels in q4_quant.c, in the same order (element i of a
 * group in lane i % 8, lane sums combined as ((l0 + l1) + (l2 + l3)) +
 * ((l4 + l5) + (l6 + l7)), fused multiply-adds exactly where the reference
 * calls fmaf(); rules in q4_internal.h), so every result is bit-identical
 * to two calls of the reference (or AVX2) kernel. The single-group entries
 * are the AVX2 kernels. Only for n % 8 == 0; only called after
 * lmp_cpu_avx512() (common/cpu.h). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "formats/dtype.h"
#include "quantize/q4_internal.h"

/* target attribute: `make fuzz` compiles every library file with clang and
 * no extra -m flags (the Makefile passes them for the normal builds). */
#define TGT __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl")))

/* [a x 8 | b x 8] */
TGT static inline __m512 pair1(float a, float b)
{
    return _mm512_mask_blend_ps((__mmask16)0xff00, _mm512_set1_ps(a), _mm512_set1_ps(b));
}

/* x_a[i..i+8) in lanes 0-7, x_b[i..i+8) in lanes 8-15 */
TGT static inline __m512 load2(const float *xa, const float *xb)
{
    __m512d lo = _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(xa)));
    return _mm512_castpd_ps(_mm512_insertf64x4(lo, _mm256_castps_pd(_mm256_loadu_ps(xb)), 1));
}

/* Per 128-bit lane: [x0 + x1, x2 + x3, y0 + y1, y2 + y3] (what vhaddps
 * computes in each 128-bit lane). */
TGT static inline __m512 hadd(__m512 x, __m512 y)
{
    return _mm512_add_ps(_mm512_shuffle_ps(x, y, 0x88), _mm512_shuffle_ps(x, y, 0xdd));
}

/* oa[0..3] = group a's lane sums of p, q, r, s; ob[0..3] group b's. Two
 * rounds of hadd give, in 128-bit lane k, the sums (l0 + l1) + (l2 + l3)
 * of lanes 4k..4k+3; lanes 0 + 1 complete group a's tree, 2 + 3 group b's. */
TGT static inline void lane_sum4x2(__m512 p, __m512 q, __m512 r, __m512 s, float *oa,
                                    float *ob)
{
    __m512 h = hadd(hadd(p, q), hadd(r, s));
    _mm_storeu_ps(oa, _mm_add_ps(_mm512_extractf32x4_ps(h, 0), _mm512_extractf32x4_ps(h, 1)));
    _mm_storeu_ps(ob, _mm_add_ps(_mm512_extractf32x4_ps(h, 2), _mm512_extractf32x4_ps(h, 3)));
}

/* min / max / sum reduction of one group's 8 lanes, as stats_avx2 */
TGT static inline void reduce_stats(__m256 mn, __m256 mx, float s, float out[3])
{
    __m128 a = _mm_min_ps(_mm256_castps256_ps128(mn), _mm256_extractf128_ps(mn, 1));
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    a = _mm_min_ps(a, _mm_movehl_ps(a, a));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    a = _mm_min_ss(a, _mm_shuffle_ps(a, a, 1));
    b = _mm_max_ss(b, _mm_shuffle_ps(b, b, 1));
    out[0] = _mm_cvtss_f32(a);
    out[1] = _mm_cvtss_f32(b);
    out[2] = s;
}

TGT static void stats2_avx512(const float *xa, const float *xb, int n, float oa[3], float ob[3])
{
    __m512 mn = pair1(xa[0], xb[0]), mx = mn, s = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        __m512 v = load2(xa + i, xb + i);
        mn = _mm512_min_ps(mn, v); /* mn < v ? mn : v */
        mx = _mm512_max_ps(mx, v);
        s = _mm512_add_ps(s, v);
    }
    float sa[4], sb[4];
    lane_sum4x2(s, s, s, s, sa, sb);
    __m512d mnd = _mm512_castps_pd(mn), mxd = _mm512_castps_pd(mx);
    reduce_stats(_mm512_castps512_ps256(mn), _mm512_castps512_ps256(mx), sa[0], oa);
    reduce_stats(_mm256_castpd_ps(_mm512_extractf64x4_pd(mnd, 1)),
                 _mm256_castpd_ps(_mm512_extractf64x4_pd(mxd, 1)), sb[0], ob);
}

/* Candidate sums for two groups (see cands in q4_internal.h): bottom j
 * with top nb + j per pass while both remain, then the rest one at a
 * time. mn, mx: per group; isa, isb: per group's scales. */
TGT static void cands2_avx512(const float *xa, const float *xb, int n, const float mn[2],
                              const float mx[2], int nb, int nt, const float *isa,
                              const float *isb, float *sa, float *sb)
{
    const __m512 lo = _mm512_set1_ps(LMP_Q4_MAGIC), hi = _mm512_set1_ps(LMP_Q4_MAGIC + 15.0f);
    __m512 xv[16], xs[16], xt[16]; /* x, x - mn, x - mx (n <= 128) */
    const __m512 vmn = pair1(mn[0], mn[1]), vmx = pair1(mx[0], mx[1]);
    const int nv = n / 8;
    for (int i = 0; i < nv; i++) {
        xv[i] = load2(xa + 8 * i, xb + 8 * i);
        xs[i] = _mm512_sub_ps(xv[i], vmn);
        xt[i] = _mm512_sub_ps(xv[i], vmx);
    }
    int np = nb < nt ? nb : nt;
    for (int j = 0; j < np; j++) {
        const __m512 s0 = pair1(isa[j], isb[j]), s1 = pair1(isa[nb + j], isb[nb + j]);
        __m512 a0 = _mm512_setzero_ps(), b0 = a0, c0 = a0, a1 = a0, b1 = a0, c1 = a0;
        for (int i = 0; i < nv; i++) {
            __m512 v0 = _mm512_min_ps(_mm512_fmadd_ps(xs[i], s0, lo), hi);
            __m512 v1 = _mm512_max_ps(_mm512_fmadd_ps(xt[i], s1, hi), lo);
            __m512 u0 = _mm512_sub_ps(v0, lo), u1 = _mm512_sub_ps(v1, lo);
            a0 = _mm512_add_ps(a0, u0);
            a1 = _mm512_add_ps(a1, u1);
            b0 = _mm512_fmadd_ps(u0, u0, b0);
            b1 = _mm512_fmadd_ps(u1, u1, b1);
            c0 = _mm512_fmadd_ps(u0, xv[i], c0);
            c1 = _mm512_fmadd_ps(u1, xv[i], c1);
        }
        float ta[8], tb[8];
        lane_sum4x2(a0, b0, c0, a1, ta, tb);
        lane_sum4x2(b1, c1, b1, c1, ta + 4, tb + 4);
        float *o = sa + 3 * j, *p = sa + 3 * (nb + j);
        o[0] = ta[0], o[1] = ta[1], o[2] = ta[2];
        p[0] = ta[3], p[1] = ta[4], p[2] = ta[5];
        o = sb + 3 * j, p = sb + 3 * (nb + j);
        o[0] = tb[0], o[1] = tb[1], o[2] = tb[2];
        p[0] = tb[3], p[1] = tb[4], p[2] = tb[5];
    }
    for (int j = np; j < nb + nt; j++) {
        if (j >= nb && j < nb + np) continue; /* done in a pair */
        const int top = j >= nb;
        const __m512 s0 = pair1(isa[j], isb[j]);
        const __m512 *xb2 = top ? xt : xs;
        __m512 a0 = _mm512_setzero_ps(), b0 = a0, c0 = a0;
        for (int i = 0; i < nv; i++) {
            __m512 v0 = top ? _mm512_max_ps(_mm512_fmadd_ps(xb2[i], s0, hi), lo)
                            : _mm512_min_ps(_mm512_fmadd_ps(xb2[i], s0, lo), hi);
            __m512 u0 = _mm512_sub_ps(v0, lo);
            a0 = _mm512_add_ps(a0, u0);
            b0 = _mm512_fmadd_ps(u0, u0, b0);
            c0 = _mm512_fmadd_ps(u0, xv[i], c0);
        }
        float ta[4], tb[4];
        lane_sum4x2(a0, b0, c0, c0, ta, tb);
        memcpy(sa + 3 * j, ta, 3 * sizeof(float));
        memcpy(sb + 3 * j, tb, 3 * sizeof(float));
    }
}

/* eval for two groups, one flag combination (constant after inlining). */
TGT static inline __attribute__((always_inline)) void
eval2_loop(const float *xa, const float *xb, int n, const float d[2], const float m[2],
           const float id[2], uint8_t *ua, uint8_t *ub, float *sa, float *sb, float e[2],
           const int dv, const int sm)
{
    const __m512 vid = pair1(id[0], id[1]), vd = pair1(d[0], d[1]), vm = pair1(m[0], m[1]),
                 zero = _mm512_setzero_ps(), f15 = _mm512_set1_ps(15.0f),
                 mg = _mm512_set1_ps(LMP_Q4_MAGIC);
    __m512 a = zero, b = zero, c = zero, r2 = zero;
    for (int i = 0; i < n; i += 8) {
        __m512 xv = load2(xa + i, xb + i);
        __m512 v = dv ? _mm512_div_ps(_mm512_sub_ps(xv, vm), vd)
                      : _mm512_mul_ps(_mm512_sub_ps(xv, vm), vid);
        v = _mm512_max_ps(v, zero);
        v = _mm512_min_ps(v, f15);
        __m512 q = _mm512_sub_ps(_mm512_add_ps(v, mg), mg);
        /* exact: q is an integer in [0, 15] */
        __m128i p = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(q));
        _mm_storel_epi64((__m128i *)(ua + i), p);
        _mm_storel_epi64((__m128i *)(ub + i), _mm_unpackhi_epi64(p, p));
        if (sm >= 1) {
            __m512 r = _mm512_sub_ps(xv, _mm512_fmadd_ps(vd, q, vm));
            r2 = _mm512_fmadd_ps(r, r, r2);
        }
        if (sm >= 2) {
            a = _mm512_add_ps(a, q);
            b = _mm512_fmadd_ps(q, q, b);
            c = _mm512_fmadd_ps(q, xv, c);
        }
    }
    if (sm == 0) {
        e[0] = e[1] = 0.0f;
        return;
    }
    float ta[4], tb[4];
    lane_sum4x2(a, b, c, r2, ta, tb);
    e[0] = ta[3];
    e[1] = tb[3];
    if (sm == 2) {
        memcpy(sa, ta, 3 * sizeof(float));
        memcpy(sb, tb, 3 * sizeof(float));
    }
}

TGT static void eval2_avx512(const float *xa, const float *xb, int n, const float d[2],
                             const float m[2], const float id[2], uint8_t *ua, uint8_t *ub,
                             float *sa, float *sb, int mode, float e[2])
{
    if (id[0] == 0.0f)
        mode == 0   ? eval2_loop(xa, xb, n, d, m, id, ua, ub, sa, sb, e, 1, 0)
        : mode == 1 ? eval2_loop(xa, xb, n, d, m, id, ua, ub, sa, sb, e, 1, 1)
                    : eval2_loop(xa, xb, n, d, m, id, ua, ub, sa, sb, e, 1, 2);
    else
        mode == 0   ? eval2_loop(xa, xb, n, d, m, id, ua, ub, sa, sb, e, 0, 0)
        : mode == 1 ? eval2_loop(xa, xb, n, d, m, id, ua, ub, sa, sb, e, 0, 1)
                    : eval2_loop(xa, xb, n, d, m, id, ua, ub, sa, sb, e, 0, 2);
}

/* ---- the group algorithm, 16 groups per batch in vector registers -------
 * lmp_q4_asym_groups (q4_quant.c) step by step, with the per-group scalar
 * steps (fp16 rounding, candidate scales, the double-precision candidate
 * selection and least-squares fits) done for 16 groups at once, lane b =
 * group b: the same IEEE operations per lane (element-wise add, sub, mul,
 * div, compares, float <-> double conversions; no FMA), so the same bits
 * as the scalar code. The element passes go through the pair kernels
 * above (two active groups of equal length) or single-group kernels. */

#define BATCH 16
#define NB LMP_Q4_ASYM_NB
#define NTT LMP_Q4_ASYM_NT
#define NC (NB + NTT)

static const float k_tb[NB] = LMP_Q4_ASYM_TB;
static const float k_tt[NTT] = LMP_Q4_ASYM_TT;

/* h16 of q4_quant.c for 16 lanes: the fp16 value nearest to v (clamped to
 * +-65504) as float, and its bits. The normal range in vector integer
 * code (the same bit operations), other lanes through formats/dtype.c. */
TGT static __m512 h16v(__m512 v, uint16_t *bits)
{
    const __m512 lim = _mm512_set1_ps(65504.0f), nlim = _mm512_set1_ps(-65504.0f);
    /* if (v > 65504) v = 65504; if (v < -65504) v = -65504; (NaN stays) */
    v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, lim, _CMP_GT_OQ), v, lim);
    v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, nlim, _CMP_LT_OQ), v, nlim);
    __m512i u = _mm512_castps_si512(v);
    __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    __mmask16 nrm = _mm512_cmp_epu32_mask(a, _mm512_set1_epi32(0x38800000), _MM_CMPINT_NLT) &
                    _mm512_cmp_epu32_mask(a, _mm512_set1_epi32(0x477fe000), _MM_CMPINT_LE);
    __m512i r = _mm512_sub_epi32(a, _mm512_set1_epi32(112 << 23));
    r = _mm512_add_epi32(r, _mm512_add_epi32(_mm512_set1_epi32(0xfff),
                                             _mm512_and_si512(_mm512_srli_epi32(r, 13),
                                                              _mm512_set1_epi32(1))));
    __m512i h = _mm512_or_si512(
        _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x8000)),
        _mm512_srli_epi32(r, 13));
    h = _mm512_and_si512(h, _mm512_set1_epi32(0xffff)); /* the uint16_t cast */
    __m512i o = _mm512_or_si512(
        _mm512_slli_epi32(_mm512_and_si512(h, _mm512_set1_epi32(0x8000)), 16),
        _mm512_add_epi32(_mm512_slli_epi32(_mm512_and_si512(h, _mm512_set1_epi32(0x7fff)), 13),
                         _mm512_set1_epi32(112 << 23)));
    /* +-0 (padding lanes, inactive groups) exactly as lmp_f32_to_f16:
     * the sign alone */
    __mmask16 z = _mm512_cmp_epi32_mask(a, _mm512_setzero_si512(), _MM_CMPINT_EQ);
    h = _mm512_mask_and_epi32(h, z, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x8000));
    o = _mm512_mask_mov_epi32(o, z, u);
    nrm |= z;
    _mm256_storeu_si256((__m256i *)bits, _mm512_cvtepi32_epi16(h));
    __m512 f = _mm512_castsi512_ps(o);
    if (nrm != 0xffff) {
        float fv[16], vv[16];
        _mm512_storeu_ps(fv, f);
        _mm512_storeu_ps(vv, v);
        for (int l = 0; l < 16; l++)
            if (!(nrm >> l & 1)) {
                bits[l] = lmp_f32_to_f16(vv[l]);
                fv[l] = lmp_f16_to_f32(bits[l]);
            }
        f = _mm512_loadu_ps(fv);
    }
    return f;
}

typedef struct vbatch {
    int nb;
    int n[BATCH];
    const lmp_q4_asym_kern *kk[BATCH];
    const float *xg[BATCH];
    uint8_t *ug[BATCH];
} vbatch;

/* The active groups (mask) in pairs: pr[i] = first group, two[i] = 1 when
 * pr[i] is paired with the next active group of the same length. */
static int pairs_of(const vbatch *B, const lmp_q4_asym_kern *k, unsigned mask, int *pr, int *two)
{
    int idx[BATCH], na = 0, np = 0;
    for (int b = 0; b < B->nb; b++)
        if (mask >> b & 1) idx[na++] = b;
    for (int i = 0; i < na; i++) {
        int b = idx[i];
        pr[np] = b;
        two[np] = i + 1 < na && B->kk[b] == k && B->kk[idx[i + 1]] == k &&
                  B->n[idx[i + 1]] == B->n[b];
        if (two[np]) pr[np + BATCH] = idx[++i];
        np++;
    }
    return np;
}

/* eval of group b alone, or of b and c (pair kernel when its conditions
 * hold). d, m, id, e indexed by group; s: per group 3 sums (NULL: none). */
static void eval_gr(const vbatch *B, const lmp_q4_asym_kern *k, int b, int c, const float *d,
                    const float *m, const float *id, uint8_t *const *u, float (*s)[3], int mode,
                    float *e)
{
    if (c >= 0 && d[b] != 0.0f && d[c] != 0.0f && (id[b] == 0.0f) == (id[c] == 0.0f)) {
        float dd[2] = {d[b], d[c]}, mm[2] = {m[b], m[c]}, ii[2] = {id[b], id[c]}, ee[2];
        k->eval2(B->xg[b], B->xg[c], B->n[b], dd, mm, ii, u[b], u[c], s ? s[b] : NULL,
                 s ? s[c] : NULL, mode, ee);
        e[b] = ee[0];
        e[c] = ee[1];
        return;
    }
    e[b] = B->kk[b]->eval(B->xg[b], B->n[b], d[b], m[b], id[b], u[b], s ? s[b] : NULL, mode);
    if (c >= 0)
        e[c] = B->kk[c]->eval(B->xg[c], B->n[c], d[c], m[c], id[c], u[c], s ? s[c] : NULL,
                              mode);
}

/* double lanes [8h, 8h + 8) of a float[16] */
TGT static inline __m512d ld_pd(const float *p, int h)
{
    return _mm512_cvtps_pd(_mm256_loadu_ps(p + 8 * h));
}

TGT static void batch_avx512(const lmp_q4_asym_kern *k, vbatch *B, int search, uint16_t *dbits,
                             uint16_t *mbits)
{
    const int nb = B->nb;
    const unsigned all = (1u << nb) - 1;
    float mn[BATCH] = {0}, mx[BATCH] = {0}, sx[BATCH] = {0}, best[BATCH] = {0};
    float d[BATCH] = {0}, m[BATCH] = {0}, id[BATCH] = {0}, e[BATCH] = {0};
    float cd[BATCH] = {0}, cm[BATCH] = {0}, nf[BATCH] = {0};
    float cs[BATCH][3 * NC];
    float su[NC][BATCH] = {{0}}, suu[NC][BATCH] = {{0}}, sux[NC][BATCH] = {{0}};
    float es[BATCH][3];
    uint16_t db[BATCH], mb[BATCH];
    int pr[2 * BATCH], two[BATCH];
    memset(es, 0, sizeof es);
    for (int b = 0; b < nb; b++) nf[b] = (float)B->n[b];
    /* statistics */
    int np = pairs_of(B, k, all, pr, two);
    for (int i = 0; i < np; i++) {
        int b = pr[i];
        float s0[3], s1[3];
        if (two[i]) {
            int c = pr[i + BATCH];
            k->stats2(B->xg[b], B->xg[c], B->n[b], s0, s1);
            mn[c] = s1[0], mx[c] = s1[1], sx[c] = s1[2];
        } else {
            B->kk[b]->stats(B->xg[b], B->n[b], s0);
        }
        mn[b] = s0[0], mx[b] = s0[1], sx[b] = s0[2];
    }
    /* min-max: m = h16(mn), d = h16((mx - mn) / 15), codes and error */
    const __m512 vmn = _mm512_loadu_ps(mn), vmx = _mm512_loadu_ps(mx);
    const __m512 range = _mm512_sub_ps(vmx, vmn);
    _mm512_storeu_ps(m, h16v(vmn, mb));
    _mm512_storeu_ps(d, h16v(_mm512_div_ps(range, _mm512_set1_ps(15.0f)), db));
    memcpy(mbits, mb, (size_t)nb * sizeof *mb);
    memcpy(dbits, db, (size_t)nb * sizeof *db);
    for (int i = 0; i < np; i++)
        eval_gr(B, k, pr[i], two[i] ? pr[i + BATCH] : -1, d, m, id, B->ug, NULL, search, best);
    if (!search) return;
    /* active = best != 0 && mx != mn (NaN counts as different) */
    unsigned act = all & _mm512_cmp_ps_mask(_mm512_loadu_ps(best), _mm512_setzero_ps(),
                                            _CMP_NEQ_UQ) &
                   _mm512_cmp_ps_mask(vmx, vmn, _CMP_NEQ_UQ);
    if (!act) return;
    /* candidates: is[j] = (15 + t_j) / range */
    float is[NC][BATCH];
    for (int j = 0; j < NC; j++) {
        float t = j < NB ? k_tb[j] : k_tt[j - NB];
        _mm512_storeu_ps(is[j], _mm512_div_ps(_mm512_add_ps(_mm512_set1_ps(15.0f),
                                                            _mm512_set1_ps(t)),
                                              range));
    }
    np = pairs_of(B, k, act, pr, two);
    for (int i = 0; i < np; i++) {
        int b = pr[i], c = two[i] ? pr[i + BATCH] : -1;
        float isb[NC], isc[NC];
        for (int j = 0; j < NC; j++) {
            isb[j] = is[j][b];
            if (c >= 0) isc[j] = is[j][c];
        }
        if (c >= 0) {
            float mn2[2] = {mn[b], mn[c]}, mx2[2] = {mx[b], mx[c]};
            k->cands2(B->xg[b], B->xg[c], B->n[b], mn2, mx2, NB, NTT, isb, isc, cs[b], cs[c]);
        } else {
            B->kk[b]->cands(B->xg[b], B->n[b], mn[b], mx[b], NB, NTT, isb, cs[b]);
        }
    }
    for (int b = 0; b < nb; b++)
        if (act >> b & 1)
            for (int j = 0; j < NC; j++) {
                su[j][b] = cs[b][3 * j];
                suu[j][b] = cs[b][3 * j + 1];
                sux[j][b] = cs[b][3 * j + 2];
            }
    /* selection, in double, 8 groups per register: r = det > 0 ? t*t/det
     * : -1, the first largest r wins; its LS (d, m) */
    __m512d inv_n[2];
    unsigned found = 0;
    for (int h = 0; h < 2; h++) {
        const __m512d nn = ld_pd(nf, h), vsx = ld_pd(sx, h), m1 = _mm512_set1_pd(-1.0);
        inv_n[h] = _mm512_div_pd(_mm512_set1_pd(1.0), nn);
        __m512d br = m1, bsu = _mm512_setzero_pd(), bsuu = bsu, bsux = bsu;
        __mmask8 f = 0;
        for (int j = 0; j < NC; j++) {
            __m512d a = ld_pd(su[j], h), b2 = ld_pd(suu[j], h), c = ld_pd(sux[j], h);
            __m512d det = _mm512_sub_pd(_mm512_mul_pd(nn, b2), _mm512_mul_pd(a, a));
            __m512d t = _mm512_sub_pd(_mm512_mul_pd(nn, c), _mm512_mul_pd(a, vsx));
            __m512d r = _mm512_div_pd(_mm512_mul_pd(t, t), det);
            r = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(det, _mm512_setzero_pd(), _CMP_GT_OQ),
                                     m1, r);
            __mmask8 up = _mm512_cmp_pd_mask(r, br, _CMP_GT_OQ);
            br = _mm512_mask_blend_pd(up, br, r);
            bsu = _mm512_mask_blend_pd(up, bsu, a);
            bsuu = _mm512_mask_blend_pd(up, bsuu, b2);
            bsux = _mm512_mask_blend_pd(up, bsux, c);
            f |= up;
        }
        found |= (unsigned)f << (8 * h);
        __m512d dd = _mm512_div_pd(_mm512_sub_pd(_mm512_mul_pd(nn, bsux), _mm512_mul_pd(bsu, vsx)),
                                   _mm512_sub_pd(_mm512_mul_pd(nn, bsuu), _mm512_mul_pd(bsu, bsu)));
        _mm256_storeu_ps(cd + 8 * h, _mm512_cvtpd_ps(dd));
        _mm256_storeu_ps(cm + 8 * h, _mm512_cvtpd_ps(_mm512_mul_pd(
                                         _mm512_sub_pd(vsx, _mm512_mul_pd(dd, bsu)), inv_n[h])));
    }
    act &= found;
    /* refinement: fp16 d, m -> nearest codes -> LS refit; best error kept;
     * a group stops when its (d, m) repeat */
    __m512 pd = _mm512_set1_ps(NAN), pm = pd;
    uint8_t ct[BATCH][128];
    uint8_t *cu[BATCH];
    for (int b = 0; b < BATCH; b++) cu[b] = ct[b];
    for (int it = 0; it < LMP_Q4_ASYM_NREFINE && act; it++) {
        const int last = it == LMP_Q4_ASYM_NREFINE - 1;
        __m512 d16 = h16v(_mm512_loadu_ps(cd), db), m16 = h16v(_mm512_loadu_ps(cm), mb);
        act &= ~(unsigned)(_mm512_cmp_ps_mask(d16, pd, _CMP_EQ_OQ) &
                           _mm512_cmp_ps_mask(m16, pm, _CMP_EQ_OQ));
        pd = d16;
        pm = m16;
        __mmask16 nz = _mm512_cmp_ps_mask(d16, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        _mm512_storeu_ps(id, _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0f), d16));
        _mm512_storeu_ps(d, d16);
        _mm512_storeu_ps(m, m16);
        np = pairs_of(B, k, act, pr, two);
        for (int i = 0; i < np; i++)
            eval_gr(B, k, pr[i], two[i] ? pr[i + BATCH] : -1, d, m, id, cu, es, last ? 1 : 2, e);
        for (int b = 0; b < nb; b++) {
            if (!(act >> b & 1)) continue;
            if (e[b] < best[b]) {
                best[b] = e[b];
                dbits[b] = db[b];
                mbits[b] = mb[b];
                memcpy(B->ug[b], ct[b], (size_t)B->n[b]);
            }
        }
        if (last) break;
        /* ls_fit for 16 groups: det = n suu - su^2; !(det > 0): d = 0,
         * m = sx / n; else dd = (n sux - su sx) / det, m = (sx - dd su) / n */
        float s0[BATCH], s1[BATCH], s2[BATCH];
        for (int b = 0; b < BATCH; b++) {
            int ok = b < nb && (act >> b & 1);
            s0[b] = ok ? es[b][0] : 0.0f;
            s1[b] = ok ? es[b][1] : 0.0f;
            s2[b] = ok ? es[b][2] : 0.0f;
        }
        for (int h = 0; h < 2; h++) {
            const __m512d nn = ld_pd(nf, h), vsx = ld_pd(sx, h);
            __m512d a = ld_pd(s0, h), b2 = ld_pd(s1, h), c = ld_pd(s2, h);
            __m512d det = _mm512_sub_pd(_mm512_mul_pd(nn, b2), _mm512_mul_pd(a, a));
            __mmask8 ok = _mm512_cmp_pd_mask(det, _mm512_setzero_pd(), _CMP_GT_OQ);
            __m512d dd = _mm512_div_pd(_mm512_sub_pd(_mm512_mul_pd(nn, c), _mm512_mul_pd(a, vsx)),
                                       det);
            __m512d mm = _mm512_mul_pd(_mm512_sub_pd(vsx, _mm512_mul_pd(dd, a)), inv_n[h]);
            __m512d m0 = _mm512_mul_pd(vsx, inv_n[h]);
            dd = _mm512_maskz_mov_pd(ok, dd);
            mm = _mm512_mask_blend_pd(ok, m0, mm);
            _mm256_storeu_ps(cd + 8 * h, _mm512_cvtpd_ps(dd));
            _mm256_storeu_ps(cm + 8 * h, _mm512_cvtpd_ps(mm));
        }
    }
}

/* ---- transposed: one group per lane --------------------------------------
 * For a batch of up to 16 groups of the same length G (a multiple of 8),
 * lane g of every register holds group g. Element i = 8k + l of a group
 * belongs to the reference's lane l: the reference's per-lane running sums
 * become 8 accumulator registers acc[l], each updated for k = 0, 1, ... in
 * order, and the final ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
 * is element-wise: every group gets exactly the reference's operations,
 * with no horizontal shuffles and all per-group steps in vector lanes. */

TGT static inline __m512 tree8(const __m512 *a)
{
    return _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])),
                         _mm512_add_ps(_mm512_add_ps(a[4], a[5]), _mm512_add_ps(a[6], a[7])));
}

/* one eval pass (see eval in q4_internal.h) for all lanes: nz = lanes with
 * d != 0 (the others get codes 0); id = 1/d; dv: the reference divides by d
 * (checked below); codes to ct[i] (lane g = group g); sums when sm >= 1 / 2 */
TGT static inline __attribute__((always_inline)) void
eval_t(const __m512 *xt, int G, __m512 d, __m512 m, __m512 id, __mmask16 nz, __m512 *ct,
       __m512 *e, __m512 *sa, __m512 *sb, __m512 *sc, const int dv, const int sm)
{
    const __m512 zero = _mm512_setzero_ps(), f15 = _mm512_set1_ps(15.0f),
                 mg = _mm512_set1_ps(LMP_Q4_MAGIC);
    __m512 ea[8], aa[8], ba[8], ca[8];
    for (int l = 0; l < 8; l++) {
        __m512 a = zero, b = zero, c = zero, r2 = zero;
        for (int i = l; i < G; i += 8) {
            __m512 xv = xt[i];
            __m512 xm = _mm512_sub_ps(xv, m);
            __m512 v = _mm512_mul_ps(xm, id);
            v = _mm512_max_ps(v, zero);
            v = _mm512_min_ps(v, f15);
            __m512 q = _mm512_sub_ps(_mm512_add_ps(v, mg), mg);
            if (dv) {
                /* The reference divides: v = (x - m) / d. (x - m) * (1/d)
                 * (id = 1/d here) is within 1.5 * 2^-23 relative of it, so
                 * it rounds to the same code unless it lies within ~3e-6
                 * of a half-integer (for |v| <= 16; beyond, both clamp
                 * alike). Lanes within 2^-16 of one get the division. */
                __m512 df = _mm512_abs_ps(_mm512_sub_ps(v, q));
                __mmask16 near = nz & _mm512_cmp_ps_mask(df, _mm512_set1_ps(0.5f - 1.0f / 65536.0f),
                                                         _CMP_GT_OQ);
                if (near) {
                    __m512 w = _mm512_div_ps(xm, d);
                    w = _mm512_min_ps(_mm512_max_ps(w, zero), f15);
                    q = _mm512_mask_blend_ps(near, q, _mm512_sub_ps(_mm512_add_ps(w, mg), mg));
                }
            }
            q = _mm512_maskz_mov_ps(nz, q);
            ct[i] = q; /* an integer in [0, 15] */
            if (sm >= 1) {
                __m512 r = _mm512_sub_ps(xv, _mm512_fmadd_ps(d, q, m));
                r2 = _mm512_fmadd_ps(r, r, r2);
            }
            if (sm >= 2) {
                a = _mm512_add_ps(a, q);
                b = _mm512_fmadd_ps(q, q, b);
                c = _mm512_fmadd_ps(q, xv, c);
            }
        }
        ea[l] = r2, aa[l] = a, ba[l] = b, ca[l] = c;
    }
    if (sm >= 1) *e = tree8(ea);
    if (sm >= 2) {
        *sa = tree8(aa);
        *sb = tree8(ba);
        *sc = tree8(ca);
    }
}

/* candidate sums for nc candidates of one anchor in one pass over x:
 * bottom-anchored (top = 0: base mn, clamp at 15) or top-anchored (base
 * mx, clamp at 0), scales is[j]; x - base computed once per element (the
 * same value every candidate's reference computes) */
TGT static inline __attribute__((always_inline)) void
cands_t(const __m512 *xt, const int G, __m512 base, const __m512 *is, const int nc,
        const int top, __m512 *sa, __m512 *sb, __m512 *sc)
{
    const __m512 lo = _mm512_set1_ps(LMP_Q4_MAGIC), hi = _mm512_set1_ps(LMP_Q4_MAGIC + 15.0f);
    __m512 aa[3][8], ba[3][8], ca[3][8];
    for (int l = 0; l < 8; l++) {
        __m512 a[3], b[3], c[3];
        for (int j = 0; j < nc; j++) a[j] = b[j] = c[j] = _mm512_setzero_ps();
        for (int i = l; i < G; i += 8) {
            __m512 xv = xt[i], xd = _mm512_sub_ps(xv, base);
            for (int j = 0; j < nc; j++) {
                __m512 v = top ? _mm512_max_ps(_mm512_fmadd_ps(xd, is[j], hi), lo)
                               : _mm512_min_ps(_mm512_fmadd_ps(xd, is[j], lo), hi);
                __m512 u = _mm512_sub_ps(v, lo);
                a[j] = _mm512_add_ps(a[j], u);
                b[j] = _mm512_fmadd_ps(u, u, b[j]);
                c[j] = _mm512_fmadd_ps(u, xv, c[j]);
            }
        }
        for (int j = 0; j < nc; j++) aa[j][l] = a[j], ba[j][l] = b[j], ca[j][l] = c[j];
    }
    for (int j = 0; j < nc; j++) {
        sa[j] = tree8(aa[j]);
        sb[j] = tree8(ba[j]);
        sc[j] = tree8(ca[j]);
    }
}

/* ls_fit of q4_quant.c for 16 lanes (double, 8 per register) */
TGT static void ls_fit_t(__m512 su, __m512 suu, __m512 sux, const float *nf, const float *sx,
                         const __m512d *inv_n, float *cd, float *cm)
{
    float a16[16], b16[16], c16[16];
    _mm512_storeu_ps(a16, su);
    _mm512_storeu_ps(b16, suu);
    _mm512_storeu_ps(c16, sux);
    for (int h = 0; h < 2; h++) {
        const __m512d nn = ld_pd(nf, h), vsx = ld_pd(sx, h);
        __m512d a = ld_pd(a16, h), b2 = ld_pd(b16, h), c = ld_pd(c16, h);
        __m512d det = _mm512_sub_pd(_mm512_mul_pd(nn, b2), _mm512_mul_pd(a, a));
        __mmask8 ok = _mm512_cmp_pd_mask(det, _mm512_setzero_pd(), _CMP_GT_OQ);
        __m512d dd = _mm512_div_pd(_mm512_sub_pd(_mm512_mul_pd(nn, c), _mm512_mul_pd(a, vsx)),
                                   det);
        __m512d mm = _mm512_mul_pd(_mm512_sub_pd(vsx, _mm512_mul_pd(dd, a)), inv_n[h]);
        __m512d m0 = _mm512_mul_pd(vsx, inv_n[h]);
        dd = _mm512_maskz_mov_pd(ok, dd);
        mm = _mm512_mask_blend_pd(ok, m0, mm);
        _mm256_storeu_ps(cd + 8 * h, _mm512_cvtpd_ps(dd));
        _mm256_storeu_ps(cm + 8 * h, _mm512_cvtpd_ps(mm));
    }
}

/* In-place transpose of the 16 x 16 matrix r[row][col]: blocks of size
 * bs = 8, 4, 2, 1 are swapped across the diagonal (rows j and j + bs:
 * in every 2bs-column chunk, row j keeps its left half and takes row
 * j + bs's left half; row j + bs takes row j's right half and keeps its
 * own), one two-source permute per output row. Moves bits only. */
/* permute indices of transpose16, per stage (bs = 8, 4, 2, 1): row j's,
 * then row j + bs's; element e: chunk c = e - e % 2bs, off = e % 2bs;
 * row j: off < bs ? c + off : 16 + c + off - bs; row j + bs: off < bs ?
 * c + bs + off : 16 + c + off (16 + k: element k of the second row) */
static const int32_t k_tidx[8][16] __attribute__((aligned(64))) = {
    {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
    {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31},
    {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
    {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31},
    {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
    {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31},
    {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
    {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31},
};

TGT static inline __attribute__((always_inline)) void transpose16(__m512 *r)
{
    __m512 v[16]; /* fully unrolled on a local copy: stays in registers */
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) v[j] = r[j];
#pragma GCC unroll 4
    for (int st = 0; st < 4; st++) {
        const int bs = 8 >> st;
        const __m512i il = _mm512_load_si512(k_tidx[2 * st]),
                      ih = _mm512_load_si512(k_tidx[2 * st + 1]);
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) {
            if (j & bs) continue;
            __m512 a = v[j], b = v[j + bs];
            v[j] = _mm512_permutex2var_ps(a, il, b);
            v[j + bs] = _mm512_permutex2var_ps(a, ih, b);
        }
    }
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) r[j] = v[j];
}

/* nb (<= 16) whole groups of length G (G % 8 == 0, G <= 128) at x,
 * consecutive: codes to u, fp16 bits to dbits / mbits. */
TGT static inline __attribute__((always_inline)) void
batch_t(const float *const *xg, int nb, const int G, int search, uint8_t *const *ug,
        uint16_t *dbits, uint16_t *mbits)
{
    __m512 xt[128], ut[128], ct[128]; /* x, best codes, this round's codes; [i] lane g */
    const __mmask16 live = (__mmask16)((1u << nb) - 1);
    for (int i0 = 0; i0 < G; i0 += 16) {
        __m512 *r = xt + i0;
        for (int g = 0; g < 16; g++)
            r[g] = g < nb ? _mm512_loadu_ps(xg[g] + i0) : _mm512_setzero_ps();
        transpose16(r);
    }
    /* statistics: per reference lane, min / max from x[0], sum from 0 */
    __m512 mna[8], mxa[8], sa8[8];
    for (int l = 0; l < 8; l++) {
        __m512 mn = xt[0], mx = xt[0], s = _mm512_setzero_ps();
        for (int i = l; i < G; i += 8) {
            mn = _mm512_min_ps(mn, xt[i]);
            mx = _mm512_max_ps(mx, xt[i]);
            s = _mm512_add_ps(s, xt[i]);
        }
        mna[l] = mn, mxa[l] = mx, sa8[l] = s;
    }
    for (int l = 0; l < 4; l++) {
        mna[l] = _mm512_min_ps(mna[l], mna[l + 4]);
        mxa[l] = _mm512_max_ps(mxa[l], mxa[l + 4]);
    }
    for (int l = 0; l < 2; l++) {
        mna[l] = _mm512_min_ps(mna[l], mna[l + 2]);
        mxa[l] = _mm512_max_ps(mxa[l], mxa[l + 2]);
    }
    const __m512 vmn = _mm512_min_ps(mna[0], mna[1]), vmx = _mm512_max_ps(mxa[0], mxa[1]);
    const __m512 vsx = tree8(sa8), range = _mm512_sub_ps(vmx, vmn);
    /* min-max */
    uint16_t db[16], mb[16];
    __m512 m = h16v(vmn, mb), d = h16v(_mm512_div_ps(range, _mm512_set1_ps(15.0f)), db);
    __mmask16 nz = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    const __m512 id0 = _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0f), d);
    __m512 best = _mm512_setzero_ps(), dummy;
    if (search)
        eval_t(xt, G, d, m, id0, nz, ut, &best, &dummy, &dummy, &dummy, 1, 1);
    else
        eval_t(xt, G, d, m, id0, nz, ut, &best, &dummy, &dummy, &dummy, 1, 0);
    __mmask16 act = search ? live & _mm512_cmp_ps_mask(best, _mm512_setzero_ps(), _CMP_NEQ_UQ) &
                                 _mm512_cmp_ps_mask(vmx, vmn, _CMP_NEQ_UQ)
                           : 0;
    if (act) {
        /* candidates */
        float su[NC][16], suu[NC][16], sux[NC][16];
        __m512 is[NC], ka[NC], kb[NC], kc[NC];
        for (int j = 0; j < NC; j++)
            is[j] = _mm512_div_ps(_mm512_add_ps(_mm512_set1_ps(15.0f),
                                                _mm512_set1_ps(j < NB ? k_tb[j] : k_tt[j - NB])),
                                  range);
        _Static_assert(NB <= 3 && NTT <= 3, "cands_t holds up to 3 candidates per anchor");
        cands_t(xt, G, vmn, is, NB, 0, ka, kb, kc);
        cands_t(xt, G, vmx, is + NB, NTT, 1, ka + NB, kb + NB, kc + NB);
        for (int j = 0; j < NC; j++) {
            _mm512_storeu_ps(su[j], ka[j]);
            _mm512_storeu_ps(suu[j], kb[j]);
            _mm512_storeu_ps(sux[j], kc[j]);
        }
        /* selection (as batch_avx512) */
        float nf[16], sx[16], cd[16], cm[16];
        _mm512_storeu_ps(nf, _mm512_set1_ps((float)G));
        _mm512_storeu_ps(sx, vsx);
        __m512d inv_n[2];
        unsigned found = 0;
        for (int h = 0; h < 2; h++) {
            const __m512d nn = ld_pd(nf, h), dsx = ld_pd(sx, h), m1 = _mm512_set1_pd(-1.0);
            inv_n[h] = _mm512_div_pd(_mm512_set1_pd(1.0), nn);
            __m512d br = m1, bsu = _mm512_setzero_pd(), bsuu = bsu, bsux = bsu;
            __mmask8 f = 0;
            for (int j = 0; j < NC; j++) {
                __m512d a = ld_pd(su[j], h), b2 = ld_pd(suu[j], h), c = ld_pd(sux[j], h);
                __m512d det = _mm512_sub_pd(_mm512_mul_pd(nn, b2), _mm512_mul_pd(a, a));
                __m512d t = _mm512_sub_pd(_mm512_mul_pd(nn, c), _mm512_mul_pd(a, dsx));
                __m512d r = _mm512_div_pd(_mm512_mul_pd(t, t), det);
                r = _mm512_mask_blend_pd(
                    _mm512_cmp_pd_mask(det, _mm512_setzero_pd(), _CMP_GT_OQ), m1, r);
                __mmask8 up = _mm512_cmp_pd_mask(r, br, _CMP_GT_OQ);
                br = _mm512_mask_blend_pd(up, br, r);
                bsu = _mm512_mask_blend_pd(up, bsu, a);
                bsuu = _mm512_mask_blend_pd(up, bsuu, b2);
                bsux = _mm512_mask_blend_pd(up, bsux, c);
                f |= up;
            }
            found |= (unsigned)f << (8 * h);
            __m512d dd = _mm512_div_pd(
                _mm512_sub_pd(_mm512_mul_pd(nn, bsux), _mm512_mul_pd(bsu, dsx)),
                _mm512_sub_pd(_mm512_mul_pd(nn, bsuu), _mm512_mul_pd(bsu, bsu)));
            _mm256_storeu_ps(cd + 8 * h, _mm512_cvtpd_ps(dd));
            _mm256_storeu_ps(cm + 8 * h,
                             _mm512_cvtpd_ps(_mm512_mul_pd(
                                 _mm512_sub_pd(dsx, _mm512_mul_pd(dd, bsu)), inv_n[h])));
        }
        act &= (__mmask16)found;
        /* refinement */
        __m512 pd = _mm512_set1_ps(NAN), pm = pd;
        for (int it = 0; it < LMP_Q4_ASYM_NREFINE && act; it++) {
            const int last = it == LMP_Q4_ASYM_NREFINE - 1;
            uint16_t db2[16], mb2[16];
            __m512 d16 = h16v(_mm512_loadu_ps(cd), db2), m16 = h16v(_mm512_loadu_ps(cm), mb2);
            act &= (__mmask16)~(_mm512_cmp_ps_mask(d16, pd, _CMP_EQ_OQ) &
                                _mm512_cmp_ps_mask(m16, pm, _CMP_EQ_OQ));
            if (!act) break;
            pd = d16;
            pm = m16;
            __mmask16 nz2 = _mm512_cmp_ps_mask(d16, _mm512_setzero_ps(), _CMP_NEQ_UQ);
            __m512 id = _mm512_maskz_div_ps(nz2, _mm512_set1_ps(1.0f), d16);
            __m512 e, a = _mm512_setzero_ps(), b = a, c = a;
            if (last)
                eval_t(xt, G, d16, m16, id, nz2, ct, &e, &a, &b, &c, 0, 1);
            else
                eval_t(xt, G, d16, m16, id, nz2, ct, &e, &a, &b, &c, 0, 2);
            __mmask16 imp = act & _mm512_cmp_ps_mask(e, best, _CMP_LT_OQ);
            if (imp) {
                best = _mm512_mask_blend_ps(imp, best, e);
                for (int i = 0; i < G; i++) ut[i] = _mm512_mask_blend_ps(imp, ut[i], ct[i]);
                for (int g = 0; g < 16; g++)
                    if (imp >> g & 1) db[g] = db2[g], mb[g] = mb2[g];
            }
            if (!last) ls_fit_t(a, b, c, nf, sx, inv_n, cd, cm);
        }
    }
    memcpy(dbits, db, (size_t)nb * sizeof *db);
    memcpy(mbits, mb, (size_t)nb * sizeof *mb);
    for (int i0 = 0; i0 < G; i0 += 16) {
        __m512 *r = ut + i0;
        transpose16(r);
        for (int g = 0; g < nb; g++)
            _mm_storeu_si128((__m128i *)(ug[g] + i0),
                             _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r[g])));
    }
}

/* batch_t with G a constant: loops unrolled, accumulators in registers */
TGT static void batch_t32(const float *const *xg, int nb, int search, uint8_t *const *ug,
                       uint16_t *db, uint16_t *mb)
{
    batch_t(xg, nb, 32, search, ug, db, mb);
}

TGT static void batch_t64(const float *const *xg, int nb, int search, uint8_t *const *ug,
                       uint16_t *db, uint16_t *mb)
{
    batch_t(xg, nb, 64, search, ug, db, mb);
}

TGT static void batch_t128(const float *const *xg, int nb, int search, uint8_t *const *ug,
                       uint16_t *db, uint16_t *mb)
{
    batch_t(xg, nb, 128, search, ug, db, mb);
}

static void batch_tg(int group, const float *const *xg, int nb, int search, uint8_t *const *ug,
                     uint16_t *db, uint16_t *mb)
{
    if (group == 32)
        batch_t32(xg, nb, search, ug, db, mb);
    else if (group == 64)
        batch_t64(xg, nb, search, ug, db, mb);
    else
        batch_t128(xg, nb, search, ug, db, mb);
}

TGT static void groups_avx512(const float *x, int cols, int group, int search, uint8_t *u,
                              uint16_t *dbits, uint16_t *mbits)
{
    const int ng = (cols + group - 1) / group;
    for (int g0 = 0; g0 < ng; g0 += BATCH) {
        vbatch B;
        B.nb = ng - g0 < BATCH ? ng - g0 : BATCH;
        for (int b = 0; b < B.nb; b++) {
            int c0 = (g0 + b) * group;
            B.n[b] = cols - c0 < group ? cols - c0 : group;
            B.kk[b] = B.n[b] % 8 ? &lmp_q4_asym_ref : &lmp_q4_asym_avx512;
            B.xg[b] = x + c0;
            B.ug[b] = u + c0;
        }
        /* whole groups transposed; a ragged last group (row end) alone */
        int full = B.n[B.nb - 1] == group ? B.nb : B.nb - 1;
        if ((group != 32 && group != 64 && group != 128) || full < 8) {
            batch_avx512(&lmp_q4_asym_avx512, &B, search, dbits + g0, mbits + g0);
            continue; /* few lanes: the pair kernels are cheaper */
        }
        batch_tg(group, B.xg, full, search, B.ug, dbits + g0, mbits + g0);
        if (full < B.nb) {
            vbatch R;
            R.nb = 1;
            R.n[0] = B.n[full];
            R.kk[0] = B.kk[full];
            R.xg[0] = B.xg[full];
            R.ug[0] = B.ug[full];
            batch_avx512(&lmp_q4_asym_avx512, &R, search, dbits + g0 + full, mbits + g0 + full);
        }
    }
}

/* Whole groups of several rows, collected 16 at a time (batch_t); a
 * partial batch of fewer than 8 and ragged row-end groups go through
 * batch_avx512. Every group's bits are independent of its batch. */
typedef struct pend {
    int n;
    const float *x[BATCH];
    uint8_t *u[BATCH];
    uint16_t *d[BATCH], *m[BATCH];
} pend;

static void pend_flush(pend *P, int group, int search)
{
    uint16_t db[BATCH], mb[BATCH];
    if (P->n == 0) return;
    if (P->n >= 8) {
        batch_tg(group, P->x, P->n, search, P->u, db, mb);
    } else {
        vbatch B;
        B.nb = P->n;
        for (int b = 0; b < P->n; b++) {
            B.n[b] = group;
            B.kk[b] = &lmp_q4_asym_avx512;
            B.xg[b] = P->x[b];
            B.ug[b] = P->u[b];
        }
        batch_avx512(&lmp_q4_asym_avx512, &B, search, db, mb);
    }
    for (int b = 0; b < P->n; b++) *P->d[b] = db[b], *P->m[b] = mb[b];
    P->n = 0;
}

void lmp_q4_asym_rows_avx512(const float *x, int nrows, int cols, int group, int search,
                             uint8_t *u, uint16_t *dbits, uint16_t *mbits)
{
    const int ng = (cols + group - 1) / group;
    if (group != 32 && group != 64 && group != 128) {
        for (int r = 0; r < nrows; r++)
            groups_avx512(x + (size_t)r * cols, cols, group, search, u + (size_t)r * cols,
                          dbits + (size_t)r * ng, mbits + (size_t)r * ng);
        return;
    }
    pend P;
    P.n = 0;
    for (int r = 0; r < nrows; r++)
        for (int g = 0; g < ng; g++) {
            size_t c0 = (size_t)r * cols + (size_t)g * group;
            int n = cols - g * group < group ? cols - g * group : group;
            uint16_t *dp = dbits + (size_t)r * ng + g, *mp = mbits + (size_t)r * ng + g;
            if (n == group) {
                P.x[P.n] = x + c0, P.u[P.n] = u + c0, P.d[P.n] = dp, P.m[P.n] = mp;
                if (++P.n == BATCH) pend_flush(&P, group, search);
                continue;
            }
            vbatch R; /* ragged row end */
            R.nb = 1;
            R.n[0] = n;
            R.kk[0] = n % 8 ? &lmp_q4_asym_ref : &lmp_q4_asym_avx512;
            R.xg[0] = x + c0;
            R.ug[0] = u + c0;
            batch_avx512(&lmp_q4_asym_avx512, &R, search, dp, mp);
        }
    pend_flush(&P, group, search);
}

/* single groups: the AVX2 kernels */
static void stats1(const float *x, int n, float out[3])
{
    lmp_q4_asym_avx2.stats(x, n, out);
}

static void cands1(const float *x, int n, float mn, float mx, int nb, int nt, const float *is,
                   float *sums)
{
    lmp_q4_asym_avx2.cands(x, n, mn, mx, nb, nt, is, sums);
}

static float eval1(const float *x, int n, float d, float m, float id, uint8_t *u, float *sums,
                   int mode)
{
    return lmp_q4_asym_avx2.eval(x, n, d, m, id, u, sums, mode);
}

const lmp_q4_asym_kern lmp_q4_asym_avx512 = {stats1,        cands1,        eval1,
                                             stats2_avx512, cands2_avx512, eval2_avx512,
                                             groups_avx512};
