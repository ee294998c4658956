/* cpu VAE data ops: channel RMS norm (+ SiLU), nearest ×2 upsampling, casts and the
 * channels-first <-> channels-last transposes. OpenMP over rows / frames, AVX-512 within, a scalar
 * loop for the tails and for builds without AVX-512.
 *
 * These are memory-bound passes between the convolutions: the norm reads float32 and writes the
 * conv's input directly in the conv's dtype (bf16: half the bytes), and the upsample writes its
 * 4x larger output in that dtype too, so neither needs a separate conversion pass. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/vec_math.h"

enum {
    RS_PAR_MIN = 1 << 15, /* elements before threads pay */
    RS_SMALL_C = 256,     /* channel norm: rows up to this width that are not whole vectors */
    RS_SMALL_BLK = 2048   /* ... are scaled in blocks of this many floats */
};

static inline float silu1(float v) { return v / (1.0f + expf(-v)); }

/* n floats (scaled by per-element g[i]·r when g is given) -> y in dt, optional SiLU. */
static void scale_store(const float *x, const float *g, float r, int silu, hl_dtype dt, void *y,
                        int64_t n) {
    int64_t i = 0;
#ifdef HL_CPU_AVX512
    const __m512 vr = _mm512_set1_ps(r), one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), vr);
        if (g) v = _mm512_mul_ps(v, _mm512_loadu_ps(g + i));
        if (silu) /* v·sigmoid(v) = v / (1 + e^-v) */
            v = _mm512_div_ps(v,
                              _mm512_add_ps(one, hl_v_exp(_mm512_sub_ps(_mm512_setzero_ps(), v))));
        if (dt == HL_BF16) _mm256_storeu_si256((__m256i *)((hl_bf16 *)y + i), hl_v_to_bf16(v));
        else _mm512_storeu_ps((float *)y + i, v);
    }
#endif
    for (; i < n; i++) {
        float v = x[i] * r;
        if (g) v *= g[i];
        if (silu) v = silu1(v);
        if (dt == HL_BF16) ((hl_bf16 *)y)[i] = hl_f32_to_bf16(v);
        else ((float *)y)[i] = v;
    }
}

/* Σ x[i]² over n values (float32 lanes, reduced in double). */
static double sum_sq(const float *x, int64_t n) {
    int64_t i = 0;
    double s = 0.0;
#ifdef HL_CPU_AVX512
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (; i + 32 <= n; i += 32) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        a0 = _mm512_fmadd_ps(v0, v0, a0);
        a1 = _mm512_fmadd_ps(v1, v1, a1);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        a0 = _mm512_fmadd_ps(v, v, a0);
    }
    s = (double)_mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#endif
    for (; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

static size_t dt_size(hl_dtype dt) { return dt == HL_BF16 ? 2 : 4; }

/* ---- channel RMS norm ------------------------------------------------------------------------ */

/* channels-last: one row of C per position */
static void norm_rows(int64_t M, int64_t C, const float *x, const float *gamma, int silu,
                      hl_dtype dt, void *y) {
    const float scale = sqrtf((float)C);
    const size_t es = dt_size(dt);
    if (C % 16 == 0 || C > RS_SMALL_C) {
#pragma omp parallel for schedule(static) if (M * C >= RS_PAR_MIN)
        for (int64_t m = 0; m < M; m++) {
            const float *xr = x + m * C;
            float norm = (float)sqrt(sum_sq(xr, C));
            float r = scale / (norm > 1e-12f ? norm : 1e-12f);
            scale_store(xr, gamma, r, silu, dt, (char *)y + (size_t)(m * C) * es, C);
        }
        return;
    }
    /* few channels (the small VAEs: 8, 12, 24...): a row is shorter than a vector, so the rows
     * of a block are scaled into a buffer ((x·r)·gamma, as above) and stored (SiLU, cast) as one
     * long vector */
    const int64_t rows = RS_SMALL_BLK / C, nblk = (M + rows - 1) / rows;
#pragma omp parallel for schedule(static) if (M * C >= RS_PAR_MIN)
    for (int64_t b = 0; b < nblk; b++) {
        const int64_t m0 = b * rows, nr = M - m0 < rows ? M - m0 : rows;
        float buf[RS_SMALL_BLK];
        for (int64_t i = 0; i < nr; i++) {
            const float *xr = x + (m0 + i) * C;
            float norm = (float)sqrt(sum_sq(xr, C));
            float r = scale / (norm > 1e-12f ? norm : 1e-12f);
            for (int64_t c = 0; c < C; c++) {
                float v = xr[c] * r;
                buf[i * C + c] = gamma ? v * gamma[c] : v;
            }
        }
        scale_store(buf, NULL, 1.0f, silu, dt, (char *)y + (size_t)(m0 * C) * es, nr * C);
    }
}

/* channels-first: per batch element a [C, S] matrix; positions in blocks of NB, the sum of
 * squares accumulated across channels in a small buffer. */
enum { NB = 256 };
static void norm_cols(int64_t N, int64_t C, int64_t S, const float *x, const float *gamma, int silu,
                      hl_dtype dt, void *y) {
    const float scale = sqrtf((float)C);
    const size_t es = dt_size(dt);
    const int64_t nblk = (S + NB - 1) / NB;
#pragma omp parallel for schedule(static) if (N * C * S >= RS_PAR_MIN)
    for (int64_t task = 0; task < N * nblk; task++) {
        int64_t n = task / nblk, p0 = (task % nblk) * NB, np = S - p0 < NB ? S - p0 : NB;
        float acc[NB], r[NB];
        memset(acc, 0, sizeof acc);
        const float *xb = x + n * C * S + p0;
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < np; p++) acc[p] += xb[c * S + p] * xb[c * S + p];
        for (int64_t p = 0; p < np; p++) {
            float norm = sqrtf(acc[p]);
            r[p] = scale / (norm > 1e-12f ? norm : 1e-12f);
        }
        for (int64_t c = 0; c < C; c++) {
            float v[NB];
            for (int64_t p = 0; p < np; p++) v[p] = xb[c * S + p] * r[p];
            scale_store(v, NULL, gamma[c], silu, dt,
                        (char *)y + (size_t)(n * C * S + c * S + p0) * es, np);
        }
    }
}

hl_status hl_cpu_channel_rmsnorm(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,
                                 int64_t S, const float *x, const float *gamma, int silu,
                                 hl_dtype y_dtype, void *y) {
    if (layout == HL_NTHWC) norm_rows(N * S, C, x, gamma, silu, y_dtype, y);
    else norm_cols(N, C, S, x, gamma, silu, y_dtype, y);
    return HL_OK;
}

/* ---- upsample -------------------------------------------------------------------------------- */

/* n floats -> dt (a plain conversion). */
static void convert(const float *x, hl_dtype dt, void *y, int64_t n) {
    if (dt == HL_BF16) hl_cpu_f32_to_bf16(x, y, n);
    else memcpy(y, x, (size_t)n * sizeof(float));
}

hl_status hl_cpu_upsample2x(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C, int64_t H,
                            int64_t W, const float *x, int64_t ldx, hl_dtype y_dtype, void *y) {
    const size_t es = dt_size(y_dtype);
    const int64_t W2 = 2 * W;
    if (layout == HL_NTHWC) {
        /* per input row: convert each pixel once into output pixel 2j, copy it to 2j+1, then
         * copy the finished output row to the row below */
        const size_t px = (size_t)C * es, row = (size_t)W2 * px;
#pragma omp parallel for schedule(static) if (N * H * W * C >= RS_PAR_MIN)
        for (int64_t nh = 0; nh < N * H; nh++) {
            char *out = (char *)y + (size_t)(2 * nh) * row;
            const float *in = x + nh * W * ldx;
            for (int64_t j = 0; j < W; j++) {
                convert(in + j * ldx, y_dtype, out + (size_t)(2 * j) * px, C);
                memcpy(out + (size_t)(2 * j + 1) * px, out + (size_t)(2 * j) * px, px);
            }
            memcpy(out + row, out, row);
        }
    } else {
#pragma omp parallel for schedule(static) if (N * C * H * W >= RS_PAR_MIN)
        for (int64_t nch = 0; nch < N * C * H; nch++) {
            const float *in = x + nch * W;
            float buf[512];
            char *out = (char *)y + (size_t)(2 * nch * W2) * es;
            for (int64_t j0 = 0; j0 < W; j0 += 256) {
                int64_t nj = W - j0 < 256 ? W - j0 : 256;
                for (int64_t j = 0; j < nj; j++) buf[2 * j] = buf[2 * j + 1] = in[j0 + j];
                convert(buf, y_dtype, out + (size_t)(2 * j0) * es, 2 * nj);
            }
            memcpy(out + (size_t)W2 * es, out, (size_t)W2 * es);
        }
    }
    return HL_OK;
}

/* ---- casts and transposes -------------------------------------------------------------------- */

hl_status hl_cpu_cast(const hl_ctx *ctx, int64_t n, const float *x, hl_dtype y_dtype, void *y) {
    const int64_t chunk = 1 << 16, nchunk = (n + chunk - 1) / chunk;
    const size_t es = dt_size(y_dtype);
#pragma omp parallel for schedule(static) if (n >= RS_PAR_MIN)
    for (int64_t i = 0; i < nchunk; i++) {
        int64_t a = i * chunk, m = n - a < chunk ? n - a : chunk;
        convert(x + a, y_dtype, (char *)y + (size_t)a * es, m);
    }
    return HL_OK;
}

hl_status hl_cpu_to_channels_last(const hl_ctx *ctx, int64_t C, int64_t T, int64_t S,
                                  const float *x, int64_t x_cstride, hl_dtype y_dtype, void *y) {
    const int64_t NB2 = 64, nblk = (S + NB2 - 1) / NB2;
    const size_t es = dt_size(y_dtype);
#pragma omp parallel for schedule(static) if (C * T * S >= RS_PAR_MIN)
    for (int64_t task = 0; task < T * nblk; task++) {
        int64_t t = task / nblk, s0 = (task % nblk) * NB2, ns = S - s0 < NB2 ? S - s0 : NB2;
        float row[4096];
        for (int64_t s = 0; s < ns; s++) {
            int64_t c0 = 0;
            while (c0 < C) { /* rows of up to 4096 channels */
                int64_t nc = C - c0 < 4096 ? C - c0 : 4096;
                for (int64_t c = 0; c < nc; c++) row[c] = x[(c0 + c) * x_cstride + t * S + s0 + s];
                convert(row, y_dtype, (char *)y + (size_t)((t * S + s0 + s) * C + c0) * es, nc);
                c0 += nc;
            }
        }
    }
    return HL_OK;
}

hl_status hl_cpu_to_channels_first(const hl_ctx *ctx, int64_t C, int64_t T, int64_t S,
                                   const float *x, float lo, float hi, float *y,
                                   int64_t y_cstride) {
#pragma omp parallel for schedule(static) if (C * T * S >= RS_PAR_MIN)
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < C; c++) {
            float *yr = y + c * y_cstride + t * S;
            const float *xr = x + t * S * C + c;
            for (int64_t s = 0; s < S; s++) {
                float v = xr[s * C];
                yr[s] = v < lo ? lo : v > hi ? hi : v; /* a NaN stays NaN, as torch.clamp */
            }
        }
    return HL_OK;
}
