/* Placeholder cpu backend: forwards to ref until the optimized kernels land (one file per op
 * family replaces its lines here). */
#include "ops/ops_backends.h"

hl_status hl_cpu_linear(const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx,
                        const hl_tensor *W, const hl_tensor *b, float *y, int64_t ldy) {
    return hl_ref_linear(ctx, M, x, ldx, W, b, y, ldy);
}
hl_status hl_cpu_attention(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                           const float *q, int64_t ldq, const float *k, int64_t ldk,
                           const float *v, int64_t ldv, float scale, hl_dtype compute, float *out,
                           int64_t ldo) {
    return hl_ref_attention(ctx, Sq, Sk, H, hd, q, ldq, k, ldk, v, ldv, scale, compute, out, ldo);
}
hl_status hl_cpu_layernorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                           const float *w, const float *b, float eps, float *y, int64_t ldy) {
    return hl_ref_layernorm(ctx, M, D, x, ldx, w, b, eps, y, ldy);
}
hl_status hl_cpu_layernorm_modulate(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                    int64_t ldx, const float *scale, const float *shift, float eps,
                                    float *y, int64_t ldy) {
    return hl_ref_layernorm_modulate(ctx, M, D, x, ldx, scale, shift, eps, y, ldy);
}
hl_status hl_cpu_rmsnorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                         const float *w, float eps, float *y, int64_t ldy) {
    return hl_ref_rmsnorm(ctx, M, D, x, ldx, w, eps, y, ldy);
}
hl_status hl_cpu_rope(const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx,
                      const float *rope) {
    return hl_ref_rope(ctx, M, H, hd, x, ldx, rope);
}
hl_status hl_cpu_gelu_tanh(const hl_ctx *ctx, int64_t n, const float *x, float *y) {
    return hl_ref_gelu_tanh(ctx, n, x, y);
}
hl_status hl_cpu_silu(const hl_ctx *ctx, int64_t n, const float *x, float *y) {
    return hl_ref_silu(ctx, n, x, y);
}
hl_status hl_cpu_add_gated(const hl_ctx *ctx, int64_t M, int64_t D, float *x, int64_t ldx,
                           const float *y, int64_t ldy, const float *gate) {
    return hl_ref_add_gated(ctx, M, D, x, ldx, y, ldy, gate);
}
hl_status hl_cpu_scale_heads(const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx,
                             const float *s) {
    return hl_ref_scale_heads(ctx, M, H, hd, x, ldx, s);
}
