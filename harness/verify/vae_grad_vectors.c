/* `helios verify` for the VAE backward: grads_vae_decode[_f64] / grads_vae_encode[_f64]
 * (vae_grad_vectors.h). */
#include "verify/vae_grad_vectors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "vae/vae.h"

typedef struct gverifier {
    const hl_ctx *ctx;
    const hl_safetensors *st;
    const char *file;
    hl_report_fn report;
    void *user;
} gverifier;

/* max |got - ref| and max |ref| over n values of tensor `name` */
static hl_status diff(const gverifier *g, const char *name, const float *got, int64_t n,
                      double *max_abs, double *max_ref) {
    float *want = NULL;
    HL_TRY(hl_st_read_f32(g->st, name, n, &want, g->ctx->err));
    double m = 0.0, r = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
        if (fabs(want[i]) > r) r = fabs(want[i]);
    }
    free(want);
    *max_abs = m, *max_ref = r;
    return HL_OK;
}

static int64_t numel_of(const hl_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* output, loss, grad_input.<input_name>, then every grad.* in one line */
static hl_status check_all(const gverifier *g, hl_vae *v, hl_vae_grads *grads, const float *out,
                           const float *R, int64_t n_out, const char *input_name,
                           const float *dinput, int64_t n_in) {
    double m, r;
    HL_TRY(diff(g, "output", out, n_out, &m, &r));
    g->report(g->user, g->file, "output", m, 1e-4 * (r > 1.0 ? r : 1.0), 0);
    double loss = 0.0;
    for (int64_t i = 0; i < n_out; i++) loss += (double)out[i] * R[i];
    float *ref = NULL;
    HL_TRY(hl_st_read_f32(g->st, "loss", 1, &ref, g->ctx->err));
    double want = ref[0];
    free(ref);
    g->report(g->user, g->file, "loss (relative 1e-4)", fabs(loss - want), 1e-4 * fabs(want), 0);
    char name[200];
    snprintf(name, sizeof name, "grad_input.%s", input_name);
    HL_TRY(diff(g, name, dinput, n_in, &m, &r));
    g->report(g->user, g->file, name, m, 1e-4 * r, 0);
    /* grad.*: the worst tensor by max_abs / tol */
    double worst = -1.0, w_abs = 0.0, w_tol = 0.0;
    char w_name[200] = "", line[400];
    int count = 0;
    for (size_t i = 0; i < g->st->n; i++) {
        const hl_st_tensor *t = &g->st->tensors[i];
        if (strncmp(t->name, "grad.", 5)) continue;
        int64_t n = 0;
        float *got = hl_vae_grad_by_name(grads, t->name + 5, &n);
        count++;
        if (!got || n != numel_of(t)) {
            snprintf(line, sizeof line, "%s (not a parameter of the model, or another size)",
                     t->name);
            g->report(g->user, g->file, line, INFINITY, 0.0, 0);
            continue;
        }
        HL_TRY(diff(g, t->name, got, n, &m, &r));
        double tol = 1e-4 * r, ratio = m / (tol > 0 ? tol : 1e-30);
        if (!(ratio <= worst)) {
            worst = ratio, w_abs = m, w_tol = tol;
            snprintf(w_name, sizeof w_name, "%s", t->name);
        }
    }
    (void)v;
    snprintf(line, sizeof line, "grad.* (%d tensors, each vs 1e-4 max|ref|; worst %s)", count,
             w_name);
    g->report(g->user, g->file, line, count ? w_abs : INFINITY, w_tol, 0);
    return HL_OK;
}

static hl_status run_decode(const gverifier *g, hl_vae *v, hl_vae_grads *grads) {
    const hl_st_tensor *zt = hl_st_find(g->st, "z"), *Rt = hl_st_find(g->st, "R");
    if (!zt || !Rt || zt->ndim != 5 || zt->shape[0] != 1 || zt->shape[1] != v->cfg.z_dim)
        return hl_fail(g->ctx->err, HELIOS_ERR_SHAPE, "%s: needs z (1, %d, T, h, w) and R",
                       g->st->path, v->cfg.z_dim);
    int64_t T = zt->shape[2], h = zt->shape[3], w = zt->shape[4], nz = numel_of(zt);
    int64_t n_out = numel_of(Rt), r = v->cfg.spatial_ratio;
    if (n_out != v->decoder.conv_out.w.shape[0] * hl_vae_decoded_frames(&v->cfg, T) * h * r * w * r)
        return hl_fail(g->ctx->err, HELIOS_ERR_SHAPE, "%s: R does not match decode(z)",
                       g->st->path);
    float *z = NULL, *R = NULL, *out = malloc((size_t)n_out * sizeof *out),
          *dz = malloc((size_t)nz * sizeof *dz);
    hl_vae_tape *tape = NULL;
    hl_status s = out && dz ? HL_OK : hl_fail(g->ctx->err, HELIOS_ERR_OOM, "out of memory");
    if (s == HL_OK) s = hl_st_read_f32(g->st, "z", nz, &z, g->ctx->err);
    if (s == HL_OK) s = hl_st_read_f32(g->st, "R", n_out, &R, g->ctx->err);
    if (s == HL_OK) s = hl_vae_decode_forward_save(g->ctx, v, T, h, w, z, out, &tape);
    if (s == HL_OK) s = hl_vae_decode_backward(tape, R, dz, grads);
    if (s == HL_OK) s = check_all(g, v, grads, out, R, n_out, "z", dz, nz);
    hl_vae_tape_free(tape);
    free(z), free(R), free(out), free(dz);
    return s;
}

static hl_status run_encode(const gverifier *g, hl_vae *v, hl_vae_grads *grads) {
    const hl_st_tensor *xt = hl_st_find(g->st, "video"), *Rt = hl_st_find(g->st, "R");
    if (!xt || !Rt || xt->ndim != 5 || xt->shape[0] != 1 || xt->shape[1] != v->cfg.in_channels)
        return hl_fail(g->ctx->err, HELIOS_ERR_SHAPE, "%s: needs video (1, %d, T, H, W) and R",
                       g->st->path, v->cfg.in_channels);
    int64_t T = xt->shape[2], H = xt->shape[3], W = xt->shape[4], nx = numel_of(xt);
    int64_t T_lat, h, w;
    hl_vae_latent_shape(&v->cfg, T, H, W, &T_lat, &h, &w);
    int64_t n_out = numel_of(Rt);
    if (n_out != 2 * (int64_t)v->cfg.z_dim * T_lat * h * w)
        return hl_fail(g->ctx->err, HELIOS_ERR_SHAPE, "%s: R does not match encode(video)",
                       g->st->path);
    float *x = NULL, *R = NULL, *out = malloc((size_t)n_out * sizeof *out),
          *dx = malloc((size_t)nx * sizeof *dx);
    hl_vae_tape *tape = NULL;
    hl_status s = out && dx ? HL_OK : hl_fail(g->ctx->err, HELIOS_ERR_OOM, "out of memory");
    if (s == HL_OK) s = hl_st_read_f32(g->st, "video", nx, &x, g->ctx->err);
    if (s == HL_OK) s = hl_st_read_f32(g->st, "R", n_out, &R, g->ctx->err);
    if (s == HL_OK) s = hl_vae_encode_forward_save(g->ctx, v, T, H, W, x, out, &tape);
    if (s == HL_OK) s = hl_vae_encode_backward(tape, R, dx, grads);
    if (s == HL_OK) s = check_all(g, v, grads, out, R, n_out, "video", dx, nx);
    hl_vae_tape_free(tape);
    free(x), free(R), free(out), free(dx);
    return s;
}

hl_status hl_vae_grad_verify(const hl_ctx *ctx, const char *dir, const char *file,
                             hl_report_fn report, void *user) {
    char cfg[4096], weights[4096], path[4096];
    snprintf(cfg, sizeof cfg, "%s/vae_config.json", dir);
    snprintf(weights, sizeof weights, "%s/vae_weights_f32.safetensors", dir);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    hl_vae *v = NULL;
    hl_vae_grads *grads = NULL;
    hl_safetensors *st = NULL;
    HL_TRY(hl_vae_load(NULL, cfg, weights, &v, ctx->err));
    hl_status s = hl_vae_cast_weights(v, HL_F32, ctx->err); /* a bf16 checkpoint trains in f32 */
    if (s == HL_OK) s = hl_vae_grads_new(v, &grads, ctx->err);
    if (s == HL_OK) s = hl_st_open(path, &st, ctx->err);
    gverifier g = {ctx, st, file, report, user};
    if (s == HL_OK)
        s = strstr(file, "encode") ? run_encode(&g, v, grads) : run_decode(&g, v, grads);
    hl_st_close(st);
    hl_vae_grads_free(grads);
    hl_vae_free(v);
    return s;
}
