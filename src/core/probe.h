/* Forward probes, the C analogue of PyTorch forward hooks: a model calls hl_probe_emit with named
 * activations (rows x cols, row-major) at the points where the reference vectors record them,
 * e.g. "patch_embedding.out0" or "encoder.hidden_states.1". For tests and debugging; a NULL probe
 * costs one branch. */
#ifndef HL_PROBE_H
#define HL_PROBE_H

#include <stdint.h>

typedef void (*hl_probe_fn)(void *user, const char *name, const float *x, int64_t rows,
                            int64_t cols);

typedef struct hl_probe {
    hl_probe_fn fn;
    void *user;
} hl_probe;

/* Calls the probe (if any) with the name formatted like printf. */
void hl_probe_emit(const hl_probe *p, const float *x, int64_t rows, int64_t cols, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

#endif
