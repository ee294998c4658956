#include "verify/umt5_grad_vectors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "text/umt5_backward.h"
#include "verify/dit_vectors.h"

typedef struct grad_check {
    const hl_safetensors *st;
    const char *file;
    hl_report_fn report;
    void *user;
} grad_check;

/* Compares x [n] with tensor `name` within rel · max(floor, max|ref|). */
static void compare(grad_check *c, const char *name, const float *x, int64_t n, double rel,
                    double floor) {
    float *ref = NULL;
    double err = INFINITY, ref_max = 0.0;
    if (hl_st_read_f32(c->st, name, n, &ref, NULL) == HL_OK)
        err = hl_max_abs_diff(x, ref, n, &ref_max);
    c->report(c->user, c->file, name, err, rel * fmax(floor, ref_max), 0);
    free(ref);
}

static void compare_grad(grad_check *c, const float *g, int64_t n, const char *fmt, int layer) {
    char name[160] = "grad.";
    snprintf(name + 5, sizeof name - 5, fmt, layer);
    compare(c, name, g, n, 1e-4, 0.0);
}

/* Every gradient, under its state_dict name. */
static void compare_grads(grad_check *c, const hl_umt5 *m, const hl_umt5_grads *g) {
    const hl_umt5_config *k = &m->cfg;
    int64_t D = k->d_model, I = (int64_t)k->num_heads * k->d_kv, F = k->d_ff;
    compare_grad(c, g->shared, k->vocab_size * D, "shared.weight", 0);
    compare_grad(c, g->shared, k->vocab_size * D, "encoder.embed_tokens.weight", 0);
    for (int i = 0; i < k->num_layers; i++) {
        const hl_umt5_layer_grads *l = &g->layers[i];
        compare_grad(c, l->ln_attn, D, "encoder.block.%d.layer.0.layer_norm.weight", i);
        compare_grad(c, l->q, I * D, "encoder.block.%d.layer.0.SelfAttention.q.weight", i);
        compare_grad(c, l->k, I * D, "encoder.block.%d.layer.0.SelfAttention.k.weight", i);
        compare_grad(c, l->v, I * D, "encoder.block.%d.layer.0.SelfAttention.v.weight", i);
        compare_grad(c, l->o, D * I, "encoder.block.%d.layer.0.SelfAttention.o.weight", i);
        compare_grad(c, l->rel_bias, (int64_t)k->num_buckets * k->num_heads,
                     "encoder.block.%d.layer.0.SelfAttention.relative_attention_bias.weight", i);
        compare_grad(c, l->ln_ffn, D, "encoder.block.%d.layer.1.layer_norm.weight", i);
        compare_grad(c, l->wi_0, F * D, "encoder.block.%d.layer.1.DenseReluDense.wi_0.weight", i);
        compare_grad(c, l->wi_1, F * D, "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight", i);
        compare_grad(c, l->wo, D * F, "encoder.block.%d.layer.1.DenseReluDense.wo.weight", i);
    }
    compare_grad(c, g->final_ln, D, "encoder.final_layer_norm.weight", 0);
}

static void check_file(const hl_ctx *ctx, const hl_umt5 *m, grad_check *c) {
    const hl_st_tensor *t = hl_st_find(c->st, "input_ids");
    if (!t || t->ndim != 2) {
        c->report(c->user, c->file, "input_ids", INFINITY, 0.0, 0);
        return;
    }
    int B = (int)t->shape[0];
    int64_t L = t->shape[1], D = m->cfg.d_model, n = (int64_t)B * L * D;
    int64_t *ids = NULL, *mask = NULL;
    float *R = NULL, *loss_ref = NULL, *out = malloc((size_t)n * sizeof *out);
    hl_umt5_tape *tape = NULL;
    hl_umt5_grads *g = NULL;
    hl_status s = out ? hl_st_read_i64(c->st, "input_ids", B * L, &ids, ctx->err)
                      : hl_fail(ctx->err, HELIOS_ERR_OOM, "out of memory");
    if (s == HL_OK && hl_st_find(c->st, "attention_mask"))
        s = hl_st_read_i64(c->st, "attention_mask", B * L, &mask, ctx->err);
    if (s == HL_OK) s = hl_st_read_f32(c->st, "R", n, &R, ctx->err);
    if (s == HL_OK) s = hl_st_read_f32(c->st, "loss", 1, &loss_ref, ctx->err);
    if (s == HL_OK) s = hl_umt5_forward_train(ctx, m, B, L, ids, mask, out, &tape);
    if (s == HL_OK) s = hl_umt5_grads_new(m, &g, ctx->err);
    if (s == HL_OK) s = hl_umt5_backward(ctx, m, tape, R, g); /* dL/dout = R */
    if (s != HL_OK) {
        c->report(c->user, c->file, "backward", INFINITY, 0.0, 0);
    } else {
        compare(c, "output", out, n, 1e-4, 1.0);
        double loss = 0.0;
        for (int64_t i = 0; i < n; i++) loss += (double)out[i] * R[i];
        c->report(c->user, c->file, "loss", fabs(loss - *loss_ref), 1e-4 * fabs(*loss_ref), 0);
        compare_grads(c, m, g);
    }
    hl_umt5_grads_free(g);
    hl_umt5_tape_free(tape);
    free(ids), free(mask), free(R), free(loss_ref), free(out);
}

hl_status hl_umt5_grad_verify(const hl_ctx *ctx, const char *dir, const char *file,
                              hl_report_fn report, void *user) {
    char cfg[4096], w[4096], vec[4096];
    snprintf(cfg, sizeof cfg, "%s/umt5_config.json", dir);
    snprintf(w, sizeof w, "%s/umt5_weights_f32.safetensors", dir);
    snprintf(vec, sizeof vec, "%s/%s", dir, file);
    hl_umt5 *m = NULL;
    hl_safetensors *st = NULL;
    HL_TRY(hl_umt5_load(cfg, w, &m, ctx->err));
    hl_status s = hl_st_open(vec, &st, ctx->err);
    if (s == HL_OK) {
        grad_check c = {st, file, report, user};
        check_file(ctx, m, &c);
    }
    hl_st_close(st);
    hl_umt5_free(m);
    return s;
}
