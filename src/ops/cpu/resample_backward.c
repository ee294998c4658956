/* cpu backwards of the VAE data ops: channel RMS norm (+ SiLU), nearest x2 upsampling and the
 * clamp. Per position the arithmetic is ref's (double), so dx is identical to ref's; positions
 * run on OpenMP threads, and dgamma sums per-thread partials (ref's order only on one thread).
 * Channels-last (the VAE's layout) runs blocks of BP positions transposed to [C][BP], so every
 * loop runs across positions — vectorised, each lane doing ref's operations in ref's order (the
 * build is ISO C: no contraction into FMAs), exp called per value as ref calls it. */
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

enum { BP = 32 }; /* positions per block of the channels-last path */

/* np <= BP consecutive positions of channels-last data (position p, channel c at p·C + c);
 * w: 2·C·BP + 5·BP doubles of scratch; dgamma sums into acc (NULL: none). */
static void norm_block(int64_t C, int64_t np, const float *x, const float *gamma, int silu,
                       const float *dy, float *dx, double scale, double *w, double *acc) {
    double *xt = w, *gt = xt + C * BP, *ss = gt + C * BP, *nc = ss + BP, *dot = nc + BP;
    double *xh = dot + BP, *e = xh + BP;
    for (int64_t p = 0; p < BP; p++) /* lanes past np: zeros, computed and dropped */
        for (int64_t c = 0; c < C; c++) {
            xt[c * BP + p] = p < np ? x[p * C + c] : 0.0f;
            gt[c * BP + p] = p < np ? dy[p * C + c] : 0.0f;
        }
    for (int64_t p = 0; p < BP; p++) ss[p] = 0.0, dot[p] = 0.0;
    for (int64_t c = 0; c < C; c++)
        for (int64_t p = 0; p < BP; p++) ss[p] += xt[c * BP + p] * xt[c * BP + p];
    for (int64_t p = 0; p < BP; p++) {
        double norm = sqrt(ss[p]);
        nc[p] = norm > 1e-12 ? norm : 1e-12;
    }
    for (int64_t c = 0; c < C; c++) {
        double *g = gt + c * BP, gc = gamma[c];
        for (int64_t p = 0; p < BP; p++) xh[p] = xt[c * BP + p] / nc[p];
        if (silu) { /* d silu(u)/du = σ(u)·(1 + u·(1 - σ(u))) */
            for (int64_t p = 0; p < BP; p++) e[p] = exp(-(xh[p] * scale * gc));
            for (int64_t p = 0; p < BP; p++) {
                double u = xh[p] * scale * gc, sg = 1.0 / (1.0 + e[p]);
                g[p] *= sg * (1.0 + u * (1.0 - sg));
            }
        }
        for (int64_t p = 0; acc && p < np; p++) acc[c] += g[p] * xh[p] * scale;
        for (int64_t p = 0; p < BP; p++) {
            g[p] = g[p] * scale * gc; /* gs */
            dot[p] += g[p] * xh[p];
        }
    }
    if (!dx) return;
    for (int64_t c = 0; c < C; c++) {
        const double *gs = gt + c * BP;
        for (int64_t p = 0; p < BP; p++) {
            double h = xt[c * BP + p] / nc[p];
            xh[p] = nc[p] > 1e-12 ? (gs[p] - h * dot[p]) / nc[p] : gs[p] / nc[p];
        }
        for (int64_t p = 0; p < np; p++) dx[p * C + c] = (float)xh[p];
    }
}

hl_status hl_cpu_channel_rmsnorm_backward(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,
                                          int64_t S, const float *x, const float *gamma, int silu,
                                          const float *dy, float *dx, float *dgamma) {
    const int64_t cs = layout == HL_NCTHW ? S : 1, ps = layout == HL_NCTHW ? 1 : C, P = N * S;
    const double scale = sqrt((double)C);
    const int nthr = N * C * S >= BW_PAR_MIN ? omp_get_max_threads() : 1;
    const int64_t per = 2 * C + 2 * C * BP + 5 * BP; /* per thread: dgamma sums, gs, block */
    double *buf = calloc((size_t)(nthr * per), sizeof *buf);
    if (!buf) return hl_fail(ctx->err, HELIOS_ERR_OOM, "channel_rmsnorm_backward: out of memory");
#pragma omp parallel num_threads(nthr)
    {
        double *acc = buf + (int64_t)omp_get_thread_num() * per, *gs = acc + C, *w = gs + C;
        if (!dgamma) acc = NULL;
        if (layout == HL_NTHWC) {
#pragma omp for schedule(static)
            for (int64_t b = 0; b < (P + BP - 1) / BP; b++) {
                int64_t p0 = b * BP, np = P - p0 < BP ? P - p0 : BP;
                norm_block(C, np, x + p0 * C, gamma, silu, dy + p0 * C, dx ? dx + p0 * C : NULL,
                           scale, w, acc);
            }
        } else {
#pragma omp for schedule(static)
            for (int64_t p = 0; p < P; p++) {
                int64_t base = p / S * C * S + p % S * ps;
                norm_position(C, cs, x + base, gamma, silu, dy + base, dx ? dx + base : NULL, scale,
                              gs, acc);
            }
        }
    }
    for (int64_t c = 0; dgamma && c < C; c++) {
        double s = 0.0;
        for (int t = 0; t < nthr; t++) s += buf[(int64_t)t * per + c];
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
