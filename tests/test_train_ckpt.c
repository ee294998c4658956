/* Training checkpoints (train/checkpoint.h): a save/load round trip restores weights, moments, EMA
 * and the RNG's whole state exactly (the restored generator continues with the same draws); the
 * transformer folder of a checkpoint loads with hl_dit_load as is; latest/clean/prune pick, clean
 * and keep the right folders; a damaged state.json is reported with its file and key. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/dit_flat.h"

static char g_dir[256];

static void sub(char *out, const char *rel) { snprintf(out, 4096, "%s/%s", g_dir, rel); }

static bool exists(const char *rel) {
    char p[4096];
    struct stat s;
    sub(p, rel);
    return stat(p, &s) == 0;
}

static char *read_text(const char *path) {
    char *buf = NULL;
    size_t n;
    hl_error e = {0};
    if (hl_file_read_all(path, 1 << 20, "config", &buf, &n, &e) != HL_OK) return NULL;
    return buf;
}

static void test_roundtrip_dit(void) {
    hl_error e = {0};
    char cfg_path[4096], out[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/transformer_config.json", HELIOS_VECTORS);
    hl_json *j = NULL;
    hl_dit_config cfg;
    CHECK(hl_json_load_file(cfg_path, &j, &e) == HL_OK && hl_dit_config_parse(j, &cfg, &e) == HL_OK,
          "%s", e.msg);
    hl_json_free(j);
    hl_params L;
    CHECK(hl_dit_params_layout(&cfg, &L, &e) == HL_OK, "%s", e.msg);
    size_t n = (size_t)L.total;
    float *w = malloc(n * 4), *ema = malloc(n * 4), *w2 = malloc(n * 4), *ema2 = malloc(n * 4);
    hl_rng rng;
    rng.path = HL_RNG_NORMAL_AVX2;
    hl_rng_seed(&rng, 11);
    hl_dit_params_init_random(&cfg, &L, w, &rng);
    hl_rng_randn_f32(&rng, ema, (int64_t)n);
    hl_adamw opt, opt2;
    CHECK(hl_adamw_init(&opt, L.total, &e) == HL_OK && hl_adamw_init(&opt2, L.total, &e) == HL_OK,
          "%s", e.msg);
    hl_rng_rand_f32(&rng, opt.m, L.total);
    hl_rng_rand_f32(&rng, opt.v, L.total);
    opt.step = 42;

    char *config_text = read_text(cfg_path);
    CHECK(config_text != NULL, "read config");
    hl_ckpt_io io = {g_dir,
                     "transformer",
                     "diffusion_pytorch_model.safetensors",
                     config_text,
                     &L,
                     NULL,
                     NULL,
                     NULL,
                     NULL,
                     NULL,
                     NULL};
    hl_ckpt_state st = {7, 112, 0x0123456789abcdefull, 0.1}, st2;
    CHECK(hl_ckpt_save(&io, w, &opt, ema, &st, &e) == HL_OK, "%s", e.msg);
    CHECK(exists("checkpoint-7/COMPLETE") && !exists("checkpoint-7.tmp"), "layout on disk");

    int64_t step;
    CHECK(hl_ckpt_latest(g_dir, &step, out, sizeof out, &e) == HL_OK && step == 7, "latest");
    CHECK(hl_ckpt_load(&io, out, w2, &opt2, ema2, &st2, &e) == HL_OK, "%s", e.msg);
    CHECK(!memcmp(w, w2, n * 4) && !memcmp(ema, ema2, n * 4), "weights and EMA");
    CHECK(!memcmp(opt.m, opt2.m, n * 4) && !memcmp(opt.v, opt2.v, n * 4) && opt2.step == 42,
          "moments");
    CHECK(st2.step == 7 && st2.samples == 112 && st2.config_hash == st.config_hash &&
              st2.loss == 0.1,
          "state");

    /* the transformer folder loads as a model folder */
    char tcfg[4096], tdir[4096];
    snprintf(tdir, sizeof tdir, "%s/transformer", out);
    snprintf(tcfg, sizeof tcfg, "%s/config.json", tdir);
    hl_dit *m = NULL;
    CHECK(hl_dit_load(tcfg, tdir, &m, &e) == HL_OK, "%s", e.msg);
    if (m) {
        const hl_param *q = hl_params_find(&L, "blocks.1.attn2.to_v.weight");
        CHECK(!memcmp(m->blocks[1].attn2.to_v_w.data, w + q->offset, (size_t)q->numel * 4),
              "loaded weights");
        q = hl_params_find(&L, "blocks.0.scale_shift_table");
        CHECK(!memcmp(m->blocks[0].scale_shift_table, w + q->offset, (size_t)q->numel * 4),
              "loaded table");
    }
    hl_dit_free(m);

    /* a damaged state.json names its file and key */
    char sp[4096];
    snprintf(sp, sizeof sp, "%s/state.json", out);
    char *text = read_text(sp);
    char *hit = text ? strstr(text, "\"samples\": ") : NULL;
    if (hit) {
        memcpy(hit + 11, "-", 1);
        FILE *f = fopen(sp, "w");
        fputs(text, f);
        fclose(f);
        CHECK(hl_ckpt_load(&io, out, w2, &opt2, ema2, &st2, &e) != HL_OK &&
                  strstr(e.msg, "state.json") && strstr(e.msg, "samples"),
              "bad state: %s", e.msg);
    }
    free(text);
    /* a version 1 state (it held the generator's words) is refused by name */
    text = read_text(sp);
    hit = text ? strstr(text, "\"version\": 2") : NULL;
    if (hit) {
        hit[11] = '1';
        FILE *f = fopen(sp, "w");
        fputs(text, f);
        fclose(f);
        CHECK(hl_ckpt_load(&io, out, w2, &opt2, ema2, &st2, &e) != HL_OK &&
                  strstr(e.msg, "'version'"),
              "version 1 state: %s", e.msg);
    }
    CHECK(hit != NULL, "state.json has version 2");
    free(text);

    free(config_text);
    free(w), free(w2), free(ema), free(ema2);
    hl_adamw_free(&opt);
    hl_adamw_free(&opt2);
    hl_params_free(&L);
}

static void make_checkpoint(const hl_ckpt_io *io, int64_t step) {
    hl_error e = {0};
    float w[3] = {1, 2, (float)step};
    hl_adamw opt;
    hl_adamw_init(&opt, 3, &e);
    hl_ckpt_state st = {0};
    st.step = step;
    CHECK(hl_ckpt_save(io, w, &opt, NULL, &st, &e) == HL_OK, "%s", e.msg);
    hl_adamw_free(&opt);
}

static void test_latest_clean_prune(void) {
    hl_error e = {0};
    char out[4096], p[4096];
    sub(p, "small");
    hl_param prm = {.name = "w", .ndim = 1, .shape = {3}, .offset = 0, .numel = 3};
    hl_params L = {&prm, 1, 3};
    hl_ckpt_io io = {p,
                     "transformer",
                     "diffusion_pytorch_model.safetensors",
                     NULL,
                     &L,
                     NULL,
                     NULL,
                     NULL,
                     NULL,
                     NULL,
                     NULL};
    int64_t step;
    CHECK(hl_ckpt_latest(p, &step, out, sizeof out, &e) == HL_OK && step == -1,
          "no folder: no checkpoint");
    for (int s = 1; s <= 5; s++) make_checkpoint(&io, s * 10);
    /* an incomplete newer one (no marker) and a leftover .tmp are not picked */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/checkpoint-60/transformer %s/checkpoint-70.tmp", p, p);
    CHECK(system(cmd) == 0, "mkdir");
    CHECK(hl_ckpt_latest(p, &step, out, sizeof out, &e) == HL_OK && step == 50, "latest %lld",
          (long long)step);
    int removed = 0;
    CHECK(hl_ckpt_clean(p, &removed, &e) == HL_OK && removed == 2, "clean removed %d", removed);
    CHECK(!exists("small/checkpoint-60") && !exists("small/checkpoint-70.tmp") &&
              exists("small/checkpoint-50/COMPLETE"),
          "clean removed the right ones");
    CHECK(hl_ckpt_prune(p, 2, &e) == HL_OK, "%s", e.msg);
    CHECK(!exists("small/checkpoint-10") && !exists("small/checkpoint-30") &&
              exists("small/checkpoint-40/COMPLETE") && exists("small/checkpoint-50/COMPLETE"),
          "prune keeps the newest 2");
    /* the numeric order, not the name order */
    make_checkpoint(&io, 100);
    CHECK(hl_ckpt_latest(p, &step, out, sizeof out, &e) == HL_OK && step == 100, "100 > 50");
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/helios_test_ckpt_XXXXXX");
    if (!mkdtemp(g_dir)) return 2;
    test_roundtrip_dit();
    test_latest_clean_prune();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_done("test_train_ckpt");
}
