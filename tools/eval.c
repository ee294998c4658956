/* helios eval — measures a video against the tiny world (a client of helios.h only). Option
 * parsing is self-contained (strict number checks) so it can move to a shared parser. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helios.h"
#include "tools/args.h"
#include "tools/commands.h"

typedef struct eval_opts {
    const char *video, *prompt, *truth, *plot, *sheet, *sheet_at;
    int chunk, json, seeds, ref_frames, fps;
} eval_opts;

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: helios eval VIDEO [--prompt TEXT | --truth STATE.jsonl] [options]\n"
        "\n"
        "Measures a video (MP4, Y4M, ... anything FFmpeg reads) against the tiny world: semantic\n"
        "accuracy of the objects the prompt names, drift between the first and last 15%% of the\n"
        "frames, chunk-seam strength, motion, freezing, and a Frechet distance to real world\n"
        "footage rendered for the prompt (docs/world.md defines each metric).\n"
        "\n"
        "      --prompt TEXT        what the video should show (a world caption)\n"
        "      --truth FILE         ground truth from `helios world --truth`: each frame's "
        "caption;\n"
        "                           the video must have its frame size and count\n"
        "      --chunk N            frames per generated chunk, for the seam strength (default "
        "33)\n"
        "      --fps N              frames per second, for the 1 s windows (default: the\n"
        "                           video's, else 24)\n"
        "      --reference-seeds N  real footage seeds for the Frechet distance (default 4; 0 = "
        "none)\n"
        "      --reference-frames N frames per seed (default: the video's, at most 480)\n"
        "      --json               one JSON object on stdout instead of the table\n"
        "      --plot FILE.png      each metric over time as a PNG\n"
        "      --sheet FILE.png     a contact sheet: frames across the video side by side\n"
        "      --sheet-at LIST      its times in seconds, e.g. 0,60,300,600 (default: 8 frames\n"
        "                           spread over the video; a time past the end shows the last)\n");
}

static int parse(int argc, char **argv, eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->chunk = 33, o->seeds = 4;
    args a;
    args_init(&a, "helios eval", argc, argv);
    while (args_next(&a)) {
        int rc = 0;
        if (args_is(&a, "-h", "--help")) {
            usage(stdout);
            exit(0);
        } else if (args_is(&a, "-p", "--prompt")) rc = args_str(&a, &o->prompt);
        else if (args_is(&a, NULL, "--truth")) rc = args_str(&a, &o->truth);
        else if (args_is(&a, NULL, "--plot")) rc = args_str(&a, &o->plot);
        else if (args_is(&a, NULL, "--sheet")) rc = args_str(&a, &o->sheet);
        else if (args_is(&a, NULL, "--sheet-at")) rc = args_str(&a, &o->sheet_at);
        else if (args_is(&a, NULL, "--chunk")) rc = args_int(&a, 1, 1 << 20, &o->chunk);
        else if (args_is(&a, NULL, "--fps")) rc = args_int(&a, 1, 1000, &o->fps);
        else if (args_is(&a, NULL, "--reference-seeds")) rc = args_int(&a, 0, 64, &o->seeds);
        else if (args_is(&a, NULL, "--reference-frames"))
            rc = args_int(&a, 0, 1 << 20, &o->ref_frames);
        else if (args_is(&a, NULL, "--json")) o->json = 1;
        else if (a.opt[0] != '-' && !o->video) o->video = a.opt;
        else if (a.opt[0] != '-') rc = args_fail(&a, "one VIDEO only ('%s' is a second)", a.opt);
        else rc = args_fail(&a, "unknown option '%s' (see --help)", a.opt);
        if (rc) return rc;
    }
    if (!o->video) return args_fail(&a, "a VIDEO is required (see --help)");
    if (o->prompt && o->truth) return args_fail(&a, "give --prompt or --truth, not both");
    if (o->sheet_at && !o->sheet) return args_fail(&a, "--sheet-at needs --sheet FILE.png");
    return 0;
}

static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* The frames the video holds, read through once (for a container that does not say): 0 when
 * it cannot be read (after printing why). */
static int64_t count_frames(helios_session *s, const char *path) {
    helios_video_reader *r;
    if (helios_video_reader_open(s, path, 16, 16, &r) != HELIOS_OK) {
        fprintf(stderr, "helios eval: %s\n", helios_session_error(s));
        return 0;
    }
    float x[3 * 16 * 16 * 64];
    int64_t n = 0;
    for (int got = 1; got > 0; n += got)
        if (helios_video_reader_read(r, x, 64, 0, 64, &got) != HELIOS_OK) {
            fprintf(stderr, "helios eval: %s\n", helios_video_reader_error(r));
            n = 0;
            break;
        }
    helios_video_reader_free(r);
    return n;
}

/* The sheet's frame indices: the --sheet-at times (seconds, comma-separated) at fps, or 8 frames
 * spread over the video. Returns the count; after printing an error, -2 for a bad --sheet-at, -1
 * for an unreadable video. */
static int sheet_frames(const eval_opts *o, helios_session *s, int fps, int64_t stated,
                        int64_t out[64]) {
    if (!o->sheet_at) {
        int64_t total = stated > 0 ? stated : count_frames(s, o->video);
        if (total < 1) return -1;
        int n = total < 8 ? (int)total : 8;
        for (int j = 0; j < n; j++) out[j] = n > 1 ? j * (total - 1) / (n - 1) : 0;
        return n;
    }
    char buf[1024];
    int n = 0;
    if (strlen(o->sheet_at) >= sizeof buf) goto bad;
    strcpy(buf, o->sheet_at);
    for (char *p = buf;;) {
        char *end = strchr(p, ',');
        if (end) *end = 0;
        double sec;
        if (n == 64 || args_parse_double(p, 0, 1e7, &sec) != NULL) goto bad;
        out[n++] = (int64_t)(sec * fps + 0.5);
        if (!end) break;
        p = end + 1;
    }
    return n;
bad:
    fprintf(stderr,
            "helios eval: --sheet-at '%s': want up to 64 times in seconds, comma-separated, "
            "each 0 to 1e7\n",
            o->sheet_at);
    return -2;
}

typedef struct video_desc {
    int frames, width, height, fps;
} video_desc;

static void report(const eval_opts *o, const video_desc *v, const helios_eval_metric *mt, int n) {
    if (o->json) {
        printf("{\"video\":");
        print_json_string(o->video);
        printf(",\"width\":%d,\"height\":%d,\"chunk\":%d,\"fps\":%d", v->width, v->height, o->chunk,
               v->fps);
        for (int i = 0; i < n; i++) {
            printf(",\"%s\":", mt[i].name);
            if (isnan(mt[i].value) || isinf(mt[i].value)) printf("null");
            else printf("%.6g", mt[i].value);
        }
        printf("}\n");
        return;
    }
    printf("%s: %d frames, %dx%d, %d fps, chunks of %d\n", o->video, v->frames, v->width, v->height,
           v->fps, o->chunk);
    printf("%-20s %12s  %s\n", "metric", "value", "what");
    for (int i = 0; i < n; i++) {
        if (isnan(mt[i].value)) printf("%-20s %12s  %s\n", mt[i].name, "n/a", mt[i].what);
        else printf("%-20s %12.4f  %s\n", mt[i].name, mt[i].value, mt[i].what);
    }
}

int cmd_eval(int argc, char **argv) {
    eval_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    helios_session_params sp;
    helios_session_params_init(&sp);
    sp.n_threads = 1;
    helios_session *s;
    if (helios_session_new(&sp, &s) != HELIOS_OK) { /* no session holds the message */
        fprintf(stderr, "helios eval: %s\n", helios_session_new_error());
        return 1;
    }
    /* Frame by frame: one frame in memory, and the evaluator keeps a small record per frame. */
    helios_video_reader *r = NULL;
    helios_eval *e = NULL;
    float *frame = NULL;
    rc = 1;
    if (helios_video_reader_open(s, o.video, 0, 0, &r) != HELIOS_OK) {
        fprintf(stderr, "helios eval: %s\n", helios_session_error(s));
        goto done;
    }
    helios_video_info vi;
    helios_video_reader_info(r, &vi);
    helios_eval_params ep;
    helios_eval_params_init(&ep);
    ep.width = vi.width, ep.height = vi.height, ep.chunk = o.chunk;
    if (o.fps > 0) ep.fps = o.fps;
    else if (vi.fps >= 1 && vi.fps <= 1000) ep.fps = (int)lround(vi.fps);
    ep.prompt = o.prompt, ep.truth_path = o.truth;
    ep.reference_seeds = o.seeds, ep.reference_frames = o.ref_frames;
    int64_t sheet[64];
    if (o.sheet) {
        ep.sheet_frames = sheet;
        ep.n_sheet = sheet_frames(&o, s, ep.fps, vi.frames, sheet);
        if (ep.n_sheet < 0) {
            rc = -ep.n_sheet;
            goto done;
        }
    }
    if (helios_eval_new(s, &ep, &e) != HELIOS_OK) {
        fprintf(stderr, "helios eval: %s: %s\n", o.video, helios_session_error(s));
        goto done;
    }
    frame = malloc(sizeof(float) * 3 * (size_t)vi.width * (size_t)vi.height);
    if (!frame) {
        fprintf(stderr, "helios eval: %s: out of memory\n", o.video);
        goto done;
    }
    for (;;) {
        int got;
        if (helios_video_reader_read(r, frame, 1, 0, 1, &got) != HELIOS_OK) {
            fprintf(stderr, "helios eval: %s\n", helios_video_reader_error(r));
            goto done;
        }
        if (!got) break;
        if (helios_eval_add(e, frame, 1, 0, NULL) != HELIOS_OK) {
            fprintf(stderr, "helios eval: %s: %s\n", o.video, helios_eval_error(e));
            goto done;
        }
    }
    free(frame);
    frame = NULL;
    helios_video_reader_free(r);
    r = NULL;
    const helios_eval_metric *mt;
    int n;
    if (helios_eval_finish(e, &mt, &n) != HELIOS_OK) {
        fprintf(stderr, "helios eval: %s: %s\n", o.video, helios_eval_error(e));
        goto done;
    }
    video_desc v = {(int)mt[0].value, ep.width, ep.height, ep.fps};
    report(&o, &v, mt, n);
    if (o.plot && helios_eval_plot(e, o.plot) != HELIOS_OK) {
        fprintf(stderr, "helios eval: %s\n", helios_eval_error(e));
        goto done;
    }
    if (o.sheet && helios_eval_sheet(e, o.sheet) != HELIOS_OK) {
        fprintf(stderr, "helios eval: %s\n", helios_eval_error(e));
        goto done;
    }
    rc = 0;
done:
    helios_eval_free(e);
    free(frame);
    helios_video_reader_free(r);
    helios_session_free(s);
    return rc;
}
