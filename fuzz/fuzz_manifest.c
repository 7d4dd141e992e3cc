/* Fuzz target: manifest.json text through the strict reader. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "manifest/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_manifest *m = NULL;
    if (lmp_manifest_parse(&m, (const char *)data, size, &d) == LMP_OK) {
        /* a parsed manifest prints back to exactly its input */
        char *t = lmp_manifest_print(m);
        if (!t) abort();
        for (size_t i = 0; i < size; i++)
            if (t[i] != (char)data[i]) abort();
        free(t);
    }
    lmp_manifest_free(m);
    return 0;
}
