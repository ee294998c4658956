/* One Helios block for training: the forward that keeps what its backward needs, and the
 * backward, side by side (spec §1.3 step 8; inference runs src/dit/block.c). The rows are
 * sequences (hl_dit_rows: a batch, or sequences of other lengths packed together); the first
 * n_hist rows of a sequence are history tokens (modulation slot 0), the next n_cur the current
 * chunk (slot 1). Each step of the forward is undone in reverse order below it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dit/tape.h"

enum { MOD_SHIFT, MOD_SCALE, MOD_GATE, MOD_C_SHIFT, MOD_C_SCALE, MOD_C_GATE };

float *hl_bufs_alloc(hl_bufs *b, size_t nfloats) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        void **p = realloc(b->p, cap * sizeof *p);
        if (!p) return NULL;
        b->p = p, b->cap = cap;
    }
    float *f = calloc(nfloats ? nfloats : 1, sizeof *f);
    if (f) b->p[b->n++] = f, b->bytes += nfloats * sizeof *f;
    return f;
}

void hl_bufs_free(hl_bufs *b) {
    for (size_t i = 0; i < b->n; i++) free(b->p[i]);
    free(b->p);
    memset(b, 0, sizeof *b);
}

hl_status hl_dit_block_tape_alloc(hl_bufs *bufs, const hl_dit_config *c, const hl_dit_rows *r,
                                  hl_dit_block_tape *t) {
    size_t D = (size_t)c->dim, M = (size_t)r->M, BL = (size_t)r->n * (size_t)r->L;
    struct {
        float **f;
        size_t n;
    } rows[] = {
        {&t->mods, (size_t)r->n * 12 * D},
        {&t->ln1_mean, M},
        {&t->ln1_rstd, M},
        {&t->h1, M * D},
        {&t->q_pre, M * D},
        {&t->k_pre, M * D},
        {&t->q_rstd, M},
        {&t->k_rstd, M},
        {&t->q, M * D},
        {&t->k_rot, M * D},
        {&t->k, M * D},
        {&t->v, M * D},
        {&t->a, M * D},
        {&t->o, M * D},
        {&t->x1, M * D},
        {&t->ln2_mean, M},
        {&t->ln2_rstd, M},
        {&t->h2, M * D},
        {&t->q2_pre, M * D},
        {&t->q2, M * D},
        {&t->q2_rstd, M},
        {&t->ck_pre, BL * D},
        {&t->ck, BL * D},
        {&t->cv, BL * D},
        {&t->ck_rstd, BL},
        {&t->a2, M * D},
        {&t->x2, M * D},
        {&t->ln3_mean, M},
        {&t->ln3_rstd, M},
        {&t->h3, M * D},
        {&t->f_pre, M * (size_t)c->ffn_dim},
        {&t->f, M * (size_t)c->ffn_dim},
        {&t->o3, M * D},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        if (!(*rows[i].f = hl_bufs_alloc(bufs, rows[i].n))) return HELIOS_ERR_OOM;
    return HL_OK;
}

hl_status hl_dit_block_grad_scratch_alloc(hl_bufs *bufs, const hl_dit_config *c,
                                          const hl_dit_rows *r, hl_dit_block_grad_scratch *s) {
    size_t D = (size_t)c->dim, M = (size_t)r->M, BL = (size_t)r->n * (size_t)r->L;
    float **md[] = {&s->dh, &s->dq, &s->dk, &s->dv, &s->da};
    for (size_t i = 0; i < 5; i++)
        if (!(*md[i] = hl_bufs_alloc(bufs, M * D))) return HELIOS_ERR_OOM;
    s->df = hl_bufs_alloc(bufs, M * (size_t)c->ffn_dim);
    s->dck = hl_bufs_alloc(bufs, BL * D);
    s->dcv = hl_bufs_alloc(bufs, BL * D);
    s->dmods = hl_bufs_alloc(bufs, (size_t)r->n * 12 * D);
    s->w = hl_bufs_alloc(bufs, D);
    return s->df && s->dck && s->dcv && s->dmods && s->w ? HL_OK : HELIOS_ERR_OOM;
}

/* ---- segments ------------------------------------------------------------------------------- */

/* Rows [first, first + n) of sequence b's segment seg (0 history, 1 current) and the offset of
 * its modulation [6, D] in a [n, 2, 6, D] array. */
typedef struct segment {
    int64_t first, n, mod;
} segment;

static segment seg_rows(const hl_dit_config *c, const hl_dit_rows *r, int b, int seg) {
    const hl_dit_seq *q = &r->seq[b];
    segment s = {q->row0 + (seg ? q->n_hist : 0), seg ? q->n_cur : q->n_hist,
                 ((int64_t)b * 2 + seg) * 6 * c->dim};
    return s;
}

/* The rows of sequence b that attend to the text: the current ones with guidance
 * cross-attention, all of them without. */
static segment cross_rows(const hl_dit_config *c, const hl_dit_rows *r, int b) {
    const hl_dit_seq *q = &r->seq[b];
    int64_t skip = c->guidance_cross_attn ? q->n_hist : 0;
    segment s = {q->row0 + skip, q->n_hist + q->n_cur - skip, 0};
    return s;
}

static hl_dtype gemm_dtype(const hl_tensor *w) { return w->dtype == HL_BF16 ? HL_BF16 : HL_F32; }

static float *fgrad(const float *g) { return (float *)g; } /* gradient views are writable */
static float *tgrad(const hl_tensor *g) { return (float *)g->data; }

/* s_h = 1 + 9·sigmoid(p_h) (spec §4), and ds_h/dp_h = 9·sigmoid(p)·(1 - sigmoid(p)). */
static void history_amp(const hl_dit_config *c, const hl_dit_attn *at, float *amp, float *damp) {
    for (int h = 0; h < c->heads; h++) {
        float pv = at->history_key_scale[c->history_scale_per_head ? h : 0];
        float sg = 1.0f / (1.0f + expf(-pv));
        amp[h] = 1.0f + 9.0f * sg;
        if (damp) damp[h] = 9.0f * sg * (1.0f - sg);
    }
}

/* Whether sequence b's history keys are amplified (b < 0: any sequence's). */
static int amplified(const hl_dit_attn *at, const hl_dit_rows *r, int b) {
    if (!at->history_key_scale) return 0;
    if (b >= 0) return r->seq[b].n_hist > 0;
    for (int i = 0; i < r->n; i++)
        if (r->seq[i].n_hist > 0) return 1;
    return 0;
}

/* ---- modulated norm: y = LN(x)·(1 + scale) + shift per segment ------------------------------ */

static hl_status norm_mod_forward(const hl_ctx *ctx, const hl_dit_config *c, const hl_dit_rows *r,
                                  const float *mods, int shift, int scale, const float *x,
                                  float *mean, float *rstd, float *w, float *y) {
    int64_t D = c->dim;
    for (int b = 0; b < r->n; b++)
        for (int seg = 0; seg < 2; seg++) {
            segment q = seg_rows(c, r, b, seg);
            if (!q.n) continue;
            for (int64_t i = 0; i < D; i++) w[i] = 1.0f + mods[q.mod + scale * D + i];
            hl_norm_saved sv = {mean + q.first, rstd + q.first};
            HL_TRY(hl_layernorm(ctx, q.n, D, x + q.first * D, D, w, mods + q.mod + shift * D,
                                c->eps, y + q.first * D, D, &sv));
        }
    return HL_OK;
}

/* dx += ∂L/∂x of the modulated norm given dy; ∂L/∂scale, ∂L/∂shift into dmods. dtmp [M, D]. */
static hl_status norm_mod_backward(const hl_ctx *ctx, const hl_dit_config *c, const hl_dit_rows *r,
                                   const float *mods, int shift, int scale, const float *x,
                                   const float *mean, const float *rstd, const float *dy, float *w,
                                   float *dtmp, float *dmods, float *dx) {
    int64_t D = c->dim;
    for (int b = 0; b < r->n; b++)
        for (int seg = 0; seg < 2; seg++) {
            segment q = seg_rows(c, r, b, seg);
            if (!q.n) continue;
            for (int64_t i = 0; i < D; i++) w[i] = 1.0f + mods[q.mod + scale * D + i];
            hl_norm_saved sv = {fgrad(mean + q.first), fgrad(rstd + q.first)};
            HL_TRY(hl_layernorm_backward(ctx, q.n, D, x + q.first * D, D, w, &sv, dy + q.first * D,
                                         D, dtmp + q.first * D, D, dmods + q.mod + scale * D,
                                         dmods + q.mod + shift * D));
            HL_TRY(hl_add_gated(ctx, q.n, D, dx + q.first * D, D, dtmp + q.first * D, D, NULL));
        }
    return HL_OK;
}

/* ---- gated residual: x_out = x + gate ⊙ y per segment ----------------------------------------- */

static hl_status gated_forward(const hl_ctx *ctx, const hl_dit_config *c, const hl_dit_rows *r,
                               const float *mods, int gate, const float *x, const float *y,
                               float *out) {
    int64_t D = c->dim;
    memcpy(out, x, (size_t)r->M * (size_t)D * sizeof *out);
    for (int b = 0; b < r->n; b++)
        for (int seg = 0; seg < 2; seg++) {
            segment q = seg_rows(c, r, b, seg);
            if (q.n)
                HL_TRY(hl_add_gated(ctx, q.n, D, out + q.first * D, D, y + q.first * D, D,
                                    mods + q.mod + gate * D));
        }
    return HL_OK;
}

/* dy = gate ⊙ dx, dgate into dmods (the residual's own gradient dx passes through). */
static hl_status gated_backward(const hl_ctx *ctx, const hl_dit_config *c, const hl_dit_rows *r,
                                const float *mods, int gate, const float *y, const float *dx,
                                float *dmods, float *dy) {
    int64_t D = c->dim;
    for (int b = 0; b < r->n; b++)
        for (int seg = 0; seg < 2; seg++) {
            segment q = seg_rows(c, r, b, seg);
            if (q.n)
                HL_TRY(hl_add_gated_backward(ctx, q.n, D, dx + q.first * D, D, y + q.first * D, D,
                                             mods + q.mod + gate * D, dy + q.first * D, D,
                                             dmods + q.mod + gate * D));
        }
    return HL_OK;
}

/* ---- self-attention -------------------------------------------------------------------------- */

static hl_status self_attention_forward(const hl_ctx *ctx, const hl_dit_config *c,
                                        const hl_dit_attn *at, const hl_dit_rows *r,
                                        const float *rope, hl_dit_block_tape *t) {
    int64_t D = c->dim, M = r->M;
    int H = c->heads, hd = c->head_dim;
    HL_TRY(hl_linear(ctx, M, t->h1, D, &at->to_q_w, &at->to_q_b, t->q_pre, D)); /* [M, D] */
    HL_TRY(hl_linear(ctx, M, t->h1, D, &at->to_k_w, &at->to_k_b, t->k_pre, D));
    HL_TRY(hl_linear(ctx, M, t->h1, D, &at->to_v_w, &at->to_v_b, t->v, D));
    HL_TRY(hl_rmsnorm(ctx, M, D, t->q_pre, D, at->norm_q, c->eps, t->q, D,
                      &(hl_norm_saved){NULL, t->q_rstd}));
    HL_TRY(hl_rmsnorm(ctx, M, D, t->k_pre, D, at->norm_k, c->eps, t->k_rot, D,
                      &(hl_norm_saved){NULL, t->k_rstd}));
    float amp[4096];
    if (amplified(at, r, -1)) history_amp(c, at, amp, NULL);
    for (int b = 0; b < r->n; b++) { /* attention within each sequence */
        const hl_dit_seq *sq = &r->seq[b];
        int64_t S = sq->n_hist + sq->n_cur, o = sq->row0 * D;
        const float *rb = rope + sq->rope0 * hd;
        HL_TRY(hl_rope(ctx, S, H, hd, t->q + o, D, rb)); /* [S, H, hd] */
        HL_TRY(hl_rope(ctx, S, H, hd, t->k_rot + o, D, rb));
        memcpy(t->k + o, t->k_rot + o, (size_t)(S * D) * sizeof(float));
        if (amplified(at, r, b)) HL_TRY(hl_scale_heads(ctx, sq->n_hist, H, hd, t->k + o, D, amp));
        HL_TRY(hl_attention(ctx, S, S, H, hd, t->q + o, D, t->k + o, D, t->v + o, D,
                            1.0f / sqrtf((float)hd), gemm_dtype(&at->to_q_w), t->a + o, D));
    }
    return hl_linear(ctx, M, t->a, D, &at->to_out_w, &at->to_out_b, t->o, D);
}

/* From do = ∂L/∂o [M, D] (in s->dh) to s->dh = ∂L/∂h1 (norm1's output). */
static hl_status self_attention_backward(const hl_ctx *ctx, const hl_dit_config *c,
                                         const hl_dit_attn *at, const hl_dit_rows *r,
                                         const float *rope, const hl_dit_block_tape *t,
                                         hl_dit_block_grad_scratch *s, hl_dit_attn *g) {
    int64_t D = c->dim, M = r->M;
    int H = c->heads, hd = c->head_dim;
    HL_TRY(hl_linear_backward(ctx, M, t->a, D, &at->to_out_w, s->dh, D, s->da, D, 0,
                              tgrad(&g->to_out_w), tgrad(&g->to_out_b)));
    float amp[4096], damp[4096], ds[4096];
    if (amplified(at, r, -1)) history_amp(c, at, amp, damp);
    for (int h = 0; h < H; h++) ds[h] = 0.0f;
    for (int b = 0; b < r->n; b++) {
        const hl_dit_seq *sq = &r->seq[b];
        int64_t S = sq->n_hist + sq->n_cur, o = sq->row0 * D;
        const float *rb = rope + sq->rope0 * hd;
        HL_TRY(hl_attention_backward(ctx, S, S, H, hd, t->q + o, D, t->k + o, D, t->v + o, D,
                                     1.0f / sqrtf((float)hd), gemm_dtype(&at->to_q_w), t->a + o, D,
                                     s->da + o, D, s->dq + o, D, s->dk + o, D, s->dv + o, D));
        if (amplified(at, r, b))
            HL_TRY(hl_scale_heads_backward(ctx, sq->n_hist, H, hd, t->k_rot + o, D, amp, s->dk + o,
                                           D, ds));
        HL_TRY(hl_rope_backward(ctx, S, H, hd, s->dq + o, D, rb));
        HL_TRY(hl_rope_backward(ctx, S, H, hd, s->dk + o, D, rb));
    }
    if (amplified(at, r, -1)) { /* through s_h = 1 + 9·sigmoid(p_h) */
        float *dp = fgrad(g->history_key_scale);
        for (int h = 0; h < H; h++) dp[c->history_scale_per_head ? h : 0] += ds[h] * damp[h];
    }
    HL_TRY(hl_rmsnorm_backward(ctx, M, D, t->q_pre, D, at->norm_q,
                               &(hl_norm_saved){NULL, fgrad(t->q_rstd)}, s->dq, D, s->dq, D,
                               fgrad(g->norm_q)));
    HL_TRY(hl_rmsnorm_backward(ctx, M, D, t->k_pre, D, at->norm_k,
                               &(hl_norm_saved){NULL, fgrad(t->k_rstd)}, s->dk, D, s->dk, D,
                               fgrad(g->norm_k)));
    HL_TRY(hl_linear_backward(ctx, M, t->h1, D, &at->to_q_w, s->dq, D, s->dh, D, 0,
                              tgrad(&g->to_q_w), tgrad(&g->to_q_b)));
    HL_TRY(hl_linear_backward(ctx, M, t->h1, D, &at->to_k_w, s->dk, D, s->dh, D, 1,
                              tgrad(&g->to_k_w), tgrad(&g->to_k_b)));
    return hl_linear_backward(ctx, M, t->h1, D, &at->to_v_w, s->dv, D, s->dh, D, 1,
                              tgrad(&g->to_v_w), tgrad(&g->to_v_b));
}

/* ---- cross-attention to the text: x2 = x1 + attn2(norm2(x1)) on the cross rows ------------- */

static hl_status cross_attention_forward(const hl_ctx *ctx, const hl_dit_config *c,
                                         const hl_dit_block *blk, const hl_dit_rows *r,
                                         const float *enc, hl_dit_block_tape *t) {
    const hl_dit_attn *at = &blk->attn2;
    int64_t D = c->dim, BL = (int64_t)r->n * r->L;
    int H = c->heads, hd = c->head_dim;
    HL_TRY(hl_linear(ctx, BL, enc, D, &at->to_k_w, &at->to_k_b, t->ck_pre, D)); /* [B·L, D] */
    HL_TRY(hl_rmsnorm(ctx, BL, D, t->ck_pre, D, at->norm_k, c->eps, t->ck, D,
                      &(hl_norm_saved){NULL, t->ck_rstd}));
    HL_TRY(hl_linear(ctx, BL, enc, D, &at->to_v_w, &at->to_v_b, t->cv, D));
    memcpy(t->x2, t->x1, (size_t)r->M * (size_t)D * sizeof(float));
    for (int b = 0; b < r->n; b++) {
        segment q = cross_rows(c, r, b);
        int64_t o = q.first * D, ot = (int64_t)b * r->L * D;
        if (c->cross_attn_norm)
            HL_TRY(hl_layernorm(ctx, q.n, D, t->x1 + o, D, blk->norm2_w, blk->norm2_b, c->eps,
                                t->h2 + o, D,
                                &(hl_norm_saved){t->ln2_mean + q.first, t->ln2_rstd + q.first}));
        else memcpy(t->h2 + o, t->x1 + o, (size_t)(q.n * D) * sizeof(float));
        HL_TRY(hl_linear(ctx, q.n, t->h2 + o, D, &at->to_q_w, &at->to_q_b, t->q2_pre + o, D));
        HL_TRY(hl_rmsnorm(ctx, q.n, D, t->q2_pre + o, D, at->norm_q, c->eps, t->q2 + o, D,
                          &(hl_norm_saved){NULL, t->q2_rstd + q.first}));
        HL_TRY(hl_attention(ctx, q.n, r->L, H, hd, t->q2 + o, D, t->ck + ot, D, t->cv + ot, D,
                            1.0f / sqrtf((float)hd), gemm_dtype(&at->to_q_w), t->a2 + o, D));
        HL_TRY(hl_linear(ctx, q.n, t->a2 + o, D, &at->to_out_w, &at->to_out_b, t->h3 + o, D));
        HL_TRY(hl_add_gated(ctx, q.n, D, t->x2 + o, D, t->h3 + o, D, NULL)); /* h3: scratch */
    }
    return HL_OK;
}

/* dx (= ∂L/∂x2 on entry) += what flows through the cross-attention into x1; ∂L/∂enc into denc. */
static hl_status cross_attention_backward(const hl_ctx *ctx, const hl_dit_config *c,
                                          const hl_dit_block *blk, const hl_dit_rows *r,
                                          const float *enc, const hl_dit_block_tape *t,
                                          hl_dit_block_grad_scratch *s, hl_dit_block *gb,
                                          float *denc, float *dx) {
    const hl_dit_attn *at = &blk->attn2;
    hl_dit_attn *g = &gb->attn2;
    int64_t D = c->dim, BL = (int64_t)r->n * r->L;
    int H = c->heads, hd = c->head_dim;
    for (int b = 0; b < r->n; b++) {
        segment q = cross_rows(c, r, b);
        int64_t o = q.first * D, ot = (int64_t)b * r->L * D;
        HL_TRY(hl_linear_backward(ctx, q.n, t->a2 + o, D, &at->to_out_w, dx + o, D, s->da + o, D, 0,
                                  tgrad(&g->to_out_w), tgrad(&g->to_out_b)));
        HL_TRY(hl_attention_backward(ctx, q.n, r->L, H, hd, t->q2 + o, D, t->ck + ot, D, t->cv + ot,
                                     D, 1.0f / sqrtf((float)hd), gemm_dtype(&at->to_q_w), t->a2 + o,
                                     D, s->da + o, D, s->dq + o, D, s->dck + ot, D, s->dcv + ot,
                                     D));
        HL_TRY(hl_rmsnorm_backward(ctx, q.n, D, t->q2_pre + o, D, at->norm_q,
                                   &(hl_norm_saved){NULL, fgrad(t->q2_rstd + q.first)}, s->dq + o,
                                   D, s->dq + o, D, fgrad(g->norm_q)));
        HL_TRY(hl_linear_backward(ctx, q.n, t->h2 + o, D, &at->to_q_w, s->dq + o, D, s->dh + o, D,
                                  0, tgrad(&g->to_q_w), tgrad(&g->to_q_b)));
        if (c->cross_attn_norm) {
            hl_norm_saved sv = {fgrad(t->ln2_mean + q.first), fgrad(t->ln2_rstd + q.first)};
            HL_TRY(hl_layernorm_backward(ctx, q.n, D, t->x1 + o, D, blk->norm2_w, &sv, s->dh + o, D,
                                         s->dh + o, D, fgrad(gb->norm2_w), fgrad(gb->norm2_b)));
        }
        HL_TRY(hl_add_gated(ctx, q.n, D, dx + o, D, s->dh + o, D, NULL));
    }
    HL_TRY(hl_rmsnorm_backward(ctx, BL, D, t->ck_pre, D, at->norm_k,
                               &(hl_norm_saved){NULL, fgrad(t->ck_rstd)}, s->dck, D, s->dck, D,
                               fgrad(g->norm_k)));
    HL_TRY(hl_linear_backward(ctx, BL, enc, D, &at->to_k_w, s->dck, D, denc, D, 1,
                              tgrad(&g->to_k_w), tgrad(&g->to_k_b)));
    return hl_linear_backward(ctx, BL, enc, D, &at->to_v_w, s->dcv, D, denc, D, 1,
                              tgrad(&g->to_v_w), tgrad(&g->to_v_b));
}

/* ---- feed-forward ---------------------------------------------------------------------------- */

static hl_status feed_forward_forward(const hl_ctx *ctx, const hl_dit_config *c,
                                      const hl_dit_block *blk, int64_t M, hl_dit_block_tape *t) {
    int64_t D = c->dim, F = c->ffn_dim;
    HL_TRY(hl_linear(ctx, M, t->h3, D, &blk->ffn0_w, &blk->ffn0_b, t->f_pre, F)); /* [M, F] */
    HL_TRY(hl_gelu_tanh(ctx, M * F, t->f_pre, t->f));
    return hl_linear(ctx, M, t->f, F, &blk->ffn2_w, &blk->ffn2_b, t->o3, D); /* [M, D] */
}

/* From ∂L/∂o3 in s->da to ∂L/∂h3 in s->dh. */
static hl_status feed_forward_backward(const hl_ctx *ctx, const hl_dit_config *c,
                                       const hl_dit_block *blk, int64_t M,
                                       const hl_dit_block_tape *t, hl_dit_block_grad_scratch *s,
                                       hl_dit_block *g) {
    int64_t D = c->dim, F = c->ffn_dim;
    HL_TRY(hl_linear_backward(ctx, M, t->f, F, &blk->ffn2_w, s->da, D, s->df, F, 0,
                              tgrad(&g->ffn2_w), tgrad(&g->ffn2_b)));
    HL_TRY(hl_gelu_tanh_backward(ctx, M * F, t->f_pre, s->df, s->df));
    return hl_linear_backward(ctx, M, t->h3, D, &blk->ffn0_w, s->df, F, s->dh, D, 0,
                              tgrad(&g->ffn0_w), tgrad(&g->ffn0_b));
}

/* ---- the block ------------------------------------------------------------------------------- */

hl_status hl_dit_block_forward_train(const hl_ctx *ctx, const hl_dit_config *c,
                                     const hl_dit_block *blk, const hl_dit_rows *r,
                                     const float *tproj, const float *rope, const float *enc,
                                     const float *x_in, hl_dit_block_tape *t, float *x_out,
                                     float *w_tmp) {
    int64_t D = c->dim, M = r->M, n6 = 6 * D;
    t->x = x_in;
    for (int64_t k = 0; k < (int64_t)r->n * 2; k++) /* mods [n, 2, 6, D] */
        for (int64_t i = 0; i < n6; i++)
            t->mods[k * n6 + i] = blk->scale_shift_table[i] + tproj[k * n6 + i];
    /* 1. x1 = x + gate · attn1(LN(x)·(1 + scale) + shift) */
    HL_TRY(norm_mod_forward(ctx, c, r, t->mods, MOD_SHIFT, MOD_SCALE, t->x, t->ln1_mean,
                            t->ln1_rstd, w_tmp, t->h1));
    HL_TRY(self_attention_forward(ctx, c, &blk->attn1, r, rope, t));
    HL_TRY(gated_forward(ctx, c, r, t->mods, MOD_GATE, t->x, t->o, t->x1));
    /* 2. x2 = x1 + attn2(norm2(x1), text) on the cross rows */
    HL_TRY(cross_attention_forward(ctx, c, blk, r, enc, t));
    /* 3. out = x2 + c_gate · ffn(LN(x2)·(1 + c_scale) + c_shift) */
    HL_TRY(norm_mod_forward(ctx, c, r, t->mods, MOD_C_SHIFT, MOD_C_SCALE, t->x2, t->ln3_mean,
                            t->ln3_rstd, w_tmp, t->h3));
    HL_TRY(feed_forward_forward(ctx, c, blk, M, t));
    return gated_forward(ctx, c, r, t->mods, MOD_C_GATE, t->x2, t->o3, x_out);
}

hl_status hl_dit_block_backward(const hl_ctx *ctx, const hl_dit_config *c, const hl_dit_block *blk,
                                const hl_dit_rows *r, const float *rope, const float *enc,
                                const hl_dit_block_tape *t, hl_dit_block_grad_scratch *s,
                                hl_dit_block *g, float *dtproj, float *denc, float *dx) {
    int64_t D = c->dim, M = r->M, n6 = 6 * D;
    memset(s->dmods, 0, (size_t)(r->n * 2 * n6) * sizeof(float));
    /* 3. feed-forward: dx is ∂L/∂out, becomes ∂L/∂x2 */
    HL_TRY(gated_backward(ctx, c, r, t->mods, MOD_C_GATE, t->o3, dx, s->dmods, s->da));
    HL_TRY(feed_forward_backward(ctx, c, blk, M, t, s, g));
    HL_TRY(norm_mod_backward(ctx, c, r, t->mods, MOD_C_SHIFT, MOD_C_SCALE, t->x2, t->ln3_mean,
                             t->ln3_rstd, s->dh, s->w, s->dq, s->dmods, dx));
    /* 2. cross-attention: becomes ∂L/∂x1 */
    HL_TRY(cross_attention_backward(ctx, c, blk, r, enc, t, s, g, denc, dx));
    /* 1. self-attention: becomes ∂L/∂x */
    HL_TRY(gated_backward(ctx, c, r, t->mods, MOD_GATE, t->o, dx, s->dmods, s->dh));
    HL_TRY(self_attention_backward(ctx, c, &blk->attn1, r, rope, t, s, &g->attn1));
    HL_TRY(norm_mod_backward(ctx, c, r, t->mods, MOD_SHIFT, MOD_SCALE, t->x, t->ln1_mean,
                             t->ln1_rstd, s->dh, s->w, s->da, s->dmods, dx));
    /* mods = table + tproj: both get ∂L/∂mods */
    float *dtable = fgrad(g->scale_shift_table);
    for (int64_t k = 0; k < (int64_t)r->n * 2; k++)
        for (int64_t i = 0; i < n6; i++) {
            dtable[i] += s->dmods[k * n6 + i];
            dtproj[k * n6 + i] += s->dmods[k * n6 + i];
        }
    return HL_OK;
}
