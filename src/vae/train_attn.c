/* WanAttentionBlock forward-with-save / backward over whole clips: per frame, single-head
 * self-attention over the H·W positions with head width C, x + proj(attn(to_qkv(norm(x)))).
 * The backward goes through hl_linear_backward and hl_attention_backward (ops.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vae/train_internal.h"

/* Saves x, xn = norm(x), qkv, o (the attention output before proj). */
hl_status hl_train_attn_forward(hl_vae_tape *tp, hl_vae_attn *m, hl_tact *a) {
    const hl_ctx *ctx = tp->ctx;
    hl_tact x = *a, xn = {0}, qkv = {0}, o = {0}, y = {0};
    int64_t S = x.H * x.W, C = m->dim;
    hl_status st = hl_tape_alloc(tp, &xn, x.T, x.H, x.W, C);
    if (st == HL_OK) st = hl_tape_alloc(tp, &qkv, x.T, x.H, x.W, 3 * C);
    if (st == HL_OK) st = hl_tape_alloc(tp, &o, x.T, x.H, x.W, C);
    if (st == HL_OK) st = hl_tape_alloc(tp, &y, x.T, x.H, x.W, C);
    if (st == HL_OK)
        st = hl_channel_rmsnorm(ctx, HL_NTHWC, 1, C, x.T * S, x.x, m->norm, 0, HL_F32, xn.x);
    if (st == HL_OK)
        st = hl_linear(ctx, x.T * S, xn.x, C, &m->to_qkv_w, &m->to_qkv_b, qkv.x,
                       3 * C); /* [T·S, 3C] = q | k | v */
    for (int64_t t = 0; st == HL_OK && t < x.T; t++) {
        float *f = qkv.x + t * S * 3 * C;
        st = hl_attention(ctx, S, S, 1, (int)C, f, 3 * C, f + C, 3 * C, f + 2 * C, 3 * C,
                          1.0f / sqrtf((float)C), HL_F32, o.x + t * S * C, C);
    }
    if (st == HL_OK) st = hl_linear(ctx, x.T * S, o.x, C, &m->proj_w, &m->proj_b, y.x, C);
    if (st == HL_OK) st = hl_add_gated(ctx, x.T * S, C, y.x, C, x.x, C, NULL); /* + identity */
    hl_tact *keep[4] = {&x, &xn, &qkv, &o};
    for (int i = 0; i < 4; i++)
        if (st == HL_OK) st = hl_tape_push(tp, keep[i]);
        else hl_tape_release(tp, keep[i]);
    a->x = NULL;
    if (st != HL_OK) hl_tape_release(tp, &y);
    else *a = y;
    return st;
}

hl_status hl_train_attn_backward(hl_vae_tape *tp, hl_vae_attn *m, hl_tact *d) {
    const hl_ctx *ctx = tp->ctx;
    hl_vae_grads *g = tp->grads;
    int64_t C = m->dim;
    hl_tact x, xn, qkv, o, dqkv = {0}, dx = {0};
    HL_TRY(hl_tape_pop(tp, &o, C));
    HL_TRY(hl_tape_pop(tp, &qkv, 3 * C));
    HL_TRY(hl_tape_pop(tp, &xn, C));
    HL_TRY(hl_tape_pop(tp, &x, C));
    int64_t S = x.H * x.W, M = x.T * S;
    hl_status st = hl_tape_alloc(tp, &dqkv, x.T, x.H, x.W, 3 * C);
    if (st == HL_OK) st = hl_tape_alloc(tp, &dx, x.T, x.H, x.W, C);
    /* proj: ∂o into dx (as scratch), ∂proj */
    if (st == HL_OK)
        st = hl_linear_backward(ctx, M, o.x, C, &m->proj_w, d->x, C, dx.x, C, 0,
                                hl_vae_grad_of(g, &m->proj_w), hl_vae_grad_of(g, &m->proj_b));
    /* attention, per frame: dq, dk, dv into their own [S, C] buffers (the op takes no
     * interleaved gradients), then into the columns of dqkv */
    hl_tact dh = {0};
    if (st == HL_OK) st = hl_tape_alloc(tp, &dh, 3, x.H, x.W, C);
    for (int64_t t = 0; st == HL_OK && t < x.T; t++) {
        float *f = qkv.x + t * S * 3 * C, *df = dqkv.x + t * S * 3 * C;
        float *dq = dh.x, *dk = dq + S * C, *dv = dk + S * C;
        st = hl_attention_backward(ctx, S, S, 1, (int)C, f, 3 * C, f + C, 3 * C, f + 2 * C, 3 * C,
                                   1.0f / sqrtf((float)C), HL_F32, o.x + t * S * C, C,
                                   dx.x + t * S * C, C, dq, C, dk, C, dv, C);
        for (int64_t i = 0; st == HL_OK && i < S; i++)
            for (int j = 0; j < 3; j++)
                memcpy(df + i * 3 * C + j * C, dh.x + (j * S + i) * C, (size_t)C * sizeof(float));
    }
    hl_tape_release(tp, &dh);
    /* to_qkv: ∂xn into dx, ∂to_qkv */
    if (st == HL_OK)
        st = hl_linear_backward(ctx, M, xn.x, C, &m->to_qkv_w, dqkv.x, 3 * C, dx.x, C, 0,
                                hl_vae_grad_of(g, &m->to_qkv_w), hl_vae_grad_of(g, &m->to_qkv_b));
    if (st == HL_OK)
        st = hl_channel_rmsnorm_backward(ctx, HL_NTHWC, 1, C, M, x.x, m->norm, 0, dx.x, dx.x,
                                         hl_vae_grad_of(g, &m->norm));
    if (st == HL_OK) st = hl_add_gated(ctx, M, C, dx.x, C, d->x, C, NULL); /* + identity */
    hl_tact *drop[6] = {&x, &xn, &qkv, &o, &dqkv, d};
    for (int i = 0; i < 6; i++) hl_tape_release(tp, drop[i]);
    if (st != HL_OK) hl_tape_release(tp, &dx);
    else *d = dx;
    return st;
}
