/* A small seeded PRNG: xoshiro256** (Blackman and Vigna), its state filled
 * from the seed by splitmix64 as its authors recommend. Deterministic on
 * every platform, so a seed reproduces a sampling run exactly. */
#ifndef BN_RNG_H
#define BN_RNG_H

#include <stdint.h>

typedef struct bn_rng {
    uint64_t s[4];
} bn_rng;

static inline uint64_t bn_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void bn_rng_seed(bn_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = bn_splitmix64(&x);
    /* splitmix64 never yields four zero words in a row, but be explicit:
     * the all-zero state is the one xoshiro cannot leave. */
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0) r->s[0] = 1;
}

static inline uint64_t bn_rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t bn_rng_next(bn_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = bn_rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = bn_rotl64(s[3], 45);
    return result;
}

/* Uniform in [0, 1): the top 53 bits, exactly representable in a double. */
static inline double bn_rng_double(bn_rng *r) {
    return (double)(bn_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in [0, 1) as a float: the top 24 bits, so it never rounds to 1. */
static inline float bn_rng_float(bn_rng *r) {
    return (float)(bn_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

#endif /* BN_RNG_H */
