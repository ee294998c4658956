/* One Helios transformer block (spec §1.3 step 8), in place on x [B, S, D]. Rows [0, n_hist) of
 * each batch element are history tokens, rows [n_hist, S) the current chunk. */
#include <math.h>
#include <string.h>

#include "dit/dit.h"

#define MOD_SHIFT 0
#define MOD_SCALE 1
#define MOD_GATE 2
#define MOD_C_SHIFT 3
#define MOD_C_SCALE 4
#define MOD_C_GATE 5

hl_status hl_dit_scratch_alloc(hl_arena *a, const hl_dit_config *c, int B, int64_t S, int64_t L,
                               hl_dit_scratch *s) {
    size_t D = (size_t)c->dim, rows = (size_t)B * (size_t)S;
    memset(s, 0, sizeof *s); /* no probe, layer 0 */
    s->rows_ffn = rows < 4096 ? (int64_t)rows : 4096;
    float **acts[] = {&s->h, &s->q, &s->k, &s->v, &s->a};
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++)
        if (!(*acts[i] = hl_arena_alloc(a, rows * D * sizeof(float)))) return HELIOS_ERR_OOM;
    s->f = hl_arena_alloc(a, (size_t)s->rows_ffn * (size_t)c->ffn_dim * sizeof(float));
    s->ck = hl_arena_alloc(a, (size_t)B * (size_t)L * D * sizeof(float));
    s->cv = hl_arena_alloc(a, (size_t)B * (size_t)L * D * sizeof(float));
    s->mod = hl_arena_alloc(a, (size_t)B * 12 * D * sizeof(float));
    return s->f && s->ck && s->cv && s->mod ? HL_OK : HELIOS_ERR_OOM;
}

/* mods [B, 2, 6, D] = scale_shift_table + the timestep projection of each batch element and
 * segment (0 = history, 1 = current), once per block. */
static void block_modulation(const hl_dit_config *c, const hl_dit_block *blk, int B,
                             const float *tproj, float *mods) {
    int64_t n = 6 * (int64_t)c->dim;
    for (int64_t k = 0; k < (int64_t)B * 2; k++)
        for (int64_t i = 0; i < n; i++)
            mods[k * n + i] = blk->scale_shift_table[i] + tproj[k * n + i];
}

/* Rows [first, first + n) of x [B*S, D] that batch element b's segment seg covers, and its
 * modulation [6, D]. */
typedef struct segment {
    int64_t first, n;
    const float *mod;
} segment;

static segment seg_rows(const hl_dit_config *c, int64_t S, int64_t n_hist, const float *mods, int b,
                        int seg) {
    segment r = {(int64_t)b * S + (seg ? n_hist : 0), seg ? S - n_hist : n_hist,
                 mods + ((int64_t)b * 2 + seg) * 6 * c->dim};
    return r;
}

/* y = LN(x) (1 + scale) + shift per segment (MOD_SHIFT/MOD_SCALE or the FFN's c_ pair). */
static hl_status modulated_norm(const hl_ctx *ctx, const hl_dit_config *c, int B, int64_t S,
                                int64_t n_hist, const float *mods, int shift, int scale,
                                const float *x, float *y) {
    int64_t D = c->dim;
    for (int b = 0; b < B; b++)
        for (int seg = 0; seg < 2; seg++) {
            segment r = seg_rows(c, S, n_hist, mods, b, seg);
            if (r.n)
                HL_TRY(hl_layernorm_modulate(ctx, r.n, D, x + r.first * D, D, r.mod + scale * D,
                                             r.mod + shift * D, c->eps, y + r.first * D, D));
        }
    return HL_OK;
}

/* x += gate ⊙ y per segment (gate = MOD_GATE or MOD_C_GATE). */
static hl_status gated_residual(const hl_ctx *ctx, const hl_dit_config *c, int B, int64_t S,
                                int64_t n_hist, const float *mods, int gate, const float *y,
                                float *x) {
    int64_t D = c->dim;
    for (int b = 0; b < B; b++)
        for (int seg = 0; seg < 2; seg++) {
            segment r = seg_rows(c, S, n_hist, mods, b, seg);
            if (r.n)
                HL_TRY(hl_add_gated(ctx, r.n, D, x + r.first * D, D, y + r.first * D, D,
                                    r.mod + gate * D));
        }
    return HL_OK;
}

static hl_dtype gemm_dtype(const hl_tensor *w) { return w->dtype == HL_BF16 ? HL_BF16 : HL_F32; }

/* Self-attention over all S tokens, history keys amplified; result (before the gate) in s->h. */
static hl_status self_attention(const hl_ctx *ctx, const hl_dit_config *c, const hl_dit_attn *at,
                                int B, int64_t S, int64_t n_hist, const float *rope,
                                hl_dit_scratch *s) {
    int64_t D = c->dim, M = (int64_t)B * S;
    int H = c->heads, hd = c->head_dim;
    HL_TRY(hl_linear(ctx, M, s->h, D, &at->to_q_w, &at->to_q_b, s->q, D)); /* [B*S, D] */
    HL_TRY(hl_linear(ctx, M, s->h, D, &at->to_k_w, &at->to_k_b, s->k, D));
    HL_TRY(hl_linear(ctx, M, s->h, D, &at->to_v_w, &at->to_v_b, s->v, D));
    HL_TRY(
        hl_rmsnorm(ctx, M, D, s->q, D, at->norm_q, c->eps, s->q, D, NULL)); /* across all heads */
    HL_TRY(hl_rmsnorm(ctx, M, D, s->k, D, at->norm_k, c->eps, s->k, D, NULL));
    float amp[4096];
    if (at->history_key_scale && n_hist > 0) /* s_h = 1 + sigmoid(p_h) (10 - 1) */
        for (int h = 0; h < H; h++) {
            float p = at->history_key_scale[c->history_scale_per_head ? h : 0];
            amp[h] = 1.0f + 9.0f / (1.0f + expf(-p));
        }
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++) {
        float *q = s->q + b * S * D, *k = s->k + b * S * D, *v = s->v + b * S * D;
        HL_TRY(hl_rope(ctx, S, H, hd, q, D, rope)); /* [S, H, hd] */
        HL_TRY(hl_rope(ctx, S, H, hd, k, D, rope));
        if (at->history_key_scale && n_hist > 0)
            HL_TRY(hl_scale_heads(ctx, n_hist, H, hd, k, D, amp));
        HL_TRY(hl_attention(ctx, S, S, H, hd, q, D, k, D, v, D, scale, gemm_dtype(&at->to_q_w),
                            s->a + b * S * D, D));
    }
    return hl_linear(ctx, M, s->a, D, &at->to_out_w, &at->to_out_b, s->h, D); /* h is free again */
}

/* Guidance cross-attention: current tokens (all tokens without guidance_cross_attn) attend to
 * the text; x_cur += o, no gate. */
static hl_status cross_attention(const hl_ctx *ctx, const hl_dit_config *c, const hl_dit_block *blk,
                                 int B, int64_t S, int64_t n_hist, int64_t L, const float *enc,
                                 hl_dit_scratch *s, float *x) {
    const hl_dit_attn *at = &blk->attn2;
    int64_t D = c->dim;
    int H = c->heads, hd = c->head_dim;
    HL_TRY(
        hl_linear(ctx, (int64_t)B * L, enc, D, &at->to_k_w, &at->to_k_b, s->ck, D)); /* [B*L, D] */
    HL_TRY(hl_rmsnorm(ctx, (int64_t)B * L, D, s->ck, D, at->norm_k, c->eps, s->ck, D, NULL));
    HL_TRY(hl_linear(ctx, (int64_t)B * L, enc, D, &at->to_v_w, &at->to_v_b, s->cv, D));
    int64_t first = c->guidance_cross_attn ? n_hist : 0, n = S - first;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++) {
        float *xc = x + ((int64_t)b * S + first) * D; /* [n, D] */
        if (c->cross_attn_norm)
            HL_TRY(
                hl_layernorm(ctx, n, D, xc, D, blk->norm2_w, blk->norm2_b, c->eps, s->h, D, NULL));
        else
            for (int64_t i = 0; i < n * D; i++) s->h[i] = xc[i];
        HL_TRY(hl_linear(ctx, n, s->h, D, &at->to_q_w, &at->to_q_b, s->q, D));
        HL_TRY(hl_rmsnorm(ctx, n, D, s->q, D, at->norm_q, c->eps, s->q, D, NULL));
        HL_TRY(hl_attention(ctx, n, L, H, hd, s->q, D, s->ck + b * L * D, D, s->cv + b * L * D, D,
                            scale, gemm_dtype(&at->to_q_w), s->a, D));
        HL_TRY(hl_linear(ctx, n, s->a, D, &at->to_out_w, &at->to_out_b, s->q, D));
        hl_probe_emit(s->probe, s->q, n, D, "blocks.%d.attn2.out0", s->layer);
        HL_TRY(hl_add_gated(ctx, n, D, xc, D, s->q, D, NULL));
    }
    return HL_OK;
}

/* f = net.2(gelu_tanh(net.0(h))) over row tiles, into s->a. */
static hl_status feed_forward(const hl_ctx *ctx, const hl_dit_config *c, const hl_dit_block *blk,
                              int64_t M, hl_dit_scratch *s) {
    int64_t D = c->dim, F = c->ffn_dim;
    for (int64_t r = 0; r < M; r += s->rows_ffn) {
        int64_t n = M - r < s->rows_ffn ? M - r : s->rows_ffn;
        HL_TRY(
            hl_linear(ctx, n, s->h + r * D, D, &blk->ffn0_w, &blk->ffn0_b, s->f, F)); /* [n, F] */
        HL_TRY(hl_gelu_tanh(ctx, n * F, s->f, s->f));
        HL_TRY(
            hl_linear(ctx, n, s->f, F, &blk->ffn2_w, &blk->ffn2_b, s->a + r * D, D)); /* [n, D] */
    }
    return HL_OK;
}

hl_status hl_dit_block_forward(const hl_ctx *ctx, const hl_dit_config *c, const hl_dit_block *blk,
                               int B, int64_t n_hist, int64_t n_cur, const float *tproj,
                               const float *rope, int64_t L, const float *enc, hl_dit_scratch *s,
                               float *x) {
    int64_t S = n_hist + n_cur, M = (int64_t)B * S;
    block_modulation(c, blk, B, tproj, s->mod); /* [B, 2, 6, D] */
    /* 1. self-attention: x += gate · attn1(LN(x) (1 + scale) + shift) */
    HL_TRY(modulated_norm(ctx, c, B, S, n_hist, s->mod, MOD_SHIFT, MOD_SCALE, x, s->h));
    HL_TRY(self_attention(ctx, c, &blk->attn1, B, S, n_hist, rope, s));
    hl_probe_emit(s->probe, s->h, M, c->dim, "blocks.%d.attn1.out0", s->layer);
    HL_TRY(gated_residual(ctx, c, B, S, n_hist, s->mod, MOD_GATE, s->h, x));
    /* 2. cross-attention to the text */
    HL_TRY(cross_attention(ctx, c, blk, B, S, n_hist, L, enc, s, x));
    /* 3. feed-forward: x += c_gate · ffn(LN(x) (1 + c_scale) + c_shift) */
    HL_TRY(modulated_norm(ctx, c, B, S, n_hist, s->mod, MOD_C_SHIFT, MOD_C_SCALE, x, s->h));
    HL_TRY(feed_forward(ctx, c, blk, M, s));
    hl_probe_emit(s->probe, s->a, M, c->dim, "blocks.%d.ffn.out0", s->layer);
    HL_TRY(gated_residual(ctx, c, B, S, n_hist, s->mod, MOD_C_GATE, s->a, x));
    hl_probe_emit(s->probe, x, M, c->dim, "blocks.%d.out0", s->layer);
    return HL_OK;
}
