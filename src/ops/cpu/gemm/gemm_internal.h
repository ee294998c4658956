/* Between the GEMM driver (gemm.c) and its x86 microkernels (gemm_x86.c).
 *
 * A microkernel computes one register tile C[MR, NR] (ldc apart) from a packed A micro-panel
 * and a packed B micro-panel of kc steps:
 *   f32 kernels (pair = 1): a[k·MR + r], b[k·NR + c] float32, k < kc;
 *   the bf16 kernel (pair = 2): a[(p·MR + r)·2 + t], b[(p·NR + c)·2 + t] bf16, p < kc pairs
 *     (k = 2p + t; an odd K is padded with a zero k).
 * The tile is summed from zero over the panel, in k order, then stored (add = 0) or added to C
 * (add = 1): C = C + Σ. */
#ifndef HL_CPU_GEMM_INTERNAL_H
#define HL_CPU_GEMM_INTERNAL_H

#include <stdint.h>

typedef void (*hl_gemm_ukr)(int64_t kc, const void *a, const void *b, float *c, int64_t ldc,
                            int add);

typedef struct hl_gemm_ukr_desc {
    int mr, nr, pair;
    hl_gemm_ukr fn;
} hl_gemm_ukr_desc;

/* The x86 microkernels (gemm_x86.c); call only where hl_gemm_kernel_available says so. NULL
 * when the compiler cannot build them. */
extern const hl_gemm_ukr_desc hl_gemm_ukr_avx2;
extern const hl_gemm_ukr_desc hl_gemm_ukr_avx512;
extern const hl_gemm_ukr_desc hl_gemm_ukr_avx512_bf16;

#endif
