/* Synthetic training clips in latent space, for tests and benchmarks of the training engine
 * without a VAE or a text encoder: clip i has, per channel, a few plane waves moving at their own
 * speeds (a smooth, predictable video the transformer can learn), and a prompt embedding of
 * N(0, 1) values that selects it. Deterministic in (seed, i). */
#ifndef HL_TRAIN_SYNTHETIC_H
#define HL_TRAIN_SYNTHETIC_H

#include "train/objective_flow.h"

typedef struct hl_synthetic {
    int C, F, H, W, L, text_dim;
    int64_t count;
    float *latents, *embeds; /* [count, C, F, H, W], [count, L, text_dim] */
} hl_synthetic;

hl_status hl_synthetic_make(hl_synthetic *s, int C, int F, int H, int W, int L, int text_dim,
                            int64_t count, uint64_t seed, hl_error *err);
void hl_synthetic_free(hl_synthetic *s);
/* A clip source over s (which must outlive it). */
hl_latent_source hl_synthetic_source(hl_synthetic *s);

#endif
