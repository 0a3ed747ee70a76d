/* Token sampling with llama.cpp's semantics (src/llama-sampling.cpp and
 * common/sampling.cpp of late 2024).
 *
 * Chain, in llama.cpp's default order:
 *   penalties -> top-k -> typical -> top-p -> min-p -> temperature -> softmax
 *   -> draw
 * With mirostat 1 or 2: penalties -> temperature -> mirostat (which replaces
 * top-k, typical, top-p and min-p). With temperature 0: the argmax of the
 * penalized logits (ties: the lowest id), whatever the other settings.
 *
 * - repeat penalty: for each token in the last penalty_last_n accepted ones,
 *   a logit <= 0 is multiplied by the penalty, a positive one divided.
 * - frequency / presence: logit -= count * frequency + (count > 0) * presence.
 * - top-k: keep the k largest logits.
 * - typical: softmax over the set, entropy H; order by |-log p - H|
 *   ascending; keep the shortest prefix whose mass exceeds typical_p.
 * - top-p: keep the smallest set of most probable tokens whose mass reaches
 *   top_p (at least one).
 * - min-p: keep logit >= max_logit + log(min_p), i.e. p >= min_p * p_max at
 *   temperature 1 (llama.cpp applies it before temperature).
 * - mirostat v1: s_hat from the m = 100 most probable tokens, N = n_vocab,
 *   k from s_hat and mu, top-k, draw, mu -= eta * (surprise - tau).
 *   v2: keep tokens whose surprise -log2 p <= mu (at least one), draw,
 *   update mu the same way. mu starts at 2 * tau.
 *
 * Ties in any ordering are broken by the lower token id, so a result never
 * depends on the sort algorithm. The draw walks the final set in the order the
 * chain leaves it with one uniform double from xoshiro256** (src/rng.h): the
 * same seed, parameters, logits and accepted tokens give the same tokens on
 * every platform whose libm gives the same expf/logf.
 *
 * Cost per token: expected O(n_vocab). Sets are found by selection (a heap
 * for small top-k, quickselect, and quickselect by probability mass for top-p
 * and typical); only short prefixes that need an order are sorted, never the
 * whole vocabulary. Nothing is allocated after bn_sampler_new. */
#include <math.h>
#include <stdlib.h>

#include "common.h"
#include "rng.h"

#define MIROSTAT_M 100
/* First prefix that top-p / typical order before growing it geometrically. */
#define SORT_CHUNK 64

typedef struct cand {
    float logit;
    float key; /* the value the current ordering sorts by (descending) */
    float p;
    int32_t id;
} cand;

struct bn_sampler {
    bn_sampler_params prm;
    int32_t n_vocab;
    cand *c; /* working candidates; the set is c[0..size) */
    int32_t size;
    int32_t n_sorted; /* c[0..n_sorted) are the set's n_sorted first, in order */
    /* Penalty history: counts over the window, the distinct tokens in it (so
     * penalties cost O(window), not O(n_vocab)), and a ring of the window. */
    int32_t *count;
    int32_t *distinct;
    int32_t *dpos;
    int32_t n_distinct;
    int32_t *ring;
    int32_t ring_cap, ring_len, ring_head;
    float mu;
    bn_rng rng;
};

bn_sampler_params bn_sampler_default_params(void) {
    bn_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.typical_p = 1.0f;
    p.mirostat = 0;
    p.mirostat_tau = 5.0f;
    p.mirostat_eta = 0.1f;
    p.repeat_penalty = 1.0f;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.penalty_last_n = 64;
    p.seed = 0xDEADBEEFu; /* fixed, so runs are reproducible by default */
    return p;
}

/* ---- parameters --------------------------------------------------------- */

static bn_status check_finite(const char *name, float v, bn_error *err) {
    if (isnan(v)) return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: %s is NaN", name);
    if (isinf(v)) return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: %s is infinite", name);
    return BN_OK;
}

static bn_status validate(const bn_sampler_params *p, bn_error *err) {
    const struct {
        const char *name;
        float v;
    } f[] = {{"temperature", p->temperature},
             {"top_p", p->top_p},
             {"min_p", p->min_p},
             {"typical_p", p->typical_p},
             {"mirostat_tau", p->mirostat_tau},
             {"mirostat_eta", p->mirostat_eta},
             {"repeat_penalty", p->repeat_penalty},
             {"frequency_penalty", p->frequency_penalty},
             {"presence_penalty", p->presence_penalty}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        bn_status st = check_finite(f[i].name, f[i].v, err);
        if (st != BN_OK) return st;
    }
    if (p->temperature < 0)
        return bn_fail(err, BN_ERR_INVALID_ARG,
                       "sampler: temperature = %g is negative (use 0 for greedy)",
                       (double)p->temperature);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: top_p = %g is outside (0, 1]",
                       (double)p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: min_p = %g is outside [0, 1]",
                       (double)p->min_p);
    if (!(p->typical_p > 0 && p->typical_p <= 1))
        return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: typical_p = %g is outside (0, 1]",
                       (double)p->typical_p);
    if (p->mirostat < 0 || p->mirostat > 2)
        return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: mirostat = %d is not 0, 1 or 2",
                       (int)p->mirostat);
    if (p->mirostat_tau < 0)
        return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: mirostat_tau = %g is negative",
                       (double)p->mirostat_tau);
    if (p->mirostat_eta < 0)
        return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: mirostat_eta = %g is negative",
                       (double)p->mirostat_eta);
    if (!(p->repeat_penalty > 0))
        return bn_fail(err, BN_ERR_INVALID_ARG,
                       "sampler: repeat_penalty = %g must be > 0 (1 is off)",
                       (double)p->repeat_penalty);
    if (p->frequency_penalty < 0)
        return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: frequency_penalty = %g is negative",
                       (double)p->frequency_penalty);
    if (p->presence_penalty < 0)
        return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: presence_penalty = %g is negative",
                       (double)p->presence_penalty);
    if (p->penalty_last_n < -1)
        return bn_fail(err, BN_ERR_INVALID_ARG,
                       "sampler: penalty_last_n = %d (use -1 for all, 0 for none)",
                       (int)p->penalty_last_n);
    return BN_OK;
}

/* ---- life cycle --------------------------------------------------------- */

void bn_sampler_reset(bn_sampler *s, uint64_t seed) {
    if (!s) return;
    for (int32_t i = 0; i < s->n_distinct; i++)
        s->count[s->distinct[i]] = 0;
    s->n_distinct = 0;
    s->ring_len = 0;
    s->ring_head = 0;
    s->mu = 2.0f * s->prm.mirostat_tau;
    s->prm.seed = seed;
    bn_rng_seed(&s->rng, seed);
}

bn_status bn_sampler_new(const bn_sampler_params *p, int32_t n_vocab, bn_sampler **out,
                         bn_error *err) {
    if (!out) return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: out is NULL");
    *out = NULL;
    if (n_vocab <= 0)
        return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: n_vocab = %d must be > 0", (int)n_vocab);
    bn_sampler_params prm = p ? *p : bn_sampler_default_params();
    bn_status st = validate(&prm, err);
    if (st != BN_OK) return st;

    bn_sampler *s = calloc(1, sizeof *s);
    if (!s) return bn_fail(err, BN_ERR_NOMEM, "sampler: out of memory");
    s->prm = prm;
    s->n_vocab = n_vocab;
    size_t nv = (size_t)n_vocab;
    s->c = malloc(nv * sizeof *s->c);
    s->count = calloc(nv, sizeof *s->count);
    s->distinct = malloc(nv * sizeof *s->distinct);
    s->dpos = malloc(nv * sizeof *s->dpos);
    if (prm.penalty_last_n > 0) {
        s->ring_cap = prm.penalty_last_n;
        s->ring = malloc((size_t)s->ring_cap * sizeof *s->ring);
    }
    if (!s->c || !s->count || !s->distinct || !s->dpos || (s->ring_cap > 0 && !s->ring)) {
        bn_sampler_free(s);
        return bn_fail(err, BN_ERR_NOMEM, "sampler: out of memory for n_vocab = %d", (int)n_vocab);
    }
    bn_sampler_reset(s, prm.seed);
    *out = s;
    return bn_ok(err);
}

void bn_sampler_free(bn_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->count);
    free(s->distinct);
    free(s->dpos);
    free(s->ring);
    free(s);
}

/* ---- penalty history ---------------------------------------------------- */

static void hist_inc(bn_sampler *s, int32_t t) {
    if (s->count[t]++ == 0) {
        s->dpos[t] = s->n_distinct;
        s->distinct[s->n_distinct++] = t;
    }
}

static void hist_dec(bn_sampler *s, int32_t t) {
    if (--s->count[t] == 0) {
        int32_t j = s->dpos[t];
        int32_t last = s->distinct[--s->n_distinct];
        s->distinct[j] = last;
        s->dpos[last] = j;
    }
}

void bn_sampler_accept(bn_sampler *s, int32_t token) {
    /* Ids outside the vocabulary cannot be penalized: ignore them. */
    if (!s || token < 0 || token >= s->n_vocab || s->prm.penalty_last_n == 0) return;
    if (s->ring_cap > 0) {
        if (s->ring_len == s->ring_cap) {
            hist_dec(s, s->ring[s->ring_head]);
            s->ring[s->ring_head] = token;
            s->ring_head = (s->ring_head + 1) % s->ring_cap;
        } else {
            s->ring[(s->ring_head + s->ring_len) % s->ring_cap] = token;
            s->ring_len++;
        }
    }
    hist_inc(s, token);
}

/* ---- ordering ----------------------------------------------------------- */

/* A total order: larger key first, then lower id. */
static inline int before(const cand *a, const cand *b) {
    return a->key > b->key || (a->key == b->key && a->id < b->id);
}

static inline void swap_cand(cand *a, cand *b) {
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Heap of c[0..k) with the last-in-order element at the root. */
static void sift_down(cand *c, size_t k, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < k && before(&c[m], &c[l])) m = l;
        if (l + 1 < k && before(&c[m], &c[l + 1])) m = l + 1;
        if (m == i) return;
        swap_cand(&c[i], &c[m]);
        i = m;
    }
}

/* For small k: one pass keeping the k first in a heap; most elements cost a
 * single comparison with the root. */
static void heap_select(cand *c, size_t n, size_t k) {
    for (size_t i = k / 2; i-- > 0;)
        sift_down(c, k, i);
    for (size_t i = k; i < n; i++) {
        if (before(&c[i], &c[0])) {
            swap_cand(&c[i], &c[0]);
            sift_down(c, k, 0);
        }
    }
}

/* Median-of-three Hoare partition of c[lo..hi), hi - lo >= 3: returns j
 * with c[lo..j] before or equal to the pivot and c[j+1..hi) after or equal,
 * both non-empty (the three samples are distinct under the total order). */
static size_t partition(cand *c, size_t lo, size_t hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (before(&c[mid], &c[lo])) swap_cand(&c[mid], &c[lo]);
    if (before(&c[hi - 1], &c[lo])) swap_cand(&c[hi - 1], &c[lo]);
    if (before(&c[hi - 1], &c[mid])) swap_cand(&c[hi - 1], &c[mid]);
    cand pv = c[mid];
    size_t i = lo, j = hi - 1;
    for (;;) {
        while (before(&c[i], &pv))
            i++;
        while (before(&pv, &c[j]))
            j--;
        if (i >= j) return j;
        swap_cand(&c[i], &c[j]);
        i++;
        j--;
    }
}

/* Sort c[0..n) in order. Introsort written here rather than qsort, which
 * may allocate (glibc's merge sort) and would break the no-allocation-per-
 * token promise. */
static void sort_cands(cand *c, size_t n) {
    int depth = 2;
    for (size_t m = n; m > 1; m >>= 1)
        depth += 2;
    while (n > 16) {
        if (depth-- == 0) { /* heapsort: the root is the last in order */
            for (size_t i = n / 2; i-- > 0;)
                sift_down(c, n, i);
            for (size_t end = n; end-- > 1;) {
                swap_cand(&c[0], &c[end]);
                sift_down(c, end, 0);
            }
            return;
        }
        size_t j = partition(c, 0, n);
        /* recurse into the smaller side, loop on the larger */
        if (j + 1 < n - (j + 1)) {
            sort_cands(c, j + 1);
            c += j + 1;
            n -= j + 1;
        } else {
            sort_cands(c + j + 1, n - (j + 1));
            n = j + 1;
        }
    }
    for (size_t i = 1; i < n; i++) {
        cand x = c[i];
        size_t j = i;
        while (j > 0 && before(&x, &c[j - 1])) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = x;
    }
}

/* Rearrange c[0..n) so that c[0..k) holds the k first elements (any order).
 * Quickselect; after too many rounds (adversarial input) it falls back to
 * sorting, so the worst case stays O(n log n). */
static void select_first(cand *c, size_t n, size_t k) {
    if (k == 0 || k >= n) return;
    if (k <= 256 && n >= 16 * k) {
        heap_select(c, n, k);
        return;
    }
    size_t lo = 0, hi = n;
    int budget = 64;
    while (hi - lo > 16 && lo < k && k < hi) {
        if (budget-- == 0) break;
        size_t j = partition(c, lo, hi);
        if (k <= j + 1)
            hi = j + 1;
        else
            lo = j + 1;
    }
    if (lo < k && k < hi) sort_cands(c + lo, hi - lo);
}

static inline int reached(double cum, double need, int strict) {
    return strict ? cum > need : cum >= need;
}

/* The smallest m such that the m first elements of c[0..n) hold a mass that
 * reaches `need` (passes it, when strict), moved to c[0..m) in no particular
 * order; n when the whole range does not reach it. Quickselect on mass:
 * expected O(n), no full sort. */
static size_t select_mass(cand *c, size_t n, double need, int strict) {
    size_t lo = 0, hi = n;
    int budget = 64;
    while (hi - lo > 16 && budget-- > 0) {
        size_t j = partition(c, lo, hi);
        double m = 0;
        for (size_t i = lo; i <= j; i++)
            m += c[i].p;
        if (reached(m, need, strict)) {
            hi = j + 1;
        } else {
            need -= m;
            lo = j + 1;
        }
    }
    sort_cands(c + lo, hi - lo);
    double cum = 0;
    for (size_t i = lo; i < hi; i++) {
        cum += c[i].p;
        if (reached(cum, need, strict)) return i + 1;
    }
    return hi;
}

/* Make c[0..want) the set's want first elements, in order. */
static void ensure_sorted(bn_sampler *s, int32_t want) {
    if (want > s->size) want = s->size;
    if (want <= s->n_sorted) return;
    cand *rest = s->c + s->n_sorted;
    size_t n_rest = (size_t)(s->size - s->n_sorted);
    size_t k = (size_t)(want - s->n_sorted);
    select_first(rest, n_rest, k);
    sort_cands(rest, k);
    s->n_sorted = want;
}

/* Order by logit again (after typical, which orders by another key). */
static void key_is_logit(bn_sampler *s) {
    for (int32_t i = 0; i < s->size; i++)
        s->c[i].key = s->c[i].logit;
    s->n_sorted = 0;
}

/* p = softmax(logit) over the set; returns the max logit. */
static float set_softmax(bn_sampler *s) {
    cand *c = s->c;
    float mx = -INFINITY;
    for (int32_t i = 0; i < s->size; i++)
        if (c[i].logit > mx) mx = c[i].logit;
    double sum = 0;
    for (int32_t i = 0; i < s->size; i++) {
        c[i].p = expf(c[i].logit - mx);
        sum += c[i].p;
    }
    float inv = (float)(1.0 / sum); /* sum >= 1: the max contributes exp(0) */
    for (int32_t i = 0; i < s->size; i++)
        c[i].p *= inv;
    return mx;
}

/* Keep the candidates with logit >= thr, preserving their order. */
static void compact_min_logit(bn_sampler *s, float thr) {
    int32_t w = 0, sorted_kept = 0;
    for (int32_t i = 0; i < s->size; i++) {
        if (s->c[i].logit >= thr) {
            if (i < s->n_sorted) sorted_kept++;
            s->c[w++] = s->c[i];
        }
    }
    s->size = w;
    /* Removed elements of the sorted prefix are its last ones (lowest
     * logits), so what stays of it is still the set's first elements. */
    s->n_sorted = sorted_kept;
}

/* ---- the samplers ------------------------------------------------------- */

static int penalties_active(const bn_sampler_params *p) {
    return p->penalty_last_n != 0 && (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f ||
                                      p->presence_penalty != 0.0f);
}

static void apply_penalties(bn_sampler *s) {
    const bn_sampler_params *p = &s->prm;
    if (!penalties_active(p)) return;
    for (int32_t j = 0; j < s->n_distinct; j++) {
        int32_t t = s->distinct[j];
        int32_t n = s->count[t];
        cand *c = &s->c[t]; /* candidates are still in id order here */
        float l = c->logit;
        if (l <= 0)
            l *= p->repeat_penalty;
        else
            l /= p->repeat_penalty;
        l -= (float)n * p->frequency_penalty + (float)(n > 0) * p->presence_penalty;
        c->logit = c->key = l;
    }
}

static void apply_top_k(bn_sampler *s, int32_t k) {
    if (k <= 0 || k >= s->size) return;
    if (k > s->n_sorted)
        select_first(s->c + s->n_sorted, (size_t)(s->size - s->n_sorted),
                     (size_t)(k - s->n_sorted));
    s->size = k;
    if (s->n_sorted > k) s->n_sorted = k;
}

/* Keep the shortest prefix of the set, in its order, whose mass reaches
 * `mass` (passes it, when strict). Peaked distributions end within a short
 * sorted prefix; otherwise the rest is selected by mass, unordered. */
static void keep_mass_prefix(bn_sampler *s, double mass, int strict) {
    double cum = 0;
    ensure_sorted(s, SORT_CHUNK);
    for (int32_t i = 0; i < s->n_sorted; i++) {
        cum += s->c[i].p;
        if (reached(cum, mass, strict)) {
            s->size = i + 1;
            s->n_sorted = s->size;
            return;
        }
    }
    int32_t base = s->n_sorted;
    size_t m = select_mass(s->c + base, (size_t)(s->size - base), mass - cum, strict);
    s->size = base + (int32_t)m;
}

static void apply_typical(bn_sampler *s) {
    if (s->prm.typical_p >= 1.0f) return;
    set_softmax(s);
    double h = 0;
    for (int32_t i = 0; i < s->size; i++) {
        float p = s->c[i].p;
        if (p > 0) h -= (double)p * logf(p);
    }
    for (int32_t i = 0; i < s->size; i++) {
        float p = s->c[i].p;
        s->c[i].key = p > 0 ? -fabsf(-logf(p) - (float)h) : -INFINITY;
    }
    s->n_sorted = 0;
    keep_mass_prefix(s, s->prm.typical_p, 1);
    key_is_logit(s);
}

static void apply_top_p(bn_sampler *s) {
    if (s->prm.top_p >= 1.0f) return;
    set_softmax(s);
    keep_mass_prefix(s, s->prm.top_p, 0);
}

static void apply_min_p(bn_sampler *s) {
    if (s->prm.min_p <= 0.0f) return;
    float mx = -INFINITY;
    for (int32_t i = 0; i < s->size; i++)
        if (s->c[i].logit > mx) mx = s->c[i].logit;
    compact_min_logit(s, mx + logf(s->prm.min_p));
}

static void apply_temperature(bn_sampler *s) {
    float t = s->prm.temperature;
    if (t == 1.0f) return;
    for (int32_t i = 0; i < s->size; i++)
        s->c[i].key = s->c[i].logit /= t;
}

static void apply_mirostat_v1(bn_sampler *s) {
    set_softmax(s);
    ensure_sorted(s, MIROSTAT_M);
    const cand *c = s->c;
    float sum_ti_bi = 0, sum_ti_sq = 0;
    for (int32_t i = 0; i < MIROSTAT_M - 1 && i < s->size - 1; i++) {
        if (!(c[i + 1].p > 0)) break;
        float t_i = logf((float)(i + 2) / (float)(i + 1));
        float b_i = logf(c[i].p / c[i + 1].p);
        sum_ti_bi += t_i * b_i;
        sum_ti_sq += t_i * t_i;
    }
    float s_hat = sum_ti_bi / sum_ti_sq;
    float eps_hat = s_hat - 1;
    float k = powf((eps_hat * powf(2, s->mu)) / (1 - powf((float)s->n_vocab, -eps_hat)), 1 / s_hat);
    /* llama.cpp: max(int(k), 1); also guard NaN and huge k. */
    int32_t kk = !(k >= 1) ? 1 : k >= (float)s->size ? s->size : (int32_t)k;
    apply_top_k(s, kk);
}

static void apply_mirostat_v2(bn_sampler *s) {
    set_softmax(s);
    /* Surprise -log2 p > mu drops a token; the most probable always stays. */
    int32_t best = 0;
    for (int32_t i = 1; i < s->size; i++)
        if (before(&s->c[i], &s->c[best])) best = i;
    cand top = s->c[best];
    int32_t w = 0;
    for (int32_t i = 0; i < s->size; i++)
        if (!(-log2f(s->c[i].p) > s->mu)) s->c[w++] = s->c[i];
    if (w == 0) s->c[w++] = top;
    s->size = w;
    s->n_sorted = 0;
}

/* The error for a logit no sampler can take (NaN or +inf). */
static bn_status bad_logit(bn_error *err, int32_t i, float l) {
    return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: logits[%d] is %s", (int)i,
                   isnan(l) ? "NaN" : "+inf");
}

/* Load logits, run the chain, leave the final set in c[0..size) with
 * normalized p. */
static bn_status build(bn_sampler *s, const float *logits, bn_error *err) {
    if (!logits) return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: logits is NULL");
    cand *c = s->c;
    int32_t n = s->n_vocab;
    for (int32_t i = 0; i < n; i++) {
        float l = logits[i];
        if (isnan(l) || l == INFINITY) return bad_logit(err, i, l);
        c[i].logit = c[i].key = l;
        c[i].p = 0;
        c[i].id = i;
    }
    s->size = n;
    s->n_sorted = 0;
    apply_penalties(s);

    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (before(&c[i], &c[best])) best = i;
    if (c[best].logit == -INFINITY)
        return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: every logit is -inf");

    if (s->prm.temperature <= 0) {
        swap_cand(&c[0], &c[best]);
        c[0].p = 1;
        s->size = s->n_sorted = 1;
        return bn_ok(err);
    }
    if (s->prm.mirostat == 0) {
        apply_top_k(s, s->prm.top_k);
        apply_typical(s);
        apply_top_p(s);
        apply_min_p(s);
        apply_temperature(s);
    } else {
        apply_temperature(s);
        if (s->prm.mirostat == 1)
            apply_mirostat_v1(s);
        else
            apply_mirostat_v2(s);
    }
    set_softmax(s);
    return bn_ok(err);
}

/* Greedy without penalties: the first index of the largest logit, as
 * build() would pick it, without building the candidate set (a decode step
 * of a 128k vocabulary would otherwise write 2 MB of candidates per token).
 * The first pass works on the bits, where the compiler vectorizes every
 * step: floats map to integers of the same order (negatives flipped, so
 * -0 sorts just below +0), whose maximum is taken, and NaN / +inf are
 * recognized by their exponent. The second pass finds the first index that
 * holds the maximum as a float (so -0 and +0 tie, and the first wins). */
static bn_status greedy_pick(const float *logits, int32_t n, int32_t *token, bn_error *err) {
    if (!logits) return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: logits is NULL");
    int32_t best = INT32_MIN;
    uint32_t bad = 0;
    for (int32_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &logits[i], sizeof b);
        const int32_t key = (int32_t)(b ^ ((uint32_t)((int32_t)b >> 31) & 0x7fffffffu));
        best = key > best ? key : best;
        bad |= ((b & 0x7fffffffu) > 0x7f800000u) | (b == 0x7f800000u);
    }
    if (bad) {
        for (int32_t i = 0; i < n; i++) {
            if (isnan(logits[i]) || logits[i] == INFINITY) return bad_logit(err, i, logits[i]);
        }
    }
    const uint32_t mb = (uint32_t)best ^ ((uint32_t)(best >> 31) & 0x7fffffffu);
    float mx;
    memcpy(&mx, &mb, sizeof mx);
    if (mx == -INFINITY) return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: every logit is -inf");
    int32_t i = 0;
    for (; i + 64 <= n; i += 64) { /* blocks of 64 (vectorized), then the one that has it */
        int hit = 0;
        for (int k = 0; k < 64; k++)
            hit |= logits[i + k] == mx;
        if (hit) break;
    }
    while (logits[i] != mx)
        i++;
    *token = i;
    return bn_ok(err);
}

bn_status bn_sampler_sample(bn_sampler *s, const float *logits, int32_t *token, bn_error *err) {
    if (!s || !token)
        return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: %s is NULL", !s ? "sampler" : "token");
    if (s->prm.temperature <= 0 && !penalties_active(&s->prm)) {
        return greedy_pick(logits, s->n_vocab, token, err);
    }
    bn_status st = build(s, logits, err);
    if (st != BN_OK) return st;
    if (s->prm.temperature <= 0) {
        *token = s->c[0].id;
        return BN_OK;
    }
    /* One uniform draw per token, walked over the set in chain order. */
    double sum = 0;
    for (int32_t i = 0; i < s->size; i++)
        sum += s->c[i].p;
    double r = bn_rng_double(&s->rng) * sum, acc = 0;
    int32_t pick = -1;
    for (int32_t i = 0; i < s->size; i++) {
        if (s->c[i].p <= 0) continue;
        pick = i;
        acc += s->c[i].p;
        if (r < acc) break;
    }
    if (pick < 0) pick = 0; /* unreachable: the max has p > 0 */
    if (s->prm.mirostat != 0) {
        float surprise = -log2f(s->c[pick].p);
        s->mu -= s->prm.mirostat_eta * (surprise - s->prm.mirostat_tau);
    }
    *token = s->c[pick].id;
    return BN_OK;
}

bn_status bn_sampler_probs(bn_sampler *s, const float *logits, float *probs, bn_error *err) {
    if (!s || !probs)
        return bn_fail(err, BN_ERR_INVALID_ARG, "sampler: %s is NULL", !s ? "sampler" : "probs");
    bn_status st = build(s, logits, err);
    if (st != BN_OK) return st;
    memset(probs, 0, (size_t)s->n_vocab * sizeof *probs);
    for (int32_t i = 0; i < s->size; i++)
        probs[s->c[i].id] = s->c[i].p;
    return BN_OK;
}
