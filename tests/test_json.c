/* JSON reader: the RFC 8259 grammar, escapes, numbers, limits, error positions, getters. */
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"
#include "test_util.h"

/* Parses a NUL-terminated text (length without the NUL, so nothing past it is visible). */
static hl_json *parse_ok(const char *text) {
    hl_json *j = NULL;
    hl_error err;
    hl_error_clear(&err);
    hl_status st = hl_json_parse(text, strlen(text), &j, &err);
    CHECK(st == HL_OK && j, "parse '%s': %s", text, err.msg);
    return j;
}

/* Expects a format error whose message contains `want`. */
static void parse_bad_n(const char *text, size_t len, const char *want) {
    hl_json *j = (hl_json *)1;
    hl_error err;
    hl_error_clear(&err);
    hl_status st = hl_json_parse(text, len, &j, &err);
    CHECK(st == HELIOS_ERR_FORMAT, "'%.*s' should fail, got %d", (int)len, text, (int)st);
    CHECK(j == NULL, "out is NULL on failure");
    CHECK(strstr(err.msg, want) != NULL, "'%.*s': message '%s' lacks '%s'", (int)len, text, err.msg,
          want);
}

static void parse_bad(const char *text, const char *want) { parse_bad_n(text, strlen(text), want); }

static void test_scalars(void) {
    hl_json *j = parse_ok(" null ");
    CHECK(j && j->type == HL_JSON_NULL, "null");
    hl_json_free(j);
    j = parse_ok("true");
    CHECK(j && j->type == HL_JSON_BOOL && j->boolean, "true");
    hl_json_free(j);
    j = parse_ok("\t\r\nfalse\n");
    CHECK(j && j->type == HL_JSON_BOOL && !j->boolean, "false");
    hl_json_free(j);
    j = parse_ok("\"hi\"");
    CHECK(j && j->type == HL_JSON_STRING && j->len == 2 && !strcmp(j->string, "hi"), "string");
    hl_json_free(j);
    j = parse_ok("\"\"");
    CHECK(j && j->type == HL_JSON_STRING && j->len == 0 && j->string && !j->string[0],
          "empty string");
    hl_json_free(j);
}

static void test_numbers(void) {
    static const struct {
        const char *text;
        bool is_int;
        int64_t integer;
        double number;
    } cases[] = {
        {"0", true, 0, 0.0},
        {"-0", true, 0, -0.0},
        {"42", true, 42, 42.0},
        {"-17", true, -17, -17.0},
        {"9223372036854775807", true, INT64_MAX, 9223372036854775807.0},
        {"-9223372036854775808", true, INT64_MIN, -9223372036854775808.0},
        {"9223372036854775808", false, 0, 9223372036854775808.0},
        {"-9223372036854775809", false, 0, -9223372036854775809.0},
        {"1.5", false, 0, 1.5},
        {"-0.25", false, 0, -0.25},
        {"1e3", false, 0, 1000.0},
        {"1E+3", false, 0, 1000.0},
        {"25e-2", false, 0, 0.25},
        {"1.0", false, 0, 1.0},
        {"0.1", false, 0, 0.1},
        {"1e-400", false, 0, 0.0},
        {"123456789012345678901234567890", false, 0, 123456789012345678901234567890.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hl_json *j = parse_ok(cases[i].text);
        if (!j) continue;
        CHECK(j->type == HL_JSON_NUMBER, "%s is a number", cases[i].text);
        CHECK(j->is_int == cases[i].is_int, "%s is_int", cases[i].text);
        CHECK(!cases[i].is_int || j->integer == cases[i].integer, "%s integer %lld", cases[i].text,
              (long long)j->integer);
        CHECK(j->number == cases[i].number && signbit(j->number) == signbit(cases[i].number),
              "%s number %.17g", cases[i].text, j->number);
        hl_json_free(j);
    }
    parse_bad("01", "leading zeros");
    parse_bad("-01", "leading zeros");
    parse_bad("00", "leading zeros");
    parse_bad("1.", "digit after '.'");
    parse_bad(".5", "unexpected '.'");
    parse_bad("+1", "unexpected '+'");
    parse_bad("-", "unexpected end of input");
    parse_bad("1e", "exponent");
    parse_bad("1e+", "exponent");
    parse_bad("1.5.2", "unexpected '.'");
    parse_bad("0x10", "unexpected 'x'");
    parse_bad("NaN", "unexpected 'N'");
    parse_bad("Infinity", "unexpected 'I'");
    parse_bad("-Infinity", "unexpected 'I'");
    parse_bad("1e400", "out of range");
    parse_bad("-1e400", "out of range");

    /* A locale whose decimal point is ',' must not change what "2.5" means (checked only where
     * such a locale is installed). */
    const char *locales[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", NULL};
    for (int i = 0; locales[i]; i++) {
        if (!setlocale(LC_NUMERIC, locales[i])) continue;
        hl_json *j = parse_ok("2.5e0");
        CHECK(j && j->number == 2.5, "'2.5e0' under %s: %g", locales[i], j ? j->number : 0.0);
        hl_json_free(j);
        setlocale(LC_NUMERIC, "C");
        break;
    }
}

static void test_strings(void) {
    hl_json *j = parse_ok("\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"");
    CHECK(j && !strcmp(j->string, "a\"b\\c/d\be\ff\ng\rh\ti"), "simple escapes");
    hl_json_free(j);
    j = parse_ok("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"");
    CHECK(j && !strcmp(j->string, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"), "\\u escapes to UTF-8");
    CHECK(j && j->len == 10, "decoded length %zu", j ? j->len : 0);
    hl_json_free(j);
    j = parse_ok("\"x\\u0000y\"");
    CHECK(j && j->len == 3 && j->string[0] == 'x' && j->string[1] == 0 && j->string[2] == 'y' &&
              j->string[3] == 0,
          "embedded NUL via \\u0000 counts in len");
    hl_json_free(j);
    j = parse_ok("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"");
    CHECK(j && j->len == 13, "raw UTF-8 kept");
    hl_json_free(j);
    j = parse_ok("\"\\uDBFF\\uDFFF\"");
    CHECK(j && !strcmp(j->string, "\xf4\x8f\xbf\xbf"), "highest code point");
    hl_json_free(j);

    parse_bad("\"abc", "unterminated string");
    parse_bad("\"abc\\\"", "unterminated string");
    parse_bad("\"a\nb\"", "control character 0x0a");
    parse_bad("\"a\tb\"", "control character 0x09");
    parse_bad_n("\"a\0b\"", 5, "control character 0x00");
    parse_bad("\"\\x\"", "invalid escape '\\x'");
    parse_bad("\"\\u12\"", "4 hex digits");
    parse_bad("\"\\u12G4\"", "4 hex digits");
    parse_bad("\"\\ud800\"", "not followed by a low surrogate");
    parse_bad("\"\\ud800x\"", "not followed by a low surrogate");
    parse_bad("\"\\ud800\\u0041\"", "not followed by a low surrogate");
    parse_bad("\"\\ud800\\ud800\"", "not followed by a low surrogate");
    parse_bad("\"\\udc00\"", "unpaired low surrogate");
    parse_bad("\"\xff\"", "invalid UTF-8");
    parse_bad("\"\xc0\xaf\"", "invalid UTF-8");         /* overlong '/' */
    parse_bad("\"\xe0\x80\xaf\"", "invalid UTF-8");     /* overlong */
    parse_bad("\"\xed\xa0\x80\"", "invalid UTF-8");     /* encoded surrogate */
    parse_bad("\"\xf4\x90\x80\x80\"", "invalid UTF-8"); /* > U+10FFFF */
    parse_bad("\"\xe2\x82\"", "invalid UTF-8");         /* truncated sequence */
    parse_bad("\"\x80\"", "invalid UTF-8");             /* lone continuation byte */
    parse_bad("'a'", "unexpected '''");
}

static void test_containers(void) {
    hl_json *j = parse_ok("[1, [2, []], {}, \"x\", null]");
    CHECK(j && j->type == HL_JSON_ARRAY && j->n == 5, "array");
    if (j && j->n == 5) {
        CHECK(j->items[0].integer == 1, "[0]");
        CHECK(j->items[1].type == HL_JSON_ARRAY && j->items[1].n == 2, "[1]");
        CHECK(j->items[1].items[1].type == HL_JSON_ARRAY && j->items[1].items[1].n == 0, "[1][1]");
        CHECK(j->items[2].type == HL_JSON_OBJECT && j->items[2].n == 0, "[2]");
        CHECK(j->items[4].type == HL_JSON_NULL, "[4]");
    }
    hl_json_free(j);

    j = parse_ok("{\"a\": 1, \"b\": {\"c\": [true]}, \"a\": 2}");
    CHECK(j && j->type == HL_JSON_OBJECT && j->n == 3, "object keeps duplicates as members");
    CHECK(j && !strcmp(j->keys[0], "a") && !strcmp(j->keys[2], "a"), "keys in order");
    const hl_json *a = hl_json_get(j, "a");
    CHECK(a && a->integer == 2, "last duplicate wins");
    CHECK(hl_json_get(hl_json_get(j, "b"), "c") != NULL, "nested get");
    CHECK(hl_json_get(j, "z") == NULL, "absent member");
    CHECK(hl_json_get(a, "x") == NULL && hl_json_get(NULL, "x") == NULL, "get on non-object");
    hl_json_free(j);

    parse_bad("", "line 1, column 1: unexpected end of input");
    parse_bad("   ", "unexpected end of input");
    parse_bad("[1,]", "unexpected ']'");
    parse_bad("[1 2]", "expected ',' or ']'");
    parse_bad("[", "unexpected end of input");
    parse_bad("[1", "unexpected end of input");
    parse_bad("{\"a\":1,}", "expected a string key");
    parse_bad("{\"a\" 1}", "expected ':'");
    parse_bad("{a:1}", "expected a string key");
    parse_bad("{\"a\":}", "unexpected '}'");
    parse_bad("{\"a\":1", "expected ',' or '}'");
    parse_bad("{\"a\\u0000b\":1}", "member name contains \\u0000");
    parse_bad("{} {}", "line 1, column 4: unexpected '{'");
    parse_bad("1 2", "unexpected '2'");
    parse_bad("nul", "unexpected 'n'");
    parse_bad("truex", "unexpected 'x'");
    parse_bad("[tru]", "unexpected 't'");
    parse_bad("\xef\xbb\xbf{}", "byte order mark");
    parse_bad("[1]\x0c", "unexpected byte 0x0c"); /* form feed is not JSON whitespace */
    parse_bad("{\"a\": [1,\n  2,\n  x]}", "line 3, column 3: unexpected 'x'");
}

static void test_depth(void) {
    char buf[2 * HL_JSON_MAX_DEPTH + 8];
    size_t n = 0;
    for (int i = 0; i < HL_JSON_MAX_DEPTH; i++) buf[n++] = '[';
    for (int i = 0; i < HL_JSON_MAX_DEPTH; i++) buf[n++] = ']';
    buf[n] = '\0';
    hl_json *j = parse_ok(buf);
    CHECK(j != NULL, "depth %d accepted", HL_JSON_MAX_DEPTH);
    hl_json_free(j);

    memset(buf, '[', HL_JSON_MAX_DEPTH + 1);
    parse_bad_n(buf, HL_JSON_MAX_DEPTH + 1, "nesting deeper than 64 levels");

    /* A megabyte of '[' must fail fast and cleanly, not overflow the stack. */
    size_t big = 1 << 20;
    char *deep = malloc(big);
    CHECK(deep != NULL, "malloc");
    if (deep) {
        memset(deep, '[', big);
        parse_bad_n(deep, big, "nesting deeper");
        free(deep);
    }
}

/* Nothing past len may be read: a buffer cut right after a prefix of a valid text must fail
 * (ASan catches any read past the malloc'ed block). */
static void test_bounds(void) {
    const char *text = "{\"k\": [1.5e3, \"\\ud83d\\ude00\", true, null, -12]}";
    size_t len = strlen(text);
    for (size_t cut = 0; cut < len; cut++) {
        char *b = malloc(cut ? cut : 1);
        if (!b) continue;
        memcpy(b, text, cut);
        hl_json *j;
        hl_error err;
        hl_status st = hl_json_parse(b, cut, &j, &err);
        CHECK(st == HELIOS_ERR_FORMAT, "prefix of %zu bytes rejected", cut);
        free(b);
    }
    hl_json *j = NULL;
    CHECK(hl_json_parse(NULL, 0, &j, NULL) == HELIOS_ERR_FORMAT && !j, "NULL, 0 is empty input");
}

static void test_getters(void) {
    hl_json *j = parse_ok("{\"i\": 7, \"d\": 2.5, \"b\": true, \"s\": \"str\", \"a\": [1, 2, 3],"
                          " \"f\": [1, 2.5], \"big\": 1e30, \"n\": null}");
    if (!j) return;
    int64_t i;
    double d;
    bool b;
    int64_t arr[4];
    CHECK(hl_json_get_int(j, "i", &i) == 0 && i == 7, "int");
    CHECK(hl_json_get_int(j, "d", &i) == -1, "int from fraction");
    CHECK(hl_json_get_int(j, "big", &i) == -1, "int from 1e30");
    CHECK(hl_json_get_int(j, "zz", &i) == -1, "int absent");
    CHECK(hl_json_get_double(j, "d", &d) == 0 && d == 2.5, "double");
    CHECK(hl_json_get_double(j, "i", &d) == 0 && d == 7.0, "double from int");
    CHECK(hl_json_get_double(j, "s", &d) == -1, "double from string");
    CHECK(hl_json_get_bool(j, "b", &b) == 0 && b, "bool");
    CHECK(hl_json_get_bool(j, "i", &b) == -1, "bool from int");
    CHECK(hl_json_get_string(j, "s") && !strcmp(hl_json_get_string(j, "s"), "str"), "string");
    CHECK(hl_json_get_string(j, "n") == NULL, "string from null");
    CHECK(hl_json_get_int_array(j, "a", arr, 4) == 3 && arr[0] == 1 && arr[2] == 3, "int array");
    CHECK(hl_json_get_int_array(j, "a", arr, 2) == -1, "int array too long");
    CHECK(hl_json_get_int_array(j, "f", arr, 4) == -1, "int array with a fraction");
    CHECK(hl_json_get_int_array(j, "i", arr, 4) == -1, "int array from int");
    hl_json_free(j);
    hl_json_free(NULL);
}

static void test_load_file(void) {
    char dir[] = "/tmp/helios_json_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[64];
    snprintf(path, sizeof path, "%s/c.json", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "create");
    if (!f) return;
    fputs("{\"x\": [1,\n 2,\n oops]}", f);
    fclose(f);

    hl_json *j = NULL;
    hl_error err;
    hl_status st = hl_json_load_file(path, &j, &err);
    CHECK(st == HELIOS_ERR_FORMAT && !j, "bad file rejected");
    CHECK(strstr(err.msg, path) == err.msg && strstr(err.msg, "line 3, column 2"), "message: %s",
          err.msg);

    f = fopen(path, "wb");
    if (f) {
        fputs("{\"patch_size\": [1, 2, 2]}", f);
        fclose(f);
    }
    st = hl_json_load_file(path, &j, &err);
    int64_t p[3];
    CHECK(st == HL_OK && hl_json_get_int_array(j, "patch_size", p, 3) == 3 && p[2] == 2,
          "good file");
    hl_json_free(j);

    char missing[80];
    snprintf(missing, sizeof missing, "%s/none.json", dir);
    st = hl_json_load_file(missing, &j, &err);
    CHECK(st == HELIOS_ERR_IO && strstr(err.msg, missing) && strstr(err.msg, "No such file"),
          "missing file: %s", err.msg);
    st = hl_json_load_file(dir, &j, &err);
    CHECK(st == HELIOS_ERR_IO && strstr(err.msg, dir), "a folder: %s", err.msg);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    test_scalars();
    test_numbers();
    test_strings();
    test_containers();
    test_depth();
    test_bounds();
    test_getters();
    test_load_file();
    return test_done("test_json");
}
