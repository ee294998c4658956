/* The stage-3 objectives' clips from world or folder data (objective_distill.h
 * hl_distill_data_open): the "dataset" block as stage 1 reads it (objective_flow_cfg.c), the
 * clips encoded once into the latent cache, then copied into an hl_synthetic. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "train/dataset.h"
#include "train/latent_cache.h"
#include "train/objective_distill.h"

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Every clip of the open cache into d: latents [count, C, F, H, W], embeds [count, L, text_dim]. */
static hl_status copy_clips(hl_latent_cache *lc, int64_t count, hl_synthetic *d, hl_error *err) {
    int C, F, h, w, L, td;
    hl_latent_cache_shape(lc, &C, &F, &h, &w, &L, &td);
    size_t n = (size_t)C * F * h * w, tn = (size_t)L * td;
    *d = (hl_synthetic){C, F, h, w, L, td, count, NULL, NULL};
    d->latents = malloc((size_t)count * n * sizeof(float));
    d->embeds = malloc((size_t)count * tn * sizeof(float));
    if (!d->latents || !d->embeds)
        return hl_fail(err, HELIOS_ERR_OOM, "stage-3 data: out of memory (%lld clips)",
                       (long long)count);
    for (int64_t i = 0; i < count; i++) {
        hl_cached_clip cc = {0};
        HL_TRY(hl_latent_cache_get(lc, i, &cc, err));
        bool ok = cc.C == C && cc.F == F && cc.h == h && cc.w == w && cc.text_len == L &&
                  cc.text_dim == td;
        if (ok) {
            memcpy(d->latents + (size_t)i * n, cc.latents, n * sizeof(float));
            memcpy(d->embeds + (size_t)i * tn, cc.prompt_embeds, tn * sizeof(float));
        }
        hl_cached_clip_free(&cc);
        if (!ok)
            return hl_fail(err, HELIOS_ERR_SHAPE,
                           "%s: clip %lld has another shape than the cache's",
                           hl_latent_cache_path(lc, i), (long long)i);
    }
    return HL_OK;
}

hl_status hl_distill_data_open(const hl_cfg_keys *parent, const hl_train_env *env,
                               const hl_ctx *ctx, hl_synthetic *d, hl_error *err) {
    const char *data = env->data ? env->data : "procedural";
    hl_dataset_config dc;
    int L;
    const char *cache;
    HL_TRY(hl_cfg_dataset(parent, data, &dc, &L, &cache));
    const char *model = env->model ? env->model : "";
    static const char *const parts[] = {"vae", "text_encoder", "tokenizer"};
    for (int i = 0; i < 3; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", model, parts[i]);
        if (!is_dir(p))
            return hl_fail_key(err, HELIOS_ERR_INVALID_ARG, env->config_path, "model",
                               "\"%s\" has no %s/: \"data\": \"%s\" is encoded into the latent "
                               "cache by the model folder's vae/, text_encoder/ and tokenizer/",
                               model, parts[i], data);
    }
    char dir[4200];
    if (cache) snprintf(dir, sizeof dir, "%s", cache);
    else snprintf(dir, sizeof dir, "%s/cache", env->output ? env->output : ".");
    hl_dataset *ds = NULL;
    hl_latent_cache *lc = NULL;
    HL_TRY(hl_dataset_open(&dc, &ds, err));
    hl_latent_cache_config lcc = {dir, model, NULL, NULL, NULL, 33, L, 0};
    hl_status st = hl_latent_cache_open(ctx, ds, &lcc, &lc, err);
    if (st == HL_OK) {
        HL_INFO("training data: %lld clips of %s, latent cache %s", (long long)hl_dataset_count(ds),
                data, dir);
        st = hl_latent_cache_fill(lc, err);
    }
    if (st == HL_OK) st = copy_clips(lc, hl_dataset_count(ds), d, err);
    hl_latent_cache_free(lc);
    hl_dataset_free(ds);
    return st;
}
