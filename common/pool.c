/* Thread pool: a fixed set of workers, dynamic hand-out of task indices
 * through one atomic counter.
 *
 * Hand-off: a decode step runs ~230 short parallel loops (each matmul of
 * a 360M model is 10-100 us). Waking a sleeping worker through a mutex +
 * condition variable costs a futex syscall and a scheduler wake-up at every
 * loop, on both sides. With LMP_POOL_SPIN_US=N in the environment, workers
 * first wait for the next loop for up to N microseconds (256 pause
 * instructions, then sched_yield() so a waiting thread hands its core to
 * any runnable thread), and the caller waits for the last worker the same
 * way, before falling back to the condition variables. The default is 0
 * (sleep at once): on the shared development VM (load 6-10 on 2 cores)
 * spinning never helped and sometimes cost 2-4x in decode (a spinning
 * thread spends its fair share of CPU while the other one waits for a
 * core; docs/PERFORMANCE.md). On a dedicated machine try 200.
 * The mutex protects only the sleep / wake-up decision, so no wake-up is
 * lost: the generation is bumped and the last worker signals under it.
 */
#include "common/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

struct lmp_pool {
    int n;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    long spin_ns;              /* spinning budget before sleeping */
    /* written by the caller before the generation bump (release), read by
     * workers after seeing it (acquire) */
    lmp_task_fn fn;
    void *ctx;
    int n_tasks;
    /* separate cache lines: the hot counters are written by all threads */
    _Alignas(64) atomic_ulong gen; /* bumped for every run */
    atomic_int quit;
    _Alignas(64) atomic_int next;
    _Alignas(64) atomic_int active; /* workers still busy in the current run */
};

typedef struct {
    lmp_pool *p;
    int tid;
} worker_arg;

int lmp_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void drain(lmp_pool *p, int tid)
{
    const int n = p->n_tasks;
    lmp_task_fn fn = p->fn;
    void *ctx = p->ctx;
    for (;;) {
        int i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= n) break;
        fn(ctx, i, tid);
    }
}

/* Spin until pred() holds or the budget is spent; returns pred(). */
#define SPIN_UNTIL(p, cond)                                                                     \
    do {                                                                                        \
        if ((p)->spin_ns > 0 && !(cond)) {                                                      \
            long t0_ = now_ns();                                                                \
            for (unsigned k_ = 1; !(cond); k_++) {                                              \
                if (k_ < 256) {                                                                 \
                    CPU_RELAX();                                                                \
                    continue;                                                                   \
                }                                                                               \
                sched_yield();                                                                  \
                if (now_ns() - t0_ > (p)->spin_ns) break;                                       \
            }                                                                                   \
        }                                                                                       \
    } while (0)

static void *worker(void *arg)
{
    worker_arg *wa = arg;
    lmp_pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    unsigned long seen = 0;
    for (;;) {
        SPIN_UNTIL(p, atomic_load_explicit(&p->gen, memory_order_acquire) != seen ||
                          atomic_load_explicit(&p->quit, memory_order_relaxed));
        if (atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
            !atomic_load(&p->quit)) {
            pthread_mutex_lock(&p->mu);
            while (!atomic_load(&p->quit) && atomic_load(&p->gen) == seen)
                pthread_cond_wait(&p->go, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        drain(p, tid);
        if (atomic_fetch_sub_explicit(&p->active, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

static long spin_budget_ns(void)
{
    const char *e = getenv("LMP_POOL_SPIN_US");
    long us = 0;
    if (e && *e) {
        char *end;
        long v = strtol(e, &end, 10);
        if (*end == '\0' && v >= 0 && v <= 1000000) us = v;
    }
    return us * 1000L;
}

lmp_status lmp_pool_create(lmp_pool **out, int n_threads, lmp_diag *d)
{
    *out = NULL;
    if (n_threads <= 0) n_threads = lmp_cpu_count();
    if (n_threads > 256) return lmp_fail(d, LMP_ERR_ARG, "thread count %d too large (max 256)", n_threads);
    lmp_pool *p = aligned_alloc(64, (sizeof *p + 63) & ~(size_t)63);
    if (!p) return lmp_fail(d, LMP_ERR_NOMEM, "out of memory creating thread pool");
    p->n = n_threads;
    p->th = NULL;
    p->spin_ns = spin_budget_ns();
    p->fn = NULL;
    p->ctx = NULL;
    p->n_tasks = 0;
    atomic_init(&p->gen, 0);
    atomic_init(&p->quit, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->active, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->th = calloc((size_t)n_threads - 1, sizeof *p->th);
        if (!p->th) {
            lmp_pool_close(p);
            return lmp_fail(d, LMP_ERR_NOMEM, "out of memory creating thread pool");
        }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (wa) {
                wa->p = p;
                wa->tid = i;
            }
            if (!wa || pthread_create(&p->th[i - 1], NULL, worker, wa) != 0) {
                free(wa);
                p->n = i; /* only join what started */
                lmp_pool_close(p);
                return lmp_fail(d, LMP_ERR_NOMEM, "cannot start thread %d", i);
            }
        }
    }
    *out = p;
    return LMP_OK;
}

void lmp_pool_run(lmp_pool *p, lmp_task_fn fn, void *ctx, int n_tasks)
{
    if (n_tasks <= 0) return;
    if (!p || p->n == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; i++) fn(ctx, i, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->active, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    drain(p, 0);
    SPIN_UNTIL(p, atomic_load_explicit(&p->active, memory_order_acquire) == 0);
    if (atomic_load_explicit(&p->active, memory_order_acquire) != 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->active) != 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

int lmp_pool_threads(const lmp_pool *p)
{
    return p ? p->n : 1;
}

void lmp_pool_close(lmp_pool *p)
{
    if (!p) return;
    if (p->th) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->quit, 1);
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
        for (int i = 1; i < p->n; i++) pthread_join(p->th[i - 1], NULL);
        free(p->th);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p);
}
