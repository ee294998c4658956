/* The writer front end: picks a backend from the path, converts float (3, T, H, W) chunks to
 * packed RGB24 frames and hands them over one by one. */
#include "io/media.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct hl_video_writer {
    hl_video_backend be;
    hl_video_params params;
    int width, height;
    int64_t frames;
    uint8_t *rgb; /* one frame, H x W x 3 */
};

/* The frame-size bound is the library's (helios.h), so a size the generator accepts is one the
 * writer accepts. */
enum { HL_VIDEO_MAX_SIDE = HELIOS_MAX_SIDE };

void hl_video_params_init(hl_video_params *p) {
    p->fps = 24;
    p->crf = 18;
    p->preset = "medium";
    p->threads = 0;
    p->quant = HL_QUANT_ROUND;
    p->flush_each_write = true;
}

static bool ends_with_ci(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    if (n < m) return false;
    for (size_t i = 0; i < m; i++)
        if (tolower((unsigned char)s[n - m + i]) != tolower((unsigned char)suffix[i])) return false;
    return true;
}

hl_status hl_video_kind_of(const char *path, hl_video_kind *kind, bool *to_stdout, hl_error *err) {
    *to_stdout = false;
    if (!path || !*path) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "empty output path");
    if (strcmp(path, "-") == 0) {
        *kind = HL_VIDEO_Y4M;
        *to_stdout = true;
        return HL_OK;
    }
    struct stat sb;
    if (path[strlen(path) - 1] == '/' || (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))) {
        *kind = HL_VIDEO_PNG_DIR;
        return HL_OK;
    }
    if (ends_with_ci(path, ".mp4")) {
        *kind = HL_VIDEO_MP4;
        return HL_OK;
    }
    if (ends_with_ci(path, ".y4m")) {
        *kind = HL_VIDEO_Y4M;
        return HL_OK;
    }
    return hl_fail(err, HELIOS_ERR_UNSUPPORTED,
                   "%s: unknown output kind (use *.mp4, *.y4m, \"-\" for Y4M on stdout, or a "
                   "directory / a path ending in '/' for PNG frames)",
                   path);
}

static hl_status check_params(const char *path, int width, int height, const hl_video_params *p,
                              hl_error *err) {
    if (width <= 0 || height <= 0 || width > HL_VIDEO_MAX_SIDE || height > HL_VIDEO_MAX_SIDE)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: frame size %dx%d out of range", path,
                       width, height);
    if (p->fps <= 0 || p->fps > 1000)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: fps %d out of range (1..1000)", path,
                       p->fps);
    if (p->crf < 0 || p->crf > 51)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: crf %d out of range (0..51)", path,
                       p->crf);
    if (p->quant != HL_QUANT_ROUND && p->quant != HL_QUANT_TRUNC)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: unknown quantization %d", path,
                       (int)p->quant);
    return HL_OK;
}

hl_status hl_video_writer_open(const char *path, int width, int height, const hl_video_params *p,
                               hl_video_writer **out, hl_error *err) {
    *out = NULL;
    hl_video_params defaults;
    hl_video_params_init(&defaults);
    if (!p) p = &defaults;
    hl_video_kind kind = HL_VIDEO_MP4;
    bool to_stdout = false;
    HL_TRY(hl_video_kind_of(path, &kind, &to_stdout, err));
    HL_TRY(check_params(path, width, height, p, err));

    hl_video_writer *w = calloc(1, sizeof *w);
    if (!w) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    w->params = *p;
    if (!w->params.preset) w->params.preset = "medium";
    w->width = width;
    w->height = height;
    w->rgb = malloc((size_t)width * height * 3);
    if (!w->rgb) {
        free(w);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    }
    hl_status st;
    switch (kind) {
    case HL_VIDEO_MP4: st = hl_video_mp4_open(path, width, height, &w->params, &w->be, err); break;
    case HL_VIDEO_Y4M:
        st = hl_video_y4m_open(path, to_stdout, width, height, &w->params, &w->be, err);
        break;
    default: st = hl_video_png_open(path, width, height, &w->params, &w->be, err); break;
    }
    if (st != HL_OK) {
        free(w->rgb);
        free(w);
        return st;
    }
    *out = w;
    return HL_OK;
}

/* Frame t of a (3, T, H, W) block to packed RGB24. */
static void frame_to_rgb(const float *x, int T, int t, int width, int height, hl_quant q,
                         uint8_t *rgb) {
    const size_t plane = (size_t)width * height, chan = (size_t)T * plane;
    const float *r = x + (size_t)t * plane, *g = r + chan, *b = g + chan;
    for (size_t i = 0; i < plane; i++) {
        rgb[3 * i + 0] = hl_video_quantize(r[i], q);
        rgb[3 * i + 1] = hl_video_quantize(g[i], q);
        rgb[3 * i + 2] = hl_video_quantize(b[i], q);
    }
}

hl_status hl_video_writer_write(hl_video_writer *w, const float *x, int T, int t0, int n,
                                hl_error *err) {
    if (!w || !x || T <= 0 || t0 < 0 || n < 0 || t0 > T - n)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "video write: frames %d..%d of a block of %d frames", t0, t0 + n - 1, T);
    for (int t = t0; t < t0 + n; t++) {
        frame_to_rgb(x, T, t, w->width, w->height, w->params.quant, w->rgb);
        HL_TRY(w->be.write(w->be.state, w->rgb, err));
        w->frames++;
    }
    if (w->params.flush_each_write && n > 0) return hl_video_writer_flush(w, err);
    return HL_OK;
}

hl_status hl_video_writer_flush(hl_video_writer *w, hl_error *err) {
    if (!w) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "video flush: no writer");
    return w->be.flush(w->be.state, err);
}

hl_status hl_video_writer_close(hl_video_writer *w, hl_error *err) {
    if (!w) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "video close: no writer");
    hl_status st = w->be.finish(w->be.state, err);
    free(w->rgb);
    free(w);
    return st;
}

void hl_video_writer_discard(hl_video_writer *w) {
    if (!w) return;
    w->be.discard(w->be.state);
    free(w->rgb);
    free(w);
}

int64_t hl_video_writer_frames(const hl_video_writer *w) { return w ? w->frames : 0; }
