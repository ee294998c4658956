/* Reference VAE data ops: channel RMS norm (+ SiLU), nearest ×2 upsampling, casts and the
 * channels-first <-> channels-last transposes. Statistics in double. */
#include <math.h>

#include "ops/ops_backends.h"

static inline void store(void *y, hl_dtype dt, int64_t i, double v) {
    if (dt == HL_BF16) ((hl_bf16 *)y)[i] = hl_f32_to_bf16((float)v);
    else ((float *)y)[i] = (float)v;
}

hl_status hl_ref_channel_rmsnorm(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,
                                 int64_t S, const float *x, const float *gamma, int silu,
                                 hl_dtype y_dtype, void *y) {
    /* channel stride cs and position stride ps of one batch element */
    int64_t cs = layout == HL_NCTHW ? S : 1, ps = layout == HL_NCTHW ? 1 : C;
    double scale = sqrt((double)C);
    for (int64_t n = 0; n < N; n++)
        for (int64_t p = 0; p < S; p++) {
            int64_t base = n * C * S + p * ps;
            double ss = 0.0;
            for (int64_t c = 0; c < C; c++) ss += (double)x[base + c * cs] * x[base + c * cs];
            double norm = sqrt(ss);
            double r = scale / (norm > 1e-12 ? norm : 1e-12);
            for (int64_t c = 0; c < C; c++) {
                double v = (double)x[base + c * cs] * r * gamma[c];
                if (silu) v = v / (1.0 + exp(-v));
                store(y, y_dtype, base + c * cs, v);
            }
        }
    return HL_OK;
}

hl_status hl_ref_upsample2x(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C, int64_t H,
                            int64_t W, const float *x, int64_t ldx, hl_dtype y_dtype, void *y) {
    int64_t H2 = 2 * H, W2 = 2 * W;
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < H2; i++)
            for (int64_t j = 0; j < W2; j++)
                for (int64_t c = 0; c < C; c++) {
                    if (layout == HL_NTHWC)
                        store(y, y_dtype, ((n * H2 + i) * W2 + j) * C + c,
                              x[((n * H + i / 2) * W + j / 2) * ldx + c]);
                    else
                        store(y, y_dtype, ((n * C + c) * H2 + i) * W2 + j,
                              x[((n * C + c) * H + i / 2) * W + j / 2]);
                }
    return HL_OK;
}

hl_status hl_ref_cast(const hl_ctx *ctx, int64_t n, const float *x, hl_dtype y_dtype, void *y) {
    for (int64_t i = 0; i < n; i++) store(y, y_dtype, i, x[i]);
    return HL_OK;
}

hl_status hl_ref_to_channels_last(const hl_ctx *ctx, int64_t C, int64_t T, int64_t S,
                                  const float *x, int64_t x_cstride, hl_dtype y_dtype, void *y) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t s = 0; s < S; s++)
            for (int64_t c = 0; c < C; c++)
                store(y, y_dtype, (t * S + s) * C + c, x[c * x_cstride + t * S + s]);
    return HL_OK;
}

hl_status hl_ref_to_channels_first(const hl_ctx *ctx, int64_t C, int64_t T, int64_t S,
                                   const float *x, float lo, float hi, float *y,
                                   int64_t y_cstride) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t s = 0; s < S; s++)
            for (int64_t c = 0; c < C; c++) {
                float v = x[(t * S + s) * C + c];
                y[c * y_cstride + t * S + s] = v < lo ? lo : v > hi ? hi : v; /* NaN stays NaN */
            }
    return HL_OK;
}
