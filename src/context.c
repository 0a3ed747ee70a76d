/* bn_context: the KV cache, the scratch of one forward pass, a thread pool,
 * and the logits of the last bn_decode. Everything is allocated when the
 * context is made, except the logits rows, which grow (rarely) when a batch
 * asks for more outputs than any before it. */
#include <stdlib.h>

#include "model.h"
#include "profile.h"

#define MAX_THREADS 512

struct bn_context {
    const bn_model *model;
    int32_t n_ctx;
    int32_t n_seq;
    int32_t n_batch;
    int32_t n_threads;
    KVCache kv;
    RunState rs;
    bn_threadpool *pool;
    bn_abort_fn abort_fn;
    void *abort_user;
    /* Validated copy of the current batch. */
    int32_t *pos;     /* [n_batch] */
    int32_t *seq;     /* [n_batch] */
    int32_t *out_idx; /* [n_batch] batch index of each logits row */
    int32_t *row_of;  /* [n_batch] logits row of each batch token, -1 if none */
    int32_t *seq_add; /* [n_seq] tokens of each sequence in the batch */
    /* Logits of the last decode: n_out rows of n_vocab. */
    float *logits;
    int32_t logits_cap; /* rows allocated */
    int32_t n_out;
    int32_t n_tokens; /* tokens of the last successful decode */
    /* Profiling (profile.h): counters, used while prof_on. */
    int prof_on;
    bn_profile prof;
};

bn_context_params bn_context_default_params(void) {
    bn_context_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 0;
    p.n_seq = 1;
    p.n_batch = 512;
    p.n_threads = 0;
    p.kv_type = BN_KV_F32;
    return p;
}

static int32_t resolve_threads(int32_t n) {
    if (n <= 0) n = bn_n_cpus();
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    return n;
}

static bn_status grow_logits(bn_context *c, int32_t rows, bn_error *err) {
    if (rows <= c->logits_cap) return BN_OK;
    const int32_t n_vocab = c->model->config.n_vocab;
    size_t bytes;
    if (!bn_mul_size((size_t)rows * (size_t)n_vocab, sizeof(float), &bytes)) {
        return bn_fail(err, BN_ERR_NOMEM, "logits for %d tokens overflow", rows);
    }
    float *p = bn_aligned_alloc(bytes);
    if (!p) {
        return bn_fail(err, BN_ERR_NOMEM, "cannot allocate %zu bytes of logits for %d tokens",
                       bytes, rows);
    }
    bn_aligned_free(c->logits);
    c->logits = p;
    c->logits_cap = rows;
    return BN_OK;
}

bn_status bn_context_new(const bn_model *m, const bn_context_params *params, bn_context **out,
                         bn_error *err) {
    if (!out) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_context_new: out is NULL");
    *out = NULL;
    if (!m) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_context_new: model is NULL");
    bn_context_params p = params ? *params : bn_context_default_params();
    const Config *cfg = &m->config;
    if (p.n_ctx < 0 || p.n_ctx > cfg->n_ctx_train) {
        return bn_fail(err, BN_ERR_INVALID_ARG,
                       "n_ctx %d is out of range: the model was trained with %d positions", p.n_ctx,
                       cfg->n_ctx_train);
    }
    if (p.n_ctx == 0) p.n_ctx = cfg->n_ctx_train;
    if (p.n_seq == 0) p.n_seq = 1;
    if (p.n_seq < 0 || p.n_seq > 4096) {
        return bn_fail(err, BN_ERR_INVALID_ARG, "n_seq %d is not in 1..4096", p.n_seq);
    }
    if (p.n_batch < 0) return bn_fail(err, BN_ERR_INVALID_ARG, "n_batch %d < 0", p.n_batch);
    if (p.n_batch == 0) p.n_batch = 512;
    /* A batch can never hold more tokens than the cache has room for. */
    const int64_t room = (int64_t)p.n_ctx * p.n_seq;
    if (p.n_batch > room) p.n_batch = (int32_t)room;
    if (p.n_threads < 0) return bn_fail(err, BN_ERR_INVALID_ARG, "n_threads %d < 0", p.n_threads);
    if (p.kv_type != BN_KV_F32 && p.kv_type != BN_KV_F16) {
        return bn_fail(err, BN_ERR_INVALID_ARG, "kv_type %d is not BN_KV_F32 (0) or BN_KV_F16 (1)",
                       p.kv_type);
    }

    bn_context *c = calloc(1, sizeof *c);
    if (!c) return bn_fail(err, BN_ERR_NOMEM, "out of memory");
    c->model = m;
    c->n_ctx = p.n_ctx;
    c->n_seq = p.n_seq;
    c->n_batch = p.n_batch;
    c->n_threads = resolve_threads(p.n_threads);
    bn_status st = kv_cache_init(&c->kv, c->n_seq, cfg->n_layer, c->n_ctx, cfg->n_head_kv,
                                 cfg->head_dim, p.kv_type == BN_KV_F16, err);
    if (st == BN_OK) st = runstate_init(&c->rs, cfg, c->n_batch, c->n_ctx, c->n_threads, err);
    if (st == BN_OK) st = bn_threadpool_new(c->n_threads, &c->pool, err);
    if (st == BN_OK) {
        const size_t nb = (size_t)c->n_batch;
        c->pos = malloc(nb * sizeof *c->pos);
        c->seq = malloc(nb * sizeof *c->seq);
        c->out_idx = malloc(nb * sizeof *c->out_idx);
        c->row_of = malloc(nb * sizeof *c->row_of);
        c->seq_add = calloc((size_t)c->n_seq, sizeof *c->seq_add);
        if (!c->pos || !c->seq || !c->out_idx || !c->row_of || !c->seq_add) {
            st = bn_fail(err, BN_ERR_NOMEM, "out of memory");
        }
    }
    /* Room for one logits row per sequence up front (the usual decode). */
    if (st == BN_OK) st = grow_logits(c, c->n_seq < c->n_batch ? c->n_seq : c->n_batch, err);
    if (st != BN_OK) {
        bn_context_free(c);
        return st;
    }
    *out = c;
    return bn_ok(err);
}

void bn_context_free(bn_context *c) {
    if (!c) return;
    bn_threadpool_free(c->pool);
    runstate_free(&c->rs);
    kv_cache_free(&c->kv);
    free(c->pos);
    free(c->seq);
    free(c->out_idx);
    free(c->row_of);
    free(c->seq_add);
    bn_aligned_free(c->logits);
    free(c);
}

int32_t bn_context_n_ctx(const bn_context *c) { return c ? c->n_ctx : 0; }
int32_t bn_context_n_seq(const bn_context *c) { return c ? c->n_seq : 0; }
uint64_t bn_context_kv_bytes(const bn_context *c) { return c ? kv_cache_bytes(&c->kv) : 0; }

uint64_t bn_context_scratch_bytes(const bn_context *c) {
    if (!c) return 0;
    return c->rs.bytes + (uint64_t)c->logits_cap * (uint64_t)c->model->config.n_vocab * 4u;
}

bn_status bn_context_set_threads(bn_context *c, int32_t n_threads, bn_error *err) {
    if (!c) return bn_fail(err, BN_ERR_INVALID_ARG, "context is NULL");
    if (n_threads < 0) return bn_fail(err, BN_ERR_INVALID_ARG, "n_threads %d < 0", n_threads);
    const int32_t n = resolve_threads(n_threads);
    if (n == c->n_threads) return bn_ok(err);
    bn_status st = runstate_set_threads(&c->rs, n, err);
    if (st != BN_OK) return st;
    bn_threadpool *pool = NULL;
    st = bn_threadpool_new(n, &pool, err);
    if (st != BN_OK) return st;
    bn_threadpool_free(c->pool);
    c->pool = pool;
    c->n_threads = n;
    return bn_ok(err);
}

void bn_context_set_abort(bn_context *c, bn_abort_fn fn, void *user) {
    if (!c) return;
    c->abort_fn = fn;
    c->abort_user = user;
}

bn_status bn_decode(bn_context *c, const bn_batch *batch, bn_error *err) {
    if (!c || !batch) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_decode: NULL argument");
    /* Logits of an earlier call are gone even when this one fails. */
    c->n_out = 0;
    c->n_tokens = 0;
    const int32_t n = batch->n_tokens;
    if (n <= 0) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_decode: n_tokens %d <= 0", n);
    if (!batch->token) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_decode: token is NULL");
    if (n > c->n_batch) {
        return bn_fail(err, BN_ERR_RANGE, "bn_decode: %d tokens exceed n_batch %d", n, c->n_batch);
    }
    const int32_t n_vocab = c->model->config.n_vocab;
    memset(c->seq_add, 0, (size_t)c->n_seq * sizeof *c->seq_add);
    int32_t n_out = 0;
    for (int32_t i = 0; i < n; i++) {
        const int32_t tok = batch->token[i];
        if (tok < 0 || tok >= n_vocab) {
            return bn_fail(err, BN_ERR_RANGE,
                           "bn_decode: token %d (batch index %d) is not in "
                           "[0, %d)",
                           tok, i, n_vocab);
        }
        const int32_t s = batch->seq_id ? batch->seq_id[i] : 0;
        if (s < 0 || s >= c->n_seq) {
            return bn_fail(err, BN_ERR_RANGE,
                           "bn_decode: seq_id %d (batch index %d) is not in "
                           "[0, %d)",
                           s, i, c->n_seq);
        }
        const int32_t expect = c->kv.len[s] + c->seq_add[s];
        if (batch->pos && batch->pos[i] != expect) {
            return bn_fail(err, BN_ERR_INVALID_ARG,
                           "bn_decode: pos %d (batch index %d) does not "
                           "continue sequence %d, which is at position %d",
                           batch->pos[i], i, s, expect);
        }
        if (expect >= c->n_ctx) {
            return bn_fail(err, BN_ERR_RANGE,
                           "bn_decode: context full: sequence %d holds %d of "
                           "%d positions (batch index %d)",
                           s, c->kv.len[s], c->n_ctx, i);
        }
        c->seq_add[s]++;
        c->pos[i] = expect;
        c->seq[i] = s;
        const int want = batch->logits ? batch->logits[i] != 0 : i == n - 1;
        c->row_of[i] = want ? n_out : -1;
        if (want) c->out_idx[n_out++] = i;
    }
    bn_status st = grow_logits(c, n_out, err);
    if (st != BN_OK) return st;

    ForwardArgs a;
    a.tok = batch->token;
    a.pos = c->pos;
    a.seq = c->seq;
    a.n_tok = n;
    a.out_idx = c->out_idx;
    a.n_out = n_out;
    a.logits = c->logits;
    a.abort_fn = c->abort_fn;
    a.abort_user = c->abort_user;
    a.profile = c->prof_on ? &c->prof : NULL;
    if (a.profile) {
        c->prof.steps++;
        c->prof.tokens += (uint64_t)n;
    }
    st = bn_forward(c->model, &c->rs, &c->kv, c->pool, &a, err);
    if (st != BN_OK) return st;
    for (int32_t s = 0; s < c->n_seq; s++)
        c->kv.len[s] += c->seq_add[s];
    c->n_out = n_out;
    c->n_tokens = n;
    return bn_ok(err);
}

void bn_context_profile(bn_context *c, int enable, bn_profile *out) {
    if (!c) return;
    if (out) {
        out->steps += c->prof.steps;
        out->tokens += c->prof.tokens;
        for (int i = 0; i < BN_PROF_COUNT; i++)
            out->seconds[i] += c->prof.seconds[i];
    }
    if (enable) memset(&c->prof, 0, sizeof c->prof);
    c->prof_on = enable != 0;
}

const float *bn_get_logits(const bn_context *c, int32_t i) {
    if (!c || c->n_out == 0) return NULL;
    const size_t n_vocab = (size_t)c->model->config.n_vocab;
    if (i == -1) return c->logits + (size_t)(c->n_out - 1) * n_vocab;
    if (i < 0 || i >= c->n_tokens || c->row_of[i] < 0) return NULL;
    return c->logits + (size_t)c->row_of[i] * n_vocab;
}

int32_t bn_kv_seq_len(const bn_context *c, int32_t seq_id) {
    if (!c || seq_id < 0 || seq_id >= c->n_seq) return 0;
    return c->kv.len[seq_id];
}

bn_status bn_kv_seq_truncate(bn_context *c, int32_t seq_id, int32_t n_keep, bn_error *err) {
    if (!c) return bn_fail(err, BN_ERR_INVALID_ARG, "context is NULL");
    if (seq_id < 0 || seq_id >= c->n_seq) {
        return bn_fail(err, BN_ERR_RANGE, "seq_id %d is not in [0, %d)", seq_id, c->n_seq);
    }
    if (n_keep < 0) return bn_fail(err, BN_ERR_INVALID_ARG, "n_keep %d < 0", n_keep);
    if (n_keep < c->kv.len[seq_id]) c->kv.len[seq_id] = n_keep;
    return bn_ok(err);
}

bn_status bn_kv_seq_copy(bn_context *c, int32_t src, int32_t dst, int32_t n, bn_error *err) {
    if (!c) return bn_fail(err, BN_ERR_INVALID_ARG, "context is NULL");
    if (src < 0 || src >= c->n_seq || dst < 0 || dst >= c->n_seq) {
        return bn_fail(err, BN_ERR_RANGE, "seq ids %d -> %d are not in [0, %d)", src, dst,
                       c->n_seq);
    }
    if (n < 0) n = c->kv.len[src];
    if (n > c->kv.len[src]) {
        return bn_fail(err, BN_ERR_RANGE, "cannot copy %d positions: sequence %d holds %d", n, src,
                       c->kv.len[src]);
    }
    kv_cache_copy_seq(&c->kv, src, dst, n);
    return bn_ok(err);
}
