/* runtime/bind.h: Hugging Face name -> lmp_model slot, as the streamed
 * (browser) bundle loader uses it. The good path binds every tensor of
 * stories260k (f32 copies, tied embedding) and must reproduce transformers'
 * logits from golden.safetensors; the bad paths break one rule each. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/config.h"
#include "formats/safetensors.h"
#include "runtime/bind.h"
#include "runtime/forward.h"
#include "runtime/model.h"
#include "tests/testutil.h"

typedef struct {
    lmp_config cfg;
    lmp_st *st;
    size_t n;
    lmp_expect *ex;
    float **buf; /* f32 copy of each expected tensor */
} src;

static void src_open(src *s)
{
    lmp_diag d = {0};
    memset(s, 0, sizeof *s);
    ck_assert_msg(lmp_config_load(&s->cfg, t_data("stories260k"), &d) == LMP_OK, "%s", d.msg);
    char p[1100];
    snprintf(p, sizeof p, "%s/model.safetensors", t_data("stories260k"));
    ck_assert_msg(lmp_st_open(&s->st, p, &d) == LMP_OK, "%s", d.msg);
    s->n = lmp_config_expected(&s->cfg, NULL, 0);
    s->ex = calloc(s->n, sizeof *s->ex);
    s->buf = calloc(s->n, sizeof *s->buf);
    ck_assert(s->ex && s->buf);
    lmp_config_expected(&s->cfg, s->ex, s->n);
    for (size_t i = 0; i < s->n; i++) {
        const lmp_st_tensor *t = lmp_st_find(s->st, s->ex[i].name);
        ck_assert_msg(t, "stories260k: %s missing", s->ex[i].name);
        s->buf[i] = malloc(t->nelem * sizeof(float));
        ck_assert(s->buf[i]);
        ck_assert_msg(lmp_st_to_f32(t, s->buf[i], &d) == LMP_OK, "%s", d.msg);
    }
}

static void src_close(src *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->buf[i]);
    free(s->buf);
    free(s->ex);
    lmp_st_close(s->st);
}

static lmp_bind_tensor desc(const src *s, size_t i)
{
    const lmp_expect *e = &s->ex[i];
    uint64_t ne = (uint64_t)e->shape[0] * (uint64_t)(e->ndim > 1 ? e->shape[1] : 1);
    lmp_bind_tensor b = {.name = e->name, .kind = LMP_MAT_F32, .ndim = e->ndim,
                         .shape = {e->shape[0], e->ndim > 1 ? e->shape[1] : 0},
                         .data = s->buf[i], .size = ne * 4};
    return b;
}

static void model_init(lmp_model *m, const src *s)
{
    memset(m, 0, sizeof *m);
    m->cfg = s->cfg;
    m->layers = calloc((size_t)s->cfg.n_layers, sizeof *m->layers);
    ck_assert(m->layers);
}

START_TEST(bind_all_matches_golden)
{
    src s;
    src_open(&s);
    lmp_model m;
    model_init(&m, &s);
    lmp_diag d = {0};
    for (size_t i = 0; i < s.n; i++) {
        lmp_bind_tensor b = desc(&s, i);
        ck_assert_msg(lmp_model_bind(&m, &b, "test", &d) == LMP_OK, "%s", d.msg);
    }
    ck_assert_msg(lmp_model_check(&m, "test", &d) == LMP_OK, "%s", d.msg);
    ck_assert_ptr_eq(m.lm_head.data, m.embed.data); /* tied */

    char gp[1100];
    snprintf(gp, sizeof gp, "%s/golden.safetensors", t_data("stories260k"));
    lmp_st *g = NULL;
    ck_assert_msg(lmp_st_open(&g, gp, &d) == LMP_OK, "%s", d.msg);
    const lmp_st_tensor *ids_t = lmp_st_find(g, "prompt0.ids");
    const lmp_st_tensor *pos_t = lmp_st_find(g, "prompt0.positions");
    const lmp_st_tensor *lg_t = lmp_st_find(g, "prompt0.logits");
    ck_assert(ids_t && pos_t && lg_t);
    int T = (int)ids_t->nelem, P = (int)pos_t->nelem, V = s.cfg.vocab;
    int *ids = malloc(sizeof(int) * T), *pos = malloc(sizeof(int) * P);
    float *want = malloc(sizeof(float) * (size_t)P * V), *got = malloc(sizeof(float) * (size_t)T * V);
    ck_assert(ids && pos && want && got);
    memcpy(ids, ids_t->data, sizeof(int) * T);
    memcpy(pos, pos_t->data, sizeof(int) * P);
    memcpy(want, lg_t->data, sizeof(float) * (size_t)P * V);
    lmp_state *st = NULL;
    ck_assert_msg(lmp_state_create(&st, &m, T, NULL, &d) == LMP_OK, "%s", d.msg);
    ck_assert_msg(lmp_forward(st, ids, T, 0, got, LMP_LOGITS_ALL, &d) == LMP_OK, "%s", d.msg);
    double mx = 0, err = 0;
    for (int p = 0; p < P; p++)
        for (int v = 0; v < V; v++) {
            double w = want[(size_t)p * V + v], x = got[(size_t)pos[p] * V + v];
            mx = fmax(mx, fabs(w));
            err = fmax(err, fabs(w - x));
        }
    ck_assert_msg(err / mx <= 1e-4, "bound model: max|logit-golden|/max|golden| = %g", err / mx);
    lmp_state_close(st);
    lmp_st_close(g);
    free(ids);
    free(pos);
    free(want);
    free(got);
    lmp_model_close(&m);
    src_close(&s);
}
END_TEST

/* One broken rule per case; each must be refused with LMP_ERR_MODEL and a
 * message naming the tensor. */
START_TEST(bind_refuses)
{
    src s;
    src_open(&s);
    lmp_diag d = {0};
    lmp_model m;
    size_t q = 0, nrm = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (strstr(s.ex[i].name, "layers.0.self_attn.q_proj")) q = i;
        if (strstr(s.ex[i].name, "layers.0.input_layernorm")) nrm = i;
    }
    lmp_bind_tensor b;

    model_init(&m, &s); /* wrong shape */
    b = desc(&s, q);
    b.shape[0] += 1;
    ck_assert_int_eq(lmp_model_bind(&m, &b, "t", &d), LMP_ERR_MODEL);
    ck_assert_msg(strstr(d.msg, "q_proj"), "%s", d.msg);
    lmp_model_close(&m);

    model_init(&m, &s); /* bound twice */
    lmp_diag_clear(&d);
    b = desc(&s, q);
    ck_assert_int_eq(lmp_model_bind(&m, &b, "t", &d), LMP_OK);
    ck_assert_int_eq(lmp_model_bind(&m, &b, "t", &d), LMP_ERR_MODEL);
    ck_assert_msg(strstr(d.msg, "twice"), "%s", d.msg);
    lmp_model_close(&m);

    model_init(&m, &s); /* layer out of range */
    lmp_diag_clear(&d);
    b = desc(&s, q);
    b.name = "model.layers.5.self_attn.q_proj.weight"; /* stories260k has 5 layers */
    ck_assert_int_eq(lmp_model_bind(&m, &b, "t", &d), LMP_ERR_MODEL);
    lmp_diag_clear(&d);
    b.name = "model.layers.x.self_attn.q_proj.weight";
    ck_assert_int_eq(lmp_model_bind(&m, &b, "t", &d), LMP_ERR_MODEL);
    lmp_diag_clear(&d);
    b.name = "model.layers.0.self_attn.qq_proj.weight"; /* unknown */
    ck_assert_int_eq(lmp_model_bind(&m, &b, "t", &d), LMP_ERR_MODEL);
    lmp_diag_clear(&d);
    b.name = "lm_head.weight"; /* tied config: refused */
    b.shape[0] = s.cfg.vocab;
    b.shape[1] = s.cfg.hidden;
    b.size = (uint64_t)s.cfg.vocab * s.cfg.hidden * 4;
    ck_assert_int_eq(lmp_model_bind(&m, &b, "t", &d), LMP_ERR_MODEL);
    ck_assert_msg(strstr(d.msg, "lm_head"), "%s", d.msg);
    lmp_model_close(&m);

    model_init(&m, &s); /* byte count disagrees with the shape */
    lmp_diag_clear(&d);
    b = desc(&s, q);
    b.size -= 4;
    ck_assert_int_eq(lmp_model_bind(&m, &b, "t", &d), LMP_ERR_MODEL);
    lmp_diag_clear(&d); /* norms must be f32 */
    b = desc(&s, nrm);
    b.kind = LMP_MAT_F16;
    b.size /= 2;
    ck_assert_int_eq(lmp_model_bind(&m, &b, "t", &d), LMP_ERR_MODEL);
    ck_assert_msg(strstr(d.msg, "input_layernorm"), "%s", d.msg);
    lmp_diag_clear(&d); /* q4 with an invalid group */
    b = desc(&s, q);
    b.kind = LMP_MAT_Q4;
    b.group = 48;
    b.scheme = 1;
    ck_assert_int_eq(lmp_model_bind(&m, &b, "t", &d), LMP_ERR_MODEL);
    lmp_diag_clear(&d); /* incomplete model is caught by lmp_model_check */
    b = desc(&s, q);
    ck_assert_int_eq(lmp_model_bind(&m, &b, "t", &d), LMP_OK);
    ck_assert_int_ne(lmp_model_check(&m, "t", &d), LMP_OK);
    lmp_model_close(&m);
    src_close(&s);
}
END_TEST

Suite *lmp_suite_bind(void)
{
    Suite *s = suite_create("bind");
    TCase *tc = tcase_create("bind");
    tcase_add_test(tc, bind_all_matches_golden);
    tcase_add_test(tc, bind_refuses);
    suite_add_tcase(s, tc);
    return s;
}
