/* Grouped int4 / int8 formats: reference quantizer, dequantizer, scalar
 * reference kernels and the run-time dispatch to the AVX2 kernels.
 * The byte layout is documented in q4.h. */
#include "quantize/q4.h"
#include "common/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/dtype.h"
#include "quantize/q4_internal.h"

/* ---- names and sizes ---------------------------------------------------- */

const char *lmp_q4_scheme_name(int scheme)
{
    switch (scheme) {
    case LMP_Q4_SYM: return "sym";
    case LMP_Q4_ASYM: return "asym";
    case LMP_Q4_Q8: return "q8";
    default: return NULL;
    }
}

int lmp_q4_scheme_from_name(const char *name)
{
    if (!name) return -1;
    for (int s = LMP_Q4_SYM; s <= LMP_Q4_Q8; s++)
        if (strcmp(name, lmp_q4_scheme_name(s)) == 0) return s;
    return -1;
}

int lmp_q4_params_ok(int cols, int group, int scheme)
{
    if (cols < 1 || cols > (1 << 28)) return 0;
    if (group != 32 && group != 64 && group != 128) return 0;
    return scheme == LMP_Q4_SYM || scheme == LMP_Q4_ASYM || scheme == LMP_Q4_Q8;
}

size_t lmp_q4_row_bytes(int cols, int group, int scheme)
{
    if (!lmp_q4_params_ok(cols, group, scheme)) return 0;
    size_t nblk = ((size_t)cols + 31) / 32, ng = ((size_t)cols + (size_t)group - 1) / (size_t)group;
    switch (scheme) {
    case LMP_Q4_SYM: return nblk * 16 + 2 * ng;
    case LMP_Q4_ASYM: return nblk * 16 + 4 * ng;
    default: return nblk * 32 + 2 * ng;
    }
}

double lmp_q4_bits_per_weight(int cols, int group, int scheme)
{
    size_t rb = lmp_q4_row_bytes(cols, group, scheme);
    return rb ? 8.0 * (double)rb / (double)cols : 0.0;
}

lmp_status lmp_q4_check_layout(int rows, int cols, int group, int scheme, size_t row_bytes,
                               const char *what, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const char *nm = what ? what : "matrix";
    LMP_FAIL_IF(!lmp_q4_scheme_name(scheme), LMP_ERR_FORMAT, "%s: unknown quantization scheme id %d",
                nm, scheme);
    LMP_FAIL_IF(group != 32 && group != 64 && group != 128, LMP_ERR_FORMAT,
                "%s: group %d is not 32, 64 or 128", nm, group);
    LMP_FAIL_IF(rows < 1 || cols < 1 || cols > (1 << 28), LMP_ERR_FORMAT,
                "%s: shape [%d, %d] out of range", nm, rows, cols);
    size_t want = lmp_q4_row_bytes(cols, group, scheme);
    LMP_FAIL_IF(row_bytes != want, LMP_ERR_FORMAT,
                "%s: row_bytes %zu, but %s group %d with %d columns needs %zu", nm, row_bytes,
                lmp_q4_scheme_name(scheme), group, cols, want);
    LMP_FAIL_IF((size_t)rows > SIZE_MAX / want, LMP_ERR_NOMEM, "%s: %d rows of %zu bytes overflow",
                nm, rows, want);
out:
    return rc;
}

lmp_status lmp_q4_mat_init(lmp_mat *m, int rows, int cols, int group, int scheme,
                           const void *data, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    size_t rb = lmp_q4_row_bytes(cols, group, scheme);
    memset(m, 0, sizeof *m);
    LMP_FORWARD(lmp_q4_check_layout(rows, cols, group, scheme, rb, NULL, d));
    m->kind = scheme == LMP_Q4_Q8 ? LMP_MAT_Q8 : LMP_MAT_Q4;
    m->rows = rows;
    m->cols = cols;
    m->group = group;
    m->scheme = scheme;
    m->row_bytes = rb;
    m->data = data;
out:
    return rc;
}

/* ---- helpers ------------------------------------------------------------ */

/* Round to nearest, ties to even, for |v| < 2^22 (callers clamp first).
 * Independent of the FP environment's rounding functions and vectorizable. */
static inline float rne(float v)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    return (v + magic) - magic;
}

/* Clamp to [lo, hi]; NaN goes to lo (never reaches an int conversion). */
static inline float clampf(float v, float lo, float hi)
{
    if (!(v >= lo)) return lo;
    return v > hi ? hi : v;
}

/* The fp16 value nearest to v (overflow clamped to +-65504), as float. */
static inline float h16(float v, uint16_t *bits)
{
    if (v > 65504.0f) v = 65504.0f;
    if (v < -65504.0f) v = -65504.0f;
    uint16_t h = lmp_f32_to_f16(v);
    if (bits) *bits = h;
    return lmp_f16_to_f32(h);
}

static inline uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

/* Candidate scoring loops (the quantizer's hot spot): 8 independent
 * partial sums in a fixed order so the compiler can vectorize them; the
 * result depends only on the input, never on the machine. */
#define LANES 8

/* codes q = rne(clamp(x * is)); sums of q*x and q*q */
static void cand_sym(const float *x, int n, float is, float lo, float hi, float *sqx, float *sqq)
{
    float a[LANES] = {0}, b[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            float v = x[i + l] * is;
            v = v > lo ? v : lo; /* maxps / minps semantics */
            v = v < hi ? v : hi;
            v = rne(v);
            a[l] += v * x[i + l];
            b[l] += v * v;
        }
    for (; i < n; i++) {
        float v = rne(clampf(x[i] * is, lo, hi));
        a[0] += v * x[i];
        b[0] += v * v;
    }
    float s1 = 0.0f, s2 = 0.0f;
    for (int l = 0; l < LANES; l++) {
        s1 += a[l];
        s2 += b[l];
    }
    *sqx = s1;
    *sqq = s2;
}

/* ---- symmetric groups (SYM: codes [-8,7]; Q8: [-127,127]) ---------------- */

/* Least-squares scale for fixed codes; 0 if all codes are 0. */
static float sym_refit(const float *x, int n, const int8_t *q)
{
    double sqx = 0, sqq = 0;
    for (int i = 0; i < n; i++) {
        sqx += (double)q[i] * x[i];
        sqq += (double)q[i] * q[i];
    }
    return sqq > 0 ? (float)(sqx / sqq) : 0.0f;
}

/* Codes for the stored scale d (nearest level, clamped); returns the
 * squared reconstruction error; *refit (if not NULL) = sym_refit of the codes. */
static double sym_codes_ref(const float *x, int n, float d, int lo, int hi, int8_t *q,
                            float *refit)
{
    double e = 0;
    for (int i = 0; i < n; i++) {
        float v = d != 0.0f ? rne(clampf(x[i] / d, (float)lo, (float)hi)) : 0.0f;
        q[i] = (int8_t)v;
        double r = (double)x[i] - (double)d * (double)q[i];
        e += r * r;
    }
    if (refit) *refit = sym_refit(x, n, q);
    return e;
}

/* All candidates k < nt of one group: cand_sym with scale ts[k] / M. */
static void sym_cands_ref(const float *x, int n, const float *ts, int nt, float M, float lo,
                          float hi, float *sqx, float *sqq)
{
    for (int k = 0; k < nt; k++) cand_sym(x, n, ts[k] / M, lo, hi, &sqx[k], &sqq[k]);
}

/* The element of largest magnitude (the first one if several; NaN never
 * counts); 0 when every |x| is 0. */
static float sym_absmax_ref(const float *x, int n)
{
    float M = 0.0f, am = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > am) {
            am = a;
            M = x[i];
        }
    }
    return M;
}

const lmp_q4_sym_kern lmp_q4_sym_ref = {sym_absmax_ref, sym_cands_ref, sym_codes_ref};
#if defined(__x86_64__) || defined(__i386__)
const lmp_q4_sym_kern lmp_q4_sym_avx2 = {lmp_q4_sym_absmax_avx2, lmp_q4_sym_cands_avx2,
                                         lmp_q4_sym_codes_avx2};
const lmp_q4_sym_kern lmp_q4_sym_avx512 = {lmp_q4_sym_absmax_avx2, lmp_q4_sym_cands_avx512,
                                           lmp_q4_sym_codes_avx2};
#endif

/* Scale search offsets, in code levels, applied to the value of largest
 * magnitude M: candidate d = M / t maps M to level t (beyond the range
 * means M is clipped, inside it leaves levels unused); each candidate's
 * codes get their least-squares scale. */
static const float k_sym_t4[] = {-9.5f, -9.0f, -8.75f, -8.5f, -8.25f, -8.0f, -7.75f, -7.5f, -7.25f,
                                 -7.0f, -6.5f,  -6.0f, 6.0f,   6.5f,  7.0f,   7.25f, 7.5f,   7.75f,
                                 8.0f,  8.5f,  9.0f};
static const float k_sym_t8[] = {-131.0f, -129.0f, -128.0f, -127.5f, -127.0f, -126.0f, -124.0f};

/* Quantize one symmetric group: codes q[n], returns the fp16 bits of d. */
static uint16_t sym_group(const lmp_q4_sym_kern *kk, const float *x, int n, int lo, int hi,
                          lmp_q4_method method, int8_t *q)
{
    int8_t tmp[128];
    float M = kk->absmax(x, n); /* 0 exactly when max |x| is 0 */
    uint16_t dbits = 0;
    if (M == 0.0f) {
        memset(q, 0, (size_t)n);
        return lmp_f32_to_f16(0.0f);
    }
    /* plain min-max: Q4 maps M to -8 (uses the extra negative level), Q8 to 127 */
    float d = h16(lo == -8 ? M / -8.0f : M / (float)hi, &dbits);
    double best = kk->codes(x, n, d, lo, hi, q, NULL);
    if (method != LMP_Q4_SEARCH || best == 0.0) return dbits;

    const float *ts = lo == -8 ? k_sym_t4 : k_sym_t8;
    int nt = lo == -8 ? (int)(sizeof k_sym_t4 / sizeof *k_sym_t4)
                      : (int)(sizeof k_sym_t8 / sizeof *k_sym_t8);
    float best_score = -1.0f, best_d = 0.0f, sqxs[32], sqqs[32];
    kk->cands(x, n, ts, nt, M, (float)lo, (float)hi, sqxs, sqqs);
    for (int k = 0; k < nt; k++) {
        float sqx = sqxs[k], sqq = sqqs[k];
        /* error of the LS fit = sum x^2 - sqx^2/sqq: maximize sqx^2/sqq */
        if (sqq > 0.0f && sqx * sqx > best_score * sqq) {
            best_score = sqx * sqx / sqq;
            best_d = sqx / sqq;
        }
    }
    /* refine with the stored (fp16) scale: codes for d16, LS refit, repeat */
    float cur = best_d, prev = NAN;
    for (int it = 0; it < 4; it++) {
        uint16_t bits;
        float d16 = h16(cur, &bits);
        if (d16 == prev) break;
        prev = d16;
        double e = kk->codes(x, n, d16, lo, hi, tmp, &cur);
        if (e < best) {
            best = e;
            dbits = bits;
            memcpy(q, tmp, (size_t)n);
        }
        if (cur == 0.0f) break;
    }
    return dbits;
}

/* ---- rows --------------------------------------------------------------- */

/* One row with the given ASYM kernel table, in chunks of up to CHUNK_G
 * groups (ASYM: lmp_q4_asym_groups, which uses the reference kernels for
 * groups whose length is not a multiple of 8). SYM and Q8 groups use the
 * scalar code above. Codes are packed per 32-element block: byte j =
 * element j (low nibble) | element 16 + j (high nibble). */
#define CHUNK_G 16

static void quantize_row(const float *x, int cols, int group, int scheme, lmp_q4_method method,
                         void *out, const lmp_q4_asym_kern *k)
{
    uint8_t *o = out;
    int nblk = (cols + 31) / 32, ng = (cols + group - 1) / group;
    size_t cb = (size_t)nblk * (scheme == LMP_Q4_Q8 ? 32 : 16);
    uint8_t *sc = o + cb, *mn = sc + 2 * (size_t)ng;
    int8_t q[128];
    uint8_t u[CHUNK_G * 128];
    uint16_t db[CHUNK_G], mb[CHUNK_G];
    for (int g0 = 0; g0 < ng; g0 += CHUNK_G) {
        int gn = ng - g0 < CHUNK_G ? ng - g0 : CHUNK_G, c0 = g0 * group;
        int cn = cols - c0 < gn * group ? cols - c0 : gn * group;
        if (scheme == LMP_Q4_ASYM) {
            lmp_q4_asym_groups(k, x + c0, cn, group, method == LMP_Q4_SEARCH, u, db, mb);
            for (int g = 0; g < gn; g++) {
                wr16(sc + 2 * (g0 + g), db[g]);
                wr16(mn + 2 * (g0 + g), mb[g]);
            }
        } else {
            int lo = scheme == LMP_Q4_Q8 ? -127 : -8, hi = scheme == LMP_Q4_Q8 ? 127 : 7;
            /* any SIMD ASYM table means the AVX2 check passed (the AVX-512 one:
             * lmp_cpu_avx512() too): SYM kernels of the same level */
            const lmp_q4_sym_kern *kk = &lmp_q4_sym_ref;
#if defined(__x86_64__) || defined(__i386__)
            if (k != &lmp_q4_asym_ref)
                kk = k == &lmp_q4_asym_avx512 ? &lmp_q4_sym_avx512 : &lmp_q4_sym_avx2;
#endif
            for (int g = 0; g < gn; g++) {
                int n = cn - g * group < group ? cn - g * group : group;
                wr16(sc + 2 * (g0 + g), sym_group(kk, x + c0 + g * group, n, lo, hi, method, q));
                for (int i = 0; i < n; i++)
                    u[g * group + i] = (uint8_t)(q[i] + (scheme == LMP_Q4_SYM ? 8 : 0));
            }
        }
        /* padding codes (row end only: groups are whole blocks): SYM 8 (q = 0),
         * ASYM 0, Q8 0 */
        int nb = (cn + 31) / 32;
        memset(u + cn, scheme == LMP_Q4_SYM ? 8 : 0, (size_t)(32 * nb - cn));
        if (scheme == LMP_Q4_Q8) {
            memcpy(o + c0, u, (size_t)(32 * nb));
            continue;
        }
        uint8_t *p = o + (size_t)c0 / 2;
        for (int b = 0; b < nb; b++)
            for (int j = 0; j < 16; j++)
                p[16 * b + j] = (uint8_t)(u[32 * b + j] | (u[32 * b + 16 + j] << 4));
    }
}

void lmp_q4_quantize_row_ref(const float *x, int cols, int group, int scheme,
                             lmp_q4_method method, void *out)
{
    quantize_row(x, cols, group, scheme, method, out, &lmp_q4_asym_ref);
}

void lmp_q4_quantize_row_kern(const float *x, int cols, int group, int scheme,
                              lmp_q4_method method, void *out, const lmp_q4_asym_kern *k)
{
    quantize_row(x, cols, group, scheme, method, out, k);
}

static int cpu_has_avx2(void);
static int g_force_scalar;

void lmp_q4_quantize_row(const float *x, int cols, int group, int scheme, lmp_q4_method method,
                         void *out)
{
#if defined(__x86_64__) || defined(__i386__)
    if (!g_force_scalar && cpu_has_avx2()) {
        quantize_row(x, cols, group, scheme, method, out,
                     lmp_cpu_avx512() ? &lmp_q4_asym_avx512 : &lmp_q4_asym_avx2);
        return;
    }
#endif
    quantize_row(x, cols, group, scheme, method, out, &lmp_q4_asym_ref);
}

/* One ASYM row's bytes from its codes u[cols] and fp16 bits d[ng], m[ng]
 * (the layout quantize_row writes; padding codes 0). */
static void pack_asym_row(const uint8_t *u, const uint16_t *d, const uint16_t *m, int cols,
                          int group, uint8_t *o)
{
    int nblk = (cols + 31) / 32, ng = (cols + group - 1) / group, full = cols / 32;
    uint8_t *sc = o + 16 * (size_t)nblk, *mn = sc + 2 * (size_t)ng;
    for (int g = 0; g < ng; g++) {
        wr16(sc + 2 * g, d[g]);
        wr16(mn + 2 * g, m[g]);
    }
    for (int b = 0; b < full; b++)
        for (int j = 0; j < 16; j++)
            o[16 * b + j] = (uint8_t)(u[32 * b + j] | (u[32 * b + 16 + j] << 4));
    if (full < nblk) {
        uint8_t t[32] = {0};
        memcpy(t, u + 32 * (size_t)full, (size_t)(cols - 32 * full));
        for (int j = 0; j < 16; j++) o[16 * full + j] = (uint8_t)(t[j] | (t[16 + j] << 4));
    }
}

void lmp_q4_quantize_rows(const float *x, int nrows, int cols, int group, int scheme,
                          lmp_q4_method method, void *out)
{
    size_t rb = lmp_q4_row_bytes(cols, group, scheme);
    uint8_t *o = out;
#if defined(__x86_64__) || defined(__i386__)
    if (scheme == LMP_Q4_ASYM && nrows > 1 && !g_force_scalar && cpu_has_avx2() &&
        lmp_cpu_avx512()) {
        size_t ng = (size_t)((cols + group - 1) / group), nr = (size_t)nrows;
        uint8_t *u = malloc(nr * (size_t)cols);
        uint16_t *bits = malloc(sizeof *bits * 2 * nr * ng);
        if (u && bits) {
            lmp_q4_asym_rows_avx512(x, nrows, cols, group, method == LMP_Q4_SEARCH, u, bits,
                                    bits + nr * ng);
            for (size_t r = 0; r < nr; r++)
                pack_asym_row(u + r * (size_t)cols, bits + r * ng, bits + nr * ng + r * ng, cols,
                              group, o + r * rb);
            free(u);
            free(bits);
            return;
        }
        free(u); /* out of memory: row by row below */
        free(bits);
    }
#endif
    for (int r = 0; r < nrows; r++)
        lmp_q4_quantize_row(x + (size_t)r * (size_t)cols, cols, group, scheme, method,
                            o + (size_t)r * rb);
}

/* Dequantize one row whose codes are in `layout` (q4.h LMP_Q4_LAYOUT_*). */
static void dequantize_row(const void *row, int cols, int group, int scheme, int layout, float *out)
{
    const uint8_t *p = row;
    int nblk = (cols + 31) / 32, ng = (cols + group - 1) / group;
    const uint8_t *sc = p + (size_t)nblk * (scheme == LMP_Q4_Q8 ? 32 : 16), *mn = sc + 2 * (size_t)ng;
    for (int g = 0; g < ng; g++) {
        float d = lmp_f16_to_f32(rd16(sc + 2 * g));
        float m = scheme == LMP_Q4_ASYM ? lmp_f16_to_f32(rd16(mn + 2 * g)) : 0.0f;
        int c1 = (g + 1) * group < cols ? (g + 1) * group : cols;
        for (int c = g * group; c < c1; c++) {
            if (scheme == LMP_Q4_Q8) {
                out[c] = d * (float)(int8_t)p[c];
                continue;
            }
            int b = c / 32, j = c % 32;
            uint8_t byte = layout == LMP_Q4_LAYOUT_X16 ? p[lmp_q4_x16_at(nblk, b, j & 15)]
                                                       : p[16 * b + (j & 15)];
            int code = j < 16 ? byte & 15 : byte >> 4;
            out[c] = scheme == LMP_Q4_SYM ? d * (float)(code - 8) : d * (float)code + m;
        }
    }
}

void lmp_q4_dequantize_row(const void *row, int cols, int group, int scheme, float *out)
{
    dequantize_row(row, cols, group, scheme, LMP_Q4_LAYOUT_ROWS, out);
}

/* Row r of int4 w whose codes are in blocks of nr interleaved rows
 * (LMP_Q4_LAYOUT_R16: 16, _R8: 8), gathered into tmp (row_bytes) in the
 * stored row layout. */
static const uint8_t *rn_gather(const lmp_mat *w, int nr, int r, uint8_t *tmp)
{
    const int nblk = (w->cols + 31) / 32, ng = (w->cols + w->group - 1) / w->group, i = r % nr;
    const int bpg = w->group / 32, asym = w->scheme == LMP_Q4_ASYM;
    const uint8_t *blk = (const uint8_t *)w->data + (size_t)(r - i) * w->row_bytes;
    for (int b = 0; b < nblk; b++)
        for (int j = 0; j < 16; j++)
            tmp[16 * (size_t)b + (size_t)j] = blk[lmp_q4_rn_code_at(nr, b, j, i, bpg, asym)];
    uint8_t *sc = tmp + 16 * (size_t)nblk;
    for (int g = 0; g < ng; g++) {
        memcpy(sc + 2 * (size_t)g, blk + lmp_q4_rn_scale_at(nr, g, i, bpg, asym), 2);
        if (asym) memcpy(sc + 2 * (size_t)(ng + g), blk + lmp_q4_rn_min_at(nr, g, i, bpg), 2);
    }
    return tmp;
}

/* 16 / 8 for the interleaved layouts R16 / R8, 0 otherwise. */
static int interleaved_rows(const lmp_mat *w)
{
    return w->layout == LMP_Q4_LAYOUT_R16 ? 16 : w->layout == LMP_Q4_LAYOUT_R8 ? 8 : 0;
}

/* Row r of w as dequantize_row / row_dot_ref read it: in place with
 * *layout = w->layout (ROWS, X16), or for R16 / R8 gathered into tmp
 * (row_bytes) with *layout = ROWS; NULL for those without tmp (no scratch
 * memory). */
static const uint8_t *stored_row(const lmp_mat *w, int r, uint8_t *tmp, int *layout)
{
    const int nr = interleaved_rows(w);
    if (!nr) {
        *layout = w->layout;
        return (const uint8_t *)w->data + (size_t)r * w->row_bytes;
    }
    *layout = LMP_Q4_LAYOUT_ROWS;
    return tmp ? rn_gather(w, nr, r, tmp) : NULL;
}

/* ---- whole matrices ------------------------------------------------------ */

typedef struct {
    const float *w;
    int rows, cols, group, scheme;
    lmp_q4_method method;
    uint8_t *out;
    size_t rb;
} quant_job;

#define QUANT_ROWS 8

static void quant_task(void *ctx, int task, int tid)
{
    (void)tid;
    const quant_job *j = ctx;
    int r1 = (task + 1) * QUANT_ROWS < j->rows ? (task + 1) * QUANT_ROWS : j->rows;
    for (int r = task * QUANT_ROWS; r < r1; r++)
        lmp_q4_quantize_row(j->w + (size_t)r * j->cols, j->cols, j->group, j->scheme, j->method,
                            j->out + (size_t)r * j->rb);
}

lmp_status lmp_q4_quantize(const float *w, int rows, int cols, int group, int scheme,
                           lmp_q4_method method, void *out, lmp_pool *pool, const char *what,
                           lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    const char *nm = what ? what : "matrix";
    size_t rb = lmp_q4_row_bytes(cols, group, scheme);
    LMP_FAIL_IF(!rb || rows < 1, LMP_ERR_ARG, "%s: cannot quantize [%d, %d] as %s group %d", nm,
                rows, cols, lmp_q4_scheme_name(scheme) ? lmp_q4_scheme_name(scheme) : "?",
                group);
    LMP_FAIL_IF(method != LMP_Q4_MINMAX && method != LMP_Q4_SEARCH, LMP_ERR_ARG,
                "%s: unknown quantization method %d", nm, (int)method);
    for (size_t i = 0, n = (size_t)rows * (size_t)cols; i < n; i++)
        LMP_FAIL_IF(!isfinite(w[i]), LMP_ERR_FORMAT, "%s: row %zu column %zu is not finite", nm,
                    i / (size_t)cols, i % (size_t)cols);
    quant_job j = {w, rows, cols, group, scheme, method, out, rb};
    lmp_pool_run(pool, quant_task, &j, (rows + QUANT_ROWS - 1) / QUANT_ROWS);
out:
    return rc;
}

/* ---- activations ---------------------------------------------------------- */

/* Bytes of an activation buffer for n tokens of `cols` (see lmp_q4_act). */
static size_t act_bytes(int n, int cols, int group)
{
    int nblk = (cols + 31) / 32, ng = (cols + group - 1) / group;
    int nbp = (nblk + 15) & ~15, ngp = (ng + 15) & ~15;
    return (size_t)n * ((size_t)nbp * 32 + 4 * (size_t)nbp + 4 * (size_t)ngp) + 64;
}

/* Lay out the handle `a` of n tokens' activations in buf (act_bytes long),
 * in the given xq layout (LMP_Q4_PLAIN / PAIRED / HEXA): sizes, pointers.
 * act_tokens then quantizes them; plain C plus the vector helpers, used for
 * every kernel, so all see the very same int8 activations and dx. */
static void act_layout(lmp_q4_act *a, void *buf, int n, int cols, int group, int paired)
{
    a->n = n;
    a->cols = cols;
    a->nblk = (cols + 31) / 32;
    a->ng = (cols + group - 1) / group;
    a->bpg = group / 32;
    a->nblk_pad = (a->nblk + 15) & ~15;
    a->ng_pad = (a->ng + 15) & ~15;
    a->paired = paired;
    uintptr_t p = ((uintptr_t)buf + 31) & ~(uintptr_t)31;
    a->dx = (float *)p;
    a->sx = a->dx + (size_t)n * a->nblk_pad;
    a->xq = (int8_t *)(a->sx + (size_t)n * a->ng_pad);
}

/* Quantize tokens [t0, t1) of x[a->n][a->cols] into a's arrays (each token's
 * part of them is written whole, padding included, and nothing else). */
static void act_tokens(const lmp_q4_act *a, const float *x, int t0, int t1, int simd)
{
    const int cols = a->cols, paired = a->paired;
    for (int t = t0; t < t1; t++) {
        const float *xt = x + (size_t)t * cols;
        int8_t *q = a->xq + (size_t)t * a->nblk_pad * 32;
        float *dx = a->dx + (size_t)t * a->nblk_pad, *sx = a->sx + (size_t)t * a->ng_pad;
        memset(dx, 0, sizeof(float) * (size_t)a->nblk_pad);
        memset(sx, 0, sizeof(float) * (size_t)a->ng_pad);
        memset(q, 0, (size_t)a->nblk_pad * 32);
#if defined(__x86_64__) || defined(__i386__)
        if (paired == LMP_Q4_HEXA && simd) { /* set only when the AVX-512 kernel runs */
            lmp_q4_act_hexa_avx512(xt, cols, a->bpg, q, dx, sx);
            continue;
        }
        if (paired == LMP_Q4_PLAIN && simd && lmp_q4_avx512_active()) { /* R16, Q8: same bits */
            lmp_q4_act_plain_avx512(xt, cols, a->bpg, q, dx, sx);
            continue;
        }
#endif
        for (int b = 0; b < a->nblk; b++) {
            int c0 = 32 * b, nb = cols - c0 < 32 ? cols - c0 : 32, bad = 0;
            float am = 0.0f;
            int8_t tmp[32] = {0};
#if defined(__x86_64__) || defined(__i386__)
            int vec = simd && nb == 32; /* the AVX2 helpers below */
            if (vec) am = lmp_q4_absmax32_avx2(xt + c0, &bad);
#else
            int vec = 0; /* no vector helpers here (wasm: simd selects only the row kernel) */
            (void)simd;
#endif
            for (int j = 0; j < nb && !vec; j++) {
                float v = fabsf(xt[c0 + j]);
                bad |= !(v <= 3.4e38f); /* NaN or inf */
                am = v > am ? v : am;
            }
            int s = 0;
            if (am >= LMP_Q4_ACT_MIN && !bad) {
                float id = 127.0f / am;
                dx[b] = am / 127.0f;
#if defined(__x86_64__) || defined(__i386__)
                if (vec) s = lmp_q4_quant32_avx2(xt + c0, id, tmp);
#endif
                /* |x * id| <= 127 (+ rounding) by construction of am */
                for (int j = 0; j < nb && !vec; j++) {
                    float v = xt[c0 + j] * id;
                    v = v > 127.0f ? 127.0f : v;
                    v = v < -127.0f ? -127.0f : v;
                    int iv = (int)rne(v);
                    tmp[j] = (int8_t)iv;
                    s += iv;
                }
            } else {
                /* zero block; a non-finite activation poisons the block */
                dx[b] = bad ? NAN : 0.0f;
            }
            /* every layout keeps runs of 4 elements (j = 4i..4i+3) together;
             * PLAIN and PAIRED keep runs of 16 (two copies instead of 8) */
            if (paired == LMP_Q4_PLAIN || paired == LMP_Q4_PAIRED) {
                memcpy(q + lmp_q4_xq_index(paired, b, 0), tmp, 16);
                memcpy(q + lmp_q4_xq_index(paired, b, 16), tmp + 16, 16);
            } else {
                for (int j = 0; j < 32; j += 4) memcpy(q + lmp_q4_xq_index(paired, b, j), tmp + j, 4);
            }
            sx[b / a->bpg] += dx[b] * (float)s;
        }
    }
}

/* ---- scalar reference kernel ---------------------------------------------- */

static float row_dot_ref(const lmp_mat *w, const uint8_t *row, int layout, const lmp_q4_act *a,
                         int t)
{
    int nblk = a->nblk, ng = a->ng, bpg = a->bpg, q8 = w->kind == LMP_MAT_Q8;
    const int8_t *xq = a->xq + (size_t)t * a->nblk_pad * 32;
    const float *dx = a->dx + (size_t)t * a->nblk_pad, *sx = a->sx + (size_t)t * a->ng_pad;
    const uint8_t *sc = row + (size_t)nblk * (q8 ? 32 : 16), *mn = sc + 2 * (size_t)ng;
    float acc = 0.0f, corr = 0.0f, dg = 0.0f;
    for (int b = 0; b < nblk; b++) {
        if (b % bpg == 0) dg = lmp_f16_to_f32(rd16(sc + 2 * (b / bpg)));
        int isum = 0;
        if (q8) {
            const int8_t *wb = (const int8_t *)row + 32 * b;
            for (int j = 0; j < 32; j++) isum += wb[j] * xq[lmp_q4_xq_index(a->paired, b, j)];
        } else {
            uint8_t wb[16];
            for (int j = 0; j < 16; j++)
                wb[j] = layout == LMP_Q4_LAYOUT_X16 ? row[lmp_q4_x16_at(nblk, b, j)]
                                                    : row[16 * b + j];
            for (int j = 0; j < 16; j++)
                isum += (wb[j] & 15) * xq[lmp_q4_xq_index(a->paired, b, j)] +
                        (wb[j] >> 4) * xq[lmp_q4_xq_index(a->paired, b, 16 + j)];
        }
        acc += (dg * dx[b]) * (float)isum;
    }
    if (!q8) {
        for (int g = 0; g < ng; g++) {
            float mg = w->scheme == LMP_Q4_ASYM ? lmp_f16_to_f32(rd16(mn + 2 * g))
                                                : -8.0f * lmp_f16_to_f32(rd16(sc + 2 * g));
            corr += mg * sx[g];
        }
    }
    return acc + corr;
}

static void rows_ref(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y)
{
    uint8_t *tmp = interleaved_rows(w) ? malloc(w->row_bytes) : NULL;
    for (int r = r0; r < r1; r++) {
        int layout;
        const uint8_t *row = stored_row(w, r, tmp, &layout);
        for (int t = 0; t < a->n; t++) /* no scratch: no result rather than a wrong one */
            y[(size_t)t * w->rows + r] = row ? row_dot_ref(w, row, layout, a, t) : NAN;
    }
    free(tmp);
}

/* ---- dispatch --------------------------------------------------------------- */

static int cpu_has_avx2(void)
{
    return lmp_cpu_avx2();
}

int lmp_q4_simd_active(void)
{
#if defined(__wasm_simd128__)
    const int wasm_simd = 1; /* SIMD128 is a compile-time feature (browser build) */
#else
    const int wasm_simd = 0;
#endif
    return !g_force_scalar && (cpu_has_avx2() || wasm_simd);
}

void lmp_q4_force_scalar(int on)
{
    g_force_scalar = on;
}

static _Atomic int g_allow_avx512 = 1;

int lmp_q4_avx512_active(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return g_allow_avx512 && lmp_q4_simd_active() && lmp_cpu_avx512();
#else
    return 0;
#endif
}

int lmp_q4_allow_avx512(int on)
{
    int prev = g_allow_avx512;
    g_allow_avx512 = on ? 1 : 0;
    return prev;
}

#define MAX_MANY 8

/* One pool run over the row tasks of up to MAX_MANY matrices sharing the
 * same quantized activations. */
typedef struct {
    const lmp_mat *w[MAX_MANY];
    float *y[MAX_MANY];
    int first[MAX_MANY + 1]; /* first task of each matrix; first[count] = total */
    int rpt[MAX_MANY];       /* rows per task of each matrix */
    int count;
    const lmp_q4_act *a;
    int simd;
} mm_job;

/* Rows per pool task: about 4 tasks per thread and matrix (at least 16
 * rows, a multiple of 16). Large contiguous tasks keep each thread's read
 * stream sequential, so the hardware and software prefetchers stay ahead
 * (with 16-row tasks handed out alternately, every task of a 2-thread
 * decode started cold, and the software prefetch fetched the rows of the
 * other thread's next task); 4 per thread still balance the load when one
 * thread is slowed down. Every row's arithmetic is independent of the split,
 * so the results stay bit-identical for any thread count. */
#define MM_ROWS 16
static int rows_per_task(int rows, int threads)
{
    int rpt = (rows + 4 * threads - 1) / (4 * threads);
    rpt = (rpt + MM_ROWS - 1) / MM_ROWS * MM_ROWS;
    return rpt < MM_ROWS ? MM_ROWS : rpt;
}

/* Rows [r0, r1) of w: the one kernel dispatch, shared by the pool tasks
 * below and by lmp_q4_rows (fused callers). */
static void rows_dispatch(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y,
                          int simd)
{
#if defined(__x86_64__) || defined(__i386__)
    /* act_prepare chose the activation order for the kernel of the first
     * matrix of a shared input; a matrix that cannot use it (another code
     * layout) takes the reference rather than a kernel reading it wrong */
    if (simd && a->paired == LMP_Q4_HEXA && !interleaved_rows(w)) {
        lmp_q4_rows_avx512(w, a, r0, r1, y);
        return;
    }
    if (simd && w->layout == LMP_Q4_LAYOUT_R16 && a->paired == LMP_Q4_PLAIN &&
        lmp_q4_avx512_active()) {
        lmp_q4_rows_r16_avx512(w, a, r0, r1, y);
        return;
    }
    if (simd && w->layout == LMP_Q4_LAYOUT_R8 && a->paired == LMP_Q4_PLAIN) {
        lmp_q4_rows_r8_avx2(w, a, r0, r1, y);
        return;
    }
    if (simd && w->layout == LMP_Q4_LAYOUT_ROWS &&
        a->paired == (w->kind == LMP_MAT_Q8 ? LMP_Q4_PLAIN : LMP_Q4_PAIRED)) {
        lmp_q4_rows_avx2(w, a, r0, r1, y);
        return;
    }
#elif defined(__wasm_simd128__)
    if (simd && w->layout == LMP_Q4_LAYOUT_ROWS) { /* browser build: SIMD128 (quantize/q4_wasm.c) */
        lmp_q4_rows_wasm(w, a, r0, r1, y);
        return;
    }
#endif
    (void)simd;
    /* the scalar reference; also X16 weights when the AVX-512 kernel was
     * switched off after a loader re-ordered them (tests) */
    rows_ref(w, a, r0, r1, y);
}

static void mm_task(void *ctx, int task, int tid)
{
    (void)tid;
    const mm_job *j = ctx;
    int i = 0;
    while (task >= j->first[i + 1]) i++;
    const lmp_mat *w = j->w[i];
    const int rpt = j->rpt[i];
    int r0 = (task - j->first[i]) * rpt, r1 = r0 + rpt < w->rows ? r0 + rpt : w->rows;
    rows_dispatch(w, j->a, r0, r1, j->y[i], j->simd);
}

/* Activations are quantized in chunks of tokens so the buffer stays small
 * (<= ~1 MB); each chunk streams the weights once. */
#define ACT_BUDGET (1u << 20)
#define ACT_STACK 32768

/* Tokens [t0, t1) of the activations of n tokens for the kernel that simd
 * selects, shared by matmul_many and lmp_q4_act_prep / _part (fused
 * callers); a is the handle, buf holds the arrays. */
static void act_prepare(lmp_q4_act *a, void *buf, const lmp_mat *w0, const float *x, int n,
                        int t0, int t1, int simd)
{
    /* int4 SIMD kernels read the activations in their load order; Q8 and
     * the scalar reference block after block. rows_dispatch picks the
     * kernel from the layout, so both always agree. */
    int layout = !simd || w0->kind != LMP_MAT_Q4 ? LMP_Q4_PLAIN
                 : interleaved_rows(w0)           ? LMP_Q4_PLAIN
                 : !lmp_q4_avx512_active()        ? LMP_Q4_PAIRED
                                                  : LMP_Q4_HEXA;
    act_layout(a, buf, n, w0->cols, w0->group, layout);
    act_tokens(a, x, t0, t1, simd);
}

/* A view whose kind, scheme and row_bytes disagree with the format rules
 * is never read: its results are NaN. */
static int mat_ok(const lmp_mat *w)
{
    int scheme = w->kind == LMP_MAT_Q8 ? LMP_Q4_Q8 : w->scheme;
    if (w->kind == LMP_MAT_Q8 && w->scheme != 0 && w->scheme != LMP_Q4_Q8) return 0;
    if (w->kind == LMP_MAT_Q4 && scheme != LMP_Q4_SYM && scheme != LMP_Q4_ASYM) return 0;
    if (w->kind != LMP_MAT_Q4 && w->kind != LMP_MAT_Q8) return 0;
    if (!lmp_q4_layout_ok(w->kind, w->layout, w->rows)) return 0;
    size_t rb = lmp_q4_row_bytes(w->cols, w->group, scheme);
    return rb != 0 && rb == w->row_bytes && w->data != NULL;
}

static void nan_fill(const lmp_mat *w, int n, float *y)
{
    for (size_t i = 0; i < (size_t)n * (size_t)(w->rows > 0 ? w->rows : 0); i++) y[i] = NAN;
}

/* count matrices with the same kind, cols and group (checked by callers),
 * all valid, rows >= 1. */
static void matmul_many(const lmp_mat *const *w, float *const *y, int count, const float *x, int n,
                        lmp_pool *pool, int simd)
{
    const lmp_mat *w0 = w[0];
    size_t per = act_bytes(1, w0->cols, w0->group);
    int chunk = per >= ACT_BUDGET ? 1 : (int)(ACT_BUDGET / per);
    if (chunk > n) chunk = n;
    void *heap = malloc(act_bytes(chunk, w0->cols, w0->group));
    _Alignas(32) unsigned char stackbuf[ACT_STACK];
    void *buf = heap;
    if (!heap) { /* out of memory: fall back to a stack buffer */
        chunk = per <= ACT_STACK ? (int)(ACT_STACK / per) : 0;
        if (chunk > n) chunk = n;
        buf = stackbuf;
    }
    if (chunk == 0) { /* no memory at all for a huge row: cannot compute */
        for (int i = 0; i < count; i++) nan_fill(w[i], n, y[i]);
        return;
    }
    for (int t0 = 0; t0 < n; t0 += chunk) {
        int nt = n - t0 < chunk ? n - t0 : chunk;
        lmp_q4_act a;
        act_prepare(&a, buf, w0, x + (size_t)t0 * w0->cols, nt, 0, nt, simd);
        mm_job j = {.count = count, .a = &a, .simd = simd};
        int tasks = 0;
        for (int i = 0; i < count; i++) {
            j.w[i] = w[i];
            /* tokens t0.. map to y + t0*rows with the same stride */
            j.y[i] = y[i] + (size_t)t0 * w[i]->rows;
            j.first[i] = tasks;
            j.rpt[i] = rows_per_task(w[i]->rows, pool ? lmp_pool_threads(pool) : 1);
            tasks += (w[i]->rows + j.rpt[i] - 1) / j.rpt[i];
        }
        j.first[count] = tasks;
        if (pool)
            lmp_pool_run(pool, mm_task, &j, tasks);
        else
            for (int k = 0; k < tasks; k++) mm_task(&j, k, 0);
    }
    free(heap);
}

static void matmul(const lmp_mat *w, const float *x, int n, float *y, lmp_pool *pool, int simd)
{
    if (n <= 0 || w->rows <= 0) return;
    if (!mat_ok(w)) {
        nan_fill(w, n, y);
        return;
    }
    matmul_many(&w, &y, 1, x, n, pool, simd);
}

void lmp_q4_matmul(const lmp_mat *w, const float *x, int n, float *y, lmp_pool *pool)
{
    matmul(w, x, n, y, pool, lmp_q4_simd_active());
}

void lmp_q8_matmul(const lmp_mat *w, const float *x, int n, float *y, lmp_pool *pool)
{
    matmul(w, x, n, y, pool, lmp_q4_simd_active());
}

void lmp_q4_matmul_ref(const lmp_mat *w, const float *x, int n, float *y)
{
    matmul(w, x, n, y, NULL, 0);
}

void lmp_q4_matmul_many(const lmp_mat *const *w, float *const *y, int count, const float *x, int n,
                        lmp_pool *pool)
{
    if (n <= 0 || count <= 0) return;
    int shared = count <= MAX_MANY;
    for (int i = 0; i < count && shared; i++)
        shared = mat_ok(w[i]) && w[i]->rows > 0 && w[i]->kind == w[0]->kind &&
                 w[i]->cols == w[0]->cols && w[i]->group == w[0]->group;
    if (!shared) {
        for (int i = 0; i < count; i++) matmul(w[i], x, n, y[i], pool, lmp_q4_simd_active());
        return;
    }
    matmul_many(w, y, count, x, n, pool, lmp_q4_simd_active());
}

/* ---- the two halves of a matmul, for fused callers (see q4.h) ------------- */

#define ACT_HDR ((sizeof(lmp_q4_act) + 63) & ~(size_t)63)
_Static_assert(sizeof(lmp_q4_act) + 63 <= LMP_Q4_ACT_HDR_BYTES, "LMP_Q4_ACT_HDR_BYTES too small");

size_t lmp_q4_act_prep_bytes(const lmp_mat *w, int n)
{
    if (n < 1 || w->cols < 1 || w->group < 32) return ACT_HDR;
    return ACT_HDR + act_bytes(n, w->cols, w->group) + 64;
}

/* Handle at hdr (aligned up to 64), arrays at data aligned up to 64, plus
 * ACT_HDR: with hdr == data, exactly the single-buffer layout. */
const lmp_q4_act *lmp_q4_act_prep_part(const lmp_mat *w, const float *x, int n, int t0, int t1,
                                       void *hdr, void *data, int simd)
{
    if (!mat_ok(w) || n < 1 || t0 < 0 || t1 > n || t0 > t1) return NULL;
    lmp_q4_act *a = (lmp_q4_act *)(((uintptr_t)hdr + 63) & ~(uintptr_t)63);
    uintptr_t p = ((uintptr_t)data + 63) & ~(uintptr_t)63;
    act_prepare(a, (char *)p + ACT_HDR, w, x, n, t0, t1, simd);
    return a;
}

const lmp_q4_act *lmp_q4_act_prep(const lmp_mat *w, const float *x, int n, void *buf, int simd)
{
    return lmp_q4_act_prep_part(w, x, n, 0, n, buf, buf, simd);
}

void lmp_q4_rows(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y, int simd)
{
    if (r0 >= r1) return;
    if (!a || !mat_ok(w) || a->cols != w->cols || a->ng != (w->cols + w->group - 1) / w->group ||
        a->bpg != w->group / 32) {
        for (int t = 0; a && t < a->n; t++)
            for (int r = r0; r < r1; r++) y[(size_t)t * w->rows + r] = NAN;
        return;
    }
    rows_dispatch(w, a, r0, r1, y, simd);
}

void lmp_q4_get_row(const lmp_mat *w, int r, float *out)
{
    if (!mat_ok(w) || r < 0 || r >= w->rows) {
        for (int c = 0; c < w->cols; c++) out[c] = NAN;
        return;
    }
    uint8_t *tmp = interleaved_rows(w) ? malloc(w->row_bytes) : NULL;
    int layout;
    const uint8_t *row = stored_row(w, r, tmp, &layout);
    if (row)
        dequantize_row(row, w->cols, w->group, w->kind == LMP_MAT_Q8 ? LMP_Q4_Q8 : w->scheme,
                       layout, out);
    else /* no scratch */
        for (int c = 0; c < w->cols; c++) out[c] = NAN;
    free(tmp);
}

void lmp_q8_get_row(const lmp_mat *w, int r, float *out)
{
    lmp_q4_get_row(w, r, out);
}
