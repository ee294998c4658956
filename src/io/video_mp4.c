/* MP4 writer: H.264 through libavcodec's libx264 encoder, yuv420p BT.601 limited range, muxed as
 * a fragmented MP4 ("<path>.part", renamed on close).
 *
 * Why fragmented: a plain MP4 is unplayable until its index (moov) is written at the very end,
 * so a killed run would lose everything. With frag_keyframe+empty_moov+default_base_moof the
 * header is written first and each fragment (moof + mdat) is self-describing.
 *
 * Why the encoder restarts on flush: x264 holds up to ~50 frames (lookahead, B-frames, frame
 * threads). To make the frames written so far durable, flush drains the encoder, writes its
 * packets, closes the fragment and opens a fresh encoder with the same settings -- so each
 * flushed batch (a VAE chunk) starts with an IDR frame. The fresh encoder produces the same
 * SPS/PPS (checked), and timestamps continue (pts = frame index), so the stream stays one valid
 * H.264 track: x264's decode timestamps are the input pts shifted by a constant B-frame delay,
 * which keeps them increasing across the restart.
 *
 * Reproducibility: the MP4 bytes are not a pure function of the frames. x264's output differs
 * between SIMD levels (its macroblock-tree arithmetic is not bit-exact across them), and with
 * AVX-512 at frame widths whose half is not a multiple of 64 (e.g. 320, 96, 64) its lookahead
 * reads padding it never initialised, so the bytes can change with heap contents from run to
 * run (observed with MALLOC_PERTURB_; 640-wide Helios output was stable). Every such stream is
 * valid and of the same quality; compare decoded frames with a tolerance, never MP4 hashes. */
#include "io/media.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>

typedef struct mp4_state {
    AVFormatContext *oc;
    AVStream *st;
    AVCodecContext *enc;
    const AVCodec *codec;
    AVFrame *frame;
    AVPacket *pkt;
    hl_video_params p;
    int width, height;
    int64_t next_pts;
    int64_t pending; /* frames sent to the encoder since the last drain */
    uint8_t *yuv;    /* packed planes of one frame */
    char *tmp, *final;
    bool created; /* tmp is ours (made by hl_media_part_create): remove it on failure */
    int lock_fd;  /* hl_media_part_create's descriptor: holds tmp's lock until freed; -1 none */
} mp4_state;

static hl_status av_fail(mp4_state *s, hl_status st, const char *what, int rc, hl_error *err) {
    char msg[128];
    if (rc == AVERROR(ENOMEM)) st = HELIOS_ERR_OOM;
    return hl_fail(err, st, "%s: %s: %s", s->tmp, what, hl_media_averr(rc, msg, sizeof msg));
}

static void mp4_free(mp4_state *s) {
    avcodec_free_context(&s->enc);
    av_frame_free(&s->frame);
    av_packet_free(&s->pkt);
    if (s->oc) {
        avio_closep(&s->oc->pb);
        avformat_free_context(s->oc);
    }
    free(s->yuv);
    if (s->lock_fd >= 0) close(s->lock_fd); /* after the rename or the unlink: lock released */
    free(s->tmp);
    free(s->final);
    free(s);
}

/* A libx264 encoder with the writer's settings. */
static hl_status open_encoder(mp4_state *s, AVCodecContext **out, hl_error *err) {
    AVCodecContext *c = avcodec_alloc_context3(s->codec);
    if (!c) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", s->tmp);
    c->width = s->width;
    c->height = s->height;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->time_base = (AVRational){1, s->p.fps};
    c->framerate = (AVRational){s->p.fps, 1};
    c->thread_count = s->p.threads;
    /* Tag what hl_rgb_to_yuv420 produces, so players convert back with the same matrix. */
    c->color_range = AVCOL_RANGE_MPEG;
    c->colorspace = AVCOL_SPC_SMPTE170M;
    c->color_primaries = AVCOL_PRI_SMPTE170M;
    c->color_trc = AVCOL_TRC_SMPTE170M;
    c->chroma_sample_location = AVCHROMA_LOC_LEFT; /* what players assume anyway */
    if (s->oc->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    AVDictionary *opts = NULL;
    char crf[16];
    snprintf(crf, sizeof crf, "%d", s->p.crf);
    av_dict_set(&opts, "crf", crf, 0);
    av_dict_set(&opts, "preset", s->p.preset, 0);
    int rc = avcodec_open2(c, s->codec, &opts);
    av_dict_free(&opts);
    if (rc < 0) {
        avcodec_free_context(&c);
        return av_fail(s, HELIOS_ERR_INVALID_ARG, "cannot open the libx264 encoder", rc, err);
    }
    *out = c;
    return HL_OK;
}

/* Writes every packet the encoder has ready. */
static hl_status drain_packets(mp4_state *s, hl_error *err) {
    for (;;) {
        int rc = avcodec_receive_packet(s->enc, s->pkt);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return HL_OK;
        if (rc < 0) return av_fail(s, HELIOS_ERR_INTERNAL, "H.264 encoding failed", rc, err);
        av_packet_rescale_ts(s->pkt, s->enc->time_base, s->st->time_base);
        s->pkt->stream_index = s->st->index;
        rc = av_write_frame(s->oc, s->pkt);
        av_packet_unref(s->pkt);
        if (rc < 0) return av_fail(s, HELIOS_ERR_IO, "writing a packet failed", rc, err);
    }
}

/* Sends end-of-stream to the encoder and writes everything it still holds. */
static hl_status finish_encoder(mp4_state *s, hl_error *err) {
    if (s->pending == 0) return HL_OK;
    int rc = avcodec_send_frame(s->enc, NULL);
    if (rc < 0) return av_fail(s, HELIOS_ERR_INTERNAL, "H.264 encoder flush failed", rc, err);
    HL_TRY(drain_packets(s, err));
    s->pending = 0;
    return HL_OK;
}

static hl_status mp4_write(void *state, const uint8_t *rgb, hl_error *err) {
    mp4_state *s = state;
    int rc = av_frame_make_writable(s->frame);
    if (rc < 0) return av_fail(s, HELIOS_ERR_OOM, "frame buffer", rc, err);
    /* hl_rgb_to_yuv420 writes tightly packed planes; the frame's have a padded linesize. */
    const int cw = (s->width + 1) / 2, ch = (s->height + 1) / 2;
    uint8_t *y = s->yuv, *u = y + (size_t)s->width * s->height, *v = u + (size_t)cw * ch;
    hl_rgb_to_yuv420(rgb, s->width, s->height, HL_CHROMA_LEFT, y, u, v);
    for (int i = 0; i < s->height; i++)
        memcpy(s->frame->data[0] + (size_t)i * s->frame->linesize[0], y + (size_t)i * s->width,
               (size_t)s->width);
    for (int i = 0; i < ch; i++) {
        memcpy(s->frame->data[1] + (size_t)i * s->frame->linesize[1], u + (size_t)i * cw,
               (size_t)cw);
        memcpy(s->frame->data[2] + (size_t)i * s->frame->linesize[2], v + (size_t)i * cw,
               (size_t)cw);
    }
    s->frame->pts = s->next_pts++;
    rc = avcodec_send_frame(s->enc, s->frame);
    if (rc < 0) return av_fail(s, HELIOS_ERR_INTERNAL, "H.264 encoding failed", rc, err);
    s->pending++;
    return drain_packets(s, err);
}

static hl_status mp4_flush(void *state, hl_error *err) {
    mp4_state *s = state;
    if (s->pending == 0) return HL_OK;
    HL_TRY(finish_encoder(s, err));
    /* A NULL packet makes the MP4 muxer close the current fragment now. */
    int rc = av_write_frame(s->oc, NULL);
    if (rc < 0) return av_fail(s, HELIOS_ERR_IO, "writing a fragment failed", rc, err);
    avio_flush(s->oc->pb);
    if (s->oc->pb->error < 0)
        return av_fail(s, HELIOS_ERR_IO, "write failed", s->oc->pb->error, err);

    AVCodecContext *fresh;
    HL_TRY(open_encoder(s, &fresh, err));
    const AVCodecParameters *par = s->st->codecpar;
    if (fresh->extradata_size != par->extradata_size ||
        memcmp(fresh->extradata, par->extradata, (size_t)par->extradata_size) != 0) {
        avcodec_free_context(&fresh);
        return hl_fail(err, HELIOS_ERR_INTERNAL,
                       "%s: the restarted H.264 encoder produced different stream headers", s->tmp);
    }
    avcodec_free_context(&s->enc);
    s->enc = fresh;
    return HL_OK;
}

static hl_status mp4_finish(void *state, hl_error *err) {
    mp4_state *s = state;
    hl_status st = finish_encoder(s, err);
    if (st == HL_OK) {
        int rc = av_write_trailer(s->oc);
        if (rc < 0) st = av_fail(s, HELIOS_ERR_IO, "writing the trailer failed", rc, err);
    }
    if (st == HL_OK) {
        int rc = avio_closep(&s->oc->pb);
        if (rc < 0) st = av_fail(s, HELIOS_ERR_IO, "close failed", rc, err);
    }
    if (st == HL_OK) st = hl_media_commit(s->lock_fd, s->tmp, s->final, err);
    mp4_free(s);
    return st;
}

static void mp4_discard(void *state) {
    mp4_state *s = state;
    if (s->oc) avio_closep(&s->oc->pb);
    unlink(s->tmp);
    mp4_free(s);
}

/* Output context, stream, first encoder, file and header. */
static hl_status mp4_setup(mp4_state *s, hl_error *err) {
    s->codec = avcodec_find_encoder_by_name("libx264");
    if (!s->codec)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED,
                       "%s: this libavcodec has no libx264 encoder (needed for H.264 MP4)",
                       s->final);
    int rc = avformat_alloc_output_context2(&s->oc, NULL, "mp4", NULL);
    if (rc < 0 || !s->oc) return av_fail(s, HELIOS_ERR_INTERNAL, "no MP4 muxer", rc, err);
    s->st = avformat_new_stream(s->oc, NULL);
    s->frame = av_frame_alloc();
    s->pkt = av_packet_alloc();
    s->yuv = malloc((size_t)s->width * s->height * 3 / 2);
    if (!s->st || !s->frame || !s->pkt || !s->yuv)
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", s->tmp);
    HL_TRY(open_encoder(s, &s->enc, err));
    rc = avcodec_parameters_from_context(s->st->codecpar, s->enc);
    if (rc < 0) return av_fail(s, HELIOS_ERR_INTERNAL, "stream parameters", rc, err);
    s->st->time_base = s->enc->time_base;
    s->st->avg_frame_rate = s->enc->framerate;
    s->st->r_frame_rate = s->enc->framerate;

    s->frame->format = AV_PIX_FMT_YUV420P;
    s->frame->width = s->width;
    s->frame->height = s->height;
    rc = av_frame_get_buffer(s->frame, 0);
    if (rc < 0) return av_fail(s, HELIOS_ERR_OOM, "frame buffer", rc, err);

    /* "file:" so that a name containing ':' is never taken for another protocol. */
    size_t n = strlen(s->tmp) + 6;
    char *url = malloc(n);
    if (!url) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", s->tmp);
    snprintf(url, n, "file:%s", s->tmp);
    /* created and locked first (avio_open truncates whatever is there): a second run writing
     * the same output fails here instead of writing into the first one's file. avio writes
     * through a descriptor of its own; ours only holds the lock. */
    s->lock_fd = hl_media_part_create(s->tmp, err);
    if (s->lock_fd < 0) {
        free(url);
        return err ? err->status : HELIOS_ERR_IO;
    }
    s->created = true;
    rc = avio_open(&s->oc->pb, url, AVIO_FLAG_WRITE);
    free(url);
    if (rc < 0) return av_fail(s, HELIOS_ERR_IO, "cannot create", rc, err);

    AVDictionary *mux = NULL;
    av_dict_set(&mux, "movflags", "frag_keyframe+empty_moov+default_base_moof", 0);
    rc = avformat_write_header(s->oc, &mux);
    av_dict_free(&mux);
    if (rc < 0) return av_fail(s, HELIOS_ERR_IO, "writing the MP4 header failed", rc, err);
    avio_flush(s->oc->pb);
    return HL_OK;
}

hl_status hl_video_mp4_open(const char *path, int width, int height, const hl_video_params *p,
                            hl_video_backend *be, hl_error *err) {
    if (width % 2 || height % 2)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "%s: H.264 yuv420p needs an even width and height (got %dx%d)", path, width,
                       height);
    hl_media_ffmpeg_init();
    mp4_state *s = calloc(1, sizeof *s);
    if (!s) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    s->p = *p;
    s->width = width;
    s->height = height;
    s->lock_fd = -1;
    s->tmp = hl_media_part_name(path);
    s->final = strdup(path);
    if (!s->tmp || !s->final) {
        mp4_free(s);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    }
    hl_status st = mp4_setup(s, err);
    if (st != HL_OK) {
        if (s->oc && s->oc->pb) avio_closep(&s->oc->pb);
        if (s->created) unlink(s->tmp); /* ours, with nothing useful in it */
        mp4_free(s);
        return st;
    }
    be->state = s;
    be->write = mp4_write;
    be->flush = mp4_flush;
    be->finish = mp4_finish;
    be->discard = mp4_discard;
    return HL_OK;
}
