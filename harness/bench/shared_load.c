/* A second CPU-bound process for the benchmarks of a shared machine, and the scheduler's own
 * ceiling for parallel work beside it (cpu_bench.h). */
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <omp.h>

#include "bench/cpu_bench.h"
#include "core/parallel.h"

/* The child spins until it is killed, or until its parent dies (PDEATHSIG); it calls only
 * async-signal-safe functions, as a child forked from a threaded process must. */
int hl_bench_busy_start(void) {
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid != 0) return pid > 0 ? (int)pid : -1;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    volatile unsigned long spin = 0;
    for (;;) spin++;
}

void hl_bench_busy_stop(int pid) {
    if (pid <= 0) return;
    kill((pid_t)pid, SIGKILL);
    waitpid((pid_t)pid, NULL, 0);
}

/* iters dependent multiply-adds (about 4 cycles each): work no thread can hurry. */
static double chain(long iters, double x) {
    for (long i = 0; i < iters; i++) x = x * 0.999999 + 1e-6;
    return x;
}

/* Wall seconds of n regions of iters multiply-adds on every thread. */
static double regions(long n, long iters) {
    static volatile double sink[512];
    const double t0 = hl_time();
    for (long r = 0; r < n; r++) {
#pragma omp parallel
        {
            const int t = omp_get_thread_num();
            if (t < 512) sink[t] = chain(iters, (double)t);
        }
    }
    (void)sink;
    return hl_time() - t0;
}

double hl_bench_sched_ceiling(double region_s, int reps) {
    const long probe = 1L << 22; /* calibrate: seconds per multiply-add on this thread */
    const double t0 = hl_time();
    static volatile double seed = 1.0, sink; /* volatile: not folded at compile time */
    sink = chain(probe, seed);
    (void)sink;
    const double per = (hl_time() - t0) / (double)probe;
    const long iters = per > 0 ? (long)(region_s / per) + 1 : 1;
    long n = (long)(0.25 / region_s);
    if (n < 3) n = 3;
    if (reps < 1) reps = 1;
    if (reps > 16) reps = 16;
    double quiet[16], shared[16];
    regions(n / 4 + 1, iters); /* warm-up: threads started, clocks up */
    for (int r = 0; r < reps; r++) quiet[r] = regions(n, iters);
    const int busy = hl_bench_busy_start();
    if (busy < 0) return -1.0;
    regions(n / 4 + 1, iters);
    for (int r = 0; r < reps; r++) shared[r] = regions(n, iters);
    hl_bench_busy_stop(busy);
    return hl_bench_median(shared, reps) / hl_bench_median(quiet, reps);
}
