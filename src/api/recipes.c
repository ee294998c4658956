/* The defaults of the three Helios recipes (spec §2.1; the diffusers pipelines' __call__
 * defaults and the released model folders). This table is the only place they are written:
 * the pipeline (api/pipeline.c), the chunk loop's defaults (sample/chunk_loop.c) and the CLI's
 * help text (tools/generate.c) read it. */
#include "api/recipes.h"

static const helios_recipe_defaults k_recipes[] = {
    [HELIOS_RECIPE_BASE] =
        {
            .name = "Base",
            .sampler = HELIOS_SAMPLER_UNIPC,
            .pyramid = 0,
            .steps = 50,
            .pyramid_steps = {20, 20, 20},
            .guidance_scale = 5.0f,
            .cfg_zero_star = 0,
            .zero_init_steps = 1,
            .amplify_first_chunk = 0,
            .latent_frames_per_chunk = 9,
            .history_frames = {16, 2, 1},
            .size_multiple = 16,
        },
    [HELIOS_RECIPE_MID] =
        {
            .name = "Mid",
            .sampler = HELIOS_SAMPLER_UNIPC,
            .pyramid = 1,
            .steps = 50,
            .pyramid_steps = {20, 20, 20},
            .guidance_scale = 5.0f,
            .cfg_zero_star = 1,
            .zero_init_steps = 1,
            .amplify_first_chunk = 0,
            .latent_frames_per_chunk = 9,
            .history_frames = {16, 2, 1},
            .size_multiple = 64,
        },
    [HELIOS_RECIPE_DISTILLED] =
        {
            .name = "Distilled",
            .sampler = HELIOS_SAMPLER_DMD,
            .pyramid = 1,
            .steps = 50,
            .pyramid_steps = {2, 2, 2},
            .guidance_scale = 1.0f,
            .cfg_zero_star = 0,
            .zero_init_steps = 1,
            .amplify_first_chunk = 1,
            .latent_frames_per_chunk = 9,
            .history_frames = {16, 2, 1},
            .size_multiple = 64,
        },
};

const helios_recipe_defaults *helios_recipe_defaults_get(helios_recipe r) {
    return (unsigned)r < sizeof k_recipes / sizeof k_recipes[0] ? &k_recipes[r] : NULL;
}

helios_recipe hl_recipe_for(int pyramid, int dmd) {
    return dmd ? HELIOS_RECIPE_DISTILLED : pyramid ? HELIOS_RECIPE_MID : HELIOS_RECIPE_BASE;
}
