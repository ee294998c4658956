/* One stage-2 (Helios-Mid, pyramid) training example from a clip of latents (spec training.md
 * §2.4, §5.2; oracle README §9.2 "Stage 2"; ref: Helios utils_helios_base.py
 * prepare_stage2_clean_input / prepare_stage2_noise_input, train_helios.py with
 * is_navit_pyramid).
 *
 * Levels s = 0 .. L-1 (L = the scheduler's stages, 3 as released; s = 0 is the lowest resolution). With x0 and
 * noise the (C, F, H, W) target chunk and its full-resolution noise:
 *   latents[L-1] = x0,    latents[s] = down2(latents[s+1])        bilinear, align_corners False
 *   noise[L-1]   = noise, noise[s]   = down2(noise[s+1]) · 2       (keeps unit variance)
 *   start[s] = noise[0]                                                         s = 0
 *            = ss_s·noise[s] + (1 - ss_s)·up2_nearest(latents[s-1])             s > 0
 *   end[s]   = latents[L-1]                                                     s = L-1
 *            = es_s·noise[s] + (1 - es_s)·latents[s]                            s < L-1
 * with ss_s, es_s the scheduler's start_sigma (corrected for the renoise) and end_sigma
 * (sample/schedule.h hl_sched: HeliosScheduler(shift 1, stages 3, stage_range [0, 1/3, 2/3, 1],
 * gamma 1/3)); these are float32 tensor ops with the sigmas rounded to float32, as torch does with
 * a python scalar. Level s gets ratios[s] samples ([1, 2, 1]: K = 4), each
 *   u ~ U[0, 1) (weighting_scheme none; train/timestep.h), index = clamp(int(u·N), 0, N - 1),
 *   sigma = sigmas_per_stage[s][index], timestep = timesteps_per_stage[s][index]   (float64)
 *   noisy  = float32(sigma·start + (1 - sigma)·end)   (in float64: the sigma tensor is float64)
 *   target = start - end                               (float32)
 *   loss = mean_k mean((pred_k - target_k)²),  dL/dpred_k = 2 (pred_k - target_k) / (K·numel_k).
 * The history is stage 1's (train/stage1.h, at full resolution, RoPE indices as at inference);
 * only the current chunk is at the level's size (helios_dit_input: height/width vs
 * hist_height/hist_width), as in the pyramid pipeline. The released training packs the K samples
 * into one varlen forward (NaViT); the reference vector shows K separate forwards give the same
 * loss, which is what hl_stage2_dit_input sets up.
 *
 * hl_stage2_sample_make draws, from the one generator g and in this order:
 *   1-5. stage 1's target chunk, history window, anchor, task mix and text dropout
 *        (hl_stage1_history_make);
 *   6. noise = randn (C·F·H·W) at full resolution;
 *   7. per level s = 0 .. L-1, per sample of that level: one timestep draw (torch.rand(1));
 *   8. Frame-Aware Corrupt of the history (train/corrupt.h) when base.corrupt_history (released:
 *      prepare_stage2_noise_input corrupts after prepare_stage2_clean_input).
 * Not implemented: dynamic shifting of the training sigmas (use_dynamic_shifting; false in the
 * released stage-2 configs) and corrupt_model_input (false in them too). */
#ifndef HL_TRAIN_STAGE2_H
#define HL_TRAIN_STAGE2_H

#include <stdint.h>

#include "core/error.h"
#include "helios.h"
#include "sample/rng.h"
#include "sample/schedule.h"
#include "train/stage1.h"

#define HL_STAGE2_MAX_LEVELS HL_SCHED_MAX_STAGES
#define HL_STAGE2_MAX_SAMPLES 64 /* K, all levels together */

/* ---- the pieces ------------------------------------------------------------------------------ */

/* The pyramid of one chunk and the flow path of every level. Level s is (C, F, H[s], W[s]) with
 * H[s] = H >> (L - 1 - s). start/end are filled by hl_stage2_pyramid_paths. */
typedef struct hl_stage2_pyramid {
    int levels, C, F;
    int H[HL_STAGE2_MAX_LEVELS], W[HL_STAGE2_MAX_LEVELS];
    float *latents[HL_STAGE2_MAX_LEVELS]; /* (C, F, H[s], W[s]) */
    float *noise[HL_STAGE2_MAX_LEVELS];   /* (C, F, H[s], W[s]) */
    float *start[HL_STAGE2_MAX_LEVELS];   /* (C, F, H[s], W[s]) */
    float *end[HL_STAGE2_MAX_LEVELS];     /* (C, F, H[s], W[s]) */
} hl_stage2_pyramid;

/* latents and noise of every level from x0 and noise (C, F, H, W); H and W must be divisible by
 * 2^(levels - 1). On failure *p is empty (safe to free). */
hl_status hl_stage2_pyramid_build(const float *x0, const float *noise, int C, int F, int H, int W,
                                  int levels, hl_stage2_pyramid *p, hl_error *err);
/* start[s] and end[s] of every level from the per-level start and end sigmas (hl_sched
 * start_sigma / end_sigma; start_sigma[0] and end_sigma[L-1] are not used). */
hl_status hl_stage2_pyramid_paths(hl_stage2_pyramid *p, const double *start_sigma,
                                  const double *end_sigma, hl_error *err);
void hl_stage2_pyramid_free(hl_stage2_pyramid *p);

/* noisy = float32(sigma·start + (1 - sigma)·end) in float64; target = start - end (n elements). */
void hl_stage2_noisy(const float *start, const float *end, double sigma, int64_t n, float *noisy,
                     float *target);

/* One timestep of level s: the draw (u, index; train/timestep.h) and the scheduler's float64
 * values at that index. */
typedef struct hl_stage2_time {
    int level;
    float u_logit, u; /* u_logit NAN for uniform draws */
    int64_t index;
    double sigma, timestep;
} hl_stage2_time;

/* The float64 sigma and timestep of draw d at level s (d->index in [0, N)). */
hl_status hl_stage2_time_at(const hl_sched *sched, int level, const hl_tdraw *d, hl_stage2_time *t,
                            hl_error *err);

/* loss = mean_k mean((pred[k] - target[k])²) over K samples of numel[k] elements (accumulated in
 * double). loss_k (K) receives the per-sample losses and dpred[k] = 2 (pred_k - target_k) /
 * (K·numel_k) (written, not accumulated) when they are not NULL. */
double hl_stage2_loss(int K, const int64_t *numel, const float *const *pred,
                      const float *const *target, float *const *dpred, double *loss_k);

/* ---- one training example -------------------------------------------------------------------- */

typedef struct hl_stage2_config {
    /* [CFG] = scripts/training/configs/stage_2_init.yaml */
    hl_stage1_config base; /* history, task mix, text dropout, corrupt (defaults: stage 1's,
                              spec §2.4 "same data and history handling"); base.tsample: uniform
                              (weighting_scheme none), N = sched.num_train_timesteps */
    hl_sched_config sched; /* HeliosScheduler: shift 1, stages 3 (the levels), stage_range
                              [0, 1/3, 2/3, 1], gamma 1/3, no dynamic shifting */
    int ratios[HL_STAGE2_MAX_LEVELS]; /* samples per level, {1, 2, 1} [CFG stage2_sample_ratios]
                                         ({1, 1, 1} in stage_2_post) */
} hl_stage2_config;

void hl_stage2_config_default(hl_stage2_config *c);
/* ratios for c->sched.stages levels: the released [1, 2, 1] for three, else 1 per level. */
void hl_stage2_ratios_default(hl_stage2_config *c);
hl_status hl_stage2_config_check(const hl_stage2_config *c, hl_error *err);

/* One of the K samples: the current chunk at its level's size. */
typedef struct hl_stage2_item {
    int level, H, W;
    hl_stage2_time t;
    float *noisy;  /* (C, F, H, W) hidden_states of the forward */
    float *target; /* (C, F, H, W) start - end */
} hl_stage2_item;

typedef struct hl_stage2_sample {
    int C, F, H, W;        /* full resolution */
    hl_stage1_sample base; /* x0 (C, F, H, W), the history inputs (full resolution, RoPE indices),
                              chunk, task, dropped, drop_text, corrupt report */
    float *noise;          /* (C, F, H, W) */
    hl_stage2_pyramid pyr;
    int K;
    hl_stage2_item items[HL_STAGE2_MAX_SAMPLES]; /* level by level, ratios[s] each */
} hl_stage2_sample;

/* clip (C, F_clip, H, W) as for stage 1. On failure *s is empty (safe to free). */
hl_status hl_stage2_sample_make(const hl_stage2_config *cfg, const float *clip, int C, int F_clip,
                                int H, int W, hl_rng *g, hl_stage2_sample *s, hl_error *err);
void hl_stage2_sample_free(hl_stage2_sample *s);

/* The transformer input of sample k in [0, K) (batch 1): hidden_states (1, C, F, H_k, W_k), the
 * history at (H, W); every pointer points into s or text (1, text_len, text_dim). A dropped
 * caption (s->base.drop_text) is the caller's to zero. */
void hl_stage2_dit_input(const hl_stage2_sample *s, int k, const float *text, int text_len,
                         helios_dit_input *in);

/* The loss of the K predictions pred[k] (C, F, H_k, W_k) against the sample's targets. */
double hl_stage2_sample_loss(const hl_stage2_sample *s, const float *const *pred,
                             float *const *dpred, double *loss_k);

/* Sample k of B clips stacked for one forward (the released per-GPU batch is 2; the K samples of
 * a clip have different sizes and run as K forwards). Every clip must have the same C, F, H, W,
 * history sizes and levels (one config); the RoPE indices are then the same for all and are copied
 * from the first. The batch owns copies: the samples may be freed. The loss over the K batches is
 * hl_stage2_loss with pred[k], target[k] the batches' (B, C, F, h, w) and numel[k] = B·C·F·h·w
 * (equal-sized rows: the mean over clips of per-clip means). */
typedef struct hl_stage2_batch {
    int B, C, F, level;
    int h, w;                                          /* the level's size */
    int H, W, n_long, n_mid;                           /* the history's */
    float *noisy, *target;                             /* (B, C, F, h, w) */
    float *lat_long, *lat_mid, *lat_short;             /* (B, C, n_long | n_mid | 2, H, W) */
    double *timesteps;                                 /* (B) */
    int64_t *idx_long, *idx_mid, *idx_short, *idx_cur; /* (n_long), (n_mid), (2), (F) */
} hl_stage2_batch;

hl_status hl_stage2_batch_make(const hl_stage2_sample *const *s, int B, int k, hl_stage2_batch *b,
                               hl_error *err);
void hl_stage2_batch_free(hl_stage2_batch *b);
/* The transformer input of a batch; text (B, text_len, text_dim). */
void hl_stage2_batch_dit_input(const hl_stage2_batch *b, const float *text, int text_len,
                               helios_dit_input *in);

#endif
