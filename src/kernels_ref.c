/* The portable reference kernels: plain C, one block at a time, no
 * allocation (stack buffers of one block or chunk). SIMD variants must give
 * the same integer sums for the ternary types, and for them the same floats:
 * per row and token, out = (sum over blocks of d_b * isum_b) * scale / act
 * (I2_S: the whole row's isum as float) in exactly this order. */
#include "fmt.h"
#include "kernels.h"
#include "quant.h"

#include <math.h>

/* Tokens handled together per pass over a row (partial sums on the stack). */
#define TOK_TILE 64
/* Elements dequantized at a time in the float path; a multiple of every
 * block size. */
#define CHUNK 256

static float ref_quantize_act(const float *x, int64_t n, int8_t *q) {
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    if (amax < 1e-5f) amax = 1e-5f;
    const float s = 127.0f / amax;
    for (int64_t i = 0; i < n; i++) {
        const float v = nearbyintf(x[i] * s); /* half to even in the default mode */
        q[i] = (int8_t)(v >= 127.0f ? 127 : v <= -128.0f ? -128 : v == v ? (int)v : 0);
    }
    return s;
}

static int32_t dot_i8(const int8_t *a, const int8_t *b, int n) {
    int32_t s = 0;
    for (int i = 0; i < n; i++)
        s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

/* Unpack block b of a ternary row; returns its scale (1 for I2_S). */
static float unpack_block(int type, const uint8_t *row, int64_t b, int8_t *wq) {
    switch (type) {
    case BN_TYPE_TQ1_0: return bn_tq1_0_unpack(row + b * BN_TQ1_0_BYTES, wq);
    case BN_TYPE_TQ2_0: return bn_tq2_0_unpack(row + b * BN_TQ2_0_BYTES, wq);
    default: bn_i2_s_unpack(row + b * BN_I2_S_BYTES, wq); return 1.0f;
    }
}

float bn_ref_dot_ternary(const bn_tensor *w, int64_t row, const int8_t *q) {
    const int is_i2s = w->type == BN_TYPE_I2_S;
    const int bs = is_i2s ? BN_QK_I2_S : BN_QK_K;
    const uint8_t *r = (const uint8_t *)w->data + (size_t)row * w->row_bytes;
    int8_t wq[BN_QK_K];
    float facc = 0.0f;
    int32_t iacc = 0;
    for (int64_t b = 0; b < w->n_cols / bs; b++) {
        const float d = unpack_block(w->type, r, b, wq);
        const int32_t s = dot_i8(wq, q + b * bs, bs);
        if (is_i2s) {
            iacc += s;
        } else {
            facc += d * (float)s;
        }
    }
    return is_i2s ? (float)iacc : facc;
}

static void matmul_ternary(const bn_tensor *w, const int8_t *q, const float *act_scale,
                           int64_t n_tok, float *out, int64_t out_stride, int64_t r0, int64_t r1) {
    const int is_i2s = w->type == BN_TYPE_I2_S;
    const int bs = is_i2s ? BN_QK_I2_S : BN_QK_K;
    const int64_t n = w->n_cols, nb = n / bs;
    int8_t wq[BN_QK_K];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (int64_t t0 = 0; t0 < n_tok; t0 += TOK_TILE) {
            const int nt = (int)(n_tok - t0 < TOK_TILE ? n_tok - t0 : TOK_TILE);
            float facc[TOK_TILE] = {0};
            int32_t iacc[TOK_TILE] = {0};
            for (int64_t b = 0; b < nb; b++) {
                const float d = unpack_block(w->type, row, b, wq);
                for (int t = 0; t < nt; t++) {
                    const int32_t s = dot_i8(wq, q + (t0 + t) * n + b * bs, bs);
                    if (is_i2s) {
                        iacc[t] += s;
                    } else {
                        facc[t] += d * (float)s;
                    }
                }
            }
            for (int t = 0; t < nt; t++) {
                const float sum = is_i2s ? (float)iacc[t] : facc[t];
                out[(t0 + t) * out_stride + r] = sum * w->scale / act_scale[t0 + t];
            }
        }
    }
}

/* Any type with a to_float: dequantize CHUNK elements of a row, dot them
 * with each token of the tile, and add the chunk's sum to the token's. */
static void matmul_float(const bn_tensor *w, const float *x, int64_t n_tok, float *out,
                         int64_t out_stride, int64_t r0, int64_t r1) {
    const bn_type_traits *tt = bn_type_get(w->type);
    const int64_t n = w->n_cols;
    const size_t chunk_bytes = (size_t)(CHUNK / tt->block_size) * tt->type_size;
    float buf[CHUNK];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (int64_t t0 = 0; t0 < n_tok; t0 += TOK_TILE) {
            const int nt = (int)(n_tok - t0 < TOK_TILE ? n_tok - t0 : TOK_TILE);
            float acc[TOK_TILE] = {0};
            for (int64_t k0 = 0, c = 0; k0 < n; k0 += CHUNK, c++) {
                const int len = (int)(n - k0 < CHUNK ? n - k0 : CHUNK);
                tt->to_float(row + (size_t)c * chunk_bytes, buf, len);
                for (int t = 0; t < nt; t++) {
                    const float *xt = x + (t0 + t) * n + k0;
                    float s = 0.0f;
                    for (int k = 0; k < len; k++)
                        s += buf[k] * xt[k];
                    acc[t] += s;
                }
            }
            for (int t = 0; t < nt; t++)
                out[(t0 + t) * out_stride + r] = acc[t] * w->scale;
        }
    }
}

/* Dot product with 8 independent partial sums, which compilers vectorize
 * without -ffast-math (a fixed order, so results do not depend on threads). */
/* Element e of a K or V row, float32 or IEEE half (as bn_f16_from_float
 * stores it). */
static inline float kv_at(const void *row, int kv_f16, int e) {
    return kv_f16 ? bn_fp16_to_fp32(bn_rd_u16((const uint8_t *)row + 2 * e))
                  : ((const float *)row)[e];
}

/* q . row in eight lanes (lane j holds the elements e = j mod 8). */
static float dot_kv(const float *a, const void *row, int kv_f16, int n) {
    float acc[8] = {0};
    int e = 0;
    for (; e + 8 <= n; e += 8) {
        for (int k = 0; k < 8; k++)
            acc[k] += a[e + k] * kv_at(row, kv_f16, e + k);
    }
    float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; e < n; e++)
        sum += a[e] * kv_at(row, kv_f16, e);
    return sum;
}

void bn_ref_attn_head(const float *q, const void *k, const void *v, int kv_f16, int64_t kv_stride,
                      int32_t n_pos, int hd, float scale, float *att, float *o) {
    const size_t esize = kv_f16 ? sizeof(uint16_t) : sizeof(float);
    const size_t row_bytes = (size_t)kv_stride * esize;
    float mx = -INFINITY;
    for (int32_t i = 0; i < n_pos; i++) {
        const float d = dot_kv(q, (const char *)k + (size_t)i * row_bytes, kv_f16, hd) * scale;
        att[i] = d;
        if (d > mx) mx = d;
    }
    float sum = 0.0f;
    for (int32_t i = 0; i < n_pos; i++) {
        att[i] = expf(att[i] - mx);
        sum += att[i];
    }
    const float inv = 1.0f / sum;
    for (int e = 0; e < hd; e++)
        o[e] = 0.0f;
    for (int32_t i = 0; i < n_pos; i++) {
        const float a = att[i] * inv;
        const void *vr = (const char *)v + (size_t)i * row_bytes;
        for (int e = 0; e < hd; e++)
            o[e] += a * kv_at(vr, kv_f16, e);
    }
}

void bn_ref_ffn_act(float *g, const float *u, int64_t n, int relu2) {
    if (relu2) {
        for (int64_t i = 0; i < n; i++) {
            const float r = g[i] > 0.0f ? g[i] : 0.0f;
            g[i] = r * r * u[i];
        }
    } else {
        for (int64_t i = 0; i < n; i++)
            g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

static const bn_kernels k_reference = {
    .name = "reference",
    .quantize_act = ref_quantize_act,
    .matmul_i8 =
        {
            [BN_TYPE_TQ1_0] = matmul_ternary,
            [BN_TYPE_TQ2_0] = matmul_ternary,
            [BN_TYPE_I2_S] = matmul_ternary,
        },
    .matmul_f32 =
        {
            [BN_TYPE_F32] = matmul_float,
            [BN_TYPE_F16] = matmul_float,
            [BN_TYPE_BF16] = matmul_float,
            [BN_TYPE_Q8_0] = matmul_float,
            [BN_TYPE_Q4_0] = matmul_float,
            [BN_TYPE_Q6_K] = matmul_float,
            [BN_TYPE_TQ1_0] = matmul_float,
            [BN_TYPE_TQ2_0] = matmul_float,
            [BN_TYPE_I2_S] = matmul_float,
        },
    .attn_head = bn_ref_attn_head,
    .to_f16 = bn_f16_from_float,
    .ffn_act = bn_ref_ffn_act,
};

const bn_kernels *bn_kernels_reference(void) { return &k_reference; }
