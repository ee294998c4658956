/* The training loop (train/train_loop.h) on a toy objective: least squares of a small linear model
 * y = W x + b against a fixed teacher, x drawn from the sample's generator (keyed by the seed and
 * the sample index: a resume needs only the sample position).
 *   - the loss falls;
 *   - two runs with the same seed give the same bits;
 *   - 10 steps uninterrupted == 5 steps + resume to 10 (losses compared in %a, weights, EMA);
 *   - a stop request (what SIGINT sets) checkpoints and returns; resuming continues exactly;
 *   - a trainer SIGKILLed while it writes a checkpoint (a fork, killed from the writer's hook at
 *     each stage) resumes from the previous complete one and still reproduces the run;
 *   - resume refuses another configuration; a fresh run refuses a folder with checkpoints;
 *   - the TTUR filter (updates) leaves the weights, moments and EMA alone on skipped steps, and
 *     an objective's own state kept through extra_save / extra_load resumes exactly. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/parallel.h"
#include "test_util.h"
#include "train/train_loop.h"

enum { I = 4, O = 3, MAXSTEPS = 64 };

typedef struct toy {
    hl_tensor w, b; /* bound to the flat parameters by the binder */
    float teacher_w[O * I], teacher_b[O];
} toy;

static hl_status toy_step(void *obj, hl_rng *rng, int64_t index, const float *params, float *grads,
                          double *loss, hl_error *err) {
    const toy *t = obj;
    float x[I];
    hl_rng_randn_f32(rng, x, I); /* numel < 16: torch's scalar double path */
    const float *w = params, *b = params + O * I;
    float *gw = grads, *gb = grads + O * I;
    double l = 0;
    for (int o = 0; o < O; o++) {
        float y = t->teacher_b[o], p = b[o];
        for (int i = 0; i < I; i++) y += t->teacher_w[o * I + i] * x[i], p += w[o * I + i] * x[i];
        float r = p - y;
        l += 0.5 * (double)r * r;
        for (int i = 0; i < I; i++) gw[o * I + i] += r * x[i];
        gb[o] += r;
    }
    *loss = l;
    return HL_OK;
}

typedef struct log {
    int n;
    double loss[MAXSTEPS];
    int64_t step[MAXSTEPS];
    int stop_at;                 /* set *stop after this step (0: never) */
    volatile sig_atomic_t *stop; /* the loop's flag */
} log_t;

static void on_step(void *user, const hl_train_progress *p) {
    log_t *l = user;
    if (l->n < MAXSTEPS) l->step[l->n] = p->step, l->loss[l->n++] = p->loss;
    if (l->stop_at && p->step == l->stop_at) *l->stop = 1;
}

static char g_root[256];
static hl_params g_layout;
static toy g_toy;
static const char *g_kill_stage; /* in the child: SIGKILL itself at this checkpoint stage */
static int64_t g_kill_step;

static void kill_hook(void *user, int64_t step, const char *stage) {
    if (g_kill_stage && step == g_kill_step && !strcmp(stage, g_kill_stage)) raise(SIGKILL);
}

static void setup(void) {
    hl_error e = {0};
    hl_binder b;
    hl_binder_init(&b, 4, &e);
    hl_binder_tensor(&b, &g_toy.w, 2, (const int64_t[]){O, I}, "linear.weight");
    hl_binder_tensor(&b, &g_toy.b, 1, (const int64_t[]){O}, "linear.bias");
    CHECK(hl_params_from_binder(&b, &g_layout, &e) == HL_OK && g_layout.total == O * I + O, "%s",
          e.msg);
    hl_binder_free(&b);
    fill_random(g_toy.teacher_w, O * I, 3);
    fill_random(g_toy.teacher_b, O, 4);
}

static hl_train_config config(const char *out, int64_t steps, bool resume,
                              volatile sig_atomic_t *stop, log_t *l) {
    hl_train_config c = {0};
    c.steps = steps;
    c.batch = 2;
    c.micro_batches = 2;
    c.adamw = (hl_adamw_config){0.9, 0.99, 1e-8, 0.01};
    c.lr = (hl_lr_schedule){HL_LR_COSINE, 0.05, 0.005, 3, 40};
    c.clip = 1.0;
    c.ema_decay = 0.9;
    c.seed = 1234;
    c.checkpoint_every = 3;
    c.keep = 2;
    c.resume = resume;
    c.config_hash = 77;
    c.io = (hl_ckpt_io){out,    "model",   "diffusion_pytorch_model.safetensors",
                        "{}\n", &g_layout, kill_hook,
                        NULL,   NULL,      NULL,
                        NULL,   NULL};
    c.report = on_step;
    c.report_user = l;
    c.stop = stop;
    if (l) l->stop = stop;
    return c;
}

typedef struct result {
    log_t log;
    float w[O * I + O], ema[O * I + O];
    hl_status st;
    hl_train_result r;
    char msg[HL_ERR_MSG_MAX];
} result;

/* Runs (or resumes) in folder `name` to `steps`. */
static void run(const char *name, int64_t steps, bool resume, int stop_at, result *out) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", g_root, name);
    memset(out, 0, sizeof *out);
    static volatile sig_atomic_t stop;
    stop = 0;
    out->log.stop_at = stop_at;
    hl_train_config c = config(dir, steps, resume, &stop, &out->log);
    if (!strcmp(name, "fall")) c.checkpoint_every = 0; /* only at the end */
    for (int k = 0; k < O * I + O; k++) out->w[k] = 0.1f * (float)k - 0.5f;
    hl_error e = {0};
    out->st = hl_train_run(&c, toy_step, NULL, &g_toy, out->w, out->ema, &out->r, &e);
    snprintf(out->msg, sizeof out->msg, "%s", e.msg);
}

/* The losses of b equal those of a from b's first step on, bit for bit (%a). */
static void check_same_losses(const result *a, const result *b, const char *what) {
    int same = b->log.n > 0;
    for (int i = 0; i < b->log.n; i++) {
        int64_t s = b->log.step[i];
        char x[64], y[64];
        snprintf(x, sizeof x, "%a", a->log.loss[s - 1]);
        snprintf(y, sizeof y, "%a", b->log.loss[i]);
        if (a->log.step[s - 1] != s || strcmp(x, y)) {
            same = 0;
            fprintf(stderr, "  %s: step %lld loss %s vs %s\n", what, (long long)s, x, y);
        }
    }
    CHECK(same, "%s: losses differ", what);
    CHECK(!memcmp(a->w, b->w, sizeof a->w) && !memcmp(a->ema, b->ema, sizeof a->ema),
          "%s: final weights / EMA differ", what);
}

static result g_ref; /* 10 steps, uninterrupted */

static void test_falls_and_deterministic(void) {
    result *r = calloc(1, sizeof *r);
    run("fall", 40, false, 0, r);
    CHECK(r->st == HL_OK, "%s", r->msg);
    double first = r->log.loss[0], last = r->log.loss[r->log.n - 1];
    printf("  toy loss: step 1 %.4f -> step %d %.6f\n", first, r->log.n, last);
    CHECK(r->log.n == 40 && last < 0.05 * first, "loss falls: %g -> %g", first, last);

    run("ref", 10, false, 0, &g_ref);
    CHECK(g_ref.st == HL_OK && g_ref.log.n == 10, "%s", g_ref.msg);
    run("ref2", 10, false, 0, r);
    CHECK(r->st == HL_OK, "%s", r->msg);
    check_same_losses(&g_ref, r, "same seed twice");
    free(r);
}

static void test_resume(void) {
    result *r = calloc(1, sizeof *r);
    run("resume", 5, false, 0, r);
    CHECK(r->st == HL_OK && r->r.steps_done == 5, "%s", r->msg);
    run("resume", 10, true, 0, r);
    CHECK(r->st == HL_OK && r->r.first_step == 5 && r->log.n == 5, "%s (first %lld)", r->msg,
          (long long)r->r.first_step);
    check_same_losses(&g_ref, r, "5 + resume 5");

    /* a stop request after step 4 (between checkpoints) checkpoints step 4 and returns */
    run("stop", 10, false, 4, r);
    CHECK(r->st == HL_OK && r->r.stopped && r->r.steps_done == 4, "stop: %s", r->msg);
    char p[512];
    snprintf(p, sizeof p, "%s/stop/checkpoint-4/COMPLETE", g_root);
    CHECK(access(p, F_OK) == 0, "checkpoint at the stop");
    run("stop", 10, true, 0, r);
    CHECK(r->st == HL_OK && r->r.first_step == 4, "%s", r->msg);
    check_same_losses(&g_ref, r, "stop at 4 + resume");
    snprintf(p, sizeof p, "%s/stop/checkpoint-3", g_root);
    CHECK(access(p, F_OK) != 0, "keep 2: checkpoint-3 pruned (4, 6, 9, 10 written)");

    /* refusals */
    run("resume", 12, false, 0, r);
    CHECK(r->st == HELIOS_ERR_INVALID_ARG && strstr(r->msg, "already holds checkpoints"),
          "fresh run into a used folder: %s", r->msg);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/resume", g_root);
    hl_train_config c = config(dir, 12, true, NULL, NULL);
    c.config_hash = 78;
    hl_error e = {0};
    CHECK(hl_train_run(&c, toy_step, NULL, &g_toy, r->w, r->ema, &r->r, &e) ==
                  HELIOS_ERR_INVALID_ARG &&
              strstr(e.msg, "another configuration"),
          "resume with another config: %s", e.msg);
    c.config_hash = 77;
    c.batch = 0;
    CHECK(hl_train_run(&c, toy_step, NULL, &g_toy, r->w, r->ema, &r->r, &e) ==
              HELIOS_ERR_INVALID_ARG,
          "batch 0");
    free(r);
}

/* A child trains toward 10 steps and SIGKILLs itself at `stage` of the checkpoint of step 6; the
 * parent resumes and must reproduce the uninterrupted run. */
static void test_kill_during_checkpoint(const char *stage, int index) {
    char name[64];
    snprintf(name, sizeof name, "kill%d", index);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        hl_set_threads(1); /* no OpenMP team in a forked child */
        g_kill_stage = stage;
        g_kill_step = 6;
        result *r = calloc(1, sizeof *r);
        run(name, 10, false, 0, r);
        _exit(3); /* not reached: killed */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child killed at %s", stage);
    char p[512];
    snprintf(p, sizeof p, "%s/%s/checkpoint-3/COMPLETE", g_root, name);
    CHECK(access(p, F_OK) == 0, "%s: previous checkpoint complete", stage);
    snprintf(p, sizeof p, "%s/%s/checkpoint-6/COMPLETE", g_root, name);
    bool done = !strcmp(stage, "complete");
    CHECK((access(p, F_OK) == 0) == done, "%s: checkpoint-6 complete only after its marker", stage);
    result *r = calloc(1, sizeof *r);
    run(name, 10, true, 0, r);
    CHECK(r->st == HL_OK, "%s: %s", stage, r->msg);
    CHECK(r->r.first_step == (done ? 6 : 3), "%s: resumed from %lld", stage,
          (long long)r->r.first_step);
    char what[64];
    snprintf(what, sizeof what, "killed at %s + resume", stage);
    check_same_losses(&g_ref, r, what);
    free(r);
}

/* Each sample's generator is keyed by (seed, sample index): how samples are grouped into
 * micro-batches (or ranks) does not change what any sample draws. */
enum { NREC = 64 };
static float g_first_draw[NREC];
static int g_seen[NREC];

static hl_status recording_step(void *obj, hl_rng *rng, int64_t index, const float *params,
                                float *grads, double *loss, hl_error *err) {
    hl_rng copy = *rng;
    float x[I];
    hl_rng_randn_f32(&copy, x, I);
    if (index >= 0 && index < NREC) g_first_draw[index] = x[0], g_seen[index]++;
    return toy_step(obj, rng, index, params, grads, loss, err);
}

static void test_sample_generators(void) {
    float draws[2][NREC];
    double loss1[2];
    const int batch[2] = {2, 1}, micro[2] = {2, 4};
    for (int k = 0; k < 2; k++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/gen%d", g_root, k);
        log_t l = {0};
        hl_train_config c = config(dir, 3, false, NULL, &l);
        c.batch = batch[k];
        c.micro_batches = micro[k];
        float w[O * I + O], ema[O * I + O];
        for (int i = 0; i < O * I + O; i++) w[i] = 0.1f * (float)i - 0.5f;
        memset(g_seen, 0, sizeof g_seen);
        hl_error e = {0};
        hl_train_result r;
        CHECK(hl_train_run(&c, recording_step, NULL, &g_toy, w, ema, &r, &e) == HL_OK, "%s", e.msg);
        for (int i = 0; i < 12; i++)
            CHECK(g_seen[i] == 1, "sample %d drawn once (%d)", i, g_seen[i]);
        memcpy(draws[k], g_first_draw, sizeof g_first_draw);
        loss1[k] = l.loss[0];
    }
    CHECK(!memcmp(draws[0], draws[1], 12 * sizeof(float)),
          "batch 2 x 2 micro-batches and 1 x 4 draw the same per sample");
    CHECK(draws[0][0] != draws[0][1] && draws[0][1] != draws[0][2], "samples draw differently");
    CHECK(loss1[0] == loss1[1], "the same first loss: %a vs %a", loss1[0], loss1[1]);
}

/* ema_start: the EMA is the weights through that step, then the recurrence from there. */
static void run_ema_start(const char *name, int64_t steps, int64_t ema_start, float *w, float *ema,
                          hl_status *st) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", g_root, name);
    hl_train_config c = config(dir, steps, false, NULL, NULL);
    c.report = NULL;
    c.ema_start = ema_start;
    for (int k = 0; k < O * I + O; k++) w[k] = 0.1f * (float)k - 0.5f;
    hl_error e = {0};
    hl_train_result r;
    *st = hl_train_run(&c, toy_step, NULL, &g_toy, w, ema, &r, &e);
}

static void test_ema_start(void) {
    enum { N = O * I + O };
    float w[3][N], ema[3][N];
    hl_status st[3];
    for (int k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "ema_start%d", k);
        run_ema_start(name, 3 + k, 3, w[k], ema[k], &st[k]);
    }
    CHECK(st[0] == HL_OK && st[1] == HL_OK && st[2] == HL_OK, "ema_start runs");
    CHECK(!memcmp(w[0], ema[0], sizeof w[0]), "ema_start 3: the EMA after step 3 is the weights");
    int bad = 0; /* after 5 steps: 0.9 (0.9 w3 + 0.1 w4) + 0.1 w5 */
    for (int i = 0; i < N; i++) {
        double want = 0.9 * (0.9 * w[0][i] + 0.1 * w[1][i]) + 0.1 * w[2][i];
        bad += fabs(ema[2][i] - want) > 1e-6 * (1 + fabs(want));
    }
    CHECK(bad == 0 && memcmp(ema[2], w[2], sizeof w[2]),
          "ema_start 3: %d entries off the "
          "recurrence after 5 steps",
          bad);
    float w0[N], e0[N];
    run_ema_start("ema_start_none", 5, 0, w0, e0, &st[0]);
    CHECK(st[0] == HL_OK && !memcmp(w0, w[2], sizeof w0) && memcmp(e0, ema[2], sizeof e0),
          "ema_start changes only the EMA");
    run_ema_start("ema_start_neg", 5, -1, w0, e0, &st[0]);
    CHECK(st[0] == HELIOS_ERR_INVALID_ARG, "ema_start -1 refused (%d)", (int)st[0]);
}

/* train/dist.h without a launcher: one process; the stub's refusal under a launcher. */
static void test_dist_single(void) {
    unsetenv("OMPI_COMM_WORLD_SIZE"), unsetenv("PMI_SIZE"), unsetenv("PMIX_SIZE");
    unsetenv("PMIX_RANK");
    hl_dist d;
    hl_error e = {0};
    CHECK(hl_dist_init(&d, &e) == HL_OK && d.rank == 0 && d.world == 1 && !d.mpi, "%s", e.msg);
    float acc[3] = {1, -0.0f, 3}, x[3] = {0.5f, 0.0f, -3}, all[3];
    CHECK(hl_dist_ordered_add_f32(&d, acc, x, 3, &e) == HL_OK && acc[0] == 1.5f &&
              !signbit(acc[1]) && acc[2] == 0,
          "ordered add on one process");
    CHECK(hl_dist_allgather(&d, x, sizeof x, all, &e) == HL_OK && !memcmp(all, x, sizeof x),
          "all-gather on one process");
    CHECK(hl_dist_bcast(&d, x, sizeof x, &e) == HL_OK, "broadcast on one process");
    hl_dist_finalize(&d);
    if (!hl_dist_built_with_mpi()) {
        setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
        CHECK(hl_dist_init(&d, &e) == HELIOS_ERR_UNSUPPORTED && strstr(e.msg, "without MPI"),
              "2 processes under a launcher without MPI: %s", e.msg);
        unsetenv("OMPI_COMM_WORLD_SIZE");
    }
}

/* ---- hooks: an objective with its own state and a TTUR update filter ---------------------- */

typedef struct hooked {
    double inner; /* the objective's own state: a running sum of its losses */
} hooked;
static hooked g_hooked;

static hl_status hooked_step(void *obj, hl_rng *rng, int64_t index, const float *params,
                             float *grads, double *loss, hl_error *err) {
    HL_TRY(toy_step(&g_toy, rng, index, params, grads, loss, err));
    ((hooked *)obj)->inner = ((hooked *)obj)->inner * 0.5 + *loss;
    return HL_OK;
}

static bool every_third(void *obj, int64_t step) { return step % 3 == 0; }

static hl_status extra_save(void *user, const char *dir, hl_error *err) {
    char p[600];
    snprintf(p, sizeof p, "%s/inner.txt", dir);
    FILE *f = fopen(p, "w");
    if (!f) return hl_fail(err, HELIOS_ERR_IO, "%s", p);
    fprintf(f, "%a\n", ((hooked *)user)->inner);
    fclose(f);
    return HL_OK;
}

static hl_status extra_load(void *user, const char *dir, hl_error *err) {
    char p[600];
    snprintf(p, sizeof p, "%s/inner.txt", dir);
    FILE *f = fopen(p, "r");
    if (!f || fscanf(f, "%la", &((hooked *)user)->inner) != 1) {
        if (f) fclose(f);
        return hl_fail(err, HELIOS_ERR_IO, "%s", p);
    }
    fclose(f);
    return HL_OK;
}

static void run_hooked(const char *name, int64_t steps, bool resume, result *out) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", g_root, name);
    memset(out, 0, sizeof *out);
    if (!resume) g_hooked.inner = 0;
    else g_hooked.inner = -1; /* must come back from the checkpoint */
    hl_train_config c = config(dir, steps, resume, NULL, &out->log);
    c.updates = every_third;
    c.io.extra_save = extra_save;
    c.io.extra_load = extra_load;
    c.io.extra_user = &g_hooked;
    c.checkpoint_every = 0;
    for (int k = 0; k < O * I + O; k++) out->w[k] = 0.1f * (float)k - 0.5f;
    hl_error e = {0};
    out->st = hl_train_run(&c, hooked_step, NULL, &g_hooked, out->w, out->ema, &out->r, &e);
    snprintf(out->msg, sizeof out->msg, "%s", e.msg);
}

static void test_hooks(void) {
    result *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    /* one step: updated (step 0); two steps: step 1 skipped, so the weights stay */
    run_hooked("hook1", 1, false, a);
    run_hooked("hook2", 2, false, b);
    CHECK(a->st == HL_OK && b->st == HL_OK, "%s %s", a->msg, b->msg);
    CHECK(!memcmp(a->w, b->w, sizeof a->w) && !memcmp(a->ema, b->ema, sizeof a->ema),
          "a skipped step leaves the weights and EMA");
    CHECK(a->log.loss[0] != b->log.loss[1], "the skipped step still ran the objective");
    /* 10 straight vs 5 + resume 5: losses, weights and the objective's own state */
    run_hooked("hook10", 10, false, a);
    double inner10 = g_hooked.inner;
    run_hooked("hook55", 5, false, b);
    run_hooked("hook55", 10, true, b);
    CHECK(b->st == HL_OK && b->r.first_step == 5, "%s", b->msg);
    check_same_losses(a, b, "hooks: 5 + resume 5");
    CHECK(g_hooked.inner == inner10, "objective state restored: %a vs %a", g_hooked.inner, inner10);
    free(a);
    free(b);
}

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/helios_test_train_XXXXXX");
    if (!mkdtemp(g_root)) return 2;
    hl_set_threads(1); /* 15 parameters: one thread, and forked children need no OpenMP team */
    setup();
    test_falls_and_deterministic();
    test_resume();
    test_sample_generators();
    test_dist_single();
    test_ema_start();
    const char *stages[] = {"weights", "optimizer", "state", "renamed", "complete"};
    for (int i = 0; i < 5; i++) test_kill_during_checkpoint(stages[i], i);
    test_hooks();
    hl_params_free(&g_layout);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_root);
    return test_done("test_train_loop");
}
