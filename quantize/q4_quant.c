/* ASYM group quantizer: the reference kernels (scalar, the definition of
 * the bytes) and the group algorithm shared by every kernel table. The
 * lane / order rules the kernels follow are in q4_internal.h; the
 * algorithm is described in docs/QUANT.md ("Quantizer"). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/dtype.h"
#include "quantize/q4_internal.h"

#define LN 8

static inline float lane_sum(const float a[LN])
{
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
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

static void cands_ref(const float *x, int n, float mn, float mx, int k, const float *is,
                      float *sums)
{
    const float lo = LMP_Q4_MAGIC, hi = LMP_Q4_MAGIC + 15.0f;
    for (int j = 0; j < k; j++)
        for (int top = 0; top < 2; top++) {
            float a[LN] = {0}, b[LN] = {0}, c[LN] = {0};
            const float base = top ? mx : mn, add = top ? hi : lo;
            for (int i = 0; i < n; i++) {
                int l = i & (LN - 1);
                float v = fmaf(x[i] - base, is[j], add);
                v = sel_max(v, lo);
                v = sel_min(v, hi);
                float u = v - lo;
                a[l] += u;
                b[l] = fmaf(u, u, b[l]);
                c[l] = fmaf(u, x[i], c[l]);
            }
            float *o = sums + 6 * j + 3 * top;
            o[0] = lane_sum(a);
            o[1] = lane_sum(b);
            o[2] = lane_sum(c);
        }
}

static float eval_ref(const float *x, int n, float d, float m, uint8_t *u, float *sums)
{
    float a[LN] = {0}, b[LN] = {0}, c[LN] = {0}, e[LN] = {0};
    for (int i = 0; i < n; i++) {
        float q = 0.0f;
        if (d != 0.0f) {
            float v = (x[i] - m) / d;
            v = sel_max(v, 0.0f);
            v = sel_min(v, 15.0f);
            q = (v + LMP_Q4_MAGIC) - LMP_Q4_MAGIC;
        }
        u[i] = (uint8_t)q;
        if (sums) {
            int l = i & (LN - 1);
            float r = x[i] - fmaf(d, q, m);
            e[l] = fmaf(r, r, e[l]);
            a[l] += q;
            b[l] = fmaf(q, q, b[l]);
            c[l] = fmaf(q, x[i], c[l]);
        }
    }
    if (!sums) return 0.0f;
    sums[0] = lane_sum(a);
    sums[1] = lane_sum(b);
    sums[2] = lane_sum(c);
    return lane_sum(e);
}

const lmp_q4_asym_kern lmp_q4_asym_ref = {stats_ref, cands_ref, eval_ref};

/* The fp16 value nearest to v (overflow clamped to +-65504), as float. */
static float h16(float v, uint16_t *bits)
{
    if (v > 65504.0f) v = 65504.0f;
    if (v < -65504.0f) v = -65504.0f;
    uint16_t h = lmp_f32_to_f16(v);
    *bits = h;
    return lmp_f16_to_f32(h);
}

/* Candidate grid: the range [min, max] stretched over 15 + t code levels,
 * anchored at the bottom (base = min, t > 0 clips the top) and at the top
 * (base = max, t > 0 clips the bottom). */
static float k_t[16] = {-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f};
static int NT = 6, NREFINE = 3, k_init;
static void exp_init(void)
{
    const char *e = getenv("LMP_QEXP");
    k_init = 1;
    if (!e) return;
    char *end;
    NREFINE = (int)strtol(e, &end, 10);
    NT = 0;
    while (*end == ',') k_t[NT++] = strtof(end + 1, &end);
}

/* Least-squares (d, m) for fixed codes from their sums (double). */
static void ls_fit(int n, double su, double suu, double sux, double sx, float *d, float *m)
{
    double det = n * suu - su * su;
    if (det <= 0) { /* all codes equal: d = 0, m = mean */
        *d = 0.0f;
        *m = (float)(sx / n);
        return;
    }
    double dd = (n * sux - su * sx) / det;
    *d = (float)dd;
    *m = (float)((sx - dd * su) / n);
}

void lmp_q4_asym_group(const lmp_q4_asym_kern *k, const float *x, int n, int search, uint8_t *u,
                       uint16_t *dbits, uint16_t *mbits)
{
    uint8_t ct[128];
    float st[3], s[3];
    if (!k_init) exp_init();
    k->stats(x, n, st);
    float mn = st[0], mx = st[1], sx = st[2];
    float m = h16(mn, mbits);
    float d = h16((mx - mn) / 15.0f, dbits);
    float best = k->eval(x, n, d, m, u, search ? s : NULL);
    if (search && best != 0.0f && mx != mn) {
        float range = mx - mn, is[16], cs[96];
        for (int j = 0; j < NT; j++) is[j] = (15.0f + k_t[j]) / range;
        k->cands(x, n, mn, mx, NT, is, cs);
        /* Each candidate's codes get their LS (d, m); its squared error is
         * sum x^2 - sx^2/n - t^2 / (n det) with t = n sux - su sx and
         * det = n suu - su^2 (the residual is orthogonal to the codes and to
         * 1), so the best candidate maximizes t^2 / det: compared by cross
         * multiplication, one division for the winner only. */
        int bj = -1;
        double bt = 0, bdet = 1;
        for (int j = 0; j < 2 * NT; j++) {
            double su = cs[3 * j], suu = cs[3 * j + 1], sux = cs[3 * j + 2];
            double det = n * suu - su * su, t = n * sux - su * sx;
            if (!(det > 0) || !(fabs(t) <= 1e150)) continue;
            if (bj < 0 || t * t * bdet > bt * bt * det) {
                bj = j;
                bt = t;
                bdet = det;
            }
        }
        float cd = 0.0f, cm = 0.0f;
        if (bj >= 0) {
            double dd = bt / bdet;
            cd = (float)dd;
            cm = (float)((sx - dd * cs[3 * bj]) / n);
        }
        /* refine with the stored precision: fp16 d, m -> nearest codes ->
         * LS refit, keeping the best actual error (never worse than min-max) */
        float pd = NAN, pm = NAN;
        for (int it = 0; it < NREFINE && bj >= 0; it++) {
            uint16_t db, mb;
            float d16 = h16(cd, &db), m16 = h16(cm, &mb);
            if (d16 == pd && m16 == pm) break;
            pd = d16;
            pm = m16;
            float e = k->eval(x, n, d16, m16, ct, s);
            if (e < best) {
                best = e;
                *dbits = db;
                *mbits = mb;
                memcpy(u, ct, (size_t)n);
            }
            ls_fit(n, s[0], s[1], s[2], sx, &cd, &cm);
        }
    }
}
