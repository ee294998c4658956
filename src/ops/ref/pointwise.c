/* Reference element-wise ops and rotary embedding. */
#include <math.h>

#include "ops/ops_backends.h"

hl_status hl_ref_rope(const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx,
                      const float *rope) {
    int half = hd / 2;
    for (int64_t m = 0; m < M; m++) {
        const float *c = rope + m * hd, *s = c + half;
        for (int h = 0; h < H; h++) {
            float *xh = x + m * ldx + (int64_t)h * hd;
            for (int j = 0; j < half; j++) {
                float a = xh[2 * j], b = xh[2 * j + 1];
                xh[2 * j] = a * c[j] - b * s[j];
                xh[2 * j + 1] = a * s[j] + b * c[j];
            }
        }
    }
    return HL_OK;
}

hl_status hl_ref_gelu_tanh(const hl_ctx *ctx, int64_t n, const float *x, float *y) {
    const double k = 0.7978845608028654; /* sqrt(2/pi) */
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(0.5 * v * (1.0 + tanh(k * (v + 0.044715 * v * v * v))));
    }
    return HL_OK;
}

hl_status hl_ref_silu(const hl_ctx *ctx, int64_t n, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = (float)((double)x[i] / (1.0 + exp(-(double)x[i])));
    return HL_OK;
}

hl_status hl_ref_add_gated(const hl_ctx *ctx, int64_t M, int64_t D, float *x, int64_t ldx,
                           const float *y, int64_t ldy, const float *gate) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t i = 0; i < D; i++) x[m * ldx + i] += (gate ? gate[i] : 1.0f) * y[m * ldy + i];
    return HL_OK;
}

hl_status hl_ref_scale_heads(const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx,
                             const float *s) {
    for (int64_t m = 0; m < M; m++)
        for (int h = 0; h < H; h++)
            for (int d = 0; d < hd; d++) x[m * ldx + (int64_t)h * hd + d] *= s[h];
    return HL_OK;
}

hl_status hl_ref_gelu_tanh_mul(const hl_ctx *ctx, int64_t n, const float *x, const float *g,
                               float *y) {
    const double k = 0.7978845608028654; /* sqrt(2/pi) */
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(0.5 * v * (1.0 + tanh(k * (v + 0.044715 * v * v * v))) * g[i]);
    }
    return HL_OK;
}

hl_status hl_ref_relative_bias(const hl_ctx *ctx, int H, int64_t Sq, int64_t Sk, const float *rel,
                               float *bias) {
    for (int h = 0; h < H; h++)
        for (int64_t i = 0; i < Sq; i++)
            for (int64_t j = 0; j < Sk; j++)
                bias[((int64_t)h * Sq + i) * Sk + j] =
                    rel[(int64_t)h * (Sq + Sk - 1) + j - i + Sq - 1];
    return HL_OK;
}
