/* End-to-end int4 inference speed of one model (bench/80-perf.sh).
 *
 * bench_perf MODEL [--threads N] [--reps R] [--decode N] [--prompt P]... [--kv T]
 * Loads MODEL once (load time), then for each prompt length P (default 16:
 * the decode case) runs R repetitions of: a P-token prompt (prefill, timed
 * alone) followed, for the first P only, by `--decode` greedy single-token
 * steps. Prints one JSON object per measurement on stdout with the median,
 * min and max over the repetitions of wall-clock and process-CPU rates
 * (CPU time = CLOCK_PROCESS_CPUTIME_ID, all threads: on a machine shared with
 * other jobs, wall time includes waiting for a core, CPU time does not).
 * Peak RSS (getrusage) is printed at the end with a KV cache sized for the
 * largest prompt + decode steps, of type T (auto, f32 or f16; default
 * auto: f16 for int4 models).
 *
 * bench_perf BUNDLE --load-reps R [--threads N] [--stream K]
 * Load-only mode (bundles): R times open the model with N loader threads
 * and make it ready to run its first token (pool + state with a 16-position
 * KV cache), then close it. One JSON object: median/min/max of the wall
 * time to ready, of the load alone and of the process CPU time of the
 * load; medians of the loader's breakdown (runtime/model.h lmp_load_stats:
 * manifest, chunks wall, thread-CPU of read/hash/decompress+raw hash/parse,
 * bind); peak RSS (one model resident at a time).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/pool.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/model.h"

#include "bench/bench_util.h"

#define MAXR 32

static void print_rate(const char *name, double units, double *v, int n, int last)
{
    double r[MAXR];
    for (int i = 0; i < n; i++) r[i] = units / v[i];
    qsort(r, (size_t)n, sizeof *r, bench_cmp_double);
    printf("\"%s\": {\"med\": %.2f, \"min\": %.2f, \"max\": %.2f}%s", name, r[n / 2], r[0],
           r[n - 1], last ? "" : ", ");
}

static void print_ms(const char *name, double *v, int n, int last)
{
    double r[MAXR];
    for (int i = 0; i < n; i++) r[i] = 1e3 * v[i];
    qsort(r, (size_t)n, sizeof *r, bench_cmp_double);
    printf("\"%s\": {\"med\": %.2f, \"min\": %.2f, \"max\": %.2f}%s", name, r[n / 2], r[0],
           r[n - 1], last ? "" : ", ");
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return v[n / 2];
}

/* Load-only mode (see the header comment). */
static int load_bench(const char *model, int threads, int reps, int stream)
{
    double ready[MAXR], load[MAXR], cpu[MAXR], man[MAXR], chk[MAXR], rd[MAXR], hs[MAXR],
        dz[MAXR], ps[MAXR], bd[MAXR];
    lmp_load_stats st = {0};
    for (int r = 0; r < reps; r++) {
        lmp_diag d = {0};
        lmp_model m;
        lmp_pool *pool = NULL;
        lmp_state *s = NULL;
        lmp_model_opts o = {0};
        o.threads = threads;
        o.stream_layers = stream;
        o.stats = &st;
        double w0 = bench_wall_s(), c0 = bench_process_cpu_s();
        if (lmp_model_open(&m, model, &o, &d) != LMP_OK) {
            fprintf(stderr, "bench_perf: %s\n", d.msg);
            return 1;
        }
        double w1 = bench_wall_s(), c1 = bench_process_cpu_s();
        if (lmp_pool_create(&pool, threads, &d) != LMP_OK ||
            lmp_state_create(&s, &m, 16, pool, &d) != LMP_OK) {
            fprintf(stderr, "bench_perf: %s\n", d.msg);
            return 1;
        }
        ready[r] = bench_wall_s() - w0;
        load[r] = w1 - w0;
        cpu[r] = c1 - c0;
        man[r] = st.manifest_ms;
        chk[r] = st.chunks_ms;
        rd[r] = st.read_cpu_ms;
        hs[r] = st.hash_cpu_ms;
        dz[r] = st.decompress_cpu_ms;
        ps[r] = st.parse_cpu_ms;
        bd[r] = st.bind_ms;
        lmp_state_close(s);
        lmp_pool_close(pool);
        lmp_model_close(&m);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"model\": \"%s\", \"threads\": %d, \"loader_threads\": %d, \"stream\": %d, "
           "\"reps\": %d, \"chunks\": %zu, \"compressed_mb\": %.1f, \"raw_mb\": %.1f, ",
           model, threads, st.threads, stream, reps, st.chunks, st.compressed_bytes / 1e6,
           st.raw_bytes / 1e6);
    print_ms("ready_ms", ready, reps, 0);
    print_ms("load_ms", load, reps, 0);
    print_ms("load_cpu_ms", cpu, reps, 0);
    /* print_ms scales by 1e3: the breakdown is already in ms */
    double chm = median(chk, reps);
    printf("\"manifest_ms\": %.2f, \"chunks_ms\": %.2f, \"read_cpu_ms\": %.2f, "
           "\"hash_cpu_ms\": %.2f, \"decompress_cpu_ms\": %.2f, \"parse_cpu_ms\": %.2f, "
           "\"bind_ms\": %.2f, \"raw_gb_s\": %.2f, \"peak_rss_mb\": %.1f}\n",
           median(man, reps), chm, median(rd, reps), median(hs, reps), median(dz, reps),
           median(ps, reps), median(bd, reps), chm > 0 ? st.raw_bytes / 1e6 / chm : 0.0,
           (double)ru.ru_maxrss / 1024.0);
    return 0;
}

/* Prints "name": {"med": .., "min": .., "max": ..} of rates units/v[i]. */
int main(int argc, char **argv)
{
    const char *model = NULL;
    int threads = 1, reps = 3, ndec = 128, np = 0, prompts[16], load_reps = 0, stream = 0;
    lmp_kv_type kv = LMP_KV_AUTO;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--load-reps") && i + 1 < argc) load_reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--stream") && i + 1 < argc) stream = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) ndec = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc && np < 16) prompts[np++] = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kv") && i + 1 < argc) bad |= lmp_kv_type_parse(argv[++i], &kv) != 0;
        else if (argv[i][0] != '-' && !model) model = argv[i];
        else {
            fprintf(stderr, "usage: bench_perf MODEL [--threads N] [--reps R] [--decode N] [--prompt P]...\n"
                            "       bench_perf BUNDLE --load-reps R [--threads N] [--stream K]\n");
            return 2;
        }
    }
    if (!model || reps < 1 || reps > MAXR || threads < 1 || bad) {
        fprintf(stderr, "usage: bench_perf MODEL [--threads N] [--reps R] [--decode N] [--prompt P]... [--kv T]\n");
        return 2;
    }
    if (load_reps > 0) return load_bench(model, threads, load_reps > MAXR ? MAXR : load_reps, stream);
    if (np == 0) prompts[np++] = 16;
    lmp_diag d = {0};
    lmp_model m;
    lmp_pool *pool = NULL;
    lmp_state *s = NULL;
    double t0 = bench_wall_s();
    if (lmp_model_open(&m, model, NULL, &d) != LMP_OK) {
        fprintf(stderr, "bench_perf: %s\n", d.msg);
        return 1;
    }
    double load = bench_wall_s() - t0;
    int maxp = 0;
    for (int i = 0; i < np; i++) maxp = prompts[i] > maxp ? prompts[i] : maxp;
    int ctx = maxp + ndec;
    if (ctx > m.cfg.max_pos) ctx = m.cfg.max_pos;
    if (lmp_pool_create(&pool, threads, &d) != LMP_OK ||
        lmp_state_create_kv(&s, &m, ctx, kv, pool, &d) != LMP_OK) {
        fprintf(stderr, "bench_perf: %s\n", d.msg);
        return 1;
    }
    int V = m.cfg.vocab;
    float *logits = malloc(sizeof(float) * (size_t)V);
    int *ids = malloc(sizeof(int) * (size_t)ctx);
    for (int i = 0; i < ctx; i++) ids[i] = (int)(((long)i * 7919 + 13) % V);
    printf("{\"model\": \"%s\", \"threads\": %d, \"reps\": %d, \"load_ms\": %.1f}\n", model, threads,
           reps, 1e3 * load);
    fflush(stdout);
    for (int k = 0; k < np; k++) {
        int P = prompts[k] > ctx ? ctx : prompts[k];
        int dec = k == 0 ? ndec : 0;
        if (P + dec > ctx) dec = ctx - P;
        double pw[MAXR], pc[MAXR], ttft[MAXR], dw[MAXR], dc[MAXR];
        for (int r = 0; r < reps; r++) {
            double w0 = bench_wall_s(), c0 = bench_process_cpu_s();
            if (lmp_forward(s, ids, P, 0, logits, LMP_LOGITS_LAST, &d) != LMP_OK) {
                fprintf(stderr, "bench_perf: %s\n", d.msg);
                return 1;
            }
            int tok = lmp_argmax(logits, V);
            pw[r] = bench_wall_s() - w0;
            pc[r] = bench_process_cpu_s() - c0;
            ttft[r] = pw[r];
            w0 = bench_wall_s();
            c0 = bench_process_cpu_s();
            for (int i = 0; i < dec; i++) {
                if (lmp_forward(s, &tok, 1, P + i, logits, LMP_LOGITS_LAST, &d) != LMP_OK) {
                    fprintf(stderr, "bench_perf: %s\n", d.msg);
                    return 1;
                }
                tok = lmp_argmax(logits, V);
            }
            dw[r] = bench_wall_s() - w0;
            dc[r] = bench_process_cpu_s() - c0;
        }
        printf("{\"prompt\": %d, ", P);
        print_rate("prefill_tok_s", P, pw, reps, 0);
        print_rate("prefill_tok_s_cpu", P * (double)threads, pc, reps, 0);
        print_ms("ttft_ms", ttft, reps, dec == 0);
        if (dec > 0) {
            printf("\"decode_steps\": %d, ", dec);
            print_rate("decode_tok_s", dec, dw, reps, 0);
            print_rate("decode_tok_s_cpu", dec * (double)threads, dc, reps, 1);
        }
        printf("}\n");
        fflush(stdout);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"ctx\": %d, \"kv\": \"%s\", \"peak_rss_mb\": %.1f}\n", ctx,
           lmp_kv_type_name(lmp_state_kv(s)), (double)ru.ru_maxrss / 1024.0);
    free(logits);
    free(ids);
    lmp_state_close(s);
    lmp_pool_close(pool);
    lmp_model_close(&m);
    return 0;
}
