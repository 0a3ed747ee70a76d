/* Q4_0: blocks of 32 elements, 18 bytes.
 *
 * Layout (ggml-common.h, block_q4_0; ggml-quants.c, dequantize_row_q4_0):
 *   bytes 0-1:  d, the block scale, IEEE half
 *   bytes 2-17: qs[16]; the low nibble of qs[j] holds element j and the high
 *               nibble element j + 16, both stored as q + 8 (q in -8..7);
 *               element = q * d
 * Quantization (quantize_row_q4_0_ref): m = the element of largest |x|
 * (the first one on ties), d = m / -8, nibble = min(15, trunc(x/d + 8.5)),
 * with x/d computed as x * (1/d). */
#include "fmt.h"

#include <math.h>

void bn_q4_0_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / BN_QK4_0; i++, b += BN_Q4_0_BYTES) {
        const float d = bn_fp16_to_fp32(bn_rd_u16(b));
        const uint8_t *qs = b + 2;
        float *y = dst + i * BN_QK4_0;
        for (int j = 0; j < BN_QK4_0 / 2; j++) {
            y[j] = (float)((qs[j] & 0x0f) - 8) * d;
            y[j + BN_QK4_0 / 2] = (float)((qs[j] >> 4) - 8) * d;
        }
    }
}

void bn_q4_0_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / BN_QK4_0; i++, b += BN_Q4_0_BYTES) {
        const float *x = src + i * BN_QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < BN_QK4_0; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        bn_wr_u16(b, bn_fp32_to_fp16(d));
        uint8_t *qs = b + 2;
        for (int j = 0; j < BN_QK4_0 / 2; j++) {
            /* x * id lies in [-8, 8], so the sum is positive and the cast
             * truncates like ggml's (int8_t) cast. */
            int lo = (int)(x[j] * id + 8.5f);
            int hi = (int)(x[j + BN_QK4_0 / 2] * id + 8.5f);
            lo = lo > 15 ? 15 : lo;
            hi = hi > 15 ? 15 : hi;
            qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}
