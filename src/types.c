/* The table of ggml tensor types: block sizes and bytes per block for every
 * id a GGUF file may carry, so that the reader can check any file's tensor
 * sizes. Conversion functions are filled for the types we run; they live in
 * fmt_<type>.c beside their block layouts.
 *
 * Sizes checked against ggml-org/llama.cpp ggml/src/ggml-common.h (the
 * block_* structs and their static_asserts) and ggml.c's type_traits
 * (blck_size, type_size = sizeof(block_*)); I2_S against microsoft/BitNet's
 * llama.cpp fork (ggml.c type_traits and ggml_nbytes). gguf-py's
 * GGML_QUANT_SIZES lists Q8_1 as 40 bytes (float d and s, an old layout);
 * ggml's block_q8_1 is two halves and 32 quants, 36 bytes. Q8_1 and Q8_K
 * are ggml's internal activation types and do not appear in model files. */
#include "quant.h"

#include "fmt.h"

#include <ctype.h>

#define QK_K 256

static const bn_type_traits k_types[] = {
    {BN_TYPE_F32, "f32", 1, 4, 0, 0, bn_f32_to_float, bn_f32_from_float},
    {BN_TYPE_F16, "f16", 1, 2, 0, 0, bn_f16_to_float, bn_f16_from_float},
    {BN_TYPE_Q4_0, "q4_0", 32, 18, 0, 0, bn_q4_0_to_float, bn_q4_0_from_float},
    {BN_TYPE_Q4_1, "q4_1", 32, 20, 0, 0, NULL, NULL},
    {BN_TYPE_Q5_0, "q5_0", 32, 22, 0, 0, NULL, NULL},
    {BN_TYPE_Q5_1, "q5_1", 32, 24, 0, 0, NULL, NULL},
    {BN_TYPE_Q8_0, "q8_0", 32, 34, 0, 0, bn_q8_0_to_float, bn_q8_0_from_float},
    {BN_TYPE_Q8_1, "q8_1", 32, 36, 0, 0, NULL, NULL},
    {BN_TYPE_Q2_K, "q2_k", QK_K, 84, 0, 0, NULL, NULL},
    {BN_TYPE_Q3_K, "q3_k", QK_K, 110, 0, 0, NULL, NULL},
    {BN_TYPE_Q4_K, "q4_k", QK_K, 144, 0, 0, NULL, NULL},
    {BN_TYPE_Q5_K, "q5_k", QK_K, 176, 0, 0, NULL, NULL},
    {BN_TYPE_Q6_K, "q6_k", QK_K, 210, 0, 0, bn_q6_k_to_float, bn_q6_k_from_float},
    {BN_TYPE_Q8_K, "q8_k", QK_K, 292, 0, 0, NULL, NULL},
    {BN_TYPE_IQ2_XXS, "iq2_xxs", QK_K, 66, 0, 0, NULL, NULL},
    {BN_TYPE_IQ2_XS, "iq2_xs", QK_K, 74, 0, 0, NULL, NULL},
    {BN_TYPE_IQ3_XXS, "iq3_xxs", QK_K, 98, 0, 0, NULL, NULL},
    {BN_TYPE_IQ1_S, "iq1_s", QK_K, 50, 0, 0, NULL, NULL},
    {BN_TYPE_IQ4_NL, "iq4_nl", 32, 18, 0, 0, NULL, NULL},
    {BN_TYPE_IQ3_S, "iq3_s", QK_K, 110, 0, 0, NULL, NULL},
    {BN_TYPE_IQ2_S, "iq2_s", QK_K, 82, 0, 0, NULL, NULL},
    {BN_TYPE_IQ4_XS, "iq4_xs", QK_K, 136, 0, 0, NULL, NULL},
    {BN_TYPE_I8, "i8", 1, 1, 0, 0, NULL, NULL},
    {BN_TYPE_I16, "i16", 1, 2, 0, 0, NULL, NULL},
    {BN_TYPE_I32, "i32", 1, 4, 0, 0, NULL, NULL},
    {BN_TYPE_I64, "i64", 1, 8, 0, 0, NULL, NULL},
    {BN_TYPE_F64, "f64", 1, 8, 0, 0, NULL, NULL},
    {BN_TYPE_IQ1_M, "iq1_m", QK_K, 56, 0, 0, NULL, NULL},
    {BN_TYPE_BF16, "bf16", 1, 2, 0, 0, bn_bf16_to_float, bn_bf16_from_float},
    {BN_TYPE_TQ1_0, "tq1_0", QK_K, 54, 0, 1, bn_tq1_0_to_float, bn_tq1_0_from_float},
    {BN_TYPE_TQ2_0, "tq2_0", QK_K, 66, 0, 1, bn_tq2_0_to_float, bn_tq2_0_from_float},
    /* I2_S: see fmt_i2_s.c. 4 elements per byte in blocks of 128; one float
     * scale for the whole tensor stored after the packed data, padded to 32
     * bytes. */
    {BN_TYPE_I2_S, "i2_s", 128, 32, 32, 1, bn_i2_s_to_float, bn_i2_s_from_float},
};

const bn_type_traits *bn_type_get(int type) {
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++) {
        if (k_types[i].type == type) return &k_types[i];
    }
    return NULL;
}

const char *bn_type_name(int type) {
    const bn_type_traits *t = bn_type_get(type);
    return t ? t->name : "unknown";
}

int bn_type_from_name(const char *name) {
    if (!name) return -1;
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++) {
        const char *a = k_types[i].name, *b = name;
        while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) {
            a++;
            b++;
        }
        if (*a == '\0' && *b == '\0') return k_types[i].type;
    }
    return -1;
}

size_t bn_row_bytes(int type, int64_t n_cols) {
    const bn_type_traits *t = bn_type_get(type);
    if (!t || n_cols <= 0 || n_cols % t->block_size != 0) return 0;
    size_t r;
    if (!bn_mul_size((size_t)(n_cols / t->block_size), t->type_size, &r)) return 0;
    return r;
}

size_t bn_type_nbytes(int type, int64_t n_cols, int64_t n_rows, bn_error *err) {
    const bn_type_traits *t = bn_type_get(type);
    if (!t) {
        bn_fail(err, BN_ERR_UNSUPPORTED, "unknown tensor type %d", type);
        return 0;
    }
    if (n_cols <= 0 || n_rows <= 0) {
        bn_fail(err, BN_ERR_INVALID_ARG, "tensor shape %lld x %lld is not positive",
                (long long)n_cols, (long long)n_rows);
        return 0;
    }
    if (n_cols % t->block_size != 0) {
        bn_fail(err, BN_ERR_INVALID_ARG,
                "row length %lld is not a multiple of %s's block size %lld", (long long)n_cols,
                t->name, (long long)t->block_size);
        return 0;
    }
    size_t row = bn_row_bytes(type, n_cols), total;
    if (row == 0 || !bn_mul_size(row, (size_t)n_rows, &total) ||
        !bn_add_size(total, t->tensor_extra, &total)) {
        bn_fail(err, BN_ERR_INVALID_ARG, "tensor of %lld x %lld %s overflows size_t",
                (long long)n_cols, (long long)n_rows, t->name);
        return 0;
    }
    bn_ok(err);
    return total;
}
