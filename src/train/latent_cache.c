/* The on-disk cache of VAE latents and prompt embeddings (latent_cache.h). */
#include "train/latent_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/log.h"
#include "io/json.h"
#include "io/media.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "text/prompt_encode.h"
#include "vae/vae.h"

/* Bytes of each end of a model file that go into its folder's fingerprint: the safetensors
 * header (every tensor's name, dtype, shape and offsets) and the first and last weights. */
#define HL_FINGERPRINT_EDGE ((size_t)64 << 10)
#define HL_MANIFEST_MAX 32

typedef struct kv {
    char key[32];
    char value[512];
} kv;

struct hl_latent_cache {
    hl_ctx ctx; /* the caller's backend; err points at the current call's */
    hl_dataset *ds;
    char *dir;
    char vae_dir[4096], te_dir[4096], tok_dir[4096];
    hl_vae_config vcfg;
    hl_vae *vae;         /* loaded on the first compute */
    hl_text_encoder *te; /* weights mapped on the first compute */
    int chunk_frames, n_chunks, chunk_lat;
    int C, F, h, w, L, D;
    kv manifest[HL_MANIFEST_MAX];
    int n_manifest;
    uint64_t manifest_hash;
    char path[4096 + 64];
    hl_latent_cache_stats stats;
};

void hl_latent_cache_config_default(hl_latent_cache_config *c) {
    memset(c, 0, sizeof *c);
    c->chunk_frames = 33;
    c->max_sequence_length = 512;
}

// ---------------------------------------------------------------------------------------------
// hashing

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

#define FNV_INIT 1469598103934665603ull

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One file's part of a fingerprint: name, size, first and last HL_FINGERPRINT_EDGE bytes. */
static hl_status hash_file(uint64_t *h, const char *dir, const char *name, unsigned char *buf,
                           hl_error *err) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd;
    size_t size;
    HL_TRY(hl_file_open_regular(path, SIZE_MAX, "model file", &fd, &size, err));
    *h = fnv_bytes(*h, name, strlen(name) + 1);
    uint64_t sz = size;
    *h = fnv_bytes(*h, &sz, sizeof sz);
    size_t head = size < HL_FINGERPRINT_EDGE ? size : HL_FINGERPRINT_EDGE;
    size_t tail = size - head < HL_FINGERPRINT_EDGE ? size - head : HL_FINGERPRINT_EDGE;
    hl_status st = HL_OK;
    if (pread(fd, buf, head, 0) != (ssize_t)head ||
        (tail && pread(fd, buf + head, tail, (off_t)(size - tail)) != (ssize_t)tail))
        st = hl_fail(err, HELIOS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    else *h = fnv_bytes(*h, buf, head + tail);
    close(fd);
    return st;
}

/* A model folder's fingerprint as 16 hex digits: every regular file, in name order. */
static hl_status fingerprint(const char *dir, char out[17], hl_error *err) {
    DIR *d = opendir(dir);
    if (!d) return hl_fail(err, HELIOS_ERR_IO, "%s: cannot open the model folder", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    hl_status st = HL_OK;
    for (struct dirent *e; st == HL_OK && (e = readdir(d));) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || !hl_file_is_regular(path)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **q = realloc(names, cap * sizeof *q);
            if (!q) st = hl_fail(err, HELIOS_ERR_OOM, "latent cache: out of memory");
            else names = q;
        }
        if (st == HL_OK && !(names[n++] = strdup(e->d_name)))
            st = hl_fail(err, HELIOS_ERR_OOM, "latent cache: out of memory");
    }
    closedir(d);
    unsigned char *buf = st == HL_OK ? malloc(2 * HL_FINGERPRINT_EDGE) : NULL;
    if (st == HL_OK && !buf) st = hl_fail(err, HELIOS_ERR_OOM, "latent cache: out of memory");
    uint64_t h = FNV_INIT;
    if (st == HL_OK) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; st == HL_OK && i < n; i++) st = hash_file(&h, dir, names[i], buf, err);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    free(buf);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
    return st;
}

// ---------------------------------------------------------------------------------------------
// the manifest (cache.json) and keys

static void put(hl_latent_cache *lc, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put(hl_latent_cache *lc, const char *key, const char *fmt, ...) {
    kv *e = &lc->manifest[lc->n_manifest++];
    snprintf(e->key, sizeof e->key, "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->value, sizeof e->value, fmt, ap);
    va_end(ap);
}

static hl_status build_manifest(hl_latent_cache *lc, hl_error *err) {
    const hl_dataset_config *d = hl_dataset_get_config(lc->ds);
    char fp[17];
    put(lc, "format", "%s", HL_LATENT_CACHE_FORMAT);
    put(lc, "source_kind", "%s", d->kind == HL_DATASET_WORLD ? "world" : "folder");
    if (d->kind == HL_DATASET_WORLD)
        put(lc, "world", "seed %llu fps %d max_objects %d camera %d lighting %d",
            (unsigned long long)d->seed, d->fps, d->max_objects, d->camera != 0, d->lighting != 0);
    put(lc, "width", "%d", d->width);
    put(lc, "height", "%d", d->height);
    put(lc, "frames", "%d", d->frames);
    put(lc, "chunk_frames", "%d", lc->chunk_frames);
    put(lc, "max_sequence_length", "%d", lc->L);
    put(lc, "latent_shape", "%dx%dx%dx%d", lc->C, lc->F, lc->h, lc->w);
    put(lc, "text_shape", "%dx%d", lc->L, lc->D);
    HL_TRY(fingerprint(lc->vae_dir, fp, err));
    put(lc, "vae", "%s", fp);
    HL_TRY(fingerprint(lc->te_dir, fp, err));
    put(lc, "text_encoder", "%s", fp);
    HL_TRY(fingerprint(lc->tok_dir, fp, err));
    put(lc, "tokenizer", "%s", fp);
    uint64_t h = FNV_INIT;
    for (int i = 0; i < lc->n_manifest; i++) {
        h = fnv_bytes(h, lc->manifest[i].key, strlen(lc->manifest[i].key) + 1);
        h = fnv_bytes(h, lc->manifest[i].value, strlen(lc->manifest[i].value) + 1);
    }
    lc->manifest_hash = h;
    return HL_OK;
}

/* What clip `index`'s file must say under "key". */
static void clip_key(const hl_latent_cache *lc, int64_t index, char out[17]) {
    char id[HL_DATASET_ID_MAX];
    hl_dataset_clip_id(lc->ds, index, id, sizeof id);
    uint64_t h = fnv_bytes(lc->manifest_hash, id, strlen(id) + 1);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* JSON string escaping for the few characters our values can hold. */
static void put_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)fsync(fd); /* the rename's durability; a file system that cannot is no error */
    close(fd);
}

static hl_status write_manifest(hl_latent_cache *lc, const char *path, hl_error *err) {
    char tmp[8192];
    snprintf(tmp, sizeof tmp, "%s.part", path);
    int fd = hl_media_part_create(tmp, err);
    if (fd < 0) return err ? err->status : HELIOS_ERR_IO;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        remove(tmp);
        return hl_fail(err, HELIOS_ERR_IO, "%s: cannot write", tmp);
    }
    fputs("{\n", f);
    for (int i = 0; i < lc->n_manifest; i++) {
        fputs("  ", f);
        put_json_string(f, lc->manifest[i].key);
        fputs(": ", f);
        put_json_string(f, lc->manifest[i].value);
        fputs(i + 1 < lc->n_manifest ? ",\n" : "\n", f);
    }
    fputs("}\n", f);
    hl_status st = fflush(f) == 0 && !ferror(f)
                       ? hl_media_commit(fd, tmp, path, err)
                       : hl_fail(err, HELIOS_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (st != HL_OK) remove(tmp);
    fclose(f);
    if (st == HL_OK) fsync_dir(lc->dir);
    return st;
}

/* cache.json: written when absent; compared field by field when present. */
static hl_status check_manifest(hl_latent_cache *lc, bool recompute, hl_error *err) {
    char path[8192];
    snprintf(path, sizeof path, "%s/cache.json", lc->dir);
    if (!hl_file_is_regular(path)) return write_manifest(lc, path, err);
    hl_json *j = NULL;
    if (hl_json_load_file(path, &j, err) != HL_OK) {
        if (!recompute) {
            hl_error_prefix(err, "latent cache");
            return err ? err->status : HELIOS_ERR_FORMAT;
        }
        HL_WARN("latent cache: %s unreadable; rewritten", path);
        return write_manifest(lc, path, err);
    }
    hl_status st = HL_OK;
    for (int i = 0; i < lc->n_manifest; i++) {
        const char *have = j->type == HL_JSON_OBJECT ? hl_json_get_string(j, lc->manifest[i].key)
                                                     : NULL;
        if (have && strcmp(have, lc->manifest[i].value) == 0) continue;
        if (recompute) {
            HL_WARN("latent cache: %s was made for %s '%s', not '%s': every clip is recomputed",
                    path, lc->manifest[i].key, have ? have : "(none)", lc->manifest[i].value);
            st = write_manifest(lc, path, err);
        } else {
            st = hl_fail(err, HELIOS_ERR_INVALID_ARG,
                         "%s: this cache was made for %s '%s', this run has '%s' (another model "
                         "or configuration): use another cache folder, delete this one, or "
                         "allow recomputing",
                         path, lc->manifest[i].key, have ? have : "(none)", lc->manifest[i].value);
        }
        break;
    }
    hl_json_free(j);
    return st;
}

// ---------------------------------------------------------------------------------------------
// open

static void resolve(char *out, size_t n, const char *given, const char *model_dir,
                    const char *name) {
    if (given) snprintf(out, n, "%s", given);
    else snprintf(out, n, "%s/%s", model_dir, name);
}

static hl_status read_vae_config(hl_latent_cache *lc, hl_error *err) {
    char path[8192];
    snprintf(path, sizeof path, "%s/config.json", lc->vae_dir);
    hl_json *j = NULL;
    HL_TRY(hl_json_load_file(path, &j, err));
    hl_status st = hl_vae_config_parse(j, &lc->vcfg, err);
    hl_json_free(j);
    if (st != HL_OK) {
        hl_error_prefix(err, "%s", path);
        return st;
    }
    if (lc->vcfg.latents_n != lc->vcfg.z_dim)
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "%s: 'latents_mean'/'latents_std' need z_dim = %d values to normalise "
                       "the latents",
                       path, lc->vcfg.z_dim);
    return HL_OK;
}

/* The clip's frames against chunk_frames, and the shapes that follow. */
static hl_status plan_shapes(hl_latent_cache *lc, const hl_latent_cache_config *c, hl_error *err) {
    const hl_dataset_config *d = hl_dataset_get_config(lc->ds);
    const int r = lc->vcfg.temporal_ratio;
    int cf = c->chunk_frames ? c->chunk_frames : d->frames;
    if (cf < 1 || (cf - 1) % r)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "latent cache: %s %d is not 1 + %d·k (the VAE keeps 1 + %d·k frames)",
                       c->chunk_frames ? "chunk_frames" : "the clip's frames", cf, r, r);
    if (d->frames % cf)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "latent cache: the clip's %d frames are not a multiple of chunk_frames %d",
                       d->frames, cf);
    if (c->max_sequence_length < 1 || c->max_sequence_length > HELIOS_MAX_SEQUENCE_LENGTH)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "latent cache: max_sequence_length %d (1..%d)",
                       c->max_sequence_length, HELIOS_MAX_SEQUENCE_LENGTH);
    int64_t tl, h, w;
    hl_vae_latent_shape(&lc->vcfg, cf, d->height, d->width, &tl, &h, &w);
    lc->chunk_frames = cf;
    lc->n_chunks = d->frames / cf;
    lc->chunk_lat = (int)tl;
    lc->C = lc->vcfg.z_dim, lc->F = (int)tl * lc->n_chunks, lc->h = (int)h, lc->w = (int)w;
    lc->L = c->max_sequence_length;
    return hl_text_encoder_dim(lc->te, &lc->D, err);
}

hl_status hl_latent_cache_open(const hl_ctx *ctx, hl_dataset *ds, const hl_latent_cache_config *c,
                               hl_latent_cache **out, hl_error *err) {
    *out = NULL;
    if (!c->dir || !c->dir[0])
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "latent cache: no cache folder");
    if (!c->model_dir && !(c->vae_dir && c->text_encoder_dir && c->tokenizer_dir))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "latent cache: no model folder (or vae, text encoder and tokenizer "
                       "folders)");
    hl_latent_cache *lc = calloc(1, sizeof *lc);
    if (!lc) return hl_fail(err, HELIOS_ERR_OOM, "latent cache: out of memory");
    lc->ctx = *ctx, lc->ds = ds;
    resolve(lc->vae_dir, sizeof lc->vae_dir, c->vae_dir, c->model_dir, "vae");
    resolve(lc->te_dir, sizeof lc->te_dir, c->text_encoder_dir, c->model_dir, "text_encoder");
    resolve(lc->tok_dir, sizeof lc->tok_dir, c->tokenizer_dir, c->model_dir, "tokenizer");
    hl_status st = (lc->dir = strdup(c->dir)) ? HL_OK
                                              : hl_fail(err, HELIOS_ERR_OOM, "latent cache: oom");
    if (st == HL_OK) st = read_vae_config(lc, err);
    if (st == HL_OK) st = hl_text_encoder_open(lc->te_dir, lc->tok_dir, &lc->te, err);
    if (st == HL_OK) st = plan_shapes(lc, c, err);
    if (st == HL_OK) st = build_manifest(lc, err);
    if (st == HL_OK && mkdir(lc->dir, 0777) != 0 && errno != EEXIST)
        st = hl_fail(err, HELIOS_ERR_IO, "%s: cannot create the cache folder: %s", lc->dir,
                     strerror(errno));
    if (st == HL_OK) st = check_manifest(lc, c->recompute_mismatch != 0, err);
    if (st != HL_OK) {
        hl_latent_cache_free(lc);
        return st;
    }
    *out = lc;
    return HL_OK;
}

void hl_latent_cache_free(hl_latent_cache *lc) {
    if (!lc) return;
    hl_vae_free(lc->vae);
    hl_text_encoder_free(lc->te);
    free(lc->dir);
    free(lc);
}

const char *hl_latent_cache_path(hl_latent_cache *lc, int64_t index) {
    snprintf(lc->path, sizeof lc->path, "%s/%lld.safetensors", lc->dir, (long long)index);
    return lc->path;
}

void hl_latent_cache_get_stats(const hl_latent_cache *lc, hl_latent_cache_stats *s) {
    *s = lc->stats;
}

void hl_latent_cache_shape(const hl_latent_cache *lc, int *C, int *F, int *h, int *w, int *text_len,
                           int *text_dim) {
    *C = lc->C, *F = lc->F, *h = lc->h, *w = lc->w, *text_len = lc->L, *text_dim = lc->D;
}

void hl_cached_clip_free(hl_cached_clip *c) {
    if (!c) return;
    free(c->latents);
    free(c->latents_sigma);
    free(c->prompt_embeds);
    free(c->caption);
    memset(c, 0, sizeof *c);
}

// ---------------------------------------------------------------------------------------------
// reading a file

static uint64_t checksum(const hl_cached_clip *c) {
    size_t nl = (size_t)c->C * c->F * c->h * c->w * sizeof(float);
    size_t nt = (size_t)c->text_len * c->text_dim * sizeof(float);
    uint64_t h = fnv_bytes(FNV_INIT, c->latents, nl);
    h = fnv_bytes(h, c->latents_sigma, nl);
    return fnv_bytes(h, c->prompt_embeds, nt);
}

/* A tensor of the file as a new float array, if it is F32 with the given shape. */
static float *take(const hl_safetensors *st, const char *name, int ndim, const int64_t *shape,
                   const char **why) {
    const hl_st_tensor *t = hl_st_find(st, name);
    if (!t) {
        *why = "a tensor is missing";
        return NULL;
    }
    hl_tensor v = hl_st_view(t);
    if (t->dtype != HL_F32 || !hl_tensor_shape_eq(&v, ndim, shape)) {
        *why = "a tensor has the wrong dtype or shape";
        return NULL;
    }
    float *p = malloc(t->nbytes ? t->nbytes : 1);
    if (!p) *why = "out of memory";
    else memcpy(p, t->data, t->nbytes);
    return p;
}

/* Reads clip index's file into *out when it validates; else *why says what is wrong (NULL:
 * there is no file). */
static hl_status try_read(hl_latent_cache *lc, int64_t index, hl_cached_clip *out, const char **why,
                          hl_error *err) {
    *why = NULL;
    const char *path = hl_latent_cache_path(lc, index);
    if (access(path, F_OK) != 0) return HL_OK;
    hl_error e = {0};
    hl_safetensors *st = NULL;
    if (hl_st_open(path, &st, &e) != HL_OK) {
        if (e.status == HELIOS_ERR_OOM) return hl_fail(err, HELIOS_ERR_OOM, "%s", e.msg);
        *why = "it does not parse (truncated or damaged)";
        return HL_OK;
    }
    char key[17], sum[17];
    clip_key(lc, index, key);
    const char *fmt = hl_st_meta(st, "format"), *k = hl_st_meta(st, "key");
    const char *cs = hl_st_meta(st, "checksum"), *cap = hl_st_meta(st, "caption");
    const int64_t lshape[4] = {lc->C, lc->F, lc->h, lc->w}, tshape[2] = {lc->L, lc->D};
    out->C = lc->C, out->F = lc->F, out->h = lc->h, out->w = lc->w;
    out->text_len = lc->L, out->text_dim = lc->D;
    if (!fmt || strcmp(fmt, HL_LATENT_CACHE_FORMAT) != 0) *why = "it is not in this format";
    else if (!k || strcmp(k, key) != 0) *why = "it was made from another clip or configuration";
    else if (!cs || !cap) *why = "its metadata is incomplete";
    else if ((out->latents = take(st, "latents", 4, lshape, why)) &&
             (out->latents_sigma = take(st, "latents_sigma", 4, lshape, why)) &&
             (out->prompt_embeds = take(st, "prompt_embeds", 2, tshape, why))) {
        snprintf(sum, sizeof sum, "%016llx", (unsigned long long)checksum(out));
        if (strcmp(sum, cs) != 0) *why = "its checksum does not match its data";
        else if (!(out->caption = strdup(cap))) *why = "out of memory";
    }
    hl_st_close(st);
    if (*why) hl_cached_clip_free(out);
    return HL_OK;
}

// ---------------------------------------------------------------------------------------------
// computing a clip

static hl_status load_models(hl_latent_cache *lc, hl_error *err) {
    if (!lc->vae) HL_TRY(hl_vae_load(lc->vae_dir, NULL, NULL, &lc->vae, err));
    return hl_text_encoder_load(lc->te, err);
}

/* Window k of the clip (3, F, H, W) through the VAE into out's latent frames k·tl .. */
static hl_status encode_window(hl_latent_cache *lc, const hl_clip *clip, int k, float *video,
                               float *moments, float *mean, float *sd, hl_cached_clip *out,
                               hl_error *err) {
    const int T = lc->chunk_frames, tl = lc->chunk_lat, z = lc->C;
    const size_t plane = (size_t)clip->height * clip->width;
    const size_t n = (size_t)tl * lc->h * lc->w, nf = (size_t)lc->F * lc->h * lc->w;
    for (int ch = 0; ch < 3; ch++)
        memcpy(video + (size_t)ch * T * plane,
               clip->pixels + ((size_t)ch * clip->frames + (size_t)k * T) * plane,
               (size_t)T * plane * sizeof *video);
    HL_TRY(hl_vae_encode(&lc->ctx, lc->vae, 1, T, clip->height, clip->width, video, moments));
    hl_vae_posterior(1, z, (int64_t)n, moments, mean, NULL, sd);
    HL_TRY(hl_vae_normalize_latents(&lc->vcfg, 1, (int64_t)n, mean, err));
    for (int c = 0; c < z; c++) {
        const float inv = 1.0f / lc->vcfg.latents_std[c]; /* the pipelines' float32 1 / std */
        float *dst = out->latents + c * nf + (size_t)k * n;
        float *dsd = out->latents_sigma + c * nf + (size_t)k * n;
        memcpy(dst, mean + c * n, n * sizeof *dst);
        for (size_t i = 0; i < n; i++) dsd[i] = sd[c * n + i] * inv;
    }
    return HL_OK;
}

static hl_status compute(hl_latent_cache *lc, int64_t index, hl_cached_clip *out, hl_error *err) {
    HL_TRY(load_models(lc, err));
    hl_clip clip;
    HL_TRY(hl_dataset_get(lc->ds, index, &clip, err));
    const size_t nl = (size_t)lc->C * lc->F * lc->h * lc->w;
    const size_t n = (size_t)lc->chunk_lat * lc->h * lc->w;
    const size_t nv = (size_t)3 * lc->chunk_frames * clip.height * clip.width;
    out->C = lc->C, out->F = lc->F, out->h = lc->h, out->w = lc->w;
    out->text_len = lc->L, out->text_dim = lc->D;
    out->latents = malloc(nl * sizeof(float));
    out->latents_sigma = malloc(nl * sizeof(float));
    out->prompt_embeds = malloc((size_t)lc->L * lc->D * sizeof(float));
    out->caption = clip.caption, clip.caption = NULL;
    float *video = malloc(nv * sizeof *video), *moments = malloc(2 * lc->C * n * sizeof *moments);
    float *mean = malloc(lc->C * n * sizeof *mean), *sd = malloc(lc->C * n * sizeof *sd);
    hl_status st = HL_OK;
    if (!out->latents || !out->latents_sigma || !out->prompt_embeds || !video || !moments ||
        !mean || !sd)
        st = hl_fail(err, HELIOS_ERR_OOM, "latent cache: out of memory for clip %lld",
                     (long long)index);
    lc->ctx.err = err; /* the encoders report through the context */
    for (int k = 0; st == HL_OK && k < lc->n_chunks; k++)
        st = encode_window(lc, &clip, k, video, moments, mean, sd, out, err);
    if (st == HL_OK) st = hl_text_encode(&lc->ctx, lc->te, out->caption, lc->L, out->prompt_embeds);
    lc->ctx.err = NULL;
    if (st != HL_OK)
        hl_error_prefix(err, "latent cache: clip %lld (%s)", (long long)index, clip.source);
    free(video), free(moments), free(mean), free(sd);
    if (st == HL_OK) {
        char key[17], sum[17], idx[32], id[HL_DATASET_ID_MAX];
        clip_key(lc, index, key);
        snprintf(sum, sizeof sum, "%016llx", (unsigned long long)checksum(out));
        snprintf(idx, sizeof idx, "%lld", (long long)index);
        const int64_t ls[4] = {lc->C, lc->F, lc->h, lc->w}, ts[2] = {lc->L, lc->D};
        hl_st_entry e[3] = {{"latents", hl_tensor_make(out->latents, HL_F32, 4, ls)},
                            {"latents_sigma", hl_tensor_make(out->latents_sigma, HL_F32, 4, ls)},
                            {"prompt_embeds", hl_tensor_make(out->prompt_embeds, HL_F32, 2, ts)}};
        const char *meta[2 * (HL_MANIFEST_MAX + 8) + 1];
        int m = 0;
        const char *fixed[] = {
            "key",    key,         "checksum", sum,
            "index",  idx,         "clip_id",  hl_dataset_clip_id(lc->ds, index, id, sizeof id),
            "source", clip.source, "caption",  out->caption};
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) meta[m++] = fixed[i];
        for (int i = 0; i < lc->n_manifest; i++) {
            meta[m++] = lc->manifest[i].key;
            meta[m++] = lc->manifest[i].value;
        }
        meta[m] = NULL;
        st = hl_st_write(hl_latent_cache_path(lc, index), e, 3, meta, err);
        if (st == HL_OK) fsync_dir(lc->dir);
    }
    hl_clip_free(&clip);
    if (st != HL_OK) hl_cached_clip_free(out);
    else lc->stats.computed++;
    return st;
}

// ---------------------------------------------------------------------------------------------
// get / fill

hl_status hl_latent_cache_get(hl_latent_cache *lc, int64_t index, hl_cached_clip *out,
                              hl_error *err) {
    memset(out, 0, sizeof *out);
    if (index < 0 || index >= hl_dataset_count(lc->ds))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "latent cache: clip %lld of %lld",
                       (long long)index, (long long)hl_dataset_count(lc->ds));
    const char *why = NULL;
    HL_TRY(try_read(lc, index, out, &why, err));
    if (out->latents) {
        lc->stats.reused++;
        return HL_OK;
    }
    if (why) {
        HL_WARN("latent cache: %s: %s; recomputing it", hl_latent_cache_path(lc, index), why);
        lc->stats.rejected++;
    }
    return compute(lc, index, out, err);
}

hl_status hl_latent_cache_fill(hl_latent_cache *lc, hl_error *err) {
    for (int64_t i = 0; i < hl_dataset_count(lc->ds); i++) {
        hl_cached_clip c;
        HL_TRY(hl_latent_cache_get(lc, i, &c, err));
        hl_cached_clip_free(&c);
    }
    return HL_OK;
}
