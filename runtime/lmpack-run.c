/* lmpack run: run a model on token ids.
 *
 *   lmpack run MODEL --ids "1 2 3" --logits OUT.f32    logits of every prompt position
 *   lmpack run MODEL --ids "..." -n N --greedy         N new ids (argmax), one line
 *
 * Structure (so text prompts, sampling and streaming can be added without
 * rewriting): parse_args() fills a run_opts; main() loads the model, builds
 * the prompt ids, and hands everything to lmp_generate() (runtime/generate.h)
 * with a chooser (greedy today) and an on_token callback (prints ids today).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "common/pool.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/model.h"

#define PROG "run"

typedef struct run_opts {
    const char *model;
    const char *ids;      /* --ids */
    const char *logits;   /* --logits OUT */
    long n_new;           /* -n */
    int greedy;           /* --greedy (the only chooser so far; also the default) */
    long threads;         /* -t, 0 = online CPUs */
    long ctx;             /* --ctx, 0 = prompt + n_new (capped by the model) */
    int stats, json;
} run_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lmpack run MODEL --ids \"ID ID ...\" [options]\n"
            "\n"
            "Run a Llama-family model (a Hugging Face folder with config.json and\n"
            "safetensors; F32/F16/BF16 weights are computed in float32).\n"
            "\n"
            "  --ids LIST        prompt token ids, separated by spaces or commas\n"
            "  --logits FILE     write the logits of EVERY prompt position as raw\n"
            "                    little-endian float32 [T, vocab], row-major\n"
            "  -n, --n-new N     generate N new tokens after the prompt; prints the new\n"
            "                    ids space-separated on one line of stdout\n"
            "  --greedy          argmax decoding (the default, and for now the only mode)\n"
            "  -t, --threads N   worker threads (default: online CPUs)\n"
            "  --ctx N           KV cache positions (default: prompt + N, at most the\n"
            "                    model's max_position_embeddings)\n"
            "  --stats           one line on stderr after the run: load time, prefill and\n"
            "                    decode speed, time to first token, peak RSS, threads\n"
            "  --json            print the --stats line as a JSON object\n"
            "  -h, --help        this help\n"
            "\n"
            "Exit status: 0 ok; 1 model or input problem (missing/invalid model, id outside\n"
            "the vocabulary, prompt longer than the context); 2 bad usage.\n");
}

/* Accept "--opt VALUE" and "--opt=VALUE". Returns the value or NULL. */
static const char *opt_value(int argc, char **argv, int *i, const char *lng, const char *shrt)
{
    const char *a = argv[*i];
    size_t ll = strlen(lng);
    if (!strcmp(a, lng) || (shrt && !strcmp(a, shrt))) {
        if (*i + 1 >= argc) lmp_cli_usage_error(PROG, "option %s needs a value", a);
        return argv[++*i];
    }
    if (!strncmp(a, lng, ll) && a[ll] == '=') return a + ll + 1;
    return NULL;
}

static void parse_args(int argc, char **argv, run_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_new = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if ((v = opt_value(argc, argv, &i, "--ids", NULL))) {
            o->ids = v;
        } else if ((v = opt_value(argc, argv, &i, "--logits", NULL))) {
            o->logits = v;
        } else if ((v = opt_value(argc, argv, &i, "--n-new", "-n"))) {
            if (lmp_parse_int(v, 0, 1000000, &o->n_new))
                lmp_cli_usage_error(PROG, "-n wants a count in [0, 1000000], got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--threads", "-t"))) {
            if (lmp_parse_int(v, 1, 256, &o->threads))
                lmp_cli_usage_error(PROG, "--threads wants a number in [1, 256], got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--ctx", NULL))) {
            if (lmp_parse_int(v, 1, 1 << 24, &o->ctx))
                lmp_cli_usage_error(PROG, "--ctx wants a positive position count, got '%s'", v);
        } else if (!strcmp(a, "--greedy")) {
            o->greedy = 1;
        } else if (!strcmp(a, "--stats")) {
            o->stats = 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            lmp_cli_usage_error(PROG, "unknown option '%s'", a);
        } else if (!o->model) {
            o->model = a;
        } else {
            lmp_cli_usage_error(PROG, "unexpected argument '%s' (one MODEL only)", a);
        }
    }
    if (!o->model) lmp_cli_usage_error(PROG, "missing MODEL");
    if (!o->ids) lmp_cli_usage_error(PROG, "missing --ids (the prompt as token ids)");
    if (o->greedy && o->n_new < 0)
        lmp_cli_usage_error(PROG, "--greedy needs -n N (how many tokens to generate)");
}

/* Raw little-endian float32, written atomically. */
static lmp_status write_logits(const char *path, const float *v, size_t n, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    lmp_out o = {0};
    unsigned char buf[4096];
    LMP_FORWARD(lmp_out_open(&o, path, d));
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < sizeof buf / 4 && i < n; k++, i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            buf[4 * k] = (unsigned char)u;
            buf[4 * k + 1] = (unsigned char)(u >> 8);
            buf[4 * k + 2] = (unsigned char)(u >> 16);
            buf[4 * k + 3] = (unsigned char)(u >> 24);
        }
        LMP_FORWARD(lmp_out_write(&o, buf, 4 * k, d));
    }
    LMP_FORWARD(lmp_out_commit(&o, d));
out:
    lmp_out_abort(&o);
    return rc;
}

typedef struct {
    int count;
} print_ctx;

static int print_token(void *ctx, int token)
{
    print_ctx *p = ctx;
    printf(p->count++ ? " %d" : "%d", token);
    fflush(stdout);
    return 0;
}

static void print_stats(const run_opts *o, double load_ms, const lmp_gen_stats *st, int threads)
{
    struct rusage ru;
    double rss_mb = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0) rss_mb = (double)ru.ru_maxrss / 1024.0;
    double pf = st->prefill_ms > 0 ? st->n_prompt / (st->prefill_ms / 1e3) : 0;
    double dc = st->decode_ms > 0 ? st->n_decode / (st->decode_ms / 1e3) : 0;
    if (o->json)
        fprintf(stderr,
                "{\"load_ms\": %.1f, \"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f, "
                "\"ttft_ms\": %.1f, \"peak_rss_mb\": %.1f, \"threads\": %d, "
                "\"prompt_tokens\": %d, \"new_tokens\": %d}\n",
                load_ms, pf, dc, st->ttft_ms, rss_mb, threads, st->n_prompt, st->n_generated);
    else
        fprintf(stderr,
                "stats: load %.1f ms, prefill %.2f tok/s (%d tokens), decode %.2f tok/s (%d "
                "steps), ttft %.1f ms, peak rss %.1f MB, threads %d\n",
                load_ms, pf, st->n_prompt, dc, st->n_decode, st->ttft_ms, rss_mb, threads);
}

int main(int argc, char **argv)
{
    run_opts o;
    parse_args(argc, argv, &o);
    int *ids = NULL;
    long T = lmp_parse_ids(o.ids, &ids);
    if (T < 0) lmp_cli_usage_error(PROG, "--ids: not a list of non-negative integers: '%s'", o.ids);
    if (T == 0) {
        free(ids);
        lmp_cli_usage_error(PROG, "--ids is empty: give at least one token id");
    }
    long n_new = o.n_new < 0 ? 0 : o.n_new;

    lmp_diag diag = {0}, *d = &diag;
    lmp_status rc = LMP_OK;
    lmp_model m = {0};
    lmp_pool *pool = NULL;
    lmp_state *s = NULL;
    float *plog = NULL;
    int exit_code = LMP_EXIT_OK;
    print_ctx pc = {0};

    double t0 = lmp_now_ms();
    LMP_FORWARD(lmp_model_open(&m, o.model, NULL, d));
    double load_ms = lmp_now_ms() - t0;
    const lmp_config *c = &m.cfg;
    for (long i = 0; i < T; i++)
        LMP_FAIL_IF(ids[i] >= c->vocab, LMP_ERR_RANGE,
                    "%s: token id %d (position %ld of --ids) is outside the vocabulary [0, %d)",
                    o.model, ids[i], i, c->vocab);
    long need = T + (n_new > 0 ? n_new - 1 : 0);
    long ctx = o.ctx;
    LMP_FAIL_IF(ctx > c->max_pos, LMP_ERR_RANGE,
                "%s: --ctx %ld exceeds the model's max_position_embeddings %d", o.model, ctx,
                c->max_pos);
    LMP_FAIL_IF(T > (ctx ? ctx : c->max_pos), LMP_ERR_RANGE,
                "%s: the prompt has %ld tokens, longer than the context of %ld positions",
                o.model, T, ctx ? ctx : (long)c->max_pos);
    LMP_FAIL_IF(need > (ctx ? ctx : c->max_pos), LMP_ERR_RANGE,
                "%s: %ld prompt tokens + %ld new tokens need %ld positions, more than the "
                "context of %ld",
                o.model, T, n_new, need, ctx ? ctx : (long)c->max_pos);
    if (!ctx) ctx = need;
    LMP_FORWARD(lmp_pool_create(&pool, (int)o.threads, d));
    LMP_FORWARD(lmp_state_create(&s, &m, (int)ctx, pool, d));
    if (o.logits) {
        plog = malloc((size_t)T * (size_t)c->vocab * sizeof(float));
        LMP_FAIL_IF(!plog, LMP_ERR_NOMEM, "out of memory for %ld x %d logits", T, c->vocab);
    }
    lmp_gen g = {.n_new = (int)n_new,
                 .choose = lmp_choose_greedy,
                 .on_token = print_token,
                 .token_ctx = &pc,
                 .prompt_logits = plog};
    lmp_gen_stats st;
    rc = lmp_generate(s, ids, (int)T, &g, &st, d);
    if (pc.count || (rc == LMP_OK && o.n_new >= 0)) printf("\n");
    if (rc) goto out;
    if (o.logits) LMP_FORWARD(write_logits(o.logits, plog, (size_t)T * c->vocab, d));
    if (o.stats) print_stats(&o, load_ms, &st, lmp_pool_threads(pool));
out:
    if (rc != LMP_OK) exit_code = lmp_cli_fail(PROG, d);
    free(plog);
    lmp_state_close(s);
    lmp_pool_close(pool);
    lmp_model_close(&m);
    free(ids);
    return exit_code;
}
