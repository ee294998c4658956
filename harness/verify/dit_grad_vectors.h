/* `helios verify` for the transformer's backward: grads_transformer[_f64] (L = Σ out ⊙ R) and
 * grads_transformer_flow_stage1[_f64] / _stage2[_f64] (the Helios stage-1 and stage-2
 * pyramid flow-matching losses: K samples, gradients summed), oracle README
 * §9.1-9.2. The weights (transformer_weights_f32 + transformer_config.json of the same folder) are
 * loaded into a flat float32 parameter buffer as training does; the forward keeps a tape, the
 * backward accumulates into a gradient buffer of the same layout, and every grad.* and
 * grad_input.* tensor is compared (1e-4 · max|ref| each, README §7), the loss to 1e-4 relative.
 * A file of several samples (stage 2's pyramid levels) runs them packed into one forward and one
 * backward (hl_dit_forward_train_packed), as the stage-2 objective trains by default; the
 * single-input path is the one the other files check. */
#ifndef HL_DIT_GRAD_VECTORS_H
#define HL_DIT_GRAD_VECTORS_H

#include "ops/ops.h"
#include "verify/report.h"

/* Runs the one file `file` (a base name in dir); recompute: the training forward's mode. */
hl_status hl_dit_grad_verify(const hl_ctx *ctx, const char *dir, const char *file, int recompute,
                             hl_report_fn report, void *user);

#endif
