/* weights.c — a checkpoint as a set of safetensors shards, and name -> tensor binding.
 *
 * Opening checks the set as a whole (every tensor name unique across shards, an index's entries
 * all present where it says), so binding only has to look names up. Binding collects every
 * problem of a table before failing: a checkpoint that does not match the model usually has many
 * mismatches, and one message listing them saves a round trip per tensor. */
#include "io/weights.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "core/log.h"

static const char k_index_suffix[] = ".safetensors.index.json";
static const char k_st_suffix[] = ".safetensors";

/* ---- small helpers -------------------------------------------------------------------------- */

typedef struct strlist {
    char **v;
    size_t n;
} strlist;

static int strlist_push(strlist *l, const char *s) {
    char *copy = strdup(s);
    char **v = copy ? realloc(l->v, (l->n + 1) * sizeof *v) : NULL;
    if (!v) {
        free(copy);
        return -1;
    }
    l->v = v;
    l->v[l->n++] = copy;
    return 0;
}

static void strlist_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* "dir/name" in a new string; NULL when out of memory. */
static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* The folder part of path ("." when there is none), in a new string. */
static char *path_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path); /* "/x" -> "/" */
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

static const char *path_base(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* ---- opening -------------------------------------------------------------------------------- */

/* Maps one shard and appends it, with its row of `used` flags. */
static hl_status weights_add_file(hl_weights *w, const char *path, hl_error *err) {
    hl_safetensors *st;
    HL_TRY(hl_st_open(path, &st, err));
    unsigned char *used = calloc(st->n ? st->n : 1, 1);
    hl_safetensors **files = used ? realloc(w->files, (w->n_files + 1) * sizeof *files) : NULL;
    if (files) w->files = files;
    unsigned char **used_rows = files ? realloc(w->used, (w->n_files + 1) * sizeof *used_rows)
                                      : NULL;
    if (!used_rows) { /* arrays that did grow stay valid: n_files is what counts */
        free(used);
        hl_st_close(st);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    }
    w->used = used_rows;
    w->files[w->n_files] = st;
    w->used[w->n_files] = used;
    w->n_files++;
    return HL_OK;
}

/* A shard must be a plain file name next to the index: an index is data, and data must not be
 * able to point us at "../../etc/passwd" or any other file outside the checkpoint's folder. */
static int shard_name_ok(const hl_json *v) {
    return v->len > 0 && strlen(v->string) == v->len && !strchr(v->string, '/') &&
           strcmp(v->string, ".") != 0 && strcmp(v->string, "..") != 0;
}

/* Rejects a weight_map naming the same tensor twice (the JSON reader keeps duplicates). */
static hl_status check_index_unique(const char *index, const hl_json *wm, hl_error *err) {
    if (wm->n < 2) return HL_OK;
    const char **names = malloc(wm->n * sizeof *names);
    if (!names) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", index);
    memcpy(names, wm->keys, wm->n * sizeof *names);
    qsort(names, wm->n, sizeof *names, cmp_str);
    hl_status st = HL_OK;
    for (size_t i = 1; i < wm->n && st == HL_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: weight_map lists tensor '%s' twice", index,
                         names[i]);
    free(names);
    return st;
}

/* Opens the shard `name` unless already open; returns its index in w->files via *file. The
 * shards of this index are w->files[first...], in the order of their names in `shards`. */
static hl_status index_open_shard(hl_weights *w, size_t first, strlist *shards, const char *index,
                                  const char *dir, const char *name, const char *tensor,
                                  size_t *file, hl_error *err) {
    for (size_t k = 0; k < shards->n; k++) {
        if (strcmp(shards->v[k], name) == 0) {
            *file = first + k;
            return HL_OK;
        }
    }
    char *path = path_join(dir, name);
    if (!path || strlist_push(shards, name) != 0) {
        free(path);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", index);
    }
    struct stat sb;
    hl_status st = HL_OK;
    if (stat(path, &sb) != 0 && errno == ENOENT)
        st = hl_fail(err, HELIOS_ERR_MISSING, "%s: tensor '%s': shard '%s' not found (%s)", index,
                     tensor, name, path);
    else st = weights_add_file(w, path, err);
    free(path);
    *file = first + shards->n - 1; /* on success: shards and w->files grew in step */
    return st;
}

/* {"metadata": {...}, "weight_map": {"tensor": "shard file", ...}}: shards are opened once each,
 * in order of first mention, and every entry is checked against its shard. */
static hl_status weights_open_index(hl_weights *w, const char *index, hl_error *err) {
    hl_json *j;
    HL_TRY(hl_json_load_file_max(index, HL_FILE_MAX_INDEX, "safetensors index", &j, err));
    const hl_json *wm = hl_json_get(j, "weight_map");
    hl_status st = HL_OK;
    strlist shards = {0};
    size_t *entry_file = NULL;
    char *dir = path_dir(index);
    if (!dir) {
        st = hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", index);
        goto done;
    }
    if (!wm || wm->type != HL_JSON_OBJECT) {
        st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: no \"weight_map\" object", index);
        goto done;
    }
    for (size_t i = 0; i < wm->n; i++) { /* cheap checks first: nothing opened yet */
        const hl_json *v = &wm->items[i];
        if (v->type != HL_JSON_STRING) {
            st = hl_fail(err, HELIOS_ERR_FORMAT,
                         "%s: weight_map: tensor '%s': shard is not a string", index, wm->keys[i]);
            goto done;
        }
        if (!shard_name_ok(v)) {
            st = hl_fail(err, HELIOS_ERR_FORMAT,
                         "%s: weight_map: tensor '%s': shard '%s' is not a plain file name in the "
                         "index's folder",
                         index, wm->keys[i], v->string);
            goto done;
        }
    }
    if ((st = check_index_unique(index, wm, err)) != HL_OK) goto done;

    entry_file = malloc((wm->n ? wm->n : 1) * sizeof *entry_file);
    if (!entry_file) {
        st = hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", index);
        goto done;
    }
    size_t first = w->n_files;
    for (size_t i = 0; i < wm->n && st == HL_OK; i++)
        st = index_open_shard(w, first, &shards, index, dir, wm->items[i].string, wm->keys[i],
                              &entry_file[i], err);
    for (size_t i = 0; i < wm->n && st == HL_OK; i++)
        if (!hl_st_find(w->files[entry_file[i]], wm->keys[i]))
            st = hl_fail(err, HELIOS_ERR_MISSING, "%s: tensor '%s': not in its shard '%s'", index,
                         wm->keys[i], wm->items[i].string);
done:
    free(entry_file);
    free(dir);
    strlist_free(&shards);
    hl_json_free(j);
    return st;
}

/* A folder: its one "*.safetensors.index.json" if it has one, else all its "*.safetensors". */
static hl_status weights_open_dir(hl_weights *w, const char *dir, hl_error *err) {
    DIR *d = opendir(dir);
    if (!d) return hl_fail(err, HELIOS_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    strlist index = {0}, files = {0};
    hl_status st = HL_OK;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno)
                st = hl_fail(err, HELIOS_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
            break;
        }
        if (e->d_name[0] == '.') continue; /* hidden: editor and sync leftovers */
        strlist *l = ends_with(e->d_name, k_index_suffix) ? &index
                     : ends_with(e->d_name, k_st_suffix)  ? &files
                                                          : NULL;
        if (l && strlist_push(l, e->d_name) != 0) {
            st = hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", dir);
            break;
        }
    }
    closedir(d);
    if (st != HL_OK) goto done;

    if (index.n > 1) {
        qsort(index.v, index.n, sizeof *index.v, cmp_str);
        st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: %zu index files (%s, %s%s): name the one to use",
                     dir, index.n, index.v[0], index.v[1], index.n > 2 ? ", ..." : "");
    } else if (index.n == 1) {
        char *path = path_join(dir, index.v[0]);
        st = path ? weights_open_index(w, path, err)
                  : hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", dir);
        free(path);
    } else if (files.n == 0) {
        st = hl_fail(err, HELIOS_ERR_MISSING, "%s: no *%s or *%s file in this folder", dir,
                     k_st_suffix, k_index_suffix);
    } else {
        qsort(files.v, files.n, sizeof *files.v, cmp_str); /* readdir order is arbitrary */
        for (size_t i = 0; i < files.n && st == HL_OK; i++) {
            char *path = path_join(dir, files.v[i]);
            st = path ? weights_add_file(w, path, err)
                      : hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", dir);
            free(path);
        }
    }
done:
    strlist_free(&index);
    strlist_free(&files);
    return st;
}

typedef struct named {
    const char *name;
    size_t file;
} named;

static int cmp_named(const void *a, const void *b) {
    const named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->file > y->file) - (x->file < y->file);
}

/* A name in two shards would make lookups depend on shard order: refuse it. */
static hl_status check_unique_across_files(const hl_weights *w, hl_error *err) {
    size_t total = 0;
    for (size_t f = 0; f < w->n_files; f++) total += w->files[f]->n;
    if (w->n_files < 2 || total < 2) return HL_OK;
    named *v = malloc(total * sizeof *v);
    if (!v) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", w->path);
    size_t k = 0;
    for (size_t f = 0; f < w->n_files; f++)
        for (size_t i = 0; i < w->files[f]->n; i++)
            v[k++] = (named){w->files[f]->tensors[i].name, f};
    qsort(v, total, sizeof *v, cmp_named);
    hl_status st = HL_OK;
    for (size_t i = 1; i < total && st == HL_OK; i++)
        if (strcmp(v[i - 1].name, v[i].name) == 0)
            st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: tensor '%s' is in two files: %s and %s",
                         w->path, v[i].name, w->files[v[i - 1].file]->path,
                         w->files[v[i].file]->path);
    free(v);
    return st;
}

hl_status hl_weights_open(const char *path, hl_weights **out, hl_error *err) {
    if (!path || !out)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_weights_open: NULL argument");
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return hl_fail(err, HELIOS_ERR_IO, "%s: %s", path, strerror(errno));
    hl_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    }
    hl_status st;
    if (S_ISDIR(sb.st_mode)) st = weights_open_dir(w, path, err);
    else if (ends_with(path, ".json")) st = weights_open_index(w, path, err);
    else st = weights_add_file(w, path, err);
    if (st == HL_OK) st = check_unique_across_files(w, err);
    if (st != HL_OK) {
        hl_weights_close(w);
        return st;
    }
    *out = w;
    return HL_OK;
}

void hl_weights_close(hl_weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_files; i++) {
        hl_st_close(w->files[i]);
        free(w->used[i]);
    }
    free(w->files);
    free(w->used);
    free(w->path);
    free(w);
}

/* Finds name across shards; *file_idx and *tensor_idx locate it for the used flags. */
static const hl_st_tensor *weights_locate(const hl_weights *w, const char *name, size_t *file_idx) {
    for (size_t f = 0; f < w->n_files; f++) {
        const hl_st_tensor *t = hl_st_find(w->files[f], name);
        if (t) {
            *file_idx = f;
            return t;
        }
    }
    return NULL;
}

const hl_st_tensor *hl_weights_find(const hl_weights *w, const char *name, const char **file) {
    size_t f;
    const hl_st_tensor *t = w && name ? weights_locate(w, name, &f) : NULL;
    if (t && file) *file = w->files[f]->path;
    return t;
}

/* ---- binding -------------------------------------------------------------------------------- */

enum { BIND_MISSING, BIND_SHAPE, BIND_DTYPE, BIND_KINDS };

static const char *const k_kind_title[BIND_KINDS] = {"missing", "shape", "dtype"};

/* "F32|BF16" for an accepted-dtype mask. */
static const char *dtype_mask_str(unsigned mask, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = '\0';
    for (int t = 0; t < HL_DTYPE_COUNT; t++)
        if ((mask & HL_DT(t)) && k < n)
            k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? "|" : "", hl_dtype_name((hl_dtype)t));
    return buf;
}

/* Checks one row against the checkpoint; returns its problems as a bit set of 1 << BIND_*. */
static int bind_row(hl_weights *w, const hl_bind *row) {
    size_t f;
    const hl_st_tensor *t = weights_locate(w, row->name, &f);
    if (!t) {
        if (row->dst) memset(row->dst, 0, sizeof *row->dst);
        return row->optional ? 0 : 1 << BIND_MISSING;
    }
    w->used[f][t - w->files[f]->tensors] = 1; /* a mismatch is still not "unused" */
    int problems = 0;
    if (t->ndim != row->ndim || memcmp(t->shape, row->shape, (size_t)t->ndim * sizeof *t->shape))
        problems |= 1 << BIND_SHAPE;
    if (row->dtypes && !(row->dtypes & HL_DT(t->dtype))) /* 0 accepts any dtype */
        problems |= 1 << BIND_DTYPE;
    if (!problems && row->dst) *row->dst = hl_st_view(t);
    return problems;
}

/* One problem as text: "name", or "name is [2, 2], expected [4] (in file.safetensors)". */
static void format_problem(const hl_weights *w, const hl_bind *row, int kind, char *out, size_t n) {
    const char *file = NULL;
    const hl_st_tensor *t = kind == BIND_MISSING ? NULL : hl_weights_find(w, row->name, &file);
    char have[160], want[160];
    if (!t) snprintf(out, n, "%s", row->name);
    else if (kind == BIND_SHAPE)
        snprintf(out, n, "%s is %s, expected %s (in %s)", row->name,
                 hl_shape_str(t->ndim, t->shape, have, sizeof have),
                 hl_shape_str(row->ndim, row->shape, want, sizeof want), path_base(file));
    else
        snprintf(out, n, "%s is %s, expected %s (in %s)", row->name, hl_dtype_name(t->dtype),
                 dtype_mask_str(row->dtypes, want, sizeof want), path_base(file));
}

/* Writes "title: item, item" for the rows with problem `kind` into out (NULL: only measures) in
 * at most `budget` bytes; items past the budget are counted in a " ... (+N more)" tail. Returns
 * the length of the text. */
static size_t format_section(const hl_weights *w, const hl_bind *table, const int *problems,
                             size_t n, int kind, size_t budget, char *out) {
    enum { TAIL = 40 }; /* room kept for the tail, " ... (+N more)" with any N */
    char item[HL_ERR_MSG_MAX];
    /* Cut only when the whole section would not fit (measured by a call without out). */
    int cut = out && format_section(w, table, problems, n, kind, SIZE_MAX / 2, NULL) > budget;
    size_t len = (size_t)snprintf(out, out ? budget + 1 : 0, "%s: ", k_kind_title[kind]);
    size_t shown = 0, more = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(problems[i] & (1 << kind))) continue;
        format_problem(w, &table[i], kind, item, sizeof item);
        size_t k = strlen(item) + (shown ? 2 : 0);
        if (more ||
            (cut && len + k + TAIL > budget)) { /* in table order: once one is cut, all are */
            more++;
            continue;
        }
        if (out) snprintf(out + len, budget + 1 - len, "%s%s", shown ? ", " : "", item);
        len += k;
        shown++;
    }
    if (more) {
        char tail[TAIL];
        snprintf(tail, sizeof tail, "%s(+%zu more)", shown ? " ... " : "", more);
        if (out) snprintf(out + len, budget + 1 - len, "%s", tail);
        len += strlen(tail);
    }
    return len;
}

/* The whole report, "missing: ...; shape: ...; dtype: ...", in at most cap bytes. When it does
 * not fit, the space is shared fairly: short sections get all they need, long ones split the
 * rest, so a long "missing" list cannot hide the one shape mismatch that explains it. */
static void format_report(const hl_weights *w, const hl_bind *table, const int *problems, size_t n,
                          char *out, size_t cap) {
    size_t need[BIND_KINDS], budget[BIND_KINDS] = {0};
    int order[BIND_KINDS], active = 0;
    for (int k = 0; k < BIND_KINDS; k++) {
        int any = 0;
        for (size_t i = 0; i < n && !any; i++) any = (problems[i] >> k) & 1;
        need[k] = any ? format_section(w, table, problems, n, k, SIZE_MAX / 2, NULL) + 2 : 0;
        if (any) order[active++] = k;
    }
    for (int a = 1; a < active; a++) /* by need, smallest first (insertion sort of <= 3) */
        for (int b = a; b > 0 && need[order[b]] < need[order[b - 1]]; b--) {
            int tmp = order[b];
            order[b] = order[b - 1];
            order[b - 1] = tmp;
        }
    size_t left = cap - 1;
    for (int a = 0; a < active; a++) {
        size_t share = left / (size_t)(active - a);
        budget[order[a]] = need[order[a]] < share ? need[order[a]] : share;
        left -= budget[order[a]];
    }
    size_t len = 0;
    out[0] = '\0';
    for (int k = 0; k < BIND_KINDS; k++) {
        if (!need[k]) continue;
        if (len) len += (size_t)snprintf(out + len, cap - len, "; ");
        len += format_section(w, table, problems, n, k, budget[k] - 2, out + len);
    }
}

static int name_ignored(const char *name, const char *const *ignore) {
    for (size_t i = 0; ignore && ignore[i]; i++)
        if (strstr(name, ignore[i])) return 1;
    return 0;
}

/* Counts (and logs, with the first few names) the tensors no table has bound. */
static size_t report_unused(const hl_weights *w, const char *const *ignore) {
    enum { SHOWN = 10 };
    char names[1024];
    size_t count = 0, len = 0;
    names[0] = '\0';
    for (size_t f = 0; f < w->n_files; f++) {
        for (size_t i = 0; i < w->files[f]->n; i++) {
            const char *name = w->files[f]->tensors[i].name;
            if (w->used[f][i] || name_ignored(name, ignore)) continue;
            if (count++ < SHOWN && len < sizeof names)
                len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "",
                                        name);
        }
    }
    if (count)
        HL_WARN("%s: %zu tensor%s not used by the model: %s%s", w->path, count,
                count == 1 ? "" : "s", names, count > SHOWN ? ", ..." : "");
    return count;
}

/* Index of the first NaN or Inf among n elements of a float tensor, or -1. Works on the bit
 * patterns (exponent all ones), a block at a time without an early exit so that the compiler
 * vectorises it: a scan runs at memory speed (see bind_finite_check for the cost). */
static int64_t first_nonfinite(hl_dtype dt, const void *data, int64_t n) {
    enum { BLOCK = 4096 };
    /* memcpy loads: a tensor's offset in the file need not be aligned */
    const unsigned char *p = data;
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {
        int64_t b1 = n - b0 < BLOCK ? n : b0 + BLOCK;
        int bad = 0;
        if (dt == HL_F32) {
            for (int64_t i = b0; i < b1; i++) {
                uint32_t u;
                memcpy(&u, p + 4 * i, 4);
                bad |= (u & 0x7f800000u) == 0x7f800000u;
            }
        } else if (dt == HL_BF16 || dt == HL_F16) {
            const uint16_t m = dt == HL_BF16 ? 0x7f80u : 0x7c00u;
            for (int64_t i = b0; i < b1; i++) {
                uint16_t u;
                memcpy(&u, p + 2 * i, 2);
                bad |= (u & m) == m;
            }
        } else if (dt == HL_F64) {
            for (int64_t i = b0; i < b1; i++) {
                uint64_t u;
                memcpy(&u, p + 8 * i, 8);
                bad |= (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
            }
        }
        if (bad) { /* the first one of the block: the exponent test again, element by element */
            for (int64_t i = b0; i < b1; i++) {
                size_t sz = dt == HL_F64 ? 8 : dt == HL_F32 ? 4 : 2;
                uint64_t u = 0;
                memcpy(&u, p + sz * i, sz); /* little-endian, as safetensors */
                uint64_t m = sz == 8         ? 0x7ff0000000000000ull
                             : sz == 4       ? 0x7f800000u
                             : dt == HL_BF16 ? 0x7f80u
                                             : 0x7c00u;
                if ((u & m) == m) return i;
            }
        }
    }
    return -1;
}

/* A NaN or Inf weight makes every output NaN (a uniform video, no error), so it is refused at
 * load, naming the tensor. The scan reads each bound tensor once; with the weights mapped that is
 * also the first touch of their pages, which the first forward would pay anyway. */
static hl_status bind_finite_check(const hl_weights *w, const hl_bind *table, size_t n,
                                   hl_error *err) {
    for (size_t i = 0; i < n; i++) {
        const hl_tensor *t = table[i].dst;
        if (!t || !t->data) continue;
        int64_t at = first_nonfinite(t->dtype, t->data, hl_tensor_numel(t));
        if (at < 0) continue;
        const char *file = NULL;
        hl_weights_find(w, table[i].name, &file);
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "%s: tensor %s holds a non-finite value (NaN or Inf) at element %lld",
                       file ? file : w->path, table[i].name, (long long)at);
    }
    return HL_OK;
}

hl_status hl_weights_bind(hl_weights *w, const hl_bind *table, size_t n, const char *const *ignore,
                          size_t *n_unused, hl_error *err) {
    if (!w || (!table && n))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_weights_bind: NULL argument");
    for (size_t i = 0; i < n; i++)
        if (table[i].ndim < 0 || table[i].ndim > HL_MAX_DIMS)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "hl_weights_bind: row '%s': ndim %d out of range", table[i].name,
                           table[i].ndim);
    int *problems = calloc(n ? n : 1, sizeof *problems);
    if (!problems) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", w->path);

    hl_status st = HL_OK;
    for (size_t i = 0; i < n; i++) {
        problems[i] = bind_row(w, &table[i]);
        if (st == HL_OK && problems[i]) /* the first failing row decides the status */
            st = (problems[i] & (1 << BIND_MISSING)) ? HELIOS_ERR_MISSING
                 : (problems[i] & (1 << BIND_SHAPE)) ? HELIOS_ERR_SHAPE
                                                     : HELIOS_ERR_DTYPE;
    }
    if (st != HL_OK) {
        char report[HL_ERR_MSG_MAX];
        size_t prefix = strlen(w->path) + 2; /* the message is "<path>: <report>" */
        if (prefix > sizeof report / 2) prefix = sizeof report / 2;
        format_report(w, table, problems, n, report, sizeof report - prefix);
        hl_fail(err, st, "%s: %s", w->path, report);
    }
    free(problems);
    if (st == HL_OK) st = bind_finite_check(w, table, n, err);
    size_t unused = report_unused(w, ignore);
    if (n_unused) *n_unused = unused;
    return st;
}
