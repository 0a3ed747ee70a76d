/* Run-time CPU features and the SIMD kernel sets they select
 * (cpu_features.c, kernels.c, kernels_<isa>.c). */
#ifndef BN_DISPATCH_H
#define BN_DISPATCH_H

#include "kernels.h"

enum {
    BN_CPU_AVX2 = 1u << 0,
    BN_CPU_FMA = 1u << 1,
    BN_CPU_F16C = 1u << 2,
    BN_CPU_AVX512F = 1u << 3,
    BN_CPU_AVX512BW = 1u << 4,
    BN_CPU_AVX512VL = 1u << 5,
    BN_CPU_AVX512VNNI = 1u << 6,
    BN_CPU_AVXVNNI = 1u << 7,
    BN_CPU_NEON = 1u << 8,
    BN_CPU_ASIMDDP = 1u << 9,
    BN_CPU_AVX512DQ = 1u << 10,
    BN_CPU_AVX512VBMI = 1u << 11 /* vpermb / vpermi2b: the AVX-512 set's base-3 layout */
};

/* BN_CPU_* bits of this CPU, usable by this OS (detected once). */
unsigned bn_cpu_flags(void);

#if defined(__x86_64__) || defined(__i386__)
#define BN_HAVE_AVX2_KERNELS 1
/* AVX2 + FMA + F16C kernels (kernels_avx2.c, built on x86 only); use them
 * only when bn_cpu_flags() has all three bits. */
const bn_kernels *bn_kernels_avx2(void);
/* Kernels of the AVX2 set that the AVX-512 set reuses. */
float bn_avx2_quantize_act(const float *x, int64_t n, int8_t *q);
void bn_avx2_to_f16(const float *x, void *y, int64_t n);
/* The 256 codes (w + 1) of a TQ1_0 block; returns its half scale (both
 * sets' repacking). */
uint16_t bn_avx2_tq1_0_codes(const uint8_t *blk, uint8_t codes[256]);
void bn_avx2_matmul_float(const bn_tensor *w, const float *x, int64_t n_tok, float *out,
                          int64_t out_stride, int64_t r0, int64_t r1);
/* The Q6_K / Q8_0 / Q4_0 head matmul on int8 activations (kernels_avx2.c):
 * quantizes each token's activations per 256 columns, then calls a set's
 * row dot products. q: int8 activations; d8: their step per 256 columns;
 * sum16: their sums per 16 columns. */
typedef struct bn_q8act_dots {
    float (*q6_k)(const uint8_t *row, int64_t nb, const int8_t *q, const float *d8,
                  const int16_t *sum16);
    float (*q8_0)(const uint8_t *row, int64_t n, const int8_t *q, const float *d8);
    float (*q4_0)(const uint8_t *row, int64_t n, const int8_t *q, const float *d8,
                  const int16_t *sum16);
} bn_q8act_dots;
/* dots NULL: the AVX2 set's own. */
void bn_avx2_matmul_q8act(const bn_q8act_dots *dots, const bn_tensor *w, const float *x,
                          int64_t n_tok, float *out, int64_t out_stride, int64_t r0, int64_t r1);
/* AVX-512 F/BW/VL/DQ + VNNI kernels (kernels_avx512.c), with their own
 * repacked ternary layout; use them only when bn_cpu_flags() has
 * BN_KERNELS_AVX512_NEED. */
#define BN_KERNELS_AVX512_NEED                                                                     \
    (BN_CPU_AVX2 | BN_CPU_FMA | BN_CPU_F16C | BN_CPU_AVX512F | BN_CPU_AVX512BW | BN_CPU_AVX512VL | \
     BN_CPU_AVX512DQ | BN_CPU_AVX512VNNI)
const bn_kernels *bn_kernels_avx512(void);
#endif

#if defined(__aarch64__)
#define BN_HAVE_NEON_KERNELS 1
/* NEON + dot-product kernels (kernels_neon.c, built on AArch64 only): fills
 * *k (the reference set with NEON ternary matmuls) and returns it; use them
 * only when bn_cpu_flags() has BN_CPU_ASIMDDP. */
const bn_kernels *bn_kernels_neon_init(bn_kernels *k);
#endif

#endif /* BN_DISPATCH_H */
