/* Reference Conv3d backward: the forward's 7-deep loop run once more, each product's two
 * partial derivatives scattered into double accumulators (dx, dw, db), stored once at the end. */
#include <stdlib.h>
#include <string.h>

#include "ops/ops_backends.h"
#include "ops/ref/conv_util.h"

/* Flat index of (n, c, t, h, w) in a (N, C, T, H, W) tensor stored in layout. */
static inline int64_t at5(hl_layout layout, int64_t C, int64_t T, int64_t H, int64_t W, int64_t n,
                          int64_t c, int64_t t, int64_t h, int64_t w) {
    if (layout == HL_NCTHW) return (((n * C + c) * T + t) * H + h) * W + w;
    return (((n * T + t) * H + h) * W + w) * C + c;
}

hl_status hl_ref_conv3d_backward(const hl_ctx *ctx, const hl_conv3d_shape *s, const float *x,
                                 const hl_tensor *w, const float *dy, float *dx, float *dw,
                                 float *db) {
    hl_conv_geom g = {0};
    hl_conv3d_geometry(s, w, &g);
    int64_t K = g.C * g.kt * g.kh * g.kw, nw = g.O * K, nx = g.N * g.C * g.T * g.H * g.W;
    float *wf = malloc((size_t)nw * sizeof *wf);
    double *gx = dx ? calloc((size_t)nx, sizeof *gx) : NULL;
    double *gw = dw ? calloc((size_t)nw, sizeof *gw) : NULL;
    double *gb = db ? calloc((size_t)g.O, sizeof *gb) : NULL;
    if (!wf || (dx && !gx) || (dw && !gw) || (db && !gb)) {
        free(wf), free(gx), free(gw), free(gb);
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "conv3d_backward: out of memory");
    }
    hl_convert_to_f32(w->dtype, w->data, wf, (size_t)nw);
    for (int64_t n = 0; n < g.N; n++)
        for (int64_t o = 0; o < g.O; o++)
            for (int64_t to = 0; to < g.To; to++)
                for (int64_t ho = 0; ho < g.Ho; ho++)
                    for (int64_t wo = 0; wo < g.Wo; wo++) {
                        double gy = dy[at5(s->layout, g.O, g.To, g.Ho, g.Wo, n, o, to, ho, wo)];
                        if (gb) gb[o] += gy;
                        if (!gx && !gw) continue;
                        for (int64_t c = 0; c < g.C; c++)
                            for (int64_t a = 0; a < g.kt; a++) {
                                int64_t ti = to * s->stride[0] - s->pad[0] + a;
                                if (ti < 0 || ti >= g.T) continue;
                                for (int64_t bb = 0; bb < g.kh; bb++) {
                                    int64_t hi = ho * s->stride[1] - s->pad[2] + bb;
                                    if (hi < 0 || hi >= g.H) continue;
                                    for (int64_t d = 0; d < g.kw; d++) {
                                        int64_t wi = wo * s->stride[2] - s->pad[4] + d;
                                        if (wi < 0 || wi >= g.W) continue;
                                        int64_t xi = at5(s->layout, g.C, g.T, g.H, g.W, n, c, ti,
                                                         hi, wi);
                                        int64_t k = o * K + ((c * g.kt + a) * g.kh + bb) * g.kw + d;
                                        if (gx) gx[xi] += gy * wf[k];
                                        if (gw) gw[k] += gy * x[xi];
                                    }
                                }
                            }
                    }
    for (int64_t i = 0; gx && i < nx; i++) dx[i] = (float)gx[i];
    for (int64_t i = 0; gw && i < nw; i++) dw[i] = (float)(dw[i] + gw[i]);
    for (int64_t i = 0; gb && i < g.O; i++) db[i] = (float)(db[i] + gb[i]);
    free(wf), free(gx), free(gw), free(gb);
    return HL_OK;
}
