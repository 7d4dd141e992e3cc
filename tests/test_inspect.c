/* bin/lmpack-inspect on the fixtures, broken inputs and bad usage. Tensor
 * counts are derived from the fixture README table: 2 + 9 * layers, plus
 * lm_head when untied. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "tests/testutil.h"

static int run_inspect(const char *path, const char *opt, char **out, char **err)
{
    char *argv[] = {(char *)t_bin("lmpack-inspect"), (char *)path, (char *)opt, NULL};
    if (!opt) argv[2] = NULL;
    return t_run(argv, out, err);
}

static const struct {
    const char *dir;
    int layers, tied, nfiles;
    const char *dtype;
} folders[] = {
    {"tiny-smollm-bf16", 4, 1, 1, "BF16"},
    {"tiny-smollm-f16", 4, 1, 1, "F16"},
    {"tiny-untied-f32-sharded", 2, 0, 4, "F32"},
    {"stories260k", 5, 1, 1, "F32"},
};

START_TEST(fixture_folders_json)
{
    char *out = NULL, *err = NULL;
    int rc = run_inspect(t_data(folders[_i].dir), "--json", &out, &err);
    ck_assert_msg(rc == 0, "%s: exit %d: %s", folders[_i].dir, rc, err);
    cJSON *r = cJSON_Parse(out);
    ck_assert_ptr_nonnull(r);
    int want = 2 + 9 * folders[_i].layers + (folders[_i].tied ? 0 : 1);
    ck_assert_str_eq(cJSON_GetObjectItem(r, "kind")->valuestring, "hf-folder");
    ck_assert_str_eq(cJSON_GetObjectItem(r, "check")->valuestring, "ok");
    ck_assert_int_eq((int)cJSON_GetObjectItem(r, "n_tensors")->valuedouble, want);
    const cJSON *tensors = cJSON_GetObjectItem(r, "tensors");
    ck_assert_int_eq(cJSON_GetArraySize(tensors), want);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r, "files")), folders[_i].nfiles);
    /* totals agree with the table; every tensor has the fixture's dtype */
    double params = 0, bytes = 0;
    for (const cJSON *t = tensors->child; t; t = t->next) {
        double ne = 1;
        for (const cJSON *x = cJSON_GetObjectItem(t, "shape")->child; x; x = x->next)
            ne *= x->valuedouble;
        params += ne;
        bytes += cJSON_GetObjectItem(t, "bytes")->valuedouble;
        ck_assert_str_eq(cJSON_GetObjectItem(t, "dtype")->valuestring, folders[_i].dtype);
    }
    ck_assert(params == cJSON_GetObjectItem(r, "n_params")->valuedouble);
    ck_assert(bytes == cJSON_GetObjectItem(r, "bytes")->valuedouble);
    const cJSON *cfg = cJSON_GetObjectItem(r, "config");
    ck_assert_int_eq((int)cJSON_GetObjectItem(cfg, "num_hidden_layers")->valuedouble,
                     folders[_i].layers);
    cJSON_Delete(r);
    free(out);
    free(err);

    /* text mode: same verdict, a table line per tensor */
    rc = run_inspect(t_data(folders[_i].dir), NULL, &out, &err);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(strstr(out, "check: ok"));
    ck_assert_ptr_nonnull(strstr(out, "model.norm.weight"));
    free(out);
    free(err);
}
END_TEST

START_TEST(single_file_and_index)
{
    char *out = NULL, *err = NULL;
    int rc = run_inspect(t_data("tiny-untied-f32-sharded/model.safetensors.index.json"), "--json",
                         &out, &err);
    ck_assert_msg(rc == 0, "%s", err);
    cJSON *r = cJSON_Parse(out);
    ck_assert_str_eq(cJSON_GetObjectItem(r, "kind")->valuestring, "safetensors-index");
    ck_assert_int_eq((int)cJSON_GetObjectItem(r, "n_tensors")->valuedouble, 21);
    cJSON_Delete(r);
    free(out);
    free(err);
    rc = run_inspect(t_data("tiny-smollm-bf16/model.safetensors"), "--json", &out, &err);
    ck_assert_msg(rc == 0, "%s", err);
    r = cJSON_Parse(out);
    ck_assert_str_eq(cJSON_GetObjectItem(r, "kind")->valuestring, "safetensors");
    ck_assert_int_eq((int)cJSON_GetObjectItem(r, "n_tensors")->valuedouble, 38);
    /* hidden 192, vocab 4096: embedding [4096, 192] bf16 = 1572864 bytes */
    const cJSON *t0 = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "tensors"), 0);
    ck_assert_str_eq(cJSON_GetObjectItem(t0, "name")->valuestring, "model.embed_tokens.weight");
    ck_assert(cJSON_GetObjectItem(t0, "bytes")->valuedouble == 4096.0 * 192 * 2);
    cJSON_Delete(r);
    free(out);
    free(err);
}
END_TEST

START_TEST(bad_inputs_exit_1)
{
    char *dir = t_tmpdir();
    char *out = NULL, *err = NULL;
    /* garbage safetensors file */
    char *bad = lmp_path_join(dir, "bad.safetensors");
    t_write(bad, "\x05\0\0\0\0\0\0\0{}", 10);
    ck_assert_int_eq(run_inspect(bad, NULL, &out, &err), 1);
    ck_assert_ptr_nonnull(strstr(err, "bad.safetensors"));
    ck_assert_ptr_null(strchr(err, '\n') ? strchr(strchr(err, '\n') + 1, '\n') : NULL);
    free(out);
    free(err);
    /* missing path */
    char *none = lmp_path_join(dir, "none");
    ck_assert_int_eq(run_inspect(none, NULL, &out, &err), 1);
    ck_assert_ptr_nonnull(strstr(err, "no such file"));
    free(out);
    free(err);
    /* folder whose config does not match its weights: tiny-untied's config
     * with tiny-smollm's weights. */
    char *m = lmp_path_join(dir, "mixed");
    ck_assert_int_eq(mkdir(m, 0777), 0);
    char *cfg = lmp_path_join(m, "config.json"), *w = lmp_path_join(m, "model.safetensors");
    ck_assert_int_eq(symlink(t_data("tiny-untied-f32-sharded/config.json"), cfg), 0);
    ck_assert_int_eq(symlink(t_data("tiny-smollm-bf16/model.safetensors"), w), 0);
    ck_assert_int_eq(run_inspect(m, "--json", &out, &err), 1);
    ck_assert_ptr_nonnull(strstr(err, "tensor 'model.embed_tokens.weight' has shape [4096, 192], "
                                      "config expects [1000, 128]"));
    cJSON *r = cJSON_Parse(out);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(r, "check")->valuestring, "has shape"));
    cJSON_Delete(r);
    free(out);
    free(err);
    /* folder without weights */
    ck_assert_int_eq(run_inspect(t_data("smollm-tokenizer"), NULL, &out, &err), 1);
    ck_assert_ptr_nonnull(strstr(err, "smollm-tokenizer"));
    free(out);
    free(err);
    free(cfg);
    free(w);
    free(m);
    free(none);
    free(bad);
    t_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(usage_and_help)
{
    char *out = NULL, *err = NULL;
    char *argv0[] = {(char *)t_bin("lmpack-inspect"), NULL};
    ck_assert_int_eq(t_run(argv0, &out, &err), 2);
    ck_assert_ptr_nonnull(strstr(err, "missing PATH"));
    free(out);
    free(err);
    ck_assert_int_eq(run_inspect(t_data("stories260k"), "--frobnicate", &out, &err), 2);
    free(out);
    free(err);
    ck_assert_int_eq(run_inspect("--help", NULL, &out, &err), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: lmpack inspect"));
    free(out);
    free(err);
}
END_TEST

Suite *lmp_suite_inspect(void)
{
    Suite *s = suite_create("inspect");
    TCase *tc = tcase_create("inspect");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, fixture_folders_json, 0, (int)(sizeof folders / sizeof folders[0]));
    tcase_add_test(tc, single_file_and_index);
    tcase_add_test(tc, bad_inputs_exit_1);
    tcase_add_test(tc, usage_and_help);
    suite_add_tcase(s, tc);
    return s;
}
