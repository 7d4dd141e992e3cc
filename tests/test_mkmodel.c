/* bin/lmpack-mkmodel: folders that open and check out, determinism by seed
 * (and not by thread count), dtypes, weight statistics, atomic replace. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "tests/testutil.h"

/* 2 layers, hidden 256 (enough samples for the statistics below), GQA 2:1. */
static const char small_cfg[] =
    "{\"model_type\":\"llama\",\"hidden_size\":256,\"intermediate_size\":384,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
    "\"vocab_size\":500,\"tie_word_embeddings\":true,\"rms_norm_eps\":1e-05}";

static int mkmodel(const char *cfg, const char *out, const char *seed, const char *dtype,
                   const char *extra, char **err)
{
    char *argv[16];
    int a = 0;
    argv[a++] = (char *)t_bin("lmpack-mkmodel");
    argv[a++] = "--config";
    argv[a++] = (char *)cfg;
    argv[a++] = "-o";
    argv[a++] = (char *)out;
    argv[a++] = "--seed";
    argv[a++] = (char *)seed;
    if (dtype) {
        argv[a++] = "--dtype";
        argv[a++] = (char *)dtype;
    }
    if (extra) argv[a++] = (char *)extra;
    argv[a] = NULL;
    char *out_s = NULL;
    int rc = t_run(argv, &out_s, err);
    free(out_s);
    return rc;
}

static int count_entries(const char *dir)
{
    DIR *dp = opendir(dir);
    ck_assert_ptr_nonnull(dp);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(dp)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(dp);
    return n;
}

static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = t_slurp(a, &na), *y = t_slurp(b, &nb);
    int same = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* mean and standard deviation of a tensor's values */
static void stats(const lmp_st *st, const char *name, double *mean, double *sd)
{
    const lmp_st_tensor *t = lmp_st_find(st, name);
    ck_assert_ptr_nonnull(t);
    float *v = malloc(t->nelem * sizeof *v);
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_int_eq(lmp_st_to_f32(t, v, &d), LMP_OK);
    double s = 0, s2 = 0;
    for (uint64_t i = 0; i < t->nelem; i++) {
        ck_assert(isfinite(v[i]));
        s += v[i];
        s2 += (double)v[i] * v[i];
    }
    *mean = s / (double)t->nelem;
    *sd = sqrt(s2 / (double)t->nelem - *mean * *mean);
    free(v);
}

START_TEST(small_model_checks_out)
{
    char *dir = t_tmpdir();
    char *cfg = lmp_path_join(dir, "small.json");
    t_write(cfg, small_cfg, strlen(small_cfg));
    char *m = lmp_path_join(dir, "m");
    char *err = NULL;
    ck_assert_msg(mkmodel(cfg, m, "7", NULL, NULL, &err) == 0, "%s", err);
    free(err);

    lmp_config c;
    lmp_st *st = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_config_load(&c, m, &d) == LMP_OK, "%s", d.msg);
    ck_assert_int_eq(c.hidden, 256);
    ck_assert_int_eq(c.n_layers, 2);
    ck_assert_int_eq(c.n_kv_heads, 2);
    ck_assert_str_eq(c.torch_dtype, "bfloat16"); /* default dtype */
    ck_assert_msg(lmp_st_open(&st, m, &d) == LMP_OK, "%s", d.msg);
    ck_assert_msg(lmp_config_check(&c, st, &d) == LMP_OK, "%s", d.msg);
    ck_assert_uint_eq(lmp_st_count(st), 2 + 9 * 2);
    ck_assert_int_eq(lmp_st_at(st, 0)->dtype, LMP_DT_BF16);
    /* norm weights 1 + 0.1 N(0,1); projections N(0, 0.02^2); embedding 0.05 */
    double mean, sd;
    stats(st, "model.layers.0.input_layernorm.weight", &mean, &sd);
    ck_assert_msg(fabs(mean - 1.0) < 0.03 && sd > 0.07 && sd < 0.13, "norm %g %g", mean, sd);
    stats(st, "model.norm.weight", &mean, &sd);
    ck_assert_msg(fabs(mean - 1.0) < 0.03 && sd > 0.07 && sd < 0.13, "norm %g %g", mean, sd);
    stats(st, "model.layers.1.mlp.gate_proj.weight", &mean, &sd);
    ck_assert_msg(fabs(mean) < 0.001 && sd > 0.019 && sd < 0.021, "gate %g %g", mean, sd);
    stats(st, "model.embed_tokens.weight", &mean, &sd);
    ck_assert_msg(fabs(mean) < 0.002 && sd > 0.048 && sd < 0.052, "embed %g %g", mean, sd);
    /* two tensors of the same shape are not the same draw */
    const lmp_st_tensor *a = lmp_st_find(st, "model.layers.0.mlp.gate_proj.weight");
    const lmp_st_tensor *b = lmp_st_find(st, "model.layers.0.mlp.up_proj.weight");
    ck_assert(memcmp(a->data, b->data, a->nbytes) != 0);
    lmp_st_close(st);

    /* inspect agrees */
    char *argv[] = {(char *)t_bin("lmpack-inspect"), m, NULL};
    char *o = NULL;
    ck_assert_int_eq(t_run(argv, &o, &err), 0);
    free(o);
    free(err);

    /* same seed -> identical bytes, whatever the thread count */
    char *m2 = lmp_path_join(dir, "m2");
    ck_assert_int_eq(mkmodel(cfg, m2, "7", NULL, "--threads=1", &err), 2); /* not a form we take */
    free(err);
    char *argv2[] = {(char *)t_bin("lmpack-mkmodel"), "--config", cfg, "-o", m2, "--seed", "7",
                     "--threads", "1", NULL};
    ck_assert_int_eq(t_run(argv2, &o, &err), 0);
    free(o);
    free(err);
    char *f1 = lmp_path_join(m, "model.safetensors"), *f2 = lmp_path_join(m2, "model.safetensors");
    char *c1 = lmp_path_join(m, "config.json"), *c2 = lmp_path_join(m2, "config.json");
    ck_assert(same_file(f1, f2));
    ck_assert(same_file(c1, c2));
    /* different seed -> different weights; --force replaces the folder */
    ck_assert_int_eq(mkmodel(cfg, m2, "8", NULL, NULL, &err), 1); /* exists */
    ck_assert_ptr_nonnull(strstr(err, "already exists"));
    free(err);
    ck_assert_int_eq(mkmodel(cfg, m2, "8", NULL, "--force", &err), 0);
    free(err);
    ck_assert(!same_file(f1, f2));
    ck_assert(same_file(c1, c2));
    /* no temporary left beside the output */
    ck_assert_int_eq(count_entries(dir), 3); /* small.json, m, m2 */
    ck_assert_int_eq(count_entries(m2), 2);  /* config.json, model.safetensors */
    free(f1);
    free(f2);
    free(c1);
    free(c2);
    free(m2);
    free(m);
    free(cfg);
    t_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(dtypes)
{
    static const struct {
        const char *opt, *torch;
        lmp_dtype dt;
    } cases[] = {{"f16", "float16", LMP_DT_F16}, {"f32", "float32", LMP_DT_F32}};
    char *dir = t_tmpdir();
    char *cfg = lmp_path_join(dir, "small.json");
    t_write(cfg, small_cfg, strlen(small_cfg));
    for (int i = 0; i < 2; i++) {
        char *m = lmp_path_join(dir, cases[i].opt);
        char *err = NULL;
        ck_assert_msg(mkmodel(cfg, m, "1", cases[i].opt, NULL, &err) == 0, "%s", err);
        free(err);
        lmp_config c;
        lmp_st *st = NULL;
        lmp_diag d;
        lmp_diag_clear(&d);
        ck_assert_int_eq(lmp_config_load(&c, m, &d), LMP_OK);
        ck_assert_str_eq(c.torch_dtype, cases[i].torch);
        ck_assert_int_eq(lmp_st_open(&st, m, &d), LMP_OK);
        ck_assert_msg(lmp_config_check(&c, st, &d) == LMP_OK, "%s", d.msg);
        for (size_t k = 0; k < lmp_st_count(st); k++)
            ck_assert_int_eq(lmp_st_at(st, k)->dtype, cases[i].dt);
        double mean, sd;
        stats(st, "model.layers.1.post_attention_layernorm.weight", &mean, &sd);
        ck_assert(fabs(mean - 1.0) < 0.03 && sd > 0.07);
        lmp_st_close(st);
        free(m);
    }
    free(cfg);
    t_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(presets_and_usage)
{
    /* --print-config of the preset reads back as SmolLM-360M (team brief). */
    char *out = NULL, *err = NULL;
    char *argv[] = {(char *)t_bin("lmpack-mkmodel"), "--like", "smollm-360m", "--print-config",
                    NULL};
    ck_assert_int_eq(t_run(argv, &out, &err), 0);
    lmp_config c;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_config_parse(&c, out, strlen(out), "stdout", &d) == LMP_OK, "%s", d.msg);
    ck_assert_int_eq(c.hidden, 960);
    ck_assert_int_eq(c.intermediate, 2560);
    ck_assert_int_eq(c.n_layers, 32);
    ck_assert_int_eq(c.n_heads, 15);
    ck_assert_int_eq(c.n_kv_heads, 5);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_int_eq(c.vocab, 49152);
    ck_assert_int_eq(c.tied, 1);
    ck_assert(c.rope_theta == 10000.0f);
    ck_assert_str_eq(c.torch_dtype, "bfloat16");
    free(out);
    free(err);
    char *argv135[] = {(char *)t_bin("lmpack-mkmodel"), "--like", "smollm-135m",
                       "--print-config", NULL};
    ck_assert_int_eq(t_run(argv135, &out, &err), 0);
    ck_assert_int_eq(lmp_config_parse(&c, out, strlen(out), "stdout", &d), LMP_OK);
    ck_assert(c.hidden == 576 && c.intermediate == 1536 && c.n_layers == 30 && c.n_heads == 9 &&
              c.n_kv_heads == 3 && c.vocab == 49152 && c.tied == 1);
    free(out);
    free(err);
    char *bad1[] = {(char *)t_bin("lmpack-mkmodel"), "--like", "gpt5", "-o", "/tmp/x", NULL};
    ck_assert_int_eq(t_run(bad1, &out, &err), 2);
    free(out);
    free(err);
    char *bad2[] = {(char *)t_bin("lmpack-mkmodel"), "--like", "smollm-135m", NULL};
    ck_assert_int_eq(t_run(bad2, &out, &err), 2);
    free(out);
    free(err);
    char *help[] = {(char *)t_bin("lmpack-mkmodel"), "--help", NULL};
    ck_assert_int_eq(t_run(help, &out, &err), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: lmpack mkmodel"));
    free(out);
    free(err);
}
END_TEST

START_TEST(tokenizer_and_bad_config)
{
    char *dir = t_tmpdir();
    char *cfg = lmp_path_join(dir, "small.json");
    t_write(cfg, small_cfg, strlen(small_cfg));
    char *m = lmp_path_join(dir, "m");
    char *out = NULL, *err = NULL;
    char *argv[] = {(char *)t_bin("lmpack-mkmodel"), "--config", cfg, "-o", m, "--tokenizer",
                    (char *)t_data("stories260k"), NULL};
    ck_assert_msg(t_run(argv, &out, &err) == 0, "%s", err);
    free(out);
    free(err);
    char *tj = lmp_path_join(m, "tokenizer.json"), *tc = lmp_path_join(m, "tokenizer_config.json");
    ck_assert(same_file(tj, t_data("stories260k/tokenizer.json")));
    ck_assert(same_file(tc, t_data("stories260k/tokenizer_config.json")));
    free(tj);
    free(tc);
    /* a config lmpack rejects fails with the config's own message, no output */
    const char *bad = "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":96,"
                      "\"num_hidden_layers\":1,\"num_attention_heads\":4,"
                      "\"num_key_value_heads\":3,\"vocab_size\":50}";
    t_write(cfg, bad, strlen(bad));
    char *m2 = lmp_path_join(dir, "m2");
    ck_assert_int_eq(mkmodel(cfg, m2, "1", NULL, NULL, &err), 1);
    ck_assert_ptr_nonnull(strstr(err, "num_key_value_heads 3 does not divide num_attention_heads 4"));
    ck_assert(!lmp_exists(m2));
    free(err);
    free(m2);
    free(m);
    free(cfg);
    t_rmtree(dir);
    free(dir);
}
END_TEST

Suite *lmp_suite_mkmodel(void)
{
    Suite *s = suite_create("mkmodel");
    TCase *tc = tcase_create("mkmodel");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, small_model_checks_out);
    tcase_add_test(tc, dtypes);
    tcase_add_test(tc, presets_and_usage);
    tcase_add_test(tc, tokenizer_and_bad_config);
    suite_add_tcase(s, tc);
    return s;
}
