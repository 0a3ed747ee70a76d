/* Run-time CPU feature detection (x86: cpuid + xgetbv, so a feature counts
 * only when the OS saves its registers; aarch64 Linux: getauxval), and the
 * library's self-description strings. Detection runs once. */
#include "dispatch.h"

#include <pthread.h>
#include <stdio.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0)); /* xgetbv */
    return ((uint64_t)hi << 32) | lo;
}

static unsigned detect(void) {
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    const int fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return 0;
    const uint64_t xcr0 = xgetbv0();
    const int ymm_ok = (xcr0 & 0x6) == 0x6;   /* SSE and AVX state */
    const int zmm_ok = (xcr0 & 0xe6) == 0xe6; /* plus opmask, ZMM_Hi256, Hi16_ZMM */
    if (!ymm_ok) return 0;
    if (fma) f |= BN_CPU_FMA;
    if (f16c) f |= BN_CPU_F16C;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if ((b >> 5) & 1) f |= BN_CPU_AVX2;
        if (zmm_ok) {
            if ((b >> 16) & 1) f |= BN_CPU_AVX512F;
            if ((b >> 17) & 1) f |= BN_CPU_AVX512DQ;
            if ((b >> 30) & 1) f |= BN_CPU_AVX512BW;
            if ((b >> 31) & 1) f |= BN_CPU_AVX512VL;
            if ((c >> 11) & 1) f |= BN_CPU_AVX512VNNI;
            if ((c >> 1) & 1) f |= BN_CPU_AVX512VBMI;
        }
        const unsigned max_sub = a;
        if (max_sub >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            if ((a >> 4) & 1) f |= BN_CPU_AVXVNNI;
        }
    }
    return f;
}
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>

static unsigned detect(void) {
    const unsigned long hw = getauxval(AT_HWCAP);
    unsigned f = 0;
    if (hw & (1ul << 1)) f |= BN_CPU_NEON;     /* HWCAP_ASIMD */
    if (hw & (1ul << 20)) f |= BN_CPU_ASIMDDP; /* HWCAP_ASIMDDP */
    return f;
}
#elif defined(__aarch64__)
static unsigned detect(void) { return BN_CPU_NEON; } /* NEON is baseline on AArch64 */
#else
static unsigned detect(void) { return 0; }
#endif

/* Written once under pthread_once, read-only afterwards. */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static unsigned g_flags;
static char g_names[160];

static void init_features(void) {
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {BN_CPU_AVX2, "avx2"},
        {BN_CPU_FMA, "fma"},
        {BN_CPU_F16C, "f16c"},
        {BN_CPU_AVX512F, "avx512f"},
        {BN_CPU_AVX512DQ, "avx512dq"},
        {BN_CPU_AVX512BW, "avx512bw"},
        {BN_CPU_AVX512VL, "avx512vl"},
        {BN_CPU_AVX512VNNI, "avx512vnni"},
        {BN_CPU_AVX512VBMI, "avx512vbmi"},
        {BN_CPU_AVXVNNI, "avxvnni"},
        {BN_CPU_NEON, "neon"},
        {BN_CPU_ASIMDDP, "asimddp"},
    };
    g_flags = detect();
    size_t len = 0;
    g_names[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(g_flags & names[i].bit)) continue;
        int w =
            snprintf(g_names + len, sizeof g_names - len, "%s%s", len ? " " : "", names[i].name);
        if (w > 0 && (size_t)w < sizeof g_names - len) len += (size_t)w;
    }
}

unsigned bn_cpu_flags(void) {
    pthread_once(&g_once, init_features);
    return g_flags;
}

const char *bn_cpu_features(void) {
    pthread_once(&g_once, init_features);
    return g_names;
}

const char *bn_kernel_name(void) { return bn_kernels_best()->name; }

#ifndef BN_BUILD_FLAGS
#define BN_BUILD_FLAGS "unknown compiler"
#endif

const char *bn_build_info(void) {
    return "libbitnet " BN_VERSION_STRING "; " BN_BUILD_FLAGS
#if defined(BN_HAVE_AVX2_KERNELS)
           "; kernels: reference avx2 avx512vnni"
#elif defined(BN_HAVE_NEON_KERNELS)
           "; kernels: reference neon-dotprod"
#else
           "; kernels: reference"
#endif
        ;
}
