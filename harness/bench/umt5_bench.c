/* umT5-XXL encoder benchmark: a full-size encoder with random weights, timed on hl_umt5_forward.
 *
 * Memory. The real encoder is 11 GB in bf16, almost all of it the 24 layers (24 x 386 MB) and the
 * 256384 x 4096 embedding (2 GB). The forward's compute does not depend on the weights' values,
 * so here all 24 layers point at ONE layer's random weights (same shapes, same GEMMs, ~0.39 GB in
 * bf16, 0.77 GB in f32) and the embedding has BENCH_VOCAB rows (a lookup of 4096 values per token
 * whatever the vocabulary). Sharing does not flatter the figure: at 512 tokens every weight
 * loaded feeds 512 multiply-adds, so the GEMMs are compute-bound wherever the weights come from
 * (measured: 6 distinct weight sets cycled over the 24 layers, 2.3 GB, well past this machine's
 * 480 MiB L3, gave the same 4.2 s as one shared set). The model struct is built here directly
 * (no hl_weights mapping), so it is freed by bench_model_free, never hl_umt5_free.
 *
 * Weights are uniform in ±1/sqrt(fan_in) (activations stay O(1) through the 24 layers), the
 * norms' weights 1 ± 0.2, the relative position bias table ±2; deterministic (a hash of the
 * element index) and filled in parallel. */
#include "bench/umt5_bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/cpu_bench.h"
#include "core/parallel.h"
#include "text/umt5.h"

enum { BENCH_VOCAB = 1024 };

/* Uniform in [-a, a) from a hash of (seed, i) (splitmix64 finaliser). */
static float hash_uniform(uint64_t seed, uint64_t i, float a) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(((double)(z >> 40) / 16777216.0 * 2.0 - 1.0) * a);
}

/* Every allocation of the bench model, freed by bench_model_free. */
typedef struct bench_model {
    hl_umt5 m;
    void *mem[16];
    int n_mem;
} bench_model;

static void *bench_alloc(bench_model *b, size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (p) b->mem[b->n_mem++] = p;
    return p;
}

static void bench_model_free(bench_model *b) {
    for (int i = 0; i < b->n_mem; i++) free(b->mem[i]);
    free(b->m.layers);
    memset(b, 0, sizeof *b);
}

/* A random [rows, cols] weight in dt, uniform in ±a. */
static hl_status rand_tensor(bench_model *b, hl_dtype dt, int64_t rows, int64_t cols, float a,
                             uint64_t seed, hl_tensor *t, hl_error *err) {
    int64_t n = rows * cols;
    void *p = bench_alloc(b, (size_t)n * hl_dtype_size(dt));
    if (!p)
        return hl_fail(err, HELIOS_ERR_OOM, "umt5 bench: out of memory (%lld x %lld weight)",
                       (long long)rows, (long long)cols);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float v = hash_uniform(seed, (uint64_t)i, a);
        if (dt == HL_BF16) ((hl_bf16 *)p)[i] = hl_f32_to_bf16(v);
        else ((float *)p)[i] = v;
    }
    int64_t shape[2] = {rows, cols};
    *t = hl_tensor_make(p, dt, 2, shape);
    return HL_OK;
}

/* A random float32 vector c ± a. */
static hl_status rand_vec(bench_model *b, int64_t n, float c, float a, uint64_t seed,
                          const float **out, hl_error *err) {
    float *p = bench_alloc(b, (size_t)n * sizeof *p);
    if (!p) return hl_fail(err, HELIOS_ERR_OOM, "umt5 bench: out of memory");
    for (int64_t i = 0; i < n; i++) p[i] = c + hash_uniform(seed, (uint64_t)i, a);
    *out = p;
    return HL_OK;
}

static hl_status bench_model_init(bench_model *b, hl_dtype dt, hl_error *err) {
    memset(b, 0, sizeof *b);
    hl_umt5_config *c = &b->m.cfg;
    *c = (hl_umt5_config){.vocab_size = BENCH_VOCAB,
                          .d_model = 4096,
                          .d_kv = 64,
                          .d_ff = 10240,
                          .num_layers = 24,
                          .num_heads = 64,
                          .num_buckets = 32,
                          .max_distance = 128,
                          .eps = 1e-6f};
    const int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff;
    const float aD = 1.0f / sqrtf((float)D), aI = 1.0f / sqrtf((float)I),
                aF = 1.0f / sqrtf((float)F);
    b->m.layers = calloc((size_t)c->num_layers, sizeof *b->m.layers);
    if (!b->m.layers) return hl_fail(err, HELIOS_ERR_OOM, "umt5 bench: out of memory");
    hl_umt5_layer l = {0};
    HL_TRY(rand_tensor(b, dt, c->vocab_size, D, 1.0f, 1, &b->m.shared, err));
    HL_TRY(rand_tensor(b, dt, I, D, aD, 2, &l.q, err));
    HL_TRY(rand_tensor(b, dt, I, D, aD, 3, &l.k, err));
    HL_TRY(rand_tensor(b, dt, I, D, aD, 4, &l.v, err));
    HL_TRY(rand_tensor(b, dt, D, I, aI, 5, &l.o, err));
    HL_TRY(rand_tensor(b, dt, F, D, aD, 6, &l.wi_0, err));
    HL_TRY(rand_tensor(b, dt, F, D, aD, 7, &l.wi_1, err));
    HL_TRY(rand_tensor(b, dt, D, F, aF, 8, &l.wo, err));
    HL_TRY(rand_vec(b, D, 1.0f, 0.2f, 9, &l.ln_attn, err));
    HL_TRY(rand_vec(b, D, 1.0f, 0.2f, 10, &l.ln_ffn, err));
    HL_TRY(rand_vec(b, (int64_t)c->num_buckets * c->num_heads, 0.0f, 2.0f, 11, &l.rel_bias, err));
    HL_TRY(rand_vec(b, D, 1.0f, 0.2f, 12, &b->m.final_ln, err));
    for (int i = 0; i < c->num_layers; i++) b->m.layers[i] = l; /* one layer's weights, 24 times */
    return HL_OK;
}

hl_status hl_umt5_bench(int tokens, hl_dtype dt, int reps, double *seconds, double *gflop,
                        hl_error *err) {
    if (tokens < 1 || reps < 1 || reps > 1000 || !seconds || !gflop)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "umt5 bench: %d tokens, %d reps", tokens, reps);
    if (dt != HL_BF16 && dt != HL_F32)
        return hl_fail(err, HELIOS_ERR_DTYPE, "umt5 bench: weights in %s (BF16 or F32)",
                       hl_dtype_name(dt));
    const int64_t L = tokens;
    bench_model b;
    hl_status st = bench_model_init(&b, dt, err);
    const hl_umt5_config *c = &b.m.cfg;
    const int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff;
    int64_t *ids = malloc((size_t)L * sizeof *ids), *mask = malloc((size_t)L * sizeof *mask);
    float *out = malloc((size_t)(L * D) * sizeof *out);
    double *times = malloc((size_t)reps * sizeof *times);
    if (st == HL_OK && (!ids || !mask || !out || !times))
        st = hl_fail(err, HELIOS_ERR_OOM, "umt5 bench: out of memory for %d tokens", tokens);
    if (st == HL_OK) {
        for (int64_t i = 0; i < L; i++) {
            ids[i] = (int64_t)((uint64_t)(i * 7919 + 13) % BENCH_VOCAB);
            mask[i] = 1; /* the pipeline passes a mask: the same path, nothing padded */
        }
        hl_ctx ctx = {hl_backend_shared(HELIOS_BACKEND_CPU), err};
        for (int r = -1; st == HL_OK && r < reps; r++) { /* r = -1: warm-up (primitive creation) */
            double t0 = hl_time();
            st = hl_umt5_forward(&ctx, &b.m, 1, L, ids, mask, NULL, out);
            if (r >= 0) times[r] = hl_time() - t0;
        }
    }
    if (st == HL_OK) {
        *seconds = hl_bench_median(times, reps);
        double l = (double)L, per_layer = 4 * 2 * l * D * I + 3 * 2 * l * D * F + 4 * l * l * I;
        *gflop = c->num_layers * per_layer * 1e-9;
    }
    free(ids), free(mask), free(out), free(times);
    bench_model_free(&b);
    return st;
}
