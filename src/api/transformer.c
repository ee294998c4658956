/* The public transformer API: load a transformer folder, run one forward. */
#include <stdio.h>
#include <string.h>

#include "api/session.h"
#include "dit/dit.h"

void helios_model_params_init(helios_model_params *p) { memset(p, 0, sizeof *p); }

helios_status helios_transformer_load(helios_session *s, const helios_model_params *p,
                                      helios_transformer **out) {
    hl_error_clear(&s->err);
    *out = NULL;
    if (!p->path && !(p->config_path && p->weights_path))
        return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "transformer: no path given");
    char cfg_path[4096];
    if (p->config_path) snprintf(cfg_path, sizeof cfg_path, "%s", p->config_path);
    else snprintf(cfg_path, sizeof cfg_path, "%s/config.json", p->path);
    return hl_dit_load(cfg_path, p->weights_path ? p->weights_path : p->path, out, &s->err);
}

void helios_transformer_free(helios_transformer *t) { hl_dit_free(t); }

void helios_dit_input_init(helios_dit_input *in) { memset(in, 0, sizeof *in); }

helios_status helios_transformer_forward(helios_session *s, helios_transformer *t,
                                         const helios_dit_input *in, float *out) {
    hl_error_clear(&s->err);
    if (!t || !in || !out)
        return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "transformer_forward: NULL argument");
    return hl_dit_forward(&s->ctx, t, in, NULL, out);
}
