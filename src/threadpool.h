/* A pool of persistent worker threads, one per context. bn_threadpool_run
 * calls fn(arg, ith, nth) on every thread (the caller is thread 0) and
 * returns when all have finished. A decode step runs a few hundred such jobs
 * in ~25 ms, so hand-off must cost microseconds: workers spin briefly on an
 * atomic generation counter before they sleep on a condition variable. */
#ifndef BN_THREADPOOL_H
#define BN_THREADPOOL_H

#include "common.h"

typedef void (*bn_task_fn)(void *arg, int ith, int nth);

typedef struct bn_threadpool bn_threadpool;

/* n_threads >= 1 (1: no workers; run calls fn directly). */
bn_status bn_threadpool_new(int n_threads, bn_threadpool **out, bn_error *err);
void bn_threadpool_free(bn_threadpool *p);
int bn_threadpool_n_threads(const bn_threadpool *p);
/* Not reentrant: one run at a time, from the thread that owns the pool. */
void bn_threadpool_run(bn_threadpool *p, bn_task_fn fn, void *arg);

/* fn(arg, c0, c1) over the chunks [0, n_chunks), every chunk exactly once,
 * balanced at run time: each part starts on its own contiguous share (as
 * bn_threadpool_run would split it) and takes halves of what is left of it
 * from the front; a part whose share is done takes halves from the back of
 * the share with the most left. So a thread that streams slower than the
 * others (memory bandwidth is shared unevenly) hands its last chunks over,
 * and the few large ranges keep each stream long. */
typedef void (*bn_range_fn)(void *arg, int64_t c0, int64_t c1);
void bn_threadpool_run_ranges(bn_threadpool *p, int64_t n_chunks, bn_range_fn fn, void *arg);

#endif /* BN_THREADPOOL_H */
