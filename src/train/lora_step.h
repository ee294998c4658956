/* A training objective over LoRA adapters: wraps an objective over the model's parameters (a
 * train_loop.h step function, e.g. the stage-1 one) so that the loop trains the adapter buffer
 * only (train/lora.h).
 *
 *   hl_lora l;  hl_lora_new(&l, &model_layout, w0, rank, alpha, targets, err);
 *   float *ad = ...;  hl_lora_init_adapters(&l, ad, rng);             // the loop's params
 *   hl_lora_objective o;
 *   hl_lora_objective_init(&o, &l, model_layout.total, w0, inner_step, inner_validate, inner, err);
 *   tc.io.layout = &l.layout;                                          // checkpoints: adapters
 *   hl_train_run(&tc, hl_lora_objective_step, hl_lora_objective_validate, &o, ad, ema, &res, err);
 *
 * Each sample: W = W0 + s B A into the model buffer, dW = 0, the inner step accumulates dW, then
 * the adapters' gradients are added to the loop's buffer. The gradient is linear in dW, so the
 * sum over a step's samples is the one of the summed dW (up to float32 rounding). W is rebuilt
 * per sample although the adapters change once per optimizer step: O(N K r) per target, small
 * next to a forward and backward. */
#ifndef HL_TRAIN_LORA_STEP_H
#define HL_TRAIN_LORA_STEP_H

#include "train/lora.h"
#include "train/train_loop.h"

typedef struct hl_lora_objective {
    const hl_lora *lora;           /* needs its W0 copy (hl_lora_new with w0) */
    hl_train_step_fn step;         /* the objective over the model's parameters */
    hl_train_validate_fn validate; /* may be NULL */
    void *obj;
    int64_t n_model;       /* floats of the model buffer */
    float *w, *gw, *w_ema; /* owned: W, dW and the W of the EMA adapters (made on first use) */
} hl_lora_objective;

/* w0: the whole model buffer (n_model floats; its non-target parameters stay as they are). */
hl_status hl_lora_objective_init(hl_lora_objective *o, const hl_lora *l, int64_t n_model,
                                 const float *w0, hl_train_step_fn step,
                                 hl_train_validate_fn validate, void *obj, hl_error *err);
void hl_lora_objective_free(hl_lora_objective *o);

/* hl_train_step_fn over the adapters: params / grads are adapter buffers (l->layout). */
hl_status hl_lora_objective_step(void *o, hl_rng *rng, int64_t sample_index, const float *params,
                                 float *grads, double *loss, hl_error *err);
/* hl_train_validate_fn: the inner validation on W of params and of ema (when given). */
hl_status hl_lora_objective_validate(void *o, int64_t step, const float *params, const float *ema,
                                     double *loss, hl_error *err);

#endif
