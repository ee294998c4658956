/* Reference attention: per head and query, scores (plus optional additive biases), a
 * max-subtracted softmax, the weighted sum. */
#include <math.h>
#include <stdlib.h>

#include "ops/ops_backends.h"

hl_status hl_ref_attention_biased(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                                  const float *q, int64_t ldq, const float *k, int64_t ldk,
                                  const float *v, int64_t ldv, float scale, const float *bias,
                                  const float *key_bias, hl_dtype compute, float *out,
                                  int64_t ldo) {
    double *p = malloc((size_t)(Sk ? Sk : 1) * sizeof *p);
    double *acc = malloc((size_t)(hd ? hd : 1) * sizeof *acc);
    if (!p || !acc) {
        free(p);
        free(acc);
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "attention: out of memory (Sk=%lld)",
                       (long long)Sk);
    }
    for (int h = 0; h < H; h++) {
        for (int64_t i = 0; i < Sq; i++) {
            const float *qi = q + i * ldq + (int64_t)h * hd;
            double mx = -INFINITY;
            for (int64_t j = 0; j < Sk; j++) {
                const float *kj = k + j * ldk + (int64_t)h * hd;
                double s = 0.0;
                for (int d = 0; d < hd; d++) s += (double)qi[d] * kj[d];
                p[j] = s * scale;
                if (bias) p[j] += bias[((int64_t)h * Sq + i) * Sk + j];
                if (key_bias) p[j] += key_bias[j];
                if (p[j] > mx) mx = p[j];
            }
            double sum = 0.0; /* exp(-FLT_MAX - mx) underflows to an exact 0 for masked keys */
            for (int64_t j = 0; j < Sk; j++) sum += (p[j] = exp(p[j] - mx));
            for (int d = 0; d < hd; d++) acc[d] = 0.0;
            for (int64_t j = 0; j < Sk; j++) {
                const float *vj = v + j * ldv + (int64_t)h * hd;
                for (int d = 0; d < hd; d++) acc[d] += p[j] * vj[d];
            }
            float *o = out + i * ldo + (int64_t)h * hd;
            for (int d = 0; d < hd; d++) o[d] = (float)(acc[d] / sum);
        }
    }
    free(p);
    free(acc);
    return HL_OK;
}
