/* The "ode_init" objective (spec training.md §6.2, staged ODE initialisation): the student learns
 * to regress, at each pyramid level and each of its own few timesteps, the teacher's state at the
 * end of that level.
 *
 * Trajectories: for j < trajectories, the teacher's multi-step pyramid sample (UniPC with CFG,
 * hl_distill_teacher_sample) of prompt j mod clips from seed trajectory_seed + j, keeping each
 * level's start point S_k and end state E_k. They are cached as OUTPUT cache/traj-NNNN.safetensors
 * (start0.., end0.., written atomically; a file whose metadata "key" does not match the settings
 * is recomputed), so a resumed or repeated run reuses them.
 *
 * The chunk of trajectory j (objective_distill.h): drawn from a generator keyed by
 * (trajectory_seed, j) on clip j mod clips (stage 1's target chunk, history and task mix; nothing
 * drawn with p_t2v = 1): a first chunk (empty history) or a later chunk whose teacher sample
 * continues the history (hl_loop's prepared history; the spec's ODE pairs continue the teacher's
 * own previous chunks, here the real clip's frames stand in for them). The student sees the same
 * history, with the plain schedule for a later chunk and the amplified one for a first chunk.
 *
 * Step: trajectory j = sample mod trajectories, level k and step i uniform from the RNG; the
 * student's input is the state its DMD sampler would hold at step i if every earlier x0 had been
 * E_k: x = S_k at i = 0, else (1 - s_i) E_k + s_i S_k with s_i the DMD sigma of timestep t_i (the
 * sampler's re-noise toward the level's start point); x0 = x - sigma_i v;
 * loss = regression_weight 0.5 mean (x0 - E_k)^2 (the spec's 0.5 MSE x 80). */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/log.h"
#include "dit/tape.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "sample/steps.h"
#include "train/dmd.h"
#include "train/objective_distill.h"

typedef struct ode {
    hl_distill_common c; /* first */
    int T;
    int seed;
    double weight;
    char cache[4096];
    float **start, **end;  /* [T * levels] each, level sizes */
    hl_distill_hist *hist; /* [T] each trajectory's chunk */
    float *x, *v, *dx0;
    int64_t tokens, token_samples; /* tokens the training forwards processed, over samples */
} ode;

void hl_ode_destroy(void *obj);

static int64_t level_numel(const hl_distill_shape *sh, int k) {
    int h, w;
    hl_distill_level_size(sh, k, &h, &w);
    return (int64_t)sh->C * sh->F * h * w;
}

/* The key of a trajectory: everything its numbers depend on. */
static void traj_key(const ode *o, int j, char *out, size_t n) {
    const hl_distill_shape *sh = &o->c.shape;
    snprintf(
        out, n, "teacher=%s;C%dF%dH%dW%dL%d;levels%d;steps%d;guidance%.17g;seed%llu;prompt%lld",
        o->c.teacher_path, sh->C, sh->F, sh->H, sh->W, sh->L, sh->levels, sh->teacher_steps,
        sh->teacher_guidance, (unsigned long long)(o->seed + j), (long long)(j % o->c.data.count));
    const hl_distill_hist *h = &o->hist[j];
    size_t len = strlen(out);
    if (h->drawn &&
        len < n) /* the history: its draw (cache files of first chunks keep their key) */
        snprintf(out + len, n - len, ";clip_chunks%d;task%s;chunk%d;dropped%d;p%.9g,%.9g,%.9g",
                 o->c.clip_chunks, hl_distill_hist_name(h), h->s.chunk, h->s.dropped,
                 (double)o->c.task.p_t2v, (double)o->c.task.p_i2v, (double)o->c.task.p_v2v);
    len = strlen(out);
    if (o->c.cached && len < n) { /* cached clips: their bits (another dataset, other prompts) */
        const hl_synthetic *d = &o->c.data;
        int64_t i = j % d->count;
        size_t ln = (size_t)d->C * d->F * d->H * d->W, tn = (size_t)d->L * d->text_dim;
        uint64_t hsh = 1469598103934665603ull; /* FNV-1a */
        const unsigned char *b[2] = {(const unsigned char *)(d->latents + (size_t)i * ln),
                                     (const unsigned char *)(d->embeds + (size_t)i * tn)};
        size_t nb[2] = {ln * sizeof(float), tn * sizeof(float)};
        for (int a = 0; a < 2; a++)
            for (size_t q = 0; q < nb[a]; q++) hsh = (hsh ^ b[a][q]) * 1099511628211ull;
        snprintf(out + len, n - len, ";clip%016llx", (unsigned long long)hsh);
    }
}

/* Trajectory j's chunk, from its own generator (seed, j). */
static hl_status draw_hist(ode *o, int j, hl_error *err) {
    const uint32_t key[3] = {(uint32_t)o->seed, (uint32_t)j, 0x6f646568u};
    hl_rng g = {.path = HL_RNG_NORMAL_AVX2};
    hl_rng_seed_array(&g, key, 3);
    return hl_distill_hist_draw(&o->c, j % o->c.data.count, &g, &o->hist[j], err);
}

static hl_status load_traj(ode *o, int j, const char *path, const char *key, bool *ok,
                           hl_error *err) {
    *ok = false;
    hl_safetensors *st;
    if (hl_st_open(path, &st, err) != HL_OK) return HL_OK; /* recomputed */
    const char *k = hl_st_meta(st, "key");
    hl_status s = HL_OK;
    if (k && !strcmp(k, key)) {
        *ok = true;
        for (int l = 0; l < o->c.shape.levels && s == HL_OK; l++) {
            char name[32];
            int64_t n = level_numel(&o->c.shape, l);
            float *a = NULL, *b = NULL;
            snprintf(name, sizeof name, "start%d", l);
            s = hl_st_read_f32(st, name, n, &a, err);
            snprintf(name, sizeof name, "end%d", l);
            if (s == HL_OK) s = hl_st_read_f32(st, name, n, &b, err);
            if (s == HL_OK) {
                memcpy(o->start[j * o->c.shape.levels + l], a, (size_t)n * sizeof(float));
                memcpy(o->end[j * o->c.shape.levels + l], b, (size_t)n * sizeof(float));
            }
            free(a), free(b);
        }
    }
    hl_st_close(st);
    return s;
}

static hl_status make_traj(ode *o, int j, const char *path, const char *key, hl_error *err) {
    const hl_distill_shape *sh = &o->c.shape;
    int P = sh->levels;
    size_t tn = (size_t)sh->L * o->c.cfg.text_dim;
    float *x0 = malloc((size_t)level_numel(sh, P - 1) * sizeof(float));
    if (!x0) return hl_fail(err, HELIOS_ERR_OOM, "ode_init: out of memory");
    hl_ctx ctx = {o->c.be, err};
    const hl_distill_hist *hd = &o->hist[j];
    hl_history hist = {0};
    hl_status s = hd->first ? HL_OK
                            : hl_distill_history_from_inputs(&hd->s.hist, sh->C, sh->H, sh->W,
                                                             sh->history_sizes, &hist, err);
    if (s == HL_OK)
        s = hl_distill_teacher_sample(&ctx, sh, o->c.teacher,
                                      o->c.data.embeds + (size_t)(j % o->c.data.count) * tn,
                                      (uint64_t)(o->seed + j), hd->first ? NULL : &hist,
                                      o->start + j * P, o->end + j * P, x0);
    hl_history_free(&hist);
    free(x0);
    HL_TRY(s);
    hl_st_entry e[2 * HL_DISTILL_MAX_LEVELS];
    char names[2 * HL_DISTILL_MAX_LEVELS][16];
    for (int l = 0; l < P; l++) {
        int h, w;
        hl_distill_level_size(sh, l, &h, &w);
        int64_t shape[4] = {sh->C, sh->F, h, w};
        snprintf(names[2 * l], 16, "start%d", l);
        snprintf(names[2 * l + 1], 16, "end%d", l);
        e[2 * l] = (hl_st_entry){names[2 * l],
                                 hl_tensor_make(o->start[j * P + l], HL_F32, 4, shape)};
        e[2 * l + 1] = (hl_st_entry){names[2 * l + 1],
                                     hl_tensor_make(o->end[j * P + l], HL_F32, 4, shape)};
    }
    const char *meta[] = {"format", "helios-ode-trajectory", "key", key, NULL};
    return hl_st_write(path, e, (size_t)(2 * P), meta, err);
}

static hl_status build_cache(ode *o, hl_error *err) {
    if (mkdir(o->cache, 0755) != 0 && errno != EEXIST)
        return hl_fail(err, HELIOS_ERR_IO, "%s: cannot create the trajectory cache", o->cache);
    int made = 0, later = 0;
    for (int j = 0; j < o->T; j++) {
        char path[4200], key[8192];
        HL_TRY(draw_hist(o, j, err));
        later += !o->hist[j].first;
        snprintf(path, sizeof path, "%s/traj-%04d.safetensors", o->cache, j);
        traj_key(o, j, key, sizeof key);
        bool ok;
        HL_TRY(load_traj(o, j, path, key, &ok, err));
        if (!ok) {
            HL_TRY(make_traj(o, j, path, key, err));
            made++;
        }
    }
    HL_INFO("ode_init: %d teacher trajectories in %s (%d computed, %d from the cache; %d continue "
            "a history)",
            o->T, o->cache, made, o->T - made, later);
    return HL_OK;
}

hl_status hl_ode_create(const hl_json *settings, const hl_train_env *env, void **obj,
                        hl_error *err) {
    *obj = NULL;
    ode *o = calloc(1, sizeof *o);
    if (!o) return hl_fail(err, HELIOS_ERR_OOM, "ode_init: out of memory");
    hl_cfg_keys k = {settings, env->config_path, "objective", err};
    const char *known[32];
    size_t nc = hl_distill_common_nkeys;
    for (size_t i = 0; i < nc; i++) known[i] = hl_distill_common_keys[i];
    known[nc] = "trajectories", known[nc + 1] = "trajectory_seed", known[nc + 2] = "cache";
    known[nc + 3] = "regression_weight";
    o->T = 8, o->seed = 2000, o->weight = 80.0;
    const char *cache = NULL;
    hl_status st = hl_cfg_only(&k, known, nc + 4);
    if (st == HL_OK) st = hl_cfg_int(&k, "trajectories", 1, 1 << 20, &o->T);
    if (st == HL_OK) st = hl_cfg_int(&k, "trajectory_seed", 0, 2147483647, &o->seed);
    if (st == HL_OK) st = hl_cfg_str(&k, "cache", &cache);
    if (st == HL_OK) st = hl_cfg_num(&k, "regression_weight", 0, 1e6, &o->weight);
    if (st == HL_OK) st = hl_distill_common_init(&o->c, "ode_init", &k, env, err);
    if (st == HL_OK) {
        if (cache) snprintf(o->cache, sizeof o->cache, "%s", cache);
        else snprintf(o->cache, sizeof o->cache, "%s/ode_cache", o->c.output);
        int P = o->c.shape.levels;
        int64_t n = level_numel(&o->c.shape, P - 1);
        o->start = calloc((size_t)o->T * P, sizeof *o->start);
        o->end = calloc((size_t)o->T * P, sizeof *o->end);
        o->hist = calloc((size_t)o->T, sizeof *o->hist);
        o->x = malloc((size_t)n * sizeof(float));
        o->v = malloc((size_t)n * sizeof(float));
        o->dx0 = malloc((size_t)n * sizeof(float));
        bool ok = o->start && o->end && o->hist && o->x && o->v && o->dx0;
        for (int i = 0; ok && i < o->T * P; i++) {
            int64_t m = level_numel(&o->c.shape, i % P);
            ok = (o->start[i] = malloc((size_t)m * sizeof(float))) &&
                 (o->end[i] = malloc((size_t)m * sizeof(float)));
        }
        st = ok ? build_cache(o, err) : hl_fail(err, HELIOS_ERR_OOM, "ode_init: out of memory");
    }
    if (st != HL_OK) {
        hl_ode_destroy(o);
        return st;
    }
    *obj = o;
    return HL_OK;
}

void hl_ode_destroy(void *obj) {
    ode *o = obj;
    if (!o) return;
    int P = o->c.shape.levels;
    for (int i = 0; i < o->T * P; i++) {
        if (o->start) free(o->start[i]);
        if (o->end) free(o->end[i]);
    }
    for (int j = 0; o->hist && j < o->T; j++) hl_distill_hist_free(&o->hist[j]);
    free(o->start), free(o->end), free(o->hist), free(o->x), free(o->v), free(o->dx0);
    hl_distill_common_free(&o->c);
    free(o);
}

hl_status hl_ode_step(void *obj, hl_rng *rng, int64_t sample_index, const float *params,
                      float *grads, double *loss, hl_error *err) {
    ode *o = obj;
    hl_ctx ctx = {o->c.be, err};
    HL_TRY(hl_distill_bind(&o->c, params, grads, err));
    const hl_distill_shape *sh = &o->c.shape;
    int P = sh->levels, j = (int)(sample_index % o->T);
    int k = (int)(hl_rng_u32(rng) % (uint32_t)P);
    hl_distill_hist_use(&o->c, &o->hist[j]); /* the trajectory's history and schedule */
    hl_distill_note_task(&o->c, sample_index, &o->hist[j]); /* logged by hl_ode_sync */
    const hl_schedule *sc = hl_distill_level_schedule(&o->c.sampler, k);
    int i = (int)(hl_rng_u32(rng) % (uint32_t)sc->n);
    const float *S = o->start[j * P + k], *E = o->end[j * P + k];
    int64_t n = level_numel(sh, k);
    double t = sc->timesteps[i];
    if (i == 0) {
        memcpy(o->x, S, (size_t)n * sizeof(float));
    } else { /* hl_dmd_step's re-noise toward the start point, from x0 = E */
        double s = hl_dmd_sigma_for(sc, t);
        for (int64_t q = 0; q < n; q++) o->x[q] = (float)((1.0 - s) * E[q] + s * S[q]);
    }
    int h, w;
    hl_distill_level_size(sh, k, &h, &w);
    double ts = (double)hl_sched_model_timestep(t), sigma = hl_dmd_sigma_for(sc, t);
    helios_dit_input in;
    hl_distill_dit_input(
        &o->c.sampler, o->x, h, w, &ts,
        sh->L ? o->c.data.embeds + (size_t)(j % o->c.data.count) * sh->L * o->c.cfg.text_dim : NULL,
        &in);
    hl_dit_tape *tape = NULL;
    hl_status st = hl_dit_forward_train(&ctx, o->c.m, &in, o->c.recompute, &tape, o->v);
    hl_dit_plan plan;
    if (st == HL_OK && (st = hl_dit_plan_make(&o->c.cfg, &in, &plan, err)) == HL_OK)
        o->tokens += (int64_t)plan.B * plan.S, o->token_samples++;
    if (st == HL_OK) {
        *loss = hl_ode_regression_loss(o->x, o->v, sigma, E, o->weight, n, o->dx0);
        st = hl_distill_backward(&o->c, &ctx, tape, o->dx0);
    }
    hl_dit_tape_free(tape);
    return st;
}

double hl_ode_tokens(void *obj) {
    const ode *o = obj;
    return o->token_samples ? (double)o->tokens / (double)o->token_samples : 0.0;
}

hl_status hl_ode_validate(void *obj, int64_t step, const float *params, const float *ema,
                          double *loss, char *sample, size_t cap, hl_error *err) {
    ode *o = obj;
    (void)sample, (void)cap; /* no video: the distance to the teacher is the evidence */
    return hl_distill_log_distance(&o->c, step, ema ? ema : params, loss, err);
}

hl_status hl_ode_save(void *obj, const char *dir, hl_error *err) {
    return hl_distill_write_model_folder(&((ode *)obj)->c, dir, err);
}

hl_status hl_ode_load(void *obj, const char *dir, hl_error *err) {
    ode *o = obj;
    char d[4200];
    snprintf(d, sizeof d, "%s/distance.tsv", o->c.output);
    HL_TRY(hl_distill_truncate_tasks(&o->c, hl_distill_dir_step(dir), err));
    return hl_distill_truncate_log(d, hl_distill_dir_step(dir), err);
}

/* ode_init trains nothing of its own: the hooks only log the tasks in sample order. */
const hl_train_sync hl_ode_sync = {NULL, hl_distill_sync_tasks, NULL};
