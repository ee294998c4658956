/* Where a generation's time went, for measurement (helios bench --only e2e): the pipeline adds
 * the wall time of each part as it runs. Not in helios.h: the split follows this engine's
 * internals (a prompt encoder, a sampler around transformer calls, a VAE), and the bench is the
 * one reader. */
#ifndef HL_API_GEN_TIMES_H
#define HL_API_GEN_TIMES_H

#include <stdint.h>

#include "helios.h"

typedef struct hl_gen_times {
    double text_s;        /* prompt encoding (helios_gen_new, helios_gen_prompt_set) */
    double transformer_s; /* inside the transformer forwards */
    double sampler_s;     /* the rest of the sampler steps: scheduler, history, noise, stages */
    double decode_s;      /* the VAE decode of finished chunks */
    int64_t prompts;      /* prompts (and negative prompts) encoded */
    int64_t transformer_calls, steps, decodes;
} hl_gen_times;

/* The totals of g since helios_gen_new (zeros for NULL). */
hl_gen_times hl_gen_times_get(const helios_gen *g);

#endif
