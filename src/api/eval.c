/* The public evaluation API over src/eval: streams frames into per-frame stats, renders the real
 * world footage for the Fréchet distance, and keeps the metrics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/session.h"
#include "eval/eval.h"
#include "io/media.h"

struct helios_eval {
    helios_eval_params p;
    char *prompt;
    hl_truth truth;
    bool has_truth;
    hl_featurizer feat;
    hl_frame_stats *stats;
    int64_t n, cap;
    char *phrase_text; /* the caption `phrase` was parsed from */
    hl_phrase phrase;
    char *first_caption;  /* for the reference footage */
    int64_t *sheet_index; /* [n_sheet] the frames the sheet shows */
    uint8_t *sheet_rgb;   /* [n_sheet + 1] (H, W, 3) frames; the last slot: the newest frame */
    hl_metric metrics[HL_N_METRICS];
    helios_eval_metric out[HL_N_METRICS];
    bool finished;
    hl_error err;
};

void helios_eval_params_init(helios_eval_params *p) {
    memset(p, 0, sizeof *p);
    p->fps = 24;
    p->chunk = 33;
    p->reference_seeds = 4;
}

/* Copies the sheet's frame indices and makes room for their pixels. */
static hl_status sheet_init(helios_eval *e, const helios_eval_params *p, hl_error *err) {
    if (p->n_sheet == 0) return HL_OK;
    if (p->n_sheet < 0 || p->n_sheet > 64 || !p->sheet_frames) {
        e->p.n_sheet = 0;
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "eval: %d sheet frames (1 to 64)", p->n_sheet);
    }
    for (int j = 0; j < p->n_sheet; j++)
        if (p->sheet_frames[j] < 0) {
            e->p.n_sheet = 0;
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "eval: sheet frame %lld",
                           (long long)p->sheet_frames[j]);
        }
    size_t frame = 3 * (size_t)p->width * p->height;
    e->sheet_index = malloc(sizeof(int64_t) * (size_t)p->n_sheet);
    e->sheet_rgb = malloc(frame * (size_t)(p->n_sheet + 1));
    if (!e->sheet_index || !e->sheet_rgb) {
        e->p.n_sheet = 0;
        return hl_fail(err, HELIOS_ERR_OOM, "eval: out of memory for the sheet's frames");
    }
    memcpy(e->sheet_index, p->sheet_frames, sizeof(int64_t) * (size_t)p->n_sheet);
    return HL_OK;
}

/* Keeps frame e->n (planar in [-1, 1], planes plane apart) where the sheet shows it, and as the
 * newest frame (for indices past the end). */
static void sheet_keep(helios_eval *e, const float *x, size_t plane) {
    if (e->p.n_sheet == 0) return;
    size_t hw = (size_t)e->p.width * e->p.height;
    uint8_t *last = e->sheet_rgb + 3 * hw * (size_t)e->p.n_sheet;
    for (size_t i = 0; i < hw; i++) /* as the video writer rounds (NaN: 0) */
        for (int ch = 0; ch < 3; ch++)
            last[3 * i + ch] = hl_video_quantize(x[ch * plane + i], HL_QUANT_ROUND);
    for (int j = 0; j < e->p.n_sheet; j++)
        if (e->sheet_index[j] == e->n) memcpy(e->sheet_rgb + 3 * hw * (size_t)j, last, 3 * hw);
}

helios_status helios_eval_new(helios_session *s, const helios_eval_params *p, helios_eval **out) {
    hl_error_clear(&s->err);
    *out = NULL;
    if (!p) return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "eval: no parameters");
    if (p->width < 16 || p->height < 16 || p->width > 16384 || p->height > 16384)
        return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG,
                       "eval: frames of %dx%d are too small to evaluate "
                       "(at least 16x16)",
                       p->width, p->height);
    if (p->fps < 1 || p->chunk < 1 || p->reference_seeds < 0 || p->reference_frames < 0)
        return hl_fail(&s->err, HELIOS_ERR_INVALID_ARG, "eval: fps %d, chunk %d, reference %d x %d",
                       p->fps, p->chunk, p->reference_seeds, p->reference_frames);
    helios_eval *e = calloc(1, sizeof *e);
    if (!e) return hl_fail(&s->err, HELIOS_ERR_OOM, "eval: out of memory");
    e->p = *p;
    e->p.prompt = e->p.truth_path = NULL;
    e->p.sheet_frames = NULL;
    hl_status st = sheet_init(e, p, &s->err);
    if (p->prompt && !(e->prompt = strdup(p->prompt)))
        st = hl_fail(&s->err, HELIOS_ERR_OOM, "eval: out of memory");
    if (st == HL_OK && p->truth_path) {
        st = hl_truth_load(p->truth_path, &e->truth, &s->err);
        e->has_truth = st == HL_OK;
        if (st == HL_OK && (e->truth.width != p->width || e->truth.height != p->height))
            st = hl_fail(&s->err, HELIOS_ERR_SHAPE,
                         "eval: truth %s is for %dx%d frames, the video has %dx%d", p->truth_path,
                         e->truth.width, e->truth.height, p->width, p->height);
    }
    if (st == HL_OK) st = hl_featurizer_init(&e->feat, p->width, p->height, &s->err);
    if (st != HL_OK) {
        helios_eval_free(e);
        return st;
    }
    *out = e;
    return HELIOS_OK;
}

/* The parsed phrase for a caption, reparsed only when the caption changes. */
static const hl_phrase *phrase_for(helios_eval *e, const char *caption) {
    if (!caption) return NULL;
    if (!e->phrase_text || strcmp(e->phrase_text, caption)) {
        free(e->phrase_text);
        e->phrase_text = strdup(caption);
        if (!e->phrase_text) return NULL;
        hl_phrase_parse(caption, &e->phrase);
    }
    return &e->phrase;
}

helios_status helios_eval_add(helios_eval *e, const float *frames, int T, int t,
                              const char *caption) {
    hl_error_clear(&e->err);
    if (!frames || T < 1 || t < 0 || t >= T)
        return hl_fail(&e->err, HELIOS_ERR_INVALID_ARG, "eval_add: frame %d of a block of %d", t,
                       T);
    if (e->n == e->cap) {
        int64_t cap = e->cap ? 2 * e->cap : 1024;
        hl_frame_stats *s = realloc(e->stats, (size_t)cap * sizeof *s);
        if (!s)
            return hl_fail(&e->err, HELIOS_ERR_OOM, "eval: out of memory at frame %lld",
                           (long long)e->n);
        e->stats = s, e->cap = cap;
    }
    if (!caption) caption = e->has_truth ? hl_truth_caption(&e->truth, e->n) : e->prompt;
    if (caption && !e->first_caption && !(e->first_caption = strdup(caption)))
        return hl_fail(&e->err, HELIOS_ERR_OOM, "eval: out of memory");
    size_t plane = (size_t)e->p.width * e->p.height;
    hl_featurize(&e->feat, frames + (size_t)t * plane, (size_t)T * plane, phrase_for(e, caption),
                 &e->stats[e->n]);
    sheet_keep(e, frames + (size_t)t * plane, (size_t)T * plane);
    e->n++;
    e->finished = false;
    return HELIOS_OK;
}

/* Window features of real world footage for the first caption: reference_seeds worlds rendered
 * from the prompt (placements differ by seed). *ref = NULL when there is nothing to render. */
static hl_status reference(helios_eval *e, double **ref, int *n_ref) {
    *ref = NULL, *n_ref = 0;
    if (!e->first_caption || e->p.reference_seeds == 0) return HL_OK;
    hl_phrase ph;
    hl_phrase_parse(e->first_caption, &ph);
    if (ph.n_objects == 0) return HL_OK;
    int64_t frames = e->p.reference_frames ? e->p.reference_frames : (e->n < 480 ? e->n : 480);
    int per_seed = (int)(frames / e->p.fps);
    if (per_seed < 1) return HL_OK;
    frames = (int64_t)per_seed * e->p.fps;
    size_t plane = (size_t)e->p.width * e->p.height;
    double *win = malloc(sizeof(double) * HL_WINDOW_DIM * (size_t)per_seed * e->p.reference_seeds);
    float *img = malloc(sizeof(float) * 3 * plane);
    hl_frame_stats *st = malloc(sizeof *st * (size_t)e->p.fps);
    hl_featurizer f = {0};
    hl_world w = {0};
    hl_status rc = !win || !img || !st ? hl_fail(&e->err, HELIOS_ERR_OOM, "eval: out of memory")
                                       : HL_OK;
    for (int seed = 0; rc == HL_OK && seed < e->p.reference_seeds; seed++) {
        hl_world_config c = {.seed = 0x5eed0000u + (uint64_t)seed,
                             .width = e->p.width,
                             .height = e->p.height,
                             .fps = e->p.fps,
                             .max_objects = HL_MAX_OBJECTS,
                             .prompt = e->first_caption};
        rc = hl_world_init(&w, &c, &e->err);
        if (rc == HL_OK) rc = hl_featurizer_init(&f, e->p.width, e->p.height, &e->err);
        for (int64_t i = 0; rc == HL_OK && i < frames; i++) {
            if (i) hl_world_step(&w);
            hl_world_render(&w, img, plane);
            hl_featurize(&f, img, plane, &ph, &st[i % e->p.fps]);
            if (i % e->p.fps == e->p.fps - 1)
                hl_window_features(st, e->p.fps, win + (size_t)(*n_ref)++ * HL_WINDOW_DIM);
        }
        hl_featurizer_release(&f);
        hl_world_release(&w);
    }
    free(img);
    free(st);
    if (rc != HL_OK) {
        free(win);
        *n_ref = 0;
        return rc;
    }
    *ref = win;
    return HL_OK;
}

helios_status helios_eval_finish(helios_eval *e, const helios_eval_metric **metrics, int *n) {
    hl_error_clear(&e->err);
    *metrics = NULL, *n = 0;
    if (e->n < 8)
        return hl_fail(&e->err, HELIOS_ERR_INVALID_ARG,
                       "eval: %lld frames are too few to evaluate (at least 8)", (long long)e->n);
    if (e->has_truth && e->truth.frames != e->n)
        return hl_fail(&e->err, HELIOS_ERR_SHAPE,
                       "eval: the truth file has %lld frames, the video %lld",
                       (long long)e->truth.frames, (long long)e->n);
    double *ref;
    int n_ref;
    HL_TRY(reference(e, &ref, &n_ref));
    hl_metrics_compute(e->stats, e->n, e->p.fps, e->p.chunk, ref, n_ref, e->metrics);
    free(ref);
    for (int i = 0; i < HL_N_METRICS; i++)
        e->out[i] = (helios_eval_metric){e->metrics[i].name, e->metrics[i].value,
                                         e->metrics[i].what};
    e->finished = true;
    *metrics = e->out, *n = HL_N_METRICS;
    return HELIOS_OK;
}

helios_status helios_eval_plot(helios_eval *e, const char *path) {
    hl_error_clear(&e->err);
    if (!e->finished)
        return hl_fail(&e->err, HELIOS_ERR_INVALID_ARG, "eval_plot: call helios_eval_finish first");
    /* the colour histogram's distance from its mean over the first 15%, per frame */
    int64_t k = hl_drift_span(e->n);
    double h0[HL_N_CLASSES] = {0};
    for (int64_t i = 0; i < k; i++)
        for (int c = 0; c < HL_N_CLASSES; c++) h0[c] += e->stats[i].hist[c] / (double)k;
    float *hd = malloc(sizeof(float) * (size_t)e->n);
    if (!hd) return hl_fail(&e->err, HELIOS_ERR_OOM, "eval_plot: out of memory");
    for (int64_t i = 0; i < e->n; i++) {
        double d = 0;
        for (int c = 0; c < HL_N_CLASSES; c++) d += fabs(e->stats[i].hist[c] - h0[c]);
        hd[i] = (float)(0.5 * d);
    }
    const size_t st = sizeof(hl_frame_stats) / sizeof(float);
    const hl_frame_stats *s = e->stats;
    hl_plot_series series[] = {
        {"semantic accuracy", &s->semantic, st},
        {"colour histogram distance to the first 15 percent", hd, 1},
        {"brightness", &s->brightness, st},
        {"saturation", &s->saturation, st},
        {"objects", &s->objects, st},
        {"object size", &s->size, st},
        {"motion: mean frame difference", &s->diff, st},
        {"centroid speed", &s->speed, st},
    };
    hl_status rc = hl_plot_png(path, series, (int)(sizeof series / sizeof series[0]), e->n,
                               e->p.chunk, &e->err);
    free(hd);
    return rc;
}

const char *helios_eval_error(const helios_eval *e) { return e->err.msg; }

helios_status helios_eval_sheet(helios_eval *e, const char *path) {
    hl_error_clear(&e->err);
    if (!e->finished)
        return hl_fail(&e->err, HELIOS_ERR_INVALID_ARG,
                       "eval_sheet: call helios_eval_finish first");
    int n = e->p.n_sheet;
    if (n == 0)
        return hl_fail(&e->err, HELIOS_ERR_INVALID_ARG,
                       "eval_sheet: no sheet frames were asked for");
    size_t frame = 3 * (size_t)e->p.width * e->p.height;
    const uint8_t *tiles[64];
    int64_t index[64];
    for (int j = 0; j < n; j++) {
        bool past = e->sheet_index[j] >= e->n; /* the newest frame stands in */
        tiles[j] = e->sheet_rgb + frame * (size_t)(past ? n : j);
        index[j] = past ? e->n - 1 : e->sheet_index[j];
    }
    return hl_sheet_png(path, tiles, index, n, e->p.width, e->p.height, e->p.fps, &e->err);
}

void helios_eval_free(helios_eval *e) {
    if (!e) return;
    free(e->sheet_index);
    free(e->sheet_rgb);
    hl_featurizer_release(&e->feat);
    hl_truth_release(&e->truth);
    free(e->stats);
    free(e->prompt);
    free(e->phrase_text);
    free(e->first_caption);
    free(e);
}
