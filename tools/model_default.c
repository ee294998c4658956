/* The CLI's default model folder (model_default.h). A client of helios.h only. */
#include "tools/model_default.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef HELIOS_DATA_DIR
#define HELIOS_DATA_DIR "/usr/local/share/helios"
#endif

const char *default_model(char *buf, size_t n) {
    const char *env = getenv("HELIOS_MODEL");
    if (env && *env) return snprintf(buf, n, "%s", env) < (int)n ? buf : NULL;
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(buf, n, "%s/../models/helios-tiny/model_index.json", exe);
        if (access(buf, R_OK) == 0) {
            buf[strlen(buf) - strlen("/model_index.json")] = '\0';
            return buf;
        }
    }
    snprintf(buf, n, "%s/models/helios-tiny/model_index.json", HELIOS_DATA_DIR);
    if (access(buf, R_OK) != 0) return NULL;
    buf[strlen(buf) - strlen("/model_index.json")] = '\0';
    return buf;
}

const char *default_model_places(void) {
    return "neither $HELIOS_MODEL nor models/helios-tiny beside the binary or in " HELIOS_DATA_DIR;
}
