/* The Wan VAE with random weights: the decoder benchmark of `helios bench` and the synthetic
 * models of tests/test_vae.c; not used by the pipeline. */
#ifndef HL_VAE_BENCH_H
#define HL_VAE_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "vae/vae.h"

/* A model with random weights in dt (F32 or BF16): the decoder (and the encoder when
 * with_encoder), N(0, 1/fan_in)-like weights, small biases, gains near 1; deterministic in seed. */
hl_status hl_vae_create_random(const hl_vae_config *cfg, hl_dtype dt, uint64_t seed,
                               bool with_encoder, hl_vae **out, hl_error *err);

/* Decodes `frames` output frames (1 + 4k) of height x width with a full-size Wan 2.1 decoder of
 * random weights in dt on the cpu backend; *seconds (decode only, weights ready, packs made on
 * the fly as in a first real decode) and *gflop (the convs' 2·MACs / 1e9). */
hl_status hl_vae_bench(int height, int width, int frames, hl_dtype dt, double *seconds,
                       double *gflop);

#endif
