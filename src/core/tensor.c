#include "core/tensor.h"

#include <stdio.h>

hl_tensor hl_tensor_make(void *data, hl_dtype dtype, int ndim, const int64_t *shape) {
    hl_tensor t = {.data = data, .dtype = dtype, .ndim = ndim};
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t.shape[i] = shape[i];
        t.stride[i] = s;
        s *= shape[i];
    }
    return t;
}

int64_t hl_tensor_numel(const hl_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t hl_tensor_nbytes(const hl_tensor *t) {
    return (size_t)hl_tensor_numel(t) * hl_dtype_size(t->dtype);
}

bool hl_tensor_is_contiguous(const hl_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

bool hl_tensor_shape_eq(const hl_tensor *t, int ndim, const int64_t *shape) {
    if (t->ndim != ndim) return false;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return false;
    return true;
}

const char *hl_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = 0;
    if (n == 0) return buf;
    buf[0] = '\0';
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}
