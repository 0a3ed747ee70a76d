/* Q8_0: blocks of 32 elements, 34 bytes.
 *
 * Layout (ggml-common.h, block_q8_0):
 *   bytes 0-1:  d, the block scale, IEEE half
 *   bytes 2-33: qs[32], int8; element j = qs[j] * d
 * Quantization (ggml-quants.c, quantize_row_q8_0_ref): d = max|x| / 127,
 * qs[j] = roundf(x[j] / d) computed as x[j] * (1/d), rounding half away from
 * zero; an all-zero block gets d = 0 and qs = 0. */
#include "fmt.h"

#include <math.h>

void bn_q8_0_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / BN_QK8_0; i++, b += BN_Q8_0_BYTES) {
        const float d = bn_fp16_to_fp32(bn_rd_u16(b));
        const int8_t *qs = (const int8_t *)(b + 2);
        for (int j = 0; j < BN_QK8_0; j++)
            dst[i * BN_QK8_0 + j] = (float)qs[j] * d;
    }
}

void bn_q8_0_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / BN_QK8_0; i++, b += BN_Q8_0_BYTES) {
        const float *x = src + i * BN_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < BN_QK8_0; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        bn_wr_u16(b, bn_fp32_to_fp16(d));
        int8_t *qs = (int8_t *)(b + 2);
        for (int j = 0; j < BN_QK8_0; j++)
            qs[j] = (int8_t)roundf(x[j] * id);
    }
}
