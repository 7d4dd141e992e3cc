/* lmpack mkmodel: write a random Llama model folder (config.json +
 * model.safetensors [+ tokenizer files]) of a preset or any config.
 *
 * Weights are N(0, std^2) (std 0.02 for projections, 0.05 for the
 * embedding / lm_head), norm weights 1 + 0.1 N(0,1), so code that ignores a
 * norm weight is caught. Every row of every tensor has its own PRNG stream
 * (xoshiro256** seeded through splitmix64 from (seed, tensor index, row),
 * normals by the polar Box-Muller method),
 * so the output depends on the seed only, never on the thread count.
 * Memory stays bounded: tensors are generated in batches of rows and
 * streamed through the safetensors writer. The folder appears atomically:
 * everything is written into DIR.tmp.<pid>, then renamed to DIR.
 *
 * Presets are config.json text parsed by lmp_config_parse, and the written
 * config.json is read back through lmp_config_load before generation: one
 * code path for presets, --config files and real models.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/rng.h"
#include "common/cli.h"
#include "common/fileio.h"
#include "common/pool.h"
#include "common/status.h"
#include "formats/config.h"
#include "formats/dtype.h"
#include "formats/safetensors.h"

static const char *const PROG = "mkmodel";

/* SmolLM presets: the architecture fields of HuggingFaceTB/SmolLM-{360M,135M}
 * config.json (base models: <|endoftext|> = 0 is BOS and EOS). */
static const struct preset {
    const char *name;
    const char *json;
} presets[] = {
    {"smollm-360m",
     "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\","
     " \"hidden_size\": 960, \"intermediate_size\": 2560, \"num_hidden_layers\": 32,"
     " \"num_attention_heads\": 15, \"num_key_value_heads\": 5, \"vocab_size\": 49152,"
     " \"max_position_embeddings\": 2048, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0,"
     " \"rope_scaling\": null, \"hidden_act\": \"silu\", \"tie_word_embeddings\": true,"
     " \"bos_token_id\": 0, \"eos_token_id\": 0, \"torch_dtype\": \"bfloat16\"}"},
    {"smollm-135m",
     "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\","
     " \"hidden_size\": 576, \"intermediate_size\": 1536, \"num_hidden_layers\": 30,"
     " \"num_attention_heads\": 9, \"num_key_value_heads\": 3, \"vocab_size\": 49152,"
     " \"max_position_embeddings\": 2048, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0,"
     " \"rope_scaling\": null, \"hidden_act\": \"silu\", \"tie_word_embeddings\": true,"
     " \"bos_token_id\": 0, \"eos_token_id\": 0, \"torch_dtype\": \"bfloat16\"}"},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lmpack mkmodel (--like PRESET | --config FILE) -o DIR [options]\n"
            "\n"
            "Write a Hugging Face model folder with random weights (for benchmarks and\n"
            "tests): DIR/config.json, DIR/model.safetensors.\n"
            "\n"
            "  --like PRESET     smollm-360m (960 hidden, 32 layers, ~724 MB bf16) or\n"
            "                    smollm-135m\n"
            "  --config FILE     any Llama config.json lmpack accepts\n"
            "  -o, --out DIR     output folder (must not exist, or be empty)\n"
            "  --seed S          PRNG seed (default 1); same seed, same bytes\n"
            "  --dtype T         bf16 | f16 | f32 (default: the config's dtype, else bf16)\n"
            "  --tokenizer DIR   copy tokenizer.json, tokenizer_config.json and\n"
            "                    special_tokens_map.json from DIR\n"
            "  --threads N       worker threads (default: all CPUs; output is identical)\n"
            "  --force           replace DIR if it exists\n"
            "  --print-config    print the config.json that would be written and exit\n"
            "  --help            this text\n");
}

/* ---- PRNG ---------------------------------------------------------------- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t xoshiro_next(rng *r)
{
    return lmp_xoshiro256ss(r->s);
}

/* Stream for row `row` of tensor `tensor`. */
static void rng_seed(rng *r, uint64_t seed, uint64_t tensor, uint64_t row)
{
    uint64_t sm = seed;
    uint64_t a = lmp_splitmix64(&sm);
    sm = a ^ (tensor * 0xd1b54a32d192ed03ull);
    uint64_t b = lmp_splitmix64(&sm);
    sm = b ^ (row * 0x8cb92ba72f3d8dd7ull);
    for (int i = 0; i < 4; i++) r->s[i] = lmp_splitmix64(&sm);
}

/* Uniform in [-1, 1). */
static double uniform_pm1(rng *r)
{
    return (double)(xoshiro_next(r) >> 11) * (1.0 / 4503599627370496.0) - 1.0; /* k / 2^52 - 1 */
}

/* n normal samples with mean `mean` and deviation `std`: Marsaglia's polar
 * form of Box-Muller (no sin/cos; twice as fast as the trigonometric form,
 * which spent half of mkmodel's time in sincos). */
static void gaussian_row(rng *r, float *dst, size_t n, double mean, double std)
{
    for (size_t i = 0; i < n; i += 2) {
        double u, v, s;
        do {
            u = uniform_pm1(r);
            v = uniform_pm1(r);
            s = u * u + v * v;
        } while (s >= 1.0 || s == 0.0);
        double m = std * sqrt(-2.0 * log(s) / s);
        dst[i] = (float)(mean + u * m);
        if (i + 1 < n) dst[i + 1] = (float)(mean + v * m);
    }
}

/* ---- generation ---------------------------------------------------------- */

typedef struct gen_job {
    uint64_t seed;
    uint64_t tensor;
    int64_t row0;       /* first row of this batch */
    int64_t rows;       /* rows in this batch */
    int64_t cols;
    int rows_per_task;
    double mean, std;
    lmp_dtype dtype;
    float *scratch;     /* one row of floats per thread */
    uint8_t *out;       /* rows * cols elements of dtype */
} gen_job;

static void gen_task(void *ctx, int task, int tid)
{
    gen_job *j = ctx;
    float *tmp = j->scratch + (size_t)tid * (size_t)j->cols;
    size_t esz = lmp_dtype_size(j->dtype);
    int64_t r0 = (int64_t)task * j->rows_per_task;
    int64_t r1 = r0 + j->rows_per_task < j->rows ? r0 + j->rows_per_task : j->rows;
    for (int64_t r = r0; r < r1; r++) {
        rng g;
        rng_seed(&g, j->seed, j->tensor, (uint64_t)(j->row0 + r));
        gaussian_row(&g, tmp, (size_t)j->cols, j->mean, j->std);
        uint8_t *o = j->out + (size_t)r * (size_t)j->cols * esz;
        for (int64_t c = 0; c < j->cols; c++) {
            if (j->dtype == LMP_DT_F32) {
                memcpy(o + c * 4, &tmp[c], 4);
            } else {
                uint16_t h = j->dtype == LMP_DT_F16 ? lmp_f32_to_f16(tmp[c])
                                                    : lmp_f32_to_bf16(tmp[c]);
                o[c * 2] = (uint8_t)(h & 0xff);
                o[c * 2 + 1] = (uint8_t)(h >> 8);
            }
        }
    }
}

#define BATCH_BYTES ((size_t)8 << 20)

static lmp_status write_weights(const char *path, const lmp_config *c, lmp_dtype dtype,
                                uint64_t seed, int threads, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_pool *pool = NULL;
    lmp_stw *w = NULL;
    lmp_expect *exp = NULL;
    lmp_stw_desc *descs = NULL;
    float *scratch = NULL;
    uint8_t *buf = NULL;
    size_t n = lmp_config_expected(c, NULL, 0), esz = lmp_dtype_size(dtype);
    exp = calloc(n, sizeof *exp);
    descs = calloc(n, sizeof *descs);
    LMP_FAIL_IF(!exp || !descs, LMP_ERR_NOMEM, "%s: out of memory", path);
    lmp_config_expected(c, exp, n);
    int64_t max_cols = 1;
    unsigned long long total = 0, done = 0;
    for (size_t i = 0; i < n; i++) {
        descs[i].name = exp[i].name;
        descs[i].dtype = dtype;
        descs[i].ndim = exp[i].ndim;
        descs[i].shape[0] = exp[i].shape[0];
        descs[i].shape[1] = exp[i].shape[1];
        int64_t cols = exp[i].ndim == 2 ? exp[i].shape[1] : exp[i].shape[0];
        if (cols > max_cols) max_cols = cols;
        total += (unsigned long long)exp[i].shape[0] * (exp[i].ndim == 2 ? exp[i].shape[1] : 1) *
                 esz;
    }
    LMP_FORWARD(lmp_pool_create(&pool, threads, d));
    int nt = lmp_pool_threads(pool);
    scratch = malloc((size_t)nt * (size_t)max_cols * sizeof *scratch);
    size_t buf_bytes = BATCH_BYTES > (size_t)max_cols * esz ? BATCH_BYTES : (size_t)max_cols * esz;
    buf = malloc(buf_bytes);
    LMP_FAIL_IF(!scratch || !buf, LMP_ERR_NOMEM, "%s: out of memory", path);
    static const char *const meta[] = {"format", "pt"};
    LMP_FORWARD(lmp_stw_open(&w, path, descs, n, meta, 1, d));
    for (size_t i = 0; i < n; i++) {
        const lmp_expect *e = &exp[i];
        int norm = e->ndim == 1;
        int emb = !strcmp(e->name, "model.embed_tokens.weight") || !strcmp(e->name, "lm_head.weight");
        gen_job j = {.seed = seed,
                     .tensor = i,
                     .rows = 0,
                     .cols = norm ? e->shape[0] : e->shape[1],
                     .mean = norm ? 1.0 : 0.0,
                     .std = norm ? 0.1 : emb ? 0.05 : 0.02,
                     .dtype = dtype,
                     .scratch = scratch,
                     .out = buf};
        int64_t rows = norm ? 1 : e->shape[0];
        int64_t batch_rows = (int64_t)(buf_bytes / ((size_t)j.cols * esz));
        for (int64_t r0 = 0; r0 < rows; r0 += batch_rows) {
            j.row0 = r0;
            j.rows = rows - r0 < batch_rows ? rows - r0 : batch_rows;
            j.rows_per_task = (int)((j.rows + 4 * nt - 1) / (4 * nt));
            if (j.rows_per_task < 1) j.rows_per_task = 1;
            int tasks = (int)((j.rows + j.rows_per_task - 1) / j.rows_per_task);
            lmp_pool_run(pool, gen_task, &j, tasks);
            size_t nb = (size_t)j.rows * (size_t)j.cols * esz;
            LMP_FORWARD(lmp_stw_write(w, buf, nb, d));
            done += nb;
            lmp_progress("mkmodel", done, total);
        }
    }
    rc = lmp_stw_finish(w, d);
    w = NULL;
out:
    lmp_stw_abort(w);
    lmp_pool_close(pool);
    free(buf);
    free(scratch);
    free(descs);
    free(exp);
    return rc;
}

/* ---- folder handling ----------------------------------------------------- */

static lmp_status write_text(const char *path, const char *text, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_out o;
    LMP_FORWARD(lmp_out_open(&o, path, d));
    rc = lmp_out_write(&o, text, strlen(text), d);
    if (rc == LMP_OK) rc = lmp_out_write(&o, "\n", 1, d);
    if (rc == LMP_OK) rc = lmp_out_commit(&o, d);
    if (rc != LMP_OK) lmp_out_abort(&o);
out:
    return rc;
}

static lmp_status copy_file(const char *src, const char *dst, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *text = NULL;
    size_t len = 0;
    lmp_out o;
    int open = 0;
    LMP_FORWARD(lmp_read_file(src, (size_t)1 << 30, &text, &len, d));
    LMP_FORWARD(lmp_out_open(&o, dst, d));
    open = 1;
    LMP_FORWARD(lmp_out_write(&o, text, len, d));
    LMP_FORWARD(lmp_out_commit(&o, d));
    open = 0;
out:
    if (open) lmp_out_abort(&o);
    free(text);
    return rc;
}

/* Remove a folder we created (flat: mkmodel writes no subfolders). */
static void remove_tree(const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    while (dp && (e = readdir(dp))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = lmp_path_join(dir, e->d_name);
        if (p) unlink(p);
        free(p);
    }
    if (dp) closedir(dp);
    rmdir(dir);
}

static int dir_is_empty(const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    int empty = dp != NULL;
    while (dp && (e = readdir(dp)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    if (dp) closedir(dp);
    return empty;
}

/* Move the finished tmp folder to its final name; with `force` an existing
 * folder is moved aside first and removed after the swap. */
static lmp_status publish(const char *tmp, const char *dir, int force, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char old[4096];
    snprintf(old, sizeof old, "%s.old.%ld", dir, (long)getpid());
    int moved = 0;
    if (lmp_exists(dir) && !(lmp_is_dir(dir) && dir_is_empty(dir))) {
        LMP_FAIL_IF(!force, LMP_ERR_IO, "%s: already exists (use --force to replace it)", dir);
        LMP_FAIL_IF(rename(dir, old) != 0, LMP_ERR_IO, "%s: cannot move aside: %s", dir,
                    strerror(errno));
        moved = 1;
    }
    if (rename(tmp, dir) != 0) {
        int err = errno;
        if (moved) rename(old, dir);
        LMP_FAIL(LMP_ERR_IO, "%s: cannot rename %s into place: %s", dir, tmp, strerror(err));
    }
    if (moved) remove_tree(old);
out:
    return rc;
}

static int parse_dtype(const char *s, lmp_dtype *out)
{
    if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) *out = LMP_DT_BF16;
    else if (!strcmp(s, "f16") || !strcmp(s, "float16")) *out = LMP_DT_F16;
    else if (!strcmp(s, "f32") || !strcmp(s, "float32")) *out = LMP_DT_F32;
    else return -1;
    return 0;
}

static const char *torch_name(lmp_dtype t)
{
    return t == LMP_DT_F32 ? "float32" : t == LMP_DT_F16 ? "float16" : "bfloat16";
}

int main(int argc, char **argv)
{
    const char *like = NULL, *cfg_path = NULL, *out_dir = NULL, *tok_dir = NULL, *dtype_s = NULL;
    long seed = 1, threads = 0;
    int force = 0, print_config = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
#define NEXT() (has_val ? argv[++i] : (lmp_cli_usage_error(PROG, "%s needs a value", a), ""))
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return LMP_EXIT_OK;
        } else if (!strcmp(a, "--like")) {
            like = NEXT();
        } else if (!strcmp(a, "--config")) {
            cfg_path = NEXT();
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            out_dir = NEXT();
        } else if (!strcmp(a, "--tokenizer")) {
            tok_dir = NEXT();
        } else if (!strcmp(a, "--dtype")) {
            dtype_s = NEXT();
        } else if (!strcmp(a, "--seed")) {
            const char *v = NEXT();
            if (lmp_parse_int(v, 0, 0x7fffffffffffffffL, &seed) != 0)
                lmp_cli_usage_error(PROG, "--seed: '%s' is not a non-negative integer", v);
        } else if (!strcmp(a, "--threads")) {
            const char *v = NEXT();
            if (lmp_parse_int(v, 0, 1024, &threads) != 0)
                lmp_cli_usage_error(PROG, "--threads: '%s' is not in [0, 1024]", v);
        } else if (!strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "--print-config")) {
            print_config = 1;
        } else {
            lmp_cli_usage_error(PROG, "unexpected argument '%s'", a);
        }
#undef NEXT
    }
    if (!like == !cfg_path) lmp_cli_usage_error(PROG, "give exactly one of --like and --config");
    if (!out_dir && !print_config) lmp_cli_usage_error(PROG, "missing -o DIR");
    const char *preset = NULL;
    if (like) {
        for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
            if (!strcmp(like, presets[i].name)) preset = presets[i].json;
        if (!preset) lmp_cli_usage_error(PROG, "unknown preset '%s' (smollm-360m, smollm-135m)", like);
    }
    lmp_dtype dtype = LMP_DT_BF16;
    if (dtype_s && parse_dtype(dtype_s, &dtype) != 0)
        lmp_cli_usage_error(PROG, "--dtype: '%s' is not bf16, f16 or f32", dtype_s);

    lmp_diag d;
    lmp_diag_clear(&d);
    lmp_status rc = LMP_OK;
    lmp_config c, back;
    char *json = NULL, *tmp = NULL, *p = NULL;
    if (preset) {
        char name[64];
        snprintf(name, sizeof name, "preset %s", like);
        rc = lmp_config_parse(&c, preset, strlen(preset), name, &d);
    } else {
        rc = lmp_config_load(&c, cfg_path, &d);
    }
    if (rc != LMP_OK) goto out;
    if (!dtype_s && c.torch_dtype[0]) parse_dtype(c.torch_dtype, &dtype);
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "%s", torch_name(dtype));
    json = lmp_config_to_json(&c);
    if (!json) {
        rc = lmp_fail(&d, LMP_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (print_config) {
        printf("%s\n", json);
        goto out;
    }
    if (lmp_exists(out_dir) && !force && !(lmp_is_dir(out_dir) && dir_is_empty(out_dir))) {
        rc = lmp_fail(&d, LMP_ERR_IO, "%s: already exists (use --force to replace it)", out_dir);
        goto out;
    }
    size_t tl = strlen(out_dir) + 32;
    tmp = malloc(tl);
    if (!tmp) {
        rc = lmp_fail(&d, LMP_ERR_NOMEM, "out of memory");
        goto out;
    }
    snprintf(tmp, tl, "%s.tmp.%ld", out_dir, (long)getpid());
    if (mkdir(tmp, 0777) != 0) {
        rc = lmp_fail(&d, LMP_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto out;
    }
    p = lmp_path_join(tmp, "config.json");
    if (!p) {
        rc = lmp_fail(&d, LMP_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* config.json, then read back: generation uses what the file says. */
    if ((rc = write_text(p, json, &d)) != LMP_OK) goto out;
    if ((rc = lmp_config_load(&back, p, &d)) != LMP_OK) goto out;
    free(p);
    p = lmp_path_join(tmp, "model.safetensors");
    if (!p) {
        rc = lmp_fail(&d, LMP_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = write_weights(p, &back, dtype, (uint64_t)seed, (int)threads, &d)) != LMP_OK)
        goto out;
    if (tok_dir) {
        static const char *const tok_files[] = {"tokenizer.json", "tokenizer_config.json",
                                                "special_tokens_map.json"};
        for (size_t i = 0; i < 3 && rc == LMP_OK; i++) {
            char *src = lmp_path_join(tok_dir, tok_files[i]);
            char *dst = lmp_path_join(tmp, tok_files[i]);
            if (!src || !dst) {
                rc = lmp_fail(&d, LMP_ERR_NOMEM, "out of memory");
            } else if (lmp_exists(src)) {
                rc = copy_file(src, dst, &d);
            } else if (i == 0) {
                rc = lmp_fail(&d, LMP_ERR_IO, "%s: no tokenizer.json in this folder", tok_dir);
            }
            free(src);
            free(dst);
        }
        if (rc != LMP_OK) goto out;
    }
    if ((rc = publish(tmp, out_dir, force, &d)) != LMP_OK) goto out;
    free(tmp);
    tmp = NULL;
out:
    if (tmp) remove_tree(tmp);
    free(tmp);
    free(p);
    free(json);
    return rc == LMP_OK ? LMP_EXIT_OK : lmp_cli_fail(PROG, &d);
}
