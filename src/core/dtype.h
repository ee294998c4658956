/* Element types, as the safetensors format names them, and the float conversions. */
#ifndef HL_DTYPE_H
#define HL_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum hl_dtype {
    HL_F32 = 0,
    HL_BF16,
    HL_F16,
    HL_F64,
    HL_I64,
    HL_I32,
    HL_I16,
    HL_I8,
    HL_U64,
    HL_U32,
    HL_U16,
    HL_U8,
    HL_BOOL,
    HL_F8_E4M3,
    HL_F8_E5M2,
    HL_DTYPE_COUNT
} hl_dtype;

size_t hl_dtype_size(hl_dtype t);
/* safetensors spelling ("F32", "BF16", ...). */
const char *hl_dtype_name(hl_dtype t);
/* Parses a safetensors dtype name of length n; returns 0 and sets *out, or -1 if unknown. */
int hl_dtype_parse(const char *name, size_t n, hl_dtype *out);

typedef uint16_t hl_bf16;
typedef uint16_t hl_f16;

static inline float hl_bf16_to_f32(hl_bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, as torch's .to(torch.bfloat16); NaN stays NaN. */
static inline hl_bf16 hl_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (hl_bf16)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (hl_bf16)(u >> 16);
}

float hl_f16_to_f32(hl_f16 h);
hl_f16 hl_f32_to_f16(float f);

/* Converts n elements of a float type (F32/BF16/F16/F64) to float32. Returns -1 for other types. */
int hl_convert_to_f32(hl_dtype t, const void *src, float *dst, size_t n);

#endif
