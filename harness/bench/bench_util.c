/* Small helpers shared by the benchmarks (cpu_bench.h). */
#include <stdlib.h>

#include "bench/cpu_bench.h"

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double hl_bench_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

void hl_bench_random_bf16(uint16_t *p, int64_t n, uint32_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint16_t)(((seed >> 16) & 0x807fu) | ((0x78u + ((seed >> 8) & 7u)) << 7));
    }
}
