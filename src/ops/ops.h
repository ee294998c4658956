/* ops.h — every primitive the models are written over, with its shape contract.
 *
 * Model code calls hl_<op>(ctx, ...) and never names a backend. ctx->backend is a backend
 * instance (hl_backend_new): a table of the ops that backend implements plus its own state
 * (the cpu backend's oneDNN engine, streams, primitive cache and scratch buffers; a device
 * backend's stream and handles), owned by whoever made it — a session (src/session.c) owns one.
 * Two instances share nothing, so two sessions never wait on each other; one instance serialises
 * its own calls (a lock per instance).
 *
 * Backends: src/ops/ref (plain scalar C, float32 results from double sums: the oracle) and
 * src/ops/cpu (oneDNN GEMMs and convolutions, vector kernels, OpenMP). tests/test_ops.c is a
 * table of cases (op, shapes with primes and strided views, dtype, variant) crossed with the
 * list of backends in tests/test_util.c (test_backends): every backend there runs every case
 * against ref through these entry points, so a new backend is tested by adding it to that list.
 * Its gradient mode runs each forward with save then the backward, against ref's backward, and
 * checks ref's backward against finite differences of a double-precision forward.
 * tests/test_vae_ops.c runs the VAE ops (its own conv case table and per-op tests) on the same
 * backend list.
 *
 * Dispatch (src/ops/ops.c): hl_<op> checks every argument once, for all backends (a failure is
 * HELIOS_ERR_INVALID_ARG / _SHAPE / _DTYPE with a message in ctx->err), returns HL_OK when there
 * is nothing to compute, and calls the backend's table entry. An op the backend lacks, or a case
 * it reports HELIOS_ERR_UNSUPPORTED for (before writing anything), returns
 * HELIOS_ERR_UNSUPPORTED — unless the backend names a fallback (cpu names ref: both work on host
 * memory), which then runs the call after a one-time HL_WARN naming the op and the reason.
 *
 * Adding an op:
 *   1. ops.h: declare hl_<op> with its shape contract (and, with a backward, its save struct);
 *   2. ops_backends.h: one X(<op>, (params)) line in HL_OPS (the table field and the
 *      hl_<backend>_<op> declarations come from it);
 *   3. ops.c: hl_<op> = the argument check + early return + HL_DISPATCH(<op>, ...);
 *   4. per backend: hl_<backend>_<op> in one file of src/ops/<backend>, and its line in that
 *      backend's table (src/ops/<backend>/backend.c). A backend may leave it out (NULL).
 *   5. tests/test_ops.c: its cases in the table (an args struct, a runner, add_<op> calls; every
 *      backend of test_backends runs them against ref); with a backward, gradient-mode cases.
 *
 * Forward / backward pairs (training). An op with a backward, say hl_<op>, takes a trailing
 * `hl_<op>_saved *save` (or a shared save struct such as hl_norm_saved):
 *   - save == NULL: inference, the forward saves nothing and costs what it did before;
 *   - save != NULL: the forward also writes into the caller's buffers what its backward needs
 *     and cannot cheaply recompute: per-row statistics (mean, 1/std), masks (dropout), the
 *     log-sum-exp of an attention row. Buffers are caller-owned, sized as the struct says,
 *     float32, and only valid with the inputs they were computed from.
 * hl_<op>_backward(ctx, <the forward's inputs it needs>, saved, dy, ..., dx, ..., dparams) reads
 * the forward's inputs (not its output: a training caller must not run the forward in place)
 * and saved, and the incoming gradient dy; it
 *   - OVERWRITES input gradients (dx = ∂L/∂x): an input feeds one op in these models, and a
 *     residual that fans out is summed by the caller (hl_add_gated);
 *   - ACCUMULATES parameter gradients (dw += ∂L/∂w, db += ∂L/∂b): the same weight is used by
 *     every row, every call and every micro-batch, so the optimiser zeroes them once per step;
 *   - takes NULL for a gradient that is not wanted (and must for a parameter that is absent);
 *   - allows dx == dy (same leading dimension) unless noted, never dx overlapping x.
 * Pairs so far: hl_layernorm / hl_layernorm_backward, hl_rmsnorm / hl_rmsnorm_backward (both
 * backends); the backwards of the section "backward passes" at the end (both backends). Two
 * documented exceptions to "overwrite": the in-place backwards (rope, scale_heads) and
 * hl_linear_backward's accumulate_dx.
 * tests/test_ops.c (the norms) and tests/test_ops_grad.c (the rest) check them in gradient mode:
 * each backend's forward save and backward against ref's, ref's backward against finite
 * differences, and the rules above (dx overwritten, dw / db accumulated, NULL gradients,
 * dx == dy).
 *
 * Layout: activations are float32, row-major "rows x width" matrices; a row stride (ld*, in
 * elements, >= width) lets an op read or write a column slice of a wider buffer (e.g. one head
 * of a [S, H*hd] projection). In-place use is allowed where noted.
 *
 * Precision rule: a GEMM runs in the dtype its weights are stored in. With bf16 weights the cpu
 * backend rounds the activation operand to bf16 and accumulates in float32 (as PyTorch does on a
 * bf16 model) where oneDNN has bf16 kernels, and converts the weights to float32 for an f32 GEMM
 * where it has none (AVX2-only CPUs); with f32 weights it is an f32 GEMM. The ref backend always
 * computes in float32 from the exact (up-converted) weights, which is what the reference vectors'
 * `output_bf16_weights` was made with.
 */
#ifndef HL_OPS_H
#define HL_OPS_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

/* ---- backend instances and the ops context --------------------------------------------------- */

typedef struct hl_backend hl_backend;
struct hl_governor; /* core/parallel.h */

/* A new instance of backend kind (HELIOS_BACKEND_CPU or _REF) planned for nthreads threads
 * (0: OpenMP's default); NULL on failure (message in err). */
hl_backend *hl_backend_new(helios_backend kind, int nthreads, hl_error *err);
void hl_backend_free(hl_backend *be);

/* The kind and name ("cpu", "ref") of an instance. */
helios_backend hl_backend_kind(const hl_backend *be);
const char *hl_backend_name(const hl_backend *be);
/* The thread count it was made for (0: all cores). */
int hl_backend_threads(const hl_backend *be);
/* Ops on be set the thread count by g (core/parallel.h) before each outermost op; NULL: off. */
void hl_backend_govern(hl_backend *be, struct hl_governor *g);

/* One process-wide instance per kind, made on first use and freed at exit, for code that has no
 * session (tools, benchmarks, the reference-vector checks). Sessions make their own. NULL when it
 * cannot be made (the ops then fail with HELIOS_ERR_INVALID_ARG). Thread-safe. */
hl_backend *hl_backend_shared(helios_backend kind);

typedef struct hl_ctx {
    hl_backend *backend; /* the instance the ops run on */
    hl_error *err;       /* where failures are described; may be NULL */
} hl_ctx;

/* The kind of ctx's backend (HELIOS_BACKEND_REF when it has none). */
helios_backend hl_ctx_kind(const hl_ctx *ctx);

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
 * the probabilities; softmax and accumulation stay float32). ref ignores it (always float32),
 * but every backend rejects anything else. H >= 1, hd >= 1, Sk >= 1 (no keys, heads or head
 * width is HELIOS_ERR_INVALID_ARG); Sq = 0 does nothing. */
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

/* What hl_layernorm and hl_rmsnorm save for their backward (see the top): caller-owned
 * float32 arrays of M values, one per row. mean: layernorm only (NULL for rmsnorm). rstd:
 * 1/sqrt(var + eps) (layernorm) or 1/sqrt(mean(x²) + eps) (rmsnorm). */
typedef struct hl_norm_saved {
    float *mean;
    float *rstd;
} hl_norm_saved;

/* y = (x - mean) / sqrt(var + eps) · w + b over each row of width D (biased variance).
 * w, b: float32 [D] or NULL (no affine). In place allowed (y == x, ldy == ldx).
 * save: NULL, or the row statistics to write (both arrays). */
hl_status hl_layernorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                       const float *w, const float *b, float eps, float *y, int64_t ldy,
                       hl_norm_saved *save);

/* The backward of hl_layernorm, from its input x (rows ldx apart), weight w (NULL if it had
 * none), the statistics its forward saved and dy [M, D] (lddy):
 *   dx  = rstd · (g - mean(g) - x̂ · mean(g ⊙ x̂)),  g = dy ⊙ w, x̂ = (x - mean) · rstd  (overwrite)
 *   dw += Σ_rows dy ⊙ x̂,   db += Σ_rows dy                                        (accumulate)
 * dx, dw, db: NULL when not wanted (dw, db must be NULL when the forward had no w, b; a forward
 * with b but no w passes w = NULL and may still ask for db). dx == dy allowed (lddx == lddy). */
hl_status hl_layernorm_backward(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                int64_t ldx, const float *w, const hl_norm_saved *saved,
                                const float *dy, int64_t lddy, float *dx, int64_t lddx, float *dw,
                                float *db);

/* y = LN(x) · (1 + scale) + shift, LN without affine; scale, shift float32 [D] shared by all M
 * rows (adaLN modulation). In place allowed. */
hl_status hl_layernorm_modulate(const hl_ctx *ctx, int64_t M, int64_t D, const float *x,
                                int64_t ldx, const float *scale, const float *shift, float eps,
                                float *y, int64_t ldy);

/* y = x / sqrt(mean(x²) + eps) · w over each row of width D; w float32 [D] or NULL.
 * In place allowed. save: NULL, or rstd to write (save->mean is not used). */
hl_status hl_rmsnorm(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                     const float *w, float eps, float *y, int64_t ldy, hl_norm_saved *save);

/* The backward of hl_rmsnorm (conventions as hl_layernorm_backward), x̂ = x · rstd:
 *   dx  = rstd · (g - x̂ · mean(g ⊙ x̂)),  g = dy ⊙ w   (overwrite)
 *   dw += Σ_rows dy ⊙ x̂                              (accumulate) */
hl_status hl_rmsnorm_backward(const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,
                              const float *w, const hl_norm_saved *saved, const float *dy,
                              int64_t lddy, float *dx, int64_t lddx, float *dw);

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

/* ---- convolution / resampling (VAE) ------------------------------------------------------- */

/* Activation layout of the 5D ops below. The VAE runs channels-last: a channel RMS norm is then
 * a row operation, frames are contiguous (the causal cache is a copy of whole frames), and
 * oneDNN's AMX convolutions read it directly (NCTHW costs two reorders per conv, see
 * src/ops/cpu/conv.c). */
typedef enum hl_layout {
    HL_NCTHW = 0, /* channels first, (N, C, T, H, W): PyTorch's order */
    HL_NTHWC = 1, /* channels last, (N, T, H, W, C) */
} hl_layout;

/* Geometry of one Conv3d call. Padding is zero padding per side, as F.pad then a padding-free
 * conv: a causal time pad (2 frames in front) or the (0, 1, 0, 1) of a strided downsample are
 * both expressible. A Conv2d applied per frame is the kt = 1 case (weight [O, C, kh, kw]). */
typedef struct hl_conv3d_shape {
    hl_layout layout;      /* of x and y */
    hl_dtype x_dtype;      /* HL_F32 or HL_BF16 */
    int64_t N, C, T, H, W; /* x */
    int stride[3];         /* (t, h, w), >= 1 */
    int pad[6];            /* front, back, top, bottom, left, right, >= 0 */
    int accumulate;        /* 1: y += conv(x) + b (y holds a residual); 0: y = conv(x) + b */
} hl_conv3d_shape;

/* Output length of one axis: floor((n + lo + hi - k) / stride) + 1 (<= 0: empty). */
static inline int64_t hl_conv_out_len(int64_t n, int64_t k, int stride, int lo, int hi) {
    int64_t span = n + lo + hi - k;
    return span < 0 ? 0 : span / stride + 1;
}

/* A conv weight kept in a backend's preferred layout between calls (the cpu backend reorders a
 * [O, C, kt, kh, kw] weight into oneDNN's blocked layout: as slow as the conv itself for a
 * one-frame 32x32 chunk). The model owns one per conv weight, starting NULL, and frees it with
 * hl_conv_pack_free; it is only valid while that weight's data is unchanged. */
typedef struct hl_conv_pack hl_conv_pack;
void hl_conv_pack_free(hl_conv_pack *p);

/* y = Conv3d(x, w) + b, in the precision of w (precision rule above: bf16 weights round x to
 * bf16 on the cpu backend, f32 weights give an f32 conv; ref always sums exactly in double).
 *   w: F32 or BF16 [O, C, kt, kh, kw] or [O, C, kh, kw], contiguous (PyTorch's layout);
 *   b: F32 or BF16 [O] or NULL;
 *   y: float32 (N, O, To, Ho, Wo) in s->layout, To = hl_conv_out_len(T, kt, ...) etc.;
 *   pack: NULL (no reuse) or the address of the weight's pack (created on first use).
 * x and y must not overlap. */
hl_status hl_conv3d(const hl_ctx *ctx, const hl_conv3d_shape *s, const void *x, const hl_tensor *w,
                    const hl_tensor *b, hl_conv_pack **pack, float *y);

/* Wan RMS norm over the channels (F.normalize then · √C · γ), optionally followed by SiLU:
 *   y = x / max(‖x‖₂, 1e-12) · √C · gamma[c]      (‖·‖ over the C channels of one position)
 * x float32 (N, C, S) for HL_NCTHW or (N, S, C) for HL_NTHWC (S = T·H·W positions); gamma
 * float32 [C]; y in y_dtype (F32 or BF16), same layout. In place allowed when y_dtype is F32. */
hl_status hl_channel_rmsnorm(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C, int64_t S,
                             const float *x, const float *gamma, int silu, hl_dtype y_dtype,
                             void *y);

/* Nearest ×2 upsampling in height and width (nearest-exact: y[2i+a, 2j+b] = x[i, j]) of N
 * images of C channels:
 *   HL_NTHWC: x pixel (n, i, j) at x + ((n·H + i)·W + j)·ldx, C values (ldx >= C lets one read
 *             a channel slice of a wider tensor); y (N, 2H, 2W, C) dense;
 *   HL_NCTHW: x (N, C, H, W) dense (ldx ignored); y (N, C, 2H, 2W).
 * y in y_dtype (F32 or BF16). */
hl_status hl_upsample2x(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C, int64_t H,
                        int64_t W, const float *x, int64_t ldx, hl_dtype y_dtype, void *y);

/* ---- VAE backward (training) --------------------------------------------------------------- */

/* The backward of hl_conv3d for the same geometry s (s->accumulate is ignored: dy is the gradient
 * of y either way; s->x_dtype must be F32), w F32 or BF16, in the precision of w as the forward
 * (bf16 weights: the cpu backend rounds dy and, for dw, x to bf16 and sums in float32 where
 * oneDNN has bf16 kernels, else reads w as float32; ref always reads w as float32):
 *   dx  = ∂L/∂x: float32 (N, C, T, H, W) in s->layout; positions the conv never reads (cut off
 *         by the stride) get 0                                                  (overwrite)
 *   dw += Σ dy ⊗ x over the output positions: float32 [O, C, kt, kh, kw]         (accumulate)
 *   db += Σ dy over (n, t, h, w): float32 [O]                                   (accumulate)
 * x: the forward's input (read only for dw; may be NULL without dw); dy: (N, O, To, Ho, Wo) in
 * s->layout. Any of dx, dw, db may be NULL. dx must not overlap x, dy or w. */
hl_status hl_conv3d_backward(const hl_ctx *ctx, const hl_conv3d_shape *s, const float *x,
                             const hl_tensor *w, const float *dy, float *dx, float *dw, float *db);

/* The backward of hl_channel_rmsnorm (float32 output), from its input x; the forward saves
 * nothing: the norm of a position (C values) is recomputed from x here. With x̂ = x / n,
 * n = max(‖x‖₂, 1e-12), u = x̂ · √C · gamma and g = dy (silu = 0) or dy · silu'(u) (silu = 1):
 *   dx      = (√C · gamma ⊙ g - x̂ · ⟨x̂, √C · gamma ⊙ g⟩) / n   (‖x‖ <= 1e-12: no x̂ term)
 *                                                                              (overwrite)
 *   dgamma += Σ_positions g ⊙ x̂ · √C                                           (accumulate)
 * x, dy, dx: float32 in layout ((N, C, S) or (N, S, C)); dgamma float32 [C] or NULL; dx NULL
 * when not wanted. dx == dy allowed; dx must not overlap x. */
hl_status hl_channel_rmsnorm_backward(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,
                                      int64_t S, const float *x, const float *gamma, int silu,
                                      const float *dy, float *dx, float *dgamma);

/* The backward of hl_upsample2x: each input pixel gets the sum of its 2x2 output block,
 *   dx[i, j] = dy[2i, 2j] + dy[2i, 2j+1] + dy[2i+1, 2j] + dy[2i+1, 2j+1]          (overwrite)
 * dy float32 (N, 2H, 2W, C) (HL_NTHWC) or (N, C, 2H, 2W) (HL_NCTHW), dense; dx in the forward's
 * x layout: HL_NTHWC pixel (n, i, j) at dx + ((n·H + i)·W + j)·lddx (C values written, the rest
 * of a wider row untouched), HL_NCTHW (N, C, H, W) dense (lddx ignored). dx must not overlap dy. */
hl_status hl_upsample2x_backward(const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C,
                                 int64_t H, int64_t W, const float *dy, float *dx, int64_t lddx);

/* The backward of y = min(max(x, lo), hi) as torch.clamp defines it: the gradient passes where
 * lo <= x <= hi (both bounds inclusive) and is 0 elsewhere (and for NaN x):
 *   dx[i] = lo <= x[i] <= hi ? dy[i] : 0,  n values                            (overwrite)
 * x is the value before the clamp. dx == dy allowed. */
hl_status hl_clamp_backward(const hl_ctx *ctx, int64_t n, const float *x, float lo, float hi,
                            const float *dy, float *dx);

/* y = x converted to y_dtype (F32: a copy; BF16: round to nearest even), n values. */
hl_status hl_cast(const hl_ctx *ctx, int64_t n, const float *x, hl_dtype y_dtype, void *y);

/* Channels-first to channels-last: y[t, s, c] = x[c·x_cstride + t·S + s] for C channels of T
 * frames of S positions (x_cstride >= T·S: T frames out of a longer clip); y dense in y_dtype. */
hl_status hl_to_channels_last(const hl_ctx *ctx, int64_t C, int64_t T, int64_t S, const float *x,
                              int64_t x_cstride, hl_dtype y_dtype, void *y);

/* Channels-last to channels-first with a clamp: y[c·y_cstride + t·S + s] =
 * min(max(x[(t·S + s)·C + c], lo), hi) (pass -INFINITY, INFINITY for none). */
hl_status hl_to_channels_first(const hl_ctx *ctx, int64_t C, int64_t T, int64_t S, const float *x,
                               float lo, float hi, float *y, int64_t y_cstride);

/* ---- umT5 encoder --------------------------------------------------------------------------- */

/* y = gelu_tanh(x) ⊙ g, n elements: the gated-GELU FFN activation (T5: gelu(wi_0·x) ⊙ wi_1·x)
 * in one pass; in place allowed (y == x or y == g). */
hl_status hl_gelu_tanh_mul(const hl_ctx *ctx, int64_t n, const float *x, const float *g, float *y);

/* Expands a relative-position table into the dense bias of hl_attention_biased:
 *   bias[h, i, j] = rel[h·(Sq + Sk - 1) + (j - i) + (Sq - 1)]
 * rel: float32 [H, Sq + Sk - 1], one value per head and key-query offset j - i from -(Sq - 1)
 * to Sk - 1 (T5's bucketed relative attention bias, looked up once per offset); bias float32
 * [H, Sq, Sk]. */
hl_status hl_relative_bias(const hl_ctx *ctx, int H, int64_t Sq, int64_t Sk, const float *rel,
                           float *bias);

/* ---- backward passes (training; conventions at the top) ------------------------------------ */

/* The backward of hl_linear (y = x·Wᵀ + b), from its input x [M, K] (ldx), W [N, K] (F32 or
 * BF16, used as stored) and dy [M, N] (lddy):
 *   dx  = dy·W          [M, K] (lddx): overwritten, or added to dx when accumulate_dx is set
 *                        (an input that feeds several linears, e.g. q, k, v from one norm)
 *   dW += dyᵀ·x         float32 [N, K] (accumulate)
 *   db += Σ_rows dy     float32 [N]    (accumulate)
 * Any of dx, dW, db may be NULL. dx must not overlap x or dy. The GEMMs run in W's dtype as the
 * forward's (the precision rule at the top): with bf16 weights the cpu backend rounds dy (and,
 * for dW, x) to bf16 and accumulates in float32; dW and db stay float32. */
hl_status hl_linear_backward(const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx,
                             const hl_tensor *W, const float *dy, int64_t lddy, float *dx,
                             int64_t lddx, int accumulate_dx, float *dW, float *db);

/* The backward of hl_attention_biased, from its inputs, its output `out` (ldo) and dout (lddo).
 * Per head, with P = softmax(scores) recomputed and D_i = Σ_d dout[i, d]·out[i, d]:
 *   dS = P ⊙ (dout·vᵀ - D),  dq = scale·dS·k,  dk = scale·dSᵀ·q,  dv = Pᵀ·dout   (overwrite)
 *   dbias[h, i, j] += dS[i, j]                                          (accumulate, or NULL)
 * dq, dk, dv: [Sq|Sk, H·hd] with their own strides, each may be NULL; none may overlap an input.
 * compute as the forward's (ref computes in float32 from double sums either way; the cpu
 * backend rounds the operands of its matmuls to bf16 for HL_BF16, as the forward rounds q, k, v
 * and the probabilities, and forms the softmax, dS and D in float32). */
hl_status hl_attention_biased_backward(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                                       const float *q, int64_t ldq, const float *k, int64_t ldk,
                                       const float *v, int64_t ldv, float scale, const float *bias,
                                       const float *key_bias, hl_dtype compute, const float *out,
                                       int64_t ldo, const float *dout, int64_t lddo, float *dq,
                                       int64_t lddq, float *dk, int64_t lddk, float *dv,
                                       int64_t lddv, float *dbias);

/* hl_attention_biased_backward without biases: the backward of hl_attention. */
hl_status hl_attention_backward(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                                const float *q, int64_t ldq, const float *k, int64_t ldk,
                                const float *v, int64_t ldv, float scale, hl_dtype compute,
                                const float *out, int64_t ldo, const float *dout, int64_t lddo,
                                float *dq, int64_t lddq, float *dk, int64_t lddk, float *dv,
                                int64_t lddv);

/* The backward of hl_rope, in place on dx (M rows of H heads, ldx): the inverse rotation
 *   (d[2j], d[2j+1]) <- (d[2j]·c_j + d[2j+1]·s_j,  -d[2j]·s_j + d[2j+1]·c_j). */
hl_status hl_rope_backward(const hl_ctx *ctx, int64_t M, int H, int hd, float *dx, int64_t ldx,
                           const float *rope);

/* dx = dy ⊙ f'(x), n elements, for f = gelu_tanh / silu; dx == dy allowed. */
hl_status hl_gelu_tanh_backward(const hl_ctx *ctx, int64_t n, const float *x, const float *dy,
                                float *dx);
hl_status hl_silu_backward(const hl_ctx *ctx, int64_t n, const float *x, const float *dy,
                           float *dx);

/* The backward of hl_gelu_tanh_mul (y = gelu_tanh(x) ⊙ g): dx = dy ⊙ g ⊙ gelu'(x),
 * dg = dy ⊙ gelu(x) (both overwrite; either may be NULL; dx or dg may be dy). */
hl_status hl_gelu_tanh_mul_backward(const hl_ctx *ctx, int64_t n, const float *x, const float *g,
                                    const float *dy, float *dx, float *dg);

/* The backward of hl_add_gated (x += gate ⊙ y) for the y branch, from the residual's gradient
 * dx [M, D] (ldx) and the forward's y (ldy): dy = gate ⊙ dx (overwrite; gate NULL = 1),
 * dgate += Σ_rows dx ⊙ y (accumulate; NULL: not wanted, must be NULL when gate is). The
 * residual's own gradient passes through unchanged. dy may be NULL. */
hl_status hl_add_gated_backward(const hl_ctx *ctx, int64_t M, int64_t D, const float *dx,
                                int64_t lddx, const float *y, int64_t ldy, const float *gate,
                                float *dy, int64_t lddy, float *dgate);

/* The backward of hl_scale_heads (x_out = x_in · s[h]), in place on dx: ds[h] += Σ dx ⊙ x_in
 * over the head's values (accumulate, NULL: not wanted) using the forward's input x (ldx), then
 * dx *= s[h]. */
hl_status hl_scale_heads_backward(const hl_ctx *ctx, int64_t M, int H, int hd, const float *x,
                                  int64_t ldx, const float *s, float *dx, int64_t lddx, float *ds);

/* The backward of hl_relative_bias: drel[h, (j - i) + Sq - 1] += dbias[h, i, j] (accumulate). */
hl_status hl_relative_bias_backward(const hl_ctx *ctx, int H, int64_t Sq, int64_t Sk,
                                    const float *dbias, float *drel);

/* The backward of hl_patchify3d: dx (C, T, H, W) = the sum of every row value that was read from
 * each position (replicate padding folds the padded copies onto the last index). Overwrites. */
hl_status hl_patchify3d_backward(const hl_ctx *ctx, int64_t C, int64_t T, int64_t H, int64_t W,
                                 int kt, int kh, int kw, const float *drows, float *dx);

/* The backward of hl_unpatchify3d (a permutation): drows from dy, same shapes. Overwrites. */
hl_status hl_unpatchify3d_backward(const hl_ctx *ctx, int64_t C, int64_t T, int64_t Hp, int64_t Wp,
                                   int kt, int kh, int kw, const float *dy, float *drows);

#endif
