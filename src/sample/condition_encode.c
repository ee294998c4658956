#include "sample/condition_encode.h"

#include <stdlib.h>
#include <string.h>

/* moments of frames [t0, t0 + n) of video (3, T, H, W), or of n copies of one image. */
static hl_status encode_window(const hl_ctx *ctx, hl_vae *vae, const float *src, int T, int t0,
                               int n, bool repeat, int H, int W, float **moments) {
    size_t frame = (size_t)H * W;
    int64_t tl, h, w;
    hl_vae_latent_shape(&vae->cfg, n, H, W, &tl, &h, &w);
    float *clip = malloc(3 * (size_t)n * frame * sizeof *clip);
    *moments = malloc((size_t)(2 * vae->cfg.z_dim * tl * h * w) * sizeof(float));
    if (!clip || !*moments) {
        free(clip);
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "out of memory for a %d-frame encode", n);
    }
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < n; t++)
            memcpy(clip + ((size_t)c * n + t) * frame,
                   src + ((size_t)c * (repeat ? 1 : T) + (repeat ? 0 : t0 + t)) * frame,
                   frame * sizeof(float));
    hl_status st = hl_vae_encode(ctx, vae, 1, n, H, W, clip, *moments);
    free(clip);
    return st;
}

hl_status hl_condition_encode(const hl_ctx *ctx, hl_vae *vae, const float *image,
                              const float *video, int T, int skipped, int keep_windows, int H,
                              int W, int F, hl_cond_moments *out) {
    memset(out, 0, sizeof *out);
    int win = (F - 1) * vae->cfg.temporal_ratio + 1;
    if (image) {
        out->n = 2;
        HL_TRY(encode_window(ctx, vae, image, 1, 0, 1, true, H, W, &out->m[0]));
        return encode_window(ctx, vae, image, 1, 0, win, true, H, W, &out->m[1]);
    }
    if (skipped < 0 || T < 1 || (skipped > 0 && T < 2))
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "the input video has %d frames (%d skipped)", T, skipped);
    int64_t total = (int64_t)T + skipped; /* the video's length: the window count depends on it */
    int64_t chunks64 = total / win;
    if (chunks64 < 1)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "the input video has %lld frames, fewer than one chunk (%d)",
                       (long long)total, win);
    int chunks = chunks64 > HL_COND_MAX_ENCODES - 1 ? HL_COND_MAX_ENCODES - 1
                                                    : (int)chunks64; /* the newest */
    int64_t start = total - (int64_t)chunks * win;
    out->n = 1 + chunks;
    HL_TRY(
        encode_window(ctx, vae, video, T, 0, 1, false, H, W, &out->m[0])); /* frame 0: the anchor */
    int64_t tl, h, w;
    hl_vae_latent_shape(&vae->cfg, win, H, W, &tl, &h, &w);
    for (int k = 0; k < chunks; k++) {
        int64_t t0 = start + (int64_t)k * win; /* in the whole video */
        if (keep_windows > 0 && k < chunks - keep_windows) {
            /* Its latents leave the history before the first chunk: only its random draws
             * matter (hl_prepare_v2v still makes them), so zero moments stand in for the encode. */
            if (!(out->m[1 + k] = calloc((size_t)(2 * vae->cfg.z_dim * tl * h * w), sizeof(float))))
                return hl_fail(ctx->err, HELIOS_ERR_OOM,
                               "out of memory for the conditioning of a %d-frame window", win);
            continue;
        }
        if (skipped > 0 && t0 < 1 + (int64_t)skipped)
            return hl_fail(
                ctx->err, HELIOS_ERR_INVALID_ARG,
                "the input video's frames %lld..%lld are needed but were skipped when it was read",
                (long long)t0, (long long)(t0 + win - 1));
        HL_TRY(encode_window(ctx, vae, video, T, (int)(t0 - skipped), win, false, H, W,
                             &out->m[1 + k]));
    }
    return HL_OK;
}

void hl_cond_moments_free(hl_cond_moments *m) {
    for (int i = 0; i < m->n; i++) free(m->m[i]);
    memset(m, 0, sizeof *m);
}
