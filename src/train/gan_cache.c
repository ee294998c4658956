/* The generator step's GAN term and Cache Grad (spec training.md §6.6; ref:
 * Gan_D_Loss_With_Cached_Grad in Helios utils_helios_post.py): the discriminator (critic trunk +
 * heads) runs forward on the generated sample, its input gradient is computed at once and its
 * activations are freed, so the generator's backward never runs beside them. */
#include <stdlib.h>
#include <string.h>

#include "train/gan.h"

struct hl_gan_pass {
    int B;
    int64_t T, Hp, Wp, N;
    hl_dit_tape *trunk;
    hl_gan_tape *heads;
    float *buf; /* hidden [n_blocks][B·N·D] | tokens [B·N·final_dim] | out | z | dz */
    float *hidden[HL_GAN_MAX_HEADS];
    float *out, *z, *dz;
    size_t buf_bytes;
    int counted_dh;
};

size_t hl_gan_pass_bytes(const hl_gan_pass *p) {
    return p ? p->buf_bytes + hl_dit_tape_bytes(p->trunk) + hl_gan_tape_bytes(p->heads) : 0;
}

void hl_gan_pass_free(hl_gan_pass *p) {
    if (!p) return;
    hl_dit_tape_free(p->trunk);
    hl_gan_tape_free(p->heads);
    free(p->buf);
    free(p);
}

static hl_status pass_alloc(const hl_ctx *ctx, const hl_gan_critic *cr, const helios_dit_input *in,
                            hl_gan_pass **out) {
    const hl_dit_config *c = &cr->trunk->cfg;
    const hl_gan_config *g = &cr->heads->cfg;
    HL_TRY(hl_gan_config_check(g, c, ctx->err));
    if (in->frames % c->patch[0] || in->height % c->patch[1] || in->width % c->patch[2])
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "gan: the latent grid %dx%dx%d is not a multiple of the patch", in->frames,
                       in->height, in->width);
    hl_gan_pass *p = calloc(1, sizeof *p);
    if (!p) return hl_fail(ctx->err, HELIOS_ERR_OOM, "gan: out of memory");
    p->B = in->batch;
    p->T = in->frames / c->patch[0], p->Hp = in->height / c->patch[1];
    p->Wp = in->width / c->patch[2];
    p->N = p->T * p->Hp * p->Wp;
    size_t BN = (size_t)p->B * (size_t)p->N, nh = (size_t)hl_gan_n_heads(g);
    size_t nout = BN * (size_t)(c->out_channels * c->patch[0] * c->patch[1] * c->patch[2]);
    size_t n = (size_t)g->n_blocks * BN * (size_t)c->dim + (g->final_head ? nout : 0) + nout +
               2 * nh * (size_t)p->B;
    p->buf = malloc(n * sizeof(float));
    if (!p->buf) {
        free(p);
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "gan: out of memory");
    }
    p->buf_bytes = n * sizeof(float);
    float *q = p->buf;
    for (int k = 0; k < g->n_blocks; k++, q += BN * (size_t)c->dim) p->hidden[k] = q;
    if (g->final_head) p->hidden[g->n_blocks] = q, q += nout;
    p->out = q, q += nout;
    p->z = q, q += nh * (size_t)p->B;
    p->dz = q;
    *out = p;
    return HL_OK;
}

hl_status hl_gan_pass_forward(const hl_ctx *ctx, const hl_gan_critic *cr,
                              const helios_dit_input *in, hl_gan_pass **pass, float *z) {
    *pass = NULL;
    hl_gan_pass *p = NULL;
    HL_TRY(pass_alloc(ctx, cr, in, &p));
    const hl_gan_config *g = &cr->heads->cfg;
    hl_dit_taps taps = {g->n_blocks, g->blocks, p->hidden, NULL};
    hl_status st = hl_dit_forward_train_taps(ctx, cr->trunk, in, cr->recompute, &taps, &p->trunk,
                                             p->out);
    if (st == HL_OK && g->final_head)
        st = hl_gan_out_tokens(ctx, &cr->trunk->cfg, p->B, p->T, p->Hp, p->Wp, p->out,
                               p->hidden[g->n_blocks]);
    if (st == HL_OK)
        st = hl_gan_forward_grid(ctx, cr->heads, p->B, p->T, p->Hp, p->Wp,
                                 (const float *const *)p->hidden, &p->heads, p->z);
    if (st != HL_OK) {
        hl_gan_pass_free(p);
        return st;
    }
    if (z) memcpy(z, p->z, (size_t)hl_gan_n_heads(g) * (size_t)p->B * sizeof *z);
    *pass = p;
    return HL_OK;
}

hl_status hl_gan_pass_backward(const hl_ctx *ctx, const hl_gan_critic *cr, hl_gan_pass *p,
                               const float *dz, hl_gan *heads_grad, float *dx) {
    const hl_gan_config *g = &cr->heads->cfg;
    /* the heads' input gradients: the taps' injected gradients and, for the final head, the
     * tokens of ∂L/∂out (written into p->out, which nothing reads after the forward) */
    float *dh[HL_GAN_MAX_HEADS];
    int nh = hl_gan_n_heads(g);
    size_t BN = (size_t)p->B * (size_t)p->N;
    for (int k = 0; k < nh; k++) dh[k] = malloc(BN * (size_t)hl_gan_in_dim(g, k) * sizeof(float));
    int ok = 1;
    for (int k = 0; k < nh; k++) ok &= dh[k] != NULL;
    hl_status st = ok ? HL_OK : hl_fail(ctx->err, HELIOS_ERR_OOM, "gan: out of memory");
    if (st == HL_OK) st = hl_gan_backward(ctx, cr->heads, p->heads, dz, heads_grad, dh);
    if (st == HL_OK && g->final_head)
        st = hl_gan_out_tokens_backward(ctx, &cr->trunk->cfg, p->B, p->T, p->Hp, p->Wp,
                                        dh[g->n_blocks], p->out);
    if (st == HL_OK) {
        hl_dit_taps taps = {g->n_blocks, g->blocks, NULL, (const float *const *)dh};
        hl_dit_input_grads gin = {.hidden_states = dx};
        st = hl_dit_backward_taps(ctx, cr->trunk, p->trunk, g->final_head ? p->out : NULL, &taps,
                                  cr->trunk_grad, &gin);
    }
    if (ok && !p->counted_dh) { /* the injected gradients are part of the pass at its peak */
        p->counted_dh = 1;
        p->buf_bytes +=
            BN * (size_t)((int64_t)g->n_blocks * g->dim + (g->final_head ? g->final_dim : 0)) *
            sizeof(float);
    }
    for (int k = 0; k < nh; k++) free(dh[k]);
    return st;
}

hl_status hl_gan_generator_forward(const hl_ctx *ctx, const hl_gan_critic *cr,
                                   const helios_dit_input *in, hl_gan_pass **pass, double *loss) {
    HL_TRY(hl_gan_pass_forward(ctx, cr, in, pass, NULL));
    hl_gan_pass *p = *pass;
    const hl_gan_config *g = &cr->heads->cfg;
    int64_t nz = (int64_t)hl_gan_n_heads(g) * p->B;
    *loss = g->g_weight * hl_gan_loss_g(p->z, nz, p->dz);
    for (int64_t i = 0; i < nz; i++) p->dz[i] *= g->g_weight;
    return HL_OK;
}

hl_status hl_gan_generator_backward(const hl_ctx *ctx, const hl_gan_critic *cr, hl_gan_pass *p,
                                    float *dx) {
    return hl_gan_pass_backward(ctx, cr, p, p->dz, NULL, dx);
}

hl_status hl_gan_generator_grad(const hl_ctx *ctx, const hl_gan_critic *cr,
                                const helios_dit_input *in, double *loss, float *dx,
                                size_t *bytes) {
    hl_gan_pass *p = NULL;
    HL_TRY(hl_gan_generator_forward(ctx, cr, in, &p, loss));
    hl_status st = hl_gan_generator_backward(ctx, cr, p, dx);
    if (bytes) *bytes = hl_gan_pass_bytes(p);
    hl_gan_pass_free(p); /* the discriminator's activations are gone here */
    return st;
}

void hl_gan_add_x0_grad(float *dx0, const float *dx_t, double sigma, int64_t n) {
    float r = (float)(1.0 - sigma);
    for (int64_t i = 0; i < n; i++) dx0[i] += r * dx_t[i];
}

// ---------------------------------------------------------------------------------------------
// the memory of one generator step, with and without Cache Grad

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* One generator step; cache: free the discriminator's pass before the generator's backward. */
static hl_status generator_step(const hl_ctx *ctx, const hl_dit *gen, const helios_dit_input *in,
                                float sigma, const hl_gan_critic *cr, hl_dit *g, int cache,
                                hl_gan_memory *mem, size_t *peak) {
    const hl_dit_config *c = &gen->cfg;
    int64_t n = (int64_t)in->batch * c->out_channels * in->frames * in->height * in->width;
    float *out = malloc((size_t)n * sizeof *out), *xn = malloc((size_t)n * sizeof *xn);
    float *dx = malloc((size_t)n * sizeof *dx);
    hl_dit_tape *t = NULL;
    hl_gan_pass *p = NULL;
    hl_status st = out && xn && dx ? HL_OK
                                   : hl_fail(ctx->err, HELIOS_ERR_OOM, "gan: out of memory");
    if (st == HL_OK) st = hl_dit_forward_train(ctx, gen, in, cr->recompute, &t, out);
    helios_dit_input cin = *in;
    cin.hidden_states = xn;
    for (int64_t i = 0; st == HL_OK && i < n; i++) /* re-noise x0 (the noise: in's latents) */
        xn[i] = (1.0f - sigma) * out[i] + sigma * in->hidden_states[i];
    double loss = 0.0;
    if (st == HL_OK) st = hl_gan_generator_forward(ctx, cr, &cin, &p, &loss);
    if (st == HL_OK) st = hl_gan_generator_backward(ctx, cr, p, dx);
    size_t gen_fwd = hl_dit_tape_bytes(t), disc = hl_gan_pass_bytes(p);
    if (cache) {
        hl_gan_pass_free(p);
        p = NULL;
    }
    for (int64_t i = 0; st == HL_OK && i < n; i++) dx[i] *= 1.0f - sigma; /* ∂x_noisy/∂x0 */
    if (st == HL_OK) st = hl_dit_backward(ctx, gen, t, dx, g, NULL);
    size_t gen_all = hl_dit_tape_bytes(t);
    /* alive together: generator tape + discriminator pass during the discriminator's backward;
     * then the generator's tape and scratch, beside the pass only when it was kept */
    *peak = max_sz(gen_fwd + disc, gen_all + (cache ? 0 : disc));
    mem->generator = gen_all;
    mem->discriminator = disc;
    hl_gan_pass_free(p);
    hl_dit_tape_free(t);
    free(out), free(xn), free(dx);
    return st;
}

hl_status hl_gan_memory_report(const hl_ctx *ctx, const hl_dit *gen, const helios_dit_input *gen_in,
                               float sigma, const hl_gan_critic *cr, hl_dit *g_with,
                               hl_dit *g_without, hl_gan_memory *out) {
    memset(out, 0, sizeof *out);
    if (gen->cfg.out_channels != gen->cfg.in_channels ||
        cr->trunk->cfg.in_channels != gen->cfg.out_channels)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "gan: the generator's output does not fit the critic's input");
    HL_TRY(generator_step(ctx, gen, gen_in, sigma, cr, g_with, 1, out, &out->with_cache));
    return generator_step(ctx, gen, gen_in, sigma, cr, g_without, 0, out, &out->without_cache);
}
