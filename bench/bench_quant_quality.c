/* Quantization quality study on a real trained model (default
 * tests/data/stories260k): every 2-D weight is quantized in memory (norms
 * stay float32), both models run over the same evaluation tokens, and the
 * quantized model's next-token distributions are compared with FP32's:
 *   KL      mean over positions of KL(P_fp32 || P_q), natural log
 *   top1    fraction of positions where the argmax agrees
 *   ppl     perplexity ratio PPL_q / PPL_fp32 on the evaluation text
 *   bpw     bits per weight of all 2-D weights (tied embedding once),
 *           scales and padding included
 * Evaluation tokens: greedy200.json (BOS + 200 greedy tokens) plus
 * --samples sequences of BOS + 200 tokens sampled from the FP32 model at
 * temperature 1 with a fixed seed.
 * Configurations: SYM/ASYM x g32/g64/g128 x search on/off x embedding
 * q4/q8/f16, plus llama.cpp Q4_0 emulated exactly (d = max/-8 with max the
 * value of largest magnitude, q = min(15, (int)(x/d + 8.5)), fp16 d, all
 * tensors) and Q4_0 with the embedding in Q8_0 (d = amax/127,
 * q = roundf(x/d)), as the yardstick; and for a few configurations the same
 * weights with float activations (dequantized to F32) to measure the cost
 * of the int8 activation quantization in the kernels.
 * --rows prints only a few configurations as `make bench` table rows;
 * --bpw-for CONFIG prints the bits/weight every configuration would have
 * on the shapes of another model's config.json (no weights needed).
 * Usage: bench_quant_quality [--model DIR] [--samples N] [--quick] [--rows]
 *                            [--bpw-for CONFIG]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "formats/config.h"
#include "formats/dtype.h"
#include "quantize/q4.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/model.h"

#define SEQ_NEW 200

enum { EMB_Q4 = 0, EMB_Q8 = 1, EMB_F16 = 2 };
static const char *k_emb_name[] = {"q4", "q8", "f16"};

typedef struct {
    int scheme;      /* LMP_Q4_SYM / LMP_Q4_ASYM, or 0 = llama.cpp Q4_0 emulation */
    int group;
    int search;
    int emb;         /* EMB_*; with Q4_0: EMB_Q4 = Q4_0, EMB_Q8 = Q8_0 */
    int float_act;   /* run on dequantized F32 weights */
} qconf;

/* ---- llama.cpp Q4_0 / Q8_0 emulation into our SYM / Q8 g32 rows --------- */

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static void q4_0_row(const float *x, int cols, uint8_t *out)
{
    int nblk = (cols + 31) / 32;
    memset(out, 0x88, (size_t)nblk * 16);
    for (int b = 0; b < nblk; b++) {
        int c0 = 32 * b, n = cols - c0 < 32 ? cols - c0 : 32;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < n; j++)
            if (amax < fabsf(x[c0 + j])) {
                amax = fabsf(x[c0 + j]);
                max = x[c0 + j];
            }
        const float d = max / -8, id = d ? 1.0f / d : 0.0f;
        wr16(out + (size_t)nblk * 16 + 2 * b, lmp_f32_to_f16(d));
        for (int j = 0; j < n; j++) {
            int q = (int)(int8_t)(x[c0 + j] * id + 8.5f);
            if (q > 15) q = 15;
            uint8_t *p = out + 16 * b + (j & 15);
            *p = j < 16 ? (uint8_t)((*p & 0xf0) | q) : (uint8_t)((*p & 0x0f) | (q << 4));
        }
    }
}

static void q8_0_row(const float *x, int cols, uint8_t *out)
{
    int nblk = (cols + 31) / 32;
    memset(out, 0, (size_t)nblk * 32);
    for (int b = 0; b < nblk; b++) {
        int c0 = 32 * b, n = cols - c0 < 32 ? cols - c0 : 32;
        float amax = 0.0f;
        for (int j = 0; j < n; j++) amax = fmaxf(amax, fabsf(x[c0 + j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        wr16(out + (size_t)nblk * 32 + 2 * b, lmp_f32_to_f16(d));
        for (int j = 0; j < n; j++) out[c0 + j] = (uint8_t)(int8_t)roundf(x[c0 + j] * id);
    }
}

/* ---- building the quantized model ------------------------------------------ */

typedef struct {
    void **bufs;
    int n, cap;
} owner_list;

static void release_list(void *p)
{
    owner_list *o = p;
    for (int i = 0; i < o->n; i++) free(o->bufs[i]);
    free(o->bufs);
    free(o);
}

static void *own(owner_list *o, size_t bytes)
{
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 64;
        o->bufs = realloc(o->bufs, sizeof(void *) * (size_t)o->cap);
        if (!o->bufs) exit(1);
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) exit(1);
    return o->bufs[o->n++] = p;
}

/* Quantize one F32 matrix view per conf; emb selects the embedding rules.
 * Adds its bits to *bits. */
static lmp_mat quant_mat(const lmp_mat *src, const qconf *q, int is_emb, owner_list *o,
                         double *bits)
{
    lmp_mat m;
    lmp_diag d;
    int rows = src->rows, cols = src->cols;
    const float *w = src->data;
    int scheme = q->scheme ? q->scheme : LMP_Q4_SYM, group = q->scheme ? q->group : 32;
    if (is_emb && q->emb == EMB_F16) {
        uint16_t *h = own(o, sizeof(uint16_t) * (size_t)rows * cols);
        for (size_t i = 0; i < (size_t)rows * cols; i++) h[i] = lmp_f32_to_f16(w[i]);
        m = (lmp_mat){LMP_MAT_F16, rows, cols, 0, 0, 2 * (size_t)cols, h, 0};
        *bits += 16.0 * rows * cols;
    } else {
        if (is_emb && q->emb == EMB_Q8) scheme = LMP_Q4_Q8;
        if (is_emb && q->emb == EMB_Q8 && !q->scheme) group = 32;
        size_t rb = lmp_q4_row_bytes(cols, group, scheme);
        uint8_t *buf = own(o, rb * (size_t)rows);
        if (!q->scheme) {
            for (int r = 0; r < rows; r++) {
                if (scheme == LMP_Q4_Q8)
                    q8_0_row(w + (size_t)r * cols, cols, buf + rb * r);
                else
                    q4_0_row(w + (size_t)r * cols, cols, buf + rb * r);
            }
        } else if (lmp_q4_quantize(w, rows, cols, group, scheme,
                                   q->search ? LMP_Q4_SEARCH : LMP_Q4_MINMAX, buf, NULL, "w",
                                   &d) != LMP_OK) {
            fprintf(stderr, "bench_quant_quality: %s\n", d.msg);
            exit(1);
        }
        lmp_q4_mat_init(&m, rows, cols, group, scheme, buf, &d);
        *bits += 8.0 * (double)rb * rows;
    }
    if (q->float_act && m.kind != LMP_MAT_F16) {
        float *f = own(o, sizeof(float) * (size_t)rows * cols);
        for (int r = 0; r < rows; r++) lmp_mat_get_row(&m, r, f + (size_t)r * cols);
        m = (lmp_mat){LMP_MAT_F32, rows, cols, 0, 0, sizeof(float) * (size_t)cols, f, 0};
    }
    return m;
}

static void build_quant(const lmp_model *src, const qconf *q, lmp_model *dst, double *bpw)
{
    owner_list *o = calloc(1, sizeof *o);
    double bits = 0, params = 0;
    memset(dst, 0, sizeof *dst);
    dst->cfg = src->cfg;
    dst->layers = calloc((size_t)src->cfg.n_layers, sizeof *dst->layers);
    if (!o || !dst->layers) exit(1);
    for (int l = 0; l < src->cfg.n_layers; l++) {
        const lmp_layer *S = &src->layers[l];
        lmp_layer *D = &dst->layers[l];
        const lmp_mat *sm[7] = {&S->wq, &S->wk, &S->wv, &S->wo, &S->wgate, &S->wup, &S->wdown};
        lmp_mat *dm[7] = {&D->wq, &D->wk, &D->wv, &D->wo, &D->wgate, &D->wup, &D->wdown};
        for (int k = 0; k < 7; k++) {
            *dm[k] = quant_mat(sm[k], q, 0, o, &bits);
            params += (double)sm[k]->rows * sm[k]->cols;
        }
        D->attn_norm = S->attn_norm;
        D->ffn_norm = S->ffn_norm;
    }
    dst->embed = quant_mat(&src->embed, q, 1, o, &bits);
    params += (double)src->embed.rows * src->embed.cols;
    if (src->cfg.tied) {
        dst->lm_head = dst->embed;
    } else {
        dst->lm_head = quant_mat(&src->lm_head, q, 1, o, &bits);
        params += (double)src->lm_head.rows * src->lm_head.cols;
    }
    dst->final_norm = src->final_norm;
    dst->release = release_list;
    dst->owner = o;
    *bpw = bits / params;
}

/* ---- evaluation -------------------------------------------------------------- */

typedef struct {
    int nseq, len;   /* every sequence has len tokens */
    int *tok;        /* [nseq][len] */
    float *logits;   /* FP32 logits [nseq][len][vocab] */
} evalset;

static uint64_t g_seed;
static int choose_sample(void *ctx, float *lg, int vocab)
{
    (void)ctx;
    float mx = lg[0];
    for (int i = 1; i < vocab; i++) mx = fmaxf(mx, lg[i]);
    double z = 0;
    for (int i = 0; i < vocab; i++) z += exp((double)lg[i] - mx);
    g_seed ^= g_seed << 13;
    g_seed ^= g_seed >> 7;
    g_seed ^= g_seed << 17;
    double u = (double)(g_seed >> 11) / 9007199254740992.0 * z, acc = 0;
    for (int i = 0; i < vocab; i++) {
        acc += exp((double)lg[i] - mx);
        if (acc > u) return i;
    }
    return vocab - 1;
}

static void run_all(const lmp_model *m, const evalset *e, float *out)
{
    lmp_state *s;
    lmp_diag d;
    if (lmp_state_create(&s, m, e->len, NULL, &d) != LMP_OK) {
        fprintf(stderr, "bench_quant_quality: %s\n", d.msg);
        exit(1);
    }
    size_t V = (size_t)m->cfg.vocab;
    for (int q = 0; q < e->nseq; q++)
        if (lmp_forward(s, e->tok + (size_t)q * e->len, e->len, 0, out + (size_t)q * e->len * V,
                        LMP_LOGITS_ALL, &d) != LMP_OK) {
            fprintf(stderr, "bench_quant_quality: %s\n", d.msg);
            exit(1);
        }
    lmp_state_close(s);
}

static void log_softmax(const float *lg, int n, double *out)
{
    double mx = lg[0], z = 0;
    for (int i = 1; i < n; i++) mx = fmax(mx, lg[i]);
    for (int i = 0; i < n; i++) z += exp(lg[i] - mx);
    double lz = mx + log(z);
    for (int i = 0; i < n; i++) out[i] = lg[i] - lz;
}

typedef struct {
    double kl, top1, ppl_ratio;
} metrics;

static metrics compare(const evalset *e, const float *lq, int V)
{
    double *lp = malloc(sizeof(double) * V), *lr = malloc(sizeof(double) * V);
    double kl = 0, nll_p = 0, nll_q = 0;
    long agree = 0, npos = 0, nnext = 0;
    for (int q = 0; q < e->nseq; q++)
        for (int i = 0; i < e->len; i++) {
            size_t off = ((size_t)q * e->len + i) * V;
            log_softmax(e->logits + off, V, lp);
            log_softmax(lq + off, V, lr);
            double k = 0;
            for (int v = 0; v < V; v++) k += exp(lp[v]) * (lp[v] - lr[v]);
            kl += k;
            agree += lmp_argmax(e->logits + off, V) == lmp_argmax(lq + off, V);
            npos++;
            if (i + 1 < e->len) {
                int nx = e->tok[(size_t)q * e->len + i + 1];
                nll_p -= lp[nx];
                nll_q -= lr[nx];
                nnext++;
            }
        }
    free(lp);
    free(lr);
    return (metrics){kl / npos, (double)agree / npos, exp((nll_q - nll_p) / nnext)};
}

static const char *conf_name(const qconf *q, char *buf, size_t n)
{
    if (!q->scheme)
        snprintf(buf, n, "llama.cpp Q4_0%s", q->emb == EMB_Q8 ? " + embed Q8_0" : "");
    else
        snprintf(buf, n, "%s g%d %s embed %s", lmp_q4_scheme_name(q->scheme), q->group,
                 q->search ? "search" : "minmax", k_emb_name[q->emb]);
    if (q->float_act) strncat(buf, " (float act)", n - strlen(buf) - 1);
    return buf;
}

/* bits of one [rows, cols] matrix under conf q (embedding rules if is_emb) */
static double mat_bits(int rows, int cols, const qconf *q, int is_emb)
{
    if (is_emb && q->emb == EMB_F16) return 16.0 * rows * cols;
    int scheme = q->scheme ? q->scheme : LMP_Q4_SYM, group = q->scheme ? q->group : 32;
    if (is_emb && q->emb == EMB_Q8) scheme = LMP_Q4_Q8;
    if (is_emb && q->emb == EMB_Q8 && !q->scheme) group = 32;
    return 8.0 * (double)lmp_q4_row_bytes(cols, group, scheme) * rows;
}

static int bpw_for(const char *cfgpath, const qconf *confs, int nc)
{
    lmp_config c;
    lmp_diag d;
    if (lmp_config_load(&c, cfgpath, &d) != LMP_OK) return lmp_cli_fail("bench", &d);
    size_t n = lmp_config_expected(&c, NULL, 0);
    lmp_expect *ex = calloc(n, sizeof *ex);
    lmp_config_expected(&c, ex, n);
    printf("bits/weight of the 2-D weights on the shapes of %s\n\n| configuration | bits/weight |\n|---|---|\n", cfgpath);
    for (int k = 0; k < nc; k++) {
        if (confs[k].float_act) continue;
        double bits = 0, params = 0;
        for (size_t i = 0; i < n; i++) {
            if (ex[i].ndim != 2) continue;
            int is_emb = strstr(ex[i].name, "embed_tokens") || strstr(ex[i].name, "lm_head");
            bits += mat_bits((int)ex[i].shape[0], (int)ex[i].shape[1], &confs[k], is_emb);
            params += (double)ex[i].shape[0] * ex[i].shape[1];
        }
        char name[96];
        printf("| %s | %.3f |\n", conf_name(&confs[k], name, sizeof name), bits / params);
    }
    free(ex);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = "tests/data/stories260k", *bpw_cfg = NULL;
    int samples = 19, quick = 0, rows = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: bench_quant_quality [--model DIR] [--samples N] [--quick] [--rows]\n"
                   "                           [--bpw-for CONFIG]\n");
            return 0;
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strcmp(argv[i], "--samples") && i + 1 < argc) {
            long v;
            if (lmp_parse_int(argv[++i], 0, 1000, &v)) lmp_cli_usage_error("bench", "bad --samples");
            samples = (int)v;
        } else if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (!strcmp(argv[i], "--rows")) {
            rows = 1;
        } else if (!strcmp(argv[i], "--bpw-for") && i + 1 < argc) {
            bpw_cfg = argv[++i];
        } else {
            lmp_cli_usage_error("bench", "unknown argument '%s'", argv[i]);
        }
    }
    qconf confs[80];
    int nc = 0;
    if (rows) {
        confs[nc++] = (qconf){0, 32, 0, EMB_Q4, 0};
        confs[nc++] = (qconf){0, 32, 0, EMB_Q8, 0};
        confs[nc++] = (qconf){LMP_Q4_ASYM, 64, 1, EMB_Q4, 0};
        confs[nc++] = (qconf){LMP_Q4_ASYM, 64, 1, EMB_Q8, 0};
        confs[nc++] = (qconf){LMP_Q4_ASYM, 32, 1, EMB_Q4, 0};
        goto confs_done;
    }
    confs[nc++] = (qconf){0, 32, 0, EMB_Q4, 0};
    confs[nc++] = (qconf){0, 32, 0, EMB_Q8, 0};
    static const int groups[3] = {32, 64, 128};
    for (int sch = LMP_Q4_SYM; sch <= LMP_Q4_ASYM; sch++)
        for (int gi = 0; gi < 3; gi++)
            for (int se = 1; se >= 0; se--)
                for (int em = 0; em < 3; em++) {
                    if (quick && (em == EMB_F16 || !se)) continue;
                    confs[nc++] = (qconf){sch, groups[gi], se, em, 0};
                }
    /* float-activation counterparts of a few configurations */
    confs[nc++] = (qconf){0, 32, 0, EMB_Q4, 1};
    confs[nc++] = (qconf){LMP_Q4_SYM, 32, 1, EMB_Q8, 1};
    confs[nc++] = (qconf){LMP_Q4_ASYM, 64, 1, EMB_Q8, 1};
    confs[nc++] = (qconf){LMP_Q4_ASYM, 128, 1, EMB_Q8, 1};
    confs[nc++] = (qconf){LMP_Q4_SYM, 64, 1, EMB_Q8, 1};
confs_done:
    if (bpw_cfg) return bpw_for(bpw_cfg, confs, nc);

    lmp_model fp;
    lmp_diag d;
    if (lmp_model_open(&fp, dir, NULL, &d) != LMP_OK) return lmp_cli_fail("bench", &d);
    const int V = fp.cfg.vocab, len = SEQ_NEW + 1;

    /* evaluation tokens: greedy200.json, then sampled sequences */
    evalset e = {1 + samples, len, NULL, NULL};
    e.tok = calloc((size_t)e.nseq * len, sizeof(int));
    e.logits = malloc(sizeof(float) * (size_t)e.nseq * len * V);
    char *path = lmp_path_join(dir, "greedy200.json"), *txt = NULL;
    size_t tl;
    int *ids = NULL;
    if (lmp_read_file(path, 1 << 20, &txt, &tl, &d) != LMP_OK) return lmp_cli_fail("bench", &d);
    char *p = txt;
    while (*p && *p != '[') p++;
    if (*p) p++;
    char *q = strchr(p, ']');
    if (q) *q = 0;
    long nid = lmp_parse_ids(p, &ids);
    if (nid != len) {
        fprintf(stderr, "bench_quant_quality: %s: expected %d ids, got %ld\n", path, len, nid);
        return 1;
    }
    memcpy(e.tok, ids, sizeof(int) * (size_t)len);
    free(ids);
    free(txt);
    free(path);
    {
        lmp_state *s;
        if (lmp_state_create(&s, &fp, len, NULL, &d) != LMP_OK) return lmp_cli_fail("bench", &d);
        g_seed = 0x5eed5eed1234ull;
        for (int k = 1; k < e.nseq; k++) {
            int bos = fp.cfg.bos >= 0 ? fp.cfg.bos : 1;
            lmp_gen g = {SEQ_NEW, choose_sample, NULL, NULL, NULL, e.tok + (size_t)k * len + 1, NULL};
            e.tok[(size_t)k * len] = bos;
            if (lmp_generate(s, &bos, 1, &g, NULL, &d) != LMP_OK) return lmp_cli_fail("bench", &d);
        }
        lmp_state_close(s);
    }
    run_all(&fp, &e, e.logits);

    if (!rows) {
        printf("model %s: %d evaluation positions (%d sequences of %d tokens: greedy200 + %d "
               "sampled, seed 0x5eed5eed1234)\n\n",
               dir, e.nseq * len, e.nseq, len, samples);
        printf("| configuration | bits/weight | mean KL | top-1 agree | PPL ratio |\n");
        printf("|---|---|---|---|---|\n");
    }
    float *lq = malloc(sizeof(float) * (size_t)e.nseq * len * V);
    for (int c = 0; c < nc; c++) {
        lmp_model qm;
        double bpw;
        build_quant(&fp, &confs[c], &qm, &bpw);
        run_all(&qm, &e, lq);
        metrics mt = compare(&e, lq, V);
        char name[96];
        if (rows)
            printf("| quant quality %s | %.4f | mean KL vs FP32 | stories260k, %d positions, "
                   "%.3f bpw, top-1 %.1f%%, PPL x%.3f |\n",
                   conf_name(&confs[c], name, sizeof name), mt.kl, e.nseq * len, bpw,
                   100 * mt.top1, mt.ppl_ratio);
        else
            printf("| %s | %.3f | %.4f | %.2f%% | %.4f |\n", conf_name(&confs[c], name, sizeof name),
                   bpw, mt.kl, 100 * mt.top1, mt.ppl_ratio);
        fflush(stdout);
        lmp_model_close(&qm);
    }
    free(lq);
    free(e.tok);
    free(e.logits);
    lmp_model_close(&fp);
    return 0;
}
