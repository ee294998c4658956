/* src/sample: the torch-compatible generator, schedules, scheduler steps and pyramid ops, first
 * on known values and error paths, then against every reference vector in tests/vectors through
 * hl_sample_verify (schedules, steps, pyramid ops and the recorded pipeline draws/steps). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "sample/pyramid.h"
#include "sample/rng.h"
#include "sample/schedule.h"
#include "sample/steps.h"
#include "test_util.h"
#include "verify/sample_vectors.h"

static bool near(double a, double b, double tol) { return fabs(a - b) <= tol; }

/* ---- generator ------------------------------------------------------------------------------- */

static void test_rng_known_values(void) {
    hl_rng g = {0};
    /* torch.manual_seed(0); torch.rand(4) */
    static const float rand0[4] = {0.4963f, 0.7682f, 0.0885f, 0.1320f};
    float o[32];
    hl_rng_seed(&g, 0);
    hl_rng_rand_f32(&g, o, 4);
    for (int i = 0; i < 4; i++) CHECK(near(o[i], rand0[i], 1e-4), "rand[%d] = %f", i, o[i]);

    /* torch.manual_seed(0); torch.randn(4): the scalar double path (numel < 16) */
    static const float randn4[4] = {1.5410f, -0.2934f, -2.1788f, 0.5684f};
    hl_rng_seed(&g, 0);
    hl_rng_randn_f32(&g, o, 4);
    for (int i = 0; i < 4; i++) CHECK(near(o[i], randn4[i], 1e-4), "randn4[%d] = %f", i, o[i]);

    /* torch.manual_seed(0); torch.randn(16): the block path */
    static const float randn16[16] = {-1.1258f, -1.1524f, -0.2506f, -0.4339f, 0.8487f, 0.6920f,
                                      -0.3160f, -2.1152f, 0.3223f,  -1.2633f, 0.3500f, 0.3081f,
                                      0.1198f,  1.2377f,  1.1168f,  -0.2473f};
    hl_rng_seed(&g, 0);
    hl_rng_randn_f32(&g, o, 16);
    for (int i = 0; i < 16; i++) CHECK(near(o[i], randn16[i], 1e-4), "randn16[%d] = %f", i, o[i]);
}

static void test_rng_stream(void) {
    hl_rng a = {0}, b = {0};
    float x[4], y[3], z[1];
    /* the scalar path keeps the second value of a pair: randn(3) then randn(1) == randn(4) */
    hl_rng_seed(&a, 5);
    hl_rng_randn_f32(&a, x, 4);
    hl_rng_seed(&b, 5);
    hl_rng_randn_f32(&b, y, 3);
    hl_rng_randn_f32(&b, z, 1);
    CHECK(!memcmp(x, y, sizeof y) && x[3] == z[0], "cached normal carried across calls");
    /* manual_seed drops the cached value */
    hl_rng_seed(&b, 5);
    hl_rng_randn_f32(&b, y, 3);
    hl_rng_seed(&b, 5);
    hl_rng_randn_f32(&b, z, 1);
    CHECK(z[0] == x[0], "reseeding clears the cache");

    /* the block path consumes numel words, + 16 when numel % 16 != 0 */
    float buf[40];
    hl_rng_seed(&a, 9);
    hl_rng_randn_f32(&a, buf, 20);
    hl_rng_seed(&b, 9);
    for (int i = 0; i < 36; i++) hl_rng_u32(&b);
    CHECK(hl_rng_u32(&a) == hl_rng_u32(&b), "randn(20) consumes 36 words");
    /* ... and its tail block overwrites the last 16 values only */
    hl_rng_seed(&a, 9);
    hl_rng_randn_f32(&a, buf, 32);
    hl_rng_seed(&b, 9);
    float t[20];
    hl_rng_randn_f32(&b, t, 20);
    CHECK(!memcmp(buf, t, 4 * sizeof *t), "randn(20) starts like randn(32)");

    /* seed search helper */
    float big[960];
    hl_rng_seed(&a, 777777);
    hl_rng_randn_f32(&a, big, 960);
    CHECK(hl_rng_first_draw_matches(777777, false, 960, big), "seed of a randn draw");
    CHECK(!hl_rng_first_draw_matches(777776, false, 960, big), "other seed rejected");
    hl_rng_seed(&a, 31337);
    hl_rng_rand_f32(&a, big, 3);
    CHECK(hl_rng_first_draw_matches(31337, true, 3, big), "seed of a rand draw");
    hl_rng_seed(&a, 4242);
    hl_rng_randn_f32(&a, big, 5);
    CHECK(hl_rng_first_draw_matches(4242, false, 5, big), "seed of a small randn draw");
    CHECK(!hl_rng_first_draw_matches(4243, false, 5, big), "small draw, other seed");

    uint64_t seed = 0;
    hl_rng_seed(&a, 777777);
    hl_rng_randn_f32(&a, big, 960);
    CHECK(hl_rng_find_seed(false, 960, big, 700001, 800000, &seed) && seed == 777777,
          "find randn seed: %llu", (unsigned long long)seed);
    CHECK(!hl_rng_find_seed(false, 960, big, 0, 70000, &seed), "no seed in the wrong range");
    hl_rng_seed(&a, 31337);
    hl_rng_rand_f32(&a, big, 3);
    CHECK(hl_rng_find_seed(true, 3, big, 30000, 40000, &seed) && seed == 31337, "find rand seed");
    hl_rng_seed(&a, 4242);
    hl_rng_randn_f32(&a, big, 5);
    CHECK(hl_rng_find_seed(false, 5, big, 4000, 4300, &seed) && seed == 4242, "find small seed");
}

/* init_by_array: the first outputs of mt19937ar.c's own test (mt19937ar.out) */
static void test_rng_seed_array(void) {
    static const uint32_t key[4] = {0x123, 0x234, 0x345, 0x456};
    static const uint32_t want[5] = {1067595299u, 955945823u, 477289528u, 4107218783u, 4228976476u};
    hl_rng g = {0};
    hl_rng_seed_array(&g, key, 4);
    for (int i = 0; i < 5; i++) {
        uint32_t u = hl_rng_u32(&g);
        CHECK(u == want[i], "init_by_array output %d: %u, want %u", i, u, want[i]);
    }
    /* keys that differ in one word (a sample index's high half) give other streams */
    hl_rng a = {0}, b = {0};
    hl_rng_seed_array(&a, (const uint32_t[]){5, 0, 7, 0}, 4);
    hl_rng_seed_array(&b, (const uint32_t[]){5, 0, 7, 1}, 4);
    CHECK(hl_rng_u32(&a) != hl_rng_u32(&b), "keys differing in the last word");
}

static void test_cephes_accuracy(void) {
    /* the avx_mathfun approximations stay within a few ulp of libm on their input range */
    double worst_log = 0.0, worst_sc = 0.0;
    for (int i = 1; i <= 100000; i++) {
        float u = (float)i / 100000.0f;
        worst_log = fmax(worst_log, fabs(hl_rng_logf_cephes(u) - log((double)u)));
        float th = 6.2831855f * u, s, c;
        hl_rng_sincosf_cephes(th, &s, &c);
        worst_sc = fmax(worst_sc, fmax(fabs(s - sin((double)th)), fabs(c - cos((double)th))));
    }
    CHECK(worst_log < 1e-6, "cephes log error %g", worst_log);
    CHECK(worst_sc < 1e-6, "cephes sincos error %g", worst_sc);
    CHECK(isnan(hl_rng_logf_cephes(0.0f)), "log(0) is NaN as in the vector kernel");
}

/* ---- schedules ------------------------------------------------------------------------------- */

static void test_shift_and_mu(void) {
    CHECK(near(hl_sched_calculate_shift(8640), 1.919167, 1e-6), "mu(8640)");
    CHECK(near(hl_sched_calculate_shift(540), 0.548073, 1e-6), "mu(540)");
    CHECK(near(hl_sched_calculate_shift(2160), 0.822292, 1e-6), "mu(2160)");
    CHECK(hl_sched_image_seq_len(9, 48, 80, 1, 2, 2) == 8640, "seq len");
    CHECK(hl_sched_time_shift(HL_SHIFT_EXPONENTIAL, 1.0, 0.0) == 0.0, "shift(0) = 0");
    double e = exp(0.7), s = 0.3;
    CHECK(near(hl_sched_time_shift(HL_SHIFT_EXPONENTIAL, 0.7, s), e * s / (1 + (e - 1) * s), 1e-15),
          "exponential shift");
    CHECK(near(hl_sched_time_shift(HL_SHIFT_LINEAR, 0.7, s), 0.7 * s / (1 + (0.7 - 1) * s), 1e-15),
          "linear shift");
    double ls[5];
    hl_sched_linspace(1.0, 0.0, 5, ls);
    CHECK(ls[0] == 1.0 && ls[2] == 0.5 && ls[4] == 0.0, "linspace");
    CHECK(hl_sched_model_timestep(998.85) == 998 && hl_sched_model_timestep(2.0) == 2, "int64(t)");
}

static void test_stage_tables(void) {
    hl_sched_config c;
    hl_sched_config_default(&c, HL_SCHED_UNIPC);
    hl_sched s;
    hl_error err;
    CHECK(hl_sched_init(&s, &c, &err) == HL_OK, "init: %s", err.msg);
    /* spec §3.3 */
    static const double ori[3] = {0.999, 0.666333, 0.333666};
    static const double start[3] = {0.999, 0.799760, 0.500374};
    static const double tmax[3] = {999.0, 743.256, 385.614};
    for (int i = 0; i < 3; i++) {
        CHECK(near(s.ori_start_sigma[i], ori[i], 1e-9), "ori start %d", i);
        CHECK(near(s.start_sigma[i], start[i], 1e-6), "start %d = %f", i, s.start_sigma[i]);
        CHECK(near(s.timesteps_per_stage[i * 1000], tmax[i], 1e-9), "t_max %d", i);
    }
    CHECK(near(s.ratio[0][1], 0.256068, 1e-6) && near(s.ratio[1][1], 0.614840, 1e-6), "ratios");
    double a, b;
    hl_sched_renoise_coeffs(&s, 1, &a, &b);
    CHECK(near(a, 0.600120, 1e-6) && near(b, 0.692612, 1e-6), "renoise 1: %f %f", a, b);
    hl_sched_renoise_coeffs(&s, 2, &a, &b);
    CHECK(near(a, 0.749813, 1e-6) && near(b, 0.433337, 1e-6), "renoise 2: %f %f", a, b);

    hl_schedule sc;
    CHECK(hl_sched_set_timesteps(&s, 3, 3, 0.5, false, &sc, &err) == HELIOS_ERR_INVALID_ARG,
          "stage out of range");
    CHECK(hl_sched_set_timesteps(&s, 0, 0, 0.5, false, &sc, &err) == HELIOS_ERR_INVALID_ARG,
          "zero steps");
    hl_sched_free(&s);

    /* Distilled (spec §3.6): linear shift, 2 steps, normal and amplified first chunk */
    hl_sched_config_default(&c, HL_SCHED_DMD);
    c.use_dynamic_shifting = true;
    c.time_shift_type = HL_SHIFT_LINEAR;
    CHECK(hl_sched_init(&s, &c, &err) == HL_OK, "init dmd");
    CHECK(hl_sched_set_timesteps(&s, 2, 0, 0.548073, false, &sc, &err) == HL_OK, "dmd 2");
    CHECK(sc.n == 2 && near(sc.timesteps[0], 998.534, 1e-3) &&
              near(sc.timesteps[1], 833.964, 1e-3) && near(sc.sigmas[1], 0.35404, 1e-5) &&
              sc.sigmas[2] == 0.0,
          "dmd schedule");
    hl_schedule_free(&sc);
    CHECK(hl_sched_set_timesteps(&s, 2, 2, 0.822292, true, &sc, &err) == HL_OK, "dmd amp");
    CHECK(sc.n == 4 && near(sc.timesteps[3], 84.216, 1e-3) && near(sc.sigmas[1], 0.71101, 1e-5),
          "amplified schedule");
    hl_schedule_free(&sc);
    CHECK(hl_sched_set_timesteps_sigmas(&s, 2, (double[]){0.9, 0.4}, 0.5, &sc, &err) ==
              HELIOS_ERR_UNSUPPORTED,
          "DMD has no sigmas path");
    hl_sched_free(&s);

    /* Base (spec §3.2): 50 steps, exponential, mu(8640) */
    hl_sched_config_default(&c, HL_SCHED_UNIPC);
    c.stages = 1;
    c.stage_range[1] = 1.0;
    c.use_dynamic_shifting = true;
    CHECK(hl_sched_init(&s, &c, &err) == HL_OK, "init base");
    double sin[50];
    hl_sched_base_sigmas(50, sin);
    CHECK(hl_sched_set_timesteps_sigmas(&s, 50, sin, hl_sched_calculate_shift(8640), &sc, &err) ==
              HL_OK,
          "base");
    CHECK(near(sc.sigmas[0], 0.99985, 1e-5) && near(sc.sigmas[1], 0.99687, 1e-5) &&
              near(sc.sigmas[49], 0.12199, 1e-5) && sc.sigmas[50] == 0.0,
          "base sigmas");
    CHECK(near(sc.timesteps[1], 1000 * sc.sigmas[1], 1e-12), "base timesteps");
    hl_schedule_free(&sc);
    hl_sched_free(&s);
}

static void test_config_json(void) {
    static const char *good =
        "{\"_class_name\": \"HeliosDMDScheduler\", \"stages\": 3, \"gamma\": 0.25, "
        "\"stage_range\": [0, 0.5, 0.75, 1], \"use_dynamic_shifting\": true, "
        "\"time_shift_type\": \"linear\"}";
    hl_json *j = NULL;
    hl_error err;
    hl_sched_config c;
    CHECK(hl_json_parse(good, strlen(good), &j, &err) == HL_OK, "parse");
    CHECK(hl_sched_config_from_json(j, HL_SCHED_UNIPC, &c, &err) == HL_OK, "config: %s", err.msg);
    CHECK(c.kind == HL_SCHED_DMD && c.gamma == 0.25 && c.stage_range[1] == 0.5 &&
              c.use_dynamic_shifting && c.time_shift_type == HL_SHIFT_LINEAR,
          "fields read");
    hl_json_free(j);
    static const char *bad[] = {
        "{\"scheduler_type\": \"unipc\", \"solver_type\": \"bh1\"}",
        "{\"scheduler_type\": \"ddim\"}",
        "{\"stages\": 3, \"stage_range\": [0, 0.5, 0.4, 1]}",
        "{\"stages\": 99}",
        "{\"stages\": 5}",
        "{\"solver_order\": 3}",
        "{\"prediction_type\": \"epsilon\"}",
        /* a file that is not an object is bad input, not a bad call (fuzz_config aborted on it) */
        "\" \"",
        "[]",
        /* typed: another type is an error, never the default */
        "{\"use_dynamic_shifting\": \"yes\"}",
        "{\"shift\": \"3\"}",
        "{\"stages\": 3.5}",
        "{\"disable_corrector\": 1}",
        "{\"predict_x0\": 0}",
        /* ranges: the per-stage tables would be gigabytes; shifts and gammas must be positive */
        "{\"num_train_timesteps\": 100000000}",
        "{\"shift\": 0}",
        "{\"gamma\": -1}",
    };
    static const hl_status want[] = {
        HELIOS_ERR_UNSUPPORTED, HELIOS_ERR_UNSUPPORTED, HELIOS_ERR_FORMAT,      HELIOS_ERR_FORMAT,
        HELIOS_ERR_FORMAT,      HELIOS_ERR_UNSUPPORTED, HELIOS_ERR_UNSUPPORTED, HELIOS_ERR_FORMAT,
        HELIOS_ERR_FORMAT,      HELIOS_ERR_FORMAT,      HELIOS_ERR_FORMAT,      HELIOS_ERR_FORMAT,
        HELIOS_ERR_FORMAT,      HELIOS_ERR_FORMAT,      HELIOS_ERR_FORMAT,      HELIOS_ERR_FORMAT,
        HELIOS_ERR_FORMAT};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        j = NULL;
        CHECK(hl_json_parse(bad[i], strlen(bad[i]), &j, &err) == HL_OK, "parse bad %zu", i);
        hl_status st = hl_sched_config_from_json(j, HL_SCHED_UNIPC, &c, &err);
        CHECK(st == want[i], "'%s': got %d (%s)", bad[i], (int)st, err.msg);
        hl_json_free(j);
    }
}

/* ---- steps ----------------------------------------------------------------------------------- */

static void test_steps_small(void) {
    double ts[2] = {900.0, 500.0}, sg[3] = {0.9, 0.5, 0.0};
    hl_schedule sc = {2, 0, ts, sg};
    float v[2] = {1.0f, -2.0f}, x[2] = {0.5f, 0.25f}, out[2], start[2] = {3.0f, 4.0f};
    hl_error err;
    CHECK(hl_euler_step(&sc, 0, 2, v, x, out, &err) == HL_OK, "euler");
    CHECK(out[0] == 0.5f + (float)(0.5 - 0.9) * 1.0f, "euler value");
    CHECK(hl_euler_step(&sc, 2, 2, v, x, out, &err) == HELIOS_ERR_INVALID_ARG, "euler past end");

    /* DMD: x0 = x - 0.9 v, then back to sigma 0.5 toward the start point */
    CHECK(hl_dmd_step(&sc, 0, 900.7, ts, 2, 2, v, x, start, out, &err) == HL_OK, "dmd");
    float x0 = (float)(0.5 - 0.9 * 1.0);
    CHECK(out[0] == (float)(0.5 * x0 + 0.5 * 3.0), "dmd renoise %f", out[0]);
    CHECK(hl_dmd_step(&sc, 1, 500.0, ts, 2, 2, v, x, NULL, out, &err) == HL_OK, "dmd last");
    CHECK(out[1] == (float)(0.25 - 0.5 * -2.0), "dmd last = x0");
    CHECK(hl_dmd_sigma_for(&sc, 899.99) == 0.9, "sigma lookup by int(t)");

    /* UniPC: a zero model output keeps x0 = x; the first step is plain DDIM-like order 1 */
    hl_sched_config c;
    hl_sched_config_default(&c, HL_SCHED_UNIPC);
    hl_unipc u;
    CHECK(hl_unipc_init(&u, &c, 0, &err) == HELIOS_ERR_INVALID_ARG, "numel 0");
    CHECK(hl_unipc_init(&u, &c, 2, &err) == HL_OK, "unipc init");
    hl_unipc_reset(&u, &sc);
    float zero[2] = {0, 0};
    /* with v = 0 every prediction is x itself and x is a fixed point of both steps */
    float out2[2];
    CHECK(hl_unipc_step(&u, zero, x, out, &err) == HL_OK, "unipc step 0");
    CHECK(fabsf(out[0] - x[0]) < 1e-6f && fabsf(out[1] - x[1]) < 1e-6f, "fixed point");
    CHECK(hl_unipc_step(&u, zero, out, out2, &err) == HL_OK, "unipc step 1 (corrector)");
    CHECK(fabsf(out2[0] - x[0]) < 1e-6f && fabsf(out2[1] - x[1]) < 1e-6f, "fixed point 2");
    CHECK(hl_unipc_step(&u, zero, x, out, &err) == HELIOS_ERR_INVALID_ARG, "past the schedule");
    hl_unipc_free(&u);
}

/* ---- pyramid --------------------------------------------------------------------------------- */

static void test_pyramid_small(void) {
    hl_error err;
    float x[2 * 4 * 6], y[2 * 2 * 3], up[2 * 4 * 6];
    for (int i = 0; i < 48; i++) x[i] = (float)(i % 7) - 3.0f;
    CHECK(hl_pyramid_down2x(x, 2, 4, 6, 1.0f, y, &err) == HL_OK, "down2x");
    float mean = (x[0] + x[1] + x[6] + x[7]) / 4.0f; /* each output: the mean of its 2x2 block */
    CHECK(fabsf(y[0] - mean) < 1e-6f, "block average %f %f", y[0], mean);
    CHECK(hl_pyramid_down2x(x, 2, 4, 6, 2.0f, y, &err) == HL_OK && fabsf(y[0] - 2 * mean) < 1e-6f,
          "noise pyramid: times 2");
    CHECK(hl_pyramid_down2x(x, 2, 3, 6, 2.0f, y, &err) == HELIOS_ERR_SHAPE, "odd height rejected");
    hl_pyramid_up2x_nearest(y, 2, 2, 3, up);
    CHECK(up[0] == y[0] && up[1] == y[0] && up[6] == y[0] && up[7] == y[0] && up[2] == y[1],
          "nearest up");

    double L[16];
    CHECK(hl_pyramid_block_cholesky(1.0 / 3.0, L, &err) == HL_OK, "cholesky");
    double worst = 0.0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double s = 0.0;
            for (int k = 0; k < 4; k++) s += L[i * 4 + k] * L[j * 4 + k];
            double want_ij = (i == j ? 1.0 + 1e-8 : -1.0 / 3.0);
            worst = fmax(worst, fabs(s - want_ij));
        }
    CHECK(worst < 1e-14, "L L^T = cov (%g)", worst);
    CHECK(hl_pyramid_block_cholesky(0.5, L, &err) == HELIOS_ERR_INVALID_ARG,
          "gamma 1/2 is not positive definite");
    CHECK(hl_pyramid_block_cholesky(-1.0, L, &err) == HELIOS_ERR_INVALID_ARG, "gamma < 0");

    hl_rng g = {0};
    hl_rng_seed(&g, 1);
    float n1[2 * 4 * 6], n2[2 * 4 * 6];
    CHECK(hl_pyramid_sample_block_noise(&g, 1.0 / 3.0, 2, 2, 3, HL_F32, n1, &err) == HL_OK, "bn");
    hl_rng_seed(&g, 1);
    CHECK(hl_pyramid_sample_block_noise(&g, 1.0 / 3.0, 2, 2, 3, HL_BF16, n2, &err) == HL_OK,
          "bf16");
    bool ok = true;
    for (int i = 0; i < 48; i++) ok &= hl_bf16_to_f32(hl_f32_to_bf16(n1[i])) == n2[i];
    CHECK(ok, "bf16 block noise is the rounded float32 one");
    /* within a block the 4 values sum to ~0 (the covariance's 1 1^T direction has variance ~0) */
    float s = n1[0] + n1[1] + n1[6] + n1[7];
    CHECK(fabsf(s) < 1e-3f, "block sum %g", s);
    CHECK(hl_pyramid_block_noise(n1, L, 1, 1, 1, HL_F16, n2, &err) == HELIOS_ERR_DTYPE, "dtype");

    float r[2];
    hl_pyramid_renoise((float[]){1.0f, 2.0f}, (float[]){3.0f, 4.0f}, 2, 0.5, 0.25, r);
    CHECK(r[0] == 1.25f && r[1] == 2.0f, "renoise");
}

/* ---- reference vectors ----------------------------------------------------------------------- */

typedef struct tally {
    int cases, per_file;
    char file[128];
    double worst;
} tally;

static void report(void *user, const char *file, const char *case_name, double max_abs, double tol,
                   long total) {
    tally *t = user;
    if (strcmp(t->file, file)) {
        if (t->file[0])
            printf("  %-36s %4d cases, max |diff| %.3g\n", t->file, t->per_file, t->worst);
        snprintf(t->file, sizeof t->file, "%s", file);
        t->per_file = 0;
        t->worst = 0.0;
    }
    t->cases++;
    t->per_file++;
    if (max_abs > t->worst) t->worst = max_abs;
    CHECK(max_abs <= tol, "%s: %s: max |diff| %g > tol %g", file, case_name, max_abs, tol);
}

static void test_vectors(void) {
    tally t = {0};
    hl_error err;
    hl_error_clear(&err);
    hl_status st = hl_sample_verify(HELIOS_VECTORS, report, &t, &err);
    CHECK(st == HL_OK, "hl_sample_verify: %s", err.msg);
    if (t.file[0]) printf("  %-36s %4d cases, max |diff| %.3g\n", t.file, t.per_file, t.worst);
    CHECK(t.cases >= 300, "only %d vector comparisons ran", t.cases);

    CHECK(hl_sample_verify(HELIOS_VECTORS "/no-such-dir", report, &t, &err) == HELIOS_ERR_IO,
          "missing directory");
}

/* The pipeline generator seed from manifest.json (oracle README §6 item 17): links to two vector
 * files in a temp dir beside a manifest; a right seed gives the recorded generators, a wrong one
 * fails clearly instead of falling back to the search, and the formula reaches past 2^22. */
static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(text, f) >= 0, "write %s", path);
    if (f) fclose(f);
}

static hl_status seed_of(const char *path, uint64_t *seed, hl_error *err) {
    hl_safetensors *st = NULL;
    hl_status r = hl_st_open(path, &st, err);
    if (r == HL_OK) r = hl_sample_pipeline_seed(st, seed, err);
    hl_st_close(st);
    return r;
}

static void test_manifest_seed(void) {
    char dir[] = "/tmp/helios_seed_XXXXXX", base[512], i2v[512], man[512];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(base, sizeof base, "%s/pipeline_base.safetensors", dir);
    snprintf(i2v, sizeof i2v, "%s/pipeline_i2v_base.safetensors", dir);
    snprintf(man, sizeof man, "%s/manifest.json", dir);
    CHECK(symlink(HELIOS_VECTORS "/pipeline_base.safetensors", base) == 0, "link %s", base);
    CHECK(symlink(HELIOS_VECTORS "/pipeline_i2v_base.safetensors", i2v) == 0, "link %s", i2v);
    hl_error err;
    hl_error_clear(&err);
    uint64_t seed = 0;
    bool found = true;
    CHECK(hl_sample_manifest_seed(base, &seed, &found, &err) == HL_OK && !found,
          "no manifest: not found");

    write_text(man, "{\"seed\": 0, \"variant\": \"A\"}");
    CHECK(seed_of(base, &seed, &err) == HL_OK && seed == 72, "T2V seed 0 -> 72: %llu %s",
          (unsigned long long)seed, err.msg);
    CHECK(seed_of(i2v, &seed, &err) == HL_OK && seed == 91, "I2V seed 0 -> 91: %llu %s",
          (unsigned long long)seed, err.msg);

    write_text(man, "{\"seed\": 5}"); /* a held-out set's seed: generators above 2^22 */
    CHECK(hl_sample_manifest_seed(base, &seed, &found, &err) == HL_OK && found && seed == 5000087 &&
              seed > (UINT64_C(1) << 22),
          "seed 5 -> 5000087: %llu", (unsigned long long)seed);
    hl_error_clear(&err);
    CHECK(seed_of(base, &seed, &err) == HELIOS_ERR_FORMAT &&
              strstr(err.msg, "5000087 (from manifest.json) does not reproduce"),
          "a wrong manifest seed fails clearly: %s", err.msg);

    write_text(man, "{\"seed\": \"zero\"}");
    hl_error_clear(&err);
    CHECK(seed_of(base, &seed, &err) == HELIOS_ERR_FORMAT && strstr(err.msg, "manifest.json"),
          "bad seed: %s", err.msg);
    write_text(man, "{\"variant\": \"A\"}"); /* no seed: the search */
    CHECK(seed_of(base, &seed, &err) == HL_OK && seed == 72, "searched: %llu %s",
          (unsigned long long)seed, err.msg);

    unlink(base), unlink(i2v), unlink(man), rmdir(dir);
}

int main(void) {
    test_rng_known_values();
    test_rng_stream();
    test_rng_seed_array();
    test_cephes_accuracy();
    test_shift_and_mu();
    test_stage_tables();
    test_config_json();
    test_steps_small();
    test_pyramid_small();
    test_vectors();
    test_manifest_seed();
    return test_done("test_sample");
}
