/* llbench: llama.cpp's speed through its C API, the way llama-bench drives
 * it, on node-llama-cpp's prebuilt libraries (bench/llamacpp/run.sh).
 *
 *   usage: llbench LIBDIR MODEL.gguf [--threads N] [--reps R] [--decode N]
 *                  [--prompt P]... [--ctx N] [--batch N] [--fa on|off|auto]
 *          llbench LIBDIR MODEL.gguf --greedy "ID ID ..." --n N
 * LIBDIR: node-llama-cpp's bins/linux-x64 folder; its ggml-cpu variants
 * are loaded with ggml_backend_load_all_from_path (the loader picks the
 * best one this CPU supports, as in node-llama-cpp and llama-bench).
 *
 * Why this exists beside bench.mjs: node-llama-cpp never attaches a ggml
 * threadpool to its contexts, so this non-OpenMP build makes a new one
 * (threads created and joined) for every llama_decode; llama-bench, the
 * source of the numbers, creates one per test
 * (ggml_threadpool_new from the CPU backend's registry) and attaches it
 * with llama_attach_threadpool. llbench does the same, so it measures what
 * llama.cpp itself does with these binaries. Compiled against llama.h /
 * ggml headers of the same commit, taken from the llama.cpp source bundle
 * inside the node-llama-cpp package (run.sh extracts the headers only).
 *
 * Workload and output: those of bench/bench_perf.c and bench.mjs (prompt
 * ids (i * 7919 + 13) % vocab; per prompt length P, R repetitions of the
 * P-token prompt in one llama_decode with the last token's logits and an
 * argmax (= time to first token and prefill rate), followed for the first
 * P by --decode greedy single-token steps; KV cache cleared between
 * repetitions; JSON lines with median/min/max of wall-clock and
 * process-CPU rates; last line peak RSS (ru_maxrss) and "other_cpu", the
 * average number of cores other processes kept busy meanwhile). No warm-up run,
 * like bench_perf (the first repetition pays for cold pages; the median
 * of 3 does not). --greedy prints {"greedy": [N ids]} generated after the
 * given prompt (bench/llamacpp/check.sh: proves the headers match the
 * binary's ABI and the model is computed right).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "llama.h"

#define MAXR 32
#define MAXP 8

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* "name": {"med": .., "min": .., "max": ..} of units / v[i] (rate) or of
 * 1e3 * v[i] (units < 0: milliseconds). */
static void put_stat(const char *name, double units, const double *v, int n, const char *sep)
{
    double r[MAXR];
    for (int i = 0; i < n; i++) r[i] = units < 0 ? 1e3 * v[i] : units / v[i];
    qsort(r, (size_t)n, sizeof *r, cmp_double);
    printf("\"%s\": {\"med\": %.2f, \"min\": %.2f, \"max\": %.2f}%s", name, r[n / 2], r[0],
           r[n - 1], sep);
}

static void quiet_log(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

/* Base name of the ggml-cpu variant mapped into this process, "?" if none. */
static void cpu_variant(char *out, size_t cap)
{
    char line[4096];
    FILE *f = fopen("/proc/self/maps", "r");
    snprintf(out, cap, "?");
    while (f && fgets(line, sizeof line, f)) {
        char *p = strstr(line, "libggml-cpu-");
        if (p) {
            p[strcspn(p, "\n")] = 0;
            snprintf(out, cap, "%s", p);
            break;
        }
    }
    if (f) fclose(f);
}

/* Busy and total seconds of all CPUs from the first line of /proc/stat
 * (USER_HZ = 100): with this process's CPU time, how much other processes
 * used the machine during the timed runs. */
static void machine_s(double *busy, double *total)
{
    unsigned long long f[8] = {0};
    FILE *p = fopen("/proc/stat", "r");
    if (!p || fscanf(p, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &f[0], &f[1], &f[2], &f[3],
                     &f[4], &f[5], &f[6], &f[7]) != 8)
        memset(f, 0, sizeof f);
    if (p) fclose(p);
    unsigned long long t = 0;
    for (int i = 0; i < 8; i++) t += f[i];
    *total = (double)t / 100.0;
    *busy = (double)(t - f[3] - f[4]) / 100.0;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* One llama_decode of n tokens at the end of sequence 0; greedy next id. */
static int step(struct llama_context *ctx, llama_token *toks, int n, int vocab)
{
    if (llama_decode(ctx, llama_batch_get_one(toks, n)) != 0) {
        fprintf(stderr, "llbench: llama_decode failed\n");
        exit(1);
    }
    return argmax(llama_get_logits_ith(ctx, -1), vocab);
}

static void usage(void)
{
    fprintf(stderr, "usage: llbench LIBDIR MODEL.gguf [--threads N] [--reps R] [--decode N] "
                    "[--prompt P]... [--ctx N] [--batch N] [--fa on|off|auto]\n"
                    "       llbench LIBDIR MODEL.gguf --greedy \"ID ID ...\" --n N [--ctx N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 3) usage();
    const char *libdir = argv[1], *path = argv[2];
    const char *greedy = NULL;
    int threads = 1, reps = 3, ndec = 128, nctx = 2048, nbatch = 512, np = 0, prompts[MAXP];
    enum llama_flash_attn_type fa = LLAMA_FLASH_ATTN_TYPE_AUTO;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        i++;
        if (!strcmp(a, "--greedy")) {
            greedy = v;
            continue;
        }
        if (!strcmp(a, "--fa")) {
            fa = !strcmp(v, "on")    ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                 : !strcmp(v, "off") ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                     : LLAMA_FLASH_ATTN_TYPE_AUTO;
            continue;
        }
        int x = atoi(v);
        if (x < 0 || (x == 0 && strcmp(a, "--decode"))) usage();
        if (!strcmp(a, "--threads")) threads = x;
        else if (!strcmp(a, "--reps")) reps = x > MAXR ? MAXR : x;
        else if (!strcmp(a, "--decode")) ndec = x;
        else if (!strcmp(a, "--ctx")) nctx = x;
        else if (!strcmp(a, "--batch")) nbatch = x;
        else if (!strcmp(a, "--prompt") && np < MAXP) prompts[np++] = x;
        else if (!strcmp(a, "--n")) ndec = x;
        else usage();
    }
    if (np == 0) {
        prompts[0] = 16;
        prompts[1] = 128;
        prompts[2] = 512;
        np = 3;
    }

    llama_log_set(quiet_log, NULL);
    ggml_backend_load_all_from_path(libdir);
    llama_backend_init();
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu) {
        fprintf(stderr, "llbench: no CPU backend loaded from %s\n", libdir);
        return 1;
    }
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
    struct ggml_threadpool *(*tp_new)(struct ggml_threadpool_params *) =
        (struct ggml_threadpool *(*)(struct ggml_threadpool_params *))
            ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new");
    void (*tp_free)(struct ggml_threadpool *) =
        (void (*)(struct ggml_threadpool *))ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free");

    double t0 = wall_s();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) {
        fprintf(stderr, "llbench: cannot load %s\n", path);
        return 1;
    }
    double load = wall_s() - t0;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)nctx;
    cp.n_batch = cp.n_ubatch = (uint32_t)nbatch;
    cp.n_threads = cp.n_threads_batch = threads;
    cp.flash_attn_type = fa;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "llbench: cannot create a context\n");
        return 1;
    }
    struct ggml_threadpool *tp = NULL;
    if (tp_new) {
        struct ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
        tp = tp_new(&tpp);
        if (tp) llama_attach_threadpool(ctx, tp, NULL);
    }
    const int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    if (greedy) {
        llama_token pr[256];
        int n = 0;
        char *e;
        for (const char *q = greedy; n < 256; q = e) {
            long t = strtol(q, &e, 10);
            if (e == q) break;
            pr[n++] = (llama_token)t;
        }
        if (n == 0 || n + ndec > nctx) usage();
        llama_token tok = step(ctx, pr, n, V);
        printf("{\"greedy\": [");
        for (int i = 0; i < ndec; i++) {
            printf("%s%d", i ? ", " : "", tok);
            if (i + 1 < ndec) tok = step(ctx, &tok, 1, V);
        }
        printf("]}\n");
        return 0;
    }
    int maxp = 0;
    for (int i = 0; i < np; i++) maxp = prompts[i] > maxp ? prompts[i] : maxp;
    if (maxp + ndec > nctx || maxp > nbatch) {
        fprintf(stderr, "llbench: prompt %d + decode %d exceed --ctx %d or --batch %d\n", maxp, ndec,
                nctx, nbatch);
        return 2;
    }
    llama_token *ids = malloc(sizeof *ids * (size_t)(maxp + ndec));
    if (!ids) return 1;
    for (int i = 0; i < maxp + ndec; i++) ids[i] = (llama_token)(((long)i * 7919 + 13) % V);
    char variant[256];
    cpu_variant(variant, sizeof variant);
    printf("{\"model\": \"%s\", \"threads\": %d, \"reps\": %d, \"load_ms\": %.1f, "
           "\"threadpool\": %s, \"ctx\": %d, \"batch\": %d, \"flash_attention\": \"%s\", "
           "\"vocab\": %d, \"cpu_backend\": \"%s\"}\n",
           path, threads, reps, 1e3 * load, tp ? "true" : "false", nctx, nbatch,
           fa == LLAMA_FLASH_ATTN_TYPE_AUTO ? "auto" : fa == LLAMA_FLASH_ATTN_TYPE_ENABLED ? "on" : "off",
           V, variant);
    fflush(stdout);
    double busy0, total0, cpu0 = cpu_s();
    machine_s(&busy0, &total0);
    for (int k = 0; k < np; k++) {
        int P = prompts[k], dec = k == 0 ? ndec : 0;
        double pw[MAXR], pc[MAXR], dw[MAXR], dc[MAXR];
        for (int r = 0; r < reps; r++) {
            llama_memory_clear(llama_get_memory(ctx), true);
            double w0 = wall_s(), c0 = cpu_s();
            llama_token tok = step(ctx, ids, P, V);
            pw[r] = wall_s() - w0;
            pc[r] = cpu_s() - c0;
            w0 = wall_s();
            c0 = cpu_s();
            for (int i = 0; i < dec; i++) tok = step(ctx, &tok, 1, V);
            dw[r] = wall_s() - w0;
            dc[r] = cpu_s() - c0;
        }
        printf("{\"prompt\": %d, ", P);
        put_stat("prefill_tok_s", P, pw, reps, ", ");
        put_stat("prefill_tok_s_cpu", (double)P * threads, pc, reps, ", ");
        put_stat("ttft_ms", -1, pw, reps, dec > 0 ? ", " : "");
        if (dec > 0) {
            printf("\"decode_steps\": %d, ", dec);
            put_stat("decode_tok_s", dec, dw, reps, ", ");
            put_stat("decode_tok_s_cpu", (double)dec * threads, dc, reps, "");
        }
        printf("}\n");
        fflush(stdout);
    }
    double busy1, total1, cpu1 = cpu_s();
    machine_s(&busy1, &total1);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double span = (total1 - total0) / (double)(ncpu > 0 ? ncpu : 1);
    double other = span > 0 ? ((busy1 - busy0) - (cpu1 - cpu0)) / span : 0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"ctx\": %d, \"kv\": \"f16\", \"peak_rss_mb\": %.1f, \"other_cpu\": %.2f, "
           "\"cores\": %ld}\n",
           nctx, (double)ru.ru_maxrss / 1024.0, other < 0 ? 0.0 : other, ncpu);
    free(ids);
    llama_free(ctx);
    if (tp && tp_free) tp_free(tp);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
