/* Layout ops on host memory (pure data movement): the one implementation of the ref and cpu
 * backends' tables. */
#include "ops/ops_backends.h"

static inline int64_t clamp_idx(int64_t i, int64_t n) { return i < n ? i : n - 1; }

hl_status hl_host_patchify3d(const hl_ctx *ctx, int64_t C, int64_t T, int64_t H, int64_t W, int kt,
                             int kh, int kw, const float *x, float *rows) {
    int64_t Tp = (T + kt - 1) / kt, Hp = (H + kh - 1) / kh, Wp = (W + kw - 1) / kw;
    int64_t K = C * kt * kh * kw;
    for (int64_t t = 0; t < Tp; t++)
        for (int64_t yy = 0; yy < Hp; yy++)
            for (int64_t xx = 0; xx < Wp; xx++) {
                float *r = rows + ((t * Hp + yy) * Wp + xx) * K;
                for (int64_t c = 0; c < C; c++)
                    for (int a = 0; a < kt; a++)
                        for (int b = 0; b < kh; b++)
                            for (int d = 0; d < kw; d++) {
                                /* replicate padding: indices past the end repeat the last one */
                                int64_t ti = clamp_idx(t * kt + a, T);
                                int64_t yi = clamp_idx(yy * kh + b, H);
                                int64_t xi = clamp_idx(xx * kw + d, W);
                                *r++ = x[((c * T + ti) * H + yi) * W + xi];
                            }
            }
    return HL_OK;
}

hl_status hl_host_unpatchify3d(const hl_ctx *ctx, int64_t C, int64_t T, int64_t Hp, int64_t Wp,
                               int kt, int kh, int kw, const float *rows, float *y) {
    int64_t Ho = Hp * kh, Wo = Wp * kw, To = T * kt, F = (int64_t)kt * kh * kw * C;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < Hp; h++)
            for (int64_t w = 0; w < Wp; w++) {
                const float *r = rows + ((t * Hp + h) * Wp + w) * F;
                for (int pt = 0; pt < kt; pt++)
                    for (int ph = 0; ph < kh; ph++)
                        for (int pw = 0; pw < kw; pw++)
                            for (int64_t c = 0; c < C; c++)
                                y[((c * To + t * kt + pt) * Ho + h * kh + ph) * Wo + w * kw + pw] =
                                    r[((pt * kh + ph) * kw + pw) * C + c];
            }
    return HL_OK;
}

hl_status hl_host_patchify3d_backward(const hl_ctx *ctx, int64_t C, int64_t T, int64_t H, int64_t W,
                                      int kt, int kh, int kw, const float *drows, float *dx) {
    int64_t Tp = (T + kt - 1) / kt, Hp = (H + kh - 1) / kh, Wp = (W + kw - 1) / kw;
    int64_t K = C * kt * kh * kw;
    for (int64_t i = 0; i < C * T * H * W; i++) dx[i] = 0.0f;
    for (int64_t t = 0; t < Tp; t++) /* the forward's loops, gathering turned into adding */
        for (int64_t yy = 0; yy < Hp; yy++)
            for (int64_t xx = 0; xx < Wp; xx++) {
                const float *r = drows + ((t * Hp + yy) * Wp + xx) * K;
                for (int64_t c = 0; c < C; c++)
                    for (int a = 0; a < kt; a++)
                        for (int b = 0; b < kh; b++)
                            for (int d = 0; d < kw; d++) {
                                int64_t ti = clamp_idx(t * kt + a, T);
                                int64_t yi = clamp_idx(yy * kh + b, H);
                                int64_t xi = clamp_idx(xx * kw + d, W);
                                dx[((c * T + ti) * H + yi) * W + xi] += *r++;
                            }
            }
    return HL_OK;
}

hl_status hl_host_unpatchify3d_backward(const hl_ctx *ctx, int64_t C, int64_t T, int64_t Hp,
                                        int64_t Wp, int kt, int kh, int kw, const float *dy,
                                        float *drows) {
    int64_t Ho = Hp * kh, Wo = Wp * kw, To = T * kt, F = (int64_t)kt * kh * kw * C;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < Hp; h++)
            for (int64_t w = 0; w < Wp; w++) {
                float *r = drows + ((t * Hp + h) * Wp + w) * F;
                for (int pt = 0; pt < kt; pt++)
                    for (int ph = 0; ph < kh; ph++)
                        for (int pw = 0; pw < kw; pw++)
                            for (int64_t c = 0; c < C; c++)
                                r[((pt * kh + ph) * kw + pw) * C + c] =
                                    dy[((c * To + t * kt + pt) * Ho + h * kh + ph) * Wo + w * kw +
                                       pw];
            }
    return HL_OK;
}
