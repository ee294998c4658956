/* Reference GEMM: the obvious triple loop, weights up-converted exactly, sums in double so the
 * oracle is at least as accurate as any backend it judges. */
#include <stdlib.h>

#include "ops/ops_backends.h"
#include "ops/ref/ref_util.h"

hl_status hl_ref_linear(const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx,
                        const hl_tensor *W, const hl_tensor *b, float *y, int64_t ldy) {
    int64_t N = W->shape[0], K = hl_tensor_numel(W) / (N ? N : 1);
    float *w = malloc((size_t)(K ? K : 1) * sizeof *w);
    if (!w)
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "linear: out of memory (K=%lld)", (long long)K);
    for (int64_t n = 0; n < N; n++) {
        hl_convert_to_f32(W->dtype,
                          (const char *)W->data + (size_t)(n * K) * hl_dtype_size(W->dtype), w,
                          (size_t)K);
        double bias = b ? hl_ref_load(b, n) : 0.0;
        for (int64_t m = 0; m < M; m++) {
            const float *xr = x + m * ldx;
            double s = bias;
            for (int64_t k = 0; k < K; k++) s += (double)xr[k] * w[k];
            y[m * ldy + n] = (float)s;
        }
    }
    free(w);
    return HL_OK;
}
