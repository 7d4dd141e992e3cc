/* Timing helpers shared by the bench programs (bench/bench_*.c). */
#ifndef LMP_BENCH_UTIL_H
#define LMP_BENCH_UTIL_H

#include <time.h>

/* Seconds on the given clock. */
static inline double bench_clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wall clock (monotonic), CPU time of the whole process (all threads), CPU
 * time of the calling thread. */
static inline double bench_wall_s(void) { return bench_clock_s(CLOCK_MONOTONIC); }
static inline double bench_process_cpu_s(void) { return bench_clock_s(CLOCK_PROCESS_CPUTIME_ID); }
static inline double bench_thread_cpu_s(void) { return bench_clock_s(CLOCK_THREAD_CPUTIME_ID); }

/* qsort comparator for doubles (medians). */
static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#endif
