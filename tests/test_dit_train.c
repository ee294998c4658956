/* The transformer's training forward and backward (src/dit/train.c, block_train.c), without the
 * oracle's gradient files (those run in `helios verify`):
 *   - the training forward gives the inference forward's output (within float32 rounding: it
 *     runs the modulated norms as affine layernorms);
 *   - recompute on / off give bit-identical gradients (the block forward runs twice the same);
 *   - for every parameter tensor p, the derivative of L = Σ out ⊙ R along the unit vector
 *     v = g_p / |g_p| by central differences equals |g_p| (the backward's claim), and so does
 *     the one along a random unit direction (g_p · v): a gradient with a wrong sign, scale or
 *     direction fails;
 *   - gradients accumulate: two backwards give twice one.
 * On the ref backend (float32 results of double sums: the loss is accurate enough for
 * differences), case ii of the transformer vectors (history, amplification, guidance). */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "train/dit_flat.h"
#include "verify/dit_vectors.h"

typedef hl_dit_flat model; /* the vectors' transformer on flat buffers */

static int load(model *md, hl_error *e) {
    char cfg[4096]; /* vector_path returns a static buffer */
    snprintf(cfg, sizeof cfg, "%s", vector_path("transformer_config.json"));
    return hl_dit_flat_load(cfg, vector_path("transformer_weights_f32.safetensors"), md, e) ==
           HL_OK;
}

/* L = Σ out ⊙ R in double. */
static double loss_of(const hl_ctx *ctx, const model *md, const helios_dit_input *in,
                      const float *R, float *out, int64_t n) {
    hl_dit_tape *t = NULL;
    if (hl_dit_forward_train(ctx, md->m, in, 1, &t, out) != HL_OK) return NAN;
    hl_dit_tape_free(t);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)out[i] * R[i];
    return s;
}

/* Gradients into md->g (zeroed first) with the given recompute mode. */
static int gradients(const hl_ctx *ctx, model *md, const helios_dit_input *in, const float *R,
                     float *out, int recompute, int zero) {
    hl_dit_tape *t = NULL;
    if (zero) memset(md->g, 0, (size_t)md->layout.total * sizeof(float));
    int ok = hl_dit_forward_train(ctx, md->m, in, recompute, &t, out) == HL_OK &&
             hl_dit_backward(ctx, md->m, t, R, md->grad, NULL) == HL_OK;
    hl_dit_tape_free(t);
    return ok;
}

/* Central difference of L along unit direction v over parameter p, step eps. */
static double directional(const hl_ctx *ctx, model *md, const hl_param *p, const double *v,
                          double eps, const helios_dit_input *in, const float *R, float *out,
                          int64_t n) {
    float *w = md->w + p->offset, *saved = malloc((size_t)p->numel * sizeof *saved);
    memcpy(saved, w, (size_t)p->numel * sizeof *saved);
    for (int64_t i = 0; i < p->numel; i++) w[i] = (float)(saved[i] + eps * v[i]);
    double lp = loss_of(ctx, md, in, R, out, n);
    for (int64_t i = 0; i < p->numel; i++) w[i] = (float)(saved[i] - eps * v[i]);
    double lm = loss_of(ctx, md, in, R, out, n);
    /* the step actually taken differs from eps·v by the float32 rounding of w: measure it */
    double taken = 0.0;
    for (int64_t i = 0; i < p->numel; i++) {
        float a = (float)(saved[i] + eps * v[i]), b = (float)(saved[i] - eps * v[i]);
        taken += ((double)a - b) * v[i];
    }
    memcpy(w, saved, (size_t)p->numel * sizeof *saved);
    free(saved);
    return (lp - lm) / taken;
}

int main(void) {
    hl_error e = {0};
    hl_ctx ctx = test_ctx(HELIOS_BACKEND_REF, &e);
    model md = {0};
    CHECK(load(&md, &e), "load: %s", e.msg);
    hl_safetensors *st = NULL;
    hl_dit_case c = {0};
    CHECK(hl_st_open(vector_path("transformer_case_ii_history.safetensors"), &st, &e) == HL_OK &&
              hl_dit_case_read(st, &c, &e) == HL_OK,
          "case: %s", e.msg);
    if (g_failures) return test_done("test_dit_train");
    int64_t n = hl_dit_case_out_numel(&c, md.m);
    float *R = malloc((size_t)n * sizeof *R), *out = malloc((size_t)n * sizeof *out);
    float *ref = malloc((size_t)n * sizeof *ref);
    fill_random(R, n, 7);

    /* the training forward is the forward */
    CHECK(hl_dit_forward(&ctx, md.m, &c.in, NULL, ref) == HL_OK, "forward: %s", e.msg);
    double rmax = 0.0, d;
    CHECK(gradients(&ctx, &md, &c.in, R, out, 0, 1), "backward: %s", e.msg);
    d = hl_max_abs_diff(out, ref, n, &rmax);
    CHECK(d <= 1e-5 * rmax, "training forward vs forward: %.3g (max %.3g)", d, rmax);

    /* recompute gives the same bits; two backwards accumulate to twice one */
    float *g0 = malloc((size_t)md.layout.total * sizeof *g0);
    memcpy(g0, md.g, (size_t)md.layout.total * sizeof *g0);
    CHECK(gradients(&ctx, &md, &c.in, R, out, 1, 1), "backward (recompute): %s", e.msg);
    CHECK(!memcmp(g0, md.g, (size_t)md.layout.total * sizeof *g0),
          "recompute changes the gradients");
    CHECK(gradients(&ctx, &md, &c.in, R, out, 1, 0), "backward: %s", e.msg);
    int64_t bad = 0; /* within float32 rounding of 2·g0 (relative to each tensor's largest) */
    for (size_t k = 0; k < md.layout.n; k++) {
        const hl_param *p = &md.layout.p[k];
        float mx = 0.0f;
        for (int64_t i = 0; i < p->numel; i++) mx = fmaxf(mx, fabsf(g0[p->offset + i]));
        for (int64_t i = 0; i < p->numel; i++)
            bad += fabsf(md.g[p->offset + i] - 2.0f * g0[p->offset + i]) > 1e-6f * mx;
    }
    CHECK(bad == 0, "%lld gradients do not accumulate", (long long)bad);

    /* every parameter tensor: central differences along g_p / |g_p| and a random direction */
    double worst = 0.0;
    const char *worst_name = "";
    for (size_t k = 0; k < md.layout.n; k++) {
        const hl_param *p = &md.layout.p[k];
        double *v = malloc((size_t)p->numel * sizeof *v), norm = 0.0, wn = 0.0;
        for (int64_t i = 0; i < p->numel; i++)
            norm += (double)g0[p->offset + i] * g0[p->offset + i];
        for (int64_t i = 0; i < p->numel; i++)
            wn += (double)md.w[p->offset + i] * md.w[p->offset + i];
        norm = sqrt(norm);
        double eps = 1e-3 * fmax(1.0, sqrt(wn / (double)p->numel));
        for (int dir = 0; dir < 2; dir++) {
            float *rnd = malloc((size_t)p->numel * sizeof *rnd);
            fill_random(rnd, p->numel, 100 + k);
            double vn = 0.0, an = 0.0;
            for (int64_t i = 0; i < p->numel; i++)
                v[i] = dir == 0 ? (norm > 0 ? g0[p->offset + i] / norm : 0.0) : rnd[i];
            for (int64_t i = 0; i < p->numel; i++) vn += v[i] * v[i];
            vn = sqrt(vn);
            for (int64_t i = 0; i < p->numel; i++) v[i] /= vn > 0 ? vn : 1.0;
            for (int64_t i = 0; i < p->numel; i++) an += (double)g0[p->offset + i] * v[i];
            free(rnd);
            double fd = directional(&ctx, &md, p, v, eps, &c.in, R, out, n);
            /* 2% (the O(eps²) term: patch_long's curvature is large) plus the float32 noise of
             * L (~1e-6 here) over the step */
            double tol = 2e-2 * fabs(an) + 2e-4 * norm + 1e-5 / eps;
            double r = fabs(fd - an) / tol;
            if (r > worst) worst = r, worst_name = p->name;
            CHECK(r <= 1.0, "%s (%s direction): finite differences %.6g, backward %.6g", p->name,
                  dir ? "random" : "gradient", fd, an);
        }
        free(v);
    }
    printf("finite differences: %zu tensors x 2 directions, worst %.3f of the tolerance (%s)\n",
           md.layout.n, worst, worst_name);
    free(g0), free(R), free(out), free(ref);
    hl_dit_case_free(&c);
    hl_st_close(st);
    hl_dit_flat_free(&md);
    return test_done("test_dit_train");
}
