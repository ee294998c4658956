/* The VAE training objective's differentiable pieces (issue 10 item 5): reconstruction L1 / L2
 * and the KL divergence of the diagonal Gaussian posterior from N(0, 1), with their gradients;
 * below them, the frame- and edge-difference terms the tiny family's VAE probes use.
 * The Wan VAE's own training recipe is not published; the form is the LDM/diffusers one
 * (DiagonalGaussianDistribution.kl: logvar clamped to [-30, 20], the per-sample sum over latent
 * elements, averaged over the batch; the reconstruction terms are element means):
 *
 *   l1   = mean |recon - x|                       over B·n_pix elements
 *   l2   = mean (recon - x)²
 *   kl   = (1/B) Σ 0.5·(mean² + exp(lv) - 1 - lv),  lv = clamp(logvar, -30, 20)
 *   loss = w_l1·l1 + w_l2·l2 + w_kl·kl
 *
 *   dloss/drecon  = (w_l1·sign(recon - x) + 2·w_l2·(recon - x)) / (B·n_pix)   (sign(0) = 0)
 *   dloss/dmean   = w_kl·mean / B
 *   dloss/dlogvar = w_kl·0.5·(exp(lv) - 1) / B   (0 where the clamp is active)
 *
 * Shapes: recon, x (B, 3, T, H, W) as B rows of n_pix; mean, logvar (B, z_dim, T', h, w) as B rows
 * of n_lat (the two halves of the encoder's moments). Sums run in double. */
#ifndef HL_TRAIN_VAE_LOSS_H
#define HL_TRAIN_VAE_LOSS_H

#include <stdint.h>

#include "core/error.h"

typedef struct hl_vae_loss_params {
    float w_l1; /* 1 */
    float w_l2; /* 0 */
    float w_kl; /* 1e-6 (LDM's kl_weight default; Wan's is unpublished) */
} hl_vae_loss_params;

void hl_vae_loss_params_default(hl_vae_loss_params *p);

typedef struct hl_vae_loss_value {
    double loss, l1, l2, kl; /* kl unweighted, per sample */
} hl_vae_loss_value;

/* Values into *v and, for each non-NULL gradient pointer, that gradient (written, not
 * accumulated). mean/logvar may be NULL with n_lat 0 (no KL term). */
hl_status hl_vae_loss(const hl_vae_loss_params *p, int B, const float *recon, const float *x,
                      int64_t n_pix, const float *mean, const float *logvar, int64_t n_lat,
                      hl_vae_loss_value *v, float *d_recon, float *d_mean, float *d_logvar,
                      hl_error *err);

/* The frame-difference term: two reconstructed frames a and b (consecutive frames of a window,
 * or the last frame of one window and the first of the next, the two decoded apart, each with
 * fresh caches, as the pipelines decode chunk by chunk) should differ as the clip's frames do,
 *
 *   d    = (rb - ra) - (xb - xa)        per pixel of C planes of hw
 *   diff = mean d²                      (returned, unweighted)
 *   d/drb += 2·w·d / (C·hw),  d/dra -= 2·w·d / (C·hw)   (accumulated where non-NULL)
 *
 * Every pointer is the frame's first pixel; plane c lies at c·stride (a window's (C, T, H, W)
 * layout: stride T·hw, the same for both frames). Sums run in double. */
double hl_vae_frame_diff(float w, int C, int64_t hw, int64_t stride, const float *ra,
                         const float *xa, const float *rb, const float *xb, float *d_ra,
                         float *d_rb);

/* The edge term: the spatial differences of the reconstruction should be the clip's,
 *
 *   d    = (r[q] - r[p]) - (x[q] - x[p])  for every pixel p and its right and lower neighbour q
 *          in each of the n planes of H x W
 *   edge = mean d²                        (returned, unweighted; over n·(H·(W-1) + (H-1)·W) pairs)
 *   d/dr[q] += 2·w·d / pairs,  d/dr[p] -= 2·w·d / pairs   (accumulated into d_r where non-NULL)
 *
 * MSE weighs every spatial frequency alike and settles for blurred edges; this term weighs the
 * error at frequency f by about f², so edges count (the "gradient difference loss" of video
 * prediction, in its squared form). Sums run in double. */
double hl_vae_edge_diff(float w, int64_t n, int H, int W, const float *r, const float *x,
                        float *d_r);

/* The reparameterised posterior sample z = mean + exp(0.5·lv)·eps (lv clamped as above; what
 * sample/prepare.h hl_latent_sample computes before normalising) and its backward: given dz,
 * d_mean += dz and d_logvar += dz·eps·0.5·exp(0.5·lv) (0 where clamped). These accumulate, to add
 * the decoder's path to the KL gradient hl_vae_loss wrote. n elements. */
void hl_vae_loss_sample(const float *mean, const float *logvar, const float *eps, int64_t n,
                        float *z);
void hl_vae_loss_sample_backward(const float *logvar, const float *eps, const float *dz, int64_t n,
                                 float *d_mean, float *d_logvar);

#endif
