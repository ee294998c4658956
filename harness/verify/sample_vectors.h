/* Checks of src/sample against a directory of reference vectors in the oracle layout:
 *
 *   scheduler_schedules.safetensors  every tag's timesteps/sigmas (and int64(t)), the stage
 *                                    tables and the metadata constants
 *   scheduler_steps.safetensors      every tag's step() sequence (UniPC, Euler, DMD)
 *   pyramid_ops.safetensors          down/up sampling, block noise, Cholesky, renoise alpha/beta
 *   pipeline_*.safetensors           the pipeline generator's draws replayed with hl_rng (the seed
 *                                    from the metadata, else searched in [0, 2^22) from the first
 *                                    draw), block noise, every set_timesteps and step() of the
 *                                    log, and the inputs of the first call of each stage
 *
 * Everything (configs, shapes, mu, seeds) is read from the files; a missing file is skipped.
 * Each comparison is passed to report (verify/report.h); it passes when
 * max_abs <= tol (tol is 0 where the result must be bit-exact). A comparison that could not be
 * made (a missing tensor, a seed not found) is reported with max_abs = INFINITY.
 * Returns an error only for unreadable or malformed files. */
#ifndef HL_SAMPLE_VECTORS_H
#define HL_SAMPLE_VECTORS_H

#include <stdint.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "verify/report.h"

/* The generator seed of a pipeline file (metadata, else searched as above). */
hl_status hl_sample_pipeline_seed(const hl_safetensors *st, uint64_t *seed, hl_error *err);

hl_status hl_sample_verify(const char *dir, hl_report_fn report, void *user,
                           hl_error *err);

#endif
