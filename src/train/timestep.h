/* Timestep sampling of the stage-1 (Base) flow-matching objective (spec training.md §2.3; oracle
 * README §9.2; ref: Helios utils_helios_base.py prepare_stage1_noise_input, diffusers
 * training_utils.compute_density_for_timestep_sampling, FlowMatchEulerDiscreteScheduler).
 *
 * The table is FlowMatchEulerDiscreteScheduler(num_train_timesteps = N, shift) in float32:
 *   t_i     = float32(linspace(1, N, N))[::-1]        (N, N-1, ..., 1)
 *   sig_i   = t_i / N;  sig_i = shift·sig_i / (1 + (shift - 1)·sig_i)
 *   tstep_i = sig_i · N
 * (shift 1 leaves sig_i = t_i / N bit for bit). A draw is
 *   logit-normal: u_logit ~ N(mean, std), u = sigmoid(u_logit)     (weighting_scheme logit_normal)
 *   uniform:      u ~ U[0, 1)                                       (weighting_scheme none)
 *   index = int(u · N) (clamped to N - 1: a float32 sigmoid can round to 1),
 *   sigma = sig_tab[index], timestep = tstep_tab[index].
 * Training uses shift 1 and no dynamic shifting (stage_1_init.yaml use_dynamic_shifting: false);
 * dynamic (resolution-dependent) shifting is not implemented. */
#ifndef HL_TRAIN_TIMESTEP_H
#define HL_TRAIN_TIMESTEP_H

#include <stdint.h>

#include "core/error.h"
#include "sample/rng.h"

#define HL_FLOW_TABLE_MAX 1000 /* num_train_timesteps of every Helios stage */

typedef enum hl_tsample_kind {
    HL_TSAMPLE_LOGIT_NORMAL = 0, /* stage 1: weighting_scheme logit_normal */
    HL_TSAMPLE_UNIFORM,          /* stage 2: weighting_scheme none */
} hl_tsample_kind;

typedef struct hl_tsample_params {
    hl_tsample_kind kind;
    float logit_mean, logit_std; /* 0, 1 (stage_1_init.yaml logit_mean / logit_std) */
    float shift;                 /* 1 (FlowMatchEulerDiscreteScheduler default; training) */
    int num_train_timesteps;     /* 1000 */
} hl_tsample_params;

void hl_tsample_params_default(hl_tsample_params *p);

typedef struct hl_flow_table {
    int n;
    float sigmas[HL_FLOW_TABLE_MAX];    /* descending, sigmas[0] = 1 */
    float timesteps[HL_FLOW_TABLE_MAX]; /* sigmas · n */
} hl_flow_table;

/* n in [1, HL_FLOW_TABLE_MAX], shift > 0. */
hl_status hl_flow_table_init(hl_flow_table *t, int n, float shift, hl_error *err);

/* One drawn training timestep. u_logit is NAN for uniform draws. */
typedef struct hl_tdraw {
    float u_logit, u;
    int64_t index;
    float sigma, timestep;
} hl_tdraw;

/* sigmoid in float32: 1 / (1 + exp(-x)). */
float hl_tsample_sigmoid(float x);
/* index, sigma and timestep for a given u (u_logit copied through). */
void hl_tsample_from_u(const hl_flow_table *t, float u_logit, float u, hl_tdraw *d);
#define HL_TSAMPLE_MAX_BATCH 256
/* B (1 .. HL_TSAMPLE_MAX_BATCH) draws from g: logit-normal takes torch.normal(mean, std, (B,))
 * (bit-exact with torch for mean 0, std 1: one randn of B elements; otherwise mean + std·z in
 * double, then float32), uniform takes torch.rand(B). */
hl_status hl_tsample_draw(const hl_tsample_params *p, const hl_flow_table *t, hl_rng *g, int B,
                          hl_tdraw *out, hl_error *err);

#endif
