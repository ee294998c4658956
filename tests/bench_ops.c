/* Microbenchmark of the cpu backend (built, not a ctest test): GFLOP/s of hl_cpu_linear and
 * hl_cpu_attention on Helios/Wan2.1-1.3B shapes and hl_cpu_attention_biased on the umT5-XXL shape,
 * as a share of the GEMM ceiling measured in the same run, and one transformer block put together
 * from the ops (BENCH_ONLY=linear|attention|biased|block picks some); BENCH_ONLY=umt5 times the
 * whole umT5-XXL encoder on 512 tokens (not run by default).
 *   bench_ops [reps]        (median of reps timed calls after one warm-up; default 7) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench/cpu_bench.h"
#include "bench/umt5_bench.h"
#include "core/parallel.h"
#include "ops/ops_backends.h"
#include "test_util.h"


enum { DIM = 1536, HEADS = 12, HD = 128, FFN = 8960, S = 2304, CTX = 512 };

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *alloc_rand(int64_t n, uint64_t seed) {
    float *p = malloc((size_t)n * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    fill_random(p, n, seed);
    return p;
}

typedef struct {
    hl_tensor t;
    hl_bf16 *data;
} weight;

static weight make_weight(int64_t N, int64_t K, uint64_t seed) {
    weight w;
    float *f = alloc_rand(N * K, seed);
    w.data = malloc((size_t)(N * K) * sizeof *w.data);
    for (int64_t i = 0; i < N * K; i++) w.data[i] = hl_f32_to_bf16(f[i] * 0.03f);
    free(f);
    int64_t shape[2] = {N, K};
    w.t = hl_tensor_make(w.data, HL_BF16, 2, shape);
    return w;
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static hl_ctx g_ctx; /* test_ctx, in main */
static int g_reps = 7;

#define TIME_MEDIAN(result, stmt)                      \
    do {                                               \
        double ts_[64];                                \
        for (int r_ = -1; r_ < g_reps; r_++) {         \
            double t0_ = hl_time();                    \
            if ((stmt) != HL_OK) {                     \
                fprintf(stderr, "%s failed\n", #stmt); \
                exit(1);                               \
            }                                          \
            if (r_ >= 0) ts_[r_] = hl_time() - t0_;    \
        }                                              \
        result = median(ts_, g_reps);                  \
    } while (0)

static void bench_linear(int64_t M, int64_t N, int64_t K, double ceiling) {
    weight w = make_weight(N, K, 7);
    float *x = alloc_rand(M * K, 1), *y = malloc((size_t)(M * N) * sizeof *y);
    float *bias = alloc_rand(N, 3);
    int64_t bs[1] = {N};
    hl_tensor b = hl_tensor_make(bias, HL_F32, 1, bs);
    double t;
    TIME_MEDIAN(t, hl_linear(&g_ctx, M, x, K, &w.t, &b, y, N));
    double gf = 2.0 * M * N * K / t * 1e-9;
    printf("linear bf16 M=%lld K=%lld N=%lld: %8.3f ms %7.0f GFLOP/s  %5.1f%% of ceiling\n",
           (long long)M, (long long)K, (long long)N, t * 1e3, gf, 100 * gf / ceiling);
    free(w.data);
    free(x);
    free(y);
    free(bias);
}

static void bench_attention(int64_t Sq, int64_t Sk, hl_dtype dt, double ceiling) {
    int64_t w = (int64_t)HEADS * HD;
    float *q = alloc_rand(Sq * w, 1), *k = alloc_rand(Sk * w, 2), *v = alloc_rand(Sk * w, 3);
    float *o = malloc((size_t)(Sq * w) * sizeof *o);
    double t;
    TIME_MEDIAN(t, hl_attention(&g_ctx, Sq, Sk, HEADS, HD, q, w, k, w, v, w, 0.0883883f, dt, o, w));
    double gf = 4.0 * Sq * Sk * HD * HEADS / t * 1e-9;
    printf("attention %s Sq=%lld Sk=%lld H=%d hd=%d: %8.3f ms %7.0f GFLOP/s  %5.1f%% of ceiling\n",
           hl_dtype_name(dt), (long long)Sq, (long long)Sk, HEADS, HD, t * 1e3, gf,
           100 * gf / ceiling);
    free(q);
    free(k);
    free(v);
    free(o);
}

/* hl_cpu_attention_biased on the umT5-XXL encoder's shape (spec §5: 64 heads of 64, no
 * 1/sqrt(d)): a relative-position bias [H, S, S] and a key padding mask with the last eighth of
 * the keys masked; and hl_cpu_attention on the same shape, for the cost of the biases. */
static void bench_attention_biased(int64_t S_, int H, int hd, hl_dtype dt, double ceiling) {
    int64_t w = (int64_t)H * hd;
    float *q = alloc_rand(S_ * w, 1), *k = alloc_rand(S_ * w, 2), *v = alloc_rand(S_ * w, 3);
    float *bias = alloc_rand((int64_t)H * S_ * S_, 4), *kb = alloc_rand(S_, 5);
    float *o = malloc((size_t)(S_ * w) * sizeof *o);
    for (int64_t j = 0; j < S_; j++) kb[j] = j >= S_ - S_ / 8 ? -3.402823466e38f : 0.0f;
    double t, t0;
    TIME_MEDIAN(
        t, hl_attention_biased(&g_ctx, S_, S_, H, hd, q, w, k, w, v, w, 1.0f, bias, kb, dt, o, w));
    TIME_MEDIAN(t0, hl_attention(&g_ctx, S_, S_, H, hd, q, w, k, w, v, w, 1.0f, dt, o, w));
    double fl = 4.0 * S_ * S_ * hd * H * 1e-9;
    printf("attention_biased %s S=%lld H=%d hd=%d bias+mask: %8.3f ms %7.0f GFLOP/s  %5.1f%% of "
           "ceiling (no bias: %.3f ms %.0f GFLOP/s)\n",
           hl_dtype_name(dt), (long long)S_, H, hd, t * 1e3, fl / t, 100 * fl / t / ceiling,
           t0 * 1e3, fl / t0);
    free(q), free(k), free(v), free(bias), free(kb), free(o);
}

/* One Wan2.1-style block (self-attention, cross-attention to CTX text tokens, GELU FFN) from
 * the ops, with the per-op times. */
typedef struct {
    const char *name;
    double t, flops;
} op_time;

static void bench_block(double ceiling) {
    weight wq = make_weight(DIM, DIM, 11), wk = make_weight(DIM, DIM, 12),
           wv = make_weight(DIM, DIM, 13), wo = make_weight(DIM, DIM, 14),
           cq = make_weight(DIM, DIM, 15), ck = make_weight(DIM, DIM, 16),
           cv = make_weight(DIM, DIM, 17), co = make_weight(DIM, DIM, 18),
           f1 = make_weight(FFN, DIM, 19), f2 = make_weight(DIM, FFN, 20);
    float *x = alloc_rand(S * DIM, 1), *ctx = alloc_rand(CTX * DIM, 2);
    float *h = malloc((size_t)(S * DIM) * 4), *q = malloc((size_t)(S * DIM) * 4),
          *k = malloc((size_t)(S * DIM) * 4), *v = malloc((size_t)(S * DIM) * 4),
          *a = malloc((size_t)(S * DIM) * 4), *o = malloc((size_t)(S * DIM) * 4),
          *ff = malloc((size_t)(S * FFN) * 4);
    float *mod = alloc_rand(6 * DIM, 3), *nw = alloc_rand(DIM, 4), *rope = alloc_rand(S * HD, 5);
    for (int i = 0; i < 6 * DIM; i++) mod[i] *= 0.1f;
    const float *shift1 = mod, *scale1 = mod + DIM, *gate1 = mod + 2 * DIM;
    const float *shift2 = mod + 3 * DIM, *scale2 = mod + 4 * DIM, *gate2 = mod + 5 * DIM;
    const float eps = 1e-6f, sc = 0.0883883f;
    const double lin = 2.0 * S * DIM * DIM, lin_ctx = 2.0 * CTX * DIM * DIM;
    const double ffn = 2.0 * S * DIM * FFN;
    op_time ops[32];
    int n = 0;
#define OP(nm, fl, stmt)                        \
    do {                                        \
        double t0 = hl_time();                  \
        if ((stmt) != HL_OK) {                  \
            fprintf(stderr, "%s failed\n", nm); \
            exit(1);                            \
        }                                       \
        ops[n].name = nm;                       \
        ops[n].t = hl_time() - t0;              \
        ops[n++].flops = fl;                    \
    } while (0)
    double best = 1e30;
    op_time keep[32];
    int nkeep = 0;
    for (int rep = -1; rep < 3; rep++) {
        n = 0;
        OP("ln_modulate", 0,
           hl_layernorm_modulate(&g_ctx, S, DIM, x, DIM, scale1, shift1, eps, h, DIM));
        OP("linear q", lin, hl_linear(&g_ctx, S, h, DIM, &wq.t, NULL, q, DIM));
        OP("linear k", lin, hl_linear(&g_ctx, S, h, DIM, &wk.t, NULL, k, DIM));
        OP("linear v", lin, hl_linear(&g_ctx, S, h, DIM, &wv.t, NULL, v, DIM));
        OP("rmsnorm q", 0, hl_rmsnorm(&g_ctx, S, DIM, q, DIM, nw, eps, q, DIM, NULL));
        OP("rmsnorm k", 0, hl_rmsnorm(&g_ctx, S, DIM, k, DIM, nw, eps, k, DIM, NULL));
        OP("rope q", 0, hl_rope(&g_ctx, S, HEADS, HD, q, DIM, rope));
        OP("rope k", 0, hl_rope(&g_ctx, S, HEADS, HD, k, DIM, rope));
        OP("self-attention", 4.0 * S * S * DIM,
           hl_attention(&g_ctx, S, S, HEADS, HD, q, DIM, k, DIM, v, DIM, sc, HL_BF16, a, DIM));
        OP("linear o", lin, hl_linear(&g_ctx, S, a, DIM, &wo.t, NULL, o, DIM));
        OP("add_gated", 0, hl_add_gated(&g_ctx, S, DIM, x, DIM, o, DIM, gate1));
        OP("layernorm", 0, hl_layernorm(&g_ctx, S, DIM, x, DIM, nw, nw, eps, h, DIM, NULL));
        OP("cross q", lin, hl_linear(&g_ctx, S, h, DIM, &cq.t, NULL, q, DIM));
        OP("cross k", lin_ctx, hl_linear(&g_ctx, CTX, ctx, DIM, &ck.t, NULL, k, DIM));
        OP("cross v", lin_ctx, hl_linear(&g_ctx, CTX, ctx, DIM, &cv.t, NULL, v, DIM));
        OP("rmsnorm q", 0, hl_rmsnorm(&g_ctx, S, DIM, q, DIM, nw, eps, q, DIM, NULL));
        OP("rmsnorm k", 0, hl_rmsnorm(&g_ctx, CTX, DIM, k, DIM, nw, eps, k, DIM, NULL));
        OP("cross-attention", 4.0 * S * CTX * DIM,
           hl_attention(&g_ctx, S, CTX, HEADS, HD, q, DIM, k, DIM, v, DIM, sc, HL_BF16, a, DIM));
        OP("cross o", lin, hl_linear(&g_ctx, S, a, DIM, &co.t, NULL, o, DIM));
        OP("add", 0, hl_add_gated(&g_ctx, S, DIM, x, DIM, o, DIM, NULL));
        OP("ln_modulate", 0,
           hl_layernorm_modulate(&g_ctx, S, DIM, x, DIM, scale2, shift2, eps, h, DIM));
        OP("ffn up", ffn, hl_linear(&g_ctx, S, h, DIM, &f1.t, NULL, ff, FFN));
        OP("gelu_tanh", 0, hl_gelu_tanh(&g_ctx, S * FFN, ff, ff));
        OP("ffn down", ffn, hl_linear(&g_ctx, S, ff, FFN, &f2.t, NULL, o, DIM));
        OP("add_gated", 0, hl_add_gated(&g_ctx, S, DIM, x, DIM, o, DIM, gate2));
        double tot = 0;
        for (int i = 0; i < n; i++) tot += ops[i].t;
        if (rep >= 0 && tot < best) {
            best = tot;
            memcpy(keep, ops, sizeof ops);
            nkeep = n;
        }
    }
    double flops = 0;
    printf("\none block (S=%d, dim=%d, heads=%d, ffn=%d, text=%d), fastest of 3:\n", S, DIM, HEADS,
           FFN, CTX);
    for (int i = 0; i < nkeep; i++) {
        flops += keep[i].flops;
        printf("  %-16s %8.3f ms %5.1f%%", keep[i].name, keep[i].t * 1e3, 100 * keep[i].t / best);
        if (keep[i].flops > 0)
            printf("  %7.0f GFLOP/s %5.1f%% of ceiling", keep[i].flops / keep[i].t * 1e-9,
                   100 * keep[i].flops / keep[i].t * 1e-9 / ceiling);
        printf("\n");
    }
    printf("  total %.2f ms, %.0f GFLOP/s = %.1f%% of ceiling\n", best * 1e3, flops / best * 1e-9,
           100 * flops / best * 1e-9 / ceiling);
}

/* The full umT5-XXL encoder (random weights shared by the 24 layers, see umt5_bench.c) on 512
 * tokens, bf16; opt-in (BENCH_ONLY=umt5): ~40 s with 7 reps on this machine. */
static void bench_umt5(double ceiling) {
    double t = 0, gflop = 0;
    hl_error err = {0};
    if (hl_umt5_bench(512, HL_BF16, g_reps, &t, &gflop, &err) != HL_OK) {
        fprintf(stderr, "umt5 bench failed: %s\n", err.msg);
        exit(1);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("umt5 bf16 512 tokens: %.3f s, %.0f GFLOP/s, %.1f%% of ceiling %.0f GFLOP/s "
           "(%.0f GFLOP, median of %d), peak RSS %.0f MiB\n",
           t, gflop / t, 100 * gflop / t / ceiling, ceiling, gflop, g_reps,
           (double)ru.ru_maxrss / 1024.0);
}

int main(int argc, char **argv) {
    g_ctx = test_ctx(HELIOS_BACKEND_CPU, NULL);
    if (argc > 1) g_reps = atoi(argv[1]);
    if (g_reps < 1 || g_reps > 63) g_reps = 7;
    const char *only = getenv("BENCH_ONLY");
    double ceiling = hl_cpu_gemm_ceiling_gflops(4096, HL_BF16, g_reps);
    printf("ceiling: oneDNN bf16 matmul 4096^3, plain weights, %d threads: %.0f GFLOP/s\n",
           hl_get_threads(), ceiling);
    if (ceiling <= 0) return 1;
    if (!only || strstr(only, "linear")) {
        bench_linear(S, DIM, DIM, ceiling);
        bench_linear(S, FFN, DIM, ceiling);
        bench_linear(S, DIM, FFN, ceiling);
        bench_linear(CTX, DIM, DIM, ceiling);
    }
    if (!only || strstr(only, "attention")) {
        bench_attention(S, S, HL_BF16, ceiling);
        bench_attention(S, CTX, HL_BF16, ceiling);
        bench_attention(S, S, HL_F32, ceiling);
    }
    if (!only || strstr(only, "biased")) {
        bench_attention_biased(512, 64, 64, HL_BF16, ceiling);
        bench_attention_biased(512, 64, 64, HL_F32, ceiling);
    }
    if (!only || strstr(only, "block")) bench_block(ceiling);
    if (only && strstr(only, "umt5")) bench_umt5(ceiling);
    return 0;
}
