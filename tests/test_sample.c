/* Sampler: expectations from hand-computed distributions (probabilities
 * given as logits = log p), and statistics over many seeded draws. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sample.h"

static lmp_sample_params plain(void)
{
    lmp_sample_params p;
    lmp_sample_defaults(&p);
    p.temperature = 1;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    p.repeat_penalty = 1;
    p.seed = 1234;
    return p;
}

static lmp_sampler *mk(const lmp_sample_params *p, int n)
{
    lmp_sampler *s = NULL;
    lmp_diag d = {0};
    ck_assert_msg(lmp_sampler_create(&s, p, n, &d) == LMP_OK, "%s", d.msg);
    return s;
}

/* p = {0.5, 0.3, 0.15, 0.05} */
static const double P4[4] = {0.5, 0.3, 0.15, 0.05};
static void logits4(float *l, float shift)
{
    for (int i = 0; i < 4; i++) l[i] = (float)log(P4[i]) + shift;
}

START_TEST(topk1_is_greedy)
{
    lmp_sample_params p = plain(), g = plain();
    p.top_k = 1;
    p.temperature = 1.3f;
    g.temperature = 0;
    lmp_sampler *s = mk(&p, 1000), *sg = mk(&g, 1000);
    float *l = malloc(1000 * sizeof *l);
    srand(7);
    for (int r = 0; r < 50; r++) {
        int best = 0;
        for (int i = 0; i < 1000; i++) {
            l[i] = (float)rand() / RAND_MAX * 20 - 10;
            if (l[i] > l[best]) best = i;
        }
        ck_assert_int_eq(lmp_sampler_sample(sg, l), best);
        ck_assert_int_eq(lmp_sampler_sample(s, l), best);
    }
    free(l);
    lmp_sampler_close(s);
    lmp_sampler_close(sg);
}
END_TEST

static void expect_probs(lmp_sampler *s, const float *l, const double *want, int n)
{
    float got[8];
    lmp_sampler_probs(s, l, got);
    for (int i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) < 1e-5, "p[%d] = %g, want %g", i, got[i], want[i]);
}

START_TEST(top_p_nucleus_and_min_p)
{
    float l[4];
    logits4(l, 3.0f); /* a shift of the logits changes nothing */
    lmp_sample_params p = plain();
    /* top-p 0.75: 0.5 < 0.75 <= 0.8 -> {0, 1}, renormalized over 0.8 */
    p.top_p = 0.75f;
    lmp_sampler *s = mk(&p, 4);
    expect_probs(s, l, (const double[]){0.5 / 0.8, 0.3 / 0.8, 0, 0}, 4);
    lmp_sampler_close(s);
    /* top-p 0.9: 0.8 < 0.9 <= 0.95 -> {0, 1, 2} */
    p.top_p = 0.9f;
    s = mk(&p, 4);
    expect_probs(s, l, (const double[]){0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, 4);
    /* draws never leave the nucleus */
    for (int i = 0; i < 2000; i++) ck_assert_int_ne(lmp_sampler_sample(s, l), 3);
    lmp_sampler_close(s);
    /* min-p 0.2: threshold 0.2 * 0.5 = 0.1 -> {0, 1, 2}; 0.4 -> 0.2 -> {0, 1} */
    p.top_p = 1;
    p.min_p = 0.2f;
    s = mk(&p, 4);
    expect_probs(s, l, (const double[]){0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, 4);
    lmp_sampler_close(s);
    p.min_p = 0.4f;
    s = mk(&p, 4);
    expect_probs(s, l, (const double[]){0.5 / 0.8, 0.3 / 0.8, 0, 0}, 4);
    lmp_sampler_close(s);
    /* top-k 3 */
    p.min_p = 0;
    p.top_k = 3;
    s = mk(&p, 4);
    expect_probs(s, l, (const double[]){0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, 4);
    lmp_sampler_close(s);
    /* temperature 2: p_i^(1/2) normalized */
    p.top_k = 0;
    p.temperature = 2;
    s = mk(&p, 4);
    double z = 0, w[4];
    for (int i = 0; i < 4; i++) z += sqrt(P4[i]);
    for (int i = 0; i < 4; i++) w[i] = sqrt(P4[i]) / z;
    expect_probs(s, l, w, 4);
    lmp_sampler_close(s);
}
END_TEST

START_TEST(seed_reproduces)
{
    float l[4];
    logits4(l, 0);
    lmp_sample_params p = plain();
    lmp_sampler *a = mk(&p, 4), *b = mk(&p, 4);
    p.seed = 99;
    lmp_sampler *c = mk(&p, 4);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        int x = lmp_sampler_sample(a, l), y = lmp_sampler_sample(b, l), z = lmp_sampler_sample(c, l);
        ck_assert_int_eq(x, y);
        differ += x != z;
    }
    ck_assert_int_gt(differ, 0); /* another seed gives another sequence */
    lmp_sampler_close(a);
    lmp_sampler_close(b);
    lmp_sampler_close(c);
}
END_TEST

START_TEST(frequencies_match_softmax)
{
    float l[4];
    logits4(l, -1.0f);
    lmp_sample_params p = plain();
    p.seed = 42;
    lmp_sampler *s = mk(&p, 4);
    enum { N = 40000 };
    int cnt[4] = {0};
    for (int i = 0; i < N; i++) cnt[lmp_sampler_sample(s, l)]++;
    /* chi-square, 3 degrees of freedom: 16.27 is the 0.999 quantile */
    double chi = 0;
    for (int i = 0; i < 4; i++) {
        double e = N * P4[i];
        chi += (cnt[i] - e) * (cnt[i] - e) / e;
    }
    ck_assert_msg(chi < 16.27, "chi-square %g (counts %d %d %d %d)", chi, cnt[0], cnt[1], cnt[2],
                  cnt[3]);
    lmp_sampler_close(s);
}
END_TEST

START_TEST(repeat_penalty)
{
    /* logits {2, 1, -1, 0}; tokens 0 and 2 in the window; penalty 2 ->
     * {1, 1, -2, 0}; token 1 was seen only before the window of 2. */
    float l[4] = {2, 1, -1, 0};
    lmp_sample_params p = plain();
    p.repeat_penalty = 2;
    p.repeat_last_n = 3;
    lmp_sampler *s = mk(&p, 4);
    lmp_sampler_accept(s, 1);
    lmp_sampler_accept(s, 0);
    lmp_sampler_accept(s, 2);
    lmp_sampler_accept(s, 0);
    double pen[4] = {1, 1, -2, 0}, z = 0, w[4];
    for (int i = 0; i < 4; i++) z += exp(pen[i]);
    for (int i = 0; i < 4; i++) w[i] = exp(pen[i]) / z;
    expect_probs(s, l, w, 4);
    lmp_sampler_close(s);
    /* greedy also sees the penalty: argmax moves from 0 to 1 (tie -> lower id
     * is 0, so make token 0 repeated strongly) */
    p.temperature = 0;
    p.repeat_penalty = 4;
    s = mk(&p, 4);
    ck_assert_int_eq(lmp_sampler_sample(s, l), 0);
    lmp_sampler_accept(s, 0);
    ck_assert_int_eq(lmp_sampler_sample(s, l), 1); /* 2/4 = 0.5 < 1 */
    lmp_sampler_close(s);
    /* bad parameters are rejected */
    lmp_sampler *x = NULL;
    lmp_diag d = {0};
    p.top_p = 0;
    ck_assert_int_eq(lmp_sampler_create(&x, &p, 4, &d), LMP_ERR_ARG);
    ck_assert_ptr_null(x);
}
END_TEST

START_TEST(top_k_large_vocab)
{
    /* 1000 random logits, top-k 10: the 10 largest keep softmax weights
     * among themselves (found here by repeated max search), the rest 0 */
    enum { V = 1000, K = 10 };
    lmp_sample_params p = plain();
    p.top_k = K;
    lmp_sampler *s = mk(&p, V);
    float *l = malloc(V * sizeof *l), *got = malloc(V * sizeof *got);
    srand(11);
    for (int i = 0; i < V; i++) l[i] = (float)rand() / RAND_MAX * 8 - 4;
    int top[K];
    char used[V] = {0};
    for (int k = 0; k < K; k++) {
        int b = -1;
        for (int i = 0; i < V; i++)
            if (!used[i] && (b < 0 || l[i] > l[b])) b = i;
        used[b] = 1;
        top[k] = b;
    }
    double z = 0;
    for (int k = 0; k < K; k++) z += exp((double)l[top[k]] - l[top[0]]);
    lmp_sampler_probs(s, l, got);
    for (int i = 0; i < V; i++) {
        double want = used[i] ? exp((double)l[i] - l[top[0]]) / z : 0;
        ck_assert_msg(fabs(got[i] - want) < 1e-6, "p[%d] = %g, want %g", i, got[i], want);
    }
    free(l);
    free(got);
    lmp_sampler_close(s);
}
END_TEST

Suite *lmp_suite_sample(void)
{
    Suite *s = suite_create("sample");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, topk1_is_greedy);
    tcase_add_test(tc, top_p_nucleus_and_min_p);
    tcase_add_test(tc, seed_reproduces);
    tcase_add_test(tc, frequencies_match_softmax);
    tcase_add_test(tc, repeat_penalty);
    tcase_add_test(tc, top_k_large_vocab);
    suite_add_tcase(s, tc);
    return s;
}
