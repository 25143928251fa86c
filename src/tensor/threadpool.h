/* A persistent pool of worker threads. tp_run() wakes every worker, runs
 * fn(ctx, ith, nth) on each (the caller takes ith = 0) and returns when all
 * are done. Workers spin briefly before sleeping, so the many small parallel
 * sections of one decode step do not pay a futex round trip each. */
#ifndef LETHE_THREADPOOL_H
#define LETHE_THREADPOOL_H

typedef struct threadpool threadpool;
typedef void (*tp_task_fn)(void *ctx, int ith, int nth);

/* n_threads <= 0: all online cores. Returns NULL on failure. */
threadpool *tp_create(int n_threads);
void tp_free(threadpool *tp);
int tp_n_threads(const threadpool *tp);
/* Runs fn on all threads. tp may be NULL: then fn(ctx, 0, 1) runs inline.
 * Not reentrant: fn must not call tp_run on the same pool. */
void tp_run(threadpool *tp, tp_task_fn fn, void *ctx);
/* For work that fn claims piece by piece from a shared counter, so that any
 * subset of the threads finishes all of it: runs fn on the caller and on the
 * workers that arrive before the caller's own fn returns, and waits only for
 * those. ith is unique among the participants (for per-thread scratch), nth
 * the pool size. On a loaded host a descheduled worker then costs nothing
 * instead of a scheduler time slice per run. */
void tp_run_dynamic(threadpool *tp, tp_task_fn fn, void *ctx);
/* Splits [0, n) into nth nearly equal parts; part ith is [*lo, *hi). */
void tp_split(long n, int ith, int nth, long *lo, long *hi);
/* Number of online cores. */
int tp_default_threads(void);

#endif
