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
    else if (c->checkpoint_every < 0 || c->validation_every < 0 || c->keep < 0 || c->ema_start < 0)
        bad = "checkpoint_every, validation_every, keep or ema_start < 0";
    else if (!c->io.out_dir || !c->io.component || !c->io.weights_name || !c->io.layout)
        bad = "output folder, component or layout missing";
    else if ((c->train_begin || c->train_end) &&
             !(c->train_begin >= 0 && c->train_begin < c->train_end &&
               c->train_end <= c->io.layout->total))
        bad = "trained range outside the parameters";
    if (bad) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "train: %s", bad);
    return HL_OK;
}

typedef struct run {
    const hl_train_config *c;
    hl_dist dist; /* *c->dist, or a single process */
    int64_t n;
    float *grads;
    float *mb_grads; /* one micro-batch's gradient, added to grads in order; NULL: grads itself */
    double *mine, *exch; /* [batch + 1], [world * (batch + 1)]: a rank's status and losses */
    hl_adamw opt;
    int64_t step, samples, last_ckpt;
    double loss;
    void *user; /* what c->updates and c->sync get */
} run;

/* The generator of sample `index`: MT19937 keyed by (seed, index), so a sample draws the same
 * numbers whichever process runs it and whatever ran before it. */
static void sample_rng(hl_rng *g, uint64_t seed, int64_t index) {
    const uint32_t key[4] = {(uint32_t)seed, (uint32_t)(seed >> 32), (uint32_t)index,
                             (uint32_t)((uint64_t)index >> 32)};
    g->path = HL_RNG_NORMAL_AVX2;
    hl_rng_seed_array(g, key, 4);
}

static hl_status save(run *r, const float *params, const float *ema, char *path, size_t cap,
                      hl_error *err) {
    hl_ckpt_state st = {r->step, r->samples, r->c->config_hash, r->loss};
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

/* The micro-batch of samples [first, first + batch) through c->batch_step, into g and row. */
static hl_status batch_at_once(run *r, void *obj, const float *params, int64_t first, float *g,
                               double *row, hl_error *err) {
    const hl_train_config *c = r->c;
    hl_rng *rngs = malloc((size_t)c->batch * sizeof *rngs);
    int64_t *idx = malloc((size_t)c->batch * sizeof *idx);
    hl_status s = rngs && idx ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "train: out of memory");
    for (int b = 0; s == HL_OK && b < c->batch; b++) {
        idx[b] = first + b;
        sample_rng(&rngs[b], c->seed, idx[b]);
        row[1 + b] = 0;
    }
    if (s == HL_OK) s = c->batch_step(obj, c->batch, rngs, idx, params, g, row + 1, err);
    if (s != HL_OK) {
        hl_error_prefix(err, "train: step %lld, samples %lld-%lld", (long long)r->step + 1,
                        (long long)first, (long long)(first + c->batch - 1));
        row[0] = 1;
    }
    free(rngs);
    free(idx);
    return s;
}

/* Runs micro-batch j of this rank (global micro-batch j * world + rank) into g; the exchange row
 * gets the status and the samples' losses. */
static hl_status micro_batch(run *r, hl_train_step_fn fn, void *obj, const float *params, int64_t j,
                             float *g, double *row, hl_error *err) {
    const hl_train_config *c = r->c;
    int64_t first = r->samples + (j * r->dist.world + r->dist.rank) * c->batch;
    if (g != r->grads) memset(g, 0, (size_t)r->n * sizeof *g);
    row[0] = 0;
    if (c->batch_step && c->batch > 1) return batch_at_once(r, obj, params, first, g, row, err);
    for (int b = 0; b < c->batch; b++) {
        hl_rng rng;
        sample_rng(&rng, c->seed, first + b);
        double l = 0;
        hl_status s = fn(obj, &rng, first + b, params, g, &l, err);
        if (s != HL_OK) {
            hl_error_prefix(err, "train: step %lld, sample %lld", (long long)r->step + 1,
                            (long long)(first + b));
            row[0] = 1;
            return s;
        }
        row[1 + b] = l;
    }
    return HL_OK;
}

/* The hook's status s to every rank (in the exchange rows, free again after a micro-batch): all
 * fail when one did, none waits for a failed one. */
static hl_status sync_status(run *r, hl_status s, const char *hook, hl_error *err) {
    int w = r->dist.world;
    if (w == 1) return s;
    r->mine[0] = s != HL_OK;
    hl_status x = hl_dist_allgather(&r->dist, r->mine, sizeof *r->mine, r->exch,
                                    s == HL_OK ? err : &(hl_error){0});
    if (s != HL_OK) return s;
    HL_TRY(x);
    for (int k = 0; k < w; k++)
        if (r->exch[k] != 0)
            return hl_fail(err, HELIOS_ERR_INTERNAL,
                           "train: step %lld: rank %d of %d failed in the objective's %s (its "
                           "message is in its output)",
                           (long long)r->step + 1, k, w, hook);
    return HL_OK;
}

/* The objective's hooks (c->sync), each followed by the status exchange; absent ones succeed. */
static hl_status sync_start(run *r, bool resumed, hl_error *err) {
    const hl_train_sync *h = r->c->sync;
    if (!h || !h->start) return HL_OK;
    return sync_status(r, h->start(r->user, &r->dist, resumed, err), "start", err);
}

static hl_status sync_micro_batch(run *r, int64_t j, hl_error *err) {
    const hl_train_sync *h = r->c->sync;
    if (!h || !h->micro_batch) return HL_OK;
    return sync_status(r, h->micro_batch(r->user, &r->dist, r->step, j, err), "micro_batch", err);
}

static hl_status sync_step_end(run *r, hl_error *err) {
    const hl_train_sync *h = r->c->sync;
    if (!h || !h->step_end) return HL_OK;
    return sync_status(r, h->step_end(r->user, &r->dist, r->step, err), "step_end", err);
}

/* One optimizer step: accumulate (every rank's micro-batches, in the order of one process),
 * average, clip, AdamW, EMA. */
static hl_status one_step(run *r, hl_train_step_fn fn, void *obj, float *params, float *ema,
                          double *lr, double *gnorm, hl_error *err) {
    const hl_train_config *c = r->c;
    int w = r->dist.world;
    size_t row = (size_t)c->batch + 1;
    memset(r->grads, 0, (size_t)r->n * sizeof *r->grads);
    int64_t nb = (int64_t)c->batch * c->micro_batches * w;
    double sum = 0;
    for (int64_t j = 0; j < c->micro_batches; j++) {
        float *g = r->mb_grads ? r->mb_grads : r->grads;
        hl_status s = micro_batch(r, fn, obj, params, j, g, r->mine, err);
        /* every rank learns every status and loss (and no rank waits for a failed one) */
        hl_status x = hl_dist_allgather(&r->dist, r->mine, row * sizeof *r->mine, r->exch,
                                        s == HL_OK ? err : &(hl_error){0});
        if (s != HL_OK) return s;
        if (x != HL_OK) return x;
        for (int k = 0; k < w; k++)
            if (r->exch[(size_t)k * row] != 0)
                return hl_fail(err, HELIOS_ERR_INTERNAL,
                               "train: step %lld: rank %d of %d failed (its message is in its "
                               "output)",
                               (long long)r->step + 1, k, w);
        for (int k = 0; k < w; k++)
            for (int b = 0; b < c->batch; b++) sum += r->exch[(size_t)k * row + 1 + (size_t)b];
        if (r->mb_grads) HL_TRY(hl_dist_ordered_add_f32(&r->dist, r->grads, g, r->n, err));
        HL_TRY(sync_micro_batch(r, j, err));
    }
    HL_TRY(sync_step_end(r, err));
    r->samples += nb;
    if (nb > 1) hl_parallel_for(r->n, scale_slice, &(scale_args){r->grads, (float)(1.0 / nb)});
    r->loss = sum / (double)nb;
    *gnorm = hl_clip_grad_norm(r->grads, r->n, c->clip);
    if (!isfinite(r->loss) || !isfinite(*gnorm))
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "train: non-finite %s (NaN or Inf) at step %lld; the weights were not "
                       "updated (lower the learning rate or check the data)",
                       isfinite(r->loss) ? "gradient" : "loss", (long long)r->step + 1);
    *lr = hl_lr_at(&c->lr, r->step);
    if (!c->updates || c->updates(r->user, r->step)) {
        int64_t b = c->train_end ? c->train_begin : 0, e = c->train_end ? c->train_end : r->n;
        hl_adamw_step_range(&r->opt, &c->adamw, *lr, params, r->grads, b, e);
        if (c->ema_decay > 0 && r->step < c->ema_start)
            memcpy(ema + b, params + b, (size_t)(e - b) * sizeof *ema);
        else if (c->ema_decay > 0) hl_ema_update(ema + b, params + b, e - b, c->ema_decay);
    }
    r->step++;
    return HL_OK;
}

static bool stop_requested(const hl_train_config *c) { return c->stop && *c->stop; }

/* Rank 0's start to every rank: whether it failed, then the weights (the initial ones too), and
 * after a resume the EMA, the moments and the counters. */
static hl_status share_start(run *r, hl_status s0, bool *resumed, float *params, float *ema,
                             hl_error *err) {
    if (r->dist.world == 1) return s0;
    int32_t head[2] = {s0 != HL_OK, *resumed};
    hl_status b = hl_dist_bcast(&r->dist, head, sizeof head, s0 == HL_OK ? err : &(hl_error){0});
    if (s0 != HL_OK) return s0;
    HL_TRY(b);
    if (head[0])
        return hl_fail(err, HELIOS_ERR_INTERNAL,
                       "train: rank 0 could not start the run (its message is in its output)");
    *resumed = head[1];
    size_t bytes = (size_t)r->n * sizeof(float);
    HL_TRY(hl_dist_bcast(&r->dist, params, bytes, err));
    if (!*resumed) return HL_OK;
    if (r->c->ema_decay > 0) HL_TRY(hl_dist_bcast(&r->dist, ema, bytes, err));
    HL_TRY(hl_dist_bcast(&r->dist, r->opt.m, bytes, err));
    HL_TRY(hl_dist_bcast(&r->dist, r->opt.v, bytes, err));
    int64_t k[4] = {r->opt.step, r->step, r->samples, r->last_ckpt};
    double loss = r->loss;
    HL_TRY(hl_dist_bcast(&r->dist, k, sizeof k, err));
    HL_TRY(hl_dist_bcast(&r->dist, &loss, sizeof loss, err));
    r->opt.step = k[0], r->step = k[1], r->samples = k[2], r->last_ckpt = k[3], r->loss = loss;
    return HL_OK;
}

/* Rank 0's flag (stop, or a failure after a step) to every rank. */
static hl_status share_flag(run *r, bool *flag, hl_error *err) {
    if (r->dist.world == 1) return HL_OK;
    int32_t f = *flag;
    HL_TRY(hl_dist_bcast(&r->dist, &f, sizeof f, err));
    *flag = f;
    return HL_OK;
}

/* After step r->step on rank 0: validation, checkpoint, progress report. */
static hl_status after_step(run *r, hl_train_validate_fn validate, void *obj, const float *params,
                            const float *ema, hl_train_progress *p, double t0, int64_t first_step,
                            int64_t samples0, char *ckpt, size_t cap, char *sample, size_t scap,
                            hl_error *err) {
    const hl_train_config *c = r->c;
    if (validate && c->validation_every > 0 && r->step % c->validation_every == 0) {
        sample[0] = '\0';
        HL_TRY(validate(obj, r->step, params, c->ema_decay > 0 ? ema : NULL, &p->validation_loss,
                        sample, scap, err));
        p->has_validation = true;
        p->validation_sample = sample;
    }
    if ((c->checkpoint_every > 0 && r->step % c->checkpoint_every == 0) || r->step == c->steps ||
        stop_requested(c)) {
        HL_TRY(save(r, params, ema, ckpt, cap, err));
        p->checkpoint = ckpt;
    }
    double el = hl_time() - t0;
    p->step = r->step;
    p->steps = c->steps;
    p->samples = r->samples;
    p->loss = r->loss;
    p->samples_per_s = el > 0 ? (double)(r->samples - samples0) / el : 0;
    p->eta_s = el / (double)(r->step - first_step) * (double)(c->steps - r->step);
    if (c->report) c->report(c->report_user, p);
    return HL_OK;
}

static void run_free(run *r) {
    hl_adamw_free(&r->opt);
    free(r->grads);
    free(r->mb_grads);
    free(r->mine);
    free(r->exch);
}

hl_status hl_train_run(const hl_train_config *cfg, hl_train_step_fn fn,
                       hl_train_validate_fn validate, void *obj, float *params, float *ema,
                       hl_train_result *res, hl_error *err) {
    memset(res, 0, sizeof *res);
    HL_TRY(check_config(cfg, ema, err));
    hl_train_config c = *cfg;
    if (c.lr.total == 0) c.lr.total = c.steps;
    run r = {.c = &c, .n = c.io.layout->total, .last_ckpt = -1, .user = c.hook_user};
    if (!r.user) r.user = obj;
    if (c.dist) r.dist = *c.dist;
    else hl_dist_single(&r.dist);
    bool lead = r.dist.rank == 0;
    size_t nf = r.n ? (size_t)r.n : 1, row = (size_t)c.batch + 1;
    r.grads = calloc(nf, sizeof *r.grads);
    if (c.micro_batches * (int64_t)r.dist.world > 1) r.mb_grads = calloc(nf, sizeof *r.mb_grads);
    r.mine = calloc(row, sizeof *r.mine);
    r.exch = calloc(row * (size_t)r.dist.world, sizeof *r.exch);
    hl_status s = HL_OK;
    if (!r.grads || !r.mine || !r.exch ||
        (c.micro_batches * (int64_t)r.dist.world > 1 && !r.mb_grads))
        s = hl_fail(err, HELIOS_ERR_OOM, "train: out of memory for the gradients");
    if (s == HL_OK) s = hl_adamw_init(&r.opt, r.n, err);
    if (s != HL_OK) {
        run_free(&r);
        return s;
    }
    bool resumed = false;
    if (lead) s = restore(&r, params, ema, &resumed, err);
    s = share_start(&r, s, &resumed, params, ema, err);
    if (s == HL_OK) s = sync_start(&r, resumed, err);
    if (s == HL_OK && !resumed && c.ema_decay > 0) memcpy(ema, params, (size_t)r.n * sizeof *ema);
    res->first_step = r.step;
    double t0 = hl_time();
    int64_t samples0 = r.samples;
    char ckpt[4096], sample[4096];
    while (s == HL_OK && r.step < c.steps) {
        bool stop = lead && stop_requested(&c); /* rank 0 decides, every rank stops */
        if ((s = share_flag(&r, &stop, err)) != HL_OK || stop) break;
        hl_train_progress p = {0};
        s = one_step(&r, fn, obj, params, ema, &p.lr, &p.grad_norm, err);
        if (s != HL_OK) break;
        if (lead)
            s = after_step(&r, validate, obj, params, ema, &p, t0, res->first_step, samples0, ckpt,
                           sizeof ckpt, sample, sizeof sample, err);
        bool failed = s != HL_OK;
        hl_status b = share_flag(&r, &failed, failed ? &(hl_error){0} : err);
        if (s == HL_OK && b != HL_OK) s = b;
        if (s == HL_OK && failed)
            s = hl_fail(err, HELIOS_ERR_INTERNAL,
                        "train: rank 0 failed after step %lld (its message is in its output)",
                        (long long)r.step);
    }
    /* stopped before a step began, or nothing to do: the state still gets its checkpoint */
    if (s == HL_OK && lead && r.last_ckpt != r.step)
        s = save(&r, params, ema, ckpt, sizeof ckpt, err);
    res->steps_done = r.step;
    res->stopped = r.step < c.steps;
    res->last_loss = r.loss;
    run_free(&r);
    return s;
}
