/* Segmentation of the world's shapes: each pixel takes the class of its nearest palette colour
 * (object colours are saturated or light, backgrounds dark, so they separate even under the
 * world's ±15% lighting), object-coloured pixels are grouped into 4-connected components, and
 * each component's shape is read from its geometry:
 *   ring      the centroid is not part of the mask (the hole);
 *   circle    area / (pi R^2) above 0.78, R the largest centroid distance (circle ~1, square
 *             0.64, triangle 0.41, star 0.42);
 *   otherwise the number of lobes of the radial profile r(angle): 3 triangle, 4 square, 5 star,
 *             falling back to the fill ratio when the profile is too coarse to count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define TAU 6.283185307179586
#define N_BINS 36

hl_status hl_segmenter_init(hl_segmenter *sg, int width, int height, hl_error *err) {
    memset(sg, 0, sizeof *sg);
    size_t n = (size_t)width * height;
    sg->width = width, sg->height = height;
    sg->cls = malloc(n);
    sg->label = malloc(n * sizeof *sg->label);
    sg->queue = malloc(n * sizeof *sg->queue);
    if (!sg->cls || !sg->label || !sg->queue) {
        hl_segmenter_release(sg);
        return hl_fail(err, HELIOS_ERR_OOM, "eval: out of memory for %dx%d frames", width, height);
    }
    return HL_OK;
}

void hl_segmenter_release(hl_segmenter *sg) {
    free(sg->cls);
    free(sg->label);
    free(sg->queue);
    memset(sg, 0, sizeof *sg);
}

static int classify(float r, float g, float b) {
    int best = HL_N_CLASSES - 1;
    float bd = 70.0f * 70.0f; /* farther than this from every colour: neither */
    for (int c = 0; c < HL_N_OBJ_COLOURS + HL_N_BG_COLOURS; c++) {
        const uint8_t *p = c < HL_N_OBJ_COLOURS ? hl_obj_colours[c].rgb : hl_bg_colours[c - HL_N_OBJ_COLOURS].rgb;
        float dr = r - p[0], dg = g - p[1], db = b - p[2], d = dr * dr + dg * dg + db * db;
        if (d < bd) bd = d, best = c;
    }
    return best;
}

static int count_lobes(const double *prof) {
    double s[N_BINS], lo = 1e300, hi = 0;
    for (int i = 0; i < N_BINS; i++) {
        s[i] = 0.25 * prof[(i + N_BINS - 1) % N_BINS] + 0.5 * prof[i] + 0.25 * prof[(i + 1) % N_BINS];
        if (s[i] < lo) lo = s[i];
        if (s[i] > hi) hi = s[i];
    }
    double mid = 0.5 * (lo + hi);
    int lobes = 0;
    for (int i = 0; i < N_BINS; i++) {
        double a = s[(i + N_BINS - 1) % N_BINS], c = s[(i + 1) % N_BINS];
        if (s[i] > a && s[i] >= c && s[i] > mid) lobes++;
    }
    return lobes;
}

/* Shape and size of the component with id `id` whose pixels are queue[0..n). */
static void measure(hl_segmenter *sg, const int32_t *pix, int n, int id, hl_blob *b) {
    int W = sg->width, H = sg->height;
    double sx = 0, sy = 0;
    for (int i = 0; i < n; i++) sx += pix[i] % W + 0.5, sy += pix[i] / W + 0.5;
    double cx = sx / n, cy = sy / n, prof[N_BINS] = {0}, R = 0;
    for (int i = 0; i < n; i++) {
        double dx = pix[i] % W + 0.5 - cx, dy = pix[i] / W + 0.5 - cy, d = sqrt(dx * dx + dy * dy) + 0.5;
        int bin = (int)((atan2(dy, dx) + TAU / 2) / TAU * N_BINS) % N_BINS;
        if (d > prof[bin]) prof[bin] = d;
        if (d > R) R = d;
    }
    for (int i = 0; i < N_BINS; i++) /* empty bins (tiny blobs): the neighbours' value */
        if (prof[i] == 0) prof[i] = 0.5 * (prof[(i + N_BINS - 1) % N_BINS] + prof[(i + 1) % N_BINS]);
    int ix = (int)cx, iy = (int)cy;
    bool hole = ix >= 0 && iy >= 0 && ix < W && iy < H && sg->label[(size_t)iy * W + ix] != id;
    double fill = n / (TAU / 2 * R * R);
    if (hole && fill < 0.8) b->shape = HL_RING;
    else if (fill > 0.78) b->shape = HL_CIRCLE;
    else {
        int lobes = count_lobes(prof);
        b->shape = lobes >= 5 ? HL_STAR : lobes == 4 ? HL_SQUARE : lobes == 3 ? HL_TRIANGLE
                 : fill > 0.55 ? HL_SQUARE : HL_TRIANGLE;
    }
    double m = W < H ? W : H;
    b->x = cx / W, b->y = cy / H, b->radius = R / m, b->area = n;
}

int hl_segment(hl_segmenter *sg, const float *frame, size_t plane_stride, double *hist, hl_blob *blobs, int max) {
    int W = sg->width, H = sg->height;
    size_t N = (size_t)W * H;
    const float *r = frame, *g = frame + plane_stride, *b = frame + 2 * plane_stride;
    for (int c = 0; c < HL_N_CLASSES; c++) hist[c] = 0;
    for (size_t i = 0; i < N; i++) {
        int c = classify((r[i] + 1) * 127.5f, (g[i] + 1) * 127.5f, (b[i] + 1) * 127.5f);
        sg->cls[i] = (uint8_t)c;
        sg->label[i] = -1;
        hist[c] += 1;
    }
    for (int c = 0; c < HL_N_CLASSES; c++) hist[c] /= (double)N;
    double m = W < H ? W : H;
    int min_area = (int)(0.002 * m * m), nb = 0, id = 0;
    if (min_area < 6) min_area = 6;
    for (size_t s = 0; s < N; s++) {
        if (sg->cls[s] >= HL_N_OBJ_COLOURS || sg->label[s] >= 0) continue;
        int c = sg->cls[s], head = 0, tail = 0;
        sg->queue[tail++] = (int32_t)s;
        sg->label[s] = id;
        while (head < tail) { /* breadth-first flood fill, 4-connected */
            int32_t p = sg->queue[head++];
            int x = p % W, y = p / W;
            int32_t nbr[4] = {x > 0 ? p - 1 : -1, x + 1 < W ? p + 1 : -1, y > 0 ? p - W : -1, y + 1 < H ? p + W : -1};
            for (int k = 0; k < 4; k++)
                if (nbr[k] >= 0 && sg->cls[nbr[k]] == c && sg->label[nbr[k]] < 0) {
                    sg->label[nbr[k]] = id;
                    sg->queue[tail++] = nbr[k];
                }
        }
        if (tail >= min_area && nb < max) {
            blobs[nb].colour = c;
            measure(sg, sg->queue, tail, id, &blobs[nb]);
            nb++;
        }
        id++;
    }
    return nb;
}

double hl_semantic_score(const hl_phrase *ph, const hl_blob *blobs, int n) {
    if (!ph || ph->n_objects == 0) return NAN;
    bool used[HL_EVAL_MAX_BLOBS] = {0};
    int hit = 0;
    for (int i = 0; i < ph->n_objects; i++) {
        const hl_phrase_obj *o = &ph->objects[i];
        for (int k = 0; k < n && k < HL_EVAL_MAX_BLOBS; k++) {
            if (used[k] || (o->colour >= 0 && blobs[k].colour != o->colour) || blobs[k].shape != (hl_shape)o->shape ||
                (o->size >= 0 && hl_size_class_of(blobs[k].radius) != (hl_size_class)o->size))
                continue;
            used[k] = true, hit++;
            break;
        }
    }
    return (double)hit / ph->n_objects;
}
