/* Deterministic pseudo-random numbers shared by the sampler and the model
 * generator: splitmix64 (seeding) and xoshiro256** (the stream), as
 * published by Vigna and Blackman. The same seed gives the same sequence on
 * every platform and compiler; both are part of lmpack's reproducibility
 * contract (sampling with --seed, mkmodel --seed), so never change them. */
#ifndef LMP_RNG_H
#define LMP_RNG_H

#include <stdint.h>

/* Advance *x and return the next splitmix64 output. */
static inline uint64_t lmp_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t lmp_rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* Next xoshiro256** output; s[4] must not be all zero. */
static inline uint64_t lmp_xoshiro256ss(uint64_t s[4])
{
    uint64_t r = lmp_rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = lmp_rotl64(s[3], 45);
    return r;
}

#endif
