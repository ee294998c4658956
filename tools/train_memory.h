/* helios train --gan-memory (tools/train_memory.c). */
#ifndef HL_TOOLS_TRAIN_MEMORY_H
#define HL_TOOLS_TRAIN_MEMORY_H

#include "tools/train_config.h"
#include "train/params.h"
#include "dit/dit.h"

/* Prints the peak activation memory of one generator step with and without Cache Grad; 0 or 1
 * (err set). params: the model's weights laid out as layout. */
int train_gan_memory(const train_cfg *c, const hl_dit_config *dit, const hl_params *layout,
                     float *params, hl_error *err);

#endif
