/* Row conversions of the tensor types we run (fmt_<type>.c), and the block
 * unpackers that the matrix kernels share with them. The block layouts are
 * described once, at the top of each fmt_<type>.c. */
#ifndef BN_FMT_H
#define BN_FMT_H

#include "common.h"

#define BN_QK_K 256
#define BN_QK8_0 32
#define BN_QK4_0 32
#define BN_QK_I2_S 128

#define BN_Q8_0_BYTES 34
#define BN_Q4_0_BYTES 18
#define BN_Q6_K_BYTES 210
#define BN_TQ1_0_BYTES 54
#define BN_TQ2_0_BYTES 66
#define BN_I2_S_BYTES 32
/* I2_S: bytes after the packed data of a whole tensor (float scale + pad). */
#define BN_I2_S_EXTRA 32

/* Rows of n elements; n is a multiple of the type's block size. */
void bn_f32_to_float(const void *src, float *dst, int64_t n);
void bn_f32_from_float(const float *src, void *dst, int64_t n);
void bn_f16_to_float(const void *src, float *dst, int64_t n);
void bn_f16_from_float(const float *src, void *dst, int64_t n);
void bn_bf16_to_float(const void *src, float *dst, int64_t n);
void bn_bf16_from_float(const float *src, void *dst, int64_t n);
void bn_q8_0_to_float(const void *src, float *dst, int64_t n);
void bn_q8_0_from_float(const float *src, void *dst, int64_t n);
void bn_q4_0_to_float(const void *src, float *dst, int64_t n);
void bn_q4_0_from_float(const float *src, void *dst, int64_t n);
void bn_q6_k_to_float(const void *src, float *dst, int64_t n);
void bn_q6_k_from_float(const float *src, void *dst, int64_t n);
void bn_tq1_0_to_float(const void *src, float *dst, int64_t n);
void bn_tq1_0_from_float(const float *src, void *dst, int64_t n);
void bn_tq2_0_to_float(const void *src, float *dst, int64_t n);
void bn_tq2_0_from_float(const float *src, void *dst, int64_t n);
/* I2_S rows carry no scale (it is per tensor, after the last row): to_float
 * gives the bare ternary values -1, 0, 1 and from_float encodes the sign of
 * each value (|x| < 1e-6 counts as 0, as bitnet.cpp's quantize_i2_s does). */
void bn_i2_s_to_float(const void *src, float *dst, int64_t n);
void bn_i2_s_from_float(const float *src, void *dst, int64_t n);

/* Ternary block unpackers: the values -1, 0, 1 of one block, in element
 * order. The TQ ones return the block's scale d as float. */
float bn_tq1_0_unpack(const uint8_t *block, int8_t q[BN_QK_K]);
float bn_tq2_0_unpack(const uint8_t *block, int8_t q[BN_QK_K]);
void bn_i2_s_unpack(const uint8_t *block, int8_t q[BN_QK_I2_S]);

/* Little-endian field access (GGUF data is little-endian). */
static inline uint16_t bn_rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline void bn_wr_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

#endif /* BN_FMT_H */
