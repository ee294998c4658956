/* Internals of VAE training: the tape (a stack of saved activations), the parameter gradients,
 * and each block's forward-with-save / backward pair over float32 channels-last [T, H, W, C]. */
#ifndef HL_VAE_TRAIN_INTERNAL_H
#define HL_VAE_TRAIN_INTERNAL_H

#include "vae/vae_internal.h"

struct hl_vae_grads {
    const hl_vae *v;
    float **g;     /* [n_params], numel floats each */
    bool borrowed; /* g[i] belong to the caller (hl_vae_grads_wrap) */
};

/* A float32 channels-last activation [T, H, W, C] in its own allocation (tape-counted). */
typedef struct hl_tact {
    float *x;
    int64_t T, H, W, C;
} hl_tact;

static inline int64_t hl_tact_n(const hl_tact *a) { return a->T * a->H * a->W * a->C; }

struct hl_vae_tape {
    const hl_ctx *ctx;
    hl_vae *v;
    hl_vae_grads *grads; /* set by the backward: where parameter gradients go (NULL: nowhere) */
    hl_tact *stack;      /* saved activations, pushed by the forward, popped by the backward */
    int n, cap;
    size_t bytes, peak_bytes; /* saved + live temporaries */
    int64_t dims[4];          /* the clip: decode (T_lat, h, w, F) / encode (T, H, W, T_lat) */
    int done;                 /* the backward ran */
    float lo, hi;             /* decode: the output clamp ([-1, 1], or ±inf: none) */
};

/* An activation of T·H·W·C floats (uninitialised), counted against the tape; x NULL on OOM. */
hl_status hl_tape_alloc(hl_vae_tape *tp, hl_tact *a, int64_t T, int64_t H, int64_t W, int64_t C);
void hl_tape_release(hl_vae_tape *tp, hl_tact *a);             /* frees a->x (NULL is fine) */
hl_status hl_tape_push(hl_vae_tape *tp, hl_tact *a);           /* the tape owns a->x from now on */
hl_status hl_tape_pop(hl_vae_tape *tp, hl_tact *a, int64_t C); /* C: the expected channels */

/* The gradient of a module field (&conv->w, &conv->b, &res->norm1...), or NULL with no grads. */
float *hl_vae_grad_of(hl_vae_grads *g, const void *field);

/* conv_plain / causal (2 zero frames in front, spatial padding kh/2, kw/2) on whole clips. */
hl_status hl_train_conv(hl_vae_tape *tp, hl_vae_conv *c, const hl_tact *x, const int stride[3],
                        const int pad[6], float *y, int accumulate);
hl_status hl_train_conv_backward(hl_vae_tape *tp, hl_vae_conv *c, const hl_tact *x,
                                 const int stride[3], const int pad[6], const float *dy, float *dx);
void hl_causal_pad(const hl_vae_conv *c, int pad[6]);

/* Blocks: forward consumes a->x (saved or freed) and leaves the output in a; backward consumes
 * the output gradient d->x and leaves the input gradient in d. */
hl_status hl_train_res_forward(hl_vae_tape *tp, hl_vae_res *m, hl_tact *a);
hl_status hl_train_res_backward(hl_vae_tape *tp, hl_vae_res *m, hl_tact *d);
hl_status hl_train_attn_forward(hl_vae_tape *tp, hl_vae_attn *m, hl_tact *a);
hl_status hl_train_attn_backward(hl_vae_tape *tp, hl_vae_attn *m, hl_tact *d);
hl_status hl_train_mid_forward(hl_vae_tape *tp, hl_vae_mid *m, hl_tact *a);
hl_status hl_train_mid_backward(hl_vae_tape *tp, hl_vae_mid *m, hl_tact *d);
hl_status hl_train_resample_forward(hl_vae_tape *tp, hl_vae_resample *m, hl_tact *a);
hl_status hl_train_resample_backward(hl_vae_tape *tp, hl_vae_resample *m, hl_tact *d);
/* silu(norm_out(x)) then the causal conv_out */
hl_status hl_train_head_forward(hl_vae_tape *tp, const float *const *norm_out,
                                hl_vae_conv *conv_out, hl_tact *a);
hl_status hl_train_head_backward(hl_vae_tape *tp, const float *const *norm_out,
                                 hl_vae_conv *conv_out, hl_tact *d);

#endif
