/* The geometry of an hl_conv3d call (used by the backends) and its argument check (used once,
 * by ops.c, for every backend). */
#ifndef HL_CONV_UTIL_H
#define HL_CONV_UTIL_H

#include "ops/ops.h"

/* The resolved geometry of one call. */
typedef struct hl_conv_geom {
    int64_t N, C, T, H, W; /* x */
    int64_t O, kt, kh, kw; /* weight */
    int64_t To, Ho, Wo;    /* y */
} hl_conv_geom;

/* The geometry of a call that hl_conv3d_check accepted. */
static inline void hl_conv3d_geometry(const hl_conv3d_shape *s, const hl_tensor *w,
                                      hl_conv_geom *g) {
    g->N = s->N, g->C = s->C, g->T = s->T, g->H = s->H, g->W = s->W;
    g->O = w->shape[0];
    g->kt = w->ndim == 5 ? w->shape[2] : 1;
    g->kh = w->shape[w->ndim - 2];
    g->kw = w->shape[w->ndim - 1];
    g->To = hl_conv_out_len(g->T, g->kt, s->stride[0], s->pad[0], s->pad[1]);
    g->Ho = hl_conv_out_len(g->H, g->kh, s->stride[1], s->pad[2], s->pad[3]);
    g->Wo = hl_conv_out_len(g->W, g->kw, s->stride[2], s->pad[4], s->pad[5]);
}

/* Validates every argument of hl_conv3d and fills g. Failures name the offending value. */
static inline hl_status hl_conv3d_check(const hl_ctx *ctx, const hl_conv3d_shape *s, const void *x,
                                        const hl_tensor *w, const hl_tensor *b, const float *y,
                                        hl_conv_geom *g) {
    hl_error *err = ctx->err;
    if (!s || !w || !w->data)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "conv3d: no shape or weight");
    if (s->layout != HL_NCTHW && s->layout != HL_NTHWC)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "conv3d: unknown layout %d", (int)s->layout);
    if (s->x_dtype != HL_F32 && s->x_dtype != HL_BF16)
        return hl_fail(err, HELIOS_ERR_DTYPE, "conv3d: input dtype %s (F32 or BF16)",
                       hl_dtype_name(s->x_dtype));
    if (w->dtype != HL_F32 && w->dtype != HL_BF16)
        return hl_fail(err, HELIOS_ERR_DTYPE, "conv3d: weight dtype %s (F32 or BF16)",
                       hl_dtype_name(w->dtype));
    if ((w->ndim != 5 && w->ndim != 4) || !hl_tensor_is_contiguous(w))
        return hl_fail(err, HELIOS_ERR_SHAPE,
                       "conv3d: weight must be a contiguous [O, C, kt, kh, kw] or [O, C, kh, kw]");
    g->N = s->N, g->C = s->C, g->T = s->T, g->H = s->H, g->W = s->W;
    g->O = w->shape[0];
    g->kt = w->ndim == 5 ? w->shape[2] : 1;
    g->kh = w->shape[w->ndim - 2];
    g->kw = w->shape[w->ndim - 1];
    if (g->N < 0 || g->C < 0 || g->T < 0 || g->H < 0 || g->W < 0)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "conv3d: negative input size");
    if (w->shape[1] != g->C)
        return hl_fail(err, HELIOS_ERR_SHAPE, "conv3d: weight has %lld input channels, x has %lld",
                       (long long)w->shape[1], (long long)g->C);
    if (g->O < 1 || g->kt < 1 || g->kh < 1 || g->kw < 1)
        return hl_fail(err, HELIOS_ERR_SHAPE, "conv3d: empty weight");
    for (int i = 0; i < 3; i++)
        if (s->stride[i] < 1)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "conv3d: stride %d < 1", s->stride[i]);
    for (int i = 0; i < 6; i++)
        if (s->pad[i] < 0 || s->pad[i] > (1 << 20))
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "conv3d: padding %d out of range",
                           s->pad[i]);
    if (b) {
        if (b->dtype != HL_F32 && b->dtype != HL_BF16)
            return hl_fail(err, HELIOS_ERR_DTYPE, "conv3d: bias dtype %s", hl_dtype_name(b->dtype));
        if (!b->data || hl_tensor_numel(b) != g->O || !hl_tensor_is_contiguous(b))
            return hl_fail(err, HELIOS_ERR_SHAPE, "conv3d: bias has %lld values, O=%lld",
                           (long long)hl_tensor_numel(b), (long long)g->O);
    }
    hl_conv3d_geometry(s, w, g); /* the output lengths, now that the strides are >= 1 */
    int64_t nx, ny, t;
    if (!hl_mul_ok(g->N, g->C, &t) || !hl_mul_ok(t, g->T, &t) || !hl_mul_ok(t, g->H, &t) ||
        !hl_mul_ok(t, g->W, &nx) || !hl_mul_ok(g->N, g->O, &t) || !hl_mul_ok(t, g->To, &t) ||
        !hl_mul_ok(t, g->Ho, &t) || !hl_mul_ok(t, g->Wo, &ny))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "conv3d: sizes overflow");
    if ((nx > 0 && !x) || (ny > 0 && !y))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "conv3d: NULL input or output");
    return HL_OK;
}

#endif
