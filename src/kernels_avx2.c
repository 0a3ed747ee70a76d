/* AVX2 + FMA + F16C kernels (this file is compiled with -mavx2 -mfma
 * -mf16c; bn_kernels_best picks it only on CPUs that have all three).
 *
 * The ternary matmuls (TQ2_0, I2_S) compute the same exact integer block
 * sums as the reference, then apply the scales with the same float
 * operations in the same order, so their outputs are bit-identical to
 * kernels_ref.c. 2-bit codes c in 0..3 stand for w = c - 1, so
 * sum(w * a) = sum(c * a) - sum(a); both sums come from vpmaddubsw (codes
 * as the unsigned operand), which cannot saturate for c <= 3.
 * The float matmuls dequantize a chunk of a row (F16 through F16C, other
 * types through their to_float) and use FMA dot products; their results
 * differ from the reference only by summation order. Q6_K, Q8_0 and Q4_0
 * (heads and embeddings) instead take int8 activations, as llama.cpp does
 * (see the heads section). */
#include "dispatch.h"
#include "fmt.h"
#include "quant.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

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

/* Activation sums per block of bs columns for up to ATILE tokens (n_cols /
 * bs <= AMAX_NB), computed once per call rather than once per row:
 * sum(w * a) = sum(c * a) - sum(a) for codes c = w + 1. */
#define ATILE 16
#define AMAX_NB 128

/* The R8 layout (below); an id apart from the AVX-512 set's R16 (1) and
 * B3 (2), whose tensors that set never hands to these kernels, so that one
 * could not be taken for the other. */
enum { AVX2_LAYOUT_R8 = 16 };

static int32_t sum_i8(const int8_t *a, int64_t n) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i acc = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i p = _mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(a + i)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones16));
    }
    int32_t s = hsum_i32(acc);
    for (; i < n; i++)
        s += a[i];
    return s;
}

/* asum[t][b]: the sum of block b's 256 activations of token t < nt. */
static void tile_block_sums(const int8_t *q, int64_t n, int64_t nt, int64_t nb,
                            int32_t (*asum)[AMAX_NB]) {
    for (int64_t t = 0; t < nt; t++) {
        for (int64_t b = 0; b < nb; b++)
            asum[t][b] = sum_i8(q + t * n + b * BN_QK_K, BN_QK_K);
    }
}

/* sum(c * a) over one TQ2_0 block (256 columns, 64 bytes of codes), for
 * one token: decode reads each block once, so nothing is worth sharing. */
static inline int32_t tq2_0_block_ca(const uint8_t *b, const int8_t *a) {
    const __m256i mask = _mm256_set1_epi8(3), ones16 = _mm256_set1_epi16(1);
    __m256i acc16 = _mm256_setzero_si256();
    for (int j = 0; j < 2; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(b + 32 * j));
        for (int l = 0; l < 4; l++) {
            const __m256i c = _mm256_and_si256(_mm256_srli_epi16(v, 2 * l), mask);
            const __m256i av = _mm256_loadu_si256((const __m256i *)(a + 128 * j + 32 * l));
            acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(c, av));
        }
    }
    return hsum_i32(_mm256_madd_epi16(acc16, ones16));
}

static void avx2_matmul_r8(const bn_tensor *w, const int8_t *q, const float *act_scale,
                           int64_t n_tok, float *out, int64_t out_stride, int64_t r0, int64_t r1);

static void avx2_matmul_tq2_0(const bn_tensor *w, const int8_t *q, const float *act_scale,
                              int64_t n_tok, float *out, int64_t out_stride, int64_t r0,
                              int64_t r1) {
    if (w->layout == AVX2_LAYOUT_R8) {
        avx2_matmul_r8(w, q, act_scale, n_tok, out, out_stride, r0, r1);
        return;
    }
    const int64_t n = w->n_cols, nb = n / BN_QK_K;
    const __m256i mask = _mm256_set1_epi8(3), ones16 = _mm256_set1_epi16(1);
    if (nb > AMAX_NB) {
        bn_kernels_reference()->matmul_i8[BN_TYPE_TQ2_0](w, q, act_scale, n_tok, out, out_stride,
                                                         r0, r1);
        return;
    }
    int32_t asum[ATILE][AMAX_NB];
    for (int64_t t0 = 0; t0 < n_tok; t0 += ATILE) {
        const int64_t nt = n_tok - t0 < ATILE ? n_tok - t0 : ATILE;
        tile_block_sums(q + t0 * n, n, nt, nb, asum);
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
            /* each block's codes are decoded once for up to 4 tokens; the
             * vpmaddubsw pair sums (|c a + c a| <= 768) add up exactly in
             * int16 over a block (8 per lane), then widen once */
            if (nt == 1) { /* decode */
                const int8_t *a = q + t0 * n;
                float acc = 0.0f;
                for (int64_t b = 0; b < nb; b++) {
                    const uint8_t *blk = row + b * BN_TQ2_0_BYTES;
                    _mm_prefetch((const char *)(blk + 8192), _MM_HINT_T0);
                    _mm_prefetch((const char *)(blk + 8192 + 64), _MM_HINT_T0);
                    const float d = _cvtsh_ss(bn_rd_u16(blk + 64));
                    acc += d * (float)(tq2_0_block_ca(blk, a + b * BN_QK_K) - asum[0][b]);
                }
                out[t0 * out_stride + r] = acc * w->scale / act_scale[t0];
                continue;
            }
            for (int64_t t1 = 0; t1 < nt; t1 += 4) {
                const int m = (int)(nt - t1 < 4 ? nt - t1 : 4);
                float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                for (int64_t b = 0; b < nb; b++) {
                    const uint8_t *blk = row + b * BN_TQ2_0_BYTES;
                    if (t1 == 0) {
                        _mm_prefetch((const char *)(blk + 8192), _MM_HINT_T0);
                        _mm_prefetch((const char *)(blk + 8192 + 64), _MM_HINT_T0);
                    }
                    const float d = _cvtsh_ss(bn_rd_u16(blk + 64));
                    __m256i c[8];
                    for (int j = 0; j < 2; j++) {
                        const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 32 * j));
                        for (int l = 0; l < 4; l++)
                            c[4 * j + l] = _mm256_and_si256(_mm256_srli_epi16(v, 2 * l), mask);
                    }
                    for (int t = 0; t < m; t++) {
                        /* code vector 4j + l: columns 128j + 32l .. + 31 */
                        const int8_t *a = q + (t0 + t1 + t) * n + b * BN_QK_K;
                        __m256i s16 =
                            _mm256_maddubs_epi16(c[0], _mm256_loadu_si256((const __m256i *)a));
                        for (int k = 1; k < 8; k++) {
                            s16 = _mm256_add_epi16(
                                s16, _mm256_maddubs_epi16(
                                         c[k], _mm256_loadu_si256((const __m256i *)(a + 32 * k))));
                        }
                        const int32_t isum = hsum_i32(_mm256_madd_epi16(s16, ones16));
                        acc[t] += d * (float)(isum - asum[t1 + t][b]);
                    }
                }
                for (int t = 0; t < m; t++)
                    out[(t0 + t1 + t) * out_stride + r] =
                        acc[t] * w->scale / act_scale[t0 + t1 + t];
            }
        }
    }
}

static void avx2_matmul_i2_s(const bn_tensor *w, const int8_t *q, const float *act_scale,
                             int64_t n_tok, float *out, int64_t out_stride, int64_t r0,
                             int64_t r1) {
    if (w->layout == AVX2_LAYOUT_R8) {
        avx2_matmul_r8(w, q, act_scale, n_tok, out, out_stride, r0, r1);
        return;
    }
    const int64_t n = w->n_cols, nb = n / BN_QK_I2_S;
    const __m256i mask = _mm256_set1_epi8(3), ones16 = _mm256_set1_epi16(1);
    int32_t asum[ATILE];
    for (int64_t t0 = 0; t0 < n_tok; t0 += ATILE) {
        const int64_t nt = n_tok - t0 < ATILE ? n_tok - t0 : ATILE;
        for (int64_t t = 0; t < nt; t++)
            asum[t] = sum_i8(q + (t0 + t) * n, n);
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
            for (int64_t t1 = 0; t1 < nt; t1 += 4) {
                const int m = (int)(nt - t1 < 4 ? nt - t1 : 4);
                __m256i acc[4];
                for (int t = 0; t < 4; t++)
                    acc[t] = _mm256_setzero_si256();
                for (int64_t b = 0; b < nb; b++) {
                    const uint8_t *blk = row + b * BN_I2_S_BYTES;
                    if (t1 == 0 && b % 2 == 0)
                        _mm_prefetch((const char *)(blk + 8192), _MM_HINT_T0);
                    const __m256i v = _mm256_loadu_si256((const __m256i *)blk);
                    /* groups 0..3 sit in bits 6-7, 4-5, 2-3, 0-1; four pair
                     * sums of at most 768 per int16 lane: exact */
                    const __m256i c0 = _mm256_and_si256(_mm256_srli_epi16(v, 6), mask);
                    const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
                    const __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(v, 2), mask);
                    const __m256i c3 = _mm256_and_si256(v, mask);
                    for (int t = 0; t < m; t++) {
                        const int8_t *ab = q + (t0 + t1 + t) * n + b * BN_QK_I2_S;
                        __m256i s16 =
                            _mm256_maddubs_epi16(c0, _mm256_loadu_si256((const __m256i *)ab));
                        s16 = _mm256_add_epi16(
                            s16, _mm256_maddubs_epi16(
                                     c1, _mm256_loadu_si256((const __m256i *)(ab + 32))));
                        s16 = _mm256_add_epi16(
                            s16, _mm256_maddubs_epi16(
                                     c2, _mm256_loadu_si256((const __m256i *)(ab + 64))));
                        s16 = _mm256_add_epi16(
                            s16, _mm256_maddubs_epi16(
                                     c3, _mm256_loadu_si256((const __m256i *)(ab + 96))));
                        acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(s16, ones16));
                    }
                }
                for (int t = 0; t < m; t++) {
                    out[(t0 + t1 + t) * out_stride + r] = (float)(hsum_i32(acc[t]) - asum[t1 + t]) *
                                                          w->scale / act_scale[t0 + t1 + t];
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The R8 layout: 8 rows interleaved, 2 bits per weight                     */
/* ------------------------------------------------------------------------ */

/* Layout AVX2_LAYOUT_R8, for TQ1_0, TQ2_0 and I2_S tensors of whole
 * 256-column blocks (the AVX2 analogue of the AVX-512 set's R16), repacked
 * once at load:
 *   - rows in groups of 8 (the last group padded with code 1, weight 0; its
 *     padding rows are never written out);
 *   - group g, 256-column block b: 16 chunks of 32 bytes at offset
 *     512 (g nb + b); byte 4r + j of chunk c holds, in bits 2s, the code
 *     w + 1 (0..3; TQ2_0's invalid 3 reads as +2, as in the reference) of
 *     row 8g + r at column 256b + 16c + 4s + j;
 *   - after the groups, the block scales: half 8 (g nb + b) + r is row
 *     8g + r's scale of block b (0 for I2_S, whose rows sum as integers
 *     over all blocks, as the reference does, before its one scale).
 * (v >> 2s) & 3 of a chunk is a vector whose 32-bit lane r holds 4 codes of
 * row r, the u8 operand of vpmaddubsw against 4 activations broadcast: each
 * lane is one row, so no sum is ever reduced across lanes (the row-major
 * kernel spends about a quarter of its work on that). A block's 16-bit
 * sums take 32 pair sums of at most 3 * 128 * 2 in magnitude in each of two
 * sets (s even, s odd): exact in int16. Then the block scales and the float
 * sums go 8 rows wide in the reference's order (d * (float)s block by
 * block, then * scale / act_scale). TQ1_0 (base-3 digits, slow to decode in
 * AVX2) and I2_S read as fast as TQ2_0 here. */

static size_t avx2_packed_size(const bn_tensor *w, int *layout) {
    if (w->type != BN_TYPE_TQ1_0 && w->type != BN_TYPE_TQ2_0 && w->type != BN_TYPE_I2_S) return 0;
    if (w->n_cols <= 0 || w->n_rows <= 0 || w->n_cols % BN_QK_K != 0) return 0;
    if (w->n_cols / BN_QK_K > AMAX_NB) return 0;
    const size_t groups = (size_t)(w->n_rows + 7) / 8, nb = (size_t)(w->n_cols / BN_QK_K);
    *layout = AVX2_LAYOUT_R8;
    return groups * nb * (512 + 16);
}

/* The codes (w + 1) of one TQ1_0 block (base-3 digits, fmt_tq1_0.c: digit
 * k of byte v is ((uint8_t)(v * 3^k) * 3) >> 8, computed 16 bytes at a time
 * in 16-bit lanes); returns its scale as a half. */
uint16_t bn_avx2_tq1_0_codes(const uint8_t *blk, uint8_t codes[256]) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const __m256i ff = _mm256_set1_epi16(0xff), three = _mm256_set1_epi16(3);
    for (int h = 0; h < 3; h++) { /* bytes 16h .. 16h + 15 */
        const __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + 16 * h)));
        for (int k = 0; k < 5; k++) {
            __m256i v = _mm256_and_si256(_mm256_mullo_epi16(x, _mm256_set1_epi16(pow3[k])), ff);
            v = _mm256_srli_epi16(_mm256_mullo_epi16(v, three), 8);
            const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi16(v, v), 0xd8);
            /* bytes 0-31: element 32k + byte; bytes 32-47: 160 + 16k + byte - 32 */
            uint8_t *dst = h < 2 ? codes + 32 * k + 16 * h : codes + 160 + 16 * k;
            _mm_storeu_si128((__m128i *)dst, _mm256_castsi256_si128(p));
        }
    }
    for (int k = 0; k < 4; k++) {
        for (int j = 0; j < 4; j++) {
            const unsigned v = (uint8_t)(blk[48 + j] * pow3[k]);
            codes[240 + 4 * k + j] = (uint8_t)((v * 3u) >> 8);
        }
    }
    return bn_rd_u16(blk + BN_TQ1_0_BYTES - 2);
}

/* A TQ2_0 or I2_S row's 256 columns from block b straight into its R8
 * dwords (out + 32 c, c < 16), in registers. Both hold 64 bytes of 2-bit
 * codes per 256 columns whose byte 32j + i holds, in field l, element
 * 128j + 32l + i: TQ2_0 in bits 2l (then its half scale), I2_S (two
 * 128-column blocks) in bits 6 - 2l. So field l of half j is elements
 * 32k .. 32k + 31 (k = 4j + l), chunks 2k and 2k + 1 in its two 128-bit
 * lanes; each lane's four dwords D0..D3 fold into
 * D0 | D1 << 2 | D2 << 4 | D3 << 6. Returns the TQ2_0 block scale (0 for
 * I2_S, which has one per tensor). */
static uint16_t r8_2bit_block(const bn_tensor *w, int64_t row, int64_t b, uint8_t *out) {
    const int tq2 = w->type == BN_TYPE_TQ2_0;
    const uint8_t *blk = (const uint8_t *)w->data + (size_t)row * w->row_bytes +
                         b * (tq2 ? BN_TQ2_0_BYTES : 2 * BN_I2_S_BYTES);
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int j = 0; j < 2; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 32 * j));
        for (int l = 0; l < 4; l++) {
            const __m256i x = _mm256_and_si256(_mm256_srli_epi16(v, tq2 ? 2 * l : 6 - 2 * l), m3);
            __m256i o = _mm256_or_si256(x, _mm256_slli_epi32(_mm256_srli_si256(x, 4), 2));
            o = _mm256_or_si256(o, _mm256_slli_epi32(_mm256_srli_si256(x, 8), 4));
            o = _mm256_or_si256(o, _mm256_slli_epi32(_mm256_srli_si256(x, 12), 6));
            const int k = 4 * j + l;
            const uint32_t lo = (uint32_t)_mm256_extract_epi32(o, 0);
            const uint32_t hi = (uint32_t)_mm256_extract_epi32(o, 4);
            memcpy(out + 32 * (2 * k), &lo, 4);
            memcpy(out + 32 * (2 * k + 1), &hi, 4);
        }
    }
    return tq2 ? bn_rd_u16(blk + 64) : 0;
}

typedef struct R8Pack {
    const bn_tensor *w;
    uint8_t *dst;
    int64_t g0, g1;
} R8Pack;

/* Groups [g0, g1) of the R8 layout. */
static void *r8_pack_groups(void *arg) {
    const R8Pack *j = arg;
    const bn_tensor *w = j->w;
    const int64_t nb = w->n_cols / BN_QK_K, groups = (w->n_rows + 7) / 8;
    uint8_t *scales = j->dst + (size_t)groups * (size_t)nb * 512;
    uint8_t codes[256];
    for (int64_t g = j->g0; g < j->g1; g++) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *cw = j->dst + ((size_t)g * (size_t)nb + (size_t)b) * 512;
            uint8_t *sc = scales + ((size_t)g * (size_t)nb + (size_t)b) * 16;
            for (int r = 0; r < 8; r++) {
                const int64_t row = 8 * g + r;
                uint16_t d = 0;
                if (row < w->n_rows && w->type != BN_TYPE_TQ1_0) {
                    d = r8_2bit_block(w, row, b, cw + 4 * r);
                } else {
                    if (row < w->n_rows) {
                        d = bn_avx2_tq1_0_codes((const uint8_t *)w->data +
                                                    (size_t)row * w->row_bytes + b * BN_TQ1_0_BYTES,
                                                codes);
                    } else {
                        memset(codes, 1, sizeof codes);
                    }
                    /* codes <= 3: the 32-bit shifts never carry into the next byte */
                    for (int c = 0; c < 16; c++) {
                        uint32_t d4[4];
                        memcpy(d4, codes + 16 * c, 16);
                        const uint32_t o = d4[0] | d4[1] << 2 | d4[2] << 4 | d4[3] << 6;
                        memcpy(cw + 32 * c + 4 * r, &o, 4);
                    }
                }
                bn_wr_u16(sc + 2 * r, d);
            }
        }
    }
    return NULL;
}

/* On two threads when the matrix is large (load time), on the caller alone
 * if a thread cannot start. */
static void avx2_pack(bn_tensor *w, int layout, void *dst) {
    const int64_t groups = (w->n_rows + 7) / 8;
    R8Pack a = {w, dst, 0, groups}, b = a;
    pthread_t th;
    int started = 0;
    if (groups >= 128 && w->n_cols >= 1024) {
        a.g1 = b.g0 = groups / 2;
        started = pthread_create(&th, NULL, r8_pack_groups, &b) == 0;
        if (!started) a.g1 = groups;
    }
    r8_pack_groups(&a);
    if (started) pthread_join(th, NULL);
    w->data = dst;
    w->layout = layout;
    w->row_group = 8;
}

/* Rows of group g within [r0, r1) for nt <= 4 tokens (the activations q of
 * token t at q + t * n, their block sums asum[t]). */
static inline __attribute__((always_inline)) void
r8_group(const bn_tensor *w, int64_t g, const int8_t *q, int32_t (*asum)[AMAX_NB],
         const float *act_scale, float *out, int64_t out_stride, int64_t r0, int64_t r1,
         const int nt) {
    const int64_t n = w->n_cols, nb = n / BN_QK_K, groups = (w->n_rows + 7) / 8;
    const uint8_t *gw = (const uint8_t *)w->data + (size_t)g * (size_t)nb * 512;
    const uint8_t *gs =
        (const uint8_t *)w->data + (size_t)groups * (size_t)nb * 512 + (size_t)g * (size_t)nb * 16;
    const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    /* TQ types: float sums of the scaled blocks; I2_S (one scale per
     * tensor): the integer sum of the whole row, as the reference */
    const int tq = w->type != BN_TYPE_I2_S;
    __m256 f[4];
    __m256i isum[4];
    for (int t = 0; t < nt; t++) {
        f[t] = _mm256_setzero_ps();
        isum[t] = _mm256_setzero_si256();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *cw = gw + b * 512;
        const int8_t *qb = q + b * BN_QK_K;
        __m256i e[4], o[4];
        for (int t = 0; t < nt; t++)
            e[t] = o[t] = _mm256_setzero_si256();
        for (int c = 0; c < 16; c++) {
            const __m256i v = _mm256_load_si256((const __m256i *)(cw + 32 * c));
            if (!(c & 1)) _mm_prefetch((const char *)(cw + 32 * c + 8192), _MM_HINT_T0);
            const __m256i c0 = _mm256_and_si256(v, m3);
            const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(v, 2), m3);
            const __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m3);
            const __m256i c3 = _mm256_and_si256(_mm256_srli_epi16(v, 6), m3);
            for (int t = 0; t < nt; t++) {
                const int8_t *a = qb + t * n + 16 * c;
                int32_t x[4];
                memcpy(x, a, 16);
                e[t] = _mm256_add_epi16(e[t], _mm256_maddubs_epi16(c0, _mm256_set1_epi32(x[0])));
                o[t] = _mm256_add_epi16(o[t], _mm256_maddubs_epi16(c1, _mm256_set1_epi32(x[1])));
                e[t] = _mm256_add_epi16(e[t], _mm256_maddubs_epi16(c2, _mm256_set1_epi32(x[2])));
                o[t] = _mm256_add_epi16(o[t], _mm256_maddubs_epi16(c3, _mm256_set1_epi32(x[3])));
            }
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(gs + b * 16)));
        for (int t = 0; t < nt; t++) {
            const __m256i s = _mm256_sub_epi32(
                _mm256_add_epi32(_mm256_madd_epi16(e[t], ones), _mm256_madd_epi16(o[t], ones)),
                _mm256_set1_epi32(asum[t][b]));
            if (tq) {
                f[t] = _mm256_add_ps(f[t], _mm256_mul_ps(d, _mm256_cvtepi32_ps(s)));
            } else {
                isum[t] = _mm256_add_epi32(isum[t], s);
            }
        }
    }
    if (!tq) {
        for (int t = 0; t < nt; t++)
            f[t] = _mm256_cvtepi32_ps(isum[t]);
    }
    /* lane r is row 8g + r: store those within [r0, r1) */
    const __m256i lane = _mm256_add_epi32(_mm256_set1_epi32((int)(8 * g)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i keep = _mm256_and_si256(_mm256_cmpgt_epi32(lane, _mm256_set1_epi32((int)r0 - 1)),
                                          _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r1), lane));
    const __m256 ws = _mm256_set1_ps(w->scale);
    for (int t = 0; t < nt; t++) {
        const __m256 y = _mm256_div_ps(_mm256_mul_ps(f[t], ws), _mm256_set1_ps(act_scale[t]));
        _mm256_maskstore_ps(out + t * out_stride + 8 * g, keep, y);
    }
}

static void avx2_matmul_r8(const bn_tensor *w, const int8_t *q, const float *act_scale,
                           int64_t n_tok, float *out, int64_t out_stride, int64_t r0, int64_t r1) {
    const int64_t n = w->n_cols, nb = n / BN_QK_K;
    int32_t asum[ATILE][AMAX_NB];
    for (int64_t t0 = 0; t0 < n_tok; t0 += ATILE) {
        const int64_t nt = n_tok - t0 < ATILE ? n_tok - t0 : ATILE;
        tile_block_sums(q + t0 * n, n, nt, nb, asum);
        /* each group's weights (8 rows) stay in L1 for the tile's tokens */
        for (int64_t g = r0 / 8; g < (r1 + 7) / 8; g++) {
            for (int64_t t1 = 0; t1 < nt; t1 += 4) {
                const int m = (int)(nt - t1 < 4 ? nt - t1 : 4);
                const int8_t *qt = q + (t0 + t1) * n;
                float *ot = out + (t0 + t1) * out_stride;
                const float *as = act_scale + t0 + t1;
                switch (m) {
                case 1: r8_group(w, g, qt, asum + t1, as, ot, out_stride, r0, r1, 1); break;
                case 2: r8_group(w, g, qt, asum + t1, as, ot, out_stride, r0, r1, 2); break;
                case 3: r8_group(w, g, qt, asum + t1, as, ot, out_stride, r0, r1, 3); break;
                default: r8_group(w, g, qt, asum + t1, as, ot, out_stride, r0, r1, 4); break;
                }
            }
        }
    }
}

static void avx2_matmul_tq1_0(const bn_tensor *w, const int8_t *q, const float *act_scale,
                              int64_t n_tok, float *out, int64_t out_stride, int64_t r0,
                              int64_t r1) {
    if (w->layout == AVX2_LAYOUT_R8) {
        avx2_matmul_r8(w, q, act_scale, n_tok, out, out_stride, r0, r1);
        return;
    }
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

/* ------------------------------------------------------------------------ */
/* Q6_K / Q8_0 / Q4_0 heads on int8 activations                             */
/* ------------------------------------------------------------------------ */

/* As the AVX-512 set's heads (kernels_avx512.c) and llama.cpp's Q8_K dot
 * products: each token's activations are quantized to int8 per 256 columns
 * (scale amax / 127, round half to even, q in -127..127), the weights'
 * quants are multiplied with them exactly in integers (vpmaddubsw, then
 * vpmaddwd by the sub-block scales) and the block scales are applied in
 * float. The activations are the same int8 values as the AVX-512 set's. */
#define HQ_TILE 4
#define HQ_MAXC 16384

typedef struct HeadAct {
    int8_t q[HQ_TILE][HQ_MAXC];
    float d[HQ_TILE][HQ_MAXC / 256];      /* dequantization step per 256 */
    int16_t sum16[HQ_TILE][HQ_MAXC / 16]; /* sums of q per 16 columns */
} HeadAct;

static void head_quantize(const float *x, int64_t n, int8_t *q, float *d, int16_t *sum16) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < n / 256; b++) {
        const float *xb = x + 256 * b;
        __m256 mx = _mm256_setzero_ps();
        for (int i = 0; i < 256; i += 8)
            mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(xb + i), absmask));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        const float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
        const float is = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax > 0.0f ? amax / 127.0f : 0.0f;
        const __m256 vs = _mm256_set1_ps(is);
        for (int i = 0; i < 256; i += 16) {
            __m256 f0 = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + i), vs),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            __m256 f1 = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 8), vs),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            f0 = _mm256_min_ps(_mm256_max_ps(f0, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
            f1 = _mm256_min_ps(_mm256_max_ps(f1, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
            const __m256i i0 = _mm256_cvtps_epi32(f0), i1 = _mm256_cvtps_epi32(f1);
            /* packs work per 128-bit lane: [a0 a1 b0 b1] -> fix the order */
            const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xd8);
            const __m128i v8 =
                _mm_packs_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
            _mm_storeu_si128((__m128i *)(q + 256 * b + i), v8);
            sum16[16 * b + i / 16] = (int16_t)hsum_i32(_mm256_add_epi32(i0, i1));
        }
    }
}

/* Bytes 2k (x 8) then 2k + 1 (x 8): sub-block scales 2k and 2k + 1 spread
 * over the 16 int16 lanes of a vpmaddubsw result of 32 columns. */
static __m256i q6_scale_pair(__m128i sc8, int k) {
    const __m128i shuf =
        _mm_set_epi8((char)(2 * k + 1), (char)(2 * k + 1), (char)(2 * k + 1), (char)(2 * k + 1),
                     (char)(2 * k + 1), (char)(2 * k + 1), (char)(2 * k + 1), (char)(2 * k + 1),
                     (char)(2 * k), (char)(2 * k), (char)(2 * k), (char)(2 * k), (char)(2 * k),
                     (char)(2 * k), (char)(2 * k), (char)(2 * k));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, shuf));
}

/* Q6_K (fmt_q6_k.c): per 128 columns h, bytes ql[64h..64h+63] (low
 * nibbles), qh[32h..32h+31] (2-bit highs): columns l, l+32, l+64, l+96 of the
 * half are (ql[l] & 15 | (qh[l] & 3) << 4), (ql[l+32] & 15 | (qh[l] >> 2 & 3)
 * << 4), (ql[l] >> 4 | (qh[l] >> 4 & 3) << 4), (ql[l+32] >> 4 | (qh[l] >> 6)
 * << 4), minus 32; sub-block scales of 16 columns. */
static float q6_k_row_dot(const uint8_t *row, int64_t nb, const int8_t *q, const float *d8,
                          const int16_t *sum16) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    __m256 facc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + b * BN_Q6_K_BYTES;
        const int8_t *qa = q + 256 * b;
        for (int l = 0; l < BN_Q6_K_BYTES; l += 64) /* the rows are streamed */
            _mm_prefetch((const char *)(blk + 8192 + l), _MM_HINT_T0);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)(blk + 192));
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i L0 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h));
            const __m256i L1 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32));
            const __m256i hh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
            const __m256i u0 = _mm256_or_si256(_mm256_and_si256(L0, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hh, 4), m30));
            const __m256i u1 = _mm256_or_si256(_mm256_and_si256(L1, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hh, 2), m30));
            const __m256i u2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L0, 4), m4),
                                               _mm256_and_si256(hh, m30));
            const __m256i u3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L1, 4), m4),
                                               _mm256_and_si256(_mm256_srli_epi16(hh, 2), m30));
            const int8_t *a = qa + 128 * h;
            /* u <= 63, |a| <= 127: the pair sums never saturate */
            const __m256i p0 = _mm256_maddubs_epi16(u0, _mm256_loadu_si256((const __m256i *)a));
            const __m256i p1 =
                _mm256_maddubs_epi16(u1, _mm256_loadu_si256((const __m256i *)(a + 32)));
            const __m256i p2 =
                _mm256_maddubs_epi16(u2, _mm256_loadu_si256((const __m256i *)(a + 64)));
            const __m256i p3 =
                _mm256_maddubs_epi16(u3, _mm256_loadu_si256((const __m256i *)(a + 96)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, q6_scale_pair(sc8, 4 * h + 0)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, q6_scale_pair(sc8, 4 * h + 1)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p2, q6_scale_pair(sc8, 4 * h + 2)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p3, q6_scale_pair(sc8, 4 * h + 3)));
        }
        /* quants are stored + 32: subtract 32 * sum_j scale_j * sum(q of j) */
        const __m256i corr = _mm256_madd_epi16(
            _mm256_cvtepi8_epi16(sc8), _mm256_loadu_si256((const __m256i *)(sum16 + 16 * b)));
        acc = _mm256_sub_epi32(acc, _mm256_slli_epi32(corr, 5));
        const float dd = _cvtsh_ss(bn_rd_u16(blk + 208)) * d8[b];
        facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(dd), facc);
    }
    return hsum_ps(facc);
}

/* Q8_0: 32 int8 quants and a half scale per block; |w| * (a with w's sign)
 * by vpmaddubsw (a is in -127..127, so the sign never overflows). */
static float q8_0_row_dot(const uint8_t *row, int64_t n, const int8_t *q, const float *d8) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 facc = _mm256_setzero_ps();
    for (int64_t k = 0; k < n; k += 32) {
        const uint8_t *blk = row + (k / 32) * BN_Q8_0_BYTES;
        _mm_prefetch((const char *)(blk + 8192), _MM_HINT_T0); /* the rows are streamed */
        const __m256i wv = _mm256_loadu_si256((const __m256i *)(blk + 2));
        const __m256i av = _mm256_loadu_si256((const __m256i *)(q + k));
        const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv));
        const __m256i s = _mm256_madd_epi16(p, ones);
        const float sc = _cvtsh_ss(bn_rd_u16(blk)) * d8[k / 256];
        facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(sc), facc);
    }
    return hsum_ps(facc);
}

/* Q4_0: 16 bytes of nibbles per 32 columns (column j: low nibble of byte j,
 * column 16 + j: high nibble), value (nibble - 8) * d. */
static float q4_0_row_dot(const uint8_t *row, int64_t n, const int8_t *q, const float *d8,
                          const int16_t *sum16) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 facc = _mm256_setzero_ps();
    for (int64_t k = 0; k < n; k += 32) {
        const uint8_t *blk = row + (k / 32) * BN_Q4_0_BYTES;
        const __m128i qb = _mm_loadu_si128((const __m128i *)(blk + 2));
        const __m256i wv =
            _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qb, 4), m4), _mm_and_si128(qb, m4));
        const __m256i p = _mm256_maddubs_epi16(wv, _mm256_loadu_si256((const __m256i *)(q + k)));
        __m256i s = _mm256_madd_epi16(p, ones);
        /* minus 8 * the block's activation sum, spread over one lane */
        const int32_t asum = sum16[k / 16] + sum16[k / 16 + 1];
        s = _mm256_sub_epi32(s, _mm256_set_epi32(0, 0, 0, 0, 0, 0, 0, 8 * asum));
        const float sc = _cvtsh_ss(bn_rd_u16(blk)) * d8[k / 256];
        facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(sc), facc);
    }
    return hsum_ps(facc);
}

void bn_avx2_matmul_q8act(const bn_q8act_dots *dots, const bn_tensor *w, const float *x,
                          int64_t n_tok, float *out, int64_t out_stride, int64_t r0, int64_t r1) {
    static const bn_q8act_dots own = {q6_k_row_dot, q8_0_row_dot, q4_0_row_dot};
    if (!dots) dots = &own;
    const int64_t n = w->n_cols;
    if (n % 256 != 0 || n > HQ_MAXC) {
        bn_avx2_matmul_float(w, x, n_tok, out, out_stride, r0, r1);
        return;
    }
    HeadAct *ha = bn_aligned_alloc(sizeof *ha);
    if (!ha) { /* no scratch: the float path needs none */
        bn_avx2_matmul_float(w, x, n_tok, out, out_stride, r0, r1);
        return;
    }
    for (int64_t t0 = 0; t0 < n_tok; t0 += HQ_TILE) {
        const int nt = (int)(n_tok - t0 < HQ_TILE ? n_tok - t0 : HQ_TILE);
        for (int t = 0; t < nt; t++)
            head_quantize(x + (t0 + t) * n, n, ha->q[t], ha->d[t], ha->sum16[t]);
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
            for (int t = 0; t < nt; t++) {
                const float v = w->type == BN_TYPE_Q6_K
                                    ? dots->q6_k(row, n / 256, ha->q[t], ha->d[t], ha->sum16[t])
                                : w->type == BN_TYPE_Q4_0
                                    ? dots->q4_0(row, n, ha->q[t], ha->d[t], ha->sum16[t])
                                    : dots->q8_0(row, n, ha->q[t], ha->d[t]);
                out[(t0 + t) * out_stride + r] = v * w->scale;
            }
        }
    }
    bn_aligned_free(ha);
}

static void avx2_matmul_q8act(const bn_tensor *w, const float *x, int64_t n_tok, float *out,
                              int64_t out_stride, int64_t r0, int64_t r1) {
    bn_avx2_matmul_q8act(NULL, w, x, n_tok, out, out_stride, r0, r1);
}

/* ---- attention over the KV cache ---------------------------------------- */

/* exp(x), 8 lanes: x = n ln2 + r, a degree-6 polynomial in r (as the AVX-512
 * set's exp512), 2^n built in the exponent bits. Below -87.3 gives 0 and
 * above 88.7 +inf, as expf (to a denormal's worth). */
static inline __m256 exp256(__m256 x) {
    const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* n in [-126, 128]: 2^n is a normal float, or +inf for 128 */
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

/* Elements [i, i + 8) of the KV cache as floats: float32 or IEEE half. */
static inline __attribute__((always_inline)) __m256 kv_load8(const void *base, size_t i,
                                                             const int f16) {
    if (f16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
    return _mm256_loadu_ps((const float *)base + i);
}

/* One query head; head dims a multiple of 8 up to 256. Scores four positions
 * at a time (four FMA chains, one hadd tree for the four sums); q is read
 * from L1 (16 registers hold only half of a 128-dim q with the sums); the
 * outputs are summed 64 at a time (8 registers) over the positions. */
static inline __attribute__((always_inline)) void
attn_body(const float *q, const void *k, const void *v, const int f16, int64_t kv_stride,
          int32_t n_pos, int hd, float scale, float *att, float *o) {
    const int nv = hd / 8;
    const size_t st = (size_t)kv_stride;
    __m128 vmax = _mm_set1_ps(-INFINITY);
    int32_t i = 0;
    for (; i + 4 <= n_pos; i += 4) {
        const size_t kr = (size_t)i * st;
        bn_kv_prefetch(k, kr, 4 * kv_stride, f16);
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (int e = 0; e < nv; e++) {
            const __m256 qe = _mm256_loadu_ps(q + 8 * e);
            s0 = _mm256_fmadd_ps(qe, kv_load8(k, kr + 8 * (size_t)e, f16), s0);
            s1 = _mm256_fmadd_ps(qe, kv_load8(k, kr + st + 8 * (size_t)e, f16), s1);
            s2 = _mm256_fmadd_ps(qe, kv_load8(k, kr + 2 * st + 8 * (size_t)e, f16), s2);
            s3 = _mm256_fmadd_ps(qe, kv_load8(k, kr + 3 * st + 8 * (size_t)e, f16), s3);
        }
        const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(s0, s1), _mm256_hadd_ps(s2, s3));
        const __m128 d = _mm_mul_ps(
            _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)), _mm_set1_ps(scale));
        _mm_storeu_ps(att + i, d);
        vmax = _mm_max_ps(vmax, d);
    }
    vmax = _mm_max_ps(vmax, _mm_movehl_ps(vmax, vmax));
    float mx = _mm_cvtss_f32(_mm_max_ss(vmax, _mm_shuffle_ps(vmax, vmax, 1)));
    for (; i < n_pos; i++) {
        const size_t kr = (size_t)i * st;
        __m256 s0 = _mm256_setzero_ps();
        for (int e = 0; e < nv; e++)
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + 8 * e), kv_load8(k, kr + 8 * (size_t)e, f16),
                                 s0);
        att[i] = hsum_ps(s0) * scale;
        if (att[i] > mx) mx = att[i];
    }
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    i = 0;
    for (; i + 8 <= n_pos; i += 8) {
        const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(att + i), vmx));
        _mm256_storeu_ps(att + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum_ps(vsum);
    for (; i < n_pos; i++) {
        att[i] = expf(att[i] - mx);
        sum += att[i];
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (int e0 = 0; e0 < nv; e0 += 8) {
        const int ne = nv - e0 < 8 ? nv - e0 : 8;
        __m256 acc[8];
        for (int e = 0; e < ne; e++)
            acc[e] = _mm256_setzero_ps();
        for (int32_t p = 0; p < n_pos; p++) {
            const size_t vr = (size_t)p * st + 8 * (size_t)e0;
            if (e0 == 0) bn_kv_prefetch(v, (size_t)p * st, kv_stride, f16);
            const __m256 a = _mm256_set1_ps(att[p]);
            for (int e = 0; e < ne; e++)
                acc[e] = _mm256_fmadd_ps(a, kv_load8(v, vr + 8 * (size_t)e, f16), acc[e]);
        }
        for (int e = 0; e < ne; e++)
            _mm256_storeu_ps(o + 8 * (e0 + e), _mm256_mul_ps(acc[e], inv));
    }
}

static void avx2_attn_head(const float *q, const void *k, const void *v, int kv_f16,
                           int64_t kv_stride, int32_t n_pos, int hd, float scale, float *att,
                           float *o) {
    if (hd % 8 != 0 || hd > 256) {
        bn_ref_attn_head(q, k, v, kv_f16, kv_stride, n_pos, hd, scale, att, o);
    } else if (kv_f16) {
        attn_body(q, k, v, 1, kv_stride, n_pos, hd, scale, att, o);
    } else {
        attn_body(q, k, v, 0, kv_stride, n_pos, hd, scale, att, o);
    }
}

/* ---- element-wise steps -------------------------------------------------- */

static void avx2_ffn_act(float *g, const float *u, int64_t n, int relu2) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i), uv = _mm256_loadu_ps(u + i);
        __m256 y;
        if (relu2) {
            const __m256 r = _mm256_max_ps(x, _mm256_setzero_ps());
            y = _mm256_mul_ps(_mm256_mul_ps(r, r), uv);
        } else { /* exp(-x) is 0 below -87.3 and +inf above 88.7: x * u and -0 */
            const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), x));
            y = _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), uv);
        }
        _mm256_storeu_ps(g + i, y);
    }
    if (i < n) bn_ref_ffn_act(g + i, u + i, n - i, relu2);
}

/* bn_rmsnorm's sum, lane for lane (lanes 0-3 and 4-7 of its part[8] in two
 * double accumulators, in its order), so the same bits; the scaling 8 wide. */
static void avx2_rmsnorm(float *o, const float *x, const float *w, int64_t n, float eps) {
    __m256d lo = _mm256_setzero_pd(), hi = lo;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 sq = _mm256_mul_ps(v, v);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    double part[8];
    _mm256_storeu_pd(part, lo);
    _mm256_storeu_pd(part + 4, hi);
    const float scale = bn_rmsnorm_scale(part, x, i, n, eps);
    const __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        _mm256_storeu_ps(o + i, _mm256_mul_ps(y, _mm256_loadu_ps(w + i)));
    }
    for (; i < n; i++)
        o[i] = (x[i] * scale) * w[i];
}

/* n floats to IEEE half (vcvtps2ph, round to nearest even). */
void bn_avx2_to_f16(const float *x, void *y, int64_t n) {
    uint16_t *h = y;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    }
    if (i < n) bn_f16_from_float(x + i, h + i, n - i);
}

static const bn_kernels k_avx2 = {
    .name = "avx2",
    .quantize_act = bn_avx2_quantize_act,
    .matmul_i8 =
        {
            [BN_TYPE_TQ1_0] = avx2_matmul_tq1_0,
            [BN_TYPE_TQ2_0] = avx2_matmul_tq2_0,
            [BN_TYPE_I2_S] = avx2_matmul_i2_s,
        },
    .matmul_f32 =
        {
            [BN_TYPE_F32] = bn_avx2_matmul_float,
            [BN_TYPE_F16] = bn_avx2_matmul_float,
            [BN_TYPE_BF16] = bn_avx2_matmul_float,
            [BN_TYPE_Q8_0] = avx2_matmul_q8act,
            [BN_TYPE_Q4_0] = avx2_matmul_q8act,
            [BN_TYPE_Q6_K] = avx2_matmul_q8act,
            [BN_TYPE_TQ1_0] = bn_avx2_matmul_float,
            [BN_TYPE_TQ2_0] = bn_avx2_matmul_float,
            [BN_TYPE_I2_S] = bn_avx2_matmul_float,
        },
    .f32_int8_act = (1ull << BN_TYPE_Q8_0) | (1ull << BN_TYPE_Q6_K) | (1ull << BN_TYPE_Q4_0),
    .attn_head = avx2_attn_head,
    .to_f16 = bn_avx2_to_f16,
    .ffn_act = avx2_ffn_act,
    .rmsnorm = avx2_rmsnorm,
    .packed_size = avx2_packed_size,
    .pack = avx2_pack,
    /* with R8, huge-page weight blocks and the head's copy there took a
     * 2B-4T decode step from 35.1-36.6 to 32.0-32.7 ms on one thread */
    .bandwidth_bound = 1,
};

const bn_kernels *bn_kernels_avx2(void) { return &k_avx2; }
