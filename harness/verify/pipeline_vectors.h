/* End-to-end parity of the chunk loop with the reference pipelines (pipeline_*.safetensors in the
 * oracle layout, with transformer_config.json and transformer_weights_f32.safetensors beside
 * them): the run is configured from the file's metadata (call_args, pipeline_init,
 * scheduler_config), seeded with the recorded generator seed, and every transformer call, every
 * scheduler step, every chunk's noise and the final latents are compared. */
#ifndef HL_PIPELINE_VECTORS_H
#define HL_PIPELINE_VECTORS_H

#include "ops/ops.h"
#include "verify/report.h"

/* Runs every pipeline file in dir. Fails only when the model cannot be loaded; a file that
 * cannot be run is reported as a failed case. */
hl_status hl_pipeline_verify(const hl_ctx *ctx, const char *dir, hl_report_fn report, void *user);

#endif
