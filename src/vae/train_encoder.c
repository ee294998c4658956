/* Encoder training: WanEncoder3d and quant_conv over the whole clip with the tape, and the
 * backward (vae.h "training"). */
#include <math.h>
#include <stdlib.h>

#include "vae/train_internal.h"

static const int k_one[3] = {1, 1, 1}, k_nopad[6] = {0};

static hl_status encode_forward(hl_vae_tape *tp, const float *video, float *moments) {
    const hl_ctx *ctx = tp->ctx;
    hl_vae *v = tp->v;
    hl_vae_encoder *e = &v->encoder;
    int64_t T = tp->dims[0], H = tp->dims[1], W = tp->dims[2], Cin = v->cfg.in_channels;
    hl_tact a, x;
    HL_TRY(hl_tape_alloc(tp, &a, T, H, W, Cin));
    hl_status st = hl_to_channels_last(ctx, Cin, T, H * W, video, T * H * W, HL_F32, a.x);
    int pad[6];
    hl_causal_pad(&e->conv_in, pad);
    if (st == HL_OK) st = hl_tape_alloc(tp, &x, T, H, W, e->conv_in.w.shape[0]);
    if (st == HL_OK) st = hl_train_conv(tp, &e->conv_in, &a, k_one, pad, x.x, 0); /* conv_in */
    if (st == HL_OK) st = hl_tape_push(tp, &a);
    else hl_tape_release(tp, &a);
    if (st != HL_OK) return st;
    for (int i = 0; i < e->n_down; i++) { /* down_blocks */
        if (e->down[i].is_resample) HL_TRY(hl_train_resample_forward(tp, &e->down[i].resample, &x));
        else HL_TRY(hl_train_res_forward(tp, &e->down[i].res, &x));
    }
    HL_TRY(hl_train_mid_forward(tp, &e->mid, &x));                     /* mid_block */
    HL_TRY(hl_train_head_forward(tp, &e->norm_out, &e->conv_out, &x)); /* [T_lat, h, w, 2z] */
    hl_tact q;
    st = hl_tape_alloc(tp, &q, x.T, x.H, x.W, x.C);
    if (st == HL_OK) st = hl_train_conv(tp, &v->quant_conv, &x, k_one, k_nopad, q.x, 0);
    if (st == HL_OK)
        st = hl_to_channels_first(ctx, q.C, q.T, q.H * q.W, q.x, -INFINITY, INFINITY, moments,
                                  q.T * q.H * q.W);
    hl_tape_release(tp, &q);
    tp->dims[3] = x.T;
    if (st == HL_OK) st = hl_tape_push(tp, &x); /* quant_conv's input */
    else hl_tape_release(tp, &x);
    return st;
}

hl_status hl_vae_encode_forward_save(const hl_ctx *ctx, hl_vae *v, int64_t T, int64_t H, int64_t W,
                                     const float *video, float *moments, hl_vae_tape **tape) {
    *tape = NULL;
    if (!v->has_encoder)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, "VAE encode: this model has no encoder");
    if (T < 1 || (T - 1) % 4 != 0 || H < 1 || W < 1 || !video || !moments)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "VAE encode (training): T=%lld must be 1 + 4k, H=%lld W=%lld", (long long)T,
                       (long long)H, (long long)W);
    if (v->encoder.conv_in.w.dtype != HL_F32 && v->encoder.conv_in.w.dtype != HL_BF16)
        return hl_fail(ctx->err, HELIOS_ERR_DTYPE, "VAE training: weights must be F32 or BF16");
    hl_vae_tape *tp = calloc(1, sizeof *tp);
    if (!tp) return hl_fail(ctx->err, HELIOS_ERR_OOM, "VAE training: out of memory");
    tp->ctx = ctx, tp->v = v;
    tp->dims[0] = T, tp->dims[1] = H, tp->dims[2] = W;
    hl_status st = encode_forward(tp, video, moments);
    if (st != HL_OK) {
        hl_vae_tape_free(tp);
        return st;
    }
    *tape = tp;
    return HL_OK;
}

hl_status hl_vae_encode_backward(hl_vae_tape *tp, const float *dmoments, float *dvideo,
                                 hl_vae_grads *grads) {
    const hl_ctx *ctx = tp->ctx;
    if (tp->done || !dmoments)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "VAE encode backward: no gradient, or the tape was used already");
    tp->done = 1;
    tp->grads = grads;
    hl_vae *v = tp->v;
    hl_vae_encoder *e = &v->encoder;
    int64_t Z2 = e->conv_out.w.shape[0], Cin = v->cfg.in_channels;
    hl_tact x, g, dq;
    HL_TRY(hl_tape_pop(tp, &x, Z2));
    int64_t S = x.H * x.W;
    hl_status st = hl_tape_alloc(tp, &dq, x.T, x.H, x.W, Z2);
    if (st == HL_OK) st = hl_to_channels_last(ctx, Z2, x.T, S, dmoments, x.T * S, HL_F32, dq.x);
    if (st == HL_OK) st = hl_tape_alloc(tp, &g, x.T, x.H, x.W, Z2);
    if (st == HL_OK) /* quant_conv */
        st = hl_train_conv_backward(tp, &v->quant_conv, &x, k_one, k_nopad, dq.x, g.x);
    hl_tape_release(tp, &dq);
    hl_tape_release(tp, &x);
    if (st != HL_OK) return st;
    HL_TRY(hl_train_head_backward(tp, &e->norm_out, &e->conv_out, &g));
    HL_TRY(hl_train_mid_backward(tp, &e->mid, &g));
    for (int i = e->n_down - 1; i >= 0; i--) {
        if (e->down[i].is_resample)
            HL_TRY(hl_train_resample_backward(tp, &e->down[i].resample, &g));
        else HL_TRY(hl_train_res_backward(tp, &e->down[i].res, &g));
    }
    hl_tact a, da = {0};
    int pad[6];
    hl_causal_pad(&e->conv_in, pad);
    HL_TRY(hl_tape_pop(tp, &a, Cin));
    if (dvideo) {
        st = hl_tape_alloc(tp, &da, a.T, a.H, a.W, Cin);
        if (st == HL_OK) st = hl_train_conv_backward(tp, &e->conv_in, &a, k_one, pad, g.x, da.x);
        if (st == HL_OK)
            st = hl_to_channels_first(ctx, Cin, a.T, a.H * a.W, da.x, -INFINITY, INFINITY, dvideo,
                                      a.T * a.H * a.W);
    } else {
        st = hl_train_conv_backward(tp, &e->conv_in, &a, k_one, pad, g.x, NULL);
    }
    hl_tape_release(tp, &da);
    hl_tape_release(tp, &a);
    hl_tape_release(tp, &g);
    if (st == HL_OK && tp->n != 0)
        st = hl_fail(ctx->err, HELIOS_ERR_INTERNAL, "VAE encode backward: %d saved left", tp->n);
    return st;
}
