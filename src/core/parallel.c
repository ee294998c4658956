#include "core/parallel.h"

#include "core/log.h"
#include "helios.h"

#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* ---- the load governor ----------------------------------------------------------------------- */

static double process_cpu_seconds(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0.0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* /proc/stat: the busy ticks of the CPUs we may run on (user, nice, system, irq, softirq; guest
 * time is in user; idle, iowait and the time a hypervisor stole are not busy here) and the
 * tasks runnable now (machine-wide). Only our CPUs: in a container pinned to 2 of a host's 64
 * CPUs, the host's other work must not take our threads away. 0, or -1 where it cannot be read
 * (not Linux). */
static int proc_stat(const cpu_set_t *ours, unsigned long long *busy, int *running) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[512];
    int got = 0, cpu;
    *busy = 0, *running = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long long v[7];
        int n = 0;
        /* "cpuN ..." lines only ("cpu  ..." sums them all: %d would take its first number) */
        if (strncmp(line, "cpu", 3) == 0 && line[3] >= '0' && line[3] <= '9' &&
            sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu%n", &cpu, &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &n) == 8 &&
            n > 0) {
            if (cpu >= 0 && cpu < CPU_SETSIZE && CPU_ISSET(cpu, ours))
                *busy += v[0] + v[1] + v[2] + v[5] + v[6], got++;
        } else if (sscanf(line, "procs_running %d", running) == 1) {
            break;
        }
    }
    fclose(f);
    return got && *running >= 0 ? 0 : -1;
}

static void governor_set(hl_governor *g, double others) {
    int n = g->max - (int)(others + 0.5);
    n = n < 1 ? 1 : n > g->max ? g->max : n;
    if (n != g->threads)
        HL_DEBUG("threads: %d of %d (other processes keep %.2f cores busy)", n, g->max, others);
    g->threads = n;
    omp_set_num_threads(n);
}

void hl_governor_start(hl_governor *g, int max) {
    memset(g, 0, sizeof *g);
    g->max = g->threads = max < 1 ? 1 : max;
    int running = 0;
    g->ok = sched_getaffinity(0, sizeof g->cpus, &g->cpus) == 0 &&
            proc_stat(&g->cpus, &g->busy, &running) == 0;
    g->t = hl_time(), g->cpu = process_cpu_seconds();
    /* running counts this thread; our pool's idle threads sleep between generations */
    governor_set(g, g->ok && running > 1 ? (double)(running - 1) : 0.0);
}

void hl_governor_tick(hl_governor *g) {
    if (!g->ok) return;
    double t = hl_time();
    if (t - g->t < HL_GOVERNOR_PERIOD) return;
    unsigned long long busy;
    int running;
    if (proc_stat(&g->cpus, &busy, &running) != 0) {
        g->ok = 0;
        return;
    }
    const long hz = sysconf(_SC_CLK_TCK) > 0 ? sysconf(_SC_CLK_TCK) : 100;
    double cpu = process_cpu_seconds();
    /* (a CPU taken offline can make the sum go back: no busy time then) */
    const double ticks = busy > g->busy ? (double)(busy - g->busy) : 0.0;
    double others = (ticks / (double)hz - (cpu - g->cpu)) / (t - g->t);
    g->t = t, g->cpu = cpu, g->busy = busy;
    governor_set(g, others > 0 ? others : 0.0);
}

void hl_governor_stop(hl_governor *g) {
    g->threads = g->max;
    omp_set_num_threads(g->max);
}
