/* Pyramid stage operations of HeliosPyramidPipeline (spec §2.7, §3.4) on float32 latents.
 *
 * Latents are (B, C, T, H, W) contiguous; every op acts on each H x W plane alone, so they take
 * planes = B*C*T (the pipeline's permute to (B*T, C, H, W) does not change the per-plane math).
 *
 *   start noise, stage 0:   z -> hl_pyramid_down2x applied (stages - 1) times
 *   stage s > 0:            x <- alpha_s * nearest_up2x(x) + beta_s * block_noise
 */
#ifndef HL_PYRAMID_H
#define HL_PYRAMID_H

#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"
#include "sample/rng.h"

/* F.interpolate(x, H/2 x W/2, bilinear, align_corners=False) * scale on [planes, H, W] ->
 * [planes, H/2, W/2]. At exactly half size every output averages one 2x2 block; the rounding is
 * torch's: fl(fl(a + b) + fl(c + d)) / 4 with (a, b) the top pair and (c, d) the bottom pair.
 * scale 2 for the start noise (restores unit variance: the pipeline's noise pyramid), 1 for clean
 * latents (the training's target pyramid). H and W must be even. */
hl_status hl_pyramid_down2x(const float *x, int64_t planes, int H, int W, float scale, float *y,
                            hl_error *err);

/* Nearest x2: [planes, h, w] -> [planes, 2h, 2w], each value copied into its 2x2 block. */
void hl_pyramid_up2x_nearest(const float *x, int64_t planes, int h, int w, float *y);

/* L = cholesky((1 + gamma) I - gamma 11^T + 1e-8 I) (4x4, row-major, lower), in float64: the
 * matrix the reference intends (oracle README §6.1; its float32 factorization fails). */
hl_status hl_pyramid_block_cholesky(double gamma, double L[16], hl_error *err);

/* sample_block_noise after the draw: z [planes*h*w, 4] (block order (plane, by, bx)) ->
 * noise [planes, 2h, 2w] with n = L z per block and n[2*ph + pw] at pixel (2by + ph, 2bx + pw).
 * L is rounded to float32 and each n_k = sum_m z_m L[k][m] accumulated in float32 with FMAs in
 * order m = 0..3, as the reference's float32 matmul does (bit-exact on the recorded noise). With
 * out_dtype HL_BF16 the result is rounded through bfloat16 (the pipeline casts the noise to the
 * transformer dtype; the tiny reference runs in float32). */
hl_status hl_pyramid_block_noise(const float *z, const double L[16], int64_t planes, int h, int w,
                                 hl_dtype out_dtype, float *noise, hl_error *err);

/* The same with z drawn from g: torch.randn(planes*h*w, 4) on the pipeline generator. */
hl_status hl_pyramid_sample_block_noise(hl_rng *g, double gamma, int64_t planes, int h, int w,
                                        hl_dtype out_dtype, float *noise, hl_error *err);

/* x <- alpha * x_up + beta * noise in float32 (python-float coefficients rounded to float,
 * one rounding per operation as torch does). out may alias x_up. */
void hl_pyramid_renoise(const float *x_up, const float *noise, int64_t n, double alpha, double beta,
                        float *out);

#endif
