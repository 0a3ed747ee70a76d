/* The transformer forward pass, in the spirit of llama2.c's run.c: one
 * function, top to bottom, over a batch of tokens.
 *
 * Per layer (pre-norm; "bitnet" archs add the two sub norms):
 *   xb = rmsnorm(x, attn_norm)
 *   q, k, v = xb Wq, xb Wk, xb Wv          (BitLinear on bitnet archs)
 *   RoPE(q, k); append k, v to the KV cache of each token's sequence
 *   xb = softmax(q k^T / sqrt(head_dim)) v  (causal, per sequence, GQA)
 *   xb = rmsnorm(xb, attn_sub_norm)         (bitnet)
 *   x += xb Wo
 *   xb = rmsnorm(x, ffn_norm)
 *   hb = act(xb Wgate) * (xb Wup)           act: SiLU, or relu^2 (b1.58)
 *   hb = rmsnorm(hb, ffn_sub_norm)          (bitnet)
 *   x += hb Wdown
 * then logits = rmsnorm(x, output_norm) Wout for the tokens that ask.
 * References for the graph: transformers' models/bitnet/modeling_bitnet.py
 * (BitNetAttention applies attn_sub_norm before o_proj; BitNetMLP is
 * down(ffn_sub_norm(relu2(gate(x)) * up(x)))) and the llama.cpp fork of
 * microsoft/BitNet (build_bitnet_158, build_bitnet in src/llama.cpp), which
 * use the same graph, scale 1/sqrt(head_dim) and NEOX RoPE.
 *
 * BitLinear (every projection of a bitnet arch): activations quantized per
 * token to int8 with s = 127 / max|x| (transformers' integrations/bitnet.py
 * ActQuant; bitnet.cpp's quantize_row_i8_s in ggml-bitnet-mad.cpp), the
 * ternary weights times int8 summed exactly in integers, then multiplied by
 * the weight scale and divided by s (the kernels' matmul_i8; bitnet.cpp's
 * ggml_vec_dot_i2_i8_s followed by the scale ops of its graph). Norms,
 * RoPE, softmax and the head stay in float32, as in llama.cpp. */
#include <math.h>
#include <stdlib.h>

#include "model.h"
#include "profile.h"
#include "quant.h"

#include <time.h>

/* ------------------------------------------------------------------------ */
/* Profiling (profile.h): a clock read per phase, only when asked for       */
/* ------------------------------------------------------------------------ */

static const char *const k_prof_names[BN_PROF_COUNT] = {
    "embed", "norm", "quant", "qkv", "rope_kv", "attn", "wo", "gate_up", "ffn_act", "down", "head"};

const char *bn_profile_name(int phase) {
    return phase >= 0 && phase < BN_PROF_COUNT ? k_prof_names[phase] : "?";
}

static double prof_now(const bn_profile *p) {
    if (!p) return 0.0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Adds the time since *t to phase ph and restarts *t. */
static void prof_add(bn_profile *p, int ph, double *t) {
    if (!p) return;
    const double n = prof_now(p);
    p->seconds[ph] += n - *t;
    *t = n;
}

/* ------------------------------------------------------------------------ */
/* Small float ops                                                          */
/* ------------------------------------------------------------------------ */

void bn_rmsnorm(float *o, const float *x, const float *w, int64_t n, float eps) {
    /* Sum of squares in double, then float, as ggml_compute_forward_rms_norm;
     * in 8 independent partial sums (which the compiler vectorizes) rather
     * than one dependent chain: the double sum of float squares differs from
     * ggml's order by at most a rounding of the double, far below the float
     * the mean is rounded to. */
    double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++)
            part[j] += (double)(x[i + j] * x[i + j]);
    }
    const float scale = bn_rmsnorm_scale(part, x, i, n, eps);
    for (i = 0; i < n; i++)
        o[i] = (x[i] * scale) * w[i];
}

/* cos/sin of pos * theta_i for i < rope_dim/2, with
 * theta_i = base^(-2i/rope_dim) (divided by rope_freqs[i] when the file has
 * them), computed in double and rounded once. */
static void rope_table(const Config *c, const float *freqs, int32_t pos, float *cs, float *sn) {
    const int half = c->rope_dim / 2;
    for (int i = 0; i < half; i++) {
        double theta = (double)pos * (double)c->rope_scale *
                       pow((double)c->rope_theta, -2.0 * i / (double)c->rope_dim);
        if (freqs) theta /= (double)freqs[i];
        cs[i] = (float)cos(theta);
        sn[i] = (float)sin(theta);
    }
}

/* Rotate one head. NORM: adjacent pairs (2i, 2i+1); NEOX: (i, i + d/2).
 * Two loops rather than one with the pairing chosen per element: each is a
 * plain loop that the compiler vectorizes. */
static void rope_head(float *v, int rope_dim, int neox, const float *cs, const float *sn) {
    const int half = rope_dim / 2;
    if (neox) {
        float *a = v, *b = v + half;
        for (int i = 0; i < half; i++) {
            const float x0 = a[i], x1 = b[i];
            a[i] = x0 * cs[i] - x1 * sn[i];
            b[i] = x0 * sn[i] + x1 * cs[i];
        }
        return;
    }
    for (int i = 0; i < half; i++) {
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * cs[i] - x1 * sn[i];
        v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
    }
}

/* ------------------------------------------------------------------------ */
/* Matmuls split across the pool                                            */
/* ------------------------------------------------------------------------ */

/* The rows of a job's matrices (one to three sharing an input) form one
 * list, cut into nth equal shares: thread ith takes [cut(ith), cut(ith+1)).
 * A cut inside a matrix is moved to the nearest multiple of its row group
 * (at least 16 rows, so that threads never write the same cache line of a
 * one-token output; a group of a repacked layout is decoded by one thread).
 * Cutting the list rather than each matrix keeps shares equal where a
 * matrix's rows do not split evenly: gate and up of 6912 rows in groups of
 * 80 go one to each of two threads instead of 3520 + 3392 rows of each. */
static int64_t cut_rows(const bn_tensor *const *w, int n_mat, int ith, int nth) {
    int64_t total = 0;
    for (int i = 0; i < n_mat; i++)
        total += w[i]->n_rows;
    int64_t at = total * ith / nth, base = 0;
    for (int i = 0; i < n_mat; i++) {
        const int64_t rows = w[i]->n_rows;
        if (at < base + rows) {
            const int64_t g = w[i]->row_group > 16 ? w[i]->row_group : 16;
            int64_t r = (at - base + g / 2) / g * g;
            return base + (r < rows ? r : rows);
        }
        base += rows;
    }
    return total;
}

void bn_bitlinear(const bn_kernels *k, const bn_tensor *w, const float *x, int64_t n_tok, int8_t *q,
                  float *act_scale, float *out, int64_t out_stride, int64_t r0, int64_t r1) {
    const int64_t n = w->n_cols;
    for (int64_t t = 0; t < n_tok; t++)
        act_scale[t] = k->quantize_act(x + t * n, n, q + t * n);
    k->matmul_i8[w->type](w, q, act_scale, n_tok, out, out_stride, r0, r1);
}

typedef struct QuantJob {
    const bn_kernels *k;
    const float *x;
    int64_t n;
    int64_t n_tok;
    int8_t *q;
    float *ascale;
} QuantJob;

static void quant_task(void *arg, int ith, int nth) {
    const QuantJob *j = arg;
    for (int64_t t = ith; t < j->n_tok; t += nth) {
        j->ascale[t] = j->k->quantize_act(j->x + t * j->n, j->n, j->q + t * j->n);
    }
}

/* Small data that the step touches right after a matmul and that is cold
 * by then (each layer's norm weights, the KV slots the token writes): the
 * caller prefetches all of it as soon as the matmul is done, so that its
 * lines arrive together instead of missing one after another in the serial
 * step that follows. */
#define AHEAD_MAX 16
typedef struct Ahead {
    int n;
    const void *p[AHEAD_MAX];
    size_t bytes[AHEAD_MAX];
    int write[AHEAD_MAX];
} Ahead;

static void ahead_add(Ahead *a, const void *p, size_t bytes, int write) {
    if (!p || a->n >= AHEAD_MAX) return;
    a->p[a->n] = p;
    a->bytes[a->n] = bytes;
    a->write[a->n] = write;
    a->n++;
}

static void ahead_fetch(const Ahead *a) {
    for (int i = 0; i < a->n; i++) {
        const char *p = a->p[i];
        for (size_t o = 0; o < a->bytes[i]; o += 64) {
            if (a->write[i]) {
                __builtin_prefetch(p + o, 1, 3);
            } else {
                __builtin_prefetch(p + o, 0, 3);
            }
        }
    }
}

typedef struct MatJob {
    const bn_kernels *k;
    int n_mat;
    const bn_tensor *w[3];
    float *out[3];
    const float *x;  /* float activations, or */
    const int8_t *q; /* int8 activations and their scales */
    const float *ascale;
    int64_t n_tok;
} MatJob;

/* Rows [r0, r1) of matrix i of the job. */
static void mat_rows(const MatJob *j, int i, int64_t n_tok, int64_t r0, int64_t r1) {
    const bn_tensor *w = j->w[i];
    if (j->q) {
        j->k->matmul_i8[w->type](w, j->q, j->ascale, n_tok, j->out[i], w->n_rows, r0, r1);
    } else {
        j->k->matmul_f32[w->type](w, j->x, n_tok, j->out[i], w->n_rows, r0, r1);
    }
}

static void mat_task(void *arg, int ith, int nth) {
    const MatJob *j = arg;
    const int64_t lo = cut_rows(j->w, j->n_mat, ith, nth);
    const int64_t hi = cut_rows(j->w, j->n_mat, ith + 1, nth);
    int64_t base = 0;
    for (int i = 0; i < j->n_mat; base += j->w[i]->n_rows, i++) {
        const bn_tensor *w = j->w[i];
        const int64_t r0 = lo > base ? lo - base : 0;
        const int64_t r1 = hi - base < w->n_rows ? hi - base : w->n_rows;
        if (r0 < r1) mat_rows(j, i, j->n_tok, r0, r1);
    }
}

/* One token: the matrices' rows in chunks, balanced at run time
 * (bn_threadpool_run_ranges): over a decode step the two threads of a
 * 2-core machine streamed at rates a few percent apart, and with fixed
 * shares each job waited 1-5 us (the head 120 us) for the slower one. A
 * BitLinear chunk is one row group (at least 16 rows); a float-input
 * matrix (the head) gets chunks of about 256 KiB, since its kernels
 * quantize the input again on every call. Which thread computes a row
 * changes nothing in it. */
static int64_t chunk_rows(const bn_tensor *w, int bitlinear) {
    const int64_t g = w->row_group > 16 ? w->row_group : 16;
    if (bitlinear) return g;
    const int64_t bytes = g * (int64_t)w->row_bytes;
    return bytes >= 262144 ? g : g * ((262144 + bytes - 1) / bytes);
}

static void mat_range(void *arg, int64_t c0, int64_t c1) {
    const MatJob *j = arg;
    int64_t base = 0;
    for (int i = 0; i < j->n_mat && c0 < c1; i++) {
        const bn_tensor *w = j->w[i];
        const int64_t g = chunk_rows(w, j->q != NULL), nc = (w->n_rows + g - 1) / g;
        if (c0 < base + nc) {
            const int64_t e = c1 < base + nc ? c1 : base + nc;
            const int64_t r0 = (c0 - base) * g;
            const int64_t r1 = (e - base) * g < w->n_rows ? (e - base) * g : w->n_rows;
            mat_rows(j, i, 1, r0, r1);
            c0 = e;
        }
        base += nc;
    }
}

/* out[i] = x W[i] for n_mat matrices sharing one input [n_tok][n_cols]:
 * BitLinear quantizes that input once for all of them. */
static void matmul(const bn_model *m, RunState *s, bn_threadpool *pool, int bitlinear, int n_mat,
                   const bn_tensor *w0, const bn_tensor *w1, const bn_tensor *w2, float *o0,
                   float *o1, float *o2, const float *x, int64_t n_tok, const Ahead *ahead,
                   bn_profile *prof, double *pt) {
    const int nth = bn_threadpool_n_threads(pool);
    MatJob j;
    memset(&j, 0, sizeof j);
    j.k = m->kernels;
    j.n_mat = n_mat;
    j.w[0] = w0, j.w[1] = w1, j.w[2] = w2;
    j.out[0] = o0, j.out[1] = o1, j.out[2] = o2;
    j.n_tok = n_tok;
    if (bitlinear) {
        QuantJob qj = {m->kernels, x, w0->n_cols, n_tok, s->qa, s->ascale};
        if (n_tok >= 4 && nth > 1) {
            bn_threadpool_run(pool, quant_task, &qj);
        } else {
            quant_task(&qj, 0, 1);
        }
        j.q = s->qa;
        j.ascale = s->ascale;
        prof_add(prof, BN_PROF_QUANT, pt);
    } else {
        j.x = x;
    }
    if (n_tok == 1 && nth > 1) {
        int64_t chunks = 0;
        for (int i = 0; i < n_mat; i++) {
            const int64_t g = chunk_rows(j.w[i], j.q != NULL);
            chunks += (j.w[i]->n_rows + g - 1) / g;
        }
        bn_threadpool_run_ranges(pool, chunks, mat_range, &j);
    } else {
        bn_threadpool_run(pool, mat_task, &j);
    }
    if (ahead) ahead_fetch(ahead);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                */
/* ------------------------------------------------------------------------ */

typedef struct AttnJob {
    const bn_kernels *k;
    const Config *c;
    const KVCache *kv;
    RunState *s;
    int layer;
    const int32_t *pos;
    const int32_t *seq;
    int64_t n_tok;
} AttnJob;

/* The token at position p of sequence q attends to positions 0..p of q (its
 * own K/V are already in the cache). A prompt batch interleaves the items
 * across threads (later tokens attend to more positions); a decode step
 * gives each thread a contiguous range of heads, so the query heads that
 * share a KV head run one after the other on one thread and read that K/V
 * from memory once. */
static void attn_task(void *arg, int ith, int nth) {
    const AttnJob *j = arg;
    const Config *c = j->c;
    const KVCache *kv = j->kv;
    RunState *s = j->s;
    const int hd = c->head_dim;
    const int group = c->n_head / c->n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    float *att = s->att + (size_t)ith * 2 * (size_t)s->n_ctx;
    /* Work items are (token, unit); a unit is two query heads of one KV
     * head when the kernels can pair them (one pass over the K/V rows for
     * both), else one head. Every head of a model goes through the same
     * kernel whatever the thread count, so results do not depend on it. */
    const int per = j->k->attn_head2 && group % 2 == 0 ? 2 : 1;
    const int units = c->n_head / per;
    const int64_t n_items = j->n_tok * units;
    int64_t first = ith, end = n_items, step = nth;
    if (j->n_tok <= nth) {
        first = n_items * ith / nth;
        end = n_items * (ith + 1) / nth;
        step = 1;
    }
    for (int64_t it = first; it < end; it += step) {
        const int64_t t = it / units;
        const int h = (int)(it % units) * per;
        const float *qh = s->q + t * c->q_dim + (int64_t)h * hd;
        const int32_t p = j->pos[t];
        const size_t base = kv_cache_offset(kv, j->seq[t], j->layer, h / group, 0);
        float *o = s->xb + t * c->q_dim + (int64_t)h * hd;
        if (per == 2) {
            j->k->attn_head2(qh, qh + hd, kv_cache_k(kv, base), kv_cache_v(kv, base), kv->f16, hd,
                             p + 1, hd, scale, att, o, o + hd);
        } else {
            j->k->attn_head(qh, kv_cache_k(kv, base), kv_cache_v(kv, base), kv->f16, hd, p + 1, hd,
                            scale, att, o);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Per-token steps between the matmuls                                      */
/* ------------------------------------------------------------------------ */

/* The element-wise work of a layer, one token at a time. A single token
 * (decode) runs it on the calling thread; a prompt batch spreads the tokens
 * over the pool, since for hundreds of tokens it is no longer negligible
 * next to the matmuls. */
typedef enum TokOp {
    OP_EMBED,     /* x = embedding row; RoPE cos/sin of the token's position */
    OP_ATTN_NORM, /* xb = rmsnorm(x, attn_norm) */
    OP_ROPE_KV,   /* rotate q and k; append k, v to the token's sequence */
    OP_SUB_NORM,  /* xb = rmsnorm(attention output, attn_sub_norm) (bitnet) */
    OP_FFN_NORM,  /* x += xb2 (attention out); xb = rmsnorm(x, ffn_norm) */
    OP_FFN_ACT,   /* hb = act(hb) * hb2, then rmsnorm(hb, ffn_sub_norm) (bitnet) */
    OP_RESIDUAL,  /* x += xb2 (FFN out) */
    OP_OUT_NORM   /* xb[j] = rmsnorm(x[out_idx[j]], output_norm), j < n_out */
} TokOp;

typedef struct TokJob {
    const bn_model *m;
    RunState *s;
    KVCache *kv;
    const ForwardArgs *a;
    const LayerWeights *L;
    int layer;
    TokOp op;
    int64_t n; /* tokens (or output rows) */
} TokJob;

/* The kernel set's RMSNorm when it has one (the same bits, faster). */
static void rmsnorm(const bn_model *m, float *o, const float *x, const float *w, int64_t n) {
    const float eps = m->config.norm_eps;
    if (m->kernels->rmsnorm) {
        m->kernels->rmsnorm(o, x, w, n, eps);
    } else {
        bn_rmsnorm(o, x, w, n, eps);
    }
}

static void tok_step(const TokJob *j, int64_t t) {
    const bn_model *m = j->m;
    const Config *c = &m->config;
    RunState *s = j->s;
    const LayerWeights *L = j->L;
    const int64_t D = c->n_embd, QD = c->q_dim, KVD = c->kv_dim, FF = c->n_ff;
    const int half = c->rope_dim / 2;
    float *x = s->x + t * D;
    switch (j->op) {
    case OP_EMBED: {
        const uint8_t *row =
            (const uint8_t *)m->tok_embd.data + (size_t)j->a->tok[t] * m->tok_embd.row_bytes;
        bn_type_get(m->tok_embd.type)->to_float(row, x, D);
        rope_table(c, m->rope_freqs, j->a->pos[t], s->rope_cos + t * half, s->rope_sin + t * half);
        break;
    }
    case OP_ATTN_NORM: rmsnorm(m, s->xb + t * D, x, L->attn_norm, D); break;
    case OP_ROPE_KV: {
        const float *cs = s->rope_cos + t * half, *sn = s->rope_sin + t * half;
        for (int h = 0; h < c->n_head; h++) {
            rope_head(s->q + t * QD + (int64_t)h * c->head_dim, c->rope_dim, c->rope_neox, cs, sn);
        }
        for (int h = 0; h < c->n_head_kv; h++) {
            rope_head(s->k + t * KVD + (int64_t)h * c->head_dim, c->rope_dim, c->rope_neox, cs, sn);
        }
        const KVCache *kv = j->kv;
        const size_t hb = (size_t)c->head_dim * sizeof(float);
        for (int h = 0; h < c->n_head_kv; h++) {
            const size_t off = kv_cache_offset(kv, j->a->seq[t], j->layer, h, j->a->pos[t]);
            const float *kh = s->k + t * KVD + (int64_t)h * c->head_dim;
            const float *vh = s->v + t * KVD + (int64_t)h * c->head_dim;
            if (kv->f16) {
                m->kernels->to_f16(kh, kv_cache_k(kv, off), c->head_dim);
                m->kernels->to_f16(vh, kv_cache_v(kv, off), c->head_dim);
            } else {
                memcpy(kv_cache_k(kv, off), kh, hb);
                memcpy(kv_cache_v(kv, off), vh, hb);
            }
        }
        break;
    }
    case OP_SUB_NORM: rmsnorm(m, s->xb + t * QD, s->xb + t * QD, L->attn_sub_norm, QD); break;
    case OP_FFN_NORM: {
        const float *o = s->xb2 + t * D;
        for (int64_t i = 0; i < D; i++)
            x[i] += o[i];
        rmsnorm(m, s->xb + t * D, x, L->ffn_norm, D);
        break;
    }
    case OP_FFN_ACT: {
        float *g = s->hb + t * FF;
        const float *u = s->hb2 + t * FF;
        m->kernels->ffn_act(g, u, FF, c->ffn_relu2);
        if (c->sub_norms) rmsnorm(m, g, g, L->ffn_sub_norm, FF);
        break;
    }
    case OP_RESIDUAL: {
        const float *o = s->xb2 + t * D;
        for (int64_t i = 0; i < D; i++)
            x[i] += o[i];
        break;
    }
    case OP_OUT_NORM:
        rmsnorm(m, s->xb + t * D, s->x + (int64_t)j->a->out_idx[t] * D, m->output_norm, D);
        break;
    }
}

static void tok_task(void *arg, int ith, int nth) {
    const TokJob *j = arg;
    const int64_t t0 = j->n * ith / nth, t1 = j->n * (ith + 1) / nth;
    for (int64_t t = t0; t < t1; t++)
        tok_step(j, t);
}

static void per_token(bn_threadpool *pool, TokJob *j, TokOp op, int64_t n) {
    j->op = op;
    j->n = n;
    if (n >= 4 && bn_threadpool_n_threads(pool) > 1) {
        bn_threadpool_run(pool, tok_task, j);
    } else {
        tok_task(j, 0, 1);
    }
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                  */
/* ------------------------------------------------------------------------ */

bn_status bn_forward(const bn_model *m, RunState *s, KVCache *kv, bn_threadpool *pool,
                     const ForwardArgs *a, bn_error *err) {
    const Config *c = &m->config;
    const int64_t n_tok = a->n_tok;
    const int bl = c->bitlinear;
    TokJob tj = {m, s, kv, a, NULL, 0, OP_EMBED, 0};
    bn_profile *P = a->profile;
    double pt = prof_now(P);

    per_token(pool, &tj, OP_EMBED, n_tok);
    prof_add(P, BN_PROF_EMBED, &pt);
    for (int l = 0; l < c->n_layer; l++) {
        if (a->abort_fn && a->abort_fn(a->abort_user)) {
            return bn_fail(err, BN_ERR_CANCELLED, "decode cancelled before layer %d", l);
        }
        const LayerWeights *L = &m->layers[l];
        tj.L = L;
        tj.layer = l;

        /* What each matmul's caller prefetches when its rows are done (one
         * token: in a prompt batch the serial steps are spread over the
         * pool and the data is reused across tokens). */
        Ahead a_qkv = {0}, a_wo = {0}, a_up = {0}, a_down = {0};
        if (n_tok == 1) {
            const size_t hb = (size_t)c->head_dim * kv_cache_esize(kv);
            for (int h = 0; h < c->n_head_kv; h++) {
                const size_t off = kv_cache_offset(kv, a->seq[0], l, h, a->pos[0]);
                ahead_add(&a_qkv, kv_cache_k(kv, off), hb, 1);
                ahead_add(&a_qkv, kv_cache_v(kv, off), hb, 1);
            }
            ahead_add(&a_qkv, L->attn_sub_norm, (size_t)c->q_dim * sizeof(float), 0);
            ahead_add(&a_wo, L->ffn_norm, (size_t)c->n_embd * sizeof(float), 0);
            ahead_add(&a_up, L->ffn_sub_norm, (size_t)c->n_ff * sizeof(float), 0);
            ahead_add(&a_down, l + 1 < c->n_layer ? m->layers[l + 1].attn_norm : m->output_norm,
                      (size_t)c->n_embd * sizeof(float), 0);
        }

        /* Attention block. */
        per_token(pool, &tj, OP_ATTN_NORM, n_tok);
        prof_add(P, BN_PROF_NORM, &pt);
        matmul(m, s, pool, bl, 3, &L->wq, &L->wk, &L->wv, s->q, s->k, s->v, s->xb, n_tok, &a_qkv, P,
               &pt);
        prof_add(P, BN_PROF_QKV, &pt);
        per_token(pool, &tj, OP_ROPE_KV, n_tok);
        prof_add(P, BN_PROF_ROPE_KV, &pt);
        AttnJob aj = {m->kernels, c, kv, s, l, a->pos, a->seq, n_tok};
        bn_threadpool_run(pool, attn_task, &aj);
        prof_add(P, BN_PROF_ATTN, &pt);
        if (c->sub_norms) per_token(pool, &tj, OP_SUB_NORM, n_tok);
        prof_add(P, BN_PROF_NORM, &pt);
        matmul(m, s, pool, bl, 1, &L->wo, NULL, NULL, s->xb2, NULL, NULL, s->xb, n_tok, &a_wo, P,
               &pt);
        prof_add(P, BN_PROF_WO, &pt);

        /* Feed-forward block (OP_FFN_NORM adds the attention output first). */
        per_token(pool, &tj, OP_FFN_NORM, n_tok);
        prof_add(P, BN_PROF_NORM, &pt);
        matmul(m, s, pool, bl, 2, &L->w_gate, &L->w_up, NULL, s->hb, s->hb2, NULL, s->xb, n_tok,
               &a_up, P, &pt);
        prof_add(P, BN_PROF_GATE_UP, &pt);
        per_token(pool, &tj, OP_FFN_ACT, n_tok);
        prof_add(P, BN_PROF_FFN_ACT, &pt);
        matmul(m, s, pool, bl, 1, &L->w_down, NULL, NULL, s->xb2, NULL, NULL, s->hb, n_tok, &a_down,
               P, &pt);
        prof_add(P, BN_PROF_DOWN, &pt);
        per_token(pool, &tj, OP_RESIDUAL, n_tok);
        prof_add(P, BN_PROF_NORM, &pt);
    }

    /* Head, only for the tokens that asked for logits. */
    if (a->n_out > 0) {
        per_token(pool, &tj, OP_OUT_NORM, a->n_out);
        prof_add(P, BN_PROF_NORM, &pt);
        matmul(m, s, pool, 0, 1, &m->output, NULL, NULL, a->logits, NULL, NULL, s->xb, a->n_out,
               NULL, P, &pt);
        prof_add(P, BN_PROF_HEAD, &pt);
    }
    return bn_ok(err);
}

/* ------------------------------------------------------------------------ */
/* RunState                                                                 */
/* ------------------------------------------------------------------------ */

static void *rs_alloc(RunState *s, int64_t n, size_t elem, int *ok) {
    size_t bytes;
    if (n <= 0 || !bn_mul_size((size_t)n, elem, &bytes)) {
        *ok = 0;
        return NULL;
    }
    void *p = bn_aligned_alloc(bytes);
    if (!p) *ok = 0;
    s->bytes += bytes;
    return p;
}

static int64_t max3(int64_t a, int64_t b, int64_t c) {
    int64_t m = a > b ? a : b;
    return m > c ? m : c;
}

bn_status runstate_init(RunState *s, const Config *c, int32_t n_batch, int32_t n_ctx,
                        int32_t n_threads, bn_error *err) {
    memset(s, 0, sizeof *s);
    if (n_batch <= 0 || n_ctx <= 0 || n_threads <= 0) {
        return bn_fail(err, BN_ERR_INVALID_ARG, "scratch: bad sizes");
    }
    s->n_batch = n_batch;
    s->n_ctx = n_ctx;
    s->n_threads = n_threads;
    const int64_t B = n_batch;
    const int64_t half = c->rope_dim / 2 > 0 ? c->rope_dim / 2 : 1;
    int ok = 1;
    s->x = rs_alloc(s, B * c->n_embd, sizeof(float), &ok);
    s->xb = rs_alloc(s, B * (c->n_embd > c->q_dim ? c->n_embd : c->q_dim), sizeof(float), &ok);
    s->xb2 = rs_alloc(s, B * c->n_embd, sizeof(float), &ok);
    s->q = rs_alloc(s, B * c->q_dim, sizeof(float), &ok);
    s->k = rs_alloc(s, B * c->kv_dim, sizeof(float), &ok);
    s->v = rs_alloc(s, B * c->kv_dim, sizeof(float), &ok);
    s->hb = rs_alloc(s, B * c->n_ff, sizeof(float), &ok);
    s->hb2 = rs_alloc(s, B * c->n_ff, sizeof(float), &ok);
    s->qa = rs_alloc(s, B * max3(c->n_embd, c->q_dim, c->n_ff), 1, &ok);
    s->ascale = rs_alloc(s, B, sizeof(float), &ok);
    s->att = rs_alloc(s, (int64_t)n_threads * 2 * n_ctx, sizeof(float), &ok);
    s->rope_cos = rs_alloc(s, B * half, sizeof(float), &ok);
    s->rope_sin = rs_alloc(s, B * half, sizeof(float), &ok);
    if (!ok) {
        uint64_t bytes = s->bytes;
        runstate_free(s);
        return bn_fail(err, BN_ERR_NOMEM, "cannot allocate %llu bytes of scratch for %d tokens",
                       (unsigned long long)bytes, n_batch);
    }
    return bn_ok(err);
}

bn_status runstate_set_threads(RunState *s, int32_t n_threads, bn_error *err) {
    if (n_threads <= s->n_threads) return bn_ok(err);
    size_t bytes;
    if (!bn_mul_size((size_t)n_threads * 2 * (size_t)s->n_ctx, sizeof(float), &bytes)) {
        return bn_fail(err, BN_ERR_NOMEM, "attention scratch overflows");
    }
    float *att = bn_aligned_alloc(bytes);
    if (!att) return bn_fail(err, BN_ERR_NOMEM, "cannot allocate %zu bytes of scratch", bytes);
    s->bytes += bytes - (size_t)s->n_threads * 2 * (size_t)s->n_ctx * sizeof(float);
    bn_aligned_free(s->att);
    s->att = att;
    s->n_threads = n_threads;
    return bn_ok(err);
}

void runstate_free(RunState *s) {
    if (!s) return;
    bn_aligned_free(s->x);
    bn_aligned_free(s->xb);
    bn_aligned_free(s->xb2);
    bn_aligned_free(s->q);
    bn_aligned_free(s->k);
    bn_aligned_free(s->v);
    bn_aligned_free(s->hb);
    bn_aligned_free(s->hb2);
    bn_aligned_free(s->qa);
    bn_aligned_free(s->ascale);
    bn_aligned_free(s->att);
    bn_aligned_free(s->rope_cos);
    bn_aligned_free(s->rope_sin);
    memset(s, 0, sizeof *s);
}
