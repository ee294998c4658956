/* Training clips from a folder of videos with captions, or from the tiny world (dataset.h). */
#include "train/dataset.h"

#include <ctype.h>
#include <stdbool.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/file.h"
#include "core/log.h"
#include "io/media.h"
#include "world/world.h"

/* A caption is a line or a paragraph; this bounds a wrong file (a video named .txt). */
#define HL_CAPTION_MAX_BYTES ((size_t)1 << 20)

typedef struct hl_dataset_item {
    char *video;                /* full path */
    char *caption;              /* trimmed text */
    char id[HL_DATASET_ID_MAX]; /* hl_dataset_clip_id */
    int src_width, src_height;  /* frame 0's size at the scan */
} hl_dataset_item;

struct hl_dataset {
    hl_dataset_config cfg;
    char *folder;
    hl_dataset_item *items; /* folder source, in name order */
    int64_t n;
    int skipped;
};

void hl_dataset_config_default(hl_dataset_config *c) {
    memset(c, 0, sizeof *c);
    c->kind = HL_DATASET_WORLD;
    c->width = 640, c->height = 384;
    c->frames = 33;
    c->n_clips = 1024;
    c->fps = 24;
    c->max_objects = 4;
    c->camera = c->lighting = 1;
}

void hl_dataset_config_set_source(hl_dataset_config *c, const char *source) {
    bool world = source && strcmp(source, "world") == 0;
    c->kind = world ? HL_DATASET_WORLD : HL_DATASET_FOLDER;
    c->folder = world ? NULL : source;
}

uint64_t hl_dataset_clip_seed(uint64_t seed, int64_t i) {
    uint64_t z = seed ^ (0x9e3779b97f4a7c15ull * ((uint64_t)i + 1)); /* splitmix64 step ... */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;                     /* ... and finaliser */
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static hl_status check_config(const hl_dataset_config *c, hl_error *err) {
    if (c->kind != HL_DATASET_FOLDER && c->kind != HL_DATASET_WORLD)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "dataset: unknown source kind %d",
                       (int)c->kind);
    if (c->width < 16 || c->height < 16 || c->width > HELIOS_MAX_SIDE ||
        c->height > HELIOS_MAX_SIDE || c->width % 8 || c->height % 8)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "dataset: size %dx%d (each side 16..%d pixels, a multiple of 8 for the VAE)",
                       c->width, c->height, HELIOS_MAX_SIDE);
    if (c->frames < 1 || c->frames > HELIOS_MAX_FRAMES)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "dataset: frames %d (1..%d)", c->frames,
                       HELIOS_MAX_FRAMES);
    if (c->kind == HL_DATASET_FOLDER && (!c->folder || !c->folder[0]))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "dataset: a folder source needs a folder");
    if (c->kind == HL_DATASET_WORLD) {
        if (c->n_clips < 1)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "dataset: n_clips %lld (at least 1)",
                           (long long)c->n_clips);
        if (c->width > 8192 || c->height > 8192)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "dataset: size %dx%d (the world renders up to 8192 per side)", c->width,
                           c->height);
        if (c->fps < 1 || c->fps > 1000)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "dataset: fps %d (1..1000)", c->fps);
        if (c->max_objects < 1 || c->max_objects > HL_MAX_OBJECTS)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG, "dataset: max_objects %d (1..%d)",
                           c->max_objects, HL_MAX_OBJECTS);
    }
    return HL_OK;
}

// ---------------------------------------------------------------------------------------------
// folder scan

static bool is_video_name(const char *name) {
    static const char *const exts[] = {"mp4", "m4v", "mov", "mkv", "webm", "avi", "y4m", "gif"};
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return false;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot + 1, exts[i]) == 0) return true;
    return false;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The caption beside video `path`: "<path without extension>.txt", trimmed, not empty. */
static hl_status read_caption(const char *path, char **out, hl_error *err) {
    *out = NULL;
    const char *dot = strrchr(path, '.');
    size_t stem = (size_t)(dot - path);
    char *txt = malloc(stem + 5);
    if (!txt) return hl_fail(err, HELIOS_ERR_OOM, "dataset: out of memory");
    memcpy(txt, path, stem);
    memcpy(txt + stem, ".txt", 5);
    hl_status st = HL_OK;
    if (!hl_file_is_regular(txt)) {
        st = hl_fail(err, HELIOS_ERR_MISSING, "%s: no caption file %s beside it", path, txt);
        free(txt);
        return st;
    }
    char *buf = NULL;
    size_t len = 0;
    st = hl_file_read_all(txt, HL_CAPTION_MAX_BYTES, "caption", &buf, &len, err);
    if (st == HL_OK && strlen(buf) != len)
        st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: caption holds a NUL byte (not text)", txt);
    if (st == HL_OK) {
        size_t a = 0, b = len;
        while (a < b && isspace((unsigned char)buf[a])) a++;
        while (b > a && isspace((unsigned char)buf[b - 1])) b--;
        if (a == b) {
            st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: empty caption", txt);
        } else {
            memmove(buf, buf + a, b - a);
            buf[b - a] = '\0';
            *out = buf;
            buf = NULL;
        }
    }
    free(buf);
    free(txt);
    return st;
}

/* Decodes frames of `path` until `need` are seen (or the end); *n = how many, *info the size. */
static hl_status count_frames(const char *path, int need, int *n, hl_video_info *info,
                              hl_error *err) {
    *n = 0;
    hl_video_reader *r = NULL;
    HL_TRY(hl_video_reader_open(path, 0, 0, &r, err));
    hl_video_reader_info(r, info);
    hl_status st = HL_OK;
    if (info->frames >= need) {
        *n = need; /* the container says so; hl_dataset_get checks what it really decodes */
    } else {
        for (; *n < need; (*n)++) {
            const uint8_t *rgb;
            if ((st = hl_video_reader_next_rgb(r, &rgb, err)) != HL_OK || !rgb) break;
        }
    }
    hl_video_reader_free(r);
    return st;
}

static hl_status add_video(hl_dataset *ds, const char *path, hl_error *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) return hl_fail(err, HELIOS_ERR_IO, "%s: cannot stat", path);
    char *caption = NULL;
    HL_TRY(read_caption(path, &caption, err));
    int n = 0;
    hl_video_info info;
    hl_status st = count_frames(path, ds->cfg.frames, &n, &info, err);
    if (st != HL_OK) {
        free(caption);
        return st;
    }
    if (n < ds->cfg.frames) {
        HL_WARN("dataset: %s: skipped, %d frames (a clip needs %d)", path, n, ds->cfg.frames);
        ds->skipped++;
        free(caption);
        return HL_OK;
    }
    hl_dataset_item *it = &ds->items[ds->n];
    it->video = strdup(path);
    if (!it->video) {
        free(caption);
        return hl_fail(err, HELIOS_ERR_OOM, "dataset: out of memory");
    }
    it->caption = caption;
    it->src_width = info.src_width, it->src_height = info.src_height;
    const char *base = strrchr(path, '/');
    snprintf(it->id, sizeof it->id, "%.160s size %lld mtime %lld.%09ld caption %016llx",
             base ? base + 1 : path, (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
             (long)sb.st_mtim.tv_nsec, (unsigned long long)fnv1a(caption));
    ds->n++;
    return HL_OK;
}

static hl_status scan_folder(hl_dataset *ds, hl_error *err) {
    DIR *d = opendir(ds->folder);
    if (!d) return hl_fail(err, HELIOS_ERR_IO, "%s: cannot open the dataset folder", ds->folder);
    char **names = NULL;
    size_t n = 0, cap = 0;
    hl_status st = HL_OK;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || !is_video_name(e->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **q = realloc(names, cap * sizeof *q);
            if (!q) {
                st = hl_fail(err, HELIOS_ERR_OOM, "dataset: out of memory");
                break;
            }
            names = q;
        }
        if (!(names[n] = strdup(e->d_name))) {
            st = hl_fail(err, HELIOS_ERR_OOM, "dataset: out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (st == HL_OK && n == 0)
        st = hl_fail(err, HELIOS_ERR_MISSING, "%s: no videos (%s) in the dataset folder",
                     ds->folder, HL_DATASET_VIDEO_EXTS);
    if (st == HL_OK && !(ds->items = calloc(n, sizeof *ds->items)))
        st = hl_fail(err, HELIOS_ERR_OOM, "dataset: out of memory");
    if (st == HL_OK) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; st == HL_OK && i < n; i++) {
        size_t len = strlen(ds->folder) + strlen(names[i]) + 2;
        char *path = malloc(len);
        if (!path) {
            st = hl_fail(err, HELIOS_ERR_OOM, "dataset: out of memory");
            break;
        }
        snprintf(path, len, "%s/%s", ds->folder, names[i]);
        if (hl_file_is_regular(path)) st = add_video(ds, path, err);
        free(path);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (st == HL_OK && ds->n == 0)
        st = hl_fail(err, HELIOS_ERR_MISSING, "%s: every video is shorter than %d frames",
                     ds->folder, ds->cfg.frames);
    return st;
}

// ---------------------------------------------------------------------------------------------
// open / get

hl_status hl_dataset_open(const hl_dataset_config *c, hl_dataset **out, hl_error *err) {
    *out = NULL;
    HL_TRY(check_config(c, err));
    hl_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return hl_fail(err, HELIOS_ERR_OOM, "dataset: out of memory");
    ds->cfg = *c;
    hl_status st = HL_OK;
    if (c->kind == HL_DATASET_FOLDER) {
        size_t len = strlen(c->folder);
        while (len > 1 && c->folder[len - 1] == '/') len--;
        if (!(ds->folder = strndup(c->folder, len)))
            st = hl_fail(err, HELIOS_ERR_OOM, "dataset: out of memory");
        ds->cfg.folder = ds->folder;
        if (st == HL_OK) st = scan_folder(ds, err);
    } else {
        ds->cfg.folder = NULL;
        ds->n = c->n_clips;
    }
    if (st != HL_OK) {
        hl_dataset_free(ds);
        return st;
    }
    *out = ds;
    return HL_OK;
}

void hl_dataset_free(hl_dataset *ds) {
    if (!ds) return;
    if (ds->items)
        for (int64_t i = 0; i < ds->n; i++) free(ds->items[i].video), free(ds->items[i].caption);
    free(ds->items);
    free(ds->folder);
    free(ds);
}

int64_t hl_dataset_count(const hl_dataset *ds) { return ds->n; }
const hl_dataset_config *hl_dataset_get_config(const hl_dataset *ds) { return &ds->cfg; }
int hl_dataset_skipped(const hl_dataset *ds) { return ds->skipped; }

const char *hl_dataset_clip_id(const hl_dataset *ds, int64_t index, char *buf, size_t n) {
    if (n == 0) return buf;
    if (index < 0 || index >= ds->n) buf[0] = '\0';
    else if (ds->cfg.kind == HL_DATASET_FOLDER) snprintf(buf, n, "%s", ds->items[index].id);
    else
        snprintf(buf, n, "world seed %llu",
                 (unsigned long long)hl_dataset_clip_seed(ds->cfg.seed, index));
    return buf;
}

static hl_status get_world(hl_dataset *ds, int64_t index, hl_clip *clip, hl_error *err) {
    const hl_dataset_config *c = &ds->cfg;
    hl_world_config wc = {.seed = hl_dataset_clip_seed(c->seed, index),
                          .width = c->width,
                          .height = c->height,
                          .fps = c->fps,
                          .max_objects = c->max_objects,
                          .events = false,
                          .camera = c->camera != 0,
                          .lighting = c->lighting != 0,
                          .prompt = NULL};
    hl_world w;
    hl_status st = hl_world_init(&w, &wc, err);
    if (st == HL_OK && !(clip->caption = strdup(w.caption)))
        st = hl_fail(err, HELIOS_ERR_OOM, "dataset: out of memory");
    const size_t plane = (size_t)c->width * c->height;
    for (int t = 0; st == HL_OK && t < c->frames; t++) {
        if (t) hl_world_step(&w);
        hl_world_render(&w, clip->pixels + (size_t)t * plane, (size_t)c->frames * plane);
    }
    hl_world_release(&w);
    snprintf(clip->source, sizeof clip->source, "world seed %llu", (unsigned long long)wc.seed);
    return st;
}

/* Resize so the frame covers width x height with the aspect ratio kept, then center-crop. */
static hl_status get_video(hl_dataset *ds, int64_t index, hl_clip *clip, hl_error *err) {
    const hl_dataset_item *it = &ds->items[index];
    const int W = ds->cfg.width, H = ds->cfg.height, F = ds->cfg.frames;
    snprintf(clip->source, sizeof clip->source, "%s", it->video);
    if (!(clip->caption = strdup(it->caption)))
        return hl_fail(err, HELIOS_ERR_OOM, "dataset: out of memory");
    const int64_t sw = it->src_width, sh = it->src_height;
    int64_t rw = W, rh = H;
    if (sw * H >= sh * W) rw = (sw * H + sh / 2) / sh; /* wider: fit the height */
    else rh = (sh * W + sw / 2) / sw;                  /* taller: fit the width */
    if (rw < W) rw = W;
    if (rh < H) rh = H;
    if (rw > HELIOS_MAX_SIDE || rh > HELIOS_MAX_SIDE)
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "%s: %lldx%lld is too elongated to cover %dx%d (it would need %lldx%lld)",
                       it->video, (long long)sw, (long long)sh, W, H, (long long)rw, (long long)rh);
    const int64_t x0 = (rw - W) / 2, y0 = (rh - H) / 2;
    hl_video_reader *r = NULL;
    HL_TRY(hl_video_reader_open(it->video, (int)rw, (int)rh, &r, err));
    const size_t in_plane = (size_t)rw * rh, out_plane = (size_t)W * H;
    float *frame = malloc(3 * in_plane * sizeof *frame);
    hl_status st = frame ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "dataset: out of memory");
    for (int t = 0; st == HL_OK && t < F; t++) {
        int got = 0;
        st = hl_video_reader_read(r, frame, 1, 0, 1, &got, err);
        if (st == HL_OK && got != 1) {
            st = hl_fail(err, HELIOS_ERR_FORMAT,
                         "%s: ends after %d frames, a clip needs %d (changed since the dataset "
                         "was opened?)",
                         it->video, t, F);
            break;
        }
        for (int ch = 0; st == HL_OK && ch < 3; ch++)
            for (int y = 0; y < H; y++)
                memcpy(clip->pixels + ((size_t)ch * F + t) * out_plane + (size_t)y * W,
                       frame + ch * in_plane + (size_t)(y0 + y) * rw + x0,
                       (size_t)W * sizeof *frame);
    }
    free(frame);
    hl_video_reader_free(r);
    return st;
}

hl_status hl_dataset_get(hl_dataset *ds, int64_t index, hl_clip *clip, hl_error *err) {
    memset(clip, 0, sizeof *clip);
    if (index < 0 || index >= ds->n)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "dataset: clip %lld of %lld", (long long)index,
                       (long long)ds->n);
    const hl_dataset_config *c = &ds->cfg;
    clip->frames = c->frames, clip->height = c->height, clip->width = c->width;
    clip->pixels = malloc((size_t)3 * c->frames * c->height * c->width * sizeof *clip->pixels);
    hl_status st = clip->pixels ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "dataset: out of memory");
    if (st == HL_OK)
        st = c->kind == HL_DATASET_WORLD ? get_world(ds, index, clip, err)
                                         : get_video(ds, index, clip, err);
    if (st != HL_OK) hl_clip_free(clip);
    return st;
}

void hl_clip_free(hl_clip *clip) {
    if (!clip) return;
    free(clip->pixels);
    free(clip->caption);
    clip->pixels = NULL;
    clip->caption = NULL;
}
