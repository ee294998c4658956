/* ops.h — every primitive the models are written over, with its shape contract.
 *
 * Model code calls hl_<op>(ctx, ...) and never names a backend; ctx->backend picks the
 * implementation: src/ops/ref (plain scalar float32, the oracle) or src/ops/cpu (oneDNN GEMMs,
 * AVX-512 kernels, OpenMP). Each op here has hl_ref_<op> and hl_cpu_<op> with the same
 * signature; tests/test_ops.c compares them on odd and realistic shapes. A backward partner of an
 * op is named hl_<op>_backward and sits in the same file.
 *
 * Layout: activations are float32, row-major "rows x width" matrices; a row stride (ld*, in
 * elements, >= width) lets an op read or write a column slice of a wider buffer (e.g. one head
 * of a [S, H*hd] projection). In-place use is allowed where noted.
 *
 * Precision rule: a GEMM runs in the dtype its weights are stored in. With bf16 weights the cpu
 * backend rounds the activation operand to bf16 and accumulates in float32 (as PyTorch does on a
 * bf16 model); with f32 weights it is an f32 GEMM. The ref backend always computes in float32
 * from the exact (up-converted) weights, which is what the reference vectors' `output_bf16_weights`
 * was made with.
 */
#ifndef HL_OPS_H
#define HL_OPS_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef struct hl_ctx {
    helios_backend backend;
    hl_error *err; /* where failures are described; may be NULL */
} hl_ctx;

/* ---- GEMM ---------------------------------------------------------------------------------- */

/* y[M, N] = x[M, K] · W[N, K]ᵀ + b[N]
 *   W: F32 or BF16 tensor, contiguous, shape[0] = N, the remaining dims flatten to K
 *      (a Linear weight [N, K] or a Conv3d weight [N, C, kt, kh, kw] with K = C·kt·kh·kw).
 *   b: F32 or BF16 [N], or NULL.   x rows ldx apart (>= K), y rows ldy apart (>= N).
 *   x and y must not overlap. */
hl_status hl_linear(const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx, const hl_tensor *W,
                    const hl_tensor *b, float *y, int64_t ldy);

/* ---- attention ----------------------------------------------------------------------------- */

/* For each head h (H heads of width hd), over Sq queries and Sk keys, no mask:
 *   out[:, h·hd:(h+1)·hd] = softmax(scale · q_h k_hᵀ) v_h
 * q is [Sq, H·hd] with rows ldq apart, k and v [Sk, H·hd] (ldk, ldv), out [Sq, H·hd] (ldo).
 * compute = HL_F32 or HL_BF16: the dtype of the two matrix products (bf16 rounds q, k, v and
 * the probabilities; softmax and accumulation stay float32). ref ignores it (always float32). */
hl_status hl_attention(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd, const float *q,
                       int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                       float scale, hl_dtype compute, float *out, int64_t ldo);

/* hl_attention with additive terms before the softmax (T5-style relative position bias):
 *   scores_h[i, j] = scale · q_h[i]·k_h[j] + bias[h, i, j] + key_bias[j]
 * bias: float32 [H, Sq, Sk] or NULL; key_bias: float32 [Sk] or NULL (a padding mask: 0 for real
 * keys, -FLT_MAX for masked ones). The softmax is float32 with the row maximum subtracted. */
hl_status hl_attention_biased(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                              const float *q, int64_t ldq, const float *k, int64_t ldk,
                              const float *v, int64_t ldv, float scale, const float *bias,
                              const float *key_bias, hl_dtype compute, float *out, int64_t ldo);

/* ---- normalisation ------------------------------------------------------------------------- */

/* y = (x - mean) / sqrt(var + eps) · w + b over each row of width D (biased variance).
 * w, b: float32 [D] or NULL (no affine). In place allowed (y == x, ldy == ldx). */
hl_status hl_layernorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                       const float *w, const float *b, float eps, float *y, int64_t ldy);

/* y = LN(x) · (1 + scale) + shift, LN without affine; scale, shift float32 [D] shared by all M
 * rows (adaLN modulation). In place allowed. */
hl_status hl_layernorm_modulate(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                int64_t ldx, const float *scale, const float *shift, float eps,
                                float *y, int64_t ldy);

/* y = x / sqrt(mean(x²) + eps) · w over each row of width D; w float32 [D] or NULL.
 * In place allowed. */
hl_status hl_rmsnorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                     const float *w, float eps, float *y, int64_t ldy);

/* ---- position ------------------------------------------------------------------------------ */

/* Rotary embedding with interleaved pairs, in place, on M rows of H heads of width hd:
 *   (x[2j], x[2j+1]) <- (x[2j]·c_j - x[2j+1]·s_j,  x[2j]·s_j + x[2j+1]·c_j),  j < hd/2,
 * the same for every head. rope is [M, hd]: row m = (c_0..c_{hd/2-1}, s_0..s_{hd/2-1}). */
hl_status hl_rope(const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx,
                  const float *rope);

/* ---- element-wise -------------------------------------------------------------------------- */

/* y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), n elements; in place allowed. */
hl_status hl_gelu_tanh(const hl_ctx *ctx, int64_t n, const float *x, float *y);

/* y = x · sigmoid(x), n elements; in place allowed. */
hl_status hl_silu(const hl_ctx *ctx, int64_t n, const float *x, float *y);

/* x[m, :] += gate ⊙ y[m, :] over M rows of width D; gate float32 [D] or NULL (= 1).
 * The residual add of a transformer block. */
hl_status hl_add_gated(const hl_ctx *ctx, int64_t M, int64_t D, float *x, int64_t ldx,
                       const float *y, int64_t ldy, const float *gate);

/* x[m, h·hd + i] *= s[h] for M rows of H heads of width hd (per-head scaling). */
hl_status hl_scale_heads(const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx,
                         const float *s);

/* ---- layout -------------------------------------------------------------------------------- */

/* Patchify for a Conv3d whose stride equals its kernel (kt, kh, kw): x (C, T, H, W) contiguous is
 * replicate-padded at the end of each axis to multiples of the kernel, and each output position
 * (t', y', x') in row-major order becomes one row of C·kt·kh·kw values in (c, kt, kh, kw) order —
 * the Conv3d weight's input order, so the conv is hl_linear over these rows.
 * rows: [T'·H'·W', C·kt·kh·kw] with T' = ceil(T/kt) etc. */
hl_status hl_patchify3d(const hl_ctx *ctx, int64_t C, int64_t T, int64_t H, int64_t W, int kt,
                        int kh, int kw, const float *x, float *rows);

/* The inverse layout of the output head: rows [T·H'·W', kt·kh·kw·C] with features ordered
 * (pt, ph, pw, c) -> y (C, T·kt, H'·kh, W'·kw):
 *   y[c, t·kt+pt, h·kh+ph, w·kw+pw] = rows[(t·H'+h)·W'+w, ((pt·kh+ph)·kw+pw)·C + c]. */
hl_status hl_unpatchify3d(const hl_ctx *ctx, int64_t C, int64_t T, int64_t Hp, int64_t Wp, int kt,
                          int kh, int kw, const float *rows, float *y);

#endif
