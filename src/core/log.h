/* Logging through the process-wide sink set with helios_set_log(). */
#ifndef HL_LOG_H
#define HL_LOG_H

#include "helios.h"

void hl_log(helios_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define HL_ERROR(...) hl_log(HELIOS_LOG_ERROR, __VA_ARGS__)
#define HL_WARN(...) hl_log(HELIOS_LOG_WARN, __VA_ARGS__)
#define HL_INFO(...) hl_log(HELIOS_LOG_INFO, __VA_ARGS__)
#define HL_DEBUG(...) hl_log(HELIOS_LOG_DEBUG, __VA_ARGS__)

#endif
