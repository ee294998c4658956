/* Image-to-video and video-to-video conditioning (spec §2.4, oracle README §9.4, §6.16): from the
 * VAE posterior moments of the input (quant_conv output: mean | logvar), draw the posterior
 * samples, normalise them, noise them, and lay out the history the chunk loop starts from.
 *
 * Draw order from the one pipeline generator (it matters): one posterior randn per VAE encode, in
 * encode order; then the (sigma, noise) pairs: I2V image then fake latent; V2V the first frame,
 * then per video chunk rand(F) per-frame sigmas and one randn. Then the chunks' initial noise.
 *
 * Shapes: latents (1, C, T, H, W); moments (1, 2C, T, H, W). */
#ifndef HL_PREPARE_H
#define HL_PREPARE_H

#include "sample/history.h"
#include "sample/rng.h"

typedef struct hl_cond_config {
    int C, H, W;               /* latent channels and size */
    const float *latents_mean; /* [C] vae/config.json latents_mean */
    const float *latents_std;  /* [C] latents_std */
    double image_sigma[2];     /* noise range of the image / first-frame latent (0.111, 0.135) */
    double video_sigma[2];     /* of the fake image / video latents */
} hl_cond_config;

void hl_cond_config_default(hl_cond_config *c);

/* z = (mean + exp(0.5 clamp(logvar, -30, 20)) · randn - latents_mean) · (1 / latents_std),
 * T frames; one randn draw of (1, C, T, H, W). */
hl_status hl_latent_sample(const hl_cond_config *c, hl_rng *g, const float *moments, int T,
                           float *z, hl_error *err);

/* I2V: image_moments (1 frame) and fake_moments (F frames: the image repeated (F-1)·4+1 times).
 * h gets the noised image latent as anchor and the noised last fake frame as its newest frame
 * (generated = 1). prefix (optional, [1, C, 1, H, W]) receives that fake frame: the first latent
 * frame of the final video. */
hl_status hl_prepare_i2v(const hl_cond_config *c, hl_rng *g, const float *image_moments,
                         const float *fake_moments, int F, hl_history *h, float *prefix,
                         hl_error *err);

/* V2V: first_moments (frame 0 alone) and n_chunks chunk moments of F frames each (the last
 * n_chunks·((F-1)·4+1) video frames, each window encoded alone). h gets the noised first-frame
 * latent as anchor and the noised video latents as history (generated = n_chunks·F). prefix
 * (optional, [1, C, n_chunks·F, H, W]) receives the noised video latents. */
hl_status hl_prepare_v2v(const hl_cond_config *c, hl_rng *g, const float *first_moments,
                         const float *const *chunk_moments, int n_chunks, int F, hl_history *h,
                         float *prefix, hl_error *err);

#endif
