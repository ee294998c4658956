/* Helpers shared by the op tests (test_ops_util.h). */
#include "test_ops_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "test_util.h"

int g_verbose;

float *falloc(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    if (!p) {
        fprintf(stderr, "op test: out of memory\n");
        exit(2);
    }
    return p;
}

float *frand(int64_t n, uint64_t seed, float amp) {
    float *p = falloc(n);
    fill_random(p, n, seed);
    for (int64_t i = 0; i < n; i++) p[i] *= amp;
    return p;
}

float *fconst(int64_t n, float v) {
    float *p = falloc(n);
    for (int64_t i = 0; i < n; i++) p[i] = v;
    return p;
}

float *fcopy(const float *src, int64_t n) {
    float *p = falloc(n);
    memcpy(p, src, (size_t)(n > 0 ? n : 0) * sizeof *p);
    return p;
}

/* allowed_ij = bound[i·ldb + j] when bound is given, else tol · max|want|. */
cmp_result compare(const float *got, int64_t ldg, const float *want, int64_t ldw, int64_t rows,
                   int64_t cols, const float *bound, int64_t ldb, double tol) {
    cmp_result r = {0, 0, 0};
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            if (fabs(want[i * ldw + j]) > r.max_ref) r.max_ref = fabs(want[i * ldw + j]);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double g = got[i * ldg + j], d = fabs(g - want[i * ldw + j]);
            double allowed = bound ? bound[i * ldb + j] : tol * r.max_ref;
            if (!isfinite(g) && isfinite(want[i * ldw + j])) d = INFINITY;
            if (d > r.max_err) r.max_err = d;
            double q = d == 0 ? 0 : d / (allowed > 0 ? allowed : 1e-300);
            if (q > r.worst) r.worst = q;
        }
    return r;
}

void report(const char *what, cmp_result r) {
    if (g_verbose || !cmp_ok(r))
        printf("  %-58s max err %.3g, max|ref| %.3g, err/allowed %.3g\n", what, r.max_err,
               r.max_ref, r.worst);
}

/* Columns [cols, ld) of every row still hold SENTINEL. */
int pad_intact(const float *buf, int64_t rows, int64_t cols, int64_t ld) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = cols; j < ld; j++)
            if (buf[i * ld + j] != SENTINEL) return 0;
    return 1;
}

/* Columns [cols, ld) of every row set to SENTINEL. */
void pad_fill(float *buf, int64_t rows, int64_t cols, int64_t ld) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = cols; j < ld; j++) buf[i * ld + j] = SENTINEL;
}

/* A weight tensor [N, K] in dt holding the float values f (rounded to dt); *store owns it. */
hl_tensor make_tensor(const float *f, int64_t N, int64_t K, hl_dtype dt, void **store) {
    size_t esz = hl_dtype_size(dt);
    void *d = malloc((size_t)(N * K > 0 ? N * K : 1) * esz);
    if (!d) exit(2);
    for (int64_t i = 0; i < N * K; i++) {
        if (dt == HL_F32) ((float *)d)[i] = f[i];
        if (dt == HL_BF16) ((hl_bf16 *)d)[i] = hl_f32_to_bf16(f[i]);
        if (dt == HL_F16) ((hl_f16 *)d)[i] = hl_f32_to_f16(f[i]);
    }
    *store = d;
    int64_t shape[2] = {N, K};
    return hl_tensor_make(d, dt, 2, shape);
}

cmp_result compare_d(const float *got, int64_t ldg, const double *want, const double *bound,
                     int64_t rows, int64_t cols) {
    cmp_result r = {0, 0, 0};
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double g = got[i * ldg + j], w = want[i * cols + j], d = fabs(g - w);
            if (!isfinite(g)) d = INFINITY;
            r.max_ref = fmax(r.max_ref, fabs(w));
            r.max_err = fmax(r.max_err, d);
            double q = d == 0 ? 0 : d / (bound[i * cols + j] > 0 ? bound[i * cols + j] : 1e-300);
            if (q > r.worst) r.worst = q;
        }
    return r;
}
