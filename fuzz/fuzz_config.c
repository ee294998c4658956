/* libFuzzer target: the code that turns a model folder's JSON into config structs. The first
 * byte picks the reader (byte % 6), the rest is the file:
 *   0 transformer/config.json   hl_dit_config_parse
 *   1 vae/config.json           hl_vae_config_parse
 *   2 text_encoder/config.json  hl_umt5_config_parse
 *   3 scheduler_config.json     hl_sched_config_from_json, then hl_sched_init and the timesteps
 *                               of every stage (what the config values feed straight into)
 *   4 model_index.json          helios_pipeline_load on a folder holding that file and the tiny
 *                               model's components (links to HELIOS_FUZZ_MODEL), so the load-time
 *                               model check runs whole: classes, flags, components, recipe
 *   5 *.safetensors.index.json  hl_weights_open on a folder with two tiny shards: a.safetensors
 *                               (tensors x, y) and b.safetensors (z)
 * Readers 4 and 5 go through real files in a temporary folder (removed at exit). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dit/dit.h"
#include "helios.h"
#include "io/json.h"
#include "io/weights.h"
#include "sample/schedule.h"
#include "text/umt5.h"
#include "vae/vae.h"

static char g_dir[] = "/tmp/helios_fuzz_config_XXXXXX";
static char g_index[128], g_model_index[128], g_model_dir[128];
static helios_session *g_session;

static void put(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* A safetensors file with F32[1] tensors of the given names. */
static void put_shard(const char *name, const char *const *tensors, int n) {
    char header[256] = "{";
    for (int i = 0; i < n; i++)
        snprintf(header + strlen(header), sizeof header - strlen(header),
                 "%s\"%s\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [%d, %d]}",
                 i ? ", " : "", tensors[i], 4 * i, 4 * i + 4);
    strcat(header, "}");
    size_t hl = strlen(header);
    unsigned char buf[512] = {0};
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    char path[160];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    put(path, buf, 8 + hl + 4 * (size_t)n);
}

static const char *const k_components[] = {"scheduler", "text_encoder", "tokenizer", "transformer",
                                           "vae"};

static void cleanup(void) {
    char p[160];
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", g_model_dir, k_components[i]);
        unlink(p);
    }
    const char *files[] = {"a.safetensors", "b.safetensors", "model.safetensors.index.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, files[i]);
        unlink(p);
    }
    unlink(g_model_index);
    rmdir(g_model_dir);
    rmdir(g_dir);
    helios_session_free(g_session);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        exit(1);
    }
    const char *a[] = {"x", "y"}, *b[] = {"z"};
    put_shard("a.safetensors", a, 2);
    put_shard("b.safetensors", b, 1);
    snprintf(g_index, sizeof g_index, "%s/model.safetensors.index.json", g_dir);
    snprintf(g_model_dir, sizeof g_model_dir, "%s/model", g_dir);
    snprintf(g_model_index, sizeof g_model_index, "%s/model_index.json", g_model_dir);
    if (mkdir(g_model_dir, 0777) != 0) {
        perror(g_model_dir);
        exit(1);
    }
    for (int i = 0; i < 5; i++) {
        char src[4096], dst[160];
        snprintf(src, sizeof src, "%s/%s", HELIOS_FUZZ_MODEL, k_components[i]);
        snprintf(dst, sizeof dst, "%s/%s", g_model_dir, k_components[i]);
        if (symlink(src, dst) != 0) {
            perror(dst);
            exit(1);
        }
    }
    helios_session_params sp;
    helios_session_params_init(&sp);
    sp.n_threads = 1;
    if (helios_session_new(&sp, &g_session) != HELIOS_OK) exit(1);
    atexit(cleanup);
    return 0;
}

static void check_sched(const hl_sched_config *cfg) {
    hl_sched s;
    hl_error err;
    if (hl_sched_init(&s, cfg, &err) != HL_OK) return;
    for (int stage = 0; stage < cfg->stages; stage++) {
        for (int n = 1; n <= 3; n += 2) {
            hl_schedule sc = {0};
            if (hl_sched_set_timesteps(&s, n, stage, 0.7, stage == 0, &sc, &err) == HL_OK) {
                if (sc.n < 1 || !sc.timesteps || !sc.sigmas) abort();
                hl_schedule_free(&sc);
            }
        }
        double alpha, beta;
        hl_sched_renoise_coeffs(&s, stage, &alpha, &beta);
    }
    if (cfg->kind != HL_SCHED_DMD) {
        double in[3];
        hl_sched_base_sigmas(3, in);
        hl_schedule sc = {0};
        if (hl_sched_set_timesteps_sigmas(&s, 3, in, 0.7, &sc, &err) == HL_OK)
            hl_schedule_free(&sc);
    }
    hl_sched_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int which = data[0] % 6;
    const char *text = (const char *)data + 1;
    const size_t len = size - 1;
    hl_error err;

    if (which == 4) { /* model_index.json, through the public API */
        put(g_model_index, text, len);
        helios_pipeline_params pp;
        helios_pipeline_params_init(&pp);
        pp.model_dir = g_model_dir;
        helios_pipeline *p = NULL;
        helios_status st = helios_pipeline_load(g_session, &pp, &p);
        if (st == HELIOS_OK) {
            if (!p || (unsigned)helios_pipeline_recipe(p) > HELIOS_RECIPE_DISTILLED) abort();
        } else if (p || !helios_session_error(g_session)[0] ||
                   (st != HELIOS_ERR_FORMAT && st != HELIOS_ERR_UNSUPPORTED &&
                    st != HELIOS_ERR_MISSING)) {
            abort(); /* a failure leaves nothing, says why, and blames the input */
        }
        helios_pipeline_free(p);
        return 0;
    }
    if (which == 5) { /* the sharded index */
        put(g_index, text, len);
        hl_weights *w = NULL;
        if (hl_weights_open(g_index, &w, &err) != HL_OK) {
            if (w) abort();
            return 0;
        }
        size_t total = 0;
        for (size_t f = 0; f < w->n_files; f++) total += w->files[f]->n;
        /* at most the seed's two shards and three tensors; an empty weight_map is a valid empty
         * checkpoint (test_weights), so no files is fine */
        if (w->n_files > 2 || total > 3) abort();
        const char *names[] = {"x", "y", "z"};
        for (int i = 0; i < 3; i++) {
            const char *file = NULL;
            const hl_st_tensor *t = hl_weights_find(w, names[i], &file);
            if (t && (!file || t->nbytes != 4)) abort();
        }
        hl_weights_close(w);
        return 0;
    }

    hl_json *j = NULL;
    if (hl_json_parse(text, len, &j, &err) != HL_OK) return 0;
    hl_status st;
    switch (which) {
    case 0: {
        hl_dit_config c;
        st = hl_dit_config_parse(j, &c, &err);
        if (st == HL_OK && (c.dim != c.heads * c.head_dim ||
                            c.rope_dim[0] + c.rope_dim[1] + c.rope_dim[2] != c.head_dim))
            abort();
        break;
    }
    case 1: {
        hl_vae_config c;
        st = hl_vae_config_parse(j, &c, &err);
        break;
    }
    case 2: {
        hl_umt5_config c;
        st = hl_umt5_config_parse(j, &c, &err);
        break;
    }
    default: {
        hl_sched_config c;
        st = hl_sched_config_from_json(j, (hl_sched_kind)((data[0] / 6) % 3), &c, &err);
        if (st == HL_OK) check_sched(&c);
        break;
    }
    }
    if (st != HL_OK && st != HELIOS_ERR_FORMAT && st != HELIOS_ERR_UNSUPPORTED &&
        st != HELIOS_ERR_MISSING && st != HELIOS_ERR_OOM)
        abort();
    hl_json_free(j);
    return 0;
}
