/* Internals of the VAE forward: the run state (causal cache slots, work buffers) and the blocks. */
#ifndef HL_VAE_INTERNAL_H
#define HL_VAE_INTERNAL_H

#include "vae/vae.h"

#define HL_VAE_CACHE_T 2 /* frames a causal conv keeps (diffusers CACHE_T) */

/* One conv's cache: the last frames of its input, in the run's conv-input dtype. */
typedef struct hl_vae_slot {
    void *frames;       /* [cap, S, C], zeros until written */
    size_t frame_bytes; /* S·C·element size, fixed at first use */
    int cap;            /* 2 (causal 3-frame conv) or 1 (downsample3d) */
    bool started;       /* a chunk went through: the resample layers' first-chunk rules */
} hl_vae_slot;

/* Work buffers, grow-only, reused by every step. */
enum {
    BUF_X0,  /* residual stream, float32 channels-last (ping) */
    BUF_X1,  /* residual stream (pong) */
    BUF_H,   /* float32 temporaries: conv1 output, time_conv output */
    BUF_IN,  /* conv inputs in the run dtype: lead cache frames + the chunk; upsampled frames */
    BUF_ATT, /* attention: normalised x, qkv, output */
    BUF_LAT, /* latents / moments channels-last */
    BUF_COUNT
};

typedef struct hl_vae_run {
    const hl_ctx *ctx;
    hl_vae *vae;
    hl_dtype act; /* conv inputs and caches: BF16 with bf16 weights on cpu, else F32 */
    int n_slots;
    hl_vae_slot *slots;
    struct {
        void *p;
        size_t cap;
    } buf[BUF_COUNT];
    size_t bytes, peak_bytes; /* buffers + caches */
    double flops;             /* 2·MACs of the convs run */
} hl_vae_run;

/* A float32 channels-last activation [T, H, W, C] living in run buffer `buf`. */
typedef struct hl_vae_act {
    float *x;
    int buf;
    int64_t T, H, W, C;
} hl_vae_act;

hl_status hl_vae_run_init(hl_vae_run *r, const hl_ctx *ctx, hl_vae *v, int n_slots,
                          const hl_tensor *first_weight);
void hl_vae_run_reset(hl_vae_run *r); /* empties every cache, keeps the buffers */
void hl_vae_run_free(hl_vae_run *r);

/* Buffer `which` with at least bytes (contents kept only if it did not grow); NULL + error. */
void *hl_vae_buf(hl_vae_run *r, int which, size_t bytes);
/* The residual buffer that a is not in, with room for n floats. */
float *hl_vae_other(hl_vae_run *r, const hl_vae_act *a, int64_t n, int *which);
size_t hl_vae_act_size(const hl_vae_run *r); /* bytes of one element of the run dtype */

/* The conv-input buffer: `lead` free frames (for the cache) then T frames of S x C, in the run
 * dtype. Returns its start; hl_vae_frame(r, base, f, S, C) addresses frame f. */
void *hl_vae_conv_input(hl_vae_run *r, int lead, int64_t T, int64_t S, int64_t C);
void *hl_vae_frame(const hl_vae_run *r, void *base, int64_t f, int64_t S, int64_t C);

/* A plain conv (no cache): x [T, H, W, C] in dtype xdt -> y (float32, accumulate as asked). */
hl_status hl_vae_conv_plain(hl_vae_run *r, hl_vae_conv *c, const void *x, hl_dtype xdt, int64_t T,
                            int64_t H, int64_t W, int64_t C, const int stride[3], const int pad[6],
                            float *y, int accumulate);
/* A causal 3-frame conv with its slot: `in` (from hl_vae_conv_input with lead 2) holds T new
 * frames after 2 free ones; runs the conv on [cache, new] (spatial padding kh/2, kw/2) into y
 * [T, H, W, O] and keeps the last 2 input frames. */
hl_status hl_vae_causal_conv(hl_vae_run *r, hl_vae_conv *c, void *in, int64_t T, int64_t H,
                             int64_t W, int64_t C, float *y, int accumulate);

/* Blocks, in place on a (which may move to the other residual buffer). */
hl_status hl_vae_res_forward(hl_vae_run *r, hl_vae_res *m, hl_vae_act *a);
hl_status hl_vae_attn_forward(hl_vae_run *r, hl_vae_attn *m, hl_vae_act *a);
hl_status hl_vae_mid_forward(hl_vae_run *r, hl_vae_mid *m, hl_vae_act *a);
hl_status hl_vae_resample_forward(hl_vae_run *r, hl_vae_resample *m, hl_vae_act *a);
/* norm_out, SiLU and the causal conv_out: a -> y [T, H, W, O] float32 (in BUF_H). */
hl_status hl_vae_head_forward(hl_vae_run *r, const float *norm_out, hl_vae_conv *conv_out,
                              hl_vae_act *a, float **y);

/* The decoder pass of one group of latent frames (channels-first z chunk, channel stride zcs)
 * into frames (channels-first, channel stride fcs), clamped to [lo, hi]; *n_out frames. */
hl_status hl_vae_decoder_pass(hl_vae_run *r, const float *z, int64_t zcs, int64_t T, int64_t h,
                              int64_t w, float *frames, int64_t fcs, float lo, float hi,
                              int64_t *n_out);

/* Decodes one clip (batch 1) with a given clamp (the tiled path blends unclamped tiles). */
hl_status hl_vae_decode_one(const hl_ctx *ctx, hl_vae *v, int64_t T_lat, int64_t h, int64_t w,
                            const float *z, float *video, float lo, float hi);

#endif
