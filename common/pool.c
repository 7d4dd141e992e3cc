/* Thread pool: a fixed set of workers, dynamic hand-out of task indices
 * through one atomic counter, plus gang runs (every thread runs the same
 * function once) with a barrier, for callers that fuse many short parallel
 * loops into one region (runtime/forward.c).
 *
 * Waiting (for the next run, for the last worker, at a barrier): a decode
 * step has ~160 short parallel phases (each matmul of a 360M model is
 * 10-100 us). Waking a sleeping thread through a mutex + condition variable
 * costs a futex syscall and a scheduler wake-up, on both sides. So a waiter
 * first spins (pause) for an adaptive budget, then sleeps on the condition
 * variable. The budget adapts to the machine: a wait that ended while
 * spinning doubles it (up to LMP_POOL_SPIN_US, default DEFAULT_SPIN_US), a
 * wait that ran out quarters it (down to SPIN_MIN_NS). On an idle machine
 * the threads arrive within microseconds of each other, so they spin and
 * never sleep between phases; on a loaded one the other thread is often
 * descheduled, spins run out, and the budget falls to ~2 us, so a waiter
 * sleeps almost at once (measured: fixed 200 us spinning was 2-4x slower
 * at load 6-10, and spinning with sched_yield() also lost there, because
 * a yielding thread gives up its place for a whole time slice while a
 * sleeping one is woken, with priority, when the work arrives;
 * docs/PERFORMANCE.md). LMP_POOL_SPIN_US=0: sleep at once (the old
 * default).
 * The mutex protects only the sleep / wake-up decision, so no wake-up is
 * lost: the generation is bumped and the last worker signals under it.
 */
#include "common/pool.h"

#include <pthread.h>
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
    long spin_ns;              /* largest spinning budget before sleeping */
    atomic_long spin_cur;      /* current (adaptive) budget, <= spin_ns */
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

#define DEFAULT_SPIN_US 50
#define SPIN_MIN_NS 2000L

/* Adapt the shared budget: a wait that ended while spinning doubles it (up
 * to spin_ns), one that ran out quarters it (down to SPIN_MIN_NS). */
static void spin_adapt(lmp_pool *p, long budget, int ok)
{
    long b = ok ? 2 * budget : budget / 4;
    if (b < SPIN_MIN_NS) b = SPIN_MIN_NS;
    if (b > p->spin_ns) b = p->spin_ns;
    atomic_store_explicit(&p->spin_cur, b, memory_order_relaxed);
}

/* Spin (pause) until cond holds or the current budget is spent; the caller
 * then rechecks cond and sleeps if needed. */
#define SPIN_UNTIL(p, cond)                                                                     \
    do {                                                                                        \
        long b_ = atomic_load_explicit(&(p)->spin_cur, memory_order_relaxed);                   \
        if ((p)->spin_ns > 0 && !(cond)) {                                                      \
            long t0_ = now_ns();                                                                \
            int ok_ = 0;                                                                        \
            for (unsigned k_ = 1;; k_++) {                                                      \
                if (cond) {                                                                     \
                    ok_ = 1;                                                                    \
                    break;                                                                      \
                }                                                                               \
                CPU_RELAX();                                                                    \
                if ((k_ & 15) == 0 && now_ns() - t0_ > b_) break;                               \
            }                                                                                   \
            spin_adapt((p), b_, ok_);                                                           \
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
    atomic_init(&p->spin_cur, p->spin_ns);
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
