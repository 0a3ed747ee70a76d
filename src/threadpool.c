/* Persistent worker pool (see threadpool.h).
 *
 * Hand-off: the caller publishes fn/arg, then bumps `gen` under the mutex and
 * broadcasts; a worker that is spinning sees the new generation without a
 * system call, a sleeping one is woken by the broadcast. Completion: each
 * worker decrements `pending`; the last one signals `done_cv` under the
 * mutex, and the caller spins on `pending` before it sleeps. Checking the
 * counters under the mutex before every wait means no wake-up is lost. */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

/* About 50-100 us of polling: longer than the gap between two jobs of one
 * decode step, much shorter than the gap between decode calls. */
#define SPIN_ITERS 4096
/* Yield the CPU every so often while polling, so that when there are more
 * threads than free cores the thread we wait for gets to run. */
#define YIELD_EVERY 64

struct bn_threadpool {
    int n_threads;
    pthread_t *threads;
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    pthread_cond_t done_cv;
    atomic_uint gen;
    atomic_int pending;
    atomic_int stop;
    bn_task_fn fn; /* written by the caller before gen is bumped */
    void *arg;
};

static inline void cpu_relax(int i) {
    if (i % YIELD_EVERY == YIELD_EVERY - 1) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

typedef struct WorkerArg {
    bn_threadpool *pool;
    int ith;
} WorkerArg;

static void *worker_main(void *p) {
    WorkerArg wa = *(WorkerArg *)p;
    free(p);
    bn_threadpool *pool = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load(&pool->gen);
        for (int i = 0; g == seen && i < SPIN_ITERS; i++) {
            cpu_relax(i);
            g = atomic_load(&pool->gen);
        }
        if (g == seen) {
            pthread_mutex_lock(&pool->mu);
            while ((g = atomic_load(&pool->gen)) == seen && !atomic_load(&pool->stop)) {
                pthread_cond_wait(&pool->work_cv, &pool->mu);
            }
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop)) break;
        seen = g;
        pool->fn(pool->arg, wa.ith, pool->n_threads);
        if (atomic_fetch_sub(&pool->pending, 1) == 1) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->done_cv);
            pthread_mutex_unlock(&pool->mu);
        }
    }
    return NULL;
}

bn_status bn_threadpool_new(int n_threads, bn_threadpool **out, bn_error *err) {
    if (!out) return bn_fail(err, BN_ERR_INVALID_ARG, "threadpool: out is NULL");
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024) {
        return bn_fail(err, BN_ERR_INVALID_ARG, "threadpool: n_threads %d not in 1..1024",
                       n_threads);
    }
    bn_threadpool *p = calloc(1, sizeof *p);
    if (!p) return bn_fail(err, BN_ERR_NOMEM, "threadpool: out of memory");
    p->n_threads = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return bn_fail(err, BN_ERR_INTERNAL, "threadpool: pthread_mutex_init failed");
    }
    if (pthread_cond_init(&p->work_cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return bn_fail(err, BN_ERR_INTERNAL, "threadpool: pthread_cond_init failed");
    }
    if (pthread_cond_init(&p->done_cv, NULL) != 0) {
        pthread_cond_destroy(&p->work_cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return bn_fail(err, BN_ERR_INTERNAL, "threadpool: pthread_cond_init failed");
    }
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            bn_threadpool_free(p);
            return bn_fail(err, BN_ERR_NOMEM, "threadpool: out of memory");
        }
        for (int i = 1; i < n_threads; i++) {
            WorkerArg *wa = malloc(sizeof *wa);
            if (!wa) {
                bn_threadpool_free(p);
                return bn_fail(err, BN_ERR_NOMEM, "threadpool: out of memory");
            }
            wa->pool = p;
            wa->ith = i;
            if (pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                bn_threadpool_free(p);
                return bn_fail(err, BN_ERR_INTERNAL, "threadpool: cannot start thread %d of %d", i,
                               n_threads);
            }
            p->n_started++;
        }
    }
    *out = p;
    return bn_ok(err);
}

void bn_threadpool_free(bn_threadpool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_cond_destroy(&p->done_cv);
    pthread_cond_destroy(&p->work_cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int bn_threadpool_n_threads(const bn_threadpool *p) { return p ? p->n_threads : 1; }

void bn_threadpool_run(bn_threadpool *p, bn_task_fn fn, void *arg) {
    if (p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n_threads - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);

    fn(arg, 0, p->n_threads);

    for (int i = 0; atomic_load(&p->pending) != 0 && i < SPIN_ITERS; i++)
        cpu_relax(i);
    if (atomic_load(&p->pending) != 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) != 0)
            pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
