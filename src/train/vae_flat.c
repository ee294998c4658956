#include "train/vae_flat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill_zero(void *user, const char *name, bool gain, hl_tensor *t) {
    (void)user, (void)name, (void)gain;
    memset(t->data, 0, (size_t)hl_tensor_numel(t) * hl_dtype_size(t->dtype));
}

hl_status hl_vae_params_layout(const hl_vae *v, hl_params *out, hl_error *err) {
    memset(out, 0, sizeof *out);
    out->p = calloc((size_t)v->n_params + 1, sizeof *out->p);
    if (!out->p) return hl_fail(err, HELIOS_ERR_OOM, "VAE: out of memory for the layout");
    int64_t off = 0;
    for (int i = 0; i < v->n_params; i++) {
        const hl_vae_param *q = &v->params[i];
        hl_param *p = &out->p[i];
        snprintf(p->name, sizeof p->name, "%s", q->name);
        p->ndim = q->ndim;
        memcpy(p->shape, q->shape, sizeof p->shape);
        p->offset = off;
        p->numel = q->numel;
        off += q->numel;
    }
    out->n = (size_t)v->n_params;
    out->total = off;
    return HL_OK;
}

hl_status hl_vae_flat_new(const hl_vae_config *cfg, hl_vae_flat *f, hl_error *err) {
    memset(f, 0, sizeof *f);
    f->cfg = *cfg;
    HL_TRY(hl_vae_create_filled(cfg, HL_F32, true, fill_zero, NULL, &f->m, err));
    hl_status st = hl_vae_params_layout(f->m, &f->layout, err);
    if (st != HL_OK) hl_vae_flat_free(f);
    return st;
}

void hl_vae_flat_free(hl_vae_flat *f) {
    hl_vae_grads_free(f->grads);
    hl_vae_free(f->m);
    hl_params_free(&f->layout);
    memset(f, 0, sizeof *f);
}

hl_status hl_vae_flat_bind(hl_vae_flat *f, const float *w, float *g, hl_error *err) {
    return hl_vae_flat_bind_bf16(f, w, NULL, g, err);
}

hl_status hl_vae_flat_bind_bf16(hl_vae_flat *f, const float *w, const hl_bf16 *w16, float *g,
                                hl_error *err) {
    hl_vae *v = f->m;
    if ((size_t)v->n_params != f->layout.n)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "VAE: layout of %zu rows for %d parameters",
                       f->layout.n, v->n_params);
    float **bufs = calloc((size_t)v->n_params + 1, sizeof *bufs);
    if (!bufs) return hl_fail(err, HELIOS_ERR_OOM, "VAE: out of memory");
    for (int i = 0; i < v->n_params; i++) {
        const hl_vae_param *q = &v->params[i];
        const hl_param *p = &f->layout.p[i];
        if (strcmp(q->name, p->name) || q->numel != p->numel) {
            free(bufs);
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "VAE: layout row %d is %s, model has %s", i,
                           p->name, q->name);
        }
        float *slot = (float *)w + p->offset;
        if (q->gain) *(const float **)q->field = slot;
        else if (w16 && q->ndim >= 2) /* a conv / attention weight: its bf16 copy */
            *(hl_tensor *)q->field = hl_tensor_make((void *)(w16 + p->offset), HL_BF16, q->ndim,
                                                    q->shape);
        else *(hl_tensor *)q->field = hl_tensor_make(slot, HL_F32, q->ndim, q->shape);
        bufs[i] = g + p->offset;
    }
    hl_vae_grads *gr;
    hl_status st = hl_vae_grads_wrap(v, bufs, &gr, err);
    free(bufs);
    if (st != HL_OK) return st;
    hl_vae_grads_free(f->grads);
    f->grads = gr;
    /* the placeholder weights of hl_vae_flat_new: nothing points at them any more */
    for (size_t i = 0; i < v->n_owned; i++) free(v->owned[i]);
    v->n_owned = 0;
    f->bound_w = w;
    f->bound_w16 = w16;
    f->bound_g = g;
    return HL_OK;
}

static bool ends_with(const char *s, const char *t) {
    size_t a = strlen(s), b = strlen(t);
    return a >= b && !strcmp(s + a - b, t);
}

void hl_vae_params_init_random(const hl_params *layout, float *data, hl_rng *rng) {
    for (size_t i = 0; i < layout->n; i++) {
        const hl_param *p = &layout->p[i];
        float *d = data + p->offset;
        if (ends_with(p->name, ".gamma")) {
            for (int64_t k = 0; k < p->numel; k++) d[k] = 1.0f;
        } else if (ends_with(p->name, ".bias") || p->ndim < 2) {
            memset(d, 0, (size_t)p->numel * sizeof *d);
        } else {
            int64_t fan_in = p->numel / p->shape[0];
            float bound = sqrtf(6.0f / (float)(fan_in > 0 ? fan_in : 1));
            hl_rng_rand_f32(rng, d, p->numel);
            for (int64_t k = 0; k < p->numel; k++) d[k] = (2.0f * d[k] - 1.0f) * bound;
        }
    }
}

hl_status hl_vae_params_from_model(const hl_vae *v, const hl_params *layout, float *data,
                                   hl_error *err) {
    if ((size_t)v->n_params != layout->n)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "VAE: %d parameters for a layout of %zu",
                       v->n_params, layout->n);
    for (int i = 0; i < v->n_params; i++) {
        const hl_vae_param *q = &v->params[i];
        const hl_param *p = &layout->p[i];
        if (strcmp(q->name, p->name) || q->numel != p->numel)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "VAE: parameter %s does not match %s",
                           q->name, p->name);
        float *d = data + p->offset;
        if (q->gain) {
            memcpy(d, *(const float *const *)q->field, (size_t)q->numel * sizeof *d);
        } else {
            const hl_tensor *t = q->field;
            if (hl_convert_to_f32(t->dtype, t->data, d, (size_t)q->numel))
                return hl_fail(err, HELIOS_ERR_DTYPE, "VAE: %s: cannot convert %s to float32",
                               q->name, hl_dtype_name(t->dtype));
        }
    }
    return HL_OK;
}
