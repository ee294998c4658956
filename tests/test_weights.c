/* Weights: one file, a sharded set through an index, a folder; binding tables with every kind of
 * mismatch reported together; unused tensors; hostile indexes. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/weights.h"
#include "test_util.h"

static char g_root[] = "/tmp/helios_w_XXXXXX";

/* ---- writing checkpoints -------------------------------------------------------------------- */

typedef struct spec {
    const char *name;
    const char *dtype;
    int ndim;
    int64_t shape[4];
} spec;

/* Writes a safetensors file holding the given tensors, data filled with a byte pattern. */
static void write_tensors(const char *path, const spec *t, size_t n) {
    char header[4096];
    size_t k = 0, off = 0;
    k += (size_t)snprintf(header + k, sizeof header - k, "{\"__metadata__\": {\"format\": \"pt\"}");
    for (size_t i = 0; i < n; i++) {
        hl_dtype dt = HL_F32;
        CHECK(hl_dtype_parse(t[i].dtype, strlen(t[i].dtype), &dt) == 0, "dtype %s", t[i].dtype);
        size_t bytes = hl_dtype_size(dt);
        k += (size_t)snprintf(header + k, sizeof header - k,
                              ", \"%s\": {\"dtype\": \"%s\", \"shape\": [", t[i].name, t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++) {
            k += (size_t)snprintf(header + k, sizeof header - k, "%s%lld", d ? ", " : "",
                                  (long long)t[i].shape[d]);
            bytes *= (size_t)t[i].shape[d];
        }
        k += (size_t)snprintf(header + k, sizeof header - k, "], \"data_offsets\": [%zu, %zu]}",
                              off, off + bytes);
        off += bytes;
    }
    k += (size_t)snprintf(header + k, sizeof header - k, "}");
    CHECK(k < sizeof header, "header fits");

    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "create %s", path);
    if (!f) return;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)k >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, k, f);
    for (size_t i = 0; i < off; i++) fputc((int)(i * 7 + 1) & 0xff, f);
    CHECK(fclose(f) == 0, "close %s", path);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "create %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static const char *at(const char *rel) { /* g_root/rel, in one of a few rotating buffers */
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", g_root, rel);
    return b;
}

static void make_dir(const char *rel) { CHECK(mkdir(at(rel), 0700) == 0, "mkdir %s", rel); }

static const spec k_a = {"blocks.0.attn.weight", "F32", 2, {2, 2}};
static const spec k_b = {"blocks.0.attn.bias", "BF16", 1, {3}};
static const spec k_c = {"freqs", "I64", 1, {1}};
static const spec k_d = {"proj_out.weight", "F16", 2, {1, 4}};

static void build_tree(void) {
    spec all[] = {k_a, k_b, k_c};
    make_dir("single");
    write_tensors(at("single/model.safetensors"), all, 3);

    make_dir("sharded");
    spec s1[] = {k_a, k_b}, s2[] = {k_c, k_d};
    write_tensors(at("sharded/model-00001-of-00002.safetensors"), s1, 2);
    write_tensors(at("sharded/model-00002-of-00002.safetensors"), s2, 2);
    write_text(at("sharded/model.safetensors.index.json"),
               "{\"metadata\": {\"total_size\": 42},\n \"weight_map\": {\n"
               "  \"blocks.0.attn.weight\": \"model-00001-of-00002.safetensors\",\n"
               "  \"blocks.0.attn.bias\": \"model-00001-of-00002.safetensors\",\n"
               "  \"freqs\": \"model-00002-of-00002.safetensors\",\n"
               "  \"proj_out.weight\": \"model-00002-of-00002.safetensors\"}}\n");

    make_dir("plain");
    spec y[] = {k_b}, x[] = {k_a};
    write_tensors(at("plain/y.safetensors"), y, 1);
    write_tensors(at("plain/x.safetensors"), x, 1);
    write_text(at("plain/README.md"), "not weights\n");
    write_text(at("plain/.hidden.safetensors"), "garbage");
}

/* ---- opening -------------------------------------------------------------------------------- */

static void test_single(void) {
    hl_weights *w = NULL;
    hl_error err;
    hl_error_clear(&err);
    CHECK(hl_weights_open(at("single/model.safetensors"), &w, &err) == HL_OK && w, "open: %s",
          err.msg);
    if (!w) return;
    CHECK(w->n_files == 1 && w->files[0]->n == 3, "one file, three tensors");
    const char *file = NULL;
    const hl_st_tensor *t = hl_weights_find(w, "freqs", &file);
    CHECK(t && t->dtype == HL_I64 && file && strstr(file, "single/model.safetensors"), "find");
    CHECK(hl_weights_find(w, "nope", &file) == NULL, "find absent");
    CHECK(hl_weights_find(w, "freqs", NULL) == t, "file is optional");
    hl_weights_close(w);
    hl_weights_close(NULL);
}

static void test_sharded(void) {
    const char *paths[] = {at("sharded/model.safetensors.index.json"), at("sharded")};
    for (int p = 0; p < 2; p++) {
        hl_weights *w = NULL;
        hl_error err;
        hl_error_clear(&err);
        CHECK(hl_weights_open(paths[p], &w, &err) == HL_OK && w, "open %s: %s", paths[p], err.msg);
        if (!w) continue;
        CHECK(w->n_files == 2, "two shards, each opened once: %zu", w->n_files);
        const char *file = NULL;
        const hl_st_tensor *t = hl_weights_find(w, "proj_out.weight", &file);
        CHECK(t && t->dtype == HL_F16 && file && strstr(file, "model-00002-of-00002"),
              "in shard 2");
        t = hl_weights_find(w, "blocks.0.attn.bias", &file);
        CHECK(t && file && strstr(file, "model-00001-of-00002"), "in shard 1");
        hl_weights_close(w);
    }
}

static void test_plain_dir(void) {
    hl_weights *w = NULL;
    hl_error err;
    hl_error_clear(&err);
    CHECK(hl_weights_open(at("plain"), &w, &err) == HL_OK && w, "open folder: %s", err.msg);
    if (!w) return;
    CHECK(w->n_files == 2, "two files (README and hidden file skipped): %zu", w->n_files);
    if (w->n_files == 2)
        CHECK(strstr(w->files[0]->path, "/x.safetensors") &&
                  strstr(w->files[1]->path, "/y.safetensors"),
              "sorted by name");
    CHECK(hl_weights_find(w, k_a.name, NULL) && hl_weights_find(w, k_b.name, NULL), "both found");
    hl_weights_close(w);
}

/* Expects hl_weights_open(path) to fail with `status`, the message containing each of want[]. */
static void expect_open_fails(const char *path, hl_status status, const char *const *want) {
    hl_weights *w = (hl_weights *)1;
    hl_error err;
    hl_error_clear(&err);
    hl_status s = hl_weights_open(path, &w, &err);
    CHECK(s == status, "%s: status %d, expected %d (%s)", path, (int)s, (int)status, err.msg);
    CHECK(w == NULL, "out is NULL on failure");
    for (size_t i = 0; want[i]; i++)
        CHECK(strstr(err.msg, want[i]) != NULL, "message '%s' lacks '%s'", err.msg, want[i]);
    if (s == HL_OK) hl_weights_close(w);
}

/* An index in the sharded folder (so its shards exist) with the given weight_map body. */
static const char *bad_index(const char *name, const char *weight_map) {
    char text[1024];
    snprintf(text, sizeof text, "{\"weight_map\": %s}", weight_map);
    char rel[128];
    snprintf(rel, sizeof rel, "sharded/%s", name);
    const char *path = at(rel);
    write_text(path, text);
    return path;
}

static void test_bad_indexes(void) {
    const char *p;
    p = bad_index("missing_shard.json", "{\"freqs\": \"model-00003-of-00003.safetensors\"}");
    expect_open_fails(p, HELIOS_ERR_MISSING,
                      (const char *[]){p, "tensor 'freqs'",
                                       "'model-00003-of-00003.safetensors' not found", NULL});
    p = bad_index("absent_tensor.json", "{\"freqs\": \"model-00002-of-00002.safetensors\","
                                        " \"ghost\": \"model-00002-of-00002.safetensors\"}");
    expect_open_fails(
        p, HELIOS_ERR_MISSING,
        (const char *[]){p, "tensor 'ghost'", "not in its shard 'model-00002-of-00002", NULL});
    p = bad_index("dotdot.json", "{\"freqs\": \"../single/model.safetensors\"}");
    expect_open_fails(
        p, HELIOS_ERR_FORMAT,
        (const char *[]){p, "'../single/model.safetensors'", "plain file name", NULL});
    p = bad_index("dotdot2.json", "{\"freqs\": \"..\"}");
    expect_open_fails(p, HELIOS_ERR_FORMAT, (const char *[]){p, "plain file name", NULL});
    p = bad_index("absolute.json", "{\"freqs\": \"/etc/passwd\"}");
    expect_open_fails(p, HELIOS_ERR_FORMAT, (const char *[]){p, "'/etc/passwd'", NULL});
    p = bad_index("subdir.json", "{\"freqs\": \"sub/model.safetensors\"}");
    expect_open_fails(p, HELIOS_ERR_FORMAT, (const char *[]){p, "plain file name", NULL});
    p = bad_index("empty_name.json", "{\"freqs\": \"\"}");
    expect_open_fails(p, HELIOS_ERR_FORMAT, (const char *[]){p, "plain file name", NULL});
    p = bad_index("nul_name.json", "{\"freqs\": \"model-00002-of-00002.safetensors\\u0000x\"}");
    expect_open_fails(p, HELIOS_ERR_FORMAT, (const char *[]){p, "plain file name", NULL});
    p = bad_index("not_string.json", "{\"freqs\": 2}");
    expect_open_fails(p, HELIOS_ERR_FORMAT,
                      (const char *[]){p, "tensor 'freqs'", "not a string", NULL});
    p = bad_index("not_object.json", "[\"model-00002-of-00002.safetensors\"]");
    expect_open_fails(p, HELIOS_ERR_FORMAT, (const char *[]){p, "no \"weight_map\" object", NULL});
    p = bad_index("twice.json", "{\"freqs\": \"model-00002-of-00002.safetensors\","
                                " \"freqs\": \"model-00001-of-00002.safetensors\"}");
    expect_open_fails(p, HELIOS_ERR_FORMAT,
                      (const char *[]){p, "lists tensor 'freqs' twice", NULL});
    p = bad_index("bad_json.json", "{\"freqs\": }");
    expect_open_fails(p, HELIOS_ERR_FORMAT, (const char *[]){p, "line 1, column", NULL});

    /* An empty weight_map is a valid (empty) checkpoint. */
    p = bad_index("empty_map.json", "{}");
    hl_weights *w = NULL;
    hl_error err;
    CHECK(hl_weights_open(p, &w, &err) == HL_OK && w && w->n_files == 0, "empty map: %s", err.msg);
    hl_weights_close(w);

    /* Clean up the extra indexes so the folder itself keeps exactly one. */
    DIR *d = opendir(at("sharded"));
    struct dirent *e;
    char path[600];
    while (d && (e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".json") && strcmp(e->d_name, "model.safetensors.index.json")) {
            snprintf(path, sizeof path, "%s/sharded/%s", g_root, e->d_name);
            unlink(path);
        }
    }
    if (d) closedir(d);
}

static void test_bad_sets(void) {
    /* The same tensor in two files of a folder. */
    make_dir("dup");
    spec one[] = {k_a}, two[] = {k_c, k_a};
    write_tensors(at("dup/p.safetensors"), one, 1);
    write_tensors(at("dup/q.safetensors"), two, 2);
    expect_open_fails(at("dup"), HELIOS_ERR_FORMAT,
                      (const char *[]){"tensor 'blocks.0.attn.weight' is in two files",
                                       "p.safetensors", "q.safetensors", NULL});

    /* Two index files: ambiguous. */
    make_dir("two_index");
    write_text(at("two_index/a.safetensors.index.json"), "{\"weight_map\": {}}");
    write_text(at("two_index/b.safetensors.index.json"), "{\"weight_map\": {}}");
    expect_open_fails(at("two_index"), HELIOS_ERR_FORMAT,
                      (const char *[]){"2 index files", "a.safetensors.index.json", NULL});

    make_dir("empty");
    expect_open_fails(at("empty"), HELIOS_ERR_MISSING,
                      (const char *[]){"empty: no *.safetensors", NULL});
    expect_open_fails(at("nowhere"), HELIOS_ERR_IO,
                      (const char *[]){"nowhere", "No such file", NULL});

    /* A broken shard in a folder: the shard's own error, naming it. */
    make_dir("broken");
    write_text(at("broken/m.safetensors"), "abc");
    expect_open_fails(at("broken"), HELIOS_ERR_FORMAT,
                      (const char *[]){"broken/m.safetensors", "too short", NULL});
}

/* ---- binding -------------------------------------------------------------------------------- */

static char g_log[4096];
static int g_warnings;

static void capture_log(helios_log_level level, const char *msg, void *user) {
    (void)user;
    if (level != HELIOS_LOG_WARN) return;
    g_warnings++;
    snprintf(g_log, sizeof g_log, "%s", msg);
}

static hl_bind row(const char *name, hl_tensor *dst, int ndim, const int64_t *shape,
                   unsigned dtypes, bool optional) {
    hl_bind b = {.dst = dst, .ndim = ndim, .dtypes = dtypes, .optional = optional};
    snprintf(b.name, sizeof b.name, "%s", name);
    for (int i = 0; i < ndim; i++) b.shape[i] = shape[i];
    return b;
}

static void test_bind_ok(void) {
    hl_weights *w = NULL;
    hl_error err;
    CHECK(hl_weights_open(at("sharded"), &w, &err) == HL_OK, "open: %s", err.msg);
    if (!w) return;
    hl_tensor wa = {0}, wb = {0}, wc = {0}, wd = {0}, opt = {.data = (void *)1};
    hl_bind table[] = {
        row(k_a.name, &wa, 2, (int64_t[]){2, 2}, HL_DT_FLOAT, false),
        row(k_b.name, &wb, 1, (int64_t[]){3}, HL_DT_FLOAT, false),
        row(k_c.name, &wc, 1, (int64_t[]){1}, HL_DT(HL_I64), false),
        row(k_d.name, &wd, 2, (int64_t[]){1, 4}, 0, false), /* 0: any dtype */
        row("not.there", &opt, 1, (int64_t[]){5}, HL_DT_FLOAT, true),
    };
    size_t unused = 99;
    g_warnings = 0;
    CHECK(hl_weights_bind(w, table, 5, NULL, &unused, &err) == HL_OK, "bind: %s", err.msg);
    CHECK(unused == 0 && g_warnings == 0, "nothing unused: %zu", unused);
    CHECK(wa.data && wa.dtype == HL_F32 && wa.ndim == 2 && wa.stride[0] == 2, "a bound");
    CHECK(wb.data && wb.dtype == HL_BF16, "b bound");
    CHECK(wc.data && wc.dtype == HL_I64, "c bound");
    CHECK(wd.data && wd.dtype == HL_F16, "d bound");
    CHECK(opt.data == NULL, "optional absent: data NULL");
    const hl_st_tensor *t = hl_weights_find(w, k_a.name, NULL);
    CHECK(t && wa.data == t->data, "views point into the mapping");
    hl_weights_close(w);
}

static void test_bind_unused(void) {
    hl_weights *w = NULL;
    hl_error err;
    CHECK(hl_weights_open(at("single/model.safetensors"), &w, &err) == HL_OK, "open: %s", err.msg);
    if (!w) return;
    hl_tensor wa;
    hl_bind table[] = {row(k_a.name, &wa, 2, (int64_t[]){2, 2}, HL_DT_FLOAT, false)};
    size_t unused = 0;
    g_warnings = 0;
    g_log[0] = '\0';
    CHECK(hl_weights_bind(w, table, 1, NULL, &unused, &err) == HL_OK, "bind: %s", err.msg);
    CHECK(unused == 2, "two unused: %zu", unused);
    CHECK(g_warnings == 1 && strstr(g_log, "2 tensors not used") && strstr(g_log, k_b.name) &&
              strstr(g_log, k_c.name),
          "warning lists them: %s", g_log);

    /* Substring/prefix ignores; binding marks are cumulative across tables. */
    const char *ignore[] = {"freq", NULL};
    CHECK(hl_weights_bind(w, table, 1, ignore, &unused, &err) == HL_OK && unused == 1,
          "ignore: %zu", unused);
    hl_tensor wb;
    hl_bind table2[] = {row(k_b.name, &wb, 1, (int64_t[]){3}, HL_DT(HL_BF16), false)};
    g_warnings = 0;
    CHECK(hl_weights_bind(w, table2, 1, ignore, &unused, &err) == HL_OK && unused == 0 &&
              g_warnings == 0,
          "all bound by two tables: %zu", unused);
    CHECK(hl_weights_bind(w, NULL, 0, NULL, NULL, &err) == HL_OK, "empty table, no counter");
    hl_weights_close(w);
}

static void test_bind_errors(void) {
    hl_weights *w = NULL;
    hl_error err;
    CHECK(hl_weights_open(at("single/model.safetensors"), &w, &err) == HL_OK, "open: %s", err.msg);
    if (!w) return;
    hl_tensor wa = {0}, wb = {0}, wc = {0}, opt = {0};
    hl_bind table[] = {
        row(k_a.name, &wa, 1, (int64_t[]){4}, HL_DT_FLOAT, false),      /* wrong shape */
        row("gone.one", NULL, 1, (int64_t[]){1}, HL_DT_FLOAT, false),   /* missing */
        row(k_b.name, &wb, 1, (int64_t[]){3}, HL_DT(HL_F32), false),    /* wrong dtype */
        row("maybe", &opt, 1, (int64_t[]){1}, HL_DT_FLOAT, true),       /* optional */
        row("gone.two", NULL, 1, (int64_t[]){1}, HL_DT_FLOAT, false),   /* missing */
        row(k_c.name, &wc, 2, (int64_t[]){1, 1}, HL_DT(HL_F32), false), /* both */
    };
    size_t unused = 99;
    hl_error_clear(&err);
    hl_status s = hl_weights_bind(w, table, 6, NULL, &unused, &err);
    CHECK(s == HELIOS_ERR_SHAPE, "first failing row decides: %d", (int)s);
    CHECK(strstr(err.msg, "missing: gone.one, gone.two") != NULL, "missing listed: %s", err.msg);
    CHECK(strstr(err.msg,
                 "shape: blocks.0.attn.weight is [2, 2], expected [4] (in model.safetensors), "
                 "freqs is [1], expected [1, 1] (in model.safetensors)") != NULL,
          "shape listed: %s", err.msg);
    CHECK(strstr(err.msg, "dtype: blocks.0.attn.bias is BF16, expected F32 (in model.safetensors), "
                          "freqs is I64, expected F32") != NULL,
          "dtype listed: %s", err.msg);
    CHECK(strstr(err.msg, "maybe") == NULL, "optional not reported");
    CHECK(strncmp(err.msg, w->path, strlen(w->path)) == 0, "starts with the path: %s", err.msg);
    CHECK(wa.data == NULL && wb.data == NULL, "mismatched rows stay unbound");
    CHECK(unused == 0, "mismatched tensors are not also 'unused': %zu", unused);

    s = hl_weights_bind(w, table + 1, 1, NULL, NULL, &err);
    CHECK(s == HELIOS_ERR_MISSING && strstr(err.msg, "missing: gone.one"), "missing only: %s",
          err.msg);
    s = hl_weights_bind(w, table + 2, 1, NULL, NULL, &err);
    CHECK(s == HELIOS_ERR_DTYPE, "dtype only");

    /* Hundreds of problems: the message is cut, says how many were left out, and fits. */
    enum { N = 300 };
    hl_bind *many = calloc(N, sizeof *many);
    if (many) {
        for (int i = 0; i < N; i++) {
            char name[64];
            snprintf(name, sizeof name, "transformer_blocks.%d.attn1.to_q.weight", i);
            many[i] = row(name, NULL, 1, (int64_t[]){1}, HL_DT_FLOAT, false);
        }
        many[N - 1] = row(k_a.name, NULL, 1, (int64_t[]){4}, HL_DT_FLOAT, false);
        s = hl_weights_bind(w, many, N, NULL, NULL, &err);
        CHECK(s == HELIOS_ERR_MISSING, "many missing");
        CHECK(strstr(err.msg, "missing: transformer_blocks.0.attn1") &&
                  strstr(err.msg, " ... (+") && strlen(err.msg) < HL_ERR_MSG_MAX - 1,
              "truncated sensibly (%zu chars): %s", strlen(err.msg), err.msg);
        CHECK(strstr(err.msg, "; shape: blocks.0.attn.weight is [2, 2], expected [4]") != NULL,
              "a long missing list does not hide the shape mismatch: %s", err.msg);
        free(many);
    }

    hl_bind bad = row(k_a.name, NULL, 0, NULL, HL_DT_FLOAT, false);
    bad.ndim = HL_MAX_DIMS + 1;
    CHECK(hl_weights_bind(w, &bad, 1, NULL, NULL, &err) == HELIOS_ERR_INVALID_ARG, "bad ndim row");
    hl_weights_close(w);
}

/* ---- main ----------------------------------------------------------------------------------- */

static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    char child[1024];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        remove_tree(child);
    }
    closedir(d);
    rmdir(path);
}

int main(void) {
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    helios_log_set(capture_log, NULL);
    build_tree();
    test_single();
    test_sharded();
    test_plain_dir();
    test_bad_indexes();
    test_bad_sets();
    test_bind_ok();
    test_bind_unused();
    test_bind_errors();
    helios_log_set(NULL, NULL);
    remove_tree(g_root);
    struct stat sb;
    CHECK(stat(g_root, &sb) != 0, "temporary folder removed");
    return test_done("test_weights");
}
