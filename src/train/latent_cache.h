/* VAE latents and prompt embeddings of a dataset's clips, computed once and kept on disk, as the
 * released preprocessing does (ref: Helios tools/offload_data/get_short-latents.py; spec
 * training.md §2.2). docs/data.md describes the format.
 *
 * Per clip (index i of the dataset) one file CACHE/<i>.safetensors holds
 *   latents        F32 (C, F_lat, h, w)  the VAE posterior mean, normalised as the pipelines do
 *                                        ((z - latents_mean) · (1 / latents_std), vae/vae.h);
 *   latents_sigma  F32 (C, F_lat, h, w)  the posterior std in the same units (std / latents_std),
 *                                        so latents + latents_sigma · eps is the normalised
 *                                        posterior sample the reference stores;
 *   prompt_embeds  F32 (L, text_dim)     the caption through the pipelines' prompt encoding
 *                                        (text/prompt_encode.h: cleaning, padding to L =
 *                                        max_sequence_length, rows past the tokens zeroed);
 * and metadata: format, key (a hash of everything the content depends on), checksum (of the
 * tensor bytes), index, clip id, source, caption and the configuration (cache.json's fields).
 * The clip is VAE-encoded in windows of chunk_frames video frames (33 = 9 latent frames), each
 * with fresh causal caches, as the reference does, so every window starts with its own
 * first-frame latent; F_lat = (frames / chunk_frames) · (1 + (chunk_frames - 1) / 4).
 *
 * CACHE/cache.json records the configuration (source kind, world parameters, sizes, frames,
 * chunk_frames, max_sequence_length, shapes, and a fingerprint of each model folder: names,
 * sizes and first/last 64 KiB of its files). Opening a cache made for another configuration is
 * an error naming the first field that differs, unless recompute_mismatch is set: then every
 * clip is recomputed (as its key no longer matches).
 *
 * Crash safety: each file is written under "<i>.safetensors.part" (locked), fsync'ed, renamed and
 * the folder fsync'ed, so a kill leaves the complete file or none (a .part is replaced by the
 * next write of that clip). A file that does not validate (truncated, bad header, wrong shapes,
 * wrong key, checksum mismatch) is never used: it is recomputed with a warning naming it. */
#ifndef HL_TRAIN_LATENT_CACHE_H
#define HL_TRAIN_LATENT_CACHE_H

#include <stdint.h>

#include "ops/ops.h"
#include "train/dataset.h"

#define HL_LATENT_CACHE_FORMAT "helios-latent-cache 1"

typedef struct hl_latent_cache_config {
    const char *dir;       /* the cache folder (created when missing; its parent must exist) */
    const char *model_dir; /* a diffusers folder with vae/, text_encoder/, tokenizer/ ... */
    const char *vae_dir, *text_encoder_dir, *tokenizer_dir; /* ... or each given (NULL: there) */
    int chunk_frames;        /* 33: video frames per VAE encode, 1 + 4k; the clip's frames must
                              * be a multiple. 0: the whole clip in one encode (frames = 1 + 4k) */
    int max_sequence_length; /* 512 (1 .. HELIOS_MAX_SEQUENCE_LENGTH) */
    int recompute_mismatch;  /* 0: a cache made for another configuration is an error */
} hl_latent_cache_config;

void hl_latent_cache_config_default(hl_latent_cache_config *c);

typedef struct hl_latent_cache hl_latent_cache;

/* One cached clip (arrays malloc'ed; free with hl_cached_clip_free). */
typedef struct hl_cached_clip {
    int C, F, h, w;       /* latent channels, frames, height, width */
    float *latents;       /* (C, F, h, w) */
    float *latents_sigma; /* (C, F, h, w) */
    int text_len, text_dim;
    float *prompt_embeds; /* (text_len, text_dim) */
    char *caption;
} hl_cached_clip;

typedef struct hl_latent_cache_stats {
    int64_t computed; /* clips encoded by this cache object */
    int64_t reused;   /* clips read from valid files */
    int64_t rejected; /* files that did not validate and were recomputed */
} hl_latent_cache_stats;

/* Opens (creating when needed) the cache of ds in c->dir. Reads the model configs and the
 * tokenizer; the VAE and encoder weights are mapped only when a clip must be computed. ctx's
 * backend runs the encodes (the context is copied; errors go to each call's err) and must
 * outlive the cache, as must ds. */
hl_status hl_latent_cache_open(const hl_ctx *ctx, hl_dataset *ds, const hl_latent_cache_config *c,
                               hl_latent_cache **out, hl_error *err);
void hl_latent_cache_free(hl_latent_cache *lc);

/* Clip `index`: read from its file when that validates, else computed and written first. */
hl_status hl_latent_cache_get(hl_latent_cache *lc, int64_t index, hl_cached_clip *out,
                              hl_error *err);
/* Computes every clip whose file is missing or invalid (what a preprocessing run does). */
hl_status hl_latent_cache_fill(hl_latent_cache *lc, hl_error *err);
/* The path of clip index's file (valid until the next call on lc). */
const char *hl_latent_cache_path(hl_latent_cache *lc, int64_t index);
void hl_latent_cache_get_stats(const hl_latent_cache *lc, hl_latent_cache_stats *s);
/* The latent and text shapes every clip has. */
void hl_latent_cache_shape(const hl_latent_cache *lc, int *C, int *F, int *h, int *w, int *text_len,
                           int *text_dim);

void hl_cached_clip_free(hl_cached_clip *c);

#endif
