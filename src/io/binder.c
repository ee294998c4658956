#include "io/binder.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hl_status hl_binder_init(hl_binder *b, size_t cap, hl_error *err) {
    memset(b, 0, sizeof *b);
    b->rows = calloc(cap ? cap : 1, sizeof *b->rows);
    b->small = calloc(cap ? cap : 1, sizeof *b->small);
    b->cap = cap;
    if (!b->rows || !b->small) {
        hl_binder_free(b);
        return hl_fail(err, HELIOS_ERR_OOM, "out of memory for a weight table of %zu rows", cap);
    }
    return HL_OK;
}

void hl_binder_free(hl_binder *b) {
    free(b->rows);
    free(b->small);
    memset(b, 0, sizeof *b);
}

static hl_bind *add_row(hl_binder *b, hl_tensor *dst, int ndim, const int64_t *shape,
                        const char *fmt, va_list ap) {
    if (b->n == b->cap || ndim > HL_MAX_DIMS) {
        b->overflow = 1;
        return NULL;
    }
    hl_bind *r = &b->rows[b->n++];
    memset(r, 0, sizeof *r);
    vsnprintf(r->name, sizeof r->name, fmt, ap);
    r->dst = dst;
    r->ndim = ndim;
    memcpy(r->shape, shape, (size_t)ndim * sizeof *shape);
    r->dtypes = HL_DT_FLOAT;
    return r;
}

void hl_binder_tensor(hl_binder *b, hl_tensor *dst, int ndim, const int64_t *shape, const char *fmt,
                      ...) {
    va_list ap;
    va_start(ap, fmt);
    add_row(b, dst, ndim, shape, fmt, ap);
    va_end(ap);
}

void hl_binder_f32(hl_binder *b, const float **dst, int ndim, const int64_t *shape, const char *fmt,
                   ...) {
    if (b->n_small == b->cap) {
        b->overflow = 1;
        return;
    }
    hl_binder_f32_row *sv = &b->small[b->n_small];
    va_list ap;
    va_start(ap, fmt);
    if (add_row(b, &sv->view, ndim, shape, fmt, ap)) {
        sv->dst = dst;
        b->n_small++;
    }
    va_end(ap);
}

hl_status hl_binder_bind(hl_binder *b, hl_weights *w, const char *const *ignore, float **small,
                         hl_error *err) {
    *small = NULL;
    if (b->overflow)
        return hl_fail(err, HELIOS_ERR_INTERNAL, "weight table larger than its capacity %zu",
                       b->cap);
    HL_TRY(hl_weights_bind(w, b->rows, b->n, ignore, NULL, err));
    size_t total = 0;
    for (size_t i = 0; i < b->n_small; i++) total += (size_t)hl_tensor_numel(&b->small[i].view);
    float *p = *small = malloc((total ? total : 1) * sizeof(float));
    if (!p) return hl_fail(err, HELIOS_ERR_OOM, "out of memory for %zu float32 weights", total);
    for (size_t i = 0; i < b->n_small; i++) {
        size_t k = (size_t)hl_tensor_numel(&b->small[i].view);
        hl_convert_to_f32(b->small[i].view.dtype, b->small[i].view.data, p, k);
        *b->small[i].dst = p;
        p += k;
    }
    return HL_OK;
}
