/* The UMT5 encoder's training forward (with a tape) and backward (umt5_backward.h). The forward
 * repeats hl_umt5_forward's op sequence; the backward walks it in reverse with the ops'
 * backward passes. Names: x0 / x1 a layer's input / the residual after attention, n a norm
 * output, f0 / f1 the FFN projections wi_0·n / wi_1·n, a the attention output before o. */
#include "text/umt5_backward.h"

#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- gradients ----------------------------------------------------------------------------- */

/* Floats of every gradient (= of every weight) of c. */
static int64_t grads_numel(const hl_umt5_config *c) {
    int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff;
    int64_t per = 2 * D + 4 * I * D + (int64_t)c->num_buckets * c->num_heads + 3 * F * D;
    return (int64_t)c->vocab_size * D + (int64_t)c->num_layers * per + D;
}

/* Points g's arrays into p, back to back in state_dict order (hl_umt5_binder's row order). */
static void grads_take(const hl_umt5_config *c, hl_umt5_grads *g, float *p) {
    int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff;
#define TAKE(field, count) (field = p, p += (count))
    TAKE(g->shared, (int64_t)c->vocab_size * D);
    for (int i = 0; i < c->num_layers; i++) {
        hl_umt5_layer_grads *l = &g->layers[i];
        TAKE(l->ln_attn, D);
        TAKE(l->q, I * D), TAKE(l->k, I * D), TAKE(l->v, I * D), TAKE(l->o, D * I);
        TAKE(l->rel_bias, (int64_t)c->num_buckets * c->num_heads);
        TAKE(l->ln_ffn, D);
        TAKE(l->wi_0, F * D), TAKE(l->wi_1, F * D), TAKE(l->wo, D * F);
    }
    TAKE(g->final_ln, D);
#undef TAKE
}

hl_status hl_umt5_grads_new(const hl_umt5 *m, hl_umt5_grads **out, hl_error *err) {
    const hl_umt5_config *c = &m->cfg;
    int64_t n = grads_numel(c);
    *out = NULL;
    hl_umt5_grads *g = calloc(1, sizeof *g);
    if (g) g->layers = calloc((size_t)c->num_layers, sizeof *g->layers);
    if (g && g->layers) g->buf = calloc((size_t)n, sizeof *g->buf);
    if (!g || !g->buf) {
        hl_umt5_grads_free(g);
        return hl_fail(err, HELIOS_ERR_OOM, "umt5: out of memory for %lld gradients", (long long)n);
    }
    g->numel = n;
    grads_take(c, g, g->buf);
    *out = g;
    return HL_OK;
}

hl_status hl_umt5_grads_wrap(const hl_umt5 *m, float *buf, hl_umt5_grads **out, hl_error *err) {
    const hl_umt5_config *c = &m->cfg;
    *out = NULL;
    hl_umt5_grads *g = calloc(1, sizeof *g);
    if (g) g->layers = calloc((size_t)c->num_layers, sizeof *g->layers);
    if (!g || !g->layers) {
        hl_umt5_grads_free(g);
        return hl_fail(err, HELIOS_ERR_OOM, "umt5: out of memory");
    }
    g->numel = grads_numel(c);
    grads_take(c, g, buf); /* g->buf stays NULL: the caller owns buf */
    *out = g;
    return HL_OK;
}

void hl_umt5_grads_zero(hl_umt5_grads *g) {
    memset(g->shared, 0, (size_t)g->numel * sizeof *g->shared); /* shared is the first array */
}

void hl_umt5_grads_free(hl_umt5_grads *g) {
    if (!g) return;
    free(g->buf);
    free(g->layers);
    free(g);
}

/* ---- the tape ------------------------------------------------------------------------------ */

typedef struct tape_layer {
    float *x0, *x1;       /* [M, D] the layer's input, the residual after attention */
    float *q, *k, *v, *a; /* [M, H*dkv] */
    float *f0, *f1;       /* [M, F] */
    float *rstd0, *rstd1; /* [M] 1/rms of x0 and x1 */
} tape_layer;

struct hl_umt5_tape {
    const hl_umt5 *m; /* the model it was recorded with */
    int B;
    int64_t L;
    int64_t *ids, *mask; /* [B, L] copies; mask NULL when the forward had none */
    int *bucket_of;      /* [2L - 1]: bucket of n = j - i, indexed n + L - 1 */
    tape_layer *layers;
    float *xf, *rstdf; /* [M, D], [M]: the final norm's input and 1/rms */
    float *buf;        /* owns every float array */
};

void hl_umt5_tape_free(hl_umt5_tape *t) {
    if (!t) return;
    free(t->ids), free(t->mask), free(t->bucket_of), free(t->layers), free(t->buf);
    free(t);
}

static hl_status tape_new(const hl_umt5 *m, int B, int64_t L, const int64_t *ids,
                          const int64_t *mask, hl_umt5_tape **out, hl_error *err) {
    const hl_umt5_config *c = &m->cfg;
    int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff, M = (int64_t)B * L;
    int64_t per = 0, n = 0;
    /* per layer: x0, x1, q, k, v, a, f0, f1, rstd0, rstd1; then xf, rstdf */
    bool ok = hl_mul_ok(M, 2 * D + 4 * I + 2 * F + 2, &per) && hl_mul_ok(per, c->num_layers, &n) &&
              !__builtin_add_overflow(n, M * (D + 1), &n) &&
              (uint64_t)n <= SIZE_MAX / sizeof(float);
    *out = NULL;
    hl_umt5_tape *t = ok ? calloc(1, sizeof *t) : NULL;
    if (t) {
        t->ids = malloc((size_t)M * sizeof *t->ids);
        t->mask = mask ? malloc((size_t)M * sizeof *t->mask) : NULL;
        t->bucket_of = malloc((size_t)(2 * L - 1) * sizeof *t->bucket_of);
        t->layers = calloc((size_t)c->num_layers, sizeof *t->layers);
        t->buf = malloc((size_t)n * sizeof *t->buf);
    }
    if (!t || !t->ids || (mask && !t->mask) || !t->bucket_of || !t->layers || !t->buf) {
        hl_umt5_tape_free(t);
        return hl_fail(err, HELIOS_ERR_OOM, "umt5: out of memory for the tape of %lld tokens",
                       (long long)M);
    }
    t->m = m, t->B = B, t->L = L;
    memcpy(t->ids, ids, (size_t)M * sizeof *ids);
    if (mask) memcpy(t->mask, mask, (size_t)M * sizeof *mask);
    for (int64_t d = -(L - 1); d <= L - 1; d++)
        t->bucket_of[d + L - 1] = hl_umt5_bucket(d, c->num_buckets, c->max_distance);
    float *p = t->buf;
#define TAKE(field, count) (field = p, p += (count))
    for (int i = 0; i < c->num_layers; i++) {
        tape_layer *l = &t->layers[i];
        TAKE(l->x0, M * D), TAKE(l->x1, M * D);
        TAKE(l->q, M * I), TAKE(l->k, M * I), TAKE(l->v, M * I), TAKE(l->a, M * I);
        TAKE(l->f0, M * F), TAKE(l->f1, M * F);
        TAKE(l->rstd0, M), TAKE(l->rstd1, M);
    }
    TAKE(t->xf, M * D), TAKE(t->rstdf, M);
#undef TAKE
    *out = t;
    return HL_OK;
}

/* ---- scratch shared by the forward and the backward ---------------------------------------- */

typedef struct scratch {
    float *n;                 /* [M, D] a norm output / a projection back to D */
    float *g, *dg;            /* [M, F] gelu(f0) ⊙ f1 and its gradient (df0; g becomes df1) */
    float *dh, *dn;           /* [M, D] ∂L/∂residual, ∂L/∂n */
    float *da, *dq, *dk, *dv; /* [M, H*dkv] */
    float *bias, *dbias;      /* [H, L, L] */
    float *rel;               /* [H, 2L - 1] the bias (and its gradient) per offset */
    float *key_bias;          /* [L] */
    float *buf;
} scratch;

static hl_status scratch_new(const hl_umt5_config *c, int B, int64_t L, bool backward, scratch *s,
                             hl_error *err) {
    int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff, M = (int64_t)B * L;
    int64_t H = c->num_heads, n = M * D + M * F + H * L * L + H * (2 * L - 1) + L;
    if (backward) n += M * F + 2 * M * D + 4 * M * I + H * L * L;
    memset(s, 0, sizeof *s);
    if (!(s->buf = malloc((size_t)n * sizeof *s->buf)))
        return hl_fail(err, HELIOS_ERR_OOM, "umt5: out of memory for %lld tokens", (long long)M);
    float *p = s->buf;
#define TAKE(field, count) (field = p, p += (count))
    TAKE(s->n, M * D), TAKE(s->g, M * F), TAKE(s->bias, H * L * L);
    TAKE(s->rel, H * (2 * L - 1)), TAKE(s->key_bias, L);
    if (backward) {
        TAKE(s->dg, M * F), TAKE(s->dh, M * D), TAKE(s->dn, M * D);
        TAKE(s->da, M * I), TAKE(s->dq, M * I), TAKE(s->dk, M * I), TAKE(s->dv, M * I);
        TAKE(s->dbias, H * L * L);
    }
#undef TAKE
    return HL_OK;
}

static hl_dtype gemm_dtype(const hl_tensor *w) { return w->dtype == HL_BF16 ? HL_BF16 : HL_F32; }

/* s->bias [H, L, L] of one layer: rel_bias[bucket(j - i), h]. */
static hl_status layer_bias(const hl_ctx *ctx, const hl_umt5_config *c, const float *rel_bias,
                            const hl_umt5_tape *t, scratch *s) {
    int64_t L = t->L, R = 2 * L - 1;
    for (int h = 0; h < c->num_heads; h++)
        for (int64_t n = 0; n < R; n++)
            s->rel[h * R + n] = rel_bias[t->bucket_of[n] * c->num_heads + h];
    return hl_relative_bias(ctx, c->num_heads, L, L, s->rel, s->bias);
}

/* s->key_bias [L] of sequence b: (1 - mask) · finfo(float32).min. */
static void key_bias(const hl_umt5_tape *t, int b, scratch *s) {
    for (int64_t j = 0; j < t->L; j++)
        s->key_bias[j] = t->mask && !t->mask[(int64_t)b * t->L + j] ? -FLT_MAX : 0.0f;
}

/* ---- forward ------------------------------------------------------------------------------- */

static hl_status attention_forward(const hl_ctx *ctx, const hl_umt5 *m, const hl_umt5_layer *l,
                                   const hl_umt5_tape *t, tape_layer *tl, float *h, scratch *s) {
    const hl_umt5_config *c = &m->cfg;
    int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, L = t->L, M = t->B * L;
    memcpy(tl->x0, h, (size_t)(M * D) * sizeof *h);
    HL_TRY(hl_rmsnorm(ctx, M, D, h, D, l->ln_attn, c->eps, s->n, D,
                      &(hl_norm_saved){NULL, tl->rstd0}));
    HL_TRY(hl_linear(ctx, M, s->n, D, &l->q, NULL, tl->q, I)); /* [B*L, H*dkv] */
    HL_TRY(hl_linear(ctx, M, s->n, D, &l->k, NULL, tl->k, I));
    HL_TRY(hl_linear(ctx, M, s->n, D, &l->v, NULL, tl->v, I));
    HL_TRY(layer_bias(ctx, c, l->rel_bias, t, s));
    for (int b = 0; b < t->B; b++) {
        key_bias(t, b, s);
        int64_t r = (int64_t)b * L * I;
        HL_TRY(hl_attention_biased(ctx, L, L, c->num_heads, c->d_kv, tl->q + r, I, tl->k + r, I,
                                   tl->v + r, I, 1.0f /* T5: no 1/sqrt(d) */, s->bias, s->key_bias,
                                   gemm_dtype(&l->q), tl->a + r, I));
    }
    HL_TRY(hl_linear(ctx, M, tl->a, I, &l->o, NULL, s->n, D));
    return hl_add_gated(ctx, M, D, h, D, s->n, D, NULL); /* h += o(attn) */
}

static hl_status ffn_forward(const hl_ctx *ctx, const hl_umt5 *m, const hl_umt5_layer *l, int64_t M,
                             tape_layer *tl, float *h, scratch *s) {
    const hl_umt5_config *c = &m->cfg;
    int64_t D = c->d_model, F = c->d_ff;
    memcpy(tl->x1, h, (size_t)(M * D) * sizeof *h);
    HL_TRY(
        hl_rmsnorm(ctx, M, D, h, D, l->ln_ffn, c->eps, s->n, D, &(hl_norm_saved){NULL, tl->rstd1}));
    HL_TRY(hl_linear(ctx, M, s->n, D, &l->wi_0, NULL, tl->f0, F)); /* [M, F] */
    HL_TRY(hl_linear(ctx, M, s->n, D, &l->wi_1, NULL, tl->f1, F));
    HL_TRY(hl_gelu_tanh_mul(ctx, M * F, tl->f0, tl->f1, s->g)); /* gelu(wi_0·x) ⊙ wi_1·x */
    HL_TRY(hl_linear(ctx, M, s->g, F, &l->wo, NULL, s->n, D));
    return hl_add_gated(ctx, M, D, h, D, s->n, D, NULL);
}

hl_status hl_umt5_forward_train(const hl_ctx *ctx, const hl_umt5 *m, int B, int64_t L,
                                const int64_t *ids, const int64_t *mask, float *out,
                                hl_umt5_tape **tape) {
    const hl_umt5_config *c = &m->cfg;
    *tape = NULL;
    if (B < 1 || L < 1) return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, "umt5: empty input");
    int64_t D = c->d_model, M = (int64_t)B * L;
    hl_umt5_tape *t = NULL;
    scratch s;
    HL_TRY(tape_new(m, B, L, ids, mask, &t, ctx->err));
    hl_status st = scratch_new(c, B, L, false, &s, ctx->err);
    if (st != HL_OK) {
        hl_umt5_tape_free(t);
        return st;
    }
    float *h = out; /* the residual stream lives in the output */
    st = hl_umt5_embed(m, M, ids, h, ctx->err);
    for (int i = 0; st == HL_OK && i < c->num_layers; i++) {
        st = attention_forward(ctx, m, &m->layers[i], t, &t->layers[i], h, &s);
        if (st == HL_OK) st = ffn_forward(ctx, m, &m->layers[i], M, &t->layers[i], h, &s);
    }
    if (st == HL_OK) {
        memcpy(t->xf, h, (size_t)(M * D) * sizeof *h);
        st = hl_rmsnorm(ctx, M, D, h, D, m->final_ln, c->eps, h, D,
                        &(hl_norm_saved){NULL, t->rstdf});
    }
    free(s.buf);
    if (st != HL_OK) hl_umt5_tape_free(t);
    else *tape = t;
    return st;
}

/* ---- backward ------------------------------------------------------------------------------ */

/* h = x1 + wo(gelu(wi_0·n) ⊙ wi_1·n), n = rmsnorm(x1): s->dh (∂L/∂h) becomes ∂L/∂x1. */
static hl_status ffn_backward(const hl_ctx *ctx, const hl_umt5 *m, const hl_umt5_layer *l,
                              int64_t M, const tape_layer *tl, hl_umt5_layer_grads *gl,
                              scratch *s) {
    const hl_umt5_config *c = &m->cfg;
    int64_t D = c->d_model, F = c->d_ff;
    HL_TRY(hl_rmsnorm(ctx, M, D, tl->x1, D, l->ln_ffn, c->eps, s->n, D, NULL)); /* again */
    HL_TRY(hl_gelu_tanh_mul(ctx, M * F, tl->f0, tl->f1, s->g));
    HL_TRY(hl_linear_backward(ctx, M, s->g, F, &l->wo, s->dh, D, s->dg, F, 0, gl->wo, NULL));
    /* dg -> df0 (in place), g -> df1 */
    HL_TRY(hl_gelu_tanh_mul_backward(ctx, M * F, tl->f0, tl->f1, s->dg, s->dg, s->g));
    HL_TRY(hl_linear_backward(ctx, M, s->n, D, &l->wi_0, s->dg, F, s->dn, D, 0, gl->wi_0, NULL));
    HL_TRY(hl_linear_backward(ctx, M, s->n, D, &l->wi_1, s->g, F, s->dn, D, 1, gl->wi_1, NULL));
    HL_TRY(hl_rmsnorm_backward(ctx, M, D, tl->x1, D, l->ln_ffn, &(hl_norm_saved){NULL, tl->rstd1},
                               s->dn, D, s->dn, D, gl->ln_ffn));
    return hl_add_gated(ctx, M, D, s->dh, D, s->dn, D, NULL); /* the residual's own path */
}

/* x1 = x0 + o(attention(q, k, v of rmsnorm(x0)) + bias): s->dh becomes ∂L/∂x0. */
static hl_status attention_backward(const hl_ctx *ctx, const hl_umt5 *m, const hl_umt5_layer *l,
                                    const hl_umt5_tape *t, const tape_layer *tl,
                                    hl_umt5_layer_grads *gl, scratch *s) {
    const hl_umt5_config *c = &m->cfg;
    int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, L = t->L, M = t->B * L;
    int64_t H = c->num_heads, R = 2 * L - 1;
    HL_TRY(hl_linear_backward(ctx, M, tl->a, I, &l->o, s->dh, D, s->da, I, 0, gl->o, NULL));
    HL_TRY(layer_bias(ctx, c, l->rel_bias, t, s));
    memset(s->dbias, 0, (size_t)(H * L * L) * sizeof *s->dbias);
    for (int b = 0; b < t->B; b++) {
        key_bias(t, b, s);
        int64_t r = (int64_t)b * L * I;
        HL_TRY(hl_attention_biased_backward(ctx, L, L, c->num_heads, c->d_kv, tl->q + r, I,
                                            tl->k + r, I, tl->v + r, I, 1.0f, s->bias, s->key_bias,
                                            gemm_dtype(&l->q), tl->a + r, I, s->da + r, I,
                                            s->dq + r, I, s->dk + r, I, s->dv + r, I, s->dbias));
    }
    /* the bias of every offset, then of every bucket (several far offsets share one) */
    memset(s->rel, 0, (size_t)(H * R) * sizeof *s->rel);
    HL_TRY(hl_relative_bias_backward(ctx, c->num_heads, L, L, s->dbias, s->rel));
    for (int64_t h = 0; h < H; h++)
        for (int64_t n = 0; n < R; n++) gl->rel_bias[t->bucket_of[n] * H + h] += s->rel[h * R + n];
    HL_TRY(hl_rmsnorm(ctx, M, D, tl->x0, D, l->ln_attn, c->eps, s->n, D, NULL)); /* again */
    HL_TRY(hl_linear_backward(ctx, M, s->n, D, &l->q, s->dq, I, s->dn, D, 0, gl->q, NULL));
    HL_TRY(hl_linear_backward(ctx, M, s->n, D, &l->k, s->dk, I, s->dn, D, 1, gl->k, NULL));
    HL_TRY(hl_linear_backward(ctx, M, s->n, D, &l->v, s->dv, I, s->dn, D, 1, gl->v, NULL));
    HL_TRY(hl_rmsnorm_backward(ctx, M, D, tl->x0, D, l->ln_attn, &(hl_norm_saved){NULL, tl->rstd0},
                               s->dn, D, s->dn, D, gl->ln_attn));
    return hl_add_gated(ctx, M, D, s->dh, D, s->dn, D, NULL);
}

hl_status hl_umt5_backward(const hl_ctx *ctx, const hl_umt5 *m, const hl_umt5_tape *t,
                           const float *dout, hl_umt5_grads *g) {
    if (!t || !dout || !g || t->m != m)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, "umt5 backward: %s",
                       !t || !dout || !g ? "a NULL argument" : "the tape is of another model");
    const hl_umt5_config *c = &m->cfg;
    int64_t D = c->d_model, M = t->B * t->L;
    scratch s;
    HL_TRY(scratch_new(c, t->B, t->L, true, &s, ctx->err));
    memcpy(s.dh, dout, (size_t)(M * D) * sizeof *dout);
    hl_status st = hl_rmsnorm_backward(ctx, M, D, t->xf, D, m->final_ln,
                                       &(hl_norm_saved){NULL, t->rstdf}, s.dh, D, s.dh, D,
                                       g->final_ln);
    for (int i = c->num_layers - 1; st == HL_OK && i >= 0; i--) {
        st = ffn_backward(ctx, m, &m->layers[i], M, &t->layers[i], &g->layers[i], &s);
        if (st == HL_OK)
            st = attention_backward(ctx, m, &m->layers[i], t, &t->layers[i], &g->layers[i], &s);
    }
    for (int64_t r = 0; st == HL_OK && r < M; r++) { /* the embedding: rows scatter-add */
        float *gs = g->shared + t->ids[r] * D;
        for (int64_t d = 0; d < D; d++) gs[d] += s.dh[r * D + d];
    }
    free(s.buf);
    return st;
}
