/* Training checkpoints: a folder per optimizer step, written so that a crash at any instant leaves
 * either the previous set of checkpoints or the new one, never a half-written one that resume
 * would pick.
 *
 *   OUT/checkpoint-STEP/
 *     COMPONENT/config.json                          the model's config.json, verbatim
 *     COMPONENT/diffusion_pytorch_model.safetensors  the weights (F32, diffusers names): the
 *                                                    folder loads as a transformer folder as is
 *     EMA_FOLDER/COMPONENT/...  the EMA weights as a component folder (io.ema_folder, with an EMA)
 *     optimizer.safetensors    exp_avg.NAME, exp_avg_sq.NAME (AdamW moments), ema.NAME (EMA
 *                              weights, when kept); metadata "step" = AdamW's step count
 *     state.json               version 2: step, samples consumed (the data position), config
 *                              hash, loss (C99 %a) and the per-sample RNG rule; no generator
 *                              state: sample i's generator is keyed by (seed, i)
 *     COMPLETE                 written last: a folder without it is not a checkpoint
 *
 * Writing: everything goes into OUT/checkpoint-STEP.tmp/, each file fsync'ed, the folders
 * fsync'ed, then renamed to checkpoint-STEP (OUT fsync'ed), then COMPLETE is created and fsync'ed
 * with its folder. Resume takes the newest folder holding COMPLETE; hl_ckpt_clean removes
 * *.tmp folders and checkpoint folders without COMPLETE. */
#ifndef HL_TRAIN_CHECKPOINT_H
#define HL_TRAIN_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "sample/rng.h"
#include "train/adamw.h"
#include "train/params.h"

/* What the loop needs besides the buffers to continue a run exactly. */
typedef struct hl_ckpt_state {
    int64_t step;         /* optimizer steps done */
    int64_t samples;      /* samples consumed: the data loader's position */
    uint64_t config_hash; /* of the training configuration that wrote it */
    double loss;          /* of the last step (informative) */
} hl_ckpt_state;

/* Called between the stages of a write ("weights", "optimizer", "state", "renamed",
 * "complete"): a test hook for killing the writer midway. */
typedef void (*hl_ckpt_hook_fn)(void *user, int64_t step, const char *stage);

typedef struct hl_ckpt_io {
    const char *out_dir;
    const char *component;    /* sub-folder of the weights: "transformer" */
    const char *weights_name; /* "diffusion_pytorch_model.safetensors" */
    const char *config_json;  /* text of COMPONENT/config.json (NULL: not written) */
    const hl_params *layout;
    hl_ckpt_hook_fn hook; /* NULL: none */
    void *hook_user;
    /* Optional state of the objective (a second model, its optimizer, ...) kept with each
     * checkpoint: extra_save writes its files into the folder being written (before state.json,
     * so before COMPLETE; write each file atomically, e.g. with hl_st_write), extra_load reads
     * them back from a complete checkpoint folder. NULL: none. */
    hl_status (*extra_save)(void *user, const char *dir, hl_error *err);
    hl_status (*extra_load)(void *user, const char *dir, hl_error *err);
    void *extra_user;
    /* Optional: with an EMA, its weights also as a model's own folder, written before extra_save:
     * DIR/ema_folder/COMPONENT/{config.json, WEIGHTS} (the same files as COMPONENT/, the EMA
     * weights in place of the trained ones), so that an objective's extra_save can complete
     * DIR/ema_folder into a loadable model folder. Only read back as part of the EMA in
     * optimizer.safetensors (the same bits). NULL: not written. */
    const char *ema_folder;
} hl_ckpt_io;

/* Writes OUT/checkpoint-STEP (STEP = st->step) from params, the AdamW moments and ema (NULL: no
 * EMA). Creates OUT if needed; a leftover checkpoint-STEP.tmp or incomplete checkpoint-STEP is
 * replaced. */
hl_status hl_ckpt_save(const hl_ckpt_io *io, const float *params, const hl_adamw *opt,
                       const float *ema, const hl_ckpt_state *st, hl_error *err);

/* The newest complete checkpoint of out_dir: *step and its folder in path[0..n); *step = -1 when
 * there is none (also when out_dir does not exist). */
hl_status hl_ckpt_latest(const char *out_dir, int64_t *step, char *path, size_t n, hl_error *err);

/* Removes out_dir's checkpoint-*.tmp folders and its checkpoint folders without COMPLETE;
 * *n_removed (optional) counts them. */
hl_status hl_ckpt_clean(const char *out_dir, int *n_removed, hl_error *err);

/* Keeps the newest `keep` complete checkpoints of out_dir, removes the older ones (keep <= 0:
 * keeps all). */
hl_status hl_ckpt_prune(const char *out_dir, int keep, hl_error *err);

/* Reads checkpoint folder dir back: params, the moments and step of opt (already sized to the
 * layout), ema (NULL: not read; else the checkpoint must hold it) and the state. Every tensor is
 * required with its shape; errors name the file and tensor. */
hl_status hl_ckpt_load(const hl_ckpt_io *io, const char *dir, float *params, hl_adamw *opt,
                       float *ema, hl_ckpt_state *st, hl_error *err);

/* A small file written atomically: PATH.part, fsync, rename. */
hl_status hl_write_file_atomic(const char *path, const char *data, size_t len, hl_error *err);

#endif
