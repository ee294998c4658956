/* The public tiny-world API: a thin wrapper over src/world. */
#include <stdlib.h>
#include <string.h>

#include "api/session.h"
#include "world/world.h"

struct helios_world {
    hl_world w;
    hl_error err;
};

void helios_world_params_init(helios_world_params *p) {
    memset(p, 0, sizeof *p);
    p->width = p->height = 256;
    p->fps = 24;
    p->max_objects = 4;
    p->events = p->camera = p->lighting = 1;
}

helios_status helios_world_new(helios_session *s, const helios_world_params *p,
                               helios_world **out) {
    hl_error_clear(&s->err);
    *out = NULL;
    if (!p) return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "world: no parameters");
    helios_world *w = calloc(1, sizeof *w);
    if (!w) return hl_fail(&s->err, HELIOS_ERR_OOM, "world: out of memory");
    hl_world_config c = {.seed = p->seed,
                         .width = p->width,
                         .height = p->height,
                         .fps = p->fps,
                         .max_objects = p->max_objects,
                         .events = p->events != 0,
                         .camera = p->camera != 0,
                         .lighting = p->lighting != 0,
                         .prompt = p->prompt};
    hl_status st = hl_world_init(&w->w, &c, &s->err);
    if (st != HL_OK) {
        hl_world_release(&w->w);
        free(w);
        return st;
    }
    *out = w;
    return HELIOS_OK;
}

int64_t helios_world_frame(const helios_world *w) { return w->w.frame; }

helios_status helios_world_render(helios_world *w, float *frames, int T, int t) {
    hl_error_clear(&w->err);
    if (!frames || T < 1 || t < 0 || t >= T)
        return hl_fail(&w->err, HELIOS_ERR_INVALID_ARG, "world_render: frame %d of a block of %d",
                       t, T);
    size_t plane = (size_t)w->w.cfg.width * w->w.cfg.height;
    hl_world_render(&w->w, frames + (size_t)t * plane, (size_t)T * plane);
    return HELIOS_OK;
}

const char *helios_world_caption(const helios_world *w) { return w->w.caption; }

const char *helios_world_truth_json(helios_world *w) {
    hl_error_clear(&w->err);
    return hl_world_truth(&w->w, &w->err) == HL_OK ? w->w.json : NULL;
}

helios_status helios_world_step(helios_world *w) {
    hl_world_step(&w->w);
    return HELIOS_OK;
}

const char *helios_world_error(const helios_world *w) { return w->err.msg; }

void helios_world_free(helios_world *w) {
    if (!w) return;
    hl_world_release(&w->w);
    free(w);
}

helios_status helios_world_write_tokenizer(helios_session *s, const char *path, int *n_pieces) {
    hl_error_clear(&s->err);
    if (n_pieces) *n_pieces = 0;
    if (!path || !path[0])
        return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "world tokenizer: no output path");
    return hl_world_tokenizer_write(path, n_pieces, &s->err);
}
