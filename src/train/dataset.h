/* Training clips: pixel frames and a caption per index, from a folder of videos or from the tiny
 * world (docs/data.md).
 *
 * Folder source: DIR/<name>.<ext> is a video (ext one of HL_DATASET_VIDEO_EXTS, any format FFmpeg
 * decodes in such a container) and DIR/<name>.txt its caption (UTF-8; surrounding white space
 * trimmed; must not be empty). Other files and hidden ones (".name") are ignored. Clips are the
 * videos in byte order of their names, one clip per video: its first `frames` frames, resized
 * (Lanczos, keeping the aspect ratio) so the frame covers width x height, then center-cropped.
 * hl_dataset_open checks every video (it must open and decode) and every caption: an unreadable
 * video, a missing or empty caption is an error naming the file; a video with fewer than `frames`
 * frames is skipped with a warning naming it.
 *
 * World source: clip i is a random scene of the tiny world (src/world) seeded by
 * hl_dataset_clip_seed(seed, i), frames 0 .. frames-1 at fps, without scene changes, so its
 * caption (frame 0's, the world's own words) holds for the whole clip.
 *
 * Every clip is a pure function of the configuration and the index: the same index gives the
 * same bytes (world: on the same build). A dataset is not thread-safe (one caller at a time). */
#ifndef HL_TRAIN_DATASET_H
#define HL_TRAIN_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* The video file endings the folder source looks at (lower or upper case). */
#define HL_DATASET_VIDEO_EXTS "mp4, m4v, mov, mkv, webm, avi, y4m, gif"

typedef enum hl_dataset_kind {
    HL_DATASET_FOLDER = 0, /* videos + captions in a folder */
    HL_DATASET_WORLD,      /* the tiny world */
} hl_dataset_kind;

typedef struct hl_dataset_config {
    hl_dataset_kind kind;
    const char *folder; /* HL_DATASET_FOLDER: the folder (copied) */
    int width, height;  /* clip size in pixels (640 x 384, the released preprocessing) */
    int frames;         /* frames per clip (33 = one chunk of 9 latent frames) */
    /* world only */
    uint64_t seed;   /* clip i uses hl_dataset_clip_seed(seed, i) */
    int64_t n_clips; /* number of clips (1024) */
    int fps;         /* 24 */
    int max_objects; /* 4 (1..6) */
    int camera;      /* 1: scenes may pan the camera */
    int lighting;    /* 1: scenes may change the light */
} hl_dataset_config;

/* The defaults above, kind HL_DATASET_WORLD. */
void hl_dataset_config_default(hl_dataset_config *c);
/* A configuration's "source" string: "world" selects the tiny world, anything else is a folder
 * (a folder called world is "./world"). The string is not copied. */
void hl_dataset_config_set_source(hl_dataset_config *c, const char *source);

typedef struct hl_dataset hl_dataset;

/* One clip: pixels (3, frames, height, width) in [-1, 1] (the layout the VAE encodes). */
typedef struct hl_clip {
    int frames, height, width;
    float *pixels;
    char *caption;
    char source[512]; /* the video file, or "world seed S" */
} hl_clip;

/* Checks the configuration (sizes 16..HELIOS_MAX_SIDE, multiples of 8; frames >= 1; world:
 * n_clips >= 1) and, for a folder, scans it as described above. Errors name the field or file. */
hl_status hl_dataset_open(const hl_dataset_config *c, hl_dataset **out, hl_error *err);
void hl_dataset_free(hl_dataset *ds);

int64_t hl_dataset_count(const hl_dataset *ds);
const hl_dataset_config *hl_dataset_get_config(const hl_dataset *ds);
/* The number of videos the folder scan skipped as too short (0 for the world). */
int hl_dataset_skipped(const hl_dataset *ds);

/* What identifies clip `index`'s content without decoding it, for caches: the world's clip seed,
 * or the video's name, size and modification time with the caption's hash; into buf (n bytes;
 * HL_DATASET_ID_MAX is enough). "" for a bad index. Returns buf. */
#define HL_DATASET_ID_MAX 256
const char *hl_dataset_clip_id(const hl_dataset *ds, int64_t index, char *buf, size_t n);

/* Clip `index` (0 .. count-1) into *clip (allocated; free with hl_clip_free). Errors (a video
 * that no longer decodes, or has fewer frames than the scan saw) name the file. */
hl_status hl_dataset_get(hl_dataset *ds, int64_t index, hl_clip *clip, hl_error *err);
void hl_clip_free(hl_clip *clip);

/* The world seed of clip i: splitmix64 of seed and i, so clips are independent streams. */
uint64_t hl_dataset_clip_seed(uint64_t seed, int64_t i);

#endif
