/* Tensor formats: half/bfloat16 conversions (exhaustive where cheap), the
 * type table, quantize/dequantize round trips, and hand-made blocks of every
 * layout we run, checked element by element against the layouts described
 * at the top of src/fmt_*.c. */
#include "fmt.h"
#include "quant.h"
#include "test_util.h"

#include <float.h>
#include <stdint.h>

/* ---- a small deterministic RNG (xorshift64*) ---- */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd_u64(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545f4914f6cdd1dull;
}
static uint32_t rnd_u32(void) { return (uint32_t)(rnd_u64() >> 32); }
static float rnd_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((rnd_u64() >> 40) * (1.0 / 16777216.0));
}
static int rnd_ternary(void) { return (int)(rnd_u32() % 3) - 1; }

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- straightforward references for the conversions ---- */

/* Half bits -> value, by the definition of binary16. */
static double ref_half_value(uint16_t h) {
    const int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0) {
        v = ldexp((double)m, -24);
    } else if (e == 31) {
        v = m ? NAN : INFINITY;
    } else {
        v = ldexp((double)(1024 + m), e - 25);
    }
    return sign ? -v : v;
}

/* Float -> half bits, round to nearest even, by scaling into units of the
 * destination's last place and rounding in double (exact for these ranges). */
static uint16_t ref_float_to_half(float f) {
    const uint16_t sign = (uint16_t)((f2u(f) >> 16) & 0x8000u);
    if (isnan(f)) return (uint16_t)(sign | 0x7e00u);
    double a = fabs((double)f);
    if (isinf(f)) return (uint16_t)(sign | 0x7c00u);
    if (a < ldexp(1.0, -14)) { /* subnormal range: units of 2^-24 */
        double r = nearbyint(a / ldexp(1.0, -24));
        return (uint16_t)(sign | (uint16_t)r); /* r == 1024 is the smallest normal */
    }
    int ex;
    frexp(a, &ex); /* a = m * 2^ex, m in [0.5, 1) */
    const int e = ex - 1;
    double r = nearbyint(a / ldexp(1.0, e - 10)); /* 1024..2048 */
    uint32_t bits = ((uint32_t)(e + 15) << 10) + (uint32_t)(r - 1024.0);
    if (bits >= 0x7c00u) bits = 0x7c00u;
    return (uint16_t)(sign | bits);
}

static uint16_t ref_float_to_bf16(float f) {
    const uint32_t u = f2u(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    if (isnan(f)) return (uint16_t)((u >> 16) | 0x40u);
    if (isinf(f) || f == 0.0f) return (uint16_t)(u >> 16);
    double a = fabs((double)f);
    int ex;
    frexp(a, &ex);
    int e = ex - 1;
    if (e < -126) e = -126;                      /* subnormals share the smallest exponent */
    double r = nearbyint(a / ldexp(1.0, e - 7)); /* units of the bf16 last place */
    double v = r * ldexp(1.0, e - 7);
    if (v >= ldexp(1.0, 128)) return (uint16_t)(sign | 0x7f80u);
    return (uint16_t)(sign | (f2u((float)v) >> 16));
}

static int half_check_one(float f, long *bad) {
    uint16_t got = bn_fp32_to_fp16(f), want = ref_float_to_half(f);
    int ok = isnan(f) ? ((got & 0x7c00u) == 0x7c00u && (got & 0x3ffu) &&
                         (got & 0x8000u) == (want & 0x8000u))
                      : got == want;
    if (!ok && (*bad)++ < 8) {
        fprintf(stderr, "fp32_to_fp16(%a = 0x%08x) = 0x%04x, want 0x%04x\n", (double)f, f2u(f), got,
                want);
    }
    return ok;
}

static void test_fp16(void) {
    /* Every half: decode against the definition, and round trip. */
    long bad_dec = 0, bad_rt = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = bn_fp16_to_fp32((uint16_t)h);
        const double want = ref_half_value((uint16_t)h);
        int ok;
        if (isnan(want)) {
            ok = isnan(f) && ((f2u(f) >> 31) == (h >> 15));
        } else {
            ok = (double)f == want && ((f2u(f) >> 31) == (h >> 15));
        }
        if (!ok && bad_dec++ < 8) fprintf(stderr, "fp16_to_fp32(0x%04x) = %a\n", h, (double)f);
        const uint16_t back = bn_fp32_to_fp16(f);
        const int rt_ok = isnan(want) ? ((back & 0x7c00u) == 0x7c00u && (back & 0x3ffu) &&
                                         (back >> 15) == (h >> 15))
                                      : back == h;
        if (!rt_ok && bad_rt++ < 8) fprintf(stderr, "fp16 round trip 0x%04x -> 0x%04x\n", h, back);
    }
    CHECKF(bad_dec == 0, "%ld halves decode wrongly", bad_dec);
    CHECKF(bad_rt == 0, "%ld halves do not round-trip", bad_rt);

    /* float -> half: every midpoint between adjacent halves and its
     * neighbours, every float in and around the subnormal range, random
     * floats, and every float when BN_TEST_EXHAUSTIVE is set. */
    long bad = 0, n = 0;
    for (uint32_t h = 0; h < 0x7c00u; h++) {
        const float lo = bn_fp16_to_fp32((uint16_t)h);
        const float hi = h + 1 < 0x7c00u ? bn_fp16_to_fp32((uint16_t)(h + 1)) : 65536.0f;
        const float mid = (float)(((double)lo + (double)hi) / 2); /* exact: 12 bits */
        const float cand[] = {lo,  nextafterf(lo, 0.0f),  nextafterf(lo, INFINITY),
                              mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY)};
        for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++) {
            half_check_one(cand[i], &bad);
            half_check_one(-cand[i], &bad);
            n += 2;
        }
    }
    for (uint32_t u = 0x32000000u; u < 0x39000000u; u++) {
        half_check_one(u2f(u), &bad);
        n++;
    }
    for (int i = 0; i < 4000000; i++) {
        half_check_one(u2f(rnd_u32()), &bad);
        n++;
    }
    const char *ex = getenv("BN_TEST_EXHAUSTIVE");
    if (ex && *ex == '1') {
        uint32_t u = 0;
        do {
            half_check_one(u2f(u), &bad);
            n++;
        } while (++u != 0);
    }
    CHECKF(bad == 0, "%ld of %ld floats convert to half wrongly", bad, n);
    /* The edges, spelled out. */
    CHECK(bn_fp32_to_fp16(65504.0f) == 0x7bffu);
    CHECK(bn_fp32_to_fp16(65519.996f) == 0x7bffu);
    CHECK(bn_fp32_to_fp16(65520.0f) == 0x7c00u);
    CHECK(bn_fp32_to_fp16(-INFINITY) == 0xfc00u);
    CHECK(bn_fp32_to_fp16(-0.0f) == 0x8000u);
    CHECK(bn_fp32_to_fp16(0x1p-24f) == 0x0001u);
    CHECK(bn_fp32_to_fp16(0x1p-25f) == 0x0000u);                   /* tie to even: 0 */
    CHECK(bn_fp32_to_fp16(nextafterf(0x1p-25f, 1.0f)) == 0x0001u); /* just above the tie */
    CHECK(bn_fp32_to_fp16(0x1.8p-24f) == 0x0002u);                 /* 1.5 units: to even 2 */
    CHECK(bn_fp32_to_fp16(0x1.ffcp-15f) == 0x0400u);               /* rounds up into the normals */
    CHECK(bn_fp32_to_fp16(1.0f + 0x1p-11f) == 0x3c00u);            /* tie to even */
    CHECK(bn_fp32_to_fp16(1.0f + 0x3p-11f) == 0x3c02u);            /* tie to even, upwards */
    CHECK(isnan(bn_fp16_to_fp32(bn_fp32_to_fp16(NAN))));
}

static void test_bf16(void) {
    long bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = bn_bf16_to_fp32((uint16_t)h);
        if (f2u(f) != h << 16 && bad++ < 8) fprintf(stderr, "bf16_to_fp32(0x%04x)\n", h);
        if (!isnan(f) && bn_fp32_to_bf16(f) != h && bad++ < 8) {
            fprintf(stderr, "bf16 round trip 0x%04x\n", h);
        }
    }
    for (int i = 0; i < 4000000; i++) {
        uint32_t u = rnd_u32();
        if (i & 1) u = (u & 0xffff0000u) | 0x8000u; /* exact ties */
        const float f = u2f(u);
        uint16_t got = bn_fp32_to_bf16(f), want = ref_float_to_bf16(f);
        if (got != want && bad++ < 8) {
            fprintf(stderr, "fp32_to_bf16(0x%08x) = 0x%04x, want 0x%04x\n", u, got, want);
        }
    }
    CHECKF(bad == 0, "%ld bf16 conversion errors", bad);
}

static void test_type_table(void) {
    /* Sizes of every ggml type (ggml-common.h structs, ggml.c type_traits). */
    static const struct {
        int type;
        int64_t bs;
        size_t ts;
    } want[] = {
        {BN_TYPE_F32, 1, 4},        {BN_TYPE_F16, 1, 2},        {BN_TYPE_Q4_0, 32, 18},
        {BN_TYPE_Q4_1, 32, 20},     {BN_TYPE_Q5_0, 32, 22},     {BN_TYPE_Q5_1, 32, 24},
        {BN_TYPE_Q8_0, 32, 34},     {BN_TYPE_Q8_1, 32, 36},     {BN_TYPE_Q2_K, 256, 84},
        {BN_TYPE_Q3_K, 256, 110},   {BN_TYPE_Q4_K, 256, 144},   {BN_TYPE_Q5_K, 256, 176},
        {BN_TYPE_Q6_K, 256, 210},   {BN_TYPE_Q8_K, 256, 292},   {BN_TYPE_IQ2_XXS, 256, 66},
        {BN_TYPE_IQ2_XS, 256, 74},  {BN_TYPE_IQ3_XXS, 256, 98}, {BN_TYPE_IQ1_S, 256, 50},
        {BN_TYPE_IQ4_NL, 32, 18},   {BN_TYPE_IQ3_S, 256, 110},  {BN_TYPE_IQ2_S, 256, 82},
        {BN_TYPE_IQ4_XS, 256, 136}, {BN_TYPE_I8, 1, 1},         {BN_TYPE_I16, 1, 2},
        {BN_TYPE_I32, 1, 4},        {BN_TYPE_I64, 1, 8},        {BN_TYPE_F64, 1, 8},
        {BN_TYPE_IQ1_M, 256, 56},   {BN_TYPE_BF16, 1, 2},       {BN_TYPE_TQ1_0, 256, 54},
        {BN_TYPE_TQ2_0, 256, 66},   {BN_TYPE_I2_S, 128, 32},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const bn_type_traits *t = bn_type_get(want[i].type);
        CHECKF(t && t->block_size == want[i].bs && t->type_size == want[i].ts, "type %d",
               want[i].type);
        if (t) CHECK(bn_type_from_name(t->name) == want[i].type);
    }
    CHECK(bn_type_get(4) == NULL && bn_type_get(37) == NULL && bn_type_get(-1) == NULL);
    CHECK(strcmp(bn_type_name(99), "unknown") == 0);
    CHECK(bn_type_from_name("TQ2_0") == BN_TYPE_TQ2_0);
    CHECK(bn_type_from_name("i2_s") == BN_TYPE_I2_S);
    CHECK(bn_type_from_name("q8") == -1 && bn_type_from_name("") == -1 &&
          bn_type_from_name(NULL) == -1);
    const int runnable[] = {BN_TYPE_F32,  BN_TYPE_F16,   BN_TYPE_BF16,  BN_TYPE_Q8_0, BN_TYPE_Q4_0,
                            BN_TYPE_Q6_K, BN_TYPE_TQ1_0, BN_TYPE_TQ2_0, BN_TYPE_I2_S};
    for (size_t i = 0; i < sizeof runnable / sizeof runnable[0]; i++) {
        const bn_type_traits *t = bn_type_get(runnable[i]);
        CHECKF(t->to_float && t->from_float, "%s lacks conversions", t->name);
    }
}

static void test_nbytes(void) {
    bn_error err;
    CHECK(bn_type_nbytes(BN_TYPE_F32, 7, 3, &err) == 84 && err.code == BN_OK);
    CHECK(bn_type_nbytes(BN_TYPE_Q8_0, 64, 2, &err) == 136);
    CHECK(bn_type_nbytes(BN_TYPE_Q6_K, 512, 3, &err) == 1260);
    CHECK(bn_type_nbytes(BN_TYPE_TQ1_0, 256, 1, &err) == 54);
    CHECK(bn_type_nbytes(BN_TYPE_TQ2_0, 768, 2, &err) == 396);
    /* I2_S: n_elements / 4 + 32, as bitnet.cpp's ggml_nbytes. */
    CHECK(bn_type_nbytes(BN_TYPE_I2_S, 2560, 640, &err) == 2560 * 640 / 4 + 32);
    CHECK(bn_type_nbytes(BN_TYPE_I2_S, 64, 4, &err) == 0 && err.code == BN_ERR_INVALID_ARG);
    CHECK(bn_type_nbytes(BN_TYPE_Q4_0, 33, 1, &err) == 0 && err.code == BN_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "33") != NULL);
    CHECK(bn_type_nbytes(BN_TYPE_F16, 0, 1, &err) == 0 && err.code == BN_ERR_INVALID_ARG);
    CHECK(bn_type_nbytes(BN_TYPE_F16, 8, -1, &err) == 0 && err.code == BN_ERR_INVALID_ARG);
    CHECK(bn_type_nbytes(5, 8, 1, &err) == 0 && err.code == BN_ERR_UNSUPPORTED);
    CHECK(bn_type_nbytes(BN_TYPE_F32, INT64_MAX, INT64_MAX, &err) == 0 &&
          err.code == BN_ERR_INVALID_ARG);
    CHECK(bn_type_nbytes(BN_TYPE_F32, 4, 4, NULL) == 64); /* err may be NULL */
    CHECK(bn_type_nbytes(BN_TYPE_F32, 3, 0, NULL) == 0);
}

static void test_api_errors(void) {
    bn_error err;
    float x[256] = {0}, y[256];
    uint8_t buf[512];
    CHECK(bn_quantize(BN_TYPE_Q4_1, x, 32, 1, buf, sizeof buf, &err) == BN_ERR_UNSUPPORTED);
    CHECK(bn_quantize(77, x, 32, 1, buf, sizeof buf, &err) == BN_ERR_UNSUPPORTED);
    CHECK(bn_quantize(BN_TYPE_Q8_0, x, 32, 1, buf, 33, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_quantize(BN_TYPE_Q8_0, x, 31, 1, buf, sizeof buf, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_quantize(BN_TYPE_Q8_0, NULL, 32, 1, buf, sizeof buf, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_quantize(BN_TYPE_I2_S, x, 128, 1, buf, 63, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_quantize(BN_TYPE_I2_S, x, 128, 1, buf, 64, &err) == BN_OK);
    CHECK(bn_dequantize(BN_TYPE_I2_S, buf, 63, 128, 1, y, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_dequantize(BN_TYPE_Q4_K, buf, sizeof buf, 256, 1, y, &err) == BN_ERR_UNSUPPORTED);
    CHECK(bn_dequantize(BN_TYPE_TQ2_0, buf, sizeof buf, 128, 1, y, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_dequantize(BN_TYPE_F32, buf, sizeof buf, 4, 1, NULL, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_quantize(BN_TYPE_F32, x, 4, 1, buf, sizeof buf, NULL) == BN_OK);

    float s;
    int8_t q[8];
    CHECK(bn_ternarize(x, 0, q, &s, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_ternarize(NULL, 4, q, &s, &err) == BN_ERR_INVALID_ARG);
    CHECK(bn_ternarize(x, 4, q, NULL, &err) == BN_ERR_INVALID_ARG);
}

static void test_ternarize(void) {
    bn_error err;
    /* mean |w| = 1: q = round_half_even(w), clamped. */
    const float w[8] = {0.5f, -0.5f, 1.5f, -2.0f, 0.49f, 1.0f, -0.51f, 2.0f};
    /* sum |w| = 8.49 -> not 1; pick the scale from the data instead. */
    int8_t q[8];
    float s = 0;
    CHECK_OK(bn_ternarize(w, 8, q, &s, &err), &err);
    double mean = 0;
    for (int i = 0; i < 8; i++)
        mean += fabs((double)w[i]);
    mean /= 8;
    CHECK(s == (float)mean);
    for (int i = 0; i < 8; i++) {
        float v = nearbyintf(w[i] / s);
        int want = v > 1 ? 1 : v < -1 ? -1 : (int)v;
        CHECKF(q[i] == want, "q[%d] = %d, want %d", i, q[i], want);
    }
    /* Exact ties: w / s = +-0.5 and +-1.5 with s = 1. */
    const float t[4] = {0.5f, -0.5f, 1.5f, -1.5f};
    CHECK_OK(bn_ternarize(t, 4, q, &s, &err), &err);
    CHECK(s == 1.0f && q[0] == 0 && q[1] == 0 && q[2] == 1 && q[3] == -1);
    /* All zero: the scale is clamped to 1e-5 and q is 0. */
    const float z[3] = {0, 0, 0};
    CHECK_OK(bn_ternarize(z, 3, q, &s, &err), &err);
    CHECK(s == 1e-5f && q[0] == 0 && q[1] == 0 && q[2] == 0);
    CHECK_OK(bn_ternarize(z, 3, NULL, &s, &err), &err);
}

/* Quantize ternary * scale, dequantize, expect the exact input back; also
 * check that the blocks hold the expected codes through the unpackers. */
static void test_ternary_roundtrip(int type, int64_t n_cols, int64_t n_rows) {
    bn_error err;
    const int64_t n = n_cols * n_rows;
    const float scale = bn_fp16_to_fp32(bn_fp32_to_fp16(0.0123f)); /* f16-representable */
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    int8_t *t = malloc((size_t)n);
    size_t nb = bn_type_nbytes(type, n_cols, n_rows, &err);
    uint8_t *buf = malloc(nb);
    if (!x || !y || !t || !buf) {
        CHECK(0 && "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        t[i] = (int8_t)rnd_ternary();
        x[i] = (float)t[i] * scale;
    }
    /* A block (TQ) / the tensor (I2_S) of zeros must survive too. */
    const int bs = type == BN_TYPE_I2_S ? 128 : 256;
    for (int i = 0; i < bs; i++) {
        t[i] = 0;
        x[i] = 0.0f;
    }
    CHECK_OK(bn_quantize(type, x, n_cols, n_rows, buf, nb, &err), &err);
    CHECK_OK(bn_dequantize(type, buf, nb, n_cols, n_rows, y, &err), &err);
    long bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += f2u(x[i]) != f2u(y[i]) && x[i] != y[i];
    CHECKF(bad == 0, "%s: %ld values differ after the round trip", bn_type_name(type), bad);

    /* Codes through the unpackers. */
    const size_t row_bytes = bn_row_bytes(type, n_cols);
    int8_t q[256];
    bad = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        for (int64_t b = 0; b < n_cols / bs; b++) {
            const uint8_t *blk = buf + r * row_bytes + b * (row_bytes / (size_t)(n_cols / bs));
            float d = 1.0f;
            if (type == BN_TYPE_TQ1_0) d = bn_tq1_0_unpack(blk, q);
            if (type == BN_TYPE_TQ2_0) d = bn_tq2_0_unpack(blk, q);
            if (type == BN_TYPE_I2_S) bn_i2_s_unpack(blk, q);
            int any = 0;
            for (int j = 0; j < bs; j++) {
                bad += q[j] != t[r * n_cols + b * bs + j];
                any |= t[r * n_cols + b * bs + j] != 0;
            }
            if (type != BN_TYPE_I2_S) bad += d != (any ? scale : 0.0f);
        }
    }
    CHECKF(bad == 0, "%s: %ld codes differ", bn_type_name(type), bad);
    if (type == BN_TYPE_I2_S) {
        float s;
        memcpy(&s, buf + n_rows * row_bytes, 4);
        CHECK(s == scale);
        int pad_zero = 1;
        for (int i = 4; i < 32; i++)
            pad_zero &= buf[n_rows * row_bytes + (size_t)i] == 0;
        CHECK(pad_zero);
    }
done:
    free(x);
    free(y);
    free(t);
    free(buf);
}

/* Lossy types: quantize random data and bound the error per block. */
static void test_lossy(int type, float bound_frac, float rms_frac) {
    bn_error err;
    const int64_t n_cols = 512, n_rows = 6, n = n_cols * n_rows;
    float x[512 * 6], y[512 * 6];
    uint8_t buf[8192];
    for (int64_t i = 0; i < n; i++) {
        /* varied magnitudes per row, and one row with outliers */
        float mag = (float)(1 + (i / n_cols)) * 0.3f;
        x[i] = rnd_uniform(-mag, mag);
        if (i / n_cols == 5 && i % 97 == 0) x[i] *= 20.0f;
    }
    for (int i = 64; i < 96; i++)
        x[i] = 0.0f; /* an all-zero block */
    size_t nb = bn_type_nbytes(type, n_cols, n_rows, &err);
    CHECK(nb > 0 && nb <= sizeof buf);
    CHECK_OK(bn_quantize(type, x, n_cols, n_rows, buf, sizeof buf, &err), &err);
    CHECK_OK(bn_dequantize(type, buf, nb, n_cols, n_rows, y, &err), &err);
    const int bs = (int)bn_type_get(type)->block_size;
    long bad = 0;
    double se = 0, sx = 0;
    for (int64_t b0 = 0; b0 < n; b0 += bs) {
        float amax = 0;
        for (int j = 0; j < bs; j++)
            amax = fmaxf(amax, fabsf(x[b0 + j]));
        for (int j = 0; j < bs; j++) {
            const float e = fabsf(x[b0 + j] - y[b0 + j]);
            se += (double)e * e;
            sx += (double)x[b0 + j] * x[b0 + j];
            if (e > bound_frac * amax && bad++ < 5) {
                fprintf(stderr, "%s: x[%lld] = %g -> %g (block max %g)\n", bn_type_name(type),
                        (long long)(b0 + j), (double)x[b0 + j], (double)y[b0 + j], (double)amax);
            }
        }
    }
    CHECKF(bad == 0, "%s: %ld values beyond %g of their block's max", bn_type_name(type), bad,
           (double)bound_frac);
    const double rel = sqrt(se / sx);
    CHECKF(rel < rms_frac, "%s: relative rms error %g", bn_type_name(type), rel);
    for (int i = 64; i < 96; i++)
        CHECK(y[i] == 0.0f);
}

static void test_float_types(void) {
    bn_error err;
    float x[64], y[64];
    uint8_t buf[256];
    for (int i = 0; i < 64; i++)
        x[i] = rnd_uniform(-100, 100);
    CHECK_OK(bn_quantize(BN_TYPE_F32, x, 16, 4, buf, sizeof buf, &err), &err);
    CHECK_OK(bn_dequantize(BN_TYPE_F32, buf, 256, 16, 4, y, &err), &err);
    CHECK(memcmp(x, y, sizeof x) == 0);
    CHECK_OK(bn_quantize(BN_TYPE_F16, x, 64, 1, buf, sizeof buf, &err), &err);
    CHECK_OK(bn_dequantize(BN_TYPE_F16, buf, 128, 64, 1, y, &err), &err);
    int ok = 1;
    for (int i = 0; i < 64; i++) {
        ok &= bn_rd_u16(buf + 2 * i) == bn_fp32_to_fp16(x[i]);
        ok &= y[i] == bn_fp16_to_fp32(bn_fp32_to_fp16(x[i]));
    }
    CHECK(ok);
    CHECK_OK(bn_quantize(BN_TYPE_BF16, x, 64, 1, buf, sizeof buf, &err), &err);
    CHECK_OK(bn_dequantize(BN_TYPE_BF16, buf, 128, 64, 1, y, &err), &err);
    ok = 1;
    for (int i = 0; i < 64; i++)
        ok &= y[i] == bn_bf16_to_fp32(bn_fp32_to_bf16(x[i]));
    CHECK(ok);
}

/* ---- hand-made blocks, one per layout ---- */

static void test_hand_q8_0(void) {
    uint8_t b[34];
    bn_wr_u16(b, 0x3800); /* d = 0.5 */
    for (int j = 0; j < 32; j++)
        b[2 + j] = (uint8_t)(int8_t)(j * 8 - 128);
    float y[32];
    bn_q8_0_to_float(b, y, 32);
    int ok = 1;
    for (int j = 0; j < 32; j++)
        ok &= y[j] == (float)(j * 8 - 128) * 0.5f;
    CHECK(ok);
    /* Quantizing: max 127 gives d = 1 and the integers back. */
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j * 8 - 121);
    x[0] = -127.0f;
    x[5] = 2.5f; /* ties round away from zero: 3 (ggml's roundf) */
    x[6] = -2.5f;
    uint8_t q[34];
    bn_q8_0_from_float(x, q, 32);
    CHECK(bn_rd_u16(q) == 0x3c00);
    CHECK((int8_t)q[2] == -127 && (int8_t)q[7] == 3 && (int8_t)q[8] == -3);
    CHECK((int8_t)q[2 + 31] == 127);
}

static void test_hand_q4_0(void) {
    uint8_t b[18];
    bn_wr_u16(b, 0x4000); /* d = 2 */
    for (int j = 0; j < 16; j++)
        b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    bn_q4_0_to_float(b, y, 32);
    int ok = 1;
    for (int j = 0; j < 16; j++) {
        ok &= y[j] == (float)(j - 8) * 2.0f;      /* low nibbles: elements 0..15 */
        ok &= y[j + 16] == (float)(7 - j) * 2.0f; /* high nibbles: 16..31 */
    }
    CHECK(ok);
    /* Quantizing: the largest |x| is -16 at element 3: d = -16 / -8 = 2. */
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)((j % 15) - 7);
    x[3] = -16.0f;
    x[20] = 16.0f; /* same |x| later: the first one sets the sign of d */
    uint8_t q[18];
    bn_q4_0_from_float(x, q, 32);
    CHECK(bn_rd_u16(q) == 0x4000);
    /* element 3: -16 / 2 = -8 -> nibble 0; element 20: +8 -> 16, clamped 15 */
    CHECK((q[2 + 3] & 0x0f) == 0 && (q[2 + 4] >> 4) == 15);
    /* element 0: -7 / 2 = -3.5 -> trunc(-3.5 + 8.5) = 5 */
    CHECK((q[2] & 0x0f) == 5);
}

static void test_hand_q6_k(void) {
    uint8_t b[210];
    memset(b, 0, sizeof b);
    bn_wr_u16(b + 208, 0x3c00); /* d = 1 */
    int8_t *sc = (int8_t *)(b + 192);
    for (int i = 0; i < 16; i++)
        sc[i] = 1;
    sc[1] = 2;          /* elements 16..31 */
    sc[8] = -1;         /* elements 128..143 */
    b[0] = 0x21;        /* ql[0]: element 0 low nibble 1, element 64 high nibble 2 */
    b[32 + 5] = 0x03;   /* ql[37]: element 37 low nibble 3 */
    b[128 + 0] = 0x40;  /* qh[0] bits 6-7 = 1: element 96 gets 16 */
    b[128 + 1] = 0x0b;  /* qh[1]: element 1 high bits 3, element 33 high bits 2 */
    b[64] = 0x0f;       /* second half, ql[64]: element 128 low nibble 15 */
    b[64 + 40] = 0x70;  /* second half, ql[104]: element 128 + 96 + 8 high nibble 7 */
    b[160 + 20] = 0x30; /* second half, qh[20] bits 4-5 = 3: element 128 + 64 + 20 */
    float y[256];
    bn_q6_k_to_float(b, y, 256);
    float want[256];
    for (int e = 0; e < 256; e++)
        want[e] = -32.0f * (float)sc[e / 16];
    want[0] = -31;
    want[64] = -30;
    want[37] = -29;
    want[96] = 16 - 32;
    want[1] = (float)(48 - 32);
    want[33] = (float)(32 - 32);
    want[128] = (float)(15 - 32) * -1.0f;
    want[128 + 96 + 8] = (float)(7 - 32) * 1.0f;
    want[128 + 64 + 20] = (float)(48 - 32) * 1.0f;
    int bad = 0;
    for (int e = 0; e < 256; e++) {
        if (y[e] != want[e] && bad++ < 5) {
            fprintf(stderr, "q6_k element %d: %g, want %g\n", e, (double)y[e], (double)want[e]);
        }
    }
    CHECK(bad == 0);
    /* The quantizer writes a layout that this decoder reads back: values
     * that are exact multiples of a common step survive closely. */
    float x[256], z[256];
    for (int e = 0; e < 256; e++)
        x[e] = (float)((e * 7) % 63 - 31) * 0.25f;
    uint8_t q[210];
    bn_q6_k_from_float(x, q, 256);
    bn_q6_k_to_float(q, z, 256);
    float maxerr = 0;
    for (int e = 0; e < 256; e++)
        maxerr = fmaxf(maxerr, fabsf(x[e] - z[e]));
    CHECKF(maxerr < 0.13f, "q6_k max error %g", (double)maxerr);
}

static void test_hand_tq2_0(void) {
    uint8_t b[66];
    memset(b, 0x55, 64); /* every code 1: zero */
    b[0] = 0x92;         /* codes (bits 0-1..6-7) 2, 0, 1, 2: elements 0, 32, 64, 96 */
    b[33] = 0x54;        /* byte 1 of the second run, bits 0-1 = 0: element 129 */
    bn_wr_u16(b + 64, 0x3c00);
    float y[256];
    bn_tq2_0_to_float(b, y, 256);
    float want[256] = {0};
    want[0] = 1;
    want[32] = -1;
    want[64] = 0;
    want[96] = 1;
    want[129] = -1;
    CHECK(memcmp(y, want, sizeof y) == 0);
    uint8_t q[66];
    bn_tq2_0_from_float(want, q, 256);
    CHECK(memcmp(q, b, 66) == 0);
}

static void test_hand_tq1_0(void) {
    uint8_t b[54];
    memset(b, 128, 48);        /* digits 1,1,1,1,1 (121): ceil(121 * 256 / 243) = 128 */
    memset(b + 48, 127, 4);    /* digits 1,1,1,1 and a 0 (120): 127 */
    b[0] = 205;                /* digits 2,1,0,1,2 (194): elements 0,32,64,96,128 */
    b[32 + 3] = 43;            /* digits 0,1,1,1,1 (40): element 160 + 3 is -1 */
    b[48 + 2] = 184;           /* digits 2,0,1,1 (174): elements 242, 246, 250, 254 */
    bn_wr_u16(b + 52, 0x4000); /* d = 2 */
    float y[256];
    bn_tq1_0_to_float(b, y, 256);
    float want[256] = {0};
    want[0] = 2;
    want[32] = 0;
    want[64] = -2;
    want[96] = 0;
    want[128] = 2;
    want[163] = -2;
    want[242] = 2;
    want[246] = -2;
    int bad = 0;
    for (int e = 0; e < 256; e++) {
        if (y[e] != want[e] && bad++ < 5) {
            fprintf(stderr, "tq1_0 element %d: %g, want %g\n", e, (double)y[e], (double)want[e]);
        }
    }
    CHECK(bad == 0);
    uint8_t q[54];
    bn_tq1_0_from_float(want, q, 256);
    CHECK(memcmp(q, b, 54) == 0);
    /* Every byte value decodes to digits that re-encode to the same byte
     * whenever it is a canonical encoding. */
    int8_t t[256];
    for (int v = 0; v < 243; v++) {
        uint8_t blk[54];
        memset(blk, 0, sizeof blk);
        blk[0] = (uint8_t)((v * 256 + 242) / 243);
        bn_tq1_0_unpack(blk, t);
        int digits = 0;
        for (int k = 0; k < 5; k++)
            digits = digits * 3 + (t[32 * k] + 1);
        CHECKF(digits == v, "tq1_0 byte for %d decodes to %d", v, digits);
        if (digits != v) break;
    }
}

static void test_hand_i2_s(void) {
    /* 2 rows of 128: row 0 has a hand-made byte 0, row 1 all codes 1 (0). */
    uint8_t b[2 * 32 + 32];
    memset(b, 0x55, 64);
    b[0] = 0x86;       /* 10 00 01 10: elements 0 (+1), 32 (-1), 64 (0), 96 (+1) */
    b[5] = 0x15;       /* 00 01 01 01: element 5 is -1 */
    b[32 + 31] = 0x95; /* row 1, byte 31: 10 01 01 01: element 31 of row 1 is +1 */
    const float scale = 0.5f;
    memset(b + 64, 0, 32);
    memcpy(b + 64, &scale, 4);
    float y[256];
    bn_error err;
    CHECK_OK(bn_dequantize(BN_TYPE_I2_S, b, sizeof b, 128, 2, y, &err), &err);
    float want[256] = {0};
    want[0] = 0.5f;
    want[32] = -0.5f;
    want[96] = 0.5f;
    want[5] = -0.5f;
    want[128 + 31] = 0.5f;
    CHECK(memcmp(y, want, sizeof y) == 0);
    uint8_t q[96];
    CHECK_OK(bn_quantize(BN_TYPE_I2_S, want, 128, 2, q, sizeof q, &err), &err);
    CHECK(memcmp(q, b, sizeof b) == 0);
    /* |x| < 1e-6 is 0, anything else its sign (quantize_i2_s). */
    float x[128] = {0};
    x[0] = 5e-7f;
    x[1] = -2e-6f;
    x[2] = 3.0f;
    uint8_t r[32];
    bn_i2_s_from_float(x, r, 128);
    CHECK(((r[0] >> 6) & 3) == 1 && ((r[1] >> 6) & 3) == 0 && ((r[2] >> 6) & 3) == 2);
}

int main(void) {
    test_fp16();
    test_bf16();
    test_type_table();
    test_nbytes();
    test_api_errors();
    test_ternarize();
    test_ternary_roundtrip(BN_TYPE_TQ1_0, 768, 5);
    test_ternary_roundtrip(BN_TYPE_TQ2_0, 768, 5);
    test_ternary_roundtrip(BN_TYPE_I2_S, 640, 7);
    test_lossy(BN_TYPE_Q8_0, 0.0061f, 0.01f);
    test_lossy(BN_TYPE_Q4_0, 0.13f, 0.25f);
    test_lossy(BN_TYPE_Q6_K, 0.05f, 0.03f);
    test_float_types();
    test_hand_q8_0();
    test_hand_q4_0();
    test_hand_q6_k();
    test_hand_tq2_0();
    test_hand_tq1_0();
    test_hand_i2_s();
    return bn_test_finish("test_formats");
}
