#include "common/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct lmp_pool {
    int n;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long gen;     /* bumped for every run */
    int quit;
    int active;            /* workers still busy in the current run */
    lmp_task_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next;
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

static void drain(lmp_pool *p, int tid)
{
    for (;;) {
        int i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n_tasks) break;
        p->fn(p->ctx, i, tid);
    }
}

static void *worker(void *arg)
{
    worker_arg *wa = arg;
    lmp_pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        drain(p, tid);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

lmp_status lmp_pool_create(lmp_pool **out, int n_threads, lmp_diag *d)
{
    *out = NULL;
    if (n_threads <= 0) n_threads = lmp_cpu_count();
    if (n_threads > 256) return lmp_fail(d, LMP_ERR_ARG, "thread count %d too large (max 256)", n_threads);
    lmp_pool *p = calloc(1, sizeof *p);
    if (!p) return lmp_fail(d, LMP_ERR_NOMEM, "out of memory creating thread pool");
    p->n = n_threads;
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
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    p->active = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    drain(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
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
        p->quit = 1;
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
