/* The "stage1" and "stage2" rows of the objective table (train/objective.h): their settings
 * blocks, strictly checked, the state the loop steps, and their validation (the fixed-sample
 * loss of objective_flow.h and the video of val_video.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/objective.h"
#include <errno.h>
#include <sys/stat.h>

#include "core/log.h"
#include "train/cfg_keys.h"
#include "train/dataset.h"
#include "train/latent_cache.h"
#include "train/objective_flow.h"
#include "train/synthetic.h"
#include "train/val_video.h"

/* The "validation" block: what hl_flow_validate computes. */
typedef struct flow_validation {
    int samples;    /* held-out samples of the loss */
    uint64_t seed;  /* of the video; the loss's samples come from seed ^ 0x5a5a */
    bool video;     /* write OUTPUT/validation/step-N.mp4 */
    bool warned;    /* the "no full model folder" warning was given */
    hl_val_video v; /* prompts strdup'ed */
    char *model, *output, *config_json;
    char index_extra[96]; /* v.index_extra: the recipe's keys for model_index.json */
} flow_validation;

typedef struct flow_state {
    hl_flow_objective o; /* first: the step function's obj */
    hl_backend *be;
    hl_error err;
    hl_ctx ctx;
    hl_synthetic data;   /* "data": "synthetic" */
    hl_dataset *ds;      /* else: the clips ... */
    hl_latent_cache *lc; /* ... their latents and prompt embeddings */
    hl_cached_clip clip; /* the clip handed out last */
    char cache_dir[4096];
    flow_validation val;
} flow_state;

typedef struct keys {
    const hl_json *s;
    const char *file, *prefix; /* "objective" or "objective.synthetic" */
    hl_error *err;
} keys;

static hl_status bad(const keys *k, const char *key, const char *why) {
    char path[128];
    snprintf(path, sizeof path, "%s.%s", k->prefix, key);
    return hl_fail_key(k->err, HELIOS_ERR_INVALID_ARG, k->file, path, "%s", why);
}

static hl_status only(const keys *k, const char *const *known, size_t n) {
    for (size_t i = 0; i < k->s->n; i++) {
        size_t j = 0;
        while (j < n && strcmp(k->s->keys[i], known[j])) j++;
        if (j == n)
            return bad(k, k->s->keys[i], "is not a setting of this objective (docs/training.md)");
    }
    return HL_OK;
}

static hl_status num(const keys *k, const char *key, double lo, double hi, float *out) {
    const hl_json *v = hl_json_get(k->s, key);
    if (!v) return HL_OK;
    if (v->type != HL_JSON_NUMBER || !(v->number >= lo && v->number <= hi)) {
        char why[96];
        snprintf(why, sizeof why, "must be a number in [%g, %g]", lo, hi);
        return bad(k, key, why);
    }
    *out = (float)v->number;
    return HL_OK;
}

static hl_status integer(const keys *k, const char *key, int64_t lo, int64_t hi, int *out) {
    const hl_json *v = hl_json_get(k->s, key);
    if (!v) return HL_OK;
    if (v->type != HL_JSON_NUMBER || !v->is_int || v->number < (double)lo ||
        v->number > (double)hi) {
        char why[96];
        snprintf(why, sizeof why, "must be an integer in [%lld, %lld]", (long long)lo,
                 (long long)hi);
        return bad(k, key, why);
    }
    *out = (int)v->number;
    return HL_OK;
}

static hl_status boolean(const keys *k, const char *key, bool *out) {
    const hl_json *v = hl_json_get(k->s, key);
    if (!v) return HL_OK;
    if (v->type != HL_JSON_BOOL) return bad(k, key, "must be true or false");
    *out = v->boolean;
    return HL_OK;
}

/* "ratios": samples per pyramid level, one number per level of the model's pyramid (without the
 * key, hl_stage2_ratios_default's). */
static hl_status read_ratios(const keys *k, hl_stage2_config *c) {
    int L = c->sched.stages;
    const hl_json *r = hl_json_get(k->s, "ratios");
    if (!r) return HL_OK;
    int64_t v[HL_STAGE2_MAX_LEVELS], sum = 0;
    bool ok = r->type == HL_JSON_ARRAY && (int)r->n == L &&
              hl_json_get_int_array(k->s, "ratios", v, L) == L;
    for (int i = 0; ok && i < L; i++) ok = v[i] >= 0 && (sum += v[i]) <= HL_STAGE2_MAX_SAMPLES;
    if (!ok || sum < 1) {
        char why[160];
        snprintf(why, sizeof why,
                 "must be %d integers (the model's %d pyramid levels), samples per level, 1 to "
                 "%d in all",
                 L, L, HL_STAGE2_MAX_SAMPLES);
        return bad(k, "ratios", why);
    }
    for (int i = 0; i < L; i++) c->ratios[i] = (int)v[i];
    return HL_OK;
}

/* Stage 2 trains the pyramid the model folder is sampled with (train/cfg_keys.h). */
static hl_status read_pyramid(const keys *k, const hl_train_env *env, hl_stage2_config *c) {
    bool found;
    HL_TRY(hl_cfg_model_pyramid(env->model, &c->sched, &found, k->err));
    hl_stage2_ratios_default(c);
    if (found && c->sched.stages < 2)
        return hl_fail(k->err, HELIOS_ERR_INVALID_ARG,
                       "%s: 'model' %s/scheduler/scheduler_config.json has stages %d: stage 2 "
                       "trains a pyramid (a Mid folder, stages 2 or 3), not a Base folder",
                       k->file, env->model, c->sched.stages);
    char range[256];
    HL_INFO("stage2: %d pyramid levels over [%s] (%s%s)", c->sched.stages,
            hl_sched_format_range(&c->sched, 6, range, sizeof range),
            found ? env->model : "the released Mid's: no ",
            found ? "/scheduler/scheduler_config.json" : "scheduler_config.json in the model");
    return HL_OK;
}

/* "history": "compressed" (the multi-term memory) or "uncompressed" (the ablation without it,
 * train/stage1.h step 2). Stage 2's pyramid batches are built for the compressed tiers only. */
static hl_status read_history(const keys *k, int stage, hl_stage1_config *c) {
    if (!hl_json_get(k->s, "history")) return HL_OK;
    if (!hl_history_layout_parse(hl_json_get_string(k->s, "history"), &c->history))
        return bad(k, "history", "must be \"compressed\" or \"uncompressed\"");
    if (stage != 1 && c->history != HL_HISTORY_COMPRESSED)
        return bad(k, "history", "\"uncompressed\" is a stage-1 setting (stage 2 is compressed)");
    return HL_OK;
}

static hl_status read_flow(const keys *k, int stage, hl_stage2_config *s2, bool *recompute,
                           bool *pack_levels, bool *pack_batch) {
    static const char *const known[] = {
        "type",      "chunk_frames", "history_sizes",    "p_t2v",           "p_i2v",
        "p_v2v",     "p_drop_text",  "corrupt_history",  "corrupt",         "p_clean_history",
        "p_noise",   "p_blur",       "p_exposure",       "noise_sigma_max", "logit_mean",
        "logit_std", "shift",        "recompute",        "synthetic",       "dataset",
        "precision", "validation",   "keep_first_frame", "history",         "pack_batch",
        "ratios",    "pack_levels"};
    HL_TRY(only(k, known, sizeof known / sizeof *known - 2 * (stage == 1))); /* stage 2's last */
    hl_stage1_config *c = &s2->base;
    HL_TRY(boolean(k, "pack_batch", pack_batch));
    if (stage == 2) HL_TRY(read_ratios(k, s2)); /* after the model's pyramid */
    if (stage == 2) HL_TRY(boolean(k, "pack_levels", pack_levels));
    const char *preset = hl_json_get_string(k->s, "corrupt");
    if (hl_json_get(k->s, "corrupt") &&
        (!preset || (strcmp(preset, "released") && strcmp(preset, "paper"))))
        return bad(k, "corrupt", "must be \"released\" or \"paper\"");
    if (preset && !strcmp(preset, "paper")) hl_corrupt_params_paper(&c->corrupt, 1);
    HL_TRY(integer(k, "chunk_frames", 1, 64, &c->chunk_frames));
    const hl_json *hs = hl_json_get(k->s, "history_sizes");
    if (hs) {
        int64_t v[3];
        if (hs->type != HL_JSON_ARRAY || hl_json_get_int_array(k->s, "history_sizes", v, 3) != 3 ||
            v[0] < 0 || v[1] < 0 || v[2] != 1 || v[0] > 64 || v[1] > 64)
            return bad(k, "history_sizes", "must be [long, mid, 1] with long, mid in [0, 64]");
        for (int i = 0; i < 3; i++) c->history_sizes[i] = (int)v[i];
    }
    HL_TRY(num(k, "p_t2v", 0, 1, &c->p_t2v));
    HL_TRY(num(k, "p_i2v", 0, 1, &c->p_i2v));
    HL_TRY(num(k, "p_v2v", 0, 1, &c->p_v2v));
    HL_TRY(num(k, "p_drop_text", 0, 1, &c->p_drop_text));
    HL_TRY(boolean(k, "corrupt_history", &c->corrupt_history));
    HL_TRY(boolean(k, "keep_first_frame", &c->keep_first_frame));
    HL_TRY(read_history(k, stage, c));
    HL_TRY(num(k, "p_clean_history", 0, 1, &c->corrupt.p_clean_history));
    HL_TRY(num(k, "p_noise", 0, 1, &c->corrupt.p_noise));
    HL_TRY(num(k, "p_blur", 0, 1, &c->corrupt.p_blur));
    HL_TRY(num(k, "p_exposure", 0, 1, &c->corrupt.p_exposure));
    HL_TRY(num(k, "noise_sigma_max", 0, 1, &c->corrupt.noise_sigma_max));
    HL_TRY(num(k, "logit_mean", -10, 10, &c->tsample.logit_mean));
    HL_TRY(num(k, "logit_std", 0, 10, &c->tsample.logit_std));
    HL_TRY(num(k, "shift", 0.01, 100, &c->tsample.shift));
    return boolean(k, "recompute", recompute);
}

/* The synthetic clips' sizes: "synthetic": {"clips", "chunks", "height", "width", "text_len",
 * "seed"}. */
static hl_status read_synthetic(const keys *parent, const hl_train_env *env,
                                const hl_stage1_config *c, hl_synthetic *d) {
    keys k = {hl_json_get(parent->s, "synthetic"), parent->file, "objective.synthetic",
              parent->err};
    int clips = 16, chunks = 2, h = 8, w = 8, L = 16, seed = 0;
    if (k.s) {
        if (k.s->type != HL_JSON_OBJECT) return bad(parent, "synthetic", "must be an object");
        static const char *const known[] = {"clips", "chunks",   "height",
                                            "width", "text_len", "seed"};
        HL_TRY(only(&k, known, 6));
        HL_TRY(integer(&k, "clips", 1, 1 << 20, &clips));
        HL_TRY(integer(&k, "chunks", 1, 64, &chunks));
        HL_TRY(integer(&k, "height", 2, 4096, &h));
        HL_TRY(integer(&k, "width", 2, 4096, &w));
        HL_TRY(integer(&k, "text_len", 1, 4096, &L));
        HL_TRY(integer(&k, "seed", 0, 2147483647, &seed));
    }
    return hl_synthetic_make(d, env->dit->in_channels, chunks * c->chunk_frames, h, w, L,
                             env->dit->text_dim, clips, (uint64_t)seed, parent->err);
}

/* A clip of the latent cache as the objective reads it: the posterior mean (the cache keeps the
 * mean and sigma; a fixed latent per clip, as the released preprocessing stores one sample). */
static hl_status cached_get(void *user, int64_t i, hl_latent_clip *c, hl_error *err) {
    flow_state *s = user;
    hl_cached_clip_free(&s->clip);
    HL_TRY(hl_latent_cache_get(s->lc, i, &s->clip, err));
    *c = (hl_latent_clip){s->clip.latents,       s->clip.C,       s->clip.F, s->clip.h, s->clip.w,
                          s->clip.prompt_embeds, s->clip.text_len};
    return HL_OK;
}

/* "data": "procedural" (the tiny world) or a folder of captioned videos, encoded once into a
 * latent cache by the model folder's VAE and text encoder; the "dataset" block as
 * hl_cfg_dataset reads it, its cache by default OUTPUT/cache. */
static hl_status open_dataset(const keys *parent, const hl_train_env *env, flow_state *s) {
    hl_cfg_keys pk = {parent->s, parent->file, parent->prefix, parent->err};
    hl_dataset_config dc;
    int L;
    const char *cache;
    HL_TRY(hl_cfg_dataset(&pk, env->data, &dc, &L, &cache));
    if (cache) snprintf(s->cache_dir, sizeof s->cache_dir, "%s", cache);
    else {
        if (mkdir(env->output, 0755) && errno != EEXIST)
            return hl_fail(parent->err, HELIOS_ERR_IO, "%s: %s", env->output, strerror(errno));
        snprintf(s->cache_dir, sizeof s->cache_dir, "%s/cache", env->output);
    }
    HL_TRY(hl_dataset_open(&dc, &s->ds, parent->err));
    hl_latent_cache_config lcc = {s->cache_dir, env->model, NULL, NULL, NULL, 33, L, 0};
    HL_TRY(hl_latent_cache_open(&s->ctx, s->ds, &lcc, &s->lc, parent->err));
    HL_INFO("training data: %lld clips of %s, latent cache %s", (long long)hl_dataset_count(s->ds),
            env->data, s->cache_dir);
    return hl_latent_cache_fill(s->lc, parent->err);
}

#define VAL_DEFAULT_PROMPT "a small red circle bounces on a dark green background"

static char *copy_str(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* "validation": {"prompts", "seed", "width", "height", "frames" | "chunks", "steps", "samples",
 * "video"}; the defaults without the block. */
static hl_status read_validation(const keys *parent, const hl_train_env *env, flow_validation *f) {
    keys k = {hl_json_get(parent->s, "validation"), parent->file, "objective.validation",
              parent->err};
    int samples = 4, seed = (int)(env->seed & 0x7fffffff), w = 128, h = 128, frames = 0, chunks = 1,
        steps = 0;
    bool video = true;
    const hl_json *prompts = NULL;
    if (k.s) {
        if (k.s->type != HL_JSON_OBJECT) return bad(parent, "validation", "must be an object");
        static const char *const known[] = {"prompts", "seed",  "width",   "height", "frames",
                                            "chunks",  "steps", "samples", "video"};
        HL_TRY(only(&k, known, sizeof known / sizeof *known));
        HL_TRY(integer(&k, "samples", 1, 4096, &samples));
        HL_TRY(integer(&k, "seed", 0, 2147483647, &seed));
        HL_TRY(integer(&k, "width", 16, HELIOS_MAX_SIDE, &w));
        HL_TRY(integer(&k, "height", 16, HELIOS_MAX_SIDE, &h));
        HL_TRY(integer(&k, "frames", 1, HELIOS_MAX_FRAMES, &frames));
        HL_TRY(integer(&k, "chunks", 1, 64, &chunks));
        HL_TRY(integer(&k, "steps", 1, HELIOS_MAX_STEPS, &steps));
        HL_TRY(boolean(&k, "video", &video));
        if (w % 16 || h % 16)
            return bad(&k, w % 16 ? "width" : "height", "must be a multiple of 16");
        if (hl_json_get(k.s, "frames") && hl_json_get(k.s, "chunks"))
            return bad(&k, "frames", "give frames or chunks, not both");
        prompts = hl_json_get(k.s, "prompts");
        if (prompts &&
            (prompts->type != HL_JSON_ARRAY || prompts->n < 1 || prompts->n > HL_VAL_MAX_PROMPTS))
            return bad(&k, "prompts", "must be a list of 1 to 16 strings");
        for (size_t i = 0; prompts && i < prompts->n; i++)
            if (prompts->items[i].type != HL_JSON_STRING)
                return bad(&k, "prompts", "must be a list of 1 to 16 strings");
    }
    f->samples = samples;
    f->seed = (uint64_t)seed;
    f->video = video;
    f->v = (hl_val_video){.n_prompts = prompts ? (int)prompts->n : 1,
                          .seed = (uint64_t)seed,
                          .width = w,
                          .height = h,
                          .frames = frames,
                          .chunks = chunks,
                          .steps = steps};
    bool ok = true;
    for (int i = 0; i < f->v.n_prompts; i++) {
        f->v.prompts[i] = copy_str(prompts ? prompts->items[i].string : VAL_DEFAULT_PROMPT);
        ok = ok && f->v.prompts[i];
    }
    f->model = copy_str(env->model ? env->model : "");
    f->output = copy_str(env->output);
    f->config_json = copy_str(env->config_json ? env->config_json : "");
    if (!ok || !f->model || !f->output || !f->config_json)
        return hl_fail(parent->err, HELIOS_ERR_OOM, "objective.validation: out of memory");
    return HL_OK;
}

/* The keys a model folder needs for what the objective trains (docs/training.md): validation
 * videos are made with them, as `helios generate` would run the exported model. */
static void index_keys(const hl_stage1_config *c, flow_validation *f) {
    snprintf(f->index_extra, sizeof f->index_extra, "%s%s%s",
             c->keep_first_frame ? "" : "\"keep_first_frame\": false",
             !c->keep_first_frame && c->history == HL_HISTORY_UNCOMPRESSED ? ", " : "",
             c->history == HL_HISTORY_UNCOMPRESSED ? "\"history\": \"uncompressed\"" : "");
    f->v.index_extra = f->index_extra;
}

static void free_validation(flow_validation *f) {
    for (int i = 0; i < f->v.n_prompts; i++) free((char *)f->v.prompts[i]);
    free(f->model);
    free(f->output);
    free(f->config_json);
}

hl_status hl_flow_validate(void *obj, int64_t step, const float *params, const float *ema,
                           double *loss, char *sample, size_t cap, hl_error *err) {
    flow_state *s = obj;
    flow_validation *f = &s->val;
    const float *w = ema ? ema : params;
    sample[0] = '\0';
    HL_TRY(hl_flow_objective_validate(&s->o, w, f->seed ^ 0x5a5a, f->samples, loss, err));
    if (!f->video) return HL_OK;
    if (!hl_val_model_is_full(f->model) || !f->config_json[0]) {
        if (!f->warned)
            HL_WARN("validation: 'model' \"%s\" is not a full model folder (model_index.json, "
                    "transformer/, vae/, text_encoder/, tokenizer/, scheduler/): no validation "
                    "videos, only the loss",
                    f->model);
        f->warned = true;
        return HL_OK;
    }
    /* the video is a by-product: its failure (say a size the model's rule refuses) is a warning,
     * not the end of the training run */
    hl_error verr = {0};
    if (hl_val_video_write(&f->v, f->model, f->config_json, s->o.layout, w, f->output, step, sample,
                           cap, &verr) != HL_OK) {
        HL_WARN("validation: step %lld: no video: %s", (long long)step, verr.msg);
        sample[0] = '\0';
    }
    return HL_OK;
}

static hl_status flow_create(int stage, const hl_json *settings, const hl_train_env *env,
                             void **obj, hl_error *err) {
    *obj = NULL;
    keys k = {settings, env->config_path, "objective", err};
    hl_stage2_config c;
    hl_stage2_config_default(&c);
    if (stage == 1) hl_stage1_config_default(&c.base);
    c.base.zero_history_timestep = env->dit->zero_history_timestep; /* the model decides */
    bool recompute = true, pack_levels = true, pack_batch = true;
    if (stage == 2) HL_TRY(read_pyramid(&k, env, &c));
    HL_TRY(read_flow(&k, stage, &c, &recompute, &pack_levels, &pack_batch));
    const char *precision = hl_json_get_string(settings, "precision");
    if (hl_json_get(settings, "precision") &&
        (!precision || (strcmp(precision, "f32") && strcmp(precision, "bf16"))))
        return bad(&k, "precision", "must be \"f32\" or \"bf16\"");
    flow_state *s = calloc(1, sizeof *s);
    if (!s) return hl_fail(err, HELIOS_ERR_OOM, "stage%d objective: out of memory", stage);
    int synthetic = env->data && !strcmp(env->data, "synthetic");
    hl_status st = HL_OK;
    if (!(s->be = hl_backend_new(HELIOS_BACKEND_CPU, 0, err))) st = HELIOS_ERR_OOM;
    else s->ctx = (hl_ctx){s->be, &s->err};
    if (st == HL_OK) st = read_validation(&k, env, &s->val);
    if (st == HL_OK) index_keys(&c.base, &s->val);
    if (st == HL_OK && synthetic) st = read_synthetic(&k, env, &c.base, &s->data);
    else if (st == HL_OK) st = open_dataset(&k, env, s);
    if (st == HL_OK) {
        hl_latent_source src = synthetic
                                   ? hl_synthetic_source(&s->data)
                                   : (hl_latent_source){s, hl_dataset_count(s->ds), cached_get};
        st = hl_flow_objective_init(&s->o, &s->ctx, env->dit, env->layout, stage, &c, src,
                                    recompute, err);
        s->o.bf16 = precision && !strcmp(precision, "bf16");
        s->o.pack_levels = pack_levels;
        s->o.pack_batch = pack_batch;
    }
    if (st != HL_OK) {
        hl_flow_destroy(s);
        return st;
    }
    *obj = s;
    return HL_OK;
}

hl_status hl_stage1_create(const hl_json *settings, const hl_train_env *env, void **obj,
                           hl_error *err) {
    return flow_create(1, settings, env, obj, err);
}

hl_status hl_stage2_create(const hl_json *settings, const hl_train_env *env, void **obj,
                           hl_error *err) {
    return flow_create(2, settings, env, obj, err);
}

void hl_flow_destroy(void *obj) {
    flow_state *s = obj;
    if (!s) return;
    hl_flow_objective_free(&s->o);
    free_validation(&s->val);
    hl_synthetic_free(&s->data);
    hl_cached_clip_free(&s->clip);
    hl_latent_cache_free(s->lc);
    hl_dataset_free(s->ds);
    hl_backend_free(s->be);
    free(s);
}
