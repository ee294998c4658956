#include <stdlib.h>

#include "core/parallel.h"
#include "session.h"

/* helios_session_new's failures: no session exists yet to keep them. Per thread, so that two
 * threads creating sessions at once never read each other's message (C11 _Thread_local). */
static _Thread_local hl_error t_new_err;

void helios_session_params_init(helios_session_params *p) {
    p->backend = HELIOS_BACKEND_CPU;
    p->n_threads = 0;
}

const char *helios_session_new_error(void) { return t_new_err.msg; }

helios_status helios_session_new(const helios_session_params *p, helios_session **out) {
    hl_error *err = &t_new_err;
    hl_error_clear(err);
    if (!out) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "session: NULL out argument");
    *out = NULL;
    if (!p) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "session: NULL parameters");
    if (p->backend != HELIOS_BACKEND_CPU && p->backend != HELIOS_BACKEND_REF)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "session: unknown backend %d (HELIOS_BACKEND_CPU or _REF)", (int)p->backend);
    /* Bounded above: OpenMP and oneDNN size per-thread state by the count (100000 threads
     * overflowed a stack inside libgomp). */
    if (p->n_threads < 0 || p->n_threads > HELIOS_MAX_THREADS)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "session: n_threads %d out of range (0 = all cores, or 1..%d)", p->n_threads,
                       HELIOS_MAX_THREADS);
    helios_session *s = calloc(1, sizeof *s);
    if (!s) return hl_fail(err, HELIOS_ERR_OOM, "session: out of memory");
    s->params = *p;
    hl_set_threads(p->n_threads);
    /* the session's own backend instance: engine, streams, caches, scratch (nothing shared with
     * another session) */
    s->backend = hl_backend_new(p->backend, p->n_threads, &s->err);
    if (!s->backend) {
        hl_status st = s->err.status ? s->err.status : HELIOS_ERR_INTERNAL;
        hl_fail(err, st, "session: %s",
                s->err.msg[0] ? s->err.msg : "the backend could not be created");
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
