#include "train/loss.h"

#include <stddef.h>

void hl_flow_noisy(const float *x0, const float *noise, float sigma, int64_t n, float *noisy,
                   float *target) {
    float keep = 1.0f - sigma; /* (1.0 - sigmas) is its own float32 tensor in the reference */
    for (int64_t i = 0; i < n; i++) {
        float a = keep * x0[i]; /* separate statements: no fused multiply-add */
        float b = sigma * noise[i];
        noisy[i] = a + b;
        target[i] = noise[i] - x0[i];
    }
}

double hl_flow_loss(const float *pred, const float *target, const float *w, int B, int64_t numel,
                    float *dpred) {
    double total = 0.0;
    float scale = 2.0f / ((float)B * (float)numel);
    for (int b = 0; b < B; b++) {
        const float *p = pred + (size_t)b * (size_t)numel, *t = target + (size_t)b * (size_t)numel;
        float wb = w ? w[b] : 1.0f;
        double s = 0.0;
        for (int64_t i = 0; i < numel; i++) {
            double d = (double)p[i] - (double)t[i];
            s += d * d;
        }
        total += (double)wb * s / (double)numel;
        if (dpred) {
            float *g = dpred + (size_t)b * (size_t)numel;
            float k = scale * wb;
            for (int64_t i = 0; i < numel; i++) g[i] = k * (p[i] - t[i]);
        }
    }
    return total / (double)B;
}
