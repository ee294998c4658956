#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

static helios_log_fn g_log_fn;
static void *g_log_user;
static helios_log_level g_log_max = HELIOS_LOG_INFO;

void hl_log_set_sink(helios_log_fn fn, void *user) {
    g_log_fn = fn;
    g_log_user = user;
}

void hl_log_set_level(helios_log_level max_level) { g_log_max = max_level; }

void hl_log(helios_log_level level, const char *fmt, ...) {
    if (level > g_log_max) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_log_fn) {
        g_log_fn(level, msg, g_log_user);
        return;
    }
    static const char *names[] = {"error", "warn", "info", "debug"};
    fprintf(stderr, "helios %s: %s\n", names[level], msg);
}
