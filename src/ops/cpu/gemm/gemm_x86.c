/* The x86 microkernels of our GEMM (see gemm_internal.h for the packed layouts). Each is
 * compiled for its ISA alone with a target attribute, whatever -march the rest of the build
 * uses; gemm.c calls one only after CPUID / XGETBV say the CPU and the OS support it.
 *
 * Register tiles (C is row-major, so vectors run along N; A values are broadcast):
 *   avx512 f32   14 x 32: 28 zmm accumulators + 2 B vectors + 1 broadcast = 31 of 32 zmm. Per
 *                k: 28 vfmadd231ps against 2 vector loads and 14 broadcasts (folded into the
 *                FMA's {1to16} memory operand), so the two 512-bit FMA pipes of Zen 4/5 (4-cycle
 *                latency: >= 8 independent chains needed) stay fed from L1.
 *   avx512 bf16  14 x 32 the same way with vdpbf16ps: a lane sums two k (a bf16 pair) per
 *                instruction, so one step covers 2 k at the f32 instruction count: twice the
 *                flops per instruction.
 *   avx2 f32     6 x 16: 12 ymm accumulators + 2 B + 1 broadcast (the classic Haswell tile). */
#include "ops/cpu/gemm/gemm_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* clang-format off */
#define ROWS14(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
#define ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)
/* clang-format on */

/* The C tile is prefetched when a kernel starts: its rows are ldc apart (a cache line or two
 * each, usually not in L1), and the K loop hides their latency. */
#define PREFETCH_C(r)                                                \
    _mm_prefetch((const char *)(c + (int64_t)(r)*ldc), _MM_HINT_T0); \
    _mm_prefetch((const char *)(c + (int64_t)(r)*ldc + 16), _MM_HINT_T0);

/* ---- AVX-512 f32, 14 x 32 -------------------------------------------------------------------- */

__attribute__((target("avx512f"))) static void
ukr_avx512(int64_t kc, const void *pa, const void *pb, float *c, int64_t ldc, int add) {
    const float *a = pa, *b = pb;
    ROWS14(PREFETCH_C)
#define DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
    ROWS14(DECL)
#undef DECL
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#define STEP(r)                                     \
    {                                               \
        const __m512 ar = _mm512_set1_ps(a[r]);     \
        c##r##0 = _mm512_fmadd_ps(ar, b0, c##r##0); \
        c##r##1 = _mm512_fmadd_ps(ar, b1, c##r##1); \
    }
        ROWS14(STEP)
#undef STEP
        a += 14;
        b += 32;
    }
#define STORE(r)                                                        \
    {                                                                   \
        float *cr = c + (int64_t)(r)*ldc;                               \
        if (add) {                                                      \
            c##r##0 = _mm512_add_ps(_mm512_loadu_ps(cr), c##r##0);      \
            c##r##1 = _mm512_add_ps(_mm512_loadu_ps(cr + 16), c##r##1); \
        }                                                               \
        _mm512_storeu_ps(cr, c##r##0);                                  \
        _mm512_storeu_ps(cr + 16, c##r##1);                             \
    }
    ROWS14(STORE)
}

/* ---- AVX512-BF16, 14 x 32 (pairs of k) ------------------------------------------------------- */

__attribute__((target("avx512f,avx512bf16"))) static void
ukr_avx512_bf16(int64_t kp, const void *pa, const void *pb, float *c, int64_t ldc, int add) {
    const uint32_t *a = pa; /* one bf16 pair per uint32 */
    const uint16_t *b = pb;
    ROWS14(PREFETCH_C)
#define DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
    ROWS14(DECL)
#undef DECL
    for (int64_t p = 0; p < kp; p++) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)b),
                       b1 = (__m512bh)_mm512_load_si512((const void *)(b + 32));
#define STEP(r)                                                     \
    {                                                               \
        const __m512bh ar = (__m512bh)_mm512_set1_epi32((int)a[r]); \
        c##r##0 = _mm512_dpbf16_ps(c##r##0, ar, b0);                \
        c##r##1 = _mm512_dpbf16_ps(c##r##1, ar, b1);                \
    }
        ROWS14(STEP)
#undef STEP
        a += 14;
        b += 64;
    }
    ROWS14(STORE)
#undef STORE
}

/* ---- AVX2 + FMA f32, 6 x 16 ------------------------------------------------------------------ */

__attribute__((target("avx2,fma"))) static void ukr_avx2(int64_t kc, const void *pa, const void *pb,
                                                         float *c, int64_t ldc, int add) {
    const float *a = pa, *b = pb;
    ROWS6(PREFETCH_C)
#define DECL(r) __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps();
    ROWS6(DECL)
#undef DECL
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#define STEP(r)                                       \
    {                                                 \
        const __m256 ar = _mm256_broadcast_ss(a + r); \
        c##r##0 = _mm256_fmadd_ps(ar, b0, c##r##0);   \
        c##r##1 = _mm256_fmadd_ps(ar, b1, c##r##1);   \
    }
        ROWS6(STEP)
#undef STEP
        a += 6;
        b += 16;
    }
#define STORE(r)                                                       \
    {                                                                  \
        float *cr = c + (int64_t)(r)*ldc;                              \
        if (add) {                                                     \
            c##r##0 = _mm256_add_ps(_mm256_loadu_ps(cr), c##r##0);     \
            c##r##1 = _mm256_add_ps(_mm256_loadu_ps(cr + 8), c##r##1); \
        }                                                              \
        _mm256_storeu_ps(cr, c##r##0);                                 \
        _mm256_storeu_ps(cr + 8, c##r##1);                             \
    }
    ROWS6(STORE)
#undef STORE
}

const hl_gemm_ukr_desc hl_gemm_ukr_avx2 = {6, 16, 1, ukr_avx2};
const hl_gemm_ukr_desc hl_gemm_ukr_avx512 = {14, 32, 1, ukr_avx512};
const hl_gemm_ukr_desc hl_gemm_ukr_avx512_bf16 = {14, 32, 2, ukr_avx512_bf16};
#else
const hl_gemm_ukr_desc hl_gemm_ukr_avx2 = {6, 16, 1, 0};
const hl_gemm_ukr_desc hl_gemm_ukr_avx512 = {14, 32, 1, 0};
const hl_gemm_ukr_desc hl_gemm_ukr_avx512_bf16 = {14, 32, 2, 0};
#endif
