/* helios train with "component": "text_encoder": the UMT5 encoder's config, flat layout and
 * initial weights. */
#ifndef HL_TOOLS_TRAIN_TEXT_H
#define HL_TOOLS_TRAIN_TEXT_H

#include "text/umt5.h"
#include "tools/train_config.h"
#include "train/params.h"

/* "model": a model folder (its text_encoder/config.json, and text_encoder/ weights for "init":
 * "model"), a text encoder folder (config.json + model.safetensors) or its config.json. Sets
 * *cfg, *layout, the config text (malloc'ed) and params (layout->total floats, malloc'ed): the
 * loaded weights, or hl_umt5_params_init_random from the run's seed. */
hl_status train_text_load(const train_cfg *c, hl_umt5_config *cfg, hl_params *layout,
                          char **config_text, float **params, hl_error *err);

#endif
