/* VAE op backwards (ops.h "VAE backward"): the gradient mode of tests/test_vae_ops.c, kept in
 * its own file. For each op and each case (small odd shapes: primes, both layouts, padding,
 * stride 2 with positions the stride never reads, kt = 3 causal, a channel slice):
 *   1. ref's backward against central finite differences of a double-precision re-implementation
 *      of the forward, L = Σ y ⊙ R with R fixed and random: every entry of dx, dw, db, dgamma,
 *      h = 1e-3 (the forwards are polynomial or smooth at this scale; the double FD error is
 *      ~1e-9 relative), pass when max |analytic - fd| <= 1e-5 · max |fd| over the tensor;
 *   2. every backend of test_backends against ref: the cpu conv backward (channels-last, GEMM
 *      float32 sums for dx, double over float32 blocks for dw, double for db) within 1e-6 of the
 *      tensor's max (measured <= 4.4e-7), also on larger shapes that span several of its blocks
 *      (and identical on 1 thread and on all), the rmsnorm's dgamma (per-thread partial sums)
 *      too; every other result identical;
 *   3. the rules of ops.h: dx overwritten (it starts as NaN), dw / db / dgamma accumulated
 *      (they start at 1), NULL for unwanted gradients, dx == dy where allowed, and conv's
 *      s->accumulate ignored.
 * The clamp is not differentiable at its bounds: finite differences skip the entries within
 * 2h of -1 or 1 (the test puts some there on purpose), and those are checked against the rule
 * instead (gradient passes for lo <= x <= hi, torch.clamp's inclusive bounds; 0 for NaN).
 * test_vae_ops_grad -v prints every worst ratio. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/dtype.h"
#include "ops/ops_backends.h"
#include "test_util.h"

static int g_verbose;
static hl_error g_err;
static hl_ctx g_ref;
static double g_worst; /* worst |ana - fd| / max|fd| of all FD checks */

#define FD_H 1e-3
#define FD_TOL 1e-5

static void *xalloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "test_vae_ops_grad: out of memory\n");
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

static double *to_f64(const float *f, int64_t n) {
    double *d = xalloc((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    return d;
}

static float *filled(int64_t n, float v) {
    float *p = xalloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = v;
    return p;
}

/* A double forward: L(params) = Σ y ⊙ R for the current values of the case's double arrays. */
typedef double (*loss_fn)(void *c);

/* Central differences of L with respect to p[0..n) (skip[i] set: not checked) against ana
 * (minus `offset`, what an accumulated gradient started at). Returns the worst ratio. */
static double fd_check(const char *what, loss_fn L, void *c, double *p, int64_t n, const float *ana,
                       double offset, const unsigned char *skip) {
    double *fd = xalloc((size_t)n * sizeof *fd), mx = 0, err = 0;
    for (int64_t i = 0; i < n; i++) {
        if (skip && skip[i]) continue;
        double v = p[i];
        p[i] = v + FD_H;
        double lp = L(c);
        p[i] = v - FD_H;
        double lm = L(c);
        p[i] = v;
        fd[i] = (lp - lm) / (2 * FD_H);
        if (fabs(fd[i]) > mx) mx = fabs(fd[i]);
    }
    for (int64_t i = 0; i < n; i++) {
        if (skip && skip[i]) continue;
        double d = fabs((double)ana[i] - offset - fd[i]);
        if (!(d <= err)) err = d;
    }
    double ratio = err / (mx > 0 ? mx : 1);
    if (g_verbose || !(ratio <= FD_TOL))
        printf("  %-52s max|fd| %.3g  max err %.3g  ratio %.3g\n", what, mx, err, ratio);
    CHECK(ratio <= FD_TOL, "%s: analytic vs finite differences, ratio %.3g", what, ratio);
    if (!(ratio <= g_worst)) g_worst = ratio;
    free(fd);
    return ratio;
}

static int same(const float *a, const float *b, int64_t n) {
    return !memcmp(a, b, (size_t)n * sizeof *a);
}

/* max |a - b| <= rel · max |b| (NaN fails) */
static int close_to(const float *a, const float *b, int64_t n, double rel) {
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= e)) e = d;
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    if (g_verbose) printf("    backend vs ref: max err %.3g of max %.3g\n", e, m);
    return e <= rel * m;
}

/* ---- conv3d ---------------------------------------------------------------------------------- */

typedef struct conv_case {
    const char *name;
    hl_layout layout;
    int64_t N, C, T, H, W, O;
    int kt, kh, kw, w4d;
    int stride[3], pad[6];
} conv_case;

typedef struct conv_ctx {
    const conv_case *cc;
    int64_t To, Ho, Wo;
    double *x, *w, *b, *R;
} conv_ctx;

static int64_t at5(hl_layout l, int64_t C, int64_t T, int64_t H, int64_t W, int64_t n, int64_t c,
                   int64_t t, int64_t h, int64_t w) {
    return l == HL_NCTHW ? (((n * C + c) * T + t) * H + h) * W + w
                         : (((n * T + t) * H + h) * W + w) * C + c;
}

static double conv_loss(void *p) {
    const conv_ctx *k = p;
    const conv_case *c = k->cc;
    double L = 0;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t o = 0; o < c->O; o++)
            for (int64_t t = 0; t < k->To; t++)
                for (int64_t i = 0; i < k->Ho; i++)
                    for (int64_t j = 0; j < k->Wo; j++) {
                        double y = k->b[o];
                        for (int64_t ci = 0; ci < c->C; ci++)
                            for (int a = 0; a < c->kt; a++)
                                for (int bb = 0; bb < c->kh; bb++)
                                    for (int d = 0; d < c->kw; d++) {
                                        int64_t ti = t * c->stride[0] - c->pad[0] + a,
                                                hi = i * c->stride[1] - c->pad[2] + bb,
                                                wi = j * c->stride[2] - c->pad[4] + d;
                                        if (ti < 0 || ti >= c->T || hi < 0 || hi >= c->H ||
                                            wi < 0 || wi >= c->W)
                                            continue; /* zero padding */
                                        y += k->x[at5(c->layout, c->C, c->T, c->H, c->W, n, ci, ti,
                                                      hi, wi)] *
                                             k->w[(((o * c->C + ci) * c->kt + a) * c->kh + bb) *
                                                      c->kw +
                                                  d];
                                    }
                        L += y * k->R[at5(c->layout, c->O, k->To, k->Ho, k->Wo, n, o, t, i, j)];
                    }
    return L;
}

/* wdt: the weight's dtype (BF16: the values rounded, the double forward uses the rounded ones) */
/* The op's shape of a case (float32 input). */
static hl_conv3d_shape case_shape(const conv_case *cc) {
    return (hl_conv3d_shape){
        cc->layout,
        HL_F32,
        cc->N,
        cc->C,
        cc->T,
        cc->H,
        cc->W,
        {cc->stride[0], cc->stride[1], cc->stride[2]},
        {cc->pad[0], cc->pad[1], cc->pad[2], cc->pad[3], cc->pad[4], cc->pad[5]},
        0};
}

static void run_conv_case(const conv_case *cc, hl_dtype wdt) {
    hl_conv3d_shape s = case_shape(cc);
    conv_ctx k = {.cc = cc,
                  .To = hl_conv_out_len(cc->T, cc->kt, s.stride[0], s.pad[0], s.pad[1]),
                  .Ho = hl_conv_out_len(cc->H, cc->kh, s.stride[1], s.pad[2], s.pad[3]),
                  .Wo = hl_conv_out_len(cc->W, cc->kw, s.stride[2], s.pad[4], s.pad[5])};
    int64_t nx = cc->N * cc->C * cc->T * cc->H * cc->W, K = cc->C * cc->kt * cc->kh * cc->kw,
            nw = cc->O * K, ny = cc->N * cc->O * k.To * k.Ho * k.Wo;
    float *x = frand(nx, 101, 1.0f), *w = frand(nw, 102, 1.0f / sqrtf((float)K)),
          *b = frand(cc->O, 103, 0.5f), *R = frand(ny, 104, 1.0f);
    int64_t s5[5] = {cc->O, cc->C, cc->kt, cc->kh, cc->kw}, s4[4] = {cc->O, cc->C, cc->kh, cc->kw};
    hl_bf16 *wb = xalloc((size_t)nw * sizeof *wb);
    for (int64_t i = 0; i < nw && wdt == HL_BF16; i++)
        wb[i] = hl_f32_to_bf16(w[i]), w[i] = hl_bf16_to_f32(wb[i]);
    void *wd = wdt == HL_BF16 ? (void *)wb : (void *)w;
    hl_tensor wt = cc->w4d ? hl_tensor_make(wd, wdt, 4, s4) : hl_tensor_make(wd, wdt, 5, s5);
    /* ref: dx starts as NaN (overwritten), dw and db at 1 (accumulated) */
    float *dx = filled(nx, NAN), *dw = filled(nw, 1.0f), *db = filled(cc->O, 1.0f);
    CHECK(hl_conv3d_backward(&g_ref, &s, x, &wt, R, dx, dw, db) == HL_OK, "%s: status (%s)",
          cc->name, g_err.msg);
    k.x = to_f64(x, nx), k.w = to_f64(w, nw), k.b = to_f64(b, cc->O), k.R = to_f64(R, ny);
    char what[160];
    const char *wn = wdt == HL_BF16 ? " (bf16 w)" : "";
    snprintf(what, sizeof what, "conv3d %s%s: dx", cc->name, wn);
    fd_check(what, conv_loss, &k, k.x, nx, dx, 0.0, NULL);
    snprintf(what, sizeof what, "conv3d %s%s: dw (accumulated onto 1)", cc->name, wn);
    fd_check(what, conv_loss, &k, k.w, nw, dw, 1.0, NULL);
    snprintf(what, sizeof what, "conv3d %s%s: db (accumulated onto 1)", cc->name, wn);
    fd_check(what, conv_loss, &k, k.b, cc->O, db, 1.0, NULL);

    /* NULL gradients, s->accumulate ignored, and the backends against ref */
    float *dx2 = filled(nx, NAN), *dw2 = filled(nw, 1.0f), *db2 = filled(cc->O, 1.0f);
    hl_conv3d_shape sa = s;
    sa.accumulate = 1;
    CHECK(hl_conv3d_backward(&g_ref, &sa, NULL, &wt, R, dx2, NULL, NULL) == HL_OK, "dx only");
    CHECK(same(dx, dx2, nx), "%s: dx alone (accumulate set) differs", cc->name);
    CHECK(hl_conv3d_backward(&g_ref, &s, x, &wt, R, NULL, dw2, db2) == HL_OK, "dw, db only");
    CHECK(same(dw, dw2, nw) && same(db, db2, cc->O), "%s: dw, db alone differ", cc->name);
    for (int bi = 0; bi < test_n_backends; bi++)
        for (int mode = 0; mode < 2; mode++) { /* cpu: oneDNN where it can, our GEMM */
            hl_ctx be = test_ctx(test_backends[bi], &g_err);
            float *ex = filled(nx, NAN), *ew = filled(nw, 1.0f), *eb = filled(cc->O, 1.0f);
            if (mode) setenv("HELIOS_CONV_BACKWARD", "gemm", 1);
            CHECK(hl_conv3d_backward(&be, &s, x, &wt, R, ex, ew, eb) == HL_OK, "backend status");
            unsetenv("HELIOS_CONV_BACKWARD");
            /* bf16 weights: cpu's oneDNN kernels compute in bf16 (x and dy rounded) */
            const double tol = wdt == HL_BF16 && !mode &&
                                       !strcmp(hl_backend_name(be.backend), "cpu")
                                   ? 1e-2
                                   : 1e-6;
            CHECK(close_to(ex, dx, nx, tol) && close_to(ew, dw, nw, tol) &&
                      close_to(eb, db, cc->O, tol),
                  "%s%s: %s%s differs from ref", cc->name, wdt == HL_BF16 ? " (bf16 w)" : "",
                  hl_backend_name(be.backend), mode ? " (HELIOS_CONV_BACKWARD=gemm)" : "");
            free(ex), free(ew), free(eb);
        }
    free(x), free(w), free(wb), free(b), free(R), free(dx), free(dw), free(db), free(dx2),
        free(dw2), free(db2), free(k.x), free(k.w), free(k.b), free(k.R);
}

static void test_conv3d_backward(void) {
    /* clang-format off */ /* one case a line */
    const conv_case cases[] = {
        /* name, layout, N C T H W O, kt kh kw w4d, stride, pad */
        {"causal 3x3x3 NTHWC", HL_NTHWC, 1, 3, 4, 5, 7, 2, 3, 3, 3, 0, {1, 1, 1}, {2, 0, 1, 1, 1, 1}},
        {"causal 3x3x3 NCTHW N=2", HL_NCTHW, 2, 2, 3, 5, 3, 3, 3, 3, 3, 0, {1, 1, 1}, {2, 0, 1, 1, 1, 1}},
        {"downsample 3x3 s2 pad(0,1,0,1) 4D w", HL_NTHWC, 1, 3, 2, 7, 6, 5, 1, 3, 3, 1, {1, 2, 2}, {0, 0, 0, 1, 0, 1}},
        {"3x3 s2 no pad (last row/col unread)", HL_NCTHW, 1, 2, 2, 8, 6, 3, 1, 3, 3, 1, {1, 2, 2}, {0}},
        {"time conv 3x1x1 s2 (frame 5 unread)", HL_NTHWC, 1, 5, 6, 2, 3, 5, 3, 1, 1, 0, {2, 1, 1}, {0}},
        {"time conv 3x1x1 causal C->2C", HL_NTHWC, 1, 3, 5, 2, 3, 6, 3, 1, 1, 0, {1, 1, 1}, {2, 0, 0, 0, 0, 0}},
        {"1x1x1 shortcut", HL_NTHWC, 1, 7, 2, 3, 5, 11, 1, 1, 1, 0, {1, 1, 1}, {0}},
        {"asymmetric pads, stride (2,1,3)", HL_NCTHW, 1, 2, 5, 4, 7, 3, 2, 3, 2, 0, {2, 1, 3}, {1, 2, 0, 2, 3, 1}},
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_conv_case(&cases[i], HL_F32);
    run_conv_case(&cases[0], HL_BF16); /* bf16 weights are read as float32 */
    run_conv_case(&cases[2], HL_BF16);
}

/* Shapes large enough for the cpu backward's blocks of output positions (conv_backward.c: about
 * 2^18 / (taps·C) rows each) to split rows, images and the stride's phases: every backend against
 * ref (no finite differences: too slow here), the same bits twice, and, on our GEMM, the same
 * bits on 1 thread as on all. */
static void test_conv3d_backward_blocks(void) {
    /* clang-format off */
    const conv_case cases[] = {
        {"5 blocks, causal 3x3x3 C=16, N=2", HL_NTHWC, 2, 16, 4, 11, 29, 8, 3, 3, 3, 0, {1, 1, 1}, {2, 0, 1, 1, 1, 1}},
        {"5 blocks, 3x3x3 stride 2, C=40", HL_NTHWC, 2, 40, 5, 23, 31, 6, 3, 3, 3, 0, {2, 2, 2}, {2, 0, 1, 1, 1, 1}},
        {"2 blocks, 1x1x1 C=128", HL_NTHWC, 1, 128, 3, 20, 40, 16, 1, 1, 1, 0, {1, 1, 1}, {0}},
    };
    /* clang-format on */
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
        for (int bf = 0; bf < (ci < 2 ? 2 : 1); bf++) { /* bf16 weights: the first two */
            const conv_case *cc = &cases[ci];
            hl_conv3d_shape s = case_shape(cc);
            int64_t To = hl_conv_out_len(cc->T, cc->kt, s.stride[0], s.pad[0], s.pad[1]),
                    Ho = hl_conv_out_len(cc->H, cc->kh, s.stride[1], s.pad[2], s.pad[3]),
                    Wo = hl_conv_out_len(cc->W, cc->kw, s.stride[2], s.pad[4], s.pad[5]);
            int64_t nx = cc->N * cc->C * cc->T * cc->H * cc->W,
                    K = cc->C * cc->kt * cc->kh * cc->kw, nw = cc->O * K,
                    ny = cc->N * cc->O * To * Ho * Wo;
            float *x = frand(nx, 201, 1.0f), *w = frand(nw, 202, 1.0f / sqrtf((float)K)),
                  *R = frand(ny, 204, 1.0f);
            int64_t s5[5] = {cc->O, cc->C, cc->kt, cc->kh, cc->kw};
            hl_bf16 *wb = xalloc((size_t)nw * sizeof *wb);
            for (int64_t i = 0; i < nw; i++) wb[i] = hl_f32_to_bf16(w[i]);
            hl_tensor wt = bf ? hl_tensor_make(wb, HL_BF16, 5, s5)
                              : hl_tensor_make(w, HL_F32, 5, s5);
            float *dx = filled(nx, NAN), *dw = filled(nw, 1.0f), *db = filled(cc->O, 1.0f);
            CHECK(hl_conv3d_backward(&g_ref, &s, x, &wt, R, dx, dw, db) == HL_OK, "%s: ref status",
                  cc->name);
            for (int bi = 0; bi < test_n_backends; bi++)
                for (int mode = 0; mode < 2; mode++) { /* cpu: oneDNN where it can, our GEMM */
                    hl_ctx be = test_ctx(test_backends[bi], &g_err);
                    char name[80];
                    snprintf(name, sizeof name, "%s%s%s", hl_backend_name(be.backend),
                             mode ? " (HELIOS_CONV_BACKWARD=gemm)" : "", bf ? ", bf16 w" : "");
                    if (mode) setenv("HELIOS_CONV_BACKWARD", "gemm", 1);
                    float *ex[3], *ew[3], *eb[3];
                    const int saved = omp_get_max_threads();
                    for (int r = 0; r < 3; r++) { /* r = 0, 1: all threads, r = 2: one */
                        ex[r] = filled(nx, NAN), ew[r] = filled(nw, 1.0f),
                        eb[r] = filled(cc->O, 1.0f);
                        omp_set_num_threads(r == 2 ? 1 : saved);
                        CHECK(hl_conv3d_backward(&be, &s, x, &wt, R, ex[r], ew[r], eb[r]) == HL_OK,
                              "%s: %s status", cc->name, name);
                    }
                    omp_set_num_threads(saved);
                    unsetenv("HELIOS_CONV_BACKWARD");
                    /* ours sums in double across its blocks; oneDNN's float32 sums of a few
                 * thousand terms on one thread come within 1.3e-6 of the largest value */
                    const double tol = mode                                                ? 1e-6
                                       : bf && !strcmp(hl_backend_name(be.backend), "cpu") ? 1e-2
                                                                                           : 5e-6;
                    for (int r = 0; r < 3; r++)
                        CHECK(close_to(ex[r], dx, nx, tol) && close_to(ew[r], dw, nw, tol) &&
                                  close_to(eb[r], db, cc->O, tol),
                              "%s: %s differs from ref (run %d)", cc->name, name, r);
                    CHECK(same(ex[0], ex[1], nx) && same(ew[0], ew[1], nw) &&
                              same(eb[0], eb[1], cc->O),
                          "%s: %s: two runs on %d threads differ", cc->name, name, saved);
                    /* our GEMM's sums do not depend on the thread count (oneDNN's do) */
                    CHECK(!mode || (same(ex[0], ex[2], nx) && same(ew[0], ew[2], nw) &&
                                    same(eb[0], eb[2], cc->O)),
                          "%s: %s on %d threads differs from 1 thread", cc->name, name, saved);
                    for (int r = 0; r < 3; r++) free(ex[r]), free(ew[r]), free(eb[r]);
                }
            free(x), free(w), free(wb), free(R), free(dx), free(dw), free(db);
        }
}

static void test_conv3d_backward_args(void) {
    float x[64] = {0}, dy[64] = {0}, dx[64], wv[27] = {0};
    int64_t shape[5] = {1, 1, 3, 3, 3};
    hl_tensor w = hl_tensor_make(wv, HL_F32, 5, shape);
    hl_conv3d_shape s = {HL_NTHWC, HL_F32, 1, 1, 3, 3, 3, {1, 1, 1}, {0}, 0};
    CHECK(hl_conv3d_backward(&g_ref, &s, x, &w, dy, dx, NULL, NULL) == HL_OK, "valid call");
    CHECK(hl_conv3d_backward(&g_ref, &s, NULL, &w, dy, dx, wv, NULL) == HELIOS_ERR_INVALID_ARG,
          "dw without x rejected");
    CHECK(hl_conv3d_backward(&g_ref, &s, x, &w, dy, x, NULL, NULL) == HELIOS_ERR_INVALID_ARG,
          "dx == x rejected");
    CHECK(hl_conv3d_backward(&g_ref, &s, x, &w, dy, dy, NULL, NULL) == HELIOS_ERR_INVALID_ARG,
          "dx == dy rejected");
    hl_conv3d_shape t = s;
    t.x_dtype = HL_BF16;
    CHECK(hl_conv3d_backward(&g_ref, &t, x, &w, dy, dx, NULL, NULL) == HELIOS_ERR_DTYPE,
          "bf16 x rejected");
    t = s;
    t.T = 2; /* no output: dx is all zero */
    for (int i = 0; i < 18; i++) dx[i] = NAN;
    CHECK(hl_conv3d_backward(&g_ref, &t, x, &w, dy, dx, NULL, NULL) == HL_OK, "empty output");
    int zero = 1;
    for (int i = 0; i < 18; i++) zero &= dx[i] == 0.0f;
    CHECK(zero, "no output: dx = 0");
}

/* ---- channel RMS norm -------------------------------------------------------------------- */

typedef struct norm_ctx {
    hl_layout layout;
    int64_t N, C, S;
    int silu;
    double *x, *g, *R;
} norm_ctx;

static double norm_loss(void *p) {
    const norm_ctx *k = p;
    int64_t cs = k->layout == HL_NCTHW ? k->S : 1, ps = k->layout == HL_NCTHW ? 1 : k->C;
    double L = 0;
    for (int64_t n = 0; n < k->N; n++)
        for (int64_t q = 0; q < k->S; q++) {
            int64_t base = n * k->C * k->S + q * ps;
            double ss = 0;
            for (int64_t c = 0; c < k->C; c++) ss += k->x[base + c * cs] * k->x[base + c * cs];
            double nrm = fmax(sqrt(ss), 1e-12);
            for (int64_t c = 0; c < k->C; c++) {
                double u = k->x[base + c * cs] / nrm * sqrt((double)k->C) * k->g[c];
                if (k->silu) u = u / (1 + exp(-u));
                L += u * k->R[base + c * cs];
            }
        }
    return L;
}

/* The VAE's shapes (channels-last, blocks of positions with a partial last one, one thread and
 * several): every backend's dx equals ref's (bit for bit, or within 2e-6 of the largest value
 * where cpu computes in float32), in place the same bits as not, dgamma to 1e-6. */
static void test_channel_rmsnorm_backward_shapes(void) {
    const int64_t shapes[][3] = {{1, 16, 1001}, {2, 32, 1537}, {1, 5, 70001}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (int silu = 0; silu < 2; silu++) {
            const int64_t N = shapes[si][0], C = shapes[si][1], S = shapes[si][2], n = N * C * S;
            float *x = frand(n, 211, 2.0f), *g = frand(C, 212, 0.5f), *R = frand(n, 213, 1.0f);
            x[5 * C + 3] = 0.0f; /* a zero value; position 7 all zeros (the 1e-12 clamp) */
            for (int64_t c = 0; c < C; c++) x[7 * C + c] = 0.0f, g[c] += 1.0f;
            float *dx = filled(n, NAN), *dg = filled(C, 0.5f);
            CHECK(hl_channel_rmsnorm_backward(&g_ref, HL_NTHWC, N, C, S, x, g, silu, R, dx, dg) ==
                      HL_OK,
                  "rmsnorm backward status");
            for (int bi = 0; bi < test_n_backends; bi++) {
                hl_ctx be = test_ctx(test_backends[bi], &g_err);
                float *ex = filled(n, NAN), *eg = filled(C, 0.5f), *io = xalloc((size_t)n * 4);
                memcpy(io, R, (size_t)n * sizeof *io);
                hl_channel_rmsnorm_backward(&be, HL_NTHWC, N, C, S, x, g, silu, R, ex, eg);
                /* cpu: C a multiple of 16 runs in float32 (resample_backward.c), other C in
                 * ref's double arithmetic, bit for bit */
                const int exact = C % 16 != 0 || strcmp(hl_backend_name(be.backend), "cpu") != 0;
                CHECK((exact ? same(ex, dx, n) : close_to(ex, dx, n, 2e-6)) &&
                          close_to(eg, dg, C, 1e-6),
                      "rmsnorm backward %s, %lldx%lldx%lld silu %d differs from ref",
                      hl_backend_name(be.backend), (long long)N, (long long)C, (long long)S, silu);
                hl_channel_rmsnorm_backward(&be, HL_NTHWC, N, C, S, x, g, silu, io, io, NULL);
                CHECK(same(io, ex, n), "rmsnorm backward %s in place, %lldx%lldx%lld differs",
                      hl_backend_name(be.backend), (long long)N, (long long)C, (long long)S);
                free(ex), free(eg), free(io);
            }
            free(x), free(g), free(R), free(dx), free(dg);
        }
}

static void test_channel_rmsnorm_backward(void) {
    const int64_t N = 2, C = 7, S = 11, n = N * C * S;
    for (int layout = 0; layout < 2; layout++)
        for (int silu = 0; silu < 2; silu++) {
            float *x = frand(n, 201, 2.0f), *g = frand(C, 202, 0.5f), *R = frand(n, 203, 1.0f);
            for (int64_t c = 0; c < C; c++) g[c] += 1.0f;
            float *dx = filled(n, NAN), *dg = filled(C, 1.0f);
            CHECK(hl_channel_rmsnorm_backward(&g_ref, (hl_layout)layout, N, C, S, x, g, silu, R, dx,
                                              dg) == HL_OK,
                  "rmsnorm backward status");
            norm_ctx k = {(hl_layout)layout, N,           C, S, silu, to_f64(x, n),
                          to_f64(g, C),      to_f64(R, n)};
            char what[160];
            snprintf(what, sizeof what, "channel_rmsnorm layout %d silu %d: dx", layout, silu);
            fd_check(what, norm_loss, &k, k.x, n, dx, 0.0, NULL);
            snprintf(what, sizeof what, "channel_rmsnorm layout %d silu %d: dgamma (onto 1)",
                     layout, silu);
            fd_check(what, norm_loss, &k, k.g, C, dg, 1.0, NULL);
            /* dx == dy in place; dx only; backends */
            float *io = xalloc((size_t)n * sizeof *io), *dg2 = filled(C, 1.0f);
            memcpy(io, R, (size_t)n * sizeof *io);
            CHECK(hl_channel_rmsnorm_backward(&g_ref, (hl_layout)layout, N, C, S, x, g, silu, io,
                                              io, NULL) == HL_OK,
                  "in place");
            CHECK(same(io, dx, n), "rmsnorm backward in place (dx == dy) differs");
            CHECK(hl_channel_rmsnorm_backward(&g_ref, (hl_layout)layout, N, C, S, x, g, silu, R,
                                              NULL, dg2) == HL_OK,
                  "dgamma only");
            CHECK(same(dg, dg2, C), "dgamma alone differs");
            for (int bi = 0; bi < test_n_backends; bi++) {
                hl_ctx be = test_ctx(test_backends[bi], &g_err);
                float *ex = filled(n, NAN), *eg = filled(C, 1.0f);
                hl_channel_rmsnorm_backward(&be, (hl_layout)layout, N, C, S, x, g, silu, R, ex, eg);
                CHECK(same(ex, dx, n) && close_to(eg, dg, C, 1e-6),
                      "rmsnorm backward %s differs from ref", hl_backend_name(be.backend));
                free(ex), free(eg);
            }
            CHECK(hl_channel_rmsnorm_backward(&g_ref, (hl_layout)layout, N, C, S, x, g, silu, R, x,
                                              NULL) == HELIOS_ERR_INVALID_ARG,
                  "dx == x rejected");
            free(x), free(g), free(R), free(dx), free(dg), free(io), free(dg2), free(k.x),
                free(k.g), free(k.R);
        }
    /* an all-zero position (the 1e-12 clamp): finite gradient, no NaN */
    float x0[5] = {0}, g0[5] = {1, 1, 1, 1, 1}, dy0[5] = {1e-13f, 0, 0, 0, 0}, dx0[5];
    CHECK(hl_channel_rmsnorm_backward(&g_ref, HL_NTHWC, 1, 5, 1, x0, g0, 1, dy0, dx0, NULL) ==
              HL_OK,
          "zero position");
    int finite = 1;
    for (int i = 0; i < 5; i++) finite &= isfinite(dx0[i]);
    CHECK(finite, "an all-zero position gives a finite gradient");
}

/* ---- upsample2x -------------------------------------------------------------------------- */

typedef struct up_ctx {
    hl_layout layout;
    int64_t N, C, H, W, ldx;
    double *x, *R;
} up_ctx;

static double up_loss(void *p) {
    const up_ctx *k = p;
    double L = 0;
    int64_t H2 = 2 * k->H, W2 = 2 * k->W;
    for (int64_t n = 0; n < k->N; n++)
        for (int64_t i = 0; i < H2; i++)
            for (int64_t j = 0; j < W2; j++)
                for (int64_t c = 0; c < k->C; c++)
                    L += k->layout == HL_NTHWC
                             ? k->x[((n * k->H + i / 2) * k->W + j / 2) * k->ldx + c] *
                                   k->R[((n * H2 + i) * W2 + j) * k->C + c]
                             : k->x[((n * k->C + c) * k->H + i / 2) * k->W + j / 2] *
                                   k->R[((n * k->C + c) * H2 + i) * W2 + j];
    return L;
}

static void test_upsample2x_backward(void) {
    const int64_t N = 2, C = 5, H = 3, W = 7;
    for (int layout = 0; layout < 2; layout++) {
        int64_t ldx = layout == HL_NTHWC ? 2 * C + 1 : C; /* NTHWC: a channel slice */
        int64_t nx = N * H * W * ldx, ny = N * C * 4 * H * W;
        float *x = frand(nx, 301, 1.0f), *R = frand(ny, 302, 1.0f), *dx = filled(nx, 7.0f);
        for (int64_t i = 0; i < nx; i++)
            if (layout == HL_NCTHW || i % ldx < C) dx[i] = NAN; /* the written part */
        CHECK(hl_upsample2x_backward(&g_ref, (hl_layout)layout, N, C, H, W, R, dx, ldx) == HL_OK,
              "upsample backward status");
        up_ctx k = {(hl_layout)layout, N, C, H, W, ldx, to_f64(x, nx), to_f64(R, ny)};
        unsigned char *skip = xalloc((size_t)nx);
        int untouched = 1;
        for (int64_t i = 0; i < nx; i++)
            if (layout == HL_NTHWC && i % ldx >= C) skip[i] = 1, untouched &= dx[i] == 7.0f;
        CHECK(untouched, "upsample backward writes only its channel slice");
        char what[160];
        snprintf(what, sizeof what, "upsample2x layout %d ldx %lld: dx", layout, (long long)ldx);
        fd_check(what, up_loss, &k, k.x, nx, dx, 0.0, skip);
        for (int bi = 0; bi < test_n_backends; bi++) {
            hl_ctx be = test_ctx(test_backends[bi], &g_err);
            float *ex = filled(nx, 7.0f);
            for (int64_t i = 0; i < nx; i++)
                if (layout == HL_NCTHW || i % ldx < C) ex[i] = NAN;
            hl_upsample2x_backward(&be, (hl_layout)layout, N, C, H, W, R, ex, ldx);
            CHECK(same(ex, dx, nx), "upsample backward %s differs", hl_backend_name(be.backend));
            free(ex);
        }
        free(x), free(R), free(dx), free(k.x), free(k.R), free(skip);
    }
    float d[4] = {0}, y[16] = {0};
    CHECK(hl_upsample2x_backward(&g_ref, HL_NTHWC, 1, 2, 1, 1, y, d, 1) == HELIOS_ERR_INVALID_ARG,
          "lddx < C rejected");
    CHECK(hl_upsample2x_backward(&g_ref, HL_NTHWC, 1, 2, 1, 1, y, y + 2, 2) ==
              HELIOS_ERR_INVALID_ARG,
          "dx overlapping dy rejected");
}

/* ---- clamp ------------------------------------------------------------------------------- */

typedef struct clamp_ctx {
    int64_t n;
    double *x, *R;
} clamp_ctx;

static double clamp_loss(void *p) {
    const clamp_ctx *k = p;
    double L = 0;
    for (int64_t i = 0; i < k->n; i++) L += fmin(fmax(k->x[i], -1.0), 1.0) * k->R[i];
    return L;
}

static void test_clamp_backward(void) {
    const int64_t n = 211;
    float *x = frand(n, 401, 2.0f), *R = frand(n, 402, 1.0f), *dx = filled(n, NAN);
    /* the bounds themselves, just inside and outside them, and a NaN */
    x[0] = -1.0f, x[1] = 1.0f, x[2] = nextafterf(1.0f, 2.0f), x[3] = nextafterf(-1.0f, 0.0f);
    x[4] = 1.0f - 1e-4f, x[5] = NAN;
    CHECK(hl_clamp_backward(&g_ref, n, x, -1.0f, 1.0f, R, dx) == HL_OK, "clamp backward status");
    unsigned char *skip = xalloc((size_t)n);
    for (int64_t i = 0; i < n; i++) /* non-smooth within 2h of a bound (and NaN) */
        skip[i] = isnan(x[i]) || fabs(fabs((double)x[i]) - 1.0) <= 2 * FD_H;
    clamp_ctx k = {n, to_f64(x, n), to_f64(R, n)};
    fd_check("clamp [-1, 1] (entries near the bounds excluded): dx", clamp_loss, &k, k.x, n, dx,
             0.0, skip);
    CHECK(dx[0] == R[0] && dx[1] == R[1], "the gradient passes at x = lo and x = hi (inclusive)");
    CHECK(dx[2] == 0.0f && dx[3] == R[3] && dx[4] == R[4] && dx[5] == 0.0f,
          "just outside: 0, just inside: dy, NaN: 0");
    float *io = xalloc((size_t)n * sizeof *io);
    memcpy(io, R, (size_t)n * sizeof *io);
    hl_clamp_backward(&g_ref, n, x, -1.0f, 1.0f, io, io);
    CHECK(same(io, dx, n), "clamp backward in place (dx == dy) differs");
    for (int bi = 0; bi < test_n_backends; bi++) {
        hl_ctx be = test_ctx(test_backends[bi], &g_err);
        float *ex = filled(n, NAN);
        hl_clamp_backward(&be, n, x, -1.0f, 1.0f, R, ex);
        CHECK(same(ex, dx, n), "clamp backward %s differs", hl_backend_name(be.backend));
        free(ex);
    }
    CHECK(hl_clamp_backward(&g_ref, 4, x, -1.0f, 1.0f, R, R + 1) == HELIOS_ERR_INVALID_ARG,
          "partly overlapping dx rejected");
    free(x), free(R), free(dx), free(skip), free(k.x), free(k.R), free(io);
}

int main(int argc, char **argv) {
    g_verbose = argc > 1 && !strcmp(argv[1], "-v");
    g_ref = test_ctx(HELIOS_BACKEND_REF, &g_err);
    test_conv3d_backward();
    test_conv3d_backward_args();
    test_conv3d_backward_blocks();
    test_channel_rmsnorm_backward();
    test_channel_rmsnorm_backward_shapes();
    test_upsample2x_backward();
    test_clamp_backward();
    printf("test_vae_ops_grad: worst finite-difference ratio %.3g (limit %.0e)\n", g_worst, FD_TOL);
    return test_done("test_vae_ops_grad");
}
