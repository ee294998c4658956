#include "train/val_video.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/parallel.h"
#include "helios.h"
#include "io/safetensors_write.h"

#define PATH_CAP 4096

static bool is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}

bool hl_val_model_is_full(const char *model) {
    static const char *const dirs[] = {"transformer", "scheduler", "text_encoder", "tokenizer",
                                       "vae"};
    char p[PATH_CAP];
    if (!model) return false;
    snprintf(p, sizeof p, "%s/model_index.json", model);
    struct stat s;
    if (stat(p, &s) != 0 || !S_ISREG(s.st_mode)) return false;
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        if (snprintf(p, sizeof p, "%s/%s", model, dirs[i]) >= (int)sizeof p || !is_dir(p))
            return false;
    }
    return true;
}

static int remove_entry(const char *path, const struct stat *s, int flag, struct FTW *f) {
    (void)s, (void)flag, (void)f;
    return remove(path);
}

/* rm -rf of our own model folder: symbolic links are removed, never followed. */
static hl_status remove_tree(const char *path, hl_error *err) {
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        return hl_fail(err, HELIOS_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    return HL_OK;
}

static hl_status make_dir(const char *path, hl_error *err) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return hl_fail(err, HELIOS_ERR_IO, "%s: cannot create the folder: %s", path,
                       strerror(errno));
    if (!is_dir(path)) return hl_fail(err, HELIOS_ERR_IO, "%s: not a folder", path);
    return HL_OK;
}

static hl_status write_text(const char *path, const char *text, hl_error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return hl_fail(err, HELIOS_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    if (!ok) return hl_fail(err, HELIOS_ERR_IO, "%s: write failed", path);
    return HL_OK;
}

/* dir/model_index.json: base's with the members extra added before its closing brace. */
static hl_status write_index(const char *base, const char *extra, const char *dir, hl_error *err) {
    char p[PATH_CAP], *text = NULL;
    size_t n = 0;
    snprintf(p, sizeof p, "%s/model_index.json", base);
    HL_TRY(hl_file_read_all(p, 1 << 20, "model_index.json", &text, &n, err));
    char *open = strchr(text, '{'), *close = strrchr(text, '}');
    if (!open || !close || close < open) {
        free(text);
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: not a JSON object", p);
    }
    bool empty = strspn(open + 1, " \t\r\n") == (size_t)(close - open - 1);
    *close = '\0';
    size_t cap = n + strlen(extra) + 8;
    char *out = malloc(cap);
    hl_status st = out ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "validation: out of memory");
    if (st == HL_OK) {
        snprintf(out, cap, "%s%s %s\n}\n", text, empty ? "" : ",", extra);
        snprintf(p, sizeof p, "%s/model_index.json", dir);
        st = write_text(p, out, err);
    }
    free(out);
    free(text);
    return st;
}

/* dir/transformer from the weights; every other entry of model linked into dir (model_index.json
 * written with extra's members when extra is not empty). */
static hl_status make_model(const char *model, const char *config_json, const hl_params *layout,
                            const float *weights, const char *extra, const char *dir,
                            hl_error *err) {
    char base[PATH_MAX], p[PATH_CAP], t[PATH_CAP];
    if (!realpath(model, base))
        return hl_fail(err, HELIOS_ERR_IO, "%s: %s", model, strerror(errno));
    HL_TRY(remove_tree(dir, err)); /* a leftover of an interrupted run */
    HL_TRY(make_dir(dir, err));
    snprintf(t, sizeof t, "%s/transformer", dir);
    HL_TRY(make_dir(t, err));
    snprintf(p, sizeof p, "%s/config.json", t);
    HL_TRY(write_text(p, config_json, err));
    hl_st_entry *e = calloc(layout->n ? layout->n : 1, sizeof *e);
    if (!e) return hl_fail(err, HELIOS_ERR_OOM, "validation: out of memory");
    for (size_t i = 0; i < layout->n; i++) {
        const hl_param *q = &layout->p[i];
        e[i].name = q->name;
        e[i].t = hl_tensor_make((void *)(weights + q->offset), HL_F32, q->ndim, q->shape);
    }
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", t);
    hl_status st = hl_st_write(p, e, layout->n, (const char *const[]){"format", "pt", NULL}, err);
    free(e);
    HL_TRY(st);
    bool own_index = extra && extra[0];
    if (own_index) HL_TRY(write_index(base, extra, dir, err));
    DIR *d = opendir(base);
    if (!d) return hl_fail(err, HELIOS_ERR_IO, "%s: %s", base, strerror(errno));
    for (struct dirent *de; st == HL_OK && (de = readdir(d));) {
        if (de->d_name[0] == '.' || !strcmp(de->d_name, "transformer")) continue;
        if (own_index && !strcmp(de->d_name, "model_index.json")) continue;
        char from[PATH_CAP], to[PATH_CAP];
        if (snprintf(from, sizeof from, "%s/%s", base, de->d_name) >= (int)sizeof from ||
            snprintf(to, sizeof to, "%s/%s", dir, de->d_name) >= (int)sizeof to)
            st = hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s/%s: path too long", dir, de->d_name);
        else if (symlink(from, to) != 0)
            st = hl_fail(err, HELIOS_ERR_IO, "cannot link %s to %s: %s", to, from, strerror(errno));
    }
    closedir(d);
    return st;
}

typedef struct gen_run {
    helios_session *s;
    helios_pipeline *p;
    helios_video_writer *w;
    hl_error *err;
} gen_run;

/* One prompt's video appended to the writer. */
static hl_status generate(gen_run *r, const hl_val_video *v, const char *prompt) {
    helios_gen_params gp;
    helios_gen_params_init(&gp);
    gp.prompt = prompt;
    gp.width = v->width, gp.height = v->height;
    gp.num_frames = v->frames;
    gp.num_chunks = v->frames > 0 ? 0 : v->chunks;
    if (helios_pipeline_recipe(r->p) == HELIOS_RECIPE_BASE) gp.steps = v->steps;
    else gp.pyramid_steps[0] = gp.pyramid_steps[1] = gp.pyramid_steps[2] = v->steps;
    gp.seed = v->seed;
    gp.decode = 1;
    helios_gen *g = NULL;
    helios_status st = helios_gen_new(r->p, &gp, &g);
    if (st != HELIOS_OK)
        return hl_fail(r->err, (hl_status)st, "validation video: %s", helios_session_error(r->s));
    for (helios_gen_progress pr = {0}; st == HELIOS_OK && !pr.finished;) {
        st = helios_gen_step(g, &pr);
        if (st != HELIOS_OK) {
            hl_fail(r->err, (hl_status)st, "validation video: %s", helios_gen_error(g));
        } else if (pr.chunk_done) {
            st = helios_video_writer_write(r->w, pr.frames, pr.chunk_frames, 0, pr.n_frames);
            if (st != HELIOS_OK)
                hl_fail(r->err, (hl_status)st, "validation video: %s",
                        helios_video_writer_error(r->w));
        }
    }
    helios_gen_free(g);
    return (hl_status)st;
}

static hl_status render(const hl_val_video *v, const char *dir, const char *path, hl_error *err) {
    helios_session_params sp;
    helios_session_params_init(&sp);
    sp.n_threads = hl_get_threads();
    gen_run r = {NULL, NULL, NULL, err};
    if (helios_session_new(&sp, &r.s) != HELIOS_OK)
        return hl_fail(err, HELIOS_ERR_INTERNAL, "validation video: %s",
                       helios_session_new_error());
    helios_pipeline_params pp;
    helios_pipeline_params_init(&pp);
    pp.model_dir = dir;
    helios_video_writer_params wp;
    helios_video_writer_params_init(&wp);
    wp.width = v->width, wp.height = v->height;
    helios_status st = helios_pipeline_load(r.s, &pp, &r.p);
    if (st == HELIOS_OK) st = helios_video_writer_open(r.s, path, &wp, &r.w);
    if (st != HELIOS_OK)
        hl_fail(err, (hl_status)st, "validation video: %s", helios_session_error(r.s));
    for (int i = 0; st == HELIOS_OK && i < v->n_prompts; i++)
        st = (helios_status)generate(&r, v, v->prompts[i]);
    if (st == HELIOS_OK && (st = helios_video_writer_close(r.w)) != HELIOS_OK)
        hl_fail(err, (hl_status)st, "validation video: %s", helios_video_writer_error(r.w));
    helios_video_writer_free(r.w); /* not closed: its .part is discarded */
    helios_pipeline_free(r.p);
    helios_session_free(r.s);
    return (hl_status)st;
}

hl_status hl_val_video_write(const hl_val_video *v, const char *model, const char *config_json,
                             const hl_params *layout, const float *weights, const char *out_dir,
                             int64_t step, char *path, size_t cap, hl_error *err) {
    char vdir[PATH_CAP], dir[PATH_CAP];
    if (snprintf(vdir, sizeof vdir, "%s/validation", out_dir) >= (int)sizeof vdir ||
        snprintf(dir, sizeof dir, "%s/step-%lld.model", vdir, (long long)step) >= (int)sizeof dir ||
        snprintf(path, cap, "%s/step-%lld.mp4", vdir, (long long)step) >= (int)cap)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: path too long", out_dir);
    if (v->n_prompts < 1) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "validation: no prompt");
    HL_TRY(make_dir(out_dir, err));
    HL_TRY(make_dir(vdir, err));
    int threads = hl_get_threads();
    hl_status st = make_model(model, config_json, layout, weights, v->index_extra, dir, err);
    if (st == HL_OK) st = render(v, dir, path, err);
    hl_set_threads(threads); /* the session set it: the training's bits depend on it */
    hl_status rm = remove_tree(dir, st == HL_OK ? err : &(hl_error){0});
    if (st != HL_OK) path[0] = '\0';
    return st != HL_OK ? st : rm;
}
