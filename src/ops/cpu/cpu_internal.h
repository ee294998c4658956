/* The cpu backend's state and shared machinery. One instance (struct hl_cpu, the state of an
 * hl_backend of kind cpu, made by hl_backend_new and freed with it) owns: ONE oneDNN engine, its
 * per-thread streams, ONE cache of primitives (matmuls and convolutions, one LRU keyed by bytes),
 * grow-only scratch buffers, and the lock that guards them. Nothing here is global: two
 * instances (two sessions) run concurrently.
 *
 * Threading model: the model calls ops from one thread; the parallelism is inside each op
 * (OpenMP, and oneDNN which shares the OpenMP pool). hl_cpu_lock(cpu) serialises whole op calls
 * on one instance that use its state (scratch, cache, streams), so concurrent callers of one
 * instance are safe, merely not concurrent. The scratch, stream and cache functions must be
 * called with the lock held; hl_cpu_mm_run() and hl_cpu_mm_pack_b() may run from several OpenMP
 * threads at once (each with its own stream index and scratchpad) once the primitives and
 * streams exist; the conversions at the end are plain functions. */
#ifndef HL_CPU_INTERNAL_H
#define HL_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <omp.h>

#include <oneapi/dnnl/dnnl.h>

#include "core/dtype.h"
#include "core/error.h"
#include "ops/ops_backends.h"

typedef struct hl_cpu hl_cpu;

/* The state of ctx's (cpu) backend. */
static inline hl_cpu *hl_cpu_of(const hl_ctx *ctx) { return (hl_cpu *)ctx->backend->state; }

/* The table's init and fini (dnnl_mm.c): make / free an instance's state. */
hl_status hl_cpu_backend_init(hl_backend *be, hl_error *err);
void hl_cpu_backend_fini(hl_backend *be);

/* The state of the process-wide cpu instance (hl_backend_shared), for measurement code that has
 * no session (gemm_ceiling.c); NULL if it cannot be made. */
hl_cpu *hl_cpu_shared(void);

/* A NULL cpu is a no-op (callers of hl_cpu_shared). */
void hl_cpu_lock(hl_cpu *cpu);
void hl_cpu_unlock(hl_cpu *cpu);

/* ---- threads for small ops --------------------------------------------------------------------
 * An op below HL_CPU_PAR_MIN_MACS multiply-adds (about 0.1 ms on one core) runs on the calling
 * thread: forking the pool and joining it costs more than it saves there, and on a machine shared
 * with another busy process the pool's spin-waiting and the wait for a descheduled thread cost
 * far more. The count is part of a primitive's key (hl_mm_key.nthr), so results stay identical
 * for a given thread count. */
enum { HL_CPU_PAR_MIN_MACS = 1 << 22 };
static inline int hl_cpu_nthr_for(double macs) {
    return macs < (double)HL_CPU_PAR_MIN_MACS ? 1 : omp_get_max_threads();
}

/* dnnl_primitive_execute on the nthr threads the primitive was made for: oneDNN (OpenMP runtime)
 * forks omp_get_max_threads() threads at execution, so a one-thread primitive runs with that
 * lowered to 1 outside a parallel region (inside one it runs on the calling thread anyway). */
static inline dnnl_status_t hl_cpu_dnnl_execute(dnnl_primitive_t prim, dnnl_stream_t stream,
                                                int nargs, const dnnl_exec_arg_t *args, int nthr) {
    const int saved = omp_get_max_threads(), lower = nthr < saved && !omp_in_parallel();
    if (lower) omp_set_num_threads(nthr);
    dnnl_status_t st = dnnl_primitive_execute(prim, stream, nargs, args);
    if (st == dnnl_success) st = dnnl_stream_wait(stream);
    if (lower) omp_set_num_threads(saved);
    return st;
}

/* ---- scratch ---------------------------------------------------------------------------------
 * Persistent, grow-only buffers, one per slot. Large per-call mallocs would be fresh mmaps whose
 * first touch page-faults every call (measured: converting a 2304 x 8960 activation into a new
 * buffer took 42 ms, into a reused one 4.3 ms). Contents are not preserved across growth. */
typedef enum hl_cpu_slot {
    HL_SLOT_LIN_X,     /* linear: x as a dense bf16 (or f32) copy */
    HL_SLOT_LIN_W,     /* linear: weights reordered to oneDNN's blocked layout (or f32) */
    HL_SLOT_LIN_Y,     /* linear: dense output when ldy != N */
    HL_SLOT_LIN_PAD,   /* linear: oneDNN scratchpad */
    HL_SLOT_ATT_QKV,   /* attention: q, k, v packed per head in the compute dtype */
    HL_SLOT_ATT_BLK,   /* attention: per-thread score / probability / output blocks */
    HL_SLOT_ATT_PAD,   /* attention: per-thread oneDNN scratchpads */
    HL_SLOT_CONV_SRC,  /* conv3d: x reordered for the primitive */
    HL_SLOT_CONV_DST,  /* conv3d: y in the primitive's layout */
    HL_SLOT_CONV_WEI,  /* conv3d: blocked weights without a pack */
    HL_SLOT_CONV_PAD,  /* conv3d: oneDNN scratchpad */
    HL_SLOT_CONV_BIAS, /* conv3d: the bias as float32 */
    HL_SLOT_NORM_BWD,  /* norm backwards: per-thread parameter-gradient partial sums */
    HL_SLOT_LINB_DY,   /* linear backward: dy as a dense copy in the GEMM dtype */
    HL_SLOT_LINB_X,    /* linear backward: x as a dense copy in the GEMM dtype */
    HL_SLOT_LINB_DX,   /* linear backward: dense dx when lddx != K */
    HL_SLOT_LINB_DB,   /* linear backward: db's sums from our GEMM, before they are added */
    HL_SLOT_ATTB,      /* attention backward: per-thread blocks */
    HL_SLOT_CONVB,     /* conv3d backward: the GEMM blocks (conv_backward.c) */
    HL_SLOT_CONVB_W,   /* conv3d backward, oneDNN: the weights in its layouts, dw, db */
    HL_SLOT_CONVB_PAD, /* conv3d backward, oneDNN: scratchpad */
    HL_SLOT_COUNT
} hl_cpu_slot;

/* A 64-byte (large: 2 MiB) aligned buffer of at least bytes, or NULL when out of memory. */
void *hl_cpu_scratch(hl_cpu *cpu, hl_cpu_slot slot, size_t bytes);

/* ---- oneDNN ---------------------------------------------------------------------------------- */

/* Makes sure streams 0..nstreams-1 exist (stream i is used by OpenMP thread i). */
hl_status hl_cpu_dnnl_init(hl_cpu *cpu, int nstreams, hl_error *err);

dnnl_engine_t hl_cpu_engine(const hl_cpu *cpu);
dnnl_stream_t hl_cpu_stream(const hl_cpu *cpu, int i); /* after hl_cpu_dnnl_init(cpu, > i) */

/* 1 when the CPU has bf16 dot products (AVX512-BF16 or AMX-BF16) and oneDNN bf16 matmul and
 * convolution kernels for them, else 0 (oneDNN 2.6 emulates bf16 on other AVX-512 CPUs, slower
 * than its f32, and has none on AVX2). Probed once per instance by creating a small bf16
 * matmul; the environment variable HELIOS_BF16_GEMM=0 forces 0 (to test the f32 path on any
 * machine), =1 takes oneDNN's bf16 wherever it has any, emulated or not (to test the bf16 path
 * on a CPU without bf16 dot products). Where it is 0, ops on bf16 weights convert them to float32 and compute in float32
 * (logged once at info level). Call with the lock held. */
int hl_cpu_bf16_gemm(hl_cpu *cpu);

/* The convolutions' oneDNN plumbing (conv.c). An argument of a primitive: its index
 * (DNNL_ARG_*), its memory descriptor and data; arguments without data are left out. */
typedef struct hl_dnnl_arg {
    int arg;
    const dnnl_memory_desc_t *md;
    const void *handle;
} hl_dnnl_arg;
/* Runs prim on stream 0 with nthr threads (at most 8 arguments); a failure names `what`. */
hl_status hl_cpu_dnnl_run(const hl_cpu *cpu, dnnl_primitive_t prim, const hl_dnnl_arg *args, int n,
                          int nthr, const char *what, hl_error *err);
/* Runs reorder r from a (md from) to b (md to) with its user scratchpad (pad_md, pad). */
hl_status hl_cpu_dnnl_reorder_run(const hl_cpu *cpu, dnnl_primitive_t r,
                                  const dnnl_memory_desc_t *from, const void *a,
                                  const dnnl_memory_desc_t *to, void *b,
                                  const dnnl_memory_desc_t *pad_md, void *pad, int nthr,
                                  const char *what, hl_error *err);
/* A reorder from a to b with attr (a user scratchpad: *pad grows to its size); *out stays NULL
 * when a == b. */
dnnl_status_t hl_cpu_dnnl_reorder_make(dnnl_engine_t eng, const dnnl_memory_desc_t *a,
                                       const dnnl_memory_desc_t *b,
                                       const_dnnl_primitive_attr_t attr, dnnl_primitive_t *out,
                                       size_t *pad);

/* conv3d backward on oneDNN (conv_backward_dnnl.c), for a geometry ops.c checked, NTHWC: the
 * parts oneDNN has a direct kernel for, *done saying which (HL_CONVB_DX: dx; HL_CONVB_DW: dw
 * and db); the caller computes the rest. Call with the lock held. */
enum { HL_CONVB_DX = 1, HL_CONVB_DW = 2 };
struct hl_conv_geom;
hl_status hl_cpu_conv3d_backward_dnnl(const hl_ctx *ctx, const hl_conv3d_shape *s,
                                      const struct hl_conv_geom *g, const float *x,
                                      const hl_tensor *w, const float *dy, float *dx, float *dw,
                                      float *db, int *done);

/* ---- the primitive cache ----------------------------------------------------------------------
 * One LRU for every kind of primitive: an entry is (kind, key bytes) -> an object made by create
 * and dropped by destroy. Keys are compared byte-wise, so zero them before filling (padding).
 * The object stays valid until HL_CPU_CACHE_SIZE other keys are fetched. */
enum { HL_CPU_CACHE_SIZE = 144, HL_CPU_KEY_MAX = 160 };
typedef enum hl_cpu_prim_kind {
    HL_PRIM_MATMUL = 1,
    HL_PRIM_CONV = 2,
    HL_PRIM_CONV_BWD = 3
} hl_cpu_prim_kind;
typedef hl_status (*hl_cpu_create_fn)(hl_cpu *cpu, const void *key, void **obj, hl_error *err);
hl_status hl_cpu_cache_get(hl_cpu *cpu, hl_cpu_prim_kind kind, const void *key, size_t key_len,
                           hl_cpu_create_fn create, void (*destroy)(void *obj), void **out,
                           hl_error *err);

/* Layout of the B operand [K, N] of a matmul. */
typedef enum hl_mm_blayout {
    HL_MM_B_NK,         /* stored as N rows of K (a Linear weight [N, K]: B = Wᵀ) */
    HL_MM_B_KN,         /* stored as K rows of N */
    HL_MM_B_BLOCKED_NK, /* oneDNN's preferred layout, made by hl_cpu_mm_pack_b from N rows of K */
    HL_MM_B_BLOCKED_KN, /* the same, made from K rows of N */
} hl_mm_blayout;

/* C[M, N] (float32, dense) = A[M, K] (dense) · B[K, N] (+ bias float32 [N]); A and B in dt
 * (HL_F32 or HL_BF16). nthr: the thread count the primitive is tuned for and will run with
 * (1 when it runs inside an OpenMP parallel region). atrans: A is stored as K rows of M (Aᵀ
 * row-major, as dyᵀ in a weight gradient). accumulate: C += A·B (a sum post-op; C holds the
 * values to add to). */
typedef struct hl_mm_key {
    int64_t M, N, K;
    hl_dtype dt;
    hl_mm_blayout blayout;
    int bias;
    int nthr;
    int atrans, accumulate;
} hl_mm_key;

typedef struct hl_mm hl_mm;

/* The cached primitive for key (hl_cpu_cache_get), created on a miss. It keeps a pointer to its
 * instance (engine, streams) for the calls below. */
hl_status hl_cpu_mm_get(hl_cpu *cpu, const hl_mm_key *key, hl_mm **out, hl_error *err);

size_t hl_cpu_mm_scratchpad_size(const hl_mm *mm);
size_t hl_cpu_mm_packed_b_size(const hl_mm *mm); /* blocked layouts only, else 0 */

/* Reorders b_plain (N rows of K or K rows of N, as the key's blocked layout says) into packed
 * (hl_cpu_mm_packed_b_size bytes), on stream `stream`; scratchpad as for hl_cpu_mm_run. */
hl_status hl_cpu_mm_pack_b(const hl_mm *mm, int stream, const void *b_plain, void *packed,
                           void *scratchpad, hl_error *err);

/* Runs the matmul on stream `stream`; scratchpad holds hl_cpu_mm_scratchpad_size bytes (NULL if
 * 0). bias is used only when the key had bias. */
hl_status hl_cpu_mm_run(const hl_mm *mm, int stream, const void *a, const void *b,
                        const float *bias, float *c, void *scratchpad, hl_error *err);

/* ---- attention internals shared by the forward and the backward (attention.c) ---------------- */

/* x [S, H·hd] (rows ld apart) -> dst [H][S_dst][hd] in dt (F32 or BF16), rows S..S_dst-1 zero;
 * OpenMP over rows. */
void hl_cpu_att_pack_heads(const float *x, int64_t ld, int64_t S, int64_t S_dst, int H, int hd,
                           hl_dtype dt, char *dst);

/* s[j] <- scale·s[j] + b[j] + kb[j] clamped to [-FLT_MAX, FLT_MAX] in place (b, kb may be
 * NULL); returns the row maximum. */
float hl_cpu_att_bias_row(float *s, int64_t n, float scale, const float *b, const float *kb);

/* p[j] = exp(t[j] - mx) in dt (p may alias t for F32), exactly 0 below e^-86; returns the sum
 * of the float32 values. pf: NULL or n floats to prefetch. */
float hl_cpu_att_exp_row_shifted(const float *t, int64_t n, float mx, hl_dtype dt, void *p,
                                 const float *pf);

/* ---- conversions ----------------------------------------------------------------------------- */

/* dst[i] = bf16(src[i]) for n values, round to nearest even, bit-identical to hl_f32_to_bf16
 * (NaN stays NaN, subnormals are kept). Serial; callers parallelise over rows. */
void hl_cpu_f32_to_bf16(const float *src, hl_bf16 *dst, int64_t n);

/* Array forms of the vector exp and tanh of vec_math.h (scalar libm on the tail), so the tests
 * can measure their accuracy against libm. */
void hl_cpu_exp_f32(const float *x, float *y, int64_t n);
void hl_cpu_tanh_f32(const float *x, float *y, int64_t n);

#endif
