/* config.json for the Llama family: parse, validate, serialize, and check a
 * checkpoint against it (see formats/config.h for the contract).
 *
 * Defaults follow transformers' LlamaConfig where a key is absent (or null):
 * num_key_value_heads = num_attention_heads, head_dim = hidden / heads,
 * rope_theta 10000, rms_norm_eps 1e-6, max_position_embeddings 2048,
 * tie_word_embeddings false, hidden_act silu. Everything that changes the
 * network in a way lmpack does not implement (biases, other activations,
 * rope scaling, sliding window) is LMP_ERR_UNSUPPORTED naming the key.
 */
#include "formats/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"

/* Upper bounds: far above any real Llama (405B: hidden 16384, MLP 53248,
 * 126 layers, 128 heads; vocabularies up to ~256k), low enough that every
 * product of two or three of them fits in int64 (and shapes in int). */
#define MAX_HIDDEN (1 << 17)
#define MAX_INTER (1 << 20)
#define MAX_LAYERS 1024
#define MAX_HEADS 1024
#define MAX_HEAD_DIM 1024
#define MAX_VOCAB (1 << 24)
#define MAX_POS (1 << 28)
#define MAX_CONFIG_BYTES (16u << 20)

/* Keys read from the root; each may appear at most once (cJSON would take
 * the first, Python's json the last: a duplicate is ambiguous). */
static const char *const known_keys[] = {
    "model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
    "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters",
    "tie_word_embeddings", "bos_token_id", "eos_token_id", "torch_dtype", "dtype", "hidden_act",
    "attention_bias", "mlp_bias", "sliding_window", "use_sliding_window",
};

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "a list";
    if (cJSON_IsObject(v)) return "an object";
    return "invalid";
}

/* Absent and null are the same for every optional key. */
static const cJSON *get(const cJSON *root, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

/* An integral JSON number in [lo, hi]. */
static lmp_status int_value(const cJSON *v, const char *fname, const char *key, long lo, long hi,
                            long *out, lmp_diag *d)
{
    if (!cJSON_IsNumber(v))
        return lmp_fail(d, LMP_ERR_FORMAT, "%s: %s must be an integer, not %s", fname, key,
                        json_type_name(v));
    double x = v->valuedouble;
    if (!isfinite(x) || x != floor(x))
        return lmp_fail(d, LMP_ERR_FORMAT, "%s: %s %.17g is not an integer", fname, key, x);
    if (x < (double)lo || x > (double)hi)
        return lmp_fail(d, LMP_ERR_FORMAT, "%s: %s %.17g is outside [%ld, %ld]", fname, key, x, lo,
                        hi);
    *out = (long)x;
    return LMP_OK;
}

static lmp_status req_int(const cJSON *root, const char *fname, const char *key, long lo, long hi,
                          int *out, lmp_diag *d)
{
    const cJSON *v = get(root, key);
    if (!v) return lmp_fail(d, LMP_ERR_FORMAT, "%s: required field %s is missing", fname, key);
    long x = 0;
    lmp_status rc = int_value(v, fname, key, lo, hi, &x, d);
    if (rc == LMP_OK) *out = (int)x;
    return rc;
}

/* Optional integer: *out untouched when absent. */
static lmp_status opt_int(const cJSON *root, const char *fname, const char *key, long lo, long hi,
                          int *out, lmp_diag *d)
{
    const cJSON *v = get(root, key);
    if (!v) return LMP_OK;
    long x = 0;
    lmp_status rc = int_value(v, fname, key, lo, hi, &x, d);
    if (rc == LMP_OK) *out = (int)x;
    return rc;
}

/* Optional positive finite number below `hi`. */
static lmp_status opt_pos_number(const cJSON *v, const char *fname, const char *key, double hi,
                                 float *out, lmp_diag *d)
{
    if (!v) return LMP_OK;
    if (!cJSON_IsNumber(v))
        return lmp_fail(d, LMP_ERR_FORMAT, "%s: %s must be a number, not %s", fname, key,
                        json_type_name(v));
    double x = v->valuedouble;
    /* Range-check the double before the cast (out of float range is UB),
     * then the float itself (rounding may reach 0 or hi). */
    if (!isfinite(x) || !(x > 0) || x >= hi || !((float)x > 0.0f) || (double)(float)x >= hi)
        return lmp_fail(d, LMP_ERR_FORMAT, "%s: %s %g is not in (0, %g)", fname, key, x, hi);
    *out = (float)x;
    return LMP_OK;
}

static lmp_status opt_bool(const cJSON *root, const char *fname, const char *key, int *out,
                           lmp_diag *d)
{
    const cJSON *v = get(root, key);
    if (!v) return LMP_OK;
    if (!cJSON_IsBool(v))
        return lmp_fail(d, LMP_ERR_FORMAT, "%s: %s must be true or false, not %s", fname, key,
                        json_type_name(v));
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return LMP_OK;
}

/* rope_scaling / rope_parameters: only the unscaled ("default") RoPE is
 * implemented. Returns the rope_theta found inside (0 if none). */
static lmp_status rope_object(const cJSON *v, const char *fname, const char *key, float *theta,
                              lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    if (!v) return LMP_OK;
    LMP_FAIL_IF(!cJSON_IsObject(v), LMP_ERR_FORMAT, "%s: %s must be an object or null, not %s",
                fname, key, json_type_name(v));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "rope_type");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(v, "type"); /* older spelling */
    if (t) {
        LMP_FAIL_IF(!cJSON_IsString(t), LMP_ERR_FORMAT, "%s: %s.rope_type must be a string", fname,
                    key);
        LMP_FAIL_IF(strcmp(t->valuestring, "default") != 0, LMP_ERR_UNSUPPORTED,
                    "%s: %s type '%.40s' is not supported (only unscaled RoPE)", fname, key,
                    t->valuestring);
    } else {
        /* rope_scaling without a type is not something we can interpret. */
        LMP_FAIL_IF(strcmp(key, "rope_scaling") == 0, LMP_ERR_UNSUPPORTED,
                    "%s: rope_scaling without a rope_type is not supported", fname);
    }
    char sub[64];
    snprintf(sub, sizeof sub, "%s.rope_theta", key);
    LMP_FORWARD(opt_pos_number(get(v, "rope_theta"), fname, sub, 1e12, theta, d));
out:
    return rc;
}

static lmp_status token_id(const cJSON *v, const char *fname, const char *key, int vocab,
                           int *out, lmp_diag *d)
{
    long x = 0;
    lmp_status rc = int_value(v, fname, key, 0, (long)vocab - 1, &x, d);
    if (rc == LMP_OK) *out = (int)x;
    return rc;
}

static lmp_status parse_root(lmp_config *c, const cJSON *root, const char *fname, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    LMP_FAIL_IF(!cJSON_IsObject(root), LMP_ERR_FORMAT, "%s: top level must be a JSON object",
                fname);
    for (size_t k = 0; k < sizeof known_keys / sizeof known_keys[0]; k++) {
        int seen = 0;
        for (const cJSON *it = root->child; it; it = it->next)
            if (it->string && strcmp(it->string, known_keys[k]) == 0) seen++;
        LMP_FAIL_IF(seen > 1, LMP_ERR_FORMAT, "%s: key %s appears %d times", fname, known_keys[k],
                    seen);
    }

    /* Architecture. */
    const cJSON *mt = get(root, "model_type");
    LMP_FAIL_IF(!mt, LMP_ERR_FORMAT, "%s: required field model_type is missing", fname);
    LMP_FAIL_IF(!cJSON_IsString(mt), LMP_ERR_FORMAT, "%s: model_type must be a string, not %s",
                fname, json_type_name(mt));
    int is_llama = strcmp(mt->valuestring, "llama") == 0;
    int is_mistral = strcmp(mt->valuestring, "mistral") == 0;
    LMP_FAIL_IF(!is_llama && !is_mistral, LMP_ERR_UNSUPPORTED,
                "%s: model_type '%.40s' is not supported (llama, mistral)", fname,
                mt->valuestring);
    snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
    const cJSON *arch = get(root, "architectures");
    if (arch) {
        LMP_FAIL_IF(!cJSON_IsArray(arch), LMP_ERR_FORMAT,
                    "%s: architectures must be a list, not %s", fname, json_type_name(arch));
        for (const cJSON *a = arch->child; a; a = a->next) {
            LMP_FAIL_IF(!cJSON_IsString(a), LMP_ERR_FORMAT,
                        "%s: architectures must hold strings", fname);
            LMP_FAIL_IF(strcmp(a->valuestring, "LlamaForCausalLM") != 0 &&
                            strcmp(a->valuestring, "MistralForCausalLM") != 0,
                        LMP_ERR_UNSUPPORTED,
                        "%s: architectures entry '%.60s' is not supported (LlamaForCausalLM)",
                        fname, a->valuestring);
        }
    }

    /* Shapes. */
    LMP_FORWARD(req_int(root, fname, "hidden_size", 1, MAX_HIDDEN, &c->hidden, d));
    LMP_FORWARD(req_int(root, fname, "intermediate_size", 1, MAX_INTER, &c->intermediate, d));
    LMP_FORWARD(req_int(root, fname, "num_hidden_layers", 1, MAX_LAYERS, &c->n_layers, d));
    LMP_FORWARD(req_int(root, fname, "num_attention_heads", 1, MAX_HEADS, &c->n_heads, d));
    c->n_kv_heads = c->n_heads;
    LMP_FORWARD(opt_int(root, fname, "num_key_value_heads", 1, MAX_HEADS, &c->n_kv_heads, d));
    LMP_FAIL_IF(c->n_heads % c->n_kv_heads != 0, LMP_ERR_FORMAT,
                "%s: num_key_value_heads %d does not divide num_attention_heads %d", fname,
                c->n_kv_heads, c->n_heads);
    if (get(root, "head_dim")) {
        LMP_FORWARD(opt_int(root, fname, "head_dim", 1, MAX_HEAD_DIM, &c->head_dim, d));
    } else {
        LMP_FAIL_IF(c->hidden % c->n_heads != 0, LMP_ERR_FORMAT,
                    "%s: hidden_size %d is not a multiple of num_attention_heads %d (and no "
                    "head_dim given)",
                    fname, c->hidden, c->n_heads);
        c->head_dim = c->hidden / c->n_heads;
        LMP_FAIL_IF(c->head_dim > MAX_HEAD_DIM, LMP_ERR_FORMAT,
                    "%s: head_dim %d (hidden_size / num_attention_heads) exceeds %d", fname,
                    c->head_dim, MAX_HEAD_DIM);
    }
    LMP_FAIL_IF(c->head_dim % 2 != 0, LMP_ERR_FORMAT,
                "%s: head_dim %d must be even (rotary embedding pairs)", fname, c->head_dim);
    LMP_FORWARD(req_int(root, fname, "vocab_size", 1, MAX_VOCAB, &c->vocab, d));
    c->max_pos = 2048;
    LMP_FORWARD(opt_int(root, fname, "max_position_embeddings", 1, MAX_POS, &c->max_pos, d));

    /* Numbers. */
    c->rms_eps = 1e-6f;
    LMP_FORWARD(opt_pos_number(get(root, "rms_norm_eps"), fname, "rms_norm_eps", 1.0,
                               &c->rms_eps, d));
    float theta_top = 0, theta_params = 0, theta_scaling = 0;
    LMP_FORWARD(opt_pos_number(get(root, "rope_theta"), fname, "rope_theta", 1e12, &theta_top, d));
    LMP_FORWARD(rope_object(get(root, "rope_parameters"), fname, "rope_parameters",
                            &theta_params, d));
    LMP_FORWARD(rope_object(get(root, "rope_scaling"), fname, "rope_scaling", &theta_scaling, d));
    LMP_FAIL_IF(theta_top > 0 && theta_params > 0 && theta_top != theta_params, LMP_ERR_FORMAT,
                "%s: rope_theta %g disagrees with rope_parameters.rope_theta %g", fname,
                (double)theta_top, (double)theta_params);
    c->rope_theta = theta_top > 0 ? theta_top : theta_params > 0 ? theta_params : 10000.0f;

    /* Features lmpack does not implement. */
    int flag = 0;
    LMP_FORWARD(opt_bool(root, fname, "attention_bias", &flag, d));
    LMP_FAIL_IF(flag, LMP_ERR_UNSUPPORTED, "%s: attention_bias true is not supported", fname);
    LMP_FORWARD(opt_bool(root, fname, "mlp_bias", &flag, d));
    LMP_FAIL_IF(flag, LMP_ERR_UNSUPPORTED, "%s: mlp_bias true is not supported", fname);
    const cJSON *act = get(root, "hidden_act");
    if (act) {
        LMP_FAIL_IF(!cJSON_IsString(act), LMP_ERR_FORMAT,
                    "%s: hidden_act must be a string, not %s", fname, json_type_name(act));
        LMP_FAIL_IF(strcmp(act->valuestring, "silu") != 0 && strcmp(act->valuestring, "swish"),
                    LMP_ERR_UNSUPPORTED, "%s: hidden_act '%.40s' is not supported (silu)", fname,
                    act->valuestring);
    }
    /* Mistral's sliding window changes attention only when it is shorter
     * than the longest context the model accepts. */
    const cJSON *sw = get(root, "sliding_window");
    if (sw) {
        long w = 0;
        LMP_FORWARD(int_value(sw, fname, "sliding_window", 0, 1L << 40, &w, d));
        LMP_FAIL_IF(w < c->max_pos, LMP_ERR_UNSUPPORTED,
                    "%s: sliding_window %ld < max_position_embeddings %d is not supported", fname,
                    w, c->max_pos);
    }

    /* Embeddings and special tokens. */
    c->tied = 0;
    LMP_FORWARD(opt_bool(root, fname, "tie_word_embeddings", &c->tied, d));
    c->bos = -1;
    const cJSON *bos = get(root, "bos_token_id");
    if (bos) LMP_FORWARD(token_id(bos, fname, "bos_token_id", c->vocab, &c->bos, d));
    c->n_eos = 0;
    const cJSON *eos = get(root, "eos_token_id");
    if (eos && cJSON_IsArray(eos)) {
        int n = cJSON_GetArraySize(eos);
        LMP_FAIL_IF(n > LMP_MAX_EOS, LMP_ERR_UNSUPPORTED,
                    "%s: eos_token_id lists %d ids, more than the %d supported", fname, n,
                    LMP_MAX_EOS);
        for (const cJSON *e = eos->child; e; e = e->next)
            LMP_FORWARD(token_id(e, fname, "eos_token_id", c->vocab, &c->eos[c->n_eos++], d));
    } else if (eos) {
        LMP_FORWARD(token_id(eos, fname, "eos_token_id", c->vocab, &c->eos[0], d));
        c->n_eos = 1;
    }

    /* Storage dtype hint; transformers 5 writes "dtype", older "torch_dtype". */
    const cJSON *dt = get(root, "dtype");
    const char *dkey = "dtype";
    if (!dt) {
        dt = get(root, "torch_dtype");
        dkey = "torch_dtype";
    }
    c->torch_dtype[0] = '\0';
    if (dt) {
        LMP_FAIL_IF(!cJSON_IsString(dt), LMP_ERR_FORMAT, "%s: %s must be a string, not %s",
                    fname, dkey, json_type_name(dt));
        LMP_FAIL_IF(strcmp(dt->valuestring, "float32") && strcmp(dt->valuestring, "float16") &&
                        strcmp(dt->valuestring, "bfloat16"),
                    LMP_ERR_UNSUPPORTED,
                    "%s: %s '%.40s' is not supported (float32, float16, bfloat16)", fname, dkey,
                    dt->valuestring);
        snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", dt->valuestring);
    }
out:
    return rc;
}

lmp_status lmp_config_parse(lmp_config *c, const char *json, size_t len, const char *fname,
                            lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    cJSON *root = NULL;
    if (!fname) fname = "config.json";
    memset(c, 0, sizeof *c);
    LMP_FAIL_IF(!json, LMP_ERR_ARG, "%s: no text", fname);
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        LMP_FAIL(LMP_ERR_FORMAT, "%s: invalid JSON near byte %zu", fname, at);
    }
    /* Only whitespace may follow the object (cJSON stops at its end). */
    for (size_t i = (size_t)(end - json); i < len; i++)
        LMP_FAIL_IF(json[i] != ' ' && json[i] != '\n' && json[i] != '\r' && json[i] != '\t',
                    LMP_ERR_FORMAT, "%s: trailing bytes after the JSON object at byte %zu", fname,
                    i);
    LMP_FORWARD(parse_root(c, root, fname, d));
out:
    cJSON_Delete(root);
    if (rc != LMP_OK) memset(c, 0, sizeof *c);
    return rc;
}

lmp_status lmp_config_load(lmp_config *c, const char *path, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *file = NULL, *text = NULL;
    size_t len = 0;
    memset(c, 0, sizeof *c);
    file = lmp_is_dir(path) ? lmp_path_join(path, "config.json") : strdup(path);
    LMP_FAIL_IF(!file, LMP_ERR_NOMEM, "%s: out of memory", path);
    LMP_FORWARD(lmp_read_file(file, MAX_CONFIG_BYTES, &text, &len, d));
    LMP_FORWARD(lmp_config_parse(c, text, len, file, d));
out:
    free(text);
    free(file);
    return rc;
}

/* Shortest decimal that reads back as the same float, always with a '.' or
 * exponent so Python readers see a float. */
static void fmt_float(char *buf, size_t cap, float x)
{
    if (x == floorf(x) && fabsf(x) < 1e15f) {
        snprintf(buf, cap, "%.1f", (double)x);
        return;
    }
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)x);
        if ((float)strtod(buf, NULL) == x) break; /* as the parser reads it */
    }
    if (!strpbrk(buf, ".eEn")) {
        size_t n = strlen(buf);
        if (n + 2 < cap) memcpy(buf + n, ".0", 3);
    }
}

char *lmp_config_to_json(const lmp_config *c)
{
    cJSON *o = cJSON_CreateObject();
    char *out = NULL, num[32];
    if (!o) return NULL;
    int mistral = strcmp(c->model_type, "mistral") == 0;
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    if (!arch) goto out;
    cJSON_AddItemToArray(arch,
                         cJSON_CreateString(mistral ? "MistralForCausalLM" : "LlamaForCausalLM"));
    cJSON_AddStringToObject(o, "model_type", mistral ? "mistral" : "llama");
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden);
    cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_pos);
    fmt_float(num, sizeof num, c->rms_eps);
    cJSON_AddRawToObject(o, "rms_norm_eps", num);
    fmt_float(num, sizeof num, c->rope_theta);
    cJSON_AddRawToObject(o, "rope_theta", num);
    cJSON_AddNullToObject(o, "rope_scaling");
    if (mistral) cJSON_AddNullToObject(o, "sliding_window");
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddFalseToObject(o, "attention_bias");
    cJSON_AddFalseToObject(o, "mlp_bias");
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tied != 0);
    if (c->bos >= 0) cJSON_AddNumberToObject(o, "bos_token_id", c->bos);
    if (c->n_eos == 1) {
        cJSON_AddNumberToObject(o, "eos_token_id", c->eos[0]);
    } else if (c->n_eos > 1) {
        cJSON *e = cJSON_AddArrayToObject(o, "eos_token_id");
        if (!e) goto out;
        for (int i = 0; i < c->n_eos && i < LMP_MAX_EOS; i++)
            cJSON_AddItemToArray(e, cJSON_CreateNumber(c->eos[i]));
    }
    if (c->torch_dtype[0]) cJSON_AddStringToObject(o, "torch_dtype", c->torch_dtype);
    out = cJSON_Print(o);
out:
    cJSON_Delete(o);
    return out;
}

/* ---- expected tensors ---------------------------------------------------- */

enum { LAYER_TENSORS = 9 };
static const char *const layer_suffix[LAYER_TENSORS] = {
    "input_layernorm.weight", "self_attn.q_proj.weight",       "self_attn.k_proj.weight",
    "self_attn.v_proj.weight", "self_attn.o_proj.weight",      "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",   "mlp.up_proj.weight",            "mlp.down_proj.weight",
};

static void layer_shape(const lmp_config *c, int k, lmp_expect *e)
{
    int64_t h = c->hidden, q = (int64_t)c->n_heads * c->head_dim,
            kv = (int64_t)c->n_kv_heads * c->head_dim, f = c->intermediate;
    int64_t shapes[LAYER_TENSORS][2] = {{h, 0}, {q, h}, {kv, h}, {kv, h}, {h, q},
                                        {h, 0}, {f, h}, {f, h}, {h, f}};
    e->ndim = shapes[k][1] ? 2 : 1;
    e->shape[0] = shapes[k][0];
    e->shape[1] = shapes[k][1];
}

static void put(lmp_expect *out, size_t cap, size_t i, const char *name, int ndim, int64_t s0,
                int64_t s1, int layer)
{
    if (!out || i >= cap) return;
    lmp_expect *e = &out[i];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    e->shape[0] = s0;
    e->shape[1] = s1;
    e->layer = layer;
}

size_t lmp_config_expected(const lmp_config *c, lmp_expect *out, size_t cap)
{
    size_t n = 0;
    put(out, cap, n++, "model.embed_tokens.weight", 2, c->vocab, c->hidden, -1);
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < LAYER_TENSORS; k++, n++) {
            if (!out || n >= cap) continue;
            char name[96];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, layer_suffix[k]);
            lmp_expect e;
            layer_shape(c, k, &e);
            put(out, cap, n, name, e.ndim, e.shape[0], e.shape[1], l);
        }
    }
    put(out, cap, n++, "model.norm.weight", 1, c->hidden, 0, -1);
    if (!c->tied) put(out, cap, n++, "lm_head.weight", 2, c->vocab, c->hidden, -1);
    return n;
}

/* ---- checkpoint check ---------------------------------------------------- */

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = 0;
    n += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static const char *tensor_file(const lmp_st *st, const lmp_st_tensor *t)
{
    if (t && t->shard >= 0 && (size_t)t->shard < lmp_st_nfiles(st))
        return lmp_path_base(lmp_st_file(st, (size_t)t->shard));
    if (lmp_st_nfiles(st) == 1) return lmp_path_base(lmp_st_file(st, 0));
    return "checkpoint";
}

/* 1 if `name` is a tensor name this config expects (without a lookup table:
 * the structure of the name decides, so the check is linear). */
static int is_expected(const lmp_config *c, const char *name)
{
    if (!strcmp(name, "model.embed_tokens.weight") || !strcmp(name, "model.norm.weight"))
        return 1;
    if (!strcmp(name, "lm_head.weight")) return !c->tied;
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1) != 0) return 0;
    const char *p = name + sizeof pre - 1;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '.')) return 0;
    long l = 0;
    while (*p >= '0' && *p <= '9') {
        l = l * 10 + (*p++ - '0');
        if (l >= c->n_layers) return 0;
    }
    if (*p++ != '.') return 0;
    for (int k = 0; k < LAYER_TENSORS; k++)
        if (!strcmp(p, layer_suffix[k])) return 1;
    return 0;
}

static int is_tolerated(const char *name)
{
    static const char suf[] = "rotary_emb.inv_freq";
    size_t n = strlen(name), s = sizeof suf - 1;
    return n >= s && strcmp(name + n - s, suf) == 0;
}

lmp_status lmp_config_check(const lmp_config *c, const lmp_st *st, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    size_t n = lmp_config_expected(c, NULL, 0);
    lmp_expect *exp = calloc(n ? n : 1, sizeof *exp);
    LMP_FAIL_IF(!exp, LMP_ERR_NOMEM, "config check: out of memory for %zu tensors", n);
    lmp_config_expected(c, exp, n);
    for (size_t i = 0; i < n; i++) {
        const lmp_expect *e = &exp[i];
        const lmp_st_tensor *t = lmp_st_find(st, e->name);
        char want[64], got[160];
        fmt_shape(want, sizeof want, e->ndim, e->shape);
        LMP_FAIL_IF(!t, LMP_ERR_MODEL, "%s: tensor '%s' is missing (config expects shape %s)",
                    tensor_file(st, NULL), e->name, want);
        int same = t->ndim == e->ndim;
        for (int k = 0; same && k < e->ndim; k++) same = t->shape[k] == e->shape[k];
        if (!same) {
            fmt_shape(got, sizeof got, t->ndim, t->shape);
            LMP_FAIL(LMP_ERR_MODEL, "%s: tensor '%s' has shape %s, config expects %s",
                     tensor_file(st, t), e->name, got, want);
        }
        LMP_FAIL_IF(t->dtype != LMP_DT_F32 && t->dtype != LMP_DT_F16 && t->dtype != LMP_DT_BF16,
                    LMP_ERR_UNSUPPORTED,
                    "%s: tensor '%s' has dtype %s, expected a float type (F32, F16, BF16)",
                    tensor_file(st, t), e->name, lmp_dtype_name(t->dtype));
    }
    size_t count = lmp_st_count(st);
    for (size_t i = 0; i < count; i++) {
        const lmp_st_tensor *t = lmp_st_at(st, i);
        if (is_expected(c, t->name) || is_tolerated(t->name)) continue;
        LMP_FAIL_IF(c->tied && !strcmp(t->name, "lm_head.weight"), LMP_ERR_MODEL,
                    "%s: tensor 'lm_head.weight' present but tie_word_embeddings is true",
                    tensor_file(st, t));
        LMP_FAIL(LMP_ERR_MODEL, "%s: unexpected tensor '%.200s' (not a Llama weight for this "
                 "config)", tensor_file(st, t), t->name);
    }
out:
    free(exp);
    return rc;
}
