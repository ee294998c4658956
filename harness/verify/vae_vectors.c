/* `helios verify` for the VAE: every check of an oracle directory's vae_case.safetensors (README
 * §5), with the sizes read from vae_config.json and the tensors, on the cpu backend. Decodes
 * start from the reference's own means, so an encoder error does not leak into a decode check. */
#include "verify/vae_vectors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "vae/vae.h"

typedef struct verifier {
    const hl_ctx *ctx;
    hl_vae *vae;
    const hl_safetensors *st;
    const char *file; /* base name, for the report */
    hl_report_fn report;
    void *user;
} verifier;

static hl_error *err_of(const verifier *vf) { return vf->ctx->err; }

/* A 5D tensor's dims (B, C, T, H, W). */
static hl_status dims5(const verifier *vf, const char *name, int64_t d[5]) {
    const hl_st_tensor *t = hl_st_find(vf->st, name);
    if (!t)
        return hl_fail(err_of(vf), HELIOS_ERR_MISSING, "%s: no tensor '%s'", vf->st->path, name);
    if (t->ndim != 5)
        return hl_fail(err_of(vf), HELIOS_ERR_SHAPE, "%s: tensor '%s' must be (B, C, T, H, W)",
                       vf->st->path, name);
    memcpy(d, t->shape, 5 * sizeof *d);
    return HL_OK;
}

/* Compares got (n floats) with tensor `ref`, reporting as case_name (NULL: the tensor's name). */
static hl_status compare(const verifier *vf, const char *ref, const char *case_name,
                         const float *got, int64_t n) {
    float *want = NULL;
    HL_TRY(hl_st_read_f32(vf->st, ref, n, &want, err_of(vf)));
    double m = 0.0, r = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
        if (fabs(want[i]) > r) r = fabs(want[i]);
    }
    free(want);
    vf->report(vf->user, vf->file, case_name ? case_name : ref, m, 1e-4 * (r > 1.0 ? r : 1.0), 0);
    return HL_OK;
}

static hl_status alloc_f32(const verifier *vf, int64_t n, float **out) {
    *out = malloc((size_t)(n > 0 ? n : 1) * sizeof **out);
    return *out ? HL_OK : hl_fail(err_of(vf), HELIOS_ERR_OOM, "VAE verify: out of memory");
}

/* encode(input) vs moments; with posterior: the mean / logvar / std tensors too. */
static hl_status check_encode(const verifier *vf, const char *input, const char *moments,
                              bool posterior) {
    int64_t d[5], T_lat, h, w;
    HL_TRY(dims5(vf, input, d));
    hl_vae_latent_shape(&vf->vae->cfg, d[2], d[3], d[4], &T_lat, &h, &w);
    int64_t Z = vf->vae->cfg.z_dim, n = d[0] * 2 * Z * T_lat * h * w;
    float *x = NULL, *m = NULL, *mean = NULL, *logvar = NULL, *std = NULL;
    hl_status st = hl_st_read_f32(vf->st, input, -1, &x, err_of(vf));
    if (st == HL_OK && d[1] != vf->vae->cfg.in_channels)
        st = hl_fail(err_of(vf), HELIOS_ERR_SHAPE, "%s: '%s' has %lld channels, the VAE takes %d",
                     vf->st->path, input, (long long)d[1], vf->vae->cfg.in_channels);
    if (st == HL_OK) st = alloc_f32(vf, n, &m);
    if (st == HL_OK) st = hl_vae_encode(vf->ctx, vf->vae, d[0], d[2], d[3], d[4], x, m);
    if (st == HL_OK) st = compare(vf, moments, NULL, m, n);
    if (st == HL_OK && posterior) {
        char f64[96];
        snprintf(f64, sizeof f64, "%s_f64", moments);
        if (hl_st_find(vf->st, f64)) st = compare(vf, f64, NULL, m, n);
        int64_t half = n / 2;
        if (st == HL_OK) st = alloc_f32(vf, half, &mean);
        if (st == HL_OK) st = alloc_f32(vf, half, &logvar);
        if (st == HL_OK) st = alloc_f32(vf, half, &std);
        if (st == HL_OK) hl_vae_posterior(d[0], Z, T_lat * h * w, m, mean, logvar, std);
        if (st == HL_OK) st = compare(vf, "posterior_mean", NULL, mean, half);
        if (st == HL_OK) st = compare(vf, "posterior_logvar", NULL, logvar, half);
        if (st == HL_OK) st = compare(vf, "posterior_std", NULL, std, half);
    }
    free(x), free(m), free(mean), free(logvar), free(std);
    return st;
}

/* The mean (B, z, T, h, w) of a moments tensor, or a latent tensor as it is. */
static hl_status read_latents(const verifier *vf, const char *name, bool is_moments, int64_t d[5],
                              float **z) {
    HL_TRY(dims5(vf, name, d));
    int64_t Z = vf->vae->cfg.z_dim;
    if (d[1] != (is_moments ? 2 * Z : Z))
        return hl_fail(err_of(vf), HELIOS_ERR_SHAPE, "%s: '%s' has %lld channels (z_dim %lld)",
                       vf->st->path, name, (long long)d[1], (long long)Z);
    float *raw = NULL;
    HL_TRY(hl_st_read_f32(vf->st, name, -1, &raw, err_of(vf)));
    if (!is_moments) {
        *z = raw;
        return HL_OK;
    }
    int64_t n = d[2] * d[3] * d[4];
    hl_status st = alloc_f32(vf, d[0] * Z * n, z);
    if (st == HL_OK) hl_vae_posterior(d[0], Z, n, raw, *z, NULL, NULL);
    free(raw);
    d[1] = Z;
    return st;
}

static int64_t video_numel(const hl_vae *v, const int64_t d[5]) {
    int64_t r = v->cfg.spatial_ratio;
    return d[0] * v->decoder.conv_out.w.shape[0] * hl_vae_decoded_frames(&v->cfg, d[2]) * d[3] * r *
           d[4] * r;
}

/* decode(latents of `input`) vs out (and out_f64 when present). */
static hl_status check_decode(const verifier *vf, const char *input, bool is_moments,
                              const char *out) {
    int64_t d[5];
    float *z = NULL, *y = NULL;
    HL_TRY(read_latents(vf, input, is_moments, d, &z));
    int64_t n = video_numel(vf->vae, d);
    hl_status st = alloc_f32(vf, n, &y);
    if (st == HL_OK) st = hl_vae_decode(vf->ctx, vf->vae, d[0], d[2], d[3], d[4], z, y);
    if (st == HL_OK) st = compare(vf, out, NULL, y, n);
    char f64[96];
    snprintf(f64, sizeof f64, "%s_f64", out);
    if (st == HL_OK && hl_st_find(vf->st, f64)) st = compare(vf, f64, NULL, y, n);
    free(z), free(y);
    return st;
}

/* The streaming API on `input`: chunks of `chunk` latent frames, `step` frames per pass; each
 * batch element is its own stream. */
static hl_status check_stream(const verifier *vf, const char *input, const char *out, int chunk,
                              int step, const char *case_name) {
    int64_t d[5];
    float *z = NULL, *y = NULL, *zc = NULL;
    HL_TRY(read_latents(vf, input, false, d, &z));
    const hl_vae *v = vf->vae;
    int64_t n = video_numel(v, d), Z = d[1], hw = d[3] * d[4], r = v->cfg.spatial_ratio;
    int64_t O = v->decoder.conv_out.w.shape[0], F = hl_vae_decoded_frames(&v->cfg, d[2]),
            HW = hw * r * r;
    hl_status st = alloc_f32(vf, n, &y);
    if (st == HL_OK) st = alloc_f32(vf, Z * chunk * hw, &zc);
    float *fr = NULL;
    if (st == HL_OK) st = alloc_f32(vf, O * (1 + (int64_t)v->cfg.temporal_ratio * chunk) * HW, &fr);
    for (int64_t b = 0; b < d[0] && st == HL_OK; b++) {
        hl_vae_stream *s = NULL;
        st = hl_vae_decode_begin(vf->ctx, vf->vae, d[3], d[4], step, &s);
        int64_t f0 = 0;
        for (int64_t t0 = 0; t0 < d[2] && st == HL_OK; t0 += chunk) {
            int64_t k = d[2] - t0 < chunk ? d[2] - t0 : chunk, nf = hl_vae_stream_out_frames(s, k);
            for (int64_t c = 0; c < Z; c++) /* the chunk as its own (1, z, k, h, w) tensor */
                memcpy(zc + c * k * hw, z + ((b * Z + c) * d[2] + t0) * hw,
                       (size_t)(k * hw) * sizeof *zc);
            st = hl_vae_decode_chunk(s, k, zc, fr);
            for (int64_t c = 0; c < O && st == HL_OK; c++)
                memcpy(y + ((b * O + c) * F + f0) * HW, fr + c * nf * HW,
                       (size_t)(nf * HW) * sizeof *y);
            f0 += nf;
        }
        hl_vae_decode_end(s);
    }
    if (st == HL_OK) st = compare(vf, out, case_name, y, n);
    free(z), free(y), free(zc), free(fr);
    return st;
}

/* enable_tiling settings from the case's metadata ("tiled_settings"), else (16, 16, 8, 8). */
static hl_status tiling_of(const verifier *vf, hl_vae_tiling *tl) {
    *tl = (hl_vae_tiling){16, 16, 8, 8};
    const char *meta = hl_st_meta(vf->st, "tiled_settings");
    if (!meta) return HL_OK;
    hl_json *j = NULL;
    HL_TRY(hl_json_parse(meta, strlen(meta), &j, err_of(vf)));
    int64_t a = tl->tile_min_h, b = tl->tile_min_w, c = tl->tile_stride_h, d = tl->tile_stride_w;
    hl_json_get_int(j, "tile_sample_min_height", &a);
    hl_json_get_int(j, "tile_sample_min_width", &b);
    hl_json_get_int(j, "tile_sample_stride_height", &c);
    hl_json_get_int(j, "tile_sample_stride_width", &d);
    hl_json_free(j);
    if (a < 1 || b < 1 || c < 1 || d < 1 || a > 1 << 20 || b > 1 << 20 || c > 1 << 20 ||
        d > 1 << 20)
        return hl_fail(err_of(vf), HELIOS_ERR_FORMAT, "%s: bad tiled_settings", vf->st->path);
    *tl = (hl_vae_tiling){(int)a, (int)b, (int)c, (int)d};
    return HL_OK;
}

static hl_status check_tiled(const verifier *vf) {
    hl_vae_tiling tl;
    HL_TRY(tiling_of(vf, &tl));
    int64_t d[5], T_lat, h, w, Z = vf->vae->cfg.z_dim;
    HL_TRY(dims5(vf, "tiled.video", d));
    float *x = NULL, *m = NULL, *z = NULL, *y = NULL;
    hl_status st = hl_st_read_f32(vf->st, "tiled.video", -1, &x, err_of(vf));
    hl_vae_tiled_latent_shape(&vf->vae->cfg, &tl, d[2], d[3], d[4], &T_lat, &h, &w);
    int64_t per = 2 * Z * T_lat * h * w;
    if (st == HL_OK) st = alloc_f32(vf, d[0] * per, &m);
    int64_t vd = d[1] * d[2] * d[3] * d[4];
    for (int64_t b = 0; b < d[0] && st == HL_OK; b++)
        st = hl_vae_encode_tiled(vf->ctx, vf->vae, &tl, d[2], d[3], d[4], x + b * vd, m + b * per,
                                 &T_lat, &h, &w);
    if (st == HL_OK) st = compare(vf, "tiled.enc_moments", NULL, m, d[0] * per);
    /* tiled decode of the reference's tiled mean */
    int64_t zd[5] = {0};
    if (st == HL_OK) st = read_latents(vf, "tiled.enc_moments", true, zd, &z);
    int64_t n = st == HL_OK ? video_numel(vf->vae, zd) : 0, per_y = n / (zd[0] ? zd[0] : 1);
    if (st == HL_OK) st = alloc_f32(vf, n, &y);
    for (int64_t b = 0; b < zd[0] && st == HL_OK; b++)
        st = hl_vae_decode_tiled(vf->ctx, vf->vae, &tl, zd[2], zd[3], zd[4],
                                 z + b * Z * zd[2] * zd[3] * zd[4], y + b * per_y);
    if (st == HL_OK) st = compare(vf, "tiled.decoded_from_mean", NULL, y, n);
    free(x), free(m), free(z), free(y);
    return st;
}

/* pipeline_base.safetensors (optional): the pipeline's own VAE decode of chunk 0, and its
 * denormalisation of the first generated latents. */
static hl_status check_pipeline(verifier *vf, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/pipeline_base.safetensors", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return HL_OK;
    fclose(f);
    hl_safetensors *st = NULL;
    HL_TRY(hl_st_open(path, &st, err_of(vf)));
    const hl_safetensors *saved = vf->st;
    const char *saved_file = vf->file;
    vf->st = st;
    vf->file = "pipeline_base.safetensors";
    hl_status s = HL_OK;
    if (hl_st_find(st, "chunk0.vae_decode_input") && hl_st_find(st, "chunk0.vae_decode_output")) {
        s = check_decode(vf, "chunk0.vae_decode_input", false, "chunk0.vae_decode_output");
        const hl_st_tensor *fl = hl_st_find(st, "final_latents");
        int64_t d[5];
        if (s == HL_OK && fl && fl->ndim == 5 && dims5(vf, "chunk0.vae_decode_input", d) == HL_OK &&
            fl->shape[0] == d[0] && fl->shape[1] == d[1] && fl->shape[2] >= d[2] &&
            fl->shape[3] == d[3] && fl->shape[4] == d[4]) {
            float *all = NULL, *z = NULL;
            int64_t hw = d[3] * d[4];
            s = hl_st_read_f32(st, "final_latents", -1, &all, err_of(vf));
            if (s == HL_OK) s = alloc_f32(vf, d[0] * d[1] * d[2] * hw, &z);
            for (int64_t bc = 0; s == HL_OK && bc < d[0] * d[1]; bc++) /* the first d[2] frames */
                memcpy(z + bc * d[2] * hw, all + bc * fl->shape[2] * hw,
                       (size_t)(d[2] * hw) * sizeof *z);
            if (s == HL_OK)
                s = hl_vae_denormalize_latents(&vf->vae->cfg, d[0], d[2] * hw, z, err_of(vf));
            if (s == HL_OK)
                s = compare(vf, "chunk0.vae_decode_input",
                            "chunk0.vae_decode_input (denormalised final_latents)", z,
                            d[0] * d[1] * d[2] * hw);
            free(all), free(z);
        }
    }
    vf->st = saved;
    vf->file = saved_file;
    hl_st_close(st);
    return s;
}

hl_status hl_vae_verify(const char *dir, hl_report_fn report, void *user, hl_error *err) {
    char cfg[4096], weights[4096], cases[4096];
    snprintf(cfg, sizeof cfg, "%s/vae_config.json", dir);
    snprintf(weights, sizeof weights, "%s/vae_weights_f32.safetensors", dir);
    snprintf(cases, sizeof cases, "%s/vae_case.safetensors", dir);
    hl_vae *v = NULL;
    HL_TRY(hl_vae_load(NULL, cfg, weights, &v, err));
    hl_safetensors *st = NULL;
    hl_status s = hl_st_open(cases, &st, err);
    const hl_ctx ctx = {hl_backend_shared(HELIOS_BACKEND_CPU), err};
    verifier vf = {&ctx, v, st, "vae_case.safetensors", report, user};
    if (s == HL_OK) s = check_encode(&vf, "video", "enc_moments", true);
    if (s == HL_OK) s = check_decode(&vf, "posterior_mean", false, "decoded_from_mean");
    if (s == HL_OK) s = check_encode(&vf, "image", "image_enc_moments", false);
    if (s == HL_OK) s = check_decode(&vf, "image_enc_moments", true, "image_decoded");
    if (s == HL_OK) s = check_decode(&vf, "z_random", false, "decoded_random");
    /* the streaming API in chunks of 1, 2 and 3 latent frames, 1, 2 and 3 frames per pass */
    for (int k = 1; k <= 3 && s == HL_OK; k++) {
        char name[96];
        snprintf(name, sizeof name, "decoded_random (streamed, chunks of %d, %d per pass)", k, k);
        s = check_stream(&vf, "z_random", "decoded_random", k, k, name);
    }
    if (s == HL_OK) s = check_tiled(&vf);
    if (s == HL_OK) s = check_encode(&vf, "tiled.video", "untiled.enc_moments_same_video", false);
    if (s == HL_OK) s = check_pipeline(&vf, dir);
    hl_st_close(st);
    hl_vae_free(v);
    return s;
}
