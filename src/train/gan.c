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
    /* GroupNorm(32, 768) of the reference: 24 channels per group; here the largest divisor of Dh
     * up to min(32, Dh / 24), at least 1 (a group of one channel at one position would be
     * constant) */
    g->groups = 1;
    for (int q = 32; q >= 1; q--)
        if (q * 24 <= g->head_dim && g->head_dim % q == 0) {
            g->groups = q;
            break;
        }
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
    if (g->conv && (g->groups < 1 || g->head_dim % g->groups))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "gan: %d groups do not divide head_dim %d",
                       g->groups, g->head_dim);
    for (int k = 0; c && k < g->n_blocks; k++)
        if (g->blocks[k] < 0 || g->blocks[k] >= c->num_layers)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "gan: head %d on block %d of %d", k,
                           g->blocks[k], c->num_layers);
    if (c && (g->dim != c->dim || (g->final_head && g->final_dim != c->out_channels * c->patch[0] *
                                                                        c->patch[1] * c->patch[2])))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "gan: head widths do not fit the transformer");
    return HL_OK;
}

/* The Conv3d stack: kernel, stride and padding (t, h, w) of conv j. */
static const int k_kern[6][3] = {{3, 3, 3}, {4, 4, 4}, {4, 4, 4}, {3, 3, 3}, {3, 3, 3}, {1, 3, 3}};
static const int k_stride[6][3] = {{1, 1, 1}, {2, 2, 2}, {2, 2, 2},
                                   {2, 1, 1}, {2, 1, 1}, {1, 1, 1}};
static const int k_pad[6][3] = {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {0, 1, 1}};

static void binder_rows(hl_binder *b, hl_gan *d) {
    const hl_gan_config *g = &d->cfg;
    int64_t Dh = g->head_dim;
    for (int k = 0; k < hl_gan_n_heads(g); k++) {
        hl_gan_head *h = &d->heads[k];
        int64_t Din = hl_gan_in_dim(g, k);
        if (g->conv) {
            for (int j = 0; j < 6; j++) {
                const int *q = k_kern[j];
                hl_binder_tensor(b, &h->conv_w[j], 5,
                                 (int64_t[]){Dh, j ? Dh : Din, q[0], q[1], q[2]},
                                 "disc.heads.%d.conv.%d.weight", k, j);
                hl_binder_tensor(b, &h->conv_b[j], 1, (int64_t[]){Dh}, "disc.heads.%d.conv.%d.bias",
                                 k, j);
            }
            for (int j = 0; j < 2; j++) {
                hl_binder_f32(b, &h->gn_w[j], 1, (int64_t[]){Dh}, "disc.heads.%d.norm.%d.weight", k,
                              j);
                hl_binder_f32(b, &h->gn_b[j], 1, (int64_t[]){Dh}, "disc.heads.%d.norm.%d.bias", k,
                              j);
            }
            hl_binder_tensor(b, &h->out_w, 2, (int64_t[]){1, Dh}, "disc.heads.%d.out.weight", k);
            hl_binder_tensor(b, &h->out_b, 1, (int64_t[]){1}, "disc.heads.%d.out.bias", k);
            continue;
        }
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
    hl_status st = hl_binder_init(b, 18 * HL_GAN_MAX_HEADS, err);
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
    /* Conv3d heads (u: the allocation): conv outputs a[j] [P_{j+1}, Dh], GN outputs g0 [P_1, Dh]
     * and g1 [P_6, Dh], s0 = SiLU(g0), GN statistics [B·groups] x 4 */
    float *a[6], *g0, *g1, *s0, *st[4];
} head_tape;

/* The positions of the Conv3d stack: grid j = the input of conv j (j = 0..5), 6 = its output. */
typedef struct conv_grid {
    int64_t T[7], H[7], W[7];
} conv_grid;

static bool conv_grid_make(int64_t T, int64_t H, int64_t W, conv_grid *c) {
    c->T[0] = T, c->H[0] = H, c->W[0] = W;
    for (int j = 0; j < 6; j++) {
        const int *k = k_kern[j], *s = k_stride[j], *p = k_pad[j];
        c->T[j + 1] = hl_conv_out_len(c->T[j], k[0], s[0], p[0], p[0]);
        c->H[j + 1] = hl_conv_out_len(c->H[j], k[1], s[1], p[1], p[1]);
        c->W[j + 1] = hl_conv_out_len(c->W[j], k[2], s[2], p[2], p[2]);
        if (c->T[j + 1] < 1 || c->H[j + 1] < 1 || c->W[j + 1] < 1) return false;
    }
    return true;
}

bool hl_gan_grid_ok(const hl_gan_config *g, int64_t T, int64_t H, int64_t W) {
    conv_grid c;
    return T >= 1 && H >= 1 && W >= 1 && (!g->conv || conv_grid_make(T, H, W, &c));
}

static int64_t grid_n(const conv_grid *c, int j) { return c->T[j] * c->H[j] * c->W[j]; }

struct hl_gan_tape {
    int B;
    int64_t N;
    int n;
    conv_grid grid; /* Conv3d heads */
    head_tape h[HL_GAN_MAX_HEADS];
    float
        *scratch; /* backward: [B·N, Dh] + [B, Dh] (Conv3d heads: 2 x [B·max P_j, Dh] + [B, Dh]) */
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

static hl_status conv_forward(const hl_ctx *ctx, const hl_gan *d, int B, const conv_grid *cg,
                              const float *const *x, hl_gan_tape **tape, float *z);

hl_status hl_gan_forward_grid(const hl_ctx *ctx, const hl_gan *d, int B, int64_t T, int64_t H,
                              int64_t W, const float *const *x, hl_gan_tape **tape, float *z) {
    *tape = NULL;
    if (!d->cfg.conv) return hl_gan_forward(ctx, d, B, T * H * W, x, tape, z);
    conv_grid cg;
    if (B < 1 || T < 1 || H < 1 || W < 1 || !conv_grid_make(T, H, W, &cg))
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "gan: the Conv3d heads need at least 4 tokens along every axis (batch %d, "
                       "grid %lldx%lldx%lld)",
                       B, (long long)T, (long long)H, (long long)W);
    return conv_forward(ctx, d, B, &cg, x, tape, z);
}

hl_status hl_gan_forward(const hl_ctx *ctx, const hl_gan *d, int B, int64_t N,
                         const float *const *x, hl_gan_tape **tape, float *z) {
    *tape = NULL;
    if (d->cfg.conv)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "gan: the Conv3d heads need the token grid (hl_gan_forward_grid)");
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

static hl_status conv_head_backward(const hl_ctx *ctx, const hl_gan *d, int k, hl_gan_tape *t,
                                    const float *dz, hl_gan_head *g, float *dx);

hl_status hl_gan_backward(const hl_ctx *ctx, const hl_gan *d, hl_gan_tape *t, const float *dz,
                          hl_gan *g, float *const *dx) {
    for (int k = 0; k < t->n; k++) {
        float *dxk = dx ? dx[k] : NULL;
        if (!dxk && !g) continue;
        if (d->cfg.conv) HL_TRY(conv_head_backward(ctx, d, k, t, dz, g ? &g->heads[k] : NULL, dxk));
        else HL_TRY(head_backward(ctx, d, k, t, dz, g ? &g->heads[k] : NULL, dxk));
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

/* ---- Conv3d heads ------------------------------------------------------------------------ */

/* GroupNorm over channels-last x [B, S, C] (G groups of C / G channels, statistics over S
 * positions x the group's channels, two passes in double): y = (x - mean)·rstd·gamma + beta. */
static void gn_forward(int B, int64_t S, int64_t C, int G, const float *x, const float *gamma,
                       const float *beta, float eps, float *y, float *mean, float *rstd) {
    int64_t cg = C / G;
    double n = (double)(S * cg);
    for (int b = 0; b < B; b++)
        for (int q = 0; q < G; q++) {
            const float *xb = x + (int64_t)b * S * C + q * cg;
            double m = 0.0, v = 0.0;
            for (int64_t p = 0; p < S; p++)
                for (int64_t c = 0; c < cg; c++) m += xb[p * C + c];
            m /= n;
            for (int64_t p = 0; p < S; p++)
                for (int64_t c = 0; c < cg; c++) {
                    double e = xb[p * C + c] - m;
                    v += e * e;
                }
            double r = 1.0 / sqrt(v / n + (double)eps);
            mean[b * G + q] = (float)m, rstd[b * G + q] = (float)r;
            float *yb = y + (int64_t)b * S * C + q * cg;
            for (int64_t p = 0; p < S; p++)
                for (int64_t c = 0; c < cg; c++) {
                    int64_t ch = q * cg + c;
                    yb[p * C + c] = (float)(((double)xb[p * C + c] - mean[b * G + q]) *
                                                rstd[b * G + q] * gamma[ch] +
                                            beta[ch]);
                }
        }
}

/* Its backward: dx (overwritten; may alias dy), dgamma, dbeta accumulated (NULL: not wanted). */
static void gn_backward(int B, int64_t S, int64_t C, int G, const float *x, const float *gamma,
                        const float *mean, const float *rstd, const float *dy, float *dx,
                        float *dgamma, float *dbeta) {
    int64_t cg = C / G;
    double n = (double)(S * cg);
    for (int b = 0; b < B; b++)
        for (int q = 0; q < G; q++) {
            int64_t o = (int64_t)b * S * C + q * cg;
            double m = mean[b * G + q], r = rstd[b * G + q], sd = 0.0, sdx = 0.0;
            for (int64_t c = 0; c < cg; c++) {
                int64_t ch = q * cg + c;
                double dg = 0.0, db = 0.0;
                for (int64_t p = 0; p < S; p++) {
                    double xh = ((double)x[o + p * C + c] - m) * r, g = dy[o + p * C + c];
                    dg += g * xh, db += g;
                    sd += g * gamma[ch], sdx += g * gamma[ch] * xh;
                }
                if (dgamma) dgamma[ch] = (float)(dgamma[ch] + dg);
                if (dbeta) dbeta[ch] = (float)(dbeta[ch] + db);
            }
            if (!dx) continue;
            for (int64_t p = 0; p < S; p++)
                for (int64_t c = 0; c < cg; c++) {
                    int64_t i = o + p * C + c;
                    double xh = ((double)x[i] - m) * r;
                    dx[i] = (float)(r *
                                    ((double)dy[i] * gamma[q * cg + c] - sd / n - xh * sdx / n));
                }
        }
}

static hl_conv3d_shape conv_shape(int B, const conv_grid *g, int j, int64_t C) {
    hl_conv3d_shape s;
    memset(&s, 0, sizeof s);
    s.layout = HL_NTHWC, s.x_dtype = HL_F32;
    s.N = B, s.C = C, s.T = g->T[j], s.H = g->H[j], s.W = g->W[j];
    for (int a = 0; a < 3; a++) {
        s.stride[a] = k_stride[j][a];
        s.pad[2 * a] = s.pad[2 * a + 1] = k_pad[j][a];
    }
    return s;
}

static hl_status conv_head_forward(const hl_ctx *ctx, const hl_gan *d, int k, hl_gan_tape *t,
                                   float *z) {
    const hl_gan_head *h = &d->heads[k];
    head_tape *s = &t->h[k];
    const conv_grid *cg = &t->grid;
    int B = t->B, G = d->cfg.groups;
    int64_t Dh = d->cfg.head_dim, Din = hl_gan_in_dim(&d->cfg, k);
    const float *in = s->x;
    for (int j = 0; j < 6; j++) {
        hl_conv3d_shape sh = conv_shape(B, cg, j, j ? Dh : Din);
        HL_TRY(hl_conv3d(ctx, &sh, in, &h->conv_w[j], &h->conv_b[j], NULL, s->a[j]));
        in = s->a[j];
        if (j == 0) {
            int64_t S = grid_n(cg, 1);
            gn_forward(B, S, Dh, G, s->a[0], h->gn_w[0], h->gn_b[0], d->cfg.eps, s->g0, s->st[0],
                       s->st[1]);
            HL_TRY(hl_silu(ctx, (int64_t)B * S * Dh, s->g0, s->s0));
            in = s->s0;
        }
    }
    int64_t S = grid_n(cg, 6);
    gn_forward(B, S, Dh, G, s->a[5], h->gn_w[1], h->gn_b[1], d->cfg.eps, s->g1, s->st[2], s->st[3]);
    float *act = t->scratch; /* SiLU(g1), pooled */
    HL_TRY(hl_silu(ctx, (int64_t)B * S * Dh, s->g1, act));
    for (int b = 0; b < B; b++)
        for (int64_t c = 0; c < Dh; c++) {
            double acc = 0.0;
            for (int64_t p = 0; p < S; p++) acc += act[((int64_t)b * S + p) * Dh + c];
            s->p[(int64_t)b * Dh + c] = (float)(acc / (double)S);
        }
    return hl_linear(ctx, B, s->p, Dh, &h->out_w, &h->out_b, z + (int64_t)k * B, 1);
}

static hl_status conv_forward(const hl_ctx *ctx, const hl_gan *d, int B, const conv_grid *cg,
                              const float *const *x, hl_gan_tape **tape, float *z) {
    hl_gan_tape *t = calloc(1, sizeof *t);
    if (!t) return hl_fail(ctx->err, HELIOS_ERR_OOM, "gan: out of memory");
    t->B = B, t->N = grid_n(cg, 0), t->n = hl_gan_n_heads(&d->cfg), t->grid = *cg;
    size_t Dh = (size_t)d->cfg.head_dim, G = (size_t)d->cfg.groups, maxp = 0, per = 0;
    for (int j = 1; j <= 6; j++) {
        size_t n = (size_t)B * (size_t)grid_n(cg, j);
        per += n * Dh; /* a[j - 1] */
        if (n > maxp) maxp = n;
    }
    size_t p1 = (size_t)B * (size_t)grid_n(cg, 1) * Dh, p6 = (size_t)B * (size_t)grid_n(cg, 6) * Dh;
    per += 2 * p1 + p6 + 4 * (size_t)B * G + (size_t)B * Dh;
    size_t sc = 2 * maxp * Dh + (size_t)B * Dh;
    int ok = (t->scratch = malloc(sc * sizeof(float))) != NULL;
    for (int k = 0; ok && k < t->n; k++) {
        head_tape *s = &t->h[k];
        ok = (s->u = malloc(per * sizeof(float))) != NULL;
        if (!ok) break;
        s->x = x[k];
        float *q = s->u;
        for (int j = 0; j < 6; j++) s->a[j] = q, q += (size_t)B * (size_t)grid_n(cg, j + 1) * Dh;
        s->g0 = q, q += p1;
        s->s0 = q, q += p1;
        s->g1 = q, q += p6;
        for (int j = 0; j < 4; j++) s->st[j] = q, q += (size_t)B * G;
        s->p = q;
    }
    t->bytes = ((size_t)t->n * per + sc) * sizeof(float);
    hl_status st = ok ? HL_OK : hl_fail(ctx->err, HELIOS_ERR_OOM, "gan: out of memory");
    for (int k = 0; st == HL_OK && k < t->n; k++) st = conv_head_forward(ctx, d, k, t, z);
    if (st != HL_OK) {
        hl_gan_tape_free(t);
        return st;
    }
    *tape = t;
    return HL_OK;
}

static hl_status conv_head_backward(const hl_ctx *ctx, const hl_gan *d, int k, hl_gan_tape *t,
                                    const float *dz, hl_gan_head *g, float *dx) {
    const hl_gan_head *h = &d->heads[k];
    const head_tape *s = &t->h[k];
    const conv_grid *cg = &t->grid;
    int B = t->B, G = d->cfg.groups;
    int64_t Dh = d->cfg.head_dim, Din = hl_gan_in_dim(&d->cfg, k), maxp = 0;
    for (int j = 1; j <= 6; j++)
        if (B * grid_n(cg, j) > maxp) maxp = B * grid_n(cg, j);
    float *da = t->scratch, *db = da + maxp * Dh, *dp = db + maxp * Dh;
    HL_TRY(hl_linear_backward(ctx, B, s->p, Dh, &h->out_w, dz + (int64_t)k * B, 1, dp, Dh, 0,
                              g ? g->out_w.data : NULL, g ? g->out_b.data : NULL));
    int64_t S = grid_n(cg, 6);
    for (int b = 0; b < B; b++) /* the mean pool spreads dp evenly over the positions */
        for (int64_t p = 0; p < S; p++)
            for (int64_t c = 0; c < Dh; c++)
                da[((int64_t)b * S + p) * Dh + c] = dp[(int64_t)b * Dh + c] / (float)S;
    HL_TRY(hl_silu_backward(ctx, (int64_t)B * S * Dh, s->g1, da, da));
    gn_backward(B, S, Dh, G, s->a[5], h->gn_w[1], s->st[2], s->st[3], da, da,
                g ? (float *)g->gn_w[1] : NULL, g ? (float *)g->gn_b[1] : NULL);
    /* da: the gradient of conv j's output; its input's into db, then swap */
    for (int j = 5; j >= 1; j--) {
        hl_conv3d_shape sh = conv_shape(B, cg, j, Dh);
        const float *xin = j == 1 ? s->s0 : s->a[j - 1];
        HL_TRY(hl_conv3d_backward(ctx, &sh, xin, &h->conv_w[j], da, db,
                                  g ? g->conv_w[j].data : NULL, g ? g->conv_b[j].data : NULL));
        float *tmp = da;
        da = db, db = tmp;
    }
    int64_t S1 = grid_n(cg, 1);
    HL_TRY(hl_silu_backward(ctx, (int64_t)B * S1 * Dh, s->g0, da, da));
    gn_backward(B, S1, Dh, G, s->a[0], h->gn_w[0], s->st[0], s->st[1], da, da,
                g ? (float *)g->gn_w[0] : NULL, g ? (float *)g->gn_b[0] : NULL);
    hl_conv3d_shape sh = conv_shape(B, cg, 0, Din);
    return hl_conv3d_backward(ctx, &sh, s->x, &h->conv_w[0], da, dx, g ? g->conv_w[0].data : NULL,
                              g ? g->conv_b[0].data : NULL);
}
