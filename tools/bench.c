/* helios bench — measures the machine's limit (the peak of each ISA the CPU has: a register-
 * resident FMA / dot-product loop on all threads, harness/bench/peak.c), a large oneDNN GEMM (the
 * library baseline), and times against both, in the same run, one Helios transformer block at
 * the Wan2.1-1.3B block shape (D 1536, 12 heads of 128, FFN 8960, 512 text tokens, 2304 current
 * tokens) with random bf16 weights:
 *   peak: <isa> <G> GFLOP/s
 *   block bf16: <G> GFLOP/s, <P>% of peak <B> GFLOP/s (<isa>), <Q>% of the library baseline
 *   block bf16: <P>% of the peak measured beside each run (median of <n>, <lo>-<hi>%)
 * then hl_linear against hl_linear_backward at the block's three linear shapes (run_linear):
 *   linear bf16 M <M> K <K> N <N>: forward <t> ms, <G> GFLOP/s, ... (quoted as above)
 *   linear bf16 M <M> K <K> N <N>: backward (dx, dW, db) <t> ms, <r>x forward, <G> GFLOP/s, ...
 * and, with --only tiny, the tiny random model's end-to-end generation (frames/s) with the share
 * of its wall time spent inside the ops, quiet and beside a second busy process, and with --only
 * e2e a model folder (default: the shipped helios-tiny) from prompt to MP4 frames, timed once
 * over a long video (run_e2e). Other figures are medians over --reps runs after one warm-up. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/cpu_bench.h"
#include "bench/umt5_bench.h"
#include "bench/vae_bench.h"
#include "core/parallel.h"
#include "bench/train_bench.h"
#include "api/gen_times.h"
#include "dit/dit.h"
#include "helios.h"
#include "ops/ops_backends.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/model_default.h"
#include "vae/vae.h"

typedef struct bench_opts {
    const char *only; /* "block", "umt5", "vae", "tiny", "train", "e2e", ... or NULL (defaults) */
    const char *tiny_model;
    int tiny_frames, tiny_width, tiny_height;
    const char *e2e_model; /* NULL: default_model() */
    double e2e_seconds;
    int e2e_width, e2e_height;
    int full;      /* the default set also has the slow umt5 and vae lines */
    int vae_sizes; /* 1: 256x256 only; 2: also 384x640 */
    int threads, reps;
    int64_t tokens, text, dim, heads, ffn;
    int64_t gemm_n;
    hl_dtype dtype;
} bench_opts;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

/* What every throughput line is quoted against: the best peak and the library baseline. */
typedef struct yardstick {
    double peak, baseline;
    const char *peak_isa;
    int peak_index; /* HL_PEAK_* of peak_isa, or -1 (none: the baseline stands in) */
} yardstick;

static void quote(const yardstick *y, double g) {
    printf("%.0f GFLOP/s, %.0f%% of peak %.0f GFLOP/s (%s), %.0f%% of the library baseline", g,
           100.0 * g / y->peak, y->peak, y->peak_isa, 100.0 * g / y->baseline);
}

/* The best ISA's peak measured now (one run of its loop, about 50 ms): taken beside every timed
 * run of an op, so that each ratio pairs two measurements under the same clock and load. On a
 * shared 2-core VM the peak moved between 258 and 349 GFLOP/s from one bench run to the next,
 * more than the ops themselves. */
static double peak_now(const yardstick *y) {
    if (y->peak_index < 0) return y->peak;
    hl_peak pk[HL_PEAK_COUNT];
    hl_cpu_peaks(1, y->peak_index, pk);
    return pk[y->peak_index].gflops > 0 ? pk[y->peak_index].gflops : y->peak;
}

/* "<P>% of the peak measured beside each run (median of n, <lo>-<hi>%)": ratio[i] = the op's
 * GFLOP/s over the peak measured right after run i; sorts ratio in place. */
static void quote_paired(double *ratio, int n) {
    double m = median(ratio, n); /* sorted now */
    printf("%.0f%% of the peak measured beside each run (median of %d, %.0f-%.0f%%)", 100.0 * m, n,
           100.0 * ratio[0], 100.0 * ratio[n - 1]);
}

/* "<P>% of the peak measured just before and after it (<b> and <a> GFLOP/s)": for a figure
 * timed over seconds, against the mean of the two. */
static void quote_around(double g, double before, double after) {
    printf("%.0f%% of the peak measured just before and after it (%.0f and %.0f GFLOP/s)",
           200.0 * g / (before + after), before, after);
}

/* splitmix64 uniform in [-a, a). */
static float uniform(uint64_t *s, float a) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0) * a);
}

/* Random weights for one block, Linear-init-like scale 1/sqrt(in) so activations stay O(1). */
typedef struct bench_block {
    hl_dit_block blk;
    void *mem[32];
    int n_mem;
} bench_block;

static hl_tensor rand_tensor(bench_block *bb, hl_dtype dt, int64_t rows, int64_t cols, float a,
                             uint64_t *seed) {
    int64_t shape[2] = {rows, cols};
    int nd = cols ? 2 : 1;
    if (!cols) shape[1] = 1;
    size_t n = (size_t)(rows * shape[1]);
    void *p = malloc(n * hl_dtype_size(dt));
    bb->mem[bb->n_mem++] = p;
    if (!p) return (hl_tensor){0};
    for (size_t i = 0; i < n; i++) {
        float v = uniform(seed, a);
        if (dt == HL_BF16) ((hl_bf16 *)p)[i] = hl_f32_to_bf16(v);
        else ((float *)p)[i] = v;
    }
    return hl_tensor_make(p, dt, nd, shape);
}

static const float *rand_vec(bench_block *bb, int64_t n, float center, float a, uint64_t *seed) {
    float *p = malloc((size_t)n * sizeof *p);
    bb->mem[bb->n_mem++] = p;
    if (!p) return NULL;
    for (int64_t i = 0; i < n; i++) p[i] = center + uniform(seed, a);
    return p;
}

static void rand_attn(bench_block *bb, hl_dit_attn *at, hl_dtype dt, int64_t D, uint64_t *seed) {
    float a = 1.0f / sqrtf((float)D);
    at->to_q_w = rand_tensor(bb, dt, D, D, a, seed);
    at->to_k_w = rand_tensor(bb, dt, D, D, a, seed);
    at->to_v_w = rand_tensor(bb, dt, D, D, a, seed);
    at->to_out_w = rand_tensor(bb, dt, D, D, a, seed);
    at->to_q_b = rand_tensor(bb, dt, D, 0, 0.1f, seed);
    at->to_k_b = rand_tensor(bb, dt, D, 0, 0.1f, seed);
    at->to_v_b = rand_tensor(bb, dt, D, 0, 0.1f, seed);
    at->to_out_b = rand_tensor(bb, dt, D, 0, 0.1f, seed);
    at->norm_q = rand_vec(bb, D, 1.0f, 0.2f, seed);
    at->norm_k = rand_vec(bb, D, 1.0f, 0.2f, seed);
}

static int bench_block_init(bench_block *bb, const hl_dit_config *c, hl_dtype dt) {
    memset(bb, 0, sizeof *bb);
    uint64_t seed = 42;
    int64_t D = c->dim, F = c->ffn_dim;
    rand_attn(bb, &bb->blk.attn1, dt, D, &seed);
    rand_attn(bb, &bb->blk.attn2, dt, D, &seed);
    bb->blk.ffn0_w = rand_tensor(bb, dt, F, D, 1.0f / sqrtf((float)D), &seed);
    bb->blk.ffn0_b = rand_tensor(bb, dt, F, 0, 0.1f, &seed);
    bb->blk.ffn2_w = rand_tensor(bb, dt, D, F, 1.0f / sqrtf((float)F), &seed);
    bb->blk.ffn2_b = rand_tensor(bb, dt, D, 0, 0.1f, &seed);
    bb->blk.norm2_w = rand_vec(bb, D, 1.0f, 0.2f, &seed);
    bb->blk.norm2_b = rand_vec(bb, D, 0.0f, 0.1f, &seed);
    bb->blk.scale_shift_table = rand_vec(bb, 6 * D, 0.0f, 0.25f, &seed);
    for (int i = 0; i < bb->n_mem; i++)
        if (!bb->mem[i]) return -1;
    return 0;
}

static void bench_block_free(bench_block *bb) {
    for (int i = 0; i < bb->n_mem; i++) free(bb->mem[i]);
}

/* Multiply-adds x2 of one block over S current tokens (no history) and L text tokens. */
static double block_flops(const hl_dit_config *c, int64_t S, int64_t L) {
    double D = c->dim, F = c->ffn_dim, s = (double)S, l = (double)L;
    double self_attn = 4 * 2 * s * D * D + 4 * s * s * D;
    double cross = 2 * 2 * s * D * D + 2 * 2 * l * D * D + 4 * s * l * D;
    double ffn = 2 * 2 * s * D * F;
    return self_attn + cross + ffn;
}

/* The op with the most seconds in t, taken out of t (its seconds zeroed), or -1 when none has
 * any left: the ops largest first, one call at a time. */
static int take_largest_op(hl_op_times *t, double *seconds, int64_t *calls) {
    int best = -1;
    for (int i = 0; i < HL_OP_COUNT; i++)
        if (t->seconds[i] > 0 && (best < 0 || t->seconds[i] > t->seconds[best])) best = i;
    if (best < 0) return -1;
    *seconds = t->seconds[best], *calls = t->calls[best];
    t->seconds[best] = 0;
    return best;
}

/* The ops' shares of `wall` seconds (summed over `runs` runs), the largest first, then the
 * time outside them: where a model's time goes, per run. */
static void print_op_shares(const hl_op_times *ops, double wall, int runs) {
    hl_op_times t = *ops;
    double in_ops = 0, sec;
    int64_t calls;
    for (int i = 0; i < HL_OP_COUNT; i++) in_ops += t.seconds[i];
    for (int best; (best = take_largest_op(&t, &sec, &calls)) >= 0;)
        printf("%s %.1f ms (%.0f%%, %lld call%s), ", hl_op_name((hl_op_id)best), 1e3 * sec / runs,
               100.0 * sec / wall, (long long)(calls / runs), calls / runs == 1 ? "" : "s");
    printf("outside the ops %.1f ms (%.0f%%) per run", 1e3 * (wall - in_ops) / runs,
           100.0 * (wall - in_ops) / wall);
}

static int run_block(const bench_opts *o, const yardstick *y) {
    hl_dit_config c = {
        .patch = {1, 2, 2},
        .heads = (int)o->heads,
        .head_dim = (int)(o->dim / o->heads),
        .dim = (int)o->dim,
        .ffn_dim = (int)o->ffn,
        .num_layers = 1,
        .cross_attn_norm = true,
        .eps = 1e-6f,
        .rope_theta = 10000.0,
        .guidance_cross_attn = true,
        .zero_history_timestep = true,
    };
    int hd = c.head_dim;
    c.rope_dim[1] = c.rope_dim[2] = (hd / 3) & ~1; /* (44, 42, 42) for hd 128 */
    c.rope_dim[0] = hd - 2 * c.rope_dim[1];
    int64_t S = o->tokens, L = o->text, D = c.dim;
    bench_block bb;
    hl_arena a = {0};
    hl_dit_scratch s;
    float *x = malloc((size_t)(S * D) * sizeof *x), *x0 = malloc((size_t)(S * D) * sizeof *x0);
    float *enc = malloc((size_t)(L * D) * sizeof *enc),
          *tproj = malloc((size_t)(12 * D) * sizeof *tproj);
    float *rope = malloc((size_t)(S * hd) * sizeof *rope);
    size_t act = (size_t)(5 * S * D + (S < 4096 ? S : 4096) * c.ffn_dim + 2 * L * D + 12 * D) *
                     sizeof(float) +
                 4096;
    int rc = 1;
    if (!x || !x0 || !enc || !tproj || !rope || bench_block_init(&bb, &c, o->dtype) ||
        hl_arena_init(&a, act) || hl_dit_scratch_alloc(&a, &c, 1, S, L, &s) != HL_OK) {
        fprintf(stderr, "helios bench: out of memory\n");
        goto done;
    }
    uint64_t seed = 7;
    for (int64_t i = 0; i < S * D; i++) x0[i] = uniform(&seed, 1.0f);
    for (int64_t i = 0; i < L * D; i++) enc[i] = uniform(&seed, 1.0f);
    for (int64_t i = 0; i < 12 * D; i++) tproj[i] = uniform(&seed, 0.1f);
    /* a 9 x 16 x 16 grid for 2304 tokens; other counts use 1 x 1 x S */
    int64_t T = S % 256 == 0 ? S / 256 : 1, H = S % 256 == 0 ? 16 : 1;
    hl_dit_rope_grid(&c, T, NULL, H, S / (T * H), rope);

    hl_error err = {0};
    hl_ctx ctx = {hl_backend_shared(HELIOS_BACKEND_CPU), &err};
    double times[64], ratio[64], flops = block_flops(&c, S, L);
    int reps = o->reps < 64 ? o->reps : 64;
    hl_op_times ops = {0};            /* summed over the timed runs (a clock read per op call) */
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up (oneDNN primitive creation) */
        memcpy(x, x0, (size_t)(S * D) * sizeof *x);
        hl_op_timing_set(r >= 0);
        double t0 = hl_time();
        hl_status st = hl_dit_block_forward(&ctx, &c, &bb.blk, 1, 0, S, tproj, rope, L, enc, &s, x);
        double t1 = hl_time();
        const hl_op_times *ot = hl_op_times_get();
        for (int i = 0; i < HL_OP_COUNT && r >= 0; i++)
            ops.seconds[i] += ot->seconds[i], ops.calls[i] += ot->calls[i];
        hl_op_timing_set(0);
        if (st != HL_OK) {
            fprintf(stderr, "helios bench: block failed: %s\n", err.msg);
            goto done;
        }
        if (r < 0) continue;
        times[r] = t1 - t0;
        ratio[r] = flops / times[r] * 1e-9 / peak_now(y);
    }
    double t = median(times, reps);
    double g = flops / t * 1e-9;
    printf("block %s: D %lld, %lld heads, ffn %lld, %lld tokens, %lld text: %.1f GFLOP in %.3f s "
           "(median of %d)\n",
           o->dtype == HL_BF16 ? "bf16" : "f32", (long long)D, (long long)o->heads,
           (long long)o->ffn, (long long)S, (long long)L, flops * 1e-9, t, reps);
    printf("block %s: ", o->dtype == HL_BF16 ? "bf16" : "f32");
    quote(y, g);
    printf("\nblock %s: ", o->dtype == HL_BF16 ? "bf16" : "f32");
    quote_paired(ratio, reps);
    printf("\n");
    double total = 0;
    for (int r = 0; r < reps; r++) total += times[r];
    printf("block %s ops: ", o->dtype == HL_BF16 ? "bf16" : "f32");
    print_op_shares(&ops, total, reps);
    printf("\n");
    printf("block memory: activations x %.1f MiB, block scratch %.1f MiB, peak RSS %.0f MiB\n",
           (double)(S * D) * 4 / 1048576.0, (double)a.peak / 1048576.0, peak_rss_mib());
    rc = 0;
done:
    bench_block_free(&bb);
    hl_arena_free(&a);
    free(x), free(x0), free(enc), free(tproj), free(rope);
    return rc;
}

/* hl_linear against hl_linear_backward (dx, dW and db) at the block's linear shapes: the
 * attention projections (D -> D) and the FFN (D -> ffn, ffn -> D) over the current tokens, with
 * random weights in the bench dtype. Both timed as medians of --reps after one warm-up; the
 * backward does twice the forward's multiply-adds, so a ratio of 2 is GEMM-bound. On a shared
 * machine the medians move with the neighbours' load; the fastest runs are printed too. */
static int run_linear(const bench_opts *o, const yardstick *y) {
    const int64_t M = o->tokens, shapes[3][2] = {{o->dim, o->dim},
                                                 {o->dim, o->ffn},
                                                 {o->ffn, o->dim}}; /* (K, N) */
    hl_error err = {0};
    hl_ctx ctx = {hl_backend_shared(HELIOS_BACKEND_CPU), &err};
    int reps = o->reps < 64 ? o->reps : 64, rc = 0;
    for (int s = 0; s < 3 && !rc; s++) {
        const int64_t K = shapes[s][0], N = shapes[s][1];
        float *x = malloc((size_t)(M * K) * sizeof *x), *yb = malloc((size_t)(M * N) * sizeof *yb);
        float *dx = malloc((size_t)(M * K) * sizeof *dx), *dW = calloc((size_t)(N * K), 4);
        float *db = calloc((size_t)N, 4), *wf = malloc((size_t)(N * K) * sizeof *wf);
        void *w = malloc((size_t)(N * K) * hl_dtype_size(o->dtype));
        if (!x || !yb || !dx || !dW || !db || !wf || !w) {
            fprintf(stderr, "helios bench: out of memory\n");
            rc = 1;
        }
        uint64_t seed = 11;
        for (int64_t i = 0; !rc && i < M * K; i++) x[i] = uniform(&seed, 1.0f);
        for (int64_t i = 0; !rc && i < N * K; i++) wf[i] = uniform(&seed, 1.0f / sqrtf((float)K));
        for (int64_t i = 0; !rc && i < N * K; i++) {
            if (o->dtype == HL_BF16) ((hl_bf16 *)w)[i] = hl_f32_to_bf16(wf[i]);
            else ((float *)w)[i] = wf[i];
        }
        int64_t shape[2] = {N, K};
        hl_tensor W = hl_tensor_make(w, o->dtype, 2, shape);
        double tf[64], tb[64];
        for (int r = -1; r < reps && !rc; r++) {
            double t0 = hl_time();
            rc |= hl_linear(&ctx, M, x, K, &W, NULL, yb, N) != HL_OK;
            double t1 = hl_time();
            rc |= hl_linear_backward(&ctx, M, x, K, &W, yb, N, dx, K, 0, dW, db) != HL_OK;
            if (r >= 0) tf[r] = t1 - t0, tb[r] = hl_time() - t1;
        }
        if (rc) fprintf(stderr, "helios bench: linear failed: %s\n", err.msg);
        else {
            double fmin = tf[0], bmin = tb[0];
            for (int r = 1; r < reps; r++)
                fmin = fmin < tf[r] ? fmin : tf[r], bmin = bmin < tb[r] ? bmin : tb[r];
            double f = median(tf, reps), b = median(tb, reps), fl = 2.0 * M * N * K;
            printf("linear %s M %lld K %lld N %lld: forward %.1f ms, ",
                   o->dtype == HL_BF16 ? "bf16" : "f32", (long long)M, (long long)K, (long long)N,
                   1e3 * f);
            quote(y, fl / f * 1e-9);
            printf(
                "\nlinear %s M %lld K %lld N %lld: backward (dx, dW, db) %.1f ms, %.2fx forward, ",
                o->dtype == HL_BF16 ? "bf16" : "f32", (long long)M, (long long)K, (long long)N,
                1e3 * b, b / f);
            quote(y, 2 * fl / b * 1e-9);
            printf(" (fastest runs: %.1f / %.1f ms, %.2fx)\n", 1e3 * fmin, 1e3 * bmin, bmin / fmin);
        }
        free(x), free(yb), free(dx), free(dW), free(db), free(wf), free(w);
    }
    return rc;
}

/* The Wan 2.1 VAE decoder (full size, random weights) on 33 frames. */
static int run_vae(const bench_opts *o, const yardstick *y) {
    static const int sizes[2][2] = {{256, 256}, {384, 640}};
    for (int i = 0; i < o->vae_sizes; i++) {
        int H = sizes[i][0], W = sizes[i][1];
        double sec, gflop, before = peak_now(y);
        if (hl_vae_bench(H, W, 33, o->dtype, &sec, &gflop) != HL_OK) {
            fprintf(stderr, "helios bench: the VAE decode failed\n");
            return 1;
        }
        double g = gflop / sec, after = peak_now(y);
        const char *dt = o->dtype == HL_BF16 ? "bf16" : "f32";
        printf("vae decode %s %dx%dx33: %.2f s, ", dt, H, W, sec);
        quote(y, g);
        printf(" (%.0f ms per frame, %.1f TFLOP)\nvae decode %s %dx%dx33: ", 1000.0 * sec / 33,
               gflop * 1e-3, dt, H, W);
        quote_around(g, before, after);
        printf("\n");
    }
    printf("vae memory: peak RSS %.0f MiB\n", peak_rss_mib());
    return 0;
}

/* umT5-XXL on a 512-token prompt (random weights, full size). */
static int run_umt5(const bench_opts *o, const yardstick *y) {
    double sec, gflop;
    hl_error err = {0};
    int reps = o->reps < 3 ? o->reps : 3; /* ~10 s a run */
    double before = peak_now(y);
    if (hl_umt5_bench(512, o->dtype, reps, &sec, &gflop, &err) != HL_OK) {
        fprintf(stderr, "helios bench: umt5: %s\n", err.msg);
        return 1;
    }
    double g = gflop / sec, after = peak_now(y);
    const char *dt = o->dtype == HL_BF16 ? "bf16" : "f32";
    printf("umt5 %s 512 tokens: %.2f s, ", dt, sec);
    quote(y, g);
    printf(" (%.0f GFLOP)\numt5 %s 512 tokens: ", gflop, dt);
    quote_around(g, before, after);
    printf("\n");
    return 0;
}

/* A session on --threads threads, or NULL with the error printed ("helios bench: WHAT: ..."). */
static helios_session *bench_session(const bench_opts *o, const char *what) {
    helios_session_params sp;
    helios_session_params_init(&sp);
    sp.n_threads = o->threads;
    helios_session *s = NULL;
    if (helios_session_new(&sp, &s) != HELIOS_OK) {
        fprintf(stderr, "helios bench: %s: %s\n", what, helios_session_new_error());
        return NULL;
    }
    return s;
}

/* reps timed generations of the tiny random model (after one untimed warm-up: primitive
 * creation, first touch): their wall times, the seconds inside the ops, the share of the wall
 * time that is, and the op times of the last. 0, or 1 with the error printed. */
typedef struct tiny_runs {
    double wall[64], in_ops[64], share[64];
    hl_op_times last;
    int chunks, frames;
} tiny_runs;

static int tiny_run(const bench_opts *o, helios_session *s, helios_pipeline *pipe, int reps,
                    tiny_runs *out) {
    for (int r = -1; r < reps; r++) {
        helios_gen_params gp;
        helios_gen_params_init(&gp);
        gp.prompt = "a red ball bouncing";
        gp.width = o->tiny_width, gp.height = o->tiny_height;
        gp.num_frames = o->tiny_frames;
        gp.decode = 1;
        hl_op_timing_set(1);
        helios_gen *g = NULL;
        double t0 = hl_time();
        if (helios_gen_new(pipe, &gp, &g) != HELIOS_OK) {
            fprintf(stderr, "helios bench: tiny: %s\n", helios_session_error(s));
            hl_op_timing_set(0);
            return 1;
        }
        out->chunks = helios_gen_n_chunks(g), out->frames = 0;
        for (helios_gen_progress p = {0}; !p.finished;) {
            if (helios_gen_step(g, &p) != HELIOS_OK) {
                fprintf(stderr, "helios bench: tiny: %s\n", helios_gen_error(g));
                helios_gen_free(g);
                hl_op_timing_set(0);
                return 1;
            }
            if (p.chunk_done) out->frames += p.n_frames;
        }
        double t = hl_time() - t0, ops = 0;
        out->last = *hl_op_times_get();
        hl_op_timing_set(0);
        helios_gen_free(g);
        for (int i = 0; i < HL_OP_COUNT; i++) ops += out->last.seconds[i];
        if (r >= 0) out->wall[r] = t, out->in_ops[r] = ops, out->share[r] = ops / t;
    }
    return 0;
}

/* A session on `threads` threads with the tiny model's pipeline loaded: 0, or 1 with the error
 * printed and nothing left to free. */
static int tiny_open(const bench_opts *o, int threads, helios_session **s, helios_pipeline **pipe) {
    bench_opts t = *o;
    t.threads = threads;
    *pipe = NULL;
    if (!(*s = bench_session(&t, "tiny"))) return 1;
    helios_pipeline_params pp;
    helios_pipeline_params_init(&pp);
    pp.model_dir = o->tiny_model;
    if (helios_pipeline_load(*s, &pp, pipe) == HELIOS_OK) return 0;
    fprintf(stderr, "helios bench: tiny: %s\n", helios_session_error(*s));
    helios_session_free(*s);
    *s = NULL;
    return 1;
}

/* tiny_run beside a second busy process (hl_bench_busy_start), stopped after. */
static int tiny_run_shared(const bench_opts *o, helios_session *s, helios_pipeline *pipe, int reps,
                           tiny_runs *out) {
    const int busy = hl_bench_busy_start();
    if (busy < 0) {
        fprintf(stderr, "helios bench: tiny: cannot start the second process (fork failed)\n");
        return 1;
    }
    const int failed = tiny_run(o, s, pipe, reps, out);
    hl_bench_busy_stop(busy);
    return failed;
}

/* The tiny model on one thread beside the busy process, against quiet_s (the quiet run on all
 * threads): what giving up the second thread under load would give. 0, or 1 with the error
 * printed. */
static int tiny_one_thread_shared(const bench_opts *o, double quiet_s) {
    helios_session *s;
    helios_pipeline *pipe;
    static tiny_runs r;
    const int reps = o->reps < 64 ? o->reps : 64;
    if (tiny_open(o, 1, &s, &pipe)) return 1;
    const int rc = tiny_run_shared(o, s, pipe, reps, &r);
    if (rc == 0) {
        const double t = median(r.wall, reps);
        printf("tiny shared, one thread: %.3f s, %.1f frames/s, %.2fx the quiet run\n", t,
               r.frames / t, t / quiet_s);
    }
    helios_pipeline_free(pipe);
    helios_session_free(s);
    return rc;
}

/* The tiny random model end to end: helios_gen_new (prompt encoding) to the last decoded frame,
 * the pipeline loaded once; with the op timer on, the share of that wall time spent inside the
 * ops (ops_backends.h), the rest being the model code between them and the runtime. Then the
 * same beside a second CPU-bound process (a forked spinner, the same priority), against the
 * issue's 1.5x; and what the scheduler allows perfectly balanced parallel work beside it, in
 * regions as long as the run's mean op and longer, on OpenMP's pool: the ceiling for a pool
 * whose idle threads sleep, as libgomp's do (docs/design.md, "Threads on a shared machine");
 * then, with more than one thread, the model on one thread beside the busy process. */
static int run_tiny(const bench_opts *o) {
    helios_session *s;
    helios_pipeline *pipe;
    int rc = 1, reps = o->reps < 64 ? o->reps : 64;
    static tiny_runs q, sh;
    if (tiny_open(o, o->threads, &s, &pipe)) return 1;
    if (tiny_run(o, s, pipe, reps, &q)) goto done;
    double t = median(q.wall, reps);
    printf("tiny %dx%d: %d frames in %d chunk%s: %.3f s, %.1f frames/s (median of %d)\n",
           o->tiny_width, o->tiny_height, q.frames, q.chunks, q.chunks == 1 ? "" : "s", t,
           q.frames / t, reps);
    int64_t calls = 0;
    for (int i = 0; i < HL_OP_COUNT; i++) calls += q.last.calls[i];
    const double in_ops = median(q.in_ops, reps);
    printf("tiny ops: %.0f%% of wall time inside the ops (median; %.3f s), %lld op calls a run;",
           100.0 * median(q.share, reps), in_ops, (long long)calls);
    for (int n = 0, best; n < 6; n++) { /* the largest ops of the last run */
        double sec;
        int64_t c;
        if ((best = take_largest_op(&q.last, &sec, &c)) < 0) break;
        printf(" %s %.0f ms in %lld", hl_op_name((hl_op_id)best), 1e3 * sec, (long long)c);
    }
    printf("\n");
    if (tiny_run_shared(o, s, pipe, reps, &sh)) goto done;
    const double ts = median(sh.wall, reps);
    printf("tiny shared with one busy process: %.3f s, %.1f frames/s, %.2fx the quiet run (target "
           "<= 1.5x)\n",
           ts, sh.frames / ts, ts / t);
    const double mean_op = calls > 0 ? in_ops / (double)calls : 1e-3;
    const double lens[] = {mean_op, 1e-3, 1e-2, 1e-1};
    printf("scheduler ceiling, shared / quiet of balanced parallel regions (no memory, no serial "
           "part):");
    for (int i = 0; i < 4; i++) {
        const double r = hl_bench_sched_ceiling(lens[i], 3);
        if (r < 0) break;
        printf("%s %.3g ms %.2fx", i ? "," : "", lens[i] * 1e3, r);
    }
    printf("\n");
    rc = hl_get_threads() > 1 ? tiny_one_thread_shared(o, t) : 0;
done:
    helios_pipeline_free(pipe);
    helios_session_free(s);
    return rc;
}

/* The process's peak resident set (VmHWM) in MiB; getrusage's where /proc is not mounted. */
static double vm_hwm_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb >= 0 ? (double)kb / 1024.0 : peak_rss_mib();
}

/* The last component of a folder's path ("models/helios-tiny/" -> "helios-tiny"). */
static void folder_name(const char *path, char *out, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t b = len;
    while (b > 0 && path[b - 1] != '/') b--;
    snprintf(out, n, "%.*s", (int)(len - b), path + b);
}

/* A model folder end to end, as a user of helios.h meets it (issue 14 item 3): from
 * helios_gen_new with a prompt (its encoding included) to the last frame encoded as H.264 MP4
 * into a temporary file, one run, no warm-up; the pipeline is loaded first, outside the timing.
 * The split comes from the generation's own clocks (api/gen_times.h) and the bench's around the
 * video writer; "other" is the rest of the wall time (the generation's setup, the first chunk's
 * preparation, this loop). Peak RSS (VmHWM) is read when the first minute of video (24 fps) has
 * been encoded and at the end: equal values mean memory stayed flat after the first minute. A
 * second line gives the share of the wall time inside the ops (the op timer, as run_tiny) and the
 * largest ops: what is left between them is the model code's own per-call overhead. */
static int run_e2e(const bench_opts *o, const char *model) {
    enum { FPS = 24, TARGET = 24 };
    helios_session *s = bench_session(o, "e2e");
    if (!s) return 1;
    helios_pipeline_params pp;
    helios_pipeline_params_init(&pp);
    pp.model_dir = model;
    helios_pipeline *pipe = NULL;
    helios_gen *g = NULL;
    helios_video_writer *w = NULL;
    char dir[4096] = "", path[4200] = "", name[256];
    int rc = 1;
    folder_name(model, name, sizeof name);
    double tl = hl_time();
    if (helios_pipeline_load(s, &pp, &pipe) != HELIOS_OK) {
        fprintf(stderr, "helios bench: e2e: %s: %s\n", model, helios_session_error(s));
        goto done;
    }
    tl = hl_time() - tl;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/helios-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "helios bench: e2e: cannot make a temporary folder %s\n", dir);
        dir[0] = '\0';
        goto done;
    }
    snprintf(path, sizeof path, "%s/e2e.mp4", dir);
    helios_video_writer_params wp;
    helios_video_writer_params_init(&wp);
    wp.width = o->e2e_width, wp.height = o->e2e_height, wp.fps = FPS;
    helios_gen_params gp;
    helios_gen_params_init(&gp);
    gp.prompt = "a small red circle and a medium blue square bounce on a dark green background";
    gp.width = o->e2e_width, gp.height = o->e2e_height;
    gp.num_frames = (int)(o->e2e_seconds * FPS + 0.5);
    if (gp.num_frames < 1) gp.num_frames = 1;
    gp.decode = 1;
    double rss_1min = -1, enc = 0;
    hl_op_timing_set(1); /* a clock read per op call: the second line's share inside the ops */
    double t0 = hl_time();
    if (helios_gen_new(pipe, &gp, &g) != HELIOS_OK) {
        fprintf(stderr, "helios bench: e2e: %s: %s\n", model, helios_session_error(s));
        goto done;
    }
    double te = hl_time();
    if (helios_video_writer_open(s, path, &wp, &w) != HELIOS_OK) {
        fprintf(stderr, "helios bench: e2e: %s\n", helios_session_error(s));
        goto done;
    }
    enc += hl_time() - te;
    int chunks = 0, frames = 0;
    for (helios_gen_progress p = {0}; !p.finished;) {
        if (helios_gen_step(g, &p) != HELIOS_OK) {
            fprintf(stderr, "helios bench: e2e: %s\n", helios_gen_error(g));
            goto done;
        }
        if (!p.chunk_done) continue;
        te = hl_time();
        if (helios_video_writer_write(w, p.frames, p.chunk_frames, 0, p.n_frames) != HELIOS_OK) {
            fprintf(stderr, "helios bench: e2e: %s\n", helios_video_writer_error(w));
            goto done;
        }
        enc += hl_time() - te;
        chunks++, frames += p.n_frames;
        if (rss_1min < 0 && frames >= 60 * FPS) rss_1min = vm_hwm_mib();
    }
    te = hl_time();
    if (helios_video_writer_close(w) != HELIOS_OK) {
        fprintf(stderr, "helios bench: e2e: %s\n", helios_video_writer_error(w));
        goto done;
    }
    double t1 = hl_time(), wall = t1 - t0;
    enc += t1 - te;
    hl_op_times ops = *hl_op_times_get();
    hl_op_timing_set(0);
    double rss_end = vm_hwm_mib();
    hl_gen_times gt = hl_gen_times_get(g);
    struct stat st;
    double mp4_kib = stat(path, &st) == 0 ? (double)st.st_size / 1024.0 : 0;
    double other = wall - gt.text_s - gt.transformer_s - gt.sampler_s - gt.decode_s - enc;
    double fps = frames / wall;
    printf("e2e: %s %dx%d %d frames (%.1f s of video, %d chunks, MP4 %.0f KiB) in %.2f s = %.1f "
           "frames/s (target %d: %s) | text %.3f s (%lld prompt%s), transformer %.2f s (%lld "
           "calls), sampler %.2f s (%lld steps), vae decode %.2f s (%lld chunks), video encode "
           "%.2f s, other %.2f s | peak RSS at 1 min ",
           name, o->e2e_width, o->e2e_height, frames, (double)frames / FPS, chunks, mp4_kib, wall,
           fps, TARGET, fps >= TARGET ? "met" : "not met", gt.text_s, (long long)gt.prompts,
           gt.prompts == 1 ? "" : "s", gt.transformer_s, (long long)gt.transformer_calls,
           gt.sampler_s, (long long)gt.steps, gt.decode_s, (long long)gt.decodes, enc, other);
    if (rss_1min >= 0) printf("%.0f MiB", rss_1min);
    else printf("- (the video is shorter)");
    printf(", at end %.0f MiB (load %.2f s, not timed)\n", rss_end, tl);
    double in_ops = 0;
    int64_t op_calls = 0;
    for (int i = 0; i < HL_OP_COUNT; i++) in_ops += ops.seconds[i], op_calls += ops.calls[i];
    printf("e2e ops: %.0f%% of the wall time inside the ops (%.2f s; the transformer and the VAE), "
           "%lld op calls, %.0f us each on average;",
           100.0 * in_ops / wall, in_ops, (long long)op_calls,
           op_calls ? 1e6 * in_ops / (double)op_calls : 0.0);
    for (int n = 0, best; n < 5; n++) { /* the largest ops */
        double sec;
        int64_t c;
        if ((best = take_largest_op(&ops, &sec, &c)) < 0) break;
        printf(" %s %.2f s in %lld", hl_op_name((hl_op_id)best), sec, (long long)c);
    }
    printf("\n");
    rc = 0;
done:
    hl_op_timing_set(0);
    helios_video_writer_free(w); /* after a failure: drops the .part file */
    helios_gen_free(g);
    helios_pipeline_free(pipe);
    helios_session_free(s);
    if (path[0]) unlink(path);
    if (dir[0]) rmdir(dir);
    return rc;
}

/* Our GEMM (src/ops/cpu/gemm) per kernel and form at n^3 and at the block's shapes, each against
 * its ISA's peak (measured again just before each kernel's lines) and oneDNN's matmul on the
 * same shape and layouts (runs interleaved with ours), all measured in this run. */
typedef struct gemm_shape {
    const char *what;
    int ta, tb;
    int64_t M, N, K;
} gemm_shape;

/* The AMX kernel by where its panels live (cpu_bench.h): what each loop structure leaves of
 * the peak before any packing, for the GEMM lines after it. */
static void print_amx_ceilings(int reps, const hl_peak *p) {
    static const char *const what[HL_AMX_PLACE_COUNT] = {
        "panels in L1 (K 256, whole K a call)",
        "panels streaming from L2 (8 + 8 of K 1536, whole K a call: our loop)",
        "K slices of 384 from L2, B slice in L1, C tiles stored and reloaded (BLIS loop)"};
    double g[HL_AMX_PLACE_COUNT];
    if (hl_amx_ceilings(reps, g) != 0) return;
    for (int k = 0; k < HL_AMX_PLACE_COUNT; k++)
        printf("amx kernel, %s: %.0f GFLOP/s, %.0f%% of amx-bf16 peak %.0f\n", what[k], g[k],
               100.0 * g[k] / p->gflops, p->gflops);
}

static int run_gemm(const bench_opts *o, const hl_peak *pk) {
    const int64_t n = o->gemm_n, S = o->tokens, D = o->dim, F = o->ffn, L = o->text;
    const gemm_shape shapes[] = {
        {"n^3 x.Wt", 0, 1, n, n, n},
        {"n^3 dy.W", 0, 0, n, n, n},
        {"n^3 dyt.x", 1, 0, n, n, n},
        {"block q/k/v/o x.Wt", 0, 1, S, D, D},
        {"block ffn0 x.Wt", 0, 1, S, F, D},
        {"block ffn2 x.Wt", 0, 1, S, D, F},
        {"block text k/v x.Wt", 0, 1, L, D, D},
        {"block q dx = dy.W", 0, 0, S, D, D},
        {"block q dW = dyt.x", 1, 0, D, D, S},
    };
    enum { NS = sizeof shapes / sizeof shapes[0] };
    static const struct {
        hl_gemm_kernel k;
        int bf16, peak;
    } runs[] = {{HL_GEMM_AMX, 1, HL_PEAK_AMX_BF16},
                {HL_GEMM_AVX512_BF16, 1, HL_PEAK_AVX512_BF16},
                {HL_GEMM_AVX512, 1, HL_PEAK_AVX512_F32},
                {HL_GEMM_AVX512, 0, HL_PEAK_AVX512_F32},
                {HL_GEMM_AVX2, 0, HL_PEAK_AVX2}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        if (!hl_gemm_kernel_available(runs[r].k)) {
            printf("gemm %s: skipped: not on this CPU\n", hl_gemm_kernel_name(runs[r].k));
            continue;
        }
        const char *dt = runs[r].bf16 ? "bf16" : "f32";
        hl_peak now[HL_PEAK_COUNT]; /* again before each kernel: a shared machine's load moves */
        hl_cpu_peaks(o->reps, -1, now);
        const hl_peak *p = now[runs[r].peak].gflops > 0 ? &now[runs[r].peak] : &pk[runs[r].peak];
        if (runs[r].k == HL_GEMM_AMX) print_amx_ceilings(o->reps, p);
        for (int s = 0; s < NS; s++) {
            const gemm_shape *g = &shapes[s];
            double ours, d;
            if (hl_gemm_bench_pair(runs[r].k, runs[r].bf16, g->ta, g->tb, g->M, g->N, g->K, o->reps,
                                   &ours, &d) != 0) {
                fprintf(stderr, "helios bench: gemm %s failed\n", hl_gemm_kernel_name(runs[r].k));
                return 1;
            }
            printf("gemm %s %s %s %lldx%lldx%lld: %.0f GFLOP/s, %.0f%% of %s peak %.0f, "
                   "%.2fx oneDNN %s (%.0f GFLOP/s)\n",
                   hl_gemm_kernel_name(runs[r].k), dt, g->what, (long long)g->M, (long long)g->N,
                   (long long)g->K, ours, 100.0 * ours / p->gflops, p->isa, p->gflops, ours / d, dt,
                   d);
        }
    }
    /* the scalar fallback on a small shape only (it is ~50x slower) */
    double sc = -1, d = -1;
    hl_gemm_bench_pair(HL_GEMM_SCALAR, 0, 0, 1, 512, 512, 512, o->reps, &sc, &d);
    printf("gemm scalar f32 x.Wt 512x512x512: %.1f GFLOP/s, %.2fx oneDNN f32 (%.0f GFLOP/s)\n", sc,
           d > 0 ? sc / d : 0.0, d);
    return 0;
}

/* One training step at the block shape: f32, or bf16 (f32 master weights, bf16 GEMM operands). */
static int train_block(const bench_opts *o, const yardstick *y, int bf16) {
    hl_error err = {0};
    hl_train_bench b;
    const char *dt = bf16 ? "bf16" : "f32";
    double before = peak_now(y);
    if (hl_train_bench_block(o->dim, (int)o->heads, o->ffn, o->tokens, o->text, bf16, o->reps, &b,
                             &err) != HL_OK) {
        fprintf(stderr, "helios bench: training block %s: %s\n", dt, err.msg);
        return 1;
    }
    double after = peak_now(y);
    printf("train block %s: D %lld, %lld heads, ffn %lld, %lld tokens, %lld text, %.1fM "
           "parameters: forward %.3f s, backward %.3f s (%.2fx the forward), AdamW %.3f s "
           "(medians of %d)\n",
           dt, (long long)o->dim, (long long)o->heads, (long long)o->ffn, (long long)o->tokens,
           (long long)o->text, (double)b.params * 1e-6, b.fwd_s, b.bwd_s, b.bwd_s / b.fwd_s,
           b.opt_s, o->reps);
    double step = b.fwd_s + b.bwd_s + b.opt_s;
    printf("train block %s forward: ", dt);
    quote(y, b.fwd_flops / b.fwd_s * 1e-9);
    printf("\ntrain block %s backward: ", dt);
    quote(y, 2 * b.fwd_flops / b.bwd_s * 1e-9);
    printf("\ntrain block %s step: %.0f tokens/s, ", dt, (double)b.tokens / step);
    quote(y, b.step_flops / step * 1e-9);
    printf("\ntrain block %s step: ", dt);
    quote_around(b.step_flops / step * 1e-9, before, after);
    printf("\ntrain block %s memory: %.0f MiB of activations and backward scratch, peak RSS %.0f "
           "MiB\n",
           dt, (double)b.act_bytes / 1048576.0, peak_rss_mib());
    return 0;
}

/* Training steps (issue 10 item 9): the block shape in f32 and, where oneDNN has bf16 GEMMs, in
 * mixed precision (quoted against the bf16 baseline), then the tiny model on stage 1. */
static int run_train(const bench_opts *o, const yardstick *y) {
    hl_error err = {0};
    hl_train_bench b;
    if (train_block(o, y, 0)) return 1;
    double bf16_base = hl_cpu_gemm_ceiling_gflops(o->gemm_n, HL_BF16, o->reps);
    if (bf16_base > 0) {
        printf("baseline: oneDNN bf16 GEMM %lld^3: %.0f GFLOP/s (median of %d), %.0f%% of peak\n",
               (long long)o->gemm_n, bf16_base, o->reps, 100.0 * bf16_base / y->peak);
        yardstick yb = *y;
        yb.baseline = bf16_base;
        if (train_block(o, &yb, 1)) return 1;
    } else {
        printf("train block bf16: skipped: oneDNN has no bf16 GEMM on this CPU\n");
    }
    hl_train_bench keep;
    if (hl_train_bench_model(o->tiny_model, 1, 0, 9, 8, 8, 0, 1, &keep, &err) != HL_OK ||
        hl_train_bench_model(o->tiny_model, 1, 0, 9, 8, 8, 1, o->reps, &b, &err) != HL_OK) {
        fprintf(stderr, "helios bench: training %s: %s\n", o->tiny_model, err.msg);
        return 1;
    }
    double step = b.fwd_s + b.opt_s;
    printf("train model %s (stage 1, 9x8x8 latent chunk with a full history, %lld tokens, "
           "%.2fM parameters): step %.1f ms (AdamW %.1f ms), %.0f tokens/s, %.1f GFLOP/s, "
           "%.1f%% of peak\n",
           o->tiny_model, (long long)b.tokens, (double)b.params * 1e-6, step * 1e3, b.opt_s * 1e3,
           (double)b.tokens / step, b.step_flops / step * 1e-9,
           100.0 * b.step_flops / step * 1e-9 / y->peak);
    printf("train model memory: %.2f MiB of activations with per-block recomputation, %.2f MiB "
           "without\n",
           (double)b.act_bytes / 1048576.0, (double)keep.act_bytes / 1048576.0);
    return 0;
}

/* Whole stage-2 training steps of model's transformer (random weights, synthetic clips of an
 * h x w latent, the objective's sampling, forward, backward and AdamW), the level samples in turn
 * and packed ("pack_levels"), measured alternately. */
static int pack_model(const bench_opts *o, const char *model, int64_t h, int64_t w) {
    hl_error err = {0};
    hl_train_bench b[2];
    double t[2][64];
    int reps = o->reps < 1 ? 1 : o->reps > 64 ? 64 : o->reps;
    for (int r = 0; r < reps; r++) /* alternating: a machine that slows down slows both */
        for (int pk = 0; pk < 2; pk++) {
            if (hl_train_bench_model(model, 2, pk, 9, (int)h, (int)w, 0, 1, &b[pk], &err) !=
                HL_OK) {
                fprintf(stderr, "helios bench: pack: %s: %s\n", model, err.msg);
                return 1;
            }
            t[pk][r] = b[pk].fwd_s + b[pk].opt_s;
        }
    double turn = median(t[0], reps), packed = median(t[1], reps);
    printf("pack: model %s, stage-2 step (4 level samples, %lld tokens, no recomputation): in "
           "turn %.1f ms (%.1f MiB of activations) | packed %.1f ms (%.1f MiB) (%.2fx, medians "
           "of %d)\n",
           model, (long long)b[1].tokens, turn * 1e3, (double)b[0].act_bytes / 1048576.0,
           packed * 1e3, (double)b[1].act_bytes / 1048576.0, turn / packed, reps);
    return 0;
}

/* Stage 2's pyramid (issue 13 item 1): the K = 4 level samples of one chunk (ratios [1, 2, 1])
 * of a --width x --height video, each with the chunk's full-resolution history, in turn (as
 * helios trains) or packed into one variable-length sequence (as the released training does). */
static int run_pack(const bench_opts *o, const char *model) {
    int64_t h = o->e2e_height / 8, w = o->e2e_width / 8; /* the latent */
    if (o->e2e_width % 64 || o->e2e_height % 64) {
        fprintf(stderr, "helios bench: --only pack needs --width and --height multiples of 64 "
                        "(3 pyramid levels of 2x2 patches)\n");
        return 2;
    }
    int64_t hist = 4 * ((h + 7) / 8) * ((w + 7) / 8) + ((h + 3) / 4) * ((w + 3) / 4) +
                   2 * (h / 2) * (w / 2); /* long 16 (4,8,8), mid 2 (2,4,4), short 2 (1,2,2) */
    int64_t n[4];
    const int level[4] = {0, 1, 1, 2}; /* ratios [1, 2, 1], level 2 the full resolution */
    for (int i = 0; i < 4; i++) {
        int down = 2 - level[i];
        n[i] = hist + 9 * ((h >> down) / 2) * ((w >> down) / 2);
    }
    hl_error err = {0};
    hl_train_pack_times b;
    if (hl_train_bench_pack(o->dim, (int)o->heads, o->ffn, o->text, hist, n, 4, o->reps, &b,
                            &err) != HL_OK) {
        fprintf(stderr, "helios bench: pack: %s\n", err.msg);
        return 1;
    }
    printf("pack: stage 2 at %dx%d (latent %lldx%lld), one block D %lld, %lld heads, ffn %lld, "
           "%lld text, f32: 4 level samples of %lld, %lld, %lld, %lld tokens (history %lld "
           "each), %lld packed (medians of %d)\n",
           o->e2e_width, o->e2e_height, (long long)h, (long long)w, (long long)o->dim,
           (long long)o->heads, (long long)o->ffn, (long long)o->text, (long long)n[0],
           (long long)n[1], (long long)n[2], (long long)n[3], (long long)hist, (long long)b.tokens,
           o->reps);
    printf("pack: in turn %.2f ms (%.2f + %.2f + %.2f + %.2f) | packed, variable-length "
           "attention %.2f ms (%.2fx)\n",
           b.in_turn_s * 1e3, b.one_s[0] * 1e3, b.one_s[1] * 1e3, b.one_s[2] * 1e3,
           b.one_s[3] * 1e3, b.packed_s * 1e3, b.in_turn_s / b.packed_s);
    printf("pack: %s\n", b.packed_s < 0.95 * b.in_turn_s   ? "packing pays at this shape"
                         : b.packed_s > 1.05 * b.in_turn_s ? "in turn is faster at this shape"
                                                           : "no difference at this shape (5%)");
    return model ? pack_model(o, model, h, w)
                 : (printf("pack: no model folder: no step line\n"), 0);
}

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: helios bench [options]\n"
        "\n"
        "Measures the peak of each ISA of this CPU and a large oneDNN GEMM (the library\n"
        "baseline) and times one transformer block (random weights) against both. The\n"
        "block, umT5, VAE and training-step lines are quoted a second time against the\n"
        "peak measured beside them (after each block run; just before and after the\n"
        "others): on a shared machine the peak itself moves from run to run.\n"
        "  --threads N     threads, 1..%d (default 0: all cores)\n"
        "  --reps N        timed runs, 1..64, the median is reported (default 5)\n"
        "  --f32           f32 weights and GEMMs instead of bf16\n"
        "  --tokens N      current tokens (default 2304)\n"
        "  --text N        text tokens (default 512)\n"
        "  --dim N --heads N --ffn N   block shape (default 1536, 12, 8960: Wan2.1-1.3B)\n"
        "  --gemm N        baseline GEMM size N x N x N (default 4096)\n"
        "  --only block|umt5|vae|tiny|linear|train|gemm|e2e|pack  run one part (default: block\n"
        "                  and linear; with --full also umt5 and vae); tiny: the tiny random\n"
        "                  model end to end (frames/s, the share of time inside the ops),\n"
        "                  then beside a second busy process it starts (the slowdown,\n"
        "                  target 1.5x), the scheduler's ceiling for balanced parallel\n"
        "                  work beside it, and one thread beside it;\n"
        "                  e2e: --model from prompt to frames encoded (H.264 MP4 in a\n"
        "                  temporary file), one run: frames/s against the target of %d, the\n"
        "                  time in the text encoder, transformer calls, the sampler, VAE\n"
        "                  decode and video encoding, and peak RSS after 1 minute of video and\n"
        "                  at the end; then the share of that time inside the ops;\n"
        "                  linear: hl_linear against hl_linear_backward at the block's\n"
        "                  linear shapes; train: training steps (f32 and bf16) of the block shape\n"
        "                  and of the --tiny-model on stage 1; gemm: our GEMM per kernel\n"
        "                  and form at --gemm N and the block shapes, against each ISA's\n"
        "                  peak and oneDNN on the same shape (on an AMX CPU, first the AMX\n"
        "                  kernel alone with its panels in L1, streaming from L2, and in\n"
        "                  K slices); pack: stage 2's four level\n"
        "                  samples of a --width x --height chunk through one block (the\n"
        "                  --dim/--heads/--ffn/--text shape, f32), in turn vs packed into\n"
        "                  one variable-length sequence, then whole stage-2 training\n"
        "                  steps of the --model's transformer both ways\n"
        "  --train         the same as --only train\n"
        "  --tiny-model DIR  (default tests/models/tiny-random-model)\n"
        "  --tiny-frames N   video frames at 256x128 (default 33)\n"
        "  --model DIR       e2e, pack: a model folder (default: $HELIOS_MODEL, else the shipped\n"
        "                    tiny Distilled model, models/helios-tiny, as helios generate)\n"
        "  --seconds S       e2e: video length at 24 fps (default 60; 600 = 10 minutes)\n"
        "  --width W --height H  e2e and pack: video size (default 64x64, helios-tiny's\n"
        "                  native size)\n"
        "  --full          also the umT5-XXL encode and the VAE decode (slow: minutes)\n"
        "  --vae-full      the VAE line also decodes 384x640 (slow: ~1 min more)\n"
        "Numbers must be whole values in range; an option given twice takes its last value.\n"
        "A bad command line exits with status 2.\n",
        HELIOS_MAX_THREADS, 24);
}

int cmd_bench(int argc, char **argv) {
    bench_opts o = {.vae_sizes = 1,
                    .reps = 5,
                    .tokens = 2304,
                    .text = 512,
                    .dim = 1536,
                    .heads = 12,
                    .ffn = 8960,
                    .gemm_n = 4096,
                    .dtype = HL_BF16,
                    .tiny_model = "tests/models/tiny-random-model",
                    .tiny_frames = 33,
                    .tiny_width = 256,
                    .tiny_height = 128,
                    .e2e_seconds = 60,
                    .e2e_width = 64,
                    .e2e_height = 64};
    static const char *const parts[] = {"block", "umt5", "vae", "tiny", "linear",
                                        "train", "gemm", "e2e", "pack"};
    args a;
    args_init(&a, "helios bench", argc, argv);
    int rc = 0, k;
    /* bounds: far above the released shapes, low enough that the products below fit */
    while (!rc && args_next(&a)) {
        if (args_is(&a, "-h", "--help")) {
            usage(stdout);
            return 0;
        } else if (args_is(&a, NULL, "--f32")) o.dtype = HL_F32;
        else if (args_is(&a, NULL, "--vae-full")) o.vae_sizes = 2;
        else if (args_is(&a, NULL, "--full")) o.full = 1;
        else if (args_is(&a, NULL, "--only")) {
            if (!(rc = args_choice(&a, parts, 9, &k))) o.only = parts[k];
        } else if (args_is(&a, NULL, "--train")) {
            o.only = "train";
        } else if (args_is(&a, NULL, "--threads"))
            rc = args_int(&a, 0, HELIOS_MAX_THREADS, &o.threads);
        else if (args_is(&a, NULL, "--reps")) rc = args_int(&a, 1, 64, &o.reps); /* times[64] */
        else if (args_is(&a, NULL, "--tokens")) rc = args_i64(&a, 1, 1 << 20, &o.tokens);
        else if (args_is(&a, NULL, "--text"))
            rc = args_i64(&a, 1, HELIOS_MAX_SEQUENCE_LENGTH, &o.text);
        else if (args_is(&a, NULL, "--dim")) rc = args_i64(&a, 2, 1 << 16, &o.dim);
        else if (args_is(&a, NULL, "--heads")) rc = args_i64(&a, 1, 1024, &o.heads);
        else if (args_is(&a, NULL, "--ffn")) rc = args_i64(&a, 1, 1 << 18, &o.ffn);
        else if (args_is(&a, NULL, "--tiny-model")) rc = args_str(&a, &o.tiny_model);
        else if (args_is(&a, NULL, "--tiny-frames")) rc = args_int(&a, 1, 1024, &o.tiny_frames);
        else if (args_is(&a, NULL, "--gemm")) rc = args_i64(&a, 64, 1 << 14, &o.gemm_n);
        else if (args_is(&a, NULL, "--model")) rc = args_str(&a, &o.e2e_model);
        else if (args_is(&a, NULL, "--seconds"))
            rc = args_double(&a, 1.0 / 24, (double)HELIOS_MAX_FRAMES / 24, &o.e2e_seconds);
        else if (args_is(&a, NULL, "--width")) rc = args_int(&a, 1, HELIOS_MAX_SIDE, &o.e2e_width);
        else if (args_is(&a, NULL, "--height"))
            rc = args_int(&a, 1, HELIOS_MAX_SIDE, &o.e2e_height);
        else {
            rc = args_fail(&a, "unknown option '%s'\n", a.opt);
            usage(stderr);
        }
    }
    if (rc) return rc;
    if (o.dim % o.heads || (o.dim / o.heads) % 2)
        return args_fail(&a, "--dim %lld does not split into --heads %lld of even width",
                         (long long)o.dim, (long long)o.heads);
    int e2e = o.only && !strcmp(o.only, "e2e"), pack = o.only && !strcmp(o.only, "pack");
    char model_buf[4200];
    const char *model = o.e2e_model;
    if (pack && !model) model = default_model(model_buf, sizeof model_buf); /* NULL: none */
    if (e2e && !model && !(model = default_model(model_buf, sizeof model_buf)))
        return args_fail(&a, "--only e2e: no --model DIR, and no default model (%s)",
                         default_model_places());
    hl_set_threads(o.threads);
    const char *wp = getenv("OMP_WAIT_POLICY"), *sc = getenv("GOMP_SPINCOUNT");
    printf("threads: %d (idle threads: OMP_WAIT_POLICY=%s GOMP_SPINCOUNT=%s)\n", hl_get_threads(),
           wp ? wp : "unset", sc ? sc : "unset");
    char feat[256];
    hl_cpu_features(feat, sizeof feat);
    printf("cpu: %s\n", feat);
    if (e2e) return run_e2e(&o, model);
    hl_peak pk[HL_PEAK_COUNT];
    hl_cpu_peaks(o.reps, -1, pk);
    yardstick y = {.peak = -1, .peak_isa = "none", .peak_index = -1};
    for (int i = 0; i < HL_PEAK_COUNT; i++) {
        if (pk[i].gflops > 0) printf("peak: %s %.0f GFLOP/s\n", pk[i].isa, pk[i].gflops);
        else printf("peak: %s skipped: %s\n", pk[i].isa, pk[i].why);
        if (pk[i].gflops > y.peak) y.peak = pk[i].gflops, y.peak_isa = pk[i].isa, y.peak_index = i;
    }
    if (o.only && !strcmp(o.only, "tiny")) return run_tiny(&o);
    if (o.only && !strcmp(o.only, "gemm")) return run_gemm(&o, pk);
    if (pack) return run_pack(&o, model);
    if (!(y.peak > 0)) { /* no vector ISA found: quote against the baseline alone */
        printf("peak: none of these ISAs here; lines quote the library baseline\n");
        y.peak_isa = "baseline";
    }
    int train = o.only && !strcmp(o.only, "train");
    hl_dtype ceil_dt = train ? HL_F32 : o.dtype; /* training computes in f32 */
    double ceiling = hl_cpu_gemm_ceiling_gflops(o.gemm_n, ceil_dt, o.reps);
    if (!(ceiling > 0) && ceil_dt == HL_BF16) {
        /* oneDNN 2.6 has bf16 kernels only with AVX-512; here bf16 weights run as f32 GEMMs */
        printf("baseline: oneDNN has no bf16 GEMM on this CPU; bf16 weights compute in f32\n");
        ceil_dt = HL_F32;
        ceiling = hl_cpu_gemm_ceiling_gflops(o.gemm_n, ceil_dt, o.reps);
    }
    if (!(ceiling > 0)) {
        fprintf(stderr, "helios bench: the baseline GEMM failed\n");
        return 1;
    }
    y.baseline = ceiling;
    if (!(y.peak > 0)) y.peak = ceiling;
    printf("baseline: oneDNN %s GEMM %lld^3 (the library baseline): %.0f GFLOP/s (median of %d), "
           "%.0f%% of peak\n",
           ceil_dt == HL_BF16 ? "bf16" : "f32", (long long)o.gemm_n, ceiling, o.reps,
           100.0 * ceiling / y.peak);
    rc = 0;
    if (!o.only || !strcmp(o.only, "block")) rc |= run_block(&o, &y);
    if (!o.only || !strcmp(o.only, "linear")) rc |= run_linear(&o, &y);
    if ((!o.only && o.full) || (o.only && !strcmp(o.only, "umt5"))) rc |= run_umt5(&o, &y);
    if ((!o.only && o.full) || (o.only && !strcmp(o.only, "vae"))) rc |= run_vae(&o, &y);
    if (train) rc |= run_train(&o, &y);
    return rc;
}
