/* The transformer over flat float32 buffers (train/params.h), for training.
 *
 *   hl_params layout;  hl_dit_params_layout(&cfg, &layout, err);
 *   float *w = calloc(layout.total, 4), *g = calloc(layout.total, 4);
 *   hl_dit_params_init_random(&cfg, &layout, w, rng);   // or hl_params_load(&layout, w, weights)
 *   hl_dit *m, *grad;
 *   hl_dit_new_flat(&cfg, &layout, w, &m, err);          // trainable model: fields point into w
 *   hl_dit_new_flat(&cfg, &layout, g, &grad, err);       // gradient view: fields point into g
 *
 * Every hl_tensor of the result is a contiguous HL_F32 view into the buffer and every const float *
 * small field (norm gains, scale_shift_table, history_key_scale) points at its slice of the buffer,
 * so a backward accumulates into grad->blocks[i].attn1.to_q_w.data and, casting away the const,
 * into (float *)grad->blocks[i].attn1.norm_q. The model owns neither buffer (m->weights and
 * m->small are NULL); hl_dit_free frees only the struct. Parameter names are the checkpoint's
 * (diffusers) names, in hl_dit_binder_rows order. */
#ifndef HL_TRAIN_DIT_FLAT_H
#define HL_TRAIN_DIT_FLAT_H

#include "core/dtype.h"
#include "dit/dit.h"
#include "sample/rng.h"
#include "train/params.h"

/* The layout of every parameter of a transformer of config c. */
hl_status hl_dit_params_layout(const hl_dit_config *c, hl_params *out, hl_error *err);

/* A transformer of config c whose every field points into data, laid out as layout (which must be
 * hl_dit_params_layout(c)'s; checked row by row). */
hl_status hl_dit_new_flat(const hl_dit_config *c, const hl_params *layout, float *data,
                          hl_dit **out, hl_error *err);

/* A transformer loaded for training: its config, layout, the flat weights w (from a checkpoint),
 * a zeroed gradient buffer g of the same layout, and the model and gradient view bound to them.
 * weights_path: a .safetensors file, an index or a folder (io/weights.h), f32 or bf16. */
typedef struct hl_dit_flat {
    hl_dit_config cfg;
    hl_params layout;
    float *w, *g;
    hl_dit *m, *grad;
} hl_dit_flat;

hl_status hl_dit_flat_load(const char *config_path, const char *weights_path, hl_dit_flat *f,
                           hl_error *err);
void hl_dit_flat_free(hl_dit_flat *f);

/* Mixed precision (f32 master weights, bf16 compute): a transformer whose GEMM operands (the
 * linear and patch-embedding weights and biases: every tensor row of the binder table) are bf16
 * views into shadow (layout.total values at the layout's offsets), while its small float32
 * vectors (norm gains, modulation tables, history_key_scale) point into the f32 master data.
 * The ops then compute as with a bf16 checkpoint (ops.h precision rule); gradients stay f32 in
 * the gradient view. hl_params_to_bf16 (train/params.h) refreshes the shadow from the master
 * after the weights change. */
hl_status hl_dit_new_flat_bf16(const hl_dit_config *c, const hl_params *layout, float *data,
                               hl_bf16 *shadow, hl_dit **out, hl_error *err);

/* From-scratch initialisation, as Wan's WanModel.init_weights does (the Helios training recipe
 * starts from Wan weights and states none of its own):
 *   - every linear / patch-embedding weight: xavier_uniform over the weight flattened to
 *     [out, in * kernel] (bound sqrt(6 / (fan_in + fan_out)));
 *   - condition_embedder.{time,text}_embedder.linear_{1,2}.weight: N(0, 0.02);
 *   - proj_out.weight (the head): zeros;
 *   - every bias (patch embeddings included) and norm2.bias: zeros;
 *   - norm_q / norm_k / norm2 gains and history_key_scale: ones;
 *   - scale_shift_table and norm_out.scale_shift_table: N(0, 1) / sqrt(D).
 * Draws come from rng in layout order (one torch.rand / torch.randn call per drawn parameter), so
 * a seed gives the same weights on every machine. */
void hl_dit_params_init_random(const hl_dit_config *c, const hl_params *layout, float *data,
                               hl_rng *rng);

#endif
