/* cpu attention with additive biases (T5's relative position bias and padding mask): the blocked
 * kernel of attention.c, whose softmax adds bias[h, i, :] and key_bias to the scores of each row
 * (see the plan at the top of attention.c). */
#include "ops/cpu/cpu_internal.h"
#include "ops/ops_backends.h"

hl_status hl_cpu_attention_biased(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                                  const float *q, int64_t ldq, const float *k, int64_t ldk,
                                  const float *v, int64_t ldv, float scale, const float *bias,
                                  const float *key_bias, hl_dtype compute, float *out, int64_t ldo) {
    return hl_cpu_attention_run(ctx, Sq, Sk, H, hd, q, ldq, k, ldk, v, ldv, scale, bias, key_bias,
                                compute, out, ldo);
}
