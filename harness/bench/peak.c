/* The machine's limit: for each ISA this CPU has, a register-resident loop of independent
 * multiply-accumulate chains on every OpenMP thread (see cpu_bench.h). Each kernel is compiled
 * for its ISA alone with a target attribute and only called after CPUID (and, for the 512-bit
 * and tile states, XGETBV / the Linux permission request) says the CPU and OS support it, so the
 * binary runs on any x86-64 CPU whatever -march the rest of the build used. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "bench/cpu_bench.h"
#include "core/parallel.h"
#include "ops/cpu/gemm/gemm.h"
#include "ops/cpu/gemm/gemm_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define HL_PEAK_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define HL_PEAK_X86 0
#endif

/* Compilers that know the AMX intrinsics (GCC 11+, Clang 12+). */
#if HL_PEAK_X86 && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define HL_PEAK_AMX 1
#else
#define HL_PEAK_AMX 0
#endif

typedef struct cpu_caps {
    int avx2, fma, avx512f, avx512bf16, amx_tile, amx_bf16;
    int os_ymm, os_zmm, os_tile; /* XCR0: the OS saves the AVX, AVX-512 and tile states */
} cpu_caps;

#if HL_PEAK_X86
static unsigned long long xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static cpu_caps caps_get(void) {
    cpu_caps c = {0};
#if HL_PEAK_X86
    unsigned a, b, cx, d;
    if (!__get_cpuid(1, &a, &b, &cx, &d)) return c;
    c.fma = (cx >> 12) & 1;
    if (!((cx >> 27) & 1)) return c; /* no OSXSAVE: no XGETBV, no AVX state */
    unsigned long long xcr0 = xgetbv0();
    c.os_ymm = (xcr0 & 0x6) == 0x6;
    c.os_zmm = c.os_ymm && (xcr0 & 0xe0) == 0xe0;
    c.os_tile = (xcr0 & 0x60000) == 0x60000;
    if (__get_cpuid_max(0, NULL) < 7) return c;
    __cpuid_count(7, 0, a, b, cx, d);
    c.avx2 = (b >> 5) & 1;
    c.avx512f = (b >> 16) & 1;
    c.amx_bf16 = (d >> 22) & 1;
    c.amx_tile = (d >> 24) & 1;
    unsigned max_sub = a;
    if (max_sub >= 1) {
        __cpuid_count(7, 1, a, b, cx, d);
        c.avx512bf16 = (a >> 5) & 1;
    }
#endif
    return c;
}

void hl_cpu_features(char *buf, size_t n) {
    cpu_caps c = caps_get();
    snprintf(buf, n, "%s%s%s%s%s%s%s", c.avx2 && c.os_ymm ? " avx2" : "",
             c.fma && c.os_ymm ? " fma" : "", c.avx512f && c.os_zmm ? " avx512f" : "",
             c.avx512bf16 && c.os_zmm ? " avx512_bf16" : "", c.amx_tile ? " amx_tile" : "",
             c.amx_bf16 ? " amx_bf16" : "",
             (c.amx_tile || c.amx_bf16) && !c.os_tile ? " (tile state not enabled by the OS)" : "");
    if (!buf[0]) snprintf(buf, n, " none of avx2, fma, avx512f, avx512_bf16, amx");
    memmove(buf, buf + 1, strlen(buf)); /* the leading space */
}

/* ---- the kernels: iters iterations of 12 independent chains, FLOPs per iteration below ------ */

static volatile float g_sink; /* keeps the accumulators live */

#if HL_PEAK_X86
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

__attribute__((target("avx2,fma"))) static void loop_avx2(long iters) {
    __m256 x = _mm256_set1_ps(1e-8f), y = _mm256_set1_ps(0.5f);
#define DECL(i) __m256 a##i = _mm256_set1_ps((float)(i));
    CHAINS(DECL)
#undef DECL
    for (long it = 0; it < iters; it++) {
#define STEP(i) a##i = _mm256_fmadd_ps(x, y, a##i);
        CHAINS(STEP)
#undef STEP
        __asm__ volatile("" : "+x"(x)); /* x is not known to be constant: no hoisting */
    }
    __m256 s = a0;
#define SUM(i) s = _mm256_add_ps(s, a##i);
    CHAINS(SUM)
#undef SUM
    g_sink = _mm256_cvtss_f32(s);
}

__attribute__((target("avx512f"))) static void loop_avx512(long iters) {
    __m512 x = _mm512_set1_ps(1e-8f), y = _mm512_set1_ps(0.5f);
#define DECL(i) __m512 a##i = _mm512_set1_ps((float)(i));
    CHAINS(DECL)
#undef DECL
    for (long it = 0; it < iters; it++) {
#define STEP(i) a##i = _mm512_fmadd_ps(x, y, a##i);
        CHAINS(STEP)
#undef STEP
        __asm__ volatile("" : "+v"(x));
    }
    __m512 s = a0;
#define SUM(i) s = _mm512_add_ps(s, a##i);
    CHAINS(SUM)
#undef SUM
    g_sink = _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512bf16"))) static void loop_avx512bf16(long iters) {
    /* bf16 0x3c00 = 2^-7 and 0x3f00 = 0.5 in every half of the 32-bit lanes */
    __m512bh x = (__m512bh)_mm512_set1_epi32(0x3c003c00),
             y = (__m512bh)_mm512_set1_epi32(0x3f003f00);
#define DECL(i) __m512 a##i = _mm512_set1_ps((float)(i));
    CHAINS(DECL)
#undef DECL
    for (long it = 0; it < iters; it++) {
#define STEP(i) a##i = _mm512_dpbf16_ps(a##i, x, y);
        CHAINS(STEP)
#undef STEP
        __asm__ volatile("" : "+v"(x));
    }
    __m512 s = a0;
#define SUM(i) s = _mm512_add_ps(s, a##i);
    CHAINS(SUM)
#undef SUM
    g_sink = _mm512_reduce_add_ps(s);
}
#undef CHAINS
#endif

#if HL_PEAK_AMX
/* Tiles 0-3: 16 x 16 f32 accumulators; 4, 5: A (16 rows x 32 bf16); 6, 7: B (16 x 32 bf16
 * pairs). One iteration: 4 independent tdpbf16ps of 16 x 16 x 32 multiply-adds each. The
 * accumulators grow by ~1 per step: no overflow within the loop's iterations. */
__attribute__((target("amx-tile,amx-bf16"))) static void loop_amx(long iters) {
    /* Random bf16 values of magnitude 1/128 .. 1, not zeros: tdpbf16ps runs measurably faster
     * on zero tiles (3.9 vs 3.0 TFLOP/s for 2 cores of a Xeon in one test), and a GEMM's
     * operands are not zero. */
    uint16_t src[16 * 32] __attribute__((aligned(64)));
    hl_bench_random_bf16(src, 16 * 32, 12345u);
    __asm__ volatile("" ::: "memory"); /* the tile loads below read src */
    hl_gemm_ukr_amx.begin();           /* our GEMM's configuration: 8 tiles of 16 rows x 64 bytes */
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, src, 64);
    _tile_loadd(5, src, 64);
    _tile_loadd(6, src, 64);
    _tile_loadd(7, src, 64);
    for (long it = 0; it < iters; it++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float out[16 * 16];
    _tile_stored(0, out, 64);
    hl_gemm_ukr_amx.end();
    g_sink = out[0];
}

#endif

/* ---- timing ---------------------------------------------------------------------------------- */

/* Median GFLOP/s of reps runs of loop(iters) on every thread at once (wall time of the whole). */
static double time_loop(void (*loop)(long), long iters, double flop_per_iter, int reps) {
    int nt = omp_get_max_threads();
    double t[16];
    if (reps > 16) reps = 16;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up (clocks, thread start) */
        double t0 = hl_time();
#pragma omp parallel num_threads(nt)
        loop(r < 0 ? iters / 4 : iters);
        if (r >= 0) t[r] = hl_time() - t0;
    }
    double med = hl_bench_median(t, reps);
    return flop_per_iter * (double)iters * nt / med * 1e-9;
}

void hl_cpu_peaks(int reps, int only, hl_peak out[HL_PEAK_COUNT]) {
    cpu_caps c = caps_get();
#define WANT(i) (only < 0 || only == (i))
    static const char *const names[HL_PEAK_COUNT] = {"amx-bf16", "avx512-bf16", "avx512-f32",
                                                     "avx2-fma"};
    for (int i = 0; i < HL_PEAK_COUNT; i++) {
        out[i].isa = names[i];
        out[i].gflops = -1.0;
        snprintf(out[i].why, sizeof out[i].why, "not on this CPU");
    }
    if (reps < 1) reps = 1;
#if HL_PEAK_X86
    /* about 40 ms a run at 2-3 GHz */
    if (WANT(HL_PEAK_AVX2) && c.avx2 && c.fma && c.os_ymm) /* 12 x 8 lanes x 2 */
        out[HL_PEAK_AVX2].gflops = time_loop(loop_avx2, 8000000, 12 * 8 * 2, reps);
    if (WANT(HL_PEAK_AVX512_F32) && c.avx512f && c.os_zmm) /* 12 x 16 lanes x 2 */
        out[HL_PEAK_AVX512_F32].gflops = time_loop(loop_avx512, 8000000, 12 * 16 * 2, reps);
    if (WANT(HL_PEAK_AVX512_BF16) && c.avx512f && c.avx512bf16 && c.os_zmm) /* x 2 products */
        out[HL_PEAK_AVX512_BF16].gflops = time_loop(loop_avx512bf16, 8000000, 12 * 16 * 4, reps);
    if (c.avx512f && !c.os_zmm)
        snprintf(out[HL_PEAK_AVX512_F32].why, sizeof out[0].why, "the OS does not enable zmm");
    hl_peak *amx = &out[HL_PEAK_AMX_BF16];
    if (!c.amx_tile || !c.amx_bf16) snprintf(amx->why, sizeof amx->why, "no AMX-BF16 in CPUID");
    else if (!c.os_tile) snprintf(amx->why, sizeof amx->why, "the OS does not enable tile state");
#if HL_PEAK_AMX
    else if (!hl_gemm_ukr_amx.begin)
        snprintf(amx->why, sizeof amx->why, "built by a compiler without AMX intrinsics");
    else if (!hl_gemm_amx_permit())
        snprintf(amx->why, sizeof amx->why,
                 "the kernel refused arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)");
    else if (!WANT(HL_PEAK_AMX_BF16)) snprintf(amx->why, sizeof amx->why, "not asked for");
    else /* 4 x 16 x 16 x 32 x 2 */
        amx->gflops = time_loop(loop_amx, 1000000, 4.0 * 16 * 16 * 32 * 2, reps);
#else
    else snprintf(amx->why, sizeof amx->why, "built by a compiler without AMX intrinsics");
#endif
#else
    (void)c, (void)only;
#endif
#undef WANT
}
