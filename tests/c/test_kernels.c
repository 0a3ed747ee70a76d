/* Kernels: activation quantization (ties to even), the ternary int8
 * matmuls against a pure-integer reference, agreement of the three ternary
 * types, the float matmuls against double precision, row ranges, and every
 * SIMD set against the reference. */
#include "dispatch.h"
#include "fmt.h"
#include "kernels.h"
#include "model.h"
#include "quant.h"
#include "test_util.h"

#include <stdint.h>

static uint64_t g_rng = 0x1234567887654321ull;
static uint64_t rnd_u64(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545f4914f6cdd1dull;
}
static float rnd_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((rnd_u64() >> 40) * (1.0 / 16777216.0));
}

static void test_quantize_act(const bn_kernels *k) {
    /* max |x| = 127 makes the scale exactly 1, so x * s are the ties. */
    const float x[] = {127.0f, 0.5f,   1.5f,    2.5f,  -0.5f,  -1.5f,
                       -2.5f,  126.5f, -126.5f, 3.49f, -127.0f};
    const int8_t want[] = {127, 0, 2, 2, 0, -2, -2, 126, -126, 3, -127};
    const int n = (int)(sizeof x / sizeof x[0]);
    int8_t q[16];
    const float s = k->quantize_act(x, n, q);
    CHECKF(s == 1.0f, "%s: scale %g", k->name, (double)s);
    for (int i = 0; i < n; i++)
        CHECKF(q[i] == want[i], "%s: q[%d] = %d, want %d", k->name, i, q[i], want[i]);
    /* Scale 127 / max: max 254 gives s = 0.5, ties at odd x. */
    const float y[] = {-254.0f, 1.0f, 3.0f, 5.0f, -7.0f, 253.0f};
    const int8_t wy[] = {-127, 0, 2, 2, -4, 126};
    const float sy = k->quantize_act(y, 6, q);
    CHECK(sy == 0.5f);
    for (int i = 0; i < 6; i++)
        CHECKF(q[i] == wy[i], "%s: y q[%d] = %d", k->name, i, q[i]);
    /* All zero: max clamped to 1e-5, q all zero. */
    const float z[300] = {0};
    int8_t qz[300];
    const float sz = k->quantize_act(z, 300, qz);
    CHECK(sz == 127.0f / 1e-5f);
    int nz = 0;
    for (int i = 0; i < 300; i++)
        nz += qz[i] != 0;
    CHECK(nz == 0);
    /* Random rows: q = round_half_even(x * s) within [-128, 127]. */
    float r[1000];
    int8_t qr[1000];
    for (int i = 0; i < 1000; i++)
        r[i] = rnd_uniform(-3, 3);
    const float sr = k->quantize_act(r, 1000, qr);
    float amax = 0;
    for (int i = 0; i < 1000; i++)
        amax = fmaxf(amax, fabsf(r[i]));
    CHECK(sr == 127.0f / amax);
    int bad = 0;
    for (int i = 0; i < 1000; i++)
        bad += qr[i] != (int8_t)nearbyintf(r[i] * sr);
    CHECK(bad == 0);
}

/* One ternary test case: a random ternary matrix and random activations,
 * packed as every ternary type. */
typedef struct {
    int64_t n_rows, n_cols, n_tok;
    int8_t *w;          /* [n_rows][n_cols] in {-1, 0, 1} */
    float *x;           /* [n_tok][n_cols] */
    int8_t *q;          /* quantized activations */
    float *act;         /* [n_tok] */
    int64_t *isum;      /* [n_tok][n_rows] exact integer sums */
    uint8_t *packed[3]; /* TQ1_0, TQ2_0, I2_S */
    size_t nbytes[3];
} tcase;

static const int k_tern[3] = {BN_TYPE_TQ1_0, BN_TYPE_TQ2_0, BN_TYPE_I2_S};
static const float k_wscale = 0.375f; /* f16-exact; a multiple of a power of two */

static void tcase_free(tcase *c) {
    free(c->w);
    free(c->x);
    free(c->q);
    free(c->act);
    free(c->isum);
    for (int i = 0; i < 3; i++)
        free(c->packed[i]);
}

static int tcase_make(tcase *c, int64_t n_rows, int64_t n_cols, int64_t n_tok) {
    memset(c, 0, sizeof *c);
    c->n_rows = n_rows;
    c->n_cols = n_cols;
    c->n_tok = n_tok;
    c->w = malloc((size_t)(n_rows * n_cols));
    c->x = malloc((size_t)(n_tok * n_cols) * sizeof(float));
    c->q = malloc((size_t)(n_tok * n_cols));
    c->act = malloc((size_t)n_tok * sizeof(float));
    c->isum = malloc((size_t)(n_tok * n_rows) * sizeof(int64_t));
    float *wf = malloc((size_t)(n_rows * n_cols) * sizeof(float));
    if (!c->w || !c->x || !c->q || !c->act || !c->isum || !wf) {
        free(wf);
        return 0;
    }
    for (int64_t i = 0; i < n_rows * n_cols; i++) {
        c->w[i] = (int8_t)((int)(rnd_u64() % 3) - 1);
        wf[i] = (float)c->w[i] * k_wscale;
    }
    /* Activations with extremes so that -128 and 127 appear in q. */
    for (int64_t i = 0; i < n_tok * n_cols; i++)
        c->x[i] = rnd_uniform(-2, 2);
    for (int64_t t = 0; t < n_tok; t++)
        c->x[t * n_cols] = -4.0f;
    const bn_kernels *ref = bn_kernels_reference();
    for (int64_t t = 0; t < n_tok; t++) {
        c->act[t] = ref->quantize_act(c->x + t * n_cols, n_cols, c->q + t * n_cols);
    }
    for (int64_t t = 0; t < n_tok; t++) {
        for (int64_t r = 0; r < n_rows; r++) {
            int64_t s = 0;
            for (int64_t k = 0; k < n_cols; k++)
                s += (int64_t)c->w[r * n_cols + k] * c->q[t * n_cols + k];
            c->isum[t * n_rows + r] = s;
        }
    }
    bn_error err;
    for (int i = 0; i < 3; i++) {
        c->nbytes[i] = bn_type_nbytes(k_tern[i], n_cols, n_rows, &err);
        c->packed[i] = malloc(c->nbytes[i]);
        if (!c->packed[i] ||
            bn_quantize(k_tern[i], wf, n_cols, n_rows, c->packed[i], c->nbytes[i], &err) != BN_OK) {
            free(wf);
            return 0;
        }
    }
    free(wf);
    return 1;
}

static bn_tensor tensor_of(const tcase *c, int i) {
    bn_tensor w;
    memset(&w, 0, sizeof w);
    w.type = k_tern[i];
    w.n_cols = c->n_cols;
    w.n_rows = c->n_rows;
    w.row_bytes = bn_row_bytes(w.type, c->n_cols);
    w.data = c->packed[i];
    w.scale = 1.0f;
    if (w.type == BN_TYPE_I2_S) {
        memcpy(&w.scale, c->packed[i] + (size_t)c->n_rows * w.row_bytes, 4);
    }
    w.name = bn_type_name(w.type);
    return w;
}

static void test_ternary(const bn_kernels *k, int64_t n_rows, int64_t n_cols, int64_t n_tok) {
    tcase c;
    if (!tcase_make(&c, n_rows, n_cols, n_tok)) {
        CHECK(0 && "setup failed");
        tcase_free(&c);
        return;
    }
    const int64_t stride = n_rows + 3; /* out rows are strided: padding must stay */
    float *out[3];
    for (int i = 0; i < 3; i++) {
        out[i] = malloc((size_t)(n_tok * stride) * sizeof(float));
        if (!out[i]) {
            CHECK(0 && "out of memory");
            return;
        }
        for (int64_t j = 0; j < n_tok * stride; j++)
            out[i][j] = -999.0f;
    }
    for (int i = 0; i < 3; i++) {
        const bn_tensor w = tensor_of(&c, i);
        CHECK(w.scale == (w.type == BN_TYPE_I2_S ? k_wscale : 1.0f));
        /* The reference dot: exact integer sums, block scales applied. */
        long bad = 0;
        for (int64_t t = 0; t < n_tok; t++) {
            for (int64_t r = 0; r < n_rows; r++) {
                const float got = bn_ref_dot_ternary(&w, r, c.q + t * n_cols);
                const float want = w.type == BN_TYPE_I2_S
                                       ? (float)c.isum[t * n_rows + r]
                                       : k_wscale * (float)c.isum[t * n_rows + r];
                bad += got != want;
            }
        }
        CHECKF(bad == 0, "%s: bn_ref_dot_ternary differs from the integer sums %ld times", w.name,
               bad);

        /* The kernel, split into two row ranges as a thread pool would. */
        const int64_t mid = n_rows / 3;
        k->matmul_i8[w.type](&w, c.q, c.act, n_tok, out[i], stride, 0, mid);
        k->matmul_i8[w.type](&w, c.q, c.act, n_tok, out[i], stride, mid, n_rows);
        bad = 0;
        for (int64_t t = 0; t < n_tok; t++) {
            for (int64_t r = 0; r < n_rows; r++) {
                const float want = k_wscale * (float)c.isum[t * n_rows + r] / c.act[t];
                bad += out[i][t * stride + r] != want;
            }
            for (int64_t r = n_rows; r < stride; r++)
                bad += out[i][t * stride + r] != -999.0f;
        }
        CHECKF(bad == 0, "%s/%s: matmul_i8 differs from the integer reference %ld times", k->name,
               w.name, bad);
    }
    /* All three types agree bit for bit. */
    CHECK(memcmp(out[0], out[1], (size_t)(n_tok * stride) * sizeof(float)) == 0);
    CHECK(memcmp(out[0], out[2], (size_t)(n_tok * stride) * sizeof(float)) == 0);
    for (int i = 0; i < 3; i++)
        free(out[i]);
    tcase_free(&c);
}

/* Per-block scales that differ: TQ blocks get their own d; the kernel must
 * give sum_b d_b * isum_b in block order, as bn_ref_dot_ternary does. */
static void test_ternary_block_scales(const bn_kernels *k, int64_t n_rows, int64_t n_tok) {
    const int64_t n_cols = 1024;
    float *wf = malloc((size_t)(n_rows * n_cols) * sizeof(float));
    float *x = malloc((size_t)(n_tok * n_cols) * sizeof(float));
    int8_t *q = malloc((size_t)(n_tok * n_cols));
    float *act = malloc((size_t)n_tok * sizeof(float));
    float *out = malloc((size_t)(n_tok * n_rows) * sizeof(float));
    uint8_t *buf = malloc((size_t)(n_rows * n_cols));
    if (!wf || !x || !q || !act || !out || !buf) {
        CHECK(0 && "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n_rows * n_cols; i++) {
        const float d = bn_fp16_to_fp32(bn_fp32_to_fp16(0.01f * (float)(1 + (i / 256) % 7)));
        wf[i] = (float)((int)(rnd_u64() % 3) - 1) * d;
    }
    for (int64_t i = 0; i < n_tok * n_cols; i++)
        x[i] = rnd_uniform(-1, 1);
    for (int64_t t = 0; t < n_tok; t++)
        act[t] = k->quantize_act(x + t * n_cols, n_cols, q + t * n_cols);
    for (int i = 0; i < 2; i++) {
        bn_error err;
        bn_tensor w = {k_tern[i], n_cols, n_rows, bn_row_bytes(k_tern[i], n_cols), buf, 0.5f,
                       "w",       0,      0};
        CHECK_OK(bn_quantize(w.type, wf, n_cols, n_rows, buf, (size_t)(n_rows * n_cols), &err),
                 &err);
        /* two row ranges, as a thread pool would split them */
        k->matmul_i8[w.type](&w, q, act, n_tok, out, n_rows, 0, 5);
        k->matmul_i8[w.type](&w, q, act, n_tok, out, n_rows, 5, n_rows);
        long bad = 0;
        for (int64_t t = 0; t < n_tok; t++) {
            for (int64_t r = 0; r < n_rows; r++) {
                const float want = bn_ref_dot_ternary(&w, r, q + t * n_cols) * 0.5f / act[t];
                bad += out[t * n_rows + r] != want;
            }
        }
        CHECKF(bad == 0, "%s/%s: block scales, %lld rows, %lld tokens: %ld differ", k->name,
               bn_type_name(w.type), (long long)n_rows, (long long)n_tok, bad);
    }
done:
    free(wf);
    free(x);
    free(q);
    free(act);
    free(out);
    free(buf);
}

/* Half the int8 quantization step of 256 activations (scale max|x| / 127). */
static double half_step(const float *x) {
    float amax = 0.0f;
    for (int i = 0; i < 256; i++) {
        const float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    return (double)amax / 127.0 * 0.5;
}

/* Float matmul of every type against double precision on the weights as
 * the type stores them. */
static void test_float(const bn_kernels *k, int type, int64_t n_rows, int64_t n_cols,
                       int64_t n_tok) {
    bn_error err;
    const size_t nb = bn_type_nbytes(type, n_cols, n_rows, &err);
    uint8_t *buf = malloc(nb);
    float *wf = malloc((size_t)(n_rows * n_cols) * sizeof(float));
    float *wd = malloc((size_t)(n_rows * n_cols) * sizeof(float));
    float *x = malloc((size_t)(n_tok * n_cols) * sizeof(float));
    float *out = malloc((size_t)(n_tok * n_rows) * sizeof(float));
    if (!buf || !wf || !wd || !x || !out) {
        CHECK(0 && "out of memory");
        goto done;
    }
    const int tern = bn_type_get(type)->is_ternary;
    for (int64_t i = 0; i < n_rows * n_cols; i++) {
        wf[i] = tern ? (float)((int)(rnd_u64() % 3) - 1) * 0.25f : rnd_uniform(-1, 1);
    }
    for (int64_t i = 0; i < n_tok * n_cols; i++)
        x[i] = rnd_uniform(-1, 1);
    CHECK_OK(bn_quantize(type, wf, n_cols, n_rows, buf, nb, &err), &err);
    CHECK_OK(bn_dequantize(type, buf, nb, n_cols, n_rows, wd, &err), &err);
    bn_tensor w = {type, n_cols, n_rows, bn_row_bytes(type, n_cols), buf, 1.0f, "w", 0, 0};
    if (type == BN_TYPE_I2_S) memcpy(&w.scale, buf + (size_t)n_rows * w.row_bytes, 4);
    CHECKF(k->matmul_f32[type] != NULL, "%s: no matmul_f32 for %s", k->name, bn_type_name(type));
    if (!k->matmul_f32[type]) goto done;
    k->matmul_f32[type](&w, x, n_tok, out, n_rows, 0, n_rows / 2);
    k->matmul_f32[type](&w, x, n_tok, out, n_rows, n_rows / 2, n_rows);
    long bad = 0;
    /* Sets that quantize the activations of this type to int8 per 256
     * columns: add half a quantization step times |w| per column. */
    const int q8 = (k->f32_int8_act >> type) & 1 && n_cols % 256 == 0;
    for (int64_t t = 0; t < n_tok; t++) {
        for (int64_t r = 0; r < n_rows; r++) {
            double s = 0, sa = 0, sq = 0;
            for (int64_t c = 0; c < n_cols; c++) {
                s += (double)wd[r * n_cols + c] * x[t * n_cols + c];
                sa += fabs((double)wd[r * n_cols + c] * x[t * n_cols + c]);
                if (q8 && c % 256 == 0) sq = half_step(x + t * n_cols + c);
                if (q8) sa += fabs((double)wd[r * n_cols + c]) * sq * 1e5;
            }
            const double e = fabs(out[t * n_rows + r] - s);
            if (e > 1e-5 * sa + 1e-6 && bad++ < 3) {
                fprintf(stderr, "%s/%s [%lld,%lld]: %g vs %g\n", k->name, bn_type_name(type),
                        (long long)t, (long long)r, (double)out[t * n_rows + r], s);
            }
        }
    }
    CHECKF(bad == 0, "%s/%s: %ld outputs off", k->name, bn_type_name(type), bad);
    /* A token's outputs must not depend on the batch it came in: batched
     * prefill and one-token decode give bit-identical logits. */
    float *one = malloc((size_t)n_rows * sizeof(float));
    long varies = 0;
    for (int64_t t = 0; one && t < n_tok; t++) {
        k->matmul_f32[type](&w, x + t * n_cols, 1, one, n_rows, 0, n_rows);
        for (int64_t r = 0; r < n_rows; r++)
            varies += memcmp(&one[r], &out[t * n_rows + r], sizeof(float)) != 0;
    }
    CHECKF(one && varies == 0, "%s/%s: %ld outputs differ between batch and single token", k->name,
           bn_type_name(type), varies);
    free(one);
done:
    free(buf);
    free(wf);
    free(wd);
    free(x);
    free(out);
}

/* A SIMD set against the reference: identical floats for the ternary
 * types, close for the float ones. */
static void test_against_reference(const bn_kernels *k) {
    const bn_kernels *ref = bn_kernels_reference();
    if (k == ref) return;
    float x[4000];
    int8_t q1[4000], q2[4000];
    for (int n = 1; n <= 4000; n = n * 3 + 7) {
        for (int i = 0; i < n; i++)
            x[i] = rnd_uniform(-5, 5);
        if (n > 3) x[2] = 0.5f * 127.0f / 5.0f; /* not a tie unless the max is 5 */
        const float s1 = ref->quantize_act(x, n, q1), s2 = k->quantize_act(x, n, q2);
        CHECKF(s1 == s2 && memcmp(q1, q2, (size_t)n) == 0, "%s: quantize_act differs at n=%d",
               k->name, n);
    }
    tcase c;
    if (!tcase_make(&c, 37, 2560, 5)) {
        CHECK(0 && "setup failed");
        tcase_free(&c);
        return;
    }
    float a[37 * 5], b[37 * 5];
    /* Any int8 activations, -128 included (quantize_act never makes it). */
    for (int64_t i = 0; i < 5 * 2560; i++)
        c.q[i] = (int8_t)(rnd_u64() >> 56);
    for (int64_t i = 0; i < 2560; i += 7)
        c.q[i] = -128;
    for (int i = 0; i < 3; i++) {
        const bn_tensor w = tensor_of(&c, i);
        if (!k->matmul_i8[w.type]) continue;
        ref->matmul_i8[w.type](&w, c.q, c.act, 5, a, 37, 0, 37);
        k->matmul_i8[w.type](&w, c.q, c.act, 5, b, 37, 0, 37);
        CHECKF(memcmp(a, b, sizeof a) == 0, "%s/%s: differs from the reference", k->name, w.name);
    }
    tcase_free(&c);
}

/* A set's repacked layout (bn_kernels.pack): the same floats as the
 * reference on the file layout, for any row split and token count, with
 * row counts that are not a multiple of the layout's row group. */
static void test_packed(const bn_kernels *k, int64_t n_rows, int64_t n_cols, int64_t n_tok) {
    if (!k->packed_size || !k->pack) return;
    /* The AVX-512 set takes its base-3 layout (80-row groups) on CPUs with
     * VBMI unless told not to, else R16 (16-row groups); the AVX2 set its
     * 8-row layout. */
    int expect_group = 0;
    if (strcmp(k->name, "avx512vnni") == 0) {
        const char *e = getenv("BITNET_TERNARY_LAYOUT");
        const int r16 = (e && strcmp(e, "r16") == 0) || !(bn_cpu_flags() & BN_CPU_AVX512VBMI);
        expect_group = r16 ? 16 : 80;
    } else if (strcmp(k->name, "avx2") == 0) {
        expect_group = 8;
    }
    const bn_kernels *ref = bn_kernels_reference();
    tcase c;
    if (!tcase_make(&c, n_rows, n_cols, n_tok)) {
        CHECK(0 && "setup failed");
        tcase_free(&c);
        return;
    }
    for (int64_t i = 0; i < n_tok * n_cols; i += 5)
        c.q[i] = (int8_t)(rnd_u64() >> 56); /* any int8, -128 included */
    c.q[0] = -128;
    const size_t n_out = (size_t)(n_tok * n_rows);
    float *want = malloc(n_out * sizeof(float)), *got = malloc(n_out * sizeof(float));
    /* Twice: with -128 in the activations, then without it (the base-3
     * decode has a faster path for activations that can all be negated). */
    for (int pass = 0; pass < 2 * 3 && want && got; pass++) {
        const int i = pass % 3;
        if (pass == 3) {
            for (int64_t j = 0; j < n_tok * n_cols; j++)
                c.q[j] = c.q[j] == -128 ? -127 : c.q[j];
        }
        bn_tensor w = tensor_of(&c, i);
        if (!k->matmul_i8[w.type]) continue;
        int layout = 0;
        const size_t bytes = k->packed_size(&w, &layout);
        /* the AVX-512 set and the AVX2 set (into its 8-row layout) repack
         * every ternary type at these sizes */
        CHECKF(bytes > 0, "%s/%s: %lldx%lld not packed", k->name, w.name, (long long)n_rows,
               (long long)n_cols);
        if (bytes == 0) continue;
        void *dst = bn_aligned_alloc(bytes);
        if (!dst) {
            CHECK(0 && "out of memory");
            continue;
        }
        ref->matmul_i8[w.type](&w, c.q, c.act, n_tok, want, n_rows, 0, n_rows);
        bn_tensor p = w;
        k->pack(&p, layout, dst);
        CHECK(p.layout != 0 && p.data == dst);
        if (expect_group) {
            CHECKF(p.row_group == expect_group, "%s/%s: row group %d, expected %d", k->name, w.name,
                   p.row_group, expect_group);
        }
        for (size_t j = 0; j < n_out; j++)
            got[j] = -999.0f;
        /* uneven row ranges, as several threads would split them */
        const int64_t cuts[4] = {0, n_rows / 3, n_rows / 3 + 17 < n_rows ? n_rows / 3 + 17 : n_rows,
                                 n_rows};
        for (int s = 0; s < 3; s++) {
            if (cuts[s] < cuts[s + 1]) {
                k->matmul_i8[w.type](&p, c.q, c.act, n_tok, got, n_rows, cuts[s], cuts[s + 1]);
            }
        }
        long bad = 0;
        for (size_t j = 0; j < n_out; j++)
            bad += memcmp(&got[j], &want[j], sizeof(float)) != 0;
        CHECKF(bad == 0, "%s/%s packed %lldx%lld, %lld tokens%s: %ld outputs differ", k->name,
               w.name, (long long)n_rows, (long long)n_cols, (long long)n_tok,
               pass < 3 ? " (-128 in q)" : "", bad);
        bn_aligned_free(dst);
    }
    free(want);
    free(got);
    tcase_free(&c);
}

/* Tensors that the base-3 layout cannot hold keep a 2-bit one: TQ blocks
 * with different scales, and a TQ2_0 / I2_S code 3 (read as +2). Either
 * way the results are the reference's. The AVX2 set's 8-row layout takes
 * them all. */
static void test_packed_fallback(const bn_kernels *k) {
    if (!k->packed_size || !k->pack) return;
    const int want_group = strcmp(k->name, "avx2") == 0 ? 8 : 16;
    const bn_kernels *ref = bn_kernels_reference();
    enum { R = 90, C = 512, T = 3 };
    float *wf = malloc(sizeof(float) * R * C), *x = malloc(sizeof(float) * T * C);
    uint8_t *buf = malloc((size_t)R * C);
    int8_t *q = malloc((size_t)T * C);
    float act[T], want[T * R], got[T * R];
    if (!wf || !x || !buf || !q) {
        CHECK(0 && "out of memory");
        goto done;
    }
    for (int i = 0; i < T * C; i++)
        x[i] = rnd_uniform(-1, 1);
    for (int t = 0; t < T; t++)
        act[t] = ref->quantize_act(x + t * C, C, q + t * C);
    for (int c = 0; c < 3; c++) {
        /* case 0: TQ2_0, block scales 0.25 and 0.5; 1: TQ1_0 likewise;
         * 2: TQ2_0 with one uniform scale and a code 3 written in */
        const int type = c == 1 ? BN_TYPE_TQ1_0 : BN_TYPE_TQ2_0;
        for (int i = 0; i < R * C; i++) {
            const float d = c < 2 && (i / 256) % 2 ? 0.5f : 0.25f;
            wf[i] = (float)((int)(rnd_u64() % 3) - 1) * d;
        }
        bn_error err;
        const size_t nbytes = bn_type_nbytes(type, C, R, &err);
        CHECK_OK(bn_quantize(type, wf, C, R, buf, nbytes, &err), &err);
        if (c == 2) buf[5 * bn_row_bytes(type, C) + 7] |= 0x0c; /* row 5: one field = 3 */
        bn_tensor w = {type, C, R, bn_row_bytes(type, C), buf, 1.0f, "w", 0, 0};
        ref->matmul_i8[type](&w, q, act, T, want, R, 0, R);
        int layout = 0;
        const size_t bytes = k->packed_size(&w, &layout);
        void *dst = bytes ? bn_aligned_alloc(bytes) : NULL;
        if (!dst) {
            CHECK(bytes == 0 || !"out of memory");
            continue;
        }
        bn_tensor p = w;
        k->pack(&p, layout, dst);
        CHECKF(p.row_group == want_group, "%s case %d: row group %d, expected %d", k->name, c,
               p.row_group, want_group);
        k->matmul_i8[type](&p, q, act, T, got, R, 0, 41);
        k->matmul_i8[type](&p, q, act, T, got, R, 41, R);
        CHECKF(memcmp(want, got, sizeof want) == 0, "%s case %d: packed results differ", k->name,
               c);
        /* one token (the decode path), over the same split */
        k->matmul_i8[type](&p, q, act, 1, got, R, 0, 41);
        k->matmul_i8[type](&p, q, act, 1, got, R, 41, R);
        CHECKF(memcmp(want, got, sizeof(float) * R) == 0, "%s case %d: one token differs", k->name,
               c);
        bn_aligned_free(dst);
    }
done:
    free(wf);
    free(x);
    free(buf);
    free(q);
}

/* Packed layouts at the extremes of their integer sums: TQ2_0 rows of all
 * code 3 (+2), all code 2 (+1) and all code 0 (-1), against activations of
 * all -128 and all 127 (int16 sums in the AVX2 set's 8-row layout). */
static void test_packed_extremes(const bn_kernels *k) {
    if (!k->packed_size || !k->pack) return;
    const bn_kernels *ref = bn_kernels_reference();
    enum { R = 11, C = 1024, T = 2 };
    static uint8_t buf[R * (C / 256) * BN_TQ2_0_BYTES];
    static int8_t q[T * C];
    const uint8_t fill[3] = {0xff, 0xaa, 0x00};
    for (int r = 0; r < R; r++) {
        for (int b = 0; b < C / 256; b++) {
            uint8_t *blk = buf + ((size_t)r * (C / 256) + (size_t)b) * BN_TQ2_0_BYTES;
            memset(blk, fill[r % 3], 64);
            blk[64] = 0x00, blk[65] = 0x3c; /* d = 1 */
        }
    }
    for (int i = 0; i < C; i++) {
        q[i] = -128;
        q[C + i] = 127;
    }
    const float act[T] = {1.0f, 2.0f};
    bn_tensor w = {BN_TYPE_TQ2_0, C, R, bn_row_bytes(BN_TYPE_TQ2_0, C), buf, 1.0f, "w", 0, 0};
    float want[T * R], got[T * R];
    ref->matmul_i8[BN_TYPE_TQ2_0](&w, q, act, T, want, R, 0, R);
    CHECK(want[0] == 2.0f * -128.0f * C); /* row 0: +2 everywhere */
    int layout = 0;
    const size_t bytes = k->packed_size(&w, &layout);
    void *dst = bytes ? bn_aligned_alloc(bytes) : NULL;
    if (!dst) {
        CHECK(bytes == 0 || !"out of memory");
        return;
    }
    bn_tensor p = w;
    k->pack(&p, layout, dst);
    for (int t = 1; t <= T; t++) {
        memset(got, 0, sizeof got);
        k->matmul_i8[BN_TYPE_TQ2_0](&p, q, act, t, got, R, 0, R);
        CHECKF(memcmp(want, got, sizeof(float) * (size_t)(t * R)) == 0,
               "%s: extreme sums differ (%d tokens)", k->name, t);
    }
    bn_aligned_free(dst);
}

/* Attention of one head and the FFN activation against the reference set
 * (float math in another order, a polynomial exp: relative 1e-5), over a
 * float32 and a half KV cache; the half conversion bit for bit. */
static void test_attn_act(const bn_kernels *k) {
    const bn_kernels *ref = bn_kernels_reference();
    enum { HD = 128, STRIDE = 640, NPOS = 77 };
    float *kc = malloc(sizeof(float) * STRIDE * NPOS), *vc = malloc(sizeof(float) * STRIDE * NPOS);
    float *kr = malloc(sizeof(float) * STRIDE * NPOS), *vr = malloc(sizeof(float) * STRIDE * NPOS);
    uint16_t *kh = malloc(sizeof(uint16_t) * STRIDE * NPOS);
    uint16_t *vh = malloc(sizeof(uint16_t) * STRIDE * NPOS);
    float q[HD], att[NPOS], o1[HD], o2[HD], g1[1000], g2[1000], u[1000];
    if (!kc || !vc || !kr || !vr || !kh || !vh) {
        CHECK(0 && "out of memory");
        goto done;
    }
    for (int i = 0; i < STRIDE * NPOS; i++) {
        kc[i] = rnd_uniform(-1, 1);
        vc[i] = rnd_uniform(-1, 1);
        kh[i] = bn_fp32_to_fp16(kc[i]);
        vh[i] = bn_fp32_to_fp16(vc[i]);
        kr[i] = bn_fp16_to_fp32(kh[i]);
        vr[i] = bn_fp16_to_fp32(vh[i]);
    }
    for (int i = 0; i < HD; i++)
        q[i] = rnd_uniform(-3, 3);
    for (int f16 = 0; f16 <= 1; f16++) {
        const void *K = f16 ? (const void *)(kh + 128) : (const void *)(kc + 128);
        const void *V = f16 ? (const void *)(vh + 128) : (const void *)(vc + 128);
        for (int n = 1; n <= NPOS; n += 19) {
            ref->attn_head(q, K, V, f16, STRIDE, n, HD, 0.088f, att, o1);
            if (f16) { /* the reference reads half as the floats it stands for */
                ref->attn_head(q, kr + 128, vr + 128, 0, STRIDE, n, HD, 0.088f, att, o2);
                CHECKF(memcmp(o1, o2, sizeof o1) == 0, "reference: half attention over %d", n);
            }
            k->attn_head(q, K, V, f16, STRIDE, n, HD, 0.088f, att, o2);
            int bad = 0;
            for (int i = 0; i < HD; i++)
                bad += fabsf(o1[i] - o2[i]) > 1e-5f * (1.0f + fabsf(o1[i]));
            CHECKF(bad == 0, "%s: attn_head (f16 %d) over %d positions: %d values off", k->name,
                   f16, n, bad);
            if (k->attn_head2) { /* two query heads of one KV head: as two calls */
                float q2[HD], att2[2 * NPOS], o3[HD], o4[HD], o5[HD];
                for (int e = 0; e < HD; e++)
                    q2[e] = rnd_uniform(-3, 3);
                ref->attn_head(q2, K, V, f16, STRIDE, n, HD, 0.088f, att, o3);
                k->attn_head2(q, q2, K, V, f16, STRIDE, n, HD, 0.088f, att2, o4, o5);
                bad = 0;
                for (int e = 0; e < HD; e++) {
                    bad += fabsf(o1[e] - o4[e]) > 1e-5f * (1.0f + fabsf(o1[e]));
                    bad += fabsf(o3[e] - o5[e]) > 1e-5f * (1.0f + fabsf(o3[e]));
                }
                CHECKF(bad == 0, "%s: attn_head2 (f16 %d) over %d positions: %d values off",
                       k->name, f16, n, bad);
            }
        }
    }
    { /* half stores: every set rounds as bn_fp32_to_fp16 (ties to even,
       * subnormals, overflow to inf); NaN stays NaN */
        enum { NX = 1000 };
        static const float special[] = {0.0f,       -0.0f,         1.0f,          65504.0f,
                                        65519.0f,   65520.0f,      -70000.0f,     5.96e-8f,
                                        2.98e-8f,   2.9802322e-8f, 6.1035156e-5f, 1.0009766f,
                                        1.0004883f, 1.0014648f,    INFINITY,      -INFINITY};
        float x[NX];
        uint16_t h1[NX], h2[NX];
        const int ns = (int)(sizeof special / sizeof special[0]);
        for (int i = 0; i < NX; i++) {
            x[i] =
                i < ns ? special[i] : rnd_uniform(-2, 2) * ldexpf(1.0f, (int)(rnd_u64() % 44) - 28);
        }
        x[NX - 1] = NAN;
        ref->to_f16(x, h1, NX);
        k->to_f16(x, h2, NX - 3); /* an odd length: the vector loop and its tail */
        k->to_f16(x + NX - 3, h2 + NX - 3, 3);
        int bad = 0;
        for (int i = 0; i < NX - 1; i++)
            bad += h1[i] != bn_fp32_to_fp16(x[i]) || h2[i] != h1[i];
        CHECKF(bad == 0, "%s: to_f16: %d values differ from bn_fp32_to_fp16", k->name, bad);
        CHECKF(isnan(bn_fp16_to_fp32(h2[NX - 1])), "%s: to_f16(NaN) is not NaN", k->name);
    }
    if (k->rmsnorm) { /* the same bits as bn_rmsnorm, tails and in place included */
        static const int64_t ns[] = {1, 7, 8, 15, 16, 17, 100, 2560, 6912, 6919};
        float x[6919], w[6919], n1[6919], n2[6919];
        for (int i = 0; i < 6919; i++) {
            x[i] = rnd_uniform(-4, 4) * (i % 13 == 0 ? 100.0f : 1.0f);
            w[i] = rnd_uniform(-2, 2);
        }
        for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
            const int64_t n = ns[c];
            bn_rmsnorm(n1, x, w, n, 1e-5f);
            k->rmsnorm(n2, x, w, n, 1e-5f);
            int bad = 0;
            for (int64_t i = 0; i < n; i++)
                bad += memcmp(&n1[i], &n2[i], sizeof(float)) != 0;
            memcpy(n2, x, (size_t)n * sizeof(float));
            k->rmsnorm(n2, n2, w, n, 1e-5f);
            for (int64_t i = 0; i < n; i++)
                bad += memcmp(&n1[i], &n2[i], sizeof(float)) != 0;
            CHECKF(bad == 0, "%s: rmsnorm of %lld values: %d differ from bn_rmsnorm", k->name,
                   (long long)n, bad);
        }
    }
    for (int relu2 = 0; relu2 < 2; relu2++) {
        for (int i = 0; i < 1000; i++) {
            g1[i] = g2[i] = rnd_uniform(-20, 20);
            u[i] = rnd_uniform(-2, 2);
        }
        g1[0] = g2[0] = -100.0f;
        ref->ffn_act(g1, u, 1000, relu2);
        k->ffn_act(g2, u, 1000, relu2);
        int bad = 0;
        for (int i = 0; i < 1000; i++)
            bad += fabsf(g1[i] - g2[i]) > 1e-5f * (1e-3f + fabsf(g1[i]));
        CHECKF(bad == 0, "%s: ffn_act (relu2 %d): %d values off", k->name, relu2, bad);
    }
done:
    free(kc);
    free(vc);
    free(kr);
    free(vr);
    free(kh);
    free(vh);
}

static void run_set(const bn_kernels *k) {
    printf("kernel set: %s\n", k->name);
    test_quantize_act(k);
    test_ternary(k, 13, 768, 3);
    test_ternary(k, 5, 2560, 67); /* more tokens than one tile */
    test_ternary(k, 64, 256, 1);
    test_ternary_block_scales(k, 9, 70);
    test_ternary_block_scales(k, 29, 1); /* decode, row ranges not a multiple of 8 */
    const int types[] = {BN_TYPE_F32,  BN_TYPE_F16,   BN_TYPE_BF16,  BN_TYPE_Q8_0, BN_TYPE_Q4_0,
                         BN_TYPE_Q6_K, BN_TYPE_TQ1_0, BN_TYPE_TQ2_0, BN_TYPE_I2_S};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        test_float(k, types[i], 7, 768, 3);
        test_float(k, types[i], 3, 256, 70);
    }
    test_float(k, BN_TYPE_F16, 4, 40, 2); /* rows shorter than a chunk */
    test_float(k, BN_TYPE_Q8_0, 4, 96, 2);
    test_float(k, BN_TYPE_F32, 2, 300, 1);    /* a partial last chunk */
    test_float(k, BN_TYPE_Q6_K, 37, 2560, 1); /* the head shapes */
    test_float(k, BN_TYPE_F16, 37, 2560, 1);
    test_float(k, BN_TYPE_Q4_0, 37, 2560, 2);
    test_float(k, BN_TYPE_F16, 5, 96, 1); /* decode path with a tail */
    test_float(k, BN_TYPE_Q8_0, 37, 2560, 5);
    test_against_reference(k);
    test_attn_act(k);
    test_packed(k, 16, 256, 1);
    test_packed(k, 37, 768, 1);
    test_packed(k, 50, 2560, 3);
    test_packed(k, 33, 512, 19);  /* two token tiles and a partial one */
    test_packed(k, 130, 1024, 9); /* more than one panel of row groups */
    test_packed(k, 245, 768, 1);  /* three 80-row groups and a partial one */
    test_packed(k, 245, 768, 11);
    test_packed_fallback(k);
    test_packed_extremes(k);
    if (strcmp(k->name, "avx512vnni") == 0 && (bn_cpu_flags() & BN_CPU_AVX512VBMI)) {
        /* the 2-bit layout, which CPUs without VBMI get */
        setenv("BITNET_TERNARY_LAYOUT", "r16", 1);
        test_packed(k, 37, 768, 1);
        test_packed(k, 33, 512, 19);
        test_packed(k, 130, 1024, 9);
        unsetenv("BITNET_TERNARY_LAYOUT");
    }
}

int main(void) {
    const bn_kernels *ref = bn_kernels_reference(), *best = bn_kernels_best();
    printf("cpu features: %s\nkernels: %s\nbuild: %s\n", bn_cpu_features(), bn_kernel_name(),
           bn_build_info());
    CHECK(bn_cpu_features() != NULL && bn_build_info()[0] != '\0');
    CHECK(strcmp(bn_kernel_name(), best->name) == 0);
    CHECK(bn_kernels_best() == best); /* chosen once */
    CHECK(strcmp(ref->name, "reference") == 0);
    run_set(ref);
#if defined(BN_HAVE_AVX2_KERNELS)
    const unsigned avx2 = BN_CPU_AVX2 | BN_CPU_FMA | BN_CPU_F16C;
    if (best != bn_kernels_avx2() && (bn_cpu_flags() & avx2) == avx2) run_set(bn_kernels_avx2());
#endif
    if (best != ref) run_set(best);
    return bn_test_finish("test_kernels");
}
