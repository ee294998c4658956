/* Generation does not depend on the thread count, and the load governor that relies on it
 * (core/parallel.h: a session on all cores runs on fewer while other processes keep cores
 * busy, and may change the count between any two ops of a generation).
 *   1. The tiny random model generates the same latents and frames, to the bit, on a session of
 *      1, 2 and 3 threads (3 > this machine's cores on purpose: uneven partitions).
 *   2. Beside a forked busy process the governor gives a core up: max - 1 threads after a
 *      period, whatever else runs (ctest -j adds load, which only lowers the count further). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include "core/parallel.h"
#include "helios.h"
#include "test_util.h"

#define MODEL HELIOS_VECTORS "/../models/tiny-random-model"
#define CHUNKS 2
/* 256x128 with 5 latent frames a chunk: large enough that the ops split over the threads */
#define N_LAT (16 * 5 * 16 * 32)      /* (1, 16, F 5, H/8 16, W/8 32) of one chunk */
#define N_FRAMES (3 * 17 * 128 * 256) /* (3, (5 - 1) * 4 + 1, 128, 256): one decoded chunk */

typedef struct run {
    float lat[CHUNKS][N_LAT];
    float frames[N_FRAMES]; /* the last chunk's */
} run;

/* One whole generation on a session of `threads` threads; 0 on success. */
static int generate(int threads, run *r) {
    helios_session_params sp;
    helios_session_params_init(&sp);
    sp.n_threads = threads;
    helios_session *s = NULL;
    helios_pipeline *p = NULL;
    helios_gen *gen = NULL;
    int rc = 1, chunk = 0;
    if (helios_session_new(&sp, &s) != HELIOS_OK) return 1;
    helios_pipeline_params pp;
    helios_pipeline_params_init(&pp);
    pp.model_dir = MODEL;
    helios_gen_params g;
    helios_gen_params_init(&g);
    g.prompt = "a red ball bouncing";
    g.width = 256, g.height = 128;
    g.num_chunks = CHUNKS;
    g.latent_frames_per_chunk = 5;
    g.seed = 11;
    g.decode = 1;
    if (helios_pipeline_load(s, &pp, &p) != HELIOS_OK || helios_gen_new(p, &g, &gen) != HELIOS_OK)
        goto done;
    for (helios_gen_progress pr = {0}; !pr.finished;) {
        if (helios_gen_step(gen, &pr) != HELIOS_OK) goto done;
        if (!pr.chunk_done) continue;
        if (chunk < CHUNKS) memcpy(r->lat[chunk++], pr.latents, sizeof r->lat[0]);
        if (pr.finished && pr.frames) memcpy(r->frames, pr.frames, sizeof r->frames);
    }
    rc = chunk == CHUNKS ? 0 : 1;
done:
    if (rc)
        fprintf(stderr, "generate on %d threads: %s / %s\n", threads, helios_session_error(s),
                helios_gen_error(gen));
    helios_gen_free(gen);
    helios_pipeline_free(p);
    helios_session_free(s);
    return rc;
}

static void test_thread_counts(void) {
    run *one = calloc(1, sizeof *one), *other = calloc(1, sizeof *other);
    if (!one || !other) {
        CHECK(0, "out of memory");
        free(one), free(other);
        return;
    }
    CHECK(generate(1, one) == 0, "generate on 1 thread");
    for (int t = 2; t <= 3; t++) {
        memset(other, 0, sizeof *other);
        CHECK(generate(t, other) == 0, "generate on %d threads", t);
        for (int c = 0; c < CHUNKS; c++)
            CHECK(memcmp(one->lat[c], other->lat[c], sizeof one->lat[c]) == 0,
                  "chunk %d latents on %d threads differ from 1 thread (max |diff| %g)", c, t,
                  max_abs_diff(one->lat[c], other->lat[c], N_LAT));
        CHECK(memcmp(one->frames, other->frames, sizeof one->frames) == 0,
              "frames on %d threads differ from 1 thread (max |diff| %g)", t,
              max_abs_diff(one->frames, other->frames, N_FRAMES));
    }
    hl_set_threads(0);
    free(one), free(other);
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static void test_governor(void) {
    const pid_t parent = getpid();
    const pid_t busy = fork();
    if (busy == 0) { /* a spinner that dies with us */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(0);
        volatile unsigned long spin = 0;
        for (;;) spin++;
    }
    CHECK(busy > 0, "fork");
    if (busy <= 0) return;
    sleep_s(0.05); /* the spinner running */
    for (int max = 1; max <= 4; max++) {
        hl_governor g;
        hl_governor_start(&g, max);
        CHECK(g.threads >= 1 && g.threads <= max, "max %d: started with %d threads", max,
              g.threads);
        sleep_s(1.5 * HL_GOVERNOR_PERIOD); /* we sleep: the spinner is the busy one */
        hl_governor_tick(&g);
        if (g.ok) {
            const int want = max > 1 ? max - 1 : 1;
            CHECK(g.threads <= want && g.threads >= 1,
                  "max %d beside a busy process: %d threads (at most %d)", max, g.threads, want);
            CHECK(omp_get_max_threads() == g.threads, "max %d: OpenMP count %d, governor %d", max,
                  omp_get_max_threads(), g.threads);
        } else { /* on Linux /proc/stat is always there */
            CHECK(0, "max %d: the governor read no /proc/stat", max);
        }
        hl_governor_stop(&g);
        CHECK(omp_get_max_threads() == max, "max %d: stop restored %d", max, omp_get_max_threads());
    }
    kill(busy, SIGKILL);
    waitpid(busy, NULL, 0);
    hl_set_threads(0);
}

int main(void) {
    test_thread_counts();
    test_governor();
    return test_done("test_threads");
}
