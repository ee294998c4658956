#include "train/objective_distill.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/log.h"
#include "train/checkpoint.h"
#include "train/dit_flat.h"

const char *const hl_distill_common_keys[] = {
    "type",         "teacher",   "steps",     "amplify",   "teacher_steps", "teacher_guidance",
    "eval_prompts", "eval_seed", "recompute", "synthetic", "clip_chunks",   "p_t2v",
    "p_i2v",        "p_v2v",     "dataset"};
const size_t hl_distill_common_nkeys = sizeof hl_distill_common_keys / sizeof(char *);

static hl_status read_synthetic(const hl_cfg_keys *parent, const hl_train_env *env,
                                hl_distill_shape *sh, int *clips, int *seed) {
    hl_cfg_keys k = {hl_json_get(parent->s, "synthetic"), parent->file, "objective.synthetic",
                     parent->err};
    if (!k.s) return HL_OK;
    if (k.s->type != HL_JSON_OBJECT) return hl_cfg_bad(parent, "synthetic", "must be an object");
    static const char *const known[] = {"clips", "frames", "height", "width", "text_len", "seed"};
    HL_TRY(hl_cfg_only(&k, known, 6));
    HL_TRY(hl_cfg_int(&k, "clips", 1, 1 << 20, clips));
    HL_TRY(hl_cfg_int(&k, "frames", 1, 64, &sh->F));
    HL_TRY(hl_cfg_int(&k, "height", 2, 4096, &sh->H));
    HL_TRY(hl_cfg_int(&k, "width", 2, 4096, &sh->W));
    HL_TRY(hl_cfg_int(&k, "text_len", 1, 4096, &sh->L));
    (void)env;
    return hl_cfg_int(&k, "seed", 0, 2147483647, seed);
}

/* The student is trained on the pyramid its model folder ("model") is sampled with
 * (train/cfg_keys.h); "steps" gives the student's steps per level, one number per level. A
 * teacher folder with another pyramid is sampled on the student's, with a warning. */
static hl_status read_pyramid(const hl_cfg_keys *k, const hl_train_env *env, const char *teacher,
                              hl_distill_shape *sh) {
    bool found, found_teacher;
    HL_TRY(hl_cfg_model_pyramid(env->model, &sh->sched, &found, k->err));
    sh->levels = sh->sched.stages;
    hl_sched_config t = sh->sched;
    HL_TRY(hl_cfg_model_pyramid(teacher, &t, &found_teacher, k->err));
    if (found_teacher && t.stages != sh->levels)
        HL_WARN("%s: the teacher %s has %d pyramid stages, the student %d: the teacher is "
                "sampled on the student's",
                k->file, teacher, t.stages, sh->levels);
    char range[256];
    HL_INFO("distillation: %d pyramid levels over [%s] (%s%s)", sh->levels,
            hl_sched_format_range(&sh->sched, 6, range, sizeof range),
            found ? env->model : "the released Distilled's: no ",
            found ? "/scheduler/scheduler_config.json" : "scheduler_config.json in the model");
    double steps[HL_DISTILL_MAX_LEVELS] = {2, 2, 2};
    if (sh->levels > HL_DISTILL_MAX_LEVELS) return HL_OK; /* hl_distill_shape_check says why */
    HL_TRY(hl_cfg_nums(k, "steps", sh->levels, 1, 50, steps));
    for (int i = 0; i < sh->levels; i++) {
        if (steps[i] != (int)steps[i]) return hl_cfg_bad(k, "steps", "must be whole numbers");
        sh->steps[i] = (int)steps[i];
    }
    return HL_OK;
}

/* mkdir -p */
static hl_status make_dirs(const char *path, hl_error *err) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1;; s++) {
        if (*s && *s != '/') continue;
        char ch = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return hl_fail(err, HELIOS_ERR_IO, "%s: cannot create the folder: %s", p,
                           strerror(errno));
        if (!ch) break;
        *s = ch;
    }
    return HL_OK;
}

/* Which block goes with "data": "synthetic" for synthetic data, "dataset" for world or folder
 * data, never both. */
static hl_status check_data_blocks(const hl_cfg_keys *k, bool synthetic) {
    bool has_syn = hl_json_get(k->s, "synthetic") != NULL,
         has_ds = hl_json_get(k->s, "dataset") != NULL;
    if (has_syn && has_ds)
        return hl_cfg_bad(k, "dataset",
                          "give \"synthetic\" (for \"data\": \"synthetic\") or \"dataset\" (for "
                          "world or folder data), not both");
    if (synthetic && has_ds)
        return hl_cfg_bad(k, "dataset",
                          "is for world or folder data; \"data\" is \"synthetic\" (its sizes are "
                          "the \"synthetic\" block)");
    if (!synthetic && has_syn)
        return hl_cfg_bad(k, "synthetic",
                          "is for \"data\": \"synthetic\"; world and folder data read the "
                          "\"dataset\" block");
    return HL_OK;
}

/* Latent frames of the student's chunk on cached data: one 33-frame VAE window of the cache. */
#define CACHED_CHUNK_FRAMES (1 + (33 - 1) / 4)

/* World or folder data: every cached clip into c->data (hl_distill_data_open); the student's
 * chunk is one VAE window, its height, width and text length and clip_chunks follow from the
 * clips. */
static hl_status open_data(hl_distill_common *c, const hl_cfg_keys *k, const hl_train_env *env,
                           int *clips, hl_error *err) {
    hl_distill_shape *sh = &c->shape;
    HL_TRY(make_dirs(c->output, err));
    HL_TRY(hl_distill_data_open(k, env, &c->ctx, &c->data, err));
    const hl_synthetic *d = &c->data;
    sh->F = CACHED_CHUNK_FRAMES;
    char why[256];
    if (d->F % sh->F) {
        snprintf(why, sizeof why,
                 "the cached clips hold %d latent frames, not a multiple of the student's %d "
                 "(one 33-frame window)",
                 d->F, sh->F);
        return hl_cfg_bad(k, "dataset", why);
    }
    int n = d->F / sh->F;
    if (hl_json_get(k->s, "clip_chunks") && c->clip_chunks != n) {
        snprintf(why, sizeof why,
                 "is %d but the cached clips hold %d latent frames = %d chunks of %d (it follows "
                 "from dataset.frames: leave it out)",
                 c->clip_chunks, d->F, n, sh->F);
        return hl_cfg_bad(k, "clip_chunks", why);
    }
    if (d->text_dim != env->dit->text_dim)
        return hl_fail_key(err, HELIOS_ERR_SHAPE, env->config_path, "model",
                           "the text encoder's width %d is not the transformer's text_dim %d",
                           d->text_dim, env->dit->text_dim);
    c->cached = true;
    c->clip_chunks = n;
    sh->H = d->H, sh->W = d->W, sh->L = d->L;
    *clips = (int)d->count;
    return HL_OK;
}

/* The step's samples, micro-batch and ranks (env), and the task notes they fill. */
static hl_status step_shape(hl_distill_common *c, const hl_train_env *env, hl_error *err) {
    c->world = env->dist ? env->dist->world : 1;
    c->lead = !env->dist || env->dist->rank == 0;
    c->spp = env->samples_per_step;
    c->batch = env->batch ? env->batch : c->spp / c->world;
    if (c->batch < 1 || c->spp < 1 || c->spp % (c->batch * c->world))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "%s: %d samples per step are not micro-batches of %d samples on %d ranks",
                       c->name, c->spp, c->batch, c->world);
    c->task_mb = calloc((size_t)c->batch, sizeof *c->task_mb);
    c->task_all = calloc((size_t)c->batch * (size_t)c->world, sizeof *c->task_all);
    bool ok = c->task_mb && c->task_all;
    if (ok && c->batch > 1)
        ok = (c->sample_g = malloc((size_t)env->layout->total * sizeof(float))) != NULL;
    return ok ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", c->name);
}

hl_status hl_distill_common_init(hl_distill_common *c, const char *name, const hl_cfg_keys *k,
                                 const hl_train_env *env, hl_error *err) {
    memset(c, 0, sizeof *c);
    c->name = name;
    c->cfg = *env->dit;
    c->layout = env->layout;
    hl_distill_shape *sh = &c->shape;
    hl_distill_shape_default(sh);
    sh->C = env->dit->in_channels;
    const char *teacher = env->model;
    bool recompute = true;
    int E = 2, eval_seed = 1000, clips = 8, seed = 0;
    HL_TRY(hl_cfg_str(k, "teacher", &teacher));
    HL_TRY(read_pyramid(k, env, teacher, sh));
    HL_TRY(hl_cfg_bool(k, "amplify", &sh->amplify));
    HL_TRY(hl_cfg_int(k, "teacher_steps", 1, 1000, &sh->teacher_steps));
    HL_TRY(hl_cfg_num(k, "teacher_guidance", 0, 100, &sh->teacher_guidance));
    HL_TRY(hl_cfg_int(k, "eval_prompts", 0, 1024, &E));
    HL_TRY(hl_cfg_int(k, "eval_seed", 0, 2147483647, &eval_seed));
    HL_TRY(hl_cfg_bool(k, "recompute", &recompute));
    HL_TRY(read_synthetic(k, env, sh, &clips, &seed));
    c->recompute = recompute;
    hl_stage1_config *tc = &c->task;
    hl_stage1_config_default(tc);
    tc->p_t2v = 0.4f, tc->p_i2v = 0.0f, tc->p_v2v = 0.5f; /* §6.3: stage 1's, V2V ratio 0.5 */
    tc->corrupt_history = false;
    c->clip_chunks = 3;
    double pr[3] = {tc->p_t2v, tc->p_i2v, tc->p_v2v};
    HL_TRY(hl_cfg_int(k, "clip_chunks", 1, 1024, &c->clip_chunks));
    HL_TRY(hl_cfg_num(k, "p_t2v", 0, 1, &pr[0]));
    HL_TRY(hl_cfg_num(k, "p_i2v", 0, 1, &pr[1]));
    HL_TRY(hl_cfg_num(k, "p_v2v", 0, 1, &pr[2]));
    tc->p_t2v = (float)pr[0], tc->p_i2v = (float)pr[1], tc->p_v2v = (float)pr[2];
    bool synthetic = env->data && !strcmp(env->data, "synthetic");
    HL_TRY(check_data_blocks(k, synthetic));
    HL_TRY(step_shape(c, env, err));
    snprintf(c->teacher_path, sizeof c->teacher_path, "%s", teacher);
    snprintf(c->output, sizeof c->output, "%s", env->output ? env->output : ".");
    if (!(c->be = hl_backend_new(HELIOS_BACKEND_CPU, 0, err))) return HELIOS_ERR_OOM;
    c->ctx = (hl_ctx){c->be, &c->err};
    if (!synthetic) HL_TRY(open_data(c, k, env, &clips, err));
    if (E > clips) E = clips;
    tc->chunk_frames = sh->F;
    for (int i = 0; i < 3; i++) tc->history_sizes[i] = sh->history_sizes[i];
    hl_status sst = hl_distill_shape_check(sh, env->dit, err);
    if (sst != HL_OK && c->cached) /* the sizes are the dataset's */
        hl_error_prefix(err, "%s: 'objective.dataset' (width, height)", env->config_path);
    HL_TRY(sst);
    HL_TRY(make_dirs(c->output, err));
    if (synthetic)
        HL_TRY(hl_synthetic_make(&c->data, sh->C, sh->F * c->clip_chunks, sh->H, sh->W, sh->L,
                                 env->dit->text_dim, clips, (uint64_t)seed, err));
    if (!(c->chunk0 = malloc((size_t)sh->C * sh->F * sh->H * sh->W * sizeof(float))))
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", name);
    size_t tn = (size_t)sh->L * env->dit->text_dim;
    c->teacher_w = malloc((size_t)env->layout->total * sizeof(float));
    c->zeros = calloc(tn, sizeof(float));
    c->eval_prompts = malloc((E ? (size_t)E : 1) * tn * sizeof(float));
    if (!c->teacher_w || !c->zeros || !c->eval_prompts)
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", name);
    hl_status st = hl_distill_load_weights(teacher, env->layout, c->teacher_w, err);
    if (st != HL_OK) {
        hl_error_prefix(err, "%s: 'objective.teacher' \"%s\"", env->config_path, teacher);
        return st;
    }
    HL_TRY(hl_dit_new_flat(env->dit, env->layout, c->teacher_w, &c->teacher, err));
    HL_TRY(hl_distill_sampler_init(&c->sampler, sh, env->dit, err));
    for (int i = 0; i < E; i++)
        memcpy(c->eval_prompts + (size_t)i * tn, c->data.embeds + (size_t)i * tn,
               tn * sizeof(float));
    hl_ctx ctx = {c->be, err};
    /* the evidence is rank 0's (validation runs there alone): the other ranks skip the teacher's
     * samples and every log */
    HL_TRY(hl_distill_eval_init(&c->eval, &ctx, sh, c->teacher, c->eval_prompts, c->lead ? E : 0,
                                (uint64_t)eval_seed, err));
    if (!c->lead) return HL_OK;
    /* a fresh run: the distance before training opens the evidence log */
    int64_t last;
    char dir[4096];
    HL_TRY(hl_ckpt_latest(c->output, &last, dir, sizeof dir, err));
    if (last < 0) { /* a fresh run: a new task log */
        char p[4200];
        snprintf(p, sizeof p, "%s/tasks.tsv", c->output);
        HL_TRY(hl_distill_write_text(p, "step\ttask\tchunk\tdropped\n", err));
    }
    if (last < 0 && E > 0) {
        char p[4200];
        snprintf(p, sizeof p, "%s/distance.tsv", c->output);
        if (hl_file_is_regular(p)) HL_TRY(hl_distill_truncate_log(p, -1, err));
        double rms;
        HL_TRY(hl_distill_log_distance(c, 0, env->init_params, &rms, err));
        HL_INFO("%s: student-teacher distance before training %.6g (%d prompts)", name, rms, E);
    }
    return HL_OK;
}

void hl_distill_common_free(hl_distill_common *c) {
    hl_dit_free(c->m);
    hl_dit_free(c->g);
    hl_dit_free(c->teacher);
    free(c->teacher_w);
    free(c->zeros);
    free(c->eval_prompts);
    free(c->chunk0);
    free(c->task_mb);
    free(c->task_all);
    free(c->sample_g);
    hl_distill_hist_free(&c->cur);
    if (c->tasks) fclose(c->tasks);
    hl_distill_eval_free(&c->eval);
    hl_distill_sampler_free(&c->sampler);
    hl_synthetic_free(&c->data);
    hl_backend_free(c->be);
    memset(c, 0, sizeof *c);
}

hl_status hl_distill_hist_draw(hl_distill_common *c, int64_t clip, hl_rng *g, hl_distill_hist *h,
                               hl_error *err) {
    hl_distill_hist_free(h);
    if (c->task.p_t2v >= 1.0f) {
        h->first = true;
        return HL_OK;
    }
    const hl_synthetic *d = &c->data;
    size_t n = (size_t)d->C * d->F * d->H * d->W;
    HL_TRY(hl_stage1_history_make(&c->task, d->latents + (size_t)clip * n, d->C, d->F, d->H, d->W,
                                  g, &h->s, err));
    h->drawn = true;
    h->first = h->s.task == HL_TASK_T2V || h->s.chunk == 0;
    if (!c->task.corrupt_history || h->first) return HL_OK; /* a first chunk has no history */
    return hl_corrupt_history(&c->task.corrupt, g, &h->s.hist, d->C, d->H, d->W,
                              c->task.history_sizes[0], c->task.history_sizes[1], &h->s.corrupt,
                              err);
}

void hl_distill_hist_free(hl_distill_hist *h) {
    hl_stage1_sample_free(&h->s);
    memset(h, 0, sizeof *h);
}

void hl_distill_hist_use(hl_distill_common *c, const hl_distill_hist *h) {
    hl_distill_sampler_set_history(&c->sampler, h->first ? NULL : &h->s.hist);
}

const float *hl_distill_hist_real(hl_distill_common *c, const hl_distill_hist *h, int64_t clip) {
    if (h->drawn) return h->s.x0;
    const hl_synthetic *d = &c->data;
    size_t chunk = (size_t)c->shape.F * d->H * d->W, frames = (size_t)d->F * d->H * d->W;
    const float *x = d->latents + (size_t)clip * d->C * frames;
    for (int ch = 0; ch < d->C; ch++)
        memcpy(c->chunk0 + ch * chunk, x + ch * frames, chunk * sizeof(float));
    return c->chunk0;
}

const char *hl_distill_hist_name(const hl_distill_hist *h) {
    return !h->drawn || h->first ? "t2v" : hl_stage1_task_name(h->s.task);
}

void hl_distill_note_task(hl_distill_common *c, int64_t sample_index, const hl_distill_hist *h) {
    /* a micro-batch's first sample index is a multiple of batch (train_loop.h) */
    hl_distill_task *t = &c->task_mb[sample_index % c->batch];
    t->task = !h->drawn || h->first ? -1 : (int32_t)h->s.task;
    t->chunk = h->drawn ? h->s.chunk : 0;
    t->dropped = h->drawn ? h->s.dropped : 0;
}

hl_status hl_distill_gather_tasks(hl_distill_common *c, const hl_dist *d, hl_error *err) {
    return hl_dist_allgather(d, c->task_mb, (size_t)c->batch * sizeof *c->task_mb, c->task_all,
                             err);
}

hl_status hl_distill_log_tasks(hl_distill_common *c, int64_t step, hl_error *err) {
    if (!c->lead) return HL_OK;
    char p[4200];
    snprintf(p, sizeof p, "%s/tasks.tsv", c->output);
    if (!c->tasks && !(c->tasks = fopen(p, "a")))
        return hl_fail(err, HELIOS_ERR_IO, "%s: %s", p, strerror(errno));
    for (int i = 0; i < c->batch * c->world; i++) {
        const hl_distill_task *t = &c->task_all[i];
        fprintf(c->tasks, "%lld\t%s\t%d\t%d\n", (long long)step,
                t->task < 0 ? "t2v" : hl_stage1_task_name((hl_stage1_task)t->task), t->chunk,
                t->dropped);
    }
    return fflush(c->tasks) == 0 ? HL_OK : hl_fail(err, HELIOS_ERR_IO, "%s: cannot write", p);
}

hl_status hl_distill_sync_tasks(void *obj, const hl_dist *d, int64_t step, int64_t j,
                                hl_error *err) {
    hl_distill_common *c = obj;
    (void)j;
    HL_TRY(hl_distill_gather_tasks(c, d, err));
    return hl_distill_log_tasks(c, step + 1, err);
}

hl_status hl_distill_truncate_tasks(hl_distill_common *c, int64_t last, hl_error *err) {
    if (c->tasks) fclose(c->tasks), c->tasks = NULL;
    char p[4200];
    snprintf(p, sizeof p, "%s/tasks.tsv", c->output);
    return hl_distill_truncate_log(p, last, err);
}

hl_status hl_distill_bind(hl_distill_common *c, const float *params, float *grads, hl_error *err) {
    if (c->m && c->m_data == params && c->g_data == grads) return HL_OK;
    hl_dit_free(c->m);
    hl_dit_free(c->g);
    c->m = c->g = NULL;
    HL_TRY(hl_dit_new_flat(&c->cfg, c->layout, (float *)params, &c->m, err));
    float *g = c->sample_g ? c->sample_g : grads;
    if (grads) HL_TRY(hl_dit_new_flat(&c->cfg, c->layout, g, &c->g, err));
    c->m_data = params;
    c->g_data = grads;
    return HL_OK;
}

hl_status hl_distill_backward(hl_distill_common *c, const hl_ctx *ctx, hl_dit_tape *tape,
                              const float *dout) {
    int64_t n = c->layout->total;
    if (c->sample_g) memset(c->sample_g, 0, (size_t)n * sizeof(float));
    HL_TRY(hl_dit_backward(ctx, c->m, tape, dout, c->g, NULL));
    /* the loop's micro-batch buffer += the sample's (this process's add: no ranks) */
    return c->sample_g ? hl_dist_ordered_add_f32(NULL, c->g_data, c->sample_g, n, ctx->err) : HL_OK;
}

hl_status hl_distill_log_distance(hl_distill_common *c, int64_t step, const float *params,
                                  double *rms, hl_error *err) {
    hl_dit *m;
    HL_TRY(hl_dit_new_flat(&c->cfg, c->layout, (float *)params, &m, err));
    hl_ctx ctx = {c->be, err};
    hl_status st = hl_distill_eval_distance(&c->eval, &ctx, &c->sampler, m, rms);
    hl_dit_free(m);
    HL_TRY(st);
    char p[4200];
    snprintf(p, sizeof p, "%s/distance.tsv", c->output);
    FILE *f = fopen(p, "a");
    if (!f) return hl_fail(err, HELIOS_ERR_IO, "%s: %s", p, strerror(errno));
    fprintf(f, "%lld\t%a\t%.9g\n", (long long)step, *rms, *rms);
    int ok = fflush(f) == 0;
    ok = fclose(f) == 0 && ok;
    return ok ? HL_OK : hl_fail(err, HELIOS_ERR_IO, "%s: cannot write", p);
}

hl_status hl_distill_write_text(const char *path, const char *text, hl_error *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return hl_fail(err, HELIOS_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w <= 0) {
            close(fd);
            return hl_fail(err, HELIOS_ERR_IO, "%s: cannot write", path);
        }
        off += (size_t)w;
    }
    int ok = fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    return ok ? HL_OK : hl_fail(err, HELIOS_ERR_IO, "%s: fsync failed", path);
}

int64_t hl_distill_dir_step(const char *dir) {
    const char *s = strrchr(dir, '/');
    s = s ? s + 1 : dir;
    if (strncmp(s, "checkpoint-", 11)) return -1;
    char *end;
    long long v = strtoll(s + 11, &end, 10);
    return end == s + 11 ? -1 : v;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static hl_status write_model_folder(const hl_distill_common *c, const char *dir, hl_error *err);

hl_status hl_distill_write_model_folder(const hl_distill_common *c, const char *dir,
                                        hl_error *err) {
    HL_TRY(write_model_folder(c, dir, err));
    char p[4200];
    snprintf(p, sizeof p, "%s/ema/transformer/config.json", dir);
    if (!hl_file_is_regular(p)) return HL_OK;
    snprintf(p, sizeof p, "%s/ema", dir); /* the EMA's transformer (train/checkpoint.h) */
    return write_model_folder(c, p, err);
}

static hl_status write_model_folder(const hl_distill_common *c, const char *dir, hl_error *err) {
    char p[4200], q[PATH_MAX + 64], root[PATH_MAX];
    const hl_sched_config *s = &c->shape.sched;
    snprintf(p, sizeof p, "%s/scheduler", dir);
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return hl_fail(err, HELIOS_ERR_IO, "%s: %s", p, strerror(errno));
    char range[256], sched[1024];
    hl_sched_format_range(s, 17, range, sizeof range);
    snprintf(sched, sizeof sched,
             "{\n \"_class_name\": \"HeliosDMDScheduler\",\n \"num_train_timesteps\": %d,\n"
             " \"shift\": %.17g,\n \"stages\": %d,\n \"stage_range\": [%s],\n"
             " \"gamma\": %.17g,\n \"prediction_type\": \"flow_prediction\",\n"
             " \"use_flow_sigmas\": true,\n \"use_dynamic_shifting\": %s,\n"
             " \"time_shift_type\": \"%s\",\n \"scheduler_type\": \"dmd\"\n}\n",
             s->num_train_timesteps, s->shift, s->stages, range, s->gamma,
             s->use_dynamic_shifting ? "true" : "false",
             s->time_shift_type == HL_SHIFT_LINEAR ? "linear" : "exponential");
    snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", dir);
    HL_TRY(hl_distill_write_text(p, sched, err));
    snprintf(p, sizeof p, "%s/model_index.json", c->teacher_path);
    if (!hl_file_is_regular(p) || !realpath(c->teacher_path, root)) return HL_OK;
    static const char index[] =
        "{\n \"_class_name\": \"HeliosPyramidPipeline\",\n \"is_distilled\": true,\n"
        " \"is_cfg_zero_star\": false,\n \"scheduler\": [\"diffusers\", \"HeliosDMDScheduler\"],\n"
        " \"text_encoder\": [\"transformers\", \"UMT5EncoderModel\"],\n"
        " \"tokenizer\": [\"transformers\", \"T5TokenizerFast\"],\n"
        " \"transformer\": [\"diffusers\", \"HeliosTransformer3DModel\"],\n"
        " \"vae\": [\"diffusers\", \"AutoencoderKLWan\"]\n}\n";
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    HL_TRY(hl_distill_write_text(p, index, err));
    static const char *const parts[] = {"text_encoder", "tokenizer", "vae"};
    for (int i = 0; i < 3; i++) {
        snprintf(q, sizeof q, "%s/%s", root, parts[i]);
        if (!is_dir(q)) continue;
        snprintf(p, sizeof p, "%s/%s", dir, parts[i]);
        if (symlink(q, p) != 0 && errno != EEXIST)
            return hl_fail(err, HELIOS_ERR_IO, "%s: cannot link to %s: %s", p, q, strerror(errno));
    }
    return HL_OK;
}
