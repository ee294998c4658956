/* PNG output through libavcodec's PNG encoder: single images (hl_image_write_png) and the
 * "directory of frames" video writer (frame_000000.png, ...). Each file is written as
 * "<name>.part" and renamed when complete. */
#include "io/media.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/opt.h>

/* An open PNG encoder with its frame and packet, reused for every frame of a directory. */
typedef struct png_encoder {
    AVCodecContext *ctx;
    AVFrame *frame;
    AVPacket *pkt;
} png_encoder;

static void png_encoder_free(png_encoder *e) {
    avcodec_free_context(&e->ctx);
    av_frame_free(&e->frame);
    av_packet_free(&e->pkt);
}

static hl_status png_encoder_init(png_encoder *e, int width, int height, const char *name,
                                  hl_error *err) {
    memset(e, 0, sizeof *e);
    hl_media_ffmpeg_init();
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
    if (!codec)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "%s: libavcodec has no PNG encoder", name);
    e->ctx = avcodec_alloc_context3(codec);
    e->frame = av_frame_alloc();
    e->pkt = av_packet_alloc();
    if (!e->ctx || !e->frame || !e->pkt) {
        png_encoder_free(e);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", name);
    }
    e->ctx->width = width;
    e->ctx->height = height;
    e->ctx->pix_fmt = AV_PIX_FMT_RGB24;
    e->ctx->time_base = (AVRational){1, 1};
    /* Paeth prediction: several times smaller files than the default "none" on natural images. */
    av_opt_set(e->ctx->priv_data, "pred", "paeth", 0);
    char msg[128];
    int rc = avcodec_open2(e->ctx, codec, NULL);
    if (rc >= 0) {
        e->frame->format = AV_PIX_FMT_RGB24;
        e->frame->width = width;
        e->frame->height = height;
        rc = av_frame_get_buffer(e->frame, 0);
    }
    if (rc < 0) {
        png_encoder_free(e);
        return hl_fail(err, rc == AVERROR(ENOMEM) ? HELIOS_ERR_OOM : HELIOS_ERR_INTERNAL,
                       "%s: cannot set up the PNG encoder: %s", name,
                       hl_media_averr(rc, msg, sizeof msg));
    }
    return HL_OK;
}

/* Writes data to tmp (created and locked by hl_media_part_create: another run's .part is never
 * touched) and renames it to path, the lock held throughout; on failure tmp is removed. */
static hl_status write_file(const char *tmp, const char *path, const uint8_t *data, size_t n,
                            hl_error *err) {
    int fd = hl_media_part_create(tmp, err);
    if (fd < 0) return err ? err->status : HELIOS_ERR_IO;
    hl_status st = HL_OK;
    for (size_t done = 0; done < n && st == HL_OK;) {
        ssize_t k = write(fd, data + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) st = hl_fail(err, HELIOS_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        else done += (size_t)k;
    }
    if (st == HL_OK) st = hl_media_commit(fd, tmp, path, err);
    if (st != HL_OK) unlink(tmp);
    close(fd);
    return st;
}

/* Encodes rgb and writes it to path via path.part. */
static hl_status png_encode_to(png_encoder *e, const uint8_t *rgb, const char *path,
                               hl_error *err) {
    char msg[128];
    int rc = av_frame_make_writable(e->frame);
    if (rc < 0)
        return hl_fail(err, HELIOS_ERR_OOM, "%s: %s", path, hl_media_averr(rc, msg, sizeof msg));
    const size_t row = (size_t)e->ctx->width * 3;
    for (int i = 0; i < e->ctx->height; i++)
        memcpy(e->frame->data[0] + (size_t)i * e->frame->linesize[0], rgb + i * row, row);
    rc = avcodec_send_frame(e->ctx, e->frame);
    if (rc >= 0) rc = avcodec_receive_packet(e->ctx, e->pkt);
    if (rc < 0)
        return hl_fail(err, HELIOS_ERR_INTERNAL, "%s: PNG encoding failed: %s", path,
                       hl_media_averr(rc, msg, sizeof msg));
    char *tmp = hl_media_part_name(path);
    hl_status st = tmp ? write_file(tmp, path, e->pkt->data, (size_t)e->pkt->size, err)
                       : hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    av_packet_unref(e->pkt);
    free(tmp);
    return st;
}

hl_status hl_image_write_png(const char *path, const uint8_t *rgb, int width, int height,
                             hl_error *err) {
    if (!path || !rgb || width <= 0 || height <= 0)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "PNG write: bad arguments");
    png_encoder e;
    HL_TRY(png_encoder_init(&e, width, height, path, err));
    hl_status st = png_encode_to(&e, rgb, path, err);
    png_encoder_free(&e);
    return st;
}

/* ---- the frame-directory writer ------------------------------------------------------------ */

typedef struct pngdir_state {
    png_encoder enc;
    char *dir;
    char *name; /* buffer for "<dir>/frame_NNNNNN.png" */
    size_t name_cap;
    int64_t index;
} pngdir_state;

static void pngdir_free(pngdir_state *s) {
    png_encoder_free(&s->enc);
    free(s->dir);
    free(s->name);
    free(s);
}

static hl_status pngdir_write(void *state, const uint8_t *rgb, hl_error *err) {
    pngdir_state *s = state;
    if (s->index > 999999999)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: too many frames", s->dir);
    snprintf(s->name, s->name_cap, "%s/frame_%06lld.png", s->dir, (long long)s->index);
    HL_TRY(png_encode_to(&s->enc, rgb, s->name, err));
    s->index++;
    return HL_OK;
}

static hl_status pngdir_flush(void *state, hl_error *err) {
    (void)state, (void)err; /* every frame is a complete, renamed file already */
    return HL_OK;
}

static hl_status pngdir_finish(void *state, hl_error *err) {
    (void)err;
    pngdir_free(state);
    return HL_OK;
}

/* Frames already renamed are complete files, so an abandoned directory keeps them. */
static void pngdir_discard(void *state) { pngdir_free(state); }

hl_status hl_video_png_open(const char *dir, int width, int height, const hl_video_params *p,
                            hl_video_backend *be, hl_error *err) {
    (void)p;
    pngdir_state *s = calloc(1, sizeof *s);
    if (!s) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", dir);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--; /* "out/" -> "out" */
    s->dir = strndup(dir, n);
    s->name_cap = n + 32;
    s->name = malloc(s->name_cap);
    if (!s->dir || !s->name) {
        pngdir_free(s);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", dir);
    }
    if (mkdir(s->dir, 0777) != 0 && errno != EEXIST) {
        hl_status st = hl_fail(err, HELIOS_ERR_IO, "%s: cannot create directory: %s", s->dir,
                               strerror(errno));
        pngdir_free(s);
        return st;
    }
    struct stat sb;
    if (stat(s->dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        hl_status st = hl_fail(err, HELIOS_ERR_IO, "%s: exists and is not a directory", s->dir);
        pngdir_free(s);
        return st;
    }
    hl_status st = png_encoder_init(&s->enc, width, height, s->dir, err);
    if (st != HL_OK) {
        free(s->dir);
        free(s->name);
        free(s);
        return st;
    }
    be->state = s;
    be->write = pngdir_write;
    be->flush = pngdir_flush;
    be->finish = pngdir_finish;
    be->discard = pngdir_discard;
    return HL_OK;
}
