/* bench_open DIR [RUNS]: timings for the foundation layer on a model folder.
 *   1. open + validate: lmp_config_load + lmp_st_open + lmp_config_check,
 *      median of RUNS (default 21); the page faults it causes show it does
 *      not read tensor data (the header and config are a few pages).
 *   2. streaming conversion of every tensor to f32 (one thread, 64 KB
 *      chunks), output
 *      bytes per second, after a warm-up pass so the data is in page cache;
 *      every converted element is summed so the work cannot be skipped.
 * Prints rows of the bench table: | name | value | unit | notes |. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/fileio.h"
#include "common/status.h"
#include "formats/config.h"
#include "formats/safetensors.h"

#include "bench/bench_util.h"

static long faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

static int die(const lmp_diag *d)
{
    fprintf(stderr, "bench_open: %s\n", d->msg);
    return 1;
}

/* Convert every tensor in chunks of CHUNK elements into a small (L2-sized)
 * buffer, as a streaming pass with bounded memory does; returns output
 * bytes, *sum for the side effect. */
#define CHUNK 16384
static double convert_all(const lmp_st *st, float *buf, double *sum, lmp_diag *d)
{
    double bytes = 0, s = 0;
    for (size_t i = 0; i < lmp_st_count(st); i++) {
        const lmp_st_tensor *t = lmp_st_at(st, i);
        size_t esz = lmp_dtype_size(t->dtype);
        for (uint64_t off = 0; off < t->nelem; off += CHUNK) {
            size_t n = t->nelem - off < CHUNK ? (size_t)(t->nelem - off) : CHUNK;
            if (lmp_to_f32(t->dtype, t->data + off * esz, buf, n) != 0)
                return lmp_fail(d, LMP_ERR_UNSUPPORTED, "%s: not a float tensor", t->name), -1;
            /* 8 independent partial sums: the check must not be the bottleneck */
            double part[8] = {0};
            size_t k = 0;
            for (; k + 8 <= n; k += 8)
                for (int j = 0; j < 8; j++) part[j] += buf[k + j];
            for (; k < n; k++) part[0] += buf[k];
            for (int j = 0; j < 8; j++) s += part[j];
        }
        bytes += (double)t->nelem * 4;
    }
    *sum = s;
    return bytes;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_open MODEL_DIR [RUNS]\n");
        return 2;
    }
    const char *dir = argv[1];
    int runs = argc > 2 ? atoi(argv[2]) : 21;
    if (runs < 1 || runs > 1000) runs = 21;
    lmp_diag d;
    lmp_diag_clear(&d);
    double *t = calloc((size_t)runs, sizeof *t);
    long pf_max = 0;
    size_t n_tensors = 0;
    double file_bytes = 0;
    for (int r = 0; r < runs; r++) {
        lmp_config c;
        lmp_st *st = NULL;
        long f0 = faults();
        double t0 = bench_wall_s();
        if (lmp_config_load(&c, dir, &d) != LMP_OK || lmp_st_open(&st, dir, &d) != LMP_OK ||
            lmp_config_check(&c, st, &d) != LMP_OK)
            return die(&d);
        t[r] = bench_wall_s() - t0;
        long pf = faults() - f0;
        if (pf > pf_max) pf_max = pf;
        n_tensors = lmp_st_count(st);
        file_bytes = 0;
        for (size_t i = 0; i < n_tensors; i++) file_bytes += (double)lmp_st_at(st, i)->nbytes;
        lmp_st_close(st);
    }
    qsort(t, (size_t)runs, sizeof *t, bench_cmp_double);
    printf("| open+validate %s (%zu tensors, %.0f MB) | %.2f | ms | median of %d runs "
           "(config.json + safetensors header + config check); max %ld page faults per run, "
           "so tensor data is not read |\n",
           lmp_path_base(dir), n_tensors, file_bytes / 1e6, t[runs / 2] * 1e3, runs, pf_max);
    free(t);

    lmp_st *st = NULL;
    if (lmp_st_open(&st, dir, &d) != LMP_OK) return die(&d);
    float *buf = malloc(CHUNK * sizeof *buf);
    double sum = 0, best = 1e30, bytes = 0;
    if (convert_all(st, buf, &sum, &d) < 0) return die(&d); /* warm-up: page cache */
    for (int r = 0; r < 3; r++) {
        double t0 = bench_wall_s();
        bytes = convert_all(st, buf, &sum, &d);
        if (bytes < 0) return die(&d);
        double dt = bench_wall_s() - t0;
        if (dt < best) best = dt;
    }
    const char *dt_name = lmp_st_count(st) ? lmp_dtype_name(lmp_st_at(st, 0)->dtype) : "?";
    printf("| stream-convert %s -> f32 | %.0f | MB/s | output bytes/s, best of 3 passes over %.0f MB "
           "out, 1 thread, 64 KB chunks, data in page cache, every element summed (checksum %.3g) |\n",
           dt_name, bytes / best / 1e6, bytes / 1e6, sum);
    free(buf);
    lmp_st_close(st);
    return 0;
}
