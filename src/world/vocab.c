/* The world's vocabulary: palettes, shape / size / motion words, and the lenient caption parser
 * that both the world (a scene from a prompt) and the evaluator (what a prompt asks for) use. */
#include <ctype.h>
#include <string.h>

#include "world/world.h"

const hl_colour hl_obj_colours[HL_N_OBJ_COLOURS] = {
    {"red", {220, 40, 40}},     {"orange", {245, 140, 30}}, {"yellow", {240, 220, 50}},
    {"green", {60, 200, 70}},   {"cyan", {50, 210, 230}},   {"blue", {50, 100, 240}},
    {"purple", {160, 70, 220}}, {"pink", {245, 130, 200}},  {"white", {240, 240, 240}},
};

const hl_colour hl_bg_colours[HL_N_BG_COLOURS] = {
    {"black", {12, 12, 14}},      {"dark grey", {60, 60, 66}}, {"navy", {20, 28, 90}},
    {"dark green", {22, 75, 40}}, {"maroon", {90, 22, 35}},    {"brown", {95, 62, 30}},
    {"teal", {18, 82, 88}},
};

const char *const hl_shape_names[HL_N_SHAPES] = {"circle", "square", "triangle", "star", "ring"};
const char *const hl_size_names[HL_N_SIZES] = {"small", "medium", "large"};
const double hl_size_radius[HL_N_SIZES] = {0.06, 0.10, 0.15};

hl_size_class hl_size_class_of(double radius) {
    if (radius < 0.5 * (hl_size_radius[0] + hl_size_radius[1])) return HL_SMALL;
    if (radius < 0.5 * (hl_size_radius[1] + hl_size_radius[2])) return HL_MEDIUM;
    return HL_LARGE;
}

/* Word tables: the first word of each row is what captions use; the others are accepted. */
typedef struct word_row {
    int value;
    const char *words[6];
} word_row;

static const word_row shape_words[] = {
    {HL_CIRCLE, {"circle", "circles", "ball", "balls", "disc", "dot"}},
    {HL_SQUARE, {"square", "squares", "box", "boxes", "block"}},
    {HL_TRIANGLE, {"triangle", "triangles"}},
    {HL_STAR, {"star", "stars"}},
    {HL_RING, {"ring", "rings", "donut", "hoop"}},
};
static const word_row size_words[] = {
    {HL_SMALL, {"small", "tiny", "little"}},
    {HL_MEDIUM, {"medium"}},
    {HL_LARGE, {"large", "big", "huge"}},
};
static const word_row motion_words[] = {
    {HL_BOUNCE, {"bounce", "bounces", "bouncing"}},
    {HL_ORBIT, {"orbit", "orbits", "orbiting", "circling"}},
    {HL_DRIFT, {"drift", "drifts", "drifting", "floats", "float"}},
    {HL_PULSE, {"grow", "grows", "shrink", "shrinks", "pulse", "pulses"}},
    {HL_SPIN, {"spin", "spins", "spinning", "rotate", "rotates", "rotating"}},
};

/* Other words the parser knows. */
static const char *const background_words[] = {"background", "gradient", "textured", "texture"};
static const char *const pan_words[] = {"pans", "pan", "panning"};
static const char *const light_words[] = {"light", "lighting"};
static const char grey_alias[] = "gray"; /* accepted for the "grey" of "dark grey" */

#define COUNT(a) (int)(sizeof(a) / sizeof(a)[0])

static bool in_list(const char *const *list, int n, const char *w) {
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], w)) return true;
    return false;
}

static int lookup(const word_row *rows, int n, const char *w) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 6 && rows[i].words[k]; k++)
            if (!strcmp(rows[i].words[k], w)) return rows[i].value;
    return -1;
}

/* A colour named by words[i] (and words[i+1] for two-word names); *used = words consumed. */
static int colour_at(char words[][24], int n, int i, bool *is_bg, int *used) {
    const char *second = i + 1 < n ? words[i + 1] : "";
    for (int c = 0; c < HL_N_BG_COLOURS; c++) {
        char a[24] = "", b[24] = "";
        const char *sp = strchr(hl_bg_colours[c].name, ' ');
        if (sp) {
            memcpy(a, hl_bg_colours[c].name, (size_t)(sp - hl_bg_colours[c].name));
            strcpy(b, sp + 1);
        } else {
            strcpy(a, hl_bg_colours[c].name);
        }
        bool gray = !strcmp(b, "grey") && !strcmp(second, grey_alias);
        if (!strcmp(words[i], a) && (!b[0] || !strcmp(second, b) || gray)) {
            *is_bg = true, *used = b[0] ? 2 : 1;
            return c;
        }
    }
    for (int c = 0; c < HL_N_OBJ_COLOURS; c++)
        if (!strcmp(words[i], hl_obj_colours[c].name)) {
            *is_bg = false, *used = 1;
            return c;
        }
    return -1;
}

void hl_phrase_parse(const char *text, hl_phrase *out) {
    memset(out, 0, sizeof *out);
    out->bg_colour = out->bg_colour2 = out->bg_kind = -1;
    enum { MAXW = 128 };
    char words[MAXW][24];
    int n = 0;
    for (const char *p = text ? text : ""; *p && n < MAXW;) {
        while (*p && !isalpha((unsigned char)*p)) p++;
        int k = 0;
        while (isalpha((unsigned char)*p)) {
            if (k < 23) words[n][k++] = (char)tolower((unsigned char)*p);
            p++;
        }
        if (k) words[n][k] = 0, n++;
    }
    int size = -1, colour = -1, bg_pending[2], n_bg = 0;
    for (int i = 0; i < n; i++) {
        const char *w = words[i];
        bool is_bg = false;
        int used = 1, c = colour_at(words, n, i, &is_bg, &used), v;
        if (c >= 0) {
            if (is_bg) {
                if (n_bg < 2) bg_pending[n_bg++] = c;
            } else {
                colour = c;
            }
            i += used - 1;
        } else if ((v = lookup(size_words, 3, w)) >= 0) {
            size = v;
        } else if ((v = lookup(shape_words, HL_N_SHAPES, w)) >= 0) {
            if (out->n_objects < HL_MAX_OBJECTS)
                out->objects[out->n_objects++] = (hl_phrase_obj){colour, v, size, -1};
            size = colour = -1;
        } else if ((v = lookup(motion_words, HL_N_MOTIONS, w)) >= 0) {
            for (int o = 0; o < out->n_objects; o++)
                if (out->objects[o].motion < 0) out->objects[o].motion = v;
        } else if (in_list(background_words, COUNT(background_words), w)) {
            if (!strcmp(w, "gradient")) out->bg_kind = HL_BG_GRADIENT;
            else if (w[0] == 't') out->bg_kind = HL_BG_TEXTURE;
            else if (out->bg_kind < 0) out->bg_kind = HL_BG_PLAIN;
            if (n_bg > 0 && out->bg_colour < 0) out->bg_colour = bg_pending[0];
            if (n_bg > 1 && out->bg_colour2 < 0) out->bg_colour2 = bg_pending[1];
        } else if (in_list(pan_words, COUNT(pan_words), w)) {
            out->camera_pan = true;
        } else if (in_list(light_words, COUNT(light_words), w)) {
            out->lighting = true;
        }
    }
    /* "on a navy background" may also be written without the word "background" */
    if (out->bg_colour < 0 && n_bg > 0) out->bg_colour = bg_pending[0];
    if (out->bg_colour2 < 0 && n_bg > 1) out->bg_colour2 = bg_pending[1];
}

/* ---- the vocabulary as a word list (the tokenizer's) ------------------------------------------ */

/* Adds each word of text (runs of letters; "%s" conversions skipped) and each punctuation
 * character (not a letter, space or part of "%s") not yet listed. */
static hl_status add_text(hl_world_vocab *v, const char *text, hl_error *err) {
    for (const char *p = text; *p;) {
        if (p[0] == '%' && p[1] == 's') {
            p += 2;
        } else if (isalpha((unsigned char)*p)) {
            char word[HL_WORLD_WORD_LEN];
            size_t k = 0;
            for (; isalpha((unsigned char)*p); p++) {
                if (k + 1 == sizeof word)
                    return hl_fail(err, HELIOS_ERR_INTERNAL,
                                   "world vocabulary: word too long in '%s'", text);
                word[k++] = (char)tolower((unsigned char)*p);
            }
            word[k] = '\0';
            bool have = false;
            for (int i = 0; i < v->n_words && !have; i++) have = !strcmp(v->words[i], word);
            if (have) continue;
            if (v->n_words == HL_WORLD_MAX_WORDS)
                return hl_fail(err, HELIOS_ERR_INTERNAL, "world vocabulary: more than %d words",
                               HL_WORLD_MAX_WORDS);
            memcpy(v->words[v->n_words++], word, k + 1);
        } else {
            size_t n = strlen(v->punct);
            if (*p != ' ' && !strchr(v->punct, *p)) {
                if (n + 1 == sizeof v->punct)
                    return hl_fail(err, HELIOS_ERR_INTERNAL,
                                   "world vocabulary: too many punctuation characters");
                v->punct[n] = *p, v->punct[n + 1] = '\0';
            }
            p++;
        }
    }
    return HL_OK;
}

static hl_status add_rows(hl_world_vocab *v, const word_row *rows, int n, hl_error *err) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 6 && rows[i].words[k]; k++) HL_TRY(add_text(v, rows[i].words[k], err));
    return HL_OK;
}

hl_status hl_world_vocab_words(hl_world_vocab *v, hl_error *err) {
    memset(v, 0, sizeof *v);
    /* what captions are made of: describe.c's texts and the names */
    for (int i = 0; hl_caption_texts[i]; i++) HL_TRY(add_text(v, hl_caption_texts[i], err));
    for (int i = 0; i < HL_N_SIZES; i++) HL_TRY(add_text(v, hl_size_names[i], err));
    for (int i = 0; i < HL_N_OBJ_COLOURS; i++) HL_TRY(add_text(v, hl_obj_colours[i].name, err));
    for (int i = 0; i < HL_N_SHAPES; i++) HL_TRY(add_text(v, hl_shape_names[i], err));
    for (int i = 0; i < HL_N_BG_COLOURS; i++) HL_TRY(add_text(v, hl_bg_colours[i].name, err));
    v->n_caption_words = v->n_words;
    /* what else the parser accepts */
    HL_TRY(add_rows(v, size_words, COUNT(size_words), err));
    HL_TRY(add_rows(v, shape_words, COUNT(shape_words), err));
    HL_TRY(add_rows(v, motion_words, COUNT(motion_words), err));
    const char *const *lists[] = {background_words, pan_words, light_words};
    const int counts[] = {COUNT(background_words), COUNT(pan_words), COUNT(light_words)};
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < counts[l]; i++) HL_TRY(add_text(v, lists[l][i], err));
    HL_TRY(add_text(v, grey_alias, err));
    return HL_OK;
}
