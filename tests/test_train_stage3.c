/* Stage-3 distillation pieces (train/dmd.h, train/distill.h):
 *   - the DMD gradient and loss, CFG on x0 predictions, the critic's flow loss and x0 from a flow
 *     output against hand-computed values;
 *   - the dynamic re-noise Beta schedule (cosine decay of (a, b)), the Beta sampler's moments, the
 *     TTUR step pattern;
 *   - the student's step-wise sampler with every level run to its last step equals the chunk loop
 *     (what helios generate runs with the Distilled recipe) bit for bit; an early exit and the
 *     tape's sigma; the teacher's trajectory capture (level starts and ends);
 *   - with a history: the sampler on a later chunk (the history helios generate's chunk loop holds
 *     after chunk 0, its generator) equals that loop's chunk 1 bit for bit, with the plain
 *     (non-amplified) schedule; the history is seen (an empty one gives another sample, so does
 *     the teacher's); a history given as transformer inputs turns back into the same window;
 *   - the GAN's random crop (size, positions covering the range over seeds, copy and its
 *     backward) and its start step: the "stage3" objective with the GAN starting at step 2 gives
 *     the DMD-only loss and gradients, bit for bit, before it and other ones from it;
 *   - the critic and the heads update once per step with the mean of its samples' gradients (a
 *     step of 2 samples against each alone, bit for bit), and every sample of a step follows the
 *     optimizer step (TTUR, gan_start);
 *   - the EMA exported as a model folder in each checkpoint (ema/): the recurrence, step by step,
 *     bit for bit, and different from the student. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "sample/chunk_loop.h"
#include "test_util.h"
#include "train/distill.h"
#include "train/dit_flat.h"
#include "train/dmd.h"
#include "train/gan.h"
#include "train/objective_distill.h"
#include "train/objective.h"
#include "train/train_loop.h"

#define MODEL HELIOS_VECTORS "/../models/tiny-random-model"

static bool near(double a, double b, double tol) { return fabs(a - b) <= tol; }

static void test_dmd_loss(void) {
    const float x0[4] = {1, 2, 3, 4}, real[4] = {0, 2, 5, 4}, fake[4] = {1, 2, 2, 7};
    float grad[4], dx0[4];
    double norm;
    double l = hl_dmd_loss(x0, real, fake, 4, grad, dx0, &norm);
    /* |x0 - real| = 1 0 2 0: 0.75; fake - real = 1 0 -3 3; grad = 4/3 0 -4 4;
     * L = 0.5 (16/9 + 16 + 16) / 4 = 38/9; dL/dx0 = grad / 4 */
    CHECK(near(norm, 0.75, 1e-15), "normaliser %g", norm);
    CHECK(near(l, 38.0 / 9.0, 1e-6), "DMD loss %.9g", l);
    const float g_want[4] = {4.0f / 3.0f, 0, -4, 4}, d_want[4] = {1.0f / 3.0f, 0, -1, 1};
    for (int i = 0; i < 4; i++)
        CHECK(near(grad[i], g_want[i], 1e-6) && near(dx0[i], d_want[i], 1e-6), "grad[%d] %g %g", i,
              grad[i], dx0[i]);
    /* x0 equal to the real prediction: no gradient (nan_to_num of 0/0) */
    l = hl_dmd_loss(real, real, fake, 4, grad, dx0, &norm);
    CHECK(l == 0 && grad[2] == 0 && dx0[3] == 0 && norm == 0, "zero normaliser");
    /* the loss is 0.5 mean (x0 - sg(x0 - grad))^2: a finite difference along grad agrees with
     * dL/dx0 . grad */
    const float c[2] = {1, 2}, u[2] = {0, 4};
    float o[2];
    hl_dmd_cfg(c, u, 3.0, 2, o);
    CHECK(o[0] == 4 && o[1] == -4, "cfg %g %g", o[0], o[1]);
    const float v[2] = {1, 0}, eps[2] = {0.5f, 1}, xz[2] = {0, 2};
    float dv[2];
    double lc = hl_dmd_critic_loss(v, eps, xz, 2, dv);
    CHECK(near(lc, 0.625, 1e-12) && dv[0] == 0.5f && dv[1] == 1.0f, "critic loss %g dv %g %g", lc,
          dv[0], dv[1]);
    /* ODE regression: x0 = x - 0.5 v = (0, 1, 3); target (1, 1, 1): r = (-1, 0, 2);
     * L = 80 * 0.5 * (1 + 0 + 4) / 3 = 200/3; dL/dv = -0.5 * 80 * r / 3 */
    const float ox[3] = {1, 2, 3}, ov[3] = {2, 2, 0}, ot[3] = {1, 1, 1};
    float odv[3];
    double lo = hl_ode_regression_loss(ox, ov, 0.5, ot, 80.0, 3, odv);
    CHECK(near(lo, 200.0 / 3.0, 1e-9), "ODE regression loss %.9g", lo);
    CHECK(near(odv[0], 40.0 / 3.0, 1e-5) && odv[1] == 0 && near(odv[2], -80.0 / 3.0, 1e-5),
          "ODE dL/dv %g %g %g", odv[0], odv[1], odv[2]);
    const float xt[2] = {1, 2}, vt[2] = {2, 4};
    hl_dmd_flow_to_x0(xt, vt, 0.25, 2, o);
    CHECK(o[0] == 0.5f && o[1] == 1.0f, "x0 %g %g", o[0], o[1]);
}

static void test_renoise_schedule(void) {
    hl_dmd_renoise r;
    hl_dmd_renoise_default(&r);
    double a, b;
    hl_dmd_beta_params(&r, 0, &a, &b);
    CHECK(a == 4 && b == 1.5, "step 0: %g %g", a, b);
    hl_dmd_beta_params(&r, 250, &a, &b); /* half way: f = 0.5 */
    CHECK(near(a, 2.5, 1e-12) && near(b, 1.25, 1e-12), "step 250: %g %g", a, b);
    hl_dmd_beta_params(&r, 500, &a, &b);
    CHECK(near(a, 1, 1e-12) && near(b, 1, 1e-12), "step 500: %g %g", a, b);
    hl_dmd_beta_params(&r, 5000, &a, &b);
    CHECK(a == 1 && b == 1, "after the decay: uniform");
    /* Beta moments: mean a / (a + b), variance ab / ((a + b)^2 (a + b + 1)) */
    const double ab[3][2] = {{4, 1.5}, {1, 1}, {0.5, 2}};
    for (int c = 0; c < 3; c++) {
        hl_rng g = {0};
        hl_rng_seed(&g, 11 + c);
        double s = 0, s2 = 0;
        enum { N = 40000 };
        for (int i = 0; i < N; i++) {
            double x = hl_rng_beta(&g, ab[c][0], ab[c][1]);
            CHECK(x > 0 && x < 1, "Beta draw in (0, 1)");
            s += x, s2 += x * x;
        }
        double A = ab[c][0], B = ab[c][1], m = s / N, var = s2 / N - m * m;
        double mw = A / (A + B), vw = A * B / ((A + B) * (A + B) * (A + B + 1));
        printf("  Beta(%g, %g): mean %.4f (%.4f), var %.5f (%.5f)\n", A, B, m, mw, var, vw);
        CHECK(near(m, mw, 0.006) && near(var, vw, 0.003), "Beta(%g, %g) moments", A, B);
    }
    /* re-noise timesteps: in [t_min, t_max] unshifted, mostly high noise at the start */
    hl_rng g = {0};
    hl_rng_seed(&g, 5);
    double mean0 = 0, sig, ts;
    for (int i = 0; i < 2000; i++) {
        hl_dmd_renoise_draw(&r, 0, 0.0, &g, &sig, &ts);
        CHECK(ts >= 20 && ts <= 980 && near(sig * 1000, ts, 1e-9), "timestep %g", ts);
        mean0 += ts / 2000;
    }
    CHECK(near(mean0, 20 + 960 * 4 / 5.5, 12), "mean timestep at step 0: %g", mean0);
    hl_dmd_renoise_draw(&r, 0, 0.8, &g, &sig, &ts); /* a shift moves sigma up */
    CHECK(sig > 0 && sig < 1, "shifted sigma %g", sig);
    /* TTUR */
    const bool want[11] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    for (int s = 0; s < 11; s++)
        CHECK(hl_dmd_generator_step(s, 5) == want[s], "TTUR ratio 5, step %d", s);
    CHECK(hl_dmd_generator_step(3, 1), "ratio 1: every step");
}

/* The tiny model into a flat buffer. */
static hl_status load_tiny(hl_dit_config *cfg, hl_params *L, float **w, hl_dit **m, hl_error *e) {
    char *text;
    size_t len;
    HL_TRY(hl_file_read_all(MODEL "/transformer/config.json", 1 << 20, "config", &text, &len, e));
    hl_json *j;
    hl_status st = hl_json_parse(text, len, &j, e);
    free(text);
    HL_TRY(st);
    st = hl_dit_config_parse(j, cfg, e);
    hl_json_free(j);
    HL_TRY(st);
    HL_TRY(hl_dit_params_layout(cfg, L, e));
    *w = malloc((size_t)L->total * sizeof **w);
    HL_TRY(hl_distill_load_weights(MODEL, L, *w, e));
    return hl_dit_new_flat(cfg, L, *w, m, e);
}

static void test_sampler(void) {
    hl_error e = {0};
    hl_dit_config cfg;
    hl_params L;
    float *w = NULL;
    hl_dit *m = NULL;
    CHECK(load_tiny(&cfg, &L, &w, &m, &e) == HL_OK, "%s", e.msg);
    if (!m) return;
    hl_backend *be = hl_backend_new(HELIOS_BACKEND_CPU, 0, &e);
    hl_ctx ctx = {be, &e};
    hl_distill_shape sh;
    hl_distill_shape_default(&sh);
    sh.C = cfg.in_channels, sh.F = 2, sh.H = 16, sh.W = 16, sh.L = 8;
    sh.teacher_steps = 3;
    hl_distill_sampler s;
    CHECK(hl_distill_sampler_init(&s, &sh, &cfg, &e) == HL_OK, "%s", e.msg);
    CHECK(hl_distill_level_steps(&s, 0) == 4 && hl_distill_level_steps(&s, 2) == 4,
          "amplified first chunk: 2 x 2 steps per level");
    size_t n = (size_t)sh.C * sh.F * sh.H * sh.W;
    float *text = malloc((size_t)sh.L * cfg.text_dim * sizeof *text), *noise = malloc(n * 4),
          *a = malloc(n * 4), *b = malloc(n * 4);
    fill_random(text, (int64_t)sh.L * cfg.text_dim, 3);
    /* the chunk loop (helios generate, Distilled recipe) vs the step-wise sampler */
    CHECK(hl_distill_student_sample(&ctx, &s, m, text, 42, a) == HL_OK, "%s", e.msg);
    hl_rng g = {0};
    hl_rng_seed(&g, 42);
    hl_rng_randn_f32(&g, noise, (int64_t)n);
    hl_distill_run run = {{-1, -1, -1}, false, 0, NULL, 0};
    CHECK(hl_distill_sample(&ctx, &s, m, text, noise, &g, &run, b) == HL_OK, "%s", e.msg);
    {
        double md = 0;
        for (size_t i = 0; i < n; i++) md = fmax(md, fabs(a[i] - b[i]));
        CHECK(md == 0, "step-wise sampler == chunk loop, bit for bit (max diff %g)", md);
    }
    /* an early exit with a tape: the sigma of the exit step, a different sample */
    hl_rng_seed(&g, 42);
    hl_rng_randn_f32(&g, noise, (int64_t)n);
    hl_distill_run r2 = {{0, 1, 2}, true, 1, NULL, 0};
    CHECK(hl_distill_sample(&ctx, &s, m, text, noise, &g, &r2, b) == HL_OK && r2.out_tape, "%s",
          e.msg);
    CHECK(r2.out_sigma > 0 && r2.out_sigma < 1 && memcmp(a, b, n * 4), "exit sigma %g",
          r2.out_sigma);
    hl_dit_tape_free(r2.out_tape);
    /* the teacher's trajectory: level starts and ends at their sizes, the last end = the sample */
    float *st[3], *en[3];
    for (int k = 0; k < 3; k++) st[k] = calloc(n, 4), en[k] = calloc(n, 4);
    CHECK(hl_distill_teacher_sample(&ctx, &sh, m, text, 42, NULL, st, en, a) == HL_OK, "%s", e.msg);
    CHECK(!memcmp(en[2], a, n * 4), "the last level's end is the sample");
    size_t n0 = n / 16;
    CHECK(en[0][n0 - 1] != 0 && en[0][n0] == 0 && st[1][n / 4 - 1] != 0 && st[1][n / 4] == 0,
          "level sizes");
    for (int k = 0; k < 3; k++) free(st[k]), free(en[k]);
    hl_distill_sampler_free(&s);
    free(text), free(noise), free(a), free(b);
    hl_backend_free(be);
    hl_dit_free(m);
    free(w);
    hl_params_free(&L);
}

static void test_crop(void) {
    hl_error e = {0};
    int h, w;
    CHECK(hl_gan_crop_size(16, 16, 2, 2, 0.5, "k", &h, &w, &e) == HL_OK && h == 8 && w == 8,
          "half of 16x16: %dx%d", h, w);
    CHECK(hl_gan_crop_size(18, 12, 2, 2, 0.5, "k", &h, &w, &e) == HL_OK && h == 8 && w == 6,
          "half of 18x12 in whole patches: %dx%d", h, w);
    CHECK(hl_gan_crop_size(4, 4, 2, 2, 0.1, "k", &h, &w, &e) == HL_OK && h == 2 && w == 2,
          "at least one patch: %dx%d", h, w);
    CHECK(hl_gan_crop_size(16, 16, 2, 2, 1.0, "k", &h, &w, &e) == HL_OK && h == 16 && w == 16,
          "1: the whole latent");
    CHECK(hl_gan_crop_size(15, 16, 2, 2, 0.5, "objective.gan_crop", &h, &w, &e) != HL_OK &&
              strstr(e.msg, "objective.gan_crop"),
          "odd latent: %s", e.msg);
    CHECK(hl_gan_crop_size(16, 16, 2, 2, 0, "objective.gan_crop", &h, &w, &e) != HL_OK &&
              strstr(e.msg, "objective.gan_crop"),
          "fraction 0: %s", e.msg);
    /* positions: uniform over [0, H - h] x [0, W - w], every value reached over seeds */
    int seen_y[9] = {0}, seen_x[9] = {0};
    bool in_range = true;
    for (int seed = 0; seed < 400; seed++) {
        hl_rng g = {0};
        hl_rng_seed(&g, (uint64_t)seed);
        hl_gan_crop c;
        hl_gan_crop_draw(16, 16, 8, 8, &g, &c);
        in_range = in_range && c.h == 8 && c.w == 8 && c.y >= 0 && c.y <= 8 && c.x >= 0 && c.x <= 8;
        if (in_range) seen_y[c.y]++, seen_x[c.x]++;
    }
    CHECK(in_range, "windows inside the latent");
    for (int i = 0; i < 9; i++)
        CHECK(seen_y[i] > 15 && seen_x[i] > 15, "position %d: %d (y), %d (x) of 400", i, seen_y[i],
              seen_x[i]);
    hl_rng g = {0};
    hl_rng_seed(&g, 1);
    hl_rng_u32(&g);
    int before = g.next;
    hl_gan_crop c;
    hl_gan_crop_draw(16, 16, 16, 16, &g, &c); /* the whole latent: no draw */
    CHECK(c.y == 0 && c.x == 0 && g.next == before, "whole latent: no draw");
    /* copy and its backward on 2 planes of 4x6, window 2x3 at (1, 2) */
    float src[48], dst[12], back[48];
    for (int i = 0; i < 48; i++) src[i] = (float)i;
    c = (hl_gan_crop){2, 3, 1, 2};
    hl_gan_crop_copy(src, 2, 4, 6, &c, dst);
    const float want[12] = {8, 9, 10, 14, 15, 16, 32, 33, 34, 38, 39, 40};
    CHECK(!memcmp(dst, want, sizeof want), "crop copy");
    hl_gan_crop_uncrop(dst, 2, 4, 6, &c, back);
    bool ok = true;
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 6; j++) {
                int k = (p * 4 + i) * 6 + j;
                bool inside = i >= 1 && i < 3 && j >= 2 && j < 5;
                ok = ok && back[k] == (inside ? src[k] : 0);
            }
    CHECK(ok, "uncrop: the window back in place, zero outside");
}

/* The tiny model (load_tiny) and a fresh folder root (a mkdtemp template): false when the model
 * did not load (the failure is counted). */
static bool tiny_open(hl_dit_config *cfg, hl_params *L, float **w, hl_dit **m, char *root) {
    hl_error e = {0};
    CHECK(load_tiny(cfg, L, w, m, &e) == HL_OK, "%s", e.msg);
    if (!*m) return false;
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    return true;
}

/* Removes root and frees what tiny_open gave. */
static void tiny_done(const char *root, hl_dit *m, float *w, hl_params *L) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0, "rm");
    hl_dit_free(m);
    free(w);
    hl_params_free(L);
}

/* What helios train gives an objective on the tiny model: samples per step, per micro-batch. */
static hl_train_env tiny_env(const hl_params *L, const hl_dit_config *cfg, const float *init,
                             const char *out, int spp, int batch) {
    return (hl_train_env){.config_path = "test.json",
                          .layout = L,
                          .dit = cfg,
                          .init_params = init,
                          .seed = 3,
                          .data = "synthetic",
                          .model = MODEL,
                          .output = out,
                          .samples_per_step = spp,
                          .batch = batch};
}

/* The loop's hooks after a step of one micro-batch in one process (train_loop.h). */
static hl_status end_step(void *obj, int64_t step, hl_error *e) {
    HL_TRY(hl_stage3_sync.micro_batch(obj, NULL, step, 0, e));
    return hl_stage3_sync.step_end(obj, NULL, step, e);
}

/* A "stage3" objective over the tiny model (teacher = the same weights). */
static hl_status make_stage3(const char *json, const hl_train_env *env, void **obj, hl_error *e) {
    hl_json *j;
    HL_TRY(hl_json_parse(json, strlen(json), &j, e));
    hl_status st = hl_stage3_create(j, env, obj, e);
    hl_json_free(j);
    return st;
}

static void last_terms(const char *dir, double *gan_g, double *gan_d) {
    char p[512], line[1024] = "", cur[1024];
    snprintf(p, sizeof p, "%s/stage3.tsv", dir);
    FILE *f = fopen(p, "r");
    if (!f) return;
    while (fgets(cur, sizeof cur, f)) memcpy(line, cur, sizeof line);
    fclose(f);
    double v[6] = {0};
    sscanf(line, "%lf %lf %lf %lf %lf %lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]);
    *gan_g = v[3], *gan_d = v[5];
}

#define S3_COMMON                                                                              \
    "\"type\": \"stage3\", \"gen_every\": 1, \"teacher_steps\": 1, \"eval_prompts\": 0, "      \
    "\"steps\": [1, 1, 1], \"critic_lr\": 1e-4, \"synthetic\": {\"clips\": 2, \"frames\": 2, " \
    "\"height\": 16, \"width\": 16, \"text_len\": 8}"

static void test_gan_start(void) {
    hl_error e = {0};
    hl_dit_config cfg;
    hl_params L;
    float *w = NULL;
    hl_dit *m = NULL;
    char root[] = "/tmp/helios_s3_XXXXXX", d_gan[300], d_dmd[300];
    if (!tiny_open(&cfg, &L, &w, &m, root)) return;
    snprintf(d_gan, sizeof d_gan, "%s/gan", root);
    snprintf(d_dmd, sizeof d_dmd, "%s/dmd", root);
    hl_train_env env = tiny_env(&L, &cfg, w, d_gan, 1, 1);
    void *gan = NULL, *dmd = NULL;
    CHECK(make_stage3("{" S3_COMMON ", \"gan_g_weight\": 0.05, \"gan_d_weight\": 0.01, "
                      "\"gan_start\": 2}",
                      &env, &gan, &e) == HL_OK,
          "%s", e.msg);
    env.output = d_dmd;
    CHECK(make_stage3("{" S3_COMMON "}", &env, &dmd, &e) == HL_OK, "%s", e.msg);
    void *bad = NULL;
    CHECK(make_stage3("{" S3_COMMON ", \"gan_crop\": 0}", &env, &bad, &e) != HL_OK &&
              strstr(e.msg, "objective.gan_crop"),
          "gan_crop 0: %s", e.msg);
    CHECK(make_stage3("{" S3_COMMON ", \"gan_start\": -1}", &env, &bad, &e) != HL_OK &&
              strstr(e.msg, "objective.gan_start"),
          "gan_start -1: %s", e.msg);
    if (!gan || !dmd) goto out;
    size_t N = (size_t)L.total;
    float *ga = calloc(N, 4), *gb = calloc(N, 4);
    for (int64_t s = 0; s < 3; s++) {
        /* the student's weights stay w: the generator gradients of both compare directly */
        memset(ga, 0, N * 4), memset(gb, 0, N * 4);
        hl_rng ra = {0}, rb = {0};
        hl_rng_seed(&ra, 100 + (uint64_t)s), hl_rng_seed(&rb, 100 + (uint64_t)s);
        double la = 0, lb = 0, gg = -1, gd = -1;
        CHECK(hl_stage3_step(gan, &ra, s, w, ga, &la, &e) == HL_OK && end_step(gan, s, &e) == HL_OK,
              "%s", e.msg);
        CHECK(hl_stage3_step(dmd, &rb, s, w, gb, &lb, &e) == HL_OK && end_step(dmd, s, &e) == HL_OK,
              "%s", e.msg);
        last_terms(d_gan, &gg, &gd);
        size_t differ = 0;
        for (size_t i = 0; i < N; i++) differ += memcmp(&ga[i], &gb[i], 4) != 0;
        printf("  step %lld: loss %.9g (GAN configured) vs %.9g (DMD only), L_G %.6g, L_D %.6g, "
               "%zu of %zu gradients differ\n",
               (long long)s, la, lb, gg, gd, differ, N);
        if (s < 2) {
            CHECK(la == lb && differ == 0,
                  "before gan_start: the DMD-only loss and generator gradient, bit for bit");
            CHECK(gg == 0 && gd == 0, "before gan_start: GAN terms 0");
        } else {
            CHECK(la != lb && differ > 0, "from gan_start: the GAN changes loss and gradient");
            CHECK(gg > 0 && gd > 0, "from gan_start: GAN terms > 0");
        }
    }
    free(ga), free(gb);
out:
    hl_stage3_destroy(gan);
    hl_stage3_destroy(dmd);
    tiny_done(root, m, w, &L);
}

/* OUT/NAME.safetensors' exp_avg.* of layout L into out (n floats). */
static hl_status read_moment(const char *dir, const char *name, const hl_params *L, float *out,
                             hl_error *e) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s.safetensors", dir, name);
    hl_safetensors *st;
    HL_TRY(hl_st_open(p, &st, e));
    hl_status s = HL_OK;
    for (size_t i = 0; i < L->n && s == HL_OK; i++) {
        char key[256];
        snprintf(key, sizeof key, "exp_avg.%s", L->p[i].name);
        const hl_st_tensor *t = hl_st_find(st, key);
        if (!t || t->nbytes != (size_t)L->p[i].numel * 4)
            s = hl_fail(e, HELIOS_ERR_FORMAT, "%s", key);
        else memcpy(out + L->p[i].offset, t->data, t->nbytes);
    }
    hl_st_close(st);
    return s;
}

/* Runs samples [first, first + n) as one step (one micro-batch of n) into grads, the hooks
 * after, then writes the critic and heads to dir. */
static hl_status run_step(void *obj, int64_t first, int n, int64_t step, const float *w,
                          float *grads, const char *dir, hl_error *e) {
    for (int i = 0; i < n; i++) {
        hl_rng r = {0};
        hl_rng_seed(&r, 100 + (uint64_t)(first + i));
        double loss;
        HL_TRY(hl_stage3_step(obj, &r, first + i, w, grads, &loss, e));
    }
    HL_TRY(end_step(obj, step, e));
    if (mkdir(dir, 0755) != 0) return hl_fail(e, HELIOS_ERR_IO, "mkdir %s", dir);
    return hl_stage3_save(obj, dir, e);
}

/* The critic (and the heads) update once per optimizer step with the mean of its samples'
 * gradients: a step of 2 samples (batch 2) against two 1-sample runs of the same samples (each
 * from the initial critic; gen_every 1 and no re-noise decay, so a sample computes the same
 * whatever its step). With critic_betas [0, 0.999], AdamW's first exp_avg is its gradient, bit
 * for bit: the pair's is (g0 + g1) / 2 of the singles' (no clipping: critic_clip 0). The student's
 * gradient of the pair is the sum of the singles'. */
static void test_step_update(void) {
    hl_error e = {0};
    hl_dit_config cfg;
    hl_params L;
    float *w = NULL;
    hl_dit *m = NULL;
    char root[] = "/tmp/helios_s3u_XXXXXX", d[3][300], ck[3][320];
    if (!tiny_open(&cfg, &L, &w, &m, root)) return;
    const char *js = "{" S3_COMMON ", \"renoise_decay_steps\": 0, \"critic_clip\": 0, "
                     "\"gan_g_weight\": 0.05, \"gan_d_weight\": 0.01, \"gan_start\": 0}";
    void *obj[3] = {NULL, NULL, NULL}; /* the pair, sample 0 alone, sample 1 alone */
    for (int k = 0; k < 3; k++) {
        snprintf(d[k], sizeof d[k], "%s/%d", root, k);
        snprintf(ck[k], sizeof ck[k], "%s/ck", d[k]);
        hl_train_env env = tiny_env(&L, &cfg, w, d[k], k ? 1 : 2, k ? 1 : 2);
        CHECK(make_stage3(js, &env, &obj[k], &e) == HL_OK, "%s", e.msg);
    }
    size_t N = (size_t)L.total;
    float *g[3], *mo[3];
    for (int k = 0; k < 3; k++) g[k] = calloc(N, 4), mo[k] = malloc(N * 4);
    if (!obj[0] || !obj[1] || !obj[2]) goto out;
    CHECK(run_step(obj[0], 0, 2, 0, w, g[0], ck[0], &e) == HL_OK, "%s", e.msg);
    CHECK(run_step(obj[1], 0, 1, 0, w, g[1], ck[1], &e) == HL_OK, "%s", e.msg);
    CHECK(run_step(obj[2], 1, 1, 1, w, g[2], ck[2], &e) == HL_OK, "%s", e.msg);
    const char *name[2] = {"critic", "gan"};
    for (int f = 0; f < 2; f++) {
        hl_params H = {0};
        const hl_params *lay = &L;
        if (f == 1) { /* the heads' layout, as the objective builds it */
            hl_gan_config gc;
            hl_gan_config_default(&cfg, &gc);
            CHECK(hl_gan_params_layout(&gc, &H, &e) == HL_OK, "%s", e.msg);
            lay = &H;
        }
        for (int k = 0; k < 3; k++)
            CHECK(read_moment(ck[k], name[f], lay, mo[k], &e) == HL_OK, "%s", e.msg);
        size_t bad = 0, moved = 0;
        for (int64_t i = 0; i < lay->total; i++) {
            float want = (0.0f + mo[1][i] + mo[2][i]) * 0.5f;
            bad += memcmp(&want, &mo[0][i], 4) != 0;
            moved += mo[1][i] != mo[2][i];
        }
        printf("  %s: exp_avg of the pair = the singles' mean at %lld of %lld (%zu differ "
               "between the singles)\n",
               name[f], (long long)(lay->total - (int64_t)bad), (long long)lay->total, moved);
        CHECK(bad == 0 && moved > 0, "%s: one update with the mean of the samples' gradients",
              name[f]);
        hl_params_free(&H);
    }
    size_t bad = 0;
    for (size_t i = 0; i < N; i++) {
        float want = 0.0f + g[1][i] + g[2][i];
        bad += memcmp(&want, &g[0][i], 4) != 0;
    }
    CHECK(bad == 0, "the student's gradient of the pair = the sum of the singles' (%zu differ)",
          bad);
out:
    for (int k = 0; k < 3; k++) hl_stage3_destroy(obj[k]), free(g[k]), free(mo[k]);
    tiny_done(root, m, w, &L);
}

/* Every sample of a step follows the optimizer step (TTUR, gan_start), not its own index: with 2
 * samples per step, gen_every 2 and gan_start 1, samples 0 and 1 (step 0) both run the generator
 * (each adds a student gradient) and no GAN term, samples 2 and 3 (step 1) run none (the student's
 * gradient stays) and the GAN; stage3.tsv has one line per step. */
static void test_step_ttur(void) {
    hl_error e = {0};
    hl_dit_config cfg;
    hl_params L;
    float *w = NULL;
    hl_dit *m = NULL;
    char root[] = "/tmp/helios_s3t_XXXXXX";
    if (!tiny_open(&cfg, &L, &w, &m, root)) return;
    hl_train_env env = tiny_env(&L, &cfg, w, root, 2, 2);
    void *obj = NULL;
    CHECK(make_stage3("{" S3_COMMON ", \"gen_every\": 2, \"gan_g_weight\": 0.05, "
                      "\"gan_d_weight\": 0.01, \"gan_start\": 1}",
                      &env, &obj, &e) == HL_OK,
          "%s", e.msg);
    size_t N = (size_t)L.total;
    float *g = calloc(N, 4), *before = malloc(N * 4);
    bool grew[4] = {false};
    double gan[2][2] = {{-1, -1}, {-1, -1}};
    for (int64_t i = 0; obj && i < 4; i++) {
        memcpy(before, g, N * 4);
        hl_rng r = {0};
        hl_rng_seed(&r, 100 + (uint64_t)i);
        double loss;
        CHECK(hl_stage3_step(obj, &r, i, w, g, &loss, &e) == HL_OK, "%s", e.msg);
        grew[i] = memcmp(before, g, N * 4) != 0;
        if (i % 2 == 0) continue;
        CHECK(end_step(obj, i / 2, &e) == HL_OK, "%s", e.msg);
        last_terms(root, &gan[i / 2][0], &gan[i / 2][1]);
    }
    CHECK(grew[0] && grew[1], "step 0 (a generator step): both samples add a student gradient");
    CHECK(!grew[2] && !grew[3], "step 1 (critic only): no sample adds a student gradient");
    CHECK(gan[0][0] == 0 && gan[0][1] == 0, "step 0 (before gan_start): GAN terms 0 (%g, %g)",
          gan[0][0], gan[0][1]);
    CHECK(gan[1][1] > 0, "step 1 (from gan_start): L_D > 0 (%g)", gan[1][1]);
    hl_stage3_destroy(obj);
    free(g), free(before);
    tiny_done(root, m, w, &L);
}

/* Stage 3's histories get Frame-Aware Corrupt (spec §6.3 step 1): the same target chunks as
 * without it, and every later chunk's history changed unless its draw kept it clean. */
static void test_corrupt_history(void) {
    hl_error e = {0};
    hl_dit_config cfg;
    hl_params L;
    float *w = NULL;
    hl_dit *m = NULL;
    char root[] = "/tmp/helios_s3c_XXXXXX", d_on[300], d_off[300];
    if (!tiny_open(&cfg, &L, &w, &m, root)) return;
    snprintf(d_on, sizeof d_on, "%s/on", root);
    snprintf(d_off, sizeof d_off, "%s/off", root);
    hl_train_env env = tiny_env(&L, &cfg, w, d_on, 1, 1);
    void *on = NULL, *off = NULL, *bad = NULL;
    CHECK(make_stage3("{" S3_COMMON ", \"p_t2v\": 0, \"p_v2v\": 0}", &env, &on, &e) == HL_OK, "%s",
          e.msg);
    env.output = d_off;
    CHECK(make_stage3("{" S3_COMMON ", \"p_t2v\": 0, \"p_v2v\": 0, \"corrupt_history\": false}",
                      &env, &off, &e) == HL_OK,
          "%s", e.msg);
    CHECK(make_stage3("{" S3_COMMON ", \"corrupt\": \"heavy\"}", &env, &bad, &e) != HL_OK &&
              strstr(e.msg, "objective.corrupt"),
          "corrupt \"heavy\": %s", e.msg);
    int later = 0, changed = 0, clean = 0, same_target = 1;
    for (uint64_t seed = 0; on && off && seed < 24; seed++) {
        hl_distill_common *a = on, *b = off;
        hl_distill_hist ha = {0}, hb = {0};
        hl_rng ra = {0}, rb = {0};
        hl_rng_seed(&ra, seed), hl_rng_seed(&rb, seed);
        CHECK(hl_distill_hist_draw(a, (int64_t)(seed % 2), &ra, &ha, &e) == HL_OK &&
                  hl_distill_hist_draw(b, (int64_t)(seed % 2), &rb, &hb, &e) == HL_OK,
              "%s", e.msg);
        size_t plane = (size_t)ha.s.C * ha.s.H * ha.s.W * sizeof(float);
        same_target &= ha.s.chunk == hb.s.chunk && ha.first == hb.first &&
                       !memcmp(ha.s.x0, hb.s.x0, plane * (size_t)ha.s.F);
        if (!ha.first) {
            const hl_history_inputs *x = &ha.s.hist, *y = &hb.s.hist;
            later++;
            clean += ha.s.corrupt.history_clean;
            changed += memcmp(x->lat_long, y->lat_long, plane * (size_t)ha.s.n_long) ||
                       memcmp(x->lat_mid, y->lat_mid, plane * (size_t)ha.s.n_mid) ||
                       memcmp(x->lat_short, y->lat_short, plane * 2);
        }
        hl_distill_hist_free(&ha), hl_distill_hist_free(&hb);
    }
    printf("  %d later chunks of 24 draws: %d histories corrupted, %d kept clean\n", later, changed,
           clean);
    CHECK(same_target, "corruption changed the target chunk or task");
    CHECK(later > 0 && changed > 0 && changed + clean == later,
          "later chunks %d: %d corrupted + %d clean", later, changed, clean);
    hl_stage3_destroy(on);
    hl_stage3_destroy(off);
    tiny_done(root, m, w, &L);
}

/* helios train's checkpoints with ema_folder "ema": OUT/checkpoint-S/ema/ is a Distilled model
 * folder holding the EMA: e_S = e_{S-1} - (1 - decay)(e_{S-1} - p_S) after generator steps (TTUR:
 * steps 0 and 2 of gen_every 2), e_S = e_{S-1} after critic-only steps, e_0 = the initial
 * weights; checked bit for bit against the students p_S of every checkpoint. */
static void test_ema_export(void) {
    hl_error e = {0};
    hl_dit_config cfg;
    hl_params L;
    float *w = NULL;
    hl_dit *m = NULL;
    char root[] = "/tmp/helios_ema_XXXXXX";
    if (!tiny_open(&cfg, &L, &w, &m, root)) return;
    size_t N = (size_t)L.total;
    float *init = malloc(N * 4), *ema = malloc(N * 4), *want = malloc(N * 4), *p = malloc(N * 4),
          *got = malloc(N * 4);
    memcpy(init, w, N * 4);
    hl_train_env env = tiny_env(&L, &cfg, init, root, 1, 1);
    void *obj = NULL;
    const char *js = "{\"type\": \"stage3\", \"gen_every\": 2, \"teacher_steps\": 1, "
                     "\"eval_prompts\": 0, \"steps\": [1, 1, 1], \"synthetic\": {\"clips\": 2, "
                     "\"frames\": 2, \"height\": 16, \"width\": 16, \"text_len\": 8}}";
    CHECK(make_stage3(js, &env, &obj, &e) == HL_OK, "%s", e.msg);
    if (!obj) goto out;
    hl_train_config tc = {0};
    tc.steps = 4, tc.batch = 1, tc.micro_batches = 1;
    tc.adamw = (hl_adamw_config){0.0, 0.999, 1e-8, 1e-3};
    tc.lr = (hl_lr_schedule){HL_LR_CONSTANT, 1e-3, 0, 0, 4};
    tc.clip = 10, tc.ema_decay = 0.9, tc.seed = 3, tc.checkpoint_every = 1, tc.keep = 0;
    tc.io = (hl_ckpt_io){.out_dir = root,
                         .component = "transformer",
                         .weights_name = "diffusion_pytorch_model.safetensors",
                         .config_json = "{}",
                         .layout = &L,
                         .extra_save = hl_stage3_save,
                         .extra_load = hl_stage3_load,
                         .extra_user = obj,
                         .ema_folder = "ema"};
    tc.updates = hl_stage3_updates;
    tc.sync = &hl_stage3_sync;
    hl_train_result res;
    CHECK(hl_train_run(&tc, hl_stage3_step, NULL, obj, w, ema, &res, &e) == HL_OK, "%s", e.msg);
    memcpy(want, init, N * 4);
    for (int S = 1; S <= 4; S++) {
        char d[400], q[500];
        snprintf(d, sizeof d, "%s/checkpoint-%d", root, S);
        CHECK(hl_distill_load_weights(d, &L, p, &e) == HL_OK, "%s", e.msg);
        snprintf(d, sizeof d, "%s/checkpoint-%d/ema", root, S);
        CHECK(hl_distill_load_weights(d, &L, got, &e) == HL_OK, "%s", e.msg);
        if (hl_dmd_generator_step(S - 1, 2)) hl_ema_update(want, p, (int64_t)N, 0.9);
        CHECK(!memcmp(got, want, N * 4), "checkpoint-%d: the EMA recurrence, bit for bit", S);
        snprintf(q, sizeof q, "%s/model_index.json", d);
        CHECK(hl_file_is_regular(q), "checkpoint-%d/ema/model_index.json", S);
        snprintf(q, sizeof q, "%s/scheduler/scheduler_config.json", d);
        CHECK(hl_file_is_regular(q), "checkpoint-%d/ema/scheduler", S);
    }
    size_t differ = 0;
    double md = 0;
    for (size_t i = 0; i < N; i++) {
        differ += got[i] != p[i];
        md = fmax(md, fabs((double)got[i] - p[i]));
    }
    printf("  EMA vs student after 4 steps: %zu of %zu weights differ, max %.3g\n", differ, N, md);
    CHECK(differ > N / 2, "the EMA differs from the student");
    CHECK(!memcmp(got, ema, N * 4), "the exported EMA is the loop's");
out:
    hl_stage3_destroy(obj);
    free(init), free(ema), free(want), free(p), free(got);
    tiny_done(root, m, w, &L);
}

/* Runs the loop to the end of its next chunk. */
static hl_status next_chunk(hl_loop *l, hl_loop_event *ev) {
    hl_status st = HL_OK;
    *ev = (hl_loop_event){0};
    while (st == HL_OK && !ev->chunk_done) st = hl_loop_step(l, ev);
    return st;
}

static void test_sampler_history(void) {
    hl_error e = {0};
    hl_dit_config cfg;
    hl_params L;
    float *w = NULL;
    hl_dit *m = NULL;
    CHECK(load_tiny(&cfg, &L, &w, &m, &e) == HL_OK, "%s", e.msg);
    if (!m) return;
    hl_backend *be = hl_backend_new(HELIOS_BACKEND_CPU, 0, &e);
    hl_ctx ctx = {be, &e};
    hl_distill_shape sh;
    hl_distill_shape_default(&sh);
    sh.C = cfg.in_channels, sh.F = 2, sh.H = 16, sh.W = 16, sh.L = 8;
    sh.teacher_steps = 2;
    hl_distill_sampler s;
    CHECK(hl_distill_sampler_init(&s, &sh, &cfg, &e) == HL_OK, "%s", e.msg);
    size_t n = (size_t)sh.C * sh.F * sh.H * sh.W;
    float *text = malloc((size_t)sh.L * cfg.text_dim * sizeof *text), *noise = malloc(n * 4),
          *a = malloc(n * 4), *b = malloc(n * 4), *c0 = malloc(n * 4);
    fill_random(text, (int64_t)sh.L * cfg.text_dim, 5);
    /* helios generate's chunk loop with the Distilled recipe: chunks 0 and 1 */
    hl_loop_config c;
    hl_loop_config_default(&c);
    c.pyramid = true, c.n_stages = sh.levels, c.latent_frames = sh.F;
    for (int i = 0; i < 3; i++) c.history_sizes[i] = sh.history_sizes[i];
    c.height = sh.H, c.width = sh.W, c.seed = 11;
    c.cfg_zero_star = false, c.use_zero_init = false;
    c.sched = sh.sched;
    for (int k = 0; k < sh.levels; k++) c.stage_steps[k] = sh.steps[k];
    c.guidance_scale = 1.0;
    c.amplify_first_chunk = true;
    hl_loop *l = NULL;
    hl_loop_event ev;
    hl_history h = {0};
    hl_rng g = {0};
    CHECK(hl_loop_new(&ctx, m, &c, text, NULL, sh.L, NULL, NULL, &l) == HL_OK, "%s", e.msg);
    CHECK(l && next_chunk(l, &ev) == HL_OK && ev.chunk == 0, "chunk 0: %s", e.msg);
    if (l) memcpy(c0, ev.latents, n * 4);
    CHECK(hl_history_init(&h, 1, sh.C, sh.H, sh.W, sh.history_sizes, &e) == HL_OK, "%s", e.msg);
    if (l) { /* the history and the generator chunk 1 starts from */
        const hl_history *lh = hl_loop_history(l);
        memcpy(h.frames, lh->frames, (size_t)sh.C * h.total * sh.H * sh.W * 4);
        memcpy(h.anchor, lh->anchor, (size_t)sh.C * sh.H * sh.W * 4);
        h.has_anchor = lh->has_anchor, h.generated = lh->generated;
        g = *hl_loop_rng(l);
    }
    CHECK(l && h.has_anchor && h.generated == sh.F, "the history after chunk 0");
    CHECK(l && next_chunk(l, &ev) == HL_OK && ev.chunk == 1, "chunk 1: %s", e.msg);
    if (l) memcpy(a, ev.latents, n * 4);
    hl_loop_free(l);
    /* the sampler on that chunk: the loop's history, its generator */
    hl_history_inputs hi;
    CHECK(hl_history_inputs_build(&h, sh.F, &hi, &e) == HL_OK, "%s", e.msg);
    hl_distill_sampler_set_history(&s, &hi);
    CHECK(hl_distill_level_steps(&s, 0) == 2 && hl_distill_level_steps(&s, 2) == 2,
          "a later chunk: the plain schedule, 2 steps per level");
    hl_rng g1 = g;
    hl_rng_randn_f32(&g1, noise, (int64_t)n);
    hl_distill_run run = {{-1, -1, -1}, false, 0, NULL, 0};
    CHECK(hl_distill_sample(&ctx, &s, m, text, noise, &g1, &run, b) == HL_OK, "%s", e.msg);
    {
        double md = 0;
        for (size_t i = 0; i < n; i++) md = fmax(md, fabs(a[i] - b[i]));
        CHECK(md == 0,
              "sampler with history == the chunk loop's chunk 1, bit for bit (max diff %g)", md);
    }
    /* the same noise without the history (the first chunk's inputs and schedule): another sample */
    hl_distill_sampler_set_history(&s, NULL);
    CHECK(hl_distill_level_steps(&s, 0) == 4, "back to the first chunk: amplified");
    g1 = g;
    hl_rng_randn_f32(&g1, noise, (int64_t)n);
    CHECK(hl_distill_sample(&ctx, &s, m, text, noise, &g1, &run, b) == HL_OK, "%s", e.msg);
    CHECK(memcmp(a, b, n * 4) != 0, "the history changes the sample");
    /* inputs -> window -> inputs */
    hl_history h2 = {0};
    hl_history_inputs hi2 = {0};
    CHECK(hl_distill_history_from_inputs(&hi, sh.C, sh.H, sh.W, sh.history_sizes, &h2, &e) ==
                  HL_OK &&
              hl_history_inputs_build(&h2, sh.F, &hi2, &e) == HL_OK,
          "%s", e.msg);
    size_t fr = (size_t)sh.C * sh.H * sh.W * 4;
    CHECK(hi2.lat_long && !memcmp(hi.lat_long, hi2.lat_long, fr * sh.history_sizes[0]) &&
              !memcmp(hi.lat_mid, hi2.lat_mid, fr * sh.history_sizes[1]) &&
              !memcmp(hi.lat_short, hi2.lat_short, fr * 2) &&
              !memcmp(hi.idx_cur, hi2.idx_cur, (size_t)sh.F * sizeof(int64_t)),
          "history inputs -> window -> the same inputs");
    /* the teacher continues a history: another sample than from an empty one */
    CHECK(hl_distill_teacher_sample(&ctx, &sh, m, text, 9, &h2, NULL, NULL, a) == HL_OK &&
              hl_distill_teacher_sample(&ctx, &sh, m, text, 9, NULL, NULL, NULL, b) == HL_OK,
          "%s", e.msg);
    CHECK(memcmp(a, b, n * 4) != 0, "the teacher sees the history");
    hl_history_inputs_free(&hi2);
    hl_history_free(&h2);
    hl_history_inputs_free(&hi);
    hl_history_free(&h);
    hl_distill_sampler_free(&s);
    free(text), free(noise), free(a), free(b), free(c0);
    hl_backend_free(be);
    hl_dit_free(m);
    free(w);
    hl_params_free(&L);
}

int main(void) {
    test_dmd_loss();
    test_renoise_schedule();
    test_sampler();
    test_sampler_history();
    test_crop();
    test_gan_start();
    test_corrupt_history();
    test_step_update();
    test_step_ttur();
    test_ema_export();
    return test_done("test_train_stage3");
}
