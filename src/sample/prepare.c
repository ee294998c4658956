#include "sample/prepare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The Wan 2.1 VAE's latent statistics (diffusers AutoencoderKLWan defaults). */
static const float k_wan_mean[16] = {-0.7571f, -0.7089f, -0.9113f, 0.1075f,  -0.1745f, 0.9653f,
                                     -0.1517f, 1.5508f,  0.4134f,  -0.0715f, 0.5517f,  -0.3632f,
                                     -0.1922f, -0.9497f, 0.2503f,  -0.2921f};
static const float k_wan_std[16] = {2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f,
                                    2.6052f, 2.0743f, 3.2687f, 2.1526f, 2.8652f, 1.5579f,
                                    1.6382f, 1.1253f, 2.8251f, 1.916f};

void hl_cond_config_default(hl_cond_config *c) {
    memset(c, 0, sizeof *c);
    c->C = 16;
    c->latents_mean = k_wan_mean;
    c->latents_std = k_wan_std;
    c->image_sigma[0] = c->video_sigma[0] = 0.111;
    c->image_sigma[1] = c->video_sigma[1] = 0.135;
}

hl_status hl_latent_sample(const hl_cond_config *c, hl_rng *g, const float *moments, int T,
                           float *z, hl_error *err) {
    size_t plane = (size_t)T * c->H * c->W, n = (size_t)c->C * plane;
    float *eps = malloc(n * sizeof *eps);
    if (!eps) return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    hl_rng_randn_f32(g, eps, (int64_t)n);
    for (int ch = 0; ch < c->C; ch++) {
        const float *mean = moments + (size_t)ch * plane,
                    *logvar = moments + (size_t)(c->C + ch) * plane;
        float lm = c->latents_mean[ch], inv_std = 1.0f / c->latents_std[ch];
        for (size_t i = 0; i < plane; i++) {
            float lv = fminf(fmaxf(logvar[i], -30.0f), 20.0f);
            float x = mean[i] + expf(0.5f * lv) * eps[(size_t)ch * plane + i];
            z[(size_t)ch * plane + i] = (x - lm) * inv_std;
        }
    }
    free(eps);
    return HL_OK;
}

/* x <- s·noise + (1 - s)·x per frame, s = rand·(max - min) + min, one sigma per frame (or one
 * for all: per_frame false). */
static hl_status add_noise(const hl_cond_config *c, hl_rng *g, const double range[2], float *x,
                           int T, bool per_frame, hl_error *err) {
    size_t plane = (size_t)c->H * c->W, n = (size_t)c->C * T * plane;
    float s[4096], *noise = malloc(n * sizeof *noise);
    if (!noise || T > 4096) {
        free(noise);
        return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    }
    int ns = per_frame ? T : 1;
    hl_rng_rand_f32(g, s, ns);
    float width = (float)(range[1] - range[0]), lo = (float)range[0];
    for (int i = 0; i < ns; i++) s[i] = s[i] * width + lo;
    hl_rng_randn_f32(g, noise, (int64_t)n);
    for (int ch = 0; ch < c->C; ch++)
        for (int t = 0; t < T; t++) {
            float si = s[per_frame ? t : 0];
            size_t o = ((size_t)ch * T + t) * plane;
            for (size_t i = 0; i < plane; i++)
                x[o + i] = si * noise[o + i] + (1.0f - si) * x[o + i];
        }
    free(noise);
    return HL_OK;
}

hl_status hl_prepare_i2v(const hl_cond_config *c, hl_rng *g, const float *image_moments,
                         const float *fake_moments, int F, hl_history *h, float *prefix,
                         hl_error *err) {
    size_t plane = (size_t)c->H * c->W;
    float *image = malloc((size_t)c->C * plane * sizeof *image);
    float *fake = malloc((size_t)c->C * F * plane * sizeof *fake),
          *last = malloc((size_t)c->C * plane * sizeof *last);
    hl_status st = image && fake && last ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    if (st == HL_OK) st = hl_latent_sample(c, g, image_moments, 1, image, err);
    if (st == HL_OK) st = hl_latent_sample(c, g, fake_moments, F, fake, err);
    for (int ch = 0; st == HL_OK && ch < c->C; ch++) /* the fake video's last latent frame */
        memcpy(last + ch * plane, fake + ((size_t)ch * F + (size_t)(F - 1)) * plane,
               plane * sizeof(float));
    if (st == HL_OK) st = add_noise(c, g, c->image_sigma, image, 1, false, err);
    if (st == HL_OK) st = add_noise(c, g, c->video_sigma, last, 1, false, err);
    if (st == HL_OK) {
        hl_history_set_anchor(h, image, 1, 0);
        hl_history_append(h, last, 1);
        if (prefix) memcpy(prefix, last, (size_t)c->C * plane * sizeof(float));
    }
    free(image), free(fake), free(last);
    return st;
}

hl_status hl_prepare_v2v(const hl_cond_config *c, hl_rng *g, const float *first_moments,
                         const float *const *chunk_moments, int n_chunks, int F, hl_history *h,
                         float *prefix, hl_error *err) {
    size_t plane = (size_t)c->H * c->W, chunk = (size_t)c->C * F * plane;
    float *first = malloc((size_t)c->C * plane * sizeof *first);
    float *video = malloc((n_chunks ? (size_t)n_chunks : 1) * chunk * sizeof *video);
    hl_status st = first && video ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    if (st == HL_OK) st = hl_latent_sample(c, g, first_moments, 1, first, err);
    for (int i = 0; st == HL_OK && i < n_chunks; i++)
        st = hl_latent_sample(c, g, chunk_moments[i], F, video + i * chunk, err);
    if (st == HL_OK) st = add_noise(c, g, c->image_sigma, first, 1, false, err);
    for (int i = 0; st == HL_OK && i < n_chunks; i++)
        st = add_noise(c, g, c->video_sigma, video + i * chunk, F, true, err);
    if (st == HL_OK) {
        hl_history_set_anchor(h, first, 1, 0);
        for (int i = 0; i < n_chunks; i++) hl_history_append(h, video + i * chunk, F);
        for (int i = 0; prefix && i < n_chunks;
             i++) /* (1, C, n_chunks·F, H, W): chunks along time */
            for (int ch = 0; ch < c->C; ch++)
                memcpy(prefix + ((size_t)ch * n_chunks * F + (size_t)i * F) * plane,
                       video + i * chunk + (size_t)ch * F * plane,
                       (size_t)F * plane * sizeof(float));
    }
    free(first), free(video);
    return st;
}
