/* The world's state and its physics: objects bounce off the walls, orbit a point, drift, grow
 * and shrink, or spin; with events, objects enter and leave through the edges and the background
 * colour turns now and then. All state is fixed-size: memory does not grow with the video. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "world/world.h"

#define TAU 6.283185307179586

/* ---- random numbers ---------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t hl_world_rand(hl_world *w) { /* xoshiro256** */
    uint64_t *s = w->rng, r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
    return r;
}

double hl_world_uniform(hl_world *w, double lo, double hi) {
    return lo + (hi - lo) * (double)(hl_world_rand(w) >> 11) * 0x1.0p-53;
}

int hl_world_randint(hl_world *w, int n) { return (int)((hl_world_rand(w) >> 33) % (uint64_t)n); }

/* ---- geometry helpers --------------------------------------------------------------------- */

static double min_side(const hl_world *w) {
    return (double)(w->cfg.width < w->cfg.height ? w->cfg.width : w->cfg.height);
}

/* Half extents of an object of circumradius r (min-side units) in frame fractions. */
static void extent(const hl_world *w, double r, double *ex, double *ey) {
    *ex = r * min_side(w) / w->cfg.width;
    *ey = r * min_side(w) / w->cfg.height;
}

/* The largest circumradius an object reaches (pulsing ones grow by 15%). */
static double max_radius(const hl_object *o) {
    return hl_size_radius[o->size] * (o->motion == HL_PULSE ? 1.15 : 1.0);
}

static double speed_of(hl_motion m, hl_world *w) {
    switch (m) {
    case HL_BOUNCE: return hl_world_uniform(w, 0.006, 0.012);
    case HL_DRIFT: return hl_world_uniform(w, 0.002, 0.004);
    default: return hl_world_uniform(w, 0.0008, 0.0016);
    }
}

static int free_colour(hl_world *w) {
    int cand[HL_N_OBJ_COLOURS], n = 0;
    for (int c = 0; c < HL_N_OBJ_COLOURS; c++) {
        bool used = false;
        for (int i = 0; i < w->n; i++) used |= w->obj[i].colour == c;
        if (!used) cand[n++] = c;
    }
    return n ? cand[hl_world_randint(w, n)] : hl_world_randint(w, HL_N_OBJ_COLOURS);
}

/* Places o (shape, colour, size, motion set) inside the frame with its motion's parameters. */
static void place(hl_world *w, hl_object *o) {
    double ex, ey, m = min_side(w);
    extent(w, max_radius(o), &ex, &ey);
    o->radius = hl_size_radius[o->size];
    o->angle = hl_world_uniform(w, 0, TAU);
    o->spin = 0;
    double dir = hl_world_uniform(w, 0, TAU), v = speed_of(o->motion, w);
    o->vx = v * cos(dir), o->vy = v * sin(dir);
    o->phase = hl_world_uniform(w, 0, TAU);
    if (o->motion == HL_SPIN)
        o->spin = (hl_world_randint(w, 2) ? 1 : -1) * hl_world_uniform(w, 0.03, 0.08);
    if (o->motion == HL_PULSE) o->orbit_w = hl_world_uniform(w, 0.05, 0.09);
    if (o->motion == HL_ORBIT) {
        o->orbit_r = hl_world_uniform(w, 0.10, 0.22);
        double fit_x = (0.5 - ex) * w->cfg.width / m, fit_y = (0.5 - ey) * w->cfg.height / m;
        if (o->orbit_r > fit_x)
            o->orbit_r = fit_x > 0 ? fit_x : 0; /* the whole orbit stays in the frame */
        if (o->orbit_r > fit_y) o->orbit_r = fit_y > 0 ? fit_y : 0;
        double ox = o->orbit_r * m / w->cfg.width, oy = o->orbit_r * m / w->cfg.height;
        double hx = 0.5 - ex - ox, hy = 0.5 - ey - oy;
        if (hx < 0) hx = 0;
        if (hy < 0) hy = 0;
        o->cx = 0.5 + hl_world_uniform(w, -hx, hx), o->cy = 0.5 + hl_world_uniform(w, -hy, hy);
        o->orbit_w = (hl_world_randint(w, 2) ? 1 : -1) * hl_world_uniform(w, 0.02, 0.04);
        o->x = o->cx + ox * cos(o->phase), o->y = o->cy + oy * sin(o->phase);
    } else {
        o->x = ex < 0.5 ? hl_world_uniform(w, ex, 1 - ex) : 0.5;
        o->y = ey < 0.5 ? hl_world_uniform(w, ey, 1 - ey) : 0.5;
    }
}

static hl_object *add_object(hl_world *w, int colour, int shape, int size, int motion) {
    if (w->n >= HL_MAX_OBJECTS) return NULL;
    hl_object *o = &w->obj[w->n++];
    memset(o, 0, sizeof *o);
    o->id = w->next_id++;
    o->colour = colour >= 0 ? colour : free_colour(w);
    o->shape = shape >= 0 ? (hl_shape)shape : (hl_shape)hl_world_randint(w, HL_N_SHAPES);
    o->size = size >= 0 ? (hl_size_class)size : (hl_size_class)hl_world_randint(w, HL_N_SIZES);
    o->motion = motion >= 0 ? (hl_motion)motion : (hl_motion)hl_world_randint(w, HL_N_MOTIONS);
    o->depth = hl_world_uniform(w, 0, 1);
    o->state = HL_OBJ_IN;
    place(w, o);
    return o;
}

static int other_bg(hl_world *w, int not1, int not2) {
    for (;;) {
        int c = hl_world_randint(w, HL_N_BG_COLOURS);
        if (c != not1 && c != not2) return c;
    }
}

static void schedule_event(hl_world *w) {
    w->next_event = w->frame + (int64_t)(hl_world_uniform(w, 4.0, 9.0) * w->cfg.fps);
}

/* ---- set-up ------------------------------------------------------------------------------- */

static void setup_random(hl_world *w) {
    int n = 1 + hl_world_randint(w, w->cfg.max_objects < 3 ? w->cfg.max_objects : 3);
    for (int i = 0; i < n; i++) add_object(w, -1, -1, -1, -1);
    int k = hl_world_randint(w, 10);
    w->bg_kind = k < 4 ? HL_BG_PLAIN : k < 7 ? HL_BG_GRADIENT : HL_BG_TEXTURE;
    w->bg_colour = hl_world_randint(w, HL_N_BG_COLOURS);
    w->bg_colour2 = other_bg(w, w->bg_colour, -1);
    w->camera_pan = w->cfg.camera && w->bg_kind != HL_BG_PLAIN && hl_world_randint(w, 10) < 3;
    w->lighting = w->cfg.lighting && hl_world_randint(w, 10) < 3;
}

static hl_status setup_prompt(hl_world *w, hl_error *err) {
    hl_phrase ph;
    hl_phrase_parse(w->cfg.prompt, &ph);
    if (ph.n_objects == 0)
        return hl_fail(
            err, HELIOS_ERR_INVALID_ARG,
            "world: the prompt \"%s\" names no object of the world (shapes: circle, square, "
            "triangle, star, ring)",
            w->cfg.prompt);
    for (int i = 0; i < ph.n_objects; i++) {
        const hl_phrase_obj *p = &ph.objects[i];
        add_object(w, p->colour, p->shape, p->size >= 0 ? p->size : HL_MEDIUM, p->motion);
    }
    w->bg_kind = ph.bg_kind >= 0 ? (hl_bg_kind)ph.bg_kind : HL_BG_PLAIN;
    w->bg_colour = ph.bg_colour >= 0 ? ph.bg_colour : hl_world_randint(w, HL_N_BG_COLOURS);
    w->bg_colour2 = ph.bg_colour2 >= 0 ? ph.bg_colour2 : other_bg(w, w->bg_colour, -1);
    w->camera_pan = ph.camera_pan && w->bg_kind != HL_BG_PLAIN;
    w->lighting = ph.lighting;
    return HL_OK;
}

hl_status hl_world_init(hl_world *w, const hl_world_config *cfg, hl_error *err) {
    memset(w, 0, sizeof *w);
    w->cfg = *cfg;
    if (cfg->width < 16 || cfg->height < 16 || cfg->width > 8192 || cfg->height > 8192)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "world: size %dx%d (each side 16..8192 pixels)",
                       cfg->width, cfg->height);
    if (cfg->fps < 1 || cfg->fps > 1000)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "world: fps %d (1..1000)", cfg->fps);
    if (cfg->max_objects < 1 || cfg->max_objects > HL_MAX_OBJECTS)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "world: max_objects %d (1..%d)",
                       cfg->max_objects, HL_MAX_OBJECTS);
    w->cfg.prompt = NULL; /* not kept: the caller's string */
    uint64_t x = cfg->seed;
    for (int i = 0; i < 4; i++) w->rng[i] = splitmix64(&x);
    w->next_id = 1;
    w->bg_from = -1;
    w->bg_mix = 1;
    if (cfg->prompt) {
        w->cfg.events = false;
        w->cfg.prompt = cfg->prompt;
        hl_status st = setup_prompt(w, err);
        w->cfg.prompt = NULL;
        if (st != HL_OK) return st;
    } else {
        setup_random(w);
    }
    double m = min_side(w);
    w->tex_phase_x = hl_world_uniform(w, 0, TAU), w->tex_phase_y = hl_world_uniform(w, 0, TAU);
    w->tex_vx = hl_world_uniform(w, -0.004, 0.004) * m,
    w->tex_vy = hl_world_uniform(w, -0.004, 0.004) * m;
    w->light = 1;
    w->tex_row = malloc(sizeof(float) * (size_t)(cfg->width + cfg->height));
    if (!w->tex_row) return hl_fail(err, HELIOS_ERR_OOM, "world: out of memory");
    w->tex_col = w->tex_row + cfg->width;
    schedule_event(w);
    hl_world_describe(w);
    return HL_OK;
}

void hl_world_release(hl_world *w) {
    free(w->tex_row);
    free(w->json);
    w->tex_row = w->tex_col = NULL;
    w->json = NULL;
}

/* ---- physics ------------------------------------------------------------------------------ */

static void bounce_walls(hl_object *o, double ex, double ey) {
    if (o->x < ex) o->x = 2 * ex - o->x, o->vx = fabs(o->vx);
    if (o->x > 1 - ex) o->x = 2 * (1 - ex) - o->x, o->vx = -fabs(o->vx);
    if (o->y < ey) o->y = 2 * ey - o->y, o->vy = fabs(o->vy);
    if (o->y > 1 - ey) o->y = 2 * (1 - ey) - o->y, o->vy = -fabs(o->vy);
    if (ex >= 0.5) o->x = 0.5; /* an object wider than the frame stays centred */
    if (ey >= 0.5) o->y = 0.5;
}

static void move(hl_world *w, hl_object *o) {
    double ex, ey, m = min_side(w);
    extent(w, max_radius(o), &ex, &ey);
    o->angle = fmod(o->angle + o->spin, TAU);
    if (o->motion == HL_PULSE) {
        o->phase = fmod(o->phase + o->orbit_w, TAU);
        o->radius = hl_size_radius[o->size] * (1 + 0.15 * sin(o->phase));
    }
    if (o->state == HL_OBJ_IN && o->motion == HL_ORBIT) {
        o->phase = fmod(o->phase + o->orbit_w, TAU);
        o->x = o->cx + o->orbit_r * m / w->cfg.width * cos(o->phase);
        o->y = o->cy + o->orbit_r * m / w->cfg.height * sin(o->phase);
        return;
    }
    o->x += o->vx, o->y += o->vy;
    if (o->state == HL_OBJ_IN) {
        bounce_walls(o, ex, ey);
    } else if (o->state == HL_OBJ_ENTERING) {
        if (o->x >= ex && o->x <= 1 - ex && o->y >= ey && o->y <= 1 - ey) {
            o->state = HL_OBJ_IN;
            if (o->motion == HL_ORBIT) { /* orbit around where it came in */
                double ox = o->orbit_r * m / w->cfg.width, oy = o->orbit_r * m / w->cfg.height;
                o->cx = o->x - ox * cos(o->phase), o->cy = o->y - oy * sin(o->phase);
                if (o->cx - ox < ex || o->cx + ox > 1 - ex || o->cy - oy < ey ||
                    o->cy + oy > 1 - ey)
                    o->motion = HL_BOUNCE;
            }
        }
    }
}

/* An object comes in through a random edge, moving inwards. */
static void event_enter(hl_world *w) {
    hl_object *o = add_object(w, -1, -1, -1, -1);
    if (!o) return;
    if (o->motion == HL_ORBIT) o->orbit_r = 0.1;
    double ex, ey, v = hl_world_uniform(w, 0.006, 0.010);
    extent(w, max_radius(o), &ex, &ey);
    int side = hl_world_randint(w, 4);
    double along = hl_world_uniform(w, 0.25, 0.75);
    o->x = side == 0 ? -ex : side == 1 ? 1 + ex : along;
    o->y = side == 2 ? -ey : side == 3 ? 1 + ey : along;
    o->vx = side == 0 ? v : side == 1 ? -v : 0;
    o->vy = side == 2 ? v : side == 3 ? -v : 0;
    if (o->motion == HL_BOUNCE) o->vx += side >= 2 ? v / 2 : 0, o->vy += side < 2 ? v / 2 : 0;
    o->state = HL_OBJ_ENTERING;
}

/* An object leaves through the nearest edge. */
static void event_leave(hl_world *w) {
    int cand[HL_MAX_OBJECTS], n = 0;
    for (int i = 0; i < w->n; i++)
        if (w->obj[i].state == HL_OBJ_IN) cand[n++] = i;
    if (n < 2) return; /* the scene never empties */
    hl_object *o = &w->obj[cand[hl_world_randint(w, n)]];
    double v = hl_world_uniform(w, 0.006, 0.010), d[4] = {o->x, 1 - o->x, o->y, 1 - o->y};
    int side = 0;
    for (int k = 1; k < 4; k++)
        if (d[k] < d[side]) side = k;
    o->vx = side == 0 ? -v : side == 1 ? v : 0;
    o->vy = side == 2 ? -v : side == 3 ? v : 0;
    o->state = HL_OBJ_LEAVING;
}

static void event_turn(hl_world *w) {
    w->bg_from = w->bg_colour;
    w->bg_colour = other_bg(w, w->bg_colour, w->bg_kind == HL_BG_GRADIENT ? w->bg_colour2 : -1);
    w->bg_mix = 0;
}

void hl_world_step(hl_world *w) {
    w->frame++;
    for (int i = 0; i < w->n; i++) move(w, &w->obj[i]);
    /* objects that have left are removed (order kept: ids stay sorted) */
    int k = 0;
    for (int i = 0; i < w->n; i++) {
        const hl_object *o = &w->obj[i];
        double ex, ey;
        extent(w, max_radius(o), &ex, &ey);
        bool gone = o->state == HL_OBJ_LEAVING &&
                    (o->x < -ex || o->x > 1 + ex || o->y < -ey || o->y > 1 + ey);
        if (!gone) w->obj[k++] = *o;
    }
    w->n = k;
    if (w->bg_from >= 0) {
        w->bg_mix += 1.0 / w->cfg.fps; /* a turn takes one second */
        if (w->bg_mix >= 1) w->bg_mix = 1, w->bg_from = -1;
    }
    double t = (double)w->frame / w->cfg.fps, m = min_side(w);
    if (w->camera_pan) {
        w->cam_x = 0.25 * m * sin(TAU * t / 20.0);
        w->cam_y = 0.10 * m * sin(TAU * t / 13.0);
    }
    if (w->lighting) w->light = 1 + 0.15 * sin(TAU * t / 16.0);
    w->tex_phase_x = fmod(w->tex_phase_x + w->tex_vx * TAU / m, TAU);
    w->tex_phase_y = fmod(w->tex_phase_y + w->tex_vy * TAU / m, TAU);
    if (w->cfg.events && w->frame >= w->next_event) {
        int r = hl_world_randint(w, 10), live = 0;
        for (int i = 0; i < w->n; i++) live += w->obj[i].state != HL_OBJ_LEAVING;
        if (r < 4 && w->n < w->cfg.max_objects) event_enter(w);
        else if (r < 7 && live > 1) event_leave(w);
        else if (w->bg_from < 0) event_turn(w);
        schedule_event(w);
    }
    hl_world_describe(w);
}
