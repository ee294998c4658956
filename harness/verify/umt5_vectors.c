#include "verify/umt5_vectors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "text/umt5.h"
#include "verify/dit_vectors.h"

#define FILE_NAME "umt5_case.safetensors"

typedef struct umt5_check {
    const hl_ctx *ctx;
    const hl_umt5 *m;
    const hl_safetensors *st;
    hl_report_fn report;
    void *user;
    char prefix[16]; /* "A." */
} umt5_check;

/* Compares x with tensor prefix+name within 1e-4 · max(1, max|ref|) (README §7). */
static void compare(umt5_check *c, const char *name, const float *x, int64_t n) {
    char full[128];
    snprintf(full, sizeof full, "%s%s", c->prefix, name);
    float *ref = NULL;
    double err = INFINITY, ref_max = 0.0;
    if (hl_st_read_f32(c->st, full, n, &ref, NULL) == HL_OK)
        err = hl_max_abs_diff(x, ref, n, &ref_max);
    c->report(c->user, FILE_NAME, full, err, 1e-4 * fmax(1.0, ref_max), 0);
    free(ref);
}

static void on_hidden(void *user, const char *name, const float *x, int64_t rows, int64_t cols) {
    umt5_check *c = user;
    char full[128];
    snprintf(full, sizeof full, "%s%s", c->prefix, name);
    if (hl_st_find(c->st, full)) compare(c, name, x, rows * cols);
}

/* X.blockN.position_bias (1, H, L, L) for every N recorded. */
static void check_biases(umt5_check *c, int64_t L) {
    int64_t H = c->m->cfg.num_heads;
    float *bias = malloc((size_t)(H * L * L) * sizeof *bias);
    for (int layer = 0; bias && layer < c->m->cfg.num_layers; layer++) {
        char name[64], full[96];
        snprintf(name, sizeof name, "block%d.position_bias", layer);
        snprintf(full, sizeof full, "%s%s", c->prefix, name);
        if (!hl_st_find(c->st, full)) continue;
        if (hl_umt5_position_bias(c->m, layer, L, bias, NULL) == HL_OK)
            compare(c, name, bias, H * L * L);
    }
    free(bias);
}

/* X.relative_position_bucket (L, L) int64: exact. */
static void check_buckets(umt5_check *c, int64_t L) {
    char full[96];
    snprintf(full, sizeof full, "%srelative_position_bucket", c->prefix);
    int64_t *ref = NULL;
    if (!hl_st_find(c->st, full)) return;
    double wrong = INFINITY;
    if (hl_st_read_i64(c->st, full, L * L, &ref, NULL) == HL_OK) {
        wrong = 0;
        for (int64_t i = 0; i < L; i++)
            for (int64_t j = 0; j < L; j++)
                wrong += hl_umt5_bucket(j - i, c->m->cfg.num_buckets, c->m->cfg.max_distance) !=
                         ref[i * L + j];
    }
    c->report(c->user, FILE_NAME, full, wrong, 0.0, 0);
    free(ref);
}

/* One case X: X.input_ids (B, L) [+ X.attention_mask]. */
static void check_case(umt5_check *c) {
    char ids_name[64], mask_name[64];
    snprintf(ids_name, sizeof ids_name, "%sinput_ids", c->prefix);
    snprintf(mask_name, sizeof mask_name, "%sattention_mask", c->prefix);
    const hl_st_tensor *t = hl_st_find(c->st, ids_name);
    if (!t || t->ndim != 2) return;
    int B = (int)t->shape[0];
    int64_t L = t->shape[1], D = c->m->cfg.d_model;
    int64_t *ids = NULL, *mask = NULL;
    float *out = malloc((size_t)(B * L * D) * sizeof *out);
    hl_error err = {0};
    hl_probe probe = {on_hidden, c};
    hl_status s = out ? hl_st_read_i64(c->st, ids_name, B * L, &ids, &err) : HELIOS_ERR_OOM;
    if (s == HL_OK && hl_st_find(c->st, mask_name))
        s = hl_st_read_i64(c->st, mask_name, B * L, &mask, &err);
    if (s == HL_OK) s = hl_umt5_forward(c->ctx, c->m, B, L, ids, mask, &probe, out);
    if (s != HL_OK) {
        c->report(c->user, FILE_NAME, ids_name, INFINITY, 0.0, 0);
    } else {
        compare(c, "last_hidden_state", out, B * L * D);
        if (mask) {
            hl_umt5_zero_padding(B, L, D, mask, out);
            compare(c, "prompt_embeds_pipeline", out, B * L * D);
        }
        check_biases(c, L);
        check_buckets(c, L);
    }
    free(ids), free(mask), free(out);
}

hl_status hl_umt5_verify(const hl_ctx *ctx, const char *dir, hl_report_fn report, void *user) {
    char cfg[4096], w[4096], vec[4096];
    snprintf(cfg, sizeof cfg, "%s/umt5_config.json", dir);
    snprintf(w, sizeof w, "%s/umt5_weights_f32.safetensors", dir);
    snprintf(vec, sizeof vec, "%s/" FILE_NAME, dir);
    hl_umt5 *m = NULL;
    hl_safetensors *st = NULL;
    HL_TRY(hl_umt5_load(cfg, w, &m, ctx->err));
    hl_status s = hl_st_open(vec, &st, ctx->err);
    if (s == HL_OK) {
        umt5_check c = {ctx, m, st, report, user, ""};
        /* cases are the prefixes X of the tensors "X.input_ids" */
        for (size_t i = 0; i < st->n; i++) {
            const char *name = st->tensors[i].name, *dot = strchr(name, '.');
            if (!dot || strcmp(dot, ".input_ids") || (size_t)(dot - name) + 2 > sizeof c.prefix)
                continue;
            snprintf(c.prefix, sizeof c.prefix, "%.*s.", (int)(dot - name), name);
            check_case(&c);
        }
    }
    hl_st_close(st);
    hl_umt5_free(m);
    return s;
}
