/* Hugging Face `tokenizer.json` (tokenizers library) for Unigram tokenizers -> the same in-memory
 * model spm_proto.c builds from a spiece.model. See hl_spm_load_tokenizer_json in spm.h for what
 * is read; everything else a tokenizer.json may say is refused, never guessed:
 *
 *   - the normalizer may only be Precompiled (first) and the T5 whitespace rules: a Replace of
 *     Regex " {2,}" by " " or "▁", optionally with a Strip; together they are
 *     SentencePiece's remove_extra_whitespaces;
 *   - the pre-tokenizer may only be Metaspace with replacement "▁", optionally after a
 *     WhitespaceSplit; prepend_scheme "first" equals "always" here since added tokens are not
 *     split out of the text (SentencePiece treats them as text too);
 *   - the post-processor may only append one special token (the eos) to the sequence.
 *
 * The decoder, truncation and padding sections do not change the ids and are ignored (a
 * padding.pad_token names the pad piece). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "io/json.h"
#include "text/spm_internal.h"

#define SPACE_MARK "\xe2\x96\x81" /* U+2581 */

typedef struct jctx {
    hl_spm *m;
    const char *path;
    hl_error *err;
} jctx;

static hl_status bad(jctx *c, const char *comp, const char *what) {
    return hl_fail(c->err, HELIOS_ERR_FORMAT, "%s: %s: %s", c->path, comp, what);
}

static hl_status unsupported(jctx *c, const char *comp, const char *what) {
    return hl_fail(c->err, HELIOS_ERR_UNSUPPORTED, "%s: %s: %s is not supported", c->path, comp,
                   what);
}

static const char *type_of(const hl_json *j) {
    return j && j->type == HL_JSON_OBJECT ? hl_json_get_string(j, "type") : NULL;
}

static bool is_null(const hl_json *j) { return !j || j->type == HL_JSON_NULL; }

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* ---- base64 ---------------------------------------------------------------------------------- */

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Standard base64 (RFC 4648 §4), '=' padding optional but only at the end. *out is malloc'ed
 * (NULL when empty). Returns 0, -1 on bad input, -2 when out of memory. */
static int b64_decode(const char *s, size_t n, unsigned char **out, size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    while (n > 0 && s[n - 1] == '=') n--;
    if (n % 4 == 1) return -1;
    if (n == 0) return 0;
    unsigned char *b = malloc(n / 4 * 3 + 3);
    if (!b) return -2;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            free(b);
            return -1;
        }
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            b[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) { /* non-canonical trailing bits */
        free(b);
        return -1;
    }
    *out = b;
    *out_n = o;
    return 0;
}

/* ---- model ----------------------------------------------------------------------------------- */

/* "<0x41>" (the exact form ByteToPiece writes). */
static bool is_byte_piece(const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    return n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && s[3] && s[4] && strchr(hex, s[3]) &&
           strchr(hex, s[4]);
}

static hl_status read_model(jctx *c, const hl_json *root, int64_t *unk_id) {
    const char *comp = "model";
    const hl_json *model = hl_json_get(root, "model");
    if (!model || model->type != HL_JSON_OBJECT) return bad(c, comp, "missing or not an object");
    const char *type = type_of(model);
    if (!type) return bad(c, comp, "no \"type\"");
    if (strcmp(type, "Unigram") != 0) {
        char what[160];
        snprintf(what, sizeof what, "type \"%.64s\" (only Unigram)", type);
        return unsupported(c, comp, what);
    }
    const hl_json *u = hl_json_get(model, "unk_id");
    if (is_null(u)) return unsupported(c, comp, "a Unigram model without unk_id");
    if (u->type != HL_JSON_NUMBER || !u->is_int) return bad(c, comp, "unk_id is not an integer");
    *unk_id = u->integer;
    const hl_json *bf = hl_json_get(model, "byte_fallback");
    if (!is_null(bf) && bf->type != HL_JSON_BOOL)
        return bad(c, comp, "byte_fallback is not a bool");
    c->m->byte_fallback = !is_null(bf) && bf->boolean;
    const hl_json *vocab = hl_json_get(model, "vocab");
    if (!vocab || vocab->type != HL_JSON_ARRAY) return bad(c, comp, "vocab is not an array");
    if (vocab->n > (size_t)INT32_MAX) return bad(c, comp, "too many pieces");
    if (*unk_id < 0 || (uint64_t)*unk_id >= vocab->n)
        return bad(c, comp, "unk_id outside the vocab");
    for (size_t i = 0; i < vocab->n; i++) {
        const hl_json *e = &vocab->items[i];
        if (e->type != HL_JSON_ARRAY || e->n != 2 || e->items[0].type != HL_JSON_STRING ||
            e->items[1].type != HL_JSON_NUMBER) {
            char what[96];
            snprintf(what, sizeof what, "vocab entry %zu is not [piece, score]", i);
            return bad(c, comp, what);
        }
        const hl_json *p = &e->items[0];
        int type_i = (int64_t)i == *unk_id                                     ? HL_SPM_UNKNOWN
                     : c->m->byte_fallback && is_byte_piece(p->string, p->len) ? HL_SPM_BYTE
                                                                               : HL_SPM_NORMAL;
        HL_TRY(
            hl_spm_add_piece(c->m, p->string, p->len, (float)e->items[1].number, type_i, c->err));
    }
    return HL_OK;
}

/* added_tokens: special -> control, others -> user-defined. Each must be the vocab's piece of
 * its id (a Unigram tokenizer.json keeps its added tokens inside the vocab). */
static hl_status read_added(jctx *c, const hl_json *root, int64_t unk_id) {
    const char *comp = "added_tokens";
    const hl_json *a = hl_json_get(root, "added_tokens");
    if (is_null(a)) return HL_OK;
    if (a->type != HL_JSON_ARRAY) return bad(c, comp, "not an array");
    for (size_t i = 0; i < a->n; i++) {
        const hl_json *t = &a->items[i];
        int64_t id = 0;
        const hl_json *content = hl_json_get(t, "content");
        char what[160];
        if (t->type != HL_JSON_OBJECT || hl_json_get_int(t, "id", &id) != 0 || !content ||
            content->type != HL_JSON_STRING) {
            snprintf(what, sizeof what, "entry %zu lacks an integer id or a string content", i);
            return bad(c, comp, what);
        }
        if (id < 0 || (uint64_t)id >= c->m->n_pieces) {
            snprintf(what, sizeof what, "entry %zu: id %lld is outside the vocab", i,
                     (long long)id);
            return unsupported(c, comp, what);
        }
        hl_spm_piece *p = &c->m->pieces[id];
        if (p->len != content->len || memcmp(c->m->strings + p->off, content->string, p->len)) {
            snprintf(what, sizeof what, "entry %zu: content '%.48s' is not vocab piece %lld", i,
                     content->string, (long long)id);
            return bad(c, comp, what);
        }
        bool special = false;
        if (hl_json_get(t, "special") && hl_json_get_bool(t, "special", &special) != 0) {
            snprintf(what, sizeof what, "entry %zu: special is not a bool", i);
            return bad(c, comp, what);
        }
        if (id == unk_id) continue; /* stays the unknown piece */
        p->type = special ? HL_SPM_CONTROL : HL_SPM_USER_DEFINED;
    }
    return HL_OK;
}

/* ---- normalizer ------------------------------------------------------------------------------ */

static hl_status precompiled(jctx *c, const hl_json *n) {
    const hl_json *cm = hl_json_get(n, "precompiled_charsmap");
    if (is_null(cm)) return HL_OK; /* no charsmap: identity */
    if (cm->type != HL_JSON_STRING)
        return bad(c, "normalizer Precompiled", "precompiled_charsmap is not a string");
    unsigned char *b;
    size_t nb;
    int r = b64_decode(cm->string, cm->len, &b, &nb);
    if (r == -2) return hl_fail(c->err, HELIOS_ERR_OOM, "%s: out of memory", c->path);
    if (r != 0) return bad(c, "normalizer Precompiled", "precompiled_charsmap is not valid base64");
    free(c->m->charsmap);
    c->m->charsmap = b;
    c->m->charsmap_size = nb;
    return HL_OK;
}

/* Replace(Regex " {2,}" -> " " or "▁"): T5's collapse of space runs. (A String pattern is
 * literal, so {"String": " {2,}"} would only replace those five characters: refused.) */
static bool is_space_collapse(const hl_json *n) {
    const hl_json *pat = hl_json_get(n, "pattern"), *content = hl_json_get(n, "content");
    const hl_json *re = hl_json_get(pat, "Regex");
    if (!re || re->type != HL_JSON_STRING || pat->n != 1 || !content ||
        content->type != HL_JSON_STRING)
        return false;
    return re->len == 5 && !memcmp(re->string, " {2,}", 5) &&
           ((content->len == 1 && content->string[0] == ' ') ||
            (content->len == 3 && !memcmp(content->string, SPACE_MARK, 3)));
}

static hl_status read_normalizer(jctx *c, const hl_json *root) {
    const char *comp = "normalizer";
    hl_spm *m = c->m;
    m->remove_extra_whitespaces = false;
    const hl_json *n = hl_json_get(root, "normalizer");
    if (is_null(n)) return HL_OK;
    const char *type = type_of(n);
    if (!type) return bad(c, comp, "not an object with a \"type\"");
    const hl_json *list = n;
    size_t count = 1;
    if (!strcmp(type, "Sequence")) {
        list = hl_json_get(n, "normalizers");
        if (!list || list->type != HL_JSON_ARRAY)
            return bad(c, comp, "Sequence without a normalizers array");
        count = list->n;
    }
    bool seen_collapse = false, seen_strip = false, seen_pre = false;
    for (size_t i = 0; i < count; i++) {
        const hl_json *e = list == n ? n : &list->items[i];
        const char *t = type_of(e);
        char what[200];
        if (!t) {
            snprintf(what, sizeof what, "entry %zu is not an object with a \"type\"", i);
            return bad(c, comp, what);
        }
        if (!strcmp(t, "Precompiled")) {
            if (i != 0 || seen_pre)
                return unsupported(c, comp, "Precompiled after another normalizer");
            seen_pre = true;
            HL_TRY(precompiled(c, e));
        } else if (!strcmp(t, "Replace") && is_space_collapse(e) && !seen_collapse) {
            seen_collapse = true;
        } else if (!strcmp(t, "Strip") && !seen_strip) {
            seen_strip = true;
        } else {
            const char *pat = NULL, *kind = "";
            if (!strcmp(t, "Replace")) {
                const hl_json *p = hl_json_get(e, "pattern");
                kind = hl_json_get_string(p, "Regex") ? "Regex" : "String";
                pat = hl_json_get_string(p, kind);
            }
            snprintf(what, sizeof what, "component %zu (%.40s%s%s%s%.40s%s)", i, t,
                     pat ? " of " : "", pat ? kind : "", pat ? " '" : "", pat ? pat : "",
                     pat ? "'" : "");
            return unsupported(c, comp, what);
        }
    }
    if (seen_strip && !seen_collapse)
        return unsupported(c, comp, "Strip without the Replace of space runs");
    m->remove_extra_whitespaces = seen_collapse;
    free(m->normalizer_name);
    m->normalizer_name = dup_n(m->charsmap ? "precompiled" : "identity", m->charsmap ? 11 : 8);
    if (!m->normalizer_name) return hl_fail(c->err, HELIOS_ERR_OOM, "%s: out of memory", c->path);
    return HL_OK;
}

/* ---- pre-tokenizer --------------------------------------------------------------------------- */

static hl_status metaspace(jctx *c, const hl_json *e) {
    const char *comp = "pre_tokenizer Metaspace";
    const hl_json *rep = hl_json_get(e, "replacement");
    if (rep && (rep->type != HL_JSON_STRING || rep->len != 3 || memcmp(rep->string, SPACE_MARK, 3)))
        return unsupported(c, comp, "a replacement other than U+2581");
    bool prefix = true;
    const char *scheme = hl_json_get_string(e, "prepend_scheme");
    if (scheme) {
        if (!strcmp(scheme, "never")) prefix = false;
        else if (strcmp(scheme, "always") != 0 && strcmp(scheme, "first") != 0)
            return unsupported(c, comp, "this prepend_scheme");
    } else if (hl_json_get(e, "add_prefix_space")) {
        if (hl_json_get_bool(e, "add_prefix_space", &prefix) != 0)
            return bad(c, comp, "add_prefix_space is not a bool");
    }
    c->m->escape_whitespaces = true;
    c->m->add_dummy_prefix = prefix;
    return HL_OK;
}

static hl_status read_pre_tokenizer(jctx *c, const hl_json *root) {
    const char *comp = "pre_tokenizer";
    c->m->escape_whitespaces = false;
    c->m->add_dummy_prefix = false;
    const hl_json *p = hl_json_get(root, "pre_tokenizer");
    if (is_null(p)) return HL_OK;
    const char *type = type_of(p);
    if (!type) return bad(c, comp, "not an object with a \"type\"");
    if (!strcmp(type, "Metaspace")) return metaspace(c, p);
    if (strcmp(type, "Sequence") != 0) {
        char what[120];
        snprintf(what, sizeof what, "%.64s", type);
        return unsupported(c, comp, what);
    }
    const hl_json *list = hl_json_get(p, "pretokenizers");
    if (!list || list->type != HL_JSON_ARRAY)
        return bad(c, comp, "Sequence without a pretokenizers array");
    /* [WhitespaceSplit,] Metaspace: SentencePiece splits on spaces anyway (the pieces never
     * span a "▁" except at their start), and whitespace runs are handled by the normalizer */
    size_t i = 0;
    if (i < list->n && type_of(&list->items[i]) &&
        !strcmp(type_of(&list->items[i]), "WhitespaceSplit"))
        i++;
    if (list->n != i + 1 || !type_of(&list->items[i]) ||
        strcmp(type_of(&list->items[i]), "Metaspace"))
        return unsupported(c, comp, "a Sequence other than [WhitespaceSplit,] Metaspace");
    return metaspace(c, &list->items[i]);
}

/* ---- post-processor and special pieces ------------------------------------------------------- */

static hl_status set_piece_name(jctx *c, char **dst, int64_t id) {
    hl_spm_piece *p = &c->m->pieces[id];
    char *s = dup_n(c->m->strings + p->off, p->len);
    if (!s) return hl_fail(c->err, HELIOS_ERR_OOM, "%s: out of memory", c->path);
    free(*dst);
    *dst = s;
    return HL_OK;
}

static hl_status read_post(jctx *c, const hl_json *root) {
    const char *comp = "post_processor";
    const hl_json *p = hl_json_get(root, "post_processor");
    if (is_null(p)) return HL_OK; /* eos: the "</s>" piece */
    const char *type = type_of(p);
    if (!type) return bad(c, comp, "not an object with a \"type\"");
    if (strcmp(type, "TemplateProcessing") != 0) {
        char what[120];
        snprintf(what, sizeof what, "%.64s", type);
        return unsupported(c, comp, what);
    }
    const hl_json *single = hl_json_get(p, "single");
    if (!single || single->type != HL_JSON_ARRAY) return bad(c, comp, "no single template");
    /* [Sequence A] or [Sequence A, SpecialToken X] */
    const hl_json *seq = single->n >= 1 ? hl_json_get(&single->items[0], "Sequence") : NULL;
    if (!seq || single->n > 2)
        return unsupported(c, comp, "a single template other than [A] or [A, eos]");
    if (single->n == 1) return HL_OK;
    const hl_json *st = hl_json_get(&single->items[1], "SpecialToken");
    const char *name = hl_json_get_string(st, "id");
    if (!name) return unsupported(c, comp, "a single template other than [A] or [A, eos]");
    const hl_json *tok = hl_json_get(hl_json_get(p, "special_tokens"), name);
    const hl_json *ids = hl_json_get(tok, "ids");
    if (!ids || ids->type != HL_JSON_ARRAY || ids->n != 1 || ids->items[0].type != HL_JSON_NUMBER ||
        !ids->items[0].is_int)
        return unsupported(c, comp, "a special token that is not exactly one id");
    int64_t id = ids->items[0].integer;
    if (id < 0 || (uint64_t)id >= c->m->n_pieces)
        return bad(c, comp, "special token id outside the vocab");
    if (c->m->pieces[id].type != HL_SPM_CONTROL)
        return bad(c, comp, "the appended token is not a special added token");
    return set_piece_name(c, &c->m->eos_piece, id);
}

static hl_status read_padding(jctx *c, const hl_json *root) {
    const hl_json *pad = hl_json_get(root, "padding");
    if (is_null(pad)) return HL_OK;
    int64_t id = 0;
    if (hl_json_get_int(pad, "pad_id", &id) != 0 || id < 0 || (uint64_t)id >= c->m->n_pieces)
        return HL_OK; /* no usable id: the default "<pad>" piece */
    return set_piece_name(c, &c->m->pad_piece, id);
}

/* ---- load -------------------------------------------------------------------------------------- */

static hl_status build(jctx *c, const hl_json *root) {
    if (root->type != HL_JSON_OBJECT) return bad(c, "top level", "not a JSON object");
    hl_spm *m = c->m;
    m->model_type = 1;
    m->tr_pad_id = m->tr_bos_id = m->tr_eos_id = -1;
    int64_t unk_id = -1;
    HL_TRY(read_model(c, root, &unk_id));
    m->tr_unk_id = (int32_t)unk_id;
    HL_TRY(read_added(c, root, unk_id));
    HL_TRY(read_normalizer(c, root));
    HL_TRY(read_pre_tokenizer(c, root));
    HL_TRY(set_piece_name(c, &m->unk_piece, unk_id));
    HL_TRY(read_post(c, root));
    HL_TRY(read_padding(c, root));
    return hl_spm_finish(m, c->err);
}

/* The model from a parsed tokenizer.json; name is used in messages. */
static hl_status load_tree(const hl_json *root, const char *name, hl_spm **out, hl_error *err) {
    hl_spm *m = NULL;
    hl_status st = hl_spm_new(name, &m, err);
    if (st == HL_OK) {
        jctx c = {m, name, err};
        st = build(&c, root);
    }
    if (st != HL_OK) {
        hl_spm_free(m);
        return st;
    }
    *out = m;
    return HL_OK;
}

hl_status hl_spm_load_tokenizer_json(const char *path, hl_spm **out, hl_error *err) {
    *out = NULL;
    hl_json *root = NULL;
    HL_TRY(hl_json_load_file_max(path, HL_FILE_MAX_TOKENIZER_JSON, "tokenizer.json", &root, err));
    hl_status st = load_tree(root, path, out, err);
    hl_json_free(root);
    return st;
}

hl_status hl_spm_load_tokenizer_json_mem(const void *buf, size_t size, const char *name,
                                         hl_spm **out, hl_error *err) {
    *out = NULL;
    hl_json *root = NULL;
    hl_status st = hl_json_parse(buf, size, &root, err);
    if (st != HL_OK) {
        hl_error_prefix(err, "%s", name);
        return st;
    }
    st = load_tree(root, name, out, err);
    hl_json_free(root);
    return st;
}
