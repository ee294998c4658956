/* Training the UMT5 encoder: a forward that keeps what the backward needs (a tape), and the
 * backward into float32 gradients shaped like the weights (hl_umt5).
 *
 *   hl_umt5_grads *g;  hl_umt5_tape *t;
 *   hl_umt5_grads_new(m, &g, err);                      zeroed
 *   hl_umt5_forward_train(ctx, m, B, L, ids, mask, out, &t);
 *   hl_umt5_backward(ctx, m, t, dout, g);               g += ∂L/∂weights for dL/dout = dout
 *   hl_umt5_tape_free(t);  ...  hl_umt5_grads_zero(g) before the next step
 *
 * The training forward runs the op sequence of hl_umt5_forward (same ops, same order, so the
 * same output bit for bit) and keeps per layer its input, q, k, v, the attention output, the
 * residual after attention, the FFN's two projections and both norms' 1/rms; the norm outputs,
 * the gated activation and the position bias are recomputed in the backward. Parameter
 * gradients accumulate (ops.h's convention), so several micro-batches may add into one g. */
#ifndef HL_UMT5_BACKWARD_H
#define HL_UMT5_BACKWARD_H

#include "text/umt5.h"

/* ∂L/∂ of one layer's weights, named and shaped as hl_umt5_layer (PyTorch order). */
typedef struct hl_umt5_layer_grads {
    float *ln_attn;     /* layer.0.layer_norm.weight [D] */
    float *q, *k, *v;   /* layer.0.SelfAttention.{q,k,v}.weight [H*dkv, D] */
    float *o;           /* layer.0.SelfAttention.o.weight [D, H*dkv] */
    float *rel_bias;    /* layer.0.SelfAttention.relative_attention_bias.weight [buckets, H] */
    float *ln_ffn;      /* layer.1.layer_norm.weight [D] */
    float *wi_0, *wi_1; /* layer.1.DenseReluDense.wi_{0,1}.weight [F, D] */
    float *wo;          /* layer.1.DenseReluDense.wo.weight [D, F] */
} hl_umt5_layer_grads;

typedef struct hl_umt5_grads {
    float *shared; /* shared.weight [vocab, D] (= encoder.embed_tokens.weight, tied) */
    hl_umt5_layer_grads *layers;
    float *final_ln; /* encoder.final_layer_norm.weight [D] */
    float *buf;      /* owns every array above (NULL: wrapped, hl_umt5_grads_wrap) */
    int64_t numel;   /* floats in buf */
} hl_umt5_grads;

/* Zeroed gradients for m's weights. */
hl_status hl_umt5_grads_new(const hl_umt5 *m, hl_umt5_grads **out, hl_error *err);
/* Gradients over the caller's buffer buf (numel floats, laid out as the weights in state_dict
 * order, i.e. hl_umt5_binder's rows: train/umt5_flat.h's flat gradient buffer); not zeroed, not
 * owned (g->buf is NULL; hl_umt5_grads_free leaves buf alone). */
hl_status hl_umt5_grads_wrap(const hl_umt5 *m, float *buf, hl_umt5_grads **out, hl_error *err);
void hl_umt5_grads_zero(hl_umt5_grads *g);
void hl_umt5_grads_free(hl_umt5_grads *g);

/* What one training forward keeps for its backward (opaque; valid while m's weights and the ids
 * and mask it was given are unchanged — it keeps its own copies of ids and mask). */
typedef struct hl_umt5_tape hl_umt5_tape;

/* hl_umt5_forward (no probes) that also records *tape (new; free with hl_umt5_tape_free).
 * out [B, L, D]; on failure *tape is NULL. */
hl_status hl_umt5_forward_train(const hl_ctx *ctx, const hl_umt5 *m, int B, int64_t L,
                                const int64_t *ids, const int64_t *mask, float *out,
                                hl_umt5_tape **tape);

/* g += ∂L/∂weights given dout = ∂L/∂out [B, L, D] of the forward that recorded tape (with
 * this m: a tape of another model is HELIOS_ERR_INVALID_ARG). */
hl_status hl_umt5_backward(const hl_ctx *ctx, const hl_umt5 *m, const hl_umt5_tape *tape,
                           const float *dout, hl_umt5_grads *g);

void hl_umt5_tape_free(hl_umt5_tape *t);

#endif
