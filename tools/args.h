/* The strict option parsing every helios subcommand uses. A number is taken only when the whole
 * value is one number in range (no "128px", no "4294967424" wrapping to 128, no "abc" read as
 * 0, no NaN); an enum only when it is one of its names; an option at the end without its value
 * is an error. Every failure prints "helios CMD: OPTION: why" to stderr and yields exit code 2.
 * Repeated options: the last one wins (documented in each --help), unless the command says
 * otherwise for an option (generate's --switch-prompt collects every one). */
#ifndef HL_TOOLS_ARGS_H
#define HL_TOOLS_ARGS_H

#include <stdbool.h>
#include <stdint.h>

#define ARGS_USAGE 2 /* exit code of a bad command line */

typedef struct args {
    const char *cmd; /* "helios generate", for messages */
    int argc;
    char **argv;
    int i;           /* index of the current argument */
    const char *opt; /* the current argument */
} args;

void args_init(args *a, const char *cmd, int argc, char **argv);
/* Moves to the next argument (false at the end). */
bool args_next(args *a);
/* The current argument is the option s or l (either may be NULL). */
bool args_is(const args *a, const char *s, const char *l);
/* Prints "CMD: fmt..." and returns ARGS_USAGE. */
int args_fail(const args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Option values: each consumes the next argument and returns 0, or prints why and returns
 * ARGS_USAGE (also when the value is missing). */
int args_str(args *a, const char **out);
int args_int(args *a, long long lo, long long hi, int *out);
int args_i64(args *a, long long lo, long long hi, int64_t *out);
int args_u64(args *a, uint64_t *out);
/* A finite number in [lo, hi]. */
int args_double(args *a, double lo, double hi, double *out);
/* One of names[0..n-1]: *out is its index. */
int args_choice(args *a, const char *const *names, int n, int *out);
/* 1 to n integers in [lo, hi] separated by commas ("2,2,2"): out[0..] takes them, the rest of
 * out[n] is 0 (not given). */
int args_int_list(args *a, int n, long long lo, long long hi, int *out);

/* The parsers under the above, for values found inside other values (generate's "C:TEXT").
 * They return NULL on success, else why ("is not an integer", "out of range 1..64"), in a
 * static buffer valid until the next call. len < 0: the whole string. */
const char *args_parse_ll(const char *text, int len, long long lo, long long hi, long long *out);
const char *args_parse_double(const char *text, double lo, double hi, double *out);

#endif
