/* Minimal test harness: CHECK records a failure with its location and goes on; test_done()
 * prints "<name>: N checks, M failed" and returns the exit code. */
#ifndef HL_TEST_UTIL_H
#define HL_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>

#include "ops/ops.h"

extern int g_checks, g_failures;

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        g_checks++;                                                                  \
        if (!(cond)) {                                                               \
            g_failures++;                                                            \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fprintf(stderr, "\n");                                                   \
        }                                                                            \
    } while (0)

int test_done(const char *name);

/* max |a - b| over n floats. */
double max_abs_diff(const float *a, const float *b, int64_t n);
double max_abs(const float *a, int64_t n);

/* Deterministic pseudo-random floats in [-1, 1) (splitmix64), for op tests. */
void fill_random(float *x, int64_t n, uint64_t seed);

/* The whole file in a new malloc'ed buffer (*n bytes), or NULL. */
unsigned char *read_file(const char *path, size_t *n);

/* Path of a vector file: HELIOS_VECTORS "/" name (static buffer). */
const char *vector_path(const char *name);

/* An ops context on the process-wide instance of backend kind (hl_backend_shared), reporting
 * into err (may be NULL). Exits with a message when the backend cannot be made. */
hl_ctx test_ctx(helios_backend kind, hl_error *err);

/* The backends the op tests (test_ops, test_vae_ops) judge against ref: each runs every case.
 * A new backend (a device one) is tested by adding its kind here. */
extern const helios_backend test_backends[];
extern const int test_n_backends;

#endif
