#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "io/weights.h"

#define PATH_CAP 4096

static hl_status join(char *out, const char *a, const char *b, hl_error *err) {
    if (snprintf(out, PATH_CAP, "%s/%s", a, b) >= PATH_CAP)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s/%s: path too long", a, b);
    return HL_OK;
}

/* ---- files and folders, durably ---------------------------------------------------------- */

static hl_status fsync_path(const char *path, bool dir, hl_error *err) {
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return hl_fail(err, HELIOS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int rc = fsync(fd), e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL) /* EINVAL: the file system cannot sync */
        return hl_fail(err, HELIOS_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
    return HL_OK;
}

/* Creates path with exactly data[0..len) and fsyncs it. */
static hl_status write_synced(const char *path, const char *data, size_t len, hl_error *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return hl_fail(err, HELIOS_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t k = write(fd, data + done, len - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            int e = errno;
            close(fd);
            return hl_fail(err, HELIOS_ERR_IO, "%s: write failed: %s", path, strerror(e));
        }
        done += (size_t)k;
    }
    int rc = fsync(fd), e = errno;
    if (close(fd) != 0 && rc == 0) rc = -1, e = errno;
    if (rc != 0 && e != EINVAL)
        return hl_fail(err, HELIOS_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
    return HL_OK;
}

hl_status hl_write_file_atomic(const char *path, const char *data, size_t len, hl_error *err) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.part", path) >= (int)sizeof tmp)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: path too long", path);
    HL_TRY(write_synced(tmp, data, len, err));
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return hl_fail(err, HELIOS_ERR_IO, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return HL_OK;
}

static hl_status make_dir(const char *path, hl_error *err) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return hl_fail(err, HELIOS_ERR_IO, "%s: cannot create the folder: %s", path,
                       strerror(errno));
    struct stat s;
    if (stat(path, &s) != 0 || !S_ISDIR(s.st_mode))
        return hl_fail(err, HELIOS_ERR_IO, "%s: not a folder", path);
    return HL_OK;
}

/* mkdir -p */
static hl_status make_dirs(const char *path, hl_error *err) {
    char p[PATH_CAP];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: path too long", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return hl_fail(err, HELIOS_ERR_IO, "%s: cannot create the folder: %s", p,
                           strerror(errno));
        *s = '/';
    }
    return make_dir(p, err);
}

static int remove_entry(const char *path, const struct stat *s, int flag, struct FTW *f) {
    return remove(path);
}

/* rm -rf of one of our checkpoint folders (symbolic links are removed, not followed). */
static hl_status remove_tree(const char *path, hl_error *err) {
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        return hl_fail(err, HELIOS_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    return HL_OK;
}

/* ---- names ----------------------------------------------------------------------------- */

/* "checkpoint-STEP" (tmp = 0) or "checkpoint-STEP.tmp" (tmp = 1): the step, else -1. */
static int64_t parse_name(const char *name, int *tmp) {
    static const char prefix[] = "checkpoint-";
    if (strncmp(name, prefix, sizeof prefix - 1)) return -1;
    const char *s = name + sizeof prefix - 1;
    int64_t v = 0;
    int digits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (*s - '0');
    }
    if (!digits) return -1;
    if (!*s) *tmp = 0;
    else if (!strcmp(s, ".tmp")) *tmp = 1;
    else return -1;
    return v;
}

static bool is_complete(const char *dir) {
    char p[PATH_CAP];
    struct stat s;
    return join(p, dir, "COMPLETE", NULL) == HL_OK && stat(p, &s) == 0 && S_ISREG(s.st_mode);
}

typedef struct entry {
    int64_t step;
    int tmp, complete;
    char name[256];
} entry;

/* The checkpoint entries of out_dir (*n = 0 and no error if out_dir does not exist). */
static hl_status list_entries(const char *out_dir, entry **out, size_t *n, hl_error *err) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(out_dir);
    if (!d) {
        if (errno == ENOENT) return HL_OK;
        return hl_fail(err, HELIOS_ERR_IO, "%s: cannot read the folder: %s", out_dir,
                       strerror(errno));
    }
    size_t cap = 0;
    entry *v = NULL;
    struct dirent *de;
    hl_status st = HL_OK;
    while ((de = readdir(d))) {
        int tmp;
        int64_t step = parse_name(de->d_name, &tmp);
        if (step < 0 || strlen(de->d_name) >= sizeof v->name) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            entry *w = realloc(v, cap * sizeof *v);
            if (!w) {
                st = hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", out_dir);
                break;
            }
            v = w;
        }
        entry *e = &v[(*n)++];
        e->step = step;
        e->tmp = tmp;
        snprintf(e->name, sizeof e->name, "%s", de->d_name);
        char p[PATH_CAP];
        e->complete = !tmp && join(p, out_dir, e->name, NULL) == HL_OK && is_complete(p);
    }
    closedir(d);
    if (st != HL_OK) {
        free(v);
        *n = 0;
        return st;
    }
    *out = v;
    return HL_OK;
}

hl_status hl_ckpt_latest(const char *out_dir, int64_t *step, char *path, size_t n, hl_error *err) {
    *step = -1;
    entry *v;
    size_t k;
    HL_TRY(list_entries(out_dir, &v, &k, err));
    const entry *best = NULL;
    for (size_t i = 0; i < k; i++)
        if (v[i].complete && (!best || v[i].step > best->step)) best = &v[i];
    hl_status st = HL_OK;
    if (best) {
        if (snprintf(path, n, "%s/%s", out_dir, best->name) >= (int)n)
            st = hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s/%s: path too long", out_dir, best->name);
        else *step = best->step;
    }
    free(v);
    return st;
}

hl_status hl_ckpt_clean(const char *out_dir, int *n_removed, hl_error *err) {
    if (n_removed) *n_removed = 0;
    entry *v;
    size_t k;
    HL_TRY(list_entries(out_dir, &v, &k, err));
    hl_status st = HL_OK;
    for (size_t i = 0; i < k && st == HL_OK; i++) {
        if (v[i].complete) continue;
        char p[PATH_CAP];
        st = join(p, out_dir, v[i].name, err);
        if (st == HL_OK) st = remove_tree(p, err);
        if (st == HL_OK && n_removed) ++*n_removed;
    }
    free(v);
    return st;
}

static int by_step_desc(const void *a, const void *b) {
    int64_t x = ((const entry *)a)->step, y = ((const entry *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

hl_status hl_ckpt_prune(const char *out_dir, int keep, hl_error *err) {
    if (keep <= 0) return HL_OK;
    entry *v;
    size_t k;
    HL_TRY(list_entries(out_dir, &v, &k, err));
    qsort(v, k, sizeof *v, by_step_desc);
    hl_status st = HL_OK;
    int kept = 0;
    for (size_t i = 0; i < k && st == HL_OK; i++) {
        if (!v[i].complete || kept++ < keep) continue;
        char p[PATH_CAP];
        st = join(p, out_dir, v[i].name, err);
        /* the marker first: a prune interrupted midway leaves an incomplete folder, never a
         * complete-looking one with files missing */
        char marker[PATH_CAP];
        if (st == HL_OK) st = join(marker, p, "COMPLETE", err);
        if (st == HL_OK && unlink(marker) != 0)
            st = hl_fail(err, HELIOS_ERR_IO, "%s: cannot remove: %s", marker, strerror(errno));
        if (st == HL_OK) st = remove_tree(p, err);
    }
    free(v);
    return st;
}

/* How the loop draws each sample's randomness (train_loop.c sample_rng): stored so that a
 * checkpoint written under another rule is refused. */
#define SAMPLE_RNG "mt19937 init_by_array(seed lo, seed hi, sample lo, sample hi)"

/* ---- state.json ------------------------------------------------------------------------ */

/* Version 2: no generator state. Each sample's randomness is a generator keyed by (seed, sample
 * index) (train_loop.h), so the data position is all a resume needs. */
static char *state_json(const hl_ckpt_state *s) {
    size_t cap = 1024;
    char *out = malloc(cap);
    if (!out) return NULL;
    snprintf(out, cap,
             "{\n  \"format\": \"helios-train-state\",\n  \"version\": 2,\n"
             "  \"step\": %" PRId64 ",\n  \"samples\": %" PRId64 ",\n"
             "  \"config_hash\": \"%016" PRIx64 "\",\n  \"loss\": \"%a\",\n"
             "  \"sample_rng\": \"%s\"\n}\n",
             s->step, s->samples, s->config_hash, s->loss, SAMPLE_RNG);
    return out;
}

static bool parse_hex_u64(const char *s, int digits, uint64_t *out) {
    if (!s || (int)strlen(s) != digits) return false;
    uint64_t v = 0;
    for (int i = 0; i < digits; i++) {
        int c = s[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

static bool parse_double_str(const char *s, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return !*end;
}

static hl_status read_state(const char *path, hl_ckpt_state *s, hl_error *err) {
    hl_json *j = NULL;
    HL_TRY(hl_json_load_file(path, &j, err));
    memset(s, 0, sizeof *s);
    const char *fmt = hl_json_get_string(j, "format"), *rng = hl_json_get_string(j, "sample_rng");
    int64_t version = 0;
    const char *bad = NULL;
    if (!fmt || strcmp(fmt, "helios-train-state")) bad = "format";
    else if (hl_json_get_int(j, "version", &version) || version != 2) bad = "version";
    else if (hl_json_get_int(j, "step", &s->step) || s->step < 0) bad = "step";
    else if (hl_json_get_int(j, "samples", &s->samples) || s->samples < 0) bad = "samples";
    else if (!parse_hex_u64(hl_json_get_string(j, "config_hash"), 16, &s->config_hash))
        bad = "config_hash";
    else if (!parse_double_str(hl_json_get_string(j, "loss"), &s->loss)) bad = "loss";
    else if (!rng || strcmp(rng, SAMPLE_RNG)) bad = "sample_rng";
    hl_json_free(j);
    if (bad)
        return hl_fail_key(err, HELIOS_ERR_FORMAT, path, bad,
                           "missing or malformed (a version 2 state of this helios expected)");
    return HL_OK;
}

/* ---- save / load ---------------------------------------------------------------------- */

static void hook(const hl_ckpt_io *io, int64_t step, const char *stage) {
    if (io->hook) io->hook(io->hook_user, step, stage);
}

static hl_status write_optimizer(const char *path, const hl_params *L, const hl_adamw *opt,
                                 const float *ema, hl_error *err) {
    size_t per = ema ? 3 : 2, n = L->n * per;
    hl_st_entry *e = calloc(n ? n : 1, sizeof *e);
    char(*names)[192] = calloc(n ? n : 1, sizeof *names);
    if (!e || !names) {
        free(e);
        free(names);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    }
    static const char *const prefix[3] = {"exp_avg.", "exp_avg_sq.", "ema."};
    const float *src[3] = {opt->m, opt->v, ema};
    size_t k = 0;
    for (size_t w = 0; w < per; w++)
        for (size_t i = 0; i < L->n; i++, k++) {
            const hl_param *q = &L->p[i];
            snprintf(names[k], sizeof names[k], "%s%s", prefix[w], q->name);
            e[k].name = names[k];
            e[k].t = hl_tensor_make((void *)(src[w] + q->offset), HL_F32, q->ndim, q->shape);
        }
    char step[32];
    snprintf(step, sizeof step, "%" PRId64, opt->step);
    const char *meta[] = {"format", "helios-adamw", "step", step, NULL};
    hl_status st = hl_st_write(path, e, n, meta, err);
    free(e);
    free(names);
    return st;
}

/* COMPONENT/WEIGHTS (F32, the layout's names) from w, and COMPONENT/config.json, fsync'ed. */
static hl_status write_component(const hl_ckpt_io *io, const char *comp, const float *w,
                                 hl_error *err) {
    char p[PATH_CAP];
    size_t n = io->layout->n;
    hl_st_entry *e = calloc(n ? n : 1, sizeof *e);
    if (!e) return hl_fail(err, HELIOS_ERR_OOM, "checkpoint: out of memory");
    for (size_t i = 0; i < n; i++) {
        const hl_param *q = &io->layout->p[i];
        e[i].name = q->name;
        e[i].t = hl_tensor_make((void *)(w + q->offset), HL_F32, q->ndim, q->shape);
    }
    hl_status s = join(p, comp, io->weights_name, err);
    if (s == HL_OK) s = hl_st_write(p, e, n, (const char *const[]){"format", "pt", NULL}, err);
    free(e);
    HL_TRY(s);
    if (io->config_json) {
        HL_TRY(join(p, comp, "config.json", err));
        HL_TRY(write_synced(p, io->config_json, strlen(io->config_json), err));
    }
    return fsync_path(comp, true, err);
}

hl_status hl_ckpt_save(const hl_ckpt_io *io, const float *params, const hl_adamw *opt,
                       const float *ema, const hl_ckpt_state *st, hl_error *err) {
    char name[64], tmp_name[64], fin[PATH_CAP], tmp[PATH_CAP], comp[PATH_CAP], p[PATH_CAP];
    snprintf(name, sizeof name, "checkpoint-%" PRId64, st->step);
    snprintf(tmp_name, sizeof tmp_name, "%s.tmp", name);
    if (opt->n != io->layout->total)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "checkpoint: optimizer of %lld, layout of %lld",
                       (long long)opt->n, (long long)io->layout->total);
    HL_TRY(make_dirs(io->out_dir, err));
    HL_TRY(join(fin, io->out_dir, name, err));
    HL_TRY(join(tmp, io->out_dir, tmp_name, err));
    HL_TRY(join(comp, tmp, io->component, err));
    HL_TRY(remove_tree(tmp, err));
    HL_TRY(make_dir(tmp, err));
    HL_TRY(make_dir(comp, err));

    /* the weights, as the model's own folder (and the EMA's, when asked) */
    HL_TRY(write_component(io, comp, params, err));
    if (io->ema_folder && ema) {
        char ef[PATH_CAP], ec[PATH_CAP];
        HL_TRY(join(ef, tmp, io->ema_folder, err));
        HL_TRY(join(ec, ef, io->component, err));
        HL_TRY(make_dir(ef, err));
        HL_TRY(make_dir(ec, err));
        HL_TRY(write_component(io, ec, ema, err));
        HL_TRY(fsync_path(ef, true, err));
    }
    hook(io, st->step, "weights");

    HL_TRY(join(p, tmp, "optimizer.safetensors", err));
    HL_TRY(write_optimizer(p, io->layout, opt, ema, err));
    hook(io, st->step, "optimizer");
    if (io->extra_save) {
        HL_TRY(io->extra_save(io->extra_user, tmp, err));
        hook(io, st->step, "extra");
    }

    hl_status s;
    char *js = state_json(st);
    if (!js) return hl_fail(err, HELIOS_ERR_OOM, "checkpoint: out of memory");
    s = join(p, tmp, "state.json", err);
    if (s == HL_OK) s = write_synced(p, js, strlen(js), err);
    free(js);
    HL_TRY(s);
    HL_TRY(fsync_path(tmp, true, err));
    hook(io, st->step, "state");

    HL_TRY(remove_tree(fin, err)); /* an incomplete leftover of the same step */
    if (rename(tmp, fin) != 0)
        return hl_fail(err, HELIOS_ERR_IO, "cannot rename %s to %s: %s", tmp, fin, strerror(errno));
    HL_TRY(fsync_path(io->out_dir, true, err));
    hook(io, st->step, "renamed");

    HL_TRY(join(p, fin, "COMPLETE", err));
    char marker[64];
    int len = snprintf(marker, sizeof marker, "%" PRId64 "\n", st->step);
    HL_TRY(write_synced(p, marker, (size_t)len, err));
    HL_TRY(fsync_path(fin, true, err));
    hook(io, st->step, "complete");
    return HL_OK;
}

/* Copies tensor `name` (F32, shape of q) of st into dst. */
static hl_status read_tensor(const hl_safetensors *st, const char *name, const hl_param *q,
                             float *dst, hl_error *err) {
    const hl_st_tensor *t = hl_st_find(st, name);
    if (!t) return hl_fail(err, HELIOS_ERR_MISSING, "%s: tensor '%s' missing", st->path, name);
    char a[128], b[128];
    if (t->dtype != HL_F32 || t->ndim != q->ndim ||
        memcmp(t->shape, q->shape, (size_t)q->ndim * sizeof *q->shape))
        return hl_fail(err, HELIOS_ERR_SHAPE, "%s: tensor '%s' is %s %s, expected F32 %s", st->path,
                       name, hl_dtype_name(t->dtype), hl_shape_str(t->ndim, t->shape, a, sizeof a),
                       hl_shape_str(q->ndim, q->shape, b, sizeof b));
    memcpy(dst, t->data, (size_t)q->numel * sizeof *dst);
    return HL_OK;
}

static hl_status read_optimizer(const char *path, const hl_params *L, hl_adamw *opt, float *ema,
                                hl_error *err) {
    hl_safetensors *st;
    HL_TRY(hl_st_open(path, &st, err));
    hl_status s = HL_OK;
    const char *step = hl_st_meta(st, "step");
    char *end = NULL;
    long long v = step ? strtoll(step, &end, 10) : -1;
    if (!step || *end || v < 0)
        s = hl_fail(err, HELIOS_ERR_FORMAT, "%s: metadata 'step' missing or malformed", path);
    opt->step = v;
    static const char *const prefix[3] = {"exp_avg.", "exp_avg_sq.", "ema."};
    float *dst[3] = {opt->m, opt->v, ema};
    for (int w = 0; w < 3 && s == HL_OK; w++) {
        if (!dst[w]) continue;
        for (size_t i = 0; i < L->n && s == HL_OK; i++) {
            char name[192];
            snprintf(name, sizeof name, "%s%s", prefix[w], L->p[i].name);
            s = read_tensor(st, name, &L->p[i], dst[w] + L->p[i].offset, err);
        }
    }
    hl_st_close(st);
    return s;
}

hl_status hl_ckpt_load(const hl_ckpt_io *io, const char *dir, float *params, hl_adamw *opt,
                       float *ema, hl_ckpt_state *st, hl_error *err) {
    char p[PATH_CAP], comp[PATH_CAP];
    if (opt->n != io->layout->total)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "checkpoint: optimizer of %lld, layout of %lld",
                       (long long)opt->n, (long long)io->layout->total);
    HL_TRY(join(p, dir, "state.json", err));
    HL_TRY(read_state(p, st, err));
    HL_TRY(join(comp, dir, io->component, err));
    HL_TRY(join(p, comp, io->weights_name, err));
    hl_weights *w;
    HL_TRY(hl_weights_open(p, &w, err));
    hl_status s = hl_params_load(io->layout, params, w, err);
    hl_weights_close(w);
    HL_TRY(s);
    HL_TRY(join(p, dir, "optimizer.safetensors", err));
    HL_TRY(read_optimizer(p, io->layout, opt, ema, err));
    return io->extra_load ? io->extra_load(io->extra_user, dir, err) : HL_OK;
}
