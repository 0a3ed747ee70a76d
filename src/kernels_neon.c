/* ARM NEON kernels with the dot-product extension (this file is compiled
 * with -march=armv8.2-a+dotprod on AArch64; bn_kernels_best picks it only
 * when the CPU reports asimddp). The CI cross-builds it and runs the kernel
 * tests under qemu-aarch64.
 *
 * Ternary matmuls for TQ2_0 and I2_S on the files' own layouts: the 2-bit
 * codes c are unpacked with shifts and masks to signed weights w = c - 1
 * (int8, -1..2) and sdot (vdotq_s32) multiplies them with the int8
 * activations, 16 at a time, into int32 lanes: exact integer sums. The
 * scales are then applied with the same float operations in the same order
 * as kernels_ref.c (per TQ2_0 block facc += d * isum; I2_S: the row's isum
 * times the tensor scale, over the activation scale), so the results are
 * bit-identical to the reference. Attention over a float32 or half KV cache
 * and the half stores are NEON too; TQ1_0, quantize_act, the float matmuls,
 * RMSNorm and the FFN activation are the reference kernels. */
#include "dispatch.h"
#include "fmt.h"
#include "quant.h"

#include <arm_neon.h>
#include <math.h>

/* The 128 weights held in 32 code bytes (v0 = bytes 0-15, v1 = 16-31)
 * times activations a[0..127], into two accumulators: group g (elements
 * 32g + m, byte m) sits in bits S<g>..S<g>+1. TQ2_0 runs put group g in
 * bits 2g, I2_S blocks in bits 6 - 2g (shifts by a register: 0 is allowed). */
#define DOT128(acc0, acc1, v0, v1, a, S0, S1, S2, S3)                                              \
    do {                                                                                           \
        const uint8x16_t m3_ = vdupq_n_u8(3);                                                      \
        const int8x16_t one_ = vdupq_n_s8(1);                                                      \
        TDOT(acc0, vandq_u8(vshlq_u8(v0, vdupq_n_s8(-(S0))), m3_), (a) + 0);                       \
        TDOT(acc1, vandq_u8(vshlq_u8(v1, vdupq_n_s8(-(S0))), m3_), (a) + 16);                      \
        TDOT(acc0, vandq_u8(vshlq_u8(v0, vdupq_n_s8(-(S1))), m3_), (a) + 32);                      \
        TDOT(acc1, vandq_u8(vshlq_u8(v1, vdupq_n_s8(-(S1))), m3_), (a) + 48);                      \
        TDOT(acc0, vandq_u8(vshlq_u8(v0, vdupq_n_s8(-(S2))), m3_), (a) + 64);                      \
        TDOT(acc1, vandq_u8(vshlq_u8(v1, vdupq_n_s8(-(S2))), m3_), (a) + 80);                      \
        TDOT(acc0, vandq_u8(vshlq_u8(v0, vdupq_n_s8(-(S3))), m3_), (a) + 96);                      \
        TDOT(acc1, vandq_u8(vshlq_u8(v1, vdupq_n_s8(-(S3))), m3_), (a) + 112);                     \
    } while (0)
/* acc += (c - 1) . a for 16 codes c and 16 activations at p */
#define TDOT(acc, c, p) acc = vdotq_s32(acc, vsubq_s8(vreinterpretq_s8_u8(c), one_), vld1q_s8(p))

/* Integer sum of one TQ2_0 block (256) with 256 activations. */
static inline int32_t tq2_0_block_isum(const uint8_t *b, const int8_t *a) {
    int32x4_t acc0 = vdupq_n_s32(0), acc1 = vdupq_n_s32(0);
    for (int j = 0; j < 2; j++) {
        const uint8x16_t v0 = vld1q_u8(b + 32 * j), v1 = vld1q_u8(b + 32 * j + 16);
        DOT128(acc0, acc1, v0, v1, a + 128 * j, 0, 2, 4, 6);
    }
    return vaddvq_s32(vaddq_s32(acc0, acc1));
}

static void neon_matmul_tq2_0(const bn_tensor *w, const int8_t *q, const float *act_scale,
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

static void neon_matmul_i2_s(const bn_tensor *w, const int8_t *q, const float *act_scale,
                             int64_t n_tok, float *out, int64_t out_stride, int64_t r0,
                             int64_t r1) {
    const int64_t n = w->n_cols, nb = n / BN_QK_I2_S;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (int64_t t = 0; t < n_tok; t++) {
            const int8_t *a = q + t * n;
            int32x4_t acc0 = vdupq_n_s32(0), acc1 = vdupq_n_s32(0);
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + b * BN_I2_S_BYTES;
                DOT128(acc0, acc1, vld1q_u8(blk), vld1q_u8(blk + 16), a + b * BN_QK_I2_S, 6, 4, 2,
                       0);
            }
            const int32_t isum = vaddvq_s32(vaddq_s32(acc0, acc1));
            out[t * out_stride + r] = (float)isum * w->scale / act_scale[t];
        }
    }
}
#undef TDOT
#undef DOT128

/* ---- attention over the KV cache ---------------------------------------- */

/* exp(x), 4 lanes, as the x86 sets' exp: x = n ln2 + r, a degree-6
 * polynomial in r, 2^n built in the exponent bits; below -87.3 gives 0,
 * above 88.7 +inf. */
static inline float32x4_t exp4(float32x4_t x) {
    const uint32x4_t keep = vcgeq_f32(x, vdupq_n_f32(-87.3f));
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.7f));
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693145752f));
    r = vfmsq_f32(r, n, vdupq_n_f32(1.42860677e-6f));
    float32x4_t p = vdupq_n_f32(1.0f / 720.0f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    /* n in [-126, 128]: 2^n is a normal float, or +inf for 128 */
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    const float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(y), keep));
}

/* Elements [i, i + 4) of the KV cache as floats: float32 or IEEE half. */
static inline __attribute__((always_inline)) float32x4_t kv_load4(const void *base, size_t i,
                                                                  const int f16) {
    if (f16) return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)base + i)));
    return vld1q_f32((const float *)base + i);
}

/* One query head, head dims a multiple of 4 up to 256: scores four
 * positions at a time (four FMA chains, pairwise adds for the four sums), a
 * vector exp, the outputs summed 64 at a time (16 registers). */
static inline __attribute__((always_inline)) void
attn_body(const float *q, const void *k, const void *v, const int f16, int64_t kv_stride,
          int32_t n_pos, int hd, float scale, float *att, float *o) {
    const int nv = hd / 4;
    const size_t st = (size_t)kv_stride;
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    int32_t i = 0;
    for (; i + 4 <= n_pos; i += 4) {
        const size_t kr = (size_t)i * st;
        float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
        for (int e = 0; e < nv; e++) {
            const float32x4_t qe = vld1q_f32(q + 4 * e);
            s0 = vfmaq_f32(s0, qe, kv_load4(k, kr + 4 * (size_t)e, f16));
            s1 = vfmaq_f32(s1, qe, kv_load4(k, kr + st + 4 * (size_t)e, f16));
            s2 = vfmaq_f32(s2, qe, kv_load4(k, kr + 2 * st + 4 * (size_t)e, f16));
            s3 = vfmaq_f32(s3, qe, kv_load4(k, kr + 3 * st + 4 * (size_t)e, f16));
        }
        const float32x4_t d =
            vmulq_n_f32(vpaddq_f32(vpaddq_f32(s0, s1), vpaddq_f32(s2, s3)), scale);
        vst1q_f32(att + i, d);
        vmax = vmaxq_f32(vmax, d);
    }
    float mx = vmaxvq_f32(vmax);
    for (; i < n_pos; i++) {
        const size_t kr = (size_t)i * st;
        float32x4_t s0 = vdupq_n_f32(0.0f);
        for (int e = 0; e < nv; e++)
            s0 = vfmaq_f32(s0, vld1q_f32(q + 4 * e), kv_load4(k, kr + 4 * (size_t)e, f16));
        att[i] = vaddvq_f32(s0) * scale;
        if (att[i] > mx) mx = att[i];
    }
    const float32x4_t vmx = vdupq_n_f32(mx);
    float32x4_t vsum = vdupq_n_f32(0.0f);
    i = 0;
    for (; i + 4 <= n_pos; i += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(att + i), vmx));
        vst1q_f32(att + i, e);
        vsum = vaddq_f32(vsum, e);
    }
    float sum = vaddvq_f32(vsum);
    for (; i < n_pos; i++) {
        att[i] = expf(att[i] - mx);
        sum += att[i];
    }
    const float inv = 1.0f / sum;
    for (int e0 = 0; e0 < nv; e0 += 16) {
        const int ne = nv - e0 < 16 ? nv - e0 : 16;
        float32x4_t acc[16];
        for (int e = 0; e < ne; e++)
            acc[e] = vdupq_n_f32(0.0f);
        for (int32_t p = 0; p < n_pos; p++) {
            const size_t vr = (size_t)p * st + 4 * (size_t)e0;
            const float a = att[p];
            for (int e = 0; e < ne; e++)
                acc[e] = vfmaq_n_f32(acc[e], kv_load4(v, vr + 4 * (size_t)e, f16), a);
        }
        for (int e = 0; e < ne; e++)
            vst1q_f32(o + 4 * (e0 + e), vmulq_n_f32(acc[e], inv));
    }
}

static void neon_attn_head(const float *q, const void *k, const void *v, int kv_f16,
                           int64_t kv_stride, int32_t n_pos, int hd, float scale, float *att,
                           float *o) {
    if (hd % 4 != 0 || hd > 256) {
        bn_ref_attn_head(q, k, v, kv_f16, kv_stride, n_pos, hd, scale, att, o);
    } else if (kv_f16) {
        attn_body(q, k, v, 1, kv_stride, n_pos, hd, scale, att, o);
    } else {
        attn_body(q, k, v, 0, kv_stride, n_pos, hd, scale, att, o);
    }
}

/* n floats to IEEE half (fcvtn: round to nearest even in the default
 * FPCR mode, subnormal halves kept). */
static void neon_to_f16(const float *x, void *y, int64_t n) {
    uint16_t *h = y;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1_u16(h + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    if (i < n) bn_f16_from_float(x + i, h + i, n - i);
}

/* Filled from the reference set, with the NEON kernels on top. */
const bn_kernels *bn_kernels_neon_init(bn_kernels *k) {
    *k = *bn_kernels_reference();
    k->name = "neon-dotprod";
    k->matmul_i8[BN_TYPE_TQ2_0] = neon_matmul_tq2_0;
    k->matmul_i8[BN_TYPE_I2_S] = neon_matmul_i2_s;
    k->attn_head = neon_attn_head;
    k->to_f16 = neon_to_f16;
    return k;
}
