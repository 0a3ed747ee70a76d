/* Tensor types: sizes of every ggml type (so the GGUF reader can check any
 * file), and conversion to and from float for the types we run. The block
 * layout of each type is described once, in the file that implements it
 * (fmt_float.c, fmt_q8_0.c, fmt_q4_0.c, fmt_q6_k.c, fmt_tq1_0.c, fmt_tq2_0.c,
 * fmt_i2_s.c). */
#ifndef BN_QUANT_H
#define BN_QUANT_H

#include "common.h"

typedef struct bn_type_traits {
    int type;
    const char *name;
    int64_t block_size; /* elements per block */
    size_t type_size;   /* bytes per block */
    /* Extra bytes per tensor after the blocks (I2_S keeps its scale there). */
    size_t tensor_extra;
    int is_ternary;
    /* One row of n elements (n a multiple of block_size). NULL when we only
     * know the type's size. */
    void (*to_float)(const void *src, float *dst, int64_t n);
    void (*from_float)(const float *src, void *dst, int64_t n);
} bn_type_traits;

/* Traits of a type id, or NULL when the id is unknown. Id 36 is I2_S here;
 * the GGUF reader rejects it in files of other architectures. */
const bn_type_traits *bn_type_get(int type);

/* Bytes of one row of n_cols elements (0 when n_cols is not a multiple of
 * the block size). */
size_t bn_row_bytes(int type, int64_t n_cols);

#endif /* BN_QUANT_H */
