/* src/train/dataset + latent_cache: training clips and their cached latents.
 *   world source: the same index gives the same bytes, equal to the world rendered directly from
 *   the clip seed; captions are the world's own (they parse back);
 *   folder source: videos written by our own writer, resize-to-cover + center crop + first N
 *   frames equal to the reader's frames cropped by hand, too-short videos skipped with a warning
 *   naming them, missing/empty captions and undecodable videos refused by name;
 *   latent cache (tiny random model): latents and prompt embeddings equal a direct VAE encode
 *   (window by window) and prompt encode bit for bit; a second open reuses the files (no write,
 *   same mtime); a kill's leftover .part, a truncated file, a flipped data byte and another clip's
 *   file are never used (recomputed, same bits); a cache made for another size is refused by
 *   field, or recomputed when allowed;
 *   latent statistics: the clips' posterior means normalised by the measured tables (through the
 *   pipelines' hl_vae_normalize_latents) have mean 0 and standard deviation 1 per channel; the
 *   config written with the tables parses back to the same config. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "io/media.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "text/prompt_encode.h"
#include "train/dataset.h"
#include "train/latent_cache.h"
#include "train/latent_stats.h"
#include "vae/vae.h"
#include "world/world.h"

#define MODEL_DIR HELIOS_VECTORS "/../models/tiny-random-model"

static char g_tmp[256];
static char g_log[16384];

static void log_sink(helios_log_level level, const char *msg, void *user) {
    (void)user;
    if (level > HELIOS_LOG_WARN) return;
    size_t n = strlen(g_log);
    snprintf(g_log + n, sizeof g_log - n, "%s\n", msg);
}

static const char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", g_tmp, name);
    return p;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A video of T frames, W x H: three vertical bands red | green | blue, with a brightness that
 * changes per frame (so frame order and length are visible). */
static void write_video(const char *path, int W, int H, int T) {
    hl_error err = {0};
    hl_video_writer *vw = NULL;
    hl_video_params vp;
    hl_video_params_init(&vp);
    vp.crf = 10;
    if (hl_video_writer_open(path, W, H, &vp, &vw, &err) != HL_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    float *x = malloc((size_t)3 * T * H * W * sizeof *x);
    for (int t = 0; t < T; t++)
        for (int y = 0; y < H; y++)
            for (int i = 0; i < W; i++) {
                int band = 3 * i / W;
                for (int c = 0; c < 3; c++)
                    x[(((size_t)c * T + t) * H + y) * W + i] = c == band ? 0.9f - 0.1f * (float)t
                                                                         : -0.8f;
            }
    CHECK(hl_video_writer_write(vw, x, T, 0, T, &err) == HL_OK, "%s", err.msg);
    CHECK(hl_video_writer_close(vw, &err) == HL_OK, "%s", err.msg);
    free(x);
}

// ---------------------------------------------------------------------------------------------

static void test_world(void) {
    hl_error err = {0};
    hl_dataset_config c;
    hl_dataset_config_default(&c);
    c.kind = HL_DATASET_FOLDER;
    hl_dataset_config_set_source(&c, "world");
    CHECK(c.kind == HL_DATASET_WORLD && !c.folder, "\"world\" is the world");
    c.width = 32, c.height = 24, c.frames = 5, c.n_clips = 3, c.seed = 7;
    hl_dataset *a = NULL, *b = NULL;
    CHECK(hl_dataset_open(&c, &a, &err) == HL_OK, "%s", err.msg);
    CHECK(hl_dataset_open(&c, &b, &err) == HL_OK, "%s", err.msg);
    if (!a || !b) return;
    CHECK(hl_dataset_count(a) == 3, "count %lld", (long long)hl_dataset_count(a));
    hl_clip x, y, z, w0;
    CHECK(hl_dataset_get(a, 1, &x, &err) == HL_OK, "%s", err.msg);
    CHECK(hl_dataset_get(a, 1, &y, &err) == HL_OK, "%s", err.msg);
    CHECK(hl_dataset_get(b, 1, &z, &err) == HL_OK, "%s", err.msg);
    CHECK(hl_dataset_get(a, 0, &w0, &err) == HL_OK, "%s", err.msg);
    const size_t n = (size_t)3 * 5 * 24 * 32;
    CHECK(x.frames == 5 && x.height == 24 && x.width == 32, "shape");
    CHECK(memcmp(x.pixels, y.pixels, n * 4) == 0, "same index, same bytes");
    CHECK(memcmp(x.pixels, z.pixels, n * 4) == 0, "same config, same bytes");
    CHECK(strcmp(x.caption, z.caption) == 0, "same caption");
    CHECK(memcmp(x.pixels, w0.pixels, n * 4) != 0, "clips 0 and 1 differ");
    char id0[HL_DATASET_ID_MAX], id1[HL_DATASET_ID_MAX];
    CHECK(strcmp(hl_dataset_clip_id(a, 0, id0, sizeof id0),
                 hl_dataset_clip_id(a, 1, id1, sizeof id1)) != 0,
          "ids differ");
    float lo = 1, hi = -1;
    for (size_t i = 0; i < n; i++)
        lo = x.pixels[i] < lo ? x.pixels[i] : lo, hi = x.pixels[i] > hi ? x.pixels[i] : hi;
    CHECK(lo >= -1 && hi <= 1 && hi > lo, "range [%g, %g]", lo, hi);
    hl_phrase ph;
    hl_phrase_parse(x.caption, &ph);
    CHECK(ph.n_objects >= 1, "caption '%s' names objects", x.caption);
    /* the world's own frames: rendered directly from the clip seed */
    hl_world_config wc = {.seed = hl_dataset_clip_seed(7, 1),
                          .width = 32,
                          .height = 24,
                          .fps = 24,
                          .max_objects = 4,
                          .events = false,
                          .camera = true,
                          .lighting = true};
    hl_world w;
    float *direct = malloc(n * sizeof *direct);
    CHECK(hl_world_init(&w, &wc, &err) == HL_OK, "%s", err.msg);
    for (int t = 0; t < 5; t++) {
        if (t) hl_world_step(&w);
        hl_world_render(&w, direct + (size_t)t * 24 * 32, (size_t)5 * 24 * 32);
    }
    CHECK(strcmp(w.caption, x.caption) == 0, "caption is the world's: '%s'", w.caption);
    CHECK(memcmp(direct, x.pixels, n * 4) == 0, "frames are the world's");
    hl_world_release(&w);
    free(direct);
    hl_clip_free(&y);
    CHECK(hl_dataset_get(a, 3, &y, &err) == HELIOS_ERR_INVALID_ARG && y.pixels == NULL, "index 3");
    hl_clip_free(&x), hl_clip_free(&z), hl_clip_free(&w0), hl_clip_free(&y);
    hl_dataset_free(a), hl_dataset_free(b);
    /* bad configurations name the field */
    hl_dataset *d = NULL;
    c.width = 36;
    CHECK(hl_dataset_open(&c, &d, &err) == HELIOS_ERR_INVALID_ARG && strstr(err.msg, "36x24"), "%s",
          err.msg);
    c.width = 32, c.frames = 0;
    CHECK(hl_dataset_open(&c, &d, &err) == HELIOS_ERR_INVALID_ARG && strstr(err.msg, "frames"),
          "%s", err.msg);
    c.frames = 5, c.n_clips = 0;
    CHECK(hl_dataset_open(&c, &d, &err) == HELIOS_ERR_INVALID_ARG && strstr(err.msg, "n_clips"),
          "%s", err.msg);
}

/* Frames 0..F-1 of path read at rw x rh, cropped at (x0, y0) to W x H: what a clip must be. */
static float *expected_crop(const char *path, int rw, int rh, int x0, int y0, int W, int H, int F) {
    hl_error err = {0};
    hl_media m = {0};
    if (hl_video_read(path, rw, rh, F, &m, &err) != HL_OK || m.frames != F) {
        CHECK(0, "%s: %s (%d frames)", path, err.msg, m.frames);
        hl_media_free(&m);
        return NULL;
    }
    float *out = malloc((size_t)3 * F * H * W * sizeof *out);
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < F; t++)
            for (int y = 0; y < H; y++)
                memcpy(out + (((size_t)c * F + t) * H + y) * W,
                       m.data + (((size_t)c * F + t) * rh + y0 + y) * rw + x0, (size_t)W * 4);
    hl_media_free(&m);
    return out;
}

static void test_folder(void) {
    hl_error err = {0};
    const char *dir = tmp_path("videos");
    mkdir(dir, 0777);
    char p[512];
    snprintf(p, sizeof p, "%s/a.mp4", dir), write_video(p, 48, 32, 12);
    snprintf(p, sizeof p, "%s/a.txt", dir), write_text(p, "  red, green and blue bands \n\n");
    snprintf(p, sizeof p, "%s/b.mp4", dir), write_video(p, 32, 48, 10);
    snprintf(p, sizeof p, "%s/b.txt", dir), write_text(p, "tall bands");
    snprintf(p, sizeof p, "%s/c_short.mp4", dir), write_video(p, 16, 16, 4);
    snprintf(p, sizeof p, "%s/c_short.txt", dir), write_text(p, "too short");
    snprintf(p, sizeof p, "%s/notes.md", dir), write_text(p, "not a video");

    hl_dataset_config c;
    hl_dataset_config_default(&c);
    hl_dataset_config_set_source(&c, dir);
    CHECK(c.kind == HL_DATASET_FOLDER && c.folder == dir, "a path is a folder source");
    c.width = 16, c.height = 16, c.frames = 9;
    hl_dataset *ds = NULL;
    g_log[0] = '\0';
    CHECK(hl_dataset_open(&c, &ds, &err) == HL_OK, "%s", err.msg);
    if (!ds) return;
    CHECK(hl_dataset_count(ds) == 2 && hl_dataset_skipped(ds) == 1, "count %lld skipped %d",
          (long long)hl_dataset_count(ds), hl_dataset_skipped(ds));
    CHECK(strstr(g_log, "c_short.mp4") && strstr(g_log, "skipped"), "warning: %s", g_log);
    hl_clip a, b;
    CHECK(hl_dataset_get(ds, 0, &a, &err) == HL_OK, "%s", err.msg);
    CHECK(hl_dataset_get(ds, 1, &b, &err) == HL_OK, "%s", err.msg);
    if (a.pixels && b.pixels) {
        CHECK(strcmp(a.caption, "red, green and blue bands") == 0, "trimmed: '%s'", a.caption);
        CHECK(strstr(a.source, "a.mp4") && strstr(b.source, "b.mp4"), "order by name");
        CHECK(a.frames == 9 && a.width == 16 && a.height == 16, "clip shape");
        /* 48x32 covers 16x16 at 24x16: columns 4..19; 32x48 at 16x24: rows 4..19 */
        snprintf(p, sizeof p, "%s/a.mp4", dir);
        float *ea = expected_crop(p, 24, 16, 4, 0, 16, 16, 9);
        snprintf(p, sizeof p, "%s/b.mp4", dir);
        float *eb = expected_crop(p, 16, 24, 0, 4, 16, 16, 9);
        const size_t n = (size_t)3 * 9 * 16 * 16;
        CHECK(ea && memcmp(ea, a.pixels, n * 4) == 0, "a: resize to cover + center crop");
        CHECK(eb && memcmp(eb, b.pixels, n * 4) == 0, "b: resize to cover + center crop");
        free(ea), free(eb);
        /* the bands after the crop: red 0..3, green 4..11, blue 12..15 (frame 0, row 8) */
        const size_t pl = (size_t)9 * 16 * 16;
        const float *px = a.pixels + 8 * 16;
        CHECK(px[1] > px[pl + 1] && px[1] > px[2 * pl + 1], "red on the left");
        CHECK(px[pl + 8] > px[8] && px[pl + 8] > px[2 * pl + 8], "green in the middle");
        CHECK(px[2 * pl + 14] > px[14] && px[2 * pl + 14] > px[pl + 14], "blue on the right");
        /* frame order: the band brightness falls frame by frame */
        CHECK(px[1] > a.pixels[8 * 256 + 8 * 16 + 1] + 0.5f, "frame 8 darker than frame 0");
    }
    hl_clip_free(&a), hl_clip_free(&b);
    hl_dataset_free(ds);

    /* a video without its caption, an empty caption, an undecodable video */
    const char *d2 = tmp_path("nocap");
    mkdir(d2, 0777);
    snprintf(p, sizeof p, "%s/x.mp4", d2), write_video(p, 16, 16, 9);
    c.folder = d2;
    CHECK(hl_dataset_open(&c, &ds, &err) == HELIOS_ERR_MISSING && strstr(err.msg, "x.mp4") &&
              strstr(err.msg, "x.txt"),
          "%s", err.msg);
    snprintf(p, sizeof p, "%s/x.txt", d2), write_text(p, " \n\t");
    CHECK(hl_dataset_open(&c, &ds, &err) == HELIOS_ERR_FORMAT && strstr(err.msg, "x.txt") &&
              strstr(err.msg, "empty"),
          "%s", err.msg);
    snprintf(p, sizeof p, "%s/x.txt", d2), write_text(p, "ok");
    snprintf(p, sizeof p, "%s/bad.mp4", d2), write_text(p, "this is not a video at all");
    snprintf(p, sizeof p, "%s/bad.txt", d2), write_text(p, "caption");
    CHECK(hl_dataset_open(&c, &ds, &err) != HL_OK && strstr(err.msg, "bad.mp4"), "%s", err.msg);
    /* every video too short */
    const char *d3 = tmp_path("short");
    mkdir(d3, 0777);
    snprintf(p, sizeof p, "%s/s.y4m", d3), write_video(p, 16, 16, 3);
    snprintf(p, sizeof p, "%s/s.txt", d3), write_text(p, "short");
    c.folder = d3;
    CHECK(hl_dataset_open(&c, &ds, &err) == HELIOS_ERR_MISSING && strstr(err.msg, "shorter"), "%s",
          err.msg);
    c.folder = tmp_path("does-not-exist");
    CHECK(hl_dataset_open(&c, &ds, &err) == HELIOS_ERR_IO && strstr(err.msg, "does-not-exist"),
          "%s", err.msg);
}

// ---------------------------------------------------------------------------------------------
// latent cache

static hl_dataset *world_ds(int width) {
    hl_error err = {0};
    hl_dataset_config c;
    hl_dataset_config_default(&c);
    c.width = width, c.height = 32, c.frames = 10, c.n_clips = 2, c.seed = 3;
    hl_dataset *ds = NULL;
    CHECK(hl_dataset_open(&c, &ds, &err) == HL_OK, "%s", err.msg);
    return ds;
}

static hl_latent_cache *cache_open(const hl_ctx *ctx, hl_dataset *ds, int recompute,
                                   hl_error *err) {
    hl_latent_cache_config cc;
    hl_latent_cache_config_default(&cc);
    cc.dir = tmp_path("cache");
    cc.model_dir = MODEL_DIR;
    cc.chunk_frames = 5;
    cc.max_sequence_length = 16;
    cc.recompute_mismatch = recompute;
    hl_latent_cache *lc = NULL;
    hl_latent_cache_open(ctx, ds, &cc, &lc, err);
    return lc;
}

static bool same_clip(const hl_cached_clip *a, const hl_cached_clip *b) {
    size_t nl = (size_t)a->C * a->F * a->h * a->w * 4, nt = (size_t)a->text_len * a->text_dim * 4;
    return a->C == b->C && a->F == b->F && a->h == b->h && a->w == b->w &&
           a->text_len == b->text_len && a->text_dim == b->text_dim &&
           memcmp(a->latents, b->latents, nl) == 0 &&
           memcmp(a->latents_sigma, b->latents_sigma, nl) == 0 &&
           memcmp(a->prompt_embeds, b->prompt_embeds, nt) == 0 &&
           strcmp(a->caption, b->caption) == 0;
}

/* The cached clip against a direct encode of the dataset's frames. */
static void check_direct(const hl_ctx *ctx, hl_dataset *ds, const hl_cached_clip *got) {
    hl_error err = {0};
    hl_clip clip;
    hl_vae *vae = NULL;
    hl_text_encoder *te = NULL;
    if (hl_dataset_get(ds, 0, &clip, &err) != HL_OK ||
        hl_vae_load(MODEL_DIR "/vae", NULL, NULL, &vae, &err) != HL_OK ||
        hl_text_encoder_open(MODEL_DIR "/text_encoder", MODEL_DIR "/tokenizer", &te, &err) !=
            HL_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    CHECK(got->C == 16 && got->F == 4 && got->h == 4 && got->w == 4, "latent shape %dx%dx%dx%d",
          got->C, got->F, got->h, got->w);
    const int T = 5, tl = 2, hw = 16, H = 32, W = 32;
    float *video = malloc((size_t)3 * T * H * W * 4), *mom = malloc((size_t)32 * tl * hw * 4);
    float *mean = malloc((size_t)16 * tl * hw * 4), *sd = malloc((size_t)16 * tl * hw * 4);
    bool lat_ok = true, sig_ok = true;
    for (int k = 0; k < 2; k++) {
        for (int c = 0; c < 3; c++)
            memcpy(video + (size_t)c * T * H * W, clip.pixels + ((size_t)c * 10 + k * T) * H * W,
                   (size_t)T * H * W * 4);
        CHECK(hl_vae_encode(ctx, vae, 1, T, H, W, video, mom) == HL_OK, "%s", err.msg);
        hl_vae_posterior(1, 16, tl * hw, mom, mean, NULL, sd);
        CHECK(hl_vae_normalize_latents(&vae->cfg, 1, tl * hw, mean, &err) == HL_OK, "%s", err.msg);
        for (int c = 0; c < 16; c++) {
            const float inv = 1.0f / vae->cfg.latents_std[c];
            for (int i = 0; i < tl * hw; i++) {
                size_t o = (size_t)c * 4 * hw + (size_t)k * tl * hw + i;
                lat_ok &= got->latents[o] == mean[c * tl * hw + i];
                sig_ok &= got->latents_sigma[o] == sd[c * tl * hw + i] * inv;
            }
        }
    }
    CHECK(lat_ok, "latents = the normalised posterior mean of each window, bit for bit");
    CHECK(sig_ok, "latents_sigma = std / latents_std, bit for bit");
    float *emb = malloc((size_t)16 * 32 * 4);
    CHECK(got->text_len == 16 && got->text_dim == 32, "text shape");
    CHECK(hl_text_encode(ctx, te, clip.caption, 16, emb) == HL_OK, "%s", err.msg);
    CHECK(memcmp(emb, got->prompt_embeds, (size_t)16 * 32 * 4) == 0, "prompt embeds bit for bit");
    CHECK(strcmp(clip.caption, got->caption) == 0, "caption");
    free(video), free(mom), free(mean), free(sd), free(emb);
    hl_clip_free(&clip);
    hl_vae_free(vae);
    hl_text_encoder_free(te);
}

static struct timespec mtime_of(const char *path) {
    struct stat sb = {0};
    stat(path, &sb);
    return sb.st_mtim;
}

static void copy_file(const char *from, const char *to, size_t max) {
    size_t n = 0;
    unsigned char *b = read_file(from, &n);
    FILE *f = fopen(to, "wb");
    if (b && f) fwrite(b, 1, n < max ? n : max, f);
    if (f) fclose(f);
    free(b);
}

static void test_cache(void) {
    hl_error err = {0};
    hl_ctx ctx = test_ctx(HELIOS_BACKEND_CPU, &err);
    hl_dataset *ds = world_ds(32);
    if (!ds) return;
    hl_latent_cache *lc = cache_open(&ctx, ds, 0, &err);
    CHECK(lc, "%s", err.msg);
    if (!lc) return;
    hl_latent_cache_stats s;
    CHECK(hl_latent_cache_fill(lc, &err) == HL_OK, "%s", err.msg);
    hl_latent_cache_get_stats(lc, &s);
    CHECK(s.computed == 2 && s.reused == 0 && s.rejected == 0, "first fill: %lld computed",
          (long long)s.computed);
    hl_cached_clip c0, c1;
    CHECK(hl_latent_cache_get(lc, 0, &c0, &err) == HL_OK, "%s", err.msg);
    CHECK(hl_latent_cache_get(lc, 1, &c1, &err) == HL_OK, "%s", err.msg);
    if (!c0.latents || !c1.latents) return;
    check_direct(&ctx, ds, &c0);
    char p0[600], p1[600];
    snprintf(p0, sizeof p0, "%s", hl_latent_cache_path(lc, 0));
    snprintf(p1, sizeof p1, "%s", hl_latent_cache_path(lc, 1));
    hl_safetensors *st = NULL;
    CHECK(hl_st_open(p0, &st, &err) == HL_OK, "%s", err.msg);
    if (st) {
        const char *f = hl_st_meta(st, "format"), *cap = hl_st_meta(st, "caption");
        CHECK(f && strcmp(f, HL_LATENT_CACHE_FORMAT) == 0, "format");
        CHECK(cap && strcmp(cap, c0.caption) == 0, "caption in the metadata");
        const char *src = hl_st_meta(st, "source");
        CHECK(hl_st_meta(st, "vae") && src && strstr(src, "world seed "), "metadata");
        hl_st_close(st);
    }
    hl_latent_cache_free(lc);

    /* a second open reuses both files and writes nothing */
    struct timespec m0 = mtime_of(p0), m1 = mtime_of(p1);
    lc = cache_open(&ctx, ds, 0, &err);
    CHECK(lc, "%s", err.msg);
    if (!lc) return;
    hl_cached_clip r;
    CHECK(hl_latent_cache_fill(lc, &err) == HL_OK, "%s", err.msg);
    CHECK(hl_latent_cache_get(lc, 0, &r, &err) == HL_OK && same_clip(&r, &c0), "reused 0");
    hl_cached_clip_free(&r);
    hl_latent_cache_get_stats(lc, &s);
    CHECK(s.computed == 0 && s.reused == 3 && s.rejected == 0, "reopen: %lld computed %lld reused",
          (long long)s.computed, (long long)s.reused);
    struct timespec n0 = mtime_of(p0), n1 = mtime_of(p1);
    CHECK(n0.tv_sec == m0.tv_sec && n0.tv_nsec == m0.tv_nsec && n1.tv_sec == m1.tv_sec &&
              n1.tv_nsec == m1.tv_nsec,
          "files untouched");

    /* a kill mid-write: half a file under the temporary name is ignored, then replaced */
    char part[700];
    snprintf(part, sizeof part, "%s.part", p1);
    struct stat sb;
    stat(p1, &sb);
    copy_file(p1, part, (size_t)sb.st_size / 2);
    unlink(p1);
    g_log[0] = '\0';
    CHECK(hl_latent_cache_get(lc, 1, &r, &err) == HL_OK && same_clip(&r, &c1), "after a kill");
    hl_cached_clip_free(&r);
    CHECK(access(part, F_OK) != 0 && access(p1, F_OK) == 0, "the .part became the file");
    /* a truncated final file: rejected with a warning, recomputed to the same bits */
    stat(p0, &sb);
    CHECK(truncate(p0, sb.st_size / 2) == 0, "truncate");
    CHECK(hl_latent_cache_get(lc, 0, &r, &err) == HL_OK && same_clip(&r, &c0), "truncated");
    hl_cached_clip_free(&r);
    CHECK(strstr(g_log, "0.safetensors") && strstr(g_log, "recomputing"), "warning: %s", g_log);
    /* one flipped byte of data (same size, valid header): the checksum catches it */
    stat(p0, &sb);
    int fd = open(p0, O_RDWR);
    unsigned char byte;
    off_t at = sb.st_size - 100;
    CHECK(fd >= 0 && pread(fd, &byte, 1, at) == 1, "read");
    byte ^= 0x10;
    CHECK(pwrite(fd, &byte, 1, at) == 1, "write");
    close(fd);
    CHECK(hl_latent_cache_get(lc, 0, &r, &err) == HL_OK && same_clip(&r, &c0), "flipped byte");
    hl_cached_clip_free(&r);
    /* another clip's (valid) file under this index: its key is wrong */
    copy_file(p0, p1, SIZE_MAX);
    CHECK(hl_latent_cache_get(lc, 1, &r, &err) == HL_OK && same_clip(&r, &c1), "other clip");
    hl_cached_clip_free(&r);
    hl_latent_cache_get_stats(lc, &s);
    CHECK(s.rejected == 3 && s.computed == 4, "rejected %lld computed %lld", (long long)s.rejected,
          (long long)s.computed);
    hl_latent_cache_free(lc);

    /* a cache made for another size: refused by field, or recomputed when allowed */
    hl_dataset *wide = world_ds(40);
    lc = cache_open(&ctx, wide, 0, &err);
    CHECK(!lc && err.status == HELIOS_ERR_INVALID_ARG && strstr(err.msg, "cache.json") &&
              strstr(err.msg, "width '32'") && strstr(err.msg, "'40'"),
          "%s", err.msg);
    lc = cache_open(&ctx, wide, 1, &err);
    CHECK(lc, "%s", err.msg);
    if (lc) {
        CHECK(hl_latent_cache_get(lc, 0, &r, &err) == HL_OK && r.w == 5, "%s", err.msg);
        hl_cached_clip_free(&r);
        hl_latent_cache_get_stats(lc, &s);
        CHECK(s.rejected == 1 && s.computed == 1, "recomputed for the new size");
        hl_latent_cache_free(lc);
    }
    /* and back: the old configuration is now the mismatch */
    lc = cache_open(&ctx, ds, 0, &err);
    CHECK(!lc && strstr(err.msg, "width '40'"), "%s", err.msg);

    /* a damaged cache.json: named, or rewritten when recomputing is allowed */
    write_text(tmp_path("cache/cache.json"), "{\"format\": ");
    lc = cache_open(&ctx, ds, 0, &err);
    CHECK(!lc && err.status == HELIOS_ERR_FORMAT && strstr(err.msg, "cache.json"), "%s", err.msg);
    lc = cache_open(&ctx, ds, 1, &err);
    CHECK(lc, "%s", err.msg);
    hl_latent_cache_free(lc);
    lc = cache_open(&ctx, ds, 0, &err);
    CHECK(lc, "rewritten: %s", err.msg);
    hl_latent_cache_free(lc);

    /* window rules */
    hl_latent_cache_config cc;
    hl_latent_cache_config_default(&cc);
    cc.dir = tmp_path("cache2"), cc.model_dir = MODEL_DIR;
    cc.chunk_frames = 6;
    CHECK(hl_latent_cache_open(&ctx, ds, &cc, &lc, &err) == HELIOS_ERR_INVALID_ARG &&
              strstr(err.msg, "chunk_frames 6"),
          "%s", err.msg);
    cc.chunk_frames = 9;
    CHECK(hl_latent_cache_open(&ctx, ds, &cc, &lc, &err) == HELIOS_ERR_INVALID_ARG &&
              strstr(err.msg, "multiple"),
          "%s", err.msg);
    cc.chunk_frames = 0;
    CHECK(hl_latent_cache_open(&ctx, ds, &cc, &lc, &err) == HELIOS_ERR_INVALID_ARG &&
              strstr(err.msg, "frames 10"),
          "%s", err.msg);
    cc.chunk_frames = 5, cc.model_dir = tmp_path("no-model");
    CHECK(hl_latent_cache_open(&ctx, ds, &cc, &lc, &err) != HL_OK && strstr(err.msg, "no-model"),
          "%s", err.msg);
    hl_cached_clip_free(&c0), hl_cached_clip_free(&c1);
    hl_dataset_free(ds), hl_dataset_free(wide);
}

/* A folder cache: a touched video or an edited caption makes only that clip's file stale. */
static void test_cache_folder(void) {
    hl_error err = {0};
    hl_ctx ctx = test_ctx(HELIOS_BACKEND_CPU, &err);
    const char *dir = tmp_path("videos"); /* test_folder's: a.mp4, b.mp4 (and a short one) */
    hl_dataset_config c;
    hl_dataset_config_default(&c);
    hl_dataset_config_set_source(&c, dir);
    c.width = 16, c.height = 16, c.frames = 9;
    hl_latent_cache_config cc;
    hl_latent_cache_config_default(&cc);
    cc.dir = tmp_path("cache_folder"), cc.model_dir = MODEL_DIR;
    cc.chunk_frames = 9, cc.max_sequence_length = 8;
    hl_latent_cache_stats s[3];
    for (int round = 0; round < 3; round++) {
        hl_dataset *ds = NULL;
        hl_latent_cache *lc = NULL;
        CHECK(hl_dataset_open(&c, &ds, &err) == HL_OK, "%s", err.msg);
        CHECK(!ds || hl_latent_cache_open(&ctx, ds, &cc, &lc, &err) == HL_OK, "%s", err.msg);
        if (lc) {
            CHECK(hl_latent_cache_fill(lc, &err) == HL_OK, "%s", err.msg);
            hl_latent_cache_get_stats(lc, &s[round]);
            int C, F, h, w, L, D;
            hl_latent_cache_shape(lc, &C, &F, &h, &w, &L, &D);
            CHECK(C == 16 && F == 3 && h == 2 && w == 2 && L == 8 && D == 32, "shapes");
        }
        hl_latent_cache_free(lc);
        hl_dataset_free(ds);
        char p[600];
        if (round == 0) { /* a new modification time for a.mp4 */
            snprintf(p, sizeof p, "%s/a.mp4", dir);
            struct timespec t[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
            CHECK(utimensat(AT_FDCWD, p, t, 0) == 0, "utimensat: %s", strerror(errno));
        } else if (round == 1) { /* another caption for b */
            snprintf(p, sizeof p, "%s/b.txt", dir);
            write_text(p, "tall bands, edited");
        }
    }
    CHECK(s[0].computed == 2 && s[0].reused == 0, "first: %lld", (long long)s[0].computed);
    CHECK(s[1].computed == 1 && s[1].reused == 1 && s[1].rejected == 1, "touched a.mp4");
    CHECK(s[2].computed == 1 && s[2].reused == 1 && s[2].rejected == 1, "edited b.txt");
}

static void remove_tree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static void test_latent_stats(void) {
    hl_error err = {0};
    hl_vae *v = NULL;
    if (hl_vae_load(MODEL_DIR "/vae", NULL, NULL, &v, &err) != HL_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    hl_dataset_config dc;
    hl_dataset_config_default(&dc);
    dc.width = 32, dc.height = 16, dc.frames = 5, dc.n_clips = 3, dc.seed = 5;
    hl_dataset *ds = NULL;
    CHECK(hl_dataset_open(&dc, &ds, &err) == HL_OK, "%s", err.msg);
    hl_ctx ctx = {hl_backend_shared(HELIOS_BACKEND_CPU), &err};
    hl_vae_config c = v->cfg;
    const int z = c.z_dim;
    hl_vae_recon rec;
    CHECK(hl_vae_latent_stats(&ctx, v, ds, 3, c.latents_mean, c.latents_std, &rec, true, &err) ==
              HL_OK,
          "%s", err.msg);
    c.latents_n = z;
    float scratch[HL_VAE_MAX_Z];
    CHECK(hl_vae_latent_stats(&ctx, v, ds, 4, scratch, scratch, NULL, false, &err) ==
              HELIOS_ERR_INVALID_ARG,
          "more clips than the dataset holds must be refused");
    /* independent check: normalise each clip's posterior mean with the pipelines' function */
    double sum[HL_VAE_MAX_Z] = {0}, sq[HL_VAE_MAX_Z] = {0}, se = 0;
    int64_t count = 0;
    int pair_ok = rec.pair != NULL;
    for (int64_t i = 0; i < 3; i++) {
        hl_clip clip;
        CHECK(hl_dataset_get(ds, i, &clip, &err) == HL_OK, "%s", err.msg);
        int64_t T, h, w;
        hl_vae_latent_shape(&c, 5, 16, 32, &T, &h, &w);
        int64_t n = T * h * w;
        float *mom = malloc((size_t)(2 * z * n) * sizeof *mom);
        float *mu = malloc((size_t)(z * n) * sizeof *mu);
        CHECK(hl_vae_encode(&ctx, v, 1, 5, 16, 32, clip.pixels, mom) == HL_OK, "%s", err.msg);
        hl_vae_posterior(1, z, n, mom, mu, NULL, NULL);
        float *y = malloc((size_t)(3 * 5 * 16 * 32) * sizeof *y);
        CHECK(hl_vae_decode(&ctx, v, 1, T, h, w, mu, y) == HL_OK, "%s", err.msg);
        for (int64_t k = 0; k < 3 * 5 * 16 * 32; k++) {
            double d = (double)y[k] - clip.pixels[k];
            se += d * d;
            /* clip 0's pair: row r of (3, 5, 16) is [clip row | reconstruction row] */
            int64_t r = k / 32, col = k % 32;
            if (i == 0 && rec.pair)
                pair_ok &= rec.pair[r * 64 + col] == clip.pixels[k] &&
                           rec.pair[r * 64 + 32 + col] == y[k];
        }
        free(y);
        CHECK(hl_vae_normalize_latents(&c, 1, n, mu, &err) == HL_OK, "%s", err.msg);
        for (int ch = 0; ch < z; ch++)
            for (int64_t k = 0; k < n; k++) {
                double x = mu[ch * n + k];
                sum[ch] += x, sq[ch] += x * x;
            }
        count += n;
        free(mom), free(mu);
        hl_clip_free(&clip);
    }
    double worst = 0;
    for (int ch = 0; ch < z; ch++) {
        double m = sum[ch] / (double)count, sd = sqrt(sq[ch] / (double)count - m * m);
        worst = fmax(worst, fmax(fabs(m), fabs(sd - 1)));
    }
    CHECK(worst < 1e-4, "normalised latents: worst |mean| or |std - 1| %.3g", worst);
    double mse = se / (3.0 * 3 * 5 * 16 * 32);
    CHECK(fabs(rec.mse - mse) <= 1e-9 * mse && fabs(rec.psnr - 10 * log10(4 / mse)) < 1e-9,
          "reconstruction: mse %.9g, expected %.9g", rec.mse, mse);
    CHECK(pair_ok, "clip 0 | reconstruction is not the clip beside its decode");
    free(rec.pair);
    /* the config text round trip */
    char *text = hl_vae_config_to_json(&c);
    hl_json *j = NULL;
    hl_vae_config back;
    memset(&back, 0, sizeof back);
    CHECK(text && hl_json_parse(text, strlen(text), &j, &err) == HL_OK, "%s", err.msg);
    CHECK(j && hl_vae_config_parse(j, &back, &err) == HL_OK, "%s", err.msg);
    CHECK(!memcmp(&back, &c, sizeof c), "the written config does not parse back to itself");
    hl_json_free(j);
    free(text);
    hl_dataset_free(ds);
    hl_vae_free(v);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "%s/helios_test_data_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 2;
    }
    hl_log_set_sink(log_sink, NULL);
    test_world();
    test_folder();
    test_cache();
    test_cache_folder();
    test_latent_stats();
    hl_log_set_sink(NULL, NULL);
    if (getenv("HELIOS_TEST_KEEP")) fprintf(stderr, "kept %s\n", g_tmp); /* for a look */
    else remove_tree(g_tmp);
    return test_done("test_train_data");
}
