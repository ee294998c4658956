#include "core/probe.h"

#include <stdarg.h>
#include <stdio.h>

void hl_probe_emit(const hl_probe *p, const float *x, int64_t rows, int64_t cols, const char *fmt,
                   ...) {
    if (!p || !p->fn) return;
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    p->fn(p->user, name, x, rows, cols);
}
