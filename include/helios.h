/*
 * helios.h — the one public header of helios, a C engine for the Helios autoregressive
 * video diffusion model family (arXiv 2603.04379).
 *
 * Conventions
 *   - Every call that can fail returns helios_status; HELIOS_OK is 0. The library never exits or
 *     aborts on bad input. The text of the last failure is helios_session_error(session).
 *   - Handles are opaque. Parameter structs are filled with defaults by their *_init function,
 *     then changed field by field, so new fields can be added without breaking callers.
 *   - Tensors cross the API as float32, contiguous, PyTorch dim order: latents (B, C, T, H, W).
 *
 * Typical use
 *   helios_session_params sp;  helios_session_params_init(&sp);
 *   helios_session *s;         helios_session_new(&sp, &s);
 *   helios_model_params mp;    helios_model_params_init(&mp);
 *   mp.path = "Helios-Distilled/transformer";
 *   helios_transformer *t;
 *   if (helios_transformer_load(s, &mp, &t) != HELIOS_OK)
 *       fprintf(stderr, "%s\n", helios_session_error(s));
 *   ...
 *   helios_transformer_free(t);
 *   helios_session_free(s);
 */
#ifndef HELIOS_H
#define HELIOS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum helios_status {
    HELIOS_OK = 0,
    HELIOS_ERR_INVALID_ARG,  /* a caller passed an impossible value */
    HELIOS_ERR_IO,           /* a file could not be opened, read, mapped or written */
    HELIOS_ERR_FORMAT,       /* a file is malformed: truncated, bad header, bad JSON, ... */
    HELIOS_ERR_SHAPE,        /* a tensor has the wrong shape */
    HELIOS_ERR_DTYPE,        /* a tensor has the wrong or an unsupported dtype */
    HELIOS_ERR_MISSING,      /* a required tensor, key or file is absent */
    HELIOS_ERR_OOM,          /* out of memory */
    HELIOS_ERR_UNSUPPORTED,  /* valid, but not implemented by this build */
    HELIOS_ERR_CANCELLED,    /* the caller asked to stop */
    HELIOS_ERR_INTERNAL,     /* a bug: please report it */
} helios_status;

/* Short name of a status ("format error", ...). Never NULL. */
const char *helios_status_str(helios_status st);

/* ---- logging -------------------------------------------------------------------------------- */

typedef enum helios_log_level {
    HELIOS_LOG_ERROR = 0,
    HELIOS_LOG_WARN = 1,
    HELIOS_LOG_INFO = 2,
    HELIOS_LOG_DEBUG = 3,
} helios_log_level;

typedef void (*helios_log_fn)(helios_log_level level, const char *msg, void *user);

/* Process-wide log sink; NULL restores the default (stderr, INFO and above). */
void helios_set_log(helios_log_fn fn, void *user);
void helios_set_log_level(helios_log_level max_level);

/* ---- sessions ------------------------------------------------------------------------------- */

typedef enum helios_backend {
    HELIOS_BACKEND_CPU = 0,  /* optimized CPU: oneDNN GEMMs + own AVX-512 kernels, OpenMP */
    HELIOS_BACKEND_REF = 1,  /* plain scalar C, float32: the oracle the fast backends are tested against */
} helios_backend;

typedef struct helios_session_params {
    helios_backend backend;
    int n_threads;           /* 0 = all cores */
} helios_session_params;

typedef struct helios_session helios_session;

void helios_session_params_init(helios_session_params *p);
helios_status helios_session_new(const helios_session_params *p, helios_session **out);
void helios_session_free(helios_session *s);
/* Message of the last failure in this session ("" if none). Valid until the next call. */
const char *helios_session_error(const helios_session *s);

/* ---- the Helios transformer ------------------------------------------------------------------ */

typedef struct helios_model_params {
    const char *path;        /* a transformer folder (config.json + *.safetensors[.index.json]) */
    const char *config_path; /* optional: config.json elsewhere (NULL = path/config.json) */
    const char *weights_path;/* optional: one .safetensors file or an index (NULL = found in path) */
} helios_model_params;

typedef struct helios_transformer helios_transformer;

void helios_model_params_init(helios_model_params *p);
helios_status helios_transformer_load(helios_session *s, const helios_model_params *p,
                                      helios_transformer **out);
void helios_transformer_free(helios_transformer *t);

/* Inputs of one transformer forward (the diffusers forward() arguments). Shapes in PyTorch order.
 * History parts are optional (NULL data = absent); indices may be NULL (0..T-1). */
typedef struct helios_dit_input {
    int batch;                         /* B */
    int frames, height, width;         /* T_c, h, w of hidden_states (latent grid) */
    const float *hidden_states;        /* (B, C_in, T_c, h, w) */
    const double *timestep;            /* (B,) timesteps; rounded to float32 inside, as the reference */
    int text_len;                      /* L_txt */
    const float *encoder_hidden_states;/* (B, L_txt, text_dim) */
    const int64_t *indices_hidden_states;      /* (T_c) */
    int short_frames, mid_frames, long_frames; /* history frame counts (0 = absent) */
    int hist_height, hist_width;       /* spatial size of the history latents */
    const float *latents_history_short;/* (B, C_in, short_frames, hist_height, hist_width) */
    const float *latents_history_mid;
    const float *latents_history_long;
    const int64_t *indices_latents_history_short;
    const int64_t *indices_latents_history_mid;
    const int64_t *indices_latents_history_long;
} helios_dit_input;

void helios_dit_input_init(helios_dit_input *in);

/* Runs the forward; out = (B, C_out, T_c, h, w), the flow (velocity) prediction. */
helios_status helios_transformer_forward(helios_session *s, helios_transformer *t,
                                         const helios_dit_input *in, float *out);

/* ---- pipelines: a diffusers model folder and step-wise generation ------------------------ */

/* A model folder in the diffusers layout: model_index.json, scheduler/, transformer/,
 * text_encoder/ + tokenizer/ (UMT5 + SentencePiece), vae/. model_index.json decides the recipe:
 * HeliosPipeline = Base (UniPC, 50 steps, CFG 5); HeliosPyramidPipeline with is_cfg_zero_star =
 * Mid (pyramid 20/20/20, CFG-Zero* 5); with is_distilled = Distilled (DMD 2/2/2, no CFG,
 * amplified first chunk). */
typedef struct helios_pipeline helios_pipeline;

typedef struct helios_pipeline_params {
    const char *model_dir;
    int low_memory;           /* release the text encoder after each prompt is encoded */
} helios_pipeline_params;

void helios_pipeline_params_init(helios_pipeline_params *p);
helios_status helios_pipeline_load(helios_session *s, const helios_pipeline_params *p, helios_pipeline **out);
void helios_pipeline_free(helios_pipeline *p);

typedef enum helios_sampler {
    HELIOS_SAMPLER_DEFAULT = 0, /* the folder's scheduler_config.json */
    HELIOS_SAMPLER_UNIPC,       /* UniPC bh2 (Base, Mid) */
    HELIOS_SAMPLER_EULER,       /* flow-matching Euler */
    HELIOS_SAMPLER_DMD,         /* few-step DMD (Distilled) */
} helios_sampler;

typedef struct helios_gen_params {
    const char *prompt;            /* text, encoded by the pipeline's text encoder ... */
    const char *negative_prompt;   /* (NULL = "" when guidance is on) */
    const float *prompt_embeds;    /* ... or precomputed embeddings (1, text_len, text_dim) */
    const float *negative_prompt_embeds;
    int text_len;                  /* of the embeddings; the encoder pads to max_sequence_length */
    int max_sequence_length;       /* 512 */
    int height, width;             /* pixels; the latent is /8, must split into the pyramid */
    int num_frames;                /* video frames wanted; 0 = num_chunks decides */
    int num_chunks;                /* 0 = from num_frames; < 0 = no end (stream until stopped) */
    int latent_frames_per_chunk;   /* 9 (= 33 video frames) */
    int steps;                     /* Base: steps; 0 = recipe default */
    int pyramid_steps[3];          /* Mid/Distilled: steps per stage; 0 = recipe default */
    float guidance_scale;          /* < 0 = recipe default; <= 1 turns CFG off */
    helios_sampler sampler;        /* override of the folder's scheduler type */
    uint64_t seed;
    int decode;                    /* 1: decode each chunk to RGB with the VAE; 0: latents only */
    const float *image;            /* I2V: (3, height, width) in [-1, 1], or NULL */
    const float *video;            /* V2V: (3, video_frames, height, width) in [-1, 1], or NULL */
    int video_frames;
} helios_gen_params;

void helios_gen_params_init(helios_gen_params *p);

/* What one helios_gen_step did. */
typedef struct helios_gen_progress {
    int chunk, n_chunks;           /* n_chunks < 0: unbounded */
    int stage, n_stages, step, n_steps;
    int chunk_done;                /* this step finished a chunk: latents below */
    const float *latents;          /* (1, 16, F, H/8, W/8) of the chunk, valid until the next step */
    int latent_frames, latent_height, latent_width;
    const float *frames;           /* with decode: (3, chunk_frames, height, width) in [-1, 1] */
    int chunk_frames;              /* frames decoded from the chunk (33) */
    int n_frames;                  /* of which belong to the video: all but on the last chunk of a
                                    * bounded video, trimmed so the video has 4k + 1 frames */
    int finished;                  /* the last chunk is done */
} helios_gen_progress;

typedef struct helios_gen helios_gen;

helios_status helios_gen_begin(helios_pipeline *p, const helios_gen_params *g, helios_gen **out);
/* One sampler step (one or two transformer calls). Stop calling to cancel. */
helios_status helios_gen_step(helios_gen *g, helios_gen_progress *progress);
/* Moves the conditioning to a new prompt, interpolating the embeddings linearly over the next
 * `chunks` chunks (spec §2.3's interactive mode; 0 or 1 = at once). */
helios_status helios_gen_set_prompt(helios_gen *g, const char *prompt, const char *negative_prompt, int chunks);
void helios_gen_end(helios_gen *g);

/* Blocking: runs every step; on_progress (may be NULL) sees each step and each finished chunk
 * before the next starts; a non-zero return cancels (HELIOS_ERR_CANCELLED). */
typedef int (*helios_progress_fn)(const helios_gen_progress *p, void *user);
helios_status helios_generate(helios_pipeline *p, const helios_gen_params *g, helios_progress_fn on_progress,
                              void *user);

#ifdef __cplusplus
}
#endif
#endif /* HELIOS_H */
