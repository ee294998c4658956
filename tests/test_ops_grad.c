/* The backward passes of the "backward passes" section of ops.h (the norms' are in test_ops.c):
 * a table of cases crossed with test_backends, as test_ops.c.
 *
 * For each case:
 *   - every backend of test_backends against ref's backward, on the same inputs and the same
 *     prefilled gradient buffers: input gradients prefilled with garbage (they are overwritten;
 *     accumulate_dx: prefilled with values they must be added to), parameter gradients (dW, db,
 *     dbias, dgate, ds, drel) prefilled with values they must accumulate onto, gradients left
 *     out (NULL), dx aliasing dy where ops.h allows it, strided views with the padding columns
 *     checked untouched (SENTINEL) and flat outputs checked not to write past their end;
 *   - on the small cases, ref's backward against central finite differences of a forward
 *     re-implemented here in double (fd_*): L = Σ dy ⊙ y(p) for the forward y and the incoming
 *     gradient dy, ∂L/∂p_i = (L(p + h e_i) - L(p - h e_i)) / 2h, on the same prefilled buffers (so
 *     the want is prefill + ∂L/∂p for an accumulated gradient, ∂L/∂p for an overwritten one).
 *
 * Tolerances
 *   ref against finite differences (fd_judge): ref rounds a double result to float32 once
 *     (accumulated gradients: the double sum prefill + Σ, rounded once), so it is within
 *     u·|want| (u = 2^-24) of the exact gradient, plus double rounding (2^-53 relative of the
 *     magnitudes summed, negligible). The central difference errs by its truncation c·h² and by
 *     rounding: with L evaluated in double to within R = κ·2^-53·L_abs (L_abs = Σ |dy ⊙ y|, κ the
 *     length of the longest sum in the forward plus a few), the difference quotient is within R/h
 *     of its exact value. The truncation is estimated per element from the step 2h: the 2h
 *     quotient errs by 4·c·h², so |fd(2h) - fd(h)| = 3·c·h² (+ rounding) bounds the error of fd(h)
 *     three times over. Allowed: 2u·|want| + |fd(2h) - fd(h)| + 2R/h. The ops linear in the
 *     perturbed value (linear, rope, add_gated, scale_heads, the layouts, relative_bias, gelu_mul's
 *     g) use h = 1: no truncation. patchify3d's backward sums the values read from one position
 *     in float32 (host code shared with the cpu backend): (kt·kh·kw + 2)·u·Σ|terms| more.
 *     Measured: printed with -v.
 *   backend against ref (u = 2^-24; "A" = the same gradient computed on the absolute values, the
 *     sum of the magnitudes of its terms, which bounds what reordering and rounding can do):
 *     linear, f32 weights: dx (N + 4)·u·A_dx + u·|ref| (an f32 dot product of length N in any
 *       order, one rounding adding to the prefilled dx), dW (M + 4)·u·A_dW + u·|ref|, db
 *       (M + 4)·u·A_db + u·|ref|;
 *     linear, bf16 weights (the backend may round dy and x to bf16 as the forward rounds x, and
 *       accumulate in float32: 2^-8 relative per rounded operand, see test_ops.c): dx
 *       (2^-8 + (2N + 4)·u)·A_dx + 2u·|ref|, dW (2·2^-8 + 2^-16 + (2M + 4)·u)·A_dW + 2u·|ref|,
 *       db as with f32 weights (dy summed in float32);
 *     attention (see attention_bound): with P the probabilities,
 *       dPa_ij = Σ_d |dout_id|·|v_jd|, Da_i = Σ_d |dout_id|·|out_id| and Δ_i the score error
 *       bound of test_ops.c's biased_case, the probabilities are within
 *       e_i = expm1(2Δ_i) + 2e-6 + (Sk + 4)·u relative (scores, exp, normaliser), so dS_ij within
 *       P_ij·(dPa_ij + Da_i)·(e_i + (hd + 3)·u), and dq, dk, dv, dbias within
 *       (e + (hd + S + 5)·u) times their magnitudes computed with these (S the length of their
 *       sum), twice that for margin. That is a worst case (measured <= 0.25 of it, most cases
 *       below 0.01), so each gradient must also be within 1e-5·max|ref| (statistical, as for
 *       bf16 attention in test_ops.c; measured <= 7e-7·max|ref|), except where max|ref| < 1e-3:
 *       with one live key the exact dq, dk are 0 by cancellation (dS = 1·(dP - D)) and the
 *       backend's are float32 roundings of it;
 *     attention with compute bf16 (the cpu backend rounds every matmul operand, 2^-8 relative
 *       as in test_ops.c): the score error gains scale·2^-7·Σ|q||k| (q and k), e_i gains 2·2^-8
 *       (dout and v in dP), dq, dk, dv gain 2·2^-8 of their magnitudes (dS or P, and k, q or
 *       dout); measured <= 0.38 of that bound; the statistical check is then
 *       1e-2·max|ref| (measured <= 0.65 of it);
 *     rope: 3u·(|a·c| + |b·s|) per output (two products and a sum);
 *     gelu_tanh / silu (/ gelu_tanh_mul): 4e-6·|ref| + 4e-6·|dy|·Σ|terms of f'| (the vector
 *       tanh and exp are within 1e-6 relative, test_ops' vec math check; a few float32 roundings
 *       per term), with |g| in the product for gelu_tanh_mul;
 *     add_gated: dy exact (one float32 product, as ref); dgate (M + 4)·u·Σ|dx ⊙ y| + u·|ref|;
 *     scale_heads: dx exact; ds (M·hd + 4)·u·Σ|dx ⊙ x| + u·|ref|;
 *     relative_bias: (min(Sq, Sk) + 4)·u·Σ|dbias| + u·|ref|; patchify3d: (kt·kh·kw + 2)·u·A;
 *     unpatchify3d: exact (a permutation).
 *
 * test_ops_grad -v prints every comparison. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "ops/ops_backends.h"
#include "test_ops_util.h"
#include "test_util.h"

static hl_error g_err;
static hl_ctx g_ref; /* the oracle (test_ctx, in main); the backends judged: test_backends */

#define U_F32 0x1p-24
#define U_F64 0x1p-53
#define U_BF16 0x1p-8

/* ---- finite differences ---------------------------------------------------------------------- */

/* L at the current parameters (the forward in double, dotted with dy). */
typedef double (*loss_fn)(const void *c);

/* Fills want[i] = prefill[i] + ∂L/∂p[i] (prefill NULL: 0) and bound[i] (top of the file) for n
 * parameters p[i·stride] (double, changed and restored), step h, L's rounding bound R. */
static void fd_fill(double *p, int64_t n, int64_t stride, double h, double R, loss_fn L,
                    const void *c, const float *prefill, double *want, double *bound) {
    for (int64_t i = 0; i < n; i++) {
        double *pi = p + i * stride, p0 = *pi, l[4];
        const double st[4] = {h, -h, 2 * h, -2 * h};
        for (int k = 0; k < 4; k++) {
            *pi = p0 + st[k];
            l[k] = L(c);
        }
        *pi = p0;
        double g1 = (l[0] - l[1]) / (2 * h), g2 = (l[2] - l[3]) / (4 * h);
        want[i] = (prefill ? prefill[i] : 0.0) + g1;
        bound[i] = 2 * U_F32 * fabs(want[i]) + fabs(g2 - g1) + 2 * R / h + 1e-300;
    }
}

/* ref's gradient got (rows x cols, ldg) against want / bound (dense). */
static void fd_judge(const char *what, const char *grad, const float *got, int64_t ldg,
                     const double *want, const double *bound, int64_t rows, int64_t cols) {
    char sub[300];
    snprintf(sub, sizeof sub, "%s (%s)", what, grad);
    cmp_result r = compare_d(got, ldg, want, bound, rows, cols);
    report(sub, r);
    CHECK(cmp_ok(r), "%s: err/allowed %.3g", sub, r.worst);
}

static double *dalloc(int64_t n) {
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
    if (!p) exit(2);
    return p;
}

/* Dense double copy of rows x cols floats ld apart. */
static double *dcopy(const float *f, int64_t rows, int64_t cols, int64_t ld) {
    double *p = dalloc(rows * cols);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) p[i * cols + j] = f[i * ld + j];
    return p;
}

/* Dense float copy of rows x cols floats ld apart (a prefill as fd_fill wants it). */
static float *fdense(const float *f, int64_t rows, int64_t cols, int64_t ld) {
    float *p = falloc(rows * cols);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) p[i * cols + j] = f[i * ld + j];
    return p;
}

/* Random rows x ld floats with SENTINEL in the padding columns. */
static float *frand_padded(int64_t rows, int64_t cols, int64_t ld, uint64_t seed, float amp) {
    float *p = frand(rows * ld, seed, amp);
    pad_fill(p, rows, cols, ld);
    return p;
}

/* Backend result against ref's with an element bound (both rows x cols, ld apart; bound dense
 * in double, converted here). */
static void judge(const char *what, const char *grad, const float *got, const float *want,
                  int64_t rows, int64_t cols, int64_t ld, const double *bound) {
    char sub[300];
    float *b = falloc(rows * cols);
    for (int64_t i = 0; i < rows * cols; i++) b[i] = (float)fmin(bound[i], 1e38) + 1e-37f;
    cmp_result r = compare(got, ld, want, ld, rows, cols, b, cols, 0);
    snprintf(sub, sizeof sub, "%s (%s)", what, grad);
    report(sub, r);
    CHECK(cmp_ok(r), "%s: err/allowed %.3g", sub, r.worst);
    CHECK(pad_intact(got, rows, cols, ld), "%s: wrote outside the %s view", what, grad);
    free(b);
}

/* The same, exact. */
static void judge_exact(const char *what, const char *grad, const float *got, const float *want,
                        int64_t rows, int64_t cols, int64_t ld) {
    double *z = dalloc(rows * cols);
    judge(what, grad, got, want, rows, cols, ld, z);
    free(z);
}

/* ---- linear_backward ------------------------------------------------------------------------- */

enum { W_DX = 1, W_DW = 2, W_DB = 4 };

typedef struct {
    int64_t M, K, N, ldx, lddy, lddx;
    hl_dtype wdt;
    int want, acc_dx;
} lin_args;

typedef struct {
    float *x, *w, *dy, *dx0, *dW0, *db0;
    void *ws;
    hl_tensor W;
} lin_in;

static lin_in lin_make(const lin_args *a, uint64_t seed) {
    lin_in in;
    in.x = frand_padded(a->M, a->K, a->ldx, seed, 1.0f);
    in.w = frand(a->N * a->K, seed + 1, 0.5f);
    in.W = make_tensor(in.w, a->N, a->K, a->wdt, &in.ws);
    for (int64_t i = 0; i < a->N * a->K; i++) /* the values as stored */
        if (a->wdt == HL_BF16) in.w[i] = hl_bf16_to_f32(hl_f32_to_bf16(in.w[i]));
    in.dy = frand_padded(a->M, a->N, a->lddy, seed + 2, 1.0f);
    in.dx0 = frand_padded(a->M, a->K, a->lddx, seed + 3, a->acc_dx ? 1.0f : 100.0f);
    in.dW0 = frand(a->N * a->K, seed + 4, 1.0f);
    in.db0 = frand(a->N, seed + 5, 1.0f);
    return in;
}

static void lin_free(lin_in *in) {
    free(in->x), free(in->w), free(in->dy), free(in->dx0), free(in->dW0), free(in->db0);
    free(in->ws);
}

static void lin_name(char *buf, size_t n, const char *who, const lin_args *a) {
    snprintf(buf, n,
             "%s: linear_backward M=%lld K=%lld N=%lld W %s ldx=%lld lddy=%lld lddx=%lld%s%s%s%s",
             who, (long long)a->M, (long long)a->K, (long long)a->N, hl_dtype_name(a->wdt),
             (long long)a->ldx, (long long)a->lddy, (long long)a->lddx, a->want & W_DX ? " dx" : "",
             a->want & W_DX && a->acc_dx ? "+=" : "", a->want & W_DW ? " dW" : "",
             a->want & W_DB ? " db" : "");
}

/* Runs the backward on c into copies of the prefilled buffers (*dx, *dW, *db; NULL for what the
 * case does not want: the call gets NULL). */
static hl_status lin_run(const hl_ctx *c, const lin_args *a, const lin_in *in, float **dx,
                         float **dW, float **db) {
    *dx = a->want & W_DX ? fcopy(in->dx0, a->M * a->lddx) : NULL;
    *dW = a->want & W_DW ? fcopy(in->dW0, a->N * a->K) : NULL;
    *db = a->want & W_DB ? fcopy(in->db0, a->N) : NULL;
    float *dy = fcopy(in->dy, a->M * a->lddy);
    hl_status s = hl_linear_backward(c, a->M, in->x, a->ldx, &in->W, dy, a->lddy, *dx, a->lddx,
                                     a->acc_dx, *dW, *db);
    CHECK(memcmp(dy, in->dy, (size_t)(a->M * a->lddy) * sizeof *dy) == 0,
          "%s: linear_backward modified dy", bname(c));
    free(dy);
    return s;
}

static void linear_case(const lin_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t M = a->M, K = a->K, N = a->N;
    lin_in in = lin_make(a, seed);
    char what[300];
    lin_name(what, sizeof what, bname(be), a);
    float *rx, *rW, *rb, *bx, *bW, *bb;
    hl_status s1 = lin_run(&g_ref, a, &in, &rx, &rW, &rb);
    hl_status s2 = lin_run(be, a, &in, &bx, &bW, &bb);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status %d %d (%s)", what, s1, s2, g_err.msg);

    /* the magnitudes: ref on |x|, |W|, |dy| and |prefill| */
    lin_in ab = in;
    float *ax = fcopy(in.x, M * a->ldx), *aw = fcopy(in.w, N * K), *ady = fcopy(in.dy, M * a->lddy);
    for (int64_t i = 0; i < M * a->ldx; i++) ax[i] = fabsf(ax[i]);
    for (int64_t i = 0; i < N * K; i++) aw[i] = fabsf(aw[i]);
    for (int64_t i = 0; i < M * a->lddy; i++) ady[i] = fabsf(ady[i]);
    void *aws;
    ab.x = ax, ab.dy = ady, ab.W = make_tensor(aw, N, K, HL_F32, &aws);
    ab.dx0 = fcopy(in.dx0, M * a->lddx), ab.dW0 = fcopy(in.dW0, N * K), ab.db0 = fcopy(in.db0, N);
    for (int64_t i = 0; i < M * a->lddx; i++) ab.dx0[i] = a->acc_dx ? fabsf(ab.dx0[i]) : 0.0f;
    for (int64_t i = 0; i < N * K; i++) ab.dW0[i] = fabsf(ab.dW0[i]);
    for (int64_t i = 0; i < N; i++) ab.db0[i] = fabsf(ab.db0[i]);
    lin_args aa = *a;
    aa.want = W_DX | W_DW | W_DB;
    float *Ax, *AW, *Ab;
    CHECK(lin_run(&g_ref, &aa, &ab, &Ax, &AW, &Ab) == HL_OK, "%s: magnitudes", what);

    const int bf = a->wdt == HL_BF16;
    const double rdx = bf ? U_BF16 + (2.0 * N + 4) * U_F32 : (N + 4.0) * U_F32;
    const double rdw = bf ? 2 * U_BF16 + 0x1p-16 + (2.0 * M + 4) * U_F32 : (M + 4.0) * U_F32;
    const double rdb = (M + 4.0) * U_F32, rel = (bf ? 2 : 1) * U_F32;
    if (a->want & W_DX) {
        double *bd = dalloc(M * K);
        for (int64_t m = 0; m < M; m++)
            for (int64_t k = 0; k < K; k++)
                bd[m * K + k] = rdx * Ax[m * a->lddx + k] + rel * fabs(rx[m * a->lddx + k]);
        judge(what, "dx", bx, rx, M, K, a->lddx, bd);
        free(bd);
    }
    if (a->want & W_DW) {
        double *bd = dalloc(N * K);
        for (int64_t i = 0; i < N * K; i++) bd[i] = rdw * AW[i] + rel * fabs(rW[i]);
        judge(what, "dW", bW, rW, N, K, K, bd);
        free(bd);
    }
    if (a->want & W_DB) {
        double *bd = dalloc(N);
        for (int64_t i = 0; i < N; i++) bd[i] = rdb * Ab[i] + U_F32 * fabs(rb[i]);
        judge(what, "db", bb, rb, 1, N, N, bd);
        free(bd);
    }
    free(rx), free(rW), free(rb), free(bx), free(bW), free(bb), free(Ax), free(AW), free(Ab);
    free(ax), free(aw), free(ady), free(aws), free(ab.dx0), free(ab.dW0), free(ab.db0);
    lin_free(&in);
}

/* The forward in double: L = Σ dy ⊙ (x·Wᵀ + b). */
typedef struct {
    const lin_args *a;
    const double *x, *w, *b;
    const float *dy;
} lin_fd;

static double lin_loss(const void *cv) {
    const lin_fd *c = cv;
    const lin_args *a = c->a;
    double L = 0;
    for (int64_t m = 0; m < a->M; m++)
        for (int64_t n = 0; n < a->N; n++) {
            double y = c->b[n];
            for (int64_t k = 0; k < a->K; k++) y += c->x[m * a->K + k] * c->w[n * a->K + k];
            L += c->dy[m * a->lddy + n] * y;
        }
    return L;
}

static void linear_fd(const lin_args *a, uint64_t seed) {
    const int64_t M = a->M, K = a->K, N = a->N;
    lin_in in = lin_make(a, seed);
    char what[300];
    lin_name(what, sizeof what, "ref vs finite differences", a);
    float *dx, *dW, *db;
    CHECK(lin_run(&g_ref, a, &in, &dx, &dW, &db) == HL_OK, "%s: status", what);
    double *x = dcopy(in.x, M, K, a->ldx), *w = dcopy(in.w, N, K, K), *b = dalloc(N);
    double Labs = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double y = 0;
            for (int64_t k = 0; k < K; k++) y += fabs(x[m * K + k] * w[n * K + k]);
            Labs += fabs(in.dy[m * a->lddy + n]) * y;
        }
    lin_fd c = {a, x, w, b, in.dy};
    const double R = (K + 4.0) * U_F64 * Labs; /* L is linear in each parameter: h = 1 */
    if (a->want & W_DX) {
        double *want = dalloc(M * K), *bound = dalloc(M * K);
        float *pre = a->acc_dx ? fdense(in.dx0, M, K, a->lddx) : NULL;
        fd_fill(x, M * K, 1, 1.0, R, lin_loss, &c, pre, want, bound);
        fd_judge(what, "dx", dx, a->lddx, want, bound, M, K);
        CHECK(pad_intact(dx, M, K, a->lddx), "%s: wrote outside [M, K] of dx", what);
        free(want), free(bound), free(pre);
    }
    if (a->want & W_DW) {
        double *want = dalloc(N * K), *bound = dalloc(N * K);
        fd_fill(w, N * K, 1, 1.0, R, lin_loss, &c, in.dW0, want, bound);
        fd_judge(what, "dW", dW, K, want, bound, N, K);
        free(want), free(bound);
    }
    if (a->want & W_DB) {
        double *want = dalloc(N), *bound = dalloc(N);
        fd_fill(b, N, 1, 1.0, R, lin_loss, &c, in.db0, want, bound);
        fd_judge(what, "db", db, N, want, bound, 1, N);
        free(want), free(bound);
    }
    free(dx), free(dW), free(db), free(x), free(w), free(b);
    lin_free(&in);
}

/* ---- attention_backward ---------------------------------------------------------------------- */

typedef enum {
    AM_NONE, /* key_bias NULL */
    AM_SOME, /* every third key masked (-FLT_MAX) */
    AM_ONE,  /* every key but one masked */
    AM_ROW,  /* key bias on every third key, and row 0 of each head all but one key masked through
              * bias = -1e38 (needs bias) */
    AM_ALL,  /* every key masked: uniform weights (no finite differences: see attn_fd) */
} att_mask;

static const char *att_mask_name[] = {"", " mask", " one-key", " row-mask", " all-masked"};

enum { A_DQ = 1, A_DK = 2, A_DV = 4, A_DB = 8 };

typedef struct {
    int64_t Sq, Sk;
    int H, hd;
    int strided, has_bias;
    att_mask mk;
    int want;
    hl_dtype dt;
    float amp_q;
} att_args;

typedef struct {
    int64_t w, ldq, ldk, ldv, ldo, lddo, lddq, lddk, lddv;
    float scale;
    float *q, *k, *v, *bias, *kbias, *out, *dout, *dq0, *dk0, *dv0, *db0;
} att_in;

static att_in att_make(const att_args *a, uint64_t seed) {
    att_in in;
    const int64_t Sq = a->Sq, Sk = a->Sk, w = (int64_t)a->H * a->hd;
    const int s = a->strided;
    in.w = w;
    in.ldq = s ? w + 3 : w, in.ldk = s ? w + 5 : w, in.ldv = s ? 2 * w : w;
    in.ldo = s ? w + 1 : w, in.lddo = s ? w + 7 : w;
    in.lddq = s ? w + 2 : w, in.lddk = s ? w + 4 : w, in.lddv = s ? w + 9 : w;
    in.scale = 1.0f / sqrtf((float)a->hd);
    in.q = frand_padded(Sq, w, in.ldq, seed, a->amp_q);
    in.k = frand_padded(Sk, w, in.ldk, seed + 1, 1.0f);
    in.v = frand_padded(Sk, w, in.ldv, seed + 2, 1.0f);
    in.dout = frand_padded(Sq, w, in.lddo, seed + 3, 1.0f);
    in.bias = a->has_bias ? frand((int64_t)a->H * Sq * Sk, seed + 4, 3.0f) : NULL;
    in.kbias = NULL;
    if (a->mk != AM_NONE) {
        in.kbias = frand(Sk, seed + 5, 1.0f); /* finite biases, and -FLT_MAX at masked keys */
        for (int64_t j = 0; j < Sk; j++) {
            int m = a->mk == AM_ALL || ((a->mk == AM_SOME || a->mk == AM_ROW) && j % 3 == 1) ||
                    (a->mk == AM_ONE && j != Sk / 2);
            if (m) in.kbias[j] = -FLT_MAX;
        }
    }
    if (a->mk == AM_ROW && in.bias) /* row 0: only key Sk - 1 (not masked by kbias when j%3 != 1) */
        for (int h = 0; h < a->H; h++)
            for (int64_t j = 0; j < Sk; j++)
                if (j != (Sk - 1) - ((Sk - 1) % 3 == 1)) in.bias[(int64_t)h * Sq * Sk + j] = -1e38f;
    in.out = fconst(Sq * in.ldo, SENTINEL);
    if (hl_attention_biased(&g_ref, Sq, Sk, a->H, a->hd, in.q, in.ldq, in.k, in.ldk, in.v, in.ldv,
                            in.scale, in.bias, in.kbias, a->dt, in.out, in.ldo) != HL_OK)
        CHECK(0, "attention forward: %s", g_err.msg);
    in.dq0 = frand_padded(Sq, w, in.lddq, seed + 6, 100.0f);
    in.dk0 = frand_padded(Sk, w, in.lddk, seed + 7, 100.0f);
    in.dv0 = frand_padded(Sk, w, in.lddv, seed + 8, 100.0f);
    in.db0 = frand((int64_t)a->H * Sq * Sk, seed + 9, 1.0f);
    return in;
}

static void att_free(att_in *in) {
    free(in->q), free(in->k), free(in->v), free(in->bias), free(in->kbias), free(in->out);
    free(in->dout), free(in->dq0), free(in->dk0), free(in->dv0), free(in->db0);
}

static void att_name(char *buf, size_t n, const char *who, const att_args *a) {
    snprintf(buf, n, "%s: attention_backward Sq=%lld Sk=%lld H=%d hd=%d %s%s%s%s amp %g%s%s%s%s",
             who, (long long)a->Sq, (long long)a->Sk, a->H, a->hd, hl_dtype_name(a->dt),
             a->strided ? " strided" : "", a->has_bias ? " bias" : "", att_mask_name[a->mk],
             (double)a->amp_q, a->want & A_DQ ? " dq" : "", a->want & A_DK ? " dk" : "",
             a->want & A_DV ? " dv" : "", a->want & A_DB ? " dbias" : "");
}

typedef struct {
    float *dq, *dk, *dv, *db;
} att_out;

/* The backward on c into copies of the prefilled buffers (NULL where the case does not want it).
 * Without biases it goes through hl_attention_backward. */
static hl_status att_run(const hl_ctx *c, const att_args *a, const att_in *in, att_out *o) {
    const int64_t Sq = a->Sq, Sk = a->Sk;
    o->dq = a->want & A_DQ ? fcopy(in->dq0, Sq * in->lddq) : NULL;
    o->dk = a->want & A_DK ? fcopy(in->dk0, Sk * in->lddk) : NULL;
    o->dv = a->want & A_DV ? fcopy(in->dv0, Sk * in->lddv) : NULL;
    o->db = a->want & A_DB ? fcopy(in->db0, (int64_t)a->H * Sq * Sk) : NULL;
    if (!in->bias && !in->kbias)
        return hl_attention_backward(c, Sq, Sk, a->H, a->hd, in->q, in->ldq, in->k, in->ldk, in->v,
                                     in->ldv, in->scale, a->dt, in->out, in->ldo, in->dout,
                                     in->lddo, o->dq, in->lddq, o->dk, in->lddk, o->dv, in->lddv);
    return hl_attention_biased_backward(c, Sq, Sk, a->H, a->hd, in->q, in->ldq, in->k, in->ldk,
                                        in->v, in->ldv, in->scale, in->bias, in->kbias, a->dt,
                                        in->out, in->ldo, in->dout, in->lddo, o->dq, in->lddq,
                                        o->dk, in->lddk, o->dv, in->lddv, o->db);
}

static void att_out_free(att_out *o) { free(o->dq), free(o->dk), free(o->dv), free(o->db); }

/* One head's probabilities in double from the float inputs: p [Sq, Sk]. */
static void att_probs(const att_args *a, const att_in *in, int h, double *p) {
    const int hd = a->hd;
    for (int64_t i = 0; i < a->Sq; i++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < a->Sk; j++) {
            double s = 0;
            for (int d = 0; d < hd; d++)
                s += (double)in->q[i * in->ldq + h * hd + d] * in->k[j * in->ldk + h * hd + d];
            s *= in->scale;
            if (in->bias) s += in->bias[((int64_t)h * a->Sq + i) * a->Sk + j];
            if (in->kbias) s += in->kbias[j];
            p[i * a->Sk + j] = s;
            mx = fmax(mx, s);
        }
        for (int64_t j = 0; j < a->Sk; j++) sum += (p[i * a->Sk + j] = exp(p[i * a->Sk + j] - mx));
        for (int64_t j = 0; j < a->Sk; j++) p[i * a->Sk + j] /= sum;
    }
}

/* The element bounds of a backend against ref (top of the file), dense: bq [Sq, w], bk, bv
 * [Sk, w], bb [H·Sq·Sk]. */
static void attention_bound(const att_args *a, const att_in *in, double *bq, double *bk, double *bv,
                            double *bb) {
    const int64_t Sq = a->Sq, Sk = a->Sk, w = in->w;
    const int hd = a->hd;
    /* bf16: each matmul operand rounded, 2^-8 relative (test_ops.c): q and k in the scores, dout
     * and v in dP, then dS, P and the other factor of each gradient */
    const double ub = a->dt == HL_BF16 ? 0x1p-8 : 0.0;
    double *p = dalloc(Sq * Sk), *t = dalloc(Sq * Sk), *e = dalloc(Sq);
    for (int h = 0; h < a->H; h++) {
        const int64_t o = (int64_t)h * hd;
        att_probs(a, in, h, p);
        double kmax[4096] = {0};
        for (int64_t j = 0; j < Sk; j++)
            for (int d = 0; d < hd; d++) kmax[d] = fmax(kmax[d], fabs(in->k[j * in->ldk + o + d]));
        for (int64_t i = 0; i < Sq; i++) {
            double qk = 0, tmax = 0, Da = 0;
            for (int d = 0; d < hd; d++) {
                qk += fabs(in->q[i * in->ldq + o + d]) * kmax[d];
                Da += fabs(in->dout[i * in->lddo + o + d]) * fabs(in->out[i * in->ldo + o + d]);
            }
            for (int64_t j = 0; j < Sk; j++) {
                double b = (in->bias ? in->bias[((int64_t)h * Sq + i) * Sk + j] : 0) +
                           (in->kbias ? in->kbias[j] : 0);
                if (p[i * Sk + j] > 0) tmax = fmax(tmax, fabs(b));
            }
            tmax += in->scale * qk;
            double delta = in->scale * (2 * ub + 0x1p-23 * (hd + 2)) * qk + 8 * U_F32 * tmax;
            e[i] = expm1(2 * delta) + 2e-6 + (Sk + 4.0) * U_F32 + (hd + 3.0) * U_F32 + 2 * ub;
            for (int64_t j = 0; j < Sk; j++) {
                double dPa = 0;
                for (int d = 0; d < hd; d++)
                    dPa += fabs(in->dout[i * in->lddo + o + d]) * fabs(in->v[j * in->ldv + o + d]);
                t[i * Sk + j] = p[i * Sk + j] * (dPa + Da); /* bounds |dS| and its error / e */
            }
        }
        for (int64_t i = 0; i < Sq; i++)
            for (int d = 0; d < hd; d++) {
                double s = 0;
                for (int64_t j = 0; j < Sk; j++)
                    s += t[i * Sk + j] * fabs(in->k[j * in->ldk + o + d]);
                bq[i * w + o + d] = 2 * (e[i] + 2 * ub + (Sk + 2.0) * U_F32) * in->scale * s;
            }
        for (int64_t j = 0; j < Sk; j++)
            for (int d = 0; d < hd; d++) {
                double sk = 0, sv = 0, ek = 0;
                for (int64_t i = 0; i < Sq; i++) {
                    sk += t[i * Sk + j] * fabs(in->q[i * in->ldq + o + d]);
                    sv += p[i * Sk + j] * fabs(in->dout[i * in->lddo + o + d]);
                    ek = fmax(ek, e[i]);
                }
                bk[j * w + o + d] = 2 * (ek + 2 * ub + (Sq + 2.0) * U_F32) * in->scale * sk;
                bv[j * w + o + d] = 2 * (ek + 2 * ub + (Sq + 2.0) * U_F32) * sv;
            }
        for (int64_t i = 0; i < Sq; i++)
            for (int64_t j = 0; j < Sk; j++) {
                int64_t x = ((int64_t)h * Sq + i) * Sk + j;
                bb[x] = 2 * (e[i] * t[i * Sk + j] + U_F32 * (t[i * Sk + j] + fabs(in->db0[x])));
            }
    }
    free(p), free(t), free(e);
}

static void attention_case(const att_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t Sq = a->Sq, Sk = a->Sk;
    att_in in = att_make(a, seed);
    const int64_t w = in.w, nb = (int64_t)a->H * Sq * Sk;
    char what[300];
    att_name(what, sizeof what, bname(be), a);
    att_out r, b;
    hl_status s1 = att_run(&g_ref, a, &in, &r), s2 = att_run(be, a, &in, &b);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status %d %d (%s)", what, s1, s2, g_err.msg);
    double *bq = dalloc(Sq * w), *bk = dalloc(Sk * w), *bv = dalloc(Sk * w), *bb = dalloc(nb);
    attention_bound(a, &in, bq, bk, bv, bb);
    if (a->mk == AM_ALL) /* uniform weights in both, but whatever tiny score differences remain */
        for (int64_t i = 0; i < Sq * w; i++) bq[i] += 1e-30;
    if (r.dq) judge(what, "dq", b.dq, r.dq, Sq, w, in.lddq, bq);
    if (r.dk) judge(what, "dk", b.dk, r.dk, Sk, w, in.lddk, bk);
    if (r.dv) judge(what, "dv", b.dv, r.dv, Sk, w, in.lddv, bv);
    /* and the statistical check (top of the file) */
    const struct {
        const char *name;
        const float *got, *want;
        int64_t rows, cols, ld;
    } st[4] = {{"dq", b.dq, r.dq, Sq, w, in.lddq},
               {"dk", b.dk, r.dk, Sk, w, in.lddk},
               {"dv", b.dv, r.dv, Sk, w, in.lddv},
               {"dbias", b.db, r.db, 1, nb, nb}};
    for (int g = 0; g < 4; g++) {
        if (!st[g].got) continue;
        const double rel = a->dt == HL_BF16 ? 1e-2 : 1e-5; /* bf16: as test_ops' attention */
        cmp_result c = compare(st[g].got, st[g].ld, st[g].want, st[g].ld, st[g].rows, st[g].cols,
                               NULL, 0, rel);
        char sub[300];
        snprintf(sub, sizeof sub, "%s (%s against %g·max|ref|)", what, st[g].name, rel);
        report(sub, c);
        if (c.max_ref >= 1e-3) CHECK(cmp_ok(c), "%s: err/allowed %.3g", sub, c.worst);
    }
    if (r.db) judge(what, "dbias", b.db, r.db, 1, nb, nb, bb);
    free(bq), free(bk), free(bv), free(bb);
    att_out_free(&r), att_out_free(&b);
    att_free(&in);
}

/* The forward in double on dense double copies of one head's q, k, v and bias; L = Σ dout ⊙
 * out over that head (the other heads do not depend on its parameters). */
typedef struct {
    const att_args *a;
    const att_in *in;
    int h;
    double *q, *k, *v, *bias; /* q [Sq, hd], k, v [Sk, hd], bias [Sq, Sk] (or NULL) */
    double *p;                /* [Sk] scratch */
} att_fd;

static double att_loss(const void *cv) {
    const att_fd *c = cv;
    const att_args *a = c->a;
    const int hd = a->hd;
    double L = 0;
    for (int64_t i = 0; i < a->Sq; i++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < a->Sk; j++) {
            double s = 0;
            for (int d = 0; d < hd; d++) s += c->q[i * hd + d] * c->k[j * hd + d];
            s = s * c->in->scale + (c->bias ? c->bias[i * a->Sk + j] : 0) +
                (c->in->kbias ? c->in->kbias[j] : 0);
            c->p[j] = s;
            mx = fmax(mx, s);
        }
        for (int64_t j = 0; j < a->Sk; j++) sum += (c->p[j] = exp(c->p[j] - mx));
        for (int d = 0; d < hd; d++) {
            double o = 0;
            for (int64_t j = 0; j < a->Sk; j++) o += c->p[j] * c->v[j * hd + d];
            L += c->in->dout[i * c->in->lddo + (int64_t)c->h * hd + d] * (o / sum);
        }
    }
    return L;
}

/* Rows x hd of a head of a [rows, ld] float matrix as dense double. */
static double *head_copy(const float *f, int64_t rows, int64_t ld, int h, int hd) {
    return dcopy(f + (int64_t)h * hd, rows, hd, ld);
}

static void attention_fd(const att_args *a, uint64_t seed) {
    const int64_t Sq = a->Sq, Sk = a->Sk;
    const int hd = a->hd;
    att_in in = att_make(a, seed);
    char what[300];
    att_name(what, sizeof what, "ref vs finite differences", a);
    att_out o;
    CHECK(att_run(&g_ref, a, &in, &o) == HL_OK, "%s: status (%s)", what, g_err.msg);
    const double h = 0x1p-13;
    for (int hh = 0; hh < a->H; hh++) {
        att_fd c = {a,
                    &in,
                    hh,
                    head_copy(in.q, Sq, in.ldq, hh, hd),
                    head_copy(in.k, Sk, in.ldk, hh, hd),
                    head_copy(in.v, Sk, in.ldv, hh, hd),
                    in.bias ? dcopy(in.bias + (int64_t)hh * Sq * Sk, Sq, Sk, Sk) : NULL,
                    dalloc(Sk)};
        double Labs = 0, vmax = 0;
        for (int64_t j = 0; j < Sk * hd; j++) vmax = fmax(vmax, fabs(c.v[j]));
        for (int64_t i = 0; i < Sq; i++)
            for (int d = 0; d < hd; d++) Labs += fabs(in.dout[i * in.lddo + hh * hd + d]) * vmax;
        const double R = 16 * (Sk + hd + 8.0) * U_F64 * Labs;
        const int64_t off = (int64_t)hh * hd;
        double *want = dalloc((Sq > Sk ? Sq : Sk) * (hd > Sk ? hd : Sk));
        double *bound = dalloc((Sq > Sk ? Sq : Sk) * (hd > Sk ? hd : Sk));
        if (o.dq) {
            fd_fill(c.q, Sq * hd, 1, h, R, att_loss, &c, NULL, want, bound);
            fd_judge(what, "dq", o.dq + off, in.lddq, want, bound, Sq, hd);
        }
        if (o.dk) {
            fd_fill(c.k, Sk * hd, 1, h, R, att_loss, &c, NULL, want, bound);
            fd_judge(what, "dk", o.dk + off, in.lddk, want, bound, Sk, hd);
        }
        if (o.dv) {
            fd_fill(c.v, Sk * hd, 1, h, R, att_loss, &c, NULL, want, bound);
            fd_judge(what, "dv", o.dv + off, in.lddv, want, bound, Sk, hd);
        }
        if (o.db) {
            fd_fill(c.bias, Sq * Sk, 1, h, R, att_loss, &c, in.db0 + (int64_t)hh * Sq * Sk, want,
                    bound);
            fd_judge(what, "dbias", o.db + (int64_t)hh * Sq * Sk, Sk, want, bound, Sq, Sk);
        }
        free(want), free(bound), free(c.q), free(c.k), free(c.v), free(c.bias), free(c.p);
    }
    if (o.dq) CHECK(pad_intact(o.dq, Sq, in.w, in.lddq), "%s: wrote outside dq", what);
    if (o.dk) CHECK(pad_intact(o.dk, Sk, in.w, in.lddk), "%s: wrote outside dk", what);
    if (o.dv) CHECK(pad_intact(o.dv, Sk, in.w, in.lddv), "%s: wrote outside dv", what);
    att_out_free(&o);
    att_free(&in);
}

/* ---- rope_backward --------------------------------------------------------------------------- */

typedef struct {
    int64_t M;
    int H, hd;
    int64_t ldx;
} heads_args;

/* rope [M, hd]: row m = (cos, sin) of m·10000^(-2j/hd), j < hd/2 (the tail of an odd hd unused). */
static float *rope_table(int64_t M, int hd) {
    float *r = falloc(M * hd);
    for (int64_t m = 0; m < M; m++)
        for (int j = 0; j < hd; j++) r[m * hd + j] = 0.0f;
    for (int64_t m = 0; m < M; m++)
        for (int j = 0; j < hd / 2; j++) {
            double th = (double)(m + 1) * pow(10000.0, -2.0 * j / hd);
            r[m * hd + j] = (float)cos(th);
            r[m * hd + hd / 2 + j] = (float)sin(th);
        }
    return r;
}

static void rope_case(const heads_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t M = a->M, w = (int64_t)a->H * a->hd;
    const int hd = a->hd;
    float *g = frand_padded(M, w, a->ldx, seed, 1.0f), *rope = rope_table(M, hd);
    float *r = fcopy(g, M * a->ldx), *b = fcopy(g, M * a->ldx);
    char what[160];
    snprintf(what, sizeof what, "%s: rope_backward M=%lld H=%d hd=%d ldx=%lld", bname(be),
             (long long)M, a->H, hd, (long long)a->ldx);
    CHECK(hl_rope_backward(&g_ref, M, a->H, hd, r, a->ldx, rope) == HL_OK &&
              hl_rope_backward(be, M, a->H, hd, b, a->ldx, rope) == HL_OK,
          "%s: status (%s)", what, g_err.msg);
    double *bound = dalloc(M * w);
    for (int64_t m = 0; m < M; m++)
        for (int h = 0; h < a->H; h++)
            for (int j = 0; j < hd / 2; j++) {
                const float *p = g + m * a->ldx + (int64_t)h * hd + 2 * j;
                double c = fabs(rope[m * hd + j]), s = fabs(rope[m * hd + hd / 2 + j]);
                double e = 3 * U_F32 * (fabs(p[0]) * (c + s) + fabs(p[1]) * (c + s));
                bound[m * w + h * hd + 2 * j] = bound[m * w + h * hd + 2 * j + 1] = e;
            }
    judge(what, "dx", b, r, M, w, a->ldx, bound);
    free(g), free(rope), free(r), free(b), free(bound);
}

typedef struct {
    const heads_args *a;
    const double *x, *rope;
    const float *g;
} rope_fd_c;

static double rope_loss(const void *cv) {
    const rope_fd_c *c = cv;
    const int hd = c->a->hd;
    const int64_t w = (int64_t)c->a->H * hd;
    double L = 0;
    for (int64_t m = 0; m < c->a->M; m++)
        for (int h = 0; h < c->a->H; h++) {
            const double *x = c->x + m * w + h * hd;
            const float *g = c->g + m * c->a->ldx + h * hd;
            for (int j = 0; j < hd / 2; j++) {
                double cs = c->rope[m * hd + j], sn = c->rope[m * hd + hd / 2 + j];
                L += g[2 * j] * (x[2 * j] * cs - x[2 * j + 1] * sn) +
                     g[2 * j + 1] * (x[2 * j] * sn + x[2 * j + 1] * cs);
            }
            if (hd % 2) L += g[hd - 1] * x[hd - 1]; /* an odd head's last value passes through */
        }
    return L;
}

static void rope_fd(const heads_args *a, uint64_t seed) {
    const int64_t M = a->M, w = (int64_t)a->H * a->hd;
    float *g = frand_padded(M, w, a->ldx, seed, 1.0f), *rope = rope_table(M, a->hd);
    float *dx = fcopy(g, M * a->ldx);
    char what[160];
    snprintf(what, sizeof what,
             "ref vs finite differences: rope_backward M=%lld H=%d hd=%d ldx=%lld", (long long)M,
             a->H, a->hd, (long long)a->ldx);
    CHECK(hl_rope_backward(&g_ref, M, a->H, a->hd, dx, a->ldx, rope) == HL_OK, "%s: status", what);
    float *x0 = frand(M * w, seed + 1, 1.0f);
    double *x = dcopy(x0, M, w, w), *rd = dcopy(rope, M, a->hd, a->hd);
    double *want = dalloc(M * w), *bound = dalloc(M * w), Labs = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t i = 0; i < w; i++) Labs += 2 * fabs(g[m * a->ldx + i]) * fabs(x[m * w + i]);
    rope_fd_c c = {a, x, rd, g};
    fd_fill(x, M * w, 1, 1.0, 8 * U_F64 * Labs, rope_loss, &c, NULL, want, bound);
    fd_judge(what, "dx", dx, a->ldx, want, bound, M, w);
    CHECK(pad_intact(dx, M, w, a->ldx), "%s: wrote outside", what);
    free(g), free(rope), free(dx), free(x0), free(x), free(rd), free(want), free(bound);
}

/* ---- gelu_tanh, silu, gelu_tanh_mul ---------------------------------------------------------- */

/* kind 0 gelu_tanh, 1 silu, 2 gelu_tanh_mul; alias: 1 dx == dy, 2 (gelu_tanh_mul) dg == dy;
 * want (gelu_tanh_mul): 1 dx, 2 dg. */
typedef struct {
    int kind;
    int64_t n;
    int alias, want;
    float amp;
} flat_args;

static const char *flat_name[] = {"gelu_tanh", "silu", "gelu_tanh_mul"};

static double gelu_d(double x) {
    return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}
static double silu_d(double x) { return x / (1.0 + exp(-x)); }

/* Σ of the magnitudes of f''s terms at x. */
static double dterms(int silu, double x) {
    if (silu) {
        double s = 1.0 / (1.0 + exp(-x));
        return s + fabs(x) * s * (1 - s);
    }
    const double k = 0.7978845608028654, a = 0.044715;
    double t = tanh(k * (x + a * x * x * x));
    return 0.5 * (1 + fabs(t)) + 0.5 * fabs(x) * (1 - t * t) * k * (1 + 3 * a * x * x);
}

typedef struct {
    float *x, *g, *dy;
} flat_in;

static flat_in flat_make(const flat_args *a, uint64_t seed) {
    flat_in in;
    in.x = frand(a->n + 1, seed, a->amp);
    in.g = frand(a->n + 1, seed + 1, 2.0f);
    in.dy = frand(a->n + 1, seed + 2, 1.0f);
    const float sp[] = {0.0f,   -0.0f,   1e-30f, -1e-30f, 30.0f,  -30.0f,
                        100.0f, -100.0f, 5.5f,   -5.5f,   -0.75f, 0.75f};
    for (int64_t i = 0; i < a->n && i < 12; i++) in.x[i] = sp[i];
    return in;
}

/* The backward on c: dx, dg new buffers (SENTINEL past n; prefilled with garbage), or dy's copy
 * when aliased. *dyb: the dy buffer passed. */
static hl_status flat_run(const hl_ctx *c, const flat_args *a, const flat_in *in, float **dyb,
                          float **dx, float **dg) {
    const int64_t n = a->n;
    *dyb = fcopy(in->dy, n + 1);
    (*dyb)[n] = SENTINEL;
    *dx = *dg = NULL;
    if (a->kind < 2 || a->want & 1) *dx = a->alias == 1 ? *dyb : fconst(n + 1, 77.0f);
    if (a->kind == 2 && a->want & 2) *dg = a->alias == 2 ? *dyb : fconst(n + 1, -77.0f);
    if (*dx && *dx != *dyb) (*dx)[n] = SENTINEL;
    if (*dg && *dg != *dyb) (*dg)[n] = SENTINEL;
    if (a->kind == 0) return hl_gelu_tanh_backward(c, n, in->x, *dyb, *dx);
    if (a->kind == 1) return hl_silu_backward(c, n, in->x, *dyb, *dx);
    return hl_gelu_tanh_mul_backward(c, n, in->x, in->g, *dyb, *dx, *dg);
}

static void flat_out_free(float *dyb, float *dx, float *dg) {
    if (dx != dyb) free(dx);
    if (dg != dyb) free(dg);
    free(dyb);
}

static void flat_label(char *buf, size_t sz, const char *who, const flat_args *a) {
    snprintf(buf, sz, "%s: %s_backward n=%lld amp %g%s%s%s", who, flat_name[a->kind],
             (long long)a->n, (double)a->amp,
             a->alias == 1   ? " dx=dy"
             : a->alias == 2 ? " dg=dy"
                             : "",
             a->kind == 2 && a->want & 1 ? " dx" : "", a->kind == 2 && a->want & 2 ? " dg" : "");
}

static void flat_case(const flat_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t n = a->n;
    flat_in in = flat_make(a, seed);
    char what[160];
    flat_label(what, sizeof what, bname(be), a);
    float *rdy, *rdx, *rdg, *bdy, *bdx, *bdg;
    hl_status s1 = flat_run(&g_ref, a, &in, &rdy, &rdx, &rdg);
    hl_status s2 = flat_run(be, a, &in, &bdy, &bdx, &bdg);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status %d %d (%s)", what, s1, s2, g_err.msg);
    double *bound = dalloc(n);
    if (bdx) {
        for (int64_t i = 0; i < n; i++)
            bound[i] = 4e-6 * fabs(rdx[i]) + 4e-6 * fabs(in.dy[i]) *
                                                 (a->kind == 2 ? fabs(in.g[i]) : 1.0) *
                                                 dterms(a->kind == 1, in.x[i]);
        judge(what, "dx", bdx, rdx, 1, n, n, bound);
        CHECK(bdx[n] == SENTINEL, "%s: dx written past n", what);
    }
    if (bdg) {
        for (int64_t i = 0; i < n; i++)
            bound[i] = 4e-6 * fabs(rdg[i]) + 2e-7 * fabs(in.dy[i]) * fabs(in.x[i]);
        judge(what, "dg", bdg, rdg, 1, n, n, bound);
        CHECK(bdg[n] == SENTINEL, "%s: dg written past n", what);
    }
    if (!a->alias) CHECK(memcmp(bdy, in.dy, (size_t)n * sizeof *bdy) == 0, "%s: dy modified", what);
    free(bound), flat_out_free(rdy, rdx, rdg), flat_out_free(bdy, bdx, bdg);
    free(in.x), free(in.g), free(in.dy);
}

/* Finite differences element by element: only the i-th term of L = Σ dy·f(x)(·g) moves. */
static void flat_fd(const flat_args *a, uint64_t seed) {
    const int64_t n = a->n;
    flat_in in = flat_make(a, seed);
    char what[160];
    flat_label(what, sizeof what, "ref vs finite differences", a);
    float *dyb, *dx, *dg;
    CHECK(flat_run(&g_ref, a, &in, &dyb, &dx, &dg) == HL_OK, "%s: status", what);
    double *want = dalloc(n), *bound = dalloc(n);
    double (*f)(double) = a->kind == 1 ? silu_d : gelu_d;
    if (dx) {
        for (int64_t i = 0; i < n; i++) {
            const double x = in.x[i], dy = in.dy[i], g = a->kind == 2 ? in.g[i] : 1.0;
            const double h = 0x1p-12 * fmax(1.0, fabs(x));
            double g1 = (f(x + h) - f(x - h)) / (2 * h),
                   g2 = (f(x + 2 * h) - f(x - 2 * h)) / (4 * h);
            want[i] = dy * g * g1;
            bound[i] = 2 * U_F32 * fabs(want[i]) +
                       fabs(dy * g) * (fabs(g2 - g1) + 8 * U_F64 * (fabs(f(x)) + fabs(x)) / h) +
                       1e-300;
        }
        fd_judge(what, "dx", dx, n, want, bound, 1, n);
    }
    if (dg) { /* L is linear in g: the difference with h = 1 */
        for (int64_t i = 0; i < n; i++) {
            const double x = in.x[i], dy = in.dy[i], g = in.g[i];
            want[i] = (dy * f(x) * (g + 1) - dy * f(x) * (g - 1)) / 2;
            bound[i] = 2 * U_F32 * fabs(want[i]) + 8 * U_F64 * fabs(dy * f(x)) * (fabs(g) + 1) +
                       1e-300;
        }
        fd_judge(what, "dg", dg, n, want, bound, 1, n);
    }
    free(want), free(bound), flat_out_free(dyb, dx, dg);
    free(in.x), free(in.g), free(in.dy);
}

/* ---- add_gated_backward ---------------------------------------------------------------------- */

typedef struct {
    int64_t M, D, lddx, ldy, lddy;
    int gated, want_dy, want_dgate;
} ag_args;

typedef struct {
    float *dx, *y, *gate, *dy0, *dg0;
} ag_in;

static ag_in ag_make(const ag_args *a, uint64_t seed) {
    ag_in in;
    in.dx = frand_padded(a->M, a->D, a->lddx, seed, 1.0f);
    in.y = frand_padded(a->M, a->D, a->ldy, seed + 1, 1.0f);
    in.gate = a->gated ? frand(a->D, seed + 2, 1.5f) : NULL;
    in.dy0 = frand_padded(a->M, a->D, a->lddy, seed + 3, 100.0f);
    in.dg0 = frand(a->D, seed + 4, 1.0f);
    return in;
}

static void ag_free(ag_in *in) {
    free(in->dx), free(in->y), free(in->gate), free(in->dy0), free(in->dg0);
}

static hl_status ag_run(const hl_ctx *c, const ag_args *a, const ag_in *in, float **dy,
                        float **dg) {
    *dy = a->want_dy ? fcopy(in->dy0, a->M * a->lddy) : NULL;
    *dg = a->want_dgate ? fcopy(in->dg0, a->D) : NULL;
    float *dxc = fcopy(in->dx, a->M * a->lddx);
    hl_status s = hl_add_gated_backward(c, a->M, a->D, dxc, a->lddx, in->y, a->ldy, in->gate, *dy,
                                        a->lddy, *dg);
    CHECK(memcmp(dxc, in->dx, (size_t)(a->M * a->lddx) * sizeof *dxc) == 0,
          "%s: add_gated_backward modified dx", bname(c));
    free(dxc);
    return s;
}

static void ag_label(char *buf, size_t sz, const char *who, const ag_args *a) {
    snprintf(buf, sz, "%s: add_gated_backward M=%lld D=%lld lddx=%lld ldy=%lld lddy=%lld%s%s%s",
             who, (long long)a->M, (long long)a->D, (long long)a->lddx, (long long)a->ldy,
             (long long)a->lddy, a->gated ? " gated" : "", a->want_dy ? " dy" : "",
             a->want_dgate ? " dgate" : "");
}

static void add_gated_case(const ag_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t M = a->M, D = a->D;
    ag_in in = ag_make(a, seed);
    char what[200];
    ag_label(what, sizeof what, bname(be), a);
    float *rdy, *rdg, *bdy, *bdg;
    hl_status s1 = ag_run(&g_ref, a, &in, &rdy, &rdg), s2 = ag_run(be, a, &in, &bdy, &bdg);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status %d %d (%s)", what, s1, s2, g_err.msg);
    if (bdy) judge_exact(what, "dy", bdy, rdy, M, D, a->lddy);
    if (bdg) {
        double *bound = dalloc(D);
        for (int64_t i = 0; i < D; i++) {
            double s = 0;
            for (int64_t m = 0; m < M; m++)
                s += fabs(in.dx[m * a->lddx + i] * in.y[m * a->ldy + i]);
            bound[i] = (M + 4.0) * U_F32 * (s + fabs(in.dg0[i])) + U_F32 * fabs(rdg[i]);
        }
        judge(what, "dgate", bdg, rdg, 1, D, D, bound);
        free(bound);
    }
    free(rdy), free(rdg), free(bdy), free(bdg);
    ag_free(&in);
}

typedef struct {
    const ag_args *a;
    const float *dx;
    const double *y, *gate;
} ag_fd_c;

/* L = Σ dx ⊙ (x + gate ⊙ y): the x term does not depend on y or gate and is left out. */
static double ag_loss(const void *cv) {
    const ag_fd_c *c = cv;
    double L = 0;
    for (int64_t m = 0; m < c->a->M; m++)
        for (int64_t i = 0; i < c->a->D; i++)
            L += c->dx[m * c->a->lddx + i] * (c->gate ? c->gate[i] : 1.0) * c->y[m * c->a->D + i];
    return L;
}

static void add_gated_fd(const ag_args *a, uint64_t seed) {
    const int64_t M = a->M, D = a->D;
    ag_in in = ag_make(a, seed);
    char what[200];
    ag_label(what, sizeof what, "ref vs finite differences", a);
    float *dy, *dg;
    CHECK(ag_run(&g_ref, a, &in, &dy, &dg) == HL_OK, "%s: status", what);
    double *y = dcopy(in.y, M, D, a->ldy), *gate = in.gate ? dcopy(in.gate, 1, D, D) : NULL;
    double *want = dalloc(M * D), *bound = dalloc(M * D), Labs = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t i = 0; i < D; i++)
            Labs += fabs(in.dx[m * a->lddx + i] * y[m * D + i]) * (gate ? fabs(gate[i]) : 1.0);
    ag_fd_c c = {a, in.dx, y, gate};
    if (dy) {
        fd_fill(y, M * D, 1, 1.0, 8 * U_F64 * Labs, ag_loss, &c, NULL, want, bound);
        fd_judge(what, "dy", dy, a->lddy, want, bound, M, D);
        CHECK(pad_intact(dy, M, D, a->lddy), "%s: wrote outside dy", what);
    }
    if (dg) {
        fd_fill(gate, D, 1, 1.0, 8 * U_F64 * Labs, ag_loss, &c, in.dg0, want, bound);
        fd_judge(what, "dgate", dg, D, want, bound, 1, D);
    }
    free(dy), free(dg), free(y), free(gate), free(want), free(bound);
    ag_free(&in);
}

/* ---- scale_heads_backward -------------------------------------------------------------------- */

/* M rows of H heads (x rows ldx apart, dx lddx apart); want_ds 0: ds NULL and x NULL too. */
typedef struct {
    int64_t M;
    int H, hd;
    int64_t ldx, lddx;
    int want_ds;
} sh_args;

typedef struct {
    float *x, *s, *g, *ds0;
} sh_in;

static sh_in sh_make(const sh_args *a, uint64_t seed) {
    const int64_t w = (int64_t)a->H * a->hd;
    sh_in in = {frand_padded(a->M, w, a->ldx, seed, 1.0f), frand(a->H, seed + 1, 2.0f),
                frand_padded(a->M, w, a->lddx, seed + 2, 1.0f), frand(a->H, seed + 3, 1.0f)};
    return in;
}

static void sh_free(sh_in *in) { free(in->x), free(in->s), free(in->g), free(in->ds0); }

static hl_status sh_run(const hl_ctx *c, const sh_args *a, const sh_in *in, float **dx,
                        float **ds) {
    *dx = fcopy(in->g, a->M * a->lddx);
    *ds = a->want_ds ? fcopy(in->ds0, a->H) : NULL;
    return hl_scale_heads_backward(c, a->M, a->H, a->hd, a->want_ds ? in->x : NULL, a->ldx, in->s,
                                   *dx, a->lddx, *ds);
}

static void sh_label(char *buf, size_t sz, const char *who, const sh_args *a) {
    snprintf(buf, sz, "%s: scale_heads_backward M=%lld H=%d hd=%d ldx=%lld lddx=%lld%s", who,
             (long long)a->M, a->H, a->hd, (long long)a->ldx, (long long)a->lddx,
             a->want_ds ? " ds" : " (x NULL)");
}

static void scale_heads_case(const sh_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t M = a->M, w = (int64_t)a->H * a->hd;
    sh_in in = sh_make(a, seed);
    char what[200];
    sh_label(what, sizeof what, bname(be), a);
    float *rdx, *rds, *bdx, *bds;
    hl_status s1 = sh_run(&g_ref, a, &in, &rdx, &rds), s2 = sh_run(be, a, &in, &bdx, &bds);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status %d %d (%s)", what, s1, s2, g_err.msg);
    judge_exact(what, "dx", bdx, rdx, M, w, a->lddx);
    if (bds) {
        double *bound = dalloc(a->H);
        for (int h = 0; h < a->H; h++) {
            double s = 0;
            for (int64_t m = 0; m < M; m++)
                for (int d = 0; d < a->hd; d++)
                    s += fabs(in.g[m * a->lddx + h * a->hd + d] * in.x[m * a->ldx + h * a->hd + d]);
            bound[h] = ((double)M * a->hd + 4) * U_F32 * (s + fabs(in.ds0[h])) +
                       U_F32 * fabs(rds[h]);
        }
        judge(what, "ds", bds, rds, 1, a->H, a->H, bound);
        free(bound);
    }
    free(rdx), free(rds), free(bdx), free(bds);
    sh_free(&in);
}

typedef struct {
    const sh_args *a;
    const float *g;
    const double *x, *s;
} sh_fd_c;

static double sh_loss(const void *cv) {
    const sh_fd_c *c = cv;
    const int64_t w = (int64_t)c->a->H * c->a->hd;
    double L = 0;
    for (int64_t m = 0; m < c->a->M; m++)
        for (int64_t i = 0; i < w; i++)
            L += c->g[m * c->a->lddx + i] * c->x[m * w + i] * c->s[i / c->a->hd];
    return L;
}

static void scale_heads_fd(const sh_args *a, uint64_t seed) {
    const int64_t M = a->M, w = (int64_t)a->H * a->hd;
    sh_in in = sh_make(a, seed);
    char what[200];
    sh_label(what, sizeof what, "ref vs finite differences", a);
    float *dx, *ds;
    CHECK(sh_run(&g_ref, a, &in, &dx, &ds) == HL_OK, "%s: status", what);
    double *x = dcopy(in.x, M, w, a->ldx), *s = dcopy(in.s, 1, a->H, a->H), Labs = 0;
    double *want = dalloc(M * w), *bound = dalloc(M * w);
    for (int64_t m = 0; m < M; m++)
        for (int64_t i = 0; i < w; i++)
            Labs += fabs(in.g[m * a->lddx + i] * x[m * w + i] * s[i / a->hd]);
    sh_fd_c c = {a, in.g, x, s};
    const double R = 8 * U_F64 * Labs;
    fd_fill(x, M * w, 1, 1.0, R, sh_loss, &c, NULL, want, bound);
    fd_judge(what, "dx", dx, a->lddx, want, bound, M, w);
    CHECK(pad_intact(dx, M, w, a->lddx), "%s: wrote outside dx", what);
    if (ds) {
        fd_fill(s, a->H, 1, 1.0, R, sh_loss, &c, in.ds0, want, bound);
        fd_judge(what, "ds", ds, a->H, want, bound, 1, a->H);
    }
    free(dx), free(ds), free(x), free(s), free(want), free(bound);
    sh_free(&in);
}

/* ---- relative_bias_backward ------------------------------------------------------------------ */

typedef struct {
    int H;
    int64_t Sq, Sk;
} rb_args;

static void relbias_run(const hl_ctx *c, const rb_args *a, const float *dbias, const float *drel0,
                        float **drel) {
    const int64_t R = (int64_t)a->H * (a->Sq + a->Sk - 1);
    *drel = falloc(R + 1);
    memcpy(*drel, drel0, (size_t)R * sizeof **drel);
    (*drel)[R] = SENTINEL;
    CHECK(hl_relative_bias_backward(c, a->H, a->Sq, a->Sk, dbias, *drel) == HL_OK,
          "%s: relative_bias_backward status (%s)", bname(c), g_err.msg);
    CHECK((*drel)[R] == SENTINEL, "%s: relative_bias_backward wrote past the table", bname(c));
}

static void relbias_case(const rb_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t nb = (int64_t)a->H * a->Sq * a->Sk, R = (int64_t)a->H * (a->Sq + a->Sk - 1);
    float *dbias = frand(nb, seed, 1.0f), *drel0 = frand(R, seed + 1, 1.0f), *r, *b;
    char what[160];
    snprintf(what, sizeof what, "%s: relative_bias_backward H=%d Sq=%lld Sk=%lld", bname(be), a->H,
             (long long)a->Sq, (long long)a->Sk);
    relbias_run(&g_ref, a, dbias, drel0, &r);
    relbias_run(be, a, dbias, drel0, &b);
    double *bound = dalloc(R), *mag = dalloc(R);
    const int64_t Rh = a->Sq + a->Sk - 1;
    for (int h = 0; h < a->H; h++)
        for (int64_t i = 0; i < a->Sq; i++)
            for (int64_t j = 0; j < a->Sk; j++)
                mag[h * Rh + j - i + a->Sq - 1] += fabs(
                    dbias[((int64_t)h * a->Sq + i) * a->Sk + j]);
    const double n = (double)(a->Sq < a->Sk ? a->Sq : a->Sk) + 4;
    for (int64_t i = 0; i < R; i++)
        bound[i] = n * U_F32 * (mag[i] + fabs(drel0[i])) + U_F32 * fabs(r[i]);
    judge(what, "drel", b, r, 1, R, R, bound);
    free(dbias), free(drel0), free(r), free(b), free(bound), free(mag);
}

typedef struct {
    const rb_args *a;
    const float *dbias;
    const double *rel;
} rb_fd_c;

static double relbias_loss(const void *cv) {
    const rb_fd_c *c = cv;
    const int64_t Sq = c->a->Sq, Sk = c->a->Sk;
    double L = 0;
    for (int h = 0; h < c->a->H; h++)
        for (int64_t i = 0; i < Sq; i++)
            for (int64_t j = 0; j < Sk; j++)
                L += c->dbias[((int64_t)h * Sq + i) * Sk + j] *
                     c->rel[h * (Sq + Sk - 1) + j - i + Sq - 1];
    return L;
}

static void relbias_fd(const rb_args *a, uint64_t seed) {
    const int64_t nb = (int64_t)a->H * a->Sq * a->Sk, R = (int64_t)a->H * (a->Sq + a->Sk - 1);
    float *dbias = frand(nb, seed, 1.0f), *drel0 = frand(R, seed + 1, 1.0f), *r;
    char what[160];
    snprintf(what, sizeof what,
             "ref vs finite differences: relative_bias_backward H=%d Sq=%lld Sk=%lld", a->H,
             (long long)a->Sq, (long long)a->Sk);
    relbias_run(&g_ref, a, dbias, drel0, &r);
    float *rel0 = frand(R, seed + 2, 3.0f);
    double *rel = dcopy(rel0, 1, R, R), *want = dalloc(R), *bound = dalloc(R), Labs = 0;
    for (int64_t i = 0; i < nb; i++) Labs += 3 * fabs(dbias[i]);
    rb_fd_c c = {a, dbias, rel};
    fd_fill(rel, R, 1, 1.0, 8 * U_F64 * Labs, relbias_loss, &c, drel0, want, bound);
    fd_judge(what, "drel", r, R, want, bound, 1, R);
    free(dbias), free(drel0), free(r), free(rel0), free(rel), free(want), free(bound);
}

/* ---- patchify3d / unpatchify3d backward ------------------------------------------------------ */

/* unpatch 0: patchify3d (x (C, T, H, W) -> rows), 1: unpatchify3d (rows -> y (C, T·kt, H·kh,
 * W·kw), T, H, W then count patches). */
typedef struct {
    int unpatch;
    int64_t C, T, H, W;
    int kt, kh, kw;
} patch_args;

/* The sizes: the gradient in (drows for patchify, dy for unpatchify) and out. */
static void patch_sizes(const patch_args *a, int64_t *n_in, int64_t *n_out) {
    const int64_t K = a->C * a->kt * a->kh * a->kw;
    if (!a->unpatch) {
        int64_t P = ((a->T + a->kt - 1) / a->kt) * ((a->H + a->kh - 1) / a->kh) *
                    ((a->W + a->kw - 1) / a->kw);
        *n_in = P * K, *n_out = a->C * a->T * a->H * a->W;
    } else {
        *n_in = *n_out = a->T * a->H * a->W * K;
    }
}

/* Index into x (patchify: the value row element r of patch p reads) or y (unpatchify: where
 * rows[p, r] goes): the forward's layout, written out again here. */
static int64_t patch_src(const patch_args *a, int64_t p, int64_t r) {
    const int64_t Hp = a->unpatch ? a->H : (a->H + a->kh - 1) / a->kh;
    const int64_t Wp = a->unpatch ? a->W : (a->W + a->kw - 1) / a->kw;
    const int64_t t = p / (Hp * Wp), yy = p / Wp % Hp, xx = p % Wp;
    if (!a->unpatch) { /* r = ((c·kt + pt)·kh + ph)·kw + pw; replicate padding clamps */
        int64_t pw = r % a->kw, ph = r / a->kw % a->kh, pt = r / (a->kw * a->kh) % a->kt,
                c = r / (a->kw * a->kh * a->kt);
        int64_t ti = t * a->kt + pt, yi = yy * a->kh + ph, xi = xx * a->kw + pw;
        ti = ti < a->T ? ti : a->T - 1, yi = yi < a->H ? yi : a->H - 1,
        xi = xi < a->W ? xi : a->W - 1;
        return ((c * a->T + ti) * a->H + yi) * a->W + xi;
    }
    /* r = ((pt·kh + ph)·kw + pw)·C + c */
    int64_t c = r % a->C, pw = r / a->C % a->kw, ph = r / (a->C * a->kw) % a->kh,
            pt = r / (a->C * a->kw * a->kh);
    const int64_t To = a->T * a->kt, Ho = a->H * a->kh, Wo = a->W * a->kw;
    return ((c * To + t * a->kt + pt) * Ho + yy * a->kh + ph) * Wo + xx * a->kw + pw;
}

static hl_status patch_run(const hl_ctx *c, const patch_args *a, const float *gin, float **out) {
    int64_t ni, no;
    patch_sizes(a, &ni, &no);
    *out = fconst(no + 1, 55.0f);
    (*out)[no] = SENTINEL;
    hl_status s =
        a->unpatch
            ? hl_unpatchify3d_backward(c, a->C, a->T, a->H, a->W, a->kt, a->kh, a->kw, gin, *out)
            : hl_patchify3d_backward(c, a->C, a->T, a->H, a->W, a->kt, a->kh, a->kw, gin, *out);
    CHECK((*out)[no] == SENTINEL, "%s: wrote past the end", bname(c));
    return s;
}

static void patch_label(char *buf, size_t sz, const char *who, const patch_args *a) {
    snprintf(buf, sz, "%s: %s_backward C=%lld T=%lld %s=%lld %s=%lld kernel %dx%dx%d", who,
             a->unpatch ? "unpatchify3d" : "patchify3d", (long long)a->C, (long long)a->T,
             a->unpatch ? "Hp" : "H", (long long)a->H, a->unpatch ? "Wp" : "W", (long long)a->W,
             a->kt, a->kh, a->kw);
}

static void patch_case(const patch_args *a, uint64_t seed, const hl_ctx *be) {
    int64_t ni, no;
    patch_sizes(a, &ni, &no);
    float *gin = frand(ni, seed, 1.0f), *r, *b;
    char what[200];
    patch_label(what, sizeof what, bname(be), a);
    hl_status s1 = patch_run(&g_ref, a, gin, &r), s2 = patch_run(be, a, gin, &b);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status %d %d (%s)", what, s1, s2, g_err.msg);
    if (a->unpatch) {
        judge_exact(what, "drows", b, r, 1, no, no);
    } else {
        double *bound = dalloc(no);
        const int64_t K = a->C * a->kt * a->kh * a->kw;
        for (int64_t i = 0; i < ni; i++) bound[patch_src(a, i / K, i % K)] += fabs(gin[i]);
        for (int64_t i = 0; i < no; i++) bound[i] *= (a->kt * a->kh * a->kw + 2.0) * U_F32;
        judge(what, "dx", b, r, 1, no, no, bound);
        free(bound);
    }
    free(gin), free(r), free(b);
}

typedef struct {
    const patch_args *a;
    const float *gin;
    const double *x;
    int64_t n, K;
} patch_fd_c;

/* L = Σ gin ⊙ forward(x): patchify gathers rows from x; unpatchify scatters rows into y, so
 * there x is the rows and gin the gradient of y. */
static double patch_loss(const void *cv) {
    const patch_fd_c *c = cv;
    double L = 0;
    for (int64_t i = 0; i < c->n; i++) {
        int64_t src = patch_src(c->a, i / c->K, i % c->K);
        L += c->a->unpatch ? c->gin[src] * c->x[i] : c->gin[i] * c->x[src];
    }
    return L;
}

static void patch_fd(const patch_args *a, uint64_t seed) {
    int64_t ni, no;
    patch_sizes(a, &ni, &no);
    float *gin = frand(ni, seed, 1.0f), *r, *x0 = frand(no, seed + 1, 1.0f);
    char what[200];
    patch_label(what, sizeof what, "ref vs finite differences", a);
    CHECK(patch_run(&g_ref, a, gin, &r) == HL_OK, "%s: status", what);
    double *x = dcopy(x0, 1, no, no), *want = dalloc(no), *bound = dalloc(no), Labs = 0;
    for (int64_t i = 0; i < ni; i++) Labs += fabs(gin[i]);
    const int64_t K = a->C * a->kt * a->kh * a->kw;
    patch_fd_c c = {a, gin, x, a->unpatch ? no : ni, K};
    fd_fill(x, no, 1, 1.0, 8 * U_F64 * Labs, patch_loss, &c, NULL, want, bound);
    if (!a->unpatch) { /* the host code sums the values read from one position in float32 */
        double *mag = dalloc(no);
        for (int64_t i = 0; i < ni; i++) mag[patch_src(a, i / K, i % K)] += fabs(gin[i]);
        for (int64_t i = 0; i < no; i++) bound[i] += (a->kt * a->kh * a->kw + 2.0) * U_F32 * mag[i];
        free(mag);
    }
    fd_judge(what, a->unpatch ? "drows" : "dx", r, no, want, bound, 1, no);
    free(gin), free(r), free(x0), free(x), free(want), free(bound);
}

/* ---- the case table -------------------------------------------------------------------------- */

typedef enum {
    G_LINEAR,
    G_ATTENTION,
    G_ROPE,
    G_FLAT, /* gelu_tanh, silu, gelu_tanh_mul */
    G_ADD_GATED,
    G_SCALE_HEADS,
    G_RELBIAS,
    G_PATCH, /* patchify3d, unpatchify3d */
    G_COUNT
} grad_op;

static const char *grad_op_name[G_COUNT] = {
    "linear",    "attention",   "rope",          "gelu/silu/gelu_mul",
    "add_gated", "scale_heads", "relative_bias", "patchify/unpatchify"};

typedef struct {
    grad_op op;
    uint64_t seed;
    int fd; /* small enough for finite differences */
    union {
        lin_args lin;
        att_args att;
        heads_args heads;
        flat_args flat;
        ag_args ag;
        sh_args sh;
        rb_args rb;
        patch_args patch;
    } u;
} grad_case;

static grad_case *g_cases;
static int g_ncases, g_cap;

static void add_case(grad_case c) {
    if (g_ncases == g_cap) {
        g_cap = g_cap ? 2 * g_cap : 256;
        g_cases = realloc(g_cases, (size_t)g_cap * sizeof *g_cases);
        if (!g_cases) exit(2);
    }
    g_cases[g_ncases++] = c;
}

static void add_lin(int64_t M, int64_t K, int64_t N, int64_t ldx, int64_t lddy, int64_t lddx,
                    hl_dtype wdt, int want, int acc_dx, uint64_t seed) {
    add_case((grad_case){G_LINEAR, seed, M * K * N <= 4000,
                         .u.lin = {M, K, N, ldx, lddy, lddx, wdt, want, acc_dx}});
}

static void linear_cases(void) {
    const int64_t Ms[] = {1, 7, 13}, Ks[] = {1, 3, 13}, Ns[] = {1, 5, 11};
    const int wants[] = {W_DX | W_DW | W_DB, W_DX, W_DW | W_DB, W_DX | W_DB, W_DW};
    uint64_t seed = 100;
    int i = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 3; c++, i++) {
                int64_t M = Ms[a], K = Ks[b], N = Ns[c];
                int64_t ldx = i % 2 ? K + 3 : K, lddy = i % 3 ? N + 2 : N, lddx = i % 4 ? K + 5 : K;
                for (int d = 0; d < 2; d++)
                    add_lin(M, K, N, ldx, lddy, lddx, d ? HL_BF16 : HL_F32, wants[(i + d) % 5],
                            (i + d) % 3 == 1, seed++);
            }
    /* past the thread threshold of the cpu backend, strided and dense; accumulate_dx */
    for (int d = 0; d < 2; d++) {
        hl_dtype dt = d ? HL_BF16 : HL_F32;
        add_lin(97, 131, 67, 140, 70, 133, dt, W_DX | W_DW | W_DB, 0, seed++);
        add_lin(256, 384, 448, 384, 448, 384, dt, W_DX | W_DW | W_DB, d, seed++);
        add_lin(301, 61, 67, 64, 67, 61, dt, W_DX | W_DW | W_DB, 1, seed++);
        add_lin(1, 384, 448, 384, 448, 384, dt, W_DX | W_DW | W_DB, 0, seed++); /* M = 1 */
    }
}

static void add_att(int64_t Sq, int64_t Sk, int H, int hd, int strided, int has_bias, att_mask mk,
                    int want, hl_dtype dt, float amp_q, uint64_t seed) {
    if (mk == AM_ROW && !has_bias) mk = AM_SOME;
    if (!has_bias) want &= ~A_DB;
    if (!want) want = A_DQ;
    int fd = Sq * Sk * H * hd <= 8000 && mk != AM_ALL;
    add_case((grad_case){G_ATTENTION, seed, fd,
                         .u.att = {Sq, Sk, H, hd, strided, has_bias, mk, want, dt, amp_q}});
}

static void attention_cases(void) {
    const int64_t Sqs[] = {1, 7, 13}, Sks[] = {1, 5, 17};
    const int hds[] = {5, 8, 7, 16};
    const int wants[] = {A_DQ | A_DK | A_DV | A_DB, A_DQ, A_DK | A_DV, A_DB | A_DV, A_DQ | A_DB};
    uint64_t seed = 1000;
    int i = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (int m = 0; m < 4; m++, i++) {
                int H = i % 2 ? 3 : 1, hd = hds[i % 4];
                add_att(Sqs[a], Sks[b], H, hd, i % 3 != 0, m % 2 == 0 || m == 3, (att_mask)m,
                        wants[i % 5], i % 4 == 3 ? HL_BF16 : HL_F32, 1.0f, seed++);
            }
    /* all keys masked (backend against ref only); a peaky softmax; Sq != Sk with every view */
    add_att(7, 11, 2, 8, 1, 1, AM_ALL, A_DQ | A_DK | A_DV | A_DB, HL_F32, 1.0f, seed++);
    add_att(5, 9, 2, 6, 0, 1, AM_SOME, A_DQ | A_DK | A_DV | A_DB, HL_F32, 6.0f, seed++);
    add_att(11, 3, 2, 9, 1, 1, AM_ROW, A_DQ | A_DK | A_DV | A_DB, HL_BF16, 1.0f, seed++);
    /* larger: several query blocks (cpu), threads, long keys */
    add_att(61, 131, 2, 64, 1, 1, AM_SOME, A_DQ | A_DK | A_DV | A_DB, HL_F32, 2.0f, seed++);
    add_att(200, 77, 3, 32, 0, 0, AM_NONE, A_DQ | A_DK | A_DV, HL_BF16, 1.0f, seed++);
    add_att(97, 301, 1, 24, 1, 1, AM_ROW, A_DK | A_DB, HL_F32, 1.0f, seed++);
    add_att(256, 256, 4, 64, 0, 1, AM_SOME, A_DQ | A_DK | A_DV | A_DB, HL_F32, 1.0f, seed++);
    /* more queries than one block holds (256 rows at most): two blocks, the last one padded */
    add_att(300, 40, 2, 16, 1, 1, AM_SOME, A_DQ | A_DK | A_DV | A_DB, HL_F32, 1.0f, seed++);
    add_att(300, 40, 2, 16, 1, 1, AM_SOME, A_DQ | A_DK | A_DV | A_DB, HL_BF16, 1.0f, seed++);
}

static void pointwise_cases(void) {
    uint64_t seed = 2000;
    const int64_t ns[] = {1, 15, 16, 17, 97, 1000};
    const int Ms[] = {1, 7, 13}, hds[] = {2, 5, 16, 34};
    int i = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 4; b++, i++) {
            int H = i % 2 ? 3 : 1;
            int64_t w = (int64_t)H * hds[b], ld = i % 3 ? w + 11 : w;
            add_case((grad_case){G_ROPE, seed++, 1, .u.heads = {Ms[a], H, hds[b], ld}});
            add_case((grad_case){G_SCALE_HEADS, seed++, 1,
                                 .u.sh = {Ms[a], H, hds[b], i % 2 ? w + 3 : w, ld, i % 4 != 3}});
        }
    add_case((grad_case){G_ROPE, seed++, 0, .u.heads = {301, 12, 128, 3 * 1536}});
    add_case((grad_case){G_SCALE_HEADS, seed++, 0, .u.sh = {301, 12, 128, 1536, 1536 + 16, 1}});
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 6; j++) {
            int alias = k == 2 ? j % 3 : j % 2, want = k == 2 ? 1 + j % 3 : 1;
            if (k == 2 && alias == 1 && !(want & 1)) want |= 1;
            if (k == 2 && alias == 2 && !(want & 2)) want |= 2;
            add_case((grad_case){G_FLAT, seed++, 1, .u.flat = {k, ns[j], alias, want, 6.0f}});
            add_case((grad_case){G_FLAT, seed++, 1, .u.flat = {k, ns[j], 0, 3, 0.01f}});
        }
    for (int k = 0; k < 3; k++)
        add_case((grad_case){G_FLAT, seed++, 0, .u.flat = {k, 100003, k == 2 ? 2 : 1, 3, 4.0f}});
    const int64_t Ds[] = {1, 3, 61};
    i = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++, i++) {
            int64_t D = Ds[b];
            int gated = i % 2 == 0, want_dg = gated && i % 4 != 2, want_dy = !want_dg || i % 3;
            add_case((grad_case){G_ADD_GATED, seed++, 1,
                                 .u.ag = {Ms[a], D, D + i % 2 * 3, D + i % 3 * 5,
                                          D + (i + 1) % 2 * 2, gated, want_dy, want_dg}});
        }
    add_case((grad_case){G_ADD_GATED, seed++, 0, .u.ag = {2304, 1536, 1536, 1536, 1536, 1, 1, 1}});
    const int Hs[] = {1, 3};
    const int64_t Ss[] = {1, 2, 7, 13};
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c += 1 + (b + a) % 2)
                add_case((grad_case){G_RELBIAS, seed++, 1, .u.rb = {Hs[a], Ss[b], Ss[c]}});
    add_case((grad_case){G_RELBIAS, seed++, 0, .u.rb = {8, 512, 512}});
    /* layouts: kernels of 1 and 2 with the replicate padding of odd sizes; the head's 1x2x2 */
    static const patch_args pa[] = {
        {0, 3, 5, 7, 9, 1, 2, 2}, {0, 2, 3, 5, 4, 2, 2, 3},    {0, 1, 1, 1, 1, 1, 1, 1},
        {0, 4, 2, 6, 6, 1, 2, 2}, {0, 16, 3, 16, 16, 1, 2, 2}, {1, 3, 5, 3, 4, 1, 2, 2},
        {1, 2, 2, 3, 2, 2, 3, 2}, {1, 1, 1, 1, 1, 1, 1, 1},    {1, 16, 3, 8, 8, 1, 2, 2}};
    for (int k = 0; k < 9; k++) {
        patch_args p = pa[k];
        add_case((grad_case){G_PATCH, seed++, p.C * p.T * p.H * p.W < 1000 * (p.unpatch ? 1 : 4),
                             .u.patch = p});
    }
}

static void build_cases(void) {
    linear_cases();
    attention_cases();
    pointwise_cases();
}

static void case_run(const grad_case *c, const hl_ctx *be) {
    switch (c->op) {
    case G_LINEAR: linear_case(&c->u.lin, c->seed, be); break;
    case G_ATTENTION: attention_case(&c->u.att, c->seed, be); break;
    case G_ROPE: rope_case(&c->u.heads, c->seed, be); break;
    case G_FLAT: flat_case(&c->u.flat, c->seed, be); break;
    case G_ADD_GATED: add_gated_case(&c->u.ag, c->seed, be); break;
    case G_SCALE_HEADS: scale_heads_case(&c->u.sh, c->seed, be); break;
    case G_RELBIAS: relbias_case(&c->u.rb, c->seed, be); break;
    case G_PATCH: patch_case(&c->u.patch, c->seed, be); break;
    case G_COUNT: break;
    }
}

static void case_fd(const grad_case *c) {
    switch (c->op) {
    case G_LINEAR: linear_fd(&c->u.lin, c->seed); break;
    case G_ATTENTION: attention_fd(&c->u.att, c->seed); break;
    case G_ROPE: rope_fd(&c->u.heads, c->seed); break;
    case G_FLAT: flat_fd(&c->u.flat, c->seed); break;
    case G_ADD_GATED: add_gated_fd(&c->u.ag, c->seed); break;
    case G_SCALE_HEADS: scale_heads_fd(&c->u.sh, c->seed); break;
    case G_RELBIAS: relbias_fd(&c->u.rb, c->seed); break;
    case G_PATCH: patch_fd(&c->u.patch, c->seed); break;
    case G_COUNT: break;
    }
}

/* ---- outside the table ----------------------------------------------------------------------- */

/* The finite-difference judge rejects a gradient off by a little: one element of ref's dW moved
 * by 1e-4 relative on a linear case, and rope's inverse rotation replaced by the forward one. */
static void fd_rejects(void) {
    lin_args a = {7, 13, 5, 13, 5, 13, HL_F32, W_DW, 0};
    lin_in in = lin_make(&a, 5);
    float *dx, *dW, *db;
    CHECK(lin_run(&g_ref, &a, &in, &dx, &dW, &db) == HL_OK, "fd_rejects: status");
    double *x = dcopy(in.x, 7, 13, 13), *w = dcopy(in.w, 5, 13, 13), *b = dalloc(5);
    double *want = dalloc(65), *bound = dalloc(65);
    lin_fd c = {&a, x, w, b, in.dy};
    fd_fill(w, 65, 1, 1.0, 1e-14, lin_loss, &c, in.dW0, want, bound);
    CHECK(cmp_ok(compare_d(dW, 13, want, bound, 5, 13)), "fd_rejects: the right dW accepted");
    dW[17] *= 1.0001f;
    CHECK(!cmp_ok(compare_d(dW, 13, want, bound, 5, 13)), "fd_rejects: a wrong dW rejected");
    free(dx), free(dW), free(db), free(x), free(w), free(b), free(want), free(bound);
    lin_free(&in);

    heads_args h = {3, 2, 6, 12};
    float *g = frand(36, 9, 1.0f), *rope = rope_table(3, 6), *fwd = fcopy(g, 36);
    hl_rope(&g_ref, 3, 2, 6, fwd, 12, rope); /* the forward rotation instead of its transpose */
    float *x0 = frand(36, 10, 1.0f);
    double *xd = dcopy(x0, 3, 12, 12), *rd = dcopy(rope, 3, 6, 6);
    want = dalloc(36), bound = dalloc(36);
    rope_fd_c rc = {&h, xd, rd, g};
    fd_fill(xd, 36, 1, 1.0, 1e-14, rope_loss, &rc, NULL, want, bound);
    CHECK(!cmp_ok(compare_d(fwd, 12, want, bound, 3, 12)), "fd_rejects: a wrong rotation rejected");
    free(g), free(rope), free(fwd), free(x0), free(xd), free(rd), free(want), free(bound);
}

/* The argument checks of ops.c for the backwards, on one backend. */
static void grad_checks(const hl_ctx *be) {
    float z[64] = {0}, x[64] = {0};
    void *ws;
    hl_tensor W = make_tensor(z, 4, 4, HL_F32, &ws);
    CHECK(hl_linear_backward(be, 2, x, 4, &W, z, 4, x, 4, 0, NULL, NULL) == HELIOS_ERR_INVALID_ARG,
          "linear_backward: dx == x rejected");
    CHECK(hl_linear_backward(be, 2, x, 4, &W, z, 4, z + 2, 4, 0, NULL, NULL) ==
              HELIOS_ERR_INVALID_ARG,
          "linear_backward: dx overlapping dy rejected");
    CHECK(hl_linear_backward(be, 2, NULL, 4, &W, z, 4, NULL, 4, 0, z + 32, NULL) ==
              HELIOS_ERR_INVALID_ARG,
          "linear_backward: dW without x rejected");
    CHECK(hl_linear_backward(be, 2, x, 3, &W, z, 4, NULL, 4, 0, z + 32, NULL) ==
              HELIOS_ERR_INVALID_ARG,
          "linear_backward: ldx < K rejected");
    hl_tensor Wi = W;
    Wi.dtype = HL_F16;
    CHECK(hl_linear_backward(be, 2, x, 4, &Wi, z, 4, z + 32, 4, 0, NULL, NULL) == HELIOS_ERR_DTYPE,
          "linear_backward: F16 weight rejected");
    CHECK(hl_linear_backward(be, 0, x, 4, &W, z, 4, z + 32, 4, 0, NULL, NULL) == HL_OK,
          "linear_backward: M = 0");
    free(ws);
    CHECK(hl_attention_biased_backward(be, 2, 2, 1, 4, z, 4, z, 4, z, 4, 1.0f, NULL, NULL, HL_F32,
                                       z, 4, z, 4, x, 4, NULL, 4, NULL, 4,
                                       z + 16) == HELIOS_ERR_INVALID_ARG,
          "attention_backward: dbias without bias rejected");
    CHECK(hl_attention_backward(be, 2, 2, 1, 4, z, 4, z, 4, z, 4, 1.0f, HL_F32, z, 4, z, 4, z + 4,
                                4, NULL, 4, NULL, 4) == HELIOS_ERR_INVALID_ARG,
          "attention_backward: dq overlapping an input rejected");
    CHECK(hl_attention_backward(be, 2, 2, 1, 4, z, 4, z, 4, z, 4, 1.0f, HL_F16, z, 4, z, 4, x, 4,
                                NULL, 4, NULL, 4) == HELIOS_ERR_DTYPE,
          "attention_backward: F16 compute rejected");
    /* no queries: dk, dv are zeros */
    for (int i = 0; i < 16; i++) x[i] = 5.0f;
    CHECK(hl_attention_backward(be, 0, 2, 1, 4, z, 4, z, 4, z, 4, 1.0f, HL_F32, z, 4, z, 4, NULL, 4,
                                x, 4, x + 8, 4) == HL_OK &&
              max_abs(x, 16) == 0.0,
          "attention_backward: Sq = 0 zeroes dk, dv");
    CHECK(hl_gelu_tanh_backward(be, 4, x, z, x + 2) == HELIOS_ERR_INVALID_ARG,
          "gelu_tanh_backward: dx overlapping x rejected");
    CHECK(hl_silu_backward(be, -1, x, z, z) == HELIOS_ERR_INVALID_ARG, "silu_backward: n < 0");
    CHECK(hl_gelu_tanh_mul_backward(be, 4, x, z, z + 8, z + 16, z + 18) == HELIOS_ERR_INVALID_ARG,
          "gelu_tanh_mul_backward: dx overlapping dg rejected");
    CHECK(hl_add_gated_backward(be, 2, 4, z, 4, z + 8, 4, NULL, x, 4, x + 16) ==
              HELIOS_ERR_INVALID_ARG,
          "add_gated_backward: dgate without gate rejected");
    CHECK(hl_add_gated_backward(be, 2, 4, z, 4, z + 8, 4, NULL, z + 2, 4, NULL) ==
              HELIOS_ERR_INVALID_ARG,
          "add_gated_backward: dy overlapping dx rejected");
    CHECK(hl_scale_heads_backward(be, 2, 2, 2, x, 4, z, x, 4, z + 8) == HELIOS_ERR_INVALID_ARG,
          "scale_heads_backward: dx == x with ds rejected");
    CHECK(hl_rope_backward(be, 1, 2, 4, x, 4, z) == HELIOS_ERR_INVALID_ARG,
          "rope_backward: ldx < H·hd rejected");
    CHECK(hl_relative_bias_backward(be, 1, 2, 2, NULL, x) == HELIOS_ERR_INVALID_ARG,
          "relative_bias_backward: NULL dbias rejected");
    CHECK(hl_patchify3d_backward(be, 1, 1, 1, 1, 0, 1, 1, z, x) == HELIOS_ERR_INVALID_ARG,
          "patchify3d_backward: kernel 0 rejected");
}

/* Repeated calls give the same bits (cached primitives, threads: a deterministic result). */
static void repeat_checks(const hl_ctx *be) {
    for (int k = 0; k < g_ncases; k++) {
        const grad_case *c = &g_cases[k];
        if (c->op == G_LINEAR && c->u.lin.M == 256) {
            lin_in in = lin_make(&c->u.lin, c->seed);
            float *dx1, *dW1, *db1, *dx2, *dW2, *db2;
            lin_run(be, &c->u.lin, &in, &dx1, &dW1, &db1);
            lin_run(be, &c->u.lin, &in, &dx2, &dW2, &db2);
            const lin_args *a = &c->u.lin;
            CHECK(!memcmp(dx1, dx2, (size_t)(a->M * a->lddx) * 4) &&
                      !memcmp(dW1, dW2, (size_t)(a->N * a->K) * 4) &&
                      !memcmp(db1, db2, (size_t)a->N * 4),
                  "%s: linear_backward repeatable", bname(be));
            free(dx1), free(dW1), free(db1), free(dx2), free(dW2), free(db2);
            lin_free(&in);
        }
        if (c->op == G_ATTENTION && c->u.att.Sq == 256) {
            att_in in = att_make(&c->u.att, c->seed);
            att_out o1, o2;
            att_run(be, &c->u.att, &in, &o1);
            att_run(be, &c->u.att, &in, &o2);
            const int64_t nb = (int64_t)c->u.att.H * 256 * 256;
            CHECK(!memcmp(o1.dq, o2.dq, (size_t)(256 * in.lddq) * 4) &&
                      !memcmp(o1.dk, o2.dk, (size_t)(256 * in.lddk) * 4) &&
                      !memcmp(o1.dv, o2.dv, (size_t)(256 * in.lddv) * 4) &&
                      !memcmp(o1.db, o2.db, (size_t)nb * 4),
                  "%s: attention_backward repeatable", bname(be));
            att_out_free(&o1), att_out_free(&o2);
            att_free(&in);
        }
    }
}

int main(int argc, char **argv) {
    g_verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    g_ref = test_ctx(HELIOS_BACKEND_REF, &g_err);
    build_cases();
    fd_rejects();

    int per_op[G_COUNT] = {0}, fd_op[G_COUNT] = {0};
    for (int i = 0; i < g_ncases; i++) {
        per_op[g_cases[i].op]++;
        if (g_cases[i].fd) case_fd(&g_cases[i]), fd_op[g_cases[i].op]++;
    }
    for (int b = 0; b < test_n_backends; b++) {
        hl_ctx be = test_ctx(test_backends[b], &g_err);
        grad_checks(&be);
        repeat_checks(&be);
        for (int i = 0; i < g_ncases; i++) case_run(&g_cases[i], &be);
    }
    printf("test_ops_grad: %d cases x %d backend(s) (cases / of them against finite "
           "differences:",
           g_ncases, test_n_backends);
    for (int k = 0; k < G_COUNT; k++)
        printf("%s %s %d/%d", k ? "," : "", grad_op_name[k], per_op[k], fd_op[k]);
    printf(")\n");
    free(g_cases);
    return test_done("test_ops_grad");
}
