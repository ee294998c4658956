/* The tokenizer of the tiny models: a SentencePiece unigram model over the world's vocabulary
 * (world.h). Scores are log-probability-like and only their order matters: a word piece beats
 * any split of the word into fallback pieces, so a known word is always one piece. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/spm_internal.h"
#include "text/spm_write.h"
#include "train/checkpoint.h"
#include "world/world.h"

static const float k_caption_word = -4.0f; /* words captions use */
static const float k_other_word = -5.0f;   /* synonyms the parser also accepts */
static const float k_punct = -5.0f;
static const float k_space = -8.0f; /* "▁" alone: the start of an unknown word */
static const float k_char = -9.0f;  /* a-z, 0-9 */

/* Punctuation that is a piece besides the captions' own: the end of a typed sentence. */
static const char k_extra_punct[] = ".";

enum { MAX_PIECES = HL_WORLD_MAX_WORDS + 64 };

hl_status hl_world_tokenizer(char **buf, size_t *len, int *n_pieces, hl_error *err) {
    *buf = NULL;
    *len = 0;
    hl_world_vocab *v = malloc(sizeof *v);
    /* piece strings: "▁" + word, or one character; each slot holds the longest */
    char(*text)[HL_SPM_SPACE_LEN + HL_WORLD_WORD_LEN] = malloc(MAX_PIECES * sizeof *text);
    hl_spm_new_piece *pieces = malloc(MAX_PIECES * sizeof *pieces);
    hl_status st = v && text && pieces ? HL_OK
                                       : hl_fail(err, HELIOS_ERR_OOM, "tokenizer: out of memory");
    if (st == HL_OK) st = hl_world_vocab_words(v, err);
    size_t n = 0;
    if (st == HL_OK) {
        for (int i = 0; i < v->n_words; i++, n++) {
            snprintf(text[n], sizeof text[n], "%s%s", HL_SPM_SPACE, v->words[i]);
            pieces[n].score = i < v->n_caption_words ? k_caption_word : k_other_word;
        }
        char punct[sizeof v->punct + sizeof k_extra_punct];
        snprintf(punct, sizeof punct, "%s", v->punct);
        for (const char *p = k_extra_punct; *p; p++) {
            size_t k = strlen(punct);
            if (!strchr(punct, *p)) punct[k] = *p, punct[k + 1] = '\0';
        }
        for (const char *p = punct; *p; p++, n++) {
            text[n][0] = *p, text[n][1] = '\0';
            pieces[n].score = k_punct;
        }
        snprintf(text[n], sizeof text[n], "%s", HL_SPM_SPACE);
        pieces[n++].score = k_space;
        for (const char *p = "abcdefghijklmnopqrstuvwxyz0123456789"; *p; p++, n++) {
            text[n][0] = *p, text[n][1] = '\0';
            pieces[n].score = k_char;
        }
        for (size_t i = 0; i < n; i++) pieces[i].piece = text[i];
        st = hl_spm_write_unigram(pieces, n, true, buf, len, err);
    }
    if (st == HL_OK && n_pieces) *n_pieces = (int)n + HL_SPM_WRITE_N_SPECIAL;
    free(v);
    free(text);
    free(pieces);
    return st;
}

hl_status hl_world_tokenizer_write(const char *path, int *n_pieces, hl_error *err) {
    char *buf;
    size_t len;
    HL_TRY(hl_world_tokenizer(&buf, &len, n_pieces, err));
    hl_status st = hl_write_file_atomic(path, buf, len, err);
    free(buf);
    return st;
}
