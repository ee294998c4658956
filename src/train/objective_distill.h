/* What the stage-3 objectives "ode_init" and "stage3" share (train/objective.h): the settings of
 * the student's sampler, the teacher and the evidence, the data (synthetic or cached clips), the
 * student bound to the loop's buffers, the evidence log and the model folder written next to every
 * checkpoint.
 *
 * Common settings (docs/training.md): teacher (a model or transformer folder, default the
 * configuration's "model"), steps ([2, 2, 2] student steps per level), amplify (true: the
 * first-chunk schedule, 2n steps per level), teacher_steps (10 UniPC steps per level),
 * teacher_guidance (4: v = u + 4 (c - u), i.e. c + 3 (c - u)), eval_prompts (2), eval_seed (1000),
 * recompute (true), synthetic {clips, frames, height, width, text_len, seed} ("data":
 * "synthetic") or dataset {width, height, frames, clips, seed, text_len, cache} (world or folder
 * data, hl_distill_data_open: chunks of 9 latent frames, the sizes and clip_chunks follow from the
 * cached clips); the history of each sample (spec §6.3 step 1, stage 1's draws, train/stage1.h):
 * clip_chunks (3: a synthetic clip holds clip_chunks x frames latent frames), p_t2v (0.4), p_i2v
 * (0), p_v2v (0.5). p_t2v = 1 draws
 * nothing: every sample is a first chunk of the clip with an empty history, as before histories
 * (the same bits). */
#ifndef HL_TRAIN_OBJECTIVE_DISTILL_H
#define HL_TRAIN_OBJECTIVE_DISTILL_H

#include <stdio.h>

#include "train/cfg_keys.h"
#include "train/distill.h"
#include "train/objective.h"
#include "train/stage1.h"
#include "train/synthetic.h"

/* A sample's line of tasks.tsv: its task (-1: a first chunk, "t2v"; else an hl_stage1_task), the
 * chunk and the dropped history frames (0 when nothing was drawn). Plain bytes: the ranks gather
 * them. */
typedef struct hl_distill_task {
    int32_t task, chunk, dropped;
} hl_distill_task;

/* One sample's chunk: a first chunk (empty history) or a later one with its history. */
typedef struct hl_distill_hist {
    bool drawn; /* stage 1's draws were made (p_t2v < 1): s holds them */
    bool first; /* empty history (not drawn, task T2V, or chunk 0): the amplified schedule */
    hl_stage1_sample s; /* x0 = the target chunk, hist = the history inputs, chunk, task, dropped */
} hl_distill_hist;

typedef struct hl_distill_common {
    hl_backend *be;
    hl_error err;
    hl_ctx ctx;
    hl_dit_config cfg;
    const hl_params *layout;
    hl_distill_shape shape;
    hl_distill_sampler sampler;
    hl_synthetic data; /* clips of clip_chunks x shape.F frames */
    bool cached;       /* data from the latent cache (world or folder), not synthetic */
    int clip_chunks;
    hl_stage1_config task; /* the history draws (chunk_frames = shape.F; corrupt_history: stage3's
                              key, off in ode_init, whose history is the teacher's own) */
    float *chunk0;         /* scratch: a clip's first chunk [C, F, H, W] */
    hl_distill_hist cur;   /* the current sample's chunk */
    FILE *tasks;           /* OUTPUT/tasks.tsv, opened on the first line (rank 0) */
    /* An optimizer step is spp samples: micro-batches of batch samples on each of world ranks
     * (hl_train_env); its samples agree on everything that follows the step. Rank 0 (lead) alone
     * writes the logs and holds the evidence set. */
    int spp, batch, world;
    bool lead;
    hl_distill_task *task_mb, *task_all; /* this rank's micro-batch [batch], every rank's
                                            [world x batch] in sample order */
    float *sample_g; /* batch > 1: one sample's student gradient (hl_distill_backward) */
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

/* "data": "procedural" (the tiny world) or a folder of videos: reads the objective's "dataset"
 * block (k: the objective block; stage 1's keys and defaults, errors naming
 * objective.dataset.KEY), opens the dataset and its latent cache (the clips encoded once by the
 * VAE and text encoder of env->model, which must hold vae/, text_encoder/, tokenizer/; default
 * folder OUTPUT/cache), fills the cache and copies every clip into d: latents [count, C, F, H, W]
 * (the normalised posterior mean, F = 9 per 33 video frames), embeds [count, L, text_dim] (L =
 * text_len). ctx's backend runs the encodes. On failure d may hold arrays: hl_synthetic_free. */
hl_status hl_distill_data_open(const hl_cfg_keys *k, const hl_train_env *env, const hl_ctx *ctx,
                               hl_synthetic *d, hl_error *err);

/* Reads the common keys, builds the data, loads the teacher, the sampler and (rank 0) the
 * evidence set (the teacher's samples), writes the start distance of env->init_params (a fresh
 * run, rank 0). */
hl_status hl_distill_common_init(hl_distill_common *c, const char *name, const hl_cfg_keys *k,
                                 const hl_train_env *env, hl_error *err);
void hl_distill_common_free(hl_distill_common *c);

/* Draws the chunk of a sample of clip `clip` from g (nothing when p_t2v = 1): stage 1's target
 * chunk, history and task mix (train/stage1.h hl_stage1_history_make), then, for a later chunk
 * with task.corrupt_history, Frame-Aware Corrupt of its history (train/corrupt.h). h is freed first (zero it
 * before the first use); free with hl_distill_hist_free. */
hl_status hl_distill_hist_draw(hl_distill_common *c, int64_t clip, hl_rng *g, hl_distill_hist *h,
                               hl_error *err);
void hl_distill_hist_free(hl_distill_hist *h);
/* Points the sampler (and so every forward of hl_distill_dit_input) at h's history and schedule. */
void hl_distill_hist_use(hl_distill_common *c, const hl_distill_hist *h);
/* The real chunk of h [C, F, H, W]: the drawn target chunk, else the clip's first chunk. */
const float *hl_distill_hist_real(hl_distill_common *c, const hl_distill_hist *h, int64_t clip);
/* "t2v" for a first chunk, else the stage-1 task name of the draw ("full", "i2v", "v2v"). */
const char *hl_distill_hist_name(const hl_distill_hist *h);

/* The optimizer step (0-based) of a sample: every sample of a step takes its TTUR pattern,
 * schedules and GAN start from it. */
static inline int64_t hl_distill_step_of(const hl_distill_common *c, int64_t sample_index) {
    return sample_index / c->spp;
}

/* tasks.tsv, one line "step<TAB>task<TAB>chunk<TAB>dropped" per sample in sample order (step: the
 * optimizer step, 1-based; a fresh run starts it with its header), whichever rank ran the sample:
 * the step function notes its sample's task (hl_distill_note_task), the micro_batch hook gathers
 * the micro-batch's notes from every rank (a collective) and rank 0 appends them
 * (hl_distill_log_tasks). hl_distill_truncate_tasks keeps the lines up to step last (a resume). */
void hl_distill_note_task(hl_distill_common *c, int64_t sample_index, const hl_distill_hist *h);
hl_status hl_distill_gather_tasks(hl_distill_common *c, const hl_dist *d, hl_error *err);
hl_status hl_distill_log_tasks(hl_distill_common *c, int64_t step, hl_error *err);
hl_status hl_distill_truncate_tasks(hl_distill_common *c, int64_t last, hl_error *err);
/* hl_train_sync.micro_batch of an objective (its first member an hl_distill_common) whose only
 * per-sample record is tasks.tsv: gather, then rank 0 appends. */
hl_status hl_distill_sync_tasks(void *obj, const hl_dist *d, int64_t step, int64_t j,
                                hl_error *err);

/* The student bound to the loop's buffers (rebound when they move). */
hl_status hl_distill_bind(hl_distill_common *c, const float *params, float *grads, hl_error *err);
/* The student's backward of one sample (dout: d loss / d its output) into the loop's gradients:
 * directly with batch 1; with batch > 1 into a zeroed buffer of the sample's own, then added,
 * so a micro-batch sums whole sample gradients in sample order, as B micro-batches of one sample
 * (or B ranks) do, and a batch of B gives their bits. (The backward adds some parameters'
 * gradients in several pieces, so adding a second sample's pieces into the first's sum, as a
 * direct accumulation would, rounds otherwise.) */
hl_status hl_distill_backward(hl_distill_common *c, const hl_ctx *ctx, hl_dit_tape *tape,
                              const float *dout);

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
