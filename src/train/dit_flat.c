#include "train/dit_flat.h"

#include "core/parallel.h"
#include "io/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A struct with m->cfg and m->blocks allocated, and its binder rows. */
static hl_status new_shell(const hl_dit_config *c, hl_dit **out, hl_binder *b, hl_error *err) {
    *out = NULL;
    if (c->num_layers < 0 || c->num_layers > 100000)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "transformer: %d layers", c->num_layers);
    hl_dit *m = calloc(1, sizeof *m);
    if (!m) return hl_fail(err, HELIOS_ERR_OOM, "transformer: out of memory");
    m->cfg = *c;
    m->blocks = calloc((size_t)c->num_layers + 1, sizeof *m->blocks);
    hl_status st = m->blocks ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "transformer: out of memory");
    if (st == HL_OK) st = hl_binder_init(b, hl_dit_binder_capacity(c), err);
    if (st != HL_OK) {
        hl_dit_free(m);
        return st;
    }
    hl_dit_binder_rows(b, m);
    *out = m;
    return HL_OK;
}

hl_status hl_dit_params_layout(const hl_dit_config *c, hl_params *out, hl_error *err) {
    memset(out, 0, sizeof *out);
    hl_dit *m;
    hl_binder b;
    HL_TRY(new_shell(c, &m, &b, err));
    hl_status st = hl_params_from_binder(&b, out, err);
    hl_binder_free(&b);
    hl_dit_free(m);
    return st;
}

/* The transformer bound to data; with shadow, its GEMM operands (the binder's tensor rows, not
 * its f32 rows) re-pointed to bf16 views of shadow at the same offsets. */
static hl_status new_flat(const hl_dit_config *c, const hl_params *layout, float *data,
                          hl_bf16 *shadow, hl_dit **out, hl_error *err) {
    hl_dit *m;
    hl_binder b;
    HL_TRY(new_shell(c, &m, &b, err));
    hl_status st = hl_binder_bind_flat(&b, layout, data, err);
    for (size_t i = 0; st == HL_OK && shadow && i < b.n; i++) {
        int small = 0; /* an f32 row: its view stays on the master */
        for (size_t k = 0; k < b.n_small && !small; k++) small = b.rows[i].dst == &b.small[k].view;
        const hl_param *q = &layout->p[i];
        if (!small) *b.rows[i].dst = hl_tensor_make(shadow + q->offset, HL_BF16, q->ndim, q->shape);
    }
    hl_binder_free(&b);
    if (st != HL_OK) {
        hl_error_prefix(err, "transformer");
        hl_dit_free(m);
        return st;
    }
    *out = m;
    return HL_OK;
}

hl_status hl_dit_new_flat(const hl_dit_config *c, const hl_params *layout, float *data,
                          hl_dit **out, hl_error *err) {
    return new_flat(c, layout, data, NULL, out, err);
}

hl_status hl_dit_new_flat_bf16(const hl_dit_config *c, const hl_params *layout, float *data,
                               hl_bf16 *shadow, hl_dit **out, hl_error *err) {
    return new_flat(c, layout, data, shadow, out, err);
}

hl_status hl_dit_flat_load(const char *config_path, const char *weights_path, hl_dit_flat *f,
                           hl_error *err) {
    memset(f, 0, sizeof *f);
    hl_json *j = NULL;
    HL_TRY(hl_json_load_file(config_path, &j, err));
    hl_status st = hl_dit_config_parse(j, &f->cfg, err);
    hl_json_free(j);
    if (st != HL_OK) {
        hl_error_prefix(err, "%s", config_path);
        return st;
    }
    HL_TRY(hl_dit_params_layout(&f->cfg, &f->layout, err));
    f->w = calloc((size_t)f->layout.total + 1, sizeof *f->w);
    f->g = calloc((size_t)f->layout.total + 1, sizeof *f->g);
    if (!f->w || !f->g) return hl_fail(err, HELIOS_ERR_OOM, "transformer: out of memory");
    hl_weights *wt = NULL;
    HL_TRY(hl_weights_open(weights_path, &wt, err));
    st = hl_params_load(&f->layout, f->w, wt, err);
    hl_weights_close(wt);
    HL_TRY(st);
    HL_TRY(hl_dit_new_flat(&f->cfg, &f->layout, f->w, &f->m, err));
    return hl_dit_new_flat(&f->cfg, &f->layout, f->g, &f->grad, err);
}

void hl_dit_flat_free(hl_dit_flat *f) {
    hl_dit_free(f->m);
    hl_dit_free(f->grad);
    free(f->w);
    free(f->g);
    hl_params_free(&f->layout);
    memset(f, 0, sizeof *f);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static void fill(float *x, int64_t n, float v) {
    for (int64_t i = 0; i < n; i++) x[i] = v;
}

void hl_dit_params_init_random(const hl_dit_config *c, const hl_params *layout, float *data,
                               hl_rng *rng) {
    for (size_t i = 0; i < layout->n; i++) {
        const hl_param *q = &layout->p[i];
        const char *name = q->name;
        float *x = data + q->offset;
        int64_t n = q->numel;
        if (ends_with(name, "scale_shift_table")) {
            hl_rng_randn_f32(rng, x, n);
            float s = (float)(1.0 / sqrt((double)c->dim));
            for (int64_t k = 0; k < n; k++) x[k] *= s;
        } else if (ends_with(name, "history_key_scale") || ends_with(name, "norm_q.weight") ||
                   ends_with(name, "norm_k.weight") || ends_with(name, "norm2.weight")) {
            fill(x, n, 1.0f);
        } else if (ends_with(name, ".bias") || !strcmp(name, "proj_out.weight")) {
            fill(x, n, 0.0f);
        } else if (!strncmp(name, "condition_embedder.time_embedder.", 33) ||
                   !strncmp(name, "condition_embedder.text_embedder.", 33)) {
            hl_rng_randn_f32(rng, x, n);
            for (int64_t k = 0; k < n; k++) x[k] *= 0.02f;
        } else { /* a linear or patch-embedding weight [out, in, kernel...] */
            int64_t fan_out = q->ndim > 0 && q->shape[0] > 0 ? q->shape[0] : 1;
            int64_t fan_in = n / fan_out;
            float bound = (float)sqrt(6.0 / (double)(fan_in + fan_out));
            hl_rng_rand_f32(rng, x, n);
            for (int64_t k = 0; k < n; k++) x[k] = (2.0f * x[k] - 1.0f) * bound;
        }
    }
}
