#include "train/vae_loss.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#define LOGVAR_MIN (-30.0f) /* DiagonalGaussianDistribution: torch.clamp(logvar, -30.0, 20.0) */
#define LOGVAR_MAX 20.0f

void hl_vae_loss_params_default(hl_vae_loss_params *p) {
    p->w_l1 = 1.0f;
    p->w_l2 = 0.0f;
    p->w_kl = 1e-6f;
}

static bool clamped(float lv) { return lv < LOGVAR_MIN || lv > LOGVAR_MAX; }
static float clamp_lv(float lv) { return fminf(fmaxf(lv, LOGVAR_MIN), LOGVAR_MAX); }

hl_status hl_vae_loss(const hl_vae_loss_params *p, int B, const float *recon, const float *x,
                      int64_t n_pix, const float *mean, const float *logvar, int64_t n_lat,
                      hl_vae_loss_value *v, float *d_recon, float *d_mean, float *d_logvar,
                      hl_error *err) {
    if (B < 1 || n_pix < 1 || n_lat < 0 || (n_lat > 0 && (!mean || !logvar)))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "vae loss: B %d, n_pix %lld, n_lat %lld", B,
                       (long long)n_pix, (long long)n_lat);
    int64_t np = (int64_t)B * n_pix, nl = (int64_t)B * n_lat;
    double l1 = 0.0, l2 = 0.0, kl = 0.0;
    double gscale = 1.0 / (double)np;
    for (int64_t i = 0; i < np; i++) {
        double d = (double)recon[i] - (double)x[i];
        l1 += fabs(d);
        l2 += d * d;
        if (d_recon) {
            double sgn = d > 0.0 ? 1.0 : d < 0.0 ? -1.0 : 0.0;
            d_recon[i] = (float)((p->w_l1 * sgn + 2.0 * p->w_l2 * d) * gscale);
        }
    }
    for (int64_t i = 0; i < nl; i++) {
        double m = mean[i], lv = clamp_lv(logvar[i]), e = exp(lv);
        kl += 0.5 * (m * m + e - 1.0 - lv);
        if (d_mean) d_mean[i] = (float)(p->w_kl * m / B);
        if (d_logvar)
            d_logvar[i] = clamped(logvar[i]) ? 0.0f : (float)(p->w_kl * 0.5 * (e - 1.0) / B);
    }
    v->l1 = l1 / (double)np;
    v->l2 = l2 / (double)np;
    v->kl = kl / (double)B;
    v->loss = p->w_l1 * v->l1 + p->w_l2 * v->l2 + p->w_kl * v->kl;
    return HL_OK;
}

/* Σ d² over n element pairs, d = (rb[i] - ra[i]) - (xb[i] - xa[i]); d_rb[i] += g·d and
 * d_ra[i] -= g·d where non-NULL. The two sides may overlap (neighbours in one frame). */
static double diff_pairs(const float *ra, const float *xa, const float *rb, const float *xb,
                         int64_t n, double g, float *d_ra, float *d_rb) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = ((double)rb[i] - ra[i]) - ((double)xb[i] - xa[i]);
        sum += d * d;
        if (d_rb) d_rb[i] += (float)(g * d);
        if (d_ra) d_ra[i] -= (float)(g * d);
    }
    return sum;
}

double hl_vae_frame_diff(float w, int C, int64_t hw, int64_t stride, const float *ra,
                         const float *xa, const float *rb, const float *xb, float *d_ra,
                         float *d_rb) {
    double sum = 0.0, n = (double)C * (double)hw, g = 2.0 * w / n;
    for (int c = 0; c < C; c++) {
        int64_t o = c * stride;
        sum += diff_pairs(ra + o, xa + o, rb + o, xb + o, hw, g, d_ra ? d_ra + o : NULL,
                          d_rb ? d_rb + o : NULL);
    }
    return sum / n;
}

double hl_vae_edge_diff(float w, int64_t n, int H, int W, const float *r, const float *x,
                        float *d_r) {
    double pairs = (double)n * ((double)H * (W - 1) + (double)(H - 1) * W);
    if (pairs <= 0.0) return 0.0;
    double sum = 0.0, g = 2.0 * w / pairs;
    for (int64_t c = 0; c < n; c++) {
        int64_t o = c * H * W;
        /* lower neighbours: the plane against itself one row on, (H - 1)·W pairs in a run */
        sum += diff_pairs(r + o, x + o, r + o + W, x + o + W, (int64_t)(H - 1) * W, g,
                          d_r ? d_r + o : NULL, d_r ? d_r + o + W : NULL);
        for (int y = 0; y < H; y++) { /* right neighbours, row by row */
            int64_t p = o + (int64_t)y * W;
            sum += diff_pairs(r + p, x + p, r + p + 1, x + p + 1, W - 1, g, d_r ? d_r + p : NULL,
                              d_r ? d_r + p + 1 : NULL);
        }
    }
    return sum / pairs;
}

void hl_vae_loss_sample(const float *mean, const float *logvar, const float *eps, int64_t n,
                        float *z) {
    for (int64_t i = 0; i < n; i++) {
        float s = expf(0.5f * clamp_lv(logvar[i]));
        float d = s * eps[i];
        z[i] = mean[i] + d;
    }
}

void hl_vae_loss_sample_backward(const float *logvar, const float *eps, const float *dz, int64_t n,
                                 float *d_mean, float *d_logvar) {
    for (int64_t i = 0; i < n; i++) {
        d_mean[i] += dz[i];
        if (!clamped(logvar[i])) d_logvar[i] += dz[i] * eps[i] * 0.5f * expf(0.5f * logvar[i]);
    }
}
