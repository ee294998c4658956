/* Trainable parameters as one flat float32 buffer.
 *
 * A model's loader describes its weights by a name -> field table (io/binder.h). For training the
 * same table lays every parameter out, in row order, in one float32 buffer (llm.c's "one owner per
 * byte"): the optimizer, the gradient buffer, the EMA and the checkpoint writer all walk that
 * buffer and never need to know the model.
 *
 *   hl_params layout;  hl_params_from_binder(&b, &layout, err);      // names, shapes, offsets
 *   float *w = calloc(layout.total, sizeof *w);
 *   hl_params_load(&layout, w, weights, err);                         // or a random init
 *   hl_binder_bind_flat(&b, &layout, w, err);                         // the model's fields -> w
 *
 * Binding the same table to a second buffer gives a "gradient view": a model struct whose fields
 * point into the gradient buffer, for a backward that accumulates into them by name. */
#ifndef HL_TRAIN_PARAMS_H
#define HL_TRAIN_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "io/binder.h"
#include "io/weights.h"

typedef struct hl_param {
    char name[160];
    int ndim;
    int64_t shape[HL_MAX_DIMS];
    int64_t offset, numel; /* in floats, into the flat buffer */
} hl_param;

/* A layout of one flat f32 buffer: p[i] occupies [p[i].offset, p[i].offset + p[i].numel), in row
 * order, back to back, so the rows tile [0, total) exactly. */
typedef struct hl_params {
    hl_param *p;
    size_t n;
    int64_t total;
} hl_params;

/* The layout of every row of b (tensor rows and f32 rows, in the order they were added). Fails on
 * a binder that overflowed, a duplicate name or an element count that overflows int64. */
hl_status hl_params_from_binder(const hl_binder *b, hl_params *out, hl_error *err);
void hl_params_free(hl_params *p);
/* The parameter called name, or NULL (linear search). */
const hl_param *hl_params_find(const hl_params *p, const char *name);

/* Points every row of b into data laid out as `layout` (no copies): tensor rows become contiguous
 * HL_F32 views, f32 rows' pointers point at their slice. b must list the same names and shapes in
 * the same order as layout (checked; a mismatch names the row). */
hl_status hl_binder_bind_flat(hl_binder *b, const hl_params *layout, float *data, hl_error *err);

/* Fills data (layout.total floats) from a checkpoint: every name of the layout must be present with
 * its shape and a float dtype (F32/BF16/F16/F64, converted to float32). All missing names and
 * mismatches are reported together, each with the file and tensor. Tensors of w the layout does
 * not name are ignored. */
hl_status hl_params_load(const hl_params *layout, float *data, hl_weights *w, hl_error *err);

/* Mixed precision (f32 master weights, bf16 compute): shadow (layout.total values at the
 * layout's offsets) = data rounded to bf16 (round to nearest even), on every thread. */
void hl_params_to_bf16(const hl_params *layout, const float *data, hl_bf16 *shadow);

#endif
