/* The evaluator of `helios eval`: per-frame features of a video measured against the tiny world
 * (segmentation of its known colours and shapes, colour statistics, motion), and the metrics made
 * from them (semantic accuracy, drift, chunk seams, motion, freezing, a Fréchet distance to real
 * world footage). Frames are streamed in; only a fixed-size record per frame is kept. */
#ifndef HL_EVAL_H
#define HL_EVAL_H

#include <stdint.h>

#include "core/error.h"
#include "world/world.h"

/* ---- segmentation (segment.c) ------------------------------------------------------------- */

/* Palette classes of a pixel: object colours 0..8, background colours 9..15, 16 = neither. */
#define HL_N_CLASSES (HL_N_OBJ_COLOURS + HL_N_BG_COLOURS + 1)

typedef struct hl_blob {
    int colour;     /* object colour index */
    hl_shape shape; /* classified from the mask geometry */
    double x, y;    /* centroid, fractions of width / height */
    double radius;  /* max distance from the centroid, fraction of min(width, height) */
    int area;       /* pixels */
} hl_blob;

typedef struct hl_segmenter {
    int width, height;
    uint8_t *cls;   /* per pixel palette class */
    int32_t *label; /* per pixel component id (-1 none) */
    int32_t *queue;
    float *cov;           /* per pixel coverage of its object colour (0..1) */
    int *rowmin, *rowmax; /* per row extent of one component */
    struct pt *pts;       /* hull points: 4 per row, and the hull */
} hl_segmenter;

hl_status hl_segmenter_init(hl_segmenter *sg, int width, int height, hl_error *err);
void hl_segmenter_release(hl_segmenter *sg);
/* Classifies the pixels of a planar frame in [-1, 1] (planes plane_stride apart), counts them
 * into hist[HL_N_CLASSES] (fractions), and finds up to max blobs of object colours; returns
 * their number. */
int hl_segment(hl_segmenter *sg, const float *frame, size_t plane_stride, double *hist,
               hl_blob *blobs, int max);

/* Fraction of the objects a phrase names that the blobs show with the right colour, shape and size
 * class (unnamed attributes match anything); NaN when the phrase names no object. */
double hl_semantic_score(const hl_phrase *ph, const hl_blob *blobs, int n);

/* ---- per-frame features (features.c) ------------------------------------------------------- */

#define HL_EVAL_MAX_BLOBS 32

typedef struct hl_frame_stats {
    float brightness, saturation; /* means over pixels, 0..1 */
    float hist[HL_N_CLASSES];     /* palette class fractions */
    float objects, size;          /* blob count, mean radius (min-side units) */
    float diff, maxdiff;          /* mean / max |frame - previous| in 0..1 (0 on the first frame) */
    float speed;                  /* mean centroid displacement of tracked blobs per frame */
    float semantic;               /* NaN when nothing is asked for */
} hl_frame_stats;

/* Streams frames into stats: keeps the previous frame and its blobs. */
typedef struct hl_featurizer {
    int width, height;
    hl_segmenter sg;
    float *prev; /* (3, H, W) */
    int64_t n;   /* frames seen */
    hl_blob blobs[HL_EVAL_MAX_BLOBS], prev_blobs[HL_EVAL_MAX_BLOBS];
    int n_blobs, n_prev_blobs;
} hl_featurizer;

hl_status hl_featurizer_init(hl_featurizer *f, int width, int height, hl_error *err);
void hl_featurizer_release(hl_featurizer *f);
/* Features of the next frame (planar, planes plane_stride apart); ph may be NULL. */
void hl_featurize(hl_featurizer *f, const float *frame, size_t plane_stride, const hl_phrase *ph,
                  hl_frame_stats *out);

/* Features of one window of frames (the Fréchet distance's sample): the means of the scalar
 * features and the histogram. */
#define HL_WINDOW_DIM (HL_N_CLASSES + 6)
void hl_window_features(const hl_frame_stats *s, int n, double *out);

/* ---- Fréchet distance (frechet.c) ---------------------------------------------------------- */

/* Fréchet distance between Gaussians fitted to two sets of d-dimensional samples (rows), or NaN
 * with fewer than 2 samples in either. */
double hl_frechet(const double *a, int na, const double *b, int nb, int d);

/* ---- drawing (canvas.c) ------------------------------------------------------------------- */

typedef struct hl_canvas {
    uint8_t *px; /* (h, w, 3) RGB */
    int w, h;
} hl_canvas;

/* One pixel; outside the canvas: nothing. */
void hl_canvas_dot(hl_canvas *c, int x, int y, const uint8_t rgb[3]);
/* Text from its top-left corner, 8 pixels per character, 10 high (letters, digits, . - _ : +). */
void hl_canvas_text(hl_canvas *c, int x, int y, const char *s, const uint8_t rgb[3]);

/* ---- contact sheet (sheet.c) ---------------------------------------------------------------- */

/* n frames (each (height, width, 3) RGB) tiled left to right, up to 8 per row, each scaled up by
 * the smallest integer that makes its short side at least 128 pixels and labelled below with its
 * time at fps (m:ss) and its frame index; a PNG at path. */
hl_status hl_sheet_png(const char *path, const uint8_t *const *frames, const int64_t *index, int n,
                       int width, int height, int fps, hl_error *err);

/* ---- plot (plot.c) ----------------------------------------------------------------------- */

typedef struct hl_plot_series {
    const char *name;
    const float *v; /* n values; NaN = gap */
    size_t stride;  /* in floats between consecutive values */
} hl_plot_series;

/* One panel per series, stacked, x = frame index, chunk boundaries marked; a PNG at path. */
hl_status hl_plot_png(const char *path, const hl_plot_series *s, int n_series, int64_t n, int chunk,
                      hl_error *err);

/* ---- ground truth (truth.c) ---------------------------------------------------------------- */

/* What a `helios world --truth` file says, reduced to what the evaluator needs: the frame size
 * and each frame's caption (stored once per change). */
typedef struct hl_truth {
    int width, height;
    int64_t frames;
    int n;          /* caption changes */
    int64_t *start; /* [n] first frame of each caption */
    char **caption; /* [n] */
} hl_truth;

/* Reads and checks path: one JSON object per line, "frame" counting from 0, the same "width" and
 * "height" on every line, a "caption" string. Errors name the file and line. */
hl_status hl_truth_load(const char *path, hl_truth *out, hl_error *err);
void hl_truth_release(hl_truth *t);
/* The caption of frame f (the last one for frames past the end). */
const char *hl_truth_caption(const hl_truth *t, int64_t f);

/* ---- metrics (metrics.c) ----------------------------------------------------------------- */

typedef struct hl_metric {
    const char *name;
    double value; /* NaN: not applicable */
    const char *what;
} hl_metric;

enum { HL_N_METRICS = 16 };

/* Every metric over n frames' stats. ref: window features of real footage (n_ref rows of
 * HL_WINDOW_DIM), NULL for none. */
void hl_metrics_compute(const hl_frame_stats *s, int64_t n, int fps, int chunk, const double *ref,
                        int n_ref, hl_metric out[HL_N_METRICS]);
/* The drift fraction: M is averaged over the first and last ceil(0.15 n) frames. */
int64_t hl_drift_span(int64_t n);

#endif
