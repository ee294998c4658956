/* The transformer for training: the forward that keeps a tape, and its backward (the model-level
 * steps; one block is src/dit/block_train.c). Each forward step of hl_dit_forward_train is undone
 * in reverse order by hl_dit_backward:
 *   tokens  = patch embeddings of [long | mid | short | current]     <- embed_backward
 *   tproj   = time embedding of t (history: t = 0), temb for the head <- time_backward
 *   enc     = text embedding                                          <- text_backward
 *   x       = blocks(tokens)                                          <- hl_dit_block_backward
 *   out     = unpatchify(proj_out(norm_out(x_current)))               <- head_backward */
#include <stdlib.h>
#include <string.h>

#include "dit/tape.h"

struct hl_dit_tape {
    hl_bufs bufs;
    helios_dit_input in; /* the caller's arrays */
    hl_dit_plan p;
    int recompute;
    float *rope;                      /* [S, hd] */
    float *temb, *tproj;              /* [B, D], [B, 2, 6, D] */
    float *text_pre, *text_act, *enc; /* [B·L, D]: linear_1 output, its GELU, linear_2 output */
    float **xs;                       /* [num_layers + 1] block inputs [M, D]; xs[L] = last */
    hl_dit_block_tape *bt;            /* one per block, or one reused (recompute) */
    float *w;                         /* [D] scratch */
    float *head_mean, *head_rstd;     /* [B·n_cur] norm_out statistics */
    float *head_mod;                  /* [B, 2, D] norm_out shift, 1 + scale */
    float *head_y;                    /* [B·n_cur, D] norm_out output: input of proj_out */
    float *rows;                      /* [patch_rows] patchified segment / proj_out output */
};

size_t hl_dit_tape_bytes(const hl_dit_tape *t) { return t ? t->bufs.bytes : 0; }

void hl_dit_tape_free(hl_dit_tape *t) {
    if (!t) return;
    hl_bufs_free(&t->bufs);
    free(t->xs);
    free(t->bt);
    free(t);
}


/* ---- the segments of the token sequence ------------------------------------------------------ */

typedef struct patch_segment {
    const hl_tensor *w, *b; /* the Conv3d (stride = kernel) */
    int64_t T, H, W;        /* latent grid */
    const float *lat;       /* batch element 0's latents (C, T, H, W); NULL: absent */
    int64_t row0, n;        /* token rows within a batch element */
} patch_segment;

/* The four segments in token order: long, mid, short, current. */
static void segments(const hl_dit *m, const helios_dit_input *in, const hl_dit_plan *p,
                     patch_segment seg[4]) {
    int64_t Hh = in->hist_height, Wh = in->hist_width;
    patch_segment s[4] = {
        {&m->patch_long_w, &m->patch_long_b, in->long_frames, Hh, Wh, in->latents_history_long, 0,
         p->n_long},
        {&m->patch_mid_w, &m->patch_mid_b, in->mid_frames, Hh, Wh, in->latents_history_mid,
         p->n_long, p->n_mid},
        {&m->patch_short_w, &m->patch_short_b, in->short_frames, Hh, Wh, in->latents_history_short,
         p->n_long + p->n_mid, p->n_short},
        {&m->patch_embedding_w, &m->patch_embedding_b, in->frames, in->height, in->width,
         in->hidden_states, p->n_hist, p->n_cur},
    };
    memcpy(seg, s, sizeof s);
}

/* The same segment's field in another model struct (the gradient view). */
static void segment_grads(hl_dit *g, int i, float **dw, float **db) {
    hl_tensor *w[] = {&g->patch_long_w, &g->patch_mid_w, &g->patch_short_w, &g->patch_embedding_w};
    hl_tensor *b[] = {&g->patch_long_b, &g->patch_mid_b, &g->patch_short_b, &g->patch_embedding_b};
    *dw = w[i]->data;
    *db = b[i]->data;
}

static float *segment_input_grad(const hl_dit_input_grads *gin, int i) {
    if (!gin) return NULL;
    float *d[] = {gin->latents_history_long, gin->latents_history_mid, gin->latents_history_short,
                  gin->hidden_states};
    return d[i];
}

static int64_t seg_numel(int64_t C, const patch_segment *s) { return C * s->T * s->H * s->W; }

static hl_status embed_forward(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t, float *x) {
    const hl_dit_plan *p = &t->p;
    int64_t D = m->cfg.dim, C = m->cfg.in_channels;
    patch_segment seg[4];
    segments(m, &t->in, p, seg);
    for (int b = 0; b < p->B; b++)
        for (int i = 0; i < 4; i++) {
            const patch_segment *s = &seg[i];
            if (!s->n) continue;
            int kt = (int)s->w->shape[2], kh = (int)s->w->shape[3], kw = (int)s->w->shape[4];
            HL_TRY(hl_patchify3d(ctx, C, s->T, s->H, s->W, kt, kh, kw, s->lat + b * seg_numel(C, s),
                                 t->rows));
            HL_TRY(hl_linear(ctx, s->n, t->rows, C * kt * kh * kw, s->w, s->b,
                             x + ((int64_t)b * p->S + s->row0) * D, D));
        }
    return HL_OK;
}

static hl_status embed_backward(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t, const float *dx,
                                float *drows, hl_dit *g, const hl_dit_input_grads *gin) {
    const hl_dit_plan *p = &t->p;
    int64_t D = m->cfg.dim, C = m->cfg.in_channels;
    patch_segment seg[4];
    segments(m, &t->in, p, seg);
    for (int b = 0; b < p->B; b++)
        for (int i = 0; i < 4; i++) {
            const patch_segment *s = &seg[i];
            if (!s->n) continue;
            int kt = (int)s->w->shape[2], kh = (int)s->w->shape[3], kw = (int)s->w->shape[4];
            int64_t K = C * kt * kh * kw;
            float *dw, *db, *dlat = segment_input_grad(gin, i);
            segment_grads(g, i, &dw, &db);
            HL_TRY(hl_patchify3d(ctx, C, s->T, s->H, s->W, kt, kh, kw, s->lat + b * seg_numel(C, s),
                                 t->rows));
            HL_TRY(hl_linear_backward(ctx, s->n, t->rows, K, s->w,
                                      dx + ((int64_t)b * p->S + s->row0) * D, D,
                                      dlat ? drows : NULL, K, 0, dw, db));
            if (dlat)
                HL_TRY(hl_patchify3d_backward(ctx, C, s->T, s->H, s->W, kt, kh, kw, drows,
                                              dlat + b * seg_numel(C, s)));
        }
    return HL_OK;
}

/* ---- time and text embeddings ------------------------------------------------------------------ */

static int zero_history_t(const hl_dit *m, const hl_dit_plan *p) {
    return p->n_hist > 0 && m->cfg.zero_history_timestep;
}

/* temb [B, D] (real t), tproj [B, 2, 6, D]: slot 0 for history tokens, slot 1 for current ones. */
static hl_status time_forward(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t) {
    const hl_dit_plan *p = &t->p;
    int64_t D = m->cfg.dim;
    for (int b = 0; b < p->B; b++) {
        float *slot = t->tproj + (int64_t)b * 12 * D;
        HL_TRY(hl_dit_time_embed(ctx, m, t->in.timestep[b], t->temb + b * D, slot + 6 * D));
        memcpy(slot, slot + 6 * D, (size_t)(6 * D) * sizeof(float));
    }
    if (zero_history_t(m, p)) {
        HL_TRY(hl_dit_time_embed(ctx, m, 0.0, t->w, t->tproj)); /* temb of t = 0 is not used */
        for (int b = 1; b < p->B; b++)
            memcpy(t->tproj + (int64_t)b * 12 * D, t->tproj, (size_t)(6 * D) * sizeof(float));
    }
    return HL_OK;
}

static hl_status time_backward(const hl_ctx *ctx, const hl_dit *m, const hl_dit_tape *t,
                               float *dtproj, const float *dtemb, hl_dit *g) {
    const hl_dit_plan *p = &t->p;
    int64_t D = m->cfg.dim;
    int zero = zero_history_t(m, p);
    for (int b = 0; b < p->B; b++) {
        float *slot = dtproj + (int64_t)b * 12 * D;
        if (!zero) /* slot 0 was a copy of slot 1 */
            HL_TRY(hl_add_gated(ctx, 1, 6 * D, slot + 6 * D, 6 * D, slot, 6 * D, NULL));
        else if (b > 0) /* every batch element's slot 0 was batch 0's t = 0 embedding */
            HL_TRY(hl_add_gated(ctx, 1, 6 * D, dtproj, 6 * D, slot, 6 * D, NULL));
        HL_TRY(
            hl_dit_time_embed_backward(ctx, m, t->in.timestep[b], slot + 6 * D, dtemb + b * D, g));
    }
    return zero ? hl_dit_time_embed_backward(ctx, m, 0.0, dtproj, NULL, g) : HL_OK;
}

static hl_status text_forward(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t) {
    int64_t D = m->cfg.dim, M = (int64_t)t->p.B * t->p.L;
    HL_TRY(hl_linear(ctx, M, t->in.encoder_hidden_states, m->cfg.text_dim, &m->text_linear_1_w,
                     &m->text_linear_1_b, t->text_pre, D));
    HL_TRY(hl_gelu_tanh(ctx, M * D, t->text_pre, t->text_act));
    return hl_linear(ctx, M, t->text_act, D, &m->text_linear_2_w, &m->text_linear_2_b, t->enc, D);
}

/* From denc [B·L, D]; dact [B·L, D] scratch. */
static hl_status text_backward(const hl_ctx *ctx, const hl_dit *m, const hl_dit_tape *t,
                               const float *denc, float *dact, hl_dit *g,
                               const hl_dit_input_grads *gin) {
    int64_t D = m->cfg.dim, M = (int64_t)t->p.B * t->p.L;
    HL_TRY(hl_linear_backward(ctx, M, t->text_act, D, &m->text_linear_2_w, denc, D, dact, D, 0,
                              g->text_linear_2_w.data, g->text_linear_2_b.data));
    HL_TRY(hl_gelu_tanh_backward(ctx, M * D, t->text_pre, dact, dact));
    return hl_linear_backward(ctx, M, t->in.encoder_hidden_states, m->cfg.text_dim,
                              &m->text_linear_1_w, dact, D, gin ? gin->encoder_hidden_states : NULL,
                              m->cfg.text_dim, 0, g->text_linear_1_w.data, g->text_linear_1_b.data);
}

/* ---- output head: out = unpatchify(proj_out(LN(x)·(1 + scale) + shift)) on current tokens ---- */

static int64_t out_numel(const hl_dit_config *c, const hl_dit_plan *p) {
    return (int64_t)c->out_channels * p->n_cur * c->patch[0] * c->patch[1] * c->patch[2];
}

static hl_status head_forward(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t, const float *x,
                              float *out) {
    const hl_dit_config *c = &m->cfg;
    const hl_dit_plan *p = &t->p;
    int64_t D = c->dim, F = out_numel(c, p) / p->n_cur;
    for (int b = 0; b < p->B; b++) {
        float *shift = t->head_mod + (int64_t)b * 2 * D, *w = shift + D;
        for (int64_t i = 0; i < D; i++) { /* shift, scale = table + temb (the embedding itself) */
            shift[i] = m->norm_out_table[i] + t->temb[b * D + i];
            w[i] = 1.0f + m->norm_out_table[D + i] + t->temb[b * D + i];
        }
        int64_t r = (int64_t)b * p->n_cur;
        HL_TRY(hl_layernorm(ctx, p->n_cur, D, x + ((int64_t)b * p->S + p->n_hist) * D, D, w, shift,
                            c->eps, t->head_y + r * D, D,
                            &(hl_norm_saved){t->head_mean + r, t->head_rstd + r}));
        HL_TRY(hl_linear(ctx, p->n_cur, t->head_y + r * D, D, &m->proj_out_w, &m->proj_out_b,
                         t->rows, F));
        HL_TRY(hl_unpatchify3d(ctx, c->out_channels, p->T, p->Hp, p->Wp, c->patch[0], c->patch[1],
                               c->patch[2], t->rows, out + b * out_numel(c, p)));
    }
    return HL_OK;
}

/* dx rows of the current tokens = ∂L/∂x (overwritten); ∂L/∂temb into dtemb [B, D]. dmod [2, D]
 * and dy [n_cur, D] scratch. */
static hl_status head_backward(const hl_ctx *ctx, const hl_dit *m, const hl_dit_tape *t,
                               const float *dout, float *dmod, float *dy, float *dtemb, hl_dit *g,
                               float *dx) {
    const hl_dit_config *c = &m->cfg;
    const hl_dit_plan *p = &t->p;
    int64_t D = c->dim, F = out_numel(c, p) / p->n_cur;
    float *dtable = (float *)g->norm_out_table;
    for (int b = 0; b < p->B; b++) {
        int64_t r = (int64_t)b * p->n_cur, xr = (int64_t)b * p->S + p->n_hist;
        const float *shift = t->head_mod + (int64_t)b * 2 * D, *w = shift + D;
        HL_TRY(hl_unpatchify3d_backward(ctx, c->out_channels, p->T, p->Hp, p->Wp, c->patch[0],
                                        c->patch[1], c->patch[2], dout + b * out_numel(c, p),
                                        t->rows));
        HL_TRY(hl_linear_backward(ctx, p->n_cur, t->head_y + r * D, D, &m->proj_out_w, t->rows, F,
                                  dy, D, 0, g->proj_out_w.data, g->proj_out_b.data));
        memset(dmod, 0, (size_t)(2 * D) * sizeof *dmod);
        hl_norm_saved sv = {t->head_mean + r, t->head_rstd + r};
        HL_TRY(hl_layernorm_backward(ctx, p->n_cur, D, t->xs[c->num_layers] + xr * D, D, w, &sv, dy,
                                     D, dx + xr * D, D, dmod + D, dmod));
        for (int64_t i = 0; i < 2 * D; i++) dtable[i] += dmod[i]; /* [shift | scale] */
        for (int64_t i = 0; i < D; i++) dtemb[b * D + i] += dmod[i] + dmod[D + i];
    }
    return HL_OK;
}

/* ---- the whole model --------------------------------------------------------------------------- */

static hl_status tape_alloc(const hl_dit *m, const helios_dit_input *in, int recompute,
                            hl_dit_tape **out, hl_error *err) {
    const hl_dit_config *c = &m->cfg;
    hl_dit_tape *t = calloc(1, sizeof *t);
    if (!t) return hl_fail(err, HELIOS_ERR_OOM, "transformer training: out of memory");
    *out = t;
    t->in = *in;
    t->recompute = recompute;
    HL_TRY(hl_dit_plan_make(c, in, &t->p, err));
    const hl_dit_plan *p = &t->p;
    size_t D = (size_t)c->dim, M = (size_t)p->B * (size_t)p->S, BL = (size_t)p->B * (size_t)p->L;
    size_t nb = recompute ? 1 : (size_t)c->num_layers, F = (size_t)(out_numel(c, p) / p->n_cur);
    size_t rows = p->patch_rows > (size_t)p->n_cur * F ? p->patch_rows : (size_t)p->n_cur * F;
    t->xs = calloc((size_t)c->num_layers + 1, sizeof *t->xs);
    t->bt = calloc(nb ? nb : 1, sizeof *t->bt);
    int ok = t->xs && t->bt;
    for (int i = 0; ok && i <= c->num_layers; i++)
        ok = (t->xs[i] = hl_bufs_alloc(&t->bufs, M * D)) != NULL;
    for (size_t i = 0; ok && i < nb; i++)
        ok = hl_dit_block_tape_alloc(&t->bufs, c, p, &t->bt[i]) == HL_OK;
    float **f[] = {&t->rope, &t->temb,      &t->tproj,     &t->text_pre, &t->text_act, &t->enc,
                   &t->w,    &t->head_mean, &t->head_rstd, &t->head_mod, &t->head_y,   &t->rows};
    size_t n[] = {(size_t)p->S * (size_t)c->head_dim,
                  (size_t)p->B * D,
                  (size_t)p->B * 12 * D,
                  BL * D,
                  BL * D,
                  BL * D,
                  D,
                  (size_t)p->B * (size_t)p->n_cur,
                  (size_t)p->B * (size_t)p->n_cur,
                  (size_t)p->B * 2 * D,
                  (size_t)p->B * (size_t)p->n_cur * D,
                  rows};
    for (size_t i = 0; ok && i < sizeof f / sizeof *f; i++)
        ok = (*f[i] = hl_bufs_alloc(&t->bufs, n[i])) != NULL;
    if (!ok)
        return hl_fail(err, HELIOS_ERR_OOM,
                       "transformer training: cannot allocate %zu MiB of activations",
                       t->bufs.bytes >> 20);
    return HL_OK;
}

/* ---- taps: hidden states of chosen blocks (current tokens only) ------------------------------- */

static hl_status taps_check(const hl_ctx *ctx, const hl_dit *m, const hl_dit_taps *taps) {
    for (int k = 0; taps && k < taps->n; k++)
        if (taps->blocks[k] < 0 || taps->blocks[k] >= m->cfg.num_layers)
            return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                           "transformer taps: block %d outside [0, %d)", taps->blocks[k],
                           m->cfg.num_layers);
    return HL_OK;
}

/* hidden [B, n_cur, D] <- the current rows of x [B, S, D]. */
static void taps_copy(const hl_dit_plan *p, int64_t D, const float *x, float *hidden) {
    for (int b = 0; b < p->B; b++)
        memcpy(hidden + (int64_t)b * p->n_cur * D, x + ((int64_t)b * p->S + p->n_hist) * D,
               (size_t)(p->n_cur * D) * sizeof(float));
}

/* dx [B, S, D] current rows += the taps' gradients of block i. */
static void taps_add(const hl_dit_plan *p, int64_t D, const hl_dit_taps *taps, int i, float *dx) {
    for (int k = 0; taps && taps->dhidden && k < taps->n; k++) {
        const float *dh = taps->dhidden[k];
        if (taps->blocks[k] != i || !dh) continue;
        for (int b = 0; b < p->B; b++) {
            float *d = dx + ((int64_t)b * p->S + p->n_hist) * D;
            const float *s = dh + (int64_t)b * p->n_cur * D;
            for (int64_t j = 0; j < p->n_cur * D; j++) d[j] += s[j];
        }
    }
}

hl_status hl_dit_forward_train(const hl_ctx *ctx, const hl_dit *m, const helios_dit_input *in,
                               int recompute, hl_dit_tape **tape, float *out) {
    return hl_dit_forward_train_taps(ctx, m, in, recompute, NULL, tape, out);
}

hl_status hl_dit_backward(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t, const float *dout,
                          hl_dit *g, const hl_dit_input_grads *gin) {
    return hl_dit_backward_taps(ctx, m, t, dout, NULL, g, gin);
}

hl_status hl_dit_forward_train_taps(const hl_ctx *ctx, const hl_dit *m, const helios_dit_input *in,
                                    int recompute, const hl_dit_taps *taps, hl_dit_tape **tape,
                                    float *out) {
    const hl_dit_config *c = &m->cfg;
    hl_dit_tape *t = NULL;
    *tape = NULL;
    HL_TRY(taps_check(ctx, m, taps));
    hl_status st = tape_alloc(m, in, recompute, &t, ctx->err);
    if (st == HL_OK) st = embed_forward(ctx, m, t, t->xs[0]);
    if (st == HL_OK) {
        hl_dit_build_rope(c, in, &t->p, t->rope);
        st = time_forward(ctx, m, t);
    }
    if (st == HL_OK) st = text_forward(ctx, m, t);
    for (int i = 0; st == HL_OK && i < c->num_layers; i++)
        st = hl_dit_block_forward_train(ctx, c, &m->blocks[i], &t->p, t->tproj, t->rope, t->enc,
                                        t->xs[i], &t->bt[recompute ? 0 : i], t->xs[i + 1], t->w);
    if (st == HL_OK) st = head_forward(ctx, m, t, t->xs[c->num_layers], out);
    for (int k = 0; st == HL_OK && taps && taps->hidden && k < taps->n; k++)
        if (taps->hidden[k]) taps_copy(&t->p, c->dim, t->xs[taps->blocks[k] + 1], taps->hidden[k]);
    if (st != HL_OK) {
        hl_dit_tape_free(t);
        t = NULL;
    }
    *tape = t;
    return st;
}

hl_status hl_dit_backward_taps(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t,
                               const float *dout, const hl_dit_taps *taps, hl_dit *g,
                               const hl_dit_input_grads *gin) {
    const hl_dit_config *c = &m->cfg;
    HL_TRY(taps_check(ctx, m, taps));
    const hl_dit_plan *p = &t->p;
    size_t D = (size_t)c->dim, M = (size_t)p->B * (size_t)p->S, BL = (size_t)p->B * (size_t)p->L;
    hl_bufs scratch = {0};
    hl_dit_block_grad_scratch s;
    float *dx = hl_bufs_alloc(&scratch, M * D),
          *dtproj = hl_bufs_alloc(&scratch, (size_t)p->B * 12 * D);
    float *denc = hl_bufs_alloc(&scratch, BL * D),
          *dtemb = hl_bufs_alloc(&scratch, (size_t)p->B * D);
    float *drows = hl_bufs_alloc(&scratch, p->patch_rows);
    hl_status st = dx && dtproj && denc && dtemb && drows
                       ? hl_dit_block_grad_scratch_alloc(&scratch, c, p, &s)
                       : HELIOS_ERR_OOM;
    if (st != HL_OK) {
        hl_bufs_free(&scratch);
        return hl_fail(ctx->err, st, "transformer backward: out of memory");
    }
    t->bufs.bytes += scratch.bytes; /* reported with the tape */
    if (dout) st = head_backward(ctx, m, t, dout, s.dmods, s.dh, dtemb, g, dx);
    for (int i = c->num_layers - 1; st == HL_OK && i >= 0; i--) {
        hl_dit_block_tape *bt = &t->bt[t->recompute ? 0 : i];
        taps_add(p, c->dim, taps, i, dx);
        if (t->recompute)
            st = hl_dit_block_forward_train(ctx, c, &m->blocks[i], p, t->tproj, t->rope, t->enc,
                                            t->xs[i], bt, t->xs[i + 1], t->w);
        if (st == HL_OK)
            st = hl_dit_block_backward(ctx, c, &m->blocks[i], p, t->rope, t->enc, bt, &s,
                                       &g->blocks[i], dtproj, denc, dx);
    }
    if (st == HL_OK) st = embed_backward(ctx, m, t, dx, drows, g, gin);
    if (st == HL_OK) st = text_backward(ctx, m, t, denc, s.dck, g, gin);
    if (st == HL_OK) st = time_backward(ctx, m, t, dtproj, dtemb, g);
    hl_bufs_free(&scratch);
    return st;
}
