/* Every reader of a user file against paths that are not files to read: /dev/zero, a FIFO with
 * no writer, a directory, a sparse file one byte over the reader's size cap, and a file that is
 * longer than its size says (/proc). Each must fail at once with an error naming the path: no
 * hang (an alarm turns one into a failure), no unbounded read. See core/file.h and
 * docs/bad-input.md. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "dit/dit.h"
#include "helios.h"
#include "io/json.h"
#include "io/media.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "text/prompt_encode.h"
#include "text/spm.h"
#include "text/umt5.h"
#include "vae/vae.h"
#include "test_util.h"

static char g_root[] = "/tmp/helios_readers_XXXXXX";
static const char *g_case = "";

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_readers: a reader hung (alarm): ";
    (void)!write(2, msg, sizeof msg - 1);
    (void)!write(2, g_case, strlen(g_case));
    (void)!write(2, "\n", 1);
    _exit(1);
}

/* ---- the readers, each called on the hostile path `p` inside the empty folder `dir` ---------- */

static hl_status rd_json(const char *dir, const char *p, hl_error *err) {
    (void)dir;
    hl_json *j = NULL;
    hl_status st = hl_json_load_file(p, &j, err);
    hl_json_free(j);
    return st;
}

static hl_status rd_spm(const char *dir, const char *p, hl_error *err) {
    (void)dir;
    hl_spm *m = NULL;
    hl_status st = hl_spm_load(p, &m, err);
    hl_spm_free(m);
    return st;
}

static hl_status rd_tokenizer_json(const char *dir, const char *p, hl_error *err) {
    (void)dir;
    hl_spm *m = NULL;
    hl_status st = hl_spm_load_tokenizer_json(p, &m, err);
    hl_spm_free(m);
    return st;
}

/* The text encoder finds its tokenizer file in the folder (spiece.model or tokenizer.json). */
static hl_status rd_text_encoder(const char *dir, const char *p, hl_error *err) {
    (void)p;
    hl_text_encoder *te = NULL;
    hl_status st = hl_text_encoder_open(dir, dir, &te, err);
    hl_text_encoder_free(te);
    return st;
}

static hl_status rd_safetensors(const char *dir, const char *p, hl_error *err) {
    (void)dir;
    hl_safetensors *st = NULL;
    hl_status s = hl_st_open(p, &st, err);
    hl_st_close(st);
    return s;
}

/* A weights folder whose one entry (an index or a shard) is the hostile path. */
static hl_status rd_weights_dir(const char *dir, const char *p, hl_error *err) {
    (void)p;
    hl_weights *w = NULL;
    hl_status st = hl_weights_open(dir, &w, err);
    hl_weights_close(w);
    return st;
}

static hl_status rd_dit(const char *dir, const char *p, hl_error *err) {
    hl_dit *m = NULL;
    hl_status st = hl_dit_load(p, dir, &m, err);
    hl_dit_free(m);
    return st;
}

static hl_status rd_umt5(const char *dir, const char *p, hl_error *err) {
    hl_umt5 *m = NULL;
    hl_status st = hl_umt5_load(p, dir, &m, err);
    hl_umt5_free(m);
    return st;
}

static hl_status rd_vae(const char *dir, const char *p, hl_error *err) {
    (void)p;
    hl_vae *v = NULL;
    hl_status st = hl_vae_load(dir, NULL, NULL, &v, err);
    hl_vae_free(v);
    return st;
}

/* The model folder through the public API: model_index.json is the first file it reads. */
static hl_status rd_model_index(const char *dir, const char *p, hl_error *err) {
    (void)p;
    helios_session_params sp;
    helios_session_params_init(&sp);
    helios_session *s = NULL;
    if (helios_session_new(&sp, &s) != HELIOS_OK)
        return hl_fail(err, HELIOS_ERR_INTERNAL, "session");
    helios_pipeline_params pp;
    helios_pipeline_params_init(&pp);
    pp.model_dir = dir;
    helios_pipeline *pl = NULL;
    hl_status st = helios_pipeline_load(s, &pp, &pl);
    snprintf(err->msg, sizeof err->msg, "%s", helios_session_error(s));
    helios_pipeline_free(pl);
    helios_session_free(s);
    return st;
}

static hl_status rd_image(const char *dir, const char *p, hl_error *err) {
    (void)dir;
    hl_media m;
    hl_status st = hl_image_read(p, 0, 0, &m, err);
    hl_media_free(&m);
    return st;
}

static hl_status rd_video(const char *dir, const char *p, hl_error *err) {
    (void)dir;
    hl_media m;
    hl_status st = hl_video_read(p, 16, 16, 0, &m, err);
    hl_media_free(&m);
    return st;
}

/* the public streaming reader: its open is where the path is checked */
static hl_status rd_video_stream(const char *dir, const char *p, hl_error *err) {
    (void)dir;
    helios_session_params sp;
    helios_session_params_init(&sp);
    sp.n_threads = 1;
    helios_session *s = NULL;
    if (helios_session_new(&sp, &s) != HELIOS_OK)
        return hl_fail(err, HELIOS_ERR_INTERNAL, "session: %s", helios_session_new_error());
    helios_video_reader *r = NULL;
    hl_status st = helios_video_reader_open(s, p, 16, 16, &r);
    snprintf(err->msg, sizeof err->msg, "%s", helios_session_error(s));
    helios_video_reader_free(r);
    helios_session_free(s);
    return st;
}

typedef struct reader {
    const char *what;
    const char *file;  /* the hostile path's name inside the case folder */
    const char *setup; /* another file the reader needs to get that far ("name=content") */
    hl_status (*fn)(const char *dir, const char *p, hl_error *err);
    size_t cap;           /* the size cap (0: none, the over-cap case is skipped) */
    const char *kind;     /* the kind the over-cap message names */
    hl_status dir_status; /* what a directory gets */
} reader;

static const char k_model_index[] = "{\"_class_name\": \"HeliosPipeline\"}";

static const reader k_readers[] = {
    {"JSON config", "config.json", NULL, rd_json, HL_FILE_MAX_CONFIG, "JSON config", HELIOS_ERR_IO},
    {"transformer config", "config.json", NULL, rd_dit, HL_FILE_MAX_CONFIG, "JSON config",
     HELIOS_ERR_IO},
    {"UMT5 config", "config.json", NULL, rd_umt5, HL_FILE_MAX_CONFIG, "JSON config", HELIOS_ERR_IO},
    {"VAE config", "config.json", NULL, rd_vae, HL_FILE_MAX_CONFIG, "JSON config", HELIOS_ERR_IO},
    {"model_index.json", "model_index.json", NULL, rd_model_index, HL_FILE_MAX_CONFIG,
     "JSON config", HELIOS_ERR_IO},
    {"scheduler_config.json", "scheduler_config.json", k_model_index, rd_model_index,
     HL_FILE_MAX_CONFIG, "JSON config", HELIOS_ERR_IO},
    {"sharded index", "model.safetensors.index.json", NULL, rd_weights_dir, HL_FILE_MAX_INDEX,
     "safetensors index", HELIOS_ERR_IO},
    {"spiece.model", "spiece.model", NULL, rd_spm, HL_FILE_MAX_SPM, "spiece.model", HELIOS_ERR_IO},
    {"tokenizer.json", "tokenizer.json", NULL, rd_tokenizer_json, HL_FILE_MAX_TOKENIZER_JSON,
     "tokenizer.json", HELIOS_ERR_IO},
    {"text encoder spiece.model", "spiece.model", NULL, rd_text_encoder, HL_FILE_MAX_SPM,
     "spiece.model", HELIOS_ERR_IO},
    {"text encoder tokenizer.json", "tokenizer.json", NULL, rd_text_encoder,
     HL_FILE_MAX_TOKENIZER_JSON, "tokenizer.json", HELIOS_ERR_IO},
    {"safetensors file", "model.safetensors", NULL, rd_safetensors, 0, NULL, HELIOS_ERR_IO},
    {"weights folder shard", "model.safetensors", NULL, rd_weights_dir, 0, NULL, HELIOS_ERR_IO},
    {"image", "image.png", NULL, rd_image, 0, NULL, HELIOS_ERR_INVALID_ARG},
    {"video", "video.mp4", NULL, rd_video, 0, NULL, HELIOS_ERR_INVALID_ARG},
    {"video stream", "video.mp4", NULL, rd_video_stream, 0, NULL, HELIOS_ERR_INVALID_ARG},
};

/* ---- the hostile paths ------------------------------------------------------------------------ */

enum { H_DEV_ZERO, H_FIFO, H_DIR, H_OVER_CAP, H_COUNT };
static const char *const k_hostile[] = {"/dev/zero", "a FIFO", "a directory", "over the cap"};

static void spit(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "create %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Makes the case folder dir, with the reader's hostile file at *p (a subfolder for the scheduler,
 * as in a model folder). Returns 0 on success. */
static int make_case(const reader *r, int h, const char *dir, char *p, size_t n) {
    if (mkdir(dir, 0777) != 0) return -1;
    char sub[512];
    snprintf(sub, sizeof sub, "%s", dir);
    if (r->setup) {
        char idx[512];
        snprintf(idx, sizeof idx, "%s/model_index.json", dir);
        spit(idx, r->setup);
        snprintf(sub, sizeof sub, "%s/scheduler", dir);
        if (mkdir(sub, 0777) != 0) return -1;
    }
    snprintf(p, n, "%s/%s", sub, r->file);
    switch (h) {
    case H_DEV_ZERO: return symlink("/dev/zero", p);
    case H_FIFO: return mkfifo(p, 0666);
    case H_DIR: return mkdir(p, 0777);
    default: {
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fd < 0) return -1;
        int rc = ftruncate(fd, (off_t)r->cap + 1); /* sparse: no disk used */
        close(fd);
        return rc;
    }
    }
}

static void remove_case(const char *dir, const char *p, const reader *r) {
    if (rmdir(p) != 0) unlink(p);
    char x[600];
    if (r->setup) {
        snprintf(x, sizeof x, "%s/scheduler", dir);
        rmdir(x);
        snprintf(x, sizeof x, "%s/model_index.json", dir);
        unlink(x);
    }
    CHECK(rmdir(dir) == 0, "remove %s: %s", dir, strerror(errno));
}

/* The message without the temporary folder's name. */
static const char *shorter(const char *msg) {
    const char *at = strstr(msg, g_root);
    return at == msg ? msg + strlen(g_root) + 1 : msg;
}

static void test_hostile_paths(void) {
    for (size_t i = 0; i < sizeof k_readers / sizeof *k_readers; i++) {
        const reader *r = &k_readers[i];
        for (int h = 0; h < H_COUNT; h++) {
            if (h == H_OVER_CAP && r->cap == 0) continue;
            char dir[256], p[600], name[128];
            snprintf(dir, sizeof dir, "%s/case", g_root);
            snprintf(name, sizeof name, "%s, %s", r->what, k_hostile[h]);
            g_case = name;
            if (make_case(r, h, dir, p, sizeof p) != 0) {
                CHECK(0, "%s: cannot set up: %s", name, strerror(errno));
                continue;
            }
            hl_error err;
            hl_error_clear(&err);
            alarm(20);
            hl_status st = r->fn(dir, p, &err);
            alarm(0);
            bool named = strstr(err.msg, p) != NULL;
            if (h == H_OVER_CAP) {
                char want[128];
                snprintf(want, sizeof want, "%zu bytes, more than the %zu-byte limit for a %s",
                         r->cap + 1, r->cap, r->kind);
                CHECK(st == HELIOS_ERR_FORMAT && named && strstr(err.msg, want),
                      "%s: %d '%s' (want '%s')", name, st, err.msg, want);
            } else if (h == H_DIR && r->dir_status == HELIOS_ERR_INVALID_ARG) {
                CHECK(st == HELIOS_ERR_INVALID_ARG && named && strstr(err.msg, "directory"),
                      "%s: %d '%s'", name, st, err.msg);
            } else {
                CHECK(st == HELIOS_ERR_IO && named && strstr(err.msg, "not a regular file"),
                      "%s: %d '%s'", name, st, err.msg);
            }
            printf("  %-42s -> %s\n", name, shorter(err.msg));
            remove_case(dir, p, r);
        }
    }
}

/* The helper itself: a file longer than its size says (a /proc file reads as size 0), exact
 * reads, the NUL after the data, and the limits at the boundary. */
static void test_read_all(void) {
    char *buf = (char *)1;
    size_t len = 1;
    hl_error err;
    alarm(20);
    g_case = "/proc/self/status";
    hl_status st = hl_file_read_all("/proc/self/status", 1 << 20, "test file", &buf, &len, &err);
    CHECK(st == HELIOS_ERR_IO && !buf && len == 0 &&
              strstr(err.msg, "/proc/self/status: grew past 0 bytes"),
          "/proc file: %d '%s'", st, err.msg);
    printf("  %-42s -> %s\n", "a file longer than its size", err.msg);

    char p[300];
    snprintf(p, sizeof p, "%s/exact.json", g_root);
    spit(p, "{\"a\": 1}");
    g_case = p;
    st = hl_file_read_all(p, 8, "test file", &buf, &len, &err);
    CHECK(st == HL_OK && len == 8 && buf && memcmp(buf, "{\"a\": 1}", 9) == 0, "exact cap: %s",
          err.msg);
    free(buf);
    st = hl_file_read_all(p, 7, "test file", &buf, &len, &err);
    CHECK(st == HELIOS_ERR_FORMAT && !buf &&
              strstr(err.msg, "8 bytes, more than the 7-byte limit for a test file"),
          "one over: %s", err.msg);
    int fd = -1;
    size_t size = 0;
    st = hl_file_open_regular(p, SIZE_MAX, "test file", &fd, &size, &err);
    CHECK(st == HL_OK && fd >= 0 && size == 8, "open_regular: %s", err.msg);
    if (fd >= 0) close(fd);
    CHECK(hl_file_is_regular(p) && !hl_file_is_regular(g_root) &&
              !hl_file_is_regular("/dev/zero") && !hl_file_is_regular("/nonexistent/x"),
          "is_regular");
    unlink(p);
    snprintf(p, sizeof p, "%s/empty", g_root);
    spit(p, "");
    st = hl_file_read_all(p, 8, "test file", &buf, &len, &err);
    CHECK(st == HL_OK && len == 0 && buf && buf[0] == '\0', "empty file: %s", err.msg);
    free(buf);
    unlink(p);
    st = hl_file_read_all("/nonexistent/none.json", 8, "test file", &buf, &len, &err);
    CHECK(st == HELIOS_ERR_IO &&
              strstr(err.msg, "/nonexistent/none.json: cannot open: No such file"),
          "missing: %s", err.msg);
    alarm(0);
}

int main(void) {
    signal(SIGALRM, on_alarm);
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    printf("hostile paths:\n");
    test_hostile_paths();
    printf("the helper:\n");
    test_read_all();
    rmdir(g_root);
    return test_done("test_readers");
}
