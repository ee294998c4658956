#include "tools/train_text.h"

#include <stdlib.h>

#include "train/umt5_flat.h"

static hl_status load_weights(const char *dir, const hl_params *layout, float *params,
                              hl_error *err) {
    hl_weights *w;
    HL_TRY(hl_weights_open(dir, &w, err));
    hl_status st = hl_params_load(layout, params, w, err);
    hl_weights_close(w);
    return st;
}

hl_status train_text_load(const train_cfg *c, hl_umt5_config *cfg, hl_params *layout,
                          char **config_text, float **params, hl_error *err) {
    char cfg_path[4096], dir[4096];
    hl_json *j = NULL;
    HL_TRY(
        train_component_config(c, "text_encoder", cfg_path, dir, sizeof dir, config_text, &j, err));
    hl_status st = hl_umt5_config_parse(j, cfg, err);
    hl_json_free(j);
    if (st != HL_OK) {
        hl_error_prefix(err, "%s", cfg_path);
        return st;
    }
    hl_umt5_flat f;
    HL_TRY(hl_umt5_flat_new(cfg, &f, err));
    *layout = f.layout; /* taken over */
    f.layout = (hl_params){0};
    hl_umt5_flat_free(&f);
    if (!(*params = malloc(((size_t)layout->total + 1) * sizeof **params)))
        return hl_fail(err, HELIOS_ERR_OOM, "out of memory for %lld text encoder parameters",
                       (long long)layout->total);
    if (c->init == TRAIN_INIT_RANDOM) {
        hl_rng g;
        g.path = HL_RNG_NORMAL_AVX2;
        hl_rng_seed(&g, c->seed);
        hl_umt5_params_init_random(cfg, layout, *params, &g);
        return HL_OK;
    }
    return load_weights(dir, layout, *params, err);
}
