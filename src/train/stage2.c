#include "train/stage2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample/pyramid.h"

/* ---- the pieces ------------------------------------------------------------------------------ */

hl_status hl_stage2_pyramid_build(const float *x0, const float *noise, int C, int F, int H, int W,
                                  int levels, hl_stage2_pyramid *p, hl_error *err) {
    memset(p, 0, sizeof *p);
    if (!x0 || !noise || C < 1 || F < 1 || levels < 1 || levels > HL_STAGE2_MAX_LEVELS)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage2 pyramid: (%d, %d, %d, %d), %d levels",
                       C, F, H, W, levels);
    int div = 1 << (levels - 1);
    if (H < div || W < div || H % div || W % div)
        return hl_fail(err, HELIOS_ERR_SHAPE,
                       "stage2 pyramid: latent %dx%d does not halve %d times (a multiple of %d)", H,
                       W, levels - 1, div);
    p->levels = levels, p->C = C, p->F = F;
    int64_t planes = (int64_t)C * F;
    for (int s = levels - 1; s >= 0; s--) {
        p->H[s] = H >> (levels - 1 - s), p->W[s] = W >> (levels - 1 - s);
        size_t n = (size_t)planes * (size_t)p->H[s] * (size_t)p->W[s];
        p->latents[s] = malloc(n * sizeof(float));
        p->noise[s] = malloc(n * sizeof(float));
        p->start[s] = malloc(n * sizeof(float));
        p->end[s] = malloc(n * sizeof(float));
        if (!p->latents[s] || !p->noise[s] || !p->start[s] || !p->end[s]) {
            hl_stage2_pyramid_free(p);
            return hl_fail(err, HELIOS_ERR_OOM, "stage2 pyramid: out of memory");
        }
        if (s == levels - 1) {
            memcpy(p->latents[s], x0, n * sizeof(float));
            memcpy(p->noise[s], noise, n * sizeof(float));
            continue;
        }
        /* per (C·F) plane, as the reference's (b t) c h w interpolate */
        hl_status st = hl_pyramid_down2x(p->latents[s + 1], planes, p->H[s + 1], p->W[s + 1], 1.0f,
                                         p->latents[s], err);
        if (st == HL_OK)
            st = hl_pyramid_down2x(p->noise[s + 1], planes, p->H[s + 1], p->W[s + 1], 2.0f,
                                   p->noise[s], err);
        if (st != HL_OK) {
            hl_stage2_pyramid_free(p);
            return st;
        }
    }
    return HL_OK;
}

/* out = a·x + (1 - a)·y in float32, a python float: torch rounds it (and 1 - a) to float32 and
 * rounds each product and the sum. */
static void mix(double a, const float *x, const float *y, size_t n, float *out) {
    float fa = (float)a, fb = (float)(1.0 - a);
    for (size_t i = 0; i < n; i++) {
        float u = fa * x[i]; /* separate statements: no fused multiply-add */
        float v = fb * y[i];
        out[i] = u + v;
    }
}

hl_status hl_stage2_pyramid_paths(hl_stage2_pyramid *p, const double *start_sigma,
                                  const double *end_sigma, hl_error *err) {
    if (!p || p->levels < 1 || !start_sigma || !end_sigma)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage2 paths: bad argument");
    int L = p->levels;
    int64_t planes = (int64_t)p->C * p->F;
    for (int s = 0; s < L; s++) {
        size_t n = (size_t)planes * (size_t)p->H[s] * (size_t)p->W[s];
        if (s == 0) {
            memcpy(p->start[s], p->noise[s], n * sizeof(float));
        } else { /* the previous level's clean latents, nearest x2, then renoised to ss_s */
            hl_pyramid_up2x_nearest(p->latents[s - 1], planes, p->H[s - 1], p->W[s - 1],
                                    p->start[s]);
            mix(start_sigma[s], p->noise[s], p->start[s], n, p->start[s]);
        }
        if (s == L - 1) memcpy(p->end[s], p->latents[s], n * sizeof(float));
        else mix(end_sigma[s], p->noise[s], p->latents[s], n, p->end[s]);
    }
    return HL_OK;
}

void hl_stage2_pyramid_free(hl_stage2_pyramid *p) {
    for (int s = 0; s < HL_STAGE2_MAX_LEVELS; s++)
        free(p->latents[s]), free(p->noise[s]), free(p->start[s]), free(p->end[s]);
    memset(p, 0, sizeof *p);
}

void hl_stage2_noisy(const float *start, const float *end, double sigma, int64_t n, float *noisy,
                     float *target) {
    double keep = 1.0 - sigma; /* (1 - sigmas) is a float64 tensor in the reference */
    for (int64_t i = 0; i < n; i++) {
        double a = sigma * (double)start[i]; /* separate statements: no fused multiply-add */
        double b = keep * (double)end[i];
        noisy[i] = (float)(a + b);
        target[i] = start[i] - end[i];
    }
}

hl_status hl_stage2_time_at(const hl_sched *sched, int level, const hl_tdraw *d, hl_stage2_time *t,
                            hl_error *err) {
    if (!sched || !d || !t || level < 0 || level >= sched->cfg.stages || d->index < 0 ||
        d->index >= sched->n_train)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage2 timestep: level %d, index %lld", level,
                       d ? (long long)d->index : -1LL);
    size_t at = (size_t)level * (size_t)sched->n_train + (size_t)d->index;
    t->level = level;
    t->u_logit = d->u_logit, t->u = d->u;
    t->index = d->index;
    t->sigma = sched->sigmas_per_stage[at];
    t->timestep = sched->timesteps_per_stage[at];
    return HL_OK;
}

double hl_stage2_loss(int K, const int64_t *numel, const float *const *pred,
                      const float *const *target, float *const *dpred, double *loss_k) {
    double total = 0.0;
    for (int k = 0; k < K; k++) {
        const float *p = pred[k], *t = target[k];
        int64_t n = numel[k];
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double d = (double)p[i] - (double)t[i];
            s += d * d;
        }
        double lk = n > 0 ? s / (double)n : 0.0;
        if (loss_k) loss_k[k] = lk;
        total += lk;
        if (dpred && dpred[k] && n > 0) {
            float scale = 2.0f / ((float)K * (float)n), *g = dpred[k];
            for (int64_t i = 0; i < n; i++) g[i] = scale * (p[i] - t[i]);
        }
    }
    return K > 0 ? total / (double)K : 0.0;
}

/* ---- one training example -------------------------------------------------------------------- */

void hl_stage2_config_default(hl_stage2_config *c) {
    memset(c, 0, sizeof *c);
    hl_stage1_config_default(&c->base);
    c->base.tsample.kind = HL_TSAMPLE_UNIFORM;
    hl_sched_config_default(&c->sched, HL_SCHED_UNIPC);
    hl_stage2_ratios_default(c);
}

void hl_stage2_ratios_default(hl_stage2_config *c) {
    for (int s = 0; s < HL_STAGE2_MAX_LEVELS; s++) c->ratios[s] = s < c->sched.stages;
    if (c->sched.stages == 3) c->ratios[1] = 2; /* the released [1, 2, 1] */
}

hl_status hl_stage2_config_check(const hl_stage2_config *c, hl_error *err) {
    HL_TRY(hl_stage1_config_check(&c->base, err));
    const hl_sched_config *sc = &c->sched;
    if (sc->stages < 1 || sc->stages > HL_STAGE2_MAX_LEVELS)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage2: %d pyramid stages (1..%d)", sc->stages,
                       HL_STAGE2_MAX_LEVELS);
    if (sc->use_dynamic_shifting)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED,
                       "stage2: dynamic shifting of the training sigmas is not implemented");
    if (c->base.tsample.num_train_timesteps != sc->num_train_timesteps)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "stage2: timestep sampling over %d steps, scheduler over %d",
                       c->base.tsample.num_train_timesteps, sc->num_train_timesteps);
    int K = 0;
    for (int s = 0; s < sc->stages; s++) {
        if (c->ratios[s] < 0 || c->ratios[s] > HL_STAGE2_MAX_SAMPLES)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage2: sample ratio %d of level %d",
                           c->ratios[s], s);
        K += c->ratios[s];
    }
    if (K < 1 || K > HL_STAGE2_MAX_SAMPLES)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage2: %d samples per clip (1..%d)", K,
                       HL_STAGE2_MAX_SAMPLES);
    return HL_OK;
}

/* Steps 6-7 of the header: the noise, the pyramid and the K samples. */
static hl_status draw_samples(const hl_stage2_config *cfg, const hl_sched *sched, hl_rng *g,
                              hl_stage2_sample *s, hl_error *err) {
    hl_flow_table table; /* only its n is read: the index of a draw */
    HL_TRY(hl_flow_table_init(&table, cfg->base.tsample.num_train_timesteps,
                              cfg->base.tsample.shift, err));
    size_t n = (size_t)s->C * (size_t)s->F * (size_t)s->H * (size_t)s->W;
    s->noise = malloc(n * sizeof(float));
    if (!s->noise) return hl_fail(err, HELIOS_ERR_OOM, "stage2: out of memory");
    hl_rng_randn_f32(g, s->noise, (int64_t)n);
    int L = sched->cfg.stages;
    HL_TRY(hl_stage2_pyramid_build(s->base.x0, s->noise, s->C, s->F, s->H, s->W, L, &s->pyr, err));
    HL_TRY(hl_stage2_pyramid_paths(&s->pyr, sched->start_sigma, sched->end_sigma, err));
    for (int lv = 0; lv < L; lv++)
        for (int r = 0; r < cfg->ratios[lv]; r++) {
            hl_stage2_item *it = &s->items[s->K++];
            it->level = lv, it->H = s->pyr.H[lv], it->W = s->pyr.W[lv];
            size_t m = (size_t)s->C * (size_t)s->F * (size_t)it->H * (size_t)it->W;
            it->noisy = malloc(m * sizeof(float));
            it->target = malloc(m * sizeof(float));
            if (!it->noisy || !it->target)
                return hl_fail(err, HELIOS_ERR_OOM, "stage2: out of memory");
            hl_tdraw d;
            HL_TRY(hl_tsample_draw(&cfg->base.tsample, &table, g, 1, &d, err));
            HL_TRY(hl_stage2_time_at(sched, lv, &d, &it->t, err));
            hl_stage2_noisy(s->pyr.start[lv], s->pyr.end[lv], it->t.sigma, (int64_t)m, it->noisy,
                            it->target);
        }
    return HL_OK;
}

hl_status hl_stage2_sample_make(const hl_stage2_config *cfg, const float *clip, int C, int F_clip,
                                int H, int W, hl_rng *g, hl_stage2_sample *s, hl_error *err) {
    memset(s, 0, sizeof *s);
    HL_TRY(hl_stage2_config_check(cfg, err));
    int div = 1 << (cfg->sched.stages - 1);
    if (H < div || W < div || H % div || W % div)
        return hl_fail(err, HELIOS_ERR_SHAPE,
                       "stage2: latent %dx%d must be a multiple of %d for %d pyramid stages", H, W,
                       div, cfg->sched.stages);
    hl_sched sched;
    HL_TRY(hl_sched_init(&sched, &cfg->sched, err));
    hl_status st = hl_stage1_history_make(&cfg->base, clip, C, F_clip, H, W, g, &s->base, err);
    if (st == HL_OK) {
        s->C = C, s->F = s->base.F, s->H = H, s->W = W;
        st = draw_samples(cfg, &sched, g, s, err);
    }
    if (st == HL_OK && cfg->base.corrupt_history)
        st = hl_corrupt_history(&cfg->base.corrupt, g, &s->base.hist, C, H, W, s->base.n_long,
                                s->base.n_mid, &s->base.corrupt, err);
    hl_sched_free(&sched);
    if (st != HL_OK) hl_stage2_sample_free(s);
    return st;
}

void hl_stage2_sample_free(hl_stage2_sample *s) {
    hl_stage1_sample_free(&s->base);
    free(s->noise);
    hl_stage2_pyramid_free(&s->pyr);
    for (int k = 0; k < HL_STAGE2_MAX_SAMPLES; k++)
        free(s->items[k].noisy), free(s->items[k].target);
    memset(s, 0, sizeof *s);
}

void hl_stage2_dit_input(const hl_stage2_sample *s, int k, const float *text, int text_len,
                         helios_dit_input *in) {
    const hl_stage2_item *it = &s->items[k];
    const hl_stage1_sample *b = &s->base;
    helios_dit_input_init(in);
    in->batch = 1;
    in->frames = s->F, in->height = it->H, in->width = it->W;
    in->hidden_states = it->noisy;
    in->timestep = &it->t.timestep;
    in->text_len = text_len;
    in->encoder_hidden_states = text;
    in->indices_hidden_states = b->hist.idx_cur;
    in->short_frames = 2, in->mid_frames = b->n_mid, in->long_frames = b->n_long;
    in->hist_height = s->H, in->hist_width = s->W;
    in->latents_history_short = b->hist.lat_short;
    in->latents_history_mid = b->hist.lat_mid;
    in->latents_history_long = b->hist.lat_long;
    in->indices_latents_history_short = b->hist.idx_short;
    in->indices_latents_history_mid = b->hist.idx_mid;
    in->indices_latents_history_long = b->hist.idx_long;
}

double hl_stage2_sample_loss(const hl_stage2_sample *s, const float *const *pred,
                             float *const *dpred, double *loss_k) {
    int64_t numel[HL_STAGE2_MAX_SAMPLES];
    const float *target[HL_STAGE2_MAX_SAMPLES];
    for (int k = 0; k < s->K; k++) {
        const hl_stage2_item *it = &s->items[k];
        numel[k] = (int64_t)s->C * s->F * it->H * it->W;
        target[k] = it->target;
    }
    return hl_stage2_loss(s->K, numel, pred, target, dpred, loss_k);
}

hl_status hl_stage2_batch_make(const hl_stage2_sample *const *s, int B, int k, hl_stage2_batch *b,
                               hl_error *err) {
    memset(b, 0, sizeof *b);
    if (!s || B < 1 || k < 0 || k >= s[0]->K)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "stage2 batch: %d clips, sample %d", B, k);
    const hl_stage2_sample *a = s[0];
    const hl_stage2_item *ia = &a->items[k];
    for (int i = 1; i < B; i++) {
        const hl_stage2_item *ii = &s[i]->items[k];
        if (s[i]->C != a->C || s[i]->F != a->F || s[i]->H != a->H || s[i]->W != a->W ||
            s[i]->base.n_long != a->base.n_long || s[i]->base.n_mid != a->base.n_mid ||
            k >= s[i]->K || ii->level != ia->level || ii->H != ia->H || ii->W != ia->W)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "stage2 batch: clip %d is (%d, %d, %d, %d) with history %d/%d and %d "
                           "samples, clip 0 (%d, %d, %d, %d) with %d/%d and %d",
                           i, s[i]->C, s[i]->F, s[i]->H, s[i]->W, s[i]->base.n_long,
                           s[i]->base.n_mid, s[i]->K, a->C, a->F, a->H, a->W, a->base.n_long,
                           a->base.n_mid, a->K);
    }
    b->B = B, b->C = a->C, b->F = a->F, b->level = ia->level, b->h = ia->H, b->w = ia->W;
    b->H = a->H, b->W = a->W, b->n_long = a->base.n_long, b->n_mid = a->base.n_mid;
    size_t frame = (size_t)a->C * (size_t)a->H * (size_t)a->W;
    size_t cur = (size_t)a->C * (size_t)a->F * (size_t)ia->H * (size_t)ia->W;
    int nl = b->n_long ? b->n_long : 1, nm = b->n_mid ? b->n_mid : 1;
    b->noisy = malloc((size_t)B * cur * sizeof(float));
    b->target = malloc((size_t)B * cur * sizeof(float));
    b->lat_long = malloc((size_t)B * (size_t)nl * frame * sizeof(float));
    b->lat_mid = malloc((size_t)B * (size_t)nm * frame * sizeof(float));
    b->lat_short = malloc((size_t)B * 2 * frame * sizeof(float));
    b->timesteps = malloc((size_t)B * sizeof(double));
    b->idx_long = malloc((size_t)nl * sizeof(int64_t));
    b->idx_mid = malloc((size_t)nm * sizeof(int64_t));
    b->idx_short = malloc(2 * sizeof(int64_t));
    b->idx_cur = malloc((size_t)a->F * sizeof(int64_t));
    if (!b->noisy || !b->target || !b->lat_long || !b->lat_mid || !b->lat_short || !b->timesteps ||
        !b->idx_long || !b->idx_mid || !b->idx_short || !b->idx_cur) {
        hl_stage2_batch_free(b);
        return hl_fail(err, HELIOS_ERR_OOM, "stage2 batch: out of memory");
    }
    size_t fl = (size_t)b->n_long * frame, fm = (size_t)b->n_mid * frame, fs = 2 * frame;
    for (int i = 0; i < B; i++) { /* (1, ...) after (1, ...) is (B, ...) */
        const hl_stage2_sample *x = s[i];
        memcpy(b->noisy + (size_t)i * cur, x->items[k].noisy, cur * sizeof(float));
        memcpy(b->target + (size_t)i * cur, x->items[k].target, cur * sizeof(float));
        memcpy(b->lat_long + (size_t)i * fl, x->base.hist.lat_long, fl * sizeof(float));
        memcpy(b->lat_mid + (size_t)i * fm, x->base.hist.lat_mid, fm * sizeof(float));
        memcpy(b->lat_short + (size_t)i * fs, x->base.hist.lat_short, fs * sizeof(float));
        b->timesteps[i] = x->items[k].t.timestep;
    }
    memcpy(b->idx_long, a->base.hist.idx_long, (size_t)b->n_long * sizeof(int64_t));
    memcpy(b->idx_mid, a->base.hist.idx_mid, (size_t)b->n_mid * sizeof(int64_t));
    memcpy(b->idx_short, a->base.hist.idx_short, 2 * sizeof(int64_t));
    memcpy(b->idx_cur, a->base.hist.idx_cur, (size_t)a->F * sizeof(int64_t));
    return HL_OK;
}

void hl_stage2_batch_free(hl_stage2_batch *b) {
    free(b->noisy), free(b->target), free(b->lat_long), free(b->lat_mid), free(b->lat_short);
    free(b->timesteps), free(b->idx_long), free(b->idx_mid), free(b->idx_short), free(b->idx_cur);
    memset(b, 0, sizeof *b);
}

void hl_stage2_batch_dit_input(const hl_stage2_batch *b, const float *text, int text_len,
                               helios_dit_input *in) {
    helios_dit_input_init(in);
    in->batch = b->B;
    in->frames = b->F, in->height = b->h, in->width = b->w;
    in->hidden_states = b->noisy;
    in->timestep = b->timesteps;
    in->text_len = text_len;
    in->encoder_hidden_states = text;
    in->indices_hidden_states = b->idx_cur;
    in->short_frames = 2, in->mid_frames = b->n_mid, in->long_frames = b->n_long;
    in->hist_height = b->H, in->hist_width = b->W;
    in->latents_history_short = b->lat_short;
    in->latents_history_mid = b->lat_mid;
    in->latents_history_long = b->lat_long;
    in->indices_latents_history_short = b->idx_short;
    in->indices_latents_history_mid = b->idx_mid;
    in->indices_latents_history_long = b->idx_long;
}
