#include "train/distill.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "io/weights.h"
#include "sample/chunk_loop.h"
#include "sample/pyramid.h"
#include "sample/steps.h"

void hl_distill_shape_default(hl_distill_shape *s) {
    memset(s, 0, sizeof *s);
    s->C = 16, s->F = 3, s->H = 16, s->W = 16, s->L = 16;
    s->levels = 3;
    s->history_sizes[0] = 16, s->history_sizes[1] = 2, s->history_sizes[2] = 1;
    hl_sched_config_default(&s->sched, HL_SCHED_DMD);
    s->sched.use_dynamic_shifting = true; /* Helios-Distilled's scheduler_config.json */
    s->sched.time_shift_type = HL_SHIFT_LINEAR;
    for (int k = 0; k < HL_SCHED_MAX_STAGES; k++) s->steps[k] = 2;
    s->amplify = true;
    s->teacher_steps = 10;
    s->teacher_guidance = 4.0;
}

hl_status hl_distill_shape_check(const hl_distill_shape *s, const hl_dit_config *dit,
                                 hl_error *err) {
    if (s->levels < 1 || s->levels > HL_DISTILL_MAX_LEVELS || s->levels != s->sched.stages)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "distillation: %d pyramid levels (1 to 3, the scheduler's stages)",
                       s->levels);
    int m = (1 << (s->levels - 1));
    if (s->H % (m * dit->patch[1]) || s->W % (m * dit->patch[2]) || s->F % dit->patch[0])
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "distillation: latents %dx%d must be multiples of %d x the patch over %d "
                       "levels",
                       s->H, s->W, m, s->levels);
    for (int k = 0; k < s->levels; k++)
        if (s->steps[k] < 1)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "distillation: level %d has no step", k);
    if (s->teacher_steps < 1)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "distillation: teacher_steps < 1");
    if (s->C != dit->in_channels)
        return hl_fail(err, HELIOS_ERR_SHAPE, "distillation: %d latent channels, the model %d",
                       s->C, dit->in_channels);
    return HL_OK;
}

void hl_distill_level_size(const hl_distill_shape *s, int k, int *h, int *w) {
    *h = s->H >> (s->levels - 1 - k);
    *w = s->W >> (s->levels - 1 - k);
}

hl_status hl_distill_sampler_init(hl_distill_sampler *s, const hl_distill_shape *shape,
                                  const hl_dit_config *dit, hl_error *err) {
    memset(s, 0, sizeof *s);
    s->shape = *shape;
    s->dit = *dit;
    HL_TRY(hl_distill_shape_check(shape, dit, err));
    HL_TRY(hl_sched_init(&s->sched, &shape->sched, err));
    for (int k = 0; k < shape->levels; k++) {
        int h, w; /* the pipeline computes a level's mu before up-sampling: the previous size */
        hl_distill_level_size(shape, k > 0 ? k - 1 : 0, &h, &w);
        double mu = hl_sched_calculate_shift((double)hl_sched_image_seq_len(
            shape->F, h, w, dit->patch[0], dit->patch[1], dit->patch[2]));
        HL_TRY(hl_sched_set_timesteps(&s->sched, shape->steps[k], k, mu, shape->amplify, &s->sc[k],
                                      err));
        HL_TRY(
            hl_sched_set_timesteps(&s->sched, shape->steps[k], k, mu, false, &s->sc_next[k], err));
    }
    HL_TRY(hl_history_init(&s->hist, 1, shape->C, shape->H, shape->W, shape->history_sizes, err));
    HL_TRY(hl_history_inputs_build(&s->hist, shape->F, &s->hi, err));
    hl_distill_sampler_set_history(s, NULL);
    size_t n = (size_t)shape->C * shape->F * shape->H * shape->W;
    float **bufs[] = {&s->x, &s->next, &s->start, &s->v, &s->noise, &s->up};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (!(*bufs[i] = malloc(n * sizeof(float))))
            return hl_fail(err, HELIOS_ERR_OOM, "distillation: out of memory");
    return HL_OK;
}

void hl_distill_sampler_free(hl_distill_sampler *s) {
    for (int k = 0; k < HL_DISTILL_MAX_LEVELS; k++)
        hl_schedule_free(&s->sc[k]), hl_schedule_free(&s->sc_next[k]);
    hl_sched_free(&s->sched);
    hl_history_inputs_free(&s->hi);
    hl_history_free(&s->hist);
    free(s->x), free(s->next), free(s->start), free(s->v), free(s->noise), free(s->up);
    memset(s, 0, sizeof *s);
}

void hl_distill_sampler_set_history(hl_distill_sampler *s, const hl_history_inputs *hi) {
    s->first = !hi;
    s->h = hi ? hi : &s->hi;
}

const hl_schedule *hl_distill_level_schedule(const hl_distill_sampler *s, int k) {
    return s->first ? &s->sc[k] : &s->sc_next[k];
}

int hl_distill_level_steps(const hl_distill_sampler *s, int k) {
    return hl_distill_level_schedule(s, k)->n;
}

hl_status hl_distill_history_from_inputs(const hl_history_inputs *in, int C, int H, int W,
                                         const int sizes[3], hl_history *h, hl_error *err) {
    HL_TRY(hl_history_init(h, 1, C, H, W, sizes, err));
    size_t plane = (size_t)H * W;
    int nl = h->n_long, nm = h->n_mid, T = h->total;
    for (int c = 0; c < C; c++) {
        float *win = h->frames + (size_t)c * T * plane;
        memcpy(win, in->lat_long + (size_t)c * nl * plane, (size_t)nl * plane * sizeof(float));
        memcpy(win + (size_t)nl * plane, in->lat_mid + (size_t)c * nm * plane,
               (size_t)nm * plane * sizeof(float));
        memcpy(win + (size_t)(T - 1) * plane, in->lat_short + ((size_t)c * 2 + 1) * plane,
               plane * sizeof(float));
        memcpy(h->anchor + (size_t)c * plane, in->lat_short + (size_t)c * 2 * plane,
               plane * sizeof(float));
    }
    h->has_anchor = true;
    return HL_OK;
}

void hl_distill_dit_input(const hl_distill_sampler *s, const float *x, int h, int w,
                          const double *ts, const float *text, helios_dit_input *in) {
    helios_dit_input_init(in);
    in->batch = 1, in->frames = s->shape.F, in->height = h, in->width = w;
    in->hidden_states = x, in->timestep = ts;
    in->text_len = s->shape.L, in->encoder_hidden_states = text;
    in->indices_hidden_states = s->h->idx_cur;
    in->hist_height = s->shape.H, in->hist_width = s->shape.W;
    in->short_frames = 2, in->latents_history_short = s->h->lat_short;
    in->indices_latents_history_short = s->h->idx_short;
    in->mid_frames = s->hist.n_mid, in->latents_history_mid = s->h->lat_mid;
    in->indices_latents_history_mid = s->h->idx_mid;
    in->long_frames = s->hist.n_long, in->latents_history_long = s->h->lat_long;
    in->indices_latents_history_long = s->h->idx_long;
}

static void swap(float **a, float **b) {
    float *t = *a;
    *a = *b, *b = t;
}

hl_status hl_distill_sample(const hl_ctx *ctx, hl_distill_sampler *s, const hl_dit *m,
                            const float *text, const float *noise, hl_rng *g, hl_distill_run *run,
                            float *x0) {
    const hl_distill_shape *sh = &s->shape;
    hl_error *err = ctx->err;
    int64_t planes = (int64_t)sh->C * sh->F;
    int h = sh->H, w = sh->W;
    run->out_tape = NULL;
    run->out_sigma = 0;
    memcpy(s->x, noise, (size_t)(planes * h * w) * sizeof(float));
    for (int k = 1; k < sh->levels; k++) { /* the start noise at level 0's size */
        HL_TRY(hl_pyramid_down2x(s->x, planes, h, w, 2.0f, s->next, err));
        h /= 2, w /= 2;
        swap(&s->x, &s->next);
    }
    for (int k = 0; k < sh->levels; k++) {
        if (k > 0) { /* up-sample the level's x0, re-noise with block noise */
            hl_pyramid_up2x_nearest(s->x, planes, h, w, s->up);
            HL_TRY(hl_pyramid_sample_block_noise(g, sh->sched.gamma, planes, h, w, HL_F32, s->noise,
                                                 err));
            h *= 2, w *= 2;
            double alpha, beta;
            hl_sched_renoise_coeffs(&s->sched, k, &alpha, &beta);
            hl_pyramid_renoise(s->up, s->noise, planes * h * w, alpha, beta, s->x);
        }
        int64_t n = planes * h * w;
        memcpy(s->start, s->x, (size_t)n * sizeof(float));
        const hl_schedule *sc = hl_distill_level_schedule(s, k);
        int e = run->exit[k] < 0 || run->exit[k] >= sc->n ? sc->n - 1 : run->exit[k];
        bool final = k == sh->levels - 1;
        for (int i = 0; i <= e; i++) {
            double t = sc->timesteps[i];
            s->ts = (double)hl_sched_model_timestep(t);
            helios_dit_input in;
            hl_distill_dit_input(s, s->x, h, w, &s->ts, text, &in);
            if (final && i == e && run->tape) {
                HL_TRY(hl_dit_forward_train(ctx, m, &in, run->recompute, &run->out_tape, s->v));
                run->out_sigma = hl_dmd_sigma_for(sc, t);
            } else {
                HL_TRY(hl_dit_forward(ctx, m, &in, NULL, s->v));
            }
            /* the exit step is the level's last: its output is x0 */
            float *dst = final && i == e ? x0 : s->next;
            HL_TRY(hl_dmd_step(sc, i, t, sc->timesteps, i == e ? i + 1 : sc->n, n, s->v, s->x,
                               s->start, dst, err));
            if (!(final && i == e)) swap(&s->x, &s->next);
        }
    }
    return HL_OK;
}

/* ---- the reference samplers (hl_loop: what helios generate runs) ------------------------- */

typedef struct capture {
    const hl_distill_shape *sh;
    int n_cond, steps;
    float **start, **end;
} capture;

static void on_probe(void *user, const char *name, const float *x, int64_t rows, int64_t cols) {
    const capture *c = user;
    int i;
    char tail[32];
    int64_t n = rows * cols;
    if (sscanf(name, "call%d.%31s", &i, tail) == 2 && !strcmp(tail, "hidden_states")) {
        int per = c->n_cond * c->steps; /* calls per level */
        if (c->start && i % per == 0 && i / per < c->sh->levels && c->start[i / per])
            memcpy(c->start[i / per], x, (size_t)n * sizeof *x);
    } else if (sscanf(name, "step%d.%31s", &i, tail) == 2 && !strcmp(tail, "prev_sample")) {
        if (c->end && (i + 1) % c->steps == 0 && i / c->steps < c->sh->levels &&
            c->end[i / c->steps])
            memcpy(c->end[i / c->steps], x, (size_t)n * sizeof *x);
    }
}

static hl_status run_loop(const hl_ctx *ctx, const hl_dit *m, const hl_loop_config *c,
                          const float *text, const float *neg, int L, const hl_history *hist,
                          const hl_probe *probe, float *x0) {
    hl_loop *l;
    HL_TRY(hl_loop_new(ctx, m, c, text, neg, L, hist, NULL, &l));
    if (probe) hl_loop_set_probe(l, probe);
    hl_loop_event ev = {0};
    hl_status st = HL_OK;
    while (st == HL_OK && !ev.chunk_done) st = hl_loop_step(l, &ev);
    if (st == HL_OK)
        memcpy(x0, ev.latents,
               (size_t)c->latent_frames * c->height * c->width * (size_t)m->cfg.in_channels *
                   sizeof(float));
    hl_loop_free(l);
    return st;
}

static void loop_config(const hl_distill_shape *sh, uint64_t seed, hl_loop_config *c) {
    hl_loop_config_default(c);
    c->pyramid = true;
    c->n_stages = sh->levels;
    c->latent_frames = sh->F;
    for (int i = 0; i < 3; i++) c->history_sizes[i] = sh->history_sizes[i];
    c->height = sh->H, c->width = sh->W;
    c->seed = seed;
    c->cfg_zero_star = false;
    c->use_zero_init = false;
}

hl_status hl_distill_teacher_sample(const hl_ctx *ctx, const hl_distill_shape *sh,
                                    const hl_dit *teacher, const float *text, uint64_t seed,
                                    const hl_history *hist, float **start, float **end, float *x0) {
    hl_loop_config c;
    loop_config(sh, seed, &c);
    hl_sched_config_default(&c.sched, HL_SCHED_UNIPC);
    c.sched.stages = sh->sched.stages;
    c.sched.n_stage_range = sh->sched.n_stage_range;
    memcpy(c.sched.stage_range, sh->sched.stage_range, sizeof c.sched.stage_range);
    c.sched.gamma = sh->sched.gamma;
    c.sched.use_dynamic_shifting = sh->sched.use_dynamic_shifting;
    c.sched.time_shift_type = sh->sched.time_shift_type;
    for (int k = 0; k < sh->levels; k++) c.stage_steps[k] = sh->teacher_steps;
    c.guidance_scale = sh->teacher_guidance;
    c.amplify_first_chunk = false;
    bool cfg = c.guidance_scale > 1.0;
    size_t tn = (size_t)sh->L * (size_t)teacher->cfg.text_dim;
    float *neg = cfg ? calloc(tn, sizeof *neg) : NULL;
    if (cfg && !neg) return hl_fail(ctx->err, HELIOS_ERR_OOM, "teacher sample: out of memory");
    capture cap = {sh, cfg ? 2 : 1, sh->teacher_steps, start, end};
    hl_probe probe = {on_probe, &cap};
    hl_status st = run_loop(ctx, teacher, &c, text, neg, sh->L, hist, &probe, x0);
    free(neg);
    return st;
}

hl_status hl_distill_student_sample(const hl_ctx *ctx, hl_distill_sampler *s, const hl_dit *m,
                                    const float *text, uint64_t seed, float *x0) {
    hl_loop_config c;
    loop_config(&s->shape, seed, &c);
    c.sched = s->shape.sched;
    for (int k = 0; k < s->shape.levels; k++) c.stage_steps[k] = s->shape.steps[k];
    c.guidance_scale = 1.0;
    c.amplify_first_chunk = s->shape.amplify;
    return run_loop(ctx, m, &c, text, NULL, s->shape.L, NULL, NULL, x0);
}

/* ---- weights, evidence, logs ----------------------------------------------------------- */

hl_status hl_distill_load_weights(const char *path, const hl_params *layout, float *w,
                                  hl_error *err) {
    char t[4096];
    struct stat st;
    snprintf(t, sizeof t, "%s/transformer", path);
    const char *dir = stat(t, &st) == 0 && S_ISDIR(st.st_mode) ? t : path;
    hl_weights *wt;
    HL_TRY(hl_weights_open(dir, &wt, err));
    hl_status s = hl_params_load(layout, w, wt, err);
    hl_weights_close(wt);
    return s;
}

hl_status hl_distill_eval_init(hl_distill_eval *e, const hl_ctx *ctx, const hl_distill_shape *shape,
                               const hl_dit *teacher, const float *prompts, int E, uint64_t seed0,
                               hl_error *err) {
    memset(e, 0, sizeof *e);
    e->E = E, e->seed0 = seed0, e->prompts = prompts;
    size_t n = (size_t)shape->C * shape->F * shape->H * shape->W;
    if (!(e->teacher = malloc((size_t)(E ? E : 1) * n * sizeof(float))))
        return hl_fail(err, HELIOS_ERR_OOM, "distillation: out of memory");
    size_t tn = (size_t)shape->L * (size_t)teacher->cfg.text_dim;
    for (int i = 0; i < E; i++)
        HL_TRY(hl_distill_teacher_sample(ctx, shape, teacher, prompts + (size_t)i * tn,
                                         seed0 + (uint64_t)i, NULL, NULL, NULL,
                                         e->teacher + i * n));
    return HL_OK;
}

void hl_distill_eval_free(hl_distill_eval *e) {
    free(e->teacher);
    memset(e, 0, sizeof *e);
}

hl_status hl_distill_eval_distance(const hl_distill_eval *e, const hl_ctx *ctx,
                                   hl_distill_sampler *s, const hl_dit *m, double *rms) {
    const hl_distill_shape *sh = &s->shape;
    size_t n = (size_t)sh->C * sh->F * sh->H * sh->W, tn = (size_t)sh->L * m->cfg.text_dim;
    float *x = malloc(n * sizeof *x);
    if (!x) return hl_fail(ctx->err, HELIOS_ERR_OOM, "distillation: out of memory");
    double sum = 0;
    hl_status st = HL_OK;
    for (int i = 0; i < e->E && st == HL_OK; i++) {
        st = hl_distill_student_sample(ctx, s, m, e->prompts + i * tn, e->seed0 + (uint64_t)i, x);
        for (size_t j = 0; st == HL_OK && j < n; j++) {
            double d = (double)x[j] - (double)e->teacher[i * n + j];
            sum += d * d;
        }
    }
    free(x);
    *rms = e->E ? sqrt(sum / ((double)e->E * (double)n)) : 0.0;
    return st;
}

hl_status hl_distill_truncate_log(const char *path, int64_t last, hl_error *err) {
    if (!hl_file_is_regular(path)) return HL_OK;
    char *buf;
    size_t len;
    HL_TRY(hl_file_read_all(path, (size_t)1 << 32, "log", &buf, &len, err));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        free(buf);
        return hl_fail(err, HELIOS_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    for (char *line = buf; *line;) {
        char *nl = strchr(line, '\n');
        size_t k = nl ? (size_t)(nl - line + 1) : strlen(line);
        char *end;
        long long step = strtoll(line, &end, 10);
        if (nl && (end == line || step <= last)) fwrite(line, 1, k, f); /* headers stay */
        line += k;
    }
    free(buf);
    int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0)
        return hl_fail(err, HELIOS_ERR_IO, "%s: cannot rewrite: %s", path, strerror(errno));
    return HL_OK;
}
