/* The Fréchet distance between two Gaussians fitted to feature samples,
 *   |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2),
 * the formula of FID/FVD, here over the tiny world's own window features. Matrix square roots
 * come from a cyclic Jacobi eigendecomposition (symmetric, at most a few dozen dimensions). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

/* Eigen decomposition of the symmetric d x d matrix a (destroyed): values in w, vectors in the
 * columns of v. */
static void jacobi(double *a, int d, double *w, double *v) {
    for (int i = 0; i < d * d; i++) v[i] = 0;
    for (int i = 0; i < d; i++) v[i * d + i] = 1;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int p = 0; p < d; p++)
            for (int q = p + 1; q < d; q++) off += a[p * d + q] * a[p * d + q];
        if (off < 1e-30) break;
        for (int p = 0; p < d; p++)
            for (int q = p + 1; q < d; q++) {
                double apq = a[p * d + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < d; k++) { /* columns p, q */
                    double akp = a[k * d + p], akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq, a[k * d + q] = s * akp + c * akq;
                }
                for (int k = 0; k < d; k++) { /* rows p, q */
                    double apk = a[p * d + k], aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk, a[q * d + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < d; k++) {
                    double vkp = v[k * d + p], vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq, v[k * d + q] = s * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < d; i++) w[i] = a[i * d + i];
}

/* out = V diag(f(w)) V^T with f = sqrt of the clamped eigenvalues. */
static void sqrtm(const double *m, int d, double *out, double *tmp, double *w, double *v) {
    memcpy(tmp, m, sizeof(double) * d * d);
    jacobi(tmp, d, w, v);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++)
                s += v[i * d + k] * sqrt(w[k] > 0 ? w[k] : 0) * v[j * d + k];
            out[i * d + j] = s;
        }
}

static void moments(const double *x, int n, int d, double *mu, double *cov) {
    for (int k = 0; k < d; k++) {
        mu[k] = 0;
        for (int i = 0; i < n; i++) mu[k] += x[i * d + k];
        mu[k] /= n;
    }
    for (int p = 0; p < d; p++)
        for (int q = 0; q < d; q++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += (x[i * d + p] - mu[p]) * (x[i * d + q] - mu[q]);
            cov[p * d + q] = s / (n - 1) + (p == q ? 1e-12 : 0);
        }
}

double hl_frechet(const double *a, int na, const double *b, int nb, int d) {
    if (na < 2 || nb < 2) return NAN;
    size_t dd = (size_t)d * d;
    double *buf = malloc(sizeof(double) * (7 * dd + 4 * (size_t)d));
    if (!buf) return NAN;
    double *ca = buf, *cb = ca + dd, *ra = cb + dd, *m = ra + dd, *r = m + dd, *tmp = r + dd,
           *v = tmp + dd;
    double *mua = v + dd, *mub = mua + d, *w = mub + d;
    moments(a, na, d, mua, ca);
    moments(b, nb, d, mub, cb);
    sqrtm(ca, d, ra, tmp, w, v);
    for (int i = 0; i < d; i++) /* m = ra cb ra */
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += ra[i * d + k] * cb[k * d + j];
            tmp[i * d + j] = s;
        }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += tmp[i * d + k] * ra[k * d + j];
            m[i * d + j] = s;
        }
    for (int i = 0; i < d; i++) /* symmetrise against rounding */
        for (int j = i + 1; j < d; j++)
            m[i * d + j] = m[j * d + i] = 0.5 * (m[i * d + j] + m[j * d + i]);
    sqrtm(m, d, r, tmp, w, v);
    double dist = 0;
    for (int k = 0; k < d; k++) dist += (mua[k] - mub[k]) * (mua[k] - mub[k]);
    for (int k = 0; k < d; k++) dist += ca[k * d + k] + cb[k * d + k] - 2 * r[k * d + k];
    free(buf);
    return dist < 0 ? 0 : dist;
}
