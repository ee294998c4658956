#include "train/objective.h"

#include <string.h>

#include "train/objective_flow.h"

/* clang-format off */
static const hl_train_objective k_objectives[] = {
    {"quadratic", "toy: noisy pull of every parameter toward a random target (tests the loop)",
     hl_quadratic_create, hl_quadratic_step, hl_quadratic_validate, hl_quadratic_destroy, NULL, NULL, NULL, "any", NULL, NULL, NULL, NULL, NULL},
    {"stage1", "flow matching of Helios stage 1 (Base): history, anchor, task mix, Frame-Aware Corrupt",
     hl_stage1_create, hl_flow_objective_step, hl_flow_validate, hl_flow_destroy, NULL, NULL, NULL, NULL, NULL, hl_flow_objective_tokens, NULL, NULL, hl_flow_objective_step_batch},
    {"stage2", "pyramid flow matching of Helios stage 2 (Mid): the model's pyramid levels, samples per level",
     hl_stage2_create, hl_flow_objective_step, hl_flow_validate, hl_flow_destroy, NULL, NULL, NULL, NULL, NULL, hl_flow_objective_tokens, NULL, NULL, hl_flow_objective_step_batch},
    {"ode_init", "staged ODE initialisation of the stage-3 student: x0 regression on cached teacher trajectories",
     hl_ode_create, hl_ode_step, hl_ode_validate, hl_ode_destroy, hl_ode_save, hl_ode_load, NULL, NULL, "ema", hl_ode_tokens, &hl_ode_sync, NULL, NULL},
    {"stage3", "DMD distillation of Helios stage 3: few-step student, frozen teacher (CFG), trainable critic, TTUR, optional GAN heads with Cache Grad",
     hl_stage3_create, hl_stage3_step, hl_stage3_validate, hl_stage3_destroy, hl_stage3_save, hl_stage3_load, hl_stage3_updates, NULL, "ema", NULL, &hl_stage3_sync, NULL, NULL},
    {"vae", "the Wan VAE: reconstruction L1/L2 + KL on clips in pixels (component \"vae\")",
     hl_vae_objective_create, hl_vae_objective_step, NULL, hl_vae_objective_destroy, NULL, NULL, NULL, "vae", NULL, hl_vae_objective_tokens, NULL, hl_vae_objective_trained, NULL},
    {"mlm", "the UMT5 text encoder: masked-token prediction on the captions, tied head (component \"text_encoder\")",
     hl_text_objective_create, hl_text_objective_step, NULL, hl_text_objective_destroy, NULL, NULL, NULL, "text_encoder", NULL, hl_text_objective_tokens, NULL, NULL, NULL},
};
/* clang-format on */

const hl_train_objective *hl_train_objective_find(const char *name) {
    for (size_t i = 0; i < sizeof k_objectives / sizeof *k_objectives; i++)
        if (!strcmp(k_objectives[i].name, name)) return &k_objectives[i];
    return NULL;
}

const hl_train_objective *hl_train_objectives(size_t *n) {
    *n = sizeof k_objectives / sizeof *k_objectives;
    return k_objectives;
}
