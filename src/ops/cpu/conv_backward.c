/* cpu Conv3d backward (channels-last only; NCTHW returns HELIOS_ERR_UNSUPPORTED and runs on ref).
 * oneDNN's direct kernels run what they can (conv_backward_dnnl.c: on AVX-512 both dx and dw);
 * the rest, and all of it under HELIOS_CONV_BACKWARD=gemm, runs here over our GEMM
 * (gemm/gemm.h). The tiny VAE's training step (64x64x33 clips, 2 threads, AMX Xeon): 0.92
 * samples/s here, 2.46 with oneDNN's kernels (perf below: dx's GEMM has K = O, 16-32, and
 * col2im / im2col move 27x the input). Here, in blocks of output positions p (rows of dy [P][O], P =
 * N·To·Ho·Wo; a block is CB_BLOCK_FLOATS / (taps·C) rows, at least CB_MIN_ROWS, taken in order;
 * its temporaries, a few MiB, live in the HL_SLOT_CONVB scratch under the instance's lock):
 *   dx: G[p][tap·C + c] = Σ_o dy[p][o] · w[o][c][tap]   (one GEMM per block: M rows, N = taps·C,
 *       K = O; float32 sums of O terms), then col2im: G is added into dx (zeroed first) at the
 *       input position each (p, tap) reads, padding skipped. The adds are split over threads by
 *       input row (n, t, h), so each dx element is summed by one thread in a fixed order (block,
 *       then (kt, kh) tap, output column, kw tap).
 *   dw: im2col X[p][tap·C + c] = x at the input position (p, tap) reads (0 in the padding), then
 *       dyᵀ·X per CB_DW_ROWS rows of the block (GEMM M = O, N = taps·C, K <= 256: float32 sums
 *       of at most 256 terms), each result added into double accumulators [O][tap·C], reordered
 *       to [O][C][kt][kh][kw] and added into dw at the end; db: Σ dy in double, in p order.
 * A pointwise conv (1x1x1, stride 1, no padding) skips both copies: X is x itself and the dx GEMM
 * writes dx. Results do not depend on the thread count (the GEMM's, the copies' and the sums'
 * order is fixed); they do depend on the GEMM kernel this CPU runs (gemm.h). Against ref (double
 * sums): within 5e-7 of each tensor's max in test_vae_ops_grad.
 * Measured (helios-tiny VAE, 64x64x33 clips, 1 thread, 2 cores shared with a training job; old
 * and new binaries alternated, medians of 3): a training step 3.7x as fast as the direct loops
 * this replaced (0.19 -> 0.70 samples/s); perf: 87% of the step in the conv backward before, about
 * half now (GEMM microkernel 24%, its packing 10%, col2im 9%, im2col 5%). */
#include <stdlib.h>
#include <string.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/gemm/gemm.h"
#include "ops/ref/conv_util.h"

/* G and X hold a block of rows of taps·C floats each: 1 MiB, in L2 between the GEMM that
 * writes G and the col2im that reads it. */
enum { CB_BLOCK_FLOATS = 1 << 18, CB_MIN_ROWS = 64, CB_DW_ROWS = 256 };

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

/* col2im of the block of output positions [p0, p1): dx += G (rows p - p0, taps·C wide) at the
 * input positions the block reads. Threads take input rows (n, t, h), in the range of rows the
 * block can reach. */
static void col2im(const hl_conv3d_shape *s, const hl_conv_geom *g, int64_t p0, int64_t p1,
                   const float *G, float *dx, int nthr) {
    const int64_t C = g->C, KC = g->kt * g->kh * g->kw * C, Wo = g->Wo;
    /* the input rows reachable: from (n0, first t of to0) to (n1, last t of to1) */
    const int64_t nt0 = p0 / Wo / g->Ho, nt1 = (p1 - 1) / Wo / g->Ho;
    int64_t t0 = nt0 % g->To * s->stride[0] - s->pad[0],
            t1 = nt1 % g->To * s->stride[0] - s->pad[0] + g->kt - 1;
    t0 = t0 < 0 ? 0 : t0 > g->T ? g->T : t0;
    t1 = t1 < -1 ? -1 : t1 > g->T - 1 ? g->T - 1 : t1;
    const int64_t r0 = (nt0 / g->To * g->T + t0) * g->H;
    int64_t r1 = (nt1 / g->To * g->T + t1 + 1) * g->H;
    if (r1 < r0) r1 = r0;
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1)
    for (int64_t r = r0; r < r1; r++) {
        const int64_t n = r / (g->T * g->H), t = r / g->H % g->T, h = r % g->H;
        float *dxr = dx + r * g->W * C;
        for (int a = 0; a < g->kt; a++) {
            const int64_t to = out_at(t, a, s->stride[0], s->pad[0], g->To);
            if (to < 0) continue;
            for (int b = 0; b < g->kh; b++) {
                const int64_t ho = out_at(h, b, s->stride[1], s->pad[2], g->Ho);
                if (ho < 0) continue;
                const int64_t q = ((n * g->To + to) * g->Ho + ho) * Wo; /* this output row */
                const int64_t wlo = p0 - q > 0 ? p0 - q : 0, whi = p1 - q < Wo ? p1 - q : Wo;
                for (int64_t wo = wlo; wo < whi; wo++) {
                    const float *gp = G + (q + wo - p0) * KC + (a * g->kh + b) * g->kw * C;
                    for (int d = 0; d < g->kw; d++) {
                        const int64_t wi = in_at(wo, d, s->stride[2], s->pad[4], g->W);
                        if (wi < 0) continue;
                        float *dst = dxr + wi * C;
                        const float *src = gp + d * C;
#pragma omp simd
                        for (int64_t c = 0; c < C; c++) dst[c] += src[c];
                    }
                }
            }
        }
    }
}

/* im2col of the block [p0, p1): X[p - p0][tap·C + c] = x at the position (p, tap) reads, or 0. */
static void im2col(const hl_conv3d_shape *s, const hl_conv_geom *g, int64_t p0, int64_t p1,
                   const float *x, float *X, int nthr) {
    const int64_t C = g->C, KC = g->kt * g->kh * g->kw * C;
    const size_t row = (size_t)C * sizeof *X;
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1)
    for (int64_t p = p0; p < p1; p++) {
        const int64_t wo = p % g->Wo, ho = p / g->Wo % g->Ho, to = p / (g->Wo * g->Ho) % g->To,
                      n = p / (g->Wo * g->Ho * g->To);
        float *xc = X + (p - p0) * KC;
        for (int a = 0; a < g->kt; a++) {
            const int64_t ti = in_at(to, a, s->stride[0], s->pad[0], g->T);
            for (int b = 0; b < g->kh; b++) {
                const int64_t hi = in_at(ho, b, s->stride[1], s->pad[2], g->H);
                for (int d = 0; d < g->kw; d++, xc += C) {
                    const int64_t wi = in_at(wo, d, s->stride[2], s->pad[4], g->W);
                    if (ti < 0 || hi < 0 || wi < 0) memset(xc, 0, row);
                    else memcpy(xc, x + (((n * g->T + ti) * g->H + hi) * g->W + wi) * C, row);
                }
            }
        }
    }
}

static size_t al64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

static hl_status run(const hl_ctx *ctx, const hl_conv3d_shape *s, const hl_conv_geom *g,
                     const float *x, const hl_tensor *w, const float *dy, float *dx, float *dw,
                     float *db) {
    const int64_t C = g->C, O = g->O, taps = g->kt * g->kh * g->kw, KC = taps * C;
    const int64_t P = g->N * g->To * g->Ho * g->Wo;
    const int point = taps == 1 && s->stride[0] == 1 && s->stride[1] == 1 && s->stride[2] == 1 &&
                      !s->pad[0] && !s->pad[1] && !s->pad[2] && !s->pad[3] && !s->pad[4] &&
                      !s->pad[5];
    int64_t nb = KC > 0 ? CB_BLOCK_FLOATS / KC : P;
    if (nb < CB_MIN_ROWS) nb = CB_MIN_ROWS;
    if (nb > P) nb = P;
    /* scratch: wt [O][KC] (dx), G (dx) and X (dw) [nb][KC], dWb [O][KC] f32, acc [O][KC] and
     * sb [O] double */
    const size_t b_wt = dx ? al64((size_t)(O * KC) * 4) : 0,
                 b_g = dx && !point ? al64((size_t)(nb * KC) * 4) : 0,
                 b_x = dw && !point ? al64((size_t)(nb * KC) * 4) : 0,
                 b_dwb = al64((size_t)(O * KC) * 4), b_acc = dw ? al64((size_t)(O * KC) * 8) : 0,
                 b_sb = db ? al64((size_t)O * 8) : 0;
    char *buf = hl_cpu_scratch(hl_cpu_of(ctx), HL_SLOT_CONVB,
                               b_wt + b_g + b_x + b_dwb + b_acc + b_sb + 64);
    if (!buf) return HELIOS_ERR_OOM;
    float *wt = (float *)buf, *G = (float *)(buf + b_wt), *X = (float *)(buf + b_wt + b_g),
          *dwb = (float *)(buf + b_wt + b_g + b_x);
    double *acc = (double *)(buf + b_wt + b_g + b_x + b_dwb),
           *sb = (double *)(buf + b_wt + b_g + b_x + b_dwb + b_acc);
    if (dx) { /* w [O][C][tap] -> wt [O][tap][C] (dwb holds w as float32 meanwhile) */
        const float *wf = w->data;
        if (w->dtype != HL_F32)
            hl_convert_to_f32(w->dtype, w->data, dwb, (size_t)(O * KC)), wf = dwb;
        for (int64_t o = 0; o < O; o++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t k = 0; k < taps; k++)
                    wt[o * KC + k * C + c] = wf[(o * C + c) * taps + k];
        if (!point) memset(dx, 0, (size_t)(g->N * g->T * g->H * g->W * C) * sizeof *dx);
    }
    if (dw) memset(acc, 0, (size_t)(O * KC) * sizeof *acc);
    if (db) memset(sb, 0, (size_t)O * sizeof *sb);
    for (int64_t p0 = 0; p0 < P; p0 += nb) {
        const int64_t p1 = p0 + nb < P ? p0 + nb : P, m = p1 - p0;
        const float *dyb = dy + p0 * O;
        const int nthr = hl_cpu_nthr_for((double)m * (double)(O * KC));
        if (db)
            for (int64_t p = 0; p < m; p++)
#pragma omp simd
                for (int64_t o = 0; o < O; o++) sb[o] += dyb[p * O + o];
        if (dx) {
            float *Gb = point ? dx + p0 * C : G;
            if (hl_gemm_f32(HL_GEMM_AUTO, nthr, 0, 0, m, KC, O, dyb, O, wt, KC, 0, Gb, KC) != 0)
                return HELIOS_ERR_OOM;
            if (!point) col2im(s, g, p0, p1, G, dx, nthr);
        }
        if (dw) {
            const float *Xb = point ? x + p0 * C : X;
            if (!point) im2col(s, g, p0, p1, x, X, nthr);
            for (int64_t k0 = 0; k0 < m; k0 += CB_DW_ROWS) { /* float32 sums of <= 256 terms */
                const int64_t k1 = k0 + CB_DW_ROWS < m ? k0 + CB_DW_ROWS : m;
                if (hl_gemm_f32(HL_GEMM_AUTO, nthr, 1, 0, O, KC, k1 - k0, dyb + k0 * O, O,
                                Xb + k0 * KC, KC, 0, dwb, KC) != 0)
                    return HELIOS_ERR_OOM;
#pragma omp simd
                for (int64_t i = 0; i < O * KC; i++) acc[i] += dwb[i];
            }
        }
    }
    if (db)
        for (int64_t o = 0; o < O; o++) db[o] = (float)(db[o] + sb[o]);
    if (dw) /* acc [O][tap][C] -> dw [O][C][tap] */
        for (int64_t o = 0; o < O; o++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t k = 0; k < taps; k++) {
                    float *d = dw + (o * C + c) * taps + k;
                    *d = (float)(*d + acc[o * KC + k * C + c]);
                }
    return HL_OK;
}

/* oneDNN's direct kernels run what they can (conv_backward_dnnl.c) unless the environment says
 * HELIOS_CONV_BACKWARD=gemm (read on every call: tests run both sides in one process). */
static int onednn_wanted(void) {
    const char *e = getenv("HELIOS_CONV_BACKWARD");
    return !(e && !strcmp(e, "gemm"));
}

hl_status hl_cpu_conv3d_backward(const hl_ctx *ctx, const hl_conv3d_shape *s, const float *x,
                                 const hl_tensor *w, const float *dy, float *dx, float *dw,
                                 float *db) {
    if (s->layout != HL_NTHWC)
        return hl_fail(ctx->err, HELIOS_ERR_UNSUPPORTED,
                       "conv3d_backward: the cpu backend runs channels-last (NTHWC) only");
    hl_conv_geom g = {0};
    hl_conv3d_geometry(s, w, &g);
    hl_cpu_lock(hl_cpu_of(ctx));
    const int want = (dx ? HL_CONVB_DX : 0) | (dw || db ? HL_CONVB_DW : 0);
    int done = 0;
    hl_status st = HL_OK;
    if (onednn_wanted()) st = hl_cpu_conv3d_backward_dnnl(ctx, s, &g, x, w, dy, dx, dw, db, &done);
    if (st == HELIOS_ERR_UNSUPPORTED) st = HL_OK, done = 0; /* no primitive: ours runs it all */
    if (st == HL_OK && (want & ~done)) {
        const int dw_done = done & HL_CONVB_DW;
        st = run(ctx, s, &g, x, w, dy, done & HL_CONVB_DX ? NULL : dx, dw_done ? NULL : dw,
                 dw_done ? NULL : db);
        if (st != HL_OK) hl_fail(ctx->err, st, "conv3d_backward: out of memory");
    }
    hl_cpu_unlock(hl_cpu_of(ctx));
    return st;
}
