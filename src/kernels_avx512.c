/* AVX-512 (F, BW, VL, DQ) + VNNI kernels. This file is compiled with
 * -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni (and the AVX2
 * set's flags); bn_kernels_best picks it only on CPUs that have all of them.
 *
 * Ternary weights are repacked once at load (bn_kernels.pack, called from
 * bind_matrix) into the row-interleaved layout below, which makes one
 * vpdpbusd produce 16 rows' partial sums at once. Tensors that were not
 * repacked (layout 0, e.g. in the tests) go to the AVX2 kernels.
 *
 * Layout BN_LAYOUT_R16 ("16 rows interleaved, 2-bit codes"), for TQ1_0,
 * TQ2_0 and I2_S alike:
 *   - rows are taken in groups of 16 (the last group is padded with code 1,
 *     i.e. weight 0, and its padding rows are never written out);
 *   - group g holds n_cols / 16 chunks of 64 bytes, one after the other, so a
 *     group is n_cols * 4 bytes and the groups follow each other;
 *   - in chunk c of group g, bits 2s..2s+1 of byte 4r + j hold the code
 *     (w + 1, in 0..3) of row 16g + r, column 16c + 4s + j (r < 16, s < 4,
 *     j < 4). Shifting a 64-byte chunk right by 2s and masking with 3 gives a
 *     vector whose 32-bit lane r holds row r's codes for columns
 *     16c + 4s .. 16c + 4s + 3, the u8 operand of vpdpbusd; the s8 operand
 *     is those 4 activations broadcast to all lanes.
 *   - TQ1_0 / TQ2_0 only: after all groups, the per-block (256 columns)
 *     scales as IEEE halves, [group][block][16 rows] (32 bytes per group
 *     and block: the same 2.0625 bits per weight as TQ2_0).
 * Codes are unsigned, so sum(w * a) = sum(c * a) - sum(a); the sums of the
 * activations per 256-column block come from the int8 activations once per
 * token tile. All integer sums are exact (vpdpbusd does not saturate); the
 * block scales and the tensor scale are applied with the same float
 * operations in the same order as kernels_ref.c, so results are bit-identical
 * to the reference.
 *
 * Loop order: the rows of a call are walked in panels of PANEL groups (a
 * panel's weights stay in L2), for each panel the tokens in tiles of up to
 * TILE, and for each tile every group of the panel: in prefill each weight
 * byte is loaded from memory once and reused from cache for all tokens. */
#include "dispatch.h"
#include "fmt.h"
#include "quant.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { BN_LAYOUT_R16 = 1, BN_LAYOUT_B3 = 2 };
#define B3_ROWS 80 /* rows per group of the base-3 layout */

#define TILE 8    /* tokens per pass over a group */
#define PANEL 8   /* groups of 16 rows per panel (128 rows) */
#define MAX_NB 64 /* 256-column blocks per row handled here (n_cols <= 16384) */
/* Bytes ahead of the decode weight streams that are prefetched: measured
 * with bench/bn_kernel_bench.c on Zen 5 from 1 KiB to 16 KiB, 8 KiB took
 * the ternary and Q6_K streams from about 80 % to 90-100 % of a plain read. */
#ifndef PREFETCH
#define PREFETCH 8192
#endif
/* ... as non-temporal: every weight byte is read once per token, so caching
 * it would only push out what a step reads again, above all the KV cache
 * (15 MiB in half for 192 positions of the 2B-4T model, next to a 32 MiB
 * L3). bn_bench --ceiling --kv-f16, 8 interleaved pairs on the development
 * machine: attention 0.32-0.47 ms a step instead of 0.45-0.52, and 94.6 %
 * instead of 92.2 % of the read bound when the host gave ~50 GB/s (no clear
 * change at ~78 GB/s); the kernels alone stream as fast as with T0. */
#ifndef WEIGHT_HINT
#define WEIGHT_HINT _MM_HINT_NTA
#endif

/* ------------------------------------------------------------------------ */
/* Repacking                                                                */
/* ------------------------------------------------------------------------ */

static int is_tq(int type) { return type == BN_TYPE_TQ1_0 || type == BN_TYPE_TQ2_0; }

static int packable(const bn_tensor *w) {
    if (w->type != BN_TYPE_TQ1_0 && w->type != BN_TYPE_TQ2_0 && w->type != BN_TYPE_I2_S) return 0;
    if (w->n_cols <= 0 || w->n_rows <= 0 || w->n_cols > 256 * MAX_NB) return 0;
    if (w->n_cols % (is_tq(w->type) ? 256 : 128) != 0) return 0;
    return 1;
}

static int b3_ok(const bn_tensor *w);
static size_t b3_packed_size(const bn_tensor *w);
static void *b3_pack_groups(void *arg);

/* B3 where b3_ok (which reads the whole tensor: once per tensor, here),
 * else R16. */
static size_t avx512_packed_size(const bn_tensor *w, int *layout) {
    if (!packable(w)) return 0;
    if (b3_ok(w)) {
        *layout = BN_LAYOUT_B3;
        return b3_packed_size(w);
    }
    *layout = BN_LAYOUT_R16;
    const size_t groups = (size_t)(w->n_rows + 15) / 16;
    size_t bytes = groups * (size_t)w->n_cols * 4;
    if (is_tq(w->type)) bytes += groups * (size_t)(w->n_cols / 256) * 32;
    return bytes;
}

/* Codes 0..3 of one row (n_cols bytes) and, for TQ types, its block scales. */
static void row_codes(const bn_tensor *w, int64_t row, uint8_t *codes, uint16_t *d) {
    const uint8_t *src = (const uint8_t *)w->data + (size_t)row * w->row_bytes;
    const __m256i m3 = _mm256_set1_epi8(3);
    if (w->type == BN_TYPE_TQ2_0) {
        for (int64_t b = 0; b < w->n_cols / 256; b++) {
            const uint8_t *blk = src + b * BN_TQ2_0_BYTES;
            for (int j = 0; j < 2; j++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 32 * j));
                for (int l = 0; l < 4; l++) {
                    const __m256i c = _mm256_and_si256(_mm256_srli_epi16(v, 2 * l), m3);
                    _mm256_storeu_si256((__m256i *)(codes + 256 * b + 128 * j + 32 * l), c);
                }
            }
            d[b] = bn_rd_u16(blk + 64);
        }
    } else if (w->type == BN_TYPE_I2_S) {
        for (int64_t b = 0; b < w->n_cols / 128; b++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(src + b * BN_I2_S_BYTES));
            for (int g = 0; g < 4; g++) {
                const __m256i c = _mm256_and_si256(_mm256_srli_epi16(v, 6 - 2 * g), m3);
                _mm256_storeu_si256((__m256i *)(codes + 128 * b + 32 * g), c);
            }
        }
    } else { /* TQ1_0 */
        for (int64_t b = 0; b < w->n_cols / 256; b++)
            d[b] = bn_avx2_tq1_0_codes(src + b * BN_TQ1_0_BYTES, codes + 256 * b);
    }
}

typedef struct PackJob {
    const bn_tensor *w;
    uint8_t *dst;
    int64_t g0, g1;
} PackJob;

/* Row groups [g0, g1) of the packed layout. */
static void *pack_groups(void *arg) {
    const PackJob *j = arg;
    const bn_tensor *w = j->w;
    const int64_t n = w->n_cols, nchunk = n / 16, nb = n / 256;
    const int64_t groups = (w->n_rows + 15) / 16;
    uint8_t *out = j->dst;
    uint16_t *scales = (uint16_t *)(out + (size_t)groups * (size_t)n * 4);
    uint8_t codes[256 * MAX_NB];
    uint16_t d[MAX_NB];
    for (int64_t g = j->g0; g < j->g1; g++) {
        uint8_t *gout = out + (size_t)g * (size_t)n * 4;
        for (int r = 0; r < 16; r++) {
            const int64_t row = 16 * g + r;
            if (row < w->n_rows) {
                row_codes(w, row, codes, d);
            } else {
                memset(codes, 1, (size_t)n);
                for (int64_t b = 0; b < nb; b++)
                    d[b] = 0;
            }
            /* Four chunks (64 columns) at a time: 128-bit lane c holds the
             * dwords D0..D3 of columns 16c + 4s .. + 3; D0 | D1 << 2 | D2 << 4
             * | D3 << 6 is row r's dword of chunk c (codes <= 3: no carries). */
            int64_t c = 0;
            for (; c + 4 <= nchunk; c += 4) {
                const __m512i x = _mm512_loadu_si512(codes + 16 * c);
                __m512i o = x;
                o = _mm512_or_si512(o, _mm512_slli_epi32(_mm512_shuffle_epi32(x, 0x55), 2));
                o = _mm512_or_si512(o, _mm512_slli_epi32(_mm512_shuffle_epi32(x, 0xaa), 4));
                o = _mm512_or_si512(o, _mm512_slli_epi32(_mm512_shuffle_epi32(x, 0xff), 6));
                uint32_t lanes[16];
                _mm512_storeu_si512(lanes, o);
                for (int k = 0; k < 4; k++)
                    memcpy(gout + (c + k) * 64 + 4 * r, &lanes[4 * k], 4);
            }
            for (; c < nchunk; c++) {
                for (int i = 0; i < 4; i++) {
                    const uint8_t *p = codes + 16 * c + i;
                    gout[c * 64 + 4 * r + i] =
                        (uint8_t)(p[0] | (p[4] << 2) | (p[8] << 4) | (p[12] << 6));
                }
            }
            if (is_tq(w->type)) {
                for (int64_t b = 0; b < nb; b++)
                    scales[((size_t)g * (size_t)nb + (size_t)b) * 16 + (size_t)r] = d[b];
            }
        }
    }
    return NULL;
}

/* Repacks on two threads when the matrix is large (load time: the 2B-4T
 * model's 2 G weights), on the caller alone if a thread cannot start. */
static void avx512_pack(bn_tensor *w, int layout, void *dst) {
    const int b3 = layout == BN_LAYOUT_B3;
    const int rows = b3 ? B3_ROWS : 16;
    const int64_t groups = (w->n_rows + rows - 1) / rows;
    void *(*fn)(void *) = b3 ? b3_pack_groups : pack_groups;
    PackJob a = {w, dst, 0, groups}, b = a;
    pthread_t th;
    int started = 0;
    if (groups * rows >= 1024 && w->n_cols >= 1024) {
        a.g1 = b.g0 = groups / 2;
        started = pthread_create(&th, NULL, fn, &b) == 0;
        if (!started) a.g1 = groups;
    }
    fn(&a);
    if (started) pthread_join(th, NULL);
    if (b3) {
        /* the trailer: the TQ block scale (all blocks share it), 0 for I2_S */
        uint8_t *tail = (uint8_t *)dst + (size_t)groups * (size_t)w->n_cols * 16;
        const uint8_t *src = w->data;
        uint16_t dh = 0;
        if (w->type == BN_TYPE_TQ1_0) dh = bn_rd_u16(src + BN_TQ1_0_BYTES - 2);
        if (w->type == BN_TYPE_TQ2_0) dh = bn_rd_u16(src + 64);
        memset(tail, 0, 64);
        tail[0] = (uint8_t)(dh & 0xff);
        tail[1] = (uint8_t)(dh >> 8);
    }
    w->data = dst;
    w->layout = b3 ? BN_LAYOUT_B3 : BN_LAYOUT_R16;
    w->row_group = rows;
}

/* ------------------------------------------------------------------------ */
/* Ternary matmul on the R16 layout                                         */
/* ------------------------------------------------------------------------ */

/* Sum of n int8 values. */
static int32_t sum_i8(const int8_t *a, int64_t n) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i acc = _mm512_setzero_si512();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512(a + i));
    int32_t s = _mm512_reduce_add_epi32(acc);
    for (; i < n; i++)
        s += a[i];
    return s;
}

static inline __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* One group (16 rows) times NT tokens (2 <= NT <= TILE). q points at column 0
 * of the first token; asum[t * nbs + b] is the activation sum of block b of
 * token t (TQ: blocks of 256 columns; I2_S: one block, the whole row).
 * Writes out[t * out_stride + row] for the rows of mask. */
static inline __attribute__((always_inline)) void
group_tile(const uint8_t *gw, const uint16_t *gd, int tq, int64_t n, const int8_t *q,
           const int32_t *asum, int nbs, int NT, const float *ascale, float wscale, float *out,
           int64_t out_stride, __mmask16 mask) {
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512 facc[TILE];
    __m512i acc0[TILE], acc1[TILE];
    for (int t = 0; t < NT; t++)
        facc[t] = _mm512_setzero_ps();
    const int64_t bcols = tq ? 256 : n;
    for (int b = 0; b < nbs; b++) {
        for (int t = 0; t < NT; t++) {
            acc0[t] = _mm512_setzero_si512();
            acc1[t] = _mm512_setzero_si512();
        }
        const uint8_t *cw = gw + (size_t)b * (size_t)bcols * 4;
        const int8_t *qb = q + b * bcols;
        for (int64_t c = 0; c < bcols / 16; c++) {
            const __m512i v = _mm512_load_si512(cw + c * 64);
            const __m512i c0 = _mm512_and_si512(v, m3);
            const __m512i c1 = _mm512_and_si512(_mm512_srli_epi16(v, 2), m3);
            const __m512i c2 = _mm512_and_si512(_mm512_srli_epi16(v, 4), m3);
            const __m512i c3 = _mm512_and_si512(_mm512_srli_epi16(v, 6), m3);
            for (int t = 0; t < NT; t++) {
                const int8_t *a = qb + t * n + c * 16;
                acc0[t] = _mm512_dpbusd_epi32(acc0[t], c0, bcast4(a + 0));
                acc1[t] = _mm512_dpbusd_epi32(acc1[t], c1, bcast4(a + 4));
                acc0[t] = _mm512_dpbusd_epi32(acc0[t], c2, bcast4(a + 8));
                acc1[t] = _mm512_dpbusd_epi32(acc1[t], c3, bcast4(a + 12));
            }
        }
        for (int t = 0; t < NT; t++) {
            __m512i s = _mm512_add_epi32(acc0[t], acc1[t]);
            s = _mm512_sub_epi32(s, _mm512_set1_epi32(asum[t * nbs + b]));
            const __m512 f = _mm512_cvtepi32_ps(s);
            if (tq) {
                /* facc += d * (float)isum, as the reference (no FMA) */
                const __m512 d =
                    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(gd + 16 * b)));
                facc[t] = _mm512_add_ps(facc[t], _mm512_mul_ps(d, f));
            } else {
                facc[t] = f;
            }
        }
    }
    const __m512 ws = _mm512_set1_ps(wscale);
    for (int t = 0; t < NT; t++) {
        const __m512 r = _mm512_div_ps(_mm512_mul_ps(facc[t], ws), _mm512_set1_ps(ascale[t]));
        _mm512_mask_storeu_ps(out + t * out_stride, mask, r);
    }
}

/* One group, one token (decode): four independent accumulator chains hide
 * the vpdpbusd latency; two chunks per iteration. */
static void group_tile1(const uint8_t *gw, const uint16_t *gd, int tq, int64_t n, const int8_t *q,
                        const int32_t *asum, int nbs, const float *ascale, float wscale, float *out,
                        __mmask16 mask) {
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512 facc = _mm512_setzero_ps();
    const int64_t bcols = tq ? 256 : n;
    for (int b = 0; b < nbs; b++) {
        __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
        __m512i a2 = _mm512_setzero_si512(), a3 = _mm512_setzero_si512();
        const uint8_t *cw = gw + (size_t)b * (size_t)bcols * 4;
        const int8_t *qb = q + b * bcols;
        for (int64_t c = 0; c < bcols / 16; c++) {
            const __m512i v = _mm512_load_si512(cw + c * 64);
            _mm_prefetch((const char *)(cw + c * 64 + PREFETCH), WEIGHT_HINT);
            const int8_t *a = qb + c * 16;
            a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(v, m3), bcast4(a + 0));
            a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(_mm512_srli_epi16(v, 2), m3),
                                     bcast4(a + 4));
            a2 = _mm512_dpbusd_epi32(a2, _mm512_and_si512(_mm512_srli_epi16(v, 4), m3),
                                     bcast4(a + 8));
            a3 = _mm512_dpbusd_epi32(a3, _mm512_and_si512(_mm512_srli_epi16(v, 6), m3),
                                     bcast4(a + 12));
        }
        __m512i s = _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3));
        s = _mm512_sub_epi32(s, _mm512_set1_epi32(asum[b]));
        const __m512 f = _mm512_cvtepi32_ps(s);
        if (tq) {
            const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(gd + 16 * b)));
            facc = _mm512_add_ps(facc, _mm512_mul_ps(d, f));
        } else {
            facc = f;
        }
    }
    const __m512 r =
        _mm512_div_ps(_mm512_mul_ps(facc, _mm512_set1_ps(wscale)), _mm512_set1_ps(ascale[0]));
    _mm512_mask_storeu_ps(out, mask, r);
}

#define GROUP_TILE_CASE(N)                                                                         \
    case N:                                                                                        \
        group_tile(gw, gd, tq, n, qt, asum, nbs, N, act_scale, wscale, o, out_stride, mask);       \
        break;

/* One R16 group against nt tokens (1..TILE). */
static void r16_group(const uint8_t *gw, const uint16_t *gd, int tq, int64_t n, const int8_t *qt,
                      const int32_t *asum, int nbs, int nt, const float *act_scale, float wscale,
                      float *o, int64_t out_stride, __mmask16 mask) {
    switch (nt) {
    case 1:
        group_tile1(gw, gd, tq, n, qt, asum, nbs, act_scale, wscale, o, mask);
        break;
        GROUP_TILE_CASE(2)
        GROUP_TILE_CASE(3)
        GROUP_TILE_CASE(4)
        GROUP_TILE_CASE(5)
        GROUP_TILE_CASE(6)
        GROUP_TILE_CASE(7)
        GROUP_TILE_CASE(8)
    default: break;
    }
}

/* asum[t * nbs + b]: the activation sum of block b (256 columns for TQ
 * types, the whole row for I2_S) of token t < nt, tokens n apart from qt. */
static void tile_asum(const int8_t *qt, int64_t n, int nt, int nbs, int tq, int32_t *asum) {
    for (int t = 0; t < nt; t++) {
        for (int b = 0; b < nbs; b++)
            asum[t * nbs + b] = sum_i8(qt + t * n + (int64_t)b * 256, tq ? 256 : n);
    }
}

static void avx512_matmul_r16(const bn_tensor *w, const int8_t *q, const float *act_scale,
                              int64_t n_tok, float *out, int64_t out_stride, int64_t r0,
                              int64_t r1) {
    const int64_t n = w->n_cols;
    const int tq = is_tq(w->type);
    const int nbs = tq ? (int)(n / 256) : 1;
    const int64_t groups = (w->n_rows + 15) / 16;
    const uint8_t *codes = w->data;
    const uint16_t *scales = (const uint16_t *)(codes + (size_t)groups * (size_t)n * 4);
    const int64_t g0 = r0 / 16, g1 = (r1 + 15) / 16;
    int32_t asum[TILE * MAX_NB];
    for (int64_t p0 = g0; p0 < g1; p0 += PANEL) {
        const int64_t p1 = p0 + PANEL < g1 ? p0 + PANEL : g1;
        for (int64_t t0 = 0; t0 < n_tok; t0 += TILE) {
            const int nt = (int)(n_tok - t0 < TILE ? n_tok - t0 : TILE);
            const int8_t *qt = q + t0 * n;
            tile_asum(qt, n, nt, nbs, tq, asum);
            for (int64_t g = p0; g < p1; g++) {
                const uint8_t *gw = codes + (size_t)g * (size_t)n * 4;
                const uint16_t *gd = scales + (size_t)g * (size_t)nbs * 16;
                const int64_t lo = r0 > 16 * g ? r0 : 16 * g;
                const int64_t hi = r1 < 16 * g + 16 ? r1 : 16 * g + 16;
                const __mmask16 mask =
                    (__mmask16)((((1u << (hi - lo)) - 1u) << (lo - 16 * g)) & 0xffffu);
                r16_group(gw, gd, tq, n, qt, asum, nbs, nt, act_scale + t0, w->scale,
                          out + t0 * out_stride + 16 * g, out_stride, mask);
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The base-3 layout: 1.6 bits per weight (VBMI)                            */
/* ------------------------------------------------------------------------ */

/* Layout BN_LAYOUT_B3 ("five weights per byte"), for TQ1_0, TQ2_0 and I2_S
 * tensors whose TQ block scales are all the same half (one scale per tensor,
 * as every BitNet b1.58 checkpoint has) and whose codes are all valid;
 * others keep the R16 layout. Decode streams the weights once per token, so
 * its speed is bytes per token: this layout streams 1.6 bits per weight
 * where R16 streams 2 (TQ2_0 2.0625).
 *   - rows are taken in groups of 80: sub-groups k = 0..4 of 16 rows, row
 *     80g + 16k + r (the last group is padded with weight 0, and its padding
 *     rows are never written out);
 *   - group g holds n_cols / 4 chunks of 64 bytes; byte 4r + j of chunk c
 *     holds the five weights w_k of rows 80g + 16k + r, column 4c + j:
 *     v = sum_k (w_k + 1) 3^k (0..242) is stored as v - 121 when v >= 121,
 *     else as 0x80 | (121 - v), which is the negated tuple (242 - v) - 121
 *     with bit 7 set. Sign symmetry keeps the index in 7 bits;
 *   - after the groups, 64 bytes: the TQ block scale (a half) in bytes 0-1.
 * Decoding one chunk: vpermi2b looks up digit k of (b & 127) + 121 in a
 * 128-byte table (bit 7 is ignored), and the bytes with bit 7 set take
 * 2 - code: five vectors whose 32-bit lane r holds the codes (w + 1) of
 * sub-group k's row r for 4 consecutive columns, the u8 operand of vpdpbusd
 * against 4 activations broadcast, as in R16. Each 64-byte load feeds 5
 * vpdpbusd (320 weights), so 5 accumulator chains hide their latency.
 * Decode (b3_block_dot) applies the sign to the activations instead of
 * the codes. Prefill decodes one group into the R16 layout in a scratch
 * buffer (it stays in L2) and runs the R16 tile kernel over all tokens:
 * the decoding is paid once per group, not per token. */

/* Digit k of i + 121 for i < 122 (entries past 121 never occur). */
static const uint8_t *b3_table(int k) {
    static const uint8_t t[5][128] = {
#define B3_D(i, k) (uint8_t)((i) < 122 ? (((i) + 121) / (k)) % 3 : 0)
#define B3_ROW8(i, k)                                                                              \
    B3_D(i, k), B3_D(i + 1, k), B3_D(i + 2, k), B3_D(i + 3, k), B3_D(i + 4, k), B3_D(i + 5, k),    \
        B3_D(i + 6, k), B3_D(i + 7, k)
#define B3_ROW64(i, k)                                                                             \
    B3_ROW8(i, k), B3_ROW8(i + 8, k), B3_ROW8(i + 16, k), B3_ROW8(i + 24, k), B3_ROW8(i + 32, k),  \
        B3_ROW8(i + 40, k), B3_ROW8(i + 48, k), B3_ROW8(i + 56, k)
#define B3_TAB(k) {B3_ROW64(0, k), B3_ROW64(64, k)}
        B3_TAB(1), B3_TAB(3), B3_TAB(9), B3_TAB(27), B3_TAB(81)};
#undef B3_TAB
#undef B3_ROW64
#undef B3_ROW8
#undef B3_D
    return t[k];
}

/* Set BITNET_TERNARY_LAYOUT=r16 to keep the 2-bit layout (for comparing). */
static int b3_wanted(void) {
    const char *e = getenv("BITNET_TERNARY_LAYOUT");
    return !(e && strcmp(e, "r16") == 0) && (bn_cpu_flags() & BN_CPU_AVX512VBMI);
}

/* 1 if w can take the base-3 layout: valid codes everywhere (TQ2_0 / I2_S
 * code 3 has no base-3 digit) and, for TQ types, one block scale. */
static int b3_ok(const bn_tensor *w) {
    if (!packable(w) || !b3_wanted()) return 0;
    const uint8_t *base = w->data;
    const int64_t nb = w->type == BN_TYPE_I2_S ? w->n_cols / 128 : w->n_cols / 256;
    uint16_t d0 = 0;
    if (w->type == BN_TYPE_TQ1_0) d0 = bn_rd_u16(base + BN_TQ1_0_BYTES - 2);
    if (w->type == BN_TYPE_TQ2_0) d0 = bn_rd_u16(base + 64);
    const __m256i m55 = _mm256_set1_epi8(0x55);
    for (int64_t r = 0; r < w->n_rows; r++) {
        const uint8_t *row = base + (size_t)r * w->row_bytes;
        for (int64_t b = 0; b < nb; b++) {
            if (w->type == BN_TYPE_TQ1_0) {
                if (bn_rd_u16(row + b * BN_TQ1_0_BYTES + BN_TQ1_0_BYTES - 2) != d0) return 0;
                continue; /* every TQ1_0 byte decodes to digits 0..2 */
            }
            const uint8_t *q =
                row + b * (w->type == BN_TYPE_TQ2_0 ? BN_TQ2_0_BYTES : BN_I2_S_BYTES);
            if (w->type == BN_TYPE_TQ2_0 && bn_rd_u16(q + 64) != d0) return 0;
            /* a 2-bit field is 3 where both of its bits are set */
            const __m256i v = _mm256_loadu_si256((const __m256i *)q);
            __m256i bad = _mm256_and_si256(_mm256_and_si256(v, _mm256_srli_epi16(v, 1)), m55);
            if (w->type == BN_TYPE_TQ2_0) {
                const __m256i v2 = _mm256_loadu_si256((const __m256i *)(q + 32));
                bad = _mm256_or_si256(
                    bad, _mm256_and_si256(_mm256_and_si256(v2, _mm256_srli_epi16(v2, 1)), m55));
            }
            if (!_mm256_testz_si256(bad, bad)) return 0;
        }
    }
    return 1;
}

static size_t b3_packed_size(const bn_tensor *w) {
    const size_t groups = (size_t)(w->n_rows + B3_ROWS - 1) / B3_ROWS;
    return groups * (size_t)w->n_cols * 16 + 64;
}

/* Groups [g0, g1) of the base-3 layout. Per r < 16, the five rows
 * 80g + 16k + r are folded into one byte per column by Horner's rule
 * (v = 3 v + code, from k = 4 down; byte adds never carry, v <= 242), then
 * stored 4 columns at a time at their place in each chunk. */
static void *b3_pack_groups(void *arg) {
    const PackJob *j = arg;
    const bn_tensor *w = j->w;
    const int64_t n = w->n_cols;
    uint8_t codes[256 * MAX_NB], v[256 * MAX_NB];
    uint16_t d[MAX_NB];
    const __m512i c121 = _mm512_set1_epi8(121), c80 = _mm512_set1_epi8((char)0x80);
    for (int64_t g = j->g0; g < j->g1; g++) {
        uint8_t *gout = j->dst + (size_t)g * (size_t)n * 16;
        for (int r = 0; r < 16; r++) {
            memset(v, 0, (size_t)n);
            for (int k = 4; k >= 0; k--) {
                const int64_t row = B3_ROWS * g + 16 * k + r;
                if (row < w->n_rows) {
                    row_codes(w, row, codes, d);
                } else {
                    memset(codes, 1, (size_t)n);
                }
                for (int64_t i = 0; i < n; i += 64) {
                    const __m512i x = _mm512_loadu_si512(v + i);
                    const __m512i x3 = _mm512_add_epi8(_mm512_add_epi8(x, x), x);
                    _mm512_storeu_si512(v + i, _mm512_add_epi8(x3, _mm512_loadu_si512(codes + i)));
                }
            }
            for (int64_t i = 0; i < n; i += 64) {
                const __m512i x = _mm512_loadu_si512(v + i);
                const __mmask64 pos = _mm512_cmpge_epu8_mask(x, c121);
                const __m512i neg = _mm512_or_si512(_mm512_sub_epi8(c121, x), c80);
                _mm512_storeu_si512(v + i,
                                    _mm512_mask_blend_epi8(pos, neg, _mm512_sub_epi8(x, c121)));
            }
            for (int64_t c = 0; c < n / 4; c++)
                memcpy(gout + c * 64 + 4 * r, v + 4 * c, 4);
        }
    }
    return NULL;
}

/* The five code vectors of one 64-byte chunk. */
#define B3_DECODE(v, d0, d1, d2, d3, d4)                                                           \
    do {                                                                                           \
        const __mmask64 neg_ = _mm512_movepi8_mask(v);                                             \
        d0 = _mm512_permutex2var_epi8(t0l, v, t0h);                                                \
        d1 = _mm512_permutex2var_epi8(t1l, v, t1h);                                                \
        d2 = _mm512_permutex2var_epi8(t2l, v, t2h);                                                \
        d3 = _mm512_permutex2var_epi8(t3l, v, t3h);                                                \
        d4 = _mm512_permutex2var_epi8(t4l, v, t4h);                                                \
        d0 = _mm512_mask_sub_epi8(d0, neg_, two, d0);                                              \
        d1 = _mm512_mask_sub_epi8(d1, neg_, two, d1);                                              \
        d2 = _mm512_mask_sub_epi8(d2, neg_, two, d2);                                              \
        d3 = _mm512_mask_sub_epi8(d3, neg_, two, d3);                                              \
        d4 = _mm512_mask_sub_epi8(d4, neg_, two, d4);                                              \
    } while (0)

#define B3_TABLES                                                                                  \
    const __m512i t0l = _mm512_loadu_si512(b3_table(0)),                                           \
                  t0h = _mm512_loadu_si512(b3_table(0) + 64);                                      \
    const __m512i t1l = _mm512_loadu_si512(b3_table(1)),                                           \
                  t1h = _mm512_loadu_si512(b3_table(1) + 64);                                      \
    const __m512i t2l = _mm512_loadu_si512(b3_table(2)),                                           \
                  t2h = _mm512_loadu_si512(b3_table(2) + 64);                                      \
    const __m512i t3l = _mm512_loadu_si512(b3_table(3)),                                           \
                  t3h = _mm512_loadu_si512(b3_table(3) + 64);                                      \
    const __m512i t4l = _mm512_loadu_si512(b3_table(4)),                                           \
                  t4h = _mm512_loadu_si512(b3_table(4) + 64);                                      \
    const __m512i two = _mm512_set1_epi8(2)

/* Output mask of sub-group k of group g for rows [r0, r1). */
static __mmask16 b3_mask(int64_t g, int k, int64_t r0, int64_t r1) {
    const int64_t base = B3_ROWS * g + 16 * k;
    const int64_t lo = r0 > base ? r0 : base, hi = r1 < base + 16 ? r1 : base + 16;
    if (hi <= lo) return 0;
    return (__mmask16)((((1u << (hi - lo)) - 1u) << (lo - base)) & 0xffffu);
}

/* 1 if a[0..n) holds -128, which has no int8 negation. */
static int has_i8_min(const int8_t *a, int64_t n) {
    const __m512i m = _mm512_set1_epi8(-128);
    __mmask64 hit = 0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        hit |= _mm512_cmpeq_epi8_mask(_mm512_loadu_si512(a + i), m);
    for (; i < n; i++)
        hit |= a[i] == -128;
    return hit != 0;
}

/* The five digit vectors of one chunk, unsigned (bit 7 ignored), and its
 * negated bytes. */
#define B3_LOOKUP(v, d0, d1, d2, d3, d4, neg)                                                      \
    do {                                                                                           \
        neg = _mm512_movepi8_mask(v);                                                              \
        d0 = _mm512_permutex2var_epi8(t0l, v, t0h);                                                \
        d1 = _mm512_permutex2var_epi8(t1l, v, t1h);                                                \
        d2 = _mm512_permutex2var_epi8(t2l, v, t2h);                                                \
        d3 = _mm512_permutex2var_epi8(t3l, v, t3h);                                                \
        d4 = _mm512_permutex2var_epi8(t4l, v, t4h);                                                \
    } while (0)

/* Chunk c's dot products. A negated byte's code is 2 - d, and
 * (2 - d) x = d (-x) + 2 x: its digits meet -x, and one more vpdpbusd adds
 * 2 x (into a5, which belongs to all five sub-groups). */
#define B3_DOT(d0, d1, d2, d3, d4, neg, c)                                                         \
    do {                                                                                           \
        const __m512i x_ = bcast4(qb + 4 * (c));                                                   \
        const __m512i xn_ = _mm512_mask_sub_epi8(x_, neg, zero, x_);                               \
        a0 = _mm512_dpbusd_epi32(a0, d0, xn_);                                                     \
        a1 = _mm512_dpbusd_epi32(a1, d1, xn_);                                                     \
        a2 = _mm512_dpbusd_epi32(a2, d2, xn_);                                                     \
        a3 = _mm512_dpbusd_epi32(a3, d3, xn_);                                                     \
        a4 = _mm512_dpbusd_epi32(a4, d4, xn_);                                                     \
        a5 = _mm512_dpbusd_epi32(a5, _mm512_maskz_mov_epi8(neg, two), x_);                         \
    } while (0)

/* Sums of chunks [0, nch) of one group's block: acc[k] += the codes of
 * sub-group k times the activations qb (4 per chunk), as vpdpbusd sums.
 * Each chunk's table lookups are issued one chunk ahead of its dot products
 * (two sets of digit vectors, alternating), so that they do not wait on
 * each other in the scheduler; with the sign taken by the activations,
 * this streams 45.5-46.6 GB/s against 43.0-43.8 for decode-then-dot with 5
 * masked subtractions (one core, weights held in L2). qb must not hold
 * -128. */
__attribute__((target("avx512vbmi"))) static inline void
b3_block_dot(const uint8_t *cw, const int8_t *qb, int64_t nch, __m512i acc[5]) {
    B3_TABLES;
    const __m512i zero = _mm512_setzero_si512();
    __m512i a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4], a5 = zero;
    __m512i d0, d1, d2, d3, d4, e0, e1, e2, e3, e4;
    __mmask64 nd, ne;
    B3_LOOKUP(_mm512_load_si512(cw), d0, d1, d2, d3, d4, nd);
    int64_t c = 0;
    for (; c + 2 < nch; c += 2) {
        _mm_prefetch((const char *)(cw + c * 64 + PREFETCH), WEIGHT_HINT);
        _mm_prefetch((const char *)(cw + c * 64 + 64 + PREFETCH), WEIGHT_HINT);
        B3_LOOKUP(_mm512_load_si512(cw + (c + 1) * 64), e0, e1, e2, e3, e4, ne);
        B3_DOT(d0, d1, d2, d3, d4, nd, c);
        B3_LOOKUP(_mm512_load_si512(cw + (c + 2) * 64), d0, d1, d2, d3, d4, nd);
        B3_DOT(e0, e1, e2, e3, e4, ne, c + 1);
    }
    for (; c < nch; c++) {
        if (c > 0) B3_LOOKUP(_mm512_load_si512(cw + c * 64), d0, d1, d2, d3, d4, nd);
        B3_DOT(d0, d1, d2, d3, d4, nd, c);
    }
    acc[0] = _mm512_add_epi32(a0, a5);
    acc[1] = _mm512_add_epi32(a1, a5);
    acc[2] = _mm512_add_epi32(a2, a5);
    acc[3] = _mm512_add_epi32(a3, a5);
    acc[4] = _mm512_add_epi32(a4, a5);
}

/* The same with the sign on the codes (5 masked subtractions a chunk), for
 * activations that hold -128. */
__attribute__((target("avx512vbmi"))) static inline void
b3_block_dot_i8min(const uint8_t *cw, const int8_t *qb, int64_t nch, __m512i acc[5]) {
    B3_TABLES;
    __m512i a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4];
    for (int64_t c = 0; c < nch; c++) {
        const __m512i v = _mm512_load_si512(cw + c * 64);
        _mm_prefetch((const char *)(cw + c * 64 + PREFETCH), WEIGHT_HINT);
        __m512i d0, d1, d2, d3, d4;
        B3_DECODE(v, d0, d1, d2, d3, d4);
        const __m512i x = bcast4(qb + 4 * c);
        a0 = _mm512_dpbusd_epi32(a0, d0, x);
        a1 = _mm512_dpbusd_epi32(a1, d1, x);
        a2 = _mm512_dpbusd_epi32(a2, d2, x);
        a3 = _mm512_dpbusd_epi32(a3, d3, x);
        a4 = _mm512_dpbusd_epi32(a4, d4, x);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    acc[4] = a4;
}

/* One token: rows of groups [g0, g1) within [r0, r1). */
__attribute__((target("avx512vbmi"))) static void b3_matvec(const bn_tensor *w, const int8_t *q,
                                                            float ascale, float d, float *out,
                                                            int64_t r0, int64_t r1) {
    const int64_t n = w->n_cols;
    const int tq = is_tq(w->type);
    const int nbs = tq ? (int)(n / 256) : 1;
    const int64_t bcols = tq ? 256 : n;
    const int i8min = has_i8_min(q, n);
    int32_t asum[MAX_NB];
    for (int b = 0; b < nbs; b++)
        asum[b] = sum_i8(q + (int64_t)b * bcols, bcols);
    const __m512 vd = _mm512_set1_ps(d), ws = _mm512_set1_ps(w->scale), as = _mm512_set1_ps(ascale);
    for (int64_t g = r0 / B3_ROWS; g < (r1 + B3_ROWS - 1) / B3_ROWS; g++) {
        const uint8_t *gw = (const uint8_t *)w->data + (size_t)g * (size_t)n * 16;
        __m512 f[5];
        for (int k = 0; k < 5; k++)
            f[k] = _mm512_setzero_ps();
        for (int b = 0; b < nbs; b++) {
            __m512i a[5];
            for (int k = 0; k < 5; k++)
                a[k] = _mm512_setzero_si512();
            const uint8_t *cw = gw + (size_t)b * (size_t)bcols * 16;
            if (i8min) {
                b3_block_dot_i8min(cw, q + b * bcols, bcols / 4, a);
            } else {
                b3_block_dot(cw, q + b * bcols, bcols / 4, a);
            }
            /* codes are w + 1: subtract the activations' sum */
            const __m512i s = _mm512_set1_epi32(asum[b]);
            for (int k = 0; k < 5; k++) {
                const __m512 x = _mm512_cvtepi32_ps(_mm512_sub_epi32(a[k], s));
                f[k] = tq ? _mm512_add_ps(f[k], _mm512_mul_ps(vd, x)) : x;
            }
        }
        float *o = out + B3_ROWS * g;
        for (int k = 0; k < 5; k++)
            _mm512_mask_storeu_ps(o + 16 * k, b3_mask(g, k, r0, r1),
                                  _mm512_div_ps(_mm512_mul_ps(f[k], ws), as));
    }
}

/* Group g of the base-3 layout as five R16 groups (dst: 5 * n * 4 bytes):
 * R16 chunk c of sub-group k is codes_k(4c) | codes_k(4c+1) << 2 | ... */
__attribute__((target("avx512vbmi"))) static void b3_to_r16(const bn_tensor *w, int64_t g,
                                                            uint8_t *dst) {
    B3_TABLES;
    const int64_t n = w->n_cols;
    const uint8_t *gw = (const uint8_t *)w->data + (size_t)g * (size_t)n * 16;
    for (int64_t c = 0; c < n / 16; c++) {
        __m512i o0 = _mm512_setzero_si512(), o1 = o0, o2 = o0, o3 = o0, o4 = o0;
        for (int s = 0; s < 4; s++) {
            const __m512i v = _mm512_load_si512(gw + (4 * c + s) * 64);
            __m512i d0, d1, d2, d3, d4;
            B3_DECODE(v, d0, d1, d2, d3, d4);
            /* codes <= 2: 16-bit shifts never carry into the next byte */
            o0 = _mm512_or_si512(o0, _mm512_slli_epi16(d0, 2 * s));
            o1 = _mm512_or_si512(o1, _mm512_slli_epi16(d1, 2 * s));
            o2 = _mm512_or_si512(o2, _mm512_slli_epi16(d2, 2 * s));
            o3 = _mm512_or_si512(o3, _mm512_slli_epi16(d3, 2 * s));
            o4 = _mm512_or_si512(o4, _mm512_slli_epi16(d4, 2 * s));
        }
        _mm512_store_si512(dst + 0 * n * 4 + c * 64, o0);
        _mm512_store_si512(dst + 1 * n * 4 + c * 64, o1);
        _mm512_store_si512(dst + 2 * n * 4 + c * 64, o2);
        _mm512_store_si512(dst + 3 * n * 4 + c * 64, o3);
        _mm512_store_si512(dst + 4 * n * 4 + c * 64, o4);
    }
}

static void avx512_matmul_b3(const bn_tensor *w, const int8_t *q, const float *act_scale,
                             int64_t n_tok, float *out, int64_t out_stride, int64_t r0,
                             int64_t r1) {
    const int64_t n = w->n_cols;
    const int64_t groups = (w->n_rows + B3_ROWS - 1) / B3_ROWS;
    const uint16_t dh = bn_rd_u16((const uint8_t *)w->data + (size_t)groups * (size_t)n * 16);
    const float d = bn_fp16_to_fp32(dh);
    const int tq = is_tq(w->type);
    const int nbs = tq ? (int)(n / 256) : 1;
    /* Prefill: one group at a time decoded to R16 in scratch, then the R16
     * tiles over all tokens. Without scratch, token by token. */
    uint8_t *scratch = n_tok > 1 ? bn_aligned_alloc((size_t)n * 20) : NULL;
    if (!scratch) {
        for (int64_t t = 0; t < n_tok; t++)
            b3_matvec(w, q + t * n, act_scale[t], d, out + t * out_stride, r0, r1);
        return;
    }
    uint16_t gd[16 * MAX_NB];
    for (int i = 0; i < 16 * nbs; i++)
        gd[i] = dh;
    int32_t asum[TILE * MAX_NB];
    for (int64_t g = r0 / B3_ROWS; g < (r1 + B3_ROWS - 1) / B3_ROWS; g++) {
        b3_to_r16(w, g, scratch);
        for (int64_t t0 = 0; t0 < n_tok; t0 += TILE) {
            const int nt = (int)(n_tok - t0 < TILE ? n_tok - t0 : TILE);
            const int8_t *qt = q + t0 * n;
            tile_asum(qt, n, nt, nbs, tq, asum);
            for (int k = 0; k < 5; k++) {
                const __mmask16 mask = b3_mask(g, k, r0, r1);
                if (!mask) continue;
                r16_group(scratch + (size_t)k * (size_t)n * 4, gd, tq, n, qt, asum, nbs, nt,
                          act_scale + t0, w->scale, out + t0 * out_stride + B3_ROWS * g + 16 * k,
                          out_stride, mask);
            }
        }
    }
    bn_aligned_free(scratch);
}

static void avx512_matmul_ternary(const bn_tensor *w, const int8_t *q, const float *act_scale,
                                  int64_t n_tok, float *out, int64_t out_stride, int64_t r0,
                                  int64_t r1) {
    if (w->layout == BN_LAYOUT_R16) {
        avx512_matmul_r16(w, q, act_scale, n_tok, out, out_stride, r0, r1);
        return;
    }
    if (w->layout == BN_LAYOUT_B3) {
        avx512_matmul_b3(w, q, act_scale, n_tok, out, out_stride, r0, r1);
        return;
    }
    bn_kernels_avx2()->matmul_i8[w->type](w, q, act_scale, n_tok, out, out_stride, r0, r1);
}

/* ------------------------------------------------------------------------ */
/* Q6_K / Q8_0 / Q4_0 heads on int8 activations (llama.cpp's Q8_K dots)    */
/* ------------------------------------------------------------------------ */

/* The float matmul of these types quantizes each token's activations to
 * int8 per 256-column block (scale amax / 127, round half to even, so q is
 * in -127..127; bn_avx2_matmul_q8act does that and calls the row dots
 * below), then takes exact integer dot products of the weights' quants with
 * them (vpmaddubsw / vpdpbusd) and applies the block scales in float. The only error beyond float
 * rounding is that of the activation quantization (at most half a step of each block, relative
 * ~1/254), the same that llama.cpp accepts for these types (ggml's vec_dot_type Q8_K / Q8_0). */
static float q6_k_row_dot(const uint8_t *row, int64_t nb, const int8_t *q, const float *d8,
                          const int16_t *sum16) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    /* 16-bit lane l of si takes scale 4i + l / 8 (maddubs pairs: 16 columns
     * per 8 lanes) */
    const __m512i s_idx0 = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1,
                                            1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i four = _mm512_set1_epi16(4);
    const __m512i s_idx1 = _mm512_add_epi16(s_idx0, four);
    const __m512i s_idx2 = _mm512_add_epi16(s_idx1, four);
    const __m512i s_idx3 = _mm512_add_epi16(s_idx2, four);
    __m512 facc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + b * BN_Q6_K_BYTES;
        const int8_t *qa = q + 256 * b;
        for (int l = 0; l < BN_Q6_K_BYTES; l += 64) /* the rows are streamed */
            _mm_prefetch((const char *)(blk + PREFETCH + l), WEIGHT_HINT);
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 192)));
        const __m512i scz = _mm512_castsi256_si512(sc16);
        __m512i acc = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i L = _mm512_loadu_si512(blk + 64 * h);
            const __m256i hh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
            const __m512i H =
                _mm512_inserti64x4(_mm512_castsi256_si512(hh), _mm256_srli_epi16(hh, 2), 1);
            const __m512i u0 = _mm512_or_si512(_mm512_and_si512(L, m4),
                                               _mm512_and_si512(_mm512_slli_epi16(H, 4), m30));
            const __m512i u1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                               _mm512_and_si512(H, m30));
            /* u <= 63, |a| <= 127: the pair sums of maddubs never saturate */
            const __m512i p0 = _mm512_maddubs_epi16(u0, _mm512_loadu_si512(qa + 128 * h));
            const __m512i p1 = _mm512_maddubs_epi16(u1, _mm512_loadu_si512(qa + 128 * h + 64));
            acc = _mm512_dpwssd_epi32(acc, p0, _mm512_permutexvar_epi16(h ? s_idx2 : s_idx0, scz));
            acc = _mm512_dpwssd_epi32(acc, p1, _mm512_permutexvar_epi16(h ? s_idx3 : s_idx1, scz));
        }
        /* quants are stored + 32: subtract 32 * sum_j scale_j * sum(q of j) */
        const __m256i corr =
            _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)(sum16 + 16 * b)));
        acc = _mm512_sub_epi32(acc, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 5)));
        const float dd = _cvtsh_ss(bn_rd_u16(blk + 208)) * d8[b];
        facc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(dd), facc);
    }
    return _mm512_reduce_add_ps(facc);
}

/* Two 32-column blocks (Q8_0, Q4_0: a half scale first) in one vector:
 * lanes 0-7 take the first block's scale, 8-15 the second's, each times
 * the activations' step da. */
static inline __m512 pair_scales(const uint8_t *b0, const uint8_t *b1, float da) {
    return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(_cvtsh_ss(bn_rd_u16(b0)) * da),
                                _mm512_set1_ps(_cvtsh_ss(bn_rd_u16(b1)) * da));
}

static float q8_0_row_dot(const uint8_t *row, int64_t n, const int8_t *q, const float *d8) {
    __m512 facc = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k += 64) {
        const uint8_t *b0 = row + (k / 32) * BN_Q8_0_BYTES, *b1 = b0 + BN_Q8_0_BYTES;
        const __m512i wv = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + 2))),
            _mm256_loadu_si256((const __m256i *)(b1 + 2)), 1);
        const __m512i av = _mm512_loadu_si512(q + k);
        /* |w| as u8 times a with w's sign: exact, -128 included */
        const __m512i as =
            _mm512_mask_sub_epi8(av, _mm512_movepi8_mask(wv), _mm512_setzero_si512(), av);
        const __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(wv), as);
        facc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), pair_scales(b0, b1, d8[k / 256]), facc);
    }
    return _mm512_reduce_add_ps(facc);
}

/* Q4_0: 16 bytes of nibbles per 32 columns (element j: low nibble of byte
 * j, element 16 + j: high nibble), value (nibble - 8) * d. Two blocks per
 * vector: vpdpbusd of the nibbles (unsigned) with the activations, minus 8
 * times the activation sum of each block (its sum subtracted from each of
 * the block's 8 lanes). */
static float q4_0_row_dot(const uint8_t *row, int64_t n, const int8_t *q, const float *d8,
                          const int16_t *sum16) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m512 facc = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k += 64) {
        const uint8_t *b0 = row + (k / 32) * BN_Q4_0_BYTES, *b1 = b0 + BN_Q4_0_BYTES;
        const __m128i q0 = _mm_loadu_si128((const __m128i *)(b0 + 2));
        const __m128i q1 = _mm_loadu_si128((const __m128i *)(b1 + 2));
        const __m256i v0 =
            _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q0, 4), m4), _mm_and_si128(q0, m4));
        const __m256i v1 =
            _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q1, 4), m4), _mm_and_si128(q1, m4));
        const __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(v0), v1, 1);
        __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, _mm512_loadu_si512(q + k));
        const int32_t s0 = sum16[k / 16] + sum16[k / 16 + 1];
        const int32_t s1 = sum16[k / 16 + 2] + sum16[k / 16 + 3];
        acc = _mm512_sub_epi32(
            acc, _mm512_mask_blend_epi32(0xff00, _mm512_set1_epi32(s0), _mm512_set1_epi32(s1)));
        facc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), pair_scales(b0, b1, d8[k / 256]), facc);
    }
    return _mm512_reduce_add_ps(facc);
}

static void avx512_matmul_q8act(const bn_tensor *w, const float *x, int64_t n_tok, float *out,
                                int64_t out_stride, int64_t r0, int64_t r1) {
    static const bn_q8act_dots dots = {q6_k_row_dot, q8_0_row_dot, q4_0_row_dot};
    bn_avx2_matmul_q8act(&dots, w, x, n_tok, out, out_stride, r0, r1);
}

/* F16 weights (heads and embeddings stored as halves): vcvtph2ps and FMA,
 * up to 4 tokens per pass over a row (the row stays in L1 for the next
 * tokens). Each token sums in four chains over 64-column steps, reduced as
 * (c0 + c1) + (c2 + c3), whatever the batch size: a token's logits do not
 * depend on how it was batched. Differs from the reference by summation
 * order. */
static void avx512_matmul_f16(const bn_tensor *w, const float *x, int64_t n_tok, float *out,
                              int64_t out_stride, int64_t r0, int64_t r1) {
    const int64_t n = w->n_cols;
    if (n % 16 != 0) {
        bn_avx2_matmul_float(w, x, n_tok, out, out_stride, r0, r1);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint16_t *row =
            (const uint16_t *)((const uint8_t *)w->data + (size_t)r * w->row_bytes);
        for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {
            const int nt = (int)(n_tok - t0 < 4 ? n_tok - t0 : 4);
            __m512 acc[4][4];
            for (int t = 0; t < 4; t++)
                for (int c = 0; c < 4; c++)
                    acc[t][c] = _mm512_setzero_ps();
            int64_t k = 0;
            for (; k + 64 <= n; k += 64) {
                __m512 wv[4];
                for (int c = 0; c < 4; c++)
                    wv[c] =
                        _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + k + 16 * c)));
                for (int t = 0; t < nt; t++) {
                    const float *xt = x + (t0 + t) * n + k;
                    for (int c = 0; c < 4; c++)
                        acc[t][c] = _mm512_fmadd_ps(wv[c], _mm512_loadu_ps(xt + 16 * c), acc[t][c]);
                }
            }
            for (; k < n; k += 16) {
                const __m512 wv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + k)));
                for (int t = 0; t < nt; t++)
                    acc[t][0] =
                        _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + (t0 + t) * n + k), acc[t][0]);
            }
            for (int t = 0; t < nt; t++) {
                const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]),
                                                 _mm512_add_ps(acc[t][2], acc[t][3]));
                out[(t0 + t) * out_stride + r] = _mm512_reduce_add_ps(sum) * w->scale;
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Attention and FFN activation                                             */
/* ------------------------------------------------------------------------ */

/* e^x for 16 floats: x = n ln2 + r, |r| <= ln2 / 2, e^r by its degree-6
 * Taylor polynomial (relative error < 2e-7, about expf's), times 2^n by
 * vscalefps. Inputs below -87.3 give 0 (softmax weights, SiLU of large
 * negatives), above 88.7 give +inf, as expf. */
static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x); /* a NaN x stays NaN */
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Head dims that are a multiple of 16 up to 256: the output stays in
 * registers while the positions stream by. */
#define ATT_MAXV 16

/* att[i] = exp(att[i] - mx) for i < n; returns 1 / their sum. */
static float softmax_exp(float *att, int32_t n_pos, float mx) {
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 vsum = _mm512_setzero_ps();
    int32_t i = 0;
    for (; i + 16 <= n_pos; i += 16) {
        const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(att + i), vmx));
        _mm512_storeu_ps(att + i, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    if (i < n_pos) {
        const __mmask16 m = (__mmask16)((1u << (n_pos - i)) - 1u);
        const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, att + i), vmx));
        _mm512_mask_storeu_ps(att + i, m, e);
        vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(m, e));
    }
    return 1.0f / _mm512_reduce_add_ps(vsum);
}

/* The sums of four vectors, times scale: per 128-bit lane [s0, s1, s2, s3]
 * partial sums, then the four lanes added. */
static inline __m128 sum4(__m512 a, __m512 b, __m512 c, __m512 d, float scale) {
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const __m512 t =
        _mm512_add_ps(_mm512_shuffle_ps(ab, cd, 0x44), _mm512_shuffle_ps(ab, cd, 0xee));
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(t), _mm512_extractf32x8_ps(t, 1));
    return _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)),
                      _mm_set1_ps(scale));
}

static inline float max4(__m128 v) {
    v = _mm_max_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_max_ss(v, _mm_shuffle_ps(v, v, 1)));
}

/* Elements [i, i + 16) of the KV cache as floats: float32, or IEEE half
 * (vcvtph2ps, exact). */
static inline __attribute__((always_inline)) __m512 kv_load(const void *base, size_t i,
                                                            const int f16) {
    if (f16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i)));
    return _mm512_loadu_ps((const float *)base + i);
}

static inline __attribute__((always_inline)) void
attn_head_body(const float *q, const void *k, const void *v, const int f16, int64_t kv_stride,
               int32_t n_pos, int hd, float scale, float *att, float *o) {
    const int nv = hd / 16;
    __m512 qv[ATT_MAXV];
    for (int e = 0; e < nv; e++)
        qv[e] = _mm512_loadu_ps(q + 16 * e);
    /* Scores eight positions at a time: eight independent FMA chains (one
     * chain per position would wait on the FMA latency), then shuffle trees
     * sum four of them at once (cheaper than a reduction each). */
    __m128 vmax = _mm_set1_ps(-INFINITY);
    int32_t i = 0;
    for (; i + 8 <= n_pos; i += 8) {
        const size_t kr = (size_t)i * (size_t)kv_stride;
        bn_kv_prefetch(k, kr, 8 * kv_stride, f16);
        __m512 s[8];
        for (int p = 0; p < 8; p++)
            s[p] = _mm512_mul_ps(qv[0], kv_load(k, kr + (size_t)p * (size_t)kv_stride, f16));
        for (int e = 1; e < nv; e++) {
            for (int p = 0; p < 8; p++) {
                s[p] = _mm512_fmadd_ps(
                    qv[e], kv_load(k, kr + (size_t)p * (size_t)kv_stride + 16 * e, f16), s[p]);
            }
        }
        for (int g = 0; g < 8; g += 4) {
            const __m128 d4 = sum4(s[g], s[g + 1], s[g + 2], s[g + 3], scale);
            _mm_storeu_ps(att + i + g, d4);
            vmax = _mm_max_ps(vmax, d4);
        }
    }
    float mx = max4(vmax);
    for (; i < n_pos; i++) {
        const size_t kr = (size_t)i * (size_t)kv_stride;
        __m512 s0 = _mm512_mul_ps(qv[0], kv_load(k, kr, f16));
        for (int e = 1; e < nv; e++)
            s0 = _mm512_fmadd_ps(qv[e], kv_load(k, kr + 16 * e, f16), s0);
        const float d = _mm512_reduce_add_ps(s0) * scale;
        att[i] = d;
        if (d > mx) mx = d;
    }
    const float inv = softmax_exp(att, n_pos, mx);
    __m512 acc[ATT_MAXV];
    for (int e = 0; e < nv; e++)
        acc[e] = _mm512_setzero_ps();
    /* Two positions per step into two sets of sums: twice the independent
     * FMA chains, for head dims up to 128 (16 registers). */
    int32_t p = 0;
    if (nv <= 8) {
        __m512 acc2[8];
        for (int e = 0; e < nv; e++)
            acc2[e] = _mm512_setzero_ps();
        for (; p + 2 <= n_pos; p += 2) {
            const size_t vr = (size_t)p * (size_t)kv_stride;
            bn_kv_prefetch(v, vr, 2 * kv_stride, f16);
            const __m512 a0 = _mm512_set1_ps(att[p]), a1 = _mm512_set1_ps(att[p + 1]);
            for (int e = 0; e < nv; e++) {
                acc[e] = _mm512_fmadd_ps(a0, kv_load(v, vr + 16 * e, f16), acc[e]);
                acc2[e] =
                    _mm512_fmadd_ps(a1, kv_load(v, vr + (size_t)kv_stride + 16 * e, f16), acc2[e]);
            }
        }
        for (int e = 0; e < nv; e++)
            acc[e] = _mm512_add_ps(acc[e], acc2[e]);
    }
    for (; p < n_pos; p++) {
        const size_t vr = (size_t)p * (size_t)kv_stride;
        const __m512 a = _mm512_set1_ps(att[p]);
        for (int e = 0; e < nv; e++)
            acc[e] = _mm512_fmadd_ps(a, kv_load(v, vr + 16 * e, f16), acc[e]);
    }
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int e = 0; e < nv; e++)
        _mm512_storeu_ps(o + 16 * e, _mm512_mul_ps(acc[e], vinv));
}

/* Two query heads of one KV head: each K row chunk is loaded once for both
 * dot products, each V row chunk once for both outputs. Head dims that are
 * a multiple of 16 up to 128 (both heads' q and sums stay in registers). */
static inline __attribute__((always_inline)) void
attn_head2_body(const float *q0, const float *q1, const void *k, const void *v, const int f16,
                int64_t kv_stride, int32_t n_pos, int hd, float scale, float *att, float *o0,
                float *o1) {
    const int nv = hd / 16;
    float *att0 = att, *att1 = att + n_pos;
    __m512 qa[8], qb[8];
    for (int e = 0; e < nv; e++) {
        qa[e] = _mm512_loadu_ps(q0 + 16 * e);
        qb[e] = _mm512_loadu_ps(q1 + 16 * e);
    }
    __m128 vmax0 = _mm_set1_ps(-INFINITY), vmax1 = vmax0;
    int32_t i = 0;
    for (; i + 4 <= n_pos; i += 4) {
        const size_t kr = (size_t)i * (size_t)kv_stride;
        bn_kv_prefetch(k, kr, 4 * kv_stride, f16);
        __m512 sa[4], sb[4];
        for (int p = 0; p < 4; p++) {
            const __m512 kv = kv_load(k, kr + (size_t)p * (size_t)kv_stride, f16);
            sa[p] = _mm512_mul_ps(qa[0], kv);
            sb[p] = _mm512_mul_ps(qb[0], kv);
        }
        for (int e = 1; e < nv; e++) {
            for (int p = 0; p < 4; p++) {
                const __m512 kv = kv_load(k, kr + (size_t)p * (size_t)kv_stride + 16 * e, f16);
                sa[p] = _mm512_fmadd_ps(qa[e], kv, sa[p]);
                sb[p] = _mm512_fmadd_ps(qb[e], kv, sb[p]);
            }
        }
        const __m128 d0 = sum4(sa[0], sa[1], sa[2], sa[3], scale);
        const __m128 d1 = sum4(sb[0], sb[1], sb[2], sb[3], scale);
        _mm_storeu_ps(att0 + i, d0);
        _mm_storeu_ps(att1 + i, d1);
        vmax0 = _mm_max_ps(vmax0, d0);
        vmax1 = _mm_max_ps(vmax1, d1);
    }
    float mx0 = max4(vmax0), mx1 = max4(vmax1);
    for (; i < n_pos; i++) {
        const size_t kr = (size_t)i * (size_t)kv_stride;
        const __m512 k0 = kv_load(k, kr, f16);
        __m512 sa = _mm512_mul_ps(qa[0], k0);
        __m512 sb = _mm512_mul_ps(qb[0], k0);
        for (int e = 1; e < nv; e++) {
            const __m512 kv = kv_load(k, kr + 16 * e, f16);
            sa = _mm512_fmadd_ps(qa[e], kv, sa);
            sb = _mm512_fmadd_ps(qb[e], kv, sb);
        }
        att0[i] = _mm512_reduce_add_ps(sa) * scale;
        att1[i] = _mm512_reduce_add_ps(sb) * scale;
        if (att0[i] > mx0) mx0 = att0[i];
        if (att1[i] > mx1) mx1 = att1[i];
    }
    const float inv0 = softmax_exp(att0, n_pos, mx0), inv1 = softmax_exp(att1, n_pos, mx1);
    __m512 acc0[8], acc1[8];
    for (int e = 0; e < nv; e++) {
        acc0[e] = _mm512_setzero_ps();
        acc1[e] = _mm512_setzero_ps();
    }
    for (int32_t p = 0; p < n_pos; p++) {
        const size_t vr = (size_t)p * (size_t)kv_stride;
        bn_kv_prefetch(v, vr, kv_stride, f16);
        const __m512 a0 = _mm512_set1_ps(att0[p]), a1 = _mm512_set1_ps(att1[p]);
        for (int e = 0; e < nv; e++) {
            const __m512 vv = kv_load(v, vr + 16 * e, f16);
            acc0[e] = _mm512_fmadd_ps(a0, vv, acc0[e]);
            acc1[e] = _mm512_fmadd_ps(a1, vv, acc1[e]);
        }
    }
    for (int e = 0; e < nv; e++) {
        _mm512_storeu_ps(o0 + 16 * e, _mm512_mul_ps(acc0[e], _mm512_set1_ps(inv0)));
        _mm512_storeu_ps(o1 + 16 * e, _mm512_mul_ps(acc1[e], _mm512_set1_ps(inv1)));
    }
}

static void avx512_attn_head(const float *q, const void *k, const void *v, int kv_f16,
                             int64_t kv_stride, int32_t n_pos, int hd, float scale, float *att,
                             float *o) {
    if (hd % 16 != 0 || hd / 16 > ATT_MAXV) {
        bn_ref_attn_head(q, k, v, kv_f16, kv_stride, n_pos, hd, scale, att, o);
    } else if (kv_f16) {
        attn_head_body(q, k, v, 1, kv_stride, n_pos, hd, scale, att, o);
    } else {
        attn_head_body(q, k, v, 0, kv_stride, n_pos, hd, scale, att, o);
    }
}

static void avx512_attn_head2(const float *q0, const float *q1, const void *k, const void *v,
                              int kv_f16, int64_t kv_stride, int32_t n_pos, int hd, float scale,
                              float *att, float *o0, float *o1) {
    if (hd % 16 != 0 || hd / 16 > 8) {
        avx512_attn_head(q0, k, v, kv_f16, kv_stride, n_pos, hd, scale, att, o0);
        avx512_attn_head(q1, k, v, kv_f16, kv_stride, n_pos, hd, scale, att, o1);
    } else if (kv_f16) {
        attn_head2_body(q0, q1, k, v, 1, kv_stride, n_pos, hd, scale, att, o0, o1);
    } else {
        attn_head2_body(q0, q1, k, v, 0, kv_stride, n_pos, hd, scale, att, o0, o1);
    }
}

static void avx512_ffn_act(float *g, const float *u, int64_t n, int relu2) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i), uv = _mm512_loadu_ps(u + i);
        __m512 y;
        if (relu2) {
            const __m512 r = _mm512_max_ps(x, _mm512_setzero_ps());
            y = _mm512_mul_ps(_mm512_mul_ps(r, r), uv);
        } else {
            const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
            y = _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), uv);
        }
        _mm512_storeu_ps(g + i, y);
    }
    if (i < n) bn_ref_ffn_act(g + i, u + i, n - i, relu2);
}

/* bn_rmsnorm's sum, lane for lane: eight floats squared, widened to
 * double and added to lane j = i mod 8 of one accumulator, in the same
 * order as its part[8]; the same final combination; the scaling 16 wide. */
static void avx512_rmsnorm(float *o, const float *x, const float *w, int64_t n, float eps) {
    __m512d acc = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_mul_ps(v, v)));
    }
    double part[8];
    _mm512_storeu_pd(part, acc);
    const float scale = bn_rmsnorm_scale(part, x, i, n, eps);
    const __m512 vs = _mm512_set1_ps(scale);
    for (i = 0; i + 16 <= n; i += 16) {
        const __m512 y = _mm512_mul_ps(_mm512_loadu_ps(x + i), vs);
        _mm512_storeu_ps(o + i, _mm512_mul_ps(y, _mm512_loadu_ps(w + i)));
    }
    for (; i < n; i++)
        o[i] = (x[i] * scale) * w[i];
}

static const bn_kernels k_avx512 = {
    .name = "avx512vnni",
    .quantize_act = bn_avx2_quantize_act,
    .matmul_i8 =
        {
            [BN_TYPE_TQ1_0] = avx512_matmul_ternary,
            [BN_TYPE_TQ2_0] = avx512_matmul_ternary,
            [BN_TYPE_I2_S] = avx512_matmul_ternary,
        },
    .matmul_f32 =
        {
            [BN_TYPE_F32] = bn_avx2_matmul_float,
            [BN_TYPE_F16] = avx512_matmul_f16,
            [BN_TYPE_BF16] = bn_avx2_matmul_float,
            [BN_TYPE_Q8_0] = avx512_matmul_q8act,
            [BN_TYPE_Q4_0] = avx512_matmul_q8act,
            [BN_TYPE_Q6_K] = avx512_matmul_q8act,
            [BN_TYPE_TQ1_0] = bn_avx2_matmul_float,
            [BN_TYPE_TQ2_0] = bn_avx2_matmul_float,
            [BN_TYPE_I2_S] = bn_avx2_matmul_float,
        },
    .f32_int8_act = (1ull << BN_TYPE_Q8_0) | (1ull << BN_TYPE_Q6_K) | (1ull << BN_TYPE_Q4_0),
    .attn_head = avx512_attn_head,
    .attn_head2 = avx512_attn_head2,
    .to_f16 = bn_avx2_to_f16,
    .ffn_act = avx512_ffn_act,
    .rmsnorm = avx512_rmsnorm,
    .bandwidth_bound = 1,
    .packed_size = avx512_packed_size,
    .pack = avx512_pack,
};

const bn_kernels *bn_kernels_avx512(void) { return &k_avx512; }
