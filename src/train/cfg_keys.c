#include "train/cfg_keys.h"

#include <stdio.h>
#include <string.h>

#include "core/file.h"

hl_status hl_cfg_bad(const hl_cfg_keys *k, const char *key, const char *why) {
    char path[128];
    snprintf(path, sizeof path, "%s.%s", k->prefix, key);
    return hl_fail_key(k->err, HELIOS_ERR_INVALID_ARG, k->file, path, "%s", why);
}

hl_status hl_cfg_only(const hl_cfg_keys *k, const char *const *known, size_t n) {
    for (size_t i = 0; i < k->s->n; i++) {
        size_t j = 0;
        while (j < n && strcmp(k->s->keys[i], known[j])) j++;
        if (j == n)
            return hl_cfg_bad(k, k->s->keys[i],
                              "is not a setting of this objective (docs/training.md)");
    }
    return HL_OK;
}

hl_status hl_cfg_num(const hl_cfg_keys *k, const char *key, double lo, double hi, double *out) {
    const hl_json *v = hl_json_get(k->s, key);
    if (!v) return HL_OK;
    if (v->type != HL_JSON_NUMBER || !(v->number >= lo && v->number <= hi)) {
        char why[96];
        snprintf(why, sizeof why, "must be a number in [%g, %g]", lo, hi);
        return hl_cfg_bad(k, key, why);
    }
    *out = v->number;
    return HL_OK;
}

hl_status hl_cfg_int(const hl_cfg_keys *k, const char *key, int64_t lo, int64_t hi, int *out) {
    const hl_json *v = hl_json_get(k->s, key);
    if (!v) return HL_OK;
    if (v->type != HL_JSON_NUMBER || !v->is_int || v->number < (double)lo ||
        v->number > (double)hi) {
        char why[96];
        snprintf(why, sizeof why, "must be an integer in [%lld, %lld]", (long long)lo,
                 (long long)hi);
        return hl_cfg_bad(k, key, why);
    }
    *out = (int)v->number;
    return HL_OK;
}

hl_status hl_cfg_bool(const hl_cfg_keys *k, const char *key, bool *out) {
    const hl_json *v = hl_json_get(k->s, key);
    if (!v) return HL_OK;
    if (v->type != HL_JSON_BOOL) return hl_cfg_bad(k, key, "must be true or false");
    *out = v->boolean;
    return HL_OK;
}

hl_status hl_cfg_str(const hl_cfg_keys *k, const char *key, const char **out) {
    const hl_json *v = hl_json_get(k->s, key);
    if (!v) return HL_OK;
    const char *s = hl_json_get_string(k->s, key);
    if (!s || !*s) return hl_cfg_bad(k, key, "must be a non-empty string");
    *out = s;
    return HL_OK;
}

hl_status hl_cfg_nums(const hl_cfg_keys *k, const char *key, int n, double lo, double hi,
                      double *out) {
    const hl_json *v = hl_json_get(k->s, key);
    if (!v) return HL_OK;
    char why[96];
    snprintf(why, sizeof why, "must be an array of %d numbers in [%g, %g]", n, lo, hi);
    if (v->type != HL_JSON_ARRAY || (int)v->n != n) return hl_cfg_bad(k, key, why);
    for (int i = 0; i < n; i++) {
        const hl_json *e = &v->items[i];
        if (e->type != HL_JSON_NUMBER || !(e->number >= lo && e->number <= hi))
            return hl_cfg_bad(k, key, why);
        out[i] = e->number;
    }
    return HL_OK;
}

hl_status hl_cfg_dataset(const hl_cfg_keys *parent, const char *data, hl_dataset_config *dc,
                         int *text_len, const char **cache) {
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s.dataset", parent->prefix);
    hl_cfg_keys k = {hl_json_get(parent->s, "dataset"), parent->file, prefix, parent->err};
    hl_dataset_config_default(dc);
    hl_dataset_config_set_source(dc, strcmp(data, "procedural") ? data : "world");
    int w = 64, h = 64, frames = 66, clips = 64, seed = 0, L = 512;
    *cache = NULL;
    if (k.s) {
        if (k.s->type != HL_JSON_OBJECT) return hl_cfg_bad(parent, "dataset", "must be an object");
        static const char *const known[] = {"width", "height",   "frames", "clips",
                                            "seed",  "text_len", "cache"};
        HL_TRY(hl_cfg_only(&k, known, 7));
        HL_TRY(hl_cfg_int(&k, "width", 16, 4096, &w));
        HL_TRY(hl_cfg_int(&k, "height", 16, 4096, &h));
        HL_TRY(hl_cfg_int(&k, "frames", 33, 33 * 64, &frames));
        HL_TRY(hl_cfg_int(&k, "clips", 1, 1 << 20, &clips));
        HL_TRY(hl_cfg_int(&k, "seed", 0, 2147483647, &seed));
        HL_TRY(hl_cfg_int(&k, "text_len", 1, 4096, &L));
        if (hl_json_get(k.s, "cache") && !(*cache = hl_json_get_string(k.s, "cache")))
            return hl_cfg_bad(&k, "cache", "must be a string (a folder)");
    }
    if (frames % 33 || w % 16 || h % 16)
        return hl_cfg_bad(&k, "frames",
                          "must be a multiple of 33 (frames) with width and height "
                          "multiples of 16");
    dc->width = w, dc->height = h, dc->frames = frames, dc->n_clips = clips;
    dc->seed = (uint64_t)seed;
    *text_len = L;
    return HL_OK;
}

hl_status hl_cfg_model_pyramid(const char *model, hl_sched_config *sc, bool *found, hl_error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", model ? model : "");
    *found = model && hl_file_is_regular(path);
    if (!*found) return HL_OK;
    hl_json *j = NULL;
    HL_TRY(hl_json_load_file(path, &j, err));
    hl_sched_config m;
    hl_status st = hl_sched_config_from_json(j, sc->kind, &m, err);
    hl_json_free(j);
    if (st != HL_OK) {
        hl_error_prefix(err, "%s", path);
        return st;
    }
    sc->stages = m.stages;
    sc->n_stage_range = m.n_stage_range;
    memcpy(sc->stage_range, m.stage_range, sizeof sc->stage_range);
    sc->gamma = m.gamma;
    return HL_OK;
}
