/* cpu backwards of the element-wise ops: gelu_tanh, silu, gelu_tanh_mul, add_gated, scale_heads,
 * relative_bias (rope's is the inverse rotation, in pointwise.c). OpenMP over chunks, rows,
 * heads or column blocks, AVX-512 within, a scalar loop for the tail and for builds without
 * AVX-512. Every sum (dgate, ds, drel) has a fixed order whatever the thread count: each output
 * is owned by one task, which visits the rows in order.
 *
 * Derivatives in the logistic form of the forwards (pointwise.c), with E = e^{-|z|} <= 1 so
 * nothing overflows and r = 1/(1 + E):
 *   σ(z) = r (z >= 0) or E·r (z < 0), and σ(z)·(1 - σ(z)) = E·r² either way;
 *   silu'(x) = σ(x) + x·σ(x)(1 - σ(x));
 *   gelu_tanh(x) = x·σ(2u), u = k·(x + c·x³), k = √(2/π), c = 0.044715:
 *   gelu_tanh'(x) = σ(2u) + x·σ(2u)(1 - σ(2u))·2k·(1 + 3c·x²). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/vec_math.h"

enum {
    PB_PAR_MIN = 1 << 15, /* elements before threads pay */
    PB_CHUNK = 1 << 14,   /* elements per task of the flat ops */
    PB_COLS = 256         /* columns per task of add_gated_backward */
};

#define GELU_K 0.7978845608028654f
#define GELU_C 0.044715f

/* ---- scalar forms (tails, and builds without AVX-512) ---------------------------------------- */

/* σ(z) and σ(z)(1 - σ(z)). */
static inline void sigm(float z, float *s, float *s1s) {
    float e = expf(-fabsf(z)), r = 1.0f / (1.0f + e);
    *s = z >= 0.0f ? r : e * r;
    *s1s = e * r * r;
}

/* gelu_tanh(x) and its derivative. */
static inline void gelu_fd(float x, float *f, float *df) {
    float x2 = x * x, s, s1s;
    sigm(2.0f * GELU_K * x * (1.0f + GELU_C * x2), &s, &s1s);
    *f = x * s;
    *df = s + x * s1s * (2.0f * GELU_K) * (1.0f + 3.0f * GELU_C * x2);
}

static inline float silu_df(float x) {
    float s, s1s;
    sigm(x, &s, &s1s);
    return s + x * s1s;
}

#ifdef HL_CPU_AVX512
static inline void sigm_v(__m512 z, __m512 *s, __m512 *s1s) {
    const __m512 one = _mm512_set1_ps(1.0f), sign = _mm512_set1_ps(-0.0f);
    __m512 e = hl_v_exp(_mm512_or_ps(z, sign)); /* e^{-|z|} */
    __m512 r = _mm512_div_ps(one, _mm512_add_ps(one, e));
    __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
    *s = _mm512_mask_mul_ps(r, neg, r, e);
    *s1s = _mm512_mul_ps(e, _mm512_mul_ps(r, r));
}

static inline void gelu_fd_v(__m512 x, __m512 *f, __m512 *df) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 x2 = _mm512_mul_ps(x, x), s, s1s;
    __m512 z = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f * GELU_K), x),
                             _mm512_fmadd_ps(_mm512_set1_ps(GELU_C), x2, one));
    sigm_v(z, &s, &s1s);
    *f = _mm512_mul_ps(x, s);
    __m512 du = _mm512_mul_ps(_mm512_set1_ps(2.0f * GELU_K),
                              _mm512_fmadd_ps(_mm512_set1_ps(3.0f * GELU_C), x2, one));
    *df = _mm512_fmadd_ps(_mm512_mul_ps(x, s1s), du, s);
}
#endif

/* ---- flat: gelu_tanh, silu, gelu_tanh_mul ---------------------------------------------------- */

/* dx = dy ⊙ f'(x) over one chunk (dx may be dy: each element is read before it is written). */
static void gelu_bwd_span(const float *x, const float *dy, float *dx, int64_t n) {
    int64_t i = 0;
#ifdef HL_CPU_AVX512
    for (; i + 16 <= n; i += 16) {
        __m512 f, df;
        gelu_fd_v(_mm512_loadu_ps(x + i), &f, &df);
        _mm512_storeu_ps(dx + i, _mm512_mul_ps(_mm512_loadu_ps(dy + i), df));
    }
#endif
    for (; i < n; i++) {
        float f, df;
        gelu_fd(x[i], &f, &df);
        dx[i] = dy[i] * df;
    }
}

static void silu_bwd_span(const float *x, const float *dy, float *dx, int64_t n) {
    int64_t i = 0;
#ifdef HL_CPU_AVX512
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i), s, s1s;
        sigm_v(v, &s, &s1s);
        _mm512_storeu_ps(dx + i,
                         _mm512_mul_ps(_mm512_loadu_ps(dy + i), _mm512_fmadd_ps(v, s1s, s)));
    }
#endif
    for (; i < n; i++) dx[i] = dy[i] * silu_df(x[i]);
}

static hl_status flat_bwd(int64_t n, const float *x, const float *dy, float *dx,
                          void (*span)(const float *, const float *, float *, int64_t)) {
    int64_t nchunk = (n + PB_CHUNK - 1) / PB_CHUNK;
#pragma omp parallel for schedule(static) if (n >= PB_PAR_MIN)
    for (int64_t ch = 0; ch < nchunk; ch++) {
        int64_t i0 = ch * PB_CHUNK, len = n - i0 < PB_CHUNK ? n - i0 : PB_CHUNK;
        span(x + i0, dy + i0, dx + i0, len);
    }
    return HL_OK;
}

hl_status hl_cpu_gelu_tanh_backward(const hl_ctx *ctx, int64_t n, const float *x, const float *dy,
                                    float *dx) {
    return flat_bwd(n, x, dy, dx, gelu_bwd_span);
}

hl_status hl_cpu_silu_backward(const hl_ctx *ctx, int64_t n, const float *x, const float *dy,
                               float *dx) {
    return flat_bwd(n, x, dy, dx, silu_bwd_span);
}

/* dx = dy ⊙ g ⊙ gelu'(x), dg = dy ⊙ gelu(x); either may be NULL, either may be dy. */
static void gelu_mul_bwd_span(const float *x, const float *g, const float *dy, float *dx, float *dg,
                              int64_t n) {
    int64_t i = 0;
#ifdef HL_CPU_AVX512
    for (; i + 16 <= n; i += 16) {
        __m512 f, df, d = _mm512_loadu_ps(dy + i);
        gelu_fd_v(_mm512_loadu_ps(x + i), &f, &df);
        if (dx)
            _mm512_storeu_ps(dx + i, _mm512_mul_ps(_mm512_mul_ps(d, _mm512_loadu_ps(g + i)), df));
        if (dg) _mm512_storeu_ps(dg + i, _mm512_mul_ps(d, f));
    }
#endif
    for (; i < n; i++) {
        float f, df, d = dy[i];
        gelu_fd(x[i], &f, &df);
        if (dx) dx[i] = d * g[i] * df;
        if (dg) dg[i] = d * f;
    }
}

hl_status hl_cpu_gelu_tanh_mul_backward(const hl_ctx *ctx, int64_t n, const float *x,
                                        const float *g, const float *dy, float *dx, float *dg) {
    int64_t nchunk = (n + PB_CHUNK - 1) / PB_CHUNK;
#pragma omp parallel for schedule(static) if (n >= PB_PAR_MIN)
    for (int64_t ch = 0; ch < nchunk; ch++) {
        int64_t i0 = ch * PB_CHUNK, len = n - i0 < PB_CHUNK ? n - i0 : PB_CHUNK;
        gelu_mul_bwd_span(x + i0, g + i0, dy + i0, dx ? dx + i0 : NULL, dg ? dg + i0 : NULL, len);
    }
    return HL_OK;
}

/* ---- row-wise: add_gated, scale_heads -------------------------------------------------------- */

/* Columns [j0, j0 + w) (w <= PB_COLS) of every row: dy = gate ⊙ dx, dgate += Σ_rows dx ⊙ y. */
static void add_gated_bwd_cols(int64_t M, int64_t j0, int64_t w, const float *dx, int64_t lddx,
                               const float *y, int64_t ldy, const float *gate, float *dy,
                               int64_t lddy, float *dgate) {
    float acc[PB_COLS] = {0};
    for (int64_t m = 0; m < M; m++) {
        const float *a = dx + m * lddx + j0, *b = y + m * ldy + j0;
        float *o = dy ? dy + m * lddy + j0 : NULL;
        int64_t i = 0;
#ifdef HL_CPU_AVX512
        for (; i + 16 <= w; i += 16) {
            __m512 va = _mm512_loadu_ps(a + i);
            if (o)
                _mm512_storeu_ps(o + i,
                                 gate ? _mm512_mul_ps(_mm512_loadu_ps(gate + j0 + i), va) : va);
            if (dgate)
                _mm512_storeu_ps(
                    acc + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(b + i), _mm512_loadu_ps(acc + i)));
        }
#endif
        for (; i < w; i++) {
            if (o) o[i] = gate ? gate[j0 + i] * a[i] : a[i];
            if (dgate) acc[i] += a[i] * b[i];
        }
    }
    if (dgate)
        for (int64_t i = 0; i < w; i++) dgate[j0 + i] += acc[i];
}

hl_status hl_cpu_add_gated_backward(const hl_ctx *ctx, int64_t M, int64_t D, const float *dx,
                                    int64_t lddx, const float *y, int64_t ldy, const float *gate,
                                    float *dy, int64_t lddy, float *dgate) {
    const int64_t nblk = (D + PB_COLS - 1) / PB_COLS;
#pragma omp parallel for schedule(static) if (M * D >= PB_PAR_MIN)
    for (int64_t b = 0; b < nblk; b++) {
        int64_t j0 = b * PB_COLS, w = D - j0 < PB_COLS ? D - j0 : PB_COLS;
        add_gated_bwd_cols(M, j0, w, dx, lddx, y, ldy, gate, dy, lddy, dgate);
    }
    return HL_OK;
}

/* Head h of every row: ds[h] += Σ dx ⊙ x (x read only when ds is wanted), then dx *= s[h]. */
static void scale_heads_bwd_head(int64_t M, int h, int hd, const float *x, int64_t ldx, float s,
                                 float *dx, int64_t lddx, float *ds) {
    double total = 0.0;
    for (int64_t m = 0; m < M; m++) {
        float *g = dx + m * lddx + (int64_t)h * hd;
        const float *xr = ds ? x + m * ldx + (int64_t)h * hd : NULL;
        float acc = 0.0f;
        int i = 0;
#ifdef HL_CPU_AVX512
        const __m512 vs = _mm512_set1_ps(s);
        __m512 va = _mm512_setzero_ps();
        for (; i + 16 <= hd; i += 16) {
            __m512 v = _mm512_loadu_ps(g + i);
            if (ds) va = _mm512_fmadd_ps(v, _mm512_loadu_ps(xr + i), va);
            _mm512_storeu_ps(g + i, _mm512_mul_ps(v, vs));
        }
        if (ds) acc = _mm512_reduce_add_ps(va);
#endif
        for (; i < hd; i++) {
            if (ds) acc += g[i] * xr[i];
            g[i] *= s;
        }
        total += acc;
    }
    if (ds) ds[h] = (float)(ds[h] + total);
}

hl_status hl_cpu_scale_heads_backward(const hl_ctx *ctx, int64_t M, int H, int hd, const float *x,
                                      int64_t ldx, const float *s, float *dx, int64_t lddx,
                                      float *ds) {
#pragma omp parallel for schedule(static) if (M * H * hd >= PB_PAR_MIN)
    for (int h = 0; h < H; h++) scale_heads_bwd_head(M, h, hd, x, ldx, s[h], dx, lddx, ds);
    return HL_OK;
}

/* ---- relative_bias --------------------------------------------------------------------------- */

/* Row (h, i) of dbias adds onto the contiguous slice drel_h[Sq - 1 - i .. Sq - 1 - i + Sk) (the
 * transpose of the forward's copy); rows in order, so heads are the parallel tasks. */
hl_status hl_cpu_relative_bias_backward(const hl_ctx *ctx, int H, int64_t Sq, int64_t Sk,
                                        const float *dbias, float *drel) {
    const int64_t ld_rel = Sq + Sk - 1;
#pragma omp parallel for schedule(static) if ((int64_t)H * Sq * Sk >= PB_PAR_MIN)
    for (int h = 0; h < H; h++)
        for (int64_t i = 0; i < Sq; i++) {
            const float *src = dbias + ((int64_t)h * Sq + i) * Sk;
            float *dst = drel + h * ld_rel + Sq - 1 - i;
            int64_t j = 0;
#ifdef HL_CPU_AVX512
            for (; j + 16 <= Sk; j += 16)
                _mm512_storeu_ps(dst + j,
                                 _mm512_add_ps(_mm512_loadu_ps(dst + j), _mm512_loadu_ps(src + j)));
#endif
            for (; j < Sk; j++) dst[j] += src[j];
        }
    return HL_OK;
}
