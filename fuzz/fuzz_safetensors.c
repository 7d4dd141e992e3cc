/* libFuzzer target: validate arbitrary bytes as a safetensors file image.
 * Besides "no crash, no out-of-bounds read" (the sanitizers), it checks the
 * diagnostic contract: a failure always leaves a one-line message naming
 * the file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_status rc = lmp_st_check_bytes(data, size, "fuzz.safetensors", &d);
    if (rc != LMP_OK) {
        if (d.status != rc || strncmp(d.msg, "fuzz.safetensors: ", 18) != 0 || strchr(d.msg, '\n'))
            abort();
    }
    return 0;
}
