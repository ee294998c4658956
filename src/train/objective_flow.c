#include "train/objective_flow.h"

#include "dit/tape.h"

#include <stdlib.h>
#include <string.h>

#include "train/dit_flat.h"
#include "train/loss.h"

hl_status hl_flow_objective_init(hl_flow_objective *o, const hl_ctx *ctx, const hl_dit_config *cfg,
                                 const hl_params *layout, int stage, const hl_stage2_config *s,
                                 hl_latent_source src, int recompute, hl_error *err) {
    memset(o, 0, sizeof *o);
    o->ctx = ctx;
    o->cfg = *cfg;
    o->layout = layout;
    o->stage = stage;
    o->s = *s;
    o->src = src;
    o->recompute = recompute;
    o->pack_levels = 1;
    o->pack_batch = 1;
    if (stage != 1 && stage != 2)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "flow objective: stage %d (1 or 2)", stage);
    HL_TRY(stage == 1 ? hl_stage1_config_check(&s->base, err) : hl_stage2_config_check(s, err));
    if (s->base.zero_history_timestep != cfg->zero_history_timestep)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "stage %d: zero_history_timestep is %s in the objective but %s in the "
                       "transformer's config",
                       stage, s->base.zero_history_timestep ? "true" : "false",
                       cfg->zero_history_timestep ? "true" : "false");
    if (src.count < 1 || !src.get)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage %d: the data source has no clips",
                       stage);
    return HL_OK;
}

void hl_flow_objective_free(hl_flow_objective *o) {
    hl_dit_free(o->m);
    hl_dit_free(o->g);
    free(o->text);
    free(o->shadow);
    memset(o, 0, sizeof *o);
}

/* The model and gradient view over the loop's buffers (rebound when they move). */
static hl_status bind(hl_flow_objective *o, const float *params, float *grads, hl_error *err) {
    if (o->bf16) { /* the weights changed since the last step: round them again */
        if (!o->shadow && !(o->shadow = malloc((size_t)o->layout->total * sizeof *o->shadow)))
            return hl_fail(err, HELIOS_ERR_OOM, "flow objective: out of memory (bf16 weights)");
        hl_params_to_bf16(o->layout, params, o->shadow);
    }
    if (o->m && o->m_data == params && o->g_data == grads) return HL_OK;
    hl_dit_free(o->m);
    hl_dit_free(o->g);
    o->m = o->g = NULL;
    if (o->bf16)
        HL_TRY(hl_dit_new_flat_bf16(&o->cfg, o->layout, (float *)params, o->shadow, &o->m, err));
    else HL_TRY(hl_dit_new_flat(&o->cfg, o->layout, (float *)params, &o->m, err));
    HL_TRY(hl_dit_new_flat(&o->cfg, o->layout, grads, &o->g, err));
    o->m_data = params;
    o->g_data = grads;
    return HL_OK;
}

/* The prompt the forward sees: the clip's, or zeros when the caption is dropped. */
static const float *prompt(hl_flow_objective *o, const hl_latent_clip *clip, bool drop,
                           hl_error *err) {
    if (!drop) return clip->embeds;
    size_t n = (size_t)clip->L * (size_t)o->cfg.text_dim;
    if (o->text_n < n) {
        free(o->text);
        o->text_n = 0;
        if (!(o->text = calloc(n, sizeof *o->text))) {
            hl_fail(err, HELIOS_ERR_OOM, "flow objective: out of memory");
            return NULL;
        }
        o->text_n = n;
    }
    return o->text;
}

/* One forward + backward of input in against target (n values); the loss term weighted by
 * 1 / K (K samples of one clip) is added to *loss. */
static hl_status forward_backward(hl_flow_objective *o, const hl_ctx *ctx,
                                  const helios_dit_input *in, const float *target, int64_t n, int K,
                                  double *loss) {
    float *pred = malloc((size_t)n * sizeof *pred), *dpred = malloc((size_t)n * sizeof *dpred);
    hl_status st = pred && dpred ? HL_OK : hl_fail(ctx->err, HELIOS_ERR_OOM, "out of memory");
    hl_dit_tape *tape = NULL;
    if (st == HL_OK) st = hl_dit_forward_train(ctx, o->m, in, o->recompute, &tape, pred);
    hl_dit_plan plan;
    if (st == HL_OK && hl_dit_plan_make(&o->cfg, in, &plan, ctx->err) == HL_OK)
        o->tokens += (int64_t)plan.B * plan.S; /* history + current patch tokens */
    if (st == HL_OK) {
        /* mean((pred - target)²) / K and its gradient: hl_flow_loss of one row, scaled */
        *loss += hl_flow_loss(pred, target, NULL, 1, n, dpred) / K;
        for (int64_t i = 0; K > 1 && i < n; i++) dpred[i] /= (float)K;
        st = hl_dit_backward(ctx, o->m, tape, dpred, o->g, NULL);
    }
    size_t bytes = hl_dit_tape_bytes(tape);
    if (bytes > o->peak_tape_bytes) o->peak_tape_bytes = bytes;
    hl_dit_tape_free(tape);
    free(pred);
    free(dpred);
    return st;
}

/* K forward inputs packed into one forward and one backward (dit.h,
 * hl_dit_forward_train_packed): the loss and gradient of forward_backward on each in turn, one
 * pass over every linear layer instead of K. Item k's loss term, weighted by 1 / per[k] (the
 * forwards of its sample), is added to loss[owner[k]] (owner NULL: all to loss[0]). */
static hl_status forward_backward_packed(hl_flow_objective *o, const hl_ctx *ctx, int K,
                                         const helios_dit_input *in, const float *const *target,
                                         const int64_t *n, const int *per, const int *owner,
                                         double *loss) {
    float *pred[HL_FLOW_PACK_MAX] = {0}, *dpred[HL_FLOW_PACK_MAX] = {0};
    hl_status st = HL_OK;
    for (int k = 0; k < K && st == HL_OK; k++) {
        pred[k] = malloc((size_t)n[k] * sizeof(float));
        dpred[k] = malloc((size_t)n[k] * sizeof(float));
        if (!pred[k] || !dpred[k]) st = hl_fail(ctx->err, HELIOS_ERR_OOM, "out of memory");
    }
    hl_dit_tape *tape = NULL;
    if (st == HL_OK)
        st = hl_dit_forward_train_packed(ctx, o->m, K, in, o->recompute, NULL, &tape, pred);
    for (int k = 0; st == HL_OK && k < K; k++) {
        hl_dit_plan plan;
        if (hl_dit_plan_make(&o->cfg, &in[k], &plan, ctx->err) == HL_OK)
            o->tokens += (int64_t)plan.B * plan.S; /* history + current patch tokens */
        /* as forward_backward: mean((pred - target)²) / per and its gradient */
        loss[owner ? owner[k] : 0] += hl_flow_loss(pred[k], target[k], NULL, 1, n[k], dpred[k]) /
                                      per[k];
        for (int64_t i = 0; per[k] > 1 && i < n[k]; i++) dpred[k][i] /= (float)per[k];
    }
    if (st == HL_OK)
        st = hl_dit_backward_packed(ctx, o->m, tape, (const float *const *)dpred, NULL, o->g, NULL);
    size_t bytes = hl_dit_tape_bytes(tape);
    if (bytes > o->peak_tape_bytes) o->peak_tape_bytes = bytes;
    hl_dit_tape_free(tape);
    for (int k = 0; k < K; k++) free(pred[k]), free(dpred[k]);
    return st;
}

static hl_status step_stage1(hl_flow_objective *o, const hl_ctx *ctx, const hl_latent_clip *clip,
                             hl_rng *rng, double *loss) {
    hl_stage1_sample s;
    HL_TRY(hl_stage1_sample_make(&o->s.base, clip->latents, clip->C, clip->F, clip->H, clip->W, rng,
                                 &s, ctx->err));
    const float *text = prompt(o, clip, s.drop_text, ctx->err);
    double timestep = 0.0;
    helios_dit_input in;
    hl_status st = text ? HL_OK : HELIOS_ERR_OOM;
    if (st == HL_OK) {
        hl_stage1_dit_input(&s, text, clip->L, &timestep, &in);
        st = forward_backward(o, ctx, &in, s.target, (int64_t)s.C * s.F * s.H * s.W, 1, loss);
    }
    o->last_task = s.task;
    o->last_timestep = timestep;
    hl_stage1_sample_free(&s);
    return st;
}

static hl_status step_stage2(hl_flow_objective *o, const hl_ctx *ctx, const hl_latent_clip *clip,
                             hl_rng *rng, double *loss) {
    hl_stage2_sample s;
    HL_TRY(hl_stage2_sample_make(&o->s, clip->latents, clip->C, clip->F, clip->H, clip->W, rng, &s,
                                 ctx->err));
    const float *text = prompt(o, clip, s.base.drop_text, ctx->err);
    hl_status st = text ? HL_OK : HELIOS_ERR_OOM;
    helios_dit_input in[HL_STAGE2_MAX_SAMPLES];
    const float *target[HL_STAGE2_MAX_SAMPLES];
    int64_t n[HL_STAGE2_MAX_SAMPLES];
    for (int k = 0; k < s.K; k++) {
        const hl_stage2_item *it = &s.items[k];
        hl_stage2_dit_input(&s, k, text, clip->L, &in[k]);
        target[k] = it->target;
        n[k] = (int64_t)s.C * s.F * it->H * it->W;
        o->last_timestep = it->t.timestep;
    }
    int per[HL_STAGE2_MAX_SAMPLES];
    for (int k = 0; k < s.K; k++) per[k] = s.K;
    if (st == HL_OK && o->pack_levels)
        st = forward_backward_packed(o, ctx, s.K, in, target, n, per, NULL, loss);
    for (int k = 0; st == HL_OK && !o->pack_levels && k < s.K; k++) /* level by level */
        st = forward_backward(o, ctx, &in[k], target[k], n[k], s.K, loss);
    o->last_task = s.base.task;
    hl_stage2_sample_free(&s);
    return st;
}

/* The clip of sample `index` (clip index mod count), its latent channels checked. */
static hl_status clip_get(hl_flow_objective *o, int64_t index, hl_latent_clip *clip,
                          hl_error *err) {
    HL_TRY(o->src.get(o->src.user, index % o->src.count, clip, err));
    if (clip->C != o->cfg.in_channels)
        return hl_fail(err, HELIOS_ERR_SHAPE,
                       "stage %d: clip %lld has %d latent channels, the transformer %d", o->stage,
                       (long long)(index % o->src.count), clip->C, o->cfg.in_channels);
    return HL_OK;
}

hl_status hl_flow_objective_step(void *obj, hl_rng *rng, int64_t sample_index, const float *params,
                                 float *grads, double *loss, hl_error *err) {
    hl_flow_objective *o = obj;
    hl_ctx ctx = *o->ctx;
    ctx.err = err;
    hl_latent_clip clip;
    HL_TRY(bind(o, params, grads, err));
    HL_TRY(clip_get(o, sample_index, &clip, err));
    *loss = 0.0;
    hl_status st = o->stage == 1 ? step_stage1(o, &ctx, &clip, rng, loss)
                                 : step_stage2(o, &ctx, &clip, rng, loss);
    if (st == HL_OK) o->token_samples++;
    return st;
}

/* ---- a micro-batch at once ----------------------------------------------------------------- */

/* One sample of a packed micro-batch: its draws and a copy of its prompt (a clip's arrays live
 * only until the next get). */
typedef struct batch_sample {
    hl_stage1_sample s1;  /* stage 1 */
    hl_stage2_sample *s2; /* stage 2 */
    float *text;          /* (L, text_dim): the clip's prompt, or zeros when dropped */
    int L;
    double timestep; /* stage 1: the forward's, kept alive with its input */
} batch_sample;

static void batch_sample_free(batch_sample *b) {
    hl_stage1_sample_free(&b->s1);
    if (b->s2) hl_stage2_sample_free(b->s2);
    free(b->s2);
    free(b->text);
    memset(b, 0, sizeof *b);
}

/* Draws sample `index` (clip index mod count) with its generator g into b, as the step does. */
static hl_status batch_sample_make(hl_flow_objective *o, const hl_ctx *ctx, int64_t index,
                                   hl_rng *g, batch_sample *b) {
    hl_latent_clip clip;
    HL_TRY(clip_get(o, index, &clip, ctx->err));
    bool drop;
    if (o->stage == 1) {
        HL_TRY(hl_stage1_sample_make(&o->s.base, clip.latents, clip.C, clip.F, clip.H, clip.W, g,
                                     &b->s1, ctx->err));
        drop = b->s1.drop_text;
    } else {
        if (!(b->s2 = calloc(1, sizeof *b->s2)))
            return hl_fail(ctx->err, HELIOS_ERR_OOM, "flow objective: out of memory");
        HL_TRY(hl_stage2_sample_make(&o->s, clip.latents, clip.C, clip.F, clip.H, clip.W, g, b->s2,
                                     ctx->err));
        drop = b->s2->base.drop_text;
    }
    const size_t nt = (size_t)clip.L * (size_t)o->cfg.text_dim;
    if (!(b->text = calloc(nt ? nt : 1, sizeof *b->text)))
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "flow objective: out of memory");
    if (!drop) memcpy(b->text, clip.embeds, nt * sizeof *b->text);
    b->L = clip.L;
    return HL_OK;
}

/* The forwards of sample b of the micro-batch (1, or stage 2's K) appended at in + K, ...: the
 * pack's arrays. Returns how many. */
static int batch_items(batch_sample *bs, int b, int K, helios_dit_input *in, const float **target,
                       int64_t *n, int *per, int *owner) {
    batch_sample *x = &bs[b];
    if (!x->s2) {
        const hl_stage1_sample *s = &x->s1;
        hl_stage1_dit_input(s, x->text, x->L, &x->timestep, &in[K]);
        target[K] = s->target, n[K] = (int64_t)s->C * s->F * s->H * s->W;
        per[K] = 1, owner[K] = b;
        return 1;
    }
    const hl_stage2_sample *s = x->s2;
    for (int k = 0; k < s->K; k++) {
        hl_stage2_dit_input(s, k, x->text, x->L, &in[K + k]);
        target[K + k] = s->items[k].target;
        n[K + k] = (int64_t)s->C * s->F * s->items[k].H * s->items[k].W;
        per[K + k] = s->K, owner[K + k] = b;
    }
    return s->K;
}

hl_status hl_flow_objective_step_batch(void *obj, int nb, hl_rng *rngs, const int64_t *sample_index,
                                       const float *params, float *grads, double *loss,
                                       hl_error *err) {
    hl_flow_objective *o = obj;
    for (int b = 0; b < nb; b++) loss[b] = 0.0;
    if (!o->pack_batch || (o->stage == 2 && !o->pack_levels)) { /* sample by sample */
        for (int b = 0; b < nb; b++)
            HL_TRY(hl_flow_objective_step(obj, &rngs[b], sample_index[b], params, grads, &loss[b],
                                          err));
        return HL_OK;
    }
    hl_ctx ctx = *o->ctx;
    ctx.err = err;
    HL_TRY(bind(o, params, grads, err));
    batch_sample *bs = calloc((size_t)nb, sizeof *bs);
    if (!bs) return hl_fail(err, HELIOS_ERR_OOM, "flow objective: out of memory");
    hl_status st = HL_OK;
    for (int b = 0; st == HL_OK && b < nb; b++)
        st = batch_sample_make(o, &ctx, sample_index[b], &rngs[b], &bs[b]);
    helios_dit_input in[HL_FLOW_PACK_MAX];
    const float *target[HL_FLOW_PACK_MAX];
    int64_t n[HL_FLOW_PACK_MAX];
    int per[HL_FLOW_PACK_MAX], owner[HL_FLOW_PACK_MAX];
    for (int b0 = 0; st == HL_OK && b0 < nb;) { /* whole samples, as many as a pack holds */
        int K = 0, b1 = b0;
        while (b1 < nb && (b1 == b0 || K + (bs[b1].s2 ? bs[b1].s2->K : 1) <= HL_FLOW_PACK_MAX))
            K += batch_items(bs, b1, K, in, target, n, per, owner), b1++;
        st = forward_backward_packed(o, &ctx, K, in, target, n, per, owner, loss);
        b0 = b1;
    }
    if (st == HL_OK && nb > 0) { /* the last sample, for logging */
        const batch_sample *x = &bs[nb - 1];
        o->last_task = x->s2 ? x->s2->base.task : x->s1.task;
        o->last_timestep = x->s2 ? x->s2->items[x->s2->K - 1].t.timestep : x->timestep;
        o->token_samples += nb;
    }
    for (int b = 0; b < nb; b++) batch_sample_free(&bs[b]);
    free(bs);
    return st;
}

double hl_flow_objective_tokens(void *obj) {
    const hl_flow_objective *o = obj;
    return o->token_samples ? (double)o->tokens / (double)o->token_samples : 0.0;
}

/* ---- validation: the loss alone, forward only ----------------------------------------------- */

/* The flow loss of one forward of in against target (n values), weighted by 1 / K. */
static hl_status forward_loss(const hl_ctx *ctx, const hl_dit *m, const helios_dit_input *in,
                              const float *target, int64_t n, int K, double *loss) {
    float *pred = malloc((size_t)n * sizeof *pred);
    if (!pred) return hl_fail(ctx->err, HELIOS_ERR_OOM, "flow validation: out of memory");
    hl_status st = hl_dit_forward(ctx, m, in, NULL, pred);
    if (st == HL_OK) *loss += hl_flow_loss(pred, target, NULL, 1, n, NULL) / K;
    free(pred);
    return st;
}

static hl_status sample_loss(hl_flow_objective *o, const hl_ctx *ctx, const hl_dit *m,
                             const hl_latent_clip *clip, hl_rng *rng, double *loss) {
    if (o->stage == 1) {
        hl_stage1_sample s;
        HL_TRY(hl_stage1_sample_make(&o->s.base, clip->latents, clip->C, clip->F, clip->H, clip->W,
                                     rng, &s, ctx->err));
        const float *text = prompt(o, clip, s.drop_text, ctx->err);
        hl_status st = text ? HL_OK : HELIOS_ERR_OOM;
        double timestep = 0.0;
        helios_dit_input in;
        if (st == HL_OK) {
            hl_stage1_dit_input(&s, text, clip->L, &timestep, &in);
            st = forward_loss(ctx, m, &in, s.target, (int64_t)s.C * s.F * s.H * s.W, 1, loss);
        }
        hl_stage1_sample_free(&s);
        return st;
    }
    hl_stage2_sample s;
    HL_TRY(hl_stage2_sample_make(&o->s, clip->latents, clip->C, clip->F, clip->H, clip->W, rng, &s,
                                 ctx->err));
    const float *text = prompt(o, clip, s.base.drop_text, ctx->err);
    hl_status st = text ? HL_OK : HELIOS_ERR_OOM;
    for (int k = 0; st == HL_OK && k < s.K; k++) {
        const hl_stage2_item *it = &s.items[k];
        helios_dit_input in;
        hl_stage2_dit_input(&s, k, text, clip->L, &in);
        st = forward_loss(ctx, m, &in, it->target, (int64_t)s.C * s.F * it->H * it->W, s.K, loss);
    }
    hl_stage2_sample_free(&s);
    return st;
}

hl_status hl_flow_objective_validate(hl_flow_objective *o, const float *weights, uint64_t seed,
                                     int samples, double *loss, hl_error *err) {
    hl_ctx ctx = *o->ctx;
    ctx.err = err;
    hl_dit *m = NULL;
    HL_TRY(hl_dit_new_flat(&o->cfg, o->layout, (float *)weights, &m, err));
    hl_rng rng;
    rng.path = HL_RNG_NORMAL_AVX2;
    hl_rng_seed(&rng, seed);
    double sum = 0;
    hl_status st = HL_OK;
    for (int i = 0; st == HL_OK && i < samples; i++) {
        int64_t index = (int64_t)(hl_rng_u64(&rng) % (uint64_t)o->src.count);
        hl_latent_clip clip;
        double l = 0;
        st = o->src.get(o->src.user, index, &clip, err);
        if (st == HL_OK && clip.C != o->cfg.in_channels)
            st = hl_fail(err, HELIOS_ERR_SHAPE, "stage %d: clip %lld has %d latent channels",
                         o->stage, (long long)index, clip.C);
        if (st == HL_OK) st = sample_loss(o, &ctx, m, &clip, &rng, &l);
        if (st != HL_OK)
            hl_error_prefix(err, "validation sample %d (clip %lld)", i, (long long)index);
        sum += l;
    }
    hl_dit_free(m);
    if (st == HL_OK) *loss = sum / (double)(samples > 0 ? samples : 1);
    return st;
}
