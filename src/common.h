/* Small helpers shared by every module: error reporting, checked size
 * arithmetic, half-precision conversions, aligned allocation. */
#ifndef BN_COMMON_H
#define BN_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bitnet.h"

#if defined(__GNUC__)
#define BN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define BN_UNUSED __attribute__((unused))
#else
#define BN_PRINTF(a, b)
#define BN_UNUSED
#endif

/* Fill `err` (may be NULL) and return `code`, so call sites read
 * `return bn_fail(err, BN_ERR_FORMAT, "...", ...);`. */
bn_status bn_fail(bn_error *err, bn_status code, const char *fmt, ...) BN_PRINTF(3, 4);
/* Clear `err` and return BN_OK. */
bn_status bn_ok(bn_error *err);

/* Overflow-checked arithmetic: return false on overflow. */
static inline bool bn_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}
static inline bool bn_add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return false;
    *out = a + b;
    return true;
}
static inline bool bn_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return false;
    *out = a * b;
    return true;
}
static inline bool bn_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return false;
    *out = a + b;
    return true;
}

/* IEEE half and bfloat16 <-> float (round to nearest even, as ggml does). */
float bn_fp16_to_fp32(uint16_t h);
uint16_t bn_fp32_to_fp16(float f);
float bn_bf16_to_fp32(uint16_t h);
uint16_t bn_fp32_to_bf16(float f);

/* 64-byte aligned allocation (NULL on failure or size 0 overflow); free with
 * bn_aligned_free. Memory is zeroed. */
void *bn_aligned_alloc(size_t size);
void bn_aligned_free(void *p);

/* 1 if path names a directory / a regular file (following links). */
int bn_is_dir(const char *path);
int bn_is_file(const char *path);

/* Number of online CPUs (at least 1). */
int bn_n_cpus(void);

#endif /* BN_COMMON_H */
