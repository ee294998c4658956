/* Prompt cleaning as the pipelines do it, minus ftfy (see prompt_clean.h for the differences).
 * The code follows CPython's html.unescape (Lib/html/__init__.py) rule by rule. */
#include "text/prompt_clean.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/html_entities.h"
#include "text/spm_internal.h"

/* ---- characters ------------------------------------------------------------------------------ */

/* The code point at s[0..n) (n > 0) and its length; a malformed byte is one character that is
 * nothing in particular (returned as UINT32_MAX). */
static uint32_t next_char(const unsigned char *s, size_t n, size_t *len) {
    bool valid;
    uint32_t c = hl_spm_decode_utf8(s, n, len, &valid);
    return valid ? c : UINT32_MAX;
}

/* `\s` of the `regex` module (the pattern of whitespace_clean). */
static bool is_regex_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* str.isspace() of Python: the above plus the information separators U+001C..U+001F. */
static bool is_py_space(uint32_t c) { return is_regex_space(c) || (c >= 0x1c && c <= 0x1f); }

static size_t put_utf8(char *o, uint32_t c) {
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | c >> 12);
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | c >> 18);
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

static void append_cp(hl_spm_buf *b, uint32_t c) {
    char tmp[4];
    hl_spm_buf_append(b, tmp, put_utf8(tmp, c));
}

/* ---- html.unescape ---------------------------------------------------------------------------- */

const hl_html_entity *hl_html_entity_find(const char *name, size_t len) {
    int lo = 0, hi = hl_html_entities_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const char *e = hl_html_entities[mid].name;
        size_t el = strlen(e);
        int c = memcmp(e, name, el < len ? el : len);
        if (c == 0) c = el < len ? -1 : el > len ? 1 : 0;
        if (c == 0) return &hl_html_entities[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

/* html._invalid_charrefs: &#128;..&#159; read as windows-1252 (0 = the control itself). */
static const uint16_t k_cp1252[32] = {
    0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008d, 0x017d, 0x008f, 0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
};

/* html._invalid_codepoints: references to these are dropped. */
static bool is_invalid_codepoint(uint64_t c) {
    return (c >= 0x1 && c <= 0x8) || c == 0xb || (c >= 0xe && c <= 0x1f) ||
           (c >= 0x7f && c <= 0x9f) || (c >= 0xfdd0 && c <= 0xfdef) ||
           (c <= 0x10ffff && (c & 0xfffe) == 0xfffe);
}

/* _replace_charref for a numeric reference with value num (saturated above 0x10FFFF). */
static void numeric_charref(hl_spm_buf *b, uint64_t num) {
    if (num == 0) append_cp(b, 0xfffd);
    else if (num == 0x0d) append_cp(b, 0x0d);
    else if (num >= 0x80 && num <= 0x9f) append_cp(b, k_cp1252[num - 0x80]);
    else if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) append_cp(b, 0xfffd);
    else if (is_invalid_codepoint(num)) return;
    else append_cp(b, (uint32_t)num);
}

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Tries the reference `&#[0-9]+;?` or `&#[xX][0-9a-fA-F]+;?` at s[0..n) (s[0] == '#').
 * Returns the bytes consumed after the '&', 0 if it does not match. */
static size_t numeric_ref(hl_spm_buf *b, const unsigned char *s, size_t n) {
    size_t i = 1;
    int base = 10;
    if (i < n && (s[i] == 'x' || s[i] == 'X')) {
        base = 16;
        i++;
    }
    size_t first = i;
    uint64_t num = 0;
    for (; i < n && (base == 16 ? hex_value(s[i]) >= 0 : (s[i] >= '0' && s[i] <= '9')); i++) {
        num = num * (uint64_t)base + (uint64_t)hex_value(s[i]);
        if (num > 0x110000) num = 0x110000; /* anything above U+10FFFF reads the same */
    }
    if (i == first) return 0;
    if (i < n && s[i] == ';') i++;
    numeric_charref(b, num);
    return i;
}

/* The named alternative `[^\t\n\f <&#;]{1,32};?` at s[0..n): consumed bytes (0: no match). */
static size_t named_ref(hl_spm_buf *b, const unsigned char *s, size_t n) {
    size_t i = 0, cps = 0;
    size_t cp_end[34]; /* byte length of the first k code points, k = 1..33 (with the ';') */
    while (i < n && cps < 32) {
        unsigned char c = s[i];
        if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' ||
            c == ';')
            break;
        size_t l;
        next_char(s + i, n - i, &l);
        i += l;
        cp_end[++cps] = i;
    }
    if (cps == 0) return 0;
    size_t total = i;
    if (i < n && s[i] == ';') {
        total++;
        cp_end[++cps] = total; /* the ';' is part of the name */
    }
    const hl_html_entity *e = hl_html_entity_find((const char *)s, total);
    if (e) {
        hl_spm_buf_append(b, e->value, strlen(e->value));
        return total;
    }
    /* the longest prefix that is an entity (only the legacy names without ';' can be) */
    for (size_t x = cps - 1; x >= 2; x--) {
        e = hl_html_entity_find((const char *)s, cp_end[x]);
        if (e) {
            hl_spm_buf_append(b, e->value, strlen(e->value));
            hl_spm_buf_append(b, s + cp_end[x], total - cp_end[x]);
            return total;
        }
    }
    hl_spm_buf_append(b, "&", 1);
    hl_spm_buf_append(b, s, total);
    return total;
}

hl_status hl_html_unescape(const char *in, size_t len, char **out, size_t *out_len) {
    const unsigned char *s = (const unsigned char *)in;
    hl_spm_buf b = {0};
    size_t i = 0;
    while (i < len) {
        const unsigned char *amp = memchr(s + i, '&', len - i);
        size_t plain = amp ? (size_t)(amp - (s + i)) : len - i;
        hl_spm_buf_append(&b, s + i, plain);
        i += plain;
        if (i >= len) break;
        i++; /* the '&' */
        size_t used = 0;
        if (i < len && s[i] == '#') used = numeric_ref(&b, s + i, len - i);
        else if (i < len) used = named_ref(&b, s + i, len - i);
        if (used == 0) hl_spm_buf_append(&b, "&", 1); /* no reference here */
        i += used;
    }
    if (!b.oom && !b.p) b.p = calloc(1, 1);
    if (b.oom || !b.p) {
        free(b.p);
        return HELIOS_ERR_OOM;
    }
    *out = b.p;
    if (out_len) *out_len = b.len;
    return HL_OK;
}

/* ---- strip and whitespace_clean ---------------------------------------------------------------- */

/* str.strip(): [*begin, *end) without Python whitespace at both ends. */
static void py_strip(const unsigned char *s, size_t n, size_t *begin, size_t *end) {
    size_t i = 0, first = n, last = 0;
    while (i < n) {
        size_t l;
        uint32_t c = next_char(s + i, n - i, &l);
        if (!is_py_space(c)) {
            if (first == n) first = i;
            last = i + l;
        }
        i += l;
    }
    *begin = first == n ? 0 : first;
    *end = first == n ? 0 : last;
}

hl_status hl_prompt_clean_n(const char *in, size_t len, char **out, size_t *out_len) {
    char *u1, *u2;
    size_t n1, n2;
    *out = NULL;
    HL_TRY(hl_html_unescape(in, len, &u1, &n1));
    hl_status st = hl_html_unescape(u1, n1, &u2, &n2);
    free(u1);
    if (st != HL_OK) return st;

    /* .strip(), then \s+ -> ' '. The second .strip() of whitespace_clean is a no-op: the first
     * left non-space characters at both ends and the collapse does not touch them. */
    const unsigned char *s = (const unsigned char *)u2;
    size_t b0, e0;
    py_strip(s, n2, &b0, &e0);
    hl_spm_buf b = {0};
    bool in_run = false;
    for (size_t i = b0; i < e0;) {
        size_t l;
        uint32_t c = next_char(s + i, e0 - i, &l);
        if (is_regex_space(c)) {
            if (!in_run) hl_spm_buf_append(&b, " ", 1);
            in_run = true;
        } else {
            hl_spm_buf_append(&b, s + i, l);
            in_run = false;
        }
        i += l;
    }
    free(u2);
    if (b.oom) {
        free(b.p);
        return HELIOS_ERR_OOM;
    }
    if (!b.p) { /* nothing left */
        b.p = calloc(1, 1);
        if (!b.p) return HELIOS_ERR_OOM;
    }
    *out = b.p;
    if (out_len) *out_len = b.len;
    return HL_OK;
}

hl_status hl_prompt_clean(const char *in, char **out) {
    return hl_prompt_clean_n(in, strlen(in), out, NULL);
}
