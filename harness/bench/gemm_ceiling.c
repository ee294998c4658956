/* The GEMM ceiling: the best a plain-layout oneDNN matmul does here, the yardstick the
 * per-op throughputs are quoted against (see cpu_bench.h). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "bench/cpu_bench.h"
#include "ops/cpu/cpu_internal.h"

/* Fills n values of dt with a fixed pattern in [-1, 1): the data does not change the work, but
 * zeros or constants could let the hardware idle. */
static void fill(void *p, hl_dtype dt, int64_t n) {
    uint32_t s = 12345u;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        float v = (float)(s >> 8) / 8388608.0f - 1.0f;
        if (dt == HL_BF16) ((hl_bf16 *)p)[i] = hl_f32_to_bf16(v);
        else ((float *)p)[i] = v;
    }
}

/* Times reps runs (after one warm-up) into t[]; with the lock held. */
static int time_runs(int64_t n, hl_dtype dt, int reps, double *t) {
    hl_mm_key key = {.M = n,
                     .N = n,
                     .K = n,
                     .dt = dt,
                     .blayout = HL_MM_B_NK,
                     .bias = 0,
                     .nthr = omp_get_max_threads()};
    hl_mm *mm;
    if (hl_cpu_mm_get(hl_cpu_shared(), &key, &mm, NULL) != HL_OK) return -1;
    size_t esz = hl_dtype_size(dt), nn = (size_t)(n * n);
    void *a = malloc(nn * esz), *b = malloc(nn * esz),
         *pad = malloc(hl_cpu_mm_scratchpad_size(mm) + 64);
    float *c = malloc(nn * sizeof *c);
    int rc = -1;
    if (a && b && c && pad) {
        fill(a, dt, (int64_t)nn);
        fill(b, dt, (int64_t)nn);
        rc = 0;
        for (int r = -1; r < reps && rc == 0; r++) {
            double t0 = hl_time();
            if (hl_cpu_mm_run(mm, 0, a, b, NULL, c, pad, NULL) != HL_OK) rc = -1;
            if (r >= 0) t[r] = hl_time() - t0;
        }
    }
    free(a);
    free(b);
    free(c);
    free(pad);
    return rc;
}

double hl_cpu_gemm_ceiling_gflops(int64_t n, hl_dtype dt, int reps) {
    if (n <= 0 || n > 65536 || reps <= 0 || (dt != HL_BF16 && dt != HL_F32)) return -1.0;
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t) return -1.0;
    hl_cpu_lock(hl_cpu_shared());
    int rc = time_runs(n, dt, reps, t);
    hl_cpu_unlock(hl_cpu_shared());
    double gflops = -1.0;
    if (rc == 0) {
        double med = hl_bench_median(t, reps);
        gflops = 2.0 * (double)n * (double)n * (double)n / med * 1e-9;
    }
    free(t);
    return gflops;
}
