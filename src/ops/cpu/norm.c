/* cpu normalisations: layernorm, layernorm_modulate, rmsnorm, and the backwards of layernorm and
 * rmsnorm. OpenMP over rows, AVX-512 within the forwards (a scalar loop elsewhere), OpenMP SIMD
 * loops (any vector width: AVX2 here) in the backwards.
 *
 * Statistics: two passes (mean, then the sum of squared deviations: no cancellation as in
 * E[x²] - E[x]²), each accumulated in 64 float32 lanes (4 vectors) and reduced in double, so a
 * lane sums D/64 values (24 for D = 1536): far below the 1e-5 the tests ask. */
#include <math.h>
#include <omp.h>

#include <string.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/vec_math.h"

enum { NORM_PAR_MIN = 1 << 15 }; /* elements before threads pay */

/* Σ x[i] over n values. */
static double row_sum(const float *x, int64_t n) {
    int64_t i = 0;
    double s = 0.0;
#ifdef HL_CPU_AVX512
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
    float lanes[64];
    _mm512_storeu_ps(lanes, a0);
    _mm512_storeu_ps(lanes + 16, a1);
    _mm512_storeu_ps(lanes + 32, a2);
    _mm512_storeu_ps(lanes + 48, a3);
    for (int l = 0; l < 64; l++) s += lanes[l];
#endif
    for (; i < n; i++) s += x[i];
    return s;
}

/* Σ (x[i] - c)² over n values. */
static double row_sum_sq(const float *x, int64_t n, float c) {
    int64_t i = 0;
    double s = 0.0;
#ifdef HL_CPU_AVX512
    const __m512 vc = _mm512_set1_ps(c);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 64 <= n; i += 64) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), vc);
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vc);
        __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 32), vc);
        __m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 48), vc);
        a0 = _mm512_fmadd_ps(d0, d0, a0);
        a1 = _mm512_fmadd_ps(d1, d1, a1);
        a2 = _mm512_fmadd_ps(d2, d2, a2);
        a3 = _mm512_fmadd_ps(d3, d3, a3);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), vc);
        a0 = _mm512_fmadd_ps(d, d, a0);
    }
    float lanes[64];
    _mm512_storeu_ps(lanes, a0);
    _mm512_storeu_ps(lanes + 16, a1);
    _mm512_storeu_ps(lanes + 32, a2);
    _mm512_storeu_ps(lanes + 48, a3);
    for (int l = 0; l < 64; l++) s += lanes[l];
#endif
    for (; i < n; i++) s += ((double)x[i] - c) * ((double)x[i] - c);
    return s;
}

/* y[i] = ((x[i] - mean)·rstd)·mul[i] + add[i], the mean given as mean_hi + mean_lo (a float
 * pair, so that a large mean loses nothing to rounding); mul NULL = 1, add NULL = 0, plus1: mul
 * is used as (1 + mul[i]) (adaLN's scale). y may be x. */
static void row_affine(const float *x, int64_t n, float mean_hi, float mean_lo, float rstd,
                       const float *mul, int plus1, const float *add, float *y) {
    int64_t i = 0;
#ifdef HL_CPU_AVX512
    const __m512 vh = _mm512_set1_ps(mean_hi), vl = _mm512_set1_ps(mean_lo);
    const __m512 vr = _mm512_set1_ps(rstd), one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vh), vl);
        __m512 v = _mm512_mul_ps(d, vr);
        if (mul) {
            __m512 w = _mm512_loadu_ps(mul + i);
            v = _mm512_mul_ps(v, plus1 ? _mm512_add_ps(w, one) : w);
        }
        if (add) v = _mm512_add_ps(v, _mm512_loadu_ps(add + i));
        _mm512_storeu_ps(y + i, v);
    }
#endif
    for (; i < n; i++) {
        float v = ((x[i] - mean_hi) - mean_lo) * rstd;
        if (mul) v *= plus1 ? 1.0f + mul[i] : mul[i];
        if (add) v += add[i];
        y[i] = v;
    }
}

typedef enum { NORM_LAYER, NORM_MODULATE, NORM_RMS } norm_kind;

/* One row; with save, its statistics go to mean[0] (not for rms) and rstd[0]. */
static void norm_row(norm_kind kind, const float *x, int64_t D, const float *w, const float *b,
                     float eps, float *y, float *mean_out, float *rstd_out) {
    if (kind == NORM_RMS) {
        float r = (float)(1.0 / sqrt(row_sum_sq(x, D, 0.0f) / (double)D + eps));
        if (rstd_out) *rstd_out = r;
        row_affine(x, D, 0.0f, 0.0f, r, w, 0, NULL, y);
        return;
    }
    double mean = row_sum(x, D) / (double)D;
    float mean_hi = (float)mean, mean_lo = (float)(mean - mean_hi);
    /* deviations from the float mean: its rounding shifts the variance by (mean - mean_hi)²,
     * ~2^-48 mean², nothing */
    float rstd = (float)(1.0 / sqrt(row_sum_sq(x, D, mean_hi) / (double)D + eps));
    if (mean_out) *mean_out = mean_hi, *rstd_out = rstd;
    row_affine(x, D, mean_hi, mean_lo, rstd, w, kind == NORM_MODULATE, b, y);
}

static hl_status norm_rows(norm_kind kind, int64_t M, int64_t D, const float *x, int64_t ldx,
                           const float *w, const float *b, float eps, float *y, int64_t ldy,
                           hl_norm_saved *save) {
    float *mean = save && kind == NORM_LAYER ? save->mean : NULL, *rstd = save ? save->rstd : NULL;
#pragma omp parallel for schedule(static) if (M * D >= NORM_PAR_MIN)
    for (int64_t m = 0; m < M; m++)
        norm_row(kind, x + m * ldx, D, w, b, eps, y + m * ldy, mean ? mean + m : NULL,
                 rstd ? rstd + m : NULL);
    return HL_OK;
}

hl_status hl_cpu_layernorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                           const float *w, const float *b, float eps, float *y, int64_t ldy,
                           hl_norm_saved *save) {
    return norm_rows(NORM_LAYER, M, D, x, ldx, w, b, eps, y, ldy, save);
}

hl_status hl_cpu_layernorm_modulate(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                    int64_t ldx, const float *scale, const float *shift, float eps,
                                    float *y, int64_t ldy) {
    return norm_rows(NORM_MODULATE, M, D, x, ldx, scale, shift, eps, y, ldy, NULL);
}

hl_status hl_cpu_rmsnorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                         const float *w, float eps, float *y, int64_t ldy, hl_norm_saved *save) {
    return norm_rows(NORM_RMS, M, D, x, ldx, w, NULL, eps, y, ldy, save);
}

/* ---- backwards --------------------------------------------------------------------------------
 * Per row: x̂ = (x - mean)·rstd (rms: x·rstd), g = dy·w; dx = rstd·(g - mean(g) - x̂·mean(g·x̂))
 * (rms without the mean(g) term). The row sums run in float32 over SIMD lanes (reduction
 * clauses), like the forward's statistics. Parameter gradients: each thread sums its static
 * share of the rows into its own [2, D] partial (scratch), then the partials are added to dw, db
 * in thread order — deterministic for a thread count. The mean is the float the forward saved:
 * the same x̂ for the forward, ref and this. */
static void norm_bwd_row(int rms, const float *x, const float *dy, int64_t D, const float *w,
                         float mu, float r, float *dx, float *pw, float *pb) {
    float sg = 0.0f, sgx = 0.0f;
#pragma omp simd reduction(+ : sg, sgx)
    for (int64_t i = 0; i < D; i++) {
        float xh = (x[i] - mu) * r, g = w ? dy[i] * w[i] : dy[i];
        sg += g;
        sgx += g * xh;
    }
    if (pw || pb) {
#pragma omp simd
        for (int64_t i = 0; i < D; i++) {
            float xh = (x[i] - mu) * r;
            if (pw) pw[i] += dy[i] * xh;
            if (pb) pb[i] += dy[i];
        }
    }
    if (dx) {
        const float mg = rms ? 0.0f : sg / (float)D, mgx = sgx / (float)D;
#pragma omp simd
        for (int64_t i = 0; i < D; i++) { /* dx may be dy: dy[i] is read before dx[i] is written */
            float xh = (x[i] - mu) * r, g = w ? dy[i] * w[i] : dy[i];
            dx[i] = r * (g - mg - xh * mgx);
        }
    }
}

static hl_status norm_backward(const hl_ctx *ctx, int rms, int64_t M, int64_t D, const float *x,
                               int64_t ldx, const float *w, const hl_norm_saved *saved,
                               const float *dy, int64_t lddy, float *dx, int64_t lddx, float *dw,
                               float *db) {
    const int par = M * D >= NORM_PAR_MIN;
    const int nthr = par ? omp_get_max_threads() : 1;
    float *part = NULL;
    if (dw || db) {
        hl_cpu *cpu = hl_cpu_of(ctx);
        hl_cpu_lock(cpu);
        part = hl_cpu_scratch(cpu, HL_SLOT_NORM_BWD, (size_t)nthr * 2 * (size_t)D * sizeof *part);
        if (!part) {
            hl_cpu_unlock(cpu);
            return hl_fail(ctx->err, HELIOS_ERR_OOM, "%s_backward: out of memory (D=%lld)",
                           rms ? "rmsnorm" : "layernorm", (long long)D);
        }
        memset(part, 0, (size_t)nthr * 2 * (size_t)D * sizeof *part);
    }
#pragma omp parallel num_threads(nthr) if (par)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *pw = dw ? part + (size_t)t * 2 * D : NULL,
              *pb = db ? part + ((size_t)t * 2 + 1) * D : NULL;
        const int64_t m0 = M * t / nt, m1 = M * (t + 1) / nt;
        for (int64_t m = m0; m < m1; m++)
            norm_bwd_row(rms, x + m * ldx, dy + m * lddy, D, w, rms ? 0.0f : saved->mean[m],
                         saved->rstd[m], dx ? dx + m * lddx : NULL, pw, pb);
    }
    if (part) {
        for (int t = 0; t < nthr; t++)
            for (int64_t i = 0; i < D; i++) {
                if (dw) dw[i] += part[(size_t)t * 2 * D + i];
                if (db) db[i] += part[((size_t)t * 2 + 1) * D + i];
            }
        hl_cpu_unlock(hl_cpu_of(ctx));
    }
    return HL_OK;
}

hl_status hl_cpu_layernorm_backward(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                    int64_t ldx, const float *w, const hl_norm_saved *saved,
                                    const float *dy, int64_t lddy, float *dx, int64_t lddx,
                                    float *dw, float *db) {
    return norm_backward(ctx, 0, M, D, x, ldx, w, saved, dy, lddy, dx, lddx, dw, db);
}

hl_status hl_cpu_rmsnorm_backward(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                  int64_t ldx, const float *w, const hl_norm_saved *saved,
                                  const float *dy, int64_t lddy, float *dx, int64_t lddx,
                                  float *dw) {
    return norm_backward(ctx, 1, M, D, x, ldx, w, saved, dy, lddy, dx, lddx, dw, NULL);
}
