/* The "stage3" objective (spec training.md §6.3-6.6): DMD distillation of the few-step student
 * (the loop's parameters) against the frozen teacher (real score, CFG) with a trainable critic
 * (fake score) that this objective holds with its own AdamW state, and optionally the GAN.
 *
 * Optimizer step s (0-based) runs its S = batch x accumulation x ranks samples; every sample of
 * it takes the TTUR pattern (the generator on s % gen_every == 0, the critic on every step), the
 * re-noise schedule's generator-step count and gan_start from s. Each sample:
 *   the sample's chunk first (objective_distill.h hl_distill_hist_draw, noted for tasks.tsv): a
 *     first chunk or a later one with its history, which the student, the teacher (both CFG
 *     branches), the critic and the heads all see; the real latents are its target chunk; a
 *     later chunk's history gets Frame-Aware Corrupt (corrupt_history, default on; "corrupt":
 *     "released" noise only as stage_3_post, or "paper": noise 0.4, blur 0.4);
 *   generator (when its step):  x0 = student's staged simulation (noise from the RNG, a random
 *     exit step per level, the final level's exit step with a tape); t from the dynamic Beta
 *     re-noise at generator step k = ceil(s / gen_every); x_t = (1 - sigma) x0 + sigma eps;
 *     real = CFG of the teacher's x0 predictions (prompt, zero prompt), fake = the critic's;
 *     L_DMD (train/dmd.h) + gan_g_weight L_G (GAN on and s >= gan_start: D = heads on the
 *     critic's tapped blocks and output at a random gan_crop window of x_t, its input gradient
 *     by Cache Grad (train/gan.h), zero outside the window, times 1 - sigma added into dL/dx0);
 *     dL/dv = -sigma_exit dL/dx0 through the student's exit step only (into the loop's
 *     gradients; a whole sample's at once with batch > 1, hl_distill_backward).
 *   critic: x0 = the same simulation without a tape; t uniform in [t_min, t_max] (shifted);
 *     L = mean (v_fake - (eps - x0))^2, backward; then (GAN on, s >= gan_start, gan_d_weight >
 *     0) the discriminator on one random gan_crop window of the real clip's latents re-noised at
 *     the same sigma, of x_t and of the real one + gan_r1_sigma noise: gan_d_weight L_D +
 *     gan_r1_weight L_R1, gradients into the critic's and the heads' sample buffers.
 * The critic and the heads then update once per step (hl_stage3_sync, the loop's hooks, on every
 * rank alike): their sample gradients summed as the loop sums the student's (in each micro-batch
 * in sample order, the micro-batches in rank order: hl_dist_ordered_add_f32), divided by S, each
 * clipped to critic_clip, AdamW (critic_*) for both; all samples of a step see the same critic.
 * With S = 1 this is the per-sample update of before, bit for bit.
 * The reported loss is the sum of a sample's terms; OUTPUT/stage3.tsv holds each step's terms
 * (the mean over its samples, the norms of its averaged critic and heads gradients, the largest
 * activation bytes alive at once in a sample's generator step: gen_peak_bytes), tasks.tsv each
 * sample's chunk, both written by rank 0 from every rank's samples. The loop's update filter
 * skips the student's AdamW and EMA on critic-only steps. The critic's weights and moments live in
 * critic.safetensors of each checkpoint, the heads' in gan.safetensors (rank 0 writes them; on a
 * resume rank 0 reads them and sends them to the other ranks). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/dit_flat.h"
#include "train/dmd.h"
#include "train/gan.h"
#include "train/objective_distill.h"

/* A line of stage3.tsv: one sample's terms, or a step's (the mean over its samples, the norms of
 * its averaged gradients). Plain bytes: the ranks gather them. */
typedef struct terms {
    double dmd, gan_g, critic, gan_d, t_dmd, t_critic, normalizer, critic_norm, heads_norm;
    size_t gen_peak; /* activation bytes alive at once in the generator step (tapes + scratch) */
} terms;

/* The GAN (train/gan.h), on when gan_g_weight or gan_d_weight > 0: discriminator heads on the
 * critic's tapped blocks and output, their own flat parameters and AdamW state (critic_* settings),
 * saved as gan.safetensors next to critic.safetensors. */
typedef struct stage3_gan {
    bool on, cache_grad;
    hl_gan_config cfg;
    hl_params layout;
    float *w, *g;    /* parameters, one sample's gradients */
    float *mb, *acc; /* the micro-batch's and the step's gradients (as the critic's cmb, cacc) */
    hl_gan *heads, *grads;
    hl_adamw adam;
    float *real, *pert, *z,
        *dz;            /* scratch: [n] x2, logits [3][heads], their gradients [3][heads] */
    float *dx;          /* the generator term's input gradient [n] */
    int64_t start;      /* gan_start: the GAN terms run on steps s >= start */
    double crop;        /* gan_crop: the window's fraction of the height and width */
    int crop_h, crop_w; /* the window (hl_gan_crop_size) */
    bool conv;          /* gan_head "conv3d": the reference's Conv3d heads */
    float *cx, *cdx;    /* scratch: a cropped input, its gradient [n] */
    float *cr;          /* scratch: the cropped real clip [n] */
} stage3_gan;

typedef struct stage3 {
    hl_distill_common c; /* first */
    int gen_every;
    double real_guidance;
    hl_dmd_renoise renoise, critic_t;
    hl_adamw_config copt;
    double critic_lr, critic_clip;
    double gan_g_weight, gan_d_weight, gan_r1_weight, gan_r1_sigma;
    stage3_gan gan;
    bool corrupt_history;      /* Frame-Aware Corrupt of the drawn histories (spec §6.3 step 1) */
    hl_corrupt_params corrupt; /* "released" (stage_3_post: noise only) or "paper" (stage 3) */
    /* the critic: weights, one sample's gradient (cgv is its view) */
    float *cw, *cg;
    hl_dit *cm, *cgv;
    hl_adamw cadam;
    /* The step's update (hl_stage3_sync, as the loop's for the student): cmb sums the micro-batch's
     * sample gradients (batch > 1; else the micro-batch's gradient is cg), cacc the step's
     * micro-batches of every rank in rank order (more than one; else the micro-batch's). */
    float *cmb, *cacc;
    /* the terms of this rank's micro-batch [batch], of every rank's [world x batch]; the step's
     * so far, summed in sample order */
    terms *rec, *rec_all, sum;
    /* scratch of one full-resolution latent */
    float *noise, *x0, *eps, *xt, *v, *a, *b, *real, *dx0;
    FILE *log;
    char log_path[4200];
} stage3;

static const char *const k_keys[] = {
    "gen_every",       "real_guidance", "renoise_alpha", "renoise_beta", "renoise_decay_steps",
    "t_min",           "t_max",         "critic_lr",     "critic_betas", "critic_weight_decay",
    "critic_eps",      "critic_clip",   "gan_g_weight",  "gan_d_weight", "gan_r1_weight",
    "gan_r1_sigma",    "cache_grad",    "gan_start",     "gan_crop",     "gan_head",
    "corrupt_history", "corrupt"};

static hl_status read_keys(stage3 *o, const hl_cfg_keys *k) {
    size_t nc = hl_distill_common_nkeys, n = nc + sizeof k_keys / sizeof *k_keys;
    const char *known[64];
    for (size_t i = 0; i < n; i++) known[i] = i < nc ? hl_distill_common_keys[i] : k_keys[i - nc];
    HL_TRY(hl_cfg_only(k, known, n));
    o->gen_every = 5;
    o->real_guidance = 3.0;
    hl_dmd_renoise_default(&o->renoise);
    o->copt = (hl_adamw_config){0.0, 0.999, 1e-8, 1e-3};
    o->critic_lr = 4e-7;
    o->critic_clip = 10.0;
    double al[2] = {4, 1}, be[2] = {1.5, 1}, betas[2] = {0.0, 0.999};
    int decay = 500;
    HL_TRY(hl_cfg_int(k, "gen_every", 1, 1000, &o->gen_every));
    HL_TRY(hl_cfg_num(k, "real_guidance", 0, 100, &o->real_guidance));
    HL_TRY(hl_cfg_nums(k, "renoise_alpha", 2, 0.01, 1000, al));
    HL_TRY(hl_cfg_nums(k, "renoise_beta", 2, 0.01, 1000, be));
    HL_TRY(hl_cfg_int(k, "renoise_decay_steps", 0, 1 << 30, &decay));
    HL_TRY(hl_cfg_num(k, "t_min", 0, 1000, &o->renoise.t_min));
    HL_TRY(hl_cfg_num(k, "t_max", 0, 1000, &o->renoise.t_max));
    if (!(o->renoise.t_min < o->renoise.t_max))
        return hl_cfg_bad(k, "t_min", "must be below t_max");
    HL_TRY(hl_cfg_num(k, "critic_lr", 0, 10, &o->critic_lr));
    HL_TRY(hl_cfg_nums(k, "critic_betas", 2, 0, 0.999999, betas));
    HL_TRY(hl_cfg_num(k, "critic_weight_decay", 0, 10, &o->copt.weight_decay));
    HL_TRY(hl_cfg_num(k, "critic_eps", 1e-30, 1, &o->copt.eps));
    HL_TRY(hl_cfg_num(k, "critic_clip", 0, 1e9, &o->critic_clip));
    HL_TRY(hl_cfg_num(k, "gan_g_weight", 0, 100, &o->gan_g_weight));
    HL_TRY(hl_cfg_num(k, "gan_d_weight", 0, 100, &o->gan_d_weight));
    o->gan_r1_weight = 100.0, o->gan_r1_sigma = 0.1, o->gan.cache_grad = true;
    HL_TRY(hl_cfg_num(k, "gan_r1_weight", 0, 1e6, &o->gan_r1_weight));
    HL_TRY(hl_cfg_num(k, "gan_r1_sigma", 0, 100, &o->gan_r1_sigma));
    HL_TRY(hl_cfg_bool(k, "cache_grad", &o->gan.cache_grad));
    int gan_start = 1000;
    o->gan.crop = 0.5;
    HL_TRY(hl_cfg_int(k, "gan_start", 0, 2147483647, &gan_start));
    HL_TRY(hl_cfg_num(k, "gan_crop", 0, 1, &o->gan.crop));
    if (!(o->gan.crop > 0)) return hl_cfg_bad(k, "gan_crop", "must be in (0, 1]");
    o->gan.start = gan_start;
    const char *head = "token";
    o->corrupt_history = true;
    hl_corrupt_params_default(&o->corrupt);
    HL_TRY(hl_cfg_bool(k, "corrupt_history", &o->corrupt_history));
    const char *preset = "released";
    HL_TRY(hl_cfg_str(k, "corrupt", &preset));
    if (strcmp(preset, "released") && strcmp(preset, "paper"))
        return hl_cfg_bad(k, "corrupt", "must be \"released\" or \"paper\"");
    if (!strcmp(preset, "paper")) hl_corrupt_params_paper(&o->corrupt, 3);
    HL_TRY(hl_cfg_str(k, "gan_head", &head));
    if (strcmp(head, "token") && strcmp(head, "conv3d"))
        return hl_cfg_bad(k, "gan_head", "must be \"token\" or \"conv3d\"");
    o->gan.conv = !strcmp(head, "conv3d");
    o->gan.on = o->gan_g_weight > 0 || o->gan_d_weight > 0;
    o->copt.beta1 = betas[0], o->copt.beta2 = betas[1];
    o->renoise.a0 = al[0], o->renoise.a1 = al[1], o->renoise.b0 = be[0], o->renoise.b1 = be[1];
    o->renoise.decay_steps = decay;
    o->critic_t = o->renoise; /* the critic's timesteps: uniform (Beta(1, 1)) */
    o->critic_t.a0 = o->critic_t.a1 = o->critic_t.b0 = o->critic_t.b1 = 1.0;
    o->critic_t.decay_steps = 0;
    return HL_OK;
}

void hl_stage3_destroy(void *obj);

/* The heads over the critic's config, their parameters drawn from their own generator (seeded from
 * the run's seed: a fresh run starts from the same heads; a resume loads them). */
static hl_status gan_init(stage3 *o, const hl_train_env *env, size_t n, hl_error *err) {
    stage3_gan *g = &o->gan;
    hl_gan_config_default(env->dit, &g->cfg);
    g->cfg.g_weight = (float)o->gan_g_weight, g->cfg.d_weight = (float)o->gan_d_weight;
    g->cfg.r1_weight = (float)o->gan_r1_weight, g->cfg.r1_sigma = (float)o->gan_r1_sigma;
    g->cfg.conv = g->conv;
    HL_TRY(hl_gan_config_check(&g->cfg, env->dit, err));
    HL_TRY(hl_gan_params_layout(&g->cfg, &g->layout, err));
    size_t P = (size_t)g->layout.total, nz = 3 * (size_t)hl_gan_n_heads(&g->cfg);
    g->w = malloc(P * sizeof(float)), g->g = calloc(P, sizeof(float));
    g->real = malloc(n * sizeof(float)), g->pert = malloc(n * sizeof(float));
    g->dx = malloc(n * sizeof(float));
    g->z = malloc(nz * sizeof(float)), g->dz = malloc(nz * sizeof(float));
    g->cx = malloc(n * sizeof(float)), g->cdx = malloc(n * sizeof(float));
    g->cr = malloc(n * sizeof(float));
    if (!g->w || !g->g || !g->real || !g->pert || !g->dx || !g->z || !g->dz || !g->cx || !g->cdx ||
        !g->cr)
        return hl_fail(err, HELIOS_ERR_OOM, "stage3: out of memory");
    const hl_distill_shape *sh = &o->c.shape;
    hl_status cs = hl_gan_crop_size(sh->H, sh->W, env->dit->patch[1], env->dit->patch[2], g->crop,
                                    "objective.gan_crop", &g->crop_h, &g->crop_w, err);
    if (cs != HL_OK) {
        hl_error_prefix(err, "%s", env->config_path);
        return cs;
    }
    const int *pt = env->dit->patch;
    int64_t T = sh->F / pt[0], Hp = g->crop_h / pt[1], Wp = g->crop_w / pt[2];
    if (!hl_gan_grid_ok(&g->cfg, T, Hp, Wp))
        return hl_fail_key(err, HELIOS_ERR_INVALID_ARG, env->config_path, "objective.gan_head",
                           "\"conv3d\" needs at least 4 tokens along every axis of the GAN's "
                           "window, which has %lldx%lldx%lld (frames x height x width; raise "
                           "objective.synthetic frames/height/width or gan_crop)",
                           (long long)T, (long long)Hp, (long long)Wp);
    hl_rng r;
    hl_rng_seed(&r, env->seed + UINT64_C(0x9e3779b97f4a7c15));
    hl_gan_params_init_random(&g->layout, g->w, &r);
    HL_TRY(hl_adamw_init(&g->adam, (int64_t)P, err));
    HL_TRY(hl_gan_new_flat(&g->cfg, &g->layout, g->w, &g->heads, err));
    return hl_gan_new_flat(&g->cfg, &g->layout, g->g, &g->grads, err);
}

/* The buffers of the step's update: a micro-batch's gradient sum with batch > 1, the step's with
 * several micro-batches per step (accumulation or ranks), the gathered terms. */
static hl_status step_buffers(stage3 *o, hl_error *err) {
    const hl_distill_common *c = &o->c;
    size_t N = (size_t)c->layout->total, P = o->gan.on ? (size_t)o->gan.layout.total : 0;
    bool mb = c->batch > 1, acc = c->spp > c->batch, ok = true;
    if (mb) ok = ok && (o->cmb = malloc(N * sizeof(float)));
    if (acc) ok = ok && (o->cacc = malloc(N * sizeof(float)));
    if (mb && P) ok = ok && (o->gan.mb = malloc(P * sizeof(float)));
    if (acc && P) ok = ok && (o->gan.acc = malloc(P * sizeof(float)));
    ok = ok && (o->rec = calloc((size_t)c->batch, sizeof *o->rec));
    ok = ok && (o->rec_all = calloc((size_t)c->batch * (size_t)c->world, sizeof *o->rec_all));
    return ok ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "stage3: out of memory");
}

hl_status hl_stage3_create(const hl_json *settings, const hl_train_env *env, void **obj,
                           hl_error *err) {
    *obj = NULL;
    stage3 *o = calloc(1, sizeof *o);
    if (!o) return hl_fail(err, HELIOS_ERR_OOM, "stage3: out of memory");
    hl_cfg_keys k = {settings, env->config_path, "objective", err};
    hl_status st = read_keys(o, &k);
    if (st == HL_OK) st = hl_distill_common_init(&o->c, "stage3", &k, env, err);
    o->c.task.corrupt_history = o->corrupt_history;
    o->c.task.corrupt = o->corrupt;
    size_t N = (size_t)env->layout->total;
    if (st == HL_OK) {
        o->cw = malloc(N * sizeof(float)), o->cg = calloc(N, sizeof(float));
        const hl_distill_shape *sh = &o->c.shape;
        size_t n = (size_t)sh->C * sh->F * sh->H * sh->W;
        float **b[] = {&o->noise, &o->x0, &o->eps, &o->xt, &o->v, &o->a, &o->b, &o->real, &o->dx0};
        for (size_t i = 0; i < sizeof b / sizeof *b; i++) *b[i] = malloc(n * sizeof(float));
        bool ok = o->cw && o->cg;
        for (size_t i = 0; i < sizeof b / sizeof *b; i++) ok = ok && *b[i];
        if (!ok) st = hl_fail(err, HELIOS_ERR_OOM, "stage3: out of memory");
    }
    if (st == HL_OK) { /* the critic starts as the teacher */
        memcpy(o->cw, o->c.teacher_w, N * sizeof(float));
        st = hl_adamw_init(&o->cadam, (int64_t)N, err);
    }
    if (st == HL_OK) st = hl_dit_new_flat(env->dit, env->layout, o->cw, &o->cm, err);
    if (st == HL_OK) st = hl_dit_new_flat(env->dit, env->layout, o->cg, &o->cgv, err);
    if (st == HL_OK && o->gan.on) {
        const hl_distill_shape *sh = &o->c.shape;
        st = gan_init(o, env, (size_t)sh->C * sh->F * sh->H * sh->W, err);
    }
    if (st == HL_OK) st = step_buffers(o, err);
    if (st == HL_OK && o->c.lead) { /* rank 0 writes the logs */
        snprintf(o->log_path, sizeof o->log_path, "%s/stage3.tsv", o->c.output);
        int64_t last;
        char dir[4096];
        st = hl_ckpt_latest(o->c.output, &last, dir, sizeof dir, err);
        if (st == HL_OK && last < 0) /* a fresh run: a new log */
            st = hl_distill_write_text(o->log_path,
                                       "step\tgenerator\tloss_dmd\tloss_gan_g\tloss_critic\t"
                                       "loss_gan_d\tt_dmd\tt_critic\tnormalizer\tcritic_grad_norm\t"
                                       "heads_grad_norm\tgen_peak_bytes\n",
                                       err);
    }
    if (st != HL_OK) {
        hl_stage3_destroy(o);
        return st;
    }
    *obj = o;
    return HL_OK;
}

void hl_stage3_destroy(void *obj) {
    stage3 *o = obj;
    if (!o) return;
    hl_distill_common_free(&o->c);
    hl_dit_free(o->cm);
    hl_dit_free(o->cgv);
    hl_adamw_free(&o->cadam);
    free(o->cw), free(o->cg), free(o->cmb), free(o->cacc), free(o->rec), free(o->rec_all);
    free(o->noise), free(o->x0), free(o->eps), free(o->xt), free(o->v), free(o->a), free(o->b);
    free(o->real), free(o->dx0);
    stage3_gan *g = &o->gan;
    hl_gan_free(g->heads), hl_gan_free(g->grads);
    hl_adamw_free(&g->adam);
    hl_params_free(&g->layout);
    free(g->w), free(g->g), free(g->mb), free(g->acc), free(g->real), free(g->pert), free(g->dx),
        free(g->z), free(g->dz);
    free(g->cx), free(g->cdx), free(g->cr);
    if (o->log) fclose(o->log);
    free(o);
}

/* One simulation of the student: noise and exits drawn from rng. */
static hl_status simulate(stage3 *o, const hl_ctx *ctx, const float *text, hl_rng *rng, bool tape,
                          hl_distill_run *run) {
    const hl_distill_shape *sh = &o->c.shape;
    hl_rng_randn_f32(rng, o->noise, (int64_t)sh->C * sh->F * sh->H * sh->W);
    memset(run, 0, sizeof *run);
    for (int k = 0; k < sh->levels; k++)
        run->exit[k] = (int)(hl_rng_u32(rng) % (uint32_t)hl_distill_level_steps(&o->c.sampler, k));
    run->tape = tape;
    run->recompute = o->c.recompute;
    return hl_distill_sample(ctx, &o->c.sampler, o->c.m, text, o->noise, rng, run, o->x0);
}

/* x_t = (1 - sigma) x0 + sigma eps with eps drawn from rng (float32, one rounding per op). */
static void renoise(stage3 *o, hl_rng *rng, double sigma, int64_t n) {
    hl_rng_randn_f32(rng, o->eps, n);
    float s = (float)sigma, r = (float)(1.0 - sigma);
    for (int64_t i = 0; i < n; i++) o->xt[i] = r * o->x0[i] + s * o->eps[i];
}

/* v of model m at x_t, timestep t, prompt text into out. */
static hl_status predict(stage3 *o, const hl_ctx *ctx, const hl_dit *m, const float *text, double t,
                         float *out) {
    const hl_distill_shape *sh = &o->c.shape;
    helios_dit_input in;
    hl_distill_dit_input(&o->c.sampler, o->xt, sh->H, sh->W, &t, text, &in);
    return hl_dit_forward(ctx, m, &in, NULL, out);
}

static double full_mu(const stage3 *o) {
    const hl_distill_shape *sh = &o->c.shape;
    const int *p = o->c.cfg.patch;
    return sh->sched.use_dynamic_shifting ? hl_sched_calculate_shift((double)hl_sched_image_seq_len(
                                                sh->F, sh->H, sh->W, p[0], p[1], p[2]))
                                          : 0.0;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* The GAN's terms run on step s (0-based) when it is on and s >= gan_start. */
static bool gan_active(const stage3 *o, int64_t s) { return o->gan.on && s >= o->gan.start; }

static hl_status generator_step(stage3 *o, const hl_ctx *ctx, const float *text, int64_t s,
                                hl_rng *rng, terms *tm) {
    const hl_distill_shape *sh = &o->c.shape;
    int64_t n = (int64_t)sh->C * sh->F * sh->H * sh->W;
    hl_distill_run run;
    HL_TRY(simulate(o, ctx, text, rng, true, &run));
    int64_t k = (s + o->gen_every - 1) / o->gen_every; /* generator steps before this one */
    double sigma, t;
    hl_dmd_renoise_draw(&o->renoise, k, full_mu(o), rng, &sigma, &t);
    renoise(o, rng, sigma, n);
    hl_status st = predict(o, ctx, o->c.teacher, text, t, o->v); /* real score: prompt */
    if (st == HL_OK) {
        hl_dmd_flow_to_x0(o->xt, o->v, sigma, n, o->a);
        st = predict(o, ctx, o->c.teacher, o->c.zeros, t, o->v); /* and the empty prompt */
    }
    if (st == HL_OK) {
        hl_dmd_flow_to_x0(o->xt, o->v, sigma, n, o->b);
        hl_dmd_cfg(o->a, o->b, o->real_guidance, n, o->real);
        st = predict(o, ctx, o->cm, text, t, o->v); /* fake score */
    }
    if (st == HL_OK) {
        hl_dmd_flow_to_x0(o->xt, o->v, sigma, n, o->a);
        tm->dmd = hl_dmd_loss(o->x0, o->real, o->a, n, NULL, o->dx0, &tm->normalizer);
        tm->t_dmd = t;
    }
    /* The GAN generator term: gan_g_weight softplus(-D(x_t)) with D = heads on the critic; its
     * gradient w.r.t. x_t times dx_t/dx0 = 1 - sigma adds into dx0. Cache Grad: the
     * discriminator's activations are freed before the student's backward; without it the pass
     * stays alive through that backward (the same arithmetic, so the same bits). The critic's
     * parameter gradients of this pass land in its gradient buffer, zeroed by the critic step. */
    hl_gan_pass *keep = NULL;
    size_t disc = 0, g_fwd = hl_dit_tape_bytes(run.out_tape);
    if (st == HL_OK && gan_active(o, s) && o->gan_g_weight > 0) {
        /* the discriminator reads a random window of x_t; its gradient is 0 outside */
        stage3_gan *g = &o->gan;
        hl_gan_crop w;
        hl_gan_crop_draw(sh->H, sh->W, g->crop_h, g->crop_w, rng, &w);
        int64_t P = (int64_t)sh->C * sh->F;
        hl_gan_crop_copy(o->xt, P, sh->H, sh->W, &w, g->cx);
        helios_dit_input in;
        hl_distill_dit_input(&o->c.sampler, g->cx, w.h, w.w, &t, text, &in);
        hl_gan_critic cr = {o->cm, o->cgv, o->gan.heads, o->c.recompute};
        if (o->gan.cache_grad) {
            st = hl_gan_generator_grad(ctx, &cr, &in, &tm->gan_g, g->cdx, &disc);
        } else {
            st = hl_gan_generator_forward(ctx, &cr, &in, &keep, &tm->gan_g);
            if (st == HL_OK) st = hl_gan_generator_backward(ctx, &cr, keep, g->cdx);
            disc = hl_gan_pass_bytes(keep);
        }
        if (st == HL_OK) {
            hl_gan_crop_uncrop(g->cdx, P, sh->H, sh->W, &w, g->dx);
            hl_gan_add_x0_grad(o->dx0, g->dx, sigma, n);
        }
    }
    if (st == HL_OK) {
        float f = (float)-run.out_sigma; /* x0 = x - sigma v */
        for (int64_t i = 0; i < n; i++) o->dx0[i] *= f;
        st = hl_distill_backward(&o->c, ctx, run.out_tape, o->dx0);
    }
    size_t g_all = hl_dit_tape_bytes(run.out_tape);
    tm->gen_peak = o->gan.cache_grad ? max_sz(g_fwd + disc, g_all) : g_all + disc;
    hl_gan_pass_free(keep);
    hl_dit_tape_free(run.out_tape);
    return st;
}

/* The discriminator's terms (spec §6.4): passes of the critic trunk + heads on the real clip's
 * latents re-noised at the critic's sigma (fresh noise), on the generated x_t, and on the real one
 * perturbed by gan_r1_sigma noise (R1); gan_d_weight L_D + gan_r1_weight L_R1; gradients into the
 * critic (cg, after the flow loss's) and the heads (gan.g). */
static hl_status gan_critic_term(stage3 *o, const hl_ctx *ctx, const float *text,
                                 const float *x_real, double sigma, double *t, hl_rng *rng,
                                 double *loss) {
    stage3_gan *g = &o->gan;
    const hl_distill_shape *sh = &o->c.shape;
    int64_t nz = hl_gan_n_heads(&g->cfg), P = (int64_t)sh->C * sh->F;
    /* one random window for the step's three inputs (R1 perturbs the real window it scores) */
    hl_gan_crop w;
    hl_gan_crop_draw(sh->H, sh->W, g->crop_h, g->crop_w, rng, &w);
    int64_t n = P * w.h * w.w;
    hl_gan_crop_copy(x_real, P, sh->H, sh->W, &w, g->cr);
    hl_gan_crop_copy(o->xt, P, sh->H, sh->W, &w, g->cx);
    hl_rng_randn_f32(rng, g->pert, n);
    float s = (float)sigma, r = (float)(1.0 - sigma);
    for (int64_t i = 0; i < n; i++) g->real[i] = r * g->cr[i] + s * g->pert[i];
    bool r1 = g->cfg.r1_weight != 0.0f;
    if (r1) hl_gan_r1_perturb(g->real, n, g->cfg.r1_sigma, rng, g->pert);
    const float *xs[3] = {g->real, g->cx, g->pert};
    int np = r1 ? 3 : 2;
    hl_gan_critic cr = {o->cm, o->cgv, g->heads, o->c.recompute};
    hl_gan_pass *p[3] = {NULL, NULL, NULL};
    hl_status st = HL_OK;
    for (int k = 0; k < np && st == HL_OK; k++) {
        helios_dit_input in;
        hl_distill_dit_input(&o->c.sampler, xs[k], w.h, w.w, t, text, &in);
        st = hl_gan_pass_forward(ctx, &cr, &in, &p[k], g->z + k * nz);
    }
    if (st == HL_OK)
        *loss = hl_gan_critic_loss(&g->cfg, g->z, g->z + nz, r1 ? g->z + 2 * nz : NULL, nz, g->dz,
                                   g->dz + nz, r1 ? g->dz + 2 * nz : NULL);
    for (int k = 0; k < np && st == HL_OK; k++)
        st = hl_gan_pass_backward(ctx, &cr, p[k], g->dz + k * nz, g->grads, NULL);
    for (int k = 0; k < 3; k++) hl_gan_pass_free(p[k]);
    return st;
}

/* The heads train on step s (0-based): the GAN's discriminator terms run. */
static bool heads_on(const stage3 *o, int64_t s) { return gan_active(o, s) && o->gan_d_weight > 0; }

/* The critic's loss of the sample (and the discriminator's, from gan_start): its gradient into cg
 * (and the heads' into gan.g), both zeroed first; the step's update applies them (step_end). */
static hl_status critic_grad(stage3 *o, const hl_ctx *ctx, const float *text, const float *x_real,
                             int64_t step, hl_rng *rng, terms *tm) {
    const hl_distill_shape *sh = &o->c.shape;
    int64_t n = (int64_t)sh->C * sh->F * sh->H * sh->W;
    hl_distill_run run;
    HL_TRY(simulate(o, ctx, text, rng, false, &run));
    double sigma, t;
    hl_dmd_renoise_draw(&o->critic_t, 0, full_mu(o), rng, &sigma, &t);
    renoise(o, rng, sigma, n);
    helios_dit_input in;
    hl_distill_dit_input(&o->c.sampler, o->xt, sh->H, sh->W, &t, text, &in);
    hl_dit_tape *tape = NULL;
    hl_status st = hl_dit_forward_train(ctx, o->cm, &in, o->c.recompute, &tape, o->v);
    if (st == HL_OK) {
        tm->critic = hl_dmd_critic_loss(o->v, o->eps, o->x0, n, o->dx0);
        tm->t_critic = t;
        /* also drops what the generator's GAN term left in the critic's gradient */
        memset(o->cg, 0, (size_t)o->c.layout->total * sizeof(float));
        st = hl_dit_backward(ctx, o->cm, tape, o->dx0, o->cgv, NULL);
    }
    hl_dit_tape_free(tape);
    HL_TRY(st);
    if (heads_on(o, step)) {
        memset(o->gan.g, 0, (size_t)o->gan.layout.total * sizeof(float));
        HL_TRY(gan_critic_term(o, ctx, text, x_real, sigma, &t, rng, &tm->gan_d));
    }
    if (!isfinite(tm->critic) || !isfinite(tm->gan_d))
        return hl_fail(ctx->err, HELIOS_ERR_FORMAT, "stage3: non-finite critic loss");
    return HL_OK;
}

/* acc (+)= x over n floats: acc zeroed first when `first`, then x added (d: in rank order, every
 * rank's x; NULL: this process's). Zero-then-add for every sum, so a batch of B samples, B
 * micro-batches of 1 and B ranks of 1 all add the same numbers in the same order. */
static hl_status add_into(const hl_dist *d, float *acc, const float *x, int64_t n, bool first,
                          hl_error *err) {
    if (first) memset(acc, 0, (size_t)n * sizeof *acc);
    return hl_dist_ordered_add_f32(d, acc, x, n, err);
}

/* The sample's gradients into its micro-batch's sums (batch > 1). */
static hl_status add_sample(stage3 *o, int64_t sample_index, int64_t step, hl_error *err) {
    bool first = sample_index % o->c.batch == 0; /* a micro-batch starts at a multiple of batch */
    if (o->cmb) HL_TRY(add_into(NULL, o->cmb, o->cg, o->c.layout->total, first, err));
    if (o->gan.mb && heads_on(o, step))
        HL_TRY(add_into(NULL, o->gan.mb, o->gan.g, o->gan.layout.total, first, err));
    return HL_OK;
}

static hl_status write_log(stage3 *o, int64_t step, bool gen, const terms *t, hl_error *err) {
    if (!o->log && !(o->log = fopen(o->log_path, "a")))
        return hl_fail(err, HELIOS_ERR_IO, "%s: %s", o->log_path, strerror(errno));
    fprintf(o->log, "%lld\t%d\t%.9g\t%.9g\t%.9g\t%.9g\t%.6g\t%.6g\t%.9g\t%.9g\t%.9g\t%zu\n",
            (long long)step, gen ? 1 : 0, t->dmd, t->gan_g, t->critic, t->gan_d, t->t_dmd,
            t->t_critic, t->normalizer, t->critic_norm, t->heads_norm, t->gen_peak);
    fflush(o->log);
    return HL_OK;
}

hl_status hl_stage3_step(void *obj, hl_rng *rng, int64_t sample_index, const float *params,
                         float *grads, double *loss, hl_error *err) {
    stage3 *o = obj;
    hl_ctx ctx = {o->c.be, err};
    HL_TRY(hl_distill_bind(&o->c, params, grads, err));
    const hl_synthetic *d = &o->c.data;
    const float *text = d->embeds +
                        (size_t)(sample_index % d->count) * (size_t)d->L * (size_t)d->text_dim;
    int64_t step = hl_distill_step_of(&o->c, sample_index);
    bool gen = hl_dmd_generator_step(step, o->gen_every);
    terms t = {0};
    int64_t clip = sample_index % d->count; /* the chunk and its history: every pass sees them */
    HL_TRY(hl_distill_hist_draw(&o->c, clip, rng, &o->c.cur, err));
    hl_distill_hist_use(&o->c, &o->c.cur);
    hl_distill_note_task(&o->c, sample_index, &o->c.cur);
    if (gen) HL_TRY(generator_step(o, &ctx, text, step, rng, &t));
    HL_TRY(critic_grad(o, &ctx, text, hl_distill_hist_real(&o->c, &o->c.cur, clip), step, rng, &t));
    HL_TRY(add_sample(o, sample_index, step, err));
    o->rec[sample_index % o->c.batch] = t;
    *loss = t.dmd + t.gan_g + t.critic + t.gan_d;
    return HL_OK;
}

bool hl_stage3_updates(void *obj, int64_t step) {
    return hl_dmd_generator_step(step, ((stage3 *)obj)->gen_every);
}

/* ---- the step's update over the ranks (hl_stage3_sync, train_loop.h) ---------------------- */

/* sum (+)= x: a sample's terms into the step's, in sample order (the first sample's start it). */
static void sum_terms(terms *sum, const terms *x, bool first) {
    if (first) {
        *sum = *x;
        return;
    }
    sum->dmd += x->dmd, sum->gan_g += x->gan_g, sum->critic += x->critic, sum->gan_d += x->gan_d;
    sum->t_dmd += x->t_dmd, sum->t_critic += x->t_critic, sum->normalizer += x->normalizer;
    sum->gen_peak = max_sz(sum->gen_peak, x->gen_peak); /* the peak of any sample */
}

static void mean_terms(terms *t, int n) {
    double k = (double)n; /* x / 1 = x: one sample per step keeps its bits */
    t->dmd /= k, t->gan_g /= k, t->critic /= k, t->gan_d /= k;
    t->t_dmd /= k, t->t_critic /= k, t->normalizer /= k;
}

/* After micro-batch j: its critic and heads gradients of every rank into the step's (rank order),
 * its terms and tasks from every rank; then rank 0 logs the tasks. Collectives first. */
static hl_status sync_micro_batch(void *obj, const hl_dist *d, int64_t step, int64_t j,
                                  hl_error *err) {
    stage3 *o = obj;
    hl_distill_common *c = &o->c;
    if (o->cacc)
        HL_TRY(add_into(d, o->cacc, o->cmb ? o->cmb : o->cg, c->layout->total, j == 0, err));
    if (o->gan.acc && heads_on(o, step))
        HL_TRY(add_into(d, o->gan.acc, o->gan.mb ? o->gan.mb : o->gan.g, o->gan.layout.total,
                        j == 0, err));
    HL_TRY(hl_dist_allgather(d, o->rec, (size_t)c->batch * sizeof *o->rec, o->rec_all, err));
    HL_TRY(hl_distill_gather_tasks(c, d, err));
    for (int i = 0; i < c->batch * c->world; i++)
        sum_terms(&o->sum, &o->rec_all[i], j == 0 && i == 0);
    return hl_distill_log_tasks(c, step + 1, err);
}

static void scale(float *g, int64_t n, float k) {
    for (int64_t i = 0; i < n; i++) g[i] *= k;
}

/* After the step's micro-batches, on every rank alike: the critic's (and heads') gradient summed
 * over the step's samples, / samples, clipped, AdamW; rank 0 logs the step's terms. */
static hl_status sync_step_end(void *obj, const hl_dist *d, int64_t step, hl_error *err) {
    stage3 *o = obj;
    (void)d; /* every rank holds the same sums: no exchange */
    int S = o->c.spp;
    int64_t N = o->c.layout->total, P = o->gan.on ? o->gan.layout.total : 0;
    float *cg = o->cacc ? o->cacc : o->cmb ? o->cmb : o->cg;
    float *hg = o->gan.acc ? o->gan.acc : o->gan.mb ? o->gan.mb : o->gan.g;
    bool heads = heads_on(o, step);
    terms *t = &o->sum;
    if (S > 1) scale(cg, N, (float)(1.0 / S)); /* as the loop scales the student's */
    if (S > 1 && heads) scale(hg, P, (float)(1.0 / S));
    t->heads_norm = heads ? hl_clip_grad_norm(hg, P, o->critic_clip) : 0.0;
    t->critic_norm = hl_clip_grad_norm(cg, N, o->critic_clip);
    if (!isfinite(t->critic_norm) || !isfinite(t->heads_norm))
        return hl_fail(err, HELIOS_ERR_FORMAT, "stage3: non-finite critic gradient at step %lld",
                       (long long)step + 1);
    hl_adamw_step(&o->cadam, &o->copt, o->critic_lr, o->cw, cg);
    if (heads) hl_adamw_step(&o->gan.adam, &o->copt, o->critic_lr, o->gan.w, hg);
    mean_terms(t, S);
    if (!o->c.lead) return HL_OK;
    return write_log(o, step + 1, hl_dmd_generator_step(step, o->gen_every), t, err);
}

/* rank 0's model and moments to every rank (bcast: one reader of the checkpoint, the same bits). */
static hl_status share_model(const hl_dist *d, float *w, hl_adamw *a, hl_error *err) {
    size_t bytes = (size_t)a->n * sizeof(float);
    HL_TRY(hl_dist_bcast(d, w, bytes, err));
    HL_TRY(hl_dist_bcast(d, a->m, bytes, err));
    HL_TRY(hl_dist_bcast(d, a->v, bytes, err));
    return hl_dist_bcast(d, &a->step, sizeof a->step, err);
}

/* A resume: rank 0 alone read critic.safetensors (and gan.safetensors); the others get them. A
 * fresh run needs nothing: every rank made the critic from the teacher and the heads from the
 * seed. */
static hl_status sync_start(void *obj, const hl_dist *d, bool resumed, hl_error *err) {
    stage3 *o = obj;
    if (!resumed) return HL_OK;
    HL_TRY(share_model(d, o->cw, &o->cadam, err));
    return o->gan.on ? share_model(d, o->gan.w, &o->gan.adam, err) : HL_OK;
}

const hl_train_sync hl_stage3_sync = {sync_start, sync_micro_batch, sync_step_end};

hl_status hl_stage3_validate(void *obj, int64_t step, const float *params, const float *ema,
                             double *loss, char *sample, size_t cap, hl_error *err) {
    stage3 *o = obj;
    (void)sample, (void)cap; /* no video: the distance to the teacher is the evidence */
    return hl_distill_log_distance(&o->c, step, ema ? ema : params, loss, err);
}

/* ---- the critic (and the GAN heads) in the checkpoint ----------------------------------- */

/* path: "<first>NAME", "exp_avg.NAME", "exp_avg_sq.NAME" of every parameter of L, metadata step. */
static hl_status save_state(const char *path, const char *format, const char *first,
                            const hl_params *L, const float *w, const hl_adamw *a, hl_error *err) {
    size_t n = L->n * 3;
    hl_st_entry *e = calloc(n, sizeof *e);
    char(*names)[200] = calloc(n, sizeof *names);
    hl_status st = e && names ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "stage3: out of memory");
    const char *const prefix[3] = {first, "exp_avg.", "exp_avg_sq."};
    const float *src[3] = {w, a->m, a->v};
    for (size_t k = 0, j = 0; st == HL_OK && k < 3; k++)
        for (size_t i = 0; i < L->n; i++, j++) {
            snprintf(names[j], sizeof names[j], "%s%s", prefix[k], L->p[i].name);
            e[j].name = names[j];
            e[j].t = hl_tensor_make((void *)(src[k] + L->p[i].offset), HL_F32, L->p[i].ndim,
                                    L->p[i].shape);
        }
    char step[32];
    snprintf(step, sizeof step, "%lld", (long long)a->step);
    const char *meta[] = {"format", format, "step", step, NULL};
    if (st == HL_OK) st = hl_st_write(path, e, n, meta, err);
    free(e);
    free(names);
    return st;
}

static hl_status load_state(const char *path, const char *first, const hl_params *L, float *w,
                            hl_adamw *a, hl_error *err) {
    hl_safetensors *st;
    HL_TRY(hl_st_open(path, &st, err));
    const char *step = hl_st_meta(st, "step");
    hl_status s = step ? HL_OK : hl_fail(err, HELIOS_ERR_FORMAT, "%s: no step", path);
    if (s == HL_OK) a->step = strtoll(step, NULL, 10);
    const char *const prefix[3] = {first, "exp_avg.", "exp_avg_sq."};
    float *dst[3] = {w, a->m, a->v};
    for (int k = 0; k < 3 && s == HL_OK; k++)
        for (size_t i = 0; i < L->n && s == HL_OK; i++) {
            char name[200];
            snprintf(name, sizeof name, "%s%s", prefix[k], L->p[i].name);
            const hl_st_tensor *t = hl_st_find(st, name);
            if (!t || t->dtype != HL_F32 || t->nbytes != (size_t)L->p[i].numel * sizeof(float))
                s = hl_fail(err, HELIOS_ERR_FORMAT, "%s: tensor '%s' missing or not F32 of %lld",
                            path, name, (long long)L->p[i].numel);
            else memcpy(dst[k] + L->p[i].offset, t->data, t->nbytes);
        }
    hl_st_close(st);
    return s;
}

hl_status hl_stage3_save(void *obj, const char *dir, hl_error *err) {
    stage3 *o = obj;
    char p[4200];
    snprintf(p, sizeof p, "%s/critic.safetensors", dir);
    HL_TRY(save_state(p, "helios-stage3-critic", "critic.", o->c.layout, o->cw, &o->cadam, err));
    if (o->gan.on) {
        snprintf(p, sizeof p, "%s/gan.safetensors", dir);
        HL_TRY(save_state(p, "helios-stage3-gan", "heads.", &o->gan.layout, o->gan.w, &o->gan.adam,
                          err));
    }
    return hl_distill_write_model_folder(&o->c, dir, err);
}

hl_status hl_stage3_load(void *obj, const char *dir, hl_error *err) {
    stage3 *o = obj;
    char p[4200];
    snprintf(p, sizeof p, "%s/critic.safetensors", dir);
    HL_TRY(load_state(p, "critic.", o->c.layout, o->cw, &o->cadam, err));
    if (o->gan.on) {
        snprintf(p, sizeof p, "%s/gan.safetensors", dir);
        HL_TRY(load_state(p, "heads.", &o->gan.layout, o->gan.w, &o->gan.adam, err));
    }
    if (o->log) fclose(o->log), o->log = NULL;
    int64_t last = hl_distill_dir_step(dir);
    char d[4200];
    snprintf(d, sizeof d, "%s/distance.tsv", o->c.output);
    HL_TRY(hl_distill_truncate_log(d, last, err));
    HL_TRY(hl_distill_truncate_tasks(&o->c, last, err));
    return hl_distill_truncate_log(o->log_path, last, err);
}
