/* Checking the Wan VAE backward against the reference gradient vectors (shared/oracle layout,
 * README §9.1): grads_vae_decode[_f64] and grads_vae_encode[_f64]. Used by `helios verify`. */
#ifndef HL_VAE_GRAD_VECTORS_H
#define HL_VAE_GRAD_VECTORS_H

#include "core/error.h"
#include "ops/ops.h"
#include "verify/report.h"

/* Runs one gradient file `file` (base name, grads_vae_decode* or grads_vae_encode*) of dir with
 * the weights vae_weights_f32.safetensors and vae_config.json on ctx's backend: the forward with
 * save, L = Σ output ⊙ R and the backward seeded with R. Reports (README §7 criteria):
 *   output          max_abs vs 1e-4 · max(1, max|ref|)
 *   loss            |L - ref| vs 1e-4 · |ref|
 *   grad_input.*    max_abs vs 1e-4 · max|ref|
 *   grad.*          one line: the tensor with the largest max_abs / (1e-4 · max|ref|) of all of
 *                   them (named in the line with the count); a grad.* name that is not a
 *                   parameter of the model is a failure (INFINITY).
 * Returns HL_OK when the file could be run (the caller judges the numbers). */
hl_status hl_vae_grad_verify(const hl_ctx *ctx, const char *dir, const char *file,
                             hl_report_fn report, void *user);

#endif
