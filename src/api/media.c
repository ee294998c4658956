/* The public media and tensor-file API: thin wrappers over src/io (media.h, safetensors_write.h,
 * weights.h). Opening, reading and saving report to the session; a writer keeps its own error. */
#include <stdlib.h>
#include <string.h>

#include "api/session.h"
#include "io/media.h"
#include "io/safetensors_write.h"
#include "io/weights.h"

/* ---- reading --------------------------------------------------------------------------------- */

static helios_status media_out(helios_session *s, hl_status st, hl_media *m, helios_media **out) {
    if (st != HL_OK) return st;
    helios_media *r = malloc(sizeof *r);
    if (!r) {
        hl_media_free(m);
        return hl_fail(&s->err, HELIOS_ERR_OOM, "media: out of memory");
    }
    *r = (helios_media){.data = m->data,
                        .frames = m->frames,
                        .height = m->height,
                        .width = m->width,
                        .src_width = m->src_width,
                        .src_height = m->src_height,
                        .fps = m->fps,
                        .skipped = m->skipped};
    *out = r;
    return HELIOS_OK;
}

helios_status helios_image_read(helios_session *s, const char *path, int width, int height,
                                helios_media **out) {
    hl_error_clear(&s->err);
    *out = NULL;
    if (!path) return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "image: no path given");
    hl_media m = {0};
    return media_out(s, hl_image_read(path, width, height, &m, &s->err), &m, out);
}

helios_status helios_video_read(helios_session *s, const char *path, int width, int height,
                                int max_frames, helios_media **out) {
    hl_error_clear(&s->err);
    *out = NULL;
    if (!path) return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "video: no path given");
    hl_media m = {0};
    return media_out(s, hl_video_read(path, width, height, max_frames, &m, &s->err), &m, out);
}

helios_status helios_video_read_tail(helios_session *s, const char *path, int width, int height,
                                     int tail, helios_media **out) {
    hl_error_clear(&s->err);
    *out = NULL;
    if (!path) return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "video: no path given");
    hl_media m = {0};
    return media_out(s, hl_video_read_tail(path, width, height, tail, &m, &s->err), &m, out);
}

void helios_media_free(helios_media *m) {
    if (!m) return;
    free(m->data);
    free(m);
}

struct helios_video_reader {
    hl_video_reader *r;
    hl_error err;
};

helios_status helios_video_reader_open(helios_session *s, const char *path, int width, int height,
                                       helios_video_reader **out) {
    hl_error_clear(&s->err);
    *out = NULL;
    if (!path) return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "video reader: no path given");
    helios_video_reader *r = calloc(1, sizeof *r);
    if (!r) return hl_fail(&s->err, HELIOS_ERR_OOM, "video reader: out of memory");
    hl_status st = hl_video_reader_open(path, width, height, &r->r, &s->err);
    if (st != HL_OK) {
        free(r);
        return st;
    }
    *out = r;
    return HELIOS_OK;
}

helios_status helios_video_reader_read(helios_video_reader *r, float *x, int T, int t0, int n,
                                       int *got) {
    hl_error_clear(&r->err);
    *got = 0;
    return hl_video_reader_read(r->r, x, T, t0, n, got, &r->err);
}

void helios_video_reader_info(const helios_video_reader *r, helios_video_info *info) {
    hl_video_info v;
    hl_video_reader_info(r->r, &v);
    *info = (helios_video_info){.width = v.width,
                                .height = v.height,
                                .src_width = v.src_width,
                                .src_height = v.src_height,
                                .fps = v.fps,
                                .frames = v.frames,
                                .read = v.read};
}

const char *helios_video_reader_error(const helios_video_reader *r) { return r ? r->err.msg : ""; }

void helios_video_reader_free(helios_video_reader *r) {
    if (!r) return;
    hl_video_reader_free(r->r);
    free(r);
}

/* ---- writing --------------------------------------------------------------------------------- */

struct helios_video_writer {
    hl_video_writer *w; /* NULL once closed */
    hl_error err;
};

void helios_video_writer_params_init(helios_video_writer_params *p) {
    hl_video_params v;
    hl_video_params_init(&v);
    memset(p, 0, sizeof *p);
    p->fps = v.fps;
    p->crf = v.crf;
    p->truncate = v.quant == HL_QUANT_TRUNC;
}

helios_status helios_video_path_check(helios_session *s, const char *path) {
    hl_error_clear(&s->err);
    if (!path) return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "video: no path given");
    hl_video_kind kind;
    bool to_stdout;
    return hl_video_kind_of(path, &kind, &to_stdout, &s->err);
}

helios_status helios_video_writer_open(helios_session *s, const char *path,
                                       const helios_video_writer_params *p,
                                       helios_video_writer **out) {
    hl_error_clear(&s->err);
    *out = NULL;
    if (!path || !p) return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "video writer: NULL argument");
    hl_video_params v;
    hl_video_params_init(&v);
    v.fps = p->fps, v.crf = p->crf;
    v.quant = p->truncate ? HL_QUANT_TRUNC : HL_QUANT_ROUND;
    v.flush_each_write = true; /* each write is a chunk: durable in "<path>.part" */
    helios_video_writer *w = calloc(1, sizeof *w);
    if (!w) return hl_fail(&s->err, HELIOS_ERR_OOM, "video writer: out of memory");
    hl_status st = hl_video_writer_open(path, p->width, p->height, &v, &w->w, &s->err);
    if (st != HL_OK) {
        free(w);
        return st;
    }
    *out = w;
    return HELIOS_OK;
}

helios_status helios_video_writer_write(helios_video_writer *w, const float *x, int T, int t0,
                                        int n) {
    hl_error_clear(&w->err);
    if (!w->w) return hl_fail(&w->err, HELIOS_ERR_INVALID_ARG, "video writer: already closed");
    if (!x) return hl_fail(&w->err, HELIOS_ERR_INVALID_ARG, "video writer: no frames");
    return hl_video_writer_write(w->w, x, T, t0, n, &w->err);
}

helios_status helios_video_writer_close(helios_video_writer *w) {
    hl_error_clear(&w->err);
    if (!w->w) return hl_fail(&w->err, HELIOS_ERR_INVALID_ARG, "video writer: already closed");
    hl_video_writer *v = w->w;
    w->w = NULL; /* hl_video_writer_close frees it, also on failure */
    return hl_video_writer_close(v, &w->err);
}

const char *helios_video_writer_error(const helios_video_writer *w) { return w ? w->err.msg : ""; }

void helios_video_writer_free(helios_video_writer *w) {
    if (!w) return;
    hl_video_writer_discard(w->w); /* NULL when closed */
    free(w);
}

/* ---- tensor files ---------------------------------------------------------------------------- */

helios_status helios_tensor_save(helios_session *s, const char *path, const char *name,
                                 const float *data, int ndim, const int64_t *shape,
                                 const char *const *metadata) {
    hl_error_clear(&s->err);
    if (!path || !name || !data || (ndim > 0 && !shape))
        return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "tensor_save: NULL argument");
    if (ndim < 0 || ndim > HL_MAX_DIMS)
        return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "tensor_save: %d dims (at most %d)", ndim,
                       HL_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "tensor_save: negative dim %d", i);
    hl_st_entry e = {name, hl_tensor_make((void *)data, HL_F32, ndim, shape)};
    return hl_st_write(path, &e, 1, metadata, &s->err);
}

helios_status helios_checkpoint_list(helios_session *s, const char *path, helios_tensor_fn fn,
                                     void *user, int *n_files) {
    hl_error_clear(&s->err);
    if (n_files) *n_files = 0;
    if (!path) return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "checkpoint: no path given");
    hl_weights *w;
    HL_TRY(hl_weights_open(path, &w, &s->err));
    if (n_files) *n_files = (int)w->n_files;
    hl_status st = HL_OK;
    for (size_t f = 0; st == HL_OK && f < w->n_files; f++) {
        const hl_safetensors *sf = w->files[f];
        for (size_t i = 0; st == HL_OK && i < sf->n; i++) {
            const hl_st_tensor *t = &sf->tensors[i];
            helios_tensor_info info = {.name = t->name,
                                       .dtype = hl_dtype_name(t->dtype),
                                       .ndim = t->ndim,
                                       .shape = t->shape,
                                       .nbytes = t->nbytes,
                                       .file = sf->path,
                                       .file_index = (int)f,
                                       .n_files = (int)w->n_files};
            if (fn && fn(&info, user))
                st = hl_fail(&s->err, HELIOS_ERR_CANCELLED, "checkpoint: listing stopped");
        }
    }
    hl_weights_close(w);
    return st;
}
