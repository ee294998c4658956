/* Two sessions in one process, generating at the same time on two threads. Each session owns
 * its backend instance (engine, primitive cache, scratch), so they share nothing mutable: each
 * must produce exactly the video a session produces alone. Run under ASan/UBSan in CI, this also
 * catches state that two instances would still share (a static cache, a global scratch). Only
 * the cpu backend is run: it is the one with state (the ref backend is stateless scalar code,
 * and ~15x slower here). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "helios.h"
#include "test_util.h"

#define MODEL HELIOS_VECTORS "/../models/tiny-random-model"
#define N_LAT (16 * 3 * 8 * 16) /* (1, 16, F 3, H/8 8, W/8 16) of one chunk at 128x64 */

typedef struct job {
    helios_backend backend;
    uint64_t seed;
    float last[N_LAT]; /* the last chunk's latents */
    helios_status status;
    char msg[512];
} job;

/* A whole generation on a session of its own (one thread each, so two jobs fit two cores). */
static void *run_job(void *arg) {
    job *j = arg;
    helios_session_params sp;
    helios_session_params_init(&sp);
    sp.backend = j->backend;
    sp.n_threads = 1;
    helios_session *s = NULL;
    helios_pipeline *p = NULL;
    helios_gen *gen = NULL;
    if ((j->status = helios_session_new(&sp, &s)) != HELIOS_OK) {
        snprintf(j->msg, sizeof j->msg, "session_new");
        return NULL;
    }
    helios_pipeline_params pp;
    helios_pipeline_params_init(&pp);
    pp.model_dir = MODEL;
    if ((j->status = helios_pipeline_load(s, &pp, &p)) != HELIOS_OK) {
        snprintf(j->msg, sizeof j->msg, "load: %s", helios_session_error(s));
        goto done;
    }
    helios_gen_params g;
    helios_gen_params_init(&g);
    g.prompt = "two sessions";
    g.width = 128, g.height = 64;
    g.num_chunks = 2;
    g.latent_frames_per_chunk = 3;
    g.seed = j->seed;
    if ((j->status = helios_gen_new(p, &g, &gen)) != HELIOS_OK) {
        snprintf(j->msg, sizeof j->msg, "gen_new: %s", helios_session_error(s));
        goto done;
    }
    for (helios_gen_progress pr = {0}; !pr.finished;) {
        if ((j->status = helios_gen_step(gen, &pr)) != HELIOS_OK) {
            snprintf(j->msg, sizeof j->msg, "step: %s", helios_gen_error(gen));
            goto done;
        }
        if (pr.finished) memcpy(j->last, pr.latents, sizeof j->last);
    }
done:
    helios_gen_free(gen);
    helios_pipeline_free(p);
    helios_session_free(s);
    return NULL;
}

static void check_pair(helios_backend backend) {
    const char *name = backend == HELIOS_BACKEND_CPU ? "cpu" : "ref";
    /* alone, one after the other */
    job *alone = calloc(2, sizeof *alone), *together = calloc(2, sizeof *together);
    if (!alone || !together) {
        CHECK(0, "out of memory");
        free(alone), free(together);
        return;
    }
    for (int i = 0; i < 2; i++) {
        alone[i].backend = together[i].backend = backend;
        alone[i].seed = together[i].seed = 11 + (uint64_t)i;
        run_job(&alone[i]);
        CHECK(alone[i].status == HELIOS_OK, "%s alone %d: %s", name, i, alone[i].msg);
    }
    /* at the same time */
    pthread_t t[2];
    int started[2];
    for (int i = 0; i < 2; i++)
        started[i] = pthread_create(&t[i], NULL, run_job, &together[i]) == 0;
    for (int i = 0; i < 2; i++)
        if (started[i]) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK(started[i], "%s: thread %d started", name, i);
        CHECK(together[i].status == HELIOS_OK, "%s together %d: %s", name, i, together[i].msg);
        CHECK(memcmp(alone[i].last, together[i].last, sizeof alone[i].last) == 0,
              "%s seed %d: the same latents alone and beside another session (max diff %g)", name,
              (int)alone[i].seed, max_abs_diff(alone[i].last, together[i].last, N_LAT));
        CHECK(max_abs(alone[i].last, N_LAT) > 0.1, "%s: plausible latents", name);
    }
    /* the two seeds differ, so equal results above are not an artefact of shared output */
    CHECK(memcmp(alone[0].last, alone[1].last, sizeof alone[0].last) != 0, "%s: seeds differ",
          name);
    free(alone);
    free(together);
}

int main(void) {
    helios_log_level_set(HELIOS_LOG_WARN);
    check_pair(HELIOS_BACKEND_CPU);
    return test_done("test_sessions");
}
