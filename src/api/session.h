/* The session: backend choice, threads, its backend instance (which owns the backend's state)
 * and the last error. */
#ifndef HL_SESSION_H
#define HL_SESSION_H

#include "core/error.h"
#include "ops/ops.h"

struct helios_session {
    helios_session_params params;
    hl_error err;
    hl_backend *backend; /* owned: made in helios_session_new, freed with the session */
    hl_ctx ctx;          /* ops context: backend + &err */
};

#endif
