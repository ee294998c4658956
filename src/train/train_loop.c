#include "train/train_loop.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/parallel.h"

uint64_t hl_hash_bytes(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static hl_status check_config(const hl_train_config *c, const float *ema, hl_error *err) {
    const char *bad = NULL;
    if (c->steps < 0) bad = "steps < 0";
    else if (c->batch < 1) bad = "batch < 1";
    else if (c->micro_batches < 1) bad = "micro_batches < 1";
    else if (!(c->ema_decay >= 0 && c->ema_decay < 1)) bad = "ema_decay outside [0, 1)";
    else if (c->ema_decay > 0 && !ema) bad = "ema_decay > 0 without an EMA buffer";
    else if (!(c->adamw.beta1 >= 0 && c->adamw.beta1 < 1 && c->adamw.beta2 >= 0 &&
               c->adamw.beta2 < 1))
        bad = "betas outside [0, 1)";
    else if (!(c->adamw.eps > 0) || !(c->adamw.weight_decay >= 0)) bad = "eps or weight_decay";
    else if (!(c->lr.lr >= 0) || !(c->lr.min_lr >= 0) || c->lr.warmup < 0) bad = "learning rate";
    else if (c->checkpoint_every < 0 || c->validation_every < 0 || c->keep < 0)
        bad = "checkpoint_every, validation_every or keep < 0";
    else if (!c->io.out_dir || !c->io.component || !c->io.weights_name || !c->io.layout)
        bad = "output folder, component or layout missing";
    if (bad) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "train: %s", bad);
    return HL_OK;
}

typedef struct run {
    const hl_train_config *c;
    int64_t n;
    float *grads;
    hl_adamw opt;
    hl_rng rng;
    int64_t step, samples, last_ckpt;
    double loss;
} run;

static hl_status save(run *r, const float *params, const float *ema, char *path, size_t cap,
                      hl_error *err) {
    hl_ckpt_state st = {r->step, r->samples, r->c->config_hash, r->loss, r->rng};
    HL_TRY(hl_ckpt_save(&r->c->io, params, &r->opt, r->c->ema_decay > 0 ? ema : NULL, &st, err));
    r->last_ckpt = r->step;
    snprintf(path, cap, "%s/checkpoint-%lld", r->c->io.out_dir, (long long)r->step);
    return hl_ckpt_prune(r->c->io.out_dir, r->c->keep, err);
}

/* Restores from the newest complete checkpoint; *found = false when there is none. */
static hl_status restore(run *r, float *params, float *ema, bool *found, hl_error *err) {
    const hl_train_config *c = r->c;
    char dir[4096];
    int64_t step;
    int removed = 0;
    *found = false;
    HL_TRY(hl_ckpt_clean(c->io.out_dir, &removed, err));
    if (removed)
        HL_INFO("train: removed %d incomplete checkpoint(s) in %s", removed, c->io.out_dir);
    HL_TRY(hl_ckpt_latest(c->io.out_dir, &step, dir, sizeof dir, err));
    if (step < 0) {
        if (c->resume) HL_INFO("train: no checkpoint in %s, starting from step 0", c->io.out_dir);
        return HL_OK;
    }
    if (!c->resume)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "train: %s already holds checkpoints (newest %s): resume it or choose "
                       "another output folder",
                       c->io.out_dir, dir);
    hl_ckpt_state st;
    hl_status s = hl_ckpt_load(&c->io, dir, params, &r->opt, c->ema_decay > 0 ? ema : NULL, &st,
                               err);
    if (s != HL_OK) {
        hl_error_prefix(err, "train: resuming from %s", dir);
        return s;
    }
    if (st.config_hash != c->config_hash)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "train: %s was written by another configuration (hash %016llx, this one "
                       "%016llx): resume with the configuration that wrote it, or start a new "
                       "output folder",
                       dir, (unsigned long long)st.config_hash, (unsigned long long)c->config_hash);
    r->step = r->last_ckpt = st.step;
    r->samples = st.samples;
    r->rng = st.rng;
    r->loss = st.loss;
    *found = true;
    HL_INFO("train: resuming from %s (step %lld, %lld samples)", dir, (long long)st.step,
            (long long)st.samples);
    return HL_OK;
}

typedef struct scale_args {
    float *g;
    float k;
} scale_args;

static void scale_slice(int64_t begin, int64_t end, void *arg) {
    const scale_args *a = arg;
    for (int64_t i = begin; i < end; i++) a->g[i] *= a->k;
}

/* One optimizer step: accumulate, average, clip, AdamW, EMA. */
static hl_status one_step(run *r, hl_train_step_fn fn, void *obj, float *params, float *ema,
                          double *lr, double *gnorm, hl_error *err) {
    const hl_train_config *c = r->c;
    memset(r->grads, 0, (size_t)r->n * sizeof *r->grads);
    int64_t nb = (int64_t)c->batch * c->micro_batches;
    double sum = 0;
    for (int64_t k = 0; k < nb; k++) {
        double l = 0;
        hl_status s = fn(obj, &r->rng, r->samples, params, r->grads, &l, err);
        if (s != HL_OK) {
            hl_error_prefix(err, "train: step %lld, sample %lld", (long long)r->step + 1,
                            (long long)r->samples);
            return s;
        }
        sum += l;
        r->samples++;
    }
    if (nb > 1) hl_parallel_for(r->n, scale_slice, &(scale_args){r->grads, (float)(1.0 / nb)});
    r->loss = sum / (double)nb;
    *gnorm = hl_clip_grad_norm(r->grads, r->n, c->clip);
    if (!isfinite(r->loss) || !isfinite(*gnorm))
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "train: non-finite %s (NaN or Inf) at step %lld; the weights were not "
                       "updated (lower the learning rate or check the data)",
                       isfinite(r->loss) ? "gradient" : "loss", (long long)r->step + 1);
    *lr = hl_lr_at(&c->lr, r->step);
    if (!c->updates || c->updates(obj, r->step)) {
        hl_adamw_step(&r->opt, &c->adamw, *lr, params, r->grads);
        if (c->ema_decay > 0) hl_ema_update(ema, params, r->n, c->ema_decay);
    }
    r->step++;
    return HL_OK;
}

static bool stop_requested(const hl_train_config *c) { return c->stop && *c->stop; }

hl_status hl_train_run(const hl_train_config *cfg, hl_train_step_fn fn,
                       hl_train_validate_fn validate, void *obj, float *params, float *ema,
                       hl_train_result *res, hl_error *err) {
    memset(res, 0, sizeof *res);
    HL_TRY(check_config(cfg, ema, err));
    hl_train_config c = *cfg;
    if (c.lr.total == 0) c.lr.total = c.steps;
    run r = {.c = &c, .n = c.io.layout->total, .last_ckpt = -1};
    r.grads = calloc(r.n ? (size_t)r.n : 1, sizeof *r.grads);
    if (!r.grads) return hl_fail(err, HELIOS_ERR_OOM, "train: out of memory for the gradients");
    hl_status s = hl_adamw_init(&r.opt, r.n, err);
    if (s != HL_OK) {
        free(r.grads);
        return s;
    }
    r.rng.path = HL_RNG_NORMAL_AVX2;
    hl_rng_seed(&r.rng, c.seed);
    bool resumed = false;
    s = restore(&r, params, ema, &resumed, err);
    if (s == HL_OK && !resumed && c.ema_decay > 0) memcpy(ema, params, (size_t)r.n * sizeof *ema);
    res->first_step = r.step;
    double t0 = hl_time();
    int64_t samples0 = r.samples;
    char ckpt[4096], sample[4096];
    while (s == HL_OK && r.step < c.steps && !stop_requested(&c)) {
        hl_train_progress p = {0};
        s = one_step(&r, fn, obj, params, ema, &p.lr, &p.grad_norm, err);
        if (s != HL_OK) break;
        if (validate && c.validation_every > 0 && r.step % c.validation_every == 0) {
            sample[0] = '\0';
            s = validate(obj, r.step, params, c.ema_decay > 0 ? ema : NULL, &p.validation_loss,
                         sample, sizeof sample, err);
            if (s != HL_OK) break;
            p.has_validation = true;
            p.validation_sample = sample;
        }
        if ((c.checkpoint_every > 0 && r.step % c.checkpoint_every == 0) || r.step == c.steps ||
            stop_requested(&c)) {
            s = save(&r, params, ema, ckpt, sizeof ckpt, err);
            if (s != HL_OK) break;
            p.checkpoint = ckpt;
        }
        double el = hl_time() - t0;
        p.step = r.step;
        p.steps = c.steps;
        p.samples = r.samples;
        p.loss = r.loss;
        p.samples_per_s = el > 0 ? (double)(r.samples - samples0) / el : 0;
        p.eta_s = el / (double)(r.step - res->first_step) * (double)(c.steps - r.step);
        if (c.report) c.report(c.report_user, &p);
    }
    /* stopped before a step began, or nothing to do: the state still gets its checkpoint */
    if (s == HL_OK && r.last_ckpt != r.step) s = save(&r, params, ema, ckpt, sizeof ckpt, err);
    res->steps_done = r.step;
    res->stopped = r.step < c.steps;
    res->last_loss = r.loss;
    hl_adamw_free(&r.opt);
    free(r.grads);
    return s;
}
