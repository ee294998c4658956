/* A CPU random generator that reproduces PyTorch's (torch 1.13, x86-64 with AVX2):
 *
 *   g = torch.Generator("cpu").manual_seed(seed)
 *   torch.randn(shape, generator=g)   -> hl_rng_randn_f32(g, out, numel)
 *   torch.rand(shape, generator=g)    -> hl_rng_rand_f32(g, out, numel)
 *
 * bit for bit, including the order in which successive calls consume the stream, so `--seed`
 * gives diffusers' noise on CPU.
 *
 * How torch draws (aten CPUGeneratorImpl, DistributionsHelper.h, cpu/DistributionKernels.cpp):
 *  - the engine is MT19937 seeded with init_genrand(seed & 0xffffffff);
 *  - a float uniform takes one 32-bit word and keeps its low 24 bits: (w & 0xffffff) / 2^24;
 *    a double uniform takes two words (first = high half) and keeps 53 bits;
 *  - randn of a contiguous float32 tensor with numel >= 16 first fills all numel uniforms, turns
 *    each block of 16 into normals by Box-Muller (u[0..7] give the radii, u[8..15] the angles)
 *    and, when numel % 16 != 0, draws 16 fresh uniforms for the last 16 slots and transforms them
 *    again (so numel + 16 words are consumed). With AVX2 the block transform uses the cephes-style
 *    vector log/sincos of avx_mathfun, whose last bits differ from libm; we replay it in scalar
 *    float32 arithmetic (HL_RNG_NORMAL_AVX2, the default);
 *  - randn with numel < 16 draws one double normal per element with the scalar Box-Muller in
 *    double, which produces values in pairs and keeps the second (the sine) in the generator for
 *    the next such draw; manual_seed clears it.
 *
 * Verified bit for bit against every draw the reference vectors record (randn with numel >= 16,
 * including tails, and rand, continuing one generator across calls). The numel < 16 randn path
 * (torch 1.13 uses log(1 - u) there; later versions log1p(-u)) and HL_RNG_NORMAL_LIBM are not
 * exercised by those vectors: the former matches torch's documented seed-0 values to 1e-4. */
#ifndef HL_RNG_H
#define HL_RNG_H

#include <stdbool.h>
#include <stdint.h>

#define HL_RNG_MT_N 624

/* Which float32 block transform randn uses for numel >= 16 (torch picks it by CPU capability). */
typedef enum hl_rng_normal_path {
    HL_RNG_NORMAL_AVX2 = 0, /* normal_fill_16_AVX2: avx_mathfun log256_ps / sincos256_ps */
    HL_RNG_NORMAL_LIBM,     /* normal_fill_16: std::log / std::cos / std::sin on float (no AVX2) */
} hl_rng_normal_path;

typedef struct hl_rng {
    uint32_t mt[HL_RNG_MT_N];
    int next; /* index of the next tempered word; HL_RNG_MT_N = regenerate */
    uint64_t seed;
    bool has_next_normal; /* cached second value of the scalar (double) Box-Muller pair */
    double next_normal;
    hl_rng_normal_path path;
} hl_rng;

/* torch.Generator("cpu").manual_seed(seed). Also resets the cached normal; keeps g->path. */
void hl_rng_seed(hl_rng *g, uint64_t seed);

/* MT19937's init_by_array(key, n) (mt19937ar.c, also numpy's seeding): a generator from a key of
 * any length, e.g. a 64-bit seed and a 64-bit index as four words, so that every (seed, index)
 * pair gets its own stream (hl_rng_seed keeps only 32 bits). Resets the cached normal; keeps
 * g->path; g->seed = key[0] (informative). */
void hl_rng_seed_array(hl_rng *g, const uint32_t *key, int n);

uint32_t hl_rng_u32(hl_rng *g);
/* torch's random64(): two words, the first one is the high half. */
uint64_t hl_rng_u64(hl_rng *g);

/* torch.rand(n) in float32: uniforms in [0, 1) with 24 random bits each. */
void hl_rng_rand_f32(hl_rng *g, float *out, int64_t n);
/* torch.randn(n) in float32 for a contiguous tensor of n elements. */
void hl_rng_randn_f32(hl_rng *g, float *out, int64_t n);

/* Whether a generator freshly seeded with `seed` makes a first draw that starts with
 * first[0..n) (torch.rand(n) when uniform, else torch.randn(n)). Compares the first min(n, 16)
 * values, computed from the part of the state they depend on (~1 us per seed), for finding the
 * seed of recorded draws by search; with few values a chance match is possible, so confirm a hit
 * by replaying all the draws. */
bool hl_rng_first_draw_matches(uint64_t seed, bool uniform, int64_t n, const float *first);
/* The smallest seed in [lo, hi) (hi capped at 2^32: torch seeds act modulo 2^32) for which
 * hl_rng_first_draw_matches holds; false if none. ~0.1 us per seed. */
bool hl_rng_find_seed(bool uniform, int64_t n, const float *first, uint64_t lo, uint64_t hi,
                      uint64_t *seed);

/* The avx_mathfun approximations in scalar form (exposed for tests). */
float hl_rng_logf_cephes(float x);
void hl_rng_sincosf_cephes(float x, float *s, float *c);

#endif
