/* The numeric pieces of stage-3 distillation (spec training.md §6.3-6.4, DMD eq. 7-8), each on
 * flat float32 arrays of n values (one sample) and tested against hand-computed values:
 *
 *   CFG on x0 predictions:  x0_real = c + g (c - u)            (real_guidance_scale g = 3)
 *   DMD gradient:           grad = (x0_fake - x0_real) / mean|x0 - x0_real|
 *   DMD loss:               L = 0.5 mean (x0 - sg(x0 - grad))^2 = 0.5 mean grad^2,
 *                           dL/dx0 = grad / n
 *   critic (fake score):    L = mean (v - (eps - x0))^2        (flow matching on x0 re-noised)
 *   x0 from a flow output:  x0 = x_t - sigma v                 (x_t = (1 - sigma) x0 + sigma eps)
 *   dynamic re-noise:       t ~ t_min + (t_max - t_min) Beta(a, b), with (a, b) decaying by a
 *                           cosine from (a0, b0) to (a1, b1) over decay_steps generator steps,
 *                           then sigma = t / N through the linear dynamic shift of the latent
 *   TTUR:                   the generator is updated on steps s with s % ratio == 0, the critic
 *                           on every step. */
#ifndef HL_TRAIN_DMD_H
#define HL_TRAIN_DMD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "sample/rng.h"

/* out = c + g (c - u) (float32, one rounding per operation as torch). out may alias c or u. */
void hl_dmd_cfg(const float *c, const float *u, double g, int64_t n, float *out);

/* x0 = x - sigma v, in float32 with sigma rounded to float. */
void hl_dmd_flow_to_x0(const float *x, const float *v, double sigma, int64_t n, float *x0);

/* The DMD gradient of one sample into grad[n] (may be NULL) and dL/dx0 into dx0[n] (may be NULL);
 * returns L. The normaliser mean|x0 - real| is summed in double; where it is 0 (x0 equals the
 * real score's prediction) the gradient is 0 (torch's nan_to_num of 0/0). *normalizer (may be
 * NULL) receives it. */
double hl_dmd_loss(const float *x0, const float *real, const float *fake, int64_t n, float *grad,
                   float *dx0, double *normalizer);

/* The flow-matching loss of the critic, mean (v - (eps - x0))^2, and its gradient 2 r / n into
 * dv[n] (may be NULL). */
double hl_dmd_critic_loss(const float *v, const float *eps, const float *x0, int64_t n, float *dv);

/* The staged ODE initialisation's regression (spec §6.2) of one sample: x0 = x - sigma v
 * (float32), L = weight 0.5 mean (x0 - target)^2, and dL/dv = -sigma weight (x0 - target) / n
 * into dv[n] (may be NULL). */
double hl_ode_regression_loss(const float *x, const float *v, double sigma, const float *target,
                              double weight, int64_t n, float *dv);

/* The dynamic re-noise distribution. */
typedef struct hl_dmd_renoise {
    double a0, b0;       /* Beta at generator step 0: 4, 1.5 */
    double a1, b1;       /* after decay_steps: 1, 1 (uniform) */
    int64_t decay_steps; /* 500 */
    double t_min, t_max; /* timesteps 20, 980 */
    int num_train_timesteps;
} hl_dmd_renoise;

void hl_dmd_renoise_default(hl_dmd_renoise *r);
/* (a, b) at generator step k: f = 0.5 (1 + cos(pi min(k / decay_steps, 1))), a = a1 + (a0 - a1) f
 * (decay_steps 0: (a1, b1)). */
void hl_dmd_beta_params(const hl_dmd_renoise *r, int64_t k, double *a, double *b);

/* Gamma(a, 1) by Marsaglia-Tsang on g (normals by Box-Muller on 53-bit uniforms; a < 1 boosted
 * by U^(1/a)); Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b). Deterministic in g. */
double hl_rng_gamma(hl_rng *g, double a);
double hl_rng_beta(hl_rng *g, double a, double b);

/* A re-noise draw at generator step k for a latent whose dynamic-shift mu is mu (<= 0: no shift):
 * *sigma in (0, 1) and *timestep = sigma N. */
void hl_dmd_renoise_draw(const hl_dmd_renoise *r, int64_t k, double mu, hl_rng *g, double *sigma,
                         double *timestep);

/* TTUR: whether step s (0-based) updates the generator (ratio >= 1). */
bool hl_dmd_generator_step(int64_t s, int ratio);

#endif
