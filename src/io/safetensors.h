/* safetensors reader. Format: 8-byte little-endian header length N, N bytes of JSON header
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "string", ...}}, then the data section (offsets are relative to it).
 *
 * Files are mmap'ed read-only; tensor data points into the mapping (no copy). Everything in the
 * header is validated before use: header length within the file, JSON well-formed, known dtype,
 * shape entries non-negative and their product (times the element size) free of overflow and
 * equal to end - begin, offsets inside the data section, no two tensors overlapping, names unique.
 * Any violation is HELIOS_ERR_FORMAT with the file and tensor named; nothing is read out of
 * bounds. */
#ifndef HL_SAFETENSORS_H
#define HL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "io/json.h"

typedef struct hl_st_tensor {
    const char *name;
    hl_dtype dtype;
    int ndim;
    int64_t shape[HL_MAX_DIMS];
    const void *data; /* inside the mapping; may be unaligned for its dtype (use memcpy) */
    size_t nbytes;
} hl_st_tensor;

typedef struct hl_safetensors {
    char *path;
    const unsigned char *base; /* whole file */
    size_t size;
    int mapped; /* 1: base is an mmap (unmapped on close) */
    size_t n;
    hl_st_tensor *tensors;   /* in header order */
    hl_json *header;         /* parsed header (owns names) */
    const hl_json *metadata; /* the "__metadata__" object or NULL */
} hl_safetensors;

/* Maps and validates a file. */
hl_status hl_st_open(const char *path, hl_safetensors **out, hl_error *err);
/* Validates a file already in memory (buf must outlive the result); what the fuzzer drives.
 * name is used in error messages. */
hl_status hl_st_parse(const void *buf, size_t size, const char *name, hl_safetensors **out,
                      hl_error *err);
void hl_st_close(hl_safetensors *st);

const hl_st_tensor *hl_st_find(const hl_safetensors *st, const char *name);
/* A contiguous hl_tensor view of t's data (const-ness is the caller's contract). */
hl_tensor hl_st_view(const hl_st_tensor *t);
/* A "__metadata__" string value, or NULL. */
const char *hl_st_meta(const hl_safetensors *st, const char *key);

/* Reads tensor `name` as float32 into a new malloc'ed array (F32/BF16/F16/F64 accepted), checking
 * that its numel is `numel` (pass -1 to skip). Errors name the file and tensor. */
hl_status hl_st_read_f32(const hl_safetensors *st, const char *name, int64_t numel, float **out,
                         hl_error *err);
/* The same for integer tensors (I64/I32/I16/I8/U8/...) into int64. */
hl_status hl_st_read_i64(const hl_safetensors *st, const char *name, int64_t numel, int64_t **out,
                         hl_error *err);

#endif
