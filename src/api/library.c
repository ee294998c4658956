/* The process-wide part of the public API: version, status names, the log sink. */
#include "core/log.h"

const char *helios_version(void) { return HELIOS_VERSION_STRING; }

const char *helios_status_str(helios_status st) {
    switch (st) {
    case HELIOS_OK: return "ok";
    case HELIOS_ERR_INVALID_ARG: return "invalid argument";
    case HELIOS_ERR_IO: return "I/O error";
    case HELIOS_ERR_FORMAT: return "format error";
    case HELIOS_ERR_SHAPE: return "shape mismatch";
    case HELIOS_ERR_DTYPE: return "dtype mismatch";
    case HELIOS_ERR_MISSING: return "missing";
    case HELIOS_ERR_OOM: return "out of memory";
    case HELIOS_ERR_UNSUPPORTED: return "unsupported";
    case HELIOS_ERR_CANCELLED: return "cancelled";
    case HELIOS_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

void helios_log_set(helios_log_fn fn, void *user) { hl_log_set_sink(fn, user); }

void helios_log_level_set(helios_log_level max_level) { hl_log_set_level(max_level); }
