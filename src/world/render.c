/* Rendering: the background (plain, gradient or a slowly moving texture, all separable so a
 * pixel costs a few multiply-adds), then the objects far to near, each over its bounding box
 * only, with anti-aliased edges from the analytic signed distance to the outline (coverage =
 * clamp(0.5 - d, 0, 1) with d in pixels: exact for straight edges, what a box filter over the
 * pixel gives). */
#include <math.h>
#include <stdlib.h>

#include "world/world.h"

#define TAU 6.283185307179586

/* The outline of an object in pixel coordinates. */
typedef struct outline {
    hl_shape shape;
    double cx, cy, r; /* centre, circumradius (pixels) */
    int nv;
    double vx[10], vy[10];
    float rgb[3];
} outline;

static void make_outline(const hl_world *w, const hl_object *o, outline *ol) {
    double m = w->cfg.width < w->cfg.height ? w->cfg.width : w->cfg.height;
    ol->shape = o->shape;
    ol->cx = o->x * w->cfg.width, ol->cy = o->y * w->cfg.height, ol->r = o->radius * m;
    ol->nv = 0;
    double a0 = o->angle - TAU / 4; /* a vertex points up at angle 0 (y grows downwards) */
    if (o->shape == HL_SQUARE) ol->nv = 4, a0 += TAU / 8;
    if (o->shape == HL_TRIANGLE) ol->nv = 3;
    if (o->shape == HL_STAR) ol->nv = 10;
    for (int k = 0; k < ol->nv; k++) {
        double rr = o->shape == HL_STAR && (k & 1) ? 0.45 * ol->r : ol->r;
        ol->vx[k] = ol->cx + rr * cos(a0 + TAU * k / ol->nv);
        ol->vy[k] = ol->cy + rr * sin(a0 + TAU * k / ol->nv);
    }
    for (int c = 0; c < 3; c++) ol->rgb[c] = (float)(hl_obj_colours[o->colour].rgb[c] * w->light);
}

/* Signed distance (pixels, negative inside) from (px, py) to a polygon. */
static double poly_sd(const outline *ol, double px, double py) {
    double d2 = 1e300;
    bool inside = false;
    for (int i = 0, j = ol->nv - 1; i < ol->nv; j = i++) {
        double ax = ol->vx[j], ay = ol->vy[j], ex = ol->vx[i] - ax, ey = ol->vy[i] - ay;
        double wx = px - ax, wy = py - ay, t = (wx * ex + wy * ey) / (ex * ex + ey * ey);
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        double dx = wx - t * ex, dy = wy - t * ey, dd = dx * dx + dy * dy;
        if (dd < d2) d2 = dd;
        if ((ay > py) != (ol->vy[i] > py) && px < ax + (py - ay) * ex / ey) inside = !inside;
    }
    return inside ? -sqrt(d2) : sqrt(d2);
}

static double signed_distance(const outline *ol, double px, double py) {
    double dx = px - ol->cx, dy = py - ol->cy, rho = sqrt(dx * dx + dy * dy);
    switch (ol->shape) {
    case HL_CIRCLE: return rho - ol->r;
    case HL_RING: return fabs(rho - 0.775 * ol->r) - 0.225 * ol->r; /* inner radius 0.55 r */
    default: return poly_sd(ol, px, py);
    }
}

static void draw_object(const hl_world *w, const hl_object *o, float *r, float *g, float *b) {
    outline ol;
    make_outline(w, o, &ol);
    int W = w->cfg.width, H = w->cfg.height;
    int x0 = (int)floor(ol.cx - ol.r - 1), x1 = (int)ceil(ol.cx + ol.r + 1);
    int y0 = (int)floor(ol.cy - ol.r - 1), y1 = (int)ceil(ol.cy + ol.r + 1);
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > W) x1 = W;
    if (y1 > H) y1 = H;
    /* pixels deeper inside than this are fully covered without the exact distance (polygons) */
    double inner = o->shape == HL_STAR       ? 0.45 * ol.r * cos(TAU / 10)
                   : o->shape == HL_SQUARE   ? 0.7071 * ol.r
                   : o->shape == HL_TRIANGLE ? 0.5 * ol.r
                                             : 0;
    double in2 = inner > 1 ? (inner - 1) * (inner - 1) : -1;
    for (int y = y0; y < y1; y++) {
        double py = y + 0.5, dy = py - ol.cy;
        for (int x = x0; x < x1; x++) {
            double px = x + 0.5, dx = px - ol.cx, rho2 = dx * dx + dy * dy;
            if (rho2 > (ol.r + 1) * (ol.r + 1)) continue;
            double cov = rho2 < in2 ? 1.0 : 0.5 - signed_distance(&ol, px, py);
            if (cov <= 0) continue;
            float c = cov >= 1 ? 1.0f : (float)cov;
            size_t i = (size_t)y * W + x;
            r[i] += c * (ol.rgb[0] - r[i]);
            g[i] += c * (ol.rgb[1] - g[i]);
            b[i] += c * (ol.rgb[2] - b[i]);
        }
    }
}

static void bg_colour(const hl_world *w, int c, float rgb[3]) {
    for (int k = 0; k < 3; k++) rgb[k] = hl_bg_colours[c].rgb[k];
    if (w->bg_from >= 0)
        for (int k = 0; k < 3; k++)
            rgb[k] = (float)(hl_bg_colours[w->bg_from].rgb[k] +
                             w->bg_mix *
                                 (hl_bg_colours[c].rgb[k] - hl_bg_colours[w->bg_from].rgb[k]));
}

static void draw_background(hl_world *w, float *r, float *g, float *b) {
    int W = w->cfg.width, H = w->cfg.height;
    double m = W < H ? W : H, light = w->light;
    float c1[3], c2[3];
    bg_colour(w, w->bg_colour, c1);
    for (int k = 0; k < 3; k++) c2[k] = hl_bg_colours[w->bg_colour2].rgb[k];
    /* the gradient runs along the diagonal; g(x, y) = gx[x] + gy[y] clamped to [0, 1] */
    float *tx = w->tex_row, *ty = w->tex_col;
    if (w->bg_kind == HL_BG_GRADIENT) {
        for (int x = 0; x < W; x++) tx[x] = (float)(0.5 * (x + 0.5 + w->cam_x) / W);
        for (int y = 0; y < H; y++) ty[y] = (float)(0.5 * (y + 0.5 + w->cam_y) / H);
    } else if (w->bg_kind == HL_BG_TEXTURE) { /* relative brightness ±12% */
        for (int x = 0; x < W; x++) {
            double u = (x + w->cam_x) * TAU / m;
            tx[x] = (float)(0.07 * sin(4 * u + w->tex_phase_x) +
                            0.03 * sin(9 * u + 2 * w->tex_phase_y));
        }
        for (int y = 0; y < H; y++) {
            double v = (y + w->cam_y) * TAU / m;
            ty[y] = (float)(0.05 * sin(5 * v + w->tex_phase_y) +
                            0.02 * sin(11 * v - w->tex_phase_x));
        }
    }
    for (int y = 0; y < H; y++) {
        float *rr = r + (size_t)y * W, *gg = g + (size_t)y * W, *bb = b + (size_t)y * W;
        if (w->bg_kind == HL_BG_PLAIN) {
            float v0 = (float)(c1[0] * light), v1 = (float)(c1[1] * light),
                  v2 = (float)(c1[2] * light);
            for (int x = 0; x < W; x++) rr[x] = v0, gg[x] = v1, bb[x] = v2;
        } else if (w->bg_kind == HL_BG_GRADIENT) {
            for (int x = 0; x < W; x++) {
                float t = tx[x] + ty[y];
                t = t < 0 ? 0 : t > 1 ? 1 : t;
                rr[x] = (float)light * (c1[0] + t * (c2[0] - c1[0]));
                gg[x] = (float)light * (c1[1] + t * (c2[1] - c1[1]));
                bb[x] = (float)light * (c1[2] + t * (c2[2] - c1[2]));
            }
        } else {
            for (int x = 0; x < W; x++) {
                float f = (float)light * (1 + tx[x] + ty[y]);
                rr[x] = c1[0] * f, gg[x] = c1[1] * f, bb[x] = c1[2] * f;
            }
        }
    }
}

static int by_depth(const void *a, const void *b) {
    const hl_object *p = *(const hl_object *const *)a, *q = *(const hl_object *const *)b;
    return p->depth < q->depth ? 1 : p->depth > q->depth ? -1 : p->id - q->id; /* far first */
}

void hl_world_render(hl_world *w, float *out, size_t plane_stride) {
    float *r = out, *g = out + plane_stride, *b = out + 2 * plane_stride;
    draw_background(w, r, g, b);
    const hl_object *order[HL_MAX_OBJECTS];
    for (int i = 0; i < w->n; i++) order[i] = &w->obj[i];
    qsort(order, (size_t)w->n, sizeof order[0], by_depth);
    for (int i = 0; i < w->n; i++) draw_object(w, order[i], r, g, b);
    size_t n = (size_t)w->cfg.width * w->cfg.height;
    const float s = 2.0f / 255.0f;
    for (size_t i = 0; i < n; i++) { /* 0..255 to [-1, 1] */
        float v0 = r[i] * s - 1, v1 = g[i] * s - 1, v2 = b[i] * s - 1;
        r[i] = v0 > 1 ? 1 : v0, g[i] = v1 > 1 ? 1 : v1, b[i] = v2 > 1 ? 1 : v2;
    }
}
