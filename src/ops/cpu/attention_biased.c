/* cpu attention with additive biases: the reference until a fused kernel lands (the T5 encoder
 * spends ~2% of its FLOPs here). */
#include "ops/ops_backends.h"

hl_status hl_cpu_attention_biased(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                                  const float *q, int64_t ldq, const float *k, int64_t ldk,
                                  const float *v, int64_t ldv, float scale, const float *bias,
                                  const float *key_bias, hl_dtype compute, float *out, int64_t ldo) {
    return hl_ref_attention_biased(ctx, Sq, Sk, H, hd, q, ldq, k, ldk, v, ldv, scale, bias, key_bias,
                                   compute, out, ldo);
}
