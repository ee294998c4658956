/* Checking the Wan VAE against the reference vectors (shared/oracle layout, README §5). Used by
 * `helios verify` and tests/test_vae.c. */
#ifndef HL_VAE_VECTORS_H
#define HL_VAE_VECTORS_H

#include "core/error.h"
#include "verify/report.h"

/* Runs every check of vae_case.safetensors in dir (oracle layout: vae_config.json,
 * vae_weights_f32.safetensors, vae_case.safetensors; plus pipeline_base.safetensors's chunk0 VAE
 * decode when present). report gets each comparison with its tolerance
 * 1e-4 · max(1, max|ref|); a comparison fails when max_abs > tol (or is NaN). Returns HL_OK when
 * every file could be run (the caller judges the numbers). */
hl_status hl_vae_verify(const char *dir, hl_report_fn report, void *user, hl_error *err);

#endif
