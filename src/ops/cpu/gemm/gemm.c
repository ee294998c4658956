/* Our GEMM's driver: the BLIS loop nest, the packing of both operand orientations, the scalar
 * kernel, and the run-time choice of kernel (CPUID / XGETBV). See gemm.h for the contract.
 *
 * Loops (BLIS, Goto): for each NC-wide column block of C (jc) and each KC-deep slice of K (pc),
 * B[pc:pc+KC, jc:jc+NC] is packed once into NR-wide micro-panels shared by all threads; then the
 * MC-tall row blocks of A (ic) are packed into MR-tall micro-panels, each by the thread that
 * uses it, and for each B micro-panel (jr) and A micro-panel (ir) the microkernel updates one
 * MR x NR tile of C. The first K slice stores (beta 0) or adds (beta 1), later ones add.
 *
 * Block sizes for Zen 5 (48 KiB L1d, 1 MiB L2 per core, 32 MiB L3 per 8-core CCX); the same
 * reasoning holds for Zen 4 and recent Intel cores:
 *   KC  a B micro-panel, KC x NR, is reused by every A micro-panel of the block: 512 k x 64 x
 *       4 bytes = 128 KiB for the f32 kernel, streamed from L2 (KC 256 and 384, measured on an
 *       AVX-512 Xeon, were no faster: the C tile's load and store amortised over fewer k).
 *   MC  the packed A block, MC x KC, stays in L2 across the jr loop: 336 x 512 x 4 = 672 KiB.
 *   NC  the packed B block, KC x NC, each thread its own (run_plan), from L3: 512 x 2048 x 4 =
 *       4 MiB.
 * The C tile's load + store is amortised over KC steps of MR x NR multiply-adds.
 * AMX: a 32 x 32 x 32 step of the kernel needs 4 KiB of A and B per 64 cycles of tdpbf16ps,
 * and a C tile round trip (4 KiB each way) costs about as much as a few such steps, so
 * splitting K costs more than the panels' L1 residency gains: KC is the whole K up to
 * AMX_KC_MAX (4096), the micro-panels (KC x 32 bf16, up to 256 KiB) stream from L2, MC is what
 * keeps the A block within 1 MiB of L2, and NC (up to 16384) the B block within 32 MiB of L3:
 * every NC block of columns packs the A block again, so NC should span the thread's band
 * (measured on a 2-core Xeon with AMX, 2 MiB L2 per core: KC 256-512 with a tile round trip per
 * slice ran 10-30% slower on the block's shapes; a B block of 32 MiB instead of 8, so that
 * A is packed once where K > 4096: the FFN's 2304 x 1536 x 8960 1.25x, 2304 x 8960 x 1536
 * 1.09x, 4096³ Aᵀ·B 1.15x, the other block and umT5 shapes within ±3%).
 *
 * Threads: each takes a fixed band of C's rows or columns and packs its own blocks (run_plan).
 * Which thread computes a tile does not change its value (one thread sums it, in k order), so
 * the results are the same for every thread count.
 *
 * Memory: the packed blocks live in grow-only buffers of the calling thread, one B block + one
 * A block per thread (4 MiB + 672 KiB per thread for f32, up to 32 MiB + 1 MiB for AMX; with
 * bf16 weights on an f32 kernel (no AVX512-BF16), the panels hold the widened float32 values:
 * the same sizes, never a converted copy of the whole weight). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/gemm/gemm.h"
#include "ops/cpu/gemm/gemm_internal.h"
#include "ops/cpu/vec_math.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#define GEMM_X86 1
#else
#define GEMM_X86 0
#endif
#if GEMM_X86 && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* ---- CPU features ---------------------------------------------------------------------------- */

typedef struct caps {
    int avx2_fma, avx512f, avx512bf16, amx;
} caps;

#if GEMM_X86
static unsigned long long xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

int hl_gemm_amx_permit(void) {
#if GEMM_X86 && defined(__linux__)
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return 0;
#endif
}

/* AMX-BF16 in use: CPUID, the OS saving the tile state (XCR0 bits 17-18), and the process's
 * permission for the tile data, asked for once (it holds for every thread). */
static int amx_usable(unsigned long long xcr0, unsigned edx7) {
    const int cpu = ((edx7 >> 22) & 1) && ((edx7 >> 24) & 1); /* amx_bf16, amx_tile */
    return cpu && (xcr0 & 0x60000) == 0x60000 && hl_gemm_amx_permit();
}

static caps caps_probe(void) {
    caps c = {0};
#if GEMM_X86
    unsigned a, b, cx, d;
    if (!__get_cpuid(1, &a, &b, &cx, &d)) return c;
    const int fma = (cx >> 12) & 1;
    if (!((cx >> 27) & 1)) return c; /* no OSXSAVE */
    const unsigned long long xcr0 = xgetbv0();
    const int ymm = (xcr0 & 0x6) == 0x6, zmm = ymm && (xcr0 & 0xe0) == 0xe0;
    if (__get_cpuid_max(0, NULL) < 7) return c;
    __cpuid_count(7, 0, a, b, cx, d);
    const unsigned max_sub = a;
    c.avx2_fma = ymm && fma && ((b >> 5) & 1);
    c.avx512f = zmm && ((b >> 16) & 1);
    c.amx = c.avx512f && amx_usable(xcr0, d);
    if (c.avx512f && max_sub >= 1) {
        __cpuid_count(7, 1, a, b, cx, d);
        c.avx512bf16 = (a >> 5) & 1;
    }
#endif
    return c;
}

static caps caps_get(void) {
    static caps cached;
    static int done;
    if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        cached = caps_probe(); /* idempotent: a race writes the same values */
        __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    }
    return cached;
}

int hl_gemm_kernel_available(hl_gemm_kernel k) {
    const caps c = caps_get();
    switch (k) {
    case HL_GEMM_AUTO:
    case HL_GEMM_SCALAR: return 1;
    case HL_GEMM_AVX2: return c.avx2_fma && hl_gemm_ukr_avx2.fn != NULL;
    case HL_GEMM_AVX512: return c.avx512f && hl_gemm_ukr_avx512.fn != NULL;
    case HL_GEMM_AVX512_BF16: return c.avx512bf16 && hl_gemm_ukr_avx512_bf16.fn != NULL;
    case HL_GEMM_AMX: return c.amx && hl_gemm_ukr_amx.fn != NULL;
    default: return 0;
    }
}

const char *hl_gemm_kernel_name(hl_gemm_kernel k) {
    static const char *const names[HL_GEMM_KERNEL_COUNT] = {"scalar", "avx2", "avx512",
                                                            "avx512-bf16", "amx"};
    return k == HL_GEMM_AUTO ? "auto" : (k >= 0 && k < HL_GEMM_KERNEL_COUNT ? names[k] : "?");
}

hl_gemm_kernel hl_gemm_kernel_best(int bf16) {
    if (bf16 && hl_gemm_kernel_available(HL_GEMM_AMX)) return HL_GEMM_AMX;
    if (bf16 && hl_gemm_kernel_available(HL_GEMM_AVX512_BF16)) return HL_GEMM_AVX512_BF16;
    if (hl_gemm_kernel_available(HL_GEMM_AVX512)) return HL_GEMM_AVX512;
    if (hl_gemm_kernel_available(HL_GEMM_AVX2)) return HL_GEMM_AVX2;
    return HL_GEMM_SCALAR;
}

/* ---- the scalar kernel, 4 x 8 ---------------------------------------------------------------- */

static void ukr_scalar(int64_t kc, const void *pa, const void *pb, float *c, int64_t ldc, int add) {
    const float *a = pa, *b = pb;
    float acc[4][8] = {{0}};
    for (int64_t k = 0; k < kc; k++, a += 4, b += 8)
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 8; j++) acc[r][j] += a[r] * b[j];
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 8; j++) c[r * ldc + j] = add ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}

static const hl_gemm_ukr_desc ukr_scalar_desc = {4, 8, 1, 1, ukr_scalar, 0, 0};

/* ---- the plan -------------------------------------------------------------------------------- */

typedef struct plan {
    const hl_gemm_ukr_desc *u;
    int64_t mc, kc, nc; /* block sizes; kc a multiple of the kernel's kblk */
    int64_t M, N, K;
    const void *A;
    int64_t sai, sak; /* op(A)(i, k) = A[i·sai + k·sak] */
    const void *B;
    int64_t sbk, sbj; /* op(B)(k, j) = B[k·sbk + j·sbj] */
    int a_bf16;       /* A holds bf16 (else float32) */
    int b_bf16;       /* B holds bf16 (else float32) */
    int round_a;      /* float32 A rounded to bf16 while packed into float32 panels (a bf16 */
    int round_b;      /* GEMM on an f32 kernel); likewise B */
    int beta;
    float *C;
    int64_t ldc;
    float *asum; /* NULL, or [M]: the row sums of op(A) (float32 values, k order) */
} plan;

/* kb k padded to the kernel's chunk (gemm_internal.h). */
static inline int64_t k_padded(const plan *p, int64_t kb) {
    const int64_t c = p->u->kblk;
    return (kb + c - 1) / c * c;
}

/* The stored A or B at element offset o: as float32 (bf16 widened, exact), or rounded to bf16. */
static inline float a_f32(const plan *p, int64_t o) {
    return p->a_bf16 ? hl_bf16_to_f32(((const hl_bf16 *)p->A)[o]) : ((const float *)p->A)[o];
}
static inline hl_bf16 a_bf(const plan *p, int64_t o) {
    return p->a_bf16 ? ((const hl_bf16 *)p->A)[o] : hl_f32_to_bf16(((const float *)p->A)[o]);
}
static inline float b_f32(const plan *p, int64_t o) {
    return p->b_bf16 ? hl_bf16_to_f32(((const hl_bf16 *)p->B)[o]) : ((const float *)p->B)[o];
}
static inline hl_bf16 b_bf(const plan *p, int64_t o) {
    return p->b_bf16 ? ((const hl_bf16 *)p->B)[o] : hl_f32_to_bf16(((const float *)p->B)[o]);
}

/* ---- packing ---------------------------------------------------------------------------------
 * A block: rows [i0, i0 + mb) of op(A), k in [k0, k0 + kb), into ceil(mb / MR) micro-panels of
 * MR·kp elements (kp = kb, or kb rounded up to even for pairs), rows past mb and the odd k zero.
 * B block: columns [j0, j0 + nb), NR-wide micro-panels [q0, q1) of the block. The inner loop
 * follows the operand's contiguous direction. */

/* The packing loops read a row segment of kb elements, then jump to the next row: too short a
 * run for the hardware prefetcher (profiled: the loads of the first touch were ~20% of a
 * 1152 x 1536 x 1536 GEMM), so the segment PF_AHEAD rows ahead is prefetched, a line at a time. */
enum { PF_AHEAD = 2, KC_MAX = 1024, AMX_KC_MAX = 4096 };
static inline void prefetch_row(const void *row, int valid, int64_t n, int esz) {
    if (!valid) return;
    for (int64_t o = 0; o < n * esz; o += 64) __builtin_prefetch((const char *)row + o, 0, 3);
}

/* Vector packing (AVX-512 builds; PACK_VEC 0 elsewhere, where the callers pack value by value).
 * The conversions round as hl_f32_to_bf16 does (hl_v_to_bf16: RNE, NaN kept quiet). */
#ifdef HL_CPU_AVX512
#define PACK_VEC 1
/* 32 floats of a row to bf16: one AMX tile row. */
static inline void tile_row_bf16(const float *s, hl_bf16 *d) {
    _mm256_store_si256((__m256i *)d, hl_v_to_bf16(_mm512_loadu_ps(s)));
    _mm256_store_si256((__m256i *)(d + 16), hl_v_to_bf16(_mm512_loadu_ps(s + 16)));
}

/* 16 consecutive values at element offset o of a float32 (rounded) or bf16 operand, as bf16
 * in the low halves of 16 32-bit lanes. */
static inline __m512i row16(const void *x, int x_bf16, int64_t o) {
    const __m256i h = x_bf16 ? _mm256_loadu_si256((const __m256i *)((const hl_bf16 *)x + o))
                             : hl_v_to_bf16(_mm512_loadu_ps((const float *)x + o));
    return _mm512_cvtepu16_epi32(h);
}

/* The 16 x 16 transpose of 32-bit elements: out[j] element i = r[i] element j (three rounds of
 * unpacks and lane shuffles, 64 shuffles: on the AMX Xeon a 16 x 16 block of gathers cost twice
 * the time). */
static inline void transpose16(const __m512i r[16], __m512i out[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) { /* 2 x 2 blocks of elements */
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* 4 x 4 blocks within each 128-bit lane */
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int g = 0; g < 2; g++) /* lanes 0, 2 and 1, 3 of row blocks 8g + {0, 4} */
        for (int i = 0; i < 4; i++) {
            t[8 * g + i] = _mm512_shuffle_i32x4(u[8 * g + i], u[8 * g + 4 + i], 0x88);
            t[8 * g + 4 + i] = _mm512_shuffle_i32x4(u[8 * g + i], u[8 * g + 4 + i], 0xdd);
        }
    for (int i = 0; i < 8; i++) { /* columns i and i + 8 */
        out[i] = _mm512_shuffle_i32x4(t[i], t[8 + i], 0x88);
        out[8 + i] = _mm512_shuffle_i32x4(t[i], t[8 + i], 0xdd);
    }
}

/* An AMX A chunk from a transposed operand: n <= 32 rows k of 32 values r (the stored A, float32
 * or bf16 (a_bf16), from element offset o, sak apart) into 32 tile rows (r) of 32 k, zero past
 * n. Per half of the 32 r: the rows are rounded to bf16 a pair of k at a time (a pair per
 * 32-bit lane, k even in the low half), 16 pairs x 16 r, then transposed into 16 tile rows. */
static inline void tile_cols_bf16(const void *a, int a_bf16, int64_t o, int64_t sak, int64_t n,
                                  uint32_t *d32) {
    for (int h = 0; h < 2; h++) {
        __m512i pairs[16], rows[16];
        for (int64_t pr = 0; pr < 16; pr++) {
            const int64_t k = 2 * pr;
            const __m512i lo = k < n ? row16(a, a_bf16, o + k * sak + 16 * h)
                                     : _mm512_setzero_si512();
            const __m512i hi = k + 1 < n ? row16(a, a_bf16, o + (k + 1) * sak + 16 * h)
                                         : _mm512_setzero_si512();
            pairs[pr] = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
        }
        transpose16(pairs, rows);
        for (int r = 0; r < 16; r++)
            _mm512_storeu_si512((void *)(d32 + (16 * h + r) * 16), rows[r]);
    }
}

/* 16 columns of two rows of B (k even at element offset o, k + 1 at o + sbk; float32, rounded,
 * or bf16) into 16 bf16 pairs. */
static inline void interleave16(const void *b, int b_bf16, int64_t o, int64_t sbk, uint32_t *d32) {
    const __m512i lo = row16(b, b_bf16, o), hi = row16(b, b_bf16, o + sbk);
    _mm512_storeu_si512((void *)d32, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
}

/* np pairs of 16 B columns (rows of the stored B, sbj apart; a pair is a 4-byte unit at 2g)
 * into d32[g·NR + c]: one gather of the 16 columns per pair. The byte offsets must fit 32 bits. */
static inline int pairs16_ok(int64_t sbj) { return sbj * 2 * 16 < ((int64_t)1 << 31); }
static inline void pairs16(const hl_bf16 *s, int64_t sbj, int64_t np, int NR, uint32_t *d32) {
    const __m512i off = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32((int)(sbj * 2)));
    for (int64_t g = 0; g < np; g++)
        _mm512_storeu_si512((void *)(d32 + g * NR),
                            _mm512_i32gather_epi32(off, (const void *)(s + 2 * g), 1));
}

/* Rows [0, n) (n <= 16) of a row-major float32 or bf16 (s_bf16) operand, ld elements apart, k
 * in [0, kb16) (a multiple of 16), into the f32 kernels' panel layout d[k·ldd + r]: 16 x 16
 * blocks transposed in registers, n lanes stored (the scalar loops wrote one value per panel
 * row, 128 bytes apart: with bf16 weights, a fifth of umT5's encode on an AVX-512 Xeon without
 * bf16 dot products). */
static void pack_t16(const void *s, int s_bf16, int64_t ld, int n, int64_t kb16, float *d,
                     int64_t ldd) {
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    const hl_bf16 *sb = s;
    const float *sf = s;
    for (int64_t k = 0; k < kb16; k += 16) {
        __m512i r[16], t[16];
        for (int i = 0; i < 16; i++)
            r[i] = i >= n   ? _mm512_setzero_si512()
                   : s_bf16 ? _mm512_castps_si512(hl_v_from_bf16(
                                  _mm256_loadu_si256((const __m256i *)(sb + i * ld + k))))
                            : _mm512_loadu_si512((const void *)(sf + i * ld + k));
        transpose16(r, t);
        for (int j = 0; j < 16; j++) _mm512_mask_storeu_epi32(d + (k + j) * ldd, m, t[j]);
    }
}

#else
#define PACK_VEC 0
static void pack_t16(const void *s, int s_bf16, int64_t ld, int n, int64_t kb16, float *d,
                     int64_t ldd) {
    (void)s, (void)s_bf16, (void)ld, (void)n, (void)kb16, (void)d, (void)ldd;
}
static inline void tile_row_bf16(const float *s, hl_bf16 *d) { (void)s, (void)d; }
static inline void tile_cols_bf16(const void *a, int a_bf16, int64_t o, int64_t sak, int64_t n,
                                  uint32_t *d32) {
    (void)a, (void)a_bf16, (void)o, (void)sak, (void)n, (void)d32;
}
static inline void interleave16(const void *b, int b_bf16, int64_t o, int64_t sbk, uint32_t *d32) {
    (void)b, (void)b_bf16, (void)o, (void)sbk, (void)d32;
}
static inline int pairs16_ok(int64_t sbj) { return (void)sbj, 0; }
static inline void pairs16(const hl_bf16 *s, int64_t sbj, int64_t np, int NR, uint32_t *d32) {
    (void)s, (void)sbj, (void)np, (void)NR, (void)d32;
}
#endif

/* n float32 values rounded to bf16 and back, in place (RNE, as hl_f32_to_bf16). */
static void round_f32(float *d, int64_t n) {
    int64_t i = 0;
#if PACK_VEC
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(d + i, hl_v_from_bf16(hl_v_to_bf16(_mm512_loadu_ps(d + i))));
#endif
    for (; i < n; i++) d[i] = hl_bf16_to_f32(hl_f32_to_bf16(d[i]));
}

/* n bf16 values widened to float32 (exact). */
static void widen_bf16(const hl_bf16 *s, float *d, int64_t n) {
    int64_t i = 0;
#if PACK_VEC
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(d + i, hl_v_from_bf16(_mm256_loadu_si256((const __m256i *)(s + i))));
#endif
    for (; i < n; i++) d[i] = hl_bf16_to_f32(s[i]);
}

/* AMX, A transposed (stored [K, M]): the whole micro-panels of the block, 32-k chunk by chunk
 * across all of them, so that each stored row k is read along the block's mb values at once
 * (chunk by chunk within one panel, a 4096-deep K touched 4096 rows 128 bytes at a time: TLB
 * misses, 0.67x the x·Wᵀ form at 4096³). Returns the rows done (a multiple of MR). */
static int64_t pack_a_amx_t(const plan *p, int64_t i0, int64_t mb, int64_t k0, int64_t kb,
                            hl_bf16 *d) {
    const int MR = p->u->mr;
    const int64_t kp = k_padded(p, kb), full = mb / MR * MR;
    if (!PACK_VEC || MR != 32) return 0;
    for (int64_t g = 0; g * 32 < kb; g++)
        for (int64_t ir = 0; ir < full; ir += MR)
            tile_cols_bf16(p->A, p->a_bf16, (i0 + ir) + (k0 + g * 32) * p->sak, p->sak,
                           kb - g * 32 < 32 ? kb - g * 32 : 32,
                           (uint32_t *)(d + ir * kp + g * MR * 32));
    return full;
}

static void pack_a(const plan *p, int64_t i0, int64_t mb, int64_t k0, int64_t kb, void *dst) {
    const int MR = p->u->mr;
    const int64_t kp = k_padded(p, kb);
    const int64_t done = p->u->kblk == 32 && p->sak != 1 ? pack_a_amx_t(p, i0, mb, k0, kb, dst) : 0;
    for (int64_t ir = done; ir < mb; ir += MR) {
        const int64_t rows = mb - ir < MR ? mb - ir : MR;
        /* op(A)(i0 + ir + r, k0 + k) is at o + r·sai + k·sak; a: the float32 A there, or NULL */
        const int64_t o = (i0 + ir) * p->sai + k0 * p->sak;
        const float *a = p->a_bf16 ? NULL : (const float *)p->A + o;
        if (p->u->pair == 1) {
            float *d = (float *)dst + ir * kp;
            if (rows < MR) memset(d, 0, (size_t)(MR * kp) * sizeof *d);
            /* k in [0, kv): 16 x 16 blocks in registers; the rest value by value */
            const int64_t kv = PACK_VEC && p->sak == 1 && MR <= 16 ? kb / 16 * 16 : 0;
            if (kv) {
                const int esz = p->a_bf16 ? 2 : 4;
                pack_t16((const char *)p->A + o * esz, p->a_bf16, p->sai, (int)rows, kv, d, MR);
            }
            if (kv == kb) { /* every k done */
            } else if (a && p->sak == 1) {
                for (int64_t k0b = kv; k0b < kb; k0b += 16) {
                    const int64_t ke = kb - k0b < 16 ? kb : k0b + 16;
                    for (int64_t r = 0; r < rows; r++)
                        for (int64_t k = k0b; k < ke; k++) d[k * MR + r] = a[r * p->sai + k];
                }
            } else if (a) {
                for (int64_t k = 0; k < kb; k++)
                    for (int64_t r = 0; r < rows; r++) d[k * MR + r] = a[k * p->sak + r * p->sai];
            } else {
                for (int64_t k = kv; k < kb; k++)
                    for (int64_t r = 0; r < rows; r++)
                        d[k * MR + r] = a_f32(p, o + k * p->sak + r * p->sai);
            }
            if (p->round_a) round_f32(d, kb * MR);
        } else if (p->u->kblk == 32) { /* AMX: 64-byte tile rows of 32 k */
            hl_bf16 *d = (hl_bf16 *)dst + ir * kp;
            if (rows < MR || kp != kb) memset(d, 0, (size_t)(MR * kp) * sizeof *d);
            if (p->sak == 1) {
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t g = 0; g * 32 < kb; g++) {
                        const int64_t n = kb - g * 32 < 32 ? kb - g * 32 : 32;
                        hl_bf16 *t = d + (g * MR + r) * 32;
                        if (!a)
                            memcpy(t, (const hl_bf16 *)p->A + o + r * p->sai + g * 32,
                                   (size_t)n * sizeof *t);
                        else if (PACK_VEC && n == 32) tile_row_bf16(a + r * p->sai + g * 32, t);
                        else hl_cpu_f32_to_bf16(a + r * p->sai + g * 32, t, n);
                    }
            } else { /* the edge panel (the whole ones: pack_a_amx_t) */
                for (int64_t k = 0; k < kb; k++)
                    for (int64_t r = 0; r < rows; r++)
                        d[((k >> 5) * MR + r) * 32 + (k & 31)] = a_bf(p,
                                                                      o + k * p->sak + r * p->sai);
            }
        } else {
            hl_bf16 *d = (hl_bf16 *)dst + ir * kp;
            if (rows < MR || kp != kb) memset(d, 0, (size_t)(MR * kp) * sizeof *d);
            if (p->sak == 1 && kb <= KC_MAX) {
                /* rows rounded by the vector conversion into tmp, then moved a pair at a time */
                static _Thread_local hl_bf16 tmp[16][KC_MAX + 2];
                uint32_t *d32 = (uint32_t *)d;
                for (int64_t r = 0; r < rows; r++) {
                    if (a) hl_cpu_f32_to_bf16(a + r * p->sai, tmp[r], kb);
                    else
                        memcpy(tmp[r], (const hl_bf16 *)p->A + o + r * p->sai,
                               (size_t)kb * sizeof tmp[r][0]);
                    tmp[r][kb] = 0;
                }
                for (int64_t g0 = 0; g0 < kp / 2; g0 += 16) {
                    const int64_t ge = kp / 2 - g0 < 16 ? kp / 2 : g0 + 16;
                    for (int64_t r = 0; r < rows; r++)
                        for (int64_t g = g0; g < ge; g++)
                            memcpy(&d32[g * MR + r], &tmp[r][2 * g], 4);
                }
            } else if (a) {
                for (int64_t k = 0; k < kb; k++)
                    for (int64_t r = 0; r < rows; r++)
                        d[((k >> 1) * MR + r) * 2 + (k & 1)] = hl_f32_to_bf16(
                            a[k * p->sak + r * p->sai]);
            } else {
                for (int64_t k = 0; k < kb; k++)
                    for (int64_t r = 0; r < rows; r++)
                        d[((k >> 1) * MR + r) * 2 + (k & 1)] = a_bf(p, o + k * p->sak + r * p->sai);
            }
        }
    }
}

/* Pairs, B stored [K, N] (sbj = 1): the whole micro-panels of [q0, q1), a pair of rows k at a
 * time across all of them, so each stored row is read along the block (panel by panel, each
 * row of a panel is on another page: the FFN's dW, whose float32 x has 2304 rows 35 KiB apart,
 * took 53 ms so against 37 ms from a bf16 copy). Returns the first panel not done. */
static int64_t pack_b_pairs_rows(const plan *p, int64_t j0, int64_t nb, int64_t k0, int64_t kb,
                                 int64_t q0, int64_t q1, hl_bf16 *d) {
    const int NR = p->u->nr;
    const int64_t kp = k_padded(p, kb), full = nb / NR, qe = q1 < full ? q1 : full;
    if (!PACK_VEC || p->sbj != 1 || NR % 16 != 0 || qe <= q0) return q0;
    for (int64_t k = 0; k + 2 <= kb; k += 2) {
        const int64_t o = (k0 + k) * p->sbk + j0;
        for (int64_t q = q0; q < qe; q++)
            for (int64_t c = 0; c < NR; c += 16)
                interleave16(p->B, p->b_bf16, o + q * NR + c, p->sbk,
                             (uint32_t *)(d + q * NR * kp) + (k >> 1) * NR + c);
    }
    if (kb & 1) /* the last pair: row kb - 1 and a zero */
        for (int64_t q = q0; q < qe; q++)
            for (int64_t c = 0; c < NR; c++) {
                hl_bf16 *t = d + q * NR * kp + ((kb >> 1) * NR + c) * 2;
                t[0] = b_bf(p, (k0 + kb - 1) * p->sbk + j0 + q * NR + c);
                t[1] = 0;
            }
    for (int64_t q = q0; q < qe && kp > kb + (kb & 1); q++) /* the padding past kb, rounded up */
        memset(d + q * NR * kp + (kb + (kb & 1)) * NR, 0,
               (size_t)((kp - kb - (kb & 1)) * NR) * sizeof *d);
    return qe;
}

static void pack_b(const plan *p, int64_t j0, int64_t nb, int64_t k0, int64_t kb, int64_t q0,
                   int64_t q1, void *dst) {
    const int NR = p->u->nr;
    const int64_t kp = k_padded(p, kb);
    if (p->u->pair == 2 && !(p->sbk == 1 && p->b_bf16))
        q0 = pack_b_pairs_rows(p, j0, nb, k0, kb, q0, q1, dst);
    for (int64_t q = q0; q < q1; q++) {
        const int64_t jr = q * NR, cols = nb - jr < NR ? nb - jr : NR;
        const int64_t jj = j0 + jr;
        /* op(B)(k0 + k, jj + c) is at o + k·sbk + c·sbj */
        const int64_t o = k0 * p->sbk + jj * p->sbj;
        if (p->u->pair == 1) {
            float *d = (float *)dst + jr * kp;
            if (cols < NR) memset(d, 0, (size_t)(NR * kp) * sizeof *d);
            /* k in [0, kv): 16 columns x 16 k at a time in registers; the rest value by value */
            const int64_t kv = PACK_VEC && p->sbk == 1 ? kb / 16 * 16 : 0;
            for (int64_t c = 0; c < cols && kv; c += 16) {
                const int esz = p->b_bf16 ? 2 : 4, n = cols - c < 16 ? (int)(cols - c) : 16;
                pack_t16((const char *)p->B + (o + c * p->sbj) * esz, p->b_bf16, p->sbj, n, kv,
                         d + c, NR);
            }
            if (kv == kb) { /* every k done */
            } else if (p->sbk == 1 && !p->b_bf16) {
                const float *b = (const float *)p->B + o;
                for (int64_t k0b = kv; k0b < kb; k0b += 16) {
                    const int64_t ke = kb - k0b < 16 ? kb : k0b + 16;
                    for (int64_t c = 0; c < cols; c++)
                        for (int64_t k = k0b; k < ke; k++) d[k * NR + c] = b[c * p->sbj + k];
                }
            } else if (p->sbk == 1) {
                const hl_bf16 *b = (const hl_bf16 *)p->B + o;
                for (int64_t c = 0; c < cols; c++) {
                    prefetch_row(b + (c + PF_AHEAD) * p->sbj + kv, c + PF_AHEAD < cols, kb - kv, 2);
                    for (int64_t k = kv; k < kb; k++)
                        d[k * NR + c] = hl_bf16_to_f32(b[c * p->sbj + k]);
                }
            } else if (!p->b_bf16) {
                const float *b = (const float *)p->B + o;
                for (int64_t k = 0; k < kb; k++)
                    for (int64_t c = 0; c < cols; c++) d[k * NR + c] = b[k * p->sbk + c * p->sbj];
            } else if (p->sbj == 1) { /* bf16 rows of B along j */
                for (int64_t k = 0; k < kb; k++)
                    widen_bf16((const hl_bf16 *)p->B + o + k * p->sbk, d + k * NR, cols);
            } else {
                for (int64_t k = 0; k < kb; k++)
                    for (int64_t c = 0; c < cols; c++)
                        d[k * NR + c] = b_f32(p, o + k * p->sbk + c * p->sbj);
            }
            if (p->round_b) round_f32(d, kb * NR);
        } else { /* pairs */
            hl_bf16 *d = (hl_bf16 *)dst + jr * kp;
            if (cols < NR || kp != kb) memset(d, 0, (size_t)(NR * kp) * sizeof *d);
            if (p->sbk == 1 && p->b_bf16) { /* a pair of k is 4 contiguous bytes of a row of B */
                const hl_bf16 *s = (const hl_bf16 *)p->B + o;
                uint32_t *d32 = (uint32_t *)d;
                int64_t c0 = 0; /* columns [0, c0) done: whole micro-panels, 16 at a time */
                if (PACK_VEC && cols == NR && NR % 16 == 0 && pairs16_ok(p->sbj))
                    for (; c0 < NR; c0 += 16)
                        pairs16(s + c0 * p->sbj, p->sbj, kb / 2, NR, d32 + c0);
                for (int64_t g0 = 0; g0 < kb / 2 && c0 < cols; g0 += 16) {
                    const int64_t ge = kb / 2 - g0 < 16 ? kb / 2 : g0 + 16;
                    for (int64_t c = c0; c < cols; c++)
                        for (int64_t g = g0; g < ge; g++)
                            memcpy(&d32[g * NR + c], s + c * p->sbj + 2 * g, 4);
                }
                if (kb & 1)
                    for (int64_t c = 0; c < cols; c++)
                        d[((kb >> 1) * NR + c) * 2] = s[c * p->sbj + kb - 1];
            } else {
                int64_t k = 0; /* pairs of rows [0, k) done 16 columns at a time */
                if (PACK_VEC && p->sbj == 1 && cols == NR && NR % 16 == 0)
                    for (; k + 2 <= kb; k += 2)
                        for (int64_t c = 0; c < NR; c += 16)
                            interleave16(p->B, p->b_bf16, o + k * p->sbk + c, p->sbk,
                                         (uint32_t *)d + (k >> 1) * NR + c);
                for (; k < kb; k++)
                    for (int64_t c = 0; c < cols; c++)
                        d[((k >> 1) * NR + c) * 2 + (k & 1)] = b_bf(p, o + k * p->sbk + c * p->sbj);
            }
        }
    }
}

/* ---- the loop nest --------------------------------------------------------------------------- */

/* One A block (rows [i0, i0 + mb)) against B micro-panels [q0, q1) of the packed B block. */
static void macro_kernel(const plan *p, int64_t i0, int64_t mb, int64_t j0, int64_t nb, int64_t kb,
                         int add, const char *pa, const char *pb, int64_t q0, int64_t q1) {
    const int MR = p->u->mr, NR = p->u->nr, esz = p->u->pair == 2 ? 2 : 4;
    const int64_t kp = k_padded(p, kb), ksteps = kp / p->u->kblk;
    float tmp[32 * 32] __attribute__((aligned(64))); /* MR x NR <= 32 x 32 */
    for (int64_t q = q0; q < q1; q++) {
        const int64_t jr = q * NR, cols = nb - jr < NR ? nb - jr : NR;
        const char *b = pb + (size_t)(jr * kp) * esz;
        for (int64_t ir = 0; ir < mb; ir += MR) {
            const int64_t rows = mb - ir < MR ? mb - ir : MR;
            const char *a = pa + (size_t)(ir * kp) * esz;
            float *c = p->C + (i0 + ir) * p->ldc + j0 + jr;
            if (rows == MR && cols == NR) {
                p->u->fn(ksteps, a, b, c, p->ldc, add);
                continue;
            }
            p->u->fn(ksteps, a, b, tmp, NR, 0);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cols; j++)
                    c[r * p->ldc + j] = add ? c[r * p->ldc + j] + tmp[r * NR + j] : tmp[r * NR + j];
        }
    }
}

/* asum[i] (+)= op(A)(i, k) over the A block just packed (rows [i0, i0 + mb), k in [k0, k0 +
 * kb)), from the stored values, one row's terms in k order: asum[i] is the float32 sum of row i
 * in k order, whatever the blocks (the block is in L2 from its packing). */
static void asum_block(const plan *p, int64_t i0, int64_t mb, int64_t k0, int64_t kb) {
    float *s = p->asum + i0;
    if (k0 == 0) memset(s, 0, (size_t)mb * sizeof *s);
    for (int64_t r = 0; r < mb && p->sak == 1; r++) {
        float acc = s[r];
        for (int64_t k = 0; k < kb; k++) acc += a_f32(p, (i0 + r) * p->sai + k0 + k);
        s[r] = acc;
    }
    for (int64_t k = 0; k < kb && p->sak != 1; k++) {
        const int64_t o = (k0 + k) * p->sak + i0 * p->sai;
        if (!p->a_bf16 && p->sai == 1) { /* rows contiguous along i: vectorised across rows */
            const float *a = (const float *)p->A + o;
            for (int64_t r = 0; r < mb; r++) s[r] += a[r];
        } else {
            for (int64_t r = 0; r < mb; r++) s[r] += a_f32(p, o + r * p->sai);
        }
    }
}

/* The loop nest over rows [i0, i1) and columns [js, je) of C, on one thread. The row sums of A
 * (asum) are taken by the thread whose columns start at 0, while it packs its first column
 * block: each row by one thread, whatever the partition. */
static void run_part(const plan *p, int64_t i0, int64_t i1, int64_t js, int64_t je, char *bbuf,
                     char *abuf) {
    const int NR = p->u->nr;
    for (int64_t j0 = js; j0 < je; j0 += p->nc) {
        const int64_t nb = je - j0 < p->nc ? je - j0 : p->nc, n_q = (nb + NR - 1) / NR;
        for (int64_t k0 = 0; k0 < p->K; k0 += p->kc) {
            const int64_t kb = p->K - k0 < p->kc ? p->K - k0 : p->kc;
            const int add = k0 > 0 || p->beta;
            pack_b(p, j0, nb, k0, kb, 0, n_q, bbuf);
            for (int64_t ic = i0; ic < i1; ic += p->mc) {
                const int64_t mb = i1 - ic < p->mc ? i1 - ic : p->mc;
                pack_a(p, ic, mb, k0, kb, abuf);
                if (p->asum && j0 == 0) asum_block(p, ic, mb, k0, kb);
                macro_kernel(p, ic, mb, j0, nb, kb, add, abuf, bbuf, 0, n_q);
            }
        }
    }
}

/* Thread t of nt takes a fixed part of C: a band of rows (whole register tiles), or a band of
 * columns when there are too few rows for that or when N > M; it packs its own B and A blocks,
 * so the threads never wait for each other (a barrier per block cost a lot on a loaded machine,
 * where one descheduled thread stalls the others). So each thread packs all of the operand its
 * band spans: B (K x N) for row bands, A (M x K) for column bands, and the split duplicates the
 * smaller (on the AMX machine, column bands where N > M: umT5's 512 x 4096 x 4096 and the
 * block's 2304 x 8960 x 1536 ran 8-30% faster). */
static void run_plan(const plan *p, int nthr, char *bufs, size_t a_bytes, size_t b_bytes) {
    const int MR = p->u->mr, NR = p->u->nr;
#pragma omp parallel num_threads(nthr) if (nthr > 1)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        char *bbuf = bufs + (size_t)t * (a_bytes + b_bytes), *abuf = bbuf + b_bytes;
        int64_t i0 = 0, i1 = p->M, js = 0, je = p->N;
        if (p->M >= (int64_t)nt * 4 * MR && (p->N <= p->M || p->N < (int64_t)nt * 4 * NR)) {
            const int64_t per = ((p->M + MR - 1) / MR + nt - 1) / nt * MR;
            i0 = t * per < p->M ? t * per : p->M;
            i1 = i0 + per < p->M ? i0 + per : p->M;
        } else {
            const int64_t per = ((p->N + NR - 1) / NR + nt - 1) / nt * NR;
            js = t * per < p->N ? t * per : p->N;
            je = js + per < p->N ? js + per : p->N;
        }
        if (i0 < i1 && js < je) {
            if (p->u->begin) p->u->begin();
            run_part(p, i0, i1, js, je, bbuf, abuf);
            if (p->u->end) p->u->end();
        }
    }
}

/* Grow-only buffers of the calling thread (OpenMP threads and the model's thread live as long
 * as the process; a first-touch page fault per call would cost more than the small GEMMs). Kept
 * under a pthread key so a thread that ends (a session's worker) frees its buffer. */
typedef struct thread_buf {
    void *p;
    size_t cap;
} thread_buf;

static pthread_key_t g_buf_key;
static pthread_once_t g_buf_once = PTHREAD_ONCE_INIT;
static int g_buf_key_ok;

static void buf_free(void *b) {
    thread_buf *t = b;
    free(t->p);
    free(t);
}

static void buf_key_make(void) { g_buf_key_ok = pthread_key_create(&g_buf_key, buf_free) == 0; }

static void *buf_get(size_t bytes) {
    pthread_once(&g_buf_once, buf_key_make);
    if (!g_buf_key_ok) return NULL;
    thread_buf *t = pthread_getspecific(g_buf_key);
    if (!t) {
        if (!(t = calloc(1, sizeof *t))) return NULL;
        if (pthread_setspecific(g_buf_key, t) != 0) {
            free(t);
            return NULL;
        }
    }
    if (t->cap >= bytes) return t->p;
    free(t->p);
    t->p = NULL;
    t->cap = 0;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    t->p = p;
    t->cap = bytes;
    return p;
}

/* bf16: a bf16 GEMM (operands rounded to bf16; a_bf16 / b_bf16 say which are stored so), else
 * float32 (both stored float32). */
static int gemm(hl_gemm_kernel k, int bf16, int nthr, int transA, int transB, int64_t M, int64_t N,
                int64_t K, const void *A, int a_bf16, int64_t lda, const void *B, int b_bf16,
                int64_t ldb, int beta, float *C, int64_t ldc, float *asum) {
    if (k == HL_GEMM_AUTO) k = hl_gemm_kernel_best(bf16);
    if (!bf16 && (k == HL_GEMM_AVX512_BF16 || k == HL_GEMM_AMX)) k = HL_GEMM_AVX512;
    if (!hl_gemm_kernel_available(k)) return -1;
    plan p = {.M = M,
              .N = N,
              .K = K,
              .A = A,
              .B = B,
              .a_bf16 = a_bf16,
              .b_bf16 = b_bf16,
              .beta = beta,
              .C = C,
              .ldc = ldc,
              .asum = asum};
    p.sai = transA ? 1 : lda, p.sak = transA ? lda : 1;
    p.sbk = transB ? 1 : ldb, p.sbj = transB ? ldb : 1;
    if (asum && M > 0 && (N <= 0 || K <= 0)) /* no C to pack A for: the row sums alone */
        asum_block(&p, 0, M, 0, K > 0 ? K : 0);
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0) {
        if (!beta)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof *C);
        return 0;
    }
    switch (k) {
    case HL_GEMM_AVX2: p.u = &hl_gemm_ukr_avx2, p.mc = 288, p.kc = 512, p.nc = 2048; break;
    case HL_GEMM_AVX512: p.u = &hl_gemm_ukr_avx512, p.mc = 336, p.kc = 512, p.nc = 2048; break;
    case HL_GEMM_AVX512_BF16:
        p.u = &hl_gemm_ukr_avx512_bf16, p.mc = 336, p.kc = KC_MAX, p.nc = 2048;
        break;
    case HL_GEMM_AMX: { /* the blocks: see "AMX" at the top */
        const int64_t kc = K < AMX_KC_MAX ? (K + 31) / 32 * 32 : AMX_KC_MAX;
        const int64_t mc = (1 << 20) / (kc * 2) / 32 * 32, nc = (32 << 20) / (kc * 2) / 32 * 32;
        p.u = &hl_gemm_ukr_amx, p.kc = kc;
        p.mc = mc < 32 ? 32 : mc > 256 ? 256 : mc;
        p.nc = nc < 32 ? 32 : nc > 16384 ? 16384 : nc;
        break;
    }
    default: p.u = &ukr_scalar_desc, p.mc = 128, p.kc = 256, p.nc = 1024; break;
    }
    p.round_a = bf16 && !a_bf16 && p.u->pair == 1;
    p.round_b = bf16 && !b_bf16 && p.u->pair == 1;
    if (nthr < 1 || omp_in_parallel()) nthr = 1;
    const int MR = p.u->mr, NR = p.u->nr, esz = p.u->pair == 2 ? 2 : 4;
    /* k padded to the kernel's chunk; blocks no larger than the problem (whole panels) */
    const int64_t kb = K < p.kc ? k_padded(&p, K) : p.kc;
    const int64_t mb = (M < p.mc ? M : p.mc) + MR - 1, nb = (N < p.nc ? N : p.nc) + NR - 1;
    const size_t a_bytes = ((size_t)(mb / MR * MR * kb) * esz + 63) & ~(size_t)63;
    const size_t b_bytes = ((size_t)(nb / NR * NR * kb) * esz + 63) & ~(size_t)63;
    char *buf = buf_get((size_t)nthr * (a_bytes + b_bytes));
    if (!buf) return -1;
    run_plan(&p, nthr, buf, a_bytes, b_bytes);
    return 0;
}

int hl_gemm_f32(hl_gemm_kernel k, int nthr, int transA, int transB, int64_t M, int64_t N, int64_t K,
                const float *A, int64_t lda, const float *B, int64_t ldb, int beta, float *C,
                int64_t ldc) {
    return gemm(k, 0, nthr, transA, transB, M, N, K, A, 0, lda, B, 0, ldb, beta, C, ldc, NULL);
}

int hl_gemm_bf16(hl_gemm_kernel k, int nthr, int transA, int transB, int64_t M, int64_t N,
                 int64_t K, const float *A, int64_t lda, const hl_bf16 *B, int64_t ldb, int beta,
                 float *C, int64_t ldc) {
    return gemm(k, 1, nthr, transA, transB, M, N, K, A, 0, lda, B, 1, ldb, beta, C, ldc, NULL);
}

int hl_gemm_bf16x(hl_gemm_kernel k, int nthr, int transA, int transB, int64_t M, int64_t N,
                  int64_t K, hl_dtype ta, const void *A, int64_t lda, hl_dtype tb, const void *B,
                  int64_t ldb, int beta, float *C, int64_t ldc, float *asum) {
    if ((ta != HL_F32 && ta != HL_BF16) || (tb != HL_F32 && tb != HL_BF16)) return -1;
    return gemm(k, 1, nthr, transA, transB, M, N, K, A, ta == HL_BF16, lda, B, tb == HL_BF16, ldb,
                beta, C, ldc, asum);
}
