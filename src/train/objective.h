/* Training objectives as the `helios train` command picks them by name: each is a step function
 * for the loop (train/train_loop.h) plus how to make its state from the configuration's
 * "objective" block. The block is opaque to the command; the objective reads its own keys and
 * reports unknown or bad ones as "objective.KEY".
 *
 * Adding one: write create/step/validate/destroy and add a row to the table in objective.c. */
#ifndef HL_TRAIN_OBJECTIVE_H
#define HL_TRAIN_OBJECTIVE_H

#include "dit/dit.h"
#include "text/umt5.h"
#include "io/json.h"
#include "train/params.h"
#include "train/train_loop.h"
#include "vae/vae.h"

/* What an objective may use to build itself. */
typedef struct hl_train_env {
    const char *config_path;  /* the training configuration file (for messages) */
    const hl_params *layout;  /* the trained parameters */
    const hl_dit_config *dit; /* the transformer's config (component "transformer") */
    const float *init_params; /* the initial weights (layout.total floats) */
    uint64_t seed;            /* the run's seed */
    const char *data;         /* the configuration's "data": "synthetic", "procedural", a folder */
    const char *model;        /* the configuration's "model" (a model folder for cached data) */
    const char *output;       /* the output folder (may not exist yet) */
    const char *config_json;  /* the transformer's config.json text (validation model folders) */
    int samples_per_step;     /* batch x accumulation x ranks */
    const hl_vae_config *vae; /* the VAE's config (component "vae"), else NULL */
    const hl_umt5_config
        *umt5;           /* the text encoder's config (component "text_encoder"), else NULL */
    int batch;           /* samples per micro-batch (0: samples_per_step / ranks) */
    const hl_dist *dist; /* the data-parallel ranks (NULL: one process); rank 0 writes the logs */
} hl_train_env;

typedef struct hl_train_objective {
    const char *name;        /* the "type" of the objective block */
    const char *description; /* one line for --help */
    /* NULL create: known but not implemented yet (a clear error names it) */
    hl_status (*create)(const hl_json *settings, const hl_train_env *env, void **obj,
                        hl_error *err);
    hl_train_step_fn step;
    hl_train_validate_fn validate; /* may be NULL */
    void (*destroy)(void *obj);
    /* Optional (NULL: none): state the objective keeps itself (a critic and its optimizer),
     * saved with and restored from each checkpoint (hl_ckpt_io.extra_save / extra_load, with obj
     * as the user pointer), and the TTUR filter of the loop's updates (hl_train_config.updates). */
    hl_status (*save_state)(void *obj, const char *dir, hl_error *err);
    hl_status (*load_state)(void *obj, const char *dir, hl_error *err);
    hl_train_update_fn updates;
    const char *component; /* what it trains: NULL "transformer", "vae", "text_encoder", "any" */
    /* Optional (NULL: none): with an EMA (and no LoRA), each checkpoint also holds the EMA weights
     * as DIR/ema_folder/COMPONENT/ (hl_ckpt_io.ema_folder), which save_state may complete into a
     * model folder (the stage-3 objectives: "ema", a Distilled model folder). */
    const char *ema_folder;
    /* Optional (NULL: not reported): the tokens one sample's forward processes, for the
     * progress line's tokens/s (= samples/s x this). Transformer (stage1, stage2): history plus
     * current-chunk patch tokens per forward, summed over a sample's forwards, averaged over
     * the samples stepped so far (ode_init: its one forward's; stage3: none, a sample runs a
     * varying mix of student, teacher and critic forwards); vae: latent positions
     * (T_lat x h x w) of one clip; mlm: the caption's text tokens, </s> included, averaged over
     * the captions. */
    double (*tokens_per_sample)(void *obj);
    /* Optional (NULL: none): the hooks that keep the objective's own model (stage 3's critic) and
     * its per-sample logs data-parallel with the loop (hl_train_config.sync, train_loop.h). An
     * objective with save_state or updates but no sync cannot run on several ranks. */
    const hl_train_sync *sync;
    /* Optional (NULL: all): the slice [*begin, *end) of the parameters the objective trains
     * (hl_train_config.train_begin / train_end); *end == 0 also means all. */
    void (*trained)(void *obj, int64_t *begin, int64_t *end);
    /* Optional (NULL: sample by sample): a micro-batch at once (hl_train_config.batch_step). */
    hl_train_batch_fn step_batch;
} hl_train_objective;

/* The objective called name, or NULL. */
const hl_train_objective *hl_train_objective_find(const char *name);
/* The table, for listing: *n entries. */
const hl_train_objective *hl_train_objectives(size_t *n);

/* ---- "quadratic": the toy objective ------------------------------------------------------
 * Pulls every parameter toward a fixed random target t (drawn from target_seed, N(0, scale^2))
 * through noisy observations: loss = 0.5 * mean_i (p_i - t_i - noise * e_i)^2 with e ~ N(0, 1)
 * drawn from the training RNG per sample. Exercises the whole loop (RNG, accumulation, clipping,
 * AdamW, EMA, checkpoints) on any model's layout without a forward or backward. Keys:
 *   "type": "quadratic", "noise" (default 0.1, >= 0), "target_seed" (default 1, whole, >= 0),
 *   "target_scale" (default 0.02, >= 0). */
hl_status hl_quadratic_create(const hl_json *settings, const hl_train_env *env, void **obj,
                              hl_error *err);
hl_status hl_quadratic_step(void *obj, hl_rng *rng, int64_t sample_index, const float *params,
                            float *grads, double *loss, hl_error *err);
/* The noise-free loss of the EMA weights when given, else of params. */
hl_status hl_quadratic_validate(void *obj, int64_t step, const float *params, const float *ema,
                                double *loss, char *sample, size_t cap, hl_error *err);
void hl_quadratic_destroy(void *obj);

/* ---- "stage1", "stage2": Helios flow matching (train/objective_flow.h) ----------------------
 * Keys (docs/training.md): chunk_frames, history_sizes, p_t2v, p_i2v, p_v2v, p_drop_text,
 * corrupt_history, corrupt ("released" | "paper" preset), p_clean_history, p_noise, p_blur,
 * p_exposure, noise_sigma_max, logit_mean, logit_std, shift, recompute, synthetic {clips, chunks,
 * height, width, text_len, seed} ("data": "synthetic"), dataset {width, height, frames, clips,
 * seed, text_len, cache} ("data": "procedural" or a folder: clips encoded once by the model
 * folder's VAE and text encoder into a latent cache, train/latent_cache.h), validation {prompts,
 * seed, width, height, frames, chunks, steps, samples, video}; stage2 also ratios (samples per
 * level, one per level of the model folder's pyramid, train/cfg_keys.h hl_cfg_model_pyramid) and
 * pack_levels (true: the K samples in one packed forward, train/objective_flow.h).
 *
 * Validation (every validation_every steps, on the EMA weights when kept, else the current ones):
 * the flow loss over `samples` fixed samples drawn from seed ^ 0x5a5a (hl_flow_objective_validate)
 * and, with "video" and a full model folder, OUTPUT/validation/step-N.mp4 made by the inference
 * pipeline (train/val_video.h). */
hl_status hl_stage1_create(const hl_json *settings, const hl_train_env *env, void **obj,
                           hl_error *err);
hl_status hl_stage2_create(const hl_json *settings, const hl_train_env *env, void **obj,
                           hl_error *err);
hl_status hl_flow_validate(void *obj, int64_t step, const float *params, const float *ema,
                           double *loss, char *sample, size_t cap, hl_error *err);
void hl_flow_destroy(void *obj);

/* ---- "stage3": DMD distillation (train/objective_stage3.c), "ode_init": staged ODE
 * initialisation (train/objective_ode.c). Keys: train/objective_distill.h and docs/training.md. */
hl_status hl_stage3_create(const hl_json *settings, const hl_train_env *env, void **obj,
                           hl_error *err);
hl_status hl_stage3_step(void *obj, hl_rng *rng, int64_t sample_index, const float *params,
                         float *grads, double *loss, hl_error *err);
hl_status hl_stage3_validate(void *obj, int64_t step, const float *params, const float *ema,
                             double *loss, char *sample, size_t cap, hl_error *err);
void hl_stage3_destroy(void *obj);
hl_status hl_stage3_save(void *obj, const char *dir, hl_error *err);
hl_status hl_stage3_load(void *obj, const char *dir, hl_error *err);
bool hl_stage3_updates(void *obj, int64_t step);
/* The critic's gradient summed over a step's samples in sample order (every rank's), averaged,
 * clipped and applied once per step by step_end; rank 0 writes stage3.tsv and tasks.tsv. */
extern const hl_train_sync hl_stage3_sync;
hl_status hl_ode_create(const hl_json *settings, const hl_train_env *env, void **obj,
                        hl_error *err);
hl_status hl_ode_step(void *obj, hl_rng *rng, int64_t sample_index, const float *params,
                      float *grads, double *loss, hl_error *err);
hl_status hl_ode_validate(void *obj, int64_t step, const float *params, const float *ema,
                          double *loss, char *sample, size_t cap, hl_error *err);
void hl_ode_destroy(void *obj);
double hl_ode_tokens(void *obj);
hl_status hl_ode_save(void *obj, const char *dir, hl_error *err);
hl_status hl_ode_load(void *obj, const char *dir, hl_error *err);
/* tasks.tsv in sample order, every rank's samples, written by rank 0 (hl_distill_sync). */
extern const hl_train_sync hl_ode_sync;

/* ---- "vae": the Wan VAE's reconstruction objective (train/objective_vae.c) -----------------
 * Per sample one clip of the dataset ("data": "procedural" = the tiny world, or a folder), pixels
 * in [-1, 1] -> encode -> posterior sample (eps from the training RNG) -> decode ->
 * w_l1·L1 + w_l2·L2 + w_kl·KL (train/vae_loss.h), backward through decoder, posterior and
 * encoder. Keys: "l1" (1), "l2" (0), "kl" (1e-6), "posterior" ("sample" or "mode": decode the
 * mean), "train" ("all", or "decoder": the encoder and quant_conv stay frozen, bit for bit, and
 * their backward is not run — the latent space a transformer was trained on is kept),
 * "dataset" {"width", "height" (32; multiples of 8), "frames" (5; 1 + 4k), "clips" (8), "seed"
 * (0)}. Component "vae" only. */
hl_status hl_vae_objective_create(const hl_json *settings, const hl_train_env *env, void **obj,
                                  hl_error *err);
hl_status hl_vae_objective_step(void *obj, hl_rng *rng, int64_t sample_index, const float *params,
                                float *grads, double *loss, hl_error *err);
void hl_vae_objective_destroy(void *obj);
double hl_vae_objective_tokens(void *obj);
void hl_vae_objective_trained(void *obj, int64_t *begin, int64_t *end);

/* ---- "mlm": masked-token prediction of the UMT5 text encoder (train/objective_text.c) -------
 * Per sample the caption of clip `sample_index mod clips` ("data": "procedural" = the tiny
 * world's captions, or a folder's caption files), cleaned and tokenized as the pipelines do (the
 * T5 call with </s>, truncated to max_length, no padding), corrupted as train/mlm.h says (15% of
 * the non-control tokens chosen; 80% -> mask id, 10% -> a random word piece, 10% kept), the
 * encoder forward, logits = (d_model^-1/2 h) · shared.weightᵀ at the chosen positions,
 * cross-entropy mean over them, backward through the tied head and the encoder. Keys:
 * "mask_prob" (0.15), "mask_token_prob" (0.8), "random_token_prob" (0.1), "max_length" (512),
 * "mask_id" (default: vocab_size - 1 when the tokenizer has fewer pieces than vocab_size, else
 * the piece <extra_id_0>), "tokenizer" (default MODEL/tokenizer or the tokenizer/ beside the text
 * encoder folder), "dataset" {"clips" (64), "seed" (0)}. Component "text_encoder" only. */
hl_status hl_text_objective_create(const hl_json *settings, const hl_train_env *env, void **obj,
                                   hl_error *err);
hl_status hl_text_objective_step(void *obj, hl_rng *rng, int64_t sample_index, const float *params,
                                 float *grads, double *loss, hl_error *err);
void hl_text_objective_destroy(void *obj);
double hl_text_objective_tokens(void *obj);

#endif
