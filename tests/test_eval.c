/* The evaluator on synthetic videos with known answers: a frozen video, a colour that drifts
 * linearly, a hard cut every 33 frames, a missing object; the shape classifier on every shape;
 * the Fréchet distance; and bad input (too small, too few frames, mismatched truth). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/eval.h"
#include "helios.h"
#include "test_util.h"

enum { W = 64, H = 64, PLANE = W * H };

static helios_session *g_s;

static helios_eval *new_eval(const char *prompt, int seeds) {
    helios_eval_params p;
    helios_eval_params_init(&p);
    p.width = W, p.height = H, p.prompt = prompt, p.reference_seeds = seeds;
    helios_eval *e = NULL;
    CHECK(helios_eval_new(g_s, &p, &e) == HELIOS_OK, "eval_new: %s", helios_session_error(g_s));
    return e;
}

static double metric(helios_eval *e, const char *name) {
    const helios_eval_metric *m;
    int n;
    if (helios_eval_finish(e, &m, &n) != HELIOS_OK) {
        CHECK(0, "finish: %s", helios_eval_error(e));
        return NAN;
    }
    for (int i = 0; i < n; i++)
        if (!strcmp(m[i].name, name)) return m[i].value;
    CHECK(0, "no metric %s", name);
    return NAN;
}

static helios_world *world(uint64_t seed, const char *prompt) {
    helios_world_params p;
    helios_world_params_init(&p);
    p.seed = seed, p.width = W, p.height = H, p.prompt = prompt;
    helios_world *w = NULL;
    CHECK(helios_world_new(g_s, &p, &w) == HELIOS_OK, "world: %s", helios_session_error(g_s));
    return w;
}

static void test_frozen(void) {
    helios_world *w = world(5, NULL);
    float *f = malloc(sizeof(float) * 3 * PLANE);
    helios_world_render(w, f, 1, 0);
    helios_eval *e = new_eval(NULL, 0);
    for (int t = 0; t < 100; t++) helios_eval_add(e, f, 1, 0, NULL);
    double fr = metric(e, "freezing"), mo = metric(e, "motion");
    printf("frozen: freezing %.3f motion %.5f\n", fr, mo);
    CHECK(fr == 1.0, "freezing %g", fr);
    CHECK(mo == 0.0, "motion %g", mo);
    CHECK(isnan(metric(e, "semantic_accuracy")), "no prompt: no semantic accuracy");
    helios_eval_free(e);
    /* real footage is not frozen */
    e = new_eval(NULL, 0);
    for (int t = 0; t < 100; t++, helios_world_step(w)) {
        helios_world_render(w, f, 1, 0);
        helios_eval_add(e, f, 1, 0, NULL);
    }
    fr = metric(e, "freezing");
    printf("world footage: freezing %.3f motion %.5f\n", fr, metric(e, "motion"));
    CHECK(fr < 0.05, "footage freezing %g", fr);
    helios_eval_free(e);
    helios_world_free(w);
    free(f);
}

/* A grey frame whose level goes linearly from a to b: brightness drift = (b - a)(1 - (k-1)/(n-1))
 * for the first/last k = ceil(0.15 n) frames. */
static void test_linear_drift(void) {
    const int n = 100;
    const double a = 0.2, b = 0.6;
    float *f = malloc(sizeof(float) * 3 * PLANE);
    helios_eval *e = new_eval(NULL, 0);
    for (int t = 0; t < n; t++) {
        float v = (float)(2 * (a + (b - a) * t / (n - 1)) - 1);
        for (int i = 0; i < 3 * PLANE; i++) f[i] = v;
        helios_eval_add(e, f, 1, 0, NULL);
    }
    double k = ceil(0.15 * n), want = (b - a) * (1 - (k - 1) / (n - 1)),
           got = metric(e, "drift_brightness");
    printf("linear drift: brightness drift %.5f (expected %.5f), saturation drift %.5f\n", got,
           want, metric(e, "drift_saturation"));
    CHECK(fabs(got - want) < 1e-4, "brightness drift %g, expected %g", got, want);
    CHECK(metric(e, "drift_saturation") < 1e-6, "grey has no saturation drift");
    helios_eval_free(e);
    free(f);
}

/* Every 33 frames the video cuts between two worlds: seams are much stronger than motion. */
static void test_hard_cuts(void) {
    helios_world *w1 = world(1, NULL), *w2 = world(2, NULL);
    float *f = malloc(sizeof(float) * 3 * PLANE);
    helios_eval *e = new_eval(NULL, 0), *ref = new_eval(NULL, 0);
    for (int t = 0; t < 33 * 6; t++) {
        helios_world_render((t / 33) & 1 ? w2 : w1, f, 1, 0);
        helios_eval_add(e, f, 1, 0, NULL);
        helios_world_render(w1, f, 1, 0);
        helios_eval_add(ref, f, 1, 0, NULL);
        helios_world_step(w1), helios_world_step(w2);
    }
    double seam = metric(e, "seam_strength"), seam_ref = metric(ref, "seam_strength");
    printf("hard cut every 33 frames: seam strength %.2f (uncut footage %.2f)\n", seam, seam_ref);
    CHECK(seam > 10, "seam strength %g", seam);
    CHECK(seam_ref < 3, "uncut seam strength %g", seam_ref);
    helios_eval_free(e), helios_eval_free(ref);
    helios_world_free(w1), helios_world_free(w2);
    free(f);
}

/* Footage of two objects judged against prompts naming them, and naming a third that is missing. */
static void test_missing_object(void) {
    const char *scene = "a large red circle and a large blue square bounce on a black background";
    const char *more = "a large red circle, a large blue square and a large green star bounce on a "
                       "black background";
    helios_world *w = world(3, scene);
    float *f = malloc(sizeof(float) * 3 * PLANE);
    helios_eval *good = new_eval(scene, 2), *bad = new_eval(more, 0);
    for (int t = 0; t < 96; t++, helios_world_step(w)) {
        helios_world_render(w, f, 1, 0);
        helios_eval_add(good, f, 1, 0, NULL);
        helios_eval_add(bad, f, 1, 0, NULL);
    }
    double g = metric(good, "semantic_accuracy"), b = metric(bad, "semantic_accuracy");
    double fd = metric(good, "frechet");
    printf("missing object: semantic accuracy %.3f with the right prompt, %.3f with a third object "
           "named; "
           "frechet %.4f\n",
           g, b, fd);
    CHECK(g > 0.9, "right prompt %g", g);
    CHECK(b < 0.7 && b > 0.5, "one of three objects missing %g", b);
    CHECK(fd >= 0 && fd < 1, "frechet to footage of the same prompt %g", fd);
    helios_eval_free(good), helios_eval_free(bad);
    helios_world_free(w);
    free(f);
}

/* Each shape in each size class at 128x128 is segmented and classified. */
static void test_shapes(void) {
    static const char *const shapes[] = {"circle", "square", "triangle", "star", "ring"};
    static const char *const sizes[] = {"small", "medium", "large"};
    int right = 0, total = 0;
    for (int s = 0; s < 5; s++)
        for (int z = 0; z < 3; z++)
            for (uint64_t seed = 0; seed < 4; seed++) {
                char prompt[128];
                snprintf(prompt, sizeof prompt, "a %s yellow %s spins on a navy background",
                         sizes[z], shapes[s]);
                hl_world w;
                hl_world_config c = {.seed = seed,
                                     .width = 128,
                                     .height = 128,
                                     .fps = 24,
                                     .max_objects = 4,
                                     .prompt = prompt};
                hl_error err = {0};
                CHECK(hl_world_init(&w, &c, &err) == HL_OK, "%s", err.msg);
                float *img = malloc(sizeof(float) * 3 * 128 * 128);
                hl_world_render(&w, img, 128 * 128);
                hl_segmenter sg;
                hl_segmenter_init(&sg, 128, 128, &err);
                double hist[HL_N_CLASSES];
                hl_blob b[4];
                int n = hl_segment(&sg, img, 128 * 128, hist, b, 4);
                int ok = n == 1 && b[0].shape == (hl_shape)s &&
                         hl_size_class_of(b[0].radius) == (hl_size_class)z;
                if (!ok)
                    printf("  %s: %d blobs, first %s r=%.3f\n", prompt, n,
                           n ? hl_shape_names[b[0].shape] : "-", n ? b[0].radius : 0);
                right += ok, total++;
                hl_segmenter_release(&sg);
                free(img);
                hl_world_release(&w);
            }
    printf("shapes at 128x128: %d of %d classified right\n", right, total);
    CHECK(right >= total * 9 / 10, "%d of %d shapes right", right, total);
}

static void test_frechet(void) {
    enum { N = 200, D = 3 };
    double a[N * D], b[N * D];
    uint64_t x = 1;
    for (int i = 0; i < N * D; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        a[i] = (double)(x >> 11) / 9007199254740992.0;
        b[i] = a[i] + (i % D == 0 ? 2.0 : 0.0);
    }
    double same = hl_frechet(a, N, a, N, D), shifted = hl_frechet(a, N, b, N, D);
    CHECK(same < 1e-9, "identical samples %g", same);
    CHECK(fabs(shifted - 4.0) < 1e-6, "mean shifted by 2: %g (expected 4)", shifted);
    CHECK(isnan(hl_frechet(a, 1, b, N, D)), "one sample: NaN");
}

static void test_bad_input(void) {
    helios_eval_params p;
    helios_eval_params_init(&p);
    helios_eval *e = NULL;
    p.width = 8, p.height = 64;
    CHECK(helios_eval_new(g_s, &p, &e) == HELIOS_ERR_INVALID_ARG && !e, "8x64 is too small");
    CHECK(strstr(helios_session_error(g_s), "too small") != NULL, "message: %s",
          helios_session_error(g_s));
    e = new_eval(NULL, 0);
    float f[3 * PLANE] = {0};
    for (int t = 0; t < 5; t++) helios_eval_add(e, f, 1, 0, NULL);
    const helios_eval_metric *m;
    int n;
    CHECK(helios_eval_finish(e, &m, &n) == HELIOS_ERR_INVALID_ARG, "5 frames are too few");
    CHECK(strstr(helios_eval_error(e), "too few") != NULL, "message: %s", helios_eval_error(e));
    CHECK(helios_eval_plot(e, "/nonexistent/x.png") == HELIOS_ERR_INVALID_ARG,
          "plot before finish");
    helios_eval_free(e);
    /* a truth file for another size, and one with another frame count */
    char path[] = "/tmp/helios_test_eval_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    FILE *tf = fdopen(fd, "w");
    for (int t = 0; t < 10; t++)
        fprintf(tf,
                "{\"frame\":%d,\"width\":%d,\"height\":%d,\"caption\":\"a small red circle "
                "bounces\"}\n",
                t, W, H);
    fclose(tf);
    p.width = 2 * W, p.height = H, p.truth_path = path;
    CHECK(helios_eval_new(g_s, &p, &e) == HELIOS_ERR_SHAPE, "truth for another size");
    CHECK(strstr(helios_session_error(g_s), path) != NULL, "names the truth file: %s",
          helios_session_error(g_s));
    p.width = W;
    CHECK(helios_eval_new(g_s, &p, &e) == HELIOS_OK, "truth of the right size: %s",
          helios_session_error(g_s));
    for (int t = 0; t < 12; t++) helios_eval_add(e, f, 1, 0, NULL);
    CHECK(helios_eval_finish(e, &m, &n) == HELIOS_ERR_SHAPE, "12 frames against 10 truth lines");
    CHECK(strstr(helios_eval_error(e), "10 frames") != NULL, "message: %s", helios_eval_error(e));
    helios_eval_free(e);
    tf = fopen(path, "w");
    fprintf(
        tf,
        "{\"frame\":0,\"width\":64,\"height\":64,\"caption\":\"x\"}\n{\"frame\":5,\"width\":64}\n");
    fclose(tf);
    CHECK(helios_eval_new(g_s, &p, &e) == HELIOS_ERR_FORMAT, "malformed truth");
    CHECK(strstr(helios_session_error(g_s), "line 2") != NULL, "names the line: %s",
          helios_session_error(g_s));
    p.truth_path = "/nonexistent/truth.jsonl";
    CHECK(helios_eval_new(g_s, &p, &e) == HELIOS_ERR_IO, "missing truth file");
    CHECK(strstr(helios_session_error(g_s), "/nonexistent/truth.jsonl") != NULL, "message: %s",
          helios_session_error(g_s));
    remove(path);
}

/* The contact sheet: frames of solid colours, kept at indices 0, 5 and past the end (the last
 * frame stands in), read back from the PNG: its size and each tile's colour and label strip. */
static void test_sheet(void) {
    const int64_t at[3] = {0, 5, 100};
    helios_eval_params p;
    helios_eval_params_init(&p);
    p.width = W, p.height = H / 2, p.reference_seeds = 0, p.sheet_frames = at, p.n_sheet = 3;
    helios_eval *e = NULL;
    CHECK(helios_eval_new(g_s, &p, &e) == HELIOS_OK, "eval_new: %s", helios_session_error(g_s));
    int plane = W * H / 2;
    float *f = malloc(sizeof(float) * 3 * plane);
    for (int t = 0; t < 10; t++) { /* frame t: red = t / 9, green 0, blue the reverse */
        for (int i = 0; i < plane; i++)
            f[i] = 2.0f * t / 9 - 1, f[plane + i] = -1, f[2 * plane + i] = 1 - 2.0f * t / 9;
        helios_eval_add(e, f, 1, 0, NULL);
    }
    free(f);
    CHECK(helios_eval_sheet(e, "/tmp/x.png") == HELIOS_ERR_INVALID_ARG, "sheet before finish");
    metric(e, "frames");
    char path[] = "/tmp/helios_test_sheet_XXXXXX.png";
    int fd = mkstemps(path, 4);
    CHECK(fd >= 0, "mkstemps");
    close(fd);
    CHECK(helios_eval_sheet(e, path) == HELIOS_OK, "sheet: %s", helios_eval_error(e));
    helios_media *m = NULL;
    CHECK(helios_image_read(g_s, path, 0, 0, &m) == HELIOS_OK, "read back: %s",
          helios_session_error(g_s));
    if (m) { /* 64x32 tiles scaled by 4 to 256x128; 8 pixels around, 28 of labels */
        int w = m->width, h = m->height;
        CHECK(w == 3 * (256 + 8) + 8 && h == 128 + 28 + 16, "sheet of %dx%d", w, h);
        const int frame_of[3] = {0, 5, 9};
        for (int j = 0; j < 3 && w == 800; j++) {
            const float *x = m->data + 8 * w + 8 + j * (256 + 8) + 100 * w + 50;
            float red = x[0], blue = x[2 * (size_t)w * h], want = 2.0f * frame_of[j] / 9 - 1;
            CHECK(fabsf(red - want) < 0.02f && fabsf(blue + want) < 0.02f,
                  "tile %d shows frame %d: red %.3f blue %.3f want %.3f", j, frame_of[j], red, blue,
                  want);
            float label = m->data[(size_t)(8 + 128 + 2) * w + 8 + j * (256 + 8)];
            CHECK(label == 1.0f, "tile %d: white above its label (%.3f)", j, label);
        }
        helios_media_free(m);
    }
    unlink(path);
    helios_eval_free(e);
    const int64_t bad[1] = {-1};
    p.sheet_frames = bad, p.n_sheet = 1;
    CHECK(helios_eval_new(g_s, &p, &e) == HELIOS_ERR_INVALID_ARG && !e, "sheet frame -1 refused");
    p.n_sheet = 65;
    CHECK(helios_eval_new(g_s, &p, &e) == HELIOS_ERR_INVALID_ARG && !e, "65 sheet frames refused");
    e = new_eval(NULL, 0);
    float z[3 * PLANE] = {0};
    for (int t = 0; t < 8; t++) helios_eval_add(e, z, 1, 0, NULL);
    metric(e, "frames");
    CHECK(helios_eval_sheet(e, "/tmp/x.png") == HELIOS_ERR_INVALID_ARG, "no sheet asked for");
    helios_eval_free(e);
}

int main(void) {
    helios_session_params sp;
    helios_session_params_init(&sp);
    sp.n_threads = 1;
    if (helios_session_new(&sp, &g_s) != HELIOS_OK) return 1;
    test_frozen();
    test_linear_drift();
    test_hard_cuts();
    test_missing_object();
    test_shapes();
    test_frechet();
    test_bad_input();
    test_sheet();
    helios_session_free(g_s);
    return test_done("test_eval");
}
