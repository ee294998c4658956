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
    hl_bf16 *shadow; /* "precision": "bf16": the weights rounded to bf16 before every step */
    /* a clip of T frames is nwin windows of Tw frames, each encoded and decoded apart (fresh
     * caches, as the pipelines do); temporal, seam: the weights of hl_vae_frame_diff on
     * consecutive frames inside the windows and across their boundaries; edges: the weight of
     * hl_vae_edge_diff on every frame */
    int Tw, nwin;
    float temporal, seam, edges;
    int64_t n_clips, n_pix, n_lat, T_lat, h, w; /* n_pix, n_lat, T_lat: one window's */
    float **clips;                              /* every clip's pixels (3, T, H, W), read once */
    /* per-step buffers, nwin windows each: xw (3, Tw, H, W) copies of the clip's windows */
    float *xw, *moments, *dmoments, *eps, *z, *dz, *recon, *drecon;
    hl_vae_tape **te, **td;
} vae_obj;

void hl_vae_objective_destroy(void *p) {
    vae_obj *o = p;
    if (!o) return;
    for (int64_t i = 0; o->clips && i < o->n_clips; i++) free(o->clips[i]);
    free(o->clips);
    free(o->xw), free(o->moments), free(o->dmoments), free(o->eps), free(o->z), free(o->dz);
    free(o->recon), free(o->drecon), free(o->te), free(o->td), free(o->shadow);
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
    if (!o->Tw && (frames - 1) % 4)
        return hl_cfg_bad(&k, "frames", "must be 1 + 4k (1, 5, 9, ...)");
    if (o->Tw && frames % o->Tw)
        return hl_cfg_bad(&k, "frames", "must be a multiple of 'objective.window'");
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
    if (!o->Tw) o->Tw = frames;
    o->nwin = frames / o->Tw;
    o->n_pix = 3 * (int64_t)o->Tw * h * w;
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
    if (st == HL_OK && o->nwin > 1)
        HL_INFO("training data: %lld clips of %s, %dx%d, %d frames (%d windows of %d)",
                (long long)o->n_clips, env->data, w, h, frames, o->nwin, o->Tw);
    else if (st == HL_OK)
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
    static const char *const known[] = {"type",      "l1",    "l2",      "kl",
                                        "posterior", "train", "window",  "temporal",
                                        "seam",      "edges", "dataset", "precision"};
    HL_TRY(hl_cfg_only(&k, known, 12));
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
    if (st == HL_OK && hl_json_get(settings, "window")) {
        st = hl_cfg_int(&k, "window", 1, 1 + 4 * 256, &o->Tw);
        if (st == HL_OK && (o->Tw - 1) % 4)
            st = hl_cfg_bad(&k, "window", "must be 1 + 4k (1, 5, 9, ...)");
    }
    double temporal = 0.0, seam = 0.0, edges = 0.0;
    if (st == HL_OK) st = hl_cfg_num(&k, "temporal", 0, 1e6, &temporal);
    if (st == HL_OK) st = hl_cfg_num(&k, "seam", 0, 1e6, &seam);
    if (st == HL_OK) st = hl_cfg_num(&k, "edges", 0, 1e6, &edges);
    o->temporal = (float)temporal, o->seam = (float)seam, o->edges = (float)edges;
    const char *precision = "f32";
    if (st == HL_OK) st = hl_cfg_str(&k, "precision", &precision);
    if (st == HL_OK && strcmp(precision, "f32") && strcmp(precision, "bf16"))
        st = hl_cfg_bad(&k, "precision", "must be \"f32\" or \"bf16\"");
    const int bf16 = st == HL_OK && !strcmp(precision, "bf16");
    if (st == HL_OK) st = read_clips(&k, env, o);
    if (st == HL_OK && o->seam > 0.0f && o->nwin < 2)
        st = hl_cfg_bad(&k, "seam",
                        "needs two windows or more: 'objective.dataset.frames' a "
                        "multiple of 'objective.window'");
    if (st == HL_OK) st = hl_vae_flat_new(env->vae, &o->f, err);
    if (st == HL_OK) st = decoder_slice(&o->f.layout, &o->dec_begin, err);
    if (st == HL_OK && bf16 && !(o->shadow = malloc((size_t)o->f.layout.total * sizeof *o->shadow)))
        st = hl_fail(err, HELIOS_ERR_OOM, "vae objective: out of memory (bf16 weights)");
    o->total = o->f.layout.total;
    if (st == HL_OK && o->f.layout.total != env->layout->total)
        st = hl_fail(err, HELIOS_ERR_INVALID_ARG, "vae objective: layout of %lld, expected %lld",
                     (long long)o->f.layout.total, (long long)env->layout->total);
    if (st == HL_OK && !(o->be = hl_backend_new(HELIOS_BACKEND_CPU, 0, err))) st = HELIOS_ERR_OOM;
    o->ctx = (hl_ctx){o->be, &o->err};
    if (st == HL_OK) {
        hl_vae_latent_shape(env->vae, o->Tw, o->H, o->W, &o->T_lat, &o->h, &o->w);
        int64_t F = hl_vae_decoded_frames(env->vae, o->T_lat);
        if (F != o->Tw)
            st = hl_fail(err, HELIOS_ERR_INVALID_ARG,
                         "%s: a window of %d frames decodes to %lld "
                         "frames with this VAE ('objective.%s')",
                         env->config_path, o->Tw, (long long)F,
                         o->nwin > 1 ? "window" : "dataset.frames");
        o->n_lat = (int64_t)env->vae->z_dim * o->T_lat * o->h * o->w;
    }
    if (st == HL_OK) {
        size_t nl = (size_t)o->n_lat * o->nwin, np = (size_t)o->n_pix * o->nwin;
        o->xw = malloc(np * sizeof(float));
        o->te = calloc((size_t)o->nwin, sizeof *o->te);
        o->td = calloc((size_t)o->nwin, sizeof *o->td);
        o->moments = malloc(2 * nl * sizeof(float));
        o->dmoments = malloc(2 * nl * sizeof(float));
        o->eps = malloc(nl * sizeof(float));
        o->z = malloc(nl * sizeof(float));
        o->dz = malloc(nl * sizeof(float));
        o->recon = malloc(np * sizeof(float));
        o->drecon = malloc(np * sizeof(float));
        if (!o->xw || !o->te || !o->td || !o->moments || !o->dmoments || !o->eps || !o->z ||
            !o->dz || !o->recon || !o->drecon)
            st = hl_fail(err, HELIOS_ERR_OOM, "vae objective: out of memory");
    }
    if (st != HL_OK) {
        hl_vae_objective_destroy(o);
        return st;
    }
    *out = o;
    return HL_OK;
}

/* Window j of the clip x (3, T, H, W) into xw (3, Tw, H, W). */
static void window_copy(const vae_obj *o, const float *x, int j, float *xw) {
    int64_t hw = (int64_t)o->H * o->W, plane = (int64_t)o->Tw * hw;
    for (int c = 0; c < 3; c++)
        memcpy(xw + c * plane, x + (c * (int64_t)o->T + (int64_t)j * o->Tw) * hw,
               (size_t)plane * sizeof *xw);
}

/* Window j: encode (with a tape unless decoder-only), z = the posterior's sample or mean, decode
 * with a tape. */
static hl_status window_forward(vae_obj *o, hl_rng *rng, int j) {
    const float *x = o->xw + j * o->n_pix;
    float *moments = o->moments + 2 * j * o->n_lat, *eps = o->eps + j * o->n_lat;
    float *z = o->z + j * o->n_lat;
    HL_TRY(o->decoder_only ? hl_vae_encode(&o->ctx, o->f.m, 1, o->Tw, o->H, o->W, x, moments)
                           : hl_vae_encode_forward_save(&o->ctx, o->f.m, o->Tw, o->H, o->W, x,
                                                        moments, &o->te[j]));
    const float *mean = moments, *logvar = moments + o->n_lat;
    hl_rng_randn_f32(rng, eps, o->n_lat); /* drawn either way: same RNG stream */
    if (o->sample) hl_vae_loss_sample(mean, logvar, eps, o->n_lat, z);
    else memcpy(z, mean, (size_t)o->n_lat * sizeof *z);
    return hl_vae_decode_forward_save_unclamped(&o->ctx, o->f.m, o->T_lat, o->h, o->w, z,
                                                o->recon + j * o->n_pix, &o->td[j]);
}

/* The loss of every window (their mean), the spatial differences of every frame, the frame
 * differences inside the windows and across their boundaries (each set's mean, weighted); drecon
 * and dmoments are written. */
static hl_status windows_loss(vae_obj *o, double *loss, hl_error *err) {
    double sum = 0.0, scale = 1.0 / o->nwin;
    int64_t nl = o->n_lat, np = o->n_pix;
    for (int j = 0; j < o->nwin; j++) {
        const float *mean = o->moments + 2 * j * nl, *logvar = mean + nl;
        float *dmean = o->dmoments + 2 * j * nl, *dlogvar = dmean + nl, *dr = o->drecon + j * np;
        hl_vae_loss_value v;
        HL_TRY(hl_vae_loss(&o->lp, 1, o->recon + j * np, o->xw + j * np, np, mean, logvar, nl, &v,
                           dr, dmean, dlogvar, err));
        sum += v.loss;
        if (o->nwin == 1) continue; /* one window: the loss as it always was, bit for bit */
        for (int64_t i = 0; i < np; i++) dr[i] = (float)(dr[i] * scale);
        for (int64_t i = 0; i < 2 * nl; i++) dmean[i] = (float)(dmean[i] * scale);
    }
    *loss = sum * scale;
    int64_t hw = (int64_t)o->H * o->W, plane = (int64_t)o->Tw * hw;
    /* spatial differences of every frame of every window (windows alike: the mean of means) */
    if (o->edges > 0.0f) {
        int64_t frames = 3 * (int64_t)o->Tw * o->nwin; /* planes of H x W */
        *loss += o->edges *
                 hl_vae_edge_diff(o->edges, frames, o->H, o->W, o->recon, o->xw, o->drecon);
    }
    /* consecutive frames inside every window: frame t - 1 against frame t */
    if (o->temporal > 0.0f && o->Tw > 1) {
        float w = o->temporal / (float)((int64_t)o->nwin * (o->Tw - 1));
        for (int j = 0; j < o->nwin; j++)
            for (int t = 1; t < o->Tw; t++) {
                int64_t a = j * np + (t - 1) * hw, b = a + hw;
                *loss += w * hl_vae_frame_diff(w, 3, hw, plane, o->recon + a, o->xw + a,
                                               o->recon + b, o->xw + b, o->drecon + a,
                                               o->drecon + b);
            }
    }
    /* boundary j: the last frame of window j against the first of window j + 1 */
    if (o->seam > 0.0f) {
        float w = o->seam / (float)(o->nwin - 1);
        for (int j = 0; j + 1 < o->nwin; j++) {
            int64_t a = j * np + (o->Tw - 1) * hw, b = (j + 1) * np;
            *loss += w * hl_vae_frame_diff(w, 3, hw, plane, o->recon + a, o->xw + a, o->recon + b,
                                           o->xw + b, o->drecon + a, o->drecon + b);
        }
    }
    return HL_OK;
}

/* Window j backward: decode, the posterior, encode (unless decoder-only). */
static hl_status window_backward(vae_obj *o, int j) {
    int64_t nl = o->n_lat;
    float *dz = o->dz + j * nl, *dmean = o->dmoments + 2 * j * nl, *dlogvar = dmean + nl;
    const float *logvar = o->moments + 2 * j * nl + nl;
    HL_TRY(hl_vae_decode_backward(o->td[j], o->drecon + j * o->n_pix, dz, o->f.grads));
    if (o->decoder_only) return HL_OK;
    if (o->sample) hl_vae_loss_sample_backward(logvar, o->eps + j * nl, dz, nl, dmean, dlogvar);
    else
        for (int64_t i = 0; i < nl; i++) dmean[i] += dz[i];
    return hl_vae_encode_backward(o->te[j], dmean, NULL, o->f.grads);
}

hl_status hl_vae_objective_step(void *p, hl_rng *rng, int64_t sample_index, const float *params,
                                float *grads, double *loss, hl_error *err) {
    vae_obj *o = p;
    if (o->shadow) /* the weights changed since the last step: round them again */
        hl_params_to_bf16(&o->f.layout, params, o->shadow);
    if (o->f.bound_w != params || o->f.bound_g != grads || o->f.bound_w16 != o->shadow)
        HL_TRY(hl_vae_flat_bind_bf16(&o->f, params, o->shadow, grads, err));
    const float *x = o->clips[sample_index % o->n_clips];
    o->err = (hl_error){0};
    hl_status st = HL_OK;
    for (int j = 0; st == HL_OK && j < o->nwin; j++) {
        window_copy(o, x, j, o->xw + j * o->n_pix);
        st = window_forward(o, rng, j);
    }
    double l = 0.0;
    if (st == HL_OK) st = windows_loss(o, &l, err);
    for (int j = 0; st == HL_OK && j < o->nwin; j++) st = window_backward(o, j);
    for (int j = 0; j < o->nwin; j++) {
        hl_vae_tape_free(o->td[j]);
        hl_vae_tape_free(o->te[j]);
        o->td[j] = o->te[j] = NULL;
    }
    if (st != HL_OK) {
        if (o->err.msg[0] && err) *err = o->err;
        else if (err && !err->msg[0]) hl_fail(err, st, "vae objective: step failed");
        return st;
    }
    *loss = l;
    return HL_OK;
}

/* Latent positions of one clip: T_lat x h x w (the encoder's output grid) per window. */
double hl_vae_objective_tokens(void *p) {
    const vae_obj *o = p;
    return (double)o->nwin * (double)o->T_lat * (double)o->h * (double)o->w;
}

void hl_vae_objective_trained(void *p, int64_t *begin, int64_t *end) {
    const vae_obj *o = p;
    *begin = o->decoder_only ? o->dec_begin : 0;
    *end = o->decoder_only ? o->total : 0;
}
