/* Forward-with-save / backward pairs of the VAE blocks over whole clips (float32 channels-last
 * [T, H, W, C]); the attention block is in train_attn.c. Each forward pushes onto the tape what
 * its backward pops, in reverse order. */
#include <string.h>

#include "vae/train_internal.h"

static const int k_one[3] = {1, 1, 1}, k_nopad[6] = {0};

/* ---- convs ------------------------------------------------------------------------------------ */

static hl_conv3d_shape conv_shape(const hl_tact *x, const int stride[3], const int pad[6],
                                  int accumulate) {
    return (hl_conv3d_shape){HL_NTHWC,
                             HL_F32,
                             1,
                             x->C,
                             x->T,
                             x->H,
                             x->W,
                             {stride[0], stride[1], stride[2]},
                             {pad[0], pad[1], pad[2], pad[3], pad[4], pad[5]},
                             accumulate};
}

void hl_causal_pad(const hl_vae_conv *c, int pad[6]) {
    int kh = (int)c->w.shape[3], kw = (int)c->w.shape[4];
    int p[6] = {HL_VAE_CACHE_T, 0, kh / 2, kh / 2, kw / 2, kw / 2};
    memcpy(pad, p, sizeof p);
}

hl_status hl_train_conv(hl_vae_tape *tp, hl_vae_conv *c, const hl_tact *x, const int stride[3],
                        const int pad[6], float *y, int accumulate) {
    hl_conv3d_shape s = conv_shape(x, stride, pad, accumulate);
    return hl_conv3d(tp->ctx, &s, x->x, &c->w, &c->b, NULL, y);
}

hl_status hl_train_conv_backward(hl_vae_tape *tp, hl_vae_conv *c, const hl_tact *x,
                                 const int stride[3], const int pad[6], const float *dy,
                                 float *dx) {
    hl_conv3d_shape s = conv_shape(x, stride, pad, 0);
    return hl_conv3d_backward(tp->ctx, &s, x->x, &c->w, dy, dx, hl_vae_grad_of(tp->grads, &c->w),
                              hl_vae_grad_of(tp->grads, &c->b));
}

/* y = causal conv(x), a new activation */
static hl_status causal_forward(hl_vae_tape *tp, hl_vae_conv *c, const hl_tact *x, hl_tact *y) {
    int pad[6];
    hl_causal_pad(c, pad);
    HL_TRY(hl_tape_alloc(tp, y, x->T, x->H, x->W, c->w.shape[0]));
    return hl_train_conv(tp, c, x, k_one, pad, y->x, 0);
}

/* dx (new) from dy through the causal conv with input x */
static hl_status causal_backward(hl_vae_tape *tp, hl_vae_conv *c, const hl_tact *x, const float *dy,
                                 hl_tact *dx) {
    int pad[6];
    hl_causal_pad(c, pad);
    HL_TRY(hl_tape_alloc(tp, dx, x->T, x->H, x->W, x->C));
    return hl_train_conv_backward(tp, c, x, k_one, pad, dy, dx->x);
}

/* a = silu(norm(x)) as a new activation */
static hl_status norm_silu(hl_vae_tape *tp, const float *gamma, const hl_tact *x, hl_tact *a) {
    HL_TRY(hl_tape_alloc(tp, a, x->T, x->H, x->W, x->C));
    return hl_channel_rmsnorm(tp->ctx, HL_NTHWC, 1, x->C, x->T * x->H * x->W, x->x, gamma, 1,
                              HL_F32, a->x);
}

/* d <- ∂/∂x of silu(norm(x)) given d = ∂/∂output, in place */
static hl_status norm_silu_backward(hl_vae_tape *tp, const float *const *gamma, const hl_tact *x,
                                    hl_tact *d) {
    return hl_channel_rmsnorm_backward(tp->ctx, HL_NTHWC, 1, x->C, x->T * x->H * x->W, x->x, *gamma,
                                       1, d->x, d->x, hl_vae_grad_of(tp->grads, gamma));
}

/* ---- WanResidualBlock ------------------------------------------------------------------------ */

/* y = shortcut(x) + conv2(silu(norm2(h))), h = conv1(silu(norm1(x))). Saves x, a1, h, a2. */
hl_status hl_train_res_forward(hl_vae_tape *tp, hl_vae_res *m, hl_tact *a) {
    hl_tact x = *a, a1 = {0}, h = {0}, a2 = {0}, y = {0};
    hl_status st = norm_silu(tp, m->norm1, &x, &a1);              /* [T, H, W, in] */
    if (st == HL_OK) st = causal_forward(tp, &m->conv1, &a1, &h); /* [T, H, W, out] */
    if (st == HL_OK) st = norm_silu(tp, m->norm2, &h, &a2);
    if (st == HL_OK) st = hl_tape_alloc(tp, &y, x.T, x.H, x.W, m->out);
    if (st == HL_OK && m->conv_shortcut.w.data)
        st = hl_train_conv(tp, &m->conv_shortcut, &x, k_one, k_nopad, y.x, 0);
    else if (st == HL_OK) memcpy(y.x, x.x, (size_t)hl_tact_n(&x) * sizeof(float));
    int pad[6];
    hl_causal_pad(&m->conv2, pad);
    if (st == HL_OK) st = hl_train_conv(tp, &m->conv2, &a2, k_one, pad, y.x, 1); /* + conv2 */
    hl_tact *keep[4] = {&x, &a1, &h, &a2};
    for (int i = 0; i < 4; i++)
        if (st == HL_OK) st = hl_tape_push(tp, keep[i]);
        else hl_tape_release(tp, keep[i]);
    if (st != HL_OK) hl_tape_release(tp, &y);
    a->x = NULL;
    if (st == HL_OK) *a = y;
    return st;
}

hl_status hl_train_res_backward(hl_vae_tape *tp, hl_vae_res *m, hl_tact *d) {
    hl_tact x, a1, h, a2, da = {0}, dx = {0};
    HL_TRY(hl_tape_pop(tp, &a2, m->out));
    HL_TRY(hl_tape_pop(tp, &h, m->out));
    HL_TRY(hl_tape_pop(tp, &a1, m->in));
    HL_TRY(hl_tape_pop(tp, &x, m->in));
    hl_status st = causal_backward(tp, &m->conv2, &a2, d->x, &da);        /* ∂a2 */
    if (st == HL_OK) st = norm_silu_backward(tp, &m->norm2, &h, &da);     /* ∂h */
    if (st == HL_OK) st = causal_backward(tp, &m->conv1, &a1, da.x, &dx); /* ∂a1 */
    if (st == HL_OK) st = norm_silu_backward(tp, &m->norm1, &x, &dx);     /* ∂x through conv1 */
    hl_tape_release(tp, &da);
    if (st == HL_OK && m->conv_shortcut.w.data) { /* + ∂x through the shortcut */
        st = hl_tape_alloc(tp, &da, x.T, x.H, x.W, x.C);
        if (st == HL_OK)
            st = hl_train_conv_backward(tp, &m->conv_shortcut, &x, k_one, k_nopad, d->x, da.x);
        if (st == HL_OK) st = hl_add_gated(tp->ctx, hl_tact_n(&x), 1, dx.x, 1, da.x, 1, NULL);
        hl_tape_release(tp, &da);
    } else if (st == HL_OK) { /* + ∂x through the identity */
        st = hl_add_gated(tp->ctx, hl_tact_n(&x), 1, dx.x, 1, d->x, 1, NULL);
    }
    hl_tact *drop[5] = {&x, &a1, &h, &a2, d};
    for (int i = 0; i < 5; i++) hl_tape_release(tp, drop[i]);
    if (st != HL_OK) hl_tape_release(tp, &dx);
    else *d = dx;
    return st;
}

/* ---- WanMidBlock ----------------------------------------------------------------------------- */

hl_status hl_train_mid_forward(hl_vae_tape *tp, hl_vae_mid *m, hl_tact *a) {
    HL_TRY(hl_train_res_forward(tp, &m->res0, a));
    HL_TRY(hl_train_attn_forward(tp, &m->attn, a));
    return hl_train_res_forward(tp, &m->res1, a);
}

hl_status hl_train_mid_backward(hl_vae_tape *tp, hl_vae_mid *m, hl_tact *d) {
    HL_TRY(hl_train_res_backward(tp, &m->res1, d));
    HL_TRY(hl_train_attn_backward(tp, &m->attn, d));
    return hl_train_res_backward(tp, &m->res0, d);
}

/* ---- WanResample ----------------------------------------------------------------------------- */

/* Frame f of the time-doubled clip of upsample3d: frame 0 is x[0]; frame 1 + 2t is channels
 * [0, C) of tc[t] and frame 2 + 2t channels [C, 2C) (the reference's stack of the two halves).
 * Returns the frame's first pixel and its pixel stride. */
static float *up3d_frame(const hl_tact *x, const hl_tact *tc, int64_t f, int64_t *ld) {
    int64_t S = x->H * x->W, C = x->C;
    if (f == 0) return *ld = C, x->x;
    *ld = 2 * C;
    return tc->x + ((f - 1) / 2) * S * 2 * C + ((f - 1) % 2) * C;
}

/* x[1:] as an activation (a view) */
static hl_tact tail_frames(const hl_tact *x) {
    return (hl_tact){x->x + x->H * x->W * x->C, x->T - 1, x->H, x->W, x->C};
}

/* upsample3d: time_conv (C -> 2C, causal) on frames 1.. then the interleave (frame 0 passes, the
 * reference's first chunk); both: nearest x2, resample.1 (Conv2d 3x3, padding 1) per frame.
 * Saves x (3d) and the upsampled frames. */
static hl_status upsample_forward(hl_vae_tape *tp, hl_vae_resample *m, hl_tact *a) {
    hl_tact x = *a, tc = {0}, up = {0}, y = {0};
    int64_t C = m->dim, S = x.H * x.W, T2 = x.T;
    bool tconv = m->mode == HL_VAE_UPSAMPLE3D && x.T > 1;
    hl_status st = HL_OK;
    if (tconv) {
        hl_tact xt = tail_frames(&x);
        st = causal_forward(tp, &m->time_conv, &xt, &tc); /* [T-1, H, W, 2C] */
        T2 = 1 + 2 * (x.T - 1);
    }
    if (st == HL_OK) st = hl_tape_alloc(tp, &up, T2, 2 * x.H, 2 * x.W, C);
    for (int64_t f = 0; st == HL_OK && f < T2; f++) {
        int64_t ld = C;
        const float *src = tconv ? up3d_frame(&x, &tc, f, &ld) : x.x + f * S * C;
        st = hl_upsample2x(tp->ctx, HL_NTHWC, 1, C, x.H, x.W, src, ld, HL_F32,
                           up.x + f * 4 * S * C);
    }
    hl_tape_release(tp, &tc);
    static const int pad1[6] = {0, 0, 1, 1, 1, 1};
    if (st == HL_OK) st = hl_tape_alloc(tp, &y, T2, up.H, up.W, m->out_dim);
    if (st == HL_OK) st = hl_train_conv(tp, &m->resample, &up, k_one, pad1, y.x, 0);
    if (st == HL_OK && tconv) st = hl_tape_push(tp, &x);
    else hl_tape_release(tp, &x);
    if (st == HL_OK) st = hl_tape_push(tp, &up);
    else hl_tape_release(tp, &up);
    a->x = NULL;
    if (st != HL_OK) hl_tape_release(tp, &y);
    else *a = y;
    return st;
}

static hl_status upsample_backward(hl_vae_tape *tp, hl_vae_resample *m, hl_tact *d) {
    hl_tact up, x = {0}, dup = {0}, dtc = {0}, dx = {0};
    int64_t C = m->dim;
    HL_TRY(hl_tape_pop(tp, &up, C));
    int64_t T2 = up.T, H = up.H / 2, W = up.W / 2, S = H * W, T = T2;
    bool tconv = m->mode == HL_VAE_UPSAMPLE3D && T2 > 1;
    hl_status st = HL_OK;
    if (tconv) {
        st = hl_tape_pop(tp, &x, C);
        T = x.T;
    }
    static const int pad1[6] = {0, 0, 1, 1, 1, 1};
    if (st == HL_OK) st = hl_tape_alloc(tp, &dup, up.T, up.H, up.W, C);
    if (st == HL_OK) st = hl_train_conv_backward(tp, &m->resample, &up, k_one, pad1, d->x, dup.x);
    if (st == HL_OK) st = hl_tape_alloc(tp, &dx, T, H, W, C);
    if (st == HL_OK && tconv) st = hl_tape_alloc(tp, &dtc, T - 1, H, W, 2 * C);
    for (int64_t f = 0; st == HL_OK && f < T2; f++) {
        int64_t ld = C;
        float *dst = tconv ? up3d_frame(&dx, &dtc, f, &ld) : dx.x + f * S * C;
        st = hl_upsample2x_backward(tp->ctx, HL_NTHWC, 1, C, H, W, dup.x + f * 4 * S * C, dst, ld);
    }
    if (st == HL_OK && tconv) { /* ∂x[1:] through time_conv */
        hl_tact xt = tail_frames(&x), dxt = {0};
        st = causal_backward(tp, &m->time_conv, &xt, dtc.x, &dxt);
        if (st == HL_OK) memcpy(dx.x + S * C, dxt.x, (size_t)hl_tact_n(&dxt) * sizeof(float));
        hl_tape_release(tp, &dxt);
    }
    hl_tact *drop[5] = {&up, &x, &dup, &dtc, d};
    for (int i = 0; i < 5; i++) hl_tape_release(tp, drop[i]);
    if (st != HL_OK) hl_tape_release(tp, &dx);
    else *d = dx;
    return st;
}

/* resample.1 (Conv2d 3x3 stride 2 after a zero pad of 1 right and bottom) per frame; downsample3d
 * then keeps frame 0 and appends time_conv (3x1x1, stride 2, no padding) over all frames (the
 * reference's first chunk caches frame 0, later chunks see [last frame, 4 new]). Saves x and,
 * in 3d, the spatial output z. */
static const int k_s2[3] = {1, 2, 2}, k_pad_br[6] = {0, 0, 0, 1, 0, 1};
static const int k_t2[3] = {2, 1, 1};

static hl_status downsample_forward(hl_vae_tape *tp, hl_vae_resample *m, hl_tact *a) {
    hl_tact x = *a, z = {0}, y = {0};
    int64_t C = m->dim;
    int64_t Ho = hl_conv_out_len(x.H, 3, 2, 0, 1), Wo = hl_conv_out_len(x.W, 3, 2, 0, 1);
    hl_status st = hl_tape_alloc(tp, &z, x.T, Ho, Wo, C);
    if (st == HL_OK) st = hl_train_conv(tp, &m->resample, &x, k_s2, k_pad_br, z.x, 0);
    if (st == HL_OK) st = hl_tape_push(tp, &x);
    else hl_tape_release(tp, &x);
    a->x = NULL;
    if (st != HL_OK || m->mode != HL_VAE_DOWNSAMPLE3D) {
        if (st != HL_OK) hl_tape_release(tp, &z);
        else *a = z;
        return st;
    }
    int64_t To = hl_conv_out_len(z.T, 3, 2, 0, 0), S = Ho * Wo;
    st = hl_tape_alloc(tp, &y, 1 + To, Ho, Wo, C);
    if (st == HL_OK) {
        memcpy(y.x, z.x, (size_t)(S * C) * sizeof(float)); /* frame 0 */
        st = hl_train_conv(tp, &m->time_conv, &z, k_t2, k_nopad, y.x + S * C, 0);
    }
    if (st == HL_OK) st = hl_tape_push(tp, &z);
    else hl_tape_release(tp, &z);
    if (st != HL_OK) hl_tape_release(tp, &y);
    else *a = y;
    return st;
}

static hl_status downsample_backward(hl_vae_tape *tp, hl_vae_resample *m, hl_tact *d) {
    hl_tact x, z = {0}, dz = {0}, dx = {0};
    int64_t C = m->dim;
    hl_status st = HL_OK;
    if (m->mode == HL_VAE_DOWNSAMPLE3D) {
        HL_TRY(hl_tape_pop(tp, &z, C));
        int64_t S = z.H * z.W;
        st = hl_tape_alloc(tp, &dz, z.T, z.H, z.W, C);
        if (st == HL_OK)
            st = hl_train_conv_backward(tp, &m->time_conv, &z, k_t2, k_nopad, d->x + S * C, dz.x);
        if (st == HL_OK) /* + frame 0 passed through */
            st = hl_add_gated(tp->ctx, S * C, 1, dz.x, 1, d->x, 1, NULL);
        hl_tape_release(tp, &z);
        hl_tape_release(tp, d);
        if (st != HL_OK) {
            hl_tape_release(tp, &dz);
            return st;
        }
        *d = dz;
    }
    st = hl_tape_pop(tp, &x, C);
    if (st == HL_OK) st = hl_tape_alloc(tp, &dx, x.T, x.H, x.W, C);
    if (st == HL_OK) st = hl_train_conv_backward(tp, &m->resample, &x, k_s2, k_pad_br, d->x, dx.x);
    hl_tape_release(tp, &x);
    hl_tape_release(tp, d);
    if (st != HL_OK) hl_tape_release(tp, &dx);
    else *d = dx;
    return st;
}

hl_status hl_train_resample_forward(hl_vae_tape *tp, hl_vae_resample *m, hl_tact *a) {
    switch (m->mode) {
    case HL_VAE_UPSAMPLE2D:
    case HL_VAE_UPSAMPLE3D: return upsample_forward(tp, m, a);
    case HL_VAE_DOWNSAMPLE2D:
    case HL_VAE_DOWNSAMPLE3D: return downsample_forward(tp, m, a);
    default: return HL_OK;
    }
}

hl_status hl_train_resample_backward(hl_vae_tape *tp, hl_vae_resample *m, hl_tact *d) {
    switch (m->mode) {
    case HL_VAE_UPSAMPLE2D:
    case HL_VAE_UPSAMPLE3D: return upsample_backward(tp, m, d);
    case HL_VAE_DOWNSAMPLE2D:
    case HL_VAE_DOWNSAMPLE3D: return downsample_backward(tp, m, d);
    default: return HL_OK;
    }
}

/* ---- head: silu(norm_out(x)), conv_out --------------------------------------------------------- */

hl_status hl_train_head_forward(hl_vae_tape *tp, const float *const *norm_out,
                                hl_vae_conv *conv_out, hl_tact *a) {
    hl_tact x = *a, n = {0}, y = {0};
    hl_status st = norm_silu(tp, *norm_out, &x, &n);
    if (st == HL_OK) st = causal_forward(tp, conv_out, &n, &y);
    if (st == HL_OK) st = hl_tape_push(tp, &x);
    else hl_tape_release(tp, &x);
    if (st == HL_OK) st = hl_tape_push(tp, &n);
    else hl_tape_release(tp, &n);
    a->x = NULL;
    if (st != HL_OK) hl_tape_release(tp, &y);
    else *a = y;
    return st;
}

hl_status hl_train_head_backward(hl_vae_tape *tp, const float *const *norm_out,
                                 hl_vae_conv *conv_out, hl_tact *d) {
    hl_tact x, n, dx = {0};
    int64_t C = conv_out->w.shape[1];
    HL_TRY(hl_tape_pop(tp, &n, C));
    HL_TRY(hl_tape_pop(tp, &x, C));
    hl_status st = causal_backward(tp, conv_out, &n, d->x, &dx);
    if (st == HL_OK) st = norm_silu_backward(tp, norm_out, &x, &dx);
    hl_tape_release(tp, &x);
    hl_tape_release(tp, &n);
    hl_tape_release(tp, d);
    if (st != HL_OK) hl_tape_release(tp, &dx);
    else *d = dx;
    return st;
}
