/* Measurement helpers of the cpu backend (benchmarks and reports, not used by the model). */
#ifndef HL_CPU_BENCH_H
#define HL_CPU_BENCH_H

#include <stdint.h>

#include "core/dtype.h"

/* The GEMM ceiling of this machine as the cpu backend sees it: GFLOP/s (2·n³ per run) of one
 * oneDNN matmul n x n x n, A dense in dt (HL_BF16 or HL_F32), B in the plain [N, K] layout that
 * hl_cpu_linear hands oneDNN, C float32, on all OpenMP threads. Median of reps timed runs after
 * one warm-up. Returns a negative value when n, dt or reps is unusable or memory or oneDNN fails. */
double hl_cpu_gemm_ceiling_gflops(int64_t n, hl_dtype dt, int reps);

#endif
