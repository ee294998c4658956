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
                             const float *s);

HL_OP_DECLS(hl_ref_)
HL_OP_DECLS(hl_cpu_)

#endif
