/* The per-backend entry points behind ops.h: hl_ref_<op> (src/ops/ref) and hl_cpu_<op>
 * (src/ops/cpu), each with the signature of hl_<op>. Only ops.c and the op tests use these. */
#ifndef HL_OPS_BACKENDS_H
#define HL_OPS_BACKENDS_H

#include "ops/ops.h"

#define HL_OP_DECLS(P)                                                                             \
    hl_status P##linear(const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx,                 \
                        const hl_tensor *W, const hl_tensor *b, float *y, int64_t ldy);            \
    hl_status P##attention(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,               \
                           const float *q, int64_t ldq, const float *k, int64_t ldk,               \
                           const float *v, int64_t ldv, float scale, hl_dtype compute, float *out, \
                           int64_t ldo);                                                           \
    hl_status P##attention_biased(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,        \
                                  const float *q, int64_t ldq, const float *k, int64_t ldk,        \
                                  const float *v, int64_t ldv, float scale, const float *bias,     \
                                  const float *key_bias, hl_dtype compute, float *out,             \
                                  int64_t ldo);                                                    \
    hl_status P##layernorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,   \
                           const float *w, const float *b, float eps, float *y, int64_t ldy);      \
    hl_status P##layernorm_modulate(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,       \
                                    int64_t ldx, const float *scale, const float *shift,           \
                                    float eps, float *y, int64_t ldy);                             \
    hl_status P##rmsnorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,     \
                         const float *w, float eps, float *y, int64_t ldy);                        \
    hl_status P##rope(const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx,          \
                      const float *rope);                                                          \
    hl_status P##gelu_tanh(const hl_ctx *ctx, int64_t n, const float *x, float *y);                \
    hl_status P##silu(const hl_ctx *ctx, int64_t n, const float *x, float *y);                     \
    hl_status P##add_gated(const hl_ctx *ctx, int64_t M, int64_t D, float *x, int64_t ldx,         \
                           const float *y, int64_t ldy, const float *gate);                        \
    hl_status P##scale_heads(const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx,   \
                             const float *s);                                                      \
    /* ---- convolution / resampling (VAE) ---- */                                                \
    hl_status P##conv3d(const hl_ctx *ctx, const hl_conv3d_shape *s, const void *x,                \
                        const hl_tensor *w, const hl_tensor *b, hl_conv_pack **pack, float *y);    \
    hl_status P##channel_rmsnorm(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,        \
                                 int64_t S, const float *x, const float *gamma, int silu,          \
                                 hl_dtype y_dtype, void *y);                                       \
    hl_status P##upsample2x(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C, int64_t H,  \
                            int64_t W, const float *x, int64_t ldx, hl_dtype y_dtype, void *y);    \
    hl_status P##cast(const hl_ctx *ctx, int64_t n, const float *x, hl_dtype y_dtype, void *y);    \
    hl_status P##to_channels_last(const hl_ctx *ctx, int64_t C, int64_t T, int64_t S,              \
                                  const float *x, int64_t x_cstride, hl_dtype y_dtype, void *y);   \
    hl_status P##to_channels_first(const hl_ctx *ctx, int64_t C, int64_t T, int64_t S,             \
                                   const float *x, float lo, float hi, float *y,                   \
                                   int64_t y_cstride);

HL_OP_DECLS(hl_ref_)
HL_OP_DECLS(hl_cpu_)

/* The cpu backend's packs (hl_conv3d); ref never makes one. */
void hl_cpu_conv_pack_free(hl_conv_pack *p);

/* The umT5 encoder's ops (ops.h, end). */
#define HL_OP_DECLS_UMT5(P)                                                                        \
    hl_status P##gelu_tanh_mul(const hl_ctx *ctx, int64_t n, const float *x, const float *g,       \
                               float *y);                                                          \
    hl_status P##relative_bias(const hl_ctx *ctx, int H, int64_t Sq, int64_t Sk, const float *rel, \
                               float *bias);

HL_OP_DECLS_UMT5(hl_ref_)
HL_OP_DECLS_UMT5(hl_cpu_)

#endif
