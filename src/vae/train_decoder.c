/* Decoder training: post_quant_conv and WanDecoder3d over the whole clip with the tape, the
 * clamp to [-1, 1], and the backward of all of it (vae.h "training"). */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "vae/train_internal.h"

static const int k_one[3] = {1, 1, 1}, k_nopad[6] = {0};

static hl_status new_tape(const hl_ctx *ctx, hl_vae *v, hl_vae_tape **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return hl_fail(ctx->err, HELIOS_ERR_OOM, "VAE training: out of memory");
    (*out)->ctx = ctx;
    (*out)->v = v;
    return HL_OK;
}

static hl_status check_dtype(const hl_ctx *ctx, const hl_vae_conv *c) {
    if (c->w.dtype != HL_F32 && c->w.dtype != HL_BF16)
        return hl_fail(ctx->err, HELIOS_ERR_DTYPE,
                       "VAE training: weights must be F32 or BF16, not %s",
                       hl_dtype_name(c->w.dtype));
    return HL_OK;
}

static hl_status decode_forward(hl_vae_tape *tp, const float *z, float *video) {
    const hl_ctx *ctx = tp->ctx;
    hl_vae *v = tp->v;
    hl_vae_decoder *d = &v->decoder;
    int64_t T = tp->dims[0], h = tp->dims[1], w = tp->dims[2], Z = v->cfg.z_dim;
    hl_tact zl, a;
    HL_TRY(hl_tape_alloc(tp, &zl, T, h, w, Z));
    hl_status st = hl_to_channels_last(ctx, Z, T, h * w, z, T * h * w, HL_F32, zl.x);
    if (st == HL_OK) st = hl_tape_alloc(tp, &a, T, h, w, Z);
    if (st == HL_OK) /* post_quant_conv */
        st = hl_train_conv(tp, &v->post_quant_conv, &zl, k_one, k_nopad, a.x, 0);
    if (st == HL_OK) st = hl_tape_push(tp, &zl);
    else hl_tape_release(tp, &zl);
    if (st != HL_OK) return st;
    /* conv_in: a head without the norm; save its input and run it as a causal conv */
    hl_tact x;
    int pad[6];
    hl_causal_pad(&d->conv_in, pad);
    st = hl_tape_alloc(tp, &x, T, h, w, d->conv_in.w.shape[0]);
    if (st == HL_OK) st = hl_train_conv(tp, &d->conv_in, &a, k_one, pad, x.x, 0);
    if (st == HL_OK) st = hl_tape_push(tp, &a);
    else hl_tape_release(tp, &a);
    if (st != HL_OK) return st;
    HL_TRY(hl_train_mid_forward(tp, &d->mid, &x)); /* mid_block */
    for (int i = 0; i < d->n_up; i++) {            /* up_blocks */
        for (int k = 0; k < d->up[i].n_res; k++)
            HL_TRY(hl_train_res_forward(tp, &d->up[i].res[k], &x));
        HL_TRY(hl_train_resample_forward(tp, &d->up[i].up, &x));
    }
    HL_TRY(hl_train_head_forward(tp, &d->norm_out, &d->conv_out, &x)); /* [F, H, W, 3] */
    tp->dims[3] = x.T;
    st = hl_to_channels_first(ctx, x.C, x.T, x.H * x.W, x.x, tp->lo, tp->hi, video,
                              x.T * x.H * x.W);
    if (st == HL_OK) st = hl_tape_push(tp, &x); /* the unclamped output, for the clamp */
    else hl_tape_release(tp, &x);
    return st;
}

static hl_status decode_save(const hl_ctx *ctx, hl_vae *v, int64_t T_lat, int64_t h, int64_t w,
                             const float *z, bool clamp, float *video, hl_vae_tape **tape) {
    *tape = NULL;
    if (T_lat < 1 || h < 1 || w < 1 || !z || !video)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, "VAE decode (training): bad sizes");
    HL_TRY(check_dtype(ctx, &v->decoder.conv_in));
    hl_vae_tape *tp;
    HL_TRY(new_tape(ctx, v, &tp));
    tp->dims[0] = T_lat, tp->dims[1] = h, tp->dims[2] = w;
    tp->lo = clamp ? -1.0f : -INFINITY, tp->hi = clamp ? 1.0f : INFINITY;
    hl_status st = decode_forward(tp, z, video);
    if (st != HL_OK) {
        hl_vae_tape_free(tp);
        return st;
    }
    *tape = tp;
    return HL_OK;
}

hl_status hl_vae_decode_forward_save(const hl_ctx *ctx, hl_vae *v, int64_t T_lat, int64_t h,
                                     int64_t w, const float *z, float *video, hl_vae_tape **tape) {
    return decode_save(ctx, v, T_lat, h, w, z, true, video, tape);
}

hl_status hl_vae_decode_forward_save_unclamped(const hl_ctx *ctx, hl_vae *v, int64_t T_lat,
                                               int64_t h, int64_t w, const float *z, float *video,
                                               hl_vae_tape **tape) {
    return decode_save(ctx, v, T_lat, h, w, z, false, video, tape);
}

hl_status hl_vae_decode_backward(hl_vae_tape *tp, const float *dvideo, float *dz,
                                 hl_vae_grads *grads) {
    const hl_ctx *ctx = tp->ctx;
    if (tp->done || !dvideo)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "VAE decode backward: no gradient, or the tape was used already");
    tp->done = 1;
    tp->grads = grads;
    hl_vae *v = tp->v;
    hl_vae_decoder *d = &v->decoder;
    int64_t O = d->conv_out.w.shape[0], Z = v->cfg.z_dim;
    hl_tact y, g;
    HL_TRY(hl_tape_pop(tp, &y, O));
    int64_t F = y.T, S = y.H * y.W;
    hl_status st = hl_tape_alloc(tp, &g, F, y.H, y.W, O);
    if (st == HL_OK) st = hl_to_channels_last(ctx, O, F, S, dvideo, F * S, HL_F32, g.x);
    if (st == HL_OK) st = hl_clamp_backward(ctx, hl_tact_n(&g), y.x, tp->lo, tp->hi, g.x, g.x);
    hl_tape_release(tp, &y);
    if (st != HL_OK) {
        hl_tape_release(tp, &g);
        return st;
    }
    HL_TRY(hl_train_head_backward(tp, &d->norm_out, &d->conv_out, &g));
    for (int i = d->n_up - 1; i >= 0; i--) {
        HL_TRY(hl_train_resample_backward(tp, &d->up[i].up, &g));
        for (int k = d->up[i].n_res - 1; k >= 0; k--)
            HL_TRY(hl_train_res_backward(tp, &d->up[i].res[k], &g));
    }
    HL_TRY(hl_train_mid_backward(tp, &d->mid, &g));
    hl_tact a, zl, da = {0}, dzl = {0};
    int pad[6];
    hl_causal_pad(&d->conv_in, pad);
    HL_TRY(hl_tape_pop(tp, &a, Z));
    st = hl_tape_alloc(tp, &da, a.T, a.H, a.W, Z);
    if (st == HL_OK) st = hl_train_conv_backward(tp, &d->conv_in, &a, k_one, pad, g.x, da.x);
    hl_tape_release(tp, &g);
    hl_tape_release(tp, &a);
    if (st == HL_OK) st = hl_tape_pop(tp, &zl, Z);
    if (st == HL_OK) st = hl_tape_alloc(tp, &dzl, zl.T, zl.H, zl.W, Z);
    if (st == HL_OK) /* post_quant_conv */
        st = hl_train_conv_backward(tp, &v->post_quant_conv, &zl, k_one, k_nopad, da.x,
                                    dz ? dzl.x : NULL);
    if (st == HL_OK && dz)
        st = hl_to_channels_first(ctx, Z, zl.T, zl.H * zl.W, dzl.x, -INFINITY, INFINITY, dz,
                                  zl.T * zl.H * zl.W);
    hl_tape_release(tp, &zl);
    hl_tape_release(tp, &da);
    hl_tape_release(tp, &dzl);
    if (st == HL_OK && tp->n != 0)
        st = hl_fail(ctx->err, HELIOS_ERR_INTERNAL, "VAE decode backward: %d saved left", tp->n);
    return st;
}
