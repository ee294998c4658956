/* The adversarial terms of stage 3 (spec training.md §6.3-6.6, issue 13 items 4 and 5): GAN
 * discriminator heads on hidden states of the critic (fake score), the non-saturating logistic
 * losses, the approximate R1 penalty, and Cache Grad for the generator step.
 *
 * Heads. The reference (`Discriminator3DHead`, gan_cond_map_dim 768) reads the noisy-token hidden
 * states of fake-score blocks 5, 15, 25, 35 (of 40) plus the final 16-channel output, each through
 * Conv3d(5120→768, k3) → GN/SiLU → four strided Conv3d → Conv3d(1,3,3) → GN/SiLU → global
 * average pool → Linear(768→1). That stack is below (conv = 1, grids of at least 4 tokens a
 * side); scaled to tiny grids (a few tokens cannot carry k4/s2 convolutions), the token-wise head
 * k (conv = 0) reads tokens x [B, N, Din] (N = current tokens) as
 *   u = x·Wpᵀ + bp            [B·N, Dh]   the token-wise projection (the k3 conv as 1x1x1)
 *   v = LN(u)·γ + β           [B·N, Dh]   the norm (GroupNorm as a per-token LayerNorm)
 *   a = SiLU(v)
 *   p = mean_n a[b, n, :]     [B, Dh]     global average pool over the tokens
 *   z = p·Woᵀ + bo            [B]         the head's logit
 * with Dh = head_dim (768·D/5120 by default, at least 8). Block heads have Din = D; the final head
 * reads the output (B, C, T, H, W) as the head's patch tokens [B, N, pt·ph·pw·C]
 * (hl_gan_out_tokens). Parameters (one flat buffer, train/params.h), per head k:
 *   disc.heads.k.proj.weight [Dh, Din]   disc.heads.k.proj.bias [Dh]
 *   disc.heads.k.norm.weight [Dh]        disc.heads.k.norm.bias [Dh]
 *   disc.heads.k.out.weight  [1, Dh]     disc.heads.k.out.bias  [1]
 * Logits of all heads are z [n_heads, B] (head-major).
 *
 * Losses (D = a head's logit, "realness"; the spec writes the mirrored sign, D_spec = -D):
 *   L_G  = mean_{k,b} softplus(-z_fake)                            (non-saturating)
 *   L_D  = mean_{k,b} softplus(-z_real) + mean_{k,b} softplus(z_fake)
 *   L_R1 = mean_{k,b} (z_real - z_pert)²,  z_pert = D(x_real + r1_sigma·ε)   (approximate R1)
 * Generator total: g_weight·L_G (0.05); critic total: d_weight·L_D + r1_weight·L_R1 (0.01, 100,
 * r1_sigma 0.1). A weight of 0 switches its term off.
 *
 * Conv3d heads (conv = 1, the reference's Discriminator3DHead as spec §6.4 lists it) read the
 * same tokens as a channels-last grid x [B, T, H, W, Din] (the patch grid of the critic input):
 *   a0 = Conv3d(Din→Dh, k3, pad 1)                  GN0 → SiLU
 *   a1 = Conv3d(Dh→Dh, k4, stride 2, pad 1)(·)      a2 = the same on a1
 *   a3 = Conv3d(Dh→Dh, k3, stride (2,1,1), pad 1)   a4 = the same on a3
 *   a5 = Conv3d(Dh→Dh, k(1,3,3), pad (0,1,1))       GN1 → SiLU
 *   p = mean over the positions [B, Dh], z = p·Woᵀ + bo
 * (no activation between the strided convolutions: the spec names GN/SiLU after the first and
 * the last only; padding 1, unstated in the spec, keeps a 4-token axis alive: 4 → 2 → 1). GN =
 * GroupNorm(groups, Dh) with affine gain and bias, eps as the token heads. Parameters per head k:
 *   disc.heads.k.conv.j.weight [Dh, Cin, kt, kh, kw], disc.heads.k.conv.j.bias [Dh]  (j = 0..5)
 *   disc.heads.k.norm.j.weight [Dh], disc.heads.k.norm.j.bias [Dh]                  (j = 0, 1)
 *   disc.heads.k.out.weight [1, Dh], disc.heads.k.out.bias [1]
 *
 * Gradient conventions as ops.h: input gradients are overwritten, parameter gradients accumulate
 * into a gradient view (hl_gan_new_flat on the gradient buffer). */
#ifndef HL_TRAIN_GAN_H
#define HL_TRAIN_GAN_H

#include "dit/dit.h"
#include "sample/rng.h"
#include "train/params.h"

#define HL_GAN_MAX_HEADS 8

typedef struct hl_gan_config {
    int n_blocks;                 /* heads on block outputs */
    int blocks[HL_GAN_MAX_HEADS]; /* their block indices */
    int final_head;               /* 1: one more head on the final output */
    int dim;                      /* D: input width of a block head */
    int final_dim;                /* pt·ph·pw·C_out: input width of the final head */
    int head_dim;                 /* Dh */
    float eps;                    /* the heads' norm */
    int conv;   /* 0: the token-wise heads above; 1: the reference's Conv3d stack (below) */
    int groups; /* the Conv3d heads' GroupNorm groups (divides head_dim; default: the largest
                   divisor of head_dim up to min(32, head_dim / 24), at least 1) */
    float g_weight, d_weight, r1_weight; /* 0: term off */
    float r1_sigma;
} hl_gan_config;

static inline int hl_gan_n_heads(const hl_gan_config *g) { return g->n_blocks + !!g->final_head; }
static inline int hl_gan_in_dim(const hl_gan_config *g, int k) {
    return k < g->n_blocks ? g->dim : g->final_dim;
}

/* The reference's layout scaled to c: blocks floor((5 + 10j)·L / 40), j = 0..3 (5, 15, 25, 35 of
 * 40), duplicates dropped; the final head on; Dh = max(8, round(768·D / 5120)); eps 1e-6;
 * weights g 0.05, d 0.01, R1 100 with sigma 0.1. */
void hl_gan_config_default(const hl_dit_config *c, hl_gan_config *g);

/* Checks the config (head count, block indices against num_layers when c is not NULL). */
hl_status hl_gan_config_check(const hl_gan_config *g, const hl_dit_config *c, hl_error *err);

typedef struct hl_gan_head {
    hl_tensor proj_w, proj_b; /* token-wise heads */
    const float *norm_w, *norm_b;
    hl_tensor conv_w[6], conv_b[6]; /* Conv3d heads */
    const float *gn_w[2], *gn_b[2];
    hl_tensor out_w, out_b;
} hl_gan_head;

/* The heads over a flat buffer (owns neither the buffer nor the config's arrays). */
typedef struct hl_gan {
    hl_gan_config cfg;
    hl_gan_head heads[HL_GAN_MAX_HEADS];
} hl_gan;

hl_status hl_gan_params_layout(const hl_gan_config *g, hl_params *out, hl_error *err);
/* Heads whose fields point into data (laid out as hl_gan_params_layout(g)). */
hl_status hl_gan_new_flat(const hl_gan_config *g, const hl_params *layout, float *data,
                          hl_gan **out, hl_error *err);
void hl_gan_free(hl_gan *d);
/* Projections xavier-uniform (drawn from rng in layout order), norm gains 1, biases 0. */
void hl_gan_params_init_random(const hl_params *layout, float *data, hl_rng *rng);

/* ---- heads: forward with a tape, backward ------------------------------------------------- */

typedef struct hl_gan_tape hl_gan_tape;

/* z [n_heads, B] from x[k] [B, N, in_dim(k)] (k < n_heads; the arrays must stay unchanged until
 * the backward). Token-wise heads only (N tokens without a grid). */
hl_status hl_gan_forward(const hl_ctx *ctx, const hl_gan *d, int B, int64_t N,
                         const float *const *x, hl_gan_tape **tape, float *z);
/* The same with the tokens' grid, N = T·H·W in (t, h, w) order: x[k] is [B, T, H, W, in_dim(k)]
 * (channels last), which the Conv3d heads need. */
hl_status hl_gan_forward_grid(const hl_ctx *ctx, const hl_gan *d, int B, int64_t T, int64_t H,
                              int64_t W, const float *const *x, hl_gan_tape **tape, float *z);
/* Whether a T x H x W token grid is large enough for the heads (always for token-wise heads; the
 * Conv3d stack needs at least 4 tokens along every axis). */
bool hl_gan_grid_ok(const hl_gan_config *g, int64_t T, int64_t H, int64_t W);
/* From dz [n_heads, B]: dx[k] (NULL array or entry: not wanted) overwritten; parameter gradients
 * accumulate into g (NULL: none). */
hl_status hl_gan_backward(const hl_ctx *ctx, const hl_gan *d, hl_gan_tape *t, const float *dz,
                          hl_gan *g, float *const *dx);
size_t hl_gan_tape_bytes(const hl_gan_tape *t);
void hl_gan_tape_free(hl_gan_tape *t);

/* The transformer output out (B, C, T·pt, Hp·ph, Wp·pw) as tokens [B, T·Hp·Wp, pt·ph·pw·C] (the
 * output head's row order), and back (a permutation: the backward is the inverse). */
hl_status hl_gan_out_tokens(const hl_ctx *ctx, const hl_dit_config *c, int B, int64_t T, int64_t Hp,
                            int64_t Wp, const float *out, float *tok);
hl_status hl_gan_out_tokens_backward(const hl_ctx *ctx, const hl_dit_config *c, int B, int64_t T,
                                     int64_t Hp, int64_t Wp, const float *dtok, float *dout);

/* ---- losses (double sums; dz written, NULL: not wanted) ------------------------------------ */

double hl_softplus(double x); /* log(1 + e^x) without overflow */
double hl_gan_loss_g(const float *z_fake, int64_t n, float *dz_fake);
double hl_gan_loss_d(const float *z_real, const float *z_fake, int64_t n, float *dz_real,
                     float *dz_fake);
double hl_gan_loss_r1(const float *z_real, const float *z_pert, int64_t n, float *dz_real,
                      float *dz_pert);
/* x_pert = x + sigma·ε, ε ~ N(0, 1) from rng: the input of the R1 pass. */
void hl_gan_r1_perturb(const float *x, int64_t n, float sigma, hl_rng *rng, float *x_pert);

/* The critic's total d_weight·L_D + r1_weight·L_R1 over n = n_heads·B logits, gradients of that
 * total written (dz_pert and z_pert unused when r1_weight is 0; everything 0 when both are). */
double hl_gan_critic_loss(const hl_gan_config *g, const float *z_real, const float *z_fake,
                          const float *z_pert, int64_t n, float *dz_real, float *dz_fake,
                          float *dz_pert);

/* ---- the random crop of the discriminator's inputs (spec §6.3-6.4) --------------------------
 * The reference's discriminator reads a random half-height, half-width spatial window of the
 * noisy latent (every frame, every channel). The window is h x w of an H x W latent with its
 * top-left corner at (y, x). */
typedef struct hl_gan_crop {
    int h, w, y, x;
} hl_gan_crop;

/* The window's size: floor(frac·H) and floor(frac·W) rounded down to multiples of the patch
 * (ph, pw), at least one patch; frac in (0, 1] (0.5: the reference). An error naming `key` when H
 * or W is not a multiple of the patch or frac is outside (0, 1]. */
hl_status hl_gan_crop_size(int H, int W, int ph, int pw, double frac, const char *key, int *h,
                           int *w, hl_error *err);
/* The window's position, uniform: y = u32 % (H - h + 1), then x = u32 % (W - w + 1) (two words
 * of rng; none when the window is the whole latent: y = x = 0). */
void hl_gan_crop_draw(int H, int W, int h, int w, hl_rng *rng, hl_gan_crop *c);
/* dst[p, i, j] = src[p, y + i, x + j] for P planes (P = C·F) of H x W: dst is [P, h, w]. */
void hl_gan_crop_copy(const float *src, int64_t P, int H, int W, const hl_gan_crop *c, float *dst);
/* The crop's backward: dst [P, H, W] = 0 outside the window, src [P, h, w] inside. */
void hl_gan_crop_uncrop(const float *src, int64_t P, int H, int W, const hl_gan_crop *c,
                        float *dst);

/* ---- the generator step: Cache Grad (spec §6.6) ------------------------------------------- */

/* The discriminator of the generator step: the critic trunk (fake score) with the heads on its
 * tapped blocks and output. */
typedef struct hl_gan_critic {
    const hl_dit *trunk;
    hl_dit *trunk_grad; /* the gradient view the trunk's backward accumulates into (hl_dit_backward
                           needs one; the generator step passes scratch or the critic's own
                           buffer, zeroed before the critic step) */
    const hl_gan *heads;
    int recompute; /* of the trunk's tape */
} hl_gan_critic;

/* One pass of the discriminator (trunk + heads) on one critic input, its activations kept
 * (opaque). The critic step (spec §6.4) runs one pass each on the re-noised real sample, the
 * re-noised generated sample and, for R1, the perturbed real sample
 * (hl_gan_r1_perturb(x_real_noised, ...)), takes the logits' gradients from hl_gan_critic_loss
 * and runs each pass's backward with the heads' and trunk's gradient views:
 *
 *   hl_gan_pass_forward(ctx, &cr, &in_real, &pr, z_real);   // also fake, pert
 *   hl_gan_critic_loss(&cfg, z_real, z_fake, z_pert, n, dz_real, dz_fake, dz_pert);
 *   hl_gan_pass_backward(ctx, &cr, pr, dz_real, heads_grad, NULL);  hl_gan_pass_free(pr); ...
 */
typedef struct hl_gan_pass hl_gan_pass;

/* Trunk forward with taps on in, then the heads: z [n_heads, B] (NULL: not wanted). in's arrays
 * must stay unchanged until the backward. */
hl_status hl_gan_pass_forward(const hl_ctx *ctx, const hl_gan_critic *cr,
                              const helios_dit_input *in, hl_gan_pass **pass, float *z);
/* From dz [n_heads, B]: heads' parameter gradients accumulate into heads_grad (NULL: none), the
 * trunk's into cr->trunk_grad, and dx = ∂L/∂in->hidden_states (overwritten; NULL: not wanted).
 * Once per pass. */
hl_status hl_gan_pass_backward(const hl_ctx *ctx, const hl_gan_critic *cr, hl_gan_pass *pass,
                               const float *dz, hl_gan *heads_grad, float *dx);

/* The generator step: a pass on in (in->hidden_states: the generator's re-noised x0);
 * *loss = g_weight·L_G. */
hl_status hl_gan_generator_forward(const hl_ctx *ctx, const hl_gan_critic *cr,
                                   const helios_dit_input *in, hl_gan_pass **pass, double *loss);
/* dx = ∂(g_weight·L_G)/∂in->hidden_states (overwritten; the shape of hidden_states). */
hl_status hl_gan_generator_backward(const hl_ctx *ctx, const hl_gan_critic *cr, hl_gan_pass *pass,
                                    float *dx);
size_t hl_gan_pass_bytes(const hl_gan_pass *p); /* activations (and backward scratch) held */
void hl_gan_pass_free(hl_gan_pass *p);

/* Cache Grad: forward, backward and free at once, so the discriminator's activations are gone
 * before the generator's backward runs; the generator adds dx·∂x_noisy/∂x0 into its dout.
 * bytes (NULL: not wanted): the discriminator's activation bytes at their peak. */
hl_status hl_gan_generator_grad(const hl_ctx *ctx, const hl_gan_critic *cr,
                                const helios_dit_input *in, double *loss, float *dx, size_t *bytes);

/* The chain into the generator's x0 when the discriminator read x_t = (1 - sigma)·x0 +
 * sigma·noise (noise independent of x0): dx0 += (1 - sigma)·dx_t, in float32 (the stage-3
 * objective's generator term). */
void hl_gan_add_x0_grad(float *dx0, const float *dx_t, double sigma, int64_t n);

/* Peak activation bytes of one generator step (generator forward with tape, x_noisy =
 * (1 - sigma)·out + sigma·noise into the discriminator, GAN term, generator backward) with and
 * without Cache Grad (without: the discriminator's pass is freed only after the generator's
 * backward). gen_in->hidden_states is also the noise; the generator's tape uses cr->recompute
 * too. g_with / g_without: the generator's gradient views each run accumulates into (the results
 * must be equal). Alive together, with G_fwd the generator's tape, G_all the same with its
 * backward scratch and Disc the discriminator's pass:
 *   with    = max(G_fwd + Disc, G_all)      (the pass is gone before the generator's backward)
 *   without = G_all + Disc */
typedef struct hl_gan_memory {
    size_t generator;     /* generator tape with its backward scratch */
    size_t discriminator; /* trunk + heads tapes with their backward scratch */
    size_t with_cache, without_cache;
} hl_gan_memory;

hl_status hl_gan_memory_report(const hl_ctx *ctx, const hl_dit *gen, const helios_dit_input *gen_in,
                               float sigma, const hl_gan_critic *cr, hl_dit *g_with,
                               hl_dit *g_without, hl_gan_memory *out);

#endif
