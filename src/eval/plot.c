/* The metric plot of `helios eval --plot`: one panel per series stacked vertically, x = frame
 * (a column spans several frames in long videos: it draws their min..max), chunk boundaries as
 * faint vertical lines, each panel labelled with its name and range (canvas.c's font). Written as
 * PNG through io/. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "io/media.h"

#define PW 800 /* plot width in pixels */
#define PH 96  /* panel height */
#define MARGIN 8
#define LABEL 16 /* label strip above each panel's curve */

hl_status hl_plot_png(const char *path, const hl_plot_series *s, int n_series, int64_t n, int chunk,
                      hl_error *err) {
    static const uint8_t ink[6][3] = {{200, 40, 40}, {40, 90, 200},  {30, 150, 60},
                                      {180, 90, 20}, {130, 50, 170}, {20, 140, 150}};
    static const uint8_t grey[3] = {200, 200, 200}, dark[3] = {40, 40, 40},
                         seam[3] = {225, 225, 235};
    hl_canvas c = {.w = PW + 2 * MARGIN, .h = n_series * (PH + LABEL + MARGIN) + MARGIN};
    c.px = malloc((size_t)c.w * c.h * 3);
    if (!c.px) return hl_fail(err, HELIOS_ERR_OOM, "plot: out of memory");
    memset(c.px, 255, (size_t)c.w * c.h * 3);
    for (int p = 0; p < n_series; p++) {
        int top = MARGIN + p * (PH + LABEL + MARGIN), y0 = top + LABEL;
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            double v = s[p].v[i * s[p].stride];
            if (isnan(v)) continue;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        char label[160];
        if (lo > hi) snprintf(label, sizeof label, "%s: n/a", s[p].name);
        else snprintf(label, sizeof label, "%s  min %.4g  max %.4g", s[p].name, lo, hi);
        hl_canvas_text(&c, MARGIN, top + 2, label, dark);
        if (lo > hi) continue;
        if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
        for (int x = 0; x < PW; x++)
            hl_canvas_dot(&c, MARGIN + x, y0 + PH - 1, grey),
                hl_canvas_dot(&c, MARGIN + x, y0, grey);
        for (int y = 0; y < PH; y++)
            hl_canvas_dot(&c, MARGIN, y0 + y, grey),
                hl_canvas_dot(&c, MARGIN + PW - 1, y0 + y, grey);
        if (chunk > 0 && n / chunk < PW / 4)
            for (int64_t b = chunk; b < n; b += chunk)
                for (int y = 1; y < PH - 1; y++)
                    hl_canvas_dot(&c, MARGIN + (int)(b * (PW - 1) / (n > 1 ? n - 1 : 1)), y0 + y,
                                  seam);
        int prev_y = -1;
        for (int x = 0; x < PW; x++) {
            int64_t a = n > 1 ? x * (n - 1) / (PW - 1) : 0,
                    b = n > 1 ? (x + 1) * (n - 1) / (PW - 1) : 0;
            if (b > a) b--;
            double vmin = INFINITY, vmax = -INFINITY;
            for (int64_t i = a; i <= b && i < n; i++) {
                double v = s[p].v[i * s[p].stride];
                if (isnan(v)) continue;
                if (v < vmin) vmin = v;
                if (v > vmax) vmax = v;
            }
            if (vmin > vmax) {
                prev_y = -1;
                continue;
            }
            int ya = y0 + PH - 2 - (int)((vmax - lo) / (hi - lo) * (PH - 4));
            int yb = y0 + PH - 2 - (int)((vmin - lo) / (hi - lo) * (PH - 4));
            if (prev_y >= 0) { /* join to the previous column */
                if (prev_y < ya) ya = prev_y;
                if (prev_y > yb) yb = prev_y;
            }
            for (int y = ya; y <= yb; y++) hl_canvas_dot(&c, MARGIN + x, y, ink[p % 6]);
            prev_y = (ya + yb) / 2;
        }
    }
    hl_status st = hl_image_write_png(path, c.px, c.w, c.h, err);
    free(c.px);
    return st;
}
