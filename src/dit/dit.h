/* The Helios transformer (diffusers HeliosTransformer3DModel), written over ops.
 *
 * Token sequence of one forward, per batch element (spec §1.3):
 *   [ long (patch_long, 4x8x8) | mid (patch_mid, 2x4x4) | short (patch_short, 1x2x2) | current ]
 *   \______________________ history: n_hist tokens ______________________/  \___ n_cur ___/
 * History tokens use the t = 0 modulation (zero_history_timestep), skip cross-attention
 * (guidance_cross_attn) and their keys may be amplified per head (is_amplify_history).
 * Only the current tokens reach the output head.
 *
 * Activations are float32 [B, S, D] (PyTorch order). Weights stay as stored (f32 or bf16) and
 * are used in place from the checkpoint's mapping; only small vectors (norm gains, modulation
 * tables) are copied to float32 at load.
 */
#ifndef HL_DIT_H
#define HL_DIT_H

#include <stdbool.h>

#include "core/arena.h"
#include "core/probe.h"
#include "core/tensor.h"
#include "io/binder.h"
#include "io/json.h"
#include "io/weights.h"
#include "ops/ops.h"

typedef struct hl_dit_config {
    int patch[3];        /* patch_size (t, h, w) */
    int heads, head_dim; /* num_attention_heads, attention_head_dim */
    int dim;             /* inner dim D = heads * head_dim */
    int in_channels, out_channels;
    int text_dim, freq_dim, ffn_dim, num_layers;
    bool cross_attn_norm;
    float eps;
    int rope_dim[3]; /* (t, y, x), sum = head_dim */
    double rope_theta;
    bool guidance_cross_attn, zero_history_timestep, has_multi_term_memory_patch;
    bool is_amplify_history;
    bool history_scale_per_head; /* history_scale_mode "per_head" (else "scalar") */
} hl_dit_config;

/* Reads a diffusers transformer config.json; every field the model uses must be present or has
 * the class default documented in spec §1.1. Unsupported values are HELIOS_ERR_UNSUPPORTED. */
hl_status hl_dit_config_parse(const hl_json *j, hl_dit_config *c, hl_error *err);

/* One attention module's weights (attn1 or attn2); names follow the checkpoint. */
typedef struct hl_dit_attn {
    hl_tensor to_q_w, to_q_b, to_k_w, to_k_b, to_v_w, to_v_b, to_out_w, to_out_b;
    const float *norm_q, *norm_k;   /* [D] float32 copies */
    const float *history_key_scale; /* [H] or [1], float32 copy; NULL if absent */
} hl_dit_attn;

typedef struct hl_dit_block {
    const float *scale_shift_table; /* [6, D] float32 copy */
    hl_dit_attn attn1, attn2;
    const float *norm2_w, *norm2_b; /* [D] float32 copies; NULL when cross_attn_norm is false */
    hl_tensor ffn0_w, ffn0_b, ffn2_w, ffn2_b; /* ffn.net.0.proj, ffn.net.2 */
} hl_dit_block;

struct helios_transformer {
    hl_dit_config cfg;
    hl_weights *weights; /* owns the mappings the tensors point into (NULL for synthetic) */
    hl_tensor patch_embedding_w, patch_embedding_b;
    hl_tensor patch_short_w, patch_short_b, patch_mid_w, patch_mid_b, patch_long_w, patch_long_b;
    hl_tensor time_linear_1_w, time_linear_1_b, time_linear_2_w, time_linear_2_b;
    hl_tensor time_proj_w, time_proj_b;
    hl_tensor text_linear_1_w, text_linear_1_b, text_linear_2_w, text_linear_2_b;
    const float *norm_out_table; /* [2, D] float32 copy */
    hl_tensor proj_out_w, proj_out_b;
    hl_dit_block *blocks; /* [num_layers] */
    float *small;         /* owns every float32 copy above */
};
typedef struct helios_transformer hl_dit;

/* Loads config.json and the weights (a .safetensors file, an index or a folder). */
hl_status hl_dit_load(const char *config_path, const char *weights_path, hl_dit **out,
                      hl_error *err);
void hl_dit_free(hl_dit *t);

/* Binds the model's tensors from w (config already in t->cfg) and makes the float32 copies. */
hl_status hl_dit_bind(hl_dit *t, hl_weights *w, hl_error *err);
void hl_dit_release(hl_dit *t);

/* The name -> field table of model m (m->cfg set, m->blocks holding cfg.num_layers blocks), in
 * checkpoint order: tensor rows point at m's hl_tensor fields, f32 rows at its const float *
 * fields. b must have been initialised with at least hl_dit_binder_capacity(&m->cfg) rows.
 * hl_dit_bind binds it to a checkpoint; training binds it to a flat buffer (train/dit_flat.h). */
void hl_dit_binder_rows(hl_binder *b, hl_dit *m);
static inline size_t hl_dit_binder_capacity(const hl_dit_config *c) {
    return 32 + (size_t)c->num_layers * 32;
}

/* ---- pieces of the forward (exposed for tests, the bench and, later, training) ------------ */

/* The 256-wide sinusoid of t (as float32, cos half first) -> temb [D] and timestep_proj [6, D]. */
hl_status hl_dit_time_embed(const hl_ctx *ctx, const hl_dit *t, double timestep, float *temb,
                            float *tproj);

/* The backward of hl_dit_time_embed at timestep: parameter gradients accumulate into g (a
 * gradient view of the model) from ∂L/∂tproj [6, D] and ∂L/∂temb [D] (NULL: none). */
hl_status hl_dit_time_embed_backward(const hl_ctx *ctx, const hl_dit *m, double timestep,
                                     const float *dtproj, const float *dtemb, hl_dit *g);

/* Rotary table of a grid: rope [T*H*W, head_dim] (cos[hd/2], sin[hd/2] per token), frame
 * indices idx[T], rows y = 0..H-1, columns x = 0..W-1. */
void hl_dit_rope_grid(const hl_dit_config *c, int64_t T, const int64_t *idx, int64_t H, int64_t W,
                      float *rope);
/* The table of the grid (T, H, W), replicate-padded to multiples of k and average-pooled with a
 * k x k x k window (cos and sin values averaged, as the reference does for mid/long history):
 * rope [ceil(T/k)*ceil(H/k)*ceil(W/k), head_dim]. */
void hl_dit_rope_pooled(const hl_dit_config *c, int64_t T, const int64_t *idx, int64_t H, int64_t W,
                        int k, float *rope);

/* The whole forward: out (B, C_out, T, H, W). probe may be NULL. */
hl_status hl_dit_forward(const hl_ctx *ctx, const hl_dit *m, const helios_dit_input *in,
                         const hl_probe *probe, float *out);

/* Scratch for one block forward over B x S tokens with L text tokens. */
typedef struct hl_dit_scratch {
    const hl_probe *probe;    /* NULL: none */
    int layer;                /* index of the block being run, for probe names */
    float *h, *q, *k, *v, *a; /* [B*S, D] each */
    float *f;                 /* [rows_ffn, ffn_dim]: the FFN runs over row tiles of this height */
    int64_t rows_ffn;
    float *ck, *cv; /* [B*L, D] text keys / values */
    float *mod;     /* [B, 2, 6, D] modulation of each batch element and segment */
} hl_dit_scratch;

hl_status hl_dit_scratch_alloc(hl_arena *a, const hl_dit_config *c, int B, int64_t S, int64_t L,
                               hl_dit_scratch *s);

/* One block, in place on x [B, S, D] (S = n_hist + n_cur tokens per batch element).
 *   tproj: [B, 2, 6, D] — per batch element, the timestep projection for history (slot 0) and
 *          current (slot 1) tokens; rope: [S, head_dim], shared by the batch;
 *   enc:   [B, L, D] projected text. */
hl_status hl_dit_block_forward(const hl_ctx *ctx, const hl_dit_config *c, const hl_dit_block *blk,
                               int B, int64_t n_hist, int64_t n_cur, const float *tproj,
                               const float *rope, int64_t L, const float *enc, hl_dit_scratch *s,
                               float *x);

/* ---- training (src/dit/train.c, src/dit/block_train.c) ------------------------------------ */

/* What a training forward keeps for its backward (opaque). It points at the input's arrays,
 * which must stay valid and unchanged until hl_dit_backward. */
typedef struct hl_dit_tape hl_dit_tape;

/* Where hl_dit_backward writes the input gradients (each NULL: not wanted), shaped as the
 * corresponding helios_dit_input arrays. */
typedef struct hl_dit_input_grads {
    float *hidden_states, *encoder_hidden_states;
    float *latents_history_short, *latents_history_mid, *latents_history_long;
} hl_dit_input_grads;

/* The forward (out as hl_dit_forward) keeping a tape. recompute = 1 keeps only each block's input
 * and runs the block forward again during the backward (activation memory of one block instead
 * of all of them). */
hl_status hl_dit_forward_train(const hl_ctx *ctx, const hl_dit *m, const helios_dit_input *in,
                               int recompute, hl_dit_tape **tape, float *out);

/* The backward from dout = ∂L/∂out (the shape of out): parameter gradients ACCUMULATE into the
 * gradient view g (same config, float32 fields: train/dit_flat.h), input gradients as gin. */
hl_status hl_dit_backward(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *tape, const float *dout,
                          hl_dit *g, const hl_dit_input_grads *gin);

/* Taps on hidden states (the GAN heads of the critic read them, train/gan.h): hidden_k is block
 * blocks[k]'s output restricted to the current tokens, [B, n_cur, D] (history rows dropped).
 *   forward:  hidden[k] (NULL entry or NULL array: not wanted) receives hidden_k;
 *   backward: dhidden[k] = ∂L/∂hidden_k from the caller's terms (NULL entry or NULL array: none)
 *             is ADDED to the residual gradient where the backward passes block blocks[k]; with
 *             dout = ∂L/∂out the gradients are those of the whole L (e.g. L = Σ out ⊙ R +
 *             Σ_k hidden_k ⊙ Q_k: dout = R, dhidden[k] = Q_k).
 * A block may be tapped more than once. Indices outside [0, num_layers) are
 * HELIOS_ERR_INVALID_ARG. */
typedef struct hl_dit_taps {
    int n;
    const int *blocks;
    float *const *hidden;
    const float *const *dhidden;
} hl_dit_taps;

/* hl_dit_forward_train / hl_dit_backward with taps (NULL: none, as the plain calls). dout may be
 * NULL in the backward: no gradient arrives through out (only through the taps). */
hl_status hl_dit_forward_train_taps(const hl_ctx *ctx, const hl_dit *m, const helios_dit_input *in,
                                    int recompute, const hl_dit_taps *taps, hl_dit_tape **tape,
                                    float *out);
hl_status hl_dit_backward_taps(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *tape,
                               const float *dout, const hl_dit_taps *taps, hl_dit *g,
                               const hl_dit_input_grads *gin);

/* Several inputs in one forward (variable-length packing): every batch element of every input is
 * one sequence of the token rows; attention (self and cross) stays within a sequence, each
 * sequence has its own timestep, text and rotary table, and every linear layer runs once over
 * the rows of all sequences. The result equals one hl_dit_forward_train per input (the sums of
 * the GEMMs and of the parameter gradients may round differently). in[i] and out[i] / dout[i]
 * as in the calls above; the inputs must agree on text_len. Taps see the current rows of the
 * sequences in order: hidden_k [Σ_i B_i·n_cur_i, D]. dout NULL: no gradient through the outputs;
 * gin NULL or gin[n] (each entry as hl_dit_backward's). */
hl_status hl_dit_forward_train_packed(const hl_ctx *ctx, const hl_dit *m, int n,
                                      const helios_dit_input *in, int recompute,
                                      const hl_dit_taps *taps, hl_dit_tape **tape,
                                      float *const *out);
hl_status hl_dit_backward_packed(const hl_ctx *ctx, const hl_dit *m, hl_dit_tape *tape,
                                 const float *const *dout, const hl_dit_taps *taps, hl_dit *g,
                                 const hl_dit_input_grads *gin);

/* Bytes of activations the tape holds now (the backward's scratch included once it ran). */
size_t hl_dit_tape_bytes(const hl_dit_tape *t);
void hl_dit_tape_free(hl_dit_tape *t);

#endif
