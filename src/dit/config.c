/* transformer/config.json -> hl_dit_config. Defaults are the diffusers class defaults (spec §1.1);
 * sizes are always read, never guessed from tensors. */
#include <string.h>

#include "dit/dit.h"

static hl_status get_int(const hl_json *j, const char *key, int64_t def, int64_t lo, int64_t hi,
                         int *out, hl_error *err) {
    int64_t v = def;
    const hl_json *m = hl_json_get(j, key);
    if (m && m->type != HL_JSON_NULL && hl_json_get_int(j, key, &v) != 0)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' must be an integer", key);
    if (v < lo || v > hi)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' = %lld is out of range [%lld, %lld]", key,
                       (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return HL_OK;
}

static hl_status get_bool(const hl_json *j, const char *key, bool def, bool *out, hl_error *err) {
    *out = def;
    if (hl_json_get(j, key) && hl_json_get_bool(j, key, out) != 0)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' must be true or false", key);
    return HL_OK;
}

static hl_status get_triple(const hl_json *j, const char *key, const int def[3], int lo, int hi,
                            int out[3], hl_error *err) {
    int64_t v[3] = {def[0], def[1], def[2]};
    if (hl_json_get(j, key) && hl_json_get_int_array(j, key, v, 3) != 3)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' must be an array of 3 integers", key);
    for (int i = 0; i < 3; i++) {
        if (v[i] < lo || v[i] > hi)
            return hl_fail(err, HELIOS_ERR_FORMAT, "'%s'[%d] = %lld is out of range [%d, %d]", key,
                           i, (long long)v[i], lo, hi);
        out[i] = (int)v[i];
    }
    return HL_OK;
}

hl_status hl_dit_config_parse(const hl_json *j, hl_dit_config *c, hl_error *err) {
    static const int def_patch[3] = {1, 2, 2}, def_rope[3] = {44, 42, 42};
    const int big = 1 << 20;
    memset(c, 0, sizeof *c);
    if (!j || j->type != HL_JSON_OBJECT)
        return hl_fail(err, HELIOS_ERR_FORMAT, "not a JSON object");
    /* patch sizes multiply into tensor shapes (in_channels x patch volume x dim): small bounds
     * keep every product far from overflow (the released models use 1 x 2 x 2) */
    HL_TRY(get_triple(j, "patch_size", def_patch, 1, 16, c->patch, err));
    HL_TRY(get_int(j, "num_attention_heads", 40, 1, 4096, &c->heads, err));
    HL_TRY(get_int(j, "attention_head_dim", 128, 2, 4096, &c->head_dim, err));
    HL_TRY(get_int(j, "in_channels", 16, 1, big, &c->in_channels, err));
    HL_TRY(get_int(j, "out_channels", c->in_channels, 1, big, &c->out_channels, err));
    HL_TRY(get_int(j, "text_dim", 4096, 1, big, &c->text_dim, err));
    HL_TRY(get_int(j, "freq_dim", 256, 2, big, &c->freq_dim, err));
    HL_TRY(get_int(j, "ffn_dim", 13824, 1, big, &c->ffn_dim, err));
    HL_TRY(get_int(j, "num_layers", 40, 1, 4096, &c->num_layers, err));
    HL_TRY(get_bool(j, "cross_attn_norm", true, &c->cross_attn_norm, err));
    HL_TRY(get_bool(j, "guidance_cross_attn", true, &c->guidance_cross_attn, err));
    HL_TRY(get_bool(j, "zero_history_timestep", true, &c->zero_history_timestep, err));
    HL_TRY(get_bool(j, "has_multi_term_memory_patch", true, &c->has_multi_term_memory_patch, err));
    HL_TRY(get_bool(j, "is_amplify_history", false, &c->is_amplify_history, err));
    HL_TRY(get_triple(j, "rope_dim", def_rope, 0, 4096, c->rope_dim, err));
    c->dim = c->heads * c->head_dim;
    if (c->dim > 1 << 16)
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "'num_attention_heads' x 'attention_head_dim' = %d is over %d", c->dim,
                       1 << 16);
    if (c->freq_dim % 2) return hl_fail(err, HELIOS_ERR_FORMAT, "'freq_dim' must be even");

    double eps = 1e-6, theta = 10000.0;
    const hl_json *m = hl_json_get(j, "eps");
    if (m && m->type != HL_JSON_NULL && hl_json_get_double(j, "eps", &eps) != 0)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'eps' must be a number");
    m = hl_json_get(j, "rope_theta");
    if (m && m->type != HL_JSON_NULL && hl_json_get_double(j, "rope_theta", &theta) != 0)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'rope_theta' must be a number");
    /* an eps that rounds to 0 in float32 is no eps at all (norms of a zero row divide by 0) */
    if (!(eps > 0 && eps < 1) || (float)eps == 0.0f)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'eps' = %g must be in (0, 1)", eps);
    if (!(theta > 1))
        return hl_fail(err, HELIOS_ERR_FORMAT, "'rope_theta' = %g must be > 1", theta);
    c->eps = (float)eps;
    c->rope_theta = theta;

    /* The reference builds each axis table with dim // 2 frequencies of an even dim; the three
     * must cover the head exactly, pair for pair. */
    for (int i = 0; i < 3; i++)
        if (c->rope_dim[i] % 2)
            return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'rope_dim'[%d] = %d is odd", i,
                           c->rope_dim[i]);
    if (c->head_dim % 2 || c->rope_dim[0] + c->rope_dim[1] + c->rope_dim[2] != c->head_dim)
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "'rope_dim' (%d, %d, %d) does not sum to attention_head_dim %d",
                       c->rope_dim[0], c->rope_dim[1], c->rope_dim[2], c->head_dim);

    static const char *const strs[] = {"qk_norm", "history_scale_mode"};
    for (int i = 0; i < 2; i++)
        if ((m = hl_json_get(j, strs[i])) && m->type != HL_JSON_NULL && m->type != HL_JSON_STRING)
            return hl_fail(err, HELIOS_ERR_FORMAT, "'%s' must be a string", strs[i]);
    const char *qk = hl_json_get_string(j, "qk_norm");
    if (hl_json_get(j, "qk_norm") && (!qk || strcmp(qk, "rms_norm_across_heads") != 0))
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'qk_norm' must be \"rms_norm_across_heads\"");
    const hl_json *akv = hl_json_get(j, "added_kv_proj_dim");
    if (akv && akv->type != HL_JSON_NULL)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'added_kv_proj_dim' must be null");
    const char *mode = hl_json_get_string(j, "history_scale_mode");
    if (hl_json_get(j, "history_scale_mode") && !mode)
        return hl_fail(err, HELIOS_ERR_FORMAT, "'history_scale_mode' must be a string");
    if (mode && strcmp(mode, "per_head") && strcmp(mode, "scalar"))
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "'history_scale_mode' \"%s\" is unknown", mode);
    c->history_scale_per_head = !mode || !strcmp(mode, "per_head");
    return HL_OK;
}
