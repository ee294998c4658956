/* Writing a .safetensors file (latents, checkpoints). The file is written to "<path>.part" and
 * renamed into place when complete, so a reader never sees half a file under the final name. */
#ifndef HL_SAFETENSORS_WRITE_H
#define HL_SAFETENSORS_WRITE_H

#include "core/error.h"
#include "core/tensor.h"

typedef struct hl_st_entry {
    const char *name;
    hl_tensor t; /* contiguous */
} hl_st_entry;

/* metadata: NULL or pairs {key0, value0, key1, value1, ..., NULL} of strings. */
hl_status hl_st_write(const char *path, const hl_st_entry *entries, size_t n,
                      const char *const *metadata, hl_error *err);

#endif
