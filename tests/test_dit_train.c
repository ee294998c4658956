/* The transformer's training forward and backward (src/dit/train.c, block_train.c), without the
 * oracle's gradient files (those run in `helios verify`):
 *   - the training forward gives the inference forward's output (within float32 rounding: it
 *     runs the modulated norms as affine layernorms);
 *   - recompute on / off give bit-identical gradients (the block forward runs twice the same);
 *   - for every parameter tensor p, the derivative of L = Σ out ⊙ R along the unit vector
 *     v = g_p / |g_p| by central differences equals |g_p| (the backward's claim), and so does
 *     the one along a random unit direction (g_p · v): a gradient with a wrong sign, scale or
 *     direction fails;
 *   - gradients accumulate: two backwards give twice one;
 *   - packing (hl_dit_forward_train_packed): three inputs of other sizes, batches and histories
 *     in one forward give each input's own outputs, taps, parameter gradients (the sum of the
 *     three backwards) and input gradients, on both backends.
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

/* ---- packing ------------------------------------------------------------------------------- */

enum { NPACK = 3 };

/* The arrays of the packed test's inputs (case ii's history reused, scaled per input). */
typedef struct pack_inputs {
    helios_dit_input in[NPACK];
    float *arrays[16];
    int n_arrays;
    double ts[NPACK][2];
    int64_t out_n[NPACK], in_n[NPACK], text_n[NPACK], hist_n[NPACK][3];
} pack_inputs;

static float *pack_array(pack_inputs *p, int64_t n, uint64_t seed) {
    float *x = malloc((size_t)n * sizeof *x);
    fill_random(x, n, seed);
    return p->arrays[p->n_arrays++] = x;
}

/* A: case ii (history, batch 1, 3x8x8); B: the same history, batch 2, a 3x4x4 chunk (a coarse
 * pyramid level), other timesteps; C: no history, batch 2, 2x4x6. */
static void pack_make(const helios_dit_input *a, pack_inputs *p) {
    memset(p, 0, sizeof *p);
    int C = 16, L = a->text_len, td = 32, Hh = a->hist_height, Wh = a->hist_width;
    p->in[0] = *a;
    p->ts[1][0] = 321.0, p->ts[1][1] = 877.0, p->ts[2][0] = 45.0, p->ts[2][1] = 603.0;
    helios_dit_input *b = &p->in[1], *c = &p->in[2];
    *b = *a;
    b->batch = 2, b->height = 4, b->width = 4, b->timestep = p->ts[1];
    int fr[3] = {a->short_frames, a->mid_frames, a->long_frames};
    const float **hist[3] = {&b->latents_history_short, &b->latents_history_mid,
                             &b->latents_history_long};
    for (int k = 0; k < 3; k++) /* batch 2's own history */
        *hist[k] = pack_array(p, 2 * (int64_t)C * fr[k] * Hh * Wh, 40 + k);
    helios_dit_input_init(c);
    c->batch = 2, c->frames = 2, c->height = 4, c->width = 6, c->timestep = p->ts[2];
    c->text_len = L, c->indices_hidden_states = a->indices_hidden_states;
    for (int i = 1; i < NPACK; i++) {
        helios_dit_input *x = &p->in[i];
        int64_t n = (int64_t)x->batch * C * x->frames * x->height * x->width;
        x->hidden_states = pack_array(p, n, 50 + i);
        x->encoder_hidden_states = pack_array(p, (int64_t)x->batch * L * td, 60 + i);
    }
    for (int i = 0; i < NPACK; i++) {
        const helios_dit_input *x = &p->in[i];
        p->out_n[i] = p->in_n[i] = (int64_t)x->batch * C * x->frames * x->height * x->width;
        p->text_n[i] = (int64_t)x->batch * L * td;
        int f[3] = {x->short_frames, x->mid_frames, x->long_frames};
        for (int k = 0; k < 3; k++) p->hist_n[i][k] = (int64_t)x->batch * C * f[k] * Hh * Wh;
    }
}

static void pack_free(pack_inputs *p) {
    for (int i = 0; i < p->n_arrays; i++) free(p->arrays[i]);
}

/* Input gradients of one input: [hidden | text | short | mid | long] in one array. */
static hl_dit_input_grads pack_gin(const pack_inputs *p, int i, float *d) {
    hl_dit_input_grads g = {d, d + p->in_n[i], NULL, NULL, NULL};
    float *h = d + p->in_n[i] + p->text_n[i];
    if (p->hist_n[i][0]) g.latents_history_short = h;
    if (p->hist_n[i][1]) g.latents_history_mid = h + p->hist_n[i][0];
    if (p->hist_n[i][2]) g.latents_history_long = h + p->hist_n[i][0] + p->hist_n[i][1];
    return g;
}

static int64_t pack_gin_n(const pack_inputs *p, int i) {
    return p->in_n[i] + p->text_n[i] + p->hist_n[i][0] + p->hist_n[i][1] + p->hist_n[i][2];
}

/* Largest |a - b| relative to the largest |b| (0 for an all-zero b equal to a). */
static double rel_diff(const float *a, const float *b, int64_t n) {
    double mx = 0.0;
    double d = hl_max_abs_diff(a, b, n, &mx);
    return mx > 0 ? d / mx : d;
}

static void pack_check(const hl_ctx *ctx, model *md, const helios_dit_input *case_in,
                       const char *backend, double tol) {
    pack_inputs p;
    pack_make(case_in, &p);
    int64_t D = md->m->cfg.dim, total = md->layout.total, ncur[NPACK], hid_n = 0;
    float *R[NPACK], *out[NPACK], *outp[NPACK], *gin[NPACK], *ginp[NPACK];
    hl_dit_input_grads gi[NPACK], gip[NPACK];
    for (int i = 0; i < NPACK; i++) {
        R[i] = malloc((size_t)p.out_n[i] * sizeof(float));
        fill_random(R[i], p.out_n[i], 70 + i);
        out[i] = calloc((size_t)p.out_n[i], sizeof(float));
        outp[i] = calloc((size_t)p.out_n[i], sizeof(float));
        gin[i] = calloc((size_t)pack_gin_n(&p, i), sizeof(float));
        ginp[i] = calloc((size_t)pack_gin_n(&p, i), sizeof(float));
        gi[i] = pack_gin(&p, i, gin[i]), gip[i] = pack_gin(&p, i, ginp[i]);
        ncur[i] = p.out_n[i] / (16 * 4); /* tokens of the (1, 2, 2) patches, C_out 16 */
        hid_n += ncur[i] * D;
    }
    /* a tap on block 0 with its own gradient: hidden [Σ tokens, D] in input order */
    float *hid = calloc((size_t)hid_n, sizeof(float)), *hidp = calloc((size_t)hid_n, sizeof(float));
    float *dhid = malloc((size_t)hid_n * sizeof(float));
    fill_random(dhid, hid_n, 80);
    float *gturn = malloc((size_t)total * sizeof(float));
    int blocks[1] = {0}, ok = 1;
    memset(md->g, 0, (size_t)total * sizeof(float));
    for (int i = 0, at = 0; ok && i < NPACK; at += (int)(ncur[i] * D), i++) { /* in turn */
        float *h[1] = {hid + at};
        const float *dh[1] = {dhid + at};
        hl_dit_taps taps = {1, blocks, h, dh};
        hl_dit_tape *t = NULL;
        ok = hl_dit_forward_train_taps(ctx, md->m, &p.in[i], 0, &taps, &t, out[i]) == HL_OK &&
             hl_dit_backward_taps(ctx, md->m, t, R[i], &taps, md->grad, &gi[i]) == HL_OK;
        hl_dit_tape_free(t);
    }
    CHECK(ok, "%s: in turn: %s", backend, ctx->err->msg);
    memcpy(gturn, md->g, (size_t)total * sizeof(float));
    memset(md->g, 0, (size_t)total * sizeof(float));
    float *hp[1] = {hidp};
    const float *dhp[1] = {dhid};
    hl_dit_taps taps = {1, blocks, hp, dhp};
    hl_dit_tape *t = NULL;
    ok = hl_dit_forward_train_packed(ctx, md->m, NPACK, p.in, 0, &taps, &t, outp) == HL_OK &&
         hl_dit_backward_packed(ctx, md->m, t, (const float *const *)R, &taps, md->grad, gip) ==
             HL_OK;
    hl_dit_tape_free(t);
    CHECK(ok, "%s: packed: %s", backend, ctx->err->msg);
    for (int i = 0; ok && i < NPACK; i++) { /* in turn = the inference forward (own code) */
        float *ref = malloc((size_t)p.out_n[i] * sizeof *ref);
        CHECK(hl_dit_forward(ctx, md->m, &p.in[i], NULL, ref) == HL_OK, "%s", ctx->err->msg);
        double d = rel_diff(out[i], ref, p.out_n[i]);
        CHECK(d <= tol, "%s: training forward %d vs forward: %.3g of its largest", backend, i, d);
        free(ref);
    }
    for (int i = 0; ok && i < NPACK; i++) {
        double d = rel_diff(outp[i], out[i], p.out_n[i]);
        CHECK(d <= tol, "%s: packed output %d differs by %.3g of its largest", backend, i, d);
        d = rel_diff(ginp[i], gin[i], pack_gin_n(&p, i));
        CHECK(d <= tol, "%s: packed input gradients %d differ by %.3g", backend, i, d);
    }
    CHECK(!ok || rel_diff(hidp, hid, hid_n) <= tol, "%s: packed taps differ", backend);
    for (size_t k = 0; ok && k < md->layout.n; k++) {
        const hl_param *q = &md->layout.p[k];
        double d = rel_diff(md->g + q->offset, gturn + q->offset, q->numel);
        CHECK(d <= tol, "%s: packed gradient of %s differs by %.3g", backend, q->name, d);
    }
    printf("packing (%s): 3 inputs, 5 sequences in one forward = in turn\n", backend);
    for (int i = 0; i < NPACK; i++)
        free(R[i]), free(out[i]), free(outp[i]), free(gin[i]), free(ginp[i]);
    free(hid), free(hidp), free(dhid), free(gturn);
    pack_free(&p);
}

/* Packed inputs must agree on the text length. */
static void pack_refuse(const hl_ctx *ctx, model *md, const helios_dit_input *case_in) {
    helios_dit_input in[2] = {*case_in, *case_in};
    in[1].text_len = case_in->text_len - 1;
    float *o = malloc((size_t)case_in->batch * 16 * case_in->frames * case_in->height *
                      case_in->width * sizeof *o);
    float *outs[2] = {o, o};
    hl_dit_tape *t = NULL;
    hl_status st = hl_dit_forward_train_packed(ctx, md->m, 2, in, 0, NULL, &t, outs);
    CHECK(st == HELIOS_ERR_SHAPE && t == NULL && strstr(ctx->err->msg, "packed input 1"),
          "two text lengths packed: status %d (%s)", st, ctx->err->msg);
    st = hl_dit_forward_train_packed(ctx, md->m, 0, in, 0, NULL, &t, outs);
    CHECK(st == HELIOS_ERR_INVALID_ARG && t == NULL, "no inputs: status %d", st);
    free(o);
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

    /* packing: the ref backend (double sums) and the CPU backend (oneDNN GEMMs over more rows) */
    pack_check(&ctx, &md, &c.in, "ref", 1e-5);
    pack_refuse(&ctx, &md, &c.in);
    hl_ctx cpu = test_ctx(HELIOS_BACKEND_CPU, &e);
    pack_check(&cpu, &md, &c.in, "cpu", 1e-4);
    free(g0), free(R), free(out), free(ref);
    hl_dit_case_free(&c);
    hl_st_close(st);
    hl_dit_flat_free(&md);
    return test_done("test_dit_train");
}
