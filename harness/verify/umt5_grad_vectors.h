/* Checking the UMT5 backward against grads_umt5[_f64].safetensors (shared/oracle README §9.1):
 * L = sum(last_hidden_state * R) over every position of input_ids (2, 16) with attention_mask,
 * the weights umt5_weights_f32.safetensors and umt5_config.json beside it. Used by
 * `helios verify` and tests/test_umt5.c. */
#ifndef HL_UMT5_GRAD_VECTORS_H
#define HL_UMT5_GRAD_VECTORS_H

#include "ops/ops.h"
#include "verify/report.h"

/* Runs the training forward and the backward of file (a base name in dir) and reports: output
 * (1e-4 · max(1, max|ref|)), loss (1e-4 relative), then every grad.<weight> the model has
 * (README §7: 1e-4 · max|ref| per tensor; the tied encoder.embed_tokens.weight against
 * shared.weight's gradient). A gradient the file lacks is reported as failed. Fails only when
 * the files cannot be read. */
hl_status hl_umt5_grad_verify(const hl_ctx *ctx, const char *dir, const char *file,
                              hl_report_fn report, void *user);

#endif
