/* lmp_mat_mul / lmp_mat_get_row: dispatch on the storage kind, threads over
 * output rows.
 *
 * Work split: the rows are cut into fixed-size tasks handed to the pool;
 * every output element is computed entirely by one task with a summation
 * order that depends only on the column count (see mat_avx2.c for the SIMD
 * order; the scalar reference adds columns left to right in float), so the
 * result does not depend on the thread count, on the task size, or on how
 * many tokens are in the batch.
 *
 * Adding a kind (Q4, Q8 from quantize/): add a case to rows_kernel() and
 * lmp_mat_get_row(); the default case fills NaN so a missing kernel can
 * never pass for a working one.
 */
#include "runtime/mat.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "formats/dtype.h"
#include "quantize/q4.h"
#include "runtime/mat_impl.h"

static atomic_int simd_allowed = 1;

int lmp_mat_set_simd(int on)
{
    return atomic_exchange(&simd_allowed, on ? 1 : 0);
}

int lmp_mat_simd_active(void)
{
    return atomic_load(&simd_allowed) && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma");
}

/* ---- scalar reference kernels ------------------------------------------------ */

static void f32_rows_ref(const float *W, size_t ws, int rows, int cols, const float *x, int n,
                         float *y, int r0, int r1)
{
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * cols;
        for (int r = r0; r < r1; r++) {
            const float *w = W + (size_t)r * ws;
            float s = 0.0f;
            for (int c = 0; c < cols; c++) s += w[c] * xt[c];
            y[(size_t)t * rows + r] = s;
        }
    }
}

static void half_rows_ref(const lmp_mat *m, const float *x, int n, float *y, int r0, int r1)
{
    const uint16_t *W = m->data;
    int bf = m->kind == LMP_MAT_BF16;
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * m->cols;
        for (int r = r0; r < r1; r++) {
            const uint16_t *w = (const uint16_t *)((const char *)W + (size_t)r * m->row_bytes);
            float s = 0.0f;
            for (int c = 0; c < m->cols; c++)
                s += (bf ? lmp_bf16_to_f32(w[c]) : lmp_f16_to_f32(w[c])) * xt[c];
            y[(size_t)t * m->rows + r] = s;
        }
    }
}

static void nan_rows(const lmp_mat *m, int n, float *y, int r0, int r1)
{
    for (int t = 0; t < n; t++)
        for (int r = r0; r < r1; r++) y[(size_t)t * m->rows + r] = NAN;
}

static void rows_kernel(const lmp_mat *m, const float *x, int n, float *y, int r0, int r1,
                        int simd)
{
    switch (m->kind) {
    case LMP_MAT_F32:
        if (simd)
            lmp_mat_f32_rows_avx2(m->data, m->row_bytes / sizeof(float), m->rows, m->cols, x, n,
                                  y, r0, r1);
        else
            f32_rows_ref(m->data, m->row_bytes / sizeof(float), m->rows, m->cols, x, n, y, r0,
                         r1);
        break;
    case LMP_MAT_F16:
    case LMP_MAT_BF16:
        half_rows_ref(m, x, n, y, r0, r1);
        break;
    default: /* LMP_MAT_Q4 / LMP_MAT_Q8 never get here (lmp_mat_mul hands them to quantize/q4.c) */
        nan_rows(m, n, y, r0, r1);
        break;
    }
}

/* Rows per task: ~64 tasks per matrix, at least 16 rows each, a multiple
 * of 4 so the SIMD path mostly runs full 4-row tiles; dynamic hand-out
 * balances the threads. */
static int rows_per_task(int rows)
{
    int rpt = (rows + 63) / 64;
    rpt = (rpt + 3) & ~3;
    return rpt < 16 ? 16 : rpt;
}

#define MAX_MANY 8

typedef struct {
    const lmp_mat *m[MAX_MANY];
    float *y[MAX_MANY];
    int first[MAX_MANY + 1]; /* first task of each matrix; first[count] = total */
    int rpt[MAX_MANY];
    int count;
    const float *x;
    int n, simd;
} mm_job;

static void mm_task(void *ctx, int task, int tid)
{
    (void)tid;
    const mm_job *j = ctx;
    int i = 0;
    while (task >= j->first[i + 1]) i++;
    const lmp_mat *m = j->m[i];
    int r0 = (task - j->first[i]) * j->rpt[i];
    int r1 = r0 + j->rpt[i] < m->rows ? r0 + j->rpt[i] : m->rows;
    rows_kernel(m, j->x, j->n, j->y[i], r0, r1, j->simd);
}

/* The float kinds, threaded over row tasks of all `count` matrices. */
static void mul_plain(const lmp_mat *const *w, float *const *y, int count, const float *x, int n,
                      lmp_pool *pool)
{
    mm_job j = {.count = count, .x = x, .n = n, .simd = lmp_mat_simd_active()};
    int tasks = 0;
    for (int i = 0; i < count; i++) {
        j.m[i] = w[i];
        j.y[i] = y[i];
        j.rpt[i] = rows_per_task(w[i]->rows);
        j.first[i] = tasks;
        tasks += w[i]->rows > 0 ? (w[i]->rows + j.rpt[i] - 1) / j.rpt[i] : 0;
    }
    j.first[count] = tasks;
    if (!pool || lmp_pool_threads(pool) == 1)
        for (int i = 0; i < tasks; i++) mm_task(&j, i, 0);
    else
        lmp_pool_run(pool, mm_task, &j, tasks);
}

int lmp_mat_kind_quantized(int kind)
{
    return kind == LMP_MAT_Q4 || kind == LMP_MAT_Q8;
}

static int plain_kind(lmp_mat_kind k)
{
    return k == LMP_MAT_F32 || k == LMP_MAT_F16 || k == LMP_MAT_BF16;
}

void lmp_mat_mul_many(const lmp_mat *const *w, float *const *y, int count, const float *x, int n,
                      lmp_pool *pool)
{
    if (n <= 0 || count <= 0) return;
    int plain = count <= MAX_MANY;
    for (int i = 0; i < count; i++) plain = plain && plain_kind(w[i]->kind);
    int quant = !plain && count <= MAX_MANY && atomic_load(&simd_allowed);
    for (int i = 0; i < count && quant; i++)
        quant = lmp_mat_kind_quantized(w[i]->kind);
    if (quant) { /* shared activation quantization, one pool run */
        lmp_q4_matmul_many(w, y, count, x, n, pool);
        return;
    }
    if (!plain) { /* other kinds go through lmp_mat_mul one by one */
        for (int i = 0; i < count; i++) lmp_mat_mul(w[i], x, n, y[i], pool);
        return;
    }
    mul_plain(w, y, count, x, n, pool);
}

void lmp_mat_mul(const lmp_mat *w, const float *x, int n, float *y, lmp_pool *pool)
{
    if (n <= 0 || w->rows <= 0) return;
    if (lmp_mat_kind_quantized(w->kind)) {
        /* quantize/q4.c quantizes the activations once and threads itself */
        if (!atomic_load(&simd_allowed))
            lmp_q4_matmul_ref(w, x, n, y);
        else if (w->kind == LMP_MAT_Q4)
            lmp_q4_matmul(w, x, n, y, pool);
        else
            lmp_q8_matmul(w, x, n, y, pool);
        return;
    }
    mul_plain(&w, &y, 1, x, n, pool);
}

/* ---- two halves (see mat.h) -------------------------------------------------- */

size_t lmp_mat_prep_bytes(const lmp_mat *w, int n)
{
    return lmp_mat_kind_quantized(w->kind) ? lmp_q4_act_prep_bytes(w, n) : 0;
}

_Static_assert(LMP_MAT_PREP_HDR_BYTES >= LMP_Q4_ACT_HDR_BYTES, "prep header too small");

void lmp_mat_prep_part(const lmp_mat *w, const float *x, int n, int t0, int t1, void *buf,
                       void *hdr, lmp_mat_in *in)
{
    in->x = x;
    in->act = NULL;
    in->n = n;
    in->cols = w->cols;
    in->kind = w->kind;
    in->group = w->group;
    if (lmp_mat_kind_quantized(w->kind)) {
        /* the choice lmp_mat_mul makes: reference when SIMD is forbidden */
        in->simd = atomic_load(&simd_allowed) && lmp_q4_simd_active();
        in->act = lmp_q4_act_prep_part(w, x, n, t0, t1, hdr, buf, in->simd);
    } else {
        in->simd = lmp_mat_simd_active();
    }
}

void lmp_mat_prep(const lmp_mat *w, const float *x, int n, void *buf, lmp_mat_in *in)
{
    lmp_mat_prep_part(w, x, n, 0, n, buf, buf, in);
}

int lmp_mat_prep_shared(const lmp_mat *a, const lmp_mat *b)
{
    if (a->cols != b->cols) return 0;
    if (lmp_mat_kind_quantized(a->kind) || lmp_mat_kind_quantized(b->kind))
        return a->kind == b->kind && a->group == b->group && a->layout == b->layout;
    return plain_kind(a->kind) && plain_kind(b->kind);
}

void lmp_mat_rows(const lmp_mat *w, const lmp_mat_in *in, int r0, int r1, float *y)
{
    if (r1 > w->rows) r1 = w->rows;
    if (in->n <= 0 || r0 >= r1) return;
    if (lmp_mat_kind_quantized(w->kind)) {
        if (lmp_mat_kind_quantized(in->kind) && in->kind == (int)w->kind && in->cols == w->cols &&
            in->group == w->group) {
            lmp_q4_rows(w, in->act, r0, r1, y, in->simd);
            return;
        }
    } else if (plain_kind(w->kind) && !lmp_mat_kind_quantized(in->kind) && in->cols == w->cols) {
        rows_kernel(w, in->x, in->n, y, r0, r1, in->simd);
        return;
    }
    nan_rows(w, in->n, y, r0, r1); /* input prepared for another kind of matrix */
}

void lmp_mat_mul_ref(const lmp_mat *w, const float *x, int n, float *y)
{
    if (n <= 0 || w->rows <= 0) return;
    if (lmp_mat_kind_quantized(w->kind)) {
        lmp_q4_matmul_ref(w, x, n, y);
        return;
    }
    rows_kernel(w, x, n, y, 0, w->rows, 0);
}

void lmp_mat_get_row(const lmp_mat *w, int r, float *out)
{
    const char *row = (const char *)w->data + (size_t)r * w->row_bytes;
    switch (w->kind) {
    case LMP_MAT_F32:
        memcpy(out, row, (size_t)w->cols * sizeof(float));
        break;
    case LMP_MAT_F16:
        lmp_to_f32(LMP_DT_F16, row, out, (size_t)w->cols);
        break;
    case LMP_MAT_BF16:
        lmp_to_f32(LMP_DT_BF16, row, out, (size_t)w->cols);
        break;
    case LMP_MAT_Q4:
    case LMP_MAT_Q8:
        lmp_q4_get_row(w, r, out);
        break;
    default:
        for (int c = 0; c < w->cols; c++) out[c] = NAN;
        break;
    }
}
