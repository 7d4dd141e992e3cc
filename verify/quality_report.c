/* Quality gates, baseline reports, model hashes and the JSON report. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/fileio.h"
#include "common/version.h"
#include "quantize/q4.h"
#include "verify/quality.h"

/* ------------------------------------------------------------------ gates */

static void gate(lmp_gate_result *res, int *n, const char *name, const char *metric,
                 double value, double limit, int upper)
{
    lmp_gate_result *g = &res[(*n)++];
    g->gate = name;
    g->metric = metric;
    g->value = value;
    g->limit = limit;
    g->ok = upper ? value <= limit : value >= limit; /* NaN compares false: fails */
}

int lmp_quality_check_gates(const lmp_quality_report *r, const lmp_quality_gates *g,
                            lmp_gate_result res[LMP_QUALITY_MAX_GATES])
{
    int n = 0;
    if (g->has_max_kld) gate(res, &n, "max-kld", "kld_mean", r->kld_mean, g->max_kld, 1);
    if (g->has_min_top1)
        gate(res, &n, "min-top1", "top1_agreement", r->top1_agreement, g->min_top1, 0);
    if (g->has_max_ppl_ratio)
        gate(res, &n, "max-ppl-ratio", "ppl_ratio", r->ppl_ratio, g->max_ppl_ratio, 1);
    if (g->has_baseline) {
        double f = 1.0 + g->max_regression_pct / 100.0;
        gate(res, &n, "baseline-kld", "kld_mean", r->kld_mean, g->base_kld * f, 1);
        gate(res, &n, "baseline-ppl-ratio", "ppl_ratio", r->ppl_ratio, g->base_ppl_ratio * f, 1);
    }
    return n;
}

static int get_num(const cJSON *o, const char *key, double *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble)) return 0;
    *v = x->valuedouble;
    return 1;
}

lmp_status lmp_quality_read_baseline(const char *path, const char *tokens_xxh3, double *kld_mean,
                                     double *ppl_ratio, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    LMP_FORWARD(lmp_read_file(path, 64u << 20, &text, &len, d));
    root = cJSON_ParseWithLength(text, len);
    LMP_FAIL_IF(!cJSON_IsObject(root), LMP_ERR_FORMAT, "%s: baseline is not a JSON object", path);
    LMP_FAIL_IF(!get_num(root, "kld_mean", kld_mean) || *kld_mean < 0, LMP_ERR_FORMAT,
                "%s: baseline has no valid \"kld_mean\" number", path);
    LMP_FAIL_IF(!get_num(root, "ppl_ratio", ppl_ratio) || *ppl_ratio <= 0, LMP_ERR_FORMAT,
                "%s: baseline has no valid \"ppl_ratio\" number", path);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "tokens_xxh3");
    if (tokens_xxh3 && cJSON_IsString(h))
        LMP_FAIL_IF(strcmp(h->valuestring, tokens_xxh3) != 0, LMP_ERR_ARG,
                    "%s: baseline was measured on other evaluation tokens (tokens_xxh3 %s, "
                    "now %s); use the same --self/--text/--tokens, --ctx and --seed",
                    path, h->valuestring, tokens_xxh3);
out:
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* ----------------------------------------------------------------- hashes */

static void to_hex(XXH128_hash_t h, char hex[33])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = hx[c.digest[i] >> 4];
        hex[2 * i + 1] = hx[c.digest[i] & 15];
    }
    hex[32] = '\0';
}

static lmp_status hash_file_into(XXH3_state_t *st, const char *path, lmp_diag *d)
{
    lmp_map m;
    lmp_status rc = lmp_map_open(&m, path, d);
    if (rc != LMP_OK) return rc;
    /* in 64 MiB steps, dropping the pages behind us (files may be large) */
    for (size_t off = 0; off < m.size;) {
        size_t n = m.size - off < ((size_t)64 << 20) ? m.size - off : ((size_t)64 << 20);
        XXH3_128bits_update(st, m.data + off, n);
        lmp_map_release(&m, off, n);
        off += n;
    }
    lmp_map_close(&m);
    return LMP_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

lmp_status lmp_quality_hash_model(const char *path, char hex[33], char *what_out,
                                  size_t what_cap, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    XXH3_state_t *st = XXH3_createState();
    char *p = NULL, **names = NULL;
    size_t n = 0, cap = 0;
    DIR *dir = NULL;
    hex[0] = '\0';
    LMP_FAIL_IF(!st, LMP_ERR_NOMEM, "out of memory");
    XXH3_128bits_reset(st);
    LMP_FAIL_IF(!lmp_exists(path), LMP_ERR_IO, "%s: no such file or folder", path);
    if (!lmp_is_dir(path)) {
        LMP_FORWARD(hash_file_into(st, path, d));
        snprintf(what_out, what_cap, "file");
        goto done;
    }
    p = lmp_path_join(path, "manifest.json");
    LMP_FAIL_IF(!p, LMP_ERR_NOMEM, "out of memory");
    if (lmp_exists(p)) {
        LMP_FORWARD(hash_file_into(st, p, d));
        snprintf(what_out, what_cap, "manifest.json");
        goto done;
    }
    free(p);
    p = NULL;
    dir = opendir(path);
    LMP_FAIL_IF(!dir, LMP_ERR_IO, "%s: cannot list the folder", path);
    for (struct dirent *e; (e = readdir(dir));) {
        if (!ends_with(e->d_name, ".safetensors") && strcmp(e->d_name, "config.json") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **t = realloc(names, cap * sizeof *t);
            LMP_FAIL_IF(!t, LMP_ERR_NOMEM, "out of memory");
            names = t;
        }
        names[n] = strdup(e->d_name);
        LMP_FAIL_IF(!names[n], LMP_ERR_NOMEM, "out of memory");
        n++;
    }
    /* config.json first, then the safetensors files in name order */
    qsort(names, n, sizeof *names, cmp_str);
    size_t nst = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            int is_cfg = !strcmp(names[i], "config.json");
            if (is_cfg != (pass == 0)) continue;
            p = lmp_path_join(path, names[i]);
            LMP_FAIL_IF(!p, LMP_ERR_NOMEM, "out of memory");
            LMP_FORWARD(hash_file_into(st, p, d));
            free(p);
            p = NULL;
            nst += !is_cfg;
        }
    }
    snprintf(what_out, what_cap, "config.json + %zu safetensors file%s", nst, nst == 1 ? "" : "s");
done:
    to_hex(XXH3_128bits_digest(st), hex);
out:
    if (dir) closedir(dir);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    free(p);
    XXH3_freeState(st);
    return rc;
}

/* ------------------------------------------------------------------- JSON */

static const char *source_name(lmp_quality_source s)
{
    return s == LMP_QSRC_TEXT ? "text" : s == LMP_QSRC_TOKENS ? "tokens" : "self";
}

/* cJSON has no NaN / infinity: those become null. Finite numbers are
 * written with %.17g as raw JSON: cJSON's own printing accepts a 15-digit
 * form that reads back within an epsilon, not exactly, and a baseline
 * report must compare equal to the run that wrote it. Integers print as
 * integers ("2040"). */
static void add_num(cJSON *o, const char *k, double v)
{
    char buf[40];
    if (!isfinite(v)) {
        cJSON_AddNullToObject(o, k);
        return;
    }
    snprintf(buf, sizeof buf, "%.17g", v);
    cJSON_AddRawToObject(o, k, buf);
}

static void add_str(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

char *lmp_quality_report_json(const lmp_quality_report *r, const lmp_quality_meta *meta,
                              const lmp_gate_result *gates, int n_gates)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    add_str(root, "lmpack_version", LMP_VERSION);
    add_num(root, "kld_mean", r->kld_mean);
    add_num(root, "kld_median", r->kld_median);
    add_num(root, "kld_p99", r->kld_p99);
    add_num(root, "kld_max", r->kld_max);
    add_num(root, "top1_agreement", r->top1_agreement);
    add_num(root, "ppl_ref", r->ppl_ref);
    add_num(root, "ppl_quant", r->ppl_quant);
    add_num(root, "ppl_ratio", r->ppl_ratio);
    add_num(root, "nll_ref", r->nll_ref);
    add_num(root, "nll_quant", r->nll_quant);
    add_num(root, "top_prob_rms", r->top_prob_rms);
    add_num(root, "positions", (double)r->positions);
    add_num(root, "sequences", (double)r->sequences);
    add_num(root, "bits_per_weight", r->bits_per_weight);
    add_num(root, "weights_rel_rmse", r->weights_rel_rmse);
    add_str(root, "tokens_xxh3", r->tokens_xxh3);
    cJSON *s = cJSON_AddObjectToObject(root, "settings");
    if (s) {
        add_str(s, "source", source_name(r->source));
        add_str(s, "file", meta ? meta->source_path : NULL);
        if (r->source == LMP_QSRC_SELF) {
            add_num(s, "self_tokens", (double)r->self_tokens);
            add_num(s, "seed", (double)r->seed);
            add_num(s, "temperature", 1.0);
        }
        add_num(s, "ctx", r->ctx);
        add_num(s, "vocab", r->vocab);
        add_str(s, "log", "natural");
    }
    for (int k = 0; k < 2 && meta; k++) {
        cJSON *m = cJSON_AddObjectToObject(root, k ? "quantized" : "reference");
        if (!m) continue;
        add_str(m, "path", k ? meta->quant_path : meta->ref_path);
        add_str(m, "source", k ? r->quant_source : r->ref_source);
        add_str(m, "kv_cache", k ? r->quant_kv : r->ref_kv);
        add_str(m, "xxh3_128", k ? meta->quant_hash : meta->ref_hash);
        add_str(m, "hashed", k ? meta->quant_hashed : meta->ref_hashed);
    }
    if (meta) add_str(root, "integrity", meta->integrity);
    cJSON *ta = cJSON_AddArrayToObject(root, "tensors");
    for (size_t i = 0; ta && i < r->n_tensors; i++) {
        const lmp_tensor_err *e = &r->tensors[i];
        cJSON *t = cJSON_CreateObject();
        if (!t) break;
        add_str(t, "name", e->name);
        add_str(t, "kind", e->kind);
        if (e->group) {
            add_num(t, "group", e->group);
            add_str(t, "scheme", lmp_q4_scheme_name(e->scheme));
        }
        add_num(t, "rows", e->rows);
        add_num(t, "cols", e->cols);
        add_num(t, "bits_per_weight", e->bits_per_weight);
        add_num(t, "rel_rmse", e->rel_rmse);
        add_num(t, "max_abs_err", e->max_abs);
        cJSON_AddItemToArray(ta, t);
    }
    cJSON *ga = cJSON_AddArrayToObject(root, "gates");
    int passed = 1;
    for (int i = 0; ga && i < n_gates; i++) {
        cJSON *g = cJSON_CreateObject();
        if (!g) break;
        add_str(g, "gate", gates[i].gate);
        add_str(g, "metric", gates[i].metric);
        add_num(g, "value", gates[i].value);
        add_num(g, "limit", gates[i].limit);
        cJSON_AddBoolToObject(g, "ok", gates[i].ok);
        cJSON_AddItemToArray(ga, g);
        passed = passed && gates[i].ok;
    }
    cJSON_AddBoolToObject(root, "passed", passed);
    add_num(root, "seconds", r->seconds);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    return out;
}
