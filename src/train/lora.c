/* LoRA adapters: the layout, PEFT's initialisation, W = W0 + s B A and the adapters' gradients
 * (train/lora.h). Saving and loading are in lora_io.c. */
#include "train/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"

/* doubles of the per-thread sums on the stack (so rank <= HL_LORA_MAX_RANK) */
#define HL_LORA_CHUNK 4096

/* Below this many multiply-adds a target runs on the calling thread: waking the pool costs more
 * than it saves (each element's sum has the same order either way, so the bits do not change). */
#define HL_LORA_PARALLEL_MIN (1 << 22)

static void run(int64_t n, int64_t work, void (*fn)(int64_t, int64_t, void *), void *arg) {
    if (work < HL_LORA_PARALLEL_MIN) fn(0, n, arg);
    else hl_parallel_for(n, fn, arg);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int hl_lora_eligible(const hl_param *p) { return p->ndim >= 2 && ends_with(p->name, ".weight"); }

int hl_lora_glob(const char *pat, const char *s) {
    /* iterative glob with one backtrack point (the last '*') */
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pat == '*') {
            star = pat++, resume = s;
        } else if (*pat == '?' || *pat == *s) {
            pat++, s++;
        } else if (star) {
            pat = star + 1, s = ++resume;
        } else {
            return 0;
        }
    }
    while (*pat == '*') pat++;
    return *pat == '\0';
}

/* The module name of a ".weight" parameter into buf. */
static void module_of(const char *name, char *buf, size_t n) {
    size_t len = strlen(name) - strlen(".weight");
    if (len >= n) len = n - 1;
    memcpy(buf, name, len);
    buf[len] = '\0';
}

void hl_lora_free(hl_lora *l) {
    hl_params_free(&l->layout);
    free(l->t);
    free(l->base);
    memset(l, 0, sizeof *l);
}

static hl_status add_row(hl_params *lay, const char *module, const char *which, int ndim,
                         const int64_t *shape, hl_error *err) {
    hl_param *q = &lay->p[lay->n];
    int w = snprintf(q->name, sizeof q->name, HL_LORA_PREFIX "%s.%s.weight", module, which);
    if (w < 0 || (size_t)w >= sizeof q->name)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "lora: adapter name of '%s' too long", module);
    q->ndim = ndim;
    q->numel = 1;
    for (int d = 0; d < ndim; d++) q->shape[d] = shape[d], q->numel *= shape[d];
    q->offset = lay->total;
    lay->total += q->numel;
    lay->n++;
    return HL_OK;
}

hl_status hl_lora_new(hl_lora *l, const hl_params *model, const float *w0, int rank, double alpha,
                      const char *const *targets, hl_error *err) {
    memset(l, 0, sizeof *l);
    if (!model || rank < 1 || rank > HL_LORA_MAX_RANK || !(alpha > 0.0) || !isfinite(alpha))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "lora: rank must be in [1, %d] and alpha > 0 (got rank %d, alpha %g)",
                       HL_LORA_MAX_RANK, rank, alpha);
    size_t n_pat = 0;
    while (targets && targets[n_pat]) n_pat++;
    unsigned char *hit = calloc(n_pat ? n_pat : 1, 1);
    l->t = calloc(model->n ? model->n : 1, sizeof *l->t);
    l->layout.p = calloc(2 * (model->n ? model->n : 1), sizeof *l->layout.p);
    if (!hit || !l->t || !l->layout.p) {
        free(hit);
        hl_lora_free(l);
        return hl_fail(err, HELIOS_ERR_OOM, "lora: out of memory");
    }
    l->rank = rank, l->alpha = alpha, l->scale = alpha / rank;
    hl_status st = HL_OK;
    char module[sizeof model->p[0].name];
    for (size_t i = 0; i < model->n && st == HL_OK; i++) {
        const hl_param *p = &model->p[i];
        if (!hl_lora_eligible(p)) continue;
        module_of(p->name, module, sizeof module);
        int match = n_pat == 0;
        for (size_t k = 0; k < n_pat; k++)
            if (hl_lora_glob(targets[k], module)) match = 1, hit[k] = 1;
        if (!match) continue;
        hl_lora_target *t = &l->t[l->n_targets++];
        t->param = i;
        t->n = p->shape[0];
        t->k = p->shape[0] > 0 ? p->numel / p->shape[0] : 0;
        t->w_off = p->offset;
        t->base_off = l->base_total;
        l->base_total += p->numel;
        /* A: [r, in, kernel...]; B: [out, r, 1...] (PEFT's Linear / Conv3d adapters) */
        int64_t sa[HL_MAX_DIMS], sb[HL_MAX_DIMS];
        sa[0] = rank, sb[0] = p->shape[0], sb[1] = rank;
        for (int d = 1; d < p->ndim; d++) sa[d] = p->shape[d];
        for (int d = 2; d < p->ndim; d++) sb[d] = 1;
        t->a_off = l->layout.total;
        st = add_row(&l->layout, module, "lora_A", p->ndim, sa, err);
        t->b_off = l->layout.total;
        if (st == HL_OK) st = add_row(&l->layout, module, "lora_B", p->ndim, sb, err);
    }
    for (size_t k = 0; k < n_pat && st == HL_OK; k++)
        if (!hit[k])
            st = hl_fail(err, HELIOS_ERR_INVALID_ARG,
                         "lora: target '%s' matches no linear or patch-embedding weight",
                         targets[k]);
    free(hit);
    if (st == HL_OK && l->n_targets == 0)
        st = hl_fail(err, HELIOS_ERR_INVALID_ARG, "lora: no parameter to adapt");
    if (st == HL_OK && w0) {
        l->base = malloc((size_t)(l->base_total ? l->base_total : 1) * sizeof *l->base);
        if (!l->base) st = hl_fail(err, HELIOS_ERR_OOM, "lora: out of memory for W0");
        for (size_t i = 0; st == HL_OK && i < l->n_targets; i++) {
            const hl_lora_target *t = &l->t[i];
            memcpy(l->base + t->base_off, w0 + t->w_off, (size_t)(t->n * t->k) * sizeof *l->base);
        }
    }
    if (st != HL_OK) hl_lora_free(l);
    return st;
}

void hl_lora_init_adapters(const hl_lora *l, float *ad, hl_rng *rng) {
    for (size_t i = 0; i < l->n_targets; i++) {
        const hl_lora_target *t = &l->t[i];
        float *a = ad + t->a_off;
        int64_t na = (int64_t)l->rank * t->k;
        /* kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / K) = 1/sqrt(K);
         * torch's uniform_(-b, b) maps u in [0, 1) to u * (b - (-b)) + (-b) */
        float bound = (float)(1.0 / sqrt((double)(t->k > 0 ? t->k : 1)));
        hl_rng_rand_f32(rng, a, na);
        for (int64_t j = 0; j < na; j++) a[j] = a[j] * (2.0f * bound) - bound;
        memset(ad + t->b_off, 0, (size_t)(t->n * l->rank) * sizeof *ad);
    }
}

/* ---- W = X + s B A over rows ------------------------------------------------------------- */

typedef struct delta_job {
    const float *x; /* [n, k]: W0 or W itself */
    float *w;       /* [n, k] */
    const float *a, *b;
    int64_t k;
    int r;
    double s;
} delta_job;

static void delta_rows(int64_t begin, int64_t end, void *arg) {
    const delta_job *j = arg;
    const int64_t K = j->k;
    const int r = j->r;
    double acc[HL_LORA_CHUNK];
    for (int64_t n = begin; n < end; n++) {
        for (int64_t c0 = 0; c0 < K; c0 += HL_LORA_CHUNK) {
            const int64_t w = K - c0 < HL_LORA_CHUNK ? K - c0 : HL_LORA_CHUNK;
            for (int64_t c = 0; c < w; c++) acc[c] = 0.0;
            for (int q = 0; q < r; q++) { /* acc += B[n,q] A[q,:], q ascending */
                const double bq = j->b[n * r + q];
                const float *arow = j->a + (int64_t)q * K + c0;
                for (int64_t c = 0; c < w; c++) acc[c] += bq * arow[c];
            }
            for (int64_t c = 0; c < w; c++)
                j->w[n * K + c0 + c] = (float)((double)j->x[n * K + c0 + c] + j->s * acc[c]);
        }
    }
}

static void delta_all(const hl_lora *l, const float *ad, const float *x_base, float *w) {
    for (size_t i = 0; i < l->n_targets; i++) {
        const hl_lora_target *t = &l->t[i];
        delta_job j = {x_base ? x_base + t->base_off : w + t->w_off,
                       w + t->w_off,
                       ad + t->a_off,
                       ad + t->b_off,
                       t->k,
                       l->rank,
                       l->scale};
        run(t->n, t->n * t->k * l->rank, delta_rows, &j);
    }
}

hl_status hl_lora_apply(const hl_lora *l, const float *ad, float *w, hl_error *err) {
    if (!l->base)
        return hl_fail(err, HELIOS_ERR_INVALID_ARG,
                       "lora: apply needs the base weights W0 (made without them)");
    delta_all(l, ad, l->base, w);
    return HL_OK;
}

void hl_lora_merge(const hl_lora *l, const float *ad, float *w) { delta_all(l, ad, NULL, w); }

/* ---- gradients ---------------------------------------------------------------------------- */

typedef struct grad_job {
    const float *a, *b, *dw; /* A [r, k], B [n, r], dW [n, k] */
    float *ga, *gb;
    int64_t n, k;
    int r;
    double s;
} grad_job;

/* gB[n, q] += s sum_c dW[n, c] A[q, c] for rows n in [begin, end). */
static void grad_b_rows(int64_t begin, int64_t end, void *arg) {
    const grad_job *j = arg;
    for (int64_t n = begin; n < end; n++) {
        const float *drow = j->dw + n * j->k;
        for (int q = 0; q < j->r; q++) {
            const float *arow = j->a + (int64_t)q * j->k;
            double acc = 0.0;
            for (int64_t c = 0; c < j->k; c++) acc += (double)drow[c] * arow[c];
            j->gb[n * j->r + q] += (float)(j->s * acc);
        }
    }
}

/* gA[q, c] += s sum_n B[n, q] dW[n, c] for columns c in [begin, end), n ascending; the columns in
 * chunks of HL_LORA_CHUNK / r so the r sums of a chunk stay on the stack. */
static void grad_a_cols(int64_t begin, int64_t end, void *arg) {
    const grad_job *j = arg;
    const int64_t cw = HL_LORA_CHUNK / j->r;
    double acc[HL_LORA_CHUNK];
    for (int64_t c0 = begin; c0 < end; c0 += cw) {
        const int64_t w = end - c0 < cw ? end - c0 : cw;
        for (int64_t i = 0; i < j->r * w; i++) acc[i] = 0.0;
        for (int64_t n = 0; n < j->n; n++) {
            const float *drow = j->dw + n * j->k + c0;
            for (int q = 0; q < j->r; q++) {
                const double bq = j->b[n * j->r + q];
                double *aq = acc + (int64_t)q * w;
                for (int64_t c = 0; c < w; c++) aq[c] += bq * drow[c];
            }
        }
        for (int q = 0; q < j->r; q++)
            for (int64_t c = 0; c < w; c++)
                j->ga[(int64_t)q * j->k + c0 + c] += (float)(j->s * acc[(int64_t)q * w + c]);
    }
}

void hl_lora_grads(const hl_lora *l, const float *ad, const float *gw, float *gad) {
    for (size_t i = 0; i < l->n_targets; i++) {
        const hl_lora_target *t = &l->t[i];
        grad_job j = {ad + t->a_off, ad + t->b_off, gw + t->w_off, gad + t->a_off, gad + t->b_off,
                      t->n,          t->k,          l->rank,       l->scale};
        run(t->n, t->n * t->k * l->rank, grad_b_rows, &j);
        run(t->k, t->n * t->k * l->rank, grad_a_cols, &j);
    }
}
