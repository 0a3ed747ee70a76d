/* Persistent worker pool (see threadpool.h).
 *
 * A job has n_threads parts (fn(arg, part, n_threads)); every part runs
 * exactly once, on whichever thread claims it, the caller included.
 * Hand-off: the caller publishes fn/arg and the job's claim word
 * (generation << 32 | next part), then bumps `gen` under the mutex and
 * broadcasts; a worker that is spinning sees the new generation without a
 * system call, a sleeping one is woken by the broadcast. Parts are claimed
 * with a compare-and-swap that checks the generation, so when a worker is
 * slow to wake (more threads than free cores: the machine is shared) the
 * caller runs its part instead of waiting for it, and a worker that wakes
 * after its job is over claims nothing. Completion: `done` counts finished
 * parts; the caller spins on it before it sleeps on done_cv, and the thread
 * that finishes the last part signals it if the caller sleeps. */
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
    atomic_uint gen;         /* bumped once per job: workers wait for a change */
    atomic_ullong claim;     /* job generation << 32 | next part to claim */
    atomic_int done;         /* parts of the current job finished */
    atomic_int caller_sleep; /* the caller waits on done_cv */
    atomic_int stop;
    bn_task_fn fn; /* written by the caller before the job is published */
    void *arg;
    /* bn_threadpool_run_ranges: per part, front << 32 | back of what is left
     * of its share, one cache line each (owners claim without sharing) */
    struct Share {
        _Alignas(64) atomic_ullong fb;
    } * shares;
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

/* Claims and runs parts of job generation g until none is left. A claim
 * succeeds only while the job is still generation g, so a thread that wakes
 * up late never touches a newer job it did not see published; fn and arg
 * are read after a successful claim (the caller wrote them before
 * publishing the generation and does not change them until every claimed
 * part is done). */
static void run_parts(bn_threadpool *pool, unsigned g) {
    const int n = pool->n_threads;
    unsigned long long c = atomic_load_explicit(&pool->claim, memory_order_acquire);
    for (;;) {
        if ((unsigned)(c >> 32) != g || (int)(c & 0xffffffffu) >= n) return;
        if (!atomic_compare_exchange_weak_explicit(&pool->claim, &c, c + 1, memory_order_acq_rel,
                                                   memory_order_acquire)) {
            continue;
        }
        const int part = (int)(c & 0xffffffffu);
        pool->fn(pool->arg, part, n);
        /* seq_cst: pairs with the caller's store of caller_sleep then load of
         * done, so one of the two sides sees the other */
        if (atomic_fetch_add(&pool->done, 1) + 1 == n && atomic_load(&pool->caller_sleep)) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->done_cv);
            pthread_mutex_unlock(&pool->mu);
        }
        c = atomic_load_explicit(&pool->claim, memory_order_acquire);
    }
}

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
        run_parts(pool, g);
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
    atomic_init(&p->claim, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->caller_sleep, 0);
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
        p->shares = bn_aligned_alloc((size_t)n_threads * sizeof *p->shares);
        if (!p->shares) {
            bn_threadpool_free(p);
            return bn_fail(err, BN_ERR_NOMEM, "threadpool: out of memory");
        }
        for (int i = 0; i < n_threads; i++)
            atomic_init(&p->shares[i].fb, 0);
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
    bn_aligned_free(p->shares);
    pthread_cond_destroy(&p->done_cv);
    pthread_cond_destroy(&p->work_cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int bn_threadpool_n_threads(const bn_threadpool *p) { return p ? p->n_threads : 1; }

void bn_threadpool_run(bn_threadpool *p, bn_task_fn fn, void *arg) {
    const int n = p->n_threads;
    if (n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    const unsigned g = atomic_load(&p->gen) + 1;
    atomic_store(&p->done, 0);
    atomic_store_explicit(&p->claim, (unsigned long long)g << 32, memory_order_release);
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->gen, g);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);

    /* The caller claims parts too: when a worker is slow to wake (more
     * threads than free cores), the caller runs its part instead. */
    run_parts(p, g);

    for (int i = 0; atomic_load(&p->done) != n && i < SPIN_ITERS; i++)
        cpu_relax(i);
    if (atomic_load(&p->done) != n) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleep, 1);
        while (atomic_load(&p->done) != n)
            pthread_cond_wait(&p->done_cv, &p->mu);
        atomic_store(&p->caller_sleep, 0);
        pthread_mutex_unlock(&p->mu);
    }
}

/* ---- balanced ranges ---------------------------------------------------- */

typedef struct RangeJob {
    bn_threadpool *pool;
    bn_range_fn fn;
    void *arg;
} RangeJob;

/* Takes half (at least one) of what is left of share sh, from the front
 * (the owner) or the back (a thief). Returns 0 when nothing is left. */
static int take(struct Share *sh, int from_back, int64_t *c0, int64_t *c1) {
    unsigned long long s = atomic_load_explicit(&sh->fb, memory_order_acquire);
    for (;;) {
        const uint32_t f = (uint32_t)(s >> 32), b = (uint32_t)s;
        if (f >= b) return 0;
        const uint32_t n = (b - f + 1) / 2;
        const unsigned long long t = from_back ? (unsigned long long)f << 32 | (b - n)
                                               : (unsigned long long)(f + n) << 32 | b;
        if (atomic_compare_exchange_weak_explicit(&sh->fb, &s, t, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            *c0 = from_back ? b - n : f;
            *c1 = from_back ? b : f + n;
            return 1;
        }
    }
}

static void range_task(void *arg, int ith, int nth) {
    const RangeJob *j = arg;
    struct Share *shares = j->pool->shares;
    int64_t c0, c1;
    while (take(&shares[ith], 0, &c0, &c1))
        j->fn(j->arg, c0, c1);
    for (;;) { /* the share with the most left, from its back */
        int best = -1;
        uint32_t most = 0;
        for (int i = 0; i < nth; i++) {
            const unsigned long long s = atomic_load_explicit(&shares[i].fb, memory_order_relaxed);
            const uint32_t f = (uint32_t)(s >> 32), b = (uint32_t)s;
            if (b > f && b - f > most) most = b - f, best = i;
        }
        if (best < 0) return;
        if (take(&shares[best], 1, &c0, &c1)) j->fn(j->arg, c0, c1);
    }
}

void bn_threadpool_run_ranges(bn_threadpool *p, int64_t n_chunks, bn_range_fn fn, void *arg) {
    if (n_chunks <= 0) return;
    const int n = p->n_threads;
    if (n == 1 || n_chunks > (int64_t)UINT32_MAX) {
        fn(arg, 0, n_chunks);
        return;
    }
    for (int i = 0; i < n; i++) {
        const uint64_t f = (uint64_t)(n_chunks * i / n), b = (uint64_t)(n_chunks * (i + 1) / n);
        atomic_store_explicit(&p->shares[i].fb, f << 32 | b, memory_order_relaxed);
    }
    RangeJob j = {p, fn, arg};
    bn_threadpool_run(p, range_task, &j); /* publishing the job releases the stores above */
}
