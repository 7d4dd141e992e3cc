/* Memory read bandwidth probe (bench/80-perf.sh): the ceiling a decode step,
 * which streams every weight once per token, is measured against.
 *
 * bench_bw [--mb N] [--threads T] [--reps R] [--streams S]
 * Sums a buffer of N MiB (default 512, far beyond the last-level cache)
 * with T threads (default 1), each reading its own contiguous slice with
 * 256-bit loads (AVX2 when the CPU has it, else plain 64-bit loads), R
 * times (default 7). Prints one table row with the median GB/s (1e9
 * bytes/s) and the min..max spread of the repetitions.
 * --streams S (AVX2 only): each thread reads its slice as S interleaved
 * sub-streams with software prefetch 1 KiB ahead on a huge-page buffer,
 * the most this machine was seen to read (S = 8: +10 % over one plain
 * stream at 2 threads, +15 % at 1): the honest ceiling for "fraction of
 * bandwidth used".
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "bench/bench_util.h"
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint8_t *p, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t o[4];
    _mm256_storeu_si256((__m256i *)o, s);
    return o[0] + o[1] + o[2] + o[3];
}

/* S interleaved sub-streams of n / S bytes, 128 bytes of each per step,
 * each prefetched 1 KiB ahead. */
__attribute__((target("avx2"))) static uint64_t sum_streams(const uint8_t *p, size_t n, int S)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    const size_t per = n / (size_t)S & ~(size_t)127;
    for (size_t i = 0; i + 128 <= per; i += 128)
        for (int k = 0; k < S; k++) {
            const uint8_t *q = p + (size_t)k * per + i;
            _mm_prefetch((const char *)q + 1024, _MM_HINT_T0);
            _mm_prefetch((const char *)q + 1024 + 64, _MM_HINT_T0);
            a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)q));
            a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(q + 32)));
            a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(q + 64)));
            a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(q + 96)));
        }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t o[4];
    _mm256_storeu_si256((__m256i *)o, s);
    return o[0] + o[1] + o[2] + o[3];
}
#endif

static uint64_t sum_plain(const uint8_t *p, size_t n)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        uint64_t v[4];
        memcpy(v, p + i, 32);
        s0 += v[0];
        s1 += v[1];
        s2 += v[2];
        s3 += v[3];
    }
    return s0 + s1 + s2 + s3;
}

typedef struct {
    const uint8_t *p;
    size_t n;
    int avx2, streams;
    uint64_t out;
} slice;

static void *run_slice(void *arg)
{
    slice *s = arg;
#if defined(__x86_64__) || defined(__i386__)
    if (s->avx2 && s->streams > 1) {
        s->out = sum_streams(s->p, s->n, s->streams);
        return NULL;
    }
    if (s->avx2) {
        s->out = sum_avx2(s->p, s->n);
        return NULL;
    }
#endif
    s->out = sum_plain(s->p, s->n);
    return NULL;
}

int main(int argc, char **argv)
{
    long mb = 512;
    int threads = 1, reps = 7, streams = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = atol(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--streams") && i + 1 < argc) streams = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_bw [--mb N] [--threads T] [--reps R] [--streams S]\n");
            return 2;
        }
    }
    if (mb < 1 || threads < 1 || threads > 64 || reps < 1 || reps > 64 || streams < 1 ||
        streams > 64) {
        fprintf(stderr, "usage: bench_bw [--mb N] [--threads T] [--reps R] [--streams S]\n");
        return 2;
    }
    size_t n = (size_t)mb << 20;
    /* 2 MiB aligned, transparent huge pages requested (a hint) */
    const size_t huge = (size_t)2 << 20;
    uint8_t *buf = aligned_alloc(huge, (n + huge - 1) / huge * huge); /* size: a multiple */
#ifdef MADV_HUGEPAGE
    if (buf) (void)madvise(buf, n, MADV_HUGEPAGE);
#endif
    if (!buf) {
        fprintf(stderr, "bench_bw: cannot allocate %ld MiB\n", mb);
        return 1;
    }
    memset(buf, 1, n); /* fault every page in before timing */
    int avx2 = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    avx2 = __builtin_cpu_supports("avx2");
#endif
    size_t per = (n / (size_t)threads) & ~(size_t)127;
    slice sl[64];
    pthread_t th[64];
    double gbs[64], cgbs[64];
    uint64_t check = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_wall_s(), c0 = bench_process_cpu_s();
        for (int i = 0; i < threads; i++) {
            sl[i] = (slice){buf + (size_t)i * per, per, avx2, streams, 0};
            if (i > 0 && pthread_create(&th[i], NULL, run_slice, &sl[i]) != 0) {
                fprintf(stderr, "bench_bw: cannot start a thread\n");
                return 1;
            }
        }
        run_slice(&sl[0]);
        for (int i = 1; i < threads; i++) pthread_join(th[i], NULL);
        double dt = bench_wall_s() - t0, dc = bench_process_cpu_s() - c0;
        for (int i = 0; i < threads; i++) check += sl[i].out;
        gbs[r] = (double)per * threads / dt / 1e9;
        cgbs[r] = (double)per * threads / (dc / threads) / 1e9;
    }
    qsort(gbs, (size_t)reps, sizeof *gbs, bench_cmp_double);
    qsort(cgbs, (size_t)reps, sizeof *cgbs, bench_cmp_double);
    char how[64] = "";
    if (streams > 1) snprintf(how, sizeof how, ", %d prefetched streams", streams);
    printf("| memory read bandwidth%s, %d thread(s) | %.1f | GB/s | wall clock, median of %d passes "
           "over %ld MiB (spread %.1f..%.1f)%s |\n",
           how, threads, gbs[reps / 2], reps, mb, gbs[0], gbs[reps - 1], check == 1 ? " " : "");
    printf("| memory read bandwidth by CPU time%s, %d thread(s) | %.1f | GB/s | bytes / (process CPU "
           "time / threads): the rate while on a core (spread %.1f..%.1f) |\n",
           how, threads, cgbs[reps / 2], cgbs[0], cgbs[reps - 1]);
    free(buf);
    return 0;
}
