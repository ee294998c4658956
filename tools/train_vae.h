/* helios train with "component": "vae": the VAE's config, flat layout and initial weights. */
#ifndef HL_TOOLS_TRAIN_VAE_H
#define HL_TOOLS_TRAIN_VAE_H

#include "tools/train_config.h"
#include "train/params.h"
#include "vae/vae.h"

/* "model": a model folder (its vae/config.json, and vae/ weights for "init": "model"), a VAE
 * folder (config.json + diffusion_pytorch_model.safetensors) or a VAE config.json. Sets *cfg,
 * *layout, the config text (malloc'ed) and params (layout->total floats, malloc'ed): the loaded
 * weights, or hl_vae_params_init_random from the run's seed. */
hl_status train_vae_load(const train_cfg *c, hl_vae_config *cfg, hl_params *layout,
                         char **config_text, float **params, hl_error *err);

#endif
