/* SentencePiece's normalizer (normalizer.cc), reproduced step by step because the ids depend on
 * every detail of it:
 *
 * - The precompiled charsmap is `uint32 trie_size (LE) | darts-clone double array (trie_size
 *   bytes of 4-byte units) | NUL-separated replacement strings`. At each position the longest key
 *   of the trie that prefixes the remaining input wins and is replaced by its string (which may
 *   be empty: deleted control characters). Keys may span several characters (NFKC compositions).
 * - Without a match one character is copied as is; a malformed UTF-8 byte becomes U+FFFD and
 *   consumes one byte. User-defined pieces are matched first and never normalized.
 * - remove_extra_whitespaces: leading characters that normalize to exactly " " are dropped, a
 *   replacement's leading spaces are dropped when the output so far ends in a space, and trailing
 *   spaces ("▁" when escaping) are removed at the end.
 * - add_dummy_prefix writes a space first (last with treat_whitespace_as_suffix), unless the
 *   input is empty or (with whitespace removal) only spaces.
 * - escape_whitespaces writes every ' ' of the output as U+2581 "▁".
 */
#include <stdlib.h>
#include <string.h>

#include "text/spm_internal.h"

/* ---- UTF-8 --------------------------------------------------------------------------------- */

static bool is_trail(unsigned char c) { return (c & 0xc0) == 0x80; }
static bool is_valid_cp(uint32_t c) { return c < 0xd800 || (c >= 0xe000 && c <= 0x10ffff); }

uint32_t hl_spm_decode_utf8(const unsigned char *s, size_t n, size_t *mblen, bool *valid) {
    *valid = true;
    if (s[0] < 0x80) {
        *mblen = 1;
        return s[0];
    }
    if (n >= 2 && (s[0] & 0xe0) == 0xc0) {
        uint32_t c = (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
        if (is_trail(s[1]) && c >= 0x80 && is_valid_cp(c)) {
            *mblen = 2;
            return c;
        }
    } else if (n >= 3 && (s[0] & 0xf0) == 0xe0) {
        uint32_t c = (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
        if (is_trail(s[1]) && is_trail(s[2]) && c >= 0x800 && is_valid_cp(c)) {
            *mblen = 3;
            return c;
        }
    } else if (n >= 4 && (s[0] & 0xf8) == 0xf0) {
        uint32_t c = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 |
                     (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
        if (is_trail(s[1]) && is_trail(s[2]) && is_trail(s[3]) && c >= 0x10000 && is_valid_cp(c)) {
            *mblen = 4;
            return c;
        }
    }
    *mblen = 1;
    *valid = false;
    return 0xfffd;
}

/* ---- buffer -------------------------------------------------------------------------------- */

void hl_spm_buf_append(hl_spm_buf *b, const void *src, size_t n) {
    if (b->oom || n == 0) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* ---- the charsmap trie (darts-clone double array) ------------------------------------------- */

static uint32_t unit_at(const hl_spm *m, size_t id) {
    const unsigned char *u = m->norm_units + 4 * id;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}
static bool unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static uint32_t unit_value(uint32_t u) { return u & 0x7fffffffu; }
static uint32_t unit_label(uint32_t u) { return u & (0x80000000u | 0xffu); }
static size_t unit_offset(uint32_t u) { return (size_t)(u >> 10) << ((u & (1u << 9)) >> 6); }

hl_status hl_spm_normalizer_init(hl_spm *m, hl_error *err) {
    m->norm_units = NULL;
    m->n_norm_units = 0;
    m->norm_strings = NULL;
    m->norm_strings_len = 0;
    if (m->charsmap_size == 0) return HL_OK; /* identity: no rules */
    if (m->charsmap_size <= 4)
        return hl_fail(err, HELIOS_ERR_FORMAT, "%s: precompiled_charsmap of %zu bytes is too short",
                       m->name, m->charsmap_size);
    const unsigned char *c = m->charsmap;
    size_t trie_size = (size_t)c[0] | (size_t)c[1] << 8 | (size_t)c[2] << 16 | (size_t)c[3] << 24;
    size_t rest = m->charsmap_size - 4;
    if (trie_size >= rest)
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "%s: precompiled_charsmap: trie of %zu bytes exceeds the %zu-byte blob",
                       m->name, trie_size, rest);
    m->norm_units = c + 4;
    m->n_norm_units = trie_size / 4; /* as set_array: whole units only */
    m->norm_strings = (const char *)c + 4 + trie_size;
    m->norm_strings_len = rest - trie_size;
    return HL_OK;
}

/* darts-clone commonPrefixSearch from the root: the length of the longest key that prefixes
 * s[0..n) (0 if none) and its value. Ids are checked against the array: a valid trie never
 * leaves it, a hostile one just stops matching. */
static size_t charsmap_longest(const hl_spm *m, const unsigned char *s, size_t n, uint32_t *value) {
    const size_t nu = m->n_norm_units;
    size_t best = 0;
    if (nu == 0) return 0;
    size_t id = unit_offset(unit_at(m, 0));
    for (size_t i = 0; i < n; i++) {
        id ^= s[i];
        if (id >= nu) break;
        uint32_t u = unit_at(m, id);
        if (unit_label(u) != s[i]) break;
        id ^= unit_offset(u);
        if (unit_has_leaf(u)) {
            if (id >= nu) break;
            best = i + 1;
            *value = unit_value(unit_at(m, id));
        }
    }
    return best;
}

/* Longest user-defined piece that prefixes s[0..n), or 0 (PrefixMatcher). */
static size_t user_defined_longest(const hl_spm *m, const unsigned char *s, size_t n) {
    size_t best = 0;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        node = hl_spm_trie_child(&m->trie, node, s[i]);
        if (node < 0) break;
        int32_t id = m->trie.node_id[node];
        if (id >= 0 && m->pieces[id].type == HL_SPM_USER_DEFINED) best = i + 1;
    }
    return best;
}

/* Normalizer::NormalizePrefix: what the input at s[0..n) (n > 0) normalizes to (*rep, *rep_len)
 * and how many input bytes that consumes. */
static void normalize_prefix(const hl_spm *m, const unsigned char *s, size_t n, const char **rep,
                             size_t *rep_len, size_t *consumed) {
    if (m->has_user_defined) {
        size_t l = user_defined_longest(m, s, n);
        if (l) {
            *rep = (const char *)s;
            *rep_len = *consumed = l;
            return;
        }
    }
    uint32_t v = 0;
    size_t l = charsmap_longest(m, s, n, &v);
    if (l) {
        /* The replacement runs to its NUL (SentencePiece reads it as a C string). A value past
         * the blob (hostile file) replaces by nothing. */
        *consumed = l;
        if (v < m->norm_strings_len) {
            *rep = m->norm_strings + v;
            *rep_len = strnlen(*rep, m->norm_strings_len - v);
        } else {
            *rep = "";
            *rep_len = 0;
        }
        return;
    }
    size_t mblen;
    bool valid;
    hl_spm_decode_utf8(s, n, &mblen, &valid);
    if (valid) {
        *rep = (const char *)s;
        *rep_len = *consumed = mblen;
    } else {
        *rep = "\xef\xbf\xbd"; /* U+FFFD for one malformed byte */
        *rep_len = 3;
        *consumed = 1;
    }
}

static void add_space(const hl_spm *m, hl_spm_buf *b) {
    if (m->escape_whitespaces) hl_spm_buf_append(b, HL_SPM_SPACE, HL_SPM_SPACE_LEN);
    else hl_spm_buf_append(b, " ", 1);
}

static bool ends_with(const hl_spm_buf *b, const char *suffix, size_t n) {
    return b->len >= n && memcmp(b->p + b->len - n, suffix, n) == 0;
}

hl_status hl_spm_normalize(const hl_spm *m, const char *text, size_t len, char **out,
                           size_t *out_len, hl_error *err) {
    const unsigned char *in = (const unsigned char *)text;
    hl_spm_buf b = {0};
    *out = NULL;
    *out_len = 0;
    const char *rep;
    size_t rep_len, used;

    /* Leading whitespace: characters that normalize to exactly one space. */
    if (m->remove_extra_whitespaces) {
        while (len > 0) {
            normalize_prefix(m, in, len, &rep, &rep_len, &used);
            if (!(rep_len == 1 && rep[0] == ' ')) break;
            in += used;
            len -= used;
        }
    }
    if (len == 0) { /* empty, or only whitespace */
        *out = calloc(1, 1);
        return *out ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    }

    if (!m->treat_whitespace_as_suffix && m->add_dummy_prefix) add_space(m, &b);

    bool prev_space = m->remove_extra_whitespaces;
    while (len > 0) {
        normalize_prefix(m, in, len, &rep, &rep_len, &used);
        /* drop the replacement's leading spaces after a space */
        while (prev_space && rep_len > 0 && rep[0] == ' ') {
            rep++;
            rep_len--;
        }
        if (rep_len > 0) {
            for (size_t i = 0; i < rep_len; i++) {
                if (m->escape_whitespaces && rep[i] == ' ') add_space(m, &b);
                else hl_spm_buf_append(&b, rep + i, 1);
            }
            prev_space = rep[rep_len - 1] == ' ';
        }
        in += used;
        len -= used;
        if (!m->remove_extra_whitespaces) prev_space = false;
    }

    if (m->remove_extra_whitespaces) {
        const char *sp = m->escape_whitespaces ? HL_SPM_SPACE : " ";
        size_t sp_len = m->escape_whitespaces ? HL_SPM_SPACE_LEN : 1;
        while (!b.oom && ends_with(&b, sp, sp_len)) b.len -= sp_len;
        if (b.p) b.p[b.len] = '\0';
    }
    if (m->treat_whitespace_as_suffix && m->add_dummy_prefix) add_space(m, &b);

    if (b.oom) {
        free(b.p);
        return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    }
    if (!b.p) { /* everything was removed */
        b.p = calloc(1, 1);
        if (!b.p) return hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    }
    *out = b.p;
    *out_len = b.len;
    return HL_OK;
}
