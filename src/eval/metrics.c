/* The metrics of `helios eval` from the per-frame stats (docs/world.md defines each):
 *   drift      |M(first 15%) - M(last 15%)| as HeliosBench defines it (the histogram's is the
 *              total variation distance between the two mean palette histograms);
 *   seam       mean frame difference across chunk boundaries / mean within chunks;
 *   motion     mean absolute frame difference; speed and jerk of blobs tracked by centroid;
 *   freezing   share of consecutive frames whose largest pixel change is below 4/255;
 *   frechet    Fréchet distance of one-second window features against real world footage. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define FREEZE_MAX_DIFF (4.0 / 255.0)
#define EPS 1e-4

int64_t hl_drift_span(int64_t n) {
    int64_t k = (int64_t)ceil(0.15 * (double)n);
    return k < 1 ? 1 : k;
}

/* Mean of a float field over frames [a, b), skipping NaN; NaN when none. */
static double mean_of(const hl_frame_stats *s, int64_t a, int64_t b, size_t offset) {
    double sum = 0;
    int64_t k = 0;
    for (int64_t i = a; i < b; i++) {
        float v = *(const float *)((const char *)&s[i] + offset);
        if (!isnan(v)) sum += v, k++;
    }
    return k ? sum / k : NAN;
}

static double drift(const hl_frame_stats *s, int64_t n, size_t offset, int64_t skip) {
    int64_t k = hl_drift_span(n);
    double a = mean_of(s, skip, k + skip < n ? k + skip : n, offset),
           b = mean_of(s, n - k, n, offset);
    return fabs(a - b);
}

static double hist_drift(const hl_frame_stats *s, int64_t n) {
    int64_t k = hl_drift_span(n);
    double d = 0;
    for (int c = 0; c < HL_N_CLASSES; c++) {
        size_t off = offsetof(hl_frame_stats, hist) + c * sizeof(float);
        d += fabs(mean_of(s, 0, k, off) - mean_of(s, n - k, n, off));
    }
    return 0.5 * d;
}

void hl_metrics_compute(const hl_frame_stats *s, int64_t n, int fps, int chunk, const double *ref,
                        int n_ref, hl_metric out[HL_N_METRICS]) {
    const size_t o_sem = offsetof(hl_frame_stats, semantic),
                 o_diff = offsetof(hl_frame_stats, diff);
    double seam = NAN, jerk = NAN, frozen = 0, fd = NAN;
    /* frame differences start at frame 1 */
    double across = 0, within = 0;
    int64_t n_across = 0, n_within = 0;
    for (int64_t t = 1; t < n; t++) {
        if (t % chunk == 0) across += s[t].diff, n_across++;
        else within += s[t].diff, n_within++;
        frozen += s[t].maxdiff < FREEZE_MAX_DIFF;
    }
    if (n_across > 0 && n_within > 0) seam = (across / n_across + EPS) / (within / n_within + EPS);
    double js = 0;
    int64_t nj = 0;
    for (int64_t t = 2; t < n; t++)
        if (!isnan(s[t].speed) && !isnan(s[t - 1].speed))
            js += fabs(s[t].speed - s[t - 1].speed), nj++;
    if (nj) jerk = js / nj;
    int nw = (int)(n / fps);
    if (ref && nw >= 2) {
        double *win = malloc(sizeof(double) * HL_WINDOW_DIM * (size_t)nw);
        if (win) {
            for (int w = 0; w < nw; w++)
                hl_window_features(s + (int64_t)w * fps, fps, win + (size_t)w * HL_WINDOW_DIM);
            fd = hl_frechet(win, nw, ref, n_ref, HL_WINDOW_DIM);
            free(win);
        }
    }
    int i = 0;
    out[i++] = (hl_metric){"frames", (double)n, "frames evaluated"};
    out[i++] = (hl_metric){
        "semantic_accuracy", mean_of(s, 0, n, o_sem),
        "share of the named objects found with the right colour, shape and size"};
    out[i++] = (hl_metric){"drift_histogram", hist_drift(s, n),
                           "palette histogram, total variation distance"};
    out[i++] = (hl_metric){"drift_saturation", drift(s, n, offsetof(hl_frame_stats, saturation), 0),
                           "mean saturation"};
    out[i++] = (hl_metric){"drift_brightness", drift(s, n, offsetof(hl_frame_stats, brightness), 0),
                           "mean luma"};
    out[i++] = (hl_metric){"drift_objects", drift(s, n, offsetof(hl_frame_stats, objects), 0),
                           "object count"};
    out[i++] = (hl_metric){"drift_size", drift(s, n, offsetof(hl_frame_stats, size), 0),
                           "mean object radius (fraction of the short side)"};
    out[i++] = (hl_metric){"drift_motion", drift(s, n, o_diff, 1), "mean frame difference"};
    out[i++] = (hl_metric){"drift_semantic", drift(s, n, o_sem, 0), "semantic accuracy"};
    out[i++] = (hl_metric){"seam_strength", seam,
                           "frame difference across chunk boundaries / within chunks"};
    out[i++] = (hl_metric){"motion", n > 1 ? mean_of(s, 1, n, o_diff) : NAN,
                           "mean |frame - previous| (0..1)"};
    out[i++] = (hl_metric){"speed", mean_of(s, 1, n, offsetof(hl_frame_stats, speed)),
                           "object centroid speed (short sides per frame)"};
    out[i++] = (hl_metric){"jerk", jerk,
                           "mean |change of centroid speed| per frame (lower = smoother)"};
    out[i++] = (hl_metric){"freezing", n > 1 ? frozen / (double)(n - 1) : NAN,
                           "share of frames with no pixel changed by 4/255 or more"};
    out[i++] = (hl_metric){"frechet", fd,
                           "Frechet distance of 1 s window features to real world footage"};
    out[i++] = (hl_metric){"reference_windows", ref ? (double)n_ref : NAN,
                           "real-footage windows compared"};
}
