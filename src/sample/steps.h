/* Scheduler steps on float32 latents (spec §3.5-3.6): UniPC (bh2, data prediction, order <= 2)
 * as the stateful step() of diffusers' HeliosScheduler, its Euler alternative, and the DMD step
 * of HeliosDMDScheduler.
 *
 * Precision follows the reference's type promotion (oracle README §6.3): the schedule and every
 * scalar coefficient are float64 0-d tensors; an op between such a scalar and a float32 latent
 * runs in float32 with the scalar rounded to float first, so e.g. x0 = x - float(sigma) * v with
 * one rounding per operation. DMD's flow-to-x0 conversion runs in float64 and is rounded once.
 * Latents are contiguous arrays of `numel` floats (any shape, PyTorch order). */
#ifndef HL_STEPS_H
#define HL_STEPS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "sample/schedule.h"

/* UniPC multistep state: the last two data predictions and the last (corrected) sample. */
typedef struct hl_unipc {
    const hl_schedule *sched; /* not owned; set by hl_unipc_reset */
    int64_t numel;
    int solver_order; /* 1 or 2 */
    bool lower_order_final;
    int n_disable; /* corrector disabled after these step indices */
    int disable[HL_SCHED_MAX_DISABLED];
    int step_index;
    int lower_order_nums;  /* steps taken so far, capped at solver_order */
    int this_order;        /* order of the last predictor (the next corrector uses it) */
    int n_models;          /* valid entries in m (0..2) */
    float *m_prev, *m_cur; /* [numel] x0 predictions of steps k-1 and k */
    float *last_sample;    /* [numel] corrected sample the last predictor started from */
    float *m_new, *x_corr; /* [numel] scratch */
} hl_unipc;

/* Allocates the state for latents of numel elements with the UniPC fields of cfg. */
hl_status hl_unipc_init(hl_unipc *u, const hl_sched_config *cfg, int64_t numel, hl_error *err);
void hl_unipc_free(hl_unipc *u);
/* A fresh multistep history for a new set_timesteps (the reference resets it there). */
void hl_unipc_reset(hl_unipc *u, const hl_schedule *sched);
/* One step(): corrector (k > 0), then predictor from sigma[k] to sigma[k+1].
 * model_output v, sample x, prev_sample out: [numel]; out may alias neither input. */
hl_status hl_unipc_step(hl_unipc *u, const float *model_output, const float *sample,
                        float *prev_sample, hl_error *err);

/* Euler: x_{k+1} = x_k + float(sigma[k+1] - sigma[k]) * v. */
hl_status hl_euler_step(const hl_schedule *sched, int step_index, int64_t numel,
                        const float *model_output, const float *sample, float *prev_sample,
                        hl_error *err);

/* DMD step (spec §3.6). i: index of this step within the stage's timesteps stage_ts[n_stage]
 * (the pipeline passes the scheduler's timesteps); t: the timestep value of this step; start:
 * the stage's start point. Sigmas are looked up as sched->sigmas[argmin_j |timesteps_j - int(t)|].
 *   x0 = float(x - sigma * v)                                       in float64
 *   i < n_stage - 1: out = float((1 - s') x0 + s' start), s' looked up from int(stage_ts[i+1])
 *   else:            out = x0 */
hl_status hl_dmd_step(const hl_schedule *sched, int i, double t, const double *stage_ts,
                      int n_stage, int64_t numel, const float *model_output, const float *sample,
                      const float *start, float *prev_sample, hl_error *err);

/* The sigma DMD uses for timestep t: sigmas[argmin_j |timesteps_j - int(t)|] (first on ties). */
double hl_dmd_sigma_for(const hl_schedule *sched, double t);

#endif
