/* SentencePiece unigram model: loading and validation (as ModelInterface::InitializePieces),
 * the piece tables, Viterbi segmentation (unigram_model.cc, EncodeOptimized) and the id output
 * rules of SentencePieceProcessor (byte fallback, merged unknowns). See spm.h. */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "text/spm_internal.h"

/* unigram_model.h: an unknown character costs this much below the worst normal piece. */
static const float k_unk_penalty = 10.0f;

/* ---- hashing --------------------------------------------------------------------------------- */

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

static const char *piece_str(const hl_spm *m, size_t id) { return m->strings + m->pieces[id].off; }

/* Slot of piece bytes s[0..n) in the piece hash: the slot holding it, or the empty slot where it
 * would go. */
static size_t piece_slot(const hl_spm *m, const char *s, size_t n) {
    size_t mask = m->hash_cap - 1, i = (size_t)hash_bytes(s, n) & mask;
    for (;;) {
        int32_t e = m->piece_hash[i];
        if (e == 0) return i;
        const hl_spm_piece *p = &m->pieces[e - 1];
        if (p->len == n && memcmp(m->strings + p->off, s, n) == 0) return i;
        i = (i + 1) & mask;
    }
}

/* ---- piece trie ------------------------------------------------------------------------------ */

int32_t hl_spm_trie_child(const hl_spm_trie *t, int32_t node, unsigned char c) {
    if (t->edge_cap == 0) return -1;
    uint64_t key = ((uint64_t)node << 8 | c) + 1;
    size_t mask = t->edge_cap - 1, i = (size_t)mix64(key) & mask;
    while (t->edge_key[i]) {
        if (t->edge_key[i] == key) return t->edge_child[i];
        i = (i + 1) & mask;
    }
    return -1;
}

/* Doubles the edge table (rehashing every edge). */
static bool trie_grow_edges(hl_spm_trie *t) {
    size_t cap = t->edge_cap * 2;
    uint64_t *key = calloc(cap, sizeof *key);
    int32_t *child = malloc(cap * sizeof *child);
    if (!key || !child) {
        free(key);
        free(child);
        return false;
    }
    for (size_t i = 0; i < t->edge_cap; i++) {
        if (!t->edge_key[i]) continue;
        size_t j = (size_t)mix64(t->edge_key[i]) & (cap - 1);
        while (key[j]) j = (j + 1) & (cap - 1);
        key[j] = t->edge_key[i];
        child[j] = t->edge_child[i];
    }
    free(t->edge_key);
    free(t->edge_child);
    t->edge_key = key;
    t->edge_child = child;
    t->edge_cap = cap;
    return true;
}

/* The child of node by c, created if absent; -1 when out of memory. */
static int32_t trie_add_child(hl_spm_trie *t, int32_t node, unsigned char c) {
    int32_t have = hl_spm_trie_child(t, node, c);
    if (have >= 0) return have;
    if (2 * (t->n_edges + 1) > t->edge_cap && !trie_grow_edges(t)) return -1;
    if (t->n_nodes == t->cap_nodes) {
        int32_t *p = realloc(t->node_id, 2 * t->cap_nodes * sizeof *p);
        if (!p) return -1;
        t->node_id = p;
        t->cap_nodes *= 2;
    }
    uint64_t key = ((uint64_t)node << 8 | c) + 1;
    size_t mask = t->edge_cap - 1, i = (size_t)mix64(key) & mask;
    while (t->edge_key[i]) i = (i + 1) & mask;
    int32_t child = (int32_t)t->n_nodes++;
    t->node_id[child] = -1;
    t->edge_key[i] = key;
    t->edge_child[i] = child;
    t->n_edges++;
    return child;
}

static bool in_trie(int type) {
    return type == HL_SPM_NORMAL || type == HL_SPM_USER_DEFINED || type == HL_SPM_UNUSED;
}

/* The pieces that can match text. Shared prefixes make the trie much smaller than the pieces'
 * total length, so the tables grow as needed (load factor <= 1/2). */
static hl_status build_trie(hl_spm *m, hl_error *err) {
    hl_spm_trie *t = &m->trie;
    size_t total = 0;
    for (size_t i = 0; i < m->n_pieces; i++)
        if (in_trie(m->pieces[i].type)) total += m->pieces[i].len;
    if (total >= (size_t)INT32_MAX / 2)
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: pieces too long", m->name);
    t->cap_nodes = m->n_pieces + 16;
    t->edge_cap = pow2_at_least(2 * t->cap_nodes);
    t->node_id = malloc(t->cap_nodes * sizeof *t->node_id);
    t->edge_key = calloc(t->edge_cap, sizeof *t->edge_key);
    t->edge_child = malloc(t->edge_cap * sizeof *t->edge_child);
    if (!t->node_id || !t->edge_key || !t->edge_child)
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", m->name);
    t->n_nodes = 1;
    t->node_id[0] = -1;
    for (size_t i = 0; i < m->n_pieces; i++) {
        if (!in_trie(m->pieces[i].type)) continue;
        const unsigned char *s = (const unsigned char *)piece_str(m, i);
        int32_t node = 0;
        for (size_t k = 0; k < m->pieces[i].len && node >= 0; k++)
            node = trie_add_child(t, node, s[k]);
        if (node < 0) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", m->name);
        t->node_id[node] = (int32_t)i; /* pieces are unique, so no node is set twice */
    }
    return HL_OK;
}

/* ---- validation and tables ------------------------------------------------------------------- */

/* "<0x41>" -> 0x41; -1 for anything else (only the exact form ByteToPiece writes). */
static int piece_to_byte(const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    const char *h = strchr(hex, s[3]), *l = strchr(hex, s[4]);
    if (!s[3] || !s[4] || !h || !l) return -1;
    return (int)((h - hex) * 16 + (l - hex));
}

/* The checks and tables of ModelInterface::InitializePieces and the unigram Model. */
static hl_status build_tables(hl_spm *m, hl_error *err) {
    if (m->model_type != 1)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED,
                       "%s: model_type %d is not supported (only unigram = 1)", m->name,
                       m->model_type);
    if (m->n_pieces == 0)
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: the model has no pieces", m->name);

    m->hash_cap = pow2_at_least(2 * m->n_pieces);
    m->piece_hash = calloc(m->hash_cap, sizeof *m->piece_hash);
    if (!m->piece_hash) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", m->name);

    bool bytes_found[256] = {false};
    m->unk_id = -1;
    m->min_score = FLT_MAX;
    m->max_score = FLT_MIN; /* sic: SentencePiece starts from FLT_MIN, not -FLT_MAX */
    for (size_t i = 0; i < m->n_pieces; i++) {
        const hl_spm_piece *p = &m->pieces[i];
        const char *s = piece_str(m, i);
        if (p->len == 0)
            return hl_fail(err, HELIOS_ERR_FORMAT, "%s: piece %zu is empty", m->name, i);
        size_t slot = piece_slot(m, s, p->len);
        if (m->piece_hash[slot])
            return hl_fail(err, HELIOS_ERR_FORMAT, "%s: piece %zu '%.64s' is already defined",
                           m->name, i, s);
        m->piece_hash[slot] = (int32_t)i + 1;
        if (p->type == HL_SPM_NORMAL) {
            if (p->score < m->min_score) m->min_score = p->score;
            if (p->score > m->max_score) m->max_score = p->score;
        } else if (p->type == HL_SPM_USER_DEFINED) {
            m->has_user_defined = true;
        } else if (p->type == HL_SPM_UNKNOWN) {
            if (m->unk_id >= 0)
                return hl_fail(err, HELIOS_ERR_FORMAT, "%s: two unknown pieces (%d and %zu)",
                               m->name, m->unk_id, i);
            m->unk_id = (int)i;
        } else if (p->type == HL_SPM_BYTE) {
            if (!m->byte_fallback)
                return hl_fail(err, HELIOS_ERR_FORMAT,
                               "%s: byte piece %zu '%.64s' but byte_fallback is false", m->name, i,
                               s);
            int b = piece_to_byte(s, p->len);
            if (b < 0)
                return hl_fail(err, HELIOS_ERR_FORMAT, "%s: byte piece %zu '%.64s' is not <0xXX>",
                               m->name, i, s);
            bytes_found[b] = true;
            m->byte_ids[b] = (int32_t)i;
        }
    }
    if (m->unk_id < 0) return hl_fail(err, HELIOS_ERR_FORMAT, "%s: no unknown piece", m->name);
    if (m->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (!bytes_found[b])
                return hl_fail(err, HELIOS_ERR_FORMAT,
                               "%s: byte_fallback is true but piece <0x%02X> is missing", m->name,
                               b);
    return build_trie(m, err);
}

/* SentencePieceProcessor::{unk,bos,eos,pad}_id: the named piece if it has the right type. */
static int special_id(const hl_spm *m, const char *piece, const char *dflt, int want_type) {
    const char *s = piece ? piece : dflt;
    int id = hl_spm_piece_to_id(m, s, strlen(s));
    return m->pieces[id].type == want_type ? id : -1;
}

static void fill_info(hl_spm *m) {
    hl_spm_info *in = &m->info;
    in->n_pieces = (int)m->n_pieces;
    in->model_type = m->model_type;
    in->unk_id = special_id(m, m->unk_piece, "<unk>", HL_SPM_UNKNOWN);
    in->bos_id = special_id(m, m->bos_piece, "<s>", HL_SPM_CONTROL);
    in->eos_id = special_id(m, m->eos_piece, "</s>", HL_SPM_CONTROL);
    in->pad_id = special_id(m, m->pad_piece, "<pad>", HL_SPM_CONTROL);
    in->byte_fallback = m->byte_fallback;
    in->treat_whitespace_as_suffix = m->treat_whitespace_as_suffix;
    in->normalizer_name = m->normalizer_name ? m->normalizer_name : "";
    in->charsmap_size = m->charsmap_size;
    in->add_dummy_prefix = m->add_dummy_prefix;
    in->remove_extra_whitespaces = m->remove_extra_whitespaces;
    in->escape_whitespaces = m->escape_whitespaces;
}

/* ---- load / free ----------------------------------------------------------------------------- */

hl_status hl_spm_new(const char *name, hl_spm **out, hl_error *err) {
    *out = NULL;
    hl_spm *m = calloc(1, sizeof *m);
    if (!m) return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    m->name = strdup(name ? name : "<memory>");
    if (!m->name) {
        free(m);
        return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    }
    *out = m;
    return HL_OK;
}

hl_status hl_spm_add_piece(hl_spm *m, const char *s, size_t n, float score, int type,
                           hl_error *err) {
    if (m->n_pieces == m->cap_pieces) {
        size_t cap = m->cap_pieces ? 2 * m->cap_pieces : 1024;
        if (cap > (size_t)INT32_MAX)
            return hl_fail(err, HELIOS_ERR_FORMAT, "%s: too many pieces", m->name);
        hl_spm_piece *p = realloc(m->pieces, cap * sizeof *p);
        if (!p) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", m->name);
        m->pieces = p;
        m->cap_pieces = cap;
    }
    if (n > SIZE_MAX / 4 || m->strings_len + n + 1 > m->strings_cap) {
        if (n > SIZE_MAX / 4) return hl_fail(err, HELIOS_ERR_FORMAT, "%s: piece too long", m->name);
        size_t cap = m->strings_cap ? m->strings_cap : 4096;
        while (cap < m->strings_len + n + 1) cap *= 2;
        char *p = realloc(m->strings, cap);
        if (!p) return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", m->name);
        m->strings = p;
        m->strings_cap = cap;
    }
    hl_spm_piece pc = {m->strings_len, n, score, type};
    if (n) memcpy(m->strings + m->strings_len, s, n);
    m->strings[m->strings_len + n] = '\0';
    m->strings_len += n + 1;
    m->pieces[m->n_pieces++] = pc;
    return HL_OK;
}

hl_status hl_spm_finish(hl_spm *m, hl_error *err) {
    HL_TRY(build_tables(m, err));
    HL_TRY(hl_spm_normalizer_init(m, err));
    fill_info(m);
    return HL_OK;
}

hl_status hl_spm_load_mem(const void *buf, size_t size, const char *name, hl_spm **out,
                          hl_error *err) {
    *out = NULL;
    hl_spm *m;
    HL_TRY(hl_spm_new(name, &m, err));
    hl_status st = hl_spm_parse_proto(m, buf, size, err);
    /* The trainer writes vocab_size = the number of pieces. Fewer pieces than that is a file
     * cut between two pieces (a prefix of a protobuf is often a valid protobuf); more is fine
     * (pieces added to a trained model). */
    if (st == HL_OK && m->tr_vocab_size > 0 && m->n_pieces < (size_t)m->tr_vocab_size)
        st = hl_fail(err, HELIOS_ERR_FORMAT,
                     "%s: truncated: %zu pieces, but trainer_spec.vocab_size is %d", m->name,
                     m->n_pieces, (int)m->tr_vocab_size);
    if (st == HL_OK) st = hl_spm_finish(m, err);
    if (st != HL_OK) {
        hl_spm_free(m);
        return st;
    }
    *out = m;
    return HL_OK;
}

hl_status hl_spm_load(const char *path, hl_spm **out, hl_error *err) {
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    HL_TRY(hl_file_read_all(path, HL_FILE_MAX_SPM, "spiece.model", &buf, &len, err));
    hl_status st = hl_spm_load_mem(buf, len, path, out, err);
    free(buf);
    return st;
}

void hl_spm_free(hl_spm *m) {
    if (!m) return;
    free(m->name);
    free(m->pieces);
    free(m->strings);
    free(m->unk_piece);
    free(m->bos_piece);
    free(m->eos_piece);
    free(m->pad_piece);
    free(m->normalizer_name);
    free(m->charsmap);
    free(m->piece_hash);
    free(m->trie.node_id);
    free(m->trie.edge_key);
    free(m->trie.edge_child);
    free(m);
}

/* ---- lookups --------------------------------------------------------------------------------- */

const hl_spm_info *hl_spm_get_info(const hl_spm *m) { return &m->info; }

const char *hl_spm_id_to_piece(const hl_spm *m, int id, size_t *len) {
    if (id < 0 || (size_t)id >= m->n_pieces) return NULL;
    if (len) *len = m->pieces[id].len;
    return piece_str(m, (size_t)id);
}

float hl_spm_piece_score(const hl_spm *m, int id) {
    return id < 0 || (size_t)id >= m->n_pieces ? 0.0f : m->pieces[id].score;
}

int hl_spm_piece_type(const hl_spm *m, int id) {
    return id < 0 || (size_t)id >= m->n_pieces ? 0 : m->pieces[id].type;
}

int hl_spm_piece_to_id(const hl_spm *m, const char *piece, size_t len) {
    int32_t e = m->piece_hash[piece_slot(m, piece, len)];
    return e ? e - 1 : m->unk_id;
}

/* ---- segmentation ---------------------------------------------------------------------------- */

/* string_util::OneCharLen: the length a UTF-8 lead byte announces (1 for stray bytes). */
static size_t one_char_len(unsigned char c) {
    static const unsigned char len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

typedef struct best_node {
    int32_t id;
    int32_t start; /* -1: not reached yet */
    float score;   /* best path score ending here */
} best_node;

/* The Viterbi pass of EncodeOptimized over s[0..n): best[e] is the best path ending at byte e.
 * The arithmetic is the reference's: a piece score enters as double (the C++ ternary with the
 * user-defined bonus `length * max_score - 0.1` has type double), is compared in double with the
 * float stored so far and stored as float; the unknown path is pure float. Ties keep the earlier
 * candidate. */
static void viterbi(const hl_spm *m, const unsigned char *s, size_t n, best_node *best) {
    const float unk_score = m->min_score - k_unk_penalty;
    for (size_t i = 0; i <= n; i++) best[i] = (best_node){-1, -1, 0.0f};
    size_t start = 0;
    while (start < n) {
        const float till_here = best[start].score;
        size_t mblen = one_char_len(s[start]);
        if (mblen > n - start) mblen = n - start;
        bool has_single = false;
        int32_t node = 0;
        for (size_t k = start; k < n; k++) {
            node = hl_spm_trie_child(&m->trie, node, s[k]);
            if (node < 0) break;
            int32_t id = m->trie.node_id[node];
            if (id < 0 || m->pieces[id].type == HL_SPM_UNUSED) continue;
            size_t length = k + 1 - start;
            double score = m->pieces[id].type == HL_SPM_USER_DEFINED
                               ? (double)((float)length * m->max_score) - 0.1
                               : (double)m->pieces[id].score;
            double cand = score + (double)till_here;
            best_node *t = &best[k + 1];
            if (t->start == -1 || cand > (double)t->score) {
                t->score = (float)cand;
                t->start = (int32_t)start;
                t->id = id;
            }
            if (length == mblen) has_single = true;
        }
        if (!has_single) { /* no piece covers this character: the unknown path */
            float cand = unk_score + till_here;
            best_node *t = &best[start + mblen];
            if (t->start == -1 || cand > t->score) {
                t->score = cand;
                t->start = (int32_t)start;
                t->id = m->unk_id;
            }
        }
        start += mblen;
    }
}

hl_status hl_spm_encode(const hl_spm *m, const char *text, size_t len, int32_t **ids_out,
                        size_t *n_out, hl_error *err) {
    *ids_out = NULL;
    *n_out = 0;
    char *norm;
    size_t n;
    HL_TRY(hl_spm_normalize(m, text, len, &norm, &n, err));
    if (n == 0) {
        free(norm);
        return HL_OK;
    }
    if (n >= (size_t)INT32_MAX) {
        free(norm);
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: text of %zu bytes is too long", m->name,
                       len);
    }
    const unsigned char *s = (const unsigned char *)norm;
    best_node *best = malloc((n + 1) * sizeof *best);
    /* every emitted id covers at least one normalized byte; the path is collected in reverse */
    int32_t *path = malloc(n * sizeof *path);
    int32_t *ids = malloc(n * sizeof *ids);
    if (!best || !path || !ids) {
        free(norm), free(best), free(path), free(ids);
        return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    }
    viterbi(m, s, n, best);

    size_t n_path = 0;
    for (size_t end = n; end > 0; end = (size_t)best[end].start) {
        if (best[end].start < 0 || (size_t)best[end].start >= end) { /* cannot happen */
            free(norm), free(best), free(path), free(ids);
            return hl_fail(err, HELIOS_ERR_INTERNAL, "%s: broken Viterbi path", m->name);
        }
        path[n_path++] = (int32_t)end;
    }

    /* PopulateSentencePieceText: unknowns become their bytes with byte fallback; otherwise a run
     * of unknowns is one id. */
    size_t n_ids = 0;
    bool prev_unk = false;
    for (size_t k = n_path; k-- > 0;) {
        size_t end = (size_t)path[k], start = (size_t)best[end].start;
        int32_t id = best[end].id;
        bool is_unk = m->pieces[id].type == HL_SPM_UNKNOWN;
        if (is_unk && m->byte_fallback) {
            for (size_t i = start; i < end; i++) ids[n_ids++] = m->byte_ids[s[i]];
        } else if (!(is_unk && prev_unk)) {
            ids[n_ids++] = id;
        }
        prev_unk = is_unk;
    }
    free(norm);
    free(best);
    free(path);
    *ids_out = ids;
    *n_out = n_ids;
    return HL_OK;
}

hl_status hl_spm_encode_t5(const hl_spm *m, const char *text, size_t len, int max_len, int32_t *ids,
                           int32_t *mask, int *n_real, hl_error *err) {
    if (max_len < 1)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "T5 encoding: max_len %d < 1", max_len);
    const int eos = m->info.eos_id, pad = m->info.pad_id;
    if (eos < 0 || pad < 0)
        return hl_fail(err, HELIOS_ERR_UNSUPPORTED, "%s: T5 encoding needs eos and pad pieces",
                       m->name);
    int32_t *raw;
    size_t n;
    HL_TRY(hl_spm_encode(m, text, len, &raw, &n, err));
    size_t keep = n < (size_t)max_len - 1 ? n : (size_t)max_len - 1;
    for (size_t i = 0; i < keep; i++) ids[i] = raw[i];
    ids[keep] = eos;
    for (size_t i = keep + 1; i < (size_t)max_len; i++) ids[i] = pad;
    if (mask)
        for (size_t i = 0; i < (size_t)max_len; i++) mask[i] = i <= keep;
    if (n_real) *n_real = (int)keep + 1;
    free(raw);
    return HL_OK;
}
