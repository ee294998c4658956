#include "train/dmd.h"

#include <math.h>

#include "sample/schedule.h"

void hl_dmd_cfg(const float *c, const float *u, double g, int64_t n, float *out) {
    float gf = (float)g;
    for (int64_t i = 0; i < n; i++) {
        float d = c[i] - u[i];
        out[i] = c[i] + gf * d;
    }
}

void hl_dmd_flow_to_x0(const float *x, const float *v, double sigma, int64_t n, float *x0) {
    float s = (float)sigma;
    for (int64_t i = 0; i < n; i++) x0[i] = x[i] - s * v[i];
}

double hl_dmd_loss(const float *x0, const float *real, const float *fake, int64_t n, float *grad,
                   float *dx0, double *normalizer) {
    double norm = 0;
    for (int64_t i = 0; i < n; i++) norm += fabs((double)x0[i] - (double)real[i]);
    norm /= (double)n;
    if (normalizer) *normalizer = norm;
    double loss = 0;
    for (int64_t i = 0; i < n; i++) {
        float g = norm > 0 ? (float)(((double)fake[i] - (double)real[i]) / norm) : 0.0f;
        if (grad) grad[i] = g;
        if (dx0) dx0[i] = (float)((double)g / (double)n);
        loss += (double)g * g;
    }
    return 0.5 * loss / (double)n;
}

double hl_dmd_critic_loss(const float *v, const float *eps, const float *x0, int64_t n, float *dv) {
    double loss = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = (double)v[i] - ((double)eps[i] - (double)x0[i]);
        loss += r * r;
        if (dv) dv[i] = (float)(2.0 * r / (double)n);
    }
    return loss / (double)n;
}

double hl_ode_regression_loss(const float *x, const float *v, double sigma, const float *target,
                              double weight, int64_t n, float *dv) {
    float fs = (float)sigma;
    double l = 0;
    for (int64_t i = 0; i < n; i++) {
        float x0 = x[i] - fs * v[i];
        double r = (double)x0 - (double)target[i];
        l += r * r;
        if (dv) dv[i] = (float)(-sigma * weight * r / (double)n);
    }
    return weight * 0.5 * l / (double)n;
}

void hl_dmd_renoise_default(hl_dmd_renoise *r) {
    *r = (hl_dmd_renoise){4.0, 1.5, 1.0, 1.0, 500, 20.0, 980.0, 1000};
}

void hl_dmd_beta_params(const hl_dmd_renoise *r, int64_t k, double *a, double *b) {
    double f = 0.0;
    if (r->decay_steps > 0) {
        double x = (double)k / (double)r->decay_steps;
        f = 0.5 * (1.0 + cos(M_PI * (x < 1.0 ? x : 1.0)));
    }
    *a = r->a1 + (r->a0 - r->a1) * f;
    *b = r->b1 + (r->b0 - r->b1) * f;
}

static double uniform(hl_rng *g) { /* (0, 1): 53 random bits, never 0 */
    return ((double)(hl_rng_u64(g) >> 11) + 0.5) * 0x1p-53;
}

static double normal(hl_rng *g) { /* Box-Muller on two uniforms (no cached value) */
    double u1 = uniform(g), u2 = uniform(g);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double hl_rng_gamma(hl_rng *g, double a) {
    if (a < 1.0) return hl_rng_gamma(g, a + 1.0) * pow(uniform(g), 1.0 / a);
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = normal(g), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = uniform(g);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

double hl_rng_beta(hl_rng *g, double a, double b) {
    double x = hl_rng_gamma(g, a), y = hl_rng_gamma(g, b);
    return x / (x + y);
}

void hl_dmd_renoise_draw(const hl_dmd_renoise *r, int64_t k, double mu, hl_rng *g, double *sigma,
                         double *timestep) {
    double a, b;
    hl_dmd_beta_params(r, k, &a, &b);
    double t = r->t_min + (r->t_max - r->t_min) * hl_rng_beta(g, a, b);
    double s = t / (double)r->num_train_timesteps;
    if (mu > 0) s = hl_sched_time_shift(HL_SHIFT_LINEAR, mu, s);
    *sigma = s;
    *timestep = s * (double)r->num_train_timesteps;
}

bool hl_dmd_generator_step(int64_t s, int ratio) { return ratio <= 1 || s % ratio == 0; }
