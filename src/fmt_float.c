/* F32, F16 and BF16 rows.
 *
 * Layout (ggml.c type_traits: block size 1; ggml-impl.h conversions):
 *   F32:  4 bytes per element, IEEE binary32, little-endian.
 *   F16:  2 bytes per element, IEEE binary16, little-endian; from float
 *         rounds to nearest even (as F16C's vcvtps2ph with imm 0 does).
 *   BF16: 2 bytes per element, the high half of the binary32; from float
 *         rounds to nearest even and makes NaNs quiet
 *         (ggml_compute_fp32_to_bf16).
 * The hosts we build for are little-endian, so F32 is a plain copy. */
#include "fmt.h"

void bn_f32_to_float(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void bn_f32_from_float(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void bn_f16_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = bn_fp16_to_fp32(bn_rd_u16(p + 2 * i));
}

void bn_f16_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++)
        bn_wr_u16(p + 2 * i, bn_fp32_to_fp16(src[i]));
}

void bn_bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = bn_bf16_to_fp32(bn_rd_u16(p + 2 * i));
}

void bn_bf16_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++)
        bn_wr_u16(p + 2 * i, bn_fp32_to_bf16(src[i]));
}
