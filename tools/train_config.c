#include "tools/train_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "train/train_loop.h"

/* clang-format off */
static const char *const k_keys[] = {
    "model", "init", "output", "component", "steps", "batch", "accumulation", "lr", "min_lr",
    "warmup", "schedule", "betas", "eps", "weight_decay", "clip", "ema", "ema_start", "seed", "threads",
    "checkpoint_every", "keep", "data", "objective", "validation_every", "lora",
};
/* clang-format on */
#define N_KEYS (sizeof k_keys / sizeof *k_keys)

static hl_status bad(const train_cfg *c, hl_error *err, const char *key, const char *why) {
    return hl_fail_key(err, HELIOS_ERR_INVALID_ARG, c->path, key, "%s", why);
}

/* A string member; absent keeps *out unless required. */
static hl_status get_str(const train_cfg *c, const char *key, bool required, const char **out,
                         hl_error *err) {
    const hl_json *v = hl_json_get(c->root, key);
    if (!v) return required ? bad(c, err, key, "is required") : HL_OK;
    if (v->type != HL_JSON_STRING) return bad(c, err, key, "must be a string");
    if (!v->len) return bad(c, err, key, "must not be empty");
    *out = v->string;
    return HL_OK;
}

static hl_status get_double(const train_cfg *c, const char *key, double lo, double hi, double *out,
                            hl_error *err) {
    const hl_json *v = hl_json_get(c->root, key);
    if (!v) return HL_OK;
    if (v->type != HL_JSON_NUMBER) return bad(c, err, key, "must be a number");
    if (!(v->number >= lo && v->number <= hi))
        return hl_fail_key(err, HELIOS_ERR_INVALID_ARG, c->path, key, "must be in [%g, %g] (is %g)",
                           lo, hi, v->number);
    *out = v->number;
    return HL_OK;
}

static hl_status get_i64(const train_cfg *c, const char *key, bool required, int64_t lo, int64_t hi,
                         int64_t *out, hl_error *err) {
    const hl_json *v = hl_json_get(c->root, key);
    if (!v) return required ? bad(c, err, key, "is required") : HL_OK;
    if (v->type != HL_JSON_NUMBER || !v->is_int) return bad(c, err, key, "must be an integer");
    if (v->integer < lo || v->integer > hi)
        return hl_fail_key(err, HELIOS_ERR_INVALID_ARG, c->path, key,
                           "must be in [%lld, %lld] (is %lld)", (long long)lo, (long long)hi,
                           (long long)v->integer);
    *out = v->integer;
    return HL_OK;
}

static hl_status get_int(const train_cfg *c, const char *key, int lo, int hi, int *out,
                         hl_error *err) {
    int64_t v = *out;
    HL_TRY(get_i64(c, key, false, lo, hi, &v, err));
    *out = (int)v;
    return HL_OK;
}

/* One of names[0..n) under key: *out its index (absent: kept). */
static hl_status get_enum(const train_cfg *c, const char *key, const char *const *names, int n,
                          int *out, hl_error *err) {
    const char *s = NULL;
    HL_TRY(get_str(c, key, false, &s, err));
    if (!s) return HL_OK;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return HL_OK;
        }
    char list[256] = "";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"%s\"", i ? ", " : "",
                 names[i]);
    return hl_fail_key(err, HELIOS_ERR_INVALID_ARG, c->path, key, "is \"%s\"; expected one of %s",
                       s, list);
}

static hl_status check_keys(const train_cfg *c, hl_error *err) {
    if (c->root->type != HL_JSON_OBJECT)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: the configuration must be a JSON object",
                       c->path);
    for (size_t i = 0; i < c->root->n; i++) {
        size_t k = 0;
        while (k < N_KEYS && strcmp(c->root->keys[i], k_keys[k])) k++;
        if (k == N_KEYS)
            return bad(c, err, c->root->keys[i],
                       "is not a key of the training configuration "
                       "(docs/training.md lists them)");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->root->keys[i], c->root->keys[j]))
                return bad(c, err, c->root->keys[i], "appears twice");
    }
    return HL_OK;
}

/* "lora": {"rank" (1..4096, required), "alpha" (> 0, default rank), "targets" (patterns),
 * "init" (an adapter file)}. */
static hl_status read_lora(train_cfg *c, hl_error *err) {
    const hl_json *l = hl_json_get(c->root, "lora");
    if (!l) return HL_OK;
    if (l->type != HL_JSON_OBJECT) return bad(c, err, "lora", "must be an object");
    static const char *const known[] = {"rank", "alpha", "targets", "init"};
    for (size_t i = 0; i < l->n; i++) {
        size_t k = 0;
        while (k < 4 && strcmp(l->keys[i], known[k])) k++;
        if (k == 4) {
            char key[300];
            snprintf(key, sizeof key, "lora.%s", l->keys[i]);
            return bad(c, err, key, "is not a key (rank, alpha, targets, init)");
        }
    }
    const hl_json *r = hl_json_get(l, "rank"), *a = hl_json_get(l, "alpha");
    if (!r) return bad(c, err, "lora.rank", "is required");
    if (r->type != HL_JSON_NUMBER || !r->is_int || r->integer < 1 || r->integer > 4096)
        return bad(c, err, "lora.rank", "must be an integer in [1, 4096]");
    c->lora_rank = (int)r->integer;
    c->lora_alpha = c->lora_rank;
    if (a && (a->type != HL_JSON_NUMBER || !(a->number > 0 && a->number <= 1e6)))
        return bad(c, err, "lora.alpha", "must be a number in (0, 1e6]");
    if (a) c->lora_alpha = a->number;
    const hl_json *t = hl_json_get(l, "targets");
    if (t) {
        if (t->type != HL_JSON_ARRAY || t->n < 1 || t->n > 256)
            return bad(c, err, "lora.targets", "must be an array of 1 to 256 strings");
        for (size_t i = 0; i < t->n; i++)
            if (t->items[i].type != HL_JSON_STRING || !t->items[i].len)
                return bad(c, err, "lora.targets", "must hold non-empty strings");
        c->lora_targets = t;
    }
    const hl_json *in = hl_json_get(l, "init");
    if (in && (in->type != HL_JSON_STRING || !in->len))
        return bad(c, err, "lora.init", "must be a file name");
    if (in) c->lora_init = in->string;
    return HL_OK;
}

static hl_status read_all(train_cfg *c, hl_error *err) {
    HL_TRY(check_keys(c, err));
    HL_TRY(get_str(c, "model", true, &c->model, err));
    static const char *const inits[] = {"random", "model"};
    int init = 0, sched = 0;
    HL_TRY(get_enum(c, "init", inits, 2, &init, err));
    c->init = (train_init)init;
    HL_TRY(get_str(c, "output", true, &c->output, err));
    static const char *const comps[] = {"transformer", "vae", "text_encoder"};
    int comp = 0;
    HL_TRY(get_enum(c, "component", comps, 3, &comp, err));
    c->component = comps[comp];
    HL_TRY(get_i64(c, "steps", true, 0, (int64_t)1 << 40, &c->steps, err));
    HL_TRY(get_int(c, "batch", 1, 1 << 20, &c->batch, err));
    HL_TRY(get_int(c, "accumulation", 1, 1 << 20, &c->accumulation, err));
    HL_TRY(get_double(c, "lr", 0, 10, &c->lr, err));
    HL_TRY(get_double(c, "min_lr", 0, 10, &c->min_lr, err));
    if (c->min_lr > c->lr) return bad(c, err, "min_lr", "must not exceed lr");
    HL_TRY(get_i64(c, "warmup", false, 0, (int64_t)1 << 40, &c->warmup, err));
    static const char *const scheds[] = {"constant", "cosine"};
    HL_TRY(get_enum(c, "schedule", scheds, 2, &sched, err));
    c->schedule = (train_schedule)sched;
    const hl_json *b = hl_json_get(c->root, "betas");
    if (b) {
        if (b->type != HL_JSON_ARRAY || b->n != 2 || b->items[0].type != HL_JSON_NUMBER ||
            b->items[1].type != HL_JSON_NUMBER)
            return bad(c, err, "betas", "must be an array of two numbers");
        for (int i = 0; i < 2; i++) {
            double v = b->items[i].number;
            if (!(v >= 0 && v < 1)) {
                char key[16];
                snprintf(key, sizeof key, "betas[%d]", i);
                return bad(c, err, key, "must be in [0, 1)");
            }
            c->betas[i] = v;
        }
    }
    HL_TRY(get_double(c, "eps", 1e-30, 1, &c->eps, err));
    if (c->eps <= 0) return bad(c, err, "eps", "must be > 0");
    HL_TRY(get_double(c, "weight_decay", 0, 1e3, &c->weight_decay, err));
    HL_TRY(get_double(c, "clip", 0, 1e30, &c->clip, err));
    HL_TRY(get_double(c, "ema", 0, 1, &c->ema, err));
    if (c->ema >= 1) return bad(c, err, "ema", "must be < 1 (0 turns the EMA off)");
    HL_TRY(get_i64(c, "ema_start", false, 0, INT64_MAX, &c->ema_start, err));
    int64_t seed = 0;
    HL_TRY(get_i64(c, "seed", false, 0, INT64_MAX, &seed, err));
    c->seed = (uint64_t)seed;
    HL_TRY(get_int(c, "threads", 0, 4096, &c->threads, err));
    HL_TRY(get_i64(c, "checkpoint_every", false, 0, (int64_t)1 << 40, &c->checkpoint_every, err));
    HL_TRY(get_int(c, "keep", 0, 1 << 20, &c->keep, err));
    HL_TRY(get_str(c, "data", false, &c->data, err));
    HL_TRY(get_i64(c, "validation_every", false, 0, (int64_t)1 << 40, &c->validation_every, err));
    HL_TRY(read_lora(c, err));
    const hl_json *o = hl_json_get(c->root, "objective");
    if (!o) return bad(c, err, "objective", "is required (an object with a \"type\")");
    if (o->type != HL_JSON_OBJECT) return bad(c, err, "objective", "must be an object");
    const hl_json *t = hl_json_get(o, "type");
    if (!t) return bad(c, err, "objective.type", "is required");
    if (t->type != HL_JSON_STRING) return bad(c, err, "objective.type", "must be a string");
    c->objective = o;
    c->objective_type = t->string;
    return HL_OK;
}

hl_status train_cfg_load(const char *path, train_cfg *c, hl_error *err) {
    memset(c, 0, sizeof *c);
    c->path = path;
    c->init = TRAIN_INIT_RANDOM;
    c->component = "transformer";
    c->batch = c->accumulation = 1;
    c->lr = 1e-4;
    c->schedule = TRAIN_SCHED_CONSTANT;
    c->betas[0] = 0.9, c->betas[1] = 0.999;
    c->eps = 1e-8;
    c->weight_decay = 0.01;
    c->clip = 1.0;
    c->keep = 2;
    c->data = "procedural";
    HL_TRY(hl_json_load_file(path, &c->root, err));
    hl_status st = read_all(c, err);
    if (st != HL_OK) train_cfg_free(c);
    return st;
}

void train_cfg_free(train_cfg *c) {
    hl_json_free(c->root);
    c->root = NULL;
}

static uint64_t hash_str(uint64_t h, const char *s) { return hl_hash_bytes(h, s, strlen(s) + 1); }

static uint64_t hash_json(uint64_t h, const hl_json *j) {
    char num[64];
    h = hl_hash_bytes(h, &(unsigned char){(unsigned char)j->type}, 1);
    switch (j->type) {
    case HL_JSON_BOOL: return hl_hash_bytes(h, &(unsigned char){j->boolean}, 1);
    case HL_JSON_NUMBER: snprintf(num, sizeof num, "%a", j->number); return hash_str(h, num);
    case HL_JSON_STRING: return hash_str(h, j->string);
    case HL_JSON_ARRAY:
    case HL_JSON_OBJECT:
        for (size_t i = 0; i < j->n; i++) {
            if (j->type == HL_JSON_OBJECT) h = hash_str(h, j->keys[i]);
            h = hash_json(h, &j->items[i]);
        }
        return h;
    default: return h;
    }
}

uint64_t train_cfg_hash(const train_cfg *c, const char *model_config) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%d|%s|%d|%d|%a|%a|%lld|%d|%lld|%a|%a|%a|%a|%a|%a|%llu|%s",
             (int)c->init, c->component, c->batch, c->accumulation, c->lr, c->min_lr,
             (long long)c->warmup, (int)c->schedule,
             c->schedule == TRAIN_SCHED_COSINE ? (long long)c->steps : -1LL, c->betas[0],
             c->betas[1], c->eps, c->weight_decay, c->clip, c->ema, (unsigned long long)c->seed,
             c->data);
    uint64_t h = hash_str(HL_HASH_INIT, buf);
    if (c->ema_start) { /* only when set: the runs before the key keep their hash */
        snprintf(buf, sizeof buf, "ema_start %lld", (long long)c->ema_start);
        h = hash_str(h, buf);
    }
    h = hash_str(h, model_config ? model_config : "");
    const hl_json *lora = hl_json_get(c->root, "lora");
    if (lora) h = hash_json(h, lora);
    return hash_json(h, c->objective);
}

static bool is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}

hl_status train_component_config(const train_cfg *c, const char *sub, char *cfg_path, char *dir,
                                 size_t n, char **text, hl_json **j, hl_error *err) {
    char t[4096];
    snprintf(t, sizeof t, "%s/%s", c->model, sub);
    if (is_dir(c->model) && is_dir(t)) snprintf(dir, n, "%s", t);
    else if (is_dir(c->model)) snprintf(dir, n, "%s", c->model);
    if (is_dir(c->model)) {
        snprintf(cfg_path, n, "%s/config.json", dir);
    } else { /* a config.json: the weights beside it */
        snprintf(cfg_path, n, "%s", c->model);
        const char *slash = strrchr(c->model, '/');
        if (slash) snprintf(dir, n, "%.*s", (int)(slash - c->model), c->model);
        else snprintf(dir, n, ".");
    }
    size_t len;
    hl_status st = hl_file_read_all(cfg_path, HL_FILE_MAX_CONFIG, "JSON config", text, &len, err);
    if (st != HL_OK) {
        hl_error_prefix(err, "%s: 'model' \"%s\"", c->path, c->model);
        return st;
    }
    *j = NULL;
    if ((st = hl_json_parse(*text, len, j, err)) != HL_OK) hl_error_prefix(err, "%s", cfg_path);
    return st;
}
