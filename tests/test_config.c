/* formats/config: config.json parsing and validation, expected tensors, and
 * checkpoint checks. Expected values come from the fixture README table and
 * the fixtures' config.json files; error cases from the rules in config.h. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "tests/testutil.h"

/* ---- fixtures ------------------------------------------------------------ */

typedef struct fx {
    const char *dir;
    int hidden, inter, layers, heads, kv, head_dim, vocab, max_pos, tied, bos, eos;
    float theta;
    const char *dtype;
} fx;

static const fx fixtures[] = {
    {"tiny-smollm-bf16", 192, 512, 4, 3, 1, 64, 4096, 2048, 1, 0, 0, 10000.0f, "bfloat16"},
    {"tiny-smollm-f16", 192, 512, 4, 3, 1, 64, 4096, 2048, 1, 0, 0, 10000.0f, "float16"},
    {"tiny-untied-f32-sharded", 128, 384, 2, 4, 2, 32, 1000, 2048, 0, 0, 0, 100000.0f,
     "float32"},
    {"stories260k", 64, 172, 5, 8, 4, 8, 512, 512, 1, 1, 2, 10000.0f, "float32"},
    {"smollm-tokenizer", 960, 2560, 32, 15, 5, 64, 49152, 2048, 1, 1, 2, 10000.0f, "bfloat16"},
};
#define N_FIXTURES (sizeof fixtures / sizeof fixtures[0])

START_TEST(fixture_configs_parse)
{
    const fx *f = &fixtures[_i];
    lmp_config c;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_config_load(&c, t_data(f->dir), &d) == LMP_OK, "%s: %s", f->dir, d.msg);
    ck_assert_str_eq(c.model_type, "llama");
    ck_assert_int_eq(c.hidden, f->hidden);
    ck_assert_int_eq(c.intermediate, f->inter);
    ck_assert_int_eq(c.n_layers, f->layers);
    ck_assert_int_eq(c.n_heads, f->heads);
    ck_assert_int_eq(c.n_kv_heads, f->kv);
    ck_assert_int_eq(c.head_dim, f->head_dim);
    ck_assert_int_eq(c.vocab, f->vocab);
    ck_assert_int_eq(c.max_pos, f->max_pos);
    ck_assert_int_eq(c.tied, f->tied);
    ck_assert_int_eq(c.bos, f->bos);
    ck_assert_int_eq(c.n_eos, 1);
    ck_assert_int_eq(c.eos[0], f->eos);
    ck_assert(c.rope_theta == f->theta);
    ck_assert(c.rms_eps == 1e-5f);
    ck_assert_str_eq(c.torch_dtype, f->dtype);

    /* The canonical JSON reads back to the same struct. */
    char *j = lmp_config_to_json(&c);
    ck_assert_ptr_nonnull(j);
    lmp_config back;
    ck_assert_msg(lmp_config_parse(&back, j, strlen(j), "canonical", &d) == LMP_OK, "%s", d.msg);
    ck_assert(memcmp(&c, &back, sizeof c) == 0);
    char *j2 = lmp_config_to_json(&back);
    ck_assert_str_eq(j, j2);
    free(j);
    free(j2);

    /* Expected tensor count: embedding, 9 per layer, final norm, lm_head if untied. */
    size_t n = lmp_config_expected(&c, NULL, 0);
    ck_assert_uint_eq(n, (size_t)(2 + 9 * f->layers + (f->tied ? 0 : 1)));
}
END_TEST

START_TEST(expected_names_and_shapes)
{
    /* SmolLM-360M by hand: q 15*64=960, kv 5*64=320. */
    lmp_config c;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_config_load(&c, t_data("smollm-tokenizer/config.json"), &d), LMP_OK);
    lmp_expect e[300];
    size_t n = lmp_config_expected(&c, e, 300);
    ck_assert_uint_eq(n, 290);
    ck_assert_str_eq(e[0].name, "model.embed_tokens.weight");
    ck_assert(e[0].ndim == 2 && e[0].shape[0] == 49152 && e[0].shape[1] == 960);
    ck_assert_int_eq(e[0].layer, -1);
    static const struct {
        const char *name;
        int ndim;
        int64_t s0, s1;
    } layer[9] = {
        {"model.layers.31.input_layernorm.weight", 1, 960, 0},
        {"model.layers.31.self_attn.q_proj.weight", 2, 960, 960},
        {"model.layers.31.self_attn.k_proj.weight", 2, 320, 960},
        {"model.layers.31.self_attn.v_proj.weight", 2, 320, 960},
        {"model.layers.31.self_attn.o_proj.weight", 2, 960, 960},
        {"model.layers.31.post_attention_layernorm.weight", 1, 960, 0},
        {"model.layers.31.mlp.gate_proj.weight", 2, 2560, 960},
        {"model.layers.31.mlp.up_proj.weight", 2, 2560, 960},
        {"model.layers.31.mlp.down_proj.weight", 2, 960, 2560},
    };
    for (int k = 0; k < 9; k++) {
        const lmp_expect *x = &e[1 + 31 * 9 + k];
        ck_assert_str_eq(x->name, layer[k].name);
        ck_assert_int_eq(x->ndim, layer[k].ndim);
        ck_assert_int_eq(x->shape[0], layer[k].s0);
        if (layer[k].ndim == 2) ck_assert_int_eq(x->shape[1], layer[k].s1);
        ck_assert_int_eq(x->layer, 31);
    }
    ck_assert_str_eq(e[289].name, "model.norm.weight");
    /* cap smaller than the count: fills only cap entries, still counts all. */
    lmp_expect few[2];
    ck_assert_uint_eq(lmp_config_expected(&c, few, 2), 290);
    ck_assert_str_eq(few[1].name, "model.layers.0.input_layernorm.weight");
    /* head_dim explicit and hidden != heads * head_dim (allowed). */
    const char *j = "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":96,"
                    "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"head_dim\":32,"
                    "\"vocab_size\":50}";
    ck_assert_int_eq(lmp_config_parse(&c, j, strlen(j), "config.json", &d), LMP_OK);
    n = lmp_config_expected(&c, e, 300);
    ck_assert_uint_eq(n, 12);
    ck_assert_int_eq(e[2].shape[0], 128); /* q_proj [4*32, 64] */
    ck_assert_int_eq(e[2].shape[1], 64);
    ck_assert_int_eq(e[5].shape[0], 64); /* o_proj [64, 128] */
    ck_assert_int_eq(e[5].shape[1], 128);
    ck_assert_str_eq(e[11].name, "lm_head.weight");
}
END_TEST

/* ---- parse rules --------------------------------------------------------- */

/* A valid base config as key/value pairs; build() replaces, drops (val
 * NULL) or appends one key. */
static const char *const base_kv[][2] = {
    {"model_type", "\"llama\""},
    {"hidden_size", "64"},
    {"intermediate_size", "128"},
    {"num_hidden_layers", "2"},
    {"num_attention_heads", "4"},
    {"num_key_value_heads", "2"},
    {"vocab_size", "100"},
    {"max_position_embeddings", "256"},
    {"rms_norm_eps", "1e-05"},
};

static char *build(const char *key, const char *val)
{
    static char buf[4096];
    size_t n = 0;
    int found = 0;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "{");
    for (size_t i = 0; i < sizeof base_kv / sizeof base_kv[0]; i++) {
        const char *v = base_kv[i][1];
        if (key && !strcmp(key, base_kv[i][0])) {
            found = 1;
            v = val;
        }
        if (!v) continue;
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\"%s\": %s", n > 1 ? ", " : "",
                              base_kv[i][0], v);
    }
    if (key && !found && val)
        n += (size_t)snprintf(buf + n, sizeof buf - n, ", \"%s\": %s", key, val);
    snprintf(buf + n, sizeof buf - n, "}");
    return buf;
}

static lmp_status parse(lmp_config *c, const char *json, lmp_diag *d)
{
    lmp_diag_clear(d);
    return lmp_config_parse(c, json, strlen(json), "config.json", d);
}

START_TEST(base_and_defaults)
{
    lmp_config c;
    lmp_diag d;
    ck_assert_int_eq(parse(&c, build(NULL, NULL), &d), LMP_OK);
    ck_assert_int_eq(c.head_dim, 16); /* 64 / 4 */
    ck_assert(c.rope_theta == 10000.0f);
    ck_assert_int_eq(c.tied, 0);
    ck_assert_int_eq(c.bos, -1);
    ck_assert_int_eq(c.n_eos, 0);
    ck_assert_str_eq(c.torch_dtype, "");
    /* num_key_value_heads absent or null -> heads (multi-head attention) */
    ck_assert_int_eq(parse(&c, build("num_key_value_heads", NULL), &d), LMP_OK);
    ck_assert_int_eq(c.n_kv_heads, 4);
    ck_assert_int_eq(parse(&c, build("num_key_value_heads", "null"), &d), LMP_OK);
    ck_assert_int_eq(c.n_kv_heads, 4);
    /* eos as a list */
    ck_assert_int_eq(parse(&c, build("eos_token_id", "[7, 9, 3]"), &d), LMP_OK);
    ck_assert_int_eq(c.n_eos, 3);
    ck_assert_int_eq(c.eos[0], 7);
    ck_assert_int_eq(c.eos[2], 3);
    /* integral numbers written as floats are integers */
    ck_assert_int_eq(parse(&c, build("hidden_size", "64.0"), &d), LMP_OK);
    ck_assert_int_eq(c.hidden, 64);
    /* rope_theta: top level, or rope_parameters (transformers 5) */
    ck_assert_int_eq(parse(&c, build("rope_theta", "500000.0"), &d), LMP_OK);
    ck_assert(c.rope_theta == 500000.0f);
    ck_assert_int_eq(
        parse(&c, build("rope_parameters", "{\"rope_theta\": 1e6, \"rope_type\": \"default\"}"),
              &d),
        LMP_OK);
    ck_assert(c.rope_theta == 1e6f);
    ck_assert_int_eq(parse(&c, build("rope_scaling", "null"), &d), LMP_OK);
    /* mistral without an effective sliding window is the same network */
    const char *m = "{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":128,"
                    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
                    "\"max_position_embeddings\":256,\"sliding_window\":null}";
    ck_assert_int_eq(parse(&c, m, &d), LMP_OK);
    ck_assert_str_eq(c.model_type, "mistral");
    const char *m2 = "{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":128,"
                     "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
                     "\"max_position_embeddings\":256,\"sliding_window\":256}";
    ck_assert_int_eq(parse(&c, m2, &d), LMP_OK);
    char *j = lmp_config_to_json(&c);
    lmp_config back;
    ck_assert_int_eq(parse(&back, j, &d), LMP_OK);
    ck_assert_str_eq(back.model_type, "mistral");
    free(j);
    /* the newer "dtype" key wins over torch_dtype */
    ck_assert_int_eq(parse(&c, build("dtype", "\"float16\""), &d), LMP_OK);
    ck_assert_str_eq(c.torch_dtype, "float16");
    /* silu under its other name */
    ck_assert_int_eq(parse(&c, build("hidden_act", "\"swish\""), &d), LMP_OK);
}
END_TEST

typedef struct bad_case {
    const char *key, *val; /* build(key, val); key NULL: `raw` is the text */
    const char *raw;
    lmp_status st;
    const char *msg; /* exact message */
} bad_case;

static const bad_case bad[] = {
    {"hidden_size", NULL, NULL, LMP_ERR_FORMAT,
     "config.json: required field hidden_size is missing"},
    {"vocab_size", "\"100\"", NULL, LMP_ERR_FORMAT,
     "config.json: vocab_size must be an integer, not a string"},
    {"num_hidden_layers", "true", NULL, LMP_ERR_FORMAT,
     "config.json: num_hidden_layers must be an integer, not a boolean"},
    {"hidden_size", "64.5", NULL, LMP_ERR_FORMAT, "config.json: hidden_size 64.5 is not an integer"},
    {"num_hidden_layers", "-1", NULL, LMP_ERR_FORMAT,
     "config.json: num_hidden_layers -1 is outside [1, 1024]"},
    {"intermediate_size", "0", NULL, LMP_ERR_FORMAT,
     "config.json: intermediate_size 0 is outside [1, 1048576]"},
    {"hidden_size", "1e15", NULL, LMP_ERR_FORMAT,
     "config.json: hidden_size 1000000000000000 is outside [1, 131072]"},
    {"num_key_value_heads", "3", NULL, LMP_ERR_FORMAT,
     "config.json: num_key_value_heads 3 does not divide num_attention_heads 4"},
    {"head_dim", "15", NULL, LMP_ERR_FORMAT,
     "config.json: head_dim 15 must be even (rotary embedding pairs)"},
    {"hidden_size", "66", NULL, LMP_ERR_FORMAT,
     "config.json: hidden_size 66 is not a multiple of num_attention_heads 4 (and no head_dim "
     "given)"},
    {"model_type", "\"gpt2\"", NULL, LMP_ERR_UNSUPPORTED,
     "config.json: model_type 'gpt2' is not supported (llama, mistral)"},
    {"model_type", NULL, NULL, LMP_ERR_FORMAT, "config.json: required field model_type is missing"},
    {"architectures", "[\"LlamaForSequenceClassification\"]", NULL, LMP_ERR_UNSUPPORTED,
     "config.json: architectures entry 'LlamaForSequenceClassification' is not supported "
     "(LlamaForCausalLM)"},
    {"rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8.0}", NULL, LMP_ERR_UNSUPPORTED,
     "config.json: rope_scaling type 'llama3' is not supported (only unscaled RoPE)"},
    {"rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}", NULL, LMP_ERR_UNSUPPORTED,
     "config.json: rope_scaling type 'linear' is not supported (only unscaled RoPE)"},
    {"rope_parameters", "{\"rope_type\": \"yarn\", \"rope_theta\": 10000.0}", NULL,
     LMP_ERR_UNSUPPORTED,
     "config.json: rope_parameters type 'yarn' is not supported (only unscaled RoPE)"},
    {"rope_theta", "-5", NULL, LMP_ERR_FORMAT, "config.json: rope_theta -5 is not in (0, 1e+12)"},
    {NULL, NULL,
     "{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":128,"
     "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
     "\"max_position_embeddings\":32768,\"sliding_window\":4096}",
     LMP_ERR_UNSUPPORTED,
     "config.json: sliding_window 4096 < max_position_embeddings 32768 is not supported"},
    {"hidden_act", "\"gelu\"", NULL, LMP_ERR_UNSUPPORTED,
     "config.json: hidden_act 'gelu' is not supported (silu)"},
    {"attention_bias", "true", NULL, LMP_ERR_UNSUPPORTED,
     "config.json: attention_bias true is not supported"},
    {"mlp_bias", "true", NULL, LMP_ERR_UNSUPPORTED, "config.json: mlp_bias true is not supported"},
    {"tie_word_embeddings", "1", NULL, LMP_ERR_FORMAT,
     "config.json: tie_word_embeddings must be true or false, not a number"},
    {"eos_token_id", "[1,2,3,4,5,6,7,8,9]", NULL, LMP_ERR_UNSUPPORTED,
     "config.json: eos_token_id lists 9 ids, more than the 8 supported"},
    {"eos_token_id", "[1, \"2\"]", NULL, LMP_ERR_FORMAT,
     "config.json: eos_token_id must be an integer, not a string"},
    {"bos_token_id", "100", NULL, LMP_ERR_FORMAT,
     "config.json: bos_token_id 100 is outside [0, 99]"},
    {"torch_dtype", "\"int8\"", NULL, LMP_ERR_UNSUPPORTED,
     "config.json: torch_dtype 'int8' is not supported (float32, float16, bfloat16)"},
    {NULL, NULL, "{\"model_type\": \"llama\", \"hidden_size\": ]}", LMP_ERR_FORMAT,
     "config.json: invalid JSON near byte 39"},
    {NULL, NULL, "[1, 2]", LMP_ERR_FORMAT, "config.json: top level must be a JSON object"},
    {NULL, NULL, "", LMP_ERR_FORMAT, "config.json: invalid JSON near byte 0"},
    {NULL, NULL,
     "{\"model_type\":\"llama\",\"hidden_size\":64,\"hidden_size\":128,\"intermediate_size\":"
     "128,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}",
     LMP_ERR_FORMAT, "config.json: key hidden_size appears 2 times"},
    {NULL, NULL,
     "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,"
     "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100} x",
     LMP_ERR_FORMAT, "config.json: trailing bytes after the JSON object at byte 127"},
};
#define N_BAD (sizeof bad / sizeof bad[0])

START_TEST(bad_configs_rejected)
{
    const bad_case *b = &bad[_i];
    const char *text = b->raw ? b->raw : build(b->key, b->val);
    lmp_config c;
    lmp_diag d;
    lmp_status st = parse(&c, text, &d);
    ck_assert_msg(st == b->st, "case %d (%s): status %d, want %d (%s)", _i, text, st, b->st, d.msg);
    ck_assert_str_eq(d.msg, b->msg);
    ck_assert_int_eq(c.hidden, 0); /* struct cleared on failure */
}
END_TEST

START_TEST(load_names_the_file)
{
    char *dir = t_tmpdir();
    char *p = lmp_path_join(dir, "config.json");
    const char *text = build("num_key_value_heads", "3");
    t_write(p, text, strlen(text));
    lmp_config c;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_config_load(&c, dir, &d), LMP_ERR_FORMAT);
    char want[4200];
    snprintf(want, sizeof want, "%s: num_key_value_heads 3 does not divide num_attention_heads 4",
             p);
    ck_assert_str_eq(d.msg, want);
    lmp_diag_clear(&d);
    char *missing = lmp_path_join(dir, "nope.json");
    ck_assert_int_eq(lmp_config_load(&c, missing, &d), LMP_ERR_IO);
    ck_assert_ptr_nonnull(strstr(d.msg, missing));
    free(missing);
    free(p);
    t_rmtree(dir);
    free(dir);
}
END_TEST

/* ---- checkpoint checks --------------------------------------------------- */

START_TEST(fixture_checkpoints_check_out)
{
    static const char *const dirs[] = {"tiny-smollm-bf16", "tiny-smollm-f16",
                                       "tiny-untied-f32-sharded", "stories260k"};
    for (size_t i = 0; i < 4; i++) {
        lmp_config c;
        lmp_st *st = NULL;
        lmp_diag d;
        lmp_diag_clear(&d);
        ck_assert_msg(lmp_config_load(&c, t_data(dirs[i]), &d) == LMP_OK, "%s", d.msg);
        ck_assert_msg(lmp_st_open(&st, t_data(dirs[i]), &d) == LMP_OK, "%s", d.msg);
        ck_assert_msg(lmp_config_check(&c, st, &d) == LMP_OK, "%s: %s", dirs[i], d.msg);
        /* the tied and untied fixtures differ exactly by lm_head.weight */
        ck_assert_int_eq(lmp_st_find(st, "lm_head.weight") != NULL, !c.tied);
        lmp_st_close(st);
    }
}
END_TEST

/* Small model: hidden 8, mlp 12, 2 layers, 2 heads, 1 KV head, head_dim 4,
 * vocab 10, tied. */
static const char small_cfg[] =
    "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":12,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
    "\"vocab_size\":10,\"tie_word_embeddings\":true}";

enum mutation { M_NONE, M_DROP, M_SHAPE, M_LM_HEAD, M_EXTRA, M_LAYER_OOR, M_INV_FREQ, M_DTYPE,
                M_RANK };

/* Write the small model's tensors (zeros) with one mutation, open and check
 * it. Returns the status; message in d. */
static lmp_status check_mutated(enum mutation m, const char *drop, lmp_diag *d)
{
    lmp_config c;
    lmp_diag_clear(d);
    ck_assert_int_eq(lmp_config_parse(&c, small_cfg, strlen(small_cfg), "config.json", d), LMP_OK);
    lmp_expect e[32];
    size_t n = lmp_config_expected(&c, e, 32);
    ck_assert_uint_eq(n, 20);
    lmp_stw_desc descs[34];
    size_t k = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        if (m == M_DROP && !strcmp(e[i].name, drop)) continue;
        lmp_stw_desc *x = &descs[k++];
        memset(x, 0, sizeof *x);
        x->name = e[i].name;
        x->dtype = LMP_DT_F32;
        x->ndim = e[i].ndim;
        x->shape[0] = e[i].shape[0];
        x->shape[1] = e[i].shape[1];
        if (m == M_SHAPE && !strcmp(e[i].name, drop)) x->shape[0] += 1;
        if (m == M_DTYPE && !strcmp(e[i].name, drop)) x->dtype = LMP_DT_I32;
        if (m == M_RANK && !strcmp(e[i].name, drop)) {
            x->ndim = 2;
            x->shape[1] = 1;
        }
    }
    lmp_stw_desc extra = {.dtype = LMP_DT_F32, .ndim = 2, .shape = {10, 8}};
    if (m == M_LM_HEAD) extra.name = "lm_head.weight";
    if (m == M_EXTRA) extra.name = "model.layers.0.self_attn.q_norm.weight";
    if (m == M_LAYER_OOR) extra.name = "model.layers.2.mlp.up_proj.weight";
    if (m == M_INV_FREQ) {
        extra.name = "model.layers.0.self_attn.rotary_emb.inv_freq";
        extra.ndim = 1;
        extra.shape[0] = 2;
    }
    if (extra.name) descs[k++] = extra;
    for (size_t i = 0; i < k; i++) {
        size_t ne = 1;
        for (int a = 0; a < descs[i].ndim; a++) ne *= (size_t)descs[i].shape[a];
        total += ne * 4;
    }
    char *dir = t_tmpdir();
    char *p = lmp_path_join(dir, "model.safetensors");
    lmp_stw *w = NULL;
    ck_assert_msg(lmp_stw_open(&w, p, descs, k, NULL, 0, d) == LMP_OK, "%s", d->msg);
    void *zeros = calloc(1, total);
    ck_assert_int_eq(lmp_stw_write(w, zeros, total, d), LMP_OK);
    ck_assert_int_eq(lmp_stw_finish(w, d), LMP_OK);
    free(zeros);
    lmp_st *st = NULL;
    ck_assert_msg(lmp_st_open(&st, p, d) == LMP_OK, "%s", d->msg);
    lmp_status rc = lmp_config_check(&c, st, d);
    lmp_st_close(st);
    free(p);
    t_rmtree(dir);
    free(dir);
    return rc;
}

START_TEST(crafted_checkpoints)
{
    lmp_diag d;
    ck_assert_msg(check_mutated(M_NONE, NULL, &d) == LMP_OK, "%s", d.msg);
    ck_assert_msg(check_mutated(M_INV_FREQ, NULL, &d) == LMP_OK, "%s", d.msg);

    ck_assert_int_eq(check_mutated(M_DROP, "model.layers.1.mlp.down_proj.weight", &d),
                     LMP_ERR_MODEL);
    ck_assert_str_eq(d.msg, "model.safetensors: tensor 'model.layers.1.mlp.down_proj.weight' is "
                            "missing (config expects shape [8, 12])");
    ck_assert_int_eq(check_mutated(M_DROP, "model.norm.weight", &d), LMP_ERR_MODEL);
    ck_assert_str_eq(d.msg,
                     "model.safetensors: tensor 'model.norm.weight' is missing (config expects "
                     "shape [8])");
    /* k_proj is [kv_heads * head_dim, hidden] = [4, 8] */
    ck_assert_int_eq(check_mutated(M_SHAPE, "model.layers.0.self_attn.k_proj.weight", &d),
                     LMP_ERR_MODEL);
    ck_assert_str_eq(d.msg, "model.safetensors: tensor 'model.layers.0.self_attn.k_proj.weight' "
                            "has shape [5, 8], config expects [4, 8]");
    ck_assert_int_eq(check_mutated(M_RANK, "model.layers.0.input_layernorm.weight", &d),
                     LMP_ERR_MODEL);
    ck_assert_str_eq(d.msg, "model.safetensors: tensor 'model.layers.0.input_layernorm.weight' "
                            "has shape [8, 1], config expects [8]");
    ck_assert_int_eq(check_mutated(M_DTYPE, "model.embed_tokens.weight", &d), LMP_ERR_UNSUPPORTED);
    ck_assert_str_eq(d.msg, "model.safetensors: tensor 'model.embed_tokens.weight' has dtype I32, "
                            "expected a float type (F32, F16, BF16)");
    ck_assert_int_eq(check_mutated(M_LM_HEAD, NULL, &d), LMP_ERR_MODEL);
    ck_assert_str_eq(d.msg, "model.safetensors: tensor 'lm_head.weight' present but "
                            "tie_word_embeddings is true");
    ck_assert_int_eq(check_mutated(M_EXTRA, NULL, &d), LMP_ERR_MODEL);
    ck_assert_str_eq(d.msg, "model.safetensors: unexpected tensor "
                            "'model.layers.0.self_attn.q_norm.weight' (not a Llama weight for "
                            "this config)");
    ck_assert_int_eq(check_mutated(M_LAYER_OOR, NULL, &d), LMP_ERR_MODEL);
    ck_assert_str_eq(d.msg, "model.safetensors: unexpected tensor "
                            "'model.layers.2.mlp.up_proj.weight' (not a Llama weight for this "
                            "config)");
}
END_TEST

START_TEST(config_against_wrong_checkpoint)
{
    /* tiny-untied's config against tiny-smollm's weights: first mismatch is
     * the embedding ([1000, 128] expected, [4096, 192] stored). */
    lmp_config c;
    lmp_st *st = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_config_load(&c, t_data("tiny-untied-f32-sharded"), &d), LMP_OK);
    ck_assert_int_eq(lmp_st_open(&st, t_data("tiny-smollm-bf16"), &d), LMP_OK);
    ck_assert_int_eq(lmp_config_check(&c, st, &d), LMP_ERR_MODEL);
    ck_assert_str_eq(d.msg, "model.safetensors: tensor 'model.embed_tokens.weight' has shape "
                            "[4096, 192], config expects [1000, 128]");
    lmp_st_close(st);
}
END_TEST

Suite *lmp_suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_loop_test(tc, fixture_configs_parse, 0, (int)N_FIXTURES);
    tcase_add_test(tc, expected_names_and_shapes);
    tcase_add_test(tc, base_and_defaults);
    tcase_add_loop_test(tc, bad_configs_rejected, 0, (int)N_BAD);
    tcase_add_test(tc, load_names_the_file);
    tcase_add_test(tc, fixture_checkpoints_check_out);
    tcase_add_test(tc, crafted_checkpoints);
    tcase_add_test(tc, config_against_wrong_checkpoint);
    suite_add_tcase(s, tc);
    return s;
}
