/* rng.c — torch-compatible CPU generator (see rng.h for what is reproduced and why).
 *
 * Rounding: torch's AVX2 kernel is compiled with -mfma and GCC's default -ffp-contract=fast, so
 * in avx_mathfun every multiply whose only use is an add became an FMA (GCC fuses the first
 * multiply in statement order). We write those FMAs out with fmaf() and keep every other
 * operation singly rounded (this file builds as ISO C11, where GCC does not contract on its own).
 * Without the fused tail of the sine polynomial 13 of the 1536 recorded pyramid draws differ by
 * 1 ulp; with the full contraction model all recorded draws match bit for bit. (fmaf is exact on
 * every target; without FMA hardware it is only slower.) */
#include "sample/rng.h"

#include <math.h>
#include <string.h>

/* ---- MT19937 (Matsumoto & Nishimura), as at::mt19937 ----------------------------------------- */

#define MT_M 397
#define MT_MATRIX_A 0x9908b0dfu
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7fffffffu

void hl_rng_seed(hl_rng *g, uint64_t seed) {
    /* init_genrand on the low 32 bits, as at::mt19937(seed) does. */
    g->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (uint32_t i = 1; i < HL_RNG_MT_N; i++)
        g->mt[i] = 1812433253u * (g->mt[i - 1] ^ (g->mt[i - 1] >> 30)) + i;
    g->next = HL_RNG_MT_N;
    g->seed = seed;
    g->has_next_normal = false;
    g->next_normal = 0.0;
}

void hl_rng_seed_array(hl_rng *g, const uint32_t *key, int n) {
    uint32_t *mt = g->mt;
    hl_rng_seed(g, 19650218u);
    int i = 1, j = 0;
    for (int k = HL_RNG_MT_N > n ? HL_RNG_MT_N : n; k; k--) {
        mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        if (++i >= HL_RNG_MT_N) mt[0] = mt[HL_RNG_MT_N - 1], i = 1;
        if (++j >= n) j = 0;
    }
    for (int k = HL_RNG_MT_N - 1; k; k--) {
        mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        if (++i >= HL_RNG_MT_N) mt[0] = mt[HL_RNG_MT_N - 1], i = 1;
    }
    mt[0] = 0x80000000u;
    g->seed = n > 0 ? key[0] : 0;
}

static void mt_regenerate(hl_rng *g) {
    uint32_t *mt = g->mt;
    for (int i = 0; i < HL_RNG_MT_N; i++) {
        uint32_t y = (mt[i] & MT_UPPER) | (mt[(i + 1) % HL_RNG_MT_N] & MT_LOWER);
        mt[i] = mt[(i + MT_M) % HL_RNG_MT_N] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
    }
    g->next = 0;
}

uint32_t hl_rng_u32(hl_rng *g) {
    if (g->next >= HL_RNG_MT_N) mt_regenerate(g);
    uint32_t y = g->mt[g->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t hl_rng_u64(hl_rng *g) {
    uint64_t hi = hl_rng_u32(g);
    uint64_t lo = hl_rng_u32(g);
    return (hi << 32) | lo;
}

/* uniform_real_distribution<float>(0, 1): 24 bits, exact in float. */
static float uniform_f32(hl_rng *g) {
    return (float)(hl_rng_u32(g) & 0xffffffu) * (1.0f / 16777216.0f);
}

/* uniform_real_distribution<double>(0, 1): 53 bits. */
static double uniform_f64(hl_rng *g) {
    return (double)(hl_rng_u64(g) & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

void hl_rng_rand_f32(hl_rng *g, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = uniform_f32(g);
}

/* ---- avx_mathfun (cephes) log and sincos, one lane at a time --------------------------------- */

static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* log256_ps. The reference only feeds it u in (0, 1]; a non-positive argument gives NaN there,
 * which we mirror. */
float hl_rng_logf_cephes(float x) {
    if (!(x > 0.0f)) return NAN;
    const float min_norm_pos = bits_to_f32(0x00800000u);
    if (x < min_norm_pos) x = min_norm_pos; /* cut off denormals */
    uint32_t u = f32_to_bits(x);
    int32_t ex = (int32_t)(u >> 23) - 0x7f;
    x = bits_to_f32((u & ~0x7f800000u) | f32_to_bits(0.5f)); /* mantissa in [0.5, 1) */
    float e = (float)ex + 1.0f;
    /* if x < sqrt(1/2): e -= 1, x = x + x - 1 else x = x - 1 (as (x - 1) + (x or 0)) */
    int small = x < 0.707106781186547524f;
    float tmp = small ? x : 0.0f;
    x = x - 1.0f;
    e = e - (small ? 1.0f : 0.0f);
    x = x + tmp;

    float z = x * x;
    float y = 7.0376836292E-2f;
    y = fmaf(y, x, -1.1514610310E-1f);
    y = fmaf(y, x, 1.1676998740E-1f);
    y = fmaf(y, x, -1.2420140846E-1f);
    y = fmaf(y, x, 1.4249322787E-1f);
    y = fmaf(y, x, -1.6668057665E-1f);
    y = fmaf(y, x, 2.0000714765E-1f);
    y = fmaf(y, x, -2.4999993993E-1f);
    y = fmaf(y, x, 3.3333331174E-1f);
    y = y * x;
    y = fmaf(y, z, e * -2.12194440e-4f); /* y*z + e*q1: the first multiply is fused */
    y = y - z * 0.5f;                    /* z*0.5 is exact: fused or not is the same */
    x = x + y;
    x = fmaf(e, 0.693359375f, x);
    return x;
}

/* sincos256_ps: reduce by multiples of pi/4 in three parts (DP1+DP2+DP3), then the cephes
 * polynomials on [0, pi/4]. */
void hl_rng_sincosf_cephes(float x, float *s, float *c) {
    uint32_t sign_sin = f32_to_bits(x) & 0x80000000u;
    x = fabsf(x);
    float y = x * 1.27323954473516f; /* 4/pi */
    int32_t j = (int32_t)y;          /* cvttps: truncation */
    j = (j + 1) & ~1;
    y = (float)j;
    uint32_t swap_sign_sin = ((uint32_t)j & 4u) << 29;
    int poly_is_cos = ((uint32_t)j & 2u) == 0; /* the "poly_mask": sine uses the second poly */

    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);

    uint32_t sign_cos = (~((uint32_t)j - 2u) & 4u) << 29;
    sign_sin ^= swap_sign_sin;

    float z = x * x;
    float yc = 2.443315711809948E-005f; /* cos polynomial */
    yc = fmaf(yc, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    yc = fmaf(yc, z, -(z * 0.5f)); /* y*z - z*0.5 */
    yc = yc + 1.0f;

    float ys = -1.9515295891E-4f; /* sin polynomial */
    ys = fmaf(ys, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = fmaf(ys, x, x); /* y*x + x */

    float sv = poly_is_cos ? ys : yc;
    float cv = poly_is_cos ? yc : ys;
    *s = bits_to_f32(f32_to_bits(sv) ^ sign_sin);
    *c = bits_to_f32(f32_to_bits(cv) ^ sign_cos);
}

/* ---- randn ----------------------------------------------------------------------------------- */

/* normal_fill_16_AVX2 on d[0..16) holding uniforms: d[j] <- r cos, d[j+8] <- r sin. */
static void normal16_avx2(float *d) {
    /* _mm256_set1_ps(2.0f * c10::pi<double>) */
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j]; /* [0, 1) -> (0, 1] for the log */
        float u2 = d[j + 8];
        float radius = sqrtf(-2.0f * hl_rng_logf_cephes(u1));
        float theta = two_pi * u2;
        float sn, cs;
        hl_rng_sincosf_cephes(theta, &sn, &cs);
        d[j] = radius * cs; /* fmadd(n, std = 1, mean = 0) is exact */
        d[j + 8] = radius * sn;
    }
}

/* normal_fill_16 (the non-AVX2 kernel): float math through libm, the angle formed in double. */
static void normal16_libm(float *d) {
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float u2 = d[j + 8];
        float radius = sqrtf(-2.0f * logf(u1));
        float theta = (float)(2.0 * 3.14159265358979323846 * (double)u2);
        d[j] = radius * cosf(theta);
        d[j + 8] = radius * sinf(theta);
    }
}

/* normal_distribution<double>: Box-Muller in double, the sine kept for the next call. */
static double normal_f64(hl_rng *g) {
    if (g->has_next_normal) {
        g->has_next_normal = false;
        return g->next_normal;
    }
    double u1 = uniform_f64(g);
    double u2 = uniform_f64(g);
    double r = sqrt(-2.0 * log(1.0 - u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    g->next_normal = r * sin(theta);
    g->has_next_normal = true;
    return r * cos(theta);
}

static void normal16(hl_rng_normal_path path, float d[16]) {
    if (path == HL_RNG_NORMAL_LIBM) normal16_libm(d);
    else normal16_avx2(d);
}

/* Word i of the first regeneration from the seeded state entries i, i + 1 and i + M. */
static uint32_t first_word(uint32_t s_i, uint32_t s_i1, uint32_t s_iM) {
    uint32_t y = (s_i & MT_UPPER) | (s_i1 & MT_LOWER);
    y = s_iM ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

#define LANES 8

/* The first 16 words of generators freshly seeded with seed0 .. seed0 + LANES - 1, without the
 * full init: they need only state 0..16 and M..M+15. The seeding recurrence is a serial chain
 * per seed, so LANES seeds run side by side (the inner loops vectorize). */
static void first_words_lanes(uint32_t seed0, uint32_t out[LANES][16]) {
    uint32_t cur[LANES], lo[17][LANES], hi[16][LANES];
    for (int l = 0; l < LANES; l++) lo[0][l] = cur[l] = seed0 + (uint32_t)l;
    for (uint32_t i = 1; i < MT_M + 16; i++) {
        for (int l = 0; l < LANES; l++) cur[l] = 1812433253u * (cur[l] ^ (cur[l] >> 30)) + i;
        if (i <= 16)
            for (int l = 0; l < LANES; l++) lo[i][l] = cur[l];
        if (i >= MT_M)
            for (int l = 0; l < LANES; l++) hi[i - MT_M][l] = cur[l];
    }
    for (int l = 0; l < LANES; l++)
        for (int i = 0; i < 16; i++) out[l][i] = first_word(lo[i][l], lo[i + 1][l], hi[i][l]);
}

static void first_words(uint64_t seed, uint32_t out[16]) {
    uint32_t w[LANES][16];
    first_words_lanes((uint32_t)(seed & 0xffffffffu), w);
    memcpy(out, w[0], sizeof w[0]);
}

bool hl_rng_first_draw_matches(uint64_t seed, bool uniform, int64_t n, const float *first) {
    if (n <= 0 || !first) return false;
    if (!uniform && n < 16) { /* the double-precision path: just replay it */
        hl_rng g;
        float o[16];
        g.path = HL_RNG_NORMAL_AVX2;
        hl_rng_seed(&g, seed);
        hl_rng_randn_f32(&g, o, n);
        return !memcmp(o, first, (size_t)n * sizeof *o);
    }
    uint32_t w[16];
    float u[16];
    first_words(seed, w);
    for (int i = 0; i < 16; i++) u[i] = (float)(w[i] & 0xffffffu) * (1.0f / 16777216.0f);
    if (uniform) {
        for (int64_t i = 0; i < n && i < 16; i++)
            if (u[i] != first[i]) return false;
        return true;
    }
    normal16(HL_RNG_NORMAL_AVX2, u);
    for (int64_t j = 0; j < 16; j++) /* the slots a tail block overwrites are not final yet */
        if ((n % 16 == 0 || j < n - 16) && u[j] != first[j]) return false;
    return true;
}

/* A cheap necessary condition on the words: the first value alone. */
static bool first_value_ok(const uint32_t w[16], bool uniform, float first0) {
    float u0 = (float)(w[0] & 0xffffffu) * (1.0f / 16777216.0f);
    if (uniform) return u0 == first0;
    float u8 = (float)(w[8] & 0xffffffu) * (1.0f / 16777216.0f);
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    float s, c;
    hl_rng_sincosf_cephes(two_pi * u8, &s, &c);
    return sqrtf(-2.0f * hl_rng_logf_cephes(1.0f - u0)) * c == first0;
}

bool hl_rng_find_seed(bool uniform, int64_t n, const float *first, uint64_t lo, uint64_t hi,
                      uint64_t *seed) {
    if (n <= 0 || !first || !seed) return false;
    if (hi > UINT64_C(1) << 32) hi = UINT64_C(1) << 32; /* seeds act modulo 2^32 */
    if (!uniform && n < 16) { /* the double-precision path: one replay per seed */
        for (uint64_t s = lo; s < hi; s++)
            if (hl_rng_first_draw_matches(s, uniform, n, first)) {
                *seed = s;
                return true;
            }
        return false;
    }
    uint32_t w[LANES][16];
    for (uint64_t s0 = lo; s0 < hi; s0 += LANES) {
        first_words_lanes((uint32_t)s0, w);
        for (int l = 0; l < LANES && s0 + (uint64_t)l < hi; l++)
            if (first_value_ok(w[l], uniform, first[0]) &&
                hl_rng_first_draw_matches(s0 + (uint64_t)l, uniform, n, first)) {
                *seed = s0 + (uint64_t)l;
                return true;
            }
    }
    return false;
}

void hl_rng_randn_f32(hl_rng *g, float *out, int64_t n) {
    if (n < 16) { /* serial kernel: one double normal per element, cast */
        for (int64_t i = 0; i < n; i++) out[i] = (float)normal_f64(g);
        return;
    }
    for (int64_t i = 0; i < n; i++) out[i] = uniform_f32(g);
    for (int64_t i = 0; i + 16 <= n; i += 16) normal16(g->path, out + i);
    if (n % 16 != 0) { /* the tail: 16 fresh uniforms over the last 16 slots, transformed again */
        float *d = out + n - 16;
        for (int i = 0; i < 16; i++) d[i] = uniform_f32(g);
        normal16(g->path, d);
    }
}
