/* The contact sheet of `helios eval --sheet`: frames of a long video side by side, so drift over
 * minutes is seen at a glance. Each tile is scaled up by an integer factor (nearest neighbour:
 * the pixels the model made, not a smoothed version) and labelled with its time and frame index. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "io/media.h"

#define COLS 8   /* tiles per row */
#define PAD 8    /* white space around and between tiles */
#define LABEL 28 /* two lines of text under each tile */
#define MIN_SIDE 128

hl_status hl_sheet_png(const char *path, const uint8_t *const *frames, const int64_t *index, int n,
                       int width, int height, int fps, hl_error *err) {
    static const uint8_t dark[3] = {40, 40, 40};
    if (n < 1 || width < 1 || height < 1 || fps < 1)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "sheet %s: %d frames of %dx%d at %d fps", path,
                       n, width, height, fps);
    int short_side = width < height ? width : height;
    int scale = (MIN_SIDE + short_side - 1) / short_side;
    int tw = width * scale, th = height * scale;
    int cols = n < COLS ? n : COLS, rows = (n + COLS - 1) / COLS;
    if ((int64_t)cols * (tw + PAD) + PAD > 32768 || (int64_t)rows * (th + LABEL + PAD) > 32768)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "sheet %s: %d frames of %dx%d make too large "
                       "a picture",
                       path, n, width, height);
    hl_canvas c = {.w = cols * (tw + PAD) + PAD, .h = rows * (th + LABEL + PAD) + PAD};
    c.px = malloc((size_t)c.w * c.h * 3);
    if (!c.px) return hl_fail(err, HELIOS_ERR_OOM, "sheet %s: out of memory", path);
    memset(c.px, 255, (size_t)c.w * c.h * 3);
    for (int i = 0; i < n; i++) {
        int x0 = PAD + (i % COLS) * (tw + PAD), y0 = PAD + (i / COLS) * (th + LABEL + PAD);
        for (int y = 0; y < th; y++)
            for (int x = 0; x < tw; x++)
                hl_canvas_dot(&c, x0 + x, y0 + y,
                              frames[i] + 3 * ((size_t)(y / scale) * width + x / scale));
        int64_t s = index[i] / fps;
        char line[48];
        snprintf(line, sizeof line, "%" PRId64 ":%02d", s / 60, (int)(s % 60));
        hl_canvas_text(&c, x0, y0 + th + 4, line, dark);
        snprintf(line, sizeof line, "frame %" PRId64, index[i]);
        hl_canvas_text(&c, x0, y0 + th + 16, line, dark);
    }
    hl_status st = hl_image_write_png(path, c.px, c.w, c.h, err);
    free(c.px);
    return st;
}
