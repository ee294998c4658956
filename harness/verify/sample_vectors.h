/* Checks of src/sample against a directory of reference vectors in the oracle layout:
 *
 *   scheduler_schedules.safetensors  every tag's timesteps/sigmas (and int64(t)), the stage
 *                                    tables and the metadata constants
 *   scheduler_steps.safetensors      every tag's step() sequence (UniPC, Euler, DMD)
 *   pyramid_ops.safetensors          down/up sampling, block noise, Cholesky, renoise alpha/beta
 *   pipeline_*.safetensors           the pipeline generator's draws replayed with hl_rng (the seed
 *                                    from the metadata, else from manifest.json, else searched in
 *                                    [0, 2^22) from the first draw), block noise, every set_timesteps and step() of the
 *                                    log, and the inputs of the first call of each stage
 *
 * Everything (configs, shapes, mu, seeds) is read from the files; a missing file is skipped.
 * Each comparison is passed to report (verify/report.h); it passes when
 * max_abs <= tol (tol is 0 where the result must be bit-exact). A comparison that could not be
 * made (a missing tensor, a seed not found) is reported with max_abs = INFINITY.
 * Returns an error only for unreadable or malformed files. */
#ifndef HL_SAMPLE_VECTORS_H
#define HL_SAMPLE_VECTORS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "verify/report.h"

/* The generator seed of pipeline file `path` as the oracle README (§6 item 17) defines it:
 * seed · 1000003 + 72 (T2V: pipeline_base, _mid, _distilled), + 91 (pipeline_i2v_*) or + 96
 * (pipeline_v2v_*), with seed the "seed" of manifest.json in the file's directory. *found = false
 * (HL_OK) when there is no manifest or it has no "seed"; HELIOS_ERR_FORMAT when it is unreadable
 * or the seed is not a non-negative integer. */
hl_status hl_sample_manifest_seed(const char *path, uint64_t *seed, bool *found, hl_error *err);

/* The generator seed of a pipeline file: from its metadata, else from manifest.json (either
 * must reproduce the recorded draws, else HELIOS_ERR_FORMAT says so), else searched in
 * [0, 2^22) from the first draw (files that carry neither). */
hl_status hl_sample_pipeline_seed(const hl_safetensors *st, uint64_t *seed, hl_error *err);

hl_status hl_sample_verify(const char *dir, hl_report_fn report, void *user, hl_error *err);

#endif
