/* cpu backwards of the VAE data ops: channel RMS norm (+ SiLU), nearest x2 upsampling and the
 * clamp. Per position the arithmetic is ref's (double), so dx is identical to ref's; positions
 * run on OpenMP threads, and dgamma sums per-thread partials (ref's order only on one thread). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cpu/cpu_internal.h"

enum { BW_PAR_MIN = 1 << 15 }; /* values before threads pay */

/* One position of channel_rmsnorm_backward (see hl_ref_channel_rmsnorm_backward); gs: C doubles
 * of scratch; dgamma sums into acc (NULL: none). */
static void norm_position(int64_t C, int64_t cs, const float *x, const float *gamma, int silu,
                          const float *dy, float *dx, double scale, double *gs, double *acc) {
    double ss = 0.0;
    for (int64_t c = 0; c < C; c++) ss += (double)x[c * cs] * x[c * cs];
    double norm = sqrt(ss), nc = norm > 1e-12 ? norm : 1e-12, dot = 0.0;
    for (int64_t c = 0; c < C; c++) {
        double xh = x[c * cs] / nc, g = dy[c * cs];
        if (silu) {
            double u = xh * scale * gamma[c], sg = 1.0 / (1.0 + exp(-u));
            g *= sg * (1.0 + u * (1.0 - sg));
        }
        if (acc) acc[c] += g * xh * scale;
        gs[c] = g * scale * gamma[c];
        dot += gs[c] * xh;
    }
    if (!dx) return;
    for (int64_t c = 0; c < C; c++) {
        double xh = x[c * cs] / nc;
        dx[c * cs] = (float)(norm > 1e-12 ? (gs[c] - xh * dot) / nc : gs[c] / nc);
    }
}

hl_status hl_cpu_channel_rmsnorm_backward(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,
                                          int64_t S, const float *x, const float *gamma, int silu,
                                          const float *dy, float *dx, float *dgamma) {
    const int64_t cs = layout == HL_NCTHW ? S : 1, ps = layout == HL_NCTHW ? 1 : C, P = N * S;
    const double scale = sqrt((double)C);
    const int nthr = N * C * S >= BW_PAR_MIN ? omp_get_max_threads() : 1;
    double *buf = calloc((size_t)(nthr * 2 * C), sizeof *buf); /* per thread: gs, dgamma sums */
    if (!buf) return hl_fail(ctx->err, HELIOS_ERR_OOM, "channel_rmsnorm_backward: out of memory");
#pragma omp parallel num_threads(nthr)
    {
        double *gs = buf + (int64_t)omp_get_thread_num() * 2 * C, *acc = dgamma ? gs + C : NULL;
#pragma omp for schedule(static)
        for (int64_t p = 0; p < P; p++) {
            int64_t base = p / S * C * S + p % S * ps;
            norm_position(C, cs, x + base, gamma, silu, dy + base, dx ? dx + base : NULL, scale, gs,
                          acc);
        }
    }
    for (int64_t c = 0; dgamma && c < C; c++) {
        double s = 0.0;
        for (int t = 0; t < nthr; t++) s += buf[(int64_t)t * 2 * C + C + c];
        dgamma[c] = (float)(dgamma[c] + s);
    }
    free(buf);
    return HL_OK;
}

hl_status hl_cpu_upsample2x_backward(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,
                                     int64_t H, int64_t W, const float *dy, float *dx,
                                     int64_t lddx) {
    const int64_t H2 = 2 * H, W2 = 2 * W, rows = N * H;
#pragma omp parallel for schedule(static) if (N * C * H * W >= BW_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) { /* (n, i) */
        int64_t n = r / H, i = r % H;
        for (int64_t j = 0; j < W; j++)
            for (int64_t c = 0; c < C; c++) {
                double s = 0.0; /* ref's order */
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++)
                        s += layout == HL_NTHWC
                                 ? dy[((n * H2 + 2 * i + a) * W2 + 2 * j + b) * C + c]
                                 : dy[((n * C + c) * H2 + 2 * i + a) * W2 + 2 * j + b];
                if (layout == HL_NTHWC) dx[(r * W + j) * lddx + c] = (float)s;
                else dx[((n * C + c) * H + i) * W + j] = (float)s;
            }
    }
    return HL_OK;
}

hl_status hl_cpu_clamp_backward(const hl_ctx *ctx, int64_t n, const float *x, float lo, float hi,
                                const float *dy, float *dx) {
#pragma omp parallel for schedule(static) if (n >= BW_PAR_MIN)
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] >= lo && x[i] <= hi ? dy[i] : 0.0f;
    return HL_OK;
}
