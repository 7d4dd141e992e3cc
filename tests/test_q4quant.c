/* The fast ASYM quantizer (quantize/q4_quant_avx2.c, chosen at run time by
 * lmp_q4_quantize_row) against the scalar reference lmp_q4_quantize_row_ref,
 * which defines the bytes: they must be identical on every row, including
 * ragged groups, constant groups, zeros, outliers, denormals and huge
 * values. Also the fused bf16 -> f32 conversion with its finiteness flag. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpu.h"
#include "formats/dtype.h"
#include "quantize/q4.h"
#include "quantize/q4_internal.h"
#include "tests/testutil.h"

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static uint32_t rnd_u32(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 32);
}
static float rnd_unif(void) /* [-1, 1) */
{
    return (float)((double)rnd_u32() / 2147483648.0 - 1.0);
}
static float rnd_gauss(void)
{
    double u1 = ((double)rnd_u32() + 1.0) / 4294967297.0, u2 = (double)rnd_u32() / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

enum { NKIND = 14 };

/* Fill x[cols] with one of several value patterns (kind), some per group. */
static void fill(float *x, int cols, int group, int kind)
{
    float scale = ldexpf(1.0f, (int)(rnd_u32() % 40) - 30);
    for (int c = 0; c < cols; c++) {
        float g = rnd_gauss();
        switch (kind) {
        case 0: x[c] = 0.02f * g; break;
        case 1: x[c] = scale * rnd_unif(); break;
        case 2: x[c] = 0.02f * g * fabsf(g) * fabsf(g); break; /* heavy tails */
        case 3: x[c] = (c / group) % 2 ? 0.7f : -0.0f; break; /* constant groups, -0 */
        case 4: x[c] = 0.0f; break;
        case 5: x[c] = c % 37 == 5 ? 50.0f * g : 0.01f * g; break; /* outliers */
        case 6: x[c] = 1e-40f * g; break;                          /* denormals */
        case 7: x[c] = 1e-44f * (float)(rnd_u32() % 8); break;     /* tiny range */
        case 8: x[c] = 3e38f * rnd_unif(); break;                  /* range overflows */
        case 9: x[c] = c % 2 ? FLT_MAX : -FLT_MAX; break;
        case 10: x[c] = 0.25f * (float)((int)(rnd_u32() % 31) - 15); break; /* rounding ties */
        case 11: x[c] = 1000.0f + 1e-3f * g; break;                         /* offset, tiny spread */
        case 12: x[c] = nextafterf(1.0f, (float)(rnd_u32() % 2) * 2.0f); break; /* adjacent floats */
        default: x[c] = 60000.0f * rnd_unif(); break;                       /* near the fp16 limit */
        }
    }
}

START_TEST(fast_quantizer_bytes_identical_to_reference)
{
    static const int cl[] = {1, 7, 8, 31, 32, 33, 40, 64, 96, 100, 128, 172, 200, 960, 1000, 2560};
    static const int groups[] = {32, 64, 128};
    static const int schemes[] = {LMP_Q4_ASYM, LMP_Q4_SYM, LMP_Q4_Q8};
    if (!lmp_q4_simd_active())
        fprintf(stderr, "test_q4quant: CPU without AVX2/FMA/F16C, comparing scalar with itself\n");
    float *x = malloc(sizeof(float) * 2560);
    uint8_t *a = malloc(4096), *b = malloc(4096);
    ck_assert(x && a && b);
    int rows = 0;
    for (int it = 0; it < 3000; it++) {
        int cols = cl[rnd_u32() % 16], grp = groups[rnd_u32() % 3];
        int sch = it % 5 ? LMP_Q4_ASYM : schemes[rnd_u32() % 3], kind = it % NKIND;
        lmp_q4_method m = rnd_u32() % 4 ? LMP_Q4_SEARCH : LMP_Q4_MINMAX;
        fill(x, cols, grp, kind);
        size_t rb = lmp_q4_row_bytes(cols, grp, sch);
        memset(a, 0x5a, rb);
        memset(b, 0xa5, rb);
        lmp_q4_quantize_row_ref(x, cols, grp, sch, m, a);
        lmp_q4_quantize_row(x, cols, grp, sch, m, b);
        for (size_t i = 0; i < rb; i++)
            ck_assert_msg(a[i] == b[i],
                          "%s g%d cols %d kind %d %s: byte %zu of %zu: ref %02x fast %02x",
                          lmp_q4_scheme_name(sch), grp, cols, kind,
                          m == LMP_Q4_SEARCH ? "search" : "minmax", i, rb, a[i], b[i]);
        rows++;
    }
    ck_assert_int_eq(rows, 3000);
    free(x);
    free(a);
    free(b);
}
END_TEST

/* Every kernel table the machine can run (AVX2; AVX-512 pair kernels and
 * its 16-groups-per-register batch) against the reference, whatever
 * LMP_CPU selects for lmp_q4_quantize_row: rows of up to 40 groups so
 * full batches, partial batches (fewer than 8 groups: pair path), ragged
 * last groups and constant / zero groups inside a batch all occur. */
START_TEST(every_kernel_table_bytes_identical)
{
    static const int cl[] = {64, 96, 128, 200, 256, 448, 512, 960, 1000, 1024, 2048, 2560};
    static const int groups[] = {32, 64, 128};
    const lmp_q4_asym_kern *tabs[2];
    const char *names[2];
    int nt = 0;
    if (lmp_cpu_avx2()) tabs[nt] = &lmp_q4_asym_avx2, names[nt++] = "avx2";
    if (lmp_cpu_avx512()) tabs[nt] = &lmp_q4_asym_avx512, names[nt++] = "avx512";
    if (nt == 0) {
        fprintf(stderr, "test_q4quant: no SIMD kernel table on this CPU\n");
        return;
    }
    float *x = malloc(sizeof(float) * 2560);
    uint8_t *a = malloc(4096), *b = malloc(4096);
    ck_assert(x && a && b);
    for (int it = 0; it < 1500; it++) {
        int cols = cl[rnd_u32() % 12], grp = groups[rnd_u32() % 3], kind = it % NKIND;
        lmp_q4_method m = rnd_u32() % 5 ? LMP_Q4_SEARCH : LMP_Q4_MINMAX;
        fill(x, cols, grp, kind);
        if (it % 3 == 0) /* a constant group and a zero group among normal ones */
            for (int c = 0; c < cols; c++) {
                int g = c / grp;
                if (g % 5 == 1) x[c] = 0.5f;
                if (g % 7 == 2) x[c] = 0.0f;
            }
        size_t rb = lmp_q4_row_bytes(cols, grp, LMP_Q4_ASYM);
        memset(a, 0x5a, rb);
        lmp_q4_quantize_row_ref(x, cols, grp, LMP_Q4_ASYM, m, a);
        for (int k = 0; k < nt; k++) {
            memset(b, 0xa5, rb);
            lmp_q4_quantize_row_kern(x, cols, grp, LMP_Q4_ASYM, m, b, tabs[k]);
            for (size_t i = 0; i < rb; i++)
                ck_assert_msg(a[i] == b[i], "%s g%d cols %d kind %d %s: byte %zu of %zu: %02x %02x",
                              names[k], grp, cols, kind, m == LMP_Q4_SEARCH ? "search" : "minmax",
                              i, rb, a[i], b[i]);
        }
    }
    free(x);
    free(a);
    free(b);
}
END_TEST

/* The kernels themselves, bit for bit (the bytes above depend on their
 * sums only through comparisons, so a small deviation could hide there):
 * statistics, every candidate's sums, and eval in all modes, on groups of
 * every multiple of 8 up to 128. */
START_TEST(avx2_kernels_bit_identical)
{
    if (!lmp_q4_simd_active()) {
        fprintf(stderr, "test_q4quant: CPU without AVX2/FMA/F16C, AVX2 kernels not tested\n");
        return;
    }
    const lmp_q4_asym_kern *r = &lmp_q4_asym_ref, *v = &lmp_q4_asym_avx2;
    float x[128];
    for (int it = 0; it < 2000; it++) {
        int n = 8 * (1 + (int)(rnd_u32() % 16));
        fill(x, n, 64, it % NKIND);
        float sa[3], sb[3];
        r->stats(x, n, sa);
        v->stats(x, n, sb);
        ck_assert_msg(!memcmp(sa, sb, sizeof sa), "stats n %d kind %d", n, it % NKIND);
        float mn = sa[0], mx = sa[1], is[9], ca[27], cb[27];
        for (int j = 0; j < 9; j++) is[j] = (14.0f + 0.25f * (float)j) / (mx - mn);
        r->cands(x, n, mn, mx, 5, 4, is, ca);
        v->cands(x, n, mn, mx, 5, 4, is, cb);
        for (int j = 0; j < 27; j++)
            ck_assert_msg(!memcmp(&ca[j], &cb[j], 4), "cands n %d kind %d sum %d: %a vs %a", n,
                          it % NKIND, j, (double)ca[j], (double)cb[j]);
        float d = (mx - mn) / 15.0f * (0.9f + 0.2f * (float)(rnd_u32() % 8) / 8.0f), m = mn;
        for (int mode = 0; mode < 3; mode++)
            for (int useid = 0; useid < 2; useid++) {
                uint8_t ua[128], ub[128];
                float ea[3] = {0}, eb[3] = {0}, id = useid && d != 0.0f ? 1.0f / d : 0.0f;
                float ra = r->eval(x, n, d, m, id, ua, ea, mode);
                float rb = v->eval(x, n, d, m, id, ub, eb, mode);
                ck_assert_msg(!memcmp(&ra, &rb, 4) && !memcmp(ua, ub, (size_t)n) &&
                                  !memcmp(ea, eb, sizeof ea),
                              "eval n %d kind %d mode %d id %d: %a vs %a", n, it % NKIND, mode,
                              useid, (double)ra, (double)rb);
            }
    }
}
END_TEST

/* SYM / Q8 search kernels (quantize/q4_sym_avx2.c) against the scalar
 * reference table bit for bit: absmax, every candidate's sums, codes with
 * their error and least-squares refit, for every length 1..128 (ragged
 * tails), both code ranges, scales from the group and awkward ones (0,
 * subnormal, huge, negative), rows with zeros, ties, constants and a
 * non-finite value. */
static void fill_sym(float *x, int n, int kind)
{
    if (kind < NKIND) {
        fill(x, n, n, kind);
    } else if (kind == NKIND) { /* exact ties of the largest magnitude, +- */
        for (int i = 0; i < n; i++) x[i] = (float)((int)(rnd_u32() % 5) - 2);
    } else if (kind == NKIND + 1) { /* half-level ties for d = 1/4 */
        for (int i = 0; i < n; i++) x[i] = 0.125f * (float)((int)(rnd_u32() % 129) - 64);
    } else { /* one non-finite value among normal ones */
        fill(x, n, n, 0);
        x[rnd_u32() % (unsigned)n] = rnd_u32() % 2 ? NAN : -INFINITY;
    }
}

static int same_bits(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n) == 0;
}

START_TEST(sym_avx2_kernels_bit_identical)
{
    if (!lmp_cpu_avx2()) {
        fprintf(stderr, "test_q4quant: CPU without AVX2, SYM kernels not tested\n");
        return;
    }
    const lmp_q4_sym_kern *r = &lmp_q4_sym_ref, *v = &lmp_q4_sym_avx2;
    float x[128], ts[32];
    for (int it = 0; it < 6000; it++) {
        int n = 1 + (int)(rnd_u32() % 128), kind = it % (NKIND + 3);
        int q8 = it % 3 == 0, lo = q8 ? -127 : -8, hi = q8 ? 127 : 7;
        fill_sym(x, n, kind);
        float Ma = r->absmax(x, n), Mb = v->absmax(x, n);
        ck_assert_msg(same_bits(&Ma, &Mb, 4), "absmax n %d kind %d: %a vs %a", n, kind,
                      (double)Ma, (double)Mb);
        int nt = 1 + (int)(rnd_u32() % 32);
        for (int k = 0; k < nt; k++) /* levels around +-hi, some exact halves */
            ts[k] = (rnd_u32() % 2 ? 1.0f : -1.0f) * ((float)hi + 0.25f * (float)((int)(rnd_u32() % 17) - 8));
        float M = Ma != 0.0f && rnd_u32() % 4 ? Ma : 1e-3f * rnd_gauss() + 1e-30f;
        float ca[2][32], cb[2][32];
        r->cands(x, n, ts, nt, M, (float)lo, (float)hi, ca[0], ca[1]);
        for (int t = 0; t < 1 + lmp_cpu_avx512(); t++) { /* AVX2, AVX-512 candidates */
            (t ? &lmp_q4_sym_avx512 : v)->cands(x, n, ts, nt, M, (float)lo, (float)hi, cb[0], cb[1]);
            for (int k = 0; k < nt; k++)
                ck_assert_msg(same_bits(&ca[0][k], &cb[0][k], 4) &&
                                  same_bits(&ca[1][k], &cb[1][k], 4),
                              "cands %s n %d kind %d cand %d/%d: sqx %a vs %a, sqq %a vs %a",
                              t ? "avx512" : "avx2", n, kind, k, nt, (double)ca[0][k],
                              (double)cb[0][k], (double)ca[1][k], (double)cb[1][k]);
        }
        float d;
        switch (it % 6) {
        case 0: d = 0.0f; break;
        case 1: d = 1e-42f; break; /* subnormal: most codes clip */
        case 2: d = -3e38f; break;
        case 3: d = kind == NKIND + 1 ? 0.25f : Ma / -8.0f; break;
        default: d = Ma / (float)hi * (0.5f + (float)(rnd_u32() % 64) / 32.0f); break;
        }
        for (int wr = 0; wr < 2; wr++) {
            int8_t qa[128], qb[128];
            float fa = 1.5f, fb = 2.5f;
            double ea = r->codes(x, n, d, lo, hi, qa, wr ? &fa : NULL);
            double eb = v->codes(x, n, d, lo, hi, qb, wr ? &fb : NULL);
            ck_assert_msg(same_bits(&ea, &eb, 8) && same_bits(qa, qb, (size_t)n) &&
                              (!wr || same_bits(&fa, &fb, 4)),
                          "codes n %d kind %d d %a: e %a vs %a, refit %a vs %a", n, kind,
                          (double)d, ea, eb, (double)fa, (double)fb);
        }
    }
}
END_TEST

/* Codes at exact-ish half levels of a scale with a full mantissa: x / d
 * lands within an ulp of k + 0.5, where a true division and a multiply by
 * 1 / d round to different codes (a fast path must divide). */
START_TEST(sym_avx2_codes_half_levels)
{
    if (!lmp_cpu_avx2()) return;
    float x[128];
    for (int it = 0; it < 4000; it++) {
        int n = 1 + (int)(rnd_u32() % 128), q8 = it % 2, lo = q8 ? -127 : -8, hi = q8 ? 127 : 7;
        float d = ldexpf(1.0f + (float)(rnd_u32() & 0x7fffff) / 8388608.0f, (int)(rnd_u32() % 20) - 10);
        for (int i = 0; i < n; i++)
            x[i] = (float)(((double)(lo + (int)(rnd_u32() % (unsigned)(hi - lo))) + 0.5) * d);
        int8_t qa[128], qb[128];
        float fa = 1.5f, fb = 2.5f;
        double ea = lmp_q4_sym_ref.codes(x, n, d, lo, hi, qa, &fa);
        double eb = lmp_q4_sym_avx2.codes(x, n, d, lo, hi, qb, &fb);
        ck_assert_msg(same_bits(&ea, &eb, 8) && same_bits(qa, qb, (size_t)n) &&
                          same_bits(&fa, &fb, 4),
                      "half levels n %d d %a: e %a vs %a", n, (double)d, ea, eb);
    }
}
END_TEST

/* Whole SYM / Q8 rows through the AVX2 kernel table (any SIMD ASYM table
 * selects it) against the reference rows, all group sizes, ragged ends. */
START_TEST(sym_rows_bytes_identical)
{
    if (!lmp_cpu_avx2()) {
        fprintf(stderr, "test_q4quant: CPU without AVX2, SYM rows not tested\n");
        return;
    }
    static const int cl[] = {1, 5, 8, 31, 32, 33, 47, 64, 100, 128, 129, 200, 960, 1001};
    static const int groups[] = {32, 64, 128};
    float *x = malloc(sizeof(float) * 1001);
    uint8_t *a = malloc(2048), *b = malloc(2048);
    ck_assert(x && a && b);
    for (int it = 0; it < 3000; it++) {
        int cols = cl[rnd_u32() % 14], grp = groups[rnd_u32() % 3], kind = it % (NKIND + 2);
        int sch = it % 2 ? LMP_Q4_SYM : LMP_Q4_Q8;
        lmp_q4_method m = rnd_u32() % 5 ? LMP_Q4_SEARCH : LMP_Q4_MINMAX;
        fill_sym(x, cols, kind);
        if (it % 4 == 0) /* a constant group and a zero group among normal ones */
            for (int c = 0; c < cols; c++) {
                if ((c / grp) % 3 == 1) x[c] = -0.5f;
                if ((c / grp) % 4 == 2) x[c] = 0.0f;
            }
        size_t rb = lmp_q4_row_bytes(cols, grp, sch);
        memset(a, 0x5a, rb);
        memset(b, 0xa5, rb);
        lmp_q4_quantize_row_ref(x, cols, grp, sch, m, a);
        for (int t = 0; t < 1 + lmp_cpu_avx512(); t++) { /* SYM tables of AVX2, AVX-512 */
            memset(b, 0xa5, rb);
            lmp_q4_quantize_row_kern(x, cols, grp, sch, m, b,
                                     t ? &lmp_q4_asym_avx512 : &lmp_q4_asym_avx2);
            for (size_t i = 0; i < rb; i++)
                ck_assert_msg(a[i] == b[i],
                              "%s %s g%d cols %d kind %d %s: byte %zu of %zu: %02x %02x",
                              t ? "avx512" : "avx2", lmp_q4_scheme_name(sch), grp, cols, kind,
                              m == LMP_Q4_SEARCH ? "search" : "minmax", i, rb, a[i], b[i]);
        }
    }
    free(x);
    free(a);
    free(b);
}
END_TEST

/* lmp_q4_quantize_rows (several rows at once; AVX-512 batches whole
 * groups across rows) gives each row the reference's bytes. */
START_TEST(quantize_rows_bytes_identical)
{
    static const int cl[] = {32, 72, 100, 128, 200, 960, 1000, 2560};
    static const int groups[] = {32, 64, 128};
    static const int schemes[] = {LMP_Q4_ASYM, LMP_Q4_ASYM, LMP_Q4_SYM, LMP_Q4_Q8};
    float *x = malloc(sizeof(float) * 20 * 2560);
    uint8_t *a = malloc(20 * 4096), *b = malloc(20 * 4096);
    ck_assert(x && a && b);
    for (int it = 0; it < 120; it++) {
        int cols = cl[rnd_u32() % 8], grp = groups[rnd_u32() % 3], nrows = 1 + (int)(rnd_u32() % 20);
        int sch = schemes[it % 4], kind = it % NKIND;
        lmp_q4_method m = it % 6 == 5 ? LMP_Q4_MINMAX : LMP_Q4_SEARCH;
        for (int r = 0; r < nrows; r++) fill(x + (size_t)r * cols, cols, grp, (kind + r) % NKIND);
        size_t rb = lmp_q4_row_bytes(cols, grp, sch);
        memset(a, 0x5a, rb * (size_t)nrows);
        memset(b, 0xa5, rb * (size_t)nrows);
        for (int r = 0; r < nrows; r++)
            lmp_q4_quantize_row_ref(x + (size_t)r * cols, cols, grp, sch, m, a + (size_t)r * rb);
        lmp_q4_quantize_rows(x, nrows, cols, grp, sch, m, b);
        for (size_t i = 0; i < rb * (size_t)nrows; i++)
            ck_assert_msg(a[i] == b[i], "%s g%d cols %d rows %d kind %d: byte %zu: %02x %02x",
                          lmp_q4_scheme_name(sch), grp, cols, nrows, kind, i, a[i], b[i]);
    }
    free(x);
    free(a);
    free(b);
}
END_TEST

/* The AVX-512 pair kernels, bit for bit against two reference calls. */
START_TEST(avx512_pair_kernels_bit_identical)
{
    if (!lmp_cpu_avx512()) {
        fprintf(stderr, "test_q4quant: no AVX-512 (or LMP_CPU=avx2), pair kernels not tested\n");
        return;
    }
    const lmp_q4_asym_kern *r = &lmp_q4_asym_ref, *v = &lmp_q4_asym_avx512;
    float xa[128], xb[128];
    for (int it = 0; it < 1000; it++) {
        int n = 8 * (1 + (int)(rnd_u32() % 16));
        fill(xa, n, 64, it % NKIND);
        fill(xb, n, 64, (it / NKIND + it) % NKIND);
        float ra[3], rb[3], va[3], vb[3];
        r->stats(xa, n, ra);
        r->stats(xb, n, rb);
        v->stats2(xa, xb, n, va, vb);
        ck_assert_msg(!memcmp(ra, va, sizeof ra) && !memcmp(rb, vb, sizeof rb), "stats2 n %d it %d",
                      n, it);
        float mn[2] = {ra[0], rb[0]}, mx[2] = {ra[1], rb[1]}, isa[9], isb[9];
        for (int j = 0; j < 9; j++) {
            isa[j] = (14.0f + 0.25f * (float)j) / (mx[0] - mn[0]);
            isb[j] = (14.5f + 0.125f * (float)j) / (mx[1] - mn[1]);
        }
        float ca[27], cb[27], pa[27], pb[27];
        r->cands(xa, n, mn[0], mx[0], 5, 4, isa, ca);
        r->cands(xb, n, mn[1], mx[1], 5, 4, isb, cb);
        v->cands2(xa, xb, n, mn, mx, 5, 4, isa, isb, pa, pb);
        ck_assert_msg(!memcmp(ca, pa, sizeof ca) && !memcmp(cb, pb, sizeof cb), "cands2 n %d it %d",
                      n, it);
        float d[2], m[2] = {mn[0], mn[1]};
        for (int k = 0; k < 2; k++) {
            d[k] = (mx[k] - mn[k]) / 15.0f * (0.9f + 0.2f * (float)(rnd_u32() % 8) / 8.0f);
            if (d[k] == 0.0f) d[k] = 1.0f; /* eval2 needs d != 0 */
        }
        for (int mode = 0; mode < 3; mode++)
            for (int useid = 0; useid < 2; useid++) {
                uint8_t ua[128], ub[128], qa[128], qb[128];
                float id[2] = {useid ? 1.0f / d[0] : 0.0f, useid ? 1.0f / d[1] : 0.0f};
                if ((id[0] == 0.0f) != (id[1] == 0.0f)) continue; /* d = inf: not for eval2 */
                float sa[3] = {0}, sb[3] = {0}, ta[3] = {0}, tb[3] = {0}, e[2];
                float ea = r->eval(xa, n, d[0], m[0], id[0], ua, sa, mode);
                float eb = r->eval(xb, n, d[1], m[1], id[1], ub, sb, mode);
                v->eval2(xa, xb, n, d, m, id, qa, qb, ta, tb, mode, e);
                ck_assert_msg(!memcmp(&ea, &e[0], 4) && !memcmp(&eb, &e[1], 4) &&
                                  !memcmp(ua, qa, (size_t)n) && !memcmp(ub, qb, (size_t)n) &&
                                  !memcmp(sa, ta, sizeof sa) && !memcmp(sb, tb, sizeof sb),
                              "eval2 n %d it %d mode %d id %d", n, it, mode, useid);
            }
    }
}
END_TEST

/* The search's result is never worse than min-max on any group, also on
 * the awkward patterns (errors measured in double from the stored bytes;
 * the quantizer compares float sums, hence the 1e-6 relative slack). */
START_TEST(search_never_worse_on_awkward_rows)
{
    float x[960], y[960];
    uint8_t q[1024];
    for (int kind = 0; kind < NKIND; kind++) {
        for (int gi = 0; gi < 3; gi++) {
            int grp = 32 << gi;
            fill(x, 960, grp, kind);
            for (int c0 = 0; c0 < 960; c0 += grp) { /* g128: the last group has 64 */
                int n = 960 - c0 < grp ? 960 - c0 : grp;
                double e[2];
                for (int m = 0; m < 2; m++) {
                    lmp_q4_quantize_row(x + c0, n, grp, LMP_Q4_ASYM, (lmp_q4_method)m, q);
                    lmp_q4_dequantize_row(q, n, grp, LMP_Q4_ASYM, y);
                    e[m] = 0;
                    for (int i = 0; i < n; i++)
                        e[m] += ((double)x[c0 + i] - y[i]) * ((double)x[c0 + i] - y[i]);
                }
                ck_assert_msg(e[1] <= e[0] * (1 + 1e-6), "kind %d g%d col %d: search %g > minmax %g",
                              kind, grp, c0, e[1], e[0]);
            }
        }
    }
}
END_TEST

/* Every bf16 bit pattern: the value is the pattern shifted left by 16, and
 * the flag says whether the exponent bits 0x7f80 are not all set. Also the
 * position of a non-finite value (vector body or scalar tail). */
START_TEST(bf16_to_f32_finite_all_patterns)
{
    enum { N = 65536 };
    uint8_t *src = malloc(2 * N);
    float *dst = malloc(sizeof(float) * N);
    ck_assert(src && dst);
    for (int i = 0; i < N; i++) {
        src[2 * i] = (uint8_t)(i & 0xff);
        src[2 * i + 1] = (uint8_t)(i >> 8);
    }
    ck_assert_int_eq(lmp_to_f32_finite(LMP_DT_BF16, src, dst, N), 0);
    for (int i = 0; i < N; i++) {
        uint32_t u, want = (uint32_t)i << 16;
        memcpy(&u, &dst[i], 4);
        ck_assert_msg(u == want, "bf16 %04x -> %08x, want %08x", i, u, want);
    }
    /* finite patterns only: flag 1; one NaN / inf at each position of a
     * 21-element row (body 0..15, tail 16..20): flag 0 */
    for (int n = 1; n <= 21; n++) {
        for (int i = 0; i < n; i++) {
            src[2 * i] = 0x80;
            src[2 * i + 1] = (uint8_t)(i % 2 ? 0x3f : 0xbf); /* +-1.0 */
        }
        ck_assert_int_eq(lmp_to_f32_finite(LMP_DT_BF16, src, dst, (size_t)n), 1);
        for (int bad = 0; bad < n; bad++) {
            uint8_t lo = src[2 * bad], hi = src[2 * bad + 1];
            src[2 * bad] = bad % 2 ? 0x80 : 0xc1; /* inf or NaN */
            src[2 * bad + 1] = 0x7f;
            ck_assert_msg(lmp_to_f32_finite(LMP_DT_BF16, src, dst, (size_t)n) == 0,
                          "n %d bad %d not flagged", n, bad);
            src[2 * bad] = lo;
            src[2 * bad + 1] = hi;
        }
    }
    /* f32 / f16 go through lmp_to_f32 plus a check */
    float f[3] = {1.0f, -2.0f, 0.5f};
    ck_assert_int_eq(lmp_to_f32_finite(LMP_DT_F32, f, dst, 3), 1);
    f[1] = INFINITY;
    ck_assert_int_eq(lmp_to_f32_finite(LMP_DT_F32, f, dst, 3), 0);
    uint8_t h[4] = {0x00, 0x3c, 0x00, 0x7e}; /* 1.0, NaN */
    ck_assert_int_eq(lmp_to_f32_finite(LMP_DT_F16, h, dst, 1), 1);
    ck_assert_int_eq(lmp_to_f32_finite(LMP_DT_F16, h, dst, 2), 0);
    free(src);
    free(dst);
}
END_TEST

Suite *lmp_suite_q4quant(void)
{
    Suite *s = suite_create("q4quant");
    TCase *tc = tcase_create("quantizer");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fast_quantizer_bytes_identical_to_reference);
    tcase_add_test(tc, avx2_kernels_bit_identical);
    tcase_add_test(tc, sym_avx2_kernels_bit_identical);
    tcase_add_test(tc, sym_rows_bytes_identical);
    tcase_add_test(tc, sym_avx2_codes_half_levels);
    tcase_add_test(tc, every_kernel_table_bytes_identical);
    tcase_add_test(tc, avx512_pair_kernels_bit_identical);
    tcase_add_test(tc, quantize_rows_bytes_identical);
    tcase_add_test(tc, search_never_worse_on_awkward_rows);
    tcase_add_test(tc, bf16_to_f32_finite_all_patterns);
    suite_add_tcase(s, tc);
    return s;
}
