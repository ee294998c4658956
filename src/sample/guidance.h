/* Classifier-free guidance (spec §2.8). v_c: prediction with the prompt, v_u: with the negative
 * prompt; B samples of n elements each, float32 in the reference's order of operations. */
#ifndef HL_GUIDANCE_H
#define HL_GUIDANCE_H

#include <stdint.h>

/* v = v_u + g (v_c - v_u). */
void hl_guidance_cfg(int64_t total, const float *v_c, const float *v_u, float g, float *v);

/* CFG-Zero*: per sample α = <v_c, v_u> / (|v_u|² + 1e-8), then v = v_u α + g (v_c - v_u α). */
void hl_guidance_cfg_zero_star(int B, int64_t n, const float *v_c, const float *v_u, float g,
                               float *v);

#endif
