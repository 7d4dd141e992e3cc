/* Unicode classes for the byte-level pre-tokenizer (generated tables in
 * unicode_tables.c, see tools/gen_unicode_tables.py) and UTF-8 helpers. */
#ifndef LMP_UNICODE_H
#define LMP_UNICODE_H

#include <stddef.h>
#include <stdint.h>

typedef struct lmp_uc_range {
    uint32_t lo, hi;
} lmp_uc_range;

extern const lmp_uc_range lmp_uc_letter[];
extern const unsigned lmp_uc_letter_n;
extern const lmp_uc_range lmp_uc_number[];
extern const unsigned lmp_uc_number_n;
extern const lmp_uc_range lmp_uc_space[];
extern const unsigned lmp_uc_space_n;

/* Character classes of the GPT-2 regex. */
enum { LMP_UC_OTHER = 0, LMP_UC_LETTER = 1, LMP_UC_NUMBER = 2, LMP_UC_SPACE = 3 };
int lmp_uc_class(uint32_t cp);

/* Decode one UTF-8 sequence at s[0..n) (n >= 1). Returns its length (1..4)
 * and the code point in *cp; for an invalid or truncated sequence returns
 * the length of the maximal invalid subpart (>= 1) with *cp = 0xFFFD and
 * *bad = 1 (the "substitution of maximal subparts" rule of Unicode §3.9,
 * which Rust's from_utf8_lossy and Python's errors="replace" follow). */
size_t lmp_utf8_next(const uint8_t *s, size_t n, uint32_t *cp, int *bad);

/* Length of the longest prefix of s[0..n) that is an incomplete but still
 * valid beginning of one UTF-8 sequence at the very end; i.e. the number of
 * trailing bytes that more input could complete (0..3). */
size_t lmp_utf8_incomplete_tail(const uint8_t *s, size_t n);

/* Encode cp as UTF-8 into out (4 bytes room); returns length. */
size_t lmp_utf8_put(uint32_t cp, uint8_t *out);

#endif
