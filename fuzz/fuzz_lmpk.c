/* libFuzzer target: the .lmpk container validator. Half of the inputs
 * (first byte odd) get their header checksum recomputed before the check,
 * so that mutations reach the rules behind the checksum instead of all
 * stopping at it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "formats/lmpk.h"

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int reseal = data[0] & 1;
    data++;
    size--;
    uint8_t *b = malloc(size ? size : 1);
    if (!b) return 0;
    memcpy(b, data, size);
    if (reseal && size >= 128) {
        uint64_t off = rd64(b + 80);
        if (off >= 128 && off <= size) {
            memset(b + 120, 0, 8);
            uint64_t h = XXH3_64bits(b, (size_t)off);
            for (int i = 0; i < 8; i++) b[120 + i] = (uint8_t)(h >> (8 * i));
        }
    }
    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_lmpk_check_bytes(b, size, "fuzz.lmpk", &d);
    free(b);
    return 0;
}
