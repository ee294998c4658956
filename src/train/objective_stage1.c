#include "train/objective_stage1.h"

#include <stdlib.h>
#include <string.h>

#include "train/dit_flat.h"
#include "train/loss.h"

hl_status hl_stage1_objective_init(hl_stage1_objective *o, const hl_ctx *ctx,
                                   const hl_dit_config *cfg, const hl_params *layout,
                                   const hl_stage1_config *s1, hl_clip_source src, int recompute,
                                   hl_error *err) {
    memset(o, 0, sizeof *o);
    o->ctx = ctx;
    o->cfg = *cfg;
    o->layout = layout;
    o->s1 = *s1;
    o->src = src;
    o->recompute = recompute;
    HL_TRY(hl_stage1_config_check(s1, err));
    if (s1->zero_history_timestep != cfg->zero_history_timestep)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "stage 1: zero_history_timestep is %s in the objective but %s in the "
                       "transformer's config",
                       s1->zero_history_timestep ? "true" : "false",
                       cfg->zero_history_timestep ? "true" : "false");
    if (src.count < 1 || !src.get)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage 1: the data source has no clips");
    return HL_OK;
}

void hl_stage1_objective_free(hl_stage1_objective *o) {
    hl_dit_free(o->m);
    hl_dit_free(o->g);
    free(o->text);
    memset(o, 0, sizeof *o);
}

/* The model and gradient view over the loop's buffers (rebound when they move). */
static hl_status bind(hl_stage1_objective *o, const float *params, float *grads, hl_error *err) {
    if (o->m && o->m_data == params && o->g_data == grads) return HL_OK;
    hl_dit_free(o->m);
    hl_dit_free(o->g);
    o->m = o->g = NULL;
    HL_TRY(hl_dit_new_flat(&o->cfg, o->layout, (float *)params, &o->m, err));
    HL_TRY(hl_dit_new_flat(&o->cfg, o->layout, grads, &o->g, err));
    o->m_data = params;
    o->g_data = grads;
    return HL_OK;
}

/* The prompt the forward sees: the clip's, or zeros when the caption is dropped. */
static const float *prompt(hl_stage1_objective *o, const hl_clip *clip, bool drop, hl_error *err) {
    if (!drop) return clip->embeds;
    size_t n = (size_t)clip->L * (size_t)o->cfg.text_dim;
    if (o->text_n < n) {
        free(o->text);
        o->text_n = 0;
        if (!(o->text = calloc(n, sizeof *o->text))) {
            hl_fail(err, HELIOS_ERR_OOM, "stage 1: out of memory");
            return NULL;
        }
        o->text_n = n;
    }
    return o->text;
}

hl_status hl_stage1_objective_step(void *obj, hl_rng *rng, int64_t sample_index,
                                   const float *params, float *grads, double *loss, hl_error *err) {
    hl_stage1_objective *o = obj;
    hl_ctx ctx = *o->ctx;
    ctx.err = err;
    hl_clip clip;
    HL_TRY(bind(o, params, grads, err));
    HL_TRY(o->src.get(o->src.user, sample_index % o->src.count, &clip, err));
    if (clip.C != o->cfg.in_channels)
        return hl_fail(err, HELIOS_ERR_SHAPE,
                       "stage 1: clip %lld has %d latent channels, the "
                       "transformer %d",
                       (long long)(sample_index % o->src.count), clip.C, o->cfg.in_channels);
    hl_stage1_sample s;
    HL_TRY(
        hl_stage1_sample_make(&o->s1, clip.latents, clip.C, clip.F, clip.H, clip.W, rng, &s, err));
    const float *text = prompt(o, &clip, s.drop_text, err);
    int64_t n = (int64_t)s.C * s.F * s.H * s.W;
    float *pred = malloc((size_t)n * sizeof *pred), *dpred = malloc((size_t)n * sizeof *dpred);
    hl_status st = text && pred && dpred ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    double timestep = 0.0;
    helios_dit_input in;
    hl_dit_tape *tape = NULL;
    if (st == HL_OK) {
        hl_stage1_dit_input(&s, text, clip.L, &timestep, &in);
        st = hl_dit_forward_train(&ctx, o->m, &in, o->recompute, &tape, pred);
    }
    if (st == HL_OK) {
        *loss = hl_flow_loss(pred, s.target, NULL, 1, n, dpred); /* (1, C, F, H, W) */
        st = hl_dit_backward(&ctx, o->m, tape, dpred, o->g, NULL);
    }
    size_t bytes = hl_dit_tape_bytes(tape);
    if (bytes > o->peak_tape_bytes) o->peak_tape_bytes = bytes;
    o->last_task = s.task;
    o->last_timestep = timestep;
    hl_dit_tape_free(tape);
    free(pred);
    free(dpred);
    hl_stage1_sample_free(&s);
    return st;
}
