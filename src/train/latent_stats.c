#include "train/latent_stats.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hl_status hl_vae_decode_error(const hl_ctx *ctx, hl_vae *v, int64_t T_lat, int64_t h, int64_t w,
                              const float *mu, const float *x, int64_t H, int64_t W, float *y,
                              double *se) {
    const int64_t n = 3 * hl_vae_decoded_frames(&v->cfg, T_lat) * H * W;
    HL_TRY(hl_vae_decode(ctx, v, 1, T_lat, h, w, mu, y));
    for (int64_t i = 0; i < n; i++) {
        double d = (double)y[i] - x[i];
        *se += d * d;
    }
    return HL_OK;
}

double hl_vae_psnr(double mse) { return 10.0 * log10(4.0 / (mse > 0 ? mse : 1e-30)); }

/* Decodes the posterior mean mu (1, z, T, h, w) of clip c and adds its squared error to *se;
 * pair: clip | reconstruction, (3, frames, H, 2W). */
static hl_status reconstruct(const hl_ctx *ctx, hl_vae *v, const hl_clip *c, const float *mu,
                             int64_t T, int64_t h, int64_t w, double *se, float *pair,
                             hl_error *err) {
    const int64_t F = hl_vae_decoded_frames(&v->cfg, T), H = c->height, W = c->width;
    if (F != c->frames || v->cfg.out_channels != 3)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "reconstruction: %lld frames decoded for %d (or not 3 channels)",
                       (long long)F, c->frames);
    float *y = malloc((size_t)(3 * F * H * W) * sizeof *y);
    if (!y) return hl_fail(err, HELIOS_ERR_OOM, "reconstruction: out of memory");
    hl_status st = hl_vae_decode_error(ctx, v, T, h, w, mu, c->pixels, H, W, y, se);
    for (int64_t r = 0; st == HL_OK && pair && r < 3 * F * H; r++) { /* rows of (3, F, H) */
        memcpy(pair + r * 2 * W, c->pixels + r * W, (size_t)W * sizeof *pair);
        memcpy(pair + r * 2 * W + W, y + r * W, (size_t)W * sizeof *pair);
    }
    free(y);
    return st;
}

hl_status hl_vae_latent_stats(const hl_ctx *ctx, hl_vae *v, hl_dataset *ds, int64_t n_clips,
                              float *mean, float *std, hl_vae_recon *recon, bool want_pair,
                              hl_error *err) {
    const int64_t z = v->cfg.z_dim;
    if (n_clips < 1 || n_clips > hl_dataset_count(ds))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "latent statistics: %lld clips asked, %lld there", (long long)n_clips,
                       (long long)hl_dataset_count(ds));
    if (!v->has_encoder)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "latent statistics: the VAE has no encoder");
    double *sum = calloc((size_t)(2 * z), sizeof *sum), *sq = sum ? sum + z : NULL;
    float *moments = NULL;
    hl_status st = sum ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "latent statistics: out of memory");
    int64_t count = 0;  /* values per channel so far */
    double se = 0;      /* squared reconstruction error */
    int64_t pixels = 0; /* values reconstructed */
    if (recon) *recon = (hl_vae_recon){0};
    for (int64_t i = 0; st == HL_OK && i < n_clips; i++) {
        hl_clip c = {0};
        if ((st = hl_dataset_get(ds, i, &c, err)) != HL_OK) break;
        int64_t T, h, w;
        hl_vae_latent_shape(&v->cfg, c.frames, c.height, c.width, &T, &h, &w);
        const int64_t n = T * h * w;
        if (!moments && !(moments = malloc((size_t)(2 * z * n) * sizeof *moments)))
            st = hl_fail(err, HELIOS_ERR_OOM, "latent statistics: out of memory");
        /* moments (1, 2z, T, h, w): channel ch of the posterior mean is rows [ch n, (ch + 1) n) */
        if (st == HL_OK)
            st = hl_vae_encode(ctx, v, 1, c.frames, c.height, c.width, c.pixels, moments);
        if (st != HL_OK)
            hl_error_prefix(err, "latent statistics: clip %lld (%s)", (long long)i, c.source);
        for (int64_t ch = 0; st == HL_OK && ch < z; ch++)
            for (int64_t k = 0; k < n; k++) {
                double x = moments[ch * n + k];
                sum[ch] += x;
                sq[ch] += x * x;
            }
        count += n;
        if (st == HL_OK && recon) {
            const size_t pair = (size_t)(3 * c.frames * c.height * 2 * c.width);
            if (want_pair && i == 0 && !(recon->pair = malloc(pair * sizeof *recon->pair)))
                st = hl_fail(err, HELIOS_ERR_OOM, "reconstruction: out of memory");
            if (st == HL_OK)
                st = reconstruct(ctx, v, &c, moments, T, h, w, &se, i == 0 ? recon->pair : NULL,
                                 err); /* the first z channels of the moments are the mean */
            if (st != HL_OK) hl_error_prefix(err, "clip %lld (%s)", (long long)i, c.source);
            pixels += 3 * (int64_t)c.frames * c.height * c.width;
        }
        hl_clip_free(&c);
    }
    for (int64_t ch = 0; st == HL_OK && ch < z; ch++) {
        double m = sum[ch] / (double)count, var = sq[ch] / (double)count - m * m;
        mean[ch] = (float)m;
        std[ch] = (float)sqrt(var > 0 ? var : 0);
        if (!(std[ch] > 0))
            st = hl_fail(err, HELIOS_ERR_INVALID_ARG,
                         "latent statistics: channel %lld is constant over %lld clips",
                         (long long)ch, (long long)n_clips);
    }
    if (st == HL_OK && recon) {
        recon->mse = se / (double)pixels;
        recon->psnr = hl_vae_psnr(recon->mse);
    }
    if (st != HL_OK && recon) free(recon->pair), recon->pair = NULL;
    free(sum);
    free(moments);
    return st;
}

/* Appends to a growing string; *ok drops to 0 when out of memory. */
typedef struct text {
    char *s;
    size_t len, cap;
    int ok;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...) {
    if (!t->ok) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0 || t->len + (size_t)k + 1 > t->cap) {
        size_t cap = (t->len + (size_t)(k < 0 ? 0 : k) + 1) * 2;
        char *s = k < 0 ? NULL : realloc(t->s, cap);
        if (!s) {
            t->ok = 0;
            return;
        }
        t->s = s, t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)k;
}

static void put_ints(text *t, const char *key, const int *v, int n) {
    put(t, " \"%s\": [", key);
    for (int i = 0; i < n; i++) put(t, "%s%d", i ? ", " : "", v[i]);
    put(t, "],\n");
}

/* %.9g: a float32 read back from the text is the same float */
static void put_floats(text *t, const char *key, const float *v, int n) {
    put(t, " \"%s\": [", key);
    for (int i = 0; i < n; i++) put(t, "%s%.9g", i ? ", " : "", (double)v[i]);
    put(t, "],\n");
}

char *hl_vae_config_to_json(const hl_vae_config *c) {
    text t = {.ok = 1};
    put(&t, "{\n \"_class_name\": \"AutoencoderKLWan\",\n");
    put(&t, " \"base_dim\": %d,\n \"decoder_base_dim\": %d,\n \"z_dim\": %d,\n", c->base_dim,
        c->decoder_base_dim, c->z_dim);
    put_ints(&t, "dim_mult", c->dim_mult, c->n_levels);
    put(&t, " \"num_res_blocks\": %d,\n \"attn_scales\": [],\n \"temperal_downsample\": [",
        c->num_res_blocks);
    for (int i = 0; i + 1 < c->n_levels; i++)
        put(&t, "%s%s", i ? ", " : "", c->temperal_downsample[i] ? "true" : "false");
    put(&t, "],\n \"dropout\": 0.0,\n");
    if (c->latents_n) {
        put_floats(&t, "latents_mean", c->latents_mean, c->latents_n);
        put_floats(&t, "latents_std", c->latents_std, c->latents_n);
    }
    put(&t, " \"is_residual\": false,\n \"in_channels\": %d,\n \"out_channels\": %d,\n",
        c->in_channels, c->out_channels);
    put(&t,
        " \"patch_size\": null,\n \"scale_factor_temporal\": %d,\n \"scale_factor_spatial\": "
        "%d\n}\n",
        c->temporal_ratio, c->spatial_ratio);
    if (!t.ok) free(t.s);
    return t.ok ? t.s : NULL;
}
