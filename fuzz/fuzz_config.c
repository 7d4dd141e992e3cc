/* libFuzzer target: config.json text -> lmp_config_parse. On success the
 * canonical JSON must parse back to the same struct, and the expected-tensor
 * list must be computable (bounds keep every shape product in range). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lmp_config c, back;
    lmp_diag d;
    lmp_diag_clear(&d);
    if (lmp_config_parse(&c, (const char *)data, size, "fuzz.json", &d) != LMP_OK) {
        if (d.msg[0] == '\0') abort(); /* a failure always explains itself */
        return 0;
    }
    char *j = lmp_config_to_json(&c);
    if (!j) return 0;
    if (lmp_config_parse(&back, j, strlen(j), "canonical", &d) != LMP_OK) abort();
    if (memcmp(&c, &back, sizeof c) != 0) abort();
    free(j);
    size_t n = lmp_config_expected(&c, NULL, 0);
    if (n != (size_t)(2 + 9 * c.n_layers + (c.tied ? 0 : 1))) abort();
    lmp_expect e[64];
    lmp_config_expected(&c, e, n < 64 ? n : 64);
    return 0;
}
