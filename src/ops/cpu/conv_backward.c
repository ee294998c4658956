/* cpu Conv3d backward (channels-last only; NCTHW returns HELIOS_ERR_UNSUPPORTED and runs on ref):
 * direct loops over OpenMP threads, vectorised along the channels.
 *   dx: one thread per input row (n, t, h); each pixel gathers, over the taps that read it, the
 *       output pixel's gradient times the weight, transposed once to [tap][O][C] so the inner
 *       loop runs along C; float32 sums of O·taps terms (as the forward's).
 *   dw: one thread per tap, double accumulators [O][C] over every output position (a sum of up
 *       to N·T·H·W outer products dy ⊗ x), added to dw once; db: Σ dy in double. */
#include <stdlib.h>
#include <string.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/ref/conv_util.h"

/* The input index along one axis read by output index `o` at tap `k`, or -1 (padding). */
static inline int64_t in_at(int64_t o, int k, int stride, int pad_lo, int64_t n) {
    int64_t i = o * stride - pad_lo + k;
    return i >= 0 && i < n ? i : -1;
}

/* The output index along one axis whose tap `k` reads input index `i`, or -1. */
static inline int64_t out_at(int64_t i, int k, int stride, int pad_lo, int64_t n_out) {
    int64_t p = i + pad_lo - k;
    if (p < 0 || p % stride) return -1;
    p /= stride;
    return p < n_out ? p : -1;
}

static void backward_data(const hl_conv3d_shape *s, const hl_conv_geom *g, const float *wt,
                          const float *dy, float *dx, int nthr) {
    const int64_t C = g->C, O = g->O, taps = g->kt * g->kh * g->kw, rows = g->N * g->T * g->H;
#pragma omp parallel for schedule(static) num_threads(nthr)
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = r / (g->T * g->H), t = r / g->H % g->T, h = r % g->H;
        for (int64_t w = 0; w < g->W; w++) {
            float *acc = dx + (r * g->W + w) * C;
            memset(acc, 0, (size_t)C * sizeof *acc);
            for (int a = 0; a < g->kt; a++) {
                int64_t to = out_at(t, a, s->stride[0], s->pad[0], g->To);
                if (to < 0) continue;
                for (int b = 0; b < g->kh; b++) {
                    int64_t ho = out_at(h, b, s->stride[1], s->pad[2], g->Ho);
                    if (ho < 0) continue;
                    for (int d = 0; d < g->kw; d++) {
                        int64_t wo = out_at(w, d, s->stride[2], s->pad[4], g->Wo);
                        if (wo < 0) continue;
                        const float *gy = dy + (((n * g->To + to) * g->Ho + ho) * g->Wo + wo) * O;
                        const float *wk = wt + ((a * g->kh + b) * g->kw + d) * O * C;
                        for (int64_t o = 0; o < O; o++) {
                            const float go = gy[o], *wr = wk + o * C;
#pragma omp simd
                            for (int64_t c = 0; c < C; c++) acc[c] += go * wr[c];
                        }
                    }
                }
            }
        }
    }
    (void)taps;
}

/* dw: one thread per tap (a, b, d), acc[tap] [O][C] in double += dy[p] ⊗ x[p's input] over every
 * output position p; db: Σ dy per channel. */
static void backward_weights(const hl_conv3d_shape *s, const hl_conv_geom *g, const float *x,
                             const float *dy, float *dw, float *db, double *acc_all, int nthr) {
    const int64_t C = g->C, O = g->O, taps = g->kt * g->kh * g->kw;
    const int64_t P = g->N * g->To * g->Ho * g->Wo;
    if (db)
        for (int64_t o = 0; o < O; o++) {
            double sb = 0.0;
            for (int64_t p = 0; p < P; p++) sb += dy[p * O + o];
            db[o] = (float)(db[o] + sb);
        }
    if (!dw) return;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr)
    for (int64_t k = 0; k < taps; k++) {
        const int a = (int)(k / (g->kh * g->kw)), b = (int)(k / g->kw % g->kh),
                  d = (int)(k % g->kw);
        double *acc = acc_all + k * O * C;
        memset(acc, 0, (size_t)(O * C) * sizeof *acc);
        for (int64_t n = 0; n < g->N; n++)
            for (int64_t to = 0; to < g->To; to++) {
                int64_t ti = in_at(to, a, s->stride[0], s->pad[0], g->T);
                if (ti < 0) continue;
                for (int64_t ho = 0; ho < g->Ho; ho++) {
                    int64_t hi = in_at(ho, b, s->stride[1], s->pad[2], g->H);
                    if (hi < 0) continue;
                    for (int64_t wo = 0; wo < g->Wo; wo++) {
                        int64_t wi = in_at(wo, d, s->stride[2], s->pad[4], g->W);
                        if (wi < 0) continue;
                        const float *gy = dy + (((n * g->To + to) * g->Ho + ho) * g->Wo + wo) * O;
                        const float *xr = x + (((n * g->T + ti) * g->H + hi) * g->W + wi) * C;
                        for (int64_t o = 0; o < O; o++) {
                            const double go = gy[o];
                            double *ar = acc + o * C;
#pragma omp simd
                            for (int64_t c = 0; c < C; c++) ar[c] += go * xr[c];
                        }
                    }
                }
            }
        for (int64_t o = 0; o < O; o++) /* dw[o][c][k]: each thread writes its own k */
            for (int64_t c = 0; c < C; c++)
                dw[(o * C + c) * taps + k] = (float)(dw[(o * C + c) * taps + k] + acc[o * C + c]);
    }
}

hl_status hl_cpu_conv3d_backward(const hl_ctx *ctx, const hl_conv3d_shape *s, const float *x,
                                 const hl_tensor *w, const float *dy, float *dx, float *dw,
                                 float *db) {
    if (s->layout != HL_NTHWC)
        return hl_fail(ctx->err, HELIOS_ERR_UNSUPPORTED,
                       "conv3d_backward: the cpu backend runs channels-last (NTHWC) only");
    hl_conv_geom g = {0};
    hl_conv3d_geometry(s, w, &g);
    const int64_t C = g.C, O = g.O, taps = g.kt * g.kh * g.kw;
    float *wt = dx ? malloc((size_t)(taps * O * C) * sizeof *wt) : NULL;
    double *acc = dw || db ? malloc((size_t)(O * taps * C) * sizeof *acc) : NULL;
    float *wf = dx ? malloc((size_t)(O * C * taps) * sizeof *wf) : NULL;
    if ((dx && (!wt || !wf)) || ((dw || db) && !acc)) {
        free(wt), free(acc), free(wf);
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "conv3d_backward: out of memory");
    }
    double macs = (double)(g.N * g.To * g.Ho * g.Wo) * (double)(O * C * taps);
    int nthr = hl_cpu_nthr_for(macs);
    if (dx) { /* w [O][C][tap] -> wt [tap][O][C] */
        hl_convert_to_f32(w->dtype, w->data, wf, (size_t)(O * C * taps));
        for (int64_t o = 0; o < O; o++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t k = 0; k < taps; k++)
                    wt[(k * O + o) * C + c] = wf[(o * C + c) * taps + k];
        backward_data(s, &g, wt, dy, dx, nthr);
    }
    if (dw || db) backward_weights(s, &g, x, dy, dw, db, acc, nthr);
    free(wt), free(acc), free(wf);
    return HL_OK;
}
