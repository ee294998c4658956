#include <stdlib.h>

#include "core/parallel.h"
#include "session.h"

void helios_session_params_init(helios_session_params *p) {
    p->backend = HELIOS_BACKEND_CPU;
    p->n_threads = 0;
}

helios_status helios_session_new(const helios_session_params *p, helios_session **out) {
    *out = NULL;
    if (p->backend != HELIOS_BACKEND_CPU && p->backend != HELIOS_BACKEND_REF)
        return HELIOS_ERR_INVALID_ARG;
    if (p->n_threads < 0) return HELIOS_ERR_INVALID_ARG;
    helios_session *s = calloc(1, sizeof *s);
    if (!s) return HELIOS_ERR_OOM;
    s->params = *p;
    hl_set_threads(p->n_threads);
    /* the session's own backend instance: engine, streams, caches, scratch (nothing shared with
     * another session) */
    s->backend = hl_backend_new(p->backend, p->n_threads, &s->err);
    if (!s->backend) {
        hl_status st = s->err.status ? s->err.status : HELIOS_ERR_INTERNAL;
        free(s);
        return st;
    }
    s->ctx.backend = s->backend;
    s->ctx.err = &s->err;
    *out = s;
    return HELIOS_OK;
}

void helios_session_free(helios_session *s) {
    if (!s) return;
    hl_backend_free(s->backend);
    free(s);
}

const char *helios_session_error(const helios_session *s) { return s ? s->err.msg : ""; }
