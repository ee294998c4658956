#include "tools/train_vae.h"

#include <stdlib.h>

#include "train/vae_flat.h"

hl_status train_vae_load(const train_cfg *c, hl_vae_config *cfg, hl_params *layout,
                         char **config_text, float **params, hl_error *err) {
    char cfg_path[4096], dir[4096];
    hl_json *j = NULL;
    HL_TRY(train_component_config(c, "vae", cfg_path, dir, sizeof dir, config_text, &j, err));
    hl_status st = hl_vae_config_parse(j, cfg, err);
    hl_json_free(j);
    if (st != HL_OK) {
        hl_error_prefix(err, "%s", cfg_path);
        return st;
    }
    hl_vae_flat f;
    HL_TRY(hl_vae_flat_new(cfg, &f, err));
    *layout = f.layout; /* taken over */
    f.layout = (hl_params){0};
    hl_vae_flat_free(&f);
    if (!(*params = malloc(((size_t)layout->total + 1) * sizeof **params)))
        return hl_fail(err, HELIOS_ERR_OOM, "out of memory for %lld VAE parameters",
                       (long long)layout->total);
    if (c->init == TRAIN_INIT_RANDOM) {
        hl_rng g;
        g.path = HL_RNG_NORMAL_AVX2;
        hl_rng_seed(&g, c->seed);
        hl_vae_params_init_random(layout, *params, &g);
        return HL_OK;
    }
    hl_vae *v;
    HL_TRY(hl_vae_load(dir, cfg_path, NULL, &v, err));
    st = hl_vae_params_from_model(v, layout, *params, err);
    hl_vae_free(v);
    return st;
}
