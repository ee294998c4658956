/* The tiny world: determinism, invariants over long random runs (objects stay in the frame,
 * captions name every object and parse back), rendering of known scenes, bad parameters. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helios.h"
#include "test_util.h"
#include "world/world.h"

static hl_world_config config(uint64_t seed, int w, int h) {
    return (hl_world_config){.seed = seed,
                             .width = w,
                             .height = h,
                             .fps = 24,
                             .max_objects = 4,
                             .events = true,
                             .camera = true,
                             .lighting = true};
}

static void test_determinism(void) {
    helios_session_params sp;
    helios_session_params_init(&sp);
    helios_session *s;
    CHECK(helios_session_new(&sp, &s) == HELIOS_OK, "session");
    helios_world_params p;
    helios_world_params_init(&p);
    p.seed = 42, p.width = 48, p.height = 32;
    helios_world *a, *b, *c;
    CHECK(helios_world_new(s, &p, &a) == HELIOS_OK && helios_world_new(s, &p, &b) == HELIOS_OK,
          "new");
    p.seed = 43;
    CHECK(helios_world_new(s, &p, &c) == HELIOS_OK, "new");
    size_t n = 3 * 48 * 32;
    float *fa = malloc(n * sizeof(float) * 4), *fb = fa + n, *fc = fb + n;
    int same = 1, differs = 0;
    for (int f = 0; f < 300; f++) {
        helios_world_render(a, fa, 1, 0);
        helios_world_render(b, fb, 1, 0);
        helios_world_render(c, fc, 1, 0);
        same &= !memcmp(fa, fb, n * sizeof(float));
        differs |= memcmp(fa, fc, n * sizeof(float)) != 0;
        same &= !strcmp(helios_world_truth_json(a), helios_world_truth_json(b));
        helios_world_step(a), helios_world_step(b), helios_world_step(c);
    }
    CHECK(same, "the same seed gives the same frames and truth");
    CHECK(differs, "another seed gives other frames");
    CHECK(helios_world_frame(a) == 300, "frame counter %lld", (long long)helios_world_frame(a));
    /* a frame of a block lands in its slot: planes T*H*W apart */
    float *blk = calloc(n * 3, sizeof(float));
    helios_world_render(a, blk, 3, 1);
    helios_world_render(b, fb, 1, 0);
    int ok = 1;
    for (int ch = 0; ch < 3; ch++)
        ok &= !memcmp(blk + ch * 3 * 48 * 32 + 48 * 32, fb + ch * 48 * 32, 48 * 32 * sizeof(float));
    CHECK(ok, "render into frame t of a (3, T, H, W) block");
    CHECK(helios_world_render(a, blk, 3, 3) == HELIOS_ERR_INVALID_ARG, "t out of the block");
    p.width = 8;
    helios_world *bad = NULL;
    CHECK(helios_world_new(s, &p, &bad) == HELIOS_ERR_INVALID_ARG && !bad,
          "8 pixels wide is refused");
    CHECK(strstr(helios_session_error(s), "8x32") != NULL, "message: %s", helios_session_error(s));
    p.width = 64, p.prompt = "a cat";
    CHECK(helios_world_new(s, &p, &bad) == HELIOS_ERR_INVALID_ARG,
          "a prompt without a world object is refused");
    free(blk);
    free(fa);
    helios_world_free(a), helios_world_free(b), helios_world_free(c);
    helios_session_free(s);
}

/* Over long runs with events: in-frame objects stay inside, the caption names each live object
 * as "size colour shape" and parses back to the same objects; memory stays put. */
static void test_invariants(void) {
    int outside = 0, unnamed = 0, misparsed = 0, changes = 0, max_n = 0;
    size_t json_cap = 0;
    for (uint64_t seed = 0; seed < 6; seed++) {
        hl_world w;
        hl_world_config c = config(seed, seed & 1 ? 64 : 48, seed & 1 ? 40 : 64);
        hl_error err = {0};
        CHECK(hl_world_init(&w, &c, &err) == HL_OK, "init: %s", err.msg);
        char last[512] = "";
        for (int f = 0; f < 3000; f++) {
            double m = c.width < c.height ? c.width : c.height;
            int live = 0;
            for (int i = 0; i < w.n; i++) {
                const hl_object *o = &w.obj[i];
                double ex = o->radius * m / c.width, ey = o->radius * m / c.height;
                if (o->state == HL_OBJ_IN && (o->x - ex < -1e-9 || o->x + ex > 1 + 1e-9 ||
                                              o->y - ey < -1e-9 || o->y + ey > 1 + 1e-9))
                    outside++;
                if (o->state == HL_OBJ_LEAVING) continue;
                live++;
                char name[96];
                snprintf(name, sizeof name, "a %s %s %s", hl_size_names[o->size],
                         hl_obj_colours[o->colour].name, hl_shape_names[o->shape]);
                if (!strstr(w.caption, name)) unnamed++;
            }
            hl_phrase ph;
            hl_phrase_parse(w.caption, &ph);
            if (ph.n_objects != live || ph.bg_colour != w.bg_colour) misparsed++;
            for (int i = 0, k = 0; i < w.n && ph.n_objects == live; i++) {
                const hl_object *o = &w.obj[i];
                if (o->state == HL_OBJ_LEAVING) continue;
                const hl_phrase_obj *p = &ph.objects[k++];
                if (p->colour != o->colour || p->shape != (int)o->shape ||
                    p->size != (int)o->size || p->motion != (int)o->motion)
                    misparsed++;
            }
            if (strcmp(last, w.caption)) changes++;
            snprintf(last, sizeof last, "%s", w.caption);
            if (w.n > max_n) max_n = w.n;
            CHECK(hl_world_truth(&w, &err) == HL_OK, "truth");
            if (f == 100) json_cap = w.json_cap;
            hl_world_step(&w);
        }
        CHECK(w.json_cap <= json_cap * 2, "truth buffer stays bounded");
        hl_world_release(&w);
    }
    CHECK(outside == 0, "%d object-frames outside the frame", outside);
    CHECK(unnamed == 0, "%d objects missing from their caption", unnamed);
    CHECK(misparsed == 0, "%d captions do not parse back to their scene", misparsed);
    CHECK(changes > 6 * 3, "captions change with the scene (%d changes)", changes);
    CHECK(max_n > 1, "scenes have several objects");
}

/* A known scene: a large red circle on black, no lighting change. */
static void test_known_scene(void) {
    hl_world w;
    hl_world_config c = config(7, 96, 64);
    c.prompt = "a large red circle drifts on a black background";
    hl_error err = {0};
    CHECK(hl_world_init(&w, &c, &err) == HL_OK, "init: %s", err.msg);
    CHECK(w.n == 1 && w.obj[0].shape == HL_CIRCLE && w.obj[0].size == HL_LARGE &&
              w.obj[0].motion == HL_DRIFT,
          "the scene of the prompt");
    CHECK(!strcmp(w.caption, "a large red circle drifts on a black background"), "caption: %s",
          w.caption);
    float *img = malloc(sizeof(float) * 3 * 96 * 64);
    hl_world_render(&w, img, 96 * 64);
    const hl_object *o = &w.obj[0];
    int cx = (int)(o->x * 96), cy = (int)(o->y * 64);
    size_t i = (size_t)cy * 96 + cx, n = 96 * 64;
    CHECK(fabsf((img[i] + 1) * 127.5f - 220) < 0.01f &&
              fabsf((img[n + i] + 1) * 127.5f - 40) < 0.01f,
          "the centre is red (%g, %g)", (img[i] + 1) * 127.5, (img[n + i] + 1) * 127.5);
    /* coverage sums to the disc's area (anti-aliasing conserves it to within a pixel's worth of
     * the perimeter), and edge pixels are mixed */
    double cover = 0;
    int mixed = 0;
    for (size_t k = 0; k < n; k++) {
        double v = ((img[k] + 1) * 127.5 - 12) / (220 - 12);
        cover += v;
        mixed += v > 0.05 && v < 0.95;
    }
    double r = o->radius * 64, area = 3.14159265 * r * r;
    CHECK(fabs(cover - area) < 0.02 * area, "covered %.1f px, disc %.1f px", cover, area);
    CHECK(mixed > 20, "anti-aliased edge (%d mixed pixels)", mixed);
    free(img);
    hl_world_release(&w);
}

/* Occlusion: where two objects overlap, the nearer one (smaller depth) is seen, whatever the
 * order of the objects. */
static void test_occlusion(void) {
    for (int flip = 0; flip < 2; flip++) {
        hl_world w;
        hl_world_config c = config(3, 64, 64);
        c.prompt = "a large red square and a large blue circle spin on a black background";
        hl_error err = {0};
        CHECK(hl_world_init(&w, &c, &err) == HL_OK, "init: %s", err.msg);
        for (int i = 0; i < 2; i++) w.obj[i].x = w.obj[i].y = 0.5;
        w.obj[0].depth = flip ? 0.8 : 0.2, w.obj[1].depth = flip ? 0.2 : 0.8;
        float *img = malloc(sizeof(float) * 3 * 64 * 64);
        hl_world_render(&w, img, 64 * 64);
        size_t i = 32 * 64 + 32, n = 64 * 64;
        int red = (img[i] + 1) * 127.5f > 200 && (img[2 * n + i] + 1) * 127.5f < 60;
        CHECK(red == !flip, "the nearer object is drawn on top (flip %d)", flip);
        free(img);
        hl_world_release(&w);
    }
}

int main(void) {
    test_determinism();
    test_invariants();
    test_known_scene();
    test_occlusion();
    return test_done("test_world");
}
