/* llama3 RoPE scaling in the forward pass, on a tiny random model written to
 * a temporary folder. Expectations come from the RoPE rules, not from our
 * own outputs:
 *   - at position 0 every rotation angle is 0 (cos 1, sin 0) whatever the
 *     frequencies, so position-0 logits are bit-identical with and without
 *     scaling;
 *   - when every frequency is in llama3's high-frequency band (wavelength
 *     below original_max_position_embeddings / high_freq_factor) llama3
 *     leaves every inv_freq unchanged: all logits bit-identical;
 *   - with frequencies in the medium and low bands the angles change from
 *     position 1 on, so later logits differ. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "runtime/forward.h"
#include "runtime/model.h"
#include "tests/testutil.h"

/* head_dim 8 -> 4 frequencies, theta 10000: inv = 1, 0.1, 0.01, 0.001,
 * wavelengths 2*pi*(1, 10, 100, 1000) = 6.28, 62.8, 628, 6283. */
#define TINY_CFG                                                                                   \
    "{\"model_type\":\"llama\",\"hidden_size\":16,\"intermediate_size\":24,"                       \
    "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"                 \
    "\"head_dim\":8,\"vocab_size\":32,\"max_position_embeddings\":64,\"rope_theta\":10000.0,"      \
    "\"rms_norm_eps\":1e-05,\"tie_word_embeddings\":false"

/* orig 64, low 1, high 4: bands at 64 and 16: i = 0 (6.28) high, i = 1
 * (62.8) medium, i = 2, 3 (628, 6283) low. */
static const char cfg_mixed[] = TINY_CFG ",\"rope_scaling\":{\"rope_type\":\"llama3\","
                                         "\"factor\":8.0,\"low_freq_factor\":1.0,"
                                         "\"high_freq_factor\":4.0,"
                                         "\"original_max_position_embeddings\":64}}";
/* orig 65536, high 4: high band below 16384 > 6283: every frequency high. */
static const char cfg_allhigh[] = TINY_CFG ",\"rope_scaling\":{\"rope_type\":\"llama3\","
                                           "\"factor\":8.0,\"low_freq_factor\":1.0,"
                                           "\"high_freq_factor\":4.0,"
                                           "\"original_max_position_embeddings\":65536}}";
static const char cfg_plain[] = TINY_CFG ",\"rope_scaling\":null}";

/* Write config.json and model.safetensors (F32, deterministic pseudo-random
 * weights from a fixed seed, so every folder gets the same weights). */
static void write_model(const char *dir, const char *cfg_text)
{
    lmp_config c;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_config_parse(&c, cfg_text, strlen(cfg_text), "config.json", &d) == LMP_OK,
                  "%s", d.msg);
    char *p = lmp_path_join(dir, "config.json");
    t_write(p, cfg_text, strlen(cfg_text));
    free(p);
    lmp_expect e[32];
    size_t n = lmp_config_expected(&c, e, 32);
    ck_assert_uint_le(n, 32);
    lmp_stw_desc descs[32];
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        memset(&descs[i], 0, sizeof descs[i]);
        descs[i].name = e[i].name;
        descs[i].dtype = LMP_DT_F32;
        descs[i].ndim = e[i].ndim;
        descs[i].shape[0] = e[i].shape[0];
        descs[i].shape[1] = e[i].shape[1];
        total += (size_t)e[i].shape[0] * (size_t)(e[i].ndim == 2 ? e[i].shape[1] : 1);
    }
    float *w = malloc(total * sizeof(float));
    uint32_t x = 12345u;
    for (size_t i = 0; i < total; i++) {
        x = x * 1664525u + 1013904223u;
        w[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.8f; /* [-0.4, 0.4) */
    }
    p = lmp_path_join(dir, "model.safetensors");
    lmp_stw *st = NULL;
    ck_assert_msg(lmp_stw_open(&st, p, descs, n, NULL, 0, &d) == LMP_OK, "%s", d.msg);
    ck_assert_int_eq(lmp_stw_write(st, w, total * sizeof(float), &d), LMP_OK);
    ck_assert_msg(lmp_stw_finish(st, &d) == LMP_OK, "%s", d.msg);
    free(p);
    free(w);
}

/* All-position logits [T][vocab] of a model written from cfg_text. */
static float *run(const char *cfg_text, const int *ids, int T, lmp_config *cfg_out)
{
    char *dir = t_tmpdir();
    write_model(dir, cfg_text);
    lmp_model m;
    lmp_state *s = NULL;
    lmp_diag d;
    lmp_diag_clear(&d);
    ck_assert_msg(lmp_model_open(&m, dir, NULL, &d) == LMP_OK, "%s", d.msg);
    ck_assert_msg(lmp_state_create(&s, &m, T, NULL, &d) == LMP_OK, "%s", d.msg);
    float *lg = malloc((size_t)T * (size_t)m.cfg.vocab * sizeof(float));
    ck_assert_msg(lmp_forward(s, ids, T, 0, lg, LMP_LOGITS_ALL, &d) == LMP_OK, "%s", d.msg);
    *cfg_out = m.cfg;
    lmp_state_close(s);
    lmp_model_close(&m);
    t_rmtree(dir);
    free(dir);
    return lg;
}

START_TEST(llama3_forward)
{
    enum { T = 12, V = 32 };
    const int ids[T] = {3, 17, 5, 29, 11, 2, 30, 8, 21, 14, 1, 26};
    lmp_config cp, cm, ch;
    float *plain = run(cfg_plain, ids, T, &cp);
    float *mixed = run(cfg_mixed, ids, T, &cm);
    float *allhigh = run(cfg_allhigh, ids, T, &ch);
    ck_assert_int_eq(cp.rope_type, LMP_ROPE_DEFAULT);
    ck_assert_int_eq(cm.rope_type, LMP_ROPE_LLAMA3);
    ck_assert_int_eq(ch.rope_type, LMP_ROPE_LLAMA3);

    /* The three regimes occur in the mixed config (bands 16 and 64). */
    ck_assert(lmp_config_inv_freq(&cm, 0) == 1.0);                  /* high: unchanged */
    double inv1 = pow(10000.0, -2.0 / 8.0), wl1 = 2.0 * M_PI / inv1; /* 0.1, 62.83 */
    double s1 = (64.0 / wl1 - 1.0) / (4.0 - 1.0);                    /* 0.00618... */
    ck_assert(fabs(lmp_config_inv_freq(&cm, 1) - ((1 - s1) * inv1 / 8.0 + s1 * inv1)) <= 1e-15);
    ck_assert(fabs(lmp_config_inv_freq(&cm, 2) - 0.01 / 8.0) <= 1e-15);  /* low: / factor */
    ck_assert(fabs(lmp_config_inv_freq(&cm, 3) - 0.001 / 8.0) <= 1e-15); /* low: / factor */
    for (int i = 0; i < 4; i++) /* all-high: every frequency unchanged */
        ck_assert(lmp_config_inv_freq(&ch, i) == lmp_config_inv_freq(&cp, i));

    /* Position 0: rotation by angle 0 is the identity: the same bits. */
    ck_assert(memcmp(plain, mixed, V * sizeof(float)) == 0);
    /* Every later position sees different angles: logits differ. */
    for (int p = 1; p < T; p++) {
        double diff = 0;
        for (int v = 0; v < V; v++)
            diff = fmax(diff, fabs((double)plain[p * V + v] - (double)mixed[p * V + v]));
        ck_assert_msg(diff > 1e-6, "position %d: scaled and unscaled logits agree (%g)", p, diff);
    }
    /* All frequencies in the high band: llama3 is the unscaled RoPE. */
    ck_assert(memcmp(plain, allhigh, (size_t)T * V * sizeof(float)) == 0);
    free(plain);
    free(mixed);
    free(allhigh);
}
END_TEST

Suite *lmp_suite_rope(void)
{
    Suite *s = suite_create("rope");
    TCase *tc = tcase_create("rope");
    tcase_add_test(tc, llama3_forward);
    suite_add_tcase(s, tc);
    return s;
}
