/* Engine benchmark driver (built and run by bench/bench_engine.py):
 *   bn_bench MODEL THREADS N_PROMPT N_GEN REPS [--profile]
 * loads MODEL (timed), evaluates an N_PROMPT-token prompt as one batch
 * (prefill) REPS times from an empty cache, then generates N_GEN tokens one
 * at a time (decode, greedy) REPS times, and prints one JSON object: load
 * seconds, the best and median tokens/s of each phase, peak RSS, and with
 * --profile the decode step broken down by phase (bn_profile, profile.h). */
#include "bitnet.h"
#include "profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int32_t argmax(const float *v, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        return 1;                                                                                  \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 6) DIE("usage: bn_bench MODEL THREADS N_PROMPT N_GEN REPS [--profile]");
    const char *path = argv[1];
    const int n_threads = atoi(argv[2]), n_prompt = atoi(argv[3]), n_gen = atoi(argv[4]);
    const int reps = atoi(argv[5]);
    const int profile = argc > 6 && strcmp(argv[6], "--profile") == 0;
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
    bn_context *c = NULL;
    if (bn_context_new(m, &cp, &c, &err) != BN_OK) DIE("context: %s", err.msg);
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
        int32_t next = argmax(bn_get_logits(c, -1), cfg.n_vocab);
        if (profile) bn_context_profile(c, 1, NULL);
        t = now();
        for (int i = 0; i < n_gen; i++) {
            bn_batch one = {1, &next, NULL, NULL, NULL};
            if (bn_decode(c, &one, &err) != BN_OK) DIE("decode: %s", err.msg);
            next = argmax(bn_get_logits(c, -1), cfg.n_vocab);
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
    if (profile) {
        printf(", \"profile\": {\"steps\": %llu", (unsigned long long)prof.steps);
        for (int i = 0; i < BN_PROF_COUNT; i++)
            printf(", \"%s\": %.6f", bn_profile_name(i), prof.seconds[i]);
        printf("}");
    }
    printf("}\n");
    free(tok);
    bn_context_free(c);
    bn_model_free(m);
    return 0;
}
