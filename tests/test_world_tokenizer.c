/* The tiny models' tokenizer (src/world/tokenizer.c, text/spm_write.c): every caption the world
 * makes tokenizes into one piece per word and punctuation mark, without <unk>, and decodes back
 * to its normalized text; the file is the same on every run, is read by the text encoder of
 * `helios generate`, and every truncation of it is refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helios.h"
#include "test_util.h"
#include "text/prompt_encode.h"
#include "text/spm.h"
#include "text/spm_write.h"
#include "world/world.h"

#define MODEL HELIOS_VECTORS "/../models/tiny-random-model"
#define SPACE "\xe2\x96\x81" /* U+2581 */

static hl_spm *load_world_tokenizer(void) {
    char *buf = NULL;
    size_t len = 0;
    hl_error err;
    hl_error_clear(&err);
    hl_spm *m = NULL;
    CHECK(hl_world_tokenizer(&buf, &len, NULL, &err) == HL_OK, "tokenizer: %s", err.msg);
    if (buf) CHECK(hl_spm_load_mem(buf, len, "world.model", &m, &err) == HL_OK, "%s", err.msg);
    free(buf);
    return m;
}

static bool is_caption_word(const hl_world_vocab *v, const char *w, size_t n) {
    for (int i = 0; i < v->n_caption_words; i++)
        if (strlen(v->words[i]) == n && !memcmp(v->words[i], w, n)) return true;
    return false;
}

/* The pieces a caption must give: "▁word" per word, then a piece per trailing punctuation mark;
 * as a space-separated string of pieces. */
static void expected_pieces(const char *caption, char *out, size_t cap) {
    size_t o = 0;
    out[0] = '\0';
    for (const char *p = caption; *p;) {
        while (*p == ' ') p++;
        if (!*p) break;
        const char *e = p;
        while (*e && *e != ' ' && *e != ',' && *e != '.') e++;
        o += (size_t)snprintf(out + o, cap - o, "%s" SPACE "%.*s", o ? " " : "", (int)(e - p), p);
        for (; *e && *e != ' '; e++) o += (size_t)snprintf(out + o, cap - o, " %c", *e);
        p = e;
    }
}

/* Checks one caption; *words_seen marks the vocabulary words it uses. */
static void check_caption(const hl_spm *m, const hl_world_vocab *v, const char *caption,
                          bool *words_seen) {
    hl_error err;
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(hl_spm_encode(m, caption, strlen(caption), &ids, &n, &err) == HL_OK, "encode: %s",
          err.msg);
    char got[2048] = "", want[2048], joined[2048] = "";
    size_t g = 0, j = 0;
    bool unk = false, whole = true;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *piece = hl_spm_id_to_piece(m, ids[i], &len);
        unk |= ids[i] == hl_spm_get_info(m)->unk_id;
        g += (size_t)snprintf(got + g, sizeof got - g, "%s%.*s", i ? " " : "", (int)len, piece);
        j += (size_t)snprintf(joined + j, sizeof joined - j, "%.*s", (int)len, piece);
        /* a whole word of the caption vocabulary, or one punctuation mark */
        if (len > 3 && !memcmp(piece, SPACE, 3)) {
            whole &= is_caption_word(v, piece + 3, len - 3);
            for (int w = 0; w < v->n_words; w++)
                if (strlen(v->words[w]) == len - 3 && !memcmp(v->words[w], piece + 3, len - 3))
                    words_seen[w] = true;
        } else {
            whole &= len == 1 && strchr(v->punct, piece[0]) != NULL;
        }
    }
    CHECK(!unk, "<unk> in '%s': %s", caption, got);
    CHECK(whole, "not whole caption words in '%s': %s", caption, got);
    expected_pieces(caption, want, sizeof want);
    CHECK(!strcmp(got, want), "'%s' gives\n  %s\nnot\n  %s", caption, got, want);
    /* decoding (the pieces joined) gives the normalized text back: "▁a▁small▁red..." */
    char *norm = NULL;
    size_t norm_len = 0;
    CHECK(hl_spm_normalize(m, caption, strlen(caption), &norm, &norm_len, &err) == HL_OK, "%s",
          err.msg);
    CHECK(norm && !strcmp(joined, norm), "decode '%s' != normalized '%s'", joined,
          norm ? norm : "");
    char spaced[2048];
    size_t s = (size_t)snprintf(spaced, sizeof spaced, SPACE);
    for (const char *p = caption; *p; p++)
        s += (size_t)snprintf(spaced + s, sizeof spaced - s, *p == ' ' ? SPACE : "%c", *p);
    CHECK(!strcmp(joined, spaced), "decode '%s' != '%s'", joined, spaced);
    free(norm);
    free(ids);
}

/* Every caption of many worlds: 200 seeds x 30 s of random scenes with all event kinds, at most
 * 6 objects for some (lists with commas), and scenes from prompts. */
static void test_captions(void) {
    hl_spm *m = load_world_tokenizer();
    hl_world_vocab v;
    hl_error err;
    CHECK(hl_world_vocab_words(&v, &err) == HL_OK, "vocab: %s", err.msg);
    if (!m) return;
    bool seen[HL_WORLD_MAX_WORDS] = {false};
    int n_captions = 0, fails_before = g_failures;
    for (uint64_t seed = 0; seed < 200 && g_failures == fails_before; seed++) {
        hl_world w = {0};
        hl_world_config c = {.seed = seed,
                             .width = 16,
                             .height = 16,
                             .fps = 24,
                             .max_objects = seed % 3 == 0 ? HL_MAX_OBJECTS : 4,
                             .events = true,
                             .camera = seed % 2 == 0,
                             .lighting = seed % 4 < 2};
        CHECK(hl_world_init(&w, &c, &err) == HL_OK, "world %llu: %s", (unsigned long long)seed,
              err.msg);
        char last[sizeof w.caption] = "";
        for (int f = 0; f < 30 * 24; f++) {
            if (f) hl_world_step(&w);
            if (!strcmp(last, w.caption)) continue;
            memcpy(last, w.caption, sizeof last);
            check_caption(m, &v, w.caption, seen);
            n_captions++;
        }
        hl_world_release(&w);
    }
    /* the captions of prompt scenes, with every motion for one object and for several */
    static const char *const prompts[] = {
        "a large red star spins on a navy background",
        "a small white ring and a medium pink square grow and shrink on a teal textured background",
        "a tiny cyan ball orbits on a dark gray and maroon gradient background as the camera pans",
    };
    for (size_t i = 0; i < sizeof prompts / sizeof *prompts; i++) {
        hl_world w = {0};
        hl_world_config c = {.seed = 7, .width = 16, .height = 16, .fps = 24, .max_objects = 4};
        c.prompt = prompts[i];
        CHECK(hl_world_init(&w, &c, &err) == HL_OK, "prompt world: %s", err.msg);
        check_caption(m, &v, w.caption, seen);
        n_captions++;
        hl_world_release(&w);
    }
    int n_seen = 0;
    for (int i = 0; i < v.n_caption_words; i++) n_seen += seen[i];
    printf("  %d captions, %d of the %d caption words seen, %d pieces\n", n_captions, n_seen,
           v.n_caption_words, hl_spm_get_info(m)->n_pieces);
    CHECK(n_captions > 1000, "only %d captions", n_captions);
    /* the caption vocabulary holds no word captions never use */
    for (int i = 0; i < v.n_caption_words; i++)
        CHECK(seen[i], "caption word '%s' never seen in a caption", v.words[i]);
    hl_spm_free(m);
}

/* The piece table: specials as umT5's, small, every vocabulary word one piece; fallbacks. */
static void test_pieces(void) {
    hl_spm *m = load_world_tokenizer();
    if (!m) return;
    const hl_spm_info *in = hl_spm_get_info(m);
    CHECK(in->pad_id == 0 && in->eos_id == 1 && in->unk_id == 2 && in->bos_id == -1,
          "specials pad %d eos %d unk %d bos %d", in->pad_id, in->eos_id, in->unk_id, in->bos_id);
    static const char *const special[] = {"<pad>", "</s>", "<unk>"};
    for (int i = 0; i < 3; i++) {
        const char *p = hl_spm_id_to_piece(m, i, NULL);
        CHECK(p && !strcmp(p, special[i]), "piece %d is '%s', not '%s'", i, p ? p : "", special[i]);
    }
    CHECK(in->model_type == 1 && !in->byte_fallback && in->charsmap_size > 0 &&
              in->add_dummy_prefix && in->remove_extra_whitespaces && in->escape_whitespaces &&
              !strcmp(in->normalizer_name, "ascii_lowercase"),
          "model and normalizer spec");
    CHECK(in->n_pieces >= 100 && in->n_pieces <= 300, "%d pieces", in->n_pieces);
    hl_world_vocab v;
    hl_error err;
    CHECK(hl_world_vocab_words(&v, &err) == HL_OK, "vocab: %s", err.msg);
    CHECK(v.n_caption_words > 30 && v.n_caption_words < v.n_words, "%d caption words of %d",
          v.n_caption_words, v.n_words);
    CHECK(!strcmp(v.punct, ","), "punctuation '%s'", v.punct);
    for (int i = 0; i < v.n_words; i++) {
        char piece[64];
        snprintf(piece, sizeof piece, SPACE "%s", v.words[i]);
        int id = hl_spm_piece_to_id(m, piece, strlen(piece));
        CHECK(id == 3 + i && hl_spm_piece_type(m, id) == HL_SPM_NORMAL, "'%s' has id %d", piece,
              id);
    }
    /* the parser's synonyms are pieces too */
    static const char *const words[] = {"ball", "tiny", "rotating", "texture", "panning", "gray"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        char piece[64];
        snprintf(piece, sizeof piece, SPACE "%s", words[i]);
        CHECK(hl_spm_piece_to_id(m, piece, strlen(piece)) != in->unk_id, "no piece '%s'", piece);
    }
    /* fallbacks: unknown lowercase words and digits spell out; other characters are <unk> */
    struct {
        const char *text, *pieces;
    } cases[] = {
        {"a red dog.", SPACE "a " SPACE "red " SPACE " d o g ."},
        {"  42  blue balls ", SPACE " 4 2 " SPACE "blue " SPACE "balls"},
        {"reds", SPACE "red s"},
        {"A Red", SPACE "a " SPACE "red"},
        {"A LARGE Red STAR.", SPACE "a " SPACE "large " SPACE "red " SPACE "star ."},
        {"\xc3\xa9t\xc3\xa9 \xc3\x89T\xc3\x89", SPACE " <unk> t <unk> " SPACE " <unk> t <unk>"},
        {"red+blue", SPACE "red <unk> b l u e"},
        {"", ""},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(hl_spm_encode(m, cases[c].text, strlen(cases[c].text), &ids, &n, &err) == HL_OK, "%s",
              err.msg);
        char got[512] = "";
        size_t g = 0;
        for (size_t i = 0; i < n; i++) {
            size_t len;
            const char *p = hl_spm_id_to_piece(m, ids[i], &len);
            g += (size_t)snprintf(got + g, sizeof got - g, "%s%.*s", i ? " " : "", (int)len, p);
        }
        free(ids);
        CHECK(!strcmp(got, cases[c].pieces), "'%s' gives '%s', not '%s'", cases[c].text, got,
              cases[c].pieces);
    }
    /* random bytes never fail */
    uint64_t s = 99;
    for (int it = 0; it < 300; it++) {
        char text[200];
        size_t len = (size_t)(it % 200);
        for (size_t i = 0; i < len; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            text[i] = (char)(s >> 56);
        }
        int32_t ids[64];
        int nr = 0;
        CHECK(hl_spm_encode_t5(m, text, len, 64, ids, NULL, &nr, &err) == HL_OK && nr >= 1,
              "random text: %s", err.msg);
    }
    hl_spm_free(m);
}

/* The same bytes every time; the file is what the buffer is. */
static void test_deterministic(const char *dir) {
    char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    int np = 0;
    hl_error err;
    CHECK(hl_world_tokenizer(&a, &na, &np, &err) == HL_OK, "%s", err.msg);
    CHECK(hl_world_tokenizer(&b, &nb, NULL, &err) == HL_OK, "%s", err.msg);
    CHECK(a && b && na == nb && !memcmp(a, b, na), "two runs differ");
    char p1[300], p2[300];
    snprintf(p1, sizeof p1, "%s/one.model", dir);
    snprintf(p2, sizeof p2, "%s/two.model", dir);
    int n1 = 0;
    CHECK(hl_world_tokenizer_write(p1, &n1, &err) == HL_OK, "write: %s", err.msg);
    CHECK(hl_world_tokenizer_write(p2, NULL, &err) == HL_OK, "write: %s", err.msg);
    CHECK(n1 == np && np > 0, "pieces %d / %d", n1, np);
    size_t f1 = 0, f2 = 0;
    unsigned char *d1 = read_file(p1, &f1), *d2 = read_file(p2, &f2);
    CHECK(d1 && d2 && f1 == na && f2 == na && !memcmp(d1, a, na) && !memcmp(d2, a, na),
          "files differ from the buffer");
    char part[320];
    snprintf(part, sizeof part, "%s.part", p1);
    CHECK(access(part, F_OK) != 0, "%s left behind", part);
    hl_spm *m = NULL;
    CHECK(hl_spm_load(p1, &m, &err) == HL_OK && hl_spm_get_info(m)->n_pieces == np,
          "load the file: %s", err.msg);
    hl_spm_free(m);
    printf("  tokenizer: %zu bytes, %d pieces\n", na, np);
    free(d1), free(d2), free(a), free(b);
    unlink(p1), unlink(p2);
    /* an unwritable path is an error naming it */
    CHECK(hl_world_tokenizer_write("/nonexistent/dir/x.model", NULL, &err) == HELIOS_ERR_IO &&
              strstr(err.msg, "/nonexistent/dir/x.model"),
          "unwritable: %s", err.msg);
}

/* Every truncation and a spread of corruptions are refused with a message naming the file. */
static void test_truncated(void) {
    char *buf = NULL;
    size_t len = 0;
    hl_error err;
    CHECK(hl_world_tokenizer(&buf, &len, NULL, &err) == HL_OK, "%s", err.msg);
    if (!buf) return;
    int loaded = 0;
    for (size_t n = 0; n < len; n++) {
        hl_spm *m = NULL;
        hl_error_clear(&err);
        hl_status st = hl_spm_load_mem(buf, n, "cut.model", &m, &err);
        if (st == HL_OK) loaded++;
        else
            CHECK(st == HELIOS_ERR_FORMAT && !m && strstr(err.msg, "cut.model"),
                  "cut at %zu: status %d '%s'", n, (int)st, err.msg);
        hl_spm_free(m);
    }
    CHECK(loaded == 0, "%d of %zu truncations load", loaded, len);
    /* a cut between two pieces names the cause */
    hl_spm *m = NULL;
    size_t cut = 0; /* the last cut that leaves whole pieces */
    for (size_t n = len - 1; n > 0 && !cut; n--) {
        hl_spm *t = NULL;
        hl_status st = hl_spm_load_mem(buf, n, "cut.model", &t, &err);
        if (st == HELIOS_ERR_FORMAT && strstr(err.msg, "truncated: ")) cut = n;
        hl_spm_free(t);
    }
    CHECK(hl_spm_load_mem(buf, cut, "cut.model", &m, &err) == HELIOS_ERR_FORMAT &&
              strstr(err.msg, "cut.model: truncated: ") && strstr(err.msg, "vocab_size"),
          "a cut between pieces: %s", err.msg);
    /* corruptions: never a crash; a failure is a format error naming the file */
    char *mut = malloc(len);
    uint64_t s = 7;
    int refused = 0;
    for (int it = 0; mut && it < 500; it++) {
        memcpy(mut, buf, len);
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t at = (size_t)(s >> 33) % len;
        mut[at] = (char)(mut[at] ^ (char)(1 + (s >> 20) % 255));
        m = NULL;
        hl_status st = hl_spm_load_mem(mut, len, "bad.model", &m, &err);
        if (st != HL_OK) {
            refused++;
            CHECK(!m && (st == HELIOS_ERR_FORMAT || st == HELIOS_ERR_UNSUPPORTED) &&
                      strstr(err.msg, "bad.model"),
                  "corrupt byte %zu: %d '%s'", at, (int)st, err.msg);
        }
        hl_spm_free(m);
    }
    printf("  %zu truncations refused, %d of 500 one-byte corruptions refused\n", len, refused);
    free(mut);
    free(buf);
}

/* The text encoder of `helios generate` reads it from a tokenizer folder (spiece.model) and
 * encodes captions with the tiny random UMT5 (vocab 700). */
static void test_text_encoder(const char *dir) {
    char path[300];
    snprintf(path, sizeof path, "%s/spiece.model", dir);
    hl_error err;
    hl_error_clear(&err);
    int np = 0;
    CHECK(hl_world_tokenizer_write(path, &np, &err) == HL_OK, "write: %s", err.msg);
    hl_text_encoder *te = NULL;
    CHECK(hl_text_encoder_open(MODEL "/text_encoder", dir, &te, &err) == HL_OK && te,
          "text encoder open: %s", err.msg);
    if (!te) return;
    const char *caption = "a small red circle and a medium blue square bounce on a dark green "
                          "background in changing light";
    enum { L = 32 };
    int32_t ids[L], mask[L];
    int nr = 0;
    CHECK(hl_spm_encode_t5(te->spm, caption, strlen(caption), L, ids, mask, &nr, &err) == HL_OK,
          "%s", err.msg);
    CHECK(nr == 19 && ids[nr - 1] == 1 && ids[nr] == 0 && ids[L - 1] == 0 && mask[nr - 1] == 1 &&
              mask[nr] == 0,
          "T5 ids: %d real, eos %d, pad %d", nr, ids[nr - 1], ids[nr]);
    for (int i = 0; i < nr - 1; i++) CHECK(ids[i] > 2 && ids[i] < np, "id %d = %d", i, ids[i]);
    int dim = 0;
    hl_text_encoder_dim(te, &dim, &err);
    float *out = malloc(sizeof(float) * L * (size_t)dim);
    hl_ctx ctx = test_ctx(HELIOS_BACKEND_REF, &err);
    CHECK(out && hl_text_encode(&ctx, te, caption, L, out) == HL_OK, "encode: %s", err.msg);
    if (out) {
        bool finite = true, zero_pad = true, nonzero = false;
        for (int t = 0; t < L; t++)
            for (int d = 0; d < dim; d++) {
                float x = out[t * dim + d];
                finite &= isfinite(x);
                if (t >= nr) zero_pad &= x == 0.0f;
                else nonzero |= x != 0.0f;
            }
        CHECK(finite && zero_pad && nonzero, "embeddings: finite %d, padding zero %d", finite,
              zero_pad);
    }
    free(out);
    hl_text_encoder_free(te);
    /* a truncated spiece.model fails at open, naming the file */
    size_t n = 0;
    unsigned char *buf = read_file(path, &n);
    FILE *f = fopen(path, "wb");
    CHECK(buf && f && fwrite(buf, 1, n - n / 3, f) == n - n / 3 && fclose(f) == 0, "rewrite");
    te = NULL;
    CHECK(hl_text_encoder_open(MODEL "/text_encoder", dir, &te, &err) == HELIOS_ERR_FORMAT && !te &&
              strstr(err.msg, "spiece.model"),
          "truncated spiece.model: %s", err.msg);
    free(buf);
    unlink(path);
}

/* The writer refuses what it cannot write. */
static void test_writer_errors(void) {
    char *buf = NULL;
    size_t len = 0;
    hl_error err;
    struct {
        hl_spm_new_piece p[2];
        const char *want;
    } cases[] = {
        {{{"a", -1}, {"", -1}}, "piece 1 is empty"},  {{{"a", -1}, {"a", -2}}, "already defined"},
        {{{"a", -1}, {"</s>", -2}}, "special piece"}, {{{"a b", -1}, {"c", -2}}, "space"},
        {{{"a", -1}, {"\xff", -2}}, "UTF-8"},         {{{"a", NAN}, {"b", -2}}, "score"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        hl_error_clear(&err);
        hl_status st = hl_spm_write_unigram(cases[c].p, 2, c % 2, &buf, &len, &err);
        CHECK(st != HL_OK && !buf && strstr(err.msg, cases[c].want), "case %zu: %d '%s'", c,
              (int)st, err.msg);
    }
    /* a minimal model: the specials alone, then one piece */
    CHECK(hl_spm_write_unigram(NULL, 0, false, &buf, &len, &err) == HL_OK, "no pieces: %s",
          err.msg);
    free(buf);
    hl_spm_new_piece one = {SPACE "x", -1};
    for (int lower = 0; lower < 2; lower++) {
        CHECK(hl_spm_write_unigram(&one, 1, lower, &buf, &len, &err) == HL_OK, "%s", err.msg);
        hl_spm *m = NULL;
        CHECK(buf && hl_spm_load_mem(buf, len, "one", &m, &err) == HL_OK &&
                  hl_spm_get_info(m)->n_pieces == 4 && hl_spm_piece_score(m, 3) == -1.0f,
              "one piece: %s", err.msg);
        free(buf);
        buf = NULL;
        if (!m) continue;
        CHECK(!strcmp(hl_spm_get_info(m)->normalizer_name, lower ? "ascii_lowercase" : "identity"),
              "normalizer '%s'", hl_spm_get_info(m)->normalizer_name);
        /* the case folding: every ASCII byte before "AB", and after */
        for (int c = 0; c < 128; c++) {
            if (c == ' ') continue;
            char text[4] = {(char)c, 'A', 'B', (char)c}, want[8] = SPACE;
            int lc = lower && c >= 'A' && c <= 'Z' ? c + 32 : c;
            want[3] = (char)lc, want[4] = lower ? 'a' : 'A', want[5] = lower ? 'b' : 'B';
            want[6] = (char)lc;
            char *norm = NULL;
            size_t nl = 0;
            CHECK(hl_spm_normalize(m, text, 4, &norm, &nl, &err) == HL_OK && nl == 7 &&
                      !memcmp(norm, want, 7),
                  "lower %d: byte %d: '%.*s'", lower, c, (int)nl, norm ? norm : "");
            free(norm);
        }
        hl_spm_free(m);
    }
}

int main(void) {
    char dir[] = "/tmp/helios_world_tok_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    test_pieces();
    test_writer_errors();
    test_deterministic(dir);
    test_truncated();
    test_text_encoder(dir);
    test_captions();
    rmdir(dir);
    return test_done("test_world_tokenizer");
}
