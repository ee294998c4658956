/* Flow-matching schedules of diffusers' HeliosScheduler / HeliosDMDScheduler (spec §3.1-3.3,
 * §3.6), in float64 exactly as the reference rounds them.
 *
 * A schedule is n timesteps t[0..n) and n + 1 sigmas s[0..n] ending in 0. A sample at sigma s is
 * x_s = (1 - s) x0 + s eps, and the model is called at t (Base: the float t; pyramid pipelines:
 * int64(t), truncated, see hl_sched_model_timestep()).
 *
 * Where the arithmetic order matters (to the last bit, which int64(t) can expose):
 *  - linspace is numpy's: y[i] = i * step + start with step = (stop - start) / (num - 1), and the
 *    last element set to stop;
 *  - the training grid is sigmas = flip(1 - linspace(1, 1/N, N + 1))[:-1] (0.999 ... 0.001 for
 *    N = 1000) and timesteps = N * sigmas;
 *  - the dynamic time shift runs on torch tensors, where `mu / tensor` is evaluated as
 *    tensor.reciprocal() * mu; so exponential is e^mu * (1 / (e^mu + (1/s - 1))) and linear is
 *    mu * (1 / (mu + (1/s - 1))), with s = 0 mapping to 0.
 * With these every timestep and sigma of the reference vectors is reproduced bit for bit. */
#ifndef HL_SCHEDULE_H
#define HL_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "io/json.h"

#define HL_SCHED_MAX_STAGES 8

typedef enum hl_sched_kind {
    HL_SCHED_UNIPC = 0, /* HeliosScheduler, scheduler_type "unipc" (Base, Mid) */
    HL_SCHED_EULER,     /* HeliosScheduler, scheduler_type "euler" */
    HL_SCHED_DMD,       /* HeliosDMDScheduler / scheduler_type "dmd" (Distilled) */
} hl_sched_kind;

typedef enum hl_time_shift {
    HL_SHIFT_EXPONENTIAL = 0, /* s' = e^mu / (e^mu + 1/s - 1) */
    HL_SHIFT_LINEAR,          /* s' = mu / (mu + 1/s - 1) */
} hl_time_shift;

#define HL_SCHED_MAX_DISABLED 16

/* The scheduler_config.json fields that change the numbers. */
typedef struct hl_sched_config {
    hl_sched_kind kind;
    int num_train_timesteps;                     /* N, 1000 */
    double shift;                                /* static shift of the training grid, 1.0 */
    int stages;                                  /* 1 (Base) or 3 (pyramid) */
    double stage_range[HL_SCHED_MAX_STAGES + 1]; /* increasing values in [0, 1]; the first
                                                     stages + 1 are used */
    int n_stage_range;                           /* entries in stage_range (>= stages + 1) */
    double gamma;                                /* renoise correlation, 1/3 */
    bool use_dynamic_shifting;
    hl_time_shift time_shift_type;
    /* UniPC only */
    int solver_order; /* 1 or 2 */
    bool lower_order_final;
    int n_disable_corrector; /* step indices whose following corrector is skipped */
    int disable_corrector[HL_SCHED_MAX_DISABLED];
} hl_sched_config;

/* Class defaults: stages 3 over [0, 1/3, 2/3, 1], gamma 1/3, N 1000, shift 1, dynamic shifting
 * off, exponential (diffusers' HeliosScheduler default; pass the JSON for the real values),
 * UniPC order 2 with lower_order_final. */
void hl_sched_config_default(hl_sched_config *c, hl_sched_kind kind);

/* Reads a scheduler_config.json object over the defaults. The kind comes from "scheduler_type"
 * ("unipc", "euler", "dmd"), else from "_class_name" (HeliosDMDScheduler -> dmd), else stays
 * `fallback`. Only bh2 data prediction with flow sigmas is implemented: other solver_type,
 * predict_x0 = false, prediction_type other than flow_prediction, thresholding or solver_p give
 * HELIOS_ERR_UNSUPPORTED. */
hl_status hl_sched_config_from_json(const hl_json *j, hl_sched_kind fallback, hl_sched_config *c,
                                    hl_error *err);

/* "0, 0.5, 1": the n_stage_range entries of stage_range with `digits` significant digits (17
 * for a JSON file that reads back the same doubles), into buf; returns buf. */
const char *hl_sched_format_range(const hl_sched_config *c, int digits, char *buf, size_t cap);

/* diffusers calculate_shift with its defaults (base_seq 256 -> 0.5, max_seq 4096 -> 1.15). */
double hl_sched_calculate_shift(double image_seq_len);
/* The pipelines' image_seq_len of a latent (F, H, W) and patch (pt, ph, pw): F*H*W / (pt*ph*pw). */
int64_t hl_sched_image_seq_len(int64_t F, int64_t H, int64_t W, int pt, int ph, int pw);
/* One sigma through the dynamic time shift (s = 0 stays 0). */
double hl_sched_time_shift(hl_time_shift type, double mu, double s);
/* numpy.linspace(start, stop, num) into out[num]. */
void hl_sched_linspace(double start, double stop, int num, double *out);

/* init_sigmas + init_sigmas_for_each_stage (spec §3.3). */
typedef struct hl_sched {
    hl_sched_config cfg;
    int n_train;                                 /* N */
    double *train_sigmas;                        /* [N] 0.999 ... 0.001 */
    double *train_timesteps;                     /* [N] N * train_sigmas */
    double ori_start_sigma[HL_SCHED_MAX_STAGES]; /* train_sigmas[int(range[s] N)] */
    double start_sigma[HL_SCHED_MAX_STAGES];     /* corrected for the renoise when s > 0 */
    double end_sigma[HL_SCHED_MAX_STAGES];       /* train_sigmas[int(range[s+1] N)], 0 at the end */
    double ratio[HL_SCHED_MAX_STAGES][2];        /* cumulative share of sigma distance */
    double *timesteps_per_stage; /* [stages][N] linspace(t_max, t_min, N + 1)[:-1] */
    double *sigmas_per_stage;    /* [stages][N] linspace(0.999, 0, N + 1)[:-1] */
} hl_sched;

hl_status hl_sched_init(hl_sched *s, const hl_sched_config *cfg, hl_error *err);
void hl_sched_free(hl_sched *s);

typedef struct hl_schedule {
    int n;             /* timesteps */
    int stage;         /* pyramid stage, 0 for Base */
    double *timesteps; /* [n] */
    double *sigmas;    /* [n + 1], sigmas[n] = 0 */
} hl_schedule;

/* set_timesteps(n, stage_index = stage, mu, is_amplify_first_chunk = amplify) (spec §3.3).
 * UniPC/Euler: n timesteps across the stage's range. DMD: n + 1 (2n + 1 amplified) points with
 * the last timestep and the second-to-last sigma dropped. mu is used only with dynamic shifting.
 * out is overwritten (free it with hl_schedule_free). */
hl_status hl_sched_set_timesteps(const hl_sched *s, int n, int stage, double mu, bool amplify,
                                 hl_schedule *out, hl_error *err);
/* set_timesteps(n, sigmas = sigmas_in[n], mu), the Base pipeline's path (spec §3.2):
 * timesteps = N * sigma_in, sigmas = [sigma_in, 0], then the dynamic shift. Not for DMD. */
hl_status hl_sched_set_timesteps_sigmas(const hl_sched *s, int n, const double *sigmas_in,
                                        double mu, hl_schedule *out, hl_error *err);
/* The Base pipeline's sigma_in: linspace(0.999, 0, n + 1)[:-1] into out[n]. */
void hl_sched_base_sigmas(int n, double *out);
void hl_schedule_free(hl_schedule *sc);

/* int64(t) as the pyramid pipelines pass it to the transformer (truncation toward 0). */
int64_t hl_sched_model_timestep(double t);

/* The renoise of a stage transition (spec §3.4): with s = 1 - ori_start_sigma[stage],
 * alpha = 1 / (sqrt(1 + 1/gamma)(1 - s) + s) and beta = alpha (1 - s) / sqrt(gamma). */
void hl_sched_renoise_coeffs(const hl_sched *s, int stage, double *alpha, double *beta);

#endif
