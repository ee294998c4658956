/* The UMT5 backward on a tiny random model (no files): every parameter's gradient of
 * L = sum(out · R) against central finite differences of a double-precision forward written
 * out here, plus the training forward = hl_umt5_forward, and gradients accumulating. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "text/umt5_backward.h"

/* vocab 11, D 8, H 2 heads of 3 (H·dkv ≠ D catches a transposed projection), F 10, 2 layers,
 * 8 buckets with max distance 12 over L = 7: offsets 2..6 fall in log buckets, some shared. */
enum { V = 11, D = 8, H = 2, DKV = 3, I = H * DKV, F = 10, NL = 2, NB = 8, MAXD = 12 };
enum { B = 2, L = 7, M = B * L };

/* Parameter offsets in one flat array, in state_dict order. */
typedef struct layer_off {
    int ln_attn, q, k, v, o, rel, ln_ffn, wi_0, wi_1, wo;
} layer_off;
typedef struct offsets {
    int shared, final_ln, n;
    layer_off l[NL];
} offsets;

static offsets make_offsets(void) {
    offsets o;
    int p = 0;
#define TAKE(f, c) (f = p, p += (c))
    TAKE(o.shared, V * D);
    for (int i = 0; i < NL; i++) {
        layer_off *l = &o.l[i];
        TAKE(l->ln_attn, D), TAKE(l->q, I * D), TAKE(l->k, I * D), TAKE(l->v, I * D);
        TAKE(l->o, D * I), TAKE(l->rel, NB * H), TAKE(l->ln_ffn, D);
        TAKE(l->wi_0, F * D), TAKE(l->wi_1, F * D), TAKE(l->wo, D * F);
    }
    TAKE(o.final_ln, D);
#undef TAKE
    o.n = p;
    return o;
}

static const int64_t k_ids[M] = {3, 7,  7, 1, 9, 0, 0, /* row 0: 5 tokens, then padding */
                                 2, 10, 4, 3, 3, 8, 1};
static const int64_t k_mask[M] = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1};

/* ---- the double-precision forward ---------------------------------------------------------- */

/* y[r] = Σ_c W[r·C + c] x[c], W [R, C]. */
static void matvec(const double *W, int R, int C, const double *x, double *y) {
    for (int r = 0; r < R; r++) {
        double s = 0.0;
        for (int c = 0; c < C; c++) s += W[r * C + c] * x[c];
        y[r] = s;
    }
}

static void rmsnorm(const double *x, const double *w, double *y) {
    double ms = 0.0;
    for (int d = 0; d < D; d++) ms += x[d] * x[d];
    double r = 1.0 / sqrt(ms / D + 1e-6);
    for (int d = 0; d < D; d++) y[d] = x[d] * r * w[d];
}

static double gelu_tanh(double x) {
    return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

/* last_hidden_state [B, L, D] of the tiny model with parameters P. */
static void forward_f64(const offsets *o, const double *P, double *out) {
    static double h[L][D], n[L][D], q[L][I], k[L][I], v[L][I], a[L][I], y[D], f0[F], f1[F];
    for (int b = 0; b < B; b++) {
        const int64_t *ids = k_ids + b * L, *mask = k_mask + b * L;
        for (int i = 0; i < L; i++) memcpy(h[i], P + o->shared + ids[i] * D, sizeof h[i]);
        for (int li = 0; li < NL; li++) {
            const layer_off *l = &o->l[li];
            for (int i = 0; i < L; i++) {
                rmsnorm(h[i], P + l->ln_attn, n[i]);
                matvec(P + l->q, I, D, n[i], q[i]);
                matvec(P + l->k, I, D, n[i], k[i]);
                matvec(P + l->v, I, D, n[i], v[i]);
            }
            for (int hh = 0; hh < H; hh++)
                for (int i = 0; i < L; i++) {
                    double s[L], mx = -INFINITY, sum = 0.0;
                    for (int j = 0; j < L; j++) {
                        s[j] = P[l->rel + hl_umt5_bucket(j - i, NB, MAXD) * H + hh];
                        for (int d = 0; d < DKV; d++)
                            s[j] += q[i][hh * DKV + d] * k[j][hh * DKV + d];
                        if (mask[j] && s[j] > mx) mx = s[j];
                    }
                    for (int j = 0; j < L; j++) sum += s[j] = mask[j] ? exp(s[j] - mx) : 0.0;
                    for (int d = 0; d < DKV; d++) {
                        double acc = 0.0;
                        for (int j = 0; j < L; j++) acc += s[j] / sum * v[j][hh * DKV + d];
                        a[i][hh * DKV + d] = acc;
                    }
                }
            for (int i = 0; i < L; i++) {
                matvec(P + l->o, D, I, a[i], y);
                for (int d = 0; d < D; d++) h[i][d] += y[d];
                rmsnorm(h[i], P + l->ln_ffn, n[i]);
                matvec(P + l->wi_0, F, D, n[i], f0);
                matvec(P + l->wi_1, F, D, n[i], f1);
                for (int f = 0; f < F; f++) f0[f] = gelu_tanh(f0[f]) * f1[f];
                matvec(P + l->wo, D, F, f0, y);
                for (int d = 0; d < D; d++) h[i][d] += y[d];
            }
        }
        for (int i = 0; i < L; i++) rmsnorm(h[i], P + o->final_ln, out + (b * L + i) * D);
    }
}

static double loss_f64(const offsets *o, const double *P, const double *R) {
    static double out[M * D];
    forward_f64(o, P, out);
    double s = 0.0;
    for (int i = 0; i < M * D; i++) s += out[i] * R[i];
    return s;
}

/* ---- the model under test ------------------------------------------------------------------- */

#define SHAPE(...) \
    (const int64_t[]) { __VA_ARGS__ }

/* An hl_umt5 whose weights point into Pf (float32, laid out as o). */
static void make_model(const offsets *o, float *Pf, hl_umt5 *m, hl_umt5_layer *layers) {
    memset(m, 0, sizeof *m);
    m->cfg = (hl_umt5_config){.vocab_size = V,
                              .d_model = D,
                              .d_kv = DKV,
                              .d_ff = F,
                              .num_layers = NL,
                              .num_heads = H,
                              .num_buckets = NB,
                              .max_distance = MAXD,
                              .eps = 1e-6f};
    m->shared = hl_tensor_make(Pf + o->shared, HL_F32, 2, SHAPE(V, D));
    for (int i = 0; i < NL; i++) {
        const layer_off *l = &o->l[i];
        layers[i] = (hl_umt5_layer){
            .ln_attn = Pf + l->ln_attn,
            .q = hl_tensor_make(Pf + l->q, HL_F32, 2, SHAPE(I, D)),
            .k = hl_tensor_make(Pf + l->k, HL_F32, 2, SHAPE(I, D)),
            .v = hl_tensor_make(Pf + l->v, HL_F32, 2, SHAPE(I, D)),
            .o = hl_tensor_make(Pf + l->o, HL_F32, 2, SHAPE(D, I)),
            .rel_bias = Pf + l->rel,
            .ln_ffn = Pf + l->ln_ffn,
            .wi_0 = hl_tensor_make(Pf + l->wi_0, HL_F32, 2, SHAPE(F, D)),
            .wi_1 = hl_tensor_make(Pf + l->wi_1, HL_F32, 2, SHAPE(F, D)),
            .wo = hl_tensor_make(Pf + l->wo, HL_F32, 2, SHAPE(D, F)),
        };
    }
    m->layers = layers;
    m->final_ln = Pf + o->final_ln;
}

typedef struct param {
    const char *name;
    int layer; /* -1: not in a block */
    int off, n;
    const float *grad;
} param;

/* The parameters with their gradients in g; returns their number. */
static int list_params(const offsets *o, const hl_umt5_grads *g, param *p) {
    int n = 0;
    p[n++] = (param){"shared", -1, o->shared, V * D, g->shared};
    for (int i = 0; i < NL; i++) {
        const layer_off *l = &o->l[i];
        const hl_umt5_layer_grads *gl = &g->layers[i];
        p[n++] = (param){"ln_attn", i, l->ln_attn, D, gl->ln_attn};
        p[n++] = (param){"q", i, l->q, I * D, gl->q};
        p[n++] = (param){"k", i, l->k, I * D, gl->k};
        p[n++] = (param){"v", i, l->v, I * D, gl->v};
        p[n++] = (param){"o", i, l->o, D * I, gl->o};
        p[n++] = (param){"rel_bias", i, l->rel, NB * H, gl->rel_bias};
        p[n++] = (param){"ln_ffn", i, l->ln_ffn, D, gl->ln_ffn};
        p[n++] = (param){"wi_0", i, l->wi_0, F * D, gl->wi_0};
        p[n++] = (param){"wi_1", i, l->wi_1, F * D, gl->wi_1};
        p[n++] = (param){"wo", i, l->wo, D * F, gl->wo};
    }
    p[n++] = (param){"final_ln", -1, o->final_ln, D, g->final_ln};
    return n;
}

void test_umt5_grad(helios_backend kind) {
    offsets o = make_offsets();
    float *Pf = malloc((size_t)o.n * sizeof *Pf), Rf[M * D], out[M * D], out_inf[M * D];
    double *P = malloc((size_t)o.n * sizeof *P), R[M * D], out64[M * D];
    fill_random(Pf, o.n, 5);
    fill_random(Rf, M * D, 6);
    for (int i = 0; i < o.n; i++) P[i] = Pf[i];
    for (int i = 0; i < NL; i++) /* norm gains near 1 */
        for (int d = 0; d < D; d++) {
            Pf[o.l[i].ln_attn + d] = (float)(P[o.l[i].ln_attn + d] = 1.0 +
                                                                     0.25 * P[o.l[i].ln_attn + d]);
            Pf[o.l[i].ln_ffn + d] = (float)(P[o.l[i].ln_ffn + d] = 1.0 +
                                                                   0.25 * P[o.l[i].ln_ffn + d]);
        }
    for (int i = 0; i < M * D; i++) R[i] = Rf[i];
    hl_umt5 m;
    hl_umt5_layer layers[NL];
    make_model(&o, Pf, &m, layers);
    hl_error err = {0};
    hl_ctx ctx = test_ctx(kind, &err);
    const char *be = kind == HELIOS_BACKEND_REF ? "ref" : "cpu";

    /* the training forward is the inference forward, and both match the double one */
    hl_umt5_tape *tape = NULL;
    hl_umt5_grads *g = NULL;
    CHECK(hl_umt5_forward(&ctx, &m, B, L, k_ids, k_mask, NULL, out_inf) == HL_OK, "%s", err.msg);
    CHECK(hl_umt5_forward_train(&ctx, &m, B, L, k_ids, k_mask, out, &tape) == HL_OK, "%s", err.msg);
    CHECK(hl_umt5_grads_new(&m, &g, &err) == HL_OK, "%s", err.msg);
    if (!tape || !g) goto done;
    CHECK(!memcmp(out, out_inf, sizeof out), "%s: training forward differs from hl_umt5_forward",
          be);
    forward_f64(&o, P, out64);
    double e = 0.0;
    for (int i = 0; i < M * D; i++) e = fmax(e, fabs(out[i] - out64[i]));
    CHECK(e < 1e-5, "%s: forward vs double: %.3g", be, e);

    /* every gradient against central differences (h = 1e-5: truncation ~1e-10) */
    CHECK(hl_umt5_backward(&ctx, &m, tape, Rf, g) == HL_OK, "%s", err.msg);
    param ps[2 + 10 * NL];
    int np = list_params(&o, g, ps);
    double worst = 0.0;
    for (int k = 0; k < np; k++) {
        const param *p = &ps[k];
        double emax = 0.0, gmax = 0.0;
        for (int i = 0; i < p->n; i++) {
            double *w = &P[p->off + i], w0 = *w, hstep = 1e-5;
            *w = w0 + hstep;
            double lp = loss_f64(&o, P, R);
            *w = w0 - hstep;
            double lm = loss_f64(&o, P, R);
            *w = w0;
            double fd = (lp - lm) / (2 * hstep);
            emax = fmax(emax, fabs(p->grad[i] - fd));
            gmax = fmax(gmax, fabs(fd));
        }
        CHECK(gmax > 0 && emax <= 1e-4 * gmax,
              "%s: layer %d d%s (%d values): max_abs %.3g vs max|fd| %.3g", be, p->layer, p->name,
              p->n, emax, gmax);
        worst = fmax(worst, emax / gmax);
    }
    printf("  %-8s finite differences: %d tensors, worst max_abs / max|grad| %.2g\n", be, np,
           worst);

    hl_umt5 other = m; /* a tape is bound to the model that recorded it */
    CHECK(hl_umt5_backward(&ctx, &other, tape, Rf, g) == HELIOS_ERR_INVALID_ARG, "%s: other model",
          be);

    /* a second backward adds the same again (parameter gradients accumulate) */
    float *first = malloc((size_t)g->numel * sizeof *first);
    if (first) {
        memcpy(first, g->buf, (size_t)g->numel * sizeof *first);
        CHECK(hl_umt5_backward(&ctx, &m, tape, Rf, g) == HL_OK, "%s", err.msg);
        double ea = 0.0, ga = 0.0;
        for (int64_t i = 0; i < g->numel; i++) {
            ea = fmax(ea, fabs(g->buf[i] - 2.0 * first[i]));
            ga = fmax(ga, fabs(first[i]));
        }
        CHECK(ea <= 1e-6 * ga, "%s: second backward: %.3g", be, ea);
        hl_umt5_grads_zero(g);
        double z = 0.0;
        for (int64_t i = 0; i < g->numel; i++) z = fmax(z, fabs(g->buf[i]));
        CHECK(z == 0.0, "%s: grads_zero", be);
        free(first);
    }
done:
    hl_umt5_tape_free(tape);
    hl_umt5_grads_free(g);
    free(Pf), free(P);
}
