/* Our own GEMM (issue 11 item 2): packed, cache-blocked microkernels in the BLIS style.
 *
 *   C[M, N] (+)= op(A)[M, K] · op(B)[K, N]        float32 accumulation, row-major C
 *
 * op(A) is A [M, K] (lda apart) or, transA, Aᵀ with A stored [K, M]; op(B) is B [K, N] or,
 * transB, Bᵀ with B stored [N, K] (a Linear weight). So the forms training needs are
 *   NT: x·Wᵀ (forward), NN: dy·W (dx), TN: dyᵀ·x (dW), with beta = 1 to accumulate.
 * beta is 0 (C is overwritten and never read: it may hold NaNs) or 1 (C += ...).
 *
 * hl_gemm_bf16 takes B in bf16 (weights) and A in float32, rounded to bf16 (RNE, as
 * hl_f32_to_bf16) while it is packed: the cpu backend's precision rule for bf16 weights
 * (ops.h). On the AVX512-BF16 kernel the products run on vdpbf16ps (pairs of k per f32 lane),
 * on the AMX kernel on tdpbf16ps tiles; on the f32 kernels the rounded A and the bf16 B are
 * widened to float32 while packing (exact) and the f32 microkernel runs (item 4: where there is
 * no bf16 arithmetic; the packed panels are float32, twice the bf16 bytes, a few MiB at most:
 * see gemm.c).
 *
 * Results: every C element is summed by one thread in a fixed order (k in blocks of KC, each
 * block's partial sum added to C in order), so the result does not depend on the thread count
 * or on M / N / the strides: identical bits run to run, thread count to thread count. It does
 * depend on the kernel (different register tiles sum the same way, but FMA vs the scalar
 * kernel's separate multiply-add, and vdpbf16ps's pair sums, round differently).
 *
 * Kernels are compiled with per-function target attributes and picked by CPUID (and XGETBV for
 * the OS's AVX / AVX-512 / tile state; for AMX also Linux's permission for the tile data) at run
 * time, so the library runs on any x86-64 CPU. On AMX the products are exact as on vdpbf16ps
 * (bf16 x bf16 in f32) and the sums f32; tdpbf16ps flushes bf16 denormals to zero. */
#ifndef HL_CPU_GEMM_H
#define HL_CPU_GEMM_H

#include <stdint.h>

#include "core/dtype.h"

typedef enum hl_gemm_kernel {
    HL_GEMM_AUTO = -1,   /* the best this CPU has: amx > bf16 > avx512 > avx2 > scalar */
    HL_GEMM_SCALAR = 0,  /* plain C, 4 x 8 tile: the fallback and the oracle of the others */
    HL_GEMM_AVX2,        /* AVX2 + FMA f32, 6 x 16 tile */
    HL_GEMM_AVX512,      /* AVX-512F f32, 6 x 64 tile */
    HL_GEMM_AVX512_BF16, /* AVX512-BF16 vdpbf16ps, 14 x 32 tile (hl_gemm_bf16 only; for
                               hl_gemm_f32 it means HL_GEMM_AVX512) */
    HL_GEMM_AMX,         /* AMX-BF16 tiles, 32 x 32 (hl_gemm_bf16 only, as avx512-bf16) */
    HL_GEMM_KERNEL_COUNT
} hl_gemm_kernel;

/* 1 when this CPU and OS run kernel k (HL_GEMM_AUTO and HL_GEMM_SCALAR: always). */
int hl_gemm_kernel_available(hl_gemm_kernel k);
/* "scalar", "avx2", "avx512", "avx512-bf16", "amx" */
const char *hl_gemm_kernel_name(hl_gemm_kernel k);
/* Linux (5.16+): a process must ask for the AMX tile data state before it uses tiles. Asks
 * (arch_prctl ARCH_REQ_XCOMP_PERM); 1 when granted, 0 when refused or not Linux on x86-64. */
int hl_gemm_amx_permit(void);
/* The kernel HL_GEMM_AUTO runs for f32 (bf16 = 0) or bf16 (bf16 = 1) operands. */
hl_gemm_kernel hl_gemm_kernel_best(int bf16);

/* The GEMM on nthr OpenMP threads (<= 1: the calling thread; inside a parallel region: the
 * calling thread). Strides in elements, lda >= op(A)'s stored row width, etc. M, N or K may be
 * 0 (K = 0: C = beta ? C : 0). Returns 0, or -1 when out of memory or the kernel is not
 * available here (C untouched). */
int hl_gemm_f32(hl_gemm_kernel k, int nthr, int transA, int transB, int64_t M, int64_t N, int64_t K,
                const float *A, int64_t lda, const float *B, int64_t ldb, int beta, float *C,
                int64_t ldc);
int hl_gemm_bf16(hl_gemm_kernel k, int nthr, int transA, int transB, int64_t M, int64_t N,
                 int64_t K, const float *A, int64_t lda, const hl_bf16 *B, int64_t ldb, int beta,
                 float *C, int64_t ldc);
/* The bf16 GEMM with each operand stored in float32 (ta / tb HL_F32: rounded to bf16 as it is
 * packed, as hl_gemm_bf16 rounds A) or in bf16 (HL_BF16): the products and sums, and so the
 * result bits, are those of hl_gemm_bf16 on the rounded values. What training's backwards
 * multiply: dW += dyᵀ·x with x float32, and attention's dK += dSᵀ·Q with dS already rounded,
 * without a rounded copy of the float32 operand. asum (NULL, or M floats) is set to the row sums
 * of op(A), of its stored values (float32, not rounded), each summed from 0 in k order on one
 * thread: with A = dy transposed, a linear's db, taken while A is packed instead of in a pass of
 * its own. -1 also for another dtype. */
int hl_gemm_bf16x(hl_gemm_kernel k, int nthr, int transA, int transB, int64_t M, int64_t N,
                  int64_t K, hl_dtype ta, const void *A, int64_t lda, hl_dtype tb, const void *B,
                  int64_t ldb, int beta, float *C, int64_t ldc, float *asum);

/* ---- routing: our GEMM or oneDNN ------------------------------------------------------------
 * The cpu ops that multiply matrices (hl_cpu_linear, hl_cpu_linear_backward) run our GEMM by
 * default: the same bits on every run for a given CPU and thread count. The environment
 * variable HELIOS_GEMM (read once) can say otherwise: onednn runs oneDNN's matmuls, auto the
 * faster of the two for each shape class, decided on its first call by timing both on the
 * call's own operands (hl_gemm_probe) and kept for the life of the process (one table for all
 * backend instances, so two sessions in one process take the same route). Below
 * HL_GEMM_PROBE_MIN_MACS multiply-adds auto runs ours unprobed (oneDNN's primitive creation
 * alone costs more than such a GEMM). Timing is opt-in because a route it chose differs between
 * two processes whenever the two sides are within noise of each other, and the routes sum in
 * different orders: the same command then wrote different videos (3 different MP4s in 4 runs
 * of the shipped model: its 184 x 192 x 768 GEMM timed 0.16-0.22 ms on ours, 0.16-0.20 ms on
 * oneDNN). */
enum { HL_GEMM_PROBE_MIN_MACS = 1 << 24 };
typedef enum hl_gemm_mode {
    HL_GEMM_MODE_AUTO,
    HL_GEMM_MODE_OURS,
    HL_GEMM_MODE_ONEDNN
} hl_gemm_mode;
hl_gemm_mode hl_gemm_mode_get(void);

/* A shape class: the GEMM's sizes, form, operand dtype and thread count. */
typedef struct hl_gemm_class {
    int64_t M, N, K;
    int form; /* caller-defined: e.g. 0 x·Wᵀ, 1 dy·W, 2 dyᵀ·x */
    int dtype, nthr;
} hl_gemm_class;

/* The route stored for c: 1 ours, 0 oneDNN, -1 not probed yet. */
int hl_gemm_route_get(const hl_gemm_class *c);
/* Stores the route for c (a full table keeps its entries; c is then probed again next time). */
void hl_gemm_route_put(const hl_gemm_class *c, int ours, double t_ours, double t_onednn);

/* The probe of a class not routed yet, on the call's own operands. run(arg, ours) runs one
 * side (ours = 1: our GEMM, 0: oneDNN) and returns 0 or an error status, which ends the probe
 * and is returned; reset(arg), when not NULL, puts back what a run accumulated into (each run
 * must start from the call's inputs). Both sides run once untimed (oneDNN's run creates its
 * primitive; ours grows its packing buffers: a first run measured 3-5x later ones), then ours
 * and oneDNN twice each, timed, the faster of each pair counted; ours is stored when 10%
 * faster (a tie keeps the library: fewer routes that flip with the noise), and the winner runs
 * last, so the outputs are its result. */
int hl_gemm_probe(const hl_gemm_class *c, int (*run)(void *arg, int ours), void (*reset)(void *arg),
                  void *arg);

#endif
