/* Helpers shared by the media writers and readers: quantization, RGB -> YUV 4:2:0, temp names,
 * commit (fsync + rename), and FFmpeg log routing. */
#include "io/media.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <libavutil/error.h>
#include <libavutil/log.h>

#include "core/log.h"

uint8_t hl_video_quantize(float x, hl_quant q) {
    /* float32 throughout, like the torch/numpy reference: x * 0.5 + 0.5 rounds once and equals
     * (x + 1) / 2 in float32; clamp; * 255; round half to even (rintf in the default rounding
     * mode) or truncate. */
    if (isnan(x)) return 0;
    float v = x * 0.5f + 0.5f;
    if (v < 0.0f) v = 0.0f;
    if (v > 1.0f) v = 1.0f;
    v *= 255.0f;
    v = (q == HL_QUANT_TRUNC) ? truncf(v) : rintf(v);
    return (uint8_t)v;
}

/* BT.601 limited range, 8-bit, in 1/2^16 fixed point (coefficients of Rec. 601 scaled by
 * 219/255 for luma and 224/255 for chroma). */
enum { YUV_SHIFT = 16 };
#define FIX(x) ((int32_t)((x) * (1 << YUV_SHIFT) + 0.5))

static inline uint8_t yuv_luma(int r, int g, int b) {
    int32_t y = FIX(0.256788) * r + FIX(0.504129) * g + FIX(0.097906) * b;
    return (uint8_t)(16 + ((y + (1 << (YUV_SHIFT - 1))) >> YUV_SHIFT));
}

/* r, g, b are weighted sums of samples whose weights add up to 1 << wbits (the mean is folded
 * into the shift). */
static inline void yuv_chroma(int r, int g, int b, int wbits, uint8_t *u, uint8_t *v) {
    int32_t cb = -FIX(0.148223) * r - FIX(0.290993) * g + FIX(0.439216) * b;
    int32_t cr = FIX(0.439216) * r - FIX(0.367788) * g - FIX(0.071427) * b;
    const int sh = YUV_SHIFT + wbits, half = 1 << (sh - 1);
    /* Arithmetic shift of a negative value floors; adding 128 << sh first keeps it positive. */
    int32_t ub = (cb + (128 << sh) + half) >> sh, vb = (cr + (128 << sh) + half) >> sh;
    *u = (uint8_t)(ub < 0 ? 0 : ub > 255 ? 255 : ub);
    *v = (uint8_t)(vb < 0 ? 0 : vb > 255 ? 255 : vb);
}

static inline int clampi(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }

void hl_rgb_to_yuv420(const uint8_t *rgb, int width, int height, hl_chroma_siting siting,
                      uint8_t *y, uint8_t *u, uint8_t *v) {
    for (int i = 0; i < height; i++)
        for (int j = 0; j < width; j++) {
            const uint8_t *p = rgb + ((size_t)i * width + j) * 3;
            y[(size_t)i * width + j] = yuv_luma(p[0], p[1], p[2]);
        }
    /* Centred: the mean of each 2x2 block. Left: columns 2k-1, 2k, 2k+1 weighted 1, 2, 1 (the
     * sample sits on column 2k), the two rows averaged. Edges repeat the last row/column. */
    static const int w_centre[3] = {0, 1, 1}, w_left[3] = {1, 2, 1};
    const int *wx = siting == HL_CHROMA_LEFT ? w_left : w_centre;
    const int wbits = siting == HL_CHROMA_LEFT ? 3 : 2; /* 2 rows x (1+2+1) or 2 x (1+1) */
    const int cw = (width + 1) / 2, ch = (height + 1) / 2;
    for (int i = 0; i < ch; i++)
        for (int j = 0; j < cw; j++) {
            int r = 0, g = 0, b = 0;
            for (int di = 0; di < 2; di++)
                for (int dj = -1; dj <= 1; dj++) {
                    const int wgt = wx[dj + 1];
                    if (!wgt) continue;
                    const int yy = clampi(2 * i + di, 0, height - 1);
                    const int xx = clampi(2 * j + dj, 0, width - 1);
                    const uint8_t *p = rgb + ((size_t)yy * width + xx) * 3;
                    r += wgt * p[0], g += wgt * p[1], b += wgt * p[2];
                }
            yuv_chroma(r, g, b, wbits, &u[(size_t)i * cw + j], &v[(size_t)i * cw + j]);
        }
}

char *hl_media_part_name(const char *path) {
    size_t n = strlen(path);
    char *s = malloc(n + 6);
    if (!s) return NULL;
    memcpy(s, path, n);
    memcpy(s + n, ".part", 6);
    return s;
}

int hl_media_part_create(const char *tmp, hl_error *err) {
    /* No O_TRUNC before the lock is ours: the file may be another run's, mid-write. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        hl_fail(err, HELIOS_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            hl_fail(err, HELIOS_ERR_IO,
                    "%s is being written by another run (two runs cannot write the same output)",
                    tmp);
        else hl_fail(err, HELIOS_ERR_IO, "%s: cannot lock: %s", tmp, strerror(e));
        return -1;
    }
    if (ftruncate(fd, 0) != 0) { /* a killed run's leftover, now ours */
        int e = errno;
        close(fd);
        hl_fail(err, HELIOS_ERR_IO, "%s: cannot truncate: %s", tmp, strerror(e));
        return -1;
    }
    return fd;
}

hl_status hl_media_commit(int fd, const char *tmp, const char *final, hl_error *err) {
    /* fsync before rename: after a power loss the final name holds either the old file or the
     * complete new one, never an empty one. The lock on fd is held through the rename, so no
     * other run can take the .part over between the last write and the rename. */
    if (fsync(fd) != 0 && errno != EINVAL) /* EINVAL: the file system cannot sync */
        return hl_fail(err, HELIOS_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (rename(tmp, final) != 0)
        return hl_fail(err, HELIOS_ERR_IO, "cannot rename %s to %s: %s", tmp, final,
                       strerror(errno));
    return HL_OK;
}

const char *hl_media_averr(int code, char *buf, int n) {
    if (av_strerror(code, buf, (size_t)n) < 0) snprintf(buf, (size_t)n, "error %d", code);
    return buf;
}

static void ffmpeg_log(void *avcl, int level, const char *fmt, va_list vl) {
    if (level > AV_LOG_WARNING) return; /* info/verbose/debug: x264 banners and the like */
    char line[1024];
    int prefix = 1;
    av_log_format_line2(avcl, level, fmt, vl, line, sizeof line, &prefix);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
    if (n > 0) HL_DEBUG("ffmpeg: %s", line);
}

static pthread_once_t g_ffmpeg_once = PTHREAD_ONCE_INIT;
static void ffmpeg_init_once(void) { av_log_set_callback(ffmpeg_log); }

void hl_media_ffmpeg_init(void) { pthread_once(&g_ffmpeg_once, ffmpeg_init_once); }
