/* The public generation API on the tiny random model folder: step-wise progress, chunks handed
 * over before the next chunk starts, cancellation, prompt switching, error paths. */
#include <math.h>
#include <string.h>

#include "helios.h"
#include "test_util.h"

#define MODEL HELIOS_VECTORS "/../models/tiny-random-model"

static helios_gen_params small_params(void) {
    helios_gen_params g;
    helios_gen_params_init(&g);
    g.prompt = "a red ball bouncing on a wooden floor";
    g.width = 128, g.height = 64;
    g.num_chunks = 3;
    g.latent_frames_per_chunk = 3;
    g.seed = 7;
    return g;
}

/* Steps until the end; records the chunk results and checks the order of events. */
static void test_stepwise(helios_pipeline *p, float *last_chunk, size_t n_last) {
    helios_gen_params g = small_params();
    helios_gen *gen;
    CHECK(helios_gen_begin(p, &g, &gen) == HELIOS_OK, "begin");
    int chunks = 0, steps = 0, prev_chunk = 0;
    for (helios_gen_progress pr = {0}; !pr.finished && steps < 1000;) {
        CHECK(helios_gen_step(gen, &pr) == HELIOS_OK, "step");
        steps++;
        CHECK(pr.chunk == prev_chunk, "steps of chunk %d before chunk %d is done", prev_chunk, pr.chunk);
        CHECK(pr.n_chunks == 3 && pr.n_stages == 3 && pr.step < pr.n_steps, "progress fields");
        if (pr.chunk_done) {
            CHECK(pr.latents && pr.latent_frames == 3 && pr.latent_height == 8 && pr.latent_width == 16, "chunk latents");
            if (pr.finished) memcpy(last_chunk, pr.latents, n_last * sizeof(float));
            chunks++;
            prev_chunk = pr.chunk + 1;
        }
    }
    /* Distilled: 3 stages x 2 steps, x2 on the amplified first chunk */
    CHECK(chunks == 3 && steps == 12 + 6 + 6, "%d chunks in %d steps", chunks, steps);
    helios_gen_end(gen);
}

static int cancel_after_3(const helios_gen_progress *p, void *user) {
    int *n = user;
    return ++*n >= 3;
}

static int g_chunks_seen;
static int count_chunks(const helios_gen_progress *p, void *user) {
    g_chunks_seen += p->chunk_done;
    return 0;
}

int main(void) {
    helios_session_params sp;
    helios_session_params_init(&sp);
    helios_session *s;
    helios_session_new(&sp, &s);
    helios_pipeline_params pp;
    helios_pipeline_params_init(&pp);
    pp.model_dir = MODEL;
    pp.low_memory = 1;
    helios_pipeline *p = NULL;
    CHECK(helios_pipeline_load(s, &pp, &p) == HELIOS_OK, "load: %s", helios_session_error(s));
    if (!p) return test_done("test_generate");

    size_t n = 16 * 3 * 8 * 16;
    float a[16 * 3 * 8 * 16], b[16 * 3 * 8 * 16];
    test_stepwise(p, a, n);
    test_stepwise(p, b, n);
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, same video");
    CHECK(max_abs(a, (int64_t)n) > 0.1 && max_abs(a, (int64_t)n) < 100, "plausible latents");

    /* cancellation from the progress callback */
    helios_gen_params g = small_params();
    int calls = 0;
    CHECK(helios_generate(p, &g, cancel_after_3, &calls) == HELIOS_ERR_CANCELLED && calls == 3, "cancelled after 3 steps");
    g_chunks_seen = 0;
    CHECK(helios_generate(p, &g, count_chunks, NULL) == HELIOS_OK && g_chunks_seen == 3, "blocking run streams 3 chunks");

    /* prompt switching: the video after the switch differs from the unswitched one */
    helios_gen *gen;
    CHECK(helios_gen_begin(p, &g, &gen) == HELIOS_OK, "begin");
    float c[16 * 3 * 8 * 16];
    for (helios_gen_progress pr = {0}; !pr.finished;) {
        CHECK(helios_gen_step(gen, &pr) == HELIOS_OK, "step");
        if (pr.chunk_done && pr.chunk == 0)
            CHECK(helios_gen_set_prompt(gen, "a blue cube sliding on ice", NULL, 2) == HELIOS_OK, "set_prompt: %s",
                  helios_session_error(s));
        if (pr.finished) memcpy(c, pr.latents, sizeof c);
    }
    helios_gen_end(gen);
    float d = 0;
    for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - c[i]));
    CHECK(d > 1e-3, "switching the prompt changes the video (%g)", d);

    /* errors */
    g.width = 100;
    CHECK(helios_gen_begin(p, &g, &gen) == HELIOS_ERR_INVALID_ARG && strstr(helios_session_error(s), "multiples of 16"),
          "bad size: %s", helios_session_error(s));
    helios_pipeline *q = NULL;
    pp.model_dir = "/nonexistent/model";
    CHECK(helios_pipeline_load(s, &pp, &q) != HELIOS_OK && strstr(helios_session_error(s), "/nonexistent/model"),
          "missing folder named: %s", helios_session_error(s));
    helios_pipeline_free(p);
    helios_session_free(s);
    return test_done("test_generate");
}
