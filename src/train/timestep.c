#include "train/timestep.h"

#include <math.h>

void hl_tsample_params_default(hl_tsample_params *p) {
    p->kind = HL_TSAMPLE_LOGIT_NORMAL;
    p->logit_mean = 0.0f;
    p->logit_std = 1.0f;
    p->shift = 1.0f;
    p->num_train_timesteps = HL_FLOW_TABLE_MAX;
}

hl_status hl_flow_table_init(hl_flow_table *t, int n, float shift, hl_error *err) {
    if (n < 1 || n > HL_FLOW_TABLE_MAX || !(shift > 0.0f) || !isfinite(shift))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "flow table: num_train_timesteps %d (1..%d), shift %g (> 0)", n,
                       HL_FLOW_TABLE_MAX, (double)shift);
    t->n = n;
    float fn = (float)n;
    for (int i = 0; i < n; i++) {
        /* every op rounded to float32, in the scheduler's order */
        float sig = (float)(n - i) / fn;
        float num = shift * sig;
        float den = 1.0f + (shift - 1.0f) * sig;
        sig = num / den;
        t->sigmas[i] = sig;
        t->timesteps[i] = sig * fn;
    }
    return HL_OK;
}

float hl_tsample_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

void hl_tsample_from_u(const hl_flow_table *t, float u_logit, float u, hl_tdraw *d) {
    float scaled = u * (float)t->n; /* (u * num_train_timesteps).long(): float32, truncated */
    int64_t index = 0;              /* NaN and u <= 0 give 0, u >= 1 the last entry */
    if (scaled > 0.0f) index = scaled < (float)t->n ? (int64_t)scaled : t->n - 1;
    d->u_logit = u_logit;
    d->u = u;
    d->index = index;
    d->sigma = t->sigmas[index];
    d->timestep = t->timesteps[index];
}

hl_status hl_tsample_draw(const hl_tsample_params *p, const hl_flow_table *t, hl_rng *g, int B,
                          hl_tdraw *out, hl_error *err) {
    if (B < 1 || B > HL_TSAMPLE_MAX_BATCH)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "timestep draw: batch %d (1..%d)", B,
                       HL_TSAMPLE_MAX_BATCH);
    float v[HL_TSAMPLE_MAX_BATCH];
    if (p->kind == HL_TSAMPLE_UNIFORM) {
        hl_rng_rand_f32(g, v, B);
        for (int b = 0; b < B; b++) hl_tsample_from_u(t, NAN, v[b], &out[b]);
        return HL_OK;
    }
    hl_rng_randn_f32(g, v, B);
    bool standard = p->logit_mean == 0.0f && p->logit_std == 1.0f;
    for (int b = 0; b < B; b++) {
        float ul = standard ? v[b] : (float)((double)p->logit_mean + (double)p->logit_std * v[b]);
        hl_tsample_from_u(t, ul, hl_tsample_sigmoid(ul), &out[b]);
    }
    return HL_OK;
}
