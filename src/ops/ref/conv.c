/* Reference Conv3d: the direct 7-deep loop, weights up-converted exactly, sums in double. */
#include <stdlib.h>

#include "ops/ops_backends.h"
#include "ops/ref/conv_util.h"
#include "ops/ref/ref_util.h"

/* Flat index of (n, c, t, h, w) in a (N, C, T, H, W) tensor stored in layout. */
static inline int64_t at5(hl_layout layout, int64_t C, int64_t T, int64_t H, int64_t W, int64_t n,
                          int64_t c, int64_t t, int64_t h, int64_t w) {
    if (layout == HL_NCTHW) return (((n * C + c) * T + t) * H + h) * W + w;
    return (((n * T + t) * H + h) * W + w) * C + c;
}

static inline double load_x(const void *x, hl_dtype dt, int64_t i) {
    return dt == HL_BF16 ? (double)hl_bf16_to_f32(((const hl_bf16 *)x)[i]) : ((const float *)x)[i];
}

hl_status hl_ref_conv3d(const hl_ctx *ctx, const hl_conv3d_shape *s, const void *x,
                        const hl_tensor *w, const hl_tensor *b, hl_conv_pack **pack, float *y) {
    hl_conv_geom g = {0};
    hl_conv3d_geometry(s, w, &g);
    int64_t K = g.C * g.kt * g.kh * g.kw, nw = g.O * K;
    float *wf = malloc((size_t)(nw ? nw : 1) * sizeof *wf);
    if (!wf)
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "conv3d: out of memory (%lld weights)",
                       (long long)nw);
    hl_convert_to_f32(w->dtype, w->data, wf, (size_t)nw);
    for (int64_t n = 0; n < g.N; n++)
        for (int64_t o = 0; o < g.O; o++)
            for (int64_t to = 0; to < g.To; to++)
                for (int64_t ho = 0; ho < g.Ho; ho++)
                    for (int64_t wo = 0; wo < g.Wo; wo++) {
                        double acc = b ? hl_ref_load(b, o) : 0.0;
                        const float *wo_ = wf + o * K;
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
                                        double xv = load_x(
                                            x, s->x_dtype,
                                            at5(s->layout, g.C, g.T, g.H, g.W, n, c, ti, hi, wi));
                                        acc += xv * wo_[((c * g.kt + a) * g.kh + bb) * g.kw + d];
                                    }
                                }
                            }
                        int64_t yi = at5(s->layout, g.O, g.To, g.Ho, g.Wo, n, o, to, ho, wo);
                        y[yi] = (float)(s->accumulate ? (double)y[yi] + acc : acc);
                    }
    free(wf);
    return HL_OK;
}

/* ref keeps no packs: pack is ignored (one made by another backend stays as it is). */
