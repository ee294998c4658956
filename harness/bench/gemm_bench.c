/* Our GEMM against oneDNN's, timed the same way on the same operands (see cpu_bench.h). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bench/cpu_bench.h"
#include "core/parallel.h"
#include "ops/cpu/cpu_internal.h"
#include "ops/cpu/gemm/gemm.h"

static double med_gflops(double *t, int reps, int64_t M, int64_t N, int64_t K) {
    double med = hl_bench_median(t, reps);
    return 2.0 * (double)M * (double)N * (double)K / med * 1e-9;
}

/* A fixed pattern in [-1, 1): the data does not change the work. */
static void fill(float *p, int64_t n, uint32_t s) {
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / 8388608.0f - 1.0f;
    }
}

typedef struct operands {
    float *a, *b, *c;
    hl_bf16 *ah, *bh;
} operands;

static int operands_new(operands *o, int64_t M, int64_t N, int64_t K) {
    memset(o, 0, sizeof *o);
    o->a = malloc((size_t)(M * K) * 4), o->b = malloc((size_t)(K * N) * 4);
    o->c = malloc((size_t)(M * N) * 4);
    o->ah = malloc((size_t)(M * K) * 2), o->bh = malloc((size_t)(K * N) * 2);
    if (!o->a || !o->b || !o->c || !o->ah || !o->bh) return -1;
    fill(o->a, M * K, 1), fill(o->b, K * N, 2), fill(o->c, M * N, 3);
    hl_cpu_f32_to_bf16(o->a, o->ah, M * K);
    hl_cpu_f32_to_bf16(o->b, o->bh, K * N);
    return 0;
}

static void operands_free(operands *o) {
    free(o->a), free(o->b), free(o->c), free(o->ah), free(o->bh);
}

int hl_gemm_bench_pair(hl_gemm_kernel k, int bf16, int transA, int transB, int64_t M, int64_t N,
                       int64_t K, int reps, double *ours, double *onednn) {
    *ours = *onednn = -1;
    if (reps < 1 || reps > 64 || !hl_gemm_kernel_available(k)) return -1;
    hl_cpu *cpu = hl_cpu_shared();
    if (!cpu) return -1;
    hl_mm_key key = {.M = M,
                     .N = N,
                     .K = K,
                     .dt = bf16 ? HL_BF16 : HL_F32,
                     .blayout = transB ? HL_MM_B_NK : HL_MM_B_KN,
                     .nthr = omp_get_max_threads(),
                     .atrans = transA};
    const int nthr = omp_get_max_threads();
    const int64_t lda = transA ? M : K, ldb = transB ? K : N;
    operands o;
    double to[64], td[64];
    int rc = -1;
    hl_cpu_lock(cpu);
    hl_mm *mm;
    void *pad = NULL;
    if (operands_new(&o, M, N, K) == 0 && hl_cpu_mm_get(cpu, &key, &mm, NULL) == HL_OK &&
        (pad = malloc(hl_cpu_mm_scratchpad_size(mm) + 64))) {
        rc = 0;
        for (int r = -1; r < reps && rc == 0; r++) { /* r = -1: warm-up of both */
            double t0 = hl_time();
            rc = bf16
                     ? hl_gemm_bf16(k, nthr, transA, transB, M, N, K, o.a, lda, o.bh, ldb, 0, o.c,
                                    N)
                     : hl_gemm_f32(k, nthr, transA, transB, M, N, K, o.a, lda, o.b, ldb, 0, o.c, N);
            double t1 = hl_time();
            if (rc == 0 && hl_cpu_mm_run(mm, 0, bf16 ? (void *)o.ah : o.a,
                                         bf16 ? (void *)o.bh : o.b, NULL, o.c, pad, NULL) != HL_OK)
                rc = -1;
            double t2 = hl_time();
            if (r >= 0) to[r] = t1 - t0, td[r] = t2 - t1;
        }
        if (rc == 0) {
            *ours = med_gflops(to, reps, M, N, K);
            *onednn = med_gflops(td, reps, M, N, K);
        }
    }
    hl_cpu_unlock(cpu);
    free(pad);
    operands_free(&o);
    return rc;
}
