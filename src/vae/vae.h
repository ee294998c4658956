/* The Wan 2.1 VAE (diffusers AutoencoderKLWan, is_residual = false), written over ops.
 *
 * Layout. The API takes and returns PyTorch's channels-first tensors: video (B, 3, T, H, W) in
 * [-1, 1], moments (B, 2·z_dim, T_lat, h, w), latents (B, z_dim, T_lat, h, w). Inside, every
 * activation is float32 channels-last [T, H, W, C] per batch element: the RMS norms are row ops,
 * the causal cache is whole frames, and the convs read it directly (src/ops/cpu/conv.c).
 *
 * Precision. Convs run in the dtype their weights are stored in (ops.h). With bf16 weights on the
 * cpu backend the norms write the conv inputs (and the caches) directly in bf16; the residual
 * stream, norms and attention softmax stay float32.
 *
 * Causal cache (spec §4.4). Every causal conv with a 3-frame kernel owns a slot holding the last
 * 2 frames of its input (zeros before the first chunk), so a chunk is convolved as
 * [cache, chunk] with no time padding: exactly the whole-clip causal conv with 2 zero frames in
 * front. The resample layers add the reference's first-chunk rules: upsample3d skips its time
 * conv on the first chunk and then starts from a zero cache ("Rep"); downsample3d keeps 1 frame
 * and skips its time conv on the first chunk. Memory is the caches plus one step's activations,
 * whatever the clip length.
 *
 * Encoding runs frame 0 alone, then groups of 4 frames (frames past 1 + 4k are dropped, as the
 * reference does). Decoding runs latent frame 0 alone (1 output frame), then `step` latent frames
 * per pass (4·step output frames); step 1 is the reference's order, a larger step gives the same
 * result to rounding with larger convs.
 *
 * A model is not thread-safe: runs update its packed conv weights (hl_conv_pack). */
#ifndef HL_VAE_H
#define HL_VAE_H

#include <stdbool.h>

#include "io/json.h"
#include "io/weights.h"
#include "ops/ops.h"

#define HL_VAE_MAX_LEVELS 8
#define HL_VAE_MAX_Z 256

typedef struct hl_vae_config {
    int base_dim, decoder_base_dim, z_dim;
    int n_levels; /* len(dim_mult) */
    int dim_mult[HL_VAE_MAX_LEVELS];
    int num_res_blocks;
    bool temperal_downsample[HL_VAE_MAX_LEVELS]; /* n_levels - 1 entries; decoder uses reversed */
    int in_channels, out_channels;
    float latents_mean[HL_VAE_MAX_Z], latents_std[HL_VAE_MAX_Z];
    int latents_n;      /* z_dim, or 0 when the tables do not match it */
    int spatial_ratio;  /* 2^(n_levels - 1) */
    int temporal_ratio; /* 2^(number of temporal downsamples) */
} hl_vae_config;

/* Reads a diffusers vae/config.json. Absent fields take the AutoencoderKLWan defaults (spec §4.1);
 * Wan 2.2 (is_residual), patch_size > 1 and non-empty attn_scales are HELIOS_ERR_UNSUPPORTED. */
hl_status hl_vae_config_parse(const hl_json *j, hl_vae_config *c, hl_error *err);
/* The full-size Wan 2.1 VAE (base_dim 96, z_dim 16, dim_mult [1,2,4,4], 2 res blocks). */
void hl_vae_config_wan21(hl_vae_config *c);

/* ---- modules (names follow the checkpoint) --------------------------------------------------- */

typedef struct hl_vae_conv {
    hl_tensor w, b;
    hl_conv_pack *pack; /* the weight in the backend's layout, made on first use */
    int slot;           /* causal cache slot, -1: none */
} hl_vae_conv;

typedef struct hl_vae_res { /* WanResidualBlock */
    int in, out;
    const float *norm1, *norm2;              /* gamma [C] float32 copies */
    hl_vae_conv conv1, conv2, conv_shortcut; /* conv_shortcut.w.data NULL when in == out */
} hl_vae_res;

typedef struct hl_vae_attn { /* WanAttentionBlock */
    int dim;
    const float *norm;
    hl_tensor to_qkv_w, to_qkv_b, proj_w, proj_b;
} hl_vae_attn;

typedef enum hl_vae_resample_mode {
    HL_VAE_NONE = 0,
    HL_VAE_UPSAMPLE2D,
    HL_VAE_UPSAMPLE3D,
    HL_VAE_DOWNSAMPLE2D,
    HL_VAE_DOWNSAMPLE3D,
} hl_vae_resample_mode;

typedef struct hl_vae_resample { /* WanResample */
    hl_vae_resample_mode mode;
    int dim, out_dim;
    hl_vae_conv resample;  /* resample.1: Conv2d 3x3 */
    hl_vae_conv time_conv; /* 3d modes only; its slot also marks the first chunk */
} hl_vae_resample;

typedef struct hl_vae_mid { /* WanMidBlock: res, attention, res */
    hl_vae_res res0, res1;
    hl_vae_attn attn;
} hl_vae_mid;

typedef struct hl_vae_down { /* one encoder.down_blocks entry */
    bool is_resample;
    hl_vae_res res;
    hl_vae_resample resample;
} hl_vae_down;

typedef struct hl_vae_up { /* decoder.up_blocks.i */
    int n_res;
    hl_vae_res *res;    /* resnets.0 .. */
    hl_vae_resample up; /* upsamplers.0 (mode NONE on the last block) */
} hl_vae_up;

typedef struct hl_vae_encoder {
    hl_vae_conv conv_in;
    int n_down;
    hl_vae_down *down;
    hl_vae_mid mid;
    const float *norm_out;
    hl_vae_conv conv_out;
    int n_slots;
} hl_vae_encoder;

typedef struct hl_vae_decoder {
    hl_vae_conv conv_in;
    hl_vae_mid mid;
    int n_up;
    hl_vae_up *up;
    const float *norm_out;
    hl_vae_conv conv_out;
    int n_slots;
} hl_vae_decoder;

/* One trainable parameter under its checkpoint name: field is the module's hl_tensor (a conv or
 * attention weight or bias) or, for a norm gain, its `const float *` member (&res->norm1). */
typedef struct hl_vae_param {
    char name[160];
    const void *field;
    bool gain;
    int ndim; /* the checkpoint's shape (a gain: [C, 1, 1, 1] or [C, 1, 1]) */
    int64_t shape[HL_MAX_DIMS];
    int64_t numel;
} hl_vae_param;

typedef struct hl_vae {
    hl_vae_config cfg;
    hl_vae_param *params; /* every parameter of the model, in the order of the weight table */
    int n_params;
    hl_weights *weights; /* the mappings the tensors point into (NULL for a synthetic model) */
    hl_vae_encoder encoder;
    hl_vae_decoder decoder;
    hl_vae_conv quant_conv, post_quant_conv;
    bool has_encoder; /* a synthetic decoder-only model has none */
    float *small;     /* owns the float32 norm gains */
    void **owned;     /* synthetic weights */
    size_t n_owned;
} hl_vae;

/* Loads config.json + weights (a folder in the diffusers layout: config.json and
 * diffusion_pytorch_model.safetensors). config_path / weights_path override the folder's files
 * (path may then be NULL). Every tensor is checked for presence, shape and dtype (F32 or BF16). */
hl_status hl_vae_load(const char *path, const char *config_path, const char *weights_path,
                      hl_vae **out, hl_error *err);
/* Writes the values of one weight t (allocated, shape and dtype set) of a synthetic model; gain:
 * a norm gain (always float32, copied to the model's float32 gains afterwards). */
typedef void (*hl_vae_fill_fn)(void *user, const char *name, bool gain, hl_tensor *t);
/* A model whose weights come from fill instead of a checkpoint (benchmarks, tests): the module
 * tree of cfg (the decoder, and the encoder when with_encoder), every weight allocated in dt
 * (F32 or BF16; gains float32) in memory the model owns and filled by one fill call per tensor,
 * in the order of the weight table. */
hl_status hl_vae_create_filled(const hl_vae_config *cfg, hl_dtype dt, bool with_encoder,
                               hl_vae_fill_fn fill, void *user, hl_vae **out, hl_error *err);
void hl_vae_free(hl_vae *v);
/* Converts every conv and attention weight to dt (F32 or BF16) in memory the model owns; biases
 * and norm gains stay as they are. Running the f32 Wan checkpoint in bf16 takes the AMX convs
 * (about 6x faster here) at about 1e-2 from the f32 reference. */
hl_status hl_vae_cast_weights(hl_vae *v, hl_dtype dt, hl_error *err);

/* ---- encode ---------------------------------------------------------------------------------- */

/* Output size of the encoder for T frames of H x W: T_lat = 1 + (T - 1) / 4 (with the ratios of
 * the config), h and w as the strided convs give them (H / 8 for multiples of 8). */
void hl_vae_latent_shape(const hl_vae_config *c, int64_t T, int64_t H, int64_t W, int64_t *T_lat,
                         int64_t *h, int64_t *w);

/* moments (B, 2·z_dim, T_lat, h, w) = quant_conv(encoder(video)), video (B, in_channels, T, H, W).
 * The raw moments (latent_dist.parameters); see hl_vae_posterior. */
hl_status hl_vae_encode(const hl_ctx *ctx, hl_vae *v, int64_t B, int64_t T, int64_t H, int64_t W,
                        const float *video, float *moments);

/* DiagonalGaussianDistribution of moments (B, 2z, n): mean = first z channels, logvar = the rest
 * clamped to [-30, 20], std = exp(0.5·logvar); each (B, z, n), any may be NULL. */
void hl_vae_posterior(int64_t B, int64_t z, int64_t n, const float *moments, float *mean,
                      float *logvar, float *std);
/* sample = mean + std · eps (eps standard normal, (B, z, n)), in place on mean allowed. */
void hl_vae_posterior_sample(int64_t count, const float *mean, const float *std, const float *eps,
                             float *sample);

/* ---- decode ---------------------------------------------------------------------------------- */

/* Output frames for T_lat latent frames decoded from the start: 1 + ratio·(T_lat - 1). */
int64_t hl_vae_decoded_frames(const hl_vae_config *c, int64_t T_lat);

/* Streaming decode of one video (batch 1), spec §4.4: begin resets every cache, each chunk
 * continues the causal stream, end frees the state. */
typedef struct hl_vae_stream hl_vae_stream;

/* h, w: latent size; step: latent frames per decoder pass after the first (1 = the reference). */
hl_status hl_vae_decode_begin(const hl_ctx *ctx, hl_vae *v, int64_t h, int64_t w, int step,
                              hl_vae_stream **out);
/* Frames the next chunk of n latent frames will produce. */
int64_t hl_vae_stream_out_frames(const hl_vae_stream *s, int64_t n);
/* Decodes z (1, z_dim, n, h, w) into frames (1, out_channels, hl_vae_stream_out_frames(s, n),
 * H, W), clamped to [-1, 1]. */
hl_status hl_vae_decode_chunk(hl_vae_stream *s, int64_t n, const float *z, float *frames);
/* Peak bytes of the stream's buffers and caches so far. */
size_t hl_vae_stream_bytes(const hl_vae_stream *s);
/* Sum of 2·MACs of every conv run so far (the reference's work: zero-padded frames included). */
double hl_vae_stream_flops(const hl_vae_stream *s);
void hl_vae_decode_end(hl_vae_stream *s);

/* Whole clips: z (B, z_dim, T_lat, h, w) -> video (B, out_channels, hl_vae_decoded_frames, H, W)
 * in [-1, 1], each batch element with fresh caches. */
hl_status hl_vae_decode(const hl_ctx *ctx, hl_vae *v, int64_t B, int64_t T_lat, int64_t h,
                        int64_t w, const float *z, float *video);

/* ---- tiled paths (diffusers enable_tiling: overlapping spatial tiles, linear blends) --------- */

typedef struct hl_vae_tiling {
    int tile_min_h, tile_min_w;       /* tile_sample_min_height / _width (pixels) */
    int tile_stride_h, tile_stride_w; /* tile_sample_stride_height / _width (pixels) */
} hl_vae_tiling;

/* As hl_vae_encode / hl_vae_decode with tiling enabled: falls back to the untiled path when
 * the clip is no larger than one tile, as the reference does. Batch 1. */
hl_status hl_vae_encode_tiled(const hl_ctx *ctx, hl_vae *v, const hl_vae_tiling *tl, int64_t T,
                              int64_t H, int64_t W, const float *video, float *moments,
                              int64_t *T_lat, int64_t *h, int64_t *w);
hl_status hl_vae_decode_tiled(const hl_ctx *ctx, hl_vae *v, const hl_vae_tiling *tl, int64_t T_lat,
                              int64_t h, int64_t w, const float *z, float *video);
/* Size of the tiled encoder's output (it crops to H / ratio, W / ratio). */
void hl_vae_tiled_latent_shape(const hl_vae_config *c, const hl_vae_tiling *tl, int64_t T,
                               int64_t H, int64_t W, int64_t *T_lat, int64_t *h, int64_t *w);

/* ---- training (src/vae/train_*.c) ----------------------------------------------------------- */

/* Training runs the whole clip at once, batch 1: a forward that keeps what the backward needs on
 * a tape, then the backward. Every causal conv is the whole-clip conv with 2 zero frames in front
 * (what the streaming caches compute) and the resample layers apply the first-chunk rules to
 * frame 0 (upsample3d: frame 0 skips time_conv, the time conv of frames 1.. starts from zeros;
 * downsample3d: frame 0 passes, then time_conv stride 2 over all frames), so the output is the
 * streaming forward's, chunk for chunk (decode: one latent frame per pass; encode: frame 0, then
 * groups of 4; T must be 1 + 4k). Conv and attention weights are float32, or bf16 for mixed
 * precision (the convs then compute in bf16 forward and backward, ops.h's precision rule; the
 * gradients stay float32); the convs run through hl_conv3d / hl_conv3d_backward (ops.h) on
 * ctx's backend. */

/* Parameter gradients: one float32 buffer per hl_vae_param, zeroed at creation; the backwards
 * ACCUMULATE into them (ops.h), hl_vae_grads_zero clears them between steps. */
typedef struct hl_vae_grads hl_vae_grads;
hl_status hl_vae_grads_new(const hl_vae *v, hl_vae_grads **out, hl_error *err);
void hl_vae_grads_zero(hl_vae_grads *g);
void hl_vae_grads_free(hl_vae_grads *g);
/* The gradient of the parameter with checkpoint name `name` (numel values), NULL if none. */
float *hl_vae_grad_by_name(hl_vae_grads *g, const char *name, int64_t *numel);
/* Gradients in the caller's memory: parameter i's gradient is bufs[i] (params[i].numel floats,
 * e.g. slices of one flat buffer); hl_vae_grads_zero clears them, hl_vae_grads_free leaves them. */
hl_status hl_vae_grads_wrap(const hl_vae *v, float *const *bufs, hl_vae_grads **out, hl_error *err);

/* What a forward saved for its backward (activations, float32), owned by the caller. */
typedef struct hl_vae_tape hl_vae_tape;
void hl_vae_tape_free(hl_vae_tape *t);
/* Peak bytes of saved activations plus temporaries over the forward and backward so far. */
size_t hl_vae_tape_peak_bytes(const hl_vae_tape *t);

/* video (out_channels, hl_vae_decoded_frames(T_lat), H, W) = decode(z), z (z_dim, T_lat, h, w),
 * clamped to [-1, 1]; *tape: what hl_vae_decode_backward needs. */
hl_status hl_vae_decode_forward_save(const hl_ctx *ctx, hl_vae *v, int64_t T_lat, int64_t h,
                                     int64_t w, const float *z, float *video, hl_vae_tape **tape);
/* The same without the clamp: training losses on the raw output keep a gradient where an
 * overshooting pixel would otherwise sit in the clamp's flat part for good. */
hl_status hl_vae_decode_forward_save_unclamped(const hl_ctx *ctx, hl_vae *v, int64_t T_lat,
                                               int64_t h, int64_t w, const float *z, float *video,
                                               hl_vae_tape **tape);
/* From dvideo = ∂L/∂video: dz = ∂L/∂z (overwrite; NULL: not wanted), grads += ∂L/∂param of
 * post_quant_conv and the decoder (NULL: none). The clamp passes the gradient where
 * -1 <= x <= 1 (torch.clamp). Runs once per tape. */
hl_status hl_vae_decode_backward(hl_vae_tape *tape, const float *dvideo, float *dz,
                                 hl_vae_grads *grads);

/* moments (2·z_dim, T_lat, h, w) = quant_conv(encoder(video)), video (in_channels, T, H, W) with
 * T = 1 + 4k (hl_vae_latent_shape gives T_lat, h, w). */
hl_status hl_vae_encode_forward_save(const hl_ctx *ctx, hl_vae *v, int64_t T, int64_t H, int64_t W,
                                     const float *video, float *moments, hl_vae_tape **tape);
/* From dmoments = ∂L/∂moments: dvideo (overwrite, or NULL), grads += encoder and quant_conv. */
hl_status hl_vae_encode_backward(hl_vae_tape *tape, const float *dmoments, float *dvideo,
                                 hl_vae_grads *grads);

/* ---- latent normalisation (spec §4.5, as the pipelines compute it in float32) ---------------- */

/* z <- (z - mean_c) · (1 / std_c), in place on (B, z_dim, n). HELIOS_ERR_UNSUPPORTED when the
 * config's tables do not have z_dim entries. */
hl_status hl_vae_normalize_latents(const hl_vae_config *c, int64_t B, int64_t n, float *z,
                                   hl_error *err);
/* z <- z / (1 / std_c) + mean_c, in place (the input of decode). */
hl_status hl_vae_denormalize_latents(const hl_vae_config *c, int64_t B, int64_t n, float *z,
                                     hl_error *err);

#endif
