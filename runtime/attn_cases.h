/* Internal to the attention tiles (runtime/attn_avx2.c, attn_avx512.c): the
 * run-time switch onto their compile-time instances. Not a public API.
 *
 * LMP_ATTN_CASES(F, args...) calls F(args..., R, NV) with R (rows, 1..3)
 * and NV (vectors, 1..4) taken from the variables R and NV in scope, each
 * pair a constant, so F (always_inline) is specialised for it.
 * LMP_ATTN_CASES_KV(f16, F, args...) does the same with the cache element
 * type as one more constant before them: F(args..., F16, R, NV). */
#ifndef LMP_ATTN_CASES_H
#define LMP_ATTN_CASES_H

#define LMP_ATTN_CASES(F, ...)                                                            \
    switch (R * 4 + NV) {                                                                 \
    case 5: F(__VA_ARGS__, 1, 1); break;                                                  \
    case 6: F(__VA_ARGS__, 1, 2); break;                                                  \
    case 7: F(__VA_ARGS__, 1, 3); break;                                                  \
    case 8: F(__VA_ARGS__, 1, 4); break;                                                  \
    case 9: F(__VA_ARGS__, 2, 1); break;                                                  \
    case 10: F(__VA_ARGS__, 2, 2); break;                                                 \
    case 11: F(__VA_ARGS__, 2, 3); break;                                                 \
    case 12: F(__VA_ARGS__, 2, 4); break;                                                 \
    case 13: F(__VA_ARGS__, 3, 1); break;                                                 \
    case 14: F(__VA_ARGS__, 3, 2); break;                                                 \
    case 15: F(__VA_ARGS__, 3, 3); break;                                                 \
    default: F(__VA_ARGS__, 3, 4); break;                                                 \
    }

#define LMP_ATTN_CASES_KV(f16, F, ...)                                                    \
    do {                                                                                  \
        if (f16) {                                                                        \
            LMP_ATTN_CASES(F, __VA_ARGS__, 1)                                             \
        } else {                                                                          \
            LMP_ATTN_CASES(F, __VA_ARGS__, 0)                                             \
        }                                                                                 \
    } while (0)

#endif
