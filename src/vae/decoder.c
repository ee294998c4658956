/* Decoding (diffusers AutoencoderKLWan._decode): post_quant_conv, then WanDecoder3d one latent
 * frame at a time with the causal caches carried along (spec §4.4), as a stream. */
#include <math.h>
#include <stdlib.h>

#include "vae/vae_internal.h"

struct hl_vae_stream {
    hl_vae_run run;
    int64_t h, w; /* latent size */
    int step;     /* latent frames per pass after the first */
    int64_t done; /* latent frames decoded so far */
};

int64_t hl_vae_decoded_frames(const hl_vae_config *c, int64_t T_lat) {
    return T_lat <= 0 ? 0 : 1 + (int64_t)c->temporal_ratio * (T_lat - 1);
}

hl_status hl_vae_decoder_pass(hl_vae_run *r, const float *z, int64_t zcs, int64_t T, int64_t h,
                              int64_t w, float *frames, int64_t fcs, float lo, float hi,
                              int64_t *n_out) {
    const hl_ctx *ctx = r->ctx;
    hl_vae *v = r->vae;
    hl_vae_decoder *d = &v->decoder;
    int64_t Z = v->cfg.z_dim, s = h * w, C0 = d->conv_in.w.shape[0];
    static const int one[3] = {1, 1, 1}, none[6] = {0};
    float *zl = hl_vae_buf(r, BUF_LAT, (size_t)(2 * T * s * Z) * sizeof(float));
    if (!zl) return HELIOS_ERR_OOM;
    float *zq = zl + T * s * Z;
    HL_TRY(hl_to_channels_last(ctx, Z, T, s, z, zcs, HL_F32, zl)); /* [T, h, w, z] */
    HL_TRY(hl_vae_conv_plain(r, &v->post_quant_conv, zl, HL_F32, T, h, w, Z, one, none, zq,
                             0)); /* post_quant_conv */
    void *in = hl_vae_conv_input(r, HL_VAE_CACHE_T, T, s, Z);
    float *x = hl_vae_buf(r, BUF_X0, (size_t)(T * s * C0) * sizeof(float));
    if (!in || !x) return HELIOS_ERR_OOM;
    HL_TRY(hl_cast(ctx, T * s * Z, zq, r->act, hl_vae_frame(r, in, HL_VAE_CACHE_T, s, Z)));
    HL_TRY(hl_vae_causal_conv(r, &d->conv_in, in, T, h, w, Z, x, 0)); /* conv_in */
    hl_vae_act a = {x, BUF_X0, T, h, w, C0};
    HL_TRY(hl_vae_mid_forward(r, &d->mid, &a)); /* mid_block */
    for (int i = 0; i < d->n_up; i++) {         /* up_blocks */
        for (int k = 0; k < d->up[i].n_res; k++)
            HL_TRY(hl_vae_res_forward(r, &d->up[i].res[k], &a));
        HL_TRY(hl_vae_resample_forward(r, &d->up[i].up, &a));
    }
    float *y;
    HL_TRY(hl_vae_head_forward(r, d->norm_out, &d->conv_out, &a, &y)); /* [T', H, W, 3] */
    HL_TRY(
        hl_to_channels_first(ctx, d->conv_out.w.shape[0], a.T, a.H * a.W, y, lo, hi, frames, fcs));
    *n_out = a.T;
    return HL_OK;
}

hl_status hl_vae_decode_begin(const hl_ctx *ctx, hl_vae *v, int64_t h, int64_t w, int step,
                              hl_vae_stream **out) {
    *out = NULL;
    if (h < 1 || w < 1 || step < 1)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "VAE decode: bad latent size %lldx%lld or step %d", (long long)h,
                       (long long)w, step);
    hl_vae_stream *s = calloc(1, sizeof *s);
    if (!s) return hl_fail(ctx->err, HELIOS_ERR_OOM, "VAE decode: out of memory");
    hl_status st = hl_vae_run_init(&s->run, ctx, v, v->decoder.n_slots, &v->decoder.conv_in.w);
    if (st != HL_OK) {
        free(s);
        return st;
    }
    s->h = h, s->w = w, s->step = step;
    *out = s;
    return HL_OK;
}

int64_t hl_vae_stream_out_frames(const hl_vae_stream *s, int64_t n) {
    if (n <= 0) return 0;
    int64_t first = s->done == 0 ? 1 : 0;
    return first + (int64_t)s->run.vae->cfg.temporal_ratio * (n - first);
}

/* n latent frames (channel stride zcs) -> frames (channel stride fcs), clamped to [lo, hi]. */
static hl_status stream_chunk(hl_vae_stream *s, int64_t n, const float *z, int64_t zcs,
                              float *frames, int64_t fcs, float lo, float hi) {
    int64_t hw = s->h * s->w,
            HW = hw * (int64_t)s->run.vae->cfg.spatial_ratio * s->run.vae->cfg.spatial_ratio;
    int64_t i = 0, f = 0;
    while (i < n) {
        int64_t T = s->done == 0 ? 1 : (n - i < s->step ? n - i : s->step); /* frame 0 alone */
        int64_t got = 0;
        HL_TRY(hl_vae_decoder_pass(&s->run, z + i * hw, zcs, T, s->h, s->w, frames + f * HW, fcs,
                                   lo, hi, &got));
        i += T;
        f += got;
        s->done += T;
    }
    return HL_OK;
}

hl_status hl_vae_decode_chunk(hl_vae_stream *s, int64_t n, const float *z, float *frames) {
    if (n < 0 || (n > 0 && (!z || !frames)))
        return hl_fail(s->run.ctx->err, HELIOS_ERR_INVALID_ARG, "VAE decode: bad chunk");
    int64_t n_out = hl_vae_stream_out_frames(s, n);
    int64_t HW = s->h * s->w * (int64_t)s->run.vae->cfg.spatial_ratio *
                 s->run.vae->cfg.spatial_ratio;
    return stream_chunk(s, n, z, n * s->h * s->w, frames, n_out * HW, -1.0f, 1.0f);
}

size_t hl_vae_stream_bytes(const hl_vae_stream *s) { return s->run.peak_bytes; }
double hl_vae_stream_flops(const hl_vae_stream *s) { return s->run.flops; }

void hl_vae_decode_end(hl_vae_stream *s) {
    if (!s) return;
    hl_vae_run_free(&s->run);
    free(s);
}

hl_status hl_vae_decode_one(const hl_ctx *ctx, hl_vae *v, int64_t T_lat, int64_t h, int64_t w,
                            const float *z, float *video, float lo, float hi) {
    hl_vae_stream *s;
    HL_TRY(hl_vae_decode_begin(ctx, v, h, w, 1, &s));
    int64_t HW = h * w * (int64_t)v->cfg.spatial_ratio * v->cfg.spatial_ratio;
    hl_status st = stream_chunk(s, T_lat, z, T_lat * h * w, video,
                                hl_vae_decoded_frames(&v->cfg, T_lat) * HW, lo, hi);
    hl_vae_decode_end(s);
    return st;
}

hl_status hl_vae_decode(const hl_ctx *ctx, hl_vae *v, int64_t B, int64_t T_lat, int64_t h,
                        int64_t w, const float *z, float *video) {
    if (B < 0 || T_lat < 0 || h < 1 || w < 1 || (B * T_lat > 0 && (!z || !video)))
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, "VAE decode: bad sizes");
    int64_t Z = v->cfg.z_dim, O = v->decoder.conv_out.w.shape[0];
    int64_t F = hl_vae_decoded_frames(&v->cfg, T_lat);
    int64_t HW = h * w * (int64_t)v->cfg.spatial_ratio * v->cfg.spatial_ratio;
    for (int64_t b = 0; b < B; b++)
        HL_TRY(hl_vae_decode_one(ctx, v, T_lat, h, w, z + b * Z * T_lat * h * w,
                                 video + b * O * F * HW, -1.0f, 1.0f));
    return HL_OK;
}
