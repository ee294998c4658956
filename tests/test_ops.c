/* Ops: a table of cases crossed with a list of backends. Every backend of test_backends
 * (test_util.h; today the cpu backend) runs every case of the table, and its result is judged against the scalar oracle
 * hl_ref_<op> on the same inputs: odd shapes (primes), non-contiguous views (ld > width, with the
 * columns between checked untouched), in place, and moderately realistic shapes. A new backend
 * (a device one) runs every case by being added to test_backends.
 *
 * The table has a gradient mode (OP_NORM_GRAD): the layernorm / rmsnorm forward with its save,
 * then the backward, with and without affine weight / bias, with gradients left out (NULL), dx
 * aliasing dy, and prefilled outputs (dx is overwritten, dw and db accumulate). Each backend's
 * backward is compared with ref's; on the small shapes, ref's backward is itself checked against
 * central finite differences of a double-precision forward (fd_check).
 *
 * Outside the table: the vector math of the cpu backend (exp, tanh, bf16 rounding), the argument
 * checks (per backend), and a check that the comparison itself rejects wrong results.
 *
 * Tolerances
 *   float32 paths: |cpu - ref| <= 1e-5 · max|ref| over the output (ref sums in double; a float32
 *     dot product of length K is typically off by ~sqrt(K)·2^-24 relative, 2.3e-6 at K = 1536).
 *   bf16 linear: an element-wise bound from the unit roundoffs. bf16 keeps 8 significant bits,
 *     so rounding to nearest has relative error <= u_bf16 = 2^-8 (half its epsilon 2^-7; 2^-9
 *     would be too tight: |x| = 0.06813 rounds to 0.06836, 3.3e-3 relative). The cpu rounds x
 *     to bf16 (W is bf16 for both backends); bf16 x bf16 products are exact in float32; float32
 *     accumulation of K terms adds <= 2K·2^-24 (AMX sums pairs, so count two roundings per
 *     term). Hence |cpu - ref| <= (2^-8 + (2K + 4)·2^-24) · Σ_k |x_k w_k| + 2^-23·|ref|, i.e.
 *     about 0.4% of the sum of magnitudes, whatever K: a relative 1e-2 of max|ref| would be
 *     looser for random data and not a bound for cancelling sums.
 *   bf16 attention: per output row i of head h, with vmax = max|v_h| and
 *     Δ_i = scale·(2^-7 + (hd + 2)·2^-23)·Σ_d |q_id|·max_j |k_jd| bounding the score error from
 *     rounding q and k (2^-8 each, plus float32 sums), a score error <= Δ changes each softmax
 *     weight by a factor within e^{±2Δ}, so the output moves <= (e^{2Δ} - 1)·vmax; rounding the
 *     probabilities (2^-8 relative, the normaliser is the float32 sum of the unrounded ones) and
 *     v (2^-8), the exp approximation (<= 1e-5 relative, twice) and float32 sums over Sk keys add
 *     (2·2^-8 + 2e-5 + (2·Sk + 8)·2^-24)·vmax. That bound is worst case (0.1% to 9% of the
 *     observed errors, printed with -v), so the output must also be within 1e-2·max|ref|: a
 *     statistical check (independent roundings cancel) that holds with margin >= 1.7 here.
 *   element-wise functions: |cpu - ref| <= 4e-6·|ref| + 2e-7·|x|: the absolute term covers
 *     the oracle itself, whose 1 + tanh(u) in double cancels to ~1e-16·|x| for u << 0.
 *   norm backward, backend against ref (both from ref's saved statistics, so the backward alone
 *     is judged; the backend's own saved statistics are compared with ref's at 1e-5): per
 *     element, with u = 2^-24, x̂ = (x - mean)·rstd, g = dy ⊙ w and
 *     S_i = |g_i| + mean|g| + |x̂_i|·mean|g ⊙ x̂| (the magnitudes that make up dx_i / rstd):
 *       dx: (D + 8)·u·rstd·S_i — float32 sums of D terms for mean(g) and mean(g ⊙ x̂), <= D
 *           roundings each in the worst case (the backend may sum sequentially), and a handful
 *           of roundings of the element-wise terms;
 *       dw: (2M + 6)·u·(Σ_rows |dy ⊙ x̂| + |dw₀|), db: (2M + 6)·u·(Σ_rows |dy| + |db₀|) —
 *           three roundings per row term (x - mean, ·rstd, ·dy), M - 1 summing the rows, at most
 *           M more merging per-thread partials, one adding to the prefilled dw₀, db₀.
 *     These are worst-case bounds (measured <= 0.25 of them), so the 1e-5·max|ref| float32
 *     rule must hold as well, a statistical check as for bf16 attention (measured <= 0.05; not
 *     for dx at D = 1, see norm_grad_case). -v prints both.
 *   norm backward, ref against finite differences: see fd_check.
 *
 * test_ops -v prints every comparison. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "ops/cpu/cpu_internal.h"
#include "ops/ops_backends.h"
#include "test_ops_util.h"
#include "test_util.h"

static hl_error g_err;
static hl_ctx g_ref; /* the oracle (test_ctx, in main); the backends judged: test_backends */

/* ---- the case table -------------------------------------------------------------------------- *
 * One case = an op, its shapes / views / dtypes / variant, and a seed for its inputs. The runner
 * of the op (op_case_run) makes the inputs from the seed, runs ref and one backend, and judges
 * the backend with the op's tolerance (top of the file). The table is filled once (build_cases)
 * and main crosses it with test_backends (every case, every argument check, on each). */

typedef enum {
    OP_LINEAR,
    OP_ATTENTION,
    OP_ATTENTION_BIASED,
    OP_NORM,      /* layernorm, its affine and modulate forms, rmsnorm (± w) */
    OP_NORM_GRAD, /* the gradient mode: layernorm / rmsnorm forward with save + backward */
    OP_ROPE,
    OP_SCALE_HEADS,
    OP_ADD_GATED,
    OP_FLAT, /* gelu_tanh, silu */
    OP_GELU_MUL,
    OP_RELATIVE_BIAS,
    OP_COUNT
} op_id;

static const char *op_name[OP_COUNT] = {
    "linear",      "attention", "attention_biased", "norm",          "norm backward", "rope",
    "scale_heads", "add_gated", "gelu_tanh/silu",   "gelu_tanh_mul", "relative_bias",
};

/* linear: x [M, K] rows ldx apart, y [M, N] rows ldy apart, W [N, K] in wdt, bias [N] in bdt. */
typedef struct {
    int64_t M, K, N;
    hl_dtype wdt, bdt;
    int has_bias;
    int64_t ldx, ldy;
} linear_args;

/* attention: q [Sq, H·hd], k, v [Sk, H·hd] (fused: column slices of one [S, 3·H·hd] buffer),
 * out [Sq, ldo]; amp_q scales q (larger scores, peakier softmax). */
typedef struct {
    int64_t Sq, Sk;
    int H, hd;
    hl_dtype dt;
    int fused;
    int64_t ldo;
    float amp_q;
} attention_args;

typedef enum {
    MASK_NONE,    /* key_bias NULL */
    MASK_SOME,    /* every third key masked (-FLT_MAX), their v rows 1e20: any weight > 0 shows */
    MASK_ALL,     /* every key masked (a fully padded sequence): uniform weights, as ref */
    MASK_GENERAL, /* finite random key biases, plus every fifth key masked */
} mask_kind;

static const char *mask_name[] = {"", " mask", " all-masked", " key-bias"};

/* attention_biased: as attention_args, strided: q, k, v column slices with distinct row strides;
 * bias_amp 0: bias NULL; huge: -1e38 biases at masked keys (see biased_case). */
typedef struct {
    int64_t Sq, Sk;
    int H, hd;
    hl_dtype dt;
    int strided;
    int64_t ldo;
    float bias_amp;
    mask_kind mk;
    int huge;
} biased_args;

typedef enum { K_LN, K_LN_AFFINE, K_MOD, K_RMS, K_RMS_W } norm_kind;

static const char *norm_name[] = {"layernorm", "layernorm affine", "layernorm_modulate", "rmsnorm",
                                  "rmsnorm w"};

/* norm forward: x [M, D] rows ld apart (y the same), offset added to x (a large mean). */
typedef struct {
    norm_kind kind;
    int64_t M, D, ld;
    int in_place;
    float offset;
} norm_args;

enum { G_DX = 1, G_DW = 2, G_DB = 4 }; /* the gradients a backward case asks for */

/* norm backward: rms or layernorm, with weight w and / or bias b (b: layernorm only), x [M, D]
 * rows ldx apart, dy rows lddy apart, dx rows lddx apart (alias: dx is dy's buffer, lddx = lddy),
 * want: G_* (the others are passed as NULL), eps of the forward, offset added to x. */
typedef struct {
    int rms, has_w, has_b;
    int64_t M, D, ldx, lddy, lddx;
    int want, alias;
    float eps, offset;
} grad_args;

/* rope, scale_heads: M rows of H heads of width hd, rows ldx apart. */
typedef struct {
    int64_t M;
    int H, hd;
    int64_t ldx;
} heads_args;

/* add_gated: x [M, D] rows ldx apart += gate ⊙ y (rows ldy apart). */
typedef struct {
    int64_t M, D, ldx, ldy;
    int gated;
} add_gated_args;

/* gelu_tanh (gelu = 1) or silu on n values of amplitude amp. */
typedef struct {
    int gelu;
    int64_t n;
    int in_place;
    float amp;
} flat_args;

/* gelu_tanh_mul: inplace 0 out of place, 1 y == x, 2 y == g. */
typedef struct {
    int64_t n;
    int inplace;
    float amp;
} gelu_mul_args;

typedef struct {
    int H;
    int64_t Sq, Sk;
} relbias_args;

typedef struct op_case {
    op_id op;
    uint64_t seed;
    union {
        linear_args linear;
        attention_args attention;
        biased_args biased;
        norm_args norm;
        grad_args grad;
        heads_args heads; /* OP_ROPE, OP_SCALE_HEADS */
        add_gated_args add_gated;
        flat_args flat;
        gelu_mul_args gelu_mul;
        relbias_args relbias;
    } u;
} op_case;

static op_case *g_cases;
static int g_ncases, g_cap;

static void add_case(op_case c) {
    if (g_ncases == g_cap) {
        g_cap = g_cap ? 2 * g_cap : 256;
        g_cases = realloc(g_cases, (size_t)g_cap * sizeof *g_cases);
        if (!g_cases) exit(2);
    }
    g_cases[g_ncases++] = c;
}

/* ---- the comparison can fail ----------------------------------------------------------------- */

static void test_compare_rejects(const hl_ctx *be) {
    float want[6] = {1, -2, 3, 0.5f, 0, 4}, got[6];
    memcpy(got, want, sizeof got);
    CHECK(cmp_ok(compare(got, 3, want, 3, 2, 3, NULL, 0, 1e-5)), "identical accepted");
    got[4] = 4e-5f * 0.5f; /* 0.5·tol·max|want| */
    CHECK(cmp_ok(compare(got, 3, want, 3, 2, 3, NULL, 0, 1e-5)), "within tolerance accepted");
    got[4] = 4e-5f * 1.5f;
    CHECK(!cmp_ok(compare(got, 3, want, 3, 2, 3, NULL, 0, 1e-5)), "perturbed output rejected");
    got[4] = NAN;
    CHECK(!cmp_ok(compare(got, 3, want, 3, 2, 3, NULL, 0, 1e-5)), "NaN rejected");
    got[4] = INFINITY;
    CHECK(!cmp_ok(compare(got, 3, want, 3, 2, 3, NULL, 0, 1e-5)), "inf rejected");
    float bound[6] = {0, 0, 0, 0, 1e-3f, 0};
    got[4] = 0.9e-3f;
    CHECK(cmp_ok(compare(got, 3, want, 3, 2, 3, bound, 3, 0)), "element bound accepted");
    got[4] = 1.1e-3f;
    CHECK(!cmp_ok(compare(got, 3, want, 3, 2, 3, bound, 3, 0)), "element bound rejected");
    /* a deliberately wrong op result (one weight changed by 1%) is caught on a real case */
    int64_t M = 13, K = 61, N = 7;
    float *x = frand(M * K, 1, 1), *w = frand(N * K, 2, 1), *y0 = falloc(M * N),
          *y1 = falloc(M * N);
    void *s0, *s1;
    hl_tensor W = make_tensor(w, N, K, HL_F32, &s0);
    w[5] *= 1.01f;
    hl_tensor W2 = make_tensor(w, N, K, HL_F32, &s1);
    hl_linear(&g_ref, M, x, K, &W, NULL, y0, N);
    hl_linear(be, M, x, K, &W2, NULL, y1, N);
    CHECK(!cmp_ok(compare(y1, N, y0, N, M, N, NULL, 0, 1e-5)), "%s: 1%% weight error rejected",
          bname(be));
    free(x), free(w), free(y0), free(y1), free(s0), free(s1);
}

/* ---- vector math (the cpu backend's own kernels, not a table op) ----------------------------- */

static void test_vec_math(void) {
    /* tanh: relative error against double tanh over a dense sweep of [-12, 12] and a log sweep
     * down to 1e-30 (the Padé branch near 0 must stay relative). */
    enum { N = 200003 };
    float *x = falloc(2 * N), *y = falloc(2 * N);
    for (int i = 0; i < N; i++) x[i] = -12.0f + 24.0f * (float)i / (N - 1);
    for (int i = 0; i < N; i++)
        x[N + i] = (i % 2 ? -1.0f : 1.0f) * powf(10.0f, -30.0f + 31.5f * (float)i / N);
    hl_cpu_tanh_f32(x, y, 2 * N);
    double worst = 0;
    for (int i = 0; i < 2 * N; i++) {
        double t = tanh((double)x[i]), e = fabs(y[i] - t) / fabs(t);
        if (t == 0) e = fabs(y[i]);
        if (!(e <= worst)) worst = e;
    }
    if (g_verbose) printf("  tanh: max relative error %.3g\n", worst);
    CHECK(worst <= 1e-6, "tanh relative error %.3g", worst);
    float sp[5] = {INFINITY, -INFINITY, 0.0f, -0.0f, 100.0f}, so[5];
    hl_cpu_tanh_f32(sp, so, 5);
    float sp16[16], so16[16];
    for (int i = 0; i < 16; i++) sp16[i] = sp[i % 5];
    sp16[15] = NAN;
    hl_cpu_tanh_f32(sp16, so16, 16); /* the vector path */
    CHECK(so16[0] == 1.0f && so16[1] == -1.0f && so16[2] == 0.0f && signbit(so16[3]) &&
              so16[4] == 1.0f && isnan(so16[15]) && so[0] == 1.0f,
          "tanh special values");

    /* exp: relative error over [-87, 88] (normal results). */
    for (int i = 0; i < N; i++) x[i] = -87.0f + 175.0f * (float)i / (N - 1);
    hl_cpu_exp_f32(x, y, N);
    worst = 0;
    for (int i = 0; i < N; i++) {
        double t = exp((double)x[i]), e = fabs(y[i] - t) / t;
        if (!(e <= worst)) worst = e;
    }
    if (g_verbose) printf("  exp: max relative error %.3g\n", worst);
    CHECK(worst <= 1e-6, "exp relative error %.3g", worst);
    for (int i = 0; i < 16; i++) sp16[i] = i < 8 ? -200.0f : 200.0f;
    hl_cpu_exp_f32(sp16, so16, 16);
    CHECK(so16[0] == 0.0f && isinf(so16[15]), "exp underflow to 0, overflow to inf");

    /* bf16 rounding: bit-identical to hl_f32_to_bf16 on random bit patterns (NaNs, infinities,
     * subnormals, ties included). */
    uint32_t *bits = malloc(N * sizeof *bits);
    hl_bf16 *h = malloc(N * sizeof *h);
    if (!bits || !h) exit(2);
    uint64_t s = 99;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        bits[i] = (uint32_t)(s >> 32);
        if (i % 7 == 0) bits[i] = (bits[i] & 0xffff8000u) | 0x8000u; /* exact ties */
        if (i % 11 == 0) bits[i] &= 0x807fffffu;                     /* subnormals */
        if (i % 13 == 0) bits[i] |= 0x7f800000u;                     /* inf / NaN */
    }
    memcpy(x, bits, N * sizeof *bits);
    hl_cpu_f32_to_bf16(x, h, N);
    int same = 1;
    for (int i = 0; i < N; i++)
        if (h[i] != hl_f32_to_bf16(x[i])) same = 0;
    CHECK(same, "f32 -> bf16 bit-identical to hl_f32_to_bf16");
    free(bits), free(h), free(x), free(y);
}

/* ---- linear ---------------------------------------------------------------------------------- */

/* The padding of y (columns [N, ldy)) must stay untouched. */
static void linear_case(const linear_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t M = a->M, K = a->K, N = a->N, ldx = a->ldx, ldy = a->ldy;
    float *x = frand(M * ldx, seed, 1.0f), *w = frand(N * K, seed + 1, 0.5f),
          *bf = frand(N, seed + 2, 1.0f);
    float *y_be = fconst(M * ldy, SENTINEL), *y_ref = fconst(M * ldy, 0);
    void *ws, *bs;
    hl_tensor W = make_tensor(w, N, K, a->wdt, &ws);
    hl_tensor B = make_tensor(bf, 1, N, a->bdt, &bs);
    B.ndim = 1;
    B.shape[0] = N;
    B.stride[0] = 1;
    const hl_tensor *b = a->has_bias ? &B : NULL;
    char what[160];
    snprintf(what, sizeof what, "%s: linear M=%lld K=%lld N=%lld W %s bias %s ldx=%lld ldy=%lld",
             bname(be), (long long)M, (long long)K, (long long)N, hl_dtype_name(a->wdt),
             a->has_bias ? hl_dtype_name(a->bdt) : "-", (long long)ldx, (long long)ldy);
    hl_status s1 = hl_linear(&g_ref, M, x, ldx, &W, b, y_ref, ldy);
    hl_status s2 = hl_linear(be, M, x, ldx, &W, b, y_be, ldy);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status %d %d (%s)", what, s1, s2, g_err.msg);

    cmp_result r;
    if (a->wdt == HL_BF16) {
        /* element-wise bound (see the top of the file): A = |x|·|W|ᵀ + |b| on an f32 path (the
         * backend's own f32 GEMM: within 1e-5 of exact, covered by the factor 1.001 below) */
        float *ax = falloc(M * ldx), *aw = falloc(N * K), *ab = falloc(N), *bound = falloc(M * ldy);
        for (int64_t i = 0; i < M * ldx; i++) ax[i] = fabsf(x[i]);
        for (int64_t i = 0; i < N * K; i++) aw[i] = fabsf(hl_bf16_to_f32(hl_f32_to_bf16(w[i])));
        for (int64_t i = 0; i < N; i++) ab[i] = a->has_bias ? fabsf(bf[i]) : 0.0f;
        void *as, *abs_;
        hl_tensor AW = make_tensor(aw, N, K, HL_F32, &as);
        hl_tensor AB = make_tensor(ab, 1, N, HL_F32, &abs_);
        CHECK(hl_linear(be, M, ax, ldx, &AW, &AB, bound, ldy) == HL_OK, "bound");
        const double rel = ldexp(1, -8) + (double)(2 * K + 4) * ldexp(1, -24);
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++)
                bound[m * ldy + n] = (float)(rel * 1.001 * bound[m * ldy + n] +
                                             ldexp(1, -23) * fabs(y_ref[m * ldy + n]) + 1e-30);
        r = compare(y_be, ldy, y_ref, ldy, M, N, bound, ldy, 0);
        free(ax), free(aw), free(ab), free(bound), free(as), free(abs_);
    } else {
        r = compare(y_be, ldy, y_ref, ldy, M, N, NULL, 0, 1e-5);
    }
    report(what, r);
    CHECK(cmp_ok(r), "%s: err/allowed %.3g", what, r.worst);
    CHECK(pad_intact(y_be, M, N, ldy), "%s: wrote outside [M, N]", what);
    free(x), free(w), free(bf), free(y_be), free(y_ref), free(ws), free(bs);
}

static void add_linear(int64_t M, int64_t K, int64_t N, hl_dtype wdt, hl_dtype bdt, int has_bias,
                       int64_t ldx, int64_t ldy, uint64_t seed) {
    add_case((op_case){OP_LINEAR, seed, .u.linear = {M, K, N, wdt, bdt, has_bias, ldx, ldy}});
}

static void linear_cases(void) {
    const int64_t Ms[] = {1, 7, 13, 97}, Ks[] = {1, 3, 61, 131}, Ns[] = {1, 5, 67};
    uint64_t seed = 10;
    int i = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 3; c++, i++) {
                int64_t M = Ms[a], K = Ks[b], N = Ns[c];
                /* vary the rest along the loop: views, bias dtypes, weight dtypes */
                int64_t ldx = i % 2 ? K + 3 : K, ldy = i % 3 ? N + 2 : N;
                hl_dtype bdt = i % 4 == 1 ? HL_BF16 : HL_F32;
                add_linear(M, K, N, HL_F32, bdt, i % 5 != 0, ldx, ldy, seed++);
                add_linear(M, K, N, HL_BF16, bdt, i % 5 != 1, ldx, ldy, seed++);
            }
    /* f16 weights (the cpu backend falls back to ref); a head slice as x (ldx > K) and y
     * written into a wider buffer */
    add_linear(7, 61, 5, HL_F16, HL_F16, 1, 64, 9, 200);
    /* M large enough for the blocked-weight path (M >= 1024, N >= K) and its plain neighbour */
    add_linear(1031, 61, 67, HL_BF16, HL_F32, 1, 61, 67, 201);
    add_linear(1031, 131, 67, HL_BF16, HL_BF16, 1, 140, 70, 202);
    add_linear(1031, 64, 64, HL_F32, HL_F32, 1, 64, 64, 203);
    /* moderately realistic: a 1536 -> 1536 projection of 512 tokens */
    add_linear(512, 1536, 1536, HL_BF16, HL_F32, 1, 1536, 1536, 204);
    add_linear(512, 1536, 1536, HL_F32, HL_F32, 0, 1536, 1536, 205);
}

/* Repeatability and the argument checks, on one backend. */
static void linear_checks(const hl_ctx *be) {
    /* repeated calls reuse a cached primitive (cpu) and give the same bits */
    float *x = frand(97 * 131, 7, 1), *w = frand(67 * 131, 8, 1), *y1 = falloc(97 * 67),
          *y2 = falloc(97 * 67);
    void *ws;
    hl_tensor W = make_tensor(w, 67, 131, HL_BF16, &ws);
    hl_linear(be, 97, x, 131, &W, NULL, y1, 67);
    hl_linear(be, 97, x, 131, &W, NULL, y2, 67);
    CHECK(memcmp(y1, y2, sizeof(float) * 97 * 67) == 0, "%s: linear: repeatable", bname(be));

    /* argument errors: a status and a message, no crash */
    hl_error_clear(&g_err);
    CHECK(hl_linear(be, 97, x, 100, &W, NULL, y1, 67) == HELIOS_ERR_INVALID_ARG && g_err.msg[0],
          "linear: ldx < K rejected");
    hl_tensor Wi = W;
    Wi.dtype = HL_I16;
    CHECK(hl_linear(be, 97, x, 131, &Wi, NULL, y1, 67) == HELIOS_ERR_DTYPE,
          "linear: I16 weight rejected");
    int64_t bshape[1] = {66};
    hl_tensor Bbad = hl_tensor_make(w, HL_F32, 1, bshape);
    CHECK(hl_linear(be, 97, x, 131, &W, &Bbad, y1, 67) == HELIOS_ERR_SHAPE,
          "linear: bias of the wrong length rejected");
    CHECK(hl_linear(be, 0, x, 131, &W, NULL, y1, 67) == HL_OK, "linear: M = 0");
    free(x), free(w), free(y1), free(y2), free(ws);
}

/* ---- attention ------------------------------------------------------------------------------- */

/* q: [Sq, ldq], k, v: [Sk, ldk/ldv] (heads side by side, possibly slices of a wider buffer),
 * out [Sq, ldo]. */
static void attention_case(const attention_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t Sq = a->Sq, Sk = a->Sk, ldo = a->ldo;
    const int H = a->H, hd = a->hd, fused = a->fused;
    int64_t w = (int64_t)H * hd;
    /* fused: q, k, v are column slices of one [S, 3w] buffer (as after a fused projection) */
    int64_t ld = fused ? 3 * w : w;
    float *qb = frand(Sq * ld, seed, a->amp_q), *kb = frand(Sk * ld, seed + 1, 1.0f),
          *vb = fused ? kb : frand(Sk * ld, seed + 2, 1.0f);
    const float *q = qb, *k = kb + (fused ? w : 0), *v = vb + (fused ? 2 * w : 0);
    float *o_be = fconst(Sq * ldo, SENTINEL), *o_ref = fconst(Sq * ldo, 0);
    float scale = 1.0f / sqrtf((float)hd);
    char what[160];
    snprintf(what, sizeof what, "%s: attention Sq=%lld Sk=%lld H=%d hd=%d %s%s ldo=%lld amp %g",
             bname(be), (long long)Sq, (long long)Sk, H, hd, hl_dtype_name(a->dt),
             fused ? " fused" : "", (long long)ldo, a->amp_q);
    hl_status s1 = hl_attention(&g_ref, Sq, Sk, H, hd, q, ld, k, ld, v, ld, scale, a->dt, o_ref,
                                ldo);
    hl_status s2 = hl_attention(be, Sq, Sk, H, hd, q, ld, k, ld, v, ld, scale, a->dt, o_be, ldo);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status %d %d (%s)", what, s1, s2, g_err.msg);
    cmp_result r;
    if (a->dt == HL_BF16) {
        float *bound = falloc(Sq * ldo);
        for (int h = 0; h < H; h++) {
            double vmax = 0, kmax[1024] = {0};
            for (int64_t j = 0; j < Sk; j++)
                for (int d = 0; d < hd; d++) {
                    vmax = fmax(vmax, fabs(v[j * ld + h * hd + d]));
                    kmax[d] = fmax(kmax[d], fabs(k[j * ld + h * hd + d]));
                }
            for (int64_t i = 0; i < Sq; i++) {
                double qk = 0;
                for (int d = 0; d < hd; d++) qk += fabs(q[i * ld + h * hd + d]) * kmax[d];
                double delta = scale * (ldexp(1, -7) + (hd + 2) * ldexp(1, -23)) * qk;
                double tol = (expm1(2 * delta) + 2 * ldexp(1, -8) + 2e-5 +
                              (2.0 * Sk + 8) * ldexp(1, -24)) *
                             vmax;
                for (int d = 0; d < hd; d++) bound[i * ldo + h * hd + d] = (float)tol;
            }
        }
        r = compare(o_be, ldo, o_ref, ldo, Sq, w, bound, ldo, 0);
        /* and the statistical check, much tighter than the worst case: the errors are sums of
         * independent roundings; observed <= 5.7e-3 of max|ref| over these cases */
        cmp_result rn = compare(o_be, ldo, o_ref, ldo, Sq, w, NULL, 0, 1e-2);
        report("  (the same against 1e-2 max|ref|)", rn);
        CHECK(cmp_ok(rn), "%s: err/(1e-2 max|ref|) %.3g", what, rn.worst);
        free(bound);
    } else {
        r = compare(o_be, ldo, o_ref, ldo, Sq, w, NULL, 0, 1e-5);
    }
    report(what, r);
    CHECK(cmp_ok(r), "%s: err/allowed %.3g", what, r.worst);
    CHECK(pad_intact(o_be, Sq, w, ldo), "%s: wrote outside [Sq, H·hd]", what);
    free(qb), free(kb), free(o_be), free(o_ref);
    if (!fused) free(vb);
}

static void add_attention(int64_t Sq, int64_t Sk, int H, int hd, hl_dtype dt, int fused,
                          int64_t ldo, float amp_q, uint64_t seed) {
    add_case((op_case){OP_ATTENTION, seed, .u.attention = {Sq, Sk, H, hd, dt, fused, ldo, amp_q}});
}

static void attention_cases(void) {
    const int64_t Sqs[] = {1, 7, 13, 97}, Sks[] = {1, 3, 61, 131};
    const int hds[] = {32, 24, 7};
    uint64_t seed = 300;
    int i = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++, i++) {
            int H = i % 2 ? 3 : 1, hd = hds[i % 3];
            int64_t w = (int64_t)H * hd, ldo = i % 3 == 1 ? w + 5 : w;
            add_attention(Sqs[a], Sks[b], H, hd, HL_F32, i % 2, ldo, 1.0f, seed++);
            add_attention(Sqs[a], Sks[b], H, hd, HL_BF16, i % 2, ldo, 1.0f, seed++);
        }
    /* the tiny models of the tests: hd 32, Sq 88 */
    add_attention(88, 88, 2, 32, HL_BF16, 1, 64, 1.0f, 400);
    add_attention(88, 88, 2, 32, HL_F32, 1, 64, 1.0f, 401);
    /* peaky softmax (scores ~ ±20) */
    add_attention(61, 131, 2, 64, HL_BF16, 0, 128, 8.0f, 402);
    add_attention(61, 131, 2, 64, HL_F32, 0, 128, 8.0f, 403);
    /* several query blocks with a padded last one; and long keys (small blocks) */
    add_attention(701, 61, 1, 32, HL_BF16, 0, 32, 1.0f, 404);
    add_attention(701, 61, 1, 32, HL_F32, 0, 40, 1.0f, 405);
    add_attention(37, 9001, 1, 32, HL_BF16, 1, 32, 2.0f, 406);
    /* moderately realistic: 512 tokens, 12 heads of 128; cross-attention to 131 */
    add_attention(512, 512, 12, 128, HL_BF16, 1, 1536, 1.0f, 407);
    add_attention(512, 512, 12, 128, HL_F32, 0, 1536, 1.0f, 408);
    add_attention(512, 131, 12, 128, HL_BF16, 0, 1536, 1.0f, 409);
}

static void attention_checks(const hl_ctx *be) {
    float z[64] = {0};
    CHECK(hl_attention(be, 1, 1, 1, 8, z, 8, z, 8, z, 8, 1.0f, HL_F16, z + 32, 8) ==
              HELIOS_ERR_DTYPE,
          "attention: F16 compute rejected");
    CHECK(hl_attention(be, 1, 0, 1, 8, z, 8, z, 8, z, 8, 1.0f, HL_F32, z + 32, 8) ==
              HELIOS_ERR_INVALID_ARG,
          "attention: no keys rejected");
    CHECK(hl_attention(be, 1, 1, 2, 8, z, 8, z, 16, z, 16, 1.0f, HL_F32, z + 32, 16) ==
              HELIOS_ERR_INVALID_ARG,
          "attention: ldq < H·hd rejected");
    CHECK(hl_attention(be, 0, 5, 2, 8, z, 16, z, 16, z, 16, 1.0f, HL_BF16, z, 16) == HL_OK,
          "attention: Sq = 0");
}

/* ---- attention with additive biases ---------------------------------------------------------- */

/* hl_attention_biased against hl_attention_biased. q, k, v are column slices of wider
 * buffers with distinct row strides when strided; bias_amp 0: bias NULL, else bias uniform in
 * ±bias_amp; huge: bias -1e38 at masked keys of every other row (-FLT_MAX + -1e38 overflows
 * float32; with every key masked, such a row is all -inf before the clamp).
 * bf16 tolerance: the bound of attention_case with vmax over the keys that get weight, plus the
 * float32 roundings of T = scale·s + bias + key_bias and T - max (four, <= 2^-24·(|T| + |max|)
 * each) in Δ; and the statistical 1e-2·max|ref|. */
static void biased_case(const biased_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t Sq = a->Sq, Sk = a->Sk, ldo = a->ldo;
    const int H = a->H, hd = a->hd;
    const mask_kind mk = a->mk;
    int64_t w = (int64_t)H * hd;
    int64_t ldq = a->strided ? w + 3 : w, ldk = a->strided ? w + 17 : w,
            ldv = a->strided ? 2 * w : w;
    float *q = frand(Sq * ldq, seed, 1.0f), *k = frand(Sk * ldk, seed + 1, 1.0f),
          *v = frand(Sk * ldv, seed + 2, 1.0f);
    float *bias = a->bias_amp > 0 ? frand((int64_t)H * Sq * Sk, seed + 3, a->bias_amp) : NULL;
    float *kbias = mk == MASK_NONE ? NULL : frand(Sk, seed + 4, 3.0f);
    char *masked = calloc((size_t)Sk + 1, 1);
    if (!masked) exit(2);
    for (int64_t j = 0; kbias && j < Sk; j++) {
        masked[j] = mk == MASK_ALL || (mk == MASK_SOME && j % 3 == 1) ||
                    (mk == MASK_GENERAL && j % 5 == 2);
        if (mk != MASK_GENERAL) kbias[j] = 0.0f;
        if (masked[j]) kbias[j] = -FLT_MAX;
        if (masked[j] && mk != MASK_ALL)
            for (int d = 0; d < w; d++) v[j * ldv + d] = 1e20f;
    }
    if (a->huge && bias)
        for (int h = 0; h < H; h++)
            for (int64_t i = 0; i < Sq; i += 2)
                for (int64_t j = 0; j < Sk; j++)
                    if (masked[j]) bias[((int64_t)h * Sq + i) * Sk + j] = -1e38f;
    float *o_be = fconst(Sq * ldo, SENTINEL), *o_ref = fconst(Sq * ldo, 0);
    float scale = 1.0f / sqrtf((float)hd);
    char what[160];
    snprintf(what, sizeof what,
             "%s: attention_biased Sq=%lld Sk=%lld H=%d hd=%d %s%s bias %g%s%s ldo=%lld", bname(be),
             (long long)Sq, (long long)Sk, H, hd, hl_dtype_name(a->dt),
             a->strided ? " strided" : "", a->bias_amp, mask_name[mk], a->huge ? " huge" : "",
             (long long)ldo);
    hl_status s1 = hl_attention_biased(&g_ref, Sq, Sk, H, hd, q, ldq, k, ldk, v, ldv, scale, bias,
                                       kbias, a->dt, o_ref, ldo);
    hl_status s2 = hl_attention_biased(be, Sq, Sk, H, hd, q, ldq, k, ldk, v, ldv, scale, bias,
                                       kbias, a->dt, o_be, ldo);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status %d %d (%s)", what, s1, s2, g_err.msg);
    cmp_result r;
    if (a->dt == HL_BF16) {
        float *bound = falloc(Sq * ldo);
        for (int h = 0; h < H; h++) {
            double vmax = 0, kmax[1024] = {0};
            for (int64_t j = 0; j < Sk; j++) {
                if (masked[j] && mk != MASK_ALL) continue;
                for (int d = 0; d < hd; d++) {
                    vmax = fmax(vmax, fabs(v[j * ldv + h * hd + d]));
                    kmax[d] = fmax(kmax[d], fabs(k[j * ldk + h * hd + d]));
                }
            }
            double kbmax = 0;
            for (int64_t j = 0; kbias && j < Sk; j++)
                if (!masked[j]) kbmax = fmax(kbmax, fabs(kbias[j]));
            for (int64_t i = 0; i < Sq; i++) {
                double qk = 0, bmax = 0;
                for (int d = 0; d < hd; d++) qk += fabs(q[i * ldq + h * hd + d]) * kmax[d];
                for (int64_t j = 0; bias && j < Sk; j++)
                    if (!masked[j]) bmax = fmax(bmax, fabs(bias[((int64_t)h * Sq + i) * Sk + j]));
                double tmax = scale * qk + bmax + kbmax;
                double delta = scale * (ldexp(1, -7) + (hd + 2) * ldexp(1, -23)) * qk +
                               8 * ldexp(1, -24) * tmax;
                double tol = (expm1(2 * delta) + 2 * ldexp(1, -8) + 2e-5 +
                              (2.0 * Sk + 8) * ldexp(1, -24)) *
                             vmax;
                for (int d = 0; d < hd; d++) bound[i * ldo + h * hd + d] = (float)tol;
            }
        }
        r = compare(o_be, ldo, o_ref, ldo, Sq, w, bound, ldo, 0);
        cmp_result rn = compare(o_be, ldo, o_ref, ldo, Sq, w, NULL, 0, 1e-2);
        report("  (the same against 1e-2 max|ref|)", rn);
        CHECK(cmp_ok(rn), "%s: err/(1e-2 max|ref|) %.3g", what, rn.worst);
        free(bound);
    } else {
        r = compare(o_be, ldo, o_ref, ldo, Sq, w, NULL, 0, 1e-5);
    }
    report(what, r);
    CHECK(cmp_ok(r), "%s: err/allowed %.3g", what, r.worst);
    CHECK(pad_intact(o_be, Sq, w, ldo), "%s: wrote outside [Sq, H·hd]", what);
    free(q), free(k), free(v), free(bias), free(kbias), free(masked), free(o_be), free(o_ref);
}

static void add_biased(int64_t Sq, int64_t Sk, int H, int hd, hl_dtype dt, int strided, int64_t ldo,
                       float bias_amp, mask_kind mk, int huge, uint64_t seed) {
    add_case((op_case){OP_ATTENTION_BIASED, seed,
                       .u.biased = {Sq, Sk, H, hd, dt, strided, ldo, bias_amp, mk, huge}});
}

static void biased_cases(void) {
    const int64_t Sqs[] = {1, 7, 13, 97}, Sks[] = {1, 3, 61, 131};
    const int hds[] = {32, 24, 7, 64};
    uint64_t seed = 1300;
    int i = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++, i++) {
            int H = i % 2 ? 3 : 1, hd = hds[i % 4];
            int64_t w = (int64_t)H * hd, ldo = i % 3 == 1 ? w + 5 : w;
            float amp = i % 4 == 3 ? 0.0f : 4.0f;
            mask_kind mk = (mask_kind)(i % 4 == 3 ? MASK_SOME : i % 3);
            for (int d = 0; d < 2; d++)
                add_biased(Sqs[a], Sks[b], H, hd, d ? HL_BF16 : HL_F32, (i + d) % 2, ldo, amp, mk,
                           0, seed++);
        }
    for (int d = 0; d < 2; d++) {
        hl_dtype dt = d ? HL_BF16 : HL_F32;
        /* every combination of bias / key bias on one odd shape, strided and not */
        for (int m = 0; m < 4; m++)
            for (int b = 0; b < 2; b++)
                add_biased(29, 67, 2, 24, dt, (m + b) % 2, 53, b ? 3.0f : 0.0f, (mask_kind)m, 0,
                           seed++);
        /* -FLT_MAX + -1e38 overflows to -inf in float32: still exact zeros, no NaN */
        add_biased(13, 61, 3, 32, dt, 1, 96, 4.0f, MASK_SOME, 1, seed++);
        add_biased(13, 61, 3, 32, dt, 0, 96, 4.0f, MASK_GENERAL, 1, seed++);
        add_biased(13, 61, 3, 32, dt, 1, 96, 4.0f, MASK_ALL, 1, seed++); /* rows all -inf */
        /* peaky: biases of ±30 */
        add_biased(61, 131, 2, 64, dt, 0, 128, 30.0f, MASK_SOME, 0, seed++);
        /* several query blocks with a padded last one; long keys (small blocks) */
        add_biased(701, 61, 1, 32, dt, 1, 32, 4.0f, MASK_SOME, 0, seed++);
        add_biased(37, 9001, 1, 32, dt, 0, 40, 2.0f, MASK_GENERAL, 0, seed++);
        /* the T5 shape on fewer heads: 512 tokens, heads of 64, a padded tail */
        add_biased(512, 512, 4, 64, dt, 0, 256, 2.0f, MASK_SOME, 0, seed++);
    }
}

static void biased_checks(const hl_ctx *be) {
    /* without biases it is hl_attention, bit for bit */
    int64_t Sq = 97, Sk = 131, H = 3, hd = 24, w = H * hd;
    float *q = frand(Sq * w, 1, 1), *k = frand(Sk * w, 2, 1), *v = frand(Sk * w, 3, 1);
    float *o1 = falloc(Sq * w), *o2 = falloc(Sq * w);
    for (int d = 0; d < 2; d++) {
        hl_dtype dt = d ? HL_BF16 : HL_F32;
        CHECK(
            hl_attention(be, Sq, Sk, (int)H, (int)hd, q, w, k, w, v, w, 0.3f, dt, o1, w) == HL_OK &&
                hl_attention_biased(be, Sq, Sk, (int)H, (int)hd, q, w, k, w, v, w, 0.3f, NULL, NULL,
                                    dt, o2, w) == HL_OK &&
                memcmp(o1, o2, (size_t)(Sq * w) * sizeof *o1) == 0,
            "%s: attention_biased without biases == attention (%s)", bname(be), hl_dtype_name(dt));
    }
    free(q), free(k), free(v), free(o1), free(o2);

    /* argument errors */
    float z[64] = {0};
    CHECK(hl_attention_biased(be, 1, 1, 1, 8, z, 8, z, 8, z, 8, 1.0f, z, z, HL_F16, z + 32, 8) ==
              HELIOS_ERR_DTYPE,
          "attention_biased: F16 compute rejected");
    CHECK(hl_attention_biased(be, 1, 0, 1, 8, z, 8, z, 8, z, 8, 1.0f, z, z, HL_F32, z + 32, 8) ==
              HELIOS_ERR_INVALID_ARG,
          "attention_biased: no keys rejected");
    CHECK(hl_attention_biased(be, 1, 1, 2, 8, z, 16, z, 8, z, 16, 1.0f, NULL, z, HL_F32, z + 32,
                              16) == HELIOS_ERR_INVALID_ARG,
          "attention_biased: ldk < H·hd rejected");
    CHECK(hl_attention_biased(be, 0, 5, 2, 8, z, 16, z, 16, z, 16, 1.0f, z, z, HL_BF16, z, 16) ==
              HL_OK,
          "attention_biased: Sq = 0");
}

/* ---- normalisations -------------------------------------------------------------------------- */

static hl_status run_norm(const hl_ctx *c, norm_kind kind, int64_t M, int64_t D, const float *x,
                          int64_t ldx, const float *w, const float *b, float *y, int64_t ldy) {
    const float eps = 1e-6f;
    switch (kind) {
    case K_LN: return hl_layernorm(c, M, D, x, ldx, NULL, NULL, eps, y, ldy, NULL);
    case K_LN_AFFINE: return hl_layernorm(c, M, D, x, ldx, w, b, eps, y, ldy, NULL);
    case K_MOD: return hl_layernorm_modulate(c, M, D, x, ldx, w, b, eps, y, ldy);
    case K_RMS: return hl_rmsnorm(c, M, D, x, ldx, NULL, eps, y, ldy, NULL);
    case K_RMS_W: return hl_rmsnorm(c, M, D, x, ldx, w, eps, y, ldy, NULL);
    }
    return HL_OK;
}

static void norm_case(const norm_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t M = a->M, D = a->D, ld = a->ld;
    float *x = frand(M * ld, seed, 1.0f), *w = frand(D, seed + 1, 1.0f),
          *b = frand(D, seed + 2, 1.0f);
    for (int64_t i = 0; i < M * ld; i++) x[i] += a->offset;
    float *y_ref = fconst(M * ld, 0), *y_be = a->in_place ? x : fconst(M * ld, SENTINEL);
    if (a->in_place) pad_fill(x, M, D, ld);
    char what[160];
    snprintf(what, sizeof what, "%s: %s M=%lld D=%lld ld=%lld%s offset %g", bname(be),
             norm_name[a->kind], (long long)M, (long long)D, (long long)ld,
             a->in_place ? " in place" : "", a->offset);
    hl_status s1 = run_norm(&g_ref, a->kind, M, D, x, ld, w, b, y_ref, ld);
    hl_status s2 = run_norm(be, a->kind, M, D, x, ld, w, b, y_be, ld);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status", what);
    cmp_result r = compare(y_be, ld, y_ref, ld, M, D, NULL, 0, 1e-5);
    report(what, r);
    CHECK(cmp_ok(r), "%s: err/allowed %.3g", what, r.worst);
    CHECK(pad_intact(y_be, M, D, ld), "%s: wrote outside [M, D]", what);
    free(x), free(w), free(b), free(y_ref);
    if (!a->in_place) free(y_be);
}

static void add_norm(norm_kind kind, int64_t M, int64_t D, int64_t ld, int in_place, float offset,
                     uint64_t seed) {
    add_case((op_case){OP_NORM, seed, .u.norm = {kind, M, D, ld, in_place, offset}});
}

static void norm_cases(void) {
    const int64_t Ms[] = {1, 7, 97}, Ds[] = {1, 3, 61, 131, 1536};
    uint64_t seed = 500;
    int i = 0;
    for (int k = 0; k < 5; k++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 5; b++, i++) {
                int64_t D = Ds[b], ld = i % 2 ? D + 7 : D;
                add_norm((norm_kind)k, Ms[a], D, ld, i % 3 == 0, 0.0f, seed++);
            }
    /* a large mean next to a small spread; realistic rows */
    add_norm(K_LN, 13, 1536, 1536, 0, 300.0f, seed++);
    add_norm(K_MOD, 13, 1536, 1600, 1, -50.0f, seed++);
    add_norm(K_MOD, 2304, 1536, 1536, 1, 0.0f, seed++);
    add_norm(K_RMS_W, 2304, 128, 1536, 0, 0.0f, seed++); /* q of one head: a slice */
}

static void norm_checks(const hl_ctx *be) {
    float z[4] = {0};
    CHECK(hl_layernorm(be, 2, 4, z, 2, NULL, NULL, 1e-6f, z, 4, NULL) == HELIOS_ERR_INVALID_ARG,
          "layernorm: ldx < D rejected");
    CHECK(hl_layernorm_modulate(be, 1, 4, z, 4, NULL, NULL, 1e-6f, z, 4) == HELIOS_ERR_INVALID_ARG,
          "layernorm_modulate: NULL scale rejected");
}

/* ---- normalisation backwards: the gradient mode ---------------------------------------------- */

/* A backward case's inputs, from its seed: x [M, ldx] (+ offset), w and b [D] (NULL when the case
 * has none), dy [M, lddy] with SENTINEL in the columns beyond D. */
typedef struct {
    float *x, *w, *b, *dy;
} grad_inputs;

static grad_inputs grad_inputs_make(const grad_args *a, uint64_t seed) {
    grad_inputs in;
    in.x = frand(a->M * a->ldx, seed, 1.0f);
    for (int64_t i = 0; i < a->M * a->ldx; i++) in.x[i] += a->offset;
    in.w = a->has_w ? frand(a->D, seed + 1, 1.0f) : NULL;
    in.b = a->has_b ? frand(a->D, seed + 2, 1.0f) : NULL;
    in.dy = frand(a->M * a->lddy, seed + 3, 1.0f);
    pad_fill(in.dy, a->M, a->D, a->lddy);
    return in;
}

static void grad_inputs_free(grad_inputs *in) {
    free(in->x), free(in->w), free(in->b), free(in->dy);
}

/* The forward of the case into y [M, D] (dense), with save. */
static hl_status grad_forward(const hl_ctx *c, const grad_args *a, const grad_inputs *in, float *y,
                              hl_norm_saved *save) {
    if (a->rms) return hl_rmsnorm(c, a->M, a->D, in->x, a->ldx, in->w, a->eps, y, a->D, save);
    return hl_layernorm(c, a->M, a->D, in->x, a->ldx, in->w, in->b, a->eps, y, a->D, save);
}

/* The backward of the case from saved and dy (rows lddy apart) into the gradients it wants (the
 * others NULL): dx rows lddx apart (dy's buffer itself when the case aliases them), dw, db. */
static hl_status grad_backward(const hl_ctx *c, const grad_args *a, const grad_inputs *in,
                               const hl_norm_saved *saved, const float *dy, float *dx, float *dw,
                               float *db) {
    float *gx = a->want & G_DX ? dx : NULL, *gw = a->want & G_DW ? dw : NULL,
          *gb = a->want & G_DB ? db : NULL;
    int64_t lddx = a->alias ? a->lddy : a->lddx;
    if (a->rms)
        return hl_rmsnorm_backward(c, a->M, a->D, in->x, a->ldx, in->w, saved, dy, a->lddy, gx,
                                   lddx, gw);
    return hl_layernorm_backward(c, a->M, a->D, in->x, a->ldx, in->w, saved, dy, a->lddy, gx, lddx,
                                 gw, gb);
}

/* The gradient buffers of one backward call: dyb, a copy of dy (dx's storage too when the case
 * aliases them); dx prefilled with values that an accumulating dx would add to; dw, db
 * prefilled with dw0, db0 (they must accumulate onto them). */
typedef struct {
    float *dyb, *dx, *dw, *db;
    int64_t lddx;
} grad_outputs;

static grad_outputs grad_outputs_make(const grad_args *a, const grad_inputs *in, uint64_t seed,
                                      const float *dw0, const float *db0) {
    grad_outputs o;
    o.dyb = fcopy(in->dy, a->M * a->lddy);
    if (a->alias) {
        o.dx = o.dyb, o.lddx = a->lddy;
    } else {
        o.lddx = a->lddx;
        o.dx = frand(a->M * a->lddx, seed + 6, 100.0f);
        pad_fill(o.dx, a->M, a->D, a->lddx);
    }
    o.dw = fcopy(dw0, a->D);
    o.db = fcopy(db0, a->D);
    return o;
}

static void grad_outputs_free(const grad_args *a, grad_outputs *o) {
    if (!a->alias) free(o->dx);
    free(o->dyb), free(o->dw), free(o->db);
}

static void grad_name(char *buf, size_t n, const char *be_name, const grad_args *a) {
    char dx[32] = "";
    if (a->want & G_DX && a->alias) snprintf(dx, sizeof dx, "dx=dy ");
    else if (a->want & G_DX) snprintf(dx, sizeof dx, "dx(ld %lld) ", (long long)a->lddx);
    snprintf(buf, n, "%s: %s_backward%s%s M=%lld D=%lld ldx=%lld lddy=%lld %s%s%seps %g off %g",
             be_name, a->rms ? "rmsnorm" : "layernorm", a->has_w ? " w" : "", a->has_b ? " b" : "",
             (long long)a->M, (long long)a->D, (long long)a->ldx, (long long)a->lddy, dx,
             a->want & G_DW ? "dw " : "", a->want & G_DB ? "db " : "", (double)a->eps,
             (double)a->offset);
}

/* Backend against ref on one backward case. The forward with save must match ref's (output and
 * statistics); the backward runs on both from ref's saved statistics (the struct is the interface
 * between a forward and a backward), and is judged with the element bounds at the top. */
static void norm_grad_case(const grad_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t M = a->M, D = a->D;
    const double u = ldexp(1, -24);
    grad_inputs in = grad_inputs_make(a, seed);
    char what[200], sub[260];
    grad_name(what, sizeof what, bname(be), a);

    /* forward with save */
    float *y_ref = falloc(M * D), *y_be = falloc(M * D);
    float *mean_ref = fconst(M, NAN), *rstd_ref = fconst(M, NAN);
    float *mean_be = fconst(M, NAN), *rstd_be = fconst(M, NAN);
    hl_norm_saved s_ref = {a->rms ? NULL : mean_ref, rstd_ref};
    hl_norm_saved s_be = {a->rms ? NULL : mean_be, rstd_be};
    hl_status s1 = grad_forward(&g_ref, a, &in, y_ref, &s_ref);
    hl_status s2 = grad_forward(be, a, &in, y_be, &s_be);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: forward status %d %d (%s)", what, s1, s2, g_err.msg);
    cmp_result r = compare(y_be, D, y_ref, D, M, D, NULL, 0, 1e-5);
    snprintf(sub, sizeof sub, "%s (forward y)", what);
    report(sub, r);
    CHECK(cmp_ok(r), "%s: err/allowed %.3g", sub, r.worst);
    r = compare(rstd_be, M, rstd_ref, M, 1, M, NULL, 0, 1e-5);
    snprintf(sub, sizeof sub, "%s (saved rstd)", what);
    report(sub, r);
    CHECK(cmp_ok(r), "%s: err/allowed %.3g", sub, r.worst);
    if (!a->rms) {
        /* the mean to 1e-5 of the rows' scale max|x| (it is near 0 for centred rows) */
        float *bound = fconst(M, (float)(1e-5 * (fabs(a->offset) + 1.0)));
        r = compare(mean_be, M, mean_ref, M, 1, M, bound, M, 0);
        snprintf(sub, sizeof sub, "%s (saved mean)", what);
        report(sub, r);
        CHECK(cmp_ok(r), "%s: err/allowed %.3g", sub, r.worst);
        free(bound);
    }

    /* backward, both from ref's statistics, onto prefilled outputs */
    float *dw0 = frand(D, seed + 4, 1.0f), *db0 = frand(D, seed + 5, 1.0f);
    grad_outputs o_ref = grad_outputs_make(a, &in, seed, dw0, db0);
    grad_outputs o_be = grad_outputs_make(a, &in, seed, dw0, db0);
    s1 = grad_backward(&g_ref, a, &in, &s_ref, o_ref.dyb, o_ref.dx, o_ref.dw, o_ref.db);
    s2 = grad_backward(be, a, &in, &s_ref, o_be.dyb, o_be.dx, o_be.dw, o_be.db);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status %d %d (%s)", what, s1, s2, g_err.msg);

    /* the element bounds (top of the file), from x̂ and g in double */
    float *bx = falloc(M * o_be.lddx), *bw = falloc(D), *bb = falloc(D);
    double *sw = calloc((size_t)D, sizeof *sw), *sb = calloc((size_t)D, sizeof *sb);
    if (!sw || !sb) exit(2);
    for (int64_t m = 0; m < M; m++) {
        const float *xr = in.x + m * a->ldx, *dyr = in.dy + m * a->lddy;
        const double mu = a->rms ? 0.0 : mean_ref[m], rs = rstd_ref[m];
        double ag = 0, agx = 0;
        for (int64_t i = 0; i < D; i++) {
            double xh = (xr[i] - mu) * rs, g = (double)dyr[i] * (in.w ? in.w[i] : 1.0);
            ag += fabs(g), agx += fabs(g * xh);
            sw[i] += fabs(dyr[i] * xh), sb[i] += fabs(dyr[i]);
        }
        ag /= (double)D, agx /= (double)D;
        for (int64_t i = 0; i < D; i++) {
            double xh = (xr[i] - mu) * rs, g = (double)dyr[i] * (in.w ? in.w[i] : 1.0);
            double S = fabs(g) + ag + fabs(xh) * agx;
            bx[m * o_be.lddx + i] = (float)((double)(D + 8) * u * rs * S + 1e-37);
        }
    }
    for (int64_t i = 0; i < D; i++) {
        bw[i] = (float)((2.0 * M + 6) * u * (sw[i] + fabs(dw0[i])) + 1e-37);
        bb[i] = (float)((2.0 * M + 6) * u * (sb[i] + fabs(db0[i])) + 1e-37);
    }
    if (a->want & G_DX) {
        r = compare(o_be.dx, o_be.lddx, o_ref.dx, o_ref.lddx, M, D, bx, o_be.lddx, 0);
        cmp_result rn = compare(o_be.dx, o_be.lddx, o_ref.dx, o_ref.lddx, M, D, NULL, 0, 1e-5);
        snprintf(sub, sizeof sub, "%s (dx; against 1e-5 max|ref|: %.3g)", what, rn.worst);
        report(sub, r);
        CHECK(cmp_ok(r), "%s: err/allowed %.3g", sub, r.worst);
        /* the statistical rule, except at D = 1 where rmsnorm's dx = rstd·g·(1 - x̂²) =
         * rstd³·eps·g is all cancellation (measured <= 0.05 of it elsewhere) */
        if (D > 1) CHECK(cmp_ok(rn), "%s: err/(1e-5 max|ref|) %.3g", sub, rn.worst);
        CHECK(pad_intact(o_be.dx, M, D, o_be.lddx), "%s: wrote outside [M, D] of dx", what);
    }
    if (!a->alias)
        CHECK(memcmp(o_be.dyb, in.dy, (size_t)(M * a->lddy) * sizeof *in.dy) == 0,
              "%s: dy modified", what);
    if (a->want & G_DW) {
        r = compare(o_be.dw, D, o_ref.dw, D, 1, D, bw, D, 0);
        cmp_result rn = compare(o_be.dw, D, o_ref.dw, D, 1, D, NULL, 0, 1e-5);
        snprintf(sub, sizeof sub, "%s (dw; against 1e-5 max|ref|: %.3g)", what, rn.worst);
        report(sub, r);
        CHECK(cmp_ok(r), "%s: err/allowed %.3g", sub, r.worst);
        CHECK(cmp_ok(rn), "%s: err/(1e-5 max|ref|) %.3g", sub, rn.worst);
    }
    if (a->want & G_DB) {
        r = compare(o_be.db, D, o_ref.db, D, 1, D, bb, D, 0);
        cmp_result rn = compare(o_be.db, D, o_ref.db, D, 1, D, NULL, 0, 1e-5);
        snprintf(sub, sizeof sub, "%s (db; against 1e-5 max|ref|: %.3g)", what, rn.worst);
        report(sub, r);
        CHECK(cmp_ok(r), "%s: err/allowed %.3g", sub, r.worst);
        CHECK(cmp_ok(rn), "%s: err/(1e-5 max|ref|) %.3g", sub, rn.worst);
    }

    grad_outputs_free(a, &o_ref), grad_outputs_free(a, &o_be);
    free(bx), free(bw), free(bb), free(sw), free(sb), free(dw0), free(db0);
    free(y_ref), free(y_be), free(mean_ref), free(rstd_ref), free(mean_be), free(rstd_be);
    grad_inputs_free(&in);
}

/* ---- ref's backward against finite differences ----------------------------------------------- *
 * L = Σ dy ⊙ y over the M rows, y the forward in double (norm_loss_row) on the same float inputs
 * and eps; each gradient element by central differences (L(p + h) - L(p - h)) / 2h.
 *   x: h = 1e-5·σ_m, σ_m = 1/rstd_m the row's scale (L varies on that scale in x). Truncation
 *      ~ h²/6·|∂³L| ~ 1e-10·|∂L| (each derivative brings a 1/σ); rounding ~ 2^-53·Σ_i|dy_i y_i|/h,
 *      about 1e-9 of rstd·mean|g| for D <= 131.
 *   w, b: L is linear in them, so only rounding: h = 1e-3, error ~ 2^-53·Σ|dy ⊙ y|/h ~ 1e-10.
 * That is far below what is judged. ref computes in double but reads the saved statistics as
 * float (each rounded: |Δrstd| <= u·rstd, |Δmean| <= u·|mean|, u = 2^-24), so its x̂ is off by
 * <= u·|x̂| + u·rstd·|mean| (the second term does not shrink with x̂), and it rounds its results
 * to float. Carrying these through the formulas of ops.h (exact x̂ and g, S_i as at the top,
 * T_i = mean|g ⊙ x̂| + |x̂_i|·mean|g|, the terms the mean's rounding reaches):
 *   dx: rstd·u·(4·S_i + rstd·|mean|·T_i)  (rstd in front, x̂_i and mean(g ⊙ x̂) each carry
 *       u·|x̂| and the mean shift, one output rounding)
 *   dw: u·Σ_rows |dy|·(2·|x̂| + rstd·|mean|)  (each term of the double sum, one output rounding)
 *   db: u·Σ_rows |dy|  (one rounding of a double sum)
 * The checks allow twice these (for the finite differences and second-order terms). Measured
 * (-v): <= 0.34 of the allowance. Then the conventions of ops.h on ref itself: a second call on
 * the same buffers overwrites dx (bit-identical result) and adds the same increment to dw, db
 * again (within 2·2^-23 of twice the first result: the increment and the sum round once each). */

/* Row statistics in double: the mean (0 for rms) and rstd of the forward. */
static void row_stats_d(int rms, const double *x, int64_t D, double eps, double *mu, double *rs) {
    double s = 0, ss = 0;
    for (int64_t i = 0; !rms && i < D; i++) s += x[i];
    *mu = rms ? 0.0 : s / (double)D;
    for (int64_t i = 0; i < D; i++) ss += (x[i] - *mu) * (x[i] - *mu);
    *rs = 1.0 / sqrt(ss / (double)D + eps);
}

/* Σ_i dy_i·y_i of one row, y the forward in double (rmsnorm is layernorm without the mean). */
static double norm_loss_row(int rms, const double *x, int64_t D, const double *w, const double *b,
                            double eps, const float *dy) {
    double mu, rs, L = 0;
    row_stats_d(rms, x, D, eps, &mu, &rs);
    for (int64_t i = 0; i < D; i++)
        L += dy[i] * ((x[i] - mu) * rs * (w ? w[i] : 1.0) + (b ? b[i] : 0.0));
    return L;
}

static void fd_check(const grad_args *a, uint64_t seed) {
    const int64_t M = a->M, D = a->D;
    const double u = ldexp(1, -24), eps = a->eps;
    grad_inputs in = grad_inputs_make(a, seed);
    char what[200], sub[260];
    grad_name(what, sizeof what, "ref vs finite differences", a);

    float *y = falloc(M * D), *mean = falloc(M), *rstd = falloc(M), *zero = fconst(D, 0.0f);
    hl_norm_saved save = {a->rms ? NULL : mean, rstd};
    grad_outputs o = grad_outputs_make(a, &in, seed, zero, zero);
    hl_status s1 = grad_forward(&g_ref, a, &in, y, &save);
    hl_status s2 = grad_backward(&g_ref, a, &in, &save, o.dyb, o.dx, o.dw, o.db);
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status %d %d (%s)", what, s1, s2, g_err.msg);

    /* the finite differences and the bounds, in double */
    double *gx = calloc((size_t)(M * D), sizeof *gx), *bx = calloc((size_t)(M * D), sizeof *bx);
    double *gw = calloc((size_t)D, sizeof *gw), *bw = calloc((size_t)D, sizeof *bw);
    double *gb = calloc((size_t)D, sizeof *gb), *bb = calloc((size_t)D, sizeof *bb);
    double *xd = calloc((size_t)D, sizeof *xd), *wd = calloc((size_t)D, sizeof *wd);
    double *bd = calloc((size_t)D, sizeof *bd);
    if (!gx || !bx || !gw || !bw || !gb || !bb || !xd || !wd || !bd) exit(2);
    for (int64_t i = 0; i < D; i++) wd[i] = in.w ? in.w[i] : 1.0, bd[i] = in.b ? in.b[i] : 0.0;
    for (int64_t m = 0; m < M; m++) {
        const float *dyr = in.dy + m * a->lddy;
        for (int64_t i = 0; i < D; i++) xd[i] = in.x[m * a->ldx + i];
        double mu, rs;
        row_stats_d(a->rms, xd, D, eps, &mu, &rs);
        const double hx = 1e-5 / rs, hp = 1e-3, shift = rs * fabs(mu);
        for (int64_t i = 0; i < D; i++) {
            const double xi = xd[i], wi = wd[i], bi = bd[i];
            xd[i] = xi + hx;
            double Lp = norm_loss_row(a->rms, xd, D, wd, bd, eps, dyr);
            xd[i] = xi - hx;
            double Lm = norm_loss_row(a->rms, xd, D, wd, bd, eps, dyr);
            xd[i] = xi;
            gx[m * D + i] = (Lp - Lm) / (2 * hx);
            wd[i] = wi + hp;
            Lp = norm_loss_row(a->rms, xd, D, wd, bd, eps, dyr);
            wd[i] = wi - hp;
            Lm = norm_loss_row(a->rms, xd, D, wd, bd, eps, dyr);
            wd[i] = wi;
            gw[i] += (Lp - Lm) / (2 * hp);
            bd[i] = bi + hp;
            Lp = norm_loss_row(a->rms, xd, D, wd, bd, eps, dyr);
            bd[i] = bi - hp;
            Lm = norm_loss_row(a->rms, xd, D, wd, bd, eps, dyr);
            bd[i] = bi;
            gb[i] += (Lp - Lm) / (2 * hp);
        }
        double ag = 0, agx = 0;
        for (int64_t i = 0; i < D; i++) {
            double xh = (xd[i] - mu) * rs, g = dyr[i] * wd[i];
            ag += fabs(g), agx += fabs(g * xh);
            bw[i] += 2 * u * fabs(dyr[i]) * (2 * fabs(xh) + shift);
            bb[i] += 2 * u * fabs(dyr[i]);
        }
        ag /= (double)D, agx /= (double)D;
        for (int64_t i = 0; i < D; i++) {
            double xh = (xd[i] - mu) * rs, g = dyr[i] * wd[i];
            double S = fabs(g) + ag + fabs(xh) * agx, T = agx + fabs(xh) * ag;
            bx[m * D + i] = 2 * u * rs * (4 * S + shift * T);
        }
    }
    const struct {
        int bit;
        const char *name;
        const float *got;
        int64_t rows, ld;
        const double *want, *bound;
    } grads[3] = {{G_DX, "dx", o.dx, M, o.lddx, gx, bx},
                  {G_DW, "dw", o.dw, 1, D, gw, bw},
                  {G_DB, "db", o.db, 1, D, gb, bb}};
    for (int k = 0; k < 3; k++) {
        if (!(a->want & grads[k].bit)) continue;
        cmp_result r = compare_d(grads[k].got, grads[k].ld, grads[k].want, grads[k].bound,
                                 grads[k].rows, D);
        snprintf(sub, sizeof sub, "%s (%s)", what, grads[k].name);
        report(sub, r);
        CHECK(cmp_ok(r), "%s: err/allowed %.3g", sub, r.worst);
    }
    if (a->want & G_DX)
        CHECK(pad_intact(o.dx, M, D, o.lddx), "%s: wrote outside [M, D] of dx", what);

    /* overwrite dx, accumulate dw and db: call again on the same buffers (dy restored first
     * where dx is dy's buffer) */
    float *dx1 = fcopy(o.dx, M * o.lddx), *dw1 = fcopy(o.dw, D), *db1 = fcopy(o.db, D);
    if (a->alias) memcpy(o.dyb, in.dy, (size_t)(M * a->lddy) * sizeof *in.dy);
    CHECK(grad_backward(&g_ref, a, &in, &save, o.dyb, o.dx, o.dw, o.db) == HL_OK, "%s: second call",
          what);
    if (a->want & G_DX)
        CHECK(memcmp(dx1, o.dx, (size_t)(M * o.lddx) * sizeof *dx1) == 0, "%s: dx not overwritten",
              what);
    int acc_ok = 1;
    for (int64_t i = 0; i < D; i++) {
        if ((a->want & G_DW) && fabs(o.dw[i] - 2.0 * dw1[i]) > ldexp(1, -22) * fabs(dw1[i]))
            acc_ok = 0;
        if ((a->want & G_DB) && fabs(o.db[i] - 2.0 * db1[i]) > ldexp(1, -22) * fabs(db1[i]))
            acc_ok = 0;
    }
    CHECK(acc_ok, "%s: dw / db not accumulated", what);

    free(dx1), free(dw1), free(db1), free(gx), free(bx), free(gw), free(bw), free(gb), free(bb);
    free(xd), free(wd), free(bd), free(y), free(mean), free(rstd), free(zero);
    grad_outputs_free(a, &o);
    grad_inputs_free(&in);
}

/* FD runs on the small shapes only: its cost is O(M·D²). */
static int fd_small(const grad_args *a) { return a->M <= 13 && a->D <= 131; }

static void add_grad(int rms, int has_w, int has_b, int64_t M, int64_t D, int64_t ldx, int64_t lddy,
                     int64_t lddx, int want, int alias, float eps, float offset, uint64_t seed) {
    int avail = G_DX | (has_w ? G_DW : 0) | (has_b ? G_DB : 0);
    want &= avail;
    if (!want) want = G_DX;
    if (!(want & G_DX)) alias = 0;
    add_case((op_case){OP_NORM_GRAD, seed,
                       .u.grad = {rms, has_w, has_b, M, D, ldx, lddy, alias ? lddy : lddx, want,
                                  alias, eps, offset}});
}

static void grad_cases(void) {
    /* layernorm without affine, w only, b only (w = NULL, db still wanted), w and b; rmsnorm
     * without and with w */
    static const struct {
        int rms, w, b;
    } var[] = {{0, 0, 0}, {0, 1, 0}, {0, 0, 1}, {0, 1, 1}, {1, 0, 0}, {1, 1, 0}};
    const int64_t Ms[] = {1, 7, 13}, Ds[] = {1, 3, 61, 131};
    /* what is asked for, along the loop: everything, dx alone, the parameters alone */
    const int wants[] = {G_DX | G_DW | G_DB, G_DX, G_DX | G_DW | G_DB, G_DW | G_DB, G_DX | G_DB};
    uint64_t seed = 2000;
    int i = 0;
    for (int v = 0; v < 6; v++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 4; b++, i++) {
                int64_t D = Ds[b];
                /* views: x, dy and dx with their own strides; dx == dy every fourth case; a
                 * large eps (it enters rstd, hence the gradient, visibly) every fourth; a large
                 * mean every sixth */
                add_grad(var[v].rms, var[v].w, var[v].b, Ms[a], D, i % 2 ? D + 3 : D,
                         i % 3 ? D + 5 : D, i % 3 == 2 ? D + 2 : D, wants[i % 5], i % 4 == 1,
                         i % 4 == 3 ? 0.1f : 1e-6f, i % 6 == 5 ? 30.0f : 0.0f, seed++);
            }
    /* realistic rows, past the threads threshold (per-thread partial sums of dw, db), strided;
     * a large mean; a head slice of q normalised in place with dx == dy */
    for (int v = 0; v < 6; v++) {
        add_grad(var[v].rms, var[v].w, var[v].b, 97, 1536, 1536 + 7, 1536, 1536 + 2,
                 G_DX | G_DW | G_DB, 0, 1e-6f, 0.0f, seed++);
        add_grad(var[v].rms, var[v].w, var[v].b, 301, 128, 1536, 1536, 1536, G_DX | G_DW | G_DB, 1,
                 1e-6f, 0.0f, seed++);
    }
    add_grad(0, 1, 1, 13, 1536, 1536, 1536, 1536, G_DX | G_DW | G_DB, 0, 1e-6f, 300.0f, seed++);
}

/* The argument checks of the forward save and the backwards (ops.c), on one backend. */
static void grad_checks(const hl_ctx *be) {
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, dy[8] = {1, 1, 1, 1, 1, 1, 1, 1}, dx[8];
    float w[4] = {1, 1, 1, 1}, y[8], mean[2], rstd[2], dw[4] = {0};
    hl_norm_saved s = {mean, rstd}, no_rstd = {mean, NULL}, no_mean = {NULL, rstd};
    CHECK(hl_layernorm(be, 2, 4, x, 4, w, NULL, 1e-6f, y, 4, &no_rstd) == HELIOS_ERR_INVALID_ARG,
          "layernorm: save without rstd rejected");
    CHECK(hl_layernorm(be, 2, 4, x, 4, w, NULL, 1e-6f, y, 4, &no_mean) == HELIOS_ERR_INVALID_ARG,
          "layernorm: save without mean rejected");
    CHECK(hl_rmsnorm(be, 2, 4, x, 4, w, 1e-6f, y, 4, &no_mean) == HL_OK,
          "rmsnorm: save without mean accepted");
    CHECK(hl_layernorm(be, 2, 4, x, 4, w, NULL, 1e-6f, y, 4, &s) == HL_OK, "layernorm with save");
    CHECK(hl_layernorm_backward(be, 2, 4, x, 4, NULL, &s, dy, 4, dx, 4, dw, NULL) ==
              HELIOS_ERR_INVALID_ARG,
          "layernorm_backward: dw without w rejected");
    CHECK(hl_rmsnorm_backward(be, 2, 4, x, 4, NULL, &s, dy, 4, dx, 4, dw) == HELIOS_ERR_INVALID_ARG,
          "rmsnorm_backward: dw without w rejected");
    CHECK(hl_layernorm_backward(be, 1, 4, x, 4, w, &s, dx, 4, dx, 3, dw, NULL) ==
              HELIOS_ERR_INVALID_ARG,
          "layernorm_backward: lddx < D rejected");
    CHECK(hl_layernorm_backward(be, 1, 4, x, 4, w, &s, dx, 8, dx, 4, dw, NULL) ==
              HELIOS_ERR_INVALID_ARG,
          "layernorm_backward: dx == dy with lddx != lddy rejected");
    CHECK(hl_rmsnorm_backward(be, 1, 4, x, 4, w, &s, dy, 4, x, 4, dw) == HELIOS_ERR_INVALID_ARG,
          "rmsnorm_backward: dx == x rejected");
    CHECK(hl_layernorm_backward(be, 2, 4, x, 4, w, &no_mean, dy, 4, dx, 4, dw, NULL) ==
              HELIOS_ERR_INVALID_ARG,
          "layernorm_backward: saved without mean rejected");
    CHECK(hl_rmsnorm_backward(be, 2, 4, x, 4, w, NULL, dy, 4, dx, 4, dw) == HELIOS_ERR_INVALID_ARG,
          "rmsnorm_backward: NULL saved rejected");
    CHECK(hl_layernorm_backward(be, 2, 4, x, 4, w, NULL, dy, 4, NULL, 4, NULL, NULL) == HL_OK,
          "layernorm_backward: nothing asked for is HL_OK");
    CHECK(hl_rmsnorm_backward(be, 0, 4, x, 4, w, NULL, dy, 4, dx, 4, dw) == HL_OK,
          "rmsnorm_backward: M = 0");
}

/* ---- rope, scale_heads, add_gated ------------------------------------------------------------ */

static void rope_case(const heads_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t M = a->M, ldx = a->ldx;
    const int H = a->H, hd = a->hd;
    float *x0 = frand(M * ldx, seed, 1.0f), *x_be = falloc(M * ldx), *x_ref = falloc(M * ldx);
    float *rope = falloc(M * (hd > 0 ? hd : 1));
    for (int64_t m = 0; m < M; m++)
        for (int j = 0; j < hd / 2; j++) {
            double th = (double)m * pow(10000.0, -2.0 * j / hd);
            rope[m * hd + j] = (float)cos(th);
            rope[m * hd + hd / 2 + j] = (float)sin(th);
        }
    pad_fill(x0, M, (int64_t)H * hd, ldx);
    memcpy(x_be, x0, (size_t)(M * ldx) * sizeof *x0);
    memcpy(x_ref, x0, (size_t)(M * ldx) * sizeof *x0);
    char what[128];
    snprintf(what, sizeof what, "%s: rope M=%lld H=%d hd=%d ldx=%lld", bname(be), (long long)M, H,
             hd, (long long)ldx);
    CHECK(hl_rope(&g_ref, M, H, hd, x_ref, ldx, rope) == HL_OK &&
              hl_rope(be, M, H, hd, x_be, ldx, rope) == HL_OK,
          "%s: status", what);
    cmp_result r = compare(x_be, ldx, x_ref, ldx, M, (int64_t)H * hd, NULL, 0, 1e-6);
    report(what, r);
    CHECK(cmp_ok(r), "%s: err/allowed %.3g", what, r.worst);
    CHECK(pad_intact(x_be, M, (int64_t)H * hd, ldx), "%s: wrote outside", what);
    free(x0), free(x_be), free(x_ref), free(rope);
}

static void scale_heads_case(const heads_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t M = a->M, ldx = a->ldx;
    const int H = a->H, hd = a->hd;
    float *x0 = frand(M * ldx, seed, 1.0f), *s = frand(H, seed + 1, 2.0f);
    float *x_be = falloc(M * ldx), *x_ref = falloc(M * ldx);
    pad_fill(x0, M, (int64_t)H * hd, ldx);
    memcpy(x_be, x0, (size_t)(M * ldx) * sizeof *x0);
    memcpy(x_ref, x0, (size_t)(M * ldx) * sizeof *x0);
    char what[128];
    snprintf(what, sizeof what, "%s: scale_heads M=%lld H=%d hd=%d ldx=%lld", bname(be),
             (long long)M, H, hd, (long long)ldx);
    CHECK(hl_scale_heads(&g_ref, M, H, hd, x_ref, ldx, s) == HL_OK &&
              hl_scale_heads(be, M, H, hd, x_be, ldx, s) == HL_OK,
          "%s: status", what);
    cmp_result r = compare(x_be, ldx, x_ref, ldx, M, (int64_t)H * hd, NULL, 0, 1e-6);
    report(what, r);
    CHECK(r.max_err == 0, "%s: not exact (%.3g)", what, r.max_err); /* one rounding each */
    CHECK(pad_intact(x_be, M, (int64_t)H * hd, ldx), "%s: wrote outside", what);
    free(x0), free(s), free(x_be), free(x_ref);
}

static void add_gated_case(const add_gated_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t M = a->M, D = a->D, ldx = a->ldx, ldy = a->ldy;
    float *x0 = frand(M * ldx, seed, 1.0f), *y = frand(M * ldy, seed + 1, 1.0f),
          *g = frand(D, seed + 2, 1.0f);
    float *x_be = falloc(M * ldx), *x_ref = falloc(M * ldx);
    pad_fill(x0, M, D, ldx);
    memcpy(x_be, x0, (size_t)(M * ldx) * sizeof *x0);
    memcpy(x_ref, x0, (size_t)(M * ldx) * sizeof *x0);
    char what[128];
    snprintf(what, sizeof what, "%s: add_gated M=%lld D=%lld ldx=%lld ldy=%lld%s", bname(be),
             (long long)M, (long long)D, (long long)ldx, (long long)ldy, a->gated ? " gated" : "");
    CHECK(hl_add_gated(&g_ref, M, D, x_ref, ldx, y, ldy, a->gated ? g : NULL) == HL_OK &&
              hl_add_gated(be, M, D, x_be, ldx, y, ldy, a->gated ? g : NULL) == HL_OK,
          "%s: status", what);
    /* the fused multiply-add rounds once where ref rounds twice: within an ulp of the terms */
    cmp_result r = compare(x_be, ldx, x_ref, ldx, M, D, NULL, 0, 1e-6);
    report(what, r);
    CHECK(cmp_ok(r), "%s: err/allowed %.3g", what, r.worst);
    CHECK(pad_intact(x_be, M, D, ldx), "%s: wrote outside", what);
    free(x0), free(y), free(g), free(x_be), free(x_ref);
}

static void add_heads(op_id op, int64_t M, int H, int hd, int64_t ldx, uint64_t seed) {
    add_case((op_case){op, seed, .u.heads = {M, H, hd, ldx}});
}

static void add_add_gated(int64_t M, int64_t D, int64_t ldx, int64_t ldy, int gated,
                          uint64_t seed) {
    add_case((op_case){OP_ADD_GATED, seed, .u.add_gated = {M, D, ldx, ldy, gated}});
}

static void rows_cases(void) {
    const int64_t Ms[] = {1, 7, 13};
    const int hds[] = {2, 5, 16, 32, 34, 128};
    uint64_t seed = 700;
    int i = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 6; b++, i++) {
            int H = i % 2 ? 3 : 1, hd = hds[b];
            int64_t ld = i % 3 ? (int64_t)H * hd + 11 : (int64_t)H * hd;
            add_heads(OP_ROPE, Ms[a], H, hd, ld, seed++);
            add_heads(OP_SCALE_HEADS, Ms[a], H, hd, ld, seed++);
        }
    add_heads(OP_ROPE, 2304, 12, 128, 1536, seed++);
    add_heads(OP_ROPE, 97, 12, 128, 3 * 1536, seed++); /* q slice of a fused qkv buffer */
    add_heads(OP_SCALE_HEADS, 2304, 12, 128, 1536, seed++);
    const int64_t Ds[] = {1, 3, 61, 131, 1536};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 5; b++, i++)
            add_add_gated(Ms[a], Ds[b], Ds[b] + (i % 2) * 3, Ds[b] + (i % 3) * 5, i % 2, seed++);
    add_add_gated(2304, 1536, 1536, 1536, 1, seed++);
    add_add_gated(2304, 1536, 1536, 1536, 0, seed++);
}

static void rows_checks(const hl_ctx *be) {
    float z[8] = {0};
    CHECK(hl_rope(be, 1, 2, 4, z, 4, z) == HELIOS_ERR_INVALID_ARG, "rope: ldx < H·hd rejected");
    CHECK(hl_add_gated(be, -1, 4, z, 4, z, 4, NULL) == HELIOS_ERR_INVALID_ARG,
          "add_gated: M < 0 rejected");
}

/* ---- gelu_tanh, silu ------------------------------------------------------------------------- */

static void flat_case(const flat_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t n = a->n;
    float *x = frand(n + 1, seed, a->amp), *y_ref = falloc(n + 1), *y_be = falloc(n + 1);
    /* specials at the start when there is room */
    const float sp[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 30.0f, -30.0f, 100.0f, -100.0f, 5.5f, -5.5f};
    for (int64_t i = 0; i < n && i < 10; i++) x[i] = sp[i];
    y_be[n] = SENTINEL;
    float *xin = x;
    if (a->in_place) {
        memcpy(y_be, x, (size_t)n * sizeof *x);
        xin = y_be;
    }
    hl_status s1 = (a->gelu ? hl_gelu_tanh : hl_silu)(&g_ref, n, x, y_ref);
    hl_status s2 = (a->gelu ? hl_gelu_tanh : hl_silu)(be, n, xin, y_be);
    char what[96];
    snprintf(what, sizeof what, "%s: %s n=%lld amp %g%s", bname(be), a->gelu ? "gelu_tanh" : "silu",
             (long long)n, a->amp, a->in_place ? " in place" : "");
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status", what);
    float *bound = falloc(n + 1);
    for (int64_t i = 0; i < n; i++)
        bound[i] = 4e-6f * fabsf(y_ref[i]) + 2e-7f * fabsf(x[i]) + 1e-37f;
    cmp_result r = compare(y_be, n, y_ref, n, 1, n, bound, n, 0); /* one row of n */
    report(what, r);
    CHECK(cmp_ok(r), "%s: err/allowed %.3g", what, r.worst);
    CHECK(y_be[n] == SENTINEL, "%s: wrote past n", what);
    free(x), free(y_ref), free(y_be), free(bound);
}

static void flat_cases(void) {
    const int64_t ns[] = {1, 15, 16, 17, 97, 1000, 100003};
    uint64_t seed = 900;
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < 7; i++) {
            add_case((op_case){OP_FLAT, seed++, .u.flat = {g, ns[i], i % 2, 6.0f}});
            add_case((op_case){OP_FLAT, seed++, .u.flat = {g, ns[i], 0, 0.01f}});
        }
}

static void flat_checks(const hl_ctx *be) {
    CHECK(hl_gelu_tanh(be, 0, NULL, NULL) == HL_OK, "gelu: n = 0");
    CHECK(hl_silu(be, -1, NULL, NULL) == HELIOS_ERR_INVALID_ARG, "silu: n < 0 rejected");
}

/* ---- umT5 ops: gelu_tanh_mul, relative_bias ------------------------------------------------- */

/* Bound as for gelu_tanh (flat_case), with |x·g| for |x|: the product adds one float32
 * rounding. */
static void gelu_mul_case(const gelu_mul_args *a, uint64_t seed, const hl_ctx *be) {
    const int64_t n = a->n;
    float *x = frand(n + 1, seed, a->amp), *g = frand(n + 1, seed + 1, 2.0f);
    float *y_ref = falloc(n + 1), *y_be = fconst(n + 1, SENTINEL);
    const float sp[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 30.0f, -30.0f, 100.0f, -100.0f, 5.5f, -5.5f};
    for (int64_t i = 0; i < n && i < 10; i++) x[i] = sp[i];
    float *xin = x, *gin = g;
    if (a->inplace == 1) memcpy(y_be, x, (size_t)n * sizeof *x), xin = y_be;
    if (a->inplace == 2) memcpy(y_be, g, (size_t)n * sizeof *g), gin = y_be;
    hl_status s1 = hl_gelu_tanh_mul(&g_ref, n, x, g, y_ref);
    hl_status s2 = hl_gelu_tanh_mul(be, n, xin, gin, y_be);
    char what[96];
    snprintf(what, sizeof what, "%s: gelu_tanh_mul n=%lld amp %g%s", bname(be), (long long)n,
             a->amp,
             a->inplace == 1   ? " in place (x)"
             : a->inplace == 2 ? " in place (g)"
                               : "");
    CHECK(s1 == HL_OK && s2 == HL_OK, "%s: status", what);
    float *bound = falloc(n + 1);
    for (int64_t i = 0; i < n; i++)
        bound[i] = 4e-6f * fabsf(y_ref[i]) + 2e-7f * fabsf(x[i] * g[i]) + 1e-37f;
    cmp_result r = compare(y_be, n, y_ref, n, 1, n, bound, n, 0);
    report(what, r);
    CHECK(cmp_ok(r), "%s: err/allowed %.3g", what, r.worst);
    CHECK(y_be[n] == SENTINEL, "%s: wrote past n", what);
    free(x), free(g), free(y_ref), free(y_be), free(bound);
}

static void relative_bias_case(const relbias_args *a, uint64_t seed, const hl_ctx *be) {
    const int H = a->H;
    const int64_t Sq = a->Sq, Sk = a->Sk, n = (int64_t)H * Sq * Sk;
    float *rel = frand((int64_t)H * (Sq + Sk - 1), seed, 3.0f);
    float *b_ref = fconst(n + 1, 0), *b_be = fconst(n + 1, SENTINEL);
    char what[96];
    snprintf(what, sizeof what, "%s: relative_bias H=%d Sq=%lld Sk=%lld", bname(be), H,
             (long long)Sq, (long long)Sk);
    CHECK(hl_relative_bias(&g_ref, H, Sq, Sk, rel, b_ref) == HL_OK &&
              hl_relative_bias(be, H, Sq, Sk, rel, b_be) == HL_OK,
          "%s: status", what);
    CHECK(memcmp(b_ref, b_be, (size_t)n * sizeof *b_ref) == 0, "%s: not identical", what);
    CHECK(b_be[n] == SENTINEL, "%s: wrote past H·Sq·Sk", what);
    /* spot checks of the definition itself */
    int ok = 1;
    for (int h = 0; h < H; h++)
        for (int64_t i = 0; i < Sq; i += 3)
            for (int64_t j = 0; j < Sk; j += 5)
                if (b_ref[((int64_t)h * Sq + i) * Sk + j] !=
                    rel[h * (Sq + Sk - 1) + (j - i) + Sq - 1])
                    ok = 0;
    CHECK(ok, "%s: bias[h, i, j] = rel[h, j - i + Sq - 1]", what);
    free(rel), free(b_ref), free(b_be);
}

static void umt5_cases(void) {
    const int64_t ns[] = {1, 15, 16, 17, 97, 1000, 100003};
    uint64_t seed = 1700;
    for (int i = 0; i < 7; i++) {
        add_case((op_case){OP_GELU_MUL, seed++, .u.gelu_mul = {ns[i], i % 3, 6.0f}});
        add_case((op_case){OP_GELU_MUL, seed++, .u.gelu_mul = {ns[i], (i + 1) % 3, 0.01f}});
    }
    const int Hs[] = {1, 3};
    const int64_t Ss[] = {1, 2, 7, 61};
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++)
                add_case((op_case){OP_RELATIVE_BIAS, seed++, .u.relbias = {Hs[a], Ss[b], Ss[c]}});
    add_case((op_case){OP_RELATIVE_BIAS, seed++, .u.relbias = {8, 512, 512}});
}

static void umt5_checks(const hl_ctx *be) {
    CHECK(hl_gelu_tanh_mul(be, 0, NULL, NULL, NULL) == HL_OK, "gelu_tanh_mul: n = 0");
    CHECK(hl_gelu_tanh_mul(be, -1, NULL, NULL, NULL) == HELIOS_ERR_INVALID_ARG,
          "gelu_tanh_mul: n < 0 rejected");
    float z[4] = {0};
    CHECK(hl_gelu_tanh_mul(be, 4, z, NULL, z) == HELIOS_ERR_INVALID_ARG,
          "gelu_tanh_mul: NULL gate rejected");
    CHECK(hl_relative_bias(be, 2, 0, 5, NULL, NULL) == HL_OK, "relative_bias: Sq = 0");
    CHECK(hl_relative_bias(be, -1, 2, 5, z, z) == HELIOS_ERR_INVALID_ARG,
          "relative_bias: H < 0 rejected");
    CHECK(hl_relative_bias(be, 1, 2, 2, NULL, z) == HELIOS_ERR_INVALID_ARG,
          "relative_bias: NULL table rejected");
}

/* ---- the table crossed with the backends ----------------------------------------------------- */

static void build_cases(void) {
    linear_cases();
    attention_cases();
    biased_cases();
    norm_cases();
    grad_cases();
    rows_cases();
    flat_cases();
    umt5_cases();
}

/* One case on one backend (against ref). */
static void op_case_run(const op_case *c, const hl_ctx *be) {
    switch (c->op) {
    case OP_LINEAR: linear_case(&c->u.linear, c->seed, be); break;
    case OP_ATTENTION: attention_case(&c->u.attention, c->seed, be); break;
    case OP_ATTENTION_BIASED: biased_case(&c->u.biased, c->seed, be); break;
    case OP_NORM: norm_case(&c->u.norm, c->seed, be); break;
    case OP_NORM_GRAD: norm_grad_case(&c->u.grad, c->seed, be); break;
    case OP_ROPE: rope_case(&c->u.heads, c->seed, be); break;
    case OP_SCALE_HEADS: scale_heads_case(&c->u.heads, c->seed, be); break;
    case OP_ADD_GATED: add_gated_case(&c->u.add_gated, c->seed, be); break;
    case OP_FLAT: flat_case(&c->u.flat, c->seed, be); break;
    case OP_GELU_MUL: gelu_mul_case(&c->u.gelu_mul, c->seed, be); break;
    case OP_RELATIVE_BIAS: relative_bias_case(&c->u.relbias, c->seed, be); break;
    case OP_COUNT: break;
    }
}

/* The checks outside the table, on one backend. */
static void backend_checks(const hl_ctx *be) {
    test_compare_rejects(be);
    linear_checks(be);
    attention_checks(be);
    biased_checks(be);
    norm_checks(be);
    grad_checks(be);
    rows_checks(be);
    flat_checks(be);
    umt5_checks(be);
}

int main(int argc, char **argv) {
    g_verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    g_ref = test_ctx(HELIOS_BACKEND_REF, &g_err);
    test_vec_math();
    build_cases();

    /* ref's own backward against finite differences (the oracle of the gradient mode) */
    int n_fd = 0;
    for (int i = 0; i < g_ncases; i++)
        if (g_cases[i].op == OP_NORM_GRAD && fd_small(&g_cases[i].u.grad))
            fd_check(&g_cases[i].u.grad, g_cases[i].seed), n_fd++;

    for (int b = 0; b < test_n_backends; b++) {
        hl_ctx be = test_ctx(test_backends[b], &g_err);
        backend_checks(&be);
        for (int i = 0; i < g_ncases; i++) op_case_run(&g_cases[i], &be);
    }

    int per_op[OP_COUNT] = {0};
    for (int i = 0; i < g_ncases; i++) per_op[g_cases[i].op]++;
    printf("test_ops: %d cases x %d backend(s) (", g_ncases, test_n_backends);
    for (int k = 0; k < OP_COUNT; k++) printf("%s%s %d", k ? ", " : "", op_name[k], per_op[k]);
    printf("); %d backward cases checked against finite differences\n", n_fd);
    free(g_cases);
    return test_done("test_ops");
}
