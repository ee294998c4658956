#include "sample/guidance.h"

void hl_guidance_cfg(int64_t total, const float *v_c, const float *v_u, float g, float *v) {
    for (int64_t i = 0; i < total; i++) v[i] = v_u[i] + g * (v_c[i] - v_u[i]);
}

void hl_guidance_cfg_zero_star(int B, int64_t n, const float *v_c, const float *v_u, float g,
                               float *v) {
    for (int b = 0; b < B; b++) {
        const float *c = v_c + (int64_t)b * n, *u = v_u + (int64_t)b * n;
        double dot = 0.0, sq = 0.0; /* the reference sums in float32; double is the exact limit */
        for (int64_t i = 0; i < n; i++) {
            dot += (double)c[i] * u[i];
            sq += (double)u[i] * u[i];
        }
        float alpha = (float)dot / ((float)sq + 1e-8f);
        float *o = v + (int64_t)b * n;
        for (int64_t i = 0; i < n; i++) {
            float ua = u[i] * alpha;
            o[i] = ua + g * (c[i] - ua);
        }
    }
}
