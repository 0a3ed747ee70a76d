/* Optional per-context profiling of the forward pass: wall time per phase,
 * accumulated while enabled (bn_context_profile). Off by default; when off,
 * the forward pass only tests a NULL pointer per phase. No global state:
 * the counters live in the context. Internal (the benchmark links the
 * static library and includes this header). */
#ifndef BN_PROFILE_H
#define BN_PROFILE_H

#include "bitnet.h"

#include <stdint.h>

typedef enum bn_prof_phase {
    BN_PROF_EMBED,   /* embedding rows, RoPE tables */
    BN_PROF_NORM,    /* attn / ffn / sub / output RMSNorms, residual adds */
    BN_PROF_QUANT,   /* BitLinear activation quantization */
    BN_PROF_QKV,     /* q, k, v matmuls */
    BN_PROF_ROPE_KV, /* RoPE, KV cache append */
    BN_PROF_ATTN,    /* attention over the KV cache */
    BN_PROF_WO,      /* attention output matmul */
    BN_PROF_GATE_UP, /* FFN gate and up matmuls */
    BN_PROF_FFN_ACT, /* FFN activation (+ sub norm) */
    BN_PROF_DOWN,    /* FFN down matmul */
    BN_PROF_HEAD,    /* LM head matmul */
    BN_PROF_COUNT
} bn_prof_phase;

typedef struct bn_profile {
    uint64_t steps; /* bn_decode calls counted */
    uint64_t tokens;
    double seconds[BN_PROF_COUNT];
} bn_profile;

/* Short name of a phase ("qkv", "attn", ...). */
const char *bn_profile_name(int phase);

/* enable != 0: reset the counters and count from now on; enable == 0: stop.
 * out (may be NULL) receives the counters so far, added into *out. */
void bn_context_profile(bn_context *c, int enable, bn_profile *out);

#endif /* BN_PROFILE_H */
