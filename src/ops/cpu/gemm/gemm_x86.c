/* The x86 microkernels of our GEMM (see gemm_internal.h for the packed layouts). Each is
 * compiled for its ISA alone with a target attribute, whatever -march the rest of the build
 * uses; gemm.c calls one only after CPUID / XGETBV say the CPU and the OS support it.
 *
 * Register tiles (C is row-major, so vectors run along N; A values are broadcast):
 *   avx512 f32   6 x 64: 24 zmm accumulators + 4 B vectors + 1 broadcast = 29 of 32 zmm. Per
 *                k: 24 vfmadd231ps against 4 vector loads and 6 broadcasts, so the two 512-bit
 *                FMA pipes (4-cycle latency: >= 8 independent chains needed) stay fed with 10
 *                loads per 24 FMAs. The 14 x 32 tile before it (28 accumulators, 16 loads per
 *                28 FMAs) ran at 83-87% of the FMA peak with its panels in L1 on an AVX-512
 *                Xeon without bf16 (one thread, medians of 11 runs each beside a peak run);
 *                6 x 64 at 94-97%, and 8 x 48 and 9 x 48 about as well (64 columns divide
 *                the model widths: 1536, 4096, 5120, 8960, 10240).
 *   avx512 bf16  14 x 32 the same way with vdpbf16ps: a lane sums two k (a bf16 pair) per
 *                instruction, so one step covers 2 k at the f32 instruction count: twice the
 *                flops per instruction.
 *   avx2 f32     6 x 16: 12 ymm accumulators + 2 B + 1 broadcast (the classic Haswell tile).
 *   amx bf16     32 x 32 in four 16 x 16 f32 accumulator tiles (tmm0-3), two A tiles of 16 rows
 *                x 32 k (tmm4-5) and two B tiles of 16 pairs x 16 columns (tmm6-7): per 32 k,
 *                four tile loads of 1 KiB and four tdpbf16ps of 16 x 16 x 32 multiply-adds
 *                (16 cycles each on Sapphire Rapids: 1024 flops per cycle), each A and B tile
 *                used twice. */
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
#define PREFETCH_C64(r)                                                   \
    PREFETCH_C(r)                                                         \
    _mm_prefetch((const char *)(c + (int64_t)(r)*ldc + 32), _MM_HINT_T0); \
    _mm_prefetch((const char *)(c + (int64_t)(r)*ldc + 48), _MM_HINT_T0);

/* Vector v (16 columns) of row r of an AVX-512 kernel's C tile (c##r##v) stored, or added to C. */
#define STORE1(r, v)                                                                       \
    {                                                                                      \
        float *cr = c + (int64_t)(r)*ldc + 16 * (v);                                       \
        _mm512_storeu_ps(cr, add ? _mm512_add_ps(_mm512_loadu_ps(cr), c##r##v) : c##r##v); \
    }

/* ---- AVX-512 f32, 6 x 64 --------------------------------------------------------------------- */

__attribute__((target("avx512f"))) static void
ukr_avx512(int64_t kc, const void *pa, const void *pb, float *c, int64_t ldc, int add) {
    const float *a = pa, *b = pb;
    ROWS6(PREFETCH_C64)
#define DECL(r)                                                          \
    __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps(), \
           c##r##2 = _mm512_setzero_ps(), c##r##3 = _mm512_setzero_ps();
    ROWS6(DECL)
#undef DECL
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        const __m512 b2 = _mm512_load_ps(b + 32), b3 = _mm512_load_ps(b + 48);
#define STEP(r)                                     \
    {                                               \
        const __m512 ar = _mm512_set1_ps(a[r]);     \
        c##r##0 = _mm512_fmadd_ps(ar, b0, c##r##0); \
        c##r##1 = _mm512_fmadd_ps(ar, b1, c##r##1); \
        c##r##2 = _mm512_fmadd_ps(ar, b2, c##r##2); \
        c##r##3 = _mm512_fmadd_ps(ar, b3, c##r##3); \
    }
        ROWS6(STEP)
#undef STEP
        a += 6;
        b += 64;
    }
#define STORE(r) STORE1(r, 0) STORE1(r, 1) STORE1(r, 2) STORE1(r, 3)
    ROWS6(STORE)
#undef STORE
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
#define STORE(r) STORE1(r, 0) STORE1(r, 1)
    ROWS14(STORE)
#undef STORE
}
#undef STORE1

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

/* ---- AMX-BF16, 32 x 32 ----------------------------------------------------------------------- */

/* GCC 11+ and Clang 12+ know the AMX intrinsics. */
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11)
typedef struct __attribute__((aligned(64))) amx_cfg {
    unsigned char palette, start_row, reserved[14];
    unsigned short colsb[16];
    unsigned char rows[16];
} amx_cfg;

/* Every tile 16 rows x 64 bytes: 16 f32 (C), 32 bf16 (A) or 16 bf16 pairs (B). A static
 * object: GCC 12 drops the stores into a local one before _tile_loadconfig (it does not see the
 * builtin read them), and a half-written configuration faults. */
static const amx_cfg g_amx_cfg = {.palette = 1,
                                  .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
                                  .rows = {16, 16, 16, 16, 16, 16, 16, 16}};

__attribute__((target("amx-tile"))) static void amx_begin(void) { _tile_loadconfig(&g_amx_cfg); }

__attribute__((target("amx-tile"))) static void amx_end(void) { _tile_release(); }

__attribute__((target("amx-tile,amx-bf16"))) static void
ukr_amx(int64_t kb, const void *pa, const void *pb, float *c, int64_t ldc, int add) {
    const char *a = pa, *b = pb;
    const int64_t ldcb = ldc * (int64_t)sizeof(float);
    if (add) {
        _tile_loadd(0, c, ldcb);
        _tile_loadd(1, c + 16, ldcb);
        _tile_loadd(2, c + 16 * ldc, ldcb);
        _tile_loadd(3, c + 16 * ldc + 16, ldcb);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int64_t g = 0; g < kb; g++) {
        _tile_loadd(4, a, 64);           /* A rows 0-15, k 32g .. 32g + 31 */
        _tile_loadd(5, a + 16 * 64, 64); /* A rows 16-31 */
        _tile_loadd(6, b, 128);          /* B pairs 16g .. 16g + 15, columns 0-15 */
        _tile_loadd(7, b + 64, 128);     /* columns 16-31 */
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        a += 32 * 64;
        b += 16 * 128;
    }
    _tile_stored(0, c, ldcb);
    _tile_stored(1, c + 16, ldcb);
    _tile_stored(2, c + 16 * ldc, ldcb);
    _tile_stored(3, c + 16 * ldc + 16, ldcb);
}
const hl_gemm_ukr_desc hl_gemm_ukr_amx = {32, 32, 2, 32, ukr_amx, amx_begin, amx_end};
#else
const hl_gemm_ukr_desc hl_gemm_ukr_amx = {32, 32, 2, 32, 0, 0, 0};
#endif

const hl_gemm_ukr_desc hl_gemm_ukr_avx2 = {6, 16, 1, 1, ukr_avx2, 0, 0};
const hl_gemm_ukr_desc hl_gemm_ukr_avx512 = {6, 64, 1, 1, ukr_avx512, 0, 0};
const hl_gemm_ukr_desc hl_gemm_ukr_avx512_bf16 = {14, 32, 2, 2, ukr_avx512_bf16, 0, 0};
#else
const hl_gemm_ukr_desc hl_gemm_ukr_avx2 = {6, 16, 1, 1, 0, 0, 0};
const hl_gemm_ukr_desc hl_gemm_ukr_avx512 = {6, 64, 1, 1, 0, 0, 0};
const hl_gemm_ukr_desc hl_gemm_ukr_avx512_bf16 = {14, 32, 2, 2, 0, 0, 0};
const hl_gemm_ukr_desc hl_gemm_ukr_amx = {32, 32, 2, 32, 0, 0, 0};
#endif
