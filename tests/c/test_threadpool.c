/* Thread pool: every job runs on every thread exactly once, with the right
 * (ith, nth); jobs see the writes of the jobs before them; a one-thread pool
 * runs on the caller; balanced ranges cover every chunk exactly once, also
 * when one share is much slower than the others (so that it is taken from);
 * and the cost of a hand-off (an empty job), printed in microseconds (decode
 * steps run ~300 jobs; this must stay in the microseconds). */
#include "test_util.h"
#include "threadpool.h"

#include <stdatomic.h>
#include <time.h>

typedef struct Job {
    int nth_seen[64];
    atomic_int runs[64];
    long *cells; /* one per thread: each adds its job number */
    long round;
} Job;

static void job_fn(void *arg, int ith, int nth) {
    Job *j = arg;
    j->nth_seen[ith] = nth;
    atomic_fetch_add(&j->runs[ith], 1);
    j->cells[ith] += j->round;
}

static void empty_fn(void *arg, int ith, int nth) {
    (void)arg;
    (void)ith;
    (void)nth;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_pool(int n_threads) {
    bn_error err;
    bn_threadpool *p = NULL;
    CHECK_OK(bn_threadpool_new(n_threads, &p, &err), &err);
    if (!p) return;
    CHECK(bn_threadpool_n_threads(p) == n_threads);
    Job j;
    memset(&j, 0, sizeof j);
    long cells[64] = {0};
    j.cells = cells;
    const long rounds = 2000;
    for (j.round = 1; j.round <= rounds; j.round++)
        bn_threadpool_run(p, job_fn, &j);
    long bad = 0;
    for (int i = 0; i < n_threads; i++) {
        bad += atomic_load(&j.runs[i]) != rounds;
        bad += j.nth_seen[i] != n_threads;
        bad += cells[i] != rounds * (rounds + 1) / 2;
    }
    CHECKF(bad == 0, "%d threads: %ld wrong counts", n_threads, bad);
    /* hand-off cost: back-to-back empty jobs (as between a decode step's
     * matmuls), and after a pause (workers asleep) */
    const int n = 20000;
    double t = now();
    for (int i = 0; i < n; i++)
        bn_threadpool_run(p, empty_fn, NULL);
    const double us = (now() - t) / n * 1e6;
    printf("threads %d: %.2f us per empty job back to back\n", n_threads, us);
    bn_threadpool_free(p);
}

/* A small id per thread, to see which thread ran a chunk. */
static atomic_int next_tid;
static _Thread_local int tid = -1;
static int my_tid(void) {
    if (tid < 0) tid = atomic_fetch_add(&next_tid, 1);
    return tid;
}

typedef struct RangeCount {
    atomic_int *hits;
    atomic_int *who; /* the thread that last ran each chunk */
    int64_t n;
    int64_t slow_below; /* chunks below this take far longer */
    atomic_int calls;
    atomic_int bad;
} RangeCount;

static void range_fn(void *arg, int64_t c0, int64_t c1) {
    RangeCount *r = arg;
    if (c0 < 0 || c1 > r->n || c0 >= c1) atomic_fetch_add(&r->bad, 1);
    atomic_fetch_add(&r->calls, 1);
    for (int64_t c = c0; c < c1 && c >= 0 && c < r->n; c++) {
        atomic_fetch_add(&r->hits[c], 1);
        atomic_store(&r->who[c], my_tid());
        if (c < r->slow_below) {
            const double t = now();
            while (now() - t < 2e-5) {
            }
        }
    }
}

static void test_ranges(int n_threads) {
    bn_error err;
    bn_threadpool *p = NULL;
    CHECK_OK(bn_threadpool_new(n_threads, &p, &err), &err);
    if (!p) return;
    static const int64_t sizes[] = {0, 1, 2, 3, 7, 64, 1001, 100000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (int slow = 0; slow < 2; slow++) {
            const int64_t n = sizes[k];
            RangeCount r;
            r.hits = calloc((size_t)n + 1, sizeof *r.hits);
            r.who = calloc((size_t)n + 1, sizeof *r.who);
            r.n = n;
            /* the first share's chunks are slow: the other parts must take
             * from it (only when there are few enough chunks to time) */
            r.slow_below = slow && n <= 1001 ? n / n_threads : 0;
            atomic_init(&r.calls, 0);
            atomic_init(&r.bad, 0);
            for (int rep = 0; rep < 3; rep++)
                bn_threadpool_run_ranges(p, n, range_fn, &r);
            int64_t wrong = 0;
            for (int64_t c = 0; c < n; c++)
                wrong += atomic_load(&r.hits[c]) != 3;
            CHECKF(wrong == 0 && atomic_load(&r.bad) == 0,
                   "%d threads, %lld chunks: %lld chunks not run exactly once per job", n_threads,
                   (long long)n, (long long)wrong);
            if (n == 0) CHECK(atomic_load(&r.calls) == 0);
            /* balanced: with the first share slow, another thread ran part
             * of it (tried until it happens, for up to about a second: on a
             * loaded machine a worker may not get a core for several jobs;
             * ctest -j2 on 2 cores missed 6 of 30 times with 5 tries) */
            if (r.slow_below >= 32 && n_threads > 1) {
                int taken = 0;
                const double t0 = now();
                for (int attempt = 0; !taken && (attempt < 5 || now() - t0 < 1.0); attempt++) {
                    bn_threadpool_run_ranges(p, n, range_fn, &r);
                    for (int64_t c = 1; c < r.slow_below; c++)
                        taken += atomic_load(&r.who[c]) != atomic_load(&r.who[0]);
                }
                CHECKF(taken > 0, "%d threads, %lld chunks: nobody helped the slow share",
                       n_threads, (long long)n);
            }
            free(r.hits);
            free(r.who);
        }
    }
    bn_threadpool_free(p);
}

int main(void) {
    test_ranges(1);
    test_ranges(2);
    test_ranges(3);
    test_pool(1);
    test_pool(2);
    test_pool(4);
    bn_error err;
    bn_threadpool *p = NULL;
    CHECK(bn_threadpool_new(0, &p, &err) != BN_OK && p == NULL);
    return bn_test_finish("test_threadpool");
}
