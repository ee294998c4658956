/* Threads: OpenMP with fixed (static) partitioning, so results are deterministic for a given
 * thread count. oneDNN (Debian's build uses the OpenMP runtime) shares the same pool. */
#ifndef HL_PARALLEL_H
#define HL_PARALLEL_H

#include <sched.h>
#include <stdint.h>

void hl_set_threads(int n); /* 0 = all cores */
int hl_get_threads(void);

/* Calls fn(begin, end, arg) on contiguous slices of [0, n), one per thread. */
void hl_parallel_for(int64_t n, void (*fn)(int64_t begin, int64_t end, void *arg), void *arg);

/* A load-adaptive thread count, for generation on a machine shared with other busy processes.
 * Our ops split their work statically over the threads, so one thread descheduled for a
 * neighbour's time slice stalls the other at every join: beside one busy process on 2 cores the
 * tiny model ran 1.6-1.8x slower than quiet on two threads, where one thread ran as fast as one
 * thread alone (docs/design.md, "Threads on a shared machine"). The governor watches what the other processes use (/proc/stat's busy time of
 * all CPUs less our own CPU time) and runs on the cores they leave: max - round(their cores)
 * threads, at least 1, re-decided at most every HL_GOVERNOR_PERIOD seconds between ops. Only
 * for work whose results do not depend on the thread count (generation: tests/test_threads.c). */
#define HL_GOVERNOR_PERIOD 0.1
typedef struct hl_governor {
    int max, threads;        /* the session's count (all cores), the count in use */
    double t, cpu;           /* wall and process CPU seconds at the last sample */
    unsigned long long busy; /* busy clock ticks of all CPUs then */
    int ok;                  /* /proc/stat was readable */
    cpu_set_t cpus;          /* the CPUs we may run on (sched_getaffinity; _GNU_SOURCE) */
} hl_governor;

/* Starts at max threads less the other processes running right now (/proc/stat's procs_running:
 * a first guess before the first period has been measured); sets the calling thread's count. */
void hl_governor_start(hl_governor *g, int max);
/* Between ops, on the thread that runs them: a new sample once a period has passed, and the
 * count it gives. Cheap otherwise (one clock read). */
void hl_governor_tick(hl_governor *g);
/* Back to max threads on the calling thread. */
void hl_governor_stop(hl_governor *g);

/* Wall-clock seconds (monotonic). */
double hl_time(void);

#endif
