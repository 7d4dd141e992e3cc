/* formats/dtype: names, sizes and the float conversions.
 *
 * Expectations come from the IEEE 754 definitions, computed independently
 * here: f16/bf16 values with ldexp from their fields, f32 -> f16 by searching
 * the sorted table of f16 values for the nearest one (ties to even), and
 * hand-worked rounding cases. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/dtype.h"

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE binary16: sign, 5-bit exponent (bias 15), 10-bit fraction. */
static double ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -24);
    else v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* bfloat16: sign, 8-bit exponent (bias 127), 7-bit fraction. */
static double ref_bf16(uint16_t b)
{
    int s = b >> 15, e = (b >> 7) & 255, m = b & 127;
    double v;
    if (e == 255) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -133);
    else v = ldexp(128 + m, e - 134);
    return s ? -v : v;
}

START_TEST(names_and_sizes)
{
    /* sizes from the safetensors spec */
    static const struct { const char *n; size_t sz; } want[] = {
        {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I8", 1}, {"U8", 1}, {"I16", 2}, {"U16", 2},
        {"I32", 4}, {"U32", 4}, {"I64", 8}, {"U64", 8}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    ck_assert_int_eq(sizeof want / sizeof want[0], LMP_DT_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int t = lmp_dtype_from_name(want[i].n);
        ck_assert_int_ge(t, 0);
        ck_assert_str_eq(lmp_dtype_name((lmp_dtype)t), want[i].n);
        ck_assert_uint_eq(lmp_dtype_size((lmp_dtype)t), want[i].sz);
    }
    ck_assert_int_eq(lmp_dtype_from_name("f32"), -1);
    ck_assert_int_eq(lmp_dtype_from_name(""), -1);
    ck_assert_int_eq(lmp_dtype_from_name("F4"), -1);
    ck_assert_int_eq(lmp_dtype_from_name(NULL), -1);
    ck_assert_int_eq(lmp_dtype_from_name("BF16"), LMP_DT_BF16);
}
END_TEST

START_TEST(f16_all_patterns)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float got = lmp_f16_to_f32((uint16_t)h);
        double want = ref_f16((uint16_t)h);
        if (isnan(want)) {
            ck_assert_msg(isnan(got), "f16 %04x should be NaN", h);
            ck_assert_int_eq(signbit(got) != 0, (h >> 15) != 0);
            ck_assert_msg((fbits(got) & 0x007fe000u) >> 13 == ((h & 0x3ff) | 0x200),
                          "f16 %04x NaN payload", h);
        } else {
            ck_assert_msg(fbits(got) == fbits((float)want), "f16 %04x -> %a, want %a", h, (double)got, want);
        }
    }
}
END_TEST

START_TEST(bf16_all_patterns)
{
    for (uint32_t b = 0; b < 65536; b++) {
        float got = lmp_bf16_to_f32((uint16_t)b);
        double want = ref_bf16((uint16_t)b);
        if (isnan(want))
            ck_assert_msg(isnan(got), "bf16 %04x should be NaN", b);
        else
            ck_assert_msg(fbits(got) == fbits((float)want), "bf16 %04x -> %a, want %a", b, (double)got, want);
    }
}
END_TEST

START_TEST(roundtrip_all_patterns)
{
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t r = lmp_f32_to_f16(lmp_f16_to_f32((uint16_t)h));
        uint16_t rb = lmp_f32_to_bf16(lmp_bf16_to_f32((uint16_t)h));
        if (isnan(ref_f16((uint16_t)h)))
            ck_assert(isnan(ref_f16(r)) && (r >> 15) == (h >> 15));
        else
            ck_assert_msg(r == h, "f16 %04x round trip gave %04x", h, r);
        if (isnan(ref_bf16((uint16_t)h)))
            ck_assert(isnan(ref_bf16(rb)) && (rb >> 15) == (h >> 15));
        else
            ck_assert_msg(rb == h, "bf16 %04x round trip gave %04x", h, rb);
    }
}
END_TEST

/* Hand-worked f32 -> f16 cases (round to nearest, ties to even). */
START_TEST(f16_rounding_cases)
{
    static const struct { double x; uint16_t h; } c[] = {
        {1.0, 0x3c00},
        {1.0 + 0x1p-11, 0x3c00},            /* halfway 1 / 1+2^-10: even is 1 */
        {1.0 + 3 * 0x1p-11, 0x3c02},        /* halfway 1+2^-10 / 1+2^-9: even is ...02 */
        {1.0 + 0x1p-11 + 0x1p-20, 0x3c01}, /* just above halfway */
        {1.0 + 0x1p-11 - 0x1p-23, 0x3c00}, /* just below halfway */
        {65504.0, 0x7bff},                  /* largest finite */
        {65519.0, 0x7bff},                  /* below the 65520 midpoint */
        {65520.0, 0x7c00},                  /* midpoint to 65536: even (inf) */
        {1e6, 0x7c00},
        {0x1p-14, 0x0400},                  /* smallest normal */
        {0x1p-24, 0x0001},                  /* smallest subnormal */
        {0x1p-25, 0x0000},                  /* halfway 0 / 2^-24: even is 0 */
        {0x1p-25 + 0x1p-40, 0x0001},
        {3 * 0x1p-25, 0x0002},              /* halfway 1 / 2 ulps: even is 2 */
        {1023.5 * 0x1p-24, 0x0400},         /* halfway 0x3ff / 0x400: even 0x400 */
        {1022.5 * 0x1p-24, 0x03fe},         /* halfway 0x3fe / 0x3ff: even 0x3fe */
        {0x1p-34, 0x0000},
        {-2.0, 0xc000},
        {-0.0, 0x8000},
        {0.333251953125, 0x3555},           /* exactly representable */
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        ck_assert_msg((double)(float)c[i].x == c[i].x, "case %zu not a float", i);
        ck_assert_msg(lmp_f32_to_f16((float)c[i].x) == c[i].h, "case %zu: %a -> %04x, want %04x", i, c[i].x,
                      lmp_f32_to_f16((float)c[i].x), c[i].h);
    }
    ck_assert_uint_eq(lmp_f32_to_f16(INFINITY), 0x7c00);
    ck_assert_uint_eq(lmp_f32_to_f16(-INFINITY), 0xfc00);
    ck_assert_uint_eq(lmp_f32_to_f16(0x1p-149f), 0x0000); /* f32 subnormal */
    uint16_t n = lmp_f32_to_f16(NAN);
    ck_assert(isnan(ref_f16(n)));
    ck_assert(n & 0x0200); /* quiet */
    n = lmp_f32_to_f16(bitsf(0xff800001u)); /* negative signalling NaN, payload only in low bits */
    ck_assert(isnan(ref_f16(n)) && (n & 0x8000) && (n & 0x0200));
}
END_TEST

START_TEST(bf16_rounding_cases)
{
    static const struct { uint32_t f; uint16_t b; } c[] = {
        {0x3f800000u, 0x3f80},            /* 1.0 */
        {0x3f808000u, 0x3f80},            /* 1+2^-8: halfway, even is 3f80 */
        {0x3f818000u, 0x3f82},            /* 1+3*2^-8: halfway, even is 3f82 */
        {0x3f808001u, 0x3f81},            /* just above halfway */
        {0x3f807fffu, 0x3f80},            /* just below halfway */
        {0x7f7fffffu, 0x7f80},            /* FLT_MAX: beyond the last midpoint -> inf */
        {0x7f7f7fffu, 0x7f7f},            /* just below the midpoint to inf */
        {0x7f7f8000u, 0x7f80},            /* midpoint, 7f7f odd -> 7f80 (inf) */
        {0x00008000u, 0x0000},            /* subnormal halfway, even 0 */
        {0x00018000u, 0x0002},            /* subnormal halfway, even 2 */
        {0x80000000u, 0x8000},            /* -0 */
        {0xff800000u, 0xff80},            /* -inf */
        {0xc0490fdbu, 0xc049},            /* -pi: below halfway */
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        ck_assert_msg(lmp_f32_to_bf16(bitsf(c[i].f)) == c[i].b, "case %zu: %08x -> %04x, want %04x", i, c[i].f,
                      lmp_f32_to_bf16(bitsf(c[i].f)), c[i].b);
    /* NaN whose payload lives only in the dropped bits must stay NaN */
    uint16_t n = lmp_f32_to_bf16(bitsf(0x7f800001u));
    ck_assert(isnan(ref_bf16(n)));
    n = lmp_f32_to_bf16(bitsf(0xffc00000u));
    ck_assert(isnan(ref_bf16(n)) && (n & 0x8000));
}
END_TEST

/* Independent f32 -> f16: nearest value in the table of non-negative f16
 * values (monotonic in their bit patterns), ties to the even pattern. */
static uint16_t ref_to_f16(float x)
{
    double a = fabs((double)x);
    uint16_t s = signbit(x) ? 0x8000 : 0;
    if (a >= 65520.0) return s | 0x7c00;
    unsigned lo = 0, hi = 0x7bff; /* find largest pattern with value <= a */
    while (lo < hi) {
        unsigned mid = (lo + hi + 1) / 2;
        if (ref_f16((uint16_t)mid) <= a) lo = mid;
        else hi = mid - 1;
    }
    if (lo == 0x7bff) return s | 0x7bff;
    double dl = a - ref_f16((uint16_t)lo), du = ref_f16((uint16_t)(lo + 1)) - a;
    unsigned r = dl < du ? lo : du < dl ? lo + 1 : (lo & 1 ? lo + 1 : lo);
    return (uint16_t)(s | r);
}

START_TEST(f16_random_vs_reference)
{
    uint64_t z = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 300000; i++) {
        z ^= z << 13;
        z ^= z >> 7;
        z ^= z << 17;
        /* exponents mostly in and around the f16 range */
        uint32_t u = (uint32_t)z;
        uint32_t e = 96 + (uint32_t)((z >> 32) % 50); /* 2^-31 .. 2^18 */
        u = (u & 0x807fffffu) | e << 23;
        float f = bitsf(u);
        ck_assert_msg(lmp_f32_to_f16(f) == ref_to_f16(f), "%a -> %04x, want %04x", (double)f,
                      lmp_f32_to_f16(f), ref_to_f16(f));
    }
}
END_TEST

/* lmp_f32_to_f16_n (F16C where present) against the scalar lmp_f32_to_f16,
 * bit for bit: every sign, every exponent, every top-10 fraction pattern,
 * each with the low 13 bits that decide the rounding (0, 1, just below /
 * at / above the half, all ones) and one pseudo-random; NaN payloads,
 * infinities, subnormal results and overflow come with the exponents.
 * Lengths that are not a multiple of 8 exercise the tail. */
START_TEST(f32_to_f16_bulk_matches_scalar)
{
    static const uint32_t lows[] = {0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, 0};
    const size_t nl = sizeof lows / sizeof *lows;
    const size_t n = 2u * 256u * 1024u * nl;
    float *src = malloc(n * sizeof *src);
    uint16_t *got = malloc(n * sizeof *got);
    uint64_t z = 0x2545f4914f6cdd1dull;
    size_t k = 0;
    for (uint32_t sg = 0; sg < 2; sg++)
        for (uint32_t e = 0; e < 256; e++)
            for (uint32_t hi = 0; hi < 1024; hi++)
                for (size_t l = 0; l < nl; l++) {
                    z ^= z << 13;
                    z ^= z >> 7;
                    z ^= z << 17;
                    uint32_t lo = l + 1 == nl ? (uint32_t)z & 0x1fffu : lows[l];
                    src[k++] = bitsf(sg << 31 | e << 23 | hi << 13 | lo);
                }
    for (size_t m = n - 5; m <= n; m += 5) { /* a ragged tail, then all */
        memset(got, 0, n * sizeof *got);
        lmp_f32_to_f16_n(src, got, m);
        for (size_t i = 0; i < m; i++)
            ck_assert_msg(got[i] == lmp_f32_to_f16(src[i]), "%08x -> %04x, scalar %04x",
                          fbits(src[i]), got[i], lmp_f32_to_f16(src[i]));
    }
    free(src);
    free(got);
}
END_TEST

START_TEST(bulk_conversion_matches_scalar)
{
    /* every f16 pattern, stored little-endian at an odd (unaligned) address */
    size_t n = 65536;
    uint8_t *raw = malloc(2 * n + 1);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    for (size_t i = 0; i < n; i++) {
        raw[1 + 2 * i] = (uint8_t)(i & 255);
        raw[2 + 2 * i] = (uint8_t)(i >> 8);
    }
    for (int t = 0; t < 3; t++) {
        lmp_dtype dt = t == 0 ? LMP_DT_F16 : t == 1 ? LMP_DT_BF16 : LMP_DT_F32;
        size_t cnt = dt == LMP_DT_F32 ? n / 2 : n;
        for (size_t k = 5; k-- > 0;) { /* lengths not a multiple of 8 too; full length last */
            size_t m = cnt - k * 3;
            memset(a, 0, n * sizeof *a);
            memset(b, 0, n * sizeof *b);
            ck_assert_int_eq(lmp_to_f32(dt, raw + 1, a, m), 0);
            ck_assert_int_eq(lmp_to_f32_scalar(dt, raw + 1, b, m), 0);
            ck_assert(memcmp(a, b, m * sizeof *a) == 0);
        }
        for (size_t i = 0; i < cnt; i++) {
            uint16_t h = (uint16_t)i;
            float want = dt == LMP_DT_F16 ? lmp_f16_to_f32(h) : dt == LMP_DT_BF16 ? lmp_bf16_to_f32(h) : 0;
            if (dt == LMP_DT_F32) {
                uint32_t u = (uint32_t)(2 * i) | (uint32_t)(2 * i + 1) << 16;
                want = bitsf(u);
            }
            ck_assert_msg(fbits(b[i]) == fbits(want), "dtype %d element %zu", t, i);
        }
    }
    ck_assert_int_eq(lmp_to_f32(LMP_DT_I32, raw, a, 4), -1);
    ck_assert_int_eq(lmp_to_f32_scalar(LMP_DT_U8, raw, a, 4), -1);
    free(raw);
    free(a);
    free(b);
}
END_TEST

Suite *lmp_suite_dtype(void)
{
    Suite *s = suite_create("dtype");
    TCase *tc = tcase_create("conv");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, names_and_sizes);
    tcase_add_test(tc, f16_all_patterns);
    tcase_add_test(tc, bf16_all_patterns);
    tcase_add_test(tc, roundtrip_all_patterns);
    tcase_add_test(tc, f16_rounding_cases);
    tcase_add_test(tc, bf16_rounding_cases);
    tcase_add_test(tc, f16_random_vs_reference);
    tcase_add_test(tc, bulk_conversion_matches_scalar);
    tcase_add_test(tc, f32_to_f16_bulk_matches_scalar);
    suite_add_tcase(s, tc);
    return s;
}
