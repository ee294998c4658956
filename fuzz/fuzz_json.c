/* libFuzzer target: the JSON reader on arbitrary bytes, then a walk over what it built that checks
 * the tree's invariants (lengths, terminators, depth, lookups). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"

static void walk(const hl_json *j, int depth) {
    if (depth > HL_JSON_MAX_DEPTH + 1) abort();
    switch (j->type) {
    case HL_JSON_STRING:
        if (!j->string || j->string[j->len] != '\0') abort();
        break;
    case HL_JSON_NUMBER:
        if (j->is_int && (double)j->integer != j->number) abort();
        break;
    case HL_JSON_OBJECT:
        for (size_t i = 0; i < j->n; i++) {
            if (!j->keys[i] || !hl_json_get(j, j->keys[i])) abort();
            int64_t iv;
            double d;
            bool b;
            int64_t arr[8];
            (void)hl_json_get_int(j, j->keys[i], &iv);
            (void)hl_json_get_double(j, j->keys[i], &d);
            (void)hl_json_get_bool(j, j->keys[i], &b);
            (void)hl_json_get_string(j, j->keys[i]);
            if (hl_json_get_int_array(j, j->keys[i], arr, 8) > 8) abort();
        }
        /* fall through */
    case HL_JSON_ARRAY:
        for (size_t i = 0; i < j->n; i++) walk(&j->items[i], depth + 1);
        break;
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hl_json *j = NULL;
    hl_error err;
    hl_status st = hl_json_parse((const char *)data, size, &j, &err);
    if (st != HL_OK) {
        if (j || (st != HELIOS_ERR_FORMAT && st != HELIOS_ERR_OOM)) abort();
        if (st == HELIOS_ERR_FORMAT && strncmp(err.msg, "line ", 5) != 0) abort();
        return 0;
    }
    walk(j, 1);
    hl_json_free(j);
    return 0;
}
