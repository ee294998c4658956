/* json.c — a strict RFC 8259 reader.
 *
 * Recursive descent over text[0..len): the input need not be NUL-terminated and no byte past len
 * is ever read. Containers nest at most HL_JSON_MAX_DEPTH deep, which also bounds the recursion
 * of this parser and of hl_json_free. Strings are validated as UTF-8 and their escapes decoded;
 * numbers follow the RFC grammar exactly (no leading zeros, no "1.", no "+1", no NaN/Infinity).
 *
 * Ownership: every node's string, keys and items are malloc'ed and belong to the node. A partly
 * built node is always in a state json_clear() can free, which keeps the error paths simple: the
 * function that fails returns, and whoever owns the top of the tree frees it. */
#include "io/json.h"

#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

typedef struct json_parser {
    const unsigned char *start, *pos, *end;
    int depth;
    hl_error *err;
} json_parser;

/* ---- errors --------------------------------------------------------------------------------- */

/* Reports a syntax error at `at` as "line L, column C: what". Lines and columns are 1-based and
 * counted in bytes; computing them only here keeps the hot path free of bookkeeping. */
static hl_status json_error(json_parser *p, const unsigned char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static hl_status json_error(json_parser *p, const unsigned char *at, const char *fmt, ...) {
    size_t line = 1, col = 1;
    for (const unsigned char *c = p->start; c < at; c++) {
        if (*c == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return hl_fail(p->err, HELIOS_ERR_FORMAT, "line %zu, column %zu: %s", line, col, what);
}

/* "unexpected end of input", "unexpected 'x'" or "unexpected byte 0x9f" for the byte at `at`. */
static hl_status json_unexpected(json_parser *p, const unsigned char *at, const char *expected) {
    if (at >= p->end) return json_error(p, at, "unexpected end of input, expected %s", expected);
    if (*at >= 0x20 && *at < 0x7f)
        return json_error(p, at, "unexpected '%c', expected %s", *at, expected);
    return json_error(p, at, "unexpected byte 0x%02x, expected %s", *at, expected);
}

static hl_status json_oom(json_parser *p) {
    return hl_fail(p->err, HELIOS_ERR_OOM, "out of memory while parsing JSON");
}

/* ---- nodes ---------------------------------------------------------------------------------- */

/* Frees what j owns, not j itself (items are stored by value inside their parent). */
static void json_clear(hl_json *j) {
    free(j->string);
    for (size_t i = 0; i < j->n; i++) {
        json_clear(&j->items[i]);
        if (j->keys) free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    memset(j, 0, sizeof *j);
}

void hl_json_free(hl_json *j) {
    if (!j) return;
    json_clear(j);
    free(j);
}

/* Makes room for one more item (and key, for objects). On failure nothing changes. */
static int json_reserve(hl_json *j, size_t *cap) {
    if (j->n < *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 4;
    if (ncap > SIZE_MAX / sizeof(hl_json)) return -1;
    hl_json *items = realloc(j->items, ncap * sizeof *items);
    if (!items) return -1;
    j->items = items;
    if (j->type == HL_JSON_OBJECT) {
        char **keys = realloc(j->keys, ncap * sizeof *keys);
        if (!keys) return -1; /* items grew, keys did not: cap stays, both still valid */
        j->keys = keys;
    }
    *cap = ncap;
    return 0;
}

/* ---- lexing helpers ------------------------------------------------------------------------- */

static void skip_ws(json_parser *p) {
    while (p->pos < p->end &&
           (*p->pos == ' ' || *p->pos == '\t' || *p->pos == '\n' || *p->pos == '\r'))
        p->pos++;
}

static int is_digit(const json_parser *p, const unsigned char *c) {
    return c < p->end && *c >= '0' && *c <= '9';
}

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Length of the well-formed UTF-8 sequence at s (at most avail bytes), or 0 if it is not one:
 * overlong forms, UTF-16 surrogates and code points past U+10FFFF are rejected (RFC 3629). */
static size_t utf8_seq_len(const unsigned char *s, size_t avail) {
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0; /* overlong */
        if (c == 0xed) hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90; /* overlong */
        if (c == 0xf4) hi = 0x8f; /* > U+10FFFF */
    } else {
        return 0;
    }
    if (avail < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return len;
}

static size_t utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---- strings -------------------------------------------------------------------------------- */

/* Reads the 4 hex digits of a \u escape at s (which must end before lim). -1 if malformed. */
static long read_hex4(const unsigned char *s, const unsigned char *lim) {
    if (lim - s < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(s[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Decodes the escape at r (r[0] == '\\'; endq is the string's closing quote), appending UTF-8
 * to buf. Sets *next past it. */
static hl_status parse_escape(json_parser *p, const unsigned char *r, const unsigned char *endq,
                              char *buf, size_t *len, const unsigned char **next) {
    static const char simple_in[] = "\"\\/bfnrt";
    static const char simple_out[] = "\"\\/\b\f\n\r\t";
    if (r + 1 >= endq) return json_error(p, r, "incomplete escape sequence");
    unsigned char e = r[1];
    if (e != 'u') {
        const char *k = e ? strchr(simple_in, e) : NULL;
        if (!k) {
            if (e >= 0x20 && e < 0x7f) return json_error(p, r, "invalid escape '\\%c'", e);
            return json_error(p, r, "invalid escape: byte 0x%02x after '\\'", e);
        }
        buf[(*len)++] = simple_out[k - simple_in];
        *next = r + 2;
        return HL_OK;
    }
    long hi = read_hex4(r + 2, endq);
    if (hi < 0) return json_error(p, r, "\\u must be followed by 4 hex digits");
    uint32_t cp = (uint32_t)hi;
    const unsigned char *after = r + 6;
    if (hi >= 0xdc00 && hi <= 0xdfff)
        return json_error(p, r, "unpaired low surrogate \\u%04lx", (unsigned long)hi);
    if (hi >= 0xd800 && hi <= 0xdbff) {
        /* A high surrogate must be followed by an escaped low one: together one code point. */
        long lo = (endq - after >= 2 && after[0] == '\\' && after[1] == 'u')
                      ? read_hex4(after + 2, endq)
                      : -1;
        if (lo < 0xdc00 || lo > 0xdfff)
            return json_error(p, r, "high surrogate \\u%04lx not followed by a low surrogate",
                              (unsigned long)hi);
        cp = 0x10000 + (((uint32_t)hi - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
        after += 6;
    }
    *len += utf8_encode(cp, buf + *len);
    *next = after;
    return HL_OK;
}

/* Parses the string starting at p->pos ('"') into a new NUL-terminated buffer. */
static hl_status parse_string(json_parser *p, char **out, size_t *out_len) {
    const unsigned char *quote = p->pos, *s = quote + 1, *endq = s;
    /* Find the closing quote first: the decoded text is never longer than the raw text, so one
     * allocation of that size is enough (an escape of n bytes decodes to fewer than n). */
    while (endq < p->end && *endq != '"') endq += (*endq == '\\' && endq + 1 < p->end) ? 2 : 1;
    if (endq >= p->end) return json_error(p, quote, "unterminated string");

    size_t raw = (size_t)(endq - s), len = 0;
    char *buf = malloc(raw + 1);
    if (!buf) return json_oom(p);
    const unsigned char *r = s;
    hl_status st = HL_OK;
    while (r < endq) {
        if (*r == '\\') {
            st = parse_escape(p, r, endq, buf, &len, &r);
            if (st != HL_OK) break;
        } else if (*r < 0x20) {
            st = json_error(p, r, "control character 0x%02x in string (must be escaped)", *r);
            break;
        } else {
            size_t n = utf8_seq_len(r, (size_t)(endq - r));
            if (n == 0) {
                st = json_error(p, r, "invalid UTF-8 in string");
                break;
            }
            memcpy(buf + len, r, n);
            len += n;
            r += n;
        }
    }
    if (st != HL_OK) {
        free(buf);
        return st;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    p->pos = endq + 1;
    return HL_OK;
}

/* ---- numbers -------------------------------------------------------------------------------- */

/* strtod() of the literal s[0..n), made locale-independent: the caller's locale may use ',' as
 * its decimal point, so '.' is replaced by whatever the current locale expects. */
static int number_to_double(const unsigned char *s, size_t n, double *out) {
    const char *dp = localeconv()->decimal_point;
    size_t dpl = (dp && *dp) ? strlen(dp) : 1;
    char small[128], *buf = small;
    if (n + dpl + 1 > sizeof small) {
        buf = malloc(n + dpl + 1);
        if (!buf) return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.' && dp && *dp) {
            memcpy(buf + k, dp, dpl);
            k += dpl;
        } else {
            buf[k++] = (char)s[i];
        }
    }
    buf[k] = '\0';
    *out = strtod(buf, NULL);
    if (buf != small) free(buf);
    return 0;
}

/* Exact int64 value of the integer literal s[0..n) ("-?[0-9]+"), or -1 if it does not fit.
 * Accumulates negatively so INT64_MIN, whose magnitude has no positive int64, is reachable. */
static int integer_value(const unsigned char *s, size_t n, int64_t *out) {
    int neg = s[0] == '-';
    int64_t v = 0;
    for (size_t i = (size_t)neg; i < n; i++) {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_sub_overflow(v, s[i] - '0', &v))
            return -1;
    }
    if (!neg) {
        if (v == INT64_MIN) return -1;
        v = -v;
    }
    *out = v;
    return 0;
}

static hl_status parse_number(json_parser *p, hl_json *out) {
    const unsigned char *s = p->pos, *r = s;
    int integral = 1;
    if (*r == '-') r++;
    if (!is_digit(p, r)) return json_unexpected(p, r, "a digit");
    if (*r == '0') {
        r++;
        if (is_digit(p, r)) return json_error(p, r - 1, "leading zeros are not allowed");
    } else {
        while (is_digit(p, r)) r++;
    }
    if (r < p->end && *r == '.') {
        integral = 0;
        r++;
        if (!is_digit(p, r)) return json_unexpected(p, r, "a digit after '.'");
        while (is_digit(p, r)) r++;
    }
    if (r < p->end && (*r == 'e' || *r == 'E')) {
        integral = 0;
        r++;
        if (r < p->end && (*r == '+' || *r == '-')) r++;
        if (!is_digit(p, r)) return json_unexpected(p, r, "a digit in the exponent");
        while (is_digit(p, r)) r++;
    }

    size_t n = (size_t)(r - s);
    out->type = HL_JSON_NUMBER;
    if (integral && integer_value(s, n, &out->integer) == 0) {
        out->is_int = true;
        /* (double) of an int64 rounds to nearest like strtod; keep the sign of "-0". */
        out->number = (out->integer == 0 && s[0] == '-') ? -0.0 : (double)out->integer;
    } else {
        out->integer = 0;
        if (number_to_double(s, n, &out->number) != 0) return json_oom(p);
        if (isinf(out->number)) return json_error(p, s, "number out of range");
    }
    p->pos = r;
    return HL_OK;
}

/* ---- values --------------------------------------------------------------------------------- */

static hl_status parse_value(json_parser *p, hl_json *out);

static hl_status enter(json_parser *p) {
    if (++p->depth > HL_JSON_MAX_DEPTH)
        return json_error(p, p->pos, "nesting deeper than %d levels", HL_JSON_MAX_DEPTH);
    p->pos++; /* the '[' or '{' */
    skip_ws(p);
    return HL_OK;
}

static hl_status parse_array(json_parser *p, hl_json *out) {
    out->type = HL_JSON_ARRAY;
    HL_TRY(enter(p));
    size_t cap = 0;
    if (p->pos < p->end && *p->pos == ']') {
        p->pos++;
        p->depth--;
        return HL_OK;
    }
    for (;;) {
        if (json_reserve(out, &cap) != 0) return json_oom(p);
        hl_json *item = &out->items[out->n];
        memset(item, 0, sizeof *item);
        out->n++; /* counted now so the parent's json_clear frees a half-parsed item too */
        HL_TRY(parse_value(p, item));
        skip_ws(p);
        if (p->pos < p->end && *p->pos == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->end && *p->pos == ']') {
            p->pos++;
            break;
        }
        return json_unexpected(p, p->pos, "',' or ']'");
    }
    p->depth--;
    return HL_OK;
}

static hl_status parse_object(json_parser *p, hl_json *out) {
    out->type = HL_JSON_OBJECT;
    HL_TRY(enter(p));
    size_t cap = 0;
    if (p->pos < p->end && *p->pos == '}') {
        p->pos++;
        p->depth--;
        return HL_OK;
    }
    for (;;) {
        if (p->pos >= p->end || *p->pos != '"') return json_unexpected(p, p->pos, "a string key");
        const unsigned char *key_at = p->pos;
        char *key = NULL;
        size_t key_len = 0;
        HL_TRY(parse_string(p, &key, &key_len));
        /* Member names are handed out as C strings: one with a NUL inside would silently compare
         * equal to its prefix, so it is refused rather than truncated. */
        if (strlen(key) != key_len) {
            free(key);
            return json_error(p, key_at, "member name contains \\u0000");
        }
        if (json_reserve(out, &cap) != 0) {
            free(key);
            return json_oom(p);
        }
        out->keys[out->n] = key;
        hl_json *item = &out->items[out->n];
        memset(item, 0, sizeof *item);
        out->n++;
        skip_ws(p);
        if (p->pos >= p->end || *p->pos != ':') return json_unexpected(p, p->pos, "':'");
        p->pos++;
        HL_TRY(parse_value(p, item));
        skip_ws(p);
        if (p->pos < p->end && *p->pos == ',') {
            p->pos++;
            skip_ws(p);
            continue;
        }
        if (p->pos < p->end && *p->pos == '}') {
            p->pos++;
            break;
        }
        return json_unexpected(p, p->pos, "',' or '}'");
    }
    p->depth--;
    return HL_OK;
}

static hl_status parse_literal(json_parser *p, const char *word, hl_json *out) {
    size_t n = strlen(word);
    if ((size_t)(p->end - p->pos) < n || memcmp(p->pos, word, n) != 0)
        return json_unexpected(p, p->pos, "a value");
    p->pos += n;
    if (word[0] == 'n') {
        out->type = HL_JSON_NULL;
    } else {
        out->type = HL_JSON_BOOL;
        out->boolean = word[0] == 't';
    }
    return HL_OK;
}

static hl_status parse_value(json_parser *p, hl_json *out) {
    skip_ws(p);
    if (p->pos >= p->end) return json_unexpected(p, p->pos, "a value");
    switch (*p->pos) {
    case '{': return parse_object(p, out);
    case '[': return parse_array(p, out);
    case '"': out->type = HL_JSON_STRING; return parse_string(p, &out->string, &out->len);
    case 't': return parse_literal(p, "true", out);
    case 'f': return parse_literal(p, "false", out);
    case 'n': return parse_literal(p, "null", out);
    default:
        if (*p->pos == '-' || (*p->pos >= '0' && *p->pos <= '9')) return parse_number(p, out);
        return json_unexpected(p, p->pos, "a value");
    }
}

hl_status hl_json_parse(const char *text, size_t len, hl_json **out, hl_error *err) {
    if (!out || (!text && len))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_json_parse: NULL argument");
    *out = NULL;
    if (!text) text = ""; /* no arithmetic on a NULL pointer, even with len 0 */
    json_parser p = {
        .start = (const unsigned char *)text,
        .pos = (const unsigned char *)text,
        .end = (const unsigned char *)text + len,
        .err = err,
    };
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        return json_error(&p, p.pos, "byte order mark not allowed");
    hl_json *root = calloc(1, sizeof *root);
    if (!root) return json_oom(&p);
    hl_status st = parse_value(&p, root);
    if (st == HL_OK) {
        skip_ws(&p);
        if (p.pos < p.end) st = json_unexpected(&p, p.pos, "end of input after the value");
    }
    if (st != HL_OK) {
        hl_json_free(root);
        return st;
    }
    *out = root;
    return HL_OK;
}

hl_status hl_json_load_file_max(const char *path, size_t max_bytes, const char *kind, hl_json **out,
                                hl_error *err) {
    if (!path || !out || !kind)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_json_load_file: NULL argument");
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    HL_TRY(hl_file_read_all(path, max_bytes, kind, &text, &len, err));
    hl_status st = hl_json_parse(text, len, out, err);
    free(text);
    if (st != HL_OK) hl_error_prefix(err, "%s", path);
    return st;
}

hl_status hl_json_load_file(const char *path, hl_json **out, hl_error *err) {
    return hl_json_load_file_max(path, HL_FILE_MAX_CONFIG, "JSON config", out, err);
}

/* ---- access --------------------------------------------------------------------------------- */

const hl_json *hl_json_get(const hl_json *j, const char *key) {
    if (!j || !key || j->type != HL_JSON_OBJECT) return NULL;
    for (size_t i = j->n; i-- > 0;) /* from the end: the last duplicate wins */
        if (strcmp(j->keys[i], key) == 0) return &j->items[i];
    return NULL;
}

int hl_json_get_int(const hl_json *obj, const char *key, int64_t *out) {
    const hl_json *v = hl_json_get(obj, key);
    if (!v || v->type != HL_JSON_NUMBER || !v->is_int) return -1;
    *out = v->integer;
    return 0;
}

int hl_json_get_double(const hl_json *obj, const char *key, double *out) {
    const hl_json *v = hl_json_get(obj, key);
    if (!v || v->type != HL_JSON_NUMBER) return -1;
    *out = v->number;
    return 0;
}

int hl_json_get_bool(const hl_json *obj, const char *key, bool *out) {
    const hl_json *v = hl_json_get(obj, key);
    if (!v || v->type != HL_JSON_BOOL) return -1;
    *out = v->boolean;
    return 0;
}

const char *hl_json_get_string(const hl_json *obj, const char *key) {
    const hl_json *v = hl_json_get(obj, key);
    return v && v->type == HL_JSON_STRING ? v->string : NULL;
}

int hl_json_get_int_array(const hl_json *obj, const char *key, int64_t *out, int max) {
    const hl_json *v = hl_json_get(obj, key);
    if (!v || v->type != HL_JSON_ARRAY || max < 0 || v->n > (size_t)max) return -1;
    for (size_t i = 0; i < v->n; i++)
        if (v->items[i].type != HL_JSON_NUMBER || !v->items[i].is_int) return -1;
    for (size_t i = 0; i < v->n; i++) out[i] = v->items[i].integer;
    return (int)v->n;
}
