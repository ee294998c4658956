/* LoRA adapters (src/train/lora.c, lora_io.c):
 *   - a 2x2 example by hand: W = W0 + s B A, dA = s B^T dW, dB = s dW A^T;
 *   - a Linear and a Conv3d of a hand-made layout against plain double loops, the same bits with
 *     1 and 2 threads;
 *   - which tensors of the tiny transformer (tests/vectors) are adapted, by default and with a
 *     pattern, and the adapter names and shapes (PEFT's Linear / Conv3d shapes);
 *   - B = 0 at initialisation leaves the weights and the output bit for bit;
 *   - dL/dA and dL/dB of every target, with L = Σ out ⊙ R through hl_dit_forward_train /
 *     hl_dit_backward, against central differences along the gradient and a random direction;
 *   - merge on W0 gives apply's bits; save -> load is bit-exact; bad files give clear errors;
 *   - the training loop over the adapters (lora_step.h) fits a rank-1 change of a linear model,
 *     the bias (no target) and W0 untouched. */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/parallel.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "test_util.h"
#include "train/dit_flat.h"
#include "train/lora.h"
#include "train/lora_step.h"
#include "verify/dit_vectors.h"

static char g_dir[64];

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* ---- by hand ------------------------------------------------------------------------------ */

static void test_hand(void) {
    hl_error e = {0};
    hl_param p = {.name = "lin.weight", .ndim = 2, .shape = {2, 2}, .offset = 0, .numel = 4};
    hl_params lay = {&p, 1, 4};
    float w0[4] = {1, 2, 3, 4}, w[4], gw[4] = {1, 0, 0, 1};
    hl_lora l;
    /* rank 1, alpha 2: s = 2 */
    CHECK(hl_lora_new(&l, &lay, w0, 1, 2.0, NULL, &e) == HL_OK, "%s", e.msg);
    CHECK(l.n_targets == 1 && l.layout.total == 4, "one target, A [1,2] + B [2,1]");
    float ad[4] = {1, 2, 3, 4}; /* A = [[1, 2]], B = [[3], [4]] */
    float gad[4] = {0};
    CHECK(hl_lora_apply(&l, ad, w, &e) == HL_OK, "%s", e.msg);
    /* W0 + 2 [[3, 6], [4, 8]] */
    CHECK(w[0] == 7 && w[1] == 14 && w[2] == 11 && w[3] == 20, "apply: %g %g %g %g", w[0], w[1],
          w[2], w[3]);
    hl_lora_grads(&l, ad, gw, gad);
    /* dW = I: dA = 2 [3, 4], dB = 2 [[1], [2]] */
    CHECK(gad[0] == 6 && gad[1] == 8 && gad[2] == 2 && gad[3] == 4, "grads: %g %g %g %g", gad[0],
          gad[1], gad[2], gad[3]);
    hl_lora_grads(&l, ad, gw, gad);
    CHECK(gad[0] == 12 && gad[3] == 8, "grads accumulate");
    memcpy(w, w0, sizeof w);
    hl_lora_merge(&l, ad, w);
    CHECK(w[0] == 7 && w[1] == 14 && w[2] == 11 && w[3] == 20, "merge");
    hl_lora_free(&l);
    CHECK(hl_lora_new(&l, &lay, NULL, 1, 2.0, NULL, &e) == HL_OK && !l.base, "no base");
    CHECK(hl_lora_apply(&l, ad, w, &e) == HELIOS_ERR_INVALID_ARG, "apply without W0 refused");
    hl_lora_free(&l);
    CHECK(hl_lora_new(&l, &lay, w0, 0, 1.0, NULL, &e) == HELIOS_ERR_INVALID_ARG, "rank 0");
    CHECK(hl_lora_new(&l, &lay, w0, 4, -1.0, NULL, &e) == HELIOS_ERR_INVALID_ARG, "alpha < 0");
}

static void test_glob(void) {
    CHECK(hl_lora_glob("*", "blocks.0.attn1.to_q"), "*");
    CHECK(hl_lora_glob("blocks.*.attn1.to_?", "blocks.12.attn1.to_q"), "* and ?");
    CHECK(!hl_lora_glob("blocks.*.attn1.to_?", "blocks.1.attn1.to_out.0"), "? is one char");
    CHECK(hl_lora_glob("*to_out*", "blocks.1.attn2.to_out.0"), "two stars");
    CHECK(!hl_lora_glob("patch_*", "proj_out"), "prefix");
    CHECK(hl_lora_glob("proj_out", "proj_out") && !hl_lora_glob("proj_out", "proj_out2"), "exact");
}

/* ---- a Linear and a Conv3d against plain loops ---------------------------------------------- */

static void naive(const hl_lora *l, const float *ad, const float *w0, const float *gw, double *w,
                  double *gad) {
    for (size_t i = 0; i < l->n_targets; i++) {
        const hl_lora_target *t = &l->t[i];
        const float *A = ad + t->a_off, *B = ad + t->b_off, *dW = gw + t->w_off;
        int r = l->rank;
        for (int64_t n = 0; n < t->n; n++)
            for (int64_t c = 0; c < t->k; c++) {
                double s = 0;
                for (int q = 0; q < r; q++) s += (double)B[n * r + q] * A[q * t->k + c];
                w[t->w_off + n * t->k + c] = w0[t->w_off + n * t->k + c] + l->scale * s;
            }
        for (int q = 0; q < r; q++)
            for (int64_t c = 0; c < t->k; c++) {
                double s = 0;
                for (int64_t n = 0; n < t->n; n++) s += (double)B[n * r + q] * dW[n * t->k + c];
                gad[t->a_off + q * t->k + c] = l->scale * s;
            }
        for (int64_t n = 0; n < t->n; n++)
            for (int q = 0; q < r; q++) {
                double s = 0;
                for (int64_t c = 0; c < t->k; c++) s += (double)dW[n * t->k + c] * A[q * t->k + c];
                gad[t->b_off + n * r + q] = l->scale * s;
            }
    }
}

static void test_loops(void) {
    hl_error e = {0};
    hl_param p[3] = {
        /* 300 x 512 x rank 32 is above the threshold where the rows go to the thread pool */
        {.name = "lin.weight", .ndim = 2, .shape = {300, 512}, .offset = 0, .numel = 300 * 512},
        {.name = "lin.bias", .ndim = 1, .shape = {300}, .offset = 300 * 512, .numel = 300},
        {.name = "conv.weight",
         .ndim = 5,
         .shape = {9, 3, 2, 4, 4},
         .offset = 300 * 513,
         .numel = 9 * 3 * 32},
    };
    hl_params lay = {p, 3, 300 * 513 + 9 * 96};
    int64_t nw = lay.total;
    float *w0 = malloc(nw * sizeof *w0), *w = malloc(nw * sizeof *w), *gw = malloc(nw * sizeof *gw);
    fill_random(w0, nw, 1);
    fill_random(gw, nw, 2);
    memcpy(w, w0, nw * sizeof *w);
    hl_lora l;
    CHECK(hl_lora_new(&l, &lay, w0, 32, 3.0, NULL, &e) == HL_OK, "%s", e.msg);
    CHECK(l.n_targets == 2 && l.t[1].n == 9 && l.t[1].k == 96, "conv flattened to [9, 96]");
    const hl_param *a = &l.layout.p[2], *b = &l.layout.p[3];
    CHECK(!strcmp(a->name, "transformer.conv.lora_A.weight") && a->ndim == 5 && a->shape[0] == 32 &&
              a->shape[1] == 3 && a->shape[2] == 2 && a->shape[4] == 4,
          "conv A [32, 3, 2, 4, 4]: %s", a->name);
    CHECK(!strcmp(b->name, "transformer.conv.lora_B.weight") && b->ndim == 5 && b->shape[0] == 9 &&
              b->shape[1] == 32 && b->shape[2] == 1 && b->shape[4] == 1,
          "conv B [9, 32, 1, 1, 1]");
    int64_t na = l.layout.total;
    float *ad = malloc(na * sizeof *ad), *g1 = calloc(na, sizeof *g1), *g2 = calloc(na, sizeof *g2);
    double *wd = calloc(nw, sizeof *wd), *gd = calloc(na, sizeof *gd);
    fill_random(ad, na, 3);
    int threads = hl_get_threads();
    hl_set_threads(1);
    CHECK(hl_lora_apply(&l, ad, w, &e) == HL_OK, "%s", e.msg);
    hl_lora_grads(&l, ad, gw, g1);
    float *w1 = malloc(nw * sizeof *w1);
    memcpy(w1, w, nw * sizeof *w);
    hl_set_threads(2);
    CHECK(hl_lora_apply(&l, ad, w, &e) == HL_OK, "%s", e.msg);
    hl_lora_grads(&l, ad, gw, g2);
    hl_set_threads(threads);
    CHECK(!memcmp(w, w1, nw * sizeof *w) && !memcmp(g1, g2, na * sizeof *g1),
          "1 and 2 threads differ");
    naive(&l, ad, w0, gw, wd, gd);
    double worst = 0.0;
    for (size_t i = 0; i < l.n_targets; i++) {
        const hl_lora_target *t = &l.t[i];
        for (int64_t j = 0; j < t->n * t->k; j++)
            worst = fmax(worst, fabs(w[t->w_off + j] - wd[t->w_off + j]) /
                                    fmax(1e-30, fabs(wd[t->w_off + j])));
    }
    CHECK(worst <= 6e-8, "apply vs loops: relative %.3g", worst);
    worst = 0.0;
    for (int64_t j = 0; j < na; j++)
        worst = fmax(worst, fabs(g1[j] - gd[j]) / fmax(1e-30, fabs(gd[j])));
    CHECK(worst <= 6e-8, "grads vs loops: relative %.3g", worst);
    /* the bias is no target: merge leaves it */
    memcpy(w, w0, nw * sizeof *w);
    hl_lora_merge(&l, ad, w);
    CHECK(!memcmp(w, w1, nw * sizeof *w), "merge on W0 != apply");
    hl_lora_free(&l);
    free(w0), free(w), free(gw), free(w1), free(ad), free(g1), free(g2), free(wd), free(gd);
}

/* ---- the tiny transformer ---------------------------------------------------------------- */

typedef struct model {
    hl_params layout;
    float *w, *g, *w0;
    hl_dit *m, *grad;
} model;

static int load(model *md, hl_error *e) {
    hl_dit_config cfg;
    hl_json *j = NULL;
    hl_weights *wt = NULL;
    if (hl_json_load_file(vector_path("transformer_config.json"), &j, e) != HL_OK) return 0;
    hl_status st = hl_dit_config_parse(j, &cfg, e);
    hl_json_free(j);
    if (st != HL_OK || hl_dit_params_layout(&cfg, &md->layout, e) != HL_OK) return 0;
    size_t n = (size_t)md->layout.total;
    md->w = calloc(n, sizeof(float)), md->g = calloc(n, sizeof(float));
    md->w0 = calloc(n, sizeof(float));
    if (!md->w || !md->g || !md->w0) return 0;
    if (hl_weights_open(vector_path("transformer_weights_f32.safetensors"), &wt, e) != HL_OK)
        return 0;
    st = hl_params_load(&md->layout, md->w0, wt, e);
    hl_weights_close(wt);
    memcpy(md->w, md->w0, n * sizeof(float));
    return st == HL_OK && hl_dit_new_flat(&cfg, &md->layout, md->w, &md->m, e) == HL_OK &&
           hl_dit_new_flat(&cfg, &md->layout, md->g, &md->grad, e) == HL_OK;
}

/* Every Linear of the tiny config (2 blocks) and the four patch embeddings. */
static const char *const k_targets[] = {
    "patch_embedding",
    "patch_short",
    "patch_mid",
    "patch_long",
    "condition_embedder.time_embedder.linear_1",
    "condition_embedder.time_embedder.linear_2",
    "condition_embedder.time_proj",
    "condition_embedder.text_embedder.linear_1",
    "condition_embedder.text_embedder.linear_2",
    "blocks.0.attn1.to_q",
    "blocks.0.attn1.to_k",
    "blocks.0.attn1.to_v",
    "blocks.0.attn1.to_out.0",
    "blocks.0.attn2.to_q",
    "blocks.0.attn2.to_k",
    "blocks.0.attn2.to_v",
    "blocks.0.attn2.to_out.0",
    "blocks.0.ffn.net.0.proj",
    "blocks.0.ffn.net.2",
    "blocks.1.attn1.to_q",
    "blocks.1.attn1.to_k",
    "blocks.1.attn1.to_v",
    "blocks.1.attn1.to_out.0",
    "blocks.1.attn2.to_q",
    "blocks.1.attn2.to_k",
    "blocks.1.attn2.to_v",
    "blocks.1.attn2.to_out.0",
    "blocks.1.ffn.net.0.proj",
    "blocks.1.ffn.net.2",
    "proj_out",
};
#define N_TARGETS (sizeof k_targets / sizeof k_targets[0])

static int adapted(const hl_lora *l, const char *module) {
    char name[200];
    snprintf(name, sizeof name, HL_LORA_PREFIX "%s.lora_A.weight", module);
    return hl_params_find(&l->layout, name) != NULL;
}

static void test_targets(const model *md) {
    hl_error e = {0};
    hl_lora l;
    CHECK(hl_lora_new(&l, &md->layout, md->w0, 4, 4.0, NULL, &e) == HL_OK, "%s", e.msg);
    CHECK(l.n_targets == N_TARGETS && l.layout.n == 2 * N_TARGETS, "%zu targets, expected %zu",
          l.n_targets, N_TARGETS);
    for (size_t i = 0; i < N_TARGETS; i++)
        CHECK(adapted(&l, k_targets[i]), "%s is not adapted", k_targets[i]);
    CHECK(!adapted(&l, "blocks.0.attn1.norm_q") && !adapted(&l, "blocks.0.norm2"),
          "norms are not adapted");
    const hl_param *a = hl_params_find(&l.layout, "transformer.patch_long.lora_A.weight");
    const hl_param *b = hl_params_find(&l.layout, "transformer.blocks.1.attn1.to_q.lora_B.weight");
    CHECK(a && a->ndim == 5 && a->shape[0] == 4 && a->shape[1] == 16 && a->shape[2] == 4 &&
              a->shape[3] == 8 && a->shape[4] == 8,
          "patch_long A [4, 16, 4, 8, 8]");
    CHECK(b && b->ndim == 2 && b->shape[0] == 64 && b->shape[1] == 4, "to_q B [64, 4]");
    int64_t base = 0;
    for (size_t i = 0; i < l.n_targets; i++) base += l.t[i].n * l.t[i].k;
    printf("targets: %zu tensors, %lld of %lld weights adapted, rank 4: %lld adapter floats\n",
           l.n_targets, (long long)base, (long long)md->layout.total, (long long)l.layout.total);
    hl_lora_free(&l);

    const char *const attn[] = {"blocks.*.attn1.to_*", "proj_out", NULL};
    CHECK(hl_lora_new(&l, &md->layout, md->w0, 2, 4.0, attn, &e) == HL_OK, "%s", e.msg);
    CHECK(l.n_targets == 9 && adapted(&l, "blocks.1.attn1.to_out.0") &&
              !adapted(&l, "blocks.0.attn2.to_q") && adapted(&l, "proj_out"),
          "pattern selection: %zu", l.n_targets);
    CHECK(l.scale == 2.0, "s = alpha / r");
    hl_lora_free(&l);
    const char *const typo[] = {"blocks.*.attn1.to_qq", NULL};
    CHECK(hl_lora_new(&l, &md->layout, md->w0, 2, 4.0, typo, &e) == HELIOS_ERR_INVALID_ARG &&
              strstr(e.msg, "to_qq"),
          "a pattern matching nothing: %s", e.msg);
    const char *const norm[] = {"blocks.0.attn1.norm_q", NULL};
    CHECK(hl_lora_new(&l, &md->layout, md->w0, 2, 4.0, norm, &e) == HELIOS_ERR_INVALID_ARG,
          "a norm is not adaptable");
}

/* L = Σ out ⊙ R in double, the adapters applied first. */
static double loss_of(const hl_ctx *ctx, model *md, const hl_lora *l, const float *ad,
                      const helios_dit_input *in, const float *R, float *out, int64_t n) {
    hl_dit_tape *t = NULL;
    if (hl_lora_apply(l, ad, md->w, NULL) != HL_OK ||
        hl_dit_forward_train(ctx, md->m, in, 1, &t, out) != HL_OK)
        return NAN;
    hl_dit_tape_free(t);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)out[i] * R[i];
    return s;
}

static void test_transformer(const hl_ctx *ctx, model *md) {
    hl_error e = {0};
    hl_safetensors *st = NULL;
    hl_dit_case c = {0};
    CHECK(hl_st_open(vector_path("transformer_case_ii_history.safetensors"), &st, &e) == HL_OK &&
              hl_dit_case_read(st, &c, &e) == HL_OK,
          "case: %s", e.msg);
    if (!c.in.hidden_states) return;
    int64_t n = hl_dit_case_out_numel(&c, md->m), nw = md->layout.total;
    float *R = malloc(n * sizeof *R), *out = malloc(n * sizeof *out),
          *ref = malloc(n * sizeof *ref);
    fill_random(R, n, 7);
    CHECK(hl_dit_forward(ctx, md->m, &c.in, NULL, ref) == HL_OK, "forward");

    /* PEFT's init: B = 0 leaves the weights and the output bit for bit */
    hl_lora l;
    hl_rng rng;
    hl_rng_seed(&rng, 42);
    CHECK(hl_lora_new(&l, &md->layout, md->w0, 4, 8.0, NULL, &e) == HL_OK, "%s", e.msg);
    int64_t na = l.layout.total;
    float *ad = malloc(na * sizeof *ad), *gad = calloc(na, sizeof *gad);
    hl_lora_init_adapters(&l, ad, &rng);
    int b_zero = 1, a_in = 1;
    for (size_t i = 0; i < l.n_targets; i++) {
        const hl_lora_target *t = &l.t[i];
        float bound = (float)(1.0 / sqrt((double)t->k));
        for (int64_t j = 0; j < t->n * l.rank; j++) b_zero &= ad[t->b_off + j] == 0.0f;
        for (int64_t j = 0; j < t->k * l.rank; j++)
            a_in &= ad[t->a_off + j] >= -bound && ad[t->a_off + j] < bound;
    }
    CHECK(b_zero && a_in, "init: B = 0, A in [-1/sqrt(K), 1/sqrt(K))");
    CHECK(hl_lora_apply(&l, ad, md->w, &e) == HL_OK, "%s", e.msg);
    CHECK(!memcmp(md->w, md->w0, nw * sizeof(float)), "B = 0 changes the weights");
    CHECK(hl_dit_forward(ctx, md->m, &c.in, NULL, out) == HL_OK && !memcmp(out, ref, n * 4),
          "B = 0 changes the output");

    /* B random: gradients of every adapter against central differences */
    for (size_t i = 0; i < l.n_targets; i++) {
        const hl_lora_target *t = &l.t[i];
        fill_random(ad + t->b_off, t->n * l.rank, 1000 + i);
        for (int64_t j = 0; j < t->n * l.rank; j++) ad[t->b_off + j] *= 0.1f;
    }
    hl_dit_tape *tape = NULL;
    memset(md->g, 0, nw * sizeof(float));
    CHECK(hl_lora_apply(&l, ad, md->w, &e) == HL_OK &&
              hl_dit_forward_train(ctx, md->m, &c.in, 1, &tape, out) == HL_OK &&
              hl_dit_backward(ctx, md->m, tape, R, md->grad, NULL) == HL_OK,
          "backward");
    hl_dit_tape_free(tape);
    hl_lora_grads(&l, ad, md->g, gad);
    double worst = 0.0;
    const char *worst_name = "";
    for (size_t k = 0; k < l.layout.n; k++) {
        const hl_param *p = &l.layout.p[k];
        double *v = malloc(p->numel * sizeof *v), norm = 0.0, an_norm = 0.0;
        float *saved = malloc(p->numel * sizeof *saved), *rnd = malloc(p->numel * sizeof *rnd);
        memcpy(saved, ad + p->offset, p->numel * sizeof *saved);
        for (int64_t i = 0; i < p->numel; i++)
            norm += (double)gad[p->offset + i] * gad[p->offset + i];
        norm = sqrt(norm);
        for (int64_t i = 0; i < p->numel; i++) an_norm += (double)saved[i] * saved[i];
        double eps = 1e-2 * fmax(0.1, sqrt(an_norm / p->numel));
        for (int dir = 0; dir < 2; dir++) {
            fill_random(rnd, p->numel, 500 + k);
            double vn = 0.0, an = 0.0;
            for (int64_t i = 0; i < p->numel; i++)
                v[i] = dir == 0 ? (norm > 0 ? gad[p->offset + i] / norm : 0.0) : rnd[i];
            for (int64_t i = 0; i < p->numel; i++) vn += v[i] * v[i];
            vn = sqrt(vn);
            for (int64_t i = 0; i < p->numel; i++) v[i] /= vn > 0 ? vn : 1.0;
            for (int64_t i = 0; i < p->numel; i++) an += (double)gad[p->offset + i] * v[i];
            double taken = 0.0;
            for (int64_t i = 0; i < p->numel; i++) {
                float a = (float)(saved[i] + eps * v[i]), b = (float)(saved[i] - eps * v[i]);
                taken += ((double)a - b) * v[i];
            }
            for (int64_t i = 0; i < p->numel; i++)
                ad[p->offset + i] = (float)(saved[i] + eps * v[i]);
            double lp = loss_of(ctx, md, &l, ad, &c.in, R, out, n);
            for (int64_t i = 0; i < p->numel; i++)
                ad[p->offset + i] = (float)(saved[i] - eps * v[i]);
            double lm = loss_of(ctx, md, &l, ad, &c.in, R, out, n);
            memcpy(ad + p->offset, saved, p->numel * sizeof *saved);
            double fd = (lp - lm) / taken;
            double tol = 2e-2 * fabs(an) + 2e-4 * norm + 1e-5 / eps;
            double r = fabs(fd - an) / tol;
            if (r > worst) worst = r, worst_name = p->name;
            CHECK(r <= 1.0, "%s (%s direction): finite differences %.6g, lora_grads %.6g", p->name,
                  dir ? "random" : "gradient", fd, an);
        }
        free(v), free(saved), free(rnd);
    }
    printf("finite differences: %zu adapter tensors x 2 directions, worst %.3f of the tolerance "
           "(%s)\n",
           l.layout.n, worst, worst_name);

    /* merge into a copy of W0 gives apply's bits */
    float *wm = malloc(nw * sizeof *wm);
    memcpy(wm, md->w0, nw * sizeof *wm);
    hl_lora_merge(&l, ad, wm);
    CHECK(hl_lora_apply(&l, ad, md->w, &e) == HL_OK && !memcmp(wm, md->w, nw * sizeof *wm),
          "merge != apply");
    /* and the merged model's output is the adapted one's */
    CHECK(hl_dit_forward(ctx, md->m, &c.in, NULL, ref) == HL_OK, "forward");

    /* save -> load: bit-exact, same layout, rank, alpha */
    const char *path = tmp_path("adapter.safetensors");
    CHECK(hl_lora_save(path, &l, ad, &e) == HL_OK, "save: %s", e.msg);
    CHECK(access(tmp_path("adapter.safetensors.part"), F_OK) != 0, "no .part left");
    hl_lora l2;
    float *ad2 = NULL;
    CHECK(hl_lora_load(path, &md->layout, md->w0, &l2, &ad2, &e) == HL_OK, "load: %s", e.msg);
    if (ad2) {
        CHECK(l2.rank == 4 && l2.alpha == 8.0 && l2.layout.total == na && l2.n_targets == N_TARGETS,
              "rank %d alpha %g", l2.rank, l2.alpha);
        CHECK(!memcmp(ad, ad2, na * sizeof *ad), "round trip not bit-exact");
        int same = 1;
        for (size_t k = 0; k < l.layout.n; k++)
            same &= !strcmp(l.layout.p[k].name, l2.layout.p[k].name) &&
                    l.layout.p[k].offset == l2.layout.p[k].offset;
        CHECK(same, "layouts differ");
        /* an export: merge into the base weights, no W0 copy needed */
        hl_lora l3;
        float *ad3 = NULL;
        memcpy(wm, md->w0, nw * sizeof *wm);
        CHECK(hl_lora_load(path, &md->layout, NULL, &l3, &ad3, &e) == HL_OK && !l3.base, "%s",
              e.msg);
        if (ad3) hl_lora_merge(&l3, ad3, wm);
        CHECK(!memcmp(wm, md->w, nw * sizeof *wm), "merge of a loaded adapter");
        hl_lora_free(&l3), free(ad3);
        hl_lora_free(&l2), free(ad2);
    }
    hl_safetensors *f = NULL;
    if (hl_st_open(path, &f, &e) == HL_OK) {
        const char *m = hl_st_meta(f, "lora_adapter_metadata");
        CHECK(hl_st_meta(f, "helios.lora.rank") && !strcmp(hl_st_meta(f, "helios.lora.rank"), "4"),
              "rank metadata");
        CHECK(m && strstr(m, "\"transformer.lora_alpha\": 8,") &&
                  strstr(m, "\"blocks.1.ffn.net.2\""),
              "diffusers metadata: %s", m ? m : "(none)");
        CHECK(hl_st_find(f, "transformer.blocks.0.attn1.to_q.lora_A.weight") != NULL,
              "diffusers names");
        hl_st_close(f);
    }

    /* a subset of targets round-trips too */
    hl_lora ls;
    const char *const attn[] = {"blocks.0.attn2.*", NULL};
    CHECK(hl_lora_new(&ls, &md->layout, NULL, 3, 1.5, attn, &e) == HL_OK, "%s", e.msg);
    float *ads = malloc(ls.layout.total * sizeof *ads);
    fill_random(ads, ls.layout.total, 9);
    CHECK(hl_lora_save(tmp_path("attn2.safetensors"), &ls, ads, &e) == HL_OK, "%s", e.msg);
    CHECK(hl_lora_load(tmp_path("attn2.safetensors"), &md->layout, NULL, &l2, &ad2, &e) == HL_OK &&
              l2.n_targets == 4 && l2.rank == 3 && l2.alpha == 1.5 &&
              !memcmp(ad2, ads, ls.layout.total * sizeof *ads),
          "subset: %s", e.msg);
    hl_lora_free(&l2), free(ad2);
    hl_lora_free(&ls), free(ads);

    free(wm), free(R), free(out), free(ref), free(ad), free(gad);
    hl_lora_free(&l);
    hl_dit_case_free(&c);
    hl_st_close(st);
}

/* ---- bad files ----------------------------------------------------------------------------- */

static void expect_bad(const model *md, const char *path, hl_status want, const char *needle) {
    hl_error e = {0};
    hl_lora l;
    float *ad = (float *)1;
    hl_status st = hl_lora_load(path, &md->layout, md->w0, &l, &ad, &e);
    CHECK(st == want && ad == NULL && strstr(e.msg, path) && strstr(e.msg, needle),
          "%s: status %d (want %d), message '%s' (want '%s')", path, st, want, e.msg, needle);
}

static void test_bad_files(const model *md) {
    hl_error e = {0};
    hl_lora l;
    float a[4 * 64], b[64 * 8] = {0};
    fill_random(a, 4 * 64, 5);
    const char *const only_q[] = {"blocks.0.attn1.to_q", NULL};
    CHECK(hl_lora_new(&l, &md->layout, NULL, 4, 4.0, only_q, &e) == HL_OK, "%s", e.msg);
    float ad[4 * 64 + 64 * 4];
    fill_random(ad, 4 * 64 + 64 * 4, 6);
    const char *good = tmp_path("good.safetensors");
    CHECK(hl_lora_save(good, &l, ad, &e) == HL_OK, "%s", e.msg);
    hl_lora_free(&l);

    /* truncated */
    size_t n = 0;
    unsigned char *bytes = read_file(good, &n);
    const char *trunc = tmp_path("truncated.safetensors");
    FILE *f = fopen(trunc, "wb");
    if (f && bytes) fwrite(bytes, 1, n - 100, f);
    if (f) fclose(f);
    free(bytes);
    expect_bad(md, trunc, HELIOS_ERR_FORMAT, trunc);

    const int64_t sa[2] = {4, 64}, sb[2] = {64, 4}, sb8[2] = {64, 8}, sk[2] = {4, 32};
    const char *an = "transformer.blocks.0.attn1.to_q.lora_A.weight";
    const char *bn = "transformer.blocks.0.attn1.to_q.lora_B.weight";
    const char *meta4[] = {"helios.lora.rank", "4", "helios.lora.alpha", "4", NULL};
    /* B of rank 8 with metadata rank 4 */
    hl_st_entry e1[2] = {{an, hl_tensor_make(a, HL_F32, 2, sa)},
                         {bn, hl_tensor_make(b, HL_F32, 2, sb8)}};
    const char *p1 = tmp_path("rank.safetensors");
    CHECK(hl_st_write(p1, e1, 2, meta4, &e) == HL_OK, "%s", e.msg);
    expect_bad(md, p1, HELIOS_ERR_SHAPE, "lora_B.weight': shape [64, 8], expected [64, 4]");
    /* A of the wrong input width */
    hl_st_entry e2[2] = {{an, hl_tensor_make(a, HL_F32, 2, sk)},
                         {bn, hl_tensor_make(b, HL_F32, 2, sb)}};
    const char *p2 = tmp_path("shape.safetensors");
    CHECK(hl_st_write(p2, e2, 2, meta4, &e) == HL_OK, "%s", e.msg);
    expect_bad(md, p2, HELIOS_ERR_SHAPE, "lora_A.weight': shape [4, 32], expected [4, 64]");
    /* a module the model does not have */
    hl_st_entry e3[2] = {
        {"transformer.blocks.0.attn1.to_x.lora_A.weight", hl_tensor_make(a, HL_F32, 2, sa)},
        {"transformer.blocks.0.attn1.to_x.lora_B.weight", hl_tensor_make(b, HL_F32, 2, sb)}};
    const char *p3 = tmp_path("module.safetensors");
    CHECK(hl_st_write(p3, e3, 2, meta4, &e) == HL_OK, "%s", e.msg);
    expect_bad(md, p3, HELIOS_ERR_FORMAT, "blocks.0.attn1.to_x.weight");
    /* A without B */
    const char *p4 = tmp_path("pair.safetensors");
    CHECK(hl_st_write(p4, e1, 1, meta4, &e) == HL_OK, "%s", e.msg);
    expect_bad(md, p4, HELIOS_ERR_FORMAT, "has no");
    /* a tensor that is no adapter */
    hl_st_entry e5[3] = {
        e2[0], e2[1], {"blocks.0.attn1.to_q.weight", hl_tensor_make(a, HL_F32, 2, sa)}};
    e5[0].t.shape[1] = 64;
    const char *p5 = tmp_path("other.safetensors");
    CHECK(hl_st_write(p5, e5, 3, meta4, &e) == HL_OK, "%s", e.msg);
    expect_bad(md, p5, HELIOS_ERR_FORMAT, "'blocks.0.attn1.to_q.weight' is not a LoRA adapter");
    /* a bad rank in the metadata */
    const char *meta_bad[] = {"helios.lora.rank", "four", NULL};
    const char *p6 = tmp_path("meta.safetensors");
    hl_st_entry e6[2] = {{an, hl_tensor_make(a, HL_F32, 2, sa)},
                         {bn, hl_tensor_make(b, HL_F32, 2, sb)}};
    CHECK(hl_st_write(p6, e6, 2, meta_bad, &e) == HL_OK, "%s", e.msg);
    expect_bad(md, p6, HELIOS_ERR_FORMAT, "helios.lora.rank");
    /* no metadata: the rank from B, alpha = rank (PEFT's reading) */
    const char *p7 = tmp_path("bare.safetensors");
    CHECK(hl_st_write(p7, e6, 2, NULL, &e) == HL_OK, "%s", e.msg);
    float *ad7 = NULL;
    CHECK(hl_lora_load(p7, &md->layout, NULL, &l, &ad7, &e) == HL_OK && l.rank == 4 &&
              l.alpha == 4.0 && l.n_targets == 1,
          "bare file: %s", e.msg);
    hl_lora_free(&l), free(ad7);
    expect_bad(md, tmp_path("absent.safetensors"), HELIOS_ERR_IO, "absent");
}

/* ---- the loop over the adapters ------------------------------------------------------------ */

enum { TI = 8, TO = 6 };

typedef struct toy {
    float teacher[TO * TI], bias[TO];
} toy;

/* y = W x + b against the teacher's; accumulates dW, db. */
static hl_status toy_step(void *obj, hl_rng *rng, int64_t index, const float *params, float *grads,
                          double *loss, hl_error *err) {
    const toy *t = obj;
    float x[TI];
    hl_rng_randn_f32(rng, x, TI);
    double l = 0;
    for (int o = 0; o < TO; o++) {
        float y = t->bias[o], p = params[TO * TI + o];
        for (int i = 0; i < TI; i++)
            y += t->teacher[o * TI + i] * x[i], p += params[o * TI + i] * x[i];
        float r = p - y;
        l += 0.5 * (double)r * r;
        for (int i = 0; i < TI; i++) grads[o * TI + i] += r * x[i];
        grads[TO * TI + o] += r;
    }
    *loss = l;
    return HL_OK;
}

typedef struct losses {
    int n;
    double v[64];
} losses;

static void on_step(void *user, const hl_train_progress *p) {
    losses *l = user;
    if (l->n < 64) l->v[l->n++] = p->loss;
}

static void test_loop(void) {
    hl_error e = {0};
    hl_param p[2] = {
        {.name = "linear.weight", .ndim = 2, .shape = {TO, TI}, .offset = 0, .numel = TO * TI},
        {.name = "linear.bias", .ndim = 1, .shape = {TO}, .offset = TO * TI, .numel = TO},
    };
    hl_params lay = {p, 2, TO * TI + TO};
    float w0[TO * TI + TO], u[TO], v[TI];
    toy t;
    fill_random(w0, TO * TI + TO, 11);
    fill_random(u, TO, 12);
    fill_random(v, TI, 13);
    /* the teacher is W0 plus a rank-1 change, with W0's bias */
    for (int o = 0; o < TO; o++)
        for (int i = 0; i < TI; i++) t.teacher[o * TI + i] = w0[o * TI + i] + u[o] * v[i];
    memcpy(t.bias, w0 + TO * TI, sizeof t.bias);
    hl_lora l;
    hl_lora_objective o;
    hl_rng rng;
    hl_rng_seed(&rng, 5);
    CHECK(hl_lora_new(&l, &lay, w0, 2, 2.0, NULL, &e) == HL_OK, "%s", e.msg);
    float ad[2 * TI + TO * 2], ema[2 * TI + TO * 2];
    hl_lora_init_adapters(&l, ad, &rng);
    CHECK(hl_lora_objective_init(&o, &l, lay.total, w0, toy_step, NULL, &t, &e) == HL_OK, "%s",
          e.msg);
    losses ls = {0};
    hl_train_config c = {0};
    c.steps = 60;
    c.batch = 4;
    c.micro_batches = 1;
    c.adamw = (hl_adamw_config){0.9, 0.999, 1e-8, 0.0};
    c.lr = (hl_lr_schedule){HL_LR_CONSTANT, 0.05, 0.0, 0, 0};
    c.seed = 3;
    c.ema_decay = 0.5;
    c.io = (hl_ckpt_io){tmp_path("run"),
                        "transformer_lora",
                        "pytorch_lora_weights.safetensors",
                        NULL,
                        &l.layout,
                        NULL,
                        NULL};
    c.report = on_step;
    c.report_user = &ls;
    hl_train_result r;
    hl_status st = hl_train_run(&c, hl_lora_objective_step, NULL, &o, ad, ema, &r, &e);
    CHECK(st == HL_OK && ls.n == 60, "run: %s", e.msg);
    double first = 0, last = 0;
    for (int i = 0; i < 5 && ls.n == 60; i++) first += ls.v[i], last += ls.v[55 + i];
    printf("loop over the adapters: loss %.4g (first 5 steps) -> %.4g (last 5)\n", first / 5,
           last / 5);
    CHECK(last < 0.05 * first, "the loss does not fall: %g -> %g", first, last);
    CHECK(!memcmp(o.w + TO * TI, w0 + TO * TI, TO * sizeof(float)), "the bias moved");
    CHECK(!memcmp(l.base, w0, TO * TI * sizeof(float)), "W0 moved");
    /* the loop's checkpoint holds the adapters under their diffusers names: loadable as such
     * (no helios metadata there: the rank comes from B and alpha = rank, as here) */
    hl_lora lc;
    float *adc = NULL;
    CHECK(hl_lora_load(
              tmp_path("run/checkpoint-60/transformer_lora/pytorch_lora_weights.safetensors"), &lay,
              NULL, &lc, &adc, &e) == HL_OK &&
              lc.rank == 2 && lc.alpha == 2.0 && !memcmp(adc, ad, sizeof ad),
          "checkpoint as an adapter file: %s", e.msg);
    hl_lora_free(&lc), free(adc);
    hl_lora_objective_free(&o);
    hl_lora_free(&l);
}

int main(void) {
    hl_error e = {0};
    snprintf(g_dir, sizeof g_dir, "/tmp/helios_test_lora_XXXXXX");
    if (!mkdtemp(g_dir)) return 2;
    test_hand();
    test_glob();
    test_loops();
    test_loop();
    hl_ctx ctx = test_ctx(HELIOS_BACKEND_REF, &e);
    model md = {0};
    int loaded = load(&md, &e);
    CHECK(loaded, "load: %s", e.msg);
    if (loaded) {
        test_targets(&md);
        test_transformer(&ctx, &md);
        test_bad_files(&md);
    }
    hl_dit_free(md.m), hl_dit_free(md.grad);
    free(md.w), free(md.g), free(md.w0);
    hl_params_free(&md.layout);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_done("test_train_lora");
}
