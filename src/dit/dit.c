/* The full transformer forward (spec §1.3): embed the four token segments, build the rotary
 * table, embed time and text, run the blocks, and project the current tokens back to latents. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "dit/tape.h"

typedef hl_dit_plan dit_plan;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

hl_status hl_dit_plan_make(const hl_dit_config *c, const helios_dit_input *in, hl_dit_plan *p,
                           hl_error *err) {
    memset(p, 0, sizeof *p);
    if (in->batch < 1 || in->frames < 1 || in->height < 1 || in->width < 1 || in->text_len < 1)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "transformer: empty input (batch %d, %dx%dx%d, text %d)", in->batch,
                       in->frames, in->height, in->width, in->text_len);
    if (!in->hidden_states || !in->timestep || !in->encoder_hidden_states)
        return hl_fail(
            err, HELIOS_ERR_INVALID_ARG,
            "transformer: hidden_states, timestep and encoder_hidden_states are required");
    if (in->frames % c->patch[0] || in->height % c->patch[1] || in->width % c->patch[2])
        return hl_fail(err, HELIOS_ERR_SHAPE,
                       "transformer: latent %dx%dx%d is not divisible by the patch (%d, %d, %d)",
                       in->frames, in->height, in->width, c->patch[0], c->patch[1], c->patch[2]);
    p->B = in->batch;
    p->T = in->frames / c->patch[0];
    p->Hp = in->height / c->patch[1];
    p->Wp = in->width / c->patch[2];
    p->n_cur = p->T * p->Hp * p->Wp;
    p->L = in->text_len;
    int64_t K = (int64_t)c->in_channels;
    p->patch_rows = (size_t)(p->n_cur * K * c->patch[0] * c->patch[1] * c->patch[2]);

    int has_s = in->short_frames > 0, has_m = in->mid_frames > 0, has_l = in->long_frames > 0;
    if ((has_s && (!in->latents_history_short || !in->indices_latents_history_short)) ||
        (has_m && (!in->latents_history_mid || !in->indices_latents_history_mid)) ||
        (has_l && (!in->latents_history_long || !in->indices_latents_history_long)))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "transformer: a history part has frames but no latents or indices");
    if (!(has_s || has_m || has_l)) {
        p->S = p->n_cur;
        return HL_OK;
    }
    if (!c->has_multi_term_memory_patch)
        return hl_fail(
            err, HELIOS_ERR_INVALID_ARG,
            "transformer: history given, but the model has no multi-term memory patches");
    /* mid and long rotary tables are pooled from the short grid, as in the reference */
    if (!has_s)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "transformer: mid/long history needs the short history (its grid)");
    int64_t Hh = in->hist_height, Wh = in->hist_width;
    if (Hh < 2 || Wh < 2 || Hh % 2 || Wh % 2)
        return hl_fail(err, HELIOS_ERR_SHAPE,
                       "transformer: history latents %lldx%lld must be even-sized", (long long)Hh,
                       (long long)Wh);
    p->H1 = Hh / 2;
    p->W1 = Wh / 2;
    p->n_short = in->short_frames * p->H1 * p->W1;
    p->n_mid = has_m ? ceil_div(in->mid_frames, 2) * ceil_div(Hh, 4) * ceil_div(Wh, 4) : 0;
    p->n_long = has_l ? ceil_div(in->long_frames, 4) * ceil_div(Hh, 8) * ceil_div(Wh, 8) : 0;
    p->n_hist = p->n_long + p->n_mid + p->n_short;
    size_t seg[3] = {(size_t)(p->n_short * K * 4), (size_t)(p->n_mid * K * 32),
                     (size_t)(p->n_long * K * 256)};
    for (int i = 0; i < 3; i++)
        if (seg[i] > p->patch_rows) p->patch_rows = seg[i];
    p->S = p->n_hist + p->n_cur;
    return HL_OK;
}

/* Conv3d with stride = kernel of one batch element's latents (C, T, H, W) into D-wide token rows. */
static hl_status embed_segment(const hl_ctx *ctx, const hl_tensor *w, const hl_tensor *b, int64_t C,
                               int64_t T, int64_t H, int64_t W, const float *lat, float *rows,
                               float *x, int64_t D) {
    int kt = (int)w->shape[2], kh = (int)w->shape[3], kw = (int)w->shape[4];
    HL_TRY(hl_patchify3d(ctx, C, T, H, W, kt, kh, kw, lat, rows));
    int64_t n = ceil_div(T, kt) * ceil_div(H, kh) * ceil_div(W, kw);
    return hl_linear(ctx, n, rows, C * kt * kh * kw, w, b, x, D);
}

/* x [B, S, D] <- [long | mid | short | current] tokens. */
static hl_status embed_tokens(const hl_ctx *ctx, const hl_dit *m, const helios_dit_input *in,
                              const dit_plan *p, const hl_probe *probe, float *rows, float *x) {
    const hl_dit_config *c = &m->cfg;
    int64_t D = c->dim, C = c->in_channels, Hh = in->hist_height, Wh = in->hist_width;
    for (int b = 0; b < p->B; b++) {
        float *xb = x + (size_t)b * p->S * D;
        if (p->n_long)
            HL_TRY(embed_segment(
                ctx, &m->patch_long_w, &m->patch_long_b, C, in->long_frames, Hh, Wh,
                in->latents_history_long + (size_t)b * C * in->long_frames * Hh * Wh, rows, xb, D));
        if (p->n_mid)
            HL_TRY(embed_segment(ctx, &m->patch_mid_w, &m->patch_mid_b, C, in->mid_frames, Hh, Wh,
                                 in->latents_history_mid + (size_t)b * C * in->mid_frames * Hh * Wh,
                                 rows, xb + p->n_long * D, D));
        if (p->n_short)
            HL_TRY(embed_segment(
                ctx, &m->patch_short_w, &m->patch_short_b, C, in->short_frames, Hh, Wh,
                in->latents_history_short + (size_t)b * C * in->short_frames * Hh * Wh, rows,
                xb + (p->n_long + p->n_mid) * D, D));
        size_t cur = (size_t)b * C * in->frames * in->height * in->width;
        HL_TRY(embed_segment(ctx, &m->patch_embedding_w, &m->patch_embedding_b, C, in->frames,
                             in->height, in->width, in->hidden_states + cur, rows,
                             xb + p->n_hist * D, D));
        hl_probe_emit(probe, xb, p->n_long, D, "patch_long.out0");
        hl_probe_emit(probe, xb + p->n_long * D, p->n_mid, D, "patch_mid.out0");
        hl_probe_emit(probe, xb + (p->n_long + p->n_mid) * D, p->n_short, D, "patch_short.out0");
        hl_probe_emit(probe, xb + p->n_hist * D, p->n_cur, D, "patch_embedding.out0");
    }
    return HL_OK;
}

/* rope [S, head_dim] in token order; mid/long pooled from the short grid (H1, W1). */
void hl_dit_build_rope(const hl_dit_config *c, const helios_dit_input *in, const hl_dit_plan *p,
                       float *rope) {
    int64_t hd = c->head_dim;
    if (p->n_long)
        hl_dit_rope_pooled(c, in->long_frames, in->indices_latents_history_long, p->H1, p->W1, 4,
                           rope);
    if (p->n_mid)
        hl_dit_rope_pooled(c, in->mid_frames, in->indices_latents_history_mid, p->H1, p->W1, 2,
                           rope + p->n_long * hd);
    if (p->n_short)
        hl_dit_rope_grid(c, in->short_frames, in->indices_latents_history_short, p->H1, p->W1,
                         rope + (p->n_long + p->n_mid) * hd);
    hl_dit_rope_grid(c, p->T, in->indices_hidden_states, p->Hp, p->Wp, rope + p->n_hist * hd);
}

/* temb [B, D] (real t) and tproj [B, 2, 6, D]: slot 0 for history tokens (t = 0 with
 * zero_history_timestep), slot 1 for current tokens. */
static hl_status embed_time(const hl_ctx *ctx, const hl_dit *m, const helios_dit_input *in,
                            const dit_plan *p, float *temb, float *tproj, float *scratch) {
    int64_t D = m->cfg.dim;
    for (int b = 0; b < p->B; b++) {
        float *slot = tproj + (size_t)b * 12 * D;
        HL_TRY(hl_dit_time_embed(ctx, m, in->timestep[b], temb + b * D, slot + 6 * D));
        memcpy(slot, slot + 6 * D, 6 * D * sizeof(float));
    }
    if (p->n_hist && m->cfg.zero_history_timestep) {
        HL_TRY(hl_dit_time_embed(ctx, m, 0.0, scratch, tproj)); /* batch 0, slot 0 */
        for (int b = 1; b < p->B; b++)
            memcpy(tproj + (size_t)b * 12 * D, tproj, 6 * D * sizeof(float));
    }
    return HL_OK;
}

/* enc [B*L, D] = linear_2(gelu_tanh(linear_1(text))). */
static hl_status embed_text(const hl_ctx *ctx, const hl_dit *m, const helios_dit_input *in,
                            const dit_plan *p, float *tmp, float *enc) {
    int64_t D = m->cfg.dim, M = (int64_t)p->B * p->L;
    HL_TRY(hl_linear(ctx, M, in->encoder_hidden_states, m->cfg.text_dim, &m->text_linear_1_w,
                     &m->text_linear_1_b, tmp, D));
    HL_TRY(hl_gelu_tanh(ctx, M * D, tmp, tmp));
    return hl_linear(ctx, M, tmp, D, &m->text_linear_2_w, &m->text_linear_2_b, enc, D);
}

/* Output head on the current tokens of each batch element, then unpatchify into out. */
static hl_status output_head(const hl_ctx *ctx, const hl_dit *m, const dit_plan *p, const float *x,
                             const float *temb, float *y, float *proj, float *mod,
                             const hl_probe *probe, float *out) {
    const hl_dit_config *c = &m->cfg;
    int64_t D = c->dim, P = (int64_t)c->patch[0] * c->patch[1] * c->patch[2];
    int64_t Co = c->out_channels, F = Co * P;
    for (int b = 0; b < p->B; b++) {
        for (int64_t i = 0; i < D; i++) { /* shift, scale = table + temb (the embedding itself) */
            mod[i] = m->norm_out_table[i] + temb[b * D + i];
            mod[D + i] = m->norm_out_table[D + i] + temb[b * D + i];
        }
        const float *xc = x + ((size_t)b * p->S + p->n_hist) * D;
        HL_TRY(hl_layernorm_modulate(ctx, p->n_cur, D, xc, D, mod + D, mod, c->eps, y, D));
        HL_TRY(hl_linear(ctx, p->n_cur, y, D, &m->proj_out_w, &m->proj_out_b, proj, F));
        hl_probe_emit(probe, y, p->n_cur, D, "norm_out.out0");
        hl_probe_emit(probe, proj, p->n_cur, F, "proj_out.out0");
        HL_TRY(hl_unpatchify3d(
            ctx, Co, p->T, p->Hp, p->Wp, c->patch[0], c->patch[1], c->patch[2], proj,
            out + (size_t)b * Co * p->T * c->patch[0] * p->Hp * c->patch[1] * p->Wp * c->patch[2]));
    }
    return HL_OK;
}

static size_t forward_bytes(const hl_dit_config *c, const dit_plan *p) {
    size_t D = (size_t)c->dim, B = (size_t)p->B, S = (size_t)p->S, L = (size_t)p->L,
           f = sizeof(float);
    size_t rows = B * S, ffn_rows = rows < 4096 ? rows : 4096;
    size_t P = (size_t)c->patch[0] * c->patch[1] * c->patch[2];
    size_t n = rows * D                                         /* x */
               + S * (size_t)c->head_dim                        /* rope */
               + B * D + B * 12 * D + D                         /* temb, tproj, t0 temb */
               + 2 * B * L * D                                  /* enc, text hidden */
               + p->patch_rows                                  /* patchified segment */
               + (size_t)p->n_cur * (size_t)c->out_channels * P /* proj_out */
               + 5 * rows * D + ffn_rows * (size_t)c->ffn_dim + 2 * B * L * D +
               12 * B * D;  /* scratch */
    return n * f + 64 * 32; /* alignment slack */
}

hl_status hl_dit_forward(const hl_ctx *ctx, const hl_dit *m, const helios_dit_input *in,
                         const hl_probe *probe, float *out) {
    const hl_dit_config *c = &m->cfg;
    dit_plan p;
    HL_TRY(hl_dit_plan_make(c, in, &p, ctx->err));
    int64_t D = c->dim;
    hl_arena a;
    size_t bytes = forward_bytes(c, &p);
    if (hl_arena_init(&a, bytes) != 0)
        return hl_fail(ctx->err, HELIOS_ERR_OOM,
                       "transformer: cannot allocate %zu MiB of activations", bytes >> 20);
    float *x = hl_arena_alloc(&a, (size_t)p.B * p.S * D * sizeof(float));        /* [B, S, D] */
    float *rope = hl_arena_alloc(&a, (size_t)p.S * c->head_dim * sizeof(float)); /* [S, hd] */
    float *temb = hl_arena_alloc(&a, (size_t)p.B * D * sizeof(float));           /* [B, D] */
    float *tproj = hl_arena_alloc(&a, (size_t)p.B * 12 * D * sizeof(float));     /* [B, 2, 6, D] */
    float *t0 = hl_arena_alloc(&a, (size_t)D * sizeof(float));
    float *enc = hl_arena_alloc(&a, (size_t)p.B * p.L * D * sizeof(float)); /* [B, L, D] */
    float *tmp = hl_arena_alloc(&a, (size_t)p.B * p.L * D * sizeof(float));
    float *rows = hl_arena_alloc(&a, p.patch_rows * sizeof(float));
    float *proj = hl_arena_alloc(&a, (size_t)p.n_cur * c->out_channels * c->patch[0] * c->patch[1] *
                                         c->patch[2] * sizeof(float));
    hl_dit_scratch s;
    hl_status st = hl_dit_scratch_alloc(&a, c, p.B, p.S, p.L, &s);
    if (st != HL_OK || !x || !rope || !temb || !tproj || !t0 || !enc || !tmp || !rows || !proj) {
        hl_arena_free(&a);
        return hl_fail(ctx->err, HELIOS_ERR_INTERNAL, "transformer: activation arena too small");
    }
    s.probe = probe;
    st = embed_tokens(ctx, m, in, &p, probe, rows, x);
    if (st == HL_OK) {
        hl_dit_build_rope(c, in, &p, rope);
        st = embed_time(ctx, m, in, &p, temb, tproj, t0);
    }
    if (st == HL_OK) st = embed_text(ctx, m, in, &p, tmp, enc);
    if (st == HL_OK && probe) {
        hl_probe_emit(probe, x, (int64_t)p.B * p.S, D, "blocks.0.in0");
        hl_probe_emit(probe, rope, p.S, c->head_dim, "rope");
        hl_probe_emit(probe, temb, p.B, D, "condition_embedder.call1.out0");
        hl_probe_emit(probe, tproj + 6 * D, 1, 6 * D, "condition_embedder.call1.out1");
        if (p.n_hist && c->zero_history_timestep)
            hl_probe_emit(probe, tproj, 1, 6 * D, "condition_embedder.call0.out1");
        hl_probe_emit(probe, enc, (int64_t)p.B * p.L, D, "condition_embedder.call1.out2");
    }
    for (int i = 0; st == HL_OK && i < c->num_layers; i++) {
        s.layer = i;
        st = hl_dit_block_forward(ctx, c, &m->blocks[i], p.B, p.n_hist, p.n_cur, tproj, rope, p.L,
                                  enc, &s, x);
    }
    if (st == HL_OK) st = output_head(ctx, m, &p, x, temb, s.h, proj, s.mod, probe, out);
    hl_arena_free(&a);
    return st;
}
