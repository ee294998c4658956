/* helios generate — text-to-video with a Helios model folder (diffusers layout). Chunks are
 * handed on as soon as they are denoised; a progress line shows chunk, stage, step and speed.
 * A client of helios.h only: it uses no internal header. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "helios.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/model_default.h"

/* One --switch-prompt C:TEXT: after chunk C-1 is done (chunks count from 0), the conditioning
 * moves to TEXT, so chunk C is the first to see it. */
typedef struct prompt_switch {
    int chunk;
    const char *text;
} prompt_switch;

typedef struct gen_opts {
    const char *model, *prompt, *negative, *output, *image, *video;
    prompt_switch *switches; /* sorted by chunk, one per chunk */
    int n_switches, interp_chunks;
    int width, height, frames, chunks, steps, pyramid[3], threads, low_memory, quiet;
    int length_opts; /* how many of --frames, --seconds, --chunks were given */
    helios_sampler sampler;
    double seconds, guidance;
    uint64_t seed;
    helios_backend backend;
    char model_buf[4200]; /* the default model's path */
} gen_opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f) {
    helios_gen_params g;
    helios_gen_params_init(&g);
    helios_video_writer_params v;
    helios_video_writer_params_init(&v);
    const helios_recipe_defaults *base = helios_recipe_defaults_get(HELIOS_RECIPE_BASE),
                                 *mid = helios_recipe_defaults_get(HELIOS_RECIPE_MID),
                                 *dist = helios_recipe_defaults_get(HELIOS_RECIPE_DISTILLED);
    int chunk_frames = (base->latent_frames_per_chunk - 1) * 4 + 1;
    fprintf(
        f,
        "usage: helios generate -p PROMPT [-m MODEL_DIR] [options]\n"
        "\n"
        "Generates a video chunk by chunk with a Helios model folder (diffusers layout:\n"
        "model_index.json, scheduler/, transformer/, text_encoder/, tokenizer/, vae/). The\n"
        "recipe (Base, Mid or Distilled) comes from the folder's model_index.json.\n"
        "\n"
        "  -m, --model DIR          model folder (default: $HELIOS_MODEL, else the shipped\n"
        "                           tiny Distilled model, models/helios-tiny)\n"
        "  -p, --prompt TEXT        what to generate\n"
        "  -n, --negative-prompt T  negative prompt (with guidance; default \"\")\n"
        "  -o, --output PATH        out.mp4 | out.y4m | - (Y4M on stdout) | dir/ (PNG frames) |\n"
        "                           out.safetensors (latents) | none (default out.mp4); the\n"
        "                           kind is the path's ending\n"
        "      --image IMG          image-to-video: start from this image (PNG, JPEG, WebP, ...)\n"
        "      --video VID          video-to-video: continue this video (MP4, WebM, MKV, ...)\n"
        "      --width W --height H video size in pixels (default: the model's, e.g. 64x64 for\n"
        "                           the tiny family, %dx%d for the released checkpoints), at\n"
        "                           most %d; multiples of %d for Base, %d for Mid and Distilled\n"
        "      --frames N           video frames, 1..%d (default %d: chunks of %d)\n"
        "      --seconds S          video length at %d fps (instead of --frames)\n"
        "      --chunks N           exact number of chunks, 1..%d (instead of --frames); -1:\n"
        "                           no end, until stopped (Ctrl-C or SIGTERM ends the video\n"
        "                           cleanly when the chunk in progress is done)\n"
        "      --steps N            Base: sampling steps, 1..%d (default %d)\n"
        "      --pyramid-steps A,B,C  Mid/Distilled: steps per pyramid stage, one number per\n"
        "                           stage of the model (default %d,%d,%d / %d,%d,%d, as many\n"
        "                           as the model has)\n"
        "      --guidance G         guidance scale, 0..%g (default %g, Distilled %g = off)\n"
        "      --sampler S          unipc | euler | dmd (default: the folder's scheduler)\n"
        "      --seed S             random seed, 0..2^64-1 (default 0); the same seed gives\n"
        "                           diffusers' noise, and the same video on every run, on\n"
        "                           any --threads (not with HELIOS_GEMM=auto: README)\n"
        "      --switch-prompt C:TEXT  from chunk C on (chunks count from 0; C >= 1 and before\n"
        "                           the last chunk), move to prompt TEXT ...; may be given\n"
        "                           several times, once per chunk\n"
        "      --interp N           ... interpolating over N chunks (default 3; 0 or 1 = at once)\n"
        "      --threads N          threads, 1..%d (default 0: all cores, fewer while other\n"
        "                           processes keep cores busy)\n"
        "      --low-memory         release the text encoder before the transformer runs\n"
        "      --backend cpu|ref    compute backend (default cpu)\n"
        "  -q, --quiet              no progress line\n"
        "\n"
        "Numbers must be whole values in range (\"128px\" or \"abc\" is an error). An option "
        "given\n"
        "twice takes its last value, except --switch-prompt; --frames, --seconds and --chunks\n"
        "exclude each other. A bad command line exits with status 2, a failed run with 1.\n",
        g.width, g.height, HELIOS_MAX_SIDE, base->size_multiple, mid->size_multiple,
        HELIOS_MAX_FRAMES, g.num_frames, chunk_frames, v.fps, HELIOS_MAX_CHUNKS, HELIOS_MAX_STEPS,
        base->steps, mid->pyramid_steps[0], mid->pyramid_steps[1], mid->pyramid_steps[2],
        dist->pyramid_steps[0], dist->pyramid_steps[1], dist->pyramid_steps[2],
        (double)HELIOS_MAX_GUIDANCE, base->guidance_scale, dist->guidance_scale,
        HELIOS_MAX_THREADS);
    (void)dist->size_multiple; /* the same as Mid's; the table states it per recipe */
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

static int cmp_switch(const void *a, const void *b) {
    const prompt_switch *x = a, *y = b;
    return (x->chunk > y->chunk) - (x->chunk < y->chunk);
}

/* "C:TEXT" with C a whole number >= 1 ("1x:TEXT" is an error, not chunk 1). */
static int parse_switch(const args *a, const char *v, prompt_switch *out) {
    const char *colon = strchr(v, ':');
    if (!colon) return args_fail(a, "--switch-prompt '%s' wants CHUNK:TEXT", v);
    long long c;
    const char *why = args_parse_ll(v, (int)(colon - v), 1, HELIOS_MAX_CHUNKS - 1, &c);
    if (why)
        return args_fail(a, "--switch-prompt '%s': the chunk '%.*s' %s", v, (int)(colon - v), v,
                         why);
    out->chunk = (int)c;
    out->text = colon + 1;
    return 0;
}

/* --chunks -1: the first SIGINT or SIGTERM asks the loop to stop when the chunk in progress is
 * done and close the video (a second one kills as usual). */
static volatile sig_atomic_t g_stop;
static void on_stop(int sig) {
    (void)sig;
    g_stop = 1;
}

static void catch_stop(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sa.sa_flags = (int)SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int parse(int argc, char **argv, gen_opts *o) {
    helios_gen_params g;
    helios_gen_params_init(&g);
    helios_video_writer_params wp;
    helios_video_writer_params_init(&wp);
    memset(o, 0, sizeof *o);
    o->guidance = -1, o->interp_chunks = 3, o->output = "out.mp4";
    if (!(o->switches = calloc((size_t)argc, sizeof *o->switches))) {
        fprintf(stderr, "helios generate: out of memory\n");
        return 1;
    }
    static const char *const samplers[] = {"unipc", "euler", "dmd"}, *const backends[] = {"cpu",
                                                                                          "ref"};
    static const helios_sampler sampler_ids[] = {HELIOS_SAMPLER_UNIPC, HELIOS_SAMPLER_EULER,
                                                 HELIOS_SAMPLER_DMD};
    static const helios_backend backend_ids[] = {HELIOS_BACKEND_CPU, HELIOS_BACKEND_REF};
    args a;
    args_init(&a, "helios generate", argc, argv);
    int rc = 0, k;
    bool frames = false, seconds = false, chunks = false;
    while (!rc && args_next(&a)) {
        if (args_is(&a, "-h", "--help")) {
            usage(stdout);
            return -1; /* done: exit 0 */
        } else if (args_is(&a, "-m", "--model")) rc = args_str(&a, &o->model);
        else if (args_is(&a, "-p", "--prompt")) rc = args_str(&a, &o->prompt);
        else if (args_is(&a, "-n", "--negative-prompt")) rc = args_str(&a, &o->negative);
        else if (args_is(&a, "-o", "--output")) rc = args_str(&a, &o->output);
        else if (args_is(&a, NULL, "--image")) rc = args_str(&a, &o->image);
        else if (args_is(&a, NULL, "--video")) rc = args_str(&a, &o->video);
        else if (args_is(&a, NULL, "--width")) rc = args_int(&a, 1, HELIOS_MAX_SIDE, &o->width);
        else if (args_is(&a, NULL, "--height")) rc = args_int(&a, 1, HELIOS_MAX_SIDE, &o->height);
        else if (args_is(&a, NULL, "--frames"))
            rc = args_int(&a, 1, HELIOS_MAX_FRAMES, &o->frames), frames = true;
        else if (args_is(&a, NULL, "--seconds"))
            rc = args_double(&a, 1.0 / wp.fps, (double)HELIOS_MAX_FRAMES / wp.fps, &o->seconds),
            seconds = true;
        else if (args_is(&a, NULL, "--chunks"))
            rc = args_int(&a, -1, HELIOS_MAX_CHUNKS, &o->chunks), chunks = true;
        else if (args_is(&a, NULL, "--steps")) rc = args_int(&a, 1, HELIOS_MAX_STEPS, &o->steps);
        else if (args_is(&a, NULL, "--pyramid-steps"))
            rc = args_int_list(&a, 3, 1, HELIOS_MAX_STEPS, o->pyramid);
        else if (args_is(&a, NULL, "--guidance"))
            rc = args_double(&a, 0, HELIOS_MAX_GUIDANCE, &o->guidance);
        else if (args_is(&a, NULL, "--sampler")) {
            if (!(rc = args_choice(&a, samplers, 3, &k))) o->sampler = sampler_ids[k];
        } else if (args_is(&a, NULL, "--seed")) rc = args_u64(&a, &o->seed);
        else if (args_is(&a, NULL, "--switch-prompt")) {
            const char *v;
            if (!(rc = args_str(&a, &v))) rc = parse_switch(&a, v, &o->switches[o->n_switches++]);
        } else if (args_is(&a, NULL, "--interp"))
            rc = args_int(&a, 0, HELIOS_MAX_CHUNKS, &o->interp_chunks);
        else if (args_is(&a, NULL, "--threads"))
            rc = args_int(&a, 0, HELIOS_MAX_THREADS, &o->threads);
        else if (args_is(&a, NULL, "--backend")) {
            if (!(rc = args_choice(&a, backends, 2, &k))) o->backend = backend_ids[k];
        } else if (args_is(&a, NULL, "--low-memory")) o->low_memory = 1;
        else if (args_is(&a, "-q", "--quiet")) o->quiet = 1;
        else if (a.opt[0] == '-' && a.opt[1])
            rc = args_fail(&a, "unknown option '%s' (see --help)", a.opt);
        else rc = args_fail(&a, "unexpected argument '%s' (options only; see --help)", a.opt);
    }
    if (rc) return rc;
    o->length_opts = frames + seconds + chunks;
    if (o->length_opts > 1)
        return args_fail(&a, "give one of --frames, --seconds and --chunks, not several");
    if (chunks && o->chunks == 0)
        return args_fail(&a, "--chunks 0: give 1..%d, or -1 for no end", HELIOS_MAX_CHUNKS);
    if (o->image && o->video) return args_fail(&a, "give --image or --video, not both");
    if (!o->prompt) return args_fail(&a, "-p PROMPT is required (see --help)");
    if (!o->model && !(o->model = default_model(o->model_buf, sizeof o->model_buf)))
        return args_fail(&a, "no -m MODEL_DIR, and no default model (%s)", default_model_places());
    qsort(o->switches, (size_t)o->n_switches, sizeof *o->switches, cmp_switch);
    for (int i = 1; i < o->n_switches; i++)
        if (o->switches[i].chunk == o->switches[i - 1].chunk)
            return args_fail(&a, "--switch-prompt: chunk %d is given twice (one prompt per chunk)",
                             o->switches[i].chunk);
    return 0;
}

/* Collected latents for a .safetensors output (bounded runs only). */
typedef struct latent_sink {
    float *data;
    int chunks, C, F, H, W, got;
} latent_sink;

typedef struct run_state {
    const gen_opts *o;
    helios_gen *gen;
    latent_sink sink;
    helios_video_writer *writer;
    double t0, t_step;
    int frames_done;
} run_state;

static void progress_line(run_state *r, const helios_gen_progress *p) {
    double now = now_s(), dt = now - r->t_step;
    r->t_step = now;
    if (r->o->quiet || (!isatty(2) && !p->chunk_done))
        return; /* a log file gets one line per chunk */
    char chunks[32];
    if (p->n_chunks > 0) snprintf(chunks, sizeof chunks, "%d/%d", p->chunk + 1, p->n_chunks);
    else snprintf(chunks, sizeof chunks, "%d", p->chunk + 1);
    double el = now - r->t0;
    fprintf(stderr, "%schunk %s  stage %d/%d  step %d/%d  %.2f s/step  %.1f s  %.2f frames/s   ",
            isatty(2) ? "\r" : "", chunks, p->stage + 1, p->n_stages, p->step + 1, p->n_steps, dt,
            el, el > 0 ? r->frames_done / el : 0.0);
    if (p->chunk_done) fputc('\n', stderr);
}

static int keep_latents(run_state *r, const helios_gen_progress *p) {
    latent_sink *s = &r->sink;
    if (!s->data) return 0;
    size_t plane = (size_t)p->latent_frames * p->latent_height * p->latent_width;
    for (int c = 0; c < s->C; c++) /* (1, C, chunks·F, H, W): chunks along time */
        memcpy(s->data + ((size_t)c * s->chunks + (size_t)s->got) * plane,
               p->latents + (size_t)c * plane, plane * sizeof(float));
    s->got++;
    return 0;
}

int cmd_generate(int argc, char **argv) {
    gen_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) {
        free(o.switches);
        return rc < 0 ? 0 : rc;
    }
    helios_session_params sp;
    helios_session_params_init(&sp);
    sp.backend = o.backend;
    sp.n_threads = o.threads;
    helios_session *s;
    if (helios_session_new(&sp, &s) != HELIOS_OK) { /* no session holds the message */
        fprintf(stderr, "helios: %s\n", helios_session_new_error());
        free(o.switches);
        return 1;
    }
    helios_pipeline_params pp;
    helios_pipeline_params_init(&pp);
    pp.model_dir = o.model;
    pp.low_memory = o.low_memory;
    helios_pipeline *pipe = NULL;
    run_state r = {.o = &o};
    helios_media *media = NULL;
    helios_video_writer_params wp;
    helios_video_writer_params_init(&wp);
    rc = 1;
    if (helios_pipeline_load(s, &pp, &pipe) != HELIOS_OK) goto fail;
    int native_w, native_h; /* a size not given is the model's */
    helios_pipeline_default_size(pipe, &native_w, &native_h);
    if (!o.width) o.width = native_w;
    if (!o.height) o.height = native_h;
    wp.width = o.width, wp.height = o.height;
    helios_gen_params gp;
    helios_gen_params_init(&gp);
    gp.prompt = o.prompt;
    gp.negative_prompt = o.negative;
    gp.width = o.width, gp.height = o.height;
    if (o.frames > 0) gp.num_frames = o.frames;
    if (o.seconds > 0) gp.num_frames = (int)(o.seconds * wp.fps + 0.5); /* parse bounded it */
    gp.num_chunks = o.chunks;
    gp.steps = o.steps;
    memcpy(gp.pyramid_steps, o.pyramid, sizeof o.pyramid);
    if (o.guidance >= 0) gp.guidance_scale = (float)o.guidance;
    gp.sampler = o.sampler;
    gp.seed = o.seed;
    /* the kind is the ending: "foo.safetensors.mp4" is an MP4 */
    bool to_latents = ends_with(o.output, ".safetensors"), to_none = !strcmp(o.output, "none");
    gp.decode = !to_latents && !to_none;
    if (gp.decode && helios_video_path_check(s, o.output) != HELIOS_OK) {
        fprintf(stderr, "helios generate: %s (use .mp4, .y4m, -, a directory/ or .safetensors)\n",
                helios_session_error(s));
        rc = 2;
        goto done;
    }
    if (o.image && helios_image_read(s, o.image, o.width, o.height, &media) != HELIOS_OK) goto fail;
    /* V2V uses frame 0 and the newest frames: the rest is decoded and dropped as it streams by */
    if (o.video && helios_video_read_tail(s, o.video, o.width, o.height,
                                          helios_gen_video_tail(pipe, &gp), &media) != HELIOS_OK)
        goto fail;
    if (o.image) gp.image = media->data;
    if (o.video)
        gp.video = media->data, gp.video_frames = media->frames, gp.video_skipped = media->skipped;
    helios_status gst = helios_gen_new(pipe, &gp, &r.gen);
    if (gst != HELIOS_OK) {
        rc = gst == HELIOS_ERR_INVALID_ARG ? 2 : 1; /* a value the command line gave */
        fprintf(stderr, "helios: %s\n", helios_session_error(s));
        goto done;
    }
    int n_chunks = helios_gen_n_chunks(r.gen);
    for (int i = 0; i < o.n_switches; i++)
        if (n_chunks > 0 && o.switches[i].chunk >= n_chunks) { /* checked before any compute */
            fprintf(stderr,
                    "helios generate: --switch-prompt %d: past the last chunk (the video has %d "
                    "chunk%s, "
                    "numbered 0..%d; a switch at C takes effect from chunk C)\n",
                    o.switches[i].chunk, n_chunks, n_chunks == 1 ? "" : "s", n_chunks - 1);
            rc = 2;
            goto done;
        }
    if (n_chunks < 0 && !gp.decode) {
        fprintf(stderr,
                "helios generate: --chunks -1 streams frames; %s cannot hold a video "
                "without an end\n",
                o.output);
        rc = 2;
        goto done;
    }
    if (n_chunks < 0) catch_stop(); /* before the output exists: a stop from then on is clean */
    if (gp.decode && helios_video_writer_open(s, o.output, &wp, &r.writer) != HELIOS_OK) goto fail;

    r.t0 = r.t_step = now_s();
    for (helios_gen_progress p = {0}; !p.finished;) {
        if (helios_gen_step(r.gen, &p) != HELIOS_OK) goto gen_fail;
        if (to_latents && !r.sink.data && p.n_chunks > 0) {
            r.sink = (latent_sink){.chunks = p.n_chunks,
                                   .C = 16,
                                   .F = p.latent_frames,
                                   .H = p.latent_height,
                                   .W = p.latent_width};
            r.sink.data = malloc((size_t)r.sink.C * p.n_chunks * p.latent_frames * p.latent_height *
                                 p.latent_width * sizeof(float));
            if (!r.sink.data) {
                fprintf(stderr, "helios generate: out of memory for the latents\n");
                goto done;
            }
        }
        if (p.chunk_done) {
            r.frames_done += p.n_frames ? p.n_frames : (p.latent_frames - 1) * 4 + 1;
            keep_latents(&r, &p);
            if (r.writer && helios_video_writer_write(r.writer, p.frames, p.chunk_frames, 0,
                                                      p.n_frames) != HELIOS_OK) {
                fprintf(stderr, "\nhelios generate: %s\n", helios_video_writer_error(r.writer));
                goto done;
            }
            for (int i = 0; i < o.n_switches; i++)
                if (p.chunk + 1 == o.switches[i].chunk &&
                    helios_gen_prompt_set(r.gen, o.switches[i].text, o.negative, o.interp_chunks) !=
                        HELIOS_OK)
                    goto gen_fail;
        }
        progress_line(&r, &p);
        if (g_stop && p.chunk_done) { /* a video without an end, stopped: it ends here */
            fprintf(stderr, "%sstopped after %d frames\n", isatty(2) && !o.quiet ? "\n" : "",
                    r.frames_done);
            break;
        }
    }
    if (r.writer) {
        if (helios_video_writer_close(r.writer) != HELIOS_OK) {
            fprintf(stderr, "helios generate: %s\n", helios_video_writer_error(r.writer));
            goto done;
        }
        if (strcmp(o.output, "-"))
            fprintf(stderr, "wrote %s (%d frames, %dx%d, %d fps)\n", o.output, r.frames_done,
                    o.width, o.height, wp.fps);
    }
    if (to_latents) {
        latent_sink *k = &r.sink;
        int64_t shape[5] = {1, k->C, (int64_t)k->chunks * k->F, k->H, k->W};
        const char *meta[] = {"prompt", o.prompt, NULL};
        if (helios_tensor_save(s, o.output, "latents", k->data, 5, shape, meta) != HELIOS_OK) {
            fprintf(stderr, "helios generate: %s\n", helios_session_error(s));
            goto done;
        }
        fprintf(stderr, "wrote %s (latents %d x %d x %d x %d)\n", o.output, k->C, k->chunks * k->F,
                k->H, k->W);
    }
    rc = 0;
    goto done;
gen_fail:
    fprintf(stderr, "%shelios: %s\n", isatty(2) && !o.quiet ? "\n" : "", helios_gen_error(r.gen));
    goto done;
fail:
    fprintf(stderr, "helios: %s\n", helios_session_error(s));
done:
    helios_video_writer_free(r.writer); /* an unclosed video keeps nothing under its final name */
    helios_media_free(media);
    free(r.sink.data);
    helios_gen_free(r.gen);
    helios_pipeline_free(pipe);
    helios_session_free(s);
    free(o.switches);
    return rc;
}
