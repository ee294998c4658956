/* Reference normalisations and their backwards: statistics and sums in double. */
#include <math.h>
#include <stdlib.h>

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
                           const float *w, const float *b, float eps, float *y, int64_t ldy,
                           hl_norm_saved *save) {
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * ldx;
        float *yr = y + m * ldy;
        double mu, rstd;
        row_stats(xr, D, &mu, &rstd, eps);
        if (save) save->mean[m] = (float)mu, save->rstd[m] = (float)rstd;
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
                         const float *w, float eps, float *y, int64_t ldy, hl_norm_saved *save) {
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * ldx;
        float *yr = y + m * ldy;
        double ss = 0.0;
        for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        double r = 1.0 / sqrt(ss / (double)D + eps);
        if (save) save->rstd[m] = (float)r;
        for (int64_t i = 0; i < D; i++) yr[i] = (float)((double)xr[i] * r * (w ? w[i] : 1.0));
    }
    return HL_OK;
}

/* The backwards, one row at a time from the saved float statistics (what every backend reads):
 * x̂ = (x - mean)·rstd, g = dy·w; dx = rstd·(g - mean(g) - x̂·mean(g·x̂)) (rms: no mean, no
 * mean(g) term); dw += Σ dy·x̂, db += Σ dy. Parameter sums in double over all rows, added once. */
static hl_status norm_backward(const hl_ctx *ctx, int rms, int64_t M, int64_t D, const float *x,
                               int64_t ldx, const float *w, const hl_norm_saved *saved,
                               const float *dy, int64_t lddy, float *dx, int64_t lddx, float *dw,
                               float *db) {
    double *acc = NULL;
    if (dw || db) {
        acc = calloc((size_t)(2 * D), sizeof *acc);
        if (!acc)
            return hl_fail(ctx->err, HELIOS_ERR_OOM, "norm backward: out of memory (D=%lld)",
                           (long long)D);
    }
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * ldx, *gr = dy + m * lddy;
        const double mu = rms ? 0.0 : saved->mean[m], r = saved->rstd[m];
        double sg = 0.0, sgx = 0.0;
        for (int64_t i = 0; i < D; i++) {
            double xh = ((double)xr[i] - mu) * r, g = (double)gr[i] * (w ? w[i] : 1.0);
            sg += g;
            sgx += g * xh;
            if (acc) acc[i] += (double)gr[i] * xh, acc[D + i] += gr[i];
        }
        const double mg = rms ? 0.0 : sg / (double)D, mgx = sgx / (double)D;
        if (dx)
            for (int64_t i = 0; i < D; i++) { /* dx may be dy: g is re-read before the store */
                double xh = ((double)xr[i] - mu) * r, g = (double)gr[i] * (w ? w[i] : 1.0);
                dx[m * lddx + i] = (float)(r * (g - mg - xh * mgx));
            }
    }
    for (int64_t i = 0; dw && i < D; i++) dw[i] = (float)(dw[i] + acc[i]);
    for (int64_t i = 0; db && i < D; i++) db[i] = (float)(db[i] + acc[D + i]);
    free(acc);
    return HL_OK;
}

hl_status hl_ref_layernorm_backward(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                    int64_t ldx, const float *w, const hl_norm_saved *saved,
                                    const float *dy, int64_t lddy, float *dx, int64_t lddx,
                                    float *dw, float *db) {
    return norm_backward(ctx, 0, M, D, x, ldx, w, saved, dy, lddy, dx, lddx, dw, db);
}

hl_status hl_ref_rmsnorm_backward(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                  int64_t ldx, const float *w, const hl_norm_saved *saved,
                                  const float *dy, int64_t lddy, float *dx, int64_t lddx,
                                  float *dw) {
    return norm_backward(ctx, 1, M, D, x, ldx, w, saved, dy, lddy, dx, lddx, dw, NULL);
}
