/* Reference backward passes: the obvious loops, sums in double (the oracle of the gradient mode
 * of tests/test_ops.c, itself checked against finite differences there). */
#include <math.h>
#include <stdlib.h>

#include "ops/ops_backends.h"
#include "ops/ref/ref_util.h"

hl_status hl_ref_linear_backward(const hl_ctx *ctx, int64_t M, const float *x, int64_t ldx,
                                 const hl_tensor *W, const float *dy, int64_t lddy, float *dx,
                                 int64_t lddx, int accumulate_dx, float *dW, float *db) {
    int64_t N = W->shape[0], K = hl_tensor_numel(W) / N;
    if (dx) { /* dx[m, k] = Σ_n dy[m, n] W[n, k] */
        double *acc = malloc((size_t)K * sizeof *acc);
        if (!acc) return hl_fail(ctx->err, HELIOS_ERR_OOM, "linear_backward: out of memory");
        for (int64_t m = 0; m < M; m++) {
            for (int64_t k = 0; k < K; k++) acc[k] = accumulate_dx ? dx[m * lddx + k] : 0.0;
            for (int64_t n = 0; n < N; n++) {
                double g = dy[m * lddy + n];
                for (int64_t k = 0; k < K; k++) acc[k] += g * hl_ref_load(W, n * K + k);
            }
            for (int64_t k = 0; k < K; k++) dx[m * lddx + k] = (float)acc[k];
        }
        free(acc);
    }
    for (int64_t n = 0; n < N; n++) {
        if (dW) /* dW[n, k] += Σ_m dy[m, n] x[m, k] */
            for (int64_t k = 0; k < K; k++) {
                double s = dW[n * K + k];
                for (int64_t m = 0; m < M; m++) s += (double)dy[m * lddy + n] * x[m * ldx + k];
                dW[n * K + k] = (float)s;
            }
        if (db) {
            double s = db[n];
            for (int64_t m = 0; m < M; m++) s += dy[m * lddy + n];
            db[n] = (float)s;
        }
    }
    return HL_OK;
}

/* One head's backward; p, dp: [Sk] scratch, gk, gv: [Sk, hd] accumulators. */
static void attention_head_backward(int64_t Sq, int64_t Sk, int h, int hd, const float *q,
                                    int64_t ldq, const float *k, int64_t ldk, const float *v,
                                    int64_t ldv, float scale, const float *bias,
                                    const float *key_bias, const float *dout, int64_t lddo,
                                    float *dq, int64_t lddq, float *dbias, double *p, double *dp,
                                    double *gk, double *gv) {
    int64_t o = (int64_t)h * hd;
    for (int64_t j = 0; j < Sk * hd; j++) gk[j] = gv[j] = 0.0;
    for (int64_t i = 0; i < Sq; i++) {
        const float *qi = q + i * ldq + o, *gi = dout + i * lddo + o;
        double mx = -INFINITY, sum = 0.0, D = 0.0;
        for (int64_t j = 0; j < Sk; j++) { /* the forward's scores and softmax, again */
            const float *kj = k + j * ldk + o;
            double s = 0.0;
            for (int d = 0; d < hd; d++) s += (double)qi[d] * kj[d];
            p[j] = s * scale;
            if (bias) p[j] += bias[((int64_t)h * Sq + i) * Sk + j];
            if (key_bias) p[j] += key_bias[j];
            if (p[j] > mx) mx = p[j];
        }
        for (int64_t j = 0; j < Sk; j++) sum += (p[j] = exp(p[j] - mx));
        for (int64_t j = 0; j < Sk; j++) {
            const float *vj = v + j * ldv + o;
            double s = 0.0;
            for (int d = 0; d < hd; d++) s += (double)gi[d] * vj[d];
            p[j] /= sum;
            dp[j] = s;     /* ∂L/∂P[i, j] = dout_i · v_j */
            D += p[j] * s; /* = dout_i · out_i */
        }
        double *acc = dp; /* reuse: dS[i, j] = P (dP - D) */
        for (int64_t j = 0; j < Sk; j++) acc[j] = p[j] * (dp[j] - D);
        for (int d = 0; d < hd; d++) {
            double s = 0.0;
            for (int64_t j = 0; j < Sk; j++) s += acc[j] * k[j * ldk + o + d];
            if (dq) dq[i * lddq + o + d] = (float)(scale * s);
        }
        for (int64_t j = 0; j < Sk; j++) {
            for (int d = 0; d < hd; d++) {
                gk[j * hd + d] += scale * acc[j] * qi[d];
                gv[j * hd + d] += p[j] * gi[d];
            }
            if (dbias) {
                float *b = dbias + ((int64_t)h * Sq + i) * Sk + j;
                *b = (float)(*b + acc[j]);
            }
        }
    }
}

hl_status hl_ref_attention_biased_backward(const hl_ctx *ctx, int64_t Sq, int64_t Sk, int H, int hd,
                                           const float *q, int64_t ldq, const float *k, int64_t ldk,
                                           const float *v, int64_t ldv, float scale,
                                           const float *bias, const float *key_bias,
                                           hl_dtype compute, const float *out, int64_t ldo,
                                           const float *dout, int64_t lddo, float *dq, int64_t lddq,
                                           float *dk, int64_t lddk, float *dv, int64_t lddv,
                                           float *dbias) {
    (void)compute, (void)out, (void)ldo; /* P·v is recomputed in double: D is exact */
    double *p = malloc((size_t)Sk * sizeof *p), *dp = malloc((size_t)Sk * sizeof *dp);
    double *gk = malloc((size_t)(Sk * hd) * sizeof *gk),
           *gv = malloc((size_t)(Sk * hd) * sizeof *gv);
    if (!p || !dp || !gk || !gv) {
        free(p), free(dp), free(gk), free(gv);
        return hl_fail(ctx->err, HELIOS_ERR_OOM, "attention_backward: out of memory (Sk=%lld)",
                       (long long)Sk);
    }
    for (int h = 0; h < H; h++) {
        attention_head_backward(Sq, Sk, h, hd, q, ldq, k, ldk, v, ldv, scale, bias, key_bias, dout,
                                lddo, dq, lddq, dbias, p, dp, gk, gv);
        for (int64_t j = 0; j < Sk; j++)
            for (int d = 0; d < hd; d++) {
                if (dk) dk[j * lddk + (int64_t)h * hd + d] = (float)gk[j * hd + d];
                if (dv) dv[j * lddv + (int64_t)h * hd + d] = (float)gv[j * hd + d];
            }
    }
    free(p), free(dp), free(gk), free(gv);
    return HL_OK;
}

hl_status hl_ref_rope_backward(const hl_ctx *ctx, int64_t M, int H, int hd, float *dx, int64_t ldx,
                               const float *rope) {
    int half = hd / 2;
    for (int64_t m = 0; m < M; m++) {
        const float *c = rope + m * hd, *s = c + half;
        for (int h = 0; h < H; h++) {
            float *d = dx + m * ldx + (int64_t)h * hd;
            for (int j = 0; j < half; j++) { /* the transposed rotation */
                double a = d[2 * j], b = d[2 * j + 1];
                d[2 * j] = (float)(a * c[j] + b * s[j]);
                d[2 * j + 1] = (float)(-a * s[j] + b * c[j]);
            }
        }
    }
    return HL_OK;
}

/* gelu_tanh(v) and its derivative. */
static void gelu_tanh_d(double v, double *f, double *df) {
    const double k = 0.7978845608028654, a = 0.044715; /* sqrt(2/pi) */
    double t = tanh(k * (v + a * v * v * v));
    *f = 0.5 * v * (1.0 + t);
    *df = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * a * v * v);
}

hl_status hl_ref_gelu_tanh_backward(const hl_ctx *ctx, int64_t n, const float *x, const float *dy,
                                    float *dx) {
    for (int64_t i = 0; i < n; i++) {
        double f, df;
        gelu_tanh_d(x[i], &f, &df);
        dx[i] = (float)(dy[i] * df);
    }
    return HL_OK;
}

hl_status hl_ref_silu_backward(const hl_ctx *ctx, int64_t n, const float *x, const float *dy,
                               float *dx) {
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], s = 1.0 / (1.0 + exp(-v));
        dx[i] = (float)(dy[i] * s * (1.0 + v * (1.0 - s)));
    }
    return HL_OK;
}

hl_status hl_ref_gelu_tanh_mul_backward(const hl_ctx *ctx, int64_t n, const float *x,
                                        const float *g, const float *dy, float *dx, float *dg) {
    for (int64_t i = 0; i < n; i++) {
        double f, df, gy = dy[i], gi = g[i];
        gelu_tanh_d(x[i], &f, &df);
        if (dx) dx[i] = (float)(gy * gi * df);
        if (dg) dg[i] = (float)(gy * f);
    }
    return HL_OK;
}

hl_status hl_ref_add_gated_backward(const hl_ctx *ctx, int64_t M, int64_t D, const float *dx,
                                    int64_t lddx, const float *y, int64_t ldy, const float *gate,
                                    float *dy, int64_t lddy, float *dgate) {
    for (int64_t i = 0; i < D; i++) {
        double s = 0.0;
        for (int64_t m = 0; m < M; m++) {
            if (dy) dy[m * lddy + i] = (gate ? gate[i] : 1.0f) * dx[m * lddx + i];
            s += (double)dx[m * lddx + i] * y[m * ldy + i];
        }
        if (dgate) dgate[i] = (float)(dgate[i] + s);
    }
    return HL_OK;
}

hl_status hl_ref_scale_heads_backward(const hl_ctx *ctx, int64_t M, int H, int hd, const float *x,
                                      int64_t ldx, const float *s, float *dx, int64_t lddx,
                                      float *ds) {
    for (int h = 0; h < H; h++) {
        double acc = 0.0;
        for (int64_t m = 0; m < M; m++)
            for (int d = 0; d < hd; d++) {
                float *g = dx + m * lddx + (int64_t)h * hd + d;
                if (ds) acc += (double)*g * x[m * ldx + (int64_t)h * hd + d];
                *g *= s[h];
            }
        if (ds) ds[h] = (float)(ds[h] + acc);
    }
    return HL_OK;
}

hl_status hl_ref_relative_bias_backward(const hl_ctx *ctx, int H, int64_t Sq, int64_t Sk,
                                        const float *dbias, float *drel) {
    int64_t R = Sq + Sk - 1;
    for (int h = 0; h < H; h++)
        for (int64_t r = 0; r < R; r++) { /* offset j - i = r - (Sq - 1) */
            int64_t off = r - (Sq - 1);
            double s = 0.0;
            for (int64_t i = 0; i < Sq; i++) {
                int64_t j = i + off;
                if (j >= 0 && j < Sk) s += dbias[((int64_t)h * Sq + i) * Sk + j];
            }
            drel[(int64_t)h * R + r] = (float)(drel[(int64_t)h * R + r] + s);
        }
    return HL_OK;
}
