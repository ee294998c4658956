/* Helpers shared by the op tests (test_ops.c, test_ops_grad.c): buffers with known contents,
 * the comparison of a result with its oracle under a tolerance, and the checks that a strided
 * output left the columns between its rows alone. */
#ifndef HL_TEST_OPS_UTIL_H
#define HL_TEST_OPS_UTIL_H

#include <stdint.h>

#include "ops/ops.h"

/* -v on the command line: print every comparison, not only the failing ones. */
extern int g_verbose;

/* The value the padding columns of strided outputs (and the slot past a flat output) hold. */
#define SENTINEL 1234.5f

static inline const char *bname(const hl_ctx *be) { return hl_backend_name(be->backend); }

/* New float buffers of n values (exit(2) when out of memory): uninitialised; fill_random scaled
 * by amp; all v; a copy of src. */
float *falloc(int64_t n);
float *frand(int64_t n, uint64_t seed, float amp);
float *fconst(int64_t n, float v);
float *fcopy(const float *src, int64_t n);

/* Result of comparing got against want over a rows x cols view: worst = max over elements of
 * |got - want| / allowed (> 1: failure; NaN or inf in got: inf). */
typedef struct {
    double worst, max_err, max_ref;
} cmp_result;

/* allowed_ij = bound[i·ldb + j] when bound is given, else tol · max|want|. */
cmp_result compare(const float *got, int64_t ldg, const float *want, int64_t ldw, int64_t rows,
                   int64_t cols, const float *bound, int64_t ldb, double tol);

/* The same against a double want with a double bound, both dense [rows, cols]. */
cmp_result compare_d(const float *got, int64_t ldg, const double *want, const double *bound,
                     int64_t rows, int64_t cols);

static inline int cmp_ok(cmp_result r) { return r.worst <= 1.0; }

/* Prints one comparison (always with -v, else only when it failed). */
void report(const char *what, cmp_result r);

/* Columns [cols, ld) of every row still hold SENTINEL. */
int pad_intact(const float *buf, int64_t rows, int64_t cols, int64_t ld);

/* Columns [cols, ld) of every row set to SENTINEL. */
void pad_fill(float *buf, int64_t rows, int64_t cols, int64_t ld);

/* A weight tensor [N, K] in dt holding the float values f (rounded to dt); *store owns it. */
hl_tensor make_tensor(const float *f, int64_t N, int64_t K, hl_dtype dt, void **store);

#endif
