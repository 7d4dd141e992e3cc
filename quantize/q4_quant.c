/* ASYM group quantizer: the reference kernels (scalar, the definition of
 * the bytes) and the group algorithm shared by every kernel table. The
 * lane / order rules the kernels follow are in q4_internal.h; the
 * algorithm is described in docs/QUANT.md ("Quantizer"). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "formats/dtype.h"
#include "quantize/q4_internal.h"

#define LN 8

static inline float lane_sum(const float a[LN])
{
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

static inline float sel_min(float a, float b)
{
    return a < b ? a : b;
}

static inline float sel_max(float a, float b)
{
    return a > b ? a : b;
}

static void stats_ref(const float *x, int n, float out[3])
{
    float mn[LN], mx[LN], s[LN] = {0};
    for (int l = 0; l < LN; l++) mn[l] = mx[l] = x[0];
    for (int i = 0; i < n; i++) {
        int l = i & (LN - 1);
        mn[l] = sel_min(mn[l], x[i]);
        mx[l] = sel_max(mx[l], x[i]);
        s[l] += x[i];
    }
    float a4[4], b4[4];
    for (int l = 0; l < 4; l++) {
        a4[l] = sel_min(mn[l], mn[l + 4]);
        b4[l] = sel_max(mx[l], mx[l + 4]);
    }
    for (int l = 0; l < 2; l++) {
        a4[l] = sel_min(a4[l], a4[l + 2]);
        b4[l] = sel_max(b4[l], b4[l + 2]);
    }
    out[0] = sel_min(a4[0], a4[1]);
    out[1] = sel_max(b4[0], b4[1]);
    out[2] = lane_sum(s);
}

static void cands_ref(const float *x, int n, float mn, float mx, int nb, int nt,
                      const float *is, float *sums)
{
    const float lo = LMP_Q4_MAGIC, hi = LMP_Q4_MAGIC + 15.0f;
    for (int j = 0; j < nb + nt; j++) {
        float a[LN] = {0}, b[LN] = {0}, c[LN] = {0};
        const int top = j >= nb;
        const float base = top ? mx : mn, add = top ? hi : lo;
        for (int i = 0; i < n; i++) {
            int l = i & (LN - 1);
            float v = fmaf(x[i] - base, is[j], add);
            v = top ? sel_max(v, lo) : sel_min(v, hi); /* x - mn >= 0, x - mx <= 0 */
            float u = v - lo;
            a[l] += u;
            b[l] = fmaf(u, u, b[l]);
            c[l] = fmaf(u, x[i], c[l]);
        }
        sums[3 * j] = lane_sum(a);
        sums[3 * j + 1] = lane_sum(b);
        sums[3 * j + 2] = lane_sum(c);
    }
}

static float eval_ref(const float *x, int n, float d, float m, float id, uint8_t *u, float *sums,
                      int mode)
{
    float a[LN] = {0}, b[LN] = {0}, c[LN] = {0}, e[LN] = {0};
    for (int i = 0; i < n; i++) {
        float q = 0.0f;
        if (d != 0.0f) {
            float v = id == 0.0f ? (x[i] - m) / d : (x[i] - m) * id;
            v = sel_max(v, 0.0f);
            v = sel_min(v, 15.0f);
            q = (v + LMP_Q4_MAGIC) - LMP_Q4_MAGIC;
        }
        u[i] = (uint8_t)q;
        if (mode) {
            int l = i & (LN - 1);
            float r = x[i] - fmaf(d, q, m);
            e[l] = fmaf(r, r, e[l]);
            a[l] += q;
            b[l] = fmaf(q, q, b[l]);
            c[l] = fmaf(q, x[i], c[l]);
        }
    }
    if (!mode) return 0.0f;
    if (mode < 2) return lane_sum(e);
    sums[0] = lane_sum(a);
    sums[1] = lane_sum(b);
    sums[2] = lane_sum(c);
    return lane_sum(e);
}

const lmp_q4_asym_kern lmp_q4_asym_ref = {stats_ref, cands_ref, eval_ref, NULL, NULL, NULL, NULL};

/* The fp16 value nearest to v (overflow clamped to +-65504), as float;
 * the normal range inline (the same bits as lmp_f32_to_f16 /
 * lmp_f16_to_f32: drop 13 bits with round-to-nearest-even, rebias), the
 * rest through formats/dtype.c. */
static inline float h16(float v, uint16_t *bits)
{
    if (v > 65504.0f) v = 65504.0f;
    if (v < -65504.0f) v = -65504.0f;
    uint32_t u;
    memcpy(&u, &v, 4);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x38800000u && a <= 0x477fe000u) { /* 2^-14 .. 65504 */
        uint32_t r = a - (112u << 23);
        r += 0xfffu + ((r >> 13) & 1u);
        uint16_t h = (uint16_t)(((u >> 16) & 0x8000u) | (r >> 13));
        *bits = h;
        uint32_t o = ((uint32_t)(h & 0x8000u) << 16) | ((((uint32_t)h & 0x7fffu) << 13) + (112u << 23));
        float f;
        memcpy(&f, &o, 4);
        return f;
    }
    uint16_t h = lmp_f32_to_f16(v);
    *bits = h;
    return lmp_f16_to_f32(h);
}

/* Candidate grid: the range [min, max] stretched over 15 + t code levels,
 * anchored at the bottom (base = min; t > 0 clips the top, t < 0 leaves
 * top levels unused) or at the top (base = max). t = 0 once: both anchors
 * give the same codes. Chosen by measurement (docs/QUANT.md): on
 * stories260k's weights the winners of a wide grid (t = -2 ... 3, both
 * anchors) were t in [-1, 1] in 96 % of the groups, and these 5 candidates
 * plus the refinement keep the weight error within ~1 % of the old
 * 26-candidate search at a fifth of its cost. */
static const float k_tb[LMP_Q4_ASYM_NB] = LMP_Q4_ASYM_TB;
static const float k_tt[LMP_Q4_ASYM_NT] = LMP_Q4_ASYM_TT;
#define NB LMP_Q4_ASYM_NB
#define NTT LMP_Q4_ASYM_NT
#define NREFINE LMP_Q4_ASYM_NREFINE

/* Least-squares (d, m) for fixed codes from their sums (double). */
static void ls_fit(int n, double inv_n, double su, double suu, double sux, double sx, float *d,
                   float *m)
{
    double det = n * suu - su * su;
    if (!(det > 0)) { /* all codes equal: d = 0, m = mean */
        *d = 0.0f;
        *m = (float)(sx * inv_n);
        return;
    }
    double dd = (n * sux - su * sx) / det;
    *d = (float)dd;
    *m = (float)((sx - dd * su) * inv_n);
}

/* Groups are processed in batches, phase by phase (statistics, min-max
 * codes, candidates, selection, refinement rounds): every group's
 * arithmetic is exactly what it would be alone, but the independent
 * groups of a phase overlap in the CPU instead of waiting on one group's
 * chain of divisions and reductions. */
#define BATCH 16

void lmp_q4_asym_groups(const lmp_q4_asym_kern *k, const float *x, int cols, int group,
                        int search, uint8_t *u, uint16_t *dbits, uint16_t *mbits)
{
    if (k->groups) {
        k->groups(x, cols, group, search, u, dbits, mbits);
        return;
    }
    const int ng = (cols + group - 1) / group, nc = NB + NTT;
    for (int g0 = 0; g0 < ng; g0 += BATCH) {
        const int nb = ng - g0 < BATCH ? ng - g0 : BATCH;
        const lmp_q4_asym_kern *kk[BATCH];
        const float *xg[BATCH];
        int n[BATCH], active[BATCH];
        float st[BATCH][3], best[BATCH], cd[BATCH], cm[BATCH], pd[BATCH], pm[BATCH];
        float cs[BATCH][3 * (NB + NTT)];
        double inv_n[BATCH];
        for (int b = 0; b < nb; b++) { /* statistics, min-max codes */
            int g = g0 + b, c0 = g * group;
            n[b] = cols - c0 < group ? cols - c0 : group;
            kk[b] = n[b] % 8 ? &lmp_q4_asym_ref : k;
            xg[b] = x + c0;
            kk[b]->stats(xg[b], n[b], st[b]);
            float mn = st[b][0], mx = st[b][1];
            float m = h16(mn, &mbits[g]);
            float d = h16((mx - mn) / 15.0f, &dbits[g]);
            best[b] = kk[b]->eval(xg[b], n[b], d, m, 0.0f, u + c0, NULL, search);
            active[b] = search && best[b] != 0.0f && mx != mn;
        }
        for (int b = 0; b < nb; b++) { /* candidates */
            if (!active[b]) continue;
            float mn = st[b][0], mx = st[b][1], range = mx - mn, is[NB + NTT];
            for (int j = 0; j < NB; j++) is[j] = (15.0f + k_tb[j]) / range;
            for (int j = 0; j < NTT; j++) is[NB + j] = (15.0f + k_tt[j]) / range;
            kk[b]->cands(xg[b], n[b], mn, mx, NB, NTT, is, cs[b]);
        }
        /* Each candidate's codes get their LS (d, m); its squared error is
         * sum x^2 - sx^2/n - t^2 / (n det) with t = n sux - su sx and
         * det = n suu - su^2 (the residual is orthogonal to the codes and
         * to 1): the best candidate maximizes t^2 / det (first on ties). */
        for (int b = 0; b < nb; b++) {
            if (!active[b]) continue;
            double r[NB + NTT], sx = st[b][2], nn = n[b];
            inv_n[b] = 1.0 / nn;
            for (int j = 0; j < nc; j++) {
                double su = cs[b][3 * j], suu = cs[b][3 * j + 1], sux = cs[b][3 * j + 2];
                double det = nn * suu - su * su, t = nn * sux - su * sx;
                r[j] = det > 0 ? t * t / det : -1.0; /* NaN never wins below */
            }
            int bj = -1;
            double br = -1.0;
            for (int j = 0; j < nc; j++)
                if (r[j] > br) {
                    bj = j;
                    br = r[j];
                }
            if (bj < 0) {
                active[b] = 0;
                continue;
            }
            double su = cs[b][3 * bj], suu = cs[b][3 * bj + 1], sux = cs[b][3 * bj + 2];
            double dd = (nn * sux - su * sx) / (nn * suu - su * su);
            cd[b] = (float)dd;
            cm[b] = (float)((sx - dd * su) * inv_n[b]);
            pd[b] = pm[b] = NAN;
        }
        /* refine with the stored precision: fp16 d, m -> nearest codes ->
         * LS refit, keeping the best actual error (never worse than
         * min-max); a group stops when its (d, m) repeat */
        for (int it = 0; it < NREFINE; it++) {
            const int last = it == NREFINE - 1;
            for (int b = 0; b < nb; b++) {
                if (!active[b]) continue;
                int g = g0 + b;
                uint16_t db, mb;
                uint8_t ct[128];
                float s[3];
                float d16 = h16(cd[b], &db), m16 = h16(cm[b], &mb);
                if (d16 == pd[b] && m16 == pm[b]) {
                    active[b] = 0;
                    continue;
                }
                pd[b] = d16;
                pm[b] = m16;
                float e = kk[b]->eval(xg[b], n[b], d16, m16, d16 != 0.0f ? 1.0f / d16 : 0.0f, ct,
                                      s, last ? 1 : 2);
                if (e < best[b]) {
                    best[b] = e;
                    dbits[g] = db;
                    mbits[g] = mb;
                    memcpy(u + (size_t)g * group, ct, (size_t)n[b]);
                }
                if (!last) ls_fit(n[b], inv_n[b], s[0], s[1], s[2], st[b][2], &cd[b], &cm[b]);
            }
        }
    }
}
