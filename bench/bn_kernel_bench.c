/* Kernel bandwidth benchmark (bench/bench_engine.py --kernels runs it):
 *   bn_kernel_bench [REPS [THREADS]]
 * On THREADS threads (default 1; the engine's own pool, each thread a
 * contiguous share as in a decode step), interleaved REPS times: (a) a plain
 * read of a 512 MiB buffer (64-byte vector loads, summed, with and without
 * software prefetch: the better is the streaming-read ceiling), (b) the
 * best set's ternary matvec over the 2B-4T decode weights'
 * worth of TQ2_0 rows, repacked as at load, (c) the Q6_K head matvec
 * (128256 x 2560). Prints bytes streamed per second of each and (b), (c) as
 * a fraction of (a): how close a decode step's kernels are to the
 * memory-bandwidth wall. All three live in bench_alloc memory (huge pages,
 * as the engine's streamed weights). */
#include "bench_read.h"
#include "bitnet.h"
#include "dispatch.h"
#include "fmt.h"
#include "kernels.h"
#include "quant.h"
#include "threadpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

typedef struct Job {
    int phase; /* 0 read, 1 ternary, 2 head, 3 read with prefetch */
    const uint64_t *rd;
    size_t rd_words;
    const bn_kernels *k;
    const bn_tensor *w;
    int n_mat;
    const bn_tensor *head;
    const int8_t *q;
    const float *x;
    float *out;
    uint64_t sink[64];
} Job;

static void split(int64_t n, int64_t align, int ith, int nth, int64_t *a, int64_t *b) {
    int64_t chunk = (n + nth - 1) / nth;
    chunk = (chunk + align - 1) / align * align;
    *a = chunk * ith < n ? chunk * ith : n;
    *b = chunk * (ith + 1) < n ? chunk * (ith + 1) : n;
}

static void job_fn(void *arg, int ith, int nth) {
    Job *j = arg;
    const float ascale = 1.0f;
    int64_t a, b;
    if (j->phase == 0 || j->phase == 3) {
        split((int64_t)j->rd_words, 4096, ith, nth, &a, &b);
        j->sink[ith] += bench_read(j->rd + a, (size_t)(b - a), j->phase == 3);
    } else if (j->phase == 1) {
        for (int i = 0; i < j->n_mat; i++) {
            const bn_tensor *w = &j->w[i];
            split(w->n_rows, w->row_group > 16 ? w->row_group : 16, ith, nth, &a, &b);
            if (a < b) j->k->matmul_i8[BN_TYPE_TQ2_0](w, j->q, &ascale, 1, j->out, w->n_rows, a, b);
        }
    } else {
        split(j->head->n_rows, 16, ith, nth, &a, &b);
        if (a < b) j->k->matmul_f32[BN_TYPE_Q6_K](j->head, j->x, 1, j->out, j->head->n_rows, a, b);
    }
}

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 3;
    const int nth = argc > 2 ? atoi(argv[2]) : 1;
    const bn_kernels *k = bn_kernels_best();
    bn_error err;
    bn_threadpool *pool = NULL;
    if (nth < 1 || bn_threadpool_new(nth, &pool, &err) != BN_OK) {
        fprintf(stderr, "cannot start %d threads\n", nth);
        return 1;
    }
    /* (a) */
    const size_t rd_bytes = (size_t)512 << 20;
    uint64_t *rd = bench_alloc(rd_bytes);
    /* (b): 60 matrices of 13824 x 2560 ternary weights, 2.12 G weights: about
     * the 2.08 G of the 2B-4T model's BitLinear layers. */
    const int n_mat = 60;
    const int64_t rows = 13824, cols = 2560;
    bn_tensor w[60];
    const size_t tq_bytes = bn_type_nbytes(BN_TYPE_TQ2_0, cols, rows, &err);
    /* (c) */
    const int64_t hrows = 128256;
    const size_t h_bytes = bn_type_nbytes(BN_TYPE_Q6_K, cols, hrows, &err);
    uint8_t *hd = bench_alloc(h_bytes);
    int8_t *q = bn_aligned_alloc((size_t)cols);
    float *x = bn_aligned_alloc((size_t)cols * sizeof(float));
    float *out = bn_aligned_alloc((size_t)hrows * sizeof(float));
    uint8_t *tmp = bn_aligned_alloc(tq_bytes);
    if (!rd || !hd || !q || !x || !out || !tmp) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < tq_bytes; i++) { /* four valid codes (0..2) per byte */
        const uint64_t r = rnd();
        tmp[i] = (uint8_t)((r % 3) | (r / 3 % 3) << 2 | (r / 9 % 3) << 4 | (r / 27 % 3) << 6);
    }
    for (int64_t r = 0; r < rows; r++) { /* sane block scales */
        for (int64_t b = 0; b < cols / 256; b++) {
            uint8_t *blk = tmp + (size_t)r * bn_row_bytes(BN_TYPE_TQ2_0, cols) + (size_t)b * 66;
            blk[64] = 0x00;
            blk[65] = 0x3c; /* 1.0 */
        }
    }
    /* the 60 matrices one after another in one region, as the engine's
     * weight blocks hold them */
    int layout0 = 0;
    bn_tensor t0 = {BN_TYPE_TQ2_0, cols, rows, bn_row_bytes(BN_TYPE_TQ2_0, cols), tmp, 1.0f,
                    "w",           0,    0};
    const size_t pb0 = k->packed_size ? k->packed_size(&t0, &layout0) : 0;
    const size_t per = ((pb0 ? pb0 : tq_bytes) + 63) / 64 * 64;
    uint8_t *region = bench_alloc(per * (size_t)n_mat);
    if (!region) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    size_t w_bytes = 0;
    for (int i = 0; i < n_mat; i++) {
        bn_tensor t = {BN_TYPE_TQ2_0, cols, rows, bn_row_bytes(BN_TYPE_TQ2_0, cols), tmp, 1.0f,
                       "w",           0,    0};
        int layout = 0;
        const size_t pb = k->packed_size ? k->packed_size(&t, &layout) : 0;
        void *dst = region + per * (size_t)i;
        if (pb) {
            k->pack(&t, layout, dst);
            w_bytes += pb;
        } else {
            memcpy(dst, tmp, tq_bytes);
            t.data = dst;
            w_bytes += tq_bytes;
        }
        w[i] = t;
    }
    for (size_t i = 0; i < h_bytes; i++)
        hd[i] = (uint8_t)(rnd() & 0xff);
    for (int64_t r = 0; r < hrows; r++) {
        for (int64_t b = 0; b < cols / 256; b++) {
            uint8_t *blk = hd + (size_t)r * bn_row_bytes(BN_TYPE_Q6_K, cols) + (size_t)b * 210;
            blk[208] = 0x00;
            blk[209] = 0x1c; /* small d */
        }
    }
    for (int64_t i = 0; i < cols; i++) {
        x[i] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
        q[i] = (int8_t)((int)(rnd() % 255) - 127);
    }
    bn_tensor head = {BN_TYPE_Q6_K, cols, hrows, bn_row_bytes(BN_TYPE_Q6_K, cols), hd, 1.0f,
                      "h",          0,    0};
    double best[3] = {0, 0, 0};
    const size_t bytes[3] = {rd_bytes, w_bytes, h_bytes};
    Job job = {0, rd, rd_bytes / 8, k, w, n_mat, &head, q, x, out, {0}};
    for (int r = 0; r < reps; r++) {
        for (int ph = 0; ph < 4; ph++) {
            job.phase = ph;
            const double t = now();
            bn_threadpool_run(pool, job_fn, &job);
            const int slot = ph == 3 ? 0 : ph; /* both reads: the best is the ceiling */
            const double gb = (double)bytes[slot] / (now() - t) / 1e9;
            if (gb > best[slot]) best[slot] = gb;
        }
    }
    uint64_t sink = 0;
    for (int i = 0; i < 64; i++)
        sink += job.sink[i];
    bn_threadpool_free(pool);
    printf("{\"kernels\": \"%s\", \"threads\": %d, \"read_GBps\": %.2f, \"ternary_GBps\": %.2f, "
           "\"ternary_bytes\": %zu, \"head_q6_k_GBps\": %.2f, \"head_bytes\": %zu, "
           "\"ternary_frac\": %.3f, \"head_frac\": %.3f, \"sink\": %llu}\n",
           k->name, nth, best[0], best[1], w_bytes, best[2], h_bytes, best[1] / best[0],
           best[2] / best[0], (unsigned long long)(sink & 1));
    return 0;
}
