/* Checking the UMT5 encoder against the reference vectors (shared/oracle layout): umt5_case
 * with umt5_config.json and umt5_weights_f32.safetensors beside it. Used by `helios verify` and
 * tests/test_umt5.c. */
#ifndef HL_UMT5_VECTORS_H
#define HL_UMT5_VECTORS_H

#include "ops/ops.h"
#include "verify/report.h"

/* Runs every recorded check: per case X (A, B, ...): X.last_hidden_state, X.hidden_states.i,
 * X.prompt_embeds_pipeline, X.blockN.position_bias, X.relative_position_bucket. Fails only when
 * the files cannot be read. */
hl_status hl_umt5_verify(const hl_ctx *ctx, const char *dir, hl_report_fn report, void *user);

#endif
