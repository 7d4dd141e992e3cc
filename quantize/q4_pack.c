/* LMP_Q4_LAYOUT_X16: the in-memory code order of the AVX-512 kernel (the
 * layout is defined in q4.h; why it exists: q4_avx512.c). Loaders call
 * lmp_q4_pack_x16 on weights they own once, when lmp_q4_x16_wanted(). */
#include <stdlib.h>
#include <string.h>

#include "quantize/q4.h"
#include "quantize/q4_internal.h"

static _Atomic int g_allow_x16 = -1; /* -1: not decided yet (read LMP_X16) */

static int allowed(void)
{
    if (g_allow_x16 < 0) {
        const char *e = getenv("LMP_X16");
        g_allow_x16 = !(e && !strcmp(e, "0"));
    }
    return g_allow_x16;
}

int lmp_q4_allow_x16(int on)
{
    int prev = allowed();
    g_allow_x16 = on ? 1 : 0;
    return prev;
}

int lmp_q4_layout_ok(int kind, int layout)
{
    return layout == LMP_Q4_LAYOUT_ROWS || (layout == LMP_Q4_LAYOUT_X16 && kind == LMP_MAT_Q4);
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
