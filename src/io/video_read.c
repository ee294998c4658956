/* Image and video input through libavformat/libavcodec/libswscale (see media.h for the
 * conventions). The streaming reader (hl_video_reader_*) demuxes a file and decodes its best
 * video stream one frame per call; each frame is converted to RGB24 at its native size and
 * resized with Lanczos to the target size. The whole-file readers are its clients: they keep the
 * frames as 8-bit (all of them, or frame 0 and a ring of the newest) and expand them into the
 * float (3, F, H, W) result at the end. Any demuxer or decoder error, truncated packet or frame
 * flagged corrupt is an error. */
#include "io/media.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "core/file.h"

enum { HL_MEDIA_MAX_SIDE = 16384 };

struct hl_video_reader {
    const char *path; /* a copy, owned */
    AVFormatContext *fmt;
    AVCodecContext *dec;
    int stream;
    AVPacket *pkt;
    AVFrame *frame;
    bool image; /* one picture wanted: image size cap, no decoder threads */

    /* decoded format -> RGB24 at the native size */
    struct SwsContext *to_rgb;
    uint8_t *native[4];
    int native_ls[4];
    int native_w, native_h;
    int rgb_w, rgb_h, rgb_format, rgb_loc; /* what to_rgb was made for */
    int cs_format, cs_space, cs_range;     /* colour settings last applied to to_rgb */

    /* RGB24 native -> RGB24 target (Lanczos) */
    struct SwsContext *resize;
    uint8_t *scaled[4];
    int scaled_ls[4];

    int out_w, out_h; /* 0 until the first frame when keeping the native size */
    int src_w, src_h; /* size of the first frame */
    uint8_t *rgb;     /* the newest frame, out_h x out_w x 3 packed */
    int64_t n;        /* frames decoded */
    bool pending;     /* rgb holds frame 0, decoded by the open and not yet handed out */
    bool draining;    /* the end of the file was reached: the decoder is being drained */
    bool done;        /* no more frames */
    hl_status failed; /* a read failed: every later one fails too */
};

typedef struct hl_video_reader decoder;

void hl_video_reader_free(hl_video_reader *d) {
    if (!d) return;
    avcodec_free_context(&d->dec);
    avformat_close_input(&d->fmt);
    av_packet_free(&d->pkt);
    av_frame_free(&d->frame);
    sws_freeContext(d->to_rgb);
    sws_freeContext(d->resize);
    av_freep(&d->native[0]);
    av_freep(&d->scaled[0]);
    free(d->rgb);
    free((char *)d->path);
    free(d);
}

static hl_status corrupt(decoder *d, const char *what, int rc, hl_error *err) {
    char msg[128] = "";
    if (rc < 0) hl_media_averr(rc, msg, sizeof msg);
    const hl_status st = rc == AVERROR(ENOMEM) ? HELIOS_ERR_OOM : HELIOS_ERR_FORMAT;
    const char *sep = msg[0] ? ": " : "";
    if (d->n == 0) /* nothing decoded: as likely a wrong file as a damaged one */
        return hl_fail(err, st, "%s: corrupt, truncated or not really %s data (%s%s%s)", d->path,
                       d->dec ? d->dec->codec->name : "image/video", what, sep, msg);
    return hl_fail(err, st, "%s: corrupt or truncated data after %lld frame%s (%s%s%s)", d->path,
                   (long long)d->n, d->n == 1 ? "" : "s", what, sep, msg);
}

/* A clear message for the usual reasons a path cannot be read, before FFmpeg sees it. */
static hl_status check_file(const char *path, uint64_t max_bytes, const char *kind, hl_error *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT) return hl_fail(err, HELIOS_ERR_IO, "%s: no such file", path);
        return hl_fail(err, HELIOS_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (S_ISDIR(sb.st_mode))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: is a directory, not an image or video",
                       path);
    /* a FIFO or device would make FFmpeg block or read forever */
    if (!S_ISREG(sb.st_mode)) return hl_file_check_regular(path, err);
    if (sb.st_size == 0)
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: empty file, not an image or video", path);
    if ((uint64_t)sb.st_size > max_bytes)
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "%s: %lld bytes, more than the %llu-byte limit for %s", path,
                       (long long)sb.st_size, (unsigned long long)max_bytes, kind);
    return HL_OK;
}

static hl_status open_input(decoder *d, hl_error *err) {
    /* An image demuxer hands the whole file to the decoder as one packet: that one is capped
     * lower; videos are streamed, the cap only keeps out absurd inputs. */
    const bool image = d->image;
    HL_TRY(check_file(d->path, image ? HL_FILE_MAX_IMAGE : HL_FILE_MAX_VIDEO,
                      image ? "an image" : "a video", err));
    hl_media_ffmpeg_init();
    /* "file:" + a whitelist: the path is a local file, never a URL or a protocol such as
     * concat:; pattern_type=none: a '%' in a file name is not an image-sequence pattern. */
    size_t n = strlen(d->path) + 6;
    char *url = malloc(n);
    if (!url) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", d->path);
    snprintf(url, n, "file:%s", d->path);
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "protocol_whitelist", "file", 0);
    av_dict_set(&opts, "pattern_type", "none", 0);
    int rc = avformat_open_input(&d->fmt, url, NULL, &opts);
    av_dict_free(&opts);
    free(url);
    char msg[128];
    if (rc < 0) {
        if (rc == AVERROR(ENOENT) || rc == AVERROR(EACCES) || rc == AVERROR(EIO))
            return hl_fail(err, HELIOS_ERR_IO, "%s: %s", d->path,
                           hl_media_averr(rc, msg, sizeof msg));
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: not a recognised image or video (%s)", d->path,
                       hl_media_averr(rc, msg, sizeof msg));
    }
    rc = avformat_find_stream_info(d->fmt, NULL);
    if (rc < 0)
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: cannot read the stream information (%s)",
                       d->path, hl_media_averr(rc, msg, sizeof msg));
    const AVCodec *codec = NULL;
    rc = av_find_best_stream(d->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (rc == AVERROR_DECODER_NOT_FOUND)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "%s: no decoder for its video codec", d->path);
    if (rc < 0)
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: not an image or video (no video stream)",
                       d->path);
    d->stream = rc;
    return HL_OK;
}

static hl_status open_decoder(decoder *d, hl_error *err) {
    const AVStream *st = d->fmt->streams[d->stream];
    const AVCodec *codec = avcodec_find_decoder(st->codecpar->codec_id);
    if (!codec)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "%s: no decoder for codec %s", d->path,
                       avcodec_get_name(st->codecpar->codec_id));
    d->dec = avcodec_alloc_context3(codec);
    d->pkt = av_packet_alloc();
    d->frame = av_frame_alloc();
    if (!d->dec || !d->pkt || !d->frame)
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", d->path);
    char msg[128];
    int rc = avcodec_parameters_to_context(d->dec, st->codecpar);
    if (rc >= 0) {
        d->dec->thread_count = d->image ? 1 : 0; /* one picture: no thread start-up */
        d->dec->pkt_timebase = st->time_base;
        /* Without it decoders conceal damage and return a frame anyway: a truncated JPEG decodes
         * to a half-grey picture with no error. Explode turns what they detect into an error. */
        d->dec->err_recognition |= AV_EF_EXPLODE;
        rc = avcodec_open2(d->dec, codec, NULL);
    }
    if (rc < 0)
        return hl_fail(err, rc == AVERROR(ENOMEM) ? HELIOS_ERR_OOM : HELIOS_ERR_FORMAT,
                       "%s: cannot open the %s decoder (%s)", d->path, codec->name,
                       hl_media_averr(rc, msg, sizeof msg));
    return HL_OK;
}

/* YUV sources need the stream's matrix and range; RGB, gray and palette sources do not. */
static void set_colour(decoder *d, const AVFrame *f) {
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get((enum AVPixelFormat)f->format);
    if (!desc || (desc->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL)) ||
        desc->nb_components < 3)
        return;
    if (d->cs_format == f->format && d->cs_space == (int)f->colorspace &&
        d->cs_range == (int)f->color_range)
        return;
    const bool full = f->color_range == AVCOL_RANGE_JPEG || f->format == AV_PIX_FMT_YUVJ420P ||
                      f->format == AV_PIX_FMT_YUVJ422P || f->format == AV_PIX_FMT_YUVJ444P ||
                      f->format == AV_PIX_FMT_YUVJ440P || f->format == AV_PIX_FMT_YUVJ411P;
    /* sws_getCoefficients falls back to BT.601 for unspecified or unknown spaces. */
    const int *coefs = sws_getCoefficients((int)f->colorspace);
    sws_setColorspaceDetails(d->to_rgb, coefs, full, sws_getCoefficients(SWS_CS_DEFAULT), 1, 0,
                             1 << 16, 1 << 16);
    d->cs_format = f->format;
    d->cs_space = (int)f->colorspace;
    d->cs_range = (int)f->color_range;
}

/* Where the decoder's chroma samples sit. Unspecified means the codec's convention: centred
 * for JPEG (JFIF), left (co-sited with the even luma columns) for MPEG-2/H.264/HEVC/VP9/AV1. */
static enum AVChromaLocation chroma_loc(const decoder *d, const AVFrame *f) {
    if (f->chroma_location != AVCHROMA_LOC_UNSPECIFIED) return f->chroma_location;
    return d->dec->codec_id == AV_CODEC_ID_MJPEG ? AVCHROMA_LOC_CENTER : AVCHROMA_LOC_LEFT;
}

/* A swscale context converting f's format to RGB24 at the same size, told the chroma siting
 * (sws_getCachedContext cannot: it would assume its own default and shift the colours by up to
 * half a pixel). */
static struct SwsContext *make_to_rgb(const AVFrame *f, enum AVChromaLocation loc) {
    struct SwsContext *c = sws_alloc_context();
    if (!c) return NULL;
    av_opt_set_int(c, "srcw", f->width, 0);
    av_opt_set_int(c, "srch", f->height, 0);
    av_opt_set_int(c, "src_format", f->format, 0);
    av_opt_set_int(c, "dstw", f->width, 0);
    av_opt_set_int(c, "dsth", f->height, 0);
    av_opt_set_int(c, "dst_format", AV_PIX_FMT_RGB24, 0);
    av_opt_set_int(c, "sws_flags", SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, 0);
    /* Only along subsampled axes: the positions are in 1/256 luma pixels and would shift a
     * full-resolution (4:4:4, or 4:2:2 vertically) chroma plane by half a pixel. */
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get((enum AVPixelFormat)f->format);
    int x, y;
    if (desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB) &&
        avcodec_enum_to_chroma_pos(&x, &y, loc) == 0) {
        if (desc->log2_chroma_w > 0) av_opt_set_int(c, "src_h_chr_pos", x, 0);
        if (desc->log2_chroma_h > 0) av_opt_set_int(c, "src_v_chr_pos", y, 0);
    }
    if (sws_init_context(c, NULL, NULL) < 0) {
        sws_freeContext(c);
        return NULL;
    }
    return c;
}

/* Decoded frame -> d->native (RGB24 at the frame's size). */
static hl_status to_native_rgb(decoder *d, const AVFrame *f, hl_error *err) {
    if (f->width != d->native_w || f->height != d->native_h) {
        av_freep(&d->native[0]);
        if (av_image_alloc(d->native, d->native_ls, f->width, f->height, AV_PIX_FMT_RGB24, 64) < 0)
            return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", d->path);
        d->native_w = f->width;
        d->native_h = f->height;
    }
    const enum AVChromaLocation loc = chroma_loc(d, f);
    if (!d->to_rgb || f->width != d->rgb_w || f->height != d->rgb_h || f->format != d->rgb_format ||
        (int)loc != d->rgb_loc) {
        sws_freeContext(d->to_rgb);
        d->to_rgb = make_to_rgb(f, loc);
        if (!d->to_rgb)
            return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "%s: cannot convert pixel format %s to RGB",
                           d->path, av_get_pix_fmt_name((enum AVPixelFormat)f->format));
        d->rgb_w = f->width;
        d->rgb_h = f->height;
        d->rgb_format = f->format;
        d->rgb_loc = (int)loc;
        d->cs_format = -1; /* a new context: colour settings again */
    }
    set_colour(d, f);
    sws_scale(d->to_rgb, (const uint8_t *const *)f->data, f->linesize, 0, f->height, d->native,
              d->native_ls);
    return HL_OK;
}

static void copy_rows(uint8_t *dst, const uint8_t *src, int ls, int w, int h) {
    for (int i = 0; i < h; i++)
        memcpy(dst + (size_t)i * w * 3, src + (size_t)i * ls, (size_t)w * 3);
}

/* A decoded frame -> d->rgb at the target size. */
static hl_status convert_frame(decoder *d, const AVFrame *f, hl_error *err) {
    if (f->width <= 0 || f->height <= 0 || f->width > HL_MEDIA_MAX_SIDE ||
        f->height > HL_MEDIA_MAX_SIDE)
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: frame size %dx%d out of range", d->path,
                       f->width, f->height);
    if (d->n == 0) {
        d->src_w = f->width;
        d->src_h = f->height;
        if (d->out_w == 0) {
            d->out_w = f->width;
            d->out_h = f->height;
        }
        d->rgb = malloc((size_t)d->out_w * d->out_h * 3);
        if (!d->rgb ||
            av_image_alloc(d->scaled, d->scaled_ls, d->out_w, d->out_h, AV_PIX_FMT_RGB24, 64) < 0)
            return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", d->path);
    }
    HL_TRY(to_native_rgb(d, f, err));
    if (f->width == d->out_w && f->height == d->out_h) {
        copy_rows(d->rgb, d->native[0], d->native_ls[0], d->out_w, d->out_h);
    } else {
        d->resize = sws_getCachedContext(
            d->resize, f->width, f->height, AV_PIX_FMT_RGB24, d->out_w, d->out_h, AV_PIX_FMT_RGB24,
            SWS_LANCZOS | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
        if (!d->resize)
            return hl_fail(err, HELIOS_ERR_INTERNAL, "%s: cannot set up resizing %dx%d -> %dx%d",
                           d->path, f->width, f->height, d->out_w, d->out_h);
        sws_scale(d->resize, (const uint8_t *const *)d->native, d->native_ls, 0, f->height,
                  d->scaled, d->scaled_ls);
        copy_rows(d->rgb, d->scaled[0], d->scaled_ls[0], d->out_w, d->out_h);
    }
    d->n++;
    return HL_OK;
}

/* Reads packets until one of the video stream's has gone to the decoder, or the end of the file
 * (then the decoder is told to drain). */
static hl_status feed(decoder *d, hl_error *err) {
    for (;;) {
        int rc = av_read_frame(d->fmt, d->pkt);
        if (rc == AVERROR_EOF) {
            d->draining = true; /* drain frames the decoder still holds (threads, B-frames) */
            rc = avcodec_send_packet(d->dec, NULL);
            if (rc < 0 && rc != AVERROR_EOF) return corrupt(d, "decoding failed", rc, err);
            return HL_OK;
        }
        if (rc < 0) return corrupt(d, "reading failed", rc, err);
        if (d->pkt->stream_index != d->stream) {
            av_packet_unref(d->pkt);
            continue;
        }
        /* The demuxer marks a packet cut short by the end of the file. */
        if (d->pkt->flags & AV_PKT_FLAG_CORRUPT) {
            av_packet_unref(d->pkt);
            return corrupt(d, "a packet is cut short", 0, err);
        }
        rc = avcodec_send_packet(d->dec, d->pkt);
        av_packet_unref(d->pkt);
        if (rc < 0 && rc != AVERROR(EAGAIN)) return corrupt(d, "decoding failed", rc, err);
        return HL_OK;
    }
}

/* Decodes the next frame into d->rgb; *got = false at the end of the video. */
static hl_status decode_next(decoder *d, bool *got, hl_error *err) {
    *got = false;
    while (!d->done) {
        int rc = avcodec_receive_frame(d->dec, d->frame);
        if (rc == 0) {
            hl_status st = HL_OK;
            if ((d->frame->flags & AV_FRAME_FLAG_CORRUPT) || d->frame->decode_error_flags)
                st = corrupt(d, "the decoder flagged a damaged frame", 0, err);
            else if (d->n == INT64_MAX)
                st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: too many frames", d->path);
            else st = convert_frame(d, d->frame, err);
            av_frame_unref(d->frame);
            HL_TRY(st);
            *got = true;
            return HL_OK;
        }
        if (rc == AVERROR_EOF || (rc == AVERROR(EAGAIN) && d->draining)) break;
        if (rc != AVERROR(EAGAIN)) return corrupt(d, "decoding failed", rc, err);
        HL_TRY(feed(d, err));
    }
    d->done = true;
    return HL_OK;
}

hl_status hl_video_reader_next_rgb(hl_video_reader *d, const uint8_t **rgb, hl_error *err) {
    *rgb = NULL;
    if (d->failed != HL_OK)
        return hl_fail(err, d->failed, "%s: reading stopped at an earlier error", d->path);
    if (d->pending) {
        d->pending = false;
        *rgb = d->rgb;
        return HL_OK;
    }
    bool got;
    hl_status st = decode_next(d, &got, err);
    if (st != HL_OK) {
        d->failed = st;
        d->done = true;
        return st;
    }
    if (got) *rgb = d->rgb;
    return HL_OK;
}

/* Packed RGB24 (plane pixels) to planar floats v / 255 * 2 - 1 in float32, as diffusers'
 * VaeImageProcessor (np.float32 / 255.0, then 2x - 1); planes plane_stride apart. */
static void rgb_to_float(const uint8_t *src, size_t plane, float *dst, size_t plane_stride) {
    float lut[256];
    for (int v = 0; v < 256; v++) {
        float t = (float)v / 255.0f;
        lut[v] = 2.0f * t - 1.0f;
    }
    for (int c = 0; c < 3; c++, dst += plane_stride)
        for (size_t i = 0; i < plane; i++) dst[i] = lut[src[3 * i + c]];
}

hl_status hl_video_reader_read(hl_video_reader *d, float *x, int T, int t0, int n, int *got,
                               hl_error *err) {
    *got = 0;
    if (!x || T < 1 || t0 < 0 || n < 0 || t0 > T - n)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: %d frames from frame %d of a block of %d",
                       d->path, n, t0, T);
    const size_t plane = (size_t)d->out_w * d->out_h;
    for (int k = 0; k < n; k++) {
        const uint8_t *rgb;
        HL_TRY(hl_video_reader_next_rgb(d, &rgb, err));
        if (!rgb) break;
        rgb_to_float(rgb, plane, x + (size_t)(t0 + k) * plane, (size_t)T * plane);
        (*got)++;
    }
    return HL_OK;
}

void hl_video_reader_info(const hl_video_reader *d, hl_video_info *info) {
    memset(info, 0, sizeof *info);
    info->width = d->out_w, info->height = d->out_h;
    info->src_width = d->src_w, info->src_height = d->src_h;
    const AVStream *st = d->fmt->streams[d->stream];
    AVRational r = st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0 ? st->avg_frame_rate
                                                                            : st->r_frame_rate;
    info->fps = r.num > 0 && r.den > 0 ? av_q2d(r) : 0.0;
    info->frames = st->nb_frames > 0 ? st->nb_frames : 0;
    info->read = d->pending ? d->n - 1 : d->n;
}

static hl_status reader_open(const char *path, int width, int height, bool image,
                             hl_video_reader **out, hl_error *err) {
    *out = NULL;
    if (!path || !*path) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "empty input path");
    if (width < 0 || height < 0 || (width == 0) != (height == 0) || width > HL_MEDIA_MAX_SIDE ||
        height > HL_MEDIA_MAX_SIDE)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: target size %dx%d out of range", path,
                       width, height);
    decoder *d = calloc(1, sizeof *d);
    char *p = strdup(path);
    if (!d || !p) {
        free(d);
        free(p);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    }
    d->path = p;
    d->image = image;
    d->out_w = width;
    d->out_h = height;
    d->cs_format = -1;
    bool got = false;
    hl_status st = open_input(d, err);
    if (st == HL_OK) st = open_decoder(d, err);
    if (st == HL_OK) st = decode_next(d, &got, err); /* frame 0: its size and errors now */
    if (st == HL_OK && !got)
        st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: contains no decodable frames", path);
    if (st != HL_OK) {
        hl_video_reader_free(d);
        return st;
    }
    d->pending = true;
    *out = d;
    return HL_OK;
}

hl_status hl_video_reader_open(const char *path, int width, int height, hl_video_reader **out,
                               hl_error *err) {
    return reader_open(path, width, height, false, out, err);
}

/* ---- whole-file readers: clients of the streaming reader ------------------------------------ */

/* The 8-bit frames a whole-file read keeps: all (up to max_frames), or with tail > 0 frame 0
 * then a ring of the newest tail frames. */
typedef struct frame_store {
    uint8_t *data;
    size_t cap;    /* in frames */
    size_t fbytes; /* bytes per frame */
    int n;         /* frames stored */
    int max_frames, tail;
} frame_store;

/* Where frame k lives in the store: k, or in tail mode frame 0 then slot 1 + (k - 1) % tail. */
static size_t slot_of(const frame_store *fs, int k) {
    return fs->tail > 0 && k > 0 ? 1 + (size_t)(k - 1) % (size_t)fs->tail : (size_t)k;
}

/* Room for one more frame in the store; returns its address. */
static hl_status store_slot(frame_store *fs, const char *path, uint8_t **slot, hl_error *err) {
    if (fs->n == INT32_MAX)
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: more than %d frames", path, INT32_MAX);
    const size_t idx = slot_of(fs, fs->n);
    if (idx == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 8;
        if (fs->max_frames > 0 && cap > (size_t)fs->max_frames) cap = (size_t)fs->max_frames;
        if (fs->tail > 0 && cap > 1 + (size_t)fs->tail) cap = 1 + (size_t)fs->tail;
        if (cap > SIZE_MAX / fs->fbytes)
            return hl_fail(err, HELIOS_ERR_OOM, "%s: video too large", path);
        uint8_t *p = realloc(fs->data, cap * fs->fbytes);
        if (!p) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory (%zu frames)", path, cap);
        fs->data = p;
        fs->cap = cap;
    }
    *slot = fs->data + idx * fs->fbytes;
    return HL_OK;
}

static hl_status read_all(hl_video_reader *d, frame_store *fs, hl_error *err) {
    while (fs->max_frames <= 0 || fs->n < fs->max_frames) {
        const uint8_t *rgb;
        HL_TRY(hl_video_reader_next_rgb(d, &rgb, err));
        if (!rgb) break;
        uint8_t *slot = NULL;
        HL_TRY(store_slot(fs, d->path, &slot, err));
        memcpy(slot, rgb, fs->fbytes);
        fs->n++;
    }
    return HL_OK;
}

/* The stored 8-bit frames to float (3, F, H, W). */
static hl_status expand(const hl_video_reader *d, const frame_store *fs, hl_media *out,
                        hl_error *err) {
    const int kept = fs->tail > 0 && fs->n > 1 + fs->tail ? 1 + fs->tail : fs->n,
              skipped = fs->n - kept;
    const size_t plane = (size_t)d->out_w * d->out_h, per_c = plane * (size_t)kept;
    if (per_c > SIZE_MAX / (3 * sizeof(float)))
        return hl_fail(err, HELIOS_ERR_OOM, "%s: video too large", d->path);
    float *x = malloc(3 * per_c * sizeof(float));
    if (!x)
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory (%d frames of %dx%d)", d->path, kept,
                       d->out_w, d->out_h);
    for (int f = 0; f < kept; f++) /* frame 0, then the newest in order */
        rgb_to_float(fs->data + slot_of(fs, f == 0 ? 0 : f + skipped) * fs->fbytes, plane,
                     x + (size_t)f * plane, per_c);
    hl_video_info info;
    hl_video_reader_info(d, &info);
    out->data = x;
    out->frames = kept;
    out->skipped = skipped;
    out->height = d->out_h;
    out->width = d->out_w;
    out->src_width = d->src_w;
    out->src_height = d->src_h;
    out->fps = info.fps;
    return HL_OK;
}

static hl_status media_read(const char *path, int width, int height, int max_frames, int tail,
                            hl_media *out, hl_error *err) {
    memset(out, 0, sizeof *out);
    hl_video_reader *d;
    HL_TRY(reader_open(path, width, height, max_frames == 1, &d, err));
    frame_store fs = {
        .fbytes = (size_t)d->out_w * d->out_h * 3, .max_frames = max_frames, .tail = tail};
    hl_status st = read_all(d, &fs, err);
    if (st == HL_OK) st = expand(d, &fs, out, err);
    free(fs.data);
    hl_video_reader_free(d);
    return st;
}

hl_status hl_image_read(const char *path, int width, int height, hl_media *out, hl_error *err) {
    return media_read(path, width, height, 1, 0, out, err);
}

hl_status hl_video_read(const char *path, int width, int height, int max_frames, hl_media *out,
                        hl_error *err) {
    return media_read(path, width, height, max_frames, 0, out, err);
}

hl_status hl_video_read_tail(const char *path, int width, int height, int tail, hl_media *out,
                             hl_error *err) {
    if (tail < 1) {
        memset(out, 0, sizeof *out);
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: tail of %d frames", path ? path : "",
                       tail);
    }
    return media_read(path, width, height, 0, tail, out, err);
}

void hl_media_free(hl_media *m) {
    if (!m) return;
    free(m->data);
    memset(m, 0, sizeof *m);
}
