/* Reference backwards of the VAE data ops: channel RMS norm (+ SiLU), nearest ×2 upsampling and
 * the output clamp. Sums in double. */
#include <math.h>
#include <stdlib.h>

#include "ops/ops_backends.h"

hl_status hl_ref_channel_rmsnorm_backward(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,
                                          int64_t S, const float *x, const float *gamma, int silu,
                                          const float *dy, float *dx, float *dgamma) {
    /* channel stride cs and position stride ps of one batch element (as the forward) */
    int64_t cs = layout == HL_NCTHW ? S : 1, ps = layout == HL_NCTHW ? 1 : C;
    double scale = sqrt((double)C);
    double *acc = calloc((size_t)(2 * C),
                         sizeof *acc); /* dgamma sums, then one position's g·γ·√C */
    if (!acc) return hl_fail(ctx->err, HELIOS_ERR_OOM, "channel_rmsnorm_backward: out of memory");
    double *gs = acc + C;
    for (int64_t n = 0; n < N; n++)
        for (int64_t p = 0; p < S; p++) {
            int64_t base = n * C * S + p * ps;
            double ss = 0.0;
            for (int64_t c = 0; c < C; c++) ss += (double)x[base + c * cs] * x[base + c * cs];
            double norm = sqrt(ss), nc = norm > 1e-12 ? norm : 1e-12, dot = 0.0;
            for (int64_t c = 0; c < C; c++) {
                double xh = x[base + c * cs] / nc, g = dy[base + c * cs];
                if (silu) { /* d silu(u)/du = σ(u)·(1 + u·(1 - σ(u))) */
                    double u = xh * scale * gamma[c], sg = 1.0 / (1.0 + exp(-u));
                    g *= sg * (1.0 + u * (1.0 - sg));
                }
                acc[c] += g * xh * scale;
                gs[c] = g * scale * gamma[c];
                dot += gs[c] * xh;
            }
            if (!dx) continue;
            for (int64_t c = 0; c < C; c++) { /* dy[base + c·cs] was read above: dx == dy is fine */
                double xh = x[base + c * cs] / nc;
                dx[base + c * cs] = (float)(norm > 1e-12 ? (gs[c] - xh * dot) / nc : gs[c] / nc);
            }
        }
    for (int64_t c = 0; dgamma && c < C; c++) dgamma[c] = (float)(dgamma[c] + acc[c]);
    free(acc);
    return HL_OK;
}

hl_status hl_ref_upsample2x_backward(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,
                                     int64_t H, int64_t W, const float *dy, float *dx,
                                     int64_t lddx) {
    int64_t H2 = 2 * H, W2 = 2 * W;
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < H; i++)
            for (int64_t j = 0; j < W; j++)
                for (int64_t c = 0; c < C; c++) {
                    double s = 0.0;
                    for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++)
                            s += layout == HL_NTHWC
                                     ? dy[((n * H2 + 2 * i + a) * W2 + 2 * j + b) * C + c]
                                     : dy[((n * C + c) * H2 + 2 * i + a) * W2 + 2 * j + b];
                    if (layout == HL_NTHWC) dx[((n * H + i) * W + j) * lddx + c] = (float)s;
                    else dx[((n * C + c) * H + i) * W + j] = (float)s;
                }
    return HL_OK;
}

hl_status hl_ref_clamp_backward(const hl_ctx *ctx, int64_t n, const float *x, float lo, float hi,
                                const float *dy, float *dx) {
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] >= lo && x[i] <= hi ? dy[i] : 0.0f;
    return HL_OK;
}
