/* manifest.json: generation from a bundle's files, canonical printing, and
 * the strict reader. Schema: docs/MANIFEST.md. */
#include "manifest/manifest.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "quantize/q4.h"

#define MF "manifest.json"
#define MAX_U53 9007199254740992.0 /* 2^53: integers above are not exact in JSON doubles */

/* ---------------------------------------------------------------- names */

int lmp_bundle_name_ok(const char *name)
{
    if (!name) return 0;
    const char *base;
    if (!strncmp(name, "chunks/", 7))
        base = name + 7;
    else if (!strncmp(name, "tokenizer/", 10))
        base = name + 10;
    else
        return 0;
    size_t n = strlen(base);
    if (n < 1 || n > 200 || base[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = base[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return strstr(base, "..") == NULL;
}

void lmp_bundle_chunk_name(int role, int first, int last, char *buf, size_t cap)
{
    if (role == LMP_CHUNK_HEAD)
        snprintf(buf, cap, "chunks/head.zst");
    else
        snprintf(buf, cap, "chunks/layers-%02d-%02d.zst", first, last);
}

void lmp_manifest_free(lmp_manifest *m)
{
    if (!m) return;
    free(m->name);
    free(m->config_json);
    for (size_t i = 0; i < m->n_tokenizer; i++) free(m->tokenizer[i].file);
    free(m->tokenizer);
    for (size_t i = 0; i < m->n_chunks; i++) {
        free(m->chunks[i].file);
        free(m->chunks[i].tensors);
    }
    free(m->chunks);
    free(m);
}

/* ------------------------------------------------------- config helpers */

/* Integer field of the config object, or dflt when absent/not integral. */
static long cfg_int(const cJSON *cfg, const char *key, long dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
        fabs(v->valuedouble) > 1e12)
        return dflt;
    return (long)v->valuedouble;
}

typedef struct cfg_facts {
    long n_layers, n_heads, n_kv, head_dim, hidden, ctx;
    const char *arch, *model_type;
} cfg_facts;

static void cfg_read(const cJSON *cfg, cfg_facts *f)
{
    f->n_layers = cfg_int(cfg, "num_hidden_layers", 0);
    f->hidden = cfg_int(cfg, "hidden_size", 0);
    f->n_heads = cfg_int(cfg, "num_attention_heads", 0);
    f->n_kv = cfg_int(cfg, "num_key_value_heads", f->n_heads);
    f->head_dim = cfg_int(cfg, "head_dim", f->n_heads > 0 ? f->hidden / f->n_heads : 0);
    f->ctx = cfg_int(cfg, "max_position_embeddings", 0);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cfg, "architectures");
    const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
    f->arch = cJSON_IsString(a0) ? a0->valuestring : "";
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    f->model_type = cJSON_IsString(mt) ? mt->valuestring : "";
}

char *lmp_manifest_meta_json(const char *name, const char *config_json, size_t config_len)
{
    cJSON *cfg = cJSON_ParseWithLength(config_json, config_len);
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return NULL;
    }
    cJSON *root = cJSON_CreateObject();
    char *s = NULL;
    if (root && cJSON_AddStringToObject(root, "name", name)) {
        cJSON_AddItemToObject(root, "config", cfg);
        cfg = NULL;
        s = cJSON_PrintUnformatted(root);
    }
    cJSON_Delete(cfg);
    cJSON_Delete(root);
    return s;
}

/* --------------------------------------------------------------- printing */

static uint64_t tensor_nelem(const lmp_chunk_tensor *t)
{
    uint64_t n = 1;
    for (int k = 0; k < t->ndim; k++) n *= (uint64_t)t->shape[k];
    return n;
}

static cJSON *num(double v)
{
    return cJSON_CreateNumber(v);
}

/* cJSON_Add* return NULL on OOM; we check the final print instead, since
 * every failure leaves the tree incomplete and cJSON_Print then still
 * prints; so build with a flag. */
typedef struct pctx {
    int oom;
} pctx;

static void add(pctx *p, cJSON *obj, const char *key, cJSON *item)
{
    if (!item) {
        p->oom = 1;
        return;
    }
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        p->oom = 1;
    }
}
static void push(pctx *p, cJSON *arr, cJSON *item)
{
    if (!item) {
        p->oom = 1;
        return;
    }
    if (!cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        p->oom = 1;
    }
}

static double round4(double x)
{
    return round(x * 10000.0) / 10000.0;
}

typedef struct qrow {
    int kind, scheme, group;
    uint64_t tensors, weights;
} qrow;

static int qrow_cmp(const void *a, const void *b)
{
    const qrow *x = a, *y = b;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    if (x->scheme != y->scheme) return x->scheme < y->scheme ? -1 : 1;
    if (x->group != y->group) return x->group < y->group ? -1 : 1;
    return 0;
}

static cJSON *build_tree(const lmp_manifest *m, pctx *p)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *cfg = m->config_json ? cJSON_Parse(m->config_json) : cJSON_CreateObject();
    qrow *q = NULL;
    size_t nq = 0, qcap = 0;
    if (!root || !cfg) {
        p->oom = 1;
        cJSON_Delete(cfg);
        return root;
    }
    cfg_facts f;
    cfg_read(cfg, &f);
    add(p, root, "format", cJSON_CreateString(LMP_MANIFEST_FORMAT));
    add(p, root, "version", num(LMP_MANIFEST_VERSION));
    cJSON *model = cJSON_CreateObject();
    add(p, root, "model", model);
    if (model) {
        add(p, model, "name", cJSON_CreateString(m->name ? m->name : ""));
        add(p, model, "architecture", cJSON_CreateString(f.arch));
        add(p, model, "model_type", cJSON_CreateString(f.model_type));
    }
    /* config is referenced by f's strings: add a copy */
    add(p, root, "config", cJSON_Duplicate(cfg, 1));

    /* quantization summary and totals */
    uint64_t weights = 0, tensor_bytes = 0, raw_bytes = 0, zbytes = 0, tokbytes = 0;
    for (size_t c = 0; c < m->n_chunks; c++) {
        const lmp_manifest_chunk *ch = &m->chunks[c];
        raw_bytes += ch->raw_size;
        zbytes += ch->compressed_size;
        for (size_t i = 0; i < ch->n_tensors; i++) {
            const lmp_chunk_tensor *t = &ch->tensors[i];
            uint64_t ne = tensor_nelem(t);
            weights += ne;
            tensor_bytes += t->size;
            size_t k = 0;
            while (k < nq && !(q[k].kind == t->kind && q[k].scheme == t->scheme &&
                               q[k].group == t->group))
                k++;
            if (k == nq) {
                if (nq == qcap) {
                    size_t nc = qcap ? qcap * 2 : 8;
                    qrow *nqv = realloc(q, nc * sizeof *q);
                    if (!nqv) {
                        p->oom = 1;
                        continue;
                    }
                    q = nqv;
                    qcap = nc;
                }
                q[nq++] = (qrow){t->kind, t->scheme, t->group, 0, 0};
            }
            q[k].tensors++;
            q[k].weights += ne;
        }
    }
    for (size_t i = 0; i < m->n_tokenizer; i++) tokbytes += m->tokenizer[i].size;
    if (nq) qsort(q, nq, sizeof *q, qrow_cmp);
    cJSON *quant = cJSON_CreateObject(), *qa = cJSON_CreateArray();
    add(p, root, "quantization", quant);
    if (quant) add(p, quant, "formats", qa);
    else cJSON_Delete(qa);
    for (size_t k = 0; qa && k < nq; k++) {
        cJSON *r = cJSON_CreateObject();
        push(p, qa, r);
        if (!r) continue;
        const char *kn = lmp_chunk_kind_name(q[k].kind);
        add(p, r, "kind", cJSON_CreateString(kn ? kn : "?"));
        add(p, r, "scheme", num(q[k].scheme));
        const char *sn = q[k].scheme ? lmp_q4_scheme_name(q[k].scheme) : "none";
        add(p, r, "scheme_name", cJSON_CreateString(sn ? sn : "unknown"));
        add(p, r, "group_size", num(q[k].group));
        add(p, r, "tensors", num((double)q[k].tensors));
        add(p, r, "weights", num((double)q[k].weights));
    }

    cJSON *tok = cJSON_CreateArray();
    add(p, root, "tokenizer", tok);
    for (size_t i = 0; tok && i < m->n_tokenizer; i++) {
        cJSON *r = cJSON_CreateObject();
        push(p, tok, r);
        if (!r) continue;
        add(p, r, "file", cJSON_CreateString(m->tokenizer[i].file ? m->tokenizer[i].file : ""));
        add(p, r, "size", num((double)m->tokenizer[i].size));
        add(p, r, "xxh3", cJSON_CreateString(m->tokenizer[i].xxh3));
    }

    cJSON *chunks = cJSON_CreateArray();
    add(p, root, "chunks", chunks);
    for (size_t c = 0; chunks && c < m->n_chunks; c++) {
        const lmp_manifest_chunk *ch = &m->chunks[c];
        cJSON *r = cJSON_CreateObject();
        push(p, chunks, r);
        if (!r) continue;
        add(p, r, "file", cJSON_CreateString(ch->file ? ch->file : ""));
        add(p, r, "role", cJSON_CreateString(ch->role == LMP_CHUNK_HEAD ? "head" : "layers"));
        if (ch->role != LMP_CHUNK_HEAD) {
            cJSON *l = cJSON_CreateArray();
            add(p, r, "layers", l);
            if (l) {
                push(p, l, num(ch->first_layer));
                push(p, l, num(ch->last_layer));
            }
        }
        add(p, r, "compressed_size", num((double)ch->compressed_size));
        add(p, r, "raw_size", num((double)ch->raw_size));
        add(p, r, "xxh3_compressed", cJSON_CreateString(ch->xxh3_compressed));
        add(p, r, "xxh3_raw", cJSON_CreateString(ch->xxh3_raw));
        cJSON *ts = cJSON_CreateArray();
        add(p, r, "tensors", ts);
        for (size_t i = 0; ts && i < ch->n_tensors; i++) {
            const lmp_chunk_tensor *t = &ch->tensors[i];
            cJSON *e = cJSON_CreateObject();
            push(p, ts, e);
            if (!e) continue;
            const char *kn = lmp_chunk_kind_name(t->kind);
            add(p, e, "name", cJSON_CreateString(t->name));
            add(p, e, "kind", cJSON_CreateString(kn ? kn : "?"));
            cJSON *sh = cJSON_CreateArray();
            add(p, e, "shape", sh);
            for (int k = 0; sh && k < t->ndim; k++) push(p, sh, num((double)t->shape[k]));
            add(p, e, "group", num(t->group));
            add(p, e, "scheme", num(t->scheme));
            add(p, e, "offset", num((double)t->offset));
            add(p, e, "size", num((double)t->size));
        }
    }

    /* What must be on hand before the first layer runs: tokenizer + head.
     * The first token then streams the layer chunks in load order. */
    cJSON *crit = cJSON_CreateObject(), *cf = cJSON_CreateArray();
    add(p, root, "critical", crit);
    if (crit) add(p, crit, "files", cf);
    else cJSON_Delete(cf);
    uint64_t cbytes = tokbytes;
    for (size_t i = 0; cf && i < m->n_tokenizer; i++)
        push(p, cf, cJSON_CreateString(m->tokenizer[i].file ? m->tokenizer[i].file : ""));
    if (m->n_chunks > 0) {
        if (cf) push(p, cf, cJSON_CreateString(m->chunks[0].file ? m->chunks[0].file : ""));
        cbytes += m->chunks[0].compressed_size;
    }
    if (crit) add(p, crit, "bytes", num((double)cbytes));

    cJSON *tot = cJSON_CreateObject();
    add(p, root, "totals", tot);
    if (tot) {
        add(p, tot, "files", num((double)(m->n_chunks + m->n_tokenizer)));
        add(p, tot, "bundle_bytes", num((double)(zbytes + tokbytes)));
        add(p, tot, "chunk_bytes", num((double)zbytes));
        add(p, tot, "raw_bytes", num((double)raw_bytes));
        add(p, tot, "tensor_bytes", num((double)tensor_bytes));
        add(p, tot, "weights", num((double)weights));
        add(p, tot, "bits_per_weight", num(weights ? round4(8.0 * (double)tensor_bytes / (double)weights) : 0));
        add(p, tot, "bundle_bits_per_weight", num(weights ? round4(8.0 * (double)zbytes / (double)weights) : 0));
    }
    cJSON *rt = cJSON_CreateObject();
    add(p, root, "runtime", rt);
    if (rt) {
        add(p, rt, "context_length", num((double)f.ctx));
        add(p, rt, "layers", num((double)f.n_layers));
        /* fixed by the format (a reader re-prints the manifest and compares:
         * changing what is written here would turn every existing bundle
         * into a "damaged" one): the float32 cache, the largest the runtime
         * uses; int4 / int8 models run with binary16 by default, half this */
        add(p, rt, "kv_dtype", cJSON_CreateString("f32"));
        double kv = 2.0 * (double)f.n_layers * (double)f.n_kv * (double)f.head_dim * 4.0;
        add(p, rt, "kv_cache_bytes_per_token", num(kv > 0 ? kv : 0));
        add(p, rt, "weight_bytes", num((double)tensor_bytes));
    }
    free(q);
    cJSON_Delete(cfg);
    return root;
}

/* Print tree + self hash. Returns malloc'd text ending in "\n". */
static char *print_with_hash(cJSON *root, char hash_out[LMP_HASH_HEX])
{
    char *t0 = cJSON_Print(root);
    if (!t0) return NULL;
    char h[LMP_HASH_HEX];
    lmp_hash_hex(t0, strlen(t0), h);
    free(t0);
    if (hash_out) memcpy(hash_out, h, sizeof h);
    if (!cJSON_AddStringToObject(root, "manifest_xxh3", h)) return NULL;
    char *t = cJSON_Print(root);
    if (!t) return NULL;
    size_t n = strlen(t);
    char *r = realloc(t, n + 2);
    if (!r) {
        free(t);
        return NULL;
    }
    r[n] = '\n';
    r[n + 1] = '\0';
    return r;
}

char *lmp_manifest_print(const lmp_manifest *m)
{
    pctx p = {0};
    cJSON *root = build_tree(m, &p);
    char *s = NULL;
    if (root && !p.oom) s = print_with_hash(root, NULL);
    cJSON_Delete(root);
    return s;
}

lmp_status lmp_manifest_write(const lmp_manifest *m, const char *dir, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *path = lmp_path_join(dir, MF);
    char *text = lmp_manifest_print(m);
    lmp_out o = {0};
    LMP_FAIL_IF(!path || !text, LMP_ERR_NOMEM, "%s: out of memory", MF);
    LMP_FORWARD(lmp_out_open(&o, path, d));
    LMP_FORWARD(lmp_out_write(&o, text, strlen(text), d));
    LMP_FORWARD(lmp_out_commit(&o, d));
out:
    lmp_out_abort(&o);
    free(path);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------- reading */

static int get_uint(const cJSON *o, const char *key, double max, uint64_t *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it)) return 0;
    double x = it->valuedouble;
    if (!isfinite(x) || x < 0 || x > max || x != floor(x)) return 0;
    *v = (uint64_t)x;
    return 1;
}

static const char *get_str(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) && it->valuestring ? it->valuestring : NULL;
}

static int hex_ok(const char *s)
{
    if (!s || strlen(s) != 32) return 0;
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

static lmp_status parse_tensor(const cJSON *e, lmp_chunk_tensor *t, const char *file, size_t i,
                               lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const char *name = get_str(e, "name"), *kind = get_str(e, "kind");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    uint64_t g = 0, s = 0, off = 0, size = 0;
    LMP_FAIL_IF(!cJSON_IsObject(e) || !name || !kind || !cJSON_IsArray(sh), LMP_ERR_FORMAT,
                MF ": %s: tensor %zu: needs name, kind, shape", file, i);
    size_t nl = strlen(name);
    LMP_FAIL_IF(nl < 1 || nl > LMP_CHUNK_NAME_MAX, LMP_ERR_FORMAT,
                MF ": %s: tensor %zu: name length %zu invalid", file, i, nl);
    for (size_t k = 0; k < nl; k++)
        LMP_FAIL_IF((unsigned char)name[k] < 0x21 || (unsigned char)name[k] > 0x7e, LMP_ERR_FORMAT,
                    MF ": %s: tensor %zu: name is not printable ASCII", file, i);
    memcpy(t->name, name, nl + 1);
    t->kind = lmp_chunk_kind_from_name(kind);
    LMP_FAIL_IF(t->kind < 0, LMP_ERR_FORMAT, MF ": %s: tensor '%s': kind '%s' unknown", file,
                name, kind);
    int nd = cJSON_GetArraySize(sh);
    LMP_FAIL_IF(nd < 1 || nd > LMP_CHUNK_MAX_DIMS, LMP_ERR_FORMAT,
                MF ": %s: tensor '%s': shape has %d dimensions (1..4)", file, name, nd);
    t->ndim = nd;
    for (int k = 0; k < nd; k++) {
        const cJSON *v = cJSON_GetArrayItem(sh, k);
        double x = cJSON_IsNumber(v) ? v->valuedouble : -1;
        LMP_FAIL_IF(!(x >= 1 && x <= 1099511627776.0 && x == floor(x)), LMP_ERR_FORMAT,
                    MF ": %s: tensor '%s': dimension %d invalid", file, name, k);
        t->shape[k] = (int64_t)x;
    }
    LMP_FAIL_IF(!get_uint(e, "group", 1 << 20, &g) || !get_uint(e, "scheme", 255, &s) ||
                    !get_uint(e, "offset", MAX_U53, &off) || !get_uint(e, "size", MAX_U53, &size),
                LMP_ERR_FORMAT, MF ": %s: tensor '%s': group/scheme/offset/size missing or invalid",
                file, name);
    t->group = (int)g;
    t->scheme = (int)s;
    t->offset = off;
    t->size = size;
out:
    return rc;
}

static lmp_status parse_chunk(const cJSON *e, lmp_manifest_chunk *ch, size_t idx, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const char *file = get_str(e, "file"), *role = get_str(e, "role");
    LMP_FAIL_IF(!cJSON_IsObject(e) || !file || !role, LMP_ERR_FORMAT,
                MF ": chunk %zu: needs file and role", idx);
    LMP_FAIL_IF(!lmp_bundle_name_ok(file) || strncmp(file, "chunks/", 7) != 0, LMP_ERR_FORMAT,
                MF ": chunk %zu: file name '%.80s' not allowed (plain name under chunks/)", idx,
                file);
    ch->file = strdup(file);
    LMP_FAIL_IF(!ch->file, LMP_ERR_NOMEM, MF ": out of memory");
    if (!strcmp(role, "head")) {
        ch->role = LMP_CHUNK_HEAD;
    } else if (!strcmp(role, "layers")) {
        ch->role = LMP_CHUNK_LAYERS;
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(e, "layers");
        const cJSON *a = cJSON_GetArrayItem(l, 0), *b = cJSON_GetArrayItem(l, 1);
        LMP_FAIL_IF(!cJSON_IsArray(l) || cJSON_GetArraySize(l) != 2 || !cJSON_IsNumber(a) ||
                        !cJSON_IsNumber(b) || a->valuedouble < 0 || b->valuedouble < a->valuedouble ||
                        b->valuedouble > 1000000 || a->valuedouble != floor(a->valuedouble) ||
                        b->valuedouble != floor(b->valuedouble),
                    LMP_ERR_FORMAT, MF ": %s: \"layers\" must be [first, last]", file);
        ch->first_layer = (int)a->valuedouble;
        ch->last_layer = (int)b->valuedouble;
    } else {
        LMP_FAIL(LMP_ERR_FORMAT, MF ": %s: role '%.40s' unknown", file, role);
    }
    char want[64];
    lmp_bundle_chunk_name(ch->role, ch->first_layer, ch->last_layer, want, sizeof want);
    LMP_FAIL_IF(strcmp(want, file) != 0, LMP_ERR_FORMAT,
                MF ": %s: file name does not match its role/layers (expected %s)", file, want);
    const char *hz = get_str(e, "xxh3_compressed"), *hr = get_str(e, "xxh3_raw");
    LMP_FAIL_IF(!get_uint(e, "compressed_size", MAX_U53, &ch->compressed_size) ||
                    !get_uint(e, "raw_size", MAX_U53, &ch->raw_size) || ch->compressed_size < 1 ||
                    ch->raw_size < LMP_CHUNK_HEADER,
                LMP_ERR_FORMAT, MF ": %s: compressed_size/raw_size missing or invalid", file);
    LMP_FAIL_IF(!hex_ok(hz) || !hex_ok(hr), LMP_ERR_FORMAT,
                MF ": %s: xxh3_compressed/xxh3_raw must be 32 lowercase hex digits", file);
    memcpy(ch->xxh3_compressed, hz, LMP_HASH_HEX);
    memcpy(ch->xxh3_raw, hr, LMP_HASH_HEX);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(e, "tensors");
    int nt = cJSON_IsArray(ts) ? cJSON_GetArraySize(ts) : -1;
    LMP_FAIL_IF(nt < 1 || (unsigned)nt > LMP_CHUNK_MAX_TENSORS, LMP_ERR_FORMAT,
                MF ": %s: \"tensors\" must list 1..%u tensors", file, LMP_CHUNK_MAX_TENSORS);
    ch->tensors = calloc((size_t)nt, sizeof *ch->tensors);
    LMP_FAIL_IF(!ch->tensors, LMP_ERR_NOMEM, MF ": out of memory");
    ch->n_tensors = (size_t)nt;
    uint64_t expect = 0;
    size_t i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, ts)
    {
        lmp_chunk_tensor *x = &ch->tensors[i];
        LMP_FORWARD(parse_tensor(t, x, file, i, d));
        expect = align_up(expect, LMP_CHUNK_ALIGN);
        LMP_FAIL_IF(x->offset != expect, LMP_ERR_FORMAT,
                    MF ": %s: tensor '%s': offset %llu (the layout puts it at %llu)", file,
                    x->name, (unsigned long long)x->offset, (unsigned long long)expect);
        LMP_FAIL_IF(x->size > ch->raw_size, LMP_ERR_FORMAT,
                    MF ": %s: tensor '%s': size exceeds the chunk", file, x->name);
        expect += x->size;
        i++;
    }
    LMP_FAIL_IF(expect + LMP_CHUNK_HEADER > ch->raw_size, LMP_ERR_FORMAT,
                MF ": %s: tensors (%llu bytes) do not fit raw_size %llu", file,
                (unsigned long long)expect, (unsigned long long)ch->raw_size);
out:
    return rc;
}

static int file_cmp(const void *a, const void *b)
{
    return strcmp(((const lmp_manifest_file *)a)->file, ((const lmp_manifest_file *)b)->file);
}

/* Derived fields the callers use. */
static void fill_derived(lmp_manifest *m)
{
    m->bundle_bytes = 0;
    m->n_weights = 0;
    for (size_t i = 0; i < m->n_tokenizer; i++) m->bundle_bytes += m->tokenizer[i].size;
    for (size_t c = 0; c < m->n_chunks; c++) {
        m->bundle_bytes += m->chunks[c].compressed_size;
        for (size_t i = 0; i < m->chunks[c].n_tensors; i++)
            m->n_weights += tensor_nelem(&m->chunks[c].tensors[i]);
    }
}

/* Load order and coverage rules shared by parse and scan. */
static lmp_status check_order(const lmp_manifest *m, const char *who, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    LMP_FAIL_IF(m->n_chunks < 2 || m->chunks[0].role != LMP_CHUNK_HEAD, LMP_ERR_FORMAT,
                "%s: the head chunk must come first, followed by layer chunks", who);
    int next = 0;
    for (size_t c = 1; c < m->n_chunks; c++) {
        const lmp_manifest_chunk *ch = &m->chunks[c];
        LMP_FAIL_IF(ch->role != LMP_CHUNK_LAYERS || ch->first_layer != next, LMP_ERR_FORMAT,
                    "%s: %s: chunks must cover layers in order (next layer expected: %d)", who,
                    ch->file, next);
        next = ch->last_layer + 1;
    }
    LMP_FAIL_IF(next != m->n_layers, LMP_ERR_FORMAT,
                "%s: chunks cover layers 0..%d but the config has %d layers", who, next - 1,
                m->n_layers);
    for (size_t i = 1; i < m->n_tokenizer; i++)
        LMP_FAIL_IF(strcmp(m->tokenizer[i - 1].file, m->tokenizer[i].file) >= 0, LMP_ERR_FORMAT,
                    "%s: tokenizer files must be listed once each, sorted by name", who);
out:
    return rc;
}

lmp_status lmp_manifest_parse(lmp_manifest **out, const char *text, size_t len, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_manifest *m = NULL;
    cJSON *root = NULL;
    char *again = NULL, *stored = NULL;
    *out = NULL;
    LMP_FAIL_IF(len > LMP_MANIFEST_MAX_BYTES, LMP_ERR_FORMAT, MF ": %zu bytes, above the limit",
                len);
    LMP_FAIL_IF(memchr(text, '\0', len) != NULL, LMP_ERR_FORMAT, MF ": contains a NUL byte");
    root = cJSON_ParseWithLength(text, len);
    LMP_FAIL_IF(!cJSON_IsObject(root), LMP_ERR_FORMAT, MF ": not a JSON object (parse error)");
    const char *fmt = get_str(root, "format");
    LMP_FAIL_IF(!fmt || strcmp(fmt, LMP_MANIFEST_FORMAT) != 0, LMP_ERR_FORMAT,
                MF ": \"format\" is not \"" LMP_MANIFEST_FORMAT "\"");
    uint64_t ver = 0;
    LMP_FAIL_IF(!get_uint(root, "version", 1e9, &ver), LMP_ERR_FORMAT, MF ": \"version\" missing");
    LMP_FAIL_IF(ver != LMP_MANIFEST_VERSION, LMP_ERR_UNSUPPORTED,
                MF ": version %llu (this lmpack reads %d)", (unsigned long long)ver,
                LMP_MANIFEST_VERSION);
    m = calloc(1, sizeof *m);
    LMP_FAIL_IF(!m, LMP_ERR_NOMEM, MF ": out of memory");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *name = get_str(model, "name");
    LMP_FAIL_IF(!name, LMP_ERR_FORMAT, MF ": \"model\".\"name\" missing");
    m->name = strdup(name);
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    LMP_FAIL_IF(!cJSON_IsObject(cfg), LMP_ERR_FORMAT, MF ": \"config\" must be an object");
    m->config_json = cJSON_PrintUnformatted(cfg);
    LMP_FAIL_IF(!m->name || !m->config_json, LMP_ERR_NOMEM, MF ": out of memory");
    cfg_facts f;
    cfg_read(cfg, &f);
    LMP_FAIL_IF(f.n_layers < 1 || f.n_layers > 100000, LMP_ERR_FORMAT,
                MF ": config.num_hidden_layers missing or invalid");
    m->n_layers = (int)f.n_layers;

    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "tokenizer");
    LMP_FAIL_IF(!cJSON_IsArray(tok), LMP_ERR_FORMAT, MF ": \"tokenizer\" must be an array");
    int ntok = cJSON_GetArraySize(tok);
    LMP_FAIL_IF(ntok > 64, LMP_ERR_FORMAT, MF ": %d tokenizer files (max 64)", ntok);
    if (ntok > 0) {
        m->tokenizer = calloc((size_t)ntok, sizeof *m->tokenizer);
        LMP_FAIL_IF(!m->tokenizer, LMP_ERR_NOMEM, MF ": out of memory");
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, tok)
    {
        lmp_manifest_file *tf = &m->tokenizer[m->n_tokenizer];
        const char *file = get_str(e, "file"), *h = get_str(e, "xxh3");
        LMP_FAIL_IF(!file || !h, LMP_ERR_FORMAT, MF ": tokenizer entry %zu: needs file and xxh3",
                    m->n_tokenizer);
        LMP_FAIL_IF(!lmp_bundle_name_ok(file) || strncmp(file, "tokenizer/", 10) != 0,
                    LMP_ERR_FORMAT,
                    MF ": tokenizer file name '%.80s' not allowed (plain name under tokenizer/)",
                    file);
        LMP_FAIL_IF(!hex_ok(h) || !get_uint(e, "size", MAX_U53, &tf->size), LMP_ERR_FORMAT,
                    MF ": %s: size/xxh3 missing or invalid", file);
        tf->file = strdup(file);
        LMP_FAIL_IF(!tf->file, LMP_ERR_NOMEM, MF ": out of memory");
        memcpy(tf->xxh3, h, LMP_HASH_HEX);
        m->n_tokenizer++;
    }

    const cJSON *chunks = cJSON_GetObjectItemCaseSensitive(root, "chunks");
    LMP_FAIL_IF(!cJSON_IsArray(chunks), LMP_ERR_FORMAT, MF ": \"chunks\" must be an array");
    int nch = cJSON_GetArraySize(chunks);
    LMP_FAIL_IF(nch < 2 || nch > 100001, LMP_ERR_FORMAT, MF ": %d chunks (need head + layers)",
                nch);
    m->chunks = calloc((size_t)nch, sizeof *m->chunks);
    LMP_FAIL_IF(!m->chunks, LMP_ERR_NOMEM, MF ": out of memory");
    cJSON_ArrayForEach(e, chunks)
    {
        m->n_chunks++;
        LMP_FORWARD(parse_chunk(e, &m->chunks[m->n_chunks - 1], m->n_chunks - 1, d));
    }
    LMP_FORWARD(check_order(m, MF, d));
    fill_derived(m);

    /* Canonical form and self-hash: the text must be exactly what we print. */
    const char *sh = get_str(root, "manifest_xxh3");
    LMP_FAIL_IF(!hex_ok(sh), LMP_ERR_FORMAT, MF ": \"manifest_xxh3\" missing or invalid");
    stored = strdup(sh);
    LMP_FAIL_IF(!stored, LMP_ERR_NOMEM, MF ": out of memory");
    {
        pctx p = {0};
        cJSON *tree = build_tree(m, &p);
        char h[LMP_HASH_HEX] = "";
        if (tree && !p.oom) again = print_with_hash(tree, h);
        cJSON_Delete(tree);
        LMP_FAIL_IF(!again, LMP_ERR_NOMEM, MF ": out of memory");
        LMP_FAIL_IF(strcmp(h, stored) != 0, LMP_ERR_INTEGRITY,
                    MF ": manifest_xxh3 mismatch (the manifest was edited or damaged)");
    }
    size_t alen = strlen(again);
    if (alen != len || memcmp(again, text, len) != 0) {
        size_t k = 0;
        while (k < len && k < alen && again[k] == text[k]) k++;
        LMP_FAIL(LMP_ERR_INTEGRITY,
                 MF ": not in canonical form (differs from its re-serialization at byte %zu)", k);
    }
    *out = m;
    m = NULL;
out:
    free(stored);
    free(again);
    cJSON_Delete(root);
    lmp_manifest_free(m);
    return rc;
}

lmp_status lmp_manifest_load(lmp_manifest **out, const char *dir, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *path = lmp_path_join(dir, MF), *text = NULL;
    size_t n = 0;
    *out = NULL;
    LMP_FAIL_IF(!path, LMP_ERR_NOMEM, MF ": out of memory");
    LMP_FORWARD(lmp_read_file(path, LMP_MANIFEST_MAX_BYTES, &text, &n, d));
    LMP_FORWARD(lmp_manifest_parse(out, text, n, d));
out:
    free(path);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------- scanning */

typedef struct scan_job {
    const char *dir;
    lmp_manifest_chunk *ch;
    char *meta;          /* head chunk's metadata (malloc'd, NUL-terminated) */
    lmp_diag d;
} scan_job;

static void scan_one(void *ctx, int i, int tid)
{
    (void)tid;
    scan_job *j = &((scan_job *)ctx)[i];
    lmp_diag *d = &j->d;
    lmp_status rc = LMP_OK;
    lmp_chunk c;
    memset(&c, 0, sizeof c);
    char *path = lmp_path_join(j->dir, j->ch->file);
    lmp_chunk_expect e = {UINT64_MAX, UINT64_MAX, "", ""};
    LMP_FAIL_IF(!path, LMP_ERR_NOMEM, "%s: out of memory", j->ch->file);
    LMP_FORWARD(lmp_chunk_load(&c, path, j->ch->file, &e, d));
    LMP_FAIL_IF(c.role != j->ch->role || c.first_layer != j->ch->first_layer ||
                    c.last_layer != j->ch->last_layer,
                LMP_ERR_FORMAT, "%s: header says %s [%d,%d], which does not match the file name",
                j->ch->file, c.role == LMP_CHUNK_HEAD ? "head" : "layers", c.first_layer,
                c.last_layer);
    j->ch->compressed_size = e.compressed_size;
    j->ch->raw_size = e.raw_size;
    memcpy(j->ch->xxh3_compressed, e.xxh3_compressed, LMP_HASH_HEX);
    memcpy(j->ch->xxh3_raw, e.xxh3_raw, LMP_HASH_HEX);
    j->ch->tensors = calloc(c.n_tensors, sizeof *j->ch->tensors);
    LMP_FAIL_IF(!j->ch->tensors, LMP_ERR_NOMEM, "%s: out of memory", j->ch->file);
    for (size_t k = 0; k < c.n_tensors; k++) {
        j->ch->tensors[k] = c.tensors[k];
        j->ch->tensors[k].data = NULL;
    }
    j->ch->n_tensors = c.n_tensors;
    if (c.role == LMP_CHUNK_HEAD) {
        LMP_FAIL_IF(c.meta_size == 0, LMP_ERR_FORMAT,
                    "%s: head chunk carries no metadata (name, config)", j->ch->file);
        j->meta = malloc(c.meta_size + 1);
        LMP_FAIL_IF(!j->meta, LMP_ERR_NOMEM, "%s: out of memory", j->ch->file);
        memcpy(j->meta, c.meta, c.meta_size);
        j->meta[c.meta_size] = '\0';
    } else {
        LMP_FAIL_IF(c.meta_size != 0, LMP_ERR_FORMAT, "%s: layer chunk carries metadata",
                    j->ch->file);
    }
out:
    (void)rc;
    lmp_chunk_free(&c);
    free(path);
}

static int parse_chunk_file_name(const char *base, int *role, int *first, int *last)
{
    if (!strcmp(base, "head.zst")) {
        *role = LMP_CHUNK_HEAD;
        *first = *last = 0;
        return 1;
    }
    int a, b, n = 0;
    if (sscanf(base, "layers-%d-%d.zst%n", &a, &b, &n) == 2 && base[n] == '\0' && a >= 0 &&
        b >= a && b <= 1000000) {
        char canon[64];
        lmp_bundle_chunk_name(LMP_CHUNK_LAYERS, a, b, canon, sizeof canon);
        if (strcmp(canon + 7, base) != 0) return 0;
        *role = LMP_CHUNK_LAYERS;
        *first = a;
        *last = b;
        return 1;
    }
    return 0;
}

static int chunk_order(const void *a, const void *b)
{
    const lmp_manifest_chunk *x = a, *y = b;
    if (x->role != y->role) return x->role == LMP_CHUNK_HEAD ? -1 : 1;
    return x->first_layer < y->first_layer ? -1 : x->first_layer > y->first_layer;
}

/* Entries of dir/sub other than . and .. (sorted, malloc'd strings). */
static lmp_status list_dir(const char *dir, const char *sub, char ***names, size_t *n,
                           int must_exist, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *path = lmp_path_join(dir, sub);
    DIR *dp = NULL;
    *names = NULL;
    *n = 0;
    size_t cap = 0;
    LMP_FAIL_IF(!path, LMP_ERR_NOMEM, "%s: out of memory", sub);
    dp = opendir(path);
    if (!dp) {
        LMP_FAIL_IF(must_exist, LMP_ERR_FORMAT, "%s: %s/ folder missing (not a bundle)", dir, sub);
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(dp))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **t = realloc(*names, nc * sizeof *t);
            LMP_FAIL_IF(!t, LMP_ERR_NOMEM, "%s: out of memory", sub);
            *names = t;
            cap = nc;
        }
        (*names)[*n] = strdup(de->d_name);
        LMP_FAIL_IF(!(*names)[*n], LMP_ERR_NOMEM, "%s: out of memory", sub);
        (*n)++;
    }
    for (size_t i = 1; i < *n; i++) /* insertion sort: few entries */
        for (size_t k = i; k > 0 && strcmp((*names)[k - 1], (*names)[k]) > 0; k--) {
            char *t = (*names)[k];
            (*names)[k] = (*names)[k - 1];
            (*names)[k - 1] = t;
        }
out:
    if (dp) closedir(dp);
    free(path);
    return rc;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

lmp_status lmp_manifest_scan(lmp_manifest **out, const char *dir, lmp_pool *pool, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_manifest *m = NULL;
    char **cn = NULL, **tn = NULL;
    size_t ncn = 0, ntn = 0;
    scan_job *jobs = NULL;
    cJSON *meta = NULL;
    lmp_map tm = {0};
    char *tpath = NULL;
    *out = NULL;
    m = calloc(1, sizeof *m);
    LMP_FAIL_IF(!m, LMP_ERR_NOMEM, "out of memory");
    LMP_FORWARD(list_dir(dir, "chunks", &cn, &ncn, 1, d));
    LMP_FAIL_IF(ncn < 2, LMP_ERR_FORMAT, "%s/chunks: %zu chunk files (need head + layers)", dir,
                ncn);
    m->chunks = calloc(ncn, sizeof *m->chunks);
    jobs = calloc(ncn, sizeof *jobs);
    LMP_FAIL_IF(!m->chunks || !jobs, LMP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ncn; i++) {
        lmp_manifest_chunk *ch = &m->chunks[i];
        LMP_FAIL_IF(!parse_chunk_file_name(cn[i], &ch->role, &ch->first_layer, &ch->last_layer),
                    LMP_ERR_FORMAT, "chunks/%s: not a chunk file name (head.zst, layers-AA-BB.zst)",
                    cn[i]);
        size_t l = strlen(cn[i]) + 8;
        ch->file = malloc(l);
        LMP_FAIL_IF(!ch->file, LMP_ERR_NOMEM, "out of memory");
        snprintf(ch->file, l, "chunks/%s", cn[i]);
        m->n_chunks++;
    }
    qsort(m->chunks, m->n_chunks, sizeof *m->chunks, chunk_order);
    for (size_t i = 0; i < ncn; i++) {
        jobs[i].dir = dir;
        jobs[i].ch = &m->chunks[i];
        lmp_diag_clear(&jobs[i].d);
    }
    if (pool)
        lmp_pool_run(pool, scan_one, jobs, (int)ncn);
    else
        for (size_t i = 0; i < ncn; i++) scan_one(jobs, (int)i, 0);
    for (size_t i = 0; i < ncn; i++)
        if (jobs[i].d.status != LMP_OK) {
            if (d && d->status == LMP_OK) *d = jobs[i].d;
            rc = jobs[i].d.status;
            goto out;
        }
    LMP_FAIL_IF(m->chunks[0].role != LMP_CHUNK_HEAD || !jobs[0].meta, LMP_ERR_FORMAT,
                "%s/chunks: no head.zst", dir);
    meta = cJSON_Parse(jobs[0].meta);
    const char *name = get_str(meta, "name");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(meta, "config");
    LMP_FAIL_IF(!name || !cJSON_IsObject(cfg), LMP_ERR_FORMAT,
                "chunks/head.zst: metadata is not {\"name\": ..., \"config\": {...}}");
    m->name = strdup(name);
    m->config_json = cJSON_PrintUnformatted(cfg);
    LMP_FAIL_IF(!m->name || !m->config_json, LMP_ERR_NOMEM, "out of memory");
    cfg_facts f;
    cfg_read(cfg, &f);
    LMP_FAIL_IF(f.n_layers < 1 || f.n_layers > 100000, LMP_ERR_FORMAT,
                "chunks/head.zst: config.num_hidden_layers missing or invalid");
    m->n_layers = (int)f.n_layers;

    LMP_FORWARD(list_dir(dir, "tokenizer", &tn, &ntn, 0, d));
    LMP_FAIL_IF(ntn > 64, LMP_ERR_FORMAT, "tokenizer/: %zu files (max 64)", ntn);
    if (ntn) {
        m->tokenizer = calloc(ntn, sizeof *m->tokenizer);
        LMP_FAIL_IF(!m->tokenizer, LMP_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < ntn; i++) {
        lmp_manifest_file *tf = &m->tokenizer[i];
        size_t l = strlen(tn[i]) + 11;
        tf->file = malloc(l);
        LMP_FAIL_IF(!tf->file, LMP_ERR_NOMEM, "out of memory");
        snprintf(tf->file, l, "tokenizer/%s", tn[i]);
        m->n_tokenizer++;
        LMP_FAIL_IF(!lmp_bundle_name_ok(tf->file), LMP_ERR_FORMAT,
                    "%s: file name not allowed in a bundle", tf->file);
        tpath = lmp_path_join(dir, tf->file);
        LMP_FAIL_IF(!tpath, LMP_ERR_NOMEM, "out of memory");
        LMP_FORWARD(lmp_map_open(&tm, tpath, d));
        tf->size = tm.size;
        lmp_hash_hex(tm.data ? (const void *)tm.data : "", tm.size, tf->xxh3);
        lmp_map_close(&tm);
        free(tpath);
        tpath = NULL;
    }
    qsort(m->tokenizer, m->n_tokenizer, sizeof *m->tokenizer, file_cmp);
    LMP_FORWARD(check_order(m, dir, d));
    fill_derived(m);
    *out = m;
    m = NULL;
out:
    if (jobs)
        for (size_t i = 0; i < ncn; i++) free(jobs[i].meta);
    free(jobs);
    free(tpath);
    lmp_map_close(&tm);
    cJSON_Delete(meta);
    free_names(cn, ncn);
    free_names(tn, ntn);
    lmp_manifest_free(m);
    return rc;
}

/* ------------------------------------------------------------- tokenizer */

static int is_manifest_path(const char *path)
{
    size_t n = strlen(path), m = strlen(MF);
    return n >= m && !strcmp(path + n - m, MF) && (n == m || path[n - m - 1] == '/');
}

/* The bundle folder for `path` (malloc'd). */
static char *bundle_dir(const char *path)
{
    if (!is_manifest_path(path)) return strdup(path);
    size_t n = strlen(path) - strlen(MF);
    char *dir = malloc(n + 2);
    if (!dir) return NULL;
    if (n == 0) {
        strcpy(dir, ".");
    } else {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    return dir;
}

int lmp_bundle_is(const char *path)
{
    if (!path) return 0;
    if (is_manifest_path(path)) return lmp_exists(path) && !lmp_is_dir(path);
    if (!lmp_is_dir(path)) return 0;
    char *p = lmp_path_join(path, MF);
    int r = p && lmp_exists(p);
    free(p);
    return r;
}

lmp_status lmp_bundle_tokenizer_path(const char *path, char **out, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_manifest *m = NULL;
    lmp_map mp = {0};
    char *dir = bundle_dir(path), *fp = NULL;
    *out = NULL;
    LMP_FAIL_IF(!dir, LMP_ERR_NOMEM, "%s: out of memory", path);
    rc = lmp_manifest_load(&m, dir, d);
    if (rc != LMP_OK) {
        lmp_diag_prefix(d, dir);
        goto out;
    }
    int have = 0;
    for (size_t i = 0; i < m->n_tokenizer; i++) {
        const lmp_manifest_file *f = &m->tokenizer[i];
        have |= !strcmp(f->file, "tokenizer/tokenizer.json");
        fp = lmp_path_join(dir, f->file);
        LMP_FAIL_IF(!fp, LMP_ERR_NOMEM, "%s: out of memory", dir);
        lmp_diag sub;
        lmp_diag_clear(&sub);
        LMP_FAIL_IF(lmp_map_open(&mp, fp, &sub) != LMP_OK, LMP_ERR_INTEGRITY,
                    "%s: %s: missing or unreadable", dir, f->file);
        LMP_FAIL_IF(mp.size != f->size, LMP_ERR_INTEGRITY,
                    "%s: %s: size mismatch (%zu bytes, manifest says %llu)", dir, f->file, mp.size,
                    (unsigned long long)f->size);
        char h[LMP_HASH_HEX];
        lmp_hash_hex(mp.data ? (const void *)mp.data : "", mp.size, h);
        LMP_FAIL_IF(strcmp(h, f->xxh3) != 0, LMP_ERR_INTEGRITY, "%s: %s: xxh3 mismatch", dir,
                    f->file);
        lmp_map_close(&mp);
        free(fp);
        fp = NULL;
    }
    LMP_FAIL_IF(!have, LMP_ERR_IO, "%s: the bundle carries no tokenizer/tokenizer.json", dir);
    *out = lmp_path_join(dir, "tokenizer");
    LMP_FAIL_IF(!*out, LMP_ERR_NOMEM, "%s: out of memory", dir);
out:
    lmp_map_close(&mp);
    free(fp);
    free(dir);
    lmp_manifest_free(m);
    return rc;
}
