#include "train/stage1.h"

#include <stdlib.h>
#include <string.h>

#include "train/loss.h"

const char *hl_stage1_task_name(hl_stage1_task t) {
    switch (t) {
    case HL_TASK_FULL: return "full";
    case HL_TASK_T2V: return "t2v";
    case HL_TASK_I2V: return "i2v";
    case HL_TASK_V2V: return "v2v";
    }
    return "?";
}

void hl_stage1_config_default(hl_stage1_config *c) {
    memset(c, 0, sizeof *c);
    c->chunk_frames = 9;
    c->history_sizes[0] = 16, c->history_sizes[1] = 2, c->history_sizes[2] = 1;
    c->p_t2v = 0.4f;
    c->p_i2v = 0.0f;
    c->p_v2v = 0.4f;
    c->p_drop_text = 0.0f;
    c->zero_history_timestep = true;
    c->corrupt_history = true;
    c->keep_first_frame = true;
    c->history = HL_HISTORY_COMPRESSED;
    hl_corrupt_params_default(&c->corrupt);
    hl_tsample_params_default(&c->tsample);
}

hl_status hl_stage1_config_check(const hl_stage1_config *c, hl_error *err) {
    const int *hs = c->history_sizes;
    if (c->chunk_frames < 1 || hs[0] < 0 || hs[1] < 0 || hs[2] != 1 ||
        hs[0] + hs[1] + 2 > HL_CORRUPT_MAX_FRAMES)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "stage1: chunk_frames %d, history_sizes [%d, %d, %d] (chunk >= 1, 1x = 1, "
                       "at most %d history frames)",
                       c->chunk_frames, hs[0], hs[1], hs[2], HL_CORRUPT_MAX_FRAMES - 1);
    if (c->history != HL_HISTORY_COMPRESSED && c->history != HL_HISTORY_UNCOMPRESSED)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage1: history layout %d", (int)c->history);
    float ps[4] = {c->p_t2v, c->p_i2v, c->p_v2v, c->p_drop_text};
    for (int i = 0; i < 4; i++)
        if (!(ps[i] >= 0.0f && ps[i] <= 1.0f))
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "stage1: probabilities t2v %g, i2v %g, v2v %g, drop_text %g (each in "
                           "[0, 1])",
                           (double)ps[0], (double)ps[1], (double)ps[2], (double)ps[3]);
    if (c->corrupt_history) HL_TRY(hl_corrupt_params_check(&c->corrupt, err));
    const hl_tsample_params *t = &c->tsample;
    if ((t->kind != HL_TSAMPLE_LOGIT_NORMAL && t->kind != HL_TSAMPLE_UNIFORM) ||
        !(t->logit_std >= 0.0f))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage1: timestep sampling kind %d, std %g",
                       (int)t->kind, (double)t->logit_std);
    return HL_OK;
}

static float uniform(hl_rng *g) {
    float u;
    hl_rng_rand_f32(g, &u, 1);
    return u;
}

/* An integer uniform in [0, n) from 32 random bits (n >= 1). */
static int uniform_int(hl_rng *g, int n) {
    return (int)(((uint64_t)hl_rng_u32(g) * (uint64_t)n) >> 32);
}

/* dst (C, n, H, W) = src[:, first : first + n] of src (C, T, H, W). */
static void copy_frames(float *dst, const float *src, int C, int T, int first, int n,
                        size_t plane) {
    for (int c = 0; c < C; c++)
        memcpy(dst + (size_t)c * (size_t)n * plane,
               src + ((size_t)c * (size_t)T + (size_t)first) * plane,
               (size_t)n * plane * sizeof(float));
}

/* Zeroes history frame i (RoPE order, 0 = the anchor) of the sample, whatever its layout. */
static void zero_frame(hl_stage1_sample *s, int i, size_t plane) {
    int T, t;
    float *x = hl_history_inputs_frame(&s->hist, s->n_long, s->n_mid, s->n_short, i, &T, &t);
    for (int c = 0; c < s->C; c++)
        memset(x + ((size_t)c * (size_t)T + (size_t)t) * plane, 0, plane * sizeof(float));
}

/* Zeroes the oldest `drop` history frames (RoPE 1 .. drop: long first, then mid, then the 1x
 * frame; uncompressed, the short tier's frames after the anchor). */
static void drop_oldest(hl_stage1_sample *s, int drop, size_t plane) {
    for (int i = 1; i <= drop; i++) zero_frame(s, i, plane);
}

/* Step 4 of the header: the released prepare_stage1_clean_input_from_latents random drop. */
static void task_mix(const hl_stage1_config *cfg, hl_rng *g, hl_stage1_sample *s) {
    size_t plane = (size_t)s->H * (size_t)s->W;
    int n_hist = s->n_long + s->n_mid + s->n_short - 1; /* 19 in either layout */
    s->task = HL_TASK_FULL;
    s->dropped = 0;
    if (cfg->p_t2v != 0.0f && uniform(g) <= cfg->p_t2v) {
        s->task = HL_TASK_T2V;
        s->dropped = n_hist;
        drop_oldest(s, n_hist, plane);
        zero_frame(s, 0, plane); /* and the anchor */
        return;
    }
    if (cfg->p_i2v != 0.0f && uniform(g) <= cfg->p_i2v) {
        s->task = HL_TASK_I2V;
        s->dropped = n_hist - 1;
    } else if (cfg->p_v2v != 0.0f && uniform(g) <= cfg->p_v2v) {
        int windows = n_hist / s->F;
        s->task = HL_TASK_V2V;
        s->dropped = n_hist % s->F + (windows > 0 ? uniform_int(g, windows + 1) * s->F : 0);
    }
    drop_oldest(s, s->dropped, plane);
}

/* Steps 1-3: the target chunk, the history window and the anchor. */
static hl_status lay_out(const hl_stage1_config *cfg, const float *clip, int F_clip, hl_rng *g,
                         hl_stage1_sample *s, hl_error *err) {
    size_t plane = (size_t)s->H * (size_t)s->W;
    s->n_chunks = F_clip / s->F;
    s->chunk = uniform_int(g, s->n_chunks);
    int start = s->chunk * s->F;
    copy_frames(s->x0, clip, s->C, F_clip, start, s->F, plane);

    hl_history h;
    HL_TRY(hl_history_init(&h, 1, s->C, s->H, s->W, cfg->history_sizes, err));
    int first = start - h.total > 0 ? start - h.total : 0, n = start - first;
    hl_status st = HL_OK;
    if (n > 0) { /* the window starts zero: appending fewer than `total` frames pads the start */
        float *frames = malloc((size_t)s->C * (size_t)n * plane * sizeof *frames);
        if (!frames) st = hl_fail(err, HELIOS_ERR_OOM, "stage1: out of memory");
        if (frames) {
            copy_frames(frames, clip, s->C, F_clip, first, n, plane);
            hl_history_append(&h, frames, n);
            free(frames);
        }
    }
    if (st == HL_OK && cfg->keep_first_frame && s->chunk > 0)
        hl_history_set_anchor(&h, clip, F_clip, 0);
    if (st == HL_OK) st = hl_history_inputs_build_layout(&h, s->F, cfg->history, &s->hist, err);
    if (st == HL_OK)
        s->n_long = s->hist.n_long, s->n_mid = s->hist.n_mid, s->n_short = s->hist.n_short;
    hl_history_free(&h);
    return st;
}

hl_status hl_stage1_history_make(const hl_stage1_config *cfg, const float *clip, int C, int F_clip,
                                 int H, int W, hl_rng *g, hl_stage1_sample *s, hl_error *err) {
    memset(s, 0, sizeof *s);
    HL_TRY(hl_stage1_config_check(cfg, err));
    if (!clip || !g || C < 1 || H < 1 || W < 1 || F_clip < cfg->chunk_frames ||
        F_clip % cfg->chunk_frames)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "stage1: clip (%d, %d, %d, %d): frames must be a positive multiple of the "
                       "chunk's %d",
                       C, F_clip, H, W, cfg->chunk_frames);
    s->C = C, s->F = cfg->chunk_frames, s->H = H, s->W = W;
    size_t n = (size_t)C * (size_t)s->F * (size_t)H * (size_t)W;
    s->x0 = malloc(n * sizeof(float));
    hl_status st = s->x0 ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "stage1: out of memory");
    if (st == HL_OK) st = lay_out(cfg, clip, F_clip, g, s, err);
    if (st == HL_OK) {
        task_mix(cfg, g, s);
        s->drop_text = cfg->p_drop_text != 0.0f && uniform(g) < cfg->p_drop_text;
    }
    if (st != HL_OK) hl_stage1_sample_free(s);
    return st;
}

hl_status hl_stage1_sample_make(const hl_stage1_config *cfg, const float *clip, int C, int F_clip,
                                int H, int W, hl_rng *g, hl_stage1_sample *s, hl_error *err) {
    memset(s, 0, sizeof *s);
    HL_TRY(hl_stage1_config_check(cfg, err));
    hl_flow_table table;
    HL_TRY(hl_flow_table_init(&table, cfg->tsample.num_train_timesteps, cfg->tsample.shift, err));
    HL_TRY(hl_stage1_history_make(cfg, clip, C, F_clip, H, W, g, s, err));
    size_t n = (size_t)C * (size_t)s->F * (size_t)H * (size_t)W;
    s->noise = malloc(n * sizeof(float));
    s->noisy = malloc(n * sizeof(float));
    s->target = malloc(n * sizeof(float));
    hl_status st = s->noise && s->noisy && s->target
                       ? HL_OK
                       : hl_fail(err, HELIOS_ERR_OOM, "stage1: out of memory");
    if (st == HL_OK && cfg->corrupt_history)
        st = hl_corrupt_history_tiers(&cfg->corrupt, g, &s->hist, C, H, W, s->n_long, s->n_mid,
                                      s->n_short, &s->corrupt, err);
    if (st == HL_OK) st = hl_tsample_draw(&cfg->tsample, &table, g, 1, &s->t, err);
    if (st == HL_OK) {
        hl_rng_randn_f32(g, s->noise, (int64_t)n);
        hl_flow_noisy(s->x0, s->noise, s->t.sigma, (int64_t)n, s->noisy, s->target);
        s->history_timestep = cfg->zero_history_timestep ? 0.0f : s->t.timestep;
    }
    if (st != HL_OK) hl_stage1_sample_free(s);
    return st;
}

void hl_stage1_sample_free(hl_stage1_sample *s) {
    free(s->x0), free(s->noise), free(s->noisy), free(s->target);
    hl_history_inputs_free(&s->hist);
    memset(s, 0, sizeof *s);
}

void hl_stage1_dit_input(const hl_stage1_sample *s, const float *text, int text_len,
                         double *timestep, helios_dit_input *in) {
    helios_dit_input_init(in);
    *timestep = (double)s->t.timestep;
    in->batch = 1;
    in->frames = s->F, in->height = s->H, in->width = s->W;
    in->hidden_states = s->noisy;
    in->timestep = timestep;
    in->text_len = text_len;
    in->encoder_hidden_states = text;
    in->indices_hidden_states = s->hist.idx_cur;
    in->short_frames = s->n_short, in->mid_frames = s->n_mid, in->long_frames = s->n_long;
    in->hist_height = s->H, in->hist_width = s->W;
    in->latents_history_short = s->hist.lat_short;
    in->latents_history_mid = s->hist.lat_mid;
    in->latents_history_long = s->hist.lat_long;
    in->indices_latents_history_short = s->hist.idx_short;
    in->indices_latents_history_mid = s->hist.idx_mid;
    in->indices_latents_history_long = s->hist.idx_long;
}

hl_status hl_stage1_batch_make(const hl_stage1_sample *const *s, int B, hl_stage1_batch *b,
                               hl_error *err) {
    memset(b, 0, sizeof *b);
    if (B < 1) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage1 batch: %d samples", B);
    const hl_stage1_sample *a = s[0];
    for (int i = 1; i < B; i++)
        if (s[i]->C != a->C || s[i]->F != a->F || s[i]->H != a->H || s[i]->W != a->W ||
            s[i]->n_long != a->n_long || s[i]->n_mid != a->n_mid || s[i]->n_short != a->n_short)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "stage1 batch: sample %d is (%d, %d, %d, %d) with history %d/%d/%d, "
                           "sample 0 (%d, %d, %d, %d) with %d/%d/%d",
                           i, s[i]->C, s[i]->F, s[i]->H, s[i]->W, s[i]->n_long, s[i]->n_mid,
                           s[i]->n_short, a->C, a->F, a->H, a->W, a->n_long, a->n_mid, a->n_short);
    b->B = B, b->C = a->C, b->F = a->F, b->H = a->H, b->W = a->W;
    b->n_long = a->n_long, b->n_mid = a->n_mid, b->n_short = a->n_short;
    size_t frame = (size_t)a->C * (size_t)a->H * (size_t)a->W, cur = frame * (size_t)a->F;
    int nl = a->n_long ? a->n_long : 1, nm = a->n_mid ? a->n_mid : 1;
    b->noisy = malloc((size_t)B * cur * sizeof(float));
    b->target = malloc((size_t)B * cur * sizeof(float));
    b->lat_long = malloc((size_t)B * (size_t)nl * frame * sizeof(float));
    b->lat_mid = malloc((size_t)B * (size_t)nm * frame * sizeof(float));
    b->lat_short = malloc((size_t)B * (size_t)a->n_short * frame * sizeof(float));
    b->timesteps = malloc((size_t)B * sizeof(double));
    b->idx_long = malloc((size_t)nl * sizeof(int64_t));
    b->idx_mid = malloc((size_t)nm * sizeof(int64_t));
    b->idx_short = malloc((size_t)a->n_short * sizeof(int64_t));
    b->idx_cur = malloc((size_t)a->F * sizeof(int64_t));
    if (!b->noisy || !b->target || !b->lat_long || !b->lat_mid || !b->lat_short || !b->timesteps ||
        !b->idx_long || !b->idx_mid || !b->idx_short || !b->idx_cur) {
        hl_stage1_batch_free(b);
        return hl_fail(err, HELIOS_ERR_OOM, "stage1 batch: out of memory");
    }
    size_t fl = (size_t)a->n_long * frame, fm = (size_t)a->n_mid * frame,
           fs = (size_t)a->n_short * frame;
    for (int i = 0; i < B; i++) { /* (1, ...) after (1, ...) is (B, ...) */
        const hl_stage1_sample *x = s[i];
        memcpy(b->noisy + (size_t)i * cur, x->noisy, cur * sizeof(float));
        memcpy(b->target + (size_t)i * cur, x->target, cur * sizeof(float));
        memcpy(b->lat_long + (size_t)i * fl, x->hist.lat_long, fl * sizeof(float));
        memcpy(b->lat_mid + (size_t)i * fm, x->hist.lat_mid, fm * sizeof(float));
        memcpy(b->lat_short + (size_t)i * fs, x->hist.lat_short, fs * sizeof(float));
    }
    for (int i = 0; i < B; i++) b->timesteps[i] = (double)s[i]->t.timestep;
    memcpy(b->idx_long, a->hist.idx_long, (size_t)a->n_long * sizeof(int64_t));
    memcpy(b->idx_mid, a->hist.idx_mid, (size_t)a->n_mid * sizeof(int64_t));
    memcpy(b->idx_short, a->hist.idx_short, (size_t)a->n_short * sizeof(int64_t));
    memcpy(b->idx_cur, a->hist.idx_cur, (size_t)a->F * sizeof(int64_t));
    return HL_OK;
}

void hl_stage1_batch_free(hl_stage1_batch *b) {
    free(b->noisy), free(b->target), free(b->lat_long), free(b->lat_mid), free(b->lat_short);
    free(b->timesteps), free(b->idx_long), free(b->idx_mid), free(b->idx_short), free(b->idx_cur);
    memset(b, 0, sizeof *b);
}

void hl_stage1_batch_dit_input(const hl_stage1_batch *b, const float *text, int text_len,
                               helios_dit_input *in) {
    helios_dit_input_init(in);
    in->batch = b->B;
    in->frames = b->F, in->height = b->H, in->width = b->W;
    in->hidden_states = b->noisy;
    in->timestep = b->timesteps;
    in->text_len = text_len;
    in->encoder_hidden_states = text;
    in->indices_hidden_states = b->idx_cur;
    in->short_frames = b->n_short, in->mid_frames = b->n_mid, in->long_frames = b->n_long;
    in->hist_height = b->H, in->hist_width = b->W;
    in->latents_history_short = b->lat_short;
    in->latents_history_mid = b->lat_mid;
    in->latents_history_long = b->lat_long;
    in->indices_latents_history_short = b->idx_short;
    in->indices_latents_history_mid = b->idx_mid;
    in->indices_latents_history_long = b->idx_long;
}
