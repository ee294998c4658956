#include "sample/chunk_loop.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "sample/guidance.h"
#include "sample/pyramid.h"

void hl_loop_config_default(hl_loop_config *c) {
    const helios_recipe_defaults *r = helios_recipe_defaults_get(
        HELIOS_RECIPE_BASE); /* src/api/recipes.c */
    memset(c, 0, sizeof *c);
    hl_sched_config_default(&c->sched, HL_SCHED_UNIPC);
    c->steps = r->steps;
    c->guidance_scale = r->guidance_scale;
    c->use_zero_init = true;
    c->keep_first_frame = true;
    c->history = HL_HISTORY_COMPRESSED;
    c->zero_steps = r->zero_init_steps;
    c->latent_frames = r->latent_frames_per_chunk;
    for (int i = 0; i < 3; i++) c->history_sizes[i] = r->history_frames[i];
}

struct hl_loop {
    const hl_ctx *ctx;
    const hl_dit *dit;
    hl_loop_config cfg;
    hl_rng rng;
    hl_sched sched;
    hl_schedule sc;                      /* the current stage's schedule */
    hl_unipc unipc[HL_SCHED_MAX_STAGES]; /* multistep state per stage (sizes differ) */
    hl_history hist;
    int C, F, H, W, n_cond; /* n_cond: 2 with CFG (prompt, negative) */
    int64_t L, E;
    float *text;      /* [n_cond, L, E]: prompt, negative */
    float *from, *to; /* [n_cond, L, E]: prompt interpolation endpoints */
    int interp_total, interp_done;
    /* chunk state */
    int chunk, stage, step, h, w;
    bool in_chunk;
    float *x, *next;                          /* [C, F, h, w] latents at the stage's size */
    float *start[HL_SCHED_MAX_STAGES];        /* DMD start point of each stage */
    float *in, *out, *v, *noise;              /* [n_cond, C, F, H, W], [C, F, H, W] */
    float *hist_long, *hist_mid, *hist_short; /* [n_cond, ...] history inputs of the chunk */
    hl_history_inputs hi;
    const hl_probe *probe;
    int n_calls, n_steps;
};

static hl_dtype dit_dtype(const hl_dit *d) {
    return d->cfg.num_layers && d->blocks[0].attn1.to_q_w.dtype == HL_BF16 ? HL_BF16 : HL_F32;
}

static float *alloc_f(size_t n, bool *ok) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) *ok = false;
    return p;
}

hl_status hl_loop_new(const hl_ctx *ctx, const hl_dit *dit, const hl_loop_config *cfg,
                      const float *text, const float *neg, int text_len, const hl_history *hist,
                      const hl_rng *rng, hl_loop **out) {
    hl_error *err = ctx->err;
    *out = NULL;
    const hl_dit_config *dc = &dit->cfg;
    int P = cfg->pyramid ? cfg->n_stages : 1;
    if (cfg->latent_frames < 1 || cfg->height < 1 || cfg->width < 1 || text_len < 1 || !text)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "generate: empty size or prompt");
    if (P < 1 || P > HL_SCHED_MAX_STAGES || (cfg->pyramid && P != cfg->sched.stages))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "generate: %d pyramid stages for a scheduler with %d", P, cfg->sched.stages);
    int div = (dc->patch[1] > dc->patch[2] ? dc->patch[1] : dc->patch[2]) << (P - 1);
    if (cfg->height % div || cfg->width % div || cfg->latent_frames % dc->patch[0])
        return hl_fail(err, HELIOS_ERR_SHAPE,
                       "generate: latent %dx%d must be divisible by %d (patch x pyramid)",
                       cfg->height, cfg->width, div);
    for (int s = 0; s < P; s++)
        if ((cfg->pyramid ? cfg->stage_steps[s] : cfg->steps) < 1)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "generate: every stage needs at least one step");
    bool cfg_on = cfg->guidance_scale > 1.0 && cfg->sched.kind != HL_SCHED_DMD;
    if (cfg_on && !neg)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "generate: guidance needs negative prompt embeddings");

    hl_loop *l = calloc(1, sizeof *l);
    if (!l) return hl_fail(err, HELIOS_ERR_OOM, "generate: out of memory");
    l->ctx = ctx, l->dit = dit, l->cfg = *cfg;
    l->C = dc->in_channels, l->F = cfg->latent_frames, l->H = cfg->height, l->W = cfg->width;
    l->n_cond = cfg_on ? 2 : 1;
    l->L = text_len, l->E = dc->text_dim;
    if (rng) l->rng = *rng;
    else hl_rng_seed(&l->rng, cfg->seed);

    hl_status st = hl_sched_init(&l->sched, &cfg->sched, err);
    if (st == HL_OK && hist) {
        st = hl_history_init(&l->hist, 1, l->C, l->H, l->W, cfg->history_sizes, err);
        if (st == HL_OK) { /* a prepared history of the same geometry */
            size_t plane = (size_t)l->H * l->W;
            if (hist->C != l->C || hist->H != l->H || hist->W != l->W ||
                hist->total != l->hist.total)
                st = hl_fail(err, HELIOS_ERR_SHAPE,
                             "generate: the prepared history does not match the video size");
            else {
                memcpy(l->hist.frames, hist->frames,
                       (size_t)l->C * hist->total * plane * sizeof(float));
                memcpy(l->hist.anchor, hist->anchor, (size_t)l->C * plane * sizeof(float));
                l->hist.has_anchor = hist->has_anchor;
                l->hist.generated = hist->generated;
            }
        }
    } else if (st == HL_OK) {
        st = hl_history_init(&l->hist, 1, l->C, l->H, l->W, cfg->history_sizes, err);
    }
    size_t lat = (size_t)l->C * l->F * l->H * l->W, txt = (size_t)l->n_cond * l->L * l->E;
    size_t plane = (size_t)l->H * l->W, nc = (size_t)l->n_cond, C = (size_t)l->C;
    bool ok = true;
    l->x = alloc_f(lat, &ok), l->next = alloc_f(lat, &ok), l->v = alloc_f(lat, &ok),
    l->noise = alloc_f(lat, &ok);
    l->in = alloc_f(nc * lat, &ok), l->out = alloc_f(nc * lat, &ok);
    l->text = alloc_f(txt, &ok), l->from = alloc_f(txt, &ok), l->to = alloc_f(txt, &ok);
    l->hist_long = alloc_f(nc * C * (size_t)cfg->history_sizes[0] * plane, &ok);
    l->hist_mid = alloc_f(nc * C * (size_t)cfg->history_sizes[1] * plane, &ok);
    /* the short tier: [anchor, newest], or uncompressed [anchor, the whole window] */
    const int *hs = cfg->history_sizes;
    size_t n_short = cfg->history == HL_HISTORY_UNCOMPRESSED ? 1 + (size_t)(hs[0] + hs[1] + hs[2])
                                                             : 2;
    l->hist_short = alloc_f(nc * C * n_short * plane, &ok);
    if (cfg->sched.kind == HL_SCHED_DMD)
        for (int s = 0; s < P; s++) l->start[s] = alloc_f(lat, &ok);
    if (st == HL_OK && !ok)
        st = hl_fail(err, HELIOS_ERR_OOM, "generate: out of memory for a %dx%dx%d chunk", l->F,
                     l->H, l->W);
    for (int s = 0; st == HL_OK && s < P && cfg->sched.kind == HL_SCHED_UNIPC; s++) {
        int64_t n = (int64_t)l->C * l->F * (l->H >> (P - 1 - s)) * (l->W >> (P - 1 - s));
        st = hl_unipc_init(&l->unipc[s], &cfg->sched, n, err);
    }
    if (st != HL_OK) {
        hl_loop_free(l);
        return st;
    }
    memcpy(l->to, text, (size_t)(l->L * l->E) * sizeof(float));
    if (cfg_on) memcpy(l->to + l->L * l->E, neg, (size_t)(l->L * l->E) * sizeof(float));
    memcpy(l->from, l->to, txt * sizeof(float));
    *out = l;
    return HL_OK;
}

void hl_loop_free(hl_loop *l) {
    if (!l) return;
    hl_sched_free(&l->sched);
    hl_schedule_free(&l->sc);
    for (int s = 0; s < HL_SCHED_MAX_STAGES; s++) {
        hl_unipc_free(&l->unipc[s]);
        free(l->start[s]);
    }
    hl_history_free(&l->hist);
    hl_history_inputs_free(&l->hi);
    free(l->x), free(l->next), free(l->v), free(l->noise), free(l->in), free(l->out);
    free(l->text), free(l->from), free(l->to);
    free(l->hist_long), free(l->hist_mid), free(l->hist_short);
    free(l);
}

hl_status hl_loop_set_prompt(hl_loop *l, const float *text, const float *neg, int chunks) {
    size_t one = (size_t)(l->L * l->E);
    if (!text || (l->n_cond == 2 && !neg))
        return hl_fail(l->ctx->err, HELIOS_ERR_INVALID_ARG, "set_prompt: missing embeddings");
    memcpy(l->from, l->text, (size_t)l->n_cond * one * sizeof(float)); /* where we are now */
    memcpy(l->to, text, one * sizeof(float));
    if (l->n_cond == 2) memcpy(l->to + one, neg, one * sizeof(float));
    l->interp_total = chunks > 1 ? chunks : 1;
    l->interp_done = 0;
    return HL_OK;
}

void hl_loop_set_probe(hl_loop *l, const hl_probe *probe) { l->probe = probe; }

const hl_history *hl_loop_history(const hl_loop *l) { return &l->hist; }

const hl_rng *hl_loop_rng(const hl_loop *l) { return &l->rng; }

/* text = from + w (to - from) with w = done / total of the interpolation (1 when finished). */
static void update_text(hl_loop *l) {
    size_t n = (size_t)l->n_cond * (size_t)(l->L * l->E);
    if (l->interp_done < l->interp_total) l->interp_done++;
    float w = l->interp_total ? (float)l->interp_done / (float)l->interp_total : 1.0f;
    for (size_t i = 0; i < n; i++) l->text[i] = l->from[i] + w * (l->to[i] - l->from[i]);
}

/* Copies src [C, T, H, W] into n_cond batch slots of dst. */
static void repeat_batch(float *dst, const float *src, size_t n, int n_cond) {
    for (int b = 0; b < n_cond; b++) memcpy(dst + (size_t)b * n, src, n * sizeof(float));
}

static hl_status begin_stage(hl_loop *l, int s) {
    const hl_loop_config *c = &l->cfg;
    const int *p = l->dit->cfg.patch;
    double mu = hl_sched_calculate_shift(
        (double)hl_sched_image_seq_len(l->F, l->h, l->w, p[0], p[1], p[2]));
    bool amp = c->amplify_first_chunk && l->chunk == 0;
    hl_schedule_free(&l->sc); /* the previous stage's */
    HL_TRY(hl_sched_set_timesteps(&l->sched, c->stage_steps[s], s, mu, amp, &l->sc, l->ctx->err));
    if (s > 0) { /* up-sample, then re-noise toward this stage's start sigma with block noise */
        int64_t planes = (int64_t)l->C * l->F;
        hl_pyramid_up2x_nearest(l->x, planes, l->h, l->w, l->next);
        HL_TRY(hl_pyramid_sample_block_noise(&l->rng, c->sched.gamma, planes, l->h, l->w,
                                             dit_dtype(l->dit), l->noise, l->ctx->err));
        l->h *= 2, l->w *= 2;
        double alpha, beta;
        hl_sched_renoise_coeffs(&l->sched, s, &alpha, &beta);
        hl_pyramid_renoise(l->next, l->noise, planes * l->h * l->w, alpha, beta, l->x);
    }
    if (c->sched.kind == HL_SCHED_DMD)
        memcpy(l->start[s], l->x, (size_t)l->C * l->F * l->h * l->w * sizeof(float));
    if (c->sched.kind == HL_SCHED_UNIPC) hl_unipc_reset(&l->unipc[s], &l->sc);
    l->stage = s;
    l->step = 0;
    return HL_OK;
}

static hl_status begin_chunk(hl_loop *l) {
    const hl_loop_config *c = &l->cfg;
    size_t plane = (size_t)l->H * l->W, C = (size_t)l->C;
    update_text(l);
    HL_TRY(hl_history_inputs_build_layout(&l->hist, l->F, c->history, &l->hi, l->ctx->err));
    repeat_batch(l->hist_long, l->hi.lat_long, C * (size_t)l->hi.n_long * plane, l->n_cond);
    repeat_batch(l->hist_mid, l->hi.lat_mid, C * (size_t)l->hi.n_mid * plane, l->n_cond);
    repeat_batch(l->hist_short, l->hi.lat_short, C * (size_t)l->hi.n_short * plane, l->n_cond);
    int64_t n = (int64_t)C * l->F * (int64_t)plane;
    hl_rng_randn_f32(&l->rng, l->x, n); /* prepare_latents: (1, C, F, H, W) */
    hl_probe_emit(l->probe, l->x, 1, n, "chunk%d.initial_noise", l->chunk);
    l->h = l->H, l->w = l->W;
    l->in_chunk = true;
    if (!c->pyramid) {
        double *sig = malloc((size_t)c->steps * sizeof *sig);
        if (!sig) return hl_fail(l->ctx->err, HELIOS_ERR_OOM, "generate: out of memory");
        hl_sched_base_sigmas(c->steps, sig);
        const int *p = l->dit->cfg.patch;
        double mu = hl_sched_calculate_shift(
            (double)hl_sched_image_seq_len(l->F, l->H, l->W, p[0], p[1], p[2]));
        hl_schedule_free(&l->sc);
        hl_status st = hl_sched_set_timesteps_sigmas(&l->sched, c->steps, sig, mu, &l->sc,
                                                     l->ctx->err);
        free(sig);
        HL_TRY(st);
        if (c->sched.kind == HL_SCHED_UNIPC) hl_unipc_reset(&l->unipc[0], &l->sc);
        l->stage = l->step = 0;
        return HL_OK;
    }
    for (int s = 1; s < c->n_stages; s++) { /* the start noise at stage 0's size, x2 per level */
        HL_TRY(hl_pyramid_down2x(l->x, (int64_t)C * l->F, l->h, l->w, 2.0f, l->next, l->ctx->err));
        l->h /= 2, l->w /= 2;
        float *t = l->x;
        l->x = l->next, l->next = t;
    }
    return begin_stage(l, 0);
}

/* v = the guided velocity for x at timestep t (one batched transformer call). */
static hl_status predict(hl_loop *l, double t, double *dit_seconds) {
    const hl_loop_config *c = &l->cfg;
    size_t n = (size_t)l->C * l->F * l->h * l->w;
    repeat_batch(l->in, l->x, n, l->n_cond);
    double ts[2] = {t, t};
    helios_dit_input in;
    helios_dit_input_init(&in);
    in.batch = l->n_cond, in.frames = l->F, in.height = l->h, in.width = l->w;
    in.hidden_states = l->in, in.timestep = ts;
    in.text_len = (int)l->L, in.encoder_hidden_states = l->text;
    in.indices_hidden_states = l->hi.idx_cur;
    in.hist_height = l->H, in.hist_width = l->W;
    in.short_frames = l->hi.n_short, in.latents_history_short = l->hist_short,
    in.indices_latents_history_short = l->hi.idx_short;
    in.mid_frames = l->hi.n_mid, in.latents_history_mid = l->hist_mid,
    in.indices_latents_history_mid = l->hi.idx_mid;
    in.long_frames = l->hi.n_long, in.latents_history_long = l->hist_long,
    in.indices_latents_history_long = l->hi.idx_long;
    double t0 = hl_time();
    hl_status st = hl_dit_forward(l->ctx, l->dit, &in, NULL, l->out);
    *dit_seconds += hl_time() - t0;
    HL_TRY(st);
    for (int b = 0; b < l->n_cond; b++) { /* the reference makes one call per condition */
        hl_probe_emit(l->probe, l->x, 1, (int64_t)n, "call%03d.hidden_states", l->n_calls);
        hl_probe_emit(l->probe, l->out + b * n, 1, (int64_t)n, "call%03d.output", l->n_calls);
        l->n_calls++;
    }
    if (l->n_cond == 1) {
        memcpy(l->v, l->out, n * sizeof(float));
    } else if (c->pyramid && c->cfg_zero_star) {
        if (c->use_zero_init && l->stage == 0 && l->step <= c->zero_steps)
            memset(l->v, 0, n * sizeof(float)); /* zero init: the scheduler then sees x0 = x */
        else
            hl_guidance_cfg_zero_star(1, (int64_t)n, l->out, l->out + n, (float)c->guidance_scale,
                                      l->v);
    } else {
        hl_guidance_cfg((int64_t)n, l->out, l->out + n, (float)c->guidance_scale, l->v);
    }
    return HL_OK;
}

/* x <- scheduler.step(v, t, x). */
static hl_status scheduler_step(hl_loop *l, double t) {
    int64_t n = (int64_t)l->C * l->F * l->h * l->w;
    hl_error *err = l->ctx->err;
    switch (l->cfg.sched.kind) {
    case HL_SCHED_UNIPC:
        HL_TRY(hl_unipc_step(&l->unipc[l->stage], l->v, l->x, l->next, err));
        break;
    case HL_SCHED_EULER: HL_TRY(hl_euler_step(&l->sc, l->step, n, l->v, l->x, l->next, err)); break;
    case HL_SCHED_DMD:
        HL_TRY(hl_dmd_step(&l->sc, l->step, t, l->sc.timesteps, l->sc.n, n, l->v, l->x,
                           l->start[l->stage], l->next, err));
        break;
    }
    hl_probe_emit(l->probe, l->v, 1, n, "step%03d.model_output", l->n_steps);
    hl_probe_emit(l->probe, l->next, 1, n, "step%03d.prev_sample", l->n_steps);
    l->n_steps++;
    float *tmp = l->x;
    l->x = l->next, l->next = tmp;
    return HL_OK;
}

/* The chunk is denoised: first-frame anchor, history, hand-off. */
static void finish_chunk(hl_loop *l, hl_loop_event *ev) {
    if (l->cfg.keep_first_frame && !l->hist.has_anchor)
        hl_history_set_anchor(&l->hist, l->x, l->F, 0);
    hl_history_append(&l->hist, l->x, l->F);
    hl_history_inputs_free(&l->hi);
    ev->chunk_done = true;
    ev->latents = l->x;
    l->in_chunk = false;
    l->chunk++;
}

static bool all_finite(const float *x, size_t n) {
    /* no early exit: vectorises; one pass over a chunk's latents is cheap next to a step */
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return !bad;
}

/* A NaN or Inf anywhere poisons every later step and chunk (the history carries it on) and
 * decodes to a uniform video, so the first one stops the generation, saying where it appeared. */
static hl_status check_finite(hl_loop *l, const float *x, size_t n, const char *what) {
    if (all_finite(x, n)) return HL_OK;
    char stage[32] = "";
    if (l->cfg.n_stages > 1)
        snprintf(stage, sizeof stage, ", stage %d/%d", l->stage + 1, l->cfg.n_stages);
    return hl_fail(l->ctx->err, HELIOS_ERR_FORMAT,
                   "generate: non-finite values (NaN or Inf) in the %s at chunk %d%s, step %d/%d "
                   "(guidance scale %g); "
                   "the weights, the inputs or the guidance scale are out of range",
                   what, l->chunk + 1, stage, l->step + 1, l->sc.n, l->cfg.guidance_scale);
}

hl_status hl_loop_step(hl_loop *l, hl_loop_event *ev) {
    memset(ev, 0, sizeof *ev);
    if (!l->in_chunk) HL_TRY(begin_chunk(l));
    double t = l->sc.timesteps[l->step];
    double model_t = l->cfg.pyramid ? (double)hl_sched_model_timestep(t) : t;
    ev->chunk = l->chunk, ev->stage = l->stage, ev->step = l->step, ev->stage_steps = l->sc.n;
    ev->calls = l->n_cond;
    HL_TRY(predict(l, model_t, &ev->dit_seconds));
    size_t n = (size_t)l->C * l->F * l->h * l->w;
    HL_TRY(check_finite(l, l->out, (size_t)l->n_cond * n, "transformer output"));
    HL_TRY(check_finite(l, l->v, n, "guided velocity"));
    HL_TRY(scheduler_step(l, t));
    HL_TRY(check_finite(l, l->x, n, "latents after the sampler step"));
    if (++l->step < l->sc.n) return HL_OK;
    if (l->cfg.pyramid && l->stage + 1 < l->cfg.n_stages) return begin_stage(l, l->stage + 1);
    finish_chunk(l, ev);
    return HL_OK;
}
