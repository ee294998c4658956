/* SentencePiece tokenizer and prompt cleaning: every string of tokenizer_vectors for both models
 * (plain ids, T5 ids + masks at every stored length, the cleaned strings), the normalizer's
 * rules on hand-built models, and hostile model files (truncated, garbage, mutated). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "test_util.h"
#include "text/prompt_encode.h"
#include "text/prompt_clean.h"
#include "text/spm.h"
#include "text/spm_internal.h"
#include "verify/tokenizer_vectors.h"

/* ---- the reference vectors ----------------------------------------------------------------- */

typedef struct seen {
    int n_cases;
    char names[64][96];
} seen;

static void on_case(void *user, const char *file, const char *name, double max_abs, double tol,
                    long total) {
    seen *s = user;
    long bad = (long)max_abs;
    if (s->n_cases < 64) snprintf(s->names[s->n_cases++], sizeof s->names[0], "%s", name);
    printf("  %s %-26s %ld/%ld exact\n", file, name, total - bad, total);
    CHECK(bad == 0 && total > 0, "%s: %ld of %ld differ", name, bad, total);
}

static void test_vectors(void) {
    seen s = {0};
    hl_error err;
    hl_error_clear(&err);
    hl_status st = hl_tokenizer_verify(HELIOS_VECTORS, on_case, &s, &err);
    CHECK(st == HL_OK, "hl_tokenizer_verify: %s", err.msg);
    static const char *want[] = {
        "prompt_clean",    "umt5like.vocab",     "umt5like.ids",           "umt5like.t5.L512",
        "umt5like.t5.L32", "umt5like.clean.ids", "umt5like.clean.t5.L512", "umt5like.clean.t5.L32",
        "identity.vocab",  "identity.ids",       "identity.t5.L512",       "identity.t5.L32",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int found = 0;
        for (int k = 0; k < s.n_cases; k++) found |= !strcmp(s.names[k], want[i]);
        CHECK(found, "case %s was not run", want[i]);
    }
}

/* ---- helpers --------------------------------------------------------------------------------- */

static hl_spm *load(const char *file) {
    hl_spm *m = NULL;
    hl_error err;
    hl_error_clear(&err);
    hl_status st = hl_spm_load(vector_path(file), &m, &err);
    CHECK(st == HL_OK && m, "load %s: %s", file, err.msg);
    return m;
}

/* The pieces of encode(text) joined by ' ' (static buffer). */
static const char *pieces(const hl_spm *m, const char *text, size_t len) {
    static char out[4096];
    int32_t *ids;
    size_t n;
    out[0] = '\0';
    if (hl_spm_encode(m, text, len, &ids, &n, NULL) != HL_OK) return "<error>";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 100 < sizeof out; i++) {
        size_t pl;
        const char *p = hl_spm_id_to_piece(m, ids[i], &pl);
        o += (size_t)snprintf(out + o, sizeof out - o, "%s%.*s", i ? " " : "", (int)pl, p);
    }
    free(ids);
    return out;
}

static void check_pieces(const hl_spm *m, const char *text, size_t len, const char *want) {
    const char *got = pieces(m, text, len);
    CHECK(!strcmp(got, want), "encode '%.*s': got [%s], want [%s]", (int)len, text, got, want);
}

static void check_norm(const hl_spm *m, const char *text, size_t len, const char *want) {
    char *out;
    size_t n;
    hl_status st = hl_spm_normalize(m, text, len, &out, &n, NULL);
    CHECK(st == HL_OK && n == strlen(want) && !memcmp(out, want, n),
          "normalize '%.*s': got '%s', want '%s'", (int)len, text, st == HL_OK ? out : "?", want);
    if (st == HL_OK) free(out);
}

/* ---- behaviours named in the oracle README (§9.3) --------------------------------------------- */

static void test_readme_behaviours(void) {
    hl_spm *u = load("tokenizer_umt5like.model"), *id = load("tokenizer_identity.model");
    if (!u || !id) goto done;
    const hl_spm_info *iu = hl_spm_get_info(u), *ii = hl_spm_get_info(id);
    CHECK(iu->unk_id == 2 && iu->eos_id == 1 && iu->pad_id == 0 && iu->bos_id == -1,
          "umt5like specials %d %d %d %d", iu->unk_id, iu->eos_id, iu->pad_id, iu->bos_id);
    CHECK(ii->unk_id == 0 && ii->bos_id == 1 && ii->eos_id == 2 && ii->pad_id == 3,
          "identity specials %d %d %d %d", ii->unk_id, ii->bos_id, ii->eos_id, ii->pad_id);
    CHECK(iu->byte_fallback && !ii->byte_fallback, "byte_fallback");
    CHECK(!strcmp(iu->normalizer_name, "nmt_nfkc") && iu->charsmap_size == 237561,
          "umt5like normalizer");
    CHECK(!strcmp(ii->normalizer_name, "identity") && ii->charsmap_size == 0,
          "identity normalizer");
    CHECK(iu->remove_extra_whitespaces && !ii->remove_extra_whitespaces,
          "remove_extra_whitespaces");
    CHECK(iu->n_pieces == 700 && ii->n_pieces == 400, "piece counts");

    /* byte fallback below the character coverage; NUL kept as a byte; specials are text */
    check_pieces(u, "A RED", 5,
                 "\xe2\x96\x81"
                 "A \xe2\x96\x81 R <0x45> D");
    check_pieces(u, "a\0b", 3,
                 "\xe2\x96\x81"
                 "a <0x00> b");
    CHECK(strstr(pieces(u, "</s>", 4), "</s>") == NULL, "</s> in text is not the eos piece");
    /* one <unk> for a run of unknowns without byte fallback; spaces kept one by one */
    check_pieces(id, "\xe4\xb8\x80\xe5\x8f\xaa\xe7\x8c\xab", 9, "\xe2\x96\x81 <unk>");
    check_pieces(id, "  lead  ", 8,
                 "\xe2\x96\x81 \xe2\x96\x81 \xe2\x96\x81le a d \xe2\x96\x81 \xe2\x96\x81");

    /* normalizer: whitespace runs, NFKC, deleted controls, empty results */
    check_norm(u, "  a \t\n b  ", 10,
               "\xe2\x96\x81"
               "a"
               "\xe2\x96\x81"
               "b");
    check_norm(u, "\xef\xbd\x88\xef\xbd\x89", 6, "\xe2\x96\x81hi"); /* full-width */
    check_norm(u,
               "a\x01"
               "b\x7f",
               4,
               "\xe2\x96\x81"
               "ab");
    check_norm(u, "", 0, "");
    check_norm(u, " \t ", 3, "");
    check_norm(u, "\xe2\x96\x81", 3, ""); /* a literal ▁ at the end is trailing whitespace */
    check_norm(id, " a ", 3,
               "\xe2\x96\x81\xe2\x96\x81"
               "a"
               "\xe2\x96\x81");
    check_norm(id,
               "a\xff"
               "b",
               3,
               "\xe2\x96\x81"
               "a\xef\xbf\xbd"
               "b"); /* malformed -> U+FFFD */
    check_norm(id, "\xe0\x80\xaf", 3,
               "\xe2\x96\x81\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* overlong */

    /* malformed UTF-8 encodes without trouble in both models */
    const char bad[] = "\xc3\x28 \xa0\xa1 \xf0\x28\x8c\xbc \xed\xa0\x80 \xff\xfe";
    int32_t *ids;
    size_t n;
    CHECK(hl_spm_encode(u, bad, sizeof bad - 1, &ids, &n, NULL) == HL_OK && n > 0, "bad utf-8 (u)");
    free(ids);
    CHECK(hl_spm_encode(id, bad, sizeof bad - 1, &ids, &n, NULL) == HL_OK && n > 0,
          "bad utf-8 (id)");
    free(ids);
    CHECK(hl_spm_encode(u, "", 0, &ids, &n, NULL) == HL_OK && n == 0 && ids == NULL, "empty");

    /* lookups */
    size_t pl;
    CHECK(hl_spm_piece_to_id(u, "<pad>", 5) == 0 && hl_spm_piece_to_id(u, "</s>", 4) == 1,
          "piece_to_id");
    CHECK(hl_spm_piece_to_id(u, "<0x41>", 6) == 3 + 0x41, "byte piece id");
    CHECK(hl_spm_piece_to_id(u, "no such piece", 13) == 2, "unknown piece -> unk");
    const char *p = hl_spm_id_to_piece(u, 1, &pl);
    CHECK(p && pl == 4 && !memcmp(p, "</s>", 4), "id_to_piece");
    CHECK(hl_spm_id_to_piece(u, 700, &pl) == NULL && hl_spm_id_to_piece(u, -1, &pl) == NULL,
          "range");
    CHECK(hl_spm_piece_type(u, 2) == HL_SPM_UNKNOWN && hl_spm_piece_type(u, 3) == HL_SPM_BYTE &&
              hl_spm_piece_type(u, 0) == HL_SPM_CONTROL && hl_spm_piece_type(u, 9999) == 0,
          "types");

    /* T5 padding and truncation */
    const char *text = "a red fox runs across a snowy mountain pass";
    int32_t *raw;
    size_t nr;
    CHECK(hl_spm_encode(u, text, strlen(text), &raw, &nr, NULL) == HL_OK && nr > 6, "raw");
    int32_t t5[64], mask[64];
    int real = 0;
    CHECK(hl_spm_encode_t5(u, text, strlen(text), 4, t5, mask, &real, NULL) == HL_OK, "t5 L4");
    CHECK(real == 4 && t5[0] == raw[0] && t5[2] == raw[2] && t5[3] == 1 && mask[3] == 1,
          "t5 trunc");
    CHECK(hl_spm_encode_t5(u, text, strlen(text), 64, t5, mask, &real, NULL) == HL_OK, "t5 L64");
    CHECK(real == (int)nr + 1 && t5[nr] == 1 && t5[nr + 1] == 0 && mask[nr] == 1 &&
              mask[nr + 1] == 0 && mask[63] == 0,
          "t5 pad");
    CHECK(hl_spm_encode_t5(id, text, strlen(text), 64, t5, NULL, &real, NULL) == HL_OK &&
              t5[real - 1] == 2 && t5[63] == 3,
          "t5 identity eos/pad");
    CHECK(hl_spm_encode_t5(u, text, strlen(text), 1, t5, mask, &real, NULL) == HL_OK && real == 1 &&
              t5[0] == 1,
          "t5 L1");
    CHECK(hl_spm_encode_t5(u, text, strlen(text), 0, t5, mask, &real, NULL) ==
              HELIOS_ERR_INVALID_ARG,
          "t5 L0");
    free(raw);
done:
    hl_spm_free(u);
    hl_spm_free(id);
}

/* ---- prompt cleaning (expected values from CPython 3.11 html.unescape / the pipeline) -------- */

static void check_clean(const char *in, const char *want) {
    char *out = NULL;
    hl_status st = hl_prompt_clean(in, &out);
    CHECK(st == HL_OK && out && !strcmp(out, want), "clean '%s': got '%s', want '%s'", in,
          out ? out : "?", want);
    free(out);
}

static void test_prompt_clean(void) {
    check_clean("Tom &amp; Jerry", "Tom & Jerry");
    check_clean("&amp;amp; double", "& double");
    check_clean("&amp;amp;amp;", "&amp;"); /* twice, not to a fixpoint */
    check_clean("&ampxyz &ltb &notit; &notin;", "&xyz <b \xc2\xacit; \xe2\x88\x89");
    check_clean("&bogus; &; & &#; &#x; &#xZ", "&bogus; &; & &#; &#x; &#xZ");
    check_clean("&#x1F600;&#128512;&#X1f600", "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80");
    check_clean("&#128;&#150;&#0;x", "\xe2\x82\xac\xe2\x80\x93\xef\xbf\xbdx");
    check_clean("a&#1;b&#xFFFE;c&#xD800;d&#1114112;e&#99999999999999999999;", "abc\xef\xbf\xbd"
                                                                              "d\xef\xbf\xbd"
                                                                              "e\xef\xbf\xbd");
    check_clean("&#13;a&#9;b", "a b"); /* CR from a reference is stripped, TAB collapsed */
    check_clean("&nbsp;x&nbsp;", "x");
    check_clean("&NotNestedGreaterGreater;", "\xe2\xaa\xa2\xcc\xb8");
    check_clean("  a \t\n b\xe3\x80\x80\xc2\xa0 c  ", "a b c");
    check_clean("\x1c\x1d a b \x1e\x1f", "a b"); /* strip() knows U+001C..1F */
    check_clean("a\x1c"
                "b",
                "a\x1c"
                "b"); /* \s does not */
    check_clean("a\xe2\x80\x8b"
                "b\xef\xbb\xbf",
                "a\xe2\x80\x8b"
                "b\xef\xbb\xbf"); /* ZWSP, BOM */
    check_clean("", "");
    check_clean(" \t\n ", "");
    check_clean("&amp", "&");
    /* names are at most 32 code points (+ ';'); the legacy-prefix rule inside them */
    char in[160], want[160];
    snprintf(in, sizeof in, "&%s;", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    check_clean(in, in);
    snprintf(in, sizeof in, "&amp%s;", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    snprintf(want, sizeof want, "&%s;", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    check_clean(in, want);
    in[0] = want[0] = '\0';
    strcat(in, "&amp");
    strcat(want, "&");
    for (int i = 0; i < 29; i++) strcat(in, "\xc3\xa9"), strcat(want, "\xc3\xa9");
    strcat(in, ";"), strcat(want, ";");
    check_clean(in, want);
    check_clean("\xff&amp;\xfe", "\xff&\xfe"); /* malformed bytes pass through */
}

/* ---- hand-built models ------------------------------------------------------------------------ */

typedef struct pbw {
    unsigned char b[1 << 16];
    size_t n;
} pbw;

static void w_varint(pbw *w, uint64_t v) {
    do {
        unsigned char c = v & 0x7f;
        v >>= 7;
        w->b[w->n++] = c | (v ? 0x80 : 0);
    } while (v);
}
static void w_key(pbw *w, int field, int wire) {
    w_varint(w, (uint64_t)field << 3 | (uint64_t)wire);
}
static void w_bytes(pbw *w, int field, const void *p, size_t n) {
    w_key(w, field, 2);
    w_varint(w, n);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void w_sub(pbw *w, int field, const pbw *sub) { w_bytes(w, field, sub->b, sub->n); }
static void w_int(pbw *w, int field, int64_t v) {
    w_key(w, field, 0);
    w_varint(w, (uint64_t)v);
}
static void w_piece(pbw *w, const char *s, float score, int type) {
    pbw p = {.n = 0};
    w_bytes(&p, 1, s, strlen(s));
    uint32_t u;
    memcpy(&u, &score, 4);
    w_key(&p, 2, 5);
    for (int i = 0; i < 4; i++) p.b[p.n++] = (unsigned char)(u >> (8 * i));
    if (type != HL_SPM_NORMAL) w_int(&p, 3, type);
    w_sub(w, 1, &p);
}

/* A charsmap with 'x' -> "yy", 'z' -> " ", 'q' -> "" as a darts-clone array of 512 units:
 * root offset 1 (children at 1 ^ c), each child's value unit at child ^ 256. */
static size_t make_charsmap(unsigned char *out) {
    uint32_t units[512] = {0};
    units[0] = 1u << 10;
    const struct {
        unsigned char c;
        uint32_t value;
    } keys[] = {{'x', 0}, {'z', 3}, {'q', 5}};
    for (int k = 0; k < 3; k++) {
        uint32_t id = 1u ^ keys[k].c;
        units[id] = (256u << 10) | (1u << 8) | keys[k].c;
        units[id ^ 256u] = 0x80000000u | keys[k].value;
    }
    const char strings[] = "yy\0 \0"; /* + the literal's own NUL: "yy" " " "" */
    uint32_t trie_size = sizeof units;
    size_t n = 0;
    for (int i = 0; i < 4; i++) out[n++] = (unsigned char)(trie_size >> (8 * i));
    for (int u = 0; u < 512; u++)
        for (int i = 0; i < 4; i++) out[n++] = (unsigned char)(units[u] >> (8 * i));
    memcpy(out + n, strings, sizeof strings);
    return n + sizeof strings;
}

/* pieces: <unk>, ▁, a, b, ab (unused), <sep> (user-defined), </s> (control), y */
static void make_model(pbw *w, int with_charsmap, int model_type) {
    w->n = 0;
    w_piece(w, "<unk>", 0, HL_SPM_UNKNOWN);
    w_piece(w, "\xe2\x96\x81", -1.0f, HL_SPM_NORMAL);
    w_piece(w, "a", -2.0f, HL_SPM_NORMAL);
    w_piece(w, "b", -2.0f, HL_SPM_NORMAL);
    w_piece(w, "ab", -0.5f, HL_SPM_UNUSED);
    w_piece(w, "<sep>", 0.0f, HL_SPM_USER_DEFINED);
    w_piece(w, "</s>", 0.0f, HL_SPM_CONTROL);
    w_piece(w, "y", -2.0f, HL_SPM_NORMAL);
    pbw t = {.n = 0};
    w_int(&t, 3, model_type);
    w_int(&t, 40, 0);
    w_sub(w, 2, &t);
    if (with_charsmap) {
        pbw ns = {.n = 0};
        static unsigned char cm[4 + 2048 + 8];
        size_t n = make_charsmap(cm);
        w_bytes(&ns, 1, "test", 4);
        w_bytes(&ns, 2, cm, n);
        w_sub(w, 3, &ns);
    }
}

static hl_status load_buf(const pbw *w, hl_spm **m, hl_error *err) {
    hl_error_clear(err);
    return hl_spm_load_mem(w->b, w->n, "built.model", m, err);
}

static void test_built_models(void) {
    static pbw w;
    hl_spm *m = NULL;
    hl_error err;

    make_model(&w, 1, 1);
    CHECK(load_buf(&w, &m, &err) == HL_OK, "built model: %s", err.msg);
    if (m) {
        const hl_spm_info *in = hl_spm_get_info(m);
        CHECK(in->unk_id == 0 && in->eos_id == 6 && in->pad_id == -1 && in->bos_id == -1,
              "specials");
        check_norm(m, "axb", 3,
                   "\xe2\x96\x81"
                   "ayyb"); /* charsmap replacement */
        check_norm(m, "aqb", 3,
                   "\xe2\x96\x81"
                   "ab"); /* deletion */
        check_norm(m, "zz a zzb z", 10,
                   "\xe2\x96\x81"
                   "a\xe2\x96\x81"
                   "b"); /* mapped spaces */
        check_norm(m, "a<sep>x", 7,
                   "\xe2\x96\x81"
                   "a<sep>yy");
        check_pieces(m, "ab<sep>b", 8, "\xe2\x96\x81 a b <sep> b"); /* unused "ab" never matches */
        check_pieces(m, "a cdc b", 7,
                     "\xe2\x96\x81 a \xe2\x96\x81 <unk> \xe2\x96\x81 b"); /* one unk */
        check_pieces(m, "</s>", 4, "\xe2\x96\x81 <unk>"); /* control pieces are not text */
        int32_t t5[4];
        CHECK(hl_spm_encode_t5(m, "a", 1, 4, t5, NULL, NULL, &err) == HELIOS_ERR_UNSUPPORTED,
              "t5 without pad");
        hl_spm_free(m);
        m = NULL;
    }

    make_model(&w, 0, 2);
    CHECK(load_buf(&w, &m, &err) == HELIOS_ERR_UNSUPPORTED && !m, "bpe refused");

    /* each defect alone */
    struct {
        const char *what;
        hl_status want;
    } cases[] = {
        {"duplicate piece", HELIOS_ERR_FORMAT},
        {"no unk", HELIOS_ERR_FORMAT},
        {"byte w/o fallback", HELIOS_ERR_FORMAT},
        {"fallback w/o bytes", HELIOS_ERR_FORMAT},
        {"empty piece", HELIOS_ERR_FORMAT},
        {"long varint", HELIOS_ERR_FORMAT},
        {"group", HELIOS_ERR_FORMAT},
        {"charsmap too big", HELIOS_ERR_FORMAT},
        {"two unks", HELIOS_ERR_FORMAT},
        {"empty", HELIOS_ERR_FORMAT},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        w.n = 0;
        if (c != 1) w_piece(&w, "<unk>", 0, HL_SPM_UNKNOWN);
        switch (c) {
        case 0:
            w_piece(&w, "a", -1, 1);
            w_piece(&w, "a", -2, 1);
            break;
        case 1: w_piece(&w, "a", -1, 1); break;
        case 2: w_piece(&w, "<0x41>", 0, HL_SPM_BYTE); break;
        case 3: {
            pbw t = {.n = 0};
            w_int(&t, 35, 1);
            w_sub(&w, 2, &t);
            w_piece(&w, "<0x41>", 0, HL_SPM_BYTE);
            break;
        }
        case 4: w_piece(&w, "", -1, 1); break;
        case 5:
            for (int i = 0; i < 11; i++) w.b[w.n++] = 0x80 | (i == 0 ? 0x08 : 0);
            w.b[w.n++] = 1;
            break;
        case 6:
            w_key(&w, 9, 3);
            w_key(&w, 9, 4);
            break;
        case 7: {
            pbw ns = {.n = 0};
            unsigned char cm[8] = {0xff, 0xff, 0, 0, 1, 2, 3, 4};
            w_bytes(&ns, 2, cm, sizeof cm);
            w_sub(&w, 3, &ns);
            break;
        }
        case 8: w_piece(&w, "<unk2>", 0, HL_SPM_UNKNOWN); break;
        case 9: w.n = 0; break;
        }
        m = NULL;
        hl_status st = load_buf(&w, &m, &err);
        CHECK(st == cases[c].want && !m, "%s: status %d (%s)", cases[c].what, (int)st, err.msg);
        CHECK(strstr(err.msg, "built.model") != NULL, "%s: message names the file: %s",
              cases[c].what, err.msg);
        hl_spm_free(m);
    }
}

/* ---- hostile files ----------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static const char *k_probe[] = {
    "A red fox runs across a snowy mountain pass.",
    "ｈｅｌｌｏ　ｗｏｒｌｄ ﬁsh ①②",
    "a\0b\x1b[31m",
    "日本語 🎬 \xe2\x96\x81 \xff\xfe",
    "  lead  ",
    "",
};

/* Loads buf; a success must encode the probes; a failure must be a clean format error. */
static int try_model(const unsigned char *buf, size_t n, const char *what) {
    hl_spm *m = NULL;
    hl_error err;
    hl_error_clear(&err);
    hl_status st = hl_spm_load_mem(buf, n, "hostile.model", &m, &err);
    CHECK(st == HL_OK || st == HELIOS_ERR_FORMAT || st == HELIOS_ERR_UNSUPPORTED,
          "%s: status %d (%s)", what, (int)st, err.msg);
    if (st != HL_OK) {
        CHECK(m == NULL && strstr(err.msg, "hostile.model"), "%s: message '%s'", what, err.msg);
        return 0;
    }
    for (size_t i = 0; i < sizeof k_probe / sizeof *k_probe; i++) {
        int32_t *ids, t5[16];
        size_t k;
        size_t len = i == 2 ? 8 : strlen(k_probe[i]); /* the probe with a NUL inside */
        if (hl_spm_encode(m, k_probe[i], len, &ids, &k, &err) == HL_OK) free(ids);
        hl_spm_encode_t5(m, k_probe[i], len, 16, t5, NULL, NULL, &err);
    }
    hl_spm_free(m);
    return 1;
}

static void test_hostile(void) {
    hl_spm *m = (hl_spm *)1;
    hl_error err;
    hl_error_clear(&err);
    CHECK(hl_spm_load("/nonexistent/tokenizer.model", &m, &err) == HELIOS_ERR_IO && m == NULL &&
              strstr(err.msg, "/nonexistent/tokenizer.model"),
          "missing file: %s", err.msg);

    const char *files[] = {"tokenizer_identity.model", "tokenizer_umt5like.model"};
    uint64_t seed = 12345;
    for (int f = 0; f < 2; f++) {
        size_t n;
        unsigned char *buf = read_file(vector_path(files[f]), &n);
        CHECK(buf && n > 1000, "read %s", files[f]);
        if (!buf) continue;
        /* truncations: every length for the small model, a spread for the large one */
        int formats = 0, total = 0;
        size_t step = f == 0 ? 1 : 97;
        for (size_t len = 0; len < n; len += step, total++)
            formats += !try_model(buf, len, "truncated");
        CHECK(!try_model(buf, n - 1, "cut by one byte"), "%s cut by one byte loads", files[f]);
        CHECK(formats > total / 2, "%s: only %d of %d truncations refused", files[f], formats,
              total);
        /* mutations: a few random bytes changed (the charsmap trie included) */
        unsigned char *mut = malloc(n);
        for (int it = 0; mut && it < (f == 0 ? 400 : 150); it++) {
            memcpy(mut, buf, n);
            int flips = 1 + (int)(rng_next(&seed) % 8);
            for (int k = 0; k < flips; k++) {
                size_t at = (size_t)(rng_next(&seed) % n);
                /* half of them in the charsmap of the large model */
                if (f == 1 && k % 2) at = n - 1 - (size_t)(rng_next(&seed) % 237000);
                mut[at] = (unsigned char)rng_next(&seed);
            }
            try_model(mut, n, "mutated");
        }
        free(mut);
        free(buf);
    }
    /* random charsmaps (a well-formed header over garbage units and strings) */
    static pbw w;
    for (int it = 0; it < 200; it++) {
        w.n = 0;
        w_piece(&w, "<unk>", 0, HL_SPM_UNKNOWN);
        w_piece(&w, "a", -1, HL_SPM_NORMAL);
        pbw ns = {.n = 0};
        unsigned char cm[4 + 1024 + 64];
        uint32_t trie = 1024;
        for (int i = 0; i < 4; i++) cm[i] = (unsigned char)(trie >> (8 * i));
        for (size_t i = 4; i < sizeof cm; i++) cm[i] = (unsigned char)rng_next(&seed);
        /* make the root's children reachable for some of the probe's bytes */
        if (it % 2) cm[4] = cm[5] = cm[6] = cm[7] = 0;
        w_bytes(&ns, 2, cm, sizeof cm);
        w_sub(&w, 3, &ns);
        try_model(w.b, w.n, "random charsmap");
    }
    /* random text through the real models */
    hl_spm *real[2] = {load("tokenizer_umt5like.model"), load("tokenizer_identity.model")};
    for (int it = 0; it < 400 && real[0] && real[1]; it++) {
        char text[300];
        size_t len = (size_t)(rng_next(&seed) % sizeof text);
        for (size_t i = 0; i < len; i++) text[i] = (char)rng_next(&seed);
        for (int k = 0; k < 2; k++) {
            int32_t t5[32];
            int nr = 0;
            CHECK(hl_spm_encode_t5(real[k], text, len, 32, t5, NULL, &nr, NULL) == HL_OK && nr >= 1,
                  "random text");
        }
        char *c;
        size_t cl;
        CHECK(hl_prompt_clean_n(text, len, &c, &cl) == HL_OK && cl <= 4 * len, "clean random text");
        free(c);
    }
    hl_spm_free(real[0]);
    hl_spm_free(real[1]);
    /* garbage */
    unsigned char g[4096];
    for (int it = 0; it < 500; it++) {
        size_t len = (size_t)(rng_next(&seed) % sizeof g);
        for (size_t i = 0; i < len; i++) g[i] = (unsigned char)rng_next(&seed);
        try_model(g, len, "garbage");
    }
}


/* ---- Hugging Face tokenizer.json ---------------------------------------------------------------- */

static void jb_str(hl_spm_buf *b, const char *s) { hl_spm_buf_append(b, s, strlen(s)); }

/* A JSON string literal of s[0..n) (UTF-8 kept as is, controls escaped). */
static void jb_quoted(hl_spm_buf *b, const char *s, size_t n) {
    jb_str(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, esc[2] = '\0';
            jb_str(b, esc);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            jb_str(b, esc);
        } else {
            hl_spm_buf_append(b, &s[i], 1);
        }
    }
    jb_str(b, "\"");
}

static void jb_base64(hl_spm_buf *b, const unsigned char *p, size_t n) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        char q[4] = {a[v >> 18 & 63], a[v >> 12 & 63], i + 1 < n ? a[v >> 6 & 63] : '=',
                     i + 2 < n ? a[v & 63] : '='};
        hl_spm_buf_append(b, q, 4);
    }
}

/* The tokenizer.json the HF converter writes for model m. normalizer: a replacement for the
 * normalizer section (NULL: Precompiled of m's charsmap + T5's whitespace rules). */
static char *make_tokenizer_json(const hl_spm *m, const char *normalizer, size_t *len) {
    const hl_spm_info *in = hl_spm_get_info(m);
    hl_spm_buf b = {0};
    char num[64];
    jb_str(&b, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[");
    int first = 1;
    for (int i = 0; i < in->n_pieces; i++) {
        int t = hl_spm_piece_type(m, i);
        if (t != HL_SPM_CONTROL && t != HL_SPM_UNKNOWN && t != HL_SPM_USER_DEFINED) continue;
        size_t pl;
        const char *p = hl_spm_id_to_piece(m, i, &pl);
        snprintf(num, sizeof num, "%s{\"id\":%d,\"content\":", first ? "" : ",", i);
        jb_str(&b, num);
        jb_quoted(&b, p, pl);
        jb_str(&b, ",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,"
                   "\"special\":");
        jb_str(&b, t == HL_SPM_USER_DEFINED ? "false}" : "true}");
        first = 0;
    }
    jb_str(&b, "],\"normalizer\":");
    if (normalizer) {
        jb_str(&b, normalizer);
    } else if (m->charsmap_size) {
        jb_str(&b, "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Precompiled\","
                   "\"precompiled_charsmap\":\"");
        jb_base64(&b, m->charsmap, m->charsmap_size);
        jb_str(&b, "\"},{\"type\":\"Strip\",\"strip_left\":false,\"strip_right\":true},"
                   "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" {2,}\"},\"content\":\""
                   "\xe2\x96\x81\"}]}");
    } else {
        jb_str(&b, "null");
    }
    jb_str(&b, ",\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":"
               "\"WhitespaceSplit\"},{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\","
               "\"add_prefix_space\":true,\"prepend_scheme\":\"always\",\"split\":true}]},");
    snprintf(num, sizeof num, "%d", in->eos_id);
    jb_str(&b, "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":"
               "{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],"
               "\"pair\":[],\"special_tokens\":{\"</s>\":{\"id\":\"</s>\",\"ids\":[");
    jb_str(&b, num);
    jb_str(&b, "],\"tokens\":[\"</s>\"]}}},\"decoder\":null,\"model\":{\"type\":\"Unigram\",");
    snprintf(num, sizeof num, "\"unk_id\":%d,\"vocab\":[", in->unk_id);
    jb_str(&b, num);
    for (int i = 0; i < in->n_pieces; i++) {
        size_t pl;
        const char *p = hl_spm_id_to_piece(m, i, &pl);
        jb_str(&b, i ? ",[" : "[");
        jb_quoted(&b, p, pl);
        snprintf(num, sizeof num, ",%.9g]", (double)hl_spm_piece_score(m, i));
        jb_str(&b, num);
    }
    jb_str(&b, in->byte_fallback ? "],\"byte_fallback\":true}}" : "],\"byte_fallback\":false}}");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

static int write_file(const char *path, const char *s, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(s, 1, n, f);
    return (fclose(f) == 0) & (w == n);
}

/* Every string of the vectors (raw and cleaned): plain and T5 ids equal between a and b. */
static void compare_on_vectors(const hl_spm *a, const hl_spm *b) {
    hl_safetensors *st = NULL;
    hl_error err;
    hl_error_clear(&err);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_vectors.safetensors", HELIOS_VECTORS);
    CHECK(hl_st_open(path, &st, &err) == HL_OK, "open %s: %s", path, err.msg);
    if (!st) return;
    const hl_st_tensor *u = hl_st_find(st, "strings.utf8");
    int64_t *off = NULL;
    CHECK(u && hl_st_read_i64(st, "strings.offsets", -1, &off, &err) == HL_OK, "strings: %s",
          err.msg);
    const hl_st_tensor *o = hl_st_find(st, "strings.offsets");
    long n_strings = 0, bad = 0;
    for (int64_t i = 0; u && off && o && i + 1 < o->shape[0]; i++) {
        if (off[i] < 0 || off[i + 1] < off[i] || (size_t)off[i + 1] > u->nbytes) break;
        const char *s = (const char *)u->data + off[i];
        size_t len = (size_t)(off[i + 1] - off[i]);
        char *clean = NULL;
        size_t clean_len = 0;
        if (hl_prompt_clean_n(s, len, &clean, &clean_len) != HL_OK) clean = NULL;
        for (int pass = 0; pass < 2; pass++) {
            const char *t = pass ? clean : s;
            size_t tl = pass ? clean_len : len;
            if (!t) continue;
            n_strings++;
            int32_t *ia = NULL, *ib = NULL;
            size_t na = 0, nb = 0;
            hl_status sa = hl_spm_encode(a, t, tl, &ia, &na, NULL);
            hl_status sb = hl_spm_encode(b, t, tl, &ib, &nb, NULL);
            int same = sa == HL_OK && sb == HL_OK && na == nb &&
                       (na == 0 || !memcmp(ia, ib, na * sizeof *ia));
            static const int lens[] = {32, 512};
            for (int k = 0; k < 2 && same; k++) {
                int32_t ta[512], tb[512], ma[512], mb[512];
                int ra = 0, rb = 0;
                same = hl_spm_encode_t5(a, t, tl, lens[k], ta, ma, &ra, NULL) == HL_OK &&
                       hl_spm_encode_t5(b, t, tl, lens[k], tb, mb, &rb, NULL) == HL_OK &&
                       ra == rb && !memcmp(ta, tb, (size_t)lens[k] * sizeof *ta) &&
                       !memcmp(ma, mb, (size_t)lens[k] * sizeof *ma);
            }
            if (!same) bad++;
            free(ia);
            free(ib);
        }
        free(clean);
    }
    printf("  tokenizer.json vs spiece.model: %ld/%ld strings identical\n", n_strings - bad,
           n_strings);
    CHECK(bad == 0 && n_strings > 10, "tokenizer.json: %ld of %ld strings differ", bad, n_strings);
    free(off);
    hl_st_close(st);
}

/* Loads text as a tokenizer.json; expects status want and, on failure, a message naming the file
 * and containing `word`. */
static void expect_json(const char *path, const char *text, size_t n, hl_status want,
                        const char *word) {
    CHECK(write_file(path, text, n), "write %s", path);
    hl_spm *m = (hl_spm *)1;
    hl_error err;
    hl_error_clear(&err);
    hl_status st = hl_spm_load_tokenizer_json(path, &m, &err);
    CHECK(st == want, "%s: status %d, want %d (%s)", word, (int)st, (int)want, err.msg);
    if (st != HL_OK) {
        CHECK(m == NULL && strstr(err.msg, path) && strstr(err.msg, word), "%s: message '%s'", word,
              err.msg);
    } else {
        hl_spm_free(m);
    }
}

static void test_tokenizer_json(void) {
    char dir[] = "/tmp/helios_tokjson_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256], spm_copy[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(spm_copy, sizeof spm_copy, "%s/spiece.model", dir);
    const char *models[] = {"tokenizer_umt5like.model", "tokenizer_identity.model"};
    for (int k = 0; k < 2; k++) {
        hl_spm *ref = load(models[k]);
        if (!ref) continue;
        size_t n = 0;
        char *json = make_tokenizer_json(ref, NULL, &n);
        CHECK(json && write_file(path, json, n), "write %s", path);
        hl_spm *m = NULL;
        hl_error err;
        hl_error_clear(&err);
        hl_status st = hl_spm_load_tokenizer_json(path, &m, &err);
        /* the identity model has no charsmap and keeps spaces: its normalizer is null */
        CHECK(st == HL_OK && m, "load %s from %s: %s", path, models[k], err.msg);
        if (m) {
            const hl_spm_info *a = hl_spm_get_info(ref), *b = hl_spm_get_info(m);
            CHECK(
                a->n_pieces == b->n_pieces && a->unk_id == b->unk_id && a->eos_id == b->eos_id &&
                    a->pad_id == b->pad_id && a->bos_id == b->bos_id &&
                    a->byte_fallback == b->byte_fallback && a->charsmap_size == b->charsmap_size &&
                    a->add_dummy_prefix == b->add_dummy_prefix &&
                    a->escape_whitespaces == b->escape_whitespaces,
                "%s: info differs (unk %d/%d eos %d/%d pad %d/%d bos %d/%d)", models[k], a->unk_id,
                b->unk_id, a->eos_id, b->eos_id, a->pad_id, b->pad_id, a->bos_id, b->bos_id);
            int types_same = 1;
            for (int i = 0; i < a->n_pieces; i++) {
                int ta = hl_spm_piece_type(ref, i), tb = hl_spm_piece_type(m, i);
                /* tokenizer.json cannot say UNUSED: such pieces come back NORMAL */
                types_same &= ta == tb || (ta == HL_SPM_UNUSED && tb == HL_SPM_NORMAL);
                types_same &= hl_spm_piece_score(ref, i) == hl_spm_piece_score(m, i);
            }
            CHECK(types_same, "%s: piece types / scores differ", models[k]);
            CHECK(a->remove_extra_whitespaces == b->remove_extra_whitespaces,
                  "%s: remove_extra_whitespaces differs", models[k]);
            printf("  %s:\n", models[k]);
            compare_on_vectors(ref, m);
            hl_spm_free(m);
        }
        if (k == 0 && json) {
            /* the text encoder picks tokenizer.json when there is no spiece.model */
            hl_text_encoder *te = NULL;
            hl_error_clear(&err);
            /* the encoder's config.json is read at open (its vocab must hold every piece) */
            char te_cfg[300], cfg_text[64];
            snprintf(te_cfg, sizeof te_cfg, "%s/config.json", dir);
            snprintf(cfg_text, sizeof cfg_text, "{\"vocab_size\": %d}",
                     hl_spm_get_info(ref)->n_pieces);
            FILE *cf = fopen(te_cfg, "w");
            CHECK(cf && fputs(cfg_text, cf) >= 0 && fclose(cf) == 0, "write %s", te_cfg);
            st = hl_text_encoder_open(dir, dir, &te, &err);
            CHECK(st == HL_OK && te, "text encoder on tokenizer.json: %s", err.msg);
            hl_text_encoder_free(te);
            /* a vocab smaller than the tokenizer fails at open, naming the key */
            snprintf(cfg_text, sizeof cfg_text, "{\"vocab_size\": %d}",
                     hl_spm_get_info(ref)->n_pieces - 1);
            cf = fopen(te_cfg, "w");
            CHECK(cf && fputs(cfg_text, cf) >= 0 && fclose(cf) == 0, "write %s", te_cfg);
            te = NULL;
            st = hl_text_encoder_open(dir, dir, &te, &err);
            CHECK(st == HELIOS_ERR_FORMAT && !te && strstr(err.msg, "config.json") &&
                      strstr(err.msg, "'vocab_size'"),
                  "vocab smaller than the tokenizer: %s", err.msg);
            unlink(te_cfg);

            /* clean errors */
            expect_json(path, json, n / 2, HELIOS_ERR_FORMAT, "tokenizer.json"); /* truncated */
            static const struct {
                const char *text;
                hl_status want;
                const char *word;
            } docs[] = {
                {"[1,2", HELIOS_ERR_FORMAT, "tokenizer.json"},
                {"[]", HELIOS_ERR_FORMAT, "top level"},
                {"{}", HELIOS_ERR_FORMAT, "model"},
                {"{\"model\":{\"type\":\"BPE\",\"vocab\":{}}}", HELIOS_ERR_UNSUPPORTED, "BPE"},
                {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"a\"]]}}",
                 HELIOS_ERR_FORMAT, "vocab entry 0"},
                {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":5,\"vocab\":[[\"a\",0]]}}",
                 HELIOS_ERR_FORMAT, "unk_id"},
                {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":null,\"vocab\":[[\"a\",0]]}}",
                 HELIOS_ERR_UNSUPPORTED, "unk_id"},
                {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0],"
                 "[\"<unk>\",0]]}}",
                 HELIOS_ERR_FORMAT, "already defined"},
                {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0]]},"
                 "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
                 HELIOS_ERR_UNSUPPORTED, "ByteLevel"},
                {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0]]},"
                 "\"post_processor\":{\"type\":\"BertProcessing\"}}",
                 HELIOS_ERR_UNSUPPORTED, "post_processor"},
                {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0]]},"
                 "\"added_tokens\":[{\"id\":0,\"content\":\"</s>\",\"special\":true}]}",
                 HELIOS_ERR_FORMAT, "added_tokens"},
                {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0],"
                 "[\"a\",-1]]}}",
                 HL_OK, ""},
            };
            for (size_t c = 0; c < sizeof docs / sizeof *docs; c++)
                expect_json(path, docs[c].text, strlen(docs[c].text), docs[c].want, docs[c].word);
            static const struct {
                const char *norm;
                hl_status want;
                const char *word;
            } cases[] = {
                {"{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"QUJD$EVG\"}",
                 HELIOS_ERR_FORMAT, "base64"},
                {"{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"QUJDR\"}", HELIOS_ERR_FORMAT,
                 "base64"},
                {"{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"QUJDREVG\"}",
                 HELIOS_ERR_FORMAT, "tokenizer.json"}, /* valid base64, not a charsmap */
                {"{\"type\":\"NFKC\"}", HELIOS_ERR_UNSUPPORTED, "NFKC"},
                {"{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Lowercase\"}]}",
                 HELIOS_ERR_UNSUPPORTED, "Lowercase"},
                {"{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Replace\",\"pattern\":"
                 "{\"String\":\"a\"},\"content\":\"b\"}]}",
                 HELIOS_ERR_UNSUPPORTED, "normalizer"},
                {"{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Strip\",\"strip_left\":true,"
                 "\"strip_right\":true}]}",
                 HELIOS_ERR_UNSUPPORTED, "Strip"},
                {"{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Replace\",\"pattern\":"
                 "{\"Regex\":\" {2,}\"},\"content\":\" \"}]}",
                 HL_OK, ""},
                {"{\"type\":\"Sequence\",\"normalizers\":[]}", HL_OK, ""},
                {"42", HELIOS_ERR_FORMAT, "normalizer"},
            };
            for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
                size_t bn = 0;
                char *bj = make_tokenizer_json(ref, cases[c].norm, &bn);
                CHECK(bj != NULL, "build json");
                if (bj) expect_json(path, bj, bn, cases[c].want, cases[c].word);
                free(bj);
            }
            /* neither file */
            remove(path);
            te = (hl_text_encoder *)1;
            hl_error_clear(&err);
            st = hl_text_encoder_open(dir, dir, &te, &err);
            CHECK(st == HELIOS_ERR_MISSING && te == NULL && strstr(err.msg, dir),
                  "empty tokenizer dir: %d %s", (int)st, err.msg);
        }
        free(json);
        hl_spm_free(ref);
    }
    remove(path);
    remove(spm_copy);
    rmdir(dir);
}

int main(void) {
    test_vectors();
    test_readme_behaviours();
    test_prompt_clean();
    test_built_models();
    test_hostile();
    test_tokenizer_json();
    return test_done("test_tokenizer");
}
