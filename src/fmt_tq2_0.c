/* TQ2_0: ternary super-blocks of 256 elements, 66 bytes (2.0625 bits each).
 *
 * Layout (ggml-common.h, block_tq2_0; ggml-quants.c, quantize_row_tq2_0_ref
 * and dequantize_row_tq2_0):
 *   bytes  0-63: qs[64], four 2-bit codes per byte
 *   bytes 64-65: d, the block scale, IEEE half
 * Code c of element e is (qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4)))
 * & 3, that is: each run of 32 bytes holds 128 elements, bits 2l..2l+1 of
 * byte m hold element 32l + m of that run. Element value = (c - 1) * d, so
 * codes 0, 1, 2 are -1, 0, +1 (3 is never written; it reads as +2, as in
 * ggml).
 * Quantization: d = max|x| of the block (as f16), c = lroundf(x * (1/d)) + 1. */
#include "fmt.h"

#include <math.h>

float bn_tq2_0_unpack(const uint8_t *b, int8_t q[BN_QK_K]) {
    for (int j = 0; j < 2; j++) {
        for (int l = 0; l < 4; l++) {
            for (int m = 0; m < 32; m++) {
                q[128 * j + 32 * l + m] = (int8_t)(((b[32 * j + m] >> (2 * l)) & 3) - 1);
            }
        }
    }
    return bn_fp16_to_fp32(bn_rd_u16(b + 64));
}

void bn_tq2_0_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    int8_t q[BN_QK_K];
    for (int64_t i = 0; i < n / BN_QK_K; i++, b += BN_TQ2_0_BYTES) {
        const float d = bn_tq2_0_unpack(b, q);
        for (int j = 0; j < BN_QK_K; j++)
            dst[i * BN_QK_K + j] = (float)q[j] * d;
    }
}

void bn_tq2_0_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / BN_QK_K; i++, b += BN_TQ2_0_BYTES) {
        const float *x = src + i * BN_QK_K;
        float amax = 0.0f;
        for (int j = 0; j < BN_QK_K; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float id = amax != 0.0f ? 1.0f / amax : 0.0f;
        for (int j = 0; j < 2; j++) {
            for (int m = 0; m < 32; m++) {
                unsigned v = 0;
                for (int l = 0; l < 4; l++) {
                    long c = lroundf(x[128 * j + 32 * l + m] * id) + 1;
                    v |= ((unsigned)c & 3u) << (2 * l);
                }
                b[32 * j + m] = (uint8_t)v;
            }
        }
        bn_wr_u16(b + 64, bn_fp32_to_fp16(amax));
    }
}
