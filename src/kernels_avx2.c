/* AVX2 + FMA + F16C kernels (this file is compiled with -mavx2 -mfma
 * -mf16c; bn_kernels_best picks it only on CPUs that have all three).
 *
 * The ternary matmuls (TQ2_0, I2_S) compute the same exact integer block
 * sums as the reference, then apply the scales with the same float
 * operations in the same order, so their outputs are bit-identical to
 * kernels_ref.c. 2-bit codes c in 0..3 stand for w = c - 1, so
 * sum(w * a) = sum(c * a) - sum(a); both sums come from vpmaddubsw (codes
 * as the unsigned operand), which cannot saturate for c <= 3.
 * The float matmuls dequantize a chunk of a row (F16 through F16C, Q8_0
 * vectorized, other types through their to_float) and use FMA dot products;
 * their results differ from the reference only by summation order. */
#include "dispatch.h"
#include "fmt.h"
#include "quant.h"

#include <immintrin.h>
#include <math.h>

#define TOK_TILE 64
#define CHUNK 256

static int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

float bn_avx2_quantize_act(const float *x, int64_t n, int8_t *q) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 vmax = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        /* max(|x|, acc): a NaN |x| leaves acc, as fmaxf does */
        vmax = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), vmax);
    }
    float amax = 0.0f;
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    for (int j = 0; j < 8; j++)
        amax = fmaxf(amax, lanes[j]);
    for (; i < n; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    if (amax < 1e-5f) amax = 1e-5f;
    const float s = 127.0f / amax;

    const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
    i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v[4];
        for (int k = 0; k < 4; k++) {
            __m256 f = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), vs);
            f = _mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            f = _mm256_and_ps(f, _mm256_cmp_ps(f, f, _CMP_ORD_Q)); /* NaN -> 0 */
            f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
            v[k] = _mm256_cvtps_epi32(f);
        }
        /* packs interleave 128-bit lanes; the permute puts them back */
        __m256i a = _mm256_packs_epi32(v[0], v[1]), b = _mm256_packs_epi32(v[2], v[3]);
        __m256i c = _mm256_packs_epi16(a, b);
        c = _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + i), c);
    }
    for (; i < n; i++) {
        const float v = nearbyintf(x[i] * s);
        q[i] = (int8_t)(v >= 127.0f ? 127 : v <= -128.0f ? -128 : v == v ? (int)v : 0);
    }
    return s;
}

/* sum over 32 lanes of c * a - a, as int32 lanes added into acc */
static inline __m256i dot_codes(__m256i codes, __m256i a, __m256i acc) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    const __m256i ca = _mm256_maddubs_epi16(codes, a);
    const __m256i sa = _mm256_maddubs_epi16(ones8, a);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_sub_epi16(ca, sa), ones16));
}

/* Integer sum of one TQ2_0 block (256) with 256 activations. */
static inline int32_t tq2_0_block_isum(const uint8_t *b, const int8_t *a) {
    const __m256i mask = _mm256_set1_epi8(3);
    __m256i acc = _mm256_setzero_si256();
    for (int j = 0; j < 2; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(b + 32 * j));
        for (int l = 0; l < 4; l++) {
            const __m256i c = _mm256_and_si256(_mm256_srli_epi16(v, 2 * l), mask);
            const __m256i av = _mm256_loadu_si256((const __m256i *)(a + 128 * j + 32 * l));
            acc = dot_codes(c, av, acc);
        }
    }
    return hsum_i32(acc);
}

static void avx2_matmul_tq2_0(const bn_tensor *w, const int8_t *q, const float *act_scale,
                              int64_t n_tok, float *out, int64_t out_stride, int64_t r0,
                              int64_t r1) {
    const int64_t n = w->n_cols, nb = n / BN_QK_K;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (int64_t t = 0; t < n_tok; t++) {
            const int8_t *a = q + t * n;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + b * BN_TQ2_0_BYTES;
                const float d = bn_fp16_to_fp32(bn_rd_u16(blk + 64));
                acc += d * (float)tq2_0_block_isum(blk, a + b * BN_QK_K);
            }
            out[t * out_stride + r] = acc * w->scale / act_scale[t];
        }
    }
}

static void avx2_matmul_i2_s(const bn_tensor *w, const int8_t *q, const float *act_scale,
                             int64_t n_tok, float *out, int64_t out_stride, int64_t r0,
                             int64_t r1) {
    const int64_t n = w->n_cols, nb = n / BN_QK_I2_S;
    const __m256i mask = _mm256_set1_epi8(3);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (int64_t t = 0; t < n_tok; t++) {
            const int8_t *a = q + t * n;
            __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
            for (int64_t b = 0; b < nb; b++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(row + b * BN_I2_S_BYTES));
                const int8_t *ab = a + b * BN_QK_I2_S;
                /* groups 0..3 sit in bits 6-7, 4-5, 2-3, 0-1 */
                const __m256i c0 = _mm256_and_si256(_mm256_srli_epi16(v, 6), mask);
                const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
                const __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(v, 2), mask);
                const __m256i c3 = _mm256_and_si256(v, mask);
                acc0 = dot_codes(c0, _mm256_loadu_si256((const __m256i *)(ab + 0)), acc0);
                acc1 = dot_codes(c1, _mm256_loadu_si256((const __m256i *)(ab + 32)), acc1);
                acc0 = dot_codes(c2, _mm256_loadu_si256((const __m256i *)(ab + 64)), acc0);
                acc1 = dot_codes(c3, _mm256_loadu_si256((const __m256i *)(ab + 96)), acc1);
            }
            const __m256i acc = _mm256_add_epi32(acc0, acc1);
            out[t * out_stride + r] = (float)hsum_i32(acc) * w->scale / act_scale[t];
        }
    }
}

static void ref_matmul_tq1_0(const bn_tensor *w, const int8_t *q, const float *act_scale,
                             int64_t n_tok, float *out, int64_t out_stride, int64_t r0,
                             int64_t r1) {
    bn_kernels_reference()->matmul_i8[BN_TYPE_TQ1_0](w, q, act_scale, n_tok, out, out_stride, r0,
                                                     r1);
}

/* Dequantize len elements (a multiple of the block size) starting at
 * element k0 of a row. F32 rows are used in place (returns the pointer). */
static const float *chunk_to_float(int type, const bn_type_traits *tt, const uint8_t *row,
                                   int64_t k0, int len, float *buf) {
    const uint8_t *src = row + (size_t)(k0 / tt->block_size) * tt->type_size;
    int i = 0;
    switch (type) {
    case BN_TYPE_F32: return (const float *)src;
    case BN_TYPE_F16:
        for (; i + 8 <= len; i += 8) {
            _mm256_storeu_ps(buf + i,
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
        }
        for (; i < len; i++)
            buf[i] = bn_fp16_to_fp32(bn_rd_u16(src + 2 * i));
        return buf;
    case BN_TYPE_Q8_0:
        for (int b = 0; b < len / BN_QK8_0; b++) {
            const uint8_t *blk = src + b * BN_Q8_0_BYTES;
            const __m256 d = _mm256_set1_ps(bn_fp16_to_fp32(bn_rd_u16(blk)));
            for (int k = 0; k < 4; k++) {
                const __m128i q8 = _mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * k));
                const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
                _mm256_storeu_ps(buf + BN_QK8_0 * b + 8 * k, _mm256_mul_ps(f, d));
            }
        }
        return buf;
    default: tt->to_float(src, buf, len); return buf;
    }
}

void bn_avx2_matmul_float(const bn_tensor *w, const float *x, int64_t n_tok, float *out,
                          int64_t out_stride, int64_t r0, int64_t r1) {
    const bn_type_traits *tt = bn_type_get(w->type);
    const int64_t n = w->n_cols;
    float buf[CHUNK];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (int64_t t0 = 0; t0 < n_tok; t0 += TOK_TILE) {
            const int nt = (int)(n_tok - t0 < TOK_TILE ? n_tok - t0 : TOK_TILE);
            float acc[TOK_TILE] = {0};
            for (int64_t k0 = 0; k0 < n; k0 += CHUNK) {
                const int len = (int)(n - k0 < CHUNK ? n - k0 : CHUNK);
                const float *wv = chunk_to_float(w->type, tt, row, k0, len, buf);
                for (int t = 0; t < nt; t++) {
                    const float *xt = x + (t0 + t) * n + k0;
                    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
                    int k = 0;
                    for (; k + 16 <= len; k += 16) {
                        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(wv + k), _mm256_loadu_ps(xt + k), s0);
                        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(wv + k + 8),
                                             _mm256_loadu_ps(xt + k + 8), s1);
                    }
                    float s = hsum_ps(_mm256_add_ps(s0, s1));
                    for (; k < len; k++)
                        s += wv[k] * xt[k];
                    acc[t] += s;
                }
            }
            for (int t = 0; t < nt; t++)
                out[(t0 + t) * out_stride + r] = acc[t] * w->scale;
        }
    }
}

static const bn_kernels k_avx2 = {
    .name = "avx2",
    .quantize_act = bn_avx2_quantize_act,
    .matmul_i8 =
        {
            [BN_TYPE_TQ1_0] = ref_matmul_tq1_0,
            [BN_TYPE_TQ2_0] = avx2_matmul_tq2_0,
            [BN_TYPE_I2_S] = avx2_matmul_i2_s,
        },
    .matmul_f32 =
        {
            [BN_TYPE_F32] = bn_avx2_matmul_float,
            [BN_TYPE_F16] = bn_avx2_matmul_float,
            [BN_TYPE_BF16] = bn_avx2_matmul_float,
            [BN_TYPE_Q8_0] = bn_avx2_matmul_float,
            [BN_TYPE_Q4_0] = bn_avx2_matmul_float,
            [BN_TYPE_Q6_K] = bn_avx2_matmul_float,
            [BN_TYPE_TQ1_0] = bn_avx2_matmul_float,
            [BN_TYPE_TQ2_0] = bn_avx2_matmul_float,
            [BN_TYPE_I2_S] = bn_avx2_matmul_float,
        },
    .attn_head = bn_ref_attn_head,
    .ffn_act = bn_ref_ffn_act,
};

const bn_kernels *bn_kernels_avx2(void) { return &k_avx2; }
