/* One stage-1 (Helios-Base) training sample from a clip of latents (spec training.md §2.2, §2.3,
 * §3, §5.1; ref: Helios dataloader_history_latents_dist.py prepare_stage1_latent,
 * utils_helios_base.py prepare_stage1_clean_input_from_latents / prepare_stage1_noise_input,
 * train_helios.py). The clip is (C, F_clip, H, W), already VAE-encoded chunk by chunk and
 * normalised, F_clip = n_chunks · chunk_frames (each 9-latent chunk = 33 video frames encoded on
 * its own, so every chunk starts with its own first-frame latent, as at inference).
 *
 * hl_stage1_sample_make draws, from the one generator g and in this order:
 *   1. the target chunk k ~ U{0 .. n_chunks - 1}: x0 = clip[:, k·F : (k+1)·F];
 *   2. the history: the long + mid + 1 (= 19) latent frames before it, zero-padded at the start
 *      of the clip, laid into the inference window (sample/history.h: hl_history_append) and
 *      turned into the transformer's inputs by the inference code itself
 *      (hl_history_inputs_build): long = window[0:16] RoPE 1..16, mid = window[16:18] RoPE 17..18,
 *      short = [anchor, window[18]] RoPE 0 and 19, current chunk RoPE 20..28; with history
 *      uncompressed (the ablation without multi-term memory; model_index.json's "history":
 *      "uncompressed" then builds it so at inference too) long and mid are empty and
 *      short = [anchor, window[0:19]] RoPE 0, 1..19, every frame at the 1x2x2 patches;
 *   3. the first-frame anchor (spec §3.2) = the clip's first latent frame clip[:, 0], zero when
 *      k = 0 (the dataloader's rule: the target chunk is then the start of the video, T2V) or
 *      without keep_first_frame (the ablation; model_index.json's "keep_first_frame": false
 *      then keeps it zero at inference too);
 *   4. the task mix (released is_random_drop): u <= p_t2v: T2V, the whole history and the anchor
 *      zeroed; else u <= p_i2v: I2V, every history frame but the newest zeroed (anchor kept);
 *      else u <= p_v2v: V2V with a shorter history, the oldest (19 mod F) + j·F frames zeroed,
 *      j ~ U{0 .. 19 div F} (inclusive: with 19 frames 1, 10 or 19 are dropped); else the full
 *      history (a draw is skipped when its probability is 0, as in the released code);
 *   5. text dropout: u < p_drop_text sets drop_text (caption_dropout_p; the caller zeroes the
 *      prompt embedding);
 *   6. Frame-Aware Corrupt of the history (train/corrupt.h) when corrupt_history;
 * Steps 4 and 6 visit the history frames in RoPE order whatever the layout, so the two layouts
 * draw the same numbers and give the transformer the same frame values, only tiered otherwise.
 *   7. the timestep (train/timestep.h: logit-normal, one draw) and noise = randn (C·F·H·W), then
 *      noisy = (1 - sigma)·x0 + sigma·noise, target = noise - x0 (train/loss.h).
 * A fixed seed therefore gives identical samples, and the generator state (a plain struct) can
 * be saved with a checkpoint and restored.
 *
 * The transformer gives history tokens the t = 0 modulation when its config has
 * zero_history_timestep (dit/dit.h; released stage-1 config: true); the sample records the
 * timestep the history sees (history_timestep) so a training loop can check the two agree. */
#ifndef HL_TRAIN_STAGE1_H
#define HL_TRAIN_STAGE1_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "helios.h"
#include "sample/history.h"
#include "sample/rng.h"
#include "train/corrupt.h"
#include "train/timestep.h"

typedef enum hl_stage1_task {
    HL_TASK_FULL = 0, /* video continuation with the whole history the clip has */
    HL_TASK_T2V,      /* no history, no anchor */
    HL_TASK_I2V,      /* anchor + the newest history frame */
    HL_TASK_V2V,      /* the oldest frames dropped (a shorter history) */
} hl_stage1_task;

const char *hl_stage1_task_name(hl_stage1_task t);

typedef struct hl_stage1_config {
    /* [CFG] = scripts/training/configs/stage_1_init.yaml, [FIX] = configs/correct.yaml */
    int chunk_frames;           /* 9 [CFG latent_window_size] */
    int history_sizes[3];       /* {16, 2, 1} long, mid, 1x [CFG history_sizes] */
    float p_t2v;                /* 0.4 [CFG random_drop_t2v_ratio] */
    float p_i2v;                /* 0.0 [CFG]; [FIX random_drop_i2v_ratio 0.1] */
    float p_v2v;                /* 0.4 [CFG random_drop_v2v_ratio] */
    float p_drop_text;          /* 0.0 [CFG caption_dropout_p] */
    bool zero_history_timestep; /* true [CFG zero_history_timestep] */
    bool corrupt_history;       /* true [CFG corrupt_history] */
    bool keep_first_frame;      /* true: the anchor of step 3 (false: always zero, an ablation) */
    hl_history_layout history;  /* compressed (uncompressed: no multi-term memory, step 2) */
    hl_corrupt_params corrupt;  /* hl_corrupt_params_default (released stage 1) */
    hl_tsample_params tsample;  /* logit-normal (0, 1), shift 1 [CFG weighting_scheme ...] */
} hl_stage1_config;

void hl_stage1_config_default(hl_stage1_config *c);
hl_status hl_stage1_config_check(const hl_stage1_config *c, hl_error *err);

typedef struct hl_stage1_sample {
    int C, F, H, W;         /* latent channels, chunk frames, height, width */
    float *x0;              /* (C, F, H, W) the clean target chunk */
    float *noise;           /* (C, F, H, W) */
    float *noisy;           /* (C, F, H, W) hidden_states of the forward */
    float *target;          /* (C, F, H, W) noise - x0 */
    hl_tdraw t;             /* u, index, sigma, timestep */
    float history_timestep; /* 0 with zero_history_timestep, else t.timestep */
    hl_history_inputs hist; /* lat_long/mid/short (1, C, n, H, W), RoPE indices, idx_cur (F) */
    int n_long, n_mid;      /* 16, 2 (uncompressed: 0, 0) */
    int n_short;            /* 2 = [anchor, newest] (uncompressed: 1 + every history frame) */
    /* for logging */
    int chunk, n_chunks; /* target chunk k of the clip */
    hl_stage1_task task;
    int dropped; /* history frames zeroed by the task mix (T2V: all + anchor) */
    bool drop_text;
    hl_corrupt_report corrupt;
} hl_stage1_sample;

/* clip (C, F_clip, H, W) with F_clip a positive multiple of chunk_frames. On failure *s is
 * empty (safe to free). */
hl_status hl_stage1_sample_make(const hl_stage1_config *cfg, const float *clip, int C, int F_clip,
                                int H, int W, hl_rng *g, hl_stage1_sample *s, hl_error *err);
void hl_stage1_sample_free(hl_stage1_sample *s);
/* Steps 1-5 alone (the same draws): s->x0, s->hist and the logging fields chunk, n_chunks, task,
 * dropped, drop_text; noise, noisy and target stay NULL, t and corrupt zero. Stage 2
 * (train/stage2.h) builds its history with it and draws the rest in its own order. */
hl_status hl_stage1_history_make(const hl_stage1_config *cfg, const float *clip, int C, int F_clip,
                                 int H, int W, hl_rng *g, hl_stage1_sample *s, hl_error *err);

/* The transformer input of a sample (batch 1; include/helios.h helios_dit_input): every pointer
 * points into s or text (1, text_len, text_dim), the timestep goes through *timestep (storage
 * the caller keeps alive with in). A dropped caption (s->drop_text) is the caller's to zero. */
void hl_stage1_dit_input(const hl_stage1_sample *s, const float *text, int text_len,
                         double *timestep, helios_dit_input *in);

/* B samples stacked for one forward (the released per-GPU batch is 2). Every sample must have the
 * same C, F, H, W and history sizes; the RoPE indices are then the same for all (the layout is
 * fixed) and are copied from the first. The batch owns copies: the samples may be freed. The loss
 * of a batch is hl_flow_loss(pred, b.target, NULL, B, C·F·H·W, dpred). */
typedef struct hl_stage1_batch {
    int B, C, F, H, W, n_long, n_mid, n_short;
    float *noisy, *target;                             /* (B, C, F, H, W) */
    float *lat_long, *lat_mid, *lat_short;             /* (B, C, n_long | n_mid | n_short, H, W) */
    double *timesteps;                                 /* (B) */
    int64_t *idx_long, *idx_mid, *idx_short, *idx_cur; /* (n_long), (n_mid), (n_short), (F) */
} hl_stage1_batch;

hl_status hl_stage1_batch_make(const hl_stage1_sample *const *s, int B, hl_stage1_batch *b,
                               hl_error *err);
void hl_stage1_batch_free(hl_stage1_batch *b);
/* The transformer input of a batch; text (B, text_len, text_dim). */
void hl_stage1_batch_dit_input(const hl_stage1_batch *b, const float *text, int text_len,
                               helios_dit_input *in);

#endif
