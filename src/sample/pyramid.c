/* pyramid.c — pyramid down/up sampling, block noise and renoise (see pyramid.h). */
#include "sample/pyramid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

hl_status hl_pyramid_down2x(const float *x, int64_t planes, int H, int W, float scale, float *y,
                            hl_error *err) {
    if (!x || !y || planes < 0)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "pyramid down2x: bad argument");
    if (H < 2 || W < 2 || H % 2 || W % 2)
        return hl_fail(err, HELIOS_ERR_SHAPE, "pyramid down2x: latent %dx%d does not halve cleanly",
                       H, W);
    int h = H / 2, w = W / 2;
    for (int64_t p = 0; p < planes; p++) {
        const float *src = x + p * (int64_t)H * W;
        float *dst = y + p * (int64_t)h * w;
        for (int i = 0; i < h; i++) {
            const float *r0 = src + (int64_t)(2 * i) * W, *r1 = r0 + W;
            for (int j = 0; j < w; j++) {
                /* torch: 0.5 (0.5 a + 0.5 b) + 0.5 (0.5 c + 0.5 d), then * scale; the halvings
                 * are exact, so only the two pair sums and their sum round */
                float top = 0.5f * r0[2 * j] + 0.5f * r0[2 * j + 1];
                float bot = 0.5f * r1[2 * j] + 0.5f * r1[2 * j + 1];
                dst[(int64_t)i * w + j] = (top * 0.5f + bot * 0.5f) * scale;
            }
        }
    }
    return HL_OK;
}

void hl_pyramid_up2x_nearest(const float *x, int64_t planes, int h, int w, float *y) {
    int W = 2 * w;
    for (int64_t p = 0; p < planes; p++) {
        const float *src = x + p * (int64_t)h * w;
        float *dst = y + p * (int64_t)(2 * h) * W;
        for (int i = 0; i < 2 * h; i++)
            for (int j = 0; j < W; j++) dst[(int64_t)i * W + j] = src[(int64_t)(i / 2) * w + j / 2];
    }
}

hl_status hl_pyramid_block_cholesky(double gamma, double L[16], hl_error *err) {
    if (!L || !(gamma > 0.0))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "block noise: gamma must be > 0");
    double A[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            A[i][j] = (i == j ? 1.0 + gamma : 0.0) - gamma + (i == j ? 1e-8 : 0.0);
    memset(L, 0, 16 * sizeof(double));
    for (int j = 0; j < 4; j++) {
        double d = A[j][j];
        for (int k = 0; k < j; k++) d -= L[j * 4 + k] * L[j * 4 + k];
        if (!(d > 0.0))
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "block noise: covariance for gamma %g is not positive definite", gamma);
        L[j * 4 + j] = sqrt(d);
        for (int i = j + 1; i < 4; i++) {
            double v = A[i][j];
            for (int k = 0; k < j; k++) v -= L[i * 4 + k] * L[j * 4 + k];
            L[i * 4 + j] = v / L[j * 4 + j];
        }
    }
    return HL_OK;
}

hl_status hl_pyramid_block_noise(const float *z, const double L[16], int64_t planes, int h, int w,
                                 hl_dtype out_dtype, float *noise, hl_error *err) {
    if (!z || !L || !noise || planes < 0 || h < 1 || w < 1)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "block noise: bad argument");
    if (out_dtype != HL_F32 && out_dtype != HL_BF16)
        return hl_fail(err, HELIOS_ERR_DTYPE, "block noise: output dtype %s",
                       hl_dtype_name(out_dtype));
    /* the reference casts its factor to float32 and multiplies in float32; its sgemm sums the
     * four terms in order with FMAs, which this reproduces bit for bit */
    float Lf[16];
    for (int i = 0; i < 16; i++) Lf[i] = (float)L[i];
    int W = 2 * w;
    for (int64_t p = 0; p < planes; p++) {
        float *dst = noise + p * (int64_t)(2 * h) * W;
        for (int by = 0; by < h; by++)
            for (int bx = 0; bx < w; bx++) {
                const float *zb = z + ((p * h + by) * (int64_t)w + bx) * 4;
                for (int k = 0; k < 4; k++) { /* n = z @ L^T */
                    float acc = 0.0f;
                    for (int m = 0; m < 4; m++) acc = fmaf(zb[m], Lf[k * 4 + m], acc);
                    if (out_dtype == HL_BF16) acc = hl_bf16_to_f32(hl_f32_to_bf16(acc));
                    dst[(int64_t)(2 * by + k / 2) * W + 2 * bx + k % 2] = acc;
                }
            }
    }
    return HL_OK;
}

hl_status hl_pyramid_sample_block_noise(hl_rng *g, double gamma, int64_t planes, int h, int w,
                                        hl_dtype out_dtype, float *noise, hl_error *err) {
    if (!g || planes < 0 || h < 1 || w < 1)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "block noise: bad argument");
    double L[16];
    HL_TRY(hl_pyramid_block_cholesky(gamma, L, err));
    int64_t blocks = planes * h * w;
    float *z = malloc((size_t)blocks * 4 * sizeof *z);
    if (!z) return hl_fail(err, HELIOS_ERR_OOM, "block noise: out of memory");
    hl_rng_randn_f32(g, z, blocks * 4);
    hl_status st = hl_pyramid_block_noise(z, L, planes, h, w, out_dtype, noise, err);
    free(z);
    return st;
}

void hl_pyramid_renoise(const float *x_up, const float *noise, int64_t n, double alpha, double beta,
                        float *out) {
    const float a = (float)alpha, b = (float)beta;
    for (int64_t i = 0; i < n; i++) out[i] = a * x_up[i] + b * noise[i];
}
