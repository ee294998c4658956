/* The training tape (a stack of saved activations with a byte count) and the parameter
 * gradients of a VAE (one buffer per hl_vae_param). */
#include <stdlib.h>
#include <string.h>

#include "vae/train_internal.h"

/* ---- tape ------------------------------------------------------------------------------------ */

static void count(hl_vae_tape *tp, size_t add, size_t sub) {
    tp->bytes += add - sub;
    if (tp->bytes > tp->peak_bytes) tp->peak_bytes = tp->bytes;
}

hl_status hl_tape_alloc(hl_vae_tape *tp, hl_tact *a, int64_t T, int64_t H, int64_t W, int64_t C) {
    *a = (hl_tact){NULL, T, H, W, C};
    size_t n = (size_t)hl_tact_n(a);
    if (!(a->x = malloc((n ? n : 1) * sizeof(float))))
        return hl_fail(tp->ctx->err, HELIOS_ERR_OOM,
                       "VAE training: out of memory (activation of %zu floats)", n);
    count(tp, n * sizeof(float), 0);
    return HL_OK;
}

void hl_tape_release(hl_vae_tape *tp, hl_tact *a) {
    if (!a->x) return;
    count(tp, 0, (size_t)hl_tact_n(a) * sizeof(float));
    free(a->x);
    a->x = NULL;
}

hl_status hl_tape_push(hl_vae_tape *tp, hl_tact *a) {
    if (tp->n == tp->cap) {
        int cap = tp->cap ? 2 * tp->cap : 64;
        hl_tact *s = realloc(tp->stack, (size_t)cap * sizeof *s);
        if (!s) {
            hl_tape_release(tp, a);
            return hl_fail(tp->ctx->err, HELIOS_ERR_OOM, "VAE training: out of memory (tape)");
        }
        tp->stack = s, tp->cap = cap;
    }
    tp->stack[tp->n++] = *a;
    a->x = NULL;
    return HL_OK;
}

hl_status hl_tape_pop(hl_vae_tape *tp, hl_tact *a, int64_t C) {
    if (tp->n == 0 || tp->stack[tp->n - 1].C != C)
        return hl_fail(tp->ctx->err, HELIOS_ERR_INTERNAL,
                       "VAE training: the tape does not match the backward (%d entries left)",
                       tp->n);
    *a = tp->stack[--tp->n];
    return HL_OK;
}

void hl_vae_tape_free(hl_vae_tape *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) free(t->stack[i].x);
    free(t->stack);
    free(t);
}

size_t hl_vae_tape_peak_bytes(const hl_vae_tape *t) { return t ? t->peak_bytes : 0; }

/* ---- parameter gradients --------------------------------------------------------------------- */

hl_status hl_vae_grads_new(const hl_vae *v, hl_vae_grads **out, hl_error *err) {
    *out = NULL;
    hl_vae_grads *g = calloc(1, sizeof *g);
    if (g) g->g = calloc((size_t)(v->n_params ? v->n_params : 1), sizeof *g->g);
    for (int i = 0; g && g->g && i < v->n_params; i++)
        if (!(g->g[i] = calloc((size_t)v->params[i].numel, sizeof(float)))) {
            g->v = v;
            hl_vae_grads_free(g);
            g = NULL;
        }
    if (!g || !g->g) {
        if (g) free(g);
        return hl_fail(err, HELIOS_ERR_OOM, "VAE: out of memory for the gradients");
    }
    g->v = v;
    *out = g;
    return HL_OK;
}

hl_status hl_vae_grads_wrap(const hl_vae *v, float *const *bufs, hl_vae_grads **out,
                            hl_error *err) {
    *out = NULL;
    hl_vae_grads *g = calloc(1, sizeof *g);
    if (g) g->g = calloc((size_t)(v->n_params ? v->n_params : 1), sizeof *g->g);
    if (!g || !g->g) {
        free(g);
        return hl_fail(err, HELIOS_ERR_OOM, "VAE: out of memory for the gradients");
    }
    for (int i = 0; i < v->n_params; i++) g->g[i] = bufs[i];
    g->v = v;
    g->borrowed = true;
    *out = g;
    return HL_OK;
}

void hl_vae_grads_zero(hl_vae_grads *g) {
    for (int i = 0; i < g->v->n_params; i++)
        memset(g->g[i], 0, (size_t)g->v->params[i].numel * sizeof(float));
}

void hl_vae_grads_free(hl_vae_grads *g) {
    if (!g) return;
    for (int i = 0; !g->borrowed && g->g && i < g->v->n_params; i++) free(g->g[i]);
    free(g->g);
    free(g);
}

float *hl_vae_grad_by_name(hl_vae_grads *g, const char *name, int64_t *numel) {
    for (int i = 0; i < g->v->n_params; i++)
        if (!strcmp(g->v->params[i].name, name)) {
            if (numel) *numel = g->v->params[i].numel;
            return g->g[i];
        }
    return NULL;
}

float *hl_vae_grad_of(hl_vae_grads *g, const void *field) {
    for (int i = 0; g && i < g->v->n_params; i++)
        if (g->v->params[i].field == field) return g->g[i];
    return NULL;
}
