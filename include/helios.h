/*
 * helios.h — the one public header of helios, a C engine for the Helios autoregressive
 * video diffusion model family (arXiv 2603.04379). C11 and C++11 compatible.
 *
 * Conventions
 *   - Every call that can fail returns helios_status; HELIOS_OK is 0. The library never exits or
 *     aborts on bad input.
 *   - Errors: a call made on an object that keeps an error (a generation, a video writer) leaves
 *     its message there: helios_gen_error(g), helios_video_writer_error(w). Every other call --
 *     loading, creating an object, reading media -- leaves it in its session:
 *     helios_session_error(s). So a failing generation never overwrites another generation's
 *     message, nor the session's.
 *   - Handles are opaque. Parameter structs are filled with defaults by their *_init function,
 *     then changed field by field, so new fields can be added without breaking callers.
 *   - Every *_free accepts NULL.
 *   - Tensors cross the API as float32, contiguous, PyTorch dim order: latents (B, C, T, H, W);
 *     video frames (3, T, H, W) with values in [-1, 1] (what the VAE decodes).
 *   - Names are helios_<object>_<verb> (helios_session_new, helios_gen_step, helios_log_set); a
 *     call that only returns a property is helios_<object>_<property> (helios_session_error,
 *     helios_status_str).
 *
 * Threads
 *   - Different sessions, and the objects made from each, may be used from different threads at
 *     the same time (the optimized backend serialises its oneDNN calls internally).
 *   - Calls on one session and on everything made from it (transformers, pipelines,
 *     generations, media objects) must not run at the same time: one thread at a time, or the
 *     caller's own lock. In particular one generation must never be stepped from two threads.
 *     Several generations of one pipeline may be interleaved from one thread (each keeps its own
 *     state and error).
 *   - helios_log_set and helios_log_level_set change process-wide state: call them before other
 *     threads use the library. The log sink itself may be called from any thread.
 *   - helios_session_params.n_threads is applied to the OpenMP thread count of the thread that
 *     creates the session.
 *   - helios_version, helios_status_str and helios_recipe_defaults_get may be called anywhere.
 *
 * Typical use
 *   helios_session_params sp;  helios_session_params_init(&sp);
 *   helios_session *s;         helios_session_new(&sp, &s);
 *   helios_pipeline_params pp; helios_pipeline_params_init(&pp);
 *   pp.model_dir = "Helios-Distilled";
 *   helios_pipeline *p;
 *   if (helios_pipeline_load(s, &pp, &p) != HELIOS_OK)
 *       fprintf(stderr, "%s\n", helios_session_error(s));
 *   helios_gen_params gp;      helios_gen_params_init(&gp);
 *   gp.prompt = "a red ball bouncing";
 *   helios_gen *g;
 *   if (helios_gen_new(p, &gp, &g) == HELIOS_OK && helios_gen_run(g, NULL, NULL) != HELIOS_OK)
 *       fprintf(stderr, "%s\n", helios_gen_error(g));
 *   helios_gen_free(g);        (see helios_video_writer_* for writing the frames)
 *   helios_pipeline_free(p);
 *   helios_session_free(s);
 */
#ifndef HELIOS_H
#define HELIOS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- version -------------------------------------------------------------------------------- */

#define HELIOS_VERSION_MAJOR 0
#define HELIOS_VERSION_MINOR 1
#define HELIOS_VERSION_PATCH 0
#define HELIOS_VERSION_STRING "0.1.0"

/* The version of the library linked in ("0.1.0"; equals HELIOS_VERSION_STRING of its header). */
const char *helios_version(void);

typedef enum helios_status {
    HELIOS_OK = 0,
    HELIOS_ERR_INVALID_ARG, /* a caller passed an impossible value */
    HELIOS_ERR_IO,          /* a file could not be opened, read, mapped or written */
    HELIOS_ERR_FORMAT,      /* a file is malformed: truncated, bad header, bad JSON, ... */
    HELIOS_ERR_SHAPE,       /* a tensor has the wrong shape */
    HELIOS_ERR_DTYPE,       /* a tensor has the wrong or an unsupported dtype */
    HELIOS_ERR_MISSING,     /* a required tensor, key or file is absent */
    HELIOS_ERR_OOM,         /* out of memory */
    HELIOS_ERR_UNSUPPORTED, /* valid, but not implemented by this build */
    HELIOS_ERR_CANCELLED,   /* the caller asked to stop */
    HELIOS_ERR_INTERNAL,    /* a bug: please report it */
} helios_status;

/* Short name of a status ("format error", ...). Never NULL. */
const char *helios_status_str(helios_status st);

/* ---- limits --------------------------------------------------------------------------------- */

/* The bounds of the library's own parameter checks (helios_session_new, helios_gen_new): a value
 * outside is HELIOS_ERR_INVALID_ARG with a message, before anything is allocated or computed.
 * They are here so that a front end checks the same numbers (the helios CLI does); each is far
 * above what the released models use and below where a count overflows an int or a buffer
 * grows without bound. */
#define HELIOS_MAX_THREADS 512                /* session n_threads: 0 (all cores) or 1 .. this */
#define HELIOS_MAX_SIDE 16384                 /* width, height in pixels */
#define HELIOS_MAX_FRAMES 1048576             /* num_frames, video_frames (~12 h at 24 fps) */
#define HELIOS_MAX_CHUNKS 65536               /* num_chunks of a bounded video */
#define HELIOS_MAX_STEPS 1000                 /* steps, each of pyramid_steps */
#define HELIOS_MAX_SEQUENCE_LENGTH 1024       /* max_sequence_length, text_len (models: 512) */
#define HELIOS_MAX_LATENT_FRAMES_PER_CHUNK 64 /* latent_frames_per_chunk (models: 9) */
#define HELIOS_MAX_GUIDANCE 100.0f            /* guidance_scale: finite, <= this (models: 5) */

/* ---- logging -------------------------------------------------------------------------------- */

typedef enum helios_log_level {
    HELIOS_LOG_ERROR = 0,
    HELIOS_LOG_WARN = 1,
    HELIOS_LOG_INFO = 2,
    HELIOS_LOG_DEBUG = 3,
} helios_log_level;

typedef void (*helios_log_fn)(helios_log_level level, const char *msg, void *user);

/* Process-wide log sink; NULL restores the default (stderr). Messages above max_level (default
 * HELIOS_LOG_INFO) are dropped. */
void helios_log_set(helios_log_fn fn, void *user);
void helios_log_level_set(helios_log_level max_level);

/* ---- sessions ------------------------------------------------------------------------------- */

typedef enum helios_backend {
    HELIOS_BACKEND_CPU = 0, /* optimized CPU: oneDNN GEMMs + own AVX-512 kernels, OpenMP */
    HELIOS_BACKEND_REF = 1, /* plain scalar C, float32: the oracle other backends are judged by */
} helios_backend;

typedef struct helios_session_params {
    helios_backend backend;
    int n_threads; /* 0 = all cores; at most HELIOS_MAX_THREADS */
} helios_session_params;

typedef struct helios_session helios_session;

void helios_session_params_init(helios_session_params *p);
/* Errors: no session exists to hold them, so a failure's message goes to
 * helios_session_new_error() (e.g. "session: n_threads -4 out of range ..."). */
helios_status helios_session_new(const helios_session_params *p, helios_session **out);
/* Message of the last failed helios_session_new on the calling thread ("" if none; kept per
 * thread, so threads creating sessions at once do not see each other's messages). Valid until
 * the thread's next helios_session_new. */
const char *helios_session_new_error(void);
void helios_session_free(helios_session *s);
/* Message of the last failure reported to this session ("" if none; see Conventions). Valid
 * until the next call on the session. */
const char *helios_session_error(const helios_session *s);

/* ---- the Helios transformer ------------------------------------------------------------------ */

typedef struct helios_model_params {
    const char *path;         /* a transformer folder (config.json + *.safetensors[.index.json]) */
    const char *config_path;  /* optional: config.json elsewhere (NULL = path/config.json) */
    const char *weights_path; /* optional: a .safetensors file or an index (NULL: in path) */
} helios_model_params;

typedef struct helios_transformer helios_transformer;

void helios_model_params_init(helios_model_params *p);
helios_status helios_transformer_load(helios_session *s, const helios_model_params *p,
                                      helios_transformer **out);
void helios_transformer_free(helios_transformer *t);

/* Inputs of one transformer forward (the diffusers forward() arguments). Shapes in PyTorch order.
 * indices_hidden_states may be NULL (0..T_c-1). History parts are optional (0 frames = absent);
 * a part that is present needs both its latents and its indices. */
typedef struct helios_dit_input {
    int batch;                  /* B */
    int frames, height, width;  /* T_c, h, w of hidden_states (latent grid) */
    const float *hidden_states; /* (B, C_in, T_c, h, w) */
    const double *timestep;     /* (B,) timesteps; rounded to float32 inside, as the reference */
    int text_len;               /* L_txt */
    const float *encoder_hidden_states;        /* (B, L_txt, text_dim) */
    const int64_t *indices_hidden_states;      /* (T_c) */
    int short_frames, mid_frames, long_frames; /* history frame counts (0 = absent) */
    int hist_height, hist_width;               /* spatial size of the history latents */
    const float *latents_history_short; /* (B, C_in, short_frames, hist_height, hist_width) */
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

/* ---- recipes: the defaults of the three Helios models ----------------------------------- */

typedef enum helios_recipe {
    HELIOS_RECIPE_BASE = 0,  /* HeliosPipeline: one resolution, UniPC, CFG */
    HELIOS_RECIPE_MID,       /* HeliosPyramidPipeline (is_cfg_zero_star): 3 stages, CFG-Zero* */
    HELIOS_RECIPE_DISTILLED, /* HeliosPyramidPipeline (is_distilled): 3 stages, DMD, no CFG */
} helios_recipe;

typedef enum helios_sampler {
    HELIOS_SAMPLER_DEFAULT = 0, /* the folder's scheduler_config.json */
    HELIOS_SAMPLER_UNIPC,       /* UniPC bh2 (Base, Mid) */
    HELIOS_SAMPLER_EULER,       /* flow-matching Euler */
    HELIOS_SAMPLER_DMD,         /* few-step DMD (Distilled) */
} helios_sampler;

/* What a generation uses where helios_gen_params leaves a default. The shift, the timestep
 * range and the number of stages come from the model folder's scheduler_config.json. */
typedef struct helios_recipe_defaults {
    const char *name;            /* "Base", "Mid", "Distilled" */
    helios_sampler sampler;      /* the scheduler the released folder names */
    int pyramid;                 /* 1: stages at 1/4, 1/2, 1 of the resolution */
    int steps;                   /* Base: sampling steps */
    int pyramid_steps[3];        /* pyramid: steps per stage */
    float guidance_scale;        /* CFG scale; <= 1 = no CFG */
    int cfg_zero_star;           /* CFG-Zero* (with the folder's is_cfg_zero_star) ... */
    int zero_init_steps;         /* ... whose prediction is 0 for steps <= this of stage 0 */
    int amplify_first_chunk;     /* DMD: more steps on the first chunk */
    int latent_frames_per_chunk; /* latent frames per chunk (9 = 33 video frames) */
    int history_frames[3];       /* the history window: long, mid, short latent frames */
    int size_multiple;           /* width and height must be multiples of this many pixels with
                                  * the released folders: 8 (VAE) x 2 (patch) x 2^(stages - 1)
                                  * (16 for Base, 64 for Mid and Distilled). helios_gen_new
                                  * checks the loaded folder's own rule. */
} helios_recipe_defaults;

/* The table row of a recipe; NULL for a value outside helios_recipe. Constant data. */
const helios_recipe_defaults *helios_recipe_defaults_get(helios_recipe r);

/* ---- pipelines: a diffusers model folder and step-wise generation ------------------------ */

/* A model folder in the diffusers layout: model_index.json, scheduler/, transformer/,
 * text_encoder/ + tokenizer/ (UMT5 + SentencePiece), vae/. model_index.json decides the recipe
 * (HeliosPipeline = Base; HeliosPyramidPipeline = Mid, or Distilled with is_distilled).
 *
 * helios_pipeline_load checks the whole folder before anything is computed, and errors name the
 * file and the key: the pipeline class, the flags (booleans, not "yes"), each component's class
 * (HeliosScheduler/HeliosDMDScheduler, UMT5EncoderModel, T5Tokenizer[Fast],
 * HeliosTransformer3DModel, AutoencoderKLWan), every config value, what the components must agree
 * on (channels, text width, the VAE's 16 latents_mean/std values and its 8x/4x ratios) and the
 * recipe/scheduler pairing (DMD only with HeliosPyramidPipeline; is_distilled only with DMD).
 * Every component model_index.json lists must be present, whatever the caller will ask for: a
 * folder meant for latents only lists "vae": [null, null] (or leaves it out and has no vae/),
 * and then helios_gen_new refuses decode = 1 and image/video input before encoding anything;
 * likewise a folder without a text encoder needs prompt embeddings. */
typedef struct helios_pipeline helios_pipeline;

typedef struct helios_pipeline_params {
    const char *model_dir;
    int low_memory; /* release the text encoder after each prompt is encoded */
} helios_pipeline_params;

void helios_pipeline_params_init(helios_pipeline_params *p);
/* Errors: the session's. */
helios_status helios_pipeline_load(helios_session *s, const helios_pipeline_params *p,
                                   helios_pipeline **out);
void helios_pipeline_free(helios_pipeline *p);
/* The recipe model_index.json chose. */
helios_recipe helios_pipeline_recipe(const helios_pipeline *p);
/* The size the model was trained at: model_index.json's "default_width" and "default_height"
 * (helios keys, as "max_sequence_length": the text length it was trained with; the tiny family
 * has 64 x 64), else 640 x 384 (the released checkpoints'). */
void helios_pipeline_default_size(const helios_pipeline *p, int *width, int *height);

typedef struct helios_gen_params {
    const char *prompt;          /* text, encoded by the pipeline's text encoder ... */
    const char *negative_prompt; /* (NULL = "" when guidance is on) */
    const float *prompt_embeds;  /* ... or precomputed embeddings (1, text_len, text_dim) */
    const float *negative_prompt_embeds;
    int text_len;                /* of the embeddings (1 .. HELIOS_MAX_SEQUENCE_LENGTH); the
                                    * encoder pads to max_sequence_length */
    int max_sequence_length;     /* 1 .. HELIOS_MAX_SEQUENCE_LENGTH; 0 (the default) = the
                                    * model's: model_index.json's "max_sequence_length" (a
                                    * helios key; the tiny family's 64), else 512 */
    int height, width;           /* pixels (384 x 640), at most HELIOS_MAX_SIDE; multiples of
                                    * the recipe's size_multiple (16 Base, 64 Mid/Distilled) */
    int num_frames;              /* video frames wanted (132), 0 .. HELIOS_MAX_FRAMES; 0 =
                                    * num_chunks decides */
    int num_chunks;              /* 0 = from num_frames; 1 .. HELIOS_MAX_CHUNKS; < 0 = no end
                                    * (stream until stopped) */
    int latent_frames_per_chunk; /* 0 = recipe default; at most HELIOS_MAX_LATENT_FRAMES_PER_CHUNK */
    int steps;                   /* Base: steps; 0 = recipe default; at most HELIOS_MAX_STEPS */
    int pyramid_steps[3];        /* Mid/Distilled: steps per stage; 0 = recipe default */
    float guidance_scale;        /* < 0 = recipe default; <= 1 turns CFG off; finite, at most
                                    * HELIOS_MAX_GUIDANCE */
    helios_sampler sampler;      /* override of the folder's scheduler type; the defaults
                                    * follow it (DMD: the Distilled recipe's) */
    uint64_t seed;
    int decode;         /* 1: decode each chunk to RGB with the VAE (a folder without
                                    * one: HELIOS_ERR_MISSING); 0: latents only */
    const float *image; /* I2V: (3, height, width) in [-1, 1], or NULL */
    const float *video; /* V2V: (3, video_frames, height, width) in [-1, 1], or NULL
                                    * (not with image) */
    int video_frames;   /* 1 .. HELIOS_MAX_FRAMES with video */
    int video_skipped;  /* V2V from helios_video_read_tail: frames of the input left
                                    * out between video's frame 0 and frame 1 (helios_media.skipped) */
} helios_gen_params;

void helios_gen_params_init(helios_gen_params *p);

/* V2V conditions on frame 0 of the input and on its newest frames only: how many of those the
 * generation g describes needs (the tail for helios_video_read_tail; 0 on bad parameters). */
int helios_gen_video_tail(const helios_pipeline *p, const helios_gen_params *g);

/* What one helios_gen_step did. */
typedef struct helios_gen_progress {
    int chunk, n_chunks; /* n_chunks < 0: unbounded */
    int stage, n_stages, step, n_steps;
    int chunk_done;       /* this step finished a chunk: latents below */
    const float *latents; /* (1, 16, F, H/8, W/8) of the chunk, valid until the next step */
    int latent_frames, latent_height, latent_width;
    const float *frames; /* with decode: (3, chunk_frames, height, width) in [-1, 1] */
    int chunk_frames;    /* frames decoded from the chunk (33) */
    int n_frames;        /* of which belong to the video: all but on the last chunk of a
                                    * bounded video, trimmed so the video has 4k + 1 frames */
    int finished;        /* the last chunk is done */
} helios_gen_progress;

/* One generation: its own sampler state, history and last error. */
typedef struct helios_gen helios_gen;

/* Checks every parameter against the limits above and the loaded folder's size rule
 * (HELIOS_ERR_INVALID_ARG, naming the field and the rule), then encodes the prompt (and an
 * I2V/V2V input) and prepares the first chunk. Errors: the session's (no generation exists
 * yet). The pipeline must outlive the generation. */
helios_status helios_gen_new(helios_pipeline *p, const helios_gen_params *g, helios_gen **out);
/* The number of chunks this generation makes (< 0: unbounded), known before the first step. */
int helios_gen_n_chunks(const helios_gen *g);
/* One sampler step (one or two transformer calls). Stop calling to cancel. */
helios_status helios_gen_step(helios_gen *g, helios_gen_progress *progress);
/* Moves the conditioning to a new prompt, interpolating the embeddings linearly over the next
 * `chunks` chunks (spec §2.3's interactive mode; 0 or 1 = at once). */
helios_status helios_gen_prompt_set(helios_gen *g, const char *prompt, const char *negative_prompt,
                                    int chunks);

/* Blocking: runs the remaining steps; on_progress (may be NULL) sees each step and each
 * finished chunk before the next starts; a non-zero return cancels (HELIOS_ERR_CANCELLED). */
typedef int (*helios_progress_fn)(const helios_gen_progress *p, void *user);
helios_status helios_gen_run(helios_gen *g, helios_progress_fn on_progress, void *user);

/* Message of this generation's last failure ("" if none). Valid until its next call. */
const char *helios_gen_error(const helios_gen *g);
void helios_gen_free(helios_gen *g);

/* ---- media: images and videos in, videos out ------------------------------------------------ */

/* Decoded input: values in [-1, 1], (3, frames, height, width). */
typedef struct helios_media {
    float *data;
    int frames, height, width;
    int skipped;               /* helios_video_read_tail: frames decoded and dropped between
                                    * data's frame 0 and frame 1 (the video had frames + skipped) */
    int src_width, src_height; /* the size in the file, before resizing */
    double fps;                /* 0 when unknown (images) */
} helios_media;

/* Reads anything FFmpeg decodes (PNG, JPEG, WebP, ...; MP4, WebM, MKV, Y4M, ...) as RGB,
 * resized to width x height with Lanczos (0 x 0 keeps the native size), alpha dropped.
 * helios_image_read keeps the first frame (frames = 1, data is (3, H, W)); helios_video_read up
 * to max_frames frames (<= 0: all). Errors: the session's, naming the file. */
helios_status helios_image_read(helios_session *s, const char *path, int width, int height,
                                helios_media **out);
helios_status helios_video_read(helios_session *s, const char *path, int width, int height,
                                int max_frames, helios_media **out);
/* Frame 0 and the newest `tail` frames of a video (what V2V uses: see helios_gen_video_tail),
 * decoded as a stream: memory is bounded by tail + 1 frames whatever the video's length, and
 * every frame is still decoded (a damaged one is an error). frames = 1 + min(tail, rest). */
helios_status helios_video_read_tail(helios_session *s, const char *path, int width, int height,
                                     int tail, helios_media **out);
void helios_media_free(helios_media *m);

/* A video read as a stream, frame by frame, for inputs too long to hold (helios eval): memory is
 * a few frames whatever the video's length. Same decoding, resizing and values as
 * helios_video_read, whose frames it gives one after another; every frame is decoded and a
 * damaged one is an error. The open decodes frame 0, so the size is known and a file without a
 * decodable frame fails there (errors: the session's, naming the file). After a failed read the
 * reader fails every later call (errors: helios_video_reader_error). */
typedef struct helios_video_reader helios_video_reader;

typedef struct helios_video_info {
    int width, height;         /* the frames handed out: the requested size, or frame 0's */
    int src_width, src_height; /* frame 0's size in the file, before resizing */
    double fps;                /* 0 when unknown */
    int64_t frames;            /* the frame count the container states; 0 when it does not say
                                * (a hint: the frames read are what count) */
    int64_t read;              /* frames handed out so far */
} helios_video_info;

/* width x height: the frame size wanted (0 x 0 keeps the native size). */
helios_status helios_video_reader_open(helios_session *s, const char *path, int width, int height,
                                       helios_video_reader **out);
/* Reads up to n next frames into frames t0 .. t0+n-1 of x, a (3, T, height, width) block in
 * [-1, 1] (T = n = 1, t0 = 0: one (3, height, width) frame). *got of them were read: fewer than
 * n only at the end of the video (0: the end). */
helios_status helios_video_reader_read(helios_video_reader *r, float *x, int T, int t0, int n,
                                       int *got);
void helios_video_reader_info(const helios_video_reader *r, helios_video_info *info);
/* Message of this reader's last failure ("" if none). */
const char *helios_video_reader_error(const helios_video_reader *r);
void helios_video_reader_free(helios_video_reader *r); /* NULL is a no-op */

/* A video writer, chosen from the path:
 *   "*.mp4"   H.264 (libx264) yuv420p BT.601 limited range, fragmented MP4;
 *   "*.y4m"   YUV4MPEG2 4:2:0; "-" = the same on stdout;
 *   "dir/" or an existing directory: one PNG per frame (frame_000000.png, ...).
 * The file is written under "<path>.part" and renamed by helios_video_writer_close, so the final
 * name never holds a half-written video. After a write (a chunk), "<path>.part" plays. */
typedef struct helios_video_writer helios_video_writer;

typedef struct helios_video_writer_params {
    int width, height; /* frame size in pixels */
    int fps;           /* 24 (the Helios models' frame rate) */
    int crf;           /* H.264 quality, 0..51 (18) */
    int truncate;      /* 8-bit conversion: 0 = round (diffusers numpy_to_pil),
                                    * 1 = truncate (diffusers export_to_video) */
} helios_video_writer_params;

void helios_video_writer_params_init(helios_video_writer_params *p);
/* HELIOS_OK if path names a format above (nothing is created). Errors: the session's. */
helios_status helios_video_path_check(helios_session *s, const char *path);
/* Errors: the session's. */
helios_status helios_video_writer_open(helios_session *s, const char *path,
                                       const helios_video_writer_params *p,
                                       helios_video_writer **out);
/* Appends frames t0 .. t0+n-1 of x, a (3, T, height, width) block in [-1, 1] (e.g.
 * helios_gen_progress.frames with T = chunk_frames, n = n_frames), and makes them durable. */
helios_status helios_video_writer_write(helios_video_writer *w, const float *x, int T, int t0,
                                        int n);
/* Finishes the file and renames it to its final name. */
helios_status helios_video_writer_close(helios_video_writer *w);
/* Message of this writer's last failure ("" if none). */
const char *helios_video_writer_error(const helios_video_writer *w);
/* Frees w; a writer not closed is discarded with its ".part" file. */
void helios_video_writer_free(helios_video_writer *w);

/* ---- tensor files ---------------------------------------------------------------------------- */

/* Writes one float32 tensor as a .safetensors file (e.g. the latents of a video), through
 * "<path>.part". metadata: NULL or {key0, value0, key1, value1, ..., NULL}. Errors: the
 * session's. */
helios_status helios_tensor_save(helios_session *s, const char *path, const char *name,
                                 const float *data, int ndim, const int64_t *shape,
                                 const char *const *metadata);

/* One tensor of a checkpoint, as helios_checkpoint_list reports it. */
typedef struct helios_tensor_info {
    const char *name;
    const char *dtype; /* "F32", "BF16", ... */
    int ndim;
    const int64_t *shape;
    uint64_t nbytes;
    const char *file;        /* the .safetensors file holding it */
    int file_index, n_files; /* its file among the checkpoint's files */
} helios_tensor_info;

/* Calls fn for every tensor of a .safetensors file, a *.safetensors.index.json or a folder
 * holding either, in file order (a non-zero return stops: HELIOS_ERR_CANCELLED). The whole
 * header is validated first. *n_files (may be NULL) receives the number of files. Errors: the
 * session's. */
typedef int (*helios_tensor_fn)(const helios_tensor_info *t, void *user);
helios_status helios_checkpoint_list(helios_session *s, const char *path, helios_tensor_fn fn,
                                     void *user, int *n_files);

/* ---- the tiny world: procedural video with captions and ground truth ------------------------ */

/* A procedural world of a few simple shapes (circle, square, triangle, star, ring; named colours;
 * small/medium/large) that bounce, orbit, drift, grow and shrink or spin over a plain, gradient
 * or slowly moving textured background, occluding each other by depth, with optional camera pan
 * and slow lighting change; rendered anti-aliased at any size. Every frame has a caption made
 * from the scene ("a small red circle and a medium blue square bounce on a dark green
 * background") and its ground truth as one JSON line. Deterministic: the same parameters give
 * the same frames, bit for bit, on the same build. Unbounded: each step costs O(1) memory.
 * docs/world.md describes the world and the truth format. */
typedef struct helios_world helios_world;

typedef struct helios_world_params {
    uint64_t seed;
    int width, height;  /* pixels, 16..8192 each (256 x 256) */
    int fps;            /* 24: sets the speed of everything that moves */
    const char *prompt; /* NULL: a random scene from the seed that changes now and then (an
                              * object enters or leaves, the background colour turns); else the
                              * scene this caption describes -- its objects, sizes, motions and
                              * background -- placed by the seed, without changes (copied) */
    int max_objects;    /* 4: at most this many objects at once (1..6) */
    int events;         /* 1: scene changes (random scenes only) */
    int camera;         /* 1: random scenes may pan the camera */
    int lighting;       /* 1: random scenes may change the light slowly */
} helios_world_params;

void helios_world_params_init(helios_world_params *p);
/* Frame 0 of a new world. Errors: the session's. */
helios_status helios_world_new(helios_session *s, const helios_world_params *p, helios_world **out);
/* Index of the current frame (0, 1, ...). */
int64_t helios_world_frame(const helios_world *w);
/* Renders the current frame as frame t of a (3, T, height, width) block in [-1, 1] (what
 * helios_video_writer_write takes; T = 1 for a single (3, height, width) frame). */
helios_status helios_world_render(helios_world *w, float *frames, int T, int t);
/* The caption of the current frame. Valid until the next step. */
const char *helios_world_caption(const helios_world *w);
/* The ground truth of the current frame as one JSON line without newline (frame, time, seed,
 * size, caption, background, camera, light, objects with id, shape, colour name and rgb, size
 * class, radius, centre x/y, angle, depth, motion, state). Valid until the next call; NULL when
 * out of memory. */
const char *helios_world_truth_json(helios_world *w);
/* Advances to the next frame. */
helios_status helios_world_step(helios_world *w);
/* Message of this world's last failure ("" if none). */
const char *helios_world_error(const helios_world *w);
void helios_world_free(helios_world *w);
/* Writes the tokenizer of the tiny models to path (atomically): a SentencePiece unigram
 * `.model` -- the format of umT5's spiece.model, which helios generate reads from a model's
 * tokenizer/ folder -- whose pieces are the world's vocabulary: <pad> 0, </s> 1, <unk> 2, then
 * one "▁word" piece per word captions or prompts use, the punctuation, and single-character
 * fallbacks (docs/world.md). The same file on every run. *n_pieces (may be NULL) gets the
 * number of pieces. Errors: the session's. */
helios_status helios_world_write_tokenizer(helios_session *s, const char *path, int *n_pieces);

/* ---- evaluation against the tiny world ------------------------------------------------------- */

/* Measures a video against the tiny world's own statistics: frames are streamed in one by one
 * (only a small record per frame is kept), then every metric is computed at once. The objects are
 * found by segmenting the world's known colours and classifying shapes from mask geometry; the
 * metrics (docs/world.md): semantic accuracy, drift |M(first 15%) - M(last 15%)| of the colour
 * histogram, saturation, brightness, object count and size, motion and semantic accuracy,
 * chunk-seam strength, motion, centroid speed and jerk, freezing, and a Fréchet distance of
 * one-second window features against real world footage rendered for the prompt (a
 * world-specific stand-in for FVD). */
typedef struct helios_eval helios_eval;

typedef struct helios_eval_params {
    int width, height;           /* frame size, at least 16 x 16 */
    int fps;                     /* 24: one Fréchet window is fps frames */
    int chunk;                   /* 33: frames per generated chunk, for the seam strength */
    const char *prompt;          /* what every frame should show (copied), or NULL */
    const char *truth_path;      /* or a `helios world --truth` file: each frame's caption, and the
                              * frame size and count the video must have */
    int reference_seeds;         /* 4: seeds of real footage for the Fréchet distance (0 = none) */
    int reference_frames;        /* frames per seed; 0 = as many as the video, at most 480 */
    const int64_t *sheet_frames; /* frames kept for helios_eval_sheet (indices, copied; one
                                  * past the video's end stands for its last frame), or NULL */
    int n_sheet;                 /* how many (at most 64) */
} helios_eval_params;

typedef struct helios_eval_metric {
    const char *name; /* "semantic_accuracy", "drift_histogram", ... */
    double value;     /* NaN: not applicable (e.g. no prompt, too few chunks) */
    const char *what; /* one line saying what it measures */
} helios_eval_metric;

void helios_eval_params_init(helios_eval_params *p);
/* Errors (bad size, unreadable or mismatched truth file): the session's. */
helios_status helios_eval_new(helios_session *s, const helios_eval_params *p, helios_eval **out);
/* Adds frame t of a (3, T, height, width) block in [-1, 1] as the next frame of the video.
 * caption: what this frame should show; NULL = the truth file's caption, else the prompt. */
helios_status helios_eval_add(helios_eval *e, const float *frames, int T, int t,
                              const char *caption);
/* Computes every metric over the frames added so far (at least 8; with a truth file exactly its
 * frame count). *metrics (n of them) stays valid until the next call on e. */
helios_status helios_eval_finish(helios_eval *e, const helios_eval_metric **metrics, int *n);
/* Writes a PNG plot of each metric over time (after helios_eval_finish). */
helios_status helios_eval_plot(helios_eval *e, const char *path);
/* Writes a PNG contact sheet of the params' sheet_frames (after helios_eval_finish): the frames
 * side by side, each labelled with its time and index. */
helios_status helios_eval_sheet(helios_eval *e, const char *path);
/* Message of this evaluation's last failure ("" if none). */
const char *helios_eval_error(const helios_eval *e);
void helios_eval_free(helios_eval *e);

#ifdef __cplusplus
}
#endif
#endif /* HELIOS_H */
