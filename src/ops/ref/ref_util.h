#ifndef HL_REF_UTIL_H
#define HL_REF_UTIL_H

#include "core/tensor.h"

/* Element i of a float-typed tensor's flat data, as float32 (F32/BF16/F16). */
static inline float hl_ref_load(const hl_tensor *t, int64_t i) {
    float f = 0.0f;
    hl_convert_to_f32(t->dtype, (const char *)t->data + (size_t)i * hl_dtype_size(t->dtype), &f, 1);
    return f;
}

#endif
