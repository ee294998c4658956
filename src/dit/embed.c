/* Condition embeddings (spec §1.3 step 6): the sinusoid of t, temb and the 6-way projection. */
#include <math.h>
#include <stdlib.h>

#include "dit/dit.h"

/* [cos(t f_k), sin(t f_k)], f_k = exp(-ln(10000) k / half), k < half: float32 throughout, in
 * the reference's order of operations (its arguments reach ~1000 rad, so rounding matters). */
static void sinusoid(double timestep, int dim, float *out) {
    int half = dim / 2;
    float t = (float)timestep;
    const float neg_log = (float)-9.210340371976184; /* -ln(10000) */
    for (int k = 0; k < half; k++) {
        float e = neg_log * (float)k / (float)half;
        float a = t * expf(e);
        out[k] = cosf(a);
        out[half + k] = sinf(a);
    }
}

hl_status hl_dit_time_embed(const hl_ctx *ctx, const hl_dit *m, double timestep, float *temb,
                            float *tproj) {
    const hl_dit_config *c = &m->cfg;
    int64_t D = c->dim;
    float *buf = malloc(((size_t)c->freq_dim + 2 * (size_t)D) * sizeof(float));
    if (!buf) return hl_fail(ctx->err, HELIOS_ERR_OOM, "time embedding: out of memory");
    float *sin_t = buf, *h = buf + c->freq_dim, *act = h + D;
    sinusoid(timestep, c->freq_dim, sin_t);
    hl_status st = hl_linear(ctx, 1, sin_t, c->freq_dim, &m->time_linear_1_w, &m->time_linear_1_b,
                             h, D);
    if (st == HL_OK) st = hl_silu(ctx, D, h, h);
    if (st == HL_OK)
        st = hl_linear(ctx, 1, h, D, &m->time_linear_2_w, &m->time_linear_2_b, temb, D);
    if (st == HL_OK) st = hl_silu(ctx, D, temb, act);
    if (st == HL_OK) st = hl_linear(ctx, 1, act, D, &m->time_proj_w, &m->time_proj_b, tproj, 6 * D);
    free(buf);
    return st;
}

hl_status hl_dit_time_embed_backward(const hl_ctx *ctx, const hl_dit *m, double timestep,
                                     const float *dtproj, const float *dtemb, hl_dit *g) {
    const hl_dit_config *c = &m->cfg;
    int64_t D = c->dim;
    float *buf = malloc(((size_t)c->freq_dim + 6 * (size_t)D) * sizeof(float));
    if (!buf) return hl_fail(ctx->err, HELIOS_ERR_OOM, "time embedding: out of memory");
    float *sin_t = buf, *h = sin_t + c->freq_dim, *hs = h + D, *temb = hs + D, *act = temb + D;
    float *da = act + D, *dh = da + D;
    /* the forward again (one row): h = linear_1(sin), hs = silu(h), temb = linear_2(hs),
     * act = silu(temb), tproj = time_proj(act) */
    sinusoid(timestep, c->freq_dim, sin_t);
    hl_status st = hl_linear(ctx, 1, sin_t, c->freq_dim, &m->time_linear_1_w, &m->time_linear_1_b,
                             h, D);
    if (st == HL_OK) st = hl_silu(ctx, D, h, hs);
    if (st == HL_OK)
        st = hl_linear(ctx, 1, hs, D, &m->time_linear_2_w, &m->time_linear_2_b, temb, D);
    if (st == HL_OK) st = hl_silu(ctx, D, temb, act);
    /* and back */
    if (st == HL_OK)
        st = hl_linear_backward(ctx, 1, act, D, &m->time_proj_w, dtproj, 6 * D, da, D, 0,
                                g->time_proj_w.data, g->time_proj_b.data);
    if (st == HL_OK) st = hl_silu_backward(ctx, D, temb, da, da);
    if (st == HL_OK && dtemb) st = hl_add_gated(ctx, 1, D, da, D, dtemb, D, NULL);
    if (st == HL_OK)
        st = hl_linear_backward(ctx, 1, hs, D, &m->time_linear_2_w, da, D, dh, D, 0,
                                g->time_linear_2_w.data, g->time_linear_2_b.data);
    if (st == HL_OK) st = hl_silu_backward(ctx, D, h, dh, dh);
    if (st == HL_OK)
        st = hl_linear_backward(ctx, 1, sin_t, c->freq_dim, &m->time_linear_1_w, dh, D, NULL, 0, 0,
                                g->time_linear_1_w.data, g->time_linear_1_b.data);
    free(buf);
    return st;
}
