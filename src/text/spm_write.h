/* Writing a SentencePiece unigram model (`.model`, a protobuf ModelProto) that hl_spm_load reads
 * back, for tokenizers we make ourselves (the tiny world's, src/world/tokenizer.c).
 *
 * The model holds the special pieces of T5 / umT5 first, as their spiece.model does:
 *
 *   id 0 "<pad>" CONTROL, id 1 "</s>" CONTROL (eos), id 2 "<unk>" UNKNOWN; no bos
 *
 * then the given pieces as NORMAL pieces with their scores (log probabilities: the Viterbi
 * segmentation picks the path with the highest sum), in the given order (ids 3, 4, ...).
 * TrainerSpec says model_type UNIGRAM, vocab_size, pad/eos/unk ids 0/1/2 and bos -1, no byte
 * fallback (a character no piece covers is <unk>, a run of them one <unk>). NormalizerSpec:
 * leading, trailing and repeated spaces are removed, a space is prefixed, and spaces are written
 * as U+2581 "▁" (so a word piece is "▁word"); otherwise the text is not rewritten (no NFKC):
 * "identity" without a precompiled charsmap, or with lowercase "ascii_lowercase", whose charsmap
 * maps A-Z to a-z (26 one-byte rules in a darts-clone double array, as SentencePiece stores its
 * normalization rules; other characters, accented capitals included, are kept).
 *
 * The bytes are a deterministic function of the pieces, so the same pieces give the same file.
 * The specs are written before the pieces, so that any truncation of the file is refused by
 * hl_spm_load (spm_write.c says why). */
#ifndef HL_TEXT_SPM_WRITE_H
#define HL_TEXT_SPM_WRITE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef struct hl_spm_new_piece {
    const char *piece; /* UTF-8, NUL-terminated, non-empty */
    float score;       /* finite */
} hl_spm_new_piece;

/* The number of special pieces before the given ones (pad, eos, unk). */
#define HL_SPM_WRITE_N_SPECIAL 3

/* Serializes the model into a new malloc'ed buffer (*out, *out_len bytes). The pieces must be
 * non-empty valid UTF-8, unique, not one of the special pieces, and have finite scores
 * (HELIOS_ERR_INVALID_ARG naming the piece otherwise). The result is checked by loading it
 * with hl_spm_load_mem. */
hl_status hl_spm_write_unigram(const hl_spm_new_piece *pieces, size_t n, bool lowercase, char **out,
                               size_t *out_len, hl_error *err);

#endif
