/* helios generate — text-to-video with a Helios model folder (diffusers layout). Chunks are
 * handed on as soon as they are denoised; a progress line shows chunk, stage, step and speed.
 * A client of helios.h only: it uses no internal header. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helios.h"
#include "tools/commands.h"

typedef struct gen_opts {
    const char *model, *prompt, *negative, *output, *image, *video;
    const char *switch_prompt; /* "CHUNK:PROMPT" */
    int switch_chunk, interp_chunks;
    int width, height, frames, chunks, steps, pyramid[3], threads, low_memory, quiet;
    helios_sampler sampler;
    double seconds, guidance;
    uint64_t seed;
    helios_backend backend;
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
    fprintf(f,
            "usage: helios generate -m MODEL_DIR -p PROMPT [options]\n"
            "\n"
            "Generates a video chunk by chunk with a Helios model folder (diffusers layout:\n"
            "model_index.json, scheduler/, transformer/, text_encoder/, tokenizer/, vae/). The\n"
            "recipe (Base, Mid or Distilled) comes from the folder's model_index.json.\n"
            "\n"
            "  -m, --model DIR          model folder\n"
            "  -p, --prompt TEXT        what to generate\n"
            "  -n, --negative-prompt T  negative prompt (with guidance; default \"\")\n"
            "  -o, --output PATH        out.mp4 | out.y4m | - (Y4M on stdout) | dir/ (PNG frames) |\n"
            "                           out.safetensors (latents) | none (default out.mp4)\n"
            "      --image IMG          image-to-video: start from this image (PNG, JPEG, WebP, ...)\n"
            "      --video VID          video-to-video: continue this video (MP4, WebM, MKV, ...)\n"
            "      --width W --height H video size in pixels, multiples of 16 (default %dx%d)\n"
            "      --frames N           video frames (default %d: chunks of %d)\n"
            "      --seconds S          video length at %d fps (instead of --frames)\n"
            "      --chunks N           exact number of chunks (instead of --frames)\n"
            "      --steps N            Base: sampling steps (default %d)\n"
            "      --pyramid-steps A,B,C  Mid/Distilled: steps per stage (default %d,%d,%d / %d,%d,%d)\n"
            "      --guidance G         guidance scale (default %g, Distilled %g = off)\n"
            "      --sampler S          unipc | euler | dmd (default: the folder's scheduler)\n"
            "      --seed S             random seed (default 0); the same seed gives diffusers' noise\n"
            "      --switch-prompt C:TEXT  from chunk C on, move to prompt TEXT ...\n"
            "      --interp N           ... interpolating over N chunks (default 3)\n"
            "      --threads N          threads (default: all cores)\n"
            "      --low-memory         release the text encoder before the transformer runs\n"
            "      --backend cpu|ref    compute backend (default cpu)\n"
            "  -q, --quiet              no progress line\n",
            g.width, g.height, g.num_frames, chunk_frames, v.fps, base->steps, mid->pyramid_steps[0],
            mid->pyramid_steps[1], mid->pyramid_steps[2], dist->pyramid_steps[0], dist->pyramid_steps[1],
            dist->pyramid_steps[2], base->guidance_scale, dist->guidance_scale);
}

static int parse(int argc, char **argv, gen_opts *o) {
    helios_gen_params g;
    helios_gen_params_init(&g);
    memset(o, 0, sizeof *o);
    o->width = g.width, o->height = g.height, o->guidance = -1, o->interp_chunks = 3, o->output = "out.mp4";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(s, l) ((!strcmp(a, s) || !strcmp(a, l)) && v && ++i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (ARG("-m", "--model")) o->model = v;
        else if (ARG("-p", "--prompt")) o->prompt = v;
        else if (ARG("-n", "--negative-prompt")) o->negative = v;
        else if (ARG("-o", "--output")) o->output = v;
        else if (ARG("--image", "--image")) o->image = v;
        else if (ARG("--video", "--video")) o->video = v;
        else if (ARG("--width", "--width")) o->width = atoi(v);
        else if (ARG("--height", "--height")) o->height = atoi(v);
        else if (ARG("--frames", "--frames")) o->frames = atoi(v);
        else if (ARG("--seconds", "--seconds")) o->seconds = atof(v);
        else if (ARG("--chunks", "--chunks")) o->chunks = atoi(v);
        else if (ARG("--steps", "--steps")) o->steps = atoi(v);
        else if (ARG("--pyramid-steps", "--pyramid-steps")) {
            if (sscanf(v, "%d,%d,%d", &o->pyramid[0], &o->pyramid[1], &o->pyramid[2]) != 3) {
                fprintf(stderr, "helios generate: --pyramid-steps wants A,B,C\n");
                return 2;
            }
        } else if (ARG("--guidance", "--guidance")) o->guidance = atof(v);
        else if (ARG("--sampler", "--sampler")) {
            if (!strcmp(v, "unipc")) o->sampler = HELIOS_SAMPLER_UNIPC;
            else if (!strcmp(v, "euler")) o->sampler = HELIOS_SAMPLER_EULER;
            else if (!strcmp(v, "dmd")) o->sampler = HELIOS_SAMPLER_DMD;
            else {
                fprintf(stderr, "helios generate: --sampler wants unipc, euler or dmd\n");
                return 2;
            }
        }
        else if (ARG("--seed", "--seed")) o->seed = strtoull(v, NULL, 10);
        else if (ARG("--switch-prompt", "--switch-prompt")) o->switch_prompt = v;
        else if (ARG("--interp", "--interp")) o->interp_chunks = atoi(v);
        else if (ARG("--threads", "--threads")) o->threads = atoi(v);
        else if (ARG("--backend", "--backend")) o->backend = !strcmp(v, "ref") ? HELIOS_BACKEND_REF : HELIOS_BACKEND_CPU;
        else if (!strcmp(a, "--low-memory")) o->low_memory = 1;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o->quiet = 1;
        else {
            fprintf(stderr, "helios generate: unknown or incomplete option '%s' (see --help)\n", a);
            return 2;
        }
#undef ARG
    }
    if (o->image && o->video) {
        fprintf(stderr, "helios generate: give --image or --video, not both\n");
        return 2;
    }
    if (!o->model || !o->prompt) {
        fprintf(stderr, "helios generate: -m MODEL_DIR and -p PROMPT are required (see --help)\n");
        return 2;
    }
    if (o->switch_prompt) {
        const char *colon = strchr(o->switch_prompt, ':');
        o->switch_chunk = atoi(o->switch_prompt);
        if (!colon || o->switch_chunk < 1) {
            fprintf(stderr, "helios generate: --switch-prompt wants CHUNK:TEXT with CHUNK >= 1\n");
            return 2;
        }
    }
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
    if (r->o->quiet || (!isatty(2) && !p->chunk_done)) return; /* a log file gets one line per chunk */
    char chunks[32];
    if (p->n_chunks > 0) snprintf(chunks, sizeof chunks, "%d/%d", p->chunk + 1, p->n_chunks);
    else snprintf(chunks, sizeof chunks, "%d", p->chunk + 1);
    double el = now - r->t0;
    fprintf(stderr, "%schunk %s  stage %d/%d  step %d/%d  %.2f s/step  %.1f s  %.2f frames/s   ", isatty(2) ? "\r" : "", chunks, p->stage + 1,
            p->n_stages, p->step + 1, p->n_steps, dt, el, el > 0 ? r->frames_done / el : 0.0);
    if (p->chunk_done) fputc('\n', stderr);
}

static int keep_latents(run_state *r, const helios_gen_progress *p) {
    latent_sink *s = &r->sink;
    if (!s->data) return 0;
    size_t plane = (size_t)p->latent_frames * p->latent_height * p->latent_width;
    for (int c = 0; c < s->C; c++) /* (1, C, chunks·F, H, W): chunks along time */
        memcpy(s->data + ((size_t)c * s->chunks + (size_t)s->got) * plane, p->latents + (size_t)c * plane,
               plane * sizeof(float));
    s->got++;
    return 0;
}

int cmd_generate(int argc, char **argv) {
    gen_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    helios_session_params sp;
    helios_session_params_init(&sp);
    sp.backend = o.backend;
    sp.n_threads = o.threads;
    helios_session *s;
    if (helios_session_new(&sp, &s) != HELIOS_OK) return 1;
    helios_pipeline_params pp;
    helios_pipeline_params_init(&pp);
    pp.model_dir = o.model;
    pp.low_memory = o.low_memory;
    helios_pipeline *pipe = NULL;
    run_state r = {.o = &o};
    helios_media *media = NULL;
    helios_video_writer_params wp;
    helios_video_writer_params_init(&wp);
    wp.width = o.width, wp.height = o.height;
    rc = 1;
    if (helios_pipeline_load(s, &pp, &pipe) != HELIOS_OK) goto fail;
    helios_gen_params gp;
    helios_gen_params_init(&gp);
    gp.prompt = o.prompt;
    gp.negative_prompt = o.negative;
    gp.width = o.width, gp.height = o.height;
    if (o.frames > 0) gp.num_frames = o.frames;
    if (o.seconds > 0) gp.num_frames = (int)(o.seconds * wp.fps + 0.5);
    gp.num_chunks = o.chunks;
    gp.steps = o.steps;
    memcpy(gp.pyramid_steps, o.pyramid, sizeof o.pyramid);
    if (o.guidance >= 0) gp.guidance_scale = (float)o.guidance;
    gp.sampler = o.sampler;
    gp.seed = o.seed;
    bool to_latents = strstr(o.output, ".safetensors") != NULL, to_none = !strcmp(o.output, "none");
    gp.decode = !to_latents && !to_none;
    if (gp.decode && helios_video_path_check(s, o.output) != HELIOS_OK) {
        fprintf(stderr, "helios generate: %s (use .mp4, .y4m, -, a directory/ or .safetensors)\n",
                helios_session_error(s));
        rc = 2;
        goto done;
    }
    if (o.image && helios_image_read(s, o.image, o.width, o.height, &media) != HELIOS_OK) goto fail;
    /* V2V uses frame 0 and the newest frames: the rest is decoded and dropped as it streams by */
    if (o.video && helios_video_read_tail(s, o.video, o.width, o.height, helios_gen_video_tail(pipe, &gp), &media) != HELIOS_OK)
        goto fail;
    if (o.image) gp.image = media->data;
    if (o.video) gp.video = media->data, gp.video_frames = media->frames, gp.video_skipped = media->skipped;
    if (helios_gen_new(pipe, &gp, &r.gen) != HELIOS_OK) goto fail;
    if (gp.decode && helios_video_writer_open(s, o.output, &wp, &r.writer) != HELIOS_OK) goto fail;

    r.t0 = r.t_step = now_s();
    for (helios_gen_progress p = {0}; !p.finished;) {
        if (helios_gen_step(r.gen, &p) != HELIOS_OK) goto gen_fail;
        if (to_latents && !r.sink.data && p.n_chunks > 0) {
            r.sink = (latent_sink){.chunks = p.n_chunks, .C = 16, .F = p.latent_frames, .H = p.latent_height, .W = p.latent_width};
            r.sink.data = malloc((size_t)r.sink.C * p.n_chunks * p.latent_frames * p.latent_height * p.latent_width * sizeof(float));
            if (!r.sink.data) {
                fprintf(stderr, "helios generate: out of memory for the latents\n");
                goto done;
            }
        }
        if (p.chunk_done) {
            r.frames_done += p.n_frames ? p.n_frames : (p.latent_frames - 1) * 4 + 1;
            keep_latents(&r, &p);
            if (r.writer && helios_video_writer_write(r.writer, p.frames, p.chunk_frames, 0, p.n_frames) != HELIOS_OK) {
                fprintf(stderr, "\nhelios generate: %s\n", helios_video_writer_error(r.writer));
                goto done;
            }
            if (o.switch_prompt && p.chunk + 1 == o.switch_chunk &&
                helios_gen_prompt_set(r.gen, strchr(o.switch_prompt, ':') + 1, o.negative, o.interp_chunks) != HELIOS_OK)
                goto gen_fail;
        }
        progress_line(&r, &p);
    }
    if (r.writer) {
        if (helios_video_writer_close(r.writer) != HELIOS_OK) {
            fprintf(stderr, "helios generate: %s\n", helios_video_writer_error(r.writer));
            goto done;
        }
        if (strcmp(o.output, "-"))
            fprintf(stderr, "wrote %s (%d frames, %dx%d, %d fps)\n", o.output, r.frames_done, o.width, o.height, wp.fps);
    }
    if (to_latents) {
        latent_sink *k = &r.sink;
        int64_t shape[5] = {1, k->C, (int64_t)k->chunks * k->F, k->H, k->W};
        const char *meta[] = {"prompt", o.prompt, NULL};
        if (helios_tensor_save(s, o.output, "latents", k->data, 5, shape, meta) != HELIOS_OK) {
            fprintf(stderr, "helios generate: %s\n", helios_session_error(s));
            goto done;
        }
        fprintf(stderr, "wrote %s (latents %d x %d x %d x %d)\n", o.output, k->C, k->chunks * k->F, k->H, k->W);
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
    return rc;
}
