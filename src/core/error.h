/* Status and error messages. Every fallible internal call returns hl_status and, where it has
 * one, writes a message into an hl_error owned by the caller (the session keeps one). */
#ifndef HL_ERROR_H
#define HL_ERROR_H

#include "helios.h"

typedef helios_status hl_status;

#define HL_OK HELIOS_OK
#define HL_ERR_MSG_MAX 1024

typedef struct hl_error {
    hl_status status;
    char msg[HL_ERR_MSG_MAX];
} hl_error;

/* Records st with a printf-style message in err (if err is not NULL) and returns st.
 * Usage: return hl_fail(err, HELIOS_ERR_FORMAT, "%s: tensor '%s': ...", path, name); */
hl_status hl_fail(hl_error *err, hl_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A bad value in a model file: "FILE: 'KEY' why" (file and key first, so a user editing a config
 * knows where to look; the readers that do not know their file prefix it on the way up instead). */
hl_status hl_fail_key(hl_error *err, hl_status st, const char *file, const char *key,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Prefixes the message already in err with "ctx: " (to add a file or tensor name on the way up). */
void hl_error_prefix(hl_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void hl_error_clear(hl_error *err);

/* Propagates a failure: HL_TRY(f(...)); */
#define HL_TRY(expr)                                \
    do {                                            \
        hl_status hl_try_st_ = (expr);              \
        if (hl_try_st_ != HL_OK) return hl_try_st_; \
    } while (0)

#endif
