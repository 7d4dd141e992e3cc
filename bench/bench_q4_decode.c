/* End-to-end int4 decode speed: load a model (HF folder, FP32 runtime
 * loader), quantize every 2-D weight in memory with the given scheme /
 * group / embedding type (search on, 2 threads), then time prefill of a
 * 16-token prompt and greedy decode steps with 1 and 2 threads.
 * Prints rows of "| benchmark | value | unit | notes |".
 * Usage: bench_q4_decode MODEL_DIR [--scheme sym|asym] [--group N]
 *                       [--embed q4|q8] [--steps N] [--minmax]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli.h"
#include "quantize/q4.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/model.h"

#include "bench/bench_util.h"

typedef struct {
    void *bufs[1024];
    int n;
} owner_list;

static void release_list(void *p)
{
    owner_list *o = p;
    for (int i = 0; i < o->n; i++) free(o->bufs[i]);
    free(o);
}

static int g_method = LMP_Q4_SEARCH;

static lmp_mat qmat(const lmp_mat *src, int scheme, int group, owner_list *o, lmp_pool *pool,
                    double *bytes)
{
    lmp_mat m;
    lmp_diag d;
    size_t rb = lmp_q4_row_bytes(src->cols, group, scheme);
    void *buf = malloc(rb * (size_t)src->rows);
    if (!buf || o->n == 1024) exit(1);
    o->bufs[o->n++] = buf;
    if (lmp_q4_quantize(src->data, src->rows, src->cols, group, scheme, (lmp_q4_method)g_method, buf, pool,
                        "w", &d) != LMP_OK ||
        lmp_q4_mat_init(&m, src->rows, src->cols, group, scheme, buf, &d) != LMP_OK) {
        fprintf(stderr, "bench_q4_decode: %s\n", d.msg);
        exit(1);
    }
    *bytes += (double)rb * src->rows;
    return m;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int scheme = LMP_Q4_ASYM, group = 64, emb8 = 0, steps = 32;
    for (int i = 1; i < argc; i++) {
        long v;
        if (!strcmp(argv[i], "--help")) {
            printf("usage: bench_q4_decode MODEL_DIR [--scheme sym|asym] [--group N] "
                   "[--embed q4|q8] [--steps N] [--minmax]\n");
            return 0;
        } else if (!strcmp(argv[i], "--scheme") && i + 1 < argc) {
            scheme = lmp_q4_scheme_from_name(argv[++i]);
            if (scheme != LMP_Q4_SYM && scheme != LMP_Q4_ASYM)
                lmp_cli_usage_error("bench", "bad --scheme");
        } else if (!strcmp(argv[i], "--group") && i + 1 < argc) {
            if (lmp_parse_int(argv[++i], 32, 128, &v)) lmp_cli_usage_error("bench", "bad --group");
            group = (int)v;
        } else if (!strcmp(argv[i], "--embed") && i + 1 < argc) {
            emb8 = !strcmp(argv[++i], "q8");
        } else if (!strcmp(argv[i], "--minmax")) {
            g_method = LMP_Q4_MINMAX;
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            if (lmp_parse_int(argv[++i], 1, 10000, &v)) lmp_cli_usage_error("bench", "bad --steps");
            steps = (int)v;
        } else if (!dir) {
            dir = argv[i];
        } else {
            lmp_cli_usage_error("bench", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!dir) lmp_cli_usage_error("bench", "missing MODEL_DIR");
    lmp_diag d;
    lmp_model fp, qm;
    lmp_pool *pools[2];
    if (lmp_pool_create(&pools[0], 1, &d) || lmp_pool_create(&pools[1], 2, &d))
        return lmp_cli_fail("bench", &d);
    if (lmp_model_open(&fp, dir, NULL, &d) != LMP_OK) return lmp_cli_fail("bench", &d);
    owner_list *o = calloc(1, sizeof *o);
    memset(&qm, 0, sizeof qm);
    qm.cfg = fp.cfg;
    qm.layers = calloc((size_t)fp.cfg.n_layers, sizeof *qm.layers);
    double bytes = 0, params = lmp_model_params(&fp.cfg);
    double t0 = lmp_now_ms();
    for (int l = 0; l < fp.cfg.n_layers; l++) {
        lmp_layer *S = &fp.layers[l], *D = &qm.layers[l];
        D->wq = qmat(&S->wq, scheme, group, o, pools[1], &bytes);
        D->wk = qmat(&S->wk, scheme, group, o, pools[1], &bytes);
        D->wv = qmat(&S->wv, scheme, group, o, pools[1], &bytes);
        D->wo = qmat(&S->wo, scheme, group, o, pools[1], &bytes);
        D->wgate = qmat(&S->wgate, scheme, group, o, pools[1], &bytes);
        D->wup = qmat(&S->wup, scheme, group, o, pools[1], &bytes);
        D->wdown = qmat(&S->wdown, scheme, group, o, pools[1], &bytes);
        D->attn_norm = S->attn_norm;
        D->ffn_norm = S->ffn_norm;
    }
    qm.embed = qmat(&fp.embed, emb8 ? LMP_Q4_Q8 : scheme, emb8 ? 32 : group, o, pools[1], &bytes);
    qm.lm_head = fp.cfg.tied ? qm.embed
                             : qmat(&fp.lm_head, emb8 ? LMP_Q4_Q8 : scheme, emb8 ? 32 : group, o,
                                    pools[1], &bytes);
    double tq = lmp_now_ms() - t0;
    qm.final_norm = fp.final_norm;
    qm.release = release_list;
    qm.owner = o;
    char conf[64];
    snprintf(conf, sizeof conf, "%s g%d embed %s, %.2f bpw, %.0f MB", lmp_q4_scheme_name(scheme),
             group, emb8 ? "q8" : "q4", 8 * bytes / params, bytes / 1e6);
    printf("| q4 quantize whole model (%s, 2T) |", g_method ? "search" : "minmax");
    printf(" %.0f | MB/s f32 in | %s, %.1f s |\n",
           4 * params / tq * 1e3 / 1e6, conf, tq / 1e3);
    int prompt[16];
    for (int i = 0; i < 16; i++) prompt[i] = (i * 7919 + 13) % fp.cfg.vocab;
    float *logits = malloc(sizeof(float) * (size_t)fp.cfg.vocab);
    for (int th = 1; th <= 2; th++) {
        lmp_state *s;
        if (lmp_state_create(&s, &qm, 16 + steps, pools[th - 1], &d) != LMP_OK)
            return lmp_cli_fail("bench", &d);
        double w0 = lmp_now_ms();
        if (lmp_forward(s, prompt, 16, 0, logits, LMP_LOGITS_LAST, &d) != LMP_OK)
            return lmp_cli_fail("bench", &d);
        double w1 = lmp_now_ms(), c1 = (1e3 * bench_thread_cpu_s());
        for (int i = 0; i < steps; i++) {
            int tok = lmp_argmax(logits, fp.cfg.vocab);
            if (lmp_forward(s, &tok, 1, 16 + i, logits, LMP_LOGITS_LAST, &d) != LMP_OK)
                return lmp_cli_fail("bench", &d);
        }
        double w2 = lmp_now_ms(), c2 = (1e3 * bench_thread_cpu_s());
        char extra[64] = "";
        if (th == 1) /* CPU time of the only thread: robust to a loaded machine */
            snprintf(extra, sizeof extra, "; %.1f tok/s by CPU time", steps / (c2 - c1) * 1e3);
        printf("| q4 decode %dT | %.1f | tok/s | %s, %d steps after a 16-token prompt%s |\n", th,
               steps / (w2 - w1) * 1e3, conf, steps, extra);
        printf("| q4 prefill (16 tokens) %dT | %.1f | tok/s | %s |\n", th, 16 / (w1 - w0) * 1e3,
               conf);
        fflush(stdout);
        lmp_state_close(s);
    }
    free(logits);
    lmp_model_close(&qm);
    lmp_model_close(&fp);
    lmp_pool_close(pools[0]);
    lmp_pool_close(pools[1]);
    return 0;
}
