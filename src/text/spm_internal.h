/* Internals of the SentencePiece tokenizer shared by spm_proto.c (file -> struct),
 * spm_normalize.c (normalizer) and spm.c (tables, segmentation). Not for other modules. */
#ifndef HL_TEXT_SPM_INTERNAL_H
#define HL_TEXT_SPM_INTERNAL_H

#include "text/spm.h"

#define HL_SPM_SPACE "\xe2\x96\x81" /* U+2581, what escape_whitespaces writes for ' ' */
#define HL_SPM_SPACE_LEN 3

typedef struct hl_spm_piece {
    size_t off, len; /* in hl_spm.strings */
    float score;
    int type; /* hl_spm_type */
} hl_spm_piece;

/* A byte trie over the pieces that can match text (normal, user-defined, unused). Edges live in
 * one open-addressing hash keyed by (parent node, byte). */
typedef struct hl_spm_trie {
    int32_t *node_id; /* [n_nodes] piece id ending at the node, or -1 */
    size_t n_nodes, cap_nodes;
    uint64_t *edge_key; /* [edge_cap] (parent << 8 | byte) + 1, 0 = empty slot */
    int32_t *edge_child;
    size_t edge_cap, n_edges;
} hl_spm_trie;

struct hl_spm {
    char *name; /* the file, for messages */
    hl_spm_info info;

    /* ModelProto.pieces */
    hl_spm_piece *pieces;
    size_t n_pieces, cap_pieces;
    char *strings; /* piece bytes, each followed by a NUL */
    size_t strings_len, strings_cap;

    /* TrainerSpec */
    int model_type;
    int32_t tr_unk_id, tr_bos_id, tr_eos_id, tr_pad_id; /* the raw fields (informative) */
    int32_t tr_vocab_size;                              /* TrainerSpec.vocab_size (0: absent) */
    bool byte_fallback, treat_whitespace_as_suffix;
    char *unk_piece, *bos_piece, *eos_piece, *pad_piece; /* NULL = default */

    /* NormalizerSpec */
    char *normalizer_name;
    unsigned char *charsmap; /* precompiled_charsmap bytes (NULL if empty) */
    size_t charsmap_size;
    bool add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;

    /* Derived from the charsmap: darts-clone units and the NUL-separated replacement strings. */
    const unsigned char *norm_units; /* 4-byte little-endian units */
    size_t n_norm_units;
    const char *norm_strings;
    size_t norm_strings_len;

    /* Derived from the pieces. */
    int32_t *piece_hash; /* [hash_cap] id + 1 of the piece hashed there, 0 = empty */
    size_t hash_cap;
    hl_spm_trie trie;
    bool has_user_defined;
    int unk_id;                 /* the UNKNOWN piece (exactly one) */
    int32_t byte_ids[256];      /* <0xXX> piece ids when byte_fallback */
    float min_score, max_score; /* over normal pieces, as the unigram model computes them */
};

/* spm_proto.c: parses a ModelProto into the raw fields above (pieces, specs, charsmap). */
hl_status hl_spm_parse_proto(hl_spm *m, const unsigned char *buf, size_t size, hl_error *err);

/* spm.c: building a model from another source (spm_json.c): hl_spm_new allocates an empty model
 * named `name` (all fields zero), hl_spm_add_piece appends a piece, hl_spm_finish validates the
 * pieces and the charsmap and builds the tables (as hl_spm_load_mem after parsing). On failure
 * the caller frees the model with hl_spm_free. */
hl_status hl_spm_new(const char *name, hl_spm **out, hl_error *err);
hl_status hl_spm_add_piece(hl_spm *m, const char *s, size_t n, float score, int type,
                           hl_error *err);
hl_status hl_spm_finish(hl_spm *m, hl_error *err);

/* spm_normalize.c: checks the charsmap layout and sets norm_units / norm_strings. */
hl_status hl_spm_normalizer_init(hl_spm *m, hl_error *err);

/* spm.c: walks the piece trie: the child of node by byte c, or -1. */
int32_t hl_spm_trie_child(const hl_spm_trie *t, int32_t node, unsigned char c);

/* A growable byte buffer (malloc); on failure it stays valid and `oom` is set. */
typedef struct hl_spm_buf {
    char *p;
    size_t len, cap;
    bool oom;
} hl_spm_buf;

void hl_spm_buf_append(hl_spm_buf *b, const void *src, size_t n);

/* SentencePiece's UTF-8 reading (util.cc DecodeUTF8): the code point at s[0..n) and its length;
 * invalid or truncated sequences, surrogates and overlongs give *valid = false, length 1. */
uint32_t hl_spm_decode_utf8(const unsigned char *s, size_t n, size_t *mblen, bool *valid);

#endif
