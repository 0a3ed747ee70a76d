/* Thread pool: every job runs on every thread exactly once, with the right
 * (ith, nth); jobs see the writes of the jobs before them; a one-thread pool
 * runs on the caller; and the cost of a hand-off (an empty job), printed in
 * microseconds (decode steps run ~300 jobs; this must stay in the
 * microseconds). */
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

int main(void) {
    test_pool(1);
    test_pool(2);
    test_pool(4);
    bn_error err;
    bn_threadpool *p = NULL;
    CHECK(bn_threadpool_new(0, &p, &err) != BN_OK && p == NULL);
    return bn_test_finish("test_threadpool");
}
