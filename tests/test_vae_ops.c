/* VAE ops: every op of the "convolution / resampling" section of ops.h, on each backend of
 * test_backends (test_util.h: today cpu), against the scalar oracle hl_ref_<op>, on odd shapes,
 * both layouts and both dtypes; plus weight packs, accumulation, and the argument checks. (Not
 * in test_ops's case table: the conv cases are their own table here, crossed with the same
 * backend list.)
 *
 * Tolerances (per element, from the unit roundoffs, as tests/test_ops.c argues for linear):
 *   conv, f32 weights and f32 x: |cpu - ref| <= (2K + 4)·2^-24 · Σ|x·w| + 2^-23·|ref|, K the
 *     taps·channels of one output (float32 accumulation, ref sums in double).
 *   conv, bf16 weights: the cpu rounds an f32 x to bf16 (2^-8 relative), ref does not:
 *     + 2^-8 · Σ|x·w|. A bf16 x is the same for both.
 *   Σ|x·w| is itself computed by the ref conv on |x|, |w| (no bias).
 *   channel RMS norm: f32 |cpu - ref| <= 1e-5·|ref| + 1e-6; bf16 output one bf16 rounding:
 *     2^-8·|ref| + 1e-6.
 *   upsample, cast, transposes: exact (pure data movement or the same RNE rounding).
 *   test_vae_ops -v prints every comparison. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "ops/ops_backends.h"
#include "test_util.h"

static int g_verbose;
static hl_error g_err;
static hl_ctx g_ref; /* the oracle (test_ctx, in main); the backends judged: test_backends */

static void *xalloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "test_vae_ops: out of memory\n");
        exit(2);
    }
    return p;
}

static float *frand(int64_t n, uint64_t seed, float amp) {
    float *p = xalloc((size_t)n * sizeof *p);
    fill_random(p, n, seed);
    for (int64_t i = 0; i < n; i++) p[i] *= amp;
    return p;
}

/* f (n values) stored as dt (F32 copy or BF16 rounding) in a new buffer. */
static void *to_dtype(const float *f, int64_t n, hl_dtype dt) {
    void *d = xalloc((size_t)n * hl_dtype_size(dt));
    for (int64_t i = 0; i < n; i++) {
        if (dt == HL_BF16) ((hl_bf16 *)d)[i] = hl_f32_to_bf16(f[i]);
        else ((float *)d)[i] = f[i];
    }
    return d;
}

/* max over i of |got - want| / allowed_i; allowed_i = a·|want_i| + b + c·bound_i. */
static double worst_ratio(const float *got, const float *want, const float *bound, int64_t n,
                          double a, double b, double c, double *max_err) {
    double worst = 0;
    *max_err = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!isfinite(got[i]) && isfinite(want[i])) d = INFINITY;
        if (d > *max_err) *max_err = d;
        double allowed = a * fabs(want[i]) + b + (bound ? c * bound[i] : 0);
        double q = d == 0 ? 0 : d / (allowed > 0 ? allowed : 1e-300);
        if (!(q <= worst)) worst = q;
    }
    return worst;
}

/* ---- conv3d ---------------------------------------------------------------------------------- */

typedef struct conv_case {
    const char *name;
    hl_layout layout;
    hl_dtype x_dt, w_dt, b_dt; /* b_dt HL_DTYPE_COUNT: no bias */
    int64_t N, C, T, H, W, O;
    int kt, kh, kw, w4d; /* w4d: weight given as [O, C, kh, kw] (kt must be 1) */
    int stride[3], pad[6];
    int accumulate;
} conv_case;

static void run_conv_case(const conv_case *cc, const hl_ctx *be) {
    /* clang-format off */
    hl_conv3d_shape s = {cc->layout, cc->x_dt, cc->N, cc->C, cc->T, cc->H, cc->W,
                         {cc->stride[0], cc->stride[1], cc->stride[2]},
                         {cc->pad[0], cc->pad[1], cc->pad[2], cc->pad[3], cc->pad[4], cc->pad[5]},
                         cc->accumulate};
    /* clang-format on */
    int64_t To = hl_conv_out_len(cc->T, cc->kt, s.stride[0], s.pad[0], s.pad[1]);
    int64_t Ho = hl_conv_out_len(cc->H, cc->kh, s.stride[1], s.pad[2], s.pad[3]);
    int64_t Wo = hl_conv_out_len(cc->W, cc->kw, s.stride[2], s.pad[4], s.pad[5]);
    int64_t nx = cc->N * cc->C * cc->T * cc->H * cc->W, ny = cc->N * cc->O * To * Ho * Wo;
    int64_t K = cc->C * cc->kt * cc->kh * cc->kw, nw = cc->O * K;
    float *xf = frand(nx, 11, 1.0f), *wf = frand(nw, 12, 1.0f / sqrtf((float)K));
    float *bf = frand(cc->O, 13, 0.5f);
    /* values as the dtypes hold them, so both backends see the same numbers */
    void *x = to_dtype(xf, nx, cc->x_dt), *wd = to_dtype(wf, nw, cc->w_dt);
    for (int64_t i = 0; i < nx; i++)
        if (cc->x_dt == HL_BF16) xf[i] = hl_bf16_to_f32(((hl_bf16 *)x)[i]);
    for (int64_t i = 0; i < nw; i++)
        if (cc->w_dt == HL_BF16) wf[i] = hl_bf16_to_f32(((hl_bf16 *)wd)[i]);
    int64_t wshape5[5] = {cc->O, cc->C, cc->kt, cc->kh, cc->kw},
            wshape4[4] = {cc->O, cc->C, cc->kh, cc->kw};
    hl_tensor w = cc->w4d ? hl_tensor_make(wd, cc->w_dt, 4, wshape4)
                          : hl_tensor_make(wd, cc->w_dt, 5, wshape5);
    int64_t bshape[1] = {cc->O};
    void *bd = cc->b_dt != HL_DTYPE_COUNT ? to_dtype(bf, cc->O, cc->b_dt) : NULL;
    hl_tensor b = bd ? hl_tensor_make(bd, cc->b_dt, 1, bshape) : (hl_tensor){0};

    float *y0 = frand(ny, 14, 1.0f), *y1 = xalloc((size_t)ny * sizeof *y1);
    memcpy(y1, y0, (size_t)ny * sizeof *y1); /* the residual accumulate adds to */
    hl_status st0 = hl_conv3d(&g_ref, &s, x, &w, bd ? &b : NULL, NULL, y0);
    hl_conv_pack *pack = NULL;
    hl_status st1 = hl_conv3d(be, &s, x, &w, bd ? &b : NULL, &pack, y1);
    CHECK(st0 == HL_OK && st1 == HL_OK, "%s: status ref %d %s %d (%s)", cc->name, st0,
          hl_backend_name(be->backend), st1, g_err.msg);

    /* bound: ref conv of |x|, |w| (plus |residual| when accumulating) */
    float *ax = xalloc((size_t)nx * sizeof *ax), *aw = xalloc((size_t)nw * sizeof *aw);
    for (int64_t i = 0; i < nx; i++) ax[i] = fabsf(xf[i]);
    for (int64_t i = 0; i < nw; i++) aw[i] = fabsf(wf[i]);
    hl_tensor awt = cc->w4d ? hl_tensor_make(aw, HL_F32, 4, wshape4)
                            : hl_tensor_make(aw, HL_F32, 5, wshape5);
    hl_conv3d_shape sa = s;
    sa.x_dtype = HL_F32;
    sa.accumulate = 0;
    float *bound = xalloc((size_t)ny * sizeof *bound);
    hl_conv3d(&g_ref, &sa, ax, &awt, NULL, NULL, bound);
    double round_x = (cc->w_dt == HL_BF16 && cc->x_dt == HL_F32) ? 1.0 / 256 : 0.0;
    double c = round_x + (2.0 * K + 4) / 16777216.0;
    double err, q = worst_ratio(y1, y0, bound, ny, 1.0 / 8388608.0, 1e-30, c, &err);
    if (g_verbose || q > 1)
        printf("  %s: conv3d %-44s max err %.3g, err/allowed %.3g\n", hl_backend_name(be->backend),
               cc->name, err, q);
    CHECK(q <= 1, "%s: conv3d %s: err/allowed %.3g", hl_backend_name(be->backend), cc->name, q);

    /* the pack is reused: a second call gives the identical result */
    if (st1 == HL_OK && !cc->accumulate) {
        float *y2 = xalloc((size_t)ny * sizeof *y2);
        CHECK(hl_conv3d(be, &s, x, &w, bd ? &b : NULL, &pack, y2) == HL_OK, "second call");
        CHECK(!memcmp(y1, y2, (size_t)ny * sizeof *y2), "%s: result with the reused pack differs",
              cc->name);
        /* and without a pack */
        CHECK(hl_conv3d(be, &s, x, &w, bd ? &b : NULL, NULL, y2) == HL_OK, "no pack");
        CHECK(!memcmp(y1, y2, (size_t)ny * sizeof *y2), "%s: result without a pack differs",
              cc->name);
        free(y2);
    }
    hl_conv_pack_free(pack);
    free(xf), free(wf), free(bf), free(x), free(wd), free(bd), free(y0), free(y1), free(ax),
        free(aw), free(bound);
}

static void test_conv3d(const hl_ctx *be) {
    const hl_dtype F = HL_F32, B = HL_BF16, NONE = HL_DTYPE_COUNT;
    /* clang-format off */ /* one case a line */
    const conv_case cases[] = {
        /* name, layout, x, w, b, N C T H W O, kt kh kw w4d, stride, pad, acc */
        {"causal 3x3x3 f32 NTHWC", HL_NTHWC, F, F, F, 2, 5, 4, 7, 9, 6, 3, 3, 3, 0, {1, 1, 1}, {2, 0, 1, 1, 1, 1}, 0},
        {"causal 3x3x3 f32 NCTHW", HL_NCTHW, F, F, F, 2, 5, 4, 7, 9, 6, 3, 3, 3, 0, {1, 1, 1}, {2, 0, 1, 1, 1, 1}, 0},
        {"3x3x3 bf16 w, f32 x NTHWC", HL_NTHWC, F, B, F, 1, 13, 5, 6, 11, 7, 3, 3, 3, 0, {1, 1, 1}, {0, 0, 1, 1, 1, 1}, 0},
        {"3x3x3 bf16 w, bf16 x NTHWC", HL_NTHWC, B, B, B, 1, 13, 5, 6, 11, 7, 3, 3, 3, 0, {1, 1, 1}, {0, 0, 1, 1, 1, 1}, 0},
        {"3x3x3 bf16 w, f32 x NCTHW", HL_NCTHW, F, B, F, 2, 9, 3, 5, 5, 4, 3, 3, 3, 0, {1, 1, 1}, {2, 0, 1, 1, 1, 1}, 0},
        {"3x3x3 f32 w, bf16 x NTHWC", HL_NTHWC, B, F, NONE, 1, 6, 4, 5, 7, 3, 3, 3, 3, 0, {1, 1, 1}, {1, 1, 1, 1, 1, 1}, 0},
        {"downsample 3x3 s2 pad(0,1,0,1) 4D w", HL_NTHWC, F, F, F, 1, 8, 3, 9, 12, 8, 1, 3, 3, 1, {1, 2, 2}, {0, 0, 0, 1, 0, 1}, 0},
        {"downsample 3x3 s2 bf16 NCTHW", HL_NCTHW, F, B, F, 1, 8, 2, 10, 7, 8, 1, 3, 3, 1, {1, 2, 2}, {0, 0, 0, 1, 0, 1}, 0},
        {"time conv 3x1x1 stride 2", HL_NTHWC, F, F, F, 1, 10, 5, 4, 6, 10, 3, 1, 1, 0, {2, 1, 1}, {0, 0, 0, 0, 0, 0}, 0},
        {"time conv 3x1x1 C->2C bf16", HL_NTHWC, B, B, F, 1, 16, 4, 3, 5, 32, 3, 1, 1, 0, {1, 1, 1}, {0, 0, 0, 0, 0, 0}, 0},
        {"1x1x1 shortcut f32", HL_NTHWC, F, F, F, 1, 12, 3, 5, 7, 20, 1, 1, 1, 0, {1, 1, 1}, {0}, 0},
        {"1x1x1 bf16 w, f32 x NCTHW", HL_NCTHW, F, B, B, 2, 12, 3, 5, 7, 20, 1, 1, 1, 0, {1, 1, 1}, {0}, 0},
        {"accumulate f32 NTHWC", HL_NTHWC, F, F, F, 1, 7, 4, 6, 6, 7, 3, 3, 3, 0, {1, 1, 1}, {0, 0, 1, 1, 1, 1}, 1},
        {"accumulate bf16 NTHWC", HL_NTHWC, B, B, F, 1, 7, 4, 6, 6, 9, 3, 3, 3, 0, {1, 1, 1}, {0, 0, 1, 1, 1, 1}, 1},
        {"accumulate f32 NCTHW", HL_NCTHW, F, F, NONE, 2, 7, 4, 6, 6, 5, 3, 3, 3, 0, {1, 1, 1}, {2, 0, 1, 1, 1, 1}, 1},
        {"upsample conv 3x3 pad 1 (C=3 out)", HL_NTHWC, B, B, F, 1, 24, 2, 16, 10, 3, 1, 3, 3, 1, {1, 1, 1}, {0, 0, 1, 1, 1, 1}, 0},
        {"realistic 64->64 3x3x3 bf16", HL_NTHWC, B, B, F, 1, 64, 6, 24, 20, 64, 3, 3, 3, 0, {1, 1, 1}, {0, 0, 1, 1, 1, 1}, 0},
        {"realistic 32->48 3x3x3 f32", HL_NTHWC, F, F, F, 1, 32, 4, 20, 18, 48, 3, 3, 3, 0, {1, 1, 1}, {0, 0, 1, 1, 1, 1}, 0},
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_conv_case(&cases[i], be);
}

/* One pack used with two shapes of the same weight (its variants) and with a second weight
 * (a different data pointer repacks instead of using stale data). */
static void test_conv_pack_variants(const hl_ctx *be) {
    int64_t C = 16, O = 16, K = C * 27;
    float *wf = frand(O * K, 21, 0.2f), *wf2 = frand(O * K, 22, 0.2f), *bias = frand(O, 23, 0.1f);
    hl_bf16 *w1 = to_dtype(wf, O * K, HL_BF16), *w2 = to_dtype(wf2, O * K, HL_BF16);
    int64_t shape[5] = {O, C, 3, 3, 3}, bshape[1] = {O};
    hl_tensor W1 = hl_tensor_make(w1, HL_BF16, 5, shape),
              W2 = hl_tensor_make(w2, HL_BF16, 5, shape);
    hl_tensor Bt = hl_tensor_make(bias, HL_F32, 1, bshape);
    hl_conv_pack *pack = NULL;
    int Ts[4] = {3, 6, 3, 6};
    for (int r = 0; r < 4; r++) {
        const hl_tensor *w = r < 2 ? &W1 : &W2;
        int64_t T = Ts[r], H = 8, Wd = 10, To = T - 2;
        hl_conv3d_shape s = {HL_NTHWC, HL_BF16, 1, C, T, H, Wd, {1, 1, 1}, {0, 0, 1, 1, 1, 1}, 0};
        float *xf = frand(T * H * Wd * C, 30 + r, 1.0f);
        hl_bf16 *x = to_dtype(xf, T * H * Wd * C, HL_BF16);
        float *y0 = xalloc((size_t)(To * H * Wd * O) * 4),
              *y1 = xalloc((size_t)(To * H * Wd * O) * 4);
        hl_conv3d(be, &s, x, w, &Bt, NULL, y0);
        CHECK(hl_conv3d(be, &s, x, w, &Bt, &pack, y1) == HL_OK, "pack call");
        CHECK(!memcmp(y0, y1, (size_t)(To * H * Wd * O) * 4),
              "pack variant %d differs from unpacked", r);
        free(xf), free(x), free(y0), free(y1);
    }
    hl_conv_pack_free(pack);
    hl_conv_pack_free(NULL);
    free(wf), free(wf2), free(bias), free(w1), free(w2);
}

static void test_conv_args(const hl_ctx *be) {
    float x[64] = {0}, y[64] = {0}, wv[27] = {0};
    int64_t shape[5] = {1, 1, 3, 3, 3}, bad[5] = {1, 2, 3, 3, 3};
    hl_tensor w = hl_tensor_make(wv, HL_F32, 5, shape), wb = hl_tensor_make(wv, HL_F32, 5, bad);
    hl_conv3d_shape s = {HL_NTHWC, HL_F32, 1, 1, 3, 3, 3, {1, 1, 1}, {0}, 0};
    for (int k = 0; k < 2; k++) {
        const hl_ctx *ctx = k ? be : &g_ref;
        hl_status (*conv)(const hl_ctx *, const hl_conv3d_shape *, const void *, const hl_tensor *,
                          const hl_tensor *, hl_conv_pack **, float *) = hl_conv3d;
        CHECK(conv(ctx, &s, x, &w, NULL, NULL, y) == HL_OK, "valid call");
        CHECK(conv(ctx, &s, x, &wb, NULL, NULL, y) == HELIOS_ERR_SHAPE,
              "channel mismatch rejected");
        hl_conv3d_shape t = s;
        t.stride[1] = 0;
        CHECK(conv(ctx, &t, x, &w, NULL, NULL, y) == HELIOS_ERR_INVALID_ARG, "stride 0 rejected");
        t = s;
        t.x_dtype = HL_F16;
        CHECK(conv(ctx, &t, x, &w, NULL, NULL, y) == HELIOS_ERR_DTYPE, "f16 input rejected");
        t = s;
        t.pad[3] = -1;
        CHECK(conv(ctx, &t, x, &w, NULL, NULL, y) == HELIOS_ERR_INVALID_ARG,
              "negative pad rejected");
        t = s;
        t.layout = (hl_layout)7;
        CHECK(conv(ctx, &t, x, &w, NULL, NULL, y) == HELIOS_ERR_INVALID_ARG, "bad layout rejected");
        CHECK(conv(ctx, &s, NULL, &w, NULL, NULL, y) == HELIOS_ERR_INVALID_ARG, "NULL x rejected");
        int64_t bshape[1] = {2};
        hl_tensor b = hl_tensor_make(wv, HL_F32, 1, bshape);
        CHECK(conv(ctx, &s, x, &w, &b, NULL, y) == HELIOS_ERR_SHAPE, "bias size rejected");
        /* output empty: T smaller than the kernel */
        t = s;
        t.T = 2;
        CHECK(conv(ctx, &t, x, &w, NULL, NULL, y) == HL_OK, "empty output is fine");
    }
}

/* ---- channel RMS norm ------------------------------------------------------------------------ */

/* C 37: rows wider than a vector with a tail; C 8 over 4099 positions: rows shorter than a vector
 * (the cpu backend's blocked path), on several threads */
static void test_channel_rmsnorm(const hl_ctx *be, int64_t C, int64_t S) {
    const int64_t N = 2;
    float *x = frand(N * C * S, 41, 3.0f), *g = frand(C, 42, 0.5f);
    for (int64_t c = 0; c < C; c++) g[c] += 1.0f;
    /* one all-zero position (the 1e-12 clamp) in each layout's addressing */
    for (int64_t c = 0; c < C; c++) x[c] = 0.0f;              /* NTHWC: position 0 of n=0 */
    for (int64_t c = 0; c < C; c++) x[C * S + c * S + 5] = 0; /* NCTHW: position 5 of n=1 */
    for (int layout = 0; layout < 2; layout++)
        for (int silu = 0; silu < 2; silu++)
            for (int dti = 0; dti < 2; dti++) {
                hl_dtype dt = dti ? HL_BF16 : HL_F32;
                int64_t n = N * C * S;
                void *y0 = xalloc((size_t)n * 4), *y1 = xalloc((size_t)n * 4);
                hl_status a = hl_channel_rmsnorm(&g_ref, (hl_layout)layout, N, C, S, x, g, silu, dt,
                                                 y0);
                hl_status b = hl_channel_rmsnorm(be, (hl_layout)layout, N, C, S, x, g, silu, dt,
                                                 y1);
                CHECK(a == HL_OK && b == HL_OK, "rmsnorm status");
                float *f0 = xalloc((size_t)n * 4), *f1 = xalloc((size_t)n * 4);
                for (int64_t i = 0; i < n; i++) {
                    f0[i] = dt == HL_BF16 ? hl_bf16_to_f32(((hl_bf16 *)y0)[i]) : ((float *)y0)[i];
                    f1[i] = dt == HL_BF16 ? hl_bf16_to_f32(((hl_bf16 *)y1)[i]) : ((float *)y1)[i];
                }
                /* bf16: one bf16 step (2^-7 relative at the bottom of a binade), as a float32
                 * result a few float32 steps from ref's may round to the neighbouring bf16 */
                double err, q = worst_ratio(f1, f0, NULL, n, dt == HL_BF16 ? 1.0 / 128 : 1e-5, 1e-6,
                                            0, &err);
                if (g_verbose || q > 1)
                    printf("  %s: channel_rmsnorm layout %d silu %d %s: max err %.3g, "
                           "err/allowed %.3g\n",
                           hl_backend_name(be->backend), layout, silu, hl_dtype_name(dt), err, q);
                CHECK(q <= 1, "%s: channel_rmsnorm layout %d silu %d %s",
                      hl_backend_name(be->backend), layout, silu, hl_dtype_name(dt));
                int zero_ok = 1;
                for (int64_t c = 0; c < C; c++) {
                    int64_t i = layout == HL_NTHWC ? c : C * S + c * S + 5;
                    if (f1[i] != 0.0f) zero_ok = 0;
                }
                CHECK(zero_ok, "an all-zero position stays zero (no NaN)");
                free(y0), free(y1), free(f0), free(f1);
            }
    /* in place, f32 */
    float *xi = xalloc((size_t)(C * S) * 4), *yr = xalloc((size_t)(C * S) * 4);
    memcpy(xi, x + C * S, (size_t)(C * S) * 4);
    hl_channel_rmsnorm(be, HL_NTHWC, 1, C, S, x + C * S, g, 1, HL_F32, yr);
    hl_channel_rmsnorm(be, HL_NTHWC, 1, C, S, xi, g, 1, HL_F32, xi);
    CHECK(!memcmp(xi, yr, (size_t)(C * S) * 4), "in-place norm equals out-of-place");
    CHECK(hl_channel_rmsnorm(be, HL_NTHWC, 1, C, S, x, g, 0, HL_F16, yr) == HELIOS_ERR_DTYPE,
          "f16 output rejected");
    free(xi), free(yr), free(x), free(g);
}

/* ---- upsample, cast, transposes -------------------------------------------------------------- */

static void test_upsample(const hl_ctx *be) {
    const int64_t N = 3, C = 19, H = 5, W = 7, ldx = 2 * C + 3;
    float *x = frand(N * H * W * ldx, 51, 2.0f);
    for (int layout = 0; layout < 2; layout++)
        for (int dti = 0; dti < 2; dti++) {
            hl_dtype dt = dti ? HL_BF16 : HL_F32;
            size_t ny = (size_t)(N * C * 4 * H * W) * hl_dtype_size(dt);
            void *y0 = xalloc(ny), *y1 = xalloc(ny);
            /* NTHWC reads a channel slice (offset C) of a wider tensor */
            const float *xs = layout == HL_NTHWC ? x + C : x;
            hl_status a = hl_upsample2x(&g_ref, (hl_layout)layout, N, C, H, W, xs, ldx, dt, y0);
            hl_status b = hl_upsample2x(be, (hl_layout)layout, N, C, H, W, xs, ldx, dt, y1);
            CHECK(a == HL_OK && b == HL_OK, "upsample status");
            CHECK(!memcmp(y0, y1, ny), "upsample2x layout %d %s differs", layout,
                  hl_dtype_name(dt));
            free(y0), free(y1);
        }
    /* a wide row (more than the cpu's 256-column block) in NCTHW */
    float *xw = frand(2 * 600, 52, 1.0f), *u0 = xalloc(2 * 2400 * 4 * 2),
          *u1 = xalloc(2 * 2400 * 4 * 2);
    hl_upsample2x(&g_ref, HL_NCTHW, 1, 2, 1, 600, xw, 0, HL_F32, u0);
    hl_upsample2x(be, HL_NCTHW, 1, 2, 1, 600, xw, 0, HL_F32, u1);
    CHECK(!memcmp(u0, u1, 2 * 2400 * 4), "upsample2x wide rows");
    CHECK(hl_upsample2x(be, HL_NTHWC, 1, C, H, W, x, C - 1, HL_F32, u1) == HELIOS_ERR_INVALID_ARG,
          "ldx < C rejected");
    free(xw), free(u0), free(u1), free(x);
}

static void test_cast_and_transpose(const hl_ctx *be) {
    const int64_t n = 100003;
    float *x = frand(n, 61, 5.0f);
    x[7] = NAN, x[8] = INFINITY, x[9] = 1e-40f; /* NaN, inf, a subnormal */
    for (int dti = 0; dti < 2; dti++) {
        hl_dtype dt = dti ? HL_BF16 : HL_F32;
        void *y0 = xalloc((size_t)n * 4), *y1 = xalloc((size_t)n * 4);
        hl_cast(&g_ref, n, x, dt, y0);
        hl_cast(be, n, x, dt, y1);
        CHECK(!memcmp(y0, y1, (size_t)n * hl_dtype_size(dt)), "cast %s differs", hl_dtype_name(dt));
        free(y0), free(y1);
    }
    free(x);
    /* T frames of a longer clip (x_cstride > T·S) to channels-last and back with a clamp */
    const int64_t C = 5, T = 3, S = 77, Tall = 7, off = 2;
    float *v = frand(C * Tall * S, 62, 2.0f);
    v[3] = NAN;
    for (int dti = 0; dti < 2; dti++) {
        hl_dtype dt = dti ? HL_BF16 : HL_F32;
        void *a = xalloc((size_t)(T * S * C) * 4), *b = xalloc((size_t)(T * S * C) * 4);
        hl_to_channels_last(&g_ref, C, T, S, v + off * S, Tall * S, dt, a);
        hl_to_channels_last(be, C, T, S, v + off * S, Tall * S, dt, b);
        CHECK(!memcmp(a, b, (size_t)(T * S * C) * hl_dtype_size(dt)), "to_channels_last %s",
              hl_dtype_name(dt));
        free(a), free(b);
    }
    float *cl = frand(T * S * C, 63, 2.0f), *f0 = frand(C * Tall * S, 64, 1.0f),
          *f1 = xalloc((size_t)(C * Tall * S) * 4);
    cl[10] = NAN;
    memcpy(f1, f0, (size_t)(C * Tall * S) * 4);
    hl_to_channels_first(&g_ref, C, T, S, cl, -1.0f, 1.0f, f0 + off * S, Tall * S);
    hl_to_channels_first(be, C, T, S, cl, -1.0f, 1.0f, f1 + off * S, Tall * S);
    CHECK(!memcmp(f0, f1, (size_t)(C * Tall * S) * 4), "to_channels_first with clamp");
    int clamped = 1, nan_kept = 0;
    for (int64_t i = 0; i < C * Tall * S; i++) {
        if (f1[i] > 1.0f || f1[i] < -1.0f) clamped = 0;
        if (isnan(f1[i])) nan_kept = 1;
    }
    CHECK(clamped && nan_kept, "clamp to [-1, 1], NaN kept");
    /* round trip in f32 without clamp is exact */
    float *rt = xalloc((size_t)(T * S * C) * 4), *back = xalloc((size_t)(C * T * S) * 4);
    hl_to_channels_last(be, C, T, S, v, T * S, HL_F32, rt);
    hl_to_channels_first(be, C, T, S, rt, -INFINITY, INFINITY, back, T * S);
    int same = 1;
    for (int64_t i = 0; i < C * T * S; i++)
        if (back[i] != v[i] && !(isnan(back[i]) && isnan(v[i]))) same = 0;
    CHECK(same, "channels-last round trip is exact");
    free(v), free(cl), free(f0), free(f1), free(rt), free(back);
}

int main(int argc, char **argv) {
    g_verbose = argc > 1 && !strcmp(argv[1], "-v");
    g_ref = test_ctx(HELIOS_BACKEND_REF, &g_err);
    for (int b = 0; b < test_n_backends; b++) {
        hl_ctx be = test_ctx(test_backends[b], &g_err);
        test_conv3d(&be);
        test_conv_pack_variants(&be);
        test_conv_args(&be);
        test_channel_rmsnorm(&be, 37, 101);
        test_channel_rmsnorm(&be, 8, 4099);
        test_upsample(&be);
        test_cast_and_transpose(&be);
    }
    return test_done("test_vae_ops");
}
