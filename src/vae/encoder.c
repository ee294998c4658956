/* Encoding (diffusers AutoencoderKLWan._encode): frame 0 alone, then groups of 4 frames through
 * WanEncoder3d with the causal caches carried along, quant_conv on each group's output. */
#include <math.h>

#include "vae/vae_internal.h"

/* Latent frames out of one group of n frames (first: the stream's first group). */
static int64_t group_latents(const hl_vae_config *c, int64_t n, bool first) {
    for (int i = 0; i < c->n_levels - 1; i++)
        if (c->temperal_downsample[i] && !first) n = hl_conv_out_len(n + 1, 3, 2, 0, 0);
    return n;
}

enum { GROUP = 4 }; /* frames per encoder call after the first (the reference's constant) */

void hl_vae_latent_shape(const hl_vae_config *c, int64_t T, int64_t H, int64_t W, int64_t *T_lat,
                         int64_t *h, int64_t *w) {
    *T_lat = 0;
    if (T >= 1)
        *T_lat = group_latents(c, 1, true) + (T - 1) / GROUP * group_latents(c, GROUP, false);
    *h = H, *w = W;
    for (int i = 0; i < c->n_levels - 1; i++) {
        *h = hl_conv_out_len(*h, 3, 2, 0, 1);
        *w = hl_conv_out_len(*w, 3, 2, 0, 1);
    }
}

/* One group: frames [t0, t0 + n) of video (C, T, H, W) -> moments frames from t_lat0 on. */
static hl_status encoder_group(hl_vae_run *r, hl_vae *v, const float *video, int64_t T, int64_t H,
                               int64_t W, int64_t t0, int64_t n, float *moments, int64_t T_lat,
                               int64_t *t_lat) {
    const hl_ctx *ctx = r->ctx;
    hl_vae_encoder *e = &v->encoder;
    int64_t S = H * W, Cin = v->cfg.in_channels, C0 = e->conv_in.w.shape[0];
    void *in = hl_vae_conv_input(r, HL_VAE_CACHE_T, n, S, Cin);
    float *x = hl_vae_buf(r, BUF_X0, (size_t)(n * S * C0) * sizeof(float));
    if (!in || !x) return HELIOS_ERR_OOM;
    HL_TRY(hl_to_channels_last(ctx, Cin, n, S, video + t0 * S, T * S, r->act,
                               hl_vae_frame(r, in, HL_VAE_CACHE_T, S, Cin))); /* [n, H, W, 3] */
    HL_TRY(hl_vae_causal_conv(r, &e->conv_in, in, n, H, W, Cin, x, 0));       /* conv_in */
    hl_vae_act a = {x, BUF_X0, n, H, W, C0};
    for (int i = 0; i < e->n_down; i++) { /* down_blocks */
        if (e->down[i].is_resample) HL_TRY(hl_vae_resample_forward(r, &e->down[i].resample, &a));
        else HL_TRY(hl_vae_res_forward(r, &e->down[i].res, &a));
    }
    HL_TRY(hl_vae_mid_forward(r, &e->mid, &a)); /* mid_block */
    float *y;
    HL_TRY(hl_vae_head_forward(r, e->norm_out, &e->conv_out, &a, &y)); /* [T', h, w, 2z] */
    int64_t Z2 = e->conv_out.w.shape[0], s = a.H * a.W;
    if (*t_lat + a.T > T_lat)
        return hl_fail(ctx->err, HELIOS_ERR_INTERNAL,
                       "VAE encode: more latent frames than expected");
    float *q = hl_vae_buf(r, BUF_LAT, (size_t)(a.T * s * Z2) * sizeof(float));
    if (!q) return HELIOS_ERR_OOM;
    static const int one[3] = {1, 1, 1}, none[6] = {0};
    HL_TRY(hl_vae_conv_plain(r, &v->quant_conv, y, HL_F32, a.T, a.H, a.W, Z2, one, none, q,
                             0)); /* quant_conv */
    HL_TRY(hl_to_channels_first(ctx, Z2, a.T, s, q, -INFINITY, INFINITY, moments + *t_lat * s,
                                T_lat * s));
    *t_lat += a.T;
    return HL_OK;
}

hl_status hl_vae_encode(const hl_ctx *ctx, hl_vae *v, int64_t B, int64_t T, int64_t H, int64_t W,
                        const float *video, float *moments) {
    if (!v->has_encoder)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, "VAE encode: this model has no encoder");
    if (B < 0 || T < 1 || H < 1 || W < 1 || !video || !moments)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "VAE encode: bad sizes (B=%lld T=%lld H=%lld W=%lld)", (long long)B,
                       (long long)T, (long long)H, (long long)W);
    int64_t T_lat, h, w;
    hl_vae_latent_shape(&v->cfg, T, H, W, &T_lat, &h, &w);
    if (h < 1 || w < 1)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, "VAE encode: %lldx%lld is too small",
                       (long long)H, (long long)W);
    int64_t Cin = v->cfg.in_channels, Z2 = 2 * (int64_t)v->cfg.z_dim;
    hl_vae_run r;
    HL_TRY(hl_vae_run_init(&r, ctx, v, v->encoder.n_slots, &v->encoder.conv_in.w));
    hl_status st = HL_OK;
    for (int64_t b = 0; b < B && st == HL_OK; b++) {
        const float *vb = video + b * Cin * T * H * W;
        float *mb = moments + b * Z2 * T_lat * h * w;
        int64_t t_lat = 0;
        hl_vae_run_reset(&r); /* every clip starts with empty caches */
        st = encoder_group(&r, v, vb, T, H, W, 0, 1, mb, T_lat, &t_lat);
        for (int64_t t0 = 1; st == HL_OK && t0 + GROUP <= T; t0 += GROUP)
            st = encoder_group(&r, v, vb, T, H, W, t0, GROUP, mb, T_lat, &t_lat);
        if (st == HL_OK && t_lat != T_lat)
            st = hl_fail(ctx->err, HELIOS_ERR_INTERNAL,
                         "VAE encode: %lld latent frames, expected %lld", (long long)t_lat,
                         (long long)T_lat);
    }
    hl_vae_run_free(&r);
    return st;
}
