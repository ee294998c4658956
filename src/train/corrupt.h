/* Frame-Aware Corrupt (spec training.md §3.3, §3.2, §11 item 1): the history latents the
 * transformer is trained on are degraded, independently per latent frame, so that the model
 * learns to tolerate the imperfect self-generated history it sees at inference ("restoration
 * shift"). All of it happens in latent space, on the history only (never on the noisy target).
 *
 * Per sample, with the generator g, in this order:
 *   1. u < p_clean_history: the whole history stays clean (released noise_corrupt_clean_prob).
 *   2. per_sample_kind: one kind for every frame (the released corrupt_mode "random" draws its
 *      noise/downsample mode once per sample), else one kind per frame (the paper's version).
 *   3. for each history frame, in RoPE order (0 = anchor, 1 .. long, mid, then the 1x frame):
 *      a frame that is exactly zero (start-of-clip padding, dropped by the task mix, T2V) is left
 *      alone and draws nothing (the released code skips all-zero windows: T2V stays T2V); else
 *      kind ~ {noise p_noise, blur p_blur, exposure p_exposure, clean the rest} and
 *        noise:    sigma ~ U(0, noise_sigma_max), eps ~ N(0, 1) (C·H·W draw),
 *                  x' = sigma·eps + (1 - sigma)·x
 *        blur:     r ~ U(blur_ratio_min, blur_ratio_max); each channel plane resized to
 *                  max(1, round(H·r)) x max(1, round(W·r)) and back, bilinear with antialias
 *                  (torch F.interpolate(mode="bilinear", align_corners=False, antialias=True))
 *        exposure: s ~ U(exposure_min, 1) or U(1, exposure_max) with equal odds;
 *                  x' = (x - m)·s + m, m = mean over channels at each (h, w)
 *      The anchor is exempt from exposure (spec §3.2: "exempt from the saturation corruption but
 *      gets its own noise corruption"): an exposure draw leaves it clean unless anchor_exposure.
 *
 * Deviations from the released code, decided here: blur draws its ratio per frame (released: per
 * 9-frame window); exposure is one of the exclusive per-frame kinds (the paper's Table 1 form;
 * released: an extra per-window pass after noise, off in the stage-1/2 configs); zero frames are
 * detected per frame (released: per window). With the default (released stage-1) parameters,
 * noise only with a per-frame sigma, the two agree in distribution.
 *
 * Shapes: history tensors (C, T, H, W) (batch 1), frame t = x[:, t]. */
#ifndef HL_TRAIN_CORRUPT_H
#define HL_TRAIN_CORRUPT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "sample/history.h"
#include "sample/rng.h"

typedef enum hl_corrupt_kind {
    HL_CORRUPT_CLEAN = 0,
    HL_CORRUPT_NOISE,
    HL_CORRUPT_BLUR,
    HL_CORRUPT_EXPOSURE,
    HL_CORRUPT_ZERO, /* an all-zero frame, left alone */
    HL_CORRUPT_KINDS
} hl_corrupt_kind;

typedef struct hl_corrupt_params {
    /* [CFG] = scripts/training/configs/stage_1_init.yaml (Helios-Base as released),
     * [PAPER] = Table 1 via the digests [D1]/[D2], [FIX] = configs/correct.yaml. */
    float p_clean_history; /* 0.1 [CFG noise_corrupt_clean_prob_history] */
    bool per_sample_kind;  /* false [CFG is_frame_independent_corrupt_history: true; PAPER] */
    float p_noise;         /* 1.0 [CFG corrupt_mode_history: noise]; PAPER st.1-2 0.0, st.3 0.4 */
    float p_blur;          /* 0.0 [CFG]; PAPER st.1-2 0.8, st.3 0.4 */
    float p_exposure;      /* 0.0 [CFG is_add_saturation off]; PAPER st.1-2 0.1, st.3 0.0 */
    float noise_sigma_max; /* 1/3 [CFG noise_corrupt_ratio_history_{short,mid,long}] */
    float blur_ratio_min, blur_ratio_max; /* 0.9, 1.0 [CFG downsample_{min,max}_corrupt_ratio] */
    float exposure_min, exposure_max;     /* 0.3, 1.7 [FIX saturation_ratio_min/max; PAPER] */
    bool anchor_exposure;                 /* false [spec §3.2] */
} hl_corrupt_params;

/* The released stage-1 configuration (what Helios-Base was trained with; spec §11 item 1). */
void hl_corrupt_params_default(hl_corrupt_params *p);
/* The paper's per-frame mix (stage 1-2: blur 0.8, exposure 0.1, clean 0.1; stage 3: noise 0.4,
 * blur 0.4, clean 0.2), no per-sample clean draw. stage is 1, 2 or 3. */
void hl_corrupt_params_paper(hl_corrupt_params *p, int stage);
hl_status hl_corrupt_params_check(const hl_corrupt_params *p, hl_error *err);

#define HL_CORRUPT_MAX_FRAMES 64

/* What a call did, for logging and tests; frames in RoPE order (0 = anchor). */
typedef struct hl_corrupt_report {
    int n;
    bool history_clean; /* step 1 fired */
    hl_corrupt_kind kind[HL_CORRUPT_MAX_FRAMES];
    float strength[HL_CORRUPT_MAX_FRAMES]; /* sigma, ratio or s; 0 for clean/zero */
} hl_corrupt_report;

/* Corrupts the history inputs in place (batch 1: lat_long (C, n_long, H, W), lat_mid
 * (C, n_mid, H, W), lat_short (C, 2, H, W) = [anchor, 1x frame]). rep may be NULL. */
hl_status hl_corrupt_history(const hl_corrupt_params *p, hl_rng *g, hl_history_inputs *in, int C,
                             int H, int W, int n_long, int n_mid, hl_corrupt_report *rep,
                             hl_error *err);
/* The same with a short tier of n_short frames = [anchor, the newest n_short - 1 frames]
 * (sample/history.h hl_history_inputs_frame): the uncompressed layout passes n_long = n_mid = 0
 * and n_short = history frames + 1. The frames are visited in the same RoPE order whatever the
 * tiers, so one generator corrupts the same frames alike in both layouts. */
hl_status hl_corrupt_history_tiers(const hl_corrupt_params *p, hl_rng *g, hl_history_inputs *in,
                                   int C, int H, int W, int n_long, int n_mid, int n_short,
                                   hl_corrupt_report *rep, hl_error *err);

/* ---- the single operations on frame t of x (C, T, H, W) ---------------------------------- */

/* x' = sigma·eps + (1 - sigma)·x, eps (C, H, W). */
void hl_corrupt_noise(float *x, int C, int T, int t, int H, int W, float sigma, const float *eps);
/* x' = (x - m)·s + m, m = mean over channels per position. */
void hl_corrupt_exposure(float *x, int C, int T, int t, int H, int W, float s);
/* Down to max(1, round(H·ratio)) x max(1, round(W·ratio)) and back up (antialiased bilinear). */
hl_status hl_corrupt_blur(float *x, int C, int T, int t, int H, int W, float ratio, hl_error *err);

/* One (h0, w0) plane to (h1, w1): torch F.interpolate(mode="bilinear", align_corners=False,
 * antialias=True) (separable triangle filter stretched by the scale when shrinking, weights
 * normalised per output; width pass first). Computed in float with float weights; agrees with
 * torch to rounding. */
hl_status hl_resize_bilinear_aa(const float *in, int h0, int w0, float *out, int h1, int w1,
                                hl_error *err);

#endif
