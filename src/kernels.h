/* The matrix kernels: the interface that the forward pass calls, a portable
 * reference implementation (kernels_ref.c), and SIMD variants chosen at run
 * time from the CPU's features (kernels_<isa>.c). Every variant must give the
 * same integer results as the reference for the ternary types. */
#ifndef BN_KERNELS_H
#define BN_KERNELS_H

#include "common.h"

#include <math.h>

/* A 2-D weight matrix bound to the model: n_rows outputs of n_cols inputs
 * (ggml's ne[1] x ne[0]), stored row after row, each row `row_bytes` long.
 * `data` points into the file mapping, or at a repacked copy. */
typedef struct bn_tensor {
    int type;
    int64_t n_cols;
    int64_t n_rows;
    size_t row_bytes;
    const void *data;
    /* Per-tensor factor applied to every output: I2_S's stored scale, or the
     * product of the `.scale` tensor of llama.cpp's bitnet arch; 1 if none. */
    float scale;
    const char *name; /* for error messages */
    /* 0: the file's block layout. Otherwise a kernel set's private layout
     * (bn_kernels.pack), which only that set's matmul_i8 reads. */
    int layout;
    /* Rows that the layout stores together (threads split a matrix at
     * multiples of it); 0 when any split is as good as another. */
    int row_group;
} bn_tensor;

/* BitLinear activation quantization, per token (row of n floats):
 * s = 127 / max(|x|) (max clamped to 1e-5), q = clamp(round(x * s), -128, 127).
 * Rounding is half to even, as torch.round (transformers' BitNet) and ggml's
 * nearest_int (bitnet.cpp's quantize_row_i8_s) both do. Returns s. */
typedef float (*bn_quantize_act_fn)(const float *x, int64_t n, int8_t *q);

/* Ternary matmul on int8 activations, rows [r0, r1) of w, n_tok tokens:
 *   out[t * out_stride + r] = (sum_k w[r,k] * q[t * n_cols + k]) * w.scale
 *                             * block scales / act_scale[t]
 * The integer sum is exact (int32). */
typedef void (*bn_matmul_i8_fn)(const bn_tensor *w, const int8_t *q, const float *act_scale,
                                int64_t n_tok, float *out, int64_t out_stride, int64_t r0,
                                int64_t r1);

/* Float-activation matmul for the float and Q types (embedding rows, heads,
 * llama float weights): out[t * out_stride + r] = sum_k w[r,k] * x[t*n_cols+k]. */
typedef void (*bn_matmul_f32_fn)(const bn_tensor *w, const float *x, int64_t n_tok, float *out,
                                 int64_t out_stride, int64_t r0, int64_t r1);

/* Attention of one query head over n_pos cached positions of its KV head:
 * o[e] = sum_i softmax_i(scale * q . k_i) v_i[e], e < hd; k_i = k + i *
 * kv_stride elements (v likewise), float32 or, when kv_f16, IEEE half;
 * att is scratch of n_pos floats. */
typedef void (*bn_attn_head_fn)(const float *q, const void *k, const void *v, int kv_f16,
                                int64_t kv_stride, int32_t n_pos, int hd, float scale, float *att,
                                float *o);

/* Two query heads that share one KV head (GQA): the same as attn_head on
 * (q0, o0) and on (q1, o1), with each K and V row read once for both; att is
 * scratch of 2 * n_pos floats. Optional: NULL calls attn_head twice. */
typedef void (*bn_attn_head2_fn)(const float *q0, const float *q1, const void *k, const void *v,
                                 int kv_f16, int64_t kv_stride, int32_t n_pos, int hd, float scale,
                                 float *att, float *o0, float *o1);

/* Prefetches the n KV-cache elements (float32, or half when f16) that lie
 * BN_KV_PREFETCH bytes past element i of base: a KV head's rows are short
 * streams that the hardware prefetcher picks up late. One layer's attention
 * (20 heads, 160 positions, cold) on one thread of the development machine,
 * with a throwaway copy of the AVX-512 kernel: 36 -> 32 us with float32 K/V,
 * 31 -> 24 us with half (a plain read of the same bytes: 29 and 16 us). */
#define BN_KV_PREFETCH 4096
static inline void bn_kv_prefetch(const void *base, size_t i, int64_t n, int f16) {
    const size_t es = f16 ? 2 : 4;
    const char *p = (const char *)base + i * es + BN_KV_PREFETCH;
    for (size_t c = 0; c < (size_t)n * es; c += 64)
        __builtin_prefetch(p + c, 0, 3);
}

/* n floats to IEEE half (two bytes each, little-endian as the GGUF F16
 * type), rounded to nearest even: the F16 KV cache's store. The reference
 * is bn_f16_from_float (fmt_float.c); every set gives its bits. */
typedef void (*bn_to_f16_fn)(const float *x, void *y, int64_t n);

/* RMSNorm: o[i] = (x[i] * s) * w[i], s = 1 / sqrt(mean(x^2) + eps), with
 * the sum of squares taken exactly as bn_rmsnorm (forward.c) takes it (the
 * float squares summed in double in 8 lanes, lane j holding the elements
 * i = j mod 8), so every set gives the same bits. o may be x. */
typedef void (*bn_rmsnorm_fn)(float *o, const float *x, const float *w, int64_t n, float eps);

/* The tail of that sum and the scale s, shared so that every RMSNorm rounds
 * alike: the elements from i on go to lane 0, then the lanes are added
 * pairwise and the mean rounded to float. */
static inline float bn_rmsnorm_scale(double part[8], const float *x, int64_t i, int64_t n,
                                     float eps) {
    for (; i < n; i++)
        part[0] += (double)(x[i] * x[i]);
    const double ss =
        ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    const float mean = (float)(ss / (double)n);
    return 1.0f / sqrtf(mean + eps);
}

/* FFN gate activation in place: g[i] = act(g[i]) * u[i], act = relu(x)^2
 * when relu2, else SiLU x / (1 + exp(-x)). */
typedef void (*bn_ffn_act_fn)(float *g, const float *u, int64_t n, int relu2);

typedef struct bn_kernels {
    const char *name;
    bn_quantize_act_fn quantize_act;
    /* Indexed by type id; NULL where the type has no kernel of that kind. */
    bn_matmul_i8_fn matmul_i8[BN_TYPE_COUNT_];
    bn_matmul_f32_fn matmul_f32[BN_TYPE_COUNT_];
    /* Bit t set: matmul_f32[t] quantizes the activations to int8 per 256
     * columns (scale max|x| / 127, as llama.cpp's Q8_K) and takes integer
     * dot products, so it differs from float math by that rounding. */
    uint64_t f32_int8_act;
    bn_attn_head_fn attn_head;
    bn_attn_head2_fn attn_head2;
    bn_to_f16_fn to_f16;
    bn_ffn_act_fn ffn_act;
    bn_rmsnorm_fn rmsnorm; /* optional: NULL uses bn_rmsnorm */
    /* 1: the set's decode kernels stream weights fast enough to gain from
     * huge pages, so the loader puts the weights they stream in huge-page
     * blocks (model.c, weight_alloc) and copies the head there; kernels
     * that gain nothing from that would only pay its load time. */
    int bandwidth_bound;
    /* Optional repacking of a BitLinear weight into a layout chosen for this
     * set's matmul_i8, done once at load (model.c, bind_matrix). packed_size
     * chooses the layout for w (*layout) and returns the bytes it needs (0:
     * keep the file layout); pack(w, that layout, dst) writes them to dst
     * (64-byte aligned) from w's current data and points w at dst with its
     * layout id. NULL in sets without a layout. */
    size_t (*packed_size)(const bn_tensor *w, int *layout);
    void (*pack)(bn_tensor *w, int layout, void *dst);
} bn_kernels;

/* The reference attention and FFN activation (kernels_ref.c), which sets
 * without their own use. */
void bn_ref_attn_head(const float *q, const void *k, const void *v, int kv_f16, int64_t kv_stride,
                      int32_t n_pos, int hd, float scale, float *att, float *o);
void bn_ref_ffn_act(float *g, const float *u, int64_t n, int relu2);

/* The portable reference set. */
const bn_kernels *bn_kernels_reference(void);
/* The best set for this CPU (computed once; read-only afterwards). */
const bn_kernels *bn_kernels_best(void);

/* Exact integer dot product of one ternary row with int8 activations, per
 * block: the reference that every variant is checked against. For types
 * with per-block scales, returns the float sum of scale_b * isum_b. */
float bn_ref_dot_ternary(const bn_tensor *w, int64_t row, const int8_t *q);

#endif /* BN_KERNELS_H */
