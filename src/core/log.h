/* Logging through the process-wide sink set with helios_log_set() (src/api/library.c). */
#ifndef HL_LOG_H
#define HL_LOG_H

#include "helios.h"

/* The state behind helios_log_set / helios_log_level_set. */
void hl_log_set_sink(helios_log_fn fn, void *user);
void hl_log_set_level(helios_log_level max_level);

void hl_log(helios_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define HL_ERROR(...) hl_log(HELIOS_LOG_ERROR, __VA_ARGS__)
#define HL_WARN(...) hl_log(HELIOS_LOG_WARN, __VA_ARGS__)
#define HL_INFO(...) hl_log(HELIOS_LOG_INFO, __VA_ARGS__)
#define HL_DEBUG(...) hl_log(HELIOS_LOG_DEBUG, __VA_ARGS__)

#endif
