/* The recipe table (recipes.c) as the pipeline applies it. */
#ifndef HL_API_RECIPES_H
#define HL_API_RECIPES_H

#include "helios.h"

/* The row whose defaults a generation uses: DMD sampling takes the Distilled row (also when
 * --sampler dmd overrides another folder), other pyramid sampling the Mid row, else Base. */
helios_recipe hl_recipe_for(int pyramid, int dmd);

#endif
