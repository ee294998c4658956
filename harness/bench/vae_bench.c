/* The decoder benchmark: a full-size Wan 2.1 VAE decoder with random weights decodes one clip on
 * the cpu backend (the streaming path, one latent frame per pass as the reference). The random
 * weights are filled through hl_vae_create_filled. */
#include "bench/vae_bench.h"

#include <math.h>
#include <stdlib.h>

#include "core/parallel.h"

/* ---- random weights ---------------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float uniform(uint64_t *s) { /* [-1, 1) */
    return (float)((double)(splitmix(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Weights U(-a, a) with a = sqrt(3 / fan_in) (unit variance through the conv), biases small,
 * gains near 1 (always float32); one splitmix stream over the tensors in table order. */
static void fill_random(void *user, const char *name, bool gain, hl_tensor *t) {
    uint64_t *seed = user;
    int64_t n = hl_tensor_numel(t), fan_in = t->ndim > 1 ? n / t->shape[0] : 0;
    float a = gain ? 0.1f : fan_in ? sqrtf(3.0f / (float)fan_in) : 0.02f;
    for (int64_t i = 0; i < n; i++) {
        float x = (gain ? 1.0f : 0.0f) + a * uniform(seed);
        if (t->dtype == HL_BF16) ((hl_bf16 *)t->data)[i] = hl_f32_to_bf16(x);
        else ((float *)t->data)[i] = x;
    }
}

hl_status hl_vae_create_random(const hl_vae_config *cfg, hl_dtype dt, uint64_t seed,
                               bool with_encoder, hl_vae **out, hl_error *err) {
    uint64_t s = seed;
    return hl_vae_create_filled(cfg, dt, with_encoder, fill_random, &s, out, err);
}

/* ---- the decoder benchmark ---------------------------------------------------------------------- */

hl_status hl_vae_bench(int height, int width, int frames, hl_dtype dt, double *seconds,
                       double *gflop) {
    hl_error err = {0};
    *seconds = *gflop = 0.0;
    hl_vae_config cfg;
    hl_vae_config_wan21(&cfg);
    int r = cfg.spatial_ratio, tr = cfg.temporal_ratio;
    if (height < r || width < r || height % r || width % r || frames < 1 || (frames - 1) % tr)
        return HELIOS_ERR_INVALID_ARG;
    int64_t h = height / r, w = width / r, T_lat = 1 + (frames - 1) / tr;
    hl_vae *v = NULL;
    hl_status st = hl_vae_create_random(&cfg, dt, 1234, false, &v, &err);
    if (st != HL_OK) return st;
    float *z = malloc((size_t)(cfg.z_dim * T_lat * h * w) * sizeof *z);
    float *video = malloc((size_t)(cfg.out_channels * (int64_t)frames * height * width) *
                          sizeof *video);
    if (!z || !video) st = HELIOS_ERR_OOM;
    uint64_t s = 99;
    for (int64_t i = 0; st == HL_OK && i < cfg.z_dim * T_lat * h * w;
         i++) { /* latents in [-2, 2) */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        z[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    }
    const hl_ctx ctx = {hl_backend_shared(HELIOS_BACKEND_CPU), &err};
    hl_vae_stream *stream = NULL;
    if (st == HL_OK) st = hl_vae_decode_begin(&ctx, v, h, w, 1, &stream);
    double t0 = hl_time();
    if (st == HL_OK) st = hl_vae_decode_chunk(stream, T_lat, z, video);
    *seconds = hl_time() - t0;
    if (stream) *gflop = hl_vae_stream_flops(stream) * 1e-9;
    hl_vae_decode_end(stream);
    hl_vae_free(v);
    free(z);
    free(video);
    return st;
}
