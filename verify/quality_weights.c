/* Per-tensor weight error of a quantized model against its FP32 reference:
 * both matrices are read row by row through lmp_mat_get_row (dequantized /
 * widened to float), so any storage kind compares with any other.
 * Rows are split into fixed tasks whose partial sums are combined in task
 * order: the numbers do not depend on the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model.h"
#include "verify/quality.h"

#define ROWS_PER_TASK 16

typedef struct wjob {
    const lmp_mat *ref, *q;
    float *buf;          /* per thread: 2 * cols floats */
    double *se, *sr, *mx; /* per task */
} wjob;

static void w_task(void *ctx, int t, int tid)
{
    wjob *j = ctx;
    int cols = j->ref->cols;
    float *a = j->buf + (size_t)tid * 2 * (size_t)cols, *b = a + cols;
    int r0 = t * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK;
    if (r1 > j->ref->rows) r1 = j->ref->rows;
    double se = 0, sr = 0, mx = 0;
    for (int r = r0; r < r1; r++) {
        lmp_mat_get_row(j->ref, r, a);
        lmp_mat_get_row(j->q, r, b);
        for (int c = 0; c < cols; c++) {
            double e = (double)b[c] - (double)a[c];
            se += e * e;
            sr += (double)a[c] * (double)a[c];
            if (!(fabs(e) <= mx)) mx = isnan(e) ? INFINITY : fabs(e); /* NaN: worst */
        }
    }
    j->se[t] = se;
    j->sr[t] = sr;
    j->mx[t] = mx;
}

static const char *kind_name(lmp_mat_kind k)
{
    switch (k) {
    case LMP_MAT_F32: return "f32";
    case LMP_MAT_F16: return "f16";
    case LMP_MAT_BF16: return "bf16";
    case LMP_MAT_Q4: return "q4";
    case LMP_MAT_Q8: return "q8";
    }
    return "?";
}

static double mat_bits(const lmp_mat *m)
{
    switch (m->kind) {
    case LMP_MAT_F32: return 32;
    case LMP_MAT_F16:
    case LMP_MAT_BF16: return 16;
    default: return 8.0 * (double)m->row_bytes / (double)m->cols;
    }
}

typedef struct wpair {
    char name[96];
    const lmp_mat *ref, *q;
} wpair;

lmp_status lmp_quality_weight_errors(const lmp_model *ref, const lmp_model *quant,
                                     lmp_pool *pool, lmp_quality_report *r, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    static const char *lnames[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                    "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                    "mlp.down_proj"};
    int L = ref->cfg.n_layers;
    size_t n = (size_t)L * 7 + 1 + (ref->cfg.tied ? 0 : 1);
    wpair *p = calloc(n, sizeof *p);
    lmp_tensor_err *te = calloc(n, sizeof *te);
    float *buf = NULL;
    double *se = NULL, *sr = NULL, *mx = NULL;
    int threads = pool ? lmp_pool_threads(pool) : 1;
    LMP_FAIL_IF(!p || !te, LMP_ERR_NOMEM, "out of memory for %zu tensors", n);
    LMP_FAIL_IF(quant->cfg.n_layers != L || quant->cfg.tied != ref->cfg.tied, LMP_ERR_MODEL,
                "quality: the two models have different layer counts or embedding tying");
    size_t k = 0;
    for (int l = 0; l < L; l++) {
        const lmp_layer *a = &ref->layers[l], *b = &quant->layers[l];
        const lmp_mat *ra[7] = {&a->wq, &a->wk, &a->wv, &a->wo, &a->wgate, &a->wup, &a->wdown};
        const lmp_mat *qa[7] = {&b->wq, &b->wk, &b->wv, &b->wo, &b->wgate, &b->wup, &b->wdown};
        for (int i = 0; i < 7; i++, k++) {
            snprintf(p[k].name, sizeof p[k].name, "model.layers.%d.%s.weight", l, lnames[i]);
            p[k].ref = ra[i];
            p[k].q = qa[i];
        }
    }
    snprintf(p[k].name, sizeof p[k].name, "model.embed_tokens.weight");
    p[k].ref = &ref->embed;
    p[k++].q = &quant->embed;
    if (!ref->cfg.tied) {
        snprintf(p[k].name, sizeof p[k].name, "lm_head.weight");
        p[k].ref = &ref->lm_head;
        p[k++].q = &quant->lm_head;
    }
    int max_cols = 0, max_tasks = 0;
    for (size_t i = 0; i < n; i++) {
        const lmp_mat *a = p[i].ref, *b = p[i].q;
        LMP_FAIL_IF(a->rows != b->rows || a->cols != b->cols || a->rows < 1 || a->cols < 1,
                    LMP_ERR_MODEL, "quality: tensor '%s' is [%d, %d] in the quantized model but "
                    "[%d, %d] in the reference", p[i].name, b->rows, b->cols, a->rows, a->cols);
        if (a->cols > max_cols) max_cols = a->cols;
        int tasks = (a->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
        if (tasks > max_tasks) max_tasks = tasks;
    }
    buf = malloc((size_t)threads * 2 * (size_t)max_cols * sizeof *buf);
    se = malloc((size_t)max_tasks * sizeof *se);
    sr = malloc((size_t)max_tasks * sizeof *sr);
    mx = malloc((size_t)max_tasks * sizeof *mx);
    LMP_FAIL_IF(!buf || !se || !sr || !mx, LMP_ERR_NOMEM, "out of memory for row buffers");
    double tot_se = 0, tot_sr = 0, tot_bits = 0, tot_n = 0;
    for (size_t i = 0; i < n; i++) {
        wjob j = {p[i].ref, p[i].q, buf, se, sr, mx};
        int tasks = (p[i].ref->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
        if (pool && tasks > 1)
            lmp_pool_run(pool, w_task, &j, tasks);
        else
            for (int t = 0; t < tasks; t++) w_task(&j, t, 0);
        double a = 0, b = 0, m = 0;
        for (int t = 0; t < tasks; t++) {
            a += se[t];
            b += sr[t];
            if (mx[t] > m) m = mx[t];
        }
        lmp_tensor_err *e = &te[i];
        snprintf(e->name, sizeof e->name, "%s", p[i].name);
        snprintf(e->kind, sizeof e->kind, "%s", kind_name(p[i].q->kind));
        e->group = (p[i].q->kind == LMP_MAT_Q4 || p[i].q->kind == LMP_MAT_Q8) ? p[i].q->group : 0;
        e->scheme = e->group ? p[i].q->scheme : 0;
        e->rows = p[i].ref->rows;
        e->cols = p[i].ref->cols;
        e->bits_per_weight = mat_bits(p[i].q);
        e->rel_rmse = b > 0 ? sqrt(a / b) : (a > 0 ? INFINITY : 0);
        e->max_abs = m;
        double cnt = (double)e->rows * (double)e->cols;
        tot_se += a;
        tot_sr += b;
        tot_bits += e->bits_per_weight * cnt;
        tot_n += cnt;
    }
    free(r->tensors);
    r->tensors = te;
    r->n_tensors = n;
    te = NULL;
    r->bits_per_weight = tot_bits / tot_n;
    r->weights_rel_rmse = tot_sr > 0 ? sqrt(tot_se / tot_sr) : 0;
out:
    free(p);
    free(te);
    free(buf);
    free(se);
    free(sr);
    free(mx);
    return rc;
}
