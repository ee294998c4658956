/* Segmentation of the world's shapes: each pixel takes the class of its nearest palette colour
 * (object colours are saturated or light, backgrounds dark, so they separate even under the
 * world's ±15% lighting), object-coloured pixels are grouped into 4-connected components, and
 * each component's shape is read from its geometry, using its convex hull (of pixel centres) so
 * that a few stray pixels do not count:
 *   ring      the centroid is not part of the mask (the hole), or convexity below 0.78 with a
 *             round hull (roundness above 0.78);
 *   star      convexity below 0.78, where convexity = n / (A + P/2 + 1), n the pixels, A and P
 *             the hull's area and perimeter (Pick: a convex set has ~1; measured 0.58..0.75 for
 *             medium and large stars, >= 0.80 for the convex shapes);
 *   else      by roundness A / (pi R^2), R the hull's largest distance from the centroid: circle
 *             (~0.9) above 0.76, square (~0.65) above 0.52, triangle (~0.44) below.
 * Thresholds were set on rendered shapes at 64x64; small shapes there (7-8 pixels across) are
 * often ambiguous, a star most of all -- docs/world.md gives the classifier's accuracy.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define TAU 6.283185307179586

typedef struct pt {
    double x, y;
} pt;

hl_status hl_segmenter_init(hl_segmenter *sg, int width, int height, hl_error *err) {
    memset(sg, 0, sizeof *sg);
    size_t n = (size_t)width * height;
    sg->width = width, sg->height = height;
    sg->cls = malloc(n);
    sg->label = malloc(n * sizeof *sg->label);
    sg->queue = malloc(n * sizeof *sg->queue);
    sg->cov = malloc(n * sizeof *sg->cov);
    sg->rowmin = malloc(sizeof(int) * 2 * (size_t)height);
    sg->rowmax = sg->rowmin ? sg->rowmin + height : NULL;
    sg->pts = malloc(sizeof(pt) * 8 * (size_t)height + sizeof(pt));
    if (!sg->cls || !sg->label || !sg->queue || !sg->cov || !sg->rowmin || !sg->pts) {
        hl_segmenter_release(sg);
        return hl_fail(err, HELIOS_ERR_OOM, "eval: out of memory for %dx%d frames", width, height);
    }
    return HL_OK;
}

void hl_segmenter_release(hl_segmenter *sg) {
    free(sg->cls);
    free(sg->label);
    free(sg->queue);
    free(sg->cov);
    free(sg->rowmin);
    free(sg->pts);
    memset(sg, 0, sizeof *sg);
}

static const uint8_t *palette_rgb(int c) {
    return c < HL_N_OBJ_COLOURS ? hl_obj_colours[c].rgb : hl_bg_colours[c - HL_N_OBJ_COLOURS].rgb;
}

/* Nearest palette class in RGB; farther than 70 from every colour: neither. */
static int classify(float r, float g, float b) {
    int best = HL_N_CLASSES - 1;
    float bd = 70.0f * 70.0f;
    for (int c = 0; c < HL_N_OBJ_COLOURS + HL_N_BG_COLOURS; c++) {
        const uint8_t *p = palette_rgb(c);
        float dr = r - p[0], dg = g - p[1], db = b - p[2], d = dr * dr + dg * dg + db * db;
        if (d < bd) bd = d, best = c;
    }
    return best;
}

static int pt_cmp(const void *a, const void *b) {
    const pt *p = a, *q = b;
    return p->x < q->x ? -1 : p->x > q->x ? 1 : p->y < q->y ? -1 : p->y > q->y;
}

static double cross(pt o, pt a, pt b) {
    return (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x);
}

/* Convex hull of p[0..n) (Andrew's monotone chain) into h; returns its size. p is sorted. */
static int hull(pt *p, int n, pt *h) {
    qsort(p, (size_t)n, sizeof *p, pt_cmp);
    int k = 0;
    for (int i = 0; i < n; i++) {
        while (k >= 2 && cross(h[k - 2], h[k - 1], p[i]) <= 0) k--;
        h[k++] = p[i];
    }
    for (int i = n - 2, lo = k + 1; i >= 0; i--) {
        while (k >= lo && cross(h[k - 2], h[k - 1], p[i]) <= 0) k--;
        h[k++] = p[i];
    }
    return k - 1;
}

/* Shape and size of the component with id `id` whose pixels are queue[0..n). */
static void measure(hl_segmenter *sg, const int32_t *pix, int n, int id, hl_blob *b) {
    int W = sg->width, H = sg->height;
    double sx = 0, sy = 0, covered = 0;
    for (int i = 0; i < n; i++)
        sx += pix[i] % W + 0.5, sy += pix[i] / W + 0.5, covered += sg->cov[pix[i]];
    double cx = sx / n, cy = sy / n, R = 0; /* R: the farthest pixel centre, plus half a pixel */
    for (int i = 0; i < n; i++) {
        double dx = pix[i] % W + 0.5 - cx, dy = pix[i] / W + 0.5 - cy,
               d = sqrt(dx * dx + dy * dy) + 0.5;
        if (d > R) R = d;
    }
    /* the hull of the pixels' corners: per row only the leftmost and rightmost pixels matter */
    int *lo = sg->rowmin, *hi = sg->rowmax, y0 = H, y1 = -1;
    for (int i = 0; i < n; i++) {
        int y = pix[i] / W;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
    }
    for (int y = y0; y <= y1; y++) lo[y] = W, hi[y] = -1;
    for (int i = 0; i < n; i++) {
        int x = pix[i] % W, y = pix[i] / W;
        if (x < lo[y]) lo[y] = x;
        if (x > hi[y]) hi[y] = x;
    }
    pt *p = sg->pts, *h = sg->pts + 4 * (size_t)H;
    int np = 0;
    for (int y = y0; y <= y1; y++)
        if (hi[y] >= 0) {
            p[np++] = (pt){lo[y] + 0.5, y + 0.5};
            p[np++] = (pt){hi[y] + 0.5, y + 0.5};
        }
    int nh = hull(p, np, h);
    double area = 0, perim = 0, Rh = 0;
    for (int i = 0; i < nh; i++) {
        pt a = h[i], c = h[(i + 1) % nh];
        area += a.x * c.y - c.x * a.y;
        perim += hypot(c.x - a.x, c.y - a.y);
        double d = hypot(a.x - cx, a.y - cy);
        if (d > Rh) Rh = d;
    }
    area = fabs(area) / 2;
    int ix = (int)cx, iy = (int)cy;
    bool hole = ix >= 0 && iy >= 0 && ix < W && iy < H && sg->label[(size_t)iy * W + ix] != id;
    /* a convex pixel set of hull area A and perimeter P holds about A + P/2 + 1 pixels (Pick) */
    double convexity = n / (area + perim / 2 + 1), round = Rh > 0 ? area / (TAU / 2 * Rh * Rh) : 1;
    if (hole) b->shape = HL_RING;
    else if (convexity < 0.78)
        b->shape = round > 0.78 ? HL_RING : HL_STAR; /* a ring too thin to show its hole */
    else b->shape = round > 0.76 ? HL_CIRCLE : round > 0.52 ? HL_SQUARE : HL_TRIANGLE;
    /* Thin parts (star tips, triangle corners) fade below half coverage, so the farthest pixel
     * understates the circumradius; the area of the classified shape gives a second estimate. */
    static const double fill[HL_N_SHAPES] = {1.0, 0.6366, 0.4135, 0.4210, 0.6975};
    double r_area = sqrt(covered / (TAU / 2 * fill[b->shape])), m = W < H ? W : H;
    b->x = cx / W, b->y = cy / H, b->radius = (R > r_area ? R : r_area) / m, b->area = n;
}

int hl_segment(hl_segmenter *sg, const float *frame, size_t plane_stride, double *hist,
               hl_blob *blobs, int max) {
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
    /* Edge pixels are then unmixed: a pixel is a blend p = b + a (c - b) of a background colour b
     * this frame shows (2% of its pixels or more) and an object colour c with coverage a. Pixels
     * covered 30% or more join the object, and the coverage weighs the area. Anti-aliased edges
     * and thin parts (star tips, triangle corners), whose colour 4:2:0 video blends with the
     * background, are otherwise lost or taken for another colour (half red on navy is nearest to
     * maroon). Only object colours that also have pixels of their own are considered: the blend of
 * yellow and navy would otherwise pass for a little white around the edge. */
    int bgs[HL_N_BG_COLOURS], nbg = 0, objs[HL_N_OBJ_COLOURS], nobj = 0;
    for (int c = 0; c < HL_N_BG_COLOURS; c++)
        if (hist[HL_N_OBJ_COLOURS + c] >= 0.02) bgs[nbg++] = c;
    for (int c = 0; c < HL_N_OBJ_COLOURS; c++) /* only colours with a core of their own */
        if (hist[c] * (double)N >= 4) objs[nobj++] = c;
    for (size_t i = 0; i < N; i++) {
        sg->cov[i] = sg->cls[i] < HL_N_OBJ_COLOURS ? 1.0f : 0.0f;
        if (sg->cls[i] < HL_N_OBJ_COLOURS) continue;
        float p[3] = {(r[i] + 1) * 127.5f, (g[i] + 1) * 127.5f, (b[i] + 1) * 127.5f}, best_a = 0.3f;
        int best = -1;
        for (int k = 0; k < nbg; k++) {
            const uint8_t *bg = hl_bg_colours[bgs[k]].rgb;
            for (int o = 0; o < nobj; o++) {
                int c = objs[o];
                const uint8_t *ob = hl_obj_colours[c].rgb;
                float d[3], q[3], dd = 0, dq = 0;
                for (int j = 0; j < 3; j++)
                    d[j] = (float)ob[j] - bg[j], q[j] = p[j] - bg[j], dd += d[j] * d[j],
                    dq += d[j] * q[j];
                float a = dq / dd, res = 0;
                if (a <= best_a) continue;
                for (int j = 0; j < 3; j++) res += (q[j] - a * d[j]) * (q[j] - a * d[j]);
                if (res < 40.0f * 40.0f) best_a = a, best = c;
            }
        }
        if (best >= 0) sg->cls[i] = (uint8_t)best, sg->cov[i] = best_a < 1 ? best_a : 1;
    }
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
            int32_t nbr[4] = {x > 0 ? p - 1 : -1, x + 1 < W ? p + 1 : -1, y > 0 ? p - W : -1,
                              y + 1 < H ? p + W : -1};
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
            if (used[k] || (o->colour >= 0 && blobs[k].colour != o->colour) ||
                blobs[k].shape != (hl_shape)o->shape ||
                (o->size >= 0 && hl_size_class_of(blobs[k].radius) != (hl_size_class)o->size))
                continue;
            used[k] = true, hit++;
            break;
        }
    }
    return (double)hit / ph->n_objects;
}
