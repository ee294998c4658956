/* `helios bench --train`: one training step of the transformer — the training forward (with its
 * tape), the backward and AdamW — at a block shape (the Wan2.1-1.3B block by default) and for a
 * small whole model on the stage-1 objective. Not used by the library. */
#ifndef HL_TRAIN_BENCH_H
#define HL_TRAIN_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct hl_train_bench {
    double fwd_s, bwd_s, opt_s; /* medians of the timed steps */
    double fwd_flops;           /* multiply-adds × 2 of the forward */
    double step_flops;          /* forward + backward (the backward counted as 2 forwards) */
    int64_t params, tokens;     /* trained parameters, tokens per step */
    size_t act_bytes;           /* activations kept for the backward plus its scratch */
} hl_train_bench;

/* One block (D, heads, ffn) over S tokens attending to L text tokens, training forward +
 * backward + AdamW over the block's parameters; reps timed steps after one warm-up. bf16: mixed
 * precision as `"precision": "bf16"` trains (f32 master weights, GEMMs on a bf16 shadow that is
 * refreshed after every AdamW step, the refresh timed with AdamW); otherwise float32 throughout. */
hl_status hl_train_bench_block(int64_t D, int heads, int64_t ffn, int64_t S, int64_t L, int bf16,
                               int reps, hl_train_bench *out, hl_error *err);

/* The transformer of model_dir (its transformer/config.json, random init) on the stage-1 or
 * stage-2 objective (stage 2: ratios [1, 2, 1], pack_levels as the objective's key) with
 * synthetic clips of the given latent size (frames = 3 chunks of chunk_frames): whole training
 * steps (sample, forward, backward, AdamW); fwd_s holds the whole step less AdamW, bwd_s is 0
 * (the objective runs both). recompute: per-block activation recomputation (act_bytes then holds
 * one block's activations instead of every block's). Stage 2: tokens = the mean tokens of a
 * step's K samples, fwd_flops and step_flops 0 (not counted). */
hl_status hl_train_bench_model(const char *model_dir, int stage, int pack_levels, int chunk_frames,
                               int height, int width, int recompute, int reps, hl_train_bench *out,
                               hl_error *err);

/* Stage 2's level samples of one chunk (K sequences of n[i] tokens: hist history tokens + the
 * level's chunk) through one block (f32, training forward + backward, medians of reps), run in
 * turn (one block call per sequence) or packed into one call over sum(n) token rows with
 * variable-length attention (each sequence attends only to itself; hl_dit_rows), as
 * "pack_levels" trains.
 *   one_s[i]    the block step of sequence i alone; in_turn_s their sum
 *   packed_s    the block step of the packed call */
typedef struct hl_train_pack_times {
    double one_s[64], in_turn_s, packed_s;
    int64_t tokens;
} hl_train_pack_times;

hl_status hl_train_bench_pack(int64_t D, int heads, int64_t ffn, int64_t L, int64_t hist,
                              const int64_t *n, int K, int reps, hl_train_pack_times *out,
                              hl_error *err);

#endif
