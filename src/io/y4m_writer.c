/* YUV4MPEG2 writer (no FFmpeg needed): "YUV4MPEG2 W.. H.. F<fps>:1 Ip A1:1 C420jpeg
 * XCOLORRANGE=LIMITED\n", then per frame "FRAME\n" and the Y, U, V planes.
 *
 * C420jpeg only says where chroma sits (centred between the four luma samples, which is what
 * averaging each 2x2 block gives). It says nothing about range or matrix: ffmpeg reads an
 * untagged Y4M as yuv420p, i.e. BT.601 limited range, so that is what we write, and we add
 * ffmpeg's XCOLORRANGE=LIMITED extension to say so explicitly (other readers skip X fields).
 *
 * Each frame goes out in one write() (no stdio buffering), so a killed process leaves only
 * whole frames in "<path>.part"; flush has nothing to do. */
#include "io/media.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct y4m_state {
    int fd;            /* -1 when closed */
    char *tmp, *final; /* NULL for stdout */
    const char *name;  /* for messages: tmp or "stdout" */
    int width, height;
    size_t ysize, csize;
    uint8_t *buf; /* "FRAME\n" + Y + U + V */
} y4m_state;

static void y4m_free(y4m_state *s) {
    if (s->tmp && s->fd >= 0) close(s->fd); /* never our caller's stdout */
    free(s->tmp);
    free(s->final);
    free(s->buf);
    free(s);
}

static hl_status y4m_io_error(y4m_state *s, const char *what, hl_error *err) {
    return hl_fail(err, HELIOS_ERR_IO, "%s: %s failed: %s", s->name, what, strerror(errno));
}

/* write() all of data, retrying short writes and EINTR. */
static hl_status write_all(y4m_state *s, const void *data, size_t n, hl_error *err) {
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t k = write(s->fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return y4m_io_error(s, "write", err);
        p += k;
        n -= (size_t)k;
    }
    return HL_OK;
}

static hl_status y4m_write(void *state, const uint8_t *rgb, hl_error *err) {
    y4m_state *s = state;
    uint8_t *y = s->buf + 6, *u = y + s->ysize, *v = u + s->csize;
    hl_rgb_to_yuv420(rgb, s->width, s->height, HL_CHROMA_CENTER, y, u, v);
    return write_all(s, s->buf, 6 + s->ysize + 2 * s->csize, err);
}

static hl_status y4m_flush(void *state, hl_error *err) {
    (void)state, (void)err; /* every frame is already in the file (one write() each) */
    return HL_OK;
}

static hl_status y4m_finish(void *state, hl_error *err) {
    y4m_state *s = state;
    hl_status st = HL_OK;
    if (s->tmp) {
        /* fsync (which reports any write error) and rename while the lock is held (media.h);
         * the close after that only releases the lock. */
        st = hl_media_commit(s->fd, s->tmp, s->final, err);
        close(s->fd);
        s->fd = -1;
    }
    y4m_free(s);
    return st;
}

static void y4m_discard(void *state) {
    y4m_state *s = state;
    if (s->tmp && s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
        unlink(s->tmp);
    }
    y4m_free(s);
}

hl_status hl_video_y4m_open(const char *path, bool to_stdout, int width, int height,
                            const hl_video_params *p, hl_video_backend *be, hl_error *err) {
    y4m_state *s = calloc(1, sizeof *s);
    if (!s) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    s->fd = -1;
    s->width = width;
    s->height = height;
    s->ysize = (size_t)width * height;
    s->csize = (size_t)((width + 1) / 2) * ((height + 1) / 2);
    s->buf = malloc(6 + s->ysize + 2 * s->csize);
    if (!s->buf) {
        y4m_free(s);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    }
    memcpy(s->buf, "FRAME\n", 6);
    if (to_stdout) {
        fflush(stdout); /* whatever the program printf'ed before goes first */
        s->fd = STDOUT_FILENO;
        s->name = "stdout";
    } else {
        s->tmp = hl_media_part_name(path);
        s->final = strdup(path);
        if (!s->tmp || !s->final) {
            y4m_free(s);
            return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
        }
        s->name = s->tmp;
        s->fd = hl_media_part_create(s->tmp, err); /* not ours when it fails: left alone */
        if (s->fd < 0) {
            y4m_free(s);
            return err ? err->status : HELIOS_ERR_IO;
        }
    }
    char header[128];
    int n = snprintf(header, sizeof header,
                     "YUV4MPEG2 W%d H%d F%d:1 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED\n", width,
                     height, p->fps);
    hl_status st = write_all(s, header, (size_t)n, err);
    if (st != HL_OK) {
        y4m_discard(s);
        return st;
    }
    be->state = s;
    be->write = y4m_write;
    be->flush = y4m_flush;
    be->finish = y4m_finish;
    be->discard = y4m_discard;
    return HL_OK;
}
