/* lmpack inspect PATH [--json] [--summary]
 *
 * Shows and validates what PATH holds. Every kind of input goes through one
 * dispatch table (`kinds` below): a probe that recognises the path and a
 * handler that fills a cJSON report. Text and JSON output are both rendered
 * from that report, so the two never disagree. New formats (the .lmpk
 * container, bundles) join by adding a row to the table; put more specific
 * probes first.
 *
 * Exit 0 when the input is valid, 1 otherwise (one line on stderr naming the
 * file and the rule; with --json the report still goes to stdout with
 * "check" holding the message when a report could be built), 2 bad usage.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "common/status.h"
#include "formats/config.h"
#include "formats/lmpk.h"
#include "formats/safetensors.h"
#include "quantize/q4.h"

static const char *const PROG = "inspect";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lmpack inspect PATH [--json] [--summary]\n"
            "\n"
            "Show and validate a model: PATH is a .safetensors file, a sharded\n"
            "model.safetensors.index.json, a Hugging Face model folder (config.json +\n"
            "safetensors) or an .lmpk container. For a folder, config.json is parsed and\n"
            "every tensor is checked against it (names, shapes, float dtypes, nothing\n"
            "missing or unexpected); safetensors data is not read. For a container, the\n"
            "table shows each tensor's storage, group, scheme and bits/weight, the total\n"
            "bits_per_weight counts every stored bit of the 2-D weights (codes, scales,\n"
            "minimums, padding), and the tensor data hashes are checked.\n"
            "\n"
            "  --json      one JSON object on stdout (kind, files, tensors, n_tensors,\n"
            "              n_params, bytes, metadata, config, check)\n"
            "  --summary   leave out the per-tensor table (text and JSON)\n"
            "  --help      this text\n"
            "\n"
            "Exit status: 0 valid, 1 invalid or unreadable (reason on stderr), 2 bad usage.\n");
}

/* ---- safetensors sets (file, index, folder) ----------------------------- */

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Tensor table, totals, files and metadata of an opened set. */
static lmp_status report_set(cJSON *r, const lmp_st *st, int with_tensors, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    cJSON *files = cJSON_AddArrayToObject(r, "files");
    cJSON *meta = cJSON_AddObjectToObject(r, "metadata");
    cJSON *tensors = with_tensors ? cJSON_AddArrayToObject(r, "tensors") : NULL;
    LMP_FAIL_IF(!files || !meta || (with_tensors && !tensors), LMP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < lmp_st_nfiles(st); i++) {
        const char *fname = lmp_path_base(lmp_st_file(st, i));
        cJSON_AddItemToArray(files, cJSON_CreateString(fname));
        size_t nm = lmp_st_meta_count(st, (int)i);
        if (!nm) continue;
        cJSON *m = cJSON_AddObjectToObject(meta, fname);
        for (size_t k = 0; m && k < nm; k++) {
            const char *key, *val;
            lmp_st_meta_at(st, (int)i, k, &key, &val);
            cJSON_AddStringToObject(m, key, val);
        }
    }
    uint64_t params = 0, bytes = 0;
    size_t n = lmp_st_count(st);
    for (size_t i = 0; i < n; i++) {
        const lmp_st_tensor *t = lmp_st_at(st, i);
        params += t->nelem;
        bytes += t->nbytes;
        if (!tensors) continue;
        cJSON *o = cJSON_CreateObject();
        LMP_FAIL_IF(!o, LMP_ERR_NOMEM, "out of memory");
        cJSON_AddItemToArray(tensors, o);
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "dtype", lmp_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int k = 0; shape && k < t->ndim; k++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[k]));
        cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes);
        if (lmp_st_nfiles(st) > 1)
            cJSON_AddStringToObject(o, "file", lmp_path_base(lmp_st_file(st, (size_t)t->shard)));
    }
    cJSON_AddNumberToObject(r, "n_tensors", (double)n);
    cJSON_AddNumberToObject(r, "n_params", (double)params);
    cJSON_AddNumberToObject(r, "bytes", (double)bytes);
out:
    return rc;
}

/* A bare .safetensors file or index: the reader's validation is the check. */
static lmp_status inspect_st(const char *path, cJSON *r, int with_tensors, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_st *st = NULL;
    LMP_FORWARD(lmp_st_open(&st, path, d));
    LMP_FORWARD(report_set(r, st, with_tensors, d));
out:
    lmp_st_close(st);
    return rc;
}

/* A Hugging Face folder: config.json + safetensors, checked against each
 * other. A bad config or a failed check still yields a full report. */
static lmp_status inspect_hf(const char *path, cJSON *r, int with_tensors, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_st *st = NULL;
    char *cjson = NULL;
    lmp_config c;
    LMP_FORWARD(lmp_st_open(&st, path, d));
    LMP_FORWARD(report_set(r, st, with_tensors, d));
    LMP_FORWARD(lmp_config_load(&c, path, d));
    cjson = lmp_config_to_json(&c);
    LMP_FAIL_IF(!cjson, LMP_ERR_NOMEM, "out of memory");
    cJSON *cfg = cJSON_Parse(cjson);
    LMP_FAIL_IF(!cfg, LMP_ERR_INTERNAL, "%s: canonical config does not parse", path);
    cJSON_AddItemToObject(r, "config", cfg);
    size_t nexp = lmp_config_expected(&c, NULL, 0);
    cJSON_AddNumberToObject(r, "n_expected", (double)nexp);
    rc = lmp_config_check(&c, st, d);
    if (rc != LMP_OK) lmp_diag_prefix(d, path);
out:
    free(cjson);
    lmp_st_close(st);
    return rc;
}

/* An .lmpk container: the reader's validation plus the data hashes. Bits per
 * weight: every stored bit of the 2-D tensors (codes, scales, minimums,
 * in-row padding) over their element count; norms, metadata and carried
 * files not counted. */
static lmp_status inspect_lmpk(const char *path, cJSON *r, int with_tensors, lmp_diag *d)
{
    static const char *const kind_names[] = {"f32", "f16", "bf16", "q4", "q8"};
    lmp_status rc = LMP_OK;
    lmp_lmpk *pk = NULL;
    char *cjson = NULL;
    LMP_FORWARD(lmp_lmpk_open(&pk, path, d));
    cJSON *files = cJSON_AddArrayToObject(r, "files");
    cJSON *tensors = with_tensors ? cJSON_AddArrayToObject(r, "tensors") : NULL;
    LMP_FAIL_IF(!files || (with_tensors && !tensors), LMP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < lmp_lmpk_nfiles(pk); i++) {
        const char *name;
        size_t len;
        lmp_lmpk_file_at(pk, i, &name, NULL, &len);
        cJSON_AddItemToArray(files, cJSON_CreateString(name));
    }
    uint64_t params = 0, bytes = 0, wbits = 0, welems = 0;
    for (size_t i = 0; i < lmp_lmpk_count(pk); i++) {
        const lmp_lmpk_tensor *t = lmp_lmpk_at(pk, i);
        params += t->nelem;
        bytes += t->size;
        if (t->ndim == 2) {
            wbits += 8 * t->size;
            welems += t->nelem;
        }
        if (!tensors) continue;
        cJSON *o = cJSON_CreateObject();
        LMP_FAIL_IF(!o, LMP_ERR_NOMEM, "out of memory");
        cJSON_AddItemToArray(tensors, o);
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "dtype", kind_names[t->kind]);
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int k = 0; shape && k < t->ndim; k++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[k]));
        cJSON_AddNumberToObject(o, "bytes", (double)t->size);
        cJSON_AddNumberToObject(o, "offset", (double)t->offset);
        if (t->kind == LMP_MAT_Q4 || t->kind == LMP_MAT_Q8) {
            cJSON_AddNumberToObject(o, "group", t->group);
            cJSON_AddStringToObject(o, "scheme", lmp_q4_scheme_name(t->scheme));
        }
        cJSON_AddNumberToObject(o, "bits_per_weight", 8.0 * (double)t->size / (double)t->nelem);
    }
    cJSON_AddNumberToObject(r, "n_tensors", (double)lmp_lmpk_count(pk));
    cJSON_AddNumberToObject(r, "n_params", (double)params);
    cJSON_AddNumberToObject(r, "bytes", (double)bytes);
    cJSON_AddNumberToObject(r, "file_size", (double)lmp_lmpk_file_size(pk));
    cJSON_AddNumberToObject(r, "bits_per_weight", welems ? (double)wbits / (double)welems : 0);
    cjson = lmp_config_to_json(lmp_lmpk_config(pk));
    LMP_FAIL_IF(!cjson, LMP_ERR_NOMEM, "out of memory");
    cJSON *cfg = cJSON_Parse(cjson);
    LMP_FAIL_IF(!cfg, LMP_ERR_INTERNAL, "%s: canonical config does not parse", path);
    cJSON_AddItemToObject(r, "config", cfg);
    LMP_FORWARD(lmp_lmpk_verify_data(pk, d));
out:
    free(cjson);
    lmp_lmpk_close(pk);
    return rc;
}

/* ---- dispatch ------------------------------------------------------------ */

static int probe_lmpk(const char *path)
{
    if (lmp_is_dir(path)) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char b[8];
    int ok = fread(b, 1, 8, f) == 8 && memcmp(b, LMP_LMPK_MAGIC, 8) == 0;
    fclose(f);
    return ok || ends_with(path, ".lmpk");
}

static int probe_hf(const char *path)
{
    if (!lmp_is_dir(path)) return 0;
    char *p = lmp_path_join(path, "config.json");
    int ok = p && lmp_exists(p);
    free(p);
    return ok;
}

static int probe_st_folder(const char *path)
{
    return lmp_is_dir(path) && !probe_hf(path);
}

static int probe_index(const char *path)
{
    return !lmp_is_dir(path) && ends_with(path, ".json");
}

static int probe_st_file(const char *path)
{
    return !lmp_is_dir(path);
}

typedef struct kind {
    const char *name;
    int (*probe)(const char *path);
    lmp_status (*inspect)(const char *path, cJSON *report, int with_tensors, lmp_diag *d);
} kind;

/* First matching row wins: specific probes (container magic, bundle
 * manifest) go before the generic ones. */
static const kind kinds[] = {
    {"lmpk", probe_lmpk, inspect_lmpk},
    {"hf-folder", probe_hf, inspect_hf},
    {"safetensors-folder", probe_st_folder, inspect_st},
    {"safetensors-index", probe_index, inspect_st},
    {"safetensors", probe_st_file, inspect_st},
};

/* ---- text rendering of a report ------------------------------------------ */

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void print_text(const cJSON *r)
{
    const cJSON *v;
    printf("path: %s\n", cJSON_GetObjectItem(r, "path")->valuestring);
    printf("kind: %s\n", cJSON_GetObjectItem(r, "kind")->valuestring);
    if ((v = cJSON_GetObjectItem(r, "files"))) {
        printf("files:");
        for (const cJSON *f = v->child; f; f = f->next) printf(" %s", f->valuestring);
        printf("\n");
    }
    if ((v = cJSON_GetObjectItem(r, "metadata"))) {
        for (const cJSON *f = v->child; f; f = f->next) {
            printf("metadata %s:", f->string);
            for (const cJSON *kv = f->child; kv; kv = kv->next)
                printf(" %s=%s", kv->string, cJSON_IsString(kv) ? kv->valuestring : "?");
            printf("\n");
        }
    }
    if ((v = cJSON_GetObjectItem(r, "config"))) {
        printf("config:");
        for (const cJSON *kv = v->child; kv; kv = kv->next) {
            char *s = cJSON_PrintUnformatted(kv);
            printf(" %s=%s", kv->string, s ? s : "?");
            free(s);
        }
        printf("\n");
    }
    if ((v = cJSON_GetObjectItem(r, "tensors"))) {
        int w = 4;
        for (const cJSON *t = v->child; t; t = t->next) {
            int n = (int)strlen(cJSON_GetObjectItem(t, "name")->valuestring);
            if (n > w) w = n;
        }
        printf("%-*s  %-5s  %-16s  %12s%s\n", w, "name", "dtype", "shape", "bytes",
               cJSON_GetObjectItem(v->child, "bits_per_weight") ? "  bits/w  group scheme" : "");
        for (const cJSON *t = v->child; t; t = t->next) {
            char shape[128] = "[";
            size_t n = 1;
            const cJSON *s = cJSON_GetObjectItem(t, "shape");
            for (const cJSON *x = s->child; x && n < sizeof shape; x = x->next)
                n += (size_t)snprintf(shape + n, sizeof shape - n, "%s%.0f", x == s->child ? "" : ", ",
                                      x->valuedouble);
            if (n < sizeof shape) snprintf(shape + n, sizeof shape - n, "]");
            printf("%-*s  %-5s  %-16s  %12.0f", w, cJSON_GetObjectItem(t, "name")->valuestring,
                   cJSON_GetObjectItem(t, "dtype")->valuestring, shape, num(t, "bytes"));
            if (cJSON_GetObjectItem(t, "bits_per_weight")) {
                const cJSON *sc = cJSON_GetObjectItem(t, "scheme");
                printf("  %6.3f  %5.0f %s", num(t, "bits_per_weight"), num(t, "group"),
                       cJSON_IsString(sc) ? sc->valuestring : "-");
            }
            printf("\n");
        }
    }
    if (cJSON_GetObjectItem(r, "n_tensors"))
        printf("total: %.0f tensors, %.0f parameters, %.0f bytes (%.1f MiB)\n", num(r, "n_tensors"),
               num(r, "n_params"), num(r, "bytes"), num(r, "bytes") / 1048576.0);
    if (cJSON_GetObjectItem(r, "bits_per_weight"))
        printf("bits/weight (2-D weights, all overhead): %.4f; file %.0f bytes\n",
               num(r, "bits_per_weight"), num(r, "file_size"));
    if ((v = cJSON_GetObjectItem(r, "check"))) printf("check: %s\n", v->valuestring);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0, summary = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return LMP_EXIT_OK;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--summary")) {
            summary = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            lmp_cli_usage_error(PROG, "unknown option '%s'", argv[i]);
        } else if (path) {
            lmp_cli_usage_error(PROG, "only one PATH, got '%s' and '%s'", path, argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) lmp_cli_usage_error(PROG, "missing PATH");

    lmp_diag d;
    lmp_diag_clear(&d);
    if (!lmp_exists(path)) {
        lmp_fail(&d, LMP_ERR_IO, "%s: no such file or folder", path);
        return lmp_cli_fail(PROG, &d);
    }
    const kind *k = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0] && !k; i++)
        if (kinds[i].probe(path)) k = &kinds[i];
    cJSON *r = cJSON_CreateObject();
    if (!r) {
        lmp_fail(&d, LMP_ERR_NOMEM, "out of memory");
        return lmp_cli_fail(PROG, &d);
    }
    cJSON_AddStringToObject(r, "path", path);
    cJSON_AddStringToObject(r, "kind", k ? k->name : "unknown");
    lmp_status rc = k ? k->inspect(path, r, !summary, &d)
                      : lmp_fail(&d, LMP_ERR_FORMAT, "%s: not a format lmpack knows", path);
    cJSON_AddStringToObject(r, "check", rc == LMP_OK ? "ok" : d.msg);
    /* A report is worth printing once the set opened (it has a tensor list). */
    if (rc == LMP_OK || cJSON_GetObjectItem(r, "n_tensors")) {
        if (json) {
            char *s = cJSON_Print(r);
            if (s) printf("%s\n", s);
            free(s);
        } else {
            print_text(r);
        }
    }
    cJSON_Delete(r);
    fflush(stdout);
    return rc == LMP_OK ? LMP_EXIT_OK : lmp_cli_fail(PROG, &d);
}
