/* The transformer for training: the forward that keeps a tape, and its backward (the model-level
 * steps; one block is src/dit/block_train.c). Each forward step of hl_dit_forward_train is undone
 * in reverse order by hl_dit_backward:
 *   tokens  = patch embeddings of [long | mid | short | current]     <- embed_backward
 *   tproj   = time embedding of t (history: t = 0), temb for the head <- time_backward
 *   enc     = text embedding                                          <- text_backward
 *   x       = blocks(tokens)                                          <- hl_dit_block_backward
 *   out     = unpatchify(proj_out(norm_out(x_current)))               <- head_backward
 * One forward may take several inputs (hl_dit_forward_train_packed): every batch element of every
 * input is one sequence of x (hl_dit_rows), attention stays within a sequence, and each linear
 * layer runs once over the rows of all of them. */
#include <stdlib.h>
#include <string.h>

#include "dit/tape.h"

struct hl_dit_tape {
    hl_bufs bufs;
    int n_in;
    helios_dit_input *in; /* [n_in] copies of the caller's inputs (their arrays are the caller's) */
    hl_dit_plan *p;       /* [n_in] */
    int *seq0;            /* [n_in] the first sequence of each input */
    int64_t *rope0;       /* [n_in] the first row of each input's rotary table */
    hl_dit_seq *seq;      /* [r.n] */
    hl_dit_rows r;
    int64_t n_cur; /* Σ current rows of the sequences */
    int recompute;
    float *rope;                      /* [Σ_inputs S, hd] */
    float *temb, *tproj;              /* [n, D], [n, 2, 6, D] */
    float *text_pre, *text_act, *enc; /* [n·L, D]: linear_1 output, its GELU, linear_2 output */
    float **xs;                       /* [num_layers + 1] block inputs [M, D]; xs[L] = last */
    hl_dit_block_tape *bt;            /* one per block, or one reused (recompute) */
    float *w;                         /* [D] scratch */
    float *head_mean, *head_rstd;     /* [n_cur] norm_out statistics */
    float *head_mod;                  /* [n, 2, D] norm_out shift, 1 + scale */
    float *head_y;                    /* [n_cur, D] norm_out output: input of proj_out */
    float *rows;                      /* patchified segment / proj_out output (the largest) */
    size_t patch_rows;                /* the largest patchified segment of the inputs */
};

size_t hl_dit_tape_bytes(const hl_dit_tape *t) { return t ? t->bufs.bytes : 0; }

void hl_dit_tape_free(hl_dit_tape *t) {
    if (!t) return;
    hl_bufs_free(&t->bufs);
    free(t->in), free(t->p), free(t->seq0), free(t->rope0), free(t->seq);
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
    int64_t D = m->cfg.dim, C = m->cfg.in_channels;
    for (int q = 0; q < t->r.n; q++) {
        const hl_dit_seq *sq = &t->seq[q];
        patch_segment seg[4];
        segments(m, &t->in[sq->in], &t->p[sq->in], seg);
        for (int i = 0; i < 4; i++) {
            const patch_segment *s = &seg[i];
            if (!s->n) continue;
            int kt = (int)s->w->shape[2], kh = (int)s->w->shape[3], kw = (int)s->w->shape[4];
            HL_TRY(hl_patchify3d(ctx, C, s->T, s->H, s->W, kt, kh, kw,
                                 s->lat + sq->b * seg_numel(C, s), t->rows));
            HL_TRY(hl_linear(ctx, s->n, t->rows, C * kt * kh * kw, s->w, s->b,
                             x + (sq->row0 + s->row0) * D, D));
        }
    }
    return HL_OK;
}

static hl_status embed_backward(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t, const float *dx,
                                float *drows, hl_dit *g, const hl_dit_input_grads *gin) {
    int64_t D = m->cfg.dim, C = m->cfg.in_channels;
    for (int q = 0; q < t->r.n; q++) {
        const hl_dit_seq *sq = &t->seq[q];
        patch_segment seg[4];
        segments(m, &t->in[sq->in], &t->p[sq->in], seg);
        for (int i = 0; i < 4; i++) {
            const patch_segment *s = &seg[i];
            if (!s->n) continue;
            int kt = (int)s->w->shape[2], kh = (int)s->w->shape[3], kw = (int)s->w->shape[4];
            int64_t K = C * kt * kh * kw;
            float *dw, *db, *dlat = segment_input_grad(gin ? &gin[sq->in] : NULL, i);
            segment_grads(g, i, &dw, &db);
            HL_TRY(hl_patchify3d(ctx, C, s->T, s->H, s->W, kt, kh, kw,
                                 s->lat + sq->b * seg_numel(C, s), t->rows));
            HL_TRY(hl_linear_backward(ctx, s->n, t->rows, K, s->w, dx + (sq->row0 + s->row0) * D, D,
                                      dlat ? drows : NULL, K, 0, dw, db));
            if (dlat)
                HL_TRY(hl_patchify3d_backward(ctx, C, s->T, s->H, s->W, kt, kh, kw, drows,
                                              dlat + sq->b * seg_numel(C, s)));
        }
    }
    return HL_OK;
}

/* ---- time and text embeddings ------------------------------------------------------------------ */

static int zero_history_t(const hl_dit *m, const hl_dit_tape *t) {
    if (!m->cfg.zero_history_timestep) return 0;
    for (int i = 0; i < t->n_in; i++)
        if (t->p[i].n_hist > 0) return 1;
    return 0;
}

/* temb [n, D] (real t), tproj [n, 2, 6, D]: slot 0 for history tokens, slot 1 for current ones. */
static hl_status time_forward(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t) {
    int64_t D = m->cfg.dim;
    for (int q = 0; q < t->r.n; q++) {
        const hl_dit_seq *sq = &t->seq[q];
        float *slot = t->tproj + (int64_t)q * 12 * D;
        HL_TRY(hl_dit_time_embed(ctx, m, t->in[sq->in].timestep[sq->b], t->temb + q * D,
                                 slot + 6 * D));
        memcpy(slot, slot + 6 * D, (size_t)(6 * D) * sizeof(float));
    }
    if (zero_history_t(m, t)) {
        HL_TRY(hl_dit_time_embed(ctx, m, 0.0, t->w, t->tproj)); /* temb of t = 0 is not used */
        for (int q = 1; q < t->r.n; q++)
            memcpy(t->tproj + (int64_t)q * 12 * D, t->tproj, (size_t)(6 * D) * sizeof(float));
    }
    return HL_OK;
}

static hl_status time_backward(const hl_ctx *ctx, const hl_dit *m, const hl_dit_tape *t,
                               float *dtproj, const float *dtemb, hl_dit *g) {
    int64_t D = m->cfg.dim;
    int zero = zero_history_t(m, t);
    for (int q = 0; q < t->r.n; q++) {
        const hl_dit_seq *sq = &t->seq[q];
        float *slot = dtproj + (int64_t)q * 12 * D;
        if (!zero) /* slot 0 was a copy of slot 1 */
            HL_TRY(hl_add_gated(ctx, 1, 6 * D, slot + 6 * D, 6 * D, slot, 6 * D, NULL));
        else if (q > 0) /* every sequence's slot 0 was sequence 0's t = 0 embedding */
            HL_TRY(hl_add_gated(ctx, 1, 6 * D, dtproj, 6 * D, slot, 6 * D, NULL));
        HL_TRY(hl_dit_time_embed_backward(ctx, m, t->in[sq->in].timestep[sq->b], slot + 6 * D,
                                          dtemb + q * D, g));
    }
    return zero ? hl_dit_time_embed_backward(ctx, m, 0.0, dtproj, NULL, g) : HL_OK;
}

/* enc rows of input i: [B_i·L, D] from its first sequence's first text row. */
static int64_t text_rows(const hl_dit_tape *t, int i, int64_t *first) {
    *first = (int64_t)t->seq0[i] * t->r.L;
    return (int64_t)t->p[i].B * t->r.L;
}

static hl_status text_forward(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t) {
    int64_t D = m->cfg.dim, r0;
    for (int i = 0; i < t->n_in; i++) {
        int64_t M = text_rows(t, i, &r0);
        float *pre = t->text_pre + r0 * D, *act = t->text_act + r0 * D;
        HL_TRY(hl_linear(ctx, M, t->in[i].encoder_hidden_states, m->cfg.text_dim,
                         &m->text_linear_1_w, &m->text_linear_1_b, pre, D));
        HL_TRY(hl_gelu_tanh(ctx, M * D, pre, act));
        HL_TRY(hl_linear(ctx, M, act, D, &m->text_linear_2_w, &m->text_linear_2_b, t->enc + r0 * D,
                         D));
    }
    return HL_OK;
}

/* From denc [n·L, D]; dact [n·L, D] scratch. */
static hl_status text_backward(const hl_ctx *ctx, const hl_dit *m, const hl_dit_tape *t,
                               const float *denc, float *dact, hl_dit *g,
                               const hl_dit_input_grads *gin) {
    int64_t D = m->cfg.dim, r0;
    for (int i = 0; i < t->n_in; i++) {
        int64_t M = text_rows(t, i, &r0);
        float *da = dact + r0 * D;
        HL_TRY(hl_linear_backward(ctx, M, t->text_act + r0 * D, D, &m->text_linear_2_w,
                                  denc + r0 * D, D, da, D, 0, g->text_linear_2_w.data,
                                  g->text_linear_2_b.data));
        HL_TRY(hl_gelu_tanh_backward(ctx, M * D, t->text_pre + r0 * D, da, da));
        HL_TRY(hl_linear_backward(ctx, M, t->in[i].encoder_hidden_states, m->cfg.text_dim,
                                  &m->text_linear_1_w, da, D,
                                  gin ? gin[i].encoder_hidden_states : NULL, m->cfg.text_dim, 0,
                                  g->text_linear_1_w.data, g->text_linear_1_b.data));
    }
    return HL_OK;
}

/* ---- output head: out = unpatchify(proj_out(LN(x)·(1 + scale) + shift)) on current tokens ---- */

static int64_t out_numel(const hl_dit_config *c, const hl_dit_plan *p) {
    return (int64_t)c->out_channels * p->n_cur * c->patch[0] * c->patch[1] * c->patch[2];
}

static int64_t patch_out(const hl_dit_config *c) { /* proj_out features per token */
    return (int64_t)c->out_channels * c->patch[0] * c->patch[1] * c->patch[2];
}

static hl_status head_forward(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t, const float *x,
                              float *const *out) {
    const hl_dit_config *c = &m->cfg;
    int64_t D = c->dim, F = patch_out(c);
    for (int q = 0; q < t->r.n; q++) {
        const hl_dit_seq *sq = &t->seq[q];
        const hl_dit_plan *p = &t->p[sq->in];
        float *shift = t->head_mod + (int64_t)q * 2 * D, *w = shift + D;
        for (int64_t i = 0; i < D; i++) { /* shift, scale = table + temb (the embedding itself) */
            shift[i] = m->norm_out_table[i] + t->temb[q * D + i];
            w[i] = 1.0f + m->norm_out_table[D + i] + t->temb[q * D + i];
        }
        int64_t r = sq->cur0;
        HL_TRY(hl_layernorm(ctx, sq->n_cur, D, x + (sq->row0 + sq->n_hist) * D, D, w, shift, c->eps,
                            t->head_y + r * D, D,
                            &(hl_norm_saved){t->head_mean + r, t->head_rstd + r}));
        HL_TRY(hl_linear(ctx, sq->n_cur, t->head_y + r * D, D, &m->proj_out_w, &m->proj_out_b,
                         t->rows, F));
        HL_TRY(hl_unpatchify3d(ctx, c->out_channels, p->T, p->Hp, p->Wp, c->patch[0], c->patch[1],
                               c->patch[2], t->rows, out[sq->in] + sq->b * out_numel(c, p)));
    }
    return HL_OK;
}

/* dx rows of the current tokens = ∂L/∂x (overwritten); ∂L/∂temb into dtemb [n, D]. dmod [2, D]
 * and dy [max n_cur, D] scratch. */
static hl_status head_backward(const hl_ctx *ctx, const hl_dit *m, const hl_dit_tape *t,
                               const float *const *dout, float *dmod, float *dy, float *dtemb,
                               hl_dit *g, float *dx) {
    const hl_dit_config *c = &m->cfg;
    int64_t D = c->dim, F = patch_out(c);
    float *dtable = (float *)g->norm_out_table;
    for (int q = 0; q < t->r.n; q++) {
        const hl_dit_seq *sq = &t->seq[q];
        const hl_dit_plan *p = &t->p[sq->in];
        int64_t r = sq->cur0, xr = sq->row0 + sq->n_hist;
        const float *shift = t->head_mod + (int64_t)q * 2 * D, *w = shift + D;
        HL_TRY(hl_unpatchify3d_backward(ctx, c->out_channels, p->T, p->Hp, p->Wp, c->patch[0],
                                        c->patch[1], c->patch[2],
                                        dout[sq->in] + sq->b * out_numel(c, p), t->rows));
        HL_TRY(hl_linear_backward(ctx, sq->n_cur, t->head_y + r * D, D, &m->proj_out_w, t->rows, F,
                                  dy, D, 0, g->proj_out_w.data, g->proj_out_b.data));
        memset(dmod, 0, (size_t)(2 * D) * sizeof *dmod);
        hl_norm_saved sv = {t->head_mean + r, t->head_rstd + r};
        HL_TRY(hl_layernorm_backward(ctx, sq->n_cur, D, t->xs[c->num_layers] + xr * D, D, w, &sv,
                                     dy, D, dx + xr * D, D, dmod + D, dmod));
        for (int64_t i = 0; i < 2 * D; i++) dtable[i] += dmod[i]; /* [shift | scale] */
        for (int64_t i = 0; i < D; i++) dtemb[q * D + i] += dmod[i] + dmod[D + i];
    }
    return HL_OK;
}

/* ---- the whole model --------------------------------------------------------------------------- */

/* The plans of the inputs and their sequences, in order. */
static hl_status tape_plan(const hl_dit_config *c, int n, const helios_dit_input *in,
                           hl_dit_tape *t, hl_error *err) {
    t->n_in = n;
    t->in = malloc((size_t)n * sizeof *t->in);
    t->p = calloc((size_t)n, sizeof *t->p);
    t->seq0 = calloc((size_t)n, sizeof *t->seq0);
    t->rope0 = calloc((size_t)n, sizeof *t->rope0);
    if (!t->in || !t->p || !t->seq0 || !t->rope0)
        return hl_fail(err, HELIOS_ERR_OOM, "transformer training: out of memory");
    int nseq = 0;
    for (int i = 0; i < n; i++) {
        t->in[i] = in[i];
        HL_TRY(hl_dit_plan_make(c, &in[i], &t->p[i], err));
        if (t->p[i].L != t->p[0].L)
            return hl_fail(err, HELIOS_ERR_SHAPE,
                           "transformer training: packed input %d has %lld text tokens, input 0 "
                           "%lld",
                           i, (long long)t->p[i].L, (long long)t->p[0].L);
        t->seq0[i] = nseq;
        nseq += t->p[i].B;
    }
    t->seq = calloc((size_t)nseq, sizeof *t->seq);
    if (!t->seq) return hl_fail(err, HELIOS_ERR_OOM, "transformer training: out of memory");
    int64_t row = 0, rope = 0, cur = 0;
    for (int i = 0; i < n; i++) {
        const hl_dit_plan *p = &t->p[i];
        t->rope0[i] = rope;
        for (int b = 0; b < p->B; b++) {
            hl_dit_seq *sq = &t->seq[t->seq0[i] + b];
            *sq = (hl_dit_seq){row, p->n_hist, p->n_cur, rope, cur, i, b};
            row += p->S, cur += p->n_cur;
        }
        rope += p->S;
        if (p->patch_rows > t->patch_rows) t->patch_rows = p->patch_rows;
    }
    t->r = (hl_dit_rows){nseq, row, t->p[0].L, t->seq};
    t->n_cur = cur;
    return HL_OK;
}

static hl_status tape_alloc(const hl_dit *m, int n_in, const helios_dit_input *in, int recompute,
                            hl_dit_tape **out, hl_error *err) {
    const hl_dit_config *c = &m->cfg;
    hl_dit_tape *t = calloc(1, sizeof *t);
    if (!t) return hl_fail(err, HELIOS_ERR_OOM, "transformer training: out of memory");
    *out = t;
    t->recompute = recompute;
    if (n_in < 1)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "transformer training: %d inputs", n_in);
    HL_TRY(tape_plan(c, n_in, in, t, err));
    const hl_dit_rows *r = &t->r;
    size_t D = (size_t)c->dim, M = (size_t)r->M, nL = (size_t)r->n * (size_t)r->L;
    size_t nb = recompute ? 1 : (size_t)c->num_layers, ns = (size_t)r->n;
    size_t rows = t->patch_rows, rope = 0;
    for (int i = 0; i < n_in; i++) {
        size_t head = (size_t)t->p[i].n_cur * (size_t)patch_out(c);
        if (head > rows) rows = head;
        rope += (size_t)t->p[i].S;
    }
    t->xs = calloc((size_t)c->num_layers + 1, sizeof *t->xs);
    t->bt = calloc(nb ? nb : 1, sizeof *t->bt);
    int ok = t->xs && t->bt;
    for (int i = 0; ok && i <= c->num_layers; i++)
        ok = (t->xs[i] = hl_bufs_alloc(&t->bufs, M * D)) != NULL;
    for (size_t i = 0; ok && i < nb; i++)
        ok = hl_dit_block_tape_alloc(&t->bufs, c, r, &t->bt[i]) == HL_OK;
    float **f[] = {&t->rope, &t->temb,      &t->tproj,     &t->text_pre, &t->text_act, &t->enc,
                   &t->w,    &t->head_mean, &t->head_rstd, &t->head_mod, &t->head_y,   &t->rows};
    size_t nf[] = {rope * (size_t)c->head_dim,
                   ns * D,
                   ns * 12 * D,
                   nL * D,
                   nL * D,
                   nL * D,
                   D,
                   (size_t)t->n_cur,
                   (size_t)t->n_cur,
                   ns * 2 * D,
                   (size_t)t->n_cur * D,
                   rows};
    for (size_t i = 0; ok && i < sizeof f / sizeof *f; i++)
        ok = (*f[i] = hl_bufs_alloc(&t->bufs, nf[i])) != NULL;
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

/* hidden [Σ n_cur, D] <- the current rows of each sequence of x [M, D]. */
static void taps_copy(const hl_dit_rows *r, int64_t D, const float *x, float *hidden) {
    for (int q = 0; q < r->n; q++) {
        const hl_dit_seq *sq = &r->seq[q];
        memcpy(hidden + sq->cur0 * D, x + (sq->row0 + sq->n_hist) * D,
               (size_t)(sq->n_cur * D) * sizeof(float));
    }
}

/* dx [M, D] current rows += the taps' gradients of block i. */
static void taps_add(const hl_dit_rows *r, int64_t D, const hl_dit_taps *taps, int i, float *dx) {
    for (int k = 0; taps && taps->dhidden && k < taps->n; k++) {
        const float *dh = taps->dhidden[k];
        if (taps->blocks[k] != i || !dh) continue;
        for (int q = 0; q < r->n; q++) {
            const hl_dit_seq *sq = &r->seq[q];
            float *d = dx + (sq->row0 + sq->n_hist) * D;
            const float *s = dh + sq->cur0 * D;
            for (int64_t j = 0; j < sq->n_cur * D; j++) d[j] += s[j];
        }
    }
}

hl_status hl_dit_forward_train(const hl_ctx *ctx, const hl_dit *m, const helios_dit_input *in,
                               int recompute, hl_dit_tape **tape, float *out) {
    return hl_dit_forward_train_packed(ctx, m, 1, in, recompute, NULL, tape, &out);
}

hl_status hl_dit_backward(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t, const float *dout,
                          hl_dit *g, const hl_dit_input_grads *gin) {
    return hl_dit_backward_packed(ctx, m, t, dout ? &dout : NULL, NULL, g, gin);
}

hl_status hl_dit_forward_train_taps(const hl_ctx *ctx, const hl_dit *m, const helios_dit_input *in,
                                    int recompute, const hl_dit_taps *taps, hl_dit_tape **tape,
                                    float *out) {
    return hl_dit_forward_train_packed(ctx, m, 1, in, recompute, taps, tape, &out);
}

hl_status hl_dit_backward_taps(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t,
                               const float *dout, const hl_dit_taps *taps, hl_dit *g,
                               const hl_dit_input_grads *gin) {
    return hl_dit_backward_packed(ctx, m, t, dout ? &dout : NULL, taps, g, gin);
}

hl_status hl_dit_forward_train_packed(const hl_ctx *ctx, const hl_dit *m, int n,
                                      const helios_dit_input *in, int recompute,
                                      const hl_dit_taps *taps, hl_dit_tape **tape,
                                      float *const *out) {
    const hl_dit_config *c = &m->cfg;
    hl_dit_tape *t = NULL;
    *tape = NULL;
    HL_TRY(taps_check(ctx, m, taps));
    hl_status st = tape_alloc(m, n, in, recompute, &t, ctx->err);
    if (st == HL_OK) st = embed_forward(ctx, m, t, t->xs[0]);
    for (int i = 0; st == HL_OK && i < n; i++)
        hl_dit_build_rope(c, &t->in[i], &t->p[i], t->rope + t->rope0[i] * c->head_dim);
    if (st == HL_OK) st = time_forward(ctx, m, t);
    if (st == HL_OK) st = text_forward(ctx, m, t);
    for (int i = 0; st == HL_OK && i < c->num_layers; i++)
        st = hl_dit_block_forward_train(ctx, c, &m->blocks[i], &t->r, t->tproj, t->rope, t->enc,
                                        t->xs[i], &t->bt[recompute ? 0 : i], t->xs[i + 1], t->w);
    if (st == HL_OK) st = head_forward(ctx, m, t, t->xs[c->num_layers], out);
    for (int k = 0; st == HL_OK && taps && taps->hidden && k < taps->n; k++)
        if (taps->hidden[k]) taps_copy(&t->r, c->dim, t->xs[taps->blocks[k] + 1], taps->hidden[k]);
    if (st != HL_OK) {
        hl_dit_tape_free(t);
        t = NULL;
    }
    *tape = t;
    return st;
}

hl_status hl_dit_backward_packed(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *t,
                                 const float *const *dout, const hl_dit_taps *taps, hl_dit *g,
                                 const hl_dit_input_grads *gin) {
    const hl_dit_config *c = &m->cfg;
    HL_TRY(taps_check(ctx, m, taps));
    const hl_dit_rows *r = &t->r;
    size_t D = (size_t)c->dim, M = (size_t)r->M, ns = (size_t)r->n, nL = ns * (size_t)r->L;
    hl_bufs scratch = {0};
    hl_dit_block_grad_scratch s;
    float *dx = hl_bufs_alloc(&scratch, M * D), *dtproj = hl_bufs_alloc(&scratch, ns * 12 * D);
    float *denc = hl_bufs_alloc(&scratch, nL * D), *dtemb = hl_bufs_alloc(&scratch, ns * D);
    float *drows = hl_bufs_alloc(&scratch, t->patch_rows);
    hl_status st = dx && dtproj && denc && dtemb && drows
                       ? hl_dit_block_grad_scratch_alloc(&scratch, c, r, &s)
                       : HELIOS_ERR_OOM;
    if (st != HL_OK) {
        hl_bufs_free(&scratch);
        return hl_fail(ctx->err, st, "transformer backward: out of memory");
    }
    t->bufs.bytes += scratch.bytes; /* reported with the tape */
    if (dout) st = head_backward(ctx, m, t, dout, s.dmods, s.dh, dtemb, g, dx);
    for (int i = c->num_layers - 1; st == HL_OK && i >= 0; i--) {
        hl_dit_block_tape *bt = &t->bt[t->recompute ? 0 : i];
        taps_add(r, c->dim, taps, i, dx);
        if (t->recompute)
            st = hl_dit_block_forward_train(ctx, c, &m->blocks[i], r, t->tproj, t->rope, t->enc,
                                            t->xs[i], bt, t->xs[i + 1], t->w);
        if (st == HL_OK)
            st = hl_dit_block_backward(ctx, c, &m->blocks[i], r, t->rope, t->enc, bt, &s,
                                       &g->blocks[i], dtproj, denc, dx);
    }
    if (st == HL_OK) st = embed_backward(ctx, m, t, dx, drows, g, gin);
    if (st == HL_OK) st = text_backward(ctx, m, t, denc, s.dck, g, gin);
    if (st == HL_OK) st = time_backward(ctx, m, t, dtproj, dtemb, g);
    hl_bufs_free(&scratch);
    return st;
}
