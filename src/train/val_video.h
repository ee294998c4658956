/* Validation videos of a training run, made by the normal inference pipeline (include/helios.h)
 * from the weights being trained:
 *
 *   OUT/validation/step-N.model/       a model folder for this step, made for the pipeline:
 *     transformer/config.json          the model's config.json, verbatim
 *     transformer/diffusion_pytorch_model.safetensors   the weights (F32, diffusers names)
 *     scheduler/, text_encoder/, tokenizer/, vae/
 *                                      symbolic links to the base model folder's own
 *     model_index.json                 likewise, or, with index_extra, the base's text with
 *                                      those members added (the last duplicate wins): the
 *                                      helios keys of the recipe being trained
 *                                      ("keep_first_frame", "history")
 *   OUT/validation/step-N.mp4          every prompt's video, one after another (written as
 *                                      "step-N.mp4.part" and renamed when complete)
 *
 * helios_pipeline_load loads the folder, helios_gen_new + helios_gen_step generate each prompt
 * with the fixed seed, then the model folder is removed (links removed, not followed). A leftover
 * step-N.model of an interrupted run is replaced. The session uses the caller's thread count and
 * leaves it as it was (the training's bits depend on it). */
#ifndef HL_TRAIN_VAL_VIDEO_H
#define HL_TRAIN_VAL_VIDEO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "train/params.h"

#define HL_VAL_MAX_PROMPTS 16

typedef struct hl_val_video {
    const char *prompts[HL_VAL_MAX_PROMPTS]; /* owned by the caller */
    int n_prompts;
    uint64_t seed;
    int width, height;       /* pixels */
    int frames;              /* video frames; 0: `chunks` decides */
    int chunks;              /* chunks when frames is 0 */
    int steps;               /* sampling steps (each pyramid stage's); 0: the recipe's */
    const char *index_extra; /* JSON members for model_index.json (e.g. "\"history\":
                              * \"uncompressed\""); NULL or "": the base's file as is */
} hl_val_video;

/* True when model is a full model folder (model_index.json, transformer/ and the components a
 * video needs: scheduler/, text_encoder/, tokenizer/, vae/). */
bool hl_val_model_is_full(const char *model);

/* Writes OUT/validation/step-N.mp4 (its path to path[0..cap)) from weights laid out as layout,
 * with config_json as the transformer's config.json and the other components of model. */
hl_status hl_val_video_write(const hl_val_video *v, const char *model, const char *config_json,
                             const hl_params *layout, const float *weights, const char *out_dir,
                             int64_t step, char *path, size_t cap, hl_error *err);

#endif
