/* Element types and exact float conversions (scalar reference).
 *
 * The conversions work on bit patterns only (no FPU rounding mode or
 * flush-to-zero dependence), so they give the same answer on every build.
 * An F16C path for bulk f16 -> f32 lives in dtype_avx2.c and is chosen at
 * run time; tests/test_dtype.c checks it against these functions.
 */
#include "formats/dtype.h"

#include <stdatomic.h>
#include <string.h>

static const char *const dt_names[LMP_DT_COUNT] = {
    [LMP_DT_F32] = "F32",   [LMP_DT_F16] = "F16",   [LMP_DT_BF16] = "BF16",
    [LMP_DT_F64] = "F64",   [LMP_DT_I8] = "I8",     [LMP_DT_U8] = "U8",
    [LMP_DT_I16] = "I16",   [LMP_DT_U16] = "U16",   [LMP_DT_I32] = "I32",
    [LMP_DT_U32] = "U32",   [LMP_DT_I64] = "I64",   [LMP_DT_U64] = "U64",
    [LMP_DT_BOOL] = "BOOL", [LMP_DT_F8_E4M3] = "F8_E4M3", [LMP_DT_F8_E5M2] = "F8_E5M2",
};

static const unsigned char dt_sizes[LMP_DT_COUNT] = {
    [LMP_DT_F32] = 4, [LMP_DT_F16] = 2, [LMP_DT_BF16] = 2, [LMP_DT_F64] = 8,
    [LMP_DT_I8] = 1,  [LMP_DT_U8] = 1,  [LMP_DT_I16] = 2,  [LMP_DT_U16] = 2,
    [LMP_DT_I32] = 4, [LMP_DT_U32] = 4, [LMP_DT_I64] = 8,  [LMP_DT_U64] = 8,
    [LMP_DT_BOOL] = 1, [LMP_DT_F8_E4M3] = 1, [LMP_DT_F8_E5M2] = 1,
};

const char *lmp_dtype_name(lmp_dtype t)
{
    if ((unsigned)t >= LMP_DT_COUNT) return "?";
    return dt_names[t];
}

int lmp_dtype_from_name(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < LMP_DT_COUNT; i++)
        if (strcmp(name, dt_names[i]) == 0) return i;
    return -1;
}

size_t lmp_dtype_size(lmp_dtype t)
{
    if ((unsigned)t >= LMP_DT_COUNT) return 0;
    return dt_sizes[t];
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

float lmp_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t out;
    if (exp == 0x1f) {
        /* inf, or NaN keeping its payload, made quiet (as vcvtph2ps does) */
        out = sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0u);
    } else if (exp != 0) {
        out = sign | ((exp + 112u) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else if (man == 0) {
        out = sign; /* +-0 */
    } else {
        /* subnormal: value man * 2^-24; normalise so the leading 1 is bit 10 */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400u));
        /* leading bit was at position 9-e, so the value is 1.f * 2^(-15-e) */
        out = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    return bits_f32(out);
}

float lmp_bf16_to_f32(uint16_t b)
{
    return bits_f32((uint32_t)b << 16);
}

uint16_t lmp_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign and top payload, force quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    /* round to nearest even on the dropped 16 bits; a carry into the exponent
     * is correct (rounds up to the next binade or to inf) */
    uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb;
    return (uint16_t)(u >> 16);
}

uint16_t lmp_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x47800000u) /* >= 65536 (including inf): beyond the rounding range of 65504 */
        return (uint16_t)(sign | 0x7c00u);
    int exp = (int)(a >> 23); /* biased f32 exponent */
    if (exp >= 113) {
        /* normal f16 range (2^-14 and up): drop 13 bits with RNE; a carry may
         * overflow into the exponent, up to 0x7c00 = inf, which is right */
        uint32_t r = a - (112u << 23); /* rebias */
        uint32_t lsb = (r >> 13) & 1u;
        r += 0xfffu + lsb;
        return (uint16_t)(sign | (r >> 13));
    }
    if (exp < 102) /* below 2^-25: rounds to zero (2^-25 itself is a tie to even 0) */
        return sign;
    /* subnormal f16: value = m * 2^-24 with m = mant24 >> shift */
    uint32_t m = (a & 0x7fffffu) | 0x800000u; /* 24-bit significand, value m * 2^(exp-150) */
    int shift = 126 - exp;                     /* (exp-150) -> -24 needs m >> (126-exp) */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q); /* q may reach 0x400 = smallest normal, still right */
}

#if defined(__x86_64__) || defined(__i386__)
#include "common/cpu.h"
void lmp__f16_to_f32_f16c(const void *src, float *dst, size_t n);
void lmp__f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n);
int lmp__bf16_to_f32_avx2(const void *src, float *dst, size_t n);
static int have_f16c(void)
{
    return lmp_cpu_avx2();
}
#endif

void lmp_f32_to_f16_n(const float *src, uint16_t *dst, size_t n)
{
#if defined(__x86_64__) || defined(__i386__)
    if (n >= 8 && have_f16c()) {
        lmp__f32_to_f16_f16c(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = lmp_f32_to_f16(src[i]);
}

/* Scalar reference for lmp_to_f32 (also used by the tests). */
int lmp_to_f32_scalar(lmp_dtype t, const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    switch (t) {
    case LMP_DT_F32:
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)s[4 * i] | (uint32_t)s[4 * i + 1] << 8 |
                         (uint32_t)s[4 * i + 2] << 16 | (uint32_t)s[4 * i + 3] << 24;
            dst[i] = bits_f32(u);
        }
        return 0;
    case LMP_DT_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = lmp_f16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
        return 0;
    case LMP_DT_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = lmp_bf16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
        return 0;
    default:
        return -1;
    }
}

int lmp_to_f32(lmp_dtype t, const void *src, float *dst, size_t n)
{
#if defined(__x86_64__) || defined(__i386__)
    if (t == LMP_DT_F16 && n >= 8 && have_f16c()) {
        lmp__f16_to_f32_f16c(src, dst, n);
        return 0;
    }
#endif
    return lmp_to_f32_scalar(t, src, dst, n);
}

/* 1 if no element is NaN or infinite (all-ones exponent). */
static int all_finite(const float *x, size_t n)
{
    uint32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = f32_bits(x[i]) & 0x7f800000u;
        m = u > m ? u : m;
    }
    return m != 0x7f800000u;
}

int lmp_to_f32_finite(lmp_dtype t, const void *src, float *dst, size_t n)
{
#if defined(__x86_64__) || defined(__i386__)
    if (t == LMP_DT_BF16 && have_f16c()) return lmp__bf16_to_f32_avx2(src, dst, n);
#endif
    if (lmp_to_f32(t, src, dst, n) != 0) return -1;
    return all_finite(dst, n);
}
