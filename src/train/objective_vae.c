/* The "vae" objective (train/objective.h): reconstruction + KL of the Wan VAE on pixel clips. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "train/cfg_keys.h"
#include "train/dataset.h"
#include "train/objective.h"
#include "train/vae_flat.h"
#include "train/vae_loss.h"

typedef struct vae_obj {
    hl_vae_flat f;
    hl_vae_loss_params lp;
    hl_backend *be;
    hl_error err;
    hl_ctx ctx;
    int T, H, W;
    int sample; /* 1: decode mean + std·eps (the VAE's sample), 0: decode the mean (its mode) */
    /* "train": "decoder": parameters [dec_begin, total) (post_quant_conv, decoder) are trained;
     * the encoder's forward runs without a tape and its backward not at all */
    int decoder_only;
    int64_t dec_begin, total;
    int64_t n_clips, n_pix, n_lat, T_lat, h, w;
    float **clips; /* every clip's pixels (3, T, H, W), read once */
    /* per-step buffers */
    float *moments, *dmoments, *eps, *z, *dz, *recon, *drecon;
} vae_obj;

void hl_vae_objective_destroy(void *p) {
    vae_obj *o = p;
    if (!o) return;
    for (int64_t i = 0; o->clips && i < o->n_clips; i++) free(o->clips[i]);
    free(o->clips);
    free(o->moments), free(o->dmoments), free(o->eps), free(o->z), free(o->dz);
    free(o->recon), free(o->drecon);
    hl_vae_flat_free(&o->f);
    hl_backend_free(o->be);
    free(o);
}

/* "dataset": {width, height, frames, clips, seed}; the clips are made (or decoded) once. */
static hl_status read_clips(const hl_cfg_keys *parent, const hl_train_env *env, vae_obj *o) {
    hl_cfg_keys k = {hl_json_get(parent->s, "dataset"), parent->file, "objective.dataset",
                     parent->err};
    int w = 32, h = 32, frames = 5, clips = 8, seed = 0;
    if (k.s) {
        if (k.s->type != HL_JSON_OBJECT) return hl_cfg_bad(parent, "dataset", "must be an object");
        static const char *const known[] = {"width", "height", "frames", "clips", "seed"};
        HL_TRY(hl_cfg_only(&k, known, 5));
        HL_TRY(hl_cfg_int(&k, "width", 16, 4096, &w));
        HL_TRY(hl_cfg_int(&k, "height", 16, 4096, &h));
        HL_TRY(hl_cfg_int(&k, "frames", 1, 1 + 4 * 256, &frames));
        HL_TRY(hl_cfg_int(&k, "clips", 1, 1 << 16, &clips));
        HL_TRY(hl_cfg_int(&k, "seed", 0, 2147483647, &seed));
    }
    if (w % 8 || h % 8) return hl_cfg_bad(&k, "width", "width and height must be multiples of 8");
    if ((frames - 1) % 4) return hl_cfg_bad(&k, "frames", "must be 1 + 4k (1, 5, 9, ...)");
    if (!strcmp(env->data, "synthetic"))
        return hl_fail(parent->err, HELIOS_ERR_INVALID_ARG,
                       "%s: 'data' \"synthetic\" has no pixels; the vae objective needs "
                       "\"procedural\" or a folder of videos",
                       parent->file);
    hl_dataset_config dc;
    hl_dataset_config_default(&dc);
    hl_dataset_config_set_source(&dc, strcmp(env->data, "procedural") ? env->data : "world");
    dc.width = w, dc.height = h, dc.frames = frames, dc.n_clips = clips, dc.seed = (uint64_t)seed;
    hl_dataset *ds;
    HL_TRY(hl_dataset_open(&dc, &ds, parent->err));
    o->n_clips = hl_dataset_count(ds);
    o->T = frames, o->H = h, o->W = w;
    o->n_pix = 3 * (int64_t)frames * h * w;
    hl_status st = HL_OK;
    if (!(o->clips = calloc((size_t)o->n_clips + 1, sizeof *o->clips)))
        st = hl_fail(parent->err, HELIOS_ERR_OOM, "vae objective: out of memory");
    for (int64_t i = 0; st == HL_OK && i < o->n_clips; i++) {
        hl_clip c;
        if ((st = hl_dataset_get(ds, i, &c, parent->err)) != HL_OK) break;
        o->clips[i] = c.pixels; /* taken over */
        c.pixels = NULL;
        hl_clip_free(&c);
    }
    hl_dataset_free(ds);
    if (st == HL_OK)
        HL_INFO("training data: %lld clips of %s, %dx%d, %d frames", (long long)o->n_clips,
                env->data, w, h, frames);
    return st;
}

static int encoder_side(const char *name) {
    return !strncmp(name, "encoder.", 8) || !strncmp(name, "quant_conv.", 11);
}

/* The layout lists the encoder side (encoder.*, quant_conv.*) before the decoder side
 * (post_quant_conv.*, decoder.*): *begin = the decoder side's first float. */
static hl_status decoder_slice(const hl_params *l, int64_t *begin, hl_error *err) {
    size_t i = 0;
    while (i < l->n && encoder_side(l->p[i].name)) i++;
    *begin = i < l->n ? l->p[i].offset : l->total;
    for (size_t j = i; j < l->n; j++)
        if (encoder_side(l->p[j].name))
            return hl_fail(err, HELIOS_ERR_INTERNAL, "vae objective: '%s' after the decoder's '%s'",
                           l->p[j].name, l->p[i].name);
    return HL_OK;
}

hl_status hl_vae_objective_create(const hl_json *settings, const hl_train_env *env, void **out,
                                  hl_error *err) {
    *out = NULL;
    hl_cfg_keys k = {settings, env->config_path, "objective", err};
    static const char *const known[] = {"type", "l1", "l2", "kl", "posterior", "train", "dataset"};
    HL_TRY(hl_cfg_only(&k, known, 7));
    if (!env->vae)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "%s: objective \"vae\" trains the VAE: set \"component\": \"vae\"",
                       env->config_path);
    vae_obj *o = calloc(1, sizeof *o);
    if (!o) return hl_fail(err, HELIOS_ERR_OOM, "vae objective: out of memory");
    hl_vae_loss_params_default(&o->lp);
    double l1 = o->lp.w_l1, l2 = o->lp.w_l2, kl = o->lp.w_kl;
    hl_status st = hl_cfg_num(&k, "l1", 0, 1e6, &l1);
    if (st == HL_OK) st = hl_cfg_num(&k, "l2", 0, 1e6, &l2);
    if (st == HL_OK) st = hl_cfg_num(&k, "kl", 0, 1e6, &kl);
    o->lp.w_l1 = (float)l1, o->lp.w_l2 = (float)l2, o->lp.w_kl = (float)kl;
    const char *post = "sample";
    if (st == HL_OK) st = hl_cfg_str(&k, "posterior", &post);
    if (st == HL_OK && strcmp(post, "sample") && strcmp(post, "mode"))
        st = hl_cfg_bad(&k, "posterior", "must be \"sample\" or \"mode\"");
    o->sample = !strcmp(post, "sample");
    const char *part = "all";
    if (st == HL_OK) st = hl_cfg_str(&k, "train", &part);
    if (st == HL_OK && strcmp(part, "all") && strcmp(part, "decoder"))
        st = hl_cfg_bad(&k, "train", "must be \"all\" or \"decoder\"");
    o->decoder_only = !strcmp(part, "decoder");
    if (st == HL_OK) st = read_clips(&k, env, o);
    if (st == HL_OK) st = hl_vae_flat_new(env->vae, &o->f, err);
    if (st == HL_OK) st = decoder_slice(&o->f.layout, &o->dec_begin, err);
    o->total = o->f.layout.total;
    if (st == HL_OK && o->f.layout.total != env->layout->total)
        st = hl_fail(err, HELIOS_ERR_INVALID_ARG, "vae objective: layout of %lld, expected %lld",
                     (long long)o->f.layout.total, (long long)env->layout->total);
    if (st == HL_OK && !(o->be = hl_backend_new(HELIOS_BACKEND_CPU, 0, err))) st = HELIOS_ERR_OOM;
    o->ctx = (hl_ctx){o->be, &o->err};
    if (st == HL_OK) {
        hl_vae_latent_shape(env->vae, o->T, o->H, o->W, &o->T_lat, &o->h, &o->w);
        int64_t F = hl_vae_decoded_frames(env->vae, o->T_lat);
        if (F != o->T)
            st = hl_fail(err, HELIOS_ERR_INVALID_ARG,
                         "%s: 'objective.dataset.frames' %d decodes to %lld frames with this VAE",
                         env->config_path, o->T, (long long)F);
        o->n_lat = (int64_t)env->vae->z_dim * o->T_lat * o->h * o->w;
    }
    if (st == HL_OK) {
        size_t nl = (size_t)o->n_lat, np = (size_t)o->n_pix;
        o->moments = malloc(2 * nl * sizeof(float));
        o->dmoments = malloc(2 * nl * sizeof(float));
        o->eps = malloc(nl * sizeof(float));
        o->z = malloc(nl * sizeof(float));
        o->dz = malloc(nl * sizeof(float));
        o->recon = malloc(np * sizeof(float));
        o->drecon = malloc(np * sizeof(float));
        if (!o->moments || !o->dmoments || !o->eps || !o->z || !o->dz || !o->recon || !o->drecon)
            st = hl_fail(err, HELIOS_ERR_OOM, "vae objective: out of memory");
    }
    if (st != HL_OK) {
        hl_vae_objective_destroy(o);
        return st;
    }
    *out = o;
    return HL_OK;
}

hl_status hl_vae_objective_step(void *p, hl_rng *rng, int64_t sample_index, const float *params,
                                float *grads, double *loss, hl_error *err) {
    vae_obj *o = p;
    if (o->f.bound_w != params || o->f.bound_g != grads)
        HL_TRY(hl_vae_flat_bind(&o->f, params, grads, err));
    const float *x = o->clips[sample_index % o->n_clips];
    o->err = (hl_error){0};
    hl_vae_tape *te = NULL, *td = NULL;
    hl_status st = o->decoder_only
                       ? hl_vae_encode(&o->ctx, o->f.m, 1, o->T, o->H, o->W, x, o->moments)
                       : hl_vae_encode_forward_save(&o->ctx, o->f.m, o->T, o->H, o->W, x,
                                                    o->moments, &te);
    const float *mean = o->moments, *logvar = o->moments + o->n_lat;
    if (st == HL_OK) {
        hl_rng_randn_f32(rng, o->eps, o->n_lat); /* drawn either way: same RNG stream */
        if (o->sample) hl_vae_loss_sample(mean, logvar, o->eps, o->n_lat, o->z);
        else memcpy(o->z, mean, (size_t)o->n_lat * sizeof *o->z);
        st = hl_vae_decode_forward_save_unclamped(&o->ctx, o->f.m, o->T_lat, o->h, o->w, o->z,
                                                  o->recon, &td);
    }
    hl_vae_loss_value v;
    float *dmean = o->dmoments, *dlogvar = o->dmoments + o->n_lat;
    if (st == HL_OK)
        st = hl_vae_loss(&o->lp, 1, o->recon, x, o->n_pix, mean, logvar, o->n_lat, &v, o->drecon,
                         dmean, dlogvar, err);
    if (st == HL_OK) st = hl_vae_decode_backward(td, o->drecon, o->dz, o->f.grads);
    if (st == HL_OK && !o->decoder_only) {
        if (o->sample) hl_vae_loss_sample_backward(logvar, o->eps, o->dz, o->n_lat, dmean, dlogvar);
        else
            for (int64_t i = 0; i < o->n_lat; i++) dmean[i] += o->dz[i];
        st = hl_vae_encode_backward(te, o->dmoments, NULL, o->f.grads);
    }
    hl_vae_tape_free(td);
    hl_vae_tape_free(te);
    if (st != HL_OK) {
        if (o->err.msg[0] && err) *err = o->err;
        else if (err && !err->msg[0]) hl_fail(err, st, "vae objective: step failed");
        return st;
    }
    *loss = v.loss;
    return HL_OK;
}

/* Latent positions of one clip: T_lat x h x w (the encoder's output grid). */
double hl_vae_objective_tokens(void *p) {
    const vae_obj *o = p;
    return (double)o->T_lat * (double)o->h * (double)o->w;
}

void hl_vae_objective_trained(void *p, int64_t *begin, int64_t *end) {
    const vae_obj *o = p;
    *begin = o->decoder_only ? o->dec_begin : 0;
    *end = o->decoder_only ? o->total : 0;
}
