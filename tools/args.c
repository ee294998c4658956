/* The strict option parser of the helios CLI (see args.h). Uses only the C library. */
#include "tools/args.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_why[160];

void args_init(args *a, const char *cmd, int argc, char **argv) {
    *a = (args){.cmd = cmd, .argc = argc, .argv = argv, .i = 0, .opt = NULL};
}

bool args_next(args *a) {
    if (a->i + 1 >= a->argc) return false;
    a->opt = a->argv[++a->i];
    return true;
}

bool args_is(const args *a, const char *s, const char *l) {
    return (s && !strcmp(a->opt, s)) || (l && !strcmp(a->opt, l));
}

int args_fail(const args *a, const char *fmt, ...) {
    fprintf(stderr, "%s: ", a->cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return ARGS_USAGE;
}

int args_str(args *a, const char **out) {
    if (a->i + 1 >= a->argc) return args_fail(a, "%s needs a value (see --help)", a->opt);
    *out = a->argv[++a->i];
    return 0;
}

const char *args_parse_ll(const char *text, int len, long long lo, long long hi, long long *out) {
    char buf[64];
    size_t n = len < 0 ? strlen(text) : (size_t)len;
    /* strtoll skips leading blanks and stops at junk; both are refused here */
    if (n == 0) return "is empty, not an integer";
    if (n >= sizeof buf ||
        !(text[0] == '-' || text[0] == '+' || (text[0] >= '0' && text[0] <= '9')))
        return "is not an integer";
    memcpy(buf, text, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (end == buf || *end) return "is not an integer";
    if (errno == ERANGE || v < lo || v > hi) {
        snprintf(g_why, sizeof g_why, "is out of range (%lld..%lld)", lo, hi);
        return g_why;
    }
    *out = v;
    return NULL;
}

const char *args_parse_double(const char *text, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    if (!*text ||
        !(text[0] == '-' || text[0] == '+' || text[0] == '.' || (text[0] >= '0' && text[0] <= '9')))
        return "is not a number";
    double v = strtod(text, &end);
    if (end == text || *end) return "is not a number";
    /* strtod accepts "nan" and "inf" (refused by the first-character test above only when
     * unsigned: "-nan", "+inf" get here), and saturates 1e999 to HUGE_VAL with ERANGE */
    if (!isfinite(v) || (errno == ERANGE && fabs(v) > 1.0)) return "is not a finite number";
    if (!(v >= lo && v <= hi)) {
        snprintf(g_why, sizeof g_why, "is out of range (%g..%g)", lo, hi);
        return g_why;
    }
    *out = v;
    return NULL;
}

int args_i64(args *a, long long lo, long long hi, int64_t *out) {
    const char *opt = a->opt, *v = NULL;
    if (args_str(a, &v)) return ARGS_USAGE;
    long long x;
    const char *why = args_parse_ll(v, -1, lo, hi, &x);
    if (why) return args_fail(a, "%s '%s' %s", opt, v, why);
    *out = x;
    return 0;
}

int args_int(args *a, long long lo, long long hi, int *out) {
    if (lo < INT_MIN) lo = INT_MIN;
    if (hi > INT_MAX) hi = INT_MAX;
    int64_t x = 0;
    if (args_i64(a, lo, hi, &x)) return ARGS_USAGE;
    *out = (int)x;
    return 0;
}

int args_u64(args *a, uint64_t *out) {
    const char *opt = a->opt, *v = NULL;
    if (args_str(a, &v)) return ARGS_USAGE;
    /* strtoull takes "-1" as 2^64-1: only digits are a seed */
    bool digits = *v != '\0';
    for (const char *c = v; *c; c++) digits = digits && *c >= '0' && *c <= '9';
    if (!digits) return args_fail(a, "%s '%s' is not a non-negative integer", opt, v);
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || errno == ERANGE)
        return args_fail(a, "%s '%s' is out of range (0..%llu)", opt, v, ULLONG_MAX);
    *out = x;
    return 0;
}

int args_double(args *a, double lo, double hi, double *out) {
    const char *opt = a->opt, *v = NULL;
    if (args_str(a, &v)) return ARGS_USAGE;
    const char *why = args_parse_double(v, lo, hi, out);
    return why ? args_fail(a, "%s '%s' %s", opt, v, why) : 0;
}

int args_choice(args *a, const char *const *names, int n, int *out) {
    const char *opt = a->opt, *v = NULL;
    if (args_str(a, &v)) return ARGS_USAGE;
    for (int k = 0; k < n; k++)
        if (!strcmp(v, names[k])) {
            *out = k;
            return 0;
        }
    char list[256];
    size_t len = 0;
    list[0] = '\0';
    for (int k = 0; k < n && len < sizeof list; k++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s",
                                k ? (k == n - 1 ? " or " : ", ") : "", names[k]);
    return args_fail(a, "%s '%s' is not one of %s", opt, v, list);
}

int args_int_list(args *a, int n, long long lo, long long hi, int *out) {
    const char *opt = a->opt, *v = NULL;
    if (args_str(a, &v)) return ARGS_USAGE;
    const char *p = v;
    for (int k = 0;; k++) {
        const char *comma = strchr(p, ',');
        if (k == n)
            return args_fail(a, "%s '%s': wants 1 to %d comma-separated integers", opt, v, n);
        int len = comma ? (int)(comma - p) : (int)strlen(p);
        long long x;
        const char *why = args_parse_ll(p, len, lo, hi, &x);
        if (why) return args_fail(a, "%s '%s': item %d '%.*s' %s", opt, v, k + 1, len, p, why);
        out[k] = (int)x;
        if (!comma) {
            while (++k < n) out[k] = 0; /* not given */
            return 0;
        }
        p = comma + 1;
    }
}
