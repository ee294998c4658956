/* The toy objective (train/objective.h): loss = 0.5 mean_i (p_i - t_i - noise e_i)^2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/objective.h"

typedef struct quadratic {
    int64_t n;
    float noise;
    float *target, *e; /* [n] each */
} quadratic;

/* A number in [0, hi] under key (absent: keeps *out). */
static hl_status get_num(const hl_json *s, const char *file, const char *key, double hi,
                         double *out, hl_error *err) {
    const hl_json *v = hl_json_get(s, key);
    char path[64];
    snprintf(path, sizeof path, "objective.%s", key);
    if (!v) return HL_OK;
    if (v->type != HL_JSON_NUMBER)
        return hl_fail_key(err, HELIOS_ERR_INVALID_ARG, file, path, "must be a number");
    if (!(v->number >= 0 && v->number <= hi))
        return hl_fail_key(err, HELIOS_ERR_INVALID_ARG, file, path, "must be in [0, %g]", hi);
    *out = v->number;
    return HL_OK;
}

hl_status hl_quadratic_create(const hl_json *s, const hl_train_env *env, void **obj,
                              hl_error *err) {
    *obj = NULL;
    static const char *const known[] = {"type", "noise", "target_seed", "target_scale"};
    for (size_t i = 0; i < s->n; i++) {
        size_t k = 0;
        while (k < 4 && strcmp(s->keys[i], known[k])) k++;
        if (k == 4) {
            char path[300];
            snprintf(path, sizeof path, "objective.%s", s->keys[i]);
            return hl_fail_key(err, HELIOS_ERR_INVALID_ARG, env->config_path, path,
                               "is not a setting of the quadratic objective (noise, target_seed, "
                               "target_scale)");
        }
    }
    double noise = 0.1, seed = 1, scale = 0.02;
    HL_TRY(get_num(s, env->config_path, "noise", 1e6, &noise, err));
    HL_TRY(get_num(s, env->config_path, "target_seed", 4294967295.0, &seed, err));
    HL_TRY(get_num(s, env->config_path, "target_scale", 1e6, &scale, err));
    if (seed != (double)(uint64_t)seed)
        return hl_fail_key(err, HELIOS_ERR_INVALID_ARG, env->config_path, "objective.target_seed",
                           "must be a whole number");
    quadratic *q = calloc(1, sizeof *q);
    int64_t n = env->layout->total;
    if (q) {
        q->target = malloc((n ? (size_t)n : 1) * sizeof(float));
        q->e = malloc((n ? (size_t)n : 1) * sizeof(float));
    }
    if (!q || !q->target || !q->e) {
        hl_quadratic_destroy(q);
        return hl_fail(err, HELIOS_ERR_OOM, "quadratic objective: out of memory");
    }
    q->n = n;
    q->noise = (float)noise;
    hl_rng g;
    g.path = HL_RNG_NORMAL_AVX2;
    hl_rng_seed(&g, (uint64_t)seed);
    hl_rng_randn_f32(&g, q->target, n);
    for (int64_t i = 0; i < n; i++) q->target[i] *= (float)scale;
    *obj = q;
    return HL_OK;
}

hl_status hl_quadratic_step(void *obj, hl_rng *rng, int64_t sample_index, const float *params,
                            float *grads, double *loss, hl_error *err) {
    quadratic *q = obj;
    hl_rng_randn_f32(rng, q->e, q->n);
    float inv_n = (float)(1.0 / (double)(q->n ? q->n : 1));
    double sum = 0;
    for (int64_t i = 0; i < q->n; i++) {
        float r = params[i] - q->target[i] - q->noise * q->e[i];
        sum += (double)r * r;
        grads[i] += r * inv_n;
    }
    *loss = 0.5 * sum / (double)(q->n ? q->n : 1);
    return HL_OK;
}

hl_status hl_quadratic_validate(void *obj, int64_t step, const float *params, const float *ema,
                                double *loss, char *sample, size_t cap, hl_error *err) {
    (void)step, (void)sample, (void)cap, (void)err;
    quadratic *q = obj;
    const float *p = ema ? ema : params;
    double sum = 0;
    for (int64_t i = 0; i < q->n; i++) {
        double r = (double)p[i] - q->target[i];
        sum += r * r;
    }
    *loss = 0.5 * sum / (double)(q->n ? q->n : 1);
    return HL_OK;
}

void hl_quadratic_destroy(void *obj) {
    quadratic *q = obj;
    if (!q) return;
    free(q->target);
    free(q->e);
    free(q);
}
