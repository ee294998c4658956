/* Strict reading of an objective's settings block (train/objective.h): unknown keys, values of the
 * wrong type or out of range are errors naming the file and "PREFIX.KEY". Absent keys leave the
 * value as it is (the default). */
#ifndef HL_TRAIN_CFG_KEYS_H
#define HL_TRAIN_CFG_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "io/json.h"
#include "sample/schedule.h"
#include "train/dataset.h"

typedef struct hl_cfg_keys {
    const hl_json *s;
    const char *file, *prefix; /* "objective", "objective.synthetic" */
    hl_error *err;
} hl_cfg_keys;

hl_status hl_cfg_bad(const hl_cfg_keys *k, const char *key, const char *why);
hl_status hl_cfg_only(const hl_cfg_keys *k, const char *const *known, size_t n);
hl_status hl_cfg_num(const hl_cfg_keys *k, const char *key, double lo, double hi, double *out);
hl_status hl_cfg_int(const hl_cfg_keys *k, const char *key, int64_t lo, int64_t hi, int *out);
hl_status hl_cfg_bool(const hl_cfg_keys *k, const char *key, bool *out);
hl_status hl_cfg_str(const hl_cfg_keys *k, const char *key, const char **out);
/* An array of exactly n numbers, each in [lo, hi]. */
hl_status hl_cfg_nums(const hl_cfg_keys *k, const char *key, int n, double lo, double hi,
                      double *out);

/* The "dataset" block of the objective parent (stage 1, 2 and 3 on "data" "procedural" = the
 * tiny world, or a folder of captioned videos): {"width" 64, "height" 64, "frames" 66 (a
 * multiple of 33: one VAE window each), "clips" 64, "seed" 0 (world), "text_len" 512, "cache"
 * (a folder; *cache stays NULL when absent)}. Errors name "PREFIX.dataset.KEY". */
hl_status hl_cfg_dataset(const hl_cfg_keys *parent, const char *data, hl_dataset_config *dc,
                         int *text_len, const char **cache);

/* The pyramid a model folder is sampled with: "stages", "stage_range" and "gamma" of
 * MODEL/scheduler/scheduler_config.json, copied over sc's (the rest of sc is kept: training has
 * its own shift settings). The pyramid objectives (stage 2, ode_init, stage 3) build their levels
 * from it, so that a model is trained on the pyramid `helios generate` samples it with. A folder
 * without that file leaves sc as it is and *found false; a file that does not parse is an error
 * naming it. */
hl_status hl_cfg_model_pyramid(const char *model, hl_sched_config *sc, bool *found, hl_error *err);

#endif
