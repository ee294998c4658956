/* Measurement helpers of the cpu backend (benchmarks and reports, not used by the model). */
#ifndef HL_CPU_BENCH_H
#define HL_CPU_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "ops/cpu/gemm/gemm.h"

/* The GEMM ceiling of this machine as the cpu backend sees it: GFLOP/s (2·n³ per run) of one
 * oneDNN matmul n x n x n, A dense in dt (HL_BF16 or HL_F32), B in the plain [N, K] layout that
 * hl_cpu_linear hands oneDNN, C float32, on all OpenMP threads. Median of reps timed runs after
 * one warm-up. Returns a negative value when n, dt or reps is unusable or memory or oneDNN fails. */
double hl_cpu_gemm_ceiling_gflops(int64_t n, hl_dtype dt, int reps);

/* The machine's limit (peak.c): per ISA, GFLOP/s of a register-resident loop of 12 independent
 * multiply-accumulate chains on every OpenMP thread at once (each thread its own loop, the wall
 * time of the whole), median of reps runs after a warm-up. FLOPs: 2 per f32 FMA lane; 4 per f32
 * lane of vdpbf16ps (two bf16 products and their sums); 2 per multiply-add of an AMX tile
 * product. An ISA the CPU or the OS lacks is skipped: gflops < 0 and why says which. */
enum { HL_PEAK_AMX_BF16, HL_PEAK_AVX512_BF16, HL_PEAK_AVX512_F32, HL_PEAK_AVX2, HL_PEAK_COUNT };
typedef struct hl_peak {
    const char *isa; /* "amx-bf16", "avx512-bf16", "avx512-f32", "avx2-fma" */
    double gflops;   /* < 0: skipped */
    char why[96];
} hl_peak;
/* only: one HL_PEAK_* index to measure (the others are reported skipped), or -1 for all. */
void hl_cpu_peaks(int reps, int only, hl_peak out[HL_PEAK_COUNT]);

/* The AMX kernel's ceiling by where its packed panels live (amx_ceiling.c): GFLOP/s of
 * hl_gemm_ukr_amx on every thread at once, each thread on its own block, median of reps runs:
 *   L1      an A and a B panel of K 256 (16 KiB each), whole K per call: the kernel's own limit;
 *   L2      8 A and 8 B panels of K 1536 (768 KiB each) in L2, whole K per call (the tiles
 *           accumulate the whole K; both panels stream from L2): our GEMM's loop;
 *   KSLICE  4 A and 8 B panels of K 1536 in slices of 384 (a B slice, 24 KiB, stays in L1 across
 *           the A panels; the C tiles are stored and reloaded per slice): the BLIS loop.
 * Returns 0, or -1 (every out[] < 0) where the AMX kernel is not available. */
enum { HL_AMX_PLACE_L1, HL_AMX_PLACE_L2, HL_AMX_PLACE_KSLICE, HL_AMX_PLACE_COUNT };
int hl_amx_ceilings(int reps, double out[HL_AMX_PLACE_COUNT]);
/* Test hook: one pass of placement k, every C value against its sum from the packed layouts in
 * double; the largest relative error, or < 0 where the AMX kernel is not available. */
double hl_amx_ceiling_check(int k);

/* The median of n >= 1 values (sorts t in place), and n random bf16 values of magnitude
 * 1/128 .. 1 and either sign from seed (not zeros: tdpbf16ps runs faster on zero tiles), the
 * benchmarks' shared helpers (bench_util.c). */
double hl_bench_median(double *t, int n);
void hl_bench_random_bf16(uint16_t *p, int64_t n, uint32_t seed);

/* A second process that spins on one core until hl_bench_busy_stop (or this process's death):
 * "another CPU-bound process shares the machine". Returns its pid, or -1 if fork fails. */
int hl_bench_busy_start(void);
void hl_bench_busy_stop(int pid);

/* What the scheduler itself allows parallel work beside one such process: regions of
 * region_seconds of perfectly balanced, dependent arithmetic on every OpenMP thread (no memory
 * traffic, no serial part), timed alone and beside hl_bench_busy_start; the shared / quiet ratio
 * of their medians over reps runs of about 0.25 s each, or < 0 if the process cannot start. */
double hl_bench_sched_ceiling(double region_seconds, int reps);

/* The CPU features the peaks look for that this CPU and OS have, space-separated (CPUID and
 * XGETBV; AMX is listed from CPUID alone, the permission request comes with the measurement). */
void hl_cpu_features(char *buf, size_t n);

/* Our GEMM with kernel k against oneDNN's matmul on the same shape and layouts, their runs
 * interleaved (ours, oneDNN, ours, ...) so that both see the same load: GFLOP/s (2·M·N·K per
 * run) of each, medians of reps <= 64 after one warm-up of each, on all OpenMP threads, C[M, N]
 * = op(A)·op(B) with beta 0 and dense operands (op(A) = Aᵀ stored [K, M] when transA, op(B) =
 * Bᵀ stored [N, K] when transB). bf16: B bf16; ours rounds the float32 A while packing, oneDNN
 * gets A already in bf16 (its time has no conversion, ours has). Returns 0, or -1 when the
 * kernel is not on this CPU or memory or oneDNN fails. */
int hl_gemm_bench_pair(hl_gemm_kernel k, int bf16, int transA, int transB, int64_t M, int64_t N,
                       int64_t K, int reps, double *ours, double *onednn);

#endif
