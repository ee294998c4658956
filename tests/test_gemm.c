/* Our GEMM (src/ops/cpu/gemm): every kernel this CPU has (scalar, avx2, avx512, avx512-bf16,
 * amx) in every form (NN, NT, TN, TT; beta 0 and 1), f32 and bf16 weights, against a scalar double
 * reference: odd shapes (1, primes, K below the register tile, M, N, K across the MC / NC / KC
 * block edges) with strided operands (lda, ldb, ldc > width) and realistic ones (the block's
 * 2304 x 1536 x 1536 in full, 2304 x 8960 x 1536 on sampled elements). A kernel the CPU lacks is
 * skipped with a message.
 *
 * Strided views: the padding of A and B is NaN, so a kernel that reads it poisons the result;
 * the padding of C holds a sentinel that must be left alone. With beta 0, C starts as NaN
 * (it must be overwritten, never read).
 *
 * Tolerances (u = 2^-24, the float32 unit roundoff; the reference sums in double):
 *   f32: |got - ref| <= (K + 2)·u·(Σ_k |a_ik b_kj| + |c0_ij|) element-wise: any order of K
 *     float32 multiply-adds has a relative error of at most ~K·u of the sum of magnitudes (the
 *     worst case; typically sqrt(K)·u), plus one rounding adding the K-block partials to C.
 *     This is test_ops.c's f32 rule made element-wise (it uses 1e-5·max|ref|, ~sqrt(K)·u).
 *   bf16: A is rounded to bf16 in the reference too (the precision rule of ops.h: the cpu rounds
 *     x to bf16, W is bf16), so bf16 x bf16 products are exact in float32 and only the float32
 *     sums remain: (2K + 4)·u·(Σ|ab| + |c0|), the bound of test_ops.c's header without its
 *     2^-8 (its reference does not round x); vdpbf16ps sums pairs, two roundings per term.
 * Determinism: the same call twice gives the same bits, and so do 1 and 2 threads (the driver
 * sums each element on one thread in a fixed order). hl_gemm_bf16x with A and / or B stored in
 * bf16 or float32 gives the bits of hl_gemm_bf16 on the same values (compared after each bf16
 * case; the padding is NaN in both storages), and its row sums of A those of a plain float32
 * loop in k order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/cpu_bench.h"
#include "core/dtype.h"
#include "ops/cpu/gemm/gemm.h"
#include "test_util.h"

#define SENTINEL 1234.5f

static int g_verbose;

static float *falloc(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    if (!p) {
        fprintf(stderr, "test_gemm: out of memory\n");
        exit(2);
    }
    return p;
}

typedef struct gcase {
    int transA, transB;
    int64_t M, N, K;
    int64_t pad; /* extra columns of A, B and C beyond their widths */
} gcase;

/* An operand of rows x cols (row-major, ld = cols + pad) filled with values in [-1, 1), its
 * padding NaN. */
static float *operand(int64_t rows, int64_t cols, int64_t ld, uint64_t seed) {
    float *p = falloc(rows * ld);
    for (int64_t i = 0; i < rows * ld; i++) p[i] = NAN;
    float *row = falloc(cols);
    for (int64_t r = 0; r < rows; r++) {
        fill_random(row, cols, seed + (uint64_t)r * 7919u);
        memcpy(p + r * ld, row, (size_t)cols * sizeof *row);
    }
    free(row);
    return p;
}

/* The reference and its bound at (i, j). a_at / b_at: op(A)(i, k), op(B)(k, j) as used. */
typedef struct opnd {
    const float *A, *B;
    const hl_bf16 *Bh;
    int64_t sai, sak, sbk, sbj;
    int bf16;
} opnd;

static double a_at(const opnd *o, int64_t i, int64_t k) {
    float v = o->A[i * o->sai + k * o->sak];
    return o->bf16 ? hl_bf16_to_f32(hl_f32_to_bf16(v)) : v;
}
static double b_at(const opnd *o, int64_t k, int64_t j) {
    int64_t x = k * o->sbk + j * o->sbj;
    return o->bf16 ? hl_bf16_to_f32(o->Bh[x]) : o->B[x];
}

/* Checks C[i, j] against the reference; returns 0 when within the bound. */
static int check_elem(const opnd *o, int64_t K, int64_t i, int64_t j, float got, float c0, int beta,
                      double *worst) {
    double s = 0, mag = 0;
    for (int64_t k = 0; k < K; k++) {
        double t = a_at(o, i, k) * b_at(o, k, j);
        s += t;
        mag += fabs(t);
    }
    if (beta) s += c0, mag += fabs(c0);
    const double u = 1.0 / 16777216.0;
    double tol = (o->bf16 ? 2.0 * K + 4 : K + 2.0) * u * mag + 1e-30;
    double err = fabs((double)got - s);
    if (err / tol > *worst) *worst = err / tol;
    return !(err <= tol);
}

static int run_gemm(hl_gemm_kernel k, int bf16, int nthr, const gcase *g, const float *A,
                    int64_t lda, const float *B, const hl_bf16 *Bh, int64_t ldb, int beta, float *C,
                    int64_t ldc) {
    if (bf16)
        return hl_gemm_bf16(k, nthr, g->transA, g->transB, g->M, g->N, g->K, A, lda, Bh, ldb, beta,
                            C, ldc);
    return hl_gemm_f32(k, nthr, g->transA, g->transB, g->M, g->N, g->K, A, lda, B, ldb, beta, C,
                       ldc);
}

/* One case on one kernel: beta 0 and 1, checked everywhere (or on `samples` elements), the
 * padding of C untouched, the same bits again and on 1 thread. */
static void gemm_case(hl_gemm_kernel k, int bf16, const gcase *g, int samples) {
    const int64_t M = g->M, N = g->N, K = g->K;
    const int64_t ar = g->transA ? K : M, ac = g->transA ? M : K;
    const int64_t br = g->transB ? N : K, bc = g->transB ? K : N;
    const int64_t lda = ac + g->pad, ldb = bc + g->pad, ldc = N + g->pad;
    float *A = operand(ar, ac, lda, 11), *B = operand(br, bc, ldb, 23);
    hl_bf16 *Bh = malloc((size_t)(br * ldb) * sizeof *Bh), *Ah = malloc((size_t)(ar * lda) * 2);
    float *C0 = operand(M, N, ldc, 37), *C = falloc(M * ldc), *C2 = falloc(M * ldc);
    if (!Bh || !Ah) exit(2);
    for (int64_t i = 0; i < br * ldb; i++) Bh[i] = hl_f32_to_bf16(B[i]);
    for (int64_t i = 0; i < ar * lda; i++) Ah[i] = hl_f32_to_bf16(A[i]);
    opnd o = {A,
              B,
              Bh,
              g->transA ? 1 : lda,
              g->transA ? lda : 1,
              g->transB ? 1 : ldb,
              g->transB ? ldb : 1,
              bf16};
    char form[3] = {g->transA ? 'T' : 'N', g->transB ? 'T' : 'N', 0};
    for (int beta = 0; beta <= 1; beta++) {
        for (int64_t i = 0; i < M * ldc; i++) {
            int pad = i % ldc >= N;
            C[i] = pad ? SENTINEL : (beta ? C0[i] : NAN);
        }
        memcpy(C2, C, (size_t)(M * ldc) * sizeof *C);
        int rc = run_gemm(k, bf16, 2, g, A, lda, B, Bh, ldb, beta, C, ldc);
        CHECK(rc == 0, "%s %s %s failed", hl_gemm_kernel_name(k), bf16 ? "bf16" : "f32", form);
        double worst = 0;
        int64_t bad = 0, pad_bad = 0;
        uint64_t s = 99;
        const int ns = samples < 0 ? (beta ? 2000 : 0) : samples; /* < 0: full with beta 0 */
        const int64_t n_check = ns ? ns : M * N;
        for (int64_t t = 0; t < n_check; t++) {
            int64_t i = t / N, j = t % N;
            if (ns) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                i = (int64_t)((s >> 33) % (uint64_t)M);
                j = (int64_t)((s >> 11) % (uint64_t)N);
            }
            bad += check_elem(&o, K, i, j, C[i * ldc + j], C0[i * ldc + j], beta, &worst);
        }
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = N; j < ldc; j++) pad_bad += C[i * ldc + j] != SENTINEL;
        CHECK(bad == 0 && pad_bad == 0,
              "%s %s %s M %lld N %lld K %lld pad %lld beta %d: %lld elements off (worst "
              "%.2f of the bound), %lld padding values written",
              hl_gemm_kernel_name(k), bf16 ? "bf16" : "f32", form, (long long)M, (long long)N,
              (long long)K, (long long)g->pad, beta, (long long)bad, worst, (long long)pad_bad);
        if (g_verbose)
            printf("%-11s %s %s M %5lld N %5lld K %5lld pad %lld beta %d: worst %.3f of the "
                   "bound%s\n",
                   hl_gemm_kernel_name(k), bf16 ? "bf16" : "f32 ", form, (long long)M, (long long)N,
                   (long long)K, (long long)g->pad, beta, worst, ns ? " (sampled)" : "");
        /* bf16: the same bits with A and B stored either way (hl_gemm_bf16x: float32 operands
         * are rounded while packed, bf16 ones copied), on 2 threads */
        for (int st = 0; bf16 && st < 3; st++) {
            const hl_dtype ta = st != 1 ? HL_BF16 : HL_F32, tb = st == 0 ? HL_BF16 : HL_F32;
            float *C4 = falloc(M * ldc), *as = falloc(M), *as_ref = falloc(M);
            memcpy(C4, C2, (size_t)(M * ldc) * sizeof *C4);
            for (int64_t i = 0; i < M; i++) as[i] = NAN; /* set, never read */
            rc = hl_gemm_bf16x(k, 2, g->transA, g->transB, M, N, K, ta,
                               ta == HL_BF16 ? (const void *)Ah : A, lda, tb,
                               tb == HL_BF16 ? (const void *)Bh : B, ldb, beta, C4, ldc, as);
            CHECK(rc == 0 && !memcmp(C4, C, (size_t)(M * ldc) * sizeof *C4),
                  "%s bf16x (A %s, B %s) %s M %lld N %lld K %lld beta %d: other bits than "
                  "hl_gemm_bf16",
                  hl_gemm_kernel_name(k), hl_dtype_name(ta), hl_dtype_name(tb), form, (long long)M,
                  (long long)N, (long long)K, beta);
            /* the row sums of op(A) as stored: float32 from 0 in k order, the same bits */
            for (int64_t i = 0; i < M; i++) {
                float acc = 0;
                for (int64_t kk = 0; kk < K; kk++) {
                    const int64_t x = i * o.sai + kk * o.sak;
                    acc += ta == HL_BF16 ? hl_bf16_to_f32(Ah[x]) : A[x];
                }
                as_ref[i] = acc;
            }
            CHECK(!memcmp(as, as_ref, (size_t)M * sizeof *as),
                  "%s bf16x (A %s) %s M %lld N %lld K %lld: row sums of A differ",
                  hl_gemm_kernel_name(k), hl_dtype_name(ta), form, (long long)M, (long long)N,
                  (long long)K);
            free(C4), free(as), free(as_ref);
        }
        /* the same bits again (2 threads) and on 1 thread */
        for (int nthr = 2; nthr >= 1; nthr--) {
            float *C3 = falloc(M * ldc);
            memcpy(C3, C2, (size_t)(M * ldc) * sizeof *C3);
            run_gemm(k, bf16, nthr, g, A, lda, B, Bh, ldb, beta, C3, ldc);
            CHECK(!memcmp(C3, C, (size_t)(M * ldc) * sizeof *C3),
                  "%s %s %s M %lld N %lld K %lld: %d thread(s) gave other bits",
                  hl_gemm_kernel_name(k), bf16 ? "bf16" : "f32", form, (long long)M, (long long)N,
                  (long long)K, nthr);
            free(C3);
            if (samples) break; /* sampled shapes: once is enough time */
        }
    }
    free(A), free(Ah), free(B), free(Bh), free(C0), free(C), free(C2);
}

int main(int argc, char **argv) {
    g_verbose = argc > 1 && !strcmp(argv[1], "-v");
    /* routing: the linear ops run ours unless HELIOS_GEMM says otherwise (a timed choice differs
     * between processes, and so would their bits) */
    unsetenv("HELIOS_GEMM");
    CHECK(hl_gemm_mode_get() == HL_GEMM_MODE_OURS, "routing: the default is %d, not ours",
          (int)hl_gemm_mode_get());
    /* clang-format off */
    static const int64_t shapes[][4] = { /* M, N, K, pad */
        {1, 1, 1, 0},      {1, 1, 1, 3},     {7, 5, 3, 2},       {13, 17, 11, 5},
        {14, 32, 1, 0},    {15, 33, 2, 1},   {29, 31, 37, 4},    {3, 101, 7, 0},
        {97, 61, 257, 3},  {31, 67, 515, 1}, {6, 16, 16, 0},     {337, 45, 19, 2},
        {41, 2053, 13, 1}, {53, 19, 1031, 0},
        {33, 1057, 4099, 1}, /* AMX only: K past its 4096-deep block, */
        {7, 4129, 4099, 0},  /* and N past the 4096-wide one (on one thread; the other kernels'
                                blocks are crossed above) */
    };
    /* clang-format on */
    static const int forms[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    for (int kk = 0; kk < HL_GEMM_KERNEL_COUNT; kk++) {
        hl_gemm_kernel k = (hl_gemm_kernel)kk;
        if (!hl_gemm_kernel_available(k)) {
            printf("SKIP kernel %s: not on this CPU\n", hl_gemm_kernel_name(k));
            continue;
        }
        for (int bf16 = 0; bf16 <= 1; bf16++) {
            if ((k == HL_GEMM_AVX512_BF16 || k == HL_GEMM_AMX) && !bf16)
                continue; /* f32 operands: the avx512 kernel */
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (int f = 0; f < 4 && (shapes[s][2] <= 4096 || k == HL_GEMM_AMX); f++) {
                    gcase g = {forms[f][0],  forms[f][1],  shapes[s][0],
                               shapes[s][1], shapes[s][2], shapes[s][3]};
                    gemm_case(k, bf16, &g, 0);
                }
            /* realistic: the block's projections (x·Wᵀ) and the backward's forms */
            if (k != HL_GEMM_SCALAR) { /* (the scalar kernel would take minutes here) */
                gcase g1 = {0, 1, 2304, 1536, 1536, 0}, g2 = {0, 1, 2304, 8960, 1536, 0},
                      g3 = {1, 0, 1536, 1536, 2304, 8};
                gemm_case(k, bf16, &g1, -1);
                gemm_case(k, bf16, &g2, 400);
                gemm_case(k, bf16, &g3, 400);
            }
            printf("kernel %s %s: checked\n", hl_gemm_kernel_name(k), bf16 ? "bf16" : "f32");
        }
    }
    /* row sums of A without a C to compute (N = 0; K = 0): still the sums (a linear with no
     * input features still has a db) */
    {
        const float A[3 * 5] = {1, 2, 3, 4, 5, -1, 0.5f, 0, 0, 0, 7, 7, 7, 7, 7};
        float as[5] = {NAN, NAN, NAN, NAN, NAN}, C[3] = {SENTINEL, SENTINEL, SENTINEL};
        int rc = hl_gemm_bf16x(HL_GEMM_AUTO, 2, 0, 0, 3, 0, 5, HL_F32, A, 5, HL_F32, A, 1, 0, C, 1,
                               as);
        CHECK(rc == 0 && as[0] == 15 && as[1] == -0.5f && as[2] == 35 && C[0] == SENTINEL,
              "bf16x N = 0: row sums %g %g %g", as[0], as[1], as[2]);
        rc = hl_gemm_bf16x(HL_GEMM_AUTO, 2, 1, 0, 5, 0, 3, HL_F32, A, 5, HL_F32, A, 1, 0, C, 1, as);
        CHECK(rc == 0 && as[0] == 7 && as[1] == 9.5f && as[4] == 12, "bf16x Aᵀ, N = 0: row sums");
        rc = hl_gemm_bf16x(HL_GEMM_AUTO, 2, 0, 0, 3, 1, 0, HL_F32, A, 5, HL_F32, A, 1, 0, C, 1, as);
        CHECK(rc == 0 && as[0] == 0 && as[2] == 0 && C[0] == 0 && C[2] == 0,
              "bf16x K = 0: row sums or C not 0");
    }
    /* the bench's AMX ceiling loops (harness/bench/amx_ceiling.c) address the panels as the GEMM
     * packs them: every C value of one pass against its sum in double */
    for (int pl = 0; pl < HL_AMX_PLACE_COUNT; pl++) {
        const double e = hl_amx_ceiling_check(pl);
        if (!hl_gemm_kernel_available(HL_GEMM_AMX)) {
            CHECK(e < 0, "amx ceiling %d: ran without AMX", pl);
            continue;
        }
        CHECK(e >= 0 && e < 1e-5, "amx ceiling %d: relative error %g", pl, e);
    }
    return test_done("test_gemm");
}
