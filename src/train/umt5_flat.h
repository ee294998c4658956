/* The UMT5 encoder over flat float32 buffers (train/params.h), for training the text encoder.
 *
 *   hl_umt5_flat f;
 *   hl_umt5_flat_new(&cfg, &f, err);               // layout: hl_umt5_binder's rows and names
 *   float *w = ..., *g = ...;                      // f.layout.total floats each
 *   hl_umt5_params_init_random(&cfg, &f.layout, w, rng)   // or hl_params_load from a checkpoint
 *   hl_umt5_flat_bind(&f, w, g, err);              // f.m's fields -> w, f.grads -> g
 *   hl_umt5_forward_train(ctx, &f.m, ...); ... hl_umt5_backward(ctx, &f.m, tape, dout, f.grads)
 *
 * The layout is the loader's table (state_dict order, the checkpoint's names and shapes), so the
 * checkpoint writer's text_encoder/model.safetensors loads with hl_umt5_load as is; the gradients
 * (hl_umt5_grads_wrap) are the same slices of g, so the backward accumulates straight into the
 * loop's gradient buffer. Rebinding to other buffers is allowed at any time. */
#ifndef HL_TRAIN_UMT5_FLAT_H
#define HL_TRAIN_UMT5_FLAT_H

#include "sample/rng.h"
#include "text/umt5_backward.h"
#include "train/params.h"

typedef struct hl_umt5_flat {
    hl_umt5 m; /* no weights file: its fields point into the bound buffer */
    hl_binder b;
    hl_params layout;
    hl_umt5_grads *grads; /* bound to g (NULL before the first bind) */
    const float *bound_w; /* the buffers of the last bind */
    float *bound_g;
} hl_umt5_flat;

/* A UMT5 encoder of config cfg and its layout; not yet bound. */
hl_status hl_umt5_flat_new(const hl_umt5_config *cfg, hl_umt5_flat *f, hl_error *err);
void hl_umt5_flat_free(hl_umt5_flat *f);

/* Points f->m at w and f->grads at g (both f->layout.total floats; no copies). */
hl_status hl_umt5_flat_bind(hl_umt5_flat *f, const float *w, float *g, hl_error *err);

/* From-scratch initialisation, transformers' T5PreTrainedModel._init_weights (factor 1.0):
 *   shared.weight N(0, 1); q N(0, (d_model·d_kv)^-1/2); k, v N(0, d_model^-1/2);
 *   o N(0, (num_heads·d_kv)^-1/2); relative_attention_bias N(0, d_model^-1/2);
 *   wi_0, wi_1 N(0, d_model^-1/2); wo N(0, d_ff^-1/2); every layer_norm weight 1.
 * Draws come from rng in layout order (one hl_rng_randn_f32 call per matrix). */
void hl_umt5_params_init_random(const hl_umt5_config *cfg, const hl_params *layout, float *data,
                                hl_rng *rng);

#endif
