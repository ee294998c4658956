/* A minimal protobuf wire-format reader for SentencePiece's ModelProto (sentencepiece_model.proto,
 * proto2). Only the fields the encoder needs are kept; every other field is skipped by wire type,
 * as protobuf does with unknown fields. Every read is bounds-checked: a truncated or hostile file
 * is a HELIOS_ERR_FORMAT naming the file, never an out-of-bounds read.
 *
 *   ModelProto       1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec,
 *                    4 self_test_data and 5 denormalizer_spec (skipped)
 *   SentencePiece    1 piece (string), 2 score (float), 3 type (enum, default NORMAL)
 *   TrainerSpec      3 model_type, 4 vocab_size, 24 treat_whitespace_as_suffix, 35 byte_fallback,
 *                    40..43 unk/bos/eos/pad_id, 45..48 unk/bos/eos/pad_piece
 *   NormalizerSpec   1 name, 2 precompiled_charsmap, 3 add_dummy_prefix,
 *                    4 remove_extra_whitespaces, 5 escape_whitespaces
 */
#include <stdlib.h>
#include <string.h>

#include "text/spm_internal.h"

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

typedef struct pb {
    const unsigned char *p, *end;
    const char *name;  /* file, for messages */
    const char *where; /* message being read, for messages */
    hl_error *err;
} pb;

static hl_status pb_bad(pb *r, const char *what) {
    return hl_fail(r->err, HELIOS_ERR_FORMAT, "%s: not a SentencePiece model: %s in %s", r->name,
                   what, r->where);
}

/* Base-128 varint, at most 10 bytes (a 64-bit value). */
static hl_status pb_varint(pb *r, uint64_t *v) {
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return pb_bad(r, "truncated varint");
        unsigned char c = *r->p++;
        x |= (uint64_t)(c & 0x7f) << (7 * i);
        if (c < 0x80) {
            *v = x;
            return HL_OK;
        }
    }
    return pb_bad(r, "varint longer than 10 bytes");
}

static hl_status pb_fixed32(pb *r, uint32_t *v) {
    if ((size_t)(r->end - r->p) < 4) return pb_bad(r, "truncated fixed32");
    *v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
         (uint32_t)r->p[3] << 24;
    r->p += 4;
    return HL_OK;
}

/* A length-delimited payload: a sub-reader over it (the caller's reader moves past it). */
static hl_status pb_bytes(pb *r, pb *sub) {
    uint64_t n = 0; /* initialized: the compiler cannot see that failures return early */
    HL_TRY(pb_varint(r, &n));
    if (n > (uint64_t)(r->end - r->p)) return pb_bad(r, "length past the end of the data");
    *sub = *r;
    sub->end = r->p + n;
    r->p += n;
    return HL_OK;
}

static hl_status pb_key(pb *r, uint32_t *field, int *wire) {
    uint64_t k;
    HL_TRY(pb_varint(r, &k));
    if (k >> 3 == 0 || k >> 3 > 0x1fffffff) return pb_bad(r, "invalid field number");
    *field = (uint32_t)(k >> 3);
    *wire = (int)(k & 7);
    return HL_OK;
}

/* Skips a field we do not use. Groups (wire types 3/4, deprecated) never occur in
 * SentencePiece models and are refused rather than parsed. */
static hl_status pb_skip(pb *r, int wire) {
    uint64_t v = 0;
    uint32_t f = 0;
    pb sub = {0};
    switch (wire) {
    case WIRE_VARINT: return pb_varint(r, &v);
    case WIRE_FIXED64:
        if ((size_t)(r->end - r->p) < 8) return pb_bad(r, "truncated fixed64");
        r->p += 8;
        return HL_OK;
    case WIRE_LEN: return pb_bytes(r, &sub);
    case WIRE_FIXED32: return pb_fixed32(r, &f);
    default: return pb_bad(r, "unsupported wire type");
    }
}

/* A string field into a new malloc'ed NUL-terminated copy (replacing *dst: last one wins). */
static hl_status pb_string(pb *r, char **dst) {
    pb sub = {0};
    HL_TRY(pb_bytes(r, &sub));
    size_t n = (size_t)(sub.end - sub.p);
    char *s = malloc(n + 1);
    if (!s) return hl_fail(r->err, HELIOS_ERR_OOM, "%s: out of memory", r->name);
    if (n) memcpy(s, sub.p, n);
    s[n] = '\0';
    free(*dst);
    *dst = s;
    return HL_OK;
}

/* ---- SentencePiece ---------------------------------------------------------------------------- */

static hl_status add_piece_string(hl_spm *m, pb *r, const unsigned char *s, size_t n, size_t *off) {
    if (m->strings_len + n + 1 > m->strings_cap) {
        size_t cap = m->strings_cap ? m->strings_cap : 4096;
        while (cap < m->strings_len + n + 1) cap *= 2;
        char *p = realloc(m->strings, cap);
        if (!p) return hl_fail(r->err, HELIOS_ERR_OOM, "%s: out of memory", r->name);
        m->strings = p;
        m->strings_cap = cap;
    }
    *off = m->strings_len;
    if (n) memcpy(m->strings + m->strings_len, s, n);
    m->strings[m->strings_len + n] = '\0';
    m->strings_len += n + 1;
    return HL_OK;
}

static hl_status parse_piece(hl_spm *m, pb *r) {
    if (m->n_pieces == m->cap_pieces) {
        size_t cap = m->cap_pieces ? 2 * m->cap_pieces : 1024;
        if (cap > (size_t)INT32_MAX) return pb_bad(r, "too many pieces");
        hl_spm_piece *p = realloc(m->pieces, cap * sizeof *p);
        if (!p) return hl_fail(r->err, HELIOS_ERR_OOM, "%s: out of memory", r->name);
        m->pieces = p;
        m->cap_pieces = cap;
    }
    hl_spm_piece pc = {0, 0, 0.0f, HL_SPM_NORMAL};
    int have_piece = 0;
    while (r->p < r->end) {
        uint32_t field = 0, f32 = 0;
        int wire = 0;
        uint64_t v = 0;
        pb sub = {0};
        HL_TRY(pb_key(r, &field, &wire));
        if (field == 1 && wire == WIRE_LEN) {
            HL_TRY(pb_bytes(r, &sub));
            /* last one wins; earlier copies stay unused in the string blob */
            HL_TRY(add_piece_string(m, r, sub.p, (size_t)(sub.end - sub.p), &pc.off));
            pc.len = (size_t)(sub.end - sub.p);
            have_piece = 1;
        } else if (field == 2 && wire == WIRE_FIXED32) {
            HL_TRY(pb_fixed32(r, &f32));
            memcpy(&pc.score, &f32, 4);
        } else if (field == 3 && wire == WIRE_VARINT) {
            HL_TRY(pb_varint(r, &v));
            /* proto2: an enum value outside the enum is an unknown field; the type keeps its
             * previous value */
            if (v >= HL_SPM_NORMAL && v <= HL_SPM_BYTE) pc.type = (int)v;
        } else {
            HL_TRY(pb_skip(r, wire));
        }
    }
    if (!have_piece) HL_TRY(add_piece_string(m, r, NULL, 0, &pc.off));
    m->pieces[m->n_pieces++] = pc;
    return HL_OK;
}

/* ---- TrainerSpec / NormalizerSpec ----------------------------------------------------------- */

static hl_status parse_trainer(hl_spm *m, pb *r) {
    while (r->p < r->end) {
        uint32_t field = 0;
        int wire = 0;
        uint64_t v = 0;
        HL_TRY(pb_key(r, &field, &wire));
        if (wire == WIRE_VARINT && (field == 3 || field == 4 || field == 24 || field == 35 ||
                                    (field >= 40 && field <= 43))) {
            HL_TRY(pb_varint(r, &v));
            switch (field) {
            case 3:
                if (v >= 1 && v <= 4) m->model_type = (int)v; /* UNIGRAM BPE WORD CHAR */
                break;
            case 4: m->tr_vocab_size = (int32_t)(uint32_t)v; break;
            case 24: m->treat_whitespace_as_suffix = v != 0; break;
            case 35: m->byte_fallback = v != 0; break;
            case 40: m->tr_unk_id = (int32_t)(uint32_t)v; break; /* int32: low 32 bits */
            case 41: m->tr_bos_id = (int32_t)(uint32_t)v; break;
            case 42: m->tr_eos_id = (int32_t)(uint32_t)v; break;
            case 43: m->tr_pad_id = (int32_t)(uint32_t)v; break;
            }
        } else if (wire == WIRE_LEN && field >= 45 && field <= 48) {
            char **dst = field == 45   ? &m->unk_piece
                         : field == 46 ? &m->bos_piece
                         : field == 47 ? &m->eos_piece
                                       : &m->pad_piece;
            HL_TRY(pb_string(r, dst));
        } else {
            HL_TRY(pb_skip(r, wire));
        }
    }
    return HL_OK;
}

static hl_status parse_normalizer(hl_spm *m, pb *r) {
    while (r->p < r->end) {
        uint32_t field = 0;
        int wire = 0;
        uint64_t v = 0;
        pb sub = {0};
        HL_TRY(pb_key(r, &field, &wire));
        if (field == 1 && wire == WIRE_LEN) {
            HL_TRY(pb_string(r, &m->normalizer_name));
        } else if (field == 2 && wire == WIRE_LEN) {
            HL_TRY(pb_bytes(r, &sub));
            size_t n = (size_t)(sub.end - sub.p);
            free(m->charsmap);
            m->charsmap = NULL;
            m->charsmap_size = 0;
            if (n) {
                m->charsmap = malloc(n);
                if (!m->charsmap)
                    return hl_fail(r->err, HELIOS_ERR_OOM, "%s: out of memory", r->name);
                memcpy(m->charsmap, sub.p, n);
                m->charsmap_size = n;
            }
        } else if (field >= 3 && field <= 5 && wire == WIRE_VARINT) {
            HL_TRY(pb_varint(r, &v));
            if (field == 3) m->add_dummy_prefix = v != 0;
            else if (field == 4) m->remove_extra_whitespaces = v != 0;
            else m->escape_whitespaces = v != 0;
        } else {
            HL_TRY(pb_skip(r, wire));
        }
    }
    return HL_OK;
}

/* ---- ModelProto ------------------------------------------------------------------------------ */

hl_status hl_spm_parse_proto(hl_spm *m, const unsigned char *buf, size_t size, hl_error *err) {
    /* proto2 defaults */
    m->model_type = 1;
    m->tr_unk_id = 0;
    m->tr_bos_id = 1;
    m->tr_eos_id = 2;
    m->tr_pad_id = -1;
    m->add_dummy_prefix = true;
    m->remove_extra_whitespaces = true;
    m->escape_whitespaces = true;

    pb r = {buf, buf + size, m->name, "ModelProto", err};
    while (r.p < r.end) {
        uint32_t field = 0;
        int wire = 0;
        HL_TRY(pb_key(&r, &field, &wire));
        if (wire == WIRE_LEN && field >= 1 && field <= 3) {
            pb sub = {0};
            HL_TRY(pb_bytes(&r, &sub));
            if (field == 1) {
                sub.where = "ModelProto.pieces";
                HL_TRY(parse_piece(m, &sub));
            } else if (field == 2) {
                sub.where = "ModelProto.trainer_spec";
                HL_TRY(parse_trainer(m, &sub));
            } else {
                sub.where = "ModelProto.normalizer_spec";
                HL_TRY(parse_normalizer(m, &sub));
            }
        } else {
            HL_TRY(pb_skip(&r, wire));
        }
    }
    return HL_OK;
}
