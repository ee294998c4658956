#include "core/dtype.h"

static const struct {
    const char *name;
    size_t size;
} k_dtypes[HL_DTYPE_COUNT] = {
    [HL_F32] = {"F32", 4},   [HL_BF16] = {"BF16", 2},       [HL_F16] = {"F16", 2},
    [HL_F64] = {"F64", 8},   [HL_I64] = {"I64", 8},         [HL_I32] = {"I32", 4},
    [HL_I16] = {"I16", 2},   [HL_I8] = {"I8", 1},           [HL_U64] = {"U64", 8},
    [HL_U32] = {"U32", 4},   [HL_U16] = {"U16", 2},         [HL_U8] = {"U8", 1},
    [HL_BOOL] = {"BOOL", 1}, [HL_F8_E4M3] = {"F8_E4M3", 1}, [HL_F8_E5M2] = {"F8_E5M2", 1},
};

size_t hl_dtype_size(hl_dtype t) { return (unsigned)t < HL_DTYPE_COUNT ? k_dtypes[t].size : 0; }

const char *hl_dtype_name(hl_dtype t) {
    return (unsigned)t < HL_DTYPE_COUNT ? k_dtypes[t].name : "?";
}

int hl_dtype_parse(const char *name, size_t n, hl_dtype *out) {
    for (int i = 0; i < HL_DTYPE_COUNT; i++) {
        if (strlen(k_dtypes[i].name) == n && memcmp(k_dtypes[i].name, name, n) == 0) {
            *out = (hl_dtype)i;
            return 0;
        }
    }
    return -1;
}

float hl_f16_to_f32(hl_f16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            u = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

hl_f16 hl_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t man = u & 0x7fffff;
    if (((u >> 23) & 0xff) == 0xff) return (hl_f16)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (hl_f16)(sign | 0x7c00);
    if (exp <= 0) { /* subnormal or zero, round to nearest even */
        if (exp < -10) return (hl_f16)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = 1u << (shift - 1);
        uint32_t r = man >> shift, rem = man & ((1u << shift) - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (hl_f16)(sign | r);
    }
    uint32_t r = man >> 13, rem = man & 0x1fff;
    uint32_t h = sign | ((uint32_t)exp << 10) | r;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) h++; /* carries into exponent correctly */
    return (hl_f16)h;
}

int hl_convert_to_f32(hl_dtype t, const void *src, float *dst, size_t n) {
    const unsigned char *p = src;
    switch (t) {
    case HL_F32: memcpy(dst, src, n * 4); return 0;
    case HL_BF16:
        for (size_t i = 0; i < n; i++) {
            hl_bf16 h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = hl_bf16_to_f32(h);
        }
        return 0;
    case HL_F16:
        for (size_t i = 0; i < n; i++) {
            hl_f16 h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = hl_f16_to_f32(h);
        }
        return 0;
    case HL_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default: return -1;
    }
}
