/* TQ1_0: ternary super-blocks of 256 elements, 54 bytes (1.6875 bits each).
 *
 * Layout (ggml-common.h, block_tq1_0; ggml-quants.c, quantize_row_tq1_0_ref
 * and dequantize_row_tq1_0):
 *   bytes  0-47: qs[48], five trits per byte
 *   bytes 48-51: qh[4], four trits per byte
 *   bytes 52-53: d, the block scale, IEEE half
 * A trit t in {-1, 0, 1} is stored as the digit t + 1. A byte holding digits
 * (a0, a1, a2, a3, a4), a0 the most significant, stores
 * v = ceil(256 * (81 a0 + 27 a1 + 9 a2 + 3 a3 + a4) / 243), so that digit k
 * comes back as ((uint8_t)(v * 3^k) * 3) >> 8 (the fixed-point fraction
 * v/256 shifted left by k trits). Element order:
 *   qs[m],      m in 0..31, digit k: element 32k + m        (elements 0..159)
 *   qs[32 + m], m in 0..15, digit k: element 160 + 16k + m  (160..239)
 *   qh[j],      j in 0..3,  digit k (k < 4): element 240 + 4k + j (240..255);
 *               qh bytes hold 4 digits and a 0 in the last place.
 * Element value = (digit - 1) * d.
 * Quantization: d = max|x| of the block (as f16), digit = lroundf(x / d) + 1
 * with x / d computed as x * (1/d), so inputs that are ternary times one
 * scale are reproduced exactly when the scale is f16-representable. */
#include "fmt.h"

#include <math.h>

static const uint8_t k_pow3[5] = {1, 3, 9, 27, 81};

static int trit(uint8_t v, int k) {
    return (int)(((unsigned)(uint8_t)(v * k_pow3[k]) * 3u) >> 8) - 1;
}

/* Pack n_digits digits (most significant first) of x * id; pad to 5. */
static uint8_t pack5(const float *x, int stride, int n_digits, float id) {
    unsigned q = 0;
    for (int k = 0; k < 5; k++) {
        q *= 3;
        if (k < n_digits) q += (unsigned)(lroundf(x[k * stride] * id) + 1);
    }
    return (uint8_t)((q * 256 + 242) / 243);
}

float bn_tq1_0_unpack(const uint8_t *b, int8_t q[BN_QK_K]) {
    for (int k = 0; k < 5; k++) {
        for (int m = 0; m < 32; m++)
            q[32 * k + m] = (int8_t)trit(b[m], k);
        for (int m = 0; m < 16; m++)
            q[160 + 16 * k + m] = (int8_t)trit(b[32 + m], k);
    }
    for (int k = 0; k < 4; k++) {
        for (int j = 0; j < 4; j++)
            q[240 + 4 * k + j] = (int8_t)trit(b[48 + j], k);
    }
    return bn_fp16_to_fp32(bn_rd_u16(b + 52));
}

void bn_tq1_0_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    int8_t q[BN_QK_K];
    for (int64_t i = 0; i < n / BN_QK_K; i++, b += BN_TQ1_0_BYTES) {
        const float d = bn_tq1_0_unpack(b, q);
        for (int j = 0; j < BN_QK_K; j++)
            dst[i * BN_QK_K + j] = (float)q[j] * d;
    }
}

void bn_tq1_0_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / BN_QK_K; i++, b += BN_TQ1_0_BYTES) {
        const float *x = src + i * BN_QK_K;
        float amax = 0.0f;
        for (int j = 0; j < BN_QK_K; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float id = amax != 0.0f ? 1.0f / amax : 0.0f;
        for (int m = 0; m < 32; m++)
            b[m] = pack5(x + m, 32, 5, id);
        for (int m = 0; m < 16; m++)
            b[32 + m] = pack5(x + 160 + m, 16, 5, id);
        for (int j = 0; j < 4; j++)
            b[48 + j] = pack5(x + 240 + j, 4, 4, id);
        bn_wr_u16(b + 52, bn_fp32_to_fp16(amax));
    }
}
