#include "bench/train_bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/cpu_bench.h"
#include "core/parallel.h"
#include "dit/tape.h"
#include "io/json.h"
#include "ops/ops.h"
#include "train/adamw.h"
#include "train/dit_flat.h"
#include "train/objective_flow.h"
#include "train/synthetic.h"

/* Multiply-adds x2 of one block over S current tokens and L text tokens (as tools/bench.c). */
static double block_flops(int64_t D_, int64_t F_, int64_t S, int64_t L) {
    double D = (double)D_, F = (double)F_, s = (double)S, l = (double)L;
    double self_attn = 4 * 2 * s * D * D + 4 * s * s * D;
    double cross = 2 * 2 * s * D * D + 2 * 2 * l * D * D + 4 * s * l * D;
    return self_attn + cross + 2 * 2 * s * D * F;
}

static void fill(float *x, int64_t n, uint64_t *s, float a) {
    for (int64_t i = 0; i < n; i++) {
        *s += 0x9e3779b97f4a7c15ull;
        uint64_t z = *s;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        x[i] = a * (float)((double)(z >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    }
}

/* The parameters of block 0 in the layout: one contiguous range. */
static void block_range(const hl_params *l, int64_t *off, int64_t *n) {
    int64_t lo = -1, hi = 0;
    for (size_t i = 0; i < l->n; i++)
        if (!strncmp(l->p[i].name, "blocks.0.", 9)) {
            if (lo < 0) lo = l->p[i].offset;
            hi = l->p[i].offset + l->p[i].numel;
        }
    *off = lo < 0 ? 0 : lo;
    *n = hi - *off;
}

/* One block over the sequences of r (each attending to L text tokens): the training steps of
 * hl_train_bench_block. */
static hl_status block_steps(int64_t D, int heads, int64_t ffn, const hl_dit_rows *r, int64_t L,
                             int bf16, int reps, hl_train_bench *out, hl_error *err) {
    memset(out, 0, sizeof *out);
    int64_t S = r->M, nL = (int64_t)r->n * L, n12 = (int64_t)r->n * 12 * D;
    hl_dit_config c = {.patch = {1, 2, 2},
                       .heads = heads,
                       .head_dim = (int)(D / heads),
                       .dim = (int)D,
                       .in_channels = 16,
                       .out_channels = 16,
                       .text_dim = (int)D,
                       .freq_dim = 256,
                       .ffn_dim = (int)ffn,
                       .num_layers = 1,
                       .cross_attn_norm = true,
                       .eps = 1e-6f,
                       .rope_theta = 10000.0,
                       .guidance_cross_attn = true,
                       .zero_history_timestep = true};
    int hd = c.head_dim;
    c.rope_dim[1] = c.rope_dim[2] = (hd / 3) & ~1;
    c.rope_dim[0] = hd - 2 * c.rope_dim[1];
    hl_params layout = {0};
    hl_bufs bufs = {0};
    hl_dit *m = NULL, *g = NULL;
    hl_adamw opt = {0};
    float *w = NULL, *gw = NULL;
    hl_bf16 *shadow = NULL;
    hl_status st = hl_dit_params_layout(&c, &layout, err);
    if (st == HL_OK) {
        w = calloc((size_t)layout.total, sizeof *w);
        gw = calloc((size_t)layout.total, sizeof *gw);
        if (bf16) shadow = calloc((size_t)layout.total, sizeof *shadow);
        if (!w || !gw || (bf16 && !shadow))
            st = hl_fail(err, HELIOS_ERR_OOM, "bench: out of memory");
    }
    hl_rng rng = {.path = HL_RNG_NORMAL_AVX2};
    hl_rng_seed(&rng, 1);
    if (st == HL_OK) {
        hl_dit_params_init_random(&c, &layout, w, &rng);
        if (bf16) hl_params_to_bf16(&layout, w, shadow);
        st = bf16 ? hl_dit_new_flat_bf16(&c, &layout, w, shadow, &m, err)
                  : hl_dit_new_flat(&c, &layout, w, &m, err);
    }
    if (st == HL_OK) st = hl_dit_new_flat(&c, &layout, gw, &g, err);
    int64_t off, n;
    block_range(&layout, &off, &n);
    if (st == HL_OK) st = hl_adamw_init(&opt, n, err);
    hl_dit_block_tape t;
    hl_dit_block_grad_scratch s;
    if (st == HL_OK && (hl_dit_block_tape_alloc(&bufs, &c, r, &t) != HL_OK ||
                        hl_dit_block_grad_scratch_alloc(&bufs, &c, r, &s) != HL_OK))
        st = hl_fail(err, HELIOS_ERR_OOM, "bench: out of memory for the block's activations");
    float *x = hl_bufs_alloc(&bufs, (size_t)(S * D)), *y = hl_bufs_alloc(&bufs, (size_t)(S * D));
    float *dx = hl_bufs_alloc(&bufs, (size_t)(S * D)),
          *enc = hl_bufs_alloc(&bufs, (size_t)(nL * D));
    float *denc = hl_bufs_alloc(&bufs, (size_t)(nL * D)),
          *tproj = hl_bufs_alloc(&bufs, (size_t)n12);
    float *dtproj = hl_bufs_alloc(&bufs, (size_t)n12),
          *rope = hl_bufs_alloc(&bufs, (size_t)(S * hd));
    float *wt = hl_bufs_alloc(&bufs, (size_t)D);
    if (st == HL_OK && !(x && y && dx && enc && denc && tproj && dtproj && rope && wt))
        st = hl_fail(err, HELIOS_ERR_OOM, "bench: out of memory");
    hl_ctx ctx = {hl_backend_shared(HELIOS_BACKEND_CPU), err};
    if (st == HL_OK) {
        uint64_t seed = 7;
        fill(x, S * D, &seed, 1.0f);
        fill(enc, nL * D, &seed, 1.0f);
        fill(tproj, n12, &seed, 0.1f);
        for (int i = 0; i < r->n; i++) { /* a grid per sequence: 16-row frames where they fit */
            int64_t Si = r->seq[i].n_hist + r->seq[i].n_cur;
            int64_t T = Si % 256 == 0 ? Si / 256 : 1, H = Si % 256 == 0 ? 16 : 1;
            hl_dit_rope_grid(&c, T, NULL, H, Si / (T * H), rope + r->seq[i].rope0 * hd);
        }
    }
    double tf[64], tb[64], to[64];
    reps = reps < 1 ? 1 : reps > 64 ? 64 : reps;
    hl_adamw_config ac = {0.9, 0.999, 1e-8, 0.01};
    for (int k = -1; st == HL_OK && k < reps; k++) { /* k = -1: warm-up */
        uint64_t seed = 11;
        fill(dx, S * D, &seed, 1e-3f);
        memset(dtproj, 0, (size_t)n12 * sizeof *dtproj);
        double t0 = hl_time();
        st = hl_dit_block_forward_train(&ctx, &c, &m->blocks[0], r, tproj, rope, enc, x, &t, y, wt);
        double t1 = hl_time();
        if (st == HL_OK)
            st = hl_dit_block_backward(&ctx, &c, &m->blocks[0], r, rope, enc, &t, &s, &g->blocks[0],
                                       dtproj, denc, dx);
        double t2 = hl_time();
        if (st == HL_OK) hl_adamw_step(&opt, &ac, 1e-5, w + off, gw + off);
        if (st == HL_OK && bf16) hl_params_to_bf16(&layout, w, shadow);
        double t3 = hl_time();
        if (k >= 0) tf[k] = t1 - t0, tb[k] = t2 - t1, to[k] = t3 - t2;
    }
    if (st == HL_OK) {
        out->fwd_s = hl_bench_median(tf, reps);
        out->bwd_s = hl_bench_median(tb, reps);
        out->opt_s = hl_bench_median(to, reps);
        for (int i = 0; i < r->n; i++)
            out->fwd_flops += block_flops(D, ffn, r->seq[i].n_hist + r->seq[i].n_cur, L);
        out->step_flops = 3 * out->fwd_flops;
        out->params = n;
        out->tokens = S;
        out->act_bytes = bufs.bytes;
    }
    hl_bufs_free(&bufs);
    hl_adamw_free(&opt);
    hl_dit_free(m), hl_dit_free(g);
    free(w), free(gw), free(shadow);
    hl_params_free(&layout);
    return st;
}

hl_status hl_train_bench_block(int64_t D, int heads, int64_t ffn, int64_t S, int64_t L, int bf16,
                               int reps, hl_train_bench *out, hl_error *err) {
    hl_dit_seq one = {.n_cur = S};
    hl_dit_rows r = {1, S, L, &one};
    return block_steps(D, heads, ffn, &r, L, bf16, reps, out, err);
}

hl_status hl_train_bench_model(const char *model_dir, int stage, int pack_levels, int chunk_frames,
                               int height, int width, int recompute, int reps, hl_train_bench *out,
                               hl_error *err) {
    memset(out, 0, sizeof *out);
    char path[4096];
    snprintf(path, sizeof path, "%s/transformer/config.json", model_dir);
    hl_json *j = NULL;
    hl_dit_config c;
    HL_TRY(hl_json_load_file(path, &j, err));
    hl_status st = hl_dit_config_parse(j, &c, err);
    hl_json_free(j);
    HL_TRY(st);
    hl_params layout = {0};
    hl_synthetic data = {0};
    hl_flow_objective o = {0};
    hl_adamw opt = {0};
    float *w = NULL, *gw = NULL;
    st = hl_dit_params_layout(&c, &layout, err);
    if (st == HL_OK) {
        w = calloc((size_t)layout.total, sizeof *w);
        gw = calloc((size_t)layout.total, sizeof *gw);
        if (!w || !gw) st = hl_fail(err, HELIOS_ERR_OOM, "bench: out of memory");
    }
    hl_rng rng = {.path = HL_RNG_NORMAL_AVX2};
    hl_rng_seed(&rng, 1);
    if (st == HL_OK) hl_dit_params_init_random(&c, &layout, w, &rng);
    if (st == HL_OK)
        st = hl_synthetic_make(&data, c.in_channels, 3 * chunk_frames, height, width, 16,
                               c.text_dim, 4, 1, err);
    hl_stage2_config s;
    hl_stage2_config_default(&s);
    hl_stage1_config_default(&s.base);
    s.base.chunk_frames = chunk_frames;
    s.base.zero_history_timestep = c.zero_history_timestep;
    s.base.p_t2v = s.base.p_v2v = 0.0f; /* every step with the whole history: the cost measured */
    hl_ctx ctx = {hl_backend_shared(HELIOS_BACKEND_CPU), err};
    if (st == HL_OK)
        st = hl_flow_objective_init(&o, &ctx, &c, &layout, stage, &s, hl_synthetic_source(&data),
                                    recompute, err);
    o.pack_levels = pack_levels;
    if (st == HL_OK) st = hl_adamw_init(&opt, layout.total, err);
    double ts[64], to[64];
    reps = reps < 1 ? 1 : reps > 64 ? 64 : reps;
    hl_adamw_config ac = {0.9, 0.999, 1e-8, 0.01};
    for (int r = -1; st == HL_OK && r < reps; r++) {
        double loss, t0 = hl_time();
        memset(gw, 0, (size_t)layout.total * sizeof *gw);
        st = hl_flow_objective_step(&o, &rng, r + 1, w, gw, &loss, err);
        double t1 = hl_time();
        if (st == HL_OK) hl_adamw_step(&opt, &ac, 1e-4, w, gw);
        double t2 = hl_time();
        if (r >= 0) ts[r] = t1 - t0, to[r] = t2 - t1;
    }
    if (st == HL_OK) {
        /* tokens of one sample: history + current (as the plan of the forward counts them) */
        int64_t hist = 4 * ((height + 7) / 8) * ((width + 7) / 8) +
                       ((height + 3) / 4) * ((width + 3) / 4) + 2 * (height / 2) * (width / 2);
        int64_t cur = (int64_t)chunk_frames * (height / 2) * (width / 2);
        out->tokens = hist + cur;
        out->fwd_flops = c.num_layers * block_flops(c.dim, c.ffn_dim, out->tokens, 16);
        if (stage == 2) { /* the tokens the steps saw: the K level samples of each */
            out->tokens = (int64_t)(hl_flow_objective_tokens(&o) + 0.5);
            out->fwd_flops = 0; /* (their FLOPs are not counted here) */
        }
        out->fwd_s = hl_bench_median(ts, reps);
        out->opt_s = hl_bench_median(to, reps);
        out->step_flops = 3 * out->fwd_flops;
        out->params = layout.total;
        out->act_bytes = o.peak_tape_bytes;
    }
    hl_flow_objective_free(&o);
    hl_synthetic_free(&data);
    hl_adamw_free(&opt);
    free(w), free(gw);
    hl_params_free(&layout);
    return st;
}

hl_status hl_train_bench_pack(int64_t D, int heads, int64_t ffn, int64_t L, int64_t hist,
                              const int64_t *n, int K, int reps, hl_train_pack_times *out,
                              hl_error *err) {
    memset(out, 0, sizeof *out);
    if (K < 1 || K > 64)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "bench: %d sequences to pack (1..64)", K);
    hl_dit_seq seq[64];
    int64_t total = 0;
    for (int i = 0; i < K; i++) {
        if (n[i] <= hist)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "bench: sequence %d of %lld tokens, "
                           "history %lld",
                           i, (long long)n[i], (long long)hist);
        seq[i] = (hl_dit_seq){.row0 = total, .n_hist = hist, .n_cur = n[i] - hist, .rope0 = total};
        int same = -1; /* a length met before (the level ratios repeat one) is timed once */
        for (int j = 0; j < i && same < 0; j++)
            if (n[j] == n[i]) same = j;
        if (same >= 0) {
            out->one_s[i] = out->one_s[same];
        } else {
            hl_dit_seq one = {.n_hist = hist, .n_cur = n[i] - hist};
            hl_dit_rows r = {1, n[i], L, &one};
            hl_train_bench b;
            HL_TRY(block_steps(D, heads, ffn, &r, L, 0, reps, &b, err));
            out->one_s[i] = b.fwd_s + b.bwd_s;
        }
        out->in_turn_s += out->one_s[i];
        total += n[i];
    }
    hl_dit_rows r = {K, total, L, seq};
    hl_train_bench b;
    HL_TRY(block_steps(D, heads, ffn, &r, L, 0, reps, &b, err));
    out->packed_s = b.fwd_s + b.bwd_s;
    out->tokens = total;
    return HL_OK;
}
