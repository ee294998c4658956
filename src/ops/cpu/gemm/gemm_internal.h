/* Between the GEMM driver (gemm.c) and its x86 microkernels (gemm_x86.c).
 *
 * A microkernel computes one register tile C[MR, NR] (ldc apart) from a packed A micro-panel
 * and a packed B micro-panel. A is packed in chunks of kblk consecutive k per row,
 *   a[((k / kblk)·MR + r)·kblk + k % kblk],
 * and k is padded with zeros to a multiple of kblk; the kernel is called with the number of
 * chunks (kp / kblk):
 *   f32 kernels (pair = 1, kblk = 1): a[k·MR + r], b[k·NR + c] float32;
 *   the avx512-bf16 kernel (pair = 2, kblk = 2): a[(p·MR + r)·2 + t], b[(p·NR + c)·2 + t]
 *     bf16, one call step per pair p (k = 2p + t);
 *   the AMX kernel (pair = 2, kblk = 32): B as for avx512-bf16 (a tile row is 16 columns of
 *     one pair: NR·4 bytes apart), A as 64-byte rows of 32 k (a tile row), one call step per
 *     32 k.
 * The register kernels sum the tile from zero over the panel, in k order, then store it
 * (add = 0) or add it to C (add = 1): C = C + Σ. The AMX kernel starts its accumulator tiles
 * from C when add = 1 (C + a_0 b_0 + a_1 b_1 + ...): a different order, as fixed.
 *
 * begin / end (NULL for the register kernels) run on each thread before and after its
 * microkernel calls of one GEMM: AMX loads its tile configuration there and releases it (other
 * code, oneDNN's among it, configures the tiles its own way between our calls). */
#ifndef HL_CPU_GEMM_INTERNAL_H
#define HL_CPU_GEMM_INTERNAL_H

#include <stdint.h>

typedef void (*hl_gemm_ukr)(int64_t kc, const void *a, const void *b, float *c, int64_t ldc,
                            int add);

typedef struct hl_gemm_ukr_desc {
    int mr, nr, pair, kblk;
    hl_gemm_ukr fn;
    void (*begin)(void), (*end)(void);
} hl_gemm_ukr_desc;

/* The x86 microkernels (gemm_x86.c); call only where hl_gemm_kernel_available says so. NULL
 * when the compiler cannot build them. */
extern const hl_gemm_ukr_desc hl_gemm_ukr_avx2;
extern const hl_gemm_ukr_desc hl_gemm_ukr_avx512;
extern const hl_gemm_ukr_desc hl_gemm_ukr_avx512_bf16;
extern const hl_gemm_ukr_desc hl_gemm_ukr_amx;

#endif
