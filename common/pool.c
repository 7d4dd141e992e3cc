/* Thread pool: a fixed set of workers, dynamic hand-out of task indices
 * through one atomic counter, plus gang runs (every thread runs the same
 * function once) with a barrier, for callers that fuse many short parallel
 * loops into one region (runtime/forward.c).
 *
 * Waiting (for the next run, for the last worker, at a barrier): a decode
 * step has ~160-230 short parallel phases (each matmul of a 360M model is
 * 10-100 us). Waking a sleeping thread through a mutex + condition variable
 * costs a futex syscall and a scheduler wake-up, on both sides. So a waiter
 * first spins briefly (SPIN_PAUSES pause instructions, ~2-4 us: enough when
 * the other thread is on its core and about to arrive), then calls
 * sched_yield() in a loop until the spin budget has passed, then sleeps on
 * the condition variable. The yield matters on a loaded machine: a thread
 * that only pause-spins burns its fair share of the CPU while the thread
 * with the work waits for a core (measured 2-4x slower decode at load 6-10,
 * docs/PERFORMANCE.md); a yielding waiter hands its core to any runnable
 * thread at once, and as soon as one yield takes long (another thread ran)
 * it stops spinning and sleeps. So spinning costs CPU only while the cores
 * are otherwise idle. Budget: LMP_POOL_SPIN_US=N in the environment (0:
 * sleep at once, the old default), else DEFAULT_SPIN_US.
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
    lmp_gang_fn gang;               /* non-NULL: the current run is a gang run */
    pthread_cond_t bar_cv;          /* barrier sleepers (under mu) */
    _Alignas(64) atomic_int bar_count; /* threads arrived at the current barrier */
    _Alignas(64) atomic_uint bar_gen;  /* bumped when a barrier opens */
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

#define DEFAULT_SPIN_US 100
#define SPIN_PAUSES 64
#define BUSY_YIELD_NS 20000L

/* Spin until cond holds or the budget is spent (the caller then rechecks
 * cond and sleeps if needed). A sched_yield() that took longer than
 * BUSY_YIELD_NS means another thread got the core: the machine is busy, so
 * stop spinning and sleep (a futex wake-up is then the faster way back,
 * and the core is better used by whoever wanted it). */
#define SPIN_UNTIL(p, cond)                                                                     \
    do {                                                                                        \
        if ((p)->spin_ns > 0 && !(cond)) {                                                      \
            long t0_ = 0, tp_ = 0;                                                              \
            for (unsigned k_ = 1; !(cond); k_++) {                                              \
                if (k_ < SPIN_PAUSES) {                                                         \
                    CPU_RELAX();                                                                \
                    continue;                                                                   \
                }                                                                               \
                if (k_ == SPIN_PAUSES) t0_ = tp_ = now_ns();                                    \
                sched_yield();                                                                  \
                long t_ = now_ns();                                                             \
                if (t_ - t0_ > (p)->spin_ns || t_ - tp_ > BUSY_YIELD_NS) break;                 \
                tp_ = t_;                                                                       \
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
        if (p->gang)
            p->gang(p->ctx, tid, p->n);
        else
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
    long us = DEFAULT_SPIN_US;
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
    p->gang = NULL;
    atomic_init(&p->bar_count, 0);
    atomic_init(&p->bar_gen, 0);
    pthread_cond_init(&p->bar_cv, NULL);
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

/* Publish the run (fn/ctx/gang written by the caller) to the workers,
 * take part as tid 0, wait for the last worker. */
static void start_and_join(lmp_pool *p, int gang)
{
    atomic_store_explicit(&p->active, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    if (gang)
        p->gang(p->ctx, 0, p->n);
    else
        drain(p, 0);
    SPIN_UNTIL(p, atomic_load_explicit(&p->active, memory_order_acquire) == 0);
    if (atomic_load_explicit(&p->active, memory_order_acquire) != 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->active) != 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
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
    p->gang = NULL;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    start_and_join(p, 0);
}

void lmp_pool_gang(lmp_pool *p, lmp_gang_fn fn, void *ctx)
{
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = NULL;
    p->ctx = ctx;
    p->n_tasks = 0;
    p->gang = fn;
    start_and_join(p, 1);
}

void lmp_pool_barrier(lmp_pool *p)
{
    if (!p || p->n == 1) return;
    /* read before arriving: the generation cannot move until we arrive */
    unsigned g = atomic_load_explicit(&p->bar_gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&p->bar_count, 1, memory_order_acq_rel) == p->n - 1) {
        /* last to arrive: nobody can arrive at the next barrier before the
         * generation moves, so the count can be reset first */
        atomic_store_explicit(&p->bar_count, 0, memory_order_relaxed);
        pthread_mutex_lock(&p->mu);
        atomic_fetch_add_explicit(&p->bar_gen, 1, memory_order_release);
        pthread_cond_broadcast(&p->bar_cv);
        pthread_mutex_unlock(&p->mu);
        return;
    }
    SPIN_UNTIL(p, atomic_load_explicit(&p->bar_gen, memory_order_acquire) != g);
    if (atomic_load_explicit(&p->bar_gen, memory_order_acquire) == g) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->bar_gen) == g) pthread_cond_wait(&p->bar_cv, &p->mu);
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
    pthread_cond_destroy(&p->bar_cv);
    free(p);
}
