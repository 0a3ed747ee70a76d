/* Engine benchmark driver (built and run by bench/bench_engine.py):
 *   bn_bench MODEL THREADS N_PROMPT N_GEN REPS [--profile] [--ceiling] [--kv-f16]
 * loads MODEL (timed), evaluates an N_PROMPT-token prompt as one batch
 * (prefill) REPS times from an empty cache, then generates N_GEN tokens one
 * at a time (decode, greedy) REPS times, and prints one JSON object: load
 * seconds, the best and median tokens/s of each phase, peak RSS, and with
 * --profile the decode step broken down by phase (bn_profile, profile.h).
 * --kv-f16 keeps the KV cache in IEEE half (llama.cpp's default cache).
 *
 * --ceiling measures how close a decode step comes to the memory-bandwidth
 * wall. Memory bandwidth on a shared machine moves from second to second,
 * so the ceiling is measured next to each step rather than in another run:
 * one more decode run in which every step is preceded by two streaming
 * reads (bench_read.h: plain and prefetching, on as many threads) of a
 * buffer as large as the model's weights. The bound for a step is the
 * faster read's time (weights only, and weights plus the KV cache rows the
 * step reads); the reported fraction is the sum of the bounds over the sum
 * of the steps' times. Peak RSS is taken before that run. */
#include "bench_read.h"
#include "bitnet.h"
#include "profile.h"
#include "threadpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The next token, greedy, through the library's sampler (what a user's
 * generation loop runs). */
static int32_t pick(bn_sampler *smp, bn_context *c) {
    int32_t tok = 0;
    bn_error e;
    if (bn_sampler_sample(smp, bn_get_logits(c, -1), &tok, &e) != BN_OK) {
        fprintf(stderr, "sample: %s\n", e.msg);
        exit(1);
    }
    return tok;
}

typedef struct ReadJob {
    const uint64_t *buf;
    size_t words;
    int pf;
    uint64_t sink[64];
} ReadJob;

static void read_task(void *arg, int ith, int nth) {
    ReadJob *j = arg;
    const size_t chunk = (j->words / (size_t)nth + 4095) / 4096 * 4096;
    const size_t a = chunk * (size_t)ith < j->words ? chunk * (size_t)ith : j->words;
    const size_t b = a + chunk < j->words ? a + chunk : j->words;
    j->sink[ith & 63] += bench_read(j->buf + a, b - a, j->pf);
}

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        return 1;                                                                                  \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 6) {
        DIE("usage: bn_bench MODEL THREADS N_PROMPT N_GEN REPS [--profile] [--ceiling] "
            "[--kv-f16]");
    }
    const char *path = argv[1];
    const int n_threads = atoi(argv[2]), n_prompt = atoi(argv[3]), n_gen = atoi(argv[4]);
    const int reps = atoi(argv[5]);
    int profile = 0, ceiling = 0, kv_f16 = 0;
    for (int i = 6; i < argc; i++) {
        if (strcmp(argv[i], "--profile") == 0) {
            profile = 1;
        } else if (strcmp(argv[i], "--ceiling") == 0) {
            ceiling = 1;
        } else if (strcmp(argv[i], "--kv-f16") == 0) {
            kv_f16 = 1;
        } else {
            DIE("unknown option %s", argv[i]);
        }
    }
    if (n_threads < 1 || n_prompt < 1 || n_gen < 1 || reps < 1 || reps > 64) DIE("bad arguments");
    bn_error err;
    bn_model *m = NULL;
    bn_model_params mp = bn_model_default_params();
    double t = now();
    if (bn_model_load(path, &mp, &m, &err) != BN_OK) DIE("load: %s", err.msg);
    const double load_s = now() - t;
    bn_model_config cfg;
    bn_model_get_config(m, &cfg);
    bn_context_params cp = bn_context_default_params();
    cp.n_ctx = n_prompt + n_gen + 8;
    cp.n_batch = n_prompt;
    cp.n_threads = n_threads;
    cp.kv_type = kv_f16 ? BN_KV_F16 : BN_KV_F32;
    bn_context *c = NULL;
    if (bn_context_new(m, &cp, &c, &err) != BN_OK) DIE("context: %s", err.msg);
    bn_sampler_params sp = bn_sampler_default_params();
    sp.temperature = 0.0f;
    bn_sampler *smp = NULL;
    if (bn_sampler_new(&sp, cfg.n_vocab, &smp, &err) != BN_OK) DIE("sampler: %s", err.msg);
    int32_t *tok = malloc((size_t)n_prompt * sizeof *tok);
    if (!tok) DIE("out of memory");
    for (int i = 0; i < n_prompt; i++)
        tok[i] = 3 + (int32_t)((i * 7919u) % (unsigned)(cfg.n_vocab - 3));
    double pp[64], tg[64];
    bn_profile prof;
    memset(&prof, 0, sizeof prof);
    for (int r = 0; r < reps; r++) {
        if (bn_kv_seq_truncate(c, 0, 0, &err) != BN_OK) DIE("truncate: %s", err.msg);
        bn_batch b = {n_prompt, tok, NULL, NULL, NULL};
        t = now();
        if (bn_decode(c, &b, &err) != BN_OK) DIE("prefill: %s", err.msg);
        pp[r] = (double)n_prompt / (now() - t);
        int32_t next = pick(smp, c);
        if (profile) bn_context_profile(c, 1, NULL);
        t = now();
        for (int i = 0; i < n_gen; i++) {
            bn_batch one = {1, &next, NULL, NULL, NULL};
            if (bn_decode(c, &one, &err) != BN_OK) DIE("decode: %s", err.msg);
            next = pick(smp, c);
        }
        tg[r] = (double)n_gen / (now() - t);
        if (profile) bn_context_profile(c, 0, &prof);
    }
    double pps[64], tgs[64];
    memcpy(pps, pp, sizeof pp);
    memcpy(tgs, tg, sizeof tg);
    qsort(pps, (size_t)reps, sizeof(double), cmp_d);
    qsort(tgs, (size_t)reps, sizeof(double), cmp_d);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double bound_w = 0, bound_wkv = 0, steps_s = 0, read_gbps[256];
    int n_read = 0;
    if (ceiling) {
        const uint64_t wbytes = bn_model_weight_bytes(m);
        const size_t words = (size_t)(wbytes / 4096 * 4096 / 8);
        uint64_t *buf = bench_alloc(words * 8);
        bn_threadpool *pool = NULL;
        if (!buf || bn_threadpool_new(n_threads, &pool, &err) != BN_OK) DIE("ceiling: no memory");
        ReadJob rj = {buf, words, 0, {0}};
        if (bn_kv_seq_truncate(c, 0, 0, &err) != BN_OK) DIE("truncate: %s", err.msg);
        bn_batch b = {n_prompt, tok, NULL, NULL, NULL};
        if (bn_decode(c, &b, &err) != BN_OK) DIE("prefill: %s", err.msg);
        int32_t next = pick(smp, c);
        const struct timespec idle = {0, 1000000}; /* lets the other pool's spinners sleep */
        for (int i = 0; i < n_gen; i++) {
            double best = 1e30;
            for (int pf = 0; pf < 2; pf++) {
                nanosleep(&idle, NULL);
                rj.pf = pf;
                t = now();
                bn_threadpool_run(pool, read_task, &rj);
                const double dt = now() - t;
                if (dt < best) best = dt;
            }
            nanosleep(&idle, NULL);
            bn_batch one = {1, &next, NULL, NULL, NULL};
            t = now();
            if (bn_decode(c, &one, &err) != BN_OK) DIE("decode: %s", err.msg);
            next = pick(smp, c);
            steps_s += now() - t;
            /* the step reads K and V of positions 0..pos of every layer (the
             * cache's bytes a position: one sequence) */
            const double kv = (double)bn_context_kv_bytes(c) / (double)bn_context_n_ctx(c) *
                              (double)(n_prompt + i + 1);
            const double gbps = (double)words * 8.0 / best / 1e9;
            bound_w += (double)wbytes / (gbps * 1e9);
            bound_wkv += ((double)wbytes + kv) / (gbps * 1e9);
            if (n_read < 256) read_gbps[n_read++] = gbps;
        }
        uint64_t sink = 0;
        for (int i = 0; i < 64; i++)
            sink += rj.sink[i];
        if (sink == 42) fputc(' ', stderr);
        bn_threadpool_free(pool);
        bench_free(buf, words * 8);
        qsort(read_gbps, (size_t)n_read, sizeof(double), cmp_d);
    }
    printf("{\"model\": \"%s\", \"threads\": %d, \"kernels\": \"%s\", \"load_s\": %.4f, "
           "\"weight_bytes\": %llu, \"kv_bytes\": %llu, \"n_prompt\": %d, \"n_gen\": %d, "
           "\"pp_best\": %.3f, \"pp_median\": %.3f, \"tg_best\": %.3f, \"tg_median\": %.3f, "
           "\"pp_runs\": [",
           path, n_threads, bn_kernel_name(), load_s, (unsigned long long)bn_model_weight_bytes(m),
           (unsigned long long)bn_context_kv_bytes(c), n_prompt, n_gen, pps[reps - 1],
           pps[reps / 2], tgs[reps - 1], tgs[reps / 2]);
    for (int r = 0; r < reps; r++)
        printf("%s%.3f", r ? ", " : "", pp[r]);
    printf("], \"tg_runs\": [");
    for (int r = 0; r < reps; r++)
        printf("%s%.3f", r ? ", " : "", tg[r]);
    printf("], \"peak_rss_bytes\": %llu", (unsigned long long)ru.ru_maxrss * 1024ull);
    if (ceiling) {
        printf(", \"ceiling\": {\"steps\": %d, \"read_GBps_median\": %.2f, "
               "\"step_GBps\": %.2f, \"frac\": %.4f, \"frac_with_kv\": %.4f}",
               n_read, read_gbps[n_read / 2],
               (double)bn_model_weight_bytes(m) * n_read / steps_s / 1e9, bound_w / steps_s,
               bound_wkv / steps_s);
    }
    if (profile) {
        printf(", \"profile\": {\"steps\": %llu", (unsigned long long)prof.steps);
        for (int i = 0; i < BN_PROF_COUNT; i++)
            printf(", \"%s\": %.6f", bn_profile_name(i), prof.seconds[i]);
        printf("}");
    }
    printf("}\n");
    free(tok);
    bn_sampler_free(smp);
    bn_context_free(c);
    bn_model_free(m);
    return 0;
}
