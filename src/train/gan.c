/* GAN discriminator heads and the adversarial losses (see train/gan.h for the design and the
 * scaling from the reference's Discriminator3DHead). */
#include "train/gan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// config and parameters

void hl_gan_config_default(const hl_dit_config *c, hl_gan_config *g) {
    memset(g, 0, sizeof *g);
    for (int j = 0; j < 4; j++) { /* blocks 5, 15, 25, 35 of 40 */
        int b = (int)(((int64_t)(5 + 10 * j) * c->num_layers) / 40);
        if (b >= c->num_layers) b = c->num_layers - 1;
        if (b < 0 || (g->n_blocks && g->blocks[g->n_blocks - 1] == b)) continue;
        g->blocks[g->n_blocks++] = b;
    }
    g->final_head = 1;
    g->dim = c->dim;
    g->final_dim = c->out_channels * c->patch[0] * c->patch[1] * c->patch[2];
    int dh = (int)lround(768.0 * c->dim / 5120.0); /* gan_cond_map_dim 768 at D = 5120 */
    g->head_dim = dh < 8 ? 8 : dh;
    g->eps = 1e-6f;
    g->g_weight = 0.05f;  /* gan_g_weight */
    g->d_weight = 0.01f;  /* gan_d_weight */
    g->r1_weight = 100.f; /* r1_weight */
    g->r1_sigma = 0.1f;   /* r1_sigma */
}

hl_status hl_gan_config_check(const hl_gan_config *g, const hl_dit_config *c, hl_error *err) {
    int n = hl_gan_n_heads(g);
    if (g->n_blocks < 0 || n < 1 || n > HL_GAN_MAX_HEADS || g->head_dim < 1 || g->dim < 1 ||
        (g->final_head && g->final_dim < 1))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "gan: %d heads (1..%d), head_dim %d, dim %d, final_dim %d", n,
                       HL_GAN_MAX_HEADS, g->head_dim, g->dim, g->final_dim);
    for (int k = 0; c && k < g->n_blocks; k++)
        if (g->blocks[k] < 0 || g->blocks[k] >= c->num_layers)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "gan: head %d on block %d of %d", k,
                           g->blocks[k], c->num_layers);
    if (c && (g->dim != c->dim || (g->final_head && g->final_dim != c->out_channels * c->patch[0] *
                                                                        c->patch[1] * c->patch[2])))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "gan: head widths do not fit the transformer");
    return HL_OK;
}

static void binder_rows(hl_binder *b, hl_gan *d) {
    const hl_gan_config *g = &d->cfg;
    int64_t Dh = g->head_dim;
    for (int k = 0; k < hl_gan_n_heads(g); k++) {
        hl_gan_head *h = &d->heads[k];
        int64_t Din = hl_gan_in_dim(g, k);
        hl_binder_tensor(b, &h->proj_w, 2, (int64_t[]){Dh, Din}, "disc.heads.%d.proj.weight", k);
        hl_binder_tensor(b, &h->proj_b, 1, (int64_t[]){Dh}, "disc.heads.%d.proj.bias", k);
        hl_binder_f32(b, &h->norm_w, 1, (int64_t[]){Dh}, "disc.heads.%d.norm.weight", k);
        hl_binder_f32(b, &h->norm_b, 1, (int64_t[]){Dh}, "disc.heads.%d.norm.bias", k);
        hl_binder_tensor(b, &h->out_w, 2, (int64_t[]){1, Dh}, "disc.heads.%d.out.weight", k);
        hl_binder_tensor(b, &h->out_b, 1, (int64_t[]){1}, "disc.heads.%d.out.bias", k);
    }
}

static hl_status new_shell(const hl_gan_config *g, hl_gan **out, hl_binder *b, hl_error *err) {
    *out = NULL;
    HL_TRY(hl_gan_config_check(g, NULL, err));
    hl_gan *d = calloc(1, sizeof *d);
    if (!d) return hl_fail(err, HELIOS_ERR_OOM, "gan: out of memory");
    d->cfg = *g;
    hl_status st = hl_binder_init(b, 6 * HL_GAN_MAX_HEADS, err);
    if (st != HL_OK) {
        free(d);
        return st;
    }
    binder_rows(b, d);
    *out = d;
    return HL_OK;
}

hl_status hl_gan_params_layout(const hl_gan_config *g, hl_params *out, hl_error *err) {
    memset(out, 0, sizeof *out);
    hl_gan *d;
    hl_binder b;
    HL_TRY(new_shell(g, &d, &b, err));
    hl_status st = hl_params_from_binder(&b, out, err);
    hl_binder_free(&b);
    free(d);
    return st;
}

hl_status hl_gan_new_flat(const hl_gan_config *g, const hl_params *layout, float *data,
                          hl_gan **out, hl_error *err) {
    hl_gan *d;
    hl_binder b;
    HL_TRY(new_shell(g, &d, &b, err));
    hl_status st = hl_binder_bind_flat(&b, layout, data, err);
    hl_binder_free(&b);
    if (st != HL_OK) {
        hl_error_prefix(err, "gan");
        free(d);
        return st;
    }
    *out = d;
    return HL_OK;
}

void hl_gan_free(hl_gan *d) { free(d); }

void hl_gan_params_init_random(const hl_params *layout, float *data, hl_rng *rng) {
    for (size_t i = 0; i < layout->n; i++) {
        const hl_param *q = &layout->p[i];
        float *x = data + q->offset;
        size_t len = strlen(q->name);
        int is_weight = len > 7 && !strcmp(q->name + len - 7, ".weight");
        if (is_weight && strstr(q->name, ".norm.")) {
            for (int64_t k = 0; k < q->numel; k++) x[k] = 1.0f;
        } else if (is_weight) { /* xavier_uniform */
            int64_t fan_out = q->shape[0], fan_in = q->numel / fan_out;
            float bound = (float)sqrt(6.0 / (double)(fan_in + fan_out));
            hl_rng_rand_f32(rng, x, q->numel);
            for (int64_t k = 0; k < q->numel; k++) x[k] = (2.0f * x[k] - 1.0f) * bound;
        } else {
            memset(x, 0, (size_t)q->numel * sizeof *x);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// heads

typedef struct head_tape {
    const float *x;     /* [B·N, Din] the caller's input */
    float *u, *v;       /* [B·N, Dh] projection, norm output */
    float *mean, *rstd; /* [B·N] */
    float *p;           /* [B, Dh] pooled */
} head_tape;

struct hl_gan_tape {
    int B;
    int64_t N;
    int n;
    head_tape h[HL_GAN_MAX_HEADS];
    float *scratch; /* backward: [B·N, Dh] + [B, Dh], allocated on first use */
    size_t bytes;
};

size_t hl_gan_tape_bytes(const hl_gan_tape *t) { return t ? t->bytes : 0; }

void hl_gan_tape_free(hl_gan_tape *t) {
    if (!t) return;
    for (int k = 0; k < t->n; k++) free(t->h[k].u);
    free(t->scratch);
    free(t);
}

static hl_status head_forward(const hl_ctx *ctx, const hl_gan *d, int k, hl_gan_tape *t, float *z) {
    const hl_gan_head *h = &d->heads[k];
    head_tape *s = &t->h[k];
    int64_t M = (int64_t)t->B * t->N, Dh = d->cfg.head_dim, Din = hl_gan_in_dim(&d->cfg, k);
    HL_TRY(hl_linear(ctx, M, s->x, Din, &h->proj_w, &h->proj_b, s->u, Dh));
    HL_TRY(hl_layernorm(ctx, M, Dh, s->u, Dh, h->norm_w, h->norm_b, d->cfg.eps, s->v, Dh,
                        &(hl_norm_saved){s->mean, s->rstd}));
    float *a = t->scratch; /* SiLU output, pooled below */
    HL_TRY(hl_silu(ctx, M * Dh, s->v, a));
    for (int b = 0; b < t->B; b++) {
        float *p = s->p + (int64_t)b * Dh;
        for (int64_t j = 0; j < Dh; j++) {
            double acc = 0.0;
            for (int64_t n = 0; n < t->N; n++) acc += a[((int64_t)b * t->N + n) * Dh + j];
            p[j] = (float)(acc / (double)t->N);
        }
    }
    return hl_linear(ctx, t->B, s->p, Dh, &h->out_w, &h->out_b, z + (int64_t)k * t->B, 1);
}

hl_status hl_gan_forward(const hl_ctx *ctx, const hl_gan *d, int B, int64_t N,
                         const float *const *x, hl_gan_tape **tape, float *z) {
    *tape = NULL;
    if (B < 1 || N < 1)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, "gan: B %d, N %lld", B, (long long)N);
    hl_gan_tape *t = calloc(1, sizeof *t);
    if (!t) return hl_fail(ctx->err, HELIOS_ERR_OOM, "gan: out of memory");
    t->B = B, t->N = N, t->n = hl_gan_n_heads(&d->cfg);
    size_t M = (size_t)B * (size_t)N, Dh = (size_t)d->cfg.head_dim;
    size_t per = 2 * M * Dh + 2 * M + (size_t)B * Dh, sc = M * Dh + (size_t)B * Dh;
    int ok = (t->scratch = malloc(sc * sizeof(float))) != NULL;
    for (int k = 0; ok && k < t->n; k++) {
        head_tape *s = &t->h[k];
        ok = (s->u = malloc(per * sizeof(float))) != NULL;
        if (!ok) break;
        s->x = x[k];
        s->v = s->u + M * Dh;
        s->mean = s->v + M * Dh;
        s->rstd = s->mean + M;
        s->p = s->rstd + M;
    }
    t->bytes = ((size_t)t->n * per + sc) * sizeof(float);
    hl_status st = ok ? HL_OK : hl_fail(ctx->err, HELIOS_ERR_OOM, "gan: out of memory");
    for (int k = 0; st == HL_OK && k < t->n; k++) st = head_forward(ctx, d, k, t, z);
    if (st != HL_OK) {
        hl_gan_tape_free(t);
        return st;
    }
    *tape = t;
    return HL_OK;
}

static hl_status head_backward(const hl_ctx *ctx, const hl_gan *d, int k, hl_gan_tape *t,
                               const float *dz, hl_gan_head *g, float *dx) {
    const hl_gan_head *h = &d->heads[k];
    const head_tape *s = &t->h[k];
    int64_t M = (int64_t)t->B * t->N, Dh = d->cfg.head_dim, Din = hl_gan_in_dim(&d->cfg, k);
    float *da = t->scratch, *dp = da + M * Dh;
    HL_TRY(hl_linear_backward(ctx, t->B, s->p, Dh, &h->out_w, dz + (int64_t)k * t->B, 1, dp, Dh, 0,
                              g ? g->out_w.data : NULL, g ? g->out_b.data : NULL));
    for (int b = 0; b < t->B; b++) /* the mean pool spreads dp evenly over the tokens */
        for (int64_t n = 0; n < t->N; n++)
            for (int64_t j = 0; j < Dh; j++)
                da[((int64_t)b * t->N + n) * Dh + j] = dp[(int64_t)b * Dh + j] / (float)t->N;
    HL_TRY(hl_silu_backward(ctx, M * Dh, s->v, da, da));
    hl_norm_saved sv = {s->mean, s->rstd};
    HL_TRY(hl_layernorm_backward(ctx, M, Dh, s->u, Dh, h->norm_w, &sv, da, Dh, da, Dh,
                                 g ? (float *)g->norm_w : NULL, g ? (float *)g->norm_b : NULL));
    return hl_linear_backward(ctx, M, s->x, Din, &h->proj_w, da, Dh, dx, Din, 0,
                              g ? g->proj_w.data : NULL, g ? g->proj_b.data : NULL);
}

hl_status hl_gan_backward(const hl_ctx *ctx, const hl_gan *d, hl_gan_tape *t, const float *dz,
                          hl_gan *g, float *const *dx) {
    for (int k = 0; k < t->n; k++) {
        float *dxk = dx ? dx[k] : NULL;
        if (!dxk && !g) continue;
        HL_TRY(head_backward(ctx, d, k, t, dz, g ? &g->heads[k] : NULL, dxk));
    }
    return HL_OK;
}

hl_status hl_gan_out_tokens(const hl_ctx *ctx, const hl_dit_config *c, int B, int64_t T, int64_t Hp,
                            int64_t Wp, const float *out, float *tok) {
    int64_t n = (int64_t)c->out_channels * T * Hp * Wp * c->patch[0] * c->patch[1] * c->patch[2];
    for (int b = 0; b < B; b++) /* rows -> y is unpatchify; y -> rows its (permutation) adjoint */
        HL_TRY(hl_unpatchify3d_backward(ctx, c->out_channels, T, Hp, Wp, c->patch[0], c->patch[1],
                                        c->patch[2], out + b * n, tok + b * n));
    return HL_OK;
}

hl_status hl_gan_out_tokens_backward(const hl_ctx *ctx, const hl_dit_config *c, int B, int64_t T,
                                     int64_t Hp, int64_t Wp, const float *dtok, float *dout) {
    int64_t n = (int64_t)c->out_channels * T * Hp * Wp * c->patch[0] * c->patch[1] * c->patch[2];
    for (int b = 0; b < B; b++)
        HL_TRY(hl_unpatchify3d(ctx, c->out_channels, T, Hp, Wp, c->patch[0], c->patch[1],
                               c->patch[2], dtok + b * n, dout + b * n));
    return HL_OK;
}

// ---------------------------------------------------------------------------------------------
// losses

double hl_softplus(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }

static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

double hl_gan_loss_g(const float *z_fake, int64_t n, float *dz_fake) {
    double L = 0.0;
    for (int64_t i = 0; i < n; i++) {
        L += hl_softplus(-(double)z_fake[i]);
        if (dz_fake) dz_fake[i] = (float)(-sigmoid(-(double)z_fake[i]) / (double)n);
    }
    return L / (double)n;
}

double hl_gan_loss_d(const float *z_real, const float *z_fake, int64_t n, float *dz_real,
                     float *dz_fake) {
    double L = 0.0;
    for (int64_t i = 0; i < n; i++) {
        L += hl_softplus(-(double)z_real[i]) + hl_softplus((double)z_fake[i]);
        if (dz_real) dz_real[i] = (float)(-sigmoid(-(double)z_real[i]) / (double)n);
        if (dz_fake) dz_fake[i] = (float)(sigmoid((double)z_fake[i]) / (double)n);
    }
    return L / (double)n;
}

double hl_gan_loss_r1(const float *z_real, const float *z_pert, int64_t n, float *dz_real,
                      float *dz_pert) {
    double L = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)z_real[i] - z_pert[i];
        L += e * e;
        if (dz_real) dz_real[i] = (float)(2.0 * e / (double)n);
        if (dz_pert) dz_pert[i] = (float)(-2.0 * e / (double)n);
    }
    return L / (double)n;
}

void hl_gan_r1_perturb(const float *x, int64_t n, float sigma, hl_rng *rng, float *x_pert) {
    hl_rng_randn_f32(rng, x_pert, n);
    for (int64_t i = 0; i < n; i++) x_pert[i] = x[i] + sigma * x_pert[i];
}

static void scale(float *x, int64_t n, float s) {
    for (int64_t i = 0; x && i < n; i++) x[i] *= s;
}

double hl_gan_critic_loss(const hl_gan_config *g, const float *z_real, const float *z_fake,
                          const float *z_pert, int64_t n, float *dz_real, float *dz_fake,
                          float *dz_pert) {
    double L = 0.0;
    if (dz_real) memset(dz_real, 0, (size_t)n * sizeof *dz_real);
    if (dz_fake) memset(dz_fake, 0, (size_t)n * sizeof *dz_fake);
    if (dz_pert) memset(dz_pert, 0, (size_t)n * sizeof *dz_pert);
    if (g->d_weight != 0.0f) {
        L += g->d_weight * hl_gan_loss_d(z_real, z_fake, n, dz_real, dz_fake);
        scale(dz_real, n, g->d_weight);
        scale(dz_fake, n, g->d_weight);
    }
    if (g->r1_weight != 0.0f && z_pert) {
        L += g->r1_weight * hl_gan_loss_r1(z_real, z_pert, n, NULL, NULL);
        for (int64_t i = 0; i < n; i++) {
            double e = 2.0 * g->r1_weight * ((double)z_real[i] - z_pert[i]) / (double)n;
            if (dz_real) dz_real[i] += (float)e;
            if (dz_pert) dz_pert[i] = (float)-e;
        }
    }
    return L;
}

/* ---- the random crop ------------------------------------------------------------------- */

hl_status hl_gan_crop_size(int H, int W, int ph, int pw, double frac, const char *key, int *h,
                           int *w, hl_error *err) {
    if (!(frac > 0 && frac <= 1))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "'%s' must be in (0, 1], not %g", key, frac);
    if (ph < 1 || pw < 1 || H < ph || W < pw || H % ph || W % pw)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "'%s': the latent %dx%d is not a whole number of %dx%d patches", key, H, W,
                       ph, pw);
    int a = (int)floor(frac * H) / ph * ph, b = (int)floor(frac * W) / pw * pw;
    *h = a < ph ? ph : a;
    *w = b < pw ? pw : b;
    return HL_OK;
}

void hl_gan_crop_draw(int H, int W, int h, int w, hl_rng *rng, hl_gan_crop *c) {
    c->h = h, c->w = w, c->y = c->x = 0;
    if (h == H && w == W) return;
    c->y = (int)(hl_rng_u32(rng) % (uint32_t)(H - h + 1));
    c->x = (int)(hl_rng_u32(rng) % (uint32_t)(W - w + 1));
}

void hl_gan_crop_copy(const float *src, int64_t P, int H, int W, const hl_gan_crop *c, float *dst) {
    for (int64_t p = 0; p < P; p++)
        for (int i = 0; i < c->h; i++)
            memcpy(dst + (p * c->h + i) * c->w, src + (p * H + c->y + i) * W + c->x,
                   (size_t)c->w * sizeof *dst);
}

void hl_gan_crop_uncrop(const float *src, int64_t P, int H, int W, const hl_gan_crop *c,
                        float *dst) {
    memset(dst, 0, (size_t)(P * H * W) * sizeof *dst);
    for (int64_t p = 0; p < P; p++)
        for (int i = 0; i < c->h; i++)
            memcpy(dst + (p * H + c->y + i) * W + c->x, src + (p * c->h + i) * c->w,
                   (size_t)c->w * sizeof *dst);
}
