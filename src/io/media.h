/* Video and image input/output.
 *
 * Writers (hl_video_writer_*) take float frames in [-1, 1] in the layout the VAE decoder outputs,
 * (3, T, H, W) per chunk, and stream them to one of (chosen from the path):
 *   "*.mp4"               H.264 (libx264) yuv420p, BT.601 limited range, chroma sited left
 *                         (H.264's default), all tagged in the stream, as a fragmented MP4
 *                         (movflags frag_keyframe+empty_moov+default_base_moof);
 *   "*.y4m"               YUV4MPEG2 4:2:0 "C420jpeg" (chroma centred), BT.601 limited range,
 *                         marked XCOLORRANGE=LIMITED (what ffmpeg assumes for Y4M anyway);
 *   "-"                   the same Y4M on stdout (e.g. `helios ... -o - | ffplay -`);
 *   a directory, or a path ending in '/'
 *                         one PNG per frame, frame_000000.png, frame_000001.png, ... (RGB24).
 * Files are written under a temporary name "<path>.part" (PNG: "<frame>.png.part") in the same
 * directory and renamed over the final name by hl_video_writer_close (per frame for PNG), so the
 * final name never holds a half-written file.
 *
 * Interruptions: every hl_video_writer_flush (and, with flush_each_write, every write call)
 * ends the current MP4 fragment: the encoder is drained and restarted, so each flushed batch
 * starts with an IDR frame and is complete on disk. A run killed after a flush therefore leaves
 * "<path>.part" -- a playable MP4 holding every flushed frame; rename it to keep it. Y4M writes
 * each frame with one write(), so its ".part" holds every whole frame written; PNG frames are
 * complete files as soon as they are written.
 *
 * Quantization to 8 bits follows diffusers: v = clamp((x + 1) / 2, 0, 1) in float32, then
 *   HL_QUANT_ROUND: (v * 255).round()  -- round half to even, as numpy_to_pil / encode_video
 *                   (output_type "pil", or pipelines' own PyAV export) [default];
 *   HL_QUANT_TRUNC: (v * 255).astype(uint8) -- truncation, as diffusers.utils.export_to_video
 *                   does with the float frames of output_type "np" (the Helios example scripts).
 * NaN becomes 0.
 *
 * Readers (hl_image_read, hl_video_read, hl_video_reader_*) decode anything
 * libavformat/libavcodec know (PNG, JPEG, WebP, BMP, ...; MP4, WebM, MKV, MOV, Y4M, ...) to RGB24
 * (alpha dropped, as PIL's convert("RGB")),
 * resize to (width, height) with swscale's Lanczos (a = 3, widened when downscaling, like PIL's
 * LANCZOS that diffusers' VaeImageProcessor uses for images and for the PIL frames of a video;
 * not bit-identical to PIL, whose kernel normalisation and 8-bit rounding between passes differ,
 * and not compared with PIL here), and map each value v to
 * v / 255 * 2 - 1 in float32. Conversion to RGB happens at the native size first (colour matrix
 * and range taken from the stream, BT.601 limited when unspecified), then the RGB image is
 * resized, the order PIL follows. Rotation metadata is not applied. Every failure -- missing
 * file, not an image/video, no frames, corrupt or truncated data -- is a status with a message
 * naming the file; nothing aborts. */
#ifndef HL_MEDIA_H
#define HL_MEDIA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

/* ---- writing ------------------------------------------------------------------------------ */

typedef enum hl_quant {
    HL_QUANT_ROUND = 0, /* round half to even (numpy_to_pil) */
    HL_QUANT_TRUNC = 1, /* truncate (diffusers export_to_video) */
} hl_quant;

typedef struct hl_video_params {
    int fps;               /* frames per second (24) */
    int crf;               /* H.264 constant rate factor, 0..51 (18: visually near lossless) */
    const char *preset;    /* x264 preset ("medium") */
    int threads;           /* encoder threads, 0 = auto */
    hl_quant quant;        /* HL_QUANT_ROUND */
    bool flush_each_write; /* true: every hl_video_writer_write ends with a flush. Meant for
                            * chunk-sized writes (a VAE chunk, 33 frames): each flush starts a
                            * new H.264 GOP, so a caller writing frame by frame sets it false
                            * and calls hl_video_writer_flush itself now and then. */
} hl_video_params;

typedef enum hl_video_kind { HL_VIDEO_MP4, HL_VIDEO_Y4M, HL_VIDEO_PNG_DIR } hl_video_kind;

typedef struct hl_video_writer hl_video_writer;

void hl_video_params_init(hl_video_params *p);

/* Which writer a path selects; HELIOS_ERR_UNSUPPORTED (message naming the path) otherwise.
 * *to_stdout is set for "-". */
hl_status hl_video_kind_of(const char *path, hl_video_kind *kind, bool *to_stdout, hl_error *err);

/* Opens a writer for frames of width x height (p = NULL: defaults). Creates "<path>.part" (MP4,
 * Y4M) or the directory (PNG; its parent must exist). */
hl_status hl_video_writer_open(const char *path, int width, int height, const hl_video_params *p,
                               hl_video_writer **out, hl_error *err);

/* Writes frames t0 .. t0+n-1 of x, a (3, T, H, W) float block in [-1, 1] (a VAE chunk). */
hl_status hl_video_writer_write(hl_video_writer *w, const float *x, int T, int t0, int n,
                                hl_error *err);

/* Makes every frame written so far durable in "<path>.part" (see the top of this file). */
hl_status hl_video_writer_flush(hl_video_writer *w, hl_error *err);

/* Finishes the file, renames it to its final name and frees w (also on failure: then the
 * ".part" file is left for inspection). */
hl_status hl_video_writer_close(hl_video_writer *w, hl_error *err);

/* Frees w without finishing, removing the ".part" file (the error path). NULL is a no-op. */
void hl_video_writer_discard(hl_video_writer *w);

int64_t hl_video_writer_frames(const hl_video_writer *w); /* frames written so far */

/* One value of x in [-1, 1] to 8 bits, as described above. */
uint8_t hl_video_quantize(float x, hl_quant q);

/* ---- reading ------------------------------------------------------------------------------ */

typedef struct hl_media {
    float *data; /* (3, frames, height, width), values in [-1, 1]; malloc'ed */
    int frames, height, width;
    int src_width, src_height; /* size before resizing */
    double fps;                /* 0 when unknown (images) */
    int skipped;               /* hl_video_read_tail: frames dropped between frame 0 and frame 1 */
} hl_media;

/* Reads the first frame of an image (or video) resized to width x height; out->data is
 * (3, H, W) (frames = 1). width = height = 0 keeps the native size. */
hl_status hl_image_read(const char *path, int width, int height, hl_media *out, hl_error *err);

/* Reads up to max_frames frames (<= 0: all) of a video, each resized to width x height
 * (0, 0: native); out->data is (3, F, H, W). */
hl_status hl_video_read(const char *path, int width, int height, int max_frames, hl_media *out,
                        hl_error *err);

/* Frame 0 and the newest `tail` frames, every frame decoded in turn but only tail + 1 kept
 * (V2V: memory bounded whatever the video's length); out->skipped counts the frames dropped. */
hl_status hl_video_read_tail(const char *path, int width, int height, int tail, hl_media *out,
                             hl_error *err);

void hl_media_free(hl_media *m);

/* A video read as a stream, one frame per call: memory is a few frames whatever the video's
 * length (the readers above are its clients). The open decodes frame 0, so its size is known and
 * a file with no decodable frame fails there; a reader that failed fails every later call. */
typedef struct hl_video_reader hl_video_reader;

typedef struct hl_video_info {
    int width, height;         /* the frames handed out (the target size, or frame 0's) */
    int src_width, src_height; /* frame 0's size in the file */
    double fps;                /* 0 when unknown */
    int64_t frames;            /* the container's frame count; 0 when it does not say */
    int64_t read;              /* frames handed out so far */
} hl_video_info;

/* Opens path for frames resized to width x height (0, 0: native). */
hl_status hl_video_reader_open(const char *path, int width, int height, hl_video_reader **out,
                               hl_error *err);
/* The next frame as packed RGB24 (height x width x 3), valid until the next call; *rgb = NULL at
 * the end of the video. */
hl_status hl_video_reader_next_rgb(hl_video_reader *r, const uint8_t **rgb, hl_error *err);
/* Up to n next frames as frames t0 .. t0+n-1 of x, a (3, T, H, W) float block (values as
 * hl_video_read's); *got of them were read, fewer than n only at the end of the video. */
hl_status hl_video_reader_read(hl_video_reader *r, float *x, int T, int t0, int n, int *got,
                               hl_error *err);
void hl_video_reader_info(const hl_video_reader *r, hl_video_info *info);
void hl_video_reader_free(hl_video_reader *r); /* NULL is a no-op */

/* ---- shared by the writers and readers (src/io/video_*.c) ----------------------------------- */

/* Routes FFmpeg's av_log into hl_log at DEBUG level (once per process). Our statuses carry
 * the messages that matter; x264's banner and decoder warnings would otherwise go to stderr. */
void hl_media_ffmpeg_init(void);
/* FFmpeg error code as text, into buf. */
const char *hl_media_averr(int code, char *buf, int n);

/* Where a 4:2:0 chroma sample sits: centred in its 2x2 luma block (JPEG, Y4M "C420jpeg") or
 * co-sited with the left column, centred vertically (MPEG-2 / H.264's default). */
typedef enum hl_chroma_siting { HL_CHROMA_CENTER, HL_CHROMA_LEFT } hl_chroma_siting;

/* RGB24 (packed, H x W) to planar 4:2:0 BT.601 limited range, chroma filtered for the siting
 * (odd sizes: the last row/column is repeated). y is H*W bytes, u and v are
 * ((H+1)/2) * ((W+1)/2) bytes each. */
void hl_rgb_to_yuv420(const uint8_t *rgb, int width, int height, hl_chroma_siting siting,
                      uint8_t *y, uint8_t *u, uint8_t *v);

/* A backend: state plus the calls the dispatcher in video_writer.c makes. Frames arrive as
 * packed RGB24 of the writer's size. */
typedef struct hl_video_backend {
    void *state;
    hl_status (*write)(void *state, const uint8_t *rgb, hl_error *err);
    hl_status (*flush)(void *state, hl_error *err);
    hl_status (*finish)(void *state, hl_error *err); /* finalize + rename; frees state */
    void (*discard)(void *state);                    /* free + remove temp; frees state */
} hl_video_backend;

hl_status hl_video_mp4_open(const char *path, int width, int height, const hl_video_params *p,
                            hl_video_backend *be, hl_error *err);
hl_status hl_video_y4m_open(const char *path, bool to_stdout, int width, int height,
                            const hl_video_params *p, hl_video_backend *be, hl_error *err);
hl_status hl_video_png_open(const char *dir, int width, int height, const hl_video_params *p,
                            hl_video_backend *be, hl_error *err);

/* "<path>.part" as a new malloc'ed string (NULL when out of memory). */
char *hl_media_part_name(const char *path);
/* Opens the ".part" file tmp for writing and takes an exclusive lock on it (flock): two runs
 * writing the same output must not write into one file, and a failing run must never remove
 * the other run's file. A .part nobody holds (left by a killed run) is taken over and
 * truncated; one another process is writing fails with a message saying so. Returns the
 * descriptor, which holds the lock until it is closed: keep it open until after
 * hl_media_commit. -1 with err set on failure. */
int hl_media_part_create(const char *tmp, hl_error *err);
/* fsync()s the file behind fd (tmp, opened by hl_media_part_create, still locked) and renames
 * tmp to final; errors name both files. The caller closes fd afterwards. */
hl_status hl_media_commit(int fd, const char *tmp, const char *final, hl_error *err);

/* Encodes one RGB24 frame as a PNG file at path (through path.part + rename). */
hl_status hl_image_write_png(const char *path, const uint8_t *rgb, int width, int height,
                             hl_error *err);

#endif
