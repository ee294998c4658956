/* The UMT5 encoder against the reference vectors (case A: batch 2 with padding, every layer's
 * input, the pipeline's zeroed padding, layer-0 position bias; case B: 160 tokens, distances past
 * max_distance, buckets exact), on both backends; its backward against central finite
 * differences of a double-precision forward on a tiny random model (test_umt5_grad.c), and
 * against grads_umt5[_f64] when the vectors folder has them. */
#include <math.h>
#include <string.h>

#include "api/session.h"
#include "test_util.h"
#include "text/umt5.h"
#include "verify/umt5_grad_vectors.h"
#include "verify/umt5_vectors.h"

void test_umt5_grad(helios_backend kind);

static int g_cases;

static void on_case(void *user, const char *file, const char *case_name, double max_abs, double tol,
                    long total) {
    printf("  %-8s %-34s max_abs %.3g (tol %.3g)\n", (const char *)user, case_name, max_abs, tol);
    CHECK(max_abs <= tol, "%s %s: max_abs %.3g > %.3g", file, case_name, max_abs, tol);
    g_cases++;
}

/* Hand-checked buckets of the T5 bidirectional scheme (32 buckets, max distance 128). */
static void test_buckets(void) {
    CHECK(hl_umt5_bucket(0, 32, 128) == 0, "0");
    CHECK(hl_umt5_bucket(-7, 32, 128) == 7, "-7 is exact");
    CHECK(hl_umt5_bucket(7, 32, 128) == 16 + 7, "+7: upper half");
    CHECK(hl_umt5_bucket(-8, 32, 128) == 8, "-8: first log bucket");
    CHECK(hl_umt5_bucket(-16, 32, 128) == 10, "-16: 8 + floor(log(2)/log(16)·8) = 10");
    CHECK(hl_umt5_bucket(-1000, 32, 128) == 15, "far: clamped to 15");
    CHECK(hl_umt5_bucket(1000, 32, 128) == 31, "far positive: 31");
}

int main(void) {
    test_buckets();
    helios_backend backends[2] = {HELIOS_BACKEND_REF, HELIOS_BACKEND_CPU};
    for (int k = 0; k < 2; k++) {
        hl_error err = {0};
        hl_ctx ctx = test_ctx(backends[k], &err);
        int before = g_cases;
        hl_status s = hl_umt5_verify(&ctx, HELIOS_VECTORS, on_case, k ? "cpu" : "ref");
        CHECK(s == HL_OK, "%s", err.msg);
        /* A: last, 3 hidden states, pipeline, bias; B: last, bias, buckets */
        CHECK(g_cases - before >= 9, "only %d cases checked", g_cases - before);
        test_umt5_grad(backends[k]);
        static const char *const grads[] = {"grads_umt5.safetensors", "grads_umt5_f64.safetensors"};
        for (int i = 0; i < 2; i++) {
            FILE *f = fopen(vector_path(grads[i]), "rb");
            if (!f) continue; /* not among the committed vectors */
            fclose(f);
            before = g_cases;
            s = hl_umt5_grad_verify(&ctx, HELIOS_VECTORS, grads[i], on_case, k ? "cpu" : "ref");
            CHECK(s == HL_OK, "%s", err.msg);
            /* output, loss, shared + its tied copy, 10 per layer, final norm */
            CHECK(g_cases - before == 25, "%s: %d cases", grads[i], g_cases - before);
        }
    }
    return test_done("test_umt5");
}
