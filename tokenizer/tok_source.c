/* Where a MODEL's tokenizer files come from: a model or tokenizer folder, a
 * tokenizer.json path, a bundle (files checked against its manifest) or a
 * .lmpk container (the tokenizer.json / tokenizer_config.json it carries,
 * read from the mapping through lmp_tok_load_mem). */
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "formats/lmpk.h"
#include "manifest/manifest.h"
#include "tokenizer/tokenizer.h"

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

/* A .lmpk container: its carried tokenizer.json (required) and
 * tokenizer_config.json (optional, copied to add the NUL the parser needs). */
static lmp_status from_container(lmp_tok **out, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_lmpk *pk = NULL;
    char *cfg = NULL, *name = NULL;
    LMP_FORWARD(lmp_lmpk_open(&pk, path, d));
    size_t jlen = 0, clen = 0;
    const uint8_t *json = lmp_lmpk_file(pk, "tokenizer.json", &jlen);
    const uint8_t *cj = lmp_lmpk_file(pk, "tokenizer_config.json", &clen);
    LMP_FAIL_IF(!json, LMP_ERR_FORMAT, "%s: the container carries no tokenizer.json", path);
    if (cj) {
        cfg = malloc(clen + 1);
        LMP_FAIL_IF(!cfg, LMP_ERR_NOMEM, "%s: out of memory", path);
        memcpy(cfg, cj, clen);
        cfg[clen] = '\0';
    }
    name = lmp_path_join(path, "tokenizer.json");
    LMP_FAIL_IF(!name, LMP_ERR_NOMEM, "%s: out of memory", path);
    name[strlen(path)] = ':';
    rc = lmp_tok_load_mem(out, (const char *)json, jlen, cfg, name, d);
out:
    free(name);
    free(cfg);
    lmp_lmpk_close(pk);
    return rc;
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
    return from_container(out, model, d);
}
