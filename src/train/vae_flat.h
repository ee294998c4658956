/* The Wan VAE over flat float32 buffers (train/params.h), for training (issue 10 item 5).
 *
 *   hl_vae_flat f;
 *   hl_vae_flat_new(&cfg, &f, err);              // module tree, layout (names: the checkpoint's)
 *   float *w = ..., *g = ...;                    // f.layout.total floats each
 *   hl_vae_params_init_random(&f.layout, w, rng) // or hl_vae_params_from_model(loaded, ...)
 *   hl_vae_flat_bind(&f, w, g, err);             // f.m's fields -> w, f.grads -> g
 *   hl_vae_encode_forward_save(ctx, f.m, ...); ... hl_vae_encode_backward(tape, dm, NULL, f.grads)
 *
 * The layout lists every hl_vae_param of the model (encoder, quant_conv, post_quant_conv,
 * decoder) in the loader's table order with the checkpoint's shapes, so the checkpoint writer's
 * COMPONENT/diffusion_pytorch_model.safetensors loads with hl_vae_load as is. Binding repoints
 * every conv / attention tensor at its float32 slice of w and every norm gain at its slice; the
 * gradients (hl_vae_grads_wrap) are the same slices of g, so the backwards accumulate straight
 * into the flat gradient buffer. Rebinding to other buffers is allowed at any time. */
#ifndef HL_TRAIN_VAE_FLAT_H
#define HL_TRAIN_VAE_FLAT_H

#include "sample/rng.h"
#include "train/params.h"
#include "vae/vae.h"

typedef struct hl_vae_flat {
    hl_vae_config cfg;
    hl_params layout;
    hl_vae *m;            /* encoder + decoder; float32 placeholder weights until bound */
    hl_vae_grads *grads;  /* bound to g (NULL before the first bind) */
    const float *bound_w; /* the buffers of the last bind */
    const hl_bf16 *bound_w16;
    float *bound_g;
} hl_vae_flat;

/* A VAE of config cfg (encoder included) and its layout; not yet bound. */
hl_status hl_vae_flat_new(const hl_vae_config *cfg, hl_vae_flat *f, hl_error *err);
void hl_vae_flat_free(hl_vae_flat *f);

/* The layout of every parameter of v (v->params, in order, with the checkpoint's shapes). */
hl_status hl_vae_params_layout(const hl_vae *v, hl_params *out, hl_error *err);

/* Points f->m at w and f->grads at g (both f->layout.total floats; no copies). The first bind
 * frees the placeholder weights, so a bound model costs the two flat buffers only. */
hl_status hl_vae_flat_bind(hl_vae_flat *f, const float *w, float *g, hl_error *err);
/* The same with the conv and attention weights (every parameter of two or more dimensions) read
 * from w16, a bf16 copy of w laid out alike (hl_params_to_bf16): the convolutions then compute
 * in bf16 (ops.h, the precision rule), the norm gains and biases stay float32 from w. NULL w16:
 * hl_vae_flat_bind. The gradients are float32 either way. */
hl_status hl_vae_flat_bind_bf16(hl_vae_flat *f, const float *w, const hl_bf16 *w16, float *g,
                                hl_error *err);

/* From-scratch initialisation (the Wan VAE's own is unpublished):
 *   - every conv / attention weight [O, C, k...]: He uniform, U(-sqrt(6/fan_in), sqrt(6/fan_in))
 *     with fan_in = C · prod(k) (kaiming_uniform with gain sqrt(2));
 *   - every bias: zeros;  every norm gain (*.gamma): ones.
 * Not PyTorch's default (bound 1/sqrt(fan_in)): the Wan VAE's RMS norms do not subtract a mean,
 * so with convs that shrink their input 3x in variance the latent's share of the decoder's
 * activations is a few hundredths, the biases learnt in the first steps swamp it, and the decoder
 * settles on one picture for every clip (train/tiny/README.md has the probes). Draws come from
 * rng in layout order (one hl_rng_rand_f32 call per weight). */
void hl_vae_params_init_random(const hl_params *layout, float *data, hl_rng *rng);

/* Copies the weights of a loaded VAE (F32 or BF16, same config) into data laid out as layout
 * (checked name by name). */
hl_status hl_vae_params_from_model(const hl_vae *v, const hl_params *layout, float *data,
                                   hl_error *err);

#endif
