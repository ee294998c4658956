/* Media input/output: MP4 / Y4M / PNG writers and the FFmpeg readers, round trips on a synthetic
 * moving pattern, the temp-name + rename protocol, interrupted writers, hostile inputs, and
 * (when the ffprobe / ffmpeg CLIs are installed) what ffprobe says about our MP4 and reading of
 * formats we do not write (JPEG, WebP, WebM, MKV). Everything is written under one mkdtemp
 * directory, removed at the end. */
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/media.h"
#include "test_util.h"

/* 128 wide: at widths whose half is not a multiple of 64, x264's AVX-512 lookahead makes the
 * MP4 bytes depend on heap contents (see video_mp4.c); keep the test's numbers stable. */
enum { W = 128, H = 96, T = 20 };

static char g_dir[256];
static bool g_have_ffprobe, g_have_ffmpeg;

/* ---- helpers -------------------------------------------------------------------------------- */

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", g_dir, name);
    return p;
}

static bool exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void spit(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

/* A smooth moving pattern in [-0.9, 0.9], (3, T, H, W): slow enough in space for 4:2:0 chroma
 * and H.264, different in every channel and frame. */
static float *make_pattern(void) {
    float *x = malloc(sizeof(float) * 3 * T * H * W);
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < W; j++) {
                    double v;
                    if (c == 0) v = sin(0.09 * j + 0.35 * t);
                    else if (c == 1) v = cos(0.11 * i - 0.25 * t);
                    else v = sin(0.05 * (i + j) + 0.2 * t + 1.0);
                    x[(((size_t)c * T + t) * H + i) * W + j] = (float)(0.9 * v);
                }
    return x;
}

/* What a lossless round trip gives: quantized, then v / 255 * 2 - 1. */
static float *quantized(const float *x, size_t n) {
    float *q = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        q[i] = (float)hl_video_quantize(x[i], HL_QUANT_ROUND) / 255.0f * 2.0f - 1.0f;
    return q;
}

static double mean_abs_diff(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs((double)a[i] - b[i]);
    return s / (double)n;
}

/* Frames [t0, t0+n) of a (3, T, H, W) block compared with a (3, n, H, W) one. */
static void compare_frames(const float *ref, int Tref, int t0, const float *got, int n,
                           double *maxd, double *meand) {
    const size_t plane = (size_t)H * W;
    double m = 0, s = 0;
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < n; t++) {
            const float *a = ref + ((size_t)c * Tref + t0 + t) * plane;
            const float *b = got + ((size_t)c * n + t) * plane;
            double d = max_abs_diff(a, b, (int64_t)plane);
            if (d > m) m = d;
            s += mean_abs_diff(a, b, plane);
        }
    *maxd = m;
    *meand = s / (3.0 * n);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* Runs a shell command, returns its first `cap` bytes of stdout. */
static int run_capture(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    return pclose(p);
}

/* Writes frames [0, T) of x to path in two calls (10 + 10), the second from the block's middle. */
static hl_status write_two_chunks(const char *path, const float *x, const hl_video_params *p,
                                  hl_error *err) {
    hl_video_writer *w = NULL;
    HL_TRY(hl_video_writer_open(path, W, H, p, &w, err));
    hl_status st = hl_video_writer_write(w, x, T, 0, T / 2, err);
    if (st == HL_OK) st = hl_video_writer_write(w, x, T, T / 2, T - T / 2, err);
    if (st != HL_OK) {
        hl_video_writer_discard(w);
        return st;
    }
    return hl_video_writer_close(w, err);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_quantize(void) {
    CHECK(hl_video_quantize(-1.0f, HL_QUANT_ROUND) == 0, "-1 -> 0");
    CHECK(hl_video_quantize(1.0f, HL_QUANT_ROUND) == 255, "1 -> 255");
    CHECK(hl_video_quantize(5.0f, HL_QUANT_ROUND) == 255, "clamp high");
    CHECK(hl_video_quantize(-7.0f, HL_QUANT_TRUNC) == 0, "clamp low");
    CHECK(hl_video_quantize(NAN, HL_QUANT_ROUND) == 0, "NaN -> 0");
    /* 0 -> 0.5 * 255 = 127.5: half to even gives 128, truncation 127. */
    CHECK(hl_video_quantize(0.0f, HL_QUANT_ROUND) == 128, "0 -> 128 (round)");
    CHECK(hl_video_quantize(0.0f, HL_QUANT_TRUNC) == 127, "0 -> 127 (trunc)");
    /* v * 255 = 2.5 exactly needs v = 1/102 (not representable); use the float32 value that
     * lands on x.5 when it exists, else the rounding is unambiguous anyway: check monotony. */
    int prev = 0;
    bool mono = true;
    for (int i = 0; i <= 2000; i++) {
        int q = hl_video_quantize(-1.0f + 2.0f * (float)i / 2000.0f, HL_QUANT_ROUND);
        if (q < prev) mono = false;
        prev = q;
    }
    CHECK(mono && prev == 255, "monotone over [-1, 1]");
    /* Exact levels survive: x = k / 255 * 2 - 1 quantizes back to k for every k. */
    bool exact = true;
    for (int k = 0; k < 256; k++) {
        float x = (float)k / 255.0f * 2.0f - 1.0f;
        if (hl_video_quantize(x, HL_QUANT_ROUND) != k) exact = false;
    }
    CHECK(exact, "k/255*2-1 -> k for all 8-bit k");
}

/* BT.601 limited range: black 16, white 235, grey has neutral chroma; both sitings. */
static void test_yuv(void) {
    const uint8_t colours[4][3] = {{0, 0, 0}, {255, 255, 255}, {128, 128, 128}, {255, 0, 0}};
    const uint8_t want[4][3] = {{16, 128, 128}, {235, 128, 128}, {126, 128, 128}, {81, 90, 240}};
    for (int k = 0; k < 4; k++)
        for (int s = 0; s < 2; s++) {
            uint8_t rgb[4 * 6 * 3], y[24], u[6], v[6];
            for (int i = 0; i < 24; i++) memcpy(rgb + 3 * i, colours[k], 3);
            hl_rgb_to_yuv420(rgb, 6, 4, s ? HL_CHROMA_LEFT : HL_CHROMA_CENTER, y, u, v);
            CHECK(y[0] == want[k][0] && y[23] == want[k][0] && u[0] == want[k][1] &&
                      v[5] == want[k][2],
                  "colour %d siting %d: yuv %d %d %d", k, s, y[0], u[0], v[5]);
        }
    /* Odd sizes: chroma planes are rounded up and the edge repeated (a flat image stays flat). */
    uint8_t rgb[5 * 3 * 3], y[15], u[6], v[6];
    memset(rgb, 200, sizeof rgb);
    hl_rgb_to_yuv420(rgb, 5, 3, HL_CHROMA_LEFT, y, u, v);
    CHECK(u[5] == 128 && v[5] == 128 && y[14] == y[0], "odd size edge");
}

static void test_kind_of(void) {
    hl_error err;
    hl_video_kind k;
    bool out;
    CHECK(hl_video_kind_of("a/b.MP4", &k, &out, &err) == HL_OK && k == HL_VIDEO_MP4 && !out, "mp4");
    CHECK(hl_video_kind_of("x.y4m", &k, &out, &err) == HL_OK && k == HL_VIDEO_Y4M && !out, "y4m");
    CHECK(hl_video_kind_of("-", &k, &out, &err) == HL_OK && k == HL_VIDEO_Y4M && out, "stdout");
    CHECK(hl_video_kind_of("frames/", &k, &out, &err) == HL_OK && k == HL_VIDEO_PNG_DIR, "dir/");
    CHECK(hl_video_kind_of(g_dir, &k, &out, &err) == HL_OK && k == HL_VIDEO_PNG_DIR,
          "existing dir");
    CHECK(hl_video_kind_of("movie.avi", &k, &out, &err) == HELIOS_ERR_UNSUPPORTED &&
              strstr(err.msg, "movie.avi"),
          "avi refused: %s", err.msg);
}

/* V2V's read: frame 0 and the newest frames, the same values as a whole read, the rest counted
 * as skipped; a tail longer than the video keeps everything. Reads a.y4m from test_y4m. */
static void test_read_tail(void) {
    const char *path = tpath("a.y4m");
    hl_error err;
    hl_error_clear(&err);
    hl_media all = {0}, tail = {0};
    CHECK(hl_video_read(path, 0, 0, 0, &all, &err) == HL_OK && all.frames == T, "whole read: %s",
          err.msg);
    CHECK(hl_video_read_tail(path, 0, 0, 3, &tail, &err) == HL_OK, "tail read: %s", err.msg);
    CHECK(tail.frames == 4 && tail.skipped == T - 4, "tail 3: %d frames kept, %d skipped",
          tail.frames, tail.skipped);
    if (all.data && tail.data && tail.frames == 4) {
        const size_t plane = (size_t)W * H;
        bool same = true;
        for (int c = 0; c < 3; c++)
            for (int f = 0; f < 4; f++) {
                int src = f == 0 ? 0 : T - 4 + f; /* frame 0, then the newest three in order */
                same &= !memcmp(tail.data + ((size_t)c * 4 + f) * plane,
                                all.data + ((size_t)c * T + src) * plane, plane * sizeof(float));
            }
        CHECK(same, "tail read: frame 0 and the last 3 frames as the whole read has them");
    }
    hl_media_free(&tail);
    CHECK(hl_video_read_tail(path, 0, 0, 1000, &tail, &err) == HL_OK && tail.frames == T &&
              tail.skipped == 0,
          "a tail longer than the video keeps all %d frames (%d, %d skipped)", T, tail.frames,
          tail.skipped);
    if (all.data && tail.data && tail.frames == T)
        CHECK(!memcmp(all.data, tail.data, (size_t)3 * T * W * H * sizeof(float)),
              "long tail: same as a whole read");
    hl_media_free(&tail);
    CHECK(hl_video_read_tail(path, 0, 0, 0, &tail, &err) == HELIOS_ERR_INVALID_ARG,
          "tail 0 refused");
    hl_media_free(&all);
}

static void test_y4m(const float *x, const float *xq) {
    const char *path = tpath("a.y4m"), *part = tpath("a.y4m.part");
    hl_error err;
    hl_error_clear(&err);
    hl_video_writer *w = NULL;
    CHECK(hl_video_writer_open(path, W, H, NULL, &w, &err) == HL_OK, "y4m open: %s", err.msg);
    if (!w) return;
    CHECK(hl_video_writer_write(w, x, T, 0, 7, &err) == HL_OK, "y4m write: %s", err.msg);
    CHECK(hl_video_writer_write(w, x, T, 7, T - 7, &err) == HL_OK, "y4m write: %s", err.msg);
    CHECK(hl_video_writer_frames(w) == T, "frames counted");
    CHECK(!exists(path) && exists(part), "y4m: only the .part exists before close");
    CHECK(hl_video_writer_close(w, &err) == HL_OK, "y4m close: %s", err.msg);
    CHECK(exists(path) && !exists(part), "y4m: renamed on close");

    const long frame = 6 + W * H * 3 / 2;
    size_t n = 0;
    unsigned char *b = read_file(path, &n);
    char hdr[128];
    snprintf(hdr, sizeof hdr, "YUV4MPEG2 W%d H%d F24:1 Ip A1:1 C420jpeg XCOLORRANGE=LIMITED\n", W,
             H);
    CHECK(b && n == strlen(hdr) + (size_t)T * frame, "y4m size %zu", n);
    CHECK(b && memcmp(b, hdr, strlen(hdr)) == 0, "y4m header");
    CHECK(b && memcmp(b + strlen(hdr), "FRAME\n", 6) == 0, "FRAME marker");
    free(b);

    hl_media m;
    CHECK(hl_video_read(path, 0, 0, 0, &m, &err) == HL_OK, "y4m read: %s", err.msg);
    CHECK(m.frames == T && m.width == W && m.height == H && fabs(m.fps - 24) < 1e-9,
          "y4m read: %d frames %dx%d @ %g", m.frames, m.width, m.height, m.fps);
    if (m.frames == T) {
        double md, mn;
        compare_frames(xq, T, 0, m.data, T, &md, &mn);
        printf("y4m round trip: max |err| %.4f, mean %.5f (in [-1,1] units)\n", md, mn);
        CHECK(md < 0.06 && mn < 0.008, "y4m round trip error max %.4f mean %.5f", md, mn);
    }
    hl_media_free(&m);

    /* max_frames stops early. */
    CHECK(hl_video_read(path, 0, 0, 5, &m, &err) == HL_OK && m.frames == 5, "max_frames 5");
    hl_media_free(&m);

    /* A Y4M cut inside frame 3: FFmpeg's Y4M demuxer drops the partial frame (raw formats have
     * nothing to tell a cut from the end); what must hold is no crash and only whole frames. */
    b = read_file(path, &n);
    const char *cut = tpath("cut.y4m");
    spit(cut, b, strlen(hdr) + 3 * (size_t)frame + 100);
    free(b);
    hl_status st = hl_video_read(cut, 0, 0, 0, &m, &err);
    CHECK((st == HELIOS_ERR_FORMAT && strstr(err.msg, cut)) || (st == HL_OK && m.frames == 3),
          "truncated y4m: %d %s", st, err.msg);
    if (st == HL_OK && m.frames == 3) {
        double md, mn;
        compare_frames(xq, T, 0, m.data, 3, &md, &mn);
        CHECK(md < 0.06, "cut y4m frames intact (%.4f)", md);
    }
    hl_media_free(&m);
    /* Cut inside the header: an error. */
    b = read_file(path, &n);
    spit(cut, b, 20);
    free(b);
    st = hl_video_read(cut, 0, 0, 0, &m, &err);
    CHECK(st == HELIOS_ERR_FORMAT && strstr(err.msg, cut), "y4m header cut: %d %s", st, err.msg);
}

static void test_y4m_stdout(const float *xq, const float *x) {
    const char *path = tpath("stdout.y4m");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0) _exit(2);
        hl_error err;
        if (write_two_chunks("-", x, NULL, &err) != HL_OK) _exit(3);
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "y4m to stdout child: %d", status);
    hl_media m;
    hl_error err;
    CHECK(hl_video_read(path, 0, 0, 0, &m, &err) == HL_OK && m.frames == T,
          "y4m from stdout read back: %s", err.msg);
    if (m.frames == T) {
        double md, mn;
        compare_frames(xq, T, 0, m.data, T, &md, &mn);
        CHECK(md < 0.06, "stdout y4m error %.4f", md);
    }
    hl_media_free(&m);
}

static void test_png_dir(const float *x, const float *xq) {
    const char *dir = tpath("frames/");
    hl_error err;
    hl_error_clear(&err);
    hl_video_writer *w = NULL;
    CHECK(hl_video_writer_open(dir, W, H, NULL, &w, &err) == HL_OK, "png open: %s", err.msg);
    if (!w) return;
    CHECK(hl_video_writer_write(w, x, T, 0, 3, &err) == HL_OK, "png write: %s", err.msg);
    /* Frames written are complete, renamed files already; nothing half-written remains. */
    CHECK(exists(tpath("frames/frame_000002.png")) &&
              !exists(tpath("frames/frame_000002.png.part")),
          "png frame renamed at once");
    CHECK(hl_video_writer_write(w, x, T, 3, T - 3, &err) == HL_OK, "png write: %s", err.msg);
    CHECK(hl_video_writer_close(w, &err) == HL_OK, "png close: %s", err.msg);

    int exact = 0;
    for (int t = 0; t < T; t++) {
        char name[64];
        snprintf(name, sizeof name, "frames/frame_%06d.png", t);
        char partname[80];
        snprintf(partname, sizeof partname, "%s.part", name);
        CHECK(!exists(tpath(partname)), "no %s left", partname);
        hl_media m;
        if (hl_image_read(tpath(name), 0, 0, &m, &err) != HL_OK) {
            CHECK(0, "png read %s: %s", name, err.msg);
            continue;
        }
        CHECK(m.frames == 1 && m.width == W && m.height == H, "png %dx%d", m.width, m.height);
        double md, mn;
        compare_frames(xq, T, t, m.data, 1, &md, &mn);
        if (md == 0.0) exact++;
        hl_media_free(&m);
    }
    CHECK(exact == T, "PNG round trip is exact (%d/%d frames)", exact, T);
    CHECK(!exists(tpath("frames/frame_000020.png")), "exactly T frames");

    /* Resizing: Lanczos down to 32x24 and up to 96x72 of a smooth frame stays close to the
     * pattern sampled at the new pixel centres. */
    const int sizes[2][2] = {{32, 24}, {96, 72}};
    for (int s = 0; s < 2; s++) {
        const int ow = sizes[s][0], oh = sizes[s][1];
        hl_media m;
        if (hl_image_read(tpath("frames/frame_000004.png"), ow, oh, &m, &err) != HL_OK) {
            CHECK(0, "resized read: %s", err.msg);
            continue;
        }
        CHECK(m.width == ow && m.height == oh && m.src_width == W && m.src_height == H,
              "resized %dx%d from %dx%d", m.width, m.height, m.src_width, m.src_height);
        double md = 0;
        const double sx = (double)W / ow, sy = (double)H / oh;
        for (int i = 2; i < oh - 2; i++) /* away from the borders */
            for (int j = 2; j < ow - 2; j++) {
                double u = (j + 0.5) * sx - 0.5, v = (i + 0.5) * sy - 0.5, t = 4;
                double ref[3] = {0.9 * sin(0.09 * u + 0.35 * t), 0.9 * cos(0.11 * v - 0.25 * t),
                                 0.9 * sin(0.05 * (u + v) + 0.2 * t + 1.0)};
                for (int c = 0; c < 3; c++) {
                    double d = fabs(m.data[((size_t)c * oh + i) * ow + j] - ref[c]);
                    if (d > md) md = d;
                }
            }
        printf("png resize %dx%d -> %dx%d: max |err| %.4f vs the continuous pattern\n", W, H, ow,
               oh, md);
        CHECK(md < 0.03, "resize %dx%d error %.4f", ow, oh, md);
        hl_media_free(&m);
    }
}

/* ffprobe's frame count, frame rates and codec for path (when ffprobe is installed). */
static void check_ffprobe(const char *path, int frames) {
    if (!g_have_ffprobe) {
        printf("ffprobe not installed: skipping its checks\n");
        return;
    }
    char cmd[1024], out[1024];
    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
             "stream=codec_name,pix_fmt,width,height,r_frame_rate,avg_frame_rate,nb_read_frames,"
             "color_range,color_space -of default=nw=1 '%s' 2>&1",
             path);
    int rc = run_capture(cmd, out, sizeof out);
    printf("ffprobe %s:\n%s", strrchr(path, '/') + 1, out);
    char want[64];
    snprintf(want, sizeof want, "nb_read_frames=%d\n", frames);
    CHECK(rc == 0, "ffprobe exit %d", rc);
    CHECK(strstr(out, want), "ffprobe frame count (want %d)", frames);
    CHECK(strstr(out, "codec_name=h264\n"), "ffprobe codec");
    CHECK(strstr(out, "pix_fmt=yuv420p\n"), "ffprobe pix_fmt");
    CHECK(strstr(out, "r_frame_rate=24/1\n") && strstr(out, "avg_frame_rate=24/1\n"),
          "ffprobe fps");
    snprintf(want, sizeof want, "width=%d\nheight=%d\n", W, H);
    CHECK(strstr(out, want), "ffprobe size");
    CHECK(strstr(out, "color_range=tv\n") && strstr(out, "color_space=smpte170m\n"),
          "ffprobe colour tags");
    /* Every frame decodes without a single error message. */
    snprintf(cmd, sizeof cmd, "ffmpeg -v error -i '%s' -f null - 2>&1", path);
    rc = run_capture(cmd, out, sizeof out);
    CHECK(rc == 0 && out[0] == '\0', "ffmpeg decodes %s cleanly: %s", path, out);
}

static void test_mp4(const float *x, const float *xq) {
    const char *path = tpath("v.mp4"), *part = tpath("v.mp4.part");
    hl_error err;
    hl_error_clear(&err);
    hl_video_writer *w = NULL;
    CHECK(hl_video_writer_open(path, W, H, NULL, &w, &err) == HL_OK, "mp4 open: %s", err.msg);
    if (!w) return;
    CHECK(hl_video_writer_write(w, x, T, 0, 9, &err) == HL_OK, "mp4 write: %s", err.msg);
    CHECK(hl_video_writer_write(w, x, T, 9, T - 9, &err) == HL_OK, "mp4 write: %s", err.msg);
    CHECK(!exists(path) && exists(part), "mp4: only the .part exists before close");
    CHECK(hl_video_writer_close(w, &err) == HL_OK, "mp4 close: %s", err.msg);
    CHECK(exists(path) && !exists(part), "mp4: renamed on close");
    printf("mp4: %ld bytes for %d frames of %dx%d\n", file_size(path), T, W, H);

    hl_media m;
    CHECK(hl_video_read(path, 0, 0, 0, &m, &err) == HL_OK, "mp4 read: %s", err.msg);
    CHECK(m.frames == T && m.width == W && m.height == H && fabs(m.fps - 24) < 1e-9,
          "mp4 read: %d frames %dx%d @ %g", m.frames, m.width, m.height, m.fps);
    if (m.frames == T) {
        double md, mn;
        compare_frames(xq, T, 0, m.data, T, &md, &mn);
        printf("mp4 round trip: max |err| %.4f, mean %.5f (in [-1,1] units)\n", md, mn);
        CHECK(md < 0.25 && mn < 0.025, "mp4 round trip error max %.4f mean %.5f", md, mn);
    }
    hl_media_free(&m);
    check_ffprobe(path, T);

    /* Hostile copies of it. */
    size_t n = 0;
    unsigned char *b = read_file(path, &n);
    if (!b) return;
    const char *cut = tpath("cut.mp4");
    spit(cut, b, n * 6 / 10);
    hl_status st = hl_video_read(cut, 0, 0, 0, &m, &err);
    /* A cut fragmented MP4 still holds its complete earlier fragments; what must not happen is
     * a crash or a half-decoded frame: either an error naming the file, or only whole frames. */
    if (st == HL_OK) {
        CHECK(m.frames > 0 && m.frames < T, "cut mp4 gave %d frames", m.frames);
        double md, mn;
        compare_frames(xq, T, 0, m.data, m.frames, &md, &mn);
        CHECK(md < 0.25, "cut mp4 frames intact (%.4f)", md);
        printf("mp4 cut to 60%%: %d whole frames read\n", m.frames);
    } else {
        CHECK(st == HELIOS_ERR_FORMAT && strstr(err.msg, cut), "cut mp4: %s", err.msg);
        printf("mp4 cut to 60%%: %s\n", err.msg);
    }
    hl_media_free(&m);
    spit(cut, b, 200);
    st = hl_video_read(cut, 0, 0, 0, &m, &err);
    CHECK(st == HELIOS_ERR_FORMAT && strstr(err.msg, cut), "mp4 header only: %d %s", st, err.msg);
    /* Garbage in the middle of the media data. */
    for (size_t i = n / 3; i < n / 3 + 400 && i < n; i++) b[i] ^= 0x5a;
    spit(tpath("garbled.mp4"), b, n);
    st = hl_video_read(tpath("garbled.mp4"), 0, 0, 0, &m, &err);
    printf("garbled mp4: status %d %s\n", st, st ? err.msg : "(decoded)");
    CHECK(st == HL_OK || st == HELIOS_ERR_FORMAT, "garbled mp4 handled: %s", err.msg);
    hl_media_free(&m);
    free(b);
}

/* A writer that is never closed (the process dies) leaves "<path>.part" with the flushed frames
 * playable. The child writes 10 frames, flushes, writes 3 more and _exit()s. */
static void test_interrupted(const float *x, const float *xq, const char *name) {
    const char *path = tpath(name);
    char part[600];
    snprintf(part, sizeof part, "%s.part", path);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        hl_video_params p;
        hl_video_params_init(&p);
        p.flush_each_write = false;
        hl_video_writer *w;
        hl_error err;
        if (hl_video_writer_open(path, W, H, &p, &w, &err) != HL_OK) _exit(2);
        if (hl_video_writer_write(w, x, T, 0, 10, &err) != HL_OK) _exit(3);
        if (hl_video_writer_flush(w, &err) != HL_OK) _exit(4);
        if (hl_video_writer_write(w, x, T, 10, 3, &err) != HL_OK) _exit(5);
        _exit(0); /* no close, no atexit, no stdio flush: as if killed */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s child exit %d", name, status);
    CHECK(!exists(path) && exists(part), "%s: no final file, a .part", name);
    hl_media m;
    hl_error err;
    hl_status st = hl_video_read(part, 0, 0, 0, &m, &err);
    CHECK(st == HL_OK, "%s.part readable: %s", name, err.msg);
    if (st == HL_OK) {
        printf("interrupted %s: %d frames in the .part\n", name, m.frames);
        CHECK(m.frames >= 10 && m.frames <= 13, "%s.part holds the flushed frames (%d)", name,
              m.frames);
        double md, mn;
        compare_frames(xq, T, 0, m.data, m.frames, &md, &mn);
        CHECK(md < 0.25, "%s.part frames match (%.4f)", name, md);
    }
    hl_media_free(&m);
    if (strstr(name, ".mp4") && g_have_ffprobe) {
        char cmd[1024], out[512];
        snprintf(cmd, sizeof cmd,
                 "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                 "stream=nb_read_frames -of default=nw=1 '%s' 2>&1",
                 part);
        run_capture(cmd, out, sizeof out);
        printf("ffprobe %s.part: %s", name, out);
        CHECK(strstr(out, "nb_read_frames=10\n"), "ffprobe reads 10 frames from the .part");
    }
}

static void test_discard(const float *x) {
    const char *names[2] = {"d.mp4", "d.y4m"};
    for (int i = 0; i < 2; i++) {
        const char *path = tpath(names[i]);
        char part[600];
        snprintf(part, sizeof part, "%s.part", path);
        hl_video_writer *w;
        hl_error err;
        if (hl_video_writer_open(path, W, H, NULL, &w, &err) != HL_OK) {
            CHECK(0, "open %s: %s", path, err.msg);
            continue;
        }
        CHECK(hl_video_writer_write(w, x, T, 0, 2, &err) == HL_OK, "write: %s", err.msg);
        hl_video_writer_discard(w);
        CHECK(!exists(path) && !exists(part), "discard leaves nothing: %s", names[i]);
    }
    hl_video_writer_discard(NULL);
}

static void test_writer_errors(const float *x) {
    hl_error err;
    hl_video_writer *w = (hl_video_writer *)1;
    CHECK(hl_video_writer_open(tpath("odd.mp4"), 63, 48, NULL, &w, &err) ==
                  HELIOS_ERR_INVALID_ARG &&
              !w && strstr(err.msg, "odd.mp4"),
          "odd width refused: %s", err.msg);
    CHECK(hl_video_writer_open(tpath("nodir/x.mp4"), W, H, NULL, &w, &err) == HELIOS_ERR_IO &&
              strstr(err.msg, "nodir/x.mp4"),
          "missing directory: %s", err.msg);
    CHECK(hl_video_writer_open(tpath("nodir/x.y4m"), W, H, NULL, &w, &err) == HELIOS_ERR_IO &&
              strstr(err.msg, "nodir/x.y4m"),
          "missing directory (y4m): %s", err.msg);
    CHECK(hl_video_writer_open(tpath("x.avi"), W, H, NULL, &w, &err) == HELIOS_ERR_UNSUPPORTED,
          "avi: %s", err.msg);
    CHECK(hl_video_writer_open(tpath("x.y4m"), 0, H, NULL, &w, &err) == HELIOS_ERR_INVALID_ARG,
          "zero width");
    hl_video_params p;
    hl_video_params_init(&p);
    p.fps = 0;
    CHECK(hl_video_writer_open(tpath("x.y4m"), W, H, &p, &w, &err) == HELIOS_ERR_INVALID_ARG,
          "fps 0");
    /* A file where the PNG directory should be. */
    spit(tpath("afile"), "x", 1);
    CHECK(hl_video_writer_open(tpath("afile/"), W, H, NULL, &w, &err) == HELIOS_ERR_IO,
          "file as directory: %s", err.msg);
    /* Bad frame ranges. */
    if (hl_video_writer_open(tpath("r.y4m"), W, H, NULL, &w, &err) == HL_OK) {
        CHECK(hl_video_writer_write(w, x, T, 15, 6, &err) == HELIOS_ERR_INVALID_ARG,
              "past the block");
        CHECK(hl_video_writer_write(w, x, T, -1, 2, &err) == HELIOS_ERR_INVALID_ARG, "negative t0");
        hl_video_writer_discard(w);
    }
}

static void expect_read_error(const char *path, hl_status want, const char *what) {
    hl_media m;
    hl_error err;
    hl_error_clear(&err);
    hl_status st = hl_image_read(path, 0, 0, &m, &err);
    CHECK(st == want && strstr(err.msg, path) && m.data == NULL, "%s: got %d '%s' (want %d)", what,
          st, err.msg, want);
    printf("  %-22s -> %s\n", what, err.msg + strlen(g_dir) + 1);
    st = hl_video_read(path, 16, 16, 0, &m, &err);
    CHECK(st == want && strstr(err.msg, path), "%s (video): %d '%s'", what, st, err.msg);
    hl_media_free(&m);
}

static void test_read_errors(void) {
    printf("read errors:\n");
    expect_read_error(tpath("missing.png"), HELIOS_ERR_IO, "missing file");
    expect_read_error(g_dir, HELIOS_ERR_INVALID_ARG, "a directory");
    spit(tpath("empty.png"), "", 0);
    expect_read_error(tpath("empty.png"), HELIOS_ERR_FORMAT, "empty file");
    const char *text = "this is not an image, just some words in a text file.\n";
    spit(tpath("text.png"), text, strlen(text));
    expect_read_error(tpath("text.png"), HELIOS_ERR_FORMAT, "text named .png");
    spit(tpath("text.mp4"), text, strlen(text));
    expect_read_error(tpath("text.mp4"), HELIOS_ERR_FORMAT, "text named .mp4");
    unsigned char noise[4096];
    float r[4096];
    fill_random(r, 4096, 7);
    for (int i = 0; i < 4096; i++) noise[i] = (unsigned char)(r[i] * 127.0f + 128.0f);
    spit(tpath("noise.webm"), noise, sizeof noise);
    expect_read_error(tpath("noise.webm"), HELIOS_ERR_FORMAT, "random bytes");

    size_t n = 0;
    unsigned char *b = read_file(tpath("frames/frame_000000.png"), &n);
    if (b) {
        spit(tpath("trunc.png"), b, n / 2);
        expect_read_error(tpath("trunc.png"), HELIOS_ERR_FORMAT, "truncated PNG");
        spit(tpath("sig.png"), b, 8 + 10);
        expect_read_error(tpath("sig.png"), HELIOS_ERR_FORMAT, "PNG signature only");
        for (size_t i = n / 2; i < n / 2 + 64 && i < n; i++) b[i] = 0xff;
        spit(tpath("bad.png"), b, n);
        expect_read_error(tpath("bad.png"), HELIOS_ERR_FORMAT, "garbled PNG data");
        free(b);
    }
    hl_media m;
    hl_error err;
    CHECK(hl_image_read(tpath("frames/frame_000000.png"), 16, 0, &m, &err) ==
              HELIOS_ERR_INVALID_ARG,
          "width without height");
    CHECK(hl_image_read(tpath("frames/frame_000000.png"), 16, 99999, &m, &err) ==
              HELIOS_ERR_INVALID_ARG,
          "huge target");
}

/* The streaming reader gives hl_video_read's frames one call at a time (and in blocks), its
 * info matches, the end is a clean 0, a truncated file is an error naming it (also on every
 * later call), and free takes NULL. */
static void stream_matches(const char *path, int w, int h) {
    hl_error err;
    hl_error_clear(&err);
    hl_media m = {0};
    CHECK(hl_video_read(path, w, h, 0, &m, &err) == HL_OK, "whole read of %s: %s", path, err.msg);
    hl_video_reader *r = NULL;
    CHECK(hl_video_reader_open(path, w, h, &r, &err) == HL_OK && r, "stream open %s: %s", path,
          err.msg);
    if (!m.data || !r) {
        hl_video_reader_free(r);
        hl_media_free(&m);
        return;
    }
    hl_video_info info;
    hl_video_reader_info(r, &info);
    CHECK(info.width == m.width && info.height == m.height && info.src_width == m.src_width &&
              info.src_height == m.src_height && info.fps == m.fps && info.read == 0,
          "%s: stream info %dx%d (src %dx%d) @ %g, read %lld", path, info.width, info.height,
          info.src_width, info.src_height, info.fps, (long long)info.read);
    const size_t plane = (size_t)m.width * m.height, per_c = plane * (size_t)m.frames;
    enum { B = 7 }; /* odd blocks: frames 0, then blocks of 3 into slots 2..4 of a block of 7 */
    float *blk = malloc(sizeof(float) * 3 * B * plane);
    int f = 0, got = 0;
    bool same = blk != NULL;
    while (blk) {
        const int n = f == 0 ? 1 : 3, t0 = f == 0 ? 0 : 2;
        CHECK(hl_video_reader_read(r, blk, B, t0, n, &got, &err) == HL_OK, "%s: read: %s", path,
              err.msg);
        if (got == 0 || f + got > m.frames) break;
        for (int k = 0; k < got; k++, f++)
            for (int c = 0; c < 3; c++)
                same &= !memcmp(blk + ((size_t)c * B + t0 + k) * plane,
                                m.data + (size_t)c * per_c + (size_t)f * plane,
                                plane * sizeof(float));
        if (got < n) break;
    }
    CHECK(same && f == m.frames, "%s at %dx%d: streamed %d frames, the same as hl_video_read's %d",
          path, w, h, f, m.frames);
    CHECK(hl_video_reader_read(r, blk, B, 0, 1, &got, &err) == HL_OK && got == 0,
          "%s: a read past the end gets 0 frames", path);
    hl_video_reader_info(r, &info);
    CHECK(info.read == m.frames, "%s: info.read %lld", path, (long long)info.read);
    CHECK(hl_video_reader_read(r, blk, B, 5, 3, &got, &err) == HELIOS_ERR_INVALID_ARG,
          "frames past the block refused");
    free(blk);
    hl_video_reader_free(r);
    hl_media_free(&m);
}

static void test_stream_reader(void) {
    stream_matches(tpath("a.y4m"), 0, 0);
    stream_matches(tpath("v.mp4"), 0, 0);
    stream_matches(tpath("v.mp4"), 48, 40); /* resized */
    hl_video_reader_free(NULL);

    /* truncated MP4: the frames before the cut, then an error naming the file, then again */
    size_t n = 0;
    unsigned char *b = read_file(tpath("v.mp4"), &n);
    CHECK(b != NULL, "read v.mp4");
    if (!b) return;
    spit(tpath("cut.mp4"), b, n * 2 / 3);
    free(b);
    hl_error err;
    hl_error_clear(&err);
    hl_video_reader *r = NULL;
    CHECK(hl_video_reader_open(tpath("cut.mp4"), 0, 0, &r, &err) == HL_OK && r,
          "truncated mp4: frame 0 still opens: %s", err.msg);
    if (!r) return;
    float *fr = malloc(sizeof(float) * 3 * W * H);
    int got = 0, frames = 0;
    hl_status st = HL_OK;
    while (fr && (st = hl_video_reader_read(r, fr, 1, 0, 1, &got, &err)) == HL_OK && got) frames++;
    CHECK(st == HELIOS_ERR_FORMAT && strstr(err.msg, tpath("cut.mp4")) && frames > 0 && frames < T,
          "truncated mp4: %d frames, then %d '%s'", frames, st, err.msg);
    printf("stream reader, truncated mp4: %d frames, then: %s\n", frames,
           err.msg + strlen(g_dir) + 1);
    hl_error_clear(&err);
    CHECK(hl_video_reader_read(r, fr, 1, 0, 1, &got, &err) != HL_OK && got == 0 &&
              strstr(err.msg, tpath("cut.mp4")),
          "truncated mp4: a read after the error fails too: '%s'", err.msg);
    free(fr);
    hl_video_reader_free(r);
    hl_media m;
    CHECK(hl_video_read(tpath("cut.mp4"), 0, 0, 0, &m, &err) == HELIOS_ERR_FORMAT,
          "truncated mp4: the whole read fails the same way");
    hl_media_free(&m);

    r = NULL;
    CHECK(hl_video_reader_open(tpath("missing.mp4"), 0, 0, &r, &err) == HELIOS_ERR_IO && !r &&
              strstr(err.msg, tpath("missing.mp4")),
          "stream open of a missing file: '%s'", err.msg);
    CHECK(hl_video_reader_open(tpath("v.mp4"), 16, 0, &r, &err) == HELIOS_ERR_INVALID_ARG && !r,
          "stream open: width without height");
}

/* Formats we read but do not write, made with the ffmpeg CLI from our PNG / Y4M output. */
static void test_other_formats(const float *xq) {
    if (!g_have_ffmpeg) {
        printf("ffmpeg CLI not installed: skipping JPEG/WebP/WebM/MKV reads\n");
        return;
    }
    struct {
        const char *out, *args;
        bool video;
        double tol_max, tol_mean;
    } cases[] = {
        {"f.jpg", "-i '%s/frames/frame_000000.png' -q:v 2", false, 0.06, 0.01},
        {"f420.jpg", "-i '%s/frames/frame_000000.png' -pix_fmt yuvj420p -q:v 2", false, 0.08,
         0.012},
        {"f.webp", "-i '%s/frames/frame_000000.png' -lossless 1", false, 0.0, 0.0},
        {"f.bmp", "-i '%s/frames/frame_000000.png'", false, 0.0, 0.0},
        {"v.webm", "-i '%s/a.y4m' -c:v libvpx-vp9 -crf 20 -b:v 0", true, 0.3, 0.03},
        {"v.mkv", "-i '%s/a.y4m' -c:v ffv1", true, 0.06, 0.008},
        {"v.mov", "-i '%s/a.y4m' -c:v libx264 -crf 18", true, 0.3, 0.03},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char args[600], cmd[1400];
        snprintf(args, sizeof args, cases[k].args, g_dir);
        snprintf(cmd, sizeof cmd, "ffmpeg -v error -y %s '%s' 2>&1", args, tpath(cases[k].out));
        char out[512];
        if (run_capture(cmd, out, sizeof out) != 0) {
            printf("  (ffmpeg could not make %s: %s)\n", cases[k].out, out);
            continue;
        }
        hl_media m;
        hl_error err;
        hl_status st = cases[k].video ? hl_video_read(tpath(cases[k].out), 0, 0, 0, &m, &err)
                                      : hl_image_read(tpath(cases[k].out), 0, 0, &m, &err);
        CHECK(st == HL_OK, "read %s: %s", cases[k].out, err.msg);
        if (st != HL_OK) continue;
        const int want = cases[k].video ? T : 1;
        CHECK(m.frames == want && m.width == W && m.height == H, "%s: %d frames %dx%d",
              cases[k].out, m.frames, m.width, m.height);
        if (m.frames == want) {
            double md, mn;
            compare_frames(xq, T, 0, m.data, want, &md, &mn);
            printf("  %-7s %2d frame(s), max |err| %.4f mean %.5f\n", cases[k].out, m.frames, md,
                   mn);
            CHECK(md <= cases[k].tol_max + 1e-9 && mn <= cases[k].tol_mean + 1e-9,
                  "%s error max %.4f mean %.5f", cases[k].out, md, mn);
        }
        hl_media_free(&m);
    }
    /* A grey-scale PNG and an RGBA PNG convert to RGB (alpha dropped, as PIL's convert). */
    char cmd[1200], out[256];
    snprintf(cmd, sizeof cmd,
             "ffmpeg -v error -y -i '%s/frames/frame_000000.png' -pix_fmt gray '%s' 2>&1 && "
             "ffmpeg -v error -y -i '%s/frames/frame_000000.png' -pix_fmt rgba '%s' 2>&1",
             g_dir, tpath("gray.png"), g_dir, tpath("rgba.png"));
    if (run_capture(cmd, out, sizeof out) == 0) {
        hl_media g, a;
        hl_error err;
        CHECK(hl_image_read(tpath("gray.png"), 0, 0, &g, &err) == HL_OK, "gray png: %s", err.msg);
        CHECK(hl_image_read(tpath("rgba.png"), 0, 0, &a, &err) == HL_OK, "rgba png: %s", err.msg);
        if (g.data) {
            const size_t plane = (size_t)W * H;
            CHECK(max_abs_diff(g.data, g.data + plane, (int64_t)plane) == 0 &&
                      max_abs(g.data, (int64_t)(3 * plane)) <= 1.0,
                  "gray: equal channels in range");
        }
        if (a.data) {
            double md, mn;
            compare_frames(xq, T, 0, a.data, 1, &md, &mn);
            CHECK(md == 0, "rgba png = rgb (%.4f)", md);
        }
        hl_media_free(&g);
        hl_media_free(&a);
    }
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/helios_media_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    g_have_ffprobe = system("command -v ffprobe >/dev/null 2>&1") == 0;
    g_have_ffmpeg = system("command -v ffmpeg >/dev/null 2>&1") == 0;

    float *x = make_pattern();
    float *xq = quantized(x, (size_t)3 * T * H * W);

    test_quantize();
    test_yuv();
    test_kind_of();
    test_y4m(x, xq);
    test_read_tail();
    test_y4m_stdout(xq, x);
    test_png_dir(x, xq);
    test_mp4(x, xq);
    test_interrupted(x, xq, "int.mp4");
    test_interrupted(x, xq, "int.y4m");
    test_discard(x);
    test_writer_errors(x);
    test_read_errors();
    test_stream_reader();
    test_other_formats(xq);

    free(x);
    free(xq);
    if (getenv("HELIOS_KEEP_TMP")) printf("kept %s\n", g_dir);
    else nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return test_done("test_media");
}
