/* BitLinear and the bitnet architectures.
 *
 * 1. One BitLinear layer through the forward pass's bn_bitlinear (best and
 *    reference kernels) matches a pure-integer reference exactly: the same
 *    int8 activations, int64 sums, then the same float scaling.
 * 2. Tiny bitnet-b1.58 models written here with bn_gguf_writer, with the same
 *    ternary weights stored as F32 / F16 / BF16 master weights (ternarized at
 *    load) and as I2_S, TQ2_0 and TQ1_0, give the same logits. The weights
 *    are built so that the absmean scale is a power of two: then every float
 *    product of the scale with an integer sum is exact, and all formats must
 *    agree to the last bit (we allow 1e-6; with a scale that is not a power
 *    of two, TQ1_0/TQ2_0 round it to fp16 and per-block partial products
 *    round differently, so they would differ at ~1e-3 relative).
 * 3. Both archs against a naive reference written here from transformers'
 *    modeling_bitnet.py (one token at a time, double precision except the
 *    int8 activation quantization): within 1e-3 absolute, same argmax.
 * 4. The "bitnet" (SiLU) arch with per-tensor `.scale` tensors, bitnet-25,
 *    and loader errors that name the tensor and the shapes. */
#include <stdint.h>
#include <unistd.h>

#include "bitnet.h"
#include "kernels.h"
#include "model.h"
#include "quant.h"
#include "test_util.h"

/* ------------------------------------------------------------------------ */
/* Deterministic random numbers                                             */
/* ------------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}
static float rng_uniform(uint64_t *s) { return (float)((rng_next(s) >> 40) * (1.0 / 16777216.0)); }
static float rng_normal(uint64_t *s) {
    float a = 0.0f;
    for (int i = 0; i < 12; i++)
        a += rng_uniform(s);
    return a - 6.0f;
}

/* ------------------------------------------------------------------------ */
/* 1. One layer vs a pure-integer reference                                 */
/* ------------------------------------------------------------------------ */

static void test_layer(const bn_kernels *k, int type, float wscale, uint64_t seed) {
    enum { NC = 512, NR = 40, NT = 5 };
    uint64_t rs = seed;
    static int8_t wq[NR * NC];
    static float wf[NR * NC], x[NT * NC];
    for (int i = 0; i < NR * NC; i++) {
        wq[i] = (int8_t)((int)(rng_next(&rs) % 3) - 1);
        wf[i] = (float)wq[i] * wscale;
    }
    for (int i = 0; i < NT * NC; i++)
        x[i] = rng_normal(&rs) * (i % 7 == 0 ? 4.0f : 1.0f);
    x[3] = 0.5f; /* a tie for the rounding */
    bn_error err;
    size_t nbytes = bn_type_nbytes(type, NC, NR, &err);
    uint8_t *data = malloc(nbytes);
    CHECK(data != NULL);
    if (!data) return;
    CHECK_OK(bn_quantize(type, wf, NC, NR, data, nbytes, &err), &err);
    bn_tensor w = {type, NC, NR, bn_row_bytes(type, NC), data, 1.0f, "w", 0, 0};
    float tq_d = 1.0f; /* the per-block scale the TQ types store */
    if (type == BN_TYPE_I2_S) {
        memcpy(&w.scale, data + (size_t)NR * w.row_bytes, sizeof(float));
        CHECK(w.scale == wscale);
    } else {
        tq_d = bn_fp16_to_fp32(bn_fp32_to_fp16(wscale));
    }

    static int8_t q[NT * NC];
    float as[NT];
    static float out[NT * NR];
    bn_bitlinear(k, &w, x, NT, q, as, out, NR, 0, NR);

    int q_ok = 1, out_ok = 1;
    for (int t = 0; t < NT; t++) {
        /* Activation quantization as transformers' ActQuant / bitnet.cpp:
         * s = 127 / max|x|, q = clamp(round_half_even(x * s), -128, 127). */
        float amax = 0.0f;
        for (int i = 0; i < NC; i++)
            amax = fmaxf(amax, fabsf(x[t * NC + i]));
        const float s = 127.0f / fmaxf(amax, 1e-5f);
        int8_t qr[NC];
        for (int i = 0; i < NC; i++) {
            float v = nearbyintf(x[t * NC + i] * s);
            qr[i] = (int8_t)(v > 127.0f ? 127 : v < -128.0f ? -128 : v);
            if (qr[i] != q[t * NC + i]) q_ok = 0;
        }
        if (as[t] != s) q_ok = 0;
        for (int r = 0; r < NR; r++) {
            int64_t isum = 0;
            for (int i = 0; i < NC; i++)
                isum += (int64_t)wq[r * NC + i] * qr[i];
            /* TQ: sum of d * isum_b over blocks is exact here (d is a power
             * of two), so it equals d * isum. */
            const float sum = type == BN_TYPE_I2_S ? (float)isum : tq_d * (float)isum;
            const float want = sum * w.scale / s;
            if (out[t * NR + r] != want) {
                if (out_ok) {
                    fprintf(stderr, "%s %s t=%d r=%d: %.9g vs %.9g\n", k->name, bn_type_name(type),
                            t, r, out[t * NR + r], want);
                }
                out_ok = 0;
            }
        }
    }
    CHECKF(q_ok, "%s %s: int8 activations differ", k->name, bn_type_name(type));
    CHECKF(out_ok, "%s %s: BitLinear output differs from the integer reference", k->name,
           bn_type_name(type));

    /* Row ranges split across "threads" give the same result. */
    static float out2[NT * NR];
    bn_bitlinear(k, &w, x, NT, q, as, out2, NR, 0, 16);
    bn_bitlinear(k, &w, x, NT, q, as, out2, NR, 16, 33);
    bn_bitlinear(k, &w, x, NT, q, as, out2, NR, 33, NR);
    CHECK(memcmp(out, out2, sizeof out) == 0);
    free(data);
}

/* ------------------------------------------------------------------------ */
/* 2. Tiny bitnet models written with bn_gguf_writer                        */
/* ------------------------------------------------------------------------ */

enum { EMBD = 256, NHEAD = 4, NHEAD_KV = 2, HD = 64, FF = 512, NLAYER = 2, VOCAB = 300, CTX = 64 };

typedef struct Weights {
    /* Master weights of each projection, values k/64 with sum |k| chosen so
     * that absmean is exactly 1/4. */
    float *proj[NLAYER][7];
    float *norms[NLAYER][4]; /* attn, ffn, attn_sub, ffn_sub */
    float *embd;             /* [VOCAB][EMBD] */
    float *out_norm;
} Weights;

static const char *k_proj[7] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                "ffn_gate", "ffn_up", "ffn_down"};
static const char *k_norm[4] = {"attn_norm", "ffn_norm", "attn_sub_norm", "ffn_sub_norm"};

static void proj_shape(int i, int64_t *nc, int64_t *nr) {
    const int64_t cols[7] = {EMBD, EMBD, EMBD, NHEAD * HD, EMBD, EMBD, FF};
    const int64_t rows[7] = {NHEAD * HD, NHEAD_KV * HD, NHEAD_KV * HD, EMBD, FF, FF, EMBD};
    *nc = cols[i];
    *nr = rows[i];
}
static int64_t norm_len(int i) { return i == 2 ? NHEAD * HD : i == 3 ? FF : EMBD; }

static float *master(uint64_t *rs, int64_t n) {
    float *w = malloc((size_t)n * sizeof(float));
    int *k = malloc((size_t)n * sizeof(int));
    if (!w || !k) {
        free(w);
        free(k);
        return NULL;
    }
    int64_t sum = 0;
    for (int64_t i = 0; i < n; i++) {
        int v = (int)(rng_normal(rs) * 20.0f);
        if (v == 0) v = 1;
        if (v > 100) v = 100;
        if (v < -100) v = -100;
        k[i] = v;
        sum += v < 0 ? -v : v;
    }
    /* Nudge magnitudes until sum |k| / 64 / n == 1/4 exactly. */
    const int64_t target = 16 * n;
    for (int64_t i = 0; sum != target; i = (i + 1) % n) {
        const int a = k[i] < 0 ? -k[i] : k[i];
        if (sum < target && a < 100) {
            k[i] += k[i] < 0 ? -1 : 1;
            sum++;
        } else if (sum > target && a > 1) {
            k[i] -= k[i] < 0 ? -1 : 1;
            sum--;
        }
    }
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)k[i] / 64.0f;
    free(k);
    return w;
}

static void weights_free(Weights *W) {
    for (int l = 0; l < NLAYER; l++) {
        for (int i = 0; i < 7; i++)
            free(W->proj[l][i]);
        for (int i = 0; i < 4; i++)
            free(W->norms[l][i]);
    }
    free(W->embd);
    free(W->out_norm);
}

static int weights_make(Weights *W, uint64_t seed) {
    memset(W, 0, sizeof *W);
    uint64_t rs = seed;
    int ok = 1;
    for (int l = 0; l < NLAYER; l++) {
        for (int i = 0; i < 7; i++) {
            int64_t nc, nr;
            proj_shape(i, &nc, &nr);
            W->proj[l][i] = master(&rs, nc * nr);
            ok = ok && W->proj[l][i];
        }
        for (int i = 0; i < 4; i++) {
            W->norms[l][i] = malloc((size_t)norm_len(i) * sizeof(float));
            ok = ok && W->norms[l][i];
            for (int64_t j = 0; ok && j < norm_len(i); j++) {
                W->norms[l][i][j] = 1.0f + 0.2f * rng_normal(&rs);
            }
        }
    }
    W->embd = malloc((size_t)VOCAB * EMBD * sizeof(float));
    W->out_norm = malloc(EMBD * sizeof(float));
    ok = ok && W->embd && W->out_norm;
    for (int i = 0; ok && i < VOCAB * EMBD; i++) {
        W->embd[i] = bn_fp16_to_fp32(bn_fp32_to_fp16(rng_normal(&rs)));
    }
    for (int i = 0; ok && i < EMBD; i++)
        W->out_norm[i] = 1.0f + 0.1f * rng_normal(&rs);
    if (!ok) weights_free(W);
    return ok;
}

typedef struct WriteOpts {
    const char *arch;
    int wtype;          /* type of the projections in the file */
    float scale_tensor; /* > 0: write `.scale` tensors and divide weights by it */
    const char *drop;   /* a tensor to leave out */
    const char *bad;    /* a tensor to write with a wrong shape */
    const char *kv_key; /* an integer hparam ("block_count"...) to override, */
    uint32_t kv_val;    /* with this value, or to leave out when kv_val is 0 */
} WriteOpts;

static bn_status add_f32(bn_gguf_writer *w, const char *name, int type, int nd, int64_t ne0,
                         int64_t ne1, const float *x, bn_error *err) {
    size_t nb = bn_type_nbytes(type, ne0, ne1, err);
    if (nb == 0) return err->code;
    void *buf = malloc(nb);
    if (!buf) return BN_ERR_NOMEM;
    bn_status st = bn_quantize(type, x, ne0, ne1, buf, nb, err);
    int64_t ne[2] = {ne0, ne1};
    if (st == BN_OK) st = bn_gguf_writer_add_tensor(w, name, type, nd, ne, buf, nb, err);
    free(buf);
    return st;
}

static bn_status write_model(const char *path, const Weights *W, const WriteOpts *o,
                             bn_error *err) {
    bn_gguf_writer *w = NULL;
    bn_status st = bn_gguf_writer_new(&w, err);
    if (st != BN_OK) return st;
    char key[128];
    const uint32_t u[] = {CTX, EMBD, NLAYER, FF, NHEAD, NHEAD_KV, HD, VOCAB};
    const char *uk[] = {"context_length",       "embedding_length",
                        "block_count",          "feed_forward_length",
                        "attention.head_count", "attention.head_count_kv",
                        "rope.dimension_count", "vocab_size"};
    st = bn_gguf_writer_set_str(w, "general.architecture", o->arch, strlen(o->arch), err);
    for (int i = 0; st == BN_OK && i < 8; i++) {
        snprintf(key, sizeof key, "%s.%s", o->arch, uk[i]);
        const int over = o->kv_key && strcmp(o->kv_key, uk[i]) == 0;
        if (over && o->kv_val == 0) continue;
        st = bn_gguf_writer_set(w, key, BN_GGUF_UINT32, over ? &o->kv_val : &u[i], err);
    }
    const float eps = 1e-5f, theta = 500000.0f;
    const int skip_eps = o->kv_key && strcmp(o->kv_key, "eps") == 0;
    if (st == BN_OK && !skip_eps) {
        snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", o->arch);
        st = bn_gguf_writer_set(w, key, BN_GGUF_FLOAT32, &eps, err);
    }
    if (st == BN_OK) {
        snprintf(key, sizeof key, "%s.rope.freq_base", o->arch);
        st = bn_gguf_writer_set(w, key, BN_GGUF_FLOAT32, &theta, err);
    }
    if (st == BN_OK) {
        st = add_f32(w, "token_embd.weight", BN_TYPE_F16, 2, EMBD, VOCAB, W->embd, err);
    }
    if (st == BN_OK) {
        st = add_f32(w, "output_norm.weight", BN_TYPE_F32, 1, EMBD, 1, W->out_norm, err);
    }
    float *tmp = malloc((size_t)FF * EMBD * sizeof(float));
    if (!tmp && st == BN_OK) st = BN_ERR_NOMEM;
    for (int l = 0; st == BN_OK && l < NLAYER; l++) {
        char name[96];
        for (int i = 0; st == BN_OK && i < 4; i++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, k_norm[i]);
            if (o->drop && strcmp(o->drop, name) == 0) continue;
            st = add_f32(w, name, BN_TYPE_F32, 1, norm_len(i), 1, W->norms[l][i], err);
        }
        for (int i = 0; st == BN_OK && i < 7; i++) {
            int64_t nc, nr;
            proj_shape(i, &nc, &nr);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, k_proj[i]);
            if (o->drop && strcmp(o->drop, name) == 0) continue;
            const int64_t n = nc * nr;
            const float *src = W->proj[l][i];
            const int ternary =
                o->wtype == BN_TYPE_TQ1_0 || o->wtype == BN_TYPE_TQ2_0 || o->wtype == BN_TYPE_I2_S;
            if (ternary) {
                /* The ternary file holds what the absmean quantizer makes of
                 * the master weights: q * s. */
                int8_t *q = malloc((size_t)n);
                float s = 0.0f;
                if (!q) {
                    st = BN_ERR_NOMEM;
                    break;
                }
                st = bn_ternarize(src, n, q, &s, err);
                const float div = o->scale_tensor > 0.0f ? o->scale_tensor : 1.0f;
                for (int64_t j = 0; j < n; j++)
                    tmp[j] = (float)q[j] * s / div;
                free(q);
                src = tmp;
            }
            if (st != BN_OK) break;
            if (o->bad && strcmp(o->bad, name) == 0) {
                st = add_f32(w, name, o->wtype, 2, nr, nc, src, err); /* transposed */
            } else {
                st = add_f32(w, name, o->wtype, 2, nc, nr, src, err);
            }
            if (st == BN_OK && o->scale_tensor > 0.0f) {
                snprintf(name, sizeof name, "blk.%d.%s.scale", l, k_proj[i]);
                int64_t ne1[1] = {1};
                st = bn_gguf_writer_add_tensor(w, name, BN_TYPE_F32, 1, ne1, &o->scale_tensor, 4,
                                               err);
            }
        }
    }
    free(tmp);
    if (st == BN_OK) st = bn_gguf_writer_write(w, path, err);
    bn_gguf_writer_free(w);
    return st;
}

/* ------------------------------------------------------------------------ */
/* An independent, naive reference of the bitnet graph                      */
/* ------------------------------------------------------------------------ */

/* Written from transformers' modeling_bitnet.py and integrations/bitnet.py,
 * one token at a time, in double where the graph is float: absmean ternary
 * weights, per-token absmax int8 activations, NEOX RoPE, GQA, sub norms,
 * relu^2 (or SiLU) gating, tied head. */
typedef struct RefModel {
    int8_t *q[NLAYER][7];
    float s[NLAYER][7];
} RefModel;

static void ref_rmsnorm(const double *x, const float *w, int n, double *o) {
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    const double r = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++)
        o[i] = x[i] * r * (double)w[i];
}

static void ref_bitlinear(const int8_t *q, float s, int nc, int nr, const double *xd, double *y) {
    float x[FF], amax = 0.0f;
    int8_t xa[FF];
    for (int k = 0; k < nc; k++) {
        x[k] = (float)xd[k];
        amax = fmaxf(amax, fabsf(x[k]));
    }
    const float as = 127.0f / fmaxf(amax, 1e-5f);
    for (int k = 0; k < nc; k++) {
        float v = nearbyintf(x[k] * as);
        xa[k] = (int8_t)(v > 127.0f ? 127 : v < -128.0f ? -128 : v);
    }
    for (int r = 0; r < nr; r++) {
        int64_t acc = 0;
        for (int k = 0; k < nc; k++)
            acc += (int64_t)q[(size_t)r * nc + k] * xa[k];
        y[r] = (double)acc * (double)s / (double)as;
    }
}

static void ref_forward(const Weights *W, const RefModel *R, int relu2, const int32_t *ids, int n,
                        float *logits) {
    static double kc[NLAYER][10][NHEAD_KV * HD], vc[NLAYER][10][NHEAD_KV * HD];
    double x[EMBD], xn[FF], q[NHEAD * HD], att[NHEAD * HD], g[FF], u[FF], y[FF];
    for (int p = 0; p < n; p++) {
        for (int i = 0; i < EMBD; i++)
            x[i] = W->embd[(size_t)ids[p] * EMBD + i];
        for (int l = 0; l < NLAYER; l++) {
            ref_rmsnorm(x, W->norms[l][0], EMBD, xn);
            ref_bitlinear(R->q[l][0], R->s[l][0], EMBD, NHEAD * HD, xn, q);
            ref_bitlinear(R->q[l][1], R->s[l][1], EMBD, NHEAD_KV * HD, xn, kc[l][p]);
            ref_bitlinear(R->q[l][2], R->s[l][2], EMBD, NHEAD_KV * HD, xn, vc[l][p]);
            /* rotate_half: pairs (i, i + HD/2) */
            for (int h = 0; h < NHEAD + NHEAD_KV; h++) {
                double *v = h < NHEAD ? q + h * HD : kc[l][p] + (h - NHEAD) * HD;
                for (int i = 0; i < HD / 2; i++) {
                    const double th = p * pow(500000.0, -2.0 * i / HD);
                    const double a = v[i], b = v[i + HD / 2];
                    v[i] = a * cos(th) - b * sin(th);
                    v[i + HD / 2] = a * sin(th) + b * cos(th);
                }
            }
            for (int h = 0; h < NHEAD; h++) {
                const int kh = h / (NHEAD / NHEAD_KV);
                double sc[10], mx = -1e300, sum = 0.0;
                for (int j = 0; j <= p; j++) {
                    double d = 0.0;
                    for (int e = 0; e < HD; e++)
                        d += q[h * HD + e] * kc[l][j][kh * HD + e];
                    sc[j] = d / sqrt((double)HD);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = 0; j <= p; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (int e = 0; e < HD; e++) {
                    double o = 0.0;
                    for (int j = 0; j <= p; j++)
                        o += sc[j] / sum * vc[l][j][kh * HD + e];
                    att[h * HD + e] = o;
                }
            }
            ref_rmsnorm(att, W->norms[l][2], NHEAD * HD, xn);
            ref_bitlinear(R->q[l][3], R->s[l][3], NHEAD * HD, EMBD, xn, y);
            for (int i = 0; i < EMBD; i++)
                x[i] += y[i];
            ref_rmsnorm(x, W->norms[l][1], EMBD, xn);
            ref_bitlinear(R->q[l][4], R->s[l][4], EMBD, FF, xn, g);
            ref_bitlinear(R->q[l][5], R->s[l][5], EMBD, FF, xn, u);
            for (int i = 0; i < FF; i++) {
                const double r = g[i] > 0.0 ? g[i] : 0.0;
                g[i] = (relu2 ? r * r : g[i] / (1.0 + exp(-g[i]))) * u[i];
            }
            ref_rmsnorm(g, W->norms[l][3], FF, xn);
            ref_bitlinear(R->q[l][6], R->s[l][6], FF, EMBD, xn, y);
            for (int i = 0; i < EMBD; i++)
                x[i] += y[i];
        }
        ref_rmsnorm(x, W->out_norm, EMBD, xn);
        for (int t = 0; t < VOCAB; t++) {
            double d = 0.0;
            for (int i = 0; i < EMBD; i++)
                d += (double)W->embd[(size_t)t * EMBD + i] * xn[i];
            logits[(size_t)p * VOCAB + t] = (float)d;
        }
    }
}

/* Max |a - b| over the prompt, and how many positions agree on the argmax. */
static double compare_ref(const Weights *W, int relu2, const float *got, int *same_argmax);

static const int32_t k_prompt[10] = {1, 17, 250, 3, 3, 99, 299, 0, 42, 7};

/* Logits [10][VOCAB] of the prompt in one batch; 0 on failure. */
static int run_model(const char *path, float *out, int n_threads, bn_model_config *cfg) {
    bn_error err;
    bn_model *m = NULL;
    bn_status st = bn_model_load(path, NULL, &m, &err);
    CHECKF(st == BN_OK, "%s: %s", path, err.msg);
    if (st != BN_OK) return 0;
    if (cfg) bn_model_get_config(m, cfg);
    bn_context_params cp = bn_context_default_params();
    cp.n_ctx = 32;
    cp.n_threads = n_threads;
    bn_context *c = NULL;
    st = bn_context_new(m, &cp, &c, &err);
    CHECK_OK(st, &err);
    int ok = 0;
    if (st == BN_OK) {
        int8_t want[10];
        memset(want, 1, sizeof want);
        bn_batch b = {10, k_prompt, NULL, NULL, want};
        st = bn_decode(c, &b, &err);
        CHECK_OK(st, &err);
        if (st == BN_OK) {
            for (int i = 0; i < 10; i++) {
                memcpy(out + (size_t)i * VOCAB, bn_get_logits(c, i), VOCAB * sizeof(float));
            }
            ok = 1;
        }
    }
    bn_context_free(c);
    bn_model_free(m);
    return ok;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) {
        if (x[i] > x[b]) b = i;
    }
    return b;
}

static double compare_ref(const Weights *W, int relu2, const float *got, int *same_argmax) {
    RefModel R;
    memset(&R, 0, sizeof R);
    float *want = malloc((size_t)10 * VOCAB * sizeof(float));
    int ok = want != NULL;
    bn_error err;
    for (int l = 0; l < NLAYER && ok; l++) {
        for (int i = 0; i < 7 && ok; i++) {
            int64_t nc, nr;
            proj_shape(i, &nc, &nr);
            R.q[l][i] = malloc((size_t)(nc * nr));
            ok = R.q[l][i] &&
                 bn_ternarize(W->proj[l][i], nc * nr, R.q[l][i], &R.s[l][i], &err) == BN_OK;
        }
    }
    double d = INFINITY;
    *same_argmax = 0;
    if (ok) {
        ref_forward(W, &R, relu2, k_prompt, 10, want);
        d = max_abs_diff(want, got, (int64_t)10 * VOCAB);
        for (int p = 0; p < 10; p++) {
            *same_argmax += argmax(want + p * VOCAB, VOCAB) == argmax(got + p * VOCAB, VOCAB);
        }
    }
    for (int l = 0; l < NLAYER; l++) {
        for (int i = 0; i < 7; i++)
            free(R.q[l][i]);
    }
    free(want);
    return d;
}

static void test_models(void) {
    Weights W;
    if (!weights_make(&W, 0x5eed)) {
        CHECK(0);
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "/tmp/bn_test_bitlinear_%ld.gguf", (long)getpid());
    bn_error err;
    const size_t nl = (size_t)10 * VOCAB;
    float *ref = malloc(nl * sizeof(float)), *got = malloc(nl * sizeof(float));
    if (!ref || !got) {
        CHECK(0);
        free(ref);
        free(got);
        weights_free(&W);
        return;
    }

    /* F32 master weights: the reference for the other formats. */
    WriteOpts o = {"bitnet-b1.58", BN_TYPE_F32, 0.0f, NULL, NULL, NULL, 0};
    CHECK_OK(write_model(path, &W, &o, &err), &err);
    bn_model_config cfg;
    int have_ref = run_model(path, ref, 1, &cfg);
    CHECK(have_ref);
    CHECK(strcmp(cfg.arch, "bitnet-b1.58") == 0 && cfg.ffn_act == 1 && cfg.tied_output == 1);
    CHECK(cfg.n_vocab == VOCAB && cfg.head_dim == HD && cfg.n_head_kv == NHEAD_KV);
    CHECK(cfg.weight_type == BN_TYPE_F32);
    /* Logits are not degenerate. */
    if (have_ref) {
        int distinct = 0;
        for (int p = 1; p < 10; p++)
            distinct += argmax(ref + p * VOCAB, VOCAB) != argmax(ref, VOCAB);
        CHECK(distinct > 0);
        CHECK(isfinite(ref[0]) && fabsf(ref[0]) < 1e4f);
        int same = 0;
        double d = compare_ref(&W, 1, ref, &same);
        float amax = 0.0f;
        for (size_t i = 0; i < nl; i++)
            amax = fmaxf(amax, fabsf(ref[i]));
        printf("bitnet-b1.58 tiny model vs naive double reference: max |logit diff| %.3g "
               "(max |logit| %.3g), argmax equal at %d/10 positions\n",
               d, amax, same);
        CHECKF(d <= 1e-3 && same == 10, "vs reference: %g, argmax %d/10", d, same);
    }

    const int types[5] = {BN_TYPE_F16, BN_TYPE_BF16, BN_TYPE_I2_S, BN_TYPE_TQ2_0, BN_TYPE_TQ1_0};
    double worst = 0.0;
    for (int i = 0; i < 5 && have_ref; i++) {
        o.wtype = types[i];
        CHECK_OK(write_model(path, &W, &o, &err), &err);
        if (run_model(path, got, 1, &cfg)) {
            CHECK(cfg.weight_type == types[i]);
            double d = max_abs_diff(ref, got, (int64_t)nl);
            if (d > worst) worst = d;
            CHECKF(d <= 1e-6, "%s vs f32 master: max diff %g", bn_type_name(types[i]), d);
            for (int p = 0; p < 10; p++) {
                CHECK(argmax(ref + p * VOCAB, VOCAB) == argmax(got + p * VOCAB, VOCAB));
            }
        }
    }
    printf("bitnet-b1.58 tiny model: f16/bf16/i2_s/tq2_0/tq1_0 vs f32 master weights: max |logit "
           "diff| %.3g\n",
           worst);

    /* Threads do not change the result; bitnet-25 is the same graph. */
    if (have_ref) {
        o.wtype = BN_TYPE_I2_S;
        CHECK_OK(write_model(path, &W, &o, &err), &err);
        if (run_model(path, got, 3, NULL)) CHECK(max_abs_diff(ref, got, (int64_t)nl) <= 1e-6);
        o.arch = "bitnet-25";
        CHECK_OK(write_model(path, &W, &o, &err), &err);
        if (run_model(path, got, 2, &cfg)) {
            CHECK(strcmp(cfg.arch, "bitnet-25") == 0);
            CHECK(max_abs_diff(ref, got, (int64_t)nl) <= 1e-6);
        }
    }

    /* "bitnet" (SiLU): TQ2_0 weights, and the same weights / 4 with `.scale`
     * tensors of 4 give the same logits (powers of two: exact). */
    float *silu = malloc(nl * sizeof(float));
    if (silu) {
        WriteOpts ob = {"bitnet", BN_TYPE_TQ2_0, 0.0f, NULL, NULL, NULL, 0};
        CHECK_OK(write_model(path, &W, &ob, &err), &err);
        if (run_model(path, silu, 2, &cfg)) {
            CHECK(cfg.ffn_act == 0);
            int same = 0;
            double d = compare_ref(&W, 0, silu, &same);
            printf("bitnet (SiLU) tiny model vs naive double reference: max |logit diff| %.3g, "
                   "argmax equal at %d/10 positions\n",
                   d, same);
            CHECKF(d <= 1e-3 && same == 10, "vs reference: %g, argmax %d/10", d, same);
            CHECK(max_abs_diff(ref, silu, (int64_t)nl) > 1e-3); /* a different FFN */
            ob.scale_tensor = 4.0f;
            CHECK_OK(write_model(path, &W, &ob, &err), &err);
            if (run_model(path, got, 2, NULL)) {
                double ds = max_abs_diff(silu, got, (int64_t)nl);
                CHECKF(ds <= 1e-6, "bitnet with .scale tensors differs by %g", ds);
            }
            ob.scale_tensor = 0.0f;
            ob.wtype = BN_TYPE_F32;
            CHECK_OK(write_model(path, &W, &ob, &err), &err);
            if (run_model(path, got, 1, NULL)) {
                CHECK(max_abs_diff(silu, got, (int64_t)nl) <= 1e-6);
            }
        }
        free(silu);
    }

    /* Loader errors name the tensor and the shapes. */
    bn_model *m = NULL;
    WriteOpts oe = {"bitnet-b1.58", BN_TYPE_TQ2_0, 0.0f, "blk.1.ffn_up.weight", NULL, NULL, 0};
    CHECK_OK(write_model(path, &W, &oe, &err), &err);
    bn_status st = bn_model_load(path, NULL, &m, &err);
    CHECKF(st == BN_ERR_NOT_FOUND && strstr(err.msg, "blk.1.ffn_up.weight") && !m, "%s", err.msg);
    oe.drop = "blk.0.attn_sub_norm.weight";
    CHECK_OK(write_model(path, &W, &oe, &err), &err);
    st = bn_model_load(path, NULL, &m, &err);
    CHECKF(st == BN_ERR_NOT_FOUND && strstr(err.msg, "blk.0.attn_sub_norm.weight"), "%s", err.msg);
    oe.drop = NULL;
    oe.wtype = BN_TYPE_F32; /* a transposed 128-column TQ2_0 could not be written */
    oe.bad = "blk.1.attn_k.weight";
    CHECK_OK(write_model(path, &W, &oe, &err), &err);
    st = bn_model_load(path, NULL, &m, &err);
    CHECKF(st == BN_ERR_FORMAT && strstr(err.msg, "blk.1.attn_k.weight") &&
               strstr(err.msg, "[128, 256]") && strstr(err.msg, "[256, 128]"),
           "%s", err.msg);
    WriteOpts ou = {"gpt2", BN_TYPE_F32, 0.0f, NULL, NULL, NULL, 0};
    CHECK_OK(write_model(path, &W, &ou, &err), &err);
    st = bn_model_load(path, NULL, &m, &err);
    CHECKF(st == BN_ERR_UNSUPPORTED && strstr(err.msg, "gpt2"), "%s", err.msg);
    /* Bad hyperparameters: clear errors, no crash. */
    const struct {
        const char *key;
        uint32_t val;
        bn_status want;
        const char *msg;
    } bad_kv[] = {
        {"attention.head_count_kv", 3, BN_ERR_FORMAT, "head_count_kv"},
        {"attention.head_count", 0, BN_ERR_FORMAT, "attention.head_count"},
        {"vocab_size", 301, BN_ERR_FORMAT, "token_embd.weight"},
        {"eps", 0, BN_ERR_FORMAT, "layer_norm_rms_epsilon"},
        {"embedding_length", 255, BN_ERR_FORMAT, "embedding_length"},
        {"embedding_length", 0, BN_ERR_FORMAT, "embedding_length"},
        {"block_count", 3, BN_ERR_NOT_FOUND, "blk.2."},
        {"context_length", 0, BN_ERR_FORMAT, "context_length"},
        {"feed_forward_length", 256, BN_ERR_FORMAT, "ffn_sub_norm"},
        {"rope.dimension_count", 65, BN_ERR_FORMAT, "rope.dimension_count"},
    };
    for (size_t i = 0; i < sizeof bad_kv / sizeof bad_kv[0]; i++) {
        WriteOpts ok = {"bitnet-b1.58", BN_TYPE_F32,   0.0f,         NULL,
                        NULL,           bad_kv[i].key, bad_kv[i].val};
        CHECK_OK(write_model(path, &W, &ok, &err), &err);
        m = NULL;
        st = bn_model_load(path, NULL, &m, &err);
        CHECKF(st == bad_kv[i].want && m == NULL && strstr(err.msg, bad_kv[i].msg), "%s=%u: %s: %s",
               bad_kv[i].key, bad_kv[i].val, bn_status_str(st), err.msg);
        bn_model_free(m);
    }

    /* Q8_0 projections on a bitnet arch: dequantized, then ternarized (Q8_0
     * rounds the master weights, so only sanity is checked). */
    WriteOpts oq = {"bitnet-b1.58", BN_TYPE_Q8_0, 0.0f, NULL, NULL, NULL, 0};
    CHECK_OK(write_model(path, &W, &oq, &err), &err);
    if (run_model(path, got, 1, NULL)) {
        int finite = 1;
        for (size_t i = 0; i < nl; i++)
            finite = finite && isfinite(got[i]);
        CHECK(finite);
    }
    /* n_layers: the first layer only. */
    bn_model_params mp = bn_model_default_params();
    mp.n_layers = 1;
    st = bn_model_load(path, &mp, &m, &err);
    CHECK_OK(st, &err);
    if (m) {
        bn_model_get_config(m, &cfg);
        CHECK(cfg.n_layer == 1);
        bn_model_free(m);
    }

    remove(path);
    free(ref);
    free(got);
    weights_free(&W);
}

int main(void) {
    const bn_kernels *ks[2] = {bn_kernels_best(), bn_kernels_reference()};
    for (int i = 0; i < 2; i++) {
        test_layer(ks[i], BN_TYPE_I2_S, 0.0371f, 1 + (uint64_t)i);
        test_layer(ks[i], BN_TYPE_TQ2_0, 0.03125f, 3 + (uint64_t)i);
        test_layer(ks[i], BN_TYPE_TQ1_0, 0.25f, 5 + (uint64_t)i);
    }
    printf("kernels: %s\n", bn_kernels_best()->name);
    test_models();
    return bn_test_finish("test_bitlinear");
}
