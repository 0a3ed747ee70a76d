/* Kernel selection: the best set for this CPU, chosen once. Setting the
 * environment variable BITNET_KERNELS=reference forces the portable set
 * (for debugging and for comparing against it), BITNET_KERNELS=avx2 caps
 * the choice at the AVX2 set. */
#include "dispatch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Written once under pthread_once, read-only afterwards. */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static const bn_kernels *g_best;
#if defined(BN_HAVE_NEON_KERNELS)
static bn_kernels g_neon; /* filled once by choose() */
#endif

static void choose(void) {
    g_best = bn_kernels_reference();
    const char *force = getenv("BITNET_KERNELS");
    if (force && strcmp(force, "reference") == 0) return;
#if defined(BN_HAVE_AVX2_KERNELS)
    const unsigned need = BN_CPU_AVX2 | BN_CPU_FMA | BN_CPU_F16C;
    if ((bn_cpu_flags() & need) == need) g_best = bn_kernels_avx2();
    if (force && strcmp(force, "avx2") == 0) return;
    const unsigned need512 = BN_KERNELS_AVX512_NEED;
    if ((bn_cpu_flags() & need512) == need512) g_best = bn_kernels_avx512();
#endif
#if defined(BN_HAVE_NEON_KERNELS)
    if (bn_cpu_flags() & BN_CPU_ASIMDDP) g_best = bn_kernels_neon_init(&g_neon);
#endif
}

const bn_kernels *bn_kernels_best(void) {
    pthread_once(&g_once, choose);
    return g_best;
}
