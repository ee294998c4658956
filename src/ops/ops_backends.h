/* The backend object behind ops.h: the table of ops a backend implements, and the instance
 * (table + the backend's own state) that an hl_ctx points to.
 *
 * Only ops.c, the backends (src/ops/<backend>) and the op tests include this. Model code sees
 * hl_backend as an opaque type (ops.h).
 *
 * Contract of a table entry. ops.c has validated every argument (ops.c: one check per op, shared
 * by all backends) and returned early when there is nothing to compute, so an entry only sees
 * well-formed, non-empty calls. An entry may return HELIOS_ERR_UNSUPPORTED (with a message
 * saying why) only before writing any output; ops.c then runs the table's fallback, if it has
 * one, with a one-time warning naming the op and the reason, else returns the status. A NULL
 * entry is an op the backend lacks: the same, without the call. */
#ifndef HL_OPS_BACKENDS_H
#define HL_OPS_BACKENDS_H

#include "core/parallel.h"
#include "ops/ops.h"

/* Every op of the table with its parameter list (the signature of hl_<op> in ops.h, or for
 * layernorm/rmsnorm the forward with its save pointer). One line per op: it declares the table
 * field and each backend's hl_<backend>_<op>. */
#define HL_OPS(X)                                                                                  \
    X(linear, (const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx, const hl_tensor *W,      \
               const hl_tensor *b, float *y, int64_t ldy))                                         \
    X(attention_biased,                                                                            \
      (const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd, const float *q, int64_t ldq,      \
       const float *k, int64_t ldk, const float *v, int64_t ldv, float scale, const float *bias,   \
       const float *key_bias, hl_dtype compute, float *out, int64_t ldo))                          \
    X(layernorm,                                                                                   \
      (const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx, const float *w,       \
       const float *b, float eps, float *y, int64_t ldy, hl_norm_saved *save))                     \
    X(layernorm_backward, (const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,   \
                           const float *w, const hl_norm_saved *saved, const float *dy,            \
                           int64_t lddy, float *dx, int64_t lddx, float *dw, float *db))           \
    X(layernorm_modulate,                                                                          \
      (const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx, const float *scale,   \
       const float *shift, float eps, float *y, int64_t ldy))                                      \
    X(rmsnorm, (const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,              \
                const float *w, float eps, float *y, int64_t ldy, hl_norm_saved *save))            \
    X(rmsnorm_backward, (const hl_ctx *ctx, int64_t M, int64_t D, const float *x, int64_t ldx,     \
                         const float *w, const hl_norm_saved *saved, const float *dy,              \
                         int64_t lddy, float *dx, int64_t lddx, float *dw))                        \
    X(rope,                                                                                        \
      (const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx, const float *rope))     \
    X(gelu_tanh, (const hl_ctx *ctx, int64_t n, const float *x, float *y))                         \
    X(silu, (const hl_ctx *ctx, int64_t n, const float *x, float *y))                              \
    X(add_gated, (const hl_ctx *ctx, int64_t M, int64_t D, float *x, int64_t ldx, const float *y,  \
                  int64_t ldy, const float *gate))                                                 \
    X(scale_heads,                                                                                 \
      (const hl_ctx *ctx, int64_t M, int H, int hd, float *x, int64_t ldx, const float *s))        \
    X(patchify3d, (const hl_ctx *ctx, int64_t C, int64_t T, int64_t H, int64_t W, int kt, int kh,  \
                   int kw, const float *x, float *rows))                                           \
    X(unpatchify3d, (const hl_ctx *ctx, int64_t C, int64_t T, int64_t Hp, int64_t Wp, int kt,      \
                     int kh, int kw, const float *rows, float *y))                                 \
    X(conv3d, (const hl_ctx *ctx, const hl_conv3d_shape *s, const void *x, const hl_tensor *w,     \
               const hl_tensor *b, hl_conv_pack **pack, float *y))                                 \
    X(channel_rmsnorm, (const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C, int64_t S,      \
                        const float *x, const float *gamma, int silu, hl_dtype y_dtype, void *y))  \
    X(upsample2x, (const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C, int64_t H,           \
                   int64_t W, const float *x, int64_t ldx, hl_dtype y_dtype, void *y))             \
    X(cast, (const hl_ctx *ctx, int64_t n, const float *x, hl_dtype y_dtype, void *y))             \
    X(to_channels_last, (const hl_ctx *ctx, int64_t C, int64_t T, int64_t S, const float *x,       \
                         int64_t x_cstride, hl_dtype y_dtype, void *y))                            \
    X(to_channels_first, (const hl_ctx *ctx, int64_t C, int64_t T, int64_t S, const float *x,      \
                          float lo, float hi, float *y, int64_t y_cstride))                        \
    X(gelu_tanh_mul, (const hl_ctx *ctx, int64_t n, const float *x, const float *g, float *y))     \
    X(relative_bias,                                                                               \
      (const hl_ctx *ctx, int H, int64_t Sq, int64_t Sk, const float *rel, float *bias))           \
    /* VAE backward */                                                                             \
    X(conv3d_backward, (const hl_ctx *ctx, const hl_conv3d_shape *s, const float *x,               \
                        const hl_tensor *w, const float *dy, float *dx, float *dw, float *db))     \
    X(channel_rmsnorm_backward,                                                                    \
      (const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C, int64_t S, const float *x,       \
       const float *gamma, int silu, const float *dy, float *dx, float *dgamma))                   \
    X(upsample2x_backward, (const hl_ctx *ctx, hl_layout layout, int64_t N, int64_t C, int64_t H,  \
                            int64_t W, const float *dy, float *dx, int64_t lddx))                  \
    X(clamp_backward, (const hl_ctx *ctx, int64_t n, const float *x, float lo, float hi,           \
                       const float *dy, float *dx))                                                \
    X(linear_backward, (const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx,                 \
                        const hl_tensor *W, const float *dy, int64_t lddy, float *dx,              \
                        int64_t lddx, int accumulate_dx, float *dW, float *db))                    \
    X(attention_biased_backward,                                                                   \
      (const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd, const float *q, int64_t ldq,      \
       const float *k, int64_t ldk, const float *v, int64_t ldv, float scale, const float *bias,   \
       const float *key_bias, hl_dtype compute, const float *out, int64_t ldo, const float *dout,  \
       int64_t lddo, float *dq, int64_t lddq, float *dk, int64_t lddk, float *dv, int64_t lddv,    \
       float *dbias))                                                                              \
    X(rope_backward,                                                                               \
      (const hl_ctx *ctx, int64_t M, int H, int hd, float *dx, int64_t ldx, const float *rope))    \
    X(gelu_tanh_backward,                                                                          \
      (const hl_ctx *ctx, int64_t n, const float *x, const float *dy, float *dx))                  \
    X(silu_backward, (const hl_ctx *ctx, int64_t n, const float *x, const float *dy, float *dx))   \
    X(gelu_tanh_mul_backward, (const hl_ctx *ctx, int64_t n, const float *x, const float *g,       \
                               const float *dy, float *dx, float *dg))                             \
    X(add_gated_backward,                                                                          \
      (const hl_ctx *ctx, int64_t M, int64_t D, const float *dx, int64_t lddx, const float *y,     \
       int64_t ldy, const float *gate, float *dy, int64_t lddy, float *dgate))                     \
    X(scale_heads_backward, (const hl_ctx *ctx, int64_t M, int H, int hd, const float *x,          \
                             int64_t ldx, const float *s, float *dx, int64_t lddx, float *ds))     \
    X(relative_bias_backward,                                                                      \
      (const hl_ctx *ctx, int H, int64_t Sq, int64_t Sk, const float *dbias, float *drel))         \
    X(patchify3d_backward, (const hl_ctx *ctx, int64_t C, int64_t T, int64_t H, int64_t W, int kt, \
                            int kh, int kw, const float *drows, float *dx))                        \
    X(unpatchify3d_backward, (const hl_ctx *ctx, int64_t C, int64_t T, int64_t Hp, int64_t Wp,     \
                              int kt, int kh, int kw, const float *dy, float *drows))

/* HL_OP_<name>: an index per op (the fallback warnings are kept per op). */
typedef enum hl_op_id {
#define HL_X_ID(name, params) HL_OP_##name,
    HL_OPS(HL_X_ID)
#undef HL_X_ID
        HL_OP_COUNT
} hl_op_id;

/* Op timing, for measurement (helios bench --only tiny): while on, every hl_<op> call adds the
 * wall time of its backend call (fallback included) to per-op totals of the calling thread.
 * Off (the default) it costs one predictable branch per op call. Nested calls count once (in
 * the outermost op). hl_op_timing_set(1) also zeroes the calling thread's totals. */
typedef struct hl_op_times {
    double seconds[HL_OP_COUNT];
    int64_t calls[HL_OP_COUNT];
} hl_op_times;
void hl_op_timing_set(int on);
const hl_op_times *hl_op_times_get(void); /* the calling thread's totals */
const char *hl_op_name(hl_op_id id);

typedef struct hl_backend_ops hl_backend_ops;

/* A backend: its name and kind, how to make and drop its state, and its ops. */
struct hl_backend_ops {
    const char *name;
    helios_backend kind;
    /* NULL, or a stateless host-memory backend that may run an op this one returned
     * HELIOS_ERR_UNSUPPORTED for (called with this backend's ctx). Only a backend whose buffers
     * are host memory may name one. */
    const hl_backend_ops *fallback;
    /* Creates be->state (may be NULL: no state); fini frees it. Either may be NULL. */
    hl_status (*init)(hl_backend *be, hl_error *err);
    void (*fini)(hl_backend *be);
#define HL_X_FIELD(name, params) hl_status(*name) params;
    HL_OPS(HL_X_FIELD)
#undef HL_X_FIELD
};

/* An instance: owned by a session (or by a test / tool), reached through hl_ctx. */
struct hl_backend {
    const hl_backend_ops *ops;
    int nthreads;            /* as passed to hl_backend_new (0: OpenMP's default) */
    void *state;             /* the backend's own (cpu: struct hl_cpu, src/ops/cpu) */
    int warned[HL_OP_COUNT]; /* fallback already logged for this op */
    /* NULL, or the load governor that sets the thread count before each outermost op (a
     * generation sets its own while it runs: core/parallel.h) */
    hl_governor *governor;
};

/* The tables (src/ops/ref/backend.c, src/ops/cpu/backend.c). */
extern const hl_backend_ops hl_ref_backend_ops;
extern const hl_backend_ops hl_cpu_backend_ops;

/* Each backend's entry points, hl_<backend>_<op>; a backend defines those it implements. */
#define HL_X_DECL(name, params) hl_status hl_ref_##name params;
HL_OPS(HL_X_DECL)
#undef HL_X_DECL
#define HL_X_DECL(name, params) hl_status hl_cpu_##name params;
HL_OPS(HL_X_DECL)
#undef HL_X_DECL

/* Host implementations of the layout ops, shared by ref and cpu (src/ops/layout.c). */
hl_status hl_host_patchify3d(const hl_ctx *ctx, int64_t C, int64_t T, int64_t H, int64_t W, int kt,
                             int kh, int kw, const float *x, float *rows);
hl_status hl_host_unpatchify3d(const hl_ctx *ctx, int64_t C, int64_t T, int64_t Hp, int64_t Wp,
                               int kt, int kh, int kw, const float *rows, float *y);
hl_status hl_host_patchify3d_backward(const hl_ctx *ctx, int64_t C, int64_t T, int64_t H, int64_t W,
                                      int kt, int kh, int kw, const float *drows, float *dx);
hl_status hl_host_unpatchify3d_backward(const hl_ctx *ctx, int64_t C, int64_t T, int64_t Hp,
                                        int64_t Wp, int kt, int kh, int kw, const float *dy,
                                        float *drows);

/* A conv weight pack starts with this header: who made it and how to free it (hl_conv_pack_free
 * calls free_fn). A backend ignores (does not reuse) a pack whose owner is another table. */
struct hl_conv_pack {
    const hl_backend_ops *owner;
    void (*free_fn)(hl_conv_pack *p);
};

#endif
