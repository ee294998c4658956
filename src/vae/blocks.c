/* The VAE's building blocks (spec §4.2) over float32 channels-last activations [T, H, W, C]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vae/vae_internal.h"

static hl_dtype gemm_dtype(const hl_tensor *w) { return w->dtype == HL_BF16 ? HL_BF16 : HL_F32; }

/* WanResidualBlock: x + conv2(silu(norm2(conv1(silu(norm1(x)))))), the skip through
 * conv_shortcut (1x1x1) when in != out. */
hl_status hl_vae_res_forward(hl_vae_run *r, hl_vae_res *m, hl_vae_act *a) {
    const hl_ctx *ctx = r->ctx;
    int64_t S = a->H * a->W, n = a->T * S;
    int out_buf = a->buf;
    float *out = a->x; /* no shortcut: conv2 accumulates onto x itself */
    if (m->conv_shortcut.w.data) {
        static const int one[3] = {1, 1, 1}, none[6] = {0};
        if (!(out = hl_vae_other(r, a, n * m->out, &out_buf))) return HELIOS_ERR_OOM;
        HL_TRY(hl_vae_conv_plain(r, &m->conv_shortcut, a->x, HL_F32, a->T, a->H, a->W, m->in, one,
                                 none, out, 0)); /* h = conv_shortcut(x) */
    }
    int64_t cmax = m->in > m->out ? m->in : m->out;
    void *in = hl_vae_conv_input(r, HL_VAE_CACHE_T, a->T, S, cmax);
    float *h = hl_vae_buf(r, BUF_H, (size_t)(n * m->out) * sizeof(float));
    if (!in || !h) return HELIOS_ERR_OOM;
    void *x_in = hl_vae_frame(r, in, HL_VAE_CACHE_T, S, m->in);
    HL_TRY(hl_channel_rmsnorm(ctx, HL_NTHWC, 1, m->in, n, a->x, m->norm1, 1, r->act,
                              x_in)); /* silu(norm1(x)) */
    HL_TRY(hl_vae_causal_conv(r, &m->conv1, in, a->T, a->H, a->W, m->in, h, 0)); /* conv1 */
    void *h_in = hl_vae_frame(r, in, HL_VAE_CACHE_T, S, m->out);
    HL_TRY(hl_channel_rmsnorm(ctx, HL_NTHWC, 1, m->out, n, h, m->norm2, 1, r->act,
                              h_in)); /* silu(norm2(h)) */
    HL_TRY(hl_vae_causal_conv(r, &m->conv2, in, a->T, a->H, a->W, m->out, out, 1)); /* conv2 + h */
    a->x = out;
    a->buf = out_buf;
    a->C = m->out;
    return HL_OK;
}

/* WanAttentionBlock: per frame, single-head self-attention over the H·W positions with head
 * width C, x + proj(attention(to_qkv(norm(x)))). */
hl_status hl_vae_attn_forward(hl_vae_run *r, hl_vae_attn *m, hl_vae_act *a) {
    const hl_ctx *ctx = r->ctx;
    int64_t S = a->H * a->W, C = m->dim;
    float *xn = hl_vae_buf(r, BUF_ATT, (size_t)(5 * S * C) * sizeof(float));
    if (!xn) return HELIOS_ERR_OOM;
    float *qkv = xn + S * C, *o = qkv + 3 * S * C;
    hl_dtype cdt = gemm_dtype(&m->to_qkv_w);
    for (int64_t t = 0; t < a->T; t++) {
        float *x = a->x + t * S * C; /* [S, C] */
        HL_TRY(hl_channel_rmsnorm(ctx, HL_NTHWC, 1, C, S, x, m->norm, 0, HL_F32, xn));
        HL_TRY(hl_linear(ctx, S, xn, C, &m->to_qkv_w, &m->to_qkv_b, qkv,
                         3 * C)); /* [S, 3C] = q | k | v */
        HL_TRY(hl_attention(ctx, S, S, 1, (int)C, qkv, 3 * C, qkv + C, 3 * C, qkv + 2 * C, 3 * C,
                            1.0f / sqrtf((float)C), cdt, xn, C));       /* [S, C] */
        HL_TRY(hl_linear(ctx, S, xn, C, &m->proj_w, &m->proj_b, o, C)); /* proj */
        HL_TRY(hl_add_gated(ctx, S, C, x, C, o, C, NULL));              /* + identity */
    }
    return HL_OK;
}

/* WanMidBlock: resnets.0, attentions.0, resnets.1. */
hl_status hl_vae_mid_forward(hl_vae_run *r, hl_vae_mid *m, hl_vae_act *a) {
    HL_TRY(hl_vae_res_forward(r, &m->res0, a));
    HL_TRY(hl_vae_attn_forward(r, &m->attn, a));
    return hl_vae_res_forward(r, &m->res1, a);
}

/* upsample2d / upsample3d. upsample3d first runs time_conv (C -> 2C) and interleaves the two
 * halves in time (t0a, t0b, t1a, ...); on the first chunk it skips it (1 frame stays 1) and the
 * next chunk starts from a zero cache (the reference's "Rep"). Then nearest x2 and resample.1
 * (Conv2d 3x3, padding 1, C -> C/2) per frame. */
static hl_status upsample(hl_vae_run *r, hl_vae_resample *m, hl_vae_act *a) {
    const hl_ctx *ctx = r->ctx;
    int64_t S = a->H * a->W, C = m->dim, T2 = a->T;
    const float *src = a->x;
    int doubled = 0;
    if (m->mode == HL_VAE_UPSAMPLE3D) {
        hl_vae_slot *slot = &r->slots[m->time_conv.slot];
        if (!slot->started) {
            slot->started = true; /* first chunk: no time conv */
        } else {
            void *in = hl_vae_conv_input(r, HL_VAE_CACHE_T, a->T, S, C);
            float *tc = hl_vae_buf(r, BUF_H, (size_t)(a->T * S * 2 * C) * sizeof(float));
            if (!in || !tc) return HELIOS_ERR_OOM;
            HL_TRY(hl_cast(ctx, a->T * S * C, a->x, r->act,
                           hl_vae_frame(r, in, HL_VAE_CACHE_T, S, C)));
            HL_TRY(hl_vae_causal_conv(r, &m->time_conv, in, a->T, a->H, a->W, C, tc,
                                      0)); /* [T, S, 2C] */
            src = tc;
            T2 = 2 * a->T;
            doubled = 1;
        }
    }
    int64_t H2 = 2 * a->H, W2 = 2 * a->W;
    void *up = hl_vae_buf(r, BUF_IN, (size_t)(T2 * 4 * S * C) * hl_vae_act_size(r));
    if (!up) return HELIOS_ERR_OOM;
    if (!doubled) {
        HL_TRY(hl_upsample2x(ctx, HL_NTHWC, T2, C, a->H, a->W, src, C, r->act, up));
    } else {
        for (int64_t f = 0; f < T2; f++) /* frame 2t: channels [0, C) of tc[t]; 2t+1: [C, 2C) */
            HL_TRY(hl_upsample2x(ctx, HL_NTHWC, 1, C, a->H, a->W,
                                 src + (f / 2) * S * 2 * C + (f % 2) * C, 2 * C, r->act,
                                 hl_vae_frame(r, up, f, 4 * S, C)));
    }
    int which;
    float *y = hl_vae_other(r, a, T2 * 4 * S * m->out_dim, &which);
    if (!y) return HELIOS_ERR_OOM;
    static const int one[3] = {1, 1, 1}, pad1[6] = {0, 0, 1, 1, 1, 1};
    HL_TRY(hl_vae_conv_plain(r, &m->resample, up, r->act, T2, H2, W2, C, one, pad1, y,
                             0)); /* resample.1 */
    *a = (hl_vae_act){y, which, T2, H2, W2, m->out_dim};
    return HL_OK;
}

/* downsample2d / downsample3d: zero pad right and bottom by 1, Conv2d 3x3 stride 2 per frame;
 * downsample3d then runs time_conv (3x1x1, stride 2) on [last cached frame, frames], except on
 * the first chunk, whose last frame is only cached. */
static hl_status downsample(hl_vae_run *r, hl_vae_resample *m, hl_vae_act *a) {
    const hl_ctx *ctx = r->ctx;
    int64_t C = m->dim;
    static const int s2[3] = {1, 2, 2}, pad[6] = {0, 0, 0, 1, 0, 1};
    int64_t Ho = hl_conv_out_len(a->H, 3, 2, 0, 1), Wo = hl_conv_out_len(a->W, 3, 2, 0, 1),
            So = Ho * Wo;
    int which;
    float *y = hl_vae_other(r, a, a->T * So * C, &which);
    if (!y) return HELIOS_ERR_OOM;
    HL_TRY(hl_vae_conv_plain(r, &m->resample, a->x, HL_F32, a->T, a->H, a->W, C, s2, pad, y,
                             0)); /* resample.1 */
    *a = (hl_vae_act){y, which, a->T, Ho, Wo, C};
    if (m->mode != HL_VAE_DOWNSAMPLE3D) return HL_OK;

    hl_vae_slot *slot = &r->slots[m->time_conv.slot];
    size_t fb = (size_t)(So * C) * hl_vae_act_size(r);
    if (!slot->frames) {
        if (!(slot->frames = calloc(1, fb ? fb : 1)))
            return hl_fail(ctx->err, HELIOS_ERR_OOM, "VAE: out of memory (cache)");
        slot->frame_bytes = fb;
        slot->cap = 1;
        r->bytes += fb;
        if (r->bytes > r->peak_bytes) r->peak_bytes = r->bytes;
    } else if (slot->frame_bytes != fb) {
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "VAE: a chunk changed the frame size within one stream");
    }
    if (a->T == 0) return HL_OK;
    void *in = hl_vae_conv_input(r, 1, a->T, So, C);
    if (!in) return HELIOS_ERR_OOM;
    memcpy(in, slot->frames, fb); /* [cache, x] */
    HL_TRY(hl_cast(ctx, a->T * So * C, a->x, r->act, hl_vae_frame(r, in, 1, So, C)));
    memcpy(slot->frames, hl_vae_frame(r, in, a->T, So, C), fb); /* cache = x[-1:] */
    if (!slot->started) {                                       /* first chunk: cached only */
        slot->started = true;
        return HL_OK;
    }
    static const int st2[3] = {2, 1, 1}, nopad[6] = {0};
    int64_t To = hl_conv_out_len(a->T + 1, 3, 2, 0, 0);
    float *z = hl_vae_other(r, a, To * So * C, &which);
    if (!z) return HELIOS_ERR_OOM;
    HL_TRY(hl_vae_conv_plain(r, &m->time_conv, in, r->act, a->T + 1, Ho, Wo, C, st2, nopad, z,
                             0)); /* time_conv */
    *a = (hl_vae_act){z, which, To, Ho, Wo, C};
    return HL_OK;
}

hl_status hl_vae_resample_forward(hl_vae_run *r, hl_vae_resample *m, hl_vae_act *a) {
    switch (m->mode) {
    case HL_VAE_UPSAMPLE2D:
    case HL_VAE_UPSAMPLE3D: return upsample(r, m, a);
    case HL_VAE_DOWNSAMPLE2D:
    case HL_VAE_DOWNSAMPLE3D: return downsample(r, m, a);
    default: return HL_OK;
    }
}

hl_status hl_vae_head_forward(hl_vae_run *r, const float *norm_out, hl_vae_conv *conv_out,
                              hl_vae_act *a, float **y) {
    int64_t S = a->H * a->W, n = a->T * S, O = conv_out->w.shape[0];
    void *in = hl_vae_conv_input(r, HL_VAE_CACHE_T, a->T, S, a->C);
    *y = hl_vae_buf(r, BUF_H, (size_t)(n * O) * sizeof(float));
    if (!in || !*y) return HELIOS_ERR_OOM;
    HL_TRY(
        hl_channel_rmsnorm(r->ctx, HL_NTHWC, 1, a->C, n, a->x, norm_out, 1, r->act,
                           hl_vae_frame(r, in, HL_VAE_CACHE_T, S, a->C))); /* silu(norm_out(x)) */
    return hl_vae_causal_conv(r, conv_out, in, a->T, a->H, a->W, a->C, *y, 0); /* conv_out */
}
