/* Threads: OpenMP with fixed (static) partitioning, so results are deterministic for a given
 * thread count. oneDNN (Debian's build uses the OpenMP runtime) shares the same pool. */
#ifndef HL_PARALLEL_H
#define HL_PARALLEL_H

#include <stdint.h>

void hl_set_threads(int n); /* 0 = all cores */
int hl_get_threads(void);

/* Calls fn(begin, end, arg) on contiguous slices of [0, n), one per thread. */
void hl_parallel_for(int64_t n, void (*fn)(int64_t begin, int64_t end, void *arg), void *arg);

/* Wall-clock seconds (monotonic). */
double hl_time(void);

#endif
