/* The public generation API on the tiny random model folder: step-wise progress, chunks handed
 * over before the next chunk starts, cancellation, prompt switching, per-generation errors,
 * the media writers/readers and tensor files of helios.h, NULL frees, the version. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helios.h"
#include "test_util.h"

#define MODEL HELIOS_VECTORS "/../models/tiny-random-model"

static helios_gen_params small_params(void) {
    helios_gen_params g;
    helios_gen_params_init(&g);
    g.prompt = "a red ball bouncing on a wooden floor";
    g.width = 128, g.height = 64;
    g.num_chunks = 3;
    g.latent_frames_per_chunk = 3;
    g.seed = 7;
    return g;
}

/* Steps until the end; records the chunk results and checks the order of events. */
static void test_stepwise(helios_pipeline *p, float *last_chunk, size_t n_last) {
    helios_gen_params g = small_params();
    helios_gen *gen;
    CHECK(helios_gen_new(p, &g, &gen) == HELIOS_OK, "new");
    int chunks = 0, steps = 0, prev_chunk = 0;
    for (helios_gen_progress pr = {0}; !pr.finished && steps < 1000;) {
        CHECK(helios_gen_step(gen, &pr) == HELIOS_OK, "step");
        steps++;
        CHECK(pr.chunk == prev_chunk, "steps of chunk %d before chunk %d is done", prev_chunk,
              pr.chunk);
        CHECK(pr.n_chunks == 3 && pr.n_stages == 3 && pr.step < pr.n_steps, "progress fields");
        if (pr.chunk_done) {
            CHECK(pr.latents && pr.latent_frames == 3 && pr.latent_height == 8 &&
                      pr.latent_width == 16,
                  "chunk latents");
            if (pr.finished) memcpy(last_chunk, pr.latents, n_last * sizeof(float));
            chunks++;
            prev_chunk = pr.chunk + 1;
        }
    }
    /* Distilled: 3 stages x 2 steps, x2 on the amplified first chunk */
    CHECK(chunks == 3 && steps == 12 + 6 + 6, "%d chunks in %d steps", chunks, steps);
    helios_gen_free(gen);
}

static int cancel_after_3(const helios_gen_progress *p, void *user) {
    int *n = user;
    return ++*n >= 3;
}

static int g_chunks_seen;
static int count_chunks(const helios_gen_progress *p, void *user) {
    g_chunks_seen += p->chunk_done;
    return 0;
}

/* Blocking run with a callback; the generation is freed here. */
static helios_status run(helios_pipeline *p, const helios_gen_params *g, helios_progress_fn fn,
                         void *user, char *msg, size_t n) {
    helios_gen *gen;
    helios_status st = helios_gen_new(p, g, &gen);
    if (st != HELIOS_OK) return st;
    st = helios_gen_run(gen, fn, user);
    snprintf(msg, n, "%s", helios_gen_error(gen));
    helios_gen_free(gen);
    return st;
}

static void test_version_and_null_frees(void) {
    CHECK(!strcmp(helios_version(), HELIOS_VERSION_STRING), "helios_version %s", helios_version());
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", HELIOS_VERSION_MAJOR, HELIOS_VERSION_MINOR,
             HELIOS_VERSION_PATCH);
    CHECK(!strcmp(v, HELIOS_VERSION_STRING), "version macros agree: %s", v);
    helios_session_free(NULL);
    helios_transformer_free(NULL);
    helios_pipeline_free(NULL);
    helios_gen_free(NULL);
    helios_media_free(NULL);
    helios_video_writer_free(NULL);
    CHECK(!strcmp(helios_gen_error(NULL), "") && !strcmp(helios_session_error(NULL), ""),
          "errors of NULL");
    const helios_recipe_defaults *d = helios_recipe_defaults_get(HELIOS_RECIPE_DISTILLED);
    CHECK(d && d->sampler == HELIOS_SAMPLER_DMD && d->amplify_first_chunk && d->guidance_scale <= 1,
          "distilled recipe row");
    CHECK(helios_recipe_defaults_get((helios_recipe)99) == NULL, "no row outside the table");
}

/* A generated chunk through the public writer and reader, and as a tensor file. */
static void test_media(helios_session *s, helios_pipeline *p) {
    char dir[] = "/tmp/helios_test_generate_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char mp4[256], part[256], lat[256];
    snprintf(mp4, sizeof mp4, "%s/out.mp4", dir);
    snprintf(part, sizeof part, "%s/out.mp4.part", dir);
    snprintf(lat, sizeof lat, "%s/latents.safetensors", dir);
    CHECK(helios_video_path_check(s, mp4) == HELIOS_OK, "mp4 path accepted");
    CHECK(helios_video_path_check(s, "out.avi") == HELIOS_ERR_UNSUPPORTED &&
              strstr(helios_session_error(s), "out.avi"),
          "avi refused, named: %s", helios_session_error(s));

    helios_gen_params g = small_params();
    g.num_chunks = 1;
    helios_gen *gen;
    CHECK(helios_gen_new(p, &g, &gen) == HELIOS_OK, "new: %s", helios_session_error(s));
    helios_video_writer_params wp;
    helios_video_writer_params_init(&wp);
    wp.width = g.width, wp.height = g.height;
    helios_video_writer *w = NULL;
    CHECK(helios_video_writer_open(s, mp4, &wp, &w) == HELIOS_OK, "writer: %s",
          helios_session_error(s));
    int frames = 0;
    for (helios_gen_progress pr = {0}; gen && w && !pr.finished;) {
        CHECK(helios_gen_step(gen, &pr) == HELIOS_OK, "step: %s", helios_gen_error(gen));
        if (!pr.chunk_done) continue;
        CHECK(pr.frames && pr.n_frames == 9, "decoded chunk: %d frames", pr.n_frames);
        CHECK(helios_video_writer_write(w, pr.frames, pr.chunk_frames, 0, pr.n_frames) == HELIOS_OK,
              "write: %s", helios_video_writer_error(w));
        frames += pr.n_frames;
        int64_t shape[5] = {1, 16, pr.latent_frames, pr.latent_height, pr.latent_width};
        const char *meta[] = {"prompt", g.prompt, NULL};
        CHECK(helios_tensor_save(s, lat, "latents", pr.latents, 5, shape, meta) == HELIOS_OK,
              "tensor_save: %s", helios_session_error(s));
    }
    CHECK(access(part, F_OK) == 0 && access(mp4, F_OK) != 0, "unfinished video only under .part");
    CHECK(w && helios_video_writer_close(w) == HELIOS_OK, "close: %s",
          helios_video_writer_error(w));
    CHECK(w && helios_video_writer_write(w, NULL, 0, 0, 0) == HELIOS_ERR_INVALID_ARG,
          "write after close refused");
    helios_video_writer_free(w);
    helios_gen_free(gen);
    CHECK(access(mp4, F_OK) == 0 && access(part, F_OK) != 0, "closed video renamed");

    helios_media *m = NULL;
    CHECK(helios_video_read(s, mp4, 0, 0, 0, &m) == HELIOS_OK && m, "read back: %s",
          helios_session_error(s));
    if (m)
        CHECK(m->frames == frames && m->width == g.width && m->height == g.height && m->data,
              "read back %d frames %dx%d", m->frames, m->width, m->height);
    /* the streaming reader: the same frames, here as one block (one more asked than there are) */
    helios_video_reader *r = NULL;
    CHECK(helios_video_reader_open(s, mp4, 0, 0, &r) == HELIOS_OK && r, "reader: %s",
          helios_session_error(s));
    if (r && m && m->frames == frames) {
        helios_video_info vi;
        helios_video_reader_info(r, &vi);
        CHECK(vi.width == m->width && vi.height == m->height && vi.fps == m->fps && vi.read == 0,
              "reader info %dx%d @ %g", vi.width, vi.height, vi.fps);
        const size_t n = (size_t)3 * (frames + 1) * m->width * m->height;
        float *x = calloc(n, sizeof(float));
        int got = -1;
        CHECK(x && helios_video_reader_read(r, x, frames + 1, 0, frames + 1, &got) == HELIOS_OK &&
                  got == frames,
              "reader: %d frames: %s", got, helios_video_reader_error(r));
        bool same = x != NULL;
        const size_t plane = (size_t)m->width * m->height;
        for (int c = 0; x && c < 3; c++)
            same &= !memcmp(x + (size_t)c * (frames + 1) * plane,
                            m->data + (size_t)c * frames * plane, sizeof(float) * frames * plane);
        CHECK(same, "reader: the frames helios_video_read gives");
        CHECK(x && helios_video_reader_read(r, x, 1, 0, 1, &got) == HELIOS_OK && got == 0,
              "reader: 0 frames at the end");
        free(x);
    }
    helios_video_reader_free(r);
    helios_video_reader_free(NULL);
    r = NULL;
    CHECK(helios_video_reader_open(s, "/nonexistent.mp4", 0, 0, &r) != HELIOS_OK && !r &&
              strstr(helios_session_error(s), "/nonexistent.mp4"),
          "reader: missing video named: %s", helios_session_error(s));
    helios_media_free(m);
    m = NULL;
    CHECK(helios_image_read(s, mp4, 32, 16, &m) == HELIOS_OK && m && m->frames == 1 &&
              m->width == 32,
          "first frame, resized");
    helios_media_free(m);
    m = NULL;
    CHECK(helios_image_read(s, "/nonexistent.png", 0, 0, &m) != HELIOS_OK && !m &&
              strstr(helios_session_error(s), "/nonexistent.png"),
          "missing image named: %s", helios_session_error(s));

    /* the open-in-a-folder case: an unclosed writer leaves nothing */
    char mp4b[256];
    snprintf(mp4b, sizeof mp4b, "%s/discarded.mp4", dir);
    CHECK(helios_video_writer_open(s, mp4b, &wp, &w) == HELIOS_OK, "writer 2");
    helios_video_writer_free(w);
    snprintf(part, sizeof part, "%s.part", mp4b);
    CHECK(access(mp4b, F_OK) != 0 && access(part, F_OK) != 0, "discarded writer leaves no file");

    int n_files = 0;
    CHECK(helios_checkpoint_list(s, lat, NULL, NULL, &n_files) == HELIOS_OK && n_files == 1,
          "checkpoint_list: %s", helios_session_error(s));
    remove(lat);
    remove(mp4);
    rmdir(dir);
}

/* helios_session_new has no session to keep its message: it goes to helios_session_new_error,
 * and an out-of-range thread count is refused before OpenMP sees it (100000 once overflowed a
 * stack in libgomp; -4 failed with no message at all). */
static void test_session_limits(void) {
    helios_session_params sp;
    helios_session_params_init(&sp);
    helios_session *s = (helios_session *)&sp; /* must be reset to NULL on failure */
    sp.n_threads = -4;
    CHECK(helios_session_new(&sp, &s) == HELIOS_ERR_INVALID_ARG && !s &&
              strstr(helios_session_new_error(), "n_threads -4 out of range"),
          "threads -4: '%s'", helios_session_new_error());
    sp.n_threads = 100000;
    CHECK(helios_session_new(&sp, &s) == HELIOS_ERR_INVALID_ARG && !s &&
              strstr(helios_session_new_error(), "100000"),
          "threads 100000: '%s'", helios_session_new_error());
    sp.n_threads = HELIOS_MAX_THREADS + 1;
    CHECK(helios_session_new(&sp, &s) == HELIOS_ERR_INVALID_ARG, "threads max+1");
    sp.n_threads = 1;
    sp.backend = (helios_backend)7;
    CHECK(helios_session_new(&sp, &s) == HELIOS_ERR_INVALID_ARG &&
              strstr(helios_session_new_error(), "backend 7"),
          "backend 7: '%s'", helios_session_new_error());
    CHECK(helios_session_new(NULL, &s) == HELIOS_ERR_INVALID_ARG && !s, "NULL params");
    sp.backend = HELIOS_BACKEND_CPU;
    CHECK(helios_session_new(&sp, &s) == HELIOS_OK && s && !helios_session_new_error()[0],
          "a good session clears the message: '%s'", helios_session_new_error());
    helios_session_free(s);
}

/* One impossible value per field of helios_gen_params: HELIOS_ERR_INVALID_ARG, no generation,
 * and a message naming the field (every one of these once ran, overflowed, allocated gigabytes
 * or silently took a default). */
static void test_invalid_params(helios_session *s, helios_pipeline *p) {
    static const struct {
        const char *what, *msg;
    } cases[] = {
        {"width 100", "width 100 must be a multiple of 64 for the Distilled recipe"},
        {"height 96", "height 96 must be a multiple of 64"},
        {"width 0", "width 0 out of range"},
        {"width max+64", "width 16448 out of range"},
        {"num_frames -5", "num_frames -5 out of range"},
        {"num_frames INT_MAX", "num_frames 2147483647 out of range"},
        {"num_chunks max+1", "num_chunks 65537 out of range"},
        {"latent_frames_per_chunk 100000", "latent_frames_per_chunk 100000 out of range"},
        {"latent_frames_per_chunk -1", "latent_frames_per_chunk -1 out of range"},
        {"max_sequence_length 100000", "max_sequence_length 100000 out of range"},
        {"max_sequence_length -1", "max_sequence_length -1 out of range"},
        {"steps -1", "steps -1 out of range"},
        {"steps 1001", "steps 1001 out of range"},
        {"pyramid_steps[1] -2", "pyramid_steps[1] -2 out of range"},
        {"guidance NaN", "guidance_scale nan out of range"},
        {"guidance inf", "guidance_scale inf out of range"},
        {"guidance 1e39", "guidance_scale inf out of range"},
        {"guidance 101", "guidance_scale 101 out of range"},
        {"sampler 9", "unknown sampler 9"},
        {"embeds text_len 0", "text_len 0 out of range"},
        {"video_frames 0", "video_frames 0 out of range"},
    };
    static const float embeds[4] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        helios_gen_params g = small_params();
        switch (i) {
        case 0: g.width = 100; break;
        case 1: g.height = 96; break;
        case 2: g.width = 0; break;
        case 3: g.width = HELIOS_MAX_SIDE + 64; break;
        case 4: g.num_chunks = 0, g.num_frames = -5; break;
        case 5: g.num_chunks = 0, g.num_frames = 2147483647; break;
        case 6: g.num_chunks = HELIOS_MAX_CHUNKS + 1; break;
        case 7: g.latent_frames_per_chunk = 100000; break;
        case 8: g.latent_frames_per_chunk = -1; break;
        case 9: g.max_sequence_length = 100000; break;
        case 10: g.max_sequence_length = -1; break;
        case 11: g.steps = -1; break;
        case 12: g.steps = HELIOS_MAX_STEPS + 1; break;
        case 13: g.pyramid_steps[1] = -2; break;
        case 14: g.guidance_scale = NAN; break;
        case 15: g.guidance_scale = INFINITY; break;
        case 16: g.guidance_scale = (float)1e39; break;
        case 17: g.guidance_scale = 101; break;
        case 18: g.sampler = (helios_sampler)9; break;
        case 19: g.prompt_embeds = embeds, g.text_len = 0; break;
        case 20: g.video = embeds, g.video_frames = 0; break;
        }
        helios_gen *gen = (helios_gen *)p; /* must be reset to NULL */
        helios_status st = helios_gen_new(p, &g, &gen);
        CHECK(st == HELIOS_ERR_INVALID_ARG && !gen && strstr(helios_session_error(s), cases[i].msg),
              "%s: status %d, '%s'", cases[i].what, (int)st, helios_session_error(s));
        if (st == HELIOS_OK) helios_gen_free(gen);
    }
    /* the largest bounded values are accepted (checked, not run) and the chunk count is known */
    helios_gen_params g = small_params();
    g.num_chunks = 0, g.num_frames = HELIOS_MAX_FRAMES;
    helios_gen *gen = NULL;
    CHECK(helios_gen_new(p, &g, &gen) == HELIOS_OK &&
              helios_gen_n_chunks(gen) == (HELIOS_MAX_FRAMES + 8) / 9,
          "num_frames max: %s, %d chunks", helios_session_error(s), helios_gen_n_chunks(gen));
    CHECK(helios_gen_prompt_set(gen, "x", NULL, -1) == HELIOS_ERR_INVALID_ARG &&
              strstr(helios_gen_error(gen), "out of range"),
          "prompt_set over -1 chunks: '%s'", helios_gen_error(gen));
    helios_gen_free(gen);
    CHECK(helios_gen_n_chunks(NULL) == 0, "n_chunks(NULL)");
}

/* First-chunk latents of a run (n floats), or the failing status with the message in msg. */
static helios_status first_chunk(helios_pipeline *p, const helios_gen_params *g, float *out,
                                 size_t n, char *msg, size_t cap) {
    helios_gen *gen = NULL;
    helios_status st = helios_gen_new(p, g, &gen);
    msg[0] = '\0';
    for (helios_gen_progress pr = {0}; st == HELIOS_OK && !pr.chunk_done;) {
        st = helios_gen_step(gen, &pr);
        if (st == HELIOS_OK && pr.chunk_done) memcpy(out, pr.latents, n * sizeof(float));
    }
    if (st != HELIOS_OK) snprintf(msg, cap, "%s", gen ? helios_gen_error(gen) : "");
    helios_gen_free(gen);
    return st;
}

/* Every chunk's latents of a run, one after another (n floats a chunk). */
static helios_status all_chunks(helios_pipeline *p, const helios_gen_params *g, float *out,
                                size_t n) {
    helios_gen *gen = NULL;
    helios_status st = helios_gen_new(p, g, &gen);
    for (helios_gen_progress pr = {0}; st == HELIOS_OK && !pr.finished;) {
        st = helios_gen_step(gen, &pr);
        if (st == HELIOS_OK && pr.chunk_done)
            memcpy(out + (size_t)pr.chunk * n, pr.latents, n * sizeof(float));
    }
    helios_gen_free(gen);
    return st;
}

/* Bad input (issue 15): an infinite guidance scale is refused; V2V from
 * frame 0 + the newest frames (helios_video_read_tail's shape) gives the latents of the whole
 * video; a generation over the address-space limit is refused before it allocates. */
static void test_bad_input(helios_session *s, helios_pipeline *p) {
    helios_gen_params g = small_params();
    g.num_chunks = 1;
    g.sampler = HELIOS_SAMPLER_EULER;
    g.guidance_scale = INFINITY;
    size_t n = 16 * 3 * 8 * 16;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    char msg[1024];
    /* refused up front (helios.h's limits); a non-finite value that arises during sampling is
     * tested in test_cli.sh with weights that overflow */
    CHECK(first_chunk(p, &g, a, n, msg, sizeof msg) == HELIOS_ERR_INVALID_ARG &&
              strstr(helios_session_error(s), "guidance_scale inf out of range"),
          "infinite guidance: %s", helios_session_error(s));

    g = small_params();
    g.num_chunks = 1;
    enum { TV = 80 }; /* 8 windows of 9 frames; the history (19 latents) takes the newest 7 */
    const size_t frame = (size_t)g.height * g.width;
    float *video = malloc(3 * TV * frame * sizeof *video);
    for (size_t c = 0; c < 3; c++)
        for (size_t t = 0; t < TV; t++)
            for (size_t i = 0; i < frame; i++)
                video[(c * TV + t) * frame + i] =
                    sinf(0.05f * (float)(i % 97) + 0.3f * (float)t + (float)c) * 0.9f;
    int tail = helios_gen_video_tail(p, &g);
    CHECK(tail == 7 * 9, "V2V tail: %d frames", tail);
    g.video = video, g.video_frames = TV;
    CHECK(first_chunk(p, &g, a, n, msg, sizeof msg) == HELIOS_OK, "V2V, whole video: %s %s", msg,
          helios_session_error(s));
    if (tail > 0 && tail < TV - 1) {
        float *cut = malloc(3 * (size_t)(1 + tail) * frame * sizeof *cut);
        for (size_t c = 0; c < 3; c++) {
            memcpy(cut + c * (1 + tail) * frame, video + c * TV * frame, frame * sizeof *cut);
            memcpy(cut + (c * (1 + tail) + 1) * frame, video + (c * TV + TV - tail) * frame,
                   tail * frame * sizeof *cut);
        }
        g.video = cut, g.video_frames = 1 + tail, g.video_skipped = TV - 1 - tail;
        CHECK(first_chunk(p, &g, b, n, msg, sizeof msg) == HELIOS_OK, "V2V from a tail: %s", msg);
        float d = 0; /* two V2V runs differ by ~2e-6 (oneDNN's conv reductions): not bit-exact */
        for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
        CHECK(d < 1e-4, "V2V from frame 0 + the newest %d frames = V2V from all %d (max diff %g)",
              tail, TV, d);
        g.video_frames -= 9,
            g.video_skipped += 9; /* the same length, but a window it needs is missing */
        helios_gen *gen = NULL;
        CHECK(helios_gen_new(p, &g, &gen) == HELIOS_ERR_INVALID_ARG &&
                  strstr(helios_session_error(s), "skipped"),
              "V2V missing needed frames: %s", helios_session_error(s));
        helios_gen_free(gen);
        free(cut);
    }
    free(video);

#if !defined(__SANITIZE_ADDRESS__) /* ASan's shadow memory needs terabytes of address space */
    pid_t pid = fork();
    if (pid == 0) { /* a child, so the limit does not outlive the check */
        FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        unsigned long long vm_kb = 0;
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "VmSize:", 7)) vm_kb = strtoull(line + 7, NULL, 10);
        if (f) fclose(f);
        struct rlimit r = {.rlim_cur = (rlim_t)(vm_kb + 32 * 1024) * 1024,
                           .rlim_max = RLIM_INFINITY};
        setrlimit(RLIMIT_AS, &r);
        helios_gen_params gl = small_params();
        helios_gen *gen = NULL;
        helios_status st = helios_gen_new(p, &gl, &gen);
        _exit(st == HELIOS_ERR_OOM && !gen &&
                      strstr(helios_session_error(s), "not enough memory") &&
                      strstr(helios_session_error(s), "RLIMIT_AS")
                  ? 0
                  : 1);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0,
          "a generation over RLIMIT_AS is refused with the numbers (child status %d)", status);
#endif
    free(a), free(b);
}

/* ---- the model-folder check at load --------------------------------------------------------
 * Each case is the tiny model with one file edited (a text replacement) or one component folder
 * left out, built from symlinks into a temporary folder; loading must fail with the status and a
 * message naming the file and the key, before anything is computed. */

static const char *const k_components[] = {"scheduler", "text_encoder", "tokenizer", "transformer",
                                           "vae"};

/* dst/name: the original file with `from` replaced by `to` (once; it must occur). */
static int write_edited(const char *src, const char *dst, const char *from, const char *to) {
    size_t n;
    unsigned char *raw = read_file(src, &n);
    char *text = raw ? malloc(n + 1) : NULL; /* read_file's buffer is not a string */
    if (text) memcpy(text, raw, n), text[n] = '\0';
    free(raw);
    char *at = text ? strstr(text, from) : NULL;
    FILE *f = at ? fopen(dst, "wb") : NULL;
    int ok = f && fwrite(text, 1, (size_t)(at - text), f) == (size_t)(at - text) &&
             fputs(to, f) >= 0 && fputs(at + strlen(from), f) >= 0;
    if (f && fclose(f) != 0) ok = 0;
    free(text);
    return ok;
}

/* A model folder at dir: MODEL's files linked, `file` (relative) edited, `drop` left out. */
static int make_model(const char *dir, const char *file, const char *from, const char *to,
                      const char *drop) {
    char src[4096], dst[4096];
    if (mkdir(dir, 0777) != 0) return 0;
    snprintf(src, sizeof src, "%s/model_index.json", MODEL);
    snprintf(dst, sizeof dst, "%s/model_index.json", dir);
    int ok = file && !strcmp(file, "model_index.json") ? write_edited(src, dst, from, to)
                                                       : symlink(src, dst) == 0;
    for (size_t c = 0; ok && c < sizeof k_components / sizeof *k_components; c++) {
        const char *comp = k_components[c];
        size_t len = strlen(comp);
        if (drop && !strcmp(drop, comp)) continue;
        snprintf(src, sizeof src, "%s/%s", MODEL, comp);
        snprintf(dst, sizeof dst, "%s/%s", dir, comp);
        if (!file || strncmp(file, comp, len) || file[len] != '/') {
            ok = symlink(src, dst) == 0;
            continue;
        }
        ok = mkdir(dst, 0777) == 0; /* the edited component: its other files linked */
        DIR *d = ok ? opendir(src) : NULL;
        for (struct dirent *e; d && ok && (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            char s2[4200], d2[4200];
            snprintf(s2, sizeof s2, "%s/%s", src, e->d_name);
            snprintf(d2, sizeof d2, "%s/%s", dst, e->d_name);
            ok = !strcmp(e->d_name, file + len + 1) ? write_edited(s2, d2, from, to)
                                                    : symlink(s2, d2) == 0;
        }
        if (d) closedir(d);
        else ok = 0;
    }
    return ok;
}

static void remove_model(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    unlink(p);
    for (size_t c = 0; c < sizeof k_components / sizeof *k_components; c++) {
        snprintf(p, sizeof p, "%s/%s", dir, k_components[c]);
        if (unlink(p) == 0) continue; /* a link */
        DIR *d = opendir(p);
        for (struct dirent *e; d && (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            char f[4200];
            snprintf(f, sizeof f, "%s/%s", p, e->d_name);
            unlink(f);
        }
        if (d) closedir(d);
        rmdir(p);
    }
    rmdir(dir);
}

/* The test model and a copy of it (root/name) whose model_index.json also says key_value (one
 * helios key, '"key": value'); both loaded, *base and *variant NULL where loading failed. */
static void load_variant(helios_session *s, const char *root, const char *name,
                         const char *key_value, char *dir, size_t cap, helios_pipeline **base,
                         helios_pipeline **variant) {
    char to[200];
    snprintf(dir, cap, "%s/%s", root, name);
    snprintf(to, sizeof to, "\"is_cfg_zero_star\": false, %s", key_value);
    CHECK(make_model(dir, "model_index.json", "\"is_cfg_zero_star\": false", to, NULL), "%s folder",
          name);
    helios_pipeline_params pp;
    helios_pipeline_params_init(&pp);
    *base = *variant = NULL;
    pp.model_dir = MODEL;
    CHECK(helios_pipeline_load(s, &pp, base) == HELIOS_OK, "load: %s", helios_session_error(s));
    pp.model_dir = dir;
    CHECK(helios_pipeline_load(s, &pp, variant) == HELIOS_OK, "%s folder loads: %s", name,
          helios_session_error(s));
}

/* model_index.json's "keep_first_frame": false (a model trained without the first-frame
 * anchor): chunk 0 is the same, later chunks see a zero anchor and differ. */
static void test_no_anchor(helios_session *s, const char *root) {
    char dir[300];
    helios_pipeline *with, *without;
    load_variant(s, root, "no_anchor", "\"keep_first_frame\": false", dir, sizeof dir, &with,
                 &without);
    enum { N = 16 * 3 * 8 * 16 };
    static float a[2 * N], b[2 * N];
    helios_gen_params g = small_params();
    g.num_chunks = 2, g.decode = 0;
    if (with && without) {
        CHECK(all_chunks(with, &g, a, N) == HELIOS_OK && all_chunks(without, &g, b, N) == HELIOS_OK,
              "2 chunks each");
        CHECK(!memcmp(a, b, N * sizeof *a), "chunk 0 does not depend on keep_first_frame");
        CHECK(memcmp(a + N, b + N, N * sizeof *a), "chunk 1 ignores keep_first_frame: false");
    }
    helios_pipeline_free(with);
    helios_pipeline_free(without);
    remove_model(dir);
}

/* model_index.json's "history": "uncompressed" (a model trained without the multi-term memory):
 * every chunk differs from the compressed run, chunk 0 too: its history is all zero frames, but
 * zero frames still become tokens (the patch embeddings' biases), 20 frames of 1x2x2 patches
 * instead of the long / mid / short tiers' fewer. Two runs agree bit for bit. (The layout itself
 * is checked in test_train_stage1, and the loop against the compressed one where the two must
 * agree in test_pipeline.) */
static void test_uncompressed_history(helios_session *s, const char *root) {
    char dir[300];
    helios_pipeline *comp, *flat;
    load_variant(s, root, "uncompressed", "\"history\": \"uncompressed\"", dir, sizeof dir, &comp,
                 &flat);
    enum { N = 16 * 3 * 8 * 16 };
    static float a[2 * N], b[2 * N], c[2 * N];
    helios_gen_params g = small_params();
    g.num_chunks = 2, g.decode = 0;
    if (comp && flat) {
        CHECK(all_chunks(comp, &g, a, N) == HELIOS_OK && all_chunks(flat, &g, b, N) == HELIOS_OK &&
                  all_chunks(flat, &g, c, N) == HELIOS_OK,
              "2 chunks each");
        CHECK(memcmp(a, b, N * sizeof *a), "chunk 0 ignores \"history\": \"uncompressed\"");
        CHECK(memcmp(a + N, b + N, N * sizeof *a), "chunk 1 ignores \"history\": \"uncompressed\"");
        CHECK(!memcmp(b, c, 2 * N * sizeof *b), "two uncompressed runs differ");
    }
    helios_pipeline_free(comp);
    helios_pipeline_free(flat);
    remove_model(dir);
}

static void test_model_check(helios_session *s) {
    static const struct {
        const char *what, *file, *from, *to, *drop;
        helios_status want;
        const char *named_file, *key;
    } cases[] = {
        {"vae/ missing", NULL, NULL, NULL, "vae", HELIOS_ERR_MISSING, "vae/config.json", "'vae'"},
        {"latents_mean of 15 values", "vae/config.json", "-0.7571,", "", NULL, HELIOS_ERR_FORMAT,
         "vae/config.json", "'latents_mean'"},
        {"latents_std of 17 values", "vae/config.json", "2.8184,", "2.8184, 1.0,", NULL,
         HELIOS_ERR_FORMAT, "vae/config.json", "'latents_std'"},
        {"Base with the DMD scheduler", "model_index.json", "HeliosPyramidPipeline",
         "HeliosPipeline", NULL, HELIOS_ERR_UNSUPPORTED, "model_index.json", "DMD"},
        {"is_distilled without DMD", "scheduler/scheduler_config.json", "\"dmd\"", "\"unipc\"",
         NULL, HELIOS_ERR_UNSUPPORTED, "model_index.json", "'is_distilled'"},
        {"UMT5 layer_norm_epsilon 0", "text_encoder/config.json", "\"layer_norm_epsilon\": 1e-06",
         "\"layer_norm_epsilon\": 0", NULL, HELIOS_ERR_FORMAT, "text_encoder/config.json",
         "'layer_norm_epsilon'"},
        {"UMT5 layer_norm_epsilon < 0", "text_encoder/config.json", "\"layer_norm_epsilon\": 1e-06",
         "\"layer_norm_epsilon\": -1e-06", NULL, HELIOS_ERR_FORMAT, "text_encoder/config.json",
         "'layer_norm_epsilon'"},
        {"is_distilled \"yes\"", "model_index.json", "\"is_distilled\": true",
         "\"is_distilled\": \"yes\"", NULL, HELIOS_ERR_FORMAT, "model_index.json",
         "'is_distilled'"},
        {"is_cfg_zero_star 1", "model_index.json", "\"is_cfg_zero_star\": false",
         "\"is_cfg_zero_star\": 1", NULL, HELIOS_ERR_FORMAT, "model_index.json",
         "'is_cfg_zero_star'"},
        {"keep_first_frame \"no\"", "model_index.json", "\"is_cfg_zero_star\": false",
         "\"is_cfg_zero_star\": false, \"keep_first_frame\": \"no\"", NULL, HELIOS_ERR_FORMAT,
         "model_index.json", "'keep_first_frame'"},
        {"history \"flat\"", "model_index.json", "\"is_cfg_zero_star\": false",
         "\"is_cfg_zero_star\": false, \"history\": \"flat\"", NULL, HELIOS_ERR_FORMAT,
         "model_index.json", "'history'"},
        {"history true", "model_index.json", "\"is_cfg_zero_star\": false",
         "\"is_cfg_zero_star\": false, \"history\": true", NULL, HELIOS_ERR_FORMAT,
         "model_index.json", "'history'"},
        {"an AutoencoderKL", "model_index.json", "\"AutoencoderKLWan\"", "\"AutoencoderKL\"", NULL,
         HELIOS_ERR_UNSUPPORTED, "model_index.json", "'vae'"},
        {"a DDIMScheduler", "model_index.json", "\"HeliosDMDScheduler\"", "\"DDIMScheduler\"", NULL,
         HELIOS_ERR_UNSUPPORTED, "model_index.json", "'scheduler'"},
        {"a DDIMScheduler config", "scheduler/scheduler_config.json", "\"HeliosDMDScheduler\"",
         "\"DDIMScheduler\"", NULL, HELIOS_ERR_UNSUPPORTED, "scheduler_config.json",
         "'_class_name'"},
        {"a component as a string", "model_index.json",
         "[\n  \"diffusers\",\n  \"HeliosTransformer3DModel\"\n ]", "\"HeliosTransformer3DModel\"",
         NULL, HELIOS_ERR_FORMAT, "model_index.json", "'transformer'"},
        {"UMT5 num_layers 0", "text_encoder/config.json", "\"num_layers\": 2", "\"num_layers\": 0",
         NULL, HELIOS_ERR_FORMAT, "text_encoder/config.json", "'num_layers'"},
        {"UMT5 d_model not the transformer's text_dim", "transformer/config.json",
         "\"text_dim\": 32", "\"text_dim\": 48", NULL, HELIOS_ERR_FORMAT,
         "text_encoder/config.json", "'d_model'"},
        {"num_train_timesteps 10^8", "scheduler/scheduler_config.json",
         "\"num_train_timesteps\": 1000", "\"num_train_timesteps\": 100000000", NULL,
         HELIOS_ERR_FORMAT, "scheduler_config.json", "'num_train_timesteps'"},
        {"use_dynamic_shifting \"yes\"", "scheduler/scheduler_config.json",
         "\"use_dynamic_shifting\": true", "\"use_dynamic_shifting\": \"yes\"", NULL,
         HELIOS_ERR_FORMAT, "scheduler_config.json", "'use_dynamic_shifting'"},
        {"shift of a string", "scheduler/scheduler_config.json", "\"shift\": 1.0",
         "\"shift\": \"1\"", NULL, HELIOS_ERR_FORMAT, "scheduler_config.json", "'shift'"},
        {"transformer eps 1e-50 (0 in float32)", "transformer/config.json", "\"eps\": 1e-06",
         "\"eps\": 1e-50", NULL, HELIOS_ERR_FORMAT, "transformer/config.json", "'eps'"},
        {"transformer out_channels 8", "transformer/config.json", "\"out_channels\": 16",
         "\"out_channels\": 8", NULL, HELIOS_ERR_FORMAT, "transformer/config.json",
         "'out_channels'"},
        {"patch_size 32", "transformer/config.json", "\"patch_size\": [\n  1,",
         "\"patch_size\": [\n  32,", NULL, HELIOS_ERR_FORMAT, "transformer/config.json",
         "'patch_size'"},
        {"VAE is_residual \"no\"", "vae/config.json", "\"is_residual\": false",
         "\"is_residual\": \"no\"", NULL, HELIOS_ERR_FORMAT, "vae/config.json", "'is_residual'"},
    };
    char root[] = "/tmp/helios_test_model_check_XXXXXX";
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    helios_pipeline_params pp;
    helios_pipeline_params_init(&pp);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char dir[300];
        snprintf(dir, sizeof dir, "%s/m%zu", root, i);
        if (!make_model(dir, cases[i].file, cases[i].from, cases[i].to, cases[i].drop)) {
            CHECK(0, "%s: cannot build the model folder", cases[i].what);
            remove_model(dir);
            continue;
        }
        pp.model_dir = dir;
        helios_pipeline *p = NULL;
        helios_status st = helios_pipeline_load(s, &pp, &p);
        const char *msg = helios_session_error(s);
        CHECK(st == cases[i].want && !p && strstr(msg, cases[i].named_file) &&
                  strstr(msg, cases[i].key),
              "%s: status %d (want %d), message names %s and %s: %s", cases[i].what, (int)st,
              (int)cases[i].want, cases[i].named_file, cases[i].key, msg);
        helios_pipeline_free(p);
        remove_model(dir);
    }

    /* A folder meant for latents: "vae": [null, null] and no vae/ loads; frames are refused
     * before anything is encoded, latents are produced. */
    char dir[300];
    snprintf(dir, sizeof dir, "%s/latents_only", root);
    CHECK(make_model(dir, "model_index.json", "\"diffusers\",\n  \"AutoencoderKLWan\"",
                     "null, null", "vae"),
          "latents-only folder");
    pp.model_dir = dir;
    helios_pipeline *p = NULL;
    CHECK(helios_pipeline_load(s, &pp, &p) == HELIOS_OK, "latents-only folder loads: %s",
          helios_session_error(s));
    if (p) {
        helios_gen_params g = small_params();
        g.num_chunks = 1;
        helios_gen *gen = NULL;
        CHECK(helios_gen_new(p, &g, &gen) == HELIOS_ERR_MISSING && !gen &&
                  strstr(helios_session_error(s), "vae"),
              "frames without a VAE refused: %s", helios_session_error(s));
        g.decode = 0;
        char msg[1024];
        CHECK(run(p, &g, NULL, NULL, msg, sizeof msg) == HELIOS_OK, "latents without a VAE: %s %s",
              msg, helios_session_error(s));
    }
    helios_pipeline_free(p);
    remove_model(dir);
    test_no_anchor(s, root);
    test_uncompressed_history(s, root);

    /* model_index.json's max_sequence_length is the text length when the caller leaves 0: the
     * same latents as asking for 8 on the plain folder, others than its 512 */
    snprintf(dir, sizeof dir, "%s/text_len_8", root);
    CHECK(make_model(dir, "model_index.json", "\"is_distilled\": true",
                     "\"is_distilled\": true, \"max_sequence_length\": 8", NULL),
          "text_len_8 folder");
    pp.model_dir = dir;
    p = NULL;
    CHECK(helios_pipeline_load(s, &pp, &p) == HELIOS_OK, "max_sequence_length 8 loads: %s",
          helios_session_error(s));
    pp.model_dir = MODEL;
    helios_pipeline *plain = NULL;
    CHECK(helios_pipeline_load(s, &pp, &plain) == HELIOS_OK, "plain folder: %s",
          helios_session_error(s));
    if (p && plain) {
        size_t n = 16 * 3 * 8 * 16;
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
        char msg[1024];
        helios_gen_params g = small_params();
        CHECK(first_chunk(p, &g, a, n, msg, sizeof msg) == HELIOS_OK, "default length: %s", msg);
        g.max_sequence_length = 8;
        CHECK(first_chunk(plain, &g, b, n, msg, sizeof msg) == HELIOS_OK, "length 8: %s", msg);
        g.max_sequence_length = 0;
        CHECK(first_chunk(plain, &g, c, n, msg, sizeof msg) == HELIOS_OK, "length 512: %s", msg);
        CHECK(!memcmp(a, b, n * sizeof *a), "the folder's max_sequence_length 8 is used");
        CHECK(memcmp(a, c, n * sizeof *a), "... and differs from the default 512");
        free(a), free(b), free(c);
    }
    helios_pipeline_free(p);
    helios_pipeline_free(plain);
    remove_model(dir);
    rmdir(root);
}

int main(void) {
    test_version_and_null_frees();
    test_session_limits();
    helios_session_params sp;
    helios_session_params_init(&sp);
    helios_session *s;
    helios_session_new(&sp, &s);
    helios_pipeline_params pp;
    helios_pipeline_params_init(&pp);
    pp.model_dir = MODEL;
    pp.low_memory = 1;
    helios_pipeline *p = NULL;
    CHECK(helios_pipeline_load(s, &pp, &p) == HELIOS_OK, "load: %s", helios_session_error(s));
    if (!p) return test_done("test_generate");

    size_t n = 16 * 3 * 8 * 16;
    float a[16 * 3 * 8 * 16], b[16 * 3 * 8 * 16];
    test_stepwise(p, a, n);
    test_stepwise(p, b, n);
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, same video");
    CHECK(max_abs(a, (int64_t)n) > 0.1 && max_abs(a, (int64_t)n) < 100, "plausible latents");

    /* cancellation from the progress callback */
    helios_gen_params g = small_params();
    int calls = 0;
    char msg[1024];
    CHECK(run(p, &g, cancel_after_3, &calls, msg, sizeof msg) == HELIOS_ERR_CANCELLED &&
              calls == 3 && strstr(msg, "cancelled"),
          "cancelled after 3 steps: %s", msg);
    g_chunks_seen = 0;
    CHECK(run(p, &g, count_chunks, NULL, msg, sizeof msg) == HELIOS_OK && g_chunks_seen == 3 &&
              !msg[0],
          "blocking run streams 3 chunks");

    /* prompt switching: the video after the switch differs from the unswitched one */
    helios_gen *gen;
    CHECK(helios_gen_new(p, &g, &gen) == HELIOS_OK, "new");
    float c[16 * 3 * 8 * 16];
    for (helios_gen_progress pr = {0}; !pr.finished;) {
        CHECK(helios_gen_step(gen, &pr) == HELIOS_OK, "step");
        if (pr.chunk_done && pr.chunk == 0)
            CHECK(helios_gen_prompt_set(gen, "a blue cube sliding on ice", NULL, 2) == HELIOS_OK,
                  "prompt_set: %s", helios_gen_error(gen));
        if (pr.finished) memcpy(c, pr.latents, sizeof c);
    }
    helios_gen_free(gen);
    float d = 0;
    for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - c[i]));
    CHECK(d > 1e-3, "switching the prompt changes the video (%g)", d);

    /* errors: a failing generation keeps its message; another generation's and the session's
     * are untouched */
    helios_gen *ga, *gb;
    CHECK(helios_gen_new(p, &g, &ga) == HELIOS_OK && helios_gen_new(p, &g, &gb) == HELIOS_OK,
          "two generations");
    calls = 0;
    CHECK(helios_gen_run(ga, cancel_after_3, &calls) == HELIOS_ERR_CANCELLED, "a cancelled");
    helios_gen_progress pr;
    CHECK(helios_gen_step(gb, &pr) == HELIOS_OK, "b steps on");
    CHECK(helios_gen_prompt_set(gb, NULL, NULL, 1) == HELIOS_OK, "b prompt_set");
    CHECK(strstr(helios_gen_error(ga), "cancelled") && !helios_gen_error(gb)[0] &&
              !helios_session_error(s)[0],
          "errors stay with their generation: a '%s' b '%s' session '%s'", helios_gen_error(ga),
          helios_gen_error(gb), helios_session_error(s));
    helios_gen_free(ga);
    helios_gen_free(gb);
    test_invalid_params(s, p);
    test_media(s, p);
    test_bad_input(s, p);
    test_model_check(s);
    helios_pipeline *q = NULL;
    pp.model_dir = "/nonexistent/model";
    CHECK(helios_pipeline_load(s, &pp, &q) != HELIOS_OK &&
              strstr(helios_session_error(s), "/nonexistent/model"),
          "missing folder named: %s", helios_session_error(s));
    helios_pipeline_free(p);
    helios_session_free(s);
    return test_done("test_generate");
}
