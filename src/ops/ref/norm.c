/* Reference normalisations: statistics in double. */
#include <math.h>

#include "ops/ops_backends.h"

static void row_stats(const float *x, int64_t D, double *mean, double *rstd, float eps) {
    double s = 0.0, ss = 0.0;
    for (int64_t i = 0; i < D; i++) s += x[i];
    double mu = s / (double)D;
    for (int64_t i = 0; i < D; i++) ss += ((double)x[i] - mu) * ((double)x[i] - mu);
    *mean = mu;
    *rstd = 1.0 / sqrt(ss / (double)D + eps);
}

hl_status hl_ref_layernorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                           const float *w, const float *b, float eps, float *y, int64_t ldy) {
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * ldx;
        float *yr = y + m * ldy;
        double mu, rstd;
        row_stats(xr, D, &mu, &rstd, eps);
        for (int64_t i = 0; i < D; i++) {
            double n = ((double)xr[i] - mu) * rstd;
            yr[i] = (float)(n * (w ? w[i] : 1.0) + (b ? b[i] : 0.0));
        }
    }
    return HL_OK;
}

hl_status hl_ref_layernorm_modulate(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                    int64_t ldx, const float *scale, const float *shift, float eps,
                                    float *y, int64_t ldy) {
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * ldx;
        float *yr = y + m * ldy;
        double mu, rstd;
        row_stats(xr, D, &mu, &rstd, eps);
        for (int64_t i = 0; i < D; i++)
            yr[i] = (float)(((double)xr[i] - mu) * rstd * (1.0 + scale[i]) + shift[i]);
    }
    return HL_OK;
}

hl_status hl_ref_rmsnorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                         const float *w, float eps, float *y, int64_t ldy) {
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * ldx;
        float *yr = y + m * ldy;
        double ss = 0.0;
        for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        double r = 1.0 / sqrt(ss / (double)D + eps);
        for (int64_t i = 0; i < D; i++) yr[i] = (float)((double)xr[i] * r * (w ? w[i] : 1.0));
    }
    return HL_OK;
}
