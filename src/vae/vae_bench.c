/* The decoder benchmark: a full-size Wan 2.1 VAE decoder with random weights decodes one clip on
 * the cpu backend (the streaming path, one latent frame per pass as the reference). */
#include <stdlib.h>

#include "core/parallel.h"
#include "vae/vae.h"

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
    float *video = malloc((size_t)(cfg.out_channels * (int64_t)frames * height * width) * sizeof *video);
    if (!z || !video) st = HELIOS_ERR_OOM;
    uint64_t s = 99;
    for (int64_t i = 0; st == HL_OK && i < cfg.z_dim * T_lat * h * w; i++) { /* latents in [-2, 2) */
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
