/* WanAttentionBlock forward-with-save / backward over whole clips: per frame, single-head
 * self-attention over the H·W positions with head width C, x + proj(attn(to_qkv(norm(x)))).
 *
 * linear_backward and attention_backward below are private stand-ins with the signatures of the
 * planned hl_linear_backward / hl_attention_backward (ops.h, not on main when this was written);
 * plain loops with double sums, enough for the tiny training shapes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vae/train_internal.h"

/* y[M, N] = x[M, K]·W[N, K]ᵀ + b:  dx = dy·W (overwrite, or add when accumulate_dx),
 * dW += dyᵀ·x, db += Σ_rows dy. W as hl_linear takes it (F32 or BF16, [N, K...]). */
static hl_status linear_backward(const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx,
                                 const hl_tensor *W, const float *dy, int64_t lddy, float *dx,
                                 int64_t lddx, int accumulate_dx, float *dW, float *db) {
    int64_t N = W->shape[0], K = hl_tensor_numel(W) / N;
    float *w = malloc((size_t)(N * K) * sizeof *w);
    if (!w) return hl_fail(ctx->err, HELIOS_ERR_OOM, "linear backward: out of memory");
    hl_convert_to_f32(W->dtype, W->data, w, (size_t)(N * K));
    for (int64_t m = 0; dx && m < M; m++)
        for (int64_t k = 0; k < K; k++) {
            double s = accumulate_dx ? dx[m * lddx + k] : 0.0;
            for (int64_t n = 0; n < N; n++) s += (double)dy[m * lddy + n] * w[n * K + k];
            dx[m * lddx + k] = (float)s;
        }
    for (int64_t n = 0; (dW || db) && n < N; n++) {
        double sb = 0.0;
        for (int64_t m = 0; m < M; m++) sb += dy[m * lddy + n];
        if (db) db[n] = (float)(db[n] + sb);
        for (int64_t k = 0; dW && k < K; k++) {
            double s = 0.0;
            for (int64_t m = 0; m < M; m++) s += (double)dy[m * lddy + n] * x[m * ldx + k];
            dW[n * K + k] = (float)(dW[n * K + k] + s);
        }
    }
    free(w);
    return HL_OK;
}

/* The backward of hl_attention (per head h, P = softmax(scale·q_h k_hᵀ), out = P v_h):
 *   dv = Pᵀ dout,  dP = dout vᵀ,  dS = P ⊙ (dP - rowsum(dout ⊙ out)),  dq = scale·dS k,
 *   dk = scale·dSᵀ q   (all overwritten). compute is ignored (float32). */
static hl_status attention_backward(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                                    const float *q, int64_t ldq, const float *k, int64_t ldk,
                                    const float *v, int64_t ldv, float scale, hl_dtype compute,
                                    const float *out, int64_t ldo, const float *dout, int64_t lddo,
                                    float *dq, int64_t lddq, float *dk, int64_t lddk, float *dv,
                                    int64_t lddv) {
    (void)compute;
    double *P = malloc((size_t)(Sq * Sk) * sizeof *P), *acc = calloc((size_t)hd, sizeof *acc);
    double *gk = calloc((size_t)(Sk * hd), sizeof *gk), *gv = calloc((size_t)(Sk * hd), sizeof *gv);
    if (!P || !acc || !gk || !gv) {
        free(P), free(acc), free(gk), free(gv);
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "attention backward: out of memory");
    }
    for (int h = 0; h < H; h++) {
        int64_t o = (int64_t)h * hd;
        memset(gk, 0, (size_t)(Sk * hd) * sizeof *gk);
        memset(gv, 0, (size_t)(Sk * hd) * sizeof *gv);
        for (int64_t i = 0; i < Sq; i++) { /* P row i */
            double mx = -INFINITY, sum = 0.0, *p = P + i * Sk;
            for (int64_t j = 0; j < Sk; j++) {
                double s = 0.0;
                for (int d = 0; d < hd; d++) s += (double)q[i * ldq + o + d] * k[j * ldk + o + d];
                p[j] = s * scale;
                if (p[j] > mx) mx = p[j];
            }
            for (int64_t j = 0; j < Sk; j++) sum += (p[j] = exp(p[j] - mx));
            for (int64_t j = 0; j < Sk; j++) p[j] /= sum;
        }
        for (int64_t i = 0; i < Sq; i++) {
            const double *p = P + i * Sk;
            const float *g = dout + i * lddo + o;
            double Di = 0.0;
            for (int d = 0; d < hd; d++) Di += (double)g[d] * out[i * ldo + o + d];
            memset(acc, 0, (size_t)hd * sizeof *acc);
            for (int64_t j = 0; j < Sk; j++) {
                double dP = 0.0;
                for (int d = 0; d < hd; d++) {
                    dP += (double)g[d] * v[j * ldv + o + d];
                    gv[j * hd + d] += p[j] * g[d];
                }
                double dS = p[j] * (dP - Di) * scale;
                for (int d = 0; d < hd; d++) {
                    acc[d] += dS * k[j * ldk + o + d];
                    gk[j * hd + d] += dS * q[i * ldq + o + d];
                }
            }
            for (int d = 0; d < hd; d++) dq[i * lddq + o + d] = (float)acc[d];
        }
        for (int64_t j = 0; j < Sk; j++)
            for (int d = 0; d < hd; d++) {
                dk[j * lddk + o + d] = (float)gk[j * hd + d];
                dv[j * lddv + o + d] = (float)gv[j * hd + d];
            }
    }
    free(P), free(acc), free(gk), free(gv);
    return HL_OK;
}

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
        st = linear_backward(ctx, M, o.x, C, &m->proj_w, d->x, C, dx.x, C, 0,
                             hl_vae_grad_of(g, &m->proj_w), hl_vae_grad_of(g, &m->proj_b));
    for (int64_t t = 0; st == HL_OK && t < x.T; t++) {
        float *f = qkv.x + t * S * 3 * C, *df = dqkv.x + t * S * 3 * C;
        st = attention_backward(ctx, S, S, 1, (int)C, f, 3 * C, f + C, 3 * C, f + 2 * C, 3 * C,
                                1.0f / sqrtf((float)C), HL_F32, o.x + t * S * C, C,
                                dx.x + t * S * C, C, df, 3 * C, df + C, 3 * C, df + 2 * C, 3 * C);
    }
    /* to_qkv: ∂xn into dx, ∂to_qkv */
    if (st == HL_OK)
        st = linear_backward(ctx, M, xn.x, C, &m->to_qkv_w, dqkv.x, 3 * C, dx.x, C, 0,
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
