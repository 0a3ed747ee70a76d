/* The streaming-read ceiling shared by the benchmarks (bn_kernel_bench,
 * bn_bench --ceiling): 64-byte vector loads into four independent sums,
 * with or without software prefetch 8 KiB ahead as the kernels do. The
 * better of the two is the ceiling (on the development machine the
 * prefetching read was the faster at 2 threads and the slower at 1).
 *
 * The buffer read comes from bench_alloc: memory of the kind the engine
 * keeps its streamed weights in (2 MiB-aligned, advised for transparent
 * huge pages, unless BITNET_HUGEPAGES=0), since that streams faster than
 * 4 KiB pages (development machine, 689 MB read: 41.3-41.7 GB/s against
 * 37.7-39.3 on one thread, 49.1-50.1 against 46.4-47.9 on two) and a bound
 * read from slower memory would flatter the engine. */
#ifndef BN_BENCH_READ_H
#define BN_BENCH_READ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* bytes of zeroed memory (then filled with 1s, so every page is backed),
 * 2 MiB-aligned and advised for huge pages; NULL on failure. Free with
 * bench_free(p, bytes). */
static inline void *bench_alloc(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    uint8_t *raw =
        mmap(NULL, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + huge - 1) / huge * huge);
    if (p > raw) munmap(raw, (size_t)(p - raw));
    const size_t tail = (size_t)(raw + bytes + huge - (p + bytes));
    if (tail > 0) munmap(p + bytes, tail);
#ifdef MADV_HUGEPAGE
    const char *hp = getenv("BITNET_HUGEPAGES");
    if (!hp || strcmp(hp, "0") != 0) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    memset(p, 1, bytes);
    return p;
}

static inline void bench_free(void *p, size_t bytes) {
    if (p) munmap(p, bytes);
}

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx512f"))) static uint64_t bench_read_avx512(const uint64_t *p, size_t n,
                                                                     int pf) {
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        if (pf) {
            for (int l = 0; l < 4; l++)
                _mm_prefetch((const char *)(p + i + 1024 + 8 * l), _MM_HINT_T0);
        }
        s0 = _mm512_add_epi64(s0, _mm512_load_si512(p + i));
        s1 = _mm512_add_epi64(s1, _mm512_load_si512(p + i + 8));
        s2 = _mm512_add_epi64(s2, _mm512_load_si512(p + i + 16));
        s3 = _mm512_add_epi64(s3, _mm512_load_si512(p + i + 24));
    }
    return (uint64_t)_mm512_reduce_add_epi64(
        _mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3)));
}
#endif

/* Sums the n words at p (64-byte aligned); pf: prefetch 8 KiB ahead. */
static uint64_t bench_read(const uint64_t *p, size_t n, int pf) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) return bench_read_avx512(p, n, pf);
#endif
    (void)pf;
    uint64_t s[8] = {0};
    for (size_t i = 0; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++)
            s[k] += p[i + k];
    }
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

#endif /* BN_BENCH_READ_H */
