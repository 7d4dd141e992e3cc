/* Fuzz target: a whole chunk file (zstd frame -> raw image -> header and
 * tensor table). Must never crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>

#include "formats/chunk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lmp_diag d;
    lmp_diag_clear(&d);
    (void)lmp_chunk_check_bytes(data, size, &d);
    /* the raw parser on the bytes as given, too */
    lmp_chunk c;
    if (lmp_chunk_parse(&c, data, size, "fuzz", &d) == LMP_OK) lmp_chunk_free(&c);
    return 0;
}
