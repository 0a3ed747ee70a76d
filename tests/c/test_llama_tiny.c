/* The real tiny llama model against llama.cpp's logits
 * (../shared/testdata/gguf/llama-2-tiny-random.reference.json): every prompt
 * position within 1e-3 absolute with the same argmax, the same greedy
 * continuation through the KV cache; and our own consistency: token by token
 * vs all at once, 1 vs 2 threads, two sequences in one batch, mmap vs read. */
#include <stdint.h>

#include "bitnet.h"
#include "test_util.h"

#define MODEL TESTDATA "gguf/llama-2-tiny-random.gguf"
#define N_VOCAB 32000

typedef struct Run {
    const char *logits_file;
    int n_prompt;
    int32_t prompt[16];
    int n_greedy;
    int32_t greedy[16];
} Run;

/* Copied from llama-2-tiny-random.reference.json. */
static const Run k_runs[2] = {
    {TESTDATA "gguf/llama-2-tiny-random.hello.logits.f32",
     3,
     {1, 15043, 3186},
     8,
     {19356, 7267, 4736, 26640, 24077, 18579, 28435, 21432}},
    {TESTDATA "gguf/llama-2-tiny-random.fox.logits.f32",
     13,
     {1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366, 11203, 29889},
     16,
     {6544, 23122, 12681, 14340, 1189, 30070, 29182, 9645, 20945, 16138, 2451, 19209, 19982, 8317,
      15492, 19741}},
};

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (x[i] > x[best]) best = i;
    }
    return best;
}

static double max_abs_diff(const float *a, const float *b, int n) {
    double m = 0.0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
    }
    return m;
}

static bn_context *new_ctx(const bn_model *m, int n_ctx, int n_seq, int n_threads) {
    bn_context_params cp = bn_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_seq = n_seq;
    cp.n_threads = n_threads;
    bn_context *c = NULL;
    bn_error err;
    CHECK_OK(bn_context_new(m, &cp, &c, &err), &err);
    return c;
}

/* Logits of every prompt position, all tokens in one batch. */
static int eval_all(bn_context *c, const int32_t *ids, int n, int32_t seq, float *out) {
    int8_t want[64];
    int32_t seqs[64];
    for (int i = 0; i < n; i++) {
        want[i] = 1;
        seqs[i] = seq;
    }
    bn_batch b = {n, ids, NULL, seqs, want};
    bn_error err;
    bn_status st = bn_decode(c, &b, &err);
    CHECK_OK(st, &err);
    if (st != BN_OK) return 0;
    for (int i = 0; i < n; i++) {
        const float *l = bn_get_logits(c, i);
        CHECK(l != NULL);
        if (!l) return 0;
        memcpy(out + (size_t)i * N_VOCAB, l, N_VOCAB * sizeof(float));
    }
    return 1;
}

/* Logits of every prompt position, one token per decode. */
static int eval_one_by_one(bn_context *c, const int32_t *ids, int n, float *out) {
    for (int i = 0; i < n; i++) {
        int32_t pos = i;
        bn_batch b = {1, ids + i, &pos, NULL, NULL};
        bn_error err;
        bn_status st = bn_decode(c, &b, &err);
        CHECK_OK(st, &err);
        if (st != BN_OK) return 0;
        const float *l = bn_get_logits(c, -1);
        CHECK(l != NULL && l == bn_get_logits(c, 0));
        if (!l) return 0;
        memcpy(out + (size_t)i * N_VOCAB, l, N_VOCAB * sizeof(float));
    }
    return 1;
}

int main(void) {
    bn_error err;
    bn_model *m = NULL;
    CHECK_OK(bn_model_load(MODEL, NULL, &m, &err), &err);
    if (!m) return bn_test_finish("test_llama_tiny");

    bn_model_config cfg;
    bn_model_get_config(m, &cfg);
    CHECK(strcmp(cfg.arch, "llama") == 0);
    CHECK(cfg.n_vocab == N_VOCAB && cfg.n_embd == 8 && cfg.n_layer == 1 && cfg.n_head == 2);
    CHECK(cfg.n_head_kv == 2 && cfg.head_dim == 4 && cfg.n_ff == 32 && cfg.rope_dim == 4);
    CHECK(cfg.n_ctx_train == 4096 && cfg.tied_output == 0 && cfg.ffn_act == 0);
    CHECK(cfg.weight_type == BN_TYPE_F16 && cfg.embd_type == BN_TYPE_F16);
    CHECK(fabsf(cfg.rope_theta - 10000.0f) < 1e-3f);
    CHECK(bn_model_n_params(m) == 2 * 32000 * 8 + 4 * 64 + 3 * 256 + 3 * 8);
    CHECK(bn_model_gguf(m) != NULL);

    /* The file's own vocabulary gives the reference prompts' ids. */
    const bn_tokenizer *tok = bn_model_tokenizer(m);
    CHECK(tok != NULL);
    if (tok) {
        CHECK(bn_tokenizer_n_vocab(tok) == N_VOCAB);
        const char *texts[2] = {"Hello world", "The quick brown fox jumps over the lazy dog."};
        bn_encode_opts eo;
        memset(&eo, 0, sizeof eo);
        eo.add_bos = 1;
        for (int r = 0; r < 2; r++) {
            int32_t ids[32];
            size_t n = 0;
            CHECK_OK(bn_tokenize(tok, texts[r], strlen(texts[r]), &eo, ids, 32, &n, &err), &err);
            CHECKF(n == (size_t)k_runs[r].n_prompt &&
                       memcmp(ids, k_runs[r].prompt, n * sizeof(int32_t)) == 0,
                   "tokenizing '%s'", texts[r]);
        }
    }

    double worst_ref = 0.0, worst_self = 0.0, worst_thr = 0.0, worst_seq = 0.0, worst_nomap = 0.0;
    float *ref[2] = {NULL, NULL};
    float *got = malloc((size_t)16 * N_VOCAB * sizeof(float));
    float *got2 = malloc((size_t)16 * N_VOCAB * sizeof(float));
    CHECK(got && got2);

    for (int r = 0; r < 2 && got && got2; r++) {
        const Run *run = &k_runs[r];
        size_t size = 0;
        ref[r] = (float *)bn_test_read_file(run->logits_file, &size);
        CHECK(ref[r] && size == (size_t)run->n_prompt * N_VOCAB * sizeof(float));
        if (!ref[r] || size != (size_t)run->n_prompt * N_VOCAB * sizeof(float)) continue;

        /* 1. All prompt positions in one batch vs llama.cpp. */
        bn_context *c = new_ctx(m, 64, 1, 1);
        if (!c) continue;
        if (eval_all(c, run->prompt, run->n_prompt, 0, got)) {
            for (int p = 0; p < run->n_prompt; p++) {
                const float *a = got + (size_t)p * N_VOCAB, *b = ref[r] + (size_t)p * N_VOCAB;
                double d = max_abs_diff(a, b, N_VOCAB);
                if (d > worst_ref) worst_ref = d;
                CHECKF(d <= 1e-3, "run %d pos %d: max diff %g", r, p, d);
                CHECKF(argmax(a, N_VOCAB) == argmax(b, N_VOCAB), "run %d pos %d: argmax %d vs %d",
                       r, p, argmax(a, N_VOCAB), argmax(b, N_VOCAB));
            }
        }
        CHECK(bn_kv_seq_len(c, 0) == run->n_prompt);

        /* 2. Greedy continuation, one token at a time through the cache. */
        int32_t next = argmax(got + (size_t)(run->n_prompt - 1) * N_VOCAB, N_VOCAB);
        int same = 1;
        for (int i = 0; i < run->n_greedy; i++) {
            if (next != run->greedy[i]) {
                same = 0;
                fprintf(stderr, "run %d greedy step %d: %d vs %d\n", r, i, next, run->greedy[i]);
                break;
            }
            bn_batch b = {1, &next, NULL, NULL, NULL};
            bn_status st = bn_decode(c, &b, &err);
            CHECK_OK(st, &err);
            if (st != BN_OK) {
                same = 0;
                break;
            }
            next = argmax(bn_get_logits(c, -1), N_VOCAB);
        }
        CHECKF(same, "run %d: greedy continuation differs", r);
        CHECK(bn_kv_seq_len(c, 0) == run->n_prompt + run->n_greedy);
        bn_context_free(c);

        /* 3. One token at a time vs all at once, and 2 threads vs 1. */
        const int threads[2] = {1, 2};
        for (int ti = 0; ti < 2; ti++) {
            c = new_ctx(m, 64, 1, threads[ti]);
            if (!c) continue;
            if (eval_one_by_one(c, run->prompt, run->n_prompt, got2)) {
                double d = max_abs_diff(got, got2, run->n_prompt * N_VOCAB);
                if (d > worst_self) worst_self = d;
                CHECKF(d <= 1e-5, "run %d, %d threads: token-by-token differs by %g", r,
                       threads[ti], d);
            }
            bn_context_free(c);
        }
        c = new_ctx(m, 64, 1, 2);
        if (c && eval_all(c, run->prompt, run->n_prompt, 0, got2)) {
            double d = max_abs_diff(got, got2, run->n_prompt * N_VOCAB);
            if (d > worst_thr) worst_thr = d;
            CHECKF(d <= 1e-6, "run %d: 2 threads differ by %g", r, d);
        }
        bn_context_free(c);
    }

    /* 4. Both prompts in one batch, as sequences 0 and 1, interleaved. */
    if (ref[0] && ref[1] && got) {
        bn_context *c = new_ctx(m, 64, 2, 2);
        const Run *r0 = &k_runs[0], *r1 = &k_runs[1];
        int32_t ids[32], seq[32], pos[32];
        int8_t want[32];
        int n = 0, i0 = 0, i1 = 0;
        int idx0[16], idx1[16];
        while (i0 < r0->n_prompt || i1 < r1->n_prompt) {
            if (i1 < r1->n_prompt) {
                idx1[i1] = n;
                ids[n] = r1->prompt[i1], seq[n] = 1, pos[n] = i1, want[n] = 1, n++, i1++;
            }
            if (i0 < r0->n_prompt) {
                idx0[i0] = n;
                ids[n] = r0->prompt[i0], seq[n] = 0, pos[n] = i0, want[n] = 1, n++, i0++;
            }
        }
        bn_batch b = {n, ids, pos, seq, want};
        if (c) {
            CHECK_OK(bn_decode(c, &b, &err), &err);
            for (int p = 0; p < r0->n_prompt; p++) {
                const float *l = bn_get_logits(c, idx0[p]);
                CHECK(l != NULL);
                if (!l) continue;
                double d = max_abs_diff(l, ref[0] + (size_t)p * N_VOCAB, N_VOCAB);
                if (d > worst_seq) worst_seq = d;
                CHECKF(d <= 1e-3, "2-seq batch, seq 0 pos %d: %g", p, d);
            }
            for (int p = 0; p < r1->n_prompt; p++) {
                const float *l = bn_get_logits(c, idx1[p]);
                CHECK(l != NULL);
                if (!l) continue;
                double d = max_abs_diff(l, ref[1] + (size_t)p * N_VOCAB, N_VOCAB);
                if (d > worst_seq) worst_seq = d;
                CHECKF(d <= 1e-3, "2-seq batch, seq 1 pos %d: %g", p, d);
            }
            CHECK(bn_kv_seq_len(c, 0) == r0->n_prompt && bn_kv_seq_len(c, 1) == r1->n_prompt);
            /* The last token that asked is the last of the batch. */
            CHECK(bn_get_logits(c, -1) == bn_get_logits(c, n - 1));
        }
        bn_context_free(c);
    }

    /* 5. Without mmap: the same logits. */
    if (ref[1] && got) {
        bn_model_params mp = bn_model_default_params();
        mp.use_mmap = 0;
        bn_model *m2 = NULL;
        CHECK_OK(bn_model_load(MODEL, &mp, &m2, &err), &err);
        if (m2) {
            bn_context *c = new_ctx(m2, 32, 1, 1);
            if (c && eval_all(c, k_runs[1].prompt, k_runs[1].n_prompt, 0, got2)) {
                worst_nomap = max_abs_diff(got, got2, k_runs[1].n_prompt * N_VOCAB);
                CHECKF(worst_nomap == 0.0, "use_mmap=0 differs by %g", worst_nomap);
            }
            bn_context_free(c);
            bn_model_free(m2);
        }
        /* Asking for more layers than the file has is an error. */
        mp.use_mmap = 1;
        mp.n_layers = 2;
        bn_status st = bn_model_load(MODEL, &mp, &m2, &err);
        CHECKF(st == BN_ERR_INVALID_ARG && m2 == NULL, "n_layers 2: %s", err.msg);
    }

    printf("llama-2-tiny-random vs llama.cpp: max |logit diff| %.3g over all prompt positions\n",
           worst_ref);
    printf("token-by-token vs batch: %.3g; 2 vs 1 threads: %.3g; 2-seq batch vs llama.cpp: %.3g; "
           "no-mmap: %.3g\n",
           worst_self, worst_thr, worst_seq, worst_nomap);
    free(ref[0]);
    free(ref[1]);
    free(got);
    free(got2);
    bn_model_free(m);
    return bn_test_finish("test_llama_tiny");
}
