#include "train/mlm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void hl_mlm_corrupt(const hl_mlm_params *p, hl_rng *rng, const int64_t *ids, int64_t L,
                    const int64_t *cand, int64_t n, int64_t *in, int64_t *pos, int64_t *target,
                    int64_t *K) {
    int64_t k = llround(p->mask_prob * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    memcpy(pos, cand, (size_t)n * sizeof *pos);
    for (int64_t i = 0; i < k; i++) { /* partial Fisher-Yates: pos[0..k) a uniform k-subset */
        int64_t j = i + (int64_t)(hl_rng_u64(rng) % (uint64_t)(n - i));
        int64_t t = pos[i];
        pos[i] = pos[j], pos[j] = t;
    }
    qsort(pos, (size_t)k, sizeof *pos, cmp_i64);
    memcpy(in, ids, (size_t)L * sizeof *in);
    for (int64_t i = 0; i < k; i++) {
        float u;
        hl_rng_rand_f32(rng, &u, 1);
        uint64_t r = hl_rng_u64(rng);
        target[i] = ids[pos[i]];
        if (u < p->mask_token_prob) in[pos[i]] = p->mask_id;
        else if (u < p->mask_token_prob + p->random_token_prob)
            in[pos[i]] = p->words[r % (uint64_t)p->n_words];
    }
    *K = k;
}

/* Row k of logits [V] -> softmax - onehot(t), divided by K, in place; returns the row's CE. */
static double ce_row(float *z, int64_t V, int64_t t, int64_t K) {
    double mx = z[0];
    for (int64_t v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    double s = 0;
    for (int64_t v = 0; v < V; v++) s += exp((double)z[v] - mx);
    double lse = mx + log(s), ce = lse - z[t];
    for (int64_t v = 0; v < V; v++) z[v] = (float)(exp((double)z[v] - lse) / (double)K);
    z[t] -= (float)(1.0 / (double)K);
    return ce;
}

hl_status hl_mlm_loss(const hl_ctx *ctx, const hl_tensor *E, float scale, int64_t K, const float *h,
                      const int64_t *target, double *loss, float *dh, float *dE) {
    int64_t V = E->shape[0], D = E->shape[1];
    if (K < 1 || E->ndim != 2)
        return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG, "mlm: %lld positions", (long long)K);
    for (int64_t k = 0; k < K; k++)
        if (target[k] < 0 || target[k] >= V)
            return hl_fail(ctx->err, HELIOS_ERR_INVALID_ARG,
                           "mlm: target id %lld out of the vocabulary (%lld)", (long long)target[k],
                           (long long)V);
    float *x = malloc((size_t)(K * D) * sizeof *x), *z = malloc((size_t)(K * V) * sizeof *z);
    hl_status st = x && z ? HL_OK : hl_fail(ctx->err, HELIOS_ERR_OOM, "mlm: out of memory");
    for (int64_t i = 0; st == HL_OK && i < K * D; i++) x[i] = scale * h[i];
    if (st == HL_OK) st = hl_linear(ctx, K, x, D, E, NULL, z, V); /* z [K, V] = x · Eᵀ */
    double sum = 0;
    for (int64_t k = 0; st == HL_OK && k < K; k++) sum += ce_row(z + k * V, V, target[k], K);
    /* dx = dz · E, dE += dzᵀ · x; then dh = scale · dx */
    if (st == HL_OK) st = hl_linear_backward(ctx, K, x, D, E, z, V, dh, D, 0, dE, NULL);
    for (int64_t i = 0; st == HL_OK && i < K * D; i++) dh[i] *= scale;
    if (st == HL_OK) *loss = sum / (double)K;
    free(x), free(z);
    return st;
}
