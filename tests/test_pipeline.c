/* The chunk loop end to end against the reference pipelines (T2V, I2V, V2V; Base, Mid and
 * Distilled styles): every transformer call, scheduler step, chunk noise and the final latents,
 * on both backends. Plus flat memory: the history window does not grow with the chunk count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/chunk_loop.h"
#include "api/session.h"
#include "test_util.h"
#include "verify/pipeline_vectors.h"

static int g_cases;

static void on_case(void *user, const char *file, const char *case_name, double max_abs, double tol,
                    long total) {
    printf("  %-4s %-36s %-16s max_abs %.3g (tol %.3g)\n", (const char *)user, file, case_name,
           max_abs, tol);
    CHECK(max_abs <= tol, "%s %s: max_abs %.3g > %.3g", file, case_name, max_abs, tol);
    g_cases++;
}

/* Many chunks with a tiny random history window: the window keeps the newest frames in order. */
static void test_history_window(void) {
    hl_history h;
    int sizes[3] = {4, 2, 1};
    CHECK(hl_history_init(&h, 1, 1, 1, 1, sizes, NULL) == HL_OK, "init");
    for (int k = 0; k < 100; k++) {
        float x[3] = {3.0f * k, 3.0f * k + 1, 3.0f * k + 2};
        hl_history_append(&h, x, 3);
    }
    int ok = 1;
    for (int i = 0; i < 7; i++) ok &= h.frames[i] == (float)(300 - 7 + i);
    CHECK(ok && h.generated == 300, "window holds frames 293..299 after 100 chunks");
    hl_history_inputs in;
    CHECK(hl_history_inputs_build(&h, 3, &in, NULL) == HL_OK, "inputs");
    CHECK(in.idx_short[0] == 0 && in.idx_short[1] == 7 && in.idx_long[0] == 1 &&
              in.idx_mid[1] == 6 && in.idx_cur[0] == 8 && in.lat_short[1] == 299.0f,
          "indices anchor 0, long 1.., mid .., 1x 7, current 8..");
    hl_history_inputs_free(&in);
    hl_history_free(&h);
}

/* Every chunk of a loop (n floats a chunk) with the given history window and layout. */
static bool loop_chunks(const hl_ctx *ctx, const hl_dit *dit, const int sizes[3],
                        hl_history_layout layout, float *out, size_t n, int chunks) {
    hl_loop_config c;
    hl_loop_config_default(&c);
    hl_sched_config_default(&c.sched, HL_SCHED_UNIPC);
    c.steps = 2, c.guidance_scale = 1.0, c.latent_frames = 3, c.height = 4, c.width = 6;
    c.seed = 3, c.history = layout;
    for (int i = 0; i < 3; i++) c.history_sizes[i] = sizes[i];
    enum { L = 5 };
    float text[L * 64];
    for (int i = 0; i < L * dit->cfg.text_dim && i < L * 64; i++) text[i] = sinf(0.37f * i);
    hl_loop *l = NULL;
    if (dit->cfg.text_dim > 64 || hl_loop_new(ctx, dit, &c, text, NULL, L, NULL, NULL, &l) != HL_OK)
        return false;
    bool ok = true;
    for (int done = 0; ok && done < chunks;) {
        hl_loop_event ev;
        ok = hl_loop_step(l, &ev) == HL_OK;
        if (ok && ev.chunk_done) memcpy(out + (size_t)done++ * n, ev.latents, n * sizeof(float));
    }
    hl_loop_free(l);
    return ok;
}

/* The uncompressed layout in the loop: with a window of [0, 0, 1] the two layouts give the
 * transformer the same inputs ([anchor, newest] in the short tier) and must agree bit for bit;
 * with [4, 2, 1] they must not (the older frames move from the long / mid tiers to the short
 * tier's patches). */
static void test_uncompressed_loop(void) {
    hl_error err = {0};
    hl_ctx ctx = test_ctx(HELIOS_BACKEND_CPU, &err);
    hl_dit *dit = NULL;
    const char *dir = HELIOS_VECTORS "/../models/tiny-random-model/transformer";
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    CHECK(hl_dit_load(cfg, dir, &dit, &err) == HL_OK, "%s", err.msg);
    if (!dit) return;
    size_t n = (size_t)dit->cfg.in_channels * 3 * 4 * 6;
    enum { K = 3 };
    float *a = malloc(K * n * sizeof *a), *b = malloc(K * n * sizeof *b);
    int flat_window[3] = {0, 0, 1}, window[3] = {4, 2, 1};
    CHECK(loop_chunks(&ctx, dit, flat_window, HL_HISTORY_COMPRESSED, a, n, K) &&
              loop_chunks(&ctx, dit, flat_window, HL_HISTORY_UNCOMPRESSED, b, n, K),
          "loops: %s", err.msg);
    CHECK(!memcmp(a, b, K * n * sizeof *a), "window [0, 0, 1]: the layouts differ");
    CHECK(loop_chunks(&ctx, dit, window, HL_HISTORY_COMPRESSED, a, n, K) &&
              loop_chunks(&ctx, dit, window, HL_HISTORY_UNCOMPRESSED, b, n, K),
          "loops: %s", err.msg);
    for (int k = 0; k < K; k++)
        CHECK(memcmp(a + k * n, b + k * n, n * sizeof *a), "window [4, 2, 1]: chunk %d alike", k);
    free(a), free(b);
    hl_dit_free(dit);
}

int main(void) {
    test_history_window();
    test_uncompressed_loop();
    helios_backend backends[2] = {HELIOS_BACKEND_REF, HELIOS_BACKEND_CPU};
    for (int k = 0; k < 2; k++) {
        hl_error err = {0};
        hl_ctx ctx = test_ctx(backends[k], &err);
        int before = g_cases;
        CHECK(hl_pipeline_verify(&ctx, HELIOS_VECTORS, on_case, k ? "cpu" : "ref") == HL_OK, "%s",
              err.msg);
        CHECK(g_cases - before >= 7 * 4, "only %d pipeline cases", g_cases - before);
    }
    return test_done("test_pipeline");
}
