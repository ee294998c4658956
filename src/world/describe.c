/* Words from the state: the caption of a scene and the ground-truth JSON line of a frame. The
 * caption is built only from the vocabulary in vocab.c, so hl_phrase_parse reads it back. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "world/world.h"

/* Every fixed text of a caption: hl_world_describe writes these and the names of vocab.c only.
 * hl_caption_texts lists them for the tokenizer's vocabulary (hl_world_vocab_words), so a text
 * changed here changes the vocabulary with it. */
#define VERBS_ONE "bounces", "orbits", "drifts", "grows and shrinks", "spins"
#define VERBS_MANY "bounce", "orbit", "drift", "grow and shrink", "spin"
#define CAP_OBJECT "%sa %s %s %s" /* separator, size, colour, shape */
#define CAP_COMMA ", "
#define CAP_AND " and "
#define CAP_VERB " %s"
#define CAP_GRADIENT " on a %s and %s gradient background"
#define CAP_PLAIN " on a %s%s background"
#define CAP_TEXTURED " textured"
#define CAP_LIGHT " in changing light"
#define CAP_PAN " as the camera pans"

static const char *const verb_one[HL_N_MOTIONS] = {VERBS_ONE};
static const char *const verb_many[HL_N_MOTIONS] = {VERBS_MANY};

const char *const hl_caption_texts[] = {CAP_OBJECT,   CAP_COMMA, CAP_AND,      CAP_VERB,
                                        CAP_GRADIENT, CAP_PLAIN, CAP_TEXTURED, CAP_LIGHT,
                                        CAP_PAN,      VERBS_ONE, VERBS_MANY,   NULL};

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void put(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *s, const char *fmt, ...) {
    if (s->n >= s->cap) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(s->p + s->n, s->cap - s->n, fmt, ap);
    va_end(ap);
    if (k > 0) s->n += (size_t)k;
    if (s->n >= s->cap) s->n = s->cap; /* truncated; the caller grows and retries */
}

void hl_world_describe(hl_world *w) {
    sbuf s = {w->caption, 0, sizeof w->caption};
    const hl_object *live[HL_MAX_OBJECTS];
    int n = 0;
    for (int i = 0; i < w->n; i++)
        if (w->obj[i].state != HL_OBJ_LEAVING) live[n++] = &w->obj[i];
    bool same = true;
    for (int i = 1; i < n; i++) same &= live[i]->motion == live[0]->motion;
    for (int i = 0; i < n; i++) {
        const hl_object *o = live[i];
        put(&s, CAP_OBJECT,
            i == 0       ? ""
            : i == n - 1 ? CAP_AND
                         : CAP_COMMA,
            hl_size_names[o->size], hl_obj_colours[o->colour].name, hl_shape_names[o->shape]);
        if (!same) put(&s, CAP_VERB, verb_one[o->motion]);
    }
    if (same && n)
        put(&s, CAP_VERB, n == 1 ? verb_one[live[0]->motion] : verb_many[live[0]->motion]);
    const char *c1 = hl_bg_colours[w->bg_colour].name;
    if (w->bg_kind == HL_BG_GRADIENT) put(&s, CAP_GRADIENT, c1, hl_bg_colours[w->bg_colour2].name);
    else put(&s, CAP_PLAIN, c1, w->bg_kind == HL_BG_TEXTURE ? CAP_TEXTURED : "");
    if (w->lighting) put(&s, CAP_LIGHT);
    if (w->camera_pan) put(&s, CAP_PAN);
}

static const char *const state_names[] = {"in", "entering", "leaving"};
static const char *const motion_names[HL_N_MOTIONS] = {"bounce", "orbit", "drift", "pulse", "spin"};
static const char *const bg_kind_names[HL_N_BG_KINDS] = {"plain", "gradient", "texture"};

static void put_rgb(sbuf *s, const uint8_t rgb[3]) { put(s, "[%d,%d,%d]", rgb[0], rgb[1], rgb[2]); }

static void truth_line(const hl_world *w, sbuf *s) {
    put(s,
        "{\"frame\":%lld,\"time\":%.4f,\"seed\":%llu,\"width\":%d,\"height\":%d,\"caption\":\"%"
        "s\",",
        (long long)w->frame, (double)w->frame / w->cfg.fps, (unsigned long long)w->cfg.seed,
        w->cfg.width, w->cfg.height, w->caption);
    put(s, "\"background\":{\"kind\":\"%s\",\"colour\":\"%s\",\"rgb\":", bg_kind_names[w->bg_kind],
        hl_bg_colours[w->bg_colour].name);
    put_rgb(s, hl_bg_colours[w->bg_colour].rgb);
    if (w->bg_kind == HL_BG_GRADIENT) {
        put(s, ",\"colour2\":\"%s\",\"rgb2\":", hl_bg_colours[w->bg_colour2].name);
        put_rgb(s, hl_bg_colours[w->bg_colour2].rgb);
    }
    if (w->bg_from >= 0)
        put(s, ",\"turning_from\":\"%s\",\"turn\":%.3f", hl_bg_colours[w->bg_from].name, w->bg_mix);
    put(s, "},\"camera\":{\"pan\":%s,\"x\":%.3f,\"y\":%.3f},\"light\":%.4f,\"objects\":[",
        w->camera_pan ? "true" : "false", w->cam_x, w->cam_y, w->light);
    for (int i = 0; i < w->n; i++) {
        const hl_object *o = &w->obj[i];
        put(s, "%s{\"id\":%d,\"shape\":\"%s\",\"colour\":\"%s\",\"rgb\":", i ? "," : "", o->id,
            hl_shape_names[o->shape], hl_obj_colours[o->colour].name);
        put_rgb(s, hl_obj_colours[o->colour].rgb);
        put(s,
            ",\"size\":\"%s\",\"radius\":%.5f,\"x\":%.5f,\"y\":%.5f,\"angle\":%.4f,\"depth\":%.4f,"
            "\"motion\":\"%s\",\"state\":\"%s\"}",
            hl_size_names[o->size], o->radius, o->x, o->y, o->angle, o->depth,
            motion_names[o->motion], state_names[o->state]);
    }
    put(s, "]}");
}

hl_status hl_world_truth(hl_world *w, hl_error *err) {
    for (;;) {
        if (!w->json) {
            size_t cap = w->json_cap ? w->json_cap : 2048;
            if (!(w->json = malloc(cap)))
                return hl_fail(err, HELIOS_ERR_OOM, "world: out of memory");
            w->json_cap = cap;
        }
        sbuf s = {w->json, 0, w->json_cap};
        truth_line(w, &s);
        if (s.n < s.cap) return HL_OK;
        free(w->json);
        w->json = NULL;
        w->json_cap *= 2;
    }
}
