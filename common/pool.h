/* A fixed pool of worker threads for data-parallel loops.
 *
 * lmp_pool_run(p, fn, ctx, n) calls fn(ctx, i, tid) once for every task i in
 * [0, n), spread over the pool's threads (the caller's thread takes part as
 * tid 0), and returns when all have finished. Results must not depend on
 * which thread runs which task (determinism contract of the project).
 * A pool of 1 thread runs everything inline. Not reentrant: one run at a time.
 */
#ifndef LMP_POOL_H
#define LMP_POOL_H

#include "common/status.h"

typedef struct lmp_pool lmp_pool;
typedef void (*lmp_task_fn)(void *ctx, int task, int tid);

/* n_threads <= 0: number of online CPUs. */
lmp_status lmp_pool_create(lmp_pool **out, int n_threads, lmp_diag *d);
void lmp_pool_run(lmp_pool *p, lmp_task_fn fn, void *ctx, int n_tasks);
int lmp_pool_threads(const lmp_pool *p);

/* Gang run (one parallel region instead of many short runs): calls
 * fn(ctx, tid, nthreads) exactly once on every pool thread at the same time
 * (tid 0 is the caller; nthreads = lmp_pool_threads(p)), and returns when all
 * have returned. Inside, the threads may synchronise with
 * lmp_pool_barrier(p): every thread of the gang must call it the same
 * number of times. p NULL or 1 thread: fn(ctx, 0, 1) inline, barriers are
 * no-ops. Not reentrant, and not to be mixed with lmp_pool_run inside fn. */
typedef void (*lmp_gang_fn)(void *ctx, int tid, int nthreads);
void lmp_pool_gang(lmp_pool *p, lmp_gang_fn fn, void *ctx);
/* Wait until every thread of the current gang run has arrived. All writes
 * made before the barrier by any thread are visible after it. */
void lmp_pool_barrier(lmp_pool *p);
void lmp_pool_close(lmp_pool *p); /* NULL: no-op */

/* Online CPUs (>= 1). */
int lmp_cpu_count(void);

#endif
