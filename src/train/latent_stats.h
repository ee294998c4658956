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

#include <stdint.h>

#include "train/dataset.h"
#include "vae/vae.h"

/* mean, std: [v->cfg.z_dim]. Clips 0 .. n_clips-1 of ds (n_clips <= its count), each encoded whole
 * (batch 1). Errors name the clip. */
hl_status hl_vae_latent_stats(const hl_ctx *ctx, hl_vae *v, hl_dataset *ds, int64_t n_clips,
                              float *mean, float *std, hl_error *err);

/* c as a diffusers vae/config.json (AutoencoderKLWan), with latents_n tables (z_dim values each);
 * malloc'ed text, NULL when out of memory. Every field hl_vae_config_parse reads is written, so
 * parsing the text gives c back. */
char *hl_vae_config_to_json(const hl_vae_config *c);

#endif
