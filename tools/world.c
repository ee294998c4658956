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
#include "tools/args.h"
#include "tools/commands.h"

typedef struct world_opts {
    helios_world_params wp;
    const char *output, *truth, *captions, *tokenizer;
    int64_t frames; /* < 0: unbounded */
    int quiet;
} world_opts;

static void usage(FILE *f) {
    helios_world_params p;
    helios_world_params_init(&p);
    fprintf(
        f,
        "usage: helios world -o OUTPUT [options]\n"
        "       helios world --tokenizer FILE.model\n"
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
        "      --tokenizer FILE     write the tiny models' tokenizer: a SentencePiece unigram\n"
        "                           .model of the world's vocabulary (put it in a model's\n"
        "                           tokenizer/ as spiece.model); alone, or with -o\n"
        "  -q, --quiet              no summary line\n",
        p.width, p.height, p.fps, p.max_objects);
}

static int parse(int argc, char **argv, world_opts *o) {
    memset(o, 0, sizeof *o);
    helios_world_params_init(&o->wp);
    o->frames = 240;
    double seconds = -1;
    args a;
    args_init(&a, "helios world", argc, argv);
    while (args_next(&a)) {
        int rc = 0;
        if (args_is(&a, "-h", "--help")) {
            usage(stdout);
            exit(0);
        } else if (args_is(&a, "-o", "--output")) rc = args_str(&a, &o->output);
        else if (args_is(&a, NULL, "--seed")) rc = args_u64(&a, &o->wp.seed);
        else if (args_is(&a, NULL, "--width")) rc = args_int(&a, 16, 8192, &o->wp.width);
        else if (args_is(&a, NULL, "--height")) rc = args_int(&a, 16, 8192, &o->wp.height);
        else if (args_is(&a, NULL, "--frames")) {
            rc = args_i64(&a, -1, INT64_MAX, &o->frames);
            if (!rc && o->frames == 0) rc = args_fail(&a, "--frames 0: at least 1 (or -1: no end)");
        } else if (args_is(&a, NULL, "--seconds")) rc = args_double(&a, 1e-3, 1e9, &seconds);
        else if (args_is(&a, NULL, "--fps")) rc = args_int(&a, 1, 1000, &o->wp.fps);
        else if (args_is(&a, NULL, "--prompt")) rc = args_str(&a, &o->wp.prompt);
        else if (args_is(&a, NULL, "--max-objects")) rc = args_int(&a, 1, 6, &o->wp.max_objects);
        else if (args_is(&a, NULL, "--truth")) rc = args_str(&a, &o->truth);
        else if (args_is(&a, NULL, "--captions")) rc = args_str(&a, &o->captions);
        else if (args_is(&a, NULL, "--tokenizer")) rc = args_str(&a, &o->tokenizer);
        else if (args_is(&a, NULL, "--no-events")) o->wp.events = 0;
        else if (args_is(&a, NULL, "--no-camera")) o->wp.camera = 0;
        else if (args_is(&a, NULL, "--no-lighting")) o->wp.lighting = 0;
        else if (args_is(&a, "-q", "--quiet")) o->quiet = 1;
        else rc = args_fail(&a, "unknown option '%s' (see --help)", a.opt);
        if (rc) return rc;
    }
    if (!o->output && !o->tokenizer)
        return args_fail(&a, "-o OUTPUT (or --tokenizer FILE) is required (see --help)");
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
    if (helios_session_new(&sp, &s) != HELIOS_OK) { /* no session holds the message */
        fprintf(stderr, "helios world: %s\n", helios_session_new_error());
        return 1;
    }
    helios_world *w = NULL;
    helios_video_writer *vw = NULL;
    text_out truth = {0}, caps = {0};
    float *block = NULL;
    char last_caption[512] = "";
    int ok = 0, to_none = o.output && !strcmp(o.output, "none");
    rc = 1;
    if (o.tokenizer) {
        int n_pieces = 0;
        if (helios_world_write_tokenizer(s, o.tokenizer, &n_pieces) != HELIOS_OK) {
            fprintf(stderr, "helios world: %s\n", helios_session_error(s));
            goto done;
        }
        if (!o.quiet)
            fprintf(stderr, "world: tokenizer of %d pieces -> %s\n", n_pieces, o.tokenizer);
        if (!o.output) {
            rc = 0;
            goto done;
        }
    }
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
