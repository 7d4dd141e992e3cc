/* Unicode class lookup and UTF-8 helpers (see unicode.h). */
#include "tokenizer/unicode.h"

static int in_ranges(const lmp_uc_range *r, unsigned n, uint32_t cp)
{
    unsigned lo = 0, hi = n;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (cp < r[mid].lo)
            hi = mid;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

int lmp_uc_class(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return LMP_UC_LETTER;
        if (cp >= '0' && cp <= '9') return LMP_UC_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return LMP_UC_SPACE;
        return LMP_UC_OTHER;
    }
    if (in_ranges(lmp_uc_letter, lmp_uc_letter_n, cp)) return LMP_UC_LETTER;
    if (in_ranges(lmp_uc_number, lmp_uc_number_n, cp)) return LMP_UC_NUMBER;
    if (in_ranges(lmp_uc_space, lmp_uc_space_n, cp)) return LMP_UC_SPACE;
    return LMP_UC_OTHER;
}

/* Number of bytes of a sequence starting with lead byte b (0: invalid lead),
 * and the allowed range of the second byte. */
static int utf8_lead(uint8_t b, uint8_t *lo2, uint8_t *hi2)
{
    *lo2 = 0x80;
    *hi2 = 0xBF;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) {
        if (b == 0xE0) *lo2 = 0xA0;
        if (b == 0xED) *hi2 = 0x9F;
        return 3;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        if (b == 0xF0) *lo2 = 0x90;
        if (b == 0xF4) *hi2 = 0x8F;
        return 4;
    }
    return 0;
}

size_t lmp_utf8_next(const uint8_t *s, size_t n, uint32_t *cp, int *bad)
{
    uint8_t lo2, hi2;
    int len = utf8_lead(s[0], &lo2, &hi2);
    *bad = 0;
    if (len == 1) {
        *cp = s[0];
        return 1;
    }
    if (len == 0) goto invalid1;
    size_t k = 1; /* valid bytes so far */
    uint32_t v = s[0] & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (; k < (size_t)len; k++) {
        if (k >= n) break;
        uint8_t lo = k == 1 ? lo2 : 0x80, hi = k == 1 ? hi2 : 0xBF;
        if (s[k] < lo || s[k] > hi) break;
        v = (v << 6) | (s[k] & 0x3F);
    }
    if (k == (size_t)len) {
        *cp = v;
        return k;
    }
    *cp = 0xFFFD;
    *bad = 1;
    return k;
invalid1:
    *cp = 0xFFFD;
    *bad = 1;
    return 1;
}

size_t lmp_utf8_incomplete_tail(const uint8_t *s, size_t n)
{
    /* A lead byte can be at most 3 bytes before the end. */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        size_t i = n - back;
        uint8_t lo2, hi2;
        int len = utf8_lead(s[i], &lo2, &hi2);
        if (len == 0) {
            if (s[i] >= 0x80 && s[i] <= 0xBF) continue; /* continuation: look further back */
            return 0;
        }
        if (len == 1 || (size_t)len <= back) return 0;
        /* check the bytes after the lead are a valid partial sequence */
        for (size_t k = 1; k < back; k++) {
            uint8_t lo = k == 1 ? lo2 : 0x80, hi = k == 1 ? hi2 : 0xBF;
            if (s[i + k] < lo || s[i + k] > hi) return 0;
        }
        return back;
    }
    return 0;
}

size_t lmp_utf8_put(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}
