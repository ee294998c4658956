/* The tokenizer checks of `helios verify` (see tokenizer_vectors.h). Model names come from the
 * vector file ("M.ids"), sequence lengths from the tensor names ("M.t5.L<N>.input_ids"). */
#include "verify/tokenizer_vectors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "text/prompt_clean.h"
#include "text/spm.h"

#define VECTOR_FILE "tokenizer_vectors.safetensors"

typedef struct texts {
    const char **s;
    size_t *len;
    size_t n;
    char **owned; /* [n] cleaned copies, or NULL when s points into the vector file */
} texts;

typedef struct run {
    const hl_safetensors *st;
    hl_report_fn report;
    void *user;
} run;

static void texts_free(texts *t) {
    if (t->owned)
        for (size_t i = 0; i < t->n; i++) free(t->owned[i]);
    free(t->owned);
    free(t->s);
    free(t->len);
    memset(t, 0, sizeof *t);
}

/* Offsets of n + 1 boundaries into a buffer of `size` bytes / values: 0, non-decreasing, last
 * within the buffer. */
static hl_status check_offsets(const hl_safetensors *st, const char *name, const int64_t *off,
                               size_t n, int64_t size, hl_error *err) {
    if (off[0] != 0 || off[n] > size)
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: tensor '%s': offsets outside [0, %lld]",
                       st->path, name, (long long)size);
    for (size_t i = 0; i < n; i++)
        if (off[i + 1] < off[i])
            return hl_fail(err, HELIOS_ERR_FORMAT, "%s: tensor '%s': offsets decrease at %zu",
                           st->path, name, i);
    return HL_OK;
}

/* `<prefix>strings.utf8` + `<prefix>strings.offsets`: views into the mapping. */
static hl_status read_texts(const hl_safetensors *st, const char *prefix, texts *t, hl_error *err) {
    char name_b[256], name_o[256];
    snprintf(name_b, sizeof name_b, "%sstrings.utf8", prefix);
    snprintf(name_o, sizeof name_o, "%sstrings.offsets", prefix);
    memset(t, 0, sizeof *t);
    const hl_st_tensor *b = hl_st_find(st, name_b), *o = hl_st_find(st, name_o);
    if (!b || !o)
        return hl_fail(err, HELIOS_ERR_MISSING, "%s: no tensor '%s' / '%s'", st->path, name_b,
                       name_o);
    if (b->dtype != HL_U8 && b->dtype != HL_I8)
        return hl_fail(err, HELIOS_ERR_DTYPE, "%s: tensor '%s' is not bytes", st->path, name_b);
    if (o->ndim != 1 || o->shape[0] < 1)
        return hl_fail(err, HELIOS_ERR_SHAPE, "%s: tensor '%s' is not a 1-d offset list", st->path,
                       name_o);
    int64_t *off;
    HL_TRY(hl_st_read_i64(st, name_o, -1, &off, err));
    size_t n = (size_t)o->shape[0] - 1;
    hl_status s = check_offsets(st, name_o, off, n, (int64_t)b->nbytes, err);
    if (s == HL_OK) {
        t->s = malloc((n ? n : 1) * sizeof *t->s);
        t->len = malloc((n ? n : 1) * sizeof *t->len);
        if (!t->s || !t->len) s = hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    }
    if (s == HL_OK) {
        t->n = n;
        for (size_t i = 0; i < n; i++) {
            t->s[i] = (const char *)b->data + off[i];
            t->len[i] = (size_t)(off[i + 1] - off[i]);
        }
    }
    free(off);
    if (s != HL_OK) texts_free(t);
    return s;
}

/* hl_prompt_clean of every string. */
static hl_status clean_texts(const texts *in, texts *out, hl_error *err) {
    memset(out, 0, sizeof *out);
    size_t n = in->n ? in->n : 1;
    out->s = malloc(n * sizeof *out->s);
    out->len = malloc(n * sizeof *out->len);
    out->owned = calloc(n, sizeof *out->owned);
    if (!out->s || !out->len || !out->owned) {
        texts_free(out);
        return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    }
    out->n = in->n;
    for (size_t i = 0; i < in->n; i++) {
        if (hl_prompt_clean_n(in->s[i], in->len[i], &out->owned[i], &out->len[i]) != HL_OK) {
            texts_free(out);
            return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
        }
        out->s[i] = out->owned[i];
    }
    return HL_OK;
}

/* ---- cases ----------------------------------------------------------------------------------- */

static void report_case(const run *r, const char *name, long bad, long total) {
    if (r->report) r->report(r->user, VECTOR_FILE, name, (double)bad, 0.0, total);
}

static hl_status case_clean(const run *r, const texts *raw, const texts *cleaned, hl_error *err) {
    texts ref;
    HL_TRY(read_texts(r->st, "clean.", &ref, err));
    long bad = 0;
    if (ref.n != raw->n) bad = (long)(ref.n > raw->n ? ref.n : raw->n);
    else
        for (size_t i = 0; i < ref.n; i++)
            if (ref.len[i] != cleaned->len[i] || memcmp(ref.s[i], cleaned->s[i], ref.len[i])) bad++;
    report_case(r, "prompt_clean", bad, (long)raw->n);
    texts_free(&ref);
    return HL_OK;
}

/* "P.ids" + "P.ids_offsets": hl_spm_encode of every text. */
static hl_status case_ids(const run *r, const hl_spm *spm, const texts *t, const char *p,
                          hl_error *err) {
    char name_i[256], name_o[256];
    snprintf(name_i, sizeof name_i, "%s.ids", p);
    snprintf(name_o, sizeof name_o, "%s.ids_offsets", p);
    int64_t *ref = NULL, *off = NULL;
    const hl_st_tensor *ti = hl_st_find(r->st, name_i);
    hl_status s = hl_st_read_i64(r->st, name_i, -1, &ref, err);
    if (s == HL_OK) s = hl_st_read_i64(r->st, name_o, (int64_t)t->n + 1, &off, err);
    if (s == HL_OK) {
        int64_t n_ref = (int64_t)(ti->nbytes / hl_dtype_size(ti->dtype));
        s = check_offsets(r->st, name_o, off, t->n, n_ref, err);
    }
    long bad = 0;
    for (size_t i = 0; s == HL_OK && i < t->n; i++) {
        int32_t *ids;
        size_t n;
        s = hl_spm_encode(spm, t->s[i], t->len[i], &ids, &n, err);
        if (s != HL_OK) break;
        size_t want = (size_t)(off[i + 1] - off[i]);
        int same = n == want;
        for (size_t k = 0; same && k < n; k++) same = ids[k] == ref[off[i] + (int64_t)k];
        bad += !same;
        free(ids);
    }
    if (s == HL_OK) report_case(r, name_i, bad, (long)t->n);
    free(ref);
    free(off);
    return s;
}

/* "P.t5.L<N>.input_ids" + ".attention_mask": hl_spm_encode_t5 at length N. */
static hl_status case_t5(const run *r, const hl_spm *spm, const texts *t, const char *p, int L,
                         hl_error *err) {
    char name_i[256], name_m[256], name_case[256];
    snprintf(name_case, sizeof name_case, "%s.t5.L%d", p, L);
    snprintf(name_i, sizeof name_i, "%s.input_ids", name_case);
    snprintf(name_m, sizeof name_m, "%s.attention_mask", name_case);
    int64_t *ref_ids = NULL, *ref_mask = NULL;
    int32_t *ids = malloc((size_t)L * sizeof *ids), *mask = malloc((size_t)L * sizeof *mask);
    hl_status s = ids && mask ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    if (s == HL_OK) s = hl_st_read_i64(r->st, name_i, (int64_t)t->n * L, &ref_ids, err);
    if (s == HL_OK) s = hl_st_read_i64(r->st, name_m, (int64_t)t->n * L, &ref_mask, err);
    long bad = 0;
    for (size_t i = 0; s == HL_OK && i < t->n; i++) {
        s = hl_spm_encode_t5(spm, t->s[i], t->len[i], L, ids, mask, NULL, err);
        if (s != HL_OK) break;
        int same = 1;
        for (int k = 0; same && k < L; k++)
            same = ids[k] == ref_ids[(int64_t)i * L + k] && mask[k] == ref_mask[(int64_t)i * L + k];
        bad += !same;
    }
    if (s == HL_OK) report_case(r, name_case, bad, (long)t->n);
    free(ids);
    free(mask);
    free(ref_ids);
    free(ref_mask);
    return s;
}

/* Every "P.t5.L<N>.input_ids" of the file. */
static hl_status cases_t5(const run *r, const hl_spm *spm, const texts *t, const char *p,
                          hl_error *err) {
    char head[256];
    int hl = snprintf(head, sizeof head, "%s.t5.L", p);
    for (size_t k = 0; k < r->st->n; k++) {
        const char *name = r->st->tensors[k].name;
        if (strncmp(name, head, (size_t)hl)) continue;
        char *end;
        long L = strtol(name + hl, &end, 10);
        if (end == name + hl || strcmp(end, ".input_ids") || L < 1 || L > (1 << 20)) continue;
        HL_TRY(case_t5(r, spm, t, p, (int)L, err));
    }
    return HL_OK;
}

/* "M.vocab.scores" / "M.vocab.types" (+ metadata "M.vocab.pieces"): the piece table. */
static hl_status case_vocab(const run *r, const hl_spm *spm, const char *m, hl_error *err) {
    char name_s[256], name_t[256], name_p[256], name_case[256];
    snprintf(name_case, sizeof name_case, "%s.vocab", m);
    snprintf(name_s, sizeof name_s, "%s.scores", name_case);
    snprintf(name_t, sizeof name_t, "%s.types", name_case);
    snprintf(name_p, sizeof name_p, "%s.pieces", name_case);
    if (!hl_st_find(r->st, name_s) || !hl_st_find(r->st, name_t)) return HL_OK;
    float *scores = NULL;
    int64_t *types = NULL;
    hl_json *pieces = NULL;
    HL_TRY(hl_st_read_f32(r->st, name_s, -1, &scores, err));
    const hl_st_tensor *tt = hl_st_find(r->st, name_t);
    int64_t n = (int64_t)(tt->nbytes / hl_dtype_size(tt->dtype));
    hl_status s = hl_st_read_i64(r->st, name_t, -1, &types, err);
    const char *pj = hl_st_meta(r->st, name_p);
    if (s == HL_OK && pj) {
        s = hl_json_parse(pj, strlen(pj), &pieces, err);
        if (s != HL_OK) hl_error_prefix(err, "%s: metadata '%s'", r->st->path, name_p);
    }
    if (s == HL_OK) {
        const hl_spm_info *info = hl_spm_get_info(spm);
        int64_t have = info->n_pieces, common = have < n ? have : n;
        long bad = (long)(have > n ? have - n : n - have);
        for (int64_t i = 0; i < common; i++) {
            size_t len;
            const char *str = hl_spm_id_to_piece(spm, (int)i, &len);
            int same = hl_spm_piece_score(spm, (int)i) == scores[i] &&
                       hl_spm_piece_type(spm, (int)i) == types[i];
            if (pieces && pieces->type == HL_JSON_ARRAY && (size_t)i < pieces->n) {
                const hl_json *e = &pieces->items[i];
                same = same && e->type == HL_JSON_STRING && e->len == len &&
                       memcmp(e->string, str, len) == 0;
            }
            bad += !same;
        }
        report_case(r, name_case, bad, (long)(have > n ? have : n));
    }
    free(scores);
    free(types);
    hl_json_free(pieces);
    return s;
}

/* All cases of model m. */
static hl_status run_model(const run *r, const char *dir, const char *m, const texts *raw,
                           const texts *cleaned, hl_error *err) {
    if (strchr(m, '/') || !strcmp(m, "..") || !strcmp(m, "."))
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: model name '%s' is not a file name",
                       r->st->path, m);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_%s.model", dir, m);
    hl_spm *spm;
    HL_TRY(hl_spm_load(path, &spm, err));
    hl_status s = case_vocab(r, spm, m, err);
    if (s == HL_OK) s = case_ids(r, spm, raw, m, err);
    if (s == HL_OK) s = cases_t5(r, spm, raw, m, err);
    char pc[256];
    snprintf(pc, sizeof pc, "%s.clean.ids", m);
    if (s == HL_OK && hl_st_find(r->st, pc) && cleaned) {
        snprintf(pc, sizeof pc, "%s.clean", m);
        s = case_ids(r, spm, cleaned, pc, err);
        if (s == HL_OK) s = cases_t5(r, spm, cleaned, pc, err);
    }
    hl_spm_free(spm);
    return s;
}

hl_status hl_tokenizer_verify(const char *dir, hl_report_fn report, void *user, hl_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, VECTOR_FILE);
    hl_safetensors *st;
    HL_TRY(hl_st_open(path, &st, err));
    run r = {st, report, user};
    texts raw, cleaned = {0};
    hl_status s = read_texts(st, "", &raw, err);
    if (s != HL_OK) {
        hl_st_close(st);
        return s;
    }
    s = clean_texts(&raw, &cleaned, err);
    if (s == HL_OK && hl_st_find(st, "clean.strings.utf8")) s = case_clean(&r, &raw, &cleaned, err);

    /* models: every tensor "M.ids" with M free of dots */
    for (size_t k = 0; s == HL_OK && k < st->n; k++) {
        const char *name = st->tensors[k].name;
        size_t len = strlen(name);
        if (len <= 4 || strcmp(name + len - 4, ".ids") || memchr(name, '.', len - 4)) continue;
        char m[256];
        if (len - 4 >= sizeof m) continue;
        memcpy(m, name, len - 4);
        m[len - 4] = '\0';
        s = run_model(&r, dir, m, &raw, &cleaned, err);
    }
    texts_free(&raw);
    texts_free(&cleaned);
    hl_st_close(st);
    return s;
}
