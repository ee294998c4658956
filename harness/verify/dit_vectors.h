/* Reading the transformer reference vectors (shared/oracle layout, README §5): a case file holds
 * the forward() arguments under their diffusers names; the intermediates file holds activations
 * recorded by forward hooks. Used by `helios verify` and the tests. */
#ifndef HL_DIT_VECTORS_H
#define HL_DIT_VECTORS_H

#include "dit/dit.h"
#include "io/safetensors.h"

typedef struct hl_dit_case {
    helios_dit_input in;
    void *owned[16]; /* the arrays in points into */
    int n_owned;
} hl_dit_case;

/* Reads a case's inputs; sizes come from the tensors. */
hl_status hl_dit_case_read(const hl_safetensors *st, hl_dit_case *c, hl_error *err);
/* The same with other names for the noisy latents and the timestep (the training vectors store
 * them as sample0.hidden_states, sample0.timestep). */
hl_status hl_dit_case_read_named(const hl_safetensors *st, const char *hidden, const char *timestep,
                                 hl_dit_case *c, hl_error *err);
void hl_dit_case_free(hl_dit_case *c);
/* Number of floats of the forward's output for model m: B · C_out · T · H · W. */
int64_t hl_dit_case_out_numel(const hl_dit_case *c, const hl_dit *m);

/* Called once per compared activation. */
typedef void (*hl_dit_compare_fn)(void *user, const char *name, double max_abs, double ref_max);

/* Runs the forward on case c with probes and compares every activation the intermediates file
 * `st` records (converted to the reference layout). *n_compared counts them. */
hl_status hl_dit_check_intermediates(const hl_ctx *ctx, const hl_dit *m, const hl_dit_case *c,
                                     const hl_safetensors *st, hl_dit_compare_fn fn, void *user,
                                     int *n_compared);

/* Max |a - b| over n floats (NaN counts as infinitely far) and max |b| into *ref_max. */
double hl_max_abs_diff(const float *a, const float *b, int64_t n, double *ref_max);

#endif
