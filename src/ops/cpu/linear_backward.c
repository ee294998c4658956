/* cpu linear backward: two GEMMs (cached oneDNN matmuls, or our GEMM: backward_ours) and a
 * column sum.
 *   dx  = dy·W      A = dy [M, N], B = W as stored ([N, K]: N rows of K = "K rows of N" for a
 *                   GEMM whose reduction runs over N), C = dx; accumulate_dx: a sum post-op
 *   dW += dyᵀ·x     A = dy read transposed (atrans), B = x [M, K], C = dW with a sum post-op
 *   db += Σ_rows dy one pass over dy per block of columns, fused with packing dy for the GEMMs
 * Precision, as the forward (the rule at the top of ops.h): with f32 weights both GEMMs are f32.
 * With bf16 weights both run bf16 x bf16 -> f32 on oneDNN's bf16 kernels: dy (and for dW, x) are
 * rounded to bf16 as the forward rounds x, W is used as stored, the sums are float32, and dW stays
 * float32 (the sum post-op adds the float32 product to it). db sums the float32 dy in float32.
 * Without bf16 kernels (AVX2-only CPUs, or HELIOS_BF16_GEMM=0) W is converted to float32 and
 * everything is f32, as in the forward.
 * Deterministic for a given thread count: the GEMMs are (oneDNN fixes its partition from the
 * primitive's thread count), and each column of db is summed by one task in row order. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/gemm/gemm.h"
#include "ops/cpu/vec_math.h"

enum { LB_PAR_MIN = 1 << 15, LB_COLS = 256 };

/* Columns [j0, j0 + w) of every row of dy: packed into out (dense [M, N] in bf16 or f32; NULL:
 * not wanted) and summed into db (NULL: not wanted). */
static void dy_cols(int64_t M, int64_t N, int64_t j0, int64_t w, const float *dy, int64_t lddy,
                    int bf16, void *out, float *db) {
    float acc[LB_COLS] = {0};
    for (int64_t m = 0; m < M; m++) {
        const float *src = dy + m * lddy + j0;
        if (out && bf16) hl_cpu_f32_to_bf16(src, (hl_bf16 *)out + m * N + j0, w);
        else if (out) memcpy((float *)out + m * N + j0, src, (size_t)w * sizeof *src);
        if (!db) continue;
        int64_t i = 0;
#ifdef HL_CPU_AVX512
        for (; i + 16 <= w; i += 16)
            _mm512_storeu_ps(acc + i,
                             _mm512_add_ps(_mm512_loadu_ps(acc + i), _mm512_loadu_ps(src + i)));
#endif
        for (; i < w; i++) acc[i] += src[i];
    }
    if (db)
        for (int64_t i = 0; i < w; i++) db[j0 + i] += acc[i];
}

/* x [M, K] (rows ldx apart) -> dense [M, K] in bf16 or f32. */
static void pack_rows(int64_t M, int64_t K, const float *x, int64_t ldx, int bf16, void *out) {
#pragma omp parallel for schedule(static) if (M * K >= LB_PAR_MIN)
    for (int64_t m = 0; m < M; m++) {
        if (bf16) hl_cpu_f32_to_bf16(x + m * ldx, (hl_bf16 *)out + m * K, K);
        else memcpy((float *)out + m * K, x + m * ldx, (size_t)K * sizeof *x);
    }
}

/* dst[m, :] (+)= src[m, :] for M rows of K (src dense). */
static void store_rows(int64_t M, int64_t K, const float *src, float *dst, int64_t ld, int add) {
#pragma omp parallel for schedule(static) if (M * K >= LB_PAR_MIN)
    for (int64_t m = 0; m < M; m++) {
        const float *s = src + m * K;
        float *d = dst + m * ld;
        if (!add) {
            memcpy(d, s, (size_t)K * sizeof *s);
            continue;
        }
        int64_t i = 0;
#ifdef HL_CPU_AVX512
        for (; i + 16 <= K; i += 16)
            _mm512_storeu_ps(d + i, _mm512_add_ps(_mm512_loadu_ps(d + i), _mm512_loadu_ps(s + i)));
#endif
        for (; i < K; i++) d[i] += s[i];
    }
}

#define OOM()                                                                                  \
    hl_fail(ctx->err, HELIOS_ERR_OOM, "linear_backward: out of memory (M=%lld N=%lld K=%lld)", \
            (long long)M, (long long)N, (long long)K)

static hl_status backward_locked(const hl_ctx *ctx, int64_t M, int64_t N, int64_t K, const float *x,
                                 int64_t ldx, const hl_tensor *W, const float *dy, int64_t lddy,
                                 float *dx, int64_t lddx, int acc_dx, float *dW, float *db) {
    hl_cpu *cpu = hl_cpu_of(ctx);
    const void *wdata = W->data;
    int bf16 = W->dtype == HL_BF16;
    if (bf16 && !hl_cpu_bf16_gemm(cpu)) { /* no bf16 kernels: an f32 GEMM on converted weights */
        float *wf = hl_cpu_scratch(cpu, HL_SLOT_LIN_W, (size_t)(N * K) * 4);
        if (!wf) return OOM();
        const hl_bf16 *wb = W->data;
#pragma omp parallel for schedule(static) if (N * K >= LB_PAR_MIN)
        for (int64_t n = 0; n < N; n++)
            hl_convert_to_f32(HL_BF16, wb + n * K, wf + n * K, (size_t)K);
        wdata = wf;
        bf16 = 0;
    }
    const hl_dtype dt = bf16 ? HL_BF16 : HL_F32;
    const size_t esz = bf16 ? 2 : 4;
    const int nthr = hl_cpu_nthr_for((double)M * N * K);
    hl_mm *mdx = NULL, *mdw = NULL;
    if (dx) {
        hl_mm_key k = {.M = M,
                       .N = K,
                       .K = N,
                       .dt = dt,
                       .blayout = HL_MM_B_KN,
                       .nthr = nthr,
                       .accumulate = acc_dx && lddx == K};
        HL_TRY(hl_cpu_mm_get(cpu, &k, &mdx, ctx->err));
    }
    if (dW) {
        hl_mm_key k = {.M = N,
                       .N = K,
                       .K = M,
                       .dt = dt,
                       .blayout = HL_MM_B_KN,
                       .nthr = nthr,
                       .atrans = 1,
                       .accumulate = 1};
        HL_TRY(hl_cpu_mm_get(cpu, &k, &mdw, ctx->err));
    }
    size_t pad_bytes = 0;
    if (mdx) pad_bytes = hl_cpu_mm_scratchpad_size(mdx);
    if (mdw && hl_cpu_mm_scratchpad_size(mdw) > pad_bytes)
        pad_bytes = hl_cpu_mm_scratchpad_size(mdw);
    void *pad = hl_cpu_scratch(cpu, HL_SLOT_LIN_PAD, pad_bytes);
    if (!pad) return OOM();

    /* dy packed for the GEMMs (f32 and dense: used in place), and db, in one pass */
    const void *a = dy;
    void *dyp = NULL;
    if ((dx || dW) && (bf16 || lddy != N)) {
        if (!(dyp = hl_cpu_scratch(cpu, HL_SLOT_LINB_DY, (size_t)(M * N) * esz))) return OOM();
        a = dyp;
    }
    if (dyp || db) {
        const int64_t nblk = (N + LB_COLS - 1) / LB_COLS;
#pragma omp parallel for schedule(static) if (M * N >= LB_PAR_MIN)
        for (int64_t b = 0; b < nblk; b++) {
            int64_t j0 = b * LB_COLS, w = N - j0 < LB_COLS ? N - j0 : LB_COLS;
            dy_cols(M, N, j0, w, dy, lddy, bf16, dyp, db);
        }
    }
    if (mdx) {
        float *c = dx;
        if (lddx != K && !(c = hl_cpu_scratch(cpu, HL_SLOT_LINB_DX, (size_t)(M * K) * 4)))
            return OOM();
        HL_TRY(hl_cpu_mm_run(mdx, 0, a, wdata, NULL, c, pad, ctx->err));
        if (c != dx) store_rows(M, K, c, dx, lddx, acc_dx);
    }
    if (mdw) {
        const void *b = x;
        if (bf16 || ldx != K) {
            void *xp = hl_cpu_scratch(cpu, HL_SLOT_LINB_X, (size_t)(M * K) * esz);
            if (!xp) return OOM();
            pack_rows(M, K, x, ldx, bf16, xp);
            b = xp;
        }
        HL_TRY(hl_cpu_mm_run(mdw, 0, a, b, NULL, dW, pad, ctx->err));
    }
    return HL_OK;
}

/* The same on our GEMM (gemm/gemm.h): dx = dy·W is its NN form (beta = accumulate_dx), dW +=
 * dyᵀ·x its TN form (beta 1); strided dy, x and dx are read and written in place. With bf16
 * weights dy and x are rounded to bf16 while packed (hl_gemm_bf16x: no rounded copy of x, which
 * cost 5 ms of the FFN's 2304 x 8960 input at the 1.3B block), and db is the row sums of dyᵀ
 * that the dW GEMM takes as it packs dy (the same float32 sums in row order as dy_cols: the same
 * bits; its pass over dy cost another 5 ms at the FFN's 2304 x 8960 dy). */
static hl_status backward_ours(const hl_ctx *ctx, int64_t M, int64_t N, int64_t K, const float *x,
                               int64_t ldx, const hl_tensor *W, const float *dy, int64_t lddy,
                               float *dx, int64_t lddx, int acc_dx, float *dW, float *db) {
    const int bf16 = W->dtype == HL_BF16, nthr = hl_cpu_nthr_for((double)M * N * K);
    int rc = 0;
    /* bf16 dW: db is the GEMM's row sums of dyᵀ, taken as it packs dy, then added */
    float *dbs = NULL;
    if (db && dW && bf16 && !(dbs = hl_cpu_scratch(hl_cpu_of(ctx), HL_SLOT_LINB_DB, (size_t)N * 4)))
        return OOM();
    if (db && !dbs) {
        const int64_t nblk = (N + LB_COLS - 1) / LB_COLS;
#pragma omp parallel for schedule(static) if (M * N >= LB_PAR_MIN)
        for (int64_t b = 0; b < nblk; b++) {
            int64_t j0 = b * LB_COLS, w = N - j0 < LB_COLS ? N - j0 : LB_COLS;
            dy_cols(M, N, j0, w, dy, lddy, 0, NULL, db);
        }
    }
    if (dx)
        rc = bf16 ? hl_gemm_bf16(HL_GEMM_AUTO, nthr, 0, 0, M, K, N, dy, lddy, W->data, K, acc_dx,
                                 dx, lddx)
                  : hl_gemm_f32(HL_GEMM_AUTO, nthr, 0, 0, M, K, N, dy, lddy, W->data, K, acc_dx, dx,
                                lddx);
    if (dW && rc == 0 && bf16) {
        rc = hl_gemm_bf16x(HL_GEMM_AUTO, nthr, 1, 0, N, K, M, HL_F32, dy, lddy, HL_F32, x, ldx, 1,
                           dW, K, dbs);
        for (int64_t j = 0; dbs && rc == 0 && j < N; j++) db[j] += dbs[j];
    } else if (dW && rc == 0) {
        rc = hl_gemm_f32(HL_GEMM_AUTO, nthr, 1, 0, N, K, M, dy, lddy, x, ldx, 1, dW, K);
    }
    return rc == 0 ? HL_OK : OOM();
}

/* One backward call, for the route probe, with copies of the outputs it accumulates into (dx
 * when accumulate_dx, dW, db) as they were on entry. */
typedef struct lb_call {
    const hl_ctx *ctx;
    int64_t M, N, K, ldx, lddy, lddx;
    const float *x, *dy;
    const hl_tensor *W;
    float *dx, *dW, *db;
    int acc_dx;
    float *dx0, *dW0, *db0;
} lb_call;

static int lb_run(void *arg, int ours) {
    const lb_call *l = arg;
    return (ours ? backward_ours : backward_locked)(l->ctx, l->M, l->N, l->K, l->x, l->ldx, l->W,
                                                    l->dy, l->lddy, l->dx, l->lddx, l->acc_dx,
                                                    l->dW, l->db);
}

static void lb_reset(void *arg) {
    const lb_call *l = arg;
    if (l->dx0)
        for (int64_t m = 0; m < l->M; m++)
            memcpy(l->dx + m * l->lddx, l->dx0 + m * l->K, (size_t)l->K * sizeof *l->dx);
    if (l->dW0) memcpy(l->dW, l->dW0, (size_t)(l->N * l->K) * sizeof *l->dW);
    if (l->db0) memcpy(l->db, l->db0, (size_t)l->N * sizeof *l->db);
}

/* Which GEMMs run, as the forward's linear_locked decides (gemm.h, "routing"), the class also
 * saying which outputs are wanted and whether dx accumulates. The probe times the whole
 * backward on both routes, its accumulated outputs saved first and put back before each run.
 * Without memory for the copies, oneDNN runs unprobed. */
static hl_status backward_routed(const hl_ctx *ctx, int64_t M, int64_t N, int64_t K, const float *x,
                                 int64_t ldx, const hl_tensor *W, const float *dy, int64_t lddy,
                                 float *dx, int64_t lddx, int acc_dx, float *dW, float *db) {
    const int form = 8 + (dx != NULL) + 2 * (dW != NULL) + 4 * (dx && acc_dx) + 8 * (db != NULL);
    hl_gemm_class c = {M, N, K, form, W->dtype == HL_BF16, hl_cpu_nthr_for((double)M * N * K)};
    const int route = hl_gemm_route_get(&c);
    if (route == 1)
        return backward_ours(ctx, M, N, K, x, ldx, W, dy, lddy, dx, lddx, acc_dx, dW, db);
    lb_call l = {ctx,
                 M,
                 N,
                 K,
                 ldx,
                 lddy,
                 lddx,
                 x,
                 dy,
                 W,
                 dx,
                 dW,
                 db,
                 acc_dx,
                 dx && acc_dx ? malloc((size_t)(M * K) * sizeof(float)) : NULL,
                 dW ? malloc((size_t)(N * K) * sizeof(float)) : NULL,
                 db ? malloc((size_t)N * sizeof(float)) : NULL};
    hl_status st;
    if (route == 0 || (dx && acc_dx && !l.dx0) || (dW && !l.dW0) || (db && !l.db0)) {
        st = backward_locked(ctx, M, N, K, x, ldx, W, dy, lddy, dx, lddx, acc_dx, dW, db);
    } else {
        if (l.dx0)
            for (int64_t m = 0; m < M; m++)
                memcpy(l.dx0 + m * K, dx + m * lddx, (size_t)K * sizeof *dx);
        if (l.dW0) memcpy(l.dW0, dW, (size_t)(N * K) * sizeof *dW);
        if (l.db0) memcpy(l.db0, db, (size_t)N * sizeof *db);
        st = (hl_status)hl_gemm_probe(&c, lb_run, lb_reset, &l);
    }
    free(l.dx0), free(l.dW0), free(l.db0);
    return st;
}

hl_status hl_cpu_linear_backward(const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx,
                                 const hl_tensor *W, const float *dy, int64_t lddy, float *dx,
                                 int64_t lddx, int accumulate_dx, float *dW, float *db) {
    const int64_t N = W->shape[0], K = hl_tensor_numel(W) / N;
    /* Routing (gemm.h): ours by default, and under auto below the probe size as in the forward;
     * above it the faster of the two, probed (backward_routed). */
    const hl_gemm_mode mode = hl_gemm_mode_get();
    const int ours = mode == HL_GEMM_MODE_OURS ||
                     (mode == HL_GEMM_MODE_AUTO && (double)M * N * K < HL_GEMM_PROBE_MIN_MACS);
    hl_cpu_lock(hl_cpu_of(ctx));
    hl_status st =
        ours ? backward_ours(ctx, M, N, K, x, ldx, W, dy, lddy, dx, lddx, accumulate_dx, dW, db)
        : mode == HL_GEMM_MODE_ONEDNN
            ? backward_locked(ctx, M, N, K, x, ldx, W, dy, lddy, dx, lddx, accumulate_dx, dW, db)
            : backward_routed(ctx, M, N, K, x, ldx, W, dy, lddy, dx, lddx, accumulate_dx, dW, db);
    hl_cpu_unlock(hl_cpu_of(ctx));
    if (st != HL_OK && st != HELIOS_ERR_OOM) hl_error_prefix(ctx->err, "linear_backward");
    return st;
}
