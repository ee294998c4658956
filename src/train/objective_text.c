/* The "mlm" objective (train/objective.h): masked-token prediction of the UMT5 encoder on the
 * dataset's captions (train/mlm.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "text/prompt_clean.h"
#include "text/spm.h"
#include "train/cfg_keys.h"
#include "train/dataset.h"
#include "train/mlm.h"
#include "train/objective.h"
#include "train/umt5_flat.h"

typedef struct caption {
    int64_t *ids;  /* [L] the tokenizer's ids, </s> included, no padding */
    int64_t *cand; /* [n] positions that may be chosen (not control pieces) */
    int64_t L, n;
} caption;

typedef struct text_obj {
    hl_umt5_flat f;
    hl_mlm_params mp;
    hl_backend *be;
    hl_error err;
    hl_ctx ctx;
    caption *caps;
    int64_t n_caps, max_L;
    int64_t *words;
    double mean_tokens;
    /* per-step buffers, max_L rows */
    int64_t *in, *pos, *target;
    float *out, *dout, *hsel, *dh;
} text_obj;

void hl_text_objective_destroy(void *p) {
    text_obj *o = p;
    if (!o) return;
    for (int64_t i = 0; o->caps && i < o->n_caps; i++) free(o->caps[i].ids), free(o->caps[i].cand);
    free(o->caps), free(o->words);
    free(o->in), free(o->pos), free(o->target);
    free(o->out), free(o->dout), free(o->hsel), free(o->dh);
    hl_umt5_flat_free(&o->f);
    hl_backend_free(o->be);
    free(o);
}

static bool is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}

/* The tokenizer folder: "objective.tokenizer", else MODEL/tokenizer (a model folder), else the
 * tokenizer/ beside a text encoder folder (MODEL/../tokenizer) or beside a config.json's folder. */
static hl_status find_tokenizer(const hl_cfg_keys *k, const hl_train_env *env, char *dir,
                                size_t n) {
    const char *key = NULL;
    HL_TRY(hl_cfg_str(k, "tokenizer", &key));
    if (key) {
        snprintf(dir, n, "%s", key);
        if (!is_dir(dir)) return hl_cfg_bad(k, "tokenizer", "is not a folder");
        return HL_OK;
    }
    const char *m = env->model;
    snprintf(dir, n, "%s/tokenizer", m);
    if (is_dir(dir)) return HL_OK;
    char up[4096];
    snprintf(up, sizeof up, "%s", m);
    for (int i = 0; i < 2; i++) { /* MODEL/.., then MODEL/../.. for a config.json */
        char *slash = strrchr(up, '/');
        if (slash) *slash = '\0';
        else snprintf(up, sizeof up, ".");
        snprintf(dir, n, "%s/tokenizer", up);
        if (is_dir(dir)) return HL_OK;
        if (!slash) break;
    }
    return hl_cfg_bad(k, "tokenizer",
                      "is not set and no tokenizer/ folder is next to 'model': set it to a folder "
                      "with spiece.model or tokenizer.json");
}

/* spiece.model when present, else tokenizer.json (as hl_text_encoder_open). */
static hl_status load_spm(const hl_cfg_keys *k, const char *dir, hl_spm **spm) {
    char path[4200];
    snprintf(path, sizeof path, "%s/spiece.model", dir);
    if (access(path, F_OK) == 0) return hl_spm_load(path, spm, k->err);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (access(path, F_OK) == 0) return hl_spm_load_tokenizer_json(path, spm, k->err);
    return hl_fail(k->err, HELIOS_ERR_MISSING,
                   "%s: 'objective.tokenizer' %s: neither spiece.model nor tokenizer.json", k->file,
                   dir);
}

/* The mask id: "objective.mask_id", else the last embedding row when the tokenizer never
 * produces it (vocab_size > its pieces: T5's extra-id slots), else the piece <extra_id_0>, else
 * the pad piece: the inputs here are never padded, and at inference padding is masked out of
 * attention and zeroed, so a pad row that learned "masked" changes no encoding. */
static hl_status choose_mask_id(const hl_cfg_keys *k, const hl_spm *spm, int vocab, text_obj *o) {
    int id = -1;
    const char *why = "objective.mask_id";
    HL_TRY(hl_cfg_int(k, "mask_id", 0, vocab - 1, &id));
    const hl_spm_info *in = hl_spm_get_info(spm);
    if (id < 0 && vocab > in->n_pieces) id = vocab - 1, why = "the last row, past the tokenizer";
    if (id < 0) {
        int e = hl_spm_piece_to_id(spm, "<extra_id_0>", 12);
        if (e != in->unk_id) id = e, why = "<extra_id_0>";
    }
    if (id < 0) id = in->pad_id, why = "the pad piece";
    if (id < 0)
        return hl_cfg_bad(k, "mask_id",
                          "is not set and the vocabulary has no free row, <extra_id_0> nor pad "
                          "piece: set it to an id the captions do not use");
    HL_INFO("mask id %d (%s)", id, why);
    o->mp.mask_id = id;
    return HL_OK;
}

/* The word pieces a random replacement is drawn from: every normal piece of the tokenizer. */
static hl_status collect_words(const hl_cfg_keys *k, const hl_spm *spm, text_obj *o) {
    int n = hl_spm_get_info(spm)->n_pieces;
    if (!(o->words = malloc(((size_t)n + 1) * sizeof *o->words)))
        return hl_fail(k->err, HELIOS_ERR_OOM, "mlm objective: out of memory");
    for (int id = 0; id < n; id++)
        if (hl_spm_piece_type(spm, id) == HL_SPM_NORMAL) o->words[o->mp.n_words++] = id;
    o->mp.words = o->words;
    if (!o->mp.n_words)
        return hl_fail(k->err, HELIOS_ERR_INVALID_ARG, "%s: the tokenizer has no word pieces",
                       k->file);
    return HL_OK;
}

/* Caption i -> its ids (the pipelines' cleaning and T5 tokenizer call, truncated to max_len,
 * </s> included, no padding) and candidate positions. */
static hl_status tokenize(const hl_cfg_keys *k, const hl_spm *spm, const char *text,
                          const char *source, int max_len, caption *c) {
    char *clean = NULL;
    size_t len = 0;
    int32_t *ids = malloc((size_t)max_len * sizeof *ids);
    int n_real = 0;
    hl_status st = ids ? hl_prompt_clean_n(text, strlen(text), &clean, &len)
                       : hl_fail(k->err, HELIOS_ERR_OOM, "mlm objective: out of memory");
    if (st == HL_OK) st = hl_spm_encode_t5(spm, clean, len, max_len, ids, NULL, &n_real, k->err);
    if (st == HL_OK) {
        c->L = n_real;
        c->ids = malloc((size_t)n_real * sizeof *c->ids);
        c->cand = malloc((size_t)n_real * sizeof *c->cand);
        if (!c->ids || !c->cand) st = hl_fail(k->err, HELIOS_ERR_OOM, "mlm: out of memory");
    }
    for (int i = 0; st == HL_OK && i < n_real; i++) {
        c->ids[i] = ids[i];
        if (hl_spm_piece_type(spm, ids[i]) != HL_SPM_CONTROL) c->cand[c->n++] = i;
    }
    if (st == HL_OK && !c->n)
        st = hl_fail(k->err, HELIOS_ERR_INVALID_ARG, "%s: the caption of %s has no tokens to mask",
                     k->file, source);
    free(clean), free(ids);
    return st;
}

/* "dataset": {clips, seed}: the captions of the world's clips or of a folder's videos. */
static hl_status read_captions(const hl_cfg_keys *parent, const hl_train_env *env,
                               const hl_spm *spm, int max_len, text_obj *o) {
    hl_cfg_keys k = {hl_json_get(parent->s, "dataset"), parent->file, "objective.dataset",
                     parent->err};
    int clips = 64, seed = 0;
    if (k.s) {
        if (k.s->type != HL_JSON_OBJECT) return hl_cfg_bad(parent, "dataset", "must be an object");
        static const char *const known[] = {"clips", "seed"};
        HL_TRY(hl_cfg_only(&k, known, 2));
        HL_TRY(hl_cfg_int(&k, "clips", 1, 1 << 20, &clips));
        HL_TRY(hl_cfg_int(&k, "seed", 0, 2147483647, &seed));
    }
    if (!strcmp(env->data, "synthetic"))
        return hl_fail(parent->err, HELIOS_ERR_INVALID_ARG,
                       "%s: 'data' \"synthetic\" has no captions; the mlm objective needs "
                       "\"procedural\" or a folder of videos with captions",
                       parent->file);
    hl_dataset_config dc;
    hl_dataset_config_default(&dc);
    hl_dataset_config_set_source(&dc, strcmp(env->data, "procedural") ? env->data : "world");
    /* the captions only: the smallest clip the dataset makes */
    dc.width = 16, dc.height = 16, dc.frames = 1, dc.n_clips = clips, dc.seed = (uint64_t)seed;
    hl_dataset *ds;
    HL_TRY(hl_dataset_open(&dc, &ds, parent->err));
    o->n_caps = hl_dataset_count(ds);
    hl_status st = HL_OK;
    if (!(o->caps = calloc((size_t)o->n_caps + 1, sizeof *o->caps)))
        st = hl_fail(parent->err, HELIOS_ERR_OOM, "mlm objective: out of memory");
    int64_t tokens = 0;
    for (int64_t i = 0; st == HL_OK && i < o->n_caps; i++) {
        hl_clip c;
        if ((st = hl_dataset_get(ds, i, &c, parent->err)) != HL_OK) break;
        st = tokenize(parent, spm, c.caption, c.source, max_len, &o->caps[i]);
        hl_clip_free(&c);
        if (st == HL_OK && o->caps[i].L > o->max_L) o->max_L = o->caps[i].L;
        if (st == HL_OK) tokens += o->caps[i].L;
    }
    hl_dataset_free(ds);
    if (st == HL_OK) {
        o->mean_tokens = (double)tokens / (double)o->n_caps;
        HL_INFO("training data: %lld captions of %s, %.1f tokens on average (at most %lld)",
                (long long)o->n_caps, env->data, o->mean_tokens, (long long)o->max_L);
    }
    return st;
}

static hl_status read_probs(const hl_cfg_keys *k, hl_mlm_params *mp) {
    mp->mask_prob = 0.15, mp->mask_token_prob = 0.8, mp->random_token_prob = 0.1;
    HL_TRY(hl_cfg_num(k, "mask_prob", 1e-6, 1, &mp->mask_prob));
    HL_TRY(hl_cfg_num(k, "mask_token_prob", 0, 1, &mp->mask_token_prob));
    HL_TRY(hl_cfg_num(k, "random_token_prob", 0, 1, &mp->random_token_prob));
    if (mp->mask_token_prob + mp->random_token_prob > 1)
        return hl_cfg_bad(k, "random_token_prob", "plus 'mask_token_prob' must be at most 1");
    return HL_OK;
}

static hl_status alloc_buffers(const hl_cfg_keys *k, text_obj *o) {
    size_t L = (size_t)o->max_L, D = (size_t)o->f.m.cfg.d_model;
    o->in = malloc(L * sizeof *o->in), o->pos = malloc(L * sizeof *o->pos);
    o->target = malloc(L * sizeof *o->target);
    o->out = malloc(L * D * sizeof *o->out), o->dout = malloc(L * D * sizeof *o->dout);
    o->hsel = malloc(L * D * sizeof *o->hsel), o->dh = malloc(L * D * sizeof *o->dh);
    if (!o->in || !o->pos || !o->target || !o->out || !o->dout || !o->hsel || !o->dh)
        return hl_fail(k->err, HELIOS_ERR_OOM, "mlm objective: out of memory");
    return HL_OK;
}

static hl_status setup(const hl_cfg_keys *k, const hl_train_env *env, text_obj *o) {
    int max_len = 512;
    HL_TRY(read_probs(k, &o->mp));
    HL_TRY(hl_cfg_int(k, "max_length", 2, 1 << 16, &max_len));
    char dir[4096];
    HL_TRY(find_tokenizer(k, env, dir, sizeof dir));
    hl_spm *spm = NULL;
    HL_TRY(load_spm(k, dir, &spm));
    hl_status st = HL_OK;
    if (hl_spm_get_info(spm)->n_pieces > env->umt5->vocab_size)
        st = hl_fail(k->err, HELIOS_ERR_INVALID_ARG,
                     "%s: the tokenizer %s has %d pieces, more than the model's vocab_size %d",
                     k->file, dir, hl_spm_get_info(spm)->n_pieces, env->umt5->vocab_size);
    if (st == HL_OK) st = choose_mask_id(k, spm, env->umt5->vocab_size, o);
    if (st == HL_OK) st = collect_words(k, spm, o);
    if (st == HL_OK) st = read_captions(k, env, spm, max_len, o);
    hl_spm_free(spm);
    return st;
}

hl_status hl_text_objective_create(const hl_json *settings, const hl_train_env *env, void **out,
                                   hl_error *err) {
    *out = NULL;
    hl_cfg_keys k = {settings, env->config_path, "objective", err};
    static const char *const known[] = {
        "type",       "mask_prob", "mask_token_prob", "random_token_prob",
        "max_length", "mask_id",   "tokenizer",       "dataset"};
    HL_TRY(hl_cfg_only(&k, known, 8));
    if (!env->umt5)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "%s: objective \"mlm\" trains the text encoder: set \"component\": "
                       "\"text_encoder\"",
                       env->config_path);
    text_obj *o = calloc(1, sizeof *o);
    if (!o) return hl_fail(err, HELIOS_ERR_OOM, "mlm objective: out of memory");
    hl_status st = setup(&k, env, o);
    if (st == HL_OK) st = hl_umt5_flat_new(env->umt5, &o->f, err);
    if (st == HL_OK && o->f.layout.total != env->layout->total)
        st = hl_fail(err, HELIOS_ERR_INVALID_ARG, "mlm objective: layout of %lld, expected %lld",
                     (long long)o->f.layout.total, (long long)env->layout->total);
    if (st == HL_OK) st = alloc_buffers(&k, o);
    if (st == HL_OK && !(o->be = hl_backend_new(HELIOS_BACKEND_CPU, 0, err))) st = HELIOS_ERR_OOM;
    o->ctx = (hl_ctx){o->be, &o->err};
    if (st != HL_OK) {
        hl_text_objective_destroy(o);
        return st;
    }
    *out = o;
    return HL_OK;
}

/* Forward with a tape, the loss at the chosen rows, backward into the bound gradients. */
static hl_status mlm_step(text_obj *o, const caption *c, int64_t K, double *loss) {
    int64_t D = o->f.m.cfg.d_model;
    float scale = 1.0f / sqrtf((float)D);
    hl_umt5_tape *t = NULL;
    HL_TRY(hl_umt5_forward_train(&o->ctx, &o->f.m, 1, c->L, o->in, NULL, o->out, &t));
    for (int64_t i = 0; i < K; i++) /* hsel [K, D] = out[pos] */
        memcpy(o->hsel + i * D, o->out + o->pos[i] * D, (size_t)D * sizeof *o->hsel);
    hl_status st = hl_mlm_loss(&o->ctx, &o->f.m.shared, scale, K, o->hsel, o->target, loss, o->dh,
                               o->f.grads->shared);
    if (st == HL_OK) {
        memset(o->dout, 0, (size_t)(c->L * D) * sizeof *o->dout);
        for (int64_t i = 0; i < K; i++)
            memcpy(o->dout + o->pos[i] * D, o->dh + i * D, (size_t)D * sizeof *o->dout);
        st = hl_umt5_backward(&o->ctx, &o->f.m, t, o->dout, o->f.grads);
    }
    hl_umt5_tape_free(t);
    return st;
}

hl_status hl_text_objective_step(void *p, hl_rng *rng, int64_t sample_index, const float *params,
                                 float *grads, double *loss, hl_error *err) {
    text_obj *o = p;
    if (o->f.bound_w != params || o->f.bound_g != grads)
        HL_TRY(hl_umt5_flat_bind(&o->f, params, grads, err));
    const caption *c = &o->caps[sample_index % o->n_caps];
    int64_t K;
    hl_mlm_corrupt(&o->mp, rng, c->ids, c->L, c->cand, c->n, o->in, o->pos, o->target, &K);
    o->err = (hl_error){0};
    hl_status st = mlm_step(o, c, K, loss);
    if (st != HL_OK) {
        if (o->err.msg[0] && err) *err = o->err;
        else if (err && !err->msg[0]) hl_fail(err, st, "mlm objective: step failed");
    }
    return st;
}

double hl_text_objective_tokens(void *p) { return ((text_obj *)p)->mean_tokens; }
