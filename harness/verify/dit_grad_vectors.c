#include "verify/dit_grad_vectors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "train/dit_flat.h"
#include "verify/dit_vectors.h"

/* One run: the model and its gradient view over flat buffers, the case, the outputs. */
typedef struct run {
    const hl_ctx *ctx;
    const char *file;
    hl_safetensors *st;
    hl_report_fn report;
    void *user;
    hl_dit_flat f; /* owns the model, its gradient view and their buffers */
    float *g;
    hl_dit *m, *grad;
    hl_dit_case c;
    int K; /* flow-loss samples (sample0, sample1, ...); 0: the plain Σ out ⊙ R file */
} run;

static hl_error *err_of(const run *r) { return r->ctx->err; }

static hl_status load_model(run *r, const char *dir) {
    char cfg[4096], weights[4096];
    snprintf(cfg, sizeof cfg, "%s/transformer_config.json", dir);
    snprintf(weights, sizeof weights, "%s/transformer_weights_f32.safetensors", dir);
    HL_TRY(hl_dit_flat_load(cfg, weights, &r->f, err_of(r)));
    r->m = r->f.m, r->grad = r->f.grad, r->g = r->f.g;
    return HL_OK;
}

/* Compares n floats with tensor `name`; *ratio receives max_abs / tol. */
static hl_status compare(run *r, const char *name, const float *got, int64_t n, double *max_abs,
                         double *tol) {
    float *want = NULL;
    HL_TRY(hl_st_read_f32(r->st, name, n, &want, err_of(r)));
    double ref_max = 0.0;
    *max_abs = hl_max_abs_diff(got, want, n, &ref_max);
    *tol = 1e-4 * (ref_max > 0.0 ? ref_max : 1e-30);
    free(want);
    return HL_OK;
}

/* Every grad.<param>: one report line with the worst tensor (by max_abs / tol) named. */
static hl_status compare_param_grads(run *r) {
    double worst = -1.0, w_abs = 0.0, w_tol = 0.0;
    const char *w_name = "?";
    size_t n = 0;
    for (size_t i = 0; i < r->f.layout.n; i++) {
        const hl_param *p = &r->f.layout.p[i];
        char name[200];
        snprintf(name, sizeof name, "grad.%s", p->name);
        double a, t;
        HL_TRY(compare(r, name, r->g + p->offset, p->numel, &a, &t));
        n++;
        if (!(a / t <= worst)) worst = a / t, w_abs = a, w_tol = t, w_name = p->name;
    }
    char what[256];
    snprintf(what, sizeof what, "grad.* (%zu tensors; worst %s)", n, w_name);
    r->report(r->user, r->file, what, w_abs, w_tol, 0);
    return HL_OK;
}

/* The input gradients of the case, as the backward writes them (sizes from the case). */
typedef struct input_grads {
    float *buf[5]; /* hidden_states, encoder_hidden_states, history short, mid, long */
    int64_t n[5];
} input_grads;

static void input_sizes(const run *r, const helios_dit_input *in, int64_t n[5]) {
    int64_t C = r->m->cfg.in_channels, hw = (int64_t)in->hist_height * in->hist_width;
    n[0] = (int64_t)in->batch * C * in->frames * in->height * in->width;
    n[1] = (int64_t)in->batch * in->text_len * r->m->cfg.text_dim;
    n[2] = (int64_t)in->batch * C * in->short_frames * hw;
    n[3] = (int64_t)in->batch * C * in->mid_frames * hw;
    n[4] = (int64_t)in->batch * C * in->long_frames * hw;
}

static hl_dit_input_grads as_gin(const input_grads *g) {
    hl_dit_input_grads gi = {g->buf[0], g->buf[1], g->buf[2], g->buf[3], g->buf[4]};
    return gi;
}

static void input_grads_free(input_grads *g) {
    for (int i = 0; i < 5; i++) free(g->buf[i]);
}

static int input_grads_alloc(input_grads *g, const int64_t n[5]) {
    int ok = 1;
    for (int i = 0; i < 5; i++)
        ok &= (g->buf[i] = calloc((size_t)n[i] + 1, sizeof(float))) != NULL, g->n[i] = n[i];
    return ok;
}

/* Sample k's names: the plain file has one unnamed sample, the flow files sample0, sample1, ... */
static void sample_name(const run *r, int k, const char *what, char *out, size_t n) {
    if (r->K) snprintf(out, n, "sample%d.%s", k, what);
    else snprintf(out, n, "%s", what);
}

/* grad_input.*: the current latents only for one-sample files (stage 2's are per level). */
static hl_status compare_input_grads(run *r, const input_grads *g) {
    static const char *const names[] = {"hidden_states", "encoder_hidden_states",
                                        "latents_history_short", "latents_history_mid",
                                        "latents_history_long"};
    for (int i = 0; i < 5; i++) {
        char name[96];
        if (i == 0 && r->K) snprintf(name, sizeof name, "grad_input.sample0.hidden_states");
        else snprintf(name, sizeof name, "grad_input.%s", names[i]);
        if (!hl_st_find(r->st, name) || !g->n[i] || (i == 0 && r->K > 1)) continue;
        double a, t;
        HL_TRY(compare(r, name, g->buf[i], g->n[i], &a, &t));
        r->report(r->user, r->file, name, a, t, 0);
    }
    return HL_OK;
}

/* Sample k's loss term and ∂L/∂out: Σ out ⊙ R (plain), or mean((pred - target)²) / K. */
static hl_status loss_and_dout(run *r, int k, const float *out, int64_t n, float *dout,
                               double *loss) {
    char name[64];
    float *ref = NULL;
    sample_name(r, k, r->K ? "target" : "R", name, sizeof name);
    HL_TRY(hl_st_read_f32(r->st, name, n, &ref, err_of(r)));
    double s = 0.0, K = r->K ? r->K : 1;
    for (int64_t i = 0; i < n; i++) {
        if (r->K) {
            double d = (double)out[i] - ref[i];
            s += d * d;
            dout[i] = (float)(2.0 * d / ((double)n * K));
        } else {
            s += (double)out[i] * ref[i];
            dout[i] = ref[i];
        }
    }
    *loss += r->K ? s / ((double)n * K) : s;
    free(ref);
    return HL_OK;
}

/* Input gradients g of one sample added into total (the history is the same for every sample;
 * the current latents only where the sizes agree, as compare_input_grads reads them). */
static hl_status add_input_grads(run *r, const int64_t sizes[5], const input_grads *g,
                                 input_grads *total) {
    if (!total->buf[0] && !input_grads_alloc(total, sizes))
        return hl_fail(err_of(r), HELIOS_ERR_OOM, "out of memory");
    for (int i = 0; i < 5; i++)
        if (total->n[i] == g->n[i])
            for (int64_t j = 0; j < g->n[i]; j++) total->buf[i][j] += g->buf[i][j];
    return HL_OK;
}

/* Forward and backward of sample k; its input gradients are added into total. */
static hl_status run_sample(run *r, int k, int recompute, input_grads *total, double *loss) {
    hl_error *err = err_of(r);
    char hidden[64], timestep[64], pred[64];
    sample_name(r, k, "hidden_states", hidden, sizeof hidden);
    sample_name(r, k, "timestep", timestep, sizeof timestep);
    sample_name(r, k, r->K ? "model_pred" : "output", pred, sizeof pred);
    hl_dit_case_free(&r->c);
    HL_TRY(hl_dit_case_read_named(r->st, hidden, timestep, &r->c, err));
    int64_t n = hl_dit_case_out_numel(&r->c, r->m), sizes[5];
    input_sizes(r, &r->c.in, sizes);
    input_grads g = {0};
    float *out = calloc((size_t)n, sizeof *out), *dout = calloc((size_t)n, sizeof *dout);
    hl_status st = out && dout && input_grads_alloc(&g, sizes)
                       ? HL_OK
                       : hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    hl_dit_tape *tape = NULL;
    if (st == HL_OK) st = hl_dit_forward_train(r->ctx, r->m, &r->c.in, recompute, &tape, out);
    double a, t;
    if (st == HL_OK && (st = compare(r, pred, out, n, &a, &t)) == HL_OK) {
        r->report(r->user, r->file, pred, a, fmax(t, 1e-4), 0);
        st = loss_and_dout(r, k, out, n, dout, loss);
    }
    hl_dit_input_grads gi = as_gin(&g);
    if (st == HL_OK) st = hl_dit_backward(r->ctx, r->m, tape, dout, r->grad, &gi);
    if (st == HL_OK) st = add_input_grads(r, sizes, &g, total);
    hl_dit_tape_free(tape);
    input_grads_free(&g);
    free(out), free(dout);
    return st;
}

/* The K samples of a stage-2 file packed into one forward and one backward
 * (hl_dit_forward_train_packed), as the stage-2 objective trains by default. */
static hl_status run_packed(run *r, int recompute, input_grads *total, double *loss) {
    hl_error *err = err_of(r);
    int K = r->K;
    hl_dit_case c[64];
    helios_dit_input in[64];
    float *out[64] = {0}, *dout[64] = {0};
    input_grads g[64];
    hl_dit_input_grads gi[64];
    int64_t n[64], sizes[64][5];
    memset(c, 0, sizeof c), memset(g, 0, sizeof g);
    hl_status st = HL_OK;
    for (int k = 0; st == HL_OK && k < K; k++) {
        char hidden[64], timestep[64];
        sample_name(r, k, "hidden_states", hidden, sizeof hidden);
        sample_name(r, k, "timestep", timestep, sizeof timestep);
        st = hl_dit_case_read_named(r->st, hidden, timestep, &c[k], err);
        if (st != HL_OK) break;
        in[k] = c[k].in;
        n[k] = hl_dit_case_out_numel(&c[k], r->m);
        input_sizes(r, &in[k], sizes[k]);
        out[k] = calloc((size_t)n[k], sizeof(float)), dout[k] = calloc((size_t)n[k], sizeof(float));
        if (!out[k] || !dout[k] || !input_grads_alloc(&g[k], sizes[k]))
            st = hl_fail(err, HELIOS_ERR_OOM, "out of memory");
        gi[k] = as_gin(&g[k]);
    }
    hl_dit_tape *tape = NULL;
    if (st == HL_OK)
        st = hl_dit_forward_train_packed(r->ctx, r->m, K, in, recompute, NULL, &tape, out);
    for (int k = 0; st == HL_OK && k < K; k++) {
        char pred[64];
        double a, t;
        sample_name(r, k, "model_pred", pred, sizeof pred);
        if ((st = compare(r, pred, out[k], n[k], &a, &t)) != HL_OK) break;
        r->report(r->user, r->file, pred, a, fmax(t, 1e-4), 0);
        st = loss_and_dout(r, k, out[k], n[k], dout[k], loss);
    }
    if (st == HL_OK)
        st = hl_dit_backward_packed(r->ctx, r->m, tape, (const float *const *)dout, NULL, r->grad,
                                    gi);
    for (int k = 0; st == HL_OK && k < K; k++) st = add_input_grads(r, sizes[k], &g[k], total);
    hl_dit_tape_free(tape);
    for (int k = 0; k < K; k++) {
        hl_dit_case_free(&c[k]);
        input_grads_free(&g[k]);
        free(out[k]), free(dout[k]);
    }
    return st;
}

static hl_status check(run *r, int recompute) {
    input_grads total = {0};
    double loss = 0.0;
    hl_status st = HL_OK;
    if (r->K > 1) st = run_packed(r, recompute, &total, &loss);
    for (int k = 0; r->K <= 1 && st == HL_OK && k < (r->K ? r->K : 1); k++)
        st = run_sample(r, k, recompute, &total, &loss);
    float *want = NULL;
    if (st == HL_OK) st = hl_st_read_f32(r->st, "loss", 1, &want, err_of(r));
    if (st == HL_OK)
        r->report(r->user, r->file, "loss", fabs(loss - want[0]), 1e-4 * fabs(want[0]), 0);
    free(want);
    if (st == HL_OK) st = compare_param_grads(r);
    if (st == HL_OK) st = compare_input_grads(r, &total);
    input_grads_free(&total);
    return st;
}

hl_status hl_dit_grad_verify(const hl_ctx *ctx, const char *dir, const char *file, int recompute,
                             hl_report_fn report, void *user) {
    run r = {.ctx = ctx, .file = file, .report = report, .user = user};
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    hl_status st = hl_st_open(path, &r.st, ctx->err);
    if (st == HL_OK && strstr(file, "flow_stage"))
        for (r.K = 0; r.K < 64; r.K++) { /* at most 64: run_packed's arrays */
            char name[64];
            snprintf(name, sizeof name, "sample%d.hidden_states", r.K);
            if (!hl_st_find(r.st, name)) break;
        }
    if (st == HL_OK) st = load_model(&r, dir);
    if (st == HL_OK) st = check(&r, recompute);
    hl_dit_case_free(&r.c);
    hl_dit_flat_free(&r.f);
    hl_st_close(r.st);
    return st;
}
