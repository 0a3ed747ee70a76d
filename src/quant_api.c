/* Public quantization entry points: whole tensors of rows in and out of the
 * types in quant.h, plus BitNet's absmean ternarization. I2_S keeps one
 * scale per tensor after the packed rows, so it is handled here rather than
 * by the per-row conversions. */
#include "fmt.h"
#include "quant.h"

#include <math.h>

static bn_status check_type(int type, int to_float, const bn_type_traits **out, bn_error *err) {
    const bn_type_traits *t = bn_type_get(type);
    if (!t) return bn_fail(err, BN_ERR_UNSUPPORTED, "unknown tensor type %d", type);
    if (to_float ? !t->to_float : !t->from_float) {
        return bn_fail(err, BN_ERR_UNSUPPORTED, "type %s has no %s", t->name,
                       to_float ? "dequantization" : "quantization");
    }
    *out = t;
    return BN_OK;
}

bn_status bn_quantize(int type, const float *src, int64_t n_cols, int64_t n_rows, void *dst,
                      size_t dst_size, bn_error *err) {
    const bn_type_traits *t = NULL;
    bn_status st = check_type(type, 0, &t, err);
    if (st != BN_OK) return st;
    if (!src || !dst) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_quantize: NULL buffer");
    size_t need = bn_type_nbytes(type, n_cols, n_rows, err);
    if (need == 0) return err ? err->code : BN_ERR_INVALID_ARG;
    if (dst_size < need) {
        return bn_fail(err, BN_ERR_INVALID_ARG,
                       "bn_quantize: %s tensor of %lld x %lld needs %zu bytes, got %zu", t->name,
                       (long long)n_cols, (long long)n_rows, need, dst_size);
    }
    const size_t row_bytes = bn_row_bytes(type, n_cols);
    uint8_t *out = dst;
    for (int64_t r = 0; r < n_rows; r++) {
        t->from_float(src + r * n_cols, out + (size_t)r * row_bytes, n_cols);
    }
    if (type == BN_TYPE_I2_S) {
        /* One scale for the tensor: max |x|, as quantize_i2_s takes it. */
        float amax = 0.0f;
        const int64_t n = n_cols * n_rows; /* fits: bn_type_nbytes checked it */
        for (int64_t i = 0; i < n; i++)
            amax = fmaxf(amax, fabsf(src[i]));
        uint8_t *tail = out + (size_t)n_rows * row_bytes;
        memset(tail, 0, BN_I2_S_EXTRA);
        memcpy(tail, &amax, sizeof amax);
    }
    return bn_ok(err);
}

bn_status bn_dequantize(int type, const void *src, size_t src_size, int64_t n_cols, int64_t n_rows,
                        float *dst, bn_error *err) {
    const bn_type_traits *t = NULL;
    bn_status st = check_type(type, 1, &t, err);
    if (st != BN_OK) return st;
    if (!src || !dst) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_dequantize: NULL buffer");
    size_t need = bn_type_nbytes(type, n_cols, n_rows, err);
    if (need == 0) return err ? err->code : BN_ERR_INVALID_ARG;
    if (src_size < need) {
        return bn_fail(err, BN_ERR_INVALID_ARG,
                       "bn_dequantize: %s tensor of %lld x %lld needs %zu bytes, got %zu", t->name,
                       (long long)n_cols, (long long)n_rows, need, src_size);
    }
    const size_t row_bytes = bn_row_bytes(type, n_cols);
    const uint8_t *in = src;
    for (int64_t r = 0; r < n_rows; r++) {
        t->to_float(in + (size_t)r * row_bytes, dst + r * n_cols, n_cols);
    }
    if (type == BN_TYPE_I2_S) {
        float scale;
        memcpy(&scale, in + (size_t)n_rows * row_bytes, sizeof scale);
        const int64_t n = n_cols * n_rows;
        for (int64_t i = 0; i < n; i++)
            dst[i] *= scale;
    }
    return bn_ok(err);
}

bn_status bn_ternarize(const float *w, int64_t n, int8_t *q, float *scale, bn_error *err) {
    if (!w || !scale) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_ternarize: NULL argument");
    if (n <= 0) return bn_fail(err, BN_ERR_INVALID_ARG, "bn_ternarize: n = %lld", (long long)n);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += fabs((double)w[i]);
    float s = (float)(sum / (double)n);
    if (!(s >= 1e-5f)) s = 1e-5f; /* also catches NaN */
    if (q) {
        for (int64_t i = 0; i < n; i++) {
            /* round half to even, as torch.round */
            float v = nearbyintf(w[i] / s);
            q[i] = (int8_t)(v > 1.0f ? 1 : v < -1.0f ? -1 : v == v ? (int)v : 0);
        }
    }
    *scale = s;
    return bn_ok(err);
}
