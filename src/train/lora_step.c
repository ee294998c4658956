/* The training objective over LoRA adapters (train/lora_step.h). */
#include "train/lora_step.h"

#include <stdlib.h>
#include <string.h>

hl_status hl_lora_objective_init(hl_lora_objective *o, const hl_lora *l, int64_t n_model,
                                 const float *w0, hl_train_step_fn step,
                                 hl_train_validate_fn validate, void *obj, hl_error *err) {
    memset(o, 0, sizeof *o);
    if (!l || !l->base || !w0 || !step || n_model <= 0)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "lora objective: needs adapters with their W0, the model's weights and a "
                       "step function");
    o->lora = l, o->step = step, o->validate = validate, o->obj = obj, o->n_model = n_model;
    o->w = malloc((size_t)n_model * sizeof *o->w);
    o->gw = malloc((size_t)n_model * sizeof *o->gw);
    if (!o->w || !o->gw) {
        hl_lora_objective_free(o);
        return hl_fail(err, HELIOS_ERR_OOM, "lora objective: out of memory for the model buffers");
    }
    memcpy(o->w, w0, (size_t)n_model * sizeof *o->w);
    return HL_OK;
}

void hl_lora_objective_free(hl_lora_objective *o) {
    free(o->w), free(o->gw), free(o->w_ema);
    memset(o, 0, sizeof *o);
}

hl_status hl_lora_objective_step(void *obj, hl_rng *rng, int64_t sample_index, const float *params,
                                 float *grads, double *loss, hl_error *err) {
    hl_lora_objective *o = obj;
    HL_TRY(hl_lora_apply(o->lora, params, o->w, err));
    memset(o->gw, 0, (size_t)o->n_model * sizeof *o->gw);
    HL_TRY(o->step(o->obj, rng, sample_index, o->w, o->gw, loss, err));
    hl_lora_grads(o->lora, params, o->gw, grads);
    return HL_OK;
}

hl_status hl_lora_objective_validate(void *obj, int64_t step, const float *params, const float *ema,
                                     double *loss, hl_error *err) {
    hl_lora_objective *o = obj;
    if (!o->validate) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "lora objective: no validation");
    HL_TRY(hl_lora_apply(o->lora, params, o->w, err));
    if (ema && !o->w_ema) {
        o->w_ema = malloc((size_t)o->n_model * sizeof *o->w_ema);
        if (!o->w_ema) return hl_fail(err, HELIOS_ERR_OOM, "lora objective: out of memory");
        memcpy(o->w_ema, o->w, (size_t)o->n_model * sizeof *o->w_ema); /* non-targets */
    }
    if (ema) HL_TRY(hl_lora_apply(o->lora, ema, o->w_ema, err));
    return o->validate(o->obj, step, o->w, ema ? o->w_ema : NULL, loss, err);
}
