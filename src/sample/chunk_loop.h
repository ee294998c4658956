/* The autoregressive chunk loop (spec §2.4-2.8): every chunk of F latent frames is denoised from
 * fresh noise while the transformer attends to the multi-term history (sample/history.h), then
 * appended to that history. Two samplers, as the two reference pipelines:
 *   Base     (HeliosPipeline):        one resolution, UniPC or Euler, float timesteps, CFG;
 *   pyramid  (HeliosPyramidPipeline): stages at 1/4, 1/2, 1 resolution (stage transitions
 *            up-sample and re-noise with correlated block noise), int64 timesteps, UniPC
 *            with CFG or CFG-Zero* (Mid) or the DMD few-step sampler without CFG (Distilled).
 *
 * The loop is step-wise: hl_loop_step runs one sampler step (one or two transformer calls) and
 * says when a chunk is finished, so a caller can stream chunks, show progress and cancel
 * between steps. Memory does not grow with the number of chunks. */
#ifndef HL_CHUNK_LOOP_H
#define HL_CHUNK_LOOP_H

#include <stdbool.h>

#include "core/probe.h"
#include "dit/dit.h"
#include "sample/history.h"
#include "sample/rng.h"
#include "sample/schedule.h"
#include "sample/steps.h"

typedef struct hl_loop_config {
    hl_sched_config sched;                /* scheduler_config.json */
    bool pyramid;                         /* HeliosPyramidPipeline (else HeliosPipeline) */
    int steps;                            /* Base: num_inference_steps */
    int n_stages;                         /* pyramid: stages, = sched.stages */
    int stage_steps[HL_SCHED_MAX_STAGES]; /* pyramid_num_inference_steps_list */
    double guidance_scale;                /* CFG when > 1 */
    bool cfg_zero_star;                   /* model_index is_cfg_zero_star (pyramid) */
    bool use_zero_init; /* CFG-Zero*: v = 0 for steps i <= zero_steps of stage 0 */
    int zero_steps;
    bool amplify_first_chunk;  /* DMD: more steps on chunk 0 */
    bool keep_first_frame;     /* T2V: chunk 0's first latent frame becomes the anchor */
    hl_history_layout history; /* compressed tiers, or every history frame in the short tier */
    int latent_frames;         /* F per chunk (9) */
    int history_sizes[3];      /* long, mid, 1x (16, 2, 1) */
    int height, width;         /* latent H, W (full resolution) */
    uint64_t seed;
} hl_loop_config;

/* The Base recipe's defaults (helios_recipe_defaults_get, the table in src/api/recipes.c):
 * frames per chunk, history window, steps, guidance, CFG-Zero* zero init; the sampler fields
 * must still be set. */
void hl_loop_config_default(hl_loop_config *c);

/* What one hl_loop_step did. */
typedef struct hl_loop_event {
    int chunk, stage, step; /* of the step just run */
    int stage_steps;        /* steps of this stage */
    int calls;              /* transformer calls it made (1, or 2 with CFG) */
    double dit_seconds;     /* wall time inside those calls (hl_dit_forward) */
    bool chunk_done;        /* the chunk is finished: latents below */
    const float *latents;   /* [1, C, F, H, W], valid until the next step */
} hl_loop_event;

typedef struct hl_loop hl_loop;

/* text: prompt embeddings [1, L, text_dim]; neg: the negative prompt's (needed for CFG, else
 * may be NULL). Both are copied. hist (optional) is a prepared history (I2V/V2V) that is copied;
 * NULL starts T2V (empty history, no anchor). rng (optional): the generator to continue (I2V/V2V
 * preparation draws from it first), copied; NULL seeds a new one with cfg->seed. */
hl_status hl_loop_new(const hl_ctx *ctx, const hl_dit *dit, const hl_loop_config *cfg,
                      const float *text, const float *neg, int text_len, const hl_history *hist,
                      const hl_rng *rng, hl_loop **out);
void hl_loop_free(hl_loop *l);

/* Runs one sampler step (starting the next chunk if needed). */
hl_status hl_loop_step(hl_loop *l, hl_loop_event *ev);

/* Moves the text conditioning to new embeddings [1, L, text_dim] (same L) by linear
 * interpolation over `chunks` chunks starting with the next chunk (0 or 1: at once). */
hl_status hl_loop_set_prompt(hl_loop *l, const float *text, const float *neg, int chunks);

void hl_loop_set_probe(hl_loop *l, const hl_probe *probe);
const hl_history *hl_loop_history(const hl_loop *l);
/* The generator the next chunk draws its noise (then its block noises) from. */
const hl_rng *hl_loop_rng(const hl_loop *l);

#endif
