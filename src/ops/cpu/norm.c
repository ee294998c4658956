/* cpu normalisations: layernorm, layernorm_modulate, rmsnorm. OpenMP over rows, AVX-512 within.
 *
 * Statistics: two passes (mean, then the sum of squared deviations: no cancellation as in
 * E[x²] - E[x]²), each accumulated in 64 float32 lanes (4 vectors) and reduced in double, so a
 * lane sums D/64 values (24 for D = 1536): far below the 1e-5 the tests ask. */
#include <math.h>
#include <omp.h>

#include "ops/cpu/vec_math.h"
#include "ops/ops_backends.h"

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

static void norm_row(norm_kind kind, const float *x, int64_t D, const float *w, const float *b,
                     float eps, float *y) {
    if (kind == NORM_RMS) {
        float r = (float)(1.0 / sqrt(row_sum_sq(x, D, 0.0f) / (double)D + eps));
        row_affine(x, D, 0.0f, 0.0f, r, w, 0, NULL, y);
        return;
    }
    double mean = row_sum(x, D) / (double)D;
    float mean_hi = (float)mean, mean_lo = (float)(mean - mean_hi);
    /* deviations from the float mean: its rounding shifts the variance by (mean - mean_hi)²,
     * ~2^-48 mean², nothing */
    float rstd = (float)(1.0 / sqrt(row_sum_sq(x, D, mean_hi) / (double)D + eps));
    row_affine(x, D, mean_hi, mean_lo, rstd, w, kind == NORM_MODULATE, b, y);
}

static hl_status norm_rows(const hl_ctx *ctx, const char *op, norm_kind kind, int64_t M,
                           int64_t D, const float *x, int64_t ldx, const float *w, const float *b,
                           float eps, float *y, int64_t ldy) {
    if (M < 0 || D < 0 || ldx < D || ldy < D)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                       "%s: bad sizes M=%lld D=%lld ldx=%lld ldy=%lld", op, (long long)M,
                       (long long)D, (long long)ldx, (long long)ldy);
    if (M == 0 || D == 0) return HL_OK;
    if (!x || !y || (kind == NORM_MODULATE && (!w || !b)))
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, "%s: NULL pointer", op);
#pragma omp parallel for schedule(static) if (M * D >= NORM_PAR_MIN)
    for (int64_t m = 0; m < M; m++) norm_row(kind, x + m * ldx, D, w, b, eps, y + m * ldy);
    return HL_OK;
}

hl_status hl_cpu_layernorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                           const float *w, const float *b, float eps, float *y, int64_t ldy) {
    return norm_rows(ctx, "layernorm", NORM_LAYER, M, D, x, ldx, w, b, eps, y, ldy);
}

hl_status hl_cpu_layernorm_modulate(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                    int64_t ldx, const float *scale, const float *shift, float eps,
                                    float *y, int64_t ldy) {
    return norm_rows(ctx, "layernorm_modulate", NORM_MODULATE, M, D, x, ldx, scale, shift, eps,
                     y, ldy);
}

hl_status hl_cpu_rmsnorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                         const float *w, float eps, float *y, int64_t ldy) {
    return norm_rows(ctx, "rmsnorm", NORM_RMS, M, D, x, ldx, w, NULL, eps, y, ldy);
}
