#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

hl_status hl_fail(hl_error *err, hl_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = st;
    }
    return st;
}

void hl_error_prefix(hl_error *err, const char *fmt, ...) {
    if (!err) return;
    char head[HL_ERR_MSG_MAX], old[HL_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", head, old);
}

void hl_error_clear(hl_error *err) {
    if (!err) return;
    err->status = HL_OK;
    err->msg[0] = '\0';
}
