/* helios vae-stats — measures a VAE's latents_mean / latents_std over training clips and, with
 * --write, puts them into its config.json (train/latent_stats.h says why they matter). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/parallel.h"
#include "io/media.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "train/checkpoint.h"
#include "train/latent_stats.h"

typedef struct stats_opts {
    const char *path, *data, *recon, *video;
    int clips, width, height, frames, seed, threads, write;
} stats_opts;

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: helios vae-stats PATH [options]\n"
        "\n"
        "Encodes training clips with the VAE at PATH (a model folder with vae/, or a VAE\n"
        "folder: config.json + diffusion_pytorch_model.safetensors) and prints the mean and\n"
        "standard deviation of each latent channel of the posterior means, as the\n"
        "latents_mean / latents_std of a diffusers vae/config.json.\n"
        "\n"
        "  --data SOURCE      procedural (the tiny world, default) or a folder of videos with\n"
        "                     captions (docs/data.md)\n"
        "  --clips N          clips, 1..65536 (default 64)\n"
        "  --width W --height H  clip size, multiples of 8 (default 64x64)\n"
        "  --frames N         frames per clip, 1 + 4k (default 33)\n"
        "  --seed S           world clip seed (default 0)\n"
        "  --threads N        threads, 0 = all cores (default 0)\n"
        "  --write            replace latents_mean / latents_std in the config.json (written\n"
        "                     to a temporary file and renamed)\n"
        "  --recon FILE       write clip 0 beside its reconstruction as a video\n"
        "  --video FILE       instead of training clips: reconstruct FILE (any video FFmpeg\n"
        "                     reads) window by window, --frames frames each with fresh caches\n"
        "                     (as the pipelines encode and decode), into --recon FILE, which is\n"
        "                     then required; frames after the last whole window are dropped.\n"
        "                     `helios eval` on it shows what the VAE alone keeps of a video\n"
        "An option given twice takes its last value. A bad command line exits with status 2.\n");
}

static int parse(int argc, char **argv, stats_opts *o) {
    *o = (stats_opts){.data = "procedural", .clips = 64, .width = 64, .height = 64, .frames = 33};
    args a;
    args_init(&a, "helios vae-stats", argc, argv);
    while (args_next(&a)) {
        int rc = 0;
        if (args_is(&a, "-h", "--help")) {
            usage(stdout);
            exit(0);
        } else if (args_is(&a, NULL, "--data")) rc = args_str(&a, &o->data);
        else if (args_is(&a, NULL, "--clips")) rc = args_int(&a, 1, 65536, &o->clips);
        else if (args_is(&a, NULL, "--width")) rc = args_int(&a, 16, 4096, &o->width);
        else if (args_is(&a, NULL, "--height")) rc = args_int(&a, 16, 4096, &o->height);
        else if (args_is(&a, NULL, "--frames")) rc = args_int(&a, 1, 1 + 4 * 256, &o->frames);
        else if (args_is(&a, NULL, "--seed")) rc = args_int(&a, 0, 2147483647, &o->seed);
        else if (args_is(&a, NULL, "--threads")) rc = args_int(&a, 0, 512, &o->threads);
        else if (args_is(&a, NULL, "--write")) o->write = 1;
        else if (args_is(&a, NULL, "--recon")) rc = args_str(&a, &o->recon);
        else if (args_is(&a, NULL, "--video")) rc = args_str(&a, &o->video);
        else if (a.opt[0] == '-' && a.opt[1]) return args_fail(&a, "unknown option '%s'", a.opt);
        else if (o->path) return args_fail(&a, "one PATH only ('%s' and '%s')", o->path, a.opt);
        else o->path = a.opt;
        if (rc) return rc;
    }
    if (!o->path) return args_fail(&a, "PATH is missing (a model folder or a VAE folder)");
    if (o->width % 8 || o->height % 8)
        return args_fail(&a, "--width and --height must be multiples of 8");
    if ((o->frames - 1) % 4) return args_fail(&a, "--frames must be 1 + 4k (1, 5, 9, ..., 33)");
    if (o->video && !o->recon)
        return args_fail(&a, "--video needs --recon OUT (the reconstruction)");
    if (o->video && o->write) return args_fail(&a, "--video and --write do not go together");
    return 0;
}

/* PATH/vae when PATH is a model folder, else PATH. */
static void vae_dir(const char *path, char *dir, size_t n) {
    struct stat s;
    snprintf(dir, n, "%s/vae", path);
    if (stat(dir, &s) != 0 || !S_ISDIR(s.st_mode)) snprintf(dir, n, "%s", path);
}

static void print_floats(const char *key, const float *v, int n, const char *end) {
    printf("  \"%s\": [", key);
    for (int i = 0; i < n; i++) printf("%s%.6g", i ? ", " : "", (double)v[i]);
    printf("]%s\n", end);
}

/* clip 0 | its reconstruction, (3, frames, H, 2W), as a video */
static hl_status write_pair(const stats_opts *o, const float *pair, hl_error *err) {
    hl_video_writer *w = NULL;
    HL_TRY(hl_video_writer_open(o->recon, 2 * o->width, o->height, NULL, &w, err));
    hl_status st = hl_video_writer_write(w, pair, o->frames, 0, o->frames, err);
    if (st != HL_OK) {
        hl_video_writer_discard(w);
        return st;
    }
    HL_TRY(hl_video_writer_close(w, err));
    fprintf(stderr, "helios vae-stats: wrote %s (clip 0 | its reconstruction)\n", o->recon);
    return HL_OK;
}

/* --video: o->video reconstructed window by window into o->recon; PSNR over the whole windows. */
static hl_status run_video(const stats_opts *o, hl_vae *v, hl_error *err) {
    hl_video_reader *r = NULL;
    HL_TRY(hl_video_reader_open(o->video, 0, 0, &r, err));
    hl_video_info info;
    hl_video_reader_info(r, &info);
    int64_t T = o->frames, H = info.height, W = info.width, T_lat, h, w;
    hl_status st = H % 8 || W % 8 ? hl_fail(err, HELIOS_ERR_SHAPE,
                                            "%s: %dx%d frames; the VAE needs multiples of 8",
                                            o->video, info.width, info.height)
                                  : HL_OK;
    if (st == HL_OK && (v->cfg.in_channels != 3 || v->cfg.out_channels != 3))
        st = hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: a VAE of %d -> %d channels, not RGB",
                     o->path, v->cfg.in_channels, v->cfg.out_channels);
    hl_vae_latent_shape(&v->cfg, T, H, W, &T_lat, &h, &w);
    size_t nx = (size_t)(3 * T * H * W), nm = (size_t)(2 * v->cfg.z_dim * T_lat * h * w);
    float *x = malloc(nx * sizeof *x), *rec = malloc(nx * sizeof *rec);
    float *moments = malloc(nm * sizeof *moments);
    if (st == HL_OK && (!x || !rec || !moments))
        st = hl_fail(err, HELIOS_ERR_OOM, "vae-stats: out of memory for %lldx%lldx%lld windows",
                     (long long)T, (long long)H, (long long)W);
    hl_video_writer *wr = NULL;
    if (st == HL_OK) st = hl_video_writer_open(o->recon, (int)W, (int)H, NULL, &wr, err);
    hl_ctx ctx = {hl_backend_shared(HELIOS_BACKEND_CPU), err};
    double se = 0.0;
    int64_t windows = 0;
    int got = (int)T;
    while (st == HL_OK && got == T) {
        st = hl_video_reader_read(r, x, (int)T, 0, (int)T, &got, err);
        if (st != HL_OK || got < T) break;
        /* moments (1, 2z, T_lat, h, w): the mean is the first z channels, what decode reads */
        st = hl_vae_encode(&ctx, v, 1, T, H, W, x, moments);
        if (st == HL_OK) st = hl_vae_decode_error(&ctx, v, T_lat, h, w, moments, x, H, W, rec, &se);
        if (st == HL_OK) st = hl_video_writer_write(wr, rec, (int)T, 0, (int)T, err);
        windows++;
    }
    if (st == HL_OK && windows == 0)
        st = hl_fail(err, HELIOS_ERR_SHAPE, "%s: fewer than %lld frames (one window)", o->video,
                     (long long)T);
    if (st == HL_OK) st = hl_video_writer_close(wr, err);
    else hl_video_writer_discard(wr);
    if (st == HL_OK) {
        double mse = se / ((double)nx * windows);
        printf("{\n  \"windows\": %lld,\n  \"frames\": %lld,\n  \"reconstruction_mse\": %.6g,\n"
               "  \"reconstruction_psnr_db\": %.2f\n}\n",
               (long long)windows, (long long)(windows * T), mse, hl_vae_psnr(mse));
        fprintf(stderr, "helios vae-stats: wrote %s\n", o->recon);
    }
    free(x), free(rec), free(moments);
    hl_video_reader_free(r);
    return st;
}

static hl_status run(const stats_opts *o, hl_error *err) {
    char dir[4096], cfg_path[4200];
    vae_dir(o->path, dir, sizeof dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    hl_vae *v = NULL;
    HL_TRY(hl_vae_load(dir, NULL, NULL, &v, err));
    if (o->video) {
        hl_status st = run_video(o, v, err);
        hl_vae_free(v);
        return st;
    }
    hl_dataset_config dc;
    hl_dataset_config_default(&dc);
    hl_dataset_config_set_source(&dc, strcmp(o->data, "procedural") ? o->data : "world");
    dc.width = o->width, dc.height = o->height, dc.frames = o->frames;
    dc.n_clips = o->clips, dc.seed = (uint64_t)o->seed;
    hl_dataset *ds = NULL;
    hl_status st = hl_dataset_open(&dc, &ds, err);
    int64_t n = ds && hl_dataset_count(ds) < o->clips ? hl_dataset_count(ds) : o->clips;
    hl_ctx ctx = {hl_backend_shared(HELIOS_BACKEND_CPU), err};
    hl_vae_config c = v->cfg;
    hl_vae_recon rec = {0};
    if (st == HL_OK)
        st = hl_vae_latent_stats(&ctx, v, ds, n, c.latents_mean, c.latents_std, &rec,
                                 o->recon != NULL, err);
    if (st == HL_OK && o->recon) st = write_pair(o, rec.pair, err);
    free(rec.pair);
    if (st == HL_OK) {
        c.latents_n = c.z_dim;
        printf("{\n  \"clips\": %lld,\n  \"reconstruction_mse\": %.6g,\n"
               "  \"reconstruction_psnr_db\": %.2f,\n",
               (long long)n, rec.mse, rec.psnr);
        print_floats("latents_mean", c.latents_mean, c.z_dim, ",");
        print_floats("latents_std", c.latents_std, c.z_dim, "");
        printf("}\n");
    }
    if (st == HL_OK && o->write) {
        char *text = hl_vae_config_to_json(&c);
        st = text ? hl_write_file_atomic(cfg_path, text, strlen(text), err)
                  : hl_fail(err, HELIOS_ERR_OOM, "out of memory");
        if (st == HL_OK) fprintf(stderr, "helios vae-stats: wrote %s\n", cfg_path);
        free(text);
    }
    hl_dataset_free(ds);
    hl_vae_free(v);
    return st;
}

int cmd_vae_stats(int argc, char **argv) {
    stats_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    hl_set_threads(o.threads);
    hl_error err = {0};
    if (run(&o, &err) != HL_OK) {
        fprintf(stderr, "helios vae-stats: %s\n", err.msg);
        return 1;
    }
    return 0;
}
