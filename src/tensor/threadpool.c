#include "tensor/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Spin this many iterations waiting for work before blocking on the condvar. */
#define SPIN_ITERS 4000

/* The join word of a run: its generation in the high 32 bits; in the low
 * ones, for tp_run_dynamic, how many workers joined, or one of these marks. */
#define JOIN_STATIC 0xFFFFFFFFu /* tp_run: every worker runs */
#define JOIN_CLOSED 0xFFFFFFFEu /* tp_run_dynamic after the caller's part: no more joins */
#define JOIN_WORD(gen, low) (((uint64_t)(gen) << 32) | (uint32_t)(low))

struct worker {
    threadpool *tp;
    int ith;
    pthread_t thread;
};

struct threadpool {
    int n_threads;
    struct worker *workers; /* n_threads - 1 workers; the caller is thread 0 */
    tp_task_fn fn;
    void *ctx;
    atomic_uint generation; /* bumped for each run */
    atomic_int pending;     /* tp_run: workers still running the current task */
    _Atomic uint64_t join;  /* JOIN_WORD(generation, joined count or mark) */
    atomic_int finished;    /* tp_run_dynamic: joined workers done */
    atomic_bool quit;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    int sleepers;
};

int tp_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void tp_split(long n, int ith, int nth, long *lo, long *hi) {
    long base = n / nth, rem = n % nth;
    *lo = ith * base + (ith < rem ? ith : rem);
    *hi = *lo + base + (ith < rem ? 1 : 0);
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    threadpool *tp = w->tp;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&tp->generation, memory_order_acquire)) == seen &&
               !atomic_load(&tp->quit)) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&tp->mutex);
            tp->sleepers++;
            while (atomic_load(&tp->generation) == seen && !atomic_load(&tp->quit))
                pthread_cond_wait(&tp->wake, &tp->mutex);
            tp->sleepers--;
            pthread_mutex_unlock(&tp->mutex);
            spins = 0;
        }
        if (atomic_load(&tp->quit)) return NULL;
        seen = gen;
        /* The join word says how this run wants its workers; one that names
         * another generation means this worker woke too late for a dynamic
         * run that is over (a static run waits for every worker). */
        uint64_t j = atomic_load_explicit(&tp->join, memory_order_acquire);
        if ((uint32_t)(j >> 32) != gen) continue;
        if ((uint32_t)j == JOIN_STATIC) {
            tp->fn(tp->ctx, w->ith, tp->n_threads);
            atomic_fetch_sub_explicit(&tp->pending, 1, memory_order_release);
            continue;
        }
        /* dynamic: join unless the caller has closed the run; the thread
         * index is the join order, so it is unique among the participants */
        while ((uint32_t)(j >> 32) == gen && (uint32_t)j < JOIN_CLOSED) {
            if (atomic_compare_exchange_weak_explicit(&tp->join, &j, j + 1, memory_order_acq_rel,
                                                      memory_order_acquire)) {
                tp->fn(tp->ctx, (int)(uint32_t)j + 1, tp->n_threads);
                atomic_fetch_add_explicit(&tp->finished, 1, memory_order_release);
                break;
            }
        }
    }
}

threadpool *tp_create(int n_threads) {
    if (n_threads <= 0) n_threads = tp_default_threads();
    threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->n_threads = n_threads;
    atomic_init(&tp->generation, 0);
    atomic_init(&tp->pending, 0);
    atomic_init(&tp->join, JOIN_WORD(0, JOIN_CLOSED));
    atomic_init(&tp->finished, 0);
    atomic_init(&tp->quit, false);
    pthread_mutex_init(&tp->mutex, NULL);
    pthread_cond_init(&tp->wake, NULL);
    if (n_threads > 1) {
        tp->workers = calloc((size_t)n_threads - 1, sizeof *tp->workers);
        if (!tp->workers) { free(tp); return NULL; }
        for (int i = 0; i < n_threads - 1; i++) {
            tp->workers[i].tp = tp;
            tp->workers[i].ith = i + 1;
            if (pthread_create(&tp->workers[i].thread, NULL, worker_main, &tp->workers[i]) != 0) {
                tp->n_threads = i + 1; /* run with the threads we got */
                break;
            }
        }
    }
    return tp;
}

void tp_free(threadpool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->mutex);
    atomic_store(&tp->quit, true);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mutex);
    for (int i = 0; i < tp->n_threads - 1; i++) pthread_join(tp->workers[i].thread, NULL);
    pthread_mutex_destroy(&tp->mutex);
    pthread_cond_destroy(&tp->wake);
    free(tp->workers);
    free(tp);
}

int tp_n_threads(const threadpool *tp) { return tp ? tp->n_threads : 1; }

/* Publishes the run (fn, ctx and counters already set) and wakes sleepers. */
static void start(threadpool *tp, uint32_t join_low) {
    const unsigned gen = atomic_load_explicit(&tp->generation, memory_order_relaxed) + 1;
    atomic_store_explicit(&tp->join, JOIN_WORD(gen, join_low), memory_order_relaxed);
    pthread_mutex_lock(&tp->mutex);
    atomic_store_explicit(&tp->generation, gen, memory_order_release);
    if (tp->sleepers) pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mutex);
}

/* Waits until *counter reaches want, yielding now and then: when the machine
 * has fewer free cores than threads, the worker we wait for needs ours. */
static void wait_for(atomic_int *counter, int want) {
    for (int spins = 0; atomic_load_explicit(counter, memory_order_acquire) != want;) {
        if (++spins < 2048) {
            cpu_relax();
        } else {
            sched_yield();
            spins = 0;
        }
    }
}

void tp_run_dynamic(threadpool *tp, tp_task_fn fn, void *ctx) {
    if (!tp || tp->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->ctx = ctx;
    atomic_store_explicit(&tp->finished, 0, memory_order_relaxed);
    start(tp, 0);
    fn(ctx, 0, tp->n_threads);
    /* all work is claimed now: close the run, then wait only for the workers
     * that joined (one still asleep or descheduled is not waited for) */
    const unsigned gen = atomic_load_explicit(&tp->generation, memory_order_relaxed);
    uint64_t j = atomic_load_explicit(&tp->join, memory_order_acquire);
    while (!atomic_compare_exchange_weak_explicit(&tp->join, &j, JOIN_WORD(gen, JOIN_CLOSED), memory_order_acq_rel,
                                                  memory_order_acquire)) {
    }
    wait_for(&tp->finished, (int)(uint32_t)j);
}

void tp_run(threadpool *tp, tp_task_fn fn, void *ctx) {
    if (!tp || tp->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->ctx = ctx;
    atomic_store_explicit(&tp->pending, tp->n_threads - 1, memory_order_relaxed);
    start(tp, JOIN_STATIC);
    fn(ctx, 0, tp->n_threads);
    wait_for(&tp->pending, 0);
}
