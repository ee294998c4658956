/* The posterior (diffusers DiagonalGaussianDistribution) and the pipelines' latent
 * normalisation (spec §4.5), in float32 as the reference computes them. */
#include <math.h>

#include "vae/vae.h"

void hl_vae_posterior(int64_t B, int64_t z, int64_t n, const float *moments, float *mean,
                      float *logvar, float *std) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < z; c++)
            for (int64_t i = 0; i < n; i++) {
                int64_t o = (b * z + c) * n + i;
                float mu = moments[(b * 2 * z + c) * n + i];
                float lv = moments[(b * 2 * z + z + c) * n + i];
                lv = lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv; /* clamp(-30, 20) */
                if (mean) mean[o] = mu;
                if (logvar) logvar[o] = lv;
                if (std) std[o] = expf(0.5f * lv);
            }
}

void hl_vae_posterior_sample(int64_t count, const float *mean, const float *std, const float *eps,
                             float *sample) {
    for (int64_t i = 0; i < count; i++) sample[i] = mean[i] + std[i] * eps[i];
}

/* The pipelines keep 1 / std as a float32 tensor ("latents_std = 1.0 / tensor(std)"). */
static hl_status check_tables(const hl_vae_config *c, hl_error *err) {
    if (c->latents_n != c->z_dim)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED,
                       "VAE: latents_mean/latents_std do not have z_dim = %d entries", c->z_dim);
    return HL_OK;
}

hl_status hl_vae_normalize_latents(const hl_vae_config *c, int64_t B, int64_t n, float *z,
                                   hl_error *err) {
    HL_TRY(check_tables(c, err));
    for (int64_t b = 0; b < B; b++)
        for (int64_t ch = 0; ch < c->z_dim; ch++) {
            float mean = c->latents_mean[ch], inv = 1.0f / c->latents_std[ch];
            float *p = z + (b * c->z_dim + ch) * n;
            for (int64_t i = 0; i < n; i++) p[i] = (p[i] - mean) * inv;
        }
    return HL_OK;
}

hl_status hl_vae_denormalize_latents(const hl_vae_config *c, int64_t B, int64_t n, float *z,
                                     hl_error *err) {
    HL_TRY(check_tables(c, err));
    for (int64_t b = 0; b < B; b++)
        for (int64_t ch = 0; ch < c->z_dim; ch++) {
            float mean = c->latents_mean[ch], inv = 1.0f / c->latents_std[ch];
            float *p = z + (b * c->z_dim + ch) * n;
            for (int64_t i = 0; i < n; i++) p[i] = p[i] / inv + mean;
        }
    return HL_OK;
}
