/* helios train CONFIG.json — trains a model component with the generic loop (src/train/), as the
 * configuration file says (docs/training.md). A client of the library's training module: this file
 * reads the configuration, builds the flat parameters and the objective, prints progress, keeps
 * OUTPUT/losses.tsv and turns Ctrl-C into "checkpoint, then exit 0". Started by mpirun (a build
 * with MPI), each process is one data-parallel rank (train/dist.h); rank 0 alone writes. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "core/parallel.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/train_config.h"
#include "tools/train_memory.h"
#include "tools/train_text.h"
#include "tools/train_vae.h"
#include "train/dist.h"
#include "train/dit_flat.h"
#include "io/safetensors_write.h"
#include "train/distill.h"
#include "train/lora.h"
#include "train/lora_step.h"
#include "train/objective.h"

typedef struct train_opts {
    const char *config;
    bool resume, quiet, gan_memory;
    int threads; /* -1: the configuration's */
    int throttle_ms;
} train_opts;

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: helios train CONFIG.json [options]\n"
        "\n"
        "Trains a model component as CONFIG.json says (keys: docs/training.md). Checkpoints go\n"
        "to OUTPUT/checkpoint-STEP/ (the transformer/, vae/ or text_encoder/ folder in each\n"
        "loads as a model's), one line per step to OUTPUT/losses.tsv (step, loss in %%a and %%g, "
        "lr,\n"
        "gradient norm), one per validation to OUTPUT/validation.tsv (step, loss in %%a and\n"
        "%%g, the video or -), progress to stderr. Ctrl-C (or SIGTERM, SIGUSR1) writes a\n"
        "checkpoint and exits 0; a second one kills at once.\n"
        "\n"
        "      --resume        continue from the newest complete checkpoint in OUTPUT (none:\n"
        "                      start from step 0); the run goes on bit for bit as if never\n"
        "                      stopped\n"
        "      --threads N     worker threads, 0 = all cores (default: the config's)\n"
        "      --throttle MS   sleep MS milliseconds after each step (to test interruption)\n"
        "      --gan-memory    print the peak activation memory of one stage-3 generator\n"
        "                      step with and without Cache Grad for this model and sample\n"
        "                      shape (docs/training.md), then exit without training\n"
        "  -q, --quiet         no progress line\n"
        "  -h, --help          this text\n"
        "\n"
        "Data-parallel over MPI (%s): mpirun -np N helios train CONFIG.json runs N ranks;\n"
        "each step takes accumulation micro-batches on every rank (N x accumulation in all),\n"
        "with the same results, bit for bit, as one process with N x accumulation. Rank 0\n"
        "writes the checkpoints, losses.tsv and progress (and stage 3's logs; its critic\n"
        "updates once per step, the same on every rank). Stop such a run with\n"
        "kill -USR1 MPIRUN_PID (mpirun forwards it to every rank).\n"
        "\n"
        "objectives (\"objective\": {\"type\": ...}):\n",
        hl_dist_built_with_mpi() ? "this build has it" : "this build has no MPI");
    size_t n;
    const hl_train_objective *o = hl_train_objectives(&n);
    for (size_t i = 0; i < n; i++) fprintf(f, "  %-12s %s\n", o[i].name, o[i].description);
    fprintf(f, "\nexit status: 0 done (or stopped by Ctrl-C after its checkpoint), 1 failure,\n"
               "2 bad command line or configuration\n");
}

static int parse(int argc, char **argv, train_opts *o) {
    memset(o, 0, sizeof *o);
    o->threads = -1;
    args a;
    args_init(&a, "helios train", argc, argv);
    while (args_next(&a)) {
        int rc = 0;
        if (args_is(&a, "-h", "--help")) {
            usage(stdout);
            return -1;
        } else if (args_is(&a, NULL, "--resume")) o->resume = true;
        else if (args_is(&a, "-q", "--quiet")) o->quiet = true;
        else if (args_is(&a, NULL, "--gan-memory")) o->gan_memory = true;
        else if (args_is(&a, NULL, "--threads")) rc = args_int(&a, 0, 4096, &o->threads);
        else if (args_is(&a, NULL, "--throttle")) rc = args_int(&a, 0, 3600000, &o->throttle_ms);
        else if (a.opt[0] == '-' && a.opt[1]) return args_fail(&a, "unknown option %s", a.opt);
        else if (o->config) return args_fail(&a, "one configuration file only (got %s)", a.opt);
        else o->config = a.opt;
        if (rc) return rc;
    }
    if (!o->config) {
        usage(stderr);
        return ARGS_USAGE;
    }
    return 0;
}

/* ---- Ctrl-C ------------------------------------------------------------------------------- */

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) { g_stop = 1; }

static void install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND; /* the second Ctrl-C kills */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL); /* what mpirun forwards to every rank */
}

/* ---- the model ---------------------------------------------------------------------------- */

static bool is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}

/* model: a model folder (with transformer/), a transformer folder (with config.json) or a
 * config.json: its config file and the folder of its weights. */
static void resolve_model(const char *model, char *cfg, char *weights, size_t n) {
    char t[4096];
    snprintf(t, sizeof t, "%s/transformer", model);
    if (is_dir(model) && is_dir(t)) {
        snprintf(cfg, n, "%s/config.json", t);
        snprintf(weights, n, "%s", t);
    } else if (is_dir(model)) {
        snprintf(cfg, n, "%s/config.json", model);
        snprintf(weights, n, "%s", model);
    } else {
        snprintf(cfg, n, "%s", model);
        const char *slash = strrchr(model, '/');
        if (slash) snprintf(weights, n, "%.*s", (int)(slash - model), model);
        else snprintf(weights, n, ".");
    }
}

typedef struct model {
    char cfg_path[4096], weights[4096];
    char *config_text;
    hl_dit_config dit;
    hl_vae_config vae;   /* component "vae" */
    hl_umt5_config umt5; /* component "text_encoder" */
    bool is_vae, is_text;
    hl_params layout;
    float *params, *ema;
} model;

static hl_status load_model(const train_cfg *c, model *m, hl_error *err) {
    m->is_vae = !strcmp(c->component, "vae");
    m->is_text = !strcmp(c->component, "text_encoder");
    if (m->is_vae || m->is_text) {
        if (m->is_vae)
            HL_TRY(train_vae_load(c, &m->vae, &m->layout, &m->config_text, &m->params, err));
        else HL_TRY(train_text_load(c, &m->umt5, &m->layout, &m->config_text, &m->params, err));
        if (c->ema > 0 && !(m->ema = malloc(((size_t)m->layout.total + 1) * sizeof(float))))
            return hl_fail(err, HELIOS_ERR_OOM, "out of memory for the EMA");
        return HL_OK;
    }
    resolve_model(c->model, m->cfg_path, m->weights, sizeof m->cfg_path);
    size_t len;
    hl_status rs = hl_file_read_all(m->cfg_path, HL_FILE_MAX_CONFIG, "JSON config", &m->config_text,
                                    &len, err);
    if (rs != HL_OK) {
        hl_error_prefix(err, "%s: 'model' \"%s\"", c->path, c->model);
        return rs;
    }
    hl_json *j = NULL;
    hl_status st = hl_json_parse(m->config_text, len, &j, err);
    if (st == HL_OK) st = hl_dit_config_parse(j, &m->dit, err);
    hl_json_free(j);
    if (st != HL_OK) {
        hl_error_prefix(err, "%s", m->cfg_path);
        return st;
    }
    HL_TRY(hl_dit_params_layout(&m->dit, &m->layout, err));
    size_t n = m->layout.total ? (size_t)m->layout.total : 1;
    m->params = malloc(n * sizeof(float));
    m->ema = c->ema > 0 ? malloc(n * sizeof(float)) : NULL;
    if (!m->params || (c->ema > 0 && !m->ema))
        return hl_fail(err, HELIOS_ERR_OOM, "out of memory for %lld parameters",
                       (long long)m->layout.total);
    if (c->init == TRAIN_INIT_RANDOM) {
        hl_rng g;
        g.path = HL_RNG_NORMAL_AVX2;
        hl_rng_seed(&g, c->seed);
        hl_dit_params_init_random(&m->dit, &m->layout, m->params, &g);
        return HL_OK;
    }
    hl_weights *w;
    HL_TRY(hl_weights_open(m->weights, &w, err));
    st = hl_params_load(&m->layout, m->params, w, err);
    hl_weights_close(w);
    return st;
}

static void free_model(model *m) {
    free(m->config_text);
    hl_params_free(&m->layout);
    free(m->params);
    free(m->ema);
}

/* ---- OUTPUT/losses.tsv -------------------------------------------------------------------- */

typedef struct reporter {
    const train_opts *o;
    double (*tokens_per_sample)(void *obj); /* the objective's, or NULL */
    void *obj;
    char log_path[4096], val_path[4096];
    FILE *log, *val; /* losses.tsv, validation.tsv */
    bool append;
    int throttle_ms;
} reporter;

/* mkdir -p path */
static hl_status make_dirs(const char *path, hl_error *err) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: path too long", path);
    for (char *s = p + 1;; s++) {
        if (*s && *s != '/') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return hl_fail(err, HELIOS_ERR_IO, "%s: cannot create the folder: %s", p,
                           strerror(errno));
        if (!c) break;
        *s = c;
    }
    if (!is_dir(path)) return hl_fail(err, HELIOS_ERR_IO, "%s: not a folder", path);
    return HL_OK;
}

/* Keeps the lines of the log whose step is <= last (a resume rewrites what follows). */
static hl_status truncate_log(const char *path, int64_t last, hl_error *err) {
    return hl_distill_truncate_log(path, last, err);
}

static void format_eta(double s, char *out, size_t n) {
    if (!(s >= 0) || s > 1e9) snprintf(out, n, "?");
    else if (s < 120) snprintf(out, n, "%.0f s", s);
    else if (s < 7200) snprintf(out, n, "%.1f min", s / 60);
    else snprintf(out, n, "%.1f h", s / 3600);
}

static void on_step(void *user, const hl_train_progress *p) {
    reporter *r = user;
    if (!r->log) {
        r->log = fopen(r->log_path, r->append ? "a" : "w");
        if (!r->log) fprintf(stderr, "helios train: %s: %s\n", r->log_path, strerror(errno));
    }
    if (r->log) {
        fprintf(r->log, "%lld\t%a\t%.9g\t%.9g\t%.9g\n", (long long)p->step, p->loss, p->loss, p->lr,
                p->grad_norm);
        fflush(r->log);
    }
    if (p->has_validation && !r->val) {
        r->val = fopen(r->val_path, r->append ? "a" : "w");
        if (!r->val) fprintf(stderr, "helios train: %s: %s\n", r->val_path, strerror(errno));
    }
    if (p->has_validation && r->val) {
        const char *v = p->validation_sample;
        fprintf(r->val, "%lld\t%a\t%.9g\t%s\n", (long long)p->step, p->validation_loss,
                p->validation_loss, v && v[0] ? v : "-");
        fflush(r->val);
    }
    if (!r->o->quiet) {
        char eta[32], val[64] = "", ck[64] = "";
        format_eta(p->eta_s, eta, sizeof eta);
        if (p->has_validation) snprintf(val, sizeof val, "  val %.6g", p->validation_loss);
        if (p->checkpoint) {
            const char *slash = strrchr(p->checkpoint, '/');
            snprintf(ck, sizeof ck, "  -> %s", slash ? slash + 1 : p->checkpoint);
        }
        char tok[48] = "";
        if (r->tokens_per_sample)
            snprintf(tok, sizeof tok, "  %.4g tokens/s",
                     p->samples_per_s * r->tokens_per_sample(r->obj));
        bool tty = isatty(2);
        fprintf(stderr,
                "%sstep %lld/%lld  loss %.6g  lr %.3g  grad norm %.3g  %.2f samples/s%s  ETA "
                "%s%s%s%s",
                tty ? "\r" : "", (long long)p->step, (long long)p->steps, p->loss, p->lr,
                p->grad_norm, p->samples_per_s, tok, eta, val, ck,
                tty && !p->checkpoint && !p->has_validation ? "   " : "\n");
        if (p->has_validation) {
            const char *v = p->validation_sample;
            fprintf(stderr, "validation: step %lld loss %.9g%s%s\n", (long long)p->step,
                    p->validation_loss, v && v[0] ? " -> " : "", v && v[0] ? v : "");
        }
    }
    if (r->throttle_ms > 0) {
        struct timespec ts = {r->throttle_ms / 1000, (long)(r->throttle_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL); /* a signal cuts it short */
    }
}

/* ---- the command -------------------------------------------------------------------------- */

/* Checks what this build can train; 0 or an exit status. */
static int check_supported(const train_cfg *c, const hl_train_objective **obj) {
    struct stat sb;
    if (strcmp(c->data, "procedural") && strcmp(c->data, "synthetic") &&
        (stat(c->data, &sb) || !S_ISDIR(sb.st_mode))) {
        fprintf(stderr,
                "helios train: %s: 'data' \"%s\" is not \"procedural\", \"synthetic\" or a "
                "folder of videos with captions\n",
                c->path, c->data);
        return 2;
    }
    *obj = hl_train_objective_find(c->objective_type);
    if (!*obj || !(*obj)->create) {
        size_t n;
        const hl_train_objective *t = hl_train_objectives(&n);
        fprintf(stderr, "helios train: %s: 'objective.type' \"%s\" %s; implemented:", c->path,
                c->objective_type, *obj ? "is not implemented yet" : "is unknown");
        for (size_t i = 0; i < n; i++)
            if (t[i].create) fprintf(stderr, " \"%s\"", t[i].name);
        fputc('\n', stderr);
        return 2;
    }
    const char *trains = (*obj)->component ? (*obj)->component : "transformer";
    if (strcmp(trains, "any") && strcmp(trains, c->component)) {
        fprintf(stderr,
                "helios train: %s: 'objective.type' \"%s\" trains the %s, not 'component' "
                "\"%s\"\n",
                c->path, c->objective_type, trains, c->component);
        return 2;
    }
    if (strcmp(c->component, "transformer") && c->lora_rank) {
        fprintf(stderr, "helios train: %s: 'lora' is for the transformer, not the %s\n", c->path,
                c->component);
        return 2;
    }
    return 0;
}

/* LoRA (docs/training.md): the loop trains the adapters of the model's weights; at the end the
 * adapters are written as OUTPUT/lora/pytorch_lora_weights.safetensors and the merged weights
 * as OUTPUT/merged/transformer/ (a transformer folder helios generate can use). */
typedef struct lora_run {
    hl_lora lora;
    hl_lora_objective obj;
    float *ad, *ad_ema;
    const char *targets[257];
} lora_run;

static hl_status lora_setup(const train_cfg *c, const model *m, const hl_train_objective *objective,
                            void *obj, lora_run *lr, hl_error *err) {
    const char *const *targets = NULL;
    if (c->lora_targets) {
        for (size_t i = 0; i < c->lora_targets->n; i++)
            lr->targets[i] = c->lora_targets->items[i].string;
        targets = lr->targets;
    }
    if (c->lora_init) {
        HL_TRY(hl_lora_load(c->lora_init, &m->layout, m->params, &lr->lora, &lr->ad, err));
        if (lr->lora.rank != c->lora_rank)
            return hl_fail_key(err, HELIOS_ERR_INVALID_ARG, c->path, "lora.rank",
                               "is %d but '%s' has rank %d", c->lora_rank, c->lora_init,
                               lr->lora.rank);
    } else {
        HL_TRY(hl_lora_new(&lr->lora, &m->layout, m->params, c->lora_rank, c->lora_alpha, targets,
                           err));
        if (!(lr->ad = calloc((size_t)lr->lora.layout.total + 1, sizeof *lr->ad)))
            return hl_fail(err, HELIOS_ERR_OOM, "LoRA: out of memory");
        hl_rng g = {.path = HL_RNG_NORMAL_AVX2};
        hl_rng_seed(&g, c->seed ^ 0x4c6f5241ull); /* its own stream: the loop's is untouched */
        hl_lora_init_adapters(&lr->lora, lr->ad, &g);
    }
    if (c->ema > 0 && !(lr->ad_ema = malloc(((size_t)lr->lora.layout.total + 1) * sizeof(float))))
        return hl_fail(err, HELIOS_ERR_OOM, "LoRA: out of memory");
    return hl_lora_objective_init(&lr->obj, &lr->lora, m->layout.total, m->params, objective->step,
                                  objective->validate, obj, err);
}

/* OUTPUT/lora/pytorch_lora_weights.safetensors and OUTPUT/merged/transformer/. */
static hl_status lora_export(const train_cfg *c, const model *m, lora_run *lr, hl_error *err) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/lora", c->output);
    HL_TRY(make_dirs(dir, err));
    snprintf(path, sizeof path, "%s/pytorch_lora_weights.safetensors", dir);
    HL_TRY(hl_lora_save(path, &lr->lora, lr->ad, err));
    float *w = malloc(((size_t)m->layout.total + 1) * sizeof *w);
    hl_st_entry *e = calloc(m->layout.n + 1, sizeof *e);
    hl_status st = w && e ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "LoRA: out of memory");
    if (st == HL_OK) {
        memcpy(w, m->params, (size_t)m->layout.total * sizeof *w);
        hl_lora_merge(&lr->lora, lr->ad, w);
        for (size_t i = 0; i < m->layout.n; i++) {
            const hl_param *q = &m->layout.p[i];
            e[i].name = q->name;
            e[i].t = hl_tensor_make(w + q->offset, HL_F32, q->ndim, q->shape);
        }
        snprintf(dir, sizeof dir, "%s/merged/transformer", c->output);
        st = make_dirs(dir, err);
    }
    if (st == HL_OK) {
        snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
        st = hl_st_write(path, e, m->layout.n, NULL, err);
    }
    if (st == HL_OK) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        st = hl_write_file_atomic(path, m->config_text, strlen(m->config_text), err);
    }
    free(w);
    free(e);
    return st;
}

static void lora_free(lora_run *lr) {
    hl_lora_objective_free(&lr->obj);
    hl_lora_free(&lr->lora);
    free(lr->ad);
    free(lr->ad_ema);
}

int cmd_train(int argc, char **argv) {
    train_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    /* Every step allocates its activations and frees them at the end. glibc would map buffers
     * above 128 KiB afresh and give the heap's top back after each step, so the next step pays
     * a page fault per 4 KiB again (a quarter of a tiny model's step); keep the memory instead. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    hl_error err = {0};
    hl_dist dist;
    if (hl_dist_init(&dist, &err) != HL_OK) {
        fprintf(stderr, "helios train: %s\n", err.msg);
        return 1;
    }
    bool lead = dist.rank == 0;
    if (!lead) o.quiet = true;
    train_cfg c;
    if (train_cfg_load(o.config, &c, &err) != HL_OK) {
        fprintf(stderr, "helios train: %s\n", err.msg);
        hl_dist_finalize(&dist);
        return 2;
    }
    const hl_train_objective *objective = NULL;
    model m = {0};
    lora_run lr = {0};
    void *obj = NULL;
    reporter rep = {.o = &o, .throttle_ms = o.throttle_ms};
    hl_status st = HL_OK;
    if ((rc = check_supported(&c, &objective)) != 0) goto done;
    hl_set_threads(o.threads >= 0 ? o.threads : c.threads);
    rc = 1;
    st = load_model(&c, &m, &err);
    if (st == HL_OK && o.gan_memory && (m.is_vae || m.is_text)) {
        st = hl_fail(&err, HELIOS_ERR_INVALID_ARG, "--gan-memory is for the transformer");
        rc = 2;
        goto done;
    }
    if (st == HL_OK && o.gan_memory) {
        rc = train_gan_memory(&c, &m.dit, &m.layout, m.params, &err);
        st = rc ? HELIOS_ERR_INVALID_ARG : HL_OK;
        goto done;
    }
    hl_train_env env = {.config_path = o.config,
                        .layout = &m.layout,
                        .dit = m.is_vae || m.is_text ? NULL : &m.dit,
                        .init_params = m.params,
                        .seed = c.seed,
                        .data = c.data,
                        .model = c.model,
                        .output = c.output,
                        .config_json = m.config_text,
                        .samples_per_step = c.batch * c.accumulation * dist.world,
                        .vae = m.is_vae ? &m.vae : NULL,
                        .umt5 = m.is_text ? &m.umt5 : NULL,
                        .batch = c.batch,
                        .dist = &dist};
    /* An objective that trains a model of its own without the hooks that keep it data-parallel
     * (hl_train_sync) would train one per rank. */
    if (st == HL_OK && dist.world > 1 && (objective->save_state || objective->updates) &&
        !objective->sync) {
        st = hl_fail(&err, HELIOS_ERR_UNSUPPORTED,
                     "%s: objective \"%s\" keeps a model of its own, which is not data-parallel "
                     "yet: run it on one process (with accumulation %d for the same steps)",
                     c.path, objective->name, c.accumulation * dist.world);
        rc = 2;
        goto done;
    }
    /* Rank 0 first: an objective may fill a latent cache in the output folder, which the other
     * ranks then only read. */
    if (st == HL_OK && lead) st = objective->create(c.objective, &env, &obj, &err);
    if (dist.world > 1) {
        int32_t failed = st != HL_OK; /* rank 0's */
        hl_status b = hl_dist_bcast(&dist, &failed, sizeof failed, st == HL_OK ? &err : NULL);
        if (st == HL_OK && b != HL_OK) st = b;
        if (st == HL_OK && failed)
            st = hl_fail(&err, HELIOS_ERR_INTERNAL,
                         "rank 0 could not prepare the run (its message is in its output)");
    }
    if (st == HL_OK && !lead) st = objective->create(c.objective, &env, &obj, &err);
    if (st == HELIOS_ERR_INVALID_ARG) rc = 2; /* a bad objective setting */
    if (st == HL_OK && c.lora_rank &&
        (st = lora_setup(&c, &m, objective, obj, &lr, &err)) != HL_OK &&
        st == HELIOS_ERR_INVALID_ARG)
        rc = 2;
    if (st != HL_OK) goto done;

    hl_train_config tc = {0};
    tc.steps = c.steps;
    tc.batch = c.batch;
    tc.micro_batches = c.accumulation;
    tc.adamw = (hl_adamw_config){c.betas[0], c.betas[1], c.eps, c.weight_decay};
    tc.lr = (hl_lr_schedule){c.schedule == TRAIN_SCHED_COSINE ? HL_LR_COSINE : HL_LR_CONSTANT, c.lr,
                             c.min_lr, c.warmup, c.steps};
    tc.clip = c.clip;
    tc.ema_decay = c.ema;
    tc.ema_start = c.ema_start;
    tc.seed = c.seed;
    tc.checkpoint_every = c.checkpoint_every;
    tc.keep = c.keep;
    tc.validation_every = c.validation_every;
    tc.resume = o.resume;
    tc.dist = &dist;
    /* the numbers depend on the micro-batches of a step in all, not on how ranks share them: a
     * run may resume with another split (2 ranks x 1 <-> 1 process x 2) */
    train_cfg hc = c;
    hc.accumulation = c.accumulation * dist.world;
    tc.config_hash = train_cfg_hash(&hc, m.config_text);
    tc.io = (hl_ckpt_io){c.output,      c.component, "diffusion_pytorch_model.safetensors",
                         m.config_text, &m.layout,   NULL,
                         NULL,          NULL,        NULL,
                         NULL,          NULL};
    if (c.lora_rank) { /* checkpoints hold the adapters (the loop's parameters) */
        tc.io.component = "transformer_lora";
        tc.io.weights_name = "pytorch_lora_weights.safetensors";
        tc.io.config_json = NULL;
        tc.io.layout = &lr.lora.layout;
    }
    if (m.is_text) tc.io.weights_name = "model.safetensors"; /* transformers' file name */
    if (!c.lora_rank && c.ema > 0) tc.io.ema_folder = objective->ema_folder;
    tc.io.extra_save = objective->save_state;
    tc.io.extra_load = objective->load_state;
    tc.io.extra_user = obj;
    tc.updates = objective->updates;
    tc.sync = objective->sync;
    tc.hook_user = obj; /* the objective's, also under LoRA (whose loop object wraps it) */
    tc.batch_step = c.lora_rank ? NULL : objective->step_batch; /* LoRA: sample by sample */
    if (objective->trained) objective->trained(obj, &tc.train_begin, &tc.train_end);
    if (c.lora_rank && tc.train_end) { /* the range is of the model's weights, not the adapters' */
        st = hl_fail_key(&err, HELIOS_ERR_INVALID_ARG, c.path, "objective.train",
                         "trains part of the model; LoRA adapters train all of it");
        rc = 2;
        goto done;
    }
    tc.report = on_step;
    tc.report_user = &rep;
    rep.tokens_per_sample = objective->tokens_per_sample;
    rep.obj = obj;
    tc.stop = &g_stop;
    snprintf(rep.log_path, sizeof rep.log_path, "%s/losses.tsv", c.output);
    snprintf(rep.val_path, sizeof rep.val_path, "%s/validation.tsv", c.output);
    rep.append = o.resume;
    if (lead && (st = make_dirs(c.output, &err)) != HL_OK) goto done;
    if (lead && o.resume) {
        int64_t last;
        char dir[4096];
        st = hl_ckpt_latest(c.output, &last, dir, sizeof dir, &err);
        if (st == HL_OK) st = truncate_log(rep.log_path, last < 0 ? 0 : last, &err);
        if (st == HL_OK) st = truncate_log(rep.val_path, last < 0 ? 0 : last, &err);
        if (st != HL_OK) goto done;
    }
    install_sigint();
    hl_train_result res;
    if (c.lora_rank)
        st = hl_train_run(&tc, hl_lora_objective_step,
                          objective->validate ? hl_lora_objective_validate : NULL, &lr.obj, lr.ad,
                          lr.ad_ema, &res, &err);
    else
        st = hl_train_run(&tc, objective->step, objective->validate, obj, m.params, m.ema, &res,
                          &err);
    if (st == HL_OK && c.lora_rank) st = lora_export(&c, &m, &lr, &err);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (st == HL_OK) {
        rc = 0;
        if (lead && (!o.quiet || res.stopped))
            fprintf(stderr, "helios train: %s at step %lld/%lld; checkpoint %s/checkpoint-%lld\n",
                    res.stopped ? "stopped" : "done", (long long)res.steps_done, (long long)c.steps,
                    c.output, (long long)res.steps_done);
    } else if (st == HELIOS_ERR_INVALID_ARG) {
        rc = 2; /* a resume the folder or configuration does not allow */
    }
done:
    if (st != HL_OK) fprintf(stderr, "helios train: %s\n", err.msg);
    if (rep.log) fclose(rep.log);
    if (rep.val) fclose(rep.val);
    lora_free(&lr);
    if (obj) objective->destroy(obj);
    free_model(&m);
    train_cfg_free(&c);
    hl_dist_finalize(&dist);
    return rc;
}
