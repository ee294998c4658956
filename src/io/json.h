/* A small strict JSON reader (RFC 8259) for config.json, model_index.json, safetensors headers
 * and index files. The whole document becomes a tree of hl_json nodes; nesting is limited to
 * HL_JSON_MAX_DEPTH so hostile input cannot exhaust the stack. */
#ifndef HL_JSON_H
#define HL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define HL_JSON_MAX_DEPTH 64

typedef enum hl_json_type {
    HL_JSON_NULL,
    HL_JSON_BOOL,
    HL_JSON_NUMBER,
    HL_JSON_STRING,
    HL_JSON_ARRAY,
    HL_JSON_OBJECT,
} hl_json_type;

typedef struct hl_json hl_json;
struct hl_json {
    hl_json_type type;
    bool boolean;
    double number;   /* every number */
    bool is_int;     /* the literal was an integer (no fraction/exponent) that fits int64 */
    int64_t integer; /* its exact value when is_int */
    char *string;    /* NUL-terminated UTF-8 (escapes decoded); len excludes the NUL */
    size_t len;
    size_t n;       /* array items / object members */
    hl_json *items; /* [n] values */
    char **keys;    /* [n] member names (objects only) */
};

/* Parses text[0..len). On failure returns HELIOS_ERR_FORMAT with "line L, column C: what" in
 * err (the caller prefixes the file name) or HELIOS_ERR_OOM. */
hl_status hl_json_parse(const char *text, size_t len, hl_json **out, hl_error *err);
/* Reads and parses a file; errors name the file. The file must be a regular one of at most
 * HL_FILE_MAX_CONFIG bytes (core/file.h). */
hl_status hl_json_load_file(const char *path, hl_json **out, hl_error *err);
/* The same with another size cap; kind names the file in the message when it is over the cap. */
hl_status hl_json_load_file_max(const char *path, size_t max_bytes, const char *kind, hl_json **out,
                                hl_error *err);
void hl_json_free(hl_json *j);

/* Member of an object (last one wins on duplicates), or NULL if j is not an object or lacks it. */
const hl_json *hl_json_get(const hl_json *j, const char *key);

/* Typed getters for config reading: return 0 and set *out, or -1 if absent or of another type. */
int hl_json_get_int(const hl_json *obj, const char *key, int64_t *out);
int hl_json_get_double(const hl_json *obj, const char *key, double *out);
int hl_json_get_bool(const hl_json *obj, const char *key, bool *out);
const char *hl_json_get_string(const hl_json *obj, const char *key); /* NULL if absent */
/* An array of integers: fills out[0..n) and returns n, or -1 if not such an array or n > max. */
int hl_json_get_int_array(const hl_json *obj, const char *key, int64_t *out, int max);

#endif
