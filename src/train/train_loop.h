/* The generic training loop: an objective computes a loss and accumulates gradients for one sample
 * at a time; the loop owns the flat buffers' optimizer state, the schedule, the EMA, the data
 * position, the checkpoints and, over MPI, the ranks (train/dist.h).
 *
 * One optimizer step (index s, 0-based), with W ranks (1 without MPI) and k = micro_batches:
 *   grads = 0
 *   for each of the W x k micro-batches m = 0, 1, ... (rank r runs m = r, r + W, r + 2W, ...):
 *       g = 0; for each of its batch samples i (= samples + m x batch + b):
 *           fn(obj, rng_i, i, params, g, &loss_i)        accumulates d loss_i / d params into g
 *       grads += g                                       (in the order of m, on every rank)
 *       sync->micro_batch (the objective's own gradients likewise; hooks: below)
 *   sync->step_end (the objective's own update)
 *   grads /= W x k x batch; loss = mean of the losses (summed in the order of i)
 *   grad_norm = clip_grad_norm_(grads, clip)
 *   AdamW(lr = schedule(s)); EMA (when ema_decay > 0)
 *   rank 0: every checkpoint_every steps, at the end and on a stop request: a checkpoint
 *   (checkpoint.h); validation; the progress report
 * (With W x k = 1 the objective accumulates into grads directly.)
 *
 * Determinism: rng_i is torch's mt19937 (sample/rng.h) keyed by (seed, i): a sample draws the same
 * numbers whichever rank runs it and whatever ran before. Everything else the loop computes is
 * element-wise or summed in a fixed order (hl_dist_ordered_add_f32 adds the ranks' micro-batch
 * gradients in rank order), so:
 *   - a fixed seed and thread count give the same bits;
 *   - W ranks with k micro-batches each give the same bits as one process with W x k (for the
 *     same batch): same samples, same randomness, same order of every sum;
 *   - a run resumed from a checkpoint (the weights, moments, EMA and sample position, exactly)
 *     continues with the same losses, bit for bit, as one that was never interrupted.
 * Over MPI, rank 0 alone reads the checkpoint to resume from (and sends the state to the others),
 * writes checkpoints and reports; its stop flag stops every rank after the same step; an objective
 * failing on any rank fails the step on every rank.
 *
 * An objective that trains a model of its own (stage 3's critic) keeps it data-parallel with the
 * loop's parameters through hl_train_sync (below): the loop calls its hooks on every rank, in the
 * same order, where it exchanges its own state:
 *   start        after rank 0's checkpoint was shared (the objective's part was read by rank 0
 *                alone, through hl_ckpt_io.extra_load): rank 0 sends it to the others
 *   micro_batch  after each micro-batch's status exchange and gradient add (every rank's samples
 *                of it succeeded): the objective adds its own micro-batch gradients in rank order
 *                (hl_dist_ordered_add_f32), as the loop does its
 *   step_end     after the last micro-batch, before the loop's averaging, clipping and AdamW:
 *                the objective updates its model once per step, identically on every rank
 * After each hook the loop exchanges the ranks' statuses, so a hook failing on one rank fails the
 * step on every rank. A hook therefore makes its collective calls on every rank unconditionally,
 * before anything that may fail on one rank only (a log file rank 0 writes): then no rank waits in
 * a collective for one that has given up. The step function makes none (a rank whose sample
 * failed would never reach it). */
#ifndef HL_TRAIN_LOOP_H
#define HL_TRAIN_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "sample/rng.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/dist.h"
#include "train/params.h"

/* Adds the gradient of sample `sample_index`'s loss w.r.t. params into grads (+=) and sets *loss.
 * It may draw from rng (noise, timesteps): the sample's own generator, and nothing else random. params and grads are the same two buffers at every call
 * of one hl_train_run, so an objective may bind model views to them once (hl_dit_new_flat on
 * params for the model, on grads for the gradient view) and reuse them while the pointers match. */
typedef hl_status (*hl_train_step_fn)(void *obj, hl_rng *rng, int64_t sample_index,
                                      const float *params, float *grads, double *loss,
                                      hl_error *err);

/* Optional: the n samples of one micro-batch at once (sample_index[b] with generator rngs[b],
 * loss[b] set), their gradients added into grads: what n calls of the step function would do,
 * in one pass (an objective that packs them into one forward; the sums may round differently).
 * On failure the samples' gradients may be partly added. */
typedef hl_status (*hl_train_batch_fn)(void *obj, int n, hl_rng *rngs, const int64_t *sample_index,
                                       const float *params, float *grads, double *loss,
                                       hl_error *err);

/* Optional: a validation pass on the current weights (and the EMA weights, NULL without EMA);
 * *loss is reported, and sample[0..cap) names a file it wrote (a video), "" when none. Must not
 * draw from the training RNG (it gets none) nor change params or ema, so validation does not
 * change the training run. */
typedef hl_status (*hl_train_validate_fn)(void *obj, int64_t step, const float *params,
                                          const float *ema, double *loss, char *sample, size_t cap,
                                          hl_error *err);

typedef struct hl_train_progress {
    int64_t step, steps; /* optimizer steps done (1-based after a step), of the run */
    int64_t samples;     /* samples consumed so far */
    double loss, lr, grad_norm;
    double samples_per_s, eta_s; /* since this process started; eta of the remaining steps */
    bool has_validation;
    double validation_loss;
    const char *validation_sample; /* the file validation wrote ("" none), with has_validation */
    const char *checkpoint;        /* the folder just written after this step, else NULL */
} hl_train_progress;

/* Optional (TTUR): whether optimizer step `step` (0-based) updates the loop's parameters. On a
 * step it answers false for, the objective's gradients are still accumulated, clipped and reported
 * but AdamW (its moments and step count included) and the EMA are left as they are: the step
 * trained only a model the objective holds itself. NULL: every step updates. */
typedef bool (*hl_train_update_fn)(void *obj, int64_t step);

typedef void (*hl_train_report_fn)(void *user, const hl_train_progress *p);

/* Optional hooks (NULL members: none) of an objective that trains a model of its own; when and why
 * the loop calls them: the top of this file. d is the loop's ranks (a single process: world 1);
 * step is the optimizer step (0-based) being run, j its micro-batch on this rank (rank r runs
 * global micro-batch j x world + r). resumed: rank 0 restored a checkpoint. */
typedef struct hl_train_sync {
    hl_status (*start)(void *obj, const hl_dist *d, bool resumed, hl_error *err);
    hl_status (*micro_batch)(void *obj, const hl_dist *d, int64_t step, int64_t j, hl_error *err);
    hl_status (*step_end)(void *obj, const hl_dist *d, int64_t step, hl_error *err);
} hl_train_sync;

typedef struct hl_train_config {
    int64_t steps;     /* optimizer steps of the whole run (counting those before a resume) */
    int batch;         /* samples per micro-batch (>= 1) */
    int micro_batches; /* gradient accumulation: micro-batches per optimizer step (>= 1) */
    hl_adamw_config adamw;
    hl_lr_schedule lr; /* lr.total is set to steps by the loop when 0 */
    double clip;       /* max gradient norm; <= 0: no clipping (the norm is still reported) */
    double ema_decay;  /* 0: no EMA; else in (0, 1) */
    int64_t ema_start; /* the EMA copies the weights through this step, then averages (spec
                          training.md §6.1: 750 in stage 3, 250 in the ODE phase) */
    uint64_t seed;     /* of the samples' generators */
    int64_t checkpoint_every; /* 0: only at the end and on stop */
    int keep;                 /* complete checkpoints to keep (0: all) */
    int64_t validation_every; /* 0: none */
    bool resume;              /* continue from the newest complete checkpoint of the output */
    uint64_t config_hash;     /* stored in checkpoints; a resume from another hash is refused */
    hl_ckpt_io io;            /* output folder, component, layout, config.json text, hook */
    hl_train_report_fn report;
    void *report_user;
    volatile sig_atomic_t *stop; /* non-zero (set from a signal handler): checkpoint, return */
    const hl_dist *dist;         /* data-parallel ranks (train/dist.h); NULL: one process */
    hl_train_update_fn updates;  /* NULL: every step updates the parameters */
    const hl_train_sync *sync;   /* NULL: the objective trains nothing of its own */
    void *hook_user; /* what updates and sync get (NULL: the obj of hl_train_run); a wrapper such
                        as LoRA (train/lora_step.h) passes the objective it wraps */
    /* Parameters [train_begin, train_end) are trained (0, 0: all): AdamW and the EMA touch only
     * them, the others stay bit for bit (an objective that trains part of a model, e.g. the VAE's
     * decoder, leaves the rest's gradients zero; the norm and clipping still see all). */
    int64_t train_begin, train_end;
    /* NULL: each sample of a micro-batch through the step function; else (batch > 1) the
     * micro-batch's samples through this, at once */
    hl_train_batch_fn batch_step;
} hl_train_config;

typedef struct hl_train_result {
    int64_t first_step; /* the step the run started at (> 0 after a resume) */
    int64_t steps_done; /* optimizer steps done in total */
    bool stopped;       /* ended by *stop before c->steps */
    double last_loss;
} hl_train_result;

/* Runs the loop. params (layout.total floats) holds the initial weights (ignored on a resume: the
 * checkpoint's replace them) and the trained ones on return. ema (NULL when ema_decay is 0) holds
 * the EMA weights on return. Without resume, an output folder that already holds a complete
 * checkpoint is refused (so a run never mixes into another's). */
hl_status hl_train_run(const hl_train_config *c, hl_train_step_fn fn, hl_train_validate_fn validate,
                       void *obj, float *params, float *ema, hl_train_result *res, hl_error *err);

/* FNV-1a 64 of n bytes, continuing from h (start with HL_HASH_INIT): config hashes. */
#define HL_HASH_INIT 0xcbf29ce484222325ull
uint64_t hl_hash_bytes(uint64_t h, const void *data, size_t n);

#endif
