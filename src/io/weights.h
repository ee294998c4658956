/* A checkpoint's weights: one .safetensors file, a sharded set through
 * "*.safetensors.index.json" ({"weight_map": {"tensor name": "shard file"}}), or a folder holding
 * either (diffusers layout: diffusion_pytorch_model.safetensors[.index.json], model.safetensors...).
 * Binding copies nothing: a bound hl_tensor points into the shard's mapping. */
#ifndef HL_WEIGHTS_H
#define HL_WEIGHTS_H

#include <stdbool.h>

#include "io/safetensors.h"

typedef struct hl_weights {
    char *path; /* what was opened */
    size_t n_files;
    hl_safetensors **files;
    unsigned char **used; /* per file, per tensor: bound by some table */
} hl_weights;

hl_status hl_weights_open(const char *path, hl_weights **out, hl_error *err);
void hl_weights_close(hl_weights *w);

/* Finds a tensor across shards; *file (optional) receives its shard's path. */
const hl_st_tensor *hl_weights_find(const hl_weights *w, const char *name, const char **file);

/* Bit masks of accepted dtypes for a binding. */
#define HL_DT(t) (1u << (t))
#define HL_DT_FLOAT (HL_DT(HL_F32) | HL_DT(HL_BF16))

/* One row of a name -> field table. */
typedef struct hl_bind {
    char name[160];
    hl_tensor *dst; /* filled with a view of the tensor */
    int ndim;
    int64_t shape[HL_MAX_DIMS]; /* expected shape */
    unsigned dtypes;            /* accepted dtypes (HL_DT bits) */
    bool optional;              /* absent is fine (dst->data stays NULL) */
} hl_bind;

/* Binds every row: checks presence, shape and dtype. All problems are reported together in err
 * (missing names, shape and dtype mismatches, each with the file and tensor name), returning the
 * first failing status. Tensors of the checkpoint that no row bound and whose name does not start
 * with one of `ignore` (NULL-terminated list of prefixes/substrings, may be NULL) are "unused":
 * they are logged as a warning and counted in *n_unused (optional). */
hl_status hl_weights_bind(hl_weights *w, const hl_bind *table, size_t n, const char *const *ignore,
                          size_t *n_unused, hl_error *err);

#endif
