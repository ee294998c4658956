/* The Helios flow-matching objectives as a training-loop step (train/train_loop.h): one clip from
 * a source ->
 *   stage 1 (Base): one sample (train/stage1.h: target chunk, history, anchor, task mix,
 *     Frame-Aware Corrupt, timestep, noise) -> the training forward -> the flow loss
 *     (train/loss.h) -> the backward into the gradient buffer;
 *   stage 2 (Mid, pyramid): the K samples of the clip's chunk at their pyramid levels
 *     (train/stage2.h), packed into one variable-length forward and backward as the released
 *     code does (pack_levels, the default: every linear layer runs once over all K samples'
 *     tokens, attention within each sample) or each in turn; loss = mean_k loss_k.
 *
 *   hl_flow_objective o;
 *   hl_flow_objective_init(&o, ctx, &cfg, &layout, 1, &s2, source, recompute);
 *   hl_train_run(&tc, hl_flow_objective_step, NULL, &o, params, ema, &res, err);
 *   hl_flow_objective_free(&o);
 *
 * The transformer is bound (train/dit_flat.h) to the parameter and gradient buffers the loop
 * passes; a call with other buffers rebinds (cheap: pointers only). */
#ifndef HL_TRAIN_OBJECTIVE_FLOW_H
#define HL_TRAIN_OBJECTIVE_FLOW_H

#include <stddef.h>

#include "dit/dit.h"
#include "ops/ops.h"
#include "sample/rng.h"
#include "train/params.h"
#include "train/stage1.h"
#include "train/stage2.h"

/* A clip of the training set: normalised VAE latents (C, F, H, W), F a multiple of the chunk
 * size, and its prompt embeddings (L, text_dim); the arrays stay valid until the next get. */
typedef struct hl_latent_clip {
    const float *latents;
    int C, F, H, W;
    const float *embeds;
    int L;
} hl_latent_clip;

typedef struct hl_latent_source {
    void *user;
    int64_t count;
    hl_status (*get)(void *user, int64_t index, hl_latent_clip *clip, hl_error *err);
} hl_latent_source;

typedef struct hl_flow_objective {
    const hl_ctx *ctx;
    hl_dit_config cfg;
    const hl_params *layout;
    int stage;          /* 1 or 2 */
    hl_stage2_config s; /* stage 1 uses s.base */
    hl_latent_source src;
    int recompute;   /* per-block activation recomputation (dit.h) */
    int pack_levels; /* stage 2: the K samples in one packed forward (1, init's default) */
    int pack_batch;  /* a micro-batch's samples in one packed forward (step_batch; 1, init's) */
    int bf16;        /* bf16 compute: the GEMMs on a bf16 shadow of the f32 master weights */
    hl_bf16 *shadow; /* [layout.total] with bf16 */
    hl_dit *m, *g;   /* bound to the buffers below */
    const float *m_data;
    float *g_data;
    float *text; /* a zeroed prompt for dropped captions */
    size_t text_n;
    size_t peak_tape_bytes;   /* the largest training forward + backward seen */
    hl_stage1_task last_task; /* of the last sample, for logging */
    double last_timestep;
    int64_t tokens, token_samples; /* tokens the training forwards processed, over samples */
} hl_flow_objective;

hl_status hl_flow_objective_init(hl_flow_objective *o, const hl_ctx *ctx, const hl_dit_config *cfg,
                                 const hl_params *layout, int stage, const hl_stage2_config *s,
                                 hl_latent_source src, int recompute, hl_error *err);
void hl_flow_objective_free(hl_flow_objective *o);

/* hl_train_step_fn: sample `sample_index` uses clip sample_index mod count. */
hl_status hl_flow_objective_step(void *obj, hl_rng *rng, int64_t sample_index, const float *params,
                                 float *grads, double *loss, hl_error *err);
/* hl_train_batch_fn: with pack_batch (and, in stage 2, pack_levels) the micro-batch's forwards
 * packed into one forward and one backward (up to HL_FLOW_PACK_MAX forwards each, whole
 * samples); the same losses and gradients as the step on each sample in turn, the sums
 * rounded differently. Otherwise the step on each in turn. */
#define HL_FLOW_PACK_MAX HL_STAGE2_MAX_SAMPLES
hl_status hl_flow_objective_step_batch(void *obj, int n, hl_rng *rngs, const int64_t *sample_index,
                                       const float *params, float *grads, double *loss,
                                       hl_error *err);

/* The mean tokens per sample of the samples stepped so far (0 before the first): per forward
 * its history tokens (long, mid, short) plus the current chunk's patch tokens, summed over a
 * stage-2 sample's K forwards (hl_train_objective.tokens_per_sample). */
double hl_flow_objective_tokens(void *obj);

/* The validation loss: the mean flow loss (no backward) of the weights `weights` (the EMA or the
 * current ones; laid out as o->layout) over `samples` held-out samples, each a clip index and a
 * sample (task, history, timestep, noise) drawn from a generator seeded with seed: the same
 * samples at every call, so losses of different steps compare. Touches neither the training RNG
 * nor the bound training views (f32 weights, also under bf16 training). */
hl_status hl_flow_objective_validate(hl_flow_objective *o, const float *weights, uint64_t seed,
                                     int samples, double *loss, hl_error *err);

#endif
