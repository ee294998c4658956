#include "test_util.h"

#include <math.h>
#include <stdlib.h>

int g_checks, g_failures;

int test_done(const char *name) {
    printf("%s: %d checks, %d failed\n", name, g_checks, g_failures);
    return g_failures ? 1 : 0;
}

double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) return INFINITY; /* a NaN anywhere fails every tolerance */
        if (d > m) m = d;
    }
    return m;
}

double max_abs(const float *a, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

void fill_random(float *x, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        x[i] = (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

const char *vector_path(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", HELIOS_VECTORS, name);
    return buf;
}

unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    *n = b ? fread(b, 1, (size_t)sz, f) : 0;
    fclose(f);
    return b;
}

const helios_backend test_backends[] = {HELIOS_BACKEND_CPU};
const int test_n_backends = (int)(sizeof test_backends / sizeof test_backends[0]);

hl_ctx test_ctx(helios_backend kind, hl_error *err) {
    hl_ctx c = {hl_backend_shared(kind), err};
    if (!c.backend) {
        fprintf(stderr, "test: cannot make backend %d\n", (int)kind);
        exit(2);
    }
    return c;
}
