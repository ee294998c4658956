#include "train/synthetic.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample/rng.h"

hl_status hl_synthetic_make(hl_synthetic *s, int C, int F, int H, int W, int L, int text_dim,
                            int64_t count, uint64_t seed, hl_error *err) {
    memset(s, 0, sizeof *s);
    if (C < 1 || F < 1 || H < 1 || W < 1 || L < 1 || text_dim < 1 || count < 1)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "synthetic clips: empty size");
    size_t clip = (size_t)C * F * H * W, text = (size_t)L * text_dim;
    s->latents = malloc((size_t)count * clip * sizeof *s->latents);
    s->embeds = malloc((size_t)count * text * sizeof *s->embeds);
    if (!s->latents || !s->embeds) {
        hl_synthetic_free(s);
        return hl_fail(err, HELIOS_ERR_OOM, "synthetic clips: out of memory");
    }
    *s = (hl_synthetic){C, F, H, W, L, text_dim, count, s->latents, s->embeds};
    hl_rng g = {.path = HL_RNG_NORMAL_AVX2};
    hl_rng_seed(&g, seed);
    enum { WAVES = 3 };
    for (int64_t i = 0; i < count; i++) {
        float *x = s->latents + (size_t)i * clip;
        for (int c = 0; c < C; c++) {
            float p[WAVES * 5]; /* per wave: kx, ky, speed, phase, amplitude */
            hl_rng_rand_f32(&g, p, WAVES * 5);
            for (int64_t k = 0; k < (int64_t)F * H * W; k++) {
                int64_t t = k / ((int64_t)H * W), y = k / W % H, xx = k % W;
                double v = 0.0;
                for (int w = 0; w < WAVES; w++) {
                    const float *q = p + 5 * w;
                    double ph = 2.0 * M_PI * (q[0] * xx / W + q[1] * y / H + 0.2 * q[2] * t + q[3]);
                    v += (0.4 + q[4]) * sin(ph);
                }
                x[(int64_t)c * F * H * W + k] = (float)v;
            }
        }
        hl_rng_randn_f32(&g, s->embeds + (size_t)i * text, (int64_t)text);
    }
    return HL_OK;
}

void hl_synthetic_free(hl_synthetic *s) {
    free(s->latents);
    free(s->embeds);
    memset(s, 0, sizeof *s);
}

static hl_status get(void *user, int64_t i, hl_latent_clip *c, hl_error *err) {
    (void)err;
    hl_synthetic *s = user;
    c->latents = s->latents + (size_t)i * s->C * s->F * s->H * s->W;
    c->C = s->C, c->F = s->F, c->H = s->H, c->W = s->W;
    c->embeds = s->embeds + (size_t)i * s->L * s->text_dim;
    c->L = s->L;
    return HL_OK;
}

hl_latent_source hl_synthetic_source(hl_synthetic *s) {
    hl_latent_source src = {s, s->count, get};
    return src;
}
