/* steps.c — UniPC / Euler / DMD scheduler steps (see steps.h).
 *
 * Notation of the UniPC code below (diffusers UniPCMultistepScheduler with flow sigmas):
 *   alpha(s) = 1 - s, sigma_t(s) = max(s, 1e-8), lambda(s) = log(alpha) - log(sigma_t)
 * (the clamp matters only for the final sigma 0: the last step then keeps a ~1e-8/sigma share of
 * the corrected sample instead of returning the data prediction exactly).
 *   h = lambda_to - lambda_from, hh = -h, phi1 = expm1(hh), B_h = expm1(hh)      (bh2)
 * Every scalar is float64; it meets the float32 latents only as float(scalar) * tensor. */
#include "sample/steps.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double clamp_sigma(double sigma) { return sigma > 1e-8 ? sigma : 1e-8; }

static double lambda_of(double sigma) { return log(1.0 - sigma) - log(clamp_sigma(sigma)); }

void hl_unipc_free(hl_unipc *u) {
    if (!u) return;
    free(u->m_prev);
    free(u->m_cur);
    free(u->last_sample);
    free(u->m_new);
    free(u->x_corr);
    memset(u, 0, sizeof *u);
}

hl_status hl_unipc_init(hl_unipc *u, const hl_sched_config *cfg, int64_t numel, hl_error *err) {
    if (!u || !cfg) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_unipc_init: NULL argument");
    memset(u, 0, sizeof *u);
    if (numel <= 0 || (uint64_t)numel > SIZE_MAX / sizeof(float))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_unipc_init: numel %lld", (long long)numel);
    if (cfg->solver_order < 1 || cfg->solver_order > 2)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "UniPC solver_order %d (only 1 and 2)",
                       cfg->solver_order);
    u->numel = numel;
    u->solver_order = cfg->solver_order;
    u->lower_order_final = cfg->lower_order_final;
    u->n_disable = cfg->n_disable_corrector;
    memcpy(u->disable, cfg->disable_corrector, sizeof u->disable);
    size_t bytes = (size_t)numel * sizeof(float);
    u->m_prev = malloc(bytes);
    u->m_cur = malloc(bytes);
    u->last_sample = malloc(bytes);
    u->m_new = malloc(bytes);
    u->x_corr = malloc(bytes);
    if (!u->m_prev || !u->m_cur || !u->last_sample || !u->m_new || !u->x_corr) {
        hl_unipc_free(u);
        return hl_fail(err, HELIOS_ERR_OOM, "UniPC state: out of memory");
    }
    return HL_OK;
}

void hl_unipc_reset(hl_unipc *u, const hl_schedule *sched) {
    u->sched = sched;
    u->step_index = 0;
    u->lower_order_nums = 0;
    u->this_order = 0;
    u->n_models = 0;
}

static bool corrector_disabled(const hl_unipc *u, int step) {
    for (int i = 0; i < u->n_disable; i++)
        if (u->disable[i] == step) return true;
    return false;
}

/* Solves [[1, 1], [r, 1]] x = b as LAPACK's gesv does (LU with partial pivoting). */
static void solve2(double r, const double b[2], double x[2]) {
    double A[2][2] = {{1.0, 1.0}, {r, 1.0}};
    int p = fabs(r) > 1.0 ? 1 : 0, q = 1 - p;
    double l = A[q][0] * (1.0 / A[p][0]);
    double u11 = A[q][1] - l * A[p][1];
    double y0 = b[p], y1 = b[q] - l * y0;
    x[1] = y1 / u11;
    x[0] = (y0 - A[p][1] * x[1]) / A[p][0];
}

/* multistep_uni_c_bh_update: corrects x (= the sample the model just saw at sigma[k]) using the
 * new prediction m_t and the history, from last_sample at sigma[k-1]. Writes x_corr. */
static void unipc_corrector(hl_unipc *u, const float *m_t, float *x_corr) {
    const double *sg = u->sched->sigmas;
    int k = u->step_index, order = u->this_order;
    double sigma_t = sg[k], sigma_s0 = sg[k - 1];
    double alpha_t = 1.0 - sigma_t;
    double lambda_t = lambda_of(sigma_t), lambda_s0 = lambda_of(sigma_s0);
    double h = lambda_t - lambda_s0, hh = -h;
    double phi1 = expm1(hh), B_h = expm1(hh);
    double rk = 1.0, rho[2] = {0.5, 0.5};
    if (order == 2) { /* b_i = h_phi_i * i! / B_h, R = [rks^0; rks^1] with rks = [rk, 1] */
        rk = (lambda_of(sg[k - 2]) - lambda_s0) / h;
        double phik = phi1 / hh - 1.0;
        double b[2];
        b[0] = phik * 1.0 / B_h;
        phik = phik / hh - 0.5;
        b[1] = phik * 2.0 / B_h;
        solve2(rk, b, rho);
    }
    const float ratio = (float)(clamp_sigma(sigma_t) / clamp_sigma(sigma_s0));
    const float c_m0 = (float)(alpha_t * phi1);
    const float c_res = (float)(alpha_t * B_h);
    const float rk_f = (float)rk, rho0 = (float)rho[0], rho1 = (float)rho[1];
    const float *x = u->last_sample, *m0 = u->m_cur, *m1 = u->m_prev;
    for (int64_t i = 0; i < u->numel; i++) {
        float xt_ = ratio * x[i] - c_m0 * m0[i];
        float d1_t = m_t[i] - m0[i];
        float res;
        if (order == 2) {
            float d1 = (m1[i] - m0[i]) / rk_f;
            res = rho0 * d1 + rho1 * d1_t;
        } else {
            res = 0.5f * d1_t;
        }
        x_corr[i] = xt_ - c_res * res;
    }
}

/* multistep_uni_p_bh_update from sigma[k] to sigma[k+1], starting at x (the corrected sample). */
static void unipc_predictor(hl_unipc *u, const float *x, int order, float *out) {
    const double *sg = u->sched->sigmas;
    int k = u->step_index;
    double sigma_t = sg[k + 1], sigma_s0 = sg[k];
    double alpha_t = 1.0 - sigma_t;
    double lambda_t = lambda_of(sigma_t), lambda_s0 = lambda_of(sigma_s0);
    double h = lambda_t - lambda_s0, hh = -h;
    double phi1 = expm1(hh), B_h = expm1(hh);
    const float ratio = (float)(clamp_sigma(sigma_t) / clamp_sigma(sigma_s0));
    const float c_m0 = (float)(alpha_t * phi1);
    const float c_res = (float)(alpha_t * B_h);
    const float *m0 = u->m_cur, *m1 = u->m_prev;
    if (order == 2) { /* D1 = (m_{k-1} - m_k) / rk, rhos_p = [0.5] */
        double rk = (lambda_of(sg[k - 1]) - lambda_s0) / h;
        const float rk_f = (float)rk;
        for (int64_t i = 0; i < u->numel; i++) {
            float xt_ = ratio * x[i] - c_m0 * m0[i];
            float d1 = (m1[i] - m0[i]) / rk_f;
            out[i] = xt_ - c_res * (0.5f * d1);
        }
    } else {
        for (int64_t i = 0; i < u->numel; i++) out[i] = ratio * x[i] - c_m0 * m0[i];
    }
}

hl_status hl_unipc_step(hl_unipc *u, const float *model_output, const float *sample,
                        float *prev_sample, hl_error *err) {
    if (!u || !u->sched || !model_output || !sample || !prev_sample)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "UniPC step: NULL argument or no schedule");
    const hl_schedule *sc = u->sched;
    int k = u->step_index;
    if (k >= sc->n)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "UniPC step %d past the %d-step schedule", k,
                       sc->n);

    /* convert_model_output: x0 = x - sigma * v */
    const float sigma = (float)sc->sigmas[k];
    for (int64_t i = 0; i < u->numel; i++) u->m_new[i] = sample[i] - sigma * model_output[i];

    const float *x = sample;
    bool use_corrector = k > 0 && !corrector_disabled(u, k - 1) && u->n_models > 0;
    if (use_corrector) {
        unipc_corrector(u, u->m_new, u->x_corr);
        x = u->x_corr;
    }

    /* history shift: model_outputs = [m_cur, m_new] */
    float *t = u->m_prev;
    u->m_prev = u->m_cur;
    u->m_cur = u->m_new;
    u->m_new = t;
    if (u->n_models < 2) u->n_models++;

    int order = u->solver_order;
    if (u->lower_order_final && sc->n - k < order) order = sc->n - k;
    if (order > u->lower_order_nums + 1) order = u->lower_order_nums + 1; /* warm-up */
    u->this_order = order;

    memcpy(u->last_sample, x, (size_t)u->numel * sizeof(float));
    unipc_predictor(u, u->last_sample, order, prev_sample);

    if (u->lower_order_nums < u->solver_order) u->lower_order_nums++;
    u->step_index++;
    return HL_OK;
}

hl_status hl_euler_step(const hl_schedule *sched, int step_index, int64_t numel,
                        const float *model_output, const float *sample, float *prev_sample,
                        hl_error *err) {
    if (!sched || !model_output || !sample || !prev_sample)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "Euler step: NULL argument");
    if (step_index < 0 || step_index >= sched->n)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "Euler step %d of %d", step_index, sched->n);
    const float dt = (float)(sched->sigmas[step_index + 1] - sched->sigmas[step_index]);
    for (int64_t i = 0; i < numel; i++) prev_sample[i] = sample[i] + dt * model_output[i];
    return HL_OK;
}

double hl_dmd_sigma_for(const hl_schedule *sched, double t) {
    double ti = trunc(t);
    int best = 0;
    double bd = fabs(sched->timesteps[0] - ti);
    for (int j = 1; j < sched->n; j++) {
        double d = fabs(sched->timesteps[j] - ti);
        if (d < bd) {
            bd = d;
            best = j;
        }
    }
    return sched->sigmas[best];
}

hl_status hl_dmd_step(const hl_schedule *sched, int i, double t, const double *stage_ts,
                      int n_stage, int64_t numel, const float *model_output, const float *sample,
                      const float *start, float *prev_sample, hl_error *err) {
    if (!sched || !stage_ts || !model_output || !sample || !prev_sample || sched->n < 1)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "DMD step: NULL argument or empty schedule");
    if (i < 0 || i >= n_stage)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "DMD step %d of %d", i, n_stage);
    bool last = i >= n_stage - 1;
    if (!last && !start) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "DMD step: no start point");
    const double sigma = hl_dmd_sigma_for(sched, t);
    const double s_next = last ? 0.0 : hl_dmd_sigma_for(sched, stage_ts[i + 1]);
    for (int64_t k = 0; k < numel; k++) {
        /* convert_flow_pred_to_x0 in float64, back to the model output's float32 */
        float x0 = (float)((double)sample[k] - sigma * (double)model_output[k]);
        if (last) prev_sample[k] = x0;
        else /* re-noise toward the fixed stage start point */
            prev_sample[k] = (float)((1.0 - s_next) * (double)x0 + s_next * (double)start[k]);
    }
    return HL_OK;
}
