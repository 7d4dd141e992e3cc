/* LMP_Q4_LAYOUT_X16, _R16 and _R8: the in-memory code orders of the
 * AVX-512 kernels and of the AVX2 R8 kernel (the layouts are defined in
 * q4.h; why they exist: q4_avx512.c, q4_r16_avx512.c, q4_r8_avx2.c).
 * Loaders call lmp_q4_pack_r16 / _x16 / _r8 on weights they own once, when
 * lmp_q4_r16_wanted() / _x16_wanted() / _r8_wanted(). */
#include <stdlib.h>
#include <string.h>

#include "quantize/q4.h"
#include "quantize/q4_internal.h"

/* Process-wide on/off switches, -1 until first read: then the environment
 * variable `name` set to "0" turns the switch off. */
static _Atomic int g_allow_x16 = -1, g_allow_r16 = -1, g_allow_r8 = -1;

static int switch_get(_Atomic int *g, const char *name)
{
    if (*g < 0) {
        const char *e = getenv(name);
        *g = !(e && !strcmp(e, "0"));
    }
    return *g;
}

static int switch_set(_Atomic int *g, const char *name, int on)
{
    int prev = switch_get(g, name);
    *g = on ? 1 : 0;
    return prev;
}

static int allowed(void)
{
    return switch_get(&g_allow_x16, "LMP_X16");
}

int lmp_q4_allow_x16(int on)
{
    return switch_set(&g_allow_x16, "LMP_X16", on);
}

static int allowed_r16(void)
{
    return switch_get(&g_allow_r16, "LMP_R16");
}

int lmp_q4_allow_r16(int on)
{
    return switch_set(&g_allow_r16, "LMP_R16", on);
}

static int allowed_r8(void)
{
    return switch_get(&g_allow_r8, "LMP_R8");
}

int lmp_q4_allow_r8(int on)
{
    return switch_set(&g_allow_r8, "LMP_R8", on);
}

int lmp_q4_layout_ok(int kind, int layout, int rows)
{
    return layout == LMP_Q4_LAYOUT_ROWS || (layout == LMP_Q4_LAYOUT_X16 && kind == LMP_MAT_Q4) ||
           (layout == LMP_Q4_LAYOUT_R16 && kind == LMP_MAT_Q4 && rows > 0 && rows % 16 == 0) ||
           (layout == LMP_Q4_LAYOUT_R8 && kind == LMP_MAT_Q4 && rows > 0 && rows % 8 == 0);
}

int lmp_q4_r8_wanted(int kind, int scheme, int rows)
{
#if defined(__x86_64__) || defined(__i386__)
    return lmp_q4_layout_ok(kind, LMP_Q4_LAYOUT_R8, rows) && allowed_r8() &&
           (scheme == LMP_Q4_SYM || scheme == LMP_Q4_ASYM) && lmp_q4_simd_active() &&
           !lmp_q4_avx512_active();
#else
    (void)kind, (void)scheme, (void)rows;
    return 0; /* no R8 kernel (browser build) */
#endif
}

int lmp_q4_pack_wanted(int kind, int scheme, int rows)
{
    return lmp_q4_x16_wanted(kind, scheme) || lmp_q4_r8_wanted(kind, scheme, rows);
}

/* The stored rows at src into blocks of nr interleaved rows (R16, R8) at
 * dst, block by block through a scratch copy (so src may be dst). */
static int pack_rn(const void *src, void *dst, int nr, int rows, int cols, int group, int scheme)
{
    const size_t rb = lmp_q4_row_bytes(cols, group, scheme);
    const int nblk = (cols + 31) / 32, ng = (cols + group - 1) / group;
    const int asym = scheme == LMP_Q4_ASYM, bpg = group / 32;
    if (rows % nr || rb == 0) return 0;
    /* one block of stored rows, + slack for the AVX-512 packer's 4-byte
     * gathers of the last 2-byte min */
    uint8_t *tmp = malloc((size_t)nr * rb + 16);
    if (!tmp) return 0;
    for (int R = 0; R < rows / nr; R++) {
        memcpy(tmp, (const uint8_t *)src + (size_t)R * nr * rb, (size_t)nr * rb);
        uint8_t *o = (uint8_t *)dst + (size_t)R * nr * rb;
#if defined(__x86_64__) || defined(__i386__)
        if (nr == 16 && lmp_q4_avx512_active()) { /* ~10x the loop below; the same bytes */
            lmp_q4_pack_r16_block_avx512(tmp, rb, nblk, ng, bpg, asym, o);
            continue;
        }
        if (nr == 8 && lmp_q4_simd_active()) { /* likewise */
            lmp_q4_pack_r8_block_avx2(tmp, rb, nblk, ng, bpg, asym, o);
            continue;
        }
#endif
        for (int i = 0; i < nr; i++) {
            const uint8_t *row = tmp + (size_t)i * rb, *sc = row + 16 * (size_t)nblk;
            for (int b = 0; b < nblk; b++)
                for (int q = 0; q < 4; q++)
                    memcpy(o + lmp_q4_rn_code_at(nr, b, 4 * q, i, bpg, asym),
                           row + 16 * (size_t)b + 4 * q, 4);
            for (int g = 0; g < ng; g++) {
                memcpy(o + lmp_q4_rn_scale_at(nr, g, i, bpg, asym), sc + 2 * (size_t)g, 2);
                if (asym)
                    memcpy(o + lmp_q4_rn_min_at(nr, g, i, bpg), sc + 2 * (size_t)(ng + g), 2);
            }
        }
    }
    free(tmp);
    return 1;
}

int lmp_q4_pack_r8(const void *src, void *dst, int rows, int cols, int group, int scheme)
{
    return pack_rn(src, dst, 8, rows, cols, group, scheme);
}

int lmp_q4_r16_wanted(int kind, int scheme, int rows)
{
    return lmp_q4_layout_ok(kind, LMP_Q4_LAYOUT_R16, rows) && allowed_r16() &&
           lmp_q4_x16_wanted(kind, scheme);
}

int lmp_q4_pack_r16(const void *src, void *dst, int rows, int cols, int group, int scheme)
{
    return pack_rn(src, dst, 16, rows, cols, group, scheme);
}

int lmp_q4_x16_wanted(int kind, int scheme)
{
    return allowed() && kind == LMP_MAT_Q4 && (scheme == LMP_Q4_SYM || scheme == LMP_Q4_ASYM) &&
           lmp_q4_avx512_active();
}

/* The codes of one hexa of nb blocks (16 * nb bytes): a transpose of 4-byte
 * pieces, piece k of block L -> position k * nb + L (lmp_q4_x16_at). */
static void pack_hexa(const uint8_t *in, uint8_t *out, int nb)
{
    uint8_t tmp[256];
    memcpy(tmp, in, 16 * (size_t)nb); /* in may equal out */
    for (int L = 0; L < nb; L++)
        for (int k = 0; k < 4; k++) memcpy(out + 4 * (size_t)(k * nb + L), tmp + 16 * L + 4 * k, 4);
}

void lmp_q4_pack_x16(const void *src, void *dst, int rows, int cols, int group, int scheme)
{
    const size_t rb = lmp_q4_row_bytes(cols, group, scheme);
    const int nblk = (cols + 31) / 32;
    const uint8_t *s = src;
    uint8_t *o = dst;
    for (int r = 0; r < rows; r++) {
        const uint8_t *in = s + (size_t)r * rb;
        uint8_t *out = o + (size_t)r * rb;
        int b0 = 0;
#if defined(__x86_64__) || defined(__i386__)
        if (lmp_q4_avx512_active()) b0 = lmp_q4_pack_hexas_avx512(in, out, nblk / 16) * 16;
#endif
        for (; b0 < nblk; b0 += 16)
            pack_hexa(in + 16 * (size_t)b0, out + 16 * (size_t)b0, nblk - b0 < 16 ? nblk - b0 : 16);
        if (out != in) memcpy(out + 16 * (size_t)nblk, in + 16 * (size_t)nblk, rb - 16 * (size_t)nblk);
    }
}
