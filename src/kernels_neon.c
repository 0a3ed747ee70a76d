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
 * bit-identical to the reference. TQ1_0, quantize_act, the float matmuls,
 * attention and the FFN activation are the reference kernels. */
#include "dispatch.h"
#include "fmt.h"
#include "quant.h"

#include <arm_neon.h>

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

/* Filled from the reference set, with the NEON ternary matmuls on top. */
const bn_kernels *bn_kernels_neon_init(bn_kernels *k) {
    *k = *bn_kernels_reference();
    k->name = "neon-dotprod";
    k->matmul_i8[BN_TYPE_TQ2_0] = neon_matmul_tq2_0;
    k->matmul_i8[BN_TYPE_I2_S] = neon_matmul_i2_s;
    return k;
}
