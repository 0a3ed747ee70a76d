/* I2_S: bitnet.cpp's 2-bit ternary type (x86 layout), blocks of 128
 * elements in 32 bytes, one float scale per tensor.
 *
 * Layout (microsoft/BitNet src/ggml-bitnet-mad.cpp: quantize_i2_s with
 * QK_I2_S = 128 on x86, and ggml_vec_dot_i2_i8_s that reads it; the fork's
 * ggml.c: type_traits[I2_S] has block size 1 and type size 1, and
 * ggml_nbytes special-cases I2_S as n_elements / 4 + 32):
 *   - Each row of n elements is n / 4 bytes: blocks of 32 bytes, each holding
 *     128 consecutive elements as 4 interleaved groups of 32. Element
 *     32g + p of a block (g in 0..3, p in 0..31) is in byte p at bits
 *     6 - 2g .. 7 - 2g: group 0 in the top two bits, group 3 in the bottom.
 *   - Codes: 0 = -1, 1 = 0, 2 = +1 (3 is never written; read as +2, which is
 *     what bitnet.cpp's kernel, computing sum(code * a) - sum(a), gives).
 *   - After the last row: one little-endian float32, the tensor's scale
 *     (max |w| over the tensor), then 28 bytes of padding (zero here), so a
 *     tensor takes n_rows * n_cols / 4 + 32 bytes. w = (code - 1) * scale.
 * quantize_i2_s maps |x| < 1e-6 to code 1 and otherwise the sign of x; the
 * scale is taken over the whole tensor, so rows here carry bare ternary
 * values and the scale is handled by bn_quantize / bn_dequantize and by the
 * kernels through bn_tensor.scale.
 * (bitnet.cpp's ARM build uses another layout, QK_I2_S = 64 in 16-byte
 * blocks; the published GGUF files use the x86 one described here.) */
#include "fmt.h"

#include <math.h>

void bn_i2_s_unpack(const uint8_t *b, int8_t q[BN_QK_I2_S]) {
    for (int g = 0; g < 4; g++) {
        for (int p = 0; p < 32; p++)
            q[32 * g + p] = (int8_t)(((b[p] >> (6 - 2 * g)) & 3) - 1);
    }
}

void bn_i2_s_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    int8_t q[BN_QK_I2_S];
    for (int64_t i = 0; i < n / BN_QK_I2_S; i++, b += BN_I2_S_BYTES) {
        bn_i2_s_unpack(b, q);
        for (int j = 0; j < BN_QK_I2_S; j++)
            dst[i * BN_QK_I2_S + j] = (float)q[j];
    }
}

void bn_i2_s_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / BN_QK_I2_S; i++, b += BN_I2_S_BYTES) {
        memset(b, 0, BN_I2_S_BYTES);
        for (int g = 0; g < 4; g++) {
            for (int p = 0; p < 32; p++) {
                const float x = src[i * BN_QK_I2_S + 32 * g + p];
                const unsigned c = fabs((double)x) < 1e-6 ? 1u : x > 0.0f ? 2u : 0u;
                b[p] |= (uint8_t)(c << (6 - 2 * g));
            }
        }
    }
}
