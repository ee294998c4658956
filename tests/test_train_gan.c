/* The GAN pieces of stage 3 (src/train/gan.c, gan_cache.c) and the transformer's taps
 * (src/dit/train.c), on the ref backend:
 *   - taps: with hidden states of blocks 0 and 1 tapped, the backward with injected gradients Q_k
 *     is the gradient of L = Σ out ⊙ R + Σ_k hidden_k ⊙ Q_k (central differences along the
 *     gradient and a random direction, over the input latents and one weight); taps alone
 *     (dout = NULL) too;
 *   - heads: every parameter and every input element of three heads against central differences
 *     in double of L = Σ z ⊙ r;
 *   - losses: L_G, L_D, R1 and the weighted critic total against hand-computed values;
 *     R1's perturbation has the asked sigma;
 *   - Cache Grad: the generator step's gradients are bit-identical with and without it, the peak
 *     activation memory is lower with it, and its input gradient matches central differences,
 *     also chained to x0 through x_t = (1 - sigma) x0 + sigma noise (hl_gan_add_x0_grad);
 *   - the critic step through passes (real, fake, perturbed real; d_weight·L_D + r1_weight·L_R1):
 *     the heads' and the trunk's parameter gradients match central differences. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "train/dit_flat.h"
#include "train/gan.h"
#include "verify/dit_vectors.h"

typedef hl_dit_flat model; /* the vectors' transformer on flat buffers */

static int load(model *md, hl_error *e) {
    char cfg[4096]; /* vector_path returns a static buffer */
    snprintf(cfg, sizeof cfg, "%s", vector_path("transformer_config.json"));
    return hl_dit_flat_load(cfg, vector_path("transformer_weights_f32.safetensors"), md, e) ==
           HL_OK;
}

static void model_free(model *md) { hl_dit_flat_free(md); }

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static void unit(float *v, int64_t n) {
    double s = sqrt(dot(v, v, n));
    for (int64_t i = 0; i < n; i++) v[i] = (float)(v[i] / (s > 0 ? s : 1.0));
}

// ---------------------------------------------------------------------------------------------
// taps

#define NTAP 2

typedef struct taps_case {
    const hl_ctx *ctx;
    model *md;
    helios_dit_input in;
    int64_t nout, nh; /* out floats, floats of one hidden state */
    float *R, *Q[NTAP], *out, *hid[NTAP];
    int use_out;
} taps_case;

static const int tap_blocks[NTAP] = {0, 1};

static double taps_loss(taps_case *c) {
    hl_dit_tape *t = NULL;
    hl_dit_taps taps = {NTAP, tap_blocks, c->hid, NULL};
    if (hl_dit_forward_train_taps(c->ctx, c->md->m, &c->in, 0, &taps, &t, c->out) != HL_OK)
        return NAN;
    hl_dit_tape_free(t);
    double L = c->use_out ? dot(c->out, c->R, c->nout) : 0.0;
    for (int k = 0; k < NTAP; k++) L += dot(c->hid[k], c->Q[k], c->nh);
    return L;
}

/* (L(x + eps·v) - L(x - eps·v)) / (the step taken) over the float array x of n elements. */
static double directional(taps_case *c, float *x, int64_t n, const float *v, double eps) {
    float *saved = malloc((size_t)n * sizeof *saved);
    memcpy(saved, x, (size_t)n * sizeof *saved);
    double taken = 0.0;
    for (int64_t i = 0; i < n; i++) x[i] = (float)(saved[i] + eps * v[i]);
    double lp = taps_loss(c);
    for (int64_t i = 0; i < n; i++) taken += (double)x[i] * v[i];
    for (int64_t i = 0; i < n; i++) x[i] = (float)(saved[i] - eps * v[i]);
    double lm = taps_loss(c);
    for (int64_t i = 0; i < n; i++) taken -= (double)x[i] * v[i];
    memcpy(x, saved, (size_t)n * sizeof *saved);
    free(saved);
    return (lp - lm) / taken;
}

static void check_fd(taps_case *c, const char *what, float *x, int64_t n, const float *grad) {
    float *v = malloc((size_t)n * sizeof *v);
    for (int dir = 0; dir < 2; dir++) {
        if (dir == 0) memcpy(v, grad, (size_t)n * sizeof *v);
        else fill_random(v, n, 99);
        unit(v, n);
        double an = dot(grad, v, n), norm = sqrt(dot(grad, grad, n));
        double fd = directional(c, x, n, v, 1e-3);
        double tol = 1e-2 * fabs(an) + 2e-4 * norm + 1e-2;
        CHECK(fabs(fd - an) <= tol, "taps %s (%s, dout %s): finite differences %.7g, backward %.7g",
              what, dir ? "random" : "gradient", c->use_out ? "R" : "NULL", fd, an);
        printf("taps %-28s %-8s dout %-4s: fd %.7g backward %.7g\n", what,
               dir ? "random" : "gradient", c->use_out ? "R" : "NULL", fd, an);
    }
    free(v);
}

static void test_taps(const hl_ctx *ctx, model *md, const hl_dit_case *cs) {
    taps_case c = {.ctx = ctx, .md = md, .in = cs->in};
    const hl_dit_config *cfg = &md->m->cfg;
    int64_t ncur = (int64_t)cs->in.frames / cfg->patch[0] * (cs->in.height / cfg->patch[1]) *
                   (cs->in.width / cfg->patch[2]);
    c.nout = hl_dit_case_out_numel(cs, md->m);
    c.nh = cs->in.batch * ncur * cfg->dim;
    int64_t nin = (int64_t)cs->in.batch * cfg->in_channels * cs->in.frames * cs->in.height *
                  cs->in.width;
    float *x = malloc((size_t)nin * sizeof *x), *dx = malloc((size_t)nin * sizeof *dx);
    memcpy(x, cs->in.hidden_states, (size_t)nin * sizeof *x);
    c.in.hidden_states = x;
    c.R = malloc((size_t)c.nout * sizeof(float));
    c.out = malloc((size_t)c.nout * sizeof(float));
    fill_random(c.R, c.nout, 7);
    for (int k = 0; k < NTAP; k++) {
        c.Q[k] = malloc((size_t)c.nh * sizeof(float));
        c.hid[k] = malloc((size_t)c.nh * sizeof(float));
        fill_random(c.Q[k], c.nh, 20 + k);
    }
    const hl_param *pq = hl_params_find(&md->layout, "blocks.0.attn1.to_q.weight");
    CHECK(pq != NULL, "no blocks.0.attn1.to_q.weight");
    for (int use_out = 1; pq && use_out >= 0; use_out--) {
        c.use_out = use_out;
        memset(md->g, 0, (size_t)md->layout.total * sizeof(float));
        hl_dit_tape *t = NULL;
        hl_dit_taps taps = {NTAP, tap_blocks, c.hid, (const float *const *)c.Q};
        hl_dit_input_grads gin = {.hidden_states = dx};
        hl_status st = hl_dit_forward_train_taps(ctx, md->m, &c.in, 1, &taps, &t, c.out);
        if (st == HL_OK)
            st = hl_dit_backward_taps(ctx, md->m, t, use_out ? c.R : NULL, &taps, md->grad, &gin);
        hl_dit_tape_free(t);
        CHECK(st == HL_OK, "taps forward/backward: %s", ctx->err->msg);
        if (st != HL_OK) break;
        check_fd(&c, "d/d hidden_states", x, nin, dx);
        float *gq = malloc((size_t)pq->numel * sizeof *gq);
        memcpy(gq, md->g + pq->offset, (size_t)pq->numel * sizeof *gq);
        check_fd(&c, "d/d blocks.0.attn1.to_q", md->w + pq->offset, pq->numel, gq);
        free(gq);
    }
    /* a block outside the model is an error, not a crash */
    int bad = 7;
    hl_dit_taps taps = {1, &bad, NULL, NULL};
    hl_dit_tape *t = NULL;
    CHECK(hl_dit_forward_train_taps(ctx, md->m, &c.in, 0, &taps, &t, c.out) ==
                  HELIOS_ERR_INVALID_ARG &&
              !t,
          "a tap on block 7 of 2 is accepted");
    for (int k = 0; k < NTAP; k++) free(c.Q[k]), free(c.hid[k]);
    free(c.R), free(c.out), free(x), free(dx);
}

// ---------------------------------------------------------------------------------------------
// heads against finite differences

enum { HB = 2, HN = 3 };

/* The token grid of heads_loss: 1 x 1 x HN for the token-wise heads, set by the Conv3d test. */
static int64_t g_T = 1, g_H = 1, g_W = HN;

static double heads_loss(const hl_ctx *ctx, const hl_gan *d, float *const *x, const float *r) {
    hl_gan_tape *t = NULL;
    float z[HL_GAN_MAX_HEADS * HB];
    if (hl_gan_forward_grid(ctx, d, HB, g_T, g_H, g_W, (const float *const *)x, &t, z) != HL_OK)
        return NAN;
    hl_gan_tape_free(t);
    return dot(z, r, (int64_t)hl_gan_n_heads(&d->cfg) * HB);
}

/* Each element of x[0..n) against the central difference of heads_loss; worst ratio to tol. */
static double fd_elements_every(const hl_ctx *ctx, const hl_gan *d, float *const *xs,
                                const float *r, float *x, const float *g, int64_t n, int64_t every,
                                const char *what) {
    double worst = 0.0;
    for (int64_t i = 0; i < n; i += every) {
        float s = x[i];
        double h = 1e-2 * fmax(1.0, fabs(s));
        x[i] = (float)(s + h);
        double lp = heads_loss(ctx, d, xs, r), hp = (double)x[i] - s;
        x[i] = (float)(s - h);
        double lm = heads_loss(ctx, d, xs, r), hm = s - (double)x[i];
        x[i] = s;
        double fd = (lp - lm) / (hp + hm), tol = 2e-3 * fabs(g[i]) + 2e-4;
        worst = fmax(worst, fabs(fd - g[i]) / tol);
        CHECK(fabs(fd - g[i]) <= tol, "heads %s[%lld]: finite differences %.7g, backward %.7g",
              what, (long long)i, fd, (double)g[i]);
    }
    return worst;
}

static double fd_elements(const hl_ctx *ctx, const hl_gan *d, float *const *xs, const float *r,
                          float *x, const float *g, int64_t n, const char *what) {
    return fd_elements_every(ctx, d, xs, r, x, g, n, 1, what);
}

/* The reference's Conv3d heads (conv = 1) on a 4 x 8 x 8 token grid (down to 1 x 2 x 2 after the
 * strided convolutions), two heads of different input widths, GroupNorm with 2 groups of 2
 * channels: every parameter and every 5th input element against central differences; a grid
 * too small for the stack is refused. */
static void test_conv_heads(const hl_ctx *ctx, hl_error *e) {
    hl_gan_config g = {.n_blocks = 1,
                       .blocks = {0},
                       .final_head = 1,
                       .dim = 3,
                       .final_dim = 2,
                       .head_dim = 4,
                       .eps = 1e-6f,
                       .conv = 1,
                       .groups = 2};
    hl_params lay;
    hl_gan *d = NULL, *gd = NULL;
    CHECK(hl_gan_params_layout(&g, &lay, e) == HL_OK, "conv layout: %s", e->msg);
    const hl_param *c0 = hl_params_find(&lay, "disc.heads.1.conv.0.weight"),
                   *c1 = hl_params_find(&lay, "disc.heads.0.conv.1.weight"),
                   *c5 = hl_params_find(&lay, "disc.heads.0.conv.5.weight");
    CHECK(lay.n == 2 * 18 && c0 && c0->ndim == 5 && c0->shape[1] == 2 && c0->shape[2] == 3 && c1 &&
              c1->shape[2] == 4 && c5 && c5->shape[2] == 1 && c5->shape[3] == 3 &&
              hl_params_find(&lay, "disc.heads.1.norm.1.bias"),
          "conv layout: %zu rows", lay.n);
    float *w = calloc((size_t)lay.total, sizeof *w), *gw = calloc((size_t)lay.total, sizeof *gw);
    hl_rng rng;
    hl_rng_seed(&rng, 7);
    hl_gan_params_init_random(&lay, w, &rng);
    for (size_t i = 0; i < lay.n; i++)
        if (strstr(lay.p[i].name, ".norm.") || strstr(lay.p[i].name, ".bias")) {
            float *q = w + lay.p[i].offset;
            fill_random(q, lay.p[i].numel, 80 + i);
            for (int64_t k = 0; k < lay.p[i].numel; k++) q[k] = q[k] * 0.5f + 1.0f;
        }
    CHECK(hl_gan_new_flat(&g, &lay, w, &d, e) == HL_OK &&
              hl_gan_new_flat(&g, &lay, gw, &gd, e) == HL_OK,
          "conv bind: %s", e->msg);
    if (!d || !gd) return;
    g_T = 4, g_H = 8, g_W = 8;
    int64_t N = g_T * g_H * g_W;
    int nh = hl_gan_n_heads(&g);
    float *x[HL_GAN_MAX_HEADS], *dx[HL_GAN_MAX_HEADS], r[HL_GAN_MAX_HEADS * HB],
        z[HL_GAN_MAX_HEADS * HB];
    for (int k = 0; k < nh; k++) {
        int64_t n = (int64_t)HB * N * hl_gan_in_dim(&g, k);
        x[k] = malloc((size_t)n * sizeof(float)), dx[k] = malloc((size_t)n * sizeof(float));
        fill_random(x[k], n, 90 + k);
    }
    fill_random(r, nh * HB, 4);
    hl_gan_tape *t = NULL;
    CHECK(hl_gan_forward_grid(ctx, d, HB, g_T, g_H, g_W, (const float *const *)x, &t, z) == HL_OK &&
              hl_gan_backward(ctx, d, t, r, gd, dx) == HL_OK,
          "conv heads: %s", e->msg);
    hl_gan_tape_free(t);
    CHECK(isfinite(z[0]) && z[0] != z[1], "conv heads: logits %g %g", z[0], z[1]);
    double worst = fd_elements(ctx, d, x, r, w, gw, lay.total, "conv params");
    for (int k = 0; k < nh; k++)
        worst = fmax(worst,
                     fd_elements_every(ctx, d, x, r, x[k], dx[k],
                                       (int64_t)HB * N * hl_gan_in_dim(&g, k), 5, "conv input"));
    printf("conv heads: %lld parameters + inputs of %d Conv3d heads (grid 4x8x8) vs central "
           "differences, worst %.3f of the tolerance\n",
           (long long)lay.total, nh, worst);
    CHECK(!hl_gan_grid_ok(&g, 2, 8, 8) && hl_gan_grid_ok(&g, 4, 4, 4), "grid sizes");
    CHECK(hl_gan_forward_grid(ctx, d, HB, 2, 8, 8, (const float *const *)x, &t, z) ==
                  HELIOS_ERR_INVALID_ARG &&
              !t && strstr(e->msg, "4 tokens"),
          "a 2-frame grid is refused: %s", e->msg);
    CHECK(hl_gan_forward(ctx, d, HB, N, (const float *const *)x, &t, z) == HELIOS_ERR_INVALID_ARG,
          "conv heads without a grid are refused");
    g.groups = 3;
    CHECK(hl_gan_config_check(&g, NULL, e) != HL_OK, "3 groups of head_dim 4 refused");
    g_T = 1, g_H = 1, g_W = HN;
    for (int k = 0; k < nh; k++) free(x[k]), free(dx[k]);
    hl_gan_free(d), hl_gan_free(gd);
    free(w), free(gw);
    hl_params_free(&lay);
}

static void test_heads(const hl_ctx *ctx, hl_error *e) {
    hl_gan_config g = {.n_blocks = 2,
                       .blocks = {0, 1},
                       .final_head = 1,
                       .dim = 6,
                       .final_dim = 5,
                       .head_dim = 4,
                       .eps = 1e-6f};
    hl_params lay;
    hl_gan *d = NULL, *gd = NULL;
    CHECK(hl_gan_params_layout(&g, &lay, e) == HL_OK, "layout: %s", e->msg);
    CHECK(lay.n == 18 && hl_params_find(&lay, "disc.heads.2.proj.weight") &&
              hl_params_find(&lay, "disc.heads.2.proj.weight")->shape[1] == 5 &&
              hl_params_find(&lay, "disc.heads.0.out.bias"),
          "layout: %zu rows", lay.n);
    float *w = calloc((size_t)lay.total, sizeof *w), *gw = calloc((size_t)lay.total, sizeof *gw);
    hl_rng rng;
    hl_rng_seed(&rng, 5);
    hl_gan_params_init_random(&lay, w, &rng);
    /* norm gains and biases away from 1 / 0 so their gradients are exercised */
    for (size_t i = 0; i < lay.n; i++)
        if (!strstr(lay.p[i].name, "proj.weight") && !strstr(lay.p[i].name, "out.weight")) {
            float *q = w + lay.p[i].offset;
            fill_random(q, lay.p[i].numel, 40 + i);
            for (int64_t k = 0; k < lay.p[i].numel; k++) q[k] = q[k] * 0.5f + 1.0f;
        }
    CHECK(hl_gan_new_flat(&g, &lay, w, &d, e) == HL_OK &&
              hl_gan_new_flat(&g, &lay, gw, &gd, e) == HL_OK,
          "bind: %s", e->msg);
    if (!d || !gd) return;
    int nh = hl_gan_n_heads(&g);
    float *x[HL_GAN_MAX_HEADS], *dx[HL_GAN_MAX_HEADS], r[HL_GAN_MAX_HEADS * HB],
        z[HL_GAN_MAX_HEADS * HB];
    for (int k = 0; k < nh; k++) {
        int64_t n = (int64_t)HB * HN * hl_gan_in_dim(&g, k);
        x[k] = malloc((size_t)n * sizeof(float)), dx[k] = malloc((size_t)n * sizeof(float));
        fill_random(x[k], n, 60 + k);
        for (int64_t i = 0; i < n; i++) x[k][i] *= 2.0f;
    }
    fill_random(r, nh * HB, 3);
    hl_gan_tape *t = NULL;
    CHECK(hl_gan_forward(ctx, d, HB, HN, (const float *const *)x, &t, z) == HL_OK &&
              hl_gan_backward(ctx, d, t, r, gd, dx) == HL_OK,
          "heads: %s", e->msg);
    hl_gan_tape_free(t);
    double worst = fd_elements(ctx, d, x, r, w, gw, lay.total, "params");
    for (int k = 0; k < nh; k++)
        worst = fmax(worst, fd_elements(ctx, d, x, r, x[k], dx[k],
                                        (int64_t)HB * HN * hl_gan_in_dim(&g, k), "input"));
    printf("heads: %lld parameters + inputs of %d heads vs central differences, worst %.3f of "
           "the tolerance\n",
           (long long)lay.total, nh, worst);
    /* parameter gradients accumulate; input gradients are overwritten */
    float *g1 = malloc((size_t)lay.total * sizeof *g1), *dx0 = malloc(HB * HN * 6 * sizeof *dx0);
    memcpy(g1, gw, (size_t)lay.total * sizeof *g1);
    memcpy(dx0, dx[0], HB * HN * 6 * sizeof *dx0);
    CHECK(hl_gan_forward(ctx, d, HB, HN, (const float *const *)x, &t, z) == HL_OK &&
              hl_gan_backward(ctx, d, t, r, gd, dx) == HL_OK,
          "heads: %s", e->msg);
    hl_gan_tape_free(t);
    int bad = 0;
    for (int64_t i = 0; i < lay.total; i++) bad += fabsf(gw[i] - 2 * g1[i]) > 1e-6f;
    CHECK(bad == 0 && !memcmp(dx0, dx[0], HB * HN * 6 * sizeof *dx0),
          "heads: gradients do not accumulate / inputs not overwritten (%d)", bad);
    free(g1), free(dx0);
    for (int k = 0; k < nh; k++) free(x[k]), free(dx[k]);
    hl_gan_free(d), hl_gan_free(gd);
    free(w), free(gw);
    hl_params_free(&lay);
}

// ---------------------------------------------------------------------------------------------
// losses against hand-computed values

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol))

static void test_losses(void) {
    /* softplus(0) = ln 2, softplus(-1) = ln(1 + 1/e), softplus(2) = 2 + ln(1 + e^-2) */
    CHECK(NEAR(hl_softplus(0), 0.6931471805599453, 1e-15) &&
              NEAR(hl_softplus(-1), 0.31326168751822286, 1e-15) &&
              NEAR(hl_softplus(2), 2.1269280110429727, 1e-15) && hl_softplus(1000) == 1000.0 &&
              hl_softplus(-1000) == 0.0,
          "softplus");
    float z[4] = {0, 1, -2, 3}, dz[4];
    /* L_G = mean softplus(-z) = (ln 2 + 0.313262 + 2.126928 + 0.048587) / 4;
     * dL/dz = -sigmoid(-z) / 4 */
    double L = hl_gan_loss_g(z, 4, dz);
    double want[4] = {-0.125, -0.06723535534249878, -0.22019926949447058, -0.011856468294391695};
    CHECK(NEAR(L, 0.7954810576737208, 1e-12), "L_G %.12g", L);
    for (int i = 0; i < 4; i++) CHECK(NEAR(dz[i], want[i], 1e-7), "dL_G[%d] %.9g", i, dz[i]);
    /* L_D = mean(softplus(-z_real)) + mean(softplus(z_fake)), z_real (0, 1), z_fake (-1, 2):
     * (ln 2 + 0.313262 + 0.313262 + 2.126928) / 2 */
    float zr[2] = {0, 1}, zf[2] = {-1, 2}, dr[2], df[2];
    L = hl_gan_loss_d(zr, zf, 2, dr, df);
    CHECK(NEAR(L, 1.7232992833196819, 1e-12), "L_D %.12g", L);
    CHECK(NEAR(dr[0], -0.25, 1e-7) && NEAR(dr[1], -0.13447071068499755, 1e-7) &&
              NEAR(df[0], 0.13447071068499755, 1e-7) && NEAR(df[1], 0.44039853898894116, 1e-7),
          "dL_D %g %g %g %g", dr[0], dr[1], df[0], df[1]);
    /* R1: z_real (1, 2), z_pert (0.5, 2.5): mean of 0.25, 0.25 = 0.25; d/dz_real = 2e/2 */
    float r1[2] = {1, 2}, p1[2] = {0.5f, 2.5f}, dp[2];
    L = hl_gan_loss_r1(r1, p1, 2, dr, dp);
    CHECK(NEAR(L, 0.25, 1e-12) && NEAR(dr[0], 0.5, 1e-7) && NEAR(dr[1], -0.5, 1e-7) &&
              NEAR(dp[0], -0.5, 1e-7) && NEAR(dp[1], 0.5, 1e-7),
          "R1 %g (%g %g %g %g)", L, dr[0], dr[1], dp[0], dp[1]);
    /* the critic total with the reference weights: 0.01·L_D + 100·L_R1, real (1, 2), fake
     * (-1, 2), perturbed (0.5, 2.5) */
    hl_dit_config dc = {.dim = 64, .num_layers = 40, .out_channels = 16, .patch = {1, 2, 2}};
    hl_gan_config g;
    hl_gan_config_default(&dc, &g);
    CHECK(g.n_blocks == 4 && g.blocks[0] == 5 && g.blocks[1] == 15 && g.blocks[2] == 25 &&
              g.blocks[3] == 35 && g.final_head && g.final_dim == 64 && g.head_dim == 10,
          "defaults for 40 layers");
    float dfk[2];
    double ld = hl_gan_loss_d(r1, zf, 2, NULL, NULL);
    L = hl_gan_critic_loss(&g, r1, zf, p1, 2, dr, dfk, dp);
    CHECK(NEAR(L, 0.01 * ld + 100 * 0.25, 1e-9), "critic total %.12g", L);
    /* d/dz_real = 0.01·(-sigmoid(-1)/2) + 100·(2·0.5/2) */
    CHECK(NEAR(dr[0], 0.01 * (-0.2689414213699951 / 2) + 50, 1e-5) && NEAR(dp[1], 50, 1e-5),
          "critic gradients %g %g", dr[0], dp[1]);
    g.d_weight = g.r1_weight = 0; /* switched off */
    L = hl_gan_critic_loss(&g, r1, zf, p1, 2, dr, dfk, dp);
    CHECK(L == 0 && dr[0] == 0 && dfk[1] == 0 && dp[0] == 0, "off is not off");
    /* x + sigma·ε: sigma 0.1 */
    enum { NP = 20000 };
    float *x0 = calloc(NP, sizeof *x0), *xp = malloc(NP * sizeof *xp);
    for (int i = 0; i < NP; i++) x0[i] = (float)i;
    hl_rng rng;
    hl_rng_seed(&rng, 11);
    hl_gan_r1_perturb(x0, NP, 0.1f, &rng, xp);
    double m = 0, v = 0;
    for (int i = 0; i < NP; i++) m += (xp[i] - x0[i]) / (double)NP;
    for (int i = 0; i < NP; i++) v += pow(xp[i] - x0[i] - m, 2) / (double)NP;
    CHECK(fabs(m) < 0.005 && fabs(sqrt(v) - 0.1) < 0.005, "perturbation mean %g std %g", m,
          sqrt(v));
    free(x0), free(xp);
}

// ---------------------------------------------------------------------------------------------
// Cache Grad

static void test_cache_grad(const hl_ctx *ctx, model *md, const hl_dit_case *cs, hl_error *e) {
    const hl_dit_config *cfg = &md->m->cfg;
    hl_gan_config g;
    hl_gan_config_default(cfg, &g);
    CHECK(hl_gan_config_check(&g, cfg, e) == HL_OK, "default config: %s", e->msg);
    hl_params lay;
    hl_gan *d = NULL;
    CHECK(hl_gan_params_layout(&g, &lay, e) == HL_OK, "layout: %s", e->msg);
    float *w = calloc((size_t)lay.total, sizeof *w);
    hl_rng rng;
    hl_rng_seed(&rng, 9);
    hl_gan_params_init_random(&lay, w, &rng);
    CHECK(hl_gan_new_flat(&g, &lay, w, &d, e) == HL_OK, "bind: %s", e->msg);
    /* the critic: a second copy of the transformer (its own scratch gradient view) */
    float *cg = calloc((size_t)md->layout.total, sizeof *cg);
    float *g2 = calloc((size_t)md->layout.total, sizeof *g2);
    hl_dit *cgrad = NULL, *grad2 = NULL;
    CHECK(hl_dit_new_flat(cfg, &md->layout, cg, &cgrad, e) == HL_OK &&
              hl_dit_new_flat(cfg, &md->layout, g2, &grad2, e) == HL_OK,
          "views: %s", e->msg);
    if (!d || !cgrad || !grad2) return;
    hl_gan_critic cr = {md->m, cgrad, d, 1};
    memset(md->g, 0, (size_t)md->layout.total * sizeof(float));
    hl_gan_memory mem;
    CHECK(hl_gan_memory_report(ctx, md->m, &cs->in, 0.5f, &cr, md->grad, grad2, &mem) == HL_OK,
          "memory report: %s", e->msg);
    CHECK(!memcmp(md->g, g2, (size_t)md->layout.total * sizeof *g2),
          "Cache Grad changes the generator's gradients");
    double gn = sqrt(dot(md->g, md->g, md->layout.total));
    CHECK(gn > 0, "no gradient reaches the generator");
    CHECK(mem.with_cache < mem.without_cache, "peak with %zu, without %zu", mem.with_cache,
          mem.without_cache);
    printf("Cache Grad (tiny transformer, case ii, recompute on): generator %zu B, discriminator "
           "%zu B; peak with %zu B, without %zu B (%.1f%% less); |grad| %.6g identical\n",
           mem.generator, mem.discriminator, mem.with_cache, mem.without_cache,
           100.0 * (1.0 - (double)mem.with_cache / (double)mem.without_cache), gn);

    /* the cached input gradient against central differences (g_weight 1 for signal) */
    d->cfg.g_weight = 1.0f;
    int64_t n = (int64_t)cs->in.batch * cfg->in_channels * cs->in.frames * cs->in.height *
                cs->in.width;
    float *x = malloc((size_t)n * sizeof *x), *dx = malloc((size_t)n * sizeof *dx);
    float *v = malloc((size_t)n * sizeof *v);
    memcpy(x, cs->in.hidden_states, (size_t)n * sizeof *x);
    helios_dit_input in = cs->in;
    in.hidden_states = x;
    double L0 = 0;
    size_t bytes = 0;
    CHECK(hl_gan_generator_grad(ctx, &cr, &in, &L0, dx, &bytes) == HL_OK, "grad: %s", e->msg);
    CHECK(bytes == mem.discriminator, "discriminator bytes %zu vs %zu", bytes, mem.discriminator);
    for (int dir = 0; dir < 2; dir++) {
        if (dir == 0) memcpy(v, dx, (size_t)n * sizeof *v);
        else fill_random(v, n, 5);
        unit(v, n);
        double eps = 1e-2, lp, lm, taken = 0, an = dot(dx, v, n);
        for (int64_t i = 0; i < n; i++) x[i] = (float)(cs->in.hidden_states[i] + eps * v[i]);
        for (int64_t i = 0; i < n; i++) taken += (double)x[i] * v[i];
        hl_gan_generator_grad(ctx, &cr, &in, &lp, dx, NULL);
        for (int64_t i = 0; i < n; i++) x[i] = (float)(cs->in.hidden_states[i] - eps * v[i]);
        for (int64_t i = 0; i < n; i++) taken -= (double)x[i] * v[i];
        hl_gan_generator_grad(ctx, &cr, &in, &lm, dx, NULL);
        memcpy(x, cs->in.hidden_states, (size_t)n * sizeof *x);
        hl_gan_generator_grad(ctx, &cr, &in, &L0, dx, NULL); /* dx back at x */
        double fd = (lp - lm) / taken, norm = sqrt(dot(dx, dx, n));
        CHECK(fabs(fd - an) <= 2e-2 * fabs(an) + 1e-3 * norm + 1e-7 / eps,
              "generator GAN term (%s): finite differences %.7g, backward %.7g",
              dir ? "random" : "gradient", fd, an);
        printf("Cache Grad dL_G/dx (%s): fd %.7g backward %.7g\n", dir ? "random" : "gradient", fd,
               an);
    }

    /* the stage-3 generator term w.r.t. x0: x_t = (1 - sigma) x0 + sigma noise, Cache Grad at x_t,
     * hl_gan_add_x0_grad; against a central difference along a random direction of x0 */
    {
        const double sigma = 0.3;
        float r = (float)(1.0 - sigma), s = (float)sigma;
        float *x0 = malloc((size_t)n * sizeof *x0), *nz = malloc((size_t)n * sizeof *nz);
        float *dx0 = calloc((size_t)n, sizeof *dx0);
        memcpy(x0, cs->in.hidden_states, (size_t)n * sizeof *x0);
        fill_random(nz, n, 11);
        for (int64_t i = 0; i < n; i++) x[i] = r * x0[i] + s * nz[i];
        hl_gan_generator_grad(ctx, &cr, &in, &L0, dx, NULL);
        for (int64_t i = 0; i < n; i++) dx0[i] = 0.25f; /* accumulates onto what is there */
        hl_gan_add_x0_grad(dx0, dx, sigma, n);
        for (int64_t i = 0; i < n; i++) dx0[i] -= 0.25f;
        fill_random(v, n, 12);
        unit(v, n);
        double eps = 1e-2, lp, lm, an = dot(dx0, v, n);
        for (int64_t i = 0; i < n; i++) x[i] = r * (float)(x0[i] + eps * v[i]) + s * nz[i];
        hl_gan_generator_grad(ctx, &cr, &in, &lp, dx, NULL);
        for (int64_t i = 0; i < n; i++) x[i] = r * (float)(x0[i] - eps * v[i]) + s * nz[i];
        hl_gan_generator_grad(ctx, &cr, &in, &lm, dx, NULL);
        double fd = (lp - lm) / (2 * eps), norm = sqrt(dot(dx0, dx0, n));
        CHECK(an != 0 && fabs(fd - an) <= 2e-2 * fabs(an) + 1e-3 * norm + 1e-7 / eps,
              "generator GAN term w.r.t. x0: finite differences %.7g, chain %.7g", fd, an);
        printf("GAN term dL_G/dx0 (sigma 0.3, random direction): fd %.7g chain %.7g\n", fd, an);
        free(x0), free(nz), free(dx0);
    }
    free(x), free(dx), free(v), free(w), free(cg), free(g2);
    hl_gan_free(d), hl_dit_free(cgrad), hl_dit_free(grad2);
    hl_params_free(&lay);
}

// ---------------------------------------------------------------------------------------------
// the critic step through passes: real, fake and perturbed real

typedef struct critic_case {
    const hl_ctx *ctx;
    hl_gan_critic cr;
    hl_gan_config g;
    helios_dit_input in[3]; /* real, fake, perturbed */
    hl_gan *heads_grad;
} critic_case;

/* d_weight·L_D + r1_weight·L_R1; with grads, the backward of the three passes. */
static double critic_total(critic_case *c, int grads) {
    hl_gan_pass *p[3] = {0};
    float z[3][HL_GAN_MAX_HEADS * 4], dz[3][HL_GAN_MAX_HEADS * 4];
    int64_t n = (int64_t)hl_gan_n_heads(&c->g) * c->in[0].batch;
    double L = NAN;
    int ok = 1;
    for (int i = 0; i < 3; i++)
        ok = ok && hl_gan_pass_forward(c->ctx, &c->cr, &c->in[i], &p[i], z[i]) == HL_OK;
    if (ok) L = hl_gan_critic_loss(&c->g, z[0], z[1], z[2], n, dz[0], dz[1], dz[2]);
    for (int i = 0; ok && grads && i < 3; i++)
        ok = hl_gan_pass_backward(c->ctx, &c->cr, p[i], dz[i], c->heads_grad, NULL) == HL_OK;
    for (int i = 0; i < 3; i++) hl_gan_pass_free(p[i]);
    return ok ? L : NAN;
}

static void critic_fd(critic_case *c, const char *what, float *w, const float *g, int64_t n) {
    float *v = malloc((size_t)n * sizeof *v), *saved = malloc((size_t)n * sizeof *saved);
    memcpy(saved, w, (size_t)n * sizeof *saved);
    for (int dir = 0; dir < 2; dir++) {
        if (dir == 0) memcpy(v, g, (size_t)n * sizeof *v);
        else fill_random(v, n, 77);
        unit(v, n);
        double eps = 1e-3, taken = 0, an = dot(g, v, n), norm = sqrt(dot(g, g, n));
        for (int64_t i = 0; i < n; i++) w[i] = (float)(saved[i] + eps * v[i]);
        for (int64_t i = 0; i < n; i++) taken += (double)w[i] * v[i];
        double lp = critic_total(c, 0);
        for (int64_t i = 0; i < n; i++) w[i] = (float)(saved[i] - eps * v[i]);
        for (int64_t i = 0; i < n; i++) taken -= (double)w[i] * v[i];
        double lm = critic_total(c, 0);
        memcpy(w, saved, (size_t)n * sizeof *saved);
        double fd = (lp - lm) / taken;
        CHECK(fabs(fd - an) <= 2e-2 * fabs(an) + 1e-3 * norm + 2e-7 / eps,
              "critic %s (%s): finite differences %.7g, backward %.7g", what,
              dir ? "random" : "gradient", fd, an);
        printf("critic step d/d %-26s %-8s: fd %.7g backward %.7g\n", what,
               dir ? "random" : "gradient", fd, an);
    }
    free(v), free(saved);
}

static void test_critic_step(const hl_ctx *ctx, model *md, const hl_dit_case *cs, hl_error *e) {
    const hl_dit_config *cfg = &md->m->cfg;
    critic_case c = {.ctx = ctx};
    hl_gan_config_default(cfg, &c.g);
    c.g.d_weight = 1.0f, c.g.r1_weight = 10.0f; /* larger than the reference's, for signal */
    hl_params lay;
    hl_gan *d = NULL;
    CHECK(hl_gan_params_layout(&c.g, &lay, e) == HL_OK, "layout: %s", e->msg);
    float *w = calloc((size_t)lay.total, sizeof *w), *gw = calloc((size_t)lay.total, sizeof *gw);
    hl_rng rng;
    hl_rng_seed(&rng, 21);
    hl_gan_params_init_random(&lay, w, &rng);
    CHECK(hl_gan_new_flat(&c.g, &lay, w, &d, e) == HL_OK &&
              hl_gan_new_flat(&c.g, &lay, gw, &c.heads_grad, e) == HL_OK,
          "bind: %s", e->msg);
    if (!d || !c.heads_grad) return;
    c.cr = (hl_gan_critic){md->m, md->grad, d, 1};
    int64_t n = (int64_t)cs->in.batch * cfg->in_channels * cs->in.frames * cs->in.height *
                cs->in.width;
    float *fake = malloc((size_t)n * sizeof *fake), *pert = malloc((size_t)n * sizeof *pert);
    fill_random(fake, n, 31);
    hl_gan_r1_perturb(cs->in.hidden_states, n, 0.1f, &rng, pert);
    for (int i = 0; i < 3; i++) c.in[i] = cs->in;
    c.in[1].hidden_states = fake, c.in[2].hidden_states = pert;
    memset(md->g, 0, (size_t)md->layout.total * sizeof(float));
    double L = critic_total(&c, 1);
    CHECK(isfinite(L), "critic step: %s", e->msg);
    const hl_param *ph = hl_params_find(&lay, "disc.heads.1.proj.weight");
    const hl_param *pt = hl_params_find(&md->layout, "blocks.0.ffn.net.0.proj.weight");
    CHECK(ph && pt, "parameters missing");
    if (ph && pt) {
        float *gh = malloc((size_t)ph->numel * sizeof *gh);
        float *gt = malloc((size_t)pt->numel * sizeof *gt);
        memcpy(gh, gw + ph->offset, (size_t)ph->numel * sizeof *gh);
        memcpy(gt, md->g + pt->offset, (size_t)pt->numel * sizeof *gt);
        critic_fd(&c, "disc.heads.1.proj.weight", w + ph->offset, gh, ph->numel);
        critic_fd(&c, "blocks.0.ffn.net.0.proj", md->w + pt->offset, gt, pt->numel);
        free(gh), free(gt);
    }
    free(w), free(gw), free(fake), free(pert);
    hl_gan_free(d), hl_gan_free(c.heads_grad);
    hl_params_free(&lay);
}

int main(void) {
    hl_error e = {0};
    hl_ctx ctx = test_ctx(HELIOS_BACKEND_REF, &e);
    test_losses();
    test_heads(&ctx, &e);
    test_conv_heads(&ctx, &e);
    model md = {0};
    CHECK(load(&md, &e), "load: %s", e.msg);
    hl_safetensors *st = NULL;
    hl_dit_case c = {0};
    CHECK(hl_st_open(vector_path("transformer_case_ii_history.safetensors"), &st, &e) == HL_OK &&
              hl_dit_case_read(st, &c, &e) == HL_OK,
          "case: %s", e.msg);
    if (!g_failures) {
        test_taps(&ctx, &md, &c);
        test_cache_grad(&ctx, &md, &c, &e);
        test_critic_step(&ctx, &md, &c, &e);
    }
    hl_dit_case_free(&c);
    hl_st_close(st);
    model_free(&md);
    return test_done("test_train_gan");
}
