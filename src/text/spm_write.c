/* A small protobuf wire-format writer for SentencePiece's ModelProto (the fields spm_proto.c
 * reads, see spm_write.h):
 *
 *   ModelProto       2 trainer_spec, 3 normalizer_spec, then 1 pieces (repeated SentencePiece)
 *   SentencePiece    1 piece, 2 score (float), 3 type (omitted for NORMAL, the default)
 *   TrainerSpec      3 model_type, 4 vocab_size, 40..43 unk/bos/eos/pad_id,
 *                    45 unk_piece, 47 eos_piece, 48 pad_piece
 *   NormalizerSpec   1 name, 2 precompiled_charsmap, 3 add_dummy_prefix,
 *                    4 remove_extra_whitespaces, 5 escape_whitespaces
 *
 * The specs come first and the pieces last (protobuf readers take fields in any order): a prefix
 * of a protobuf is often a valid protobuf, and this way every prefix of the file is refused by
 * hl_spm_load -- cut inside a field, it is malformed; cut between two pieces, it has fewer pieces
 * than trainer_spec.vocab_size says; cut before the pieces, it has none.
 */
#include "text/spm_write.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text/spm_internal.h"

enum { WIRE_VARINT = 0, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

static void put_varint(hl_spm_buf *b, uint64_t v) {
    unsigned char tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) tmp[n] |= 0x80;
        n++;
    } while (v);
    hl_spm_buf_append(b, tmp, n);
}

static void put_key(hl_spm_buf *b, uint32_t field, int wire) {
    put_varint(b, (uint64_t)field << 3 | (uint64_t)wire);
}

/* An int32 field: negative values are 10-byte varints (sign-extended), as protobuf writes them. */
static void put_int(hl_spm_buf *b, uint32_t field, int64_t v) {
    put_key(b, field, WIRE_VARINT);
    put_varint(b, (uint64_t)v);
}

static void put_bytes(hl_spm_buf *b, uint32_t field, const void *p, size_t n) {
    put_key(b, field, WIRE_LEN);
    put_varint(b, n);
    hl_spm_buf_append(b, p, n);
}

static void put_string(hl_spm_buf *b, uint32_t field, const char *s) {
    put_bytes(b, field, s, strlen(s));
}

static void put_float(hl_spm_buf *b, uint32_t field, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    unsigned char le[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                           (unsigned char)(u >> 24)};
    put_key(b, field, WIRE_FIXED32);
    hl_spm_buf_append(b, le, 4);
}

/* One SentencePiece message as ModelProto field 1. */
static void put_piece(hl_spm_buf *b, const char *piece, float score, int type) {
    hl_spm_buf m = {0};
    put_string(&m, 1, piece);
    put_float(&m, 2, score);
    if (type != HL_SPM_NORMAL) put_int(&m, 3, type);
    if (m.oom) b->oom = true;
    else put_bytes(b, 1, m.p, m.len);
    free(m.p);
}

static const struct {
    const char *piece;
    int type;
} k_special[HL_SPM_WRITE_N_SPECIAL] = {
    {"<pad>", HL_SPM_CONTROL}, /* 0 */
    {"</s>", HL_SPM_CONTROL},  /* 1 */
    {"<unk>", HL_SPM_UNKNOWN}, /* 2 */
};

/* The precompiled charsmap that lowercases A-Z: `uint32 trie bytes (LE) | darts-clone units |
 * "a\0b\0...z\0"`. A unit is 32 bits: bits 0-7 the label, bit 8 "has a leaf", bits 10-30 the
 * offset (the XOR from a node to the base of its children); a leaf unit has bit 31 set and holds
 * a value (here the offset of the replacement in the strings). From the root (unit 0, offset
 * ROOT), byte c leads to unit ROOT ^ c, which must carry label c; its leaf is at LEAF + k for
 * the k-th letter. Every other unit a lookup can reach fails the label check: zero units have
 * label 0 (no byte after the first matches it), the root's own leaf slot (ROOT ^ 0, reached by a
 * NUL) and the leaves have bit 31 set in their label, and the children of a leaf, LEAF + k ^ d
 * with d >= 1, are >= 256 apart from ROOT ^ c. */
enum { CM_ROOT = 256, CM_LEAF = 512, CM_UNITS = CM_LEAF + 26 };

static void put_lowercase_charsmap(hl_spm_buf *b) {
    uint32_t units[CM_UNITS] = {0};
    units[0] = (uint32_t)CM_ROOT << 10;
    units[CM_ROOT] = 1u << 31; /* the root has no leaf: a NUL matches nothing */
    char strings[52];
    for (uint32_t k = 0; k < 26; k++) {
        uint32_t c = 'A' + k, node = CM_ROOT ^ c, leaf = CM_LEAF + k;
        units[node] = (node ^ leaf) << 10 | 1u << 8 | c;
        units[leaf] = 1u << 31 | 2 * k; /* value: offset of the replacement */
        strings[2 * k] = (char)('a' + k), strings[2 * k + 1] = '\0';
    }
    unsigned char blob[4 + 4 * CM_UNITS + sizeof strings];
    uint32_t trie = 4 * CM_UNITS;
    for (int i = 0; i < 4; i++) blob[i] = (unsigned char)(trie >> (8 * i));
    for (int u = 0; u < CM_UNITS; u++)
        for (int i = 0; i < 4; i++) blob[4 + 4 * u + i] = (unsigned char)(units[u] >> (8 * i));
    memcpy(blob + 4 + 4 * CM_UNITS, strings, sizeof strings);
    put_bytes(b, 2, blob, sizeof blob);
}

static hl_status check_piece(const hl_spm_new_piece *p, size_t i, hl_error *err) {
    if (!p->piece || !p->piece[0])
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "tokenizer: piece %zu is empty", i);
    const unsigned char *s = (const unsigned char *)p->piece;
    size_t n = strlen(p->piece);
    for (size_t k = 0; k < n;) {
        size_t len;
        bool valid;
        hl_spm_decode_utf8(s + k, n - k, &len, &valid);
        if (!valid)
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "tokenizer: piece %zu '%.64s' is not valid UTF-8", i, p->piece);
        if (s[k] == ' ')
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "tokenizer: piece %zu '%.64s' holds a space (spaces are U+2581 in "
                           "pieces)",
                           i, p->piece);
        k += len;
    }
    if (!isfinite(p->score))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "tokenizer: piece %zu '%.64s': score %g", i,
                       p->piece, (double)p->score);
    for (int k = 0; k < HL_SPM_WRITE_N_SPECIAL; k++)
        if (!strcmp(p->piece, k_special[k].piece))
            return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                           "tokenizer: piece %zu '%s' is a special piece (id %d)", i, p->piece, k);
    return HL_OK;
}

hl_status hl_spm_write_unigram(const hl_spm_new_piece *pieces, size_t n, bool lowercase, char **out,
                               size_t *out_len, hl_error *err) {
    *out = NULL;
    *out_len = 0;
    if (n > (size_t)INT32_MAX - HL_SPM_WRITE_N_SPECIAL)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "tokenizer: %zu pieces are too many", n);
    for (size_t i = 0; i < n; i++) HL_TRY(check_piece(&pieces[i], i, err));

    hl_spm_buf b = {0};
    hl_spm_buf t = {0};                                  /* TrainerSpec */
    put_int(&t, 3, 1);                                   /* model_type UNIGRAM */
    put_int(&t, 4, (int64_t)n + HL_SPM_WRITE_N_SPECIAL); /* vocab_size */
    put_int(&t, 40, 2);                                  /* unk_id */
    put_int(&t, 41, -1);                                 /* bos_id: none */
    put_int(&t, 42, 1);                                  /* eos_id */
    put_int(&t, 43, 0);                                  /* pad_id */
    put_string(&t, 45, k_special[2].piece);
    put_string(&t, 47, k_special[1].piece);
    put_string(&t, 48, k_special[0].piece);
    if (t.oom) b.oom = true;
    else put_bytes(&b, 2, t.p, t.len);
    free(t.p);

    hl_spm_buf ns = {0}; /* NormalizerSpec */
    put_string(&ns, 1, lowercase ? "ascii_lowercase" : "identity");
    if (lowercase) put_lowercase_charsmap(&ns);
    put_int(&ns, 3, 1); /* add_dummy_prefix */
    put_int(&ns, 4, 1); /* remove_extra_whitespaces */
    put_int(&ns, 5, 1); /* escape_whitespaces */
    if (ns.oom) b.oom = true;
    else put_bytes(&b, 3, ns.p, ns.len);
    free(ns.p);

    for (int k = 0; k < HL_SPM_WRITE_N_SPECIAL; k++)
        put_piece(&b, k_special[k].piece, 0.0f, k_special[k].type);
    for (size_t i = 0; i < n; i++) put_piece(&b, pieces[i].piece, pieces[i].score, HL_SPM_NORMAL);

    if (b.oom) {
        free(b.p);
        return hl_fail(err, HELIOS_ERR_OOM, "tokenizer: out of memory");
    }

    /* what we wrote must read back: same pieces, the ids T5 expects */
    hl_spm *m = NULL;
    hl_status st = hl_spm_load_mem(b.p, b.len, "tokenizer being written", &m, err);
    if (st != HL_OK) { /* a duplicate piece lands here */
        free(b.p);
        return st;
    }
    const hl_spm_info *in = hl_spm_get_info(m);
    bool ok = (size_t)in->n_pieces == n + HL_SPM_WRITE_N_SPECIAL && in->pad_id == 0 &&
              in->eos_id == 1 && in->unk_id == 2 && in->bos_id == -1 && !in->byte_fallback;
    char *norm = NULL;
    size_t norm_len = 0;
    if (ok)
        ok = hl_spm_normalize(m, "Az", 2, &norm, &norm_len, err) == HL_OK &&
             !strcmp(norm, lowercase ? HL_SPM_SPACE "az" : HL_SPM_SPACE "Az");
    free(norm);
    hl_spm_free(m);
    if (!ok) {
        free(b.p);
        return hl_fail(err, HELIOS_ERR_INTERNAL, "tokenizer: the written model reads back wrong");
    }
    *out = b.p;
    *out_len = b.len;
    return HL_OK;
}
