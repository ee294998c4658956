/* Saving and loading LoRA adapters as safetensors (train/lora.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "train/lora.h"

#define SUFFIX_A ".lora_A.weight"
#define SUFFIX_B ".lora_B.weight"

/* A growable string (metadata values). */
typedef struct str {
    char *p;
    size_t n, cap;
    int oom;
} str;

static void add(str *s, const char *t) {
    size_t k = strlen(t);
    if (s->oom) return;
    if (s->n + k + 1 > s->cap) {
        size_t cap = 2 * s->cap + k + 64;
        char *q = realloc(s->p, cap);
        if (!q) {
            s->oom = 1;
            return;
        }
        s->p = q, s->cap = cap;
    }
    memcpy(s->p + s->n, t, k + 1);
    s->n += k;
}

/* The module name of target i (its A row's name without the prefix and suffix) into buf. */
static void target_module(const hl_lora *l, size_t i, char *buf, size_t n) {
    const char *name = l->layout.p[2 * i].name + strlen(HL_LORA_PREFIX);
    size_t len = strlen(name) - strlen(SUFFIX_A);
    if (len >= n) len = n - 1;
    memcpy(buf, name, len);
    buf[len] = '\0';
}

hl_status hl_lora_save(const char *path, const hl_lora *l, const float *ad, hl_error *err) {
    hl_st_entry *e = calloc(l->layout.n ? l->layout.n : 1, sizeof *e);
    str targets = {0}, peft = {0};
    char rank[32], alpha[64], num[96], module[160];
    snprintf(rank, sizeof rank, "%d", l->rank);
    snprintf(alpha, sizeof alpha, "%.17g", l->alpha);
    snprintf(num, sizeof num, "{\"transformer.r\": %d, \"transformer.lora_alpha\": %.17g, ",
             l->rank, l->alpha);
    add(&peft, num);
    add(&peft, "\"transformer.init_lora_weights\": true, \"transformer.target_modules\": [");
    for (size_t i = 0; i < l->n_targets; i++) {
        target_module(l, i, module, sizeof module);
        if (i) add(&targets, ","), add(&peft, ", ");
        add(&targets, module);
        add(&peft, "\""), add(&peft, module), add(&peft, "\"");
    }
    add(&peft, "]}");
    hl_status st;
    if (!e || targets.oom || peft.oom) {
        st = hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    } else {
        for (size_t i = 0; i < l->layout.n; i++) {
            const hl_param *p = &l->layout.p[i];
            e[i].name = p->name;
            e[i].t = hl_tensor_make((void *)(ad + p->offset), HL_F32, p->ndim, p->shape);
        }
        const char *meta[] = {"format",
                              "pt",
                              "helios.lora.rank",
                              rank,
                              "helios.lora.alpha",
                              alpha,
                              "helios.lora.targets",
                              targets.p ? targets.p : "",
                              "lora_adapter_metadata",
                              peft.p,
                              NULL};
        st = hl_st_write(path, e, l->layout.n, meta, err);
    }
    free(e), free(targets.p), free(peft.p);
    return st;
}

/* ---- load -------------------------------------------------------------------------------- */

/* The module a tensor name adapts ("transformer." prefix optional) into buf, and which matrix
 * (0: A, 1: B); -1 when the name is not an adapter's. */
static int split_name(const char *name, char *buf, size_t n) {
    const size_t pre = strlen(HL_LORA_PREFIX);
    if (!strncmp(name, HL_LORA_PREFIX, pre)) name += pre;
    size_t len = strlen(name), k = strlen(SUFFIX_A);
    int which = len > k && !strcmp(name + len - k, SUFFIX_A)   ? 0
                : len > k && !strcmp(name + len - k, SUFFIX_B) ? 1
                                                               : -1;
    if (which < 0 || len - k >= n) return -1;
    memcpy(buf, name, len - k);
    buf[len - k] = '\0';
    return which;
}

/* Rank and alpha: helios' metadata, else the rank of the first lora_B and diffusers' alpha, else
 * alpha = rank. */
static hl_status read_hyper(const hl_safetensors *f, int *rank, double *alpha, hl_error *err) {
    const char *r = hl_st_meta(f, "helios.lora.rank"), *a = hl_st_meta(f, "helios.lora.alpha");
    char *end;
    if (r) {
        errno = 0;
        long v = strtol(r, &end, 10);
        if (errno || *end || end == r || v < 1 || v > HL_LORA_MAX_RANK)
            return hl_fail(err, HELIOS_ERR_FORMAT,
                           "%s: metadata 'helios.lora.rank' = '%s' is not a rank", f->path, r);
        *rank = (int)v;
    } else {
        *rank = 0;
        for (size_t i = 0; i < f->n && !*rank; i++) {
            char module[160];
            const hl_st_tensor *t = &f->tensors[i];
            if (split_name(t->name, module, sizeof module) == 1 && t->ndim >= 2)
                *rank = (int)(t->shape[1] >= 1 && t->shape[1] <= HL_LORA_MAX_RANK ? t->shape[1]
                                                                                  : 0);
        }
        if (!*rank)
            return hl_fail(err, HELIOS_ERR_FORMAT, "%s: no lora_B tensor gives the rank", f->path);
    }
    *alpha = *rank;
    if (a) {
        *alpha = strtod(a, &end);
        if (*end || end == a || !(*alpha > 0.0) || !isfinite(*alpha))
            return hl_fail(err, HELIOS_ERR_FORMAT,
                           "%s: metadata 'helios.lora.alpha' = '%s' is not a positive number",
                           f->path, a);
    } else if ((a = hl_st_meta(f, "lora_adapter_metadata")) != NULL) {
        hl_json *j = NULL;
        double v;
        if (hl_json_parse(a, strlen(a), &j, NULL) == HL_OK &&
            hl_json_get_double(j, "transformer.lora_alpha", &v) == 0 && v > 0.0 && isfinite(v))
            *alpha = v;
        hl_json_free(j);
    }
    return HL_OK;
}

hl_status hl_lora_load(const char *path, const hl_params *model, const float *w0, hl_lora *l,
                       float **ad, hl_error *err) {
    memset(l, 0, sizeof *l);
    *ad = NULL;
    hl_safetensors *f = NULL;
    HL_TRY(hl_st_open(path, &f, err));
    int rank = 0;
    double alpha = 0.0;
    hl_status st = read_hyper(f, &rank, &alpha, err);
    /* the modules, in file order, each named by its lora_A; every tensor must be an adapter of an
     * eligible model weight, with its pair */
    char **mods = calloc(f->n ? f->n : 1, sizeof *mods);
    size_t n_mods = 0;
    if (!mods && st == HL_OK) st = hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    for (size_t i = 0; i < f->n && st == HL_OK; i++) {
        char module[160], wname[168];
        const char *name = f->tensors[i].name;
        int which = split_name(name, module, sizeof module);
        if (which < 0) {
            st = hl_fail(err, HELIOS_ERR_FORMAT,
                         "%s: tensor '%s' is not a LoRA adapter (<module>.lora_A.weight or "
                         "<module>.lora_B.weight)",
                         path, name);
            break;
        }
        snprintf(wname, sizeof wname, "%s.weight", module);
        const hl_param *p = hl_params_find(model, wname);
        if (!p || !hl_lora_eligible(p)) {
            st = hl_fail(err, HELIOS_ERR_FORMAT,
                         "%s: tensor '%s': the model has no linear or patch-embedding weight '%s'",
                         path, name, wname);
            break;
        }
        /* its pair must be there too (with or without the prefix) */
        char pair[200];
        const char *other = which ? SUFFIX_A : SUFFIX_B;
        snprintf(pair, sizeof pair, HL_LORA_PREFIX "%s%s", module, other);
        if (!hl_st_find(f, pair) && !hl_st_find(f, pair + strlen(HL_LORA_PREFIX))) {
            st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: tensor '%s' has no '%s'", path, name, pair);
            break;
        }
        if (which == 0) {
            for (size_t k = 0; k < n_mods && st == HL_OK; k++)
                if (!strcmp(mods[k], module))
                    st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: tensor '%s': '%s' adapted twice",
                                 path, name, module);
            if (st == HL_OK && !(mods[n_mods++] = strdup(module)))
                st = hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
        }
    }
    if (st == HL_OK && n_mods == 0)
        st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: no LoRA adapter tensors", path);
    if (st == HL_OK && f->n != 2 * n_mods)
        st = hl_fail(err, HELIOS_ERR_FORMAT,
                     "%s: %zu tensors for %zu adapted modules (each needs one lora_A and one "
                     "lora_B)",
                     path, f->n, n_mods);
    if (st == HL_OK) {
        char **pat = realloc(mods, (n_mods + 1) * sizeof *mods);
        if (pat) mods = pat, mods[n_mods] = NULL;
        st = pat ? hl_lora_new(l, model, w0, rank, alpha, (const char *const *)mods, err)
                 : hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
        if (st != HL_OK) hl_error_prefix(err, "%s", path);
    }
    if (st == HL_OK &&
        !(*ad = calloc((size_t)(l->layout.total ? l->layout.total : 1), sizeof **ad)))
        st = hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", path);
    for (size_t i = 0; st == HL_OK && i < l->layout.n; i++) {
        const hl_param *p = &l->layout.p[i];
        const hl_st_tensor *t = hl_st_find(f, p->name);
        if (!t) t = hl_st_find(f, p->name + strlen(HL_LORA_PREFIX));
        char want[128], got[128];
        if (!t) {
            st = hl_fail(err, HELIOS_ERR_MISSING, "%s: tensor '%s' is missing", path, p->name);
        } else if (t->ndim != p->ndim || memcmp(t->shape, p->shape, (size_t)p->ndim * 8)) {
            st = hl_fail(err, HELIOS_ERR_SHAPE,
                         "%s: tensor '%s': shape %s, expected %s for rank %d and the model's "
                         "weight",
                         path, t->name, hl_shape_str(t->ndim, t->shape, got, sizeof got),
                         hl_shape_str(p->ndim, p->shape, want, sizeof want), rank);
        } else {
            float *v = NULL;
            st = hl_st_read_f32(f, t->name, p->numel, &v, err);
            if (st == HL_OK) memcpy(*ad + p->offset, v, (size_t)p->numel * sizeof *v);
            free(v);
        }
    }
    for (size_t k = 0; k < n_mods; k++) free(mods[k]);
    free(mods);
    hl_st_close(f);
    if (st != HL_OK) {
        free(*ad);
        *ad = NULL;
        hl_lora_free(l);
    }
    return st;
}
