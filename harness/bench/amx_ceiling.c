/* How fast our AMX microkernel (hl_gemm_ukr_amx, the one the GEMM calls) runs depending on where
 * its packed panels live: the ceiling each loop structure puts on a GEMM, measured on every
 * thread at once like the peaks (cpu_bench.h). Each thread has its own buffers of random bf16
 * values (magnitude 1/128 .. 1, as the AMX peak loop: zeros run faster). */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "bench/cpu_bench.h"
#include "core/parallel.h"
#include "ops/cpu/gemm/gemm.h"
#include "ops/cpu/gemm/gemm_internal.h"

/* The three structures, one call site each. A panel: 32 rows x K (K / 32 chunks of 2 KiB); B
 * panel: K x 32; kp k per panel, kc k per kernel call. */
typedef struct layout {
    int64_t kp, kc; /* panel depth; depth of one kernel call (kc < kp: K slices) */
    int64_t na, nb; /* A panels (the block's rows / 32), B panels (its columns / 32) */
} layout;

static const layout g_layouts[HL_AMX_PLACE_COUNT] = {
    [HL_AMX_PLACE_L1] = {256, 256, 1, 1},      /* 16 KiB + 16 KiB: both panels in L1 */
    [HL_AMX_PLACE_L2] = {1536, 1536, 8, 8},    /* 768 KiB + 768 KiB in L2, whole K per call */
    [HL_AMX_PLACE_KSLICE] = {1536, 384, 4, 8}, /* the same in slices of 384: C stored, reloaded */
};

/* One pass over the block: for each K slice, each B panel, each A panel, one kernel call on the
 * 32 x 32 tile of C (ldc = 32 nb); the first slice stores, later ones add. */
static void pass(const layout *l, const char *a, const char *b, float *c) {
    const int64_t ldc = 32 * l->nb;
    for (int64_t k0 = 0; k0 < l->kp; k0 += l->kc)
        for (int64_t q = 0; q < l->nb; q++)
            for (int64_t i = 0; i < l->na; i++)
                hl_gemm_ukr_amx.fn(l->kc / 32, a + (i * 32 * l->kp + k0 * 32) * 2,
                                   b + (q * 32 * l->kp + k0 * 32) * 2, c + i * 32 * ldc + q * 32,
                                   ldc, k0 > 0);
}

/* GFLOP/s of layout l on all threads (median of reps runs after a warm-up), or < 0. Each
 * thread's buffers are allocated and first touched by it before the timing. */
static double measure(const layout *l, int reps) {
    enum { MAX_THREADS = 512 };
    const int nt = omp_get_max_threads() < MAX_THREADS ? omp_get_max_threads() : MAX_THREADS;
    const int64_t a_n = l->na * 32 * l->kp, b_n = l->nb * 32 * l->kp, c_n = l->na * l->nb * 1024;
    const double flop = 2.0 * (double)(l->na * 32) * (double)(l->nb * 32) * (double)l->kp;
    const long passes = (long)(1e11 / flop) + 1; /* ~40 ms a run at 2.5 TFLOP/s per thread */
    static char *bufs[MAX_THREADS];
    double t[16];
    int failed = 0;
    if (reps > 16) reps = 16;
#pragma omp parallel num_threads(nt) reduction(| : failed)
    {
        const int i = omp_get_thread_num();
        bufs[i] = aligned_alloc(64, (size_t)(a_n + b_n) * 2 + (size_t)c_n * sizeof(float));
        if (!bufs[i]) failed = 1;
        else {
            hl_bench_random_bf16((uint16_t *)bufs[i], a_n + b_n, 777u + (uint32_t)i);
            memset(bufs[i] + (a_n + b_n) * 2, 0, (size_t)c_n * sizeof(float));
        }
    }
    for (int r = -1; r < reps && !failed; r++) { /* r = -1: warm-up (clocks, thread start) */
        const double t0 = hl_time();
#pragma omp parallel num_threads(nt)
        {
            char *a = bufs[omp_get_thread_num()];
            hl_gemm_ukr_amx.begin();
            for (long p = 0; p < (r < 0 ? passes / 4 + 1 : passes); p++)
                pass(l, a, a + a_n * 2, (float *)(a + (a_n + b_n) * 2));
            hl_gemm_ukr_amx.end();
        }
        if (r >= 0) t[r] = hl_time() - t0;
    }
    for (int i = 0; i < nt; i++) free(bufs[i]), bufs[i] = NULL;
    if (failed) return -1.0;
    const double med = hl_bench_median(t, reps);
    return flop * (double)passes * nt / med * 1e-9;
}

/* One pass of layout k on this thread, each C tile checked against its sum computed from the
 * packed layouts (gemm_internal.h: A as 64-byte rows of 32 k, B as bf16 pairs of 32 columns) in
 * double: the largest |error| / sum of |terms|, or < 0 where AMX is unavailable or memory fails. */
double hl_amx_ceiling_check(int k) {
    if (k < 0 || k >= HL_AMX_PLACE_COUNT || !hl_gemm_kernel_available(HL_GEMM_AMX)) return -1.0;
    const layout *l = &g_layouts[k];
    const int64_t a_n = l->na * 32 * l->kp, b_n = l->nb * 32 * l->kp, ldc = 32 * l->nb;
    uint16_t *a = aligned_alloc(64, (size_t)(a_n + b_n) * 2);
    float *c = aligned_alloc(64, (size_t)(l->na * 32 * ldc) * sizeof(float));
    double worst = -1.0;
    if (a && c) {
        const uint16_t *b = a + a_n;
        hl_bench_random_bf16(a, a_n + b_n, 99u);
        hl_gemm_ukr_amx.begin();
        pass(l, (const char *)a, (const char *)b, c);
        hl_gemm_ukr_amx.end();
        worst = 0.0;
        for (int64_t i = 0; i < l->na * 32; i++)
            for (int64_t j = 0; j < ldc; j++) {
                const uint16_t *ap = a + i / 32 * 32 * l->kp, *bp = b + j / 32 * 32 * l->kp;
                double sum = 0.0, mag = 0.0;
                for (int64_t x = 0; x < l->kp; x++) {
                    const double t = (double)hl_bf16_to_f32(
                                         ap[(x / 32 * 32 + i % 32) * 32 + x % 32]) *
                                     (double)hl_bf16_to_f32(bp[(x / 2 * 32 + j % 32) * 2 + x % 2]);
                    sum += t;
                    mag += t < 0 ? -t : t;
                }
                const double e = (c[i * ldc + j] - sum) / (mag > 0 ? mag : 1.0);
                if ((e < 0 ? -e : e) > worst) worst = e < 0 ? -e : e;
            }
    }
    free(a);
    free(c);
    return worst;
}

int hl_amx_ceilings(int reps, double out[HL_AMX_PLACE_COUNT]) {
    for (int k = 0; k < HL_AMX_PLACE_COUNT; k++) out[k] = -1.0;
    if (!hl_gemm_kernel_available(HL_GEMM_AMX)) return -1;
    for (int k = 0; k < HL_AMX_PLACE_COUNT; k++)
        out[k] = measure(&g_layouts[k], reps < 1 ? 1 : reps);
    return 0;
}
