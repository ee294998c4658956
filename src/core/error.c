#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The whole formatted message, malloc'ed (NULL when out of memory or on a format error). */
static char *vformat(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

/* Stores msg in err; one longer than the buffer keeps its first quarter and its end with
 * " ... " between. Messages end with what is wrong ("PATH: cannot open: No such file"), so a
 * ~4 KB path must lose its middle, not the reason. */
static void store(hl_error *err, const char *msg) {
    const size_t cap = sizeof err->msg, n = strlen(msg);
    if (n < cap) {
        memcpy(err->msg, msg, n + 1);
        return;
    }
    static const char mark[] = " ... ";
    const size_t head = (cap - 1) / 4, m = sizeof mark - 1, tail = cap - 1 - head - m;
    memcpy(err->msg, msg, head);
    memcpy(err->msg + head, mark, m);
    memcpy(err->msg + head + m, msg + n - tail, tail);
    err->msg[cap - 1] = '\0';
}

hl_status hl_fail(hl_error *err, hl_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        char *s = vformat(fmt, ap);
        va_end(ap);
        if (s) {
            store(err, s);
            free(s);
        } else { /* out of memory: the plain cut is better than nothing */
            va_start(ap, fmt);
            vsnprintf(err->msg, sizeof err->msg, fmt, ap);
            va_end(ap);
        }
        err->status = st;
    }
    return st;
}

hl_status hl_fail_key(hl_error *err, hl_status st, const char *file, const char *key,
                      const char *fmt, ...) {
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
    va_list ap;
    va_start(ap, fmt);
    char *head = vformat(fmt, ap);
    va_end(ap);
    /* the old message may itself be cut already; it is copied before err->msg is rewritten */
    size_t hn = head ? strlen(head) : 0, on = strlen(err->msg);
    char *s = head ? malloc(hn + 2 + on + 1) : NULL;
    if (s) {
        memcpy(s, head, hn);
        memcpy(s + hn, ": ", 2);
        memcpy(s + hn + 2, err->msg, on + 1);
        store(err, s);
    }
    free(s);
    free(head);
}

void hl_error_clear(hl_error *err) {
    if (!err) return;
    err->status = HL_OK;
    err->msg[0] = '\0';
}
