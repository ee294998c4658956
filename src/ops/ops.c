/* The op layer: backend instances, and per op ONE argument check shared by every backend, the
 * early return on empty work, and the dispatch through the instance's table (ops_backends.h). */
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "ops/ops_backends.h"
#include "ops/ref/conv_util.h"

/* ---- instances ------------------------------------------------------------------------------- */

static const hl_backend_ops *table_of(helios_backend kind) {
    switch (kind) {
    case HELIOS_BACKEND_CPU: return &hl_cpu_backend_ops;
    case HELIOS_BACKEND_REF: return &hl_ref_backend_ops;
    }
    return NULL;
}

hl_backend *hl_backend_new(helios_backend kind, int nthreads, hl_error *err) {
    const hl_backend_ops *ops = table_of(kind);
    if (!ops) {
        hl_fail(err, HELIOS_ERR_INVALID_ARG, "backend: unknown kind %d", (int)kind);
        return NULL;
    }
    if (nthreads < 0) {
        hl_fail(err, HELIOS_ERR_INVALID_ARG, "backend %s: %d threads", ops->name, nthreads);
        return NULL;
    }
    hl_backend *be = calloc(1, sizeof *be);
    if (!be) {
        hl_fail(err, HELIOS_ERR_OOM, "backend %s: out of memory", ops->name);
        return NULL;
    }
    be->ops = ops;
    be->nthreads = nthreads;
    if (ops->init && ops->init(be, err) != HL_OK) {
        hl_error_prefix(err, "backend %s", ops->name);
        free(be);
        return NULL;
    }
    return be;
}

void hl_backend_free(hl_backend *be) {
    if (!be) return;
    if (be->ops->fini) be->ops->fini(be);
    free(be);
}

helios_backend hl_backend_kind(const hl_backend *be) {
    return be ? be->ops->kind : HELIOS_BACKEND_REF;
}

const char *hl_backend_name(const hl_backend *be) { return be ? be->ops->name : "none"; }

int hl_backend_threads(const hl_backend *be) { return be ? be->nthreads : 0; }

void hl_backend_govern(hl_backend *be, hl_governor *g) {
    if (be) be->governor = g;
}

helios_backend hl_ctx_kind(const hl_ctx *ctx) { return hl_backend_kind(ctx ? ctx->backend : NULL); }

static pthread_mutex_t g_shared_lock = PTHREAD_MUTEX_INITIALIZER;
static hl_backend *g_shared[2];

static void free_shared(void) {
    for (int i = 0; i < 2; i++) hl_backend_free(g_shared[i]), g_shared[i] = NULL;
}

hl_backend *hl_backend_shared(helios_backend kind) {
    int i = kind == HELIOS_BACKEND_CPU ? 0 : kind == HELIOS_BACKEND_REF ? 1 : -1;
    if (i < 0) return NULL;
    pthread_mutex_lock(&g_shared_lock);
    if (!g_shared[i]) {
        hl_error err = {0};
        static int registered;
        if (!registered) registered = atexit(free_shared) == 0;
        if (!(g_shared[i] = hl_backend_new(kind, 0, &err))) HL_ERROR("%s", err.msg);
    }
    hl_backend *be = g_shared[i];
    pthread_mutex_unlock(&g_shared_lock);
    return be;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static hl_status no_backend(const hl_ctx *ctx, const char *op) {
    return hl_fail(ctx ? ctx->err : NULL, HELIOS_ERR_INVALID_ARG, "%s: no backend", op);
}

static hl_status lacks(const hl_ctx *ctx, const char *op) {
    return hl_fail(ctx->err, HELIOS_ERR_UNSUPPORTED, "%s: not implemented by the %s backend", op,
                   ctx->backend->ops->name);
}

/* Logs (once per instance and op) that op runs on the fallback, and why. */
static void fallback_warn(const hl_ctx *ctx, hl_op_id id, const char *op) {
    hl_backend *be = ctx->backend;
    if (!__atomic_exchange_n(&be->warned[id], 1, __ATOMIC_RELAXED))
        HL_WARN("%s: the %s backend cannot run this call (%s); using the %s backend", op,
                be->ops->name, ctx->err && ctx->err->msg[0] ? ctx->err->msg : "unsupported",
                be->ops->fallback->name);
    if (ctx->err) hl_error_clear(ctx->err);
}

/* ---- op timing (ops_backends.h) ---------------------------------------------------------- */

static int g_op_timing; /* set by measurement code only */
static _Thread_local hl_op_times t_op_times;
static _Thread_local int t_op_depth;

void hl_op_timing_set(int on) {
    if (on) memset(&t_op_times, 0, sizeof t_op_times);
    __atomic_store_n(&g_op_timing, on != 0, __ATOMIC_RELAXED);
}

const hl_op_times *hl_op_times_get(void) { return &t_op_times; }

const char *hl_op_name(hl_op_id id) {
    static const char *const names[] = {
#define HL_X_NAME(name, params) #name,
        HL_OPS(HL_X_NAME)
#undef HL_X_NAME
    };
    return (unsigned)id < HL_OP_COUNT ? names[id] : "?";
}

static double op_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The timed path, out of line so the untimed one stays a branch. */
static __attribute__((noinline)) double op_time_begin(void) {
    return t_op_depth++ ? 0.0 : op_clock();
}

static __attribute__((noinline)) void op_time_end(hl_op_id id, double t0) {
    if (--t_op_depth == 0 && t0 > 0.0) {
        t_op_times.seconds[id] += op_clock() - t0;
        t_op_times.calls[id]++;
    }
}

/* The load governor, if any, between outermost ops only: an op's thread count must not change
 * while it runs (it may size per-thread buffers before its parallel regions). */
static _Thread_local int t_dispatch_depth;
static __attribute__((noinline)) void govern(hl_governor *g) {
    if (t_dispatch_depth == 0 && !omp_in_parallel()) hl_governor_tick(g);
}

#define HL_DISPATCH(op, ...)                                                                     \
    do {                                                                                         \
        const hl_backend_ops *t_ = ctx->backend->ops;                                            \
        if (__builtin_expect(ctx->backend->governor != NULL, 0)) govern(ctx->backend->governor); \
        const int timed_ = __builtin_expect(__atomic_load_n(&g_op_timing, __ATOMIC_RELAXED), 0); \
        const double t0_ = timed_ ? op_time_begin() : 0.0;                                       \
        t_dispatch_depth++;                                                                      \
        hl_status st_ = t_->op ? t_->op(ctx, __VA_ARGS__) : lacks(ctx, #op);                     \
        if (st_ == HELIOS_ERR_UNSUPPORTED && t_->fallback && t_->fallback->op) {                 \
            fallback_warn(ctx, HL_OP_##op, #op);                                                 \
            st_ = t_->fallback->op(ctx, __VA_ARGS__);                                            \
        }                                                                                        \
        t_dispatch_depth--;                                                                      \
        if (timed_) op_time_end(HL_OP_##op, t0_);                                                \
        return st_;                                                                              \
    } while (0)

/* Every hl_<op> starts with this: a ctx with a backend. */
#define HL_NEED_BACKEND(op)                                    \
    do {                                                       \
        if (!ctx || !ctx->backend) return no_backend(ctx, op); \
    } while (0)

#define BAD(...) hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, __VA_ARGS__)

static hl_status check_out_dtype(const hl_ctx *ctx, const char *op, hl_dtype dt) {
    if (dt != HL_F32 && dt != HL_BF16)
        return hl_fail(ctx->err, HELIOS_ERR_DTYPE, "%s: output dtype %s (F32 or BF16)", op,
                       hl_dtype_name(dt));
    return HL_OK;
}

static int layout_ok(hl_layout l) { return l == HL_NCTHW || l == HL_NTHWC; }

/* ---- GEMM ------------------------------------------------------------------------------------ */

hl_status hl_linear(const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx, const hl_tensor *W,
                    const hl_tensor *b, float *y, int64_t ldy) {
    HL_NEED_BACKEND("linear");
    if (!W || W->ndim < 1 || !W->data) return BAD("linear: no weight tensor");
    if (W->dtype != HL_F32 && W->dtype != HL_BF16 && W->dtype != HL_F16)
        return hl_fail(ctx->err, HELIOS_ERR_DTYPE, "linear: weight dtype %s (F32, BF16 or F16)",
                       hl_dtype_name(W->dtype));
    if (!hl_tensor_is_contiguous(W)) return BAD("linear: weight is not contiguous");
    int64_t N = W->shape[0], K = N ? hl_tensor_numel(W) / N : 0;
    if (M < 0 || ldx < K || ldy < N || (M > 0 && N > 0 && (!y || (K > 0 && !x))))
        return BAD("linear: bad sizes M=%lld K=%lld ldx=%lld N=%lld ldy=%lld", (long long)M,
                   (long long)K, (long long)ldx, (long long)N, (long long)ldy);
    if (b) {
        if (b->dtype != HL_F32 && b->dtype != HL_BF16 && b->dtype != HL_F16)
            return hl_fail(ctx->err, HELIOS_ERR_DTYPE, "linear: bias dtype %s",
                           hl_dtype_name(b->dtype));
        if (hl_tensor_numel(b) != N || !b->data || !hl_tensor_is_contiguous(b))
            return hl_fail(ctx->err, HELIOS_ERR_SHAPE, "linear: bias has %lld values, N=%lld",
                           (long long)hl_tensor_numel(b), (long long)N);
    }
    if (M == 0 || N == 0) return HL_OK;
    HL_DISPATCH(linear, M, x, ldx, W, b, y, ldy);
}

/* ---- attention ------------------------------------------------------------------------------- */

hl_status hl_attention_biased(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                              const float *q, int64_t ldq, const float *k, int64_t ldk,
                              const float *v, int64_t ldv, float scale, const float *bias,
                              const float *key_bias, hl_dtype compute, float *out, int64_t ldo) {
    HL_NEED_BACKEND("attention");
    int64_t w = (int64_t)H * hd;
    if (Sq < 0 || Sk < 1 || H < 1 || hd < 1 || ldq < w || ldk < w || ldv < w || ldo < w)
        return BAD("attention: bad sizes Sq=%lld Sk=%lld H=%d hd=%d ld=%lld,%lld,%lld,%lld "
                   "(H, hd, Sk >= 1)",
                   (long long)Sq, (long long)Sk, H, hd, (long long)ldq, (long long)ldk,
                   (long long)ldv, (long long)ldo);
    if (compute != HL_F32 && compute != HL_BF16)
        return hl_fail(ctx->err, HELIOS_ERR_DTYPE, "attention: compute dtype %s (F32 or BF16)",
                       hl_dtype_name(compute));
    if (Sq == 0) return HL_OK;
    if (!q || !k || !v || !out) return BAD("attention: NULL pointer");
    HL_DISPATCH(attention_biased, Sq, Sk, H, hd, q, ldq, k, ldk, v, ldv, scale, bias, key_bias,
                compute, out, ldo);
}

hl_status hl_attention(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd, const float *q,
                       int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                       float scale, hl_dtype compute, float *out, int64_t ldo) {
    return hl_attention_biased(ctx, Sq, Sk, H, hd, q, ldq, k, ldk, v, ldv, scale, NULL, NULL,
                               compute, out, ldo);
}

/* ---- normalisation --------------------------------------------------------------------------- */

/* Rows of width D, input and output strides; 1: nothing to do, 0: go on, < 0: failed. */
static int check_rows(const hl_ctx *ctx, const char *op, int64_t M, int64_t D, const void *x,
                      int64_t ldx, const void *y, int64_t ldy, hl_status *st) {
    *st = HL_OK;
    if (M < 0 || D < 0 || ldx < D || ldy < D) {
        *st = BAD("%s: bad sizes M=%lld D=%lld ldx=%lld ldy=%lld", op, (long long)M, (long long)D,
                  (long long)ldx, (long long)ldy);
        return -1;
    }
    if (M == 0 || D == 0) return 1;
    if (!x || !y) {
        *st = BAD("%s: NULL pointer", op);
        return -1;
    }
    return 0;
}

#define CHECK_ROWS(op, M, D, x, ldx, y, ldy)                          \
    do {                                                              \
        hl_status cr_st_;                                             \
        int cr_ = check_rows(ctx, op, M, D, x, ldx, y, ldy, &cr_st_); \
        if (cr_) return cr_st_;                                       \
    } while (0)

static hl_status check_save(const hl_ctx *ctx, const char *op, const hl_norm_saved *s, int mean) {
    if (s && (!s->rstd || (mean && !s->mean))) return BAD("%s: save without its arrays", op);
    return HL_OK;
}

hl_status hl_layernorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                       const float *w, const float *b, float eps, float *y, int64_t ldy,
                       hl_norm_saved *save) {
    HL_NEED_BACKEND("layernorm");
    HL_TRY(check_save(ctx, "layernorm", save, 1));
    CHECK_ROWS("layernorm", M, D, x, ldx, y, ldy);
    HL_DISPATCH(layernorm, M, D, x, ldx, w, b, eps, y, ldy, save);
}

hl_status hl_layernorm_backward(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                int64_t ldx, const float *w, const hl_norm_saved *saved,
                                const float *dy, int64_t lddy, float *dx, int64_t lddx, float *dw,
                                float *db) {
    HL_NEED_BACKEND("layernorm_backward");
    if (M < 0 || D < 0 || ldx < D || lddy < D || (dx && lddx < D))
        return BAD("layernorm_backward: bad sizes M=%lld D=%lld ldx=%lld lddy=%lld lddx=%lld",
                   (long long)M, (long long)D, (long long)ldx, (long long)lddy, (long long)lddx);
    if (dw && !w) return BAD("layernorm_backward: dw without w");
    if (M == 0 || D == 0 || (!dx && !dw && !db)) return HL_OK;
    if (!x || !dy || !saved || !saved->mean || !saved->rstd)
        return BAD("layernorm_backward: NULL input, gradient or saved statistics");
    if (dx && dx == dy && lddx != lddy)
        return BAD("layernorm_backward: dx == dy with lddx != lddy");
    if (dx && (const float *)dx == x) return BAD("layernorm_backward: dx overlaps x");
    HL_DISPATCH(layernorm_backward, M, D, x, ldx, w, saved, dy, lddy, dx, lddx, dw, db);
}

hl_status hl_layernorm_modulate(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                int64_t ldx, const float *scale, const float *shift, float eps,
                                float *y, int64_t ldy) {
    HL_NEED_BACKEND("layernorm_modulate");
    CHECK_ROWS("layernorm_modulate", M, D, x, ldx, y, ldy);
    if (!scale || !shift) return BAD("layernorm_modulate: NULL pointer");
    HL_DISPATCH(layernorm_modulate, M, D, x, ldx, scale, shift, eps, y, ldy);
}

hl_status hl_rmsnorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                     const float *w, float eps, float *y, int64_t ldy, hl_norm_saved *save) {
    HL_NEED_BACKEND("rmsnorm");
    HL_TRY(check_save(ctx, "rmsnorm", save, 0));
    CHECK_ROWS("rmsnorm", M, D, x, ldx, y, ldy);
    HL_DISPATCH(rmsnorm, M, D, x, ldx, w, eps, y, ldy, save);
}

hl_status hl_rmsnorm_backward(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                              const float *w, const hl_norm_saved *saved, const float *dy,
                              int64_t lddy, float *dx, int64_t lddx, float *dw) {
    HL_NEED_BACKEND("rmsnorm_backward");
    if (M < 0 || D < 0 || ldx < D || lddy < D || (dx && lddx < D))
        return BAD("rmsnorm_backward: bad sizes M=%lld D=%lld ldx=%lld lddy=%lld lddx=%lld",
                   (long long)M, (long long)D, (long long)ldx, (long long)lddy, (long long)lddx);
    if (dw && !w) return BAD("rmsnorm_backward: dw without w");
    if (M == 0 || D == 0 || (!dx && !dw)) return HL_OK;
    if (!x || !dy || !saved || !saved->rstd)
        return BAD("rmsnorm_backward: NULL input, gradient or saved statistics");
    if (dx && dx == dy && lddx != lddy) return BAD("rmsnorm_backward: dx == dy with lddx != lddy");
    if (dx && (const float *)dx == x) return BAD("rmsnorm_backward: dx overlaps x");
    HL_DISPATCH(rmsnorm_backward, M, D, x, ldx, w, saved, dy, lddy, dx, lddx, dw);
}

/* ---- position, element-wise ------------------------------------------------------------------ */

hl_status hl_rope(const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx,
                  const float *rope) {
    HL_NEED_BACKEND("rope");
    if (M < 0 || H < 0 || hd < 0 || ldx < (int64_t)H * hd)
        return BAD("rope: bad sizes M=%lld H=%d hd=%d ldx=%lld", (long long)M, H, hd,
                   (long long)ldx);
    if (M == 0 || H == 0 || hd < 2) return HL_OK;
    if (!x || !rope) return BAD("rope: NULL pointer");
    HL_DISPATCH(rope, M, H, hd, x, ldx, rope);
}

static hl_status check_flat(const hl_ctx *ctx, const char *op, int64_t n, int nonnull) {
    if (n < 0) return BAD("%s: n=%lld", op, (long long)n);
    if (n > 0 && !nonnull) return BAD("%s: NULL pointer", op);
    return HL_OK;
}

hl_status hl_gelu_tanh(const hl_ctx *ctx, int64_t n, const float *x, float *y) {
    HL_NEED_BACKEND("gelu_tanh");
    HL_TRY(check_flat(ctx, "gelu_tanh", n, x && y));
    if (n == 0) return HL_OK;
    HL_DISPATCH(gelu_tanh, n, x, y);
}

hl_status hl_silu(const hl_ctx *ctx, int64_t n, const float *x, float *y) {
    HL_NEED_BACKEND("silu");
    HL_TRY(check_flat(ctx, "silu", n, x && y));
    if (n == 0) return HL_OK;
    HL_DISPATCH(silu, n, x, y);
}

hl_status hl_add_gated(const hl_ctx *ctx, int64_t M, int64_t D, float *x, int64_t ldx,
                       const float *y, int64_t ldy, const float *gate) {
    HL_NEED_BACKEND("add_gated");
    CHECK_ROWS("add_gated", M, D, x, ldx, y, ldy);
    HL_DISPATCH(add_gated, M, D, x, ldx, y, ldy, gate);
}

hl_status hl_scale_heads(const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx,
                         const float *s) {
    HL_NEED_BACKEND("scale_heads");
    if (M < 0 || H < 0 || hd < 0 || ldx < (int64_t)H * hd)
        return BAD("scale_heads: bad sizes M=%lld H=%d hd=%d ldx=%lld", (long long)M, H, hd,
                   (long long)ldx);
    if (M == 0 || H == 0 || hd == 0) return HL_OK;
    if (!x || !s) return BAD("scale_heads: NULL pointer");
    HL_DISPATCH(scale_heads, M, H, hd, x, ldx, s);
}

/* ---- layout ---------------------------------------------------------------------------------- */

static hl_status check_patch(const hl_ctx *ctx, const char *op, int64_t C, int64_t T, int64_t H,
                             int64_t W, int kt, int kh, int kw, int nonnull) {
    if (C < 0 || T < 0 || H < 0 || W < 0 || kt < 1 || kh < 1 || kw < 1)
        return BAD("%s: bad sizes C=%lld T=%lld H=%lld W=%lld kernel %dx%dx%d", op, (long long)C,
                   (long long)T, (long long)H, (long long)W, kt, kh, kw);
    if (C > 0 && T > 0 && H > 0 && W > 0 && !nonnull) return BAD("%s: NULL pointer", op);
    return HL_OK;
}

hl_status hl_patchify3d(const hl_ctx *ctx, int64_t C, int64_t T, int64_t H, int64_t W, int kt,
                        int kh, int kw, const float *x, float *rows) {
    HL_NEED_BACKEND("patchify3d");
    HL_TRY(check_patch(ctx, "patchify3d", C, T, H, W, kt, kh, kw, x && rows));
    if (C == 0 || T == 0 || H == 0 || W == 0) return HL_OK;
    HL_DISPATCH(patchify3d, C, T, H, W, kt, kh, kw, x, rows);
}

hl_status hl_unpatchify3d(const hl_ctx *ctx, int64_t C, int64_t T, int64_t Hp, int64_t Wp, int kt,
                          int kh, int kw, const float *rows, float *y) {
    HL_NEED_BACKEND("unpatchify3d");
    HL_TRY(check_patch(ctx, "unpatchify3d", C, T, Hp, Wp, kt, kh, kw, rows && y));
    if (C == 0 || T == 0 || Hp == 0 || Wp == 0) return HL_OK;
    HL_DISPATCH(unpatchify3d, C, T, Hp, Wp, kt, kh, kw, rows, y);
}

/* ---- convolution / resampling (VAE) ---------------------------------------------------------- */

hl_status hl_conv3d(const hl_ctx *ctx, const hl_conv3d_shape *s, const void *x, const hl_tensor *w,
                    const hl_tensor *b, hl_conv_pack **pack, float *y) {
    HL_NEED_BACKEND("conv3d");
    hl_conv_geom g = {0};
    HL_TRY(hl_conv3d_check(ctx, s, x, w, b, y, &g));
    if (g.N == 0 || g.O == 0 || g.To <= 0 || g.Ho <= 0 || g.Wo <= 0) return HL_OK;
    HL_DISPATCH(conv3d, s, x, w, b, pack, y);
}

void hl_conv_pack_free(hl_conv_pack *p) {
    if (p) p->free_fn(p);
}

hl_status hl_channel_rmsnorm(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C, int64_t S,
                             const float *x, const float *gamma, int silu, hl_dtype y_dtype,
                             void *y) {
    HL_NEED_BACKEND("channel_rmsnorm");
    HL_TRY(check_out_dtype(ctx, "channel_rmsnorm", y_dtype));
    if (N < 0 || C < 0 || S < 0 || !layout_ok(layout))
        return BAD("channel_rmsnorm: bad sizes or layout");
    if (N == 0 || C == 0 || S == 0) return HL_OK;
    if (!x || !gamma || !y) return BAD("channel_rmsnorm: NULL pointer");
    HL_DISPATCH(channel_rmsnorm, layout, N, C, S, x, gamma, silu, y_dtype, y);
}

hl_status hl_upsample2x(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C, int64_t H,
                        int64_t W, const float *x, int64_t ldx, hl_dtype y_dtype, void *y) {
    HL_NEED_BACKEND("upsample2x");
    HL_TRY(check_out_dtype(ctx, "upsample2x", y_dtype));
    if (N < 0 || C < 0 || H < 0 || W < 0 || (layout == HL_NTHWC && ldx < C) || !layout_ok(layout))
        return BAD("upsample2x: bad sizes or layout");
    if (N == 0 || C == 0 || H == 0 || W == 0) return HL_OK;
    if (!x || !y) return BAD("upsample2x: NULL pointer");
    HL_DISPATCH(upsample2x, layout, N, C, H, W, x, ldx, y_dtype, y);
}

hl_status hl_cast(const hl_ctx *ctx, int64_t n, const float *x, hl_dtype y_dtype, void *y) {
    HL_NEED_BACKEND("cast");
    HL_TRY(check_out_dtype(ctx, "cast", y_dtype));
    HL_TRY(check_flat(ctx, "cast", n, x && y));
    if (n == 0) return HL_OK;
    HL_DISPATCH(cast, n, x, y_dtype, y);
}

hl_status hl_to_channels_last(const hl_ctx *ctx, int64_t C, int64_t T, int64_t S, const float *x,
                              int64_t x_cstride, hl_dtype y_dtype, void *y) {
    HL_NEED_BACKEND("to_channels_last");
    HL_TRY(check_out_dtype(ctx, "to_channels_last", y_dtype));
    if (C < 0 || T < 0 || S < 0 || x_cstride < T * S) return BAD("to_channels_last: bad sizes");
    if (C == 0 || T == 0 || S == 0) return HL_OK;
    if (!x || !y) return BAD("to_channels_last: NULL pointer");
    HL_DISPATCH(to_channels_last, C, T, S, x, x_cstride, y_dtype, y);
}

hl_status hl_to_channels_first(const hl_ctx *ctx, int64_t C, int64_t T, int64_t S, const float *x,
                               float lo, float hi, float *y, int64_t y_cstride) {
    HL_NEED_BACKEND("to_channels_first");
    if (C < 0 || T < 0 || S < 0 || y_cstride < T * S) return BAD("to_channels_first: bad sizes");
    if (C == 0 || T == 0 || S == 0) return HL_OK;
    if (!x || !y) return BAD("to_channels_first: NULL pointer");
    HL_DISPATCH(to_channels_first, C, T, S, x, lo, hi, y, y_cstride);
}

/* ---- VAE backward ---------------------------------------------------------------------------- */

static int bytes_overlap(const void *a, size_t na, const void *b, size_t nb) {
    const char *p = a, *q = b;
    return a && b && na && nb && p < q + nb && q < p + na;
}

hl_status hl_conv3d_backward(const hl_ctx *ctx, const hl_conv3d_shape *s, const float *x,
                             const hl_tensor *w, const float *dy, float *dx, float *dw, float *db) {
    HL_NEED_BACKEND("conv3d_backward");
    hl_conv_geom g = {0};
    /* x is read only for dw: without it, check the rest against dy's presence */
    HL_TRY(hl_conv3d_check(ctx, s, dw ? (const void *)x : (const void *)dy, w, NULL, dy, &g));
    if (s->x_dtype != HL_F32)
        return hl_fail(ctx->err, HELIOS_ERR_DTYPE, "conv3d_backward: input dtype %s (F32)",
                       hl_dtype_name(s->x_dtype));
    size_t nx = (size_t)(g.N * g.C * g.T * g.H * g.W) * sizeof(float);
    size_t ny = (size_t)(g.N * g.O * (g.To > 0 ? g.To : 0) * (g.Ho > 0 ? g.Ho : 0) *
                         (g.Wo > 0 ? g.Wo : 0)) *
                sizeof(float);
    if (dx && (bytes_overlap(dx, nx, x, nx) || bytes_overlap(dx, nx, dy, ny) ||
               bytes_overlap(dx, nx, w->data, hl_tensor_nbytes(w))))
        return BAD("conv3d_backward: dx overlaps x, dy or w");
    if (g.N == 0 || g.C == 0 || g.T == 0 || g.H == 0 || g.W == 0) return HL_OK;
    if (g.To <= 0 || g.Ho <= 0 || g.Wo <= 0) { /* no output: nothing flows back */
        if (dx) memset(dx, 0, nx);
        return HL_OK;
    }
    if (!dx && !dw && !db) return HL_OK;
    HL_DISPATCH(conv3d_backward, s, x, w, dy, dx, dw, db);
}

hl_status hl_channel_rmsnorm_backward(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,
                                      int64_t S, const float *x, const float *gamma, int silu,
                                      const float *dy, float *dx, float *dgamma) {
    HL_NEED_BACKEND("channel_rmsnorm_backward");
    if (N < 0 || C < 0 || S < 0 || !layout_ok(layout))
        return BAD("channel_rmsnorm_backward: bad sizes or layout");
    if (N == 0 || C == 0 || S == 0 || (!dx && !dgamma)) return HL_OK;
    if (!x || !gamma || !dy) return BAD("channel_rmsnorm_backward: NULL input or gradient");
    size_t n = (size_t)(N * C * S) * sizeof(float);
    if (dx && bytes_overlap(dx, n, x, n)) return BAD("channel_rmsnorm_backward: dx overlaps x");
    if (dx && dx != dy && bytes_overlap(dx, n, dy, n))
        return BAD("channel_rmsnorm_backward: dx partly overlaps dy");
    HL_DISPATCH(channel_rmsnorm_backward, layout, N, C, S, x, gamma, silu, dy, dx, dgamma);
}

hl_status hl_upsample2x_backward(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,
                                 int64_t H, int64_t W, const float *dy, float *dx, int64_t lddx) {
    HL_NEED_BACKEND("upsample2x_backward");
    if (N < 0 || C < 0 || H < 0 || W < 0 || (layout == HL_NTHWC && lddx < C) || !layout_ok(layout))
        return BAD("upsample2x_backward: bad sizes or layout");
    if (N == 0 || C == 0 || H == 0 || W == 0) return HL_OK;
    if (!dy || !dx) return BAD("upsample2x_backward: NULL pointer");
    size_t ndy = (size_t)(N * C * 4 * H * W) * sizeof(float);
    size_t ndx = (size_t)(layout == HL_NTHWC ? (N * H * W - 1) * lddx + C : N * C * H * W) *
                 sizeof(float);
    if (bytes_overlap(dx, ndx, dy, ndy)) return BAD("upsample2x_backward: dx overlaps dy");
    HL_DISPATCH(upsample2x_backward, layout, N, C, H, W, dy, dx, lddx);
}

hl_status hl_clamp_backward(const hl_ctx *ctx, int64_t n, const float *x, float lo, float hi,
                            const float *dy, float *dx) {
    HL_NEED_BACKEND("clamp_backward");
    HL_TRY(check_flat(ctx, "clamp_backward", n, x && dy && dx));
    if (n == 0) return HL_OK;
    if (dx != dy && bytes_overlap(dx, (size_t)n * sizeof(float), dy, (size_t)n * sizeof(float)))
        return BAD("clamp_backward: dx partly overlaps dy");
    HL_DISPATCH(clamp_backward, n, x, lo, hi, dy, dx);
}

/* ---- umT5 encoder ---------------------------------------------------------------------------- */

hl_status hl_gelu_tanh_mul(const hl_ctx *ctx, int64_t n, const float *x, const float *g, float *y) {
    HL_NEED_BACKEND("gelu_tanh_mul");
    HL_TRY(check_flat(ctx, "gelu_tanh_mul", n, x && g && y));
    if (n == 0) return HL_OK;
    HL_DISPATCH(gelu_tanh_mul, n, x, g, y);
}

hl_status hl_relative_bias(const hl_ctx *ctx, int H, int64_t Sq, int64_t Sk, const float *rel,
                           float *bias) {
    HL_NEED_BACKEND("relative_bias");
    if (H < 0 || Sq < 0 || Sk < 0)
        return BAD("relative_bias: H=%d Sq=%lld Sk=%lld", H, (long long)Sq, (long long)Sk);
    if (H == 0 || Sq == 0 || Sk == 0) return HL_OK;
    if (!rel || !bias) return BAD("relative_bias: NULL pointer");
    HL_DISPATCH(relative_bias, H, Sq, Sk, rel, bias);
}

/* ---- backward passes --------------------------------------------------------------------------- */

/* [a, a + n) and [b, b + m) floats overlap (both non-NULL, n, m > 0). */
static int overlaps(const float *a, int64_t n, const float *b, int64_t m) {
    return a && b && n > 0 && m > 0 && a < b + m && b < a + n;
}

/* The span in floats of M rows of width w, ld apart. */
static int64_t span(int64_t M, int64_t w, int64_t ld) { return M > 0 ? (M - 1) * ld + w : 0; }

hl_status hl_linear_backward(const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx,
                             const hl_tensor *W, const float *dy, int64_t lddy, float *dx,
                             int64_t lddx, int accumulate_dx, float *dW, float *db) {
    HL_NEED_BACKEND("linear_backward");
    if (!W || W->ndim < 1 || !W->data) return BAD("linear_backward: no weight tensor");
    if (W->dtype != HL_F32 && W->dtype != HL_BF16)
        return hl_fail(ctx->err, HELIOS_ERR_DTYPE, "linear_backward: weight dtype %s (F32, BF16)",
                       hl_dtype_name(W->dtype));
    if (!hl_tensor_is_contiguous(W)) return BAD("linear_backward: weight is not contiguous");
    int64_t N = W->shape[0], K = N ? hl_tensor_numel(W) / N : 0;
    if (M < 0 || lddy < N || (x && ldx < K) || (dx && lddx < K))
        return BAD("linear_backward: bad sizes M=%lld K=%lld N=%lld ldx=%lld lddy=%lld lddx=%lld",
                   (long long)M, (long long)K, (long long)N, (long long)ldx, (long long)lddy,
                   (long long)lddx);
    if (M == 0 || N == 0 || K == 0 || (!dx && !dW && !db)) return HL_OK;
    if (!dy || (dW && !x)) return BAD("linear_backward: NULL gradient or input");
    if (overlaps(dx, span(M, K, lddx), x, x ? span(M, K, ldx) : 0) ||
        overlaps(dx, span(M, K, lddx), dy, span(M, N, lddy)))
        return BAD("linear_backward: dx overlaps x or dy");
    HL_DISPATCH(linear_backward, M, x, ldx, W, dy, lddy, dx, lddx, accumulate_dx, dW, db);
}

hl_status hl_attention_biased_backward(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                                       const float *q, int64_t ldq, const float *k, int64_t ldk,
                                       const float *v, int64_t ldv, float scale, const float *bias,
                                       const float *key_bias, hl_dtype compute, const float *out,
                                       int64_t ldo, const float *dout, int64_t lddo, float *dq,
                                       int64_t lddq, float *dk, int64_t lddk, float *dv,
                                       int64_t lddv, float *dbias) {
    HL_NEED_BACKEND("attention_backward");
    int64_t w = (int64_t)H * hd;
    if (Sq < 0 || Sk < 1 || H < 1 || hd < 1 || ldq < w || ldk < w || ldv < w || ldo < w ||
        lddo < w || (dq && lddq < w) || (dk && lddk < w) || (dv && lddv < w))
        return BAD("attention_backward: bad sizes Sq=%lld Sk=%lld H=%d hd=%d", (long long)Sq,
                   (long long)Sk, H, hd);
    if (compute != HL_F32 && compute != HL_BF16)
        return hl_fail(ctx->err, HELIOS_ERR_DTYPE, "attention_backward: compute dtype %s",
                       hl_dtype_name(compute));
    if (dbias && !bias) return BAD("attention_backward: dbias without bias");
    if (Sq == 0) {
        /* no queries: nothing flows to the keys and values */
        for (int64_t j = 0; j < Sk; j++)
            for (int64_t i = 0; i < w; i++) {
                if (dk) dk[j * lddk + i] = 0.0f;
                if (dv) dv[j * lddv + i] = 0.0f;
            }
        return HL_OK;
    }
    if (!dq && !dk && !dv && !dbias) return HL_OK;
    if (!q || !k || !v || !out || !dout) return BAD("attention_backward: NULL input or gradient");
    const float *ins[] = {q, k, v, out, dout};
    int64_t ins_n[] = {span(Sq, w, ldq), span(Sk, w, ldk), span(Sk, w, ldv), span(Sq, w, ldo),
                       span(Sq, w, lddo)};
    float *outs[] = {dq, dk, dv};
    int64_t outs_n[] = {span(Sq, w, lddq), span(Sk, w, lddk), span(Sk, w, lddv)};
    for (int a = 0; a < 3; a++) {
        for (int b = 0; b < 5; b++)
            if (overlaps(outs[a], outs_n[a], ins[b], ins_n[b]))
                return BAD("attention_backward: a gradient overlaps an input");
        for (int b = a + 1; b < 3; b++)
            if (overlaps(outs[a], outs_n[a], outs[b], outs_n[b]))
                return BAD("attention_backward: two gradients overlap");
    }
    HL_DISPATCH(attention_biased_backward, Sq, Sk, H, hd, q, ldq, k, ldk, v, ldv, scale, bias,
                key_bias, compute, out, ldo, dout, lddo, dq, lddq, dk, lddk, dv, lddv, dbias);
}

hl_status hl_attention_backward(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                                const float *q, int64_t ldq, const float *k, int64_t ldk,
                                const float *v, int64_t ldv, float scale, hl_dtype compute,
                                const float *out, int64_t ldo, const float *dout, int64_t lddo,
                                float *dq, int64_t lddq, float *dk, int64_t lddk, float *dv,
                                int64_t lddv) {
    return hl_attention_biased_backward(ctx, Sq, Sk, H, hd, q, ldq, k, ldk, v, ldv, scale, NULL,
                                        NULL, compute, out, ldo, dout, lddo, dq, lddq, dk, lddk, dv,
                                        lddv, NULL);
}

hl_status hl_rope_backward(const hl_ctx *ctx, int64_t M, int H, int hd, float *dx, int64_t ldx,
                           const float *rope) {
    HL_NEED_BACKEND("rope_backward");
    if (M < 0 || H < 0 || hd < 0 || ldx < (int64_t)H * hd)
        return BAD("rope_backward: bad sizes M=%lld H=%d hd=%d ldx=%lld", (long long)M, H, hd,
                   (long long)ldx);
    if (M == 0 || H == 0 || hd < 2) return HL_OK;
    if (!dx || !rope) return BAD("rope_backward: NULL pointer");
    HL_DISPATCH(rope_backward, M, H, hd, dx, ldx, rope);
}

/* x and dy in, dx out, n values: dx may be dy but must not overlap x. */
static hl_status check_flat_backward(const hl_ctx *ctx, const char *op, int64_t n, const float *x,
                                     const float *dy, const float *dx) {
    HL_TRY(check_flat(ctx, op, n, x && dy && dx));
    if (overlaps(dx, n, x, n)) return BAD("%s: dx overlaps x", op);
    return HL_OK;
}

hl_status hl_gelu_tanh_backward(const hl_ctx *ctx, int64_t n, const float *x, const float *dy,
                                float *dx) {
    HL_NEED_BACKEND("gelu_tanh_backward");
    HL_TRY(check_flat_backward(ctx, "gelu_tanh_backward", n, x, dy, dx));
    if (n == 0) return HL_OK;
    HL_DISPATCH(gelu_tanh_backward, n, x, dy, dx);
}

hl_status hl_silu_backward(const hl_ctx *ctx, int64_t n, const float *x, const float *dy,
                           float *dx) {
    HL_NEED_BACKEND("silu_backward");
    HL_TRY(check_flat_backward(ctx, "silu_backward", n, x, dy, dx));
    if (n == 0) return HL_OK;
    HL_DISPATCH(silu_backward, n, x, dy, dx);
}

hl_status hl_gelu_tanh_mul_backward(const hl_ctx *ctx, int64_t n, const float *x, const float *g,
                                    const float *dy, float *dx, float *dg) {
    HL_NEED_BACKEND("gelu_tanh_mul_backward");
    HL_TRY(check_flat(ctx, "gelu_tanh_mul_backward", n, x && g && dy));
    if (n == 0 || (!dx && !dg)) return HL_OK;
    if (overlaps(dx, n, x, n) || overlaps(dx, n, g, n) || overlaps(dg, n, x, n) ||
        overlaps(dg, n, g, n) || overlaps(dx, n, dg, n))
        return BAD("gelu_tanh_mul_backward: a gradient overlaps an input or the other gradient");
    HL_DISPATCH(gelu_tanh_mul_backward, n, x, g, dy, dx, dg);
}

hl_status hl_add_gated_backward(const hl_ctx *ctx, int64_t M, int64_t D, const float *dx,
                                int64_t lddx, const float *y, int64_t ldy, const float *gate,
                                float *dy, int64_t lddy, float *dgate) {
    HL_NEED_BACKEND("add_gated_backward");
    CHECK_ROWS("add_gated_backward", M, D, dx, lddx, y, ldy);
    if (dy && lddy < D) return BAD("add_gated_backward: lddy=%lld < D", (long long)lddy);
    if (dgate && !gate) return BAD("add_gated_backward: dgate without gate");
    if (!dy && !dgate) return HL_OK;
    if (overlaps(dy, span(M, D, lddy), dx, span(M, D, lddx)) ||
        overlaps(dy, span(M, D, lddy), y, span(M, D, ldy)))
        return BAD("add_gated_backward: dy overlaps dx or y");
    HL_DISPATCH(add_gated_backward, M, D, dx, lddx, y, ldy, gate, dy, lddy, dgate);
}

hl_status hl_scale_heads_backward(const hl_ctx *ctx, int64_t M, int H, int hd, const float *x,
                                  int64_t ldx, const float *s, float *dx, int64_t lddx, float *ds) {
    HL_NEED_BACKEND("scale_heads_backward");
    int64_t w = (int64_t)H * hd;
    if (M < 0 || H < 0 || hd < 0 || lddx < w || (ds && ldx < w))
        return BAD("scale_heads_backward: bad sizes M=%lld H=%d hd=%d", (long long)M, H, hd);
    if (M == 0 || H == 0 || hd == 0) return HL_OK;
    if (!dx || !s || (ds && !x)) return BAD("scale_heads_backward: NULL pointer");
    if (ds && overlaps(dx, span(M, w, lddx), x, span(M, w, ldx)))
        return BAD("scale_heads_backward: dx overlaps x");
    HL_DISPATCH(scale_heads_backward, M, H, hd, x, ldx, s, dx, lddx, ds);
}

hl_status hl_relative_bias_backward(const hl_ctx *ctx, int H, int64_t Sq, int64_t Sk,
                                    const float *dbias, float *drel) {
    HL_NEED_BACKEND("relative_bias_backward");
    if (H < 0 || Sq < 0 || Sk < 0)
        return BAD("relative_bias_backward: H=%d Sq=%lld Sk=%lld", H, (long long)Sq, (long long)Sk);
    if (H == 0 || Sq == 0 || Sk == 0) return HL_OK;
    if (!dbias || !drel) return BAD("relative_bias_backward: NULL pointer");
    HL_DISPATCH(relative_bias_backward, H, Sq, Sk, dbias, drel);
}

hl_status hl_patchify3d_backward(const hl_ctx *ctx, int64_t C, int64_t T, int64_t H, int64_t W,
                                 int kt, int kh, int kw, const float *drows, float *dx) {
    HL_NEED_BACKEND("patchify3d_backward");
    HL_TRY(check_patch(ctx, "patchify3d_backward", C, T, H, W, kt, kh, kw, drows && dx));
    if (C == 0 || T == 0 || H == 0 || W == 0) return HL_OK;
    HL_DISPATCH(patchify3d_backward, C, T, H, W, kt, kh, kw, drows, dx);
}

hl_status hl_unpatchify3d_backward(const hl_ctx *ctx, int64_t C, int64_t T, int64_t Hp, int64_t Wp,
                                   int kt, int kh, int kw, const float *dy, float *drows) {
    HL_NEED_BACKEND("unpatchify3d_backward");
    HL_TRY(check_patch(ctx, "unpatchify3d_backward", C, T, Hp, Wp, kt, kh, kw, dy && drows));
    if (C == 0 || T == 0 || Hp == 0 || Wp == 0) return HL_OK;
    HL_DISPATCH(unpatchify3d_backward, C, T, Hp, Wp, kt, kh, kw, dy, drows);
}
