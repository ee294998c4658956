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
    hl_params layout;
    float *w, *g;
    hl_dit *m, *grad;
    hl_dit_case c;
    int stage1;
} run;

static hl_error *err_of(const run *r) { return r->ctx->err; }

static hl_status load_model(run *r, const char *dir) {
    char path[4096];
    hl_dit_config cfg;
    hl_json *j = NULL;
    snprintf(path, sizeof path, "%s/transformer_config.json", dir);
    hl_status st = hl_json_load_file(path, &j, err_of(r));
    if (st == HL_OK && (st = hl_dit_config_parse(j, &cfg, err_of(r))) != HL_OK)
        hl_error_prefix(err_of(r), "%s", path);
    hl_json_free(j);
    HL_TRY(st);
    HL_TRY(hl_dit_params_layout(&cfg, &r->layout, err_of(r)));
    r->w = calloc((size_t)r->layout.total, sizeof *r->w);
    r->g = calloc((size_t)r->layout.total, sizeof *r->g);
    if (!r->w || !r->g) return hl_fail(err_of(r), HELIOS_ERR_OOM, "out of memory");
    snprintf(path, sizeof path, "%s/transformer_weights_f32.safetensors", dir);
    hl_weights *wt = NULL;
    HL_TRY(hl_weights_open(path, &wt, err_of(r)));
    st = hl_params_load(&r->layout, r->w, wt, err_of(r));
    hl_weights_close(wt);
    HL_TRY(st);
    HL_TRY(hl_dit_new_flat(&cfg, &r->layout, r->w, &r->m, err_of(r)));
    return hl_dit_new_flat(&cfg, &r->layout, r->g, &r->grad, err_of(r));
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
    for (size_t i = 0; i < r->layout.n; i++) {
        const hl_param *p = &r->layout.p[i];
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

static hl_status compare_input_grads(run *r, const hl_dit_input_grads *gi) {
    const helios_dit_input *in = &r->c.in;
    int64_t C = r->m->cfg.in_channels, hw = (int64_t)in->hist_height * in->hist_width;
    struct {
        const char *name;
        const float *got;
        int64_t n;
    } rows[] = {
        {r->stage1 ? "grad_input.sample0.hidden_states" : "grad_input.hidden_states",
         gi->hidden_states, (int64_t)in->batch * C * in->frames * in->height * in->width},
        {"grad_input.encoder_hidden_states", gi->encoder_hidden_states,
         (int64_t)in->batch * in->text_len * r->m->cfg.text_dim},
        {"grad_input.latents_history_short", gi->latents_history_short,
         (int64_t)in->batch * C * in->short_frames * hw},
        {"grad_input.latents_history_mid", gi->latents_history_mid,
         (int64_t)in->batch * C * in->mid_frames * hw},
        {"grad_input.latents_history_long", gi->latents_history_long,
         (int64_t)in->batch * C * in->long_frames * hw},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        if (!hl_st_find(r->st, rows[i].name) || !rows[i].got || !rows[i].n) continue;
        double a, t;
        HL_TRY(compare(r, rows[i].name, rows[i].got, rows[i].n, &a, &t));
        r->report(r->user, r->file, rows[i].name, a, t, 0);
    }
    return HL_OK;
}

/* The loss and ∂L/∂out: Σ out ⊙ R, or the stage-1 flow loss mean((pred - target)²). */
static hl_status loss_and_dout(run *r, const float *out, int64_t n, float *dout, double *loss) {
    float *ref = NULL;
    HL_TRY(hl_st_read_f32(r->st, r->stage1 ? "sample0.target" : "R", n, &ref, err_of(r)));
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (r->stage1) {
            double d = (double)out[i] - ref[i];
            s += d * d;
            dout[i] = (float)(2.0 * d / (double)n);
        } else {
            s += (double)out[i] * ref[i];
            dout[i] = ref[i];
        }
    }
    *loss = r->stage1 ? s / (double)n : s;
    free(ref);
    return HL_OK;
}

static hl_status check(run *r, int recompute) {
    hl_error *err = err_of(r);
    HL_TRY(hl_dit_case_read_named(r->st, r->stage1 ? "sample0.hidden_states" : "hidden_states",
                                  r->stage1 ? "sample0.timestep" : "timestep", &r->c, err));
    const helios_dit_input *in = &r->c.in;
    int64_t n = hl_dit_case_out_numel(&r->c, r->m), C = r->m->cfg.in_channels;
    int64_t hw = (int64_t)in->hist_height * in->hist_width;
    int64_t sizes[] = {(int64_t)in->batch * C * in->frames * in->height * in->width,
                       (int64_t)in->batch * in->text_len * r->m->cfg.text_dim,
                       (int64_t)in->batch * C * in->short_frames * hw,
                       (int64_t)in->batch * C * in->mid_frames * hw,
                       (int64_t)in->batch * C * in->long_frames * hw};
    float *bufs[7] = {0};
    int ok = 1;
    for (int i = 0; i < 7; i++)
        ok &= (bufs[i] = calloc((size_t)(i < 2 ? n : sizes[i - 2]) + 1, sizeof(float))) != NULL;
    hl_dit_tape *tape = NULL;
    hl_status st = ok ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    float *out = bufs[0], *dout = bufs[1];
    hl_dit_input_grads gi = {bufs[2], bufs[3], bufs[4], bufs[5], bufs[6]};
    if (st == HL_OK) st = hl_dit_forward_train(r->ctx, r->m, in, recompute, &tape, out);
    double loss = 0.0, a, t;
    if (st == HL_OK) st = compare(r, r->stage1 ? "sample0.model_pred" : "output", out, n, &a, &t);
    if (st == HL_OK) {
        r->report(r->user, r->file, r->stage1 ? "sample0.model_pred" : "output", a, fmax(t, 1e-4),
                  0);
        st = loss_and_dout(r, out, n, dout, &loss);
    }
    float *want = NULL;
    if (st == HL_OK) st = hl_st_read_f32(r->st, "loss", 1, &want, err);
    if (st == HL_OK) {
        r->report(r->user, r->file, "loss", fabs(loss - want[0]), 1e-4 * fabs(want[0]), 0);
        st = hl_dit_backward(r->ctx, r->m, tape, dout, r->grad, &gi);
    }
    free(want);
    if (st == HL_OK) st = compare_param_grads(r);
    if (st == HL_OK) st = compare_input_grads(r, &gi);
    hl_dit_tape_free(tape);
    for (int i = 0; i < 7; i++) free(bufs[i]);
    return st;
}

hl_status hl_dit_grad_verify(const hl_ctx *ctx, const char *dir, const char *file, int recompute,
                             hl_report_fn report, void *user) {
    run r = {.ctx = ctx, .file = file, .report = report, .user = user};
    r.stage1 = strstr(file, "flow_stage1") != NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    hl_status st = hl_st_open(path, &r.st, ctx->err);
    if (st == HL_OK) st = load_model(&r, dir);
    if (st == HL_OK) st = check(&r, recompute);
    hl_dit_case_free(&r.c);
    hl_dit_free(r.m);
    hl_dit_free(r.grad);
    free(r.w);
    free(r.g);
    hl_params_free(&r.layout);
    hl_st_close(r.st);
    return st;
}
