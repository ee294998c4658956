/* helios world — renders the tiny world (video, captions, ground truth) from a seed.
 * A client of helios.h only. Option parsing is self-contained (strict number checks) so it can
 * move to a shared parser. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helios.h"
#include "tools/commands.h"

typedef struct world_opts {
    helios_world_params wp;
    const char *output, *truth, *captions;
    long long frames; /* < 0: unbounded */
    int quiet;
} world_opts;

static void usage(FILE *f) {
    helios_world_params p;
    helios_world_params_init(&p);
    fprintf(
        f,
        "usage: helios world -o OUTPUT [options]\n"
        "\n"
        "Renders the tiny world -- a few shapes moving over a background, with captions and\n"
        "per-frame ground truth -- deterministically from a seed (docs/world.md).\n"
        "\n"
        "  -o, --output PATH        out.mp4 | out.y4m | - (Y4M on stdout) | dir/ (PNG frames) |\n"
        "                           none (render only: report the speed)\n"
        "      --seed S             scene seed (default 0)\n"
        "      --width W --height H frame size in pixels, 16..8192 (default %dx%d)\n"
        "      --frames N           frames to render (default 240); -1 = no end (until stopped)\n"
        "      --seconds S          length in seconds instead of --frames\n"
        "      --fps N              frames per second (default %d)\n"
        "      --prompt TEXT        render the scene this caption describes (no scene changes)\n"
        "      --max-objects N      at most N objects at once, 1..6 (default %d)\n"
        "      --no-events          no object enters or leaves, the background keeps its colour\n"
        "      --no-camera          no camera pan\n"
        "      --no-lighting        no lighting change\n"
        "      --truth FILE         ground truth: one JSON line per frame (includes the caption)\n"
        "      --captions FILE      \"FRAME<TAB>CAPTION\" each time the caption changes\n"
        "  -q, --quiet              no summary line\n",
        p.width, p.height, p.fps, p.max_objects);
}

static int bad_value(const char *opt, const char *v, const char *want) {
    fprintf(stderr, "helios world: %s '%s': want %s\n", opt, v, want);
    return 2;
}

static int parse_ll(const char *opt, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        char want[96];
        snprintf(want, sizeof want, "an integer in %lld..%lld", lo, hi);
        return bad_value(opt, v, want);
    }
    *out = x;
    return 0;
}

static int parse_int(const char *opt, const char *v, int lo, int hi, int *out) {
    long long x;
    int rc = parse_ll(opt, v, lo, hi, &x);
    if (!rc) *out = (int)x;
    return rc;
}

static int parse(int argc, char **argv, world_opts *o) {
    memset(o, 0, sizeof *o);
    helios_world_params_init(&o->wp);
    o->frames = 240;
    double seconds = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
#define ARG(s, l) ((!strcmp(a, s) || !strcmp(a, l)) && v && ++i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (ARG("-o", "--output")) o->output = v;
        else if (ARG("--seed", "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-')
                return bad_value(a, v, "an integer in 0..2^64-1");
            o->wp.seed = s;
        } else if (ARG("--width", "--width")) rc = parse_int(a, v, 16, 8192, &o->wp.width);
        else if (ARG("--height", "--height")) rc = parse_int(a, v, 16, 8192, &o->wp.height);
        else if (ARG("--frames", "--frames")) {
            rc = parse_ll(a, v, -1, INT64_MAX, &o->frames);
            if (!rc && o->frames == 0) rc = bad_value(a, v, "at least 1 (or -1: no end)");
        } else if (ARG("--seconds", "--seconds")) {
            char *end;
            errno = 0;
            seconds = strtod(v, &end);
            if (errno || end == v || *end || !(seconds > 0) || seconds > 1e9)
                return bad_value(a, v, "a positive number of seconds");
        } else if (ARG("--fps", "--fps")) rc = parse_int(a, v, 1, 1000, &o->wp.fps);
        else if (ARG("--prompt", "--prompt")) o->wp.prompt = v;
        else if (ARG("--max-objects", "--max-objects"))
            rc = parse_int(a, v, 1, 6, &o->wp.max_objects);
        else if (ARG("--truth", "--truth")) o->truth = v;
        else if (ARG("--captions", "--captions")) o->captions = v;
        else if (!strcmp(a, "--no-events")) o->wp.events = 0;
        else if (!strcmp(a, "--no-camera")) o->wp.camera = 0;
        else if (!strcmp(a, "--no-lighting")) o->wp.lighting = 0;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o->quiet = 1;
        else {
            fprintf(stderr, "helios world: unknown or incomplete option '%s' (see --help)\n", a);
            return 2;
        }
#undef ARG
        if (rc) return rc;
    }
    if (!o->output) {
        fprintf(stderr, "helios world: -o OUTPUT is required (see --help)\n");
        return 2;
    }
    if (seconds > 0) {
        o->frames = llround(seconds * o->wp.fps);
        if (o->frames < 1) o->frames = 1;
    }
    return 0;
}

/* A text output written under "<path>.part" and renamed when complete. */
typedef struct text_out {
    const char *path;
    char *part;
    FILE *f;
} text_out;

static int text_open(text_out *t, const char *path) {
    t->path = path;
    if (!path) return 0;
    size_t n = strlen(path) + 6;
    t->part = malloc(n);
    if (!t->part) return -1;
    snprintf(t->part, n, "%s.part", path);
    t->f = fopen(t->part, "w");
    if (!t->f) {
        fprintf(stderr, "helios world: cannot create %s: %s\n", t->part, strerror(errno));
        return -1;
    }
    return 0;
}

static int text_close(text_out *t, int ok) {
    int rc = 0;
    if (t->f) {
        if (fclose(t->f) != 0 && ok) {
            fprintf(stderr, "helios world: writing %s: %s\n", t->part, strerror(errno));
            rc = -1;
        }
        if (ok && !rc && rename(t->part, t->path) != 0) {
            fprintf(stderr, "helios world: cannot rename %s to %s: %s\n", t->part, t->path,
                    strerror(errno));
            rc = -1;
        }
        if (!ok || rc) remove(t->part);
    }
    free(t->part);
    t->f = NULL, t->part = NULL;
    return rc;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cmd_world(int argc, char **argv) {
    world_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    helios_session_params sp;
    helios_session_params_init(&sp);
    sp.n_threads = 1;
    helios_session *s;
    if (helios_session_new(&sp, &s) != HELIOS_OK) return 1;
    helios_world *w = NULL;
    helios_video_writer *vw = NULL;
    text_out truth = {0}, caps = {0};
    float *block = NULL;
    char last_caption[512] = "";
    int ok = 0, to_none = !strcmp(o.output, "none");
    rc = 1;
    if (!to_none && helios_video_path_check(s, o.output) != HELIOS_OK) {
        fprintf(stderr, "helios world: %s (use .mp4, .y4m, -, a directory/ or none)\n",
                helios_session_error(s));
        rc = 2;
        goto done;
    }
    if (helios_world_new(s, &o.wp, &w) != HELIOS_OK) {
        fprintf(stderr, "helios world: %s\n", helios_session_error(s));
        rc = 2;
        goto done;
    }
    helios_video_writer_params vp;
    helios_video_writer_params_init(&vp);
    vp.width = o.wp.width, vp.height = o.wp.height, vp.fps = o.wp.fps;
    if (!to_none && helios_video_writer_open(s, o.output, &vp, &vw) != HELIOS_OK) {
        fprintf(stderr, "helios world: %s\n", helios_session_error(s));
        goto done;
    }
    if (text_open(&truth, o.truth) || text_open(&caps, o.captions)) goto done;
    /* one second of frames per write: each MP4 write starts a new GOP, so not frame by frame */
    const int B = o.wp.fps;
    block = malloc(sizeof(float) * 3 * (size_t)B * o.wp.width * o.wp.height);
    if (!block) {
        fprintf(stderr, "helios world: out of memory\n");
        goto done;
    }
    double t0 = now_s(), t_render = 0;
    long long done_frames = 0;
    while (o.frames < 0 || done_frames < o.frames) {
        int n = 0;
        for (; n < B && (o.frames < 0 || done_frames + n < o.frames); n++) {
            if (n > 0 || done_frames > 0) helios_world_step(w);
            double tr = now_s();
            helios_world_render(w, block, B, n);
            t_render += now_s() - tr;
            long long f = (long long)helios_world_frame(w);
            const char *cap = helios_world_caption(w);
            if (caps.f && strcmp(cap, last_caption)) fprintf(caps.f, "%lld\t%s\n", f, cap);
            snprintf(last_caption, sizeof last_caption, "%s", cap);
            if (truth.f) {
                const char *j = helios_world_truth_json(w);
                if (!j) {
                    fprintf(stderr, "helios world: %s\n", helios_world_error(w));
                    goto done;
                }
                fputs(j, truth.f);
                fputc('\n', truth.f);
            }
        }
        if (vw && helios_video_writer_write(vw, block, B, 0, n) != HELIOS_OK) {
            fprintf(stderr, "helios world: %s\n", helios_video_writer_error(vw));
            goto done;
        }
        if ((truth.f && ferror(truth.f)) || (caps.f && ferror(caps.f))) {
            fprintf(stderr, "helios world: writing %s failed\n",
                    truth.f && ferror(truth.f) ? truth.part : caps.part);
            goto done;
        }
        done_frames += n;
    }
    if (vw && helios_video_writer_close(vw) != HELIOS_OK) {
        fprintf(stderr, "helios world: %s\n", helios_video_writer_error(vw));
        goto done;
    }
    ok = 1;
    if (text_close(&truth, 1) || text_close(&caps, 1)) ok = 0;
    if (ok) {
        rc = 0;
        double el = now_s() - t0;
        if (!o.quiet)
            fprintf(stderr,
                    "world: %lld frames %dx%d in %.2f s (%.0f frames/s; rendering alone %.0f "
                    "frames/s)%s%s\n",
                    done_frames, o.wp.width, o.wp.height, el, el > 0 ? done_frames / el : 0.0,
                    t_render > 0 ? done_frames / t_render : 0.0, to_none ? "" : " -> ",
                    to_none ? "" : o.output);
    }
done:
    text_close(&truth, 0);
    text_close(&caps, 0);
    helios_video_writer_free(vw);
    free(block);
    helios_world_free(w);
    helios_session_free(s);
    return rc;
}
