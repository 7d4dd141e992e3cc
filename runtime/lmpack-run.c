/* lmpack run: run a model on token ids.
 *
 *   lmpack run MODEL --ids "1 2 3" --logits OUT.f32    logits of every prompt position
 *   lmpack run MODEL --ids "..." -n N --greedy         N new ids (argmax), one line
 *   lmpack run MODEL --prompt "Once upon" -n N [sampling] text, streamed as generated
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
#include <unistd.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "common/pool.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "runtime/sample.h"
#include "tokenizer/tokenizer.h"

#define PROG "run"

typedef struct run_opts {
    const char *model;
    const char *ids;      /* --ids */
    const char *logits;   /* --logits OUT */
    long n_new;           /* -n */
    int greedy;           /* --greedy (the only chooser so far; also the default) */
    long threads;         /* -t, 0 = online CPUs */
    long ctx;             /* --ctx, 0 = prompt + n_new (capped by the model) */
    long stream;          /* --stream K: bundles keep at most K layers resident */
    lmp_kv_type kv;       /* --kv */
    int stats, json;
    const char *prompt;   /* --prompt TEXT: tokenize, generate text */
    int chat;             /* --chat: wrap --prompt in the chat template */
    int ignore_eos;       /* --ignore-eos */
    int sampling;         /* any sampling flag given */
    lmp_sample_params sp; /* --temperature --top-k --top-p --min-p ... */
} run_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lmpack run MODEL --ids \"ID ID ...\" [options]\n"
            "       lmpack run MODEL --prompt TEXT [-n N] [sampling options]\n"
            "\n"
            "Run a Llama-family model: a Hugging Face folder with config.json and\n"
            "safetensors (F32/F16/BF16 weights are computed in float32), an .lmpk\n"
            "container from `lmpack convert` (weights used in place as stored: f32,\n"
            "f16, bf16, int4 q4, int8 q8), or a bundle folder from `lmpack build` /\n"
            "`lmpack split` (every chunk verified before use). Containers and bundles\n"
            "carry their tokenizer, so --prompt works with all three.\n"
            "\n"
            "  --ids LIST        prompt token ids, separated by spaces or commas\n"
            "  --logits FILE     write the logits of EVERY prompt position as raw\n"
            "                    little-endian float32 [T, vocab], row-major\n"
            "  -n, --n-new N     generate N new tokens after the prompt; prints the new\n"
            "                    ids space-separated on one line of stdout\n"
            "  --greedy          argmax decoding (the default with --ids; = --temperature 0)\n"
            "  --prompt TEXT     tokenize TEXT with the model's tokenizer (BOS added when the\n"
            "                    tokenizer config asks for it) and stream the generated text\n"
            "                    to stdout; stops at an EOS id of config.json (default -n 128)\n"
            "  --chat            wrap --prompt as one user turn of the chat template (ChatML)\n"
            "  --ignore-eos      do not stop at EOS\n"
            "sampling (defaults as llama.cpp; with --ids only when one is given):\n"
            "  --temperature T   0 = greedy (default 0.8)\n"
            "  --top-k K         keep the K most likely tokens, 0 = off (default 40)\n"
            "  --top-p P         nucleus: smallest set reaching probability P (default 0.95)\n"
            "  --min-p P         drop tokens below P x the top probability (default 0.05)\n"
            "  --repeat-penalty R  divide positive / multiply negative logits of recent\n"
            "                    tokens by R (default 1 = off)\n"
            "  --repeat-last-n N tokens the penalty looks back over (default 64, -1 = all)\n"
            "  --seed S          random seed (default 0): same seed, same text\n"
            "  -t, --threads N   worker threads (default: online CPUs)\n"
            "  --stream K        bundles: keep at most K layers' weights resident, re-read\n"
            "                    (and re-verify) the others from their chunks when needed\n"
            "  --ctx N           KV cache positions (default: prompt + N, at most the\n"
            "                    model's max_position_embeddings)\n"
            "  --kv TYPE         KV cache element type: f16 (half the memory and the\n"
            "                    bytes read per token; K and V rounded to binary16), f32,\n"
            "                    or auto (default: f16 for int4/int8 models, f32 for\n"
            "                    float ones)\n"
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
    lmp_sample_defaults(&o->sp);
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
        } else if ((v = opt_value(argc, argv, &i, "--stream", NULL))) {
            if (lmp_parse_int(v, 1, 1 << 20, &o->stream))
                lmp_cli_usage_error(PROG, "--stream wants a layer count >= 1, got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--ctx", NULL))) {
            if (lmp_parse_int(v, 1, 1 << 24, &o->ctx))
                lmp_cli_usage_error(PROG, "--ctx wants a positive position count, got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--kv", NULL))) {
            if (lmp_kv_type_parse(v, &o->kv) != 0)
                lmp_cli_usage_error(PROG, "--kv wants auto, f32 or f16, got '%s'", v);
        } else if ((v = opt_value(argc, argv, &i, "--prompt", NULL))) {
            o->prompt = v;
        } else if ((v = opt_value(argc, argv, &i, "--temperature", NULL))) {
            double x;
            if (lmp_parse_float(v, 0, 100, &x))
                lmp_cli_usage_error(PROG, "--temperature wants a number in [0, 100], got '%s'", v);
            o->sp.temperature = (float)x;
            o->sampling = 1;
        } else if ((v = opt_value(argc, argv, &i, "--top-k", NULL))) {
            long x;
            if (lmp_parse_int(v, 0, 1 << 30, &x))
                lmp_cli_usage_error(PROG, "--top-k wants a count >= 0, got '%s'", v);
            o->sp.top_k = (int)x;
            o->sampling = 1;
        } else if ((v = opt_value(argc, argv, &i, "--top-p", NULL))) {
            double x;
            if (lmp_parse_float(v, 1e-9, 1, &x))
                lmp_cli_usage_error(PROG, "--top-p wants a number in (0, 1], got '%s'", v);
            o->sp.top_p = (float)x;
            o->sampling = 1;
        } else if ((v = opt_value(argc, argv, &i, "--min-p", NULL))) {
            double x;
            if (lmp_parse_float(v, 0, 1, &x))
                lmp_cli_usage_error(PROG, "--min-p wants a number in [0, 1], got '%s'", v);
            o->sp.min_p = (float)x;
            o->sampling = 1;
        } else if ((v = opt_value(argc, argv, &i, "--repeat-penalty", NULL))) {
            double x;
            if (lmp_parse_float(v, 1e-6, 1e6, &x))
                lmp_cli_usage_error(PROG, "--repeat-penalty wants a number > 0, got '%s'", v);
            o->sp.repeat_penalty = (float)x;
            o->sampling = 1;
        } else if ((v = opt_value(argc, argv, &i, "--repeat-last-n", NULL))) {
            long x;
            if (lmp_parse_int(v, -1, 1 << 30, &x))
                lmp_cli_usage_error(PROG, "--repeat-last-n wants a count >= -1, got '%s'", v);
            o->sp.repeat_last_n = (int)x;
            o->sampling = 1;
        } else if ((v = opt_value(argc, argv, &i, "--seed", NULL))) {
            long x;
            if (lmp_parse_int(v, 0, 0x7fffffffL, &x))
                lmp_cli_usage_error(PROG, "--seed wants an integer in [0, 2^31), got '%s'", v);
            o->sp.seed = (uint64_t)x;
            o->sampling = 1;
        } else if (!strcmp(a, "--chat")) {
            o->chat = 1;
        } else if (!strcmp(a, "--ignore-eos")) {
            o->ignore_eos = 1;
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
    if (!o->ids && !o->prompt)
        lmp_cli_usage_error(PROG, "missing --ids or --prompt (the prompt as token ids or text)");
    if (o->ids && o->prompt) lmp_cli_usage_error(PROG, "give one of --ids and --prompt");
    if (o->chat && !o->prompt) lmp_cli_usage_error(PROG, "--chat needs --prompt");
    if (o->greedy) o->sp.temperature = 0;
    if (o->greedy && o->n_new < 0 && !o->prompt)
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
    lmp_tok_stream *stream; /* text mode (--prompt): decode and print text */
    const lmp_config *cfg;
    int stop_at_eos;
    lmp_status rc; /* a decoding failure stops generation */
    lmp_diag *d;
} print_ctx;

static int is_eos(const lmp_config *c, int token)
{
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos[i] == token) return 1;
    return 0;
}

static int print_token(void *ctx, int token)
{
    print_ctx *p = ctx;
    if (p->stop_at_eos && is_eos(p->cfg, token)) return 1; /* EOS is not printed */
    if (p->stream) {
        const char *t;
        size_t n;
        p->rc = lmp_tok_stream_push(p->stream, token, &t, &n, p->d);
        if (p->rc != LMP_OK) return 1;
        fwrite(t, 1, n, stdout);
        p->count++;
    } else {
        printf(p->count++ ? " %d" : "%d", token);
    }
    fflush(stdout);
    return 0;
}

typedef struct {
    lmp_sampler *s;
} sample_ctx;

static int choose_sample(void *ctx, float *logits, int vocab)
{
    sample_ctx *c = ctx;
    (void)vocab;
    int tok = lmp_sampler_sample(c->s, logits);
    lmp_sampler_accept(c->s, tok);
    return tok;
}

/* --prompt: text (optionally chat-wrapped) -> ids with the model's tokenizer. */
static lmp_status prompt_ids(const run_opts *o, lmp_tok *tok, int **ids, long *T, lmp_diag *d)
{
    lmp_status rc = LMP_OK;
    char *chat = NULL;
    const char *text = o->prompt;
    size_t n = 0;
    if (o->chat) {
        LMP_FORWARD(lmp_tok_chat_format(tok, text, &chat, d));
        text = chat;
    }
    LMP_FORWARD(lmp_tok_encode(tok, text, strlen(text), lmp_tok_add_bos_default(tok), ids, &n, d));
    LMP_FAIL_IF(n == 0, LMP_ERR_ARG, "%s: the prompt is empty (no tokens)", o->model);
    *T = (long)n;
out:
    free(chat);
    return rc;
}

static void print_stats(const run_opts *o, double load_ms, const lmp_gen_stats *st, int threads,
                        lmp_kv_type kv)
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
                "\"prompt_tokens\": %d, \"new_tokens\": %d, \"kv\": \"%s\"}\n",
                load_ms, pf, dc, st->ttft_ms, rss_mb, threads, st->n_prompt, st->n_generated,
                lmp_kv_type_name(kv));
    else
        fprintf(stderr,
                "stats: load %.1f ms, prefill %.2f tok/s (%d tokens), decode %.2f tok/s (%d "
                "steps), ttft %.1f ms, peak rss %.1f MB, threads %d, kv %s\n",
                load_ms, pf, st->n_prompt, dc, st->n_decode, st->ttft_ms, rss_mb, threads,
                lmp_kv_type_name(kv));
}

int main(int argc, char **argv)
{
    run_opts o;
    parse_args(argc, argv, &o);
    int *ids = NULL;
    long T = 0;
    if (o.ids) {
        T = lmp_parse_ids(o.ids, &ids);
        if (T < 0)
            lmp_cli_usage_error(PROG, "--ids: not a list of non-negative integers: '%s'", o.ids);
        if (T == 0) {
            free(ids);
            lmp_cli_usage_error(PROG, "--ids is empty: give at least one token id");
        }
    }
    long n_new = o.n_new < 0 ? (o.prompt ? 128 : 0) : o.n_new;
    lmp_tok *tok = NULL;
    lmp_tok_stream *stream = NULL;
    lmp_sampler *sampler = NULL;
    sample_ctx sc = {0};

    lmp_diag diag = {0}, *d = &diag;
    lmp_status rc = LMP_OK;
    lmp_model m = {0};
    lmp_pool *pool = NULL;
    lmp_state *s = NULL;
    float *plog = NULL;
    int exit_code = LMP_EXIT_OK;
    print_ctx pc = {.d = d};

    double t0 = lmp_now_ms();
    lmp_model_opts mo = {0};
    mo.stream_layers = (int)o.stream;
    mo.threads = (int)o.threads; /* bundles: chunks verified/decompressed in parallel */
    LMP_FORWARD(lmp_model_open(&m, o.model, &mo, d));
    double load_ms = lmp_now_ms() - t0;
    const lmp_config *c = &m.cfg;
    if (o.prompt) {
        LMP_FORWARD(lmp_tok_open_model(&tok, o.model, d));
        LMP_FORWARD(prompt_ids(&o, tok, &ids, &T, d));
        LMP_FORWARD(lmp_tok_stream_open(&stream, tok, d));
        pc.stream = stream;
        pc.cfg = c;
        pc.stop_at_eos = !o.ignore_eos;
        /* echo the prompt (not the chat wrapper) through the same stream, so
         * the text reads as decode(prompt + generated); special tokens such
         * as BOS are not shown */
        for (long i = 0; i < T && !o.chat; i++) {
            const char *t;
            size_t n;
            if (lmp_tok_is_special(tok, ids[i])) continue;
            LMP_FORWARD(lmp_tok_stream_push(stream, ids[i], &t, &n, d));
            fwrite(t, 1, n, stdout);
        }
        fflush(stdout);
        /* -n not given: as many as fit (at most 128) */
        if (o.n_new < 0 && T + n_new - 1 > (o.ctx ? o.ctx : c->max_pos))
            n_new = (o.ctx ? o.ctx : c->max_pos) - T + 1;
        if (n_new < 0) n_new = 0;
    }
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
    LMP_FORWARD(lmp_state_create_kv(&s, &m, (int)ctx, o.kv, pool, d));
    if (o.logits) {
        plog = malloc((size_t)T * (size_t)c->vocab * sizeof(float));
        LMP_FAIL_IF(!plog, LMP_ERR_NOMEM, "out of memory for %ld x %d logits", T, c->vocab);
    }
    if (o.prompt || o.sampling) {
        LMP_FORWARD(lmp_sampler_create(&sampler, &o.sp, c->vocab, d));
        for (long i = 0; i < T; i++) lmp_sampler_accept(sampler, ids[i]);
        sc.s = sampler;
    }
    lmp_gen g = {.n_new = (int)n_new,
                 .choose = sampler ? choose_sample : lmp_choose_greedy,
                 .choose_ctx = &sc,
                 .on_token = print_token,
                 .token_ctx = &pc,
                 .prompt_logits = plog};
    lmp_gen_stats st;
    rc = lmp_generate(s, ids, (int)T, &g, &st, d);
    if (rc == LMP_OK) rc = pc.rc;
    if (stream) {
        const char *t;
        size_t n;
        if (rc == LMP_OK) rc = lmp_tok_stream_finish(stream, &t, &n, d);
        if (rc == LMP_OK) fwrite(t, 1, n, stdout);
        if (isatty(1)) printf("\n"); /* piped output is the exact text */
    } else if (pc.count || (rc == LMP_OK && o.n_new >= 0)) {
        printf("\n");
    }
    if (rc) goto out;
    if (o.logits) LMP_FORWARD(write_logits(o.logits, plog, (size_t)T * c->vocab, d));
    if (o.stats) print_stats(&o, load_ms, &st, lmp_pool_threads(pool), lmp_state_kv(s));
out:
    if (rc != LMP_OK) exit_code = lmp_cli_fail(PROG, d);
    free(plog);
    lmp_sampler_close(sampler);
    lmp_tok_stream_close(stream);
    lmp_tok_close(tok);
    lmp_state_close(s);
    lmp_pool_close(pool);
    lmp_model_close(&m);
    free(ids);
    return exit_code;
}
