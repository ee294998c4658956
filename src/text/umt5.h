/* The UMT5 encoder (transformers UMT5EncoderModel; spec §5): token embedding, per-layer relative
 * position bias with bidirectional buckets, attention without 1/sqrt(d), T5 RMSNorm, gated
 * tanh-GELU FFN, final norm, additive padding mask. Weights as stored (f32 or bf16), used in
 * place from the checkpoint's mapping. */
#ifndef HL_UMT5_H
#define HL_UMT5_H

#include <stdbool.h>

#include "core/probe.h"
#include "io/binder.h"
#include "io/json.h"
#include "io/weights.h"
#include "ops/ops.h"

typedef struct hl_umt5_config {
    int vocab_size, d_model, d_kv, d_ff, num_layers, num_heads;
    int num_buckets, max_distance;
    float eps;
} hl_umt5_config;

hl_status hl_umt5_config_parse(const hl_json *j, hl_umt5_config *c, hl_error *err);

typedef struct hl_umt5_layer {
    const float *ln_attn;  /* layer.0.layer_norm.weight [D] */
    hl_tensor q, k, v, o;  /* layer.0.SelfAttention.{q,k,v,o}.weight */
    const float *rel_bias; /* layer.0.SelfAttention.relative_attention_bias.weight [buckets, H] */
    const float *ln_ffn;   /* layer.1.layer_norm.weight [D] */
    hl_tensor wi_0, wi_1, wo; /* layer.1.DenseReluDense.* */
} hl_umt5_layer;

typedef struct hl_umt5 {
    hl_umt5_config cfg;
    hl_weights *weights;
    hl_tensor shared; /* shared.weight [vocab, D] */
    hl_umt5_layer *layers;
    const float *final_ln; /* encoder.final_layer_norm.weight [D] */
    float *small;          /* owns the float32 copies */
} hl_umt5;

/* config.json + weights (a file, an index or a folder). */
hl_status hl_umt5_load(const char *config_path, const char *weights_path, hl_umt5 **out,
                       hl_error *err);
void hl_umt5_free(hl_umt5 *m);

/* The loader's name -> field table of m (m->cfg set; m->layers allocated when NULL): rows in
 * state_dict order (shared.weight, then per block layer.0 norm, q, k, v, o, relative bias,
 * layer.1 norm, wi_0, wi_1, wo, then encoder.final_layer_norm.weight), the checkpoint's names and
 * shapes. Initialises *b (free with hl_binder_free). Training lays its flat buffer out from it
 * (train/umt5_flat.h), so a trained checkpoint loads with hl_umt5_load as is. */
hl_status hl_umt5_binder(hl_umt5 *m, hl_binder *b, hl_error *err);

/* T5's bidirectional relative position bucket of n = key position - query position, computed in
 * float32 as the reference does (the rounding decides bucket edges). */
int hl_umt5_bucket(int64_t n, int num_buckets, int max_distance);

/* bias [H, L, L] of layer `layer`: relative_attention_bias[bucket(j - i), h]. */
hl_status hl_umt5_position_bias(const hl_umt5 *m, int layer, int64_t L, float *bias, hl_error *err);

/* h [M, D] = shared.weight[ids] (as float32) of M token ids; an id outside the vocabulary is
 * HELIOS_ERR_INVALID_ARG. */
hl_status hl_umt5_embed(const hl_umt5 *m, int64_t M, const int64_t *ids, float *h, hl_error *err);

/* last_hidden_state [B, L, D] of ids [B, L]; mask [B, L] (1 = token, 0 = padding) or NULL.
 * Probes: "hidden_states.i" (input of block i; the last one is after the final norm). */
hl_status hl_umt5_forward(const hl_ctx *ctx, const hl_umt5 *m, int B, int64_t L, const int64_t *ids,
                          const int64_t *mask, const hl_probe *probe, float *out);

/* The pipeline's post-processing: rows at or past each sequence's mask length are set to 0. */
void hl_umt5_zero_padding(int B, int64_t L, int64_t D, const int64_t *mask, float *out);

#endif
