/* Shared pieces of the stage-3 objectives "ode_init" and "stage3" (spec training.md §6):
 *
 *   - the student's few-step sampler: the Distilled recipe (HeliosPyramidPipeline with the DMD
 *     scheduler, no CFG) on one chunk, written step by step so that a level can exit early (the
 *     staged backward simulation of §6.3) and the final level's exit step can run with a tape
 *     (the generator's gradient goes through it only). The chunk is either a first chunk (empty
 *     history, the amplified schedule) or a later chunk with a given history (the transformer's
 *     history inputs, the plain schedule); with every level run to its last step it is exactly
 *     `helios generate`'s chunk 0, or its chunk k given the history that chunk sees;
 *   - the teacher's multi-step sample: the same pyramid with UniPC and CFG (hl_loop), keeping each
 *     level's start point and end state (the ODE trajectory of §6.2), optionally continuing a
 *     given history;
 *   - the evidence: the RMS distance between the student's few-step samples and the teacher's
 *     multi-step samples for fixed prompts and noise seeds;
 *   - a frozen transformer loaded into a flat buffer of the student's layout. */
#ifndef HL_TRAIN_DISTILL_H
#define HL_TRAIN_DISTILL_H

#include <stdbool.h>

#include "dit/dit.h"
#include "ops/ops.h"
#include "sample/history.h"
#include "sample/rng.h"
#include "sample/schedule.h"
#include "train/params.h"

#define HL_DISTILL_MAX_LEVELS 3

/* What both samplers share: the latent chunk and the pyramid. */
typedef struct hl_distill_shape {
    int C, F, H, W;                 /* full-resolution latent chunk */
    int L;                          /* prompt tokens */
    int levels;                     /* pyramid levels (3) */
    int history_sizes[3];           /* the transformer's history window (16, 2, 1) */
    hl_sched_config sched;          /* the student's scheduler (DMD, dynamic linear shift) */
    int steps[HL_SCHED_MAX_STAGES]; /* student steps per level (2, 2, 2) */
    bool amplify;            /* first chunk: 2n + 1 points per level (the recipe's default) */
    int teacher_steps;       /* teacher UniPC steps per level */
    double teacher_guidance; /* teacher CFG scale (v = u + g (c - u)) */
} hl_distill_shape;

void hl_distill_shape_default(hl_distill_shape *s);
/* H and W divisible by 2^(levels-1) x the patch, sizes in range. */
hl_status hl_distill_shape_check(const hl_distill_shape *s, const hl_dit_config *dit,
                                 hl_error *err);

/* The student's sampler with its buffers (sizes of the shape). */
typedef struct hl_distill_sampler {
    hl_distill_shape shape;
    hl_dit_config dit;
    hl_sched sched;
    hl_schedule sc[HL_DISTILL_MAX_LEVELS];      /* each level's timesteps (first chunk) */
    hl_schedule sc_next[HL_DISTILL_MAX_LEVELS]; /* ... of a later chunk (never amplified) */
    hl_history hist;                            /* empty */
    hl_history_inputs hi;                       /* its inputs (the first chunk's) */
    const hl_history_inputs *h;                 /* the history of the next calls (&hi or given) */
    bool first;                                 /* h is the empty history: sc, else sc_next */
    float *x, *next, *start, *v, *noise, *up;   /* full-resolution sized scratch */
    double ts; /* the timestep of the last forward (kept for the tape's input) */
} hl_distill_sampler;

hl_status hl_distill_sampler_init(hl_distill_sampler *s, const hl_distill_shape *shape,
                                  const hl_dit_config *dit, hl_error *err);
void hl_distill_sampler_free(hl_distill_sampler *s);
/* The chunk the next calls sample and the forwards see: hi NULL = a first chunk (empty history,
 * the amplified schedule when shape.amplify; the state after init), else a later chunk with the
 * history inputs hi (built for shape.F frames and the shape's history sizes; kept by pointer, so
 * hi must outlive its use) and the plain schedule, as helios generate's chunks after the first. */
void hl_distill_sampler_set_history(hl_distill_sampler *s, const hl_history_inputs *hi);
/* Level k's schedule of the current chunk, and its number of steps. */
const hl_schedule *hl_distill_level_schedule(const hl_distill_sampler *s, int k);
int hl_distill_level_steps(const hl_distill_sampler *s, int k);

/* The window (frames and anchor) whose hl_history_inputs_build is in: h is initialised here
 * (free with hl_history_free), has_anchor set. Lets a history given as transformer inputs (e.g.
 * train/stage1.h's, after the task mix) be continued by hl_loop (the teacher). */
hl_status hl_distill_history_from_inputs(const hl_history_inputs *in, int C, int H, int W,
                                         const int sizes[3], hl_history *h, hl_error *err);

/* Where to leave each level and what to keep for the backward. */
typedef struct hl_distill_run {
    int exit[HL_DISTILL_MAX_LEVELS]; /* step whose x0 leaves level k; -1: the last step */
    bool tape;                       /* the final level's exit step runs with a tape */
    int recompute;                   /* of that forward (dit.h) */
    hl_dit_tape *out_tape;           /* set when tape: free with hl_dit_tape_free */
    double out_sigma;                /* sigma of that step: x0 = x - sigma v */
} hl_distill_run;

/* Runs the sampler with transformer m on prompt text [L, text_dim] from the full-resolution
 * noise [C, F, H, W] (down-sampled x2 per level as the pipeline), drawing the block noise of each
 * level change from g; x0 [C, F, H, W] receives the final level's x0. With every exit at the last
 * step and g seeded as the pipeline's generator after its initial noise, it equals helios
 * generate's first chunk. The forward's inputs stay valid until the next call (the tape). */
hl_status hl_distill_sample(const hl_ctx *ctx, hl_distill_sampler *s, const hl_dit *m,
                            const float *text, const float *noise, hl_rng *g, hl_distill_run *run,
                            float *x0);

/* The level's latent sizes: h = H >> (levels - 1 - k). */
void hl_distill_level_size(const hl_distill_shape *s, int k, int *h, int *w);
/* The forward input of x at level size (h, w), timestep ts, prompt text. */
void hl_distill_dit_input(const hl_distill_sampler *s, const float *x, int h, int w,
                          const double *ts, const float *text, helios_dit_input *in);

/* The teacher's multi-step sample of prompt text from seed: the pipeline's generator seeded
 * with seed draws the noise and block noises (as `helios generate --seed`). hist (may be NULL:
 * empty) is the history the chunk continues (hl_loop's prepared history). start[k] and end[k]
 * (each [C, F, h_k, w_k], may be NULL) receive level k's start point and end state; x0 the
 * final sample [C, F, H, W]. guidance <= 1 runs without CFG (uncond = zero prompt, same
 * history). */
hl_status hl_distill_teacher_sample(const hl_ctx *ctx, const hl_distill_shape *shape,
                                    const hl_dit *teacher, const float *text, uint64_t seed,
                                    const hl_history *hist, float **start, float **end, float *x0);
/* The student's sample from seed as helios generate draws it (every level to its last step). */
hl_status hl_distill_student_sample(const hl_ctx *ctx, hl_distill_sampler *s, const hl_dit *m,
                                    const float *text, uint64_t seed, float *x0);

/* Loads the transformer weights of path (a model folder with transformer/ or a transformer
 * folder) into w, laid out as layout (every name and shape required). */
hl_status hl_distill_load_weights(const char *path, const hl_params *layout, float *w,
                                  hl_error *err);

/* The evidence set: E prompts, their teacher samples (seeds seed0 + e), and the distance. */
typedef struct hl_distill_eval {
    int E;
    uint64_t seed0;
    const float *prompts; /* [E, L, text_dim], not owned */
    float *teacher;       /* [E, C, F, H, W] */
} hl_distill_eval;

hl_status hl_distill_eval_init(hl_distill_eval *e, const hl_ctx *ctx, const hl_distill_shape *shape,
                               const hl_dit *teacher, const float *prompts, int E, uint64_t seed0,
                               hl_error *err);
void hl_distill_eval_free(hl_distill_eval *e);
/* RMS over the set of (student sample - teacher sample). */
hl_status hl_distill_eval_distance(const hl_distill_eval *e, const hl_ctx *ctx,
                                   hl_distill_sampler *s, const hl_dit *m, double *rms);

/* Keeps the lines of a TSV log whose first field is <= last (a resume rewrites what follows);
 * a missing file is fine. */
hl_status hl_distill_truncate_log(const char *path, int64_t last, hl_error *err);

#endif
