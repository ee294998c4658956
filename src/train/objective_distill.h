/* What the stage-3 objectives "ode_init" and "stage3" share (train/objective.h): the settings of
 * the student's sampler, the teacher and the evidence, the synthetic prompts, the student bound to
 * the loop's buffers, the evidence log and the model folder written next to every checkpoint.
 *
 * Common settings (docs/training.md): teacher (a model or transformer folder, default the
 * configuration's "model"), steps ([2, 2, 2] student steps per level), amplify (true: the
 * first-chunk schedule, 2n steps per level), teacher_steps (10 UniPC steps per level),
 * teacher_guidance (4: v = u + 4 (c - u), i.e. c + 3 (c - u)), eval_prompts (2), eval_seed (1000),
 * recompute (true), synthetic {clips, frames, height, width, text_len, seed}. */
#ifndef HL_TRAIN_OBJECTIVE_DISTILL_H
#define HL_TRAIN_OBJECTIVE_DISTILL_H

#include <stdio.h>

#include "train/cfg_keys.h"
#include "train/distill.h"
#include "train/objective.h"
#include "train/synthetic.h"

typedef struct hl_distill_common {
    hl_backend *be;
    hl_error err;
    hl_ctx ctx;
    hl_dit_config cfg;
    const hl_params *layout;
    hl_distill_shape shape;
    hl_distill_sampler sampler;
    hl_synthetic data;
    int recompute;
    char teacher_path[4096], output[4096];
    float *teacher_w; /* frozen */
    hl_dit *teacher;
    hl_dit *m, *g; /* the student over the loop's buffers */
    const float *m_data;
    float *g_data;
    float *zeros; /* an empty prompt [L, text_dim] */
    hl_distill_eval eval;
    float *eval_prompts;
    const char *name; /* "stage3", "ode_init" */
} hl_distill_common;

/* The common keys of every objective that lists them in known (checked strictly there). */
extern const char *const hl_distill_common_keys[];
extern const size_t hl_distill_common_nkeys;

/* Reads the common keys, builds the data, loads the teacher, the sampler and the evidence set
 * (the teacher's samples), writes the start distance of env->init_params (a fresh run). */
hl_status hl_distill_common_init(hl_distill_common *c, const char *name, const hl_cfg_keys *k,
                                 const hl_train_env *env, hl_error *err);
void hl_distill_common_free(hl_distill_common *c);

/* The student bound to the loop's buffers (rebound when they move). */
hl_status hl_distill_bind(hl_distill_common *c, const float *params, float *grads, hl_error *err);

/* The distance of the student (params) to the teacher on the evidence set, appended to
 * OUTPUT/distance.tsv as "step<TAB>rms". */
hl_status hl_distill_log_distance(hl_distill_common *c, int64_t step, const float *params,
                                  double *rms, hl_error *err);

/* In a checkpoint folder being written: model_index.json (HeliosPyramidPipeline, is_distilled),
 * scheduler/scheduler_config.json (HeliosDMDScheduler, the student's), and links to the
 * teacher's text_encoder, tokenizer and vae, so the folder is a model folder `helios generate -m`
 * runs with the Distilled recipe. Without a teacher model folder (model_index.json) only the
 * scheduler is written. When DIR/ema/transformer/config.json exists (the checkpoint's EMA
 * weights, hl_ckpt_io.ema_folder "ema"), DIR/ema gets the same files: a second model folder. */
hl_status hl_distill_write_model_folder(const hl_distill_common *c, const char *dir, hl_error *err);

/* "checkpoint-STEP" of a folder path: STEP, or -1. */
int64_t hl_distill_dir_step(const char *dir);

/* Writes a text file and fsyncs it. */
hl_status hl_distill_write_text(const char *path, const char *text, hl_error *err);

#endif
