/* vae/config.json (AutoencoderKLWan's constructor arguments, spec §4.1). */
#include <string.h>

#include "core/log.h"
#include "vae/vae.h"

static const float k_mean[16] = {-0.7571f, -0.7089f, -0.9113f, 0.1075f,  -0.1745f, 0.9653f,
                                 -0.1517f, 1.5508f,  0.4134f,  -0.0715f, 0.5517f,  -0.3632f,
                                 -0.1922f, -0.9497f, 0.2503f,  -0.2921f};
static const float k_std[16] = {2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f,
                                2.6052f, 2.0743f, 3.2687f, 2.1526f, 2.8652f, 1.5579f,
                                1.6382f, 1.1253f, 2.8251f, 1.9160f};

static void derive_ratios(hl_vae_config *c) {
    c->spatial_ratio = 1 << (c->n_levels - 1);
    c->temporal_ratio = 1;
    for (int i = 0; i < c->n_levels - 1; i++)
        if (c->temperal_downsample[i]) c->temporal_ratio *= 2;
}

void hl_vae_config_wan21(hl_vae_config *c) {
    memset(c, 0, sizeof *c);
    c->base_dim = c->decoder_base_dim = 96;
    c->z_dim = 16;
    c->n_levels = 4;
    for (int i = 0; i < 4; i++) c->dim_mult[i] = (int[]){1, 2, 4, 4}[i];
    c->num_res_blocks = 2;
    c->temperal_downsample[1] = c->temperal_downsample[2] = true;
    c->in_channels = c->out_channels = 3;
    memcpy(c->latents_mean, k_mean, sizeof k_mean);
    memcpy(c->latents_std, k_std, sizeof k_std);
    c->latents_n = 16;
    derive_ratios(c);
}

/* An optional positive int (absent or null keeps *v). */
static hl_status get_int(const hl_json *j, const char *key, int lo, int hi, int *v, hl_error *err) {
    const hl_json *m = hl_json_get(j, key);
    if (!m || m->type == HL_JSON_NULL) return HL_OK;
    if (m->type != HL_JSON_NUMBER || !m->is_int || m->integer < lo || m->integer > hi)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' must be an integer in [%d, %d]", key, lo, hi);
    *v = (int)m->integer;
    return HL_OK;
}

/* An optional array of numbers (at most HL_VAE_MAX_Z) into out; *n receives its length. */
static hl_status get_floats(const hl_json *j, const char *key, float *out, int *n, hl_error *err) {
    const hl_json *m = hl_json_get(j, key);
    if (!m || m->type == HL_JSON_NULL) return HL_OK;
    if (m->type != HL_JSON_ARRAY || m->n > HL_VAE_MAX_Z)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' must be an array of at most %d numbers", key,
                       HL_VAE_MAX_Z);
    for (size_t i = 0; i < m->n; i++) {
        if (m->items[i].type != HL_JSON_NUMBER)
            return hl_fail(err, HELIOS_ERR_FORMAT, "'%s'[%zu] is not a number", key, i);
        out[i] = (float)m->items[i].number;
    }
    *n = (int)m->n;
    return HL_OK;
}

hl_status hl_vae_config_parse(const hl_json *j, hl_vae_config *c, hl_error *err) {
    if (!j || j->type != HL_JSON_OBJECT)
        return hl_fail(err, HELIOS_ERR_FORMAT, "VAE config is not a JSON object");
    hl_vae_config_wan21(c);
    c->decoder_base_dim = 0; /* null: = base_dim */
    HL_TRY(get_int(j, "base_dim", 1, 1 << 16, &c->base_dim, err));
    HL_TRY(get_int(j, "decoder_base_dim", 1, 1 << 16, &c->decoder_base_dim, err));
    if (!c->decoder_base_dim) c->decoder_base_dim = c->base_dim;
    HL_TRY(get_int(j, "z_dim", 1, HL_VAE_MAX_Z, &c->z_dim, err));
    HL_TRY(get_int(j, "num_res_blocks", 1, 64, &c->num_res_blocks, err));
    HL_TRY(get_int(j, "in_channels", 1, 1 << 16, &c->in_channels, err));
    HL_TRY(get_int(j, "out_channels", 1, 1 << 16, &c->out_channels, err));

    const hl_json *dm = hl_json_get(j, "dim_mult");
    if (dm && dm->type != HL_JSON_NULL) {
        if (dm->type != HL_JSON_ARRAY || dm->n < 1 || dm->n > HL_VAE_MAX_LEVELS)
            return hl_fail(err, HELIOS_ERR_FORMAT, "'dim_mult' must be an array of 1..%d integers",
                           HL_VAE_MAX_LEVELS);
        c->n_levels = (int)dm->n;
        for (int i = 0; i < c->n_levels; i++) {
            const hl_json *e = &dm->items[i];
            if (e->type != HL_JSON_NUMBER || !e->is_int || e->integer < 1 || e->integer > 1024)
                return hl_fail(err, HELIOS_ERR_FORMAT, "'dim_mult'[%d] must be a positive integer",
                               i);
            c->dim_mult[i] = (int)e->integer;
        }
    }
    const hl_json *td = hl_json_get(j, "temperal_downsample");
    memset(c->temperal_downsample, 0, sizeof c->temperal_downsample);
    if (td && td->type != HL_JSON_NULL) {
        if (td->type != HL_JSON_ARRAY || (int)td->n != c->n_levels - 1)
            return hl_fail(err, HELIOS_ERR_FORMAT,
                           "'temperal_downsample' must have len(dim_mult) - 1 = %d booleans",
                           c->n_levels - 1);
        for (int i = 0; i < c->n_levels - 1; i++) {
            if (td->items[i].type != HL_JSON_BOOL)
                return hl_fail(err, HELIOS_ERR_FORMAT, "'temperal_downsample'[%d] is not a boolean",
                               i);
            c->temperal_downsample[i] = td->items[i].boolean;
        }
    } else if (c->n_levels == 4) {
        c->temperal_downsample[1] = c->temperal_downsample[2] = true; /* the class default */
    } else {
        return hl_fail(err, HELIOS_ERR_FORMAT, "'temperal_downsample' is missing");
    }
    /* The tables belong to the pipeline (the VAE never reads them), but one given with a length
     * other than z_dim can only be a broken file: refused here, before any chunk is denoised.
     * Absent, the Wan 2.1 defaults stand for z_dim 16; for another z_dim latents_n stays 0 and
     * the pipeline's load-time check asks for them. */
    int n_mean = 16, n_std = 16;
    HL_TRY(get_floats(j, "latents_mean", c->latents_mean, &n_mean, err));
    HL_TRY(get_floats(j, "latents_std", c->latents_std, &n_std, err));
    const hl_json *given_mean = hl_json_get(j, "latents_mean"),
                  *given_std = hl_json_get(j, "latents_std");
    if (given_mean && given_mean->type != HL_JSON_NULL && n_mean != c->z_dim)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'latents_mean' has %d values, z_dim is %d", n_mean,
                       c->z_dim);
    if (given_std && given_std->type != HL_JSON_NULL && n_std != c->z_dim)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'latents_std' has %d values, z_dim is %d", n_std,
                       c->z_dim);
    c->latents_n = n_mean == c->z_dim && n_std == c->z_dim ? c->z_dim : 0;
    for (int i = 0; i < c->latents_n; i++)
        if (!(c->latents_std[i] != 0.0f))
            return hl_fail(err, HELIOS_ERR_FORMAT, "'latents_std'[%d] is zero", i);

    bool residual = false;
    const hl_json *ir = hl_json_get(j, "is_residual");
    if (ir && ir->type != HL_JSON_NULL && ir->type != HL_JSON_BOOL)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'is_residual' must be true or false");
    if (hl_json_get_bool(j, "is_residual", &residual) == 0 && residual)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED,
                       "is_residual = true (the Wan 2.2 VAE) is not supported");
    const hl_json *ps = hl_json_get(j, "patch_size");
    if (ps && ps->type != HL_JSON_NULL &&
        !(ps->type == HL_JSON_NUMBER && ps->is_int && ps->integer == 1))
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED,
                       "patch_size other than null or 1 is not supported");
    const hl_json *as = hl_json_get(j, "attn_scales");
    if (as && as->type != HL_JSON_NULL && as->type != HL_JSON_ARRAY)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'attn_scales' must be an array");
    if (as && as->type == HL_JSON_ARRAY && as->n > 0)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "non-empty attn_scales is not supported");
    derive_ratios(c);
    /* scale_factor_* are informative (the model derives its ratios from the topology, as
     * diffusers' spatial_compression_ratio = 2 ** len(temperal_downsample) does) */
    int sft = c->temporal_ratio, sfs = c->spatial_ratio;
    HL_TRY(get_int(j, "scale_factor_temporal", 1, 1 << 20, &sft, err));
    HL_TRY(get_int(j, "scale_factor_spatial", 1, 1 << 20, &sfs, err));
    if (sft != c->temporal_ratio || sfs != c->spatial_ratio)
        HL_WARN("VAE config: scale_factor_temporal/spatial %d/%d differ from the topology's %d/%d; "
                "using the topology",
                sft, sfs, c->temporal_ratio, c->spatial_ratio);
    return HL_OK;
}
