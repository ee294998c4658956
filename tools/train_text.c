#include "tools/train_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "train/umt5_flat.h"

static bool is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}

/* The config file and weights folder of "model". */
static void resolve(const char *model, char *cfg, char *dir, size_t n) {
    char t[4096];
    snprintf(t, sizeof t, "%s/text_encoder", model);
    if (is_dir(model) && is_dir(t)) snprintf(dir, n, "%s", t);
    else if (is_dir(model)) snprintf(dir, n, "%s", model);
    else {
        snprintf(cfg, n, "%s", model);
        const char *slash = strrchr(model, '/');
        if (slash) snprintf(dir, n, "%.*s", (int)(slash - model), model);
        else snprintf(dir, n, ".");
        return;
    }
    snprintf(cfg, n, "%s/config.json", dir);
}

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
    resolve(c->model, cfg_path, dir, sizeof dir);
    size_t len;
    hl_status st = hl_file_read_all(cfg_path, HL_FILE_MAX_CONFIG, "JSON config", config_text, &len,
                                    err);
    if (st != HL_OK) {
        hl_error_prefix(err, "%s: 'model' \"%s\"", c->path, c->model);
        return st;
    }
    hl_json *j = NULL;
    st = hl_json_parse(*config_text, len, &j, err);
    if (st == HL_OK) st = hl_umt5_config_parse(j, cfg, err);
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
