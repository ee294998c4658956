#include "train/umt5_flat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

hl_status hl_umt5_flat_new(const hl_umt5_config *cfg, hl_umt5_flat *f, hl_error *err) {
    memset(f, 0, sizeof *f);
    f->m.cfg = *cfg;
    HL_TRY(hl_umt5_binder(&f->m, &f->b, err));
    hl_status st = hl_params_from_binder(&f->b, &f->layout, err);
    if (st != HL_OK) hl_umt5_flat_free(f);
    return st;
}

void hl_umt5_flat_free(hl_umt5_flat *f) {
    hl_umt5_grads_free(f->grads);
    hl_binder_free(&f->b);
    hl_params_free(&f->layout);
    free(f->m.layers);
    memset(f, 0, sizeof *f);
}

hl_status hl_umt5_flat_bind(hl_umt5_flat *f, const float *w, float *g, hl_error *err) {
    HL_TRY(hl_binder_bind_flat(&f->b, &f->layout, (float *)w, err));
    hl_umt5_grads *gr;
    HL_TRY(hl_umt5_grads_wrap(&f->m, g, &gr, err));
    if (gr->numel != f->layout.total) { /* the two tables must tile the same buffer */
        hl_umt5_grads_free(gr);
        return hl_fail(err, HELIOS_ERR_INTERNAL, "umt5: %lld gradients for a layout of %lld",
                       (long long)gr->numel, (long long)f->layout.total);
    }
    hl_umt5_grads_free(f->grads);
    f->grads = gr;
    f->bound_w = w;
    f->bound_g = g;
    return HL_OK;
}

static bool ends_with(const char *s, const char *t) {
    size_t a = strlen(s), b = strlen(t);
    return a >= b && !strcmp(s + a - b, t);
}

/* The standard deviation of parameter name under T5's _init_weights; 0: a norm gain (ones). */
static double init_std(const hl_umt5_config *c, const char *name) {
    double D = c->d_model, dkv = c->d_kv, H = c->num_heads, F = c->d_ff;
    if (ends_with(name, "layer_norm.weight")) return 0;
    if (!strcmp(name, "shared.weight")) return 1.0;
    if (ends_with(name, ".q.weight")) return 1.0 / sqrt(D * dkv);
    if (ends_with(name, ".o.weight")) return 1.0 / sqrt(H * dkv);
    if (ends_with(name, ".wo.weight")) return 1.0 / sqrt(F);
    return 1.0 / sqrt(D); /* k, v, relative_attention_bias, wi_0, wi_1 */
}

void hl_umt5_params_init_random(const hl_umt5_config *cfg, const hl_params *layout, float *data,
                                hl_rng *rng) {
    for (size_t i = 0; i < layout->n; i++) {
        const hl_param *p = &layout->p[i];
        float *d = data + p->offset;
        double std = init_std(cfg, p->name);
        if (std == 0) {
            for (int64_t k = 0; k < p->numel; k++) d[k] = 1.0f;
            continue;
        }
        hl_rng_randn_f32(rng, d, p->numel);
        for (int64_t k = 0; k < p->numel; k++) d[k] = (float)(d[k] * std);
    }
}
