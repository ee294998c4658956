/* The chunk loop end to end against the reference pipelines (T2V, I2V, V2V; Base, Mid and
 * Distilled styles): every transformer call, scheduler step, chunk noise and the final latents,
 * on both backends. Plus flat memory: the history window does not grow with the chunk count. */
#include <math.h>
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

int main(void) {
    test_history_window();
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
