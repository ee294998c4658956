/* SentencePiece unigram tokenizer: reads a `spiece.model` (a protobuf ModelProto) and encodes
 * text to ids exactly as the sentencepiece library (0.1.9x) does:
 *
 *   normalize   precompiled charsmap (longest match per position, darts-clone trie), leading /
 *               trailing / repeated whitespace removal, dummy prefix, ' ' -> U+2581 "▁"
 *   segment     Viterbi over the piece scores (normal, user-defined and unused pieces;
 *               control, unknown and byte pieces never match text)
 *   unknowns    a character no piece covers is <unk>; with byte_fallback it becomes the <0xXX>
 *               pieces of its UTF-8 bytes, without it a run of unknowns is one <unk> id
 *
 * Only the unigram model type is supported (T5 / mT5 / umT5 tokenizers are unigram). Loading
 * validates the whole file; a truncated or hostile file is a HELIOS_ERR_FORMAT naming it (a file
 * with fewer pieces than its trainer_spec.vocab_size counts as truncated).
 * A loaded model is read-only: encoding from several threads at once is safe. */
#ifndef HL_TEXT_SPM_H
#define HL_TEXT_SPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* ModelProto.SentencePiece.Type */
typedef enum hl_spm_type {
    HL_SPM_NORMAL = 1,
    HL_SPM_UNKNOWN = 2,
    HL_SPM_CONTROL = 3,
    HL_SPM_USER_DEFINED = 4,
    HL_SPM_UNUSED = 5,
    HL_SPM_BYTE = 6,
} hl_spm_type;

/* What the model file says, for callers and `helios info`. */
typedef struct hl_spm_info {
    int n_pieces;
    int model_type; /* TrainerSpec.model_type: 1 unigram (the only one encoded) */
    /* Special ids as SentencePieceProcessor reports them: the id of the trainer's
     * unk/bos/eos/pad piece string if that piece has the matching type, else -1. */
    int unk_id, bos_id, eos_id, pad_id;
    bool byte_fallback;
    bool treat_whitespace_as_suffix;
    const char *normalizer_name; /* "nmt_nfkc", "identity", ... ("" if absent) */
    size_t charsmap_size;        /* bytes of the precompiled charsmap (0: no normalization) */
    bool add_dummy_prefix;
    bool remove_extra_whitespaces;
    bool escape_whitespaces;
} hl_spm_info;

typedef struct hl_spm hl_spm;

/* Reads and validates a model file. */
hl_status hl_spm_load(const char *path, hl_spm **out, hl_error *err);
/* The same from memory (copied; buf may be freed after). name is used in messages. */
hl_status hl_spm_load_mem(const void *buf, size_t size, const char *name, hl_spm **out,
                          hl_error *err);
/* Reads a Hugging Face `tokenizer.json` (tokenizers library) holding a Unigram model, as the T5 /
 * umT5 conversions write it, into the same model hl_spm_load builds from spiece.model:
 *   model           {"type": "Unigram", "unk_id", "vocab": [[piece, score], ...], "byte_fallback"}
 *   normalizer      Precompiled (the base64 charsmap), alone or in a Sequence followed by the
 *                   whitespace rules Replace(" {2,}" -> " " or "\u2581") and Strip, which map to
 *                   remove_extra_whitespaces; null = identity
 *   pre_tokenizer   Metaspace (replacement "\u2581", prefix "always"/"first"/"never"), alone or
 *                   after WhitespaceSplit -> escape_whitespaces + add_dummy_prefix
 *   added_tokens    special ones are control pieces (the unk_id one the unknown piece), others
 *                   user-defined; "<0xXX>" pieces are byte pieces when byte_fallback
 *   post_processor  TemplateProcessing [A, </s>] (or null): its special token is the eos
 * Other components are HELIOS_ERR_UNSUPPORTED, malformed files HELIOS_ERR_FORMAT, both naming
 * the file and the component. */
hl_status hl_spm_load_tokenizer_json(const char *path, hl_spm **out, hl_error *err);
/* The same from the JSON text buf[0..size); name is used in messages. */
hl_status hl_spm_load_tokenizer_json_mem(const void *buf, size_t size, const char *name,
                                         hl_spm **out, hl_error *err);
void hl_spm_free(hl_spm *spm);

const hl_spm_info *hl_spm_get_info(const hl_spm *spm);

/* Piece table. Out-of-range ids give NULL / 0. */
const char *hl_spm_id_to_piece(const hl_spm *spm, int id, size_t *len);
float hl_spm_piece_score(const hl_spm *spm, int id);
int hl_spm_piece_type(const hl_spm *spm, int id);
/* Id of a piece string, or the unk id if there is no such piece (as SentencePiece). */
int hl_spm_piece_to_id(const hl_spm *spm, const char *piece, size_t len);

/* The normalized form of text[0..len) (what the segmentation sees; "▁" for spaces), malloc'ed
 * and NUL-terminated; *out_len excludes the NUL. */
hl_status hl_spm_normalize(const hl_spm *spm, const char *text, size_t len, char **out,
                           size_t *out_len, hl_error *err);

/* sp.encode(text): ids without bos/eos into a malloc'ed array (*ids may be NULL when *n is 0).
 * text is any bytes (NUL and invalid UTF-8 included: invalid bytes read as U+FFFD). */
hl_status hl_spm_encode(const hl_spm *spm, const char *text, size_t len, int32_t **ids, size_t *n,
                        hl_error *err);

/* The T5 tokenizer call of the pipelines: tokenizer(text, padding="max_length",
 * max_length=max_len, truncation=True, add_special_tokens=True): the ids truncated to
 * max_len - 1, then eos, then pad up to max_len; mask is 1 on the ids and the eos, 0 on the
 * padding. ids and mask hold max_len values (mask may be NULL). *n_real (may be NULL) gets the
 * number of mask ones. Needs an eos and a pad piece (HELIOS_ERR_UNSUPPORTED otherwise). */
hl_status hl_spm_encode_t5(const hl_spm *spm, const char *text, size_t len, int max_len,
                           int32_t *ids, int32_t *mask, int *n_real, hl_error *err);

#endif
