/* src/train, the data side of the stage-1 (Base) objective and the VAE loss pieces: timestep
 * sampling, noisy/target and the flow loss against the reference vector
 * grads_transformer_flow_stage1 (oracle README §9.2); each Frame-Aware Corrupt operation against a
 * hand-computed expectation; the history pass's probabilities, anchor rule and zero frames; the
 * clip -> sample layout against the inference window (sample/history.h); determinism; the task
 * mix statistics; the VAE loss gradients against finite differences in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dit/dit.h"
#include "io/safetensors.h"
#include "sample/history.h"
#include "sample/rng.h"
#include "test_util.h"
#include "train/corrupt.h"
#include "train/loss.h"
#include "train/stage1.h"
#include "train/timestep.h"
#include "train/vae_loss.h"

/* Distance in units in the last place between two finite floats of the same sign. */
static int64_t ulps(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4), memcpy(&ib, &b, 4);
    if ((ia < 0) != (ib < 0)) return a == b ? 0 : INT64_MAX;
    int64_t d = (int64_t)ia - (int64_t)ib;
    return d < 0 ? -d : d;
}

static int64_t max_ulps(const float *a, const float *b, int64_t n) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t d = ulps(a[i], b[i]);
        if (d > m) m = d;
    }
    return m;
}

static double hl_max_abs_diff_f(const float *a, const float *b, int64_t n, double *ref_max) {
    *ref_max = max_abs(b, n);
    return max_abs_diff(a, b, n);
}

/* ---- timestep sampling, noisy/target, flow loss: the reference vector ------------------------ */

static void test_oracle(void) {
    hl_error err = {0};
    hl_safetensors *st = NULL;
    const char *path = vector_path("grads_transformer_flow_stage1.safetensors");
    if (hl_st_open(path, &st, &err) != HL_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    float *u_logit = NULL, *u = NULL, *sigma = NULL, *tstep = NULL, *x0 = NULL, *noise = NULL,
          *hidden = NULL, *target = NULL, *pred = NULL, *loss0 = NULL, *loss = NULL;
    int64_t *index = NULL, *idx_s = NULL, *idx_m = NULL, *idx_l = NULL, *idx_h = NULL;
    const int64_t n = 16 * 3 * 8 * 8;
    bool ok = hl_st_read_f32(st, "u_logit", 1, &u_logit, &err) == HL_OK &&
              hl_st_read_f32(st, "u", 1, &u, &err) == HL_OK &&
              hl_st_read_i64(st, "index", 1, &index, &err) == HL_OK &&
              hl_st_read_f32(st, "sigma", 1, &sigma, &err) == HL_OK &&
              hl_st_read_f32(st, "sample0.timestep", 1, &tstep, &err) == HL_OK &&
              hl_st_read_f32(st, "x0", n, &x0, &err) == HL_OK &&
              hl_st_read_f32(st, "noise", n, &noise, &err) == HL_OK &&
              hl_st_read_f32(st, "sample0.hidden_states", n, &hidden, &err) == HL_OK &&
              hl_st_read_f32(st, "sample0.target", n, &target, &err) == HL_OK &&
              hl_st_read_f32(st, "sample0.model_pred", n, &pred, &err) == HL_OK &&
              hl_st_read_f32(st, "sample0.loss", 1, &loss0, &err) == HL_OK &&
              hl_st_read_f32(st, "loss", 1, &loss, &err) == HL_OK &&
              hl_st_read_i64(st, "indices_latents_history_short", 2, &idx_s, &err) == HL_OK &&
              hl_st_read_i64(st, "indices_latents_history_mid", 2, &idx_m, &err) == HL_OK &&
              hl_st_read_i64(st, "indices_latents_history_long", 16, &idx_l, &err) == HL_OK &&
              hl_st_read_i64(st, "indices_hidden_states", 3, &idx_h, &err) == HL_OK;
    CHECK(ok, "%s", err.msg);
    if (ok) {
        hl_flow_table t;
        CHECK(hl_flow_table_init(&t, 1000, 1.0f, &err) == HL_OK, "%s", err.msg);
        float su = hl_tsample_sigmoid(u_logit[0]);
        CHECK(ulps(su, u[0]) <= 1, "sigmoid(%.9g) = %.9g, reference %.9g", (double)u_logit[0],
              (double)su, (double)u[0]);
        hl_tdraw d;
        hl_tsample_from_u(&t, u_logit[0], u[0], &d);
        CHECK(d.index == index[0], "index %lld, reference %lld", (long long)d.index,
              (long long)index[0]);
        CHECK(d.sigma == sigma[0], "sigma %.9g, reference %.9g", (double)d.sigma, (double)sigma[0]);
        CHECK(d.timestep == tstep[0], "timestep %.9g, reference %.9g", (double)d.timestep,
              (double)tstep[0]);
        hl_tsample_from_u(&t, u_logit[0], su, &d); /* the index from our own sigmoid too */
        CHECK(d.index == index[0], "index from sigmoid %lld", (long long)d.index);

        float *noisy = malloc(n * sizeof *noisy), *tg = malloc(n * sizeof *tg);
        float *dpred = malloc(n * sizeof *dpred);
        hl_flow_noisy(x0, noise, sigma[0], n, noisy, tg);
        int64_t un = max_ulps(noisy, hidden, n), ut = max_ulps(tg, target, n);
        CHECK(un <= 1, "noisy: %lld ulps from the reference", (long long)un);
        CHECK(ut == 0, "target: %lld ulps from the reference", (long long)ut);
        printf("oracle: u %lld ulp, index %lld, sigma %.9g, timestep %.9g, noisy max %lld ulp, "
               "target max %lld ulp\n",
               (long long)ulps(su, u[0]), (long long)d.index, (double)d.sigma, (double)d.timestep,
               (long long)un, (long long)ut);

        double l = hl_flow_loss(pred, target, NULL, 1, n, dpred);
        double rel0 = fabs(l - loss0[0]) / fabs((double)loss0[0]);
        double rel = fabs(l - loss[0]) / fabs((double)loss[0]);
        CHECK(rel0 < 1e-6 && rel < 1e-6, "loss %.9g, reference %.9g / %.9g", l, (double)loss0[0],
              (double)loss[0]);
        printf("oracle: loss %.9g vs %.9g (rel %.2e)\n", l, (double)loss[0], rel);
        /* dL/dpred against central differences of the double loss, at a few elements */
        double worst = 0.0;
        for (int64_t i = 0; i < n; i += 97) {
            float keep = pred[i], h = 1e-2f;
            pred[i] = keep + h;
            double lp = hl_flow_loss(pred, target, NULL, 1, n, NULL);
            float xp = pred[i];
            pred[i] = keep - h;
            double lm = hl_flow_loss(pred, target, NULL, 1, n, NULL);
            float xm = pred[i];
            pred[i] = keep;
            double fd = (lp - lm) / ((double)xp - (double)xm);
            double e = fabs(fd - dpred[i]) / (fabs(fd) + 1e-9);
            if (e > worst) worst = e;
        }
        CHECK(worst < 1e-4, "dL/dpred vs finite differences: rel %.3g", worst);
        /* the pipeline's history indices for a 3-frame chunk are the sample's */
        hl_history h;
        int sizes[3] = {16, 2, 1};
        hl_history_inputs in;
        CHECK(hl_history_init(&h, 1, 1, 1, 1, sizes, &err) == HL_OK, "%s", err.msg);
        CHECK(hl_history_inputs_build(&h, 3, &in, &err) == HL_OK, "%s", err.msg);
        CHECK(!memcmp(in.idx_short, idx_s, 2 * 8) && !memcmp(in.idx_mid, idx_m, 2 * 8) &&
                  !memcmp(in.idx_long, idx_l, 16 * 8) && !memcmp(in.idx_cur, idx_h, 3 * 8),
              "history indices differ from the reference's");
        hl_history_inputs_free(&in);
        hl_history_free(&h);
        free(noisy), free(tg), free(dpred);
    }
    free(u_logit), free(u), free(sigma), free(tstep), free(x0), free(noise), free(hidden);
    free(target), free(pred), free(loss0), free(loss), free(index);
    free(idx_s), free(idx_m), free(idx_l), free(idx_h);
    hl_st_close(st);
}

/* The whole stage-1 step on the tiny transformer: our noisy latents and timestep through
 * hl_stage1_dit_input and the forward (reference backend), then the loss, against the vector's
 * model_pred and loss (the forward itself is test_dit's; this checks the chain around it). */
static void test_oracle_forward(void) {
    hl_error err = {0};
    hl_safetensors *st = NULL;
    hl_dit *m = NULL;
    char cfg[4096], wts[4096]; /* vector_path returns a static buffer */
    snprintf(cfg, sizeof cfg, "%s", vector_path("transformer_config.json"));
    snprintf(wts, sizeof wts, "%s", vector_path("transformer_weights_f32.safetensors"));
    if (hl_st_open(vector_path("grads_transformer_flow_stage1.safetensors"), &st, &err) != HL_OK ||
        hl_dit_load(cfg, wts, &m, &err) != HL_OK) {
        CHECK(0, "%s", err.msg);
        hl_st_close(st);
        return;
    }
    const int64_t n = 16 * 3 * 8 * 8, P = 64 * 16;
    float *x0 = NULL, *noise = NULL, *sigma = NULL, *pred_ref = NULL, *loss = NULL, *text = NULL;
    float *u_logit = NULL, *ls = NULL, *lm = NULL, *ll = NULL;
    int64_t *is = NULL, *im = NULL, *il = NULL, *ih = NULL;
    bool ok = hl_st_read_f32(st, "x0", n, &x0, &err) == HL_OK &&
              hl_st_read_f32(st, "noise", n, &noise, &err) == HL_OK &&
              hl_st_read_f32(st, "sigma", 1, &sigma, &err) == HL_OK &&
              hl_st_read_f32(st, "u_logit", 1, &u_logit, &err) == HL_OK &&
              hl_st_read_f32(st, "sample0.model_pred", n, &pred_ref, &err) == HL_OK &&
              hl_st_read_f32(st, "loss", 1, &loss, &err) == HL_OK &&
              hl_st_read_f32(st, "encoder_hidden_states", 16 * 32, &text, &err) == HL_OK &&
              hl_st_read_f32(st, "latents_history_short", 2 * P, &ls, &err) == HL_OK &&
              hl_st_read_f32(st, "latents_history_mid", 2 * P, &lm, &err) == HL_OK &&
              hl_st_read_f32(st, "latents_history_long", 16 * P, &ll, &err) == HL_OK &&
              hl_st_read_i64(st, "indices_latents_history_short", 2, &is, &err) == HL_OK &&
              hl_st_read_i64(st, "indices_latents_history_mid", 2, &im, &err) == HL_OK &&
              hl_st_read_i64(st, "indices_latents_history_long", 16, &il, &err) == HL_OK &&
              hl_st_read_i64(st, "indices_hidden_states", 3, &ih, &err) == HL_OK;
    CHECK(ok, "%s", err.msg);
    if (ok) {
        hl_flow_table t;
        hl_flow_table_init(&t, 1000, 1.0f, &err);
        hl_stage1_sample s;
        memset(&s, 0, sizeof s);
        s.C = 16, s.F = 3, s.H = 8, s.W = 8, s.n_long = 16, s.n_mid = 2, s.n_short = 2;
        s.noisy = malloc(n * sizeof(float)), s.target = malloc(n * sizeof(float));
        float *pred = malloc(n * sizeof(float));
        float u = hl_tsample_sigmoid(u_logit[0]); /* the vector's draw, through our own code */
        hl_tsample_from_u(&t, u_logit[0], u, &s.t);
        CHECK(s.t.sigma == sigma[0], "sigma %.9g", (double)s.t.sigma);
        hl_flow_noisy(x0, noise, s.t.sigma, n, s.noisy, s.target);
        s.hist.lat_short = ls, s.hist.lat_mid = lm, s.hist.lat_long = ll;
        s.hist.idx_short = is, s.hist.idx_mid = im, s.hist.idx_long = il, s.hist.idx_cur = ih;
        helios_dit_input in;
        double ts;
        hl_stage1_dit_input(&s, text, 16, &ts, &in);
        hl_ctx ctx = test_ctx(HELIOS_BACKEND_REF, &err);
        CHECK(hl_dit_forward(&ctx, m, &in, NULL, pred) == HL_OK, "%s", err.msg);
        double ref_max = 0, d = hl_max_abs_diff_f(pred, pred_ref, n, &ref_max);
        double l = hl_flow_loss(pred, s.target, NULL, 1, n, NULL);
        CHECK(d < 1e-4 * fmax(1.0, ref_max), "model_pred off by %.3g (scale %.3g)", d, ref_max);
        CHECK(fabs(l - loss[0]) < 1e-5 * loss[0], "loss %.9g, reference %.9g", l, (double)loss[0]);
        printf("oracle forward: model_pred max abs error %.3g (max %.3g), loss %.9g vs %.9g\n", d,
               ref_max, l, (double)loss[0]);
        free(s.noisy), free(s.target), free(pred);
    }
    free(x0), free(noise), free(sigma), free(pred_ref), free(loss), free(text), free(u_logit);
    free(ls), free(lm), free(ll), free(is), free(im), free(il), free(ih);
    hl_dit_free(m);
    hl_st_close(st);
}

static void test_tables(void) {
    hl_error err = {0};
    hl_flow_table t;
    CHECK(hl_flow_table_init(&t, 1000, 1.0f, &err) == HL_OK, "%s", err.msg);
    CHECK(t.sigmas[0] == 1.0f && t.timesteps[0] == 1000.0f, "first %g", (double)t.sigmas[0]);
    CHECK(t.sigmas[999] == 1.0f / 1000.0f, "last %.9g", (double)t.sigmas[999]);
    CHECK(t.sigmas[581] == 419.0f / 1000.0f, "sig[581] %.9g", (double)t.sigmas[581]);
    /* shift 3 (the UniPC flow_shift): 3s / (1 + 2s) */
    CHECK(hl_flow_table_init(&t, 1000, 3.0f, &err) == HL_OK, "%s", err.msg);
    double s = 0.5, want = 3 * s / (1 + 2 * s);
    CHECK(fabs(t.sigmas[500] - want) < 1e-7, "shift 3: sigma %.9g, want %.9g",
          (double)t.sigmas[500], want);
    CHECK(hl_flow_table_init(&t, 0, 1.0f, &err) == HELIOS_ERR_INVALID_ARG, "n 0 accepted");
    CHECK(hl_flow_table_init(&t, 1000, 0.0f, &err) == HELIOS_ERR_INVALID_ARG, "shift 0 accepted");
    /* u that rounds to 1 clamps to the last index */
    CHECK(hl_flow_table_init(&t, 1000, 1.0f, &err) == HL_OK, "%s", err.msg);
    hl_tdraw d;
    hl_tsample_from_u(&t, 40.0f, hl_tsample_sigmoid(40.0f), &d);
    CHECK(d.index == 999, "sigmoid(40) index %lld", (long long)d.index);
    hl_tsample_from_u(&t, NAN, 5.0f, &d);
    CHECK(d.index == 999, "u 5: index %lld", (long long)d.index);
    hl_tsample_from_u(&t, NAN, -1.0f, &d);
    CHECK(d.index == 0 && d.sigma == 1.0f, "u -1: index %lld", (long long)d.index);
    hl_tsample_from_u(&t, NAN, NAN, &d);
    CHECK(d.index == 0, "u NaN: index %lld", (long long)d.index);
    /* the draw is torch.randn(1) then sigmoid: seed 0 gives randn 1.5410 */
    hl_rng g = {0};
    hl_rng_seed(&g, 0);
    hl_tsample_params p;
    hl_tsample_params_default(&p);
    CHECK(hl_tsample_draw(&p, &t, &g, 1, &d, &err) == HL_OK, "%s", err.msg);
    CHECK(fabsf(d.u_logit - 1.5410f) < 1e-4f && d.index == (int64_t)(d.u * 1000.0f),
          "logit-normal draw %g", (double)d.u_logit);
    /* uniform: mean ~ 0.5 over many draws, logit-normal: u_logit mean ~ 0, std ~ 1 */
    p.kind = HL_TSAMPLE_UNIFORM;
    double su = 0;
    hl_tdraw many[256];
    for (int r = 0; r < 40; r++) {
        CHECK(hl_tsample_draw(&p, &t, &g, 256, many, &err) == HL_OK, "%s", err.msg);
        for (int i = 0; i < 256; i++) su += many[i].u;
    }
    CHECK(fabs(su / 10240 - 0.5) < 0.015, "uniform mean %g", su / 10240);
    p.kind = HL_TSAMPLE_LOGIT_NORMAL;
    p.logit_mean = 0.5f, p.logit_std = 2.0f;
    double m = 0, m2 = 0;
    for (int r = 0; r < 40; r++) {
        CHECK(hl_tsample_draw(&p, &t, &g, 256, many, &err) == HL_OK, "%s", err.msg);
        for (int i = 0; i < 256; i++)
            m += many[i].u_logit, m2 += (double)many[i].u_logit * many[i].u_logit;
    }
    m /= 10240, m2 = sqrt(m2 / 10240 - m * m);
    CHECK(fabs(m - 0.5) < 0.08 && fabs(m2 - 2.0) < 0.08, "logit-normal mean %g std %g", m, m2);
    CHECK(hl_tsample_draw(&p, &t, &g, 0, many, &err) == HELIOS_ERR_INVALID_ARG, "batch 0");
}

static void test_flow_loss_weights(void) {
    /* B = 2 with weights: loss = mean_b(w_b·mean((p - t)²)); gradient 2·w·(p - t)/(B·n) */
    float p[6] = {1, 2, 3, 0, 0, 1}, t[6] = {0, 2, 1, 1, 1, 1}, w[2] = {1.0f, 3.0f}, g[6];
    double l = hl_flow_loss(p, t, w, 2, 3, g);
    double want = 0.5 * ((1 + 0 + 4) / 3.0 + 3.0 * (1 + 1 + 0) / 3.0);
    CHECK(fabs(l - want) < 1e-12, "weighted loss %g, want %g", l, want);
    CHECK(g[0] == 2.0f * 1 * 1 / 6 && g[2] == 2.0f * 2 / 6 && g[3] == 2.0f * 3 * -1 / 6,
          "gradient %g %g %g", (double)g[0], (double)g[2], (double)g[3]);
}

/* ---- single corruption operations --------------------------------------------------------- */

static void test_corrupt_ops(void) {
    hl_error err = {0};
    enum { C = 2, T = 3, H = 2, W = 3, P = H * W };
    float x[C * T * P], x0[C * T * P], eps[C * P];
    fill_random(x, C * T * P, 1);
    fill_random(eps, C * P, 2);
    memcpy(x0, x, sizeof x);
    hl_corrupt_noise(x, C, T, 1, H, W, 0.25f, eps);
    int bad = 0;
    for (int c = 0; c < C; c++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < P; i++) {
                float got = x[(c * T + t) * P + i], in = x0[(c * T + t) * P + i];
                float want = t == 1 ? 0.25f * eps[c * P + i] + 0.75f * in : in;
                if (fabsf(got - want) > 1e-7f) bad++;
            }
    CHECK(bad == 0, "noise blend: %d elements off the formula", bad);

    /* exposure: at each position, channels move away from / towards their mean by s */
    float e[2 * 1 * 2] = {1.0f, 4.0f, 3.0f, 0.0f}; /* (C 2, T 1, H 1, W 2) */
    hl_corrupt_exposure(e, 2, 1, 0, 1, 2, 0.5f);
    CHECK(e[0] == 1.5f && e[2] == 2.5f && e[1] == 3.0f && e[3] == 1.0f, "exposure %g %g %g %g",
          (double)e[0], (double)e[2], (double)e[1], (double)e[3]);
    float e2[4] = {1.0f, 4.0f, 3.0f, 0.0f};
    hl_corrupt_exposure(e2, 2, 1, 0, 1, 2, 1.5f);
    CHECK(e2[0] == 0.5f && e2[2] == 3.5f && e2[1] == 5.0f && e2[3] == -1.0f, "exposure 1.5");

    /* blur by 0.5 on 4x4: down with the stretched triangle, up with plain bilinear, by hand:
     * D = [[3 3 1 0], [0 1 3 3]] / 7, U = [[1 0], [.75 .25], [.25 .75], [0 1]]; out = U D X Dt Ut */
    static const double D[2][4] = {{3 / 7., 3 / 7., 1 / 7., 0}, {0, 1 / 7., 3 / 7., 3 / 7.}};
    static const double U[4][2] = {{1, 0}, {.75, .25}, {.25, .75}, {0, 1}};
    float b[4 * 4], b0[4 * 4];
    fill_random(b, 16, 3);
    memcpy(b0, b, sizeof b);
    CHECK(hl_corrupt_blur(b, 1, 1, 0, 4, 4, 0.5f, &err) == HL_OK, "%s", err.msg);
    double small[2][2] = {{0}}, worst = 0;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            for (int y = 0; y < 4; y++)
                for (int z = 0; z < 4; z++) small[i][j] += D[i][y] * D[j][z] * b0[y * 4 + z];
    for (int y = 0; y < 4; y++)
        for (int z = 0; z < 4; z++) {
            double want = 0;
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) want += U[y][i] * U[z][j] * small[i][j];
            if (fabs(want - b[y * 4 + z]) > worst) worst = fabs(want - b[y * 4 + z]);
        }
    CHECK(worst < 1e-6, "blur 0.5 off the hand computation by %g", worst);
    /* ratio 1 keeps the frame bit for bit; ratio 0.9 on 8x8 goes through 7x7 and is a blur */
    float c1[64], c0[64];
    fill_random(c1, 64, 4);
    memcpy(c0, c1, sizeof c1);
    CHECK(hl_corrupt_blur(c1, 1, 1, 0, 8, 8, 1.0f, &err) == HL_OK, "%s", err.msg);
    CHECK(!memcmp(c0, c1, sizeof c1), "blur ratio 1 changed the frame");
    CHECK(hl_corrupt_blur(c1, 1, 1, 0, 8, 8, 0.9f, &err) == HL_OK, "%s", err.msg);
    double s0 = 0, s1 = 0, d = 0;
    for (int i = 0; i < 64; i++) s0 += c0[i], s1 += c1[i], d += fabs(c0[i] - c1[i]);
    CHECK(d > 0.1 && fabs(s0 - s1) < 0.5, "blur 0.9: change %g, sums %g %g", d, s0, s1);
    /* a constant plane stays constant through any resize */
    float k[12], ko[12];
    for (int i = 0; i < 12; i++) k[i] = 0.75f;
    CHECK(hl_resize_bilinear_aa(k, 3, 4, ko, 2, 3, &err) == HL_OK, "%s", err.msg);
    for (int i = 0; i < 6; i++) CHECK(fabsf(ko[i] - 0.75f) < 1e-6f, "constant %g", (double)ko[i]);
    CHECK(hl_resize_bilinear_aa(k, 3, 4, ko, 0, 3, &err) == HELIOS_ERR_INVALID_ARG, "size 0");
}

/* ---- the history pass ---------------------------------------------------------------------- */

enum { HC = 2, HH = 4, HW = 4, HP = HH * HW, NL = 16, NM = 2 };

typedef struct hist_buf {
    float lat_long[HC * NL * HP], lat_mid[HC * NM * HP], lat_short[HC * 2 * HP];
    hl_history_inputs in;
} hist_buf;

static void hist_fill(hist_buf *b, uint64_t seed) {
    fill_random(b->lat_long, HC * NL * HP, seed);
    fill_random(b->lat_mid, HC * NM * HP, seed + 1);
    fill_random(b->lat_short, HC * 2 * HP, seed + 2);
    memset(&b->in, 0, sizeof b->in);
    b->in.lat_long = b->lat_long, b->in.lat_mid = b->lat_mid, b->in.lat_short = b->lat_short;
}

/* frame i (RoPE order) of a hist_buf changed against a copy */
static bool frame_changed(const hist_buf *a, const hist_buf *b, int i) {
    const float *pa, *pb;
    int T, t;
    if (i == 0) pa = a->lat_short, pb = b->lat_short, T = 2, t = 0;
    else if (i <= NL) pa = a->lat_long, pb = b->lat_long, T = NL, t = i - 1;
    else if (i <= NL + NM) pa = a->lat_mid, pb = b->lat_mid, T = NM, t = i - 1 - NL;
    else pa = a->lat_short, pb = b->lat_short, T = 2, t = 1;
    for (int c = 0; c < HC; c++)
        if (memcmp(pa + (c * T + t) * HP, pb + (c * T + t) * HP, HP * sizeof(float))) return true;
    return false;
}

static void run_corrupt(const hl_corrupt_params *p, hl_rng *g, hist_buf *b, hl_corrupt_report *r) {
    hl_error err = {0};
    CHECK(hl_corrupt_history(p, g, &b->in, HC, HH, HW, NL, NM, r, &err) == HL_OK, "%s", err.msg);
}

static void test_corrupt_history(void) {
    hl_rng g = {0};
    hl_rng_seed(&g, 11);
    hl_corrupt_params p;
    hl_corrupt_report r;
    hist_buf a, b;
    const int n = NL + NM + 2;

    /* probability 0 everywhere: untouched; p_clean_history 1: untouched */
    hl_corrupt_params_default(&p);
    p.p_clean_history = 0.0f, p.p_noise = 0.0f;
    hist_fill(&a, 5), hist_fill(&b, 5);
    run_corrupt(&p, &g, &b, &r);
    int changed = 0;
    for (int i = 0; i < n; i++)
        changed += frame_changed(&a, &b, i) || r.kind[i] != HL_CORRUPT_CLEAN;
    CHECK(changed == 0, "all-zero probabilities changed %d frames", changed);
    hl_corrupt_params_default(&p);
    p.p_clean_history = 1.0f;
    hist_fill(&b, 5);
    run_corrupt(&p, &g, &b, &r);
    changed = 0;
    for (int i = 0; i < n; i++) changed += frame_changed(&a, &b, i);
    CHECK(changed == 0 && r.history_clean, "p_clean_history 1 changed %d frames", changed);

    /* noise with probability 1: every frame, the anchor included (spec §3.2: its own noise) */
    hl_corrupt_params_default(&p);
    p.p_clean_history = 0.0f;
    hist_fill(&b, 5);
    run_corrupt(&p, &g, &b, &r);
    changed = 0;
    for (int i = 0; i < n; i++)
        changed += frame_changed(&a, &b, i) && r.kind[i] == HL_CORRUPT_NOISE &&
                   r.strength[i] >= 0.0f && r.strength[i] < 1.0f / 3.0f;
    CHECK(changed == n, "noise p 1: %d of %d frames noised", changed, n);
    CHECK(frame_changed(&a, &b, 0), "noise: the anchor must get its own noise");

    /* exposure with probability 1: every frame but the anchor (spec §3.2) */
    p.p_noise = 0.0f, p.p_exposure = 1.0f;
    hist_fill(&b, 5);
    run_corrupt(&p, &g, &b, &r);
    CHECK(!frame_changed(&a, &b, 0) && r.kind[0] == HL_CORRUPT_CLEAN,
          "exposure corrupted the anchor (spec §3.2 exempts it)");
    changed = 0;
    for (int i = 1; i < n; i++)
        changed += frame_changed(&a, &b, i) && r.kind[i] == HL_CORRUPT_EXPOSURE;
    CHECK(changed == n - 1, "exposure p 1: %d of %d frames", changed, n - 1);
    p.anchor_exposure = true;
    hist_fill(&b, 5);
    run_corrupt(&p, &g, &b, &r);
    CHECK(frame_changed(&a, &b, 0), "anchor_exposure: the anchor must change");

    /* blur with probability 1 on 4x4 frames at ratio 0.5: every frame */
    hl_corrupt_params_default(&p);
    p.p_clean_history = 0.0f, p.p_noise = 0.0f, p.p_blur = 1.0f;
    p.blur_ratio_min = p.blur_ratio_max = 0.5f;
    hist_fill(&b, 5);
    run_corrupt(&p, &g, &b, &r);
    changed = 0;
    for (int i = 0; i < n; i++) changed += frame_changed(&a, &b, i) && r.kind[i] == HL_CORRUPT_BLUR;
    CHECK(changed == n, "blur p 1: %d of %d frames", changed, n);

    /* zero frames (padding, T2V) stay zero and are reported as such */
    hl_corrupt_params_default(&p);
    p.p_clean_history = 0.0f;
    hist_fill(&b, 5);
    memset(b.lat_long, 0, sizeof b.lat_long);
    for (int c = 0; c < HC; c++) /* the anchor, frame 0 of (C, 2, H, W) */
        memset(b.lat_short + (size_t)c * 2 * HP, 0, HP * sizeof(float));
    run_corrupt(&p, &g, &b, &r);
    int zeros = 0;
    for (size_t i = 0; i < sizeof b.lat_long / sizeof(float); i++) zeros += b.lat_long[i] == 0.0f;
    CHECK(zeros == HC * NL * HP && r.kind[0] == HL_CORRUPT_ZERO && r.kind[1] == HL_CORRUPT_ZERO &&
              r.kind[NL + 1] == HL_CORRUPT_NOISE,
          "zero frames: %d zeros kept, kinds %d %d", zeros, r.kind[0], r.kind[1]);

    /* per-sample kind: one kind for all frames */
    hl_corrupt_params_default(&p);
    p.per_sample_kind = true, p.p_clean_history = 0.0f;
    p.p_noise = 0.5f, p.p_blur = 0.5f;
    int mixed = 0;
    for (int rep = 0; rep < 20; rep++) {
        hist_fill(&b, 5);
        run_corrupt(&p, &g, &b, &r);
        for (int i = 1; i < n; i++) mixed += r.kind[i] != r.kind[0];
    }
    CHECK(mixed == 0, "per_sample_kind mixed kinds %d times", mixed);

    /* statistics of the per-frame choice */
    hl_corrupt_params_default(&p);
    p.p_clean_history = 0.2f;
    p.p_noise = 0.3f, p.p_blur = 0.2f, p.p_exposure = 0.4f; /* clean 0.1 */
    int count[HL_CORRUPT_KINDS] = {0}, samples = 1500, clean_hist = 0, frames = 0;
    for (int rep = 0; rep < samples; rep++) {
        hist_fill(&b, 100 + rep);
        run_corrupt(&p, &g, &b, &r);
        clean_hist += r.history_clean;
        if (r.history_clean) continue;
        for (int i = 1; i < n; i++) count[r.kind[i]]++, frames++; /* the anchor has its own rule */
    }
    double want[4] = {0.1, 0.3, 0.2, 0.4};
    for (int k = 0; k < 4; k++) {
        double f = (double)count[k] / frames;
        CHECK(fabs(f - want[k]) < 0.015, "kind %d frequency %.4f, configured %.2f", k, f, want[k]);
        printf("corrupt: kind %d frequency %.4f (configured %.2f, %d frames)\n", k, f, want[k],
               frames);
    }
    double fc = (double)clean_hist / samples;
    CHECK(fabs(fc - 0.2) < 0.045, "clean-history frequency %.4f, configured 0.2", fc);
    printf("corrupt: clean-history frequency %.4f (configured 0.20, %d samples)\n", fc, samples);

    /* bad parameters */
    hl_error err = {0};
    p.p_noise = 0.9f;
    CHECK(hl_corrupt_history(&p, &g, &b.in, HC, HH, HW, NL, NM, &r, &err) == HELIOS_ERR_INVALID_ARG,
          "probabilities summing over 1 accepted");
}

/* ---- clip -> sample ------------------------------------------------------------------------- */

enum { SC = 2, SH = 2, SW = 3, SP = SH * SW, SF = 9 };

/* clip[c, f, h, w] = f + 1 + c / 8 + (h·W + w) / 64: every frame non-zero and recognisable */
static float *make_clip(int n_chunks) {
    int F = n_chunks * SF;
    float *x = malloc((size_t)SC * F * SP * sizeof *x);
    for (int c = 0; c < SC; c++)
        for (int f = 0; f < F; f++)
            for (int i = 0; i < SP; i++) x[(c * F + f) * SP + i] = f + 1 + c / 8.0f + i / 64.0f;
    return x;
}

static float clip_val(int c, int f, int i) { return f + 1 + c / 8.0f + i / 64.0f; }

/* frame t of (C, T, H, W) equals clip frame f (f < 0: zeros) */
static bool frame_is(const float *x, int T, int t, int f) {
    for (int c = 0; c < SC; c++)
        for (int i = 0; i < SP; i++) {
            float want = f < 0 ? 0.0f : clip_val(c, f, i);
            if (x[(c * T + t) * SP + i] != want) return false;
        }
    return true;
}

static void plain_config(hl_stage1_config *c) {
    hl_stage1_config_default(c);
    c->p_t2v = c->p_i2v = c->p_v2v = 0.0f;
    c->corrupt_history = false;
}

static bool sample_equal(const hl_stage1_sample *a, const hl_stage1_sample *b) {
    size_t n = (size_t)SC * SF * SP * sizeof(float), p = SP * sizeof(float) * SC;
    return a->chunk == b->chunk && a->task == b->task && a->dropped == b->dropped &&
           !memcmp(&a->t, &b->t, sizeof a->t) && !memcmp(a->noisy, b->noisy, n) &&
           !memcmp(a->noise, b->noise, n) && !memcmp(a->target, b->target, n) &&
           !memcmp(a->hist.lat_long, b->hist.lat_long, p * NL) &&
           !memcmp(a->hist.lat_mid, b->hist.lat_mid, p * NM) &&
           !memcmp(a->hist.lat_short, b->hist.lat_short, p * 2) &&
           !memcmp(&a->corrupt, &b->corrupt, sizeof a->corrupt);
}

static void test_sample_layout(void) {
    hl_error err = {0};
    hl_stage1_config cfg;
    plain_config(&cfg);
    const int n_chunks = 4;
    float *clip = make_clip(n_chunks);
    bool seen[4] = {0};
    hl_rng g = {0};
    hl_rng_seed(&g, 3);
    for (int rep = 0; rep < 64; rep++) {
        hl_stage1_sample s;
        if (hl_stage1_sample_make(&cfg, clip, SC, n_chunks * SF, SH, SW, &g, &s, &err) != HL_OK) {
            CHECK(0, "%s", err.msg);
            break;
        }
        int k = s.chunk, start = k * SF;
        seen[k] = true;
        bool x0_ok = true;
        for (int t = 0; t < SF; t++) x0_ok &= frame_is(s.x0, SF, t, start + t);
        CHECK(x0_ok, "chunk %d: x0 is not clip frames %d..%d", k, start, start + SF - 1);
        /* history = the 19 frames before the chunk, zero-padded at the start of the clip */
        bool h_ok = true;
        for (int t = 0; t < NL; t++) h_ok &= frame_is(s.hist.lat_long, NL, t, start - 19 + t);
        for (int t = 0; t < NM; t++) h_ok &= frame_is(s.hist.lat_mid, NM, t, start - 3 + t);
        h_ok &= frame_is(s.hist.lat_short, 2, 1, start - 1);
        CHECK(h_ok, "chunk %d: history is not clip frames %d..%d zero-padded", k, start - 19,
              start - 1);
        /* the anchor: the clip's first latent frame, zero for the first chunk */
        CHECK(frame_is(s.hist.lat_short, 2, 0, k > 0 ? 0 : -1), "chunk %d: anchor", k);
        /* the same inputs as the inference window after the chunks before it */
        hl_history h;
        hl_history_inputs in;
        CHECK(hl_history_init(&h, 1, SC, SH, SW, cfg.history_sizes, &err) == HL_OK, "%s", err.msg);
        float *chunk = malloc((size_t)SC * SF * SP * sizeof *chunk);
        for (int j = 0; j < k; j++) {
            for (int c = 0; c < SC; c++)
                memcpy(chunk + c * SF * SP, clip + (c * n_chunks * SF + j * SF) * SP,
                       SF * SP * sizeof(float));
            hl_history_append(&h, chunk, SF);
            if (j == 0) hl_history_set_anchor(&h, chunk, SF, 0);
        }
        CHECK(hl_history_inputs_build(&h, SF, &in, &err) == HL_OK, "%s", err.msg);
        size_t p = (size_t)SC * SP * sizeof(float);
        CHECK(!memcmp(in.lat_long, s.hist.lat_long, NL * p) &&
                  !memcmp(in.lat_mid, s.hist.lat_mid, NM * p) &&
                  !memcmp(in.lat_short, s.hist.lat_short, 2 * p),
              "chunk %d: history differs from the inference window's", k);
        CHECK(!memcmp(in.idx_long, s.hist.idx_long, NL * 8) &&
                  !memcmp(in.idx_mid, s.hist.idx_mid, NM * 8) &&
                  !memcmp(in.idx_short, s.hist.idx_short, 2 * 8) &&
                  !memcmp(in.idx_cur, s.hist.idx_cur, SF * 8),
              "chunk %d: RoPE indices differ from inference's", k);
        CHECK(s.hist.idx_short[0] == 0 && s.hist.idx_long[0] == 1 && s.hist.idx_mid[0] == 17 &&
                  s.hist.idx_short[1] == 19 && s.hist.idx_cur[0] == 20 && s.hist.idx_cur[8] == 28,
              "indices not 0 | 1..16 | 17..18 | 19 | 20..28");
        hl_history_inputs_free(&in);
        hl_history_free(&h);
        free(chunk);
        /* the flow pieces */
        int bad = 0;
        for (int i = 0; i < SC * SF * SP; i++) {
            float a = (1.0f - s.t.sigma) * s.x0[i], b = s.t.sigma * s.noise[i];
            bad += s.noisy[i] != a + b || s.target[i] != s.noise[i] - s.x0[i];
        }
        CHECK(bad == 0, "noisy/target off the formula at %d elements", bad);
        CHECK(s.t.index >= 0 && s.t.index < 1000 && s.history_timestep == 0.0f,
              "timestep draw %lld, history timestep %g", (long long)s.t.index,
              (double)s.history_timestep);
        /* the transformer input */
        helios_dit_input din;
        double ts;
        hl_stage1_dit_input(&s, NULL, 0, &ts, &din);
        CHECK(din.hidden_states == s.noisy && ts == s.t.timestep && din.long_frames == NL &&
                  din.short_frames == 2 && din.frames == SF &&
                  din.indices_latents_history_short == s.hist.idx_short,
              "dit input");
        hl_stage1_sample_free(&s);
    }
    CHECK(seen[0] && seen[1] && seen[2] && seen[3], "not every chunk drawn in 64 samples");
    /* without keep_first_frame (the ablation) the anchor is zero for every chunk, and the rest
     * of the history is the same */
    cfg.keep_first_frame = false;
    for (int rep = 0, later = 0; rep < 16 || !later; rep++) {
        hl_stage1_sample s;
        if (hl_stage1_sample_make(&cfg, clip, SC, n_chunks * SF, SH, SW, &g, &s, &err) != HL_OK) {
            CHECK(0, "%s", err.msg);
            break;
        }
        later += s.chunk > 0;
        int start = s.chunk * SF;
        CHECK(frame_is(s.hist.lat_short, 2, 0, -1) && frame_is(s.hist.lat_short, 2, 1, start - 1),
              "no anchor: chunk %d's short history is not [zero, frame %d]", s.chunk, start - 1);
        hl_stage1_sample_free(&s);
    }
    cfg.keep_first_frame = true;
    /* a clip that is not whole chunks */
    hl_stage1_sample s;
    CHECK(hl_stage1_sample_make(&cfg, clip, SC, 10, SH, SW, &g, &s, &err) == HELIOS_ERR_INVALID_ARG,
          "10 frames accepted");
    hl_stage1_sample_free(&s);
    free(clip);
}

static void test_sample_padding(void) {
    /* two chunks, target chunk 1: 10 zero frames, then clip frames 0..8 */
    hl_error err = {0};
    hl_stage1_config cfg;
    plain_config(&cfg);
    float *clip = make_clip(2);
    hl_rng g = {0};
    int found = 0;
    for (uint64_t seed = 0; seed < 64 && !found; seed++) {
        hl_rng_seed(&g, seed);
        hl_stage1_sample s;
        CHECK(hl_stage1_sample_make(&cfg, clip, SC, 18, SH, SW, &g, &s, &err) == HL_OK, "%s",
              err.msg);
        if (s.chunk == 1) {
            found = 1;
            bool ok = true;
            for (int t = 0; t < 10; t++) ok &= frame_is(s.hist.lat_long, NL, t, -1);
            for (int t = 10; t < NL; t++) ok &= frame_is(s.hist.lat_long, NL, t, t - 10);
            ok &= frame_is(s.hist.lat_mid, NM, 0, 6) && frame_is(s.hist.lat_mid, NM, 1, 7);
            ok &= frame_is(s.hist.lat_short, 2, 1, 8) && frame_is(s.hist.lat_short, 2, 0, 0);
            CHECK(ok, "padding: history of chunk 1 of 2 is not 10 zeros + frames 0..8");
        }
        hl_stage1_sample_free(&s);
    }
    CHECK(found, "chunk 1 never drawn");
    /* without zero_history_timestep the history sees the current timestep */
    cfg.zero_history_timestep = false;
    hl_stage1_sample s;
    CHECK(hl_stage1_sample_make(&cfg, clip, SC, 18, SH, SW, &g, &s, &err) == HL_OK, "%s", err.msg);
    CHECK(s.history_timestep == s.t.timestep && s.t.timestep > 0.0f, "history timestep %g",
          (double)s.history_timestep);
    hl_stage1_sample_free(&s);
    free(clip);
}

static void test_sample_determinism(void) {
    hl_error err = {0};
    hl_stage1_config cfg;
    hl_stage1_config_default(&cfg); /* everything on: task mix, corruption */
    float *clip = make_clip(5);
    hl_rng g1 = {0}, g2 = {0};
    hl_rng_seed(&g1, 1234), hl_rng_seed(&g2, 1234);
    hl_stage1_sample a, b;
    int same = 0, differ = 0;
    for (int rep = 0; rep < 20; rep++) {
        hl_rng saved = g1; /* the state is a plain struct: saving it is a copy */
        CHECK(hl_stage1_sample_make(&cfg, clip, SC, 45, SH, SW, &g1, &a, &err) == HL_OK, "%s",
              err.msg);
        CHECK(hl_stage1_sample_make(&cfg, clip, SC, 45, SH, SW, &g2, &b, &err) == HL_OK, "%s",
              err.msg);
        same += sample_equal(&a, &b);
        hl_stage1_sample_free(&b);
        hl_rng restored = saved; /* restored state -> the same sample again */
        CHECK(hl_stage1_sample_make(&cfg, clip, SC, 45, SH, SW, &restored, &b, &err) == HL_OK, "%s",
              err.msg);
        same += sample_equal(&a, &b);
        CHECK(!memcmp(&restored, &g1, sizeof g1), "restored generator ends elsewhere");
        hl_stage1_sample_free(&b);
        hl_rng other = {0};
        hl_rng_seed(&other, 99 + rep);
        CHECK(hl_stage1_sample_make(&cfg, clip, SC, 45, SH, SW, &other, &b, &err) == HL_OK, "%s",
              err.msg);
        differ += !sample_equal(&a, &b);
        hl_stage1_sample_free(&a), hl_stage1_sample_free(&b);
    }
    CHECK(same == 40, "same seed gave different samples (%d of 40 equal)", same);
    CHECK(differ == 20, "other seeds gave the same sample (%d of 20 differ)", differ);
    free(clip);
}

static void test_batch(void) {
    hl_error err = {0};
    hl_stage1_config cfg;
    hl_stage1_config_default(&cfg);
    float *clip = make_clip(3);
    hl_rng g = {0};
    hl_rng_seed(&g, 5);
    hl_stage1_sample s0, s1;
    CHECK(hl_stage1_sample_make(&cfg, clip, SC, 27, SH, SW, &g, &s0, &err) == HL_OK, "%s", err.msg);
    CHECK(hl_stage1_sample_make(&cfg, clip, SC, 27, SH, SW, &g, &s1, &err) == HL_OK, "%s", err.msg);
    const hl_stage1_sample *both[2] = {&s0, &s1};
    hl_stage1_batch b;
    CHECK(hl_stage1_batch_make(both, 2, &b, &err) == HL_OK, "%s", err.msg);
    size_t cur = (size_t)SC * SF * SP, fr = (size_t)SC * SP;
    CHECK(!memcmp(b.noisy, s0.noisy, cur * 4) && !memcmp(b.noisy + cur, s1.noisy, cur * 4) &&
              !memcmp(b.target + cur, s1.target, cur * 4) &&
              !memcmp(b.lat_long + NL * fr, s1.hist.lat_long, NL * fr * 4) &&
              !memcmp(b.lat_mid + NM * fr, s1.hist.lat_mid, NM * fr * 4) &&
              !memcmp(b.lat_short + 2 * fr, s1.hist.lat_short, 2 * fr * 4) &&
              b.timesteps[1] == s1.t.timestep && !memcmp(b.idx_cur, s0.hist.idx_cur, SF * 8),
          "batch stacking");
    /* the batch loss is the mean of the per-sample losses */
    float *pred = malloc(2 * cur * sizeof *pred);
    fill_random(pred, (int64_t)(2 * cur), 9);
    double lb = hl_flow_loss(pred, b.target, NULL, 2, (int64_t)cur, NULL);
    double l0 = hl_flow_loss(pred, s0.target, NULL, 1, (int64_t)cur, NULL);
    double l1 = hl_flow_loss(pred + cur, s1.target, NULL, 1, (int64_t)cur, NULL);
    CHECK(fabs(lb - 0.5 * (l0 + l1)) < 1e-12, "batch loss %g vs %g", lb, 0.5 * (l0 + l1));
    helios_dit_input in;
    hl_stage1_batch_dit_input(&b, NULL, 0, &in);
    CHECK(in.batch == 2 && in.timestep == b.timesteps && in.latents_history_long == b.lat_long,
          "batch dit input");
    free(pred);
    hl_stage1_batch_free(&b);
    /* mismatched samples */
    s1.H = 7;
    CHECK(hl_stage1_batch_make(both, 2, &b, &err) == HELIOS_ERR_INVALID_ARG, "mismatch accepted");
    s1.H = SH;
    hl_stage1_sample_free(&s0), hl_stage1_sample_free(&s1);
    free(clip);
}

static void test_task_mix(void) {
    hl_error err = {0};
    hl_stage1_config cfg;
    hl_stage1_config_default(&cfg);
    cfg.p_i2v = 0.1f; /* correct.yaml's fix, so every branch is drawn */
    cfg.p_drop_text = 0.25f;
    const int n_chunks = 4, N = 6000;
    float *clip = make_clip(n_chunks);
    hl_rng g = {0};
    hl_rng_seed(&g, 77);
    int count[4] = {0}, drops[20] = {0}, text = 0, bad_t2v = 0, bad_i2v = 0, bad_v2v = 0;
    size_t p = (size_t)SC * SP;
    for (int rep = 0; rep < N; rep++) {
        hl_stage1_sample s;
        if (hl_stage1_sample_make(&cfg, clip, SC, n_chunks * SF, SH, SW, &g, &s, &err) != HL_OK) {
            CHECK(0, "%s", err.msg);
            break;
        }
        count[s.task]++;
        text += s.drop_text;
        if (s.task == HL_TASK_T2V) { /* everything zero after corruption, the anchor included */
            for (size_t i = 0; i < p * NL; i++) bad_t2v += s.hist.lat_long[i] != 0.0f;
            for (size_t i = 0; i < p * NM; i++) bad_t2v += s.hist.lat_mid[i] != 0.0f;
            for (size_t i = 0; i < p * 2; i++) bad_t2v += s.hist.lat_short[i] != 0.0f;
        }
        if (s.task == HL_TASK_I2V) { /* long and mid zero; the newest frame and the anchor kept
                                      * where the clip has them */
            for (size_t i = 0; i < p * NL; i++) bad_i2v += s.hist.lat_long[i] != 0.0f;
            for (size_t i = 0; i < p * NM; i++) bad_i2v += s.hist.lat_mid[i] != 0.0f;
            if (s.chunk > 0)
                bad_i2v += s.corrupt.kind[0] == HL_CORRUPT_ZERO ||
                           s.corrupt.kind[NL + NM + 1] == HL_CORRUPT_ZERO;
        }
        if (s.task == HL_TASK_V2V) {
            drops[s.dropped]++;
            /* the dropped oldest frames are zero (RoPE frames 1 .. dropped) */
            for (int i = 1; i <= s.dropped; i++) bad_v2v += s.corrupt.kind[i] != HL_CORRUPT_ZERO;
        }
        hl_stage1_sample_free(&s);
    }
    /* P(T2V) = 0.4, P(I2V) = 0.6·0.1, P(V2V) = 0.6·0.9·0.4, P(full) = the rest */
    double want[4] = {0.6 * 0.9 * 0.6, 0.4, 0.06, 0.6 * 0.9 * 0.4};
    for (int k = 0; k < 4; k++) {
        double f = (double)count[k] / N;
        CHECK(fabs(f - want[k]) < 0.025, "task %s frequency %.4f, expected %.4f",
              hl_stage1_task_name((hl_stage1_task)k), f, want[k]);
        printf("task mix: %-4s %.4f (expected %.4f, %d samples)\n",
               hl_stage1_task_name((hl_stage1_task)k), f, want[k], N);
    }
    CHECK(drops[1] + drops[10] + drops[19] == count[HL_TASK_V2V], "V2V drops outside {1, 10, 19}");
    for (int d = 1; d <= 19; d += 9)
        CHECK(fabs((double)drops[d] / count[HL_TASK_V2V] - 1 / 3.0) < 0.05, "V2V drop %d: %d of %d",
              d, drops[d], count[HL_TASK_V2V]);
    CHECK(fabs((double)text / N - 0.25) < 0.025, "text dropout %.4f", (double)text / N);
    CHECK(bad_t2v == 0 && bad_i2v == 0 && bad_v2v == 0, "task layouts: t2v %d, i2v %d, v2v %d",
          bad_t2v, bad_i2v, bad_v2v);
    free(clip);
}

/* ---- VAE loss ---------------------------------------------------------------------------- */

static double vae_loss_at(const hl_vae_loss_params *p, const float *r, const float *x,
                          const float *m, const float *lv) {
    hl_vae_loss_value v;
    hl_vae_loss(p, 2, r, x, 6, m, lv, 4, &v, NULL, NULL, NULL, NULL);
    return v.loss;
}

/* central difference of the double loss in element i of v (the perturbed floats as stored) */
static double fd(const hl_vae_loss_params *p, float *v, int i, const float *r, const float *x,
                 const float *m, const float *lv) {
    float keep = v[i], h = 1e-3f * fmaxf(1.0f, fabsf(keep));
    v[i] = keep + h;
    double lp = vae_loss_at(p, r, x, m, lv);
    float xp = v[i];
    v[i] = keep - h;
    double lm = vae_loss_at(p, r, x, m, lv);
    float xm = v[i];
    v[i] = keep;
    return (lp - lm) / ((double)xp - (double)xm);
}

static void test_vae_loss(void) {
    hl_error err = {0};
    hl_vae_loss_params p = {0.7f, 1.3f, 0.5f};
    float r[12], x[12], m[8], lv[8], dr[12], dm[8], dlv[8];
    fill_random(r, 12, 21), fill_random(x, 12, 22), fill_random(m, 8, 23), fill_random(lv, 8, 24);
    for (int i = 0; i < 12; i++)
        if (fabsf(r[i] - x[i]) < 0.05f) r[i] += 0.1f; /* away from the L1 kink */
    for (int i = 0; i < 8; i++) lv[i] *= 2.0f;
    lv[5] = 25.0f; /* clamped: no gradient */
    hl_vae_loss_value v;
    CHECK(hl_vae_loss(&p, 2, r, x, 6, m, lv, 4, &v, dr, dm, dlv, &err) == HL_OK, "%s", err.msg);
    /* values by hand in double */
    double l1 = 0, l2 = 0, kl = 0;
    for (int i = 0; i < 12; i++) l1 += fabs((double)r[i] - x[i]), l2 += pow((double)r[i] - x[i], 2);
    for (int i = 0; i < 8; i++) {
        double l = fmin(fmax(lv[i], -30.0), 20.0);
        kl += 0.5 * ((double)m[i] * m[i] + exp(l) - 1 - l);
    }
    l1 /= 12, l2 /= 12, kl /= 2;
    CHECK(fabs(v.l1 - l1) < 1e-12 && fabs(v.l2 - l2) < 1e-12 && fabs(v.kl - kl) < 1e-9 * kl &&
              fabs(v.loss - (0.7 * l1 + 1.3 * l2 + 0.5 * kl)) < 1e-9 * v.loss,
          "vae loss values %g %g %g %g", v.l1, v.l2, v.kl, v.loss);
    double worst = 0;
    for (int i = 0; i < 12; i++) {
        double e = fabs(fd(&p, r, i, r, x, m, lv) - dr[i]);
        if (e > worst) worst = e;
    }
    for (int i = 0; i < 8; i++) {
        double e = fabs(fd(&p, m, i, r, x, m, lv) - dm[i]);
        if (e > worst) worst = e;
        e = fabs(fd(&p, lv, i, r, x, m, lv) - dlv[i]);
        if (e > worst) worst = e;
    }
    CHECK(worst < 2e-5, "vae loss gradient vs finite differences: max abs error %.3g", worst);
    CHECK(dlv[5] == 0.0f, "clamped logvar has gradient %g", (double)dlv[5]);
    printf("vae loss: gradients vs central differences max abs error %.3g\n", worst);

    /* posterior sample and its backward, against the double formula */
    float eps[8], z[8], R[8], gm[8] = {0}, glv[8] = {0};
    fill_random(eps, 8, 25), fill_random(R, 8, 26);
    hl_vae_loss_sample(m, lv, eps, 8, z);
    hl_vae_loss_sample_backward(lv, eps, R, 8, gm, glv);
    worst = 0;
    for (int i = 0; i < 8; i++) {
        double l = fmin(fmax(lv[i], -30.0), 20.0);
        double zi = m[i] + exp(0.5 * l) * eps[i];
        if (fabs(zi - z[i]) > 1e-6 * fmax(1, fabs(zi))) worst = 1;
        /* d(R·z)/dlv by central differences in double */
        double h = 1e-4, a = fmin(fmax(lv[i] + h, -30.0), 20.0),
               b = fmin(fmax(lv[i] - h, -30.0), 20.0);
        double fdl = R[i] * eps[i] * (exp(0.5 * a) - exp(0.5 * b)) / (2 * h);
        if (fabs(fdl - glv[i]) > 1e-5 * fmax(1, fabs(fdl)) || gm[i] != R[i]) worst = 1;
    }
    CHECK(worst == 0, "posterior sample/backward off the formula");
    CHECK(hl_vae_loss(&p, 0, r, x, 6, m, lv, 4, &v, NULL, NULL, NULL, &err) ==
              HELIOS_ERR_INVALID_ARG,
          "batch 0 accepted");
}

/* The frame-difference term: two windows of (3, 2, 2, 3) (C, T, H, W); frame 1 of window a against frame
 * 0 of window b. Value by hand in double, gradients (accumulated onto what is there) by central
 * differences; the other frames get no gradient. */
static double seam_at(float *ra, const float *xa, float *rb, const float *xb) {
    return hl_vae_frame_diff(1.7f, 3, 6, 12, ra + 6, xa + 6, rb, xb, NULL, NULL);
}

static void test_vae_seam(void) {
    float ra[36], xa[36], rb[36], xb[36], ga[36], gb[36];
    fill_random(ra, 36, 31), fill_random(xa, 36, 32), fill_random(rb, 36, 33);
    fill_random(xb, 36, 34), fill_random(ga, 36, 35);
    memcpy(gb, ga, sizeof gb);
    float ga0[36], gb0[36];
    memcpy(ga0, ga, sizeof ga), memcpy(gb0, gb, sizeof gb);
    double v = hl_vae_frame_diff(1.7f, 3, 6, 12, ra + 6, xa + 6, rb, xb, ga + 6, gb);
    double want = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 6; i++) {
            int a = c * 12 + 6 + i, b = c * 12 + i;
            want += pow(((double)rb[b] - ra[a]) - ((double)xb[b] - xa[a]), 2);
        }
    want /= 18;
    CHECK(fabs(v - want) < 1e-12, "frame difference value %.9g, by hand %.9g", v, want);
    double worst = 0;
    int untouched = 1;
    for (int i = 0; i < 36; i++) {
        int frame_a = i % 12 >= 6, frame_b = i % 12 < 6;
        for (int side = 0; side < 2; side++) {
            float *r = side ? rb : ra, keep = r[i], h = 1e-3f;
            r[i] = keep + h;
            double lp = 1.7 * seam_at(ra, xa, rb, xb);
            float up = r[i];
            r[i] = keep - h;
            double lm = 1.7 * seam_at(ra, xa, rb, xb);
            float dn = r[i];
            r[i] = keep;
            double fdv = (lp - lm) / ((double)up - (double)dn);
            double got = side ? (double)gb[i] - gb0[i] : (double)ga[i] - ga0[i];
            if ((side ? frame_b : frame_a) == 0) untouched &= got == 0.0;
            double e = fabs(fdv - got);
            if (e > worst) worst = e;
        }
    }
    CHECK(worst < 2e-5, "frame difference gradient vs finite differences: max abs error %.3g",
          worst);
    CHECK(untouched, "frame difference: gradient on a frame off the boundary");
    printf("vae frame difference: gradients vs central differences max abs error %.3g\n", worst);
}

/* The edge term on 2 planes of 3 x 4: value by hand, gradients by central differences. */
static void test_vae_edges(void) {
    float r[24], x[24], g[24], g0[24];
    fill_random(r, 24, 41), fill_random(x, 24, 42), fill_random(g, 24, 43);
    memcpy(g0, g, sizeof g);
    double v = hl_vae_edge_diff(0.9f, 2, 3, 4, r, x, g);
    double want = 0;
    for (int c = 0; c < 2; c++)
        for (int y = 0; y < 3; y++)
            for (int i = 0; i < 4; i++) {
                int p = c * 12 + y * 4 + i;
                if (i < 3) want += pow(((double)r[p + 1] - r[p]) - ((double)x[p + 1] - x[p]), 2);
                if (y < 2) want += pow(((double)r[p + 4] - r[p]) - ((double)x[p + 4] - x[p]), 2);
            }
    want /= 2 * (3 * 3 + 2 * 4);
    CHECK(fabs(v - want) < 1e-12, "edge value %.9g, by hand %.9g", v, want);
    double worst = 0;
    for (int i = 0; i < 24; i++) {
        float keep = r[i], h = 1e-3f;
        r[i] = keep + h;
        double lp = 0.9 * hl_vae_edge_diff(0.9f, 2, 3, 4, r, x, NULL);
        float up = r[i];
        r[i] = keep - h;
        double lm = 0.9 * hl_vae_edge_diff(0.9f, 2, 3, 4, r, x, NULL);
        float dn = r[i];
        r[i] = keep;
        double e = fabs((lp - lm) / ((double)up - (double)dn) - ((double)g[i] - g0[i]));
        if (e > worst) worst = e;
    }
    CHECK(worst < 2e-5, "edge gradient vs finite differences: max abs error %.3g", worst);
    printf("vae edges: gradients vs central differences max abs error %.3g\n", worst);
}

/* ---- uncompressed history (the ablation without multi-term memory) ---------------------------- */

enum { NS_FLAT = 1 + NL + NM + 1 }; /* anchor + the 19 history frames */

/* Frame i (RoPE order) of a sample equals frame i of another, whatever their tiers. */
static bool hist_frame_equal(const hl_stage1_sample *a, const hl_stage1_sample *b, int i) {
    int Ta, ta, Tb, tb;
    const float *x = hl_history_inputs_frame(&a->hist, a->n_long, a->n_mid, a->n_short, i, &Ta,
                                             &ta);
    const float *y = hl_history_inputs_frame(&b->hist, b->n_long, b->n_mid, b->n_short, i, &Tb,
                                             &tb);
    for (int c = 0; c < SC; c++)
        if (memcmp(x + (c * Ta + ta) * SP, y + (c * Tb + tb) * SP, SP * sizeof(float)))
            return false;
    return true;
}

/* The short tier holds the anchor and every history frame in time order, with the indices the
 * compressed layout gives them; long and mid are empty; inference builds the same inputs. */
static void test_uncompressed_layout(void) {
    hl_error err = {0};
    hl_stage1_config cfg;
    plain_config(&cfg);
    cfg.history = HL_HISTORY_UNCOMPRESSED;
    const int n_chunks = 4;
    float *clip = make_clip(n_chunks);
    bool seen[4] = {0};
    hl_rng g = {0};
    hl_rng_seed(&g, 11);
    for (int rep = 0; rep < 64; rep++) {
        hl_stage1_sample s;
        if (hl_stage1_sample_make(&cfg, clip, SC, n_chunks * SF, SH, SW, &g, &s, &err) != HL_OK) {
            CHECK(0, "%s", err.msg);
            break;
        }
        int k = s.chunk, start = k * SF;
        seen[k] = true;
        CHECK(s.n_long == 0 && s.n_mid == 0 && s.n_short == NS_FLAT, "tiers %d/%d/%d", s.n_long,
              s.n_mid, s.n_short);
        bool ok = frame_is(s.hist.lat_short, NS_FLAT, 0, k > 0 ? 0 : -1);
        for (int t = 1; t < NS_FLAT; t++) /* clip frames start-19 .. start-1, zero before 0 */
            ok &= frame_is(s.hist.lat_short, NS_FLAT, t, start - 20 + t);
        CHECK(ok, "chunk %d: short tier is not [anchor, frames %d..%d]", k, start - 19, start - 1);
        bool idx = true;
        for (int t = 0; t < NS_FLAT; t++) idx &= s.hist.idx_short[t] == t;
        for (int t = 0; t < SF; t++) idx &= s.hist.idx_cur[t] == NS_FLAT + t;
        CHECK(idx, "chunk %d: indices not 0..19 | 20..28", k);
        /* the inference window after the chunks before it, built uncompressed */
        hl_history h;
        hl_history_inputs in;
        CHECK(hl_history_init(&h, 1, SC, SH, SW, cfg.history_sizes, &err) == HL_OK, "%s", err.msg);
        float *chunk = malloc((size_t)SC * SF * SP * sizeof *chunk);
        for (int j = 0; j < k; j++) {
            for (int c = 0; c < SC; c++)
                memcpy(chunk + c * SF * SP, clip + (c * n_chunks * SF + j * SF) * SP,
                       SF * SP * sizeof(float));
            hl_history_append(&h, chunk, SF);
            if (j == 0) hl_history_set_anchor(&h, chunk, SF, 0);
        }
        CHECK(hl_history_inputs_build_layout(&h, SF, HL_HISTORY_UNCOMPRESSED, &in, &err) == HL_OK,
              "%s", err.msg);
        CHECK(in.n_long == 0 && in.n_mid == 0 && in.n_short == NS_FLAT &&
                  !memcmp(in.lat_short, s.hist.lat_short, (size_t)NS_FLAT * SC * SP * 4) &&
                  !memcmp(in.idx_short, s.hist.idx_short, NS_FLAT * 8) &&
                  !memcmp(in.idx_cur, s.hist.idx_cur, SF * 8),
              "chunk %d: history differs from the inference window's", k);
        hl_history_inputs_free(&in);
        hl_history_free(&h);
        free(chunk);
        helios_dit_input din;
        double ts;
        hl_stage1_dit_input(&s, NULL, 0, &ts, &din);
        CHECK(din.short_frames == NS_FLAT && din.mid_frames == 0 && din.long_frames == 0 &&
                  din.latents_history_short == s.hist.lat_short &&
                  din.indices_latents_history_short == s.hist.idx_short,
              "dit input: tiers %d/%d/%d", din.long_frames, din.mid_frames, din.short_frames);
        hl_stage1_sample_free(&s);
    }
    CHECK(seen[0] && seen[1] && seen[2] && seen[3], "not every chunk drawn in 64 samples");
    cfg.history = (hl_history_layout)7;
    hl_stage1_sample s;
    CHECK(hl_stage1_sample_make(&cfg, clip, SC, n_chunks * SF, SH, SW, &g, &s, &err) ==
              HELIOS_ERR_INVALID_ARG,
          "history layout 7 accepted");
    free(clip);
}

/* With the task mix and Frame-Aware Corrupt on, one seed gives the two layouts the same draws:
 * the same chunk, task, drops, corruption (the anchor's exposure exemption included) and noise,
 * and the same value for every history frame, only tiered otherwise. Batches stack the flat
 * short tier; a batch of both layouts is refused. */
static void test_uncompressed_same_draws(void) {
    hl_error err = {0};
    hl_stage1_config comp, flat;
    hl_stage1_config_default(&comp);
    comp.p_i2v = 0.1f;
    hl_corrupt_params_paper(&comp.corrupt, 1); /* blur and exposure too */
    comp.corrupt.p_noise = 0.3f, comp.corrupt.p_blur = 0.3f, comp.corrupt.p_exposure = 0.3f;
    flat = comp;
    flat.history = HL_HISTORY_UNCOMPRESSED;
    const int n_chunks = 4;
    float *clip = make_clip(n_chunks);
    size_t n = (size_t)SC * SF * SP * sizeof(float);
    int same = 0, frames_same = 0, tasks[4] = {0}, corrupted = 0, N = 200;
    for (int rep = 0; rep < N; rep++) {
        hl_rng g1 = {0}, g2 = {0};
        hl_rng_seed(&g1, 500 + rep), hl_rng_seed(&g2, 500 + rep);
        hl_stage1_sample a, b;
        CHECK(hl_stage1_sample_make(&comp, clip, SC, n_chunks * SF, SH, SW, &g1, &a, &err) ==
                      HL_OK &&
                  hl_stage1_sample_make(&flat, clip, SC, n_chunks * SF, SH, SW, &g2, &b, &err) ==
                      HL_OK,
              "%s", err.msg);
        same += a.chunk == b.chunk && a.task == b.task && a.dropped == b.dropped &&
                a.drop_text == b.drop_text && !memcmp(&a.t, &b.t, sizeof a.t) &&
                !memcmp(a.noisy, b.noisy, n) && !memcmp(a.target, b.target, n) &&
                !memcmp(&a.corrupt, &b.corrupt, sizeof a.corrupt) && !memcmp(&g1, &g2, sizeof g1);
        bool all = true;
        for (int i = 0; i < NS_FLAT; i++) all &= hist_frame_equal(&a, &b, i);
        frames_same += all;
        tasks[a.task]++;
        for (int i = 0; i < a.corrupt.n; i++)
            corrupted += a.corrupt.kind[i] != HL_CORRUPT_CLEAN &&
                         a.corrupt.kind[i] != HL_CORRUPT_ZERO;
        if (rep == 0) { /* a batch of two flat samples, and of one of each */
            hl_stage1_sample c;
            hl_rng g3 = {0};
            hl_rng_seed(&g3, 1);
            CHECK(hl_stage1_sample_make(&flat, clip, SC, n_chunks * SF, SH, SW, &g3, &c, &err) ==
                      HL_OK,
                  "%s", err.msg);
            const hl_stage1_sample *two[2] = {&b, &c}, *mixed[2] = {&a, &b};
            hl_stage1_batch bt;
            size_t fr = (size_t)SC * SP;
            CHECK(hl_stage1_batch_make(two, 2, &bt, &err) == HL_OK, "%s", err.msg);
            CHECK(bt.n_short == NS_FLAT && bt.n_long == 0 && bt.n_mid == 0 &&
                      !memcmp(bt.lat_short, b.hist.lat_short, NS_FLAT * fr * 4) &&
                      !memcmp(bt.lat_short + NS_FLAT * fr, c.hist.lat_short, NS_FLAT * fr * 4) &&
                      !memcmp(bt.idx_short, b.hist.idx_short, NS_FLAT * 8),
                  "flat batch stacking");
            helios_dit_input in;
            hl_stage1_batch_dit_input(&bt, NULL, 0, &in);
            CHECK(in.short_frames == NS_FLAT && in.long_frames == 0 && in.mid_frames == 0 &&
                      in.latents_history_short == bt.lat_short,
                  "flat batch dit input");
            hl_stage1_batch_free(&bt);
            CHECK(hl_stage1_batch_make(mixed, 2, &bt, &err) == HELIOS_ERR_INVALID_ARG,
                  "a batch of both layouts accepted");
            hl_stage1_sample_free(&c);
        }
        hl_stage1_sample_free(&a), hl_stage1_sample_free(&b);
    }
    CHECK(same == N, "the layouts drew differently (%d of %d alike)", same, N);
    CHECK(frames_same == N, "history frames differ between the layouts (%d of %d alike)",
          frames_same, N);
    CHECK(tasks[0] && tasks[1] && tasks[2] && tasks[3] && corrupted > 100,
          "not every task and corruption drawn (%d %d %d %d, %d frames corrupted)", tasks[0],
          tasks[1], tasks[2], tasks[3], corrupted);
    printf("uncompressed: %d samples drew alike in both layouts (tasks %d/%d/%d/%d, %d frames "
           "corrupted)\n",
           N, tasks[0], tasks[1], tasks[2], tasks[3], corrupted);
    free(clip);
}

int main(void) {
    test_oracle();
    test_oracle_forward();
    test_tables();
    test_flow_loss_weights();
    test_corrupt_ops();
    test_corrupt_history();
    test_sample_layout();
    test_sample_padding();
    test_sample_determinism();
    test_batch();
    test_task_mix();
    test_uncompressed_layout();
    test_uncompressed_same_draws();
    test_vae_loss();
    test_vae_seam();
    test_vae_edges();
    return test_done("test_train_stage1");
}
