/* Building a model's name -> field table (io/weights.h) row by row, with printf-style names:
 *
 *   hl_binder b;  hl_binder_init(&b, 64);
 *   hl_binder_tensor(&b, &blk->to_q_w, 2, (int64_t[]){D, D}, "blocks.%d.attn1.to_q.weight", i);
 *   hl_binder_f32(&b, &blk->norm_q, 1, (int64_t[]){D}, "blocks.%d.attn1.norm_q.weight", i);
 *   st = hl_binder_bind(&b, weights, ignore, &model->small, err);
 *   hl_binder_free(&b);
 *
 * A tensor row binds a view into the checkpoint's mapping (a GEMM operand, used as stored); an
 * f32 row is for small vectors read element-wise (norm gains, tables): after binding they are
 * converted to float32 into one allocation handed to the caller. */
#ifndef HL_BINDER_H
#define HL_BINDER_H

#include "io/weights.h"

typedef struct hl_binder_f32_row {
    hl_tensor view;
    const float **dst;
} hl_binder_f32_row;

typedef struct hl_binder {
    hl_bind *rows;
    size_t n, cap;
    hl_binder_f32_row *small;
    size_t n_small;
    int overflow; /* more rows than cap: reported by hl_binder_bind */
} hl_binder;

hl_status hl_binder_init(hl_binder *b, size_t cap, hl_error *err);
void hl_binder_free(hl_binder *b);

void hl_binder_tensor(hl_binder *b, hl_tensor *dst, int ndim, const int64_t *shape, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));
void hl_binder_f32(hl_binder *b, const float **dst, int ndim, const int64_t *shape, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

/* Binds every row (see hl_weights_bind; `ignore` lists names that may stay unused), then makes
 * the float32 copies in one malloc'ed block returned in *small (the caller frees it). */
hl_status hl_binder_bind(hl_binder *b, hl_weights *w, const char *const *ignore, float **small,
                         hl_error *err);

#endif
