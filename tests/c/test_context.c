/* bn_context: argument checking and error paths of bn_decode, KV sequence
 * operations, cancellation, thread counts, the thread pool, and one model
 * shared by contexts on several threads. Uses the real tiny llama GGUF. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "bitnet.h"
#include "test_util.h"
#include "threadpool.h"

#define MODEL TESTDATA "gguf/llama-2-tiny-random.gguf"
#define N_VOCAB 32000

static const int32_t k_ids[13] = {1,     450, 4996, 17354, 1701,  29916, 432,
                                  17204, 975, 278,  17366, 11203, 29889};

static bn_context *new_ctx(const bn_model *m, int n_ctx, int n_seq, int n_batch, int n_threads) {
    bn_context_params cp = bn_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_seq = n_seq;
    cp.n_batch = n_batch;
    cp.n_threads = n_threads;
    bn_context *c = NULL;
    bn_error err;
    CHECK_OK(bn_context_new(m, &cp, &c, &err), &err);
    return c;
}

static bn_status decode1(bn_context *c, int32_t tok, int32_t seq, bn_error *err) {
    bn_batch b = {1, &tok, NULL, &seq, NULL};
    return bn_decode(c, &b, err);
}

static int argmax(const float *x) {
    int b = 0;
    for (int i = 1; i < N_VOCAB; i++) {
        if (x[i] > x[b]) b = i;
    }
    return b;
}

/* ------------------------------------------------------------------------ */

static void test_params(const bn_model *m) {
    bn_error err;
    bn_context *c = (bn_context *)1;
    bn_context_params cp = bn_context_default_params();
    CHECK(cp.n_seq == 1 && cp.n_batch == 512 && cp.n_ctx == 0 && cp.n_threads == 0);
    cp.n_ctx = 4097; /* the model was trained with 4096 */
    bn_status st = bn_context_new(m, &cp, &c, &err);
    CHECKF(st == BN_ERR_INVALID_ARG && c == NULL && strstr(err.msg, "4096"), "%s", err.msg);
    cp.n_ctx = -1;
    CHECK(bn_context_new(m, &cp, &c, &err) == BN_ERR_INVALID_ARG);
    cp = bn_context_default_params();
    cp.n_seq = -2;
    CHECK(bn_context_new(m, &cp, &c, &err) == BN_ERR_INVALID_ARG);
    cp = bn_context_default_params();
    cp.n_threads = -1;
    CHECK(bn_context_new(m, &cp, &c, &err) == BN_ERR_INVALID_ARG);
    cp = bn_context_default_params();
    CHECK(cp.kv_type == BN_KV_F32);
    cp.kv_type = 2;
    st = bn_context_new(m, &cp, &c, &err);
    CHECKF(st == BN_ERR_INVALID_ARG && c == NULL && strstr(err.msg, "kv_type 2"), "%s", err.msg);
    CHECK(bn_context_new(NULL, NULL, &c, &err) == BN_ERR_INVALID_ARG && c == NULL);
    CHECK(bn_context_new(m, NULL, NULL, &err) == BN_ERR_INVALID_ARG);

    /* Defaults: n_ctx from the model. */
    cp = bn_context_default_params();
    cp.n_threads = 1;
    CHECK_OK(bn_context_new(m, &cp, &c, &err), &err);
    if (c) {
        CHECK(bn_context_n_ctx(c) == 4096 && bn_context_n_seq(c) == 1);
        /* 2 (K, V) x 1 seq x 1 layer x 4096 x kv_dim 8 x 4 bytes */
        CHECK(bn_context_kv_bytes(c) == 2ull * 4096 * 8 * 4);
        CHECK(bn_context_scratch_bytes(c) > 0);
        bn_context_free(c);
    }
    cp.kv_type = BN_KV_F16; /* half: 2 bytes an element */
    CHECK_OK(bn_context_new(m, &cp, &c, &err), &err);
    if (c) {
        CHECK(bn_context_kv_bytes(c) == 2ull * 4096 * 8 * 2);
        bn_context_free(c);
    }
    bn_context_free(NULL);
}

static void test_decode_errors(const bn_model *m) {
    bn_error err;
    bn_context *c = new_ctx(m, 4, 2, 3, 1);
    if (!c) return;
    int32_t tok[4] = {1, 2, 3, 4};
    bn_batch b = {0, tok, NULL, NULL, NULL};
    CHECK(bn_decode(c, &b, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_decode(c, NULL, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_decode(NULL, &b, &err) == BN_ERR_INVALID_ARG);
    b.n_tokens = 1;
    b.token = NULL;
    CHECK(bn_decode(c, &b, &err) == BN_ERR_INVALID_ARG);
    b.token = tok;
    /* More tokens than n_batch. */
    b.n_tokens = 4;
    bn_status st = bn_decode(c, &b, &err);
    CHECKF(st == BN_ERR_RANGE && strstr(err.msg, "n_batch"), "%s", err.msg);
    /* Token ids out of range. */
    int32_t bad[2] = {5, N_VOCAB};
    bn_batch bb = {2, bad, NULL, NULL, NULL};
    st = bn_decode(c, &bb, &err);
    CHECKF(st == BN_ERR_RANGE && strstr(err.msg, "32000") && strstr(err.msg, "index 1"), "%s",
           err.msg);
    bad[1] = -1;
    CHECK(bn_decode(c, &bb, &err) == BN_ERR_RANGE);
    CHECK(bn_kv_seq_len(c, 0) == 0);
    /* Sequence ids out of range. */
    int32_t seq[1] = {2};
    bn_batch bs = {1, tok, NULL, seq, NULL};
    st = bn_decode(c, &bs, &err);
    CHECKF(st == BN_ERR_RANGE && strstr(err.msg, "seq_id 2"), "%s", err.msg);
    seq[0] = -1;
    CHECK(bn_decode(c, &bs, &err) == BN_ERR_RANGE);
    /* Positions that do not continue the sequence. */
    int32_t pos[2] = {1, 2};
    bn_batch bp = {2, tok, pos, NULL, NULL};
    st = bn_decode(c, &bp, &err);
    CHECKF(st == BN_ERR_INVALID_ARG && strstr(err.msg, "pos 1"), "%s", err.msg);
    pos[0] = 0;
    pos[1] = 0; /* repeats a position */
    CHECK(bn_decode(c, &bp, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_kv_seq_len(c, 0) == 0 && bn_get_logits(c, -1) == NULL);
    pos[1] = 1;
    CHECK_OK(bn_decode(c, &bp, &err), &err);
    CHECK(bn_kv_seq_len(c, 0) == 2 && bn_kv_seq_len(c, 1) == 0);
    /* Logits: only the last token by default. */
    CHECK(bn_get_logits(c, -1) != NULL && bn_get_logits(c, 1) == bn_get_logits(c, -1));
    CHECK(bn_get_logits(c, 0) == NULL && bn_get_logits(c, 2) == NULL);
    CHECK(bn_get_logits(c, -2) == NULL && bn_get_logits(NULL, -1) == NULL);
    /* Context full: 2 more fit, the 5th position does not. */
    CHECK_OK(decode1(c, 7, 0, &err), &err);
    CHECK_OK(decode1(c, 8, 0, &err), &err);
    st = decode1(c, 9, 0, &err);
    CHECKF(st == BN_ERR_RANGE && strstr(err.msg, "context full"), "%s", err.msg);
    CHECK(bn_kv_seq_len(c, 0) == 4 && bn_get_logits(c, -1) == NULL);
    /* Sequence 1 is independent. */
    CHECK_OK(decode1(c, 9, 1, &err), &err);
    CHECK(bn_kv_seq_len(c, 1) == 1);
    /* A batch that overflows one sequence is refused whole. */
    int32_t s2[2] = {1, 0};
    bn_batch bf = {2, tok, NULL, s2, NULL};
    CHECK(bn_decode(c, &bf, &err) == BN_ERR_RANGE);
    CHECK(bn_kv_seq_len(c, 1) == 1);
    /* KV operations: argument checks. */
    CHECK(bn_kv_seq_truncate(c, 2, 0, &err) == BN_ERR_RANGE);
    CHECK(bn_kv_seq_truncate(c, 0, -1, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_kv_seq_copy(c, 0, 5, 1, &err) == BN_ERR_RANGE);
    CHECK(bn_kv_seq_copy(c, 1, 0, 2, &err) == BN_ERR_RANGE); /* seq 1 holds only 1 */
    CHECK(bn_kv_seq_len(c, 7) == 0 && bn_kv_seq_len(NULL, 0) == 0);
    CHECK_OK(bn_kv_seq_truncate(c, 0, 9, &err), &err); /* beyond the end: no-op */
    CHECK(bn_kv_seq_len(c, 0) == 4);
    CHECK_OK(bn_kv_seq_truncate(c, 0, 0, &err), &err);
    CHECK(bn_kv_seq_len(c, 0) == 0);
    CHECK_OK(decode1(c, 1, 0, &err), &err);
    bn_context_free(c);
}

/* Truncate and re-decode, copy a prefix to another sequence: the logits are
 * those of an uninterrupted run. */
static void test_kv_ops(const bn_model *m) {
    bn_error err;
    bn_context *c = new_ctx(m, 32, 3, 16, 2);
    if (!c) return;
    static float full[13][N_VOCAB];
    int8_t want[13];
    memset(want, 1, sizeof want);
    bn_batch b = {13, k_ids, NULL, NULL, want};
    CHECK_OK(bn_decode(c, &b, &err), &err);
    for (int i = 0; i < 13; i++) {
        const float *l = bn_get_logits(c, i);
        if (l) memcpy(full[i], l, sizeof full[i]);
    }
    /* Copy positions 0..7 of seq 0 to seq 2, continue there. */
    CHECK_OK(bn_kv_seq_copy(c, 0, 2, 8, &err), &err);
    CHECK(bn_kv_seq_len(c, 2) == 8);
    int32_t s2[5] = {2, 2, 2, 2, 2};
    int8_t w5[5] = {1, 1, 1, 1, 1};
    bn_batch b2 = {5, k_ids + 8, NULL, s2, w5};
    CHECK_OK(bn_decode(c, &b2, &err), &err);
    for (int i = 0; i < 5; i++) {
        const float *l = bn_get_logits(c, i);
        CHECK(l && memcmp(l, full[8 + i], sizeof full[0]) == 0);
    }
    /* Truncate seq 0 to 6 and replay positions 6..12. */
    CHECK_OK(bn_kv_seq_truncate(c, 0, 6, &err), &err);
    CHECK(bn_kv_seq_len(c, 0) == 6);
    for (int i = 6; i < 13; i++) {
        CHECK_OK(decode1(c, k_ids[i], 0, &err), &err);
        const float *l = bn_get_logits(c, -1);
        CHECK(l && memcmp(l, full[i], sizeof full[0]) == 0);
    }
    /* Copy a whole sequence with n = -1. */
    CHECK_OK(bn_kv_seq_copy(c, 0, 1, -1, &err), &err);
    CHECK(bn_kv_seq_len(c, 1) == 13);
    /* More threads, then fewer: same logits. */
    CHECK_OK(bn_context_set_threads(c, 4, &err), &err);
    CHECK_OK(bn_kv_seq_truncate(c, 1, 12, &err), &err);
    CHECK_OK(decode1(c, k_ids[12], 1, &err), &err);
    CHECK(bn_get_logits(c, -1) && memcmp(bn_get_logits(c, -1), full[12], sizeof full[0]) == 0);
    CHECK_OK(bn_context_set_threads(c, 1, &err), &err);
    CHECK(bn_context_set_threads(c, -1, &err) == BN_ERR_INVALID_ARG);
    CHECK_OK(bn_kv_seq_truncate(c, 1, 12, &err), &err);
    CHECK_OK(decode1(c, k_ids[12], 1, &err), &err);
    CHECK(bn_get_logits(c, -1) && memcmp(bn_get_logits(c, -1), full[12], sizeof full[0]) == 0);
    bn_context_free(c);
}

typedef struct AbortState {
    int calls;
    int stop_at;
} AbortState;

static int abort_cb(void *user) {
    AbortState *a = user;
    return ++a->calls >= a->stop_at;
}

static void test_cancel(const bn_model *m) {
    bn_error err;
    bn_context *c = new_ctx(m, 32, 1, 16, 2);
    if (!c) return;
    AbortState a = {0, 1};
    bn_context_set_abort(c, abort_cb, &a);
    bn_batch b = {5, k_ids, NULL, NULL, NULL};
    bn_status st = bn_decode(c, &b, &err);
    CHECKF(st == BN_ERR_CANCELLED && a.calls == 1, "%s (calls %d)", err.msg, a.calls);
    CHECK(bn_kv_seq_len(c, 0) == 0 && bn_get_logits(c, -1) == NULL);
    /* Not cancelling: the callback is asked once per layer. */
    a.calls = 0;
    a.stop_at = 1000;
    CHECK_OK(bn_decode(c, &b, &err), &err);
    CHECK(a.calls == 1); /* one layer */
    static float l1[N_VOCAB];
    if (bn_get_logits(c, -1)) memcpy(l1, bn_get_logits(c, -1), sizeof l1);
    bn_context_set_abort(c, NULL, NULL);
    /* A fresh context gives the same logits: the cancelled call left no
     * trace. */
    bn_context *c2 = new_ctx(m, 32, 1, 16, 1);
    if (c2) {
        CHECK_OK(bn_decode(c2, &b, &err), &err);
        CHECK(bn_get_logits(c2, -1) && memcmp(bn_get_logits(c2, -1), l1, sizeof l1) == 0);
        bn_context_free(c2);
    }
    bn_context_free(c);
}

/* ------------------------------------------------------------------------ */
/* Contexts on several threads sharing one model                            */
/* ------------------------------------------------------------------------ */

#define GEN 24

typedef struct GenJob {
    const bn_model *m;
    int start; /* prompt offset, so threads do different work */
    int n_threads;
    int32_t out[GEN];
    bn_status st;
} GenJob;

static void *gen_main(void *p) {
    GenJob *j = p;
    bn_context_params cp = bn_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = j->n_threads;
    bn_context *c = NULL;
    bn_error err;
    j->st = bn_context_new(j->m, &cp, &c, &err);
    if (j->st != BN_OK) return NULL;
    bn_batch b = {13 - j->start, k_ids + j->start, NULL, NULL, NULL};
    j->st = bn_decode(c, &b, &err);
    for (int i = 0; i < GEN && j->st == BN_OK; i++) {
        int32_t t = argmax(bn_get_logits(c, -1));
        j->out[i] = t;
        bn_batch b1 = {1, &t, NULL, NULL, NULL};
        j->st = bn_decode(c, &b1, &err);
    }
    bn_context_free(c);
    return NULL;
}

static void test_threads(const bn_model *m) {
    enum { N = 4 };
    GenJob seq[N], par[N];
    for (int i = 0; i < N; i++) {
        memset(&seq[i], 0, sizeof seq[i]);
        seq[i].m = m;
        seq[i].start = i;
        seq[i].n_threads = 1 + i % 2;
        par[i] = seq[i];
        gen_main(&seq[i]);
        CHECK(seq[i].st == BN_OK);
    }
    pthread_t th[N];
    int started[N];
    for (int i = 0; i < N; i++)
        started[i] = pthread_create(&th[i], NULL, gen_main, &par[i]) == 0;
    for (int i = 0; i < N; i++) {
        CHECK(started[i]);
        if (started[i]) pthread_join(th[i], NULL);
        CHECK(par[i].st == BN_OK);
        CHECKF(memcmp(seq[i].out, par[i].out, sizeof seq[i].out) == 0,
               "context %d on its own thread generated other tokens", i);
    }
}

/* ------------------------------------------------------------------------ */
/* The pool itself                                                          */
/* ------------------------------------------------------------------------ */

typedef struct PoolJob {
    atomic_int hits[8];
    int nth_seen;
} PoolJob;

static void pool_task(void *arg, int ith, int nth) {
    PoolJob *j = arg;
    atomic_fetch_add(&j->hits[ith], 1);
    if (ith == 0) j->nth_seen = nth;
}

static void test_pool(void) {
    bn_error err;
    bn_threadpool *p = NULL;
    CHECK(bn_threadpool_new(0, &p, &err) == BN_ERR_INVALID_ARG && p == NULL);
    for (int n = 1; n <= 8; n *= 2) {
        CHECK_OK(bn_threadpool_new(n, &p, &err), &err);
        if (!p) continue;
        CHECK(bn_threadpool_n_threads(p) == n);
        PoolJob j;
        for (int i = 0; i < 8; i++)
            atomic_init(&j.hits[i], 0);
        j.nth_seen = 0;
        const int runs = n > 2 ? 300 : 3000;
        for (int r = 0; r < runs; r++)
            bn_threadpool_run(p, pool_task, &j);
        int ok = j.nth_seen == n;
        for (int i = 0; i < 8; i++)
            ok = ok && atomic_load(&j.hits[i]) == (i < n ? runs : 0);
        CHECKF(ok, "pool of %d: every thread must run every job exactly once", n);
        bn_threadpool_free(p);
        p = NULL;
    }
    bn_threadpool_free(NULL);
}

/* ------------------------------------------------------------------------ */

static void test_model_errors(void) {
    bn_error err;
    bn_model *m = (bn_model *)1;
    bn_status st0 = bn_model_load("/nonexistent/model.gguf", NULL, &m, &err);
    CHECKF((st0 == BN_ERR_IO || st0 == BN_ERR_NOT_FOUND) && m == NULL &&
               strstr(err.msg, "nonexistent"),
           "%s", err.msg);
    CHECK(bn_model_load(NULL, NULL, &m, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_model_load(MODEL, NULL, NULL, &err) == BN_ERR_INVALID_ARG);
    bn_status st = bn_model_load(TESTDATA "gguf/truncated-header-v2.gguf", NULL, &m, &err);
    CHECK(st == BN_ERR_FORMAT && m == NULL);
    bn_model_params mp = bn_model_default_params();
    CHECK(mp.use_mmap == 1 && mp.n_layers == 0);
    mp.n_layers = -1;
    CHECK(bn_model_load(MODEL, &mp, &m, &err) == BN_ERR_INVALID_ARG);
    bn_model_free(NULL);
    bn_model_config cfg;
    bn_model_get_config(NULL, &cfg);
    CHECK(cfg.n_vocab == 0 && bn_model_n_params(NULL) == 0 && bn_model_tokenizer(NULL) == NULL);
}

/* Flip bytes in the hyperparameters and the tensor table of the real file:
 * loading either fails with a message or gives a model that decodes without
 * reading out of bounds (run under the sanitizers in CI). */
static void test_corrupt(void) {
    size_t size = 0;
    unsigned char *orig = bn_test_read_file(MODEL, &size);
    CHECK(orig && size > 724398);
    if (!orig || size <= 724398) {
        free(orig);
        return;
    }
    unsigned char *buf = malloc(size);
    char path[128];
    snprintf(path, sizeof path, "/tmp/bn_test_context_%ld.gguf", (long)getpid());
    uint64_t rs = 12345;
    int loaded = 0, failed = 0, bad = 0;
    for (int it = 0; buf && it < 120; it++) {
        memcpy(buf, orig, size);
        for (int f = 0; f < 1 + it % 3; f++) {
            rs ^= rs << 13;
            rs ^= rs >> 7;
            rs ^= rs << 17;
            /* [24, 520): general.* and llama.* keys; [723700, 724398): tensors */
            size_t off = (rs >> 8) % 2 ? 24 + (rs >> 16) % 496 : 723700 + (rs >> 16) % 698;
            buf[off] ^= (unsigned char)(1u << ((rs >> 40) % 8));
        }
        FILE *fp = fopen(path, "wb");
        if (!fp || fwrite(buf, 1, size, fp) != size) {
            if (fp) fclose(fp);
            break;
        }
        fclose(fp);
        bn_model *m = NULL;
        bn_error err;
        bn_status st = bn_model_load(path, NULL, &m, &err);
        if (st != BN_OK) {
            failed++;
            if (m != NULL || err.msg[0] == '\0') bad++;
            continue;
        }
        loaded++;
        bn_model_config cfg;
        bn_model_get_config(m, &cfg);
        bn_context_params cp = bn_context_default_params();
        cp.n_ctx = cfg.n_ctx_train < 16 ? cfg.n_ctx_train : 16;
        cp.n_threads = 2;
        bn_context *c = NULL;
        if (bn_context_new(m, &cp, &c, &err) == BN_OK) {
            int32_t ids[3] = {1, 2, 3};
            bn_batch b = {cfg.n_vocab > 3 && cp.n_ctx >= 3 ? 3 : 1, ids, NULL, NULL, NULL};
            if (bn_decode(c, &b, &err) == BN_OK && !bn_get_logits(c, -1)) bad++;
            bn_context_free(c);
        }
        bn_model_free(m);
    }
    printf("corrupted files: %d loaded and decoded, %d refused\n", loaded, failed);
    CHECK(bad == 0 && loaded + failed == 120);
    remove(path);
    free(buf);
    free(orig);
}

int main(void) {
    test_pool();
    test_corrupt();
    test_model_errors();
    bn_error err;
    bn_model *m = NULL;
    CHECK_OK(bn_model_load(MODEL, NULL, &m, &err), &err);
    if (m) {
        test_params(m);
        test_decode_errors(m);
        test_kv_ops(m);
        test_cancel(m);
        test_threads(m);
        bn_model_free(m);
    }
    return bn_test_finish("test_context");
}
