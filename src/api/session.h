/* The session: backend choice, threads and the last error. */
#ifndef HL_SESSION_H
#define HL_SESSION_H

#include "core/error.h"
#include "ops/ops.h"

struct helios_session {
    helios_session_params params;
    hl_error err;
    hl_ctx ctx; /* ops context: backend + &err */
};

#endif
