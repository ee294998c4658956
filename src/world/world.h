/* The tiny world: a procedural scene of a few simple shapes moving over a background, rendered
 * anti-aliased at any size, with a caption and the ground-truth state of every frame. It is the
 * data helios trains its tiny models on and the reference `helios eval` measures against, so
 * everything here is deterministic from the seed and costs O(1) memory per frame.
 *
 * Units: positions are fractions of the frame (x of the width, y of the height); sizes
 * (circumradius) are fractions of min(width, height); time advances one frame per step. */
#ifndef HL_WORLD_H
#define HL_WORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* ---- vocabulary (vocab.c): the words captions are made of and prompts are parsed with ---- */

typedef enum hl_shape { HL_CIRCLE, HL_SQUARE, HL_TRIANGLE, HL_STAR, HL_RING, HL_N_SHAPES } hl_shape;
typedef enum hl_size_class { HL_SMALL, HL_MEDIUM, HL_LARGE, HL_N_SIZES } hl_size_class;
typedef enum hl_motion { HL_BOUNCE, HL_ORBIT, HL_DRIFT, HL_PULSE, HL_SPIN, HL_N_MOTIONS } hl_motion;
typedef enum hl_bg_kind { HL_BG_PLAIN, HL_BG_GRADIENT, HL_BG_TEXTURE, HL_N_BG_KINDS } hl_bg_kind;

typedef struct hl_colour {
    const char *name;
    uint8_t rgb[3];
} hl_colour;

/* Object colours are saturated or light, background colours dark and muted, so that every pixel
 * can be told apart by its nearest palette entry (eval/segment.c relies on it). */
#define HL_N_OBJ_COLOURS 9
#define HL_N_BG_COLOURS 7
extern const hl_colour hl_obj_colours[HL_N_OBJ_COLOURS];
extern const hl_colour hl_bg_colours[HL_N_BG_COLOURS];
extern const char *const hl_shape_names[HL_N_SHAPES];
extern const char *const hl_size_names[HL_N_SIZES];
/* Circumradius of each size class, fraction of min(width, height). */
extern const double hl_size_radius[HL_N_SIZES];
/* Size class of a measured circumradius (the midpoints between the classes). */
hl_size_class hl_size_class_of(double radius);

/* One object a caption names: colour index (-1 none), shape, size class, motion (-1 none). */
typedef struct hl_phrase_obj {
    int colour, shape, size, motion;
} hl_phrase_obj;

#define HL_MAX_OBJECTS 6

/* What a caption says. Words outside the vocabulary are skipped, so any prompt parses;
 * n_objects counts the "[size] colour shape" phrases found. */
typedef struct hl_phrase {
    int n_objects;
    hl_phrase_obj objects[HL_MAX_OBJECTS];
    int bg_colour, bg_colour2; /* -1 when not named */
    int bg_kind;               /* -1 when not named */
    bool camera_pan, lighting;
} hl_phrase;

void hl_phrase_parse(const char *text, hl_phrase *out);

/* Every word of the vocabulary once, lowercase: first the words captions are made of (the fixed
 * texts of describe.c, hl_caption_texts, then the size, colour and shape names), then the other
 * words the parser accepts (synonyms, "texture", "panning", ...); and the punctuation characters
 * of the caption texts (","). Built from the tables themselves, so it follows them: the
 * tokenizer of the tiny models (tokenizer.c) is made from it. Fails (HELIOS_ERR_INTERNAL) only
 * if the tables outgrow the fixed sizes below. */
#define HL_WORLD_MAX_WORDS 192
#define HL_WORLD_WORD_LEN 24 /* longest word + NUL */
typedef struct hl_world_vocab {
    int n_words;
    int n_caption_words; /* words[0..n_caption_words) are the ones captions use */
    char words[HL_WORLD_MAX_WORDS][HL_WORLD_WORD_LEN];
    char punct[8]; /* NUL-terminated */
} hl_world_vocab;
hl_status hl_world_vocab_words(hl_world_vocab *v, hl_error *err);

/* ---- the tokenizer of the tiny models (tokenizer.c) ----------------------------------------- */

/* A SentencePiece unigram model (the `.model` format hl_spm_load reads; text/spm_write.h) for the
 * world's vocabulary: <pad> 0, </s> 1, <unk> 2 as umT5's; then "▁word" for every word of
 * hl_world_vocab_words (caption words first), the caption punctuation and "." as pieces of their
 * own, and the fallbacks "▁" and the single characters a-z, 0-9. The normalizer lowercases A-Z,
 * so any ASCII letters and digits tokenize without <unk> (other characters are <unk>). Every caption tokenizes into one piece
 * per word and one per punctuation mark. The bytes are the same on every run.
 * hl_world_tokenizer gives the file's bytes (malloc'ed), hl_world_tokenizer_write writes it
 * atomically; *n_pieces (may be NULL) gets the number of pieces (the embedding rows it needs). */
hl_status hl_world_tokenizer(char **buf, size_t *len, int *n_pieces, hl_error *err);
hl_status hl_world_tokenizer_write(const char *path, int *n_pieces, hl_error *err);

/* ---- the scene (scene.c) --------------------------------------------------------------------- */

typedef enum hl_obj_state { HL_OBJ_IN, HL_OBJ_ENTERING, HL_OBJ_LEAVING } hl_obj_state;

typedef struct hl_object {
    int id;
    hl_shape shape;
    int colour;
    hl_size_class size;
    hl_motion motion;
    hl_obj_state state;
    double x, y;                            /* centre, fractions of width / height */
    double vx, vy;                          /* per frame */
    double radius;                          /* current circumradius, fraction of min(w, h) */
    double angle, spin;                     /* radians, radians per frame */
    double cx, cy, orbit_r, orbit_w, phase; /* orbit centre / radius (fractions of min side) */
    double depth;                           /* larger = farther; drawn first */
} hl_object;

typedef struct hl_world_config {
    uint64_t seed;
    int width, height;
    int fps;
    int max_objects;
    bool events;        /* objects enter and leave, the background colour turns */
    bool camera;        /* may pan (random scenes: by the seed) */
    bool lighting;      /* may change slowly (random scenes: by the seed) */
    const char *prompt; /* NULL or the caption whose scene to render */
} hl_world_config;

typedef struct hl_world {
    hl_world_config cfg;
    uint64_t rng[4];
    int64_t frame;
    int next_id;
    int n; /* live objects */
    hl_object obj[HL_MAX_OBJECTS];
    hl_bg_kind bg_kind;
    int bg_colour, bg_colour2; /* palette indices (gradient: from top-left to bottom-right) */
    int bg_from;               /* during a turn: the colour it turns from, else -1 */
    double bg_mix;             /* 0..1 progress of the turn */
    double tex_phase_x, tex_phase_y, tex_vx, tex_vy;
    bool camera_pan, lighting;
    double cam_x, cam_y; /* background offset in pixels (the pan) */
    double light;        /* brightness factor */
    int64_t next_event;  /* frame of the next scene change */
    char caption[512];
    char *json; /* last truth line (grown as needed) */
    size_t json_cap;
    float *tex_row, *tex_col; /* per-frame separable texture tables */
} hl_world;

hl_status hl_world_init(hl_world *w, const hl_world_config *cfg, hl_error *err);
void hl_world_release(hl_world *w);
/* Advances one frame: physics, then (with events) scene changes. */
void hl_world_step(hl_world *w);

/* ---- rendering (render.c) -------------------------------------------------------------------- */

/* Frame `w->frame` as channel planes in [-1, 1]: r, g, b each width*height floats, plane_stride
 * apart (a (3, T, H, W) block passes T*H*W). */
void hl_world_render(hl_world *w, float *out, size_t plane_stride);

/* ---- description (describe.c) ---------------------------------------------------------------- */

/* Every fixed text hl_world_describe puts between the names (printf formats and verbs),
 * NULL-terminated: hl_world_vocab_words reads its caption words from them. */
extern const char *const hl_caption_texts[];
/* The caption of the current scene into w->caption. */
void hl_world_describe(hl_world *w);
/* The ground truth of the current frame as one JSON line (no newline) in w->json. */
hl_status hl_world_truth(hl_world *w, hl_error *err);

/* Random numbers (xoshiro256**, seeded by splitmix64): the only source of randomness. */
uint64_t hl_world_rand(hl_world *w);
double hl_world_uniform(hl_world *w, double lo, double hi);
int hl_world_randint(hl_world *w, int n); /* 0..n-1 */

#endif
