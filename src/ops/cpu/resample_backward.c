/* cpu backwards of the VAE data ops: channel RMS norm (+ SiLU), nearest x2 upsampling and the
 * clamp. Positions run on OpenMP threads, and dgamma sums per-thread partials (ref's order only
 * on one thread).
 * RMS norm, channels-last (the VAE's layout) with C a multiple of 16 on AVX-512: float32, a
 * position's C channels in C / 16 vectors (exp as hl_v_exp), dgamma summed in float32 over
 * blocks of BP positions and the blocks in double; within 1e-6 of ref's largest value in
 * test_vae_ops_grad (the tiny VAE's training step: this op 21% of it in double with libm's exp,
 * then ~4x faster). Otherwise per position the arithmetic is ref's (double), so dx is identical
 * to ref's: channels-last runs blocks of BP positions transposed to [C][BP], so every loop runs
 * across positions — vectorised, each lane doing ref's operations in ref's order (the build is
 * ISO C: no contraction into FMAs), exp called per value as ref calls it. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/vec_math.h"

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

#ifdef HL_CPU_AVX512
enum { CV_MAX = 8 }; /* up to 128 channels in vectors */

/* np <= BP consecutive channels-last positions, C = 16·nv channels, float32 (see the top);
 * dgamma's block sums added into acc (NULL: none). */
static void norm_block_v(int64_t nv, int64_t np, const float *x, const float *gamma, int silu,
                         const float *dy, float *dx, float scale, double *acc) {
    const __m512 one = _mm512_set1_ps(1.0f), vs = _mm512_set1_ps(scale);
    __m512 ga[CV_MAX], sgam[CV_MAX], dg[CV_MAX];
    for (int64_t v = 0; v < nv; v++) {
        ga[v] = _mm512_loadu_ps(gamma + 16 * v);
        sgam[v] = _mm512_mul_ps(vs, ga[v]);
        dg[v] = _mm512_setzero_ps();
    }
    for (int64_t p = 0; p < np; p++) {
        const float *xp = x + p * 16 * nv, *gp = dy + p * 16 * nv;
        __m512 xv[CV_MAX], gs[CV_MAX], ss = _mm512_setzero_ps(), dot = _mm512_setzero_ps();
        for (int64_t v = 0; v < nv; v++) {
            xv[v] = _mm512_loadu_ps(xp + 16 * v);
            ss = _mm512_fmadd_ps(xv[v], xv[v], ss);
        }
        const float norm = sqrtf(_mm512_reduce_add_ps(ss)), nc = norm > 1e-12f ? norm : 1e-12f;
        const __m512 inv = _mm512_set1_ps(1.0f / nc);
        for (int64_t v = 0; v < nv; v++) {
            const __m512 xh = _mm512_mul_ps(xv[v], inv);
            __m512 g = _mm512_loadu_ps(gp + 16 * v);
            if (silu) { /* d silu(u)/du = σ(u)·(1 + u·(1 - σ(u))) */
                const __m512 u = _mm512_mul_ps(xh, sgam[v]);
                const __m512 sg = _mm512_div_ps(
                    one, _mm512_add_ps(one, hl_v_exp(_mm512_sub_ps(_mm512_setzero_ps(), u))));
                g = _mm512_mul_ps(
                    g, _mm512_mul_ps(sg, _mm512_fmadd_ps(u, _mm512_sub_ps(one, sg), one)));
            }
            dg[v] = _mm512_fmadd_ps(g, xh, dg[v]);
            gs[v] = _mm512_mul_ps(g, sgam[v]);
            dot = _mm512_fmadd_ps(gs[v], xh, dot);
            xv[v] = xh;
        }
        if (!dx) continue;
        const __m512 d = _mm512_set1_ps(norm > 1e-12f ? _mm512_reduce_add_ps(dot) : 0.0f);
        for (int64_t v = 0; v < nv; v++)
            _mm512_storeu_ps(dx + p * 16 * nv + 16 * v,
                             _mm512_mul_ps(_mm512_fnmadd_ps(xv[v], d, gs[v]), inv));
    }
    if (!acc) return;
    for (int64_t v = 0; v < nv; v++) {
        float t[16];
        _mm512_storeu_ps(t, _mm512_mul_ps(dg[v], vs));
        for (int j = 0; j < 16; j++) acc[16 * v + j] += t[j];
    }
}
#endif

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
#ifdef HL_CPU_AVX512
        if (layout == HL_NTHWC && C % 16 == 0 && C / 16 <= CV_MAX) {
#pragma omp for schedule(static)
            for (int64_t b = 0; b < (P + BP - 1) / BP; b++) {
                int64_t p0 = b * BP, np = P - p0 < BP ? P - p0 : BP;
                norm_block_v(C / 16, np, x + p0 * C, gamma, silu, dy + p0 * C,
                             dx ? dx + p0 * C : NULL, (float)scale, acc);
            }
        } else
#endif
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
