/* Shared machinery of the cpu backend: one oneDNN engine, per-thread streams, a small cache of
 * matmul primitives, grow-only scratch buffers, and the backend lock that guards them.
 *
 * Threading model: the model calls ops from one thread; the parallelism is inside each op
 * (OpenMP, and oneDNN which shares the OpenMP pool). hl_cpu_lock() serialises whole op calls that
 * use the shared state (scratch, cache, streams), so concurrent callers are safe, merely not
 * concurrent. The scratch, stream and cache functions must be called with the lock held;
 * hl_cpu_mm_run() and hl_cpu_mm_pack_b() may run from several OpenMP threads at once (each with
 * its own stream index and scratchpad) once the primitives and streams exist; the conversions at
 * the end are plain functions. */
#ifndef HL_CPU_INTERNAL_H
#define HL_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"
#include "ops/ops.h"

void hl_cpu_lock(void);
void hl_cpu_unlock(void);

/* ---- scratch ---------------------------------------------------------------------------------
 * Persistent, grow-only buffers, one per slot. Large per-call mallocs would be fresh mmaps whose
 * first touch page-faults every call (measured: converting a 2304 x 8960 activation into a new
 * buffer took 42 ms, into a reused one 4.3 ms). Contents are not preserved across growth. */
typedef enum hl_cpu_slot {
    HL_SLOT_LIN_X,   /* linear: x as a dense bf16 (or f32) copy */
    HL_SLOT_LIN_W,   /* linear: weights reordered to oneDNN's blocked layout */
    HL_SLOT_LIN_Y,   /* linear: dense output when ldy != N */
    HL_SLOT_LIN_PAD, /* linear: oneDNN scratchpad */
    HL_SLOT_ATT_QKV, /* attention: q, k, v packed per head in the compute dtype */
    HL_SLOT_ATT_BLK, /* attention: per-thread score / probability / output blocks */
    HL_SLOT_ATT_PAD, /* attention: per-thread oneDNN scratchpads */
    HL_SLOT_COUNT
} hl_cpu_slot;

/* A 64-byte (large: 2 MiB) aligned buffer of at least bytes, or NULL when out of memory. */
void *hl_cpu_scratch(hl_cpu_slot slot, size_t bytes);

/* ---- oneDNN ---------------------------------------------------------------------------------- */

/* Makes sure the engine and streams 0..nstreams-1 exist (stream i is used by OpenMP thread i). */
hl_status hl_cpu_dnnl_init(int nstreams, hl_error *err);

/* 1 when oneDNN has bf16 matmul and convolution kernels on this CPU (oneDNN 2.6 needs AVX-512
 * for bf16; an AVX2-only CPU has none), else 0. Probed once by creating a small bf16 matmul; the
 * environment variable HELIOS_BF16_GEMM=0 forces 0 (to test the f32 path on any machine). Where
 * it is 0, ops on bf16 weights convert them to float32 and compute in float32 (logged once at
 * info level). Call with the backend lock held. */
int hl_cpu_bf16_gemm(void);

/* Layout of the B operand [K, N] of a matmul. */
typedef enum hl_mm_blayout {
    HL_MM_B_NK,         /* stored as N rows of K (a Linear weight [N, K]: B = Wᵀ) */
    HL_MM_B_KN,         /* stored as K rows of N */
    HL_MM_B_BLOCKED_NK, /* oneDNN's preferred layout, made by hl_cpu_mm_pack_b from N rows of K */
    HL_MM_B_BLOCKED_KN, /* the same, made from K rows of N */
} hl_mm_blayout;

/* C[M, N] (float32, dense) = A[M, K] (dense) · B[K, N] (+ bias float32 [N]); A and B in dt
 * (HL_F32 or HL_BF16). nthr: the thread count the primitive is tuned for and will run with
 * (1 when it runs inside an OpenMP parallel region). */
typedef struct hl_mm_key {
    int64_t M, N, K;
    hl_dtype dt;
    hl_mm_blayout blayout;
    int bias;
    int nthr;
} hl_mm_key;

typedef struct hl_mm hl_mm;

/* The cached primitive for key, created on a miss (the cache holds a few dozen; the least
 * recently used is dropped). The pointer stays valid until HL_MM_CACHE_SIZE other keys are
 * fetched. */
hl_status hl_cpu_mm_get(const hl_mm_key *key, hl_mm **out, hl_error *err);

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

/* ---- attention ------------------------------------------------------------------------------- */

/* hl_attention_biased on the cpu backend (src/ops/cpu/attention.c); hl_cpu_attention is this with
 * bias = key_bias = NULL. Takes the backend lock itself. */
hl_status hl_cpu_attention_run(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                               const float *q, int64_t ldq, const float *k, int64_t ldk,
                               const float *v, int64_t ldv, float scale, const float *bias,
                               const float *key_bias, hl_dtype compute, float *out, int64_t ldo);

/* ---- conversions ----------------------------------------------------------------------------- */

/* dst[i] = bf16(src[i]) for n values, round to nearest even, bit-identical to hl_f32_to_bf16
 * (NaN stays NaN, subnormals are kept). Serial; callers parallelise over rows. */
void hl_cpu_f32_to_bf16(const float *src, hl_bf16 *dst, int64_t n);

/* Array forms of the vector exp and tanh of vec_math.h (scalar libm on the tail), so the tests
 * can measure their accuracy against libm. */
void hl_cpu_exp_f32(const float *x, float *y, int64_t n);
void hl_cpu_tanh_f32(const float *x, float *y, int64_t n);

#endif
