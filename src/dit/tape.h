/* What the training forward of the transformer keeps for its backward (src/dit/block_train.c,
 * src/dit/train.c). Internal to src/dit: callers see hl_dit_tape as an opaque type (dit.h). */
#ifndef HL_DIT_TAPE_H
#define HL_DIT_TAPE_H

#include "dit/dit.h"

/* Float buffers with one owner: every allocation of a tape is recorded here and freed together;
 * `bytes` is what the tape holds (the training step's activation memory). */
typedef struct hl_bufs {
    void **p;
    size_t n, cap, bytes;
} hl_bufs;

float *hl_bufs_alloc(hl_bufs *b, size_t nfloats); /* zeroed; NULL when out of memory */
void hl_bufs_free(hl_bufs *b);

/* Token counts of one forward (batch element b's tokens are rows [b·S, (b+1)·S) of x):
 *   [ long | mid | short | current ],  n_hist = long + mid + short. */
typedef struct hl_dit_plan {
    int B;
    int64_t T, Hp, Wp, n_cur;
    int64_t H1, W1;
    int64_t n_long, n_mid, n_short, n_hist, S, L;
    size_t patch_rows; /* floats of the largest patchified segment */
} hl_dit_plan;

/* Checks in against the config and fills the plan (src/dit/dit.c). */
hl_status hl_dit_plan_make(const hl_dit_config *c, const helios_dit_input *in, hl_dit_plan *p,
                           hl_error *err);
/* rope [S, head_dim] in token order; mid/long pooled from the short grid (src/dit/dit.c). */
void hl_dit_build_rope(const hl_dit_config *c, const helios_dit_input *in, const hl_dit_plan *p,
                       float *rope);

/* One sequence of a training forward: rows [row0, row0 + n_hist + n_cur) of x, history first;
 * its rotary table is rows [rope0, rope0 + n_hist + n_cur) of rope. */
typedef struct hl_dit_seq {
    int64_t row0, n_hist, n_cur, rope0;
    int64_t cur0; /* its first current row among every sequence's current rows (the head) */
    int in, b;    /* the input and batch element it comes from (src/dit/train.c) */
} hl_dit_seq;

/* The sequences of a training forward, one per batch element of each input, in order: a batch of
 * B equal sequences, or sequences of other lengths packed into one forward (attention stays
 * within each sequence). Every sequence attends to its own L text tokens: rows [b·L, (b+1)·L) of
 * enc for sequence b. */
typedef struct hl_dit_rows {
    int n;                 /* sequences */
    int64_t M, L;          /* rows of x: Σ (n_hist + n_cur); text tokens per sequence */
    const hl_dit_seq *seq; /* [n] */
} hl_dit_rows;

/* One block's saved activations, float32, rows as x (M rows, hl_dit_rows) unless noted; n below
 * is the number of sequences. */
typedef struct hl_dit_block_tape {
    const float *x;               /* [M, D] the block's input (the caller's, not a copy) */
    float *mods;                  /* [n, 2, 6, D] table + timestep projection */
    float *ln1_mean, *ln1_rstd;   /* [M] norm1 (modulated) */
    float *h1;                    /* [M, D] norm1 output: input of to_q/k/v */
    float *q_pre, *k_pre;         /* [M, D] before norm_q / norm_k */
    float *q_rstd, *k_rstd;       /* [M] */
    float *q, *k_rot, *k, *v;     /* [M, D] attention operands (k_rot: before amplification) */
    float *a;                     /* [M, D] self-attention output: input of to_out */
    float *o;                     /* [M, D] to_out output: the gated branch */
    float *x1;                    /* [M, D] after the self-attention residual */
    float *ln2_mean, *ln2_rstd;   /* [M] norm2 (cross_attn_norm), cross-attention rows only */
    float *h2;                    /* [M, D] input of attn2.to_q (cross-attention rows) */
    float *q2_pre, *q2, *q2_rstd; /* [M, D], [M, D], [M] */
    float *ck_pre, *ck, *cv;      /* [n·L, D] text keys (before / after norm_k), values */
    float *ck_rstd;               /* [n·L] */
    float *a2;                    /* [M, D] cross-attention output: input of attn2.to_out */
    float *x2;                    /* [M, D] after the cross-attention residual */
    float *ln3_mean, *ln3_rstd;   /* [M] norm3 (modulated) */
    float *h3;                    /* [M, D] input of ffn.net.0 */
    float *f_pre, *f;             /* [M, F] ffn.net.0 output and its GELU */
    float *o3;                    /* [M, D] ffn output: the gated branch */
} hl_dit_block_tape;

/* Allocates every array of t except x. */
hl_status hl_dit_block_tape_alloc(hl_bufs *bufs, const hl_dit_config *c, const hl_dit_rows *r,
                                  hl_dit_block_tape *t);

/* Scratch of the block backward. */
typedef struct hl_dit_block_grad_scratch {
    float *dh, *dq, *dk, *dv, *da; /* [M, D] */
    float *df;                     /* [M, F] */
    float *dck, *dcv;              /* [n·L, D] */
    float *dmods;                  /* [n, 2, 6, D] */
    float *w;                      /* [D] 1 + scale of the segment being run */
} hl_dit_block_grad_scratch;

hl_status hl_dit_block_grad_scratch_alloc(hl_bufs *bufs, const hl_dit_config *c,
                                          const hl_dit_rows *r, hl_dit_block_grad_scratch *s);

/* The block forward on x_in [M, D] into x_out [M, D] (may not alias), keeping t (t->x = x_in,
 * which must stay unchanged until the backward). tproj [n, 2, 6, D] (slot 0 history, slot 1
 * current, as hl_dit_block_forward), rope [*, hd] (hl_dit_seq.rope0), enc [n·L, D]. */
hl_status hl_dit_block_forward_train(const hl_ctx *ctx, const hl_dit_config *c,
                                     const hl_dit_block *blk, const hl_dit_rows *r,
                                     const float *tproj, const float *rope, const float *enc,
                                     const float *x_in, hl_dit_block_tape *t, float *x_out,
                                     float *w_tmp);

/* The block backward: dx [M, D] holds ∂L/∂x_out on entry and ∂L/∂x_in on return. Parameter
 * gradients accumulate into g (a gradient view of the block), ∂L/∂tproj into dtproj
 * [n, 2, 6, D] and ∂L/∂enc into denc [n·L, D]. */
hl_status hl_dit_block_backward(const hl_ctx *ctx, const hl_dit_config *c, const hl_dit_block *blk,
                                const hl_dit_rows *r, const float *rope, const float *enc,
                                const hl_dit_block_tape *t, hl_dit_block_grad_scratch *s,
                                hl_dit_block *g, float *dtproj, float *denc, float *dx);

#endif
