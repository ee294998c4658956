/* The stage-1 (Base) rectified-flow objective (spec training.md §2.3; oracle README §9.2; ref:
 * Helios utils_helios_base.py prepare_stage1_noise_input and _flow_loss):
 *
 *   noisy  = (1 - sigma)·x0 + sigma·noise          what the transformer sees (hidden_states)
 *   target = noise - x0                             the velocity it must predict
 *   loss   = mean_b( mean_elements( w_b·(pred - target)² ) )
 *   dL/dpred = 2·w_b·(pred - target) / (B·numel)
 *
 * with w_b = 1 for the released weighting schemes (compute_loss_weighting_for_sd3 returns ones
 * for logit_normal and none). Shapes: x0, noise, pred, target (B, C, F, H, W) as B rows of numel
 * elements. */
#ifndef HL_TRAIN_LOSS_H
#define HL_TRAIN_LOSS_H

#include <stdint.h>

/* noisy and target of n elements for one sigma (float32 ops in the reference's order). */
void hl_flow_noisy(const float *x0, const float *noise, float sigma, int64_t n, float *noisy,
                   float *target);

/* The loss (accumulated in double, returned as such) and, when dpred is not NULL, its gradient
 * dpred = dL/dpred (written, not accumulated). w: per-sample weights [B] or NULL for ones. */
double hl_flow_loss(const float *pred, const float *target, const float *w, int B, int64_t numel,
                    float *dpred);

#endif
