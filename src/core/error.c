#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

hl_status hl_fail_key(hl_error *err, hl_status st, const char *file, const char *key, const char *fmt, ...) {
    if (err) {
        char why[HL_ERR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        snprintf(err->msg, sizeof err->msg, "%s: '%s' %s", file, key, why);
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
