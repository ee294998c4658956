/* The latents_mean / latents_std of a VAE, measured over training clips.
 *
 * A diffusers vae/config.json carries one mean and one standard deviation per latent channel; the
 * pipelines normalise latents with them ((z - mean) / std) so that the transformer sees data of
 * about unit variance, as its noise schedules assume. Wan measured its own tables over its data; a
 * VAE trained by helios measures its own the same way: the posterior means of n clips, each
 * channel's mean and population standard deviation over every clip, latent frame and position,
 * accumulated in double. */
#ifndef HL_TRAIN_LATENT_STATS_H
#define HL_TRAIN_LATENT_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "train/dataset.h"
#include "vae/vae.h"

/* How well the VAE reconstructs the clips (the posterior mean decoded), when asked for. */
typedef struct hl_vae_recon {
    double mse;  /* mean squared error over every pixel value of every clip, in [-1, 1] units */
    double psnr; /* 10 log10(2^2 / mse): the peak-to-peak range is 2 */
    float *pair; /* optional, (3, frames, H, 2W) of clip 0: the clip | its reconstruction,
                    malloc'ed; free it */
} hl_vae_recon;

/* y (3, F, H, W) = decode(mu), mu a posterior mean (1, z, T_lat, h, w); *se += the squared error
 * of y against x (3, F, H, W), F = hl_vae_decoded_frames(T_lat). */
hl_status hl_vae_decode_error(const hl_ctx *ctx, hl_vae *v, int64_t T_lat, int64_t h, int64_t w,
                              const float *mu, const float *x, int64_t H, int64_t W, float *y,
                              double *se);

/* 10 log10(2^2 / mse): the PSNR of values in [-1, 1] (peak-to-peak 2). */
double hl_vae_psnr(double mse);

/* mean, std: [v->cfg.z_dim]. Clips 0 .. n_clips-1 of ds (n_clips <= its count), each encoded whole
 * (batch 1). recon (may be NULL) also decodes each clip's posterior mean and measures the error;
 * with want_pair its pair holds clip 0 side by side with its reconstruction. Errors name the
 * clip. */
hl_status hl_vae_latent_stats(const hl_ctx *ctx, hl_vae *v, hl_dataset *ds, int64_t n_clips,
                              float *mean, float *std, hl_vae_recon *recon, bool want_pair,
                              hl_error *err);

/* c as a diffusers vae/config.json (AutoencoderKLWan), with latents_n tables (z_dim values each);
 * malloc'ed text, NULL when out of memory. Every field hl_vae_config_parse reads is written, so
 * parsing the text gives c back. */
char *hl_vae_config_to_json(const hl_vae_config *c);

#endif
