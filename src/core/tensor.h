/* A tensor is a non-owning view: data pointer, dtype, shape in PyTorch dim order and strides in
 * elements (not bytes). Whoever allocated the data (an mmap, an arena) owns it. */
#ifndef HL_TENSOR_H
#define HL_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

#include "core/dtype.h"

#define HL_MAX_DIMS 8

typedef struct hl_tensor {
    void *data;
    hl_dtype dtype;
    int ndim;
    int64_t shape[HL_MAX_DIMS];
    int64_t stride[HL_MAX_DIMS]; /* in elements */
} hl_tensor;

/* A contiguous view of data with the given shape (ndim <= HL_MAX_DIMS). */
hl_tensor hl_tensor_make(void *data, hl_dtype dtype, int ndim, const int64_t *shape);
int64_t hl_tensor_numel(const hl_tensor *t);
size_t hl_tensor_nbytes(const hl_tensor *t); /* numel * element size (for contiguous tensors) */
bool hl_tensor_is_contiguous(const hl_tensor *t);
bool hl_tensor_shape_eq(const hl_tensor *t, int ndim, const int64_t *shape);
/* "[1, 16, 3, 8, 8]" into buf; returns buf. */
const char *hl_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);

/* Multiplies a and b into *out; returns false on int64 overflow or a negative operand. */
static inline bool hl_mul_ok(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0) return false;
    return !__builtin_mul_overflow(a, b, out);
}

#endif
