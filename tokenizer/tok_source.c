/* Where a MODEL's tokenizer files come from. This is the one place to extend
 * when containers (.lmpk) and bundles (manifest.json) carry the tokenizer
 * bytes: read them there and call lmp_tok_load_mem. */
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "manifest/manifest.h"
#include "tokenizer/tokenizer.h"

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

lmp_status lmp_tok_open_model(lmp_tok **out, const char *model, lmp_diag *d)
{
    *out = NULL;
    if (!lmp_exists(model)) return lmp_fail(d, LMP_ERR_IO, "%s: no such file or folder", model);
    if (lmp_bundle_is(model)) { /* files checked against the manifest first */
        char *dir = NULL;
        lmp_status rc = lmp_bundle_tokenizer_path(model, &dir, d);
        if (rc == LMP_OK) rc = lmp_tok_load(out, dir, d);
        free(dir);
        return rc;
    }
    if (lmp_is_dir(model)) {
        char *p = lmp_path_join(model, "tokenizer.json");
        if (!p) return lmp_fail(d, LMP_ERR_NOMEM, "%s: out of memory", model);
        int have = lmp_exists(p);
        lmp_status rc = have ? lmp_tok_load(out, model, d)
                             : lmp_fail(d, LMP_ERR_IO, "%s: no tokenizer.json in the folder", model);
        free(p);
        return rc;
    }
    if (ends_with(model, ".json") && !ends_with(model, "manifest.json"))
        return lmp_tok_load(out, model, d);
    return lmp_fail(d, LMP_ERR_UNSUPPORTED,
                    "%s: reading the tokenizer from a container or bundle is not supported yet",
                    model);
}
