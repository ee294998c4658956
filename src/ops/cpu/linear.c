/* cpu linear: y[M, N] = x[M, K] · W[N, K]ᵀ + b through our GEMM (gemm/) or a cached oneDNN
 * matmul: ours unless HELIOS_GEMM says onednn, or auto (the faster per shape; gemm.h, "routing").
 *
 * The oneDNN path:
 * W BF16: x is rounded to bf16 (RNE) into a dense scratch copy and a bf16 x bf16 -> f32 matmul
 * runs on the AMX brgemm kernels (without bf16 kernels, AVX2-only CPUs: W converted to f32, an f32
 * matmul). W F32: an f32 matmul. W F16: HELIOS_ERR_UNSUPPORTED (no f16 GEMM here), which ops.c
 * turns into a logged fallback to ref. oneDNN 2.6 only picks its brgemm (AMX) kernels for dense A and C (lda = K, ldc = N;
 * a strided C falls back to the much slower gemm:jit), so a strided x is packed and a strided y
 * goes through a dense scratch.
 *
 * Weight layout. oneDNN's brgemm runs faster on weights reordered into its blocked layout, but a
 * reorder per call costs a pass over W. Measured on this 2-core AMX Xeon (oneDNN 2.6.3, bf16,
 * whole hl_cpu_linear in ms, medians of 8-12 runs of 7 on a shared machine):
 *      M     N     K   plain [N,K]   blocked (reorder every call)
 *   2304  1536  1536      6.9          6.2
 *   2304  8960  1536     42.6         43.5
 *   2304  1536  8960     48.0         54.5
 *    512  1536  1536      1.48         1.73
 * (the bare matmul, 4096^3: 124 ms plain, 104 + 5 blocked.) So the reorder pays only for
 * square-ish weights (K <= N < 2K) and large M. Keeping reordered copies of the weights would
 * gain ~10% on those shapes without the per-call pass, but doubles the weight memory: not done. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/gemm/gemm.h"

enum { LIN_BLOCKED_MIN_M = 1024, LIN_PAR_MIN = 1 << 15 /* elements before threads pay */ };

/* x [M, K] (rows ldx apart) -> dense bf16 [M, K]. */
static void pack_x_bf16(int64_t M, int64_t K, const float *x, int64_t ldx, hl_bf16 *xb) {
#pragma omp parallel for schedule(static) if (M * K >= LIN_PAR_MIN)
    for (int64_t m = 0; m < M; m++) hl_cpu_f32_to_bf16(x + m * ldx, xb + m * K, K);
}

/* Copies rows [M, W] from ld_src apart to ld_dst apart. */
static void copy_rows(int64_t M, int64_t W, const float *src, int64_t ld_src, float *dst,
                      int64_t ld_dst) {
#pragma omp parallel for schedule(static) if (M * W >= LIN_PAR_MIN)
    for (int64_t m = 0; m < M; m++) memcpy(dst + m * ld_dst, src + m * ld_src, (size_t)W * 4);
}

/* The bias as float32 [N]: b's own data when it is F32, else a converted copy in *owned
 * (exact: bf16 and f16 values are all float32 values). */
static hl_status bias_f32(const hl_ctx *ctx, const hl_tensor *b, int64_t N, const float **out,
                          float **owned) {
    *out = NULL;
    *owned = NULL;
    if (!b) return HL_OK;
    if (b->dtype == HL_F32) {
        *out = b->data;
        return HL_OK;
    }
    float *f = malloc((size_t)N * sizeof *f);
    if (!f)
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "linear: out of memory (bias, N=%lld)",
                       (long long)N);
    hl_convert_to_f32(b->dtype, b->data, f, (size_t)N);
    *out = *owned = f;
    return HL_OK;
}

/* The oneDNN matmul, with the backend lock held. */
static hl_status linear_onednn(const hl_ctx *ctx, int64_t M, int64_t N, int64_t K, const float *x,
                               int64_t ldx, const hl_tensor *W, const float *bias, float *y,
                               int64_t ldy) {
    hl_cpu *cpu = hl_cpu_of(ctx);
    hl_tensor w32;
    if (W->dtype == HL_BF16 && !hl_cpu_bf16_gemm(cpu)) { /* no bf16 kernels: an f32 GEMM */
        float *wf = hl_cpu_scratch(cpu, HL_SLOT_LIN_W, (size_t)(N * K) * 4);
        if (!wf) goto oom;
        const hl_bf16 *wb = W->data;
#pragma omp parallel for schedule(static) if (N * K >= LIN_PAR_MIN)
        for (int64_t n = 0; n < N; n++)
            hl_convert_to_f32(HL_BF16, wb + n * K, wf + n * K, (size_t)K);
        w32 = *W;
        w32.dtype = HL_F32;
        w32.data = wf;
        W = &w32;
    }
    const int bf16 = W->dtype == HL_BF16;
    hl_mm_key key = {.M = M,
                     .N = N,
                     .K = K,
                     .dt = W->dtype,
                     .blayout = HL_MM_B_NK,
                     .bias = bias != NULL,
                     .nthr = hl_cpu_nthr_for((double)M * N * K)};
    if (bf16 && M >= LIN_BLOCKED_MIN_M && N >= K && N < 2 * K) key.blayout = HL_MM_B_BLOCKED_NK;
    hl_mm *mm;
    HL_TRY(hl_cpu_mm_get(cpu, &key, &mm, ctx->err));

    size_t esz = bf16 ? 2 : 4;
    void *pad = hl_cpu_scratch(cpu, HL_SLOT_LIN_PAD, hl_cpu_mm_scratchpad_size(mm));
    const void *a = x;
    if (bf16 || ldx != K) {
        void *xa = hl_cpu_scratch(cpu, HL_SLOT_LIN_X, (size_t)(M * K) * esz);
        if (!xa || !pad) goto oom;
        if (bf16) pack_x_bf16(M, K, x, ldx, xa);
        else copy_rows(M, K, x, ldx, xa, K);
        a = xa;
    }
    const void *wb = W->data;
    if (key.blayout == HL_MM_B_BLOCKED_NK) {
        void *wp = hl_cpu_scratch(cpu, HL_SLOT_LIN_W, hl_cpu_mm_packed_b_size(mm));
        if (!wp || !pad) goto oom;
        HL_TRY(hl_cpu_mm_pack_b(mm, 0, W->data, wp, pad, ctx->err));
        wb = wp;
    }
    float *c = y;
    if (ldy != N && !(c = hl_cpu_scratch(cpu, HL_SLOT_LIN_Y, (size_t)(M * N) * 4))) goto oom;
    if (!pad) goto oom;
    HL_TRY(hl_cpu_mm_run(mm, 0, a, wb, bias, c, pad, ctx->err));
    if (c != y) copy_rows(M, N, c, N, y, ldy);
    return HL_OK;
oom:
    return hl_fail(ctx->err, HELIOS_ERR_OOM, "linear: out of memory (M=%lld N=%lld K=%lld)",
                   (long long)M, (long long)N, (long long)K);
}

/* Our GEMM (gemm/gemm.h): y = b (then beta 1) or beta 0, x·Wᵀ is the NT form; strided x and y
 * need no copies, bf16 weights are packed panel by panel (no converted copy of W). */
static hl_status linear_ours(const hl_ctx *ctx, int64_t M, int64_t N, int64_t K, const float *x,
                             int64_t ldx, const hl_tensor *W, const float *bias, float *y,
                             int64_t ldy) {
    if (bias) {
#pragma omp parallel for schedule(static) if (M * N >= LIN_PAR_MIN)
        for (int64_t m = 0; m < M; m++) memcpy(y + m * ldy, bias, (size_t)N * sizeof *y);
    }
    const int nthr = hl_cpu_nthr_for((double)M * N * K), beta = bias != NULL;
    int rc = W->dtype == HL_BF16
                 ? hl_gemm_bf16(HL_GEMM_AUTO, nthr, 0, 1, M, N, K, x, ldx, W->data, K, beta, y, ldy)
                 : hl_gemm_f32(HL_GEMM_AUTO, nthr, 0, 1, M, N, K, x, ldx, W->data, K, beta, y, ldy);
    if (rc != 0)
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "linear: out of memory (M=%lld N=%lld K=%lld)",
                       (long long)M, (long long)N, (long long)K);
    return HL_OK;
}

/* One linear call's operands, for the route probe. */
typedef struct lin_call {
    const hl_ctx *ctx;
    int64_t M, N, K, ldx, ldy;
    const float *x, *bias;
    const hl_tensor *W;
    float *y;
} lin_call;

static int lin_run(void *arg, int ours) {
    const lin_call *l = arg;
    return (ours ? linear_ours : linear_onednn)(l->ctx, l->M, l->N, l->K, l->x, l->ldx, l->W,
                                                l->bias, l->y, l->ldy);
}

/* Which GEMM runs (gemm.h, "routing"); with the lock held. The probe (hl_gemm_probe) needs no
 * reset: every run overwrites y. */
static hl_status linear_locked(const hl_ctx *ctx, int64_t M, int64_t N, int64_t K, const float *x,
                               int64_t ldx, const hl_tensor *W, const float *bias, float *y,
                               int64_t ldy) {
    const hl_gemm_mode mode = hl_gemm_mode_get();
    const double macs = (double)M * N * K;
    if (mode == HL_GEMM_MODE_OURS || (mode == HL_GEMM_MODE_AUTO && macs < HL_GEMM_PROBE_MIN_MACS))
        return linear_ours(ctx, M, N, K, x, ldx, W, bias, y, ldy);
    if (mode == HL_GEMM_MODE_ONEDNN) return linear_onednn(ctx, M, N, K, x, ldx, W, bias, y, ldy);
    hl_gemm_class c = {M, N, K, 0, W->dtype == HL_BF16, hl_cpu_nthr_for(macs)};
    const int ours = hl_gemm_route_get(&c);
    if (ours == 1) return linear_ours(ctx, M, N, K, x, ldx, W, bias, y, ldy);
    if (ours == 0) return linear_onednn(ctx, M, N, K, x, ldx, W, bias, y, ldy);
    lin_call l = {ctx, M, N, K, ldx, ldy, x, bias, W, y};
    return (hl_status)hl_gemm_probe(&c, lin_run, NULL, &l);
}

hl_status hl_cpu_linear(const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx,
                        const hl_tensor *W, const hl_tensor *b, float *y, int64_t ldy) {
    const int64_t N = W->shape[0], K = hl_tensor_numel(W) / N;
    if (W->dtype == HL_F16)
        return hl_fail(ctx->err, HELIOS_ERR_UNSUPPORTED, "linear: no f16 GEMM on the cpu backend");

    const float *bias;
    float *owned;
    HL_TRY(bias_f32(ctx, b, N, &bias, &owned));
    hl_status st = HL_OK;
    if (K == 0) { /* an empty sum: y = b */
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) y[m * ldy + n] = bias ? bias[n] : 0.0f;
    } else {
        hl_cpu_lock(hl_cpu_of(ctx));
        st = linear_locked(ctx, M, N, K, x, ldx, W, bias, y, ldy);
        hl_cpu_unlock(hl_cpu_of(ctx));
        if (st != HL_OK && st != HELIOS_ERR_OOM) hl_error_prefix(ctx->err, "linear"); /* oneDNN */
    }
    free(owned);
    return st;
}
