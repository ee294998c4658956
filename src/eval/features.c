/* Per-frame features: brightness and saturation, the palette-class histogram, the segmented
 * objects (count, size, semantic score) and motion against the previous frame (mean and max
 * absolute difference; centroid speed of blobs tracked by colour to their nearest predecessor). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

hl_status hl_featurizer_init(hl_featurizer *f, int width, int height, hl_error *err) {
    memset(f, 0, sizeof *f);
    f->width = width, f->height = height;
    HL_TRY(hl_segmenter_init(&f->sg, width, height, err));
    f->prev = malloc(sizeof(float) * 3 * (size_t)width * height);
    if (!f->prev) {
        hl_segmenter_release(&f->sg);
        return hl_fail(err, HELIOS_ERR_OOM, "eval: out of memory for %dx%d frames", width, height);
    }
    return HL_OK;
}

void hl_featurizer_release(hl_featurizer *f) {
    hl_segmenter_release(&f->sg);
    free(f->prev);
    f->prev = NULL;
}

/* Mean displacement (min-side units) of blobs matched by colour to the nearest blob of the
 * previous frame; NaN when nothing matches. */
static double track_speed(const hl_featurizer *f) {
    double m = f->width < f->height ? f->width : f->height, sum = 0;
    int k = 0;
    for (int i = 0; i < f->n_blobs; i++) {
        const hl_blob *b = &f->blobs[i];
        double best = INFINITY;
        for (int j = 0; j < f->n_prev_blobs; j++) {
            const hl_blob *p = &f->prev_blobs[j];
            if (p->colour != b->colour) continue;
            double dx = (b->x - p->x) * f->width / m, dy = (b->y - p->y) * f->height / m,
                   d = sqrt(dx * dx + dy * dy);
            if (d < best) best = d;
        }
        if (best < 0.25) sum += best, k++; /* a farther match is another object, not motion */
    }
    return k ? sum / k : NAN;
}

void hl_featurize(hl_featurizer *f, const float *frame, size_t plane_stride, const hl_phrase *ph,
                  hl_frame_stats *out) {
    size_t N = (size_t)f->width * f->height;
    const float *r = frame, *g = frame + plane_stride, *b = frame + 2 * plane_stride;
    double lum = 0, sat = 0, diff = 0, maxdiff = 0;
    for (size_t i = 0; i < N; i++) {
        float R = (r[i] + 1) * 0.5f, G = (g[i] + 1) * 0.5f, B = (b[i] + 1) * 0.5f;
        float mx = R > G ? (R > B ? R : B) : (G > B ? G : B),
              mn = R < G ? (R < B ? R : B) : (G < B ? G : B);
        lum += 0.299f * R + 0.587f * G + 0.114f * B;
        sat += mx > 1e-6f ? (mx - mn) / mx : 0;
    }
    if (f->n > 0) {
        for (int c = 0; c < 3; c++) {
            const float *x = frame + c * plane_stride, *p = f->prev + c * N;
            for (size_t i = 0; i < N; i++) {
                double d = fabs((double)x[i] - p[i]) * 0.5;
                diff += d;
                if (d > maxdiff) maxdiff = d;
            }
        }
        diff /= 3.0 * N;
    }
    for (int c = 0; c < 3; c++)
        memcpy(f->prev + c * N, frame + c * plane_stride, N * sizeof(float));
    memcpy(f->prev_blobs, f->blobs, sizeof f->blobs);
    f->n_prev_blobs = f->n_blobs;
    double hist[HL_N_CLASSES];
    f->n_blobs = hl_segment(&f->sg, frame, plane_stride, hist, f->blobs, HL_EVAL_MAX_BLOBS);
    double size = 0;
    for (int i = 0; i < f->n_blobs; i++) size += f->blobs[i].radius;
    out->brightness = (float)(lum / N);
    out->saturation = (float)(sat / N);
    for (int c = 0; c < HL_N_CLASSES; c++) out->hist[c] = (float)hist[c];
    out->objects = (float)f->n_blobs;
    out->size = f->n_blobs ? (float)(size / f->n_blobs) : 0.0f;
    out->diff = (float)diff;
    out->maxdiff = (float)maxdiff;
    out->speed = f->n > 0 ? (float)track_speed(f) : NAN;
    out->semantic = (float)hl_semantic_score(ph, f->blobs, f->n_blobs);
    f->n++;
}

void hl_window_features(const hl_frame_stats *s, int n, double *out) {
    for (int k = 0; k < HL_WINDOW_DIM; k++) out[k] = 0;
    int ns = 0;
    double speed = 0;
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < HL_N_CLASSES; c++) out[c] += s[i].hist[c];
        out[HL_N_CLASSES + 0] += s[i].brightness;
        out[HL_N_CLASSES + 1] += s[i].saturation;
        out[HL_N_CLASSES + 2] += s[i].objects;
        out[HL_N_CLASSES + 3] += s[i].size;
        out[HL_N_CLASSES + 4] += s[i].diff;
        if (!isnan(s[i].speed)) speed += s[i].speed, ns++;
    }
    for (int k = 0; k < HL_N_CLASSES + 5; k++) out[k] /= n;
    out[HL_N_CLASSES + 5] = ns ? speed / ns : 0;
}
