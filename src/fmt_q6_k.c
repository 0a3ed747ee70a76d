/* Q6_K: super-blocks of 256 elements, 210 bytes.
 *
 * Layout (ggml-common.h, block_q6_K; ggml-quants.c, dequantize_row_q6_K):
 *   bytes   0-127: ql[128], low 4 bits of the 6-bit quants
 *   bytes 128-191: qh[64], high 2 bits
 *   bytes 192-207: scales[16], int8, one per 16 elements
 *   bytes 208-209: d, the super-block scale, IEEE half
 * The super-block is two halves of 128 elements; half h uses ql[64h..64h+63],
 * qh[32h..32h+31] and scales[8h..8h+7]. Within a half, for l in 0..31:
 *   element l      : low nibble of ql[l],      qh[l] bits 0-1
 *   element l + 32 : low nibble of ql[l + 32], qh[l] bits 2-3
 *   element l + 64 : high nibble of ql[l],     qh[l] bits 4-5
 *   element l + 96 : high nibble of ql[l + 32], qh[l] bits 6-7
 * q = (nibble | high bits << 4) - 32, in -32..31, and the element is
 * d * scales[e / 16] * q (e: index within the super-block).
 * Quantization follows quantize_row_q6_K_ref: per 16 elements a scale from
 * make_qx_quants (nmax 32, weights x^2, a search over 19 candidate scales),
 * then the 16 scales quantized to int8 against the largest one, then every
 * element re-quantized with its final scale. */
#include "fmt.h"

#include <math.h>

/* Round half to even (ggml's nearest_int in the default rounding mode). */
static int nearest(float v) { return (int)lrintf(v); }

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Scale for n values quantized to -nmax..nmax-1 (stored + nmax in L),
 * weighted by x^2 (ggml's make_qx_quants with rmse_type 1, no weights). */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = clampi(nearest(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = clampi(nearest(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                L[i] = (int8_t)(nmax + clampi(nearest(iscale * x[i]), -nmax, nmax - 1));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void bn_q6_k_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / BN_QK_K; i++, b += BN_Q6_K_BYTES) {
        const float d = bn_fp16_to_fp32(bn_rd_u16(b + 208));
        float *y = dst + i * BN_QK_K;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + 64 * h;
            const uint8_t *qh = b + 128 + 32 * h;
            const int8_t *sc = (const int8_t *)(b + 192) + 8 * h;
            float *yh = y + 128 * h;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                /* (d * sc) * q, in this order, as ggml computes it. */
                yh[l] = d * (float)sc[is] * (float)q1;
                yh[l + 32] = d * (float)sc[is + 2] * (float)q2;
                yh[l + 64] = d * (float)sc[is + 4] * (float)q3;
                yh[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

void bn_q6_k_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < n / BN_QK_K; i++, b += BN_Q6_K_BYTES) {
        const float *x = src + i * BN_QK_K;
        int8_t L[BN_QK_K];
        float scales[BN_QK_K / 16];
        float max_scale = 0.0f, max_abs_scale = 0.0f;
        for (int ib = 0; ib < BN_QK_K / 16; ib++) {
            const float s = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = s;
            if (fabsf(s) > max_abs_scale) {
                max_abs_scale = fabsf(s);
                max_scale = s;
            }
        }
        memset(b, 0, BN_Q6_K_BYTES);
        if (max_abs_scale < 1e-15f) continue; /* all zero: d = 0 */

        const float iscale = -128.0f / max_scale;
        bn_wr_u16(b + 208, bn_fp32_to_fp16(1.0f / iscale));
        int8_t *sc = (int8_t *)(b + 192);
        for (int ib = 0; ib < BN_QK_K / 16; ib++) {
            int v = nearest(iscale * scales[ib]);
            sc[ib] = (int8_t)(v > 127 ? 127 : v);
        }
        const float dd = bn_fp16_to_fp32(bn_rd_u16(b + 208));
        for (int j = 0; j < BN_QK_K / 16; j++) {
            const float d = dd * (float)sc[j];
            if (d == 0.0f) continue;
            for (int k = 0; k < 16; k++) {
                L[16 * j + k] = (int8_t)(clampi(nearest(x[16 * j + k] / d), -32, 31) + 32);
            }
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = b + 64 * h;
            uint8_t *qh = b + 128 + 32 * h;
            const int8_t *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0x0f) | ((Lh[l + 64] & 0x0f) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0x0f) | ((Lh[l + 96] & 0x0f) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                  ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}
