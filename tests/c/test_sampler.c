/* Sampler tests: each filter's kept set and probabilities on hand-made
 * logits, a naive full-sort reference for whole chains (up to a 128256-token
 * vocabulary), penalties, mirostat, seed reproducibility, a chi-square check
 * of the draws, and the error paths. */
#include <stdint.h>
#include <time.h>

#include "bitnet.h"
#include "rng.h"
#include "test_util.h"

static bn_sampler_params plain(void) {
    /* Every filter off, temperature 1: probs == softmax(logits). */
    bn_sampler_params p = bn_sampler_default_params();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.typical_p = 1.0f;
    return p;
}

static bn_sampler *make(const bn_sampler_params *p, int n) {
    bn_sampler *s = NULL;
    bn_error err;
    bn_status st = bn_sampler_new(p, n, &s, &err);
    CHECKF(st == BN_OK, "bn_sampler_new: %s", err.msg);
    return s;
}

static void softmax_d(const double *l, int n, double *out) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        if (l[i] > mx) mx = l[i];
    for (int i = 0; i < n; i++)
        sum += out[i] = exp(l[i] - mx);
    for (int i = 0; i < n; i++)
        out[i] /= sum;
}

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol; }

/* probs over logits from `p`; checks they match `want` (n entries). */
static void check_probs(const bn_sampler_params *p, const float *logits, const double *want, int n,
                        const char *what) {
    bn_sampler *s = make(p, n);
    if (!s) return;
    float *probs = malloc((size_t)n * sizeof *probs);
    bn_error err;
    CHECK_OK(bn_sampler_probs(s, logits, probs, &err), &err);
    for (int i = 0; i < n; i++)
        CHECKF(close_to(probs[i], want[i], 1e-6), "%s: probs[%d] = %.8f, want %.8f", what, i,
               (double)probs[i], want[i]);
    free(probs);
    bn_sampler_free(s);
}

/* ---- hand-made cases ---------------------------------------------------- */

/* probs 0.5, 0.25, 0.125, 0.0625, 0.0625 */
static const float dyadic[5] = {0.0f, -0.69314718f, -1.38629436f, -2.07944154f, -2.07944154f};

static void test_defaults(void) {
    bn_sampler_params p = bn_sampler_default_params();
    CHECK(p.temperature == 0.8f);
    CHECK(p.top_k == 40);
    CHECK(p.top_p == 0.95f);
    CHECK(p.min_p == 0.05f);
    CHECK(p.typical_p == 1.0f);
    CHECK(p.mirostat == 0);
    CHECK(p.mirostat_tau == 5.0f);
    CHECK(p.mirostat_eta == 0.1f);
    CHECK(p.repeat_penalty == 1.0f);
    CHECK(p.frequency_penalty == 0.0f);
    CHECK(p.presence_penalty == 0.0f);
    CHECK(p.penalty_last_n == 64);
    CHECK(p.seed == 0xDEADBEEFu);
    bn_sampler *s = NULL;
    bn_error err;
    CHECK_OK(bn_sampler_new(NULL, 10, &s, &err), &err); /* NULL params: defaults */
    bn_sampler_free(s);
    bn_sampler_free(NULL);
}

static void test_plain_softmax(void) {
    bn_sampler_params p = plain();
    double want[5] = {0.5, 0.25, 0.125, 0.0625, 0.0625};
    check_probs(&p, dyadic, want, 5, "plain");
}

static void test_greedy(void) {
    bn_sampler_params p = bn_sampler_default_params();
    p.temperature = 0;
    float l[6] = {1, 3, -2, 3, 0.5f, 2};
    double want[6] = {0, 1, 0, 0, 0, 0}; /* tie 1 vs 3: lowest id */
    check_probs(&p, l, want, 6, "greedy");
    bn_sampler *s = make(&p, 6);
    bn_error err;
    int32_t tok = -1;
    for (int i = 0; i < 5; i++) {
        CHECK_OK(bn_sampler_sample(s, l, &tok, &err), &err);
        CHECK(tok == 1);
    }
    /* logits are not modified */
    CHECK(l[1] == 3 && l[3] == 3);
    /* greedy with a repeat penalty takes the argmax of penalized logits */
    bn_sampler_free(s);
    p.repeat_penalty = 2.0f;
    s = make(&p, 6);
    bn_sampler_accept(s, 1);
    bn_sampler_accept(s, 3);
    CHECK_OK(bn_sampler_sample(s, l, &tok, &err), &err);
    CHECK(tok == 5); /* 3/2 = 1.5 < 2 */
    bn_sampler_free(s);
}

/* Greedy without penalties skips building the candidate set: it must pick
 * what the full chain picks (bn_sampler_probs still builds it), ties and
 * signed zeros included, and report the same bad logits. */
static void test_greedy_fast_path(void) {
    bn_sampler_params p = bn_sampler_default_params();
    p.temperature = 0;
    const int n = 128256;
    float *l = malloc((size_t)n * sizeof *l), *probs = malloc((size_t)n * sizeof *probs);
    bn_sampler *s = make(&p, n);
    bn_error err;
    bn_rng r;
    bn_rng_seed(&r, 11);
    for (int trial = 0; trial < 6; trial++) {
        /* coarse values (many ties) in trials 0-2, a lone maximum late in the
         * vocabulary in 3, signed zeros as the maximum in 4, -inf mixed in 5 */
        for (int i = 0; i < n; i++)
            l[i] = trial < 3 ? (float)(int)(bn_rng_double(&r) * 50) - 60.0f
                             : (float)bn_rng_double(&r) - 2.0f;
        if (trial == 3) l[n - 7] = 5.0f;
        if (trial == 4) l[900] = -0.0f, l[77] = 0.0f, l[40000] = -0.0f;
        if (trial == 5) {
            for (int i = 0; i < n; i += 3)
                l[i] = -INFINITY;
        }
        int32_t tok = -1, want = -1;
        CHECK_OK(bn_sampler_sample(s, l, &tok, &err), &err);
        CHECK_OK(bn_sampler_probs(s, l, probs, &err), &err);
        for (int i = 0; i < n && want < 0; i++)
            if (probs[i] == 1.0f) want = i;
        CHECKF(tok == want, "trial %d: fast greedy picked %d, the chain %d", trial, tok, want);
        if (trial == 3) CHECK(tok == n - 7);
        if (trial == 4) CHECK(tok == 77);
    }
    int32_t tok;
    l[n - 1] = NAN;
    CHECK(bn_sampler_sample(s, l, &tok, &err) == BN_ERR_INVALID_ARG &&
          strstr(err.msg, "[128255] is NaN"));
    l[n - 1] = 0;
    l[5] = INFINITY;
    CHECK(bn_sampler_sample(s, l, &tok, &err) == BN_ERR_INVALID_ARG &&
          strstr(err.msg, "[5] is +inf"));
    for (int i = 0; i < n; i++)
        l[i] = -INFINITY;
    CHECK(bn_sampler_sample(s, l, &tok, &err) == BN_ERR_INVALID_ARG && strstr(err.msg, "-inf"));
    free(l);
    free(probs);
    bn_sampler_free(s);
}

static void test_top_k(void) {
    bn_sampler_params p = plain();
    p.top_k = 2;
    double want[5] = {2.0 / 3, 1.0 / 3, 0, 0, 0};
    check_probs(&p, dyadic, want, 5, "top_k=2");
    p.top_k = 4; /* tie at the boundary: lower id (3) kept */
    double w4[5] = {0.5 / 0.9375, 0.25 / 0.9375, 0.125 / 0.9375, 0.0625 / 0.9375, 0};
    check_probs(&p, dyadic, w4, 5, "top_k=4");
    p.top_k = 100; /* more than the vocabulary: off */
    double all[5] = {0.5, 0.25, 0.125, 0.0625, 0.0625};
    check_probs(&p, dyadic, all, 5, "top_k=100");
    p.top_k = -3; /* negative: off */
    check_probs(&p, dyadic, all, 5, "top_k=-3");
}

static void test_top_p(void) {
    bn_sampler_params p = plain();
    p.top_p = 0.7f; /* 0.5 < 0.7 <= 0.75: two tokens */
    double w2[5] = {2.0 / 3, 1.0 / 3, 0, 0, 0};
    check_probs(&p, dyadic, w2, 5, "top_p=0.7");
    p.top_p = 0.8f;
    double w3[5] = {0.5 / 0.875, 0.25 / 0.875, 0.125 / 0.875, 0, 0};
    check_probs(&p, dyadic, w3, 5, "top_p=0.8");
    p.top_p = 0.3f; /* the first token alone already reaches p */
    double w1[5] = {1, 0, 0, 0, 0};
    check_probs(&p, dyadic, w1, 5, "top_p=0.3");
}

static void test_min_p(void) {
    bn_sampler_params p = plain();
    p.min_p = 0.3f; /* p >= 0.15 */
    double w2[5] = {2.0 / 3, 1.0 / 3, 0, 0, 0};
    check_probs(&p, dyadic, w2, 5, "min_p=0.3");
    p.min_p = 0.2f; /* p >= 0.1 */
    double w3[5] = {0.5 / 0.875, 0.25 / 0.875, 0.125 / 0.875, 0, 0};
    check_probs(&p, dyadic, w3, 5, "min_p=0.2");
    p.min_p = 1.0f;
    double w1[5] = {1, 0, 0, 0, 0};
    check_probs(&p, dyadic, w1, 5, "min_p=1");
    /* min-p is applied before temperature (llama.cpp order): with T = 2 the
     * kept set is still {0, 1}, then flattened. */
    p.min_p = 0.3f;
    p.temperature = 2.0f;
    double a = exp(0.0), b = exp(-0.69314718 / 2);
    double wt[5] = {a / (a + b), b / (a + b), 0, 0, 0};
    check_probs(&p, dyadic, wt, 5, "min_p=0.3 T=2");
}

static void test_temperature(void) {
    bn_sampler_params p = plain();
    float l[4] = {1.0f, 0.5f, -1.0f, 2.0f};
    double ld[4], want[4];
    for (int k = 0; k < 3; k++) {
        double t = k == 0 ? 0.5 : k == 1 ? 1.7 : 100;
        p.temperature = (float)t;
        for (int i = 0; i < 4; i++)
            ld[i] = l[i] / (double)p.temperature;
        softmax_d(ld, 4, want);
        check_probs(&p, l, want, 4, "temperature");
    }
}

static void test_typical(void) {
    /* probs 0.4, 0.3, 0.2, 0.1: H = 1.2799; |-ln p - H| = 0.364, 0.076,
     * 0.330, 1.023; order 1, 2, 0, 3. Mass 0.3, 0.5, 0.9, 1.0. */
    float l[4] = {logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f)};
    bn_sampler_params p = plain();
    p.typical_p = 0.45f; /* 0.5 > 0.45: tokens 1, 2 */
    double w12[4] = {0, 0.6, 0.4, 0};
    check_probs(&p, l, w12, 4, "typical=0.45");
    p.typical_p = 0.2f; /* 0.3 > 0.2: token 1 only */
    double w1[4] = {0, 1, 0, 0};
    check_probs(&p, l, w1, 4, "typical=0.2");
    p.typical_p = 0.6f; /* 0.9 > 0.6: tokens 1, 2, 0 */
    double w3[4] = {4.0 / 9, 3.0 / 9, 2.0 / 9, 0};
    check_probs(&p, l, w3, 4, "typical=0.6");
}

/* ---- penalties ---------------------------------------------------------- */

static void test_penalties(void) {
    float l[5] = {2.0f, -1.0f, 0.5f, 0.0f, 1.0f};
    bn_sampler_params p = plain();
    p.repeat_penalty = 2.0f;
    p.frequency_penalty = 0.25f;
    p.presence_penalty = 0.5f;
    p.penalty_last_n = 3;
    bn_sampler *s = make(&p, 5);
    if (!s) return;
    bn_error err;
    float probs[5];
    double ld[5], want[5];
    /* history 4 0 0 1 1: the last 3 are 0 1 1 */
    int hist[5] = {4, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++)
        bn_sampler_accept(s, hist[i]);
    bn_sampler_accept(s, -1); /* out of range: ignored */
    bn_sampler_accept(s, 5);
    CHECK_OK(bn_sampler_probs(s, l, probs, &err), &err);
    ld[0] = 2.0 / 2 - (1 * 0.25 + 0.5);  /* positive: divided */
    ld[1] = -1.0 * 2 - (2 * 0.25 + 0.5); /* negative: multiplied */
    ld[2] = 0.5;
    ld[3] = 0.0;
    ld[4] = 1.0; /* left the window */
    softmax_d(ld, 5, want);
    for (int i = 0; i < 5; i++)
        CHECKF(close_to(probs[i], want[i], 1e-6), "penalty probs[%d] = %g, want %g", i,
               (double)probs[i], want[i]);
    /* reset clears the history */
    bn_sampler_reset(s, 1);
    CHECK_OK(bn_sampler_probs(s, l, probs, &err), &err);
    for (int i = 0; i < 5; i++)
        ld[i] = l[i];
    softmax_d(ld, 5, want);
    for (int i = 0; i < 5; i++)
        CHECK(close_to(probs[i], want[i], 1e-6));
    bn_sampler_free(s);

    /* penalty_last_n = -1: the whole history; 0: none */
    p.penalty_last_n = -1;
    p.repeat_penalty = 1.0f;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 1.0f;
    s = make(&p, 5);
    for (int i = 0; i < 100; i++)
        bn_sampler_accept(s, 2);
    CHECK_OK(bn_sampler_probs(s, l, probs, &err), &err);
    CHECK(probs[2] < 1e-30f);
    bn_sampler_free(s);
    p.penalty_last_n = 0;
    s = make(&p, 5);
    for (int i = 0; i < 100; i++)
        bn_sampler_accept(s, 2);
    CHECK_OK(bn_sampler_probs(s, l, probs, &err), &err);
    for (int i = 0; i < 5; i++)
        ld[i] = l[i];
    softmax_d(ld, 5, want);
    CHECK(close_to(probs[2], want[2], 1e-6));
    bn_sampler_free(s);
}

/* ---- a naive reference for whole chains -------------------------------- */

typedef struct ref_c {
    float l;
    float key;
    float p;
    int id;
} ref_c;

static int ref_cmp(const void *pa, const void *pb) {
    const ref_c *a = pa, *b = pb;
    if (a->key != b->key) return a->key > b->key ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static void ref_softmax(ref_c *c, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (c[i].l > mx) mx = c[i].l;
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += c[i].p = expf(c[i].l - mx);
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++)
        c[i].p *= inv;
}

static void ref_sort_logit(ref_c *c, int n) {
    for (int i = 0; i < n; i++)
        c[i].key = c[i].l;
    qsort(c, (size_t)n, sizeof *c, ref_cmp);
}

/* Full sorts everywhere: slow and obviously in the documented order. */
static void ref_probs(const bn_sampler_params *p, const float *logits, int n, float *out) {
    ref_c *c = malloc((size_t)n * sizeof *c);
    for (int i = 0; i < n; i++)
        c[i] = (ref_c){logits[i], logits[i], 0, i};
    ref_sort_logit(c, n);
    int size = n;
    if (p->top_k > 0 && p->top_k < size) size = p->top_k;
    if (p->typical_p < 1) {
        ref_softmax(c, size);
        double h = 0;
        for (int i = 0; i < size; i++)
            if (c[i].p > 0) h -= (double)c[i].p * logf(c[i].p);
        for (int i = 0; i < size; i++)
            c[i].key = c[i].p > 0 ? -fabsf(-logf(c[i].p) - (float)h) : -INFINITY;
        qsort(c, (size_t)size, sizeof *c, ref_cmp);
        double cum = 0;
        for (int i = 0; i < size; i++) {
            cum += c[i].p;
            if (cum > p->typical_p) {
                size = i + 1;
                break;
            }
        }
        ref_sort_logit(c, size);
    }
    if (p->top_p < 1) {
        ref_softmax(c, size);
        double cum = 0;
        for (int i = 0; i < size; i++) {
            cum += c[i].p;
            if (cum >= p->top_p) {
                size = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0) {
        float thr = c[0].l + logf(p->min_p);
        int w = 0;
        for (int i = 0; i < size; i++)
            if (c[i].l >= thr) c[w++] = c[i];
        size = w;
    }
    for (int i = 0; i < size; i++)
        c[i].l /= p->temperature;
    ref_softmax(c, size);
    memset(out, 0, (size_t)n * sizeof *out);
    for (int i = 0; i < size; i++)
        out[c[i].id] = c[i].p;
    free(c);
}

static void random_logits(bn_rng *r, float *l, int n, float scale) {
    for (int i = 0; i < n; i++) {
        /* sum of uniforms: roughly normal, with a heavy-ish head */
        float u = bn_rng_float(r) + bn_rng_float(r) + bn_rng_float(r) - 1.5f;
        l[i] = scale * u;
    }
}

static int compare_chain(const bn_sampler_params *p, const float *l, int n, const char *what) {
    float *got = malloc((size_t)n * sizeof *got), *want = malloc((size_t)n * sizeof *want);
    bn_sampler *s = make(p, n);
    bn_error err;
    int bad = 0, kept = 0;
    if (s && got && want) {
        CHECK_OK(bn_sampler_probs(s, l, got, &err), &err);
        ref_probs(p, l, n, want);
        for (int i = 0; i < n; i++) {
            kept += want[i] > 0;
            if ((got[i] > 0) != (want[i] > 0) || !close_to(got[i], want[i], 1e-6)) bad++;
        }
        CHECKF(bad == 0, "%s: %d of %d probabilities differ from the reference (kept %d)", what,
               bad, n, kept);
    }
    bn_sampler_free(s);
    free(got);
    free(want);
    return kept;
}

static void test_chains(void) {
    bn_rng r;
    bn_rng_seed(&r, 42);
    const int sizes[3] = {50, 1000, 128256};
    float *l = malloc(128256 * sizeof *l);
    for (int si = 0; si < 3; si++) {
        int n = sizes[si];
        for (int trial = 0; trial < (n > 1000 ? 3 : 20); trial++) {
            float scale = trial % 3 == 0 ? 2.0f : trial % 3 == 1 ? 8.0f : 30.0f;
            random_logits(&r, l, n, scale);
            bn_sampler_params p = bn_sampler_default_params();
            compare_chain(&p, l, n, "defaults");
            p = plain();
            p.top_p = 0.9f;
            compare_chain(&p, l, n, "top_p alone");
            p = plain();
            p.typical_p = 0.7f;
            compare_chain(&p, l, n, "typical alone");
            p = plain();
            p.min_p = 0.1f;
            p.temperature = 1.3f;
            compare_chain(&p, l, n, "min_p + temperature");
            p = plain();
            p.top_k = n / 3;
            p.typical_p = 0.9f;
            p.top_p = 0.8f;
            p.min_p = 0.02f;
            p.temperature = 0.7f;
            compare_chain(&p, l, n, "all filters");
        }
    }
    /* ties everywhere: many equal logits */
    for (int i = 0; i < 1000; i++)
        l[i] = (float)(i % 7);
    bn_sampler_params p = plain();
    p.top_k = 300;
    p.top_p = 0.5f;
    compare_chain(&p, l, 1000, "ties");
    /* orders that trouble naive quickselects: sorted both ways, all equal,
     * organ pipe */
    int n = 128256;
    for (int shape = 0; shape < 4; shape++) {
        for (int i = 0; i < n; i++) {
            float x = (float)i * 1e-4f;
            l[i] = shape == 0   ? x
                   : shape == 1 ? -x
                   : shape == 2 ? 0.5f
                                : (i < n / 2 ? x : (float)(n - i) * 1e-4f);
        }
        p = plain();
        p.top_p = 0.5f;
        compare_chain(&p, l, n, "top_p on ordered logits");
        p = plain();
        p.typical_p = 0.3f;
        compare_chain(&p, l, n, "typical on ordered logits");
        p = plain();
        p.top_k = 5000;
        p.min_p = 0.9f;
        compare_chain(&p, l, n, "top_k + min_p on ordered logits");
    }
    free(l);
}

/* ---- mirostat ----------------------------------------------------------- */

static void test_mirostat(void) {
    bn_rng r;
    bn_rng_seed(&r, 7);
    int n = 2000;
    float *l = malloc((size_t)n * sizeof *l), *probs = malloc((size_t)n * sizeof *probs);
    random_logits(&r, l, n, 10.0f);
    bn_error err;

    /* v2: kept = tokens with -log2 p <= mu, mu = 2 tau at the start */
    bn_sampler_params p = plain();
    p.mirostat = 2;
    p.mirostat_tau = 3.0f;
    bn_sampler *s = make(&p, n);
    double *ld = malloc((size_t)n * sizeof *ld), *sm = malloc((size_t)n * sizeof *sm);
    for (int i = 0; i < n; i++)
        ld[i] = l[i];
    softmax_d(ld, n, sm);
    CHECK_OK(bn_sampler_probs(s, l, probs, &err), &err);
    int kept = 0, want_kept = 0;
    for (int i = 0; i < n; i++) {
        kept += probs[i] > 0;
        want_kept += -log2(sm[i]) <= 6.0;
        if (-log2(sm[i]) < 5.99) CHECK(probs[i] > 0);
        if (-log2(sm[i]) > 6.01) CHECK(probs[i] == 0);
    }
    CHECKF(kept == want_kept && kept > 0, "mirostat v2 kept %d, want %d", kept, want_kept);
    /* mu moves towards tau: after many draws the surprise of the kept set
     * shrinks or grows, and probs (which does not update mu) is stable. */
    float *probs2 = malloc((size_t)n * sizeof *probs2);
    CHECK_OK(bn_sampler_probs(s, l, probs2, &err), &err);
    CHECK(memcmp(probs, probs2, (size_t)n * sizeof *probs) == 0);
    int32_t tok;
    for (int i = 0; i < 50; i++) {
        CHECK_OK(bn_sampler_sample(s, l, &tok, &err), &err);
        CHECK(tok >= 0 && tok < n && -log2(sm[tok]) <= 6.0 + 3.0); /* within a loose bound */
    }
    bn_sampler_free(s);

    /* v1: k from the Zipf estimate over the top 100 tokens */
    p.mirostat = 1;
    p.mirostat_tau = 5.0f;
    s = make(&p, n);
    CHECK_OK(bn_sampler_probs(s, l, probs, &err), &err);
    /* reference: sort softmax descending */
    double *sorted = malloc((size_t)n * sizeof *sorted);
    memcpy(sorted, sm, (size_t)n * sizeof *sorted);
    for (int i = 1; i < n; i++) { /* insertion sort, descending */
        double v = sorted[i];
        int j = i - 1;
        while (j >= 0 && sorted[j] < v) {
            sorted[j + 1] = sorted[j];
            j--;
        }
        sorted[j + 1] = v;
    }
    double num = 0, den = 0;
    for (int i = 0; i < 99; i++) {
        double t = log((i + 2.0) / (i + 1.0)), b = log(sorted[i] / sorted[i + 1]);
        num += t * b;
        den += t * t;
    }
    double sh = num / den, eh = sh - 1;
    double k = pow(eh * pow(2, 10.0) / (1 - pow(n, -eh)), 1 / sh);
    int kk = k < 1 ? 1 : k > n ? n : (int)k;
    kept = 0;
    for (int i = 0; i < n; i++)
        kept += probs[i] > 0;
    CHECKF(abs(kept - kk) <= 1, "mirostat v1 kept %d, reference k %d (%.3f)", kept, kk, k);
    for (int i = 0; i < 20; i++)
        CHECK_OK(bn_sampler_sample(s, l, &tok, &err), &err);
    bn_sampler_free(s);
    free(sorted);
    free(probs2);
    free(ld);
    free(sm);
    free(l);
    free(probs);
}

/* ---- randomness ---------------------------------------------------------- */

static void test_reproducible(void) {
    bn_rng r;
    bn_rng_seed(&r, 99);
    int n = 5000;
    float *l = malloc((size_t)n * sizeof *l);
    random_logits(&r, l, n, 3.0f);
    bn_sampler_params p = bn_sampler_default_params();
    p.seed = 1234;
    p.repeat_penalty = 1.1f;
    bn_sampler *a = make(&p, n), *b = make(&p, n);
    p.seed = 1235;
    bn_sampler *c = make(&p, n);
    bn_error err;
    int32_t seq[64];
    int same_ab = 1, same_ac = 1;
    float *probs = malloc((size_t)n * sizeof *probs);
    for (int i = 0; i < 64; i++) {
        int32_t ta, tb, tc;
        CHECK_OK(bn_sampler_sample(a, l, &ta, &err), &err);
        /* probs must not advance the RNG */
        CHECK_OK(bn_sampler_probs(b, l, probs, &err), &err);
        CHECK_OK(bn_sampler_sample(b, l, &tb, &err), &err);
        CHECK_OK(bn_sampler_sample(c, l, &tc, &err), &err);
        CHECK(probs[ta] > 0);
        same_ab &= ta == tb;
        same_ac &= ta == tc;
        seq[i] = ta;
        bn_sampler_accept(a, ta);
        bn_sampler_accept(b, tb);
        bn_sampler_accept(c, tc);
    }
    CHECK(same_ab);
    CHECK(!same_ac);
    /* reset with the same seed replays the run */
    bn_sampler_reset(a, 1234);
    int replay = 1;
    for (int i = 0; i < 64; i++) {
        int32_t t;
        CHECK_OK(bn_sampler_sample(a, l, &t, &err), &err);
        replay &= t == seq[i];
        bn_sampler_accept(a, t);
    }
    CHECK(replay);
    bn_sampler_free(a);
    bn_sampler_free(b);
    bn_sampler_free(c);
    free(probs);
    free(l);
}

static double chi_square(const bn_sampler_params *p, const float *l, int n, int draws,
                         int *df_out) {
    bn_sampler *s = make(p, n);
    float *probs = malloc((size_t)n * sizeof *probs);
    long *hits = calloc((size_t)n, sizeof *hits);
    bn_error err;
    CHECK_OK(bn_sampler_probs(s, l, probs, &err), &err);
    int outside = 0;
    for (int i = 0; i < draws; i++) {
        int32_t t;
        bn_sampler_sample(s, l, &t, &err);
        hits[t]++;
        outside += probs[t] == 0;
    }
    CHECKF(outside == 0, "%d draws outside the kept set", outside);
    double x2 = 0;
    int df = -1;
    for (int i = 0; i < n; i++) {
        if (probs[i] == 0) continue;
        double e = (double)probs[i] * draws;
        x2 += (hits[i] - e) * (hits[i] - e) / e;
        df++;
    }
    *df_out = df;
    bn_sampler_free(s);
    free(probs);
    free(hits);
    return x2;
}

static void test_distribution(void) {
    float l[8];
    const double pr[8] = {0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02};
    for (int i = 0; i < 8; i++)
        l[i] = (float)log(pr[i]);
    bn_sampler_params p = plain();
    p.seed = 2024;
    int df;
    double x2 = chi_square(&p, l, 8, 200000, &df);
    /* df 7: the 0.999 quantile is 24.32 */
    CHECKF(df == 7 && x2 < 24.32, "chi-square %.2f with df %d", x2, df);
    /* a chain: top-k 5 and temperature 0.7 (df 4: 18.47) */
    p.top_k = 5;
    p.temperature = 0.7f;
    p.seed = 5;
    x2 = chi_square(&p, l, 8, 200000, &df);
    CHECKF(df == 4 && x2 < 18.47, "chi-square %.2f with df %d", x2, df);
}

/* ---- errors ------------------------------------------------------------- */

static void expect_invalid(bn_sampler_params p, const char *needle) {
    bn_sampler *s = (bn_sampler *)&p; /* must be set to NULL on failure */
    bn_error err;
    err.msg[0] = 0;
    bn_status st = bn_sampler_new(&p, 10, &s, &err);
    CHECKF(st == BN_ERR_INVALID_ARG && s == NULL && strstr(err.msg, needle),
           "want invalid-arg naming %s, got %d: %s", needle, (int)st, err.msg);
    if (st == BN_OK) bn_sampler_free(s);
}

static void test_errors(void) {
    bn_sampler_params d = bn_sampler_default_params(), p;
#define BAD(field, value, needle)                                                                  \
    do {                                                                                           \
        p = d;                                                                                     \
        p.field = value;                                                                           \
        expect_invalid(p, needle);                                                                 \
    } while (0)
    BAD(temperature, -0.5f, "temperature");
    BAD(temperature, NAN, "temperature");
    BAD(temperature, INFINITY, "temperature");
    BAD(top_p, 0.0f, "top_p");
    BAD(top_p, 1.5f, "top_p");
    BAD(top_p, NAN, "top_p");
    BAD(min_p, -0.1f, "min_p");
    BAD(min_p, 1.01f, "min_p");
    BAD(typical_p, 0.0f, "typical_p");
    BAD(typical_p, 2.0f, "typical_p");
    BAD(mirostat, 3, "mirostat");
    BAD(mirostat, -1, "mirostat");
    BAD(mirostat_tau, -1.0f, "mirostat_tau");
    BAD(mirostat_eta, NAN, "mirostat_eta");
    BAD(repeat_penalty, 0.0f, "repeat_penalty");
    BAD(repeat_penalty, -1.0f, "repeat_penalty");
    BAD(frequency_penalty, -0.5f, "frequency_penalty");
    BAD(presence_penalty, -0.5f, "presence_penalty");
    BAD(presence_penalty, NAN, "presence_penalty");
    BAD(penalty_last_n, -2, "penalty_last_n");
#undef BAD
    bn_error err;
    bn_sampler *s = NULL;
    CHECK(bn_sampler_new(&d, 0, &s, &err) == BN_ERR_INVALID_ARG && strstr(err.msg, "n_vocab"));
    CHECK(bn_sampler_new(&d, 10, NULL, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_sampler_new(&d, 10, &s, NULL) == BN_OK); /* err may be NULL */
    float l[10] = {0}, probs[10];
    int32_t tok;
    CHECK(bn_sampler_sample(s, NULL, &tok, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_sampler_sample(s, l, NULL, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_sampler_sample(NULL, l, &tok, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_sampler_probs(s, l, NULL, &err) == BN_ERR_INVALID_ARG);
    l[3] = NAN;
    CHECK(bn_sampler_sample(s, l, &tok, &err) == BN_ERR_INVALID_ARG && strstr(err.msg, "[3]"));
    l[3] = INFINITY;
    CHECK(bn_sampler_probs(s, l, probs, &err) == BN_ERR_INVALID_ARG && strstr(err.msg, "+inf"));
    for (int i = 0; i < 10; i++)
        l[i] = -INFINITY;
    CHECK(bn_sampler_sample(s, l, &tok, &err) == BN_ERR_INVALID_ARG && strstr(err.msg, "-inf"));
    /* -inf entries are fine when something else is finite */
    l[6] = 0;
    CHECK_OK(bn_sampler_sample(s, l, &tok, &err), &err);
    CHECK(tok == 6);
    bn_sampler_accept(NULL, 1);
    bn_sampler_reset(NULL, 1);
    bn_sampler_free(s);
}

/* ---- speed -------------------------------------------------------------- */

static void test_speed(void) {
    int n = 128256;
    float *l = malloc((size_t)n * sizeof *l);
    bn_rng r;
    bn_rng_seed(&r, 3);
    random_logits(&r, l, n, 4.0f);
    bn_sampler_params p = bn_sampler_default_params();
    p.repeat_penalty = 1.1f;
    bn_sampler *s = make(&p, n);
    bn_error err;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int reps = 200;
    for (int i = 0; i < reps; i++) {
        int32_t t;
        CHECK_OK(bn_sampler_sample(s, l, &t, &err), &err);
        bn_sampler_accept(s, t);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = ((t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6) / reps;
    printf("sample, n_vocab 128256, default chain: %.3f ms/token\n", ms);
    /* no top-k: top-p has to order much of the vocabulary */
    p.top_k = 0;
    p.min_p = 0;
    bn_sampler_free(s);
    s = make(&p, n);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    reps = 20;
    for (int i = 0; i < reps; i++) {
        int32_t t;
        CHECK_OK(bn_sampler_sample(s, l, &t, &err), &err);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = ((t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6) / reps;
    printf("sample, n_vocab 128256, top-p 0.95 alone on flat logits: %.3f ms/token\n", ms);
    bn_sampler_free(s);
    free(l);
}

int main(void) {
    test_defaults();
    test_plain_softmax();
    test_greedy();
    test_greedy_fast_path();
    test_top_k();
    test_top_p();
    test_min_p();
    test_temperature();
    test_typical();
    test_penalties();
    test_chains();
    test_mirostat();
    test_reproducible();
    test_distribution();
    test_errors();
    test_speed();
    return bn_test_finish("test_sampler");
}
