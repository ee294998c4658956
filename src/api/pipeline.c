/* The public pipeline API: a diffusers model folder, prompt encoding, step-wise generation.
 * Calls that create something (pipeline, generation) report failures to the session; calls on
 * a generation report to the generation's own error (its hl_ctx points there). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/gen_times.h"
#include "api/memory.h"
#include "api/recipes.h"
#include "api/session.h"
#include "core/file.h"
#include "core/log.h"
#include "core/parallel.h"
#include "dit/dit.h"
#include "sample/chunk_loop.h"
#include "sample/condition_encode.h"
#include "sample/prepare.h"
#include "text/prompt_encode.h"
#include "vae/vae.h"

/* The Wan VAE compresses space by 8 and time by 4 (spec §2.2). */
#define VAE_SPATIAL 8
#define VAE_TEMPORAL 4

struct helios_pipeline {
    helios_session *s;
    hl_dit *dit;
    hl_sched_config sched;
    bool pyramid, distilled, cfg_zero_star;
    bool keep_first_frame;     /* model_index.json's "keep_first_frame" (absent: true) */
    hl_history_layout history; /* model_index.json's "history" (absent: compressed) */
    hl_text_encoder *te; /* NULL when the folder has no text encoder (embeddings must be given) */
    hl_vae *vae;         /* NULL when the folder has no vae/ (latents only) */
    int low_memory;
    int width, height; /* the model's native size (model_index.json's default_*, else 640x384) */
    int max_len;       /* its text length (model_index.json's max_sequence_length, else 512) */
};

struct helios_gen {
    helios_pipeline *p;
    hl_error err; /* this generation's last failure */
    hl_ctx ctx;   /* the session's, with err = &err (the loop keeps a pointer to it) */
    hl_loop *loop;
    int n_chunks, chunks_done, n_stages;
    int F, h, w, L, max_len;
    bool guidance; /* classifier-free guidance: a negative prompt is encoded too */
    bool decode;
    float *frames;    /* (3, (F-1)·4+1, H, W): the decoded chunk */
    int total_frames; /* trimmed length of a bounded video */
    hl_gen_times times;
    bool governed;   /* the session runs on all cores: the thread count follows the load */
    hl_governor gov; /* (core/parallel.h), on the session's backend during this one's calls */
};

/* The generation's governor on the session's backend for the length of one API call. */
static void govern_begin(helios_gen *g) {
    if (!g->governed) return;
    hl_backend_govern(g->ctx.backend, &g->gov);
    omp_set_num_threads(g->gov.threads);
}

static void govern_end(helios_gen *g) {
    if (!g->governed) return;
    hl_backend_govern(g->ctx.backend, NULL);
    hl_governor_stop(&g->gov);
}

void helios_pipeline_params_init(helios_pipeline_params *p) { memset(p, 0, sizeof *p); }

/* A regular file (never opened: a FIFO or device in the model folder must not hang us). */
static bool file_exists(const char *path) { return hl_file_is_regular(path); }

/* ---- the model-folder check ----------------------------------------------------------------
 * Everything generation will read is validated here, before any compute and before the caller
 * creates its output: model_index.json (pipeline class, typed flags, component classes), every
 * component's config (by its reader), the values the components must agree on, and the
 * recipe/scheduler pairing. Errors name the file and the key. */

/* A component as model_index.json declares it: [library, class], [null, null] (absent) or no
 * entry at all (the folder decides: a component whose folder exists is used). */
typedef enum { COMP_UNLISTED = 0, COMP_NULL, COMP_LISTED } comp_state;

enum { C_SCHEDULER, C_TEXT_ENCODER, C_TOKENIZER, C_TRANSFORMER, C_VAE, C_COUNT };

static const struct {
    const char *key;
    const char *classes[3]; /* the classes helios implements */
} k_components[C_COUNT] = {
    [C_SCHEDULER] = {"scheduler", {"HeliosScheduler", "HeliosDMDScheduler"}},
    [C_TEXT_ENCODER] = {"text_encoder", {"UMT5EncoderModel"}},
    [C_TOKENIZER] = {"tokenizer", {"T5TokenizerFast", "T5Tokenizer"}},
    [C_TRANSFORMER] = {"transformer", {"HeliosTransformer3DModel"}},
    [C_VAE] = {"vae", {"AutoencoderKLWan"}},
};

static const char *json_type_name(const hl_json *m) {
    static const char *const names[] = {"null",     "a boolean", "a number",
                                        "a string", "an array",  "an object"};
    return names[m->type];
}

/* A flag of model_index.json: absent or null is `absent`; anything but a boolean is an error
 * ("yes" must not be read as true, nor silently as false). */
static hl_status index_flag(const hl_json *j, const char *path, const char *key, bool absent,
                            bool *out, hl_error *err) {
    const hl_json *m = hl_json_get(j, key);
    *out = absent;
    if (!m || m->type == HL_JSON_NULL) return HL_OK;
    if (m->type != HL_JSON_BOOL)
        return hl_fail_key(err, HELIOS_ERR_FORMAT, path, key, "must be true or false, not %s",
                           json_type_name(m));
    *out = m->boolean;
    return HL_OK;
}

/* model_index.json's "history" (a helios key): "uncompressed" for a model trained without the
 * multi-term memory (an ablation, train/stage1.h); absent or null is "compressed". */
static hl_status index_history(const hl_json *j, const char *path, hl_history_layout *out,
                               hl_error *err) {
    const hl_json *m = hl_json_get(j, "history");
    *out = HL_HISTORY_COMPRESSED;
    if (!m || m->type == HL_JSON_NULL) return HL_OK;
    if (m->type != HL_JSON_STRING)
        return hl_fail_key(err, HELIOS_ERR_FORMAT, path, "history",
                           "must be \"compressed\" or \"uncompressed\", not %s", json_type_name(m));
    if (!hl_history_layout_parse(m->string, out))
        return hl_fail_key(err, HELIOS_ERR_FORMAT, path, "history",
                           "must be \"compressed\" or \"uncompressed\", not \"%s\"", m->string);
    return HL_OK;
}

/* A number of model_index.json (helios keys, what the model was trained with, which diffusers
 * ignores: "default_width" / "default_height" in pixels, "max_sequence_length" in tokens):
 * absent or null keeps *out. */
static hl_status index_size(const hl_json *j, const char *path, const char *key, int lo, int hi,
                            int *out, hl_error *err) {
    const hl_json *m = hl_json_get(j, key);
    if (!m || m->type == HL_JSON_NULL) return HL_OK;
    if (m->type != HL_JSON_NUMBER || !m->is_int || m->number < lo || m->number > hi)
        return hl_fail_key(err, HELIOS_ERR_FORMAT, path, key, "must be a whole number, %d..%d", lo,
                           hi);
    *out = (int)m->number;
    return HL_OK;
}

static hl_status index_component(const hl_json *j, const char *path, int c, comp_state *state,
                                 hl_error *err) {
    const char *key = k_components[c].key;
    const hl_json *m = hl_json_get(j, key);
    *state = COMP_UNLISTED;
    if (!m) return HL_OK;
    if (m->type == HL_JSON_NULL ||
        (m->type == HL_JSON_ARRAY && m->n == 2 && m->items[0].type == HL_JSON_NULL &&
         m->items[1].type == HL_JSON_NULL)) {
        *state = COMP_NULL;
        return HL_OK;
    }
    if (m->type != HL_JSON_ARRAY || m->n != 2 || m->items[0].type != HL_JSON_STRING ||
        m->items[1].type != HL_JSON_STRING)
        return hl_fail_key(err, HELIOS_ERR_FORMAT, path, key,
                           "must be [library, class] or [null, null]");
    const char *cls = m->items[1].string;
    for (int i = 0; i < 3 && k_components[c].classes[i]; i++)
        if (!strcmp(cls, k_components[c].classes[i])) {
            *state = COMP_LISTED;
            return HL_OK;
        }
    return hl_fail_key(err, HELIOS_ERR_UNSUPPORTED, path, key,
                       "class \"%s\" is not supported (expected %s%s%s)", cls,
                       k_components[c].classes[0], k_components[c].classes[1] ? " or " : "",
                       k_components[c].classes[1] ? k_components[c].classes[1] : "");
}

/* model_index.json: the pipeline class, its flags and the components it lists. */
static hl_status read_model_index(helios_pipeline *p, const char *dir, comp_state comp[C_COUNT],
                                  hl_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    hl_json *j = NULL;
    HL_TRY(hl_json_load_file(path, &j, err));
    hl_status st = HL_OK;
    const hl_json *cm = hl_json_get(j, "_class_name");
    const char *cls = cm && cm->type == HL_JSON_STRING ? cm->string : NULL;
    if (j->type != HL_JSON_OBJECT)
        st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: not a JSON object", path);
    else if (!cls || (strcmp(cls, "HeliosPipeline") && strcmp(cls, "HeliosPyramidPipeline")))
        st = hl_fail_key(err, HELIOS_ERR_UNSUPPORTED, path, "_class_name",
                         "\"%s\" is not a Helios pipeline "
                         "(HeliosPipeline or HeliosPyramidPipeline)",
                         cls  ? cls
                         : cm ? json_type_name(cm)
                              : "missing");
    p->pyramid = cls && !strcmp(cls, "HeliosPyramidPipeline");
    if (st == HL_OK) st = index_flag(j, path, "is_distilled", false, &p->distilled, err);
    if (st == HL_OK) st = index_flag(j, path, "is_cfg_zero_star", false, &p->cfg_zero_star, err);
    /* helios key: false for a model trained without the first-frame anchor (an ablation) */
    if (st == HL_OK) st = index_flag(j, path, "keep_first_frame", true, &p->keep_first_frame, err);
    if (st == HL_OK) st = index_history(j, path, &p->history, err);
    p->width = 640, p->height = 384, p->max_len = 512;
    if (st == HL_OK) st = index_size(j, path, "default_width", 16, HELIOS_MAX_SIDE, &p->width, err);
    if (st == HL_OK)
        st = index_size(j, path, "default_height", 16, HELIOS_MAX_SIDE, &p->height, err);
    if (st == HL_OK)
        st = index_size(j, path, "max_sequence_length", 1, HELIOS_MAX_SEQUENCE_LENGTH, &p->max_len,
                        err);
    for (int c = 0; st == HL_OK && c < C_COUNT; c++)
        st = index_component(j, path, c, &comp[c], err);
    hl_json_free(j);
    return st;
}

/* A component the pipeline cannot run without, or one model_index.json lists, must be there. */
static hl_status need_component(const char *dir, int c, comp_state state, bool required,
                                const char *file, hl_error *err) {
    const char *key = k_components[c].key;
    char index[4096];
    snprintf(index, sizeof index, "%s/model_index.json", dir);
    if (required && state == COMP_NULL)
        return hl_fail_key(err, HELIOS_ERR_MISSING, index, key, "is null, but %s",
                           c == C_TOKENIZER ? "the text encoder needs one"
                                            : "a Helios pipeline needs one");
    if (state == COMP_LISTED && !file_exists(file))
        return hl_fail(
            err, HELIOS_ERR_MISSING, "%s is missing (or not a regular file), but %s lists '%s'%s",
            file, index, key,
            c == C_VAE ? " (a folder used for latents only says \"vae\": [null, null])" : "");
    return HL_OK;
}

static hl_status read_scheduler(helios_pipeline *p, const char *dir, hl_error *err) {
    char path[4096], index[4096];
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
    snprintf(index, sizeof index, "%s/model_index.json", dir);
    hl_json *j = NULL;
    HL_TRY(hl_json_load_file(path, &j, err));
    hl_status st = hl_sched_config_from_json(j, p->distilled ? HL_SCHED_DMD : HL_SCHED_UNIPC,
                                             &p->sched, err);
    if (st != HL_OK) hl_error_prefix(err, "%s", path);
    const char *cls = hl_json_get_string(j, "_class_name");
    if (st == HL_OK && cls && strcmp(cls, "HeliosScheduler") && strcmp(cls, "HeliosDMDScheduler"))
        st = hl_fail_key(err, HELIOS_ERR_UNSUPPORTED, path, "_class_name",
                         "\"%s\" is not supported (expected HeliosScheduler or HeliosDMDScheduler)",
                         cls);
    hl_json_free(j);
    HL_TRY(st);
    /* The recipe is the pair (pipeline class, scheduler): DMD is the Distilled recipe's few-step
     * sampler over the pyramid stages, and the Distilled flag means nothing without it. Caught
     * here, the pairing cannot fail later inside the first chunk's set_timesteps. */
    if (p->sched.kind == HL_SCHED_DMD && !p->pyramid)
        return hl_fail_key(
            err, HELIOS_ERR_UNSUPPORTED, index, "_class_name",
            "HeliosPipeline (the Base recipe) cannot use the DMD scheduler of %s: DMD is the "
            "Distilled recipe's (HeliosPyramidPipeline with is_distilled)",
            path);
    if (p->distilled && !p->pyramid)
        return hl_fail_key(err, HELIOS_ERR_UNSUPPORTED, index, "is_distilled",
                           "is true, which needs _class_name HeliosPyramidPipeline");
    if (p->distilled && p->sched.kind != HL_SCHED_DMD)
        return hl_fail_key(err, HELIOS_ERR_UNSUPPORTED, index, "is_distilled",
                           "is true, but %s is not the DMD scheduler (scheduler_type \"dmd\")",
                           path);
    return HL_OK;
}

/* A component's config.json through its own reader, errors prefixed with the file. */
static hl_status read_config(const char *path, int which, void *cfg, hl_error *err) {
    hl_json *j = NULL;
    HL_TRY(hl_json_load_file(path, &j, err));
    hl_status st = which == C_TRANSFORMER ? hl_dit_config_parse(j, cfg, err)
                                          : hl_vae_config_parse(j, cfg, err);
    if (st != HL_OK) hl_error_prefix(err, "%s", path);
    hl_json_free(j);
    return st;
}

/* What the components must agree on (each config was checked alone by its reader); run on the
 * configs before any weights are mapped, so a mismatch is named by its keys rather than by the
 * first tensor whose shape it breaks. te and v may be NULL (absent components). */
static hl_status check_agreement(const hl_dit_config *d, const hl_umt5_config *te,
                                 const hl_vae_config *v, const char *dit_cfg, const char *te_cfg,
                                 const char *vae_cfg, hl_error *err) {
    /* the sampler updates the latents with the prediction, element for element */
    if (d->out_channels != d->in_channels)
        return hl_fail_key(err, HELIOS_ERR_FORMAT, dit_cfg, "out_channels",
                           "= %d, but the flow prediction needs "
                           "in_channels = %d",
                           d->out_channels, d->in_channels);
    if (te && te->d_model != d->text_dim)
        return hl_fail_key(err, HELIOS_ERR_FORMAT, te_cfg, "d_model",
                           "= %d, but %s has text_dim %d", te->d_model, dit_cfg, d->text_dim);
    if (!v) return HL_OK;
    if (v->z_dim != d->in_channels)
        return hl_fail_key(err, HELIOS_ERR_FORMAT, vae_cfg, "z_dim",
                           "= %d, but %s has in_channels %d", v->z_dim, dit_cfg, d->in_channels);
    if (v->latents_n != v->z_dim)
        return hl_fail_key(
            err, HELIOS_ERR_FORMAT, vae_cfg, "latents_mean",
            "and 'latents_std' are needed with z_dim %d values (the defaults have 16)", v->z_dim);
    /* frames are RGB, and the chunk arithmetic (pixels / 8, 4k + 1 frames) is the Wan VAE's */
    if (v->in_channels != 3 || v->out_channels != 3)
        return hl_fail_key(err, HELIOS_ERR_UNSUPPORTED, vae_cfg,
                           v->in_channels != 3 ? "in_channels" : "out_channels",
                           "= %d; video frames have 3 channels",
                           v->in_channels != 3 ? v->in_channels : v->out_channels);
    if (v->spatial_ratio != VAE_SPATIAL)
        return hl_fail_key(err, HELIOS_ERR_UNSUPPORTED, vae_cfg, "dim_mult",
                           "has %d levels: a spatial ratio of %d, the pipeline needs %d",
                           v->n_levels, v->spatial_ratio, VAE_SPATIAL);
    if (v->temporal_ratio != VAE_TEMPORAL)
        return hl_fail_key(err, HELIOS_ERR_UNSUPPORTED, vae_cfg, "temperal_downsample",
                           "gives a temporal ratio of %d, the pipeline needs %d", v->temporal_ratio,
                           VAE_TEMPORAL);
    return HL_OK;
}

helios_status helios_pipeline_load(helios_session *s, const helios_pipeline_params *pp,
                                   helios_pipeline **out) {
    hl_error *err = &s->err;
    hl_error_clear(err);
    *out = NULL;
    if (!pp->model_dir)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "pipeline: no model folder given");
    helios_pipeline *p = calloc(1, sizeof *p);
    if (!p) return hl_fail(err, HELIOS_ERR_OOM, "pipeline: out of memory");
    p->s = s;
    p->low_memory = pp->low_memory;
    const char *d = pp->model_dir;
    char dit_cfg[4096], wdir[4096], te_dir[4096], tok_dir[4096], te_cfg[4096], sched_cfg[4096];
    char vae_dir[4096], vae_cfg[4096];
    snprintf(dit_cfg, sizeof dit_cfg, "%s/transformer/config.json", d);
    snprintf(wdir, sizeof wdir, "%s/transformer", d);
    snprintf(te_dir, sizeof te_dir, "%s/text_encoder", d);
    snprintf(te_cfg, sizeof te_cfg, "%s/text_encoder/config.json", d);
    snprintf(tok_dir, sizeof tok_dir, "%s/tokenizer", d);
    snprintf(sched_cfg, sizeof sched_cfg, "%s/scheduler/scheduler_config.json", d);
    snprintf(vae_dir, sizeof vae_dir, "%s/vae", d);
    snprintf(vae_cfg, sizeof vae_cfg, "%s/vae/config.json", d);
    comp_state comp[C_COUNT] = {0};
    hl_status st = read_model_index(p, d, comp, err);
    /* every listed component is looked for before any is loaded, so a missing vae/ is reported
     * at once and not after the transformer's weights are mapped */
    if (st == HL_OK) st = need_component(d, C_SCHEDULER, comp[C_SCHEDULER], true, sched_cfg, err);
    if (st == HL_OK) st = need_component(d, C_TRANSFORMER, comp[C_TRANSFORMER], true, dit_cfg, err);
    if (st == HL_OK)
        st = need_component(d, C_TEXT_ENCODER, comp[C_TEXT_ENCODER], false, te_cfg, err);
    if (st == HL_OK) st = need_component(d, C_VAE, comp[C_VAE], false, vae_cfg, err);
    if (st == HL_OK && comp[C_TEXT_ENCODER] != COMP_NULL && comp[C_TOKENIZER] == COMP_NULL &&
        file_exists(te_cfg))
        st = need_component(d, C_TOKENIZER, COMP_NULL, true, tok_dir, err);
    if (st == HL_OK) st = read_scheduler(p, d, err);
    /* configs first (the text encoder's open reads only its config and the tokenizer), then the
     * weights; the loaders read their config again, which costs nothing next to the weights */
    bool want_te = comp[C_TEXT_ENCODER] != COMP_NULL && file_exists(te_cfg);
    bool want_vae = comp[C_VAE] != COMP_NULL && file_exists(vae_cfg);
    hl_dit_config dc;
    hl_vae_config vc;
    if (st == HL_OK) st = read_config(dit_cfg, C_TRANSFORMER, &dc, err);
    if (st == HL_OK && want_te) st = hl_text_encoder_open(te_dir, tok_dir, &p->te, err);
    if (st == HL_OK && want_vae) st = read_config(vae_cfg, C_VAE, &vc, err);
    if (st == HL_OK)
        st = check_agreement(&dc, p->te ? &p->te->cfg : NULL, want_vae ? &vc : NULL, dit_cfg,
                             te_cfg, vae_cfg, err);
    if (st == HL_OK) st = hl_dit_load(dit_cfg, wdir, &p->dit, err);
    if (st == HL_OK && want_vae) st = hl_vae_load(vae_dir, NULL, NULL, &p->vae, err);
    if (st != HL_OK) {
        helios_pipeline_free(p);
        return st;
    }
    HL_INFO("pipeline: %s (%s), transformer %d layers x D %d",
            p->pyramid ? "HeliosPyramidPipeline" : "HeliosPipeline",
            helios_recipe_defaults_get(helios_pipeline_recipe(p))->name, p->dit->cfg.num_layers,
            p->dit->cfg.dim);
    *out = p;
    return HL_OK;
}

void helios_pipeline_free(helios_pipeline *p) {
    if (!p) return;
    hl_dit_free(p->dit);
    hl_text_encoder_free(p->te);
    hl_vae_free(p->vae);
    free(p);
}

void helios_pipeline_default_size(const helios_pipeline *p, int *width, int *height) {
    *width = p->width, *height = p->height;
}

helios_recipe helios_pipeline_recipe(const helios_pipeline *p) {
    return hl_recipe_for(p->pyramid, p->sched.kind == HL_SCHED_DMD);
}

void helios_gen_params_init(helios_gen_params *g) {
    memset(g, 0, sizeof *g);
    g->height = 384, g->width = 640;
    g->num_frames = 132;
    g->guidance_scale = -1.0f;
    g->decode = 1;
}

/* The recipe of the loaded model (src/api/recipes.c) where the caller left a default. */
static void apply_recipe(const helios_pipeline *p, const helios_gen_params *g, hl_loop_config *c) {
    hl_loop_config_default(c);
    c->sched = p->sched;
    static const hl_sched_kind kinds[] = {[HELIOS_SAMPLER_UNIPC] = HL_SCHED_UNIPC,
                                          [HELIOS_SAMPLER_EULER] = HL_SCHED_EULER,
                                          [HELIOS_SAMPLER_DMD] = HL_SCHED_DMD};
    if (g->sampler > HELIOS_SAMPLER_DEFAULT && g->sampler <= HELIOS_SAMPLER_DMD)
        c->sched.kind = kinds[g->sampler];
    c->pyramid = p->pyramid;
    c->n_stages = p->pyramid ? p->sched.stages : 1;
    c->cfg_zero_star = p->cfg_zero_star;
    c->keep_first_frame = p->keep_first_frame;
    c->history = p->history;
    const helios_recipe_defaults *r = helios_recipe_defaults_get(
        hl_recipe_for(p->pyramid, c->sched.kind == HL_SCHED_DMD));
    c->amplify_first_chunk = r->amplify_first_chunk;
    c->zero_steps = r->zero_init_steps;
    c->guidance_scale = g->guidance_scale >= 0 ? g->guidance_scale : r->guidance_scale;
    c->steps = g->steps > 0 ? g->steps : r->steps;
    for (int s = 0; s < c->n_stages && s < HL_SCHED_MAX_STAGES; s++) {
        int k = s < 3 ? s : 2;
        c->stage_steps[s] = s < 3 && g->pyramid_steps[s] > 0 ? g->pyramid_steps[s]
                                                             : r->pyramid_steps[k];
    }
    c->latent_frames = g->latent_frames_per_chunk > 0 ? g->latent_frames_per_chunk
                                                      : r->latent_frames_per_chunk;
    for (int i = 0; i < 3; i++) c->history_sizes[i] = r->history_frames[i];
    c->height = g->height / VAE_SPATIAL, c->width = g->width / VAE_SPATIAL;
    c->seed = g->seed;
}

/* Embeddings [L, E] of a prompt: given, or encoded (padded to max_len). */
static hl_status prompt_embeddings(helios_pipeline *p, const hl_ctx *ctx, const char *prompt,
                                   const float *given, int given_len, int max_len, float **out,
                                   int *L) {
    hl_error *err = ctx->err;
    int E = p->dit->cfg.text_dim;
    if (given) {
        if (given_len < 1)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "generate: text_len must be set with embeddings");
        *L = given_len;
        if (!(*out = malloc((size_t)given_len * E * sizeof(float))))
            return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
        memcpy(*out, given, (size_t)given_len * E * sizeof(float));
        return HL_OK;
    }
    if (!p->te)
        return hl_fail(err, HELIOS_ERR_MISSING,
                       "generate: the model folder has no text_encoder/; pass embeddings");
    int dim;
    HL_TRY(hl_text_encoder_dim(p->te, &dim, err));
    if (dim != E)
        return hl_fail(err, HELIOS_ERR_SHAPE,
                       "generate: the text encoder's width %d is not the transformer's text_dim %d",
                       dim, E);
    *L = max_len;
    if (!(*out = malloc((size_t)max_len * E * sizeof(float))))
        return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    return hl_text_encode(ctx, p->te, prompt ? prompt : "", max_len, *out);
}

static hl_cond_config cond_config(const helios_pipeline *p, int h, int w) {
    hl_cond_config c;
    hl_cond_config_default(&c);
    c.C = p->vae->cfg.z_dim, c.H = h, c.W = w;
    c.latents_mean = p->vae->cfg.latents_mean, c.latents_std = p->vae->cfg.latents_std;
    return c;
}

/* V2V windows whose latents reach the first chunk: the newest ones filling the history. */
static int v2v_windows(const hl_loop_config *c) {
    int total = c->history_sizes[0] + c->history_sizes[1] + c->history_sizes[2];
    return (total + c->latent_frames - 1) / c->latent_frames;
}

int helios_gen_video_tail(const helios_pipeline *p, const helios_gen_params *g) {
    if (!p || !g) return 0;
    hl_loop_config c;
    apply_recipe(p, g, &c);
    if (c.latent_frames < 1 || c.latent_frames > (1 << 20)) return 0;
    return v2v_windows(&c) * ((c.latent_frames - 1) * VAE_TEMPORAL + 1);
}

/* I2V / V2V: encode the input as the reference does, then the pipeline's noising; fills hist
 * and advances g as the reference generator does. */
static hl_status prepare_input(helios_pipeline *p, const hl_ctx *ctx, const helios_gen_params *gp,
                               const hl_loop_config *c, hl_rng *g, hl_history *hist) {
    hl_error *err = ctx->err;
    if (!p->vae)
        return hl_fail(err, HELIOS_ERR_MISSING,
                       "generate: image/video input needs the model's vae/");
    hl_cond_config cc = cond_config(p, c->height, c->width);
    hl_cond_moments m;
    hl_status st = hl_condition_encode(ctx, p->vae, gp->image, gp->image ? NULL : gp->video,
                                       gp->video_frames, gp->image ? 0 : gp->video_skipped,
                                       v2v_windows(c), gp->height, gp->width, c->latent_frames, &m);
    if (st != HL_OK) hl_error_prefix(err, "generate");
    if (st == HL_OK && gp->image)
        st = hl_prepare_i2v(&cc, g, m.m[0], m.m[1], c->latent_frames, hist, NULL, err);
    if (st == HL_OK && !gp->image)
        st = hl_prepare_v2v(&cc, g, m.m[0], (const float *const *)(m.m + 1), m.n - 1,
                            c->latent_frames, hist, NULL, err);
    hl_cond_moments_free(&m);
    return st;
}

/* The components this request needs, before anything is encoded: without a VAE a request for
 * frames used to denoise a whole chunk and then hand over none. */
static hl_status check_components(const helios_pipeline *p, const helios_gen_params *g,
                                  hl_error *err) {
    if (!p->vae && g->decode)
        return hl_fail(err, HELIOS_ERR_MISSING,
                       "generate: decoding frames needs the model's vae/, which this "
                       "folder does not have; ask for latents only (decode = 0)");
    if (!p->vae && (g->image || g->video))
        return hl_fail(err, HELIOS_ERR_MISSING,
                       "generate: image/video input needs the model's vae/");
    if (!p->te && !g->prompt_embeds)
        return hl_fail(err, HELIOS_ERR_MISSING,
                       "generate: the model folder has no text_encoder/; pass embeddings");
    return HL_OK;
}

/* Refuses a generation whose estimated peak (api/memory.h) exceeds what the process may use,
 * before anything is allocated: oneDNN does not survive a failed allocation inside its
 * primitive creation (a segfault under ulimit -v). */
static hl_status admit_memory(helios_pipeline *p, const helios_gen_params *g,
                              const hl_loop_config *c, const helios_gen *gen, hl_error *err) {
    const hl_umt5_config *te = NULL;
    if (p->te && !g->prompt_embeds) { /* maps the encoder now, so that it is counted as in use */
        HL_TRY(hl_text_encoder_load(p->te, err));
        te = &p->te->cfg;
    }
    hl_mem_gen mg = {.dit = p->dit,
                     .vae = p->vae,
                     .umt5 = te,
                     .latent_frames = gen->F,
                     .lat_h = gen->h,
                     .lat_w = gen->w,
                     .n_stages = gen->n_stages,
                     .n_cond = gen->guidance ? 2 : 1,
                     .text_len = g->prompt_embeds ? g->text_len : gen->max_len,
                     .max_len = gen->max_len,
                     .decode = gen->decode,
                     .conditioned = g->image || g->video};
    mg.history_frames = c->history_sizes[0] + c->history_sizes[1] + c->history_sizes[2];
    hl_mem_need need;
    hl_mem_estimate(&mg, &need);
    return hl_mem_admit(&need, err);
}

/* A value outside [lo, hi]: the field, the value and the range, in the caller's terms. */
static hl_status range_fail(hl_error *err, const char *field, long long v, long long lo,
                            long long hi, const char *note) {
    return hl_fail(err, HELIOS_ERR_INVALID_ARG, "generate: %s %lld out of range (%lld..%lld%s)",
                   field, v, lo, hi, note);
}

/* Every helios_gen_params field checked against helios.h's limits before anything is
 * allocated: an impossible value is an error naming the field, never a silent default, an
 * overflowing count or an allocation of gigabytes. Sizes are checked in pixels against the
 * loaded folder's rule (VAE x patch x pyramid), so the message speaks the caller's units. */
static hl_status check_gen_params(const helios_pipeline *p, const helios_gen_params *g,
                                  hl_error *err) {
    if ((unsigned)g->sampler > HELIOS_SAMPLER_DMD)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "generate: unknown sampler %d",
                       (int)g->sampler);
    /* DMD's schedule is the pyramid's (stage ranges, amplified first chunk): the Base recipe's
     * single-stage loop would hand it sigmas it cannot take, and fail only at the first step */
    if (g->sampler == HELIOS_SAMPLER_DMD && !p->pyramid)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "generate: the DMD sampler needs a pyramid model (Mid or Distilled); this "
                       "folder is the Base recipe (HeliosPipeline): use unipc or euler");
    if (g->width < 1 || g->width > HELIOS_MAX_SIDE)
        return range_fail(err, "width", g->width, 1, HELIOS_MAX_SIDE, " pixels");
    if (g->height < 1 || g->height > HELIOS_MAX_SIDE)
        return range_fail(err, "height", g->height, 1, HELIOS_MAX_SIDE, " pixels");
    if (g->num_frames < 0 || g->num_frames > HELIOS_MAX_FRAMES)
        return range_fail(err, "num_frames", g->num_frames, 0, HELIOS_MAX_FRAMES,
                          "; 0 = num_chunks decides");
    if (g->num_chunks > HELIOS_MAX_CHUNKS)
        return range_fail(err, "num_chunks", g->num_chunks, 1, HELIOS_MAX_CHUNKS,
                          "; 0 = from num_frames, < 0 = unbounded");
    if (g->latent_frames_per_chunk < 0 ||
        g->latent_frames_per_chunk > HELIOS_MAX_LATENT_FRAMES_PER_CHUNK)
        return range_fail(err, "latent_frames_per_chunk", g->latent_frames_per_chunk, 0,
                          HELIOS_MAX_LATENT_FRAMES_PER_CHUNK, "; 0 = the recipe's");
    if (g->steps < 0 || g->steps > HELIOS_MAX_STEPS)
        return range_fail(err, "steps", g->steps, 0, HELIOS_MAX_STEPS, "; 0 = the recipe's");
    for (int i = 0; i < 3; i++)
        if (g->pyramid_steps[i] < 0 || g->pyramid_steps[i] > HELIOS_MAX_STEPS) {
            char field[32];
            snprintf(field, sizeof field, "pyramid_steps[%d]", i);
            return range_fail(err, field, g->pyramid_steps[i], 0, HELIOS_MAX_STEPS,
                              "; 0 = the recipe's");
        }
    for (int i = p->pyramid ? p->sched.stages : 3; i < 3; i++)
        if (g->pyramid_steps[i] > 0)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "generate: pyramid_steps[%d] = %d, but the model's scheduler has %d "
                           "pyramid stages",
                           i, g->pyramid_steps[i], p->sched.stages);
    if (g->max_sequence_length < 0 || g->max_sequence_length > HELIOS_MAX_SEQUENCE_LENGTH)
        return range_fail(err, "max_sequence_length", g->max_sequence_length, 0,
                          HELIOS_MAX_SEQUENCE_LENGTH, "; 0 = the model's");
    if (g->prompt_embeds && (g->text_len < 1 || g->text_len > HELIOS_MAX_SEQUENCE_LENGTH))
        return range_fail(err, "text_len", g->text_len, 1, HELIOS_MAX_SEQUENCE_LENGTH,
                          " with prompt_embeds");
    /* NaN compares false with everything: it would silently take the recipe default */
    if (!isfinite(g->guidance_scale) || g->guidance_scale > HELIOS_MAX_GUIDANCE)
        return hl_fail(
            err, HELIOS_ERR_INVALID_ARG,
            "generate: guidance_scale %g out of range (finite, at most %g; < 0 = the recipe's)",
            (double)g->guidance_scale, (double)HELIOS_MAX_GUIDANCE);
    if (g->image && g->video)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "generate: give an image or a video, not both");
    if (g->video && (g->video_frames < 1 || g->video_frames > HELIOS_MAX_FRAMES))
        return range_fail(err, "video_frames", g->video_frames, 1, HELIOS_MAX_FRAMES,
                          " with a video");
    /* The size rule of this folder: the latent (1/8) must split into patches at every pyramid
     * stage (each halves it). */
    const hl_dit_config *dc = &p->dit->cfg;
    bool dmd = g->sampler == HELIOS_SAMPLER_DMD ||
               (g->sampler == HELIOS_SAMPLER_DEFAULT && p->sched.kind == HL_SCHED_DMD);
    int stages = p->pyramid ? p->sched.stages : 1;
    if (stages < 1 || stages > HL_SCHED_MAX_STAGES) stages = 1; /* hl_loop_new reports it */
    int patch = dc->patch[1] > dc->patch[2] ? dc->patch[1] : dc->patch[2];
    long long mult = (long long)VAE_SPATIAL * (patch > 0 ? patch : 1) << (stages - 1);
    const char *recipe = helios_recipe_defaults_get(hl_recipe_for(p->pyramid, dmd))->name;
    if (g->width % mult || g->height % mult)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "generate: %s %d must be a multiple of %lld for the %s recipe (8 for the "
                       "VAE x %d for the "
                       "patch x %d for %d pyramid stage%s)",
                       g->width % mult ? "width" : "height", g->width % mult ? g->width : g->height,
                       mult, recipe, patch, 1 << (stages - 1), stages, stages == 1 ? "" : "s");
    return HL_OK;
}

helios_status helios_gen_new(helios_pipeline *p, const helios_gen_params *g, helios_gen **out) {
    if (!out) return HELIOS_ERR_INVALID_ARG;
    *out = NULL;
    if (!p) return HELIOS_ERR_INVALID_ARG;
    hl_error *err = &p->s->err; /* no generation yet: failures go to the session */
    hl_error_clear(err);
    if (!g) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "generate: NULL parameters");
    HL_TRY(check_gen_params(p, g, err));
    HL_TRY(check_components(p, g, err));
    hl_loop_config c;
    apply_recipe(p, g, &c);
    helios_gen *gen = calloc(1, sizeof *gen);
    if (!gen) return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    gen->p = p;
    gen->ctx = p->s->ctx; /* reports to the session until the generation exists */
    gen->F = c.latent_frames, gen->h = c.height, gen->w = c.width;
    gen->n_stages = c.n_stages;
    gen->max_len = g->max_sequence_length > 0 ? g->max_sequence_length : p->max_len;
    /* In int64: the parameters are bounded above, but the sums must not be done in int (a
     * num_frames near INT_MAX once overflowed here and streamed forever). */
    int frames_per_chunk = (c.latent_frames - 1) * VAE_TEMPORAL + 1;
    int64_t chunks = g->num_chunks != 0
                         ? g->num_chunks
                         : ((int64_t)g->num_frames + frames_per_chunk - 1) / frames_per_chunk;
    gen->n_chunks = (int)(chunks == 0 ? 1 : chunks);
    gen->guidance = c.guidance_scale > 1.0 && c.sched.kind != HL_SCHED_DMD;
    gen->decode = g->decode && p->vae;
    int64_t n_out = gen->n_chunks > 0 ? (int64_t)gen->n_chunks * frames_per_chunk : 0;
    gen->total_frames = n_out > 0 ? (int)(((n_out - 1) / 4) * 4 + 1)
                                  : 0; /* trim as the reference */
    if (admit_memory(p, g, &c, gen, err) != HL_OK) {
        helios_gen_free(gen);
        return err->status;
    }
    if (gen->decode && !(gen->frames = malloc((size_t)3 * frames_per_chunk * g->height * g->width *
                                              sizeof(float)))) {
        helios_gen_free(gen);
        return hl_fail(err, HELIOS_ERR_OOM, "generate: out of memory for a decoded chunk");
    }
    gen->governed = hl_backend_threads(p->s->ctx.backend) == 0 && !omp_in_parallel();
    if (gen->governed) hl_governor_start(&gen->gov, hl_get_threads());
    govern_begin(gen);
    float *text = NULL, *neg = NULL;
    int L = 0, Ln = 0;
    double t0 = hl_time();
    hl_status st = prompt_embeddings(p, &gen->ctx, g->prompt, g->prompt_embeds, g->text_len,
                                     gen->max_len, &text, &L);
    if (st == HL_OK && gen->guidance)
        st = prompt_embeddings(p, &gen->ctx, g->negative_prompt, g->negative_prompt_embeds,
                               g->text_len, gen->max_len, &neg, &Ln);
    gen->times.text_s += hl_time() - t0;
    gen->times.prompts += 1 + gen->guidance;
    if (st == HL_OK && gen->guidance && Ln != L)
        st = hl_fail(err, HELIOS_ERR_SHAPE, "generate: prompt and negative prompt lengths differ");
    if (p->low_memory && p->te) hl_text_encoder_release(p->te); /* before the transformer runs */
    gen->L = L;
    hl_rng rng;
    hl_rng_seed(&rng, c.seed);
    hl_history hist = {0};
    bool conditioned = g->image || g->video;
    if (st == HL_OK && conditioned)
        st = hl_history_init(&hist, 1, p->dit->cfg.in_channels, c.height, c.width, c.history_sizes,
                             err);
    if (st == HL_OK && conditioned) st = prepare_input(p, &gen->ctx, g, &c, &rng, &hist);
    if (st == HL_OK)
        st = hl_loop_new(&gen->ctx, p->dit, &c, text, neg, L, conditioned ? &hist : NULL, &rng,
                         &gen->loop);
    hl_history_free(&hist);
    free(text), free(neg);
    govern_end(gen);
    if (st != HL_OK) {
        helios_gen_free(gen);
        return st;
    }
    gen->ctx.err = &gen->err; /* from now on the generation keeps its own error */
    *out = gen;
    return HL_OK;
}

/* The chunk's latents -> (3, 33, H, W) frames with a fresh VAE cache (spec §2.5 step 7); the
 * last chunk of a bounded video is trimmed so the video has 4k + 1 frames. */
static hl_status decode_chunk(helios_gen *g, const float *latents, helios_gen_progress *pr) {
    helios_pipeline *p = g->p;
    const hl_vae_config *vc = &p->vae->cfg;
    size_t n = (size_t)vc->z_dim * g->F * g->h * g->w;
    float *z = malloc(n * sizeof *z);
    if (!z) return hl_fail(&g->err, HELIOS_ERR_OOM, "out of memory");
    memcpy(z, latents, n * sizeof *z);
    hl_status st = hl_vae_denormalize_latents(vc, 1, (int64_t)g->F * g->h * g->w, z, &g->err);
    hl_vae_stream *vs = NULL;
    if (st == HL_OK) st = hl_vae_decode_begin(&g->ctx, p->vae, g->h, g->w, 1, &vs);
    if (st == HL_OK) st = hl_vae_decode_chunk(vs, g->F, z, g->frames);
    int64_t per = hl_vae_decoded_frames(vc, g->F);
    hl_vae_decode_end(vs);
    free(z);
    HL_TRY(st);
    pr->frames = g->frames;
    pr->chunk_frames = pr->n_frames = (int)per;
    if (pr->finished && g->total_frames > 0) { /* frames of the last chunk that survive the trim */
        int64_t before = (int64_t)(g->chunks_done - 1) * per;
        pr->n_frames = (int)(g->total_frames - before);
    }
    return HL_OK;
}

static hl_status gen_step(helios_gen *g, helios_gen_progress *pr) {
    memset(pr, 0, sizeof *pr);
    hl_error_clear(&g->err);
    if (g->n_chunks > 0 && g->chunks_done >= g->n_chunks) {
        pr->finished = 1;
        return HELIOS_OK;
    }
    hl_loop_event ev;
    double t0 = hl_time();
    hl_status st = hl_loop_step(g->loop, &ev);
    double t1 = hl_time();
    g->times.transformer_s += ev.dit_seconds;
    g->times.sampler_s += t1 - t0 - ev.dit_seconds;
    g->times.transformer_calls += ev.calls;
    g->times.steps++;
    HL_TRY(st);
    pr->chunk = ev.chunk, pr->n_chunks = g->n_chunks;
    pr->stage = ev.stage, pr->n_stages = g->n_stages, pr->step = ev.step,
    pr->n_steps = ev.stage_steps;
    pr->latent_frames = g->F, pr->latent_height = g->h, pr->latent_width = g->w;
    if (ev.chunk_done) {
        pr->chunk_done = 1;
        pr->latents = ev.latents;
        g->chunks_done++;
        pr->finished = g->n_chunks > 0 && g->chunks_done >= g->n_chunks;
        if (g->decode) {
            st = decode_chunk(g, ev.latents, pr);
            g->times.decode_s += hl_time() - t1;
            g->times.decodes++;
            HL_TRY(st);
        }
    }
    return HELIOS_OK;
}

helios_status helios_gen_step(helios_gen *g, helios_gen_progress *pr) {
    govern_begin(g);
    hl_status st = gen_step(g, pr);
    govern_end(g);
    return st;
}

static hl_status gen_prompt_set(helios_gen *g, const char *prompt, const char *negative_prompt,
                                int chunks) {
    helios_pipeline *p = g->p;
    hl_error_clear(&g->err);
    if (chunks < 0 || chunks > HELIOS_MAX_CHUNKS)
        return hl_fail(&g->err, HELIOS_ERR_INVALID_ARG,
                       "set_prompt: interpolation over %d chunks out of range (0..%d)", chunks,
                       HELIOS_MAX_CHUNKS);
    float *text = NULL, *neg = NULL;
    int L = 0, Ln = 0;
    double t0 = hl_time();
    hl_status st = prompt_embeddings(p, &g->ctx, prompt, NULL, 0, g->max_len, &text, &L);
    if (st == HL_OK && g->guidance)
        st = prompt_embeddings(p, &g->ctx, negative_prompt, NULL, 0, g->max_len, &neg, &Ln);
    g->times.text_s += hl_time() - t0;
    g->times.prompts += 1 + g->guidance;
    if (st == HL_OK && L != g->L)
        st = hl_fail(&g->err, HELIOS_ERR_SHAPE,
                     "set_prompt: %d text tokens, the generation uses %d", L, g->L);
    if (p->low_memory && p->te) hl_text_encoder_release(p->te);
    if (st == HL_OK) st = hl_loop_set_prompt(g->loop, text, neg, chunks);
    free(text), free(neg);
    return st;
}

helios_status helios_gen_prompt_set(helios_gen *g, const char *prompt, const char *negative_prompt,
                                    int chunks) {
    govern_begin(g);
    hl_status st = gen_prompt_set(g, prompt, negative_prompt, chunks);
    govern_end(g);
    return st;
}

helios_status helios_gen_run(helios_gen *g, helios_progress_fn on_progress, void *user) {
    hl_status st = HL_OK;
    for (helios_gen_progress pr = {0}; st == HL_OK && !pr.finished;) {
        st = helios_gen_step(g, &pr);
        if (st == HL_OK && on_progress && on_progress(&pr, user))
            st = hl_fail(&g->err, HELIOS_ERR_CANCELLED, "generate: cancelled");
    }
    return st;
}

int helios_gen_n_chunks(const helios_gen *g) { return g ? g->n_chunks : 0; }

hl_gen_times hl_gen_times_get(const helios_gen *g) { return g ? g->times : (hl_gen_times){0}; }

const char *helios_gen_error(const helios_gen *g) { return g ? g->err.msg : ""; }

void helios_gen_free(helios_gen *g) {
    if (!g) return;
    hl_loop_free(g->loop);
    free(g->frames);
    free(g);
}
