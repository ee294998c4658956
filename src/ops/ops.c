/* Backend dispatch: one switch per op. Layout ops (patchify) have one implementation. */
#include "ops/ops_backends.h"

#define HL_DISPATCH(op, ...)                                                   \
    return ctx->backend == HELIOS_BACKEND_REF ? hl_ref_##op(ctx, __VA_ARGS__) \
                                              : hl_cpu_##op(ctx, __VA_ARGS__)

hl_status hl_linear(const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx, const hl_tensor *W,
                    const hl_tensor *b, float *y, int64_t ldy) {
    HL_DISPATCH(linear, M, x, ldx, W, b, y, ldy);
}

hl_status hl_attention(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd, const float *q,
                       int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                       float scale, hl_dtype compute, float *out, int64_t ldo) {
    HL_DISPATCH(attention, Sq, Sk, H, hd, q, ldq, k, ldk, v, ldv, scale, compute, out, ldo);
}

hl_status hl_attention_biased(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                              const float *q, int64_t ldq, const float *k, int64_t ldk,
                              const float *v, int64_t ldv, float scale, const float *bias,
                              const float *key_bias, hl_dtype compute, float *out, int64_t ldo) {
    HL_DISPATCH(attention_biased, Sq, Sk, H, hd, q, ldq, k, ldk, v, ldv, scale, bias, key_bias, compute,
                out, ldo);
}

hl_status hl_layernorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                       const float *w, const float *b, float eps, float *y, int64_t ldy) {
    HL_DISPATCH(layernorm, M, D, x, ldx, w, b, eps, y, ldy);
}

hl_status hl_layernorm_modulate(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                int64_t ldx, const float *scale, const float *shift, float eps,
                                float *y, int64_t ldy) {
    HL_DISPATCH(layernorm_modulate, M, D, x, ldx, scale, shift, eps, y, ldy);
}

hl_status hl_rmsnorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                     const float *w, float eps, float *y, int64_t ldy) {
    HL_DISPATCH(rmsnorm, M, D, x, ldx, w, eps, y, ldy);
}

hl_status hl_rope(const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx,
                  const float *rope) {
    HL_DISPATCH(rope, M, H, hd, x, ldx, rope);
}

hl_status hl_gelu_tanh(const hl_ctx *ctx, int64_t n, const float *x, float *y) {
    HL_DISPATCH(gelu_tanh, n, x, y);
}

hl_status hl_silu(const hl_ctx *ctx, int64_t n, const float *x, float *y) {
    HL_DISPATCH(silu, n, x, y);
}

hl_status hl_add_gated(const hl_ctx *ctx, int64_t M, int64_t D, float *x, int64_t ldx,
                       const float *y, int64_t ldy, const float *gate) {
    HL_DISPATCH(add_gated, M, D, x, ldx, y, ldy, gate);
}

hl_status hl_scale_heads(const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx,
                         const float *s) {
    HL_DISPATCH(scale_heads, M, H, hd, x, ldx, s);
}

/* ---- convolution / resampling (VAE) ------------------------------------------------------- */

hl_status hl_conv3d(const hl_ctx *ctx, const hl_conv3d_shape *s, const void *x,
                    const hl_tensor *w, const hl_tensor *b, hl_conv_pack **pack, float *y) {
    HL_DISPATCH(conv3d, s, x, w, b, pack, y);
}

void hl_conv_pack_free(hl_conv_pack *p) { hl_cpu_conv_pack_free(p); }

hl_status hl_channel_rmsnorm(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,
                             int64_t S, const float *x, const float *gamma, int silu,
                             hl_dtype y_dtype, void *y) {
    HL_DISPATCH(channel_rmsnorm, layout, N, C, S, x, gamma, silu, y_dtype, y);
}

hl_status hl_upsample2x(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C, int64_t H,
                        int64_t W, const float *x, int64_t ldx, hl_dtype y_dtype, void *y) {
    HL_DISPATCH(upsample2x, layout, N, C, H, W, x, ldx, y_dtype, y);
}

hl_status hl_cast(const hl_ctx *ctx, int64_t n, const float *x, hl_dtype y_dtype, void *y) {
    HL_DISPATCH(cast, n, x, y_dtype, y);
}

hl_status hl_to_channels_last(const hl_ctx *ctx, int64_t C, int64_t T, int64_t S, const float *x,
                              int64_t x_cstride, hl_dtype y_dtype, void *y) {
    HL_DISPATCH(to_channels_last, C, T, S, x, x_cstride, y_dtype, y);
}

hl_status hl_to_channels_first(const hl_ctx *ctx, int64_t C, int64_t T, int64_t S,
                               const float *x, float lo, float hi, float *y, int64_t y_cstride) {
    HL_DISPATCH(to_channels_first, C, T, S, x, lo, hi, y, y_cstride);
}

/* ---- umT5 encoder --------------------------------------------------------------------------- */

hl_status hl_gelu_tanh_mul(const hl_ctx *ctx, int64_t n, const float *x, const float *g,
                           float *y) {
    HL_DISPATCH(gelu_tanh_mul, n, x, g, y);
}

hl_status hl_relative_bias(const hl_ctx *ctx, int H, int64_t Sq, int64_t Sk, const float *rel,
                           float *bias) {
    HL_DISPATCH(relative_bias, H, Sq, Sk, rel, bias);
}
