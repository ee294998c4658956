#include "core/parallel.h"

#include "helios.h"

#include <omp.h>
#include <time.h>

/* "All cores" stops at the session bound (helios.h), which the CPU backend's streams share: a
 * machine with more cores than that runs with HELIOS_MAX_THREADS rather than failing. */
void hl_set_threads(int n) {
    int procs = omp_get_num_procs();
    omp_set_num_threads(n > 0 ? n : procs < HELIOS_MAX_THREADS ? procs : HELIOS_MAX_THREADS);
}

int hl_get_threads(void) { return omp_get_max_threads(); }

void hl_parallel_for(int64_t n, void (*fn)(int64_t, int64_t, void *), void *arg) {
    if (n <= 0) return;
    int nt = omp_get_max_threads();
    if (nt > n) nt = (int)n;
    if (nt <= 1) {
        fn(0, n, arg);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int64_t ith = omp_get_thread_num(), nth = omp_get_num_threads();
        int64_t begin = n * ith / nth, end = n * (ith + 1) / nth;
        if (begin < end) fn(begin, end, arg);
    }
}

double hl_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
